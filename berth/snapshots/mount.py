"""Perform the mounts a snapshotter describes (they never mount anything themselves)."""

import os

from berth.errors import SystemError_
from berth.linux import syscalls as sc

_FLAGS = {"ro": sc.MS_RDONLY, "rbind": sc.MS_BIND | sc.MS_REC, "bind": sc.MS_BIND, "nosuid": sc.MS_NOSUID,
          "nodev": sc.MS_NODEV, "noexec": sc.MS_NOEXEC}


def mount_all(mounts, target, idmap=None):
    """The mounts at target. idmap: (a user namespace's path, the host uid and gid of its root):
    the files are seen with their owners mapped through that namespace (a container in it sees
    its image's root's files as its root's): each layer (a lower directory, a bind's source) is
    an idmapped mount (mount_setattr(2)) for the overlay, which holds it once mounted; the upper
    directory, where the container's changes go, is its root's."""
    os.makedirs(target, exist_ok=True)
    for m in mounts:
        flags = 0
        data = []
        for o in m.options:
            if o in _FLAGS:
                flags |= _FLAGS[o]
            elif o == "rw":
                continue
            else:
                data.append(o)
        if idmap is not None:
            _mount_idmapped(m, flags, data, target, idmap)
            continue
        try:
            if flags & sc.MS_BIND:
                sc.mount(m.source, target, None, flags & (sc.MS_BIND | sc.MS_REC))
                if flags & sc.MS_RDONLY:
                    sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
            else:
                sc.mount(m.source, target, m.type, flags, ",".join(data) or None)
        except OSError as e:
            raise SystemError_(f"cannot mount the container's rootfs ({m.type}) on {target}: {e.strerror}") from None


def _attach(fd, path):
    """move_mount(2) of the detached mount fd onto path (a directory or a file)."""
    to = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        sc.move_mount(fd, to)
    finally:
        os.close(to)


def _mount_idmapped(m, flags, data, target, idmap):
    userns_path, uid, gid = idmap
    userns = os.open(userns_path, os.O_RDONLY | os.O_CLOEXEC)
    layers = target.rstrip("/") + ".idmapped"  # (beside the target: another mount's are its own)
    dirs, attached = [], []

    def mapped(src, at, recursive=False):
        fd = sc.open_tree(src, recursive=recursive)
        try:
            sc.mount_setattr(fd, sc.MOUNT_ATTR_IDMAP, 0, recursive=recursive, userns_fd=userns)
            _attach(fd, at)
        finally:
            os.close(fd)
    try:
        if flags & sc.MS_BIND:
            mapped(m.source, target, bool(flags & sc.MS_REC))
            if flags & sc.MS_RDONLY:
                sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
            return
        opts = []
        for o in data:
            key, _, value = o.partition("=")
            if key == "lowerdir":
                lowers = []
                for i, lower in enumerate(value.split(":")):
                    at = os.path.join(layers, str(i))
                    os.makedirs(at, exist_ok=True)
                    dirs.append(at)
                    mapped(lower, at)
                    attached.append(at)
                    lowers.append(at)
                o = "lowerdir=" + ":".join(lowers)
            elif key == "upperdir":
                st = os.stat(value)
                if (st.st_uid, st.st_gid) == (0, 0):  # (a new one: the container's root's from now on)
                    os.chown(value, uid, gid)
            opts.append(o)
        sc.mount(m.source, target, m.type, flags, ",".join(opts) or None)
    except OSError as e:
        raise SystemError_(f"cannot mount the container's rootfs ({m.type}) on {target} id-mapped: "
                           f"{e.strerror}") from None
    finally:
        os.close(userns)
        for at in attached:  # the overlay holds its layers: their mounts go from the table
            unmount(at)
        for at in dirs + [layers] if dirs else ():
            try:
                os.rmdir(at)
            except OSError:
                pass


def detach(target):
    """unmount(target), keeping a reference to what was mounted there: the mount is gone from the
    mount table at once, the kernel's teardown of it (an overlay syncs its upper filesystem:
    ms) runs when the returned fd is closed. None when target cannot be opened."""
    try:
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        unmount(target)
    except BaseException:
        os.close(fd)
        raise
    return fd


def unmount(target):
    """Unmount everything at target (lazily); a target that is not mounted is fine."""
    for _ in range(8):
        try:
            sc.umount2(target, sc.MNT_DETACH)
        except OSError:
            return


def unmount_under(path):
    """Detach every mount at or below path (deepest first): before a directory tree is deleted,
    so that the deletion never reaches through a mount into what it shows (a volume's files)."""
    from berth.linux.mountinfo import mounts_under
    try:
        points = mounts_under(path)
    except OSError:
        return
    for mp in points:
        unmount(mp)
