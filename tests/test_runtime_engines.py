"""Real engines drive berth-runc in runc's place: containerd (through its runc v2 shim and ctr)."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import BERTH_RUNC
from daemon_fixtures import host_dirs_containerd_makes, remove_made, unmount_under

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    if not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.skip("containerd is not installed")
    d = tmp_path_factory.mktemp("containerd")
    sock = str(d / "containerd.sock")
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{sock}"\n')
    ns = "berth-test"
    made = host_dirs_containerd_makes(ns)  # under /run/containerd whatever its state dir: removed at the end
    log = open(d / "containerd.log", "w")
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=log)

    def ctr(*args, timeout=30, check=True):
        p = subprocess.run(["ctr", "-a", sock, "-n", ns, *args], capture_output=True, timeout=timeout)
        p.out, p.err = p.stdout.decode(), p.stderr.decode()
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {args}: {p.err}")
        return p

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(sock) and ctr("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("containerd did not start")
        ctr("images", "import", os.path.join(DATA, "busybox-layers.docker.tar"), timeout=120)
        yield ctr
    finally:
        for line in ctr("tasks", "ls", "-q", check=False).out.split():
            ctr("tasks", "kill", "-s", "KILL", line, check=False)
            time.sleep(0.2)
            ctr("tasks", "delete", line, check=False)
        for line in ctr("containers", "ls", "-q", check=False).out.split():
            ctr("containers", "rm", line, check=False)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)
        remove_made(made)


IMAGE = "docker.io/library/busybox-layers:1"


def test_containerd_runs_a_container_with_berth_runc(containerd):
    p = containerd("run", "--rm", "--runc-binary", BERTH_RUNC, IMAGE, "ctd-run",
                   "sh", "-c", "echo hello; pwd; echo $FIXTURE; test -e /bin/vi || echo no-vi; exit 5", check=False)
    assert p.out.split() == ["hello", "/data", "busybox-layers", "no-vi"]
    assert p.returncode == 5


def test_containerd_exec_ps_pause_kill(containerd):
    cid = "ctd-life"
    containerd("run", "-d", "--runc-binary", BERTH_RUNC, IMAGE, cid, "sleep", "60")
    try:
        p = containerd("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo exec-ok; exit 3", check=False)
        assert p.out == "exec-ok\n" and p.returncode == 3
        assert len(containerd("tasks", "ps", cid).out.strip().splitlines()) == 2
        containerd("tasks", "pause", cid)
        assert "PAUSED" in containerd("tasks", "ls").out
        containerd("tasks", "resume", cid)
        assert "RUNNING" in containerd("tasks", "ls").out
        containerd("tasks", "kill", "-s", "KILL", cid)
        deadline = time.monotonic() + 10
        while "STOPPED" not in containerd("tasks", "ls").out and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "STOPPED" in containerd("tasks", "ls").out
    finally:
        containerd("tasks", "delete", "-f", cid, check=False)
        containerd("containers", "rm", cid, check=False)
