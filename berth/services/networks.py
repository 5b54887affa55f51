"""The networks use-cases: docker's networks over CNI.

Every namespace has the built-in networks "bridge" (the default: a Linux bridge, host-local
IPAM and portmap; berth's own FORWARD, isolation and masquerade rules), "host" and "none";
user-defined networks (bridge, macvlan, ipvlan) are metadata objects with a conflist berth writes under its own conf dir. A container on a
network gets a network namespace bind-mounted at <state>/netns/<id>, one CNI attachment per
network (eth0, eth1, ...) while it runs, and its endpoint recorded in the container's
extensions ("net"), from which berthd rebuilds its view (and the DNS answers) after a restart.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from berth import cni
from berth.errors import AlreadyExists, BerthError, FailedPrecondition, Forbidden, InvalidArgument, NotFound
from berth.gotime import rfc3339nano as _now

if TYPE_CHECKING:
    from berth.daemon.config import Config
    from berth.metadata import MetadataStore
    from berth.services.containers import ContainerService
    from berth.services.events import EventBus

BUILTIN = ("bridge", "host", "none")
DRIVERS = ("bridge", "macvlan", "ipvlan")


def builtin_id(ns: str, name: str) -> str:
    return hashlib.sha256(f"berth-network:{ns}/{name}".encode()).hexdigest()


def is_bridge(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}/bridge")


def delete_bridge(n: Network) -> None:
    """A bridge network's interface, if berth made it (the bridge plugin does, at the first
    attachment) and it is a bridge: never one that was on the host before the network."""
    name = n.data.get("bridge")
    if name and not n.data.get("bridge_existed") and is_bridge(name):
        import subprocess
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 networks the host routes (or has addresses in)."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                p = line.split()
                dest, mask = int(p[1], 16), int(p[7], 16)
                if mask == 0:
                    continue
                d = socket.inet_ntoa(dest.to_bytes(4, "little"))
                m = socket.inet_ntoa(mask.to_bytes(4, "little"))
                out.append(ipaddress.IPv4Network(f"{d}/{m}", strict=False))
    except (OSError, ValueError, StopIteration):
        pass
    return out


class Network:
    """A resolved network: built-in or user-defined."""

    def __init__(self, ns: str, id: str, name: str, data: dict, labels: dict | None = None,
                 created: str = "") -> None:
        self.ns, self.id, self.name, self.data, self.labels = ns, id, name, data, labels or {}
        self.created = created or data.get("created", "")

    @property
    def driver(self) -> str:
        return self.data.get("driver", "bridge")

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN

    @property
    def user_defined(self) -> bool:
        return not self.builtin

    @property
    def cni_name(self) -> str:
        return "bridge" if self.name == "bridge" else "berth-" + self.id[:12]


# dockerd's refusal of --ip on a network whose subnet came from the pool (connect's and the start's)
IP_NEEDS_USER_SUBNET = ("user specified IP address is supported only when connecting to networks with user "
                        "configured subnets")


def _check_scope(driver: str, scope: str, ingress: bool) -> None:
    """A network's scope as libnetwork checks it without a swarm: overlay's is global (not to be
    made local), an ingress network must be global, a swarm-scoped one needs an active swarm, and
    a global one (overlay, any scope but local) is made by a swarm manager: refused in dockerd's
    words, in its order."""
    from berth.errors import SWARM_NOT_MANAGER
    data_scope = "global" if driver == "overlay" else "local"
    if scope == "local" and data_scope == "global":
        raise Forbidden(f"cannot downgrade network scope for {driver} networks")
    if ingress and data_scope != "global":
        raise Forbidden("Ingress network can only be global scope network")
    if scope == "swarm":
        raise Forbidden("cannot create a swarm scoped network when swarm is not active")
    if data_scope == "global" or scope not in ("", "local"):
        raise Forbidden(SWARM_NOT_MANAGER)  # (dockerd 20.10's is a 500; newer ones' a 403, bad input's 4xx)


class NetworkService:
    def __init__(self, cfg: Config, meta: MetadataStore, events: EventBus | None = None) -> None:
        from berth.services.events import EventBus
        self.cfg = cfg
        self.meta = meta
        self.events = events if events is not None else EventBus()
        self.netns_dir = os.path.join(cfg.state, "netns")
        self.cache_dir = os.path.join(cfg.state, "cni", "results")
        self.ipam_dir = os.path.join(cfg.state, "cni", "ipam")
        self.dns: Any = None  # the daemon's EmbeddedDNS bridge: attach(cid, netns) / detach(cid)
        self._host_bridge = False  # the default network's bridge is the host's, not berthd's (ensure_host)
        # the ContainerService whose containers use the networks (wired after both are made:
        # containers are created on networks, and a network's users are containers)
        self.containers: ContainerService | None = None
        self._lock = threading.RLock()
        # live endpoints for name resolution: network id -> {container id: endpoint}
        self._endpoints: dict[str, dict[str, dict]] = {}
        # (proto, host ip, host port) -> container id, of running containers
        self._ports: dict[tuple[str, str, int], str] = {}
        # container id -> lock: a container's attachments change one at a time
        self._cid_locks: dict[str, threading.RLock] = {}
        self._held: dict[str, list[str]] = {}  # container id -> CNI network names whose release is under way
        self._busy: dict[str, int] = {}  # CNI network name -> how many releases are under way
        self._idle = threading.Condition(self._lock)

    # --- networks ---

    def _builtin(self, ns: str, name: str) -> Network:
        data = {"driver": {"bridge": "bridge", "host": "host", "none": "null"}[name]}
        if name == "bridge":
            net = ipaddress.IPv4Network(self.cfg.bridge_subnet, strict=False)
            fixed = self.cfg.fixed_cidr  # (daemon.json's fixed-cidr: where its containers' addresses come from)
            if self._host_bridge:
                data["bridge_existed"] = True  # never deleted by berthd
            data.update(bridge=self.cfg.bridge, subnet=str(net), gateway=str(next(net.hosts())),
                        ip_range=str(ipaddress.IPv4Network(fixed, strict=False)) if fixed else "",
                        options={"com.docker.network.bridge.name": self.cfg.bridge,
                                 "com.docker.network.bridge.default_bridge": "true"})
            if self.cfg.ip != "0.0.0.0":  # (berthd.toml's ip, daemon.json's): where ports are published by default
                data["options"]["com.docker.network.bridge.host_binding_ipv4"] = self.cfg.ip
            if not self.cfg.icc:  # (berthd.toml's icc, daemon.json's): as dockerd's default bridge shows it
                data["options"]["com.docker.network.bridge.enable_icc"] = "false"
            if self.cfg.default_gateway:  # (berthd.toml's default_gateway: daemon.json's default-gateway)
                data.setdefault("aux", {})["DefaultGatewayIPv4"] = self.cfg.default_gateway
            if self.cfg.mtu:  # (berthd.toml's mtu, daemon.json's)
                data["options"]["com.docker.network.driver.mtu"] = str(self.cfg.mtu)
            if self.cfg.bridge_subnet6:  # (berthd.toml's bridge_subnet6: daemon.json's ipv6 and fixed-cidr-v6)
                net6 = ipaddress.IPv6Network(self.cfg.bridge_subnet6, strict=False)
                data.update(ipv6=True, subnet6=str(net6), gateway6=str(net6.network_address + 1), ip_range6="",
                            gateway6_implied=True)
                if self.cfg.default_gateway6:  # (default_gateway6: daemon.json's default-gateway-v6)
                    data.setdefault("aux", {})["DefaultGatewayIPv6"] = self.cfg.default_gateway6
        return Network(ns, builtin_id(ns, name), name, data)

    def host_gateway_ip(self) -> str:
        """What --add-host NAME:host-gateway stands for: as dockerd's default host-gateway-ip, the
        default bridge's gateway, whatever networks the container itself is on."""
        return str(next(ipaddress.IPv4Network(self.cfg.bridge_subnet, strict=False).hosts()))

    @property
    def no_default(self) -> bool:
        """berthd.toml's bridge "none" (daemon.json's, dockerd's -b none): no default network; the
        containers that would be on it have a namespace with lo alone."""
        return self.cfg.bridge == "none"

    def get(self, ns: str, ref: str) -> Network:
        """A network by name, id or unique id prefix."""
        if ref in BUILTIN or ref == "default":
            if ref in ("bridge", "default") and self.no_default:
                raise NotFound(f"network {ref} not found")
            return self._builtin(ns, "bridge" if ref == "default" else ref)
        o = self.meta.find_object(ns, "network", ref)
        if o is not None:
            return Network(ns, o.id, o.name, o.data, o.labels)
        for name in self._builtins():
            if builtin_id(ns, name).startswith(ref) and len(ref) >= 1:
                return self._builtin(ns, name)
        found = [o for o in self.meta.list_objects(ns, "network") if o.id.startswith(ref)] if ref else []
        if len(found) == 1:
            return Network(ns, found[0].id, found[0].name, found[0].data, found[0].labels)
        if len(found) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found on name)")
        raise NotFound(f"network {ref} not found")

    def _builtins(self) -> tuple[str, ...]:
        return tuple(n for n in BUILTIN if n != "bridge" or not self.no_default)

    def all(self, ns: str) -> list[Network]:
        return [self._builtin(ns, n) for n in self._builtins()] + [
            Network(ns, o.id, o.name, o.data, o.labels) for o in self.meta.list_objects(ns, "network")]

    def _subnets_in_use(self) -> list[ipaddress.IPv4Network]:
        used = ([] if self.no_default else [ipaddress.IPv4Network(self.cfg.bridge_subnet, strict=False)]) + \
            host_routes()
        for o in self.meta.list_objects(None, "network"):
            if o.data.get("subnet"):
                used.append(ipaddress.IPv4Network(o.data["subnet"]))
        return used

    def create(self, ns: str, name: str, driver: str = "bridge", subnet: str | None = None,
               gateway: str | None = None, ip_range: str | None = None, internal: bool = False,
               options: dict | None = None, labels: dict | None = None, ipam_options: dict | None = None,
               attachable: bool = False, ipv6: bool = False, subnet6: str | None = None,
               gateway6: str | None = None, ip_range6: str | None = None, aux: dict | None = None,
               scope: str = "", ingress: bool = False, config_from: str = "") -> Network:
        """A network (config_from: the configuration-only network whose IPAM, options and IPv6 it
        was given, which inspect names and which cannot go while it is there)."""
        check_name(name)
        if name in BUILTIN or name == "default":
            raise Forbidden(f"operation is not permitted on predefined {name} network ")  # dockerd's, its space too
        driver = driver or "bridge"
        if driver not in DRIVERS and driver not in ("host", "null", "overlay"):
            raise NotFound(f"plugin \"{driver}\" not found")  # berth has bridge, macvlan, ipvlan (DRIVERS)
        _check_scope(driver, scope, ingress)
        if driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        options = dict(options or {})
        if self.meta.find_object(ns, "network", name) is not None:
            raise AlreadyExists(f"network with name {name} already exists")
        with self._lock:
            used = self._subnets_in_use()
            if subnet:
                try:
                    net = ipaddress.IPv4Network(subnet, strict=False)
                except ValueError:
                    raise InvalidArgument(f"Invalid subnet {subnet} : invalid CIDR address: {subnet}") from None
                if net.prefixlen > 30:
                    raise InvalidArgument(f"invalid subnet {subnet}: too small (at most /30)")
                for u in used:
                    if u.overlaps(net) and u.prefixlen > 0 and driver == "bridge":
                        raise Forbidden("Pool overlaps with other one on this address space")
            else:
                if gateway or ip_range:
                    raise InvalidArgument("--gateway and --ip-range need --subnet")
                pool = ipaddress.IPv4Network(self.cfg.address_pool, strict=False)
                net = next((s for s in pool.subnets(new_prefix=24)
                            if not any(s.overlaps(u) for u in used)), None)
                if net is None:
                    raise FailedPrecondition(f"could not find an available, non-overlapping IPv4 address pool "
                                             f"among the defaults to assign to the network ({pool})")
            hosts = list(net.hosts()) if net.num_addresses <= 65536 else None
            if gateway:
                try:
                    gw = ipaddress.IPv4Address(gateway)
                except ValueError:
                    raise InvalidArgument(f"invalid gateway {gateway!r}") from None
                if gw not in net:
                    raise InvalidArgument(f"failed to allocate gateway ({gateway}): Requested address is out of range")
            else:
                gw = hosts[0] if hosts else net.network_address + 1
            rng = None
            if ip_range:
                try:
                    rng = ipaddress.IPv4Network(ip_range, strict=False)
                except ValueError:
                    raise InvalidArgument(f"invalid ip range {ip_range!r}") from None
                if not rng.subnet_of(net):
                    raise InvalidArgument(f"no matching subnet for range {ip_range}")
            hb = options.get("com.docker.network.bridge.host_binding_ipv4")
            if hb is not None:
                try:
                    ipaddress.IPv4Address(hb)
                except ValueError:
                    raise InvalidArgument(f"failed to parse com.docker.network.bridge.host_binding_ipv4 value: {hb} "
                                          "(nil ip)") from None  # dockerd's words
            parent = options.get("parent", "")
            if driver in ("macvlan", "ipvlan"):
                _check_parent(driver, parent)
            v6 = self._v6(subnet6, gateway6, ip_range6, ipv6)
            aux = _aux(aux, net, gw, v6)
            nid = secrets.token_hex(32)
            data = {"driver": driver, "subnet": str(net), "gateway": str(gw), "ip_range": str(rng) if rng else "",
                    "subnet_auto": not subnet,  # from the pool: no --ip on it (dockerd's rule)
                    # a --subnet without --gateway: the gateway is chosen but not part of the IPAM
                    # config inspect shows (dockerd's); a pool's config shows it
                    "gateway_implied": bool(subnet) and not gateway,
                    "internal": bool(internal), "options": options,
                    "ipam_options": None if ipam_options is None else dict(ipam_options),
                    "attachable": bool(attachable), "created": _now(), "ipv6": bool(ipv6), **v6}
            if aux:
                data["aux"] = aux
            if config_from:
                data["config_from"] = config_from
            if driver == "bridge":
                data["bridge"] = options.get("com.docker.network.bridge.name") or "br-" + nid[:12]
                if len(data["bridge"]) > 15:
                    raise InvalidArgument(f"bridge name {data['bridge']!r} is longer than 15 characters")
                self._check_bridge_name(ns, nid, data)
            o = self.meta.create_object(ns, "network", nid, name, data, labels)
        n = Network(ns, o.id, o.name, o.data, o.labels)
        self._write_conflist(n)
        self._host_rules(n)
        self.events.publish(ns, "network", "create", n.id, name=n.name, type=n.driver)
        return n

    def create_config_only(self, ns: str, name: str, ipam: dict, options: dict | None = None,
                           labels: dict | None = None, ipv6: bool = False) -> Network:
        """A configuration-only network (libnetwork's --config-only): IPAM, driver options and
        IPv6 kept for the networks made from it (--config-from), as given; no driver ("null"),
        no addresses taken, nothing on the host, no endpoint on it."""
        check_name(name)
        if name in BUILTIN or name == "default":
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        configs = []
        for c in ipam.get("Config") or []:
            if not c:
                continue
            for key in ("Subnet", "IPRange"):
                if c.get(key):
                    try:
                        ipaddress.ip_network(c[key], strict=False)
                    except ValueError:
                        why = f"invalid CIDR address: {c[key]}"
                        raise InvalidArgument(f"Invalid {key.lower()} {c[key]} : {why}") from None
            configs.append({k: c[k] for k in ("Subnet", "IPRange", "Gateway", "AuxiliaryAddresses") if c.get(k)})
        data = {"driver": "null", "config_only": True, "options": dict(options or {}), "ipv6": bool(ipv6),
                "ipam": {"Driver": ipam.get("Driver") or "default", "Options": ipam.get("Options"), "Config": configs},
                "created": _now()}
        with self._lock:
            if self.meta.find_object(ns, "network", name) is not None:
                raise AlreadyExists(f"network with name {name} already exists")
            o = self.meta.create_object(ns, "network", secrets.token_hex(32), name, data, labels)
        n = Network(ns, o.id, o.name, o.data, o.labels)
        self.events.publish(ns, "network", "create", n.id, name=n.name, type=n.driver)
        return n

    def config_network(self, ns: str, name: str) -> Network:
        """The configuration-only network of that name (or id), as --config-from finds it."""
        try:
            n = self.get(ns, name)
        except NotFound:
            n = None
        if n is None or not n.data.get("config_only"):
            raise NotFound(f'configuration network "{name}" does not exist')
        return n

    def _check_bridge_name(self, ns: str, nid: str, data: dict) -> None:
        """A bridge network's interface, as libnetwork's bridge driver takes it: no other network
        of berth's may have it (its words), and an interface of that name already on the host must
        be a bridge, then used as it is and left there when the network goes (data["bridge_existed"]);
        berth deletes only the bridges it made."""
        name = data["bridge"]
        others = ([] if self.no_default else [(builtin_id(ns, "bridge"), self.cfg.bridge)]) + [
            (o.id, o.data.get("bridge")) for o in self.meta.list_objects(None, "network")]
        for oid, bridge in others:
            if bridge == name:
                raise Forbidden(f"cannot create network {nid} ({name}): conflicts with network {oid} ({name}): "
                                "networks have same bridge name")
        if os.path.exists(f"/sys/class/net/{name}"):
            if not is_bridge(name):
                raise InvalidArgument(f"existing interface {name} is not a bridge")
            data["bridge_existed"] = True

    def _v6(self, subnet6: str | None, gateway6: str | None, ip_range6: str | None, enabled: bool) -> dict:
        """The IPv6 part of a network: {subnet6, gateway6, ip_range6} (kept in IPAM even when IPv6
        is not enabled, as docker's)."""
        if not subnet6:
            if enabled:
                raise FailedPrecondition("could not find an available, non-overlapping IPv6 address pool among "
                                         "the defaults to assign to the network")
            if gateway6 or ip_range6:
                raise InvalidArgument("an IPv6 --gateway or --ip-range needs an IPv6 --subnet")
            return {}
        try:
            net = ipaddress.IPv6Network(subnet6, strict=False)
        except ValueError:
            raise InvalidArgument(f"Invalid subnet {subnet6} : invalid CIDR address: {subnet6}") from None
        if net.prefixlen > 126:
            raise InvalidArgument(f"invalid subnet {subnet6}: too small (at most /126)")
        for o in self.meta.list_objects(None, "network"):
            if o.data.get("subnet6") and ipaddress.IPv6Network(o.data["subnet6"]).overlaps(net):
                raise Forbidden("Pool overlaps with other one on this address space")
        gw = net.network_address + 1
        if gateway6:
            try:
                gw = ipaddress.IPv6Address(gateway6)
            except ValueError:
                raise InvalidArgument(f"invalid gateway {gateway6!r}") from None
            if gw not in net:
                raise InvalidArgument(f"no matching subnet for gateway {gateway6}")
        out = {"subnet6": str(net), "gateway6": str(gw), "ip_range6": "", "gateway6_implied": not gateway6}
        if ip_range6:
            try:
                rng = ipaddress.IPv6Network(ip_range6, strict=False)
            except ValueError:
                raise InvalidArgument(f"invalid ip range {ip_range6!r}") from None
            if not rng.subnet_of(net):
                raise InvalidArgument(f"no matching subnet for range {ip_range6}")
            out["ip_range6"] = str(rng)
        return out

    @staticmethod
    def _host_rules(n: Network, remove: bool = False) -> None:
        """berth's own rules for a bridge network: its traffic through FORWARD, isolation from the
        other networks and one masquerade rule for its subnet (unless --internal)."""
        if n.driver != "bridge" or not n.data.get("bridge"):
            return
        from berth.linux import iptables
        b = n.data["bridge"]
        if remove:
            iptables.unforward(b)
            iptables.unisolate(b)
            iptables.unmasquerade(b, n.data["subnet"])
            return
        iptables.forward(b, v6=_v6_on(n.data))
        iptables.isolate(b)
        opts = n.data.get("options") or {}
        if _false(opts.get("com.docker.network.bridge.enable_icc")):  # (icc false: daemon.json's, or -o's)
            iptables.no_icc(b)
        else:  # (a crashed run's, with another setting)
            iptables.icc(b)
        if not n.data.get("internal") and not _false(opts.get("com.docker.network.bridge.enable_ip_masquerade")):
            iptables.masquerade(b, n.data["subnet"])

    def users(self, ns: str, n: Network) -> list[str]:
        """Names of the containers (running or not) configured on n."""
        if self.containers is None or not n.user_defined:
            return []
        from berth.services import container_net
        return container_net.users(self.containers, ns, n)

    def attached(self, ns: str, n: Network) -> dict[str, dict]:
        """network inspect's Containers: the running containers attached to n, by id."""
        out: dict[str, dict] = {}
        if self.containers is None:
            return out
        if n.name in ("host", "none"):  # dockerd's: those running in that mode, each with its endpoint
            from berth.services.container_net import in_mode
            for rec in self.meta.list_containers(ns):
                if in_mode(rec, n.name) and self.containers.state(rec)["Running"]:
                    out[rec.id] = {"Name": rec.name, "EndpointID": endpoint_id(n.id, rec.id), "MacAddress": "",
                                   "IPv4Address": "", "IPv6Address": ""}
            return out
        for rec in self.meta.list_containers(ns):
            net = (rec.extensions or {}).get("net") or {}
            ep = (net.get("networks") or {}).get(n.name)
            if ep and ep.get("NetworkID") == n.id and self.containers.state(rec)["Running"]:
                out[rec.id] = {"Name": rec.name, "EndpointID": ep.get("EndpointID", ""),
                               "MacAddress": ep.get("MacAddress", ""),
                               "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep.get("IPAddress") else "",
                               "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                               if ep.get("GlobalIPv6Address") else ""}
        return out

    def describe(self, ns: str, ref: str) -> dict:
        """docker network inspect: the network with its running containers."""
        n = self.get(ns, ref)
        return self.inspect(n, self.attached(ns, n))

    def prune(self, ns: str, filters: dict | None = None) -> dict:
        """docker network prune: the user-defined networks no container uses (and that pass the
        label and until filters) go. Returns {"NetworksDeleted": [their names]} (null for none)."""
        filters = filters or {}
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        until = _filter_values(filters, "until")
        if until:
            from berth.gotime import get_timestamp
            try:
                get_timestamp(until[0])
            except ValueError as e:
                raise InvalidArgument(str(e)) from None
        before = _until(until[0]) if until else None
        gone = []
        for n in self.all(ns):
            if n.builtin or n.data.get("config_only") or not _labels_match(filters, n.labels):
                continue  # (a configuration-only network is never pruned, as dockerd's)
            if before is not None and not (n.created and n.created < before):
                continue
            if self.attached(ns, n):  # (dockerd's: networks without endpoints go)
                continue
            try:
                self.remove(ns, n.id)
                gone.append(n.name)
            except BerthError:  # taken meanwhile, or gone
                pass
        self.events.publish(ns, "network", "prune", "", reclaimed=0)  # dockerd's, even when none went
        return {"NetworksDeleted": gone or None}  # dockerd's null when none went

    def remove(self, ns: str, ref: str, in_use: Callable[[Network], list[str]] | None = None) -> Network:
        """Remove a user-defined network; refused while a running container is attached to it
        (in_use(n): by default those), as dockerd: a container that is configured on it but does
        not run does not hold it (its start then fails, the network not found)."""
        n = self.get(ns, ref)
        if n.builtin:
            raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
        if n.data.get("config_only"):
            if any(m.data.get("config_from") == n.name for m in self.all(ns)):
                raise Forbidden(f'error while removing network: configuration network "{n.name}" is in use')
        users = in_use(n) if in_use is not None else list(self.attached(ns, n))
        if users:
            raise FailedPrecondition(f"error while removing network: network {n.name} id {n.id} has active endpoints")
        try:
            self.meta.delete_object(ns, "network", n.id)
        except NotFound:  # another removal's, meanwhile: what it would have said a moment later
            raise NotFound(f"network {ref} not found") from None
        self.wait_released(n)  # a removed container's attachment may still be going
        self._teardown_host(n)
        try:
            os.unlink(self._conflist_path(n))
        except FileNotFoundError:
            pass
        self.events.publish(ns, "network", "destroy", n.id, name=n.name, type=n.driver)
        return n

    def _teardown_host(self, n: Network) -> None:
        if n.driver == "bridge" and n.data.get("bridge"):
            self._host_rules(n, remove=True)
            delete_bridge(n)
        import shutil
        shutil.rmtree(os.path.join(self.ipam_dir, n.cni_name), ignore_errors=True)

    def ensure_host(self, namespaces: list[str]) -> None:
        """At daemon start: conflists and isolation rules of every bridge network. The default
        network's bridge is berthd's to delete at its stop only if it made it: one already there
        at its start is the host's (daemon.json's bridge, berthd.toml's bridge naming one), unless
        berthd's state says a berthd before it made it (then killed, it left it)."""
        if not self.no_default:
            self._own_default_bridge()
            default = self._builtin("default", "bridge")
            self._write_conflist(default)
            self._host_rules(default)
        for ns in namespaces:
            for n in self.all(ns):
                if n.user_defined:
                    self._write_conflist(n)
                    self._host_rules(n)

    @property
    def _bridge_marker(self) -> str:
        """Where berthd notes that it made the default network's bridge (its name)."""
        return os.path.join(self.cfg.state, "default-bridge")

    def _own_default_bridge(self) -> None:
        marker = self._bridge_marker
        try:
            with open(marker) as f:
                made = f.read() == self.cfg.bridge
        except OSError:
            made = False
        if os.path.exists(f"/sys/class/net/{self.cfg.bridge}"):
            self._host_bridge = not made
        else:
            self._host_bridge = False
            os.makedirs(self.cfg.state, exist_ok=True)
            with open(marker + ".tmp", "w") as f:  # the bridge plugin makes it at the first attachment
                f.write(self.cfg.bridge)
            os.replace(marker + ".tmp", marker)

    def release_unused(self) -> None:
        """At a graceful daemon stop: release_host for every namespace, keeping the bridges of the
        running containers (and the shared chains while anything runs)."""
        busy: set[str] = set()
        running = self.containers.running() if self.containers is not None else []
        for ns, cid in running:
            try:
                net = (self.meta.get_container(ns, cid).extensions or {}).get("net") or {}
            except NotFound:
                continue
            for ep in (net.get("networks") or {}).values():
                try:
                    n = self.get(ns, ep["NetworkID"])
                    if n.data.get("bridge"):
                        busy.add(n.data["bridge"])
                except BerthError:
                    pass
            busy.add("")  # something runs: keep the shared chains
        self.release_host([n.name for n in self.meta.list_namespaces()], busy)

    def release_host(self, namespaces: list[str], busy_bridges: set[str]) -> None:
        """At a graceful daemon stop: bridges no container uses are deleted with their rules (the
        plugins make them again when needed), so a stopped berthd leaves nothing behind."""
        from berth.linux import iptables
        nets = [] if self.no_default else [self._builtin("default", "bridge")]
        for ns in namespaces:
            nets += [n for n in self.all(ns) if n.user_defined and n.driver == "bridge"]
        for n in nets:
            if n.data["bridge"] not in busy_bridges:
                self._host_rules(n, remove=True)
                delete_bridge(n)
                if n.builtin and not n.data.get("bridge_existed"):
                    try:  # (a bridge of that name made later is not berthd's)
                        os.unlink(self._bridge_marker)
                    except FileNotFoundError:
                        pass
        if not busy_bridges:
            iptables.remove_empty_chains()

    # --- conflists ---

    def _conflist_path(self, n: Network) -> str:
        fname = n.name if all(c.isalnum() or c in "_.-" for c in n.name) and n.name[0] != "." else n.cni_name
        return os.path.join(self.cfg.cni_conf_dir, n.ns if n.user_defined else "", fname + ".conflist")

    def conflist(self, n: Network) -> dict:
        d = n.data
        net = ipaddress.IPv4Network(d["subnet"])
        rng = {"subnet": str(net), "gateway": d["gateway"]}
        if d.get("ip_range"):
            # libnetwork's range: all of --ip-range's addresses, but the subnet's own network and
            # broadcast addresses (10.1.0.128/25 in 10.1.0.0/24 hands out .128 first)
            r = ipaddress.IPv4Network(d["ip_range"])
            rng["rangeStart"] = str(max(r.network_address, net.network_address + 1))
            rng["rangeEnd"] = str(min(r.broadcast_address, net.broadcast_address - 1))
        internal = bool(d.get("internal"))
        ipam = {"type": "host-local", "ranges": [[rng]], "dataDir": self.ipam_dir}
        # the aux address DefaultGatewayIPv4 (v6) is the containers' default route (libnetwork's
        # bridge driver's), an internal network's too
        aux = d.get("aux") or {}
        gw4, gw6 = aux.get("DefaultGatewayIPv4"), aux.get("DefaultGatewayIPv6")
        if gw4:
            ipam["routes"] = [{"dst": "0.0.0.0/0", "gw": gw4}]
        elif not internal:
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
        if _v6_on(d):
            rng6 = {"subnet": d["subnet6"], "gateway": d["gateway6"]}
            if d.get("ip_range6"):
                r = ipaddress.IPv6Network(d["ip_range6"])  # (libnetwork keeps only the subnet's first address)
                rng6["rangeStart"] = str(max(r.network_address, ipaddress.IPv6Network(d["subnet6"]).network_address + 1))
                rng6["rangeEnd"] = str(r.broadcast_address)
            ipam["ranges"].append([rng6])
            if gw6:
                ipam.setdefault("routes", []).append({"dst": "::/0", "gw": gw6})
            elif not internal:
                ipam.setdefault("routes", []).append({"dst": "::/0"})
        if n.driver == "bridge":
            # masquerading is one rule per network, berth's own (iptables.masquerade), not a chain per
            # container; so are the FORWARD rules (iptables.forward), not the firewall plugin's per address
            main = {"type": "bridge", "bridge": d["bridge"], "isGateway": not internal, "ipMasq": False,
                    "hairpinMode": True, "ipam": ipam, "capabilities": {"ips": True, "mac": True}}
            mtu = (d.get("options") or {}).get("com.docker.network.driver.mtu")
            if mtu:
                main["mtu"] = int(mtu)
            plugins = [main]
            if not internal:
                plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        else:
            opts = d.get("options") or {}
            main = {"type": n.driver, "master": opts.get("parent", ""), "ipam": ipam, "capabilities": {"ips": True}}
            if n.driver == "macvlan":
                main["mode"] = opts.get("macvlan_mode", "bridge")
                main["capabilities"]["mac"] = True
            else:
                main["mode"] = opts.get("ipvlan_mode", "l2")
            plugins = [main]
        return {"cniVersion": cni.SPEC_VERSION, "name": n.cni_name, "plugins": plugins}

    def _write_conflist(self, n: Network) -> None:
        if n.driver not in DRIVERS:
            return
        self._reserve_aux(n)
        path = self._conflist_path(n)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.conflist(n), f, indent=2)
        os.replace(tmp, path)

    def _lowest_free_first(self, n: Network) -> None:
        """libnetwork hands out a network's lowest free address (a container stopped and started
        again, nothing else meanwhile, has its address back); host-local goes on after the last
        one it handed out unless its store forgets it: forgotten before each ADD. (Two ADDs at
        once: host-local's lock still gives each its own address.) Not for CRI pods: containerd's
        host-local goes round."""
        d = os.path.join(self.ipam_dir, n.cni_name)
        try:
            names = os.listdir(d)
        except OSError:
            return
        for f in names:
            if f.startswith("last_reserved_ip."):
                try:
                    os.unlink(os.path.join(d, f))
                except OSError:
                    pass

    def _reserve_aux(self, n: Network) -> None:
        """--aux-address: host-local never hands out an address that has a file in its store."""
        aux = n.data.get("aux") or {}
        if not aux:
            return
        d = os.path.join(self.ipam_dir, n.cni_name)
        os.makedirs(d, exist_ok=True)
        for ip in aux.values():
            path = os.path.join(d, str(ipaddress.ip_address(ip)))
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write("berth-aux-address\naux")

    # --- inspect ---

    def inspect(self, n: Network, containers: dict | None = None) -> dict:
        d = n.data
        if d.get("config_only"):
            ipam = d.get("ipam") or {}
            return {
                "Name": n.name, "Id": n.id, "Created": n.created or "0001-01-01T00:00:00Z", "Scope": "local",
                "Driver": "null", "EnableIPv6": bool(d.get("ipv6")),
                "IPAM": {"Driver": ipam.get("Driver") or "default", "Options": ipam.get("Options"),
                         "Config": ipam.get("Config") or []},
                "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
                "ConfigOnly": True, "Containers": containers or {}, "Options": d.get("options") or {},
                "Labels": n.labels or {},
            }
        ipam_cfg = []
        aux = d.get("aux") or {}
        for key, v6 in (("", False), ("6", True)):
            if d.get("subnet" + key):
                c = {"Subnet": d["subnet" + key]}
                if not d.get(f"gateway{key}_implied"):
                    c["Gateway"] = d["gateway" + key]
                if d.get("ip_range" + key):
                    c["IPRange"] = d["ip_range" + key]
                mine = {k: v for k, v in aux.items() if (":" in v) == v6}
                if mine:
                    c["AuxiliaryAddresses"] = mine
                ipam_cfg.append(c)
        driver = d.get("driver", "bridge")
        return {
            "Name": n.name, "Id": n.id, "Created": n.created or "0001-01-01T00:00:00Z", "Scope": "local",
            "Driver": driver, "EnableIPv6": bool(d.get("ipv6")),
            # IPAM.Options as the create gave them (null when it gave none, as dockerd)
            "IPAM": {"Driver": "default", "Options": d["ipam_options"] if "ipam_options" in d else
                     ({} if n.user_defined else None),
                     "Config": ipam_cfg},
            "Internal": bool(d.get("internal")), "Attachable": bool(d.get("attachable")), "Ingress": False,
            "ConfigFrom": {"Network": d.get("config_from", "")}, "ConfigOnly": False, "Containers": containers or {},
            "Options": d.get("options") or {}, "Labels": n.labels or {},
        }

    # --- attachments ---

    def netns_path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def userns_path(self, cid: str) -> str:
        """Where a remapped container's user namespace is pinned: the owner of its network
        namespace (see container_net.new_netns)."""
        return os.path.join(self.cfg.state, "userns", cid)

    def attach(self, ns: str, cid: str, name: str, n: Network, ifname: str, endpoint_cfg: dict,
               ports: list | None = None, mac: str | None = None, hostname: str | None = None) -> dict:
        """CNI ADD of one network for a container whose netns exists; returns the endpoint."""
        if n.data.get("config_only"):
            raise Forbidden("cannot create endpoint on configuration-only network")
        if n.driver not in DRIVERS:
            raise InvalidArgument(f"container cannot be connected to network {n.name} ({n.driver})")
        rc = {}
        ip = ((endpoint_cfg or {}).get("IPAMConfig") or {}).get("IPv4Address")
        if ip:
            try:
                addr = ipaddress.IPv4Address(ip)
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
            if n.user_defined is False:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if n.data.get("subnet_auto"):
                raise InvalidArgument(IP_NEEDS_USER_SUBNET)
            if addr not in ipaddress.IPv4Network(n.data["subnet"]):
                raise InvalidArgument(f"Invalid address {ip}: It does not belong to any of this network's subnets")
            rc["ips"] = [f"{ip}/{ipaddress.IPv4Network(n.data['subnet']).prefixlen}"]
        ip6 = ((endpoint_cfg or {}).get("IPAMConfig") or {}).get("IPv6Address")
        if ip6:
            try:
                addr6 = ipaddress.IPv6Address(ip6)
            except ValueError:
                raise InvalidArgument(f"invalid IPv6 address: {ip6}") from None
            if not n.user_defined:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if not _v6_on(n.data) or addr6 not in ipaddress.IPv6Network(n.data["subnet6"]):
                raise InvalidArgument(f"Invalid address {ip6}: It does not belong to any of this network's subnets")
            rc["ips"] = rc.get("ips", []) + [f"{addr6}/{ipaddress.IPv6Network(n.data['subnet6']).prefixlen}"]
        mac = (endpoint_cfg or {}).get("MacAddress") or mac
        if mac:
            rc["mac"] = mac
        if ports:
            rc["portMappings"] = ports
        conflist = self.conflist(n)
        if not ports:  # portmap has nothing to do (and its DEL would still scan the nat table)
            conflist["plugins"] = [p for p in conflist["plugins"] if p["type"] != "portmap"]
        if rc.get("ips"):  # a chosen address may lie outside --ip-range (in the subnet), as docker allows
            for rs in conflist["plugins"][0]["ipam"]["ranges"]:
                for r in rs:
                    r.pop("rangeStart", None)
                    r.pop("rangeEnd", None)
        self._lowest_free_first(n)
        try:
            result = cni.add(conflist, cid, self.netns_path(cid), ifname, self.cfg.cni_plugin_dirs,
                             self.cache_dir, rc)
        except cni.CNIError as e:
            # an address asked for that another container has (host-local's words): dockerd's 403
            if rc.get("ips") and "is not available in range set" in e.message:
                raise Forbidden("Address already in use") from None
            raise
        ep = _endpoint(result, ifname)
        aliases = list((endpoint_cfg or {}).get("Aliases") or [])
        dns_names = [name, cid[:12]] + [a for a in aliases if a not in (name, cid[:12])] if n.user_defined else []
        if hostname and n.user_defined and hostname not in dns_names:
            dns_names.append(hostname)
        ep.update(NetworkID=n.id, EndpointID=endpoint_id(n.id, cid),
                  Aliases=aliases or None, DNSNames=dns_names or None, IPAMConfig=(endpoint_cfg or {}).get("IPAMConfig"),
                  Links=(endpoint_cfg or {}).get("Links") or None, DriverOpts=(endpoint_cfg or {}).get("DriverOpts") or None,
                  ifname=ifname, cni_name=n.cni_name, name=n.name)
        return ep

    def detach(self, cid: str, cni_name: str, ifname: str) -> bool:
        return cni.delete_cached(self.cache_dir, cni_name, cid, ifname, self.cfg.cni_plugin_dirs)

    def container_lock(self, cid: str) -> threading.RLock:
        with self._lock:
            lk = self._cid_locks.get(cid)
            if lk is None:
                lk = self._cid_locks[cid] = threading.RLock()
                if len(self._cid_locks) > 4096:
                    for k in list(self._cid_locks)[:1024]:
                        if k != cid:
                            self._cid_locks.pop(k, None)
            return lk

    def hold(self, cid: str) -> None:
        """Mark the container's attachments as being released (until detach_all has run)."""
        names = [name for name, _, _, _ in cni.cached(self.cache_dir, cid)]
        with self._lock:
            if cid in self._held:
                return
            self._held[cid] = names
            for n in names:
                self._busy[n] = self._busy.get(n, 0) + 1

    def unhold(self, cid: str) -> None:
        """The mark of hold(cid) goes (none is fine)."""
        with self._lock:
            for n in self._held.pop(cid, []):
                self._busy[n] -= 1
                if not self._busy[n]:
                    del self._busy[n]
            self._idle.notify_all()

    def wait_released(self, n: Network, timeout: float = 60) -> None:
        """Until no container's release on network n is under way."""
        with self._lock:
            self._idle.wait_for(lambda: not self._busy.get(n.cni_name), timeout)

    def drain(self, timeout: float) -> None:
        """berthd stops: the releases under way end first (an ended run's attachments go after its
        exit's record; a stop right after must not cut that short and leave its address behind)."""
        with self._lock:
            self._idle.wait_for(lambda: not self._held, timeout)

    def detach_all(self, cid: str) -> list[cni.CNIError]:
        """Every attachment of a container (from the CNI cache), then its netns."""
        try:
            with self.container_lock(cid):
                return self._detach_all(cid)
        finally:
            self.unhold(cid)

    def _detach_all(self, cid: str) -> list[cni.CNIError]:
        # the netns goes first: with it the kernel destroys the container's interfaces on its own
        # (the bridge plugin then only releases the address), which spares each removal the
        # slow, synchronous deletion of a veth
        from berth.linux import netns
        netns.remove(self.netns_path(cid))
        netns.remove(self.userns_path(cid))
        if self.dns is not None:
            self.dns.detach(cid)  # its socket there holds the namespace: the kernel's deletion begins
        errors = []
        host_links = []
        for name, c, ifname, record in cni.cached(self.cache_dir, cid):
            host_links += _host_links(record)
            try:
                cni.delete_cached(self.cache_dir, name, cid, ifname, self.cfg.cni_plugin_dirs, record=record)
            except cni.CNIError as e:
                errors.append(e)
        with self._lock:
            for eps in self._endpoints.values():
                eps.pop(cid, None)
            for k in [k for k, v in self._ports.items() if v == cid]:
                del self._ports[k]
        _wait_gone(host_links)
        return errors

    def orphans(self, live_ids: Iterable[str]) -> list[str]:
        """Container ids holding CNI attachments or a netns but not in live_ids (after a crash)."""
        ids = {c for _, c, _, _ in cni.cached(self.cache_dir)}
        for d in (self.netns_dir, os.path.dirname(self.userns_path("x"))):
            try:
                ids |= set(os.listdir(d))
            except FileNotFoundError:
                pass
        return sorted(ids - set(live_ids))

    # --- name resolution (the embedded DNS asks these, in the event loop) ---

    def register(self, ns: str, cid: str, endpoints: dict, ports: dict | None = None) -> None:
        """A running container's endpoints (for the DNS answers) and published host ports (so no
        other container takes them), at its start or when berthd restarts."""
        with self._lock:
            for ep in endpoints.values():
                self._endpoints.setdefault(ep["NetworkID"], {})[cid] = ep
            for key, binds in (ports or {}).items():
                proto = key.partition("/")[2] or "tcp"
                for b in binds or []:
                    if b.get("HostPort"):
                        self._ports[(proto, b.get("HostIp") or "0.0.0.0", int(b["HostPort"]))] = cid

    def lookup(self, cid: str, qname: str) -> list[str] | None:
        qname = qname.lower().rstrip(".")
        with self._lock:
            mine = [nid for nid, eps in self._endpoints.items() if cid in eps and eps[cid].get("DNSNames")]
            if not mine:
                return None
            found = []
            for nid in mine:
                suffix = "." + (self._endpoints[nid][cid].get("name") or "").lower()
                short = qname[: -len(suffix)] if qname.endswith(suffix) else None  # <name>.<network>
                for link in self._endpoints[nid][cid].get("Links") or []:  # --link name:alias, for this container only
                    target, _, alias = link.partition(":")
                    if alias.lower() in (qname, short) and target:
                        qname = target.lower().lstrip("/")
                        break
                for ep in self._endpoints[nid].values():
                    names = [d.lower() for d in ep.get("DNSNames") or []]
                    if qname in names or short in names:
                        for ip in (ep.get("IPAddress"), ep.get("GlobalIPv6Address")):
                            if ip and ip not in found:
                                found.append(ip)
        return found or None

    def reverse(self, cid: str, ip: str) -> str | None:
        with self._lock:
            mine = [nid for nid, eps in self._endpoints.items() if cid in eps]
            for nid in mine:
                for ep in self._endpoints[nid].values():
                    if ep.get("IPAddress") == ip and ep.get("DNSNames"):
                        return ep["DNSNames"][0] + "." + ep.get("name", "")
        return None

    # --- published ports ---

    def reserve_ports(self, cid: str, mappings: list[dict], endpoint: str = "") -> None:
        """Refuse host ports another container or program holds; remember ours. endpoint: the
        endpoint the ports go with ("name (id)"), which dockerd's refusals name."""
        prefix = f"driver failed programming external connectivity on endpoint {endpoint}: " if endpoint else ""
        with self._lock:
            taken = [(k, other) for k, other in self._ports.items() if other != cid]
            for m in mappings:
                key = (m["protocol"], m.get("hostIP") or "0.0.0.0", m["hostPort"])
                if m.get("proxy") and key[0] == "sctp":  # (docker-proxy's IPv6 side: TCP and UDP)
                    raise FailedPrecondition(f"{prefix}Error starting userland proxy: protocol not supported")
                for (proto, hip, hport), other in taken:  # another's, or one of this container's own
                    if proto == key[0] and hport == key[2] and _overlap(hip, key[1]):
                        if hip != key[1]:  # 0.0.0.0 and one address (dockerd: its proxy's bind fails)
                            raise FailedPrecondition(prefix + _bind_error(key[0], key[1], key[2],
                                                                          "address already in use").message)
                        # dockerd's port allocator's words (Go's "%s:%d", no brackets for IPv6)
                        raise FailedPrecondition(f"{prefix}Bind for {key[1]}:{key[2]} failed: port is already "
                                                 "allocated")
                try:
                    _probe_port(*key)
                except FailedPrecondition as e:  # a program of the host's (or no such address)
                    raise FailedPrecondition(prefix + e.message) from None
                taken.append((key, cid))  # (two bindings of one host port: dockerd's allocator refuses)
            for m in mappings:
                self._ports[(m["protocol"], m.get("hostIP") or "0.0.0.0", m["hostPort"])] = cid

    # last in the class: below, `list` is the builtin in annotations
    def list(self, ns: str, filters: dict | None = None) -> list[dict]:
        """docker network ls: the inspect views of the networks that pass the filters (name, id,
        driver, type, label, dangling)."""
        filters = filters or {}
        for key in filters:
            if key not in ("name", "id", "driver", "type", "label", "dangling", "scope"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        for dg in _filter_values(filters, "dangling"):
            if dg not in ("1", "true", "True", "0", "false", "False"):
                raise InvalidArgument("invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" "
                                      "(or \"0\")")
        out = []
        for n in self.all(ns):
            attached = self.attached(ns, n)  # its running containers (dangling: none, as dockerd's)
            if _matches(filters, n, lambda a=attached: list(a)):
                out.append(self.inspect(n, attached))
        return out


def _filter_values(f: dict, key: str) -> list[str]:
    """A filter's values, in either of docker's shapes ({"k": {"v": true}} or {"k": ["v"]})."""
    from berth.services.filtermatch import filter_values
    v = f.get(key)
    return [] if v is None else filter_values(v)


def _labels_match(f: dict, labels: dict) -> bool:
    """label=k / label=k=v must all hold; label!=... must all fail."""
    for lab in _filter_values(f, "label"):
        k, sep, v = lab.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    for lab in _filter_values(f, "label!"):
        k, sep, v = lab.partition("=")
        if k in labels and (not sep or labels[k] == v):
            return False
    return True


def _matches(f: dict, n: Network, users: Callable[[], list[str]]) -> bool:
    """docker network ls's filters (users: the names of n's containers, asked only when needed)."""
    from berth.services.filtermatch import matches  # dockerd's: a name or id as a regular expression
    for key, test in (("name", lambda v: matches(v, n.name)), ("id", lambda v: matches(v, n.id)),
                      ("driver", lambda v: v == n.driver or (v == "null" and n.name == "none")),
                      ("scope", lambda v: v == "local")):
        vals = _filter_values(f, key)
        if vals and not any(test(v) for v in vals):
            return False
    for t in _filter_values(f, "type"):
        if t not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{t}'")
        if (t == "custom") != n.user_defined:
            return False
    if not _labels_match(f, n.labels):
        return False
    for dg in _filter_values(f, "dangling"):  # (its values checked by list)
        want = dg in ("1", "true", "True")
        if want != (n.user_defined and not users()):
            return False
    return True


def _until(v: str) -> str:
    """prune's until: a Unix time, or an RFC 3339 time as the records hold."""
    try:
        t = float(v)
    except ValueError:
        return v
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def _check_parent(driver: str, parent: str) -> None:
    """A macvlan or ipvlan network's -o parent: an interface of the host. One that is not there
    is read as dockerd reads it, a VLAN subinterface to make (name.vlan_id), and refused in its
    words where that is malformed or its interface missing; a well-formed one berthd does not
    make (dockerd makes it, and a dummy parent when none is given)."""
    if not parent:
        raise InvalidArgument(f"the {driver} driver needs a parent interface: -o parent=<interface> (berthd makes "
                              "no dummy interface for it)")
    if os.path.exists(f"/sys/class/net/{parent}"):
        return
    if "." not in parent:
        raise InvalidArgument(f"invalid subinterface vlan name {parent}, example formatting is eth0.10")
    parts = parent.split(".")
    if len(parts) != 2:
        raise InvalidArgument(f"required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead "
                              f"received {parent}")
    base, vid = parts
    if not re.fullmatch(r"[+-]?[0-9]+", vid):  # (Go's strconv.Atoi)
        raise InvalidArgument(f"unable to parse a valid vlan id from: {vid} (ex. eth0.10 for vlan 10)")
    if not base or not os.path.exists(f"/sys/class/net/{base}"):
        # (dockerd's macvlan driver words it "does was not found", its ipvlan one as here)
        raise InvalidArgument(f"-o parent interface {'does was' if driver == 'macvlan' else 'was'} not found on "
                              f"the host: {base}")
    if not 1 <= int(vid) <= 4094:
        raise InvalidArgument(f"vlan id must be between 1-4094, received: {int(vid)}")
    raise InvalidArgument(f"-o parent={parent}: no such network interface on the host (berthd does not make VLAN "
                          f"subinterfaces: ip link add link {base} name {parent} type vlan id {int(vid)})")


def endpoint_id(network_id: str, cid: str) -> str:
    """A container's endpoint on a network: the same id for as long as it is attached."""
    return hashlib.sha256(f"{network_id}/{cid}".encode()).hexdigest()


def _overlap(a: str, b: str) -> bool:
    """Two host addresses of published ports that take the same port: equal, or of one family
    with its any-address among them (0.0.0.0, ::)."""
    if (":" in a) != (":" in b):
        return False
    return a == b or bool({a, b} & {"0.0.0.0", "::"})


def _hostport(hip: str, port: int) -> str:
    return f"[{hip}]:{port}" if ":" in hip else f"{hip}:{port}"


def _socket_for(proto: str, hip: str) -> socket.socket:
    """A socket of the host address's family (an IPv6 one for IPv6 only, as dockerd's proxy)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    if ":" in hip:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        return s
    return socket.socket(socket.AF_INET, kind)


@functools.cache
def host_ipv6() -> bool:
    """Whether the host has IPv6 (as dockerd, which then publishes a port on [::] too)."""
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
            if f.read().strip() != "0":
                return False
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return True
    except OSError:
        return False


def _bind_error(proto: str, hip: str, hport: int, why: OSError | str) -> FailedPrecondition:
    """A host port that cannot be bound, in dockerd's words (its proxy's listen): "address
    already in use", "cannot assign requested address" (not the host's), "invalid argument"."""
    if isinstance(why, OSError):
        why = (why.strerror or str(why)).lower()
    return FailedPrecondition(f"Error starting userland proxy: listen {proto}{6 if ':' in hip else 4} "
                              f"{_hostport(hip, hport)}: bind: {why}")


