"""berth-runc never ignores what it was asked to enforce (issue 13, the runtime's part).

Black-box, the real binary on busybox bundles: a namespace path of the wrong type, the cgroup
v1 settings beyond the limits (swappiness, the OOM killer, block I/O, net_cls/net_prio,
hugetlb) applied or refused with a clear error, runc's CLI details engines rely on, the
interpreter of a process in a container's namespaces not writable through /proc/<pid>/exe,
and no import after the init entered a user namespace.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from bundles import default_config, make_bundle
from daemon_fixtures import berthd  # noqa: F401  (a fixture)
from test_runtime_config import (
    CG,
    assert_gone,
    add_applets,
    create_detached,
    one_line_error,
    read,
    set_resources,
    start_and_wait,
    wait_stopped,
)

# ------------------------------------------------------------------------------------------
# namespaces joined by path


@pytest.mark.parametrize("ns_type, path", [("user", "/proc/self/ns/uts"), ("network", "/proc/self/ns/ipc"),
                                            ("uts", "/etc/hostname")])
def test_namespace_path_of_another_type_is_refused(runtime, ns_type, path):
    def mutate(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != ns_type]
        c["linux"]["namespaces"].append({"type": ns_type, "path": path})
        c.pop("hostname", None)
    b = runtime.bundle(mutate=mutate)
    cid = runtime.new_id()
    p = runtime("create", "-b", b, cid)
    one_line_error(p, path, f"not a {ns_type} namespace")
    assert_gone(runtime, cid)


def test_joining_the_user_namespace_we_are_in_still_works(runtime):
    b = runtime.bundle(["true"], mutate=lambda c: c["linux"]["namespaces"].append(
        {"type": "user", "path": "/proc/self/ns/user"}))
    cid = runtime.new_id()
    p = runtime("run", "-b", b, cid)
    assert p.returncode == 0, p.err


# ------------------------------------------------------------------------------------------
# runc's CLI details


def test_delete_force_of_a_missing_container_exits_0_like_runc(runtime, runc):
    for rt in (runtime, runc):
        p = rt("delete", "--force", "no-such-container")
        assert p.returncode == 0, (rt.binary, p.err)
        p = rt("delete", "no-such-container")
        assert p.returncode != 0, rt.binary


# ------------------------------------------------------------------------------------------
# cgroup v1: every setting applied where the controller is, refused where it is not

needs_v1 = pytest.mark.skipif(not os.path.exists(f"{CG}/memory/memory.swappiness"),
                              reason="needs the cgroup v1 memory controller")


def _cg(cid, ctrl, fname):
    return read(f"{CG}/{ctrl}/{cid}/{fname}").strip()


@needs_v1
def test_memory_swappiness_and_oom_killer_are_set(runtime):
    b = runtime.bundle(["true"], mutate=set_resources(memory={"limit": 64 << 20, "swappiness": 17,
                                                             "disableOOMKiller": True}))
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    assert _cg(cid, "memory", "memory.swappiness") == "17"
    assert "oom_kill_disable 1" in _cg(cid, "memory", "memory.oom_control")
    start_and_wait(runtime, cid, log)
    runtime("delete", cid, check=True)


def _block_device():
    """major:minor of a whole block device of this machine (throttling needs a real disk)."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        try:
            major, minor = read(f"/sys/block/{name}/dev").strip().split(":")
            return int(major), int(minor)
        except (OSError, ValueError):
            continue
    pytest.skip("no block device to throttle")


@pytest.mark.skipif(not os.path.exists(f"{CG}/blkio/tasks"), reason="needs the cgroup v1 blkio controller")
def test_blkio_throttles_and_weight(runtime):
    major, minor = _block_device()
    dev = f"{major}:{minor}"
    bio = {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
           "throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": 2097152}],
           "throttleReadIOPSDevice": [{"major": major, "minor": minor, "rate": 300}],
           "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 400}]}
    b = runtime.bundle(["true"], mutate=set_resources(blockIO=bio))
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    assert _cg(cid, "blkio", "blkio.throttle.read_bps_device") == f"{dev} 1048576"
    assert _cg(cid, "blkio", "blkio.throttle.write_bps_device") == f"{dev} 2097152"
    assert _cg(cid, "blkio", "blkio.throttle.read_iops_device") == f"{dev} 300"
    assert _cg(cid, "blkio", "blkio.throttle.write_iops_device") == f"{dev} 400"
    start_and_wait(runtime, cid, log)
    runtime("delete", cid, check=True)

    # a weight: set where the I/O scheduler has weights (CFQ's blkio.weight or BFQ's), else refused
    b = runtime.bundle(["true"], mutate=set_resources(blockIO={"weight": 321}))
    cid = runtime.new_id()
    p = runtime("create", "-b", b, cid)
    probe = f"{CG}/blkio/{cid}"
    if p.returncode == 0:
        w = [f for f in ("blkio.weight", "blkio.bfq.weight") if os.path.exists(f"{probe}/{f}")]
        assert w and read(f"{probe}/{w[0]}").split()[-1] == "321"
        runtime("delete", "--force", cid, check=True)
    else:
        one_line_error(p, "weight")
        assert_gone(runtime, cid)


