"""docker stats: a container's counters from its cgroup (v1 or v2), sampled and shaped as dockerd does."""

import os
import time

from berth.errors import (
    FailedPrecondition,
    NotFound,
)

from berth.services.processes import _cgroup_of, _now_rfc3339

# --- stats -----------------------------------------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path):
    v = _read(path)
    if v is None:
        return None
    v = v.strip()
    if v == "max":
        return -1
    try:
        n = int(v)
    except ValueError:
        return None
    return -1 if n >= 1 << 62 else n


def _kv(path):
    out = {}
    for line in (_read(path) or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def _host_memory():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _system_cpu_usage():
    """Host CPU time in ns, as docker computes system_cpu_usage (/proc/stat's cpu line)."""
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            return sum(int(x) for x in line.split()[1:8]) * 10**9 // os.sysconf("SC_CLK_TCK")
    return 0


def _online_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def _ctrl_dir(mgr, controller):
    if mgr.mode == "v2":
        return mgr.paths.get("")
    for key, d in mgr.paths.items():
        if controller in key.split(","):
            return d
    return None


def _blkio_v1(d):
    out = []
    for line in (_read(os.path.join(d, "blkio.throttle.io_service_bytes_recursive")) or
                 _read(os.path.join(d, "blkio.io_service_bytes_recursive")) or "").splitlines():
        f = line.split()
        if len(f) == 3 and ":" in f[0]:
            ma, mi = f[0].split(":")
            out.append({"major": int(ma), "minor": int(mi), "op": f[1], "value": int(f[2])})
    return out


def _blkio_v2(d):
    out = []
    for line in (_read(os.path.join(d, "io.stat")) or "").splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        ma, mi = f[0].split(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in kv:
                out.append({"major": int(ma), "minor": int(mi), "op": op, "value": int(kv[key])})
    return out


def _sample(mgr):
    """One stats sample in docker's shape (without name, id, preread, precpu_stats)."""
    hz = os.sysconf("SC_CLK_TCK")
    host_mem = _host_memory()
    cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
           "system_cpu_usage": _system_cpu_usage(), "online_cpus": _online_cpus(),
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    mem = {"usage": 0, "stats": {}, "limit": host_mem}
    pids = {"current": 0}
    blkio = {"io_service_bytes_recursive": []}
    if mgr.mode == "v2":
        d = mgr.paths[""]
        cs = _kv(os.path.join(d, "cpu.stat"))
        cpu["cpu_usage"].update(total_usage=cs.get("usage_usec", 0) * 1000,
                                usage_in_kernelmode=cs.get("system_usec", 0) * 1000,
                                usage_in_usermode=cs.get("user_usec", 0) * 1000)
        cpu["throttling_data"].update(periods=cs.get("nr_periods", 0), throttled_periods=cs.get("nr_throttled", 0),
                                      throttled_time=cs.get("throttled_usec", 0) * 1000)
        mem["usage"] = _int(os.path.join(d, "memory.current")) or 0
        mem["stats"] = _kv(os.path.join(d, "memory.stat"))
        limit = _int(os.path.join(d, "memory.max"))
        pids["current"] = _int(os.path.join(d, "pids.current")) or 0
        plimit = _int(os.path.join(d, "pids.max"))
        blkio["io_service_bytes_recursive"] = _blkio_v2(d)
    else:
        c = _ctrl_dir(mgr, "cpuacct")
        if c:
            cpu["cpu_usage"]["total_usage"] = _int(os.path.join(c, "cpuacct.usage")) or 0
            percpu = (_read(os.path.join(c, "cpuacct.usage_percpu")) or "").split()
            if percpu:
                cpu["cpu_usage"]["percpu_usage"] = [int(x) for x in percpu]
            st = _kv(os.path.join(c, "cpuacct.stat"))
            cpu["cpu_usage"].update(usage_in_kernelmode=st.get("system", 0) * 10**9 // hz,
                                    usage_in_usermode=st.get("user", 0) * 10**9 // hz)
        c = _ctrl_dir(mgr, "cpu")
        if c:
            st = _kv(os.path.join(c, "cpu.stat"))
            cpu["throttling_data"].update(periods=st.get("nr_periods", 0),
                                          throttled_periods=st.get("nr_throttled", 0),
                                          throttled_time=st.get("throttled_time", 0))
        m = _ctrl_dir(mgr, "memory")
        limit = None
        if m:
            mem["usage"] = _int(os.path.join(m, "memory.usage_in_bytes")) or 0
            mx = _int(os.path.join(m, "memory.max_usage_in_bytes"))
            if mx is not None:
                mem["max_usage"] = mx
            failcnt = _int(os.path.join(m, "memory.failcnt"))
            if failcnt is not None:
                mem["failcnt"] = failcnt
            mem["stats"] = _kv(os.path.join(m, "memory.stat"))
            limit = _int(os.path.join(m, "memory.limit_in_bytes"))
        p = _ctrl_dir(mgr, "pids")
        plimit = None
        if p:
            pids["current"] = _int(os.path.join(p, "pids.current")) or 0
            plimit = _int(os.path.join(p, "pids.max"))
        b = _ctrl_dir(mgr, "blkio")
        if b:
            blkio["io_service_bytes_recursive"] = _blkio_v1(b)
    if limit is not None and limit >= 0 and (not host_mem or limit < host_mem):
        mem["limit"] = limit
    if plimit is not None and plimit > 0:
        pids["limit"] = plimit
    for k in ("io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive",
              "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive"):
        blkio[k] = None
    return {"read": _now_rfc3339(), "pids_stats": pids, "blkio_stats": blkio, "num_procs": 0,
            "storage_stats": {}, "cpu_stats": cpu, "memory_stats": mem}


_EMPTY_CPU = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def _empty_stats(rec):
    return {"name": "/" + rec.name, "id": rec.id, "read": "0001-01-01T00:00:00Z",
            "preread": "0001-01-01T00:00:00Z", "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": _EMPTY_CPU, "precpu_stats": _EMPTY_CPU, "memory_stats": {}}


def stats(svc, ns, ref, stream=False, one_shot=False, interval=1.0):
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
        mgr = _cgroup_of(svc.shim(rec).stats().cgroup)
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
