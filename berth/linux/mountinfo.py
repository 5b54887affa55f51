"""The host's mount table (/proc/self/mountinfo) as the propagation checks of dockerd and
containerd read it: which mount a path lies on, and whether that mount is shared or a slave."""

from __future__ import annotations

import os


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (space, tab, newline, backslash) undone."""
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def source_mount(path: str) -> tuple[str, str]:
    """(mount point, optional fields) of the mount that path (symlinks resolved) lies on: the
    deepest mount point above it, the first of equals (moby's and containerd's getSourceMount)."""
    path = os.path.realpath(path)
    best, optional = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 7:
                continue
            mp = _unescape(fields[4])
            if not (path == mp or mp == "/" or path.startswith(mp + "/")) or len(mp) <= len(best):
                continue
            best = mp
            try:
                optional = " ".join(fields[6:fields.index("-", 6)])
            except ValueError:
                optional = ""
    return best or "/", optional


def shared(optional: str) -> bool:
    return any(o.startswith("shared:") for o in optional.split())


def shared_or_slave(optional: str) -> bool:
    return any(o.startswith(("shared:", "master:")) for o in optional.split())


def mounts_under(path: str) -> list[str]:
    """The mount points at or below path (as the mount table names them), deepest first."""
    path = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                mp = _unescape(fields[4])
                if mp == path or mp.startswith(path + "/"):
                    out.append(mp)
    return sorted(set(out), key=lambda m: -m.count("/"))
