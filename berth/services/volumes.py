"""Volumes and a container's mounts, the way docker has them.

Volumes (the local driver): a metadata object of kind "volume" per volume (id = name) in its
namespace, data {"Driver", "Options", "CreatedAt"}; the files under
  <root>/volumes/<namespace>/<name>/_data
With options (`-o type=tmpfs,device=tmpfs,o=size=64m`) _data is a mount point: the volume is
mounted when a container using it starts and unmounted when none that uses it runs (docker's
local driver).

A container's mounts (HostConfig.Binds, HostConfig.Mounts, VolumesFrom, Config.Volumes and the
image's VOLUMEs) are resolved once, at create, into a list of mount points kept in the
container's record (services.createspec.CreateSpec.mounts: docker's MountPoint shape plus
berth's own keys). At start they become plain OCI bind mounts (and tmpfs mounts); the runtime resolves every destination inside
the container's root (openat2 RESOLVE_IN_ROOT), so a symlink in the image cannot send a mount
out of it. A new, empty volume gets the image's content at its destination first (copy-up).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import threading
from typing import TYPE_CHECKING

from berth.errors import BerthError, FailedPrecondition, InvalidArgument, NotFound, SystemError_
from berth.gotime import rfc3339nano as _now
from berth.services.createspec import mounts_of

if TYPE_CHECKING:
    from berth.daemon.config import Config
    from berth.linux.userns import Remap
    from berth.metadata import MetadataStore
    from berth.metadata.records import Object
    from berth.services.events import EventBus
    from berth.services.state import ContainerStates

ANON_LABEL = "com.docker.volume.anonymous"
LOCAL_OPTS = ("type", "device", "o")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_TMPFS_DEFAULT = ["nosuid", "nodev", "noexec"]


def check_name(name: str) -> None:
    if len(name) < 2:
        raise InvalidArgument(f"create {name}: volume name is too short, names should be at least two "
                              "alphanumeric characters")
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                              'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                              'directory, use absolute path')


def _check_dest(spec: str, dest: str, kind: str = "volume") -> str:
    if not dest:
        raise InvalidArgument(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                              f"invalid mount path: '{dest}' mount path must be absolute")
    dest = os.path.normpath(dest)
    if dest == "/":
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                              "invalid specification: destination can't be '/'")
    return dest


def _valid_mode(mode: str) -> bool:
    """moby's linux parser: at most one of each kind (ro/rw, z/Z, a propagation, nocopy, and a
    consistency: consistent, cached, delegated, which mean nothing on Linux)."""
    rw = prop = label = copy = consistency = 0
    for m in mode.split(","):
        if m in ("ro", "rw"):
            rw += 1
        elif m in ("z", "Z"):
            label += 1
        elif m == "nocopy":
            copy += 1
        elif m in _PROPAGATION:
            prop += 1
        elif m in ("consistent", "cached", "delegated"):
            consistency += 1
        else:
            return False
    return rw <= 1 and prop <= 1 and label <= 1 and copy <= 1 and consistency <= 1


def parse_bind(spec: str) -> dict:
    """A HostConfig.Binds entry (`-v`): "[src:]dst[:mode]" -> a mount point (not yet checked
    against the host or the volumes)."""
    if not isinstance(spec, str):
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    parts = spec.split(":")
    if len(parts) > 3 or parts[0] == "":  # dockerd's words (its linux parser)
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    if any(p == "" for p in parts):
        raise InvalidArgument(f"invalid spec: {spec}: empty section between colons")
    src, mode = "", ""
    if len(parts) == 1:
        dst = parts[0]
    elif len(parts) == 2:
        if _valid_mode(parts[1]):  # a destination and a mode: dockerd's linux parser takes no such volume
            raise InvalidArgument(f"invalid volume specification: '{spec}'")
        src, dst = parts
    else:
        src, dst, mode = parts
        if not _valid_mode(mode):
            raise InvalidArgument(f"invalid mode: {mode}")
    modes = mode.split(",") if mode else []
    kind = "bind" if src.startswith("/") else "volume"
    dst = _check_dest(spec, dst, kind)
    prop = next((m for m in modes if m in _PROPAGATION), "")
    extra = "VolumeOptions" if kind == "bind" and "nocopy" in modes else "BindOptions" if kind == "volume" and prop else ""
    if extra:  # nocopy is a volume's option, a propagation a bind's
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                              f"field {extra} must not be specified")
    if kind == "volume" and src:
        check_name(src)
    mp = {"Type": kind, "Destination": dst, "RW": "ro" not in modes, "Mode": mode,
          "Propagation": (prop or "rprivate") if kind == "bind" else ""}
    if kind == "bind":
        mp.update(Source=os.path.normpath(src), CreateSource=True, PropagationGiven=bool(prop))
    else:
        mp.update(Name=src, CopyUp="nocopy" not in modes, Driver="local", Mode=mode or "z")
    return mp


def parse_mount(m: dict) -> dict:
    """A HostConfig.Mounts entry (`--mount`, docker's mount.Mount) -> a mount point."""
    if not isinstance(m, dict):
        raise InvalidArgument("invalid mount config: not an object")
    kind = m.get("Type") or ""
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f'invalid mount config for type "{kind}": mount type unknown')
    err = f'invalid mount config for type "{kind}": '
    dst = m.get("Target") or m.get("Destination") or ""
    if not dst:
        raise InvalidArgument(err + "field Target must not be empty")
    if not dst.startswith("/"):
        raise InvalidArgument(err + f"invalid mount path: '{dst}' mount path must be absolute")
    dst = os.path.normpath(dst)
    if dst == "/":
        raise InvalidArgument(err + "invalid specification: destination can't be '/'")
    src = m.get("Source") or ""
    ro = bool(m.get("ReadOnly"))
    for opt, allowed in (("BindOptions", "bind"), ("VolumeOptions", "volume"), ("TmpfsOptions", "tmpfs")):
        if m.get(opt) and kind != allowed:
            raise InvalidArgument(err + f"field {opt} must not be specified")
    mp = {"Type": kind, "Destination": dst, "RW": not ro, "Mode": "", "Propagation": ""}
    if kind == "bind":
        if not src:
            raise InvalidArgument(err + "field Source must not be empty")
        if not src.startswith("/"):
            raise InvalidArgument(err + f"invalid mount path: '{src}' mount path must be absolute")
        bo = m.get("BindOptions") or {}
        if not os.path.exists(src) and not bo.get("CreateMountpoint"):  # (API 1.42: made at the start, as -v's)
            raise InvalidArgument(err + f"bind source path does not exist: {src}")
        given = bo.get("Propagation") or ""
        prop = given or "rprivate"
        if prop not in _PROPAGATION:
            raise InvalidArgument(err + f"invalid propagation mode: {prop}")
        mp.update(Source=os.path.normpath(src), Propagation=prop, PropagationGiven=bool(given),
                  CreateSource=bool(bo.get("CreateMountpoint")))
        # (dockerd's words, which it says at the start: berth at the create)
        for key in ("ReadOnlyNonRecursive", "ReadOnlyForceRecursive"):
            if bo.get(key) and not ro:
                raise InvalidArgument(f"mount options conflict: !ReadOnly && BindOptions.{key}")
        if bo.get("ReadOnlyNonRecursive") and bo.get("ReadOnlyForceRecursive"):
            raise InvalidArgument("mount options conflict: ReadOnlyNonRecursive && BindOptions.ReadOnlyForceRecursive")
        for key in ("NonRecursive", "ReadOnlyNonRecursive", "ReadOnlyForceRecursive"):
            if bo.get(key):
                mp[key] = True
    elif kind == "volume":
        if src:
            check_name(src)
        vo = m.get("VolumeOptions") or {}
        dc = vo.get("DriverConfig") or {}
        mp.update(Name=src, Driver=dc.get("Name") or "local", CopyUp=not vo.get("NoCopy"), Mode="z",
                  VolumeOpts=dict(dc.get("Options") or {}), VolumeLabels=dict(vo.get("Labels") or {}))
        sub = vo.get("Subpath") or ""
        if sub:  # API 1.45: a part of the volume (dockerd's words)
            if not src:
                raise InvalidArgument(err + "must not set Subpath when using anonymous volumes")
            norm = os.path.normpath(sub)
            if sub.startswith("/") or norm == ".." or norm.startswith("../"):
                raise InvalidArgument(err + "subpath must be a relative path within the volume")
            mp["Subpath"] = sub
    else:
        if src:
            raise InvalidArgument(err + "field Source must not be specified")
        to = m.get("TmpfsOptions") or {}
        opts = list(_TMPFS_DEFAULT)
        if to.get("SizeBytes"):
            size = to["SizeBytes"]
            if not isinstance(size, int) or size < 0:
                raise InvalidArgument(err + f"invalid tmpfs size: {size!r}")
            opts.append(f"size={size}")
        if to.get("Mode"):
            opts.append(f"mode={int(to['Mode']):o}")
        mp.update(Source="", TmpfsOptions=opts)
    return mp


