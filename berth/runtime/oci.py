"""One OCI-runtime interface, two implementations: the runtime library in-process (berth-runc's
own code) and a runtime binary with runc's CLI (runc, crun, runsc) from berthd's [runtimes].

``for_config`` chooses between them (the only place that does); the shim rebuilds the same
runtime from the parameters ``shim_params`` gives it (``from_params``). create and exec hand
the process the caller's fds 0-2 (set up by the shim) and, with a console, pass the pty master
to the given socket, as runc's --console-socket does.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from typing import TYPE_CHECKING, Any

from berth.errors import FailedPrecondition, NotFound, SystemError_

if TYPE_CHECKING:
    from collections.abc import Callable

    from berth.daemon.config import Config

LIBRARY = "berth-runc"  # the runtime path that means "the library, in-process"


class OCIRuntime:
    """The verbs of an OCI runtime on one state root."""

    name: str = ""
    root: str = ""
    #: start is light enough for the creating shim to do in place rather than in a helper child
    #: (the library's: berth.runtime.container.release, a read of the exec fifo; berthd decides
    #: it, the shim gets a flag: it never builds a runtime object itself)
    light_start: bool = False

    def shim_params(self, network_mode: str = "") -> dict[str, Any]:
        """What the shim needs to rebuild this runtime (from_params) for a container."""
        raise NotImplementedError

    def create(self, cid: str, bundle: str, pid_file: str, console: socket.socket | None) -> int:
        raise NotImplementedError

    def start(self, cid: str) -> None:
        raise NotImplementedError

    def exec(self, cid: str, process: dict[str, Any], pid_file: str, console: socket.socket | None) -> None:
        raise NotImplementedError

    def kill(self, cid: str, sig: int, all: bool = False) -> None:
        raise NotImplementedError

    def pause(self, cid: str) -> None:
        raise NotImplementedError

    def resume(self, cid: str) -> None:
        raise NotImplementedError

    def delete(self, cid: str, force: bool = False) -> None:
        raise NotImplementedError

    def state(self, cid: str) -> str:
        raise NotImplementedError

    def has_state(self, cid: str) -> bool:
        """Whether the runtime may still hold state of the container (a cheap look, no call:
        a delete is worth its cost only then). runc and berth-runc keep <root>/<id>, runsc
        files named after the id."""
        try:
            return any(name == cid or name.startswith(cid + "_") or name.startswith(cid + ".")
                       for name in os.listdir(self.root))
        except FileNotFoundError:
            return False


class LibraryRuntime(OCIRuntime):
    """berth's runtime library, called in the calling process."""

    light_start = True

    def __init__(self, root: str, systemd: bool = False) -> None:
        self.name = LIBRARY
        self.root = root
        self.systemd = systemd

    def shim_params(self, network_mode: str = "") -> dict[str, Any]:
        return {"runtime_root": self.root, "runtime_binary": None, "runtime_args": [], "systemd": self.systemd}

    def create(self, cid: str, bundle: str, pid_file: str, console: socket.socket | None) -> int:
        from berth.runtime import container as rt
        # the shim's helper, which ends after it: disposable
        return rt.create(self.root, cid, bundle, console=console, check_seccomp=False, systemd=self.systemd,
                         disposable=True).pid

    def start(self, cid: str) -> None:
        from berth.runtime import container as rt
        rt.start(self.root, cid)

    def exec(self, cid: str, process: dict[str, Any], pid_file: str, console: socket.socket | None) -> None:
        from berth.runtime import container as rt
        rt.exec_(self.root, cid, process, detach=True, pid_file=pid_file, console=console)

    def kill(self, cid: str, sig: int, all: bool = False) -> None:
        from berth.runtime import container as rt
        rt.kill(self.root, cid, sig, all_=all)

    def pause(self, cid: str) -> None:
        from berth.runtime import container as rt
        rt.pause(self.root, cid)

    def resume(self, cid: str) -> None:
        from berth.runtime import container as rt
        rt.resume(self.root, cid)

    def delete(self, cid: str, force: bool = False) -> None:
        from berth.runtime import container as rt
        rt.delete(self.root, cid, force=force)

    def state(self, cid: str) -> str:
        from berth.runtime import state as rstate
        return rstate.load(self.root, cid).status()


