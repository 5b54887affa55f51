"""berth.runtime.cgroups against the real cgroups of this host (as root, no mocks).

The host is hybrid: v1 hierarchies under /sys/fs/cgroup plus an empty cgroup2 tree at
/sys/fs/cgroup/unified, which doubles as the v2 test bed (cgroup.freeze works without controllers).
Every test works under a unique /berth-test-<random> cgroup that a finalizer kills and removes.
"""

import os
import signal
import subprocess
import time
import uuid

import pytest

from berth.errors import BerthError, InvalidArgument, NotFound, SystemError_
from berth.runtime import cgroups
from berth.runtime.cgroups import Manager, detect_mode, resolve_path, validate_resources

ROOT = "/sys/fs/cgroup"
UNIFIED = ROOT + "/unified"
V1_HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")

REAL = os.geteuid() == 0 and all(os.path.exists(f"{ROOT}/{h}/tasks") for h in V1_HIERARCHIES) \
    and os.path.exists(UNIFIED + "/cgroup.procs")
needs_cgroups = pytest.mark.skipif(not REAL, reason="needs root and the hybrid cgroup layout of the test host")
MiB = 1 << 20


def read(path):
    with open(path) as f:
        return f.read().strip()


def proc_cgroups(pid):
    """{hierarchy: path} from inside the process's view, /proc/<pid>/cgroup."""
    out = {}
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def proc_state(pid):
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


class Env:
    """A unique cgroup base plus the processes/managers of one test, all cleaned up by finalize()."""

    def __init__(self):
        self.base = f"/berth-test-{uuid.uuid4().hex[:12]}"
        self.procs = []
        self.managers = []

    def manager(self, sub="c1", **kw):
        m = Manager(f"{self.base}/{sub}" if sub else self.base, **kw)
        self.managers.append(m)
        return m

    def spawn(self, argv=("sleep", "30"), **kw):
        p = subprocess.Popen(list(argv), **kw)
        self.procs.append(p)
        return p

    def finalize(self):
        for m in self.managers:  # a frozen v1 task would not die from SIGKILL
            try:
                if m.exists() and m.frozen():
                    m.thaw()
            except BerthError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    f.close()
        errors = []
        for m in (Manager(self.base, mode="hybrid"), Manager(self.base, mode="v2", root=UNIFIED)):
            try:
                m.destroy(timeout=2)
            except BerthError as e:
                errors.append(str(e))
        assert not errors, errors


@pytest.fixture
def env(request):
    if not REAL:
        pytest.skip("needs root and the hybrid cgroup layout of the test host")
    e = Env()
    request.addfinalizer(e.finalize)
    return e


def all_dirs(base):
    dirs = [f"{ROOT}/{h}{base}" for h in V1_HIERARCHIES] + [UNIFIED + base]
    return dirs


# ---------------------------------------------------------------------------------------------
# pure functions


@needs_cgroups
def test_detect_mode():
    assert detect_mode() == "hybrid"
    assert detect_mode(ROOT) == "hybrid"
    assert detect_mode(UNIFIED) == "v2"
    assert detect_mode(ROOT + "/memory") == "v1"


@pytest.mark.parametrize("path, systemd, want", [
    ("/a/b", False, "/a/b"),
    ("//a/./b/", False, "/a/b"),
    ("a/b", False, "/a/b"),                       # relative: to the hierarchy root
    (None, False, "/ctr1"),
    ("", False, "/ctr1"),
    ("system.slice:berth:ctr1", True, "/system.slice/berth-ctr1.scope"),
    ("a-b.slice:p:n", True, "/a.slice/a-b.slice/p-n.scope"),
    ("a-b-c.slice:p:n", True, "/a.slice/a-b.slice/a-b-c.slice/p-n.scope"),
    ("-.slice:p:n", True, "/p-n.scope"),
    (":p:n", True, "/system.slice/p-n.scope"),
    ("user.slice::n", True, "/user.slice/n.scope"),
    ("system.slice:p:x-y.slice", True, "/x.slice/x-y.slice"),
    (None, True, "/system.slice/berth-ctr1.scope"),
    ("", True, "/system.slice/berth-ctr1.scope"),
])
def test_resolve_path(path, systemd, want):
    assert resolve_path(path, "ctr1", systemd) == want


