"""Container commands: run, create, start, ps, rm, stop, kill, logs, wait."""

import os
import struct
import sys

from berth.cli.args import for_each, parse_filters, parser, usage_error
from berth.errors import BerthError, NotFound


def _run_flags(p, run=True):
    from berth.cli import runflags
    runflags.add(p, run)


def _bytes(s):
    s = s.strip().lower()
    mult = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def _body(a):
    from berth.cli.runflags import env_file, pass_env
    env = [line for path in a.env_file for line in env_file(path)] + [pass_env(e) for e in a.env]
    hc = {"AutoRemove": a.rm, "ReadonlyRootfs": a.read_only, "Privileged": a.privileged,
          "CapAdd": a.cap_add or None, "CapDrop": a.cap_drop or None, "SecurityOpt": a.security_opt or None,
          "Init": a.init or None}
    if a.runtime:
        hc["Runtime"] = a.runtime
    if a.cpus:
        hc["NanoCpus"] = int(a.cpus * 1e9)
    if a.cpu_shares:
        hc["CpuShares"] = a.cpu_shares
    if a.pids_limit:
        hc["PidsLimit"] = a.pids_limit
    from berth.cli import runflags
    ulimits = [runflags.ulimit(u) for u in a.ulimit]
    if ulimits:
        hc["Ulimits"] = ulimits
    if a.log_opt:
        hc["LogConfig"] = {"Type": "json-file", "Config": dict(o.partition("=")[::2] for o in a.log_opt)}
    anon_volumes = _mount_flags(a, hc)
    labels = dict(x.partition("=")[::2] for x in a.label)
    detach = getattr(a, "detach", False)
    body = {"Image": a.image, "Env": env, "Tty": a.tty, "OpenStdin": a.interactive,
            "StdinOnce": a.interactive and not detach,  # as docker's CLI: not with -d
            "AttachStdin": a.interactive and not detach, "AttachStdout": not detach,
            "AttachStderr": not detach, "Labels": labels, "HostConfig": hc}
    if anon_volumes:  # -v /path: an anonymous volume (Config.Volumes, as docker's CLI sends it)
        body["Volumes"] = anon_volumes
    if a.command:
        body["Cmd"] = a.command
    if a.entrypoint is not None:
        body["Entrypoint"] = [a.entrypoint] if a.entrypoint else []
    for k, v in (("WorkingDir", a.workdir), ("User", a.user), ("Hostname", a.hostname),
                 ("StopSignal", a.stop_signal), ("StopTimeout", a.stop_timeout), ("Platform", a.platform)):
        if v is not None:
            body[k] = v
    from berth.cli import netflags, runflags
    runflags.apply(a, body, interactive_tty_check=hasattr(a, "detach"))
    return netflags.apply(a, body)


