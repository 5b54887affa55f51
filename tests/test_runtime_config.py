"""config.json features of berth-runc, black-box: the real binary on real busybox bundles.

Each test builds a bundle from the default config, changes one feature, runs the container
and asserts what a user observes from inside it (and, for cgroups, from the host). Where the
expected behaviour is not obvious, the same bundle is run with Debian's runc and compared.

The `runtime` fixture (conftest.py) checks that nothing is left behind: state dir, cgroup
(at /sys/fs/cgroup/<hierarchy>/<id>) or mount. Tests that use other cgroup paths remove
the parents they create and check the container's own cgroup is gone.

A container started with `create` (or `run -d`) keeps the stdio it was given until it exits,
so those are run with stdio on a file (create_detached), never on the fixture's pipes.

Known differences from runc 1.1.5 where berth is kept as it is (runc is the odd one out):
runc 1.1 runs poststart hooks at `create`; it only warns about an unknown capability; with
rootfsPropagation "rshared" its / is not shared; it refuses rootfsPropagation "unbindable";
relative cgroupsPath (and no cgroupsPath) are relative to runc's own cgroup, berth's to the root.
"""

import json
import os
import resource
import select
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
from bundles import default_config, make_bundle

CG = "/sys/fs/cgroup"
MiB = 1 << 20
CAPS = {"CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10}


# ------------------------------------------------------------------------------------------
# helpers


def run_ok(rt, bundle, extra_globals=()):
    """`run` a container in the foreground; its stdout (the fixture deletes it)."""
    p = rt("run", "-b", bundle, rt.new_id(), extra_globals=extra_globals)
    assert p.returncode == 0, f"run failed ({p.returncode}): {p.err}\n{p.out}"
    return p.out


def one_line_error(p, *words):
    """The command failed with exactly one line on stderr that names every word."""
    assert p.returncode != 0, f"expected a failure, got: {p.out}"
    lines = p.err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got:\n{p.err}"
    for w in words:
        assert w in lines[0], f"{w!r} not in the error: {lines[0]}"
    return lines[0]


def create_detached(rt, bundle, cid, *extra, verb="create", extra_globals=()):
    """`create` (or `run -d`) with the container's stdio on a file; returns the file's path."""
    log = os.path.join(rt.tmp, f"{cid}.log")
    with open(log, "wb") as f:
        p = subprocess.run([rt.binary, "--root", rt.root, *extra_globals, verb, "-b", bundle, *extra, cid],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=30, check=False)
    assert p.returncode == 0, f"{verb} failed ({p.returncode}): {read(log)}"
    return log


def wait_stopped(rt, cid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rt.state(cid)["status"] == "stopped":
            return
        time.sleep(0.02)
    raise AssertionError(f"container {cid} did not stop within {timeout}s")


def start_and_wait(rt, cid, log):
    rt("start", cid, check=True)
    wait_stopped(rt, cid)
    return read(log)


def read(path):
    with open(path) as f:
        return f.read()


def add_applets(bundle, *names):
    for n in names:
        link = os.path.join(bundle, "rootfs", "bin", n)
        if not os.path.lexists(link):
            os.symlink("busybox", link)


def mountinfo(text):
    """mount point -> {'opts', 'optional', 'fstype', 'super'} from mountinfo lines (the last wins)."""
    out = {}
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        f = pre.split()
        if len(f) < 6:
            continue
        fstype, _src, sup = (post.split() + ["", "", ""])[:3]
        out[f[4]] = {"opts": f[5].split(","), "optional": f[6:], "fstype": fstype, "super": sup.split(",")}
    return out


def assert_gone(rt, cid, cgroup_rel=None):
    """No state and no cgroup (in any v1 hierarchy) for a container that failed or was deleted."""
    assert not os.path.exists(os.path.join(rt.root, cid)), "state dir left behind"
    assert rt("state", cid).returncode != 0
    rel = (cgroup_rel or "/" + cid).lstrip("/")
    for h in os.listdir(CG):
        assert not os.path.exists(os.path.join(CG, h, rel)), f"cgroup {h}/{rel} left behind"


def rmdir_cgroup_parents(rel):
    """Remove the (empty) parent cgroups a test created, deepest first, in every hierarchy."""
    parts = rel.strip("/").split("/")
    for i in range(len(parts), 0, -1):
        sub = "/".join(parts[:i])
        for h in os.listdir(CG):
            try:
                os.rmdir(os.path.join(CG, h, sub))
            except OSError:
                pass


def capmask(*names):
    m = 0
    for n in names:
        m |= 1 << CAPS[n]
    return m


def cap_lines(text):
    return {ln.split(":")[0]: int(ln.split()[1], 16) for ln in text.splitlines() if ln.startswith("Cap")}


@pytest.fixture
def public_dir():
    """A directory outside pytest's 0700 tmp tree, for bundles a mapped (non-root on the host) uid must reach."""
    d = tempfile.mkdtemp(prefix="berth-test-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cgroup_base(runtime):
    """A unique parent cgroup name, removed (in every hierarchy) at the end, after the containers."""
    base = f"berth-test-{uuid.uuid4().hex[:10]}"
    yield base
    runtime.cleanup()
    rmdir_cgroup_parents(base)
    for h in os.listdir(CG):
        assert not os.path.exists(os.path.join(CG, h, base)), f"cgroup {h}/{base} left behind"


def set_resources(**res):
    def mutate(c):
        c["linux"].setdefault("resources", {}).update(res)
    return mutate


# ------------------------------------------------------------------------------------------
# cgroups v1


def test_cgroup_memory_limit_reservation_swap(runtime):
    files = ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes")
    if not os.path.exists(f"{CG}/memory/memory.memsw.limit_in_bytes"):
        pytest.skip("no swap accounting on this kernel")
    script = "cd /sys/fs/cgroup/memory && cat " + " ".join(files)
    b = runtime.bundle(["sh", "-c", script],
                       mutate=set_resources(memory={"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 96 * MiB}))
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    host = [read(f"{CG}/memory/{cid}/{f}").strip() for f in files]
    assert host == [str(64 * MiB), str(32 * MiB), str(96 * MiB)]
    inside = start_and_wait(runtime, cid, log).split()
    assert inside == host
    runtime("delete", cid, check=True)
    assert_gone(runtime, cid)


def test_cgroup_cpu_shares_quota_period_cpus(runtime):
    files = ("cpu/cpu.shares", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus",
             "cpuset/cpuset.mems")
    script = "cd /sys/fs/cgroup && cat " + " ".join(files) + "; nproc"
    b = runtime.bundle(["sh", "-c", script], mutate=set_resources(
        cpu={"shares": 512, "quota": 25000, "period": 50000, "cpus": "0", "mems": "0"}))
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    host = [read(f"{CG}/{f.split('/')[0]}/{cid}/{f.split('/')[1]}").strip() for f in files]
    assert host == ["512", "25000", "50000", "0", "0"]
    inside = start_and_wait(runtime, cid, log).split()
    assert inside == host + ["1"]  # nproc: the cpuset is the affinity


def test_cgroup_pids_limit_read_back(runtime):
    b = runtime.bundle(["cat", "/sys/fs/cgroup/pids/pids.max"], mutate=set_resources(pids={"limit": 10}))
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    assert read(f"{CG}/pids/{cid}/pids.max").strip() == "10"
    assert start_and_wait(runtime, cid, log).strip() == "10"


def test_cgroup_pids_limit_bounds_a_fork_bomb(runtime):
    script = "i=0; while test $i -lt 20; do sleep 30 & i=$((i+1)); done; echo spawned=$i"
    b = runtime.bundle(["sh", "-c", script], mutate=set_resources(pids={"limit": 10}))
    t0 = time.monotonic()
    p = runtime("run", "-b", b, runtime.new_id())
    assert p.returncode != 0 and "spawned=20" not in p.out
    assert "can't fork: Resource temporarily unavailable" in p.err, p.err
    assert time.monotonic() - t0 < 20  # the sleeps died with the pid namespace


def test_cgroup_devices_deny_all_then_allow(runtime, tmp_path):
    # /dev/fuse is a config device with an allow rule; /dev/loop-control is bound in from the
    # host without one: opening it must be refused by the device cgroup.
    def mutate(c):
        c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}]
        c["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 10, "minor": 229,
                                               "access": "rwm"}]
        c["mounts"].append({"destination": "/dev/loop-control", "type": "bind", "source": "/dev/loop-control",
                            "options": ["bind"]})
    script = ("exec 3</dev/fuse && echo fuse-open-ok; (exec 4</dev/loop-control) 2>&1 && echo loop-open-ok; "
              "cat /sys/fs/cgroup/devices/devices.list")
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    host = read(f"{CG}/devices/{cid}/devices.list").splitlines()
    assert "c 10:229 rwm" in host
    assert "a *:* rwm" not in host
    assert not any(r.startswith("c 10:237") for r in host)
    out = start_and_wait(runtime, cid, log)
    assert "fuse-open-ok" in out
    assert "loop-open-ok" not in out
    assert "Operation not permitted" in out
    assert sorted(ln for ln in out.splitlines() if ln[:2] in ("a ", "b ", "c ")) == sorted(host)


def test_cgroup_devices_config_device_without_rule_is_denied(runtime, runc):
    def mutate(c):
        c["linux"]["devices"] = [{"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237,
                                  "fileMode": 0o600}]
        c["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"}]
    b = runtime.bundle(["sh", "-c", "(exec 3</dev/loop-control) 2>&1 && echo open-ok; true"], mutate=mutate)
    p = runc("run", "-b", b, runc.new_id())
    assert "Operation not permitted" in p.out and "open-ok" not in p.out, p.out + p.err  # runc's behaviour
    out = run_ok(runtime, b)
    assert "Operation not permitted" in out and "open-ok" not in out


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_cgroups_path_cgroupfs_form(runtime, cgroup_base, form):
    cid = runtime.new_id()
    rel = f"{cgroup_base}/{cid}"
    path = "/" + rel if form == "absolute" else rel

    def mutate(c):
        c["linux"]["cgroupsPath"] = path
        c["linux"]["resources"]["memory"] = {"limit": 48 * MiB}
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
    script = "grep -E '^[0-9]+:(memory|pids):' /proc/self/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    log = create_detached(runtime, b, cid)
    pid = runtime.state(cid)["pid"]
    assert read(f"{CG}/memory/{rel}/memory.limit_in_bytes").strip() == str(48 * MiB)
    for h in ("memory", "pids", "cpu", "devices", "freezer"):
        assert str(pid) in read(f"{CG}/{h}/{rel}/cgroup.procs").split()
    out = start_and_wait(runtime, cid, log).splitlines()
    assert sorted(ln.split(":", 1)[1] for ln in out[:2]) == [f"memory:/{rel}", f"pids:/{rel}"]
    assert out[2] == str(48 * MiB)
    runtime("delete", cid, check=True)
    assert_gone(runtime, cid, rel)


def _own_cgroups():
    """hierarchy (controllers, or "" for cgroup2) -> the path of this process's cgroup."""
    out = {}
    for line in read("/proc/self/cgroup").splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def test_the_process_is_in_every_cgroup_from_its_first_instruction(runtime):
    """The join (its RCU wait) overlaps the init's set-up: the user's process still starts in the
    container's cgroup in every hierarchy, with the limits in force (a command that reads its
    cgroups and its memory limit first thing; several runs, and the host's side while created)."""
    def mutate(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
        c["linux"]["resources"]["memory"] = {"limit": 40 * MiB}
        c["linux"]["resources"]["pids"] = {"limit": 7}
    script = "cat /proc/self/cgroup /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    hierarchies = set(_own_cgroups())
    for _ in range(3):
        cid = runtime.new_id()
        p = runtime("run", "-b", b, cid)
        assert p.returncode == 0, p.err
        out = p.out.splitlines()
        seen = {ln.split(":", 2)[1]: ln.split(":", 2)[2] for ln in out[:-2]}
        assert set(seen) == hierarchies, out
        assert all(path == f"/{cid}" for path in seen.values()), out
        assert out[-2:] == [str(40 * MiB), "7"], out
        assert_gone(runtime, cid)
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    pid = runtime.state(cid)["pid"]
    for h in os.listdir(CG):
        if os.path.exists(f"{CG}/{h}/{cid}/cgroup.procs"):
            assert read(f"{CG}/{h}/{cid}/cgroup.procs").split() == [str(pid)], h
    assert start_and_wait(runtime, cid, log).splitlines()[-2:] == [str(40 * MiB), "7"]
    runtime("delete", cid, check=True)
    assert_gone(runtime, cid)


def test_create_container_hooks_start_in_the_cgroup(runtime):
    """A hook is a process the init forks: it waits for the join, whose wait is otherwise deferred."""
    out = os.path.join(runtime.tmp, "hook.cg")  # createContainer runs before pivot_root: a host path

    def mutate(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
        c["hooks"] = {"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat /proc/self/cgroup > {out}"]}]}
    b = runtime.bundle(mutate=mutate)
    cid = runtime.new_id()
    runtime("run", "-b", b, cid, check=True)
    lines = read(out).splitlines()
    assert lines and all(ln.split(":", 2)[2] == f"/{cid}" for ln in lines), lines
    assert_gone(runtime, cid)


@pytest.mark.skipif(not os.path.exists(f"{CG}/unified/cgroup.procs"), reason="needs the hybrid layout's cgroup2 tree")
def test_a_failed_cgroup_join_fails_create_and_leaves_nothing(runtime, cgroup_base):
    """A cgroup the init cannot be moved into (a cgroup2 "domain invalid" one: the child of a
    threaded cgroup) fails create at once with the kernel's reason; nothing is left."""
    os.makedirs(f"{CG}/unified/{cgroup_base}/t")
    try:
        with open(f"{CG}/unified/{cgroup_base}/t/cgroup.type", "w") as f:
            f.write("threaded")
        cid = runtime.new_id()
        rel = f"{cgroup_base}/t/{cid}"
        b = runtime.bundle(["true"], mutate=lambda c: c["linux"].update(cgroupsPath="/" + rel))
        p = runtime("create", "-b", b, cid, timeout=20)  # was: a hang (the init waited for the state)
        one_line_error(p, "cgroup", "cannot add pid", "Operation not supported")
        assert_gone(runtime, cid, rel)
        p = runtime("run", "-b", b, cid, timeout=20)
        one_line_error(p, "cgroup", "Operation not supported")
        assert_gone(runtime, cid, rel)
    finally:
        rmdir_cgroup_parents(f"{cgroup_base}/t")


def test_cgroups_path_systemd_form(runtime):
    cid = runtime.new_id()
    rel = f"system.slice/berth-{cid}.scope"
    existed = os.path.isdir(f"{CG}/memory/system.slice")

    def mutate(c):
        c["linux"]["cgroupsPath"] = f"system.slice:berth:{cid}"
        c["linux"]["resources"]["pids"] = {"limit": 42}
    b = runtime.bundle(["cat", "/sys/fs/cgroup/pids/pids.max"], mutate=mutate)
    try:
        log = create_detached(runtime, b, cid, extra_globals=("--systemd-cgroup",))
        pid = runtime.state(cid)["pid"]
        assert str(pid) in read(f"{CG}/memory/{rel}/cgroup.procs").split()
        assert read(f"{CG}/pids/{rel}/pids.max").strip() == "42"
        assert start_and_wait(runtime, cid, log).strip() == "42"
        runtime("delete", cid, check=True)
        assert_gone(runtime, cid, rel)
    finally:
        runtime("delete", "--force", cid)
        if not existed:
            rmdir_cgroup_parents("system.slice")


# ------------------------------------------------------------------------------------------
# hooks

HOOK = """#!/bin/sh
printf '%s %s\\n' "$1" "$(cat)" >> "$2"
"""
HOOK_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def hooks_bundle(rt, args=("true",)):
    """A bundle whose six hooks append '<kind> <state JSON>' to <rootfs>/hooks.log."""
    path = os.path.join(rt.tmp, f"hooks-{uuid.uuid4().hex[:8]}")
    host_hook = write_script(os.path.join(rt.tmp, f"hook-{uuid.uuid4().hex[:6]}.sh"), HOOK)
    host_log = os.path.join(path, "rootfs", "hooks.log")

    def h(kind, where="host"):
        if where == "host":
            return {"path": host_hook, "args": [host_hook, kind, host_log], "env": HOOK_ENV}
        return {"path": "/hook.sh", "args": ["/hook.sh", kind, "/hooks.log"], "env": ["PATH=/bin"]}

    c = default_config(list(args))
    c["hooks"] = {
        "prestart": [h("prestart")], "createRuntime": [h("createRuntime")],
        "createContainer": [h("createContainer")],  # in the container's namespaces, before pivot_root
        "startContainer": [h("startContainer", "container")],  # after pivot_root: an in-container path
        "poststart": [h("poststart")], "poststop": [h("poststop")],
    }
    make_bundle(path, args, config=c)
    write_script(os.path.join(path, "rootfs", "hook.sh"), HOOK)
    return path, host_log


def hook_log(path):
    out = []
    if not os.path.exists(path):
        return out
    for line in read(path).splitlines():
        kind, _, data = line.partition(" ")
        out.append((kind, json.loads(data) if data.strip() else None))
    return out


def test_hooks_all_six_kinds_in_order(runtime):
    b, log = hooks_bundle(runtime)
    cid = runtime.new_id()
    create_detached(runtime, b, cid)
    pid = runtime.state(cid)["pid"]
    assert [k for k, _ in hook_log(log)] == ["prestart", "createRuntime", "createContainer"]
    runtime("start", cid, check=True)
    wait_stopped(runtime, cid)
    kinds = [k for k, _ in hook_log(log)]
    assert kinds[:3] == ["prestart", "createRuntime", "createContainer"]
    # startContainer runs in the container after `start` released it, poststart in `start`: any order
    assert sorted(kinds[3:]) == ["poststart", "startContainer"]
    runtime("delete", cid, check=True)
    entries = hook_log(log)
    assert [k for k, _ in entries][-1] == "poststop" and len(entries) == 6
    states = dict(entries)
    for kind, status in (("prestart", "created"), ("createRuntime", "creating"), ("poststart", "running"),
                         ("poststop", "stopped")):
        s = states[kind]
        assert s["id"] == cid and s["bundle"] == b and s["status"] == status, (kind, s)
        assert "ociVersion" in s and "pid" in s
        if kind != "poststop":
            assert s["pid"] == pid, (kind, s)


def test_hooks_in_container_get_the_state(runtime):
    b, log = hooks_bundle(runtime)
    cid = runtime.new_id()
    out = create_detached(runtime, b, cid)
    runtime("start", cid, check=True)
    wait_stopped(runtime, cid)
    states = dict(hook_log(log))
    for kind in ("createContainer", "startContainer"):
        s = states[kind]
        assert s and s.get("id") == cid and s.get("bundle") == b, (kind, s, read(out))
        assert s.get("status") in ("creating", "created") and s.get("pid", 0) > 0, (kind, s)


@pytest.mark.parametrize("kind", ["createRuntime", "prestart", "createContainer"])
def test_failing_hook_fails_create(runtime, kind):
    fail = write_script(os.path.join(runtime.tmp, "fail.sh"), "#!/bin/sh\necho boom >&2\nexit 3\n")
    b = runtime.bundle(mutate=lambda c: c.update(hooks={kind: [{"path": fail}]}))
    cid = runtime.new_id()
    p = runtime("create", "-b", b, cid)
    one_line_error(p, kind, "boom")
    assert_gone(runtime, cid)


def test_hook_timeout_fails_create(runtime):
    slow = write_script(os.path.join(runtime.tmp, "slow.sh"), "#!/bin/sh\nexec sleep 5\n")
    b = runtime.bundle(mutate=lambda c: c.update(hooks={"createRuntime": [{"path": slow, "timeout": 1}]}))
    cid = runtime.new_id()
    t0 = time.monotonic()
    p = runtime("create", "-b", b, cid)
    assert time.monotonic() - t0 < 4
    one_line_error(p, "createRuntime", "timed out")
    assert_gone(runtime, cid)


def test_poststop_hook_runs_on_delete_of_a_created_container(runtime):
    b, log = hooks_bundle(runtime)
    cid = runtime.new_id()
    create_detached(runtime, b, cid)
    runtime("delete", "--force", cid, check=True)
    kinds = [k for k, _ in hook_log(log)]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststop"]
    assert_gone(runtime, cid)


# ------------------------------------------------------------------------------------------
# namespaces


def test_user_namespace_mappings(runtime, public_dir):
    def mutate(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch /tmp/f; stat -c %u /tmp/f"
    c = default_config(["sh", "-c", script])
    mutate(c)
    b = make_bundle(os.path.join(public_dir, "bundle"), None, config=c)
    cid = runtime.new_id()
    log = create_detached(runtime, b, cid)
    pid = runtime.state(cid)["pid"]
    assert pid > 0, f"the init died after create: {read(log)}"
    host_uid = next(ln.split()[1] for ln in read(f"/proc/{pid}/status").splitlines() if ln.startswith("Uid:"))
    assert host_uid == "100000"
    out = start_and_wait(runtime, cid, log).splitlines()
    assert out[0].split() == ["0", "100000", "65536"]
    assert out[1].split() == ["0", "100000", "65536"]
    assert out[2:5] == ["0", "0", "0"], out
    assert os.stat(os.path.join(b, "rootfs", "tmp", "f")).st_uid == 100000


def test_a_user_namespace_with_binds_out_of_its_reach_and_an_oom_score(runtime, runc, public_dir, tmp_path):
    """In a user namespace the init is root there only: a bind's source under a directory only
    the host's root may enter (pytest's 0700 tmp tree, a kubelet's 0750 pod directories) is
    opened by the runtime before it enters it, as runc's (its mount fds), and its oom_score_adj
    is written from outside, as runc's (its /proc files are not its own once its credentials
    changed). berth-runc's init failed both ("permission denied", "cannot set oom_score_adj")."""
    hidden = tmp_path / "hidden"  # (tmp_path: under pytest's 0700 directories)
    hidden.mkdir()
    (hidden / "f").write_text("from a hidden place\n")

    def mutate(c, bind=True):
        c["linux"]["namespaces"].append({"type": "user"})
        for key in ("uidMappings", "gidMappings"):
            c["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["process"]["oomScoreAdj"] = 123
        if bind:
            c["mounts"].append({"destination": "/root", "type": "bind", "source": str(hidden), "options": ["rbind"]})
    script = "cat /proc/self/oom_score_adj; cat /root/f 2>&1 || true"
    seen = {}
    for rt in (runtime, runc):
        for bind in (True, False):
            c = default_config(["sh", "-c", script if bind else "cat /proc/self/oom_score_adj"])
            mutate(c, bind)
            b = make_bundle(os.path.join(public_dir, f"b-{uuid.uuid4().hex[:6]}"), None, config=c)
            p = rt("run", "-b", b, rt.new_id("u"))
            seen[rt is runc, bind] = (p.returncode, p.out, p.err)
    assert seen[False, True] == seen[True, True] == (0, "123\nfrom a hidden place\n", ""), seen
    assert seen[False, False] == seen[True, False] == (0, "123\n", "")


def test_sysfs_in_a_user_namespace_on_the_hosts_network(runtime, public_dir):
    """A new user namespace without a network namespace of its own: the kernel refuses it a
    sysfs mount (the network namespace is not its own), and the runtime binds the host's /sys
    read-only instead (runc 1.2's; runc 1.1 fails). berth-runc's fallback failed its remount
    (EINVAL: the remount went to the directory under the bind)."""
    def mutate(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"] + [{"type": "user"}]
        for key in ("uidMappings", "gidMappings"):
            c["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c = default_config(["sh", "-c", "grep ' /sys ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1; ls /sys/class/net | grep -c ."])
    mutate(c)
    b = make_bundle(os.path.join(public_dir, "sys"), None, config=c)
    p = runtime("run", "-b", b, runtime.new_id("s"))
    assert p.returncode == 0, p.err
    mode, links = p.out.split()
    assert mode == "ro" and int(links) >= 1  # the host's network devices: its sysfs


def test_join_network_and_uts_namespaces_by_path(runtime):
    a = runtime.bundle(["sleep", "30"], mutate=lambda c: c.update(hostname="alpha"))
    a_id = runtime.new_id()
    create_detached(runtime, a, a_id, "-d", verb="run")
    a_pid = runtime.state(a_id)["pid"]
    a_net, a_uts = os.readlink(f"/proc/{a_pid}/ns/net"), os.readlink(f"/proc/{a_pid}/ns/uts")
    assert a_net != os.readlink("/proc/self/ns/net")

    def mutate(c):
        c.pop("hostname", None)
        for n in c["linux"]["namespaces"]:
            if n["type"] in ("network", "uts"):
                n["path"] = f"/proc/{a_pid}/ns/" + {"network": "net", "uts": "uts"}[n["type"]]
    b = runtime.bundle(["sh", "-c", "for n in net uts pid; do readlink /proc/self/ns/$n; done; hostname"],
                       mutate=mutate)
    out = run_ok(runtime, b).split()
    assert out[0] == a_net and out[1] == a_uts
    assert out[2] != os.readlink(f"/proc/{a_pid}/ns/pid")  # the others are new
    assert out[3] == "alpha"
    runtime("delete", "--force", a_id, check=True)
    assert_gone(runtime, a_id)


# ------------------------------------------------------------------------------------------
# seccomp, sysctl


def test_seccomp_errno_rule(runtime):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    script = "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touch-ok; grep Seccomp: /proc/self/status"
    b = runtime.bundle(["sh", "-c", script], mutate=lambda c: c["linux"].update(seccomp=profile))
    p = runtime("run", "-b", b, runtime.new_id())
    assert p.returncode == 0, p.err
    assert "Operation not permitted" in p.err
    assert "rc=1" in p.out and "touch-ok" in p.out
    assert "Seccomp:\t2" in p.out
    assert not os.path.exists(os.path.join(b, "rootfs", "tmp", "x"))


def test_seccomp_bad_action_is_a_one_line_error(runtime):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]}
    b = runtime.bundle(mutate=lambda c: c["linux"].update(seccomp=profile))
    cid = runtime.new_id()
    one_line_error(runtime("create", "-b", b, cid), "SCMP_ACT_BOGUS")
    assert_gone(runtime, cid)


def test_sysctl_in_network_namespace(runtime):
    b = runtime.bundle(["cat", "/proc/sys/net/ipv4/ip_forward"],
                       mutate=lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}))
    assert run_ok(runtime, b).strip() == "1"


def test_new_network_namespace_has_loopback_up(runtime):
    """As runc: a new network namespace's lo is up, with 127.0.0.1 (a server on localhost works)."""
    b = runtime.bundle(["sh", "-c", "ip addr show lo; nc -l -p 7 -e echo pong & sleep 0.2; nc 127.0.0.1 7 </dev/null"])
    out = run_ok(runtime, b)
    assert "LOOPBACK,UP" in out and "127.0.0.1/8" in out and "pong" in out


def test_sysctl_not_namespaced_is_refused(runtime):
    b = runtime.bundle(mutate=lambda c: c["linux"].update(sysctl={"kernel.panic": "10"}))
    cid = runtime.new_id()
    one_line_error(runtime("create", "-b", b, cid), "kernel.panic")
    assert_gone(runtime, cid)


def _runtime_words(p):
    """A runtime's one error, its own prefixes gone (runc's logrus line and `runc create failed: `)."""
    import re
    text = p.err.strip().splitlines()[-1] if p.err.strip() else ""
    m = re.search(r'msg="(.*)"$', text)
    if m:
        text = m.group(1).encode().decode("unicode_escape")
    for prefix in ("berth-runc: ", "runc create failed: ", "runc run failed: ", "unable to start container process: "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    return text


@pytest.mark.parametrize("sysctl, namespaces", [
    ("kernel.panic", None), ("kernel.shmmax", ["ipc"]), ("net.ipv4.ip_forward", ["network"]),
    ("kernel.hostname", None), ("net.ipv4.nonexistent", None)])
def test_sysctls_refused_as_runc(runtime, runc, sysctl, namespaces):
    """runc 1.1's sysctl rules and words, side by side: only what the container's own namespaces
    hold (a vm.* or kernel.panic would change the host's), a sysctl that is not there fails the
    init (`open /proc/sys/...`)."""
    def mutate(c):
        c["linux"]["sysctl"] = {sysctl: "1"}
        if namespaces:
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] not in namespaces]
    b = runtime.bundle(["true"], mutate=mutate)
    ours, theirs = runtime("run", "-b", b, runtime.new_id()), runc("run", "-b", b, runc.new_id())
    assert ours.returncode != 0 and theirs.returncode != 0
    assert _runtime_words(ours) == _runtime_words(theirs), (ours.err, theirs.err)


