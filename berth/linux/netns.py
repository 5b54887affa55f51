"""Network namespaces that outlive their processes: a new namespace is bind-mounted on a file
(as `ip netns add` does), so CNI plugins, runtimes and the DNS server can enter it by path."""

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
