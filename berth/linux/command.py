"""Run a short-lived command and collect its output, with a time limit.

subprocess.run(capture_output=True, timeout=...) pumps the output pipes in the calling thread
and then waits for the child by polling it with sleeps (0.5 ms, doubling): about a millisecond
lost on every quick command (a CNI plugin, a runtime's start or kill). Here the command's stdin,
stdout and stderr are memfds (nothing to pump, no pipe buffer to fill, no size limit) and its
end is waited for on a pidfd. A plugin's VERSION: 2.6 ms against subprocess.run's 3.3-3.9 ms.
"""

from __future__ import annotations

import os
import select
import subprocess
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def run(argv: Sequence[str], timeout: float, input: bytes | None = None,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Like subprocess.run(argv, input=input, capture_output=True, env=env, timeout=timeout),
    stdin /dev/null when input is None: the same CompletedProcess, the same errors (OSError
    when it cannot be started; subprocess.TimeoutExpired, after the command is killed and
    reaped, when it runs too long)."""
    fds = [os.memfd_create(name, os.MFD_CLOEXEC) for name in ("stdout", "stderr")]
    stdin = subprocess.DEVNULL  # or a memfd with the input
    try:
        if input:
            stdin = os.memfd_create("stdin", os.MFD_CLOEXEC)
            os.write(stdin, input)
            os.lseek(stdin, 0, os.SEEK_SET)
        p = subprocess.Popen(argv, stdin=stdin, stdout=fds[0], stderr=fds[1], env=env)
        if not _ended(p.pid, timeout):
            p.kill()
            p.wait()
            raise subprocess.TimeoutExpired(list(argv), timeout)
        code = p.wait()
        out, err = (os.pread(fd, os.fstat(fd).st_size, 0) for fd in fds)
        return subprocess.CompletedProcess(list(argv), code, out, err)
    finally:
        for fd in fds:
            os.close(fd)
        if stdin >= 0:
            os.close(stdin)


def _ended(pid: int, timeout: float) -> bool:
    """Whether a child ends within timeout seconds (it is not reaped here)."""
    try:
        pfd = os.pidfd_open(pid)
    except OSError:  # a kernel before 5.3: poll it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.001)
        return False
    try:
        p = select.poll()
        p.register(pfd, select.POLLIN)
        return bool(p.poll(timeout * 1000))
    finally:
        os.close(pfd)
