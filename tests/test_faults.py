"""Fault injection: berthd killed (kill -9) in the middle of streamed commands, a daemon root on
a small tmpfs that fills up, and what the client and the files say afterwards.

A command that did not fully succeed never exits 0; `save -o` never leaves a partial file under
the target's name; a full disk is recovered through berth itself (rm, rmi, prune free space)."""
# ruff: noqa: F811 (pytest fixtures imported from daemon_fixtures are test parameters)

import io
import os
import signal
import subprocess
import tarfile
import time

import pytest
from daemon_fixtures import BERTH, DATA, Daemon, registry, wait_for  # noqa: F401 (fixtures)


def _tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _remove_all(d):
    """Containers a failed test left running (they outlive their daemon: shims)."""
    if d.proc is None or d.proc.poll() is not None:
        try:
            d.start()
        except AssertionError:
            return
    ids = d.berth("ps", "-aq").out.split()
    if ids:
        d.berth("rm", "-f", *ids)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d")
    d.start()
    yield d
    _remove_all(d)
    d.cleanup()


def _big_image(d, ref, mb=48):
    """An image of one layer of `mb` MiB of random bytes (incompressible), imported."""
    tar = _tar_of([("big.bin", os.urandom(mb << 20))])
    p = d.berth("import", "-", ref, input=tar)
    assert p.returncode == 0, p.err
    return tar


def _temps(dirpath):
    return [n for n in os.listdir(dirpath) if n.startswith(".tmp-")]  # the docker CLI's: .tmp-<name><random>


def _stopped_once_written(proc, path_pred, what):
    """SIGSTOP the client once path_pred() holds, so that the daemon can be killed while the
    rest of the stream is still to come."""
    wait_for(lambda: path_pred() or proc.poll() is not None, 60, what)
    assert proc.poll() is None, "the client finished before the fault could be injected"
    proc.send_signal(signal.SIGSTOP)


