"""Real engines drive berth-runc in runc's place: containerd (through its runc v2 shim and ctr), and
dockerd 20.10 (through its containerd) side by side with runc."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import BERTH_RUNC
from daemon_fixtures import host_dirs_containerd_makes, remove_made, unmount_under
from peer_dockerd import Dockerd

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


# ------------------------------------------------------------------------------------------
# dockerd 20.10 with berth-runc as a runtime of its own (daemon.json "runtimes"), beside runc

@pytest.fixture(scope="module")
def dockerd_rt(tmp_path_factory):
    if not shutil.which("dockerd"):
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    d = Dockerd(tmp_path_factory.mktemp("dockerd-rt"), runtimes={"berth": {"path": BERTH_RUNC}})
    try:
        d.docker("load", "-q", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        yield d
    finally:
        d.stop()


def _both(d, *steps):
    """Each step (docker arguments, RT standing for the runtime's name) under --runtime berth and
    --runtime runc: [(exit code, stdout, stderr with container ids as ID)] for each runtime."""
    import re
    out = {}
    for rt in ("berth", "runc"):
        got = []
        for step in steps:
            p = d.docker(*[rt if a == "RT" else a for a in step], timeout=60)
            got.append((p.returncode, p.out, re.sub(r"\b[0-9a-f]{64}\b", "ID", p.err)))
        out[rt] = got
    return out["berth"], out["runc"]


def test_dockerd_runs_containers_with_berth_runc_as_with_runc(dockerd_rt):
    """What a docker user sees of a container's inside and its errors, the same under berth-runc
    as under runc: mounts and their options (the cgroup tmpfs writable, no cgroup2 tree on a
    hybrid host, read-only paths before masked ones), stdin the container's /dev/null open
    read-write, the device rules (runc's own allowed devices after dockerd's), a command not found
    (runc's words through containerd and dockerd, exit 127)."""
    inside = ("sh", "-c", "cut -d' ' -f2,4 /proc/mounts | grep -v '^/ '; ls -l /proc/self/fd/0 | cut -c1-10; "
              "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; sort /sys/fs/cgroup/devices/devices.list; exit 3")
    berth, runc = _both(dockerd_rt,
                        ("run", "--rm", "--runtime", "RT", "--network", "none", IMAGE, *inside),
                        ("run", "--rm", "--runtime", "RT", "--network", "none", IMAGE, "nosuchcmd"),
                        ("run", "--rm", "--runtime", "RT", "--network", "none", IMAGE, "/etc/passwd"),
                        ("run", "--rm", "--runtime", "RT", "--network", "none", "-w", "/data", "-u", "1000:1000",
                         "--read-only", "--tmpfs", "/run", IMAGE, "sh", "-c", "pwd; id; grep ' /run ' /proc/mounts"))
    assert berth == runc
    assert berth[0][0] == 3 and "/sys/fs/cgroup rw," in berth[0][1] and "lrwx" in berth[0][1]
    assert berth[1][0] == 127 and "runc create failed: unable to start container process: exec: " \
        '"nosuchcmd": executable file not found in $PATH: unknown' in berth[1][2]
    assert berth[2][0] == 126


def test_dockerd_exec_pause_update_stop_with_berth_runc_as_with_runc(dockerd_rt):
    """A container's life through dockerd under berth-runc as under runc: exec (its exit code, a
    command not found in runc's words), pause and unpause, `docker update` (runc update with the
    resources on stdin: the cgroup's values after), kill with a bad signal, stop, the state after."""
    import re
    cg = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes "
          "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max")
    names = {}
    try:
        for rt in ("berth", "runc"):
            names[rt] = f"rt-{rt}-{os.getpid()}"
            dockerd_rt.docker("run", "-d", "--name", names[rt], "--runtime", rt, "--network", "none", IMAGE,
                              "sleep", "300", check=True)
        out = {}
        for rt, name in names.items():
            steps = [("exec", name, "sh", "-c", "echo in; exit 7"), ("exec", name, "nosuchcmd"),
                     ("exec", "-w", "/nonexist", name, "true"), ("pause", name),
                     ("inspect", "-f", "{{.State.Status}}", name), ("unpause", name),
                     ("update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--pids-limit", "77", name),
                     ("exec", name, "sh", "-c", cg), ("update", "--memory", "32m", name), ("exec", name, "sh", "-c", cg),
                     ("kill", "-s", "NOSIG", name), ("stop", "-t", "1", name),
                     ("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name), ("kill", name)]
            got = []
            for step in steps:
                p = dockerd_rt.docker(*step, timeout=60)
                err = re.sub(r"\b[0-9a-f]{64}\b", "ID", p.err.replace(name, "NAME"))
                got.append((p.returncode, p.out.replace(name, "NAME"), err))
            out[rt] = got
        assert out["berth"] == out["runc"]
        assert out["berth"][0][:2] == (7, "in\n")
        assert out["berth"][7][1].split() == ["67108864", "134217728", "50000", "77"]
        assert out["berth"][9][1].split()[0] == "33554432"
    finally:
        if names:
            dockerd_rt.docker("rm", "-f", *names.values())


# ------------------------------------------------------------------------------------------
# containerd's CRI with berth-runc as its runc binary, driven by crictl: pods for a kubelet

def _crictl():
    from daemon_fixtures import REPO
    for p in (os.path.join(REPO, "..", "shared", "bin", "crictl"), shutil.which("crictl") or ""):
        if p and os.access(p, os.X_OK):
            return os.path.realpath(p)
    return None


def test_containerd_cri_runs_pods_with_berth_runc(tmp_path):
    """A node whose containerd runs berth-runc in runc's place (the runc runtime's BinaryName):
    crictl's pod and container life as a kubelet drives it; the sandbox (pause) and the container
    are berth-runc's (its own `list` over the root containerd gave it); exec exit codes, an
    update of the memory limit, a stop's exit code, and a command not found in runc's words as
    the container's StartError."""
    import json
    import re
    crictl = _crictl()
    if crictl is None:
        pytest.skip("crictl is not installed (../shared/bin/crictl or PATH)")
    if not (shutil.which("containerd") and shutil.which("ctr")):
        pytest.skip("containerd is not installed")
    from peer_containerd import IMG as CIMG
    from peer_containerd import ContainerdCRI
    ctd = ContainerdCRI(tmp_path / "ctd", runc_binary=BERTH_RUNC)

    def cri(*args, input=None):
        p = subprocess.run([crictl, "--runtime-endpoint", "unix://" + ctd.sock, "--image-endpoint",
                            "unix://" + ctd.sock, "--timeout", "30s", *args], input=input, capture_output=True,
                           text=True, timeout=90, stdin=None if input is not None else subprocess.DEVNULL)
        return p

    def write(name, obj):
        path = tmp_path / name
        path.write_text(json.dumps(obj))
        return str(path)

    pod = None
    try:
        logs = tmp_path / "logs"
        logs.mkdir()
        pcfg = write("pod.json", {"metadata": {"name": "rt", "namespace": "berth", "uid": "rt-1"},
                                  "log_directory": str(logs), "linux": {}})
        pod = cri("runp", pcfg).stdout.strip()
        assert pod, "runp failed"
        ccfg = write("c.json", {"metadata": {"name": "c"}, "image": {"image": "docker.io/library/" + CIMG},
                                "command": ["sh", "-c", "echo hello; exec sleep 300"], "log_path": "c.log",
                                "linux": {"resources": {"memory_limit_in_bytes": 64 << 20}}})
        cid = cri("create", pod, ccfg, pcfg).stdout.strip()
        assert cri("start", cid).returncode == 0
        listed = subprocess.run([BERTH_RUNC, "--root", str(tmp_path / "ctd" / "runc" / "k8s.io"), "list", "-q"],
                                capture_output=True, text=True).stdout.split()
        assert pod in listed and cid in listed  # berth-runc made both: the sandbox's pause and the container
        p = cri("exec", "-s", cid, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exit 3")
        assert p.returncode == 1 and "exited with 3" in p.stderr
        assert cri("exec", "-s", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip() == str(64 << 20)
        p = cri("exec", "-s", cid, "nosuchcmd")
        assert p.returncode == 1 and ('OCI runtime exec failed: exec failed: unable to start container process: exec: '
                                      '\\"nosuchcmd\\": executable file not found in $PATH: unknown') in p.stderr, p.stderr
        assert cri("exec", "-i", cid, "cat", input="piped\n").stdout == "piped\n"
        assert cri("update", "--memory", str(128 << 20), cid).returncode == 0
        assert cri("exec", "-s", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip() == str(128 << 20)
        assert cri("logs", cid).stdout == "hello\n"
        assert cri("stop", "-t", "1", cid).returncode == 0
        st = json.loads(cri("inspect", cid).stdout)["status"]
        assert (st["state"], st["exitCode"]) == ("CONTAINER_EXITED", 143)
        assert cri("rm", cid).returncode == 0
        bcfg = write("bad.json", {"metadata": {"name": "bad"}, "image": {"image": "docker.io/library/" + CIMG},
                                  "command": ["nosuchcmd"]})
        bad = cri("create", pod, bcfg, pcfg).stdout.strip()
        assert cri("start", bad).returncode == 1
        st = json.loads(cri("inspect", bad).stdout)["status"]
        assert (st["state"], st["exitCode"], st["reason"]) == ("CONTAINER_EXITED", 128, "StartError")
        assert re.fullmatch(r'failed to create containerd task: failed to create shim task: OCI runtime create failed: '
                            r'runc create failed: unable to start container process: exec: "nosuchcmd": executable '
                            r'file not found in \$PATH: unknown', st["message"]), st["message"]
        assert cri("rm", bad).returncode == 0
        assert cri("stopp", pod).returncode == 0
        assert cri("rmp", pod).returncode == 0
        pod = None
    finally:
        if pod:
            cri("stopp", pod)
            cri("rmp", pod)
        ctd.close()