# mount(8) flags moby's ParseOptions takes out of a tmpfs's options (runc's tmpcopyup too), and the
# data options its ParseTmpfsOptions lets through
_MOUNT_FLAGS = frozenset(("defaults", "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async",
                          "dirsync", "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "bind",
                          "rbind", "unbindable", "runbindable", "private", "rprivate", "shared", "rshared", "slave",
                          "rslave", "relatime", "norelatime", "strictatime", "nostrictatime", "tmpcopyup",
                          "notmpcopyup"))
_TMPFS_DATA = frozenset(("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"))


def parse_tmpfs(dest: str, opts: str) -> dict:
    """A HostConfig.Tmpfs entry (`--tmpfs /path:opts`)."""
    # dockerd's checks and words (ValidateTmpfsMountDestination, mount.ParseTmpfsOptions)
    if not dest:
        raise InvalidArgument('invalid mount config for type "tmpfs": field Target must not be empty')
    if dest == "/":
        raise InvalidArgument("destination can't be '/'")
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
    dest = os.path.normpath(dest)
    if not isinstance(opts, str):
        raise InvalidArgument(f"invalid tmpfs options for {dest}: {opts!r}")
    words = [o for o in opts.split(",") if o] if opts else []
    for w in words:
        k, _, v = w.partition("=")
        if k not in _MOUNT_FLAGS and k not in _TMPFS_DATA:
            from berth.goquote import quote
            parts = [k, v] if "=" in w else [k]
            raise InvalidArgument(f"invalid tmpfs option [{' '.join(quote(x) for x in parts)}]")
        if k == "size" and not re.fullmatch(r"\d+[kmgKMG%]?", v):
            raise InvalidArgument(f"invalid tmpfs option {w!r} for {dest}")
    return {"Type": "tmpfs", "Destination": dest, "Source": "", "RW": "ro" not in words, "Mode": "",
            "Propagation": "", "TmpfsOptions": _TMPFS_DEFAULT + words, "Hidden": True}


