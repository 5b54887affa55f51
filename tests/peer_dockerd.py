"""A private dockerd (Debian's docker.io, 20.10) to compare berthd with: its own data root, exec
root, socket and address pool under a temp dir; no iptables changes and no default bridge.
Tests that use it skip when dockerd is not installed."""

import json
import os
import random
import shutil
import signal
import subprocess

import pytest
from daemon_fixtures import _run, host_dirs_dockerd_makes, remove_made, unmount_under, wait_for


class Dockerd:
    def __init__(self, base, runtimes=None, extra=None):
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        # dockerd makes /run/docker/plugins whatever its exec root; removed at stop if it made it
        self.made = host_dirs_dockerd_makes()
        self.sock = os.path.join(self.base, "docker.sock")
        self.host = "unix://" + self.sock
        self.docker_config = os.path.join(self.base, "cli")
        os.makedirs(self.docker_config, exist_ok=True)
        cfg = os.path.join(self.base, "daemon.json")
        pool = f"10.{random.randint(150, 199)}.{random.randint(0, 63) * 4}.0/22"
        with open(cfg, "w") as f:
            json.dump({"default-address-pools": [{"base": pool, "size": 26}], **({"runtimes": runtimes} if runtimes else {}),
                       **(extra or {})}, f)
        self.log_path = os.path.join(self.base, "dockerd.log")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.base, "data"), "--exec-root", os.path.join(self.base, "exec"),
             "-H", self.host, "--pidfile", os.path.join(self.base, "docker.pid"), "--iptables=false",
             "--ip6tables=false", "--bridge=none", "--config-file", cfg],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_for(lambda: self.proc.poll() is not None or
                 (os.path.exists(self.sock) and self.docker("version").returncode == 0), 60, "dockerd to listen")
        if self.proc.poll() is not None:
            raise AssertionError("dockerd exited: " + open(self.log_path).read()[-2000:])

    def env(self, **extra):
        e = dict(os.environ, HOME=self.base, DOCKER_CONFIG=self.docker_config)
        e.pop("DOCKER_HOST", None)
        e.update(extra)
        return e

    def docker(self, *args, input=None, check=False, timeout=120, env=None):
        return _run(["docker", "-H", self.host, *args], input, check, timeout, env or self.env())

    def stop(self):
        ids = self.docker("ps", "-aq").out.split()
        if ids:
            self.docker("rm", "-f", *ids)
        self.docker("network", "prune", "-f")  # dockerd leaves the bridges of networks it still has
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unmount_under(self.base)
        remove_made(self.made)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    if not shutil.which("dockerd"):
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    yield d
    d.stop()
