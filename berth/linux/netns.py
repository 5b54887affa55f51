"""Network namespaces that outlive their processes: a new namespace is bind-mounted on a file
(as `ip netns add` does), so CNI plugins, runtimes and the DNS server can enter it by path. A
pod with a user namespace of its own gets both, the network namespace owned by the user one
(create_in_userns): its processes, root there, can then mount sysfs and manage the network."""

from __future__ import annotations

import os
import threading

from berth.linux import syscalls as sc

TYPE_CHECKING = False  # no typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run fn in a fresh thread and return its result: setns/unshare of a network namespace
    change only the calling thread, and that thread is thrown away afterwards."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["r"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["e"] = e
    t = threading.Thread(target=run, name="netns")
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("r")


def create(path: str) -> str:
    """A new network namespace with `lo` up, bind-mounted on ``path`` (created; must not be
    mounted already)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def work() -> None:
        sc.unshare(sc.CLONE_NEWNET)  # this thread only
        sc.link_up("lo")
        sc.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, sc.MS_BIND)
    try:
        _in_thread(work)
    except BaseException:
        os.unlink(path)
        raise
    return path


def remove(path: str) -> None:
    """Unmount and delete a namespace file made by create(); absent is fine."""
    try:
        sc.umount2(path, sc.MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# the helper that makes them: a process of its own, as a process with threads (berthd) cannot
# make a user namespace, and a fork of one would have to run code that other threads' locks may
# block; it makes them (unshare of %d: the namespaces' flags) and waits until they are bound
_HELPER = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(%d):
    os.write(1, b"E%%d" %% ctypes.get_errno())
else:
    os.write(1, b"1")
    os.read(0, 1)
"""
# the same in an existing user namespace (its fd given): joined, then the network namespace made
_JOIN_HELPER = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.setns(%d, 0x10000000) or libc.unshare(0x40000000):
    os.write(1, b"E%%d" %% ctypes.get_errno())
else:
    os.write(1, b"1")
    os.read(0, 1)
"""
_FLAGS = {"user": 0x10000000, "net": 0x40000000}


def pin_by_helper(pins: dict[str, str], uids: list[dict[str, int]], gids: list[dict[str, int]],
                  join: str | None = None) -> None:
    """New namespaces made by a helper process, each bind-mounted on its pin ({"user": path,
    "net": path}; the files created, not mounted already): a user namespace with these mappings
    ({containerID, hostID, size} each) and, when pinned, a network namespace it owns. join: an
    existing user namespace (its path) instead of a new one, the network namespace made in it
    (the maps are then not used). On failure the pins made are gone again."""
    import subprocess
    import sys
    made = []
    try:
        for p in pins.values():
            os.makedirs(os.path.dirname(p), exist_ok=True)
            os.close(os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
            made.append(p)
        pass_fds: tuple[int, ...] = ()
        code = _HELPER % sum(_FLAGS[k] for k in pins)
        if join is not None:
            ufd = os.open(join, os.O_RDONLY | os.O_CLOEXEC)
            os.set_inheritable(ufd, True)
            pass_fds = (ufd,)
            code = _JOIN_HELPER % ufd
        try:
            helper = subprocess.Popen([sys.executable, "-S", "-E", "-c", code], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                                      pass_fds=pass_fds)
        finally:
            for fd in pass_fds:
                os.close(fd)
        try:
            said = helper.stdout.read(1) if helper.stdout else b""
            if said != b"1":
                why = said + (helper.stdout.read() if helper.stdout and said else b"")
                e = int(why[1:] or 0) if why[:1] == b"E" and why[1:].isdigit() else 0
                raise OSError(e, os.strerror(e) if e else "the namespaces' helper ended")
            pid = helper.pid
            for name, maps in (("uid_map", uids), ("gid_map", gids)) if join is None else ():
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps))
            for kind, p in pins.items():
                sc.mount(f"/proc/{pid}/ns/{kind}", p, None, sc.MS_BIND)
        finally:
            helper.kill()
            helper.wait()
            for f in (helper.stdin, helper.stdout):
                if f is not None:
                    f.close()
    except BaseException:
        for p in made:
            remove(p)
        raise


def create_in_userns(path: str, userns_path: str, uids: list[dict[str, int]], gids: list[dict[str, int]],
                     join: str | None = None) -> str:
    """A new user namespace with these mappings ({containerID, hostID, size} each) and a new
    network namespace it owns (`lo` up), bind-mounted on userns_path and path (both created; must
    not be mounted already). join: an existing user namespace (its path) instead of a new one,
    bound on userns_path too (the maps are then not used)."""
    pin_by_helper({"user": userns_path, "net": path}, uids, gids, join)

    def lo_up() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, sc.CLONE_NEWNET)  # this thread only
        finally:
            os.close(fd)
        sc.link_up("lo")
    try:
        _in_thread(lo_up)
    except BaseException:
        remove(path)
        remove(userns_path)
        raise
    return path