class VolumeService:
    def __init__(self, cfg: Config, meta: MetadataStore, states: ContainerStates | None = None,
                 events: EventBus | None = None) -> None:
        from berth.services.events import EventBus
        from berth.services.state import ContainerStates
        self.cfg = cfg
        self.meta = meta
        self.events = events if events is not None else EventBus()
        self.base = os.path.join(cfg.root, "volumes")
        self.states = states if states is not None else ContainerStates(meta)  # who runs
        self._lock = threading.RLock()
        self.lock = self._lock  # held by a container create around its record (see check_exist)
        self._rro_cache: dict[tuple[str, str], bool] = {}  # (runtime binary, feature) -> whether it has it
        self.remap: Remap | None = None  # docker's userns-remap (berth.linux.userns.Remap): new volumes are its root's

    # --- paths, views ---

    def vdir(self, ns: str, name: str) -> str:
        return os.path.join(self.base, ns, name)

    def data_dir(self, ns: str, name: str) -> str:
        return os.path.join(self.base, ns, name, "_data")

    def _view(self, o) -> dict:
        d = o.data or {}
        # none given: null, as dockerd's (a volume made by `docker volume create` too)
        # CreatedAt in whole seconds, as dockerd's (RFC 3339, the stored time's fraction dropped)
        return {"CreatedAt": re.sub(r"\.\d+Z$", "Z", d.get("CreatedAt") or ""), "Driver": d.get("Driver") or "local",
                "Labels": dict(o.labels or {}) or None, "Mountpoint": self.data_dir(o.namespace, o.name),
                "Name": o.name, "Options": dict(d.get("Options") or {}) or None, "Scope": "local"}

    # --- the volume verbs ---

    def create(self, ns: str, name: str | None = None, driver: str | None = None, opts: dict | None = None,
               labels: dict | None = None) -> dict:
        driver = driver or "local"
        opts = dict(opts or {})
        labels = dict(labels or {})
        named = bool(name)
        if not named:  # anonymous
            name = secrets.token_hex(32)
            labels.setdefault(ANON_LABEL, "")
        # dockerd's volume store names the operation and the volume in what it refuses; the driver
        # is looked up before the name is checked (the local driver checks names)
        if driver != "local":
            raise InvalidArgument(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        if named:
            check_name(name)
        for k, v in opts.items():
            if k not in LOCAL_OPTS:
                raise InvalidArgument(f'create {name}: invalid option: "{k}"')  # dockerd's words (the local driver)
            if not isinstance(v, str):
                raise InvalidArgument(f'invalid option "{k}": not a string')
        if opts and (not opts.get("type") or not opts.get("device")):
            missing = "type" if not opts.get("type") else "device"
            raise InvalidArgument(f'create {name}: missing required option: "{missing}"')
        with self._lock:
            o = self.meta.find_object(ns, "volume", name)
            if o is not None:
                if (o.data or {}).get("Driver", "local") != driver:
                    raise FailedPrecondition(f"create {name}: a volume with the name {name} already exists "
                                             f"with driver {o.data.get('Driver')}")
                self.events.publish(ns, "volume", "create", name, driver=driver)
                return self._view(o)
            data = self.data_dir(ns, name)
            for d in (self.base, os.path.join(self.base, ns)):
                os.makedirs(d, mode=0o701, exist_ok=True)
            os.makedirs(self.vdir(ns, name), mode=0o701, exist_ok=True)
            os.makedirs(data, mode=0o755, exist_ok=True)
            try:
                if self.remap is not None:  # (dockerd's: the remapped containers' root may write in it)
                    os.chown(data, *self.remap.root)
                o = self.meta.create_object(ns, "volume", name, name,
                                            {"Driver": driver, "Options": opts, "CreatedAt": _now()}, labels)
            except BaseException:
                _rmtree(self.vdir(ns, name))
                raise
        self.events.publish(ns, "volume", "create", name, driver=driver)
        return self._view(o)

    def _get(self, ns: str, name: str) -> Object:
        o = self.meta.find_object(ns, "volume", name) if isinstance(name, str) and name else None
        if o is None:
            raise NotFound(f"get {name}: no such volume")
        return o

    def inspect(self, ns: str, name: str) -> dict:
        return self._view(self._get(ns, name))

    def users(self, ns: str, name: str) -> list[str]:
        """Ids of the containers (running or not) that have the volume mounted."""
        out = []
        for rec in self.meta.list_containers(ns):
            for m in mounts_of(rec):
                if m.get("Type") == "volume" and m.get("Name") == name:
                    out.append(rec.id)
                    break
        return out

    def _used(self, ns: str) -> set[str]:
        used = set()
        for rec in self.meta.list_containers(ns):
            for m in mounts_of(rec):
                if m.get("Type") == "volume":
                    used.add(m.get("Name"))
        return used

    def remove(self, ns: str, name: str, force: bool = False) -> None:
        with self._lock:
            o = self.meta.find_object(ns, "volume", name) if name else None
            if o is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.users(ns, name)
            if users:
                raise FailedPrecondition(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self._unmount(self.data_dir(ns, name))
            self.meta.delete_object(ns, "volume", name)
            _rmtree(self.vdir(ns, name))
        self.events.publish(ns, "volume", "destroy", name, driver=(o.data or {}).get("Driver") or "local")

    def prune(self, ns: str, filters: dict | None = None) -> dict:
        """Unused volumes, anonymous ones only unless the filter all=true (docker 23+)."""
        filters = _norm_filters(filters)
        for k in filters:
            if k not in ("label", "label!", "all"):
                raise InvalidArgument(f"Invalid filter '{k}'")
        all_ = any(v.lower() in ("1", "true") for v in filters.get("all") or [])
        deleted, space = [], 0
        with self._lock:
            used = self._used(ns)
            for o in self.meta.list_objects(ns, "volume"):
                if o.name in used or not _labels_match(filters, o.labels or {}):
                    continue
                if not all_ and ANON_LABEL not in (o.labels or {}):
                    continue
                size = _du(self.data_dir(ns, o.name))
                try:
                    self.remove(ns, o.name)
                except BerthError:
                    continue
                deleted.append(o.name)
                space += size
        self.events.publish(ns, "volume", "prune", "", reclaimed=space)  # dockerd's, even when none went
        return {"VolumesDeleted": deleted, "SpaceReclaimed": space}

    # --- a container's mounts ---

    def resolve(self, ns: str, body: dict, image_config: dict | None, cri: bool = False,
                ro_nonrecursive: bool = False) -> tuple[list[dict], list[str]]:
        """At container create: HostConfig.Binds/Mounts/Tmpfs/VolumesFrom, Config.Volumes and the
        image's VOLUMEs -> (mount points, names of the volumes created for them). Everything is
        checked before anything is created. cri: a CRI container's (containerd has no rule for
        binds of the daemon's own directories; its read-only binds are not recursively so).
        ro_nonrecursive: read-only binds only read-only at their top (a client of the Docker API
        before 1.44: dockerd's DefaultReadOnlyNonRecursive); from 1.44 on they are recursively
        read-only where the runtime can make them so."""
        hc = body.get("HostConfig") or {}
        ic = (image_config or {}).get("config") or {}
        points = {}  # destination -> mount point
        for ref in hc.get("VolumesFrom") or []:
            cref, mode = parse_volumes_from(str(ref))
            from berth.services.containers import find_container
            try:
                other = find_container(self.meta, ns, cref)
            except NotFound as e:  # dockerd's: the create's argument is wrong (400), not a missing image's 404
                raise InvalidArgument(e.message) from None
            for m in mounts_of(other):
                if m.get("Type") == "tmpfs":
                    continue
                m = dict(m, CopyUp=False, CreateSource=False)
                # as dockerd's: read-write only where the source's mount is and the mode is not ro
                m["RW"] = bool(m.get("RW", True)) and "ro" not in mode.split(",")
                points[m["Destination"]] = m
        explicit = {}
        for b in hc.get("Binds") or []:
            mp = parse_bind(b)
            if mp["Destination"] in explicit:
                raise InvalidArgument(f"Duplicate mount point: {mp['Destination']}")
            explicit[mp["Destination"]] = mp
        for m in hc.get("Mounts") or []:
            mp = parse_mount(m)
            if mp["Destination"] in explicit:
                raise InvalidArgument(f"Duplicate mount point: {mp['Destination']}")
            explicit[mp["Destination"]] = mp
        tmpfs = hc.get("Tmpfs") or {}
        if not isinstance(tmpfs, dict):
            raise InvalidArgument("HostConfig.Tmpfs must be an object of path: options")
        for dest, opts in tmpfs.items():
            mp = parse_tmpfs(dest, opts or "")
            if mp["Destination"] in explicit:
                raise InvalidArgument(f"Duplicate mount point: {mp['Destination']}")
            explicit[mp["Destination"]] = mp
        if not cri:
            for mp in explicit.values():
                if mp["Type"] == "bind":
                    self._daemon_dir_bind(mp)
        runtime = hc.get("Runtime") or self.cfg.default_runtime
        for mp in explicit.values():
            if mp["Type"] != "bind" or mp.get("RW", True):
                continue
            if mp.get("ReadOnlyForceRecursive") and not self.rro_supported(runtime):
                raise InvalidArgument(f'rro is not supported by runtime "{runtime}"')
            if (cri or ro_nonrecursive) and not mp.get("ReadOnlyForceRecursive"):
                mp["ReadOnlyNonRecursive"] = True
        points.update(explicit)
        vols = dict(ic.get("Volumes") or {})
        vols.update(body.get("Volumes") or {})
        for dest in vols:
            # an image's (or Config.Volumes') relative path is taken under the root, as dockerd
            # takes it ("data" -> /data), and recorded as it is written (inspect shows "data")
            rel = os.path.normpath(dest) if dest and not dest.startswith("/") else ""
            d = rel if rel and rel != "." and not rel.startswith("..") else _check_dest(dest, dest)
            if d not in points:
                points[d] = {"Type": "volume", "Name": "", "Destination": d, "RW": True, "Mode": "",
                             "Propagation": "", "Driver": "local", "CopyUp": True}
        for mp in points.values():
            if mp["Type"] == "volume" and mp.get("Driver", "local") != "local":
                raise InvalidArgument(f'error looking up volume plugin {mp["Driver"]}: plugin "{mp["Driver"]}" not found')
        created = []
        try:
            for mp in points.values():
                if mp["Type"] != "volume":
                    continue
                anon = not mp.get("Name")
                if anon:
                    mp["Anonymous"] = True
                o = None if anon else self.meta.find_object(ns, "volume", mp["Name"])
                if o is None:
                    v = self.create(ns, mp.get("Name") or None, "local", mp.pop("VolumeOpts", None),
                                    mp.pop("VolumeLabels", None))
                    mp["Name"] = v["Name"]
                    created.append(v["Name"])
                else:  # dockerd's volume service tells a create of a volume it has too
                    self.events.publish(ns, "volume", "create", o.name, driver=(o.data or {}).get("Driver") or "local")
                mp.pop("VolumeOpts", None)
                mp.pop("VolumeLabels", None)
                mp["Source"] = self.data_dir(ns, mp["Name"])
        except BaseException:
            self.discard(ns, created)
            raise
        out = sorted(points.values(), key=lambda m: (m["Destination"].count("/"), m["Destination"]))
        return out, created

    def check_exist(self, ns: str, mounts: list[dict]) -> None:
        """NotFound when a volume of these mount points went meanwhile (hold self.lock)."""
        for m in mounts:
            if m.get("Type") == "volume":
                self._get(ns, m["Name"])

    def discard(self, ns: str, names: list[str]) -> None:
        for n in names:
            try:
                self.remove(ns, n, force=True)
            except BerthError:
                pass

    def _daemon_dir_bind(self, mp: dict) -> None:
        """dockerd's rule for a bind whose source holds the daemon's directories or lies in them
        (validateBindDaemonRoot): rslave unless told (a container that binds / sees the
        daemon's later unmounts instead of keeping its mounts alive), and only rslave or rshared
        if told. berth's root and its state dir (where the containers' roots are mounted)."""
        src = mp["Source"]
        for d in (self.cfg.root, self.cfg.state):
            d = os.path.normpath(d)
            if not (src == d or src == "/" or src.startswith(d + "/") or d.startswith(src + "/")):
                continue
            prop = mp.get("Propagation") or ""
            if not mp.get("PropagationGiven"):
                mp["Propagation"] = "rslave"
                mp["DaemonDir"] = True  # rprivate at the start where the source's mount cannot be a slave (dockerd's fallback)
            elif prop not in ("rslave", "rshared"):
                raise InvalidArgument('invalid mount config: must use either propagation mode "rslave" or "rshared" '
                                      f'when mount source is within the daemon root, daemon root: "{d}", '
                                      f'bind mount source: "{src}", propagation: "{prop}"')
            return

    def oci_mounts(self, ns: str, rec, rootfs: str, pins: str = "") -> list[dict]:
        """At start (the rootfs mounted): mount the volumes that need it, copy the image's content
        into new empty volumes, create missing -v host dirs; the OCI mounts, parents first.
        pins: where a volume's subpath is bound for the runtime (unmounted by release_pins)."""
        out = []
        for m in mounts_of(rec):
            dest = m["Destination"]
            if not dest.startswith("/"):  # (an image's relative volume: under the root)
                dest = "/" + dest
            if m["Type"] == "tmpfs":
                opts = list(m.get("TmpfsOptions") or _TMPFS_DEFAULT)
                if not m.get("RW", True) and "ro" not in opts:
                    opts.append("ro")
                out.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
                continue
            src = m.get("Source") or ""
            if m["Type"] == "volume":
                self.activate(ns, m["Name"])
                src = self.data_dir(ns, m["Name"])
                if m.get("CopyUp") and not m.get("Subpath"):
                    self._copy_up(rootfs, dest, src)
                if m.get("Subpath"):
                    src = self._pin_subpath(src, m["Subpath"], os.path.join(pins, f"subpath-{len(out)}"))
            elif m.get("CreateSource") and not os.path.exists(src):
                try:
                    os.makedirs(src, 0o755, exist_ok=True)
                except OSError as e:
                    raise SystemError_(f"error while creating mount source path '{src}': {e.strerror}") from None
            # a bind without a propagation of its own is rprivate; a volume's has none (dockerd gives
            # the runtime none: the mount stays in the root's peer group, a slave of the host's)
            prop = m.get("Propagation") or ("" if m["Type"] == "volume" else "rprivate")
            try:
                check_propagation(src, prop)
            except InvalidArgument:
                if not m.get("DaemonDir"):
                    raise
                prop = "rprivate"  # dockerd's fallback for its own default on a private mount
            opts = ["bind" if m.get("NonRecursive") else "rbind"] + ([prop] if prop else [])
            if not m.get("RW", True):
                opts.append("ro")
                if m["Type"] == "bind" and not m.get("ReadOnlyNonRecursive") and self.rro_supported(rec.runtime):
                    opts.append("rro")  # the mounts under the source read-only too (API 1.44's default)
            out.append({"destination": dest, "type": "bind", "source": src, "options": opts})
        return out

    @staticmethod
    def _pin_subpath(base: str, sub: str, pin: str) -> str:
        """A volume's subpath resolved beneath its data directory (a symlink may not lead out:
        dockerd's safepath) and bound at pin, which the runtime mounts: what a container sharing
        the volume renames or links meanwhile cannot send the mount elsewhere."""
        from berth.linux import syscalls as sc
        full = os.path.join(base, sub)
        bfd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fd = sc.openat2(bfd, sub, os.O_PATH, 0, sc.RESOLVE_BENEATH | sc.RESOLVE_NO_MAGICLINKS)
            except OSError as e:
                if e.errno == 18:  # EXDEV: it leads out of the volume
                    raise InvalidArgument("path concatenation escapes the base directory, "
                                          f"base: {base}, subpath: {sub}") from None
                from berth.goquote import errno_text
                raise NotFound(f"cannot access path {full}: {errno_text(e)}") from None
        finally:
            os.close(bfd)
        try:
            os.makedirs(os.path.dirname(pin), exist_ok=True)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.makedirs(pin, exist_ok=True)
            else:
                open(pin, "a").close()
            sc.mount(f"/proc/self/fd/{fd}", pin, None, sc.MS_BIND | sc.MS_REC)
        except OSError as e:
            raise SystemError_(f"binding the subpath {sub} of volume {base}: {e.strerror}") from None
        finally:
            os.close(fd)
        return pin

    @staticmethod
    def release_pins(pins: str) -> None:
        """Unmount the subpaths bound for a container's last start."""
        try:
            names = os.listdir(pins)
        except OSError:
            return
        from berth.snapshots.mount import unmount
        for n in names:
            if n.startswith("subpath-"):
                p = os.path.join(pins, n)
                unmount(p)
                try:
                    os.rmdir(p) if os.path.isdir(p) else os.unlink(p)
                except OSError:
                    pass

    def rro_supported(self, runtime: str) -> bool:
        """Whether the runtime makes mounts recursively read-only ("rro" in its `features`, as
        dockerd asks it) on a kernel that can (5.12 on): berth-runc does, runc 1.1 does; asked once
        per runtime binary."""
        return self._feature(runtime, "rro", lambda f: "rro" in (f.get("mountOptions") or []))

    def idmap_supported(self, runtime: str) -> bool:
        """Whether the runtime makes idmapped mounts (its `features`' mountExtensions.idmap), on a
        kernel that can: what a pod with a user namespace needs of it for the kubelet's volumes
        (berth-runc does; runc 1.1 does not, 1.2 does)."""
        return self._feature(runtime, "idmap", lambda f: bool(
            (((f.get("linux") or {}).get("mountExtensions") or {}).get("idmap") or {}).get("enabled")))

    def _feature(self, runtime: str, name: str, has: Callable[[dict], bool]) -> bool:
        if not _KERNEL_HAS_MOUNT_SETATTR:  # dockerd's rule too
            return False
        rt = self.cfg.runtimes.get(runtime)
        path = rt.path if rt is not None else runtime
        if os.path.basename(path) == "berth-runc":
            return True
        cache = self._rro_cache
        if (path, name) not in cache:
            from berth import fastjson as json
            try:
                p = subprocess.run([path, *(rt.args if rt is not None else []), "features"], capture_output=True,
                                   timeout=10, stdin=subprocess.DEVNULL)
                cache[(path, name)] = has(json.loads(p.stdout or b"{}"))
            except (OSError, ValueError, AttributeError, subprocess.TimeoutExpired):
                cache[(path, name)] = False
        return cache[(path, name)]

    def _copy_up(self, rootfs: str, dest: str, data: str) -> None:
        """The image's content at dest (resolved inside the rootfs, never out of it) into an empty
        volume, with ownership, modes, links; the volume's root takes the directory's owner and mode."""
        try:
            if os.listdir(data):
                return
        except OSError:
            return
        from berth.linux.paths import secure_join
        rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            rel = secure_join(rootfd, dest)
        finally:
            os.close(rootfd)
        src = os.path.join(rootfs, rel)
        try:
            st = os.lstat(src)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        if os.listdir(src):
            # copied first where no container sees it, then renamed in: a container sharing the
            # volume cannot slip a symlink under the copy (rename replaces a link, never follows it)
            tmp = os.path.join(os.path.dirname(data), ".copyup-" + secrets.token_hex(8))
            os.mkdir(tmp, 0o700)
            try:
                _cp(src, tmp, dest)
                try:
                    for name in os.listdir(tmp):
                        os.rename(os.path.join(tmp, name), os.path.join(data, name))
                except OSError as e:
                    if e.errno != 18:  # EXDEV: a volume mounted from elsewhere (-o type=...)
                        raise SystemError_(f"copying the image's content at {dest} into the volume: "
                                           f"{e.strerror}") from None
                    _cp(tmp, data, dest)
            finally:
                _rmtree(tmp)
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, stat.S_IMODE(st.st_mode))

    # --- local driver mounts (-o type=...) ---

    def activate(self, ns: str, name: str) -> None:
        """Mount a volume that has options, if it is not mounted yet."""
        o = self._get(ns, name)
        opts = (o.data or {}).get("Options") or {}
        if not opts:
            return
        data = self.data_dir(ns, name)
        with self._lock:
            if _is_mounted(data):
                return
            from berth.linux import syscalls as sc
            from berth.runtime.spec import parse_mount_options
            flags, _clear, _prop, mdata = parse_mount_options([x for x in (opts.get("o") or "").split(",") if x])
            os.makedirs(data, 0o755, exist_ok=True)
            try:
                sc.mount(opts.get("device"), data, opts.get("type"), flags, mdata or None)
            except OSError as e:
                # moby's mountError: the flags in hex and the data when there are any, Go's errno text
                from berth.goquote import errno_text
                device = opts.get("device") or ""
                what = f"{device}:{data}" if device else data
                what += f", flags: {flags:#x}" if flags else ""
                what += f", data: {mdata}" if mdata else ""
                raise SystemError_(f"error while mounting volume '{data}': failed to mount local volume: "
                                   f"mount {what}: {errno_text(e)}") from None

    def release(self, ns: str, rec) -> None:
        """After a container stopped (or went): unmount its optioned volumes that no running container uses."""
        names = {m["Name"] for m in mounts_of(rec) if m.get("Type") == "volume"}
        if not names:
            return
        with self._lock:
            for name in names:
                o = self.meta.find_object(ns, "volume", name)
                if o is None or not (o.data or {}).get("Options"):
                    continue
                if any(self._running(ns, cid) for cid in self.users(ns, name) if cid != rec.id):
                    continue
                self._unmount(self.data_dir(ns, name))

    def _running(self, ns: str, cid: str) -> bool:
        try:
            return self.states.get(ns, cid).running
        except BerthError:
            return False

    def container_removed(self, ns: str, rec, remove_anonymous: bool = False) -> None:
        """After a container's record went: release its volumes; with rm -v (and --rm) remove its
        anonymous volumes that no other container uses."""
        self.release(ns, rec)
        if not remove_anonymous:
            return
        for m in mounts_of(rec):
            if m.get("Type") == "volume" and m.get("Anonymous"):
                try:
                    self.remove(ns, m["Name"])
                except BerthError:
                    pass  # in use by another container (volumes-from), or gone

    @staticmethod
    def _unmount(path: str) -> None:
        from berth.linux import syscalls as sc
        for _ in range(8):
            if not _is_mounted(path):
                return
            try:
                sc.umount2(path, sc.MNT_DETACH)
            except OSError:
                return

    # last in the class: below, `list` is the builtin in annotations
    def list(self, ns: str, filters: dict | None = None) -> dict:
        from berth.services.filtermatch import matches
        filters = _norm_filters(filters)
        for k in filters:
            if k not in ("name", "label", "label!", "dangling", "driver"):
                raise InvalidArgument(f"Invalid filter '{k}'")
        dangling = filters.get("dangling") or []
        if dangling and not all(x in ("true", "1", "false", "0") for x in dangling):
            raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(dangling)}]'")
        used = self._used(ns) if "dangling" in filters else set()
        out = []
        for o in self.meta.list_objects(ns, "volume"):
            v = self._view(o)
            if "name" in filters and not any(matches(f, o.name) for f in filters["name"]):  # as a regular expression
                continue
            if "driver" in filters and v["Driver"] not in filters["driver"]:
                continue
            if not _labels_match(filters, v["Labels"] or {}):
                continue
            if "dangling" in filters:
                want = [x.lower() in ("1", "true") for x in filters["dangling"]]
                if (o.name not in used) not in want:
                    continue
            out.append(v)
        return {"Volumes": out, "Warnings": None}  # dockerd's null when there is none


