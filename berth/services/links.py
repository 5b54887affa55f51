"""docker's legacy links (--link name:alias) of a container on the default bridge: at create the
linked containers must exist; at start each linked (running) container gets an /etc/hosts entry
and docker's environment variables (ALIAS_NAME, ALIAS_PORT_80_TCP..., ALIAS_ENV_...); DELETE
/containers/{parent}/{alias}?link=1 removes one. On a user-defined network a link is the
endpoint's (a DNS alias for this container alone, EndpointSettings.Links): none of this, as
dockerd (its registerLinks skips them)."""

from __future__ import annotations

from berth.errors import BerthError, FailedPrecondition, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterable
    from typing import Any

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService


def _split(link: str) -> tuple[str, str]:
    """"name:alias", "name", or the stored "/name:/parent/alias" -> (name, alias)."""
    name, _, alias = link.partition(":")
    name = name.lstrip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else name
    return name, alias


def legacy(hc: dict[str, Any]) -> bool:
    """Whether a container's links are legacy ones: on the default bridge."""
    return (hc.get("NetworkMode") or "default") in ("default", "bridge")


def check(svc: ContainerService, ns: str, hc: dict[str, Any]) -> list[str]:
    """The links of a create body, normalised as docker stores them ("/name:/parent/alias" is
    written at start, when the parent's name is known: here "name:alias")."""
    out = []
    for link in hc.get("Links") or []:
        if not isinstance(link, str) or not link:
            raise InvalidArgument(f"invalid link {link!r}")
        name, alias = _split(link)
        try:
            svc.get(ns, name)
        except NotFound:
            raise InvalidArgument(f"could not get container for {name}: No such container: {name}") from None
        out.append(f"{name}:{alias}")
    return out


def inspect_links(rec: Container, hc: dict[str, Any]) -> list[str] | None:
    """HostConfig.Links as docker shows them: ["/db:/web/db"]."""
    links = hc.get("Links")
    if not links or not legacy(hc):
        return None
    return [f"/{n}:/{rec.name}/{a}" for n, a in (_split(link) for link in links)]


def resolve(svc: ContainerService, ns: str, rec: Container,
            body: dict[str, Any]) -> list[tuple[str, Container, str, dict[str, Any], list[str]]]:
    """[(alias, child record, ip, exposed ports, child env)] of a container's links, at start."""
    out = []
    for link in (body.get("HostConfig") or {}).get("Links") or []:
        name, alias = _split(link)
        try:
            child = svc.get(ns, name)
        except NotFound:
            raise FailedPrecondition(f"Cannot link to /{name}, as it does not belong to the default network") from None
        if not svc.state(child)["Running"]:
            raise FailedPrecondition(f"Cannot link to a non running container: /{child.name} AS /{rec.name}/{alias}")
        net = (child.extensions or {}).get("net") or {}
        eps: dict[str, dict[str, Any]] = net.get("networks") or {}
        ip = (eps.get("bridge") or next(iter(eps.values()), {}) or {}).get("IPAddress", "")
        cbody = child.spec_json() or {}
        try:
            icfg = svc.images.read_json(child.image, 20 << 20, "image config").get("config") or {}
        except BerthError:
            icfg = {}
        exposed = dict(icfg.get("ExposedPorts") or {})
        exposed.update(cbody.get("ExposedPorts") or {})
        for p in ((cbody.get("HostConfig") or {}).get("PortBindings") or {}):
            exposed.setdefault(p, {})
        from berth.services.ocispec import config_env
        env = config_env(cbody.get("Env"), icfg.get("Env"))
        out.append((alias, child, ip, exposed, env))
    return out


def _port_key(p: str) -> tuple[int, str]:
    port, _, proto = p.partition("/")
    return int(port) if port.isdigit() else 0, proto or "tcp"


def env_of(parent_name: str, alias: str, child: Container, ip: str, exposed: Iterable[str],
           child_env: Iterable[str]) -> list[str]:
    """docker's link variables (links.Link.ToEnv)."""
    a = alias.upper().replace("-", "_")
    out = [f"{a}_NAME=/{parent_name}/{alias}"]
    ports = sorted((_port_key(p) for p in exposed), key=lambda x: (x[0], x[1]))
    if ports:
        port, proto = ports[0]
        out.append(f"{a}_PORT={proto}://{ip}:{port}")
    for port, proto in ports:
        pre = f"{a}_PORT_{port}_{proto.upper()}"
        out += [f"{pre}={proto}://{ip}:{port}", f"{pre}_ADDR={ip}", f"{pre}_PORT={port}", f"{pre}_PROTO={proto}"]
    for e in child_env:
        k, eq, v = e.partition("=")
        if eq and k not in ("HOME", "PATH"):
            out.append(f"{a}_ENV_{k}={v}")
    return out


def apply(svc: ContainerService, ns: str, rec: Container, body: dict[str, Any], files_dir: str) -> dict[str, Any]:
    """At start, after the network is up: the hosts entries and the env of the links. Returns
    the body to build the spec from (with _LinkEnv)."""
    if not legacy(body.get("HostConfig") or {}):
        return body
    links = resolve(svc, ns, rec, body)
    if not links:
        return body
    import os
    env, lines = [], []
    for alias, child, ip, exposed, cenv in links:
        env += env_of(rec.name, alias, child, ip, exposed, cenv)
        hostname = (child.spec_json() or {}).get("Hostname") or child.id[:12]
        names = f"{alias} {hostname}" + (f" {child.name}" if alias != child.name else "")
        if ip:
            lines.append(f"{ip}\t{names}")
    if lines:
        path = os.path.join(files_dir, "hosts")
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")
    return dict(body, _LinkEnv=env)


def remove(svc: ContainerService, ns: str, parent_ref: str, alias: str) -> None:
    """DELETE /containers/{parent}/{alias}?link=1."""
    try:
        parent = svc.get(ns, parent_ref)
    except NotFound:
        raise NotFound(f"No such container: {parent_ref}/{alias}") from None
    body = parent.spec_json() or {}
    hc = dict(body.get("HostConfig") or {})
    links = hc.get("Links") or []
    keep = [link for link in links if _split(link)[1] != alias]
    if len(keep) == len(links):
        raise NotFound(f"No such container: {parent_ref}/{alias}")
    hc["Links"] = keep or None
    svc.meta.update_container(ns, parent.id, spec=dict(body, HostConfig=hc))
