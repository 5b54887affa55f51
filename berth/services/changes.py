"""docker diff: what a container changed in its root, from its overlay upper dir (or a tree walk)."""

from __future__ import annotations

import os
import posixpath
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Callable

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService


# mount points the runtime creates in the rootfs (docker keeps them in its "init" layer, so its
# diff never shows them)
_INIT_PATHS = {"/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/proc", "/sys",
               "/sys/fs", "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf",
               "/etc/mtab", "/.dockerenv"}

# --- changes (diff) --------------------------------------------------------------------------

MODIFY, ADD, DELETE = 0, 1, 2


def snapshot_dirs(svc: ContainerService, key: str) -> tuple[str, list[str], bool] | None:
    """(its own directory, [lowers nearest first], overlay?) of a snapshot: an overlay's upper and
    lower directories, or a bind's source (a snapshot without a parent: the whole tree)."""
    for m in svc.snapshotter.mounts(key):
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        if m.type == "overlay" and "upperdir" in opts:
            return opts["upperdir"], [d for d in opts.get("lowerdir", "").split(":") if d], True
        if m.type == "bind":
            return m.source, [], False
    return None


def _overlay_dirs(svc: ContainerService, rec: Container) -> tuple[str, list[str]] | None:
    """(upper, [lowers nearest first]) of the container's snapshot, or None if not overlayfs."""
    dirs = snapshot_dirs(svc, rec.snapshot_key)
    return dirs[:2] if dirs is not None and dirs[2] else None


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _same_dir(a: os.stat_result, b: os.stat_result, ids: Callable[[int, int], tuple[int, int]] | None = None) -> bool:
    """ids: the host's ids of a lower layer's (a remapped container's upper directory has those)."""
    return a.st_mode == b.st_mode and (a.st_uid, a.st_gid) == (ids(b.st_uid, b.st_gid) if ids else (b.st_uid, b.st_gid))


def _overlay_changes(upper: str, lowers: list[str]) -> list[tuple]:
    out = []

    def in_lower(rel: str) -> os.stat_result | None:
        for lower in lowers:
            st = _lstat(os.path.join(lower, rel))
            if st is not None:
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None  # whited out in that layer
                return st
        return None

    def walk(d: str, rel: str) -> None:
        try:
            names = sorted(os.listdir(os.path.join(upper, d) if d else upper))
        except OSError:
            return
        for nm in names:
            r = posixpath.join(rel, nm)
            full = os.path.join(upper, r)
            st = _lstat(full)
            if st is None:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("/" + r, DELETE, None))
                continue
            low = in_lower(r)
            if low is None:
                out.append(("/" + r, ADD, st))
            elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(low.st_mode):
                out.append(("/" + r, MODIFY, ("dir", st, low)))
            else:
                out.append(("/" + r, MODIFY, st))
            if stat.S_ISDIR(st.st_mode):
                walk(r, r)
    walk("", "")
    return out


def _tree_changes(new: str, old: str | None) -> list[tuple]:
    """Native snapshotter: compare the container's full copy with its parent's."""
    out = []

    def walk(rel: str) -> None:
        nd = os.path.join(new, rel) if rel else new
        od = os.path.join(old, rel) if rel else old
        try:
            nn = set(os.listdir(nd))
        except OSError:
            nn = set()
        try:
            on = set(os.listdir(od)) if old else set()
        except OSError:
            on = set()
        for nm in sorted(nn | on):
            r = posixpath.join(rel, nm)
            ns_, os_ = _lstat(os.path.join(new, r)), _lstat(os.path.join(old, r)) if old else None
            if ns_ is None:
                out.append(("/" + r, DELETE, None))
                continue
            if os_ is None:
                out.append(("/" + r, ADD, ns_))
            elif stat.S_ISDIR(ns_.st_mode) and stat.S_ISDIR(os_.st_mode):
                out.append(("/" + r, MODIFY, ("dir", ns_, os_)))
            elif (stat.S_IFMT(ns_.st_mode) != stat.S_IFMT(os_.st_mode) or ns_.st_mode != os_.st_mode
                  or ns_.st_uid != os_.st_uid or ns_.st_gid != os_.st_gid or ns_.st_rdev != os_.st_rdev
                  or ns_.st_size != os_.st_size or ns_.st_mtime_ns != os_.st_mtime_ns):
                out.append(("/" + r, MODIFY, ns_))
            if stat.S_ISDIR(ns_.st_mode):
                walk(r)
    walk("")
    return out


def changes(svc: ContainerService, ns: str, ref: str) -> list[dict]:
    """GET /containers/{id}/changes: [{"Path", "Kind"}] (0 modified, 1 added, 2 deleted)."""
    rec = svc.get(ns, ref)
    dirs = _overlay_dirs(svc, rec)
    if dirs is not None:
        raw = _overlay_changes(*dirs)
    else:
        new = svc.snapshotter.fs_path(rec.snapshot_key)
        parent = svc.snapshotter.stat(rec.snapshot_key).parent
        old = svc.snapshotter.fs_path(parent) if parent else None
        raw = _tree_changes(new, old)
    raw = [c for c in raw if c[0] not in _INIT_PATHS]
    remap = svc.remapped(rec)
    ids = remap.to_host if remap is not None else None
    # a directory is reported when it changed itself, or when something below it was added or
    # deleted (docker's rule); one that only holds runtime mount points is not
    paths = [c[0] for c in raw]
    out = []
    for path, kind, info in raw:
        if path == "/etc" and kind == ADD and stat.S_ISDIR(info.st_mode):
            # an image without /etc: dockerd's init layer has one (for /etc/hosts...), so it is not
            # the container's: shown (changed) only when something below it is
            if not any(p.startswith("/etc/") for p in paths):
                continue
            kind = MODIFY
        if kind == MODIFY and type(info) is tuple:  # ("dir", st, low); a stat_result is a tuple too
            _, st, low = info
            below = any(p.startswith(path + "/") for p in paths)
            if _same_dir(st, low, ids) and not below:
                continue
        out.append({"Path": path, "Kind": kind})
    return out
