"""The few iptables rules berth owns itself (the CNI plugins own the rest): isolation between
networks, in chains named BERTH-*. Every change is idempotent."""

from __future__ import annotations

import subprocess

FORWARD = "BERTH-FORWARD"      # jumped to from FORWARD: BERTH-ADMIN first, then each bridge's two ACCEPTs
ADMIN = "BERTH-ADMIN"          # jumped to first from BERTH-FORWARD (and from CNI-FORWARD by the firewall
                               # plugin of conflists written before berth had its own forward rules)
ISOLATION = "BERTH-ISOLATION"  # traffic leaving one berth bridge for another: dropped here
MASQ = "BERTH-MASQ"            # nat POSTROUTING: one masquerade rule per network (as docker), not per container


def _run(*args: str, check: bool = True, prog: str = "iptables") -> bool:
    p = subprocess.run([prog, "-w", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        from berth.errors import SystemError_
        raise SystemError_(f"{prog} {' '.join(args)}: {p.stderr.strip() or p.returncode}")
    return p.returncode == 0


def _ensure_chain(chain: str, table: str = "filter", prog: str = "iptables") -> None:
    if not _run("-t", table, "-n", "-L", chain, check=False, prog=prog):
        _run("-t", table, "-N", chain, check=False, prog=prog)


def _ensure_rule(chain: str, *rule: str, table: str = "filter", prog: str = "iptables", first: bool = False) -> None:
    if not _run("-t", table, "-C", chain, *rule, check=False, prog=prog):
        if first:
            _run("-t", table, "-I", chain, "1", *rule, prog=prog)
        else:
            _run("-t", table, "-A", chain, *rule, prog=prog)


def forward(bridge: str, v6: bool = False) -> None:
    """Traffic from the bridge's containers, and back to them, is let through FORWARD (a host
    whose FORWARD policy is DROP, as dockerd sets it), after BERTH-ADMIN's drops (isolation,
    icc): two rules per bridge, as dockerd's, where the CNI firewall plugin writes two per
    container address at each attachment and removes them at each release (its iptables
    processes: ~17 ms of each start and ~22 ms of each release)."""
    for prog in ("iptables", "ip6tables") if v6 else ("iptables",):
        _ensure_chain(FORWARD, prog=prog)
        _ensure_rule("FORWARD", "-j", FORWARD, prog=prog)
        if prog == "iptables":
            _ensure_chain(ADMIN)
            _ensure_rule(FORWARD, "-j", ADMIN, first=True)
        _ensure_rule(FORWARD, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT",
                     prog=prog)
        _ensure_rule(FORWARD, "-i", bridge, "-j", "ACCEPT", prog=prog)


def unforward(bridge: str) -> None:
    for prog in ("iptables", "ip6tables"):
        while _run("-D", FORWARD, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT",
                   check=False, prog=prog):
            pass
        while _run("-D", FORWARD, "-i", bridge, "-j", "ACCEPT", check=False, prog=prog):
            pass


def masquerade(bridge: str, subnet: str) -> None:
    """Traffic from the network's subnet leaving by another interface is masqueraded."""
    _ensure_chain(MASQ, "nat")
    _ensure_rule("POSTROUTING", "-j", MASQ, table="nat")
    _ensure_rule(MASQ, "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE", table="nat")


def unmasquerade(bridge: str, subnet: str) -> None:
    while _run("-t", "nat", "-D", MASQ, "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE", check=False):
        pass


def isolate(bridge: str) -> None:
    """Traffic from ``bridge`` to any other berth bridge is dropped (and the other way, by
    that bridge's own rule)."""
    _ensure_chain(ADMIN)
    _ensure_chain(ISOLATION)
    _ensure_rule(ADMIN, "-i", bridge, "!", "-o", bridge, "-j", ISOLATION)
    _ensure_rule(ISOLATION, "-o", bridge, "-j", "DROP")


def no_icc(bridge: str) -> None:
    """No traffic between the containers of ``bridge`` (docker's icc false: its
    com.docker.network.bridge.enable_icc; the bridge's frames reach iptables through
    br_netfilter). Removed by unisolate."""
    _ensure_chain(ADMIN)
    _ensure_rule(ADMIN, "-i", bridge, "-o", bridge, "-j", "DROP")


def icc(bridge: str) -> None:
    """Traffic between the containers of ``bridge`` let through (an earlier run's no_icc undone)."""
    while _run("-D", ADMIN, "-i", bridge, "-o", bridge, "-j", "DROP", check=False):
        pass


def unisolate(bridge: str) -> None:
    icc(bridge)
    while _run("-D", ADMIN, "-i", bridge, "!", "-o", bridge, "-j", ISOLATION, check=False):
        pass
    while _run("-D", ISOLATION, "-o", bridge, "-j", "DROP", check=False):
        pass


def _rules(chain: str, table: str = "filter", prog: str = "iptables") -> list[str] | None:
    p = subprocess.run([prog, "-w", "-t", table, "-S", chain], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return [line for line in p.stdout.splitlines() if not line.startswith("-N ") and not line.startswith("-P ")]


def _delete_jumps(chain: str, target: str, table: str = "filter", prog: str = "iptables") -> None:
    """Delete every rule of ``chain`` that jumps to ``target`` (whatever its matches)."""
    import shlex
    for line in _rules(chain, table, prog) or []:
        words = shlex.split(line)
        if words[-2:] == ["-j", target]:
            _run("-t", table, "-D", *words[1:], check=False, prog=prog)


def remove_empty_chains() -> None:
    """Drop berth's own chains when nothing uses them any more. The shared CNI chains
    (CNI-FORWARD, CNI-ADMIN, CNI-HOSTPORT-*) stay: every CNI user on the host (other berthds,
    podman with CNI, nerdctl...) shares them, and a plugin's ADD that has just ensured them
    fails if they vanish before it adds its own rules ("Chain 'CNI-HOSTPORT-SETMARK' does not
    exist", 2 in 1,000 runs while test daemons stopped on the same host)."""
    for prog in ("iptables", "ip6tables"):
        fwd = _rules(FORWARD, prog=prog)
        if fwd is not None and all(r.endswith("-j " + ADMIN) for r in fwd):
            _delete_jumps("FORWARD", FORWARD, prog=prog)
            _run("-F", FORWARD, check=False, prog=prog)
            _run("-X", FORWARD, check=False, prog=prog)
    if not _rules(ISOLATION) and not _rules(ADMIN):
        _delete_jumps("CNI-FORWARD", ADMIN)
        if _rules(FORWARD) is None:
            _run("-X", ADMIN, check=False)
            _run("-X", ISOLATION, check=False)
    if _rules(MASQ, "nat") == []:
        _delete_jumps("POSTROUTING", MASQ, "nat")
        _run("-t", "nat", "-X", MASQ, check=False)
    # the firewall plugin made the admin chain in ip6tables too for containers with IPv6 addresses
    if _rules(ADMIN, prog="ip6tables") == []:
        _delete_jumps("CNI-FORWARD", ADMIN, prog="ip6tables")
        _run("-X", ADMIN, check=False, prog="ip6tables")


def remove_shared_cni_chains() -> None:
    """The chains the CNI plugins share (firewall's CNI-FORWARD, portmap's CNI-HOSTPORT-*),
    when empty. Only for a host where no CNI user can be adding rules meanwhile (the test
    suite's end, say): a plugin that has just ensured them would fail. IPv4's and IPv6's (the
    plugins make them in ip6tables too)."""
    for prog in ("iptables", "ip6tables"):
        fwd = _rules("CNI-FORWARD", prog=prog)
        if fwd is not None and all(r.endswith("-j CNI-ADMIN") for r in fwd) and not _rules("CNI-ADMIN", prog=prog):
            _delete_jumps("FORWARD", "CNI-FORWARD", prog=prog)
            _run("-F", "CNI-FORWARD", check=False, prog=prog)
            _run("-X", "CNI-FORWARD", check=False, prog=prog)
            _run("-X", "CNI-ADMIN", check=False, prog=prog)
        if _rules("CNI-HOSTPORT-DNAT", "nat", prog) == []:
            for chain in ("PREROUTING", "OUTPUT"):
                _delete_jumps(chain, "CNI-HOSTPORT-DNAT", "nat", prog)
            _delete_jumps("POSTROUTING", "CNI-HOSTPORT-MASQ", "nat", prog)
            for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"):
                _run("-t", "nat", "-F", chain, check=False, prog=prog)
            for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"):
                _run("-t", "nat", "-X", chain, check=False, prog=prog)