# ------------------------------------------------------------------------------------------
# process: capabilities, rlimits, user


def caps_mutate(uid=0):
    def mutate(c):
        c["process"]["user"] = {"uid": uid, "gid": uid}
        c["process"]["capabilities"] = {
            "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"], "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"], "inheritable": ["CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        }
    return mutate


def test_capabilities_five_sets(runtime):
    b = runtime.bundle(["grep", "^Cap", "/proc/self/status"], mutate=caps_mutate())
    got = cap_lines(run_ok(runtime, b))
    both, nbs = capmask("CAP_NET_BIND_SERVICE", "CAP_KILL"), capmask("CAP_NET_BIND_SERVICE")
    assert got == {"CapBnd": both, "CapEff": both, "CapPrm": both, "CapInh": nbs, "CapAmb": nbs}


def test_capabilities_ambient_survive_exec_as_non_root(runtime, runc):
    # for a non-root user only the ambient set survives execve into effective/permitted
    b = runtime.bundle(["grep", "^Cap", "/proc/self/status"], mutate=caps_mutate(uid=1000))
    got = cap_lines(run_ok(runtime, b))
    nbs = capmask("CAP_NET_BIND_SERVICE")
    assert got == {"CapBnd": capmask("CAP_NET_BIND_SERVICE", "CAP_KILL"), "CapEff": nbs, "CapPrm": nbs,
                   "CapInh": nbs, "CapAmb": nbs}
    assert cap_lines(run_ok(runc, b)) == got


def test_unknown_capability_is_ignored_with_runcs_warning(runtime, runc):
    """A capability name neither berth-runc nor the kernel knows is left out, with runc 1.1's
    warning, and the process starts with the others (berth-runc refused the config; containerd's
    CRI makes such names from a pod's "CAP_NET_ADMIN", which it prefixes again)."""
    def mutate(c):
        caps_mutate()(c)
        for s in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][s] += ["CAP_FOO", "CAP_CAP_KILL"]
    b = runtime.bundle(["grep", "^Cap", "/proc/self/status"], mutate=mutate)
    got = {}
    for rt in (runtime, runc):
        p = rt("run", "-b", b, rt.new_id())
        assert p.returncode == 0, p.err
        assert "ignoring unknown or unavailable capabilities: [CAP_CAP_KILL CAP_FOO]" in p.err, p.err
        got[rt.binary] = cap_lines(p.out)
    assert got[runtime.binary] == got[runc.binary]
    assert got[runtime.binary]["CapBnd"] == capmask("CAP_NET_BIND_SERVICE", "CAP_KILL")


