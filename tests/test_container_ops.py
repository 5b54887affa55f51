"""pause/unpause, rename, top, stats, cp, port, diff and container prune, through berth and the
real docker CLI against berthd."""

import io
import json
import os
import shutil
import tarfile
import time
import uuid

import pytest
from daemon_fixtures import DATA, Daemon, wait_for

BUSYBOX = os.path.join(DATA, "busybox-layers.docker.tar")
IMAGE = "busybox-layers:1"

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("berthd"))
    d.start()
    try:
        d.berth("load", "-i", BUSYBOX, check=True)
        yield d
    finally:
        for cid in d.berth("ps", "-aq", "--no-trunc").out.split():
            d.berth("rm", "-f", cid)
        d.cleanup()


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def box(eng):
    """A running container (sleep), removed afterwards."""
    names = []

    def make(cmd=("sleep", "600"), name=None):
        name = name or _name("ops")
        eng.berth("run", "-d", "--name", name, IMAGE, *cmd, check=True)
        names.append(name)
        return name
    yield make
    for n in names:
        eng.berth("rm", "-f", n)


def _inspect(eng, name):
    return json.loads(eng.docker("inspect", name, check=True).out)[0]


def _mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


# --- cp ---

def test_cp_file_in_and_out(eng, box, tmp_path):
    c = box()
    src = tmp_path / "in.txt"
    src.write_text("hello from the host\n")
    eng.docker("cp", str(src), f"{c}:/tmp/", check=True)
    eng.berth("cp", f"{c}:/tmp/in.txt", str(tmp_path / "out-berth.txt"), check=True)
    assert (tmp_path / "out-berth.txt").read_text() == "hello from the host\n"
    # the other way round, with a new name on each side
    eng.berth("cp", str(src), f"{c}:/data/renamed.txt", check=True)
    eng.docker("cp", f"{c}:/data/renamed.txt", str(tmp_path / "out-docker.txt"), check=True)
    assert (tmp_path / "out-docker.txt").read_text() == "hello from the host\n"
    # into an existing directory, and to stdout as a tar
    eng.berth("cp", f"{c}:/data/renamed.txt", str(tmp_path), check=True)
    assert (tmp_path / "renamed.txt").read_text() == "hello from the host\n"
    p = eng.docker("cp", f"{c}:/data/renamed.txt", "-", check=True)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        assert t.getnames() == ["renamed.txt"]
        assert t.extractfile("renamed.txt").read() == b"hello from the host\n"
    # a file of the image (a lower layer), read through the image's own symlink
    eng.docker("cp", "-L", f"{c}:/data/link", str(tmp_path / "link.txt"), check=True)
    assert (tmp_path / "link.txt").read_text() == "layered\n"
    # missing paths
    p = eng.berth("cp", f"{c}:/nope", str(tmp_path / "x"))
    assert p.returncode != 0 and "Could not find the file /nope" in p.err
    p = eng.docker("cp", f"{c}:/nope", str(tmp_path / "x"))
    assert p.returncode != 0 and "Could not find the file /nope" in p.err


def test_cp_keeps_file_capabilities(eng, box, tmp_path):
    """A file's capabilities (security.capability, here CAP_SETUID: a byte >= 0x80) cross `cp`
    both ways as their raw bytes, with docker's CLI reading and writing the tars."""
    import struct
    cap = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)
    c = box()
    src = tmp_path / "capped"
    src.write_bytes(b"#!/bin/sh\n")
    os.setxattr(src, "security.capability", cap)
    eng.docker("cp", str(src), f"{c}:/tmp/capped", check=True)
    eng.docker("cp", f"{c}:/tmp/capped", str(tmp_path / "back-docker"), check=True)
    assert os.getxattr(tmp_path / "back-docker", "security.capability") == cap
    eng.berth("cp", f"{c}:/tmp/capped", str(tmp_path / "back-berth"), check=True)
    assert os.getxattr(tmp_path / "back-berth", "security.capability") == cap


