"""Volumes and mounts end to end, as a user sees them: `berth volume ...`, `berth run -v/--mount/
--tmpfs/--volumes-from`, anonymous volumes of an image's VOLUMEs, copy-up, the local driver's
mounted volumes, namespaces; the real docker CLI and the Docker SDK for Python against berthd; a
symlink in the image that tries to send a mount (or a copy-up) out of the container's root.

Every test removes the containers and volumes it made, also when it fails."""

import io
import json
import os
import re
import stat
import tarfile

import pytest
from daemon_fixtures import DATA, shared_berthd  # noqa: F401 (fixture)

IMG = "busybox-layers:1"
VOLIMG = "volimg:1"
ESCIMG = "escimg:1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _busybox_rootfs():
    """The busybox rootfs layer of the fixture image: (TarInfo, bytes or None) pairs."""
    with tarfile.open(os.path.join(DATA, "busybox-layers.docker.tar")) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        layer = outer.extractfile(manifest[0]["Layers"][0]).read()
    out = []
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        for m in t.getmembers():
            out.append((m, t.extractfile(m).read() if m.isfile() else None))
    return out


def _image_tar(path, extra):
    """A rootfs tar: busybox plus extra entries (name, kind, arg, uid, mode)."""
    with tarfile.open(path, "w") as t:
        for m, data in _busybox_rootfs():
            t.addfile(m, io.BytesIO(data) if data is not None else None)
        for name, kind, arg, uid, mode in extra:
            ti = tarfile.TarInfo(name)
            ti.uid = ti.gid = uid
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "file":
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
            else:
                ti.type = tarfile.SYMTYPE
                ti.linkname = arg
                t.addfile(ti)