def _create(ctx, a):
    from berth.cli import runflags
    runflags.windows_only(a)  # the docker CLI's first check, before its flags' values
    try:
        body = _body(a)
    except BerthError as e:  # the flags' values, checked before anything is sent: 125, as docker
        raise usage_error(e) from None
    if a.cidfile and os.path.exists(a.cidfile):  # before the container is made, as docker
        raise BerthError(f"container ID file found, make sure the other container isn't running or delete {a.cidfile}")
    if a.pull == "always":
        _pull(ctx, a.image, a.platform, quiet=a.quiet)
    try:
        res = ctx.client.container_create(body, name=a.name)
    except NotFound as e:
        if a.pull == "never" or "no such image" not in e.message.lower():
            raise
        print(f"Unable to find image '{a.image}' locally", file=sys.stderr)
        _pull(ctx, a.image, a.platform, out=sys.stderr, quiet=a.quiet)
        res = ctx.client.container_create(body, name=a.name)
    cid = res["Id"]
    for w in res.get("Warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    if a.cidfile:
        with open(a.cidfile, "w") as f:
            f.write(cid)
    return cid


def _pull(ctx, image, platform, out=None, quiet=False):
    from berth.cli.auth import credentials_for
    from berth.cli.progress import show
    from berth.oci import reference
    ref = reference.parse(image)
    resp = ctx.client.image_pull(str(ref), platform=platform, auth=credentials_for(ref.domain))
    if quiet:
        import io
        out = io.StringIO()
    show(resp, out=out or sys.stdout)


def create(ctx, argv, cmd):
    """docker's exit codes: 125 for the flags (parsed or checked), 1 for the daemon's errors."""
    p = parser(cmd, "create a container")
    _run_flags(p, run=False)
    a = p.parse_args(argv)
    print(_create(ctx, a))
    return 0


def run(ctx, argv, cmd):
    p = parser(cmd, "run a command in a new container")
    _run_flags(p)
    a = p.parse_args(argv)
    try:
        cid = _create(ctx, a)
    except BerthError as e:
        raise _Exit(getattr(e, "code", 125), e.message)
    if a.detach:
        try:
            ctx.client.container_start(cid)
        except BerthError as e:
            raise _Exit(_start_code(e.message), e.message)
        print(cid)
        return 0
    if a.attach:  # -a: only the streams asked for
        want = {x.lower() for x in a.attach}
        attach = ctx.client.upgrade("POST", f"/containers/{cid}/attach", params={
            "stream": True, "stdin": "stdin" in want, "stdout": "stdout" in want, "stderr": "stderr" in want,
            "detachKeys": a.detach_keys or config_detach_keys() or None})
    else:
        attach = ctx.client.container_attach(cid, stdin=a.interactive,
                                             detach_keys=a.detach_keys or config_detach_keys())
    # as docker does: the wait is registered (its headers answered) before the start, so a quick
    # exit, and --rm's removal right after it, cannot make the wait miss the exit code
    waiter = ctx.client.call("POST", f"/containers/{cid}/wait",
                             params={"condition": "removed" if a.rm else "next-exit"}, stream=True)
    try:
        ctx.client.container_start(cid)
    except BerthError as e:
        attach.close()
        waiter.close()
        if a.rm:
            try:
                ctx.client.container_remove(cid, force=True)
            except BerthError:
                pass
        raise _Exit(_start_code(e.message), e.message)
    if _stream(ctx, cid, attach, a.tty, a.interactive, a.sig_proxy.lower() != "false",
               detach_keys=_detach_keys(a.detach_keys or config_detach_keys() or "ctrl-p,ctrl-q")):
        waiter.close()
        return 0  # detached: the container keeps running
    try:
        res = waiter.json() or {}
    finally:
        waiter.close()
    if res.get("Error"):
        raise _Exit(125, f"Error waiting for container: {res['Error'].get('Message')}")
    return res.get("StatusCode", 0)


class _Exit(BerthError):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _start_code(msg):
    from berth.errors import start_exit_code
    return start_exit_code(msg, 125)


_NO_KEYS = object()
_config_keys = _NO_KEYS


def config_detach_keys():
    """detachKeys of ~/.docker/config.json (DOCKER_CONFIG), as docker's CLI reads it; read once.
    On the run path: neither json nor berth.cli.auth (re, base64: ~15 ms of imports)."""
    global _config_keys
    if _config_keys is _NO_KEYS:
        _config_keys = _read_config_detach_keys()
    return _config_keys


def _read_config_detach_keys():
    from berth import fastjson
    from berth.cli.auth import config_path
    try:
        with open(config_path(), "rb") as f:
            keys = fastjson.loads(f.read()).get("detachKeys")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return keys if isinstance(keys, str) and keys else None


def _stream(ctx, cid, attach, tty, interactive, sig_proxy, detach_keys=None, resize=None):
    """Copy the streams; returns True when the user typed the detach keys (the container or
    exec keeps running)."""
    sock = attach.sock
    f = attach.f
    restore = None
    detached = []
    if detach_keys is None:
        detach_keys = _detach_keys(config_detach_keys() or "ctrl-p,ctrl-q")
    if tty and interactive and os.isatty(0):
        import termios
        import tty as ttymod
        restore = termios.tcgetattr(0)
        ttymod.setraw(0)
        resize = resize or (lambda h, w: ctx.client.container_resize(cid, h, w))

        def set_size(*_):
            try:
                size = os.get_terminal_size(0)
                resize(size.lines, size.columns)
            except (OSError, BerthError):
                pass
        set_size()
        import _signal
        _signal.signal(_signal.SIGWINCH, set_size)
    if interactive:
        def pump():
            seen = b""
            try:
                while True:
                    data = os.read(0, 65536)
                    if not data:
                        break
                    if tty and detach_keys:
                        seen = (seen + data)[-len(detach_keys):]
                        if seen == detach_keys:
                            # detach: leave the container running
                            detached.append(True)
                            sock.shutdown(2)
                            return
                    sock.sendall(data)
            except OSError:
                pass
            try:
                import socket
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        import threading
        threading.Thread(target=pump, daemon=True).start()
    if sig_proxy and not tty:
        import _signal  # the signal module's enum wrappers cost ~2 ms of start-up

        def forward(signum, _frame):
            try:
                ctx.client.container_kill(cid, str(int(signum)))
            except BerthError:
                pass
        for s in (_signal.SIGINT, _signal.SIGTERM):
            _signal.signal(s, forward)
    try:
        out = sys.stdout.buffer
        err = sys.stderr.buffer
        if tty:
            while True:
                d = f.read1(65536)
                if not d:
                    break
                out.write(d)
                out.flush()
        else:
            while True:
                head = f.read(8)
                if len(head) < 8:
                    break
                stream, size = struct.unpack(">BxxxI", head)
                data = f.read(size)
                w = err if stream == 2 else out
                w.write(data)
                w.flush()
    finally:
        if restore is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
        attach.close()
    return bool(detached)


def start(ctx, argv, cmd):
    p = parser(cmd, "start containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("--checkpoint")
    p.add_argument("--checkpoint-dir")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    if a.checkpoint or a.checkpoint_dir:
        raise BerthError("checkpoints are not supported by berth (--checkpoint, --checkpoint-dir)")
    if a.attach or a.interactive:
        return _start_attached(ctx, a)
    return for_each(a.names, lambda n: ctx.client.container_start(n), summary="failed to start containers")


def _start_attached(ctx, a):
    """docker start -a [-i]: one container, its output here, its exit code ours."""
    if len(a.names) > 1:
        raise BerthError("you cannot start and attach multiple containers at once")
    info = ctx.client.container_inspect(a.names[0])
    cid, cfg = info["Id"], info.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    stdin = bool(a.interactive and cfg.get("OpenStdin"))
    if tty and stdin and not os.isatty(0):
        raise _Exit(1, "the input device is not a TTY")
    attach = ctx.client.container_attach(cid, stdin=stdin)
    waiter = ctx.client.call("POST", f"/containers/{cid}/wait", params={"condition": "next-exit"}, stream=True)
    try:
        ctx.client.container_start(cid)
    except BerthError:
        attach.close()
        waiter.close()
        raise
    _stream(ctx, cid, attach, tty, stdin, True, detach_keys=_detach_keys(a.detach_keys or "ctrl-p,ctrl-q"))
    try:
        res = waiter.json() or {}
    finally:
        waiter.close()
    return res.get("StatusCode", 0)


def ps(ctx, argv, cmd):
    p = parser(cmd, "list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    a = p.parse_args(argv)
    filters = parse_filters(cmd, a.filter)
    limit = 1 if a.latest else a.last
    if a.size or (a.format and ".Size" in a.format):
        import json
        items = ctx.client.call("GET", "/containers/json", params={
            "all": (a.all or limit > 0) or None, "limit": limit if limit > 0 else None, "size": 1,
            "filters": json.dumps(filters) if filters else None})
    else:
        items = ctx.client.containers(all_=a.all or limit > 0, filters=filters or None,
                                      limit=limit if limit > 0 else None)
    from berth.cli.format import join_labels
    from berth.goquote import quote as go_quote
    rows = []
    for c in items:
        cmdline = c.get("Command") or ""
        if not a.no_trunc and len(cmdline) > 20:
            cmdline = cmdline[:19] + "…"
        rows.append({"ID": c["Id"] if a.no_trunc else c["Id"][:12],
                     "Image": c.get("Image", "") if a.no_trunc else _short_image(c), "Command": go_quote(cmdline),
                     "CreatedAt": c.get("Created"), "RunningFor": _ago(c.get("Created")),
                     "Status": c.get("Status", ""), "State": c.get("State", ""), "Ports": _ports(c.get("Ports")),
                     "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []), "Labels":
                     join_labels(c.get("Labels")), "Size": _ps_size(c)})
    if a.quiet and not a.format:
        for r in rows:
            print(r["ID"])
        return 0
    if a.format or a.size:
        from berth.cli.format import PS_RAW, PS_TABLE, container_context, print_formatted
        print_formatted(a.format or "table", [container_context(c, not a.no_trunc) for c in items],
                        default_table=PS_TABLE + ("\t{{.Size}}" if a.size else ""), quiet=a.quiet,
                        errors=("failed to parse template: ", "failed to execute template: "), raw=PS_RAW[a.size])
        return 0
    from berth.cli.format import table
    size = ["SIZE"] if a.size else []
    print(table([["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] + size] +
                [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
                 + ([r["Size"]] if a.size else []) for r in rows]))
    return 0


def _ps_size(c):
    """docker ps -s: "SizeRw (virtual SizeRootFs)"."""
    if "SizeRw" not in c:
        return "0B"
    from berth.units import human_size
    rw = human_size(c.get("SizeRw") or 0)
    if c.get("SizeRootFs"):
        return f"{rw} (virtual {human_size(c['SizeRootFs'])})"
    return rw


def _ports(ports):
    """docker ps's PORTS: 127.0.0.1:8080->80/tcp, 443/tcp."""
    from berth.cli.format import displayable_ports
    return displayable_ports(ports)


def _ago(ts):
    from berth.cli.format import ago
    return ago(ts)


def _short_image(c):
    from berth.cli.format import _short_image
    return _short_image(c["Image"], c.get("ImageID") or "") if c.get("Image") else "<no image>"


def rm(ctx, argv, cmd):
    p = parser(cmd, "remove containers")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes associated with the container")
    p.add_argument("names", nargs="+", help="containers")
    a = p.parse_args(argv)
    if a.link:
        return for_each(a.names, lambda n: ctx.client.call("DELETE", f"/containers/{n}", params={"link": "1"}))
    # as docker: with -f, a container that is not there is said but is no failure
    return for_each(a.names, lambda n: ctx.client.container_remove(n, force=a.force, volumes=a.volumes),
                    missing_ok=a.force)


def stop(ctx, argv, cmd):
    p = parser(cmd, "stop containers")
    p.add_argument("-t", "--timeout", "--time", type=int, dest="timeout")
    p.add_argument("-s", "--signal")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return for_each(a.names, lambda n: ctx.client.call("POST", f"/containers/{n}/stop",
                                                       params={"t": a.timeout, "signal": a.signal}))


def kill(ctx, argv, cmd):
    p = parser(cmd, "kill containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return for_each(a.names, lambda n: ctx.client.container_kill(n, a.signal))


def wait(ctx, argv, cmd):
    p = parser(cmd, "wait for containers to stop; print their exit codes")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    errors = []
    for n in a.names:  # as docker: one after the other, what failed said at the end
        try:
            res = ctx.client.container_wait(n)
        except BerthError as e:
            errors.append(e.message)
            continue
        print(res.get("StatusCode", 0) if isinstance(res, dict) else res, flush=True)
    for why in errors:
        print(f"berth: {why}", file=sys.stderr)
    return 1 if errors else 0


def logs(ctx, argv, cmd):
    p = parser(cmd, "show a container's logs")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("name")
    a = p.parse_args(argv)
    info = ctx.client.container_inspect(a.name)
    tty = bool((info.get("Config") or {}).get("Tty"))
    resp = ctx.client.container_logs(a.name, follow=a.follow, tail=a.tail, since=_time_arg(a.since, "since"),
                                     until=_time_arg(a.until, "until"), timestamps=a.timestamps, details=a.details)
    try:
        out, err = sys.stdout.buffer, sys.stderr.buffer
        if tty:
            while True:
                d = resp.read_some()
                if not d:
                    break
                out.write(d)
                out.flush()
        else:
            buf = b""
            while True:
                d = resp.read_some()
                if not d:
                    break
                buf += d
                while len(buf) >= 8:
                    stream, size = struct.unpack(">BxxxI", buf[:8])
                    if len(buf) < 8 + size:
                        break
                    (err if stream == 2 else out).write(buf[8:8 + size])
                    buf = buf[8 + size:]
                out.flush()
                err.flush()
    finally:
        resp.close()
    return 0


def _time_arg(s, flag=None):
    """docker's since/until: a Go duration before now, an RFC 3339 date or time, or Unix
    seconds, sent as seconds; the docker CLI's words for what is none of them (logs names the
    flag: `invalid value for "since": ...`)."""
    if not s:
        return None
    from berth.gotime import get_timestamp
    try:
        return f"{get_timestamp(s):.9f}"
    except ValueError as e:
        raise BerthError(f'invalid value for "{flag}": {e}' if flag else str(e)) from None


def exec_(ctx, argv, cmd):
    p = parser(cmd, "run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("--detach-keys")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("container")
    p.add_argument("command", nargs="...")
    p.min_args = 2
    a = p.parse_args(argv)
    if a.env:
        from berth.cli.runflags import check_env
        check_env(a.env)
    if not a.command:
        raise BerthError(f"'berth {cmd}' requires at least 2 arguments")
    if a.tty and a.interactive and not a.detach and not os.isatty(0):
        # as docker: a container that is not there first (its error takes precedence), then the tty
        ctx.client.container_inspect(a.container)
        from berth.cli.runflags import TtyError
        raise TtyError("the input device is not a TTY")
    from berth.cli.runflags import env_file, pass_env
    env = [line for path in a.env_file for line in env_file(path)] + [pass_env(e) for e in a.env]
    body = {"AttachStdin": a.interactive and not a.detach, "AttachStdout": not a.detach,
            "AttachStderr": not a.detach, "Tty": a.tty, "Cmd": a.command, "Env": env, "Privileged": a.privileged}
    if a.workdir:
        body["WorkingDir"] = a.workdir
    if a.user:
        body["User"] = a.user
    keys = a.detach_keys or config_detach_keys()
    if keys:
        body["DetachKeys"] = keys
    if a.tty and a.interactive and os.isatty(0):
        try:  # the exec's pty has the terminal's size from its start, as docker's (API 1.42+)
            size = os.get_terminal_size(0)
            body["ConsoleSize"] = [size.lines, size.columns]
        except OSError:
            pass
    eid = ctx.client.exec_create(a.container, body)["Id"]
    if a.detach:
        ctx.client.exec_start(eid, detach=True, tty=a.tty)
        return 0
    try:
        resp = ctx.client.exec_start(eid, tty=a.tty)
    except BerthError as e:
        raise _Exit(_start_code(e.message), e.message)
    if _stream(ctx, a.container, resp, a.tty, a.interactive, False,
               detach_keys=_detach_keys(a.detach_keys or config_detach_keys() or "ctrl-p,ctrl-q"),
               resize=lambda h, w: ctx.client.call("POST", f"/exec/{eid}/resize", params={"h": h, "w": w})):
        return 0  # detached: the exec keeps running
    info = ctx.client.exec_inspect(eid)
    code = info.get("ExitCode")
    return 126 if code is None else code


def restart(ctx, argv, cmd):
    p = parser(cmd, "restart containers")
    p.add_argument("-t", "--timeout", "--time", type=int, dest="timeout")
    p.add_argument("-s", "--signal")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return for_each(a.names, lambda n: ctx.client.call("POST", f"/containers/{n}/restart",
                                                       params={"t": a.timeout, "signal": a.signal}))


def attach(ctx, argv, cmd):
    p = parser(cmd, "attach to a running container's stdio")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    a = p.parse_args(argv)
    a.detach_keys = a.detach_keys or config_detach_keys() or "ctrl-p,ctrl-q"
    info = ctx.client.container_inspect(a.container)
    if not (info.get("State") or {}).get("Running"):
        raise BerthError("You cannot attach to a stopped container, start it first")
    cfg = info.get("Config") or {}
    stdin = cfg.get("OpenStdin") and not a.no_stdin
    keys = _detach_keys(a.detach_keys)
    resp = ctx.client.container_attach(info["Id"], stdin=bool(stdin), detach_keys=a.detach_keys)
    if _stream(ctx, info["Id"], resp, bool(cfg.get("Tty")), bool(stdin), a.sig_proxy.lower() != "false",
               detach_keys=keys):
        return 0
    st = ctx.client.container_inspect(info["Id"]).get("State") or {}
    return 0 if st.get("Running") else st.get("ExitCode", 0)


def _detach_keys(spec):
    """docker's --detach-keys: "ctrl-p,ctrl-q" -> b"\\x10\\x11"."""
    out = b""
    for k in spec.split(","):
        k = k.strip().lower()
        if k.startswith("ctrl-") and len(k) == 6:
            ch = k[5]
            if "a" <= ch <= "z":
                out += bytes([ord(ch) - ord("a") + 1])
            elif ch in "@[\\]^_":
                out += bytes([{"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch]])
            else:
                raise BerthError(f"invalid detach keys: {spec}")
        elif len(k) == 1:
            out += k.encode()
        else:
            raise BerthError(f"invalid detach keys: {spec}")
    return out


def events(ctx, argv, cmd):
    p = parser(cmd, "show events of the engine (containers, images), live")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--format")
    a = p.parse_args(argv)
    import json
    filters = parse_filters(cmd, a.filter)
    params = {"since": _time_arg(a.since), "until": _time_arg(a.until)}
    if filters:
        params["filters"] = json.dumps(filters)
    resp = ctx.client.call("GET", "/events", params=params, stream=True)
    tmpl = None
    if a.format:
        from berth.cli.format import events_template, render_event
        tmpl = events_template(a.format)
    try:
        for ev in resp.iter_json():
            if tmpl is not None:
                print(render_event(tmpl, ev), flush=True)
            else:
                import time
                ns = ev.get("timeNano", 0)
                when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"
                attrs = ", ".join(f"{k}={v}" for k, v in sorted((ev["Actor"].get("Attributes") or {}).items()))
                print(f"{when} {ev['Type']} {ev['Action']} {ev['Actor']['ID']}" + (f" ({attrs})" if attrs else ""),
                      flush=True)
    finally:
        resp.close()
    return 0


def _mount_flags(a, hc):
    """-v, --mount, --tmpfs, --volumes-from into HostConfig as docker's CLI sends them; returns
    Config.Volumes (the -v without a source)."""
    binds, anon = [], {}
    for v in a.volume:
        if _volume_source(v):
            binds.append(v)
        else:  # a path in the container alone: an anonymous volume (the daemon checks the path)
            anon[v] = {}
    if binds:
        hc["Binds"] = binds
    mounts = [_parse_mount(m) for m in a.mount]
    if mounts:
        hc["Mounts"] = mounts
    tmpfs = {}
    for t in a.tmpfs:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    if tmpfs:
        hc["Tmpfs"] = tmpfs
    if a.volumes_from:
        hc["VolumesFrom"] = list(a.volumes_from)
    return anon


def _volume_source(spec):
    """The source of a -v spec, split as the docker CLI does (compose's ParseVolume: sections
    between colons, a letter and a colon taken as a Windows drive); "" for a path alone. Only the
    CLI's own errors are raised here; the daemon checks the rest (modes, paths)."""
    if not spec:
        raise BerthError("invalid empty volume spec")
    if len(spec) <= 2:
        return ""
    source = target = None
    buf = ""
    for ch in spec + "\0":
        if ch == ":" and len(buf) == 1 and buf.isalpha():
            buf += ch
        elif ch in ":\0":
            if not buf:
                raise BerthError(f"invalid spec: {spec}: empty section between colons")
            if source is None:
                if ch == "\0":
                    return ""
                source = buf
            elif target is None:
                target = buf
            elif ch == ":":
                raise BerthError(f"invalid spec: {spec}: too many colons")
            buf = ""
        else:
            buf += ch
    return source


def _parse_mount(spec):
    """docker's --mount type=bind|volume|tmpfs,source=,target=,readonly,... -> a mount.Mount."""
    import csv
    m = {"Type": "volume"}
    vo, to, bo = {}, {}, {}
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise BerthError(f'invalid argument "{spec}" for "--mount" flag') from None
    for f in fields:
        k, eq, v = f.partition("=")
        k = k.strip().lower()
        if not eq and k not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise BerthError(f'invalid argument "{spec}" for "--mount" flag: invalid field \'{f}\' must be a key=value pair')
        truth = (v or "true").lower() in ("1", "true")
        if k == "type":
            m["Type"] = v.lower()
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "dst", "destination"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = truth
        elif k == "consistency":
            m["Consistency"] = v
        elif k == "bind-propagation":
            bo["Propagation"] = v
        elif k == "bind-recursive":  # the docker CLI's values (its API 1.44 fields)
            key = {"enabled": None, "disabled": "NonRecursive", "writable": "ReadOnlyNonRecursive",
                   "readonly": "ReadOnlyForceRecursive"}
            if v not in key:
                raise BerthError(f'invalid argument "{spec}" for "--mount" flag: invalid value for bind-recursive: '
                                 f'{v} (must be "enabled", "disabled", "writable", or "readonly")')
            if key[v]:
                bo[key[v]] = True
        elif k == "bind-nonrecursive":
            if eq:
                print('berth: warning: bind-nonrecursive is deprecated, use bind-recursive=disabled instead',
                      file=sys.stderr)
            if truth:
                bo["NonRecursive"] = True
        elif k == "volume-nocopy":
            vo["NoCopy"] = truth
        elif k == "volume-driver":
            vo.setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-label":
            lk, _, lv = v.partition("=")
            vo.setdefault("Labels", {})[lk] = lv
        elif k == "volume-opt":
            ok, _, ov = v.partition("=")
            vo.setdefault("DriverConfig", {}).setdefault("Options", {})[ok] = ov
        elif k == "volume-subpath":
            vo["Subpath"] = v
        elif k == "tmpfs-size":
            try:
                to["SizeBytes"] = _bytes(v)
            except ValueError:
                raise BerthError(f'invalid argument "{spec}" for "--mount" flag: invalid tmpfs-size {v!r}') from None
        elif k == "tmpfs-mode":
            try:
                to["Mode"] = int(v, 8)
            except ValueError:
                raise BerthError(f'invalid argument "{spec}" for "--mount" flag: invalid tmpfs-mode {v!r}') from None
        else:
            raise BerthError(f'invalid argument "{spec}" for "--mount" flag: unexpected key \'{k}\' in \'{f}\'')
    # the docker CLI's checks of the whole (the daemon checks the rest: types, sources)
    t = m["Type"]
    why = ("type is required" if not t else "target is required" if not m.get("Target") else
           f"cannot mix 'volume-*' options with mount type '{t}'" if vo and t != "volume" else
           f"cannot mix 'bind-*' options with mount type '{t}'" if bo and t != "bind" else
           f"cannot mix 'tmpfs-*' options with mount type '{t}'" if to and t != "tmpfs" else None)
    if not why and bo.get("ReadOnlyNonRecursive") and not m.get("ReadOnly"):
        why = "option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction"
    if not why and bo.get("ReadOnlyForceRecursive"):
        why = ("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction"
               if not m.get("ReadOnly") else
               "option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction"
               if bo.get("Propagation") != "rprivate" else None)
    if why:
        raise BerthError(f"invalid argument \"{spec}\" for \"--mount\" flag: {why}")
    if bo:
        m["BindOptions"] = bo
    if vo:
        m["VolumeOptions"] = vo
    if to:
        m["TmpfsOptions"] = to
    return m