def test_cp_directory_both_ways(eng, box, tmp_path):
    c = box()
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a\n")
    (d / "sub" / "b.txt").write_text("b\n")
    os.symlink("a.txt", d / "ln")
    os.chmod(d / "sub" / "b.txt", 0o640)
    eng.docker("cp", str(d), f"{c}:/tmp/tree", check=True)
    eng.berth("cp", str(d), f"{c}:/tmp/tree2", check=True)
    for via, name in (("docker", "tree"), ("berth", "tree2")):
        out = tmp_path / f"back-{via}-{name}"
        getattr(eng, via)("cp", f"{c}:/tmp/{name}", str(out), check=True)
        assert (out / "a.txt").read_text() == "a\n"
        assert (out / "sub" / "b.txt").read_text() == "b\n"
        assert os.readlink(out / "ln") == "a.txt"
        assert os.stat(out / "sub" / "b.txt").st_mode & 0o777 == 0o640
    # "dir/." copies the contents into an existing directory
    dest = tmp_path / "contents"
    dest.mkdir()
    eng.berth("cp", f"{c}:/tmp/tree/.", str(dest), check=True)
    assert sorted(os.listdir(dest)) == ["a.txt", "ln", "sub"]
    # the files belong to root inside the container (docker's default without -a)
    p = eng.docker("cp", f"{c}:/tmp/tree/sub/b.txt", "-", check=True)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        [m] = t.getmembers()
    assert (m.name, m.uid, m.gid, m.mode) == ("b.txt", 0, 0, 0o100640)  # the type's bits too, as dockerd's
    # a directory cannot replace a file
    p = eng.berth("cp", str(d), f"{c}:/data/sub/file")
    assert p.returncode != 0 and "cannot copy directory" in p.err


def test_cp_symlinks_never_leave_the_container(eng, box, tmp_path):
    host_only = tmp_path / "host-only"
    host_only.mkdir()
    (tmp_path / "host-secret").write_text("host secret\n")
    # the container makes its links (and its own /etc/passwd) itself
    c = box(("sh", "-c",
             ("ln -s /etc/passwd /tmp/pw && ln -s ../../../../../../../etc /tmp/up && "
             f"ln -s / /tmp/rootlink && ln -s {host_only} /tmp/hostdir && "
             f"ln -s {tmp_path}/host-secret /tmp/secret && ln -s ../../../../../../..{tmp_path} /tmp/uptmp && "
             "echo container-passwd > /etc/passwd && touch /tmp/ready && exec sleep 600")))
    deadline = time.monotonic() + 10
    while eng.berth("cp", f"{c}:/tmp/ready", "-").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    # links to paths that only exist on the host lead nowhere
    for args in (("-L", f"{c}:/tmp/secret"), (f"{c}:/tmp/uptmp/host-secret",),
                 (f"{c}:/tmp/rootlink{tmp_path}/host-secret",)):
        for via in ("berth", "docker"):
            out = tmp_path / f"o-{uuid.uuid4().hex[:6]}"
            p = getattr(eng, via)("cp", *args, str(out))
            assert p.returncode != 0 and "Could not find the file" in p.err, (via, args, p.out)
            assert not out.exists()
    # links to /etc/passwd give the container's, never the host's
    with open("/etc/passwd") as f:
        assert f.read() != "container-passwd\n"
    for args in (("-L", f"{c}:/tmp/pw"), (f"{c}:/tmp/up/passwd",), (f"{c}:/tmp/rootlink/etc/passwd",)):
        for via in ("berth", "docker"):
            out = tmp_path / f"o-{uuid.uuid4().hex[:6]}"
            getattr(eng, via)("cp", *args, str(out), check=True)
            assert out.read_text() == "container-passwd\n"
    # without -L the link itself is copied
    eng.berth("cp", f"{c}:/tmp/pw", str(tmp_path / "pw-link"), check=True)
    assert os.readlink(tmp_path / "pw-link") == "/etc/passwd"
    # writing through a link to a host path lands inside the container, or nowhere
    src = tmp_path / "f.txt"
    src.write_text("x\n")
    for via in ("berth", "docker"):
        getattr(eng, via)("cp", str(src), f"{c}:/tmp/hostdir/")
        getattr(eng, via)("cp", str(src), f"{c}:/tmp/rootlink{host_only}/")
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as t:
        ti = tarfile.TarInfo("esc")
        ti.type, ti.linkname = tarfile.SYMTYPE, str(host_only)
        t.addfile(ti)
        ti = tarfile.TarInfo("esc/pwned")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"pw\n"))
    eng.docker("cp", "-", f"{c}:/tmp", input=evil.getvalue(), check=True)
    dotdot = io.BytesIO()
    with tarfile.open(fileobj=dotdot, mode="w") as t:
        ti = tarfile.TarInfo("../../../.." + str(host_only) + "/pwned2")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"pw\n"))
    p = eng.berth("cp", "-", f"{c}:/tmp", input=dotdot.getvalue())
    assert p.returncode != 0 and "outside of" in p.err
    assert os.listdir(host_only) == []
    # the symlinked entry was followed inside the container's root
    eng.berth("cp", f"{c}:{host_only}/pwned", str(tmp_path / "pwned"), check=True)
    assert (tmp_path / "pwned").read_text() == "pw\n"