@pytest.mark.parametrize("path, systemd", [
    ("/a/../b", False),
    ("../x", False),
    ("/", False),
    ("a\0b", False),
    ("a:b", True),
    ("a:b:c:d", True),
    ("/a/b", True),
    ("foo:p:n", True),                 # slice not ending in .slice
    ("a/b.slice:p:n", True),           # "/" in a slice name
    ("a--b.slice:p:n", True),
    ("-a.slice:p:n", True),
    ("a-.slice:p:n", True),
    (".slice:p:n", True),
    ("..slice:p:n", True),
    ("system.slice:p:..", True),
    ("system.slice:p:a/b", True),
    ("system.slice:../x:n", True),
    ("system.slice:p:", True),
    ("system.slice:p:-.slice", True),
])
def test_resolve_path_invalid(path, systemd):
    with pytest.raises(InvalidArgument) as ei:
        resolve_path(path, "ctr1", systemd)
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("cid", ["", "..", "a/b"])
def test_resolve_path_invalid_id(cid):
    with pytest.raises(InvalidArgument):
        resolve_path(None, cid, False)
    with pytest.raises(InvalidArgument):
        resolve_path(None, cid, True)


def test_validate_resources_ok():
    validate_resources(None, "v1")
    validate_resources({}, None)
    validate_resources({
        "memory": {"limit": 64 * MiB, "swap": 128 * MiB, "reservation": 32 * MiB, "kernel": 5},
        "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-3,5", "mems": "0"},
        "pids": {"limit": -1},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": True, "type": "b", "major": 8, "minor": None, "access": "r"},
                    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"}],
        "blockIO": {"weight": 10},
        "somethingNew": [1, 2],
    }, "v1")
    validate_resources({"memory": {"limit": -1, "swap": -1}}, "v2")
    validate_resources({"memory": {"swap": 128 * MiB}}, "v1")  # v1 can set memsw alone


@pytest.mark.parametrize("resources, mode, field", [
    ([], "v1", "linux.resources"),
    ({"memory": 5}, "v1", "memory"),
    ({"memory": {"limit": "1g"}}, "v1", "memory.limit"),
    ({"memory": {"limit": True}}, "v1", "memory.limit"),
    ({"memory": {"limit": 0}}, "v1", "memory.limit"),
    ({"memory": {"limit": -5}}, "v1", "memory.limit"),
    ({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}}, None, "memory.swap"),
    ({"memory": {"limit": -1, "swap": 32 * MiB}}, "v1", "memory.swap"),
    ({"memory": {"swap": 32 * MiB}}, "v2", "memory.swap"),
    ({"memory": {"swap": -2}}, "v1", "memory.swap"),
    ({"memory": {"limit": 32 * MiB, "reservation": 64 * MiB}}, "v1", "memory.reservation"),
    ({"cpu": {"shares": 1}}, "v1", "cpu.shares"),
    ({"cpu": {"shares": 300000}}, "v1", "cpu.shares"),
    ({"cpu": {"period": 5}}, "v1", "cpu.period"),
    ({"cpu": {"period": 2000000}}, "v1", "cpu.period"),
    ({"cpu": {"cpus": 3}}, "v1", "cpu.cpus"),
    ({"pids": {"limit": "10"}}, "v1", "pids.limit"),
    ({"devices": {"allow": True}}, "v1", "devices"),
    ({"devices": [{"access": "rwm"}]}, "v1", "devices[0].allow"),
    ({"devices": [{"allow": True, "type": "x"}]}, "v1", "devices[0].type"),
    ({"devices": [{"allow": True, "type": "c", "major": "1"}]}, "v1", "devices[0].major"),
    ({"devices": [{"allow": True, "type": "c", "major": 1, "minor": -3}]}, "v1", "devices[0].minor"),
    ({"devices": [{"allow": True, "type": "c", "access": "rwx"}]}, "v1", "devices[0].access"),
    ({"devices": [{"allow": True, "type": "c", "access": ""}]}, "v1", "devices[0].access"),
    ({"devices": [{"allow": False}, {"allow": True, "major": 1, "minor": 3}]}, "v1", "devices[1]"),
    ({"devices": [{"allow": False, "type": "a", "access": "r"}]}, "v1", "devices[0]"),
])
def test_validate_resources_errors(resources, mode, field):
    with pytest.raises(InvalidArgument) as ei:
        validate_resources(resources, mode)
    msg = str(ei.value)
    assert field in msg and "\n" not in msg, msg


