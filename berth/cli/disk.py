"""berth system df and berth system prune, as docker's CLI prints them."""

import json
import sys

from berth.cli.args import parse_filters, parser
from berth.units import human_size


def _hs(n):
    """go-units HumanSize: 4 significant digits, decimal units."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.4g}{unit}"
        n /= 1000.0


def _pct(reclaimable, total):
    if total > 0:
        return f"{_hs(reclaimable)} ({reclaimable * 100 // total}%)"
    return _hs(reclaimable)


DF_HEADER = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}


def df(ctx, argv, cmd):
    p = parser(cmd, "show docker disk usage")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    p.add_argument("--format", help="Format output using a custom template ('json': a JSON line per type; with -v, the API's object)")
    a = p.parse_args(argv)
    du = ctx.client.call("GET", "/system/df")
    if a.format == "json" and a.verbose:
        print(json.dumps(du))
        return 0
    images = du.get("Images") or []
    containers = du.get("Containers") or []
    volumes = du.get("Volumes") or []
    cache = du.get("BuildCache") or []
    cache_size = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    layers = du.get("LayersSize") or 0
    used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
               if i.get("Containers") and i.get("SharedSize", 0) != -1)
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_active = [c for c in containers if c.get("State") in ("running", "paused")]
    c_recl = sum(c.get("SizeRw") or 0 for c in containers if c not in c_active)
    v_sizes = [(v.get("UsageData") or {}) for v in volumes]
    v_size = sum(u.get("Size", 0) for u in v_sizes if u.get("Size", -1) >= 0)
    v_active = sum(1 for u in v_sizes if u.get("RefCount", 0) > 0)
    v_recl = sum(u.get("Size", 0) for u in v_sizes if u.get("RefCount", 0) == 0 and u.get("Size", -1) >= 0)
    from berth.cli.format import table
    if not a.verbose:
        rows = [["Images", str(len(images)), str(sum(1 for i in images if i.get("Containers"))), _hs(layers),
                 _pct(layers - used, layers)],
                ["Containers", str(len(containers)), str(len(c_active)), _hs(c_size), _pct(c_recl, c_size)],
                ["Local Volumes", str(len(volumes)), str(v_active), _hs(v_size), _pct(v_recl, v_size)],
                ["Build Cache", str(len(cache)), str(sum(1 for b in cache if b.get("InUse"))), _hs(cache_size),
                 _hs(cache_size - sum(b.get("Size", 0) for b in cache if b.get("InUse") and not b.get("Shared")))]]
        if a.format and a.format != "table":  # docker's diskUsageContext: a row per type
            from berth.cli.format import print_formatted
            print_formatted(a.format, [dict(zip(DF_HEADER, r)) for r in rows], DF_HEADER, "*formatter.diskUsageImagesContext")
            return 0
        print(table([list(DF_HEADER.values())] + rows))
        return 0
    from berth.cli.format import ago
    print("Images space usage:\n")
    rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"]]
    for i in images:  # an image's first tag alone, as docker's CLI shows it
        repo, _, tag = ((i.get("RepoTags") or ["<none>:<none>"])[0]).rpartition(":")
        if "/" in tag:  # a name without a tag (no "<repo>:<tag>" to split)
            repo, tag = "<none>", "<none>"
        shared = i.get("SharedSize", 0)
        rows.append([repo, tag, i["Id"].split(":")[-1][:12], ago(i.get("Created")), human_size(i.get("Size", 0)),
                     "N/A" if shared == -1 else _hs(shared),
                     "N/A" if shared == -1 else _hs(i.get("Size", 0) - shared),
                     "N/A" if i.get("Containers", 0) == -1 else str(i.get("Containers", 0))])
    print(table(rows))
    print("\nContainers space usage:\n")
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"]]
    for c in containers:
        cmdline = c.get("Command") or ""
        if len(cmdline) > 20:
            cmdline = cmdline[:19] + "…"
        vols = sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")
        rows.append([c["Id"][:12], c.get("Image", ""), f'"{cmdline}"', str(vols), human_size(c.get("SizeRw") or 0),
                     ago(c.get("Created")), c.get("Status", ""), ",".join(n.lstrip("/") for n in c.get("Names") or [])])
    print(table(rows))
    print("\nLocal Volumes space usage:\n")
    rows = [["VOLUME NAME", "LINKS", "SIZE"]]
    for v in volumes:
        u = v.get("UsageData") or {}
        rows.append([v["Name"], str(u.get("RefCount", 0)) if u else "N/A", _hs(u.get("Size", 0)) if u else "N/A"])
    print(table(rows))
    print(f"\nBuild cache usage: {_hs(cache_size)}\n")
    rows = [["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"]]
    # docker's CLI order: never used first, then by last use, ties by id
    for b in sorted(cache, key=lambda b: (bool(b.get("LastUsedAt")), _epoch(b.get("LastUsedAt")), b.get("ID", ""))):
        rows.append([b.get("ID", "")[:12] + ("*" if b.get("InUse") else ""), b.get("Type", ""),
                     human_size(b.get("Size", 0)), ago(_epoch(b.get("CreatedAt"))),
                     ago(_epoch(b["LastUsedAt"])) if b.get("LastUsedAt") else "", str(b.get("UsageCount", 0)),
                     "true" if b.get("Shared") else "false"])
    print(table(rows))
    return 0


def _epoch(s):
    """The Unix time of an RFC 3339 timestamp (the API's CreatedAt), 0 if it is none."""
    import calendar
    import time
    try:
        return calendar.timegm(time.strptime((s or "")[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0


def prune(ctx, argv, cmd):
    p = parser(cmd, "remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'label=<key>=<value>')")
    a = p.parse_args(argv)
    filters = parse_filters(cmd, a.filter)
    if not a.force:
        warn = ["  - all stopped containers", "  - all networks not used by at least one container"]
        if a.volumes:
            warn.append("  - all anonymous volumes not used by at least one container")
        warn.append("  - all images without at least one container associated to them" if a.all
                    else "  - all dangling images")
        warn.append("  - all build cache" if a.all else "  - unused build cache")
        sys.stdout.write("WARNING! This will remove:\n" + "\n".join(warn) + "\n\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    q = {"filters": json.dumps(filters)} if filters else None
    reclaimed = 0
    res = ctx.client.call("POST", "/containers/prune", params=q) or {}
    reclaimed += res.get("SpaceReclaimed") or 0
    if res.get("ContainersDeleted"):
        print("Deleted Containers:\n" + "".join(i + "\n" for i in res["ContainersDeleted"]))
    res = ctx.client.call("POST", "/networks/prune", params=q) or {}
    if res.get("NetworksDeleted"):
        print("Deleted Networks:\n" + "".join(i + "\n" for i in res["NetworksDeleted"]))
    if a.volumes:
        res = ctx.client.call("POST", "/volumes/prune", params=q) or {}
        reclaimed += res.get("SpaceReclaimed") or 0
        if res.get("VolumesDeleted"):
            print("Deleted Volumes:\n" + "".join(i + "\n" for i in res["VolumesDeleted"]))
    f = dict(filters)
    f["dangling"] = ["false" if a.all else "true"]
    res = ctx.client.call("POST", "/images/prune", params={"filters": json.dumps(f)}) or {}
    reclaimed += res.get("SpaceReclaimed") or 0
    deleted = res.get("ImagesDeleted") or []
    if deleted:
        lines = [f"untagged: {d['Untagged']}" if d.get("Untagged") else f"deleted: {d['Deleted']}" for d in deleted]
        print("Deleted Images:\n" + "".join(line + "\n" for line in lines))
    print(f"Total reclaimed space: {_hs(reclaimed)}")
    return 0
