"""The cgroup manager of berth's OCI runtime (runc's libcontainer/cgroups fs, fs2 and systemd paths).

Pure file I/O on cgroupfs; imports only os, errno and time, and does nothing at import time.

Modes (see detect_mode):
  "v1"      one hierarchy per mounted controller set under the root (cpu, memory, ..., name=systemd)
  "hybrid"  v1 as above, plus an (often controller-less) cgroup2 tree at <root>/unified; resources are
            applied through v1, processes are also placed in the unified tree
  "v2"      a single cgroup2 tree at the root

Paths: a cgroup is named by a path relative to every hierarchy root, starting with "/" (resolve_path).
  - cgroupfs form: an absolute cgroupsPath is used as is. A relative one is taken relative to the
    hierarchy root (runc takes it relative to the runtime's own cgroup; berth deliberately does not,
    so the same config always yields the same place whatever cgroup berth itself runs in).
    No cgroupsPath -> "/<container-id>".
  - systemd form "slice:prefix:name" (runc --systemd-cgroup): "a-b.slice" nests as
    /a.slice/a-b.slice, the unit is "<prefix>-<name>.scope" (or <name> if it is itself a slice).
    LIMITATION: berth does not talk to systemd over D-Bus (there may be no systemd at all); it
    creates and manages the very same cgroupfs directories systemd would use, so systemd does not
    know about these units.

Devices on cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup,
made and loaded by berth.linux.devfilter (runc's devicefilter).
"""

import errno
import os
import time

from berth.errors import BerthError, InvalidArgument, NotFound, SystemError_
from berth.goquote import errno_text, quote as _goquote

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from collections.abc import Callable


class CgroupStats:
    """One reading of a cgroup's counters (read_stats). None: the file or controller is absent;
    a limit of -1: unlimited. Times in ns; io_service_bytes as docker's blkio entries.
    (A plain class: berth-runc does not pay for importing dataclasses.)"""

    __slots__ = ("cpu_total_ns", "cpu_kernel_ns", "cpu_user_ns", "percpu_ns", "throttle_periods",
                 "throttled_periods", "throttled_ns", "memory_usage", "memory_max_usage", "memory_failcnt",
                 "memory_stat", "memory_limit", "pids_current", "pids_limit", "io_service_bytes", "io_v1")

    def __init__(self) -> None:
        self.cpu_total_ns: int | None = None
        self.cpu_kernel_ns = 0
        self.cpu_user_ns = 0
        self.percpu_ns: list[int] | None = None
        self.throttle_periods = 0
        self.throttled_periods = 0
        self.throttled_ns = 0
        self.memory_usage: int | None = None
        self.memory_max_usage: int | None = None
        self.memory_failcnt: int | None = None
        self.memory_stat: dict[str, int] = {}
        self.memory_limit: int | None = None
        self.pids_current: int | None = None
        self.pids_limit: int | None = None
        self.io_service_bytes: list[dict] = []
        # v1's other blkio files, each as docker's entries: io_serviced_recursive (the throttle
        # file's), and the CFQ scheduler's where the kernel has them (io_queue_recursive, ...)
        self.io_v1: dict[str, list[dict]] | None = None

DEFAULT_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270  # statfs(2) f_type of cgroup2; os.statvfs has no f_type, so mountinfo is used
MODES = ("v1", "hybrid", "v2")

# cgroup v1 mount options that are not controllers
_V1_NON_CONTROLLERS = {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode",
                       "favordynmods", "nofavordynmods"}
# v2 controllers berth enables in ancestors' cgroup.subtree_control (the ones set() may need)
_V2_WANTED = ("cpuset", "cpu", "io", "memory", "pids")
# v1 hierarchy used to list processes, in order of preference
_PRIMARY = ("pids", "freezer", "memory", "cpu", "cpuacct", "devices", "name=systemd")
_UNIFIED = "unified"

_FREEZE_TIMEOUT = 5.0
_UNLIMITED_V1 = 1 << 62  # v1 shows "unlimited" as PAGE_COUNTER_MAX * PAGE_SIZE (~2**63)


# ---------------------------------------------------------------------------------------------
# small file helpers


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: object) -> None:
    """One write(2) of the whole value, without O_CREAT/O_TRUNC (cgroupfs files are not regular)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _strerror(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


def _mountinfo() -> list[tuple[str, str, str]]:
    """[(mount point, fs type, super options)] from /proc/self/mountinfo; OSError if unreadable."""
    out = []
    for line in _read("/proc/self/mountinfo").splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        rest = post.split()
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        out.append((_unescape(fields[4]), rest[0], rest[2]))
    return out


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _fstypes(mounts: list[tuple[str, str, str]]) -> dict[str, str]:
    """mount point -> fs type of the top-most mount there (later mountinfo lines shadow earlier)."""
    return {mp: t for mp, t, _ in mounts}


# ---------------------------------------------------------------------------------------------
# mode detection


_HIER_TTL = 5.0  # seconds a reading of mountinfo is used again (detect_mode, _v1_hierarchies)
_MODE_CACHE = {}  # root -> (monotonic time, mode)


def detect_mode(root: str = DEFAULT_ROOT) -> str:
    """'v2' if root is a cgroup2 mount, 'hybrid' if v1 with cgroup2 at root/unified, else 'v1'."""
    import time
    now = time.monotonic()
    hit = _MODE_CACHE.get(root)
    if hit is not None and now - hit[0] < _HIER_TTL:
        return hit[1]
    mode = _detect_mode(root)
    _MODE_CACHE[root] = (now, mode)
    return mode


def _detect_mode(root: str) -> str:
    root = os.path.realpath(root)
    unified = os.path.join(root, _UNIFIED)
    try:
        types = _fstypes(_mountinfo())
    except OSError:
        types = None
    if types is not None:
        if types.get(root) == "cgroup2":
            return "v2"
        if types.get(unified) == "cgroup2":
            return "hybrid"
        if root in types or any(os.path.dirname(mp) == root and t == "cgroup" for mp, t in types.items()):
            return "v1"
    # mountinfo unreadable or says nothing about root: look at the files themselves
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if os.path.exists(os.path.join(unified, "cgroup.controllers")):
        return "hybrid"
    return "v1"


# ---------------------------------------------------------------------------------------------
# paths


def _clean_components(path: str, what: str) -> list[str]:
    if "\0" in path or "\n" in path:
        raise InvalidArgument(f"{what}: invalid character in {path!r}")
    parts = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise InvalidArgument(f"{what}: '..' is not allowed in {path!r}")
        parts.append(p)
    return parts


def _normalize(path: str, what: str = "cgroup path") -> str:
    """'/a//b/./c/' -> '/a/b/c'; rejects '..', NUL and the root cgroup itself."""
    if not isinstance(path, str):
        raise InvalidArgument(f"{what}: must be a string, got {type(path).__name__}")
    parts = _clean_components(path, what)
    if not parts:
        raise InvalidArgument(f"{what}: {path!r} names the root cgroup")
    return "/" + "/".join(parts)


def expand_slice(slice_name: str) -> str:
    """systemd slice nesting: 'a-b.slice' -> '/a.slice/a-b.slice', '-.slice' -> '/'."""
    suffix = ".slice"
    if not slice_name.endswith(suffix) or "/" in slice_name or "\0" in slice_name:
        raise InvalidArgument(f"cgroupsPath: invalid slice name {slice_name!r}")
    base = slice_name[:-len(suffix)]
    if base == "-":
        return "/"
    path, prefix = "", ""
    for comp in base.split("-"):
        if comp in ("", ".", ".."):  # "", "a--b.slice", "-a.slice", "a-.slice"
            raise InvalidArgument(f"cgroupsPath: invalid slice name {slice_name!r}")
        path += "/" + prefix + comp + suffix
        prefix += comp + "-"
    return path


def _check_id(container_id: str) -> None:
    if not isinstance(container_id, str) or container_id in ("", ".", "..") or "/" in container_id \
            or "\0" in container_id:
        raise InvalidArgument(f"cgroup: invalid container id {container_id!r}")


def resolve_path(cgroups_path: str | None, container_id: str, systemd: bool) -> str:
    """The cgroup path (relative to every hierarchy root, starting with '/') of a container."""
    if cgroups_path is not None and not isinstance(cgroups_path, str):
        raise InvalidArgument("cgroupsPath: must be a string")
    if not systemd:
        if not cgroups_path:
            _check_id(container_id)
            return "/" + container_id
        # absolute: as is; relative: relative to the hierarchy root (not berth's own cgroup)
        return _normalize(cgroups_path, "cgroupsPath")

    if not cgroups_path:
        _check_id(container_id)
        cgroups_path = f"system.slice:berth:{container_id}"
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise InvalidArgument(f"cgroupsPath: expected \"slice:prefix:name\" for systemd cgroups, got {cgroups_path!r}")
    slice_name, prefix, name = parts
    for what, v in (("prefix", prefix), ("name", name)):
        if "/" in v or "\0" in v or v in (".", ".."):
            raise InvalidArgument(f"cgroupsPath: invalid {what} {v!r} in {cgroups_path!r}")
    if not name:
        raise InvalidArgument(f"cgroupsPath: empty unit name in {cgroups_path!r}")
    if name.endswith(".slice"):
        # a slice unit: systemd places it by its own name, the parent is implied
        path = expand_slice(name)
        if path == "/":
            raise InvalidArgument(f"cgroupsPath: {cgroups_path!r} names the root cgroup")
        return path
    parent = expand_slice(slice_name or "system.slice")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return parent.rstrip("/") + "/" + unit


def oom_file(cgroups_path: str | None, container_id: str, systemd: bool, root: str = DEFAULT_ROOT) -> str:
    """The file that counts the OOM kills in a container's memory cgroup (v1 memory.oom_control,
    v2 memory.events: their "oom_kill" line), or "" where there is none."""
    try:
        m = Manager(resolve_path(cgroups_path, container_id, systemd), root=root)
    except BerthError:
        return ""
    if m.mode == "v2":
        return os.path.join(m._v2dir, "memory.events")
    d = m._ctrl.get("memory")
    return os.path.join(d, "memory.oom_control") if d else ""


def oom_kills(path: str) -> int:
    """The "oom_kill" count of an oom_file (0 when it cannot be read: no cgroup, an old kernel)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# validation


