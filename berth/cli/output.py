"""Local files the CLI writes what the daemon sends into, checked before the daemon is asked, as
the docker CLI checks them. The -o file of `save` and `export` (moby's atomicwriter): nothing there
yet, or a regular file, in a directory that exists (never a device, a directory, a link, a pipe or
a socket, so `-o /dev/null` cannot replace the host's /dev/null), the archive written to a
temporary file beside it, synced, made 0600 and renamed over it only when it is whole. The
destination of `cp` out of a container (the CLI's ValidateOutputPath): not a device."""

import os
import stat

from berth.errors import BerthError
from berth.goquote import errno_text


def check_destination(path: str, what: str) -> None:
    """atomicwriter's validateDestination, its words after `what` ("failed to save image")."""
    if not path:
        raise BerthError(f"{what}: file name is empty")
    d = os.path.dirname(path)
    if d not in ("", ".", ".."):
        try:
            is_dir = stat.S_ISDIR(os.stat(d).st_mode)
        except OSError as e:
            raise BerthError(f"{what}: invalid output path: stat {d}: {errno_text(e)}") from None
        if not is_dir:
            raise BerthError(f"{what}: invalid output path: stat {d}: not a directory")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise BerthError(f"{what}: failed to stat output path: lstat {path}: {errno_text(e)}") from None
    if stat.S_ISREG(mode):
        return
    why = ("cannot write to a directory" if stat.S_ISDIR(mode) else
           "cannot write to a symbolic link directly" if stat.S_ISLNK(mode) else
           "cannot write to a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
           "cannot write to a socket" if stat.S_ISSOCK(mode) else
           "cannot write to a character device file" if stat.S_ISCHR(mode) else
           "cannot write to a block device file" if stat.S_ISBLK(mode) else
           f"unknown file mode: {oct(mode)}")
    raise BerthError(f"{what}: {why}")


def check_cp_destination(dst: str) -> None:
    """docker's ValidateOutputPath for cp's local destination: its directory must exist, and what
    is there (symlinks followed) a directory or a regular file: a device is refused, never
    replaced (`cp c:/f /dev/null`)."""
    from berth.goquote import quote
    path = os.path.abspath(dst)
    d = os.path.dirname(path)
    if not os.path.exists(d):
        raise BerthError(f"invalid output path: directory {quote(d)} does not exist")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise BerthError(f"stat {path}: {errno_text(e)}") from None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise BerthError(f"invalid output path: {quote(path)} must be a directory or a regular file: got a device")


def write_atomically(path: str, what: str, copy) -> None:
    """copy(f) writes the whole archive to f, a temporary file beside path; once it returns, the
    file is synced, made 0600 and renamed over path. On any failure the temporary file goes and
    path is left as it was."""
    import tempfile
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=d)
    except OSError as e:
        raise BerthError(f"{what}: open {e.filename or d}: {errno_text(e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            copy(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise BerthError(f"{what}: {e.filename or path}: {errno_text(e)}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
