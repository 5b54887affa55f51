"""runc events: a container's cgroup counters as runc 1.1 prints them (its types.Stats: engines and
monitoring scripts parse that JSON) and its OOM notifications.

The counters come from the cgroup files runc's libcontainer reads, v1 (each controller's directory)
or v2 (the unified one), and are shaped as Go's encoder writes runc's structs: fields in their
order, zero numbers and empty lists left out where the struct says omitempty, the nested structs
always there. OOM kills are watched as runc does: on v1 an eventfd registered for memory.oom_control
(it also fires when the cgroup is removed, which ends the stream), on v2 memory.events and
cgroup.events (a kernfs file's change wakes poll(2) with POLLPRI; "populated 0" ends the stream).
"""

from __future__ import annotations

import os

from berth.errors import SystemError_
from berth.goquote import errno_text
from berth.runtime.cgroups import _kv as _kv_file

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from collections.abc import Callable

    from berth.runtime.cgroups import Manager

_U64 = (1 << 64) - 1


def _read(d: str | None, name: str) -> str | None:
    if not d:
        return None
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError:
        return None


def _uint(d: str | None, name: str) -> int:
    """A one-value file as libcontainer's GetCgroupParamUint reads it: "max" is the largest
    uint64, a missing or unreadable file 0."""
    text = (_read(d, name) or "").strip()
    if text == "max":
        return _U64
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def _kv(d: str | None, name: str) -> dict[str, int]:
    """A flat-keyed cgroup file of a directory (none: {})."""
    return _kv_file(os.path.join(d, name)) if d else {}


def _nonzero(pairs: list[tuple[str, object]]) -> dict:
    """Go's omitempty over (key, value) pairs: zeros and empty lists left out."""
    return {k: v for k, v in pairs if v}


def _id_list(text: str | None) -> list[int]:
    """A cpuset list ("0-3,8") as its members."""
    out = []
    for part in (text or "").strip().split(","):
        lo, _, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            pass
    return out


def _blkio_entries(d: str | None, name: str) -> list[dict]:
    """A v1 blkio file's "major:minor [op] value" lines (the Total line left out) as runc's
    entries, their zero fields left out."""
    out = []
    for line in (_read(d, name) or "").splitlines():
        f = line.replace(":", " ").split()
        if len(f) not in (3, 4):
            continue
        try:
            major, minor, value = int(f[0]), int(f[1]), int(f[-1])
        except ValueError:
            continue
        out.append(_nonzero([("major", major), ("minor", minor), ("op", f[2] if len(f) == 4 else ""),
                             ("value", value)]))
    return out


# libcontainer's blkio groups in its order of preference: the first whose first file has entries
# is used, as far as its files have them
_BLKIO_FIELDS = {"sectors_recursive": "sectorsRecursive", "io_service_time_recursive": "ioServiceTimeRecursive",
                 "io_wait_time_recursive": "ioWaitTimeRecursive", "io_merged_recursive": "ioMergedRecursive",
                 "io_queued_recursive": "ioQueueRecursive", "time_recursive": "ioTimeRecursive",
                 "io_serviced_recursive": "ioServicedRecursive",
                 "io_service_bytes_recursive": "ioServiceBytesRecursive"}
