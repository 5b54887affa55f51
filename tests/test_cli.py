"""The berth CLI as a docker/nerdctl user expects it: images and their flags, rmi, history,
inspect, import, save/load, image prune, namespaces, info/version, errors and exit codes,
the client config (BERTH_TOML), BERTH_HOST/DOCKER_HOST, shell completion, and autostart of
berthd at the default socket.

One private berthd serves the module; tests that change what is stored work in a namespace
of their own, so they do not see each other's images."""

import io
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import uuid

import pytest
from daemon_fixtures import BERTH, BIN, DATA, Daemon, wait_for

HELLO = os.path.join(DATA, "hello-world.docker.tar")
BUSYBOX_LAYERS = os.path.join(DATA, "busybox-layers.docker.tar")
MIRROR = "https://mirror.example.com"
SHORT_ID = re.compile(r"^[0-9a-f]{12}$")
FULL_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A berthd with a registry mirror configured (for `info`), hello-world and
    busybox-layers loaded into the default namespace."""
    dm = Daemon(tmp_path_factory.mktemp("berthd"), extra_config=f'registry_mirrors = ["{MIRROR}"]\n')
    dm.start()
    try:
        dm.berth("load", "-i", HELLO, check=True)
        dm.berth("load", "-i", BUSYBOX_LAYERS, check=True)
        yield dm
    finally:
        dm.cleanup()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """A rootfs tar: busybox-static as /bin/busybox, /bin/sh -> busybox, an empty /w."""
    if not os.path.exists("/bin/busybox"):
        pytest.skip("/bin/busybox is not installed")
    path = str(tmp_path_factory.mktemp("rootfs") / "rootfs.tar")
    with tarfile.open(path, "w") as t:
        for name in ("bin", "w", "etc"):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        t.add("/bin/busybox", arcname="bin/busybox")
        ti = tarfile.TarInfo("bin/sh")
        ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
        t.addfile(ti)
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        ti = tarfile.TarInfo("etc/passwd")
        ti.size, ti.mode = len(data), 0o644
        t.addfile(ti, io.BytesIO(data))
    return path


def ns_name():
    return "t" + uuid.uuid4().hex[:10]


def one_line_error(p, code=1):
    """A user error: the exit code (the docker CLI's: 125 for a flag it cannot parse, 1 for the
    daemon's errors and the rest), one line on stderr starting with "berth:", no traceback."""
    assert p.returncode == code, (p.returncode, p.out, p.err)
    lines = p.err.strip().splitlines()
    assert len(lines) == 1, p.err
    assert lines[0].startswith("berth: "), p.err
    assert "Traceback" not in p.err and "internal error" not in p.err
    return lines[0]


def rows(out):
    return [line for line in out.splitlines() if line.strip()]


def columns(line):
    return re.split(r"\s{2,}", line.strip())


def by_header(lines, names):
    """Cut table lines at the columns where the header's names start (cells may hold two spaces)."""
    starts = [lines[0].index(n) for n in names] + [None]
    return [[line[starts[i]:starts[i + 1]].strip() for i in range(len(names))] for line in lines[1:]]


def load_into(d, ns, *archives):
    for a in archives:
        d.berth("-n", ns, "load", "-i", a, check=True)


# --- images ---

def test_images_table_columns(d):
    p = d.berth("images", check=True)
    lines = rows(p.out)
    assert columns(lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    body = {tuple(columns(line)[:2]): columns(line) for line in lines[1:]}
    hello = body[("hello-world", "latest")]
    assert SHORT_ID.match(hello[2]), hello
    assert hello[3].endswith("ago"), hello
    assert re.match(r"^[0-9.]+(B|kB|MB|GB)$", hello[4]), hello
    assert ("busybox-layers", "latest") in body or ("busybox-layers", "1") in body


def test_images_quiet_one_row_per_name(d):
    ns = ns_name()
    load_into(d, ns, HELLO)
    d.berth("-n", ns, "tag", "hello-world:latest", "extra/name:1", check=True)
    ids = rows(d.berth("-n", ns, "images", "-q", check=True).out)
    assert len(ids) == 2, ids
    assert len(set(ids)) == 1 and SHORT_ID.match(ids[0]), ids


def test_images_no_trunc_digests_all(d):
    full = rows(d.berth("images", "--no-trunc", "-q", check=True).out)
    assert full and all(FULL_ID.match(i) for i in full), full
    table = rows(d.berth("images", "--no-trunc", check=True).out)
    assert all(FULL_ID.match(columns(r)[2]) for r in table[1:]), table
    dig = rows(d.berth("images", "--digests", check=True).out)
    assert columns(dig[0]) == ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    hello = next(columns(r) for r in dig[1:] if r.startswith("hello-world "))
    assert hello[2] == "<none>", hello  # a loaded image has no RepoDigests (dockerd's: only pulls and pushes make them)
    every = rows(d.berth("images", "-a", check=True).out)
    assert columns(every[0])[0] == "REPOSITORY" and len(every) >= 3


def test_images_filters(d, rootfs):
    ns = ns_name()
    load_into(d, ns, HELLO, BUSYBOX_LAYERS)
    d.berth("-n", ns, "tag", "hello-world:latest", "other/hello:2", check=True)
    d.berth("-n", ns, "import", rootfs, check=True)  # no name: a dangling image

    def names(*args):
        return sorted(":".join(columns(r)[:2]) for r in rows(d.berth("-n", ns, "images", *args, check=True).out)[1:])

    # only the names that match are listed, not the image's other tags (as dockerd)
    assert names("--filter", "reference=hello-world") == ["hello-world:latest"]
    assert names("--filter", "reference=hello-world:latest") == ["hello-world:latest"]
    assert names("--filter", "reference=other/*") == ["other/hello:2"]
    assert names("--filter", "reference=*hello*") == ["hello-world:latest"]  # `*` does not cross `/`
    assert names("--filter", "reference=busybox*") == ["busybox-layers:1"]
    assert names("--filter", "reference=nothing-like-it") == []
    assert names("--filter", "dangling=true") == ["<none>:<none>"]
    assert names("--filter", "dangling=false") == ["busybox-layers:1", "hello-world:latest", "other/hello:2"]
    # a positional REPOSITORY is a reference filter too
    assert names("hello-world") == ["hello-world:latest"]
    assert names("other/hello:2") == ["other/hello:2"]
    bad = d.berth("-n", ns, "images", "--filter", "nonsense")
    one_line_error(bad, code=125)  # a flag's value that does not parse, as docker


def test_images_format(d):
    p = d.berth("images", "--format", "{{.Repository}}:{{.Tag}}", check=True)
    assert "hello-world:latest" in rows(p.out)
    assert "REPOSITORY" not in p.out

    p = d.berth("images", "--format", "json", check=True)
    objs = [json.loads(line) for line in rows(p.out)]
    hello = next(o for o in objs if o["Repository"] == "hello-world")
    assert hello["Tag"] == "latest" and SHORT_ID.match(hello["ID"])
    for key in ("CreatedSince", "CreatedAt", "Size", "Digest"):
        assert key in hello

    p = d.berth("images", "--format", "table {{.ID}}\t{{.Repository}}", check=True)
    lines = rows(p.out)
    assert columns(lines[0]) == ["IMAGE ID", "REPOSITORY"]
    cells = [columns(r) for r in lines[1:]]
    assert all(SHORT_ID.match(c[0]) for c in cells) and ["hello-world"] == [c[1] for c in cells if c[1] == "hello-world"]

    bad = d.berth("images", "--format", "{{.NoSuchField}}")
    one_line_error(bad, code=1)  # as docker: status 1, its message (tests/test_gotemplate.py compares them)


# --- rmi ---

def test_rmi_untags_then_deletes(d):
    ns = ns_name()
    load_into(d, ns, HELLO)
    d.berth("-n", ns, "tag", "hello-world", "second:1", check=True)
    iid = d.berth("-n", ns, "inspect", "-f", "{{.Id}}", "hello-world", check=True).out.strip()

    # by ID, with two names: refused without -f (as docker), nothing changes
    p = d.berth("-n", ns, "rmi", iid[7:19])
    assert p.returncode != 0
    assert "must be forced" in p.err and len(p.err.strip().splitlines()) == 1, p.err
    assert len(rows(d.berth("-n", ns, "images", "-q", check=True).out)) == 2

    # one of two names: only untagged
    p = d.berth("-n", ns, "rmi", "second:1", check=True)
    assert "Untagged: second:1" in p.out
    assert "Deleted:" not in p.out
    assert rows(d.berth("-n", ns, "images", "--format", "{{.Repository}}:{{.Tag}}", check=True).out) == \
        ["hello-world:latest"]

    # the last name: the image goes
    p = d.berth("-n", ns, "rmi", "hello-world", check=True)
    assert "Untagged: hello-world:latest" in p.out
    assert f"Deleted: {iid}" in p.out
    assert rows(d.berth("-n", ns, "images", "-a", "-q", check=True).out) == []
    # ... but not from the other namespaces
    assert d.berth("inspect", "-f", "{{.Id}}", "hello-world", check=True).out.strip() == iid


def test_rmi_by_id_with_force(d):
    ns = ns_name()
    load_into(d, ns, HELLO)
    d.berth("-n", ns, "tag", "hello-world", "second:1", check=True)
    iid = d.berth("-n", ns, "inspect", "-f", "{{.Id}}", "hello-world", check=True).out.strip()
    p = d.berth("-n", ns, "rmi", "-f", iid[7:19], check=True)
    assert "Untagged: hello-world:latest" in p.out and "Untagged: second:1" in p.out
    assert f"Deleted: {iid}" in p.out
    assert rows(d.berth("-n", ns, "images", "-a", "-q", check=True).out) == []


# --- history and inspect ---

def test_history(d):
    p = d.berth("history", "hello-world", check=True)
    lines = rows(p.out)
    assert columns(lines[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    first, second = by_header(lines, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"])
    assert SHORT_ID.match(first[0]) and second[0] == "<missing>"
    assert first[2] == '/bin/sh -c #(nop)  CMD ["/hello"]' and first[3] == "0B"
    assert second[2].startswith("/bin/sh -c #(nop) COPY file:") and second[2].endswith("…")

    full = rows(d.berth("history", "--no-trunc", "hello-world", check=True).out)
    assert FULL_ID.match(columns(full[1])[0])
    assert re.search(r"COPY file:[0-9a-f]{64} in /", full[2]), full[2]

    q = rows(d.berth("history", "-q", "hello-world", check=True).out)
    assert len(q) == 2 and SHORT_ID.match(q[0]) and q[1] == "<missing>"

    f = rows(d.berth("history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", "busybox-layers:1", check=True).out)
    assert f[0].split("|")[1] == '/bin/sh -c #(nop)  CMD ["sh"]'
    assert any("WORKDIR /data" in line for line in f)
    assert len(f) >= 5 and all(line.count("|") == 2 for line in f)


def test_inspect_format(d):
    iid = d.berth("inspect", "-f", "{{.Id}}", "hello-world", check=True).out.strip()
    assert FULL_ID.match(iid)
    assert iid in d.berth("images", "--no-trunc", "-q", check=True).out
    cfg = json.loads(d.berth("inspect", "-f", "{{json .Config}}", "hello-world", check=True).out)
    assert cfg["Cmd"] == ["/hello"]
    assert any(e.startswith("PATH=") for e in cfg["Env"])
    whole = json.loads(d.berth("inspect", "busybox-layers:1", check=True).out)
    assert len(whole) == 1 and whole[0]["Config"]["WorkingDir"] == "/data"
    assert "FIXTURE=busybox-layers" in whole[0]["Config"]["Env"]
    assert len(whole[0]["RootFS"]["Layers"]) == 2


# --- import ---

def test_import_from_file(d, rootfs):
    ns = ns_name()
    p = d.berth("-n", ns, "import", rootfs, "imported:file", check=True)
    assert FULL_ID.match(p.out.strip().splitlines()[-1]), p.out
    i = json.loads(d.berth("-n", ns, "inspect", "imported:file", check=True).out)[0]
    assert i["Id"] == p.out.strip().splitlines()[-1]
    assert i["RepoTags"] == ["imported:file"]
    assert len(i["RootFS"]["Layers"]) == 1
    assert i["Os"] == "linux" and i["Architecture"]


def test_import_from_stdin_with_changes(d, rootfs):
    ns = ns_name()
    changes = ['CMD ["sh"]', "ENV A=1", "WORKDIR /w", "EXPOSE 80/tcp", "LABEL a=b", "USER 1000",
               'ENTRYPOINT ["/bin/sh","-c"]']
    args = []
    for c in changes:
        args += ["--change", c]
    with open(rootfs, "rb") as f:
        data = f.read()
    d.berth("-n", ns, "import", *args, "-m", "a message", "-", "imported:stdin", input=data, check=True)
    i = json.loads(d.berth("-n", ns, "inspect", "imported:stdin", check=True).out)[0]
    c = i["Config"]
    assert c["Cmd"] == ["sh"]
    assert "A=1" in c["Env"]
    assert c["WorkingDir"] == "/w"
    assert "80/tcp" in c["ExposedPorts"]
    assert c["Labels"] == {"a": "b"}
    assert c["User"] == "1000"
    assert c["Entrypoint"] == ["/bin/sh", "-c"]
    assert i["Comment"] == "a message"
    h = rows(d.berth("-n", ns, "history", "imported:stdin", check=True).out)
    assert h[1].rstrip().endswith("a message")


def test_import_unsupported_change(d, rootfs):
    ns = ns_name()
    with open(rootfs, "rb") as f:
        data = f.read()
    blobs_before = blobs(d)
    p = d.berth("-n", ns, "import", "--change", "RUN x", "-", "bad:1", input=data)
    line = one_line_error(p)
    assert "run is not a valid change command" in line  # dockerd's words
    assert rows(d.berth("-n", ns, "images", "-a", "-q", check=True).out) == []
    p = d.berth("-n", ns, "import", rootfs, "bad:2", "--change", "FROB a")
    one_line_error(p)
    assert rows(d.berth("-n", ns, "images", "-a", "-q", check=True).out) == []
    assert blobs(d) == blobs_before


def blobs(d):
    path = os.path.join(d.root, "content", "blobs", "sha256")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


# --- save and load ---

def test_save_stdout_load_stdin(d, tmp_path):
    ns = ns_name()
    p = d.berth("save", "hello-world", "busybox-layers:1", check=True)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    tags = sorted(tag for m in manifest for tag in m.get("RepoTags") or [])
    assert tags == ["busybox-layers:1", "hello-world:latest"]

    out = d.berth("-n", ns, "load", input=p.stdout, check=True).out
    assert "Loaded image: hello-world:latest" in out and "Loaded image: busybox-layers:1" in out
    ids = {n: d.berth("-n", ns, "inspect", "-f", "{{.Id}}", n, check=True).out.strip()
           for n in ("hello-world", "busybox-layers:1")}
    for n, i in ids.items():
        assert d.berth("inspect", "-f", "{{.Id}}", n, check=True).out.strip() == i

    # a real pipe between two berth processes, into a third namespace
    ns2 = ns_name()
    sh = f"{BERTH} -H {d.host} save hello-world busybox-layers:1 | {BERTH} -H {d.host} -n {ns2} load"
    r = subprocess.run(["sh", "-c", sh], capture_output=True, env=d.env(), timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    names = rows(d.berth("-n", ns2, "images", "--format", "{{.Repository}}:{{.Tag}}", check=True).out)
    assert sorted(names) == ["busybox-layers:1", "hello-world:latest"]

    # -o and -i
    out_file = str(tmp_path / "x.tar")
    d.berth("save", "-o", out_file, "hello-world", check=True)
    ns3 = ns_name()
    d.berth("-n", ns3, "load", "-i", out_file, check=True)
    assert rows(d.berth("-n", ns3, "images", "-q", check=True).out) == [ids["hello-world"][7:19]]


def test_save_to_terminal_refused(d):
    master, slave = pty.openpty()
    try:
        p = subprocess.run([BERTH, "-H", d.host, "save", "hello-world"], stdout=slave, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=d.env(), timeout=30, check=False)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 1  # as docker's "cowardly refusing to save to a terminal"
    err = p.stderr.decode()
    assert "terminal" in err and len(err.strip().splitlines()) == 1, err


def test_save_and_export_write_only_a_regular_file_as_the_docker_cli(d, tmp_path):
    """-o is checked before the daemon is asked, as the docker CLI's (moby's atomicwriter): a
    device, a directory, a pipe, a socket or a link is refused in its words and left as it was
    (berth renamed its archive over the target: `export -o /dev/null` replaced the host's
    /dev/null with a file); a new file is written whole, 0600, with nothing else left beside it."""
    import shutil
    import socket
    import stat
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    os.symlink("elsewhere.tar", tmp_path / "link")
    cid = d.berth("create", "busybox-layers:1", "true", check=True).out.strip()
    clis = [("berth", d.berth)] + ([("docker", d.docker)] if shutil.which("docker") else [])
    try:
        for target, why in (("null", "cannot write to a character device file"), ("dir", "cannot write to a directory"),
                            ("fifo", "cannot write to a named pipe (FIFO)"), ("sock", "cannot write to a socket"),
                            ("link", "cannot write to a symbolic link directly"),
                            ("nodir/x.tar", f"invalid output path: stat {tmp_path}/nodir: no such file or directory"),
                            ("null/x.tar", f"invalid output path: stat {tmp_path}/null: not a directory")):
            for name, cli in clis:
                for args, what in ((["export", cid], "failed to export container"),
                                   (["save", "hello-world"], "failed to save image")):
                    p = cli(args[0], "-o", str(tmp_path / target), *args[1:])
                    assert p.returncode == 1 and p.err.strip().endswith(f"{what}: {why}"), (name, target, p.err)
                    assert len(p.err.strip().splitlines()) == 1, p.err
        assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(tmp_path / "link").st_mode & stat.S_IFLNK
        assert sorted(os.listdir(tmp_path)) == ["dir", "fifo", "link", "null", "sock"]
        for args in (["export", cid], ["save", "hello-world"]):
            out = tmp_path / "dir" / "x.tar"
            (out).write_bytes(b"old")
            d.berth(args[0], "-o", str(out), *args[1:], check=True)
            with tarfile.open(out) as t:
                assert t.getnames()
            assert stat.S_IMODE(os.stat(out).st_mode) == 0o600 and os.listdir(tmp_path / "dir") == ["x.tar"]
    finally:
        sock.close()
        d.berth("rm", cid)


def test_load_of_garbage_fails(d):
    ns = ns_name()
    p = d.berth("-n", ns, "load", input=b"this is not a tar archive" * 100)
    assert p.returncode != 0
    assert "Traceback" not in p.err
    assert rows(d.berth("-n", ns, "images", "-a", "-q", check=True).out) == []


# --- image prune ---

def test_image_prune(d, rootfs):
    ns = ns_name()
    load_into(d, ns, HELLO)
    p = d.berth("-n", ns, "import", rootfs, check=True)  # no name: dangling
    dangling = p.out.strip().splitlines()[-1]
    listed = rows(d.berth("-n", ns, "images", "--no-trunc", check=True).out)
    assert any(columns(r)[:3] == ["<none>", "<none>", dangling] for r in listed), listed

    p = d.berth("-n", ns, "image", "prune", "-f", check=True)
    assert dangling in p.out
    assert re.search(r"^Total reclaimed space: [0-9.]+(B|kB|MB)$", p.out, re.MULTILINE), p.out
    assert rows(d.berth("-n", ns, "images", "-a", "--format", "{{.Repository}}", check=True).out) == \
        ["hello-world"]
    p = d.berth("-n", ns, "image", "prune", "-f", check=True)
    assert "Total reclaimed space: 0B" in p.out
    # without -f: asked on stdin, as docker; no answer (EOF) or "n" is no (status 0), nothing removed
    dangling = d.berth("-n", ns, "import", rootfs, check=True).out.strip().splitlines()[-1]
    for answer in (None, b"n\n"):
        p = d.berth("-n", ns, "image", "prune", input=answer)
        assert p.returncode == 0 and "Are you sure you want to continue? [y/N]" in p.out, (p.returncode, p.err)
        assert dangling in d.berth("-n", ns, "images", "-q", "--no-trunc", check=True).out
    p = d.berth("-n", ns, "image", "prune", input=b"y\n", check=True)
    assert dangling in p.out


# --- namespaces ---

def test_namespaces(d):
    ns = ns_name()
    d.berth("namespace", "create", ns, check=True)
    assert ns in rows(d.berth("namespace", "ls", "-q", check=True).out)
    table = rows(d.berth("namespace", "ls", check=True).out)
    assert columns(table[0]) == ["NAME", "LABELS"]
    assert any(columns(r)[0] == "default" for r in table[1:])
    info = json.loads(d.berth("namespace", "inspect", ns, check=True).out)
    assert info[0]["Name"] == ns
    one_line_error(d.berth("namespace", "create", ns))  # exists

    assert rows(d.berth("-n", ns, "images", "-q", check=True).out) == []
    load_into(d, ns, HELLO)
    assert len(rows(d.berth("--namespace", ns, "images", "-q", check=True).out)) == 1
    p = d.berth("namespace", "rm", ns)
    assert p.returncode != 0 and "not empty" in p.err
    assert ns in rows(d.berth("ns", "ls", "-q", check=True).out)
    d.berth("-n", ns, "rmi", "hello-world", check=True)
    p = d.berth("namespace", "rm", ns, check=True)
    assert ns not in rows(d.berth("namespace", "ls", "-q", check=True).out)
    one_line_error(d.berth("namespace", "create", "Bad_Name!"))
    one_line_error(d.berth("-n", "Bad Name", "images"))
    one_line_error(d.berth("namespace", "inspect", "no-such-ns"))


# --- info and version ---

def test_info(d):
    out = d.berth("info", check=True).out
    assert re.search(r"^ Runtimes: .*berth-runc", out, re.MULTILINE), out
    assert re.search(r"^ Default Runtime: berth-runc$", out, re.MULTILINE)
    assert re.search(r"^ Storage Driver: (overlayfs|native)$", out, re.MULTILINE)
    assert re.search(r"^ Cgroup Driver: cgroupfs$", out, re.MULTILINE)
    assert re.search(r"^ Cgroup Version: [12]$", out, re.MULTILINE)
    assert re.search(r"^ Namespace: default$", out, re.MULTILINE)
    assert re.search(r"^ Registry Mirrors:\n  " + re.escape(MIRROR), out, re.MULTILINE)
    assert re.search(r"^ Docker Root Dir: " + re.escape(d.root) + "$", out, re.MULTILINE)
    assert re.search(r"^ Server Version: \S+", out, re.MULTILINE)
    other = d.berth("-n", "infons", "info", check=True).out
    assert re.search(r"^ Namespace: infons$", other, re.MULTILINE)
    assert d.berth("info", "--format", "{{.DefaultRuntime}}", check=True).out.strip() == "berth-runc"


def test_version(d):
    out = d.berth("version", check=True).out
    assert re.search(r"^Client:\n Version: +\S+", out, re.MULTILINE), out
    assert re.search(r"^Server:\n Engine:\n  Version: +\S+", out, re.MULTILINE), out
    assert re.search(r"API version: +1\.(4[3-9]|[5-9][0-9])", out)
    assert d.berth("--version", check=True).out.startswith("berth version ")
    # no server: the client part, then one error line
    p = subprocess.run([BERTH, "-H", "unix:///nonexistent/berth.sock", "version"], capture_output=True,
                       env=d.env(), timeout=30, check=False)
    assert p.returncode == 1 and b"Client:" in p.stdout and b"Server:" not in p.stdout  # as docker
    assert len(p.stderr.decode().strip().splitlines()) == 1


# --- errors ---

def test_missing_image_errors(d):
    line = one_line_error(d.berth("history", "no-such-image:1"))
    assert line.endswith("No such image: no-such-image:1"), line
    one_line_error(d.berth("tag", "no-such-image:1", "x:1"))
    one_line_error(d.berth("image", "inspect", "no-such-image:1"), code=1)
    p = d.berth("rmi", "no-such-image:1")
    assert p.returncode != 0 and len(p.err.strip().splitlines()) == 1 and "Traceback" not in p.err


def test_invalid_reference_refused_before_io(d):
    # the daemon address does not exist: an error about the reference proves no I/O happened
    for args in (["pull", "Bad//Ref"], ["pull", "docker.io/UPPER/case"], ["pull", "busybox:tag!"], ["push", "a:b:c"],
                 ["tag", "hello-world", "NoCaps:1"], ["import", "/nonexistent.tar", "x@sha256:zz"]):
        p = subprocess.run([BERTH, "-H", "unix:///nonexistent/berth.sock", *args], capture_output=True,
                           env=d.env(), timeout=30, stdin=subprocess.DEVNULL, check=False)
        p.out, p.err = p.stdout.decode(), p.stderr.decode()
        line = one_line_error(p)
        assert "reference" in line and "connect" not in line, (args, line)


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_run_flag_values_refused_in_the_docker_clis_words(d):
    """Values of --ulimit, --blkio-weight-device, --add-host and size flags that the flag's syntax
    refuses: the docker CLI's own message, before any I/O (both given a daemon address where
    nothing listens). These were `internal error: ValueError`, or (--add-host) an error of the
    start after a create that worked (found by fuzzing `berth run`'s flags)."""
    cases = [["--blkio-weight-device", "bogus"], ["--blkio-weight-device", "de:ad"],
             ["--blkio-weight-device", "/dev/null"], ["--blkio-weight-device", "/dev/sda:5"],
             ["--ulimit", "0-1"], ["--ulimit", "type=tmpfs"], ["--ulimit", "nofile=a:b"], ["--ulimit", "nofile=5:1"],
             ["--ulimit", "nofile=1:"], ["--ulimit", "nofile=1:2:3"], ["--ulimit", "nofile=99999999999999999999"],
             ["--io-maxbandwidth", "10.0.0.1"], ["--memory", "1.2.3"], ["--shm-size", "bogus"],
             ["--add-host", "/"], ["--add-host", "h:"], ["--add-host", ":1.2.3.4"], ["--add-host", "h:1.2.3"]]
    for flags in cases:
        ours = subprocess_run([BERTH, "-H", "unix:///nonexistent/berth.sock", "run", *flags, "busybox", "true"], d.env())
        env = dict(d.env(), DOCKER_HOST="unix:///nonexistent/docker.sock")
        theirs = subprocess_run(["docker", "run", *flags, "busybox", "true"], env)
        line = one_line_error(ours, code=125)
        assert theirs.returncode == 125 and line == "berth: " + theirs.err.strip().splitlines()[0], (flags, line, theirs.err)
    # and values docker takes are taken
    p = d.berth("run", "--rm", "--ulimit", "nofile=512:1024", "--ulimit", "nproc=300", "busybox-layers:1", "sh", "-c",
                "ulimit -n; ulimit -Hn; ulimit -u")
    assert p.out.split() == ["512", "1024", "300"], p.err


def test_mount_bind_recursive_values_as_the_docker_cli(d):
    """--mount's bind-recursive (enabled, disabled, writable, readonly) and bind-nonrecursive, and
    the docker CLI's refusals of them in its words (berth took any value and dropped it)."""
    bad = ["bind-recursive", "bind-recursive=bogus", "bind-recursive=true", "bind-recursive=writable",
           "bind-recursive=readonly,bind-propagation=rprivate", "readonly,bind-recursive=readonly"]
    for opt in bad:
        flags = ["--mount", f"type=bind,src=/tmp,dst=/x,{opt}"]
        ours = subprocess_run([BERTH, "-H", "unix:///nonexistent/berth.sock", "run", *flags, "busybox", "true"], d.env())
        env = dict(d.env(), DOCKER_HOST="unix:///nonexistent/docker.sock")
        theirs = subprocess_run(["docker", "run", *flags, "busybox", "true"], env)
        assert theirs.returncode == ours.returncode != 0, (opt, ours.err, theirs.err)
        assert ours.err.strip().splitlines()[0] == "berth: " + theirs.err.strip().splitlines()[0], (opt, ours.err, theirs.err)
    for opt, want in (("bind-recursive=disabled", {"NonRecursive": True}), ("bind-nonrecursive", {"NonRecursive": True}),
                      ("readonly,bind-recursive=writable", {"ReadOnlyNonRecursive": True}),
                      ("readonly,bind-recursive=readonly,bind-propagation=rprivate",
                       {"ReadOnlyForceRecursive": True, "Propagation": "rprivate"}), ("bind-recursive=enabled", None)):
        cid = d.berth("create", "--mount", f"type=bind,src=/etc,dst=/x,{opt}", "busybox-layers:1", "true", check=True).out.strip()
        try:
            mounts = json.loads(d.berth("inspect", cid, check=True).out)[0]["HostConfig"]["Mounts"]
            assert mounts[0].get("BindOptions") == want, (opt, mounts)
        finally:
            d.berth("rm", cid)


def test_no_healthcheck_conflicts_with_every_health_flag_as_the_docker_cli(d):
    for flags in (["--health-cmd", "true"], ["--health-start-interval", "1s"], ["--health-retries", "2"]):
        ours = subprocess_run([BERTH, "-H", "unix:///nonexistent/berth.sock", "run", "--no-healthcheck", *flags,
                               "busybox", "true"], d.env())
        env = dict(d.env(), DOCKER_HOST="unix:///nonexistent/docker.sock")
        theirs = subprocess_run(["docker", "run", "--no-healthcheck", *flags, "busybox", "true"], env)
        assert ours.returncode == theirs.returncode == 125, (flags, ours.err, theirs.err)
        assert ours.err.strip().splitlines()[0] == "berth: " + theirs.err.strip().splitlines()[0].removeprefix("docker: ")


def test_unknown_command_and_flags(d):
    line = one_line_error(d.berth("frobnicate"))
    assert "frobnicate" in line
    one_line_error(d.berth("image", "frobnicate"))
    line = one_line_error(d.berth("images", "--bogus"), code=125)  # flags: 125, as docker
    assert "--bogus" in line
    line = one_line_error(subprocess_run([BERTH, "--bogus", "images"], d.env()), code=125)
    assert "--bogus" in line
    one_line_error(d.berth("history"))  # a missing argument: 1, as docker's "requires 1 argument"
    one_line_error(d.berth("history", "a", "b"))  # one too many: 1 too
    # a group without its command: its usage, status 0, as docker
    p = d.berth("network")
    assert p.returncode == 0 and "usage: berth network" in p.out, p.err


def subprocess_run(cmd, env, input=None):
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=60, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL, check=False)
    p.out, p.err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    return p


def test_no_daemon_at_explicit_host(d, tmp_path):
    before = os.path.exists("/run/berth")
    sock = tmp_path / "nothing-here.sock"
    t0 = time.monotonic()
    p = subprocess_run([BERTH, "-H", f"unix://{sock}", "images"], d.env())
    line = one_line_error(p)
    assert str(sock) in line
    assert time.monotonic() - t0 < 5
    assert not sock.exists()  # berthd was not started there
    assert "starting berthd" not in p.err
    assert os.path.exists("/run/berth") == before
    # the same with the address from BERTH_HOST / DOCKER_HOST
    for var in ("BERTH_HOST", "DOCKER_HOST"):
        p = subprocess_run([BERTH, "images"], d.env(**{var: f"unix://{sock}"}))
        one_line_error(p)
        assert not sock.exists()


# --- the client config ---

def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_client_config(d, tmp_path):
    ns = ns_name()
    load_into(d, ns, BUSYBOX_LAYERS)
    toml = write(tmp_path / "berth.toml",
                 f'address = "{d.host}"\nnamespace = "{ns}"\ndebug = false\ninsecure_registry = true\n'
                 f'hosts_dir = ["{d.certs_d}"]\ndata_root = "{d.root}"\ncgroup_manager = "cgroupfs"\n')
    # no -H: the address comes from the file; no -n: the namespace too
    p = subprocess_run([BERTH, "images", "--format", "{{.Repository}}:{{.Tag}}"], d.env(BERTH_TOML=toml))
    assert p.returncode == 0, p.err
    assert rows(p.out) == ["busybox-layers:1"]
    info = subprocess_run([BERTH, "info"], d.env(BERTH_TOML=toml)).out
    assert re.search(rf"^ Namespace: {ns}$", info, re.MULTILINE)
    # -n wins over the file
    p = subprocess_run([BERTH, "-n", "default", "images", "--format", "{{.Repository}}"], d.env(BERTH_TOML=toml))
    assert "hello-world" in rows(p.out)

    just_ns = write(tmp_path / "ns.toml", f'namespace = "{ns}"\n')
    p = d.berth("images", "-q", env=d.env(BERTH_TOML=just_ns), check=True)
    assert len(rows(p.out)) == 1


@pytest.mark.parametrize("text,what", [
    ('bogus_key = 1\n', "bogus_key"),
    ('namespace = 5\n', "namespace"),
    ('debug = "yes"\n', "debug"),
    ('address = ["unix:///x"]\n', "address"),
    ('cgroup_manager = "lxc"\n', "cgroup_manager"),
    ('namespace = \n', "TOML"),
])
def test_client_config_invalid(d, tmp_path, text, what):
    toml = write(tmp_path / "berth.toml", text)
    p = d.berth("images", env=d.env(BERTH_TOML=toml))
    line = one_line_error(p)
    assert what in line and toml in line


def test_client_config_missing_file(d, tmp_path):
    p = d.berth("images", env=d.env(BERTH_TOML=str(tmp_path / "absent.toml")))
    assert "absent.toml" in one_line_error(p)


def test_host_environment(d, tmp_path):
    nowhere = f"unix://{tmp_path}/nowhere.sock"
    for var in ("BERTH_HOST", "DOCKER_HOST"):
        p = subprocess_run([BERTH, "images", "-q"], d.env(**{var: d.host}))
        assert p.returncode == 0 and len(rows(p.out)) >= 2, p.err
        # -H wins over the environment
        p = subprocess_run([BERTH, "-H", nowhere, "images"], d.env(**{var: d.host}))
        assert "nowhere.sock" in one_line_error(p)
        p = subprocess_run([BERTH, "-H", d.host, "images", "-q"], d.env(**{var: nowhere}))
        assert p.returncode == 0, p.err
    # BERTH_HOST wins over DOCKER_HOST
    p = subprocess_run([BERTH, "images", "-q"], d.env(BERTH_HOST=d.host, DOCKER_HOST=nowhere))
    assert p.returncode == 0, p.err


# --- completion ---

def completion_env(d, **extra):
    return d.env(PATH=BIN + os.pathsep + os.environ.get("PATH", ""), BERTH_HOST=d.host, **extra)


def complete(d, *words, env=None):
    """COMPREPLY of the bash completion function for the command line `words` (the last one is
    being completed)."""
    arr = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    script = (f"source <(berth completion bash) || exit 3\nCOMP_WORDS=({arr})\nCOMP_CWORD={len(words) - 1}\n"
              "_berth\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=env or completion_env(d), timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.decode().split("\n") if w]


def test_completion_bash_registers(d):
    p = subprocess.run(["bash", "-c", "source <(berth completion bash) && complete -p berth"], capture_output=True,
                       env=completion_env(d), timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert b"complete -F _berth berth" in p.stdout


def test_completion_bash_words(d):
    assert sorted(complete(d, "berth", "pu")) == ["pull", "push"]
    assert "images" in complete(d, "berth", "")
    assert complete(d, "berth", "images", "--no") == ["--no-trunc"]
    assert "--digests" in complete(d, "berth", "images", "--")
    assert complete(d, "berth", "rmi", "hel") == ["hello-world:latest"]
    assert "busybox-layers:1" in complete(d, "berth", "history", "")
    assert "hello-world:latest" in complete(d, "berth", "image", "rm", "")
    assert sorted(complete(d, "berth", "namespace", "")) == ["create", "inspect", "list", "ls", "remove", "rm"]
    assert "default" in complete(d, "berth", "-n", "")
    assert complete(d, "berth", "completion", "f") == ["fish"]


def test_completion_uses_host_and_namespace_of_the_line(d):
    ns = ns_name()
    load_into(d, ns, BUSYBOX_LAYERS)
    d.berth("-n", ns, "tag", "busybox-layers:1", "only-in-this-ns:1", check=True)
    env = completion_env(d)
    del env["BERTH_HOST"]
    assert complete(d, "berth", "-H", d.host, "-n", ns, "rmi", "on", env=env) == ["only-in-this-ns:1"]
    assert complete(d, "berth", "-H", d.host, "rmi", "on", env=env) == []


def test_completion_zsh_fish(d):
    for shell in ("zsh", "fish"):
        p = d.berth("completion", shell, check=True)
        assert "berth" in p.out and len(p.out) > 100
    if shutil.which("fish"):
        p = d.berth("completion", "fish", check=True)
        r = subprocess.run(["fish", "-n"], input=p.stdout, capture_output=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
    if shutil.which("zsh"):
        p = d.berth("completion", "zsh", check=True)
        r = subprocess.run(["zsh", "-n"], input=p.stdout, capture_output=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
    one_line_error(d.berth("completion", "tcsh"))


# --- autostart at the default socket ---

DEFAULT_SOCK = "/run/berth/berth.sock"


def _answers(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet
    except FileNotFoundError:
        return True


def test_autostart(tmp_path):
    if _answers(DEFAULT_SOCK):
        pytest.skip("a daemon already answers at /run/berth/berth.sock")
    for path in ("/var/lib/berth", "/etc/berth/berthd.toml", "/etc/berth/berth.toml"):
        if os.path.exists(path):
            pytest.skip(f"{path} exists: this host is set up for berth; not touching it")
    if os.geteuid() != 0:
        pytest.skip("only root can start berthd")
    run_existed = os.path.exists("/run/berth")
    log_existed = os.path.exists("/run/berth/berthd.log")
    etc_existed = os.path.exists("/etc/berth")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("BERTH_HOST", "DOCKER_HOST", "BERTH_NAMESPACE")}
    env.update(HOME=str(home), BERTH_TOML=write(tmp_path / "empty.toml", ""))
    pid = None
    try:
        p = subprocess_run([BERTH, "images"], env)
        assert p.returncode == 0, p.err
        assert columns(rows(p.out)[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        assert "starting berthd" in p.err
        assert _answers(DEFAULT_SOCK)
        with open("/run/berth/berthd.pid") as f:
            pid = int(f.read().strip())
        assert os.path.isdir("/var/lib/berth")
        # the next command finds it running
        p = subprocess_run([BERTH, "info", "--format", "{{.DockerRootDir}}"], env)
        assert p.returncode == 0 and p.out.strip() == "/var/lib/berth" and "starting" not in p.err
    finally:
        if pid is None and os.path.exists("/run/berth/berthd.pid"):
            with open("/run/berth/berthd.pid") as f:
                pid = int(f.read().strip() or 0) or None
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: _gone(pid), 20, "the started berthd to exit")
            except ProcessLookupError:
                pass
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith("/var/lib/berth")]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        shutil.rmtree("/var/lib/berth", ignore_errors=True)
        if not run_existed:
            shutil.rmtree("/run/berth", ignore_errors=True)
        elif not log_existed and os.path.exists("/run/berth/berthd.log"):
            os.unlink("/run/berth/berthd.log")  # written by the autostart
        if not etc_existed and os.path.isdir("/etc/berth"):
            shutil.rmtree("/etc/berth", ignore_errors=True)


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_labels_column_sorted_as_the_docker_cli(d):
    """`ps --format {{.Labels}}` writes "k=v" pairs sorted as strings (a key that another key
    begins: "a.b=..." before "a=..."), as the docker CLI; berth sorted them by key."""
    d.berth("create", "--name", "lbl", "--label", "a=1", "--label", "a.b=2", "--label", "a-c=3",
            "busybox-layers:1", "true", check=True)
    try:
        fmt = ["ps", "-a", "--filter", "name=lbl", "--format", "{{.Labels}}"]
        ours, theirs = d.berth(*fmt, check=True).out, d.docker(*fmt, check=True).out
        assert ours == theirs == "a-c=3,a.b=2,a=1,org.example.fixture=busybox-layers\n"
    finally:
        d.berth("rm", "-f", "lbl")
