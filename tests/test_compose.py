"""docker-compose 1.29.2 (PyPI, a real Python client of the Docker API, in .venv-compose) end to
end against berthd, and the same compose files with the same assertions against dockerd 20.10
(the reference): up -d with the project's default network, a service reaching another by its
service name, named volumes, ps, logs, exec, restart, down -v, depends_on service_healthy.

Traffic goes only to containers these tests create."""

import json
import os
import subprocess

import pytest
from daemon_fixtures import DATA, REPO, shared_berthd, wait_for  # noqa: F401 (fixtures)
from peer_dockerd import dockerd  # noqa: F401 (fixture)

COMPOSE = os.path.join(REPO, ".venv-compose", "bin", "docker-compose")
IMG = "busybox-layers:1"

APP = f"""version: "2.4"
services:
  db:
    image: {IMG}
    command: sh -c "mkdir -p /www && echo db-says-hi > /www/index.html && echo started >> /data/log && exec httpd -f -v -p 80 -h /www"
    volumes:
      - data:/data
  web:
    image: {IMG}
    command: sh -c "until wget -q -O - http://db/; do sleep 0.2; done; exec sleep 600"
    environment:
      MARK: "1"
    depends_on:
      - db
volumes:
  data:
"""

HEALTHY = f"""version: "2.4"
services:
  db:
    image: {IMG}
    command: sh -c "sleep 2; mkdir -p /www && echo ready > /www/index.html && exec httpd -f -p 80 -h /www"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 2s
      retries: 30
  web:
    image: {IMG}
    command: sh -c "wget -q -O - http://db/; exec sleep 600"
    depends_on:
      db:
        condition: service_healthy
"""


class Engine:
    """berthd or dockerd, as seen by the docker CLI and docker-compose."""

    def __init__(self, name, daemon):
        self.name, self.daemon = name, daemon

    def docker(self, *args, check=False):
        return self.daemon.docker(*args, check=check)

    def compose(self, project_dir, project, *args, check=True, timeout=180):
        env = self.daemon.env(DOCKER_HOST=self.daemon.host, COMPOSE_INTERACTIVE_NO_CLI="1")
        p = subprocess.run([COMPOSE, "--no-ansi", "-p", project, *args], cwd=project_dir, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        p.out, p.err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} on {self.name} failed ({p.returncode}): "
                                 f"{p.out}{p.err}")
        return p

    def project_objects(self, project):
        label = f"label=com.docker.compose.project={project}"
        return (self.docker("ps", "-aq", "--no-trunc", "--filter", label).out.split(),
                self.docker("network", "ls", "-q", "--filter", label).out.split(),
                self.docker("volume", "ls", "-q", "--filter", label).out.split())


@pytest.fixture(scope="module", params=["berthd", "dockerd"])
def engine(request, tmp_path_factory):
    if not os.path.exists(COMPOSE):
        pytest.skip("docker-compose 1.29.2 is not installed (make install makes .venv-compose)")
    if request.param == "berthd":
        daemon = request.getfixturevalue("shared_berthd")
    else:
        daemon = request.getfixturevalue("dockerd")
    daemon.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    return Engine(request.param, daemon)


def project(engine, tmp_path, text, name):
    path = tmp_path / name
    path.mkdir()
    (path / "docker-compose.yml").write_text(text)
    return str(path)