def _v1_mounted(ctrl):
    return any(ctrl in h.split(",") for h in os.listdir(CG) if os.path.exists(f"{CG}/{h}/tasks"))


@pytest.mark.parametrize("res, ctrl, fname, expect", [
    ({"network": {"classID": 0x100001}}, "net_cls", "net_cls.classid", "1048577"),
    ({"network": {"priorities": [{"name": "lo", "priority": 5}]}}, "net_prio", "net_prio.ifpriomap", "lo 5"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}, "hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
])
def test_network_and_hugetlb_applied_or_refused(runtime, res, ctrl, fname, expect):
    b = runtime.bundle(["true"], mutate=set_resources(**res))
    cid = runtime.new_id()
    p = runtime("create", "-b", b, cid)
    if _v1_mounted(ctrl):
        assert p.returncode == 0, p.err
        path = next(f"{CG}/{h}/{cid}/{fname}" for h in os.listdir(CG) if ctrl in h.split(","))
        assert expect in read(path)
        runtime("delete", "--force", cid, check=True)
    else:
        # never a container without the limit it was asked for
        one_line_error(p, ctrl, "not mounted")
        assert_gone(runtime, cid)


@pytest.mark.parametrize("res, words", [
    ({"memory": {"swappiness": 101}}, ["swappiness", "between 0 and 100"]),
    ({"memory": {"disableOOMKiller": "yes"}}, ["disableOOMKiller", "true or false"]),
    ({"blockIO": {"weight": 5}}, ["blockIO.weight", "between 10 and 1000"]),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, ["throttleReadBpsDevice[0].minor"]),
    ({"network": {"classID": -1}}, ["classID"]),
    ({"hugepageLimits": [{"pageSize": "2 megs", "limit": 1}]}, ["pageSize"]),
    ({"unified": {"memory.max": "1G"}}, ["cannot use unified on cgroup v1"]),  # runc's words
])
def test_bad_resource_values_are_one_line_errors(runtime, res, words):
    b = runtime.bundle(["true"], mutate=set_resources(**res))
    cid = runtime.new_id()
    p = runtime("create", "-b", b, cid)
    one_line_error(p, *words)
    assert_gone(runtime, cid)


# ------------------------------------------------------------------------------------------
# the interpreter behind /proc/<pid>/exe (CVE-2019-5736)


