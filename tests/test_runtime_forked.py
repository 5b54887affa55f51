"""The runtime library's create_forked: how the shim creates a container of berth's own runtime
without a helper process (it forks the init straight into its PID namespace; the init reads the
spec, makes its state and cgroup, joins them and sets itself up). What a caller sees must be
create()'s: the same state, the same errors, nothing left behind by a failure.

The caller is a separate process (a driver script, as the shim is its own process): the library
forks without Python's at-fork handlers, which only a single-threaded caller may do."""

import json
import os
import subprocess
import sys

import pytest

from bundles import default_config

DRIVER = r"""
import json, os, sys
from berth.linux import syscalls as sc
from berth.runtime import container as c, state
root, cid, bundle, pidns, mode = sys.argv[1:6]
sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)  # as the shim: its containers' inits are its own to reap
out = {"self": os.getpid()}
try:
    pid = c.create_forked(root, cid, bundle, "" if pidns == "-" else pidns, None, os.path.join(root, cid + ".pid"))
except Exception as e:
    out.update(error=type(e).__name__, msg=str(e))
    print("\n" + json.dumps(out), flush=True)
    sys.exit(0)
with open(f"/proc/{pid}/stat") as f:
    out["ppid"] = int(f.read().rsplit(")", 1)[1].split()[1])
out["pid"] = pid
out["pidfile"] = open(os.path.join(root, cid + ".pid")).read()
out["state"] = state.load(root, cid).oci()
out["children_in_own_pidns"] = os.readlink("/proc/self/ns/pid") == os.readlink("/proc/self/ns/pid_for_children")
out["cgroup"] = open(f"/proc/{pid}/cgroup").read()
if mode == "run":
    sys.stdout.flush()
    c.release(root, cid, pid)
    _, status = os.waitpid(pid, 0)
    out["exit"] = os.waitstatus_to_exitcode(status)
    c.delete(root, cid)
print("\n" + json.dumps(out), flush=True)
"""


def forked(runtime, cid, bundle, pidns="new", mode="run"):
    """Run the driver: (the container's output, the driver's findings)."""
    p = subprocess.run([sys.executable, "-c", DRIVER, runtime.root, cid, bundle, pidns or "-", mode],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out, _, last = p.stdout.rstrip("\n").rpartition("\n")
    return out, json.loads(last)


def test_the_init_is_the_callers_child_pid_1_in_its_cgroup(runtime):
    cid = runtime.new_id()
    b = runtime.bundle(["sh", "-c", "echo $$; hostname; exit 7"],
                       mutate=lambda c: c.update(hostname="forked", annotations={"k": "v"}))
    out, r = forked(runtime, cid, b)
    assert "error" not in r, r
    assert r["ppid"] == r["self"]  # no helper between them
    assert r["pidfile"] == str(r["pid"])
    st = r["state"]
    assert (st["id"], st["status"], st["pid"], st["bundle"], st["annotations"]) == (cid, "created", r["pid"], b, {"k": "v"})
    assert r["children_in_own_pidns"]  # the caller's next child is in the caller's namespace again
    assert any(line.endswith("/" + cid) for line in r["cgroup"].splitlines())
    assert out.split() == ["1", "forked"]
    assert r["exit"] == 7
    assert not os.path.exists(os.path.join(runtime.root, cid))  # deleted by the driver


def test_the_init_joins_the_pid_namespace_it_is_given(runtime):
    first = runtime.new_id()
    runtime("create", "-b", runtime.bundle(["sleep", "30"]), first, check=True)
    runtime("start", first, check=True)
    try:
        pid = runtime.state(first)["pid"]
        cid = runtime.new_id()
        b = runtime.bundle(["ps", "-o", "pid,args"], mutate=lambda c: c["linux"]["namespaces"].remove({"type": "pid"}))
        b_cfg = json.load(open(os.path.join(b, "config.json")))
        assert not any(ns["type"] == "pid" for ns in b_cfg["linux"]["namespaces"])
        out, r = forked(runtime, cid, b, pidns=f"/proc/{pid}/ns/pid")
        assert "error" not in r, r
        assert r["exit"] == 0
        assert any(line.split()[:2] == ["1", "sleep"] for line in out.splitlines()), out  # the first one's init
        assert r["children_in_own_pidns"]
    finally:
        runtime("delete", "-f", first)


def _no_trace(runtime, cid):
    assert not os.path.exists(os.path.join(runtime.root, cid))
    for h in os.listdir("/sys/fs/cgroup"):
        assert not os.path.exists(os.path.join("/sys/fs/cgroup", h, cid)), h


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda c, missing: c["process"].update(cwd="relative"), id="spec"),
    pytest.param(lambda c, missing: c["mounts"].append({"destination": "/data", "type": "bind", "source": missing,
                                                        "options": ["rbind"]}), id="init-setup"),
    pytest.param(lambda c, missing: c["linux"].update(sysctl={"net.no.such.key": "1"}), id="sysctl"),
])
def test_a_failure_says_what_create_says_and_leaves_nothing(runtime, mutate, tmp_path):
    # a path of the test's own that does not exist (a fixed one such as /no/such/dir may have been
    # made on the host by something else: a CRI mount of a missing host path creates it)
    missing = str(tmp_path / "no-such-dir")
    b = runtime.bundle(["true"], mutate=lambda c: mutate(c, missing))
    ref = runtime.new_id()
    p = runtime("create", "-b", b, ref)
    assert p.returncode != 0
    cid = runtime.new_id()
    _, r = forked(runtime, cid, b)
    assert r.get("error"), r
    assert r["msg"] in p.err, (r, p.err)
    _no_trace(runtime, cid)
    _no_trace(runtime, ref)


