"""Exec endpoints: create an exec instance, start it (hijacked stream), inspect, resize."""

import asyncio
import base64
import json
import os
import secrets

from aiohttp import web

from berth.api.app import json_response, namespace_of, stream_headers
from berth.api.containers import detach_keys, hijack, pipe
from berth.errors import FailedPrecondition, InvalidArgument, NotFound


def _process(d, ns, rec, body):
    """The OCI process of an exec: the container's, with the exec's command, env, cwd, user, tty."""
    from berth.services import ocispec
    with open(os.path.join(d.containers.sdir(rec.id), "bundle", "config.json")) as f:
        oci = json.load(f)
    p = dict(oci["process"])
    cmd = body.get("Cmd")
    if not cmd or not isinstance(cmd, list):
        raise InvalidArgument("no exec command specified")
    p["args"] = cmd
    env = list(p.get("env") or []) + list(body.get("Env") or [])
    p["env"] = env
    p["terminal"] = bool(body.get("Tty"))
    if body.get("WorkingDir"):
        p["cwd"] = body["WorkingDir"]
    if body.get("User"):
        uid, gid, groups = ocispec.lookup_user(d.containers.rootfs(rec.id), body["User"])
        p["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
    if body.get("Privileged"):
        caps = ocispec._all_caps()
        p["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    p.pop("consoleSize", None)
    _console_size(p, body)
    return p


def _console_size(p, body):
    """ConsoleSize [height, width] (API 1.42+, on create or start): the pty has it before the
    process starts (a resize after the start comes too late for a quick `stty size`)."""
    size = (body or {}).get("ConsoleSize")
    if not size or not p.get("terminal"):
        return
    try:
        h, w = (int(x) for x in size)
    except (TypeError, ValueError):
        raise InvalidArgument("ConsoleSize must be [height, width]") from None
    if h > 0 and w > 0:
        p["consoleSize"] = {"height": h, "width": w}


async def create(request):
    d = request.app["daemon"]
    ns = namespace_of(request)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    rec = await d.run(d.containers.get, ns, request.match_info["id"])
    st = await d.run(d.containers.state, rec)
    if not st["Running"]:
        raise FailedPrecondition(f"container {rec.id} is not running")
    if st["Paused"]:
        raise FailedPrecondition(f"container {rec.id} is paused, unpause the container before exec")
    process = await d.run(_process, d, ns, rec, body)
    # Go's JSON decoding ignores case: docker-py sends "detachKeys"
    body["DetachKeys"] = body.get("DetachKeys") or body.pop("detachKeys", None) or ""
    keys = detach_keys(body["DetachKeys"], "escape keys")
    eid = secrets.token_hex(32)
    d.execs[eid] = {"ns": ns, "container": rec.id, "body": body, "process": process, "started": False,
                    "detach": keys, "running": asyncio.Event()}
    return json_response({"Id": eid}, status=201)


def _exec(d, request):
    e = d.execs.get(request.match_info["id"])
    if e is None:
        raise NotFound(f"No such exec instance: {request.match_info['id']}")
    return e


async def start(request):
    d = request.app["daemon"]
    e = _exec(d, request)
    try:
        body = await request.json()
    except ValueError:
        body = {}
    if e["started"]:
        raise FailedPrecondition(f"exec {request.match_info['id']} has already been started")
    e["started"] = True
    detach = bool((body or {}).get("Detach"))
    _console_size(e["process"], body if isinstance(body, dict) else {})
    sock_path = d.containers.shim_socket(e["container"])
    try:
        reader, writer = await asyncio.open_unix_connection(sock_path)
    except OSError:
        raise FailedPrecondition(f"container {e['container']} is not running") from None
    cfg = e["body"]
    # attached, the head goes first: no output of the process may share a read with it (clients
    # that read the head through a buffer would lose it); a failed start is then told in the stream
    hijacked = None if detach else hijack(request)
    writer.write(json.dumps({"op": "exec", "exec_id": request.match_info["id"], "process": e["process"],
                             "stdin": bool(cfg.get("AttachStdin")) and not detach}).encode() + b"\n")
    await writer.drain()
    reply = json.loads(await reader.readline() or b"{}")
    if not reply.get("ok"):
        writer.close()
        e["exit_code"] = 126  # as docker's: the exec did not start
        e["running"].set()
        msg = f"OCI runtime exec failed: exec failed: unable to start container process: {reply.get('error') or 'exec failed'}: unknown"
        if hijacked is None:
            raise InvalidArgument(msg)
        text = (msg + "\r\n").encode()
        if not (body or {}).get("Tty"):
            text = b"\x01\0\0\0" + len(text).to_bytes(4, "big") + text
        hijacked[0].write(text)
        hijacked[0].close()
        return web.Response()
    e["pid"] = reply.get("pid")
    e["running"].set()  # a resize may go to its pty now
    if detach:
        # output is dropped, as docker does; keep the connection so the shim streams nowhere
        async def drain():
            try:
                while await reader.read(65536):
                    pass
            finally:
                writer.close()
        asyncio.ensure_future(drain())
        return web.Response(status=200, headers=stream_headers())
    tty = bool((body or {}).get("Tty"))  # docker's rule: the start body's Tty decides the framing
    if tty != bool(e["process"].get("terminal")):
        reader = _Reframe(reader, frame=not tty)
    keys = e["detach"] if cfg.get("AttachStdin") and e["process"].get("terminal") else None
    await pipe(*hijacked, reader, writer, detach=keys)
    return web.Response()


class _Reframe:
    """The shim frames an exec's output by its process's terminal (raw bytes of a pty, or
    docker's 8-byte headed frames of stdout/stderr): frames a pty's bytes as stdout, or unframes."""

    def __init__(self, reader, frame):
        self.reader, self.frame, self.buf = reader, frame, b""

    async def read(self, n):
        if self.frame:
            data = await self.reader.read(n)
            return b"\x01\0\0\0" + len(data).to_bytes(4, "big") + data if data else b""
        while True:
            out = b""
            while len(self.buf) >= 8 and len(self.buf) >= 8 + int.from_bytes(self.buf[4:8], "big"):
                size = int.from_bytes(self.buf[4:8], "big")
                out += self.buf[8:8 + size]
                self.buf = self.buf[8 + size:]
            if out:
                return out
            data = await self.reader.read(n)
            if not data:
                return b""
            self.buf += data


async def inspect(request):
    d = request.app["daemon"]
    e = _exec(d, request)
    state = {"running": False, "exit_code": None, "pid": e.get("pid", 0)}
    if e["started"]:
        from berth.services.containers import _shim_call
        path = d.containers.shim_socket(e["container"])

        def call():
            try:
                return _shim_call(path, {"op": "exec_state", "exec_id": request.match_info["id"]})
            except OSError:
                return None
        r = await d.run(call)
        if r and r.get("ok"):
            state = r
        elif "exit_code" in e:
            state = {"running": False, "exit_code": e["exit_code"], "pid": e.get("pid", 0)}
        else:
            # the container (and its shim) ended: the exec ended with it
            state = {"running": False, "exit_code": e.get("exit_code", 137), "pid": e.get("pid", 0)}
        if not state.get("running") and state.get("exit_code") is not None:
            e["exit_code"] = state["exit_code"]
    b = e["body"]
    return json_response({
        "ID": request.match_info["id"], "Running": bool(state.get("running")),
        "ExitCode": state.get("exit_code"), "ProcessConfig": {
            "tty": bool(b.get("Tty")), "entrypoint": b["Cmd"][0], "arguments": b["Cmd"][1:],
            "privileged": bool(b.get("Privileged")), "user": b.get("User") or ""},
        "OpenStdin": bool(b.get("AttachStdin")), "OpenStderr": bool(b.get("AttachStderr")),
        "OpenStdout": bool(b.get("AttachStdout")), "CanRemove": False, "ContainerID": e["container"],
        # as dockerd's: the keys' bytes, base64-encoded (a Go []byte)
        "DetachKeys": base64.b64encode(e["detach"]).decode() if b.get("DetachKeys") else "",
        "Pid": state.get("pid") or 0})


async def resize(request):
    """The exec's pty lives in the container's shim: it resizes it."""
    d = request.app["daemon"]
    e = _exec(d, request)
    try:
        h, w = int(request.query.get("h", 24)), int(request.query.get("w", 80))
    except ValueError:
        raise InvalidArgument("h and w must be integers") from None
    if not e.get("started"):
        raise FailedPrecondition(f"exec {request.match_info['id']} is not running")
    try:  # a client resizes right after the start's head, which comes before the process
        await asyncio.wait_for(e["running"].wait(), 10)
    except asyncio.TimeoutError:
        raise FailedPrecondition(f"exec {request.match_info['id']} is not running") from None
    path = d.containers.shim_socket(e["container"])

    def call():
        from berth.services.containers import _shim_call
        try:
            _shim_call(path, {"op": "resize", "exec_id": request.match_info["id"], "h": h, "w": w})
        except OSError:
            pass
    await d.run(call)
    return web.Response(status=200, headers=stream_headers())


def routes(r):
    r.add("POST", "/containers/{id}/exec", create)
    r.add("POST", "/exec/{id}/start", start)
    r.add("GET", "/exec/{id}/json", inspect)
    r.add("POST", "/exec/{id}/resize", resize)
