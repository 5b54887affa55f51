"""Docker Engine API: /networks (list, inspect, create, remove, prune, connect, disconnect)."""

from aiohttp import web

from berth.api.app import json_response, namespace_of
from berth.api.images import _filters
from berth.errors import BerthError, InvalidArgument


def _values(f, key):
    v = f.get(key)
    if v is None:
        return []
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    if isinstance(v, str):
        return [v]
    return list(v)


async def _body(request):
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def _containers_of(d, ns, n):
    """network inspect's Containers: the running containers attached to n."""
    out = {}
    for rec in d.meta.list_containers(ns):
        net = (rec.extensions or {}).get("net") or {}
        ep = (net.get("networks") or {}).get(n.name)
        if ep and ep.get("NetworkID") == n.id and d.containers.state(rec)["Running"]:
            out[rec.id] = {"Name": rec.name, "EndpointID": ep.get("EndpointID", ""),
                           "MacAddress": ep.get("MacAddress", ""),
                           "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep.get("IPAddress") else "",
                           "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                           if ep.get("GlobalIPv6Address") else ""}
    return out


def _match(f, n, users):
    for key, test in (("name", lambda v: v in n.name), ("id", lambda v: n.id.startswith(v)),
                      ("driver", lambda v: v == n.driver or (v == "null" and n.name == "none"))):
        vals = _values(f, key)
        if vals and not any(test(v) for v in vals):
            return False
    for t in _values(f, "type"):
        if t not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{t}'")
        if (t == "custom") != n.user_defined:
            return False
    for lab in _values(f, "label"):
        k, sep, v = lab.partition("=")
        if k not in n.labels or (sep and n.labels[k] != v):
            return False
    for dg in _values(f, "dangling"):
        want = dg in ("1", "true", "True")
        if want != (n.user_defined and not users):
            return False
    return True


def _list(d, ns, f):
    from berth.services import container_net
    out = []
    for n in d.networks.all(ns):
        users = container_net.users(d.containers, ns, n) if n.user_defined else []
        if _match(f, n, users):
            out.append(d.networks.inspect(n, _containers_of(d, ns, n)))
    return out


async def list_(request):
    d = request.app["daemon"]
    return json_response(await d.run(_list, d, namespace_of(request), _filters(request)))


def _inspect(d, ns, ref):
    n = d.networks.get(ns, ref)
    return d.networks.inspect(n, _containers_of(d, ns, n))


async def inspect(request):
    d = request.app["daemon"]
    return json_response(await d.run(_inspect, d, namespace_of(request), request.match_info["id"]))


async def create(request):
    d = request.app["daemon"]
    ns = namespace_of(request)
    body = await _body(request)
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required")
    ipam = body.get("IPAM") or {}
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
    aux = {}
    for x in configs:
        aux.update(x.get("AuxiliaryAddresses") or x.get("AuxAddress") or {})
    n = await d.run(d.networks.create, ns, name, driver=body.get("Driver") or "bridge", subnet=c.get("Subnet"),
                    gateway=c.get("Gateway"), ip_range=c.get("IPRange"), internal=bool(body.get("Internal")),
                    options=body.get("Options") or {}, labels=body.get("Labels") or {},
                    ipam_options=ipam.get("Options") or {}, attachable=bool(body.get("Attachable")),
                    ipv6=bool(body.get("EnableIPv6")), subnet6=c6.get("Subnet"), gateway6=c6.get("Gateway"),
                    ip_range6=c6.get("IPRange"), aux=aux)
    return json_response({"Id": n.id, "Warning": ""}, status=201)


def _remove(d, ns, ref):
    from berth.services import container_net
    return d.networks.remove(ns, ref, lambda n: container_net.users(d.containers, ns, n))


async def remove(request):
    d = request.app["daemon"]
    ns = namespace_of(request)
    await d.run(_remove, d, ns, request.match_info["id"])
    return web.Response(status=204)


def _prune(d, ns, f):
    from berth.services import container_net
    gone = []
    for n in d.networks.all(ns):
        if n.builtin:
            continue
        if not _match({k: v for k, v in f.items() if k == "label"}, n, []):
            continue
        until = _values(f, "until")
        if until and not (n.created and n.created < _until(until[0])):
            continue
        if container_net.users(d.containers, ns, n):
            continue
        try:
            d.networks.remove(ns, n.id, lambda n: container_net.users(d.containers, ns, n))
            gone.append(n.name)
        except BerthError:
            pass
    return {"NetworksDeleted": gone}


def _until(v):
    import time
    try:
        t = float(v)
    except ValueError:
        return v
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


async def prune(request):
    d = request.app["daemon"]
    return json_response(await d.run(_prune, d, namespace_of(request), _filters(request)))


async def connect(request):
    from berth.services import container_net
    d = request.app["daemon"]
    ns = namespace_of(request)
    body = await _body(request)
    if not body.get("Container"):
        raise InvalidArgument("no container given (Container)")
    await d.run(container_net.connect, d.containers, ns, body["Container"], request.match_info["id"],
                body.get("EndpointConfig") or {})
    return web.Response(status=200)


async def disconnect(request):
    from berth.services import container_net
    d = request.app["daemon"]
    ns = namespace_of(request)
    body = await _body(request)
    if not body.get("Container"):
        raise InvalidArgument("no container given (Container)")
    rec = await d.run(d.containers.get, ns, body["Container"])
    await d.run(container_net.disconnect, d.containers, ns, rec.id, request.match_info["id"],
                bool(body.get("Force")))
    return web.Response(status=200)


def routes(r):
    r.add("GET", "/networks", list_)
    r.add("POST", "/networks/create", create)
    r.add("POST", "/networks/prune", prune)
    r.add("GET", "/networks/{id}", inspect)
    r.add("DELETE", "/networks/{id}", remove)
    r.add("POST", "/networks/{id}/connect", connect)
    r.add("POST", "/networks/{id}/disconnect", disconnect)
