"""volume create | ls | inspect | rm | prune (docker's)."""

import json
import sys

from berth.cli.args import for_each, parse_filters, parser
from berth.errors import BerthError


def _kv(cmd, values, what):
    out = {}
    for x in values:
        k, eq, v = x.partition("=")
        if not k:
            raise BerthError(f"{cmd}: invalid {what} {x!r} (expected key=value)")
        out[k] = v
    return out


def create(ctx, argv, cmd):
    p = parser(cmd, "create a volume")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--name", dest="name_flag")
    for flag in ("--availability", "--group", "--limit-bytes", "--required-bytes", "--scope", "--secret",
                 "--sharing", "--topology-preferred", "--topology-required", "--type"):
        p.add_argument(flag, action="append", default=[], help="Cluster Volumes only (refused: no swarm)")
    p.add_argument("name", nargs="?")
    a = p.parse_args(argv)
    for flag in ("availability", "group", "limit_bytes", "required_bytes", "scope", "secret", "sharing",
                 "topology_preferred", "topology_required", "type"):
        if getattr(a, flag):
            raise BerthError(f"--{flag.replace('_', '-')}: cluster volumes need a swarm, and this node is not "
                             "part of a swarm")
    if a.name and a.name_flag and a.name != a.name_flag:
        raise BerthError(f"{cmd}: conflicting options: either specify --name or provide positional arg, not both")
    a.name = a.name or a.name_flag
    opts = {}
    for o in a.opt:
        k, eq, v = o.partition("=")
        if not eq or not k:
            raise BerthError(f"{cmd}: invalid option {o!r} (expected key=value)")
        opts[k] = v
    v = ctx.client.volume_create(a.name, a.driver, opts, _kv(cmd, a.label, "label"))
    print(v["Name"])
    return 0


def _row(v):
    return {"Name": v["Name"], "Driver": v.get("Driver", ""), "Scope": v.get("Scope", "local"),
            "Mountpoint": v.get("Mountpoint", ""), "CreatedAt": v.get("CreatedAt", ""),
            "Labels": ",".join(f"{k}={x}" for k, x in (v.get("Labels") or {}).items()), "Links": "N/A",
            "Size": "N/A"}


def ls(ctx, argv, cmd):
    p = parser(cmd, "list volumes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--cluster", action="store_true", help="Display only cluster volumes (refused: no swarm)")
    a = p.parse_args(argv)
    if a.cluster:
        raise BerthError("--cluster: cluster volumes need a swarm, and this node is not part of a swarm")
    res = ctx.client.volumes(filters=parse_filters(cmd, a.filter) or None)
    vols = sorted(res.get("Volumes") or [], key=lambda v: v["Name"])
    for w in res.get("Warnings") or []:
        print(w, file=sys.stderr)
    if a.quiet and not a.format:
        for v in vols:
            print(v["Name"])
        return 0
    rows = [_row(v) for v in vols]
    if a.format:
        from berth.cli.format import VOLUMES_HEADER, labelled, print_formatted
        print_formatted(a.format, [labelled("*formatter.volumeContext", r, v, VOLUMES_HEADER) for r, v in
                                   zip(rows, vols)], VOLUMES_HEADER, default_table="table {{.Driver}}\t{{.Name}}",
                        quiet=a.quiet, raw="name: {{.Name}}\ndriver: {{.Driver}}\n", quiet_key="Name")
        return 0
    from berth.cli.format import table
    print(table([["DRIVER", "VOLUME NAME"]] + [[r["Driver"], r["Name"]] for r in rows]))
    return 0


def inspect(ctx, argv, cmd):
    p = parser(cmd, "show volumes")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    results, failed = [], 0
    for n in a.names:
        try:
            results.append(ctx.client.volume_inspect(n))
        except BerthError as e:
            print(f"berth: {e.message}", file=sys.stderr)
            failed = 1
    if a.format:
        from berth.cli.format import print_inspect
        print_inspect(a.format, results, raw_fallback=False)
    else:  # "[]" too when none was found, as docker
        print(json.dumps(results, indent=4))
    return 1 if failed else 0


def rm(ctx, argv, cmd):
    p = parser(cmd, "remove volumes (refused while a container uses them)")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return for_each(a.names, lambda n: ctx.client.volume_remove(n, force=a.force))


def prune(ctx, argv, cmd):
    p = parser(cmd, "remove unused volumes (anonymous ones only, unless -a)")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    a = p.parse_args(argv)
    if not a.force:
        what = "all local volumes" if a.all else "anonymous local volumes"
        from berth.cli.args import confirm
        if not confirm(f"WARNING! This will remove {what} not used by at least one container.\n"
                       "Are you sure you want to continue?"):
            return 0
    filters = parse_filters(cmd, a.filter)
    if a.all:
        filters["all"] = ["true"]
    res = ctx.client.volumes_prune(filters or None)
    deleted = res.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for n in deleted:
            print(n)
        print()
    from berth.units import human_size
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")
    return 0
