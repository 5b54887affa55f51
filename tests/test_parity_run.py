"""docker parity of containers (issue 11, "Containers"): run options that take effect or are
refused with docker's words, healthchecks, update/export/system df/prune/stats, rmi conflicts
and the CLI's flags, through the real docker CLI, the Docker SDK for Python and berth's CLI."""

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
from daemon_fixtures import DATA, Daemon, free_port, wait_for

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


@pytest.fixture(scope="module")
def sdk(eng):
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=eng.host, version="1.41")
    yield c
    c.close()


def _name(prefix="pr"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _inspect(eng, name):
    return json.loads(eng.docker("inspect", name, check=True).out)[0]


# --- 1. run options ---

def test_run_option_refusals_use_dockers_words(eng):
    cases = [
        (["--restart", "bogus", "-d"], "invalid restart policy 'bogus'"),
        (["--restart", "on-failure:x", "-d"], "maximum retry count must be an integer"),
        (["--restart", "always:3", "-d"], "maximum retry count cannot be used with restart policy 'always'"),
        (["--restart", "on-failure:-1", "-d"], "maximum retry count cannot be negative"),
        (["--pull", "bogus"], 'invalid pull option: \'bogus\': must be one of "always", "missing" or "never"'),
        (["--log-driver", "bogus"], 'error looking up logging plugin bogus: plugin "bogus" not found'),
        (["--gpus", "all"], 'could not select device driver "" with capabilities: [[gpu]]'),
        (["--ipc", "bogus"], "Invalid IPC mode: bogus"),
        (["--pid", "bogus"], "invalid PID mode"),
        (["--pid", "container:nonexist"], "No such container: nonexist"),
        (["--link", "nonexist:db"], "could not get container for nonexist: No such container: nonexist"),
        (["-m", "20m", "--memory-swap", "10m"], "Minimum memoryswap limit should be larger than memory limit"),
        (["--memory-swap", "10m"], "You should always set the Memory limit when using Memoryswap limit"),
        (["-m", "10m", "--memory-reservation", "20m"],
         "Minimum memory limit can not be less than memory reservation limit"),
        (["--oom-score-adj", "2000"], "Invalid value 2000, range for oom score adj is [-1000, 1000]"),
        (["--cpuset-cpus", "5x"], "Invalid value 5x for cpuset cpus: invalid format: 5x"),
        (["--cpuset-cpus", "999"], "Requested CPUs are not available - requested 999"),
        (["--sysctl", "net.ipv4.ip_forward=1", "--network", "host"],
         'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
        (["--device", "/dev/nonexist"],
         'error gathering device information while adding custom device "/dev/nonexist": no such file or directory'),
    ]
    for flags, msg in cases:
        for cli in (eng.docker, eng.berth):
            p = cli("run", "--rm" if "-d" not in flags else "--name=" + _name(), *flags, IMAGE, "true")
            assert p.returncode != 0, (flags, p.out)
            assert msg in p.err, (cli, flags, p.err)
            assert "internal error" not in p.err and "Traceback" not in p.err
    # dockerd's sentence alone, not a field's name before it
    p = eng.docker("create", "--restart", "on-failure:-1", IMAGE, "true")
    assert p.err.splitlines()[0] == "Error response from daemon: maximum retry count cannot be negative", p.err
    # nothing was left behind by the refused creates
    assert eng.berth("ps", "-aq").out.split() == []


def test_cli_side_errors_are_one_line(eng):
    p = eng.berth("run", "--rm", "-m", "1x", IMAGE, "true")
    assert p.returncode == 125
    assert p.err.strip() == 'berth: invalid argument "1x" for "-m, --memory" flag: invalid suffix: \'x\''
    p = eng.berth("run", "--rm", "--restart", "always", IMAGE, "true")
    assert p.returncode == 125 and "conflicting options: cannot specify both --restart and --rm" in p.err
    for cli in (eng.berth, eng.docker):
        p = cli("run", "--rm", "-it", IMAGE, "true", input=b"")
        assert p.returncode == 1 and "the input device is not a TTY" in p.err, p.err
    p = eng.berth("run", "--rm", "--device-cgroup-rule", "bogus", IMAGE, "true")
    assert p.returncode == 125 and "invalid device cgroup format 'bogus'" in p.err


def test_windows_only_flags_are_hidden_and_refused_as_the_docker_cli(eng):
    # the docker CLI, told by the daemon that it runs on Linux, leaves them out of --help and
    # refuses them given with any value, before anything is sent: exit 1, a line for each
    before = eng.berth("ps", "-aq", check=True).out
    msg = '"--{}" is only supported on a Docker daemon running on windows, but the Docker daemon is running on linux'
    for args, flags in ((["--io-maxiops", "5"], ["io-maxiops"]), (["--cpu-count", "0"], ["cpu-count"]),
                        (["--io-maxiops", "0", "--cpu-percent", "5", "--io-maxbandwidth", "1m"],
                         ["cpu-percent", "io-maxbandwidth", "io-maxiops"])):
        want = [msg.format(f) for f in flags]
        for verb in ("create", "run"):
            d = eng.docker(verb, *args, IMAGE, "true")
            b = eng.berth(verb, *args, IMAGE, "true")
            assert d.returncode == 1 and d.err.strip().splitlines() == want, d.err
            assert b.returncode == 1 and b.err.strip().removeprefix("berth: ").splitlines() == want, b.err
    assert eng.berth("ps", "-aq", check=True).out == before  # nothing made
    for verb in ("create", "run"):
        for cli in (eng.docker, eng.berth):
            out = cli(verb, "--help", check=True).out
            assert "--cpus " in out and not re.search(r"--(cpu-count|cpu-percent|io-maxbandwidth|io-maxiops)\b", out)


def test_namespaces_devices_sysctls_shm(eng):
    # --pid host sees the host's processes (berthd's among them)
    p = eng.docker("run", "--rm", "--pid", "host", IMAGE, "sh", "-c", f"test -d /proc/{eng.proc.pid} && echo yes")
    assert p.out.strip() == "yes", p.err
    p = eng.docker("run", "--rm", IMAGE, "sh", "-c", f"test -d /proc/{eng.proc.pid} && echo yes || echo no")
    assert p.out.strip() == "no"
    # --pid container: and --ipc container: (a shareable donor)
    donor = _name("donor")
    eng.docker("run", "-d", "--name", donor, "--ipc", "shareable", IMAGE, "sh", "-c",
               "echo shared > /dev/shm/marker; sleep 600", check=True)
    try:
        wait_for(lambda: eng.docker("exec", donor, "cat", "/dev/shm/marker").out.strip() == "shared", 10)
        p = eng.docker("run", "--rm", "--pid", f"container:{donor}", "--ipc", f"container:{donor}", IMAGE,
                       "sh", "-c", "cat /dev/shm/marker; tr '\\0' ' ' < /proc/1/cmdline")
        assert p.out.split("\n") == ["shared", "sleep 600 "], (p.out, p.err)  # pid 1 is the donor's
        assert _inspect(eng, donor)["HostConfig"]["IpcMode"] == "shareable"
        private = _name("priv")
        eng.docker("run", "-d", "--name", private, IMAGE, "sleep", "600", check=True)
        p = eng.docker("run", "--rm", "--ipc", f"container:{private}", IMAGE, "true")
        pid_ = _inspect(eng, private)["Id"]
        assert p.returncode != 0 and (f"can't join IPC of container {pid_}: non-shareable IPC (hint: use "
                                      "IpcMode:shareable for the donor container)") in p.err, p.err
        eng.docker("stop", "-t", "0", private, check=True)
        p = eng.docker("run", "--rm", "--pid", f"container:{private}", IMAGE, "true")
        assert p.returncode != 0 and f"container {pid_} is not running" in p.err, p.err
        assert _inspect(eng, private)["HostConfig"]["IpcMode"] == "private"
        eng.docker("rm", "-f", private)
    finally:
        eng.docker("rm", "-f", donor)
    p = eng.docker("run", "--rm", "--shm-size", "1m", IMAGE, "df", "-k", "/dev/shm")
    assert p.out.splitlines()[1].split()[1] == "1024", p.out
    p = eng.docker("run", "--rm", "--device", "/dev/null:/dev/mynull", IMAGE, "sh", "-c",
                   "ls -l /dev/mynull && echo hi > /dev/mynull && echo ok")
    assert p.out.split()[0].startswith("c") and "1,   3" in p.out and p.out.split()[-1] == "ok", p.out + p.err
    if os.path.isdir("/sys/fs/cgroup/devices"):  # the device cgroup (v1): a rule opens a device class
        probe = "mknod /tmp/r b 7 250 && head -c 4 /tmp/r; echo rc=$?"
        p = eng.docker("run", "--rm", IMAGE, "sh", "-c", probe)
        assert "Operation not permitted" in p.out + p.err and "rc=1" in p.out
        p = eng.docker("run", "--rm", "--device-cgroup-rule", "b 7:* rwm", IMAGE, "sh", "-c", probe)
        assert "Operation not permitted" not in p.out + p.err and "rc=0" in p.out, p.out + p.err
    p = eng.docker("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmni=1000", IMAGE,
                   "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni")
    assert p.out.split() == ["1", "1000"], p.err


def test_ids_oom_domain_resources(eng):
    p = eng.docker("run", "--rm", "--group-add", "1234", "--group-add", "5", "-u", "1000:1000", IMAGE, "id", "-G")
    assert sorted(p.out.split()) == ["1000", "1234", "5"], p.out + p.err
    # no passwd entry: group 0; the primary group is a supplementary one too (dockerd 20.10 on this
    # image, side by side: "uid=4321 gid=0 groups=0", "uid=4321 gid=55 groups=55", "... groups=0,7")
    p = eng.docker("run", "--rm", "-u", "4321", IMAGE, "id")
    assert p.out.split() == ["uid=4321", "gid=0", "groups=0"], p.out + p.err
    p = eng.docker("run", "--rm", "-u", "4321:55", IMAGE, "id")
    assert p.out.split() == ["uid=4321", "gid=55", "groups=55"], p.out + p.err
    p = eng.docker("run", "--rm", "--group-add", "7", IMAGE, "sh", "-c", "grep ^Groups: /proc/self/status")
    assert p.out.split() == ["Groups:", "0", "7"], p.out + p.err
    p = eng.docker("run", "--rm", "--group-add", "nosuchgroup", IMAGE, "id")
    assert p.returncode != 0 and "Unable to find group nosuchgroup: no matching entries in group file" in p.err
    p = eng.docker("run", "--rm", "--oom-score-adj", "500", IMAGE, "cat", "/proc/self/oom_score_adj")
    assert p.out.strip() == "500", p.err
    with open("/proc/self/oom_score_adj") as f:
        own = int(f.read())
    p = eng.docker("run", "--rm", "--oom-score-adj", str(own - 100), IMAGE, "true")
    assert p.returncode != 0 and "CAP_SYS_RESOURCE" in p.err or p.returncode == 0
    p = eng.docker("run", "--rm", "--domainname", "example.com", "-h", "box", IMAGE, "sh", "-c",
                   "hostname; cat /proc/sys/kernel/domainname; grep box /etc/hosts")
    lines = p.out.splitlines()
    assert lines[:2] == ["box", "example.com"] and "box.example.com box" in lines[2], p.out + p.err
    cg = "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes"
    if os.path.exists(cg):
        p = eng.docker("run", "--rm", "--cpuset-cpus", "0", "-m", "20m", "--memory-reservation", "10m",
                       "--memory-swap", "40m", IMAGE, "cat", "/sys/fs/cgroup/cpuset/cpuset.cpus", cg,
                       "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
        assert p.out.split() == ["0", str(10 << 20), str(40 << 20)], p.out + p.err
    name = _name()
    eng.docker("create", "--name", name, "--cpuset-cpus", "0", "--memory-reservation", "10m", "--shm-size", "2m",
               "--group-add", "1234", "--oom-score-adj", "300", "--domainname", "d.example", "--pid", "host",
               IMAGE, "true", check=True)
    hc = _inspect(eng, name)["HostConfig"]
    assert (hc["CpusetCpus"], hc["MemoryReservation"], hc["ShmSize"], hc["GroupAdd"], hc["OomScoreAdj"],
            hc["PidMode"]) == ("0", 10 << 20, 2 << 20, ["1234"], 300, "host")
    assert _inspect(eng, name)["Config"]["Domainname"] == "d.example"
    eng.docker("rm", name)


def test_platform_mismatch_refused(eng):
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(eng.sock)
    c = Conn("localhost")
    c.request("POST", "/v1.41/containers/create?platform=linux/arm64", json.dumps({"Image": IMAGE}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == 404
    assert body["message"] == ("image with reference busybox-layers:1 was found but does not match the specified "
                               "platform: wanted linux/arm64, actual: linux/amd64")
    c.close()


def test_legacy_links(eng):
    db, web = _name("db"), _name("web")
    eng.docker("run", "-d", "--name", db, "-e", "SECRET=s3", "--expose", "5432", IMAGE, "sleep", "600", check=True)
    try:
        ip = _inspect(eng, db)["NetworkSettings"]["IPAddress"]
        p = eng.docker("run", "--rm", "--link", f"{db}:dbx", IMAGE, "sh", "-c", "env | grep ^DBX_ | sort; "
                       "grep dbx /etc/hosts")
        out = p.out.splitlines()
        for want in ("DBX_ENV_SECRET=s3", f"DBX_PORT=tcp://{ip}:5432", f"DBX_PORT_5432_TCP=tcp://{ip}:5432",
                     f"DBX_PORT_5432_TCP_ADDR={ip}", "DBX_PORT_5432_TCP_PORT=5432", "DBX_PORT_5432_TCP_PROTO=tcp"):
            assert want in out, (want, p.out, p.err)
        assert any(line.startswith("DBX_NAME=/") and line.endswith("/dbx") for line in out)
        assert f"{ip}\tdbx {db[:12] if False else _inspect(eng, db)['Config']['Hostname']} {db}" in out
        eng.docker("create", "--name", web, "--link", f"{db}:dbx", IMAGE, "true", check=True)
        assert _inspect(eng, web)["HostConfig"]["Links"] == [f"/{db}:/{web}/dbx"]
        p = eng.docker("rm", "--link", f"{web}/dbx")
        assert p.returncode == 0, p.err
        assert _inspect(eng, web)["HostConfig"]["Links"] is None
        p = eng.docker("rm", "--link", f"{web}/dbx")
        assert p.returncode == 1 and f"No such container: {web}/dbx" in p.err
    finally:
        eng.docker("rm", "-f", web, db)


# --- 2. healthchecks ---

def _image_with_healthcheck(eng, tmp_path, tag, healthcheck):
    """busybox-layers with a HEALTHCHECK in its config, loaded as `tag`."""
    import hashlib
    import io
    import tarfile
    with tarfile.open(BUSYBOX) as src:
        members = {m.name: (m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()}
    manifest = json.loads(members["manifest.json"][1])
    cfg_name = manifest[0]["Config"]
    cfg = json.loads(members[cfg_name][1])
    cfg["config"]["Healthcheck"] = healthcheck
    data = json.dumps(cfg).encode()
    new_name = hashlib.sha256(data).hexdigest() + ".json"
    manifest[0]["Config"] = new_name
    manifest[0]["RepoTags"] = [tag]
    out = tmp_path / "hc.tar"
    with tarfile.open(out, "w") as dst:
        for name, (m, body) in members.items():
            if name in (cfg_name, "manifest.json", "repositories"):
                continue
            dst.addfile(m, io.BytesIO(body) if body is not None else None)
        for name, body in ((new_name, data), ("manifest.json", json.dumps(manifest).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(body)
            dst.addfile(ti, io.BytesIO(body))
    eng.berth("load", "-i", str(out), check=True)


def _health(eng, name):
    return (_inspect(eng, name)["State"].get("Health") or {})


def test_a_link_on_a_user_defined_network_is_only_an_alias_as_dockerd(eng, peer):
    """--link on a user-defined network: the endpoint's link (the alias resolves for this
    container), but no legacy link: no /etc/hosts entry, no ALIAS_* variables, no
    HostConfig.Links, and a link to a container that does not exist is no error at create. berth
    gave it all of the default bridge's legacy link."""
    seen = []
    for d in (eng, peer):
        net, a, b, c = _name("lun"), _name("lua"), _name("lub"), _name("luc")
        got = []
        try:
            d.docker("network", "create", net, check=True)
            d.docker("run", "-d", "--name", a, "--network", net, "-e", "SECRET=1", IMAGE, "sleep", "60", check=True)
            d.docker("run", "-d", "--name", b, "--network", net, "--link", f"{a}:al", IMAGE, "sleep", "60", check=True)
            got.append(d.docker("exec", b, "sh", "-c", "grep -cw al /etc/hosts; env | grep -c ^AL_; "
                                "ping -c1 -W2 al >/dev/null && echo resolved").out.split())
            info = _inspect(d, b)
            got.append((info["HostConfig"]["Links"], info["NetworkSettings"]["Networks"][net]["Links"] == [f"{a}:al"]))
            p = d.docker("create", "--name", c, "--network", net, "--link", "pr-nosuch:x", IMAGE, "true")
            got.append(p.returncode)
        finally:
            d.docker("rm", "-f", a, b, c)
            d.docker("network", "rm", net)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0] == [["0", "0", "resolved"], (None, True), 0], seen


def test_healthcheck_states_ps_events_filters(eng):
    name = _name("hc")
    since = str(int(time.time()) - 1)
    eng.docker("run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok && echo probe-ok",
               "--health-interval", "300ms", "--health-retries", "2", IMAGE, "sleep", "600", check=True)
    try:
        h = _health(eng, name)
        assert h["Status"] == "starting" and h["FailingStreak"] == 0
        assert "(health: starting)" in eng.docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").out
        wait_for(lambda: _health(eng, name).get("Status") == "unhealthy", 20, "unhealthy")
        h = _health(eng, name)
        assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1
        assert set(h["Log"][-1]) == {"Start", "End", "ExitCode", "Output"}
        assert eng.berth("ps", "--filter", "health=unhealthy", "-q").out.split() == [_inspect(eng, name)["Id"][:12]]
        assert "(unhealthy)" in eng.berth("ps", "--filter", f"name={name}").out
        eng.docker("exec", name, "touch", "/tmp/ok", check=True)
        wait_for(lambda: _health(eng, name).get("Status") == "healthy", 20, "healthy")
        h = _health(eng, name)
        assert h["FailingStreak"] == 0 and h["Log"][-1]["Output"] == "probe-ok\n"
        wait_for(lambda: len(_health(eng, name)["Log"]) == 5, 20, "5 log entries")
        time.sleep(0.7)
        assert len(_health(eng, name)["Log"]) == 5  # only the last 5 are kept
        assert "(healthy)" in eng.docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").out
        assert eng.docker("ps", "--filter", "health=healthy", "-q").out.split() == [_inspect(eng, name)["Id"][:12]]
        assert eng.docker("ps", "--filter", "health=starting", "-q").out.split() == []
        p = eng.docker("ps", "--filter", "health=bogus")
        assert p.returncode != 0 and "Unrecognised filter value for health: bogus" in p.err
        p = eng.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                       f"container={name}", "--filter", "event=health_status", "--format", "{{.Action}}")
        assert p.out.split("\n")[:2] == ["health_status: unhealthy", "health_status: healthy"], p.out
        p = eng.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                       f"container={name}", "--format", "{{.Action}}")
        assert "exec_start: /bin/sh -c test -f /tmp/ok && echo probe-ok" in p.out.splitlines(), p.out
        assert _inspect(eng, name)["Config"]["Healthcheck"] == {
            "Test": ["CMD-SHELL", "test -f /tmp/ok && echo probe-ok"], "Interval": 300000000, "Retries": 2}
        eng.docker("stop", "-t", "0", name, check=True)
        assert _health(eng, name)["Status"] == "unhealthy"  # as docker marks a stopped container
    finally:
        eng.docker("rm", "-f", name)


def test_healthcheck_timeout_and_image_healthcheck(eng, tmp_path, sdk):
    _image_with_healthcheck(eng, tmp_path, "hc-image:1", {"Test": ["CMD", "true"], "Interval": 200000000})
    a, b, c, d = _name("img"), _name("nohc"), _name("slow"), _name("startp")
    try:
        eng.docker("run", "-d", "--name", a, "hc-image:1", "sleep", "600", check=True)
        wait_for(lambda: _health(eng, a).get("Status") == "healthy", 20, "the image's HEALTHCHECK")
        eng.docker("run", "-d", "--name", b, "--no-healthcheck", "hc-image:1", "sleep", "600", check=True)
        assert "Health" not in _inspect(eng, b)["State"]
        assert eng.docker("ps", "--filter", "health=none", "-q").out.split() == [_inspect(eng, b)["Id"][:12]] or \
            _inspect(eng, b)["Id"][:12] in eng.docker("ps", "--filter", "health=none", "-q").out.split()
        # the SDK's healthcheck, with a probe that outlives its timeout
        sdk.containers.run(IMAGE, ["sleep", "600"], name=c, detach=True,
                           healthcheck={"test": ["CMD-SHELL", "sleep 5"], "interval": 200_000_000,
                                        "timeout": 300_000_000, "retries": 1})
        wait_for(lambda: _health(eng, c).get("Status") == "unhealthy", 20, "a timed-out probe")
        last = _health(eng, c)["Log"][-1]
        assert last["ExitCode"] == -1 and last["Output"] == "Health check exceeded timeout (300ms)", last
        assert sdk.containers.get(c).attrs["State"]["Health"]["Status"] == "unhealthy"
        # failures within the start period do not count
        eng.docker("run", "-d", "--name", d, "--health-cmd", "exit 3", "--health-interval", "200ms",
                   "--health-retries", "1", "--health-start-period", "30s", IMAGE, "sleep", "600", check=True)
        wait_for(lambda: len(_health(eng, d).get("Log") or []) >= 2, 20, "probes")
        h = _health(eng, d)
        assert h["Status"] == "starting" and h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 3
    finally:
        eng.docker("rm", "-f", a, b, c, d)
        eng.docker("rmi", "hc-image:1")


# --- 3. update, export, system df / prune, stats, ps -s ---

def test_update_resources_and_restart_policy(eng, sdk):
    name = _name("upd")
    eng.docker("run", "-d", "--name", name, IMAGE, "sleep", "600", check=True)
    try:
        p = eng.docker("update", "-m", "30m", "--memory-swap", "60m", "--cpus", "0.5", "--pids-limit", "50",
                       "--restart", "on-failure:3", name)
        assert p.returncode == 0 and p.out.strip() == name, p.err
        files = ["/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                 "/sys/fs/cgroup/pids/pids.max"]
        if all(os.path.exists(os.path.dirname(f)) for f in files):
            assert eng.docker("exec", name, "cat", *files).out.split() == [str(30 << 20), "50000", "50"]
        hc = _inspect(eng, name)["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["PidsLimit"], hc["RestartPolicy"]) == \
            (30 << 20, 60 << 20, 500000000, 50, {"Name": "on-failure", "MaximumRetryCount": 3})
        # the SDK's update, and docker's refusals
        sdk.containers.get(name).update(mem_limit="40m", memswap_limit="80m")
        assert _inspect(eng, name)["HostConfig"]["Memory"] == 40 << 20
        p = eng.docker("update", "-m", "1m", name)
        assert p.returncode == 1 and "Minimum memory limit allowed is 6MB" in p.err
        p = eng.docker("update", "--restart", "bogus", name)
        assert p.returncode == 1 and "invalid restart policy 'bogus'" in p.err
        p = eng.berth("update", "-m", "1x", name)
        assert p.returncode == 125 and p.err.count("\n") == 1 and "invalid suffix: 'x'" in p.err
        p = eng.berth("update", "--cpuset-cpus", "0", name, "nonexistent")
        assert p.returncode == 1 and p.out.split() == [name] and "No such container: nonexistent" in p.err
        assert _inspect(eng, name)["HostConfig"]["CpusetCpus"] == "0"
        # a stopped container's update takes effect at its next start
        eng.docker("rm", "-f", name, check=True)
        eng.docker("create", "--name", name, IMAGE, "sleep", "600", check=True)
        eng.berth("update", "-m", "24m", "--memory-swap", "48m", "--pids-limit", "40", name, check=True)
        eng.docker("start", name, check=True)
        if all(os.path.exists(os.path.dirname(f)) for f in files):
            out = eng.docker("exec", name, "cat", files[0], files[2]).out.split()
            assert out == [str(24 << 20), "40"], out
    finally:
        eng.docker("rm", "-f", name)


def test_update_refusals_as_dockerd(eng, peer):
    """What `docker update` refuses, side by side with dockerd 20.10: the request's own conflicts
    (400) before those with the container's settings (409, `Cannot update container <id>: ...`):
    CPU Period/Quota against NanoCPUs either way, and a memory limit above the recorded swap
    limit unless the swap limit comes with it (a container made without limits too)."""
    cases = [["-m", "10m"], ["-m", "10m", "--memory-swap", "-1"], ["--cpus", "0.5"], ["--cpu-quota", "50000"],
             ["--cpus", "0.5", "--cpu-period", "50000"], ["-m", "1m"]]
    seen = []
    for d in (eng, peer):
        made = {"plain": [], "quota": ["--cpu-quota", "50000"], "nano": ["--cpus", "1"],
                "mem": ["-m", "20m", "--memory-swap", "30m"]}
        names = {k: _name("up" + k) for k in made}
        try:
            for k, opts in made.items():
                d.docker("create", "--name", names[k], *opts, IMAGE, "true", check=True)
            got = []
            for k in made:
                for c in cases + [["-m", "25m"], ["-m", "40m"]]:
                    p = d.docker("update", *c, names[k])
                    got.append((k, c, p.returncode, p.err.replace(_inspect(d, names[k])["Id"], "<id>").strip()))
            hcs = [_inspect(d, names[k])["HostConfig"] for k in made]
            got.append([(h["Memory"], h["MemorySwap"], h["NanoCpus"], h["CpuQuota"], h["CpuPeriod"]) for h in hcs])
            seen.append(got)
        finally:
            d.docker("rm", "-f", *names.values())
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert ("plain", ["-m", "10m"], 1, "Error response from daemon: Cannot update container <id>: Memory limit "
            "should be smaller than already set memoryswap limit, update the memoryswap at the same time") in seen[0]


def test_update_warns_of_what_it_sets_as_dockerd(eng, peer):
    """`docker update` warns of what the request sets: the kernel memory limit's deprecation once,
    at the update that sets it, not at every update after (berth warned again each time)."""
    seen = []
    for d in (eng, peer):
        name = _name("uw")
        try:
            d.docker("create", "--name", name, IMAGE, "true", check=True)
            got = []
            for opts in (["--kernel-memory", "50m"], ["--cpu-shares", "256"], ["-m", "64m", "--memory-swap", "-1"]):
                p = d.docker("update", *opts, name)
                got.append((p.returncode, p.out.strip().replace(name, "<name>"), p.err))
            import docker
            api = docker.APIClient(base_url=d.host, version="1.41")
            got.append(api.update_container(name, cpu_shares=512))  # no warning: null, not []
            api.close()
            seen.append(got)
        finally:
            d.docker("rm", "-f", name)
    assert seen[0] == seen[1], seen
    assert seen[0][-1] == {"Warnings": None}, seen
    assert [g[1] for g in seen[0][:-1]] == ["<name>\nSpecifying a kernel memory limit is deprecated and will be removed in "
                                       "a future release.", "<name>", "<name>"], seen


def test_cli_value_parsers():
    from berth.cli.runflags import duration, ram
    from berth.errors import BerthError
    assert ram("-m", "1") == 1 and ram("-m", "64m") == 64 << 20 and ram("-m", "1.5g") == 3 << 29
    assert ram("-m", "10kb") == 10 << 10 and ram("-m", "2GiB") == 2 << 30
    for bad, why in (("1x", "invalid suffix: 'x'"), ("abc", "invalid size: 'abc'"), ("", "invalid size")):
        with pytest.raises(BerthError) as e:
            ram("-m, --memory", bad)
        assert why in e.value.message and e.value.message.startswith(f'invalid argument "{bad}" for "-m, --memory"')
    assert duration("health-interval", "1m30s") == 90 * 10**9 and duration("x", "250ms") == 250 * 10**6
    assert duration("health-interval", ".5s") == 5 * 10**8 and duration("x", "-1s") == -10**9  # as Go's
    with pytest.raises(BerthError, match=r'flag: time: missing unit in duration "5"$'):
        duration("health-interval", "5")


def test_export_ps_size_and_inspect_size(eng, tmp_path):
    import tarfile
    run_, made = _name("exp"), _name("exp2")
    eng.docker("run", "-d", "--name", run_, IMAGE, "sh", "-c",
               "dd if=/dev/zero of=/big bs=1k count=100 2>/dev/null; sleep 600", check=True)
    eng.docker("create", "--name", made, "-v", "/vol", IMAGE, "true", check=True)
    try:
        wait_for(lambda: "big" in eng.docker("exec", run_, "ls", "/").out, 10)
        out = tmp_path / "run.tar"
        eng.berth("export", "-o", str(out), run_, check=True)
        with tarfile.open(out) as t:
            names = t.getnames()
            assert "big" in names and t.getmember("big").size == 100 * 1024
            assert "bin/busybox" in names or "bin/sh" in names
            assert not any(n.startswith("proc/") for n in names)
        p = eng.docker("export", made)
        import io
        with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
            assert "big" not in t.getnames() and "bin/sh" in t.getnames()
        p = eng.berth("export", made)  # stdout is not a terminal here: the tar
        assert p.returncode == 0 and p.stdout[:512].strip(b"\0")
        p = eng.docker("ps", "-s", "--filter", f"name={run_}", "--format", "{{.Size}}")
        assert p.out.startswith("102kB (virtual "), p.out
        p = eng.berth("ps", "-s", "--filter", f"name={run_}")
        assert p.out.splitlines()[0].split()[-1] == "SIZE" and "102kB (virtual " in p.out
        info = json.loads(eng.docker("inspect", "-s", run_).out)[0]
        assert info["SizeRw"] == 100 * 1024 and info["SizeRootFs"] > info["SizeRw"]
    finally:
        eng.docker("rm", "-f", "-v", run_, made)


def test_system_df_and_prune(eng, sdk):
    keep, gone = _name("keep"), _name("gone")
    vol = _name("vol")
    eng.docker("volume", "create", vol, check=True)
    eng.docker("run", "-d", "--name", keep, "-v", f"{vol}:/data", IMAGE, "sh", "-c",
               "echo hello > /data/f; sleep 600", check=True)
    eng.docker("create", "--name", gone, IMAGE, "true", check=True)
    try:
        df = sdk.df()
        assert {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"} <= set(df)
        img = next(i for i in df["Images"] if f"{IMAGE}" in (i.get("RepoTags") or []))
        assert img["Containers"] == 2 and img["Size"] > 0 and df["LayersSize"] >= img["Size"] - img["SharedSize"]
        cs = {c["Names"][0].lstrip("/"): c for c in df["Containers"]}
        assert {keep, gone} <= set(cs) and "SizeRw" in cs[keep] and cs[keep]["SizeRootFs"] >= img["Size"]
        v = next(v for v in df["Volumes"] if v["Name"] == vol)
        wait_for(lambda: next(x for x in sdk.df()["Volumes"] if x["Name"] == vol)["UsageData"]["Size"] >= 6, 10)
        assert v["UsageData"]["RefCount"] == 1
        for cli in (eng.docker, eng.berth):
            p = cli("system", "df")
            lines = p.out.splitlines()
            assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], p.out + p.err
            assert [x.split()[0] for x in lines[1:]] == ["Images", "Containers", "Local", "Build"]
            containers = lines[2].split()
            assert containers[1:3] == [str(len(cs)), str(sum(1 for c in cs.values() if c["State"] == "running"))]
            assert cli("system", "df", "-v").returncode == 0
        # --format: a row per type, as the docker CLI's (json lines, templates, table)
        for fmt in ("json", "{{.Type}}|{{.TotalCount}}|{{.Active}}", "table {{.Type}}\t{{.TotalCount}}"):
            want, got = eng.docker("system", "df", "--format", fmt), eng.berth("system", "df", "--format", fmt)
            if fmt == "json":  # (sizes left out: a volume's may be measured again in between)
                want, got = ([{k: v for k, v in json.loads(x).items() if k in ("Type", "TotalCount", "Active")}
                              for x in p.out.splitlines()] for p in (want, got))
                assert got == want and len(want) == 4 and set(json.loads(eng.berth("system", "df", "--format", fmt).out.splitlines()[0])) == {
                    "Type", "TotalCount", "Active", "Size", "Reclaimable"}, (want, got)
            else:
                assert got.returncode == 0 and got.out == want.out and want.out.count("\n") >= 3, (fmt, want.out, got.out + got.err)
        p = eng.berth("system", "prune", "-f")
        assert p.returncode == 0, p.err
        assert "Deleted Containers:" in p.out and _inspect(eng, keep)["State"]["Running"]
        assert eng.docker("inspect", gone).returncode != 0
        assert p.out.rstrip().splitlines()[-1].startswith("Total reclaimed space:")
        # docker's own CLI through the prune endpoints (build cache included)
        p = eng.docker("system", "prune", "-f")
        assert p.returncode == 0 and "Total reclaimed space" in p.out, p.err
        # -a --volumes: an anonymous volume left by a removed container goes; the image in use stays
        anon = _name("anon")
        eng.docker("create", "--name", anon, "-v", "/scratch", IMAGE, "true", check=True)
        vname = next(m["Name"] for m in _inspect(eng, anon)["Mounts"] if m["Destination"] == "/scratch")
        eng.docker("rm", anon, check=True)
        p = eng.berth("system", "prune", "-a", "--volumes", "-f")
        assert p.returncode == 0 and f"Deleted Volumes:\n{vname}\n" in p.out, p.out + p.err
        assert eng.docker("volume", "inspect", vol).returncode == 0  # named, in use
        assert eng.docker("image", "inspect", IMAGE).returncode == 0  # used by a container
    finally:
        eng.docker("rm", "-f", keep, gone)
        eng.docker("volume", "rm", vol)


def test_stats_networks_and_all(eng, sdk):
    a, b = _name("sa"), _name("sb")
    for n in (a, b):
        eng.docker("run", "-d", "--name", n, IMAGE, "sleep", "600", check=True)
    try:
        s = sdk.containers.get(a).stats(stream=False)
        assert set(s["networks"]) == {"eth0"}
        assert {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors",
                "tx_dropped"} == set(s["networks"]["eth0"])
        for cli in (eng.docker, eng.berth):
            p = cli("stats", "--no-stream", "--format", "{{.Name}} {{.NetIO}}")
            rows = dict(line.split(" ", 1) for line in p.out.splitlines())
            assert {a, b} <= set(rows), p.out + p.err
            assert rows[a] != "0B / 0B" or cli is eng.berth
    finally:
        eng.docker("rm", "-f", a, b)


def test_plugin_commands_with_no_plugin_installed_as_dockerd(eng, peer):
    """`docker plugin` against an engine with no managed plugin: an empty list (its filters
    checked), "plugin ... not found" for the rest, as dockerd with none installed (berthd had
    no /plugins endpoints: "page not found")."""
    cmds = [["ls"], ["ls", "-q"], ["ls", "--filter", "enabled=true"], ["ls", "--filter", "enabled=xyz"],
            ["ls", "--filter", "bogus=1"], ["inspect", "nosuch"], ["rm", "nosuch"], ["enable", "nosuch"],
            ["disable", "nosuch"], ["set", "nosuch", "a=b"], ["push", "nosuch"], ["push", "a/b:1"]]
    seen = [[(c, p.returncode, p.out, p.err) for c in cmds for p in [d.docker("plugin", *c)]] for d in (eng, peer)]
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][1:3] == (0, "ID        NAME      DESCRIPTION   ENABLED\n"), seen[0][0]


def test_a_stats_samples_shape_as_dockerd(eng, peer):
    """One stats sample (stream=false) of a running container has dockerd's shape: the same keys
    and types all through, memory_stats.stats with the keys dockerd gives (containerd's fixed
    set: berth passed memory.stat's every line), the blkio lists of cgroup v1 as lists (berth:
    null but the bytes)."""
    def shape(o):
        if isinstance(o, dict):
            return {k: shape(v) for k, v in o.items() if k not in ("networks", "percpu_usage")}
        return type(o).__name__
    seen = []
    for d in (eng, peer):
        name = _name("ss")
        try:
            d.docker("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "600", check=True)
            import http.client
            import socket as _socket

            class _Unix(http.client.HTTPConnection):
                def connect(self):
                    self.sock = _socket.socket(_socket.AF_UNIX)
                    self.sock.connect(d.host[len("unix://"):])
            conn = _Unix("x")
            conn.request("GET", f"/v1.41/containers/{name}/stats?stream=false")
            sample = json.loads(conn.getresponse().read())
            conn.close()
            seen.append(shape(sample))
        finally:
            d.docker("rm", "-f", name)
    assert seen[0] == seen[1], [(k, seen[0].get(k), seen[1].get(k)) for k in set(seen[0]) | set(seen[1])
                                if seen[0].get(k) != seen[1].get(k)]
    assert "cache" in seen[0]["memory_stats"]["stats"] or "anon" in seen[0]["memory_stats"]["stats"], seen[0]


# --- 4. rmi conflicts ---

def test_rmi_of_an_image_in_use_is_a_conflict(eng, sdk):
    docker = pytest.importorskip("docker")
    eng.docker("tag", IMAGE, "inuse:1", check=True)
    made, run_ = _name("made"), _name("run")
    cid = eng.docker("create", "--name", made, "inuse:1", "true", check=True).out.strip()
    try:
        img = _inspect(eng, "inuse:1")["Id"][7:19]
        eng.docker("rmi", IMAGE, check=True)  # another name is left: only untagged
        p = eng.docker("rmi", "inuse:1")
        assert p.returncode == 1
        assert p.err.strip() == (f'Error response from daemon: conflict: unable to remove repository reference '
                                 f'"inuse:1" (must force) - container {cid[:12]} is using its referenced image {img}')
        with pytest.raises(docker.errors.APIError) as e:
            sdk.images.remove("inuse:1")
        assert e.value.status_code == 409
        p = eng.docker("rmi", img)
        assert p.returncode == 1 and (f"conflict: unable to delete {img} (must be forced) - image is being used by "
                                      f"stopped container {cid[:12]}") in p.err
        eng.docker("start", made)
        eng.docker("wait", made, check=True)  # `true` has run: only the next one is a running user
        rid = eng.docker("run", "-d", "--name", run_, "inuse:1", "sleep", "600", check=True).out.strip()
        p = eng.docker("rmi", "-f", img)
        assert p.returncode == 1 and (f"conflict: unable to delete {img} (cannot be forced) - image is being used "
                                      f"by running container {rid[:12]}") in p.err
        eng.docker("rm", "-f", run_)
        assert eng.docker("image", "inspect", "inuse:1").returncode == 0
    finally:
        eng.docker("rm", "-f", made, run_)
        eng.docker("tag", "inuse:1", IMAGE)
        eng.docker("rmi", "inuse:1")


# --- 5. the CLI's flags and --help ---

_COMMANDS = ["run", "create", "exec", "ps", "start", "stop", "restart", "kill", "rm", "logs", "wait", "attach",
             "update", "export", "pause", "unpause", "rename", "top", "stats", "cp", "port", "diff", "events",
             "inspect", "images", "rmi", "pull", "push", "tag", "history", "save", "load", "import", "search", "login",
             "logout", "info", "version", "system df", "system prune", "container prune", "image prune",
             "volume create", "volume ls", "volume inspect", "volume rm", "volume prune"]


def _long_flags(text):
    import re
    return {m for m in re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", text, re.M)} - {"--help"}


def test_every_docker_flag_is_accepted_and_described(eng):
    for c in _COMMANDS:
        args = c.split()
        want = _long_flags(eng.docker(*args, "--help").out)
        p = eng.berth(*args, "--help")
        assert p.returncode == 0, (c, p.err)
        have = _long_flags(p.out)
        assert want <= have, (c, sorted(want - have))
        assert p.out.startswith(f"\nUsage:  berth {c}"), p.out[:80]
        options = p.out.split("Options:\n", 1)[1].splitlines()
        for line in options:
            if line.startswith("  -"):
                spec_and_text = line.strip().split("   ")
                assert len([x for x in spec_and_text if x.strip()]) >= 2, (c, line)  # a description follows


def test_flags_take_effect_or_are_refused(eng, tmp_path):
    name = _name("flags")
    labels = tmp_path / "labels"
    labels.write_text("# comment\na=1\nb=2\n")
    p = eng.berth("run", "-q", "-a", "stdout", "--label-file", str(labels), "-l", "b=3", "--name", name,
                  "--annotation", "org.example.x=y", IMAGE, "sh", "-c", "echo to-out; echo to-err >&2")
    assert p.returncode == 0 and p.out == "to-out\n" and p.err == "", (p.out, p.err)
    info = _inspect(eng, name)
    assert info["Config"]["Labels"]["a"] == "1" and info["Config"]["Labels"]["b"] == "3"
    assert (info["Config"]["AttachStdout"], info["Config"]["AttachStderr"]) == (True, False)
    eng.berth("rm", name, check=True)
    if os.path.exists("/sys/fs/cgroup/blkio/blkio.weight"):
        p = eng.berth("run", "--rm", "--blkio-weight", "300", IMAGE, "true")
        assert p.returncode == 125 and "berth does not support BlkioWeight (--blkio-weight)" in p.err, p.err
    else:  # dockerd's: a warning, and the weight discarded
        p = eng.berth("run", "--rm", "--blkio-weight", "300", IMAGE, "true")
        assert p.returncode == 0 and p.err == ("WARNING: Your kernel does not support Block I/O weight or the cgroup "
                                               "is not mounted. Weight discarded.\n"), p.err
    for flags, msg in ((["--gpus", "all"], 'could not select device driver "" with capabilities: [[gpu]]'),
                       (["--storage-opt", "size=1G"], "--storage-opt is supported only for overlay over xfs"),
                       (["--userns", "private"], "invalid USER mode"),
                       (["--isolation", "hyperv"], "Invalid isolation: \"hyperv\" - linux only supports 'default'"),
                       (["--use-api-socket"], "--use-api-socket is not supported by berth"),
                       (["--health-interval", "3x"], 'time: unknown unit "x" in duration "3x"'),
                       (["--health-interval=-1s"], "--health-interval cannot be negative")):
        p = eng.berth("run", "--rm", *flags, IMAGE, "true")
        assert p.returncode == 125 and msg in p.err and len(p.err.strip().splitlines()) == 1, (flags, p.err)
    # a check docker's run makes after its flags': its error as it is, status 1 (docker 28, checked)
    p = eng.berth("run", "--rm", "-a", "stdin", "-d", IMAGE, "true")
    assert p.returncode == 1 and "conflicting options: cannot specify both --attach and --detach" in p.err, p.err
    # start -a: the output and the exit code of the container
    c = _name("start")
    eng.berth("create", "--name", c, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3", check=True)
    p = eng.berth("start", "-a", c)
    assert (p.returncode, p.out, p.err) == (3, "out\n", "err\n")
    eng.berth("rm", c)
    # stop -s, exec --env-file, --detach-keys accepted
    eng.berth("run", "-d", "--name", c, IMAGE, "sh", "-c",
              "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done", check=True)
    env = tmp_path / "env"
    env.write_text("A=1\nB=2\n")
    p = eng.berth("exec", "--env-file", str(env), "-e", "B=3", "--detach-keys", "ctrl-x", c, "sh", "-c", "echo $A $B")
    assert p.out == "1 3\n", p.err
    eng.berth("stop", "-s", "USR1", c, check=True)
    assert eng.berth("logs", "--details", c).out == " got-usr1\n"  # no attributes, then a space (dockerd's)
    eng.berth("rm", c)


def test_env_and_label_files_and_bare_env_names_as_the_docker_cli(eng, tmp_path):
    """-e NAME without a value and docker's key=value files, berth's CLI beside docker's on one
    berthd: a bare NAME takes the caller's value, else goes as it is (the container has no such
    variable; berth set it empty), in a file it is left out (labels: always); a line's leading
    white space dropped and its value kept as it is (berth stripped both ends), a byte order
    mark dropped, a name with white space or none refused as docker words it."""
    f = tmp_path / "kv"
    f.write_bytes(b"\xef\xbb\xbfa\n  b=2 \n#x\n   \nc=\n\td=x y\nPR_SET\nPR_UNSET\n")
    env = dict(eng.env(), PR_SET="from-caller", X="v")
    env.pop("PR_UNSET", None)
    seen = []
    for cli in (eng.docker, eng.berth):
        name = _name("kvf")
        cli("create", "--name", name, "--label-file", str(f), "--env-file", str(f), "-e", "X", "-e", "PR_UNSET",
            IMAGE, env=env, check=True)
        c = _inspect(eng, name)["Config"]
        seen.append((c["Labels"], c["Env"]))
        eng.berth("rm", name, check=True)
    # the same labels and variables (the docker CLI's order of them varies from run to run)
    assert (seen[0][0], sorted(seen[0][1])) == (seen[1][0], sorted(seen[1][1])), seen
    assert seen[1][1][:6] == ["b=2 ", "c=", "d=x y", "PR_SET=from-caller", "X=v", "PR_UNSET"], seen[1]
    for content, why in ((b"a b=1\n", "variable 'a b' contains whitespaces"), (b"=1\n", "no variable name on line '=1'"),
                         (b"\xff\n", "invalid utf8 bytes at line 1: [255]")):
        f.write_bytes(content)
        for flag in ("--env-file", "--label-file"):
            p = eng.berth("create", flag, str(f), IMAGE)
            assert p.returncode == 125 and p.err == f"berth: invalid env file ({f}): {why}\n", (flag, p.err)
    assert eng.berth("ps", "-aq").out.split() == []


def test_cli_arity_and_missing_objects_in_the_docker_clis_words(eng):
    """berth's CLI beside docker's on one berthd: a wrong number of arguments in cobra's words
    ("'berth tag' requires 2 arguments", "requires at least 1 and at most 2 arguments",
    "accepts no arguments"; berth said argparse's "the following arguments are required"),
    `image inspect` and `container inspect` of what is not there in the daemon's words (berth:
    "Error: No such object"), `volume inspect` printing [] for none, `wait` going on past a
    missing container, `start` naming the ones it failed to start at the end. Exit codes too."""
    def norm(text):  # the error lines (docker's usage text after them aside), without the prefixes
        import re
        return [re.sub(r"^(berth: |docker: |Error response from daemon: |Error: (?=failed))", "", line)
                .replace("'berth ", "'X ").replace("'docker ", "'X ") for line in text.splitlines()
                if re.search(r"requires|accepts|No such|no such|not found|failed to start", line)]
    c = _name("arity")
    eng.docker("run", "-d", "--name", c, IMAGE, "true", check=True)
    eng.docker("wait", c, check=True)
    cmds = [["tag"], ["tag", "a", "b", "c"], ["port"], ["commit"], ["logs", "a", "b"], ["version", "x"],
            ["images", "a", "b"], ["volume", "create", "a", "b"], ["network", "connect", "a"], ["exec", "a"],
            ["wait"], ["image", "inspect", "pr-nonexist"], ["container", "inspect", "pr-nonexist"],
            ["image", "inspect", "-f", "{{.Os}}", "pr-nonexist", IMAGE], ["volume", "inspect", "pr-nonexist"],
            ["network", "inspect", "pr-nonexist"], ["inspect", "pr-nonexist"],
            ["wait", "pr-na", c, "pr-nb"], ["start", "pr-na", "pr-nb"]]
    try:
        for args in cmds:
            ours, theirs = eng.berth(*args), eng.docker(*args)
            assert (ours.returncode, ours.out, norm(ours.err)) == (theirs.returncode, theirs.out, norm(theirs.err)), \
                (args, ours.returncode, ours.out, ours.err, theirs.returncode, theirs.out, theirs.err)
    finally:
        eng.docker("rm", "-f", c)


def test_since_and_until_as_the_docker_cli_takes_them(eng):
    """logs and events --since/--until: any Go duration ("1h30m"; berth took one unit only),
    RFC 3339 dates and times, Unix seconds; what is none of them refused in the docker CLI's
    words, logs naming the flag (berth: "invalid time 'x'")."""
    c = _name("since")
    eng.docker("run", "-d", "--name", c, IMAGE, "sh", "-c", "echo one; sleep 60", check=True)
    try:
        wait_for(lambda: eng.docker("logs", c).out == "one\n", 10, "the container's line")
        for since in ("1h30m", "90m", "2020-01-01", "2020-01-01T00:00:00Z", "1600000000.5"):
            assert eng.berth("logs", "--since", since, c).out == "one\n", since
        cases = [["logs", "--since", "x", c], ["logs", "--until", "2020-13-01", c],
                 ["events", "--since", "x", "--until", "0s"], ["events", "--since", "1h", "--until", "1h"]]
        for args in cases:
            ours, theirs = eng.berth(*args), eng.docker(*args)
            assert (ours.returncode, ours.out, ours.err.removeprefix("berth: ")) == \
                (theirs.returncode, theirs.out, theirs.err), (args, ours.err, theirs.err)
    finally:
        eng.docker("rm", "-f", c)


def test_health_survives_a_daemon_restart(tmp_path):
    d = Daemon(tmp_path / "berthd")
    d.start()
    name = _name("hcr")
    try:
        d.berth("load", "-i", BUSYBOX, check=True)
        d.docker("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "200ms", IMAGE,
                 "sleep", "600", check=True)
        wait_for(lambda: (json.loads(d.docker("inspect", name).out)[0]["State"].get("Health") or {})
                 .get("Status") == "healthy", 20, "healthy")
        d.kill9()  # the container (and its shim) keep running
        d.start()
        h = json.loads(d.docker("inspect", name).out)[0]["State"]["Health"]
        assert h["Status"] == "healthy", h  # not back to "starting": the container did not restart
        last = h["Log"][-1]["Start"]
        wait_for(lambda: json.loads(d.docker("inspect", name).out)[0]["State"]["Health"]["Log"][-1]["Start"] != last,
                 20, "probes after the restart")
    finally:
        d.docker("rm", "-f", name)
        d.cleanup()


def test_uts_cgroupns_cgroup_parent(eng):
    import socket
    p = eng.docker("run", "--rm", "--uts", "host", IMAGE, "hostname")
    assert p.out.strip() == socket.gethostname(), p.err
    p = eng.docker("run", "--rm", "--uts", "host", "-h", "x", IMAGE, "true")
    assert p.returncode != 0 and "Conflicting options: hostname and the UTS mode" in p.err
    p = eng.docker("run", "--rm", "--cgroupns", "host", IMAGE, "cat", "/proc/self/cgroup")
    assert "/berth/" in p.out, p.out + p.err  # the host's view of the cgroup tree
    parent = _name("bt-parent")
    try:
        p = eng.docker("run", "--rm", "--cgroupns", "host", "--cgroup-parent", parent, IMAGE, "cat",
                       "/proc/self/cgroup")
        assert f"/{parent}/" in p.out, p.out + p.err
    finally:
        import glob
        for d in glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}"):
            try:
                os.rmdir(d)
            except OSError:
                pass


# --- the same commands against a private dockerd 20.10: the same words ---

@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    if not shutil.which("dockerd"):
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    from peer_dockerd import Dockerd
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        d.docker("load", "-i", BUSYBOX, check=True)
        yield d
    finally:
        d.stop()


def _daemon_error(p, ids=()):
    import re
    line = next((x for x in p.err.splitlines() if "Error response from daemon" in x or x.startswith("docker:")), "")
    for i in ids:
        line = line.replace(i, "<id>").replace(i[:12], "<id12>")
    return re.sub(r"\b[0-9a-f]{64}\b", "<id>", line)


def test_errors_match_dockerd(eng, peer):
    cases = [["--restart", "bogus"], ["--log-driver", "bogus"], ["--gpus", "all"], ["--link", "nonexist:db"],
             ["-m", "10m", "--memory-reservation", "20m"], ["-m", "20m", "--memory-swap", "10m"],
             ["--memory-swap", "10m"], ["--memory-reservation", "1m"], ["-m", "1m"], ["--oom-score-adj", "2000"],
             ["--cpuset-cpus", "5x"], ["--cpuset-cpus", "999"], ["--ipc", "bogus"],
             ["--pid", "container:nonexist"], ["--device", "/dev/nonexist"], ["--group-add", "nosuchgroup"],
             ["--isolation", "hyperv"], ["--runtime", "bogus"]]
    for flags in cases:
        ours = eng.docker("run", "--rm", *flags, IMAGE, "true")
        theirs = peer.docker("run", "--rm", *flags, IMAGE, "true")
        assert ours.returncode != 0 and theirs.returncode != 0, (flags, ours.err, theirs.err)
        assert _daemon_error(ours) == _daemon_error(theirs), flags
    # an unknown runtime is refused before the image is looked up (a missing one is not pulled)
    ours, theirs = (d.docker("create", "--pull", "never", "--runtime", "bogus", "pr-nosuch:1", "true") for d in (eng, peer))
    assert _daemon_error(ours) == _daemon_error(theirs) == "Error response from daemon: Unknown runtime specified bogus"
    # IPC of a private container, rmi of an image in use: the same words with their own ids
    for d in (eng, peer):
        d.docker("run", "-d", "--name", "pr-donor", IMAGE, "sleep", "600", check=True)
    try:
        errs = []
        for d in (eng, peer):
            cid = d.docker("inspect", "-f", "{{.Id}}", "pr-donor").out.strip()
            iid = d.docker("inspect", "-f", "{{.Id}}", IMAGE).out.strip()[7:]
            p = d.docker("run", "--rm", "--ipc", "container:pr-donor", IMAGE, "true")
            q = d.docker("rmi", iid[:12])
            d.docker("tag", IMAGE, "pr-other:1", check=True)
            r = d.docker("rmi", iid[:12])
            d.docker("rmi", "pr-other:1", check=True)
            errs.append((_daemon_error(p, [cid, iid]), _daemon_error(q, [cid, iid]), _daemon_error(r, [cid, iid])))
        assert errs[0] == errs[1]
    finally:
        for d in (eng, peer):
            d.docker("rm", "-f", "pr-donor")


def test_an_image_not_found_is_named_as_dockerd_names_it(eng, peer):
    """A lookup that misses names the image as dockerd's ErrImageDoesNotExist does: the familiar
    reference with the default tag when it had neither tag nor digest ("nonexist:latest",
    "localhost:5000/a/b:latest", a short ID too), a full ID as a digest; `docker save` in its own
    words (a missing tag: "reference does not exist", a bare name as given). berthd echoed
    what it was given everywhere."""
    dg = "sha256:" + "0123456789abcdef" * 4
    cmds = [["rmi", "pr-nonexist"], ["rmi", "pr-nonexist:2"], ["rmi", "docker.io/library/pr-nonexist"],
            ["rmi", "localhost:5000/a/b"], ["rmi", dg], ["rmi", dg[7:]], ["rmi", "0123456789ab"],
            ["rmi", "pr-nonexist@" + dg], ["rmi", "-f", "pr-nonexist"], ["history", "pr-nonexist"],
            ["tag", "pr-nonexist", "pr-y:1"], ["tag", "pr-nonexist:5", "pr-y:1"], ["save", "pr-nonexist:6"],
            ["save", "pr-nonexist"], ["save", "pr-nonexist@" + dg], ["create", "--pull", "never", "pr-nonexist"],
            ["create", "--pull", "never", "pr-nonexist:7"]]
    seen = [[(c, p.returncode, p.err) for c in cmds for p in [d.docker(*c)]]
            for d in (eng, peer)]
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][2] == "Error response from daemon: No such image: pr-nonexist:latest\n", seen[0][0]
    # inspect: dockerd 20.10 wraps the same words ("no such image: X: No such image: X:latest")
    for ref in ("pr-nonexist", "0123456789ab", "pr-nonexist:3"):
        tails = [d.docker("image", "inspect", ref).err.rsplit("No such image: ", 1)[-1] for d in (eng, peer)]
        assert tails[0] == tails[1], (ref, tails)


def test_a_name_that_is_no_reference_is_refused_not_looked_up_as_dockerd(eng, peer):
    """An image name that is no reference (upper case, a bad digest) is a 400 in dockerd's words
    wherever an image is looked up (inspect, history, rmi, tag, save, create) or named (pull,
    commit); a short or full ID that matches nothing is still a 404. berthd said "No such image"
    for them all, and its own words for pull and commit."""
    dg = "sha256:" + "0123456789abcdef" * 4
    reqs = [("GET", "/images/UPPER/json", None), ("GET", "/images/pr-x@sha256:0123/json", None),
            ("GET", "/images/UPPER/history", None), ("DELETE", "/images/UPPER", None),
            ("POST", "/images/UPPER/tag?repo=pr-x", None), ("GET", "/images/get?names=UPPER", None),
            ("POST", "/containers/create", {"Image": "UPPER"}), ("POST", "/images/create?fromImage=UPPER&tag=1", None),
            ("POST", "/commit?container={c}&repo=UPPER", {}), ("GET", f"/images/{dg}/json", None),
            ("GET", f"/images/{dg[7:]}/json", None), ("GET", "/images/sha256:0123/json", None),
            ("DELETE", "/images/0123456789ab", None)]
    dangling = eng.docker("images", "-q", "-f", "dangling=true").out
    seen = []
    for d in (eng, peer):
        c = d.docker("create", "--network", "none", IMAGE, "true", check=True).out.strip()
        try:
            seen.append([_api(d.sock, m, p.replace("{c}", c), body) for m, p, body in reqs])
        finally:
            d.docker("rm", "-f", c)
    for (m, p, _b), ours, theirs in zip(reqs, *seen):
        assert ours[0] == theirs[0] or (theirs[0] == 500 and ours[0] == 400), (p, ours, theirs)
        # (dockerd 20.10's image inspect puts "no such image: <name>: " before the same words)
        want = re.sub(r"^no such image: [^ ]+: ", "", theirs[1]["message"])
        assert ours[1]["message"] == want, (p, ours, theirs)
    assert seen[0][0] == (400, {"message": "invalid reference format: repository name must be lowercase"})
    # dockerd's commit made the image before it refused the name (left dangling); berthd's made none
    assert eng.docker("images", "-q", "-f", "dangling=true").out == dangling
    peer.docker("image", "prune", "-f")
    for args in (["rmi", "UPPER"], ["history", "UPPER"], ["tag", "UPPER", "pr-x"]):
        assert eng.docker(*args).err == peer.docker(*args).err, args


def test_joining_the_ipc_of_a_host_ipc_container_shares_the_hosts_shm_as_dockerd(eng, peer):
    """--ipc container:X where X has --ipc host: X's /dev/shm is the host's, and so is the
    joiner's (dockerd's ShmPath of a host-IPC container is /dev/shm); berth bound X's own shm
    directory, which a host-IPC container has none of: the start failed (found by fuzzing the CRI,
    where a pod with hostIPC and a container of the pod's IPC is the same case)."""
    marker = f"berth-ipc-{os.getpid()}"
    with open(f"/dev/shm/{marker}", "w") as f:
        f.write("host")
    outs = []
    try:
        for d in (eng, peer):
            d.docker("run", "-d", "--name", "hi-donor", "--ipc", "host", IMAGE, "sleep", "600", check=True)
            p = d.docker("run", "--rm", "--ipc", "container:hi-donor", IMAGE, "cat", f"/dev/shm/{marker}")
            q = d.docker("run", "--rm", "--ipc", "container:hi-donor", IMAGE, "sh", "-c",
                         "readlink /proc/self/ns/ipc")
            outs.append((p.returncode, p.out, q.out.strip() == os.readlink("/proc/self/ns/ipc")))
    finally:
        for d in (eng, peer):
            d.docker("rm", "-f", "hi-donor")
        os.unlink(f"/dev/shm/{marker}")
    assert outs[0] == outs[1] == (0, "host", True), outs


def test_bad_extra_hosts_are_refused_at_create_as_dockerd(eng, peer):
    """POST /containers/create with a malformed ExtraHosts entry: 400 and dockerd's words from
    both (berth created the container and failed its start)."""
    import http.client
    import socket as socketmod

    def create(sock, extra):
        c = http.client.HTTPConnection("localhost", timeout=60)
        c.sock = socketmod.socket(socketmod.AF_UNIX)
        c.sock.connect(sock)
        c.request("POST", "/v1.41/containers/create", json.dumps(
            {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"ExtraHosts": [extra], "NetworkMode": "none"}}),
            {"Content-Type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read() or b"{}")
        c.close()
        return r.status, body.get("message", "")

    for extra in ("/", "h:", ":1.2.3.4", "h:1.2.3", "h:not-an-ip"):
        ours, theirs = create(eng.sock, extra), create(peer.sock, extra)
        assert ours == theirs and ours[0] == 400, (extra, ours, theirs)
    assert not eng.berth("ps", "-aq", check=True).out.split()  # nothing was made


def test_exec_that_cannot_start_exits_126_as_dockerd(eng, peer):
    """An exec whose process cannot start (a relative or missing working directory, a missing
    binary): exit 126 and an "OCI runtime exec failed" line from both engines; the exec's
    inspect says 126. berth's exited 137 (the exec looked killed) for the working directories
    (found by fuzzing the CLI's flags)."""
    seen = []
    for d in (eng, peer):
        d.docker("run", "-d", "--name", "ex-126", IMAGE, "sleep", "600", check=True)
        try:
            row = []
            for args in (["-w", "rel"], ["-w", "/nonexist"], []):
                p = d.docker("exec", *args, "ex-126", *(["pwd"] if args else ["/nonexist"]))
                row.append((p.returncode, "OCI runtime exec failed" in p.out + p.err))
            p = d.docker("exec", "ex-126", "/etc")  # not executable: the process's start failed, in runc's words
            row.append((p.returncode, p.out + p.err))
            seen.append(row)
        finally:
            d.docker("rm", "-f", "ex-126")
    assert seen[0] == seen[1], seen
    assert seen[0][:3] == [(126, True)] * 3 and seen[0][3] == (126, 'OCI runtime exec failed: exec failed: unable to start '
                                                               'container process: exec: "/etc": permission denied: unknown\r\n')


def test_list_filters_unknown_to_the_engine_are_refused_even_with_nothing_to_list(eng, peer):
    """`ps --filter bogus=1` fails with no container at all, as dockerd's (berthd checked the
    keys container by container: with none, it answered an empty list); the lists of images,
    volumes and networks did already."""
    for args in (["ps", "-a"], ["images"], ["volume", "ls"], ["network", "ls"]):
        ours, theirs = (d.docker(*args, "--filter", "bogus=1") for d in (eng, peer))
        assert ours.returncode == theirs.returncode == 1, (args, ours.err, theirs.err)
        assert _daemon_error(ours).lower() == _daemon_error(theirs).lower(), args  # (20.10: "Invalid filter")


def test_ps_filters_before_since_network_publish_expose_match_dockerd(eng, peer):
    """`ps -a --filter` before=, since=, network=, publish= (a host port) and expose= (a
    container port) (berthd refused them as unknown filters): the same containers from both
    engines."""
    import random as rnd
    port = rnd.randint(20000, 40000)
    seen = []
    for d in (eng, peer):
        d.docker("network", "create", "pf-a", check=True)
        d.docker("network", "create", "pf-b", check=True)
        try:
            d.docker("run", "-d", "--name", "pf1", "--network", "pf-a", "-p", f"127.0.0.1:{port}:80", IMAGE, "sleep", "600",
                     check=True)
            time.sleep(1.1)  # (creation times a second apart: dockerd's are finer than berth's listing)
            d.docker("run", "-d", "--name", "pf2", "--network", "pf-b", "--expose", "90", IMAGE, "sleep", "600", check=True)
            time.sleep(1.1)
            d.docker("run", "--name", "pf3", "--network", "none", IMAGE, "true", check=True)
            row = []
            for f in (["before=pf3"], ["since=pf1"], ["before=pf3", "since=pf1"], ["network=pf-a"], ["network=pf-b"],
                      ["publish=80"], [f"publish={port}"], [f"publish={port}/tcp"], [f"publish={port - 1}-{port + 1}"],
                      [f"publish={port}/udp"], ["expose=80"], ["expose=90"], ["expose=89-91/tcp"], ["network=nope"]):
                p = d.docker("ps", "-a", *[x for v in f for x in ("--filter", v)], "--format", "{{.Names}}")
                row.append((f, p.returncode, sorted(p.out.split())))
            p = d.docker("ps", "-a", "--filter", "before=no-such-ctr")
            row.append(("before=no-such-ctr", p.returncode, _daemon_error(p)))
            seen.append(row)
        finally:
            d.docker("rm", "-f", "pf1", "pf2", "pf3")
            d.docker("network", "rm", "pf-a", "pf-b")
    assert seen[0] == seen[1], (seen[0], seen[1])
    assert seen[0][3][2] == ["pf1"] and seen[0][2][2] == ["pf2"]  # (the filters did filter)



def test_name_filters_are_regular_expressions_as_dockerd(eng, peer):
    """`ps`, `network ls` and `volume ls` match a name filter (and network ls an id filter) as
    dockerd does: as it is, else as a regular expression found in the name (a container's with
    or without its "/"); one that is not a regular expression matches nothing else. berthd
    matched substrings only."""
    seen = []
    for d in (eng, peer):
        d.docker("network", "create", "rxnet-a1", check=True)
        d.docker("volume", "create", "rxvol-a1", check=True)
        d.docker("run", "-d", "--name", "rxctr-a1", "--network", "none", IMAGE, "sleep", "600", check=True)
        try:
            nid = d.docker("network", "inspect", "-f", "{{.Id}}", "rxnet-a1", check=True).out.strip()
            row = []
            for kind, names in (("ps", ["^rxctr-a1$", "^/rxctr-a1$", "rxc.r", "rxctr-[a-z]1", "rxctr", "[", "^xctr"]),
                                ("network", ["^rxnet-a1$", "rxn.t", "rxnet", "[", "^xnet"]),
                                ("volume", ["^rxvol-a1$", "rxv.l", "rxvol", "[", "^xvol"])):
                for f in names:
                    cmd = ["ps", "-a"] if kind == "ps" else [kind, "ls"]
                    p = d.docker(*cmd, "--filter", f"name={f}", "--format", "{{.Name}}" if kind != "ps" else "{{.Names}}")
                    row.append((kind, f, p.returncode, sorted(x for x in p.out.split() if x.startswith("rx"))))
            p = d.docker("network", "ls", "--filter", f"id={nid[5:11]}", "--format", "{{.Name}}")
            row.append(("network id", p.returncode, p.out.split()))
            seen.append(row)
        finally:
            d.docker("rm", "-f", "rxctr-a1")
            d.docker("network", "rm", "rxnet-a1")
            d.docker("volume", "rm", "rxvol-a1")
    assert seen[0] == seen[1], (seen[0], seen[1])
    assert seen[0][0][3] == ["rxctr-a1"] and seen[0][5][3] == [] and seen[0][-1][2] == ["rxnet-a1"]



def test_json_file_logs_as_dockerd(eng, peer):
    """The json-file driver as dockerd's: its lines' bytes (compact, UTF-8, <>& escaped), rotation
    at max-size over max-file files that `logs` reads in order (berthd read the current file
    only), the labels/env options' attributes (logs --details), and the refusals of its options
    at the start, in dockerd's words."""
    gen = "i=0; while [ $i -lt 120 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"
    seen = []
    for d in (eng, peer):
        name = _name("jl")
        row = []
        try:
            d.docker("run", "--name", name, "--network", "none", "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
                     IMAGE, "sh", "-c", gen, check=True)
            out = d.docker("logs", name, check=True).out.splitlines()
            row.append((len(out), out[0], out[-1]))
            row.append(d.docker("logs", "--tail", "12", name, check=True).out.splitlines())
            path = d.docker("inspect", "-f", "{{.LogPath}}", name, check=True).out.strip()
            row.append(sorted(os.path.basename(p)[len(os.path.basename(path)):] for p in
                              [path] + [f"{path}.{i}" for i in range(1, 5) if os.path.exists(f"{path}.{i}")]))
            d.docker("rm", name, check=True)
            d.docker("run", "--name", name, "--network", "none", "--label", "app=x", "--label", "tier=web",
                     "-e", "E1=v", "--log-opt", "labels=app,nope", "--log-opt", "env=E1,FIXTURE",
                     IMAGE, "sh", "-c", "echo '<a>&\u00e9'", check=True)
            row.append(d.docker("logs", "--details", name, check=True).out)
            path = d.docker("inspect", "-f", "{{.LogPath}}", name, check=True).out.strip()
            with open(path, "rb") as f:
                row.append(re.sub(rb'"time":"[^"]*"', b'"time":T', f.read()))
            d.docker("rm", name, check=True)  # the tag option: a Go template over the container, an attribute
            d.docker("run", "--name", name, "--network", "none", "--log-opt", "tag={{.Name}}|{{.ImageName}}|"
                     "{{.ImageID}}|{{.ImageFullID}}|{{.Command}}|{{.DaemonName}},x", IMAGE, "echo", "t", check=True)
            row.append(d.docker("logs", "--details", name, check=True).out.replace(name, "N"))
            for opts in (["max-file=0"], ["max-file=x"], ["compress=true"], ["compress=true", "max-size=1k"],
                         ["compress=maybe", "max-size=1k", "max-file=2"], ["max-size=0"], ["tag={{.Nope}}"],
                         ["tag={{.ID"]):
                p = d.docker("run", "--rm", "--network", "none", *[x for o in opts for x in ("--log-opt", o)],
                             IMAGE, "true")
                row.append((opts, p.returncode, _daemon_error(p)))
        finally:
            d.docker("rm", "-f", name)
        seen.append(row)
    assert seen[0] == seen[1], (seen[0], seen[1])
    assert seen[0][0][0] > 12 and seen[0][3].startswith("E1=v,FIXTURE=busybox-layers,app=x ")
    assert seen[0][5] == "tag=N%7Cbusybox-layers%3A1%7Csha256%3A3b43b%7Csha256%3A3b43bf156c62f325b57d588de08fdffcac2c02" \
        "7f4ef1a3f2212dd861ad2a7608%7Cecho+t%7Cdocker%2Cx t\n", seen[0][5]


def test_times_are_gos_rfc3339nano_and_logs_t_pads_them_as_dockerd(eng, peer):
    """Times written as Go writes them (RFC3339Nano: the fraction's trailing zeros dropped) in the
    json-file log's entries, inspect's State and Created, as dockerd's; `logs -t` prints nine
    digits (docker's RFC3339NanoFixed). berthd wrote nine digits always, so its log lines were a
    byte longer one time in ten and rotated at other lines than dockerd's."""
    gen = "i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); done"
    for d in (eng, peer):
        name = _name("tz")
        try:
            d.docker("run", "--name", name, "--network", "none", IMAGE, "sh", "-c", gen, check=True)
            path = d.docker("inspect", "-f", "{{.LogPath}}", name, check=True).out.strip()
            with open(path) as f:
                times = [json.loads(line)["time"] for line in f]
            assert len(times) == 300
            fracs = [t[20:-1] if t[19] == "." else "" for t in times]
            assert all(t.endswith("Z") and not f.endswith("0") for t, f in zip(times, fracs)), (d, times)
            assert len({len(f) for f in fracs}) > 1, (d, fracs[:20])  # (one in ten ends in a zero Go drops)
            stamped = d.docker("logs", "-t", name, check=True).out.splitlines()
            assert [s.split(" ")[0] for s in stamped] == [t[:19] + "." + f.ljust(9, "0") + "Z" for t, f in zip(times, fracs)]
            st = json.loads(d.docker("inspect", name, check=True).out)[0]
            for t in (st["Created"], st["State"]["StartedAt"], st["State"]["FinishedAt"]):
                assert re.fullmatch(r"[0-9-]{10}T[0-9:]{8}(\.[0-9]*[1-9])?Z", t), (d, t)
        finally:
            d.docker("rm", "-f", name)


def test_health_and_df_match_dockerd(eng, peer):
    shapes = []
    for d in (eng, peer):
        d.docker("run", "-d", "--name", "pr-hc", "--health-cmd", "echo ok", "--health-interval", "300ms", IMAGE,
                 "sleep", "600", check=True)
    try:
        for d in (eng, peer):
            wait_for(lambda: "(healthy)" in d.docker("ps", "--filter", "name=pr-hc", "--format", "{{.Status}}").out,
                     20, "healthy")
            h = json.loads(d.docker("inspect", "pr-hc").out)[0]["State"]["Health"]
            cfg = json.loads(d.docker("inspect", "pr-hc").out)[0]["Config"]["Healthcheck"]
            df = d.docker("system", "df").out.splitlines()
            shapes.append((sorted(h), h["Status"], h["FailingStreak"], sorted(h["Log"][-1]), h["Log"][-1]["Output"],
                           cfg, df[0], [x.split()[0] for x in df]))
        assert shapes[0] == shapes[1]
    finally:
        for d in (eng, peer):
            d.docker("rm", "-f", "pr-hc")


def _api(sock, method, path, body=None, timeout=60):
    """One raw request: (status, decoded JSON body or the raw bytes)."""
    import http.client
    import socket as socketmod
    c = http.client.HTTPConnection("localhost", timeout=timeout)
    c.sock = socketmod.socket(socketmod.AF_UNIX)
    c.sock.settimeout(timeout)
    c.sock.connect(sock)
    try:
        c.request(method, "/v1.41" + path, json.dumps(body) if body is not None else None,
                  {"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw.strip() else None
        except ValueError:
            return r.status, raw
    finally:
        c.close()


def test_tags_refused_and_made_as_dockerd(eng, peer):
    """POST /images/{name}/tag as dockerd's TagImage: the repository parsed on its own (a 64-hex
    name refused, berth took "<hex>:tag"), the tag then replacing the repository's own (a:b with
    tag x is a:x) and checked alone, a digest repository without a tag refused, a repository
    named after a digest algorithm refused (berth made sha256:x, which reads as an image ID),
    dockerd's words (its 500s are berth's 400s). The docker CLI's own checks against berthd
    and berth's CLI beside it: the same words, nothing sent."""
    from urllib.parse import quote
    dg = "sha256:" + "0123456789abcdef" * 4
    queries = ["repo=PR-BAD&tag=x", "repo=&tag=x", f"repo={dg[7:]}", "repo=pr-ok&tag=B@D", "repo=sha256&tag=1",
               "repo=pr-t/sha256:x", f"repo=pr-ok@{dg}", f"repo=pr-ok@{dg}&tag=dg", "repo=pr-a:b&tag=x", "repo=pr-a:b"]
    seen = []
    for d in (eng, peer):
        answers = []
        for q in queries:
            status, body = _api(d.sock, "POST", f"/images/{quote(IMAGE)}/tag?{q.replace('@', quote('@'))}")
            answers.append((q, 201 if status == 201 else "refused", (body or {}).get("message")))
        names = sorted(x for x in d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
                       if x.startswith(("pr-", "sha256")))
        for n in names:
            d.docker("rmi", n, check=True)
        seen.append((answers, names))
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*[x[0] for x in seen]) if a != b] or seen
    assert seen[0][1] == ["pr-a:b", "pr-a:x", "pr-ok:dg", "pr-t/sha256:x"], seen[0][1]
    for target in ("PR-BAD", "a:b:c", "", "sha256:x", dg[7:], f"pr-ok@{dg}"):
        ours, theirs = eng.berth("tag", IMAGE, target), eng.docker("tag", IMAGE, target)
        assert (ours.returncode, ours.err) == (theirs.returncode, theirs.err.replace("Error response from daemon: ",
                                                                                     "berth: ", 1)
                                               if theirs.err.startswith("Error response") else "berth: " + theirs.err)
    for t in ("PR-BAD", "a:b:c", ":1", dg[7:], "a" * 300):
        ours = eng.berth("build", "-q", "-t", t, "/nonexistent-context")  # refused before the context is read
        theirs = eng.docker("build", "-q", "-t", t, "/nonexistent-context")
        line = next(x for x in theirs.err.splitlines() if x.startswith("invalid argument"))
        assert (ours.returncode, ours.err) == (theirs.returncode, f"berth: {line}\n") == (125, ours.err), ours.err


def test_api_refusals_in_dockerds_words(eng, peer):
    """Requests dockerd refuses, side by side: logs without a stream (berthd answered an empty
    200), a rename to nothing (even of a container that is not there: the names first), API
    1.41's volume prune with 1.42's `all` filter (berthd took it), a build without a context
    (berthd read the empty body as an empty Dockerfile), a resize without a size (berthd: 200).
    The messages match; the status too where dockerd's is a 4xx (its 500s are berth's 400s)."""
    reqs = [("GET", "/containers/{c}/logs"), ("GET", "/containers/pr-nonexist/logs"),
            ("POST", "/containers/{c}/rename?name="), ("POST", "/containers/pr-nonexist/rename?name="),
            ("POST", "/volumes/prune?filters=" + '{"all":["true"]}'.replace('"', "%22")),
            ("POST", "/build?t=pr-x&q=1"), ("POST", "/containers/{c}/resize")]
    seen = []
    for d in (eng, peer):
        c = d.docker("create", "--network", "none", IMAGE, "true", check=True).out.strip()
        try:
            seen.append([_api(d.sock, m, p.replace("{c}", c)) for m, p in reqs])
        finally:
            d.docker("rm", "-f", c)
    for (m, p), ours, theirs in zip(reqs, *seen):
        assert ours[0] in (400, 404) and (ours[0] == theirs[0] or theirs[0] == 500), (p, ours, theirs)
        if not p.endswith("/resize"):  # (dockerd: strconv.Atoi's words)
            assert ours[1] == theirs[1], (p, ours, theirs)
    assert seen[0][0][1] == {"message": "Bad parameters: you must choose at least one stream"}


def test_wait_conditions_on_a_created_container_as_dockerd(eng, peer):
    """POST /containers/{id}/wait of a container never started: not-running answers at once (0),
    next-exit waits for its start and exit, removed for its removal; after a failed start, the
    exit code and the start's error. berthd's not-running waited for a start."""
    import threading
    seen = []
    for d in (eng, peer):
        d.docker("create", "--name", "pw-a", IMAGE, "sh", "-c", "exit 3", check=True)
        d.docker("create", "--name", "pw-b", IMAGE, "true", check=True)
        d.docker("create", "--name", "pw-c", IMAGE, "/nonexist", check=True)
        try:
            row = [d.docker("wait", "pw-a", timeout=20).out, _api(d.sock, "POST", "/containers/pw-a/wait")]
            got = {}

            def wait(ref, cond):
                got[cond] = _api(d.sock, "POST", f"/containers/{ref}/wait?condition={cond}")
            ts = [threading.Thread(target=wait, args=a, daemon=True) for a in (("pw-a", "next-exit"), ("pw-b", "removed"))]
            for t in ts:
                t.start()
            time.sleep(1)
            row.append(sorted(got))  # none answered yet
            d.docker("start", "pw-a", check=True)
            d.docker("rm", "pw-b", check=True)
            for t in ts:
                t.join(30)
            row.append(got)
            # a next-exit wait is not answered by a start that fails (no run, no exit): docker's CLI
            # would log its error after the start's
            failed = {}
            tf = threading.Thread(target=lambda: failed.update(r=_api(d.sock, "POST", "/containers/pw-c/wait?"
                                                                              "condition=next-exit", timeout=10)),
                                  daemon=True)
            tf.start()
            time.sleep(0.5)
            d.docker("start", "pw-c")
            tf.join(1)
            row.append(("next-exit waits after a failed start", tf.is_alive(), dict(failed)))
            code, body = _api(d.sock, "POST", "/containers/pw-c/wait")
            row.append((code, body["StatusCode"], "/nonexist" in body["Error"]["Message"]))
            d.docker("rm", "-f", "pw-c", check=True)  # its removal answers it: the exit code, no error
            tf.join(5)
            row.append(failed.get("r"))
            seen.append(row)
        finally:
            d.docker("rm", "-f", "pw-a", "pw-b", "pw-c")
    assert seen[0] == seen[1], seen
    assert seen[0][0] == "0\n" and seen[0][3]["next-exit"] == (200, {"StatusCode": 3, "Error": None})


def test_exec_env_without_a_value_as_dockerd(eng, peer):
    """`docker exec -e NAME` of a variable the client has not (the CLI sends "NAME"): dockerd
    leaves NAME out of the exec's env, and removes the container's own NAME; `run -e NAME` the
    same. berthd's exec failed with 126, its run set NAME="". TERM follows the exec's tty."""
    env = eng.env()
    for k in ("PR_UNSET_A", "PR_UNSET_B", "FIXTURE", "FOO"):
        env.pop(k, None)
    seen = []
    for d in (eng, peer):
        denv = dict(env, HOME=d.env()["HOME"], DOCKER_CONFIG=d.env()["DOCKER_CONFIG"])
        d.docker("run", "-d", "--name", "pe-a", "-e", "FOO=bar", IMAGE, "sleep", "600", env=denv, check=True)
        d.docker("run", "-d", "-t", "--name", "pe-t", IMAGE, "sleep", "600", env=denv, check=True)
        try:
            row = []
            for args in (["-e", "PR_UNSET_A", "-e", "FOO", "pe-a"], ["-e", "FOO=baz", "-e", "HOSTNAME", "pe-a"],
                         ["-t", "pe-a"], ["pe-t"], ["-t", "-e", "TERM=vt100", "pe-a"]):
                p = d.docker("exec", *args, "env", env=denv)
                row.append((p.returncode, [x for x in p.out.replace("\r", "").splitlines()
                                           if not x.startswith("HOSTNAME=")]))
            p = d.docker("run", "--rm", "-t", "-e", "PR_UNSET_B", "-e", "FIXTURE", "-e", "HOSTNAME", IMAGE, "env", env=denv)
            row.append((p.returncode, p.out.replace("\r", "").splitlines()))
            d.docker("create", "--name", "pe-c", "-e", "PR_UNSET_B", "-e", "A=1", IMAGE, env=denv, check=True)
            cenv = _inspect(d, "pe-c")["Config"]["Env"]
            row.append((sorted(cenv[:2]), cenv[2:]))  # (the docker CLI sends -e's in no fixed order)
            seen.append(row)
        finally:
            d.docker("rm", "-f", "pe-a", "pe-t", "pe-c")
    assert seen[0] == seen[1], seen
    assert seen[0][0][0] == 0 and not any("FOO" in x or "PR_UNSET" in x for x in seen[0][0][1])


def test_prune_filter_errors_as_dockerd(eng, peer):
    """Unknown prune filters and unreadable until= values: the same words from both engines
    (dockerd answers 500 for an until it cannot parse; berthd 400: it is the request's fault)."""
    from urllib.parse import quote
    cases = [("images", {"bogus": {"1": True}}), ("images", {"until": {"bogus": True}}),
             ("images", {"until": {"2021-02-30": True}}), ("images", {"until": {"1h": True, "2h": True}}),
             ("images", {"dangling": {"maybe": True}}), ("images", {"until": {"2021-1-01": True}}),
             ("images", {"label": {"pr-nosuch": True}, "until": {"2020-01-01T00:00:00Z": True}}),
             ("build", {"bogus": {"1": True}}), ("build", {"until": {"bogus": True}}),
             ("build", {"unused-for": {"1": True}}), ("build", {"until": {"1h": True}, "unused-for": {"1h": True}}),
             ("build", {"private": {"a": True, "b": True}}), ("build", {"immutable": {"1": True}}),
             ("build", {"id": {"pr-nosuch": True}, "until": {"1h": True}}),
             ("containers", {"bogus": {"1": True}}), ("containers", {"until": {"3h-1m": True}}),
             ("containers", {"until": {"1h30m": True}, "label": {"pr-nosuch": True}})]
    for what, f in cases:
        path = f"/{what}/prune?filters=" + quote(json.dumps(f))
        (s1, b1), (s2, b2) = _api(eng.sock, "POST", path), _api(peer.sock, "POST", path)
        assert b1 == b2 and (s1 == s2 or (s1, s2) == (400, 500)), (what, f, s1, b1, s2, b2)
    for args in (["image", "prune", "-f", "--filter", "bogus=1"], ["image", "prune", "-f", "--filter", "until=bogus"],
                 ["builder", "prune", "-f", "--filter", "bogus=1"], ["builder", "prune", "-f", "--filter", "until=x"],
                 ["container", "prune", "-f", "--filter", "until=bogus"]):
        ours, theirs = eng.docker(*args), peer.docker(*args)
        assert (ours.returncode, _daemon_error(ours)) == (theirs.returncode, _daemon_error(theirs)) and \
            ours.returncode == 1, (args, ours.err, theirs.err)


def _api_create(host, host_config, image=IMAGE):
    """POST /containers/create through the SDK's low-level client: (status, message or warnings, id)."""
    docker = pytest.importorskip("docker")
    c = docker.APIClient(base_url=host, version="1.41")
    try:
        res = c.post(c._url("/containers/create"), json={"Image": image, "Cmd": ["true"], "HostConfig": host_config})
        doc = res.json()
        return res.status_code, doc.get("message", doc.get("Warnings")), doc.get("Id")
    finally:
        c.close()


def test_windows_only_resources_through_the_api_as_dockerd(eng, peer):
    """The Windows-only resources given to a Linux daemon: the QoS limits refused as dockerd reads
    the request (before the image is looked up), CpuPercent warned about and dropped, CpuCount
    kept and meaningless. berthd took them all with a warning of its own. dockerd's refusals are
    500s; berthd's the same words as a 400."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        row = []
        for hc, image in (({"IOMaximumIOps": 5}, IMAGE), ({"IOMaximumBandwidth": 100}, IMAGE),
                          ({"IOMaximumIOps": 5, "IOMaximumBandwidth": 100}, "pr-no-such-image:1"),
                          ({"IOMaximumIOps": 5, "Isolation": "hyperv"}, IMAGE),
                          ({"Isolation": "hyperv"}, "pr-no-such-image:1")):
            status, msg, _ = _api_create(d.host, hc, image)
            row.append((hc, image, status >= 400, msg))
            if d is eng:
                assert 400 <= status < 500, (hc, status, msg)
        status, warnings, cid = _api_create(d.host, {"CpuCount": 2, "CpuPercent": 30, "KernelMemory": 7 << 20})
        assert status == 201, warnings
        c = docker.APIClient(base_url=d.host, version="1.41")
        hc = c.inspect_container(cid)["HostConfig"]
        c.remove_container(cid)
        c.close()
        row.append((warnings, hc["CpuCount"], hc["CpuPercent"], hc["IOMaximumIOps"]))
        seen.append(row)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][3] == "Invalid QoS settings: linux does not support configuration of maximum IOPs"
    assert seen[0][-1][1:] == (2, 0, 0)


def test_inspect_shows_every_host_config_field_as_dockerd(eng, peer):
    """A create that sends a few HostConfig fields (the Docker SDK sends only those it is given;
    compose too): inspect shows all of dockerd's, in its order, at its defaults. berthd showed
    the few it was sent (`attrs['HostConfig']['Memory']` was a KeyError)."""
    docker = pytest.importorskip("docker")
    shown = []
    for d in (eng, peer):
        c = docker.APIClient(base_url=d.host, version="1.41")
        try:
            for kw in ({}, {"host_config": c.create_host_config(mem_limit="64m", restart_policy={"Name": "always"})}):
                cid = c.create_container(IMAGE, "true", **kw)["Id"]
                hc = c.inspect_container(cid)["HostConfig"]
                c.remove_container(cid)
                hc.pop("Runtime", None)  # dockerd shows the runtime's name when it recorded one; berthd always
                shown.append((list(hc), {k: v for k, v in hc.items() if k not in ("MaskedPaths", "ReadonlyPaths")}))
        finally:
            c.close()
    for ours, theirs in ((shown[0], shown[2]), (shown[1], shown[3])):
        assert ours == theirs, [(k, ours[1].get(k), theirs[1].get(k)) for k in theirs[0] if ours[1].get(k) != theirs[1][k]]
    assert shown[0][1]["Memory"] == 0 and shown[1][1]["Memory"] == 64 << 20 and len(shown[0][0]) >= 64


def test_create_refuses_bad_stop_signals_and_capabilities_as_dockerd(eng, peer):
    """--stop-signal and --cap-add/--cap-drop values dockerd does not know: refused at create,
    before the image is looked up (no pull of a missing one), with its words; the ones it
    knows are taken. berthd took them all at create."""
    seen = []
    for d in (eng, peer):
        row = []
        for flags in (["--stop-signal", "BOGUS"], ["--stop-signal", "0"], ["--stop-signal", "SIGRTMIN+16"],
                      ["--cap-add", "BOGUS"], ["--cap-drop", "bogus"], ["--cap-add", "ALL", "--cap-add", "CAP_ALL"],
                      ["--stop-signal", "BOGUS", "--cap-add", "BOGUS"]):
            for image in (IMAGE, "pr-no-such-image:1"):
                p = d.docker("create", *flags, image, "true")
                row.append((flags, image, p.returncode, _daemon_error(p), "Unable to find image" in p.err))
        for sig in ("SIGRTMIN+3", "rtmax-1", "-3", "+9", "cld", "usr1"):
            p = d.docker("create", "--name", "ps-ok", "--stop-signal", sig, "--cap-add", "audit_read", IMAGE, "true")
            row.append((sig, p.returncode))
            d.docker("rm", "-f", "ps-ok")
        row.append(d.docker("ps", "-aq").out)
        seen.append(row)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][2:] == (1, "Error response from daemon: Invalid signal: BOGUS", False)


def test_a_relative_working_directory_is_refused_at_create_as_dockerd(eng, peer):
    """-w with a relative path: a 400 at create in dockerd's words, before the image is looked
    up and before the stop signal; nothing is created. berthd created the container and its
    start failed in the runtime."""
    seen = []
    for d in (eng, peer):
        row = []
        for flags, images in ((["-w", "rel"], (IMAGE, "pr-no-such-image:1")),
                              (["-w", "a/b", "--stop-signal", "BOGUS"], (IMAGE, "pr-no-such-image:1")),
                              (["-w", "/a/../b/"], (IMAGE,))):
            for image in images:  # (--pull never: nothing is ever fetched from elsewhere)
                p = d.docker("create", "--pull", "never", "--name", "wd-1", *flags, image, "pwd")
                row.append((flags, image, p.returncode, _daemon_error(p), "Unable to find image" in p.err))
                d.docker("rm", "-f", "wd-1")
        row.append(d.docker("ps", "-aq").out)
        seen.append(row)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][2:] == (1, "Error response from daemon: the working directory 'rel' is invalid, "
                                 "it needs to be an absolute path", False)


def test_capability_set_from_cap_add_and_drop_as_dockerd(eng, peer):
    """--cap-add and --cap-drop combine as moby's TweakCapabilities: `--cap-drop ALL --cap-add X`
    leaves X (the usual hardening; berthd left nothing), a capability both added and dropped is
    kept, prefixes and case do not matter. (What needs all of the host's capabilities is not
    compared: this host's bounding set lacks some, and dockerd 20.10 asks runc for them all.)"""
    seen = []
    for d in (eng, peer):
        row = []
        for flags in (["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"], ["--cap-add", "chown", "--cap-drop", "CHOWN"],
                      ["--cap-drop", "all", "--cap-add", "cap_kill", "--cap-add", "NET_RAW"], ["--cap-drop", "ALL"],
                      ["--cap-drop", "net_raw", "--cap-add", "CAP_NET_ADMIN"]):
            p = d.docker("run", "--rm", *flags, IMAGE, "grep", "^Cap[EBP]", "/proc/self/status")
            row.append((flags, p.returncode, p.out))
        seen.append(row)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][2] == "CapPrm:\t0000000000000400\nCapEff:\t0000000000000400\nCapBnd:\t0000000000000400\n"


def test_ports_published_on_the_host_network_are_warned_about_as_dockerd(eng, peer):
    """-p with --network host: created and run, with dockerd's warning that they are discarded
    (berthd said nothing)."""
    seen = []
    for d in (eng, peer):
        name = f"hp-{uuid.uuid4().hex[:8]}"
        c = d.docker("create", "--name", name, "--network", "host", "-p", "18082:80", IMAGE, "true")
        r = d.docker("run", "--rm", "--network", "host", "-p", "18083:80", IMAGE, "true")
        d.docker("rm", "-f", name)
        seen.append((c.returncode, c.err, r.returncode, r.err))
    assert seen[0] == seen[1]
    assert seen[0][1] == "WARNING: Published ports are discarded when using host network mode\n"


def test_a_pull_from_a_registry_that_refuses_the_connection_as_dockerd(eng, peer):
    """A registry that refuses the connection: an error response before any progress, naming the
    registry's /v2/ ping in Go's words for the dial (the address dialled: localhost's IPv4 one),
    as dockerd's (berthd said `Pulling from` and named the manifest's request in the stream).
    `run` of such an image: `Unable to find image` then the same error, exit 125."""
    from daemon_fixtures import free_port
    port = free_port()
    seen = []
    for d in (eng, peer):
        row = []
        for args in (["pull", f"127.0.0.1:{port}/nothere/x:1"], ["pull", f"localhost:{port}/a/b"],
                     ["run", "--rm", f"127.0.0.1:{port}/nothere/x:1", "true"]):
            p = d.docker(*args)
            row.append((p.returncode, p.out, p.err))
        seen.append(row)
    assert seen[0] == seen[1], seen
    refused = f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert seen[0][0] == (1, "", f'Error response from daemon: Get "http://127.0.0.1:{port}/v2/": {refused}\n')
    assert seen[0][1] == (1, "Using default tag: latest\n",
                          f'Error response from daemon: Get "http://localhost:{port}/v2/": {refused}\n')
    assert seen[0][2][0] == 125 and "Unable to find image" in seen[0][2][2] and refused in seen[0][2][2]


def test_distribution_inspect_as_dockerd(eng, peer, tmp_path):
    """GET /distribution/{name}/json (docker-py's inspect_distribution): the registry's
    descriptor of a reference and its platforms, as dockerd's for a docker image and for an OCI
    index of two platforms; a tag the registry lacks in the registry's words (404), a bad
    reference refused. berthd had no such endpoint (404 page not found). dockerd 20.10 gives an
    OCI image manifest no platforms (its code knows docker's manifest only; later dockerds read
    the config as for docker's): berth reads its config."""
    import hashlib
    import tarfile
    from daemon_fixtures import DATA, Registry, skopeo
    layout = tmp_path / "layout"
    with tarfile.open(os.path.join(DATA, "busybox-layers.oci.tar")) as t:
        t.extractall(layout)
    manifest = dict(json.loads((layout / "index.json").read_text())["manifests"][0])
    manifest.pop("annotations", None)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        dict(manifest, platform={"architecture": "amd64", "os": "linux"}),
        dict(manifest, platform={"architecture": "arm64", "os": "linux", "variant": "v8"})]}).encode()
    digest = hashlib.sha256(index).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest, "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    reg = Registry(tmp_path / "registry").start()
    try:
        one, multi, oci = f"{reg.addr}/dist/bb:1", f"{reg.addr}/dist/multi:1", f"{reg.addr}/dist/oci:1"
        eng.docker("tag", IMAGE, one, check=True)
        eng.docker("push", one, check=True)
        eng.docker("rmi", one, check=True)
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", f"docker://{multi}")
        skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{os.path.join(DATA, 'busybox-layers.oci.tar')}",
               f"docker://{oci}")
        refs = [one, multi, f"{reg.addr}/dist/bb:nosuch", f"{reg.addr}/dist/bb", "PR-BAD", oci]
        seen = [[_api(d.sock, "GET", f"/distribution/{r}/json") for r in refs] for d in (eng, peer)]
        assert seen[0][:-1] == seen[1][:-1], list(zip(refs, *seen))
        assert seen[0][0][0] == 200 and seen[0][0][1]["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
        assert seen[0][1][1] == {"Descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json",
                                                "digest": "sha256:" + digest, "size": len(index)},
                                 "Platforms": [{"architecture": "amd64", "os": "linux"},
                                               {"architecture": "arm64", "os": "linux", "variant": "v8"}]}
        assert seen[0][2] == (404, {"message": "manifest unknown: manifest unknown"})
        (ours, mine), (theirs, their) = seen[0][-1], seen[1][-1]
        assert ours == theirs == 200 and mine["Descriptor"] == their["Descriptor"], (mine, their)
        assert (mine["Platforms"], their["Platforms"]) == ([{"architecture": "amd64", "os": "linux"}], None)
    finally:
        reg.stop()


def test_pulls_from_a_registry_say_what_dockerd_says(eng, peer, tmp_path):
    """Against the same registry, the docker CLI prints the same with both engines: a reference
    the registry does not know is an error response (404: `manifest for <ref> not found: manifest
    unknown: manifest unknown`, the registry's words after dockerd's; berthd said `Pulling from`
    and reported it in the stream, with a 200), `Pulling from` names the repository's path in
    the registry, a pull of an image that is here already says nothing of its layers, and
    `pull -a` pulls every tag (berthd pulled `latest` alone) with the repository's status."""
    from daemon_fixtures import Registry
    reg = Registry(tmp_path / "registry").start()
    try:
        repo = f"{reg.addr}/parity/bb"
        for t in ("v1", "v2"):
            eng.docker("tag", IMAGE, f"{repo}:{t}", check=True)
            eng.docker("push", f"{repo}:{t}", check=True)
            eng.docker("rmi", f"{repo}:{t}", check=True)
        seen = []
        for d in (eng, peer):
            row = []
            for args in (["pull", f"{repo}:nosuch"], ["pull", f"{reg.addr}/parity/missing:v1"], ["pull", f"{repo}:v1"],
                         ["pull", "-a", repo], ["images", "--format", "{{.Repository}}:{{.Tag}}", repo],
                         ["pull", "-a", f"{reg.addr}/parity/missing"]):
                p = d.docker(*args)
                row.append((p.returncode, p.out, p.err))
            for t in ("v1", "v2"):
                d.docker("rmi", f"{repo}:{t}")
            seen.append(row)
        for got in seen:
            digests = set(re.findall(r"sha256:[0-9a-f]{64}", "".join(o for _, o, _ in got)))
            assert len(digests) == 1, got  # both tags are one manifest
        assert seen[0] == seen[1], seen
        dgst = re.search(r"sha256:[0-9a-f]{64}", seen[0][2][1]).group(0)
        assert seen[0][0] == (1, "", f"Error response from daemon: manifest for {repo}:nosuch not found: manifest unknown: "
                                     "manifest unknown\n")
        assert seen[0][2] == (0, f"v1: Pulling from parity/bb\nDigest: {dgst}\nStatus: Downloaded newer image for "
                                 f"{repo}:v1\n{repo}:v1\n", "")
        assert seen[0][3][1] == (f"v1: Pulling from parity/bb\nDigest: {dgst}\nv2: Pulling from parity/bb\nDigest: {dgst}\n"
                                 f"Status: Downloaded newer image for {repo}\n{repo}\n")
        assert seen[0][4][1] == f"{repo}:v1\n{repo}:v2\n"
        assert seen[0][5] == (1, "", f"Error response from daemon: repository {reg.addr}/parity/missing not found: "
                                     "name unknown: repository name not known to registry\n")
    finally:
        reg.stop()


def test_pushes_say_what_dockerd_says(eng, peer, tmp_path):
    """The docker CLI's push prints the same with both engines (each engine to a repository of
    its own, the manifests' sizes and digests aside: dockerd pushes Docker media types): the
    repository is named first, then what is wrong is said in the stream (a tag the repository
    lacks: `tag does not exist`, a repository with no image: `An image does not exist locally`, a
    registry that cannot be reached: its /v2/ ping; berthd answered `no such image` errors and
    named a blob's request), and `push -a` pushes every tag (berthd found no image)."""
    from daemon_fixtures import Registry
    reg = Registry(tmp_path / "registry").start()
    try:
        seen = []
        for who, d in (("eng", eng), ("peer", peer)):
            repo = f"{reg.addr}/{who}/bb"
            for t in ("v1", "v2"):
                d.docker("tag", IMAGE, f"{repo}:{t}", check=True)
            d.docker("tag", IMAGE, "127.0.0.1:1/pp/x:1", check=True)
            row = []
            for args in (["push", "-a", repo], ["push", f"{repo}:nosuch"], ["push", repo], ["push", "127.0.0.1:1/pp/y:1"],
                         ["push", "127.0.0.1:1/pp/x:1"]):
                p = d.docker(*args)
                out = re.sub(r"digest: sha256:[0-9a-f]{64} size: \d+", "digest: <d> size: <n>", p.out.replace(who, "<who>"))
                row.append((p.returncode, re.sub(r"\b[0-9a-f]{12}: ", "<layer>: ", out), p.err.replace(who, "<who>")))
            for n in (f"{repo}:v1", f"{repo}:v2", "127.0.0.1:1/pp/x:1"):
                d.docker("rmi", n)
            seen.append(row)

        def layers_unordered(row):
            # dockerd pushes a tag's layers concurrently: a layer's lines may come before or after
            # another's ("Preparing" of both, then their results, or one layer's after the other's)
            out = []
            for code, text, err in row:
                lines, run = [], []
                for line in text.splitlines(keepends=True) + [""]:
                    if line.startswith("<layer>: "):
                        run.append(line)
                        continue
                    lines += sorted(run) + [line]
                    run = []
                out.append((code, "".join(lines), err))
            return out
        assert layers_unordered(seen[0]) == layers_unordered(seen[1]), seen
        repo = f"{reg.addr}/<who>/bb"
        head = f"The push refers to repository [{repo}]\n"
        assert seen[0][0] == (0, head + "".join(f"<layer>: Preparing\n<layer>: Preparing\n<layer>: {s}\n<layer>: {s}\n"
                                                f"{t}: digest: <d> size: <n>\n"
                                                for t, s in (("v1", "Pushed"), ("v2", "Layer already exists"))), "")
        assert seen[0][1] == (1, head, f"tag does not exist: {repo}:nosuch\n")
        assert seen[0][2] == (1, "Using default tag: latest\n" + head, f"tag does not exist: {repo}:latest\n")
        assert seen[0][3] == (1, "The push refers to repository [127.0.0.1:1/pp/y]\n",
                              "An image does not exist locally with the tag: 127.0.0.1:1/pp/y\n")
        assert seen[0][4] == (1, "The push refers to repository [127.0.0.1:1/pp/x]\n",
                              'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused\n')
    finally:
        reg.stop()


def test_repo_digests_are_dockerds_digest_references(eng, peer, tmp_path):
    """RepoDigests as dockerd keeps them, the same through the docker CLI with both engines: a
    loaded or tagged image has none (berthd made one of every name), a pull records the pulled
    manifest's (a tag into another repository adds none), the last tag of a repository takes its
    digest references with it (`Untagged: <repo>@<digest>`, which berthd never said), and an
    image whose tag went to another keeps its own (`<repo> <none>` in the list)."""
    from daemon_fixtures import Registry
    reg = Registry(tmp_path / "registry").start()
    try:
        repo = f"{reg.addr}/digests/bb"
        eng.docker("tag", IMAGE, f"{repo}:v1", check=True)
        eng.docker("push", f"{repo}:v1", check=True)
        eng.docker("run", "--name", "rd-mk", IMAGE, "touch", "/new", check=True)
        eng.docker("commit", "rd-mk", f"{repo}:v2", check=True)
        eng.docker("rm", "rd-mk", check=True)
        eng.docker("push", f"{repo}:v2", check=True)
        eng.docker("rmi", f"{repo}:v1", f"{repo}:v2", check=True)
        fmt = ["--format", "{{.RepoTags}} {{.RepoDigests}}"]
        seen = []
        for d in (eng, peer):
            row = []
            for args in (["image", "inspect", *fmt, IMAGE], ["pull", "-q", f"{repo}:v1"], ["image", "inspect", *fmt, IMAGE],
                         ["tag", f"{repo}:v1", "rd/other:x"], ["rmi", f"{repo}:v1"], ["image", "inspect", *fmt, "rd/other:x"],
                         ["rmi", "rd/other:x"], ["pull", "-q", f"{repo}:v1"], ["pull", "-q", f"{repo}:v2"],
                         ["tag", f"{repo}:v2", f"{repo}:v1"],
                         ["images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}", repo],
                         ["rmi", f"{repo}:v1"], ["rmi", f"{repo}:v2"]):
                p = d.docker(*args)
                row.append((p.returncode, re.sub(r"sha256:[0-9a-f]{64}", "<d>", p.out), p.err))
            seen.append(row)
        assert seen[0] == seen[1], seen
        assert seen[0][0][1] == f"[{IMAGE}] []\n"
        assert seen[0][2][1] == f"[{repo}:v1 {IMAGE}] [{repo}@<d>]\n"
        assert seen[0][4][1] == f"Untagged: {repo}:v1\nUntagged: {repo}@<d>\n"
        assert seen[0][5][1] == f"[{IMAGE} rd/other:x] []\n"
        assert seen[0][10][1] == f"{repo} v1 <d>\n{repo} v2 <d>\n{repo} <none> <d>\n"
    finally:
        for d in (eng, peer):
            for n in ("rd/other:x", f"{reg.addr}/digests/bb:v1", f"{reg.addr}/digests/bb:v2"):
                d.docker("rmi", n)
        reg.stop()


def test_an_image_left_with_a_digest_reference_alone_is_pruned_as_dockerd(eng, peer, tmp_path):
    """An image whose tag went to another keeps its digest reference (`<repo> <none>`): dockerd
    lists it as dangling and as not dangling, `image prune` deletes it (`untagged: <repo>@<digest>`
    then the image and its own layer) and counts the deleted layers' sizes, not the disk's bytes;
    berthd's prune kept it, and reported the blobs' and snapshots' bytes."""
    from daemon_fixtures import Registry
    reg = Registry(tmp_path / "registry").start()
    repo = f"{reg.addr}/dangling/bb"
    try:
        eng.docker("run", "--name", "dg-mk", IMAGE, "touch", "/new", check=True)
        eng.docker("commit", "dg-mk", f"{repo}:v2", check=True)
        eng.docker("rm", "dg-mk", check=True)
        eng.docker("push", f"{repo}:v2", check=True)
        eng.docker("rmi", f"{repo}:v2", check=True)
        fmt = ["--format", "{{.Repository}}:{{.Tag}}"]
        seen = []
        for d in (eng, peer):
            row = []
            for args in (["pull", "-q", f"{repo}:v2"], ["tag", IMAGE, f"{repo}:v2"], ["images", "-f", "dangling=true", *fmt],
                         ["images", "-f", "dangling=false", *fmt, repo], ["image", "prune", "-f"], ["images", *fmt, repo]):
                p = d.docker(*args)
                row.append((p.returncode, re.sub(r"sha256:[0-9a-f]{64}", "<d>", p.out), p.err))
            d.docker("rmi", f"{repo}:v2")
            seen.append(row)
        assert seen[0] == seen[1], seen
        assert seen[0][2][1] == f"{repo}:<none>\n"
        assert sorted(seen[0][3][1].split()) == [f"{repo}:<none>", f"{repo}:v2"]
        assert seen[0][4][1] == (f"Deleted Images:\nuntagged: {repo}@<d>\ndeleted: <d>\ndeleted: <d>\n\n"
                                 "Total reclaimed space: 0B\n")
        assert seen[0][5][1] == f"{repo}:v2\n"
    finally:
        reg.stop()


def test_a_load_that_takes_a_tag_from_another_image_says_so_as_dockerd(eng, peer, tmp_path):
    """`docker load` of an archive whose tag names another image here: dockerd says `The image
    <tag> already exists, renaming the old one with ID <old id> to empty string` (with -q too)
    before `Loaded image`; berthd moved the tag silently. The old image, left without a name,
    stays as <none> (berthd lost it: a moved tag took its image away)."""
    seen = []
    for who, d in (("eng", eng), ("peer", peer)):
        archive = str(tmp_path / f"{who}.tar")
        d.docker("tag", IMAGE, "ld/x:1", check=True)
        d.docker("save", "-o", archive, "ld/x:1", check=True)
        d.docker("rmi", "ld/x:1", check=True)
        d.docker("run", "--name", "ld-mk", IMAGE, "touch", "/x", check=True)
        d.docker("commit", "ld-mk", "ld/x:1", check=True)
        d.docker("rm", "ld-mk", check=True)
        old = d.docker("image", "inspect", "--format", "{{.Id}}", "ld/x:1", check=True).out.strip()
        row = []
        for args in (["load", "-q", "-i", archive], ["load", "-i", archive],
                     ["images", "--format", "{{.Repository}}:{{.Tag}}", "ld/x"], ["images", "-q", "-f", "dangling=true"]):
            p = d.docker(*args)
            row.append((p.returncode, p.out.replace(old, "<old>").replace(old[7:19], "<old12>"), p.err))
        d.docker("rmi", "ld/x:1", old)
        seen.append(row)
    assert seen[0] == seen[1], seen
    assert seen[0][0][1] == ("The image ld/x:1 already exists, renaming the old one with ID <old> to empty string\n"
                             "Loaded image: ld/x:1\n")
    assert seen[0][1][1] == "Loaded image: ld/x:1\n"
    assert seen[0][2][1] == "ld/x:1\n" and "<old12>" in seen[0][3][1]


def test_a_tag_moved_to_another_image_leaves_the_old_one_dangling_as_dockerd(eng, peer):
    """`docker tag` (and commit) of a name that names another image: the old image, if the name
    was its last, stays as <none> (dangling), as dockerd keeps it; berthd lost it (its content
    went with the next collection)."""
    seen = []
    for d in (eng, peer):
        d.docker("run", "--name", "mv-mk", IMAGE, "touch", "/x", check=True)
        d.docker("commit", "mv-mk", "mv/solo:1", check=True)
        d.docker("rm", "mv-mk", check=True)
        old = d.docker("image", "inspect", "--format", "{{.Id}}", "mv/solo:1", check=True).out.strip()
        row = []
        for args in (["tag", IMAGE, "mv/solo:1"], ["images", "-q", "--no-trunc", "-f", "dangling=true"],
                     ["image", "inspect", "--format", "{{.RepoTags}}", old]):
            p = d.docker(*args)
            row.append((p.returncode, p.out.replace(old, "<old>"), p.err))
        d.docker("rmi", "mv/solo:1", old)
        seen.append(row)
    assert seen[0] == seen[1], seen
    assert "<old>" in seen[0][1][1].split() and seen[0][2] == (0, "[]\n", "")


def test_a_user_writes_to_dev_stdout_as_with_dockerd(eng, peer):
    """A process run as a user (-u 1000) can open its stdio again, /dev/stdout and /dev/stderr,
    with or without a terminal or stdin, in run and exec, as with dockerd: the runtime hands fds
    0-2 to the user first (runc's fixStdioPermissions). berth's were root's pipes: "can't create
    /dev/stdout: Permission denied" (a program logging to /dev/stdout as a user logged nothing)."""
    script = "echo out > /dev/stdout; echo err > /dev/stderr"
    seen = []
    for d in (eng, peer):
        name = _name("so")
        try:
            row = []
            for args in (["-u", "1000"], ["-u", "1000:1000", "-i"], ["-u", "1000", "-t"]):
                p = d.docker("run", "--rm", "--network", "none", *args, IMAGE, "sh", "-c", script,
                             input=b"" if "-i" in args else None)
                row.append((args, p.returncode, p.out.replace("\r", ""), p.err))
            d.docker("run", "-d", "--name", name, "--network", "none", "-u", "1000", IMAGE, "sh", "-c",
                     script + "; sleep 600", check=True)
            wait_for(lambda: "out" in d.docker("logs", name).out, 10, "the log lines")
            p = d.docker("logs", name)
            row.append(("logs", p.out, p.err))
            p = d.docker("exec", "-u", "1000", name, "sh", "-c", script)
            row.append(("exec", p.returncode, p.out, p.err))
            seen.append(row)
        finally:
            d.docker("rm", "-f", name)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == (["-u", "1000"], 0, "out\n", "err\n"), seen


def test_exec_as_an_unknown_user_exits_126_as_dockerd(eng, peer):
    """`exec -u nosuchuser`: the docker CLI prints why (the start's stream) and exits 126 with
    both engines; -d: the start's error, exit 1; the exec's inspect: ExitCode 126, not running.
    berthd refused the exec create: the CLI exited 1."""
    seen = []
    for d in (eng, peer):
        d.docker("run", "-d", "--name", "pu-a", IMAGE, "sleep", "600", check=True)
        try:
            row = []
            for args in (["-u", "nosuchuser"], ["-u", "root:nosuchgroup"], ["-d", "-u", "nosuchuser"]):
                p = d.docker("exec", *args, "pu-a", "true")
                row.append((args, p.returncode, p.out, _daemon_error(p)))
            code, body = _api(d.sock, "POST", "/containers/pu-a/exec", {"Cmd": ["true"], "User": "nosuchuser"})
            eid = body["Id"]
            code2, body2 = _api(d.sock, "POST", f"/exec/{eid}/start", {"Detach": True})
            info = _api(d.sock, "GET", f"/exec/{eid}/json")[1]
            # (dockerd answers that start 500; berthd 400: the request's user is wrong)
            row.append((code, code2 in (400, 500), body2, info["Running"], info["ExitCode"], info["Pid"]))
            seen.append(row)
        finally:
            d.docker("rm", "-f", "pu-a")
    assert seen[0] == seen[1], seen
    assert seen[0][0][1] == 126 and seen[0][-1][3:] == (False, 126, 0) and seen[0][-1][:2] == (201, True)


def test_unknown_network_and_volumes_from_as_dockerd(eng, peer):
    """create --network X (no such network): made, its start fails with 404 "network X not
    found" (State.Error, ExitCode 128); --volumes-from of no container: 400. berthd answered
    404 at create, on which the docker CLI tries to pull the image."""
    seen = []
    for d in (eng, peer):
        d.docker("create", "--name", "pv-src", "-v", "/data2", IMAGE, check=True)
        try:
            row = []
            p = d.docker("create", "--name", "pn-a", "--network", "pr-nosuchnet", IMAGE, "true")
            row.append((p.returncode, "Unable to find image" in p.err))
            p = d.docker("start", "pn-a")
            row.append((p.returncode, _daemon_error(p)))
            st = _inspect(d, "pn-a")["State"]
            row.append((st["Status"], st["ExitCode"], st["Error"]))
            row.append(_api(d.sock, "POST", "/containers/pn-a/wait"))
            code, body = _api(d.sock, "POST", "/containers/pn-a/start")
            row.append((code, body))
            p = d.docker("run", "--name", "pn-b", "--network", "pr-nosuchnet", IMAGE, "true")
            row.append((p.returncode, _daemon_error(p), "Unable to find image" in p.err))
            for spec in ("pr-nosuchcontainer", "pr-nosuchcontainer:ro", "pv-src:bogus", "pv-src:ro,rw",
                         "pv-src:ro,shared", "pv-src:nocopy"):
                p = d.docker("create", "--volumes-from", spec, IMAGE, "true")
                row.append((spec, p.returncode, _daemon_error(p), "Unable to find image" in p.err))
            code, body = _api(d.sock, "POST", "/containers/create",
                              {"Image": IMAGE, "HostConfig": {"VolumesFrom": ["pr-nosuchcontainer"]}})
            row.append((code, body))
            d.docker("create", "--name", "pv-user", "--volumes-from", "pv-src:ro", IMAGE, check=True)
            row.append([(m["Destination"], m["RW"]) for m in _inspect(d, "pv-user")["Mounts"]])
            seen.append(row)
        finally:
            d.docker("rm", "-f", "-v", "pn-a", "pn-b", "pv-user", "pv-src")
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0] == (0, False) and seen[0][4] == (404, {"message": "network pr-nosuchnet not found"})


def test_default_cgroupns_and_the_host_networks_hostname_as_dockerd(eng, peer):
    """dockerd 20.10's defaults: the host's cgroup namespace unless the host is cgroup v2 only
    (default-cgroupns-mode), recorded in the container's HostConfig; on the host's network a
    container is named as the host (hostname and HOSTNAME) unless -h says otherwise."""
    import socket
    from berth.runtime.cgroups import detect_mode
    mode = "private" if detect_mode() == "v2" else "host"
    for d in (eng, peer):
        name = _name("cgns")
        try:
            d.docker("create", "--name", name, IMAGE, "true", check=True)
            assert d.docker("inspect", "-f", "{{.HostConfig.CgroupnsMode}}", name).out.strip() == mode
        finally:
            d.docker("rm", "-f", name)
        out = d.docker("run", "--rm", IMAGE, "cat", "/proc/self/cgroup").out
        assert all(line.endswith(":/") for line in out.split()) == (mode == "private"), (d, out)
        p = d.docker("run", "--rm", "--network", "host", IMAGE, "sh", "-c", "echo $HOSTNAME; hostname")
        assert p.out.split() == [socket.gethostname()] * 2, (d, p.out, p.err)
        p = d.docker("run", "--rm", IMAGE, "sh", "-c", "echo $HOSTNAME; hostname")
        assert p.out.split()[0] == p.out.split()[1] != socket.gethostname(), (d, p.out)


def test_a_read_only_root_has_read_only_etc_files_as_dockerd(eng, peer, tmp_path):
    """--read-only: /etc/hosts, /etc/hostname and /etc/resolv.conf are read-only too (dockerd 20.10
    mounts them so; containerd's CRI so for readonly_rootfs), unless a volume of the user's takes
    the place of one; without it they are writable."""
    mine = tmp_path / "hosts"
    mine.write_text("127.0.0.1 localhost\n")
    script = "for f in hosts hostname resolv.conf; do (echo >> /etc/$f) 2>/dev/null && echo $f:rw || echo $f:ro; done"
    for d in (eng, peer):
        for flags, want in (([], ["hosts:rw", "hostname:rw", "resolv.conf:rw"]),
                            (["--read-only"], ["hosts:ro", "hostname:ro", "resolv.conf:ro"]),
                            (["--read-only", "-v", f"{mine}:/etc/hosts"], ["hosts:rw", "hostname:ro", "resolv.conf:ro"])):
            p = d.docker("run", "--rm", "--network", "none", *flags, IMAGE, "sh", "-c", script)
            assert p.out.split() == want, (d, flags, p.out, p.err)


def test_default_sysctls_and_read_only_proc_paths_as_dockerd(eng, peer):
    """dockerd 20.10 lets a process without capabilities ping and bind ports below 1024 in a
    container with a network namespace of its own (ping_group_range, ip_unprivileged_port_start;
    not recorded in HostConfig.Sysctls, --sysctl wins, the host's on the host's network); the
    read-only /proc paths keep /proc's nosuid, nodev and noexec (runc's readonlyPath)."""
    if not os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start"):
        pytest.skip("a kernel before 4.11")
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f, \
            open("/proc/sys/net/ipv4/ping_group_range") as g:
        host = [f.read().strip(), g.read().strip().replace("\t", " ")]
    probe = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; tr '\\t' ' ' < /proc/sys/net/ipv4/ping_group_range"
    cases = [(["--network", "none"], ["0", "0 2147483647"]), ([], ["0", "0 2147483647"]),
             (["--network", "host"], host),
             (["--network", "none", "--sysctl", "net.ipv4.ping_group_range=0 0"], ["0", "0 0"])]
    for d in (eng, peer):
        for flags, want in cases:
            p = d.docker("run", "--rm", *flags, IMAGE, "sh", "-c", probe)
            assert p.out.splitlines() == want, (d, flags, p.out, p.err)
        name = _name("sysctl")
        try:
            d.docker("create", "--name", name, "--network", "none", IMAGE, "true", check=True)
            assert d.docker("inspect", "-f", "{{json .HostConfig.Sysctls}}", name).out.strip() == "null"
        finally:
            d.docker("rm", "-f", name)
        p = d.docker("run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                     "grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | cut -d' ' -f5,6")
        opts = dict(line.split() for line in p.out.splitlines())
        assert set(opts) == {"/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"}, (d, p.out)
        assert all({"ro", "nosuid", "nodev", "noexec"} <= set(o.split(",")) for o in opts.values()), (d, opts)


def test_memory_swap_resolv_conf_and_tmpfs_modes_as_dockerd(eng, peer):
    """dockerd 20.10: -m alone records MemorySwap as twice the memory (as much swap as memory;
    -1 unlimited, an explicit value as given); a resolv.conf from --dns* is search, nameservers,
    options (libnetwork's order); a tmpfs on a directory of the image gets that directory's mode
    (runc's: the image's /tmp is 755 in this fixture), on a new one the tmpfs's (1777, or mode=)."""
    swap = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    for d in (eng, peer):
        for flags, want in ((["-m", "64m"], 128 << 20), (["-m", "64m", "--memory-swap", "-1"], -1),
                            (["-m", "64m", "--memory-swap", "96m"], 96 << 20)):
            name = _name("swap")
            try:
                d.docker("create", "--name", name, "--network", "none", *flags, IMAGE, "cat", swap, check=True)
                assert _inspect(d, name)["HostConfig"]["MemorySwap"] == want, (d, flags)
                p = d.docker("start", "-a", name)
                if os.path.exists(swap):  # swap accounted: the limit as recorded
                    assert int(p.out) == (want if want > 0 else int(p.out)) and (want > 0 or int(p.out) > 1 << 50), \
                        (d, flags, p.out, p.err)
            finally:
                d.docker("rm", "-f", name)
        p = d.docker("run", "--rm", "--network", "none", "--dns", "9.9.9.9", "--dns-search", "ex.com",
                     "--dns-option", "ndots:3", IMAGE, "cat", "/etc/resolv.conf")
        assert p.out == "search ex.com\nnameserver 9.9.9.9\noptions ndots:3\n", (d, p.out)
        p = d.docker("run", "--rm", "--network", "none", "--tmpfs", "/tmp", "--tmpfs", "/new1",
                     "--tmpfs", "/new2:mode=700", "--tmpfs", "/data:ro", IMAGE, "sh", "-c",
                     "stat -c '%n %a' /tmp /new1 /new2 /data; touch /data/x 2>/dev/null || echo ro")
        assert p.out.split("\n")[:5] == ["/tmp 755", "/new1 1777", "/new2 700", "/data 755", "ro"], (d, p.out, p.err)


def test_device_cgroup_rules_as_dockerd(eng, peer):
    """The device cgroup a container gets, as under dockerd 20.10 and runc: dockerd's own rules
    (/dev/console allowed, fuse denied) and the runtime's allowed devices, with --device and
    --device-cgroup-rule added."""
    out = {}
    for d in (eng, peer):
        got = []
        for extra in ((), ("-t",), ("--device", "/dev/null:/dev/x"), ("--device-cgroup-rule", "c 42:* rmw")):
            p = d.docker("run", "--rm", "--network", "none", *extra, IMAGE, "sort", "/sys/fs/cgroup/devices/devices.list")
            got.append((p.returncode, p.out.replace("\r", "")))
        out[d is peer] = got
    assert out[False] == out[True]
    assert "c 5:1 rwm" in out[False][0][1].splitlines() and "c 42:* rwm" in out[False][3][1].splitlines()


def test_an_oom_killed_container_is_oomkilled_as_dockerd(eng, peer):
    """A container whose memory cgroup's OOM killer killed its process: State.OOMKilled true and
    exit code 137, as dockerd 20.10 records it (false for one killed otherwise).

    dockerd's flag comes from containerd 1.6's shim, whose OOM event may follow its exit event
    (containerd#8180, fixed in 2.x by #12714): then dockerd records false. berth reads the cgroup's
    count at the exit, every time; the peer gets more runs of the hog to show its true."""
    hog = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"

    def again(d, name):  # the hog's next run(s): OOMKilled as recorded
        for _ in range(1 if d is eng else 5):
            d.docker("start", name)
            d.docker("wait", name)
            if _inspect(d, name)["State"]["OOMKilled"]:
                return True
        return False

    for d in (eng, peer):
        names = [_name("oom"), _name("kill")]
        try:
            p = d.docker("run", "--name", names[0], "--network", "none", "-m", "8m", "--memory-swap", "8m", IMAGE,
                         "sh", "-c", hog)
            assert p.returncode == 137, (d, p.err)
            st = _inspect(d, names[0])["State"]
            assert (st["ExitCode"], st["Status"]) == (137, "exited"), (d, st)
            assert st["OOMKilled"] or (d is peer and again(d, names[0])), (d, st)
            d.docker("run", "-d", "--name", names[1], "--network", "none", "-m", "8m", IMAGE, "sleep", "60", check=True)
            d.docker("kill", names[1], check=True)
            d.docker("wait", names[1])
            st = _inspect(d, names[1])["State"]
            assert (st["OOMKilled"], st["ExitCode"]) == (False, 137), (d, st)
            # a second run of it is found out again (a new cgroup, a new count)
            assert again(d, names[0]), (d, _inspect(d, names[0])["State"])  # the hog again
        finally:
            d.docker("rm", "-f", *names)


def test_ps_command_as_dockerd(eng, peer):
    """The list's Command as dockerd 20.10 writes it: the path, then the arguments, one with a
    space in single quotes as it is (nothing escaped)."""
    for d in (eng, peer):
        name = _name("cmd")
        try:
            d.docker("create", "--name", name, IMAGE, "sh", "-c", "echo 'a b'; echo \"q\"", "x\ty", check=True)
            p = d.docker("ps", "-a", "--no-trunc", "--filter", f"name={name}", "--format", "{{.Command}}", check=True)
            assert p.out.strip() == '"sh -c \'echo \'a b\'; echo \\"q\\"\' x\\ty"', (d, p.out)
        finally:
            d.docker("rm", "-f", name)


def test_a_container_has_its_images_labels_as_dockerd(eng, peer):
    """dockerd gives a container its image's labels beside the create's (the create's win): the
    list shows them and its label filter finds them. berthd's inspect showed them, its list and
    filters did not (`ps --filter label=<an image's label>` listed nothing)."""
    seen = []
    for d in (eng, peer):
        name = _name("lbl")
        try:
            d.docker("create", "--name", name, "--label", "mine=1", IMAGE, "true", check=True)
            d.docker("create", "--name", name + "-2", "--label", "org.example.fixture=mine", IMAGE, "true", check=True)
            rows = d.docker("ps", "-a", "--filter", "label=org.example.fixture", "--filter", f"name={name}",
                            "--format", "{{.Names}} {{.Label \"org.example.fixture\"}} {{.Label \"mine\"}}",
                            check=True).out.split("\n")
            rows = sorted(r.strip().replace(name, "<name>") for r in rows if r.strip())
            seen.append((rows, _inspect(d, name)["Config"]["Labels"]))
        finally:
            d.docker("rm", "-f", name, name + "-2")
    assert seen[0] == seen[1], seen
    assert seen[0][0] == ["<name> busybox-layers 1", "<name>-2 mine"], seen[0]


def test_rmi_lists_the_layers_it_frees_as_dockerd(eng, peer):
    """docker rmi of a committed image: Untagged, the image's Deleted, then a Deleted for each layer
    that went with it, by its chain ID, the top one first (the layers it shares stay unlisted), as
    dockerd 20.10 answers."""
    from berth.images.config import chain_ids
    for d in (eng, peer):
        name = _name("rmi")
        try:
            d.docker("run", "--name", name, "--network", "none", IMAGE, "sh", "-c", "echo x > /data/f", check=True)
            d.docker("commit", name, f"{name}:1", check=True)
            img = json.loads(d.docker("image", "inspect", f"{name}:1", check=True).out)[0]
            d.docker("rm", name, check=True)
            p = d.docker("rmi", f"{name}:1", check=True)
            assert p.out.splitlines() == [f"Untagged: {name}:1", f"Deleted: {img['Id']}",
                                          f"Deleted: {chain_ids(img['RootFS']['Layers'])[-1]}"], (d, p.out)
        finally:
            d.docker("rm", "-f", name)


def test_image_and_layer_sizes_as_dockerd(eng, peer):
    """An image's size (inspect, the list) and its history's layer sizes are dockerd 20.10's: each
    layer's unpacked files (their sizes, a hardlinked file once; not the tar's or the compressed
    blob's), the same numbers side by side."""
    seen = []
    for d in (eng, peer):
        img = json.loads(d.docker("image", "inspect", IMAGE, check=True).out)[0]
        listed = [json.loads(line) for line in d.docker("images", "--format", "{{json .}}", IMAGE, check=True).out.splitlines()]
        hist = d.docker("history", "--human=false", "--format", "{{.Size}}", IMAGE, check=True).out.split()
        seen.append((img["Size"], [x["Size"] for x in listed], hist))  # (VirtualSize: gone at API 1.44)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == sum(int(x) for x in seen[0][2])


def test_an_images_relative_volumes_are_under_the_root_as_dockerd(eng, peer, tmp_path):
    """An image whose VOLUME paths are relative (`VOLUME data`, a JSON array written after a
    path: "[/v2]") runs as with dockerd: each a volume under the root (/data, with the image's
    content copied up), recorded as written (inspect's Mounts show "data"); so does API
    Config.Volumes. berthd refused to create a container of such an image ("mount path must be
    absolute")."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN mkdir /rel && echo img > /rel/f\n"
                                    'VOLUME rel /a/../b/ ["/v2"]\n')
    seen = []
    for d in (eng, peer):
        name, img = _name("rv"), f"{_name('rvi')}:1"
        try:
            d.docker("build", "-q", "-t", img, str(ctx), check=True)
            d.docker("create", "--name", name, "--network", "none", img, "sh", "-c",
                     "cat /rel/f; ls -d /b '/[/v2]'; grep -c ' /rel ' /proc/mounts", check=True)
            mounts = sorted(m["Destination"] for m in _inspect(d, name)["Mounts"])
            p = d.docker("start", "-a", name)
            made = _api(d.sock, "POST", "/containers/create", {"Image": IMAGE, "Volumes": {"rel2": {}}})
            if made[0] == 201:
                d.docker("rm", "-v", made[1]["Id"])
            seen.append((mounts, p.returncode, p.out, made[0]))
        finally:
            d.docker("rm", "-fv", name)
            d.docker("rmi", img)
    assert seen[0] == seen[1], seen
    assert seen[0] == (["/b", "[/v2]", "rel"], 0, "img\n/[/v2]\n/b\n1\n", 201), seen


def test_committed_and_built_layer_sizes_as_dockerd(eng, peer, tmp_path):
    """A committed container's and a built image's layers are sized as dockerd sizes them, the
    new layer's files and the parent's layers alike (berth kept a committed or built layer
    packed until a run, and gave the tar blobs' sizes for the whole image meanwhile: 2.13 MB
    and 4.61 kB where dockerd said 1.98 MB and 22 B)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo hello > /y && touch /x && ln -s /y /z\n"
                                    "COPY f /f\nRUN rm /data/sub/file\n")
    (ctx / "f").write_text("abc\n")
    seen = []
    for d in (eng, peer):
        name, com, bld = _name("cs"), f"{_name('com')}:1", f"{_name('bld')}:1"
        try:
            d.docker("run", "--name", name, IMAGE, "sh", "-c", "touch /x; echo hello > /y", check=True)
            d.docker("commit", name, com, check=True)
            d.docker("build", "-q", "-t", bld, str(ctx), check=True)
            got = []
            for ref in (com, bld):
                img = json.loads(d.docker("image", "inspect", ref, check=True).out)[0]
                hist = d.docker("history", "--human=false", "--format", "{{.Size}}", ref, check=True).out.split()
                got.append((img["Size"], hist))
            seen.append(got)
        finally:
            d.docker("rm", "-f", name)
            d.docker("rmi", com, bld)
    assert seen[0] == seen[1], seen
    assert seen[0][0][1][0] == "6" and seen[0][1][1][:4] == ["0", "4", "8", "0"], seen


def test_a_built_healthcheck_keeps_what_it_leaves_unset_from_the_one_before_as_dockerd(eng, peer, tmp_path):
    """A HEALTHCHECK in a Dockerfile, NONE included, keeps the interval, timeout and retries it
    does not give from the healthcheck before it (each step's commit merges its config over the
    image before, as dockerd's classic builder does); berth kept only what it gave."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {IMAGE} AS base\nHEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD true\n"
        "FROM base AS plain\nHEALTHCHECK CMD false\n"
        "FROM plain AS flags\nHEALTHCHECK --timeout=7s CMD [\"true\"]\n"
        "FROM base AS none\nHEALTHCHECK NONE\n")
    seen = []
    for d in (eng, peer):
        tag = _name("hc")
        got = []
        try:
            for target in ("plain", "flags", "none"):
                d.docker("build", "-q", "--target", target, "-t", f"{tag}:{target}", str(ctx), check=True)
                got.append(json.loads(d.docker("image", "inspect", "-f", "{{json .Config.Healthcheck}}", f"{tag}:{target}",
                                               check=True).out))
        finally:
            d.docker("rmi", f"{tag}:plain", f"{tag}:flags", f"{tag}:none")
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0][2] == {"Test": ["NONE"], "Interval": 5000000000, "Timeout": 2000000000, "Retries": 4}, seen


def test_a_commits_config_is_the_containers_with_the_changes_as_dockerd(eng, peer, tmp_path):
    """`docker commit`: the image's config is the container's own Config (the create's Env
    first, its hostname, tty and attach flags, the image's name; the image's ONBUILD triggers
    dropped), the --change instructions applied to it as the builder does (ENV in place,
    ENTRYPOINT dropping the Cmd, HEALTHCHECK taken and merged with the one before, WORKDIR
    relative), as dockerd 20.10's at API 1.41; STOPSIGNAL is no change a commit takes. berth
    started from the image's config (the image's Env first), refused HEALTHCHECK and took
    STOPSIGNAL."""
    docker = pytest.importorskip("docker")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nONBUILD RUN true\nEXPOSE 80\nVOLUME /v\n"
                                    "HEALTHCHECK --interval=5s --retries=4 CMD true\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n"
                                    "CMD [\"echo hi\"]\n")
    changes = [[], ["ENV PATH=/p", "ENV Z=9", "WORKDIR rel", "LABEL c=d", "EXPOSE 82"],
               ["HEALTHCHECK NONE", "ENTRYPOINT [\"/bin/echo\"]"], ["CMD [\"x\"]", "ENTRYPOINT [\"/bin/echo\"]"],
               ["HEALTHCHECK --timeout=3s CMD [\"false\"]", "USER 7", "VOLUME /w"]]
    seen = []
    for d in (eng, peer):
        base, name, tag = f"{_name('cb')}:1", _name("cc"), _name("ci")
        got = []
        api = docker.APIClient(base_url=d.host, version="1.41")
        try:
            d.docker("build", "-q", "-t", base, str(ctx), check=True)
            cid = d.docker("create", "--name", name, "--network", "none", "-t", "-e", "X=1", "-e", "FIXTURE=mine",
                           "-l", "a=b", "--expose", "81", "-w", "/tmp", base, "run", check=True).out.strip()
            for i, ch in enumerate(changes):
                d.docker("commit", *[a for c in ch for a in ("-c", c)], name, f"{tag}:{i}", check=True)
                img = api.inspect_image(f"{tag}:{i}")
                for key in ("Config", "ContainerConfig"):
                    assert img[key]["Hostname"] == cid[:12] and img[key]["Image"] == base, img
                    c = {k: v for k, v in img[key].items() if k not in ("Hostname", "Image")}
                    # (the docker CLI sends a create's -e in an order of its own: the order among them is not compared)
                    c["Env"] = (sorted(c["Env"][:-1]), c["Env"][-1]) if c.get("Env") else c.get("Env")
                    got.append(c)
        finally:
            api.close()
            d.docker("rm", "-f", name)
            d.docker("rmi", *[f"{tag}:{i}" for i in range(len(changes))], base)
        seen.append(got)
    assert seen[0] == seen[1], [(i, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
                                for i, (a, b) in enumerate(zip(*seen)) if a != b]
    assert seen[0][0]["Env"] == (["FIXTURE=mine", "X=1"], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") and seen[0][0]["OnBuild"] is None, \
        seen[0][0]
    assert seen[0][4]["Cmd"] is None and seen[0][4]["Healthcheck"]["Test"] == ["NONE"], seen[0][4]
    for d in (eng, peer):
        name = _name("cs")
        d.docker("create", "--name", name, IMAGE, "true", check=True)
        p = d.docker("commit", "-c", "STOPSIGNAL USR2", name)
        d.docker("rm", name)
        assert (p.returncode, p.err.strip()) == (1, "Error response from daemon: stopsignal is not a valid change command")


def test_a_builds_run_steps_get_its_resources_as_dockerd(eng, peer, tmp_path):
    """`docker build --ulimit/-m/--cpu-shares/--shm-size`: the RUN steps' containers get them, as
    dockerd's classic builder gives them (berth ran its steps without: the engine's ulimits, no
    memory limit)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {IMAGE}\nRUN (ulimit -Sn; ulimit -Hn; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "/sys/fs/cgroup/cpu/cpu.shares; df -k /dev/shm | tail -1 | awk '{print $2}') > /r\n")
    seen = []
    for d in (eng, peer):
        tag = f"{_name('br')}:1"
        try:
            d.docker("build", "-q", "--no-cache", "--ulimit", "nofile=512:1024", "-m", "64m", "--cpu-shares", "512",
                     "--shm-size", "8m", "-t", tag, str(ctx), check=True)
            seen.append(d.docker("run", "--rm", "--network", "none", tag, "cat", "/r", check=True).out.split())
        finally:
            d.docker("rmi", tag)
    assert seen[0] == seen[1], seen
    assert seen[0] == ["512", "1024", str(64 << 20), "512", "8192"], seen


def test_diff_as_dockerd(eng, peer):
    """`docker diff` of a container that modified, added and deleted files: the same changes as
    dockerd's (berth's diff failed with a 500 on a file modified in place); dockerd's order
    follows Go's map order, so the lines are compared as sets."""
    import docker
    seen = []
    for d in (eng, peer):
        name = _name("df")
        try:
            d.docker("run", "--name", name, IMAGE, "sh", "-c",
                     "rm /bin/ls; mkdir /tmp/q; echo x > /tmp/q/f; echo y > /data/sub/file; ln -sf /x /data/link",
                     check=True)
            seen.append(sorted(d.docker("diff", name, check=True).out.splitlines()))
            # a container that changed nothing: null from the API, not []
            d.docker("create", "--name", name + "-0", IMAGE, "true", check=True)
            api = docker.APIClient(base_url=d.host, version="1.41")
            seen.append(api.diff(name + "-0"))
            api.close()
        finally:
            d.docker("rm", "-f", name, name + "-0")
    assert seen[0] == seen[2] and seen[1] is None and seen[3] is None, seen
    assert {"C /data/sub/file", "D /bin/ls", "A /tmp/q/f", "C /data/link"} <= set(seen[0]), seen


def test_ps_order_and_last_as_dockerd(eng, peer):
    """Containers made within one second list newest first, as dockerd's (berth sorted by whole
    seconds and kept the oldest first); `ps -n N` and `-l` are the last made whatever their
    state, running or not (berth applied them to the running ones alone)."""
    seen = []
    for d in (eng, peer):
        tag = _name("ord")
        names = [f"{tag}-{i}" for i in range(3)]
        try:
            d.docker("run", "-d", "--name", names[0], IMAGE, "sleep", "60", check=True)
            d.docker("run", "--name", names[1], IMAGE, "true", check=True)
            d.docker("create", "--name", names[2], IMAGE, "true", check=True)
            got = []
            for args in (["-a"], ["-n", "2"], ["-l"], ["-a", "--filter", f"name={tag}"]):
                out = d.docker("ps", *args, "--format", "{{.Names}}", check=True).out.split()
                got.append([n.replace(tag, "<t>") for n in out if n.startswith(tag)])
            seen.append(got)
        finally:
            d.docker("rm", "-f", *names)
    assert seen[0] == seen[1], seen
    assert seen[0][1] == ["<t>-2", "<t>-1"] and seen[0][2] == ["<t>-2"], seen


def test_volume_create_refusals_as_dockerd(eng, peer):
    """`docker volume create` refuses in dockerd's words, which name the operation and the volume
    (`create <name>: ...`)."""
    seen = []
    name = _name("vc")
    for d in (eng, peer):
        got = []
        for opts in (["--driver", "bogus"], ["-o", "type=tmpfs"], ["-o", "device=/x"], ["-o", "bogus=1"],
                     ["--driver", "bogus", "-o", "type=tmpfs"]):
            p = d.docker("volume", "create", *opts, name)
            got.append((p.returncode, p.out, p.err.strip()))
        for short in (["x"], ["--driver", "bogus", "x"]):  # the driver is looked up before the name is checked
            p = d.docker("volume", "create", *short)
            got.append((p.returncode, p.out, p.err.strip()))
        d.docker("volume", "rm", name)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0][0][2].startswith(f"Error response from daemon: create {name}: error looking up"), seen


