"""Image commands: pull, push, images, rmi, tag, inspect, history, save, load, import, image prune."""

import sys

from berth.cli.args import parse_filters, parser
from berth.errors import BerthError


def _ref(s):
    from berth.oci import reference
    return reference.parse(s)


def _transfer_ref(name, all_tags, quiet):
    """The reference of a pull or push, as docker's CLI takes it: refused before any I/O when
    invalid; with -a a repository without tag (every tag), else the default tag when none is
    given (said unless quiet)."""
    from berth.oci import reference
    ref = reference.parse(name, default_tag=None)
    if all_tags and (ref.tag or ref.digest):
        raise BerthError("tag can't be used with --all-tags/-a")  # docker's words
    if not all_tags and not (ref.tag or ref.digest):
        ref = ref.with_tag(reference.DEFAULT_TAG)
        if not quiet:
            print(f"Using default tag: {ref.tag}", flush=True)
    return ref


def _registry_auth(ref):
    from berth.cli.auth import credentials_for
    return credentials_for(ref.domain)


def pull(ctx, argv, cmd):
    p = parser(cmd, "pull an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("--disable-content-trust", default="true")  # no content trust here: nothing to verify
    p.add_argument("name")
    a = p.parse_args(argv)
    ref = _transfer_ref(a.name, a.all_tags, a.quiet)
    from berth.cli.progress import show
    # -a: the repository without a tag, which the API pulls tag by tag
    resp = ctx.client.image_pull(str(ref), platform=a.platform, auth=_registry_auth(ref))
    show(resp, quiet=a.quiet)
    print(str(ref))  # as docker's: the full reference pulled (docker.io/library/busybox:latest)
    return 0


def push(ctx, argv, cmd):
    p = parser(cmd, "push an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("--disable-content-trust", default="true")  # no content trust here: nothing to sign
    p.add_argument("--platform")
    p.add_argument("name")
    a = p.parse_args(argv)
    if a.platform:
        raise BerthError("push --platform is not supported by berth: it pushes the image as stored")
    ref = _transfer_ref(a.name, a.all_tags, a.quiet)
    from berth.cli.progress import show
    # -a: the repository without a tag, whose every tag the API pushes
    resp = ctx.client.image_push(str(ref), auth=_registry_auth(ref))
    show(resp, quiet=a.quiet)
    if a.quiet:
        print(str(ref))
    return 0


def _split_tag(repo_tag):
    if repo_tag == "<none>:<none>":
        return "<none>", "<none>"
    name, _, tag = repo_tag.rpartition(":")
    if "/" in tag or not name:
        return repo_tag, "<none>"
    return name, tag


def ls(ctx, argv, cmd):
    p = parser(cmd, "list images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--tree", action="store_true")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    if a.tree:
        raise BerthError("--tree is not supported by berth (images are listed per platform in `berth image inspect`)")
    filters = parse_filters(cmd, a.filter)
    if a.reference:
        filters.setdefault("reference", []).append(a.reference)
    images = ctx.client.images(all_=a.all, filters=filters or None, digests=a.digests)
    rows, row_images = [], []
    for img in images:
        tags = img.get("RepoTags") or ["<none>:<none>"]
        digests = img.get("RepoDigests") or []
        for t in tags:
            repo, tag = _split_tag(t)
            digest = "<none>"
            for d in digests:
                if d.split("@")[0] == repo:
                    digest = d.split("@", 1)[1]
            iid = img["Id"] if a.no_trunc else img["Id"][7:19]
            rows.append({"Repository": repo, "Tag": tag, "Digest": digest, "ID": iid,
                         "CreatedSince": _ago(img.get("Created")), "CreatedAt": _when(img.get("Created")),
                         "Size": _hsize(img.get("Size", 0)), "VirtualSize": _hsize(img.get("Size", 0)),
                         "Containers": "N/A", "SharedSize": "N/A", "UniqueSize": "N/A"})
            row_images.append(img)
    if a.quiet and not a.format:
        for r in rows:
            print(r["ID"])
        return 0
    if a.format:
        from berth.cli.format import IMAGES_HEADER, IMAGES_RAW, IMAGES_TABLE, image_row, print_formatted
        print_formatted(a.format, [image_row(r, i, a.digests or "{{.Digest}}" in a.format)
                                         for r, i in zip(rows, row_images)], IMAGES_HEADER,
                        "*formatter.imageContext", IMAGES_TABLE[a.digests], quiet=a.quiet,
                        raw=IMAGES_RAW[a.digests or "{{.Digest}}" in a.format])
        return 0
    from berth.cli.format import table
    head = ["REPOSITORY", "TAG"] + (["DIGEST"] if a.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    body = [[r["Repository"], r["Tag"]] + ([r["Digest"]] if a.digests else []) +
            [r["ID"], r["CreatedSince"], r["Size"]] for r in rows]
    print(table([head] + body))
    return 0


def _ago(ts):
    from berth.cli.format import ago
    return ago(ts)


def _when(ts):
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts or 0))


def _hsize(n):
    from berth.cli.format import human_size
    return human_size(n)


def rm(ctx, argv, cmd):
    p = parser(cmd, "remove images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("--platform")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    if a.platform:
        raise BerthError("rmi --platform is not supported by berth: an image is removed with all its platforms")
    failed = 0
    for n in a.names:
        try:
            for item in ctx.client.image_remove(n, force=a.force, noprune=a.no_prune) or []:
                for k, v in item.items():
                    print(f"{k}: {v}")
        except BerthError as e:
            print(f"berth: {e.message}", file=sys.stderr)
            if not (a.force and getattr(e, "http_status", None) == 404):  # as docker: -f, not there: no failure
                failed = 1
    return 1 if failed else 0


def tag(ctx, argv, cmd):
    p = parser(cmd, "add a name to an image")
    p.add_argument("source")
    p.add_argument("target")
    a = p.parse_args(argv)
    from berth.oci import reference
    why = reference.why_not(a.target)
    if why is not None:  # the docker CLI's words, nothing sent
        raise BerthError(f'Error parsing reference: "{a.target}" is not a valid repository/tag: {why}')
    ref = _ref(a.target)
    if ref.digest:
        raise BerthError("refusing to create a tag with a digest reference")
    ctx.client.image_tag(a.source, ref.name, ref.tag)
    return 0


def inspect(ctx, argv, cmd):
    p = parser(cmd, "show details of images")
    p.add_argument("-f", "--format")
    p.add_argument("--type")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    if a.type and a.type not in ("container", "image", "network", "volume"):  # docker's check: status 1
        raise BerthError(f'unknown type: "{a.type}": must be one of "container", "image", "network", "volume"')
    import json
    # `image inspect` and `container inspect` look at one kind, and say what the daemon says of it
    typed = {"image inspect": "image", "container inspect": "container"}.get(cmd)
    results = []
    failed = 0
    for n in a.names:
        try:
            results.append(_inspect_one(ctx, n, typed or a.type, a.size))
        except BerthError as e:
            print(f"berth: {e.message}" if typed or "No such" in e.message else f"berth: Error: No such object: {n}",
                  file=sys.stderr)
            failed = 1
    if a.format:
        from berth.cli.format import print_inspect
        print_inspect(a.format, results)
    else:
        print(json.dumps(results, indent=4))
    return 1 if failed else 0


def _inspect_one(ctx, name, kind, size=False):
    """docker inspect: a container, else an image, else a network, else a volume (or --type's)."""
    from berth.errors import NotFound
    kinds = [kind] if kind else ["container", "image", "network", "volume"]
    for i, k in enumerate(kinds):
        get = getattr(ctx.client, {"container": "container_inspect", "image": "image_inspect",
                                   "network": "network_inspect", "volume": "volume_inspect"}[k], None)
        if get is None:
            continue
        try:
            if k == "container" and size:  # inspect -s: SizeRw, SizeRootFs
                return ctx.client.call("GET", f"/containers/{name}/json", params={"size": 1})
            return get(name)
        except NotFound:
            if i == len(kinds) - 1:
                raise
    raise NotFound(f"No such object: {name}")


def search(ctx, argv, cmd):
    p = parser(cmd, "search a registry's index (Docker Hub's unless the term names one) for images")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("term")
    a = p.parse_args(argv)
    filters = parse_filters(cmd, a.filter)
    if "is-automated" in filters:  # (the docker CLI's warning, before it asks)
        print('WARNING: the "is-automated" filter is deprecated, and searching for "is-automated=true" will not '
              'yield any results in future.', file=sys.stderr)
    # the index the term names (a host in its first component), else Docker Hub's: its credentials
    # (the client's own reading of dockerd's rule: the CLI imports no server code)
    first, sep, _rest = a.term.partition("/")
    index = first if sep and ("." in first or ":" in first or first == "localhost") else "docker.io"
    from berth.cli.auth import credentials_for
    rows = ctx.client.image_search(a.term, a.limit or None, filters, auth=credentials_for(index))
    out = []
    for r in rows:
        desc = (r.get("description") or "").replace("\n", " ").replace("\r", " ")
        if not a.no_trunc and len(desc) > 45:
            desc = desc[:44] + "…"
        out.append({"Name": r.get("name") or "", "Description": desc, "StarCount": str(r.get("star_count") or 0),
                    "IsOfficial": bool(r.get("is_official"))})
    from berth.cli.format import print_formatted, search_row
    print_formatted(a.format or "table", [search_row(r) for r in out],
                    {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL"},
                    "*registry.searchContext", "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}")
    return 0


def history(ctx, argv, cmd):
    p = parser(cmd, "show the history of an image")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--format")
    p.add_argument("--platform")
    p.add_argument("name")
    a = p.parse_args(argv)
    if a.platform:
        raise BerthError("history --platform is not supported by berth")
    rows = ctx.client.image_history(a.name)
    human = a.human.lower() not in ("false", "0")
    out = []
    for r in rows:
        iid = r.get("Id") or "<missing>"
        if iid.startswith("sha256:") and not a.no_trunc:
            iid = iid[7:19]
        created_by = (r.get("CreatedBy") or "").replace("\t", " ")
        if not a.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        out.append({"ID": iid, "CreatedSince": _ago(r.get("Created")) if human else _when(r.get("Created")),
                    "CreatedAt": _when(r.get("Created")), "CreatedBy": created_by,
                    "Size": _hsize(r.get("Size", 0)) if human else str(r.get("Size", 0)),
                    "Comment": r.get("Comment") or ""})
    if a.quiet:
        for r in out:
            print(r["ID"])
        return 0
    if a.format:
        from berth.cli.format import history_row, print_formatted
        print_formatted(a.format, [history_row(r, x, human) for r, x in zip(out, rows)],
                        {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                         "Size": "SIZE", "Comment": "COMMENT"}, "*image.historyContext",
                        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}")
        return 0
    from berth.cli.format import table
    print(table([["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]] +
                [[r["ID"], r["CreatedSince"], r["CreatedBy"], r["Size"], r["Comment"]] for r in out]))
    return 0


def save(ctx, argv, cmd):
    p = parser(cmd, "write images to a tar archive (stdout by default)")
    p.add_argument("-o", "--output")
    p.add_argument("--platform")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    if not a.output and sys.stdout.isatty():
        raise BerthError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if a.output:
        from berth.cli.output import check_destination
        check_destination(a.output, "failed to save image")
    resp = ctx.client.image_save(a.names)
    try:
        if a.output:
            from berth.cli.output import write_atomically
            write_atomically(a.output, "failed to save image", lambda f: _copy(resp, f))
        else:
            _copy(resp, sys.stdout.buffer)
    finally:
        resp.close()
    return 0


def _copy(resp, f):
    total = 0
    while True:
        d = resp.read_some(1 << 20)
        if not d:
            break
        f.write(d)
        total += len(d)
    if total == 0:
        raise BerthError("save failed: the daemon sent no data")


def _file_chunks(f):
    while True:
        d = f.read(1 << 20)
        if not d:
            return
        yield d


def load(ctx, argv, cmd):
    p = parser(cmd, "load images from a tar archive (stdin by default)")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    a = p.parse_args(argv)
    if a.input:
        try:
            f = open(a.input, "rb")
        except OSError as e:
            raise BerthError(f"open {a.input}: {e.strerror}") from None
    else:
        if sys.stdin.isatty():
            raise BerthError("requested load from stdin, but stdin is empty")
        f = sys.stdin.buffer
    from berth.cli.progress import show
    with f:
        # layer progress only for a terminal, as docker's
        resp = ctx.client.image_load(_file_chunks(f), quiet=a.quiet or not sys.stdout.isatty())
        show(resp, quiet=False)
    return 0


def import_(ctx, argv, cmd):
    p = parser(cmd, "make an image from a rootfs tarball")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("--platform")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    repo = tag = None
    if a.reference:
        ref = _ref(a.reference)
        if ref.digest:
            raise BerthError(f"{cmd}: the target must be a name, not a digest")
        repo, tag = ref.name, ref.tag
    if a.file == "-":
        f = sys.stdin.buffer
    elif "://" in a.file:
        raise BerthError(f"{cmd}: importing from a URL is not supported")
    else:
        try:
            f = open(a.file, "rb")
        except OSError as e:
            raise BerthError(f"open {a.file}: {e.strerror}") from None
    from berth.cli.progress import show
    with f:
        resp = ctx.client.image_import(_file_chunks(f), repo=repo, tag=tag, changes=a.change,
                                       message=a.message, platform=a.platform)
        show(resp, quiet=False)
    return 0


def prune(ctx, argv, cmd):
    p = parser(cmd, "remove unused images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    a = p.parse_args(argv)
    if not a.force:
        what = "all images without at least one container associated to them" if a.all else "all dangling images"
        from berth.cli.args import confirm
        if not confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
            return 0
    filters = {"dangling": ["false" if a.all else "true"]}
    for f in a.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    res = ctx.client.images_prune(filters)
    deleted = res.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for item in deleted:
            for k, v in item.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {_hsize(res.get('SpaceReclaimed', 0))}")
    return 0
