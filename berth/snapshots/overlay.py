"""The overlayfs snapshotter.

Layout: ``<root>/snapshots/<id>/fs`` (the snapshot's own layer: the upper
directory while active, a lower directory once committed) and ``work`` (the
overlay work directory of an active snapshot).

Mounts:

* active, no parent: a bind mount of ``fs`` (``rbind,rw``);
* active with parents: ``overlay`` with ``upperdir=fs``, ``workdir=work`` and
  ``lowerdir=`` the parents' ``fs``, nearest first;
* view of one layer: a read-only bind mount of the parent's ``fs``; of several
  layers: a lowerdir-only (so read-only) overlay; of nothing: a read-only bind
  of an empty ``fs``.

Options carry absolute paths; a long parent chain can exceed the kernel's
one-page limit for mount options, which the code that performs the mounts
must handle (containerd changes directory and passes relative paths).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from berth.errors import InvalidArgument
from berth.snapshots import DirectorySnapshotter, Kind, Mount, SnapshotRecord, files_size


def check_storage_opts(opts: list[str]) -> None:
    """docker's storage-opts for its overlay2 driver, which berthd's overlayfs snapshotter takes
    in dockerd 20.10's words: overlay2.override_kernel_check (a boolean; the check of kernels
    before 4.0, which this one is not: nothing to override) is taken; overlay2.size (an XFS
    project quota per container) is not supported; any other is unknown."""
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise InvalidArgument(f"Unable to parse key/value option: {opt}")
        key = key.strip().lower()
        if key == "overlay2.override_kernel_check":
            if value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
                raise InvalidArgument(f'strconv.ParseBool: parsing "{value}": invalid syntax')  # (Go's)
        elif key == "overlay2.size":
            raise InvalidArgument("Storage Option overlay2.size is not supported by berthd's overlayfs snapshotter")
        else:
            raise InvalidArgument(f"overlay2: unknown option {key}")


class OverlaySnapshotter(DirectorySnapshotter):
    def __init__(self, root: str):
        super().__init__(root)
        if any(c in self.root for c in ",:"):
            raise InvalidArgument(
                f"overlay snapshotter: root {self.root!r} must not contain ',' or ':'"
            )

    def _populate(self, sdir: str, kind: Kind, parents: list[SnapshotRecord]) -> None:
        if kind == Kind.ACTIVE:
            os.mkdir(os.path.join(sdir, "work"), 0o700)

    def _fs(self, rec: SnapshotRecord) -> str:
        return os.path.join(self._dir(rec.id), "fs")

    def _measure_diff(self, rec: SnapshotRecord, parent: SnapshotRecord | None) -> int:
        """A committed snapshot's fs holds its layer's changes alone: their size."""
        return files_size(self._fs(rec))

    def _mounts(self, rec: SnapshotRecord, parents: list[SnapshotRecord]) -> list[Mount]:
        fs = self._fs(rec)
        if not parents:
            access = "ro" if rec.kind == Kind.VIEW else "rw"
            return [Mount("bind", fs, ["rbind", access])]
        lowers = "lowerdir=" + ":".join(self._fs(p) for p in parents)
        if rec.kind == Kind.ACTIVE:
            work = os.path.join(self._dir(rec.id), "work")
            return [Mount("overlay", "overlay",
                          ["index=off", f"workdir={work}", f"upperdir={fs}", lowers])]
        if len(parents) == 1:
            return [Mount("bind", self._fs(parents[0]), ["rbind", "ro"])]
        return [Mount("overlay", "overlay", ["index=off", lowers])]


def supported(root: str) -> bool:
    """Whether overlayfs mounts work for snapshots under root (a test mount).

    Needs root privileges and the mount/umount programs; creates root if
    missing and leaves nothing else behind.
    """
    if os.geteuid() != 0 or any(c in os.path.abspath(root) for c in ",:"):
        return False
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not mount or not umount:
        return False
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".overlay-check-", dir=root)
    except OSError:
        return False
    try:
        d = {n: os.path.join(tmp, n) for n in ("l1", "l2", "upper", "work", "merged")}
        for p in d.values():
            os.mkdir(p)
        with open(os.path.join(d["l1"], "f"), "w"):
            pass
        opts = f"index=off,lowerdir={d['l2']}:{d['l1']},upperdir={d['upper']},workdir={d['work']}"
        r = subprocess.run([mount, "-t", "overlay", "overlay", "-o", opts, d["merged"]],
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            return False
        try:
            return os.path.exists(os.path.join(d["merged"], "f"))
        finally:
            u = subprocess.run([umount, d["merged"]], capture_output=True, timeout=30)
            if u.returncode != 0:
                subprocess.run([umount, "-l", d["merged"]], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