def _probe_port(proto: str, hip: str, hport: int) -> None:
    s = _socket_for(proto, hip)
    if proto == "tcp":  # as a listener binds (Go's and the shim's): a port whose closed connections
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # linger in TIME_WAIT is free
    try:
        s.bind((hip, hport))
    except OSError as e:
        raise _bind_error(proto, hip, hport, e) from None
    finally:
        s.close()


def free_port(proto: str, hip: str | None, also_v6: bool = False) -> int:
    """A host port free on hip (and on [::] too with also_v6: one port for both, as dockerd's)."""
    for _ in range(64):
        s = _socket_for(proto, hip or "0.0.0.0")
        try:
            s.bind((hip or "0.0.0.0", 0))
            port = s.getsockname()[1]
        except OSError as e:
            raise _bind_error(proto, hip or "0.0.0.0", 0, e) from None
        finally:
            s.close()
        try:
            if also_v6:
                _probe_port(proto, "::", port)
            return port
        except (FailedPrecondition, OSError):
            continue
    raise FailedPrecondition("no free host port")


def _endpoint(result: dict, ifname: str) -> dict:
    idx = next((i for i, itf in enumerate(result.get("interfaces") or [])
                if itf.get("name") == ifname and itf.get("sandbox")), None)
    ips = [x for x in result.get("ips") or [] if x.get("interface") == idx] or list(result.get("ips") or [])
    mac = ""
    if idx is not None:
        mac = result["interfaces"][idx].get("mac", "")
    out = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": mac, "IPv6Gateway": "",
           "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0}
    for ip in ips:
        iface = ipaddress.ip_interface(ip["address"])
        keys = ("IPAddress", "IPPrefixLen", "Gateway") if iface.version == 4 else \
            ("GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway")
        if not out[keys[0]]:
            out.update(zip(keys, (str(iface.ip), iface.network.prefixlen, ip.get("gateway", ""))))
    return out


