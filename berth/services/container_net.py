"""A container's networking at start and exit: its network namespace, CNI attachments,
published ports, /etc/hosts, /etc/hostname and /etc/resolv.conf, and the embedded DNS."""

from __future__ import annotations

import os

from berth.errors import BerthError, FailedPrecondition, Forbidden, InvalidArgument, NotFound
from berth.opts import parse_extra_host

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Sequence
    from typing import Any

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService
    from berth.services.networks import Network, NetworkService


def network_mode(hc: dict[str, Any] | None) -> str:
    mode = (hc or {}).get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


# In a container's stored create body: its NetworkMode network was disconnected (docker keeps
# HostConfig.NetworkMode as asked; the container just has no endpoint there until connected again)
DETACHED = "BerthModeDetached"
HOST_NETWORK_CONFLICT = "container cannot be disconnected from host network or connected to host network"


def requested_networks(spec_body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(network ref, endpoint config)] in attachment order: NetworkMode first (unless it was
    disconnected), then the other EndpointsConfig entries (docker's --network x --network y,
    or connect on a stopped one)."""
    hc = spec_body.get("HostConfig") or {}
    mode = network_mode(hc)
    eps = dict(((spec_body.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {})
    if mode == "none" and spec_body.get(DETACHED):  # taken off "none", then connected (dockerd allows it)
        return [(k, v or {}) for k, v in eps.items() if k != "none"]
    if mode in ("host", "none") or mode.startswith(("container:", "ns:")):
        return []
    first = eps.pop(mode, None)
    if first is None and mode == "bridge":
        first = eps.pop("default", None)
    out = [] if spec_body.get(DETACHED) else [(mode, first or {})]
    out += [(k, v or {}) for k, v in eps.items() if k not in ("bridge", "default") or mode != "bridge"]
    return out


def attachable(nets: NetworkService, spec_body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """requested_networks() but the default network when berthd has none (bridge "none": as
    dockerd's -b none, a container asking for it runs without it)."""
    asked = requested_networks(spec_body)
    if nets.no_default:
        return [(ref, ep) for ref, ep in asked if ref not in ("bridge", "default")]
    return asked


def check(networks: NetworkService, ns: str, spec_body: dict[str, Any]) -> None:
    """At create: the options fit the networks there are (docker's create-time errors)."""
    hc = spec_body.get("HostConfig") or {}
    for h in hc.get("ExtraHosts") or []:
        parse_extra_host(h)
    mode = network_mode(hc)
    if mode.startswith("container:") and not mode[len("container:"):]:
        raise InvalidArgument("--network container: needs a container name or id")
    if mode in ("host", "none") or mode.startswith(("container:", "ns:")):
        if hc.get("PortBindings") and any(hc["PortBindings"].values()) and mode != "none":
            pass  # docker ignores (warns about) published ports with host networking
        return
    for ref, ep in requested_networks(spec_body):
        try:
            n = networks.get(ns, ref)
        except NotFound:
            # as dockerd's: a network that is not there (yet) fails the start, not the create
            # (whose 404 would have docker's CLI pull the image)
            continue
        if n.name in ("host", "none"):
            raise InvalidArgument(f"container cannot be disconnected from host network or connected to {n.name} "
                                  "network together with other networks")


def _predefined(ep: dict[str, Any] | None) -> None:
    """dockerd's refusals at the start (not the create: the container stays, created, with the
    error) of what only a user-defined network gives: an address or aliases asked for on the
    default bridge, host or none."""
    ipam = (ep or {}).get("IPAMConfig") or {}
    if ipam.get("IPv4Address") or ipam.get("IPv6Address"):
        raise InvalidArgument("user specified IP address is supported on user defined networks only")
    if (ep or {}).get("Aliases"):
        raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")


def with_daemon_dns(svc: ContainerService, rec: Container, spec_body: dict[str, Any]) -> dict[str, Any]:
    """A docker container's Dns, DnsSearch and DnsOptions, each the daemon's (berthd.toml's dns,
    dns_search, dns_options: daemon.json's dns, dns-search, dns-opts) when it gives none, as
    dockerd's: what its resolv.conf is made of (its record keeps its own)."""
    cfg = svc.cfg
    hc = dict(spec_body.get("HostConfig") or {})
    if any(k.startswith("io.cri-containerd.") for k in rec.extensions or {}):
        return spec_body  # (a CRI pod's DNS is its config's)
    changed = False
    for key, default in (("Dns", cfg.dns), ("DnsSearch", cfg.dns_search), ("DnsOptions", cfg.dns_options)):
        if default and not hc.get(key):
            hc[key] = list(default)
            changed = True
    return dict(spec_body, HostConfig=hc) if changed else spec_body


def new_netns(svc: ContainerService, rec: Container, path: str) -> None:
    """A container's network namespace at path; a remapped container's (userns-remap) is owned
    by a user namespace with the remapping's mappings, pinned for the container to join (as
    dockerd's, whose runc makes it inside the container's user namespace): its root may then
    mount sysfs and set the namespace's sysctls."""
    from berth.linux import netns
    remap = svc.remapped(rec)
    if remap is None:
        netns.create(path)
        return
    pin = svc.networks.userns_path(rec.id)
    netns.remove(pin)  # (a crashed run's)
    from berth.services.runopts import donor_userns
    netns.create_in_userns(path, pin, *remap.spec_maps(), join=donor_userns(svc, rec))


def setup(svc: ContainerService, ns: str, rec: Container, spec_body: dict[str, Any], hostname: str,
          image_config: dict[str, Any]) -> tuple[str | None, str, list[dict[str, Any]]]:
    """Before the shim starts. Returns (netns for the spec: "host" | path | None, files dir, the
    ports its shim forwards: those published on IPv6 host addresses, see proxies())."""
    nets = svc.networks
    spec_body = with_daemon_dns(svc, rec, spec_body)
    hc = spec_body.get("HostConfig") or {}
    mode = network_mode(hc)
    cid = rec.id
    cdir = svc.cdir(cid)
    teardown(svc, ns, cid, rec, hc)  # whatever an earlier run left (a crash, a daemon killed meanwhile)
    if mode in ("host", "none"):
        _predefined(((spec_body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).get(mode))
    if mode == "host":
        write_files(cdir, hostname, spec_body, [], host=True, host_gateway=nets.host_gateway_ip())
        return "host", cdir, []
    if (mode == "none" and not requested_networks(spec_body)) or \
            (mode == "bridge" and nets.no_default and not attachable(nets, spec_body)):
        # a namespace of its own with only lo, at berth's path as dockerd's sandbox: its SandboxKey
        # is where tools that network it by hand (cnitool, ip netns) find it
        path = nets.netns_path(cid)
        new_netns(svc, rec, path)
        try:
            write_files(cdir, hostname, spec_body, [], host_gateway=nets.host_gateway_ip())
            _save(svc, ns, cid, {"netns": path, "networks": {}, "ports": {}})
        except BaseException:
            teardown(svc, ns, cid)
            raise
        return path, cdir, []
    if mode.startswith("ns:"):  # podman's --network ns:PATH: a network namespace made by the caller
        path = mode[len("ns:"):]
        if not os.path.exists(path):
            raise FailedPrecondition(f"network namespace {path} does not exist")
        write_files(cdir, hostname, spec_body, [], host_gateway=nets.host_gateway_ip())
        return path, cdir, []
    if mode.startswith("container:"):
        other = svc.get(ns, mode[len("container:"):])
        st = svc.state(other)
        if not st["Running"]:
            raise FailedPrecondition(f"cannot join network namespace of a non running container: container "
                                     f"{other.id} is {st['Status']}")
        path = nets.netns_path(other.id)
        if not os.path.exists(path):
            path = f"/proc/{st['Pid']}/ns/net"
            if network_mode((other.spec_json() or {}).get("HostConfig")) == "host":
                return "host", svc.cdir(other.id), []
        return path, svc.cdir(other.id), []
    from berth.services.networks import parse_port_bindings
    path = nets.netns_path(cid)
    new_netns(svc, rec, path)
    endpoints: dict[str, dict[str, Any]] = {}
    ports: dict[str, Any] = {}
    forwarded: list[dict[str, Any]] = []
    try:
        exposed = dict((image_config.get("config") or {}).get("ExposedPorts") or {})
        exposed.update(spec_body.get("ExposedPorts") or {})
        requested = attachable(nets, spec_body)
        # the ports go with the first network: its host binding address, if it has one (dockerd's)
        binding = ((nets.get(ns, requested[0][0]).data.get("options") or {}).get(
            "com.docker.network.bridge.host_binding_ipv4", "")
            if requested and (hc.get("PortBindings") or hc.get("PublishAllPorts")) else "")
        mappings, ports = parse_port_bindings(hc, exposed, bool(hc.get("PublishAllPorts")), binding,
                                              svc.cfg.userland_proxy)
        nat = [m for m in mappings if not m.get("proxy")]  # portmap's; the IPv6 ones are the shim's
        if mappings:
            first = [nets.get(ns, ref) for ref, _ in requested[:1]]
            from berth.services.networks import endpoint_id
            nets.reserve_ports(cid, mappings, f"{rec.name} ({endpoint_id(first[0].id, cid)})" if first else "")
        for i, (ref, ep_cfg) in enumerate(requested):
            n = nets.get(ns, ref)
            if not n.user_defined:
                _predefined(ep_cfg)
            if n.user_defined and hc.get("Links") and _same(nets, ns, mode, n):
                # --link on a user-defined network: an alias the embedded DNS answers for this
                # container only (docker's endpoint Links), not the legacy hosts entries
                have = list((ep_cfg or {}).get("Links") or [])
                ep_cfg = dict(ep_cfg or {}, Links=have + [x for x in map(_link, hc["Links"]) if x not in have])
            port_net = n.driver == "bridge" and not n.data.get("internal") and not endpoints
            ep = nets.attach(ns, cid, rec.name, n, f"eth{i}", ep_cfg, ports=nat if port_net else None,
                             mac=spec_body.get("MacAddress") if i == 0 else None, hostname=hostname)
            endpoints[n.name] = ep
            if port_net:
                forwarded = proxies(mappings, ep)
        write_files(cdir, hostname, spec_body, list(endpoints.values()),
                    embedded_dns=any(nets.get(ns, e["NetworkID"]).user_defined for e in endpoints.values()),
                    upstream=svc.cfg.dns, host_gateway=nets.host_gateway_ip())
        _save(svc, ns, cid, {"netns": path, "networks": endpoints, "ports": ports})
        nets.register(ns, cid, endpoints)
        if nets.dns is not None and any(e.get("DNSNames") for e in endpoints.values()):
            nets.dns.attach(cid, path)
    except BaseException:
        teardown(svc, ns, cid)
        raise
    return path, cdir, forwarded


def proxies(mappings: list[dict[str, Any]], ep: dict[str, Any]) -> list[dict[str, Any]]:
    """What the shim forwards (berth.shim.portproxy): each port published on an IPv6 host address
    (docker's [::] beside 0.0.0.0), to the container's address on the network the ports go with:
    its IPv6 one on a dual-stack network, else its IPv4 one. dockerd's docker-proxy does the
    same (portmap's NAT cannot take IPv6 to IPv4, nor loopback anywhere)."""
    ip = ep.get("GlobalIPv6Address") or ep.get("IPAddress")
    if not ip:
        return []
    return [{"proto": m["protocol"], "host_ip": m["hostIP"], "host_port": m["hostPort"], "ip": ip,
             "port": m["containerPort"]} for m in mappings if m.get("proxy")]


def teardown(svc: ContainerService, ns: str, cid: str, rec: Container | None = None,
             hc: dict[str, Any] | None = None) -> None:
    """After the exit (or a failed start): detach everything, drop the netns, forget the ports.
    rec (the container's record, when the caller has it): one that holds no network of its own
    is left alone (see holds_network; hc: its HostConfig, when the caller has it parsed)."""
    nets = svc.networks
    if nets is None:
        return
    if rec is not None and not holds_network(rec, hc):
        return
    with nets.container_lock(cid):
        _teardown(svc, nets, ns, cid)


def holds_network(rec: Container, hc: dict[str, Any] | None = None) -> bool:
    """Whether the container may hold something of its own to tear down: a netns, CNI
    attachments, published ports. One in another's network namespace (host, container:<id>, a
    CRI sandbox's ns:<path>) gets none at its start (setup), and whatever it got since (a
    connect) is recorded in its extensions first ("net", _save): with no such record there is
    nothing of it to release, and its exit, removal and next start skip the teardown (a CRI
    pod's containers and sandbox: ~0.1 ms each)."""
    if (rec.extensions or {}).get("net"):
        return True
    if hc is None:
        hc = (rec.spec_json() or {}).get("HostConfig")
    mode = network_mode(hc)
    return not (mode == "host" or mode.startswith(("container:", "ns:")))


def _teardown(svc: ContainerService, nets: NetworkService, ns: str, cid: str) -> None:
    errors = nets.detach_all(cid)
    try:
        rec = svc.meta.get_container(ns, cid)
        if (rec.extensions or {}).get("net"):
            ext = dict(rec.extensions)
            ext.pop("net")
            svc.meta.update_container(ns, cid, extensions=ext)
    except NotFound:
        pass
    if errors:
        import logging
        logging.getLogger("berthd").warning("container %s: network teardown: %s", cid[:12], errors[0])


def published(rec: Container) -> bool:
    """Whether a container holds published host ports."""
    ports = ((rec.extensions or {}).get("net") or {}).get("ports") or {}
    return any(b.get("HostPort") for binds in ports.values() for b in binds or [])


def _save(svc: ContainerService, ns: str, cid: str, net: dict[str, Any]) -> None:
    rec = svc.meta.get_container(ns, cid)
    svc.meta.update_container(ns, cid, extensions=dict(rec.extensions or {}, net=net))


def connect(svc: ContainerService, ns: str, ref: str, net_ref: str, endpoint_cfg: dict[str, Any] | None) -> Network:
    """docker network connect: recorded in the container's config; attached now if it runs. One
    at a time with the container's other connects and disconnects, its starts, its removal and
    its network's release at its exit (two at once each added an eth1, the second failing in
    the bridge plugin)."""
    cid = svc.get(ns, ref).id
    with svc.one_at_a_time(cid), svc.networks.container_lock(cid):
        return _connect(svc, ns, cid, net_ref, endpoint_cfg)


def _connect(svc: ContainerService, ns: str, ref: str, net_ref: str, endpoint_cfg: dict[str, Any] | None) -> Network:
    nets = svc.networks
    rec = svc.get(ns, ref)
    n = nets.get(ns, net_ref)
    body = rec.spec_json() or {}
    hc = body.get("HostConfig") or {}
    mode = network_mode(hc)
    # dockerd's (20.10) checks and words, in its order
    if n.name == "host":  # dockerd's validation errors: 400s
        raise InvalidArgument(HOST_NETWORK_CONFLICT)
    if mode == "host" or mode.startswith("container:"):
        raise InvalidArgument("container sharing network namespace with another container or host cannot be "
                                 "connected to any other network")
    if n.name == "none" and mode == "none" and body.get(DETACHED) and not requested_networks(body):
        body = dict(body)  # back on "none", taken off it before and on no other network since
        body.pop(DETACHED)
        svc.meta.update_container(ns, rec.id, spec=body)
        nets.events.publish(ns, "network", "connect", n.id, container=rec.id, name=n.name, type=n.driver)
        return n
    if (mode == "none" and not body.get(DETACHED)) or n.name == "none":
        raise InvalidArgument("container cannot be connected to multiple networks with one of the networks in "
                                 "private (none) mode")
    ipam = (endpoint_cfg or {}).get("IPAMConfig") or {}
    if ipam.get("IPv4Address") and n.data.get("subnet_auto"):
        from berth.services.networks import IP_NEEDS_USER_SUBNET
        raise InvalidArgument(IP_NEEDS_USER_SUBNET)
    current = [nets.get(ns, r).id for r, _ in attachable(nets, body)]
    running = svc.state(rec)["Running"]
    if n.id in current:
        if not running:
            return n  # configured already: nothing to do (dockerd answers it so)
        raise Forbidden(f"endpoint with name {rec.name} already exists in network {n.name}")
    body = dict(body)
    nc = dict(body.get("NetworkingConfig") or {})
    eps = dict(nc.get("EndpointsConfig") or {})
    if body.get(DETACHED) and _same(nets, ns, mode, n):  # back on the network of its NetworkMode
        body.pop(DETACHED)
        eps = {k: v for k, v in eps.items() if not _same(nets, ns, k, n)}
        eps[mode] = endpoint_cfg or {}
    else:
        eps[n.name] = endpoint_cfg or {}
    nc["EndpointsConfig"] = eps
    body["NetworkingConfig"] = nc
    check(nets, ns, dict({k: v for k, v in body.items() if k != DETACHED}, HostConfig=dict(hc, NetworkMode=n.name)))
    if running:
        net = dict((rec.extensions or {}).get("net") or {})
        if not net.get("netns") and mode == "none":  # its namespace (the runtime's) kept at berth's path
            net["netns"] = _keep_netns(svc, rec)
            _save(svc, ns, rec.id, net)
        if not net.get("netns"):
            raise FailedPrecondition(f"container {rec.name} has no network namespace of its own")
        used = {e["ifname"] for e in (net.get("networks") or {}).values()}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
        ep = nets.attach(ns, rec.id, rec.name, n, ifname, endpoint_cfg, hostname=body.get("Hostname") or rec.id[:12])
        net["networks"] = dict(net.get("networks") or {}, **{n.name: ep})
        svc.meta.update_container(ns, rec.id, spec=body, extensions=dict(rec.extensions or {}, net=net))
        nets.register(ns, rec.id, {n.name: ep})
        if nets.dns is not None and ep.get("DNSNames"):
            nets.dns.attach(rec.id, net["netns"])
        _joined(svc, rec, body, n, ep)
    else:
        svc.meta.update_container(ns, rec.id, spec=body)
    nets.events.publish(ns, "network", "connect", n.id, container=rec.id, name=n.name, type=n.driver)
    return n


def disconnect(svc: ContainerService, ns: str, ref: str, net_ref: str, force: bool = False) -> Network:
    """docker network disconnect; one at a time as connect."""
    cid = svc.get(ns, ref).id
    with svc.one_at_a_time(cid), svc.networks.container_lock(cid):
        return _disconnect(svc, ns, cid, net_ref, force)


def _disconnect(svc: ContainerService, ns: str, ref: str, net_ref: str, force: bool = False) -> Network:
    nets = svc.networks
    rec = svc.get(ns, ref)
    n = nets.get(ns, net_ref)
    body = dict(rec.spec_json() or {})
    hc = dict(body.get("HostConfig") or {})
    requested = requested_networks(body)
    match = [(r, e) for r, e in requested if _same(nets, ns, r, n)]
    if network_mode(hc) == "host" and n.name == "host":
        raise InvalidArgument(HOST_NETWORK_CONFLICT)
    if n.name == "none" and network_mode(hc) == "none" and not body.get(DETACHED):
        # off "none" (its namespace, loopback alone, stays): it may then be connected elsewhere
        body[DETACHED] = True
        svc.meta.update_container(ns, rec.id, spec=body)
        nets.events.publish(ns, "network", "disconnect", n.id, container=rec.id, name=n.name, type=n.driver)
        return n
    if not match:  # with or without --force, as docker's (force is for endpoints of removed containers)
        # dockerd's words: its daemon's for a container that does not run, libnetwork's for one that does
        the = "" if svc.state(rec)["Running"] else "the "
        raise FailedPrecondition(f"container {rec.id} is not connected to {the}network {n.name}")
    nc = dict(body.get("NetworkingConfig") or {})
    eps = {k: v for k, v in (nc.get("EndpointsConfig") or {}).items() if not _same(nets, ns, k, n)}
    if _same(nets, ns, network_mode(hc), n):
        body[DETACHED] = True  # NetworkMode stays as asked, as docker's does
    nc["EndpointsConfig"] = eps
    body["NetworkingConfig"] = nc
    body["HostConfig"] = hc
    net = dict((rec.extensions or {}).get("net") or {})
    ep = (net.get("networks") or {}).get(n.name)
    if ep is not None:
        nets.detach(rec.id, ep["cni_name"], ep["ifname"])
        _left(svc, rec, ep)
        net["networks"] = {k: v for k, v in net["networks"].items() if k != n.name}
        with nets._lock:
            nets._endpoints.get(n.id, {}).pop(rec.id, None)
    ext = dict(rec.extensions or {})
    if net:
        ext["net"] = net
    svc.meta.update_container(ns, rec.id, spec=body, extensions=ext)
    nets.events.publish(ns, "network", "disconnect", n.id, container=rec.id, name=n.name, type=n.driver)
    return n


def _joined(svc: ContainerService, rec: Container, body: dict[str, Any], n: Network, ep: dict[str, Any]) -> None:
    """A running container connected to a network, as libnetwork's endpoint join: its hostname
    with the new address in its /etc/hosts, and the embedded DNS server in its resolv.conf once
    it is on a user-defined network (one that ran with --network none had the host's)."""
    cdir = svc.cdir(rec.id)
    hostname = body.get("Hostname") or rec.id[:12]
    domain = body.get("Domainname")
    try:
        if ep.get("IPAddress"):
            with open(os.path.join(cdir, "hosts"), "a") as f:
                f.write(f"{ep['IPAddress']}\t" + (f"{hostname}.{domain} {hostname}" if domain else hostname) + "\n")
        if n.user_defined:
            with open(os.path.join(cdir, "resolv.conf")) as f:
                on = any(line.split()[:2] == ["nameserver", "127.0.0.11"] for line in f if line.strip())
            if not on:
                write_resolv(cdir, with_daemon_dns(svc, rec, body), embedded_dns=True, in_place=True)
    except OSError:
        pass  # (files of its own it has not: one in another's namespace)


def _left(svc: ContainerService, rec: Container, ep: dict[str, Any]) -> None:
    """A running container disconnected: the /etc/hosts entry of its address there goes."""
    ip = ep.get("IPAddress")
    path = os.path.join(svc.cdir(rec.id), "hosts")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
        kept = [line for line in lines if not (ip and line.startswith(ip + "\t"))]
        if kept != lines:
            rewrite_in_place(path, "\n".join(kept) + "\n")
    except OSError:
        pass


def _keep_netns(svc: ContainerService, rec: Container) -> str:
    """The network namespace of a running --network none container that has none at berth's path
    (one started by a berthd before setup made them for none too) bind-mounted there, as setup
    makes them: attachments go there and the teardown after its exit removes it."""
    from berth.linux import syscalls as sc
    pid = svc.state(rec).get("Pid")
    path = svc.networks.netns_path(rec.id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    try:
        sc.mount(f"/proc/{pid}/ns/net", path, None, sc.MS_BIND)
    except OSError as e:
        raise FailedPrecondition(f"container {rec.name} is not running any more: {e.strerror}") from None
    return path


def _link(spec: str) -> str:
    """A --link as "name:alias" ("name", and docker's stored "/name:/container/alias", too)."""
    target, _, alias = spec.partition(":")
    target = target.lstrip("/")
    return f"{target}:{alias.rsplit('/', 1)[-1] or target}"


def _same(nets: NetworkService, ns: str, ref: str, n: Network) -> bool:
    try:
        return nets.get(ns, ref).id == n.id
    except BerthError:
        return False


def users(svc: ContainerService, ns: str, n: Network) -> list[str]:
    """Names of the containers configured on network n."""
    out = []
    for rec in svc.meta.list_containers(ns):
        body = rec.spec_json() or {}
        if any(_same(svc.networks, ns, r, n) for r, _ in requested_networks(body)):
            out.append(rec.name)
    return out


def in_mode(rec: Container, mode: str) -> bool:
    """Whether a container's network is mode's ("host" or "none": not taken off it since)."""
    body = rec.spec_json() or {}
    return network_mode(body.get("HostConfig")) == mode and not (mode == "none" and body.get(DETACHED))


def settings(svc: ContainerService, rec: Container, running: bool, started: bool = True) -> dict[str, Any]:
    """docker's NetworkSettings (and the summary's Networks) of a container. started: it has run
    (a container never started shows its networks as asked for, without their ids, as dockerd's)."""
    nets = svc.networks
    body = rec.spec_json() or {}
    net = (rec.extensions or {}).get("net") or {} if running else {}
    eps = net.get("networks") or {}
    hc = body.get("HostConfig") or {}
    mode = network_mode(hc)
    networks = {}
    if mode == "host" or (mode == "none" and not body.get(DETACHED)):
        n = nets.get(rec.namespace, mode)
        if started:  # dockerd's endpoint on it while it runs (network inspect lists it too)
            from berth.services.networks import endpoint_id
            networks[mode] = dict(_empty_ep(n.id), EndpointID=endpoint_id(n.id, rec.id) if running else "")
        else:
            networks[mode] = _asked(_empty_ep(""), ((body.get("NetworkingConfig") or {}).get("EndpointsConfig")
                                                    or {}).get(mode) or {}, "")
    elif not mode.startswith("container:"):
        for i, (ref, ep_cfg) in enumerate(requested_networks(body)):
            try:
                n = nets.get(rec.namespace, ref)
            except BerthError:
                if ref in ("bridge", "default") and nets.no_default:  # dockerd's (-b none): an empty one
                    networks["bridge"] = _asked(_empty_ep(""), ep_cfg or {}, "")
                continue
            ep = eps.get(n.name)
            if ep:
                networks[n.name] = {k: v for k, v in ep.items() if k not in ("ifname", "cni_name", "name")}
            else:  # not running: what was asked for (the MAC address too, as docker's API 1.44+)
                ep_cfg = ep_cfg or {}
                mac = ep_cfg.get("MacAddress") or (body.get("MacAddress") if i == 0 and not body.get(DETACHED) else "")
                networks[n.name] = _asked(_empty_ep(n.id if started else ""), ep_cfg, mac)
    # the top-level (deprecated) address fields are the default bridge network's alone, as
    # dockerd's (its getDefaultNetworkSettings): empty for a container on other networks only
    primary = eps.get("bridge") or {}
    ports = net.get("ports") or {}
    if not running:  # dockerd's: none until it runs (then its exposed ones, published or not)
        ports = {}
    return {
        "Bridge": "", "SandboxID": rec.id if net.get("netns") else "", "SandboxKey": net.get("netns", ""),
        "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": primary.get("EndpointID", ""), "Gateway": primary.get("Gateway", ""),
        "GlobalIPv6Address": primary.get("GlobalIPv6Address", ""),
        "GlobalIPv6PrefixLen": primary.get("GlobalIPv6PrefixLen", 0), "IPAddress": primary.get("IPAddress", ""),
        "IPPrefixLen": primary.get("IPPrefixLen", 0), "IPv6Gateway": primary.get("IPv6Gateway", ""),
        "MacAddress": primary.get("MacAddress", ""),
        "Networks": networks,
    }


def _asked(ep: dict[str, Any], ep_cfg: dict[str, Any], mac: str | None) -> dict[str, Any]:
    """An endpoint not attached: what its config asked for."""
    return dict(ep, Aliases=ep_cfg.get("Aliases"), IPAMConfig=ep_cfg.get("IPAMConfig"), MacAddress=mac or "",
                Links=ep_cfg.get("Links") or None, DriverOpts=ep_cfg.get("DriverOpts") or None)


def _empty_ep(nid: str) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "NetworkID": nid, "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


# --- /etc files ---

def host_hosts() -> str | None:
    """The host's /etc/hosts as it is (None when it cannot be read)."""
    try:
        with open("/etc/hosts") as f:
            return f.read()
    except OSError:
        return None


def host_resolv() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            return f.read()
    except OSError:
        return ""


def write_files(files_dir: str, hostname: str, spec_body: dict[str, Any], endpoints: list[dict[str, Any]],
                host: bool = False, embedded_dns: bool = False, upstream: Sequence[str] = (),
                host_gateway: str = "") -> None:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container, written by berth (the
    host's own files are only read); host_gateway: the address of --add-host's "host-gateway"."""
    hc = spec_body.get("HostConfig") or {}
    os.makedirs(files_dir, exist_ok=True)
    write_text(os.path.join(files_dir, "hostname"), hostname + "\n")
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    if host and not hc.get("ExtraHosts") and (text := host_hosts()) is not None:
        # the host's file; with --add-host dockerd writes a file of its own instead, its default
        # lines and the added hosts (the host's entries gone: docker/cli#4563), as berth does
        lines = text.splitlines()
    gateway = host_gateway or next((e.get("Gateway") for e in endpoints if e.get("Gateway")), "")
    for h in hc.get("ExtraHosts") or []:
        name, ip = parse_extra_host(h)
        if ip == "host-gateway":
            ip = gateway or "127.0.0.1"
        lines.append(f"{ip}\t{name}")
    if not host:
        domain = spec_body.get("Domainname")
        full = f"{hostname}.{domain} {hostname}" if domain else hostname
        if endpoints and endpoints[0].get("IPAddress"):  # none without an address (--network none), as dockerd
            lines.append(f"{endpoints[0]['IPAddress']}\t{full}")
    write_text(os.path.join(files_dir, "hosts"), "\n".join(lines) + "\n")
    write_resolv(files_dir, spec_body, host, embedded_dns, upstream)


def write_resolv(files_dir: str, spec_body: dict[str, Any], host: bool = False, embedded_dns: bool = False,
                 upstream: Sequence[str] = (), in_place: bool = False) -> None:
    """The container's /etc/resolv.conf: the host's (its nameservers but loopback ones), the
    create's Dns* options over it, the embedded DNS server (127.0.0.11) on a user-defined network."""
    f: Any
    hc = spec_body.get("HostConfig") or {}
    resolv = host_resolv()
    if host and not (hc.get("Dns") or hc.get("DnsSearch") or hc.get("DnsOptions")):
        write_text(os.path.join(files_dir, "resolv.conf"), resolv)
        return
    servers, search, options = [], [], []
    for line in resolv.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "nameserver":
            servers.append(f[1])
        elif f and f[0] in ("search", "domain"):
            search = f[1:]
        elif f and f[0] == "options":
            options += f[1:]
    if hc.get("Dns"):
        servers = list(hc["Dns"])
    if hc.get("DnsSearch"):
        search = [] if hc["DnsSearch"] == ["."] else list(hc["DnsSearch"])
    if hc.get("DnsOptions"):
        options = list(hc["DnsOptions"])
    if embedded_dns:
        servers = ["127.0.0.11"]
        if not any(o.startswith("ndots:") for o in options):
            options.append("ndots:0")
    else:
        servers = [s for s in servers if not s.startswith("127.")] or (["127.0.0.1"] if host else [])
    out = ["search " + " ".join(search)] if search else []  # libnetwork's order: search, nameservers, options
    out += [f"nameserver {s}" for s in servers]
    if options:
        out.append("options " + " ".join(options))
    (rewrite_in_place if in_place else write_text)(os.path.join(files_dir, "resolv.conf"), "\n".join(out) + "\n")


def rewrite_in_place(path: str, text: str) -> None:
    """path's content replaced in its own inode: a running container has it bind-mounted (a new
    file renamed over it would not be what it sees)."""
    with open(path, "r+") as f:
        f.write(text)
        f.truncate()


def write_text(path: str, text: str) -> None:
    """Replace a file's text (its owner kept: a remapped container's root's, see runopts.apply_remap)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        try:
            st = os.stat(path)
            if (st.st_uid, st.st_gid) != (0, 0):
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
        except FileNotFoundError:
            pass
    os.replace(tmp, path)
