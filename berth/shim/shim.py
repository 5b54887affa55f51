"""The per-container monitor (shim): creates and starts the container with the runtime library
(or another OCI runtime binary), owns its stdio, writes the json-file log, serves attach/wait/
kill/resize on its own socket, reaps the init and records the exit status on disk.

It is not a child of berthd (forked from the zygote, then re-parented), so containers keep
running when berthd stops; berthd finds them again through <state_dir>/shim.sock and exit.json.

Socket protocol: the client sends one JSON line, {"op": ...}:
  attach {stdin, stdout, stderr, logs?}  then the socket carries the stream: output frames
         (docker's 8-byte header per frame when there is no TTY, raw bytes with a TTY) to the
         client, the client's bytes to the container's stdin; the client's EOF closes stdin.
  wait   -> {"exit_code", "finished_at"} once the container has exited
  kill {signal}, resize {h, w}, state -> one JSON line back
"""

import _signal
import _socket
import errno
import json
import os
import select
import socket
import struct
import sys
import time

from berth import fastjson
from berth.linux import syscalls as sc


def _now_rfc3339():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


class JSONLog:
    """docker's json-file log driver: one JSON object per line, size-based rotation."""

    def __init__(self, path, max_size=0, max_file=1):
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.f = open(path, "ab")
        self.size = self.f.tell()
        self.partial = {}  # stream -> the start of a line not ended yet

    def write(self, stream, data):
        """One entry per line, as docker's log copier: a line without its newline waits for the
        rest (up to 16 KiB), or for flush() at the stream's end."""
        lines = (self.partial.pop(stream, b"") + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._entry(stream, line + b"\n")
        if len(rest) >= 16384:
            self._entry(stream, rest)
        elif rest:
            self.partial[stream] = rest

    def flush(self, stream=None):
        for s in [stream] if stream else list(self.partial):
            rest = self.partial.pop(s, b"")
            if rest:
                self._entry(s, rest)

    def _entry(self, stream, data):
        line = json.dumps({"log": data.decode("utf-8", errors="replace"), "stream": stream,
                           "time": _now_rfc3339()}).encode() + b"\n"
        if self.max_size and self.size + len(line) > self.max_size and self.size > 0:
            self.rotate()
        self.f.write(line)
        self.f.flush()
        self.size += len(line)

    def rotate(self):
        self.f.close()
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            self.f = open(self.path, "wb")
        else:
            self.f = open(self.path, "wb")
        self.size = 0


class _Poller:
    """The part of selectors' interface the shim uses, straight on epoll: the selectors module's
    Python layer (keys, mappings, namedtuples) touches many more of the objects the shim shares
    with the zygote on every call, and each one touched costs the shim a private copy of its page."""

    def __init__(self):
        self.ep = select.epoll()
        self.data = {}  # fd -> data

    def register(self, fileobj, data):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.ep.register(fd, select.EPOLLIN)
        self.data[fd] = data

    def unregister(self, fileobj):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        del self.data[fd]  # KeyError when not registered, as selectors
        try:
            self.ep.unregister(fd)
        except OSError:
            pass

    def select(self, timeout=None):
        try:
            events = self.ep.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return []
        data = self.data
        return [data[fd] for fd, _ in events if fd in data]


class Exec:
    def __init__(self, exec_id, tty, stdin):
        self.id = exec_id
        self.tty = tty
        self.stdin = stdin
        self.pid = 0
        self.exit_code = None
        self.fds = {}  # fd -> stream
        self.stdin_w = None
        self.master = None
        self.client = None


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.mode = None  # None (reading the request), "attach", "wait", "exec"
        self.exec = None
        self.want = set()
        self.stdin = False


class Shim:
    def __init__(self, p):
        self.p = p
        self.id = p["id"]
        self.state_dir = p["state_dir"]
        self.tty = bool(p.get("tty"))
        self.sel = _Poller()
        self.clients = []
        self.exit_code = None
        self.finished_at = None
        self.init_pid = 0
        self.stdin_w = None
        self.master = None
        self.outputs = {}  # fd -> stream name
        self.started = False
        self.execs = {}  # exec id -> Exec
        log = JSONLog
        if p.get("log_format") == "cri":  # a container of the Kubernetes CRI: kubelet's log format
            from berth.shim.crilog import CRILog as log
        self.log = log(p["log_path"], int(p.get("log_max_size") or 0), int(p.get("log_max_file") or 1))

    # --- setup ---

    def start_container(self):
        self.outputs, self.stdin_w, proxy, console = _child_stdio(self.tty, self.p.get("open_stdin"))
        binary = self.p.get("runtime_binary")
        try:
            if binary:
                self.init_pid = _in_child(lambda: self._start_with_binary(binary, console))
            else:
                self.init_pid = _in_child(lambda: self._create(console))
        finally:
            _null_stdio()
            if console is not None:
                console.close()
        if proxy is not None:
            self.master = _receive_master(proxy)
            self.outputs[self.master] = "stdout"
            self.stdin_w = self.master if self.p.get("open_stdin") else None

    def _create(self, console):
        from berth.runtime import container as rt
        st = rt.create(self.p["runtime_root"], self.id, self.p["bundle"], console=console, check_seccomp=False,
                       systemd=bool(self.p.get("systemd")))
        return st.pid

    def _runtime_cmd(self, binary):
        return [binary] + list(self.p.get("runtime_args") or []) + ["--root", self.p["runtime_root"]]

    def _start_with_binary(self, binary, console):
        args = self._runtime_cmd(binary)
        pidfile = os.path.join(self.state_dir, "init.pid")
        self._run_runtime(args, ["create", "--bundle", self.p["bundle"], "--pid-file", pidfile], console, "c",
                          f"{binary} create failed")
        with open(pidfile) as f:
            return int(f.read().strip())

    def start_process(self):
        """Release the created container (after the first attach when one is expected)."""
        if self.started:
            return
        self.started = True
        _in_child(self._start)

    def _start(self):
        binary = self.p.get("runtime_binary")
        if binary:
            import subprocess
            s = subprocess.run(self._runtime_cmd(binary) + ["start", self.id], capture_output=True)
            if s.returncode != 0:
                raise RuntimeError(s.stderr.decode(errors="replace").strip() or f"{binary} start failed")
        else:
            from berth.runtime import container as rt
            rt.start(self.p["runtime_root"], self.id)
        return None

    # --- the loop ---

    def serve(self):
        path = self.p.get("socket") or os.path.join(self.state_dir, "shim.sock")
        d = path.rpartition("/")[0]
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(d, exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        # _socket, not socket: the latter's accept() builds its wrapper and converts family and
        # type to enums, touching many inherited objects (each a private page)
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sel.register(self.listener, ("listen", None))
        for fd in self.outputs:
            self.sel.register(fd, ("output", fd))
        self.sigr, sigw = os.pipe()
        os.set_blocking(self.sigr, False)
        os.set_blocking(sigw, False)
        # _signal, not signal: the latter's enum wrappers would touch the enum machinery
        _signal.set_wakeup_fd(sigw)
        _signal.signal(_signal.SIGCHLD, _ignore)
        self.sel.register(self.sigr, ("signal", None))
        self._write_state("running")
        attach_deadline = time.monotonic() + 10 if self.p.get("wait_attach") else None
        if attach_deadline is None:
            self.start_process()
        self.reap()
        drain_deadline = None
        while True:
            if not self.started and time.monotonic() > attach_deadline:
                self.start_process()  # the attach that was expected never came
            if self.exit_code is not None:
                if not self.outputs or (drain_deadline and time.monotonic() > drain_deadline):
                    break
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + 2.0
            timeout = 0.2 if self.exit_code is not None or not self.started else None
            for kind, data in self.sel.select(timeout):
                try:
                    self._dispatch(kind, data)
                except Exception as e:  # a client's mistake must not take the container down
                    try:
                        with open(os.path.join(self.state_dir, "shim-warnings"), "a") as f:
                            f.write(f"{type(e).__name__}: {e}\n")
                    except OSError:
                        pass
        self._finish()

    def _dispatch(self, kind, data):
        if kind == "listen":
            self._accept()
        elif kind == "output":
            self._output(data)
        elif kind == "signal":
            try:
                os.read(self.sigr, 4096)
            except OSError:
                pass
            self.reap()
        elif kind == "client":
            self._client_readable(data)
        elif kind == "exec_output":
            self._exec_output(*data)

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if self.exit_code is None and self.init_pid and not _alive(self.init_pid):
                    self._exited(255)
                return
            if pid == 0:
                return
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            if pid == self.init_pid:
                self._exited(code)
            for ex in self.execs.values():
                if ex.pid == pid and ex.exit_code is None:
                    ex.exit_code = code
                    self._exec_maybe_done(ex)

    def _exited(self, code):
        self.exit_code = code
        self.finished_at = _now_rfc3339()
        tmp = os.path.join(self.state_dir, ".exit.json")
        _write_file(tmp, fastjson.dumps({"exit_code": code, "finished_at": self.finished_at, "pid": self.init_pid}),
                    sync=True)
        os.rename(tmp, os.path.join(self.state_dir, "exit.json"))

    def _output(self, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        if not data:
            self.log.flush(self.outputs[fd])
            self.sel.unregister(fd)
            del self.outputs[fd]
            if fd != self.master:
                os.close(fd)
            return
        stream = self.outputs[fd]
        self.log.write(stream, data)
        frame = data if self.tty else struct.pack(">BxxxI", 1 if stream == "stdout" else 2, len(data)) + data
        for c in list(self.clients):
            if c.mode == "attach" and stream in c.want:
                self._send(c, frame)

    def _send(self, c, data):
        try:
            c.sock.setblocking(True)
            c.sock.settimeout(5)
            c.sock.sendall(data)
            c.sock.setblocking(False)
        except OSError:
            self._drop(c)

    def _accept(self):
        try:
            fd, _ = self.listener._accept()
        except BlockingIOError:
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        sock.setblocking(False)
        c = Client(sock)
        self.clients.append(c)
        self.sel.register(sock, ("client", c))

    def _unregister(self, fileobj):
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def _drop(self, c):
        if c in self.clients:
            self.clients.remove(c)
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()

    def _client_readable(self, c):
        if c not in self.clients:
            return  # dropped by an earlier event of the same select() round
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if c.mode is None:
            if not data:
                self._drop(c)
                return
            c.buf += data
            if b"\n" not in c.buf:
                return
            line, rest = c.buf.split(b"\n", 1)
            c.buf = b""
            try:
                req = fastjson.loads(line.decode(errors="replace"))
            except ValueError:
                self._drop(c)
                return
            self._request(c, req)
            if rest and c.mode == "attach":
                self._stdin(c, rest)
            return
        if c.mode == "exec":
            ex = c.exec
            if not data:
                if ex.stdin_w is not None and ex.stdin_w != ex.master:
                    os.close(ex.stdin_w)
                    ex.stdin_w = None
                self._unregister(c.sock)
                return
            if ex.stdin_w is not None:
                try:
                    os.set_blocking(ex.stdin_w, True)
                    os.write(ex.stdin_w, data)
                    os.set_blocking(ex.stdin_w, False)
                except OSError:
                    pass
            return
        if c.mode == "attach":
            if not data:
                # the client's EOF closes the container's stdin; output keeps flowing
                # (a TTY has no end of input: a client that goes away, e.g. after the detach
                # keys, leaves the terminal and its processes alone, as docker does)
                if c.stdin and self.stdin_w is not None and self.stdin_w != self.master:
                    os.close(self.stdin_w)
                    self.stdin_w = None
                self._unregister(c.sock)
                return
            self._stdin(c, data)
        elif not data:
            self._drop(c)

    def _stdin(self, c, data):
        if not c.stdin or self.stdin_w is None:
            return
        try:
            os.set_blocking(self.stdin_w, True)
            os.write(self.stdin_w, data)
            os.set_blocking(self.stdin_w, False)
        except OSError:
            pass

    def _reply(self, c, obj):
        self._send(c, fastjson.dumps(obj).encode() + b"\n")

    def _request(self, c, req):
        op = req.get("op")
        if op == "attach":
            c.mode = "attach"
            c.want = {s for s in ("stdout", "stderr") if req.get(s, True)}
            c.stdin = bool(req.get("stdin"))
            self._reply(c, {"ok": True, "tty": self.tty})
            self.start_process()
        elif op == "wait":
            c.mode = "wait"
            if self.exit_code is not None:
                self._reply(c, {"exit_code": self.exit_code, "finished_at": self.finished_at})
                self._drop(c)
        elif op == "kill":
            try:
                os.kill(self.init_pid, int(req.get("signal", 15)))
                self._reply(c, {"ok": True})
            except ProcessLookupError:
                self._reply(c, {"ok": False, "error": "not running"})
            self._drop(c)
        elif op == "resize":
            master = self.master
            if req.get("exec_id"):  # an exec's own pty
                ex = self.execs.get(req["exec_id"])
                master = getattr(ex, "master", None) if ex is not None else None
            if master is not None:
                import fcntl
                import termios
                try:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(req.get("h", 24)),
                                                                        int(req.get("w", 80)), 0, 0))
                except OSError:
                    pass  # the exec ended meanwhile
            self._reply(c, {"ok": True})
            self._drop(c)
        elif op == "exec":
            self._exec(c, req)
        elif op == "exec_state":
            ex = self.execs.get(req.get("exec_id"))
            if ex is None:
                self._reply(c, {"ok": False, "error": "no such exec"})
            else:
                self._reply(c, {"ok": True, "pid": ex.pid, "running": ex.exit_code is None,
                                "exit_code": ex.exit_code})
            self._drop(c)
        elif op == "reopen_log":  # the CRI's ReopenContainerLog, after the kubelet rotated the file
            getattr(self.log, "reopen", _ignore)()
            self._reply(c, {"ok": True})
            self._drop(c)
        elif op == "state":
            self._reply(c, {"pid": self.init_pid, "exit_code": self.exit_code, "shim_pid": os.getpid()})
            self._drop(c)
        else:
            self._reply(c, {"ok": False, "error": f"unknown op {op!r}"})
            self._drop(c)

    def _exec(self, c, req):
        """Start a process in the container (the runtime's exec, detached, re-parented to us)
        whose stdio this connection carries."""
        ex = Exec(req.get("exec_id") or "", bool(req.get("process", {}).get("terminal")), bool(req.get("stdin")))
        console = proxy = None
        try:
            ex.fds, ex.stdin_w, proxy, console = _child_stdio(ex.tty, ex.stdin)
            pidfile = os.path.join(self.state_dir, f"exec-{ex.id[:16]}.pid")
            binary = self.p.get("runtime_binary")
            if binary:
                _in_child(lambda: self._exec_with_binary(binary, req["process"], pidfile, console))
            else:
                _in_child(lambda: self._exec_in_process(req["process"], pidfile, console))
            with open(pidfile) as f:
                ex.pid = int(f.read())
            os.unlink(pidfile)
        except BaseException as e:
            for fd in list(ex.fds) + ([ex.stdin_w] if ex.stdin_w is not None else []):
                os.close(fd)
            msg = getattr(e, "message", None) or str(e)
            self._reply(c, {"ok": False, "error": msg})
            self._drop(c)
            return
        finally:
            _null_stdio()
            if console is not None:
                console.close()
        if proxy is not None:
            ex.master = _receive_master(proxy)
            ex.fds[ex.master] = "stdout"
            if ex.stdin:
                ex.stdin_w = ex.master
        for fd in ex.fds:
            self.sel.register(fd, ("exec_output", (ex, fd)))
        ex.client = c
        c.mode = "exec"
        c.exec = ex
        self.execs[ex.id] = ex
        self._reply(c, {"ok": True, "pid": ex.pid})
        self.reap()

    def _exec_in_process(self, process, pidfile, console):
        from berth.runtime import container as rt
        rt.exec_(self.p["runtime_root"], self.id, process, detach=True, pid_file=pidfile, console=console)

    def _run_runtime(self, args, verb, console, kind, failed):
        """`<runtime> [--log F --log-format json] VERB... ID` with the container's stdio, as
        containerd's shim runs it; with a console, the pty master the runtime hands to a console
        socket goes on to ours. Errors come from the runtime's --log, not from a pipe."""
        import subprocess
        srv = sockpath = None
        try:
            if console is not None:
                sockpath = self._short_socket_path(kind)
                srv = socket.socket(socket.AF_UNIX)
                srv.bind(sockpath)
                srv.listen(1)
                verb = verb + ["--console-socket", sockpath]
            logfile = os.path.join(self.state_dir, "runtime-log.json")
            p = subprocess.Popen(args + ["--log", logfile, "--log-format", "json"] + verb + [self.id],
                                 stdin=0, stdout=1, stderr=2, close_fds=True)
            if srv is not None:
                srv.settimeout(30)
                conn, _ = srv.accept()
                _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
                socket.send_fds(console, [b"console"], fds)
                conn.close()
            p.wait()
            if p.returncode != 0:
                raise RuntimeError(_last_log_error(logfile) or failed)
        finally:
            if srv is not None:
                srv.close()
                try:
                    os.unlink(sockpath)
                except OSError:
                    pass

    def _short_socket_path(self, kind):
        """A console socket for another runtime: beside our socket, short enough for AF_UNIX (that
        directory may not exist yet: the runtime's create comes before our socket)."""
        base = os.path.dirname(self.p.get("socket") or os.path.join(self.state_dir, "x"))
        try:
            os.mkdir(base)
        except FileExistsError:
            pass
        return os.path.join(base, f"{self.id[:12]}-{kind}{time.monotonic_ns() % 10**9}.sock")

    def _exec_with_binary(self, binary, process, pidfile, console):
        """`<runtime> exec --detach --process F --pid-file F [--console-socket S]`, as containerd's shim."""
        import tempfile
        args = self._runtime_cmd(binary)
        with tempfile.NamedTemporaryFile("w", dir=self.state_dir, suffix=".json", delete=False) as f:
            json.dump(process, f)
            procfile = f.name
        try:
            self._run_runtime(args, ["exec", "--detach", "--process", procfile, "--pid-file", pidfile], console, "e",
                              f"{binary} exec failed")
        finally:
            os.unlink(procfile)

    def _exec_output(self, ex, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            del ex.fds[fd]
            os.close(fd)
            if fd == ex.master:
                ex.master = None
                ex.stdin_w = None
            self._exec_maybe_done(ex)
            return
        stream = ex.fds[fd]
        frame = data if ex.tty else struct.pack(">BxxxI", 1 if stream == "stdout" else 2, len(data)) + data
        if ex.client is not None and ex.client in self.clients:
            self._send(ex.client, frame)

    def _exec_maybe_done(self, ex):
        if ex.exit_code is None or ex.fds and not ex.tty:
            return
        if ex.tty and ex.master is not None:
            # drain what the pty still holds, then close it
            while True:
                try:
                    data = os.read(ex.master, 65536)
                except OSError:
                    break
                if not data:
                    break
                if ex.client is not None and ex.client in self.clients:
                    self._send(ex.client, data)
            try:
                self.sel.unregister(ex.master)
            except (KeyError, ValueError):
                pass
            os.close(ex.master)
            ex.fds.pop(ex.master, None)
            ex.master = None
        if ex.stdin_w is not None:
            try:
                os.close(ex.stdin_w)
            except OSError:
                pass
            ex.stdin_w = None
        if ex.client is not None:
            self._drop(ex.client)
            ex.client = None

    def _write_state(self, status):
        tmp = os.path.join(self.state_dir, ".shim.json")
        _write_file(tmp, fastjson.dumps({"status": status, "pid": self.init_pid, "shim_pid": os.getpid()}))
        os.rename(tmp, os.path.join(self.state_dir, "shim.json"))

    def _finish(self):
        for c in list(self.clients):
            if c.mode == "wait":
                self._reply(c, {"exit_code": self.exit_code, "finished_at": self.finished_at})
            self._drop(c)
        self.log.flush()
        self.log.f.close()
        try:
            from berth.runtime import container as rt
            if not self.p.get("runtime_binary"):
                rt.delete(self.p["runtime_root"], self.id, force=True)
            else:
                import subprocess
                subprocess.run([self.p["runtime_binary"], "--root", self.p["runtime_root"], "delete", "--force",
                                self.id], capture_output=True)
        except Exception:
            pass
        self._write_state("exited")
        try:
            os.unlink(self.p.get("socket") or os.path.join(self.state_dir, "shim.sock"))
        except OSError:
            pass


def _in_child(fn):
    """fn() run in a short-lived child of the shim; returns its result (an int or None), or raises
    RuntimeError with the child's error message.

    The runtime's work (reading the spec, building the rootfs, cgroups, seccomp, a runtime
    binary through subprocess) allocates and touches much of the memory the shim shares with
    the zygote; done here, every page it copies goes away with the child, and the long-lived
    shim stays small. What the child leaves behind (the container's init, an exec'd process)
    is re-parented to the shim, a subreaper."""
    r, w = os.pipe()
    pid = sc.fork_bare()  # the shim is single-threaded: no at-fork handlers to run on either side
    if pid == 0:
        try:
            os.close(r)
            try:
                res = fn()
                msg = b"ok %d" % res if res is not None else b"ok"
            except BaseException as e:
                msg = b"error " + (getattr(e, "message", None) or str(e) or type(e).__name__).encode(errors="replace")
            os.write(w, msg[:4000])  # one write up to PIPE_BUF: whole, and never blocks on an empty pipe
        finally:
            os._exit(0)
    os.close(w)
    # not read to EOF: the processes the child started (the init, waiting for `start`) hold the pipe too
    try:
        os.waitpid(pid, 0)
        os.set_blocking(r, False)
        try:
            msg = os.read(r, 4096)
        except BlockingIOError:
            msg = b""
    finally:
        os.close(r)
    if msg.startswith(b"ok"):
        return int(msg[3:]) if len(msg) > 3 else None
    raise RuntimeError(msg[6:].decode(errors="replace") if msg.startswith(b"error ") else "the shim's helper process died")


def _write_file(path, text, sync=False):
    """A small file written with os calls only (no io objects: fewer inherited objects touched)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _ignore(*_):
    pass


def _null_stdio():
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _child_stdio(tty, stdin):
    """Point fds 0-2 at what the process the runtime forks next will inherit: with a TTY nothing
    (/dev/null; its pty master comes over the returned console socket), else pipes whose other
    ends we keep. Returns ({read fd: stream}, stdin's write fd or None, proxy, console)."""
    if tty:
        proxy, console = socket.socketpair()
        _null_stdio()
        return {}, None, proxy, console
    stdin_w = None
    if stdin:
        r, stdin_w = os.pipe()
        os.dup2(r, 0)
        os.close(r)
    else:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    outputs = {}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        os.set_blocking(r, False)
        outputs[r] = name
    return outputs, stdin_w, None, None


def _receive_master(proxy):
    """The pty master the runtime sent over the console socket."""
    _, fds, _, _ = socket.recv_fds(proxy, 1024, 1)
    proxy.close()
    os.set_blocking(fds[0], False)
    return fds[0]


def _last_log_error(path):
    """The last error a runtime wrote to its --log (JSON lines, as containerd's shim reads it)."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("level") in ("error", "fatal"):
            return e.get("msg", "")
    return ""


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def run(params):
    """Entry point in the forked shim process; never returns."""
    code = 0
    shim = None
    try:
        os.chdir("/")
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        shim = Shim(params)
        try:
            shim.start_container()
        except BaseException as e:
            msg = getattr(e, "message", None) or str(e) or type(e).__name__
            with open(os.path.join(params["state_dir"], "start-error"), "w") as f:
                f.write(msg)
            shim._write_state("failed")
            os._exit(1)
        shim.serve()
    except BaseException as e:  # pragma: no cover - a shim must never raise into the zygote
        try:
            with open(os.path.join(params["state_dir"], "shim-error"), "w") as f:
                f.write(f"{type(e).__name__}: {e}")
        except OSError:
            pass
        if shim is not None and shim.init_pid and shim.exit_code is None:
            try:  # nobody would hold the container any more
                os.kill(shim.init_pid, _signal.SIGKILL)
            except OSError:
                pass
        code = 1
    sys.stdout.flush()
    os._exit(code)
