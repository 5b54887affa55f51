"""The OCI runtime-spec config.json: loading, validation and the default spec.

Validation happens before anything is created, so a bad bundle leaves nothing behind.
Every error is one line naming the offending field or value.
"""

from __future__ import annotations

import os

from berth import fastjson as json
from berth.errors import ConfigInvalid, InvalidArgument, NotFound
from berth.goquote import quote as _goquote

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

OCI_VERSION = "1.2.0"

NAMESPACES = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc",
    "uts": "uts", "user": "user", "cgroup": "cgroup", "time": "time",
}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# mount options -> (set flags, clear flags); anything else is filesystem data
_MS = {
    "ro": (0x1, 0), "rw": (0, 0x1), "nosuid": (0x2, 0), "suid": (0, 0x2), "nodev": (0x4, 0), "dev": (0, 0x4),
    "noexec": (0x8, 0), "exec": (0, 0x8), "sync": (0x10, 0), "async": (0, 0x10), "remount": (0x20, 0),
    "mand": (0x40, 0), "nomand": (0, 0x40), "dirsync": (0x80, 0), "nosymfollow": (0x100, 0),
    "symfollow": (0, 0x100), "noatime": (0x400, 0), "atime": (0, 0x400), "nodiratime": (0x800, 0),
    "diratime": (0, 0x800), "bind": (0x1000, 0), "rbind": (0x1000 | 0x4000, 0), "relatime": (1 << 21, 0),
    "norelatime": (0, 1 << 21), "strictatime": (1 << 24, 0), "nostrictatime": (0, 1 << 24),
    "lazytime": (1 << 25, 0), "nolazytime": (0, 1 << 25), "silent": (0x8000, 0), "loud": (0, 0x8000),
}
_PROPAGATION = {
    "private": 1 << 18, "rprivate": (1 << 18) | 0x4000, "shared": 1 << 20, "rshared": (1 << 20) | 0x4000,
    "slave": 1 << 19, "rslave": (1 << 19) | 0x4000, "unbindable": 1 << 17, "runbindable": (1 << 17) | 0x4000,
}
ROOTFS_PROPAGATION = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")
# the recursive options (runc's, mount_setattr(2) on the whole tree): option -> (clear?, MOUNT_ATTR_*)
_ATIME = 0x70
_RECURSIVE = {
    "rro": (False, 0x1), "rrw": (True, 0x1), "rnosuid": (False, 0x2), "rsuid": (True, 0x2),
    "rnodev": (False, 0x4), "rdev": (True, 0x4), "rnoexec": (False, 0x8), "rexec": (True, 0x8),
    "rnodiratime": (False, 0x80), "rdiratime": (True, 0x80), "rrelatime": (False, 0x0), "rnorelatime": (True, 0x0),
    "rnoatime": (False, 0x10), "ratime": (True, 0x10), "rstrictatime": (False, 0x20), "rnostrictatime": (True, 0x20),
    "rnosymfollow": (False, 0x200000), "rsymfollow": (True, 0x200000),
}
_IGNORED_OPTS = ("idmap", "ridmap", "tmpcopyup", *_RECURSIVE)  # (not mount data: handled by rootfs)


def idmap_mappings(m: dict[str, Any], linux: dict[str, Any], is_bind: bool = True) -> tuple[list, list, bool] | None:
    """An idmapped mount's (uid mappings, gid mappings, recursive), None for another mount: the
    `idmap` (or recursive `ridmap`) option with the mount's own uidMappings and gidMappings, else
    the container's user namespace's. One-line errors for what cannot be: mappings without the
    option, the option on a mount that is no bind, no mappings at all."""
    opts = m.get("options") or []
    on = "idmap" in opts or "ridmap" in opts
    dest = m.get("destination")
    for key in ("uidMappings", "gidMappings"):
        maps = _type(m.get(key) or [], list, f"mount {dest}: {key}")
        if maps and not on:
            raise InvalidArgument(f"config.json: mount {dest}: {key} need the idmap or ridmap option")
        for e in maps:
            if not isinstance(e, dict) or not all(_is_int(e.get(f)) and 0 <= e[f] <= MAX_ID
                                                  for f in ("containerID", "hostID", "size")):
                raise InvalidArgument(f"config.json: mount {dest}: {key} entries need containerID, hostID and size")
    if not on:
        return None
    if not is_bind:
        raise InvalidArgument(f"config.json: mount {dest}: idmapped mounts are only for bind mounts")
    uids, gids = m.get("uidMappings") or [], m.get("gidMappings") or []
    if not uids and not gids:
        uids, gids = linux.get("uidMappings") or [], linux.get("gidMappings") or []
    if not uids or not gids:
        raise InvalidArgument(f"config.json: mount {dest}: an idmapped mount needs uidMappings and gidMappings "
                              "(its own, or the container's user namespace's)")
    return uids, gids, "ridmap" in opts


