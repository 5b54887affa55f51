"""The berth CLI's exit codes are the docker CLI's: the same failing command, sent by both CLIs
to the same berthd, ends with the same status. The docker CLI's rule (28.x, checked command by
command): 125 for a flag it cannot parse or a value of run/create's flags it refuses, 1 for the
wrong number of arguments, an unknown command and any error of the daemon, except `run`'s
(125; 126/127 for a command that cannot be invoked or is not found); `rm -f` and `rmi -f` of
something that is not there succeed.

Each row is a command that fails (or that docker lets succeed where berth once failed); both
CLIs get /dev/null as stdin and no terminal."""

import os
import shutil

import pytest
from daemon_fixtures import BERTH, DATA, Daemon, _run

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")

IMG = "busybox-layers:1"
RUN, STOP = "xc-running", "xc-stopped"
NOFILE = "/nonexistent/x.tar"
GARBAGE = b"this is not a tar archive\n" * 10

# (args, stdin)
CASES = [
    # flags: 125
    (["ps", "--bogus"], None),
    (["--bogus", "ps"], None),
    (["images", "--filter"], None),
    (["ps", "--filter", "bogus"], None),
    (["stop", "-t", "abc", RUN], None),
    (["update", "--memory", "bogus", RUN], None),
    (["exec", "-e", "", RUN, "true"], None),
    (["run", "--rm=bogus", IMG, "true"], None),
    # arguments, commands: 1 (a group alone: its usage, 0)
    (["logs"], None),
    (["rm"], None),
    (["logs", "a", "b"], None),
    (["exec", RUN], None),
    (["tag", IMG], None),
    (["network", "create"], None),
    (["bogus"], None),
    (["system", "bogus"], None),
    (["network"], None),
    # the daemon's errors outside run: 1
    (["wait", "missing-c"], None),
    (["logs", "missing-c"], None),
    (["top", "missing-c"], None),
    (["top", STOP], None),
    (["port", "missing-c"], None),
    (["port", RUN, "9999"], None),
    (["rename", "missing-c", "newname"], None),
    (["exec", "missing-c", "true"], None),
    (["exec", STOP, "true"], None),
    (["diff", "missing-c"], None),
    (["export", "-o", "/nonexistent/dir/x.tar", "missing-c"], None),
    (["start", "-a", "missing-c"], None),
    (["attach", "missing-c"], None),
    (["attach", STOP], None),
    (["commit", "missing-c", "x:1"], None),
    (["cp", "missing-c:/etc/passwd", "/nonexistent/dir/x"], None),
    (["cp", RUN + ":/nonexistent", "/nonexistent/dir/x"], None),
    (["kill", "missing-c"], None),
    (["inspect", "--type", "bogus", "x"], None),
    (["tag", "missing-i:1", "x:1"], None),
    (["tag", IMG, "BAD:NAME"], None),
    (["history", "missing-i:1"], None),
    (["images", "--filter", "bogus=1"], None),
    (["ps", "--filter", "bogus=1"], None),
    (["rmi", "missing-i:1"], None),
    (["save", "-o", "/nonexistent/dir/x.tar", "missing-i:1"], None),
    (["load"], GARBAGE),
    (["load", "-i", NOFILE], None),
    (["import", "-", "imp:1"], GARBAGE),
    (["pull", "BAD:NAME"], None),
    (["container", "prune", "-f", "--filter", "bogus=1"], None),
    (["network", "prune", "-f", "--filter", "bogus=1"], None),
    (["volume", "prune", "-f", "--filter", "bogus=1"], None),
    (["system", "prune", "-f", "--filter", "bogus=1"], None),
    (["network", "create", "xc-net"], None),
    (["network", "connect", "missing-net", RUN], None),
    (["network", "disconnect", "xc-net", RUN], None),
    (["volume", "create", "-d", "bogus", "xc-vol2"], None),
    (["volume", "rm", "xc-vol"], None),
    (["update", "--restart", "always:x", RUN], None),
    (["exec", "-it", RUN, "true"], None),
    (["ps"], None, "unix:///nonexistent/berth.sock"),
    # create: its flags 125, the daemon's errors 1
    (["create", "-m", "bogus", IMG], None),
    (["create", "--sysctl", "vm.x=1", IMG], None),
    (["create", "--mac-address", "bogus", IMG], None),
    (["create", "--mount", "type=volume,source=v", IMG], None),
    (["create", "-v", ":/x", IMG], None),
    (["create", "-v", "a:b:c:d", IMG], None),
    (["create", "--restart", "bogus", IMG], None),
    (["create", "--name", RUN, IMG], None),
    (["create", "--pull", "never", "missing-i:1"], None),
    (["create", "--cidfile", "/etc/hostname", IMG], None),
    # run: 125, 126, 127 (and 1 for what docker checks after the flags)
    (["run", "--pull", "never", "missing-i:1"], None),
    (["run", "--name", RUN, IMG, "true"], None),
    (["run", "--rm", IMG, "/nonexistent-cmd"], None),
    (["run", "--rm", IMG, "/etc"], None),
    (["run", "-d", "-a", "stdout", IMG], None),
    (["run", "-it", IMG], None),
    (["run", IMG], None, "unix:///nonexistent/berth.sock"),
    # -f: what is not there is no failure; a prune without -f asks, and no answer is 0
    (["rm", "-f", "missing-c"], None),
    (["rmi", "-f", "missing-i:1"], None),
    (["image", "prune"], None),
    (["volume", "prune"], None),
    # a boolean flag's value, as pflag
    (["run", "--rm=false", IMG, "true"], None),
    (["commit", "-p=false", "missing-c"], None),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    dm = Daemon(tmp_path_factory.mktemp("berthd"))
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        dm.berth("network", "create", "xc-net", check=True)
        dm.berth("volume", "create", "xc-vol", check=True)
        dm.berth("run", "-d", "--name", RUN, "-v", "xc-vol:/data", IMG, "sleep", "3600", check=True)
        dm.berth("create", "--name", STOP, IMG, "true", check=True)
        yield dm
    finally:
        dm.berth("rm", "-f", RUN, STOP)
        dm.cleanup()


def test_the_same_exit_codes_as_the_docker_cli(d):
    before = set(d.berth("ps", "-aq", check=True).out.split())
    wrong, unclear = [], []
    for args, stdin, *host in CASES:
        h = host[0] if host else d.host
        theirs = _run(["docker", "-H", h, *args], stdin, False, 60, d.env())
        ours = _run([BERTH, "-H", h, *args], stdin, False, 60, d.env())
        if ours.returncode != theirs.returncode:
            wrong.append(f"{' '.join(args)}: berth {ours.returncode}, docker {theirs.returncode} "
                         f"({theirs.err.strip().splitlines()[:1]} / {ours.err.strip().splitlines()[:1]})")
        lines = ours.err.strip().splitlines()
        if "Traceback" in ours.err or "internal error" in ours.err or \
                ours.returncode not in (0, 126, 127) and not (len(lines) == 1 and lines[0].startswith("berth: ")):
            unclear.append(f"{' '.join(args)}: {ours.err!r}")  # a user error is one line, never a traceback
        # what docker created (a create that worked for one of them) must not mislead the next row
        made = set(d.berth("ps", "-aq", check=True).out.split()) - before
        if made:
            d.berth("rm", "-f", *made)
    assert not wrong, f"{len(wrong)} of {len(CASES)} exit codes differ:\n" + "\n".join(wrong)
    assert not unclear, "\n".join(unclear)
