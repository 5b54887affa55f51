"""A running container's processes: its cgroup, its pids, `top` (docker's GET /containers/{id}/top)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

from berth.errors import (
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    SystemError_,
)
from berth.gotime import rfc3339nano as _now_rfc3339
from berth.runtime import cgroups
from berth.runtime.cgroups import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from berth.metadata.records import Container
    from berth.services.containers import ContainerService


def _running(svc: ContainerService, ns: str, ref: str) -> tuple[Container, dict]:
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        raise FailedPrecondition(f"Container {rec.id} is not running")
    return rec, st


# --- cgroup and processes --------------------------------------------------------------------

def _cgroup(pid: int) -> Manager | None:
    """The cgroup Manager of a process (any runtime); None if gone or in the root cgroup."""
    return cgroups.manager_of_pid(pid)


def _descendants(pid: int) -> list[int]:
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return sorted(out)


def container_pids(pid: int) -> list[int]:
    """Every process of the container whose init is pid: its cgroup, else its process tree."""
    mgr = _cgroup(pid)
    pids = []
    if mgr is not None:
        try:
            pids = mgr.pids()
        except BerthError:
            pids = []
    return pids or _descendants(pid)


def _validate_ps_args(ps_args: str) -> None:
    for k, v in re.findall(r"\s+(\S*)=\s*(PID\S*)", ps_args):
        if k != "pid":
            raise InvalidArgument(f'specifying "{k}={v}" is not allowed')


def _parse_ps(output: str, pids: list[int]) -> dict:
    lines = output.split("\n")
    titles = lines[0].split()
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise SystemError_("Couldn't find PID field in ps output") from None
    procs = []
    pids = set(pids)
    contained = False
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        if len(fields) <= pid_index:
            continue
        if fields[pid_index] == "-":
            if contained:
                procs.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
            continue
        try:
            p = int(fields[pid_index])
        except ValueError:
            raise SystemError_(f"Unexpected pid '{fields[pid_index]}'") from None
        contained = p in pids
        if contained:
            procs.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": procs}


def top(svc: ContainerService, ns: str, ref: str, ps_args: str | None = None) -> dict:
    """GET /containers/{id}/top: the host's `ps` output restricted to the container's processes."""
    rec, st = _running(svc, ns, ref)
    svc.events.container(ns, rec, "top")
    user_args = bool(ps_args)
    ps_args = ps_args or "-ef"
    _validate_ps_args(ps_args)
    pids = container_pids(st["Pid"])
    args = [a for a in ps_args.split(" ") if a]
    ps = shutil.which("ps")
    if ps is None:
        return _top_from_proc(pids)
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run([ps, *args, "-q", ",".join(map(str, pids))], capture_output=True, env=env, timeout=60,
                       check=False)
    if p.returncode != 0:
        # some options (f, ...) cannot be combined with -q: list everything and filter
        p = subprocess.run([ps, *args], capture_output=True, env=env, timeout=60, check=False)
        if p.returncode != 0:
            first = p.stderr.decode(errors="replace").split("\n", 1)[0]
            # options ps refuses are the client's (a 400; dockerd's words: "ps: " and ps's first line)
            raise (InvalidArgument if user_args else SystemError_)(
                f"ps: {first or f'exit status {p.returncode}'}")
    return _parse_ps(p.stdout.decode(errors="replace"), pids)


def _top_from_proc(pids: list[int]) -> dict:
    """`ps -ef` columns read from /proc, for hosts without procps."""
    import pwd
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    procs = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        comm = data[data.index(b"(") + 1:data.rfind(b")")].decode(errors="replace")
        rest = data[data.rfind(b")") + 2:].split()
        ppid, utime, stime, start = int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        t = (utime + stime) // hz
        started = time.localtime(btime + start / hz)
        stime_s = time.strftime("%H:%M" if time.time() - time.mktime(started) < 86400 else "%b%d", started)
        procs.append([user, str(pid), str(ppid), "0", stime_s, "?",
                      f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}", cmd or f"[{comm}]"])
    return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": procs}