def recursive_attrs(options: Iterable[str] | None) -> tuple[int, int] | None:
    """The recursive options' (attr_set, attr_clr) as runc builds them, None without any. An
    atime option sets the atime field whole (relatime is its 0)."""
    attr_set = attr_clr = 0
    seen = False
    for o in options or ():
        if o not in _RECURSIVE:
            continue
        seen = True
        clear, flag = _RECURSIVE[o]
        if clear:
            attr_clr |= flag
        else:
            attr_set |= flag
            if flag & _ATIME == flag:  # an access-time setting (relatime is 0) replaces the field
                attr_clr |= _ATIME
    return (attr_set, attr_clr) if seen else None


def parse_mount_options(options: Iterable[str] | None) -> tuple[int, int, list[int], str]:
    """Split mount options into (flags, clear_flags, propagation flags list, data string)."""
    flags = 0
    clear = 0
    prop = []
    data = []
    for o in options or ():
        if o in _MS:
            s, c = _MS[o]
            flags = (flags | s) & ~c
            clear |= c
        elif o in _PROPAGATION:
            prop.append(_PROPAGATION[o])
        elif o in _IGNORED_OPTS:
            continue
        else:
            data.append(o)
    return flags, clear, prop, ",".join(data)


def load(bundle: str, check_seccomp: bool = True) -> dict[str, Any]:
    """Read and validate <bundle>/config.json; returns the dict with root.path made absolute."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{path}: invalid JSON: {e}") from None
    if not isinstance(config, dict):
        raise InvalidArgument(f"{path}: invalid JSON: top level is not an object")
    validate(config, bundle, check_seccomp=check_seccomp)
    return config


def _type(value: Any, types: type | tuple[type, ...], field: str) -> Any:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))):
        raise InvalidArgument(f"config.json: {field} has the wrong type")
    return value


def validate(config: dict[str, Any], bundle: str, need_process: bool = True,
             check_seccomp: bool = True) -> dict[str, Any]:
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise InvalidArgument("config.json: root.path is required")
    rootfs = root["path"] if os.path.isabs(root["path"]) else os.path.join(os.path.abspath(bundle), root["path"])
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs {rootfs} does not exist or is not a directory")
    root["path"] = os.path.realpath(rootfs)
    if "ociVersion" in config:
        _type(config["ociVersion"], str, "ociVersion")

    process = config.get("process")
    if process is None:
        if need_process:
            raise InvalidArgument("config.json: process is required")
    else:
        validate_process(process)

    linux = config.get("linux") or {}
    _type(linux, dict, "linux")
    if linux.get("mountLabel") and not selinux_enabled():
        raise InvalidArgument("selinux label is specified in config, but selinux is disabled or not supported")
    seen = set()
    for ns in _type(linux.get("namespaces") or [], list, "linux.namespaces"):
        t = ns.get("type") if isinstance(ns, dict) else None
        if not isinstance(t, str) or t not in NAMESPACES:
            raise InvalidArgument(f"config.json: unknown namespace type {t!r}")
        if t in seen:
            raise InvalidArgument(f"config.json: duplicate namespace type {t!r}")
        seen.add(t)
        if ns.get("path"):
            p = _type(ns["path"], str, f"linux.namespaces[{t}].path")
            if not os.path.exists(p):
                raise NotFound(f"namespace path {p} does not exist")
            actual = _ns_type(p)
            if actual != t:
                what = f"a {actual} namespace" if actual else "not a namespace file"
                raise InvalidArgument(f"config.json: linux.namespaces[{t}].path {p} is {what}, "
                                      f"not a {t} namespace")
    offsets = linux.get("timeOffsets")
    if offsets is not None:
        _type(offsets, dict, "linux.timeOffsets")
        if offsets and "time" not in seen:  # runc 1.2's words
            raise InvalidArgument("time namespace offsets specified, but time namespace isn't enabled in the config")
        if offsets and any(ns.get("type") == "time" and ns.get("path") for ns in linux["namespaces"]):
            raise InvalidArgument("config.json: linux.timeOffsets cannot be set for a time namespace that is joined")
        for clock, off in offsets.items():
            if clock not in ("monotonic", "boottime"):
                raise InvalidArgument(f"config.json: linux.timeOffsets: unknown clock {_short(clock)} "
                                      "(monotonic or boottime)")
            _type(off, dict, f"linux.timeOffsets.{clock}")
            if not _is_int(off.get("secs", 0)) or not _is_int(off.get("nanosecs", 0)) \
                    or not 0 <= off.get("nanosecs", 0) <= 999999999:
                raise InvalidArgument(f"config.json: linux.timeOffsets.{clock} needs integer secs and nanosecs "
                                      "from 0 to 999999999")
    devs = linux.get("netDevices")
    if devs:
        _type(devs, dict, "linux.netDevices")
        if "network" not in seen:
            raise InvalidArgument("config.json: linux.netDevices need a network namespace of the container's "
                                  "(they would stay in the host's)")
        for hostname, dev in devs.items():
            _type(dev, dict, f"linux.netDevices.{hostname}")
            for what, name in (("network device name", hostname), ("linux.netDevices name", dev.get("name", ""))):
                if what == "network device name" or name:
                    if not isinstance(name, str) or not 0 < len(name.encode()) < 16 or name in (".", "..") \
                            or any(ch in name for ch in "/: \t\n"):
                        raise InvalidArgument(f"config.json: invalid {what} {_short(name)}")
    rdt = linux.get("intelRdt")
    if rdt is not None:  # berth-runc does not set up resctrl groups: a schema is refused in runc's words
        _type(rdt, dict, "linux.intelRdt")
        for key, what in (("l3CacheSchema", "CAT"), ("memBwSchema", "MBA")):
            if rdt.get(key):
                raise InvalidArgument(f"intelRdt.{key} is specified in config, but Intel RDT/{what} is not enabled")
    pers = linux.get("personality")
    if pers is not None:
        _type(pers, dict, "linux.personality")
        if not _one_of(pers.get("domain"), PERSONALITY_DOMAINS):
            raise InvalidArgument(f"config.json: linux.personality.domain {_short(pers.get('domain'))} is not "
                                  "LINUX or LINUX32")
        if pers.get("flags"):
            raise InvalidArgument("config.json: linux.personality.flags are not supported")
    has_user = "user" in seen
    for key in ("uidMappings", "gidMappings"):
        maps = _type(linux.get(key) or [], list, f"linux.{key}")
        if maps and not has_user:
            raise InvalidArgument(f"config.json: linux.{key} needs a user namespace")
        for m in maps:
            for f in ("containerID", "hostID", "size"):
                if not isinstance(m.get(f), int) or m[f] < 0:
                    raise InvalidArgument(f"config.json: linux.{key}: {f} must be a non-negative integer")
    if has_user and not any(ns.get("path") for ns in linux["namespaces"] if ns.get("type") == "user"):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise InvalidArgument("config.json: a new user namespace needs uidMappings and gidMappings")

    for i, m in enumerate(_type(config.get("mounts") or [], list, "mounts")):
        if not isinstance(m, dict):
            raise InvalidArgument(f"config.json: mounts[{i}] is not an object")
        dest = m.get("destination")
        if not isinstance(dest, str) or not dest:
            raise InvalidArgument(f"config.json: mounts[{i}] needs a destination")
        # as runc 1.1: a relative destination is the root's (runc warns), ".." never climbs out of
        # the root (every destination is resolved inside it)
        opts = _type(m.get("options") or [], list, f"mounts[{i}].options")
        if not all(isinstance(o, str) for o in opts):
            raise InvalidArgument(f"config.json: mount {dest}: options must be strings")
        mtype = _type(m.get("type") or "", str, f"mounts[{i}].type")
        is_bind = mtype == "bind" or "bind" in opts or "rbind" in opts
        idmap_mappings(m, linux, is_bind)  # (checks the idmapped mount's options and mappings)
        if is_bind:
            src = m.get("source")
            if not isinstance(src, str) or not src:
                raise InvalidArgument(f"config.json: bind mount {dest} needs a source")
            s = src if os.path.isabs(src) else os.path.join(bundle, src)
            if not os.path.exists(s):  # runc's words (its init's stat of the source)
                raise NotFound(f'error during container init: error mounting {_goquote(s)} to rootfs at '
                               f'{_goquote(dest)}: stat {s}: no such file or directory')
        elif not mtype:
            raise InvalidArgument(f"config.json: mount {dest} has no type")
        elif mtype not in _known_filesystems():
            raise InvalidArgument(f"config.json: mount {dest}: unknown filesystem type {mtype!r}")

    rp = linux.get("rootfsPropagation")
    if rp and (not isinstance(rp, str) or rp not in ROOTFS_PROPAGATION):
        raise InvalidArgument(f"config.json: invalid rootfsPropagation {rp!r}")
    for key in ("maskedPaths", "readonlyPaths"):
        for p in _type(linux.get(key) or [], list, f"linux.{key}"):
            if not isinstance(p, str) or not p.startswith("/"):
                raise InvalidArgument(f"config.json: linux.{key}: {p!r} is not an absolute path")
    for d in _type(linux.get("devices") or [], list, "linux.devices"):
        if not isinstance(d, dict) or d.get("type") not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"config.json: linux.devices: invalid device type {d.get('type') if isinstance(d, dict) else d!r}")
        if not isinstance(d.get("path"), str) or not d["path"].startswith("/dev/") and d["path"] != "/dev":
            raise InvalidArgument(f"config.json: linux.devices: invalid path {d.get('path')!r}")
        if d["type"] != "p" and not (isinstance(d.get("major"), int) and isinstance(d.get("minor"), int)):
            raise InvalidArgument(f"config.json: linux.devices: {d['path']} needs major and minor")
    for k, v in (_type(linux.get("sysctl") or {}, dict, "linux.sysctl")).items():
        if not isinstance(v, str):
            raise InvalidArgument(f"config.json: sysctl {k} value must be a string")
        if not k or ".." in k or k.startswith(("/", ".")):
            raise InvalidArgument(f"config.json: invalid sysctl {k!r}")
        check_sysctl(k, linux.get("namespaces") or [])
    if config.get("hostname") and "uts" not in seen:
        raise InvalidArgument("config.json: hostname needs a new uts namespace")
    if config.get("domainname") and "uts" not in seen:
        raise InvalidArgument("config.json: domainname needs a new uts namespace")
    if linux.get("seccomp") and check_seccomp:
        from berth.linux import seccomp
        seccomp.validate(linux["seccomp"])
    if linux.get("resources"):
        from berth.runtime import cgroups
        cgroups.validate_resources(linux["resources"], None)
    hooks = _type(config.get("hooks") or {}, dict, "hooks")
    for kind, lst in hooks.items():
        if kind not in HOOK_KINDS:
            raise InvalidArgument(f"config.json: unknown hook kind {kind!r}")
        for h in _type(lst or [], list, f"hooks.{kind}"):
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
                raise InvalidArgument(f"config.json: hooks.{kind}: path must be absolute")
            t = h.get("timeout")
            if t is not None and (not isinstance(t, int) or t <= 0):
                raise InvalidArgument(f"config.json: hooks.{kind}: timeout must be a positive integer")
    return config


# runc's validator: the sysctls of the IPC namespace (with fs.mqueue.*)
_IPC_SYSCTLS = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))


def check_sysctl(key: str, namespaces: list[dict[str, Any]]) -> None:
    """runc's rule and words (libcontainer's ConfigValidator.sysctl): only what the container's
    own namespaces hold; a network namespace joined by path that is the runtime's own is the host's."""
    types = {ns.get("type") for ns in namespaces}
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if "ipc" in types:
            return
        raise ConfigInvalid(f"sysctl {_goquote(key)} is not allowed in the hosts ipc namespace")
    if key.startswith("net."):
        net = next((ns for ns in namespaces if ns.get("type") == "network"), None)
        if net is None or net.get("path") and _is_own_netns(net["path"]):
            raise ConfigInvalid(f"sysctl {_goquote(key)} not allowed in host network namespace")
        return
    if "uts" in types:
        if key == "kernel.domainname":
            return
        if key == "kernel.hostname":
            raise ConfigInvalid(f'sysctl {_goquote(key)} is not allowed as it conflicts with the OCI "hostname" field')
    raise ConfigInvalid(f"sysctl {_goquote(key)} is not in a separate kernel namespace")


def _is_own_netns(path: str) -> bool:
    try:
        a, b = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_FS: set[str] | None = None


def _known_filesystems() -> set[str]:
    global _FS
    if _FS is None:
        fs = {"bind", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay", "none"}
        try:
            with open("/proc/filesystems") as f:
                fs.update(line.split()[-1] for line in f if line.strip())
        except OSError:
            pass
        _FS = fs
    return _FS


MAX_ID = 2**31 - 1  # runc's bound for uids and gids


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def validate_process(process: dict[str, Any]) -> dict[str, Any]:
    _type(process, dict, "process")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise InvalidArgument("config.json: process.args must be a non-empty list of strings")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidArgument("Cwd must be an absolute path")  # runc's words (validateProcessSpec)
    env = _type(process.get("env") or [], list, "process.env")
    for e in env:
        if not isinstance(e, str) or "=" not in e:
            raise InvalidArgument(f"config.json: process.env entry {e!r} is not KEY=VALUE")
    user = _type(process.get("user") or {}, dict, "process.user")
    for f in ("uid", "gid", "umask"):
        if f in user and (not isinstance(user[f], int) or user[f] < 0):
            raise InvalidArgument(f"config.json: process.user.{f} must be a non-negative integer")
    gids = _type(user.get("additionalGids") or [], list, "process.user.additionalGids")
    for g in gids:
        if not isinstance(g, int) or g < 0:
            raise InvalidArgument("config.json: process.user.additionalGids must be non-negative integers")
    if any(i > MAX_ID for i in [user.get("uid", 0), user.get("gid", 0), *gids]):
        # 4294967295 is (uid_t)-1, which setresuid(2) reads as "unchanged": the process would stay root
        raise InvalidArgument(f"unable to setup user: uids and gids must be in range 0-{MAX_ID}")  # runc's words
    if process.get("selinuxLabel") and not selinux_enabled():
        raise InvalidArgument("selinux label is specified in config, but selinux is disabled or not supported")
    capsets = _type(process.get("capabilities") or {}, dict, "process.capabilities")
    for setname, names in capsets.items():
        if setname not in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            raise InvalidArgument(f"config.json: unknown capability set {setname!r}")
        for n in _type(names or [], list, f"process.capabilities.{setname}"):
            if not isinstance(n, str):  # (one unknown here or to the kernel is ignored, as runc ignores it)
                raise InvalidArgument(f"config.json: capability {n!r} is not a string")
    for r in _type(process.get("rlimits") or [], list, "process.rlimits"):
        if not isinstance(r, dict) or not isinstance(r.get("type"), str) or r["type"] not in RLIMITS:
            raise InvalidArgument(f"config.json: unknown rlimit type {r.get('type') if isinstance(r, dict) else r!r}")
        if not isinstance(r.get("soft"), int) or not isinstance(r.get("hard"), int):
            raise InvalidArgument(f"config.json: rlimit {r['type']} needs integer soft and hard values")
        if r["soft"] > r["hard"]:
            raise InvalidArgument(f"config.json: rlimit {r['type']}: soft limit {r['soft']} is above the hard limit {r['hard']}")
    osa = process.get("oomScoreAdj")
    if osa is not None and (not isinstance(osa, int) or not -1000 <= osa <= 1000):
        raise InvalidArgument("config.json: process.oomScoreAdj must be between -1000 and 1000")
    cs = process.get("consoleSize")
    if cs is not None and not (isinstance(cs, dict) and isinstance(cs.get("height"), int) and isinstance(cs.get("width"), int)):
        raise InvalidArgument("config.json: process.consoleSize needs integer height and width")
    _check_scheduler(process.get("scheduler"))
    iop = process.get("ioPriority")
    if iop is not None:
        _type(iop, dict, "process.ioPriority")
        if not _one_of(iop.get("class"), IOPRIO_CLASSES):
            raise InvalidArgument(f"config.json: process.ioPriority.class {_short(iop.get('class'))} is not one of "
                                  + ", ".join(IOPRIO_CLASSES))
        if not _is_int(iop.get("priority")) or not 0 <= iop["priority"] <= 7:
            raise InvalidArgument("config.json: process.ioPriority.priority must be between 0 and 7")
    aff = process.get("execCPUAffinity")
    if aff is not None:
        _type(aff, dict, "process.execCPUAffinity")
        for key in ("initial", "final"):
            if aff.get(key):
                cpu_list(_type(aff[key], str, f"process.execCPUAffinity.{key}"), f"process.execCPUAffinity.{key}")
    return process


IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
                  "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}


def _one_of(v: object, names: dict[str, int]) -> bool:
    """Whether v is one of the names (a list or an object in its place is not: no TypeError)."""
    return isinstance(v, str) and v in names


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_scheduler(sch: object) -> None:
    if sch is None:
        return
    _type(sch, dict, "process.scheduler")
    policy = sch.get("policy")
    if not _one_of(policy, SCHED_POLICIES):
        raise InvalidArgument(f"config.json: process.scheduler.policy {_short(policy)} is not one of "
                              + ", ".join(SCHED_POLICIES))
    for key, lo, hi in (("nice", -20, 19), ("priority", 0, 99), ("runtime", 0, 2**64 - 1),
                        ("deadline", 0, 2**64 - 1), ("period", 0, 2**64 - 1)):
        v = sch.get(key, 0)
        if not _is_int(v) or not lo <= v <= hi:
            raise InvalidArgument(f"config.json: process.scheduler.{key} must be an integer from {lo} to {hi}")
    for f in _type(sch.get("flags") or [], list, "process.scheduler.flags"):
        if not _one_of(f, SCHED_FLAGS):
            raise InvalidArgument(f"config.json: process.scheduler.flags: unknown flag {_short(f)}")
    if sch.get("priority") and policy not in ("SCHED_FIFO", "SCHED_RR"):
        # (what sched_setattr(2) says EINVAL for, said before anything is made)
        raise InvalidArgument(f"config.json: process.scheduler.priority is only for SCHED_FIFO and SCHED_RR, "
                              f"not {policy}")
    if policy in ("SCHED_FIFO", "SCHED_RR") and not sch.get("priority"):
        raise InvalidArgument(f"config.json: process.scheduler: {policy} needs a priority from 1 to 99")


def cpu_list(text: str, what: str) -> set[int]:
    """A CPU list ("0-3,7") as its CPUs; a one-line error naming what for another string."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise InvalidArgument(f"config.json: {what}: invalid CPU list {text!r}") from None
        if a < 0 or b < a or b >= 1 << 16:  # (the kernel's CPU numbers stay below NR_CPUS, at most 8192)
            raise InvalidArgument(f"config.json: {what}: invalid CPU range {part.strip()!r}")
        cpus.update(range(a, b + 1))
    return cpus


DEFAULT_MASKED = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap",
]
DEFAULT_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """The config.json that `berth-runc spec` writes, as runc's."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(DEFAULT_MASKED),
            "readonlyPaths": list(DEFAULT_READONLY),
        },
    }
    if rootless:
        linux = spec["linux"]
        linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup", "user")]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        del linux["resources"]
        mounts = [m for m in spec["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
        for m in mounts:
            if m["destination"] == "/dev/pts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
            if m["destination"] == "/dev/mqueue":
                pass
        mounts.append({"destination": "/sys", "type": "none", "source": "/sys",
                       "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
        mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
        spec["mounts"] = mounts
    return spec


def _ns_type(path: str) -> str | None:
    from berth.linux.syscalls import ns_type
    try:
        return ns_type(path)
    except OSError as e:
        raise InvalidArgument(f"config.json: cannot open namespace path {path}: {e.strerror}") from None

