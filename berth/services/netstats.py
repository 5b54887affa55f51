"""The network counters of a container (docker stats' "networks"), read from its network
namespace's /proc/<pid>/net/dev."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any

    from berth.metadata.records import Container


def read(pid: int, rec: Container | None = None) -> dict[str, dict[str, int]] | None:
    """{ifname: {rx_bytes, rx_packets, rx_errors, rx_dropped, tx_...}} of the container's
    interfaces (lo left out, as docker), or None (host network, no interface, gone)."""
    if rec is not None:
        mode = (((rec.spec_json() or {}).get("HostConfig") or {}).get("NetworkMode") or "")
        if mode == "host":
            return None
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    out: dict[str, dict[str, int]] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        v: list[Any] = rest.split()
        if name == "lo" or len(v) < 16:
            continue
        v = [int(x) for x in v]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out or None