def test_a_local_volume_that_cannot_mount_fails_the_run_as_dockerd(eng, peer, tmp_path):
    """A local volume with mount options whose mount fails (a bind of a missing directory, a
    tmpfs option the kernel refuses): the run fails in dockerd's words (moby's mount error: the
    flags in hex, the data, Go's errno text) and with the docker CLI's exit code for a missing
    file (127; berth's text had said "No such file or directory", so 125)."""
    seen = []
    for d in (eng, peer):
        got = []
        for vol, opts in (("vm-bind", ["-o", "type=none", "-o", "o=bind", "-o", f"device={tmp_path}/missing"]),
                          ("vm-tmpfs", ["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=bogus,noexec"])):
            d.docker("volume", "create", *opts, vol, check=True)
            p = d.docker("run", "--rm", "--network", "none", "-v", f"{vol}:/v", IMAGE, "true")
            err = _daemon_error(p)
            got.append((p.returncode, re.sub(r"'[^']*/volumes/(default/)?", "'<root>/", err.split(": mount ")[0]),
                        err.split(": mount ")[-1].split(":", 1)[0].startswith(f"{tmp_path}/missing" if vol == "vm-bind"
                                                                             else "tmpfs"),
                        re.sub(r".*/_data", "", err.split(": mount ")[-1])))
            d.docker("volume", "rm", vol, check=True)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == (127, "docker: Error response from daemon: error while mounting volume '<root>/vm-bind/_data': "
                                "failed to mount local volume", True, ", flags: 0x1000: no such file or directory"), seen


