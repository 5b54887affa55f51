"""Docker Engine API: /networks (list, inspect, create, remove, prune, connect, disconnect).
The use-cases are berth.services.networks (and container_net for a container's attachments)."""

from __future__ import annotations

from aiohttp import web

from berth.api.app import Router, json_body, json_response, member, namespace_of, services
from berth.api.images import _filters
from berth.errors import Forbidden, InvalidArgument
from berth.services import container_net


async def list_(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.networks.list, namespace_of(request), _filters(request)))


async def inspect(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.networks.describe, namespace_of(request), request.match_info["id"]))


def _ipam(ipam: dict) -> dict:
    """The create body's IPAM as the service's arguments: one IPv4 and one IPv6 config at most."""
    if (ipam.get("Driver") or "default") != "default":
        raise InvalidArgument(f"IPAM driver {ipam['Driver']!r} is not supported (only default)")
    configs = [c for c in ipam.get("Config") or [] if c]
    if not all(isinstance(c, dict) for c in configs):
        raise InvalidArgument("IPAM.Config must be a list of objects")
    v4 = [c for c in configs if ":" not in (c.get("Subnet") or c.get("Gateway") or "")]
    v6 = [c for c in configs if c not in v4]
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidArgument("only one IPv4 and one IPv6 subnet per network are supported")
    c, c6 = (v4 or [{}])[0], (v6 or [{}])[0]
    aux: dict = {}
    for x in configs:
        aux.update(x.get("AuxiliaryAddresses") or x.get("AuxAddress") or {})
    return dict(subnet=c.get("Subnet"), gateway=c.get("Gateway"), ip_range=c.get("IPRange"),
                ipam_options=ipam.get("Options"), subnet6=c6.get("Subnet"), gateway6=c6.get("Gateway"),
                ip_range6=c6.get("IPRange"), aux=aux)


async def create(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    name = member(body, "Name", str, required="network name is required")
    ns = namespace_of(request)
    ipam = member(body, "IPAM", dict) or {}
    if body.get("ConfigOnly"):
        if body.get("Ingress") or body.get("Internal") or body.get("Attachable") or body.get("Scope"):
            raise Forbidden("configuration network can only contain network specific fields. Network operator "
                            "fields like [ ingress | internal | attachable | scope ] are not supported.")  # dockerd's
        _ipam(ipam)  # (its checks)
        n = await s.run(s.networks.create_config_only, ns, name, ipam, options=member(body, "Options", dict),
                        labels=member(body, "Labels", dict), ipv6=bool(body.get("EnableIPv6")))
        return json_response({"Id": n.id, "Warning": ""}, status=201)
    source = (member(body, "ConfigFrom", dict) or {}).get("Network") or ""
    config: dict = {}
    if source:  # a network of a configuration-only network's IPAM, driver options and IPv6 (libnetwork's)
        if (body.get("EnableIPv6") or ipam.get("Config") or ipam.get("Options") or body.get("Labels")
                or (ipam.get("Driver") or "default") != "default"):
            raise Forbidden("user specified configurations are not supported if the network depends on a "
                            "configuration network")
        if body.get("Options"):
            raise Forbidden("network driver options are not supported if the network depends on a configuration "
                            "network")
        src = await s.run(s.networks.config_network, ns, source)
        ipam = src.data.get("ipam") or {}
        config = dict(options=src.data.get("options") or {}, ipv6=bool(src.data.get("ipv6")), config_from=src.name)
    else:
        config = dict(options=member(body, "Options", dict), ipv6=bool(body.get("EnableIPv6")))
    n = await s.run(s.networks.create, ns, name, driver=member(body, "Driver", str) or "bridge",
                    internal=bool(body.get("Internal")), labels=member(body, "Labels", dict),
                    attachable=bool(body.get("Attachable")), scope=member(body, "Scope", str) or "",
                    ingress=bool(body.get("Ingress")), **config, **_ipam(ipam))
    return json_response({"Id": n.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    s = services(request)
    await s.run(s.networks.remove, namespace_of(request), request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.networks.prune, namespace_of(request), _filters(request)))


async def connect(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    if not body.get("Container"):
        raise InvalidArgument("no container given (Container)")
    await s.run(container_net.connect, s.containers, namespace_of(request), body["Container"],
                request.match_info["id"], body.get("EndpointConfig") or {})
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    if not body.get("Container"):
        raise InvalidArgument("no container given (Container)")
    await s.run(container_net.disconnect, s.containers, namespace_of(request), body["Container"],
                request.match_info["id"], bool(body.get("Force")))
    return web.Response(status=200)


def routes(r: Router) -> None:
    r.add("GET", "/networks", list_)
    r.add("POST", "/networks/create", create)
    r.add("POST", "/networks/prune", prune)
    r.add("GET", "/networks/{id}", inspect)
    r.add("DELETE", "/networks/{id}", remove)
    r.add("POST", "/networks/{id}/connect", connect)
    r.add("POST", "/networks/{id}/disconnect", disconnect)
