"""berth.linux.command.run: how berthd runs CNI plugins and runtime binaries (posix_spawn without
the GIL, memfds for the output): what the command gets and what comes back, as subprocess.run's."""

import os
import subprocess

import pytest

from berth.linux import command


def test_output_exit_code_and_input():
    p = command.run(["sh", "-c", "cat; echo out; echo err >&2; exit 3"], 10, input=b"in:")
    assert (p.returncode, p.stdout, p.stderr) == (3, b"in:out\n", b"err\n")
    assert command.run(["true"], 10).stdout == b""


def test_large_output_is_not_cut():
    p = command.run(["head", "-c", "3000000", "/dev/zero"], 10)
    assert p.returncode == 0 and len(p.stdout) == 3000000


def test_the_command_gets_only_its_stdio_and_default_signals():
    r, w = os.pipe()
    os.set_inheritable(w, True)  # even a descriptor we let children inherit stays with us
    try:
        p = command.run(["sh", "-c", "ls /proc/self/fd; grep -E '^Sig(Blk|Ign)' /proc/self/status"], 10)
    finally:
        os.close(r)
        os.close(w)
    lines = p.stdout.decode().split()
    fds = sorted(int(x) for x in lines[:lines.index("SigBlk:")])
    assert fds == [0, 1, 2, 3]  # 3: ls's own of /proc/self/fd
    # Python ignores SIGPIPE and SIGXFSZ: the command has them default, nothing blocked; what
    # else it ignores is what we ignore (inherited: the signals berthd's own parent ignored)
    assert "SigBlk:" in lines and lines[lines.index("SigBlk:") + 1] == "0" * 16
    with open("/proc/self/status") as f:
        ours = int(next(x for x in f if x.startswith("SigIgn:")).split()[1], 16)
    assert int(lines[lines.index("SigIgn:") + 1], 16) == ours & ~(1 << 12 | 1 << 24)
    # the same as subprocess gives
    q = subprocess.run(["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"], capture_output=True)
    assert q.stdout.decode().split() == lines[-4:]


def test_stdin_is_dev_null_without_input():
    p = command.run(["sh", "-c", "readlink /proc/self/fd/0; cat"], 10)
    assert p.stdout == b"/dev/null\n"


def test_environment_and_path_lookup(tmp_path):
    prog = tmp_path / "hello-berth"
    prog.write_text("#!/bin/sh\necho \"$GREETING\"\n")
    prog.chmod(0o755)
    p = command.run(["hello-berth"], 10, env={"PATH": str(tmp_path), "GREETING": "hi"})
    assert p.stdout == b"hi\n"
    p = command.run(["sh", "-c", "env"], 10, env={"ONLY": "1"})
    assert "ONLY=1" in p.stdout.decode().split() and "HOME" not in p.stdout.decode()


def test_errors_as_subprocess_raises_them(tmp_path):
    with pytest.raises(FileNotFoundError):
        command.run(["no-such-command-berth"], 10)
    with pytest.raises(FileNotFoundError):
        command.run([str(tmp_path / "missing")], 10)
    f = tmp_path / "not-executable"
    f.write_text("echo\n")
    with pytest.raises(PermissionError):
        command.run([str(f)], 10)


def test_a_timeout_kills_and_reaps_the_command():
    with pytest.raises(subprocess.TimeoutExpired):
        command.run(["sh", "-c", "echo $$ > /dev/stderr; exec sleep 30"], 0.3)
    # nothing of ours is left: no child, not even a zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_without_posix_spawn_subprocess_runs_it(monkeypatch):
    monkeypatch.setattr(command, "_LIBC", None)  # a libc without posix_spawn_file_actions_addclosefrom_np
    p = command.run(["sh", "-c", "cat; exit 4"], 10, input=b"x")
    assert (p.returncode, p.stdout) == (4, b"x")