def test_cp_of_an_empty_archive_as_dockerd(eng, peer):
    """`docker cp - c:/dir` given no bytes at all extracts nothing and succeeds, as dockerd's
    (berth refused it: `invalid tar archive: empty file`); bytes that are no tar are refused."""
    seen = []
    for d in (eng, peer):
        name = _name("cpe")
        try:
            d.docker("create", "--name", name, IMAGE, "true", check=True)
            a = d.docker("cp", "-", f"{name}:/tmp", input=b"")
            b = d.docker("cp", "-", f"{name}:/tmp", input=b"not a tar archive" * 64)
            seen.append((a.returncode, a.out, a.err, b.returncode))
        finally:
            d.docker("rm", "-f", name)
    assert seen[0] == seen[1] == (0, "", "", 1), seen


def test_user_network_ipam_aliases_and_dns_as_dockerd(eng, peer):
    """On a user-defined network, side by side with dockerd 20.10: the IPAM config inspect shows
    (a --subnet without --gateway has no Gateway there), an address outside the subnets in
    dockerd's words, the short container ID among a container's Aliases for API versions before
    1.45 (as dockerd 20.10's 1.41), and the embedded DNS answering without the authoritative flag
    (busybox's nslookup says "Non-authoritative answer")."""
    docker = pytest.importorskip("docker")
    seen = []
    tag = uuid.uuid4().hex[:6]
    third = random.randint(0, 200)
    for d in (eng, peer):
        nets = {f"{tag}a": ["--subnet", f"10.97.{third}.0/24"],
                f"{tag}b": ["--subnet", f"10.97.{third + 1}.0/24", "--gateway", f"10.97.{third + 1}.254"]}
        name = _name("al")
        got = []
        try:
            for n, opts in nets.items():
                d.docker("network", "create", *opts, n, check=True)
                got.append(json.loads(d.docker("network", "inspect", n, check=True).out)[0]["IPAM"]["Config"])
            a = list(nets)[0]
            d.docker("run", "-d", "--name", name, "--network", a, "--network-alias", "al1", IMAGE, "sleep", "60",
                     check=True)
            import docker
            api = docker.APIClient(base_url=d.host, version="1.41")
            info = api.inspect_container(name)
            api.close()
            got.append(info["NetworkSettings"]["Networks"][a]["Aliases"] == ["al1", info["Id"][:12]])
            p = d.docker("run", "--rm", "--network", a, "--ip", "10.96.0.9", IMAGE, "true")
            got.append((p.returncode, p.err.replace("10.96.0.9", "<ip>")))
            p = d.docker("run", "--rm", "--network", a, IMAGE, "nslookup", "al1")
            got.append((p.returncode, "Non-authoritative answer:" in p.out, info["NetworkSettings"]["Networks"][a]["IPAddress"] in p.out))
        finally:
            d.docker("rm", "-f", name)
            d.docker("network", "rm", *nets)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == [{"Subnet": f"10.97.{third}.0/24"}] and seen[0][2] is True and seen[0][4] == (0, True, True), seen