class BinaryRuntime(OCIRuntime):
    """A runtime binary with runc's command line, as containerd's shim runs it: errors come from
    its --log (JSON lines), the console over --console-socket."""

    def __init__(self, name: str, path: str, args: list[str] | None, root: str, work_dir: str = "") -> None:
        self.name = name
        self.path = path
        self.args = list(args or [])
        self.root = root
        self.work_dir = work_dir  # where its log and console sockets go (the shim's state dir)
        self.while_waiting: Callable[[int], None] | None = None  # called while a quick command runs (its pid)

    def shim_params(self, network_mode: str = "") -> dict[str, Any]:
        return {"runtime_root": self.root, "runtime_binary": self.path,
                "runtime_args": self.args + self.network_args(network_mode), "runtime_name": self.name,
                "systemd": False}

    def network_args(self, network_mode: str) -> list[str]:
        """gVisor's own network flag for a container, unless [runtimes] gives one: none for
        --network none (its netstack with a loopback only); with a network, the sandbox joins the
        namespace berthd made (its path is in config.json) and, where this runsc mistakes every
        namespace for the root one (it looks for /proc/sys/net/core/rmem_default, which kernels
        since 5.x have in every namespace), uses the kernel's stack in it (--network=host: the
        container's namespace still, not the host's)."""
        if os.path.basename(self.path) != "runsc" or any(a.startswith("--network") for a in self.args):
            return []
        if network_mode == "none":
            return ["--network=none"]
        if network_mode == "host" or _netns_has_root_sysctls():
            return ["--network=host"]
        return []

    def _cmd(self) -> list[str]:
        return [self.path] + self.args + ["--root", self.root]

    def _null(self) -> str | None:
        """For runsc, which chowns its stdio to its sandbox's user (nobody), even the null device
        (runc leaves /dev/null alone): a null device of the runtime's own under its root, given in
        place of the host's /dev/null, whose owner would otherwise change."""
        if os.path.basename(self.path) != "runsc":
            return None
        path = os.path.join(self.root, "null")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            try:
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                os.chmod(path, 0o666)
            except FileExistsError:
                pass
            st = os.lstat(path)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            raise SystemError_(f"{path} is not a null device")
        return path

    def _stdio(self, null: str | None) -> list[int]:
        """The caller's fds 0-2 for the runtime, with the host's /dev/null among them replaced by
        the runtime's own null device (null) where there is one."""
        if null is None:
            return [0, 1, 2]
        host = os.stat(os.devnull)
        out = []
        for fd in (0, 1, 2):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino):
                fd = os.open(null, os.O_RDWR | os.O_CLOEXEC)
            out.append(fd)
        return out

    def _call(self, verb: list[str], what: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        try:
            from berth.linux.command import run  # imported where used: a helper of a runtime binary
            p = run(self._cmd() + verb, timeout, while_waiting=self.while_waiting,  # start, kill, delete: ~1 ms less than subprocess.run
                    null=self._null())
        except FileNotFoundError:
            raise SystemError_(f"{self.path}: the runtime binary is not installed") from None
        except subprocess.TimeoutExpired:
            raise SystemError_(f"{self.path} {what}: no answer in {timeout:.0f}s") from None
        if p.returncode != 0:
            lines = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
            msg = _strip_log(lines[-1]) if lines else f"exit status {p.returncode}"
            low = msg.lower()
            if "not exist" in low or "not found" in low:
                raise NotFound(f"{self.path} {what}: {msg}")
            if "not running" in low or "not paused" in low or "paused" in low and what == "pause":
                raise FailedPrecondition(f"{self.path} {what}: {msg}")
            raise SystemError_(f"{self.path} {what}: {msg}")
        return p

    def _run(self, verb: list[str], cid: str, console: socket.socket | None, kind: str, failed: str) -> None:
        """`<runtime> --log F --log-format json VERB... ID` with the caller's fds 0-2; with a
        console, the pty master the runtime hands to a console socket goes on to ``console``."""
        srv = sockpath = None
        logfile = os.path.join(self.work_dir, "runtime-log.json")
        try:
            if console is not None:
                sockpath = self._short_socket_path(cid, kind)
                srv = socket.socket(socket.AF_UNIX)
                srv.bind(sockpath)
                srv.listen(1)
                verb = verb + ["--console-socket", sockpath]
            stdio = self._stdio(self._null())
            try:
                p = subprocess.Popen(self._cmd() + ["--log", logfile, "--log-format", "json"] + verb + [cid],
                                     stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], close_fds=True)
            except FileNotFoundError:
                raise SystemError_(f"{self.path}: the runtime binary is not installed") from None
            finally:
                for fd in stdio:
                    if fd > 2:
                        os.close(fd)
            if srv is not None:
                srv.settimeout(30)
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    p.kill()
                    p.wait()
                    raise SystemError_(_last_log_error(logfile) or failed) from None
                _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
                socket.send_fds(console, [b"console"], fds)
                for fd in fds:
                    os.close(fd)
                conn.close()
            p.wait()
            if p.returncode != 0:
                raise SystemError_(_last_log_error(logfile) or failed)
        finally:
            if srv is not None:
                srv.close()
                try:
                    os.unlink(sockpath)
                except OSError:
                    pass

    def _short_socket_path(self, cid: str, kind: str) -> str:
        """A console socket short enough for AF_UNIX, in a directory made on demand."""
        base = os.path.join(os.path.dirname(self.root.rstrip("/")), "s")
        os.makedirs(base, exist_ok=True)
        return os.path.join(base, f"{cid[:12]}-{kind}{time.monotonic_ns() % 10**9}.sock")

    def create(self, cid: str, bundle: str, pid_file: str, console: socket.socket | None) -> int:
        self._run(["create", "--bundle", bundle, "--pid-file", pid_file], cid, console, "c", f"{self.path} create failed")
        with open(pid_file) as f:
            return int(f.read().strip())

    def start(self, cid: str) -> None:
        self._call(["start", cid], "start")

    def exec(self, cid: str, process: dict[str, Any], pid_file: str, console: socket.socket | None) -> None:
        import tempfile
        with tempfile.NamedTemporaryFile("w", dir=self.work_dir, suffix=".json", delete=False) as f:
            json.dump(process, f)
            procfile = f.name
        try:
            self._run(["exec", "--detach", "--process", procfile, "--pid-file", pid_file], cid, console, "e",
                      f"{self.path} exec failed")
        finally:
            os.unlink(procfile)

    def kill(self, cid: str, sig: int, all: bool = False) -> None:
        self._call(["kill"] + (["--all"] if all else []) + [cid, str(sig)], "kill")

    def pause(self, cid: str) -> None:
        self._call(["pause", cid], "pause")

    def resume(self, cid: str) -> None:
        self._call(["resume", cid], "resume")

    def delete(self, cid: str, force: bool = False) -> None:
        self._call(["delete"] + (["--force"] if force else []) + [cid], "delete")

    def state(self, cid: str) -> str:
        return json.loads(self._call(["state", cid], "state").stdout).get("status", "")


