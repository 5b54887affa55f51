"""The shim protocol: what berthd and a container's shim say to each other, as types.

Two channels carry it, both unix stream sockets with one JSON object per line:
- the events channel: a socket pair made by berthd for each start; the shim gets one end
  (through the zygote) and sends on it the start result (``StartResult``), the end of each exec
  (``ExecExit``) and, when the container has exited and its output is drained, the exit
  (``ExitEvent``); berthd answers the exit with ``{"event": "exit_recorded"}`` once it has
  recorded it, and the shim's cleanup of the run waits for that word (5 s at most, or the
  channel's end). After a daemon restart the same events come from a ``subscribe`` request
  (``ack``: the subscriber says that word too) on the shim's socket.
- the shim's socket (<state>/s/<id>.sock): one request per connection (``Request`` subclasses);
  ``attach`` and ``exec`` then carry the container's (or the exec's) byte stream.

An error crosses the boundary as a kind (the name of a berth.errors class) and a message, so the
caller raises the same kind the shim meant, never recovered from the text.

The shim itself builds its replies with the functions at the bottom (plain dicts: the shim is
forked from the zygote and must touch as few objects as it can); everything else uses the types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

# --- error kinds ----------------------------------------------------------------------------

KINDS = ("ConfigInvalid", "NotFound", "AlreadyExists", "InvalidArgument", "FailedPrecondition", "Unavailable", "SystemError")


def error_of(kind: str | None, message: str):
    """The berth.errors exception for a kind and message from the shim."""
    from berth import errors
    cls = {"SystemError": errors.SystemError_}.get(kind or "") or getattr(errors, kind or "", None)
    if not (isinstance(cls, type) and issubclass(cls, errors.BerthError)):
        cls = errors.SystemError_
    return cls(message)


# --- requests (berthd -> shim socket) -------------------------------------------------------


@dataclass
class Request:
    op: ClassVar[str] = ""

    def encode(self) -> bytes:
        from berth import fastjson
        return fastjson.dumps(dict(asdict(self), op=self.op)).encode() + b"\n"


@dataclass
class Attach(Request):
    op: ClassVar[str] = "attach"
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    # the client's end of input closes the container's stdin (docker's and containerd's StdinOnce);
    # without it the attach ends there and a later attach still writes to the same stdin
    close_stdin: bool = True


@dataclass
class Start(Request):
    """Release a container created to wait for its attach (after the attach is connected)."""
    op: ClassVar[str] = "start"


@dataclass
class Wait(Request):
    op: ClassVar[str] = "wait"


@dataclass
class Subscribe(Request):
    """The events channel of a shim berthd did not start (after a daemon restart). ack: berthd
    says "exit_recorded" on it once it has recorded the exit (EventChannel.ack), and the shim's
    cleanup waits for that (berth.shim.shim.Shim._finish)."""
    op: ClassVar[str] = "subscribe"
    ack: bool = False


@dataclass
class Kill(Request):
    op: ClassVar[str] = "kill"
    signal: int = 15
    all: bool = False


@dataclass
class Pause(Request):
    op: ClassVar[str] = "pause"


@dataclass
class Resume(Request):
    op: ClassVar[str] = "resume"


@dataclass
class State(Request):
    op: ClassVar[str] = "state"


@dataclass
class Stats(Request):
    op: ClassVar[str] = "stats"


@dataclass
class Resize(Request):
    op: ClassVar[str] = "resize"
    h: int = 24
    w: int = 80
    exec_id: str = ""


@dataclass
class Exec(Request):
    op: ClassVar[str] = "exec"
    exec_id: str = ""
    process: dict = field(default_factory=dict)  # the OCI process
    stdin: bool = False


@dataclass
class ReopenLog(Request):
    """Open the log path again (the CRI's ReopenContainerLog, after the kubelet rotated it)."""
    op: ClassVar[str] = "reopen_log"


@dataclass
class ExecState(Request):
    op: ClassVar[str] = "exec_state"
    exec_id: str = ""


# --- replies and events (shim -> berthd) ----------------------------------------------------


@dataclass
class StartResult:
    ok: bool
    pid: int = 0
    kind: str = ""
    error: str = ""


@dataclass
class ExitEvent:
    exit_code: int
    finished_at: str = ""
    pid: int = 0
    oom_killed: bool = False  # the kernel's OOM killer killed a process of the container's cgroup


@dataclass
class ExecExit:
    """An exec's process has ended and its output is drained (events channel)."""
    exec_id: str
    exit_code: int


@dataclass
class ShimState:
    pid: int
    status: str  # running | paused | exited
    exit_code: int | None = None
    shim_pid: int = 0


@dataclass
class ExecStatus:
    pid: int
    running: bool
    exit_code: int | None = None


@dataclass
class StatsReply:
    cgroup: str  # the init's /proc/<pid>/cgroup (its lines: hierarchy:controllers:path)
    pid: int = 0


def from_dict(cls, d: dict[str, Any]):
    """A reply type from its JSON object (unknown keys ignored)."""
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in d.items() if k in names})


# --- the shim's side: plain dicts -----------------------------------------------------------


def ok(**fields) -> dict:
    fields["ok"] = True
    return fields


def fail(kind: str, message: str) -> dict:
    return {"ok": False, "kind": kind, "error": message}


def start_event(pid: int) -> dict:
    return {"event": "start", "ok": True, "pid": pid}


def start_failed(kind: str, message: str) -> dict:
    return {"event": "start", "ok": False, "kind": kind, "error": message}


def exec_exit_event(exec_id: str, code: int) -> dict:
    return {"event": "exec_exit", "exec_id": exec_id, "exit_code": code}


def exit_event(code: int, finished_at: str, pid: int, oom_killed: bool = False) -> dict:
    ev = {"event": "exit", "exit_code": code, "finished_at": finished_at, "pid": pid}
    if oom_killed:
        ev["oom_killed"] = True
    return ev