def test_cp_stopped_container(eng, tmp_path):
    name = _name("stopped")
    eng.berth("create", "--name", name, IMAGE, "true", check=True)
    try:
        src = tmp_path / "f.txt"
        src.write_text("into a created container\n")
        eng.docker("cp", str(src), f"{name}:/data/", check=True)
        eng.berth("cp", f"{name}:/data/f.txt", str(tmp_path / "back.txt"), check=True)
        assert (tmp_path / "back.txt").read_text() == "into a created container\n"
        assert _mounts_under(eng.state) == []  # the snapshot was mounted only for the copy
        assert not any(name in m or _inspect(eng, name)["Id"] in m for m in _mounts_under(eng.base))
        eng.berth("start", name, check=True)
        eng.berth("wait", name, check=True)
        eng.docker("cp", f"{name}:/data/f.txt", str(tmp_path / "after.txt"), check=True)
        assert (tmp_path / "after.txt").read_text() == "into a created container\n"
    finally:
        eng.berth("rm", "-f", name)


def test_cp_out_refuses_a_device_or_a_missing_directory_as_the_docker_cli(eng, box, tmp_path):
    """The local destination is checked before the daemon is asked, in the docker CLI's words:
    a device is refused and left as it was (berth wrote a file in its place: `cp c:/f /dev/null`
    replaced the host's /dev/null), a missing directory or a path under a non-directory is an
    error of one line (berth's was an internal error)."""
    import stat
    c = box()
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for dst, why in ((str(dev), f'invalid output path: "{dev}" must be a directory or a regular file: got a device'),
                     (str(tmp_path / "nodir" / "x"), f'invalid output path: directory "{tmp_path}/nodir" does not exist'),
                     (str(dev / "x"), f"stat {dev}/x: not a directory")):
        for cli in (eng.berth, eng.docker):
            p = cli("cp", f"{c}:/etc/hostname", dst)
            assert p.returncode == 1 and p.err.strip().splitlines() == [p.err.strip().splitlines()[0]], p.err
            assert p.err.strip().endswith(why), (dst, p.err)
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and sorted(os.listdir(tmp_path)) == ["null"]


def test_cp_into_a_file_path_ending_in_a_slash_is_refused(eng, box, tmp_path):
    """`cp f c:/file/` (a directory asked for, a file there): no such directory, nothing written,
    as with dockerd; the path's stat fails as its copy does (berth's stat answered for the file,
    so the docker CLI copied over it)."""
    c = box(("sh", "-c", "mkdir -p /x/y && echo in > /x/y/z && ln -s /x/y/z /x/l && exec sleep 600"))
    wait_for(lambda: eng.berth("exec", c, "cat", "/x/y/z").out == "in\n", 10, "the file")
    src = tmp_path / "f"
    src.write_text("new\n")
    for cli in (eng.berth, eng.docker):
        for dst in ("/x/y/z/", "/x/y/z/.", "/x/l/"):
            p = cli("cp", str(src), f"{c}:{dst}")
            # (the docker CLI's tar writer may log its closed pipe before or after: its own race)
            said = [x for x in p.err.strip().splitlines() if "level=error" not in x]
            assert p.returncode == 1 and said[-1].endswith("no such directory"), (dst, p.err)
    assert eng.berth("exec", c, "cat", "/x/y/z").out == "in\n"
    # and the stat itself, as the copy out: a 400, not the file's stat
    cid = _inspect(eng, c)["Id"]
    for dst in ("/x/y/z/", "/x/l/"):
        p = eng.docker("cp", f"{c}:{dst}", str(tmp_path / "out"))
        assert p.returncode == 1 and "not a directory" in p.err, p.err
    import docker
    api = docker.APIClient(base_url="unix://" + eng.sock, timeout=30)
    try:  # the stat names the path's base as given, as dockerd's
        assert [api.get_archive(cid, p)[1]["name"] for p in ("/x/y/.", "/x/y/", "/x/l", "/")] == [".", "y", "l", "/"]
    finally:
        api.close()