def _set(path, value):
    def mutate(c):
        o = c
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value
    return mutate


@pytest.mark.parametrize("path, value, words", [
    (("process", "capabilities", "bounding"), [["CAP_CHOWN"]], ["capability", "not a string"]),
    (("linux", "namespaces"), [{"type": ["pid"]}], ["unknown namespace type"]),
    (("linux", "rootfsPropagation"), ["rshared"], ["invalid rootfsPropagation"]),
    (("process", "rlimits"), [{"type": {"a": 1}, "soft": 1, "hard": 1}], ["unknown rlimit type"]),
    (("mounts",), [{"destination": "/x", "type": ["tmpfs"]}], ["mounts[0].type", "wrong type"]),
    (("mounts",), [{"destination": "/x", "type": "tmpfs", "options": [["ro"]]}], ["/x", "options must be strings"]),
])
def test_values_of_the_wrong_shape_are_one_line_errors(runtime, path, value, words):
    """A list or an object where the spec has a string is the config's error in one line, not
    `internal error: TypeError: unhashable type` (found by fuzzing config.json)."""
    b = runtime.bundle(mutate=_set(path, value))
    cid = runtime.new_id()
    line = one_line_error(runtime("create", "-b", b, cid), *words)
    assert "internal error" not in line
    assert_gone(runtime, cid)


