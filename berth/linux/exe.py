"""A read-only view of the interpreter for processes that enter containers (CVE-2019-5736).

A process berth places in a container's namespaces (the init before it execs the container's
program, an exec before its execve) is a Python process: its /proc/<pid>/exe is the host's
interpreter. A process in the container with CAP_SYS_PTRACE could open that link for writing
and overwrite the host binary that root runs next. runc executes from a sealed memfd copy (and
later from a read-only overlay) for this; berth runs its interpreter through a read-only bind
mount of it: /proc/<pid>/exe then names a file on a read-only mount, and opening it for
writing fails with EROFS. The mount is made once (per boot and interpreter) under /run, so a
launcher that execs the interpreter through it pays nothing per container.

    ensure_protected()   re-exec the current program through the read-only view when
                         /proc/self/exe is writable (berthd before its zygote; berth-runc
                         create/run/exec); a no-op when already protected.
"""

from __future__ import annotations

import os
import sys

from berth.errors import SystemError_
from berth.linux import syscalls as sc

SAFE_DIR = "/run/berth/exe"
_REEXEC_ENV = "_BERTH_EXE_REEXEC"


def is_protected(path: str = "/proc/self/exe") -> bool:
    """True when the file behind path lies on a read-only mount."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _key(st: os.stat_result) -> str:
    return f"{st.st_dev:x}-{st.st_ino:x}"


def protected_path(exe: str | None = None, safe_dir: str = SAFE_DIR) -> str:
    """The read-only view of exe (default: this process's interpreter), made when missing."""
    real = os.path.realpath(exe or "/proc/self/exe")
    st = os.stat(real)
    target = os.path.join(safe_dir, _key(st), os.path.basename(real))
    if _is_view(target, st):
        return target
    import fcntl
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    lock = os.open(os.path.join(safe_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_view(target, st):
            return target
        try:
            if not os.path.exists(target):
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o755))
            sc.mount(real, target, None, sc.MS_BIND)
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV)
        except OSError as e:
            raise SystemError_(f"cannot make a read-only view of {real} at {target}: {e.strerror}") from None
        if not _is_view(target, st):
            raise SystemError_(f"cannot make a read-only view of {real} at {target}")
        return target
    finally:
        os.close(lock)


def _is_view(target: str, st: os.stat_result) -> bool:
    try:
        t = os.stat(target)
    except OSError:
        return False
    return (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino) and is_protected(target)


def ensure_protected(module: str) -> None:
    """Re-exec `module`'s main() through the read-only view of the interpreter unless this
    process already runs from a read-only file. Keeps argv and sys.path; never loops."""
    if is_protected():
        os.environ.pop(_REEXEC_ENV, None)
        return
    if os.environ.get(_REEXEC_ENV):
        raise SystemError_("the interpreter still runs from a writable file after re-exec "
                           f"through {SAFE_DIR}; refusing to enter a container with it")
    path = protected_path()
    boot = (f"import sys; sys.path[:0] = {[p for p in sys.path if p]!r}; "
            f"from {module} import main; sys.exit(main())")
    env = dict(os.environ, **{_REEXEC_ENV: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, [path, "-S", "-E", "-c", boot, *sys.argv[1:]], env)