@pytest.fixture(scope="module")
def daemon(shared_berthd, tmp_path_factory):
    d = shared_berthd
    d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    d.berth("-n", "volns", "load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    base = tmp_path_factory.mktemp("volimages")
    # an image with content (owner 1000, mode 0750, a link) at its VOLUME /data
    _image_tar(base / "vol.tar", [("data", "dir", None, 1000, 0o750),
                                  ("data/f", "file", b"from-image\n", 1000, 0o640),
                                  ("data/l", "link", "f", 1000, 0o777)])
    d.berth("import", "-c", "VOLUME /data", "-c", 'CMD ["sh"]', str(base / "vol.tar"), VOLIMG, check=True)
    # an image whose /esc and /esc2 point (relatively, absolutely) at a directory of the host
    target = base / "hosttarget"
    target.mkdir()
    (target / "hostfile").write_text("host secret\n")
    rel = "../" * 12 + str(target).lstrip("/")
    _image_tar(base / "esc.tar", [("esc", "link", rel, 0, 0o777), ("esc2", "link", str(target), 0, 0o777)])
    d.berth("import", "-c", 'CMD ["sh"]', str(base / "esc.tar"), ESCIMG, check=True)
    d.hosttarget = str(target)
    return d


def _clean(d):
    for ns in ("default", "volns"):
        ids = d.berth("-n", ns, "ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            d.berth("-n", ns, "rm", "-f", *ids)
        names = d.berth("-n", ns, "volume", "ls", "-q").out.split()
        if names:
            d.berth("-n", ns, "volume", "rm", "-f", *names)


@pytest.fixture
def d(daemon):
    try:
        yield daemon
    finally:
        _clean(daemon)


def vols(d, *args):
    return d.berth("volume", "ls", "-q", *args, check=True).out.split()


def inspect(d, ref):
    return json.loads(d.berth("inspect", ref, check=True).out)[0]


def vinspect(d, name):
    return json.loads(d.berth("volume", "inspect", name, check=True).out)[0]


def one_line_error(p, *words, out=""):
    assert p.returncode != 0 and p.out == out, (p.returncode, p.out, p.err)
    lines = p.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.err, p.err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def berthd_mounted(d, path):
    with open(f"/proc/{d.proc.pid}/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


# --- the volume commands ---

def test_volume_create_ls_inspect_rm(d):
    assert d.berth("volume", "create", "--label", "team=a", "va", check=True).out.strip() == "va"
    assert d.berth("volume", "create", "vb", check=True).out.strip() == "vb"
    anon = d.berth("volume", "create", check=True).out.strip()
    assert HEX64.match(anon)
    assert d.berth("volume", "create", "va", check=True).out.strip() == "va"  # as docker: the existing one
    assert sorted(vols(d)) == sorted(["va", "vb", anon])
    assert vols(d, "--filter", "name=v") == ["va", "vb"]
    assert vols(d, "--filter", "label=team=a") == ["va"]
    assert vols(d, "--filter", "label=team") == ["va"]
    assert sorted(vols(d, "--filter", "dangling=true")) == sorted(["va", "vb", anon])
    out = d.berth("volume", "ls", check=True).out.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"] and "local     va" in out
    assert d.berth("volume", "ls", "--format", "{{.Name}}:{{.Driver}}:{{.Labels}}", "-f", "name=va",
                   check=True).out == "va:local:team=a\n"
    v = vinspect(d, "va")
    assert v["Name"] == "va" and v["Driver"] == "local" and v["Labels"] == {"team": "a"} and v["Scope"] == "local"
    assert v["Mountpoint"] == os.path.join(d.root, "volumes", "default", "va", "_data")
    assert os.path.isdir(v["Mountpoint"]) and v["CreatedAt"].endswith("Z")
    assert d.berth("volume", "inspect", "-f", "{{.Name}} {{.Labels.team}}", "va", check=True).out == "va a\n"
    assert d.berth("volume", "rm", "va", "vb", check=True).out.split() == ["va", "vb"]
    assert not os.path.exists(os.path.dirname(v["Mountpoint"]))
    one_line_error(d.berth("volume", "rm", "va"), "no such volume", "va")
    assert d.berth("volume", "rm", "-f", "va").returncode == 0
    one_line_error(d.berth("volume", "inspect", "nosuch"), "no such volume", out="[]\n")  # docker's [] too


def test_volume_create_bad_input_creates_nothing(d):
    one_line_error(d.berth("volume", "create", "-d", "nosuchdriver", "vx"), 'plugin "nosuchdriver" not found')
    one_line_error(d.berth("volume", "create", "a"), "too short")
    one_line_error(d.berth("volume", "create", "x/y"), "invalid characters")
    one_line_error(d.berth("volume", "create", "../up"), "invalid characters")
    one_line_error(d.berth("volume", "create", "-o", "bogus=1", "vx"), 'create vx: invalid option: "bogus"')
    one_line_error(d.berth("volume", "create", "-o", "type=tmpfs", "vx"), "missing required option", "device")
    assert vols(d) == []
    assert os.listdir(os.path.join(d.root, "volumes", "default")) == []


def test_volumes_belong_to_namespaces(d):
    d.berth("volume", "create", "shared", check=True)
    d.berth("-n", "volns", "volume", "create", "shared", check=True)
    d.berth("-n", "volns", "volume", "create", "only-there", check=True)
    assert vols(d) == ["shared"]
    assert d.berth("-n", "volns", "volume", "ls", "-q", check=True).out.split() == ["only-there", "shared"]
    one_line_error(d.berth("volume", "inspect", "only-there"), "no such volume", out="[]\n")
    a, b = vinspect(d, "shared")["Mountpoint"], \
        json.loads(d.berth("-n", "volns", "volume", "inspect", "shared", check=True).out)[0]["Mountpoint"]
    assert a != b and "/volns/" in b
    d.berth("-n", "volns", "run", "--rm", "--pull", "never", "-v", "shared:/v", IMG, "sh", "-c", "echo ns > /v/f", check=True)
    assert open(os.path.join(b, "f")).read() == "ns\n" and not os.path.exists(os.path.join(a, "f"))


# --- named volumes and binds ---

def test_named_volume_survives_containers_and_is_shared(d):
    d.berth("run", "--rm", "-v", "keep:/v", IMG, "sh", "-c", "echo persisted > /v/f", check=True)
    assert vols(d) == ["keep"]  # created on first use, kept after --rm
    assert d.berth("run", "--rm", "-v", "keep:/v", IMG, "cat", "/v/f", check=True).out == "persisted\n"
    d.berth("run", "-d", "--name", "writer", "-v", "keep:/v", IMG, "sh", "-c",
            "echo live > /v/g; sleep 60", check=True)
    from daemon_fixtures import wait_for
    wait_for(lambda: d.berth("run", "--rm", "-v", "keep:/v", IMG, "cat", "/v/g").out == "live\n", 15,
             "the second container to see the first one's write")
    err = one_line_error(d.berth("volume", "rm", "keep"), "volume is in use")
    cid = inspect(d, "writer")["Id"]
    assert cid in err
    d.berth("stop", "-t", "0", "writer", check=True)
    one_line_error(d.berth("volume", "rm", "keep"), "volume is in use")  # a stopped container still uses it
    one_line_error(d.berth("volume", "rm", "-f", "keep"), "volume is in use")
    assert d.berth("ps", "-a", "-q", "--no-trunc", "--filter", "volume=keep", check=True).out.split() == [cid]
    assert d.berth("ps", "-a", "-q", "--filter", "volume=other", check=True).out == ""
    mounts = inspect(d, "writer")["Mounts"]
    assert mounts == [{"Type": "volume", "Name": "keep", "Source": vinspect(d, "keep")["Mountpoint"],
                       "Destination": "/v", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]
    assert inspect(d, "writer")["HostConfig"]["Binds"] == ["keep:/v"]
    d.berth("rm", "-v", "writer", check=True)  # -v does not remove named volumes
    assert vols(d) == ["keep"]
    d.berth("volume", "rm", "keep", check=True)
    assert vols(d) == []


def test_binds_rw_ro_and_missing_sources(d, tmp_path):
    host = tmp_path / "h"
    host.mkdir()
    (host / "in").write_text("from host\n")
    p = d.berth("run", "--rm", "-v", f"{host}:/h", IMG, "sh", "-c", "cat /h/in; echo back > /h/out", check=True)
    assert p.out == "from host\n" and (host / "out").read_text() == "back\n"
    p = d.berth("run", "--rm", "-v", f"{host}:/h:ro", IMG, "sh", "-c", "cat /h/in; echo x > /h/no")
    assert p.returncode != 0 and "Read-only file system" in p.err and not (host / "no").exists()
    p = d.berth("run", "--rm", "--mount", f"type=bind,source={host},target=/h,readonly", IMG, "touch", "/h/no")
    assert p.returncode != 0 and "Read-only file system" in p.err and not (host / "no").exists()
    # -v creates a missing host directory; --mount type=bind refuses it
    missing = tmp_path / "made" / "by-v"
    d.berth("run", "--rm", "-v", f"{missing}:/m", IMG, "touch", "/m/t", check=True)
    assert (missing / "t").exists()
    one_line_error(d.berth("run", "--rm", "--mount", f"type=bind,src={tmp_path}/nope,dst=/m", IMG, "true"),
                   "bind source path does not exist")
    assert not (tmp_path / "nope").exists()
    one_line_error(d.berth("run", "--rm", "--mount", "type=bind,src=relative/dir,dst=/m", IMG, "true"),
                   "must be absolute")
    info = inspect(d, d.berth("create", "--mount", f"type=bind,src={host},dst=/h,readonly", IMG, check=True).out.strip())
    assert info["Mounts"] == [{"Type": "bind", "Source": str(host), "Destination": "/h", "Mode": "", "RW": False,
                               "Propagation": "rprivate"}]
    assert info["HostConfig"]["Mounts"] == [{"Type": "bind", "Source": str(host), "Target": "/h", "ReadOnly": True}]
    assert d.berth("ps", "-a", "-q").out.split() == [info["Id"][:12]]



def test_binds_of_the_daemons_own_directories_are_rslave(d):
    """dockerd's rule for a bind whose source holds the daemon's directories or lies in them (its
    validateBindDaemonRoot; checked side by side with dockerd 20.10): rslave when no propagation
    is given, so that such a container (one that binds /, say) sees the daemon's later
    unmounts rather than keeping its mounts alive; the container runs where the source's mount
    cannot be a slave (dockerd's fallback); a private propagation asked for is refused in
    dockerd's words. berthd's root and its state dir (the containers' roots are mounted there)."""
    base = os.path.dirname(d.root)  # holds the root and the state dir
    assert os.path.dirname(d.state) == base
    cid = d.berth("run", "-d", "-v", f"{base}:/b:ro", "--mount", f"type=bind,src={d.state},dst=/s", IMG,
                  "sleep", "60", check=True).out.strip()
    info = inspect(d, cid)
    assert sorted((m["Destination"], m["Propagation"]) for m in info["Mounts"]) == [("/b", "rslave"), ("/s", "rslave")]
    assert "root" in d.berth("exec", cid, "ls", "/b", check=True).out.split()
    for args in (["-v", f"{base}:/b:rprivate"], ["--mount", f"type=bind,src={d.root},dst=/b,bind-propagation=private"]):
        prop = "rprivate" if args[0] == "-v" else "private"
        src = base if args[0] == "-v" else d.root
        one_line_error(d.berth("create", *args, IMG, "true"),
                       'invalid mount config: must use either propagation mode "rslave" or "rshared" when mount '
                       f'source is within the daemon root, daemon root: "{d.root}", bind mount source: "{src}", '
                       f'propagation: "{prop}"')
    assert d.berth("ps", "-a", "-q").out.split() == [cid[:12]]  # the refused ones made nothing


def test_bad_mount_specs_are_one_line_and_create_nothing(d):
    cases = [
        (["-v", "a:/b:ro:x"], "invalid volume specification: 'a:/b:ro:x'"),  # dockerd's words
        (["-v", "rel/dir:/x"], "invalid characters"),
        (["-v", "vol:relative"], "must be absolute"),
        (["-v", "vol:/x:bogus"], "invalid mode"),
        (["-v", "vol:/"], "can't be '/'"),
        (["--mount", "type=nosuch,dst=/x"], "mount type unknown"),
        (["--mount", "type=tmpfs,src=x,dst=/x"], "Source must not be specified"),
        (["--mount", "type=volume,dst=/x,volume-driver=nosuch"], 'plugin "nosuch" not found'),
        (["--mount", "type=volume,src=v1"], "target is required"),  # the docker CLI's check, its words
        (["--mount", "type=volume,dst=/x,bogus=1"], "unexpected key"),
        (["-v", "v1:/x", "--mount", "type=volume,src=v2,dst=/x"], "Duplicate mount point"),
        (["--volumes-from", "nosuchcontainer"], "No such container"),
    ]
    for args, msg in cases:
        p = d.berth("run", "--rm", *args, IMG, "true")
        one_line_error(p, msg)
        assert p.returncode == 125, (args, p.returncode)
    assert d.berth("ps", "-a", "-q").out == ""
    assert vols(d) == []
    # a relative anonymous volume is no bad spec: dockerd 20.10 takes it under the root (/vol)
    p = d.berth("run", "--rm", "-v", "vol", IMG, "sh", "-c", "grep -c ' /vol ' /proc/mounts")
    assert (p.returncode, p.out) == (0, "1\n"), p.err
    assert vols(d) == []


# --- anonymous volumes ---

def test_anonymous_volumes_kept_by_rm_removed_by_rm_v_and_run_rm(d):
    cid = d.berth("create", VOLIMG, check=True).out.strip()
    [m] = inspect(d, cid)["Mounts"]
    assert m["Type"] == "volume" and m["Destination"] == "/data" and HEX64.match(m["Name"]) and m["RW"]
    v = vinspect(d, m["Name"])
    assert v["Labels"] == {"com.docker.volume.anonymous": ""}
    assert inspect(d, cid)["Config"]["Volumes"] == {"/data": {}}
    d.berth("rm", cid, check=True)
    assert vols(d) == [m["Name"]]  # rm without -v keeps it
    d.berth("volume", "rm", m["Name"], check=True)

    cid = d.berth("create", "-v", "/extra", VOLIMG, check=True).out.strip()
    names = sorted(x["Name"] for x in inspect(d, cid)["Mounts"])
    assert len(names) == 2 and sorted(vols(d)) == names
    d.berth("rm", "-v", cid, check=True)
    assert vols(d) == []

    p = d.berth("run", "--rm", "-v", "/extra", VOLIMG, "sh", "-c", "echo x > /extra/f; cat /data/f", check=True)
    assert p.out == "from-image\n"
    assert vols(d) == []  # --rm removed both

    # a named volume over the image's VOLUME: no anonymous one
    cid = d.berth("create", "-v", "named:/data", VOLIMG, check=True).out.strip()
    assert [x["Name"] for x in inspect(d, cid)["Mounts"]] == ["named"] and vols(d) == ["named"]


def test_copy_up_of_image_content(d):
    p = d.berth("run", "--rm", "-v", "fresh:/data", VOLIMG, "sh", "-c", "cat /data/f; readlink /data/l", check=True)
    assert p.out == "from-image\nf\n"
    data = vinspect(d, "fresh")["Mountpoint"]
    st = os.stat(data)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o750)
    st = os.lstat(os.path.join(data, "f"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1000, 0o640)
    assert os.readlink(os.path.join(data, "l")) == "f" and os.lstat(os.path.join(data, "l")).st_uid == 1000
    assert os.listdir(os.path.dirname(data)) == ["_data"]  # nothing left of the copy
    # a volume that has content already is left alone
    with open(os.path.join(data, "f"), "w") as f:
        f.write("changed\n")
    assert d.berth("run", "--rm", "-v", "fresh:/data", VOLIMG, "cat", "/data/f", check=True).out == "changed\n"
    # the anonymous volume of VOLUME /data gets it too; volume-nocopy and binds do not
    assert d.berth("run", "--rm", VOLIMG, "cat", "/data/f", check=True).out == "from-image\n"
    p = d.berth("run", "--rm", "--mount", "type=volume,src=nocp,dst=/data,volume-nocopy", VOLIMG, "ls", "-A", "/data")
    assert p.returncode == 0 and p.out == ""
    p = d.berth("run", "--rm", "-v", "nocp2:/data:nocopy", VOLIMG, "ls", "-A", "/data", check=True)
    assert p.out == ""
    # the busybox image's /data (a link to a file in a subdirectory) into a named volume
    p = d.berth("run", "--rm", "-v", "bb:/data", IMG, "cat", "/data/link", check=True)
    assert p.out == "layered\n"


# --- tmpfs ---

def test_tmpfs_flags(d):
    p = d.berth("run", "--rm", "--read-only", "--tmpfs", "/run/t:size=1m", "--mount",
                "type=tmpfs,dst=/t2,tmpfs-size=2m,tmpfs-mode=1770", IMG, "sh", "-c",
                "echo ok > /run/t/f && cat /run/t/f; grep -E ' /(run/t|t2) ' /proc/mounts; stat -c %a /t2; "
                "touch /nope 2>/dev/null || echo rootfs-ro", check=True)
    lines = p.out.splitlines()
    assert lines[0] == "ok" and lines[-1] == "rootfs-ro" and lines[-2] == "1770"
    t = next(x for x in lines if " /run/t " in x).split()
    t2 = next(x for x in lines if " /t2 " in x).split()
    assert t[2] == "tmpfs" and "size=1024k" in t[3] and "noexec" in t[3] and "nosuid" in t[3]
    assert t2[2] == "tmpfs" and "size=2048k" in t2[3]
    cid = d.berth("create", "--tmpfs", "/run/t", "--mount", "type=tmpfs,dst=/t2", IMG, check=True).out.strip()
    info = inspect(d, cid)
    assert info["HostConfig"]["Tmpfs"] == {"/run/t": ""}
    assert [m["Destination"] for m in info["Mounts"]] == ["/t2"]  # as docker: --tmpfs is not listed


def test_local_driver_tmpfs_volume_mounted_while_used(d):
    d.berth("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=4m,mode=0755", "tv",
            check=True)
    v = vinspect(d, "tv")
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=4m,mode=0755"}
    data = v["Mountpoint"]
    assert not berthd_mounted(d, data)
    p = d.berth("run", "--rm", "-v", "tv:/v", IMG, "sh", "-c", "grep ' /v ' /proc/mounts", check=True)
    assert p.out.split()[2] == "tmpfs" and "size=4096k" in p.out
    assert not berthd_mounted(d, data)  # unmounted when no container uses it
    # copy-up into a mounted volume (another file system than the volume's directory)
    d.berth("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "tvc", check=True)
    assert d.berth("run", "--rm", "-v", "tvc:/data", VOLIMG, "cat", "/data/f", check=True).out == "from-image\n"
    d.berth("run", "-d", "--name", "tv1", "-v", "tv:/v", IMG, "sh", "-c", "echo t > /v/f; sleep 60", check=True)
    from daemon_fixtures import wait_for
    wait_for(lambda: berthd_mounted(d, data), 10, "the volume to be mounted")
    assert d.berth("run", "--rm", "-v", "tv:/v", IMG, "cat", "/v/f", check=True).out == "t\n"
    assert berthd_mounted(d, data)  # still used by tv1
    d.berth("rm", "-f", "tv1", check=True)
    wait_for(lambda: not berthd_mounted(d, data), 10, "the volume to be unmounted")
    d.berth("volume", "rm", "tv", check=True)
    # a volume whose mount fails: the start fails with one line, nothing stays mounted
    d.berth("volume", "create", "-o", "type=nosuchfs", "-o", "device=none", "bad", check=True)
    p = d.berth("run", "--rm", "-v", "bad:/v", IMG, "true")
    assert p.returncode == 125
    one_line_error(p, "failed to mount local volume")
    assert not berthd_mounted(d, vinspect(d, "bad")["Mountpoint"])
    assert d.berth("ps", "-a", "-q").out == ""


# --- --volumes-from ---

def test_volumes_from(d, tmp_path):
    d.berth("create", "--name", "src", "-v", "vf:/a", "-v", f"{tmp_path}:/b", "-v", "/anon", IMG, check=True)
    d.berth("run", "--rm", "-v", "vf:/a", IMG, "sh", "-c", "echo shared > /a/f", check=True)
    p = d.berth("run", "--rm", "--volumes-from", "src", IMG, "sh", "-c", "cat /a/f; echo w > /b/w; echo ok > /anon/f",
                check=True)
    assert p.out == "shared\n" and (tmp_path / "w").read_text() == "w\n"
    p = d.berth("run", "--rm", "--volumes-from", "src:ro", IMG, "sh", "-c", "cat /a/f; touch /a/g")
    assert p.out == "shared\n" and p.returncode != 0 and "Read-only file system" in p.err
    cid = d.berth("create", "--volumes-from", "src:ro", IMG, check=True).out.strip()
    m = {x["Destination"]: x for x in inspect(d, cid)["Mounts"]}
    assert set(m) == {"/a", "/b", "/anon"} and not any(x["RW"] for x in m.values())
    anon = m["/anon"]["Name"]
    d.berth("rm", "-v", cid, check=True)
    assert anon in vols(d)  # still the source container's


# --- a symlink in the image cannot send a mount out of the container's root ---

def test_symlink_at_destination_stays_in_the_root(d, tmp_path):
    host = tmp_path / "bindsrc"
    host.mkdir()
    (host / "marker").write_text("bound\n")
    target = d.hosttarget  # the host directory the image's /esc and /esc2 point at
    before = sorted(os.listdir(target))
    inside = target  # where the links lead when the rootfs is "/": the same path, inside the root
    for link in ("/esc", "/esc2"):
        p = d.berth("run", "--rm", "-v", f"{host}:{link}", ESCIMG, "sh", "-c",
                    f"cat {link}/marker {inside}/marker; ls {link}", check=True)
        assert p.out == "bound\nbound\nmarker\n"  # the mount is at the link's target inside the root
        # the named volume's copy-up reads the image, not the host
        p = d.berth("run", "--rm", "-v", f"esc{link[1:]}:{link}", ESCIMG, "sh", "-c", f"ls -A {link}", check=True)
        data = vinspect(d, f"esc{link[1:]}")["Mountpoint"]
        assert "hostfile" not in os.listdir(data) and "hostfile" not in p.out
        p = d.berth("run", "--rm", "--tmpfs", link, ESCIMG, "sh", "-c", f"grep ' {inside} ' /proc/mounts")
        assert p.returncode == 0 and "tmpfs" in p.out
    assert sorted(os.listdir(target)) == before and open(os.path.join(target, "hostfile")).read() == "host secret\n"
    with open("/proc/self/mountinfo") as f:
        assert not any(line.split()[4] == target for line in f)


# --- prune ---

def test_prune_anonymous_by_default_all_with_a(d):
    d.berth("volume", "create", "named-unused", check=True)
    d.berth("volume", "create", "--label", "keep=1", "named-labelled", check=True)
    anon = d.berth("volume", "create", check=True).out.strip()
    d.berth("create", "--name", "user", "-v", "named-used:/x", "-v", "/y", IMG, check=True)
    used_anon = next(m["Name"] for m in inspect(d, "user")["Mounts"] if m["Destination"] == "/y")
    p = d.berth("volume", "prune", "-f", check=True)
    assert p.out.splitlines()[:2] == ["Deleted Volumes:", anon] and "Total reclaimed space:" in p.out
    assert sorted(vols(d)) == sorted(["named-unused", "named-labelled", "named-used", used_anon])
    p = d.berth("volume", "prune", "-f", "-a", "--filter", "label!=keep")
    assert p.returncode == 0 and p.out.splitlines()[1:2] == ["named-unused"]
    d.berth("volume", "prune", "-f", "--all", "--filter", "label=keep=1", check=True)
    assert sorted(vols(d)) == sorted(["named-used", used_anon])
    # without -f: asked on stdin, as docker; no answer is no (status 0), nothing removed
    d.berth("volume", "create", "unused-anon", check=True)
    p = d.berth("volume", "prune", "-a")
    assert p.returncode == 0 and "Are you sure you want to continue? [y/N]" in p.out, (p.returncode, p.err)
    assert "unused-anon" in vols(d)
    d.berth("volume", "prune", "-a", input=b"y\n", check=True)
    assert "unused-anon" not in vols(d)


# --- the docker CLI and the Docker SDK ---

def test_docker_cli_volumes(d, tmp_path):
    assert d.docker("volume", "create", "--label", "k=v", "dkv", check=True).out.strip() == "dkv"
    assert "dkv" in d.docker("volume", "ls", check=True).out
    assert d.docker("volume", "ls", "-q", "--filter", "label=k=v", check=True).out.split() == ["dkv"]
    assert d.docker("volume", "ls", "-q", "--filter", "dangling=true", check=True).out.split() == ["dkv"]
    info = json.loads(d.docker("volume", "inspect", "dkv", check=True).out)[0]
    assert info["Name"] == "dkv" and info["Labels"] == {"k": "v"} and info["Driver"] == "local"
    p = d.docker("run", "--rm", "--network", "none", "-v", "dkv:/v", "-v", f"{tmp_path}:/h:ro", IMG, "sh", "-c",
                 "echo docker > /v/f; cat /h/x 2>/dev/null; touch /h/x 2>&1 || true")
    assert p.returncode == 0, p.err
    assert "Read-only file system" in p.out
    p = d.docker("run", "--rm", "--network", "none", "--mount", "type=volume,src=dkv,dst=/v,readonly",
                 "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576", "--tmpfs", "/t3", IMG, "sh", "-c",
                 "cat /v/f; grep -c ' /t ' /proc/mounts; grep -c ' /t3 ' /proc/mounts")
    assert p.returncode == 0 and p.out == "docker\n1\n1\n", p.err
    d.docker("run", "--rm", "--network", "none", "-v", "/anon", IMG, "true", check=True)
    assert d.docker("volume", "ls", "-q", check=True).out.split() == ["dkv"]  # --rm removed the anonymous one
    d.docker("create", "--name", "dkc", "--network", "none", "-v", "dkv:/v", IMG, check=True)
    p = d.docker("volume", "rm", "dkv")
    assert p.returncode != 0 and "volume is in use" in p.err
    mounts = json.loads(d.docker("inspect", "dkc", check=True).out)[0]["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", "dkv", "/v")]
    d.docker("rm", "dkc", check=True)
    d.docker("volume", "create", "dkw", check=True)
    p = d.docker("volume", "prune", "-f", "-a", check=True)
    assert "dkv" in p.out and "dkw" in p.out and "Total reclaimed space" in p.out
    assert d.docker("volume", "ls", "-q", check=True).out == ""
    p = d.docker("volume", "rm", "dkv")
    assert p.returncode != 0 and "no such volume" in p.err


def test_docker_sdk_volumes(d, tmp_path):
    import docker
    client = docker.DockerClient(base_url=d.host)
    try:
        v = client.volumes.create("sdkv", labels={"by": "sdk"})
        assert v.name == "sdkv" and v.attrs["Labels"] == {"by": "sdk"}
        assert [x.name for x in client.volumes.list()] == ["sdkv"]
        assert [x.name for x in client.volumes.list(filters={"label": "by=sdk"})] == ["sdkv"]
        assert client.volumes.get("sdkv").attrs["Mountpoint"].endswith("/volumes/default/sdkv/_data")
        (tmp_path / "in").write_text("from host\n")
        out = client.containers.run(IMG, ["sh", "-c", "echo sdk > /v/f; cat /h/in"], remove=True,
                                    network_mode="none",
                                    volumes={"sdkv": {"bind": "/v", "mode": "rw"},
                                             str(tmp_path): {"bind": "/h", "mode": "ro"}})
        assert out == b"from host\n"
        out = client.containers.run(IMG, "cat /v/f", remove=True, network_mode="none", volumes=["sdkv:/v:ro"])
        assert out == b"sdk\n"
        c = client.containers.create(IMG, "true", network_mode="none", volumes=["sdkv:/v"])
        with pytest.raises(docker.errors.APIError) as e:
            client.volumes.get("sdkv").remove()
        assert e.value.status_code == 409 and "in use" in str(e.value)
        c.remove()
        client.volumes.get("sdkv").remove()
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("sdkv")
        res = client.volumes.prune()
        assert res["VolumesDeleted"] in (None, [])
    finally:
        client.close()


def test_api_shapes_and_versions(d):
    import docker
    api = docker.APIClient(base_url=d.host, version="1.45")
    old = docker.APIClient(base_url=d.host, version="1.41")
    try:
        v = api.create_volume("apiv", driver="local", driver_opts={}, labels={"a": "1"})
        assert set(v) >= {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
        res = api.volumes(filters={"name": "apiv"})
        # dockerd's: no warnings is null; CreatedAt in whole seconds (RFC 3339)
        assert [x["Name"] for x in res["Volumes"]] == ["apiv"] and res["Warnings"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["CreatedAt"]), v
        with pytest.raises(docker.errors.NotFound):
            api.remove_volume("nosuch")
        # (docker-py's remove_volume(force=True) does not send force: the request by hand)
        assert api._delete(api._url("/volumes/nosuch"), params={"force": "1"}).status_code == 204
        with pytest.raises(docker.errors.APIError) as e:
            api.volumes(filters={"bogus": "1"})
        assert e.value.status_code == 400
        with pytest.raises(docker.errors.APIError) as e:
            api.create_volume("x", driver="nosuch")
        assert e.value.status_code == 400 and "not found" in str(e.value)
        # API 1.42 and later prune anonymous volumes only; earlier versions every unused one
        assert api.prune_volumes()["VolumesDeleted"] in (None, [])
        assert old.prune_volumes()["VolumesDeleted"] == ["apiv"]
        assert api.volumes()["Volumes"] == []
    finally:
        api.close()
        old.close()
    p = d.docker("inspect", "--type", "volume", "-f", "{{.Name}}", "nosuch")
    assert p.returncode != 0


def test_volumes_survive_a_berthd_restart(tmp_path):
    from daemon_fixtures import Daemon
    d = Daemon(tmp_path / "berthd")
    d.start()
    try:
        d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        d.berth("run", "--rm", "-v", "durable:/v", IMG, "sh", "-c", "echo kept > /v/f", check=True)
        d.berth("create", "--name", "user", "-v", "durable:/v", IMG, "cat", "/v/f", check=True)
        d.stop()
        d.start()
        assert d.berth("volume", "ls", "-q", check=True).out.split() == ["durable"]
        one_line_error(d.berth("volume", "rm", "durable"), "volume is in use")
        assert d.berth("start", "-a", "user").returncode == 0
        assert d.berth("logs", "user", check=True).out == "kept\n"
        d.berth("rm", "user", check=True)
        d.berth("volume", "rm", "durable", check=True)
    finally:
        d.cleanup()


def test_bash_completion_of_volume_names(d):
    import subprocess
    from daemon_fixtures import BIN
    d.berth("volume", "create", "comp-one", check=True)
    d.berth("volume", "create", "comp-two", check=True)
    script = ("source <(berth completion bash) || exit 3\nCOMP_WORDS=(berth volume rm comp-)\nCOMP_CWORD=3\n"
              "_berth\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = d.env(PATH=BIN + os.pathsep + os.environ.get("PATH", ""), BERTH_HOST=d.host)
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=env, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == ["comp-one", "comp-two"]


def test_cp_follows_volumes_binds_and_tmpfs(d, tmp_path):
    """docker cp reads and writes a container's volumes, binds and (running) tmpfs mounts, not
    the rootfs underneath them; for a stopped container too."""
    host = tmp_path / "bindsrc"
    host.mkdir()
    src = tmp_path / "in.txt"
    src.write_text("copied\n")
    d.berth("create", "--name", "cpv", "-v", "cpdata:/data", "-v", f"{host}:/bound", "--tmpfs", "/scratch", IMG,
            "sleep", "600", check=True)
    # stopped: into the named volume and the bind
    d.berth("cp", str(src), "cpv:/data/a.txt", check=True)
    d.berth("cp", str(src), "cpv:/bound/b.txt", check=True)
    assert (host / "b.txt").read_text() == "copied\n"
    p = d.berth("run", "--rm", "-v", "cpdata:/v", IMG, "cat", "/v/a.txt", check=True)
    assert p.out == "copied\n"
    # running: into the volume, a tmpfs, and back out
    d.berth("start", "cpv", check=True)
    d.berth("cp", str(src), "cpv:/scratch/t.txt", check=True)
    assert d.berth("exec", "cpv", "cat", "/scratch/t.txt", check=True).out == "copied\n"
    d.berth("cp", str(src), "cpv:/data/c.txt", check=True)
    p = d.berth("run", "--rm", "-v", "cpdata:/v", IMG, "cat", "/v/c.txt", check=True)
    assert p.out == "copied\n"
    d.berth("exec", "cpv", "sh", "-c", "echo from-volume > /data/d.txt", check=True)
    out = tmp_path / "out.txt"
    d.berth("cp", "cpv:/data/d.txt", str(out), check=True)
    assert out.read_text() == "from-volume\n"
    d.berth("rm", "-f", "cpv", check=True)
    # nothing was written into the image's rootfs under the mount points
    assert not any(n.endswith(".txt") for n in os.listdir(host) if n not in ("b.txt",))


def test_a_volume_receives_the_hosts_mounts_where_its_root_is_shared(tmp_path):
    """A volume's mount in a container has no propagation of its own, as dockerd gives the runtime
    none: where berthd's root lies on a shared mount (as dockerd makes its own root, and as / is
    under systemd), the container's volume is a slave of it and sees what the host mounts in the
    volume later; a -v bind stays rprivate and does not. (berth made volumes rprivate.)"""
    import pathlib
    import shutil
    import subprocess
    import tempfile

    from daemon_fixtures import Daemon
    base = pathlib.Path(tempfile.mkdtemp(prefix="bvp-", dir="/tmp"))  # short: the shims' socket paths
    host = tmp_path / "hostdir"
    (host / "later").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(base), str(base)], check=True)
    d = None
    later = []
    try:
        subprocess.run(["mount", "--make-rshared", str(base)], check=True)
        d = Daemon(str(base / "berthd"))
        d.start()
        d.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        d.docker("run", "-d", "--name", "volprop", "-v", "propvol:/data", "-v", f"{host}:/b", IMG, "sleep", "60",
                 check=True)
        data = d.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "propvol", check=True).out.strip()
        os.makedirs(os.path.join(data, "later"), exist_ok=True)
        for where in (os.path.join(data, "later"), str(host / "later")):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "fromhost", where], check=True)
            later.append(where)
            with open(os.path.join(where, "f"), "w") as f:
                f.write("host\n")
        assert d.docker("exec", "volprop", "cat", "/data/later/f").out == "host\n"
        assert d.docker("exec", "volprop", "ls", "/b/later").out == ""  # rprivate: not received
        info = d.docker("exec", "volprop", "grep", " /data ", "/proc/self/mountinfo").out.split()
        assert any(f.startswith("master:") for f in info[6:info.index("-")]), info
    finally:
        for where in later:
            subprocess.run(["umount", "-l", where], capture_output=True)
        if d is not None:
            d.docker("rm", "-f", "volprop")
            d.docker("volume", "rm", "-f", "propvol")
            d.cleanup()
        for _ in range(6):
            if subprocess.run(["umount", "-l", str(base)], capture_output=True).returncode != 0:
                break
        shutil.rmtree(base, ignore_errors=True)


def test_volume_subpath_as_dockerd(d):
    """--mount volume-subpath (API 1.45, dockerd 26+): a directory, a file or a relative link of
    the volume mounted alone; one that leads out of the volume (an absolute link, ..) refused,
    one that is not there refused at the start (the docker CLI's 127), anonymous volumes and
    clients before 1.45 refused, in dockerd's words. berthd mounted the whole volume."""
    import uuid
    vol = "sp-" + uuid.uuid4().hex[:8]
    d.docker("volume", "create", vol, check=True)
    try:
        d.docker("run", "--rm", "-v", f"{vol}:/v", "busybox-layers:1", "sh", "-c",
                 "mkdir -p /v/sub && echo hi > /v/sub/f && echo file > /v/ff && ln -s /etc /v/abs && "
                 "ln -s ../.. /v/up && ln -s sub /v/rel", check=True)

        def run(sub, env=None):
            return d.docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/x,volume-subpath={sub}",
                            "busybox-layers:1", "sh", "-c", "ls /x 2>/dev/null; cat /x 2>/dev/null; true", env=env)
        assert run("sub").out.split() == ["f"] and run("rel").out.split() == ["f"]
        assert run("ff").out.split() == ["/x", "file"]
        for sub in ("abs", "up"):
            p = run(sub)
            assert p.returncode == 125 and "path concatenation escapes the base directory" in p.err, p.err
        for sub in ("../x", "/etc"):
            p = run(sub)
            assert p.returncode == 125 and "subpath must be a relative path within the volume" in p.err, p.err
        p = run("nope")
        assert p.returncode == 127 and re.search(r"cannot access path \S+/nope: no such file or directory", p.err), p.err
        p = d.docker("run", "--rm", "--mount", "type=volume,dst=/x,volume-subpath=sub", "busybox-layers:1", "true")
        assert p.returncode == 125 and "must not set Subpath when using anonymous volumes" in p.err, p.err
        p = run("sub", env=dict(d.env(), DOCKER_API_VERSION="1.44"))
        assert p.returncode == 125 and "VolumeOptions.Subpath needs API v1.45 or newer" in p.err, p.err
        p = d.berth("run", "--rm", "--mount", f"type=volume,src={vol},dst=/x,volume-subpath=sub", "busybox-layers:1",
                    "ls", "/x", check=True)  # berth's CLI takes it too
        assert p.out.split() == ["f"]
        # a running container's removal leaves the volume's files (the binding is undone first)
        cid = d.docker("run", "-d", "--mount", f"type=volume,src={vol},dst=/x,volume-subpath=sub", "busybox-layers:1",
                       "sleep", "60", check=True).out.strip()
        d.docker("rm", "-f", cid, check=True)
        p = d.docker("run", "--rm", "-v", f"{vol}:/v", "busybox-layers:1", "cat", "/v/sub/f", check=True)
        assert p.out == "hi\n"
        with open("/proc/self/mountinfo") as f:
            assert not [line for line in f if d.base in line and "/subpath-" in line]  # the bindings went with the runs
    finally:
        d.docker("volume", "rm", vol)
