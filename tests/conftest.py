"""Shared fixtures: the real berth-runc binary, a private state root, busybox bundles,
and a check that every test leaves no container, cgroup or mount behind."""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.dirname(HERE)

from bundles import default_config, make_bundle  # noqa: E402

BERTH_RUNC = os.environ.get("BERTH_RUNC") or os.path.join(REPO, ".venv", "bin", "berth-runc")
CGROUP_ROOT = "/sys/fs/cgroup"


def _mounts():
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


class Runtime:
    """Drives a runtime binary (berth-runc or runc) with its own --root."""

    def __init__(self, binary, root, tmp):
        self.binary = binary
        self.root = root
        self.tmp = tmp
        self.ids = []

    def new_id(self, prefix="t"):
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args, input=None, timeout=30, check=False, env=None, extra_globals=()):
        # Files, not pipes: a detached container inherits the runtime's stdio (as with runc),
        # so a pipe would stay open as long as the container lives.
        import tempfile
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([self.binary, "--root", self.root, *extra_globals, *args],
                               input=input, stdin=None if input is not None else subprocess.DEVNULL,
                               stdout=out, stderr=err, timeout=timeout, env=env)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        p.out = p.stdout.decode(errors="replace")
        p.err = p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"{args} failed ({p.returncode}): {p.err}")
        return p

    def bundle(self, args=("true",), config=None, mutate=None, terminal=False):
        path = os.path.join(self.tmp, f"bundle-{uuid.uuid4().hex[:8]}")
        c = config if config is not None else default_config(args, terminal)
        if mutate:
            mutate(c)
        return make_bundle(path, args, config=c)

    def state(self, cid):
        p = self("state", cid, check=True)
        return json.loads(p.out)

    def cleanup(self):
        for cid in self.ids:
            self("delete", "--force", cid)


@pytest.fixture
def runtime(tmp_path):
    root = str(tmp_path / "state")
    before = _mounts()
    rt = Runtime(BERTH_RUNC, root, str(tmp_path))
    yield rt
    rt.cleanup()
    leftover = [cid for cid in rt.ids if os.path.exists(os.path.join(root, cid))]
    assert not leftover, f"state left behind for {leftover}"
    for cid in rt.ids:
        for h in os.listdir(CGROUP_ROOT):
            assert not os.path.exists(os.path.join(CGROUP_ROOT, h, cid)), f"cgroup {h}/{cid} left behind"
    # only what this test made counts: mounts under its own directory or named after its
    # containers (other tests, daemons and engines on the host mount things meanwhile)
    new = {m for m in _mounts() - before if m.startswith(str(tmp_path)) or any(cid in m for cid in rt.ids)}
    assert new == set(), f"mounts left behind: {sorted(new)}"


@pytest.fixture
def runc(tmp_path):
    binary = shutil.which("runc")
    if not binary:
        pytest.skip("runc is not installed")
    rt = Runtime(binary, str(tmp_path / "runc-state"), str(tmp_path))
    yield rt
    rt.cleanup()


def pytest_configure(config):
    if os.environ.get("BERTH_LEAKCHECK") == "1":  # tests/leakcheck.py: what each test leaves on the host
        import leakcheck
        leakcheck.register(config)


def bundle_config(rt, path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session", autouse=True)
def _nothing_mounted_in_tmp(tmp_path_factory):
    """pytest deletes the passed tests' temporary directories at the end of the run
    (tmp_path_retention_policy = "failed"): anything still mounted under them is detached first,
    so that the deletion never reaches through a mount into what it shows (a bind of a host
    directory). The tests' own leak checks are meant to leave nothing for this to do."""
    yield
    from daemon_fixtures import unmount_under
    unmount_under(str(tmp_path_factory.getbasetemp()) + "/")


@pytest.fixture(scope="session", autouse=True)
def _shared_cni_chains():
    """The CNI plugins leave chains every CNI user shares (CNI-FORWARD, CNI-HOSTPORT-*); berthd
    keeps them while it may race another CNI user. At the end of the run, when none of this
    run's daemons is left, the empty ones this run made go."""
    def chains():  # IPv4's and IPv6's
        out = set()
        for prog in ("iptables-save", "ip6tables-save"):
            if shutil.which(prog):
                p = subprocess.run([prog], capture_output=True, text=True)
                out |= {prog[:-5] + ":" + line.split()[0][1:] for line in p.stdout.splitlines() if line.startswith(":CNI-")}
        return out
    before = chains() if shutil.which("iptables-save") else None
    yield
    if before is None or before:  # another engine's chains were there already: not ours to remove
        return
    from berth.linux import iptables
    iptables.remove_shared_cni_chains()


@pytest.fixture(scope="session", autouse=True)
def _run_netns():
    """`ip netns add` (test_dns's namespaces) makes /run/netns and mounts it on itself, which
    `ip netns del` never undoes: at the end of the run, when it is empty again, the mount goes
    if this run made it, and the directory too if this run made that (one that another engine
    put a namespace in stays)."""
    path = "/run/netns"

    def mounted():  # a bind mount on itself: os.path.ismount does not see it
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    existed, was_mounted = os.path.lexists(path), mounted()
    yield
    if was_mounted or not os.path.isdir(path) or os.listdir(path):
        return
    for _ in range(4):  # stacked if made twice
        if not mounted():
            break
        subprocess.run(["umount", path], capture_output=True)
    if not existed:
        try:
            os.rmdir(path)
        except OSError:
            pass


@pytest.fixture(scope="session", autouse=True)
def _shared_cgroup_parents():
    """The parents under which the run's daemons put their containers (berth for docker's side,
    k8s.io for CRI pods, berth-test for the containerd peer's namespace) and the peers' default
    state directories: at the end of the run, those that it made and that are empty again go (a
    busy one stays: rmdir refuses)."""
    from daemon_fixtures import missing_cgroup_parents, missing_dirs, remove_made
    made = [d for name in ("berth", "k8s.io", "berth-test") for d in missing_cgroup_parents(name)]
    # the peers' default state directories that they make whatever their own roots: runc's root
    # (an exec or a state without --root) and buildah's network config directory
    made += missing_dirs(["/run/runc", "/run/containers", "/run/containers/networks"])
    # and the containerd peers' and dockerd's host directories (host_dirs_containerd_makes): each
    # peer removes those it made, but two peers at once each leave them to the other (a run left
    # an empty /run/containerd/s so): those this run made go when empty, whatever is under them
    trees = missing_dirs(["/run/containerd", "/run/docker"])
    yield
    remove_made(made)
    for top in trees:
        for d, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(d)
            except OSError:
                pass
