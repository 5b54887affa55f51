"""A container's status as a state machine (moby's container/state.go, youki's can_* guards).

    created --start--> running --pause--> paused --resume--> running
    running/paused --exit--> exited, or restarting (its policy says so) --start--> running
    created/exited/restarting --rm--> removing --> (gone)     removing --fails--> dead

Every change goes through ``ContainerStates.transition``, which checks the move is allowed,
persists the new state in the container's record (extensions["state"]) and wakes whoever
waits on a transition. The shim's events (start result, exit) drive running and exited; the
monitor (berth.services.monitor) drives restarting.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from berth.errors import FailedPrecondition, NotFound
from berth.gotime import rfc3339nano as now_rfc3339

log = logging.getLogger("berthd.state")

CREATED, RUNNING, PAUSED, RESTARTING, EXITED, REMOVING, DEAD = (
    "created", "running", "paused", "restarting", "exited", "removing", "dead")

ZERO_TIME = "0001-01-01T00:00:00Z"

ALLOWED: dict[str, set[str]] = {
    CREATED: {RUNNING, CREATED, EXITED, REMOVING, DEAD},
    RUNNING: {PAUSED, EXITED, RESTARTING, DEAD},
    PAUSED: {RUNNING, EXITED, RESTARTING, DEAD},
    EXITED: {RUNNING, RESTARTING, REMOVING, EXITED, DEAD},
    RESTARTING: {RUNNING, EXITED, REMOVING, DEAD},
    REMOVING: {DEAD, EXITED, CREATED},  # back when the removal failed before anything went
    DEAD: {REMOVING},
}


@dataclass
class RunState:
    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    error: str = ""
    oom_killed: bool = False
    # bumped on every start: a wait for "the next exit" compares it
    generation: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status in (RUNNING, PAUSED)

    def docker(self) -> dict[str, Any]:
        """docker's State object."""
        return {"Status": self.status, "Running": self.running, "Paused": self.status == PAUSED,
                "Restarting": self.status == RESTARTING, "OOMKilled": self.oom_killed,
                "Dead": self.status == DEAD, "Pid": self.pid if self.running else 0,
                "ExitCode": self.exit_code, "Error": self.error, "StartedAt": self.started_at,
                "FinishedAt": self.finished_at}

    @classmethod
    def load(cls, d: dict | None) -> "RunState":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


class ContainerStates:
    """The live states of a daemon's containers: cached, persisted, guarded, waitable."""

    def __init__(self, meta):
        self.meta = meta
        self.cond = threading.Condition()
        self._cache: dict[str, RunState] = {}
        self._gone: dict[str, RunState] = {}  # removed containers' last states, for late waits

    def get(self, ns: str, cid: str, rec=None) -> RunState:
        with self.cond:
            st = self._cache.get(cid)
            if st is not None:
                return st
        if rec is None:
            rec = self.meta.get_container(ns, cid)
        st = RunState.load((rec.extensions or {}).get("state"))
        with self.cond:
            return self._cache.setdefault(cid, st)

    def peek(self, cid: str) -> RunState | None:
        with self.cond:
            return self._cache.get(cid) or self._gone.get(cid)

    def transition(self, ns: str, cid: str, to: str, check: Callable[[RunState], None] | None = None,
                   ext: dict | None = None, persist: bool = True, durable: bool = True, **fields) -> RunState:
        """Move a container to ``to`` (FailedPrecondition when that move is not allowed from where
        it is; ``check`` may refuse too), persist it (with ``ext``: other keys of the record's
        extensions changed in the same transaction), wake the waiters. Returns the new state.
        persist=False: in memory only, for a state the next transition persists at once (what
        a restarted berthd finds instead leads to the same end). durable=False: persisted for a
        restarted berthd but not synced to the disk (a state a host crash makes moot: running)."""
        with self.cond:
            cur = self.get(ns, cid)
            if to not in ALLOWED[cur.status]:
                raise FailedPrecondition(f"container {cid[:12]} is {cur.status}: cannot become {to}")
            if check is not None:
                check(cur)
            new = RunState(**asdict(cur))
            new.status = to
            for k, v in fields.items():
                setattr(new, k, v)
            try:
                if persist or ext:
                    self._persist(ns, cid, new, ext, durable)
            except NotFound:
                raise
            except Exception as e:
                if to not in (EXITED, DEAD):
                    raise
                # an exit, or a failure, is a fact: known in memory even when the store cannot
                # take it (a full or broken disk), so that the waits on the container end
                log.error("container %s: %s, but its store cannot record it: %s", cid[:12], to, e)
            self._cache[cid] = new
            self.cond.notify_all()
            return new

    def _persist(self, ns: str, cid: str, st: RunState, ext: dict | None = None, durable: bool = True) -> None:
        def update(tx):
            tx.merge_container_extensions(ns, cid, dict(ext or {}, state=asdict(st)))
        try:
            self.meta.write(update, durable=durable)  # in a removal or a stop, it may use the reserve on a full disk
        except NotFound:
            pass

    def forget(self, cid: str) -> None:
        """The container's record went: its last state stays for waits that outlive it."""
        with self.cond:
            st = self._cache.pop(cid, None)
            if st is not None:
                self._gone[cid] = st
                while len(self._gone) > 1000:
                    self._gone.pop(next(iter(self._gone)))
            self.cond.notify_all()

    def wait_for(self, cid: str, pred: Callable[[RunState | None], bool], timeout: float | None = None) -> bool:
        """Block until pred(state) holds (state None: the container is gone); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                st = self._cache.get(cid)
                if pred(st):
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left if left is not None else 1.0)

    def wait_until(self, pred: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until pred() holds (checked under the lock, after each change); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left if left is not None else 1.0)
            return True

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()
