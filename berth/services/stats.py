"""docker stats: a container's counters from its cgroup (read by berth.runtime.cgroups), sampled and shaped
as dockerd does."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from berth.errors import (
    FailedPrecondition,
    NotFound,
)

from berth.runtime.cgroups import Manager, manager_of, manager_of_pid
from berth.services.processes import _now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from berth.metadata.records import Container
    from berth.services.containers import ContainerService

# --- stats -----------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def host_memory() -> int:
    """The host's memory (MemTotal), the limit of a container without one of its own."""
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _system_cpu_usage() -> int:
    """Host CPU time in ns, as docker computes system_cpu_usage (/proc/stat's cpu line)."""
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            return sum(int(x) for x in line.split()[1:8]) * 10**9 // os.sysconf("SC_CLK_TCK")
    return 0


def _online_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def _sample(mgr: Manager) -> dict:
    """One stats sample in docker's shape (without name, id, preread, precpu_stats): the
    cgroup's counters (berth.runtime.cgroups reads them) with the host's figures."""
    cg = mgr.read_stats()
    host_mem = host_memory()
    usage = {"total_usage": cg.cpu_total_ns or 0, "usage_in_kernelmode": cg.cpu_kernel_ns,
             "usage_in_usermode": cg.cpu_user_ns}
    if cg.percpu_ns:
        usage["percpu_usage"] = cg.percpu_ns
    cpu = {"cpu_usage": usage, "system_cpu_usage": _system_cpu_usage(), "online_cpus": _online_cpus(),
           "throttling_data": {"periods": cg.throttle_periods, "throttled_periods": cg.throttled_periods,
                               "throttled_time": cg.throttled_ns}}
    # dockerd's MemoryStats, in its order; max_usage and failcnt left out at 0 (omitempty)
    mem = {"usage": cg.memory_usage or 0}
    if cg.memory_max_usage:
        mem["max_usage"] = cg.memory_max_usage
    # the keys dockerd gives (containerd's metrics: a fixed set per cgroup version, 0 where the
    # kernel has no such line)
    keys = _MEMORY_STAT_V2 if mgr.mode == "v2" else _MEMORY_STAT_V1
    mem["stats"] = {k: cg.memory_stat.get(k, 0) for k in keys} if cg.memory_stat else {}
    if cg.memory_failcnt:
        mem["failcnt"] = cg.memory_failcnt
    mem["limit"] = host_mem
    limit = cg.memory_limit
    if limit is not None and limit >= 0 and (not host_mem or limit < host_mem):
        mem["limit"] = limit
    pids = {"current": cg.pids_current or 0}
    if cg.pids_limit is not None and cg.pids_limit > 0:
        pids["limit"] = cg.pids_limit
    blkio = {"io_service_bytes_recursive": cg.io_service_bytes}
    for k in _BLKIO_KEYS[1:]:
        blkio[k] = None if cg.io_v1 is None else cg.io_v1.get(k, [])  # (v2: the bytes alone, as dockerd)
    return {"read": _now_rfc3339(), "pids_stats": pids, "blkio_stats": blkio, "num_procs": 0,
            "storage_stats": {}, "cpu_stats": cpu, "memory_stats": mem}


_MEMORY_STAT_V1 = ("cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout", "pgfault",
                   "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
                   "hierarchical_memory_limit", "hierarchical_memsw_limit", "total_cache", "total_rss",
                   "total_rss_huge", "total_mapped_file", "total_dirty", "total_writeback", "total_pgpgin",
                   "total_pgpgout", "total_pgfault", "total_pgmajfault", "total_inactive_anon", "total_active_anon",
                   "total_inactive_file", "total_active_file", "total_unevictable")
_MEMORY_STAT_V2 = ("anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty",
                   "file_writeback", "anon_thp", "inactive_anon", "active_anon", "inactive_file", "active_file",
                   "unevictable", "slab_reclaimable", "slab_unreclaimable", "pgfault", "pgmajfault",
                   "workingset_refault", "workingset_activate", "workingset_nodereclaim", "pgrefill", "pgscan",
                   "pgsteal", "pgactivate", "pgdeactivate", "pglazyfree", "pglazyfreed", "thp_fault_alloc",
                   "thp_collapse_alloc")

_EMPTY_CPU = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


# docker's BlkioStats: every list there, null when empty (a container that does not run)
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
               "sectors_recursive")


def _empty_stats(rec: Container) -> dict:
    return {"name": "/" + rec.name, "id": rec.id, "read": "0001-01-01T00:00:00Z",
            "preread": "0001-01-01T00:00:00Z", "pids_stats": {},
            "blkio_stats": dict.fromkeys(_BLKIO_KEYS), "num_procs": 0, "storage_stats": {},
            "cpu_stats": _EMPTY_CPU, "precpu_stats": _EMPTY_CPU, "memory_stats": {}}


def sample_of(pid: int) -> dict | None:
    """One stats sample (docker's shape, without name/id/pre*) of the running container whose init
    is pid, or None (gone, or no cgroup of its own): for callers that know the container runs."""
    mgr = manager_of_pid(pid)
    return _sample(mgr) if mgr is not None else None


def stats(svc: ContainerService, ns: str, ref: str, stream: bool = False, one_shot: bool = False,
          interval: float = 1.0) -> Iterator[dict]:
    """Yield docker's stats JSON objects: one (stream=False), or one per interval while it runs.

    Without one_shot, the first object waits one interval so precpu_stats is a real sample
    (the CLI's CPU % is the difference of the two)."""
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        if not stream:
            yield _empty_stats(rec)
        return
    from berth.shim.client import ShimGone
    try:  # the shim says where its init's counters are
        mgr = manager_of(svc.shim(rec).stats().cgroup)
    except (ShimGone, FailedPrecondition):
        mgr = None
    if mgr is None:
        yield _empty_stats(rec)
        return
    pre = None
    if not one_shot:
        pre = _sample(mgr)
        time.sleep(interval if stream else min(interval, 0.5))
    while True:
        cur = _sample(mgr)
        out = dict(cur, name="/" + rec.name, id=rec.id,
                   preread=pre["read"] if pre else "0001-01-01T00:00:00Z",
                   precpu_stats=pre["cpu_stats"] if pre else _EMPTY_CPU)
        from berth.services import netstats
        nets = netstats.read(st["Pid"], rec)  # NET I/O
        if nets:
            out["networks"] = nets
        yield out
        if not stream:
            return
        time.sleep(interval)
        try:
            if not svc.state(svc.meta.get_container(ns, rec.id))["Running"]:
                return
        except NotFound:
            return
        pre = cur