def test_validate_bad_mode():
    with pytest.raises(InvalidArgument):
        validate_resources({}, "v3")


def test_shares_to_weight():
    assert cgroups.shares_to_weight(2) == 1
    assert cgroups.shares_to_weight(1024) == 39
    assert cgroups.shares_to_weight(262144) == 10000


@needs_cgroups
@pytest.mark.parametrize("path", ["/", "", "/a/../b", 5])
def test_manager_rejects_bad_path(path):
    with pytest.raises(InvalidArgument):
        Manager(path)


# ---------------------------------------------------------------------------------------------
# hybrid / v1 on the real hierarchies


def test_create_add_everywhere(env):
    m = env.manager()
    assert m.mode == "hybrid"
    assert not m.exists()
    m.create()
    m.create()  # idempotent
    assert m.exists()
    for d in all_dirs(m.path):
        assert os.path.isdir(d), d
    p = env.spawn()
    m.add(p.pid)
    seen = proc_cgroups(p.pid)
    assert seen["name=systemd"] == m.path
    assert seen[""] == m.path  # the unified hierarchy, "0::/..."
    for h in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        assert seen[h] == m.path, h
    assert m.pids() == [p.pid]
    assert str(p.pid) in read(f"{ROOT}/memory{m.path}/cgroup.procs").split()


def test_add_errors(env):
    m = env.manager()
    sleeper = env.spawn()
    with pytest.raises(NotFound) as ei:  # not created yet
        m.add(sleeper.pid)
    assert "does not exist" in str(ei.value)
    m.create()
    with pytest.raises(InvalidArgument):
        m.add(-4)
    p = env.spawn(["true"])
    p.wait()
    with pytest.raises(NotFound) as ei:
        m.add(p.pid)
    assert "No such process" in str(ei.value)


def test_cpuset_initialised_on_every_new_level(env):
    m = env.manager("a/b/c")
    m.create()
    top = f"{ROOT}/cpuset"
    for sub in ("", "/a", "/a/b", "/a/b/c"):
        d = f"{top}{env.base}{sub}"
        assert read(f"{d}/cpuset.cpus") == read(f"{top}/cpuset.cpus"), d
        assert read(f"{d}/cpuset.mems") == read(f"{top}/cpuset.mems"), d
    p = env.spawn()
    m.add(p.pid)  # would fail with ENOSPC on an empty cpuset
    assert proc_cgroups(p.pid)["cpuset"] == m.path


def test_set_v1_and_read_back(env):
    m = env.manager()
    m.create()
    p = env.spawn()
    m.add(p.pid)
    m.set({
        "memory": {"limit": 64 * MiB, "swap": 128 * MiB, "reservation": 32 * MiB},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 10},
    })
    mem, cpu, cpuset = m.paths["memory"], m.paths["cpu"], m.paths["cpuset"]
    assert read(f"{mem}/memory.limit_in_bytes") == str(64 * MiB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(128 * MiB)
    assert read(f"{mem}/memory.soft_limit_in_bytes") == str(32 * MiB)
    assert read(f"{cpu}/cpu.shares") == "512"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}/cpu.cfs_period_us") == "100000"
    assert read(f"{cpuset}/cpuset.cpus") == "0"
    assert read(f"{cpuset}/cpuset.mems") == "0"
    assert read(f"{m.paths['pids']}/pids.max") == "10"
    assert "Cpus_allowed_list:\t0" in read(f"/proc/{p.pid}/status")
    st = m.read_stats()
    assert st.memory_limit == 64 * MiB and (st.pids_current, st.pids_limit) == (1, 10)
    # unlimited / "max"
    m.set({"memory": {"limit": -1}, "cpu": {"quota": -1}, "pids": {"limit": 0}})
    assert int(read(f"{mem}/memory.limit_in_bytes")) > 1 << 60
    assert int(read(f"{mem}/memory.memsw.limit_in_bytes")) > 1 << 60  # -1 limit implies -1 swap
    assert read(f"{cpu}/cpu.cfs_quota_us") == "-1"
    assert read(f"{m.paths['pids']}/pids.max") == "max"
    m.set({})
    m.set(None)


