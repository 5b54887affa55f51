"""Container commands: pause, unpause, rename, top, stats, cp, port, diff, container prune."""

import os
import posixpath
import sys

from berth.cli.args import for_each, parse_filters, parser
from berth.errors import BerthError, InvalidArgument, NotFound


def _each(ctx, names, fn):
    return for_each(names, fn)


def pause(ctx, argv, cmd):
    p = parser(cmd, "pause all processes within containers")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return _each(ctx, a.names, ctx.client.container_pause)


def unpause(ctx, argv, cmd):
    p = parser(cmd, "unpause all processes within containers")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return _each(ctx, a.names, ctx.client.container_unpause)


def rename(ctx, argv, cmd):
    p = parser(cmd, "rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    a = p.parse_args(argv)
    ctx.client.container_rename(a.container, a.new_name)
    return 0


def _tabwrite(rows, minwidth, padding=3):
    """Go's tabwriter (tabwidth 1, padding with spaces): every cell but the last is padded."""
    widths = {}
    for r in rows:
        for i, c in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(c))
    out = []
    for r in rows:
        cells = [c.ljust(max(widths[i] + padding, minwidth)) for i, c in enumerate(r[:-1])]
        out.append(("".join(cells) + (r[-1] if r else "")).rstrip())
    return "\n".join(out)


def top(ctx, argv, cmd):
    p = parser(cmd, "display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs="...")
    a = p.parse_args(argv)
    res = ctx.client.container_top(a.container, " ".join(a.ps_args))
    rows = [list(res.get("Titles") or [])] + [list(r) for r in res.get("Processes") or []]
    print(_tabwrite(rows, 20))
    return 0


# --- stats ---

def _bytes_binary(n):
    """docker's units.BytesSize: "%.4g" with binary units."""
    n = float(n)
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def _human(n, precision=3):
    """docker's units.HumanSizeWithPrecision: decimal units."""
    n = float(n)
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.{precision}g}{units[i]}"


def stats_row(ref, s, no_trunc=False):
    """The CLI's figures from one stats object (calculateCPUPercentUnix and friends)."""
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = mem.get("usage", 0)
    st = mem.get("stats") or {}
    if "total_inactive_file" in st and st["total_inactive_file"] < usage:
        usage -= st["total_inactive_file"]
    elif st.get("inactive_file", usage) < usage:
        usage -= st["inactive_file"]
    limit = mem.get("limit", 0)
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk_r = blk_w = 0
    for e in ((s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = str(e.get("op", "")).lower()
        if op == "read":
            blk_r += e.get("value", 0)
        elif op == "write":
            blk_w += e.get("value", 0)
    cid = s.get("id") or ref
    return {
        "ID": cid if no_trunc else cid[:12], "Container": ref, "Name": (s.get("name") or "").lstrip("/") or "--",
        "CPUPerc": f"{cpu_pct:.2f}%", "MemUsage": f"{_bytes_binary(usage)} / {_bytes_binary(limit)}",
        "MemPerc": f"{mem_pct:.2f}%", "NetIO": f"{_human(rx)} / {_human(tx)}",
        "BlockIO": f"{_human(blk_r)} / {_human(blk_w)}", "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }


_STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
                  "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                  "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
_STATS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"


def stats(ctx, argv, cmd):
    p = parser(cmd, "display a live stream of container resource usage statistics")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    from concurrent.futures import ThreadPoolExecutor

    from berth.cli.format import print_formatted
    fmt = a.format or _STATS_DEFAULT
    names = list(a.containers)
    explicit = bool(names)

    def collect():
        refs = names
        if not explicit:
            refs = [c["Id"] for c in ctx.client.containers(all_=a.all)]
        rows, errors = [], []

        def one(ref):
            try:
                return stats_row(ref, ctx.client.container_stats(ref, stream=False), a.no_trunc), None
            except BerthError as e:
                return None, e
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(refs)))) as ex:
            for row, err in ex.map(one, refs):
                if row:
                    rows.append(row)
                elif err is not None and explicit:
                    errors.append(err)
        return rows, errors

    if a.no_stream:
        rows, errors = collect()
        for e in errors:
            print(f"berth: {e.message}", file=sys.stderr)
        if rows or not errors:
            print_formatted(fmt, rows, _STATS_HEADERS, "*container.statsContext", _STATS_DEFAULT)
        return 1 if errors else 0
    try:
        while True:
            rows, errors = collect()
            if errors and not rows:
                for e in errors:
                    print(f"berth: {e.message}", file=sys.stderr)
                return 1
            if sys.stdout.isatty():
                sys.stdout.write("\033[2J\033[H")
            print_formatted(fmt, rows, _STATS_HEADERS, "*container.statsContext", _STATS_DEFAULT)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0


# --- cp ---