def test_rlimits(runtime):
    def mutate(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                                   {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}]
    script = "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; grep -E 'Max (open files|processes)' /proc/self/limits"
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    out = run_ok(runtime, b).splitlines()
    assert out[:4] == ["512", "1024", "300", "400"]
    assert out[4].split()[-3:-1] == ["300", "400"] and out[5].split()[-3:-1] == ["512", "1024"]


def test_rlimit_above_the_host_hard_limit_is_a_clear_error(runtime):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit to exceed")
    b = runtime.bundle(mutate=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]))
    cid = runtime.new_id()
    one_line_error(runtime("create", "-b", b, cid), "RLIMIT_NOFILE")
    assert_gone(runtime, cid)


def test_user_groups_umask_nnp_oom_env_cwd(runtime, runc):
    def mutate(c):
        p = c["process"]
        p["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027}
        p["noNewPrivileges"] = True
        p["oomScoreAdj"] = 421
        p["env"] = ["PATH=/bin", "FOO=bar baz", "HOME=/root"]
        p["cwd"] = "/root"
    script = ("id -u; id -g; grep ^Groups: /proc/self/status; umask; grep ^NoNewPrivs: /proc/self/status; "
              "cat /proc/self/oom_score_adj; pwd; env | sort")
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    out = run_ok(runtime, b).splitlines()
    assert out[0] == "1000" and out[1] == "1001"
    assert out[2].split() == ["Groups:", "10", "20"]
    assert out[3] == "0027"
    assert out[4].split() == ["NoNewPrivs:", "1"]
    assert out[5] == "421"
    assert out[6] == "/root"
    env = out[7:]
    assert "FOO=bar baz" in env and "PATH=/bin" in env and "HOME=/root" in env
    assert run_ok(runc, b).splitlines() == out


def test_home_defaults_from_passwd_like_runc(runtime, runc):
    b = runtime.bundle(["sh", "-c", "echo HOME=$HOME"], mutate=lambda c: c["process"].update(env=["PATH=/bin"]))
    want = run_ok(runc, b)
    assert want.strip() == "HOME=/root"
    assert run_ok(runtime, b) == want


# ------------------------------------------------------------------------------------------
# terminal


def test_terminal_over_console_socket(runtime, tmp_path):
    script = ("tty; test -t 0 && echo is-a-tty; test -t 1 && echo out-is-a-tty; stty size; "
              "test -c /dev/console && echo console")
    b = runtime.bundle(["sh", "-c", script], terminal=True,
                       mutate=lambda c: c["process"].update(consoleSize={"height": 30, "width": 100}))
    add_applets(b, "tty", "stty")
    sock_path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    srv.settimeout(20)
    cid = runtime.new_id()
    master = None
    proc = subprocess.Popen([runtime.binary, "--root", runtime.root, "create", "-b", b, "--console-socket",
                             sock_path, cid], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        conn, _ = srv.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        assert len(fds) == 1
        master = fds[0]
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        runtime("start", cid, check=True)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if not r:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            data += chunk
        lines = data.decode().replace("\r", "").splitlines()
        assert lines[0].startswith("/dev/pts/"), lines
        assert lines[1:] == ["is-a-tty", "out-is-a-tty", "30 100", "console"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master is not None:
            os.close(master)
        srv.close()


def test_terminal_without_console_socket_is_a_one_line_error(runtime):
    b = runtime.bundle(["sh"], terminal=True)
    cid = runtime.new_id()
    one_line_error(runtime("create", "-b", b, cid), "console")
    assert_gone(runtime, cid)


# ------------------------------------------------------------------------------------------
# mounts


def test_mount_options(runtime, tmp_path):
    ro_src = tmp_path / "ro-src"
    ro_src.mkdir()
    (ro_src / "file").write_text("hello\n")
    flags_src = tmp_path / "flags-src"
    flags_src.mkdir()

    def mutate(c):
        c["mounts"] += [
            {"destination": "/mnt/ro", "type": "bind", "source": str(ro_src), "options": ["bind", "ro"]},
            {"destination": "/mnt/flags", "type": "bind", "source": str(flags_src),
             "options": ["rbind", "nosuid", "nodev", "noexec"]},
            {"destination": "/mnt/tmpfs", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "size=1m", "mode=0700"]},
        ]
    script = ("cat /mnt/ro/file; touch /mnt/ro/new 2>&1; touch /mnt/flags/new && echo flags-writable; "
              "stat -c %a /mnt/tmpfs; echo ===; cat /proc/self/mountinfo")
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    out = run_ok(runtime, b)
    head, _, mi = out.partition("===\n")
    assert head.splitlines()[0] == "hello"
    assert "Read-only file system" in head
    assert "flags-writable" in head
    assert "700" in head.splitlines()
    assert not (ro_src / "new").exists()
    mounts = mountinfo(mi)
    assert "ro" in mounts["/mnt/ro"]["opts"]
    assert {"nosuid", "nodev", "noexec", "rw"} <= set(mounts["/mnt/flags"]["opts"])
    t = mounts["/mnt/tmpfs"]
    assert t["fstype"] == "tmpfs" and "size=1024k" in t["super"] and "nosuid" in t["opts"]
    mq = mounts["/dev/mqueue"]
    assert mq["fstype"] == "mqueue" and {"nosuid", "nodev", "noexec"} <= set(mq["opts"])


def test_bind_mount_propagation(runtime, tmp_path):
    src = tmp_path / "shared-src"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "berth-test", str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)

        def mutate(c):
            for name, prop in (("shared", "rshared"), ("slave", "rslave"), ("private", "rprivate")):
                c["mounts"].append({"destination": f"/mnt/{name}", "type": "bind", "source": str(src),
                                    "options": ["rbind", prop]})
            c["mounts"].append({"destination": "/mnt/tmpfs-shared", "type": "tmpfs", "source": "tmpfs",
                                "options": ["rshared", "size=1m"]})
        b = runtime.bundle(["cat", "/proc/self/mountinfo"], mutate=mutate)
        mounts = mountinfo(run_ok(runtime, b))
    finally:
        subprocess.run(["umount", str(src)], check=True)

    def tags(mp):
        return {o.split(":")[0] for o in mounts[mp]["optional"]}
    assert "shared" in tags("/mnt/shared")
    assert tags("/mnt/slave") == {"master"}
    assert tags("/mnt/private") == set()
    assert tags("/mnt/tmpfs-shared") == {"shared"}


@pytest.mark.parametrize("prop, want", [("rshared", "shared"), ("rprivate", None), ("rslave", None)])
def test_rootfs_propagation(runtime, prop, want):
    b = runtime.bundle(["cat", "/proc/self/mountinfo"],
                       mutate=lambda c: c["linux"].update(rootfsPropagation=prop))
    root = mountinfo(run_ok(runtime, b))["/"]
    tags = {o.split(":")[0] for o in root["optional"]}
    if want:
        assert want in tags, root
    else:
        assert "shared" not in tags, root


# ------------------------------------------------------------------------------------------
# devices


def test_devices(runtime):
    def mutate(c):
        c["linux"]["devices"] = [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620, "uid": 0, "gid": 5},
            {"path": "/dev/sub/loop7", "type": "b", "major": 7, "minor": 7, "fileMode": 0o600},
            {"path": "/dev/myfifo", "type": "p", "fileMode": 0o644},
        ]
    script = ("stat -c '%n %F %t %T %a %g' /dev/fuse /dev/sub/loop7 /dev/myfifo; "
              "for d in null zero full random urandom tty; do stat -c '%n %F %t %T %a' /dev/$d; done; "
              "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; "
              "echo x > /dev/null && head -c 3 /dev/zero | wc -c")
    b = runtime.bundle(["sh", "-c", script], mutate=mutate)
    out = run_ok(runtime, b).splitlines()
    assert out[0] == "/dev/fuse character special file a e5 620 5"
    assert out[1] == "/dev/sub/loop7 block special file 7 7 600 0"
    assert out[2].split()[0] == "/dev/myfifo" and out[2].split()[-2] == "644" and "fifo" in out[2]
    want = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
    for line, (name, (ma, mi)) in zip(out[3:9], want.items()):
        assert line == f"/dev/{name} character special file {ma:x} {mi:x} 666"
    assert out[9:14] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2", "pts/ptmx"]
    assert out[14].strip() == "3"