def test_a_container_taken_off_none_and_connected_as_dockerd(eng, peer):
    """`--network none`, then `network disconnect none` and `network connect <net>` while it runs:
    it gets the network (an address, the embedded DNS in its resolv.conf, its name and address
    in its /etc/hosts), keeps it across a restart, and may go back on none once off the other,
    as dockerd allows. berthd refused the disconnect and the connect; nothing of it is left after
    its removal."""
    seen, offs = [], []
    third = random.randint(0, 200)
    for d in (eng, peer):
        net, peer_c, name = _name("nn"), _name("nnp"), _name("nnc")
        got = []
        since = int(time.time())
        try:
            d.docker("network", "create", "--subnet", f"10.94.{third}.0/24", net, check=True)
            d.docker("run", "-d", "--name", peer_c, "--network", net, IMAGE, "sleep", "60", check=True)
            d.docker("run", "-d", "--name", name, "--network", "none", "-h", "nnhost", IMAGE, "sleep", "60", check=True)
            for args in (["network", "connect", net, name], ["network", "disconnect", "none", name],
                         ["inspect", "-f", "{{json .NetworkSettings.Networks}} {{.HostConfig.NetworkMode}}", name],
                         ["network", "connect", net, name],
                         ["exec", name, "sh", "-c", "ip -o -4 addr show eth0 | awk '{print $4}'; grep -v '^#' "
                          "/etc/resolv.conf; grep nnhost /etc/hosts; ping -c1 -W2 " + peer_c + " >/dev/null && echo ok"],
                         ["restart", "-t", "0", name],
                         ["exec", name, "sh", "-c", "ip -o -4 addr show eth0 | awk '{print $4}'"],
                         ["network", "disconnect", net, name], ["network", "connect", "none", name],
                         ["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", name]):
                p = d.docker(*args)
                got.append((p.returncode, p.out.strip().replace(name, "<c>"), _daemon_error(p).replace(name, "<c>")))
            cid = _inspect(d, name)["Id"]
            off = d.docker("run", "-d", "--name", name + "-off", "--network", "none", IMAGE, "sleep", "60",
                           check=True).out.strip()
            d.docker("network", "disconnect", "none", off, check=True)
            d.docker("rm", "-f", off, check=True)
        finally:
            d.docker("rm", "-f", name, peer_c, name + "-off")
            d.docker("network", "rm", net)
        # its network events, each told once (dockerd tells some disconnects twice): the last is
        # its die's off none, none after it was taken off none (berthd told one then too)
        time.sleep(1.1)
        evs = [e.split(" ", 1)[1] for e in d.docker(
            "events", "--since", str(since), "--until", str(int(time.time())), "--filter", "type=network", "--format",
            "{{.Actor.Attributes.container}} {{.Action}} {{.Actor.Attributes.name}}").out.split("\n") if e.startswith(cid)]
        got.append([e.replace(net, "<net>") for i, e in enumerate(evs) if e and (i == 0 or e != evs[i - 1])])
        offs.append([e.split(" ", 1)[1] for e in d.docker(
            "events", "--since", str(since), "--until", str(int(time.time())), "--filter", "type=network", "--format",
            "{{.Actor.Attributes.container}} {{.Action}} {{.Actor.Attributes.name}}").out.split("\n") if e.startswith(off)])
        seen.append(got)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][-1] == ["connect none", "disconnect none", "connect <net>", "disconnect <net>", "connect <net>",
                           "disconnect <net>", "connect none", "disconnect none"], seen[0][-1]
    # one taken off none and removed: its die on no network tells nothing (berthd told a disconnect
    # from none again; dockerd tells the disconnect itself twice)
    assert offs[0] == ["connect none", "disconnect none"] and offs[1][:2] == offs[0] and \
        set(offs[1][2:]) <= {"disconnect none"}, offs
    assert seen[0][4][1].split("\n") == [f"10.94.{third}.3/24", "nameserver 127.0.0.11", "options ndots:0",
                                         f"10.94.{third}.3\tnnhost", "ok"], seen[0][4]
    assert seen[0][9][1] == "none", seen[0]
    assert not os.path.exists(os.path.join(eng.state, "netns", cid))


