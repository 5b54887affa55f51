"""docker update: a container's resources (applied to a running container's cgroup at once)
and its restart policy, recorded in its HostConfig for the next starts."""

from __future__ import annotations

from berth.errors import FailedPrecondition, InvalidArgument

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
    """POST /containers/{id}/update. Returns {"Warnings": [...]}."""
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
    if "Memory" in new and "MemorySwap" not in new and hc.get("MemorySwap", 0) > 0 \
            and new["Memory"] > hc["MemorySwap"]:
        raise InvalidArgument("Memory limit should be smaller than already set memoryswap limit, update the "
                              "memoryswap at the same time")
    if new.get("NanoCpus") and (new.get("CpuQuota") or new.get("CpuPeriod") or hc.get("CpuQuota")
                                or hc.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs cannot be set as CPU Period or Quota is already set")
    runopts.check_cpu(new)  # the request's own, as dockerd's update checks them
    merged = dict(hc, **new)
    runopts._check_memory(merged, warnings)
    runopts._check_cpuset(merged)
    runopts._check_unsupported(merged, spec, warnings)
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
    return {"Warnings": warnings}


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