def _split_cp_arg(arg):
    """docker's splitCpArg: ("container", "path") or (None, "local path")."""
    if arg.startswith(("/", ".")):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep:
        return None, arg
    return name, path


def _split_dir_entry(path):
    """docker's SplitPathDirEntry: ("/a", "b") for "/a/b", ("/a/b", ".") for "/a/b/."."""
    clean = posixpath.normpath(path) if path else "."
    if path.endswith("/.") or path == ".":
        return clean, "."
    return posixpath.dirname(clean) or ".", posixpath.basename(clean) or clean


def _trailing_dot(p):
    return p == "." or p.endswith("/.")


def _rebase_name(path, resolved):
    """docker's GetRebaseName."""
    if _trailing_dot(path) and not _trailing_dot(resolved):
        resolved += "/."
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    rebase = ""
    if posixpath.basename(path.rstrip("/")) != posixpath.basename(resolved.rstrip("/")):
        rebase = posixpath.basename(path.rstrip("/"))
    return resolved, rebase


class _RespReader:
    def __init__(self, resp):
        self.resp = resp
        self.count = 0

    def read(self, n=-1):
        data = self.resp.read_some(65536 if n is None or n < 0 else max(1, min(n, 1 << 20)))
        self.count += len(data)
        return data


class _FileReader:
    def __init__(self, f):
        self.f = f
        self.count = 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.count += len(data)
        return data


def _batched(chunks, counter, size=1 << 16):
    buf, n = [], 0
    for c in chunks:
        buf.append(c)
        n += len(c)
        counter[0] += len(c)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


def _local_dest(path):
    """docker's CopyInfoDestinationPath: (path, exists, is_dir), symlinks followed."""
    orig = path
    for _ in range(12):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent = _split_dir_entry(path)[0]
            if not os.path.isdir(parent):
                if os.path.exists(parent):
                    raise BerthError(f"{orig}: not a directory")
                raise BerthError(f"{orig}: no such file or directory")
            return path, False, False
        import stat as stmod
        if not stmod.S_ISLNK(st.st_mode):
            return path, True, stmod.S_ISDIR(st.st_mode)
        target = os.readlink(path)
        if not target.startswith("/"):
            target = os.path.join(_split_dir_entry(path)[0], target)
        path = target
    raise BerthError(f"too many symlinks in {orig}")


def _prepare(src_base, src_is_dir, dst_path, dst_exists, dst_is_dir):
    """docker's PrepareArchiveCopy: (directory to extract into, the name the source takes)."""
    dst_dir, dst_base = _split_dir_entry(dst_path)
    if dst_exists and dst_is_dir:
        return dst_path, src_base
    if dst_exists and src_is_dir:
        raise BerthError("cannot copy directory")
    if dst_exists or src_is_dir:
        return dst_dir, dst_base
    if dst_path.endswith("/") or _trailing_dot(dst_path):
        raise BerthError("no such directory")
    return dst_dir, dst_base


def _copied(quiet, n, dst):
    if not quiet and sys.stderr.isatty():
        print(f"Successfully copied {_human(n, 4)} to {dst}", file=sys.stderr)