def inspect_mounts(mounts: list[dict] | None) -> list[dict]:
    """A container's mount points in docker's inspect shape."""
    out = []
    for m in mounts or []:
        if m.get("Hidden"):  # --tmpfs: docker does not list it either
            continue
        if m["Type"] == "volume":
            out.append({"Type": "volume", "Name": m["Name"], "Source": m.get("Source", ""),
                        "Destination": m["Destination"], "Driver": m.get("Driver") or "local",
                        "Mode": m.get("Mode", ""), "RW": bool(m.get("RW", True)), "Propagation": ""})
        else:
            out.append({"Type": m["Type"], "Source": m.get("Source", ""), "Destination": m["Destination"],
                        "Mode": m.get("Mode", ""), "RW": bool(m.get("RW", True)),
                        "Propagation": m.get("Propagation", "")})
    return out


def _norm_filters(filters: dict | None) -> dict[str, list[str]]:
    out = {}
    for k, v in (filters or {}).items():
        if isinstance(v, dict):
            v = [x for x, on in v.items() if on]
        elif isinstance(v, str):
            v = [v]
        out[k] = list(v)
    return out


def _labels_match(filters: dict, labels: dict) -> bool:
    for f in filters.get("label") or []:
        k, eq, v = f.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    for f in filters.get("label!") or []:
        k, eq, v = f.partition("=")
        if k in labels and (not eq or labels[k] == v):
            return False
    return True