def _false(value: object) -> bool:
    """A bridge option that says false, as Go's strconv.ParseBool reads it."""
    return isinstance(value, str) and value in ("0", "f", "F", "false", "FALSE", "False")


def _v6_on(d: dict) -> bool:
    return bool(d.get("ipv6") and d.get("subnet6"))


def check_name(name: str) -> str:
    """docker takes any network name; berth refuses only what cannot be one (empty, control
    characters, a slash: the API's /networks/{name} could not reach it)."""
    if not isinstance(name, str) or not name or any(ord(c) < 32 or c in "/\x7f" for c in name) or len(name) > 255:
        raise InvalidArgument(f"invalid network name {name!r}")
    return name


def _aux(aux: dict | None, net: ipaddress.IPv4Network, gw: object, v6: dict) -> dict[str, str]:
    """--aux-address name=ip: each in one of the network's subnets, not its gateway."""
    out = {}
    for k, v in (aux or {}).items():
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            raise InvalidArgument(f"invalid auxiliary address {k}={v}") from None
        subnet = net if ip.version == 4 else (ipaddress.IPv6Network(v6["subnet6"]) if v6.get("subnet6") else None)
        if subnet is None or ip not in subnet:
            raise InvalidArgument(f"no matching subnet for aux-address {v}")
        if str(ip) in (str(gw), v6.get("gateway6")):  # dockerd's words
            raise InvalidArgument(f"failed to allocate secondary ip address ({k}:{v}): Address already in use")
        out[str(k)] = str(ip)
    return out


