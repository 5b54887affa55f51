"""docker events against berthd, as dockerd 20.10 shows them: the exec events (exec_create: <cmd>,
exec_start: <cmd>, exec_die with its exitCode) of attached and detached execs and of health probes, through the
docker CLI and the Docker SDK for Python; event filters, and a bad time or network filter refused
with a 400.

Every test removes the containers it made."""

import json
import os
import time

import pytest
from daemon_fixtures import DATA, shared_berthd, wait_for  # noqa: F401 (fixtures)

IMG = "busybox-layers:1"


@pytest.fixture(scope="module")
def d(shared_berthd):
    shared_berthd.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    return shared_berthd


@pytest.fixture
def container(d):
    cid = d.docker("run", "-d", "--network", "none", IMG, "sleep", "60", check=True).out.strip()
    try:
        yield cid
    finally:
        d.docker("rm", "-f", cid)


def _events(d, since, *filters):
    until = str(int(time.time()) + 1)
    args = ["events", "--since", since, "--until", until, "--format", "{{json .}}"]
    for f in filters:
        args += ["--filter", f]
    return [json.loads(line) for line in d.docker(*args, check=True).out.splitlines() if line.strip()]


def test_exec_events_of_the_docker_cli(d, container):
    """What dockerd 20.10 shows for `docker exec` and `docker exec -d` (compared by hand with a
    private dockerd): create, start, die with the exit code, all with the exec's ID."""
    since = str(int(time.time()) - 1)
    assert d.docker("exec", container, "sh", "-c", "exit 3").returncode == 3
    assert d.docker("exec", "-d", container, "sh", "-c", "sleep 0.3; exit 5").returncode == 0
    wait_for(lambda: sum(e["Action"] == "exec_die" for e in _events(d, since, f"container={container}")) == 2,
             15, "two exec_die events")
    evs = [e for e in _events(d, since, f"container={container}") if e["Action"].startswith("exec_")]
    assert [e["Action"] for e in evs] == [
        "exec_create: sh -c exit 3", "exec_start: sh -c exit 3", "exec_die",
        "exec_create: sh -c sleep 0.3; exit 5", "exec_start: sh -c sleep 0.3; exit 5", "exec_die"]
    for trio, code in ((evs[:3], "3"), (evs[3:], "5")):
        ids = {e["Actor"]["Attributes"]["execID"] for e in trio}
        assert len(ids) == 1 and len(ids.pop()) == 64
        die = trio[2]
        assert die["Actor"]["Attributes"]["exitCode"] == code
        assert die["Type"] == "container" and die["id"] == container and die["status"] == "exec_die"
        assert die["Actor"]["Attributes"]["image"] == IMG and die["Actor"]["Attributes"]["name"]
    # docker's event filter takes the action's name without the command
    only = _events(d, since, f"container={container}", "event=exec_create")
    assert [e["Action"] for e in only] == ["exec_create: sh -c exit 3", "exec_create: sh -c sleep 0.3; exit 5"]


def test_exec_die_through_the_sdk(d, container):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=d.host)
    try:
        since = int(time.time()) - 1
        res = client.containers.get(container).exec_run(["sh", "-c", "echo hi; exit 7"])
        assert res.exit_code == 7 and res.output == b"hi\n"

        def dies():
            return list(client.events(since=since, until=int(time.time()) + 1, decode=True,
                                      filters={"container": container, "event": "exec_die"}))
        wait_for(lambda: len(dies()) == 1, 15, "the exec_die event")
        ev = dies()[0]
        assert ev["Action"] == "exec_die" and ev["Actor"]["Attributes"]["exitCode"] == "7"
        # the exec's inspect agrees with the event
        eid = ev["Actor"]["Attributes"]["execID"]
        info = client.api.exec_inspect(eid)
        assert info["ExitCode"] == 7 and info["Running"] is False
    finally:
        client.close()