def test_runtime_process_in_container_namespaces_has_a_read_only_exe(runtime, tmp_path, _drop_copy_views):
    """The CVE-2019-5736 attack: container A is created by berth-runc running on a private copy
    of the interpreter (so that nothing else keeps that file busy); its init waits in A's
    namespaces. Container B joins A's PID namespace with CAP_SYS_PTRACE, holds /proc/1/exe (A's
    init) open, waits until A runs its program (the interpreter file is then idle) and opens it
    for writing: a read-only file system, never a write to the host's interpreter."""
    import berth
    site = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    py = str(tmp_path / "python-copy")
    shutil.copy2(os.path.realpath(sys.executable), py)
    boot = f"import sys; sys.path.insert(0, {site!r}); from berth.runtime_cli.main import main; sys.exit(main())"
    a = runtime.bundle(["sleep", "2"])
    aid = runtime.new_id()
    alog = os.path.join(runtime.tmp, "a.log")
    with open(alog, "wb") as f:
        p = subprocess.run([py, "-S", "-E", "-c", boot, "--root", runtime.root, "create", "-b", a, aid],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=30)
    assert p.returncode == 0, read(alog)
    pid = runtime.state(aid)["pid"]
    assert os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY

    script = ("exec 3</proc/1/exe; readlink /proc/1/exe; i=0; "
              "while readlink /proc/1/exe | grep -q python && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
              "(exec 4>>/proc/self/fd/3) 2>&1; echo rc=$?")

    def mutate(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
        c["linux"]["namespaces"].append({"type": "pid", "path": f"/proc/{pid}/ns/pid"})
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_SYS_PTRACE")
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    add_applets(b, "grep")
    bid = runtime.new_id()
    blog = create_detached(runtime, b, bid)
    runtime("start", bid, check=True)
    runtime("start", aid, check=True)
    wait_stopped(runtime, bid)
    out = read(blog)
    assert "python-copy" in out.splitlines()[0] and "/run/berth/exe/" in out.splitlines()[0], out
    assert "Read-only file system" in out and "rc=0" not in out, out
    wait_stopped(runtime, aid)
    runtime("delete", bid, check=True)
    runtime("delete", aid, check=True)


@pytest.fixture
def _drop_copy_views():
    yield
    with open("/proc/self/mountinfo") as f:
        views = [ln.split()[4] for ln in f if ln.split()[4].startswith("/run/berth/exe/")
                 and ln.split()[4].endswith("/python-copy")]
    for v in views:
        subprocess.run(["umount", v], capture_output=True)
        shutil.rmtree(os.path.dirname(v), ignore_errors=True)


def test_berthd_and_its_shims_run_from_a_read_only_interpreter(berthd):
    pid = berthd.proc.pid
    assert os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY
    # the zygote (and every shim forked from it) shares the daemon's exe
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    assert kids and all(os.statvfs(f"/proc/{k}/exe").f_flag & os.ST_RDONLY for k in kids)


# ------------------------------------------------------------------------------------------
# imports before the user namespace


def _unreadable_python():
    """An interpreter whose standard library a mapped uid (100000) cannot read, e.g. a pyenv
    build under root's 0700 home; None when this host has none."""
    cands = []
    pyenv = os.path.expanduser("~root/.pyenv/versions")
    if os.path.isdir(pyenv):
        cands += sorted(os.path.join(pyenv, v, "bin", "python3.11") for v in os.listdir(pyenv))
    for c in cands:
        if not os.path.exists(c):
            continue
        r = subprocess.run(["setpriv", "--reuid=100000", "--regid=100000", "--clear-groups", "test", "-r",
                            os.path.dirname(os.path.dirname(c))], capture_output=True)
        if r.returncode != 0:  # uid 100000 cannot read the installation
            return c
    return None


@pytest.fixture
def public_bundle_dir():
    d = tempfile.mkdtemp(prefix="berth-test-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("terminal", [False, True])
def test_user_namespace_container_with_an_interpreter_out_of_its_reach(runtime, public_bundle_dir, terminal):
    py = _unreadable_python()
    if not py:
        pytest.skip("no Python installation unreadable by uid 100000 on this host (e.g. pyenv under /root)")
    import berth
    site = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    if subprocess.run(["setpriv", "--reuid=100000", "--regid=100000", "--clear-groups", "test", "-r",
                       os.path.join(site, "berth", "runtime", "container.py")]).returncode != 0:
        pytest.skip("berth itself is not readable by uid 100000 here")
    c = default_config(["sh", "-c", "id -u; cat /proc/self/uid_map"], terminal=terminal)
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b = make_bundle(os.path.join(public_bundle_dir, "bundle"), None, config=c)
    cid = runtime.new_id()
    boot = f"import sys; sys.path.insert(0, {site!r}); from berth.runtime_cli.main import main; sys.exit(main())"
    p = subprocess.run([py, "-S", "-E", "-c", boot, "--root", runtime.root, "run", "-b", b, cid],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "100000" in p.stdout and p.stdout.split()[0] == "0", p.stdout

    # exec into a running one, from the same interpreter
    c["process"]["args"] = ["sleep", "30"]
    c["process"]["terminal"] = False
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    cid = runtime.new_id()
    create_detached(runtime, b, cid)
    runtime("start", cid, check=True)
    p = subprocess.run([py, "-S", "-E", "-c", boot, "--root", runtime.root, "exec", cid, "id", "-u"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.strip() == "0", p.stderr
    runtime("delete", "--force", cid, check=True)
