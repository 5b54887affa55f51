"""docker's daemon-wide user namespace remapping (daemon.json's userns-remap; berthd.toml's
userns_remap): every docker container is root in a user namespace of its own whose ids are a
host user's subordinate range; its image's files keep their owners inside (the layers are
id-mapped), what it writes is the range's on the host; sharing the host's network, PIDs or
privileges is refused in dockerd's words, --userns=host opts out. Side by side with dockerd
20.10 run with the same setting."""

import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile

import pytest
from daemon_fixtures import DATA, Daemon
from peer_dockerd import Dockerd

IMAGE = "busybox-layers:1"
BUSYBOX = os.path.join(DATA, "busybox-layers.docker.tar")
SIZE = 65536


@pytest.fixture(scope="module")
def subids():
    """A range of subordinate ids for the host's user `daemon` (group `daemon`), in /etc/subuid
    and /etc/subgid for the module (the files restored as they were after it)."""
    base = SIZE * random.randint(200, 2000)
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                saved[path] = f.read()
        except FileNotFoundError:
            saved[path] = None
        with open(path, "a") as f:
            f.write(("" if not saved[path] or saved[path].endswith("\n") else "\n") + f"daemon:{base}:{SIZE}\n")
    try:
        yield base
    finally:
        for path, text in saved.items():
            if text is None:
                os.unlink(path)
            else:
                with open(path, "w") as f:
                    f.write(text)


def _base_dir(prefix):
    # a root the remapped ids can walk down to their rootfs (pytest's own temporary directories
    # are 0700: as /var/lib/berth must not be)
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(base, 0o755)
    return base


@pytest.fixture(scope="module")
def eng(subids):
    base = _base_dir("berth-remap-")
    d = Daemon(base, 'userns_remap = "daemon:daemon"\ncri = false\n')
    try:  # (a berthd that does not start leaves nothing either)
        d.start()
        d.docker("load", "-i", BUSYBOX, check=True)
        yield d
    finally:
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def peer(subids):
    if not shutil.which("dockerd"):
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    base = _base_dir("dockerd-remap-")
    try:
        d = Dockerd(base, extra={"userns-remap": "daemon:daemon"})
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        d.docker("load", "-i", BUSYBOX, check=True)
        yield d
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


def _name(prefix="rm"):
    return f"{prefix}{random.getrandbits(32):08x}"


def _members(tar_bytes):
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        return {m.name.rstrip("/"): (m.uid, m.gid) for m in t.getmembers()}