def check_propagation(src: str, prop: str) -> None:
    """dockerd's (setMounts): a bind whose mounts are shared with the host needs its source on a
    shared mount, one that receives the host's on a shared or slave one."""
    if prop not in ("shared", "rshared", "slave", "rslave"):
        return
    from berth.linux.mountinfo import shared, shared_or_slave, source_mount
    try:
        mp, optional = source_mount(src)
    except OSError as e:
        raise SystemError_(f"cannot read the mount table: {e.strerror}") from None
    if prop in ("shared", "rshared"):
        if not shared(optional):
            raise InvalidArgument(f"path {src} is mounted on {mp} but it is not a shared mount")
    elif not shared_or_slave(optional):
        raise InvalidArgument(f"path {src} is mounted on {mp} but it is not a shared or slave mount")


def rootfs_propagation(mounts: list[dict], current: str | None) -> str | None:
    """The root's propagation dockerd gives a container with such binds (setMounts): shared for a
    shared one, rslave for a slave one, unless the root's already lets them through."""
    props = {o for m in mounts if m.get("type") == "bind" for o in m.get("options") or ()}
    if props & {"shared", "rshared"}:
        return current if current in ("shared", "rshared") else "shared"
    if props & {"slave", "rslave"}:
        return current if current in ("shared", "rshared", "slave", "rslave") else "rslave"
    return current