# ------------------------------------------------------------------------------------------
# the same bundle under berth-runc and runc

COMPARE_SCRIPT = ("echo '== mounts'; cut -d' ' -f5,6 /proc/self/mountinfo; echo '== caps'; "
                  "grep ^Cap /proc/self/status; echo '== hostname'; hostname; echo '== dev'; ls -1 /dev; "
                  "echo '== devl'; ls -l /dev | cut -c1-10; echo '== end'")


def sections(text):
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            cur = line[3:]
            out[cur] = []
        elif cur:
            out[cur].append(line)
    return out


@pytest.fixture
def compared(runtime, runc):
    b = runtime.bundle(["sh", "-c", COMPARE_SCRIPT])
    return sections(run_ok(runtime, b)), sections(run_ok(runc, b))


@pytest.mark.parametrize("what", ["mounts", "caps", "hostname", "dev"])
def test_same_as_runc(compared, what):
    berth, runc_ = compared
    assert "end" in berth and "end" in runc_
    if what == "mounts":
        # each mount point and its options, in order: a hybrid host's cgroup2 tree not given (runc
        # 1.1 mounts the v1 hierarchies only), the cgroup tmpfs writable, read-only paths before
        # masked ones
        assert berth["mounts"] == runc_["mounts"]
    elif what == "dev":
        assert berth["dev"] == runc_["dev"]
        assert sorted(berth["devl"]) == sorted(runc_["devl"])
    else:
        assert berth[what] == runc_[what]