def test_the_first_addresses_of_an_ip_range_as_dockerd(eng, peer):
    """--ip-range: the first containers get the range's first addresses, its own network
    address included when that is not the subnet's (10.x.y.128/25 in a /24: .128, then .129),
    the subnet's network address never (a range at the subnet's start: .1 first). berth started
    a range one address in."""
    seen = []
    third = random.randint(0, 200)
    for d in (eng, peer):
        got = []
        for i, (rng, gw) in enumerate((("128/25", "254"), ("0/25", "254"), ("64/26", "1"))):
            net, names = f"ipr-{uuid.uuid4().hex[:6]}", []
            d.docker("network", "create", "--subnet", f"10.98.{third + i}.0/24", "--gateway", f"10.98.{third + i}.{gw}",
                     "--ip-range", f"10.98.{third + i}.{rng}", net, check=True)
            try:
                for _ in range(2):
                    names.append(_name("ipr"))
                    d.docker("run", "-d", "--name", names[-1], "--network", net, IMAGE, "sleep", "60", check=True)
                got.append([d.docker("inspect", "-f", "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % net,
                                     n, check=True).out.strip() for n in names])
            finally:
                d.docker("rm", "-f", *names)
                d.docker("network", "rm", net)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == [f"10.98.{third}.128", f"10.98.{third}.129"], seen


