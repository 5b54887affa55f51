"""Paths inside a root directory (a container's rootfs), resolved as if that root were "/".

The one owner of in-root path resolution: symlinks (absolute or relative) are followed within
the root and ".." stops at it, so no path, however hostile, leads out of the root.

- open_in_root: openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), atomic against concurrent
  renames; on a kernel without openat2 (< 5.6), the walk of secure_join and an O_NOFOLLOW open
  of the result (not atomic against a container changing its files meanwhile).
- secure_join: the lexical-plus-readlink walk (like filepath-securejoin), keeping components
  that do not exist yet.
- ensure_in_root: create the path (parents as directories) where it leads inside the root.
- resolve_in: the same walk over a host path (a build's rootfs or context): a host path out.
- read_in_root: a small file of a rootfs (passwd, group) read through open_in_root.
"""

import errno
import os
import stat

from berth.errors import InvalidArgument
from berth.linux import syscalls as sc

TYPE_CHECKING = False  # no typing at run time: the runtime's init imports this
if TYPE_CHECKING:
    from collections.abc import Callable

_IN_ROOT = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_HAVE_OPENAT2: bool | None = None  # learned on the first call


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open path (absolute, as seen from inside the root) within the root; returns an fd."""
    global _HAVE_OPENAT2
    rel = path.lstrip("/") or "."
    if _HAVE_OPENAT2 is not False:
        try:
            fd = sc.openat2(rootfd, rel, flags, 0, _IN_ROOT)
            _HAVE_OPENAT2 = True
            return fd
        except OSError as e:
            if e.errno != errno.ENOSYS or _HAVE_OPENAT2:
                raise
            _HAVE_OPENAT2 = False  # a kernel older than 5.6
    rel = secure_join(rootfd, rel) or "."
    return os.open(rel, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rootfd)


def read_in_root(root: str, path: str, limit: int = 4 << 20) -> bytes:
    """The content (at most limit bytes) of the regular file at path inside the host directory
    root (an /etc/passwd of a rootfs), resolved inside it: a symlink there never leads the
    reader to a file of the host. OSError when it is absent or not a regular file."""
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return read_in_rootfd(rootfd, path, limit)
    finally:
        os.close(rootfd)


def read_in_rootfd(rootfd: int, path: str, limit: int = 4 << 20) -> bytes:
    """read_in_root() for a root open as rootfd."""
    fd = open_in_root(rootfd, path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path}: not a regular file")
        chunks, left = [], limit
        while left > 0:
            data = os.read(fd, min(left, 1 << 16))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _walk(path: str, link_of: "Callable[[str], str | None]", follow_last: bool, max_links: int) -> list[str]:
    """The components of path resolved as if the root were "/": link_of(relative path) is the
    target of a symlink there (None: not a symlink, or absent); an absolute target restarts at
    the root, ".." stops at it. More than max_links symlinks: ELOOP."""
    todo = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        target = link_of("/".join(done + [comp])) if todo or follow_last else None
        if target is None:
            done.append(comp)
            continue
        links += 1
        if links > max_links:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p and p != "."] + todo
    return done


def secure_join(rootfd: int, path: str) -> str:
    """Resolve path inside the root the way the kernel would if the root were "/": symlinks
    (absolute or relative) are followed within the root, ".." stops at the root. Components
    that do not exist yet are kept as they are. Returns a relative path with no symlinks in
    the existing part (like filepath-securejoin)."""
    def link_of(rel: str) -> str | None:
        try:
            st = os.stat(rel, dir_fd=rootfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return os.readlink(rel, dir_fd=rootfd) if stat.S_ISLNK(st.st_mode) else None
    return "/".join(_walk(path, link_of, True, 255))


def ensure_in_root(rootfd: int, path: str, directory: bool = True, mode: int = 0o755) -> int:
    """Create path inside the root if needed (parents as directories); return an O_PATH fd.

    Symlinks along the way, and a dangling one at the end, are resolved inside the root,
    never outside it: what gets created is where the path leads when the rootfs is "/".
    """
    try:
        return open_in_root(rootfd, path)
    except FileNotFoundError:
        pass
    rel = secure_join(rootfd, path)
    parts = rel.split("/") if rel else []
    for i, comp in enumerate(parts):
        pfd = open_in_root(rootfd, "/".join(parts[:i]) or ".", os.O_PATH | os.O_DIRECTORY)
        made = "mkdir" if i < len(parts) - 1 or directory else "open"
        try:
            if made == "mkdir":
                os.mkdir(comp, mode, dir_fd=pfd)
            else:
                os.close(os.open(comp, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=pfd))
        except FileExistsError:
            pass
        except OSError as e:
            # what could not be made, as the root sees it ("/a/b"), and how (e.op: mkdir or open)
            err = OSError(e.errno, e.strerror, "/" + "/".join(parts[:i + 1]))
            err.op = made  # type: ignore[attr-defined]
            raise err from None
        finally:
            os.close(pfd)
    return open_in_root(rootfd, rel)


def resolve_in(root: str, path: str, follow_last: bool = True) -> str:
    """The host path of ``path`` inside the host directory ``root``, symlinks resolved as if
    ``root`` were "/" (an absolute target restarts at root, ".." never climbs above it); the
    last component is followed only with follow_last. Never leaves root."""
    def link_of(rel: str) -> str | None:
        cand = os.path.join(root, rel)
        return os.readlink(cand) if os.path.islink(cand) else None
    try:
        done = _walk(path, link_of, follow_last, 40)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise InvalidArgument(f"too many levels of symbolic links in {path!r}") from None
    return os.path.join(root, *done) if done else root