def test_compose_up_ps_logs_exec_restart_down(engine, tmp_path):
    name = "berthcompose"
    pdir = project(engine, tmp_path, APP, name)
    try:
        p = engine.compose(pdir, name, "up", "-d")
        out = p.out + p.err
        assert f'Creating network "{name}_default" with the default driver' in out
        assert f'Creating volume "{name}_data" with default driver' in out
        assert f"Creating {name}_db_1" in out and f"Creating {name}_web_1" in out

        # web reached db by its service name on the project network
        def logged():
            return "db-says-hi" in engine.compose(pdir, name, "logs", "--no-color", "web").out
        wait_for(logged, 30, "web to fetch http://db/")
        net = json.loads(engine.docker("network", "inspect", f"{name}_default", check=True).out)[0]
        assert sorted(c["Name"] for c in net["Containers"].values()) == [f"{name}_db_1", f"{name}_web_1"]
        db = json.loads(engine.docker("inspect", f"{name}_db_1", check=True).out)[0]
        ep = db["NetworkSettings"]["Networks"][f"{name}_default"]
        assert "db" in ep["Aliases"] and db["HostConfig"]["NetworkMode"] == f"{name}_default"
        assert [m["Name"] for m in db["Mounts"]] == [f"{name}_data"]

        ps = engine.compose(pdir, name, "ps").out.splitlines()
        rows = {line.split()[0]: line for line in ps[2:]}
        assert set(rows) == {f"{name}_db_1", f"{name}_web_1"}, ps
        assert all(" Up " in r or r.rstrip().endswith("Up") for r in rows.values()), ps
        ids = engine.compose(pdir, name, "ps", "-q").out.split()
        assert sorted(ids) == sorted(engine.project_objects(name)[0]) and len(ids) == 2
        assert sorted(engine.compose(pdir, name, "ps", "--services").out.split()) == ["db", "web"]

        p = engine.compose(pdir, name, "exec", "-T", "db", "cat", "/data/log")
        assert p.out == "started\n"
        p = engine.compose(pdir, name, "exec", "-T", "db", "sh", "-c", "exit 3", check=False)
        assert p.returncode == 3

        p = engine.compose(pdir, name, "restart")
        assert f"Restarting {name}_db_1" in p.out + p.err
        # the named volume kept its content; db ran twice
        assert engine.compose(pdir, name, "exec", "-T", "db", "cat", "/data/log").out == "started\nstarted\n"
        wait_for(lambda: engine.compose(pdir, name, "logs", "--no-color", "web").out.count("db-says-hi") == 2,
                 30, "web to fetch again after the restart")

        # a changed service is recreated (compose reads the image's ContainerConfig, renames the old one)
        with open(os.path.join(pdir, "docker-compose.yml"), "w") as f:
            f.write(APP.replace('MARK: "1"', 'MARK: "2"'))
        p = engine.compose(pdir, name, "up", "-d")
        assert f"Recreating {name}_web_1" in p.out + p.err and f"{name}_db_1 is up-to-date" in p.out + p.err
        assert engine.compose(pdir, name, "exec", "-T", "web", "sh", "-c", "echo $MARK").out == "2\n"
        assert len(engine.project_objects(name)[0]) == 2

        p = engine.compose(pdir, name, "down", "-v")
        out = p.out + p.err
        assert f"Removing network {name}_default" in out and f"Removing volume {name}_data" in out
        assert engine.project_objects(name) == ([], [], [])
    finally:
        engine.compose(pdir, name, "down", "-v", "-t", "1", check=False)


def _has_healthchecks(engine):
    p = engine.docker("run", "-d", "--health-cmd", "true", "--health-interval", "1s", IMG, "sleep", "30")
    if p.returncode != 0:
        return False
    cid = p.out.strip()
    try:
        try:
            wait_for(lambda: "Health" in json.loads(engine.docker("inspect", cid).out)[0]["State"], 5, "health")
            return True
        except AssertionError:
            return False
    finally:
        engine.docker("rm", "-f", cid)


def test_compose_depends_on_service_healthy(engine, tmp_path):
    if not _has_healthchecks(engine):
        pytest.skip(f"{engine.name} has no healthchecks (State.Health)")
    name = "berthhealthy"
    pdir = project(engine, tmp_path, HEALTHY, name)
    try:
        engine.compose(pdir, name, "up", "-d")
        db = json.loads(engine.docker("inspect", f"{name}_db_1", check=True).out)[0]
        web = json.loads(engine.docker("inspect", f"{name}_web_1", check=True).out)[0]
        # web was started only once db was healthy, so its first fetch found db serving
        assert db["State"]["Health"]["Status"] == "healthy"
        assert web["State"]["StartedAt"] > db["State"]["StartedAt"]
        wait_for(lambda: "ready" in engine.compose(pdir, name, "logs", "--no-color", "web").out, 20, "web's fetch")
        engine.compose(pdir, name, "down", "-v", "-t", "1")
        assert engine.project_objects(name) == ([], [], [])
    finally:
        engine.compose(pdir, name, "down", "-v", "-t", "1", check=False)


ONE_OFF = f"""version: "2.4"
services:
  job:
    image: {IMG}
"""


def test_compose_run_one_off_prints_its_output(engine, tmp_path):
    """`docker-compose run --rm -T` of a short command on the project's network prints what the
    command printed and exits with its code. (Compose 1.29 on Python 3 attaches only after its
    start, then starts the container again when it sees it ended: the command's output reaches
    the client only when the engine shows the ended run as ended, not as running, while the
    run's network is still being released.)"""
    if engine.name == "dockerd":
        # dockerd 20.10 loses the race itself on a loaded machine (a fresh-clone CI run saw compose
        # print nothing against it): the reference's timing, not a behaviour berth is held to
        pytest.skip("compose 1.29's one-off output against dockerd depends on dockerd's timing")
    name = "berthoneoff"
    pdir = project(engine, tmp_path, ONE_OFF, name)
    try:
        for _ in range(3):
            p = engine.compose(pdir, name, "run", "--rm", "-T", "job", "sh", "-c", "echo one-off")
            assert p.out == "one-off\n", p.err
        p = engine.compose(pdir, name, "run", "--rm", "-T", "job", "sh", "-c", "echo out; echo err >&2; exit 3",
                           check=False)
        assert (p.returncode, p.out) == (3, "out\n") and "err\n" in p.err
        assert engine.project_objects(name)[0] == []  # --rm: no one-off container left
        engine.compose(pdir, name, "down")
        assert engine.project_objects(name) == ([], [], [])
    finally:
        engine.compose(pdir, name, "down", "-t", "1", check=False)
