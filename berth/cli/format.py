"""Output helpers as docker prints them: --format (Go's text/template, see berth/gotemplate,
imported only when a template is used), docker's per-row contexts of list commands, tab-aligned
tables, human sizes and times."""

import sys
import time

from berth.errors import BerthError
from berth.units import human_duration, human_size  # noqa: F401 - used here and by importers


def ago(ts):
    if not ts:
        return "N/A"
    return human_duration(time.time() - ts) + " ago"


def table(rows, out=None):
    """Rows of cells, aligned by Go's tabwriter(minwidth 10, tabwidth 1, padding 3) as docker's tables."""
    from berth.gotemplate.tabwriter import tabwrite
    return tabwrite("\n".join("\t".join(str(c) for c in r) for r in rows))


def _error(msg, code=1):
    e = BerthError(msg)
    e.code = code
    return e


# ---- docker's formatting of values ----

def go_time(ts, nanos=0):
    """Go's time.Time.String() of a Unix time in the local zone: 2006-01-02 15:04:05.999 -0700 MST."""
    t = time.localtime(ts)
    frac = ("." + ("%09d" % nanos).rstrip("0")) if nanos else ""
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + frac + time.strftime(" %z %Z", t)


def go_time_rfc3339(s):
    """A Go time.Time.String() of an RFC 3339 timestamp (as the API gives: 2024-01-02T03:04:05.123Z)."""
    import calendar
    if not s or s.startswith("0001-01-01"):
        return "0001-01-01 00:00:00 +0000 UTC"
    base, _, frac = s.rstrip("Z").partition(".")
    try:
        ts = calendar.timegm(time.strptime(base[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return s
    digits = "".join(c for c in frac if c.isdigit())[:9]
    return go_time(ts, int(digits.ljust(9, "0")) if digits else 0)


def displayable_ports(ports):
    """docker's formatter.DisplayablePorts: unpublished ports (and ports published on the same
    number) grouped into ranges, then the host mappings, as `docker ps` prints them."""
    ports = sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""), p.get("PublicPort", 0),
                                               p.get("Type", "")))
    groups, order, result, mappings = {}, [], [], []

    def form(key, first, last):
        ip, _, typ = key.rpartition("/")
        g = str(first) if first == last else f"{first}-{last}"
        if ip:
            g = f"{ip}:{g}->{g}"
        return f"{g}/{typ}"

    for p in ports:
        cur, typ, ip = p.get("PrivatePort", 0), p.get("Type", "tcp"), p.get("IP", "")
        key = typ
        if ip:
            if p.get("PublicPort", 0) != cur:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{p.get('PublicPort', 0)}->{cur}/{typ}")
                continue
            key = f"{ip}/{typ}"
        g = groups.get(key)
        if g is None:
            groups[key] = [cur, cur]
            order.append(key)
        elif cur == g[1] + 1:
            g[1] = cur
        else:
            result.append(form(key, g[0], g[1]))
            groups[key] = [cur, cur]
    result += [form(k, *groups[k]) for k in order]
    return ", ".join(result + mappings)


def ellipsis(s, n):
    if n <= 0:
        return ""
    if len(s) <= n:
        return s
    if n == 1:
        return "…"
    return s[:n - 1] + "…"


def human_size_prec(n, prec):
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"):
        if n < 1000 or unit == "YB":
            from berth.gotemplate.gofmt import format_float
            s = format_float(n, "g", prec)
            return s + unit
        n /= 1000.0


# ---- contexts: the objects docker's list commands execute their templates on ----

def context(gotype, fields, methods=None, header=None, struct_fields=None):
    """A docker formatter context: each of fields is a method without arguments (name -> value),
    methods maps names to (fn, param types); header is its column titles; struct_fields are its
    exported struct fields besides Header."""
    from berth.gotemplate.values import Box, GoStruct, Method

    class Ctx(GoStruct):
        def marshal_json(self):
            from berth.gotemplate.gofmt import json_marshal
            return json_marshal({k: v for k, v in fields.items()}, escape_html=True)

    ms = {k: Method((lambda v=v: v)) for k, v in fields.items()}
    for k, (fn, params) in (methods or {}).items():
        ms[k] = Method(fn, params)
    c = Ctx(gotype, dict({"Header": Box(None)}, **(struct_fields or {})), methods=ms)
    c.header = header or {}
    return c


def _header_context(header):
    from berth.gotemplate.values import GoMap, Method

    class Header(GoMap):
        def go_methods(self):
            return {"Label": Method(lambda name: name.split(".")[-1].replace("-", " ").replace("_", " "),
                                    ["string"])}
    return Header(header, "formatter.SubHeaderContext", "")


def _short_id(i):
    return i.split(":", 1)[-1][:12]