def test_memory_swap_order_raise_and_lower(env):
    m = env.manager()
    m.create()
    mem = m.paths["memory"]

    def check(limit, swap):
        m.set({"memory": {"limit": limit, "swap": swap}})
        assert (int(read(f"{mem}/memory.limit_in_bytes")), int(read(f"{mem}/memory.memsw.limit_in_bytes"))) \
            == (limit, swap)

    check(64 * MiB, 128 * MiB)
    check(256 * MiB, 512 * MiB)   # raise: memsw must go first
    check(32 * MiB, 32 * MiB)     # lower: memory must go first
    check(40 * MiB, 48 * MiB)


def test_set_error_names_file_and_value(env):
    m = env.manager()
    m.create()
    m.set({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
    with pytest.raises(SystemError_) as ei:  # memsw below the memory limit: the kernel says EINVAL
        m.set({"memory": {"swap": 32 * MiB}})
    memsw = os.path.join(m._ctrl["memory"], "memory.memsw.limit_in_bytes")  # runc's words
    assert str(ei.value) == f'failed to write "{32 * MiB}": write {memsw}: invalid argument'
    with pytest.raises(SystemError_) as ei:  # a cpu the parent does not have
        m.set({"cpu": {"cpus": "1000"}})
    assert str(ei.value).startswith('failed to write "1000": write ') and "/cpuset.cpus: " in str(ei.value)
    with pytest.raises(InvalidArgument):
        m.set({"memory": {"limit": "lots"}})
    with pytest.raises(NotFound):
        env.manager("missing").set({"pids": {"limit": 5}})


def test_devices_v1(env):
    m = env.manager()
    m.create()
    script = ("read go; "
              "if true </dev/null; then echo null-ok; else echo null-denied; fi; "
              "if true </dev/zero; then echo zero-ok; else echo zero-denied; fi")
    p = env.spawn(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=subprocess.DEVNULL, text=True)
    m.add(p.pid)
    m.set({"devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert read(f"{m.paths['devices']}/devices.list") == "c 1:3 rwm"
    out, _ = p.communicate("go\n", timeout=10)
    assert out.split() == ["null-ok", "zero-denied"]
    # wildcards and partial access
    m.set({"devices": [{"allow": False, "type": "a"},
                       {"allow": True, "type": "c", "major": 136, "access": "wr"},
                       {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"}]})
    assert read(f"{m.paths['devices']}/devices.list").splitlines() == ["c 136:* rw", "b *:* m"]


def test_freeze_thaw_v1(env):
    m = env.manager()
    m.create()
    p = env.spawn()
    m.add(p.pid)
    assert not m.frozen()
    m.freeze()
    assert m.frozen()
    assert read(f"{m.paths['freezer']}/freezer.state") == "FROZEN"
    assert proc_state(p.pid) == "D"  # v1 frozen tasks show as uninterruptible
    m.freeze()  # idempotent
    m.thaw()
    assert not m.frozen()
    assert read(f"{m.paths['freezer']}/freezer.state") == "THAWED"
    deadline = time.monotonic() + 2  # runnable for a moment, then back to sleep
    while proc_state(p.pid) != "S" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc_state(p.pid) == "S"


def test_pids_recursive_and_kill_all(env):
    parent = env.manager("")
    child = env.manager("sub")
    parent.create()
    child.create()
    a, b = env.spawn(), env.spawn()
    parent.add(a.pid)
    child.add(b.pid)
    assert parent.pids() == sorted([a.pid, b.pid])
    assert child.pids() == [b.pid]
    assert env.manager("nope").pids() == []
    killed = parent.kill_all(signal.SIGKILL)
    assert sorted(killed) == sorted([a.pid, b.pid])
    assert a.wait(timeout=5) == -signal.SIGKILL and b.wait(timeout=5) == -signal.SIGKILL
    assert not parent.frozen()  # left thawed, as runc does
    deadline = time.monotonic() + 2
    while parent.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert parent.pids() == []


def test_kill_all_paused_container(env):
    m = env.manager()
    m.create()
    p = env.spawn()
    m.add(p.pid)
    m.freeze()
    m.kill_all(signal.SIGTERM)
    assert p.wait(timeout=5) == -signal.SIGTERM


def test_destroy(env):
    m = env.manager("x/y")
    m.create()
    env.manager("x/y/z").create()
    top = env.manager("")
    p = env.spawn()
    m.add(p.pid)
    with pytest.raises(SystemError_) as ei:  # a live task keeps the cgroup busy
        m.destroy(timeout=0.1)
    assert "busy" in str(ei.value)
    p.kill()
    p.wait()
    m.destroy()  # retried until the dead task has left
    assert not m.exists()
    for d in all_dirs(m.path):
        assert not os.path.exists(d), d
    assert os.path.isdir(f"{ROOT}/memory{env.base}/x")  # parents are left alone
    top.destroy()
    for d in all_dirs(env.base):
        assert not os.path.exists(d), d
    top.destroy()  # missing is fine


def test_systemd_path_realised_on_cgroupfs(env):
    top = "berthtest" + env.base.rsplit("-", 1)[1]  # no "-": each one nests a slice
    path = resolve_path(f"{top}-sub.slice:berth:ctr", "ctr", True)
    assert path == f"/{top}.slice/{top}-sub.slice/berth-ctr.scope"
    m = Manager(path)
    env.managers.append(m)
    try:
        m.create()
        p = env.spawn()
        m.add(p.pid)
        assert proc_cgroups(p.pid)["name=systemd"] == path
        assert os.path.isdir(f"{ROOT}/systemd{path}") and os.path.isdir(f"{UNIFIED}{path}")
    finally:
        for proc in env.procs:
            proc.kill()
            proc.wait()
        Manager(f"/{top}.slice").destroy()
    assert not os.path.exists(f"{ROOT}/systemd/{top}.slice")


def test_explicit_v1_mode_skips_unified(env):
    m = env.manager(mode="v1")
    assert "unified" not in m.paths and "name=systemd" in m.paths
    m.create()
    assert not os.path.exists(UNIFIED + m.path)


# ---------------------------------------------------------------------------------------------
# v2 code paths on the (controller-less) unified hierarchy


def test_v2_lifecycle(env):
    m = env.manager("a/c1", mode="v2", root=UNIFIED)
    assert m.paths == {"": UNIFIED + m.path}
    m.create()
    assert os.path.isdir(UNIFIED + m.path)
    p = env.spawn()
    m.add(p.pid)
    assert proc_cgroups(p.pid)[""] == m.path
    assert m.pids() == [p.pid]
    assert env.manager("a", mode="v2", root=UNIFIED).pids() == [p.pid]
    assert not m.frozen()
    m.freeze()
    assert m.frozen()
    assert read(UNIFIED + m.path + "/cgroup.freeze") == "1"
    assert "frozen 1" in read(UNIFIED + m.path + "/cgroup.events").splitlines()
    m.thaw()
    assert not m.frozen()
    assert "frozen 0" in read(UNIFIED + m.path + "/cgroup.events").splitlines()
    assert m.read_stats().cpu_total_ns is not None
    killed = m.kill_all(signal.SIGKILL)
    assert killed == [p.pid] and p.wait(timeout=5) == -signal.SIGKILL
    m.destroy()
    assert not os.path.exists(UNIFIED + m.path)
    env.manager("", mode="v2", root=UNIFIED).destroy()
    assert not os.path.exists(UNIFIED + env.base)


def test_v2_set_without_controllers_is_a_clear_error(env):
    m = env.manager(mode="v2", root=UNIFIED)
    m.create()
    with pytest.raises(SystemError_) as ei:
        m.set({"memory": {"limit": 64 * MiB}})
    msg = str(ei.value)
    assert msg.startswith(f"cgroup: cannot set memory.max to {64 * MiB}: the memory controller is not available")
    assert "\n" not in msg
    with pytest.raises(SystemError_, match="cpu.weight"):
        m.set({"cpu": {"shares": 1024}})
    with pytest.raises(SystemError_, match="pids.max"):
        m.set({"pids": {"limit": 5}})
    # devices are ignored on v2 (no eBPF), not an error
    m.set({"devices": [{"allow": False, "access": "rwm"}]})
    m.set({})


def test_v2_mode_needs_a_cgroup2_root():
    if not REAL:
        pytest.skip("needs the test host layout")
    with pytest.raises(SystemError_):
        Manager("/x", mode="v2", root=ROOT)
