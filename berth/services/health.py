"""Healthchecks, as docker runs them: a probe (the container's Healthcheck, or its image's
HEALTHCHECK) run as an exec in the container through its shim, every Interval, killed after
Timeout; State.Health = {Status: starting|healthy|unhealthy, FailingStreak, Log: the last 5
probes}; a "health_status: <status>" event at each change.

Hook points (kept small so a container monitor can own them):
  effective_config(create_body, image_config)  at create: the merged Healthcheck (Config.Healthcheck)
  HealthMonitor.started(ns, cid)              after a start: status "starting", probes begin
  HealthMonitor.stopped(cid)                  after the exit: probes end, status "unhealthy"
  health_of(svc, rec, running)                State.Health for inspect/ps (None: no healthcheck)
The status lives in <state>/containers/<id>/health.json (it survives a daemon restart)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time

from berth.gotime import format_duration
from berth.gotime import rfc3339nano as _now

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Collection
    from typing import Any

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService
    from berth.services.events import EventBus

NS = 10**9
DEFAULT_INTERVAL = 30 * NS
DEFAULT_TIMEOUT = 30 * NS
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096
STATUSES = ("starting", "healthy", "unhealthy", "none")


def effective_config(body: dict[str, Any], image_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """docker's merge of the create body's Healthcheck over the image's (zero fields come from
    the image); None when there is none."""
    ic = ((image_config or {}).get("config") or {}).get("Healthcheck") or None
    hc = body.get("Healthcheck") or None
    if hc is None:
        return dict(ic) if ic else None
    out = dict(hc)
    if ic:
        if not out.get("Test"):
            out["Test"] = ic.get("Test")
        for k in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not out.get(k) and ic.get(k):
                out[k] = ic[k]
    return out


def check(hc: dict[str, Any] | None) -> None:
    """The create-time checks of a Healthcheck (docker's messages)."""
    from berth.errors import InvalidArgument
    if not hc:
        return
    for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = hc.get(k) or 0
        if not isinstance(v, int):
            raise InvalidArgument(f"Healthcheck.{k} must be an integer (nanoseconds)")
        if v != 0 and v < 1000000:
            raise InvalidArgument(f"{k} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")
    test = hc.get("Test")
    if test is not None and not isinstance(test, list):
        raise InvalidArgument("Healthcheck.Test must be a list")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(f"unknown healthcheck type {test[0]!r} (NONE, CMD or CMD-SHELL)")


def _active(hc: dict[str, Any] | None) -> bool:
    test = (hc or {}).get("Test") or []
    return bool(test) and test[0] != "NONE" and (test[0] != "CMD-SHELL" or len(test) > 1) and \
        (test[0] != "CMD" or len(test) > 1)


def probe_args(hc: dict[str, Any]) -> list[str]:
    test = hc["Test"]
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return list(test[1:])


def _path(svc: ContainerService, cid: str) -> str:
    return os.path.join(svc.sdir(cid), "health.json")


def _read(svc: ContainerService, cid: str) -> dict[str, Any] | None:
    try:
        with open(_path(svc, cid)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write(svc: ContainerService, cid: str, h: dict[str, Any]) -> None:
    path = _path(svc, cid)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(h, f)
        os.replace(tmp, path)
    except OSError:
        pass


def health_of(svc: ContainerService, rec: Container, running: bool | None) -> dict[str, Any] | None:
    """State.Health of a container (None if it has no healthcheck or never ran with one)."""
    hc = (rec.spec_json() or {}).get("Healthcheck")
    if not _active(hc):
        return None
    h = _read(svc, rec.id)
    if h is None:
        return None
    if not running:
        h["Status"] = "unhealthy"  # docker's SetStopped
    return h


def annotate(svc: ContainerService, rec: Container, st: dict[str, Any]) -> dict[str, Any]:
    """st with State.Health added when the container has a healthcheck (inspect, ps)."""
    h = health_of(svc, rec, st.get("Running"))
    if h is not None:
        st["Health"] = h
    return st


def status_suffix(st: dict[str, Any]) -> str:
    """ps STATUS: " (healthy)", " (unhealthy)", " (health: starting)"."""
    h = st.get("Health")
    if not h:
        return ""
    return " (health: starting)" if h["Status"] == "starting" else f" ({h['Status']})"


def match_filter(st: dict[str, Any], values: Collection[str]) -> bool:
    """--filter health=starting|healthy|unhealthy|none."""
    from berth.errors import InvalidArgument
    for v in values:
        if v not in STATUSES:
            raise InvalidArgument(f"Unrecognised filter value for health: {v}")
    status = (st.get("Health") or {}).get("Status") or "none"
    return status in values


class _ShimExec:
    """A probe's exec, through the shim's one client (ContainerService.shim)."""

    def __init__(self, svc: ContainerService, rec: Container) -> None:
        self.svc, self.rec = svc, rec

    def start(self, eid: str, proc: dict[str, Any], timeout_s: float) -> tuple[socket.socket, int]:
        """(socket carrying the exec's multiplexed output, pid); raises _ExecFailed."""
        from berth.shim import protocol as proto
        try:
            sock, reply = self.svc.shim(self.rec.id).open(proto.Exec(exec_id=eid, process=proc, stdin=False),
                                                          timeout=timeout_s)
        except socket.timeout:
            raise _ProbeTimeout() from None
        except Exception as e:  # noqa: BLE001 - the shim's error kinds
            raise _ExecFailed(getattr(e, "message", None) or str(e)) from None
        return sock, int(reply.get("pid") or 0)

    def exit_code(self, eid: str) -> int | None:
        for _ in range(100):
            try:
                st = self.svc.shim(self.rec.id).exec_state(eid)
                running, code = st.running, st.exit_code
            except Exception:  # noqa: BLE001 - the shim went (the container exited)
                return None
            if code is not None and not running:
                return code
            time.sleep(0.01)
        return None


class _ExecFailed(Exception):
    pass


class _ProbeTimeout(Exception):
    pass


def run_probe(svc: ContainerService, rec: Container, args: list[str], timeout_s: float,
              eid: str | None = None) -> tuple[int, str]:
    """One probe: an exec through the shim. Returns (exit code, output)."""
    with open(os.path.join(svc.sdir(rec.id), "bundle", "config.json")) as f:
        oci = json.load(f)
    proc = dict(oci["process"], args=args, terminal=False)
    proc.pop("consoleSize", None)
    eid = eid or secrets.token_hex(32)
    shim = _ShimExec(svc, rec)
    deadline = time.monotonic() + timeout_s
    out = b""
    buf = b""
    try:
        s, pid = shim.start(eid, proc, timeout_s)
    except _ProbeTimeout:
        return -1, f"Health check exceeded timeout ({format_duration(round(timeout_s * 1e9))})"
    except _ExecFailed as e:
        msg = str(e)
        low = msg.lower()
        return (127 if "not found" in low or "no such file" in low else 126), msg[:MAX_OUTPUT]
    try:
        timed_out = False
        while True:
            while len(buf) >= 8:
                size = int.from_bytes(buf[4:8], "big")
                if len(buf) < 8 + size:
                    break
                if len(out) < MAX_OUTPUT:
                    out += buf[8:8 + size]
                buf = buf[8 + size:]
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            s.settimeout(left)
            try:
                d = s.recv(65536)
            except socket.timeout:
                timed_out = True
                break
            if not d:
                break
            buf += d
        if timed_out:
            if pid:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            return -1, f"Health check exceeded timeout ({format_duration(round(timeout_s * 1e9))})"
    except OSError as e:
        return -1, f"health probe: {e.strerror or e}"
    finally:
        s.close()
    code = shim.exit_code(eid)
    return (-1 if code is None else code), out[:MAX_OUTPUT].decode(errors="replace")


class HealthMonitor:
    """One thread per running container that has a healthcheck."""

    def __init__(self, svc: ContainerService, events: EventBus) -> None:
        self.svc = svc
        self.events = events  # the bus its health_status events go on (berth.services.events)
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def started(self, ns: str, cid: str, reset: bool = True) -> None:
        """After a start (reset: the status begins again at "starting"; False after a daemon restart)."""
        try:
            rec = self.svc.meta.get_container(ns, cid)
        except Exception:  # noqa: BLE001 - gone meanwhile
            return
        hc = (rec.spec_json() or {}).get("Healthcheck")
        if not _active(hc):
            return
        self.stopped(cid, mark=False)
        if reset or _read(self.svc, cid) is None:
            _write(self.svc, cid, {"Status": "starting", "FailingStreak": 0, "Log": []})
        stop = threading.Event()
        with self._lock:
            self._stops[cid] = stop
        threading.Thread(target=self._loop, args=(ns, cid, hc, stop), name=f"health-{cid[:12]}",
                         daemon=True).start()

    def stopped(self, cid: str, mark: bool = True) -> None:
        with self._lock:
            stop = self._stops.pop(cid, None)
        if stop is not None:
            stop.set()

    def close(self) -> None:
        with self._lock:
            stops, self._stops = list(self._stops.values()), {}
        for s in stops:
            s.set()

    def _loop(self, ns: str, cid: str, hc: dict[str, Any], stop: threading.Event) -> None:
        interval = (hc.get("Interval") or DEFAULT_INTERVAL) / NS
        start_interval = (hc.get("StartInterval") or 0) / NS
        timeout = (hc.get("Timeout") or DEFAULT_TIMEOUT) / NS
        retries = hc.get("Retries") or DEFAULT_RETRIES
        start_period = (hc.get("StartPeriod") or 0) / NS
        args = probe_args(hc)
        t0 = time.time()
        while True:
            h = _read(self.svc, cid) or {"Status": "starting", "FailingStreak": 0, "Log": []}
            wait = interval
            if start_interval and h.get("Status") == "starting" and time.time() - t0 < start_period:
                wait = start_interval
            if stop.wait(wait):
                return
            try:
                rec = self.svc.meta.get_container(ns, cid)
                if not self.svc.state(rec)["Running"]:
                    return
            except Exception:  # noqa: BLE001 - removed meanwhile
                return
            started = time.time()
            start_s = _now()
            eid = secrets.token_hex(32)
            from berth.services.execs import event_command
            shown = event_command(args)
            self._event(ns, cid, f"exec_create: {shown}", execID=eid)  # as docker logs its probes
            self._event(ns, cid, f"exec_start: {shown}", execID=eid)
            code, output = run_probe(self.svc, rec, args, timeout, eid)
            self._event(ns, cid, "exec_die", execID=eid, exitCode=code)
            if stop.is_set():
                return
            h = _read(self.svc, cid) or {"Status": "starting", "FailingStreak": 0, "Log": []}
            old = h.get("Status")
            h["Log"] = (h.get("Log") or [])[-(MAX_LOG - 1):] + [
                {"Start": start_s, "End": _now(), "ExitCode": code, "Output": output}]
            if code == 0:
                h["FailingStreak"] = 0
                h["Status"] = "healthy"
            elif not (old == "starting" and started - t0 < start_period):
                h["FailingStreak"] = int(h.get("FailingStreak") or 0) + 1
                if h["FailingStreak"] >= retries:
                    h["Status"] = "unhealthy"
            _write(self.svc, cid, h)
            if h["Status"] != old:
                self._event(ns, cid, "health_status: " + h["Status"])

    def _event(self, ns: str, cid: str, action: str, **attrs: Any) -> None:
        try:
            self.events.container(ns, self.svc.meta.get_container(ns, cid), action, **attrs)
        except Exception:  # noqa: BLE001 - events never stop the checker (nor a container removed meanwhile)
            pass
