"""docker update: a container's resources (applied to a running container's cgroup at once)
and its restart policy, recorded in its HostConfig for the next starts."""

from __future__ import annotations

from berth.errors import BerthError, FailedPrecondition, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterable
    from typing import Any

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService

# the UpdateConfig fields (Resources + RestartPolicy) berth applies
_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
           "CpusetCpus", "CpusetMems", "PidsLimit", "KernelMemory", "BlkioWeight", "CpuRealtimePeriod",
           "CpuRealtimeRuntime", "MemorySwappiness", "OomKillDisable", "Devices", "DeviceCgroupRules",
           "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
           "BlkioDeviceWriteIOps", "Ulimits", "CgroupParent", "DeviceRequests", "CpuCount", "CpuPercent",
           "IOMaximumIOps", "IOMaximumBandwidth")


def update(svc: ContainerService, ns: str, ref: str, body: Any) -> dict[str, Any]:
    """POST /containers/{id}/update. Returns {"Warnings": [...] or null}."""
    from berth.services import runopts
    if not isinstance(body, dict):
        raise InvalidArgument("the update body must be a JSON object")
    rec = svc.get(ns, ref)
    spec = rec.spec_json() or {}
    hc = dict(spec.get("HostConfig") or {})
    warnings: list[str] = []
    new = {k: body[k] for k in _FIELDS if body.get(k) not in (None, "", [], 0) or
           (k in ("PidsLimit", "MemorySwap") and body.get(k) not in (None, 0))}
    for k in ("Devices", "DeviceCgroupRules", "Ulimits", "CgroupParent", "DeviceRequests"):
        if new.get(k):
            raise InvalidArgument(f"{k} cannot be updated on an existing container")
    # the request's own values first (dockerd's verifyContainerSettings: 400), then what they
    # conflict with in the container's settings (its UpdateContainer: 409, "Cannot update container")
    for k, what in (("Memory", "memory limit"), ("MemoryReservation", "memory reservation")):
        if 0 < int(new.get(k) or 0) < runopts._MIN_MEMORY:
            raise InvalidArgument(f"Minimum {what} allowed is 6MB")
    runopts.check_cpu(new)
    conflict = _conflict(new, hc)
    if conflict:
        raise FailedPrecondition(f"Cannot update container {rec.id}: {conflict}")
    merged = dict(hc, **new)
    runopts._check_memory(merged, warnings)
    runopts._check_cpuset(merged)
    oom = merged.pop("OomKillDisable", None)  # the container's own, not the update's: not checked again
    runopts._check_unsupported(merged, spec, warnings)
    if oom is not None:
        merged["OomKillDisable"] = oom
    # dockerd warns of what the request sets, not of what the container had (a kernel memory
    # limit set once is not warned about at every update after)
    asked: list[str] = []
    try:
        probe = {k: v for k, v in new.items() if k != "OomKillDisable"}
        runopts._check_memory(dict(probe), asked)
        runopts._check_unsupported(probe, spec, asked)
    except BerthError:
        pass
    warnings = [w for w in warnings if w in asked]
    rp = body.get("RestartPolicy")
    if rp and (rp.get("Name") or rp.get("MaximumRetryCount")):
        if hc.get("AutoRemove") and rp.get("Name") not in ("", "no"):
            raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
        runopts._check_restart({"RestartPolicy": rp})
        merged["RestartPolicy"] = {"Name": rp.get("Name") or "no",
                                   "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0)}
    st = svc.state(rec)
    if st["Running"] and new:
        _apply(svc, rec, st, merged, new)
    svc.meta.update_container(ns, rec.id, spec=dict(spec, HostConfig=merged))
    svc.events.container(ns, rec, "update")
    return {"Warnings": warnings or None}  # dockerd: null when there is none


def _conflict(new: dict[str, Any], hc: dict[str, Any]) -> str | None:
    """What dockerd's UpdateContainer refuses in an update of settings hc, in its order and words:
    CPU Period or Quota against NanoCPUs (set one way, they cannot be updated the other), and a
    memory limit above the swap limit recorded unless the swap limit comes with it (which takes
    in a container without limits, whose recorded swap limit is 0, or with -1)."""
    def val(d: dict[str, Any], k: str) -> int:
        return int(d.get(k) or 0)
    if val(new, "NanoCpus") > 0 and val(hc, "CpuPeriod") > 0:
        return "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
    if val(new, "NanoCpus") > 0 and val(hc, "CpuQuota") > 0:
        return "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
    if val(new, "CpuPeriod") > 0 and val(hc, "NanoCpus") > 0:
        return "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
    if val(new, "CpuQuota") > 0 and val(hc, "NanoCpus") > 0:
        return "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
    if val(new, "Memory") and val(new, "Memory") > val(hc, "MemorySwap") and not val(new, "MemorySwap"):
        return "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
    return None


def resources_of(hc: dict[str, Any], only: Iterable[str] | None = None) -> dict[str, Any]:
    """The OCI linux.resources of HostConfig fields (only: the keys given)."""
    keys = set(only or hc)
    res = {}
    mem = {}
    if "Memory" in keys and hc.get("Memory"):
        mem["limit"] = int(hc["Memory"])
    if ("MemorySwap" in keys or "Memory" in keys) and hc.get("MemorySwap"):
        mem["swap"] = int(hc["MemorySwap"])
    if "MemoryReservation" in keys and hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    if mem.get("swap") == -1 and not mem.get("limit"):
        mem.pop("swap")
    if mem:
        res["memory"] = mem
    cpu = {}
    if "NanoCpus" in keys and hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(hc["NanoCpus"]) * 100000 // 10**9
    if "CpuPeriod" in keys and hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if "CpuQuota" in keys and hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if "CpuShares" in keys and hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if "CpusetCpus" in keys and hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if "CpusetMems" in keys and hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if "PidsLimit" in keys and hc.get("PidsLimit"):
        res["pids"] = {"limit": int(hc["PidsLimit"])}
    return res


def _apply(svc: ContainerService, rec: Container, st: dict[str, Any], merged: dict[str, Any], new: dict[str, Any]) -> None:
    from berth.errors import BerthError
    from berth.services.processes import _cgroup
    mgr = _cgroup(st["Pid"])
    if mgr is None:
        raise FailedPrecondition(f"Cannot update container {rec.id}: its cgroup is not found")
    try:
        mgr.set(resources_of(merged, only=list(new)))
    except BerthError as e:
        raise InvalidArgument(f"Cannot update container {rec.id}: {e.message}") from None