def test_a_network_hands_out_its_lowest_free_address_as_dockerd(eng, peer):
    """Addresses on a user-defined network as libnetwork hands them out: the lowest free one, so
    a container removed leaves its address to the next, and one stopped and started again (or
    restarted) has its address back. berth (host-local) went on after the last address it gave:
    every start took a new one."""
    seen = []
    third = random.randint(0, 200)
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    for d in (eng, peer):
        net, tag = f"lf-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
        a, b, c, e = (f"lf-{x}-{tag}" for x in "abce")
        got = []
        d.docker("network", "create", "--subnet", f"10.99.{third}.0/24", net, check=True)
        try:
            for n in (a, b, c):
                d.docker("run", "-d", "--name", n, "--network", net, IMAGE, "sleep", "60", check=True)
            d.docker("rm", "-f", b, check=True)
            d.docker("run", "-d", "--name", e, "--network", net, IMAGE, "sleep", "60", check=True)
            got.append(d.docker("inspect", "-f", fmt, a, c, e, check=True).out.split())
            d.docker("stop", "-t", "0", a, check=True)
            d.docker("start", a, check=True)
            d.docker("restart", "-t", "0", c, check=True)
            got.append(d.docker("inspect", "-f", fmt, a, c, e, check=True).out.split())
        finally:
            d.docker("rm", "-f", a, b, c, e)
            d.docker("network", "rm", net)
        seen.append(got)
    assert seen[0] == seen[1], seen
    want = [f"10.99.{third}.{i}" for i in (2, 4, 3)]
    assert seen[0] == [want, want], seen


def test_last_tag_time_as_dockerd(eng, peer, tmp_path):
    """An image's Metadata.LastTagTime as dockerd keeps it, with the image: unset for an image only
    loaded, set by a tag (for the image, whichever of its names is asked), a commit and an
    import, and kept when a name goes to another image and comes back by a load (berth gave
    every image the time its name record last changed)."""
    seen = []
    for d in (eng, peer):
        tag = _name("lt")
        src, com, other = f"{tag}-src:1", f"{tag}-com:1", f"{tag}-other:1"
        cname = _name("ltc")
        archive = str(tmp_path / f"{d is eng}.tar")

        def ltt(ref):
            out = d.docker("image", "inspect", "-f", "{{.Metadata.LastTagTime}}", ref, check=True).out.strip()
            return "unset" if out.startswith("0001-01-01") else "set"
        got = []
        try:
            d.docker("load", "-i", os.path.join(DATA, "hello-world.docker.tar"), check=True)
            got.append(ltt("hello-world:latest"))  # loaded only
            d.docker("tag", IMAGE, src, check=True)
            d.docker("rmi", src, check=True)
            got.append(ltt(IMAGE))  # tagged once: the image has a time now
            d.docker("run", "--name", cname, IMAGE, "true", check=True)
            d.docker("commit", cname, com, check=True)
            got.append(ltt(com))
            d.docker("save", "-o", archive, com, check=True)
            d.docker("tag", IMAGE, com, check=True)  # the name goes to another image...
            d.docker("load", "-i", archive, check=True)  # ...and comes back by a load
            got.append(ltt(com))
            d.docker("import", archive, other, check=True)
            got.append(ltt(other))
        finally:
            d.docker("rm", "-f", cname)
            d.docker("rmi", "-f", com, other)
        seen.append(got)
    assert seen[0] == seen[1] == ["unset", "set", "set", "set", "set"], seen


def test_oom_kill_disable_as_dockerd(eng, peer):
    """--oom-kill-disable is applied (cgroup v1's memory.oom_control), with dockerd's warning when
    no memory limit comes with it (berth refused the option)."""
    if not os.path.exists("/sys/fs/cgroup/memory/memory.oom_control"):
        pytest.skip("no cgroup v1 memory controller: dockerd discards the option here")
    seen = []
    for d in (eng, peer):
        got = []
        for opts in (["--oom-kill-disable"], ["--oom-kill-disable", "-m", "20m"], ["-m", "20m"]):
            p = d.docker("run", "--rm", *opts, IMAGE, "grep", "oom_kill_disable", "/sys/fs/cgroup/memory/memory.oom_control")
            got.append((p.returncode, p.out, p.err))
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert [g[1] for g in seen[0]] == ["oom_kill_disable 1\n", "oom_kill_disable 1\n", "oom_kill_disable 0\n"], seen
    assert "OOM killer is disabled for the container, but no memory limit is set" in seen[0][0][2]


def test_container_prune_reclaims_what_dockerd_counts(eng, peer):
    """`container prune`'s reclaimed space is the removed containers' written files (their SizeRw),
    as dockerd counts it: 0 B for one that wrote nothing, the file's size for one that wrote 5000
    bytes (berth counted the blocks of its directory: 20.48 kB for nothing)."""
    seen = []
    for d in (eng, peer):
        label = f"pr={_name('cp')}"
        got = []
        for cmd in ("true", "head -c 5000 /dev/zero > /f"):
            d.docker("run", "--label", label, IMAGE, "sh", "-c", cmd, check=True)
            p = d.docker("container", "prune", "-f", "--filter", f"label={label}", check=True)
            got.append(p.out.strip().splitlines()[-1])
        seen.append(got)
    assert seen[0] == seen[1] == ["Total reclaimed space: 0B", "Total reclaimed space: 5kB"], seen


def test_api_141_image_and_df_shapes_as_dockerd(eng, peer):
    """Through API 1.41, as dockerd 20.10 answers: an image without a variant has no `Variant`
    key (omitted when empty), and /system/df gives `BuilderSize` beside the build cache."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        api = docker.APIClient(base_url=d.host, version="1.41")
        try:
            img, df = api.inspect_image(IMAGE), api.df()
        finally:
            api.close()
        seen.append(("Variant" in img, "BuilderSize" in df, sorted(k for k in df if k != "BuilderSize")))
    assert seen[0] == seen[1], seen
    assert seen[0][:2] == (False, True), seen


def test_one_character_names_are_refused_as_dockerd(eng, peer):
    """dockerd's container names need two characters at least ([a-zA-Z0-9][a-zA-Z0-9_.-]+), at
    create and at rename, in its words."""
    outs = []
    for d in (eng, peer):
        name = _name("nm")
        try:
            p = d.docker("create", "--name", "x", IMAGE, "true")
            r = d.docker("create", "--name", name, IMAGE, "true")
            q = d.docker("rename", name, "y")
            outs.append((p.returncode, _daemon_error(p), r.returncode, q.returncode, _daemon_error(q)))
        finally:
            d.docker("rm", "-f", name)
    assert outs[0] == outs[1], outs
    assert outs[0][:4] == (1, "Error response from daemon: Invalid container name (x), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed", 0, 1), outs


def test_inspect_records_masked_paths_and_nulls_as_dockerd(eng, peer):
    """dockerd's HostConfig after a create: the default masked and read-only /proc paths listed
    (berth's masked list has dockerd 20.10's and two more: /proc/interrupts and the powercap
    class, as newer dockerd), none for a privileged container; MemorySwappiness and PidsLimit null
    when not given; no Config.StopSignal when neither the create nor the image gives one."""
    got = {}
    for d in (eng, peer):
        names = [_name("hc"), _name("hcp")]
        try:
            d.docker("create", "--name", names[0], IMAGE, "true", check=True)
            d.docker("create", "--name", names[1], "--privileged", IMAGE, "true", check=True)
            got[d] = [_inspect(d, n)["HostConfig"] for n in names]
            assert "StopSignal" not in _inspect(d, names[0])["Config"]  # none given, none in the image
        finally:
            d.docker("rm", "-f", *names)
    (b, bp), (k, kp) = got[eng], got[peer]
    assert set(k["MaskedPaths"]) <= set(b["MaskedPaths"]) and b["ReadonlyPaths"] == k["ReadonlyPaths"]
    assert set(b["MaskedPaths"]) - set(k["MaskedPaths"]) <= {"/proc/interrupts", "/sys/devices/virtual/powercap"}
    for key in ("MemorySwappiness", "PidsLimit"):
        assert b[key] is None and k[key] is None, key
    assert bp["MaskedPaths"] is None and kp["MaskedPaths"] is None and bp["ReadonlyPaths"] == kp["ReadonlyPaths"]
    out = eng.docker("run", "--rm", IMAGE, "cat", "/proc/interrupts").out  # still masked
    assert out == "", out


def test_kill_exec_and_rename_errors_as_dockerd(eng, peer):
    """dockerd's words for a kill of a missing or stopped container, an exec into a stopped one and
    a rename onto a taken name (side by side). `kill -s 99`: dockerd parses any number, finds the
    container, then refuses it (berth said `Invalid signal: 99` before looking for the container)."""
    outs = []
    for d in (eng, peer):
        run, stopped = _name("kr"), _name("ks")
        try:
            d.docker("run", "-d", "--name", run, IMAGE, "sleep", "60", check=True)
            d.docker("create", "--name", stopped, IMAGE, "true", check=True)
            ids = [d.docker("inspect", "-f", "{{.Id}}", n).out.strip() for n in (run, stopped)]
            got = []
            for args in (["kill", "nosuch-kr"], ["kill", stopped], ["exec", stopped, "true"], ["rename", run, stopped],
                         ["kill", "-s", "99", run], ["kill", "-s", "65", stopped], ["kill", "-s", "99", "nosuch-kr"],
                         ["kill", "-s", "64", run]):
                p = d.docker(*args)
                got.append((p.returncode, _daemon_error(p, ids).replace(run, "<run>").replace(stopped, "<stopped>")))
            outs.append(got)
        finally:
            d.docker("rm", "-f", run, stopped)
    assert outs[0] == outs[1], outs
    assert outs[0][4] == (1, "Error response from daemon: Cannot kill container: <run>: The linux daemon does not "
                             "support signal 99"), outs


def test_an_exec_started_twice_and_resized_after_its_end_as_dockerd(eng, peer):
    """An exec's start when it runs or has run is a 409 in dockerd's words ("Error: Exec command
    <id> is already running" / "has already run"); a resize after its end a 404 (berth: 409 with
    words of its own, and a 200 for the resize)."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        name = _name("ex2")
        c = docker.APIClient(base_url=d.host, version="1.41")
        got = []
        try:
            d.docker("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "60", check=True)
            for cmd, pause in ((["sleep", "3"], 0), (["true"], 1)):
                eid = c.exec_create(name, cmd)["Id"]
                c.exec_start(eid, detach=True)
                time.sleep(pause)
                for call in (lambda: c.exec_start(eid, detach=True), lambda: c.exec_resize(eid, 10, 20)):
                    try:
                        call()
                        got.append((200, ""))
                    except docker.errors.APIError as e:
                        got.append((e.status_code, str(e.explanation).replace(eid, "<id>")))
        finally:
            c.close()
            d.docker("rm", "-f", name)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0] == [(409, "Error: Exec command <id> is already running"), (200, ""),
                       (409, "Error: Exec command <id> has already run"), (404, "no such exec")], seen


def _tar_headers(data, under):
    """(name, raw header block) of the tar's entries under `under` (PAX records skipped), read
    from the raw blocks (tarfile would hide how the fields are written)."""
    off = 0
    while off + 512 <= len(data):
        blk = data[off:off + 512]
        if not blk.strip(b"\0"):
            break
        name = blk[:100].rstrip(b"\0").decode()
        size = int(blk[124:136].rstrip(b"\0 ") or b"0", 8)
        if blk[156:157] not in (b"x", b"g") and (name + "/").startswith(under):
            yield name.rstrip("/"), blk
        off += 512 + -(-size // 512) * 512


def _tar_modes(data, under):
    """(name, the mode field as written, typeflag) of the tar's entries under `under`."""
    return sorted((name, blk[100:108].rstrip(b"\0").decode(), blk[156:157].decode())
                  for name, blk in _tar_headers(data, under))


def test_cp_of_a_running_containers_root_and_its_owners_as_dockerd(eng, peer, tmp_path):
    """`docker cp` and a running container, as dockerd: its whole root copies out (/proc and /sys
    as the empty directories they are on its root filesystem), a path below /proc is not found,
    and what is copied in keeps the archive's owners with or without -a (a container without a
    user of its own). berth walked into the container's /proc (the copy broke off: unexpected
    EOF), copied /proc/1/status as an empty file and gave root what was copied in without -a."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f\n")
    for p in (src, src / "f"):
        os.chown(p, 1234, 5678)
    seen = []
    for d in (eng, peer):
        name = _name("cpr")
        got = []
        try:
            d.docker("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "60", check=True)
            p = d.docker("cp", f"{name}:/", "-")
            import io
            import tarfile
            with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tf:
                names = tf.getnames()
            got.append((p.returncode, sorted(n for n in names if n.strip("/").split("/")[0] in ("proc", "sys")),
                        "/etc/passwd" in names or "etc/passwd" in names))
            p = d.docker("cp", f"{name}:/proc/1/status", str(tmp_path / "status"))
            got.append((p.returncode, _daemon_error(p).replace(name, "<name>")))
            if d is eng:  # (dockerd 20.10 breaks off a copy of /proc/: unexpected EOF)
                p = d.docker("cp", f"{name}:/proc/", "-")
                with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tf:
                    assert (p.returncode, tf.getnames()) == (0, ["proc"]), p.err
            d.docker("cp", str(src), f"{name}:/in1", check=True)
            d.docker("cp", "-a", str(src), f"{name}:/in2", check=True)
            got.append(d.docker("exec", name, "sh", "-c", "stat -c '%u:%g %n' /in1 /in1/f /in2 /in2/f",
                                check=True).out.split("\n"))
        finally:
            d.docker("rm", "-f", name)
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == (0, ["/proc", "/sys"], True) or seen[0][0][1] == ["proc", "sys"], seen
    assert seen[0][1] == (1, f"Error response from daemon: Could not find the file /proc/1/status in container <name>"), seen
    assert seen[0][2][:4] == ["1234:5678 /in1", "1234:5678 /in1/f", "1234:5678 /in2", "1234:5678 /in2/f"], seen


def _three_archives(d, prefix, script):
    """The tars of a container that ran script: docker cp's of /d, export's, and the top layer of
    its commit (as saved; berth saves the layer blob as stored, gzip, dockerd 20.10 the tar)."""
    import gzip
    import io
    import tarfile
    name = _name(prefix)
    try:
        d.docker("run", "--name", name, "--network", "none", IMAGE, "sh", "-c", script, check=True)
        cp = d.docker("cp", f"{name}:/d", "-", check=True).stdout
        export = d.docker("export", name, check=True).stdout
        d.docker("commit", name, f"{name}:1", check=True)
        saved = tarfile.open(fileobj=io.BytesIO(d.docker("save", f"{name}:1", check=True).stdout))
        layer = saved.extractfile(json.load(saved.extractfile("manifest.json"))[0]["Layers"][-1]).read()
        return cp, export, gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
    finally:
        d.docker("rm", "-f", name)
        d.docker("rmi", f"{name}:1")


def test_archives_write_file_type_bits_in_modes_as_dockerd(eng, peer):
    """docker cp's and export's tars and a committed layer carry the file's type bits in each
    header's mode field beside the permissions (0100644, 040755, 0120777: moby's archive puts back
    what Go 1.9's archive/tar dropped), a whiteout and an opaque marker none, side by side with
    dockerd 20.10."""
    script = ("mkdir -p /d/e && echo x > /d/f && chmod 4750 /d/f && ln -s f /d/l && ln /d/f /d/h && mkfifo /d/p"
              " && rm /data/link && rm -rf /data/sub && mkdir /data/sub && touch /data/sub/n")
    seen = []
    for d in (eng, peer):
        cp, export, layer = _three_archives(d, "tar", script)
        seen.append((_tar_modes(cp, "d/"), _tar_modes(export, "d/"), _tar_modes(layer, "d/"), _tar_modes(layer, "data/")))
    assert seen[0] == seen[1], seen
    cp = dict((n, m) for n, m, _ in seen[0][0])
    assert cp["d"] == "0040755" and cp["d/f"] == "0104750" and cp["d/l"] == "0120777" and cp["d/p"] == "0010644", cp


def test_archives_write_device_numbers_as_dockerd(eng, peer):
    """Every header of docker cp's and export's tars and of a committed layer has its device
    numbers written (octal zeros but for a device's), as Go's archive/tar writes them, side by
    side with dockerd 20.10; berth left them blank (tarfile's way), so the same files made other
    bytes, and another layer digest."""
    script = "mkdir -p /d/e && echo x > /d/f && ln -s f /d/l && mkfifo /d/p && mknod /d/c c 1 3 && rm /data/link"

    def devices(data, under):
        return sorted((name, blk[329:337], blk[337:345]) for name, blk in _tar_headers(data, under))
    seen = []
    for d in (eng, peer):
        cp, export, layer = _three_archives(d, "dev", script)
        seen.append((devices(cp, "d/"), devices(export, "d/"), devices(layer, "d/"), devices(layer, "data/")))
    assert seen[0] == seen[1], seen
    cp = {n: (major, minor) for n, major, minor in seen[0][0]}
    zero = b"0000000\0"
    assert cp["d/f"] == cp["d/e"] == cp["d/l"] == cp["d/p"] == (zero, zero) and cp["d/c"] == (b"0000001\0", b"0000003\0")
    assert all(x[1:] == (zero, zero) for x in seen[0][3])  # the whiteout's too


def test_archives_name_the_owners_as_dockerd(eng, peer):
    """The user and group names in the headers of docker cp's and export's tars (those the
    container's /etc/passwd and /etc/group give, with what the host's name service adds there:
    dockerd makes them in the container's root) and of a committed layer (the host's: dockerd
    makes it in its own process), side by side with dockerd 20.10. berth wrote none."""
    import io
    import tarfile
    script = ("mkdir /d && for f in a b c e; do echo $f > /d/$f; done && ln -s a /d/l && chown 1000:1000 /d/a"
              " && chown 4242:0 /d/b && chown 65534:65534 /d/c && echo 'u7:x:7:7::/:/bin/sh' >> /etc/passwd"
              " && echo 'g7:x:7:' > /etc/group && chown 7:7 /d/e")

    def names(data, prefix):
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            return sorted((m.name.rstrip("/"), m.uname, m.gname) for m in tf if m.name.startswith(prefix))
    seen = []
    for d in (eng, peer):
        cp, export, layer = _three_archives(d, "own", script)
        seen.append((names(cp, "d"), names(export, "d/"), names(layer, "d")))
    assert seen[0] == seen[1], seen
    cp = {n: (u, g) for n, u, g in seen[0][0]}
    assert cp["d"] == ("root", "root") and cp["d/e"] == ("u7", "g7") and cp["d/b"] == ("", "root"), cp


def _side_by_side(eng, peer, cases, cleanup, output_of=()):
    """Each docker command of cases against berthd, then dockerd: (command, exit code, the daemon's
    error line, its output where the command's verb is in output_of); cleanup(d) after each."""
    seen = []
    for d in (eng, peer):
        out = []
        try:
            for c in cases:
                p = d.docker(*c)
                ids = [x for x in p.out.split() if len(x) == 64]
                out.append((c, p.returncode, _daemon_error(p, ids), p.out if c[0] in output_of else ""))
        finally:
            cleanup(d)
        seen.append(out)
    return seen


def test_network_errors_as_dockerd(eng, peer):
    """docker network create/connect/disconnect/rm refusals in dockerd 20.10's words, side by side:
    unknown driver, a bad or overlapping subnet (IPv4 and IPv6), a predefined name, a network in use,
    the none/host/shared-namespace conflicts, --ip on a network whose subnet came from the pool,
    a second disconnect (daemon's words for a created container, libnetwork's for a running one);
    connecting a created container to its own network again is a no-op in both."""
    sfx = uuid.uuid4().hex[:6]
    n1, n3, n6 = f"pn1-{sfx}", f"pn3-{sfx}", f"pn6-{sfx}"
    r1, r2, r3, c4 = (f"{x}-{sfx}" for x in ("r1", "r2", "r3", "c4"))
    cases = [
        ["network", "create", n1], ["network", "create", "--subnet", "10.251.7.0/24", n3],
        ["network", "create", "--driver", "nope", f"px-{sfx}"],
        ["network", "create", "--subnet", "10.251.7.0/24", f"py-{sfx}"],
        ["network", "create", "--subnet", "bogus", f"pz-{sfx}"],
        ["network", "create", "--ipv6", "--subnet", "fd00:7:7::/64", n6],
        ["network", "create", "--ipv6", "--subnet", "fd00:7:7::/64", f"pw-{sfx}"],
        ["network", "create", "--ipv6", "--subnet", "fd00::/64x", f"pv-{sfx}"],
        ["network", "create", "host"], ["network", "create", "none"],
        ["run", "-d", "--name", r1, "--network", n1, IMAGE, "sleep", "60"],
        ["run", "-d", "--name", r2, "--network", "none", IMAGE, "sleep", "60"],
        ["run", "-d", "--name", r3, "--network", "host", IMAGE, "sleep", "60"],
        ["create", "--name", c4, "--network", n1, IMAGE, "sleep", "60"],
        ["network", "rm", n1],
        ["network", "connect", "none", r1], ["network", "connect", "host", r1], ["network", "connect", n3, r2],
        ["network", "connect", n3, r3], ["network", "connect", "none", c4], ["network", "connect", n1, c4],
        ["network", "connect", n1, r1], ["network", "connect", "--ip", "10.99.0.5", n1, r1],
        ["network", "disconnect", "host", r3], ["network", "disconnect", n3, c4], ["network", "disconnect", n3, r1],
    ]
    def cleanup(d):
        d.docker("rm", "-f", r1, r2, r3, c4)
        d.docker("network", "rm", n1, n3, n6)
    seen = _side_by_side(eng, peer, cases, cleanup)  # (ids in the errors: <id>)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]


def test_filters_logs_signals_and_resources_as_dockerd(eng, peer):
    """The same refusals and answers as dockerd 20.10, side by side: list and prune filters it
    checks before listing (unknown keys, status/health/is-task/exited/dangling values, a pattern
    path.Match cannot read, prune's until), logs' lenient --tail and --details, an unknown kill
    signal, a --change that is not one, an exec into a paused container, the CPU limits it refuses."""
    sfx = uuid.uuid4().hex[:6]
    lg, pz, nl = f"lg-{sfx}", f"pz-{sfx}", f"nl-{sfx}"
    cases = [
        ["run", "--name", nl, "--log-driver", "none", IMAGE, "sh", "-c", "echo out"], ["logs", nl],  # nothing kept
        ["inspect", "--format", "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}|", nl],
        ["ps", "-a", "--filter", "bogus=1"], ["ps", "-a", "--filter", "status=bogus"],
        ["ps", "-a", "--filter", "health=bogus"], ["ps", "-a", "--filter", "is-task=maybe"],
        ["ps", "-a", "--filter", "exited=x"], ["images", "--filter", "bogus=1"],
        ["images", "--filter", "dangling=maybe"], ["images", "--filter", "reference=[["],
        ["volume", "ls", "--filter", "bogus=1"], ["volume", "ls", "--filter", "dangling=maybe"],
        ["network", "ls", "--filter", "bogus=1"], ["network", "ls", "--filter", "dangling=maybe"],
        ["network", "prune", "-f", "--filter", "until=bogus"], ["volume", "prune", "-f", "--filter", "bogus=1"],
        ["run", "--rm", "--cpus", "9999", IMAGE, "true"], ["run", "--rm", "--cpu-quota", "500", IMAGE, "true"],
        ["run", "--rm", "--cpus", "1", "--cpu-quota", "50000", IMAGE, "true"],
        ["run", "--rm", "--cpus", "1", "--cpu-period", "50000", IMAGE, "true"],
        ["run", "--rm", "--log-opt", "bogus=1", IMAGE, "true"], ["run", "--rm", "--log-opt", "max-size=bogus", IMAGE, "true"],
        ["run", "--rm", "--log-opt", "max-size=1.5m", "--log-opt", "max-file=2", "--stop-timeout", "-5", IMAGE, "true"],
        ["run", "--name", lg, IMAGE, "sh", "-c", "echo one; echo two"],
        ["logs", "--tail", "x", lg], ["logs", "-n", "-1", lg], ["logs", "--tail", "1", lg], ["logs", "--details", lg],
        ["commit", "--change", "BOGUS x", lg], ["commit", "--change", "RUN x", lg],
        ["run", "-d", "--name", pz, "--network", "none", IMAGE, "sleep", "60"],
        ["kill", "-s", "BOGUS", pz], ["kill", "-s", "0", pz], ["pause", pz], ["exec", pz, "true"], ["unpause", pz],
    ]
    seen = _side_by_side(eng, peer, cases, lambda d: d.docker("rm", "-f", lg, pz, nl), output_of=("logs", "inspect"))
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert [x for x in seen[0] if x[0][:2] == ["logs", "--details"]][0][3] == " one\n two\n"


def test_mount_specs_exec_cwd_and_top_errors_as_dockerd(eng, peer):
    """dockerd's (and runc's) words, side by side: a -v spec with too many parts, a destination with
    a mode but no source, a bind's nocopy, a volume's propagation, a tmpfs path that
    is not absolute or an option tmpfs does not take, a local volume's unknown option, an exec's
    working directory that is missing or relative, a ps option top's ps refuses."""
    sfx = uuid.uuid4().hex[:6]
    ex, vol = f"ex-{sfx}", f"vo-{sfx}"
    cases = [
        ["run", "--rm", "-v", "x:y:z:w", IMAGE, "true"], ["run", "--rm", "-v", ":/x", IMAGE, "true"],
        ["run", "--rm", "-v", "/x:ro", IMAGE, "true"], ["run", "--rm", "-v", "/x:nocopy", IMAGE, "true"],
        ["run", "--rm", "-v", "/tmp:/x:ro,nocopy", IMAGE, "true"], ["run", "--rm", "-v", f"{vol}:/x:rshared", IMAGE, "true"],
        ["run", "--rm", "--tmpfs", "relative", IMAGE, "true"], ["run", "--rm", "--tmpfs", "/x:bogus=1", IMAGE, "true"],
        ["run", "--rm", "--tmpfs", "/x:size=1m,noexec,mode=700", IMAGE, "true"],
        ["run", "--rm", "--mount", f"type=volume,dst=/x,volume-opt=a=b,src={vol}", IMAGE, "true"],
        ["volume", "create", "-o", "bogus=1", vol],
        ["run", "-d", "--name", ex, "--network", "none", IMAGE, "sleep", "60"],
        ["exec", "-w", "/nonexist", ex, "pwd"], ["exec", "-w", "relative", ex, "pwd"], ["top", ex, "-o", "bogus"],
    ]
    def cleanup(d):
        d.docker("rm", "-f", ex)
        d.docker("volume", "rm", vol)
    seen = _side_by_side(eng, peer, cases, cleanup, output_of=("exec",))
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]


def test_start_failures_workdir_and_entrypoint_reset_as_dockerd(eng, peer):
    """As dockerd 20.10 with runc, side by side: a start that fails says so in its shim's and runc's
    words (State.Error too), a file that is not executable or a directory is refused at the start
    (126), a working directory the image lacks is made (0755, root's), `--entrypoint ""` resets the
    entrypoint and takes nothing from the image (no command: refused at create)."""
    sfx = uuid.uuid4().hex[:6]
    names = [f"{x}-{sfx}" for x in ("s1", "s2", "s3", "w1", "e1", "e2")]
    s1, s2, s3, w1, e1, e2 = names
    fmt = "{{.State.Status}}|{{.State.ExitCode}}|{{.State.Error}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.Path}}|{{json .Args}}"
    cases = [
        ["create", "--name", s1, IMAGE, "/nonexist"], ["start", s1], ["inspect", "--format", fmt, s1],
        ["create", "--name", s2, IMAGE, "/etc/passwd"], ["start", s2], ["inspect", "--format", fmt, s2],
        ["create", "--name", s3, IMAGE, "/data"], ["start", s3],
        ["run", "--name", w1, "-u", "1234", "-w", "/new/dir", IMAGE, "sh", "-c", "pwd; stat -c '%a %u %g' ."],
        ["create", "--name", e1, "--entrypoint", "", IMAGE, "echo", "hi"], ["inspect", "--format", fmt, e1],
        ["start", "-a", e1], ["create", "--name", e2, "--entrypoint", "", IMAGE],
    ]
    seen = _side_by_side(eng, peer, cases, lambda d: d.docker("rm", "-f", *names), output_of=("inspect", "run", "start"))
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][8][3] == "/new/dir\n755 0 0\n" and seen[0][11][3] == "hi\n"


def _rootfs_paths(text):
    """A daemon's error with each daemon's own rootfs path and fd numbers made alike."""
    import re
    text = re.sub(r'[^\s"]*/root/containers/(?:[0-9a-f]{64}|<id>)/rootfs', "<rootfs>", text)   # berthd's
    text = re.sub(r'[^\s"]*/overlay2/(?:[0-9a-f]{64}|<id>)/merged', "<rootfs>", text)          # dockerd's
    return re.sub(r"/proc/self/fd/\d+", "/proc/self/fd/N", text)


def test_bind_consistency_modes_and_a_root_destination_as_dockerd(eng, peer, tmp_path):
    """-v's consistency modes (consistent, cached, delegated: nothing on Linux) are taken with the
    others, one at most, as dockerd's parser takes them (berth: "invalid mode"); a destination of
    / is refused in dockerd's words."""
    seen = []
    for d in (eng, peer):
        got = []
        for spec in (f"{tmp_path}:/h:cached", f"{tmp_path}:/h:delegated,ro", f"{tmp_path}:/h:consistent,z",
                     f"{tmp_path}:/h:cached,delegated", f"{tmp_path}:/", "vcm-x:/v:cached,nocopy"):
            p = d.docker("run", "--rm", "--network", "none", "-v", spec, IMAGE, "sh", "-c", "touch /h/x 2>/dev/null; echo $?")
            got.append((p.returncode, p.out.strip(), _daemon_error(p).replace(str(tmp_path), "<dir>")))
        d.docker("volume", "rm", "vcm-x")
        seen.append(got)
    assert seen[0] == seen[1], seen
    assert [g[:2] for g in seen[0][:4]] == [(0, "0"), (0, "1"), (0, "0"), (125, "")], seen
    assert seen[0][4][2] == ("docker: Error response from daemon: invalid volume specification: '<dir>:/': invalid "
                             "mount config for type \"bind\": invalid specification: destination can't be '/'"), seen


def test_bind_mount_failures_as_dockerd(eng, peer, tmp_path):
    """What dockerd 20.10 and its runc 1.1 say (side by side) of mounts they refuse: a file on a
    directory or the reverse (runc's words, then dockerd's hint), a bind below a read-only one,
    binds over or inside /proc (runc's checkProcMount), a tmpfs inside /proc (exit 127: the CLI's
    reading of "no such file or directory"), a shared or slave bind whose source's mount does not
    propagate, a working directory that is a file or lies below one; a container whose start
    failed so keeps dockerd's error and exit code. A file bound over /proc/cpuinfo (lxcfs) runs."""
    import subprocess
    d, f = tmp_path / "d", tmp_path / "f"
    (d / "sub").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    f.write_text("x\n")
    private = tmp_path / "private"
    private.mkdir()
    subprocess.run(["mount", "--bind", str(private), str(private)], check=True)
    try:
        subprocess.run(["mount", "--make-private", str(private)], check=True)
        cases = [["-v", f"{f}:/etc"], ["-v", f"{d}:/etc/passwd"], ["--mount", f"type=bind,src={f},dst=/etc"],
                 ["-v", f"{d}:/data:ro", "-v", f"{d / 'sub'}:/data/new"], ["-v", f"{d}:/proc"],
                 ["-v", f"{f}:/proc/foo"], ["--tmpfs", "/proc/foo"], ["-v", f"{private}:/x:shared"],
                 ["-v", f"{private}:/x:rslave"], ["-w", "/etc/passwd"], ["-w", "/etc/passwd/x"],
                 ["-v", f"{f}:/proc/cpuinfo:ro"], ["--tmpfs", "/etc/passwd"], ["-v", f"{tmp_path / 'dev'}:/dev"],
                 # sysctls are the runtime's to refuse, at the start
                 ["--sysctl", "net.ipv4.ip_forward=1", "--network", "host"], ["--sysctl", "kernel.shmmax=1000", "--ipc", "host"],
                 ["--sysctl", "net.ipv4.nonexistent=1"]]
        for flags in cases:
            ours, theirs = (x.docker("run", "--rm", *flags, IMAGE, "cat", "/proc/cpuinfo") for x in (eng, peer))
            assert (ours.returncode, _rootfs_paths(_daemon_error(ours))) == \
                   (theirs.returncode, _rootfs_paths(_daemon_error(theirs))), flags
            if flags[-1].endswith("/proc/cpuinfo:ro"):
                assert ours.returncode == 0 and ours.out == "x\n", ours.err
        name = f"mnt-{uuid.uuid4().hex[:8]}"
        seen = []
        for x in (eng, peer):
            try:
                x.docker("create", "--name", name, "-v", f"{f}:/etc", IMAGE, "true", check=True)
                assert x.docker("start", name).returncode != 0
                seen.append(_rootfs_paths(x.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Error}}", name).out))
            finally:
                x.docker("rm", "-f", name)
        assert seen[0] == seen[1] and seen[0].startswith("127 failed to create shim task:"), seen
        assert sorted(os.listdir(d)) == ["sub"]  # nothing made in the host's directory
    finally:
        subprocess.run(["umount", "-l", str(private)], capture_output=True)


def test_shared_bind_propagates_both_ways(eng, tmp_path):
    """-v src:dst:rshared on a shared mount: what a privileged container mounts there reaches the
    host, what the host mounts later reaches the container (the root's propagation is then
    shared, as dockerd sets it); :rslave only receives."""
    import subprocess
    src = tmp_path / "shared"
    (src / "back").mkdir(parents=True)
    (src / "later").mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    name = f"shr-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["mount", "--make-rshared", str(src)], check=True)
        eng.docker("run", "-d", "--name", name, "--privileged", "-v", f"{src}:/s:rshared", "-v", f"{src}:/r:rslave",
                   IMAGE, "sleep", "60", check=True)
        p = eng.docker("exec", name, "mount", "-t", "tmpfs", "-o", "size=1m", "fromctr", "/s/back")
        assert p.returncode == 0, p.err
        assert os.path.ismount(src / "back")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "fromhost", str(src / "later")], check=True)
        (src / "later" / "f").write_text("host\n")
        for where in ("/s", "/r"):
            assert eng.docker("exec", name, "cat", f"{where}/later/f").out == "host\n", where
        eng.docker("exec", name, "mount", "-t", "tmpfs", "-o", "size=1m", "slavectr", "/r/later")
        assert subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(src / "later")], capture_output=True,
                              text=True).stdout.split() == ["fromhost"]  # a slave's mount stays in the container
    finally:
        eng.docker("rm", "-f", name)
        for _ in range(6):
            if subprocess.run(["umount", "-l", str(src)], capture_output=True).returncode != 0:
                break