def _is_mounted(path: str) -> bool:
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
                    .replace("\\134", "\\")
                if mp == path:
                    return True
    except OSError:
        pass
    return False


def _du(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


_KERNEL_HAS_MOUNT_SETATTR = _kernel_at_least(5, 12)


def _rmtree(path: str) -> None:
    """Delete path, never through a mount left in it (a volume's device bound from the host)."""
    import shutil

    from berth.snapshots.mount import unmount_under
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def _cp(src: str, dst: str, dest: str) -> None:
    """cp -a of src's content into dst: owners, modes, times, links, xattrs."""
    p = subprocess.run(["cp", "-a", "--", src + "/.", dst], capture_output=True)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise SystemError_(f"copying the image's content at {dest} into the volume: {err[-1] if err else p.returncode}")


_VOLUMES_FROM_MODES = (("rw", "ro"), ("z", "Z"), ("consistent", "cached", "delegated"))


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """docker's ParseVolumesFrom (Linux): "CONTAINER[:MODE]" -> (container, mode), with dockerd
    20.10's words. The mode: rw or ro, an SELinux label, a consistency, each once at most (no
    propagation, no nocopy)."""
    if not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    cref, sep, mode = spec.partition(":")
    if not sep or not mode:
        return cref, "rw"
    counts = [0] * len(_VOLUMES_FROM_MODES)
    for o in mode.split(","):
        kind = next((i for i, kinds in enumerate(_VOLUMES_FROM_MODES) if o in kinds), None)
        if kind is None or counts[kind]:
            raise InvalidArgument(f"invalid mode: {mode}")
        counts[kind] += 1
    return cref, mode