# ------------------------------------------------------------------------------------------
# mounts runc 1.1 refuses, in its words (the same bundle under both, side by side)

def _init_error(p):
    """What a runtime said of its container's init failing, after the runtime's own prefixes
    (runc: a logrus line `msg="runc run failed: unable to start container process: ..."`)."""
    import re
    text = p.err.strip().splitlines()[-1] if p.err.strip() else ""
    m = re.search(r'msg="(.*)"$', text)
    if m:
        text = m.group(1).encode().decode("unicode_escape")
    text = text[text.find("error during container init: "):] if "error during container init: " in text else text
    return re.sub(r"/proc/self/fd/\d+", "/proc/self/fd/N", text)


def _bind(dest, src, *opts):
    return {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", *opts]}


def _refusals(tmp_path):
    d, f = tmp_path / "srcdir", tmp_path / "srcfile"
    d.mkdir(exist_ok=True)
    (d / "sub").mkdir(exist_ok=True)
    f.write_text("x\n")
    return {
        "a bind over /proc": lambda c: c["mounts"].append(_bind("/proc", d)),
        "a bind inside /proc": lambda c: c["mounts"].append(_bind("/proc/foo", f)),
        "a devpts inside /proc": lambda c: c["mounts"].append(
            {"destination": "/proc/zz", "type": "devpts", "source": "devpts", "options": []}),
        "a tmpfs on a file": lambda c: c["mounts"].append(
            {"destination": "/etc/passwd", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1k"]}),
        "a file on a directory": lambda c: c["mounts"].append(_bind("/etc", f)),
        "a directory on a file": lambda c: c["mounts"].append(_bind("/etc/passwd", d)),
        "below a read-only bind": lambda c: c["mounts"].extend([_bind("/ro", d, "ro"), _bind("/ro/new", d)]),
        "a tmpfs inside /proc": lambda c: c["mounts"].append(
            {"destination": "/proc/foo", "type": "tmpfs", "source": "tmpfs", "options": []}),
    }


@pytest.mark.parametrize("case", ["a bind over /proc", "a bind inside /proc", "a devpts inside /proc",
                                  "a tmpfs on a file", "a file on a directory", "a directory on a file",
                                  "below a read-only bind", "a tmpfs inside /proc"])
def test_mount_refusals_in_runcs_words(runtime, runc, tmp_path, case):
    """Mounts that runc 1.1 refuses at the container's start, and what it says (runc's
    checkProcMount, its mkdir and mount errors: `error during container init: error mounting
    "<src>" to rootfs at "<dest>": ...`; dockerd and containerd pass it on to their clients).
    A bind over /proc would have let the container's masking write into the host's directory."""
    b = runtime.bundle(["true"], mutate=_refusals(tmp_path)[case])
    ours, theirs = runtime("run", "-b", b, runtime.new_id()), runc("run", "-b", b, runc.new_id())
    assert ours.returncode != 0 and theirs.returncode != 0, (ours.err, theirs.err)
    assert _init_error(ours) == _init_error(theirs), (ours.err, theirs.err)
    assert len(ours.err.strip().splitlines()) == 1, ours.err
    assert sorted(os.listdir(tmp_path / "srcdir")) == ["sub"]  # nothing made in the host's directory


def test_mounts_runc_takes(runtime, runc, tmp_path):
    """A relative destination is the root's (runc 1.1 warns), `..` stays inside the root, a file
    lxcfs emulates may be bound over its /proc file: the same container under both runtimes."""
    src = tmp_path / "cpuinfo"
    src.write_text("emulated\n")
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("in d\n")

    def mutate(c):
        c["mounts"] += [_bind("rel/x", d), _bind("/a/../../y", d), _bind("/proc/cpuinfo", src, "ro")]
    b = runtime.bundle(["sh", "-c", "cat /rel/x/f /y/f /proc/cpuinfo"], mutate=mutate)
    assert run_ok(runtime, b) == run_ok(runc, b) == "in d\nin d\nemulated\n"


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/cpuset"), reason="cgroup v1's cpuset hierarchy")
@pytest.mark.parametrize("cpu", [{"cpus": "x-y"}, {"cpus": "99"}, {"quota": 500, "period": 100000}])
def test_cgroup_values_the_kernel_refuses_as_runc(runtime, runc, cpu):
    """Values runc 1.1 leaves to the kernel, and its words when it refuses them (side by side): a
    cpuset at the cgroup's making (`unable to apply cgroup configuration: failed to write "x-y":
    write <cgroup>/cpuset.cpus: invalid argument`), a quota in the init's hook."""
    import re
    b = runtime.bundle(["true"], mutate=lambda c: c["linux"].setdefault("resources", {}).update(cpu=cpu))
    ours, theirs = runtime("run", "-b", b, runtime.new_id()), runc("run", "-b", b, runc.new_id())
    assert ours.returncode != 0 and theirs.returncode != 0

    def words(p):
        return re.sub(r"write /sys/fs/cgroup/\S+/(cpu[\w.]+):", r"write <cgroup>/\1:", _runtime_words(p))
    assert words(ours) == words(theirs), (ours.err, theirs.err)


def test_memory_limit_below_the_inits_needs_as_runc(runtime, runc):
    """A memory limit the init cannot start under: runc's limit write fails in its init's hook;
    berth's init is killed by the OOM killer: the same words (their usages differ)."""
    b = runtime.bundle(["true"], mutate=lambda c: c["linux"].setdefault("resources", {}).update(
        memory={"limit": 4096}))
    ours, theirs = runtime("run", "-b", b, runtime.new_id()), runc("run", "-b", b, runc.new_id())
    assert ours.returncode != 0 and theirs.returncode != 0
    cut = "(current usage: "
    assert _runtime_words(ours).split(cut)[0] == _runtime_words(theirs).split(cut)[0] == (
        "error during container init: error setting cgroup config for procHooks process: unable to set memory "
        "limit to 4096 "), (ours.err, theirs.err)


def test_tmpcopyup_fills_the_tmpfs_with_what_it_covers_as_runc(runtime, runc):
    """tmpcopyup (runc's; podman's default for --tmpfs): the tmpfs starts with the files of the
    image's directory it covers (modes, owners, links, subdirectories), read-only after when asked.
    berth-runc ignored it: an empty /etc under `--tmpfs /etc`."""
    def tree(c):
        c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]})
        c["mounts"].append({"destination": "/data2", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "ro"]})
    script = ("ls -lnR /data /data2 | grep -v '^total' | awk '{print $1, $3, $4, $5, $NF}'; cat /data/sub/f 2>&1; "
              "touch /data/new && echo rw; touch /data2/new 2>/dev/null || echo ro; "
              "grep -c ' /data2 .*ro' /proc/self/mountinfo")
    seen = {}
    for rt in (runtime, runc):
        b = rt.bundle(["sh", "-c", script], mutate=tree)
        for d in ("data", "data2"):
            root = os.path.join(b, "rootfs", d)
            os.makedirs(os.path.join(root, "sub"))
            with open(os.path.join(root, "sub", "f"), "w") as f:
                f.write("hello\n")
            os.chmod(os.path.join(root, "sub", "f"), 0o604)
            os.chown(os.path.join(root, "sub", "f"), 1000, 1001)
            os.chmod(os.path.join(root, "sub"), 0o711)
            os.symlink("sub/f", os.path.join(root, "link"))
        p = rt("run", "-b", b, rt.new_id("t"))
        seen[rt is runc] = (p.returncode, p.out)
    assert seen[False][0] == 0 and "hello\nrw\nro\n1\n" in seen[False][1], seen[False]
    assert seen[False] == seen[True]


