"""The engine core as a client sees it: the container state machine (restarting, kill that
returns once the exit is recorded, delete conflicts), the shim's events (no lost exits, no
hung `run --rm`), and another OCI runtime (gVisor's runsc) on every kind of network, with its
errors reaching the client with docker's exit codes.

Every test removes the containers (and networks) it made."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from daemon_fixtures import DATA, Daemon, ppid, reserved_addresses, wait_for

IMG = "busybox-layers:1"
RUNSC = shutil.which("runsc")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    extra = '[runtimes.berth-runc]\npath = "berth-runc"\n[runtimes.runc]\npath = "runc"\n'
    if RUNSC:
        extra += f'[runtimes.runsc]\npath = "{RUNSC}"\n'
    extra += '[runtimes.broken]\npath = "/bin/false"\n'
    base = tmp_path_factory.mktemp("core")
    # runc, whose delete takes a second; what it is asked is written to slow-runc.log
    script = os.path.join(base, "slow-runc")
    with open(script, "w") as f:
        f.write(f'#!/bin/sh\nlog={base}/slow-runc.log\nfor a; do case "$a" in\n'
                '  delete) echo delete >> "$log"; sleep 1; runc "$@"; rc=$?; echo deleted >> "$log"; exit $rc;;\n'
                '  create|run) echo "$a" >> "$log"; exec runc "$@";;\nesac; done\nexec runc "$@"\n')
    os.chmod(script, 0o755)
    extra += f'[runtimes.slow-runc]\npath = "{script}"\n'
    dm = Daemon(base, extra_config=extra)
    dm.start()
    dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    yield dm
    ids = dm.berth("ps", "-a", "-q", "--no-trunc").out.split()
    if ids:
        dm.berth("rm", "-f", *ids)
    dm.cleanup()


@pytest.fixture
def c(d):
    """The daemon; the containers a test leaves are force-removed afterwards."""
    try:
        yield d
    finally:
        ids = d.berth("ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            d.berth("rm", "-f", *ids)


def inspect(d, ref):
    return json.loads(d.berth("inspect", ref, check=True).out)[0]


def api(d, method, path, body=None, timeout=30):
    """One request to berthd's API over its socket: (status, body bytes)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(d.sock)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


# --- the state machine -----------------------------------------------------------------------


def test_restarting_between_an_exit_and_its_restart_and_delete_conflicts(c):
    """docker: between an exit and the restart its policy asks for, inspect says restarting and a
    plain DELETE answers 409; rm -f removes it."""
    cid = c.berth("run", "-d", "--restart", "always", IMG, "sh", "-c", "exit 2", check=True).out.strip()
    seen = []

    def restarting():
        st = inspect(c, cid)["State"]
        seen.append(st["Status"])
        return st["Status"] == "restarting" and st["Restarting"] and st["ExitCode"] == 2
    wait_for(restarting, 30, "the restarting state")
    status, body = api(c, "DELETE", f"/containers/{cid}")
    if status != 409:  # it may have been restarted between the two calls: catch it once more
        wait_for(restarting, 30, "the restarting state again")
        status, body = api(c, "DELETE", f"/containers/{cid}")
    assert status == 409, body
    assert "restarting" in json.loads(body)["message"] or "running" in json.loads(body)["message"]
    assert int(inspect(c, cid)["RestartCount"]) >= 1
    c.berth("rm", "-f", cid, check=True)
    assert c.berth("inspect", cid).returncode != 0


def test_kill_returns_once_the_exit_is_recorded(c):
    cid = c.berth("run", "-d", IMG, "sleep", "60", check=True).out.strip()
    status, body = api(c, "POST", f"/containers/{cid}/kill?signal=SIGKILL")
    assert status == 204, body
    st = inspect(c, cid)["State"]  # at once, no waiting
    assert st["Status"] == "exited" and st["ExitCode"] == 137 and not st["Running"] and st["Pid"] == 0