# --- pause, top, stats ---

def _log_lines(eng, name):
    return len(eng.berth("logs", name, check=True).out.split())


def test_pause_and_unpause(eng, box):
    c = box(("sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"))
    eng.docker("pause", c, check=True)
    assert _inspect(eng, c)["State"]["Status"] == "paused"
    assert "(Paused)" in eng.berth("ps", "--filter", f"name={c}").out
    assert "(Paused)" in eng.docker("ps", "--filter", f"name={c}").out
    before = _log_lines(eng, c)
    time.sleep(0.6)
    assert _log_lines(eng, c) == before  # frozen
    p = eng.berth("pause", c)
    assert p.returncode != 0 and "already paused" in p.err
    # a paused one is not removed without -f, in dockerd's words (its state, and the way out)
    cid = _inspect(eng, c)["Id"]
    p = eng.docker("rm", c)
    assert p.returncode == 1 and p.err.strip() == (f"Error response from daemon: You cannot remove a paused container "
                                                   f"{cid}. Unpause and then stop the container before attempting "
                                                   "removal or force remove"), p.err
    eng.berth("unpause", c, check=True)
    assert _inspect(eng, c)["State"]["Status"] == "running"
    deadline = time.monotonic() + 5
    while _log_lines(eng, c) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _log_lines(eng, c) > before
    p = eng.docker("unpause", c)
    assert p.returncode != 0 and "is not paused" in p.err


def test_top_lists_the_processes(eng, box):
    c = box(("sleep", "600"))
    pid = _inspect(eng, c)["State"]["Pid"]
    for via in ("berth", "docker"):
        lines = getattr(eng, via)("top", c, check=True).out.splitlines()
        assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        rows = [line.split() for line in lines[1:]]
        assert [(r[1], r[-2:]) for r in rows] == [(str(pid), ["sleep", "600"])]
    lines = eng.docker("top", c, "-o", "pid,comm", check=True).out.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and lines[1].split() == [str(pid), "sleep"]
    name = _name("notrunning")
    eng.berth("create", "--name", name, IMAGE, check=True)
    try:
        p = eng.berth("top", name)
        assert p.returncode != 0 and "is not running" in p.err
    finally:
        eng.berth("rm", name)


