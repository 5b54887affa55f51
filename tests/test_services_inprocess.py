"""The services without HTTP: what a second front end (the CRI) does in-process — create, start,
attach, exec, wait, kill, restart policies, remove — against the real kernel and real shims,
with the events it would show its clients coming from the services' bus."""

import os
import random
import threading
import time

import pytest
from daemon_fixtures import read_frames

from berth.errors import FailedPrecondition, NotFound

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
NS = "default"
IMG = "busybox-layers:1"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """berthd's services, wired as berthd wires them, in this process (no API server)."""
    from berth.shim.zygote import Zygote
    zygote = Zygote()  # forked before the services make any thread
    from berth.daemon import config as cfgmod
    from berth.daemon.server import Daemon
    base = str(tmp_path_factory.mktemp("inproc"))
    tag = "%06x" % random.getrandbits(24)
    cfg = cfgmod.from_dict({
        "root": os.path.join(base, "root"), "state": os.path.join(base, "state"),
        "hosts": ["unix://" + os.path.join(base, "unused.sock")], "bridge": "bi" + tag,
        "bridge_subnet": f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24",
        "address_pool": f"10.{random.randint(200, 249)}.{random.randint(0, 63) * 4}.0/22",
        "cni_conf_dir": os.path.join(base, "cni")})
    daemon = Daemon(cfg, zygote)
    s = daemon.services
    with open(os.path.join(DATA, "busybox-layers.docker.tar"), "rb") as f:
        s.images.load(NS, f)
    events = []
    s.events.subscribe(lambda ns, ev: events.append(ev))
    s.seen = events
    try:
        yield s
    finally:
        for rec in s.containers.meta.list_containers(NS):
            try:
                s.containers.remove(NS, rec.id, force=True, volumes=True)
            except NotFound:
                pass
        daemon.close()
        zygote.close()
        with open("/proc/self/mountinfo") as f:
            left = [line.split()[4] for line in f if line.split()[4].startswith(base)]
        assert left == [], left  # no mount of ours stays
        sockets = os.path.join(cfg.state, "s")
        assert not os.path.isdir(sockets) or not [n for n in os.listdir(sockets) if n.endswith(".sock")]


def _create(s, cmd, **extra):
    hc = dict({"NetworkMode": "none"}, **extra.pop("HostConfig", {}))
    return s.containers.create(NS, dict({"Image": IMG, "Cmd": cmd, "HostConfig": hc}, **extra))["Id"]


def _run_attached(s, cid):
    """Start a created container with an attach made first, as docker run does: (exit status,
    its output frames)."""
    got = {}

    def attach():
        got["frames"] = read_frames(s.containers.attach(NS, cid, stdin=False, stdout=True, stderr=True)[0])
    s.containers.expect_attach(cid)
    t = threading.Thread(target=attach)
    t.start()
    assert s.containers.start(NS, cid) is True
    status = s.containers.wait_exit(NS, cid)
    t.join(20)
    return status, got["frames"]


