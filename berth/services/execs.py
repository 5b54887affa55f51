"""The exec use-cases: create an exec instance in a running container, start it (its stream a
socket to the container's shim), inspect and resize it; and run a command to completion with
its output captured (the CRI's ExecSync, health probes). Front ends translate their protocol
only; the exec runs in the shim, which reaps it and reports its exit code."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from berth.errors import BerthError, FailedPrecondition, InvalidArgument, NotFound
from berth.shim import protocol as proto
from berth.shim.client import ShimGone

if TYPE_CHECKING:
    from berth.metadata.records import Container
    from berth.services.containers import ContainerService
    from berth.services.events import EventBus


DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def detach_keys(spec: str | None, what: str = "detach keys") -> bytes:
    """docker's detach keys: "ctrl-p,ctrl-q" -> b"\\x10\\x11" (empty: the default)."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    if not isinstance(spec, str):
        raise InvalidArgument(f"Invalid {what} ({spec}) provided")
    out = b""
    for k in spec.split(","):
        if k.startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            code = ord(c) - ord("a") + 1 if "a" <= c <= "z" else \
                {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c)
            if code is None:
                raise InvalidArgument(f"Invalid {what} ({spec}) provided")
            out += bytes([code])
        elif len(k) == 1:
            out += k.encode()
        else:
            raise InvalidArgument(f"Invalid {what} ({spec}) provided")
    return out


def console_size(process: dict, size: list | None) -> None:
    """ConsoleSize [height, width] (API 1.42+, on exec create or start): the pty has it before
    the process starts (a resize after the start comes too late for a quick `stty size`)."""
    if not size or not process.get("terminal"):
        return
    try:
        h, w = (int(x) for x in size)
    except (TypeError, ValueError):
        raise InvalidArgument("ConsoleSize must be [height, width]") from None
    if h > 0 and w > 0:
        process["consoleSize"] = {"height": h, "width": w}


@dataclass
class ExecInstance:
    id: str
    namespace: str
    container: str
    config: dict  # docker's exec create body (Cmd, Env, Tty, User, ...)
    process: dict  # the OCI process it runs
    started: bool = False
    pid: int = 0
    exit_code: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """Whether its process has a pty (its stream is then raw bytes, not docker's frames)."""
        return bool(self.process.get("terminal"))

    @property
    def stdin_detach_keys(self) -> bytes | None:
        """The keys that leave an attached terminal's stdin with the process running (else None)."""
        return self.extra.get("detach") if self.config.get("AttachStdin") and self.terminal else None