def test_a_stop_is_answered_before_the_runtimes_delete_and_the_next_start_waits_for_it(c):
    """The exit is recorded (and the stop answered) as soon as the shim reaps the process; the
    runtime's delete of that run (here a runc whose delete takes a second) comes after, and the
    container's next start, or its removal, waits for it: never two runs of one id at once."""
    log = os.path.join(c.base, "slow-runc.log")
    cid = c.berth("run", "-d", "--runtime", "slow-runc", "--network", "none", IMG, "sleep", "60",
                  check=True).out.strip()
    c.berth("stop", "-t", "0", cid, check=True)
    assert inspect(c, cid)["State"]["Status"] == "exited"
    with open(log) as f:
        assert "deleted" not in f.read().split()  # the stop did not wait for the delete
    c.berth("start", cid, check=True)
    with open(log) as f:
        assert f.read().split()[-3:] == ["delete", "deleted", "create"]
    assert inspect(c, cid)["State"]["Running"]
    c.berth("rm", "-f", cid, check=True)
    with open(log) as f:
        assert f.read().split()[-2:] == ["delete", "deleted"]  # the removal waited for it too
    os.unlink(log)


def test_kill_of_a_stopped_container_is_a_conflict(c):
    cid = c.berth("create", IMG, "true", check=True).out.strip()
    status, body = api(c, "POST", f"/containers/{cid}/kill")
    assert status == 409, body


def test_force_delete_racing_the_exit_is_never_a_500(c):
    """DELETE ?force=1 while the process exits by itself (the old os.kill of a gone pid)."""
    for i in range(8):
        cid = c.berth("run", "-d", IMG, "sh", "-c", f"usleep {i * 2500}", check=True).out.strip()
        status, body = api(c, "DELETE", f"/containers/{cid}?force=1")
        assert status in (204, 404), body
        assert c.berth("inspect", cid).returncode != 0


def test_waits_block_on_transitions(c):
    """wait (next-exit) answers when the container exits, with its code; started later it still
    answers. A wait for not-running (the default) of one never started answers at once, as
    dockerd's."""
    cid = c.berth("create", IMG, "sh", "-c", "sleep 0.3; exit 7", check=True).out.strip()
    status, body = api(c, "POST", f"/containers/{cid}/wait", timeout=20)
    assert status == 200 and b'"StatusCode":0' in body  # (compact, as dockerd writes it)
    got = {}

    def waiter():
        got["status"], got["body"] = api(c, "POST", f"/containers/{cid}/wait?condition=next-exit", timeout=60)
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    assert "status" not in got  # created: it waits for the start, then for the exit
    c.berth("start", cid, check=True)
    t.join(30)
    assert got["status"] == 200
    assert json.loads(got["body"].split(b"\r\n")[1] if b"\r\n" in got["body"] else got["body"])["StatusCode"] == 7


def test_pause_and_unpause_are_states(c):
    cid = c.berth("run", "-d", IMG, "sleep", "60", check=True).out.strip()
    c.berth("pause", cid, check=True)
    st = inspect(c, cid)["State"]
    assert st["Status"] == "paused" and st["Paused"] and st["Running"]
    p = c.berth("pause", cid)
    assert p.returncode != 0 and "already paused" in p.err
    c.berth("unpause", cid, check=True)
    assert inspect(c, cid)["State"]["Status"] == "running"
    c.berth("stop", "-t", "1", cid, check=True)
    assert inspect(c, cid)["State"]["Status"] == "exited"


SLOW_BRIDGE_ADD = """#!/bin/sh
# the bridge plugin, its ADD half a second slower; each ADD noted in adds/, and in done/ once over
[ "$CNI_COMMAND" = ADD ] || exec /usr/lib/cni/bridge
here=$(dirname "$0")
touch "$here/adds/$$"
sleep 0.5
/usr/lib/cni/bridge
rc=$?
touch "$here/done/$$"
exit $rc
"""