def _cgroup_view(c):
    c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/sys/fs/cgroup"] + [
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}]


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/devices"), reason="no cgroup v1 devices controller")
def test_device_rules_start_from_deny_all_as_runc(runtime, runc):
    """runc applies a spec's device rules to a deny-all list and allows its default devices after:
    a spec without rules gets the defaults only (berth-runc left every device allowed)."""
    seen = {}
    for rt in (runtime, runc):
        got = []
        for rules in (None, [{"allow": True, "access": "rwm"}], [{"allow": True, "type": "b", "major": 254, "access": "r"}]):
            def spec(c, rules=rules):
                _cgroup_view(c)
                c["linux"]["resources"] = {} if rules is None else {"devices": rules}
            p = rt("run", "-b", rt.bundle(["cat", "/sys/fs/cgroup/devices/devices.list"], mutate=spec), rt.new_id("d"))
            got.append((p.returncode, sorted(p.out.splitlines())))
        seen[rt is runc] = got
    assert "c 1:3 rwm" in seen[False][0][1] and "a *:* rwm" not in seen[False][0][1], seen[False]
    assert seen[False] == seen[True]


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"), reason="no v1 realtime CPU limits")
def test_realtime_cpu_limits_and_kernel_memory_as_runc(runtime, runc):
    """cpu.realtimePeriod/Runtime are written as runc writes them (berth-runc ignored them);
    kernel memory limits are ignored with runc's warning (berth-runc wrote them); an rdma limit
    without the rdma controller fails the start, as runc's."""
    script = "cat /sys/fs/cgroup/cpu/cpu.rt_period_us /sys/fs/cgroup/cpu/cpu.rt_runtime_us"
    seen = {}
    for rt in (runtime, runc):
        got = []
        for res in ({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 500000}},
                    {"memory": {"limit": 67108864, "kernel": 33554432}},
                    {"rdma": {"mlx5_1": {"hcaHandles": 3}}}):
            def spec(c, res=res):
                _cgroup_view(c)
                c["linux"]["resources"] = res
            p = rt("run", "-b", rt.bundle(["sh", "-c", script], mutate=spec), rt.new_id("r"))
            got.append((p.returncode, p.out, "Kernel memory settings are ignored and will be removed" in p.err))
        seen[rt is runc] = got
    assert seen[False][0] == (0, "500000\n1000\n", False) and seen[False][1][2], seen[False]
    if not os.path.isdir("/sys/fs/cgroup/rdma"):
        assert seen[False][2][0] != 0 and seen[True][2][0] != 0
    assert seen[False][:2] == seen[True][:2]


# ------------------------------------------------------------------------------------------
# the process's scheduling, personality and clocks (OCI runtime spec 1.1/1.2; runc 1.2 has them,
# the runc 1.1 here ignores them: berth-runc ignored them too, the container ran without them)


def test_time_namespace_offsets(runtime):
    """linux.timeOffsets: the clocks of a new time namespace start at the offsets given (its
    /proc/uptime is the host's boottime plus them); offsets without a new time namespace, for
    a clock the kernel has no offset for, or out of range are refused before anything is made."""
    def offsets(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 3 * 86400}, "monotonic": {"secs": 3600, "nanosecs": 5}}
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    inside = float(run_ok(runtime, runtime.bundle(["cat", "/proc/uptime"], mutate=offsets)).split()[0])
    assert 3 * 86400 <= inside - host < 3 * 86400 + 60
    for mutate, words in (
            (lambda c: c["linux"].update(timeOffsets={"boottime": {"secs": 5}}), ("time namespace isn't enabled",)),
            (lambda c: (offsets(c), c["linux"]["timeOffsets"].update(realtime={"secs": 1})), ("unknown clock",)),
            (lambda c: (offsets(c), c["linux"]["timeOffsets"].update(boottime={"nanosecs": 10**9})), ("nanosecs",))):
        cid = runtime.new_id()
        one_line_error(runtime("run", "-b", runtime.bundle(["true"], mutate=mutate), cid), *words)
        assert_gone(runtime, cid)


def test_personality(runtime):
    """linux.personality LINUX32: the container's processes see a 32-bit machine (uname)."""
    if os.uname().machine != "x86_64":
        pytest.skip("the 32-bit name checked is x86's")
    b = runtime.bundle(["busybox", "uname", "-m"], mutate=lambda c: c["linux"].update(personality={"domain": "LINUX32"}))
    assert run_ok(runtime, b).strip() == "i686"
    assert run_ok(runtime, runtime.bundle(["busybox", "uname", "-m"])).strip() == "x86_64"
    for pers, words in (({"domain": "LINUX64"}, ("LINUX32",)), ({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]},
                                                                  ("flags",))):
        cid = runtime.new_id()
        b = runtime.bundle(["true"], mutate=lambda c, pers=pers: c["linux"].update(personality=pers))
        one_line_error(runtime("run", "-b", b, cid), *words)
        assert_gone(runtime, cid)


def test_scheduler_and_io_priority(runtime):
    """process.scheduler and process.ioPriority: the policy, nice value and I/O class the
    container's process runs with; a realtime policy within the realtime time its cgroup has
    (none by default on a v1 host with realtime group scheduling: refused by the kernel, one
    line); an unknown policy or class, a priority out of range, refused before anything is made."""
    script = "grep -E '^(policy|prio) ' /proc/self/sched | tr -s ' ' | cut -d' ' -f3; cut -d' ' -f19 /proc/self/stat; ionice"

    def batch(c):
        c["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 7}
    assert run_ok(runtime, runtime.bundle(["sh", "-c", script], mutate=batch)).split() == ["3", "125", "5", "idle"]
    assert run_ok(runtime, runtime.bundle(["sh", "-c", script])).split()[:3] == ["0", "120", "0"]
    rt_cgroup = os.path.exists(os.path.join(CG, "cpu", "cpu.rt_runtime_us"))

    def fifo(c, budget=True):
        c["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}
        if budget and rt_cgroup:
            c["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 10000, "realtimePeriod": 1000000}
    assert run_ok(runtime, runtime.bundle(["sh", "-c", script], mutate=fifo)).split()[:2] == ["1", str(99 - 10)]
    if rt_cgroup:
        cid = runtime.new_id()
        b = runtime.bundle(["true"], mutate=lambda c: fifo(c, budget=False))
        one_line_error(runtime("run", "-b", b, cid), "error setting scheduler", "operation not permitted")
        assert_gone(runtime, cid)
    for mutate, words in ((lambda c: c["process"].update(scheduler={"policy": "SCHED_FOO"}), ("SCHED_FOO",)),
                          (lambda c: c["process"].update(scheduler={"policy": "SCHED_RR", "priority": 100}),
                           ("priority",)),
                          (lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_X", "priority": 1}),
                           ("IOPRIO_CLASS_X",)),
                          (lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 8}),
                           ("ioPriority.priority",))):
        cid = runtime.new_id()
        one_line_error(runtime("run", "-b", runtime.bundle(["true"], mutate=mutate), cid), *words)
        assert_gone(runtime, cid)


def test_exec_cpu_affinity(runtime, tmp_path):
    """process.execCPUAffinity of an exec: `final` is the CPUs it runs on; `initial` alone holds
    until it is in the container's cgroup, whose CPUs it then has; a CPU the machine lacks, one
    line (the container left running)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    cid = runtime.new_id()
    create_detached(runtime, runtime.bundle(["sleep", "30"]), cid, "-d", verb="run")
    got = []
    for aff in ({"final": "1"}, {"initial": "0"}, {"initial": "0", "final": "0"}, {}):
        pj = tmp_path / "p.json"
        pj.write_text(json.dumps({"args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"], "cwd": "/",
                                  "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}, "execCPUAffinity": aff}))
        p = runtime("exec", "-p", str(pj), cid)
        assert p.returncode == 0, p.err
        got.append(p.out.split()[-1])
    every = f"0-{os.cpu_count() - 1}"
    assert got == ["1", every, "0", every]
    pj.write_text(json.dumps({"args": ["true"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
                              "execCPUAffinity": {"final": str(os.cpu_count() + 64)}}))
    one_line_error(runtime("exec", "-p", str(pj), cid), "CPU affinity")
    pj.write_text(json.dumps({"args": ["true"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
                              "execCPUAffinity": {"final": "0-4000000000"}}))  # (not a set of 4e9 CPUs)
    one_line_error(runtime("exec", "-p", str(pj), cid, timeout=10), "invalid CPU range")
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "-f", cid, check=True)


def test_cpu_idle_and_burst(runtime):
    """linux.resources.cpu.idle and .burst (the OCI runtime spec's; runc 1.2 writes them, the
    runc 1.1 here ignores them, as berth-runc did): the cgroup's cpu.idle and CFS burst; a burst
    above the quota is the kernel's EINVAL, one line, nothing left."""
    d = os.path.join(CG, "cpu")
    if not all(os.path.exists(os.path.join(d, f)) for f in ("cpu.idle", "cpu.cfs_burst_us")):
        pytest.skip("this kernel's cpu controller has no cpu.idle or cpu.cfs_burst_us")
    script = "cat /sys/fs/cgroup/cpu/cpu.idle /sys/fs/cgroup/cpu/cpu.cfs_burst_us /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    b = runtime.bundle(["sh", "-c", script], mutate=lambda c: c["linux"].setdefault("resources", {}).update(
        cpu={"quota": 50000, "period": 100000, "burst": 20000, "idle": 1}))
    assert run_ok(runtime, b).split() == ["1", "20000", "50000"]
    for cpu, words in (({"quota": 50000, "period": 100000, "burst": 80000}, ("cpu.cfs_burst_us", "invalid argument")),
                       ({"idle": 2}, ("cpu.idle",))):
        cid = runtime.new_id()
        b = runtime.bundle(["true"], mutate=lambda c, cpu=cpu: c["linux"].setdefault("resources", {}).update(cpu=cpu))
        one_line_error(runtime("run", "-b", b, cid), *words)
        assert_gone(runtime, cid)


