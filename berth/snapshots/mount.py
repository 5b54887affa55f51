"""Perform the mounts a snapshotter describes (they never mount anything themselves)."""

import os

from berth.errors import SystemError_
from berth.linux import syscalls as sc

_FLAGS = {"ro": sc.MS_RDONLY, "rbind": sc.MS_BIND | sc.MS_REC, "bind": sc.MS_BIND, "nosuid": sc.MS_NOSUID,
          "nodev": sc.MS_NODEV, "noexec": sc.MS_NOEXEC}


def mount_all(mounts, target):
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
        try:
            if flags & sc.MS_BIND:
                sc.mount(m.source, target, None, flags & (sc.MS_BIND | sc.MS_REC))
                if flags & sc.MS_RDONLY:
                    sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
            else:
                sc.mount(m.source, target, m.type, flags, ",".join(data) or None)
        except OSError as e:
            raise SystemError_(f"cannot mount the container's rootfs ({m.type}) on {target}: {e.strerror}") from None


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
