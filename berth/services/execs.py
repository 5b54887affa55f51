"""The exec use-cases: create an exec instance in a running container, start it (its stream a
socket to the container's shim), inspect and resize it. Front ends translate their protocol
only; the exec runs in the shim, which reaps it and reports its exit code."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field

from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.shim import protocol as proto
from berth.shim.client import ShimGone


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


class ExecService:
    def __init__(self, containers, events):
        self.containers = containers
        self.events = events
        self._execs: dict[str, ExecInstance] = {}
        self._lock = threading.Lock()

    def process(self, ns: str, rec, body: dict) -> dict:
        """The OCI process of an exec: the container's, with the exec's command, env, cwd, user, tty."""
        from berth.services import ocispec
        with open(os.path.join(self.containers.sdir(rec.id), "bundle", "config.json")) as f:
            oci = json.load(f)
        p = dict(oci["process"])
        cmd = body.get("Cmd")
        if not cmd or not isinstance(cmd, list):
            raise InvalidArgument("no exec command specified")
        p["args"] = cmd
        p["env"] = list(p.get("env") or []) + list(body.get("Env") or [])
        p["terminal"] = bool(body.get("Tty"))
        if body.get("WorkingDir"):
            p["cwd"] = body["WorkingDir"]
        if body.get("User"):
            uid, gid, groups = ocispec.lookup_user(self.containers.rootfs(rec.id), body["User"])
            p["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
        if body.get("Privileged"):
            caps = ocispec._all_caps()
            p["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        p.pop("consoleSize", None)
        return p

    def create(self, ns: str, ref: str, body: dict) -> str:
        c = self.containers
        rec = c.get(ns, ref)
        st = c.run_state(ns, rec.id)
        if st.status == "paused":
            raise FailedPrecondition(f"container {rec.id} is paused, unpause the container before exec")
        if not st.running:
            raise FailedPrecondition(f"container {rec.id} is not running")
        eid = secrets.token_hex(32)
        inst = ExecInstance(eid, ns, rec.id, dict(body), self.process(ns, rec, body))
        with self._lock:
            self._execs[eid] = inst
        self.events.container(ns, rec, f"exec_create: {' '.join(body.get('Cmd') or [])}", execID=eid)
        return eid

    def get(self, eid: str) -> ExecInstance:
        inst = self._execs.get(eid)
        if inst is None:
            raise NotFound(f"No such exec instance: {eid}")
        return inst

    def start(self, eid: str, detach: bool = False) -> tuple[socket.socket, dict] | None:
        """Start it in the container's shim. Attached: (socket carrying its stream, reply {"pid"});
        detached (its output dropped, as docker does): None."""
        with self._lock:
            inst = self.get(eid)
            if inst.started:
                raise FailedPrecondition(f"exec {eid} has already been started")
            inst.started = True
        req = proto.Exec(exec_id=eid, process=inst.process,
                         stdin=bool(inst.config.get("AttachStdin")) and not detach)
        try:
            sock, reply = self.containers.shim(inst.container).open(req)
        except ShimGone:
            raise FailedPrecondition(f"container {inst.container} is not running") from None
        except NotFound as e:
            raise NotFound(f"exec failed: {e.message}") from None
        except FailedPrecondition as e:
            raise FailedPrecondition(f"exec failed: {e.message}") from None
        inst.pid = int(reply.get("pid") or 0)
        try:
            rec = self.containers.meta.get_container(inst.namespace, inst.container)
            self.events.container(inst.namespace, rec, f"exec_start: {' '.join(inst.config.get('Cmd') or [])}",
                                  execID=eid)
        except NotFound:
            pass
        if detach:
            sock.close()  # the shim streams to no one; the exec runs on
            return None
        return sock, reply

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
                "privileged": bool(b.get("Privileged")), "user": b.get("User") or ""},
            "OpenStdin": bool(b.get("AttachStdin")), "OpenStderr": bool(b.get("AttachStderr")),
            "OpenStdout": bool(b.get("AttachStdout")), "CanRemove": False, "ContainerID": inst.container,
            "DetachKeys": "", "Pid": inst.pid or 0}

    def resize(self, eid: str, h: int, w: int) -> None:
        """The exec's pty lives in the container's shim: it resizes it."""
        inst = self.get(eid)
        if not inst.started:
            raise FailedPrecondition(f"exec {eid} is not running")
        try:
            self.containers.shim(inst.container).resize(int(h), int(w), exec_id=eid)
        except ShimGone:
            pass