def cp(ctx, argv, cmd):
    p = parser(cmd, "copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    sc, sp = _split_cp_arg(a.src)
    dc, dp = _split_cp_arg(a.dst)
    if sc and dc:
        raise BerthError("copying between containers is not supported")
    if not sc and not dc:
        raise BerthError("must specify at least one container source")
    if sc:
        if not sp:
            raise BerthError("filesystem path cannot be empty")
        return _from_container(ctx, sc, sp, dp, a)
    if not dp:
        raise BerthError("filesystem path cannot be empty")
    return _to_container(ctx, a.src, dc, dp, a)


def _from_container(ctx, container, src, dst, a):
    if dst != "-":
        from berth.cli.output import check_cp_destination
        check_cp_destination(dst)
    rebase = ""
    if a.follow_link:
        try:
            st = ctx.client.container_stat_path(container, src)
        except NotFound:
            st = None
        if st and st.get("mode", 0) & (1 << 27) and st.get("linkTarget"):
            target = st["linkTarget"]
            if not target.startswith("/"):
                target = posixpath.join(_split_dir_entry(src)[0], target)
            src, rebase = _rebase_name(src, target)
    stat, resp = ctx.client.container_get_archive(container, src)
    try:
        if dst == "-":
            out = sys.stdout.buffer
            while True:
                d = resp.read_some()
                if not d:
                    break
                out.write(d)
            out.flush()
            return 0
        src_base = _split_dir_entry(src)[1]
        is_dir = bool(stat and stat.get("mode", 0) & (1 << 31))
        path, exists, dst_is_dir = _local_dest(dst)
        into, name = _prepare(rebase or src_base, is_dir, path, exists, dst_is_dir)
        from berth.archive.tar import extract_tar
        reader = _RespReader(resp)
        fd = os.open(into, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            extract_tar(fd, "", reader, owner=None, no_overwrite_dir_nondir=True,
                        rebase=(src_base, name) if name != src_base else None)
        finally:
            os.close(fd)
        _copied(a.quiet, reader.count, dst)
        return 0
    finally:
        resp.close()


def _to_container(ctx, src, container, dst, a):
    dst_exists = dst_is_dir = False
    try:
        st = ctx.client.container_stat_path(container, dst)
        if st and st.get("mode", 0) & (1 << 27) and st.get("linkTarget"):
            target = st["linkTarget"]
            if not target.startswith("/"):
                target = posixpath.join(_split_dir_entry(dst)[0], target)
            dst = target
            st = ctx.client.container_stat_path(container, dst)
        if st:
            mode = st.get("mode", 0)
            if mode & ((1 << 26) | (1 << 25) | (1 << 24)):
                raise BerthError(f'destination "{container}:{dst}" must be a directory or a regular file')
            dst_exists, dst_is_dir = True, bool(mode & (1 << 31))
    except (NotFound, InvalidArgument):  # as the docker CLI: taken as not there ("file/": no such directory)
        pass
    counter = [0]
    if src == "-":
        if not dst_is_dir:
            raise BerthError(f'destination "{container}:{dst}" must be a directory')
        body = _FileReader(sys.stdin.buffer)

        def chunks():
            while True:
                d = body.read(1 << 16)
                if not d:
                    return
                counter[0] += len(d)
                yield d
        ctx.client.container_put_archive(container, dst, chunks(), copy_uid_gid=a.archive)
        _copied(a.quiet, counter[0], f"{container}:{dst}")
        return 0
    # the local source, as CopyInfoSourcePath resolves it
    if a.follow_link:
        resolved = os.path.realpath(src)
        resolved, rebase = _rebase_name(src, resolved)
    else:
        d, b = os.path.split(src)
        resolved = os.path.join(os.path.realpath(d or "."), b)
        rebase = os.path.basename(src.rstrip("/")) if src.endswith("/") and \
            os.path.basename(src.rstrip("/")) != os.path.basename(resolved.rstrip("/")) else ""
    try:
        lst = os.lstat(resolved)
    except FileNotFoundError:
        raise BerthError(f"lstat {resolved}: no such file or directory") from None
    import stat as stmod
    src_is_dir = stmod.S_ISDIR(lst.st_mode)
    src_dir, src_base = _split_dir_entry(resolved)
    into, name = _prepare(rebase or src_base, src_is_dir, dst, dst_exists, dst_is_dir)
    from berth.archive.tar import tar_stream
    fd = os.open(src_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ctx.client.container_put_archive(container, into, _batched(tar_stream(fd, src_base, name), counter),
                                         copy_uid_gid=a.archive)
    finally:
        os.close(fd)
    _copied(a.quiet, counter[0], f"{container}:{dst}")
    return 0


# --- port, diff, prune ---

def port(ctx, argv, cmd):
    p = parser(cmd, "list port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("private_port", nargs="?")
    a = p.parse_args(argv)
    info = ctx.client.container_inspect(a.container)
    ports = ((info.get("NetworkSettings") or {}).get("Ports") or {})
    if a.private_port:
        port_, _, proto = a.private_port.partition("/")
        key = f"{port_}/{proto or 'tcp'}"
        bindings = ports.get(key)
        if not bindings:
            raise BerthError(f"No public port '{key}' published for {a.container}")
        for line in sorted(_host_port(b) for b in bindings):  # sorted as the docker CLI's lines
            print(line)
        return 0
    for line in sorted(f"{key} -> {_host_port(b)}" for key in ports for b in ports[key] or []):
        print(line)
    return 0


def _host_port(binding):
    """A binding as docker port prints it (Go's net.JoinHostPort): [::]:8080 for IPv6."""
    ip = binding.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{binding.get('HostPort')}" if ":" in ip else f"{ip}:{binding.get('HostPort')}"


def diff(ctx, argv, cmd):
    p = parser(cmd, "inspect changes to files or directories on a container's filesystem")
    p.add_argument("container")
    a = p.parse_args(argv)
    for c in ctx.client.container_changes(a.container) or []:
        print(f"{'CAD'[c.get('Kind', 0)] if c.get('Kind', 0) in (0, 1, 2) else '?'} {c.get('Path')}")
    return 0


def prune(ctx, argv, cmd):
    p = parser(cmd, "remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    a = p.parse_args(argv)
    filters = parse_filters(cmd, a.filter)
    if not a.force:
        sys.stdout.write("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    res = ctx.client.containers_prune(filters or None)
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:\n" + "".join(i + "\n" for i in deleted))
    print(f"Total reclaimed space: {_human(res.get('SpaceReclaimed') or 0, 4)}")
    return 0
