"""What the CRI streaming server runs: exec in and attach to a container through its shim (the
same shim operations the Docker API's exec and attach use), and port forwarding to 127.0.0.1
in a pod sandbox's network namespace.

The shim is reached through its one client (berth.shim.client), from `_ShimSession`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import struct
import threading
from typing import TYPE_CHECKING

from berth.errors import BerthError, FailedPrecondition, NotFound
from berth.shim import protocol as proto
from berth.shim.client import ShimGone

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Executor
    from typing import Any

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService
    from berth.shim.client import ShimClient

NAMESPACE = "k8s.io"
SHIM_TIMEOUT = 30.0  # seconds for the shim to answer an exec or attach request


class StreamBackend:
    """`containers` is berthd's ContainerService; `namespace` the one CRI objects live in.
    `netns_of(sandbox_id)` (optional) gives the path of a sandbox's network namespace, "host"
    for a pod on the host's network; by default it is found from the sandbox's container."""

    def __init__(self, containers: ContainerService, namespace: str = NAMESPACE,
                 netns_of: Callable[[str], str | None] | None = None, executor: Executor | None = None) -> None:
        self.containers = containers
        self.namespace = namespace
        self.netns_of = netns_of
        self.executor = executor

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _running(self, container_id: str) -> tuple[Container, dict[str, Any]]:
        svc = self.containers
        try:
            rec = svc.get(self.namespace, container_id)
        except NotFound:
            raise NotFound(f"container {container_id!r} not found") from None
        st = svc.state(rec)
        if not st["Running"]:
            # containerd's words (the kubelet's server adds "error executing command in container: ")
            raise FailedPrecondition(f"container is in {'CONTAINER_EXITED' if st['Status'] == 'exited' else 'CONTAINER_CREATED'} state")
        return rec, st

    # --- exec ---

    def _exec_process(self, rec: Container, cmd: Sequence[str], tty: bool,
                      size: tuple[int, int] | None) -> dict[str, Any]:
        """The OCI process of an exec: the container's (env, user, cwd, capabilities...) with the
        command and the terminal of this exec (at the client's size when it is known)."""
        with open(os.path.join(self.containers.sdir(rec.id), "bundle", "config.json")) as f:
            process = dict(json.load(f)["process"])
        process["args"] = list(cmd)
        process["terminal"] = bool(tty)
        process.pop("consoleSize", None)
        if tty and size:
            process["consoleSize"] = {"width": int(size[0]), "height": int(size[1])}
        return process

    async def exec(self, container_id: str, cmd: Sequence[str], tty: bool = False, stdin: bool = False,
                   stdout: bool = True, stderr: bool = True, size: tuple[int, int] | None = None) -> _ShimSession:
        """size: (width, height) of the client's terminal, for a TTY."""
        rec, _ = await self._run(self._running, container_id)
        process = await self._run(self._exec_process, rec, cmd, tty, size)
        session = _ShimSession(self.containers.shim(rec), tty=tty, cmd=cmd)
        await session.start_exec(secrets.token_hex(32), process, stdin)
        return session

    # --- attach ---

    async def attach(self, container_id: str, tty: bool = False, stdin: bool = False, stdout: bool = True,
                     stderr: bool = True) -> _ShimSession:
        rec, _ = await self._run(self._running, container_id)
        spec = rec.spec_json() or {}
        has_stdin = bool(spec.get("OpenStdin"))
        ctty = bool(spec.get("Tty"))
        session = _ShimSession(self.containers.shim(rec), tty=ctty)
        # containerd: at the client's end of input, a StdinOnce container without a TTY gets
        # its stdin closed; otherwise the attach just ends and the next one finds stdin open
        session.detach_on_eof = not (spec.get("StdinOnce") and not ctty)
        session.accepts_stdin = bool(stdin and has_stdin)
        await session.start_attach(stdin=stdin and has_stdin, stdout=stdout, stderr=stderr and not ctty,
                                   close_stdin=not session.detach_on_eof)
        return session

    # --- port forward ---

    def _netns(self, sandbox_id: str) -> str:
        if self.netns_of is not None:
            path = self.netns_of(sandbox_id)
            if path:
                return path
        svc = self.containers
        try:
            rec = svc.get(self.namespace, sandbox_id)
        except NotFound:
            raise NotFound(f"failed to find sandbox {sandbox_id!r} in store") from None
        net = (rec.extensions or {}).get("net") or {}
        if net.get("netns"):
            return net["netns"]
        st = svc.state(rec)
        if not st["Running"] or not st.get("Pid"):
            raise FailedPrecondition(f"network namespace for sandbox {sandbox_id!r} is closed")
        return f"/proc/{st['Pid']}/ns/net"

    async def port_forward(self, sandbox_id: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to 127.0.0.1:port (then [::1]:port) in the sandbox's network
        namespace, as asyncio streams."""
        path = await self._run(self._netns, sandbox_id)
        sock = await asyncio.get_running_loop().run_in_executor(None, _connect_in_netns, path, port, sandbox_id)
        return await asyncio.open_connection(sock=sock)


def _connect_in_netns(path: str, port: int, sandbox_id: str) -> socket.socket:
    """Connect from a dedicated thread that enters the namespace (setns changes only the calling
    thread; a socket stays in the namespace it was made in) and comes back."""
    out: dict[str, Any] = {}

    def work() -> None:
        from berth.linux import syscalls
        try:
            if path == "host":
                out["sock"] = _dial(port, sandbox_id, path)
                return
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                try:
                    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    raise FailedPrecondition(f"network namespace for sandbox {sandbox_id!r} is closed") from None
                try:
                    syscalls.setns(target, syscalls.CLONE_NEWNET)
                    try:
                        out["sock"] = _dial(port, sandbox_id, path)
                    finally:
                        # if this fails the thread stays there, but it ends right after
                        syscalls.setns(own, syscalls.CLONE_NEWNET)
                finally:
                    os.close(target)
            finally:
                os.close(own)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["err"] = e
            s = out.pop("sock", None)
            if s is not None:
                s.close()
    t = threading.Thread(target=work, name="portforward")
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


def _dial(port: int, sandbox_id: str, path: str) -> socket.socket:
    errors: list[str] = []
    for family, addr, net in ((socket.AF_INET, "127.0.0.1", "tcp4"), (socket.AF_INET6, "::1", "tcp6")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect((addr, port))
            s.setblocking(False)
            return s
        except OSError as e:
            s.close()
            shown = f"[{addr}]" if ":" in addr else addr
            errors.append(f"dial {net} {shown}:{port}: connect: {_strerror(e)}")
    raise FailedPrecondition(f'failed to execute portforward in network namespace "{path}": failed to connect to '
                             f'localhost:{port} inside namespace "{sandbox_id}", IPv4: {errors[0]} IPv6 {errors[1]} ')


def _strerror(e: BaseException) -> str:
    return (e.strerror or str(e)).lower() if isinstance(e, OSError) else str(e)


class _ShimSession:
    """One exec or attach connection to a container's shim, through the shim's one client
    (berth.shim.client): the stream of output frames (docker's 8-byte multiplexing header
    without a TTY, raw bytes with one), the input, resize, exit code."""

    def __init__(self, shim: ShimClient, tty: bool, cmd: Sequence[str] | None = None) -> None:
        self.shim = shim  # berth.shim.client.ShimClient
        self.tty = tty
        self.cmd = cmd
        self.exec_id: str | None = None
        # set by _open (start_exec/start_attach) before anything reads or writes
        self.reader: asyncio.StreamReader = None  # type: ignore[assignment]
        self.writer: asyncio.StreamWriter = None  # type: ignore[assignment]
        self.detach_on_eof = False
        self.accepts_stdin = True

    async def _open(self, request: proto.Request, what: Callable[[BerthError], str]) -> dict[str, Any]:
        try:
            self.reader, self.writer, reply = await asyncio.wait_for(self.shim.open_stream(request), SHIM_TIMEOUT)
        except asyncio.TimeoutError:
            raise FailedPrecondition(f"the container's shim did not answer in {SHIM_TIMEOUT:.0f}s") from None
        except ShimGone:
            raise FailedPrecondition("container is not running") from None
        except BerthError as e:
            raise FailedPrecondition(what(e)) from None
        return reply

    async def start_exec(self, exec_id: str, process: dict[str, Any], stdin: bool) -> None:
        from berth.goquote import quote
        from berth.services.execs import start_failure
        self.exec_id = exec_id
        await self._open(proto.Exec(exec_id=exec_id, process=process, stdin=bool(stdin)),
                         lambda e: f"failed to exec in container: failed to start exec {quote(exec_id)}: "
                                   f"{start_failure(e)}")

    async def start_attach(self, stdin: bool, stdout: bool, stderr: bool, close_stdin: bool = True) -> None:
        reply = await self._open(proto.Attach(stdin=bool(stdin), stdout=bool(stdout), stderr=bool(stderr),
                                              close_stdin=bool(close_stdin)), lambda e: f"attach failed: {e.message}")
        self.tty = bool(reply.get("tty", self.tty))

    async def read(self) -> tuple[str, bytes] | None:
        """(stream, bytes), or None at the end of the output."""
        try:
            if self.tty:
                data = await self.reader.read(65536)
                return ("stdout", data) if data else None
            head = await self.reader.readexactly(8)
            kind, size = struct.unpack(">BxxxI", head)
            data = await self.reader.readexactly(size)
            return ("stderr" if kind == 2 else "stdout", data)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None

    async def write_stdin(self, data: bytes) -> None:
        if not self.accepts_stdin:
            return  # a container without stdin: the client's input goes nowhere
        self.writer.write(data)
        await self.writer.drain()

    async def close_stdin(self) -> None:
        if not self.accepts_stdin:
            return
        if self.exec_id is None and self.detach_on_eof:
            self.close()  # the attach ends; the container keeps its stdin
            return
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def resize(self, width: int, height: int) -> None:
        try:
            await asyncio.to_thread(self.shim.resize, height, width, self.exec_id or "")
        except (BerthError, OSError):
            pass  # it ended meanwhile

    async def exit_code(self) -> int | None:
        """The exec's exit code once its output ended (None for an attach)."""
        if self.exec_id is None:
            return None
        for _ in range(100):
            try:
                r = await asyncio.to_thread(self.shim.exec_state, self.exec_id)
            except (BerthError, OSError):
                return 137  # the container ended, and the exec with it
            if not r.running and r.exit_code is not None:
                return int(r.exit_code)
            await asyncio.sleep(0.01)
        raise FailedPrecondition("the exec's exit code did not come")

    def exit_message(self, code: int | None) -> str:
        return f"error executing command [{' '.join(self.cmd or [])}], exit code {code}"

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass
