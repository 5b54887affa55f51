"""berth-runc on a cgroup v2 host. This machine is hybrid (v1 controllers, an empty cgroup2 tree at
/sys/fs/cgroup/unified); each test runs the runtime in a private mount namespace where that cgroup2
tree is mounted at /sys/fs/cgroup, which is what a unified (v2-only) host looks like to it."""

import json
import os
import subprocess
import time
import uuid

from conftest import BERTH_RUNC

UNIFIED = "/sys/fs/cgroup/unified"


def v2(runtime, *args, detach_stdio=False):
    script = 'mount --make-rprivate / && mount --bind "$U" /sys/fs/cgroup && exec "$@"'
    cmd = ["unshare", "-m", "sh", "-c", script, "sh", BERTH_RUNC, "--root", runtime.root, *args]
    if detach_stdio:
        with open(os.path.join(runtime.tmp, "v2.log"), "ab") as log:
            return subprocess.run(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, timeout=30,
                                  env=dict(os.environ, U=UNIFIED))
    return subprocess.run(cmd, capture_output=True, timeout=30, env=dict(os.environ, U=UNIFIED))


def test_a_container_on_cgroup_v2(runtime):
    cid = f"v2-{uuid.uuid4().hex[:8]}"
    runtime.ids.append(cid)
    b = runtime.bundle(["sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup/cgroup.procs"])
    p = v2(runtime, "run", "-b", b, cid)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode().split()
    assert "0::/" in out  # in the v2 tree, its own cgroup namespace is rooted at its cgroup
    assert out[-1] == "/sys/fs/cgroup/cgroup.procs"  # /sys/fs/cgroup is a cgroup2 mount
    assert not os.path.exists(os.path.join(UNIFIED, cid))


def test_pause_and_resume_with_cgroup_freeze(runtime):
    cid = f"v2-{uuid.uuid4().hex[:8]}"
    runtime.ids.append(cid)
    b = runtime.bundle(["sleep", "30"])
    p = v2(runtime, "run", "-d", "-b", b, cid, detach_stdio=True)
    assert p.returncode == 0
    try:
        st = json.loads(v2(runtime, "state", cid).stdout)
        assert st["status"] == "running"
        cg = os.path.join(UNIFIED, cid)
        assert str(st["pid"]) in open(os.path.join(cg, "cgroup.procs")).read().split()
        assert v2(runtime, "pause", cid).returncode == 0
        assert open(os.path.join(cg, "cgroup.freeze")).read().strip() == "1"
        assert json.loads(v2(runtime, "state", cid).stdout)["status"] == "paused"
        assert v2(runtime, "resume", cid).returncode == 0
        assert json.loads(v2(runtime, "state", cid).stdout)["status"] == "running"
    finally:
        v2(runtime, "delete", "-f", cid)
    deadline = time.monotonic() + 5
    while os.path.exists(os.path.join(UNIFIED, cid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(os.path.join(UNIFIED, cid))


def _v2_run(binary, root, bundle, cid):
    script = 'mount --make-rprivate / && mount --bind "$U" /sys/fs/cgroup && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", binary, "--root", root, "run", "-b", bundle, cid],
                          capture_output=True, timeout=30, env=dict(os.environ, U=UNIFIED))


def test_device_rules_on_cgroup_v2_as_runc(runtime, runc):
    """cgroup v2 has no devices.allow/deny: the rules are an eBPF program attached to the
    container's cgroup, as runc's devicefilter. berth-runc ignored them on v2: a process with
    CAP_MKNOD could make and open any device node (the host's disks). Side by side with runc:
    a device the defaults leave out refused, the defaults allowed, a rule for one device and one
    access honoured, a deny-all-then-allow-all list (privileged) allowing every device."""
    script = ("for d in 1:3 1:7 10:229 10:183; do n=/tmp/k$(echo $d | tr : _); mknod $n c ${d%:*} ${d#*:}; "
              "(exec 3<$n) 2>/dev/null; r=$?; (exec 3>$n) 2>/dev/null; echo $d=$r$?; rm -f $n; done")
    cases = [None, [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"}],
             [{"allow": False, "access": "rwm"}, {"allow": True, "access": "rwm"}]]
    seen = {}
    for rt in (runtime, runc):
        got = []
        for rules in cases:
            def spec(c, rules=rules):
                for k in ("bounding", "effective", "permitted"):
                    c["process"]["capabilities"][k] = list(c["process"]["capabilities"].get(k) or []) + ["CAP_MKNOD"]
                if rules is not None:
                    c["linux"]["resources"] = {"devices": rules}
            cid = rt.new_id("dv")
            p = _v2_run(rt.binary, rt.root, rt.bundle(["sh", "-c", script], mutate=spec), cid)
            got.append((p.returncode, p.stdout.decode().split()))
        seen[rt is runc] = got
    assert seen[False][0] == (0, ["1:3=00", "1:7=00", "10:229=11", "10:183=11"]), seen[False]
    assert seen[False][1][1][2] == "10:229=01" and seen[False][2][1][2] == "10:229=00", seen[False]
    assert seen[False] == seen[True]


def test_device_filters_of_many_rule_lists_pass_the_kernels_verifier(tmp_path):
    """Every shape of rule list an engine sends makes a program the kernel loads and attaches:
    docker's defaults, a privileged container's, partial accesses, block devices, wildcards."""
    from berth.linux import devfilter
    from berth.runtime.container import _with_default_devices
    lists = [
        [],
        [{"allow": False, "access": "rwm"}],
        [{"allow": True, "access": "rwm"}],
        [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
         {"allow": True, "type": "b", "major": 8, "minor": -1, "access": "r"},
         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
         {"allow": True, "type": "c", "major": -1, "minor": 5, "access": "m"}],
        [{"allow": True, "access": "rwm"}, {"allow": False, "type": "b", "major": 254, "minor": 0, "access": "rwm"}],
    ]
    cg = os.path.join(UNIFIED, f"berth-test-devfilter-{uuid.uuid4().hex[:8]}")
    os.mkdir(cg)
    try:
        for rules in lists:
            full = _with_default_devices({"resources": {"devices": rules}})["devices"]
            devfilter.attach(cg, full)  # OSError (the verifier's words) where the kernel refuses it
    finally:
        os.rmdir(cg)