def _short_image(image, image_id):
    """docker ps's IMAGE: an image ID shortened, a reference without its digest, in its familiar form."""
    if _short_id(image) == _short_id(image_id):
        return _short_id(image)
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    repo = name.rsplit(":", 1)[0] if ":" in last else name
    if not name or repo != repo.lower():
        return image  # no reference docker parses: shown as it is
    for prefix in ("docker.io/library/", "index.docker.io/library/"):
        if name.startswith(prefix) and "/" not in name[len(prefix):]:
            return name[len(prefix):]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def container_context(c, trunc=True):
    """docker ps's row (formatter.ContainerContext) of a container summary from the API."""
    from berth.goquote import quote as go_quote
    cid = c.get("Id", "")
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        for n in names:
            if len(n.split("/")) == 1:
                names = [n]
                break
    labels = c.get("Labels") or {}
    mounts = []
    for m in c.get("Mounts") or []:
        name = m.get("Name") or m.get("Source", "")
        mounts.append(ellipsis(name, 15) if trunc else name)
    nets = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    size_rw, size_fs = c.get("SizeRw") or 0, c.get("SizeRootFs") or 0
    size = human_size_prec(size_rw, 3)
    if size_fs > 0:
        size = "%s (virtual %s)" % (size, human_size_prec(size_fs, 3))
    image = c.get("Image") or "<no image>"
    if trunc and c.get("Image"):
        image = _short_image(image, c.get("ImageID") or "")
    created = c.get("Created") or 0
    from berth.cli.containers import _ports
    fields = {
        "Command": go_quote(ellipsis(c.get("Command") or "", 20) if trunc else c.get("Command") or ""),
        "CreatedAt": go_time(created),
        "ID": cid[:12] if trunc else cid,
        "Image": image,
        "Labels": join_labels(labels),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Mounts": ",".join(mounts),
        "Names": ",".join(names),
        "Networks": ",".join(nets),
        "Platform": None,
        "Ports": _ports(c.get("Ports")),
        "RunningFor": human_duration(time.time() - created) + " ago",
        "Size": size,
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
    }
    from berth.gotemplate.values import GoMap, GoStruct
    used = GoMap({}, "map[string]interface {}", None, nil=True, elem_iface=True)

    def size():
        # as docker's: calling Size() records it in FieldsUsed
        used["Size"] = GoStruct("struct {}", {})
        used.nil = False
        return fields["Size"]
    return context("*formatter.ContainerContext", fields,
                   {"Label": (lambda name: labels.get(name, ""), ["string"]), "Size": (size, [])}, PS_HEADER,
                   {"FieldsUsed": used})


PS_HEADER = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
             "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
             "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES",
             "Networks": "NETWORKS", "Platform": "PLATFORM"}


PS_RAW = {False: "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\n"
                 "state: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\n"
                 "labels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n"}
PS_RAW[True] = PS_RAW[False] + "size: {{.Size}}\n"
IMAGES_RAW = {False: "repository: {{ .Repository }}\ntag: {{.Tag}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\n"
                     "virtual_size: {{.Size}}\n",
              True: "repository: {{ .Repository }}\ntag: {{.Tag}}\ndigest: {{.Digest}}\nimage_id: {{.ID}}\n"
                    "created_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
IMAGES_TABLE = {
    False: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}",
    True: "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}"
          "\t{{.Size}}"}
IMAGES_HEADER = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
                 "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}
VOLUMES_HEADER = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "Availability": "AVAILABILITY",
                  "Group": "GROUP", "Status": "STATUS"}
NETWORKS_HEADER = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "IPv4": "IPV4", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def image_row(r, img, digests=False):
    """docker images' row (formatter.imageContext) from berth's row and the image summary."""
    if not digests:
        r = dict(r, Digest="<none>")
    size, shared = img.get("Size", 0), img.get("SharedSize", -1)
    containers = img.get("Containers", -1)
    return dict(r, CreatedAt=go_time(img.get("Created") or 0), Size=human_size_prec(size, 3),
                VirtualSize=human_size_prec(size, 4),
                Containers="N/A" if containers in (-1, None) else str(containers),
                SharedSize="N/A" if shared in (-1, None) else human_size_prec(shared, 4),
                UniqueSize="N/A" if shared in (-1, None) or size == -1 else human_size_prec(size - shared, 4))


def history_row(r, item, human):
    created = item.get("Created") or 0
    rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created))
    off = time.strftime("%z", time.localtime(created))
    rfc += "Z" if off in ("+0000", "-0000") else off[:3] + ":" + off[3:]
    return dict(r, CreatedAt=rfc, CreatedSince=r["CreatedSince"] if human else rfc)


