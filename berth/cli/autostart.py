"""Start berthd in the background when nothing answers at the default local socket."""

import os
import socket
import subprocess
import sys
import time

from berth.errors import Unavailable


def _alive(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _berthd():
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    cand = os.path.join(here, "berthd")
    if os.access(cand, os.X_OK):
        return cand
    import shutil
    found = shutil.which("berthd")
    if found:
        return found
    return None


def ensure_daemon(path, timeout=20.0):
    if _alive(path):
        return
    if os.geteuid() != 0:
        raise Unavailable(f"berthd is not running at {path}, and only root can start it")
    exe = _berthd()
    if exe is None:
        raise Unavailable(f"berthd is not running at {path} and was not found on PATH")
    state = os.path.dirname(path) or "/run/berth"
    os.makedirs(state, exist_ok=True)
    log = open(os.path.join(state, "berthd.log"), "ab")
    print(f"berth: starting berthd (log: {log.name})", file=sys.stderr)
    proc = subprocess.Popen([exe, "-H", "unix://" + path], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _alive(path):
            return
        if proc.poll() is not None:
            raise Unavailable(f"berthd exited at start (status {proc.returncode}); see {os.path.join(state, 'berthd.log')}")
        time.sleep(0.05)
    raise Unavailable(f"berthd did not answer at {path} within {timeout:.0f}s")