@pytest.fixture
def slow_add(tmp_path):
    """A daemon of its own whose containers' network attachment takes half a second (its
    bridge plugin's ADD)."""
    if not os.access("/usr/lib/cni/bridge", os.X_OK):
        pytest.skip("no /usr/lib/cni/bridge")
    bindir = tmp_path / "cni-bin"
    (bindir / "adds").mkdir(parents=True)
    (bindir / "done").mkdir()
    (bindir / "bridge").write_text(SLOW_BRIDGE_ADD)
    (bindir / "bridge").chmod(0o755)
    dm = Daemon(tmp_path / "d", extra_config=f'cni_plugin_dirs = ["{bindir}", "/usr/lib/cni", "/opt/cni/bin"]\n')
    dm.adds, dm.added = bindir / "adds", bindir / "done"
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        yield dm
    finally:
        ids = dm.berth("ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            dm.berth("rm", "-f", *ids)
        dm.cleanup()



def test_rm_f_while_its_restart_policy_starts_it_leaves_no_rules(slow_add):
    """rm -f of a container its restart policy is starting again (its network being attached):
    the removal waits for that start, then undoes it: the container is gone and none of its
    addresses stays reserved, nothing of it in the CNI cache."""
    dm = slow_add
    cid = dm.berth("run", "-d", "--restart", "always", IMG, "sh", "-c", "exit 2", check=True).out.strip()
    wait_for(lambda: len(os.listdir(dm.adds)) >= 2, 30, "the restart's network attachment")
    dm.berth("rm", "-f", cid, check=True)
    assert dm.berth("inspect", cid).returncode != 0
    wait_for(lambda: len(os.listdir(dm.added)) == len(os.listdir(dm.adds)), 10, "every ADD to be over")
    assert reserved_addresses(dm.state) == []
    assert os.listdir(os.path.join(dm.state, "cni", "results")) == []
    assert "Traceback" not in dm.log()


def test_starts_of_one_container_at_once_make_one_run(slow_add):
    """Three starts of one container at once: one starts it, the others answer that it runs
    already (docker's 304), with one address; after its removal its address is free again."""
    dm = slow_add
    cid = dm.berth("create", IMG, "sleep", "60", check=True).out.strip()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(api(dm, "POST", f"/containers/{cid}/start")[0]))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [204, 304, 304], answers
    assert inspect(dm, cid)["State"]["Status"] == "running"
    assert len(os.listdir(dm.adds)) == 1
    dm.berth("rm", "-f", cid, check=True)
    assert reserved_addresses(dm.state) == []
    assert os.listdir(os.path.join(dm.state, "cni", "results")) == []


