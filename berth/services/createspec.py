"""What a container was created with, as its record keeps it.

A container record's spec (metadata's ContainerRecord.spec, JSON) is docker's create body
(Config fields, HostConfig, NetworkingConfig, ...) plus what create resolved: the mount points,
the image's config digest and the creation time. Those are typed fields of CreateSpec here;
on disk they stay the keys "_mounts", "_image_id" and "_created" beside the body's, so records
written by any earlier berth load unchanged (and a record without them loads with empty values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_MOUNTS, _IMAGE_ID, _CREATED = "_mounts", "_image_id", "_created"
_OWN_KEYS = frozenset((_MOUNTS, _IMAGE_ID, _CREATED))


@dataclass
class CreateSpec:
    body: dict[str, Any]  #: docker's create body, as the client sent it (after the run-option checks)
    mounts: list[dict] = field(default_factory=list)  #: docker's MountPoint shape plus berth's keys
    image_id: str = ""  #: the image's config digest ("sha256:...")
    created: str = ""  #: RFC 3339 with nanoseconds, as inspect's Created

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> CreateSpec:
        doc = doc or {}
        return cls(body={k: v for k, v in doc.items() if k not in _OWN_KEYS},
                   mounts=list(doc.get(_MOUNTS) or []), image_id=doc.get(_IMAGE_ID) or "",
                   created=doc.get(_CREATED) or "")

    @classmethod
    def of(cls, rec: Any) -> CreateSpec:
        """The CreateSpec of a container record (berth.metadata.records.ContainerRecord)."""
        return cls.from_json(rec.spec_json())

    def to_json(self) -> dict[str, Any]:
        """The record's JSON document (the persisted shape)."""
        return dict(self.body, **{_MOUNTS: self.mounts, _IMAGE_ID: self.image_id, _CREATED: self.created})


def mounts_of(rec: Any) -> list[dict]:
    """The mount points a container record was created with."""
    return CreateSpec.of(rec).mounts


# dockerd's HostConfig as inspect shows it, field by field in its order (a Go struct: every
# field is there whatever the create sent): what a create did not send shows this default
_HOST_CONFIG_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Binds", None), ("ContainerIDFile", ""), ("LogConfig", None), ("NetworkMode", "default"),
    ("PortBindings", None), ("RestartPolicy", {"Name": "", "MaximumRetryCount": 0}), ("AutoRemove", False),
    ("VolumeDriver", ""), ("VolumesFrom", None), ("CapAdd", None), ("CapDrop", None), ("CgroupnsMode", ""),
    ("Dns", None), ("DnsOptions", None), ("DnsSearch", None), ("ExtraHosts", None), ("GroupAdd", None),
    ("IpcMode", ""), ("Cgroup", ""), ("Links", None), ("OomScoreAdj", 0), ("PidMode", ""), ("Privileged", False),
    ("PublishAllPorts", False), ("ReadonlyRootfs", False), ("SecurityOpt", None), ("UTSMode", ""),
    ("UsernsMode", ""), ("ShmSize", 0), ("Runtime", None), ("ConsoleSize", [0, 0]), ("Isolation", ""),
    ("CpuShares", 0), ("Memory", 0), ("NanoCpus", 0), ("CgroupParent", ""), ("BlkioWeight", 0),
    ("BlkioWeightDevice", None), ("BlkioDeviceReadBps", None), ("BlkioDeviceWriteBps", None),
    ("BlkioDeviceReadIOps", None), ("BlkioDeviceWriteIOps", None), ("CpuPeriod", 0), ("CpuQuota", 0),
    ("CpuRealtimePeriod", 0), ("CpuRealtimeRuntime", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("Devices", None),
    ("DeviceCgroupRules", None), ("DeviceRequests", None), ("KernelMemory", 0), ("KernelMemoryTCP", 0),
    ("MemoryReservation", 0), ("MemorySwap", 0), ("MemorySwappiness", None), ("OomKillDisable", False),
    ("PidsLimit", None), ("Ulimits", None), ("CpuCount", 0), ("CpuPercent", 0), ("IOMaximumIOps", 0),
    ("IOMaximumBandwidth", 0), ("MaskedPaths", None), ("ReadonlyPaths", None),
)


def inspect_host_config(hc: Mapping[str, Any]) -> dict[str, Any]:
    """A container's HostConfig for inspect, as dockerd shows it: every field in dockerd's order,
    those the create did not send at their defaults (Runtime only when there is one), then any
    other key the record has."""
    import copy
    out: dict[str, Any] = {}
    for key, default in _HOST_CONFIG_DEFAULTS:
        if key in hc:
            out[key] = hc[key]
            if isinstance(default, dict) and isinstance(hc[key], dict):  # RestartPolicy's fields too
                out[key] = {**default, **hc[key]}
            elif key == "PortBindings" and isinstance(hc[key], dict):  # each binding a Go struct: both fields
                out[key] = {port: binds if binds is None else
                            [{"HostIp": (b or {}).get("HostIp") or "", "HostPort": (b or {}).get("HostPort") or ""}
                             for b in binds] for port, binds in hc[key].items()}
        elif key != "Runtime":
            out[key] = copy.copy(default)
    for key, value in hc.items():
        out.setdefault(key, value)
    return out
