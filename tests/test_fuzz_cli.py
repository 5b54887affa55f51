"""`berth run` / `berth create` fuzz: one to three of their flags (read from `berth run --help`)
with values picked at random (empty, negative, huge, malformed sizes, paths, mappings, names of
things that do not exist...), against a private berthd. Whatever the values, the command either
works or fails with one line on stderr and a non-zero exit: never an internal error or a
traceback; and nothing is left behind. Seeded and bounded.

Nothing leaves the host: `--pull never` is always given and the flags that could reach a
registry (--pull, --platform) are not drawn; the image is a local one and the command `true`."""

import os
import random
import re
import subprocess

import pytest
from daemon_fixtures import BERTH, DATA, Daemon

SEED = 20261203
CASES = 200
IMAGE = "busybox-layers:1"
# flags not drawn: they would pull, wait for a terminal or input, or write files of their own
SKIP = {"--help", "--pull", "--platform", "--attach", "--interactive", "--tty", "--env-file", "--label-file",
        "--cidfile", "--use-api-socket", "--detach-keys", "--sig-proxy"}
VALUES = ["", "x", "-1", "0", "1", "99999999999999999999", "1.5", "a" * 300, "/", "/tmp", "/tmp:/x",
          "/nonexist:/x:ro", "a=b", "=", "a:b:c", "host", "none", "container:x", "always", "unconfined",
          "seccomp=unconfined", "label=disable", "1g", "1k", "-1g", "0-1", "99", "nofile=1:2", "nofile=5:1",
          "net.ipv4.ip_forward=1", "kernel.shmmax=1", "8080:80", "127.0.0.1:1:1/udp", "ALL", "CAP_FOO", "json-file",
          "max-size=1x", "SIGFOO", "9", "tcp", "10.0.0.1", "::1", "de:ad", "a b", "\u00fc",
          "type=bind,source=/tmp,target=/x", "type=tmpfs,destination=/t,tmpfs-size=x", "/dev/null",
          "/dev/nonexist", "c 1:3 rwm", "bogus", "1.2.3"]


@pytest.fixture(scope="module")
def fuzzed_cgroup_parents():
    """--cgroup-parent may be drawn with any of VALUES (::1, /dev/nonexist, a*300): the cgroup
    directories made for one (left when the container goes, as dockerd and runc leave them)
    are removed after the daemon (asked for before it: torn down after it), those that were not
    there before and are empty. Seeds 55 and 77 left /sys/fs/cgroup/*/::1 and .../dev/nonexist."""
    from daemon_fixtures import missing_cgroup_parents_of, remove_made
    made = [d for v in VALUES for d in missing_cgroup_parents_of(v)]
    yield
    remove_made(sorted(made, key=lambda d: d.count("/")))


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    dm = Daemon(tmp_path_factory.mktemp("berthd"))
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.oci.tar"), check=True)
        yield dm
    finally:
        dm.cleanup()


def test_run_and_create_flags_fail_in_one_line_or_work(fuzzed_cgroup_parents, d):
    help_ = subprocess.run([BERTH, "run", "--help"], capture_output=True, text=True, check=True).stdout
    flags = [(m.group(1), m.group(2)) for m in re.finditer(r"^ +(?:-[a-zA-Z], )?(--[a-z0-9-]+)(?: ([a-z]+))?", help_, re.M)
             if m.group(1) not in SKIP]
    assert len(flags) > 80
    rng = random.Random(SEED)
    bad, worked = [], 0
    for _ in range(CASES):
        args = []
        for _ in range(rng.randint(1, 3)):
            flag, kind = rng.choice(flags)
            args += [flag] if kind is None else [flag, rng.choice(VALUES)]
        verb = rng.choice(["run", "create"])
        rm = ["--rm"] if verb == "run" and "--rm" not in args and "--restart" not in args else []
        p = d.berth(verb, "--pull", "never", *rm, *args, IMAGE, "true", timeout=60)
        err = p.err.strip()
        if p.returncode == 0:
            worked += 1
            if verb == "create":
                d.berth("rm", "-f", p.out.strip(), check=True)
        elif len(err.splitlines()) != 1 or "Traceback" in err or "internal error" in err:
            bad.append((args, p.returncode, err[-600:]))
    assert not bad, "\n".join(f"{a} ({rc}): {e}" for a, rc, e in bad[:8])
    assert 10 < worked < CASES
    left = d.berth("ps", "-aq", check=True).out.split()
    for cid in left:  # (a `run -d` that worked is the test's to remove)
        d.berth("rm", "-f", cid)
    assert not d.berth("ps", "-aq", check=True).out.split()
