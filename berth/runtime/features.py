"""The `features` document of the OCI runtime spec (features.json), as runc prints it."""

from __future__ import annotations


from berth.linux import caps
from berth.runtime.spec import _MS, _PROPAGATION, _RECURSIVE, HOOK_KINDS, NAMESPACES, OCI_VERSION

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    from berth.linux import seccomp
    scmp = seccomp.features()
    lib = scmp.pop("lib", None)
    annotations = {"org.opencontainers.runc.checkpoint.enabled": "false", "io.github.berth.runtime": "berth-runc"}
    if lib:
        annotations["io.github.seccomp.libseccomp.version"] = lib
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(set(_MS) | set(_PROPAGATION) | set(_RECURSIVE) | {"tmpcopyup", "idmap", "ridmap"}),
        "linux": {
            "namespaces": list(NAMESPACES),
            "capabilities": caps.NAMES[: caps.last_cap() + 1],
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True},
            "seccomp": scmp,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
            "netDevices": {"enabled": True},
        },
        "annotations": annotations,
    }