def test_run_attach_wait_and_events(engine):
    s = engine
    cid = _create(s, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    got = {}

    def attach():  # as docker does: the attach comes before the start
        res = s.containers.attach(NS, cid, stdin=False, stdout=True, stderr=True)
        got["frames"] = read_frames(res[0]) if res else None
    s.containers.expect_attach(cid)
    t = threading.Thread(target=attach)
    t.start()
    assert s.containers.start(NS, cid) is True
    assert s.containers.wait_exit(NS, cid) == 3
    t.join(20)
    assert got["frames"] == {1: b"out\n", 2: b"err\n"}  # nothing lost before the attach
    st = s.containers.inspect(NS, cid)["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 3
    logs = list(s.containers.logs(NS, cid))
    assert sorted(logs) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    s.containers.remove(NS, cid)
    with pytest.raises(NotFound):
        s.containers.inspect(NS, cid)
    actions = [e["Action"] for e in s.seen if e.get("id") == cid]
    assert actions == ["create", "start", "die", "destroy"], actions


def test_exec_through_the_service(engine):
    s = engine
    cid = _create(s, ["sleep", "60"])
    s.containers.start(NS, cid)
    eid = s.execs.create(NS, cid, {"Cmd": ["sh", "-c", "echo in-exec; exit 4"], "AttachStdout": True,
                                   "AttachStderr": True})
    sock, reply = s.execs.start(eid)
    assert reply["pid"] > 0
    assert read_frames(sock)[1] == b"in-exec\n"
    sock.close()
    deadline = time.monotonic() + 10
    while s.execs.inspect(eid)["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.execs.inspect(eid)["ExitCode"] == 4
    with pytest.raises(FailedPrecondition):
        s.execs.start(eid)  # once only
    s.containers.kill(NS, cid, "KILL")
    st = s.containers.inspect(NS, cid)["State"]  # kill returned: the exit is recorded
    assert st["Status"] == "exited" and st["ExitCode"] == 137
    with pytest.raises(FailedPrecondition):
        s.execs.create(NS, cid, {"Cmd": ["true"]})
    die = [e for e in s.seen if e["Action"] == "exec_die" and e["Actor"]["Attributes"]["execID"] == eid]
    assert len(die) == 1 and die[0]["Actor"]["Attributes"]["exitCode"] == "4"  # from the shim, via the monitor
    s.containers.remove(NS, cid)
    with pytest.raises(NotFound):  # its execs went with it
        s.execs.inspect(eid)


def test_restart_policy_and_stop_while_restarting(engine):
    s = engine
    cid = _create(s, ["sh", "-c", "exit 1"], HostConfig={"RestartPolicy": {"Name": "always"}})
    s.containers.start(NS, cid)
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "restarting" not in seen:
        seen.add(s.containers.run_state(NS, cid).status)
        time.sleep(0.005)
    assert "restarting" in seen
    with pytest.raises(FailedPrecondition):
        s.containers.remove(NS, cid)  # running or restarting: a conflict
    s.containers.stop(NS, cid, timeout=1)
    st = s.containers.run_state(NS, cid)
    assert st.status == "exited"
    time.sleep(1.0)
    assert s.containers.run_state(NS, cid).status == "exited"  # no restart after a user's stop
    s.containers.remove(NS, cid)


def test_pause_resume_and_force_remove(engine):
    s = engine
    cid = _create(s, ["sleep", "60"])
    s.containers.start(NS, cid)
    s.containers.pause(NS, cid)
    assert s.containers.run_state(NS, cid).status == "paused"
    s.containers.unpause(NS, cid)
    assert s.containers.run_state(NS, cid).status == "running"
    s.containers.pause(NS, cid)
    s.containers.remove(NS, cid, force=True)  # a paused container is thawed, killed, removed
    with pytest.raises(NotFound):
        s.containers.get(NS, cid)


def test_a_start_failure_is_recorded(engine):
    s = engine
    cid = _create(s, ["/no/such/command"])
    with pytest.raises(Exception) as e:
        s.containers.start(NS, cid)
    assert "no such file" in str(e.value).lower() or "not found" in str(e.value).lower()
    st = s.containers.inspect(NS, cid)["State"]
    assert st["Status"] == "created" and st["ExitCode"] == 127 and st["Error"]
    s.containers.remove(NS, cid)
    assert not os.path.exists(s.containers.shim_socket(cid))


def test_error_kinds_cross_the_shim_boundary(engine):
    """The shim's errors arrive as their kinds (not recovered from message text)."""
    from berth.shim.client import ShimGone
    s = engine
    cid = _create(s, ["sleep", "60"])
    s.containers.start(NS, cid)
    shim = s.containers.shim(cid)
    assert shim.state().status == "running"
    shim.pause()
    assert shim.state().status == "paused"
    with pytest.raises(FailedPrecondition):
        shim.pause()  # the shim's own refusal, as its kind
    shim.resume()
    with pytest.raises(NotFound):
        shim.exec_state("no-such-exec")
    assert shim.stats().pid == shim.state().pid > 0
    s.containers.kill(NS, cid, "KILL")
    with pytest.raises(ShimGone):  # a FailedPrecondition too: the container is not running
        shim.kill(9)
    s.containers.remove(NS, cid)


# --- images, networks, volumes: their use-cases without HTTP ---------------------------------


def test_image_service_in_process(engine):
    """Tag, list (a reference filter narrows the names), inspect, history; rmi refused while a
    container uses the image and allowed after; prune of dangling images — the real store."""
    from berth.services import image_ops
    s = engine
    s.images.tag(NS, IMG, "inproc/other", "v2")
    names = [t for i in image_ops.list_images(s.images, NS) for t in i["RepoTags"]]
    assert IMG in names and "inproc/other:v2" in names
    only = image_ops.list_images(s.images, NS, filters={"reference": ["inproc/*"]})
    assert [i["RepoTags"] for i in only] == [["inproc/other:v2"]]  # the image's other name is not shown
    info = s.images.inspect(NS, "inproc/other:v2")
    assert info["Id"] == s.images.inspect(NS, IMG)["Id"] and info["RootFS"]["Layers"]
    assert s.images.history(NS, IMG)
    cid = _create(s, ["true"], Image="inproc/other:v2")
    try:
        with pytest.raises(FailedPrecondition):  # a container uses it: a conflict, nothing removed
            image_ops.remove_image(s.images, s.containers, NS, info["Id"])
        assert s.images.inspect(NS, "inproc/other:v2")["Id"] == info["Id"]
    finally:
        s.containers.remove(NS, cid)
    gone = image_ops.remove_image(s.images, s.containers, NS, "inproc/other:v2")
    assert gone == [{"Untagged": "inproc/other:v2"}]  # the image keeps its other name
    with pytest.raises(NotFound):
        s.images.inspect(NS, "inproc/other:v2")
    assert image_ops.prune_images(s.images, s.containers, NS)["ImagesDeleted"] in (None, [])  # nothing dangling
    assert s.images.inspect(NS, IMG)["Id"] == info["Id"]
    seen = [(e["Type"], e["Action"]) for e in s.seen if e["Type"] == "image"]
    assert ("image", "tag") in seen and ("image", "untag") in seen


def test_network_service_in_process(engine):
    """Create, list with filters, inspect with its running containers, remove refused while a
    container is configured on it, prune of the unused ones — real bridges and iptables rules."""
    s = engine
    used = s.networks.create(NS, "inproc-used", labels={"keep": "no"})
    spare = s.networks.create(NS, "inproc-spare", labels={"keep": "yes"})
    try:
        names = {n["Name"] for n in s.networks.list(NS)}
        assert {"bridge", "host", "none", "inproc-used", "inproc-spare"} <= names
        assert [n["Name"] for n in s.networks.list(NS, {"label": ["keep=yes"]})] == ["inproc-spare"]
        assert {n["Name"] for n in s.networks.list(NS, {"type": ["custom"]})} >= {"inproc-used", "inproc-spare"}
        with pytest.raises(Exception) as e:
            s.networks.list(NS, {"type": ["odd"]})
        assert "invalid filter" in str(e.value)
        cid = _create(s, ["sleep", "60"], HostConfig={"NetworkMode": "inproc-used"})
        try:
            s.containers.start(NS, cid)
            view = s.networks.describe(NS, "inproc-used")
            assert list(view["Containers"]) == [cid] and view["Containers"][cid]["IPv4Address"]
            assert [n["Name"] for n in s.networks.list(NS, {"dangling": ["true"], "type": ["custom"]})
                    if n["Name"].startswith("inproc-")] == ["inproc-spare"]
            with pytest.raises(FailedPrecondition):
                s.networks.remove(NS, "inproc-used")
            pruned = s.networks.prune(NS, {"label": ["keep=yes"]})
            assert pruned == {"NetworksDeleted": ["inproc-spare"]}
            assert s.networks.prune(NS) == {"NetworksDeleted": None}  # the used one stays (dockerd's null)
        finally:
            s.containers.remove(NS, cid, force=True)
        assert s.networks.prune(NS)["NetworksDeleted"] == ["inproc-used"]
        with pytest.raises(NotFound):
            s.networks.get(NS, used.id)
    finally:
        for n in (used, spare):
            try:
                s.networks.remove(NS, n.id)
            except NotFound:
                pass
    seen = [(e["Action"], e["Actor"]["ID"]) for e in s.seen if e["Type"] == "network"]
    assert ("destroy", used.id) in seen and ("destroy", spare.id) in seen


def test_volume_service_in_process(engine):
    """Create, list, a container's use keeps it from rm and prune; prune takes anonymous volumes
    (named ones with all=true) — real directories under the root."""
    s = engine
    v = s.volumes.create(NS, "inproc-named", labels={"k": "v"})
    anon = s.volumes.create(NS)
    assert os.path.isdir(v["Mountpoint"]) and os.path.isdir(anon["Mountpoint"])
    assert [x["Name"] for x in s.volumes.list(NS, {"label": ["k=v"]})["Volumes"]] == ["inproc-named"]
    cid = _create(s, ["sh", "-c", "echo kept > /data/f"], HostConfig={"Binds": ["inproc-named:/data"]})
    try:
        s.containers.start(NS, cid)
        assert s.containers.wait_exit(NS, cid) == 0
        with open(os.path.join(v["Mountpoint"], "f")) as f:
            assert f.read() == "kept\n"
        with pytest.raises(FailedPrecondition):
            s.volumes.remove(NS, "inproc-named")
        pruned = s.volumes.prune(NS, {"all": ["true"]})
        assert anon["Name"] in (pruned["VolumesDeleted"] or []) and "inproc-named" not in pruned["VolumesDeleted"]
    finally:
        s.containers.remove(NS, cid)
    assert s.volumes.prune(NS)["VolumesDeleted"] in (None, [])  # named: only with all=true
    s.volumes.remove(NS, "inproc-named")
    assert not os.path.exists(v["Mountpoint"])
    with pytest.raises(NotFound):
        s.volumes.inspect(NS, "inproc-named")


def test_networks_and_volumes_publish_their_events(engine):
    s = engine
    v = s.volumes.create(NS, "inproc-vol")
    n = s.networks.create(NS, "inproc-net")
    s.networks.remove(NS, n.id, lambda _n: [])
    s.volumes.remove(NS, v["Name"])
    seen = [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in s.seen]
    assert ("volume", "create", "inproc-vol") in seen and ("volume", "destroy", "inproc-vol") in seen
    assert ("network", "create", n.id) in seen and ("network", "destroy", n.id) in seen


def test_created_spec_keeps_its_persisted_form_and_old_records_load(engine, tmp_path):
    """What create resolved (mounts, image, creation time) is typed (CreateSpec) in the services
    and stays the record's "_mounts"/"_image_id"/"_created" keys on disk: a record written in
    that form by an earlier berth is read back with its mounts, image and creation time."""
    import json
    from berth.services.createspec import CreateSpec
    s = engine
    host = tmp_path / "bound"
    host.mkdir()
    (host / "f").write_text("from the host\n")
    cid = _create(s, ["cat", "/mnt/f"], HostConfig={"Binds": [f"{host}:/mnt:ro"]})
    rec = s.containers.meta.get_container(NS, cid)
    raw = json.loads(rec.spec)
    assert raw["Cmd"] == ["cat", "/mnt/f"]
    assert [m["Destination"] for m in raw["_mounts"]] == ["/mnt"] and raw["_image_id"] == rec.image
    insp = s.containers.inspect(NS, cid)
    assert insp["Created"] == raw["_created"] and insp["Created"].endswith("Z")
    assert [(m["Source"], m["Destination"], m["RW"]) for m in insp["Mounts"]] == [(str(host), "/mnt", False)]
    spec = CreateSpec.of(rec)
    assert spec.image_id == rec.image and spec.mounts == raw["_mounts"] and "_mounts" not in spec.body
    assert spec.to_json() == raw  # the round trip is the identity
    # a record as session 3 wrote it (the same keys, written by hand): it starts with its bind
    old = {k: v for k, v in raw.items() if not k.startswith("_")}
    old.update(_mounts=raw["_mounts"], _image_id=raw["_image_id"], _created="2026-12-01T10:00:00.000000001Z")
    s.containers.meta.update_container(NS, cid, spec=old)
    assert s.containers.inspect(NS, cid)["Created"] == "2026-12-01T10:00:00.000000001Z"
    assert _run_attached(s, cid) == (0, {1: b"from the host\n", 2: b""})
    # and a record without any of them (an empty spec) loads with empty values, not a KeyError
    assert CreateSpec.from_json({"Image": IMG}) == CreateSpec({"Image": IMG})


def test_user_and_group_names_come_from_the_image(engine):
    """-u name:group and --group-add name are looked up in the container's own /etc files (read
    inside its rootfs: berth.linux.paths.read_in_root), here put there by the archive service."""
    import io
    import tarfile
    from berth.services import archive
    s = engine
    cid = _create(s, ["sh", "-c", "id -u; id -g; id -G"], User="app:grp", HostConfig={"GroupAdd": ["more"]})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, text in (("passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/:/bin/sh\n"),
                           ("group", "root:x:0:\ngrp:x:3456:\nmore:x:4567:\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(text)
            tf.addfile(ti, io.BytesIO(text.encode()))
    buf.seek(0)
    archive.put_archive(s.containers, NS, cid, "/etc", buf)
    status, frames = _run_attached(s, cid)
    assert status == 0
    uid, gid, groups = frames[1].decode().split("\n")[:3]
    assert (uid, gid) == ("1234", "3456")
    assert "4567" in groups.split()


def test_the_trash_never_deletes_through_a_mount_left_in_it(tmp_path):
    """A directory a removal discards may still hold a mount (a volume's subpath bound for a
    container, a bind a crashed start left): the trash detaches it first, and what it showed
    (the host's files) stays."""
    import subprocess

    from berth.services.trash import Trash
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("data\n")
    doomed = tmp_path / "doomed" / "mounts" / "subpath-0"
    doomed.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(keep), str(doomed)], check=True)
    try:
        t = Trash()
        t.discard(str(tmp_path / "doomed"), str(tmp_path / "trash"))
        assert t.drain(30)
        assert not (tmp_path / "doomed").exists() and os.listdir(tmp_path / "trash") == []
        assert (keep / "precious").read_text() == "data\n"
    finally:
        subprocess.run(["umount", "-l", str(doomed)], capture_output=True)
        for line in open("/proc/self/mountinfo"):
            assert str(tmp_path) not in line
