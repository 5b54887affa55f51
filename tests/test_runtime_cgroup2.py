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