def test_health_probes_are_execs_with_their_events(d):
    """As dockerd 20.10's: each probe is an exec (create, start, die with exitCode 0), then the
    health_status event."""
    since = str(int(time.time()) - 1)
    cid = d.docker("run", "-d", "--network", "none", "--health-cmd", "true", "--health-interval", "1s", IMG,
                   "sleep", "60", check=True).out.strip()
    try:
        wait_for(lambda: d.docker("inspect", "-f", "{{.State.Health.Status}}", cid).out.strip() == "healthy",
                 20, "healthy")
        evs = _events(d, since, f"container={cid}")
        actions = [e["Action"] for e in evs]
        first = actions.index("exec_create: /bin/sh -c true")
        assert actions[:first] == ["create", "start"]
        assert actions[first:first + 4] == ["exec_create: /bin/sh -c true", "exec_start: /bin/sh -c true", "exec_die",
                                            "health_status: healthy"], actions
        assert evs[first + 2]["Actor"]["Attributes"]["exitCode"] == "0"
    finally:
        d.docker("rm", "-f", cid)


def _call(d, method, path):
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(d.sock)
    c = Conn("localhost", timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_bad_filters_and_times_are_refused(d):
    """A time events cannot read, and the network filters dockerd refuses, are 400s."""
    from urllib.parse import quote

    def q(f):
        return quote(json.dumps(f))
    status, body = _call(d, "GET", "/v1.45/events?since=yesterday&until=1")
    assert status == 400 and b"since" in body
    status, body = _call(d, "GET", "/v1.45/networks?filters=" + q({"type": ["odd"]}))
    assert status == 400 and b"invalid filter" in body
    status, body = _call(d, "GET", "/v1.45/networks?filters=" + q({"colour": ["red"]}))
    assert status == 400 and b"Invalid filter 'colour'" in body  # dockerd's words
    status, body = _call(d, "POST", "/v1.45/networks/prune?filters=" + q({"colour": ["red"]}))
    assert status == 400 and b"Invalid filter 'colour'" in body


def test_stops_at_once_each_tell_their_stop_after_the_die(d, container):
    """Three `docker stop` of one run at once: three stop events after its die, as dockerd's;
    the container's next run has its own die and one stop (berth told one stop after the first
    die and the two others after the next run's die)."""
    import threading
    since = str(int(time.time()) - 1)
    gate = threading.Barrier(3)

    def stop():
        gate.wait()
        d.docker("stop", "-t", "1", container, check=True)
    ts = [threading.Thread(target=stop) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    d.docker("start", container, check=True)
    d.docker("stop", "-t", "1", container, check=True)

    def seq():
        acts = [e["Action"] for e in _events(d, since, f"container={container}") if e["Action"] != "kill"]
        return acts[acts.index("die"):] if "die" in acts else acts  # (from the stops on)
    wait_for(lambda: seq().count("stop") == 4, 10, "the stop events")
    assert seq() == ["die", "stop", "stop", "stop", "start", "die", "stop"], seq()


def test_attaches_have_their_event_and_until_alone_replays(d):
    """As dockerd's: an attach is an event (a foreground `docker run`: create, attach, start, die),
    `events --until` without --since replays what is kept up to it, and a since after the until
    is a 400 in dockerd's words."""
    name = f"ev-att-{os.getpid()}"
    since = str(int(time.time()))
    assert d.docker("run", "--name", name, "--network", "none", IMG, "true").returncode == 0
    try:
        seen = [e["Action"] for e in _events(d, since, f"container={name}", "type=container")]
        assert seen[:4] == ["create", "attach", "start", "die"], seen
        p = d.docker("events", "--until", str(int(time.time()) + 1), "--filter", f"container={name}",
                     "--format", "{{.Action}}", check=True)
        assert p.out.split()[:4] == ["create", "attach", "start", "die"], p.out
        p = d.docker("events", "--since", "1h", "--until", "2h")
        assert p.returncode == 1 and "`since` time (" in p.err and ") cannot be after `until` time (" in p.err, p.err
    finally:
        d.docker("rm", "-f", name)


def test_an_attach_to_a_paused_container_is_refused(d, container):
    """dockerd's 409 (the docker CLI checks first; the Docker SDK does not)."""
    import docker
    d.docker("pause", container, check=True)
    api = docker.APIClient(base_url=d.host, timeout=30)
    try:
        for how in ({"stream": True}, {"stream": False, "logs": True}):
            with pytest.raises(docker.errors.APIError) as e:
                api.attach(container[:12], **how)
            assert e.value.status_code == 409
            assert e.value.explanation == f"container {container[:12]} is paused, unpause the container before attach"
    finally:
        api.close()
        d.docker("unpause", container)


def test_a_removal_answers_before_its_destroy_event(d):
    """The docker CLI of API < 1.25 does `run --rm` itself: at the die it removes the container,
    and it ends at the destroy event, cancelling its removal's request if not answered by then
    ("error removing container: ... context canceled" on every run against berth before: the
    destroy was published before the removal's last steps and its answer). dockerd's answer
    comes first; so does berth's now. Every answer carries dockerd's headers (Ostype included)."""
    import shutil
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    env = d.env(DOCKER_API_VERSION="1.24")
    for i in range(4):
        p = d.docker("run", "--rm", "--network", "none", "--name", f"legacy-rm-{i}", IMG, "sh", "-c", "echo hi",
                     env=env)
        assert (p.returncode, p.out, p.err) == (0, "hi\n", "")
    assert d.docker("ps", "-a", "-q", "--filter", "name=legacy-rm-").out == ""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(d.sock)
    cid = d.docker("create", "--network", "none", IMG, "true", check=True).out.strip()
    c = Conn("localhost")
    c.request("DELETE", f"/v1.45/containers/{cid}")
    r = c.getresponse()
    assert r.status == 204 and r.getheader("Ostype") == "linux" and r.getheader("Api-Version") == "1.45"
    assert r.getheader("Docker-Experimental") == "false"
    r.read()
    # a JSON answer as dockerd writes it (Go's json.Encoder): compact, a newline at the end
    c.request("DELETE", f"/v1.45/containers/{cid}")
    r = c.getresponse()
    assert (r.status, r.read()) == (404, f'{{"message":"No such container: {cid}"}}\n'.encode())
    c.close()
    destroy = [e for e in _events(d, str(int(time.time()) - 5), f"container={cid}") if e["Action"] == "destroy"]
    assert len(destroy) == 1


def test_prunes_tell_their_events_as_dockerd(d, container):
    """Each prune ends with its event, as dockerd's (Type: what was pruned, Action prune, no
    actor, the space reclaimed), even when nothing went; an image pruned tells its untags and its
    delete first, named by its ID. berthd told only the container prune."""
    d.docker("exec", container, "sh", "-c", "echo a file of its own > /prune-me", check=True)
    d.docker("commit", "--change", "LABEL prune.me=1", container, "prune-me:1", check=True)
    image_id = json.loads(d.docker("image", "inspect", "prune-me:1", check=True).out)[0]["Id"]
    d.docker("volume", "create", "--label", "prune.me=1", "prune-me-v", check=True)
    d.docker("network", "create", "--label", "prune.me=1", "prune-me-n", check=True)
    since = str(int(time.time()) - 1)
    for what in (["image", "prune", "-a"], ["volume", "prune", "--filter", "all=true"], ["network", "prune"]):
        p = d.docker(*what, "-f", "--filter", "label=prune.me=1", check=True)
        assert "prune-me" in p.out or "sha256:" in p.out, p.out
    d.docker("builder", "prune", "-f", "--filter", "id=nothing-has-this-id", check=True)
    got = [(e["Type"], e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"])
           for e in _events(d, since) if e["Action"] in ("untag", "delete", "prune") and e["Actor"]["ID"] in (image_id, "")]
    assert got[:2] == [("image", "untag", image_id, {"name": image_id, "prune.me": "1",
                                                     "org.example.fixture": "busybox-layers"}),
                       ("image", "delete", image_id, {"name": image_id})]
    assert [g[:3] for g in got[2:]] == [("image", "prune", ""), ("volume", "prune", ""), ("network", "prune", ""),
                                        ("builder", "prune", "")]
    assert int(got[2][3]["reclaimed"]) > 0 and got[4][3] == got[5][3] == {"reclaimed": "0"}


def test_a_commit_keeps_its_container_paused_until_the_image_is_there(d, container):
    """dockerd unpauses a committed container last (a deferred unpause): pause, the new name's
    tag, the commit, then unpause. berthd unpaused before it wrote the image."""
    since = str(int(time.time()) - 1)
    d.docker("commit", container, "committed-paused:1", check=True)
    try:
        got = [e["Action"] for e in _events(d, since)
               if e.get("id") == container or e["Actor"]["Attributes"].get("name") == "committed-paused:1"]
        assert [a for a in got if a in ("pause", "unpause", "tag", "commit")] == ["pause", "tag", "commit", "unpause"]
    finally:
        d.docker("rmi", "committed-paused:1")