def _short(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _int(v: object, field: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"linux.resources.{field}: must be an integer, got {_short(v)}")
    return v


def _obj(v: object, field: str, kind: type = dict) -> object:
    if v is None:
        return None
    if not isinstance(v, kind):
        name = "an object" if kind is dict else "a list"
        raise InvalidArgument(f"linux.resources.{field}: must be {name}, got {_short(v)}")
    return v


def _check_list(v: object, field: str) -> None:
    """A kernel cpu/node list: '0-3,5'. '' means unset."""
    if v is None or v == "":
        return
    if not isinstance(v, str):
        raise InvalidArgument(f"linux.resources.{field}: must be a string like \"0-3,5\", got {_short(v)}")
    # its syntax is the kernel's to refuse (EINVAL), as runc lets it: `failed to write "x-y": ...`


def validate_resources(resources: dict, mode: str | None) -> None:
    """Check an OCI linux.resources object before anything is created; InvalidArgument names the field.

    mode is "v1", "hybrid", "v2" or None (unknown yet: only the checks that hold in every mode).
    Unknown keys are ignored. As in runc, 0 means "unset" for memory.swap, memory.reservation,
    cpu.shares, cpu.quota and cpu.period; -1 means unlimited where the kernel has a limit.
    """
    if mode is not None and mode not in MODES:
        raise InvalidArgument(f"cgroup: unknown cgroup mode {mode!r}")
    if resources is None:
        return
    if not isinstance(resources, dict):
        raise InvalidArgument(f"linux.resources: must be an object, got {_short(resources)}")

    mem = _obj(resources.get("memory"), "memory") or {}
    limit = _int(mem.get("limit"), "memory.limit")
    swap = _int(mem.get("swap"), "memory.swap")
    res = _int(mem.get("reservation"), "memory.reservation")
    if limit is not None and limit != -1 and limit <= 0:
        raise InvalidArgument(f"linux.resources.memory.limit: must be positive or -1, got {limit}")
    for field, v in (("swap", swap), ("reservation", res)):
        if v is not None and v < -1:
            raise InvalidArgument(f"linux.resources.memory.{field}: must be >= 0 or -1, got {v}")
    if swap and swap > 0:
        if limit == -1:
            raise InvalidArgument(f"linux.resources.memory.swap: must be -1 when memory.limit is -1, got {swap}")
        if limit is not None and swap < limit:
            raise InvalidArgument(f"linux.resources.memory.swap: {swap} is less than memory.limit {limit}")
        if limit is None and mode == "v2":
            raise InvalidArgument("linux.resources.memory.swap: needs memory.limit on cgroup v2")
    if res and res > 0 and limit and limit > 0 and res > limit:
        raise InvalidArgument(f"linux.resources.memory.reservation: {res} is more than memory.limit {limit}")

    cpu = _obj(resources.get("cpu"), "cpu") or {}
    shares = _int(cpu.get("shares"), "cpu.shares")
    if shares and not 2 <= shares <= 262144:
        raise InvalidArgument(f"linux.resources.cpu.shares: must be between 2 and 262144, got {shares}")
    _int(cpu.get("quota"), "cpu.quota")  # below 1000 us the kernel's EINVAL, as runc lets it
    _int(cpu.get("realtimeRuntime"), "cpu.realtimeRuntime")  # (-1: unlimited; the kernel checks the rest)
    rt_period = _int(cpu.get("realtimePeriod"), "cpu.realtimePeriod")
    if rt_period is not None and rt_period < 0:
        raise InvalidArgument(f"linux.resources.cpu.realtimePeriod: must be >= 0, got {rt_period}")
    period = _int(cpu.get("period"), "cpu.period")
    if period and not 1000 <= period <= 1000000:
        raise InvalidArgument(f"linux.resources.cpu.period: must be between 1000 and 1000000 (us), got {period}")
    _check_list(cpu.get("cpus"), "cpu.cpus")
    _check_list(cpu.get("mems"), "cpu.mems")
    idle = _int(cpu.get("idle"), "cpu.idle")
    if idle is not None and idle not in (0, 1):
        raise InvalidArgument(f"linux.resources.cpu.idle: must be 0 or 1, got {idle}")
    burst = _int(cpu.get("burst"), "cpu.burst")
    if burst is not None and burst < 0:
        raise InvalidArgument(f"linux.resources.cpu.burst: must be >= 0, got {burst}")

    pids = _obj(resources.get("pids"), "pids") or {}
    _int(pids.get("limit"), "pids.limit")

    devices = _obj(resources.get("devices"), "devices", list) or []
    for i, d in enumerate(devices):
        _check_device(d, f"devices[{i}]")

    swappiness = _swappiness(mem)
    if swappiness is not None and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"linux.resources.memory.swappiness: must be between 0 and 100, got {swappiness}")
    for k in ("disableOOMKiller", "useHierarchy"):
        if mem.get(k) is not None and not isinstance(mem[k], bool):
            raise InvalidArgument(f"linux.resources.memory.{k}: must be true or false, got {_short(mem[k])}")
    for k in ("kernel", "kernelTCP"):
        _int(mem.get(k), f"memory.{k}")

    bio = _obj(resources.get("blockIO"), "blockIO") or {}
    for k in ("weight", "leafWeight"):
        w = _int(bio.get(k), f"blockIO.{k}")
        if w and not 10 <= w <= 1000:
            raise InvalidArgument(f"linux.resources.blockIO.{k}: must be between 10 and 1000, got {w}")
    for i, d in enumerate(_obj(bio.get("weightDevice"), "blockIO.weightDevice", list) or []):
        f = f"blockIO.weightDevice[{i}]"
        _check_major_minor(d, f)
        for k in ("weight", "leafWeight"):
            w = _int(d.get(k), f"{f}.{k}")
            if w is not None and not (w == 0 or 10 <= w <= 1000):
                raise InvalidArgument(f"linux.resources.{f}.{k}: must be between 10 and 1000, got {w}")
    for key in _THROTTLES:
        for i, d in enumerate(_obj(bio.get(key), f"blockIO.{key}", list) or []):
            f = f"blockIO.{key}[{i}]"
            _check_major_minor(d, f)
            rate = _int(d.get("rate"), f"{f}.rate")
            if rate is None or rate < 0:
                raise InvalidArgument(f"linux.resources.{f}.rate: must be an integer >= 0")

    net = _obj(resources.get("network"), "network") or {}
    cls = _int(net.get("classID"), "network.classID")
    if cls is not None and not 0 <= cls < 1 << 32:
        raise InvalidArgument(f"linux.resources.network.classID: must be a 32-bit unsigned integer, got {cls}")
    for i, pr in enumerate(_obj(net.get("priorities"), "network.priorities", list) or []):
        f = f"network.priorities[{i}]"
        _obj(pr, f)
        name = pr.get("name")
        if not isinstance(name, str) or not name or len(name) > 15 or "/" in name or " " in name:
            raise InvalidArgument(f"linux.resources.{f}.name: must be an interface name, got {_short(name)}")
        prio = _int(pr.get("priority"), f"{f}.priority")
        if prio is None or not 0 <= prio < 1 << 32:
            raise InvalidArgument(f"linux.resources.{f}.priority: must be a 32-bit unsigned integer")

    for i, h in enumerate(_obj(resources.get("hugepageLimits"), "hugepageLimits", list) or []):
        f = f"hugepageLimits[{i}]"
        _obj(h, f)
        _hugepage_size(h.get("pageSize"), f)
        limit = _int(h.get("limit"), f"{f}.limit")
        if limit is None or limit < 0:
            raise InvalidArgument(f"linux.resources.{f}.limit: must be an integer >= 0")

    for dev, lim in (_obj(resources.get("rdma"), "rdma") or {}).items():
        _obj(lim, f"rdma.{dev}")
        if not dev or any(c.isspace() for c in dev):
            raise InvalidArgument(f"linux.resources.rdma: invalid device name {_short(dev)}")
        for k in ("hcaHandles", "hcaObjects"):
            v = _int(lim.get(k), f"rdma.{dev}.{k}")
            if v is not None and not 0 <= v < 1 << 32:
                raise InvalidArgument(f"linux.resources.rdma.{dev}.{k}: must be a 32-bit unsigned integer")

    unified = _obj(resources.get("unified"), "unified") or {}
    for k, v in unified.items():
        if not isinstance(v, str) or "/" in k or k.startswith(".") or "." not in k:
            raise InvalidArgument(f"linux.resources.unified: invalid entry {_short(k)}: {_short(v)}")
    if unified and mode in ("v1", "hybrid"):
        from berth.errors import ConfigInvalid
        raise ConfigInvalid("invalid configuration: cannot use unified on cgroup v1")  # runc's words


# OCI blockIO throttle keys -> the v1 file and the v2 io.max key
_THROTTLES = {"throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rbps"),
              "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "wbps"),
              "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "riops"),
              "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "wiops")}
_U64_MAX = (1 << 64) - 1


def _swappiness(mem: dict) -> int | None:
    """memory.swappiness, or None when unset (-1, and its uint64 spelling, mean unset as in runc)."""
    v = _int(mem.get("swappiness"), "memory.swappiness")
    return None if v in (None, -1, _U64_MAX) else v


def _check_major_minor(d: dict, field: str) -> None:
    _obj(d, field)
    for k in ("major", "minor"):
        v = _int(d.get(k), f"{field}.{k}")
        if v is None or v < 0:
            raise InvalidArgument(f"linux.resources.{field}.{k}: must be an integer >= 0")


_HUGE_UNITS = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def _hugepage_size(size: str, field: str) -> int:
    """'2MB' -> 2097152; a clear error for anything the kernel would not name that way."""
    if isinstance(size, str) and len(size) > 2 and size[:-2].isdigit() and size[-2:] in _HUGE_UNITS:
        return int(size[:-2]) * _HUGE_UNITS[size[-2:]]
    raise InvalidArgument(f"linux.resources.{field}.pageSize: must be like \"2MB\" or \"1GB\", got {_short(size)}")


def _hugepage_sizes() -> set[str]:
    """The page sizes this kernel has, as cgroup file names spell them ('2MB', '1GB')."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return set()
    out = set()
    for n in names:
        kb = int(n[len("hugepages-"):-2])
        out.add(f"{kb >> 20}GB" if kb >= 1 << 20 else f"{kb >> 10}MB" if kb >= 1 << 10 else f"{kb}KB")
    return out


def _check_hugepage_size(size: str) -> None:
    have = _hugepage_sizes()
    if size not in have:
        raise SystemError_(f"cgroup: cannot limit hugepages of size {size}: this kernel has "
                           f"{', '.join(sorted(have)) or 'no hugepages'}")


def _check_device(d: dict, field: str) -> None:
    if not isinstance(d, dict):
        raise InvalidArgument(f"linux.resources.{field}: must be an object, got {_short(d)}")
    if not isinstance(d.get("allow"), bool):
        raise InvalidArgument(f"linux.resources.{field}.allow: must be true or false")
    typ = d.get("type")
    if typ is not None and typ not in ("a", "b", "c"):
        raise InvalidArgument(f"linux.resources.{field}.type: must be \"a\", \"b\" or \"c\", got {_short(typ)}")
    for k in ("major", "minor"):
        v = _int(d.get(k), f"{field}.{k}")
        if v is not None and v < -1:
            raise InvalidArgument(f"linux.resources.{field}.{k}: must be >= 0 (or -1 for any), got {v}")
    access = d.get("access")
    if access is not None:
        if not isinstance(access, str) or not access or any(c not in "rwm" for c in access):
            raise InvalidArgument(f"linux.resources.{field}.access: must be a non-empty subset of \"rwm\", "
                                  f"got {_short(access)}")
    if typ in (None, "a"):
        # the kernel's "a" rule means every device with every access: anything narrower is unexpressible
        if d.get("major") not in (None, -1) or d.get("minor") not in (None, -1):
            raise InvalidArgument(f"linux.resources.{field}: type \"a\" (all devices) cannot have a major/minor")
        if access is not None and set(access) != set("rwm"):
            raise InvalidArgument(f"linux.resources.{field}: type \"a\" (all devices) needs access \"rwm\"")


def _device_rule(d: dict) -> tuple[str, str]:
    """OCI device rule -> (file, line) for cgroup v1."""
    fname = "devices.allow" if d["allow"] else "devices.deny"
    typ = d.get("type") or "a"
    if typ == "a":
        return fname, "a"
    major = d.get("major")
    minor = d.get("minor")
    major = "*" if major is None or major == -1 else str(major)
    minor = "*" if minor is None or minor == -1 else str(minor)
    access = "".join(c for c in "rwm" if c in (d.get("access") or "rwm"))
    return fname, f"{typ} {major}:{minor} {access}"


def _rdma_lines(rdma: dict | None) -> list[str]:
    """linux.resources.rdma -> the rdma.max lines (one per device), as runc writes them."""
    out = []
    for dev, lim in (rdma or {}).items():
        parts = [f"hca_handle={lim['hcaHandles']}" if lim.get("hcaHandles") is not None else "",
                 f"hca_object={lim['hcaObjects']}" if lim.get("hcaObjects") is not None else ""]
        parts = [p for p in parts if p]
        if parts:
            out.append(f"{dev} {' '.join(parts)}")
    return out


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000] (runc's conversion)."""
    return 1 + ((shares - 2) * 9999) // 262142


# ---------------------------------------------------------------------------------------------
# hierarchies


_HIER_CACHE = {}  # root -> (monotonic time, hierarchies): a daemon asks for every container


def _v1_hierarchies(root: str) -> list[tuple[str, list[str], str]]:
    """[(key, controllers, mount point)] of the v1 hierarchies mounted directly under root (read
    from mountinfo at most every few seconds: they are mounted at boot, and a daemon listing
    many containers would otherwise parse mountinfo once per container)."""
    import time
    now = time.monotonic()
    hit = _HIER_CACHE.get(root)
    if hit is not None and now - hit[0] < _HIER_TTL:
        return hit[1]
    out = _read_v1_hierarchies(root)
    _HIER_CACHE[root] = (now, out)
    return out


def _read_v1_hierarchies(root: str) -> list[tuple[str, list[str], str]]:
    root = os.path.realpath(root)
    found = {}
    try:
        mounts = _mountinfo()
    except OSError:
        mounts = []
    for mp, fstype, opts in mounts:
        if fstype != "cgroup" or os.path.dirname(mp) != root:
            continue
        ctrls = tuple(sorted(o for o in opts.split(",")
                             if o not in _V1_NON_CONTROLLERS and not o.startswith("release_agent=")))
        if ctrls:
            found[ctrls] = mp  # a hierarchy mounted twice (bind) counts once
    if not found:
        # not visible in mountinfo (e.g. a chroot): every directory that looks like a hierarchy
        try:
            names = sorted(os.listdir(root))
        except OSError:
            names = []
        for n in names:
            p = os.path.join(root, n)
            if n == _UNIFIED or os.path.islink(p) or not os.path.exists(os.path.join(p, "tasks")):
                continue
            ctrls = tuple(sorted("name=systemd" if c == "systemd" else c for c in n.split(",")))
            found.setdefault(ctrls, p)
    return [(",".join(c), c, mp) for c, mp in sorted(found.items(), key=lambda kv: kv[1])]


def own_procs_file(mode: str, root: str = DEFAULT_ROOT) -> str | None:
    """The cgroup.procs file of the caller's own cgroup in one hierarchy under root (v1, hybrid:
    the first v1 hierarchy /proc/self/cgroup lists that is mounted there; v2: the tree), or None."""
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return None
    if mode == "v2":
        mounts = {"": root}
    else:
        mounts = {key: mp for key, _c, mp in _v1_hierarchies(root)}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        key = ",".join(sorted(parts[1].split(","))) if parts[1] else ""
        mp = mounts.get(key)
        if mp is not None and (key or mode == "v2"):
            return mp + parts[2].rstrip("/") + "/cgroup.procs"
    return None


class Manager:
    """The cgroup of one container (or any cgroup path), in every relevant hierarchy."""

    def __init__(self, path: str, mode: str | None = None, root: str = DEFAULT_ROOT) -> None:
        self.path = _normalize(path)
        self.root = root
        self.mode = detect_mode(root) if mode is None else mode
        if self.mode not in MODES:
            raise InvalidArgument(f"cgroup: unknown cgroup mode {self.mode!r}")
        # (key, hierarchy mount point); keys: "cpu", "cpu,cpuacct", "name=systemd", "unified", or "" for v2
        hier = []
        if self.mode == "v2":
            if not os.path.exists(os.path.join(root, "cgroup.controllers")):
                raise SystemError_(f"cgroup: {root} is not a cgroup2 hierarchy")
            hier.append(("", root))
        else:
            hier += [(key, mp) for key, _ctrls, mp in _v1_hierarchies(root)]
            if not hier:
                raise SystemError_(f"cgroup: no cgroup v1 hierarchy is mounted under {root}")
            unified = os.path.join(root, _UNIFIED)
            if self.mode == "hybrid" and os.path.exists(os.path.join(unified, "cgroup.procs")):
                hier.append((_UNIFIED, unified))
        self._place(hier)

    def _place(self, hier: list[tuple[str, str]]) -> None:
        """Its directories in the hierarchies hier names ((key, mount point)): paths, and each v1
        controller's (a key is its hierarchy's controllers, comma-separated)."""
        rel = self.path[1:]
        self._hier = hier
        self._ctrl = {}  # v1 controller -> cgroup dir
        for key, mp in hier:
            if key and key != _UNIFIED:
                for c in key.split(","):
                    self._ctrl.setdefault(c, os.path.join(mp, rel))
        self.paths = {key: os.path.join(mp, rel) for key, mp in hier}

    def hierarchies(self) -> list[list[str]]:
        """[[key, mount point]] of the hierarchies it is in: what of() needs to make it again
        without reading mountinfo (a container's runtime state keeps them, as runc's keeps its
        cgroup paths)."""
        return [[key, mp] for key, mp in self._hier]

    @classmethod
    def of(cls, path: str, mode: str, hierarchies: list, root: str = DEFAULT_ROOT) -> "Manager":
        """The Manager that Manager(path, mode, root) was when it gave hierarchies()."""
        if mode not in MODES:
            raise InvalidArgument(f"cgroup: unknown cgroup mode {mode!r}")
        m = cls.__new__(cls)
        m.path, m.root, m.mode = _normalize(path), root, mode
        m._place([(str(key), str(mp)) for key, mp in hierarchies])
        return m

    def __repr__(self) -> str:
        return f"Manager({self.path!r}, mode={self.mode!r}, root={self.root!r})"

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _v2dir(self) -> str:
        return self.paths[""]

    def _dirs(self) -> list[str]:
        return list(self.paths.values())

    def _primary(self) -> str:
        if self.mode == "v2":
            return self._v2dir
        for c in _PRIMARY:
            if c in self._ctrl:
                return self._ctrl[c]
        return self._dirs()[0]

    def _cdir(self, controller: str, fname: str) -> str:
        """The v1 cgroup dir of a controller, or a clear error naming the file."""
        d = self._ctrl.get(controller)
        if d is None:
            raise SystemError_(f"cgroup: cannot set {fname}: the {controller} controller is not mounted "
                               f"under {self.root}")
        return d

    def _set(self, d: str, fname: str, value: object) -> None:
        value = str(value)
        try:
            _write(os.path.join(d, fname), value)
        except OSError as e:
            if e.errno == errno.ENOENT:
                if not os.path.isdir(d):
                    raise NotFound(f"cgroup: {d} does not exist") from None
                raise SystemError_(f"cgroup: cannot set {fname} to {value}: {fname} does not exist in {d}") from None
            if e.errno == errno.EBUSY and fname == "memory.limit_in_bytes":
                # below what the cgroup uses already: runc's words
                try:
                    usage, peak = self._get(d, "memory.usage_in_bytes"), self._get(d, "memory.max_usage_in_bytes")
                except BerthError:
                    usage = peak = "?"
                raise SystemError_(f"unable to set memory limit to {value} (current usage: {usage}, "
                                   f"peak usage: {peak})") from None
            raise SystemError_(f"failed to write {_goquote(value)}: write {os.path.join(d, fname)}: "
                               f"{errno_text(e)}") from None  # runc's words

    def _get(self, d: str, fname: str) -> str:
        try:
            return _read(os.path.join(d, fname)).strip()
        except OSError as e:
            if e.errno == errno.ENOENT and not os.path.isdir(d):
                raise NotFound(f"cgroup: {d} does not exist") from None
            raise SystemError_(f"cgroup: cannot read {os.path.join(d, fname)}: {_strerror(e)}") from None

    # -- lifecycle ----------------------------------------------------------------------------

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs())

    def create(self) -> None:
        """mkdir the cgroup (and missing ancestors) in every hierarchy; undone on failure."""
        parts = self.path[1:].split("/")
        created = []
        try:
            for key, mp in self._hier:
                cpuset = self.mode != "v2" and "cpuset" in key.split(",")
                cur = mp
                for part in parts:
                    parent, cur = cur, os.path.join(cur, part)
                    if self.mode == "v2":
                        self._enable_controllers(parent)
                    try:
                        os.mkdir(cur)
                        created.append(cur)
                    except FileExistsError:
                        if not os.path.isdir(cur):
                            raise SystemError_(f"cgroup: cannot create {cur}: a file of that name exists") from None
                    except OSError as e:
                        raise SystemError_(f"cgroup: cannot create {cur}: {_strerror(e)}") from None
                    if cpuset:
                        # an empty cpuset.cpus/mems makes every later add() fail with ENOSPC
                        for f in ("cpuset.cpus", "cpuset.mems"):
                            if not self._get(cur, f):
                                self._set(cur, f, self._get(parent, f))
        except BaseException:
            for d in reversed(created):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def _enable_controllers(self, d: str) -> None:
        """v2: enable in d's subtree_control the wanted controllers d has (best effort, like runc)."""
        try:
            avail = _read(os.path.join(d, "cgroup.controllers")).split()
            on = _read(os.path.join(d, "cgroup.subtree_control")).split()
        except OSError:
            return
        need = [c for c in _V2_WANTED if c in avail and c not in on]
        if not need:
            return
        try:
            _write(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in need))
        except OSError:
            for c in need:  # one by one: some may be refused (e.g. threaded/busy cgroups)
                try:
                    _write(os.path.join(d, "cgroup.subtree_control"), "+" + c)
                except OSError:
                    pass

    def sub(self, subs: dict[str, str]) -> "Manager":
        """The sub-cgroup an exec joins (runc exec --cgroup): {"": path} below this cgroup in every
        hierarchy, else {controller: path} below it in that controller's hierarchy (v1). Only
        add() is meant for it; nothing is made."""
        import copy
        import posixpath
        m = copy.copy(self)
        m.paths = dict(self.paths)
        for ctrl, add in subs.items():
            keys = [k for k in self.paths if not ctrl or ctrl in k.split(",") and k != _UNIFIED]
            if not keys:
                raise InvalidArgument(f"unknown controller {ctrl} in SubCgroupPaths")  # runc's words
            for k in keys:
                d = self.paths[k]
                joined = posixpath.normpath(d + "/" + add)
                if joined != d and not joined.startswith(d + "/"):
                    raise InvalidArgument(f"{add} is not a sub cgroup path")
                m.paths[k] = joined
        return m

    def add(self, pid: int) -> None:
        """Move a process (all its threads) into this cgroup in every hierarchy."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise InvalidArgument(f"cgroup: invalid pid {_short(pid)}")
        for d in self._dirs():
            try:
                _write(os.path.join(d, "cgroup.procs"), str(pid))
            except OSError as e:
                if e.errno == errno.ESRCH:
                    raise NotFound(f"cgroup: cannot add pid {pid}: No such process") from None
                if e.errno == errno.ENOENT and not os.path.isdir(d):
                    raise NotFound(f"cgroup: {d} does not exist") from None
                raise SystemError_(f"cgroup: cannot add pid {pid} to {d}: {_strerror(e)}") from None

    def open_procs(self) -> list[tuple[str, int]]:
        """(directory, fd) of the cgroup.procs file of every hierarchy, open for join_self(): for a
        process about to leave this mount namespace's root (the paths no longer resolve then)."""
        out: list[tuple[str, int]] = []
        try:
            for d in self._dirs():
                try:
                    out.append((d, os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)))
                except OSError as e:
                    if e.errno == errno.ENOENT and not os.path.isdir(d):
                        raise NotFound(f"cgroup: {d} does not exist") from None
                    raise SystemError_(f"cgroup: cannot join {d}: {_strerror(e)}") from None
        except BaseException:
            for _d, fd in out:
                os.close(fd)
            raise
        return out

    @staticmethod
    def join_self(procs: list[tuple[str, int]]) -> None:
        """Move the calling process (all its threads) into the cgroup of open_procs() in every
        hierarchy: the process as `0`, which names the writer whatever PID namespace it is in.
        The files are closed."""
        try:
            for d, fd in procs:
                try:
                    os.write(fd, b"0")
                except OSError as e:
                    raise SystemError_(f"cgroup: cannot join {d}: {_strerror(e)}") from None
        finally:
            for _d, fd in procs:
                os.close(fd)

    def pids(self) -> list[int]:
        """Every pid in the cgroup and its descendants (sorted); [] if it does not exist."""
        out = set()
        stack = [self._primary()]
        while stack:
            d = stack.pop()
            try:
                out.update(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
                with os.scandir(d) as it:
                    stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                continue  # removed while walking
            except OSError as e:
                raise SystemError_(f"cgroup: cannot list processes of {d}: {_strerror(e)}") from None
        return sorted(out)

    def destroy(self, timeout: float = 1.0) -> None:
        """rmdir the cgroup and its descendants, deepest first, in every hierarchy.

        Missing directories are fine. EBUSY (tasks still exiting) is retried until timeout.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            failed = None
            for top in self._dirs():
                try:  # a container's cgroup rarely has cgroups below it: one rmdir, no listing
                    os.rmdir(top)
                    continue
                except FileNotFoundError:
                    continue
                except OSError:
                    pass
                for d in _postorder(top):
                    try:
                        os.rmdir(d)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        failed = failed or (d, e)
            if failed is None:
                return
            d, e = failed
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                raise SystemError_(f"cgroup: cannot remove {d}: {_strerror(e)}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # -- resources ----------------------------------------------------------------------------

    def set(self, resources: dict) -> None:
        """Apply an OCI linux.resources object (validated first)."""
        validate_resources(resources, self.mode)
        if not resources:
            return
        if self.mode == "v2":
            self._set_v2(resources)
        else:
            self._set_v1(resources)

    def _set_v1(self, r: dict) -> None:
        mem = r.get("memory") or {}
        if any(mem.get(k) for k in ("limit", "swap", "reservation")):
            self._set_v1_memory(self._cdir("memory", "memory.limit_in_bytes"), mem)

        cpu = r.get("cpu") or {}
        shares, quota, period = cpu.get("shares"), cpu.get("quota"), cpu.get("period")
        if shares:
            self._set(self._cdir("cpu", "cpu.shares"), "cpu.shares", shares)
        if quota or period:
            d = self._cdir("cpu", "cpu.cfs_quota_us")
            retry_period = False
            if period:
                try:
                    self._set(d, "cpu.cfs_period_us", period)
                except SystemError_:
                    # a smaller period can be refused (EINVAL) until the quota is lowered: retry after
                    if not quota:
                        raise
                    retry_period = True
            if quota:
                self._set(d, "cpu.cfs_quota_us", quota)
            if retry_period:
                self._set(d, "cpu.cfs_period_us", period)
        for key, fname in (("burst", "cpu.cfs_burst_us"), ("idle", "cpu.idle")):
            if cpu.get(key) is not None:  # (0 is a value too)
                d = self._cdir("cpu", fname)
                self._need_file(d, fname)
                self._set(d, fname, cpu[key])
        for key, fname in (("realtimePeriod", "cpu.rt_period_us"), ("realtimeRuntime", "cpu.rt_runtime_us")):
            if cpu.get(key):  # (runc's order: the period first)
                self._set(self._cdir("cpu", fname), fname, cpu[key])
        for key, fname in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if cpu.get(key):
                self._set(self._cdir("cpuset", fname), fname, cpu[key])

        pids = r.get("pids") or {}
        if pids.get("limit") is not None:
            limit = pids["limit"]
            self._set(self._cdir("pids", "pids.max"), "pids.max", limit if limit > 0 else "max")

        devices = r.get("devices") or []
        if devices:
            d = self._cdir("devices", "devices.allow")
            for rule in devices:
                fname, line = _device_rule(rule)
                self._set(d, fname, line)

        self._set_v1_memory_extra(mem)
        self._set_v1_blkio(r.get("blockIO") or {})
        net = r.get("network") or {}
        if net.get("classID") is not None:
            self._set(self._cdir("net_cls", "net_cls.classid"), "net_cls.classid", net["classID"])
        for pr in net.get("priorities") or []:
            self._set(self._cdir("net_prio", "net_prio.ifpriomap"), "net_prio.ifpriomap",
                      f"{pr['name']} {pr['priority']}")
        for h in r.get("hugepageLimits") or []:
            fname = f"hugetlb.{h['pageSize']}.limit_in_bytes"
            d = self._cdir("hugetlb", fname)
            _check_hugepage_size(h["pageSize"])
            self._set(d, fname, h["limit"])
        for line in _rdma_lines(r.get("rdma")):
            self._set(self._cdir("rdma", "rdma.max"), "rdma.max", line)

    def _need_file(self, d: str, fname: str, why: str = "") -> None:
        if not os.path.exists(os.path.join(d, fname)):
            raise SystemError_(f"cgroup: cannot set {fname}: this kernel has no {fname}{why}")

    def _set_v1_memory_extra(self, mem: dict) -> None:
        """The memory settings beyond the limits: never ignored when asked for (runc sets them too)."""
        swappiness = _swappiness(mem)
        if swappiness is not None:
            d = self._cdir("memory", "memory.swappiness")
            self._set(d, "memory.swappiness", swappiness)
        if mem.get("disableOOMKiller"):
            d = self._cdir("memory", "memory.oom_control")
            self._set(d, "memory.oom_control", 1)
        if mem.get("useHierarchy") is not None:
            d = self._cdir("memory", "memory.use_hierarchy")
            self._set(d, "memory.use_hierarchy", int(mem["useHierarchy"]))

    def _set_v1_blkio(self, bio: dict) -> None:
        if not bio:
            return
        d = self._cdir("blkio", "linux.resources.blockIO")
        weights = bio.get("weight") or bio.get("leafWeight") or any(
            w.get("weight") or w.get("leafWeight") for w in bio.get("weightDevice") or [])
        if weights:
            # CFQ's blkio.weight, or BFQ's blkio.bfq.weight; neither when the I/O schedulers have no weights
            prefix = "blkio." if os.path.exists(os.path.join(d, "blkio.weight")) else "blkio.bfq."
            self._need_file(d, prefix + "weight", " (the block I/O schedulers in use have no weights: "
                            "CFQ or BFQ is needed)")
            if bio.get("weight"):
                self._set(d, prefix + "weight", bio["weight"])
            if bio.get("leafWeight"):
                self._need_file(d, prefix + "leaf_weight")
                self._set(d, prefix + "leaf_weight", bio["leafWeight"])
            for w in bio.get("weightDevice") or []:
                dev = f"{w['major']}:{w['minor']}"
                if w.get("weight"):
                    self._set(d, prefix + "weight_device", f"{dev} {w['weight']}")
                if w.get("leafWeight"):
                    self._need_file(d, prefix + "leaf_weight_device")
                    self._set(d, prefix + "leaf_weight_device", f"{dev} {w['leafWeight']}")
        for key, (fname, _v2key) in _THROTTLES.items():
            for t in bio.get(key) or []:
                self._set(d, fname, f"{t['major']}:{t['minor']} {t['rate']}")

    def _set_v1_memory(self, d: str, mem: dict) -> None:
        limit = mem.get("limit") or None
        swap = mem.get("swap") or None
        res = mem.get("reservation") or None
        memsw = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
        if limit == -1 and swap is None and memsw:
            swap = -1  # unlimited memory means unlimited memory+swap too (runc)
        if swap is not None and not memsw:
            if swap == -1 or swap == limit:
                swap = None  # no swap accounting, and nothing asked beyond the memory limit
            else:
                raise SystemError_(f"cgroup: cannot set memory.memsw.limit_in_bytes to {swap}: "
                                   "swap accounting is not enabled in the kernel")
        # the kernel always wants memsw >= limit: raise swap first, lower memory first
        swap_first = False
        if limit is not None and swap is not None:
            cur = int(self._get(d, "memory.limit_in_bytes"))
            swap_first = swap == -1 or cur < swap
        if swap_first:
            self._set(d, "memory.memsw.limit_in_bytes", swap)
        if limit is not None:
            self._set(d, "memory.limit_in_bytes", limit)
        if swap is not None and not swap_first:
            self._set(d, "memory.memsw.limit_in_bytes", swap)
        if res is not None:
            self._set(d, "memory.soft_limit_in_bytes", res)

    def _set_v2(self, r: dict) -> None:
        d = self._v2dir
        try:
            enabled = set(self._get(d, "cgroup.controllers").split())
        except SystemError_:
            enabled = set()

        def need(ctrl: str, fname: str, value: object) -> None:
            if ctrl not in enabled:
                raise SystemError_(f"cgroup: cannot set {fname} to {value}: the {ctrl} controller is not "
                                   f"available in cgroup {self.path} (not enabled in its parent)")

        mem = r.get("memory") or {}
        limit = mem.get("limit") or None
        swap = mem.get("swap") or None
        res = mem.get("reservation") or None
        if limit is not None:
            need("memory", "memory.max", limit)
        if swap is not None:
            need("memory", "memory.swap.max", swap)
        if res is not None:
            need("memory", "memory.low", res)
        has_swap = os.path.exists(os.path.join(d, "memory.swap.max"))
        if limit == -1 and swap is None and has_swap:
            swap = -1
        if swap is not None:
            swapmax = "max" if swap == -1 else swap - limit  # validated: limit > 0 when swap > 0
            if has_swap:
                self._set(d, "memory.swap.max", swapmax)
            elif swapmax not in ("max", 0):
                raise SystemError_(f"cgroup: cannot set memory.swap.max to {swapmax}: "
                                   "swap accounting is not enabled in the kernel")
        if limit is not None:
            self._set(d, "memory.max", "max" if limit == -1 else limit)
        if res is not None:
            self._set(d, "memory.low", "max" if res == -1 else res)

        cpu = r.get("cpu") or {}
        shares, quota, period = cpu.get("shares"), cpu.get("quota"), cpu.get("period")
        if shares:
            weight = shares_to_weight(shares)
            need("cpu", "cpu.weight", weight)
            self._set(d, "cpu.weight", weight)
        if quota or period:
            need("cpu", "cpu.max", f"{quota or ''} {period or ''}".strip())
            if quota == -1:
                q = "max"
            elif quota:
                q = str(quota)
            else:
                q = self._get(d, "cpu.max").split()[0]  # period only: keep the current quota
            self._set(d, "cpu.max", f"{q} {period}" if period else q)
        for key, fname in (("burst", "cpu.max.burst"), ("idle", "cpu.idle")):
            if cpu.get(key) is not None:
                need("cpu", fname, cpu[key])
                self._set(d, fname, cpu[key])
        for key, fname in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if cpu.get(key):
                need("cpuset", fname, cpu[key])
                self._set(d, fname, cpu[key])

        pids = r.get("pids") or {}
        if pids.get("limit") is not None:
            value = pids["limit"] if pids["limit"] > 0 else "max"
            need("pids", "pids.max", value)
            self._set(d, "pids.max", value)
        if r.get("devices"):  # an eBPF program (cgroup v2 has no devices.allow/deny), as runc's
            from berth.linux import devfilter
            try:
                devfilter.attach(d, r["devices"])
            except OSError as e:  # never a container without the device rules it was given
                raise SystemError_(f"cgroup: cannot apply the device rules (bpf): {e.strerror}") from None

        if cpu.get("realtimePeriod") or cpu.get("realtimeRuntime"):
            raise SystemError_("cgroup: cannot set the realtime limits: cgroup v2 has no cpu.rt_period_us "
                               "and cpu.rt_runtime_us")
        if _swappiness(mem) is not None:
            raise SystemError_("cgroup: cannot set memory.swappiness: cgroup v2 has no per-cgroup swappiness")
        if mem.get("disableOOMKiller"):
            raise SystemError_("cgroup: cannot disable the OOM killer: cgroup v2 has no memory.oom_control")
        net = r.get("network") or {}
        if net.get("classID") is not None or net.get("priorities"):
            raise SystemError_("cgroup: cannot set linux.resources.network: cgroup v2 has no net_cls/net_prio "
                               "controllers")
        bio = r.get("blockIO") or {}
        if bio:
            self._set_v2_io(d, bio, need)
        for h in r.get("hugepageLimits") or []:
            fname = f"hugetlb.{h['pageSize']}.max"
            need("hugetlb", fname, h["limit"])
            _check_hugepage_size(h["pageSize"])
            self._set(d, fname, h["limit"])
        for line in _rdma_lines(r.get("rdma")):
            need("rdma", "rdma.max", line)
            self._set(d, "rdma.max", line)
        for key, value in (r.get("unified") or {}).items():
            ctrl = key.split(".", 1)[0]
            if ctrl != "cgroup":
                need(ctrl, key, value)
            self._set(d, key, value)

    def _set_v2_io(self, d: str, bio: dict, need: "Callable[[str, str, object], None]") -> None:
        weights = []
        if bio.get("weight"):
            weights.append(f"default {bio['weight']}")
        for w in bio.get("weightDevice") or []:
            if w.get("weight"):
                weights.append(f"{w['major']}:{w['minor']} {w['weight']}")
        if bio.get("leafWeight") or any(w.get("leafWeight") for w in bio.get("weightDevice") or []):
            raise SystemError_("cgroup: cannot set blockIO leaf weights: cgroup v2 has none")
        if weights:
            need("io", "io.weight", weights[0])
            fname = "io.weight" if os.path.exists(os.path.join(d, "io.weight")) else "io.bfq.weight"
            self._need_file(d, fname, " (the block I/O schedulers in use have no weights)")
            for line in weights:
                self._set(d, fname, line)
        limits = {}
        for key, (_fname, v2key) in _THROTTLES.items():
            for t in bio.get(key) or []:
                limits.setdefault(f"{t['major']}:{t['minor']}", []).append(f"{v2key}={t['rate'] or 'max'}")
        for dev, parts in limits.items():
            need("io", "io.max", dev)
            self._set(d, "io.max", f"{dev} {' '.join(parts)}")

    # -- freezer ------------------------------------------------------------------------------

    def freeze(self, timeout: float = _FREEZE_TIMEOUT) -> None:
        if self.mode == "v2":
            return self._freeze_v2(True, timeout)
        d = self._cdir("freezer", "freezer.state")
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            if i % 50 == 49:
                # runc: an occasional thaw + short sleep helps when new tasks keep appearing
                self._set(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            self._set(d, "freezer.state", "FROZEN")
            state = self._get(d, "freezer.state")
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise SystemError_(f"cgroup: unexpected freezer state {state} while freezing {self.path}")
            if time.monotonic() >= deadline:
                self._set(d, "freezer.state", "THAWED")
                raise SystemError_(f"cgroup: cannot freeze {self.path}: tasks stuck in FREEZING")
            if i >= 10:
                time.sleep(0.001)
            i += 1

    def thaw(self, timeout: float = _FREEZE_TIMEOUT) -> None:
        if self.mode == "v2":
            return self._freeze_v2(False, timeout)
        d = self._cdir("freezer", "freezer.state")
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            self._set(d, "freezer.state", "THAWED")
            if self._get(d, "freezer.state") == "THAWED":
                return
            if time.monotonic() >= deadline:
                why = "an ancestor cgroup is frozen" if _read_or(os.path.join(d, "freezer.parent_freezing")) == "1" \
                    else "still frozen"
                raise SystemError_(f"cgroup: cannot thaw {self.path}: {why}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def frozen(self) -> bool:
        """True if the cgroup's tasks are frozen (also when by an ancestor); False if it does not exist."""
        if self.mode == "v2":
            events = _read_or(os.path.join(self._v2dir, "cgroup.events"))
            return "frozen 1" in events.splitlines()
        d = self._ctrl.get("freezer")
        if d is None:
            return False
        deadline = time.monotonic() + 0.1
        while True:
            state = _read_or(os.path.join(d, "freezer.state"))
            if state != "FREEZING" or time.monotonic() >= deadline:
                return state == "FROZEN"
            time.sleep(0.001)

    def _freeze_v2(self, freeze: bool, timeout: float) -> None:
        d = self._v2dir
        if not os.path.exists(os.path.join(d, "cgroup.freeze")):
            if not os.path.isdir(d):
                raise NotFound(f"cgroup: {d} does not exist")
            raise SystemError_("cgroup: cannot freeze: cgroup.freeze is not supported by this kernel (needs 5.2)")
        self._set(d, "cgroup.freeze", "1" if freeze else "0")
        want = "frozen 1" if freeze else "frozen 0"
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            lines = self._get(d, "cgroup.events").splitlines()
            if want in lines or not any(ln.startswith("frozen ") for ln in lines):
                return
            if time.monotonic() >= deadline:
                if freeze:
                    _try(self._set, d, "cgroup.freeze", "0")
                    raise SystemError_(f"cgroup: cannot freeze {self.path}: timed out")
                raise SystemError_(f"cgroup: cannot thaw {self.path}: still frozen (is an ancestor frozen?)")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def kill_all(self, sig: int) -> list[int]:
        """Signal every process of the cgroup (and descendants): freeze, kill, thaw, like runc.

        As in runc, the cgroup is left thawed (a paused container is resumed so SIGKILL lands).
        Never call it on a cgroup that holds the caller. Returns the pids signalled.
        """
        try:
            self.freeze()
            frozen = True
        except BerthError:
            frozen = False  # no freezer (or it failed): signal anyway, racing with forks
        failed = None
        try:
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except OSError as e:
                    failed = failed or (pid, e)
        finally:
            if frozen:
                self.thaw()
        if failed:
            raise SystemError_(f"cgroup: cannot signal pid {failed[0]}: {_strerror(failed[1])}")
        return pids

    # -- stats --------------------------------------------------------------------------------

    def read_stats(self) -> CgroupStats:
        """Every counter of this cgroup that `docker stats` and runc events show, read from the
        v2 files or the v1 controllers' (the one reader of cgroup stats; callers format them)."""
        st = CgroupStats()
        if self.mode == "v2":
            d = self._v2dir
            cs = _kv(os.path.join(d, "cpu.stat"))
            if "usage_usec" in cs:
                st.cpu_total_ns = cs["usage_usec"] * 1000
            st.cpu_kernel_ns = cs.get("system_usec", 0) * 1000
            st.cpu_user_ns = cs.get("user_usec", 0) * 1000
            st.throttle_periods = cs.get("nr_periods", 0)
            st.throttled_periods = cs.get("nr_throttled", 0)
            st.throttled_ns = cs.get("throttled_usec", 0) * 1000
            st.memory_usage = _num(d, "memory.current")
            st.memory_stat = _kv(os.path.join(d, "memory.stat"))
            st.memory_limit = _num(d, "memory.max")
            st.pids_current = _num(d, "pids.current")
            st.pids_limit = _num(d, "pids.max")
            st.io_service_bytes = _io_v2(d)
            return st
        hz = os.sysconf("SC_CLK_TCK")
        c = self._ctrl.get("cpuacct")
        if c:
            st.cpu_total_ns = _num(c, "cpuacct.usage")
            percpu = _read_or(os.path.join(c, "cpuacct.usage_percpu")).split()
            if percpu:
                st.percpu_ns = [int(x) for x in percpu]
            ct = _kv(os.path.join(c, "cpuacct.stat"))
            st.cpu_kernel_ns = ct.get("system", 0) * 10**9 // hz
            st.cpu_user_ns = ct.get("user", 0) * 10**9 // hz
        c = self._ctrl.get("cpu")
        if c:
            ct = _kv(os.path.join(c, "cpu.stat"))
            st.throttle_periods = ct.get("nr_periods", 0)
            st.throttled_periods = ct.get("nr_throttled", 0)
            st.throttled_ns = ct.get("throttled_time", 0)
        m = self._ctrl.get("memory")
        if m:
            st.memory_usage = _num(m, "memory.usage_in_bytes")
            st.memory_max_usage = _num(m, "memory.max_usage_in_bytes")
            st.memory_failcnt = _num(m, "memory.failcnt")
            st.memory_stat = _kv(os.path.join(m, "memory.stat"))
            st.memory_limit = _num(m, "memory.limit_in_bytes")
        p = self._ctrl.get("pids")
        if p:
            st.pids_current = _num(p, "pids.current")
            st.pids_limit = _num(p, "pids.max")
        b = self._ctrl.get("blkio")
        if b:
            st.io_service_bytes = _io_v1(b)
            st.io_v1 = {"io_serviced_recursive": _io_v1(b, "io_serviced_recursive")}
            for key, name in (("io_queue_recursive", "io_queued_recursive"),
                              ("io_service_time_recursive", "io_service_time_recursive"),
                              ("io_wait_time_recursive", "io_wait_time_recursive"),
                              ("io_merged_recursive", "io_merged_recursive"), ("io_time_recursive", "time_recursive"),
                              ("sectors_recursive", "sectors_recursive")):
                st.io_v1[key] = _entries(_read_or(os.path.join(b, "blkio." + name)))
        return st


def _kv(path: str) -> dict[str, int]:
    """A flat-keyed cgroup file ("key value" lines) as ints; other lines are skipped."""
    out = {}
    for line in _read_or(path).splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def _io_v1(d: str, what: str = "io_service_bytes_recursive") -> list[dict]:
    return _entries(_read_or(os.path.join(d, "blkio.throttle." + what)) or _read_or(os.path.join(d, "blkio." + what)))


def _entries(text: str) -> list[dict]:
    """A v1 blkio file's "major:minor op value" lines as docker's entries (a device's "major:minor
    value" lines with an empty op; the Total line left out)."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) in (2, 3) and ":" in f[0]:
            ma, mi = f[0].split(":")
            out.append({"major": int(ma), "minor": int(mi), "op": f[1] if len(f) == 3 else "", "value": int(f[-1])})
    return out


def _io_v2(d: str) -> list[dict]:
    out = []
    for line in _read_or(os.path.join(d, "io.stat")).splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        ma, mi = f[0].split(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in kv:
                out.append({"major": int(ma), "minor": int(mi), "op": op, "value": int(kv[key])})
    return out


def manager_of(proc_cgroup: str, root: str = DEFAULT_ROOT) -> Manager | None:
    """The Manager of the cgroup named by the lines of a /proc/<pid>/cgroup; None for the root
    cgroup or none."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            paths[c] = path
    mode = detect_mode(root)
    path = paths.get("") if mode == "v2" else (paths.get("memory") or paths.get("pids") or paths.get("cpu")
                                                   or paths.get(""))
    if not path or path == "/":
        return None
    try:
        return Manager(path, mode=mode, root=root)
    except BerthError:
        return None


def manager_of_pid(pid: int, root: str = DEFAULT_ROOT) -> Manager | None:
    """The Manager of a process's cgroup (any runtime's), from /proc/<pid>/cgroup; None if gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return manager_of(f.read(), root)
    except OSError:
        return None


def _postorder(top: str) -> list[str]:
    """top and every directory below it, deepest first."""
    out = []
    try:
        with os.scandir(top) as it:
            subs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return out
    except OSError:
        subs = []
    for s in subs:
        out.extend(_postorder(s))
    out.append(top)
    return out


def _read_or(path: str, default: str | None = "") -> str | None:
    try:
        return _read(path).strip()
    except OSError:
        return default


def _num(d: str | None, fname: str) -> int | None:
    if d is None:
        return None
    v = _read_or(os.path.join(d, fname), None)
    if v is None:
        return None
    if v == "max":
        return -1
    try:
        n = int(v)
    except ValueError:
        return None
    return -1 if n >= _UNLIMITED_V1 else n


def _try(fn: "Callable[..., object]", *args) -> None:
    try:
        fn(*args)
    except BerthError:
        pass