def test_an_id_in_use_is_refused_and_its_container_kept(runtime):
    cid = runtime.new_id()
    b = runtime.bundle(["sleep", "30"])
    runtime("create", "-b", b, cid, check=True)
    try:
        _, r = forked(runtime, cid, b)
        assert (r.get("error"), r.get("msg")) == ("AlreadyExists", "container with given ID already exists")
        assert runtime.state(cid)["status"] == "created"
    finally:
        runtime("delete", "-f", cid)


def _killed_during_setup(runtime, tmp_path, argv):
    """Run argv + [bundle] for a bundle whose createContainer hook (a child of the init, during
    its set-up) writes its parent's pid as the host sees it, then sleeps: that init is killed
    meanwhile. Returns (exit status, stdout, stderr)."""
    import signal
    import time
    mark = tmp_path / f"init-{len(list(tmp_path.glob('init-*')))}"
    script = f"read -r _ _ _ init _ < /proc/self/stat; echo $init > {mark}.tmp; mv {mark}.tmp {mark}; sleep 30"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", script]}
    b = runtime.bundle(["true"], mutate=lambda c: c.update(hooks={"createContainer": [hook]}))
    p = subprocess.Popen(argv + [b], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(int(mark.read_text()), signal.SIGKILL)
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


def test_an_init_killed_during_its_setup_is_an_error_and_leaves_nothing(runtime, tmp_path):
    ref = runtime.new_id()
    code, _, err = _killed_during_setup(runtime, tmp_path, [runtime.binary, "--root", runtime.root, "create", ref, "-b"])
    assert code != 0
    cid = runtime.new_id()
    code, out, _ = _killed_during_setup(runtime, tmp_path, [sys.executable, "-c", DRIVER.replace(
        "root, cid, bundle, pidns, mode = sys.argv[1:6]", "root, cid, pidns, mode, bundle = sys.argv[1:6]"),
        runtime.root, cid, "new", "run"])
    assert code == 0
    r = json.loads(out.rstrip("\n").rpartition("\n")[2])
    assert (r.get("error"), r.get("msg")) == ("SystemError_", "container init exited unexpectedly during setup"), r
    assert r["msg"] in err
    _no_trace(runtime, cid)
    _no_trace(runtime, ref)


def test_which_specs_the_caller_creates_this_way():
    from berth.runtime.container import direct_pidns
    c = default_config(["true"])
    assert direct_pidns(c) == "new"
    assert direct_pidns(c, systemd=True) is None  # the unit takes the pid systemd sees
    c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "pid"]
    assert direct_pidns(c) == ""  # the caller's
    c["linux"]["namespaces"].append({"type": "pid", "path": "/proc/1/ns/pid"})
    assert direct_pidns(c) == "/proc/1/ns/pid"
    for extra in ({"type": "user"}, {"type": "time"}, {"type": "mount", "path": "/proc/1/ns/mnt"}):
        assert direct_pidns(dict(c, linux=dict(c["linux"], namespaces=c["linux"]["namespaces"] + [extra]))) is None
    assert direct_pidns(dict(c, hooks={"prestart": [{"path": "/bin/true"}]})) is None
    assert direct_pidns(dict(c, hooks={"createRuntime": [{"path": "/bin/true"}]})) is None
    assert direct_pidns(dict(c, hooks={"createContainer": [{"path": "/bin/true"}]})) == "/proc/1/ns/pid"