def test_info_has_dockerds_fields_with_the_hosts_support(eng, peer):
    """/info field by field as dockerd's on the same host: the cgroup limits it can set, IP
    forwarding and the bridge's netfilter calls (docker info's warnings), the plugins, the
    registry's loopback CIDR, the swarm's and the commits' shapes. berthd lacked 36 of them
    (clients that read MemoryLimit or SwapLimit took them as unsupported)."""
    docker = pytest.importorskip("docker")
    got = []
    for d in (eng, peer):
        c = docker.APIClient(base_url=d.host, version="1.41")
        try:
            got.append(c.info())
        finally:
            c.close()
    ours, theirs = got
    assert [k for k in theirs if k not in ours] == []
    assert [k for k in ours if k not in theirs] == ["Berth"]  # berth's own, last
    assert list(ours)[:-1] == [k for k in theirs if k in ours]  # dockerd's order
    same = ("MemoryLimit", "SwapLimit", "KernelMemory", "KernelMemoryTCP", "CpuCfsPeriod", "CpuCfsQuota",
            "CPUShares", "CPUSet", "PidsLimit", "IPv4Forwarding", "BridgeNfIptables", "BridgeNfIp6tables",
            "OomKillDisable", "Warnings", "CgroupVersion", "Isolation", "GenericResources", "NCPU", "MemTotal",
            "InitBinary")  # (--init's, mounted at /sbin/docker-init: berth's is tini-static)
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}
    for k, v in theirs.items():
        assert type(ours[k]) is type(v) or v is None or ours[k] is None, (k, ours[k], v)
    assert {k: type(v) for k, v in ours["Swarm"].items()} == {k: type(v) for k, v in theirs["Swarm"].items()}
    assert ours["RegistryConfig"]["InsecureRegistryCIDRs"][0] == theirs["RegistryConfig"]["InsecureRegistryCIDRs"][0]
    assert ours["Plugins"]["Volume"] == ["local"] and "bridge" in ours["Plugins"]["Network"]
    assert ours["LiveRestoreEnabled"] is True  # a container's shim is not berthd's child: containers outlive it


def test_security_opt_record_and_healthcheck_fields_as_dockerd(eng, peer):
    """dockerd records `label=disable` beside the create's security options for a container that
    shares the host's PIDs or IPC or is privileged, unless they have a label= one; its inspect
    leaves a healthcheck's fields out at zero (the Docker SDK sends them as null). berthd showed
    what the create sent, and the nulls."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        row = []
        for flags in (["--pid", "host"], ["--ipc", "host"], ["--privileged"], ["--pid", "host", "--security-opt",
                                                                                "no-new-privileges"], [],
                      ["--privileged", "--security-opt", "label=user:u"]):
            cid = d.docker("create", *flags, IMAGE, "true", check=True).out.strip()
            row.append((flags, d.docker("inspect", "-f", "{{json .HostConfig.SecurityOpt}}", cid).out.strip()))
            d.docker("rm", cid, check=True)
        c = docker.DockerClient(base_url=d.host, version="1.41")
        try:
            ct = c.containers.create(IMAGE, "true", healthcheck={"test": ["CMD", "true"], "interval": 10 ** 9,
                                                                 "retries": 2})
            row.append(ct.attrs["Config"]["Healthcheck"])
            ct.remove()
        finally:
            c.close()
        seen.append(row)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0][1] == '["label=disable"]' and seen[0][3][1] == '["no-new-privileges","label=disable"]'
    assert seen[0][4][1] == "null" and seen[0][5][1] == '["label=user:u"]'
    assert seen[0][-1] == {"Test": ["CMD", "true"], "Interval": 10 ** 9, "Retries": 2}


def test_a_containers_life_in_events_as_dockerd(eng, peer):
    """The events of a container's life through the Docker SDK, side by side with dockerd's: a
    named volume's create told again when a container takes it, the network connect and volume
    mount before the start, an exec's action (`exec_create: true ` ends in a space for a command
    without arguments), the stop after the die and after the network disconnect and volume
    unmount, the commit's tag and attributes, the image's untag and delete by its ID (a layer
    has no event), the volume's destroy with its driver. berthd told the stop before the die,
    no network or volume event of a run, and its image events by name."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        c = docker.APIClient(base_url=d.host, version="1.41")
        name, vol, img = _name("ev"), _name("evv"), _name("evimg")
        try:
            since = int(time.time()) - 1
            c.create_volume(vol)
            ct = c.create_container(IMAGE, ["sleep", "60"], name=name, labels={"x": "y"},
                                    host_config=c.create_host_config(network_mode="none", binds=[f"{vol}:/v"]))
            c.start(ct)
            c.exec_start(c.exec_create(ct, ["true"]))
            c.pause(ct)
            c.unpause(ct)
            c.kill(ct, "SIGUSR1")
            c.stop(ct, timeout=1)
            image_id = c.commit(ct, img, "t")["Id"]
            c.remove_container(ct)
            c.remove_volume(vol)
            c.remove_image(f"{img}:t")
            evs = list(c.events(since=since, until=int(time.time()) + 1, decode=True))
        finally:
            c.close()
        rows = []
        for e in evs:
            a = e.get("Actor", {}).get("Attributes", {})
            if a.get("name") not in (name, vol, f"{img}:t", image_id) and a.get("container") != ct["Id"] and \
                    e.get("Actor", {}).get("ID") != vol:
                continue  # another test's
            a = {k: str(v).replace(ct["Id"], "<id>").replace(image_id, "<image>").replace(name, "<name>")
                 .replace(vol, "<vol>").replace(img, "<img>") for k, v in a.items() if k != "execID"}
            actor = e.get("Actor", {}).get("ID", "")
            actor = "<net>" if e["Type"] == "network" else actor.replace(image_id, "<image>").replace(
                vol, "<vol>").replace(ct["Id"], "<id>")
            rows.append((e["Type"], e["Action"], actor, sorted(a.items())))
        seen.append(rows)
    assert seen[0] == seen[1], "berth:\n" + "\n".join(map(str, seen[0])) + "\ndockerd:\n" + "\n".join(map(str, seen[1]))
    actions = [r[1] for r in seen[0]]
    assert actions.index("die") < actions.index("stop") and "exec_create: true " in actions and \
        actions.count("create") == 3 and "mount" in actions and "unmount" in actions, actions


def test_events_since_and_until_to_the_nanosecond_as_dockerd(eng, peer):
    """/events compares since and until with each event's timeNano, as dockerd: an until of the
    current whole second (what `docker events --until 0s` sends) leaves out what happened since
    that second began; a since between two events keeps the second only. berthd compared whole
    seconds (time), so both kept every event of the second."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        c = docker.APIClient(base_url=d.host, version="1.41")
        names = [_name("evn") for _ in range(2)]
        try:
            for n in names:
                c.create_container(IMAGE, ["true"], name=n, host_config=c.create_host_config(network_mode="none"))
                time.sleep(0.05)
            mine = [e for e in c.events(since=int(time.time()) - 5, until=time.time(), decode=True,
                                        filters={"event": "create"})
                    if e["Actor"]["Attributes"].get("name") in names]
            first, second = (e["timeNano"] for e in mine)
            between = (first + second) // 2

            def names_in(**kw):
                query = {k: f"{v // 10**9}.{v % 10**9:09d}" if isinstance(v, int) and v > 10**12 else v
                         for k, v in kw.items()}
                res = c._get(c._url("/events"), params=dict(query, filters=json.dumps({"event": ["create"]})))
                return [json.loads(line)["Actor"]["Attributes"]["name"].replace(names[0], "<a>").replace(names[1], "<b>")
                        for line in res.text.splitlines()
                        if json.loads(line)["Actor"]["Attributes"].get("name") in names]
            seen.append((names_in(since=between, until=int(time.time()) + 1),
                         names_in(since=first - 10**9, until=between),
                         names_in(since=second, until=second),
                         names_in(since=second // 10**9, until=second // 10**9) if second // 10**9 > first // 10**9
                         else names_in(since=first // 10**9, until=first // 10**9)))
        finally:
            for n in names:
                c.remove_container(n, force=True)
            c.close()
    assert seen[0] == seen[1], seen
    assert seen[0][:3] == (["<b>"], ["<a>"], ["<b>"]), seen


def test_image_events_as_dockerd(eng, peer, tmp_path):
    """Image events through the Docker SDK side by side with dockerd's: each with the image's
    ID as its actor, its labels and a name (the tag for a tag, else the ID): tag, save, untag,
    load, import (its tag first). berthd named them by what the client typed and told no save,
    load or import."""
    import io
    import tarfile
    docker = pytest.importorskip("docker")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = 3, 1700000000
        t.addfile(info, io.BytesIO(b"hi\n"))
    seen = []
    for d in (eng, peer):
        c = docker.APIClient(base_url=d.host, version="1.41")
        repo = _name("evimg")
        try:
            since, t0 = int(time.time()) - 1, time.time_ns()
            iid = c.inspect_image(IMAGE)["Id"]
            c.tag(IMAGE, repo, "a")
            data = b"".join(c.get_image(f"{repo}:a"))
            c.remove_image(f"{repo}:a")
            c.load_image(data)
            c.remove_image(f"{repo}:a")
            c.import_image_from_data(buf.getvalue(), repository=repo, tag="imp")
            imported = c.inspect_image(f"{repo}:imp")["Id"]
            c.remove_image(f"{repo}:imp")
            evs = list(c.events(since=since, until=int(time.time()) + 1, filters={"type": "image"}, decode=True))
        finally:
            c.close()
        rows = []
        for e in evs:
            def norm(v):
                return str(v).replace(iid, "<iid>").replace(imported, "<imported>").replace(repo, "<repo>")
            a = e["Actor"]["Attributes"]
            if e["timeNano"] < t0:
                continue  # before this test
            if iid not in (e["Actor"]["ID"], a.get("name")) and imported not in (e["Actor"]["ID"], a.get("name")):
                continue  # another test's
            rows.append((e["Action"], norm(e["Actor"]["ID"]), sorted((k, norm(v)) for k, v in a.items())))
        seen.append(rows)
    assert seen[0] == seen[1], "\n".join(f"{a}\n{b}\n" for a, b in zip(*seen) if a != b) or seen
    assert [r[0] for r in seen[0]] == ["tag", "save", "untag", "load", "untag", "tag", "import", "untag", "delete"]


def test_volume_labels_and_options_as_dockerd(eng, peer):
    """A volume without labels or options shows them as null, as dockerd's (berthd showed {});
    with them, as given. The docker CLI's create and the API's alike."""
    seen = []
    for d in (eng, peer):
        row = []
        for args in ([], ["--label", "a=b", "--opt", "type=tmpfs", "--opt", "device=tmpfs"]):
            name = _name("vl")
            d.docker("volume", "create", *args, name, check=True)
            row.append(d.docker("volume", "inspect", "-f", "{{json .Labels}} {{json .Options}}", name).out.strip())
            row.append(d.docker("volume", "ls", "--filter", "label=a=b", "-q").out.split().count(name))
            d.docker("volume", "rm", name, check=True)
        seen.append(row)
    assert seen[0] == seen[1] == ["null null", 0, '{"a":"b"} {"device":"tmpfs","type":"tmpfs"}', 1], seen


def test_a_missing_archive_path_names_the_container_as_asked_as_dockerd(eng, peer):
    """GET and PUT /containers/{ref}/archive of a path that is not there: dockerd's words name the
    container as the request did (its name, or the ID prefix given); berthd always said its name."""
    import http.client
    import socket
    seen = []
    for d in (eng, peer):
        name = _name("arx")
        cid = d.docker("create", "--name", name, IMAGE, "true", check=True).out.strip()
        row = []
        try:
            for ref in (name, cid[:12]):
                for method in ("GET", "PUT"):
                    conn = http.client.HTTPConnection("localhost")
                    conn.sock = socket.socket(socket.AF_UNIX)
                    conn.sock.connect(d.host[len("unix://"):])
                    conn.request(method, f"/v1.41/containers/{ref}/archive?path=/nope",
                                 body=b"" if method == "PUT" else None, headers={"Content-Type": "application/x-tar"})
                    res = conn.getresponse()
                    msg = json.loads(res.read())["message"]
                    row.append((method, res.status, msg.replace(cid[:12], "<id12>").replace(name, "<name>")))
                    conn.close()
        finally:
            d.docker("rm", "-f", name)
        seen.append(row)
    assert seen[0] == seen[1], seen
    assert [r[2] for r in seen[0]] == ["Could not find the file /nope in container <name>"] * 2 + \
        ["Could not find the file /nope in container <id12>"] * 2


def test_forbidden_network_operations_are_403s_as_dockerd(eng, peer):
    """What dockerd forbids of networks whatever their state, with its 403 and words: removing a
    pre-defined one, making another of the host or null driver or one named as a pre-defined
    one, a subnet another network has. berthd gave 409s, and a 404 (no plugin) for the drivers."""
    import http.client
    import socket

    def call(d, method, path, body=None):
        conn = http.client.HTTPConnection("localhost")
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(d.host[len("unix://"):])
        conn.request(method, "/v1.41" + path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        doc = json.loads(res.read() or b"{}")
        conn.close()
        return res.status, doc.get("message", "")

    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    seen = []
    for d in (eng, peer):
        name = _name("fbn")
        d.docker("network", "create", "--subnet", subnet, name, check=True)
        try:
            seen.append([call(d, "DELETE", "/networks/host"), call(d, "DELETE", "/networks/none"),
                         call(d, "POST", "/networks/create", {"Name": "x-" + name, "Driver": "host"}),
                         call(d, "POST", "/networks/create", {"Name": "x-" + name, "Driver": "null"}),
                         call(d, "POST", "/networks/create", {"Name": "host"}),
                         call(d, "POST", "/networks/create", {"Name": "x-" + name, "IPAM": {"Config": [{"Subnet": subnet}]}})])
        finally:
            d.docker("network", "rm", name)
    assert seen[0] == seen[1], seen
    assert {s for s, _ in seen[0]} == {403}


def test_a_networks_ipam_options_as_the_create_gave_them_as_dockerd(eng, peer):
    """IPAM.Options shows what the create sent: null when it sent none (the Docker SDK), {} from
    the docker CLI, the options given. berthd showed {} for all."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        row = []
        c = docker.APIClient(base_url=d.host, version="1.41")
        try:
            for how in ("sdk", "cli", "sdk-opts"):
                name = _name("ipo")
                if how == "cli":
                    d.docker("network", "create", name, check=True)
                elif how == "sdk":
                    c.create_network(name)
                else:
                    c.create_network(name, ipam=docker.types.IPAMConfig(options={"a": "b"}))
                n = c.inspect_network(name)
                row.append((how, n["IPAM"]["Options"], n["Options"], n["Labels"]))
                c.remove_network(name)
        finally:
            c.close()
        seen.append(row)
    assert seen[0] == seen[1], seen
    assert [r[1] for r in seen[0]] == [None, {}, {"a": "b"}]