_CFQ_FILES = list(_BLKIO_FIELDS)
_BLKIO_GROUPS = [
    [("blkio.bfq." + f, _BLKIO_FIELDS[f]) for f in _CFQ_FILES],
    [("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")],
    [("blkio." + f, _BLKIO_FIELDS[f]) for f in _CFQ_FILES],
    [("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")],
    [("blkio.throttle.io_serviced", "ioServicedRecursive"), ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")],
]
_BLKIO_ORDER = ["ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive", "ioServiceTimeRecursive",
                "ioWaitTimeRecursive", "ioMergedRecursive", "ioTimeRecursive", "sectorsRecursive"]


def _blkio_v1(d: str | None) -> dict:
    got: dict[str, list] = {}
    for group in _BLKIO_GROUPS:
        for i, (fname, key) in enumerate(group):
            entries = _blkio_entries(d, fname)
            if not entries:
                if i == 0:
                    break
                return {k: got[k] for k in _BLKIO_ORDER if k in got}
            got[key] = entries
        else:
            break
    return {k: got[k] for k in _BLKIO_ORDER if k in got}


def _blkio_v2(d: str) -> dict:
    """io.stat as libcontainer's v2 reader shapes it: bytes and ios per device and direction."""
    served, ios = [], []
    for line in (_read(d, "io.stat") or "").splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        ma, _, mi = f[0].partition(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        for key, out, op in (("rbytes", served, "Read"), ("wbytes", served, "Write"), ("rios", ios, "Read"),
                             ("wios", ios, "Write")):
            if key in kv:
                try:
                    out.append(_nonzero([("major", int(ma)), ("minor", int(mi)), ("op", op), ("value", int(kv[key]))]))
                except ValueError:
                    pass
    return _nonzero([("ioServiceBytesRecursive", served), ("ioServicedRecursive", ios)])


def _hugepage_sizes() -> list[str]:
    """The host's huge page sizes in libcontainer's names ("2MB", "1GB")."""
    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in names:
        if n.startswith("hugepages-") and n.endswith("kB"):
            try:
                size = int(n[len("hugepages-"):-2]) * 1024
            except ValueError:
                continue
            unit = 0
            while size >= 1024 and unit < 5:
                size /= 1024
                unit += 1
            out.append(f"{size:g}{('B', 'KB', 'MB', 'GB', 'TB', 'PB')[unit]}")
    return sorted(out)


def _memory_entry(usage: int, limit: int, peak: int = 0, failcnt: int = 0) -> dict:
    return {"limit": limit, **_nonzero([("usage", usage), ("max", peak)]), "failcnt": failcnt}


def stats(mgr: Manager) -> dict:
    """The container's counters as runc 1.1's `events --stats` data (its types.Stats)."""
    if mgr.mode == "v2":
        return _stats_v2(mgr.paths[""])
    return _stats_v1(mgr._ctrl)


def _stats_v1(ctrl: dict[str, str]) -> dict:
    acct, cpu, cs, mem, pids = (ctrl.get(c) for c in ("cpuacct", "cpu", "cpuset", "memory", "pids"))
    ticks = os.sysconf("SC_CLK_TCK")
    percpu_user, percpu_kernel = [], []
    for line in (_read(acct, "cpuacct.usage_all") or "").splitlines()[1:]:
        f = line.split()
        if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
            percpu_user.append(int(f[1]))
            percpu_kernel.append(int(f[2]))
    times = _kv(acct, "cpuacct.stat")
    throttle = _kv(cpu, "cpu.stat")
    usage = _nonzero([("total", _uint(acct, "cpuacct.usage")),
                      ("percpu", [int(x) for x in (_read(acct, "cpuacct.usage_percpu") or "").split() if x.isdigit()]),
                      ("percpu_kernel", percpu_kernel), ("percpu_user", percpu_user)])
    usage["kernel"] = times.get("system", 0) * 10**9 // ticks
    usage["user"] = times.get("user", 0) * 10**9 // ticks
    cpuset = _nonzero([("cpus", _id_list(_read(cs, "cpuset.cpus")))])
    cpuset["cpu_exclusive"] = _uint(cs, "cpuset.cpu_exclusive")
    if cs and (_read(cs, "cpuset.mems") or "").strip():
        cpuset["mems"] = _id_list(_read(cs, "cpuset.mems"))
    for name in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page", "memory_spread_slab",
                 "memory_pressure", "sched_load_balance"):
        cpuset[name] = _uint(cs, "cpuset." + name)
    try:
        cpuset["sched_relax_domain_level"] = int((_read(cs, "cpuset.sched_relax_domain_level") or "0").strip())
    except ValueError:
        cpuset["sched_relax_domain_level"] = 0
    raw = _kv(mem, "memory.stat")
    memory = _nonzero([("cache", raw.get("cache", 0))])
    for key, prefix in (("usage", "memory."), ("swap", "memory.memsw."), ("kernel", "memory.kmem."),
                        ("kernelTCP", "memory.kmem.tcp.")):
        memory[key] = _memory_entry(_uint(mem, prefix + "usage_in_bytes"), _uint(mem, prefix + "limit_in_bytes"),
                                    _uint(mem, prefix + "max_usage_in_bytes"), _uint(mem, prefix + "failcnt"))
    if raw:
        memory["raw"] = dict(sorted(raw.items()))  # a Go map: its keys in order
    pids_max = _uint(pids, "pids.max")
    hugetlb = {}
    d = ctrl.get("hugetlb")
    if d:
        for size in _hugepage_sizes():
            p = f"hugetlb.{size}."
            hugetlb[size] = {**_nonzero([("usage", _uint(d, p + "usage_in_bytes")),
                                         ("max", _uint(d, p + "max_usage_in_bytes"))]),
                             "failcnt": _uint(d, p + "failcnt")}
    return _shape(usage, _throttling(throttle.get("nr_periods", 0), throttle.get("nr_throttled", 0),
                                     throttle.get("throttled_time", 0)),
                  cpuset, memory, _nonzero([("current", _uint(pids, "pids.current")),
                                            ("limit", 0 if pids_max == _U64 else pids_max)]),
                  _blkio_v1(ctrl.get("blkio")), hugetlb)


def _throttling(periods: int, throttled: int, ns: int) -> dict:
    return _nonzero([("periods", periods), ("throttledPeriods", throttled), ("throttledTime", ns)])


def _stats_v2(d: str) -> dict:
    cs = _kv(d, "cpu.stat")
    usage = _nonzero([("total", cs.get("usage_usec", 0) * 1000)])
    usage["kernel"] = cs.get("system_usec", 0) * 1000
    usage["user"] = cs.get("user_usec", 0) * 1000
    cpuset = {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0, "memory_spread_page": 0,
              "memory_spread_slab": 0, "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0}
    raw = _kv(d, "memory.stat")
    memory: dict = {}
    if raw or _read(d, "memory.stat") is not None:
        memory = _nonzero([("cache", raw.get("file", 0))])
        mem_usage, mem_limit = _uint(d, "memory.current"), _uint(d, "memory.max")
        memory["usage"] = _memory_entry(mem_usage, mem_limit)
        if _read(d, "memory.swap.current") is None:  # no swap accounting
            swap_usage, swap_limit = 0, 0
        else:
            swap_usage, swap_limit = _uint(d, "memory.swap.current"), _uint(d, "memory.swap.max")
        # v1 counts memory and swap together: libcontainer adds them (in uint64's arithmetic)
        if swap_limit != _U64:
            swap_limit = (swap_limit + mem_limit) & _U64
        memory["swap"] = _memory_entry(swap_usage + mem_usage, swap_limit)
    for key in ("usage", "swap", "kernel", "kernelTCP"):
        memory.setdefault(key, _memory_entry(0, 0))
    memory = {k: memory[k] for k in ("cache", "usage", "swap", "kernel", "kernelTCP") if k in memory}
    if raw:
        memory["raw"] = dict(sorted(raw.items()))
    if _read(d, "pids.current") is not None:
        pids_max = _uint(d, "pids.max")
        pids = _nonzero([("current", _uint(d, "pids.current")), ("limit", 0 if pids_max == _U64 else pids_max)])
    else:  # no pids controller: the processes in cgroup.procs
        pids = _nonzero([("current", (_read(d, "cgroup.procs") or "").count("\n"))])
    hugetlb = {}
    for size in _hugepage_sizes():
        p = f"hugetlb.{size}."
        if _read(d, p + "current") is None:
            hugetlb = {}
            break
        failcnt = 0
        for line in (_read(d, p + "events") or "").splitlines():
            k, _, v = line.partition(" ")
            if k == "max" and v.strip().isdigit():
                failcnt = int(v)
        hugetlb[size] = {**_nonzero([("usage", _uint(d, p + "current"))]), "failcnt": failcnt}
    return _shape(usage, _throttling(cs.get("nr_periods", 0), cs.get("nr_throttled", 0),
                                     cs.get("throttled_usec", 0) * 1000),
                  cpuset, memory, pids, _blkio_v2(d), hugetlb)


def _shape(usage: dict, throttling: dict, cpuset: dict, memory: dict, pids: dict, blkio: dict, hugetlb: dict) -> dict:
    return {"cpu": {"usage": usage, "throttling": throttling}, "cpuset": cpuset, "memory": memory, "pids": pids,
            "blkio": blkio, "hugetlb": hugetlb, "intel_rdt": {}, "network_interfaces": None}


class OOMWatch:
    """A container's OOM kills as they happen: wait() returns "oom" for one, "gone" when the
    container's cgroup is removed (v1) or has no process left (v2), None at the timeout."""

    def __init__(self, mgr: Manager) -> None:
        import select
        self._poll = select.poll()
        self._fds: list[int] = []
        self.v2 = mgr.mode == "v2"
        try:
            if self.v2:
                d = mgr.paths[""]
                self._dir = d
                self._events = self._open(os.path.join(d, "memory.events"))
                self._cgevents = self._open(os.path.join(d, "cgroup.events"))
                for fd in (self._events, self._cgevents):
                    os.read(fd, 4096)  # a kernfs file wakes poll(2) after its first read
                    self._poll.register(fd, select.POLLPRI | select.POLLERR)
            else:
                d = mgr._ctrl.get("memory")
                if not d:
                    raise SystemError_("memory controller missing")  # runc's words
                self._control = os.path.join(d, "cgroup.event_control")
                oom = self._open(os.path.join(d, "memory.oom_control"))
                self._efd = os.eventfd(0, os.EFD_CLOEXEC)
                self._fds.append(self._efd)
                with open(self._control, "w") as f:
                    f.write(f"{self._efd} {oom}")
                self._poll.register(self._efd, select.POLLIN)
        except OSError as e:
            self.close()
            if self.v2:  # runc's words
                raise SystemError_(f"unable to add inotify watch: {errno_text(e)}") from None
            raise SystemError_(f"open {e.filename}: {errno_text(e)}") from None
        except BaseException:
            self.close()
            raise

    def _open(self, path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def _value(self, fd: int, key: str) -> int | None:
        try:
            text = os.pread(fd, 4096, 0).decode()
        except OSError:
            return None
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                try:
                    return int(v)
                except ValueError:
                    return None
        return None

    def wait(self, timeout: float) -> str | None:
        ready = self._poll.poll(min(max(0, int(timeout * 1000)), 2**31 - 1))  # (poll's int; a longer wait wakes early)
        if not ready:
            return None
        if not self.v2:
            try:
                os.eventfd_read(self._efd)
            except OSError:
                return "gone"
            # the eventfd also fires when the cgroup is removed
            return "oom" if os.path.exists(self._control) else "gone"
        got = None
        for fd, _ev in ready:
            if fd == self._cgevents:
                populated = self._value(fd, "populated")
                if not populated:
                    return "gone"
            elif fd == self._events:
                kills = self._value(fd, "oom_kill")
                if kills is None or kills > 0:
                    got = "oom"
        return got

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []


def stream(cid: str, mgr: Manager, interval: float, write: Callable[[dict], None],
           log_error: Callable[[str], None]) -> None:
    """runc events without --stats: the stats every interval and each OOM kill as it comes,
    until the container's cgroup goes (v1) or empties (v2)."""
    import time
    watch = OOMWatch(mgr)
    try:
        due = time.monotonic() + interval
        while True:
            what = watch.wait(due - time.monotonic())
            if what == "gone":
                return
            if what == "oom":
                write({"type": "oom", "id": cid})
            if time.monotonic() >= due:
                due += interval
                try:
                    write({"type": "stats", "id": cid, "data": stats(mgr)})
                except OSError as e:
                    log_error(f"{e.strerror}: {e.filename}")
    finally:
        watch.close()