def test_intel_rdt_schemas_refused_as_runc(runtime, runc):
    """berth-runc makes no resctrl groups: an Intel RDT schema is refused in runc's words (on a
    host without RDT, as runc refuses it; berth-runc ignored it), a closID alone taken as runc
    takes it."""
    seen = {}
    for rt in (runtime, runc):
        got = []
        for rdt in ({"l3CacheSchema": "L3:0=f"}, {"memBwSchema": "MB:0=70"}, {"closID": "berth"}):
            p = rt("run", "-b", rt.bundle(["true"], mutate=lambda c, rdt=rdt: c["linux"].update(intelRdt=rdt)),
                   rt.new_id())
            err = p.err.strip().replace('\\"', '"')
            got.append((p.returncode, err.split("failed: ")[-1].split("berth-runc: ")[-1].rstrip('"')))
        seen[rt is runc] = got
    if os.path.exists("/sys/fs/resctrl/info"):
        pytest.skip("this host has Intel RDT: runc sets the schemas up")
    assert seen[False] == seen[True]
    assert seen[False][0] == (1, "intelRdt.l3CacheSchema is specified in config, but Intel RDT/CAT is not enabled")


def test_idmapped_bind_mounts(runtime, public_dir):
    """The `idmap` mount option (OCI runtime spec 1.2, runc 1.2): the bind's files are seen through
    the mount's uidMappings/gidMappings, or the container's user namespace's. In a user
    namespace a host directory owned by the host's root is the container root's, writable by
    it (berth-runc dropped the option: nobody's, read-only to it); without one, a mount's own
    mappings show its root's files as another owner. What cannot be done is refused, one line."""
    src = os.path.join(public_dir, "src")
    os.mkdir(src)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    script = "stat -c %u:%g /mnt/f; touch /mnt/made && stat -c %u:%g /mnt/made || true"

    def bind(c, idmap=True, **maps):
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": src,
                            "options": ["bind"] + (["idmap"] if idmap else []), **maps})

    def userns(c, idmap=True):
        c["linux"]["namespaces"].append({"type": "user"})
        for key in ("uidMappings", "gidMappings"):
            c["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        bind(c, idmap)
    got = []
    for idmap in (True, False):
        c = default_config(["sh", "-c", script])
        userns(c, idmap)
        b = make_bundle(os.path.join(public_dir, f"bundle-{idmap}"), None, config=c)
        os.makedirs(os.path.join(b, "rootfs", "mnt"), exist_ok=True)  # (the mapped root may not make it)
        got.append(run_ok(runtime, b).split())
        if os.path.exists(os.path.join(src, "made")):
            got[-1].append(os.stat(os.path.join(src, "made")).st_uid)  # the host's owner of what it made
            os.unlink(os.path.join(src, "made"))
    assert got == [["0:0", "0:0", 0], ["65534:65534"]], got
    one = [{"containerID": 0, "hostID": 1234, "size": 1}]
    out = run_ok(runtime, runtime.bundle(["stat", "-c", "%u:%g", "/mnt/f"],
                                         mutate=lambda c: bind(c, uidMappings=one, gidMappings=one)))
    assert out.split() == ["1234:1234"]
    assert os.stat(os.path.join(src, "f")).st_uid == 0  # the files themselves unchanged
    for mutate, words in ((lambda c: bind(c), ("needs uidMappings and gidMappings",)),
                          (lambda c: bind(c, idmap=False, uidMappings=one, gidMappings=one), ("idmap or ridmap",)),
                          (lambda c: c["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs",
                                                         "options": ["idmap"]}), ("only for bind mounts",))):
        cid = runtime.new_id()
        one_line_error(runtime("run", "-b", runtime.bundle(["true"], mutate=mutate), cid), *words)
        assert_gone(runtime, cid)


def test_net_devices_move_into_the_container(runtime):
    """linux.netDevices (OCI runtime spec 1.2): a host network device moves into the container's
    network namespace under the name given, with its permanent global addresses, and up (berth-
    runc ignored the field: the container had no such device). A name taken in the container,
    a device the host lacks, a container without a network namespace of its own: refused, one
    line, the device left on the host as it was."""
    name = f"bt{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.251.77.1/24", "dev", name], check=True)
        subprocess.run(["ip", "-6", "addr", "add", "fd77::1/64", "dev", name, "nodad"], check=True)
        cid = runtime.new_id()
        taken = runtime("run", "-b", runtime.bundle(["true"], mutate=lambda c: c["linux"].update(
            netDevices={name: {"name": "lo"}})), cid)
        one_line_error(taken, "network device lo exists")
        assert_gone(runtime, cid)
        on_host = subprocess.run(["ip", "addr", "show", name], capture_output=True, text=True).stdout
        assert "inet 10.251.77.1/24" in on_host and "inet6 fd77::1/64" in on_host
        p = runtime("run", "-b", runtime.bundle(["busybox", "ip", "addr"], mutate=lambda c: c["linux"].update(
            netDevices={name: {"name": "ctr0"}})), runtime.new_id())
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)  # (gone with the container's namespace)
    assert p.returncode == 0, p.err
    ctr0 = p.out[p.out.index(": ctr0@"):]
    assert ",UP" in ctr0.split("\n")[0] and "inet 10.251.77.1/24" in ctr0 and "inet6 fd77::1/64" in ctr0, p.out
    for mutate, words in ((lambda c: c["linux"].update(netDevices={"nonexistent0": {}}), ("nonexistent0",)),
                          (lambda c: (c["linux"].update(netDevices={"lo": {}}),
                                      c["linux"].__setitem__("namespaces", [n for n in c["linux"]["namespaces"]
                                                                            if n["type"] != "network"])),
                           ("need a network namespace",))):
        cid = runtime.new_id()
        one_line_error(runtime("run", "-b", runtime.bundle(["true"], mutate=mutate), cid), *words)
        assert_gone(runtime, cid)