def test_state_survives_a_daemon_restart(tmp_path):
    dm = Daemon(tmp_path / "b")
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        run = dm.berth("run", "-d", IMG, "sleep", "60", check=True).out.strip()
        paused = dm.berth("run", "-d", IMG, "sleep", "60", check=True).out.strip()
        dm.berth("pause", paused, check=True)
        done = dm.berth("run", "-d", IMG, "sh", "-c", "exit 4", check=True).out.strip()
        wait_for(lambda: inspect(dm, done)["State"]["Status"] == "exited", 10, "the exit")
        # one that ends while no berthd is there to be told: its shim's own record of the exit
        # (exit.json) is what the next berthd finds
        late = dm.berth("run", "-d", IMG, "sh", "-c", "sleep 1; exit 5", check=True).out.strip()
        late_pid = inspect(dm, late)["State"]["Pid"]
        dm.stop()
        wait_for(lambda: not os.path.exists(f"/proc/{late_pid}"), 10, "the exit while berthd is down")
        dm.start()
        assert inspect(dm, run)["State"]["Status"] == "running"
        assert inspect(dm, paused)["State"]["Status"] == "paused"
        assert inspect(dm, done)["State"]["ExitCode"] == 4
        assert (inspect(dm, late)["State"]["Status"], inspect(dm, late)["State"]["ExitCode"]) == ("exited", 5)
        # the restarted daemon hears the exits of the shims it did not start
        dm.berth("unpause", paused, check=True)
        dm.berth("kill", run, check=True)
        assert inspect(dm, run)["State"]["ExitCode"] == 137
        dm.berth("rm", "-f", run, paused, done, late, check=True)
    finally:
        ids = dm.berth("ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            dm.berth("rm", "-f", *ids)
        dm.cleanup()


def _cgroup_dir(pid):
    """A directory of the process's cgroup (its pids controller's on v1, its v2 group else)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, ctrls, path in lines:
        if "pids" in ctrls.split(","):
            return "/sys/fs/cgroup/pids" + path
    return "/sys/fs/cgroup" + next(path for hid, _, path in lines if hid == "0")


@contextlib.contextmanager
def _frozen(dm):
    """berthd stopped (SIGSTOP) for the block: it hears nothing, records nothing."""
    dm.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        dm.proc.send_signal(signal.SIGCONT)


def _cleanup_waits_for_the_record(dm, cid, who="berthd"):
    """The running container's process killed while berthd is frozen: its cgroup stays until
    berthd, let go, has recorded the exit (well before the shim's own 5 s), which says 137."""
    pid = inspect(dm, cid)["State"]["Pid"]
    group = _cgroup_dir(pid)
    assert os.path.isdir(group)
    with _frozen(dm):
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the process's end (its shim reaps it)")
        time.sleep(1.5)
        assert os.path.isdir(group), f"the shim deleted the cgroup before {who} recorded the exit"
    t = time.monotonic()
    wait_for(lambda: not os.path.exists(group), 10, "the cleanup once the exit is recorded")
    assert time.monotonic() - t < 2.5, "the cleanup waited for its own deadline, not for the record"
    assert (inspect(dm, cid)["State"]["Status"], inspect(dm, cid)["State"]["ExitCode"]) == ("exited", 137)


def _remove_all(dm):
    ids = dm.berth("ps", "-a", "-q", "--no-trunc").out.split()
    if ids:
        dm.berth("rm", "-f", *ids)


def test_a_shims_cleanup_waits_for_berthds_record_of_the_exit(tmp_path):
    """After telling berthd an exit, the shim deletes the run's runtime state (its cgroup, among
    others) only once berthd has recorded the exit and said so (nothing of that cleanup competes
    with the record and the answer waiting for it), or, without that word (a berthd frozen or
    gone), after 5 s by itself; either way berthd records the exit the shim told."""
    dm = Daemon(tmp_path / "b")
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        a = dm.berth("run", "-d", "--network", "none", IMG, "sleep", "60", check=True).out.strip()
        b = dm.berth("run", "-d", "--network", "none", IMG, "sleep", "60", check=True).out.strip()
        _cleanup_waits_for_the_record(dm, a)

        pb = inspect(dm, b)["State"]["Pid"]
        gb = _cgroup_dir(pb)
        assert os.path.isdir(gb)
        with _frozen(dm):
            os.kill(pb, signal.SIGKILL)
            wait_for(lambda: not os.path.exists(gb), 10, "the shim's cleanup without berthd's word")
        wait_for(lambda: inspect(dm, b)["State"]["Status"] == "exited", 10, "berthd's record of the exit")
        assert inspect(dm, b)["State"]["ExitCode"] == 137
        dm.berth("rm", a, b, check=True)
    finally:
        _remove_all(dm)
        dm.cleanup()


def test_a_restarted_berthd_acknowledges_the_exits_of_the_shims_it_found(tmp_path):
    """The channel a restarted berthd subscribes with to a running container's shim carries its
    word too: the shim's cleanup after that container's exit waits for berthd's record of it."""
    dm = Daemon(tmp_path / "b")
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        cid = dm.berth("run", "-d", "--network", "none", IMG, "sleep", "60", check=True).out.strip()
        dm.stop()
        dm.start()
        assert inspect(dm, cid)["State"]["Status"] == "running"
        _cleanup_waits_for_the_record(dm, cid, who="the restarted berthd")
        dm.berth("rm", cid, check=True)
    finally:
        _remove_all(dm)
        dm.cleanup()


def test_a_rootfs_left_mounted_by_a_killed_berthd_goes_at_its_restart(tmp_path):
    """An exit is recorded before the rootfs is unmounted (a stop need not wait for that): a
    berthd killed in between leaves an exited container's rootfs mounted, which its next start
    unmounts."""
    dm = Daemon(tmp_path / "b")
    dm.start()
    merged = None
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        cid = dm.berth("run", "-d", "--network", "none", IMG, "sleep", "60", check=True).out.strip()
        merged = inspect(dm, cid)["GraphDriver"]["Data"]["MergedDir"]
        dm.berth("stop", "-t", "0", cid, check=True)
        wait_for(lambda: not _mounted(merged), 5, "the rootfs's unmount")
        dm.proc.kill()
        dm.proc.wait()
        subprocess.run(["mount", "-t", "tmpfs", "left", merged], check=True)  # what the kill left
        dm.start()
        assert not _mounted(merged)
        assert inspect(dm, cid)["State"]["Status"] == "exited"
        dm.berth("start", cid, check=True)
        assert _mounted(merged) and inspect(dm, cid)["State"]["Running"]
        dm.berth("rm", "-f", cid, check=True)
    finally:
        while merged and _mounted(merged):
            subprocess.run(["umount", "-l", merged])
        dm.cleanup()


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


# --- another OCI runtime ---------------------------------------------------------------------


def test_a_failing_runtime_reaches_the_client(c):
    p = c.berth("run", "--rm", "--runtime", "broken", "--network", "none", IMG, "true", timeout=60)
    assert p.returncode == 125 and p.err.strip(), p.err
    p = c.berth("run", "-d", "--name", "brk", "--runtime", "broken", "--network", "none", IMG, "true", timeout=60)
    assert p.returncode == 125
    st = inspect(c, "brk")["State"]
    assert st["Error"] and st["Status"] == "created"


def test_a_missing_command_with_runc_is_127(c):
    p = c.berth("run", "--rm", "--runtime", "runc", "--network", "none", IMG, "nosuchcommand", timeout=60)
    assert p.returncode == 127 and "nosuchcommand" in p.err


needs_runsc = pytest.mark.skipif(RUNSC is None, reason="runsc (gVisor) is not installed")


@needs_runsc
@pytest.mark.parametrize("network", ["none", "bridge", "user"])
def test_runsc_runs_on_every_network(c, network):
    net = network
    if network == "user":
        net = f"core{os.getpid()}"
        c.berth("network", "create", net, check=True)
    try:
        p = c.berth("run", "--rm", "--runtime", "runsc", "--network", net, IMG, "sh", "-c",
                    "uname -r; ip -o -4 addr show | grep -v ' lo ' | wc -l", timeout=120)
        assert p.returncode == 0, p.err
        kernel, nics = p.out.split()
        assert kernel != os.uname().release  # gVisor's own kernel, not the host's
        assert int(nics) == (0 if network == "none" else 1)
    finally:
        if network == "user":
            c.berth("network", "rm", net)


@needs_runsc
def test_runsc_exec_logs_and_exit_codes(c):
    """...and the host's /dev/null is left as it is: runsc chowns its stdio to its sandbox's user,
    /dev/null too (runc skips it), so it is given a null device of its own (the host's /dev/null
    was owned by nobody after a runsc container)."""
    null = os.stat("/dev/null")
    cid = c.berth("run", "-d", "--runtime", "runsc", IMG, "sh", "-c", "echo hello; sleep 60",
                  check=True, timeout=120).out.strip()
    wait_for(lambda: c.berth("logs", cid).out == "hello\n", 20, "the log line")
    p = c.berth("exec", cid, "sh", "-c", "echo in-exec; exit 3", timeout=60)
    assert p.out == "in-exec\n" and p.returncode == 3
    c.berth("kill", cid, check=True)
    assert inspect(c, cid)["State"]["Status"] == "exited"
    # runsc leaves the container's cgroup directories behind: the shim removes them once empty
    # (after the exit is recorded: with runsc's delete)
    wait_for(lambda: not [h for h in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{h}/berth/{cid}")],
             10, "the container's cgroups to go")
    p = c.berth("run", "--rm", "--runtime", "runsc", "--network", "none", IMG, "nosuchcommand", timeout=120)
    assert p.returncode in (125, 127) and p.err.strip()
    p = c.berth("run", "--rm", "--runtime", "runsc", "--network", "none", IMG, "sh", "-c", "exit 5", timeout=120)
    assert p.returncode == 5
    p = c.berth("run", "--rm", "-t", "--runtime", "runsc", "--network", "none", IMG, "true", timeout=120)
    assert p.returncode == 0, p.err
    now = os.stat("/dev/null")
    assert (now.st_uid, now.st_gid, now.st_mode, now.st_ctime_ns) == (null.st_uid, null.st_gid, null.st_mode,
                                                                      null.st_ctime_ns)


@needs_runsc
def test_runsc_delete_does_not_wait_for_its_sandbox(c):
    """runsc's delete kills the sandbox and polls until it is gone; the shim, its subreaper,
    reaps it meanwhile (berth's shim did not, and every runsc container's end took runsc's 5 s
    timeout, the sandbox a zombie). Three `run --rm`, each well under those 5 s."""
    took = []
    for _ in range(3):
        t = time.monotonic()
        p = c.berth("run", "--rm", "--runtime", "runsc", "--network", "none", IMG, "true", timeout=120)
        took.append(time.monotonic() - t)
        assert p.returncode == 0, p.err
    assert max(took) < 4, took


def test_a_shim_runs_in_a_process_group_of_its_own_and_leaves_no_zombie(c):
    """A signal to berthd's process group (its terminal's ^C) does not reach the shims, which are
    in berthd's session as containerd's are in containerd's (one scheduling autogroup); a SIGHUP
    (what the kernel sends an orphaned group with a stopped process) leaves the shim and its
    container running; a shim that ended is gone, not a zombie of the zygote it was forked from."""
    cid = c.berth("run", "-d", IMG, "sleep", "60", check=True).out.strip()
    pid = inspect(c, cid)["State"]["Pid"]
    shim_pid = ppid(pid)
    assert os.getpgid(shim_pid) == shim_pid != os.getpgid(c.proc.pid)
    assert os.getsid(shim_pid) == os.getsid(c.proc.pid)
    assert os.getsid(pid) == pid  # the container's init: a session of its own, as runc's
    os.kill(shim_pid, signal.SIGHUP)
    time.sleep(0.3)
    assert inspect(c, cid)["State"]["Status"] == "running"
    assert c.berth("exec", cid, "true").returncode == 0  # the shim still serves it
    c.berth("rm", "-f", cid, check=True)
    wait_for(lambda: not os.path.exists(f"/proc/{shim_pid}"), 10, "the shim to be gone (reaped)")


def test_a_killed_shim_ends_its_container(c):
    """A shim killed (-9) tells nothing: berthd records the exit and ends what still runs."""
    cid = c.berth("run", "-d", IMG, "sleep", "60", check=True).out.strip()
    pid = inspect(c, cid)["State"]["Pid"]
    shim_pid = ppid(pid)
    with open(f"/proc/{shim_pid}/comm") as f:
        assert f.read().strip() == "berth-shim"
    os.kill(shim_pid, 9)
    wait_for(lambda: inspect(c, cid)["State"]["Status"] == "exited", 20, "the exit recorded")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z",
             20, "the container's process to end")
    c.berth("rm", cid, check=True)