def test_save_o_killed_daemon_fails_and_leaves_no_partial_file(daemon, tmp_path):
    _big_image(daemon, "big:save")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "f.tar"
    cli = subprocess.Popen([BERTH, "-H", daemon.host, "save", "-o", str(target), "big:save"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env())
    try:
        def some_written():
            return any(os.path.getsize(out_dir / n) > (1 << 20) for n in _temps(out_dir))
        _stopped_once_written(cli, some_written, "save to start writing")
        daemon.kill9()
        cli.send_signal(signal.SIGCONT)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    err = err.decode()
    assert cli.returncode != 0, err
    assert "unexpected EOF" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not target.exists(), "a partial archive under the target name"
    assert _temps(out_dir) == [], "the temporary file was left behind"
    # an existing target is not touched by a failed save
    target.write_bytes(b"old")
    daemon.start()
    cli = subprocess.Popen([BERTH, "-H", daemon.host, "save", "-o", str(target), "big:save"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env())
    try:
        _stopped_once_written(cli, lambda: any(os.path.getsize(out_dir / n) > (1 << 20) for n in _temps(out_dir)),
                              "the second save to start writing")
        daemon.kill9()
        cli.send_signal(signal.SIGCONT)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode != 0 and b"unexpected EOF" in err, err
    assert target.read_bytes() == b"old"
    assert _temps(out_dir) == []
    # and after a restart the image is whole and saves completely
    daemon.start()
    p = daemon.berth("save", "-o", str(target), "big:save")
    assert p.returncode == 0, p.err
    with tarfile.open(target) as tf:
        assert "manifest.json" in tf.getnames()


def test_save_to_stdout_killed_daemon_exits_nonzero(daemon, tmp_path):
    _big_image(daemon, "big:stdout", mb=32)
    target = tmp_path / "stdout.tar"
    with open(target, "wb") as f:
        cli = subprocess.Popen([BERTH, "-H", daemon.host, "save", "big:stdout"], stdout=f,
                               stderr=subprocess.PIPE, env=daemon.env())
        try:
            _stopped_once_written(cli, lambda: os.path.getsize(target) > (1 << 20), "save to start writing")
            daemon.kill9()
            cli.send_signal(signal.SIGCONT)
            _, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    assert cli.returncode != 0, err
    assert b"unexpected EOF" in err, err


def test_pull_killed_daemon_exits_nonzero(registry, daemon):
    from test_registry_flow import Proxy, _big_image as _pushed_big_image
    _pushed_big_image(registry, "faults/pull")
    proxy = Proxy(registry.port)
    cli = None
    try:
        proxy.delay = 0.02  # 4 MiB in ~5 s
        ref = f"{proxy.addr}/faults/pull:1"
        cli = subprocess.Popen([BERTH, "-H", daemon.host, "pull", ref], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=daemon.env())
        wait_for(lambda: proxy.down_bytes > (1 << 20), 30, "the layer download to be under way")
        daemon.kill9()
        out, err = cli.communicate(timeout=30)
        assert cli.returncode != 0, (out, err)
        assert b"unexpected EOF" in err, err
        assert b"Traceback" not in err
        daemon.start()
        p = daemon.berth("images", "-q")
        assert p.returncode == 0 and p.out.strip() == "", p.out
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.wait()
        proxy.close()


def test_load_and_create_killed_daemon(daemon, tmp_path):
    """kill -9 during a load (the client sending) and during creates: the client fails, and
    after a restart there is no half image and every container that exists is whole."""
    big = tmp_path / "big.tar"
    _big_image(daemon, "big:load", mb=32)
    assert daemon.berth("save", "-o", str(big), "big:load").returncode == 0
    assert daemon.berth("rmi", "big:load").returncode == 0
    cli = subprocess.Popen([BERTH, "-H", daemon.host, "load", "-i", str(big)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=daemon.env())
    try:
        ingest = os.path.join(daemon.root, "content", "ingest")
        wait_for(lambda: (os.path.isdir(ingest) and os.listdir(ingest)) or cli.poll() is not None, 60,
                 "the load to start ingesting")
        daemon.kill9()
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    # the load may have been complete before the kill landed: then it must have said so
    if cli.returncode == 0:
        assert b"Loaded image" in out, out
    else:
        assert b"Traceback" not in err and err.strip(), err
    daemon.start()
    p = daemon.berth("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert p.returncode == 0, p.err
    if "big:load" in p.out:  # all or nothing: an image that is listed is whole
        assert daemon.berth("save", "-o", str(tmp_path / "again.tar"), "big:load").returncode == 0
    assert daemon.berth("load", "-i", str(big)).returncode == 0
    # creates killed half-way: those that exist can be inspected and removed
    assert daemon.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    procs = [subprocess.Popen([BERTH, "-H", daemon.host, "create", "--name", f"c{i}", "busybox-layers:1", "true"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env()) for i in range(10)]
    time.sleep(0.3)
    daemon.kill9()
    codes = []
    for p in procs:
        out, err = p.communicate(timeout=30)
        codes.append(p.returncode)
        if p.returncode == 0:
            assert len(out.strip()) == 64, out
        else:
            assert b"Traceback" not in err and err.strip(), err
    daemon.start()
    p = daemon.berth("ps", "-a", "--format", "{{.Names}}")
    assert p.returncode == 0, p.err
    for name in p.out.split():
        assert daemon.berth("inspect", name).returncode == 0
        assert daemon.berth("rm", "-f", name).returncode == 0
    # every create the client saw succeed exists
    ok = {f"c{i}" for i, c in enumerate(codes) if c == 0}
    assert ok <= set(p.out.split()), (ok, p.out)


def test_commit_killed_daemon(daemon, tmp_path):
    """kill -9 while a container's changes are committed as a layer (32 MiB of random bytes, so
    the layer takes a while): the client fails (or said it succeeded), and after a restart the
    image is all there or not there, and the container is intact."""
    assert daemon.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    p = daemon.berth("run", "--name", "src", "busybox-layers:1", "sh", "-c",
                     "dd if=/dev/urandom of=/big.bin bs=1M count=32 2>/dev/null; echo made")
    assert p.returncode == 0 and "made" in p.out, p.err
    cli = subprocess.Popen([BERTH, "-H", daemon.host, "commit", "src", "committed:1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=daemon.env())
    try:
        time.sleep(0.3)  # the layer is being made: its tar is written and hashed
        daemon.kill9()
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    if cli.returncode == 0:  # the commit was complete before the kill landed: then it said so
        assert out.strip().startswith(b"sha256:"), out
    else:
        assert b"Traceback" not in err and err.strip(), err
    daemon.start()
    p = daemon.berth("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert p.returncode == 0, p.err
    if "committed:1" in p.out:  # all or nothing: an image that is listed is whole and runs
        r = daemon.berth("run", "--rm", "committed:1", "sh", "-c", "wc -c < /big.bin")
        assert r.returncode == 0 and r.out.strip() == str(32 << 20), (r.out, r.err)
    else:
        assert cli.returncode != 0
    # the container is untouched: it can be committed again, and removed
    p = daemon.berth("commit", "src", "committed:2")
    assert p.returncode == 0, p.err
    r = daemon.berth("run", "--rm", "committed:2", "sh", "-c", "wc -c < /big.bin")
    assert r.returncode == 0 and r.out.strip() == str(32 << 20), (r.out, r.err)
    assert daemon.berth("rm", "src").returncode == 0


def _chattr(flag, *paths):
    for p in paths:
        if os.path.exists(p):
            subprocess.run(["chattr", flag, p], check=True, capture_output=True)


def test_run_rm_returns_when_the_removal_fails(daemon):
    """The metadata database cannot be written (its files made immutable) when a `run --rm`
    container exits: the run answers with docker's wording and exit code, and does not hang."""
    assert daemon.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    db = os.path.join(daemon.root, "metadata.db")
    files = [db, db + "-wal", db + "-shm"]
    cli = subprocess.Popen([BERTH, "-H", daemon.host, "run", "--rm", "--name", "rmfail", "busybox-layers:1", "sh", "-c",
                            "sleep 3; exit 3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env())
    try:
        wait_for(lambda: '"Running": true' in daemon.berth("inspect", "rmfail").out, 20, "the container to run")
        _chattr("+i", *files)
        out, err = cli.communicate(timeout=30)
    finally:
        _chattr("-i", *files)
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    err = err.decode()
    assert cli.returncode == 125, (cli.returncode, err)
    assert "Error waiting for container:" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # the daemon is alive and the container can be removed by hand once the database is writable
    p = daemon.berth("rm", "-f", "rmfail")
    assert p.returncode == 0, p.err
    assert daemon.berth("ps", "-aq").out.strip() == ""


# --- a full disk: a daemon root on a small tmpfs -----------------------------------------------------

@pytest.fixture
def small_root(tmp_path):
    """A daemon whose root is a 48 MiB tmpfs (unmounted at the end)."""
    d = Daemon(tmp_path / "d")
    os.makedirs(d.root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0711", "berth-test-full", d.root], check=True)
    try:
        d.start()
        yield d
    finally:
        _remove_all(d)
        d.cleanup()
        subprocess.run(["umount", "-l", d.root], capture_output=True)


def _avail(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _one_line_error(p):
    assert p.returncode != 0, (p.out, p.err)
    lines = [x for x in p.err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in p.err and "internal error" not in p.err, p.err
    return lines[0]


def _ingests(d):
    p = os.path.join(d.root, "content", "ingest")
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def _fill(d, name):
    p = d.berth("run", "--name", name, "busybox-layers:1", "sh", "-c",
                "dd if=/dev/zero of=/fill bs=1M 2>/dev/null; dd if=/dev/zero of=/fill2 bs=4k 2>/dev/null; true")
    assert p.returncode in (0, 125), (p.returncode, p.err)


def test_full_disk_is_reported_and_recovered_through_berth(small_root, registry):
    from test_registry_flow import _big_image as _pushed_big_image
    d = small_root
    _pushed_big_image(registry, "faults/full")
    assert d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    assert d.berth("load", "-i", os.path.join(DATA, "hello-world.docker.tar")).returncode == 0
    assert d.berth("volume", "create", "v1").returncode == 0
    assert d.berth("create", "--name", "stopped", "busybox-layers:1", "true").returncode == 0
    assert d.berth("run", "--name", "talker", "busybox-layers:1", "sh", "-c", "echo before-full").returncode == 0
    # a pull that runs out of room in the middle of a layer: its partial download goes
    hog = os.path.join(d.root, "hog")
    with open(hog, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(_avail(d.root) - (2 << 20), 1))
    p = d.berth("pull", f"{registry.addr}/faults/full:1")
    assert "no space left on device" in _one_line_error(p).lower()
    assert _ingests(d) == [], "a failed pull left its partial download"
    os.unlink(hog)
    assert d.berth("run", "-d", "--name", "chatty", "busybox-layers:1", "sh", "-c",
                   "while true; do echo chatter-chatter-chatter; done").returncode == 0
    # fill the disk from inside containers (twice: the first exit's cleanup may use the
    # metadata reserve, which the second fill then takes too)
    _fill(d, "filler1")
    _fill(d, "filler2")
    assert _avail(d.root) < (1 << 20), _avail(d.root)

    # on the full disk: clear one-line errors, and the daemon stays up
    p = d.berth("pull", f"{registry.addr}/faults/full:1")
    line = _one_line_error(p).lower()
    assert "no space left on device" in line or "disk is full" in line, line
    assert _ingests(d) == [], "a failed pull left its partial download"
    p = d.berth("run", "--rm", "busybox-layers:1", "echo", "hi")
    if p.returncode != 0:  # it may fit in what the failed pull gave back; if not, it says why
        _one_line_error(p)
    p = d.berth("logs", "talker")
    assert p.returncode == 0 and "before-full" in p.out, (p.out, p.err)
    # a container that logs on a full disk: its logs can be read, and it can be stopped
    p = d.berth("logs", "--tail", "5", "chatty")
    assert p.returncode == 0 and "chatter" in p.out, (p.returncode, p.out[-200:], p.err)
    p = d.berth("stop", "-t", "1", "chatty")
    assert p.returncode == 0, p.err
    assert d.berth("version").returncode == 0

    # recovery through berth: every removal works on the full disk
    p = d.berth("rm", "-f", "filler1")
    assert p.returncode == 0, p.err
    assert _avail(d.root) > (8 << 20)
    _fill(d, "filler3")
    assert _avail(d.root) < (1 << 20), _avail(d.root)
    fillers = [n for n in d.berth("ps", "-a", "--format", "{{.Names}}").out.split() if n.startswith("filler")]
    assert fillers
    p = d.berth("rm", "-f", *fillers)
    assert p.returncode == 0, p.err
    for args in (("rmi", "hello-world:latest"), ("volume", "rm", "v1"), ("container", "prune", "-f"),
                 ("image", "prune", "-af")):
        _fill(d, "filler4")
        assert _avail(d.root) < (1 << 20), _avail(d.root)
        p = d.berth(*args)
        assert p.returncode == 0, (args, p.err)
        if "filler4" in d.berth("ps", "-a", "--format", "{{.Names}}").out.split():
            assert d.berth("rm", "-f", "filler4").returncode == 0
    p = d.berth("ps", "-a", "--format", "{{.Names}}")
    assert p.returncode == 0
    assert p.out.split() == ["talker"] or p.out.split() == [], p.out
    # and it works again
    p = d.berth("pull", f"{registry.addr}/faults/full:1")
    assert p.returncode == 0, p.err
    assert _ingests(d) == []
    assert d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    p = d.berth("run", "--rm", "busybox-layers:1", "echo", "after")
    assert p.returncode == 0 and p.out.strip() == "after", p.err


def test_followers_killed_daemon_exit_nonzero(daemon):
    """logs -f and events: a daemon that dies under them is an error, not the end of the stream."""
    assert daemon.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    assert daemon.berth("run", "-d", "--name", "talk", "busybox-layers:1", "sh", "-c",
                        "while true; do echo talk; sleep 0.1; done").returncode == 0
    procs = {}
    try:
        for name, args in (("logs", ["logs", "-f", "talk"]), ("events", ["events"])):
            procs[name] = subprocess.Popen([BERTH, "-H", daemon.host, *args], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, env=daemon.env())
        time.sleep(1.5)
        assert all(p.poll() is None for p in procs.values()), {n: p.poll() for n, p in procs.items()}
        daemon.kill9()
        for name, p in procs.items():
            _, err = p.communicate(timeout=30)
            assert p.returncode != 0, (name, err)
            assert b"unexpected EOF" in err and b"Traceback" not in err, (name, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        daemon.start()
        daemon.berth("rm", "-f", "talk")
