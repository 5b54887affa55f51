"""network create | ls | inspect | rm | prune | connect | disconnect."""

import json
import sys

from berth.cli.args import for_each, parse_filters, parser
from berth.errors import BerthError


def _kv(items, what):
    out = {}
    for x in items:
        k, sep, v = x.partition("=")
        if not k:
            raise BerthError(f"invalid {what} {x!r}: expected key=value")
        out[k] = v
    return out


def create(ctx, argv, cmd):
    p = parser(cmd, "create a network")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--ipam-opt", action="append", default=[])
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--aux-address", action="append", default=[])
    p.add_argument("name")
    a = p.parse_args(argv)
    configs = _ipam_configs(a.subnet, a.gateway, a.ip_range, _kv(a.aux_address, "aux-address"))
    body = {"Name": a.name, "Driver": a.driver, "Internal": a.internal, "Attachable": a.attachable,
            "EnableIPv6": a.ipv6, "Options": _kv(a.opt, "option"), "Labels": _kv(a.label, "label"),
            "IPAM": {"Driver": a.ipam_driver, "Config": configs, "Options": _kv(a.ipam_opt, "IPAM option")},
            "CheckDuplicate": True}
    print(ctx.client.network_create(body)["Id"])
    return 0


def _ipam_configs(subnets, gateways, ranges, aux):
    """docker's pairing: each --gateway, --ip-range and --aux-address goes with the --subnet
    that contains it."""
    import ipaddress
    nets = []
    for s in subnets:
        try:
            nets.append((ipaddress.ip_network(s, strict=False), {"Subnet": s}))
        except ValueError:
            if gateways or ranges or aux:  # docker's CLI parses a subnet only to pair them
                raise BerthError(f"invalid subnet: invalid CIDR address: {s}") from None
            nets.append((None, {"Subnet": s}))  # the daemon's error, in its words
    if (gateways or ranges or aux) and not nets:
        raise BerthError("every --gateway, --ip-range and --aux-address needs a --subnet")

    def home(value, what):
        try:
            x = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise BerthError(f"invalid {what} {value!r}") from None
        for net, c in nets:
            if net is not None and x.version == net.version and x.subnet_of(net):
                return c
        raise BerthError(f"no matching subnet for {what} {value}")
    for g in gateways:
        c = home(g, "gateway")
        if "Gateway" in c:
            raise BerthError(f"cannot configure multiple gateways ({c['Gateway']}, {g}) for the same subnet")
        c["Gateway"] = g
    for r in ranges:
        c = home(r, "range")
        if "IPRange" in c:
            raise BerthError(f"cannot configure multiple ranges ({c['IPRange']}, {r}) on the same subnet")
        c["IPRange"] = r
    for k, v in aux.items():
        home(v, "aux-address").setdefault("AuxiliaryAddresses", {})[k] = v
    return [c for _, c in nets]


def ls(ctx, argv, cmd):
    p = parser(cmd, "list networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    a = p.parse_args(argv)
    nets = ctx.client.networks(parse_filters(cmd, a.filter) or None)
    nets.sort(key=lambda n: n["Name"])
    from berth.cli.format import join_labels
    rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
             "Scope": n.get("Scope", "local"), "Internal": str(n.get("Internal", False)).lower(),
             "Labels": join_labels(n.get("Labels")),
             "CreatedAt": n.get("Created", "")} for n in nets]
    if a.quiet and not a.format:
        for r in rows:
            print(r["ID"])
        return 0
    if a.format:
        from berth.cli.format import NETWORKS_HEADER, labelled, network_row, print_formatted
        print_formatted(a.format, [labelled("*network.networkContext", network_row(r, n), n, NETWORKS_HEADER)
                                   for r, n in zip(rows, nets)], NETWORKS_HEADER,
                        default_table="table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", quiet=a.quiet,
                        raw="network_id: {{.ID}}\nname: {{.Name}}\ndriver: {{.Driver}}\nscope: {{.Scope}}\n")
        return 0
    from berth.cli.format import table
    print(table([["NETWORK ID", "NAME", "DRIVER", "SCOPE"]] +
                [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]))
    return 0


def inspect(ctx, argv, cmd):
    p = parser(cmd, "show networks' details")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    found, rc = [], 0
    for n in a.names:
        try:
            found.append(ctx.client.network_inspect(n))
        except BerthError as e:
            print(f"berth: {e.message}", file=sys.stderr)
            rc = 1
    if a.format:
        from berth.cli.format import print_inspect
        print_inspect(a.format, found)
    else:
        print(json.dumps(found, indent=4))
    return rc


def rm(ctx, argv, cmd):
    p = parser(cmd, "remove networks")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)

    def one(n):
        try:
            ctx.client.network_remove(n)
        except BerthError as e:
            if a.force and "not found" in e.message:
                return  # docker's -f: nothing said of a network that is not there
            raise
        print(n)
    return for_each(a.names, one, echo=False)


def prune(ctx, argv, cmd):
    p = parser(cmd, "remove all unused user-defined networks")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    a = p.parse_args(argv)
    if not a.force:
        sys.stdout.write("WARNING! This will remove all custom networks not used by at least one container.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = ctx.client.networks_prune(parse_filters(cmd, a.filter) or None)
    gone = res.get("NetworksDeleted") or []
    if gone:
        print("Deleted Networks:")
        for n in gone:
            print(n)
    return 0


def connect(ctx, argv, cmd):
    p = parser(cmd, "connect a container to a network")
    p.add_argument("--ip", help="IPv4 address (e.g. 172.30.100.104)")
    p.add_argument("--ip6", help="IPv6 address (e.g. 2001:db8::33)")
    p.add_argument("--alias", action="append", default=[], help="add network-scoped alias for the container")
    p.add_argument("--link", action="append", default=[], help="add link to another container (name:alias)")
    p.add_argument("--driver-opt", action="append", default=[], help="driver options for the network (key=value)")
    p.add_argument("network")
    p.add_argument("container")
    a = p.parse_args(argv)
    ep = {}
    if a.ip or a.ip6:
        ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", a.ip), ("IPv6Address", a.ip6)) if v}
    if a.alias:
        ep["Aliases"] = a.alias
    if a.link:
        ep["Links"] = a.link
    if a.driver_opt:
        ep["DriverOpts"] = _kv(a.driver_opt, "driver option")
    ctx.client.network_connect(a.network, a.container, ep)
    return 0


def disconnect(ctx, argv, cmd):
    p = parser(cmd, "disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    a = p.parse_args(argv)
    ctx.client.network_disconnect(a.network, a.container, force=a.force)
    return 0