def root_of(cfg: Config, name: str) -> str:
    """Each OCI runtime keeps its own state root under berthd's state dir (their files differ)."""
    rt = cfg.runtimes.get(name)
    if rt is None or rt.path == LIBRARY:
        return os.path.join(cfg.state, "runtime")
    return os.path.join(cfg.state, "runtime-" + name)


def for_config(cfg: Config, name: str) -> OCIRuntime:
    """The runtime named ``name`` in berthd's [runtimes] (the one place that chooses)."""
    rt = cfg.runtimes.get(name)
    if rt is None or rt.path == LIBRARY:
        return LibraryRuntime(root_of(cfg, name), systemd=cfg.cgroup_driver == "systemd")
    return BinaryRuntime(name, rt.path, rt.args, root_of(cfg, name))


def from_params(params: dict[str, Any]) -> OCIRuntime:
    """The shim's runtime, from the parameters berthd gave it."""
    if not params.get("runtime_binary"):
        return LibraryRuntime(params["runtime_root"], systemd=bool(params.get("systemd")))
    return BinaryRuntime(params.get("runtime_name") or params["runtime_binary"], params["runtime_binary"],
                         params.get("runtime_args"), params["runtime_root"], work_dir=params["state_dir"])


_ROOT_SYSCTLS: bool | None = None


def _netns_has_root_sysctls() -> bool:
    """Whether a new network namespace shows /proc/sys/net/core/rmem_default (asked once)."""
    global _ROOT_SYSCTLS
    if _ROOT_SYSCTLS is None:
        try:
            p = subprocess.run(["unshare", "--net", "test", "-e", "/proc/sys/net/core/rmem_default"],
                               capture_output=True, timeout=10)
            _ROOT_SYSCTLS = p.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _ROOT_SYSCTLS = False
    return _ROOT_SYSCTLS


def _strip_log(line: str) -> str:
    """A runtime's stderr line: the msg of a JSON log line or of logrus' key=value form."""
    line = line.strip()
    if line.startswith("{"):
        try:
            return json.loads(line).get("msg", line)
        except ValueError:
            return line
    if 'msg="' in line:
        return line.split('msg="', 1)[1].rsplit('"', 1)[0]
    return line


def _last_log_error(path: str) -> str:
    """The last error a runtime wrote to its --log (JSON lines, as containerd's shim reads it)."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("level") in ("error", "fatal"):
            return e.get("msg", "")
    return ""
