"""The native snapshotter: every snapshot is a full copy of its parent.

Works on any filesystem and without overlayfs. Layout:
``<root>/snapshots/<id>/fs``. An active snapshot or a view is a copy of its
parent's ``fs`` (``cp -a`` semantics: hardlinks, symlinks, devices, fifos,
sockets, owners, modes, xattrs and times are preserved) mounted with a bind
mount (``rw`` or ``ro``). Layers are applied to it with
``apply_layer(..., whiteout_mode="delete")``.
"""

from __future__ import annotations

import errno
import os
import stat

from berth.snapshots import DirectorySnapshotter, Kind, Mount, SnapshotRecord

_COPY_CHUNK = 1 << 30


class NativeSnapshotter(DirectorySnapshotter):
    def _populate(self, sdir: str, kind: Kind, parents: list[SnapshotRecord]) -> None:
        if parents:
            copy_tree(os.path.join(self._dir(parents[0].id), "fs"), os.path.join(sdir, "fs"))

    def _mounts(self, rec: SnapshotRecord, parents: list[SnapshotRecord]) -> list[Mount]:
        access = "ro" if rec.kind == Kind.VIEW else "rw"
        return [Mount("bind", os.path.join(self._dir(rec.id), "fs"), ["rbind", access])]


def copy_tree(src: str, dst: str) -> None:
    """Copy the content of directory src into the existing empty directory dst.

    Never follows a symlink inside src; dst's own attributes become src's.
    """
    links: dict[tuple[int, int], str] = {}
    dirs = [(src, dst, os.lstat(src))]
    stack = [(src, dst)]
    while stack:
        sdir, ddir = stack.pop()
        with os.scandir(sdir) as it:
            names = [e.name for e in it]
        for name in names:
            s, d = os.path.join(sdir, name), os.path.join(ddir, name)
            st = os.lstat(s)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(d, 0o700)
                dirs.append((s, d, st))
                stack.append((s, d))
                continue
            if st.st_nlink > 1:
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    os.link(first, d, follow_symlinks=False)
                    continue
                links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISREG(mode):
                _copy_file(s, d)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            else:
                continue
            _copy_meta(s, d, st)
    for s, d, st in reversed(dirs):  # children before parents: times stick
        _copy_meta(s, d, st)


def _copy_file(src: str, dst: str) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                while os.copy_file_range(sfd, dfd, _COPY_CHUNK):
                    pass
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                   errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
            # Fallback: plain copy from where copy_file_range stopped.
            os.lseek(dfd, os.lseek(sfd, 0, os.SEEK_CUR), os.SEEK_SET)
            while True:
                chunk = os.read(sfd, 1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dfd, view):]
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    """Owner, xattrs, mode, times (in that order: chown clears setuid and caps)."""
    is_link = stat.S_ISLNK(st.st_mode)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        names = []
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or name.startswith("security.selinux"):
                continue
            raise
    if not is_link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