class ExecService:
    def __init__(self, containers: ContainerService, events: EventBus) -> None:
        self.containers = containers
        self.events = events
        self._execs: dict[str, ExecInstance] = {}
        self._lock = threading.Lock()
        events.subscribe(self._container_gone)

    def _container_gone(self, ns: str, ev: dict) -> None:
        """A removed container's execs go with it (as dockerd's: no such exec instance after rm)."""
        if ev["Type"] == "container" and ev["Action"] == "destroy":
            cid = ev["Actor"]["ID"]
            with self._lock:
                for eid in [k for k, v in self._execs.items() if v.container == cid]:
                    del self._execs[eid]

    def process(self, ns: str, rec, body: dict) -> dict:
        """The OCI process of an exec: the container's, with the exec's command, env, cwd, user, tty."""
        # the user is looked up at the start, as dockerd does (an unknown one fails it: 126)
        p = process_for(self.containers, rec, body.get("Cmd"), (), bool(body.get("Tty")),
                        body.get("WorkingDir") or None)
        p["env"] = self._env(rec, p.get("env") or [], bool(body.get("Tty")), body.get("Env") or [])
        if body.get("Privileged"):
            from berth.services import ocispec
            caps = ocispec._all_caps()
            p["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        console_size(p, body.get("ConsoleSize"))
        return p

    def _env(self, rec, env: list[str], tty: bool, overrides: list[str]) -> list[str]:
        """dockerd's exec env: the container's (CreateDaemonEnvironment with the exec's tty: TERM=xterm
        with one, none without, unless the container's Config.Env says), then the exec's Env over
        it (a bare KEY, `docker exec -e KEY` of a variable the client has not, removes KEY)."""
        from berth.services import ocispec
        spec = rec.spec_json() or {}
        if bool(spec.get("Tty")) != tty:
            try:
                ic = self.containers.images.read_json(rec.image, 20 << 20, "image config").get("config") or {}
            except BerthError:
                ic = {}
            if not any(e.partition("=")[0] == "TERM" for e in ocispec.config_env(spec.get("Env"), ic.get("Env"))):
                env = [e for e in env if e != "TERM=xterm"]
                if tty:
                    at = next((i + 1 for i, e in enumerate(env) if e.startswith("HOSTNAME=")), 0)
                    env.insert(at, "TERM=xterm")
        return ocispec.replace_or_append_env(env, overrides)

    def create(self, ns: str, ref: str, body: dict) -> str:
        c = self.containers
        rec = c.get(ns, ref)
        st = c.run_state(ns, rec.id)
        if st.status == "paused":
            raise FailedPrecondition(f"Container {ref} is paused, unpause the container before exec")  # dockerd's, as named
        if not st.running:
            raise FailedPrecondition(f"Container {rec.id} is not running")  # dockerd's words
        body = dict(body)
        # Go's JSON decoding ignores case: docker-py sends "detachKeys"
        body["DetachKeys"] = body.get("DetachKeys") or body.pop("detachKeys", None) or ""
        keys = detach_keys(body["DetachKeys"], "escape keys")
        eid = secrets.token_hex(32)
        inst = ExecInstance(eid, ns, rec.id, body, self.process(ns, rec, body))
        inst.extra.update(detach=keys, running=threading.Event())
        with self._lock:
            self._execs[eid] = inst
        self.events.container(ns, rec, f"exec_create: {event_command(body.get('Cmd'))}", execID=eid)
        return eid

    def get(self, eid: str) -> ExecInstance:
        inst = self._execs.get(eid)
        if inst is None:
            raise NotFound(f"No such exec instance: {eid}")
        return inst

    def start(self, eid: str, detach: bool = False, console: list | None = None) -> tuple[socket.socket, dict] | None:
        """Start it in the container's shim. Attached: (socket carrying its stream, reply {"pid"});
        detached (its output dropped, as docker does): None. A process that cannot start (a
        missing binary, say) leaves the exec with exit code 126, as docker's."""
        with self._lock:
            inst = self.get(eid)
            check_not_started(inst)
            inst.started = True
        console_size(inst.process, console)
        try:  # as dockerd's: before the process starts (its exec_die may come at once)
            rec = self.containers.meta.get_container(inst.namespace, inst.container)
            self.events.container(inst.namespace, rec, f"exec_start: {event_command(inst.config.get('Cmd'))}",
                                  execID=eid)
        except NotFound:
            pass
        if inst.config.get("User"):
            from berth.services import ocispec
            try:
                uid, gid, groups = ocispec.lookup_user(self.containers.rootfs(inst.container), inst.config["User"])
            except BerthError:
                inst.exit_code = 126  # as dockerd's: the exec never ran (its start's error says why)
                inst.extra["running"].set()
                raise
            inst.process["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
        req = proto.Exec(exec_id=eid, process=inst.process,
                         stdin=bool(inst.config.get("AttachStdin")) and not detach)
        try:
            sock, reply = self.containers.shim(inst.container).open(req)
        except ShimGone:
            raise FailedPrecondition(f"container {inst.container} is not running") from None
        except BerthError as e:  # the runtime could not start it (no such binary, a bad working dir...)
            inst.exit_code = 126
            raise InvalidArgument(start_failure(e)) from None
        finally:
            inst.extra["running"].set()  # a resize may go to its pty now (or fail at once)
        inst.pid = int(reply.get("pid") or 0)
        if detach:
            sock.close()  # the shim streams to no one; the exec runs on
            return None
        return sock, reply

    def exited(self, ns: str, cid: str, ev: proto.ExecExit) -> None:
        """The container's shim told an exec's end: recorded, and docker's exec_die published
        (for the execs of this service: health probes publish their own, the CRI's ExecSync none)."""
        inst = self._execs.get(ev.exec_id)
        if inst is None or inst.container != cid:
            return
        inst.exit_code = int(ev.exit_code)
        try:
            rec = self.containers.meta.get_container(ns, cid)
        except NotFound:
            return
        self.events.container(ns, rec, "exec_die", execID=inst.id, exitCode=inst.exit_code)

    def inspect(self, eid: str) -> dict:
        inst = self.get(eid)
        running, code = False, inst.exit_code
        if inst.started and inst.exit_code is None:
            try:
                s = self.containers.shim(inst.container).exec_state(eid)
                running, code = s.running, s.exit_code
            except (ShimGone, NotFound, OSError):
                code = 137  # the container (and its shim) ended: the exec ended with it
            if not running and code is not None:
                inst.exit_code = code
        b = inst.config
        return {
            "ID": eid, "Running": running, "ExitCode": code, "ProcessConfig": {
                "tty": bool(b.get("Tty")), "entrypoint": b["Cmd"][0], "arguments": b["Cmd"][1:],
                "privileged": bool(b.get("Privileged")),
                **({"user": b["User"]} if b.get("User") else {})},  # dockerd's: omitted when empty
            "OpenStdin": bool(b.get("AttachStdin")), "OpenStderr": bool(b.get("AttachStderr")),
            "OpenStdout": bool(b.get("AttachStdout")), "CanRemove": False, "ContainerID": inst.container,
            # as dockerd's: the keys' bytes, base64-encoded (a Go []byte)
            "DetachKeys": base64.b64encode(inst.extra["detach"]).decode() if b.get("DetachKeys") else "",
            "Pid": inst.pid or 0}

    def resize(self, eid: str, h: int, w: int) -> None:
        """The exec's pty lives in the container's shim: it resizes it."""
        inst = self.get(eid)
        if not inst.started:
            raise FailedPrecondition(f"exec {eid} is not running")
        # a client resizes right after the start's head, which comes before the process
        if not inst.extra["running"].wait(10) or inst.exit_code is not None and not inst.pid:
            raise FailedPrecondition(f"exec {eid} is not running")
        if inst.exit_code is not None:  # ended: its process is gone (containerd's, through dockerd: a 404)
            raise NotFound("no such exec")
        try:
            self.containers.shim(inst.container).resize(int(h), int(w), exec_id=eid)
        except ShimGone:
            pass


def check_not_started(inst: ExecInstance) -> None:
    """A start of an exec that has started already: a conflict, in dockerd's words."""
    if inst.started:
        if inst.exit_code is not None:
            raise FailedPrecondition(f"Error: Exec command {inst.id} has already run")
        raise FailedPrecondition(f"Error: Exec command {inst.id} is already running")


# --- run to completion: the CRI's ExecSync, health probes ---------------------------------

MAX_OUTPUT = 16 << 20  # each stream is capped at 16 MiB (CVE-2022-1708), the rest discarded


def process_for(svc: ContainerService, rec, cmd: list[str] | None, env=(), tty: bool = False, cwd: str | None = None,
                user: str | None = None) -> dict:
    """The OCI process of an exec: the container's own (from its bundle), with another command."""
    from berth.services import ocispec
    if not cmd or not isinstance(cmd, list):
        raise InvalidArgument("no exec command specified")
    with open(os.path.join(svc.sdir(rec.id), "bundle", "config.json")) as f:
        oci = json.load(f)
    p = dict(oci["process"])
    p["args"] = list(cmd)
    p["env"] = list(p.get("env") or []) + list(env)
    p["terminal"] = bool(tty)
    if cwd:
        p["cwd"] = cwd
    if user:
        uid, gid, groups = ocispec.lookup_user(svc.rootfs(rec.id), user)
        p["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
    p.pop("consoleSize", None)
    return p


class ExecTimeout(Exception):
    pass


def start_failure(e: BerthError) -> str:
    """The runtime's refusal to start an exec (no such binary, a bad working directory...) in the
    words of runc and containerd's shim, which dockerd and containerd's CRI pass on."""
    why = e.message.removeprefix("config.json: ")
    if isinstance(e, InvalidArgument) and not why.startswith('exec: "'):
        # the process's spec, refused before any process (runc's validation); a command that is not
        # executable is the started process's failure, as one that is not there
        return f"OCI runtime exec failed: exec failed: {why}: unknown"
    return f"OCI runtime exec failed: exec failed: unable to start container process: {why}: unknown"


def run_sync(svc: ContainerService, ns: str, ref: str, cmd: list[str],
             timeout: float = 0, eid: str | None = None) -> tuple[int, bytes, bytes]:
    """Run cmd in the container; returns (exit code, stdout, stderr). With timeout > 0 the process
    is killed when it runs longer and ExecTimeout is raised. eid: the exec's id (a new one)."""
    import secrets
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        raise FailedPrecondition(f"container {rec.id} is not running")
    process = process_for(svc, rec, cmd)
    eid = eid or secrets.token_hex(16)
    try:
        s, reply = svc.shim(rec.id).open(proto.Exec(exec_id=eid, process=process, stdin=False))
    except ShimGone:
        raise FailedPrecondition(f"container {rec.id} is not running") from None
    try:
        f = s.makefile("rb")
        pid = reply.get("pid") or 0
        out = {1: bytearray(), 2: bytearray()}
        deadline = time.monotonic() + timeout if timeout and timeout > 0 else None
        timed_out = False
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                s.settimeout(left)
            try:
                hdr = f.read(8)
            except (TimeoutError, socket.timeout):
                timed_out = True
                break
            if len(hdr) < 8:
                break
            kind, size = struct.unpack(">BxxxI", hdr)
            data = f.read(size)
            buf = out.get(kind)
            if buf is not None and len(buf) < MAX_OUTPUT:
                buf += data[:MAX_OUTPUT - len(buf)]
        if timed_out:
            if pid:  # the command and whatever it started (a probe's shell and its children)
                from berth.services.processes import _descendants
                for p in _descendants(pid):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            from berth.gotime import format_duration
            # containerd's words (its exec's context deadline)
            raise ExecTimeout(f"timeout {format_duration(round(timeout * 1e9))} exceeded: context deadline exceeded")
    finally:
        s.close()
    code = _exit_code(svc, rec, eid)
    return code, bytes(out[1]), bytes(out[2])


def _exit_code(svc: ContainerService, rec, eid: str) -> int:
    for _ in range(200):
        try:
            r = svc.shim(rec.id).exec_state(eid)
        except (ShimGone, OSError):
            return 137  # the container ended, and the exec with it
        if not r.running and r.exit_code is not None:
            return int(r.exit_code)
        time.sleep(0.01)
    return 255


def reopen_log(svc: ContainerService, ns: str, ref: str) -> None:
    """The CRI's ReopenContainerLog: the shim opens its log path again (the kubelet moved the
    file away to rotate it)."""
    rec = svc.get(ns, ref)
    if not svc.state(rec)["Running"]:
        raise FailedPrecondition(f"container {rec.id} is not running")
    try:
        svc.shim(rec.id).call(proto.ReopenLog())
    except OSError as e:
        raise FailedPrecondition(f"container {rec.id}: its shim did not answer: {e}") from None


def update_resources(svc: ContainerService, ns: str, ref: str, hc: dict) -> None:
    """Change the cgroup limits of a container (the CRI's UpdateContainerResources): hc holds
    HostConfig's resource keys (Memory, CpuShares, ...). Recorded, and applied to its cgroup when
    it runs; one that does not run has them at its next start (as containerd's)."""
    from berth.services import ocispec, processes
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        _record_resources(svc, ns, rec, hc)
        return
    resources = {}
    if hc.get("Memory"):
        resources["memory"] = {"limit": int(hc["Memory"])}
    if hc.get("CpuShares"):
        resources["cpu"] = {"shares": int(hc["CpuShares"])}
    ocispec._more_resources(resources, hc)
    mgr = processes._cgroup(st["Pid"])
    if mgr is None:
        raise FailedPrecondition(f"container {rec.id} has no cgroup of its own")
    if resources:
        mgr.set(resources)
        _record_resources(svc, ns, rec, hc)  # inspect shows them, and the next start applies them
        _update_bundle(svc, rec.id, resources)


def _update_bundle(svc: ContainerService, cid: str, resources: dict) -> None:
    """The running container's OCI spec (its bundle's config.json, what the CRI's verbose
    status shows as runtimeSpec) takes the limits just applied, as containerd updates the
    spec it keeps; the next start writes the bundle anew from the record."""
    path = os.path.join(svc.sdir(cid), "bundle", "config.json")
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return
    linux = spec.setdefault("linux", {})
    cur = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(cur.get(key), dict):
            cur[key] = dict(cur[key], **value)
        else:
            cur[key] = value
    tmp = f"{path}.{secrets.token_hex(4)}"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(spec))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _record_resources(svc: ContainerService, ns: str, rec: Container, hc: dict) -> None:
    spec = dict(rec.spec_json() or {})
    spec["HostConfig"] = dict(spec.get("HostConfig") or {}, **hc)
    svc.meta.update_container(ns, rec.id, spec=spec)


def event_command(cmd: list[str] | None) -> str:
    """An exec's command in its events' action, as dockerd writes it: the program, a space, then
    its arguments joined by spaces (so a command without arguments ends in a space)."""
    cmd = list(cmd or [])
    return (cmd[0] if cmd else "") + " " + " ".join(cmd[1:])