def _raw(d, *args):
    r = subprocess.run(["docker", "-H", d.host, *args], capture_output=True, env=d.env(), timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _last_layer(d, image, tmp):
    """The ids of the last layer of an image (docker save, either archive form)."""
    out = os.path.join(tmp, _name("save"))
    os.makedirs(out)
    with tarfile.open(fileobj=io.BytesIO(_raw(d, "save", image))) as t:
        t.extractall(out)
    with open(os.path.join(out, "manifest.json")) as f:
        layer = json.load(f)[0]["Layers"][-1]
    with open(os.path.join(out, layer), "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        import gzip
        data = gzip.decompress(data)
    return _members(data)


def test_a_container_is_root_in_the_range_and_its_image_keeps_its_owners(eng, subids):
    """Before, berthd refused the key userns_remap (an unknown key: it did not start)."""
    info = json.loads(eng.docker("info", "--format", "{{json .SecurityOptions}}", check=True).out)
    assert "name=userns" in info
    name = _name()
    r = eng.docker("run", "-d", "--name", name, IMAGE, "sleep", "300", check=True)
    try:
        out = eng.docker("exec", name, "sh", "-c",
                         "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                         "stat -c '%u:%g %n' /bin/busybox /etc /etc/passwd /etc/hosts /etc/resolv.conf "
                         "/etc/hostname /.dockerenv /dev/shm; touch /new; stat -c '%u:%g' /new; "
                         "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ls /sys/class/net",
                         check=True).out.split("\n")
        assert out[0].split() == ["0", str(subids), str(SIZE)] and out[1].split() == out[0].split()
        assert out[2] == "0"
        assert out[3:11] == [f"0:0 {p}" for p in ("/bin/busybox", "/etc", "/etc/passwd", "/etc/hosts",
                                                  "/etc/resolv.conf", "/etc/hostname", "/.dockerenv",
                                                  "/dev/shm")]
        assert out[11] == "0:0"
        assert out[12] == "0"  # the network namespace is the container's user namespace's own
        assert "eth0" in out[13:]
        # on the host: its process and what it wrote are the range's
        pid = eng.docker("inspect", "-f", "{{.State.Pid}}", name, check=True).out.strip()
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == [str(subids)] * 4
        upper = eng.docker("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name, check=True).out.strip()
        st = os.stat(os.path.join(upper, "new"))
        assert (st.st_uid, st.st_gid) == (subids, subids)
        assert eng.docker("diff", name, check=True).out.splitlines() == ["A /new"]
    finally:
        eng.docker("rm", "-f", name)
    # nothing of it is left: its user namespace's pin, its layers' mounts
    assert os.listdir(os.path.join(eng.state, "userns")) == []
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if ".idmapped" in line.split()[4]]


def test_the_host_namespaces_and_privileges_are_refused_unless_userns_host(eng, peer):
    for args in (["--privileged"], ["--net=host"], ["--pid=host"], ["--privileged", "--net=host", "--pid=host"]):
        got = []
        for d in (eng, peer):
            name = _name()
            r = d.docker("create", "--name", name, *args, IMAGE)
            got.append((r.returncode, r.err.strip()))
            assert d.docker("ps", "-aq", "--filter", f"name={name}").out == ""  # not made
        assert got[0] == got[1] and got[0][0] != 0, args
    assert got[0][1] == ("Error response from daemon: privileged mode is incompatible with user namespaces.  You "
                         "must run the container in the host namespace when running privileged mode")
    r = eng.docker("run", "--rm", "--userns=host", "--net=host", IMAGE, "cat", "/proc/self/uid_map", check=True)
    assert r.out.split() == ["0", "0", "4294967295"]


def test_sharing_a_containers_namespaces_shares_its_user_namespace(eng, peer):
    for d in (eng, peer):
        a = _name()
        d.docker("run", "-d", "--name", a, IMAGE, "sleep", "300", check=True)
        try:
            theirs = d.docker("exec", a, "readlink", "/proc/self/ns/user", check=True).out.strip()
            for args in (["--net=container:" + a, "--pid=container:" + a], ["--pid=container:" + a]):
                out = d.docker("run", "--rm", *args, IMAGE, "sh", "-c",
                               "readlink /proc/self/ns/user; ps -o comm", check=True).out.split()
                assert out[0] == theirs and "sleep" in out, (d, args, out)
        finally:
            d.docker("rm", "-f", a)


def test_volumes_and_archives_as_dockerd(eng, peer, subids, tmp_path):
    """A new volume is the range's root's; an image's files copied up into it keep their owners
    as the container sees them; docker cp into a container writes the archive's ids as the
    container's, out of it the host's (dockerd's); export and commit record the container's."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "f").write_text("x\n")
    os.chown(src / "f", 7, 8)
    got = {}
    for d in (eng, peer):
        vol, c = _name("v"), _name()
        d.docker("volume", "create", vol, check=True)
        try:
            mp = d.docker("volume", "inspect", "-f", "{{.Mountpoint}}", vol, check=True).out.strip()
            st = os.stat(mp)
            inside = d.docker("run", "--rm", "-v", vol + ":/etc", IMAGE, "sh", "-c",
                              "stat -c '%u:%g %n' /etc/passwd; touch /etc/w; stat -c '%u:%g' /etc/w",
                              check=True).out.split("\n")
            written = os.stat(os.path.join(mp, "w"))
            d.docker("run", "--name", c, IMAGE, "sh", "-c", "echo a > /a; mkdir /dd; chown 5:6 /dd", check=True)
            d.docker("cp", str(src / "f"), c + ":/f", check=True)
            cp_out = _members(_raw(d, "cp", c + ":/dd", "-"))
            export = _members(_raw(d, "export", c))
            d.docker("commit", c, c + "img", check=True)
            layer = _last_layer(d, c + "img", str(tmp_path))
            diff = sorted(d.docker("diff", c, check=True).out.splitlines())  # (dockerd's order is a map's)
            got[d] = dict(volume=(st.st_uid, st.st_gid), inside=inside, written=(written.st_uid, written.st_gid),
                          cp_out=cp_out, export={k: export[k] for k in ("a", "dd", "f", "etc", "etc/passwd")},
                          layer=layer, diff=diff)
        finally:
            d.docker("rm", "-f", c)
            d.docker("rmi", c + "img")
            d.docker("volume", "rm", vol)
    assert got[eng] == got[peer]
    assert got[eng]["volume"] == (subids, subids) and got[eng]["written"] == (subids, subids)
    assert got[eng]["inside"][:2] == ["0:0 /etc/passwd", "0:0"]
    assert got[eng]["cp_out"] == {"dd": (subids + 5, subids + 6)}
    assert got[eng]["export"] == {"a": (0, 0), "dd": (5, 6), "f": (7, 8), "etc": (0, 0), "etc/passwd": (0, 0)}
    assert got[eng]["layer"] == {"a": (0, 0), "dd": (5, 6), "f": (7, 8)}


def test_a_build_step_records_the_containers_ids(eng, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN mkdir /r && chown 7:8 /r && echo hi > /r/f\n")
    tag = _name("b") + ":1"
    eng.docker("build", "-q", "-t", tag, str(ctx), check=True, env=eng.env(DOCKER_BUILDKIT="0"))
    try:
        assert _last_layer(eng, tag, str(tmp_path)) == {"r": (7, 8), "r/f": (0, 0)}
    finally:
        eng.docker("rmi", tag)


def test_a_running_container_survives_a_kill_of_berthd(eng, subids):
    name = _name()
    eng.docker("run", "-d", "--name", name, IMAGE, "sleep", "300", check=True)
    try:
        eng.kill9()
        eng.start()
        out = eng.docker("exec", name, "sh", "-c", "cat /proc/self/uid_map; touch /x; stat -c %u /x", check=True).out
        assert out.split() == ["0", str(subids), str(SIZE), "0"]
        with open("/proc/self/mountinfo") as f:
            pins = [line for line in f if line.split()[4] == os.path.join(eng.state, "userns-remap")]
        assert len(pins) == 1  # pinned again, not twice
    finally:
        eng.docker("rm", "-f", name)


@pytest.mark.parametrize("value,message", [
    ("nosuchuser", 'Error during uid lookup for "nosuchuser": getent unable to find entry "nosuchuser" in passwd '
                   "database"),
    ("daemon:nosuchgroup", 'Error during groupname lookup for "nosuchgroup": getent unable to find entry '
                           '"nosuchgroup" in group database'),
    ("nobody", 'Error during gid lookup for "nobody": getent unable to find entry "nobody" in group database'),
    ("nobody:nogroup", 'Can\'t create ID mappings: no subuid ranges found for user "nobody"'),
    ("daemon:daemon:x", 'Invalid user/group specification in --userns-remap: "daemon:daemon:x"'),
])
def test_berthd_refuses_a_remapping_it_cannot_make_in_dockerds_words(tmp_path, value, message):
    d = Daemon(tmp_path / "d", f'userns_remap = "{value}"\ncri = false\n')
    d.start(wait=False)
    try:
        assert d.proc.wait(30) == 1
        assert d.log().strip().splitlines()[-1] == f"berthd: {message}"
        assert not os.path.exists(d.root)  # nothing made
    finally:
        d.cleanup()


def test_default_is_the_user_dockremap_made_with_a_range():
    """As dockerd: "default" makes the system user dockremap and gives it 65536 subordinate ids
    at the first free place from 100000 (removed again after the test)."""
    import pwd
    try:
        pwd.getpwnam("dockremap")
        pytest.skip("the host has a dockremap user of its own")
    except KeyError:
        pass
    if not shutil.which("useradd"):
        pytest.skip("no useradd here")
    saved = {p: open(p).read() if os.path.exists(p) else None for p in ("/etc/subuid", "/etc/subgid")}
    base = _base_dir("berth-remap-default-")
    d = Daemon(base, 'userns_remap = "default"\ncri = false\n')
    try:
        d.start()
        pw = pwd.getpwnam("dockremap")
        assert pw.pw_shell == "/bin/false"
        lines = {p: [line for line in open(p).read().splitlines() if line.startswith("dockremap:")]
                 for p in saved}
        start = int(lines["/etc/subuid"][0].split(":")[1])
        assert start >= 100000 and lines["/etc/subuid"] == [f"dockremap:{start}:{SIZE}"]
        assert len(lines["/etc/subgid"]) == 1
        d.docker("load", "-i", BUSYBOX, check=True)
        out = d.docker("run", "--rm", IMAGE, "cat", "/proc/self/uid_map", check=True).out.split()
        assert out == ["0", str(start), str(SIZE)]
    finally:
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["userdel", "dockremap"], capture_output=True)
        subprocess.run(["groupdel", "dockremap"], capture_output=True)
        for path, text in saved.items():
            if text is None:
                if os.path.exists(path):
                    os.unlink(path)
            else:
                with open(path, "w") as f:
                    f.write(text)


def test_the_setting_from_the_command_line_as_dockerds_flag():
    from daemon_fixtures import BERTHD
    r = subprocess.run([BERTHD, "--userns-remap", "daemon:daemon", "config", "dump"], capture_output=True, text=True,
                       env=dict(os.environ, HOME="/nonexistent"))
    assert r.returncode == 0, r.stderr
    assert 'userns_remap = "daemon:daemon"' in r.stdout.splitlines()


def test_a_start_refuses_what_the_remapping_forbids_and_changes_nothing(subids):
    """A container made before the setting came (berthd restarted with it): its start is refused
    as dockerd's ContainerStart refuses it (the settings checked again), its state untouched."""
    base = _base_dir("berth-remap-start-")
    d = Daemon(base, "cri = false\n")
    try:
        d.start()
        d.docker("load", "-i", BUSYBOX, check=True)
        d.docker("create", "--name", "priv", "--privileged", IMAGE, "true", check=True)
        d.stop()
        with open(d.config, "a") as f:
            f.write('userns_remap = "daemon:daemon"\n')
        d.start()
        r = d.docker("start", "priv")
        assert r.returncode != 0
        assert r.err.splitlines()[0] == ("Error response from daemon: privileged mode is incompatible with user "
                                         "namespaces.  You must run the container in the host namespace when "
                                         "running privileged mode")
        state = json.loads(d.docker("inspect", "-f", "{{json .State}}", "priv", check=True).out)
        assert (state["Status"], state["ExitCode"], state["Error"]) == ("created", 0, "")
    finally:
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_a_root_its_ids_cannot_reach_is_named(subids, tmp_path):
    """berthd's root below a directory the range's root may not search (pytest's 0700 ones): the
    start fails naming that directory (before: the runtime's bare "Permission denied")."""
    base = tmp_path / "d"  # (tmp_path's parents are 0700)
    d = Daemon(base, 'userns_remap = "daemon:daemon"\ncri = false\n').start()
    try:
        d.docker("load", "-i", BUSYBOX, check=True)
        r = d.docker("run", "--rm", IMAGE, "true")
        assert r.returncode != 0
        blocked = next(str(p) for p in reversed(tmp_path.parents) if os.stat(p).st_mode & 0o001 == 0)
        assert (f"the container's root (uid {subids} on the host) cannot reach " in r.err
                and f": {blocked} is not searchable by it (mode 0700;" in r.err), r.err
    finally:
        d.cleanup()