def test_stats_no_stream(eng, box):
    c = box(("sleep", "600"))
    out = eng.berth("stats", "--no-stream", c, check=True).out.splitlines()
    assert out[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                              "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    cells = out[1].split()
    assert cells[1] == c and cells[-1] == "1"
    usage = cells[3]
    assert usage.endswith("iB") and float(usage.rstrip("KMGiB")) > 0, out
    p = eng.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", c, check=True)
    name, used, _, _limit, pids = p.out.split()
    assert name == c and pids == "1" and used != "0B"
    # the API's shape
    from berth.client.api import APIClient
    s = APIClient(eng.host).container_stats(c, stream=False)
    assert s["name"] == "/" + c and s["memory_stats"]["usage"] > 0 and s["memory_stats"]["limit"] > 0
    assert s["pids_stats"]["current"] == 1
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
    assert s["precpu_stats"]["system_cpu_usage"] < s["cpu_stats"]["system_cpu_usage"]


# --- diff, port, rename, prune ---

def test_diff_shows_changes(eng, box):
    c = box(("sh", "-c", "echo new > /data/added && rm /data/sub/file && sleep 600"))
    deadline = time.monotonic() + 10
    want = {"C /data", "A /data/added", "C /data/sub", "D /data/sub/file"}
    while time.monotonic() < deadline:
        lines = set(eng.docker("diff", c, check=True).out.splitlines())
        if want <= lines:
            break
        time.sleep(0.1)
    assert want <= lines, lines
    out = eng.berth("diff", c, check=True).out.splitlines()
    assert want <= set(out)
    assert not any("/etc/host" in line or "resolv.conf" in line for line in out)  # runtime mount points


def test_port_is_empty_without_networking(eng, box):
    c = box()
    for via in ("berth", "docker"):
        p = getattr(eng, via)("port", c, check=True)
        assert p.out == ""


def test_rename(eng, box):
    c = box()
    new = _name("renamed")
    eng.docker("rename", c, new, check=True)
    names = eng.berth("ps", "--format", "{{.Names}}", check=True).out.split()
    assert new in names and c not in names
    assert new in eng.docker("ps", "--format", "{{.Names}}", check=True).out.split()
    other = box()
    p = eng.berth("rename", other, new)
    assert p.returncode != 0 and "already in use" in p.err
    eng.berth("rename", new, c, check=True)  # back, so the fixture removes it
    assert c in eng.berth("ps", "--format", "{{.Names}}").out.split()


def test_container_prune_removes_only_stopped(eng, box):
    running = box()
    exited = _name("exited")
    eng.berth("run", "--name", exited, IMAGE, "true", check=True)
    exited2 = _name("exited")
    eng.docker("run", "--name", exited2, IMAGE, "true", check=True)
    ids = {n: _inspect(eng, n)["Id"] for n in (running, exited, exited2)}
    p = eng.docker("container", "prune", "-f", check=True)
    assert ids[exited] in p.out and ids[exited2] in p.out and ids[running] not in p.out
    assert "Total reclaimed space:" in p.out
    names = eng.berth("ps", "-a", "--format", "{{.Names}}", check=True).out.split()
    assert running in names and exited not in names and exited2 not in names
    p = eng.berth("container", "prune", "-f", check=True)
    assert p.out.strip() == "Total reclaimed space: 0B"


def _at_once(fn, n=6):
    """fn() from n threads at the same moment: each one's outcome, "ok" or the API error's
    "<status> <message>"."""
    import threading
    import docker
    gate, out = threading.Barrier(n), []

    def one():
        gate.wait()
        try:
            fn()
            out.append("ok")
        except docker.errors.APIError as e:
            out.append(f"{e.status_code} {e.explanation}")
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return sorted(out)


def test_the_same_operation_from_several_clients_at_once(eng, box):
    """One operation on one container from six clients at the same moment, as against dockerd:
    one does it and the others get the answer they would get after it, in dockerd's words
    (berth: two connects each added an eth1, the second failing in the bridge plugin with a
    500; commits each paused the container, all but one failing "container is already paused";
    a second pause failed in the runtime's words; creates with one name, the store's words)."""
    import docker
    api = docker.APIClient(base_url=eng.host, timeout=60)
    try:
        name = box()
        cid = _inspect(eng, name)["Id"]
        net = _name("once")
        eng.docker("network", "create", net, check=True)
        try:
            got = _at_once(lambda: api.connect_container_to_network(name, net))
            assert got == [f"403 endpoint with name {name} already exists in network {net}"] * 5 + ["ok"], got
            assert eng.docker("exec", name, "ls", "/sys/class/net", check=True).out.split() == ["eth0", "eth1", "lo"]
            got = _at_once(lambda: api.disconnect_container_from_network(name, net))
            assert got == ["409 container %s is not connected to network %s" % (cid, net)] * 5 + ["ok"], got
        finally:
            eng.docker("network", "disconnect", net, name)
            eng.docker("network", "rm", net, check=True)

        images = []
        got = _at_once(lambda: images.append(api.commit(name)["Id"]))
        assert got == ["ok"] * 6 and len(set(images)) == 6, got
        assert _inspect(eng, name)["State"]["Status"] == "running"  # resumed by the last commit
        eng.docker("rmi", *images, check=True)

        got = _at_once(lambda: api.pause(name))
        assert got == [f"409 Container {cid} is already paused"] * 5 + ["ok"], got
        got = _at_once(lambda: api.unpause(name))
        assert got == [f"409 Container {cid} is not paused"] * 5 + ["ok"], got

        taken = _name("once")
        got = _at_once(lambda: api.create_container(IMAGE, ["true"], name=taken))
        other = _inspect(eng, taken)["Id"]
        assert got == [f'409 Conflict. The container name "/{taken}" is already in use by container "{other}". You '
                       'have to remove (or rename) that container to be able to reuse that name.'] * 5 + ["ok"], got
        eng.docker("rm", taken, check=True)

        tag = _name("once") + ":x"
        eng.docker("tag", IMAGE, tag, check=True)
        got = _at_once(lambda: api.remove_image(tag))
        assert got == [f'404 No such image: {tag}'] * 5 + ["ok"], got

        got = _at_once(lambda: api.remove_container(name, force=True))
        assert got.count("ok") == 1 and f"409 removal of container {cid} is already in progress" in got, got
        assert set(got) <= {"ok", f"409 removal of container {cid} is already in progress",
                            f"404 No such container: {name}"}, got
        assert eng.docker("ps", "-aq", "--filter", f"name={name}").out == ""
    finally:
        api.close()
