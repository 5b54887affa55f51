"""run/create's networking flags: --network, -p/-P, --ip, --mac-address, --network-alias,
--dns*, --add-host -> the Docker API's create body."""

from berth.errors import BerthError


def add_flags(p):
    p.add_argument("--network", "--net", action="append", default=[])
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("--mac-address")
    p.add_argument("--network-alias", "--net-alias", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", "--dns-opt", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[])


def _range(s, what, spec):
    lo, sep, hi = s.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise BerthError(f"invalid {what} in {spec!r}: {s!r} is not a port or a range of ports") from None
    if not (0 < a <= b < 65536):
        raise BerthError(f"invalid {what} in {spec!r}: {s!r} out of range 1-65535")
    return a, b


def parse_publish(specs):
    """docker's -p: [ip:][hostPort:]containerPort[/proto] with ranges -> (ExposedPorts, PortBindings)."""
    exposed, bindings = {}, {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise BerthError(f"invalid proto in {spec!r}: {proto}")
        ip = ""
        if rest.startswith("["):
            end = rest.find("]")
            ip, rest = rest[1:end], rest[end + 2:]
        parts = rest.split(":")
        if len(parts) == 3:
            ip, host, cport = parts
        elif len(parts) == 2:
            host, cport = parts
        elif len(parts) == 1:
            host, cport = "", parts[0]
        else:
            raise BerthError(f"invalid port specification: {spec!r}")
        if not cport:
            raise BerthError(f"no port specified: {spec!r}")
        c0, c1 = _range(cport, "containerPort", spec)
        if host:
            h0, h1 = _range(host, "hostPort", spec)
            if h1 - h0 != c1 - c0 and not (c0 == c1):
                raise BerthError(f"invalid ranges specified for container and host Ports: {spec!r}")
        for i, c in enumerate(range(c0, c1 + 1)):
            key = f"{c}/{proto}"
            exposed[key] = {}
            if not host:
                hp = ""
            elif c0 == c1 and h1 > h0:
                hp = f"{h0}-{h1}"
            else:
                hp = str(h0 + i)
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def apply(a, body):
    hc = body.setdefault("HostConfig", {})
    nets = a.network or ["default"]
    hc["NetworkMode"] = nets[0]
    exposed, bindings = parse_publish(a.publish)
    for e in a.expose:
        port, _, proto = e.partition("/")
        lo, hi = _range(port, "port", e)
        for c in range(lo, hi + 1):
            exposed[f"{c}/{proto or 'tcp'}"] = {}
    if exposed:
        body["ExposedPorts"] = exposed
    if bindings:
        hc["PortBindings"] = bindings
    if a.publish_all:
        hc["PublishAllPorts"] = True
    if a.add_host:  # checked here as the docker CLI does, before anything is sent
        from berth.opts import parse_extra_host
        for h in a.add_host:
            try:
                parse_extra_host(h)
            except BerthError as e:
                raise BerthError(f'invalid argument "{h}" for "--add-host" flag: {e.message}') from None
    for k, v in (("Dns", a.dns), ("DnsSearch", a.dns_search), ("DnsOptions", a.dns_option),
                 ("ExtraHosts", a.add_host)):
        if v:
            hc[k] = list(v)
    if a.mac_address:
        body["MacAddress"] = a.mac_address
    eps = {}
    for i, n in enumerate(nets):
        ep = {}
        if i == 0:
            if a.ip or a.ip6:
                ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", a.ip), ("IPv6Address", a.ip6)) if v}
            if a.network_alias:
                ep["Aliases"] = list(a.network_alias)
            if a.mac_address:
                ep["MacAddress"] = a.mac_address
        eps[n] = ep
    if len(nets) > 1 or any(eps.values()):
        body["NetworkingConfig"] = {"EndpointsConfig": eps}
    return body
