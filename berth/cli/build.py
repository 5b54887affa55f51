"""Build commands: build (the context streamed as a tar, .dockerignore applied here, as the
docker CLI does), commit, builder prune."""

import os
import sys

from berth.cli.args import parser
from berth.errors import BerthError


def commit(ctx, argv, cmd):
    p = parser(cmd, "create a new image from a container's changes")
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("-p", "--pause", action="store_true", default=True)  # a bool flag: -p=false
    p.add_argument("container")
    p.add_argument("repository", nargs="?")
    a = p.parse_args(argv)
    repo = tag = None
    if a.repository:
        from berth.oci import reference
        try:
            ref = reference.parse(a.repository)
        except BerthError as e:
            raise BerthError(f"invalid reference format: {e.message}") from None
        repo, tag = ref.name, ref.tag
    res = ctx.client.container_commit(a.container, repo=repo, tag=tag, changes=a.change, comment=a.message,
                                      author=a.author, pause=a.pause)
    print(res.get("Id", ""))
    return 0


def _human(n):
    """docker's units.HumanSize: 4 significant digits, decimal units ("4.608kB")."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.4g}{unit}"
        n /= 1000


def _octal(value, width):
    return (b"%0*o" % (width - 1, value)) + b"\0"


def _pax_record(key, value):
    body = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n = len(str(n).encode()) + len(body)
    return str(n).encode() + body


def _ustar(name, mode, size, mtime, typeflag, linkname=b""):
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(0, 8)  # uid and gid 0, as the docker CLI sends them (ChownOpts 0:0)
    block[116:124] = _octal(0, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _tar_header(name, mode, mtime, typeflag, size=0, linkname=""):
    """A tar header (ustar; a PAX record first for long or non-ASCII names and huge sizes), made
    without the tarfile module (it costs the CLI ~25 ms to import)."""
    bname = name.encode("utf-8", "surrogateescape")
    blink = linkname.encode("utf-8", "surrogateescape")
    pax = b""
    if len(bname) > 100 or not name.isascii():
        pax += _pax_record("path", name)
        bname = bname[:99]
    if len(blink) > 100 or not linkname.isascii():
        pax += _pax_record("linkpath", linkname)
        blink = blink[:99]
    if size >= 8 ** 11:
        pax += _pax_record("size", str(size))
    out = b""
    if pax:
        out = _ustar(b"././@PaxHeader", 0o644, len(pax), mtime, b"x") + pax + b"\0" * (-len(pax) % 512)
    return out + _ustar(bname, mode & 0o7777, size if size < 8 ** 11 else 0, mtime, typeflag, blink)


def _file_entry(name, data, mode=0o600):
    """A tar member made from bytes (a Dockerfile read from stdin)."""
    import time
    return _tar_header(name, mode, int(time.time()), b"0", size=len(data)) + data + b"\0" * (-len(data) % 512)


def context_chunks(root, matcher, extra=(), counter=None):
    """The context directory as a tar, produced while it is sent: files are read in 1 MiB
    pieces (a huge context is never held in memory), entries .dockerignore excludes are left
    out (a directory it excludes is not even walked unless an exception could match below).
    Symlinks are sent as symlinks (never followed)."""
    import stat
    counter = counter if counter is not None else {}
    counter.setdefault("n", 0)

    def count(b):
        counter["n"] += len(b)
        return b

    def walk(dpath, drel):
        try:
            names = sorted(os.listdir(dpath))
        except OSError as e:
            raise BerthError(f"error checking context: can't stat '{dpath}': {e.strerror}") from None
        for name in names:
            rel = f"{drel}/{name}" if drel else name
            path = os.path.join(dpath, name)
            st = os.lstat(path)
            excluded = matcher is not None and matcher.excluded(rel)
            if stat.S_ISDIR(st.st_mode):
                if excluded and not matcher.may_include_below(rel):
                    continue
                if not excluded:
                    yield count(_tar_header(rel + "/", st.st_mode, int(st.st_mtime), b"5"))
                yield from walk(path, rel)
                continue
            if excluded:
                continue
            if stat.S_ISLNK(st.st_mode):
                yield count(_tar_header(rel, st.st_mode, int(st.st_mtime), b"2", linkname=os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                try:
                    f = open(path, "rb")
                except OSError as e:
                    raise BerthError(f"error checking context: can't open '{rel}': {e.strerror}") from None
                with f:
                    yield count(_tar_header(rel, st.st_mode, int(st.st_mtime), b"0", size=st.st_size))
                    left = st.st_size
                    while left > 0:
                        chunk = f.read(min(left, 1 << 20))
                        if not chunk:
                            chunk = b"\0" * min(left, 1 << 20)  # the file shrank: keep the size promised
                        left -= len(chunk)
                        yield count(chunk)
                    pad = -st.st_size % 512
                    if pad:
                        yield count(b"\0" * pad)
            # devices, fifos and sockets are not part of a build context

    yield from walk(root, "")
    for blob in extra:
        yield count(blob)
    yield count(b"\0" * 1024)


def _stdin_chunks(head):
    yield head
    while True:
        chunk = sys.stdin.buffer.read(1 << 20)
        if not chunk:
            return
        yield chunk


def _is_tar(head):
    import tarfile
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def build(ctx, argv, cmd):
    p = parser(cmd, "build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--target")
    p.add_argument("-f", "--file")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--pull", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--iidfile")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--network")
    p.add_argument("--progress", default="auto")
    p.add_argument("--rm", default="true")
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("--platform")
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("context")
    a = p.parse_args(argv)
    from berth.oci import reference
    for t in a.tag:  # the docker CLI's check of each -t, before anything is read or sent (status 125)
        why = reference.why_not(t)
        if why is not None:
            from berth.cli.args import UsageError
            raise UsageError(f'invalid argument "{t}" for "-t, --tag" flag: {why}')
    if a.progress not in ("auto", "plain", "tty", "quiet", "rawjson"):
        raise BerthError(f"invalid --progress {a.progress!r}: auto, plain, tty or quiet")
    buildargs = {}
    for ba in a.build_arg:
        k, eq, v = ba.partition("=")
        if not k:
            raise BerthError(f"invalid --build-arg {ba!r}")
        if eq:
            buildargs[k] = v
        elif k in os.environ:
            buildargs[k] = os.environ[k]
        # a name without a value that is not in the environment is not sent (docker's rule)
    labels = {}
    for lb in a.label:
        k, _, v = lb.partition("=")
        labels[k] = v
    dockerfile = None
    extra = []
    stdin_used = False
    if a.context == "-":
        if a.file == "-":
            raise BerthError("invalid argument: can't use stdin for both build context and dockerfile")
        head = sys.stdin.buffer.read(512)
        stdin_used = True
        if _is_tar(head):
            body = _stdin_chunks(head)
            dockerfile = a.file
        else:  # a Dockerfile alone: the context is empty
            data = head + sys.stdin.buffer.read()
            body = iter([_file_entry("Dockerfile", data) + b"\0" * 1024])
            dockerfile = "Dockerfile"
        counter = None
    else:
        root = a.context
        if not os.path.isdir(root):
            raise BerthError(f'unable to prepare context: path "{root}" not found')
        patterns = []
        text = None  # the context's .dockerignore
        try:
            with open(os.path.join(root, ".dockerignore")) as f:
                text = f.read()
            from berth.dockerfile import ignore  # (re: ~10 ms, only when there are patterns)
            patterns = ignore.read(text)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise BerthError(f"cannot read .dockerignore: {e.strerror}") from None
        df_in_ctx = None
        if a.file == "-":
            data = sys.stdin.buffer.read()
            stdin_used = True
            dockerfile = ".dockerfile." + os.urandom(10).hex()
            extra.append(_file_entry(dockerfile, data))
        else:
            path = a.file or os.path.join(root, "Dockerfile")
            if a.file and not os.path.isabs(a.file) and not os.path.exists(a.file) and \
                    os.path.exists(os.path.join(root, a.file)):
                path = os.path.join(root, a.file)
            if not os.path.isfile(path):
                raise BerthError(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                                 f"lstat {os.path.abspath(path)}: no such file or directory")
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
            if rel.startswith(".."):  # outside the context: sent under a name of its own
                with open(path, "rb") as f:
                    data = f.read()
                dockerfile = ".dockerfile." + os.urandom(10).hex()
                extra.append(_file_entry(dockerfile, data))
            else:
                dockerfile = df_in_ctx = rel
        if patterns:
            keep = [".dockerignore"] + ([df_in_ctx] if df_in_ctx else [])
            patterns = patterns + ["!" + k for k in keep]
        if extra:  # a Dockerfile of its own name: the .dockerignore sent lists it (and itself, when
            # the context has none), so the daemon leaves both out of the context, as the docker
            # CLI's AddDockerfileToBuildContext does
            extra.append(_file_entry(".dockerignore", (".dockerignore" if text is None else text).encode() +
                                     f"\n{dockerfile}\n".encode()))
            if text is not None:  # (ignore is imported with it)
                patterns = patterns + [".dockerignore"]  # the context's own is replaced
        matcher = ignore.Matcher(patterns) if patterns else None  # noqa: F821 (imported with the patterns)
        counter = {}
        body = context_chunks(root, matcher, extra, counter)
    del stdin_used
    params = {"t": a.tag, "dockerfile": dockerfile, "buildargs": buildargs or None, "target": a.target,
              "nocache": a.no_cache, "pull": a.pull, "q": a.quiet, "labels": labels or None,
              "networkmode": a.network, "rm": "1" if a.rm.lower() in ("true", "1") else "0",
              "forcerm": a.force_rm, "platform": a.platform, "extrahosts": ",".join(a.add_host) or None}
    quiet = a.quiet or a.progress == "quiet"
    if a.quiet:
        params["q"] = True

    def sending(chunks):
        yield from chunks
        if counter is not None and not quiet:
            sys.stdout.write(f"Sending build context to Docker daemon  {_human(counter['n'])}\n")
            sys.stdout.flush()

    try:
        resp = ctx.client.image_build(sending(body), params)
    except BerthError as e:
        e.code = 1  # docker build's exit code for an error response
        raise
    image_id = None
    held = []
    try:
        for m in resp.iter_json():
            if m.get("error") or m.get("errorDetail"):
                detail = m.get("errorDetail") or {}
                if held:
                    sys.stderr.write("".join(held))
                    sys.stderr.flush()
                e = BerthError(detail.get("message") or m.get("error"))
                e.code = int(detail.get("code") or 1)
                raise e
            if m.get("aux") and isinstance(m["aux"], dict) and m["aux"].get("ID"):
                image_id = m["aux"]["ID"]
            text = m.get("stream")
            if text and quiet:
                held.append(text)
            elif text:
                sys.stdout.write(text)
                sys.stdout.flush()
    finally:
        resp.close()
    if image_id is None:
        raise BerthError("the build ended without an image")
    if quiet:
        print(image_id)
    if a.iidfile:
        with open(a.iidfile, "w") as f:
            f.write(image_id)
    return 0


def prune(ctx, argv, cmd):
    p = parser(cmd, "remove the build cache")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    a = p.parse_args(argv)
    if not a.force:
        sys.stdout.write("WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = ctx.client.build_prune(all_=a.all)
    deleted = res.get("CachesDeleted") or []
    if deleted:
        print("Deleted build cache objects:\n" + "".join(i + "\n" for i in deleted))
    print(f"Total reclaimed space: {_human(res.get('SpaceReclaimed') or 0)}")
    return 0