def parse_port_bindings(hc: dict, exposed: dict | None, publish_all: bool,
                        default_ip: str = "", userland_proxy: bool = True) -> tuple[list[dict], dict]:
    """HostConfig.PortBindings (+ ExposedPorts with PublishAllPorts) -> the mappings and docker's
    NetworkSettings.Ports. Free host ports are chosen for empty HostPorts. As dockerd's, a port
    published on no address in particular is published on 0.0.0.0 and, when the host has IPv6,
    on [::] too (one port for both); an IPv6 host address is the proxy's alone (a mapping with
    "proxy": True: the container's shim forwards it to the container's address, as dockerd's
    docker-proxy; portmap's NAT takes the IPv4 ones). default_ip: the network's host binding
    address for ports published on none in particular (its com.docker.network.bridge.host_binding_ipv4;
    the default network's: daemon.json's ip), which they are then published on alone.
    userland_proxy false (daemon.json's userland-proxy): no forwarder, so, as dockerd 20.10
    without one (and without ip6tables), no IPv6 binding at all: not published, not listed."""
    mappings: list[dict] = []
    ports: dict[str, list[dict] | None] = {}
    bindings = dict(hc.get("PortBindings") or {})
    for key in exposed or {}:
        bindings.setdefault(key, [{"HostIp": "", "HostPort": ""}] if publish_all else None)
    for key, binds in bindings.items():
        cport, _, proto = key.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        try:
            cport = int(cport)
            if not 0 < cport < 65536:
                raise ValueError
        except ValueError:
            raise InvalidArgument(f"invalid containerPort: {key.partition('/')[0]}") from None
        pkey = f"{cport}/{proto}"
        if not binds:
            ports.setdefault(pkey, None)
            continue
        for b in binds:
            hip = (b or {}).get("HostIp") or ("" if default_ip in ("", "0.0.0.0") else default_ip)
            hport = (b or {}).get("HostPort") or ""
            if hip:
                try:
                    hip = str(ipaddress.ip_address(hip.strip("[]")))
                except ValueError:
                    raise InvalidArgument(f"invalid IP address: {hip}") from None
            v6 = ":" in hip
            if v6 and not userland_proxy:
                ports.setdefault(pkey, None)
                continue
            both = not hip and proto != "sctp" and userland_proxy and host_ipv6()  # 0.0.0.0 and [::]
            if hport:
                lo, _, hi = hport.partition("-")
                try:
                    hp = int(lo)
                    if hi and int(hi) != hp:
                        hp = free_in_range(proto, hip, int(lo), int(hi), both)
                    if not 0 < hp < 65536:
                        raise ValueError
                except ValueError:
                    raise InvalidArgument(f"invalid hostPort: {hport}") from None
            else:
                hp = free_port(proto, hip, both)
            m = {"hostPort": hp, "containerPort": cport, "protocol": proto, "hostIP": hip}
            if both:  # portmap's NAT for IPv4 only (its IPv6 DNAT would take [::1] from the forwarder
                m["hostIP"] = "0.0.0.0"  # and drop it: a loopback source cannot leave the host)
            mappings.append(dict(m, proxy=True) if v6 else m)
            ports.setdefault(pkey, []).append({"HostIp": hip or "0.0.0.0", "HostPort": str(hp)})
            if both:
                mappings.append(dict(m, hostIP="::", proxy=True))
                ports[pkey].append({"HostIp": "::", "HostPort": str(hp)})
    return mappings, ports


