"""Running a process in a running container through its shim, and waiting for it: the CRI's
ExecSync (a probe's command: output captured, a timeout)."""

import json
import os
import signal
import socket
import struct
import time

from berth.errors import FailedPrecondition, InvalidArgument

MAX_OUTPUT = 16 << 20  # each stream is capped at 16 MiB (CVE-2022-1708), the rest discarded


def process_for(svc, rec, cmd, env=(), tty=False, cwd=None, user=None):
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


def run_sync(svc, ns, ref, cmd, timeout=0):
    """Run cmd in the container; returns (exit code, stdout, stderr). With timeout > 0 the process
    is killed when it runs longer and ExecTimeout is raised."""
    import secrets
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        raise FailedPrecondition(f"container {rec.id} is not running")
    process = process_for(svc, rec, cmd)
    eid = secrets.token_hex(16)
    s = socket.socket(socket.AF_UNIX)
    try:
        try:
            s.connect(svc.shim_socket(rec.id))
        except OSError:
            raise FailedPrecondition(f"container {rec.id} is not running") from None
        s.sendall(json.dumps({"op": "exec", "exec_id": eid, "process": process, "stdin": False}).encode() + b"\n")
        f = s.makefile("rb")
        line = f.readline()
        reply = json.loads(line or b"{}")
        if not reply.get("ok"):
            raise FailedPrecondition(f"exec failed: {reply.get('error') or 'the shim refused the exec'}")
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
                from berth.services.container_ops import _descendants
                for p in _descendants(pid):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            raise ExecTimeout(f"command {cmd!r} timed out after {timeout}s")
    finally:
        s.close()
    code = _exit_code(svc, rec, eid)
    return code, bytes(out[1]), bytes(out[2])


def _exit_code(svc, rec, eid):
    from berth.services.containers import _shim_call
    for _ in range(200):
        try:
            r = _shim_call(svc.shim_socket(rec.id), {"op": "exec_state", "exec_id": eid})
        except OSError:
            return 137  # the container ended, and the exec with it
        if r and r.get("ok") and not r.get("running") and r.get("exit_code") is not None:
            return int(r["exit_code"])
        time.sleep(0.01)
    return 255


def reopen_log(svc, ns, ref):
    """The CRI's ReopenContainerLog: the shim opens its log path again (the kubelet moved the
    file away to rotate it)."""
    from berth.services.containers import _shim_call
    rec = svc.get(ns, ref)
    if not svc.state(rec)["Running"]:
        raise FailedPrecondition(f"container {rec.id} is not running")
    try:
        r = _shim_call(svc.shim_socket(rec.id), {"op": "reopen_log"})
    except OSError as e:
        raise FailedPrecondition(f"container {rec.id}: its shim did not answer: {e}") from None
    if not r or not r.get("ok"):
        raise FailedPrecondition(f"container {rec.id}: {(r or {}).get('error') or 'reopening the log failed'}")


def update_resources(svc, ns, ref, hc):
    """Change the cgroup limits of a running container (docker's update, the CRI's
    UpdateContainerResources): hc holds HostConfig's resource keys (Memory, CpuShares, ...)."""
    from berth.services import container_ops, ocispec
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        raise FailedPrecondition(f"container {rec.id} is not running")
    resources = {}
    if hc.get("Memory"):
        resources["memory"] = {"limit": int(hc["Memory"])}
    if hc.get("CpuShares"):
        resources["cpu"] = {"shares": int(hc["CpuShares"])}
    ocispec._more_resources(resources, hc)
    mgr = container_ops._cgroup(st["Pid"])
    if mgr is None:
        raise FailedPrecondition(f"container {rec.id} has no cgroup of its own")
    if resources:
        mgr.set(resources)
        # recorded too: inspect shows them, and the next start applies them
        spec = dict(rec.spec_json() or {})
        spec["HostConfig"] = dict(spec.get("HostConfig") or {}, **hc)
        svc.meta.update_container(ns, rec.id, spec=spec)