def search_row(r):
    """docker search's context: OFFICIAL is "[OK]" or "" in a table or template, "true" or
    "false" in its JSON."""
    from berth.gotemplate.gofmt import json_marshal
    fields = dict(r, IsOfficial="[OK]" if r["IsOfficial"] else "")
    c = context("*registry.searchContext", fields, None, {"Name": "NAME", "Description": "DESCRIPTION",
                                                           "StarCount": "STARS", "IsOfficial": "OFFICIAL"})
    as_json = dict(r, IsOfficial="true" if r["IsOfficial"] else "false")
    c.marshal_json = lambda: json_marshal(dict(sorted(as_json.items())), escape_html=True)
    return c


def network_row(r, n):
    return dict(r, CreatedAt=go_time_rfc3339(n.get("Created", "")), IPv6=str(bool(n.get("EnableIPv6"))).lower(),
                IPv4=str(bool(n.get("EnableIPv4"))).lower(), Internal=str(bool(n.get("Internal"))).lower())


def join_labels(labels):
    """.Labels of a row: "k=v" pairs sorted as strings and joined by commas, as docker's CLI
    writes a container's (it leaves a network's and a volume's in Go's map order: any order)."""
    return ",".join(sorted(f"{k}={v}" for k, v in (labels or {}).items()))


def labelled(gotype, row, obj, header):
    """A context of a row with docker's methods: the header's fields and .Label "name"."""
    labels = obj.get("Labels") or {}
    fields = {k: row.get(k, "N/A") for k in header}
    fields["Labels"] = join_labels(labels)
    return context(gotype, fields, {"Label": (lambda name: labels.get(name, ""), ["string"])}, header)


def row_context(gotype, row, header):
    """A context whose methods are the (string) cells of a row dict."""
    return context(gotype, dict(row), None, header)


# ---- rendering ----

def _docker_format(fmt):
    """docker's formatter preFormat: (is_table, template text)."""
    is_table = fmt.startswith("table")
    if is_table:
        fmt = fmt[len("table"):]
    elif fmt == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return is_table, fmt


def print_formatted(fmt, items, headers=None, gotype="*formatter.Context", default_table=None,
                    errors=("template parsing error: ", "template parsing error: "), raw=None, quiet=False,
                    quiet_key="ID"):
    """--format over a list command's rows (contexts, or dicts of strings): json, table ... (with
    docker's header line and tabwriter spacing), raw, or a template per row. Nothing is printed if
    a row's template fails. With -q: table and raw print the key only; a custom format wins, except
    for ps (which says so and prints the IDs)."""
    from berth.gotemplate import Template, TemplateError
    from berth.gotemplate.funcs import HEADER
    from berth.gotemplate.tabwriter import tabwrite
    key = "{{.%s}}" % quiet_key
    if errors[0].startswith("failed") and fmt:
        # docker ps first runs the format as given (no table prefix or \t handled) on an empty row,
        # to see whether it uses .Size: its errors are reported from there
        try:
            Template("").parse(fmt).execute(container_context({}))
        except TemplateError as e:
            raise _error((errors[0] if "executing" not in str(e) else errors[1]) + str(e))
    if quiet and errors[0].startswith("failed"):  # ps
        print("WARNING: Ignoring custom format, because both --format and --quiet are set.", file=sys.stderr)
        fmt = ("container_id: " + key) if fmt == "raw" else key
    elif quiet and fmt in ("table", "raw"):
        fmt = key if fmt == "table" else {"ID": "image_id: " if "image" in gotype else "network_id: ",
                                          "Name": "name: "}[quiet_key] + key
    elif fmt == "table" and default_table:
        fmt = default_table
    elif fmt == "raw" and raw:
        fmt = raw
    is_table, text = _docker_format(fmt)
    try:
        t = Template("").parse(text)
    except TemplateError as e:
        raise _error(errors[0] + str(e))
    ctxs = [it if not isinstance(it, dict) else row_context(gotype, it, headers) for it in items]
    out = []
    for c in ctxs:
        try:
            out.append(t.execute(c) + "\n")
        except TemplateError as e:
            raise _error(errors[1] + str(e))
    if is_table:
        header = dict(headers or (ctxs[0].header if ctxs else PS_HEADER))
        try:
            head = t.with_funcs(HEADER).execute(_header_context(header))
        except TemplateError as e:
            head = getattr(e, "partial", "")
        sys.stdout.write(tabwrite(head + "\n" + "".join(out)))
    else:
        sys.stdout.write("".join(out))
    sys.stdout.flush()


def _kind_of(obj):
    if not isinstance(obj, dict):
        return None
    if "State" in obj and "HostConfig" in obj:
        return "container"
    if "RootFS" in obj and "RepoTags" in obj:
        return "image"
    if "IPAM" in obj and "Driver" in obj:
        return "network"
    if "Mountpoint" in obj and "Driver" in obj:
        return "volume"
    return None