def test_create_refuses_nameless_env_and_bad_port_bindings_as_dockerd(eng, peer):
    """What dockerd's create refuses before it looks the image up: a variable without a name,
    a container port that is not a number up to 65535, a host port that is not one or a range;
    and a network whose gateway is outside its subnet (dockerd's words, its 500 a 400 here).
    berthd made the containers."""
    import http.client
    import socket

    def create(d, path, body):
        conn = http.client.HTTPConnection("localhost")
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(d.host[len("unix://"):])
        conn.request("POST", "/v1.41" + path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        doc = json.loads(res.read() or b"{}")
        conn.close()
        if res.status == 201:
            (d.docker("rm", "-f", doc["Id"]) if "Id" in doc else None)
        return res.status < 300, doc.get("message")

    cases = [{"Env": ["=x"]}, {"Env": [""]}, {"Env": ["A"]},
             {"HostConfig": {"PortBindings": {"x/tcp": [{}]}}}, {"HostConfig": {"PortBindings": {"70000/tcp": [{}]}}},
             {"HostConfig": {"PortBindings": {"80-81/tcp": [{}]}}}, {"HostConfig": {"PortBindings": {"80": [{"HostPort": "x"}]}}},
             {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "9-8"}]}}},
             {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080-8081"}], "/udp": [{}]}}}]
    seen = []
    for d in (eng, peer):
        row = [create(d, "/containers/create", dict(c, Image="pr-no-such-image:1" if i < 2 else IMAGE))
               for i, c in enumerate(cases)]
        row.append(create(d, "/networks/create", {"Name": _name("gwn"), "CheckDuplicate": True,
                                                   "IPAM": {"Config": [{"Subnet": "10.9.0.0/16", "Gateway": "10.10.0.1"}]}}))
        seen.append(row)
    assert [r[1] for r in seen[0]] == [r[1] for r in seen[1]], seen
    assert [r[0] for r in seen[0]] == [False, False, True, False, False, False, False, False, True, False]


def test_inspect_shows_each_port_binding_whole_as_dockerd(eng, peer):
    """A port binding sent without HostIp or HostPort (or as null) shows both, empty, as dockerd's
    (a Go struct); a null or empty list stays as sent. berthd showed what the client sent."""
    import docker
    bindings = {"80": [{"HostPort": "8080"}], "81/tcp": [{}], "82/udp": [None], "83/tcp": [],
                "84/tcp": None, "85/tcp": [{"HostIp": "127.0.0.1"}]}
    seen = []
    for d in (eng, peer):
        api = docker.APIClient(base_url=d.host, version="1.41")
        try:
            cid = api.post(api._url("/containers/create"), data=json.dumps(
                {"Image": IMAGE, "HostConfig": {"PortBindings": bindings}}),
                headers={"Content-Type": "application/json"}).json()["Id"]
            seen.append(api.inspect_container(cid)["HostConfig"]["PortBindings"])
            api.remove_container(cid, force=True)
        finally:
            api.close()
    assert seen[0] == seen[1], seen
    assert seen[0]["82/udp"] == [{"HostIp": "", "HostPort": ""}] and seen[0]["84/tcp"] is None


def test_config_shows_exposed_ports_and_stop_timeout_as_dockerd(eng, peer, tmp_path):
    """Config.ExposedPorts (the image's EXPOSE and the create's, none: left out) and
    Config.StopTimeout, in dockerd's order: berthd showed neither."""
    (tmp_path / "Dockerfile").write_text(f"FROM {IMAGE}\nEXPOSE 7000 7001/udp\nSTOPSIGNAL SIGUSR1\nVOLUME /vv\n")
    shown = []
    tag = f"{_name('exp')}:1"  # the same in both (Config.Image)
    for d in (eng, peer):
        d.docker("build", "-q", "-t", tag, str(tmp_path), check=True, env=d.env(DOCKER_BUILDKIT="0"))
        try:
            for args in (["--expose", "90", "--stop-timeout", "5", tag], [IMAGE]):
                name = _name("cfg")
                d.docker("create", "--name", name, "--network", "none", *args, "true", check=True)
                cfg = _inspect(d, name)["Config"]
                d.docker("rm", name, check=True)
                cfg.pop("Hostname")
                shown.append((list(cfg), cfg))
        finally:
            d.docker("rmi", tag)
    assert shown[0] == shown[2] and shown[1] == shown[3], shown
    assert shown[0][1]["ExposedPorts"] == {"7000/tcp": {}, "7001/udp": {}, "90/tcp": {}}
    assert shown[0][1]["StopTimeout"] == 5 and "ExposedPorts" not in shown[1][1] and "StopTimeout" not in shown[1][1]


def test_an_address_taken_on_a_network_is_a_403_as_dockerd(eng, peer):
    """A --ip another container of the network has: the start fails with dockerd's 403 and
    words, the container left created (berthd answered 500 with the IPAM plugin's message)."""
    docker = pytest.importorskip("docker")
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
    seen = []
    for d in (eng, peer):
        net = _name("ipn")
        d.docker("network", "create", "--subnet", subnet + ".0/24", net, check=True)
        c = docker.APIClient(base_url=d.host, version="1.41")
        names = [_name("ip1"), _name("ip2")]
        try:
            for n in names:
                c.create_container(IMAGE, ["sleep", "60"], name=n, host_config=c.create_host_config(network_mode=net),
                                   networking_config=c.create_networking_config(
                                       {net: c.create_endpoint_config(ipv4_address=subnet + ".9")}))
            c.start(names[0])
            with pytest.raises(docker.errors.APIError) as e:
                c.start(names[1])
            seen.append((e.value.status_code, e.value.explanation, c.inspect_container(names[1])["State"]["Status"]))
        finally:
            for n in names:
                d.docker("rm", "-f", n)
            d.docker("network", "rm", net)
            c.close()
    assert seen[0] == seen[1] == (403, "Address already in use", "created"), seen


def test_a_published_port_already_taken_as_dockerd(eng, peer):
    """A host port another container publishes, or a program of the host listens on: the start
    fails in dockerd's words, naming the endpoint (berthd said only `Bind for ... failed`)."""
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    seen = []
    try:
        for d in (eng, peer):
            net, names = _name("pn"), [_name("pa"), _name("pb"), _name("pc")]
            d.docker("network", "create", net, check=True)
            try:
                free = free_port()
                d.docker("run", "-d", "--name", names[0], "--network", net, "-p", f"127.0.0.1:{free}:80", IMAGE,
                         "sleep", "60", check=True)
                got = []
                for name, port in ((names[1], free), (names[2], taken)):
                    p = d.docker("run", "-d", "--name", name, "--network", net, "-p", f"127.0.0.1:{port}:80", IMAGE,
                                 "sleep", "60")
                    err = re.sub(r"\([0-9a-f]{64}\)", "(ID)", p.err.replace(name, "NAME").replace(str(port), "PORT"))
                    got.append((p.returncode, err.splitlines()[0]))
                seen.append(got)
            finally:
                d.docker("rm", "-f", *names)
                d.docker("network", "rm", net)
    finally:
        holder.close()
    assert seen[0] == seen[1], seen
    assert seen[0][0] == (125, "docker: Error response from daemon: driver failed programming external connectivity on "
                               "endpoint NAME (ID): Bind for 127.0.0.1:PORT failed: port is already allocated")
    assert seen[0][1][1].endswith("Error starting userland proxy: listen tcp4 127.0.0.1:PORT: bind: address already in use")


def test_stats_and_image_inspect_keys_through_the_sdk_as_dockerd(eng, peer):
    """The Docker SDK (API 1.41): a running container's one-shot stats have dockerd's keys, the
    memory's failcnt and max_usage left out at 0 (berthd gave failcnt 0). An image's inspect has
    dockerd's keys and the image's OCI Descriptor (berth's image store is containerd's, as
    dockerd's with its containerd store; API 1.48 documents the field)."""
    docker = pytest.importorskip("docker")
    seen = []
    for d in (eng, peer):
        c = docker.DockerClient(base_url=d.host, version="1.41")
        ct = c.containers.run(IMAGE, ["sleep", "60"], network_mode="none", detach=True, name=_name("st"))
        try:
            st = ct.stats(stream=False)
            seen.append((sorted(st), sorted(st["memory_stats"]), sorted(c.images.get(IMAGE).attrs)))
        finally:
            ct.remove(force=True)
            c.close()
    assert seen[0][2] == sorted(seen[1][2] + ["Descriptor"])
    assert seen[0][:2] == seen[1][:2], seen


def test_init_layer_entries_and_mounts_over_etc_as_dockerd(eng, peer):
    """What dockerd's init layer gives a container: /.dockerenv (empty, 0755), /etc/mtab ->
    /proc/mounts, empty mount points (/etc/hosts..., /dev/console, /proc, /sys), which diff does
    not show and export does (a never started container's too); and a mount on /etc (a volume,
    a tmpfs) does not hide /etc/hostname, hosts and resolv.conf (mounts in order of depth).
    berthd had none of the entries, and its /etc mounts went over the three files."""
    seen = []
    for d in (eng, peer):
        name, vol = _name("il"), _name("ilv")
        try:
            run = d.docker("run", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                           "stat -c '%a %s' /.dockerenv; readlink /etc/mtab", check=True).out
            diff = d.docker("diff", name, check=True).out
            listed = set(subprocess.run(["tar", "t"], input=d.docker("export", name).stdout, capture_output=True,
                                        check=True).stdout.decode().split())
            over = [d.docker("run", "--rm", "--network", "none", "--mount", spec, IMAGE, "ls", "/etc", check=True).out
                    for spec in (f"type=volume,src={vol},dst=/etc", "type=tmpfs,dst=/etc")]
            seen.append((run, diff, {".dockerenv", "etc/mtab"} <= listed, over))
        finally:
            d.docker("rm", "-f", name)
            d.docker("volume", "rm", vol)
    assert seen[0] == seen[1], seen
    assert seen[0][:3] == ("755 0\n/proc/mounts\n", "", True)
    assert seen[0][3][1] == "hostname\nhosts\nresolv.conf\n"
    # an image without /etc (hello-world): the init layer's /etc is not the container's change
    diffs = []
    for d in (eng, peer):
        d.docker("load", "-i", os.path.join(DATA, "hello-world.docker.tar"), check=True)
        name = _name("hw")
        d.docker("create", "--name", name, "hello-world:latest", check=True)
        try:
            # never started: what export finds is the image and the init entries
            tar = subprocess.run(["tar", "tv"], input=d.docker("export", name).stdout, capture_output=True,
                                 check=True).stdout.decode().splitlines()
            diffs.append([sorted((x.split()[0], x.split()[-1]) for x in tar)])
            diffs[-1].append(d.docker("diff", name, check=True).out)
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
                d.docker("cp", f.name, f"{name}:/etc/added", check=True)
            diffs[-1].append(d.docker("diff", name, check=True).out)
        finally:
            d.docker("rm", name)
            d.docker("rmi", "hello-world:latest")
    assert diffs[0] == diffs[1], diffs
    assert diffs[0][1:] == ["", "C /etc\nA /etc/added\n"] and ("lrwxrwxrwx", "/proc/mounts") in diffs[0][0]
    assert {n for _, n in diffs[0][0]} >= {".dockerenv", "dev/console", "etc/hosts", "proc/", "sys/", "hello"}


def test_cp_of_a_stopped_containers_network_files_as_dockerd(eng, peer):
    """docker cp from a stopped container's /etc/hosts and /etc/hostname gives what it ran with
    (dockerd mounts a container's network files for cp), not the empty mount point."""
    seen = []
    for d in (eng, peer):
        name = _name("cpn")
        d.docker("run", "-d", "--name", name, "--network", "none", "-h", "myhost", IMAGE, "sleep", "60", check=True)
        try:
            d.docker("stop", "-t", "0", name, check=True)
            got = []
            for path in ("/etc/hostname", "/etc/hosts"):
                tar = d.docker("cp", f"{name}:{path}", "-", check=True).stdout
                got.append(subprocess.run(["tar", "xO"], input=tar, capture_output=True, check=True).stdout)
            seen.append(got)
        finally:
            d.docker("rm", "-f", name)
    assert seen[0] == seen[1], seen
    assert seen[0][0] == b"myhost\n" and b"127.0.0.1\tlocalhost" in seen[0][1]


def test_the_local_log_driver_as_dockerd(eng, peer):
    """`--log-driver local` (docker's recommended driver), side by side with dockerd 20.10: the run
    prints, `logs` reads what it kept (the last lines, within its max-size and max-file), inspect
    shows the driver and no LogPath, its options are checked in dockerd's words (berth refused
    the driver: "not supported by berth")."""
    seen = []
    for d in (eng, peer):
        got = [d.docker("run", "--rm", "--log-driver", "local", IMAGE, "echo", "hi-local").out]
        n = _name("loc")
        try:
            d.docker("run", "-d", "--name", n, "--log-driver", "local", "--log-opt", "max-size=1k", "--log-opt",
                     "max-file=3", IMAGE, "sh", "-c", "for i in $(seq 1 200); do echo line-$i; done; echo err >&2",
                     check=True)
            assert d.docker("wait", n, check=True).out.strip() == "0"
            logs = d.docker("logs", n, check=True)
            lines = logs.out.splitlines()
            assert lines[-1] == "line-200" and 20 < len(lines) < 200, (d, lines[:3])
            if d is eng:  # (dockerd's local driver here lost the last, stderr, line across its rotated files)
                assert logs.err == "err\n"
                assert d.docker("logs", "--tail", "2", n, check=True).out == "line-200\n"
            i = _inspect(d, n)
            got.append((i["HostConfig"]["LogConfig"], i["LogPath"]))
        finally:
            d.docker("rm", "-f", n)
        for o in (["foo=1"], ["max-file=1"], ["max-size=abc"], ["max-file=abc"], ["compress=maybe"],
                  ["max-file=1", "compress=false"], ["max-file=0"], ["max-file=-1"], ["max-file=-1", "compress=false"]):
            p = d.docker("run", "--rm", "--log-driver", "local", *[x for v in o for x in ("--log-opt", v)], IMAGE,
                         "echo", "opts-ok")
            got.append((p.returncode, p.out, p.err.splitlines()[:1]))
        seen.append(got)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][1] == ({"Type": "local", "Config": {"max-file": "3", "max-size": "1k"}}, "")


def test_swappiness_and_device_throttles_as_dockerd(eng, peer):
    """--memory-swappiness and --device-read-bps/--device-write-bps/--device-read-iops/
    --device-write-iops, side by side with dockerd 20.10: inspect shows them, the container's
    cgroup has them; a device that is not there fails the start in dockerd's words, a
    swappiness out of range is refused (berth refused them all: "berth does not support")."""
    dev = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda") if os.path.exists(d)), None)
    if dev is None or not os.path.exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"):
        pytest.skip("no block device or no v1 blkio throttling on this host")
    st = os.stat(dev)
    num = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    seen = []
    for d in (eng, peer):
        p = d.docker("run", "--rm", "--memory-swappiness", "7", "--device-read-bps", f"{dev}:1mb",
                     "--device-write-bps", f"{dev}:2mb", "--device-read-iops", f"{dev}:30",
                     "--device-write-iops", f"{dev}:40", IMAGE, "sh", "-c",
                     "cd /sys/fs/cgroup; cat memory/memory.swappiness blkio/blkio.throttle.read_bps_device "
                     "blkio/blkio.throttle.write_bps_device blkio/blkio.throttle.read_iops_device "
                     "blkio/blkio.throttle.write_iops_device")
        got = [(p.returncode, p.out, p.err)]
        n = _name("thr")
        try:
            p = d.docker("run", "--name", n, "--device-read-bps", "/dev/nosuch:1mb", IMAGE, "true")
            got.append((p.returncode, p.err.splitlines()[:1]))
            hc = _inspect(d, n)["HostConfig"]
            got.append((hc["BlkioDeviceReadBps"], _inspect(d, n)["State"]["Status"]))
        finally:
            d.docker("rm", "-f", n)
        p = d.docker("create", "--memory-swappiness", "101", IMAGE, "true")
        got.append((p.returncode, p.err.splitlines()[:1]))
        seen.append(got)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0] == (0, f"7\n{num} 1048576\n{num} 2097152\n{num} 30\n{num} 40\n", "")


def test_the_log_delivery_mode_options_as_dockerd(eng, peer):
    """--log-opt mode=blocking|non-blocking and max-buffer-size, options of every log driver in
    dockerd (production configurations set them): accepted, and their mistakes refused in
    dockerd's words, with json-file and local (berth refused them as unknown json-file options)."""
    seen = []
    for d in (eng, peer):
        got = []
        for drv in ("json-file", "local"):
            for o in (["mode=non-blocking"], ["mode=non-blocking", "max-buffer-size=4m"], ["mode=blocking"],
                      ["mode=bogus"], ["max-buffer-size=4m"], ["mode=blocking", "max-buffer-size=4m"]):
                p = d.docker("run", "--rm", "--log-driver", drv, *[x for v in o for x in ("--log-opt", v)], IMAGE,
                             "echo", "mode-ok")
                got.append((drv, o, p.returncode, p.out, p.err.splitlines()[:1]))
        seen.append(got)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert ("json-file", ["mode=non-blocking"], 0, "mode-ok\n", []) in seen[0]


def test_a_process_whose_execve_fails_fails_on_its_own_as_dockerd(eng, peer, tmp_path):
    """runc 1.1 (dockerd's) starts a process whose last step, the execve, fails (a #! naming a
    missing interpreter, as a CRLF line or a binary without its loader): `exec PATH: <why>` on
    the process's stderr, exit status 1, for a container's process and an exec's (`exec -d`
    succeeds). berth said `berth-runc: No such file or directory: PATH`, 127, and refused the
    exec. An argument longer than 65536 characters is passed on (berthd refused it)."""
    script = tmp_path / "noint"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    long_arg = "x" * 100000
    seen = {}
    for d in (eng, peer):
        name = _name("xf")
        d.docker("create", "--name", name, IMAGE, "/noint", check=True)
        d.docker("cp", str(script), f"{name}:/noint", check=True)
        run = d.docker("start", "-a", name)
        state = json.loads(d.docker("inspect", name, check=True).out)[0]["State"]
        d.docker("rm", "-f", name)
        d.docker("run", "-d", "--name", name, IMAGE, "sleep", "60", check=True)
        d.docker("cp", str(script), f"{name}:/noint", check=True)
        ex = d.docker("exec", name, "/noint")
        exd = d.docker("exec", "-d", name, "/noint")
        d.docker("rm", "-f", name)
        arg = d.docker("run", "--rm", IMAGE, "sh", "-c", 'echo ${#0}', long_arg)
        seen[d is eng] = [(run.returncode, run.out, run.err.strip()), (state["ExitCode"], state["Error"]),
                          (ex.returncode, ex.err.strip()), (exd.returncode, exd.err), (arg.returncode, arg.out.strip(), arg.err)]
    assert seen[True][0] == (1, "", "exec /noint: no such file or directory"), seen
    assert seen[True] == seen[False]


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_domainname_is_the_kernel_domainname_sysctl_as_dockerd(eng, peer):
    """dockerd gives --domainname as the kernel.domainname sysctl, which every runtime applies:
    runc 1.1 ignores the OCI domainname field, where berthd put it (a container under
    `--runtime runc` had no domain name). The sysctl's ways follow: a value past 64 characters
    cut by the kernel, a host UTS namespace refused, --sysctl winning."""
    long_dom = "d" * 70
    cases = [["--domainname", "dom.example"], ["--domainname", long_dom], ["--uts", "host", "--domainname", "dom"],
             ["--domainname", "dom", "--sysctl", "kernel.domainname=other"]]
    seen = {}
    for d in (eng, peer):
        got = []
        for flags in cases:
            p = d.docker("run", "--rm", *flags, IMAGE, "cat", "/proc/sys/kernel/domainname")
            got.append((p.returncode, p.out, _daemon_error(p) if p.returncode else ""))
        seen[d is eng] = got
    assert seen[True][0] == (0, "dom.example\n", "") and seen[True][1] == (0, "d" * 64 + "\n", ""), seen[True]
    assert seen[True] == seen[False]
    p = eng.docker("run", "--rm", "--runtime", "runc", "--domainname", "dom.example", IMAGE,
                   "cat", "/proc/sys/kernel/domainname", check=True)
    assert p.out == "dom.example\n"


def test_ids_past_the_signed_range_are_refused_as_dockerd(eng, peer):
    """`-u 4294967295` ((uid_t)-1: "unchanged" to setresuid(2)) ran the process as root under
    berthd; dockerd refuses any uid or gid above 2^31-1, for run, --group-add and exec."""
    seen = {}
    for d in (eng, peer):
        got = []
        for flags in (["-u", "4294967295"], ["-u", "0:2147483648"], ["--group-add", "4294967295"], ["-u", "2147483647"]):
            p = d.docker("run", "--rm", *flags, IMAGE, "id", "-u")
            got.append((p.returncode, p.out, _daemon_error(p) if p.returncode else ""))
        name = _name("ids")
        d.docker("run", "-d", "--name", name, IMAGE, "sleep", "60", check=True)
        p = d.docker("exec", "-u", "4294967295", name, "id", "-u")
        got.append((p.returncode, p.out.strip()))
        d.docker("rm", "-f", name)
        seen[d is eng] = got
    assert seen[True][0] == (125, "", "docker: Error response from daemon: uids and gids must be in range 0-2147483647"), \
        seen[True]
    assert seen[True] == seen[False]


def test_read_only_binds_recursive_from_api_1_44_and_bind_recursive_options(eng, peer, tmp_path):
    """A read-only bind whose source has a mount inside: through API 1.41 only its top is
    read-only (dockerd 20.10's, and dockerd's for every client before 1.44); from 1.44 on, as
    dockerd 25+, the mounts under it are read-only too (rro) unless `bind-recursive=writable`;
    `bind-recursive=disabled` binds the source alone (berthd bound it recursively);
    `bind-recursive=readonly` needs 1.44."""
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "inner")], check=True)
    try:
        (src / "inner" / "m").write_text("marker\n")
        script = ("touch /x/a 2>/dev/null && echo top-rw || echo top-ro; "
                  "touch /x/inner/a 2>/dev/null && echo inner-rw || echo inner-ro; cat /x/inner/m 2>/dev/null || echo none")
        cases = [["-v", f"{src}:/x:ro"], ["--mount", f"type=bind,src={src},dst=/x,readonly"],
                 ["--mount", f"type=bind,src={src},dst=/x,bind-recursive=disabled"],
                 ["--mount", f"type=bind,src={src},dst=/x,readonly,bind-recursive=disabled"]]

        def runs(d, env=None, flags_list=cases):
            out = []
            for flags in flags_list:
                p = d.docker("run", "--rm", *flags, IMAGE, "sh", "-c", script, env=env)
                out.append((p.returncode, p.out.split()))
                for f in (src / "a", src / "inner" / "a"):
                    if f.exists():
                        f.unlink()
            return out
        old = dict(eng.env(), DOCKER_API_VERSION="1.41")
        mine, theirs = runs(eng, env=old), runs(peer)
        assert mine[0] == (0, ["top-ro", "inner-rw", "marker"]) and mine[2] == (0, ["top-rw", "inner-rw", "none"]), mine
        assert mine == theirs
        new = runs(eng, flags_list=cases[:2] + [["--mount", f"type=bind,src={src},dst=/x,readonly,bind-recursive=writable"],
                                               ["--mount", f"type=bind,src={src},dst=/x,readonly,bind-recursive=readonly,"
                                                           "bind-propagation=rprivate"]])
        assert new == [(0, ["top-ro", "inner-ro", "marker"])] * 2 + [(0, ["top-ro", "inner-rw", "marker"]),
                                                                      (0, ["top-ro", "inner-ro", "marker"])], new
        p = _api(eng.sock, "POST", "/containers/create", {  # (_api speaks 1.41)
            "Image": IMAGE, "HostConfig": {"Mounts": [{"Type": "bind", "Source": str(src), "Target": "/x", "ReadOnly": True,
                                                       "BindOptions": {"ReadOnlyForceRecursive": True}}]}})
        assert p[0] == 400 and "BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer" in json.dumps(p[1]), p
    finally:
        subprocess.run(["umount", str(src / "inner")], check=True)


def _get_versioned(sock, path):
    """A GET of a path with its own API version: (status, decoded JSON)."""
    import http.client
    import socket as socketmod
    c = http.client.HTTPConnection("localhost", timeout=60)
    c.sock = socketmod.socket(socketmod.AF_UNIX)
    c.sock.connect(sock)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def test_system_df_type_and_bind_create_mountpoint_of_api_1_42(eng, tmp_path):
    """API 1.42's `type` of /system/df: only the kinds asked for (the others null, LayersSize 0,
    as dockerd 23+ leaves them), an unknown one in dockerd's words, ignored before 1.42 (berthd
    gave everything); its BindOptions.CreateMountpoint makes a missing bind source at the start
    (berthd refused the create)."""
    def get(path):
        return _get_versioned(eng.sock, path)
    status, du = get("/v1.45/system/df?type=volume&type=container")
    assert status == 200 and du["Images"] is None and du["LayersSize"] == 0 and du["BuildCache"] is None, du
    assert isinstance(du["Volumes"], list) and isinstance(du["Containers"], list)
    assert get("/v1.45/system/df?type=bogus") == (400, {"message": "unknown object type: bogus"})
    status, du = get("/v1.41/system/df?type=bogus")
    assert status == 200 and isinstance(du["Images"], list)
    src = tmp_path / "made" / "here"
    status, res = _api(eng.sock, "POST", "/containers/create", {
        "Image": IMAGE, "Cmd": ["sh", "-c", "test -d /x && echo dir"],
        "HostConfig": {"Mounts": [{"Type": "bind", "Source": str(src), "Target": "/x",
                                   "BindOptions": {"CreateMountpoint": True}}]}})
    assert status == 201, res
    try:
        p = eng.docker("start", "-a", res["Id"], check=True)
        assert p.out == "dir\n" and src.is_dir()
    finally:
        eng.docker("rm", "-f", res["Id"])
    status, res = _api(eng.sock, "POST", "/containers/create", {
        "Image": IMAGE, "HostConfig": {"Mounts": [{"Type": "bind", "Source": str(tmp_path / "nope"), "Target": "/x"}]}})
    assert status == 400 and "bind source path does not exist" in res["message"], res


def test_image_views_by_api_version(eng):
    """What the version history says of images: VirtualSize gone from 1.44 on (images, image
    inspect, system df), `shared-size` (1.42) counts SharedSize (-1 without it); older versions
    keep their fields. Container/ContainerConfig stay in the image's inspect at 1.45 (dockerd 26+
    drops them): docker-compose 1.29 negotiates 1.45 and reads ContainerConfig."""
    def get(path):
        status, body = _get_versioned(eng.sock, path)
        assert status == 200, path
        return body
    seen = {}
    for v in ("1.41", "1.44", "1.45"):
        img = next(i for i in get(f"/v{v}/images/json") if IMAGE in (i.get("RepoTags") or []))
        shared = next(i for i in get(f"/v{v}/images/json?shared-size=1") if IMAGE in (i.get("RepoTags") or []))
        insp = get(f"/v{v}/images/{IMAGE}/json")
        df = next(i for i in get(f"/v{v}/system/df")["Images"] if IMAGE in (i.get("RepoTags") or []))
        seen[v] = ("VirtualSize" in img, "VirtualSize" in insp, "VirtualSize" in df, "ContainerConfig" in insp,
                   "Container" in insp, img["SharedSize"], shared["SharedSize"] >= 0)
    assert seen["1.41"] == (True, True, True, True, True, -1, False), seen  # (shared-size came with 1.42)
    assert seen["1.44"] == (False, False, False, True, True, -1, True), seen
    assert seen["1.45"] == (False, False, False, True, True, -1, True), seen


def test_host_network_hosts_file_with_added_hosts_as_dockerd(eng, peer):
    """--network host: the container's /etc/hosts is the host's; with --add-host dockerd writes
    its default file and the added hosts instead (the host's own entries left out: docker/cli#4563);
    berth kept the host's entries."""
    seen = {}
    for d in (eng, peer):
        seen[d is eng] = [d.docker("run", "--rm", "--network", "host", *flags, IMAGE, "cat", "/etc/hosts", check=True).out
                          for flags in ([], ["--add-host", "a:1.2.3.4"])]
    assert seen[True][0] == open("/etc/hosts").read()
    assert seen[True][1].splitlines()[0] == "127.0.0.1\tlocalhost" and seen[True][1].splitlines()[-1] == "1.2.3.4\ta"
    assert seen[True] == seen[False]


class _Index:
    """A registry index's v1 search API on 127.0.0.1 (what Docker Hub's index.docker.io serves,
    which a test cannot reach): /v1/_ping, and /v1/search answering RESULTS for any query. It
    notes each request (path and query, Authorization, X-Docker-Token); a TLS handshake is not
    one."""

    RESULTS = [
        {"star_count": 12, "is_official": True, "name": "busybox", "is_trusted": False, "is_automated": False,
         "description": "Busybox base image."},
        {"star_count": 3, "is_official": False, "name": "pr/busy-tools", "is_automated": True,
         "description": "A description long enough to be cut short by the docker CLI unless --no-trunc is given"},
        {"star_count": 0, "is_official": False, "name": "pr/busy0", "extra": "dropped"},
    ]

    def __init__(self):
        import http.server
        import threading
        seen = self.seen = []
        results = self.RESULTS

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("Authorization"), self.headers.get("X-Docker-Token")))
                if self.path == "/v1/_ping":
                    body = b"true"
                elif self.path.startswith("/v1/search?"):
                    body = json.dumps({"num_results": len(results), "query": "x", "results": results}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_search_asks_the_index_as_dockerd(eng, peer, tmp_path):
    """`docker search <index>/<term>`: the index pinged (HTTPS, then plain HTTP for a loopback
    one) and asked with the same query, the results and their filters, limits and formats as
    dockerd's; a v2-only registry's 404, an index that refuses the connection and the refused
    parameters in dockerd's words; `berth search` prints as `docker search`. berthd answered
    every search "page not found"."""
    from daemon_fixtures import Registry
    index = _Index()
    reg = Registry(tmp_path / "registry").start()
    dead = f"127.0.0.1:{free_port()}"
    try:
        runs = [[index.addr + "/busy"], ["--no-trunc", index.addr + "/busy"], ["--limit", "5", index.addr + "/library/busy"],
                ["-f", "stars=3", index.addr + "/busy"], ["-f", "is-official=true", "-f", "stars=1", index.addr + "/busy"],
                ["-f", "is-automated=false", "--format", "{{.Name}}:{{.StarCount}}:{{.IsOfficial}}", index.addr + "/b u"],
                [reg.addr + "/busy"], [dead + "/busy"], ["--limit", "200", index.addr + "/busy"],
                ["-f", "bogus=1", index.addr + "/busy"], ["-f", "stars=x", index.addr + "/busy"],
                ["-f", "is-official=x", index.addr + "/busy"]]
        seen, asked = [], []
        for d in (eng, peer):
            del index.seen[:]
            seen.append([(args, p.returncode, p.out, p.err) for args in runs for p in [d.docker("search", *args)]])
            asked.append(list(index.seen))
        assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
        assert asked[0] == asked[1], asked
        out = {args[-1] if len(args) == 1 else " ".join(args): (rc, o, e) for args, rc, o, e in seen[0]}
        assert out[index.addr + "/busy"][1].splitlines()[1].startswith("busybox ") and "[OK]" in out[index.addr + "/busy"][1]
        assert out[reg.addr + "/busy"] == (1, "", "Error response from daemon: Unexpected status code 404\n")
        assert "HTTPS attempt" in out[dead + "/busy"][2] and "HTTP attempt" in out[dead + "/busy"][2]
        assert ("/v1/search?q=busy&n=25", None, "true") in asked[0] and ("/v1/search?q=b+u&n=25", None, "true") in asked[0]
        assert ("/v1/search?q=library%2Fbusy&n=5", None, "true") in asked[0]
        # berth's CLI prints what the docker CLI prints (its errors in its own style)
        for (args, rc, o, e), more in zip(seen[0], [[], ["--format", "{{json .}}"]] + [[]] * (len(runs) - 2)):
            p = eng.berth("search", *more, *args)
            q = eng.docker("search", *more, *args) if more else None
            assert (p.returncode, p.out) == ((q.returncode, q.out) if q else (rc, o)), (args, p.out, p.err)
            assert p.err.startswith("WARNING") or (p.err == "") == (e == ""), (args, p.err, e)
        # the API's answer: the results as dockerd decodes them (its fields, in its order)
        got = [_api(d.sock, "GET", f"/images/search?term={index.addr}/busy&limit=3") for d in (eng, peer)]
        assert got[0] == got[1] and got[0][0] == 200
        assert [list(r) for r in got[0][1]] == [["star_count", "is_official", "name", "is_automated", "description"]] * 3
    finally:
        index.close()
        reg.stop()