def free_in_range(proto: str, hip: str | None, lo: int, hi: int, also_v6: bool = False) -> int:
    for p in range(lo, hi + 1):
        try:
            _probe_port(proto, hip or "0.0.0.0", p)
            if also_v6:
                _probe_port(proto, "::", p)
            return p
        except (FailedPrecondition, OSError):
            continue
    raise FailedPrecondition(f"no free host port in {lo}-{hi}")


def _host_links(record: dict[str, Any]) -> list[str]:
    """The host-side links (a veth's host end) of a cached CNI attachment: its result's
    interfaces outside the sandbox that are not bridges."""
    out = []
    for i in ((record.get("result") or {}).get("interfaces") or []):
        name = i.get("name") if isinstance(i, dict) else None
        if isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and not i.get("sandbox") and \
                not is_bridge(name):
            out.append(name)
    return out


def _wait_gone(links: list[str], timeout: float = 2.0) -> None:
    """Until these links are gone, as a release by dockerd ends with its veth gone. The netns
    removed first, the kernel deletes a veth's ends on its own, mostly while the DELs run; one
    still there (its namespace being destroyed, or held by a process that joined it: a container
    in --network container:<this one>) is deleted here, as dockerd deletes its veth. Bounded: a
    link still there after timeout is left to the kernel."""
    from berth.linux.netdev import NetlinkError, delete_link
    deadline = time.monotonic() + timeout
    for name in links:
        if not os.path.exists(f"/sys/class/net/{name}"):
            continue
        try:
            delete_link(name)
        except (NetlinkError, OSError):
            pass
        while os.path.exists(f"/sys/class/net/{name}") and time.monotonic() < deadline:
            time.sleep(0.001)