_GOTYPES = {"container": "types.ContainerJSON", "image": "image.InspectResponse", "network": "network.Inspect",
            "volume": "volume.Volume"}


def print_inspect(fmt, objects, raw_fallback=True):
    """docker inspect -f: the template on each object (as its Go type, else as raw JSON with
    missingkey=error), one line each; errors after the output, exit status 1 (64 if it does not
    parse)."""
    from berth.gotemplate import Template, TemplateError
    from berth.gotemplate.jsonview import raw, typed_as
    if fmt == "json":
        # docker's JSON inspector: the raw objects compacted in one array (the typed ones marshalled
        # when there is no raw JSON, as for volumes)
        if raw_fallback:
            import json
            out = json.dumps(objects, separators=(",", ":"))
        else:
            from berth.gotemplate.gofmt import json_marshal
            out = json_marshal([typed_as(o, _kind_of(o)) for o in objects], escape_html=True)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
        return
    try:
        t = Template("").parse(fmt)
    except TemplateError as e:
        raise _error("template parsing error: " + str(e), 64)
    out, errs = [], []
    for obj in objects:
        kind = _kind_of(obj)
        view = typed_as(obj, kind)
        if kind in _GOTYPES:
            view.gotype = _GOTYPES[kind]
        try:
            out.append(t.execute(view) + "\n")
        except TemplateError as e:
            if not raw_fallback:
                errs.append("template parsing error: " + str(e))
                continue
            try:
                out.append(t.execute(raw(obj), missingkey="error") + "\n")
            except TemplateError as e:
                errs.append("template parsing error: " + str(e))
    sys.stdout.write("".join(out) or "\n")
    sys.stdout.flush()
    if errs:
        raise _error("\n".join(errs))


def event_message(ev):
    """An event as docker's events.Message."""
    from berth.gotemplate.values import GoInt, GoMap, GoStruct
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes")
    a = GoStruct("events.Actor", {"ID": actor.get("ID", ""),
                                  "Attributes": GoMap(attrs or {}, "map[string]string", "", nil=attrs is None)})
    return GoStruct("events.Message", {
        "Status": ev.get("status", ""), "ID": ev.get("id", ""), "From": ev.get("from", ""),
        "Type": ev.get("Type", ""), "Action": ev.get("Action", ""), "Actor": a, "Scope": ev.get("scope", ""),
        "Time": GoInt(ev.get("time", 0)), "TimeNano": GoInt(ev.get("timeNano", 0))},
        json_names={"Status": "status", "ID": "id", "From": "from", "Scope": "scope", "Time": "time",
                    "TimeNano": "timeNano"},
        omitempty=("Status", "ID", "From"))


def events_template(fmt):
    """docker events --format: parsed, and tried on an empty message (errors exit 64)."""
    from berth.gotemplate import Template, TemplateError
    if fmt == "json":
        fmt = "{{json .}}"
    try:
        t = Template("").parse(fmt)
        m = event_message({})
        m.gotype = "*events.Message"
        t.execute(m)
    except TemplateError as e:
        raise _error("Error parsing format: " + str(e), 64)
    return t


def render_event(t, ev):
    from berth.gotemplate import TemplateError
    try:
        return t.execute(event_message(ev))
    except TemplateError as e:
        raise _error(str(e))


def client_info(**kw):
    """The client's part of info/version, with the fields docker's has."""
    import os
    from berth import __version__
    m = os.uname().machine
    return dict({"Debug": False, "Version": __version__, "ApiVersion": "1.45", "DefaultAPIVersion": "1.45",
                 "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m),
                 "BuildTime": "", "Context": "default", "Plugins": [], "Warnings": None}, **kw)


def print_typed(fmt, obj, gotype, name="", tabwriter=None):
    """docker info/version --format: the template on a typed object, then a newline; a failing
    template prints what it wrote, then the error (exit 1); one that does not parse exits 64."""
    from berth.gotemplate import Template, TemplateError
    from berth.gotemplate.jsonview import typed_as
    if fmt == "json":
        fmt = "{{json .}}"
    try:
        t = Template(name).parse(fmt)
    except TemplateError as e:
        raise _error("template parsing error: " + str(e), 64)
    data = typed_as(obj, {"system.dockerInfo": "info", "system.versionInfo": "version"}.get(gotype))
    data.gotype = gotype
    err = None
    try:
        out = t.execute(data)
    except TemplateError as e:
        out, err = getattr(e, "partial", ""), e
    if tabwriter:
        from berth.gotemplate.tabwriter import tabwrite
        out = tabwrite(out + "\n", *tabwriter)
    else:
        out += "\n"
    sys.stdout.write(out)
    sys.stdout.flush()
    if err is not None:
        raise _error(str(err))
