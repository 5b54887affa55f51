"""berthd: wiring the stores and services, serving the API on unix sockets and TCP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import grp
import logging
import os
import signal
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from berth.errors import BerthError, InvalidArgument
from berth.linux.hostnet import socket_alive

if TYPE_CHECKING:
    import ssl

    from berth.daemon.config import Config
    from berth.daemon.dns import EmbeddedDNS
    from berth.linux.userns import Remap
    from berth.shim.zygote import Zygote

T = TypeVar("T")

log = logging.getLogger("berthd")


class Daemon:
    """Builds the stores and the services, wires them, and runs what serves them (the API, the
    CRI, the embedded DNS): nothing else. Front ends get ``services`` (berth.services.Services)."""

    def __init__(self, cfg: Config, zygote: Zygote | None = None, remap: Remap | None = None) -> None:
        from berth.content.store import ContentStore
        from berth.metadata import MetadataStore
        from berth.services import Services
        from berth.services.buildcache import BuildCache
        from berth.services.builder import Builder
        from berth.services.containers import ContainerService
        from berth.services.events import EventBus
        from berth.services.execs import ExecService
        from berth.services.health import HealthMonitor
        from berth.services.images import ImageService
        from berth.services.networks import NetworkService
        from berth.services.registry import RegistryConfig
        from berth.services.state import ContainerStates
        from berth.services.system import SystemService
        from berth.services.volumes import VolumeService
        self.cfg = cfg
        from berth.linux import userns
        if remap is None and cfg.userns_remap:  # (dockerd's words when the user or its ranges are not there)
            remap = userns.resolve(cfg.userns_remap)
        os.makedirs(cfg.root, mode=0o711, exist_ok=True)
        os.makedirs(cfg.state, mode=0o711, exist_ok=True)
        self.content = ContentStore(os.path.join(cfg.root, "content"))
        self.meta = MetadataStore(cfg.root)
        self.snapshotter, self.snapshotter_name = _snapshotter(cfg.root)
        if remap is not None and self.snapshotter_name != "overlayfs":
            raise InvalidArgument("userns_remap needs overlayfs (the containers' image layers are id-mapped under it)")
        self.registry = RegistryConfig(cfg)
        self.events = EventBus()
        self.images = ImageService(self.meta, self.content, self.snapshotter, self.snapshotter_name,
                                   self.registry, events=self.events)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="berthd")
        # waits that last as long as a container (wait, logs -f, stats streams) get threads of
        # their own (made as needed): they never starve the pool that serves short requests
        self.waits = concurrent.futures.ThreadPoolExecutor(max_workers=4096, thread_name_prefix="berthd-wait")
        self.zygote = zygote
        states = ContainerStates(self.meta)
        self.networks = NetworkService(cfg, self.meta, events=self.events)
        self.volumes = VolumeService(cfg, self.meta, states, events=self.events)
        self.containers = ContainerService(cfg, self.meta, self.images, self.snapshotter, self.snapshotter_name,
                                           zygote, networks=self.networks, volumes=self.volumes,
                                           events=self.events, states=states)
        self.networks.containers = self.containers  # a network's users are containers
        if remap is not None:
            userns.pin(self.containers.remap_pin, remap)
            self.containers.remap = self.volumes.remap = remap
        self.execs = ExecService(self.containers, self.events)
        monitor = self.containers.monitor
        monitor.on_exec_exit = self.execs.exited  # the shims tell the ends of execs to the monitor
        monitor.health = HealthMonitor(self.containers, self.events)  # healthchecks, started and stopped by it
        self.build_cache = BuildCache(self.meta, self.images)
        self.system = SystemService(cfg, self.meta, self.images, self.containers, self.snapshotter_name,
                                    volumes=self.volumes, build_cache=self.build_cache)
        self.services = Services(cfg=cfg, containers=self.containers, execs=self.execs, images=self.images,
                                 networks=self.networks, volumes=self.volumes, events=self.events, system=self.system,
                                 run=self.run, run_wait=self.run_wait, waits=self.waits, pool=self.pool,
                                 builder=Builder(self.containers, self.build_cache), build_cache=self.build_cache)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dns: EmbeddedDNS | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def run_wait(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run work that may block until a container exits (wait, follow) in a thread of its own."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.waits, lambda: fn(*args, **kwargs))

    def start_dns(self) -> None:
        """The embedded DNS server (127.0.0.11 in the network namespace of each container on a
        user-defined network), answering from the networks' live endpoints."""
        from berth.daemon.dns import EmbeddedDNS
        assert self.loop is not None, "serve() sets the loop first"
        self.dns = EmbeddedDNS(self.networks.lookup, upstreams=list(self.cfg.dns) or None, loop=self.loop,
                               reverse=self.networks.reverse)
        self.networks.dns = _DNSBridge(self.dns, self.loop)

    def close(self) -> None:
        if self.containers.remap is not None:  # (containers' runtimes make their own user namespaces)
            from berth.linux import netns
            netns.remove(self.containers.remap_pin)
        self.containers.monitor.health.close()
        self.containers.trash.drain(5)  # else deleted after the next start
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.waits.shutdown(wait=False, cancel_futures=True)
        self.meta.close()


class _DNSBridge:
    """The DNS server's attach/detach for worker threads (the server lives in the event loop)."""

    def __init__(self, dns: EmbeddedDNS, loop: asyncio.AbstractEventLoop) -> None:
        self.dns, self.loop = dns, loop

    def attach(self, key: str, path: str) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.dns.attach(key, path), self.loop).result(10)
        except (OSError, concurrent.futures.TimeoutError) as e:
            # e.g. the container binds port 53 itself: it runs, without the embedded DNS
            log.warning("container %s: embedded DNS not attached: %s", key[:12], e)

    def detach(self, key: str) -> None:
        if self.loop.is_closed():  # berthd is stopping: the DNS server is gone with the loop
            return
        self.loop.call_soon_threadsafe(self.dns.detach, key)


def _snapshotter(root: str) -> tuple[Any, str]:
    from berth.snapshots import overlay
    sroot = os.path.join(root, "snapshots")
    os.makedirs(sroot, exist_ok=True)
    if overlay.supported(sroot):
        return overlay.OverlaySnapshotter(os.path.join(root, "snapshots", "overlayfs")), "overlayfs"
    from berth.snapshots.native import NativeSnapshotter
    return NativeSnapshotter(os.path.join(root, "snapshots", "native")), "native"


# what a reload (SIGHUP) changes in a running berthd; the rest waits for its next start
RELOADABLE = ("registry_mirrors", "insecure_registries", "mirrors", "config_path", "log_level",
              "max_concurrent_downloads", "max_concurrent_uploads", "max_download_attempts", "live_restore",
              "shutdown_timeout")


def reload_config(daemon: Daemon, load: Callable[[], Config]) -> None:
    """SIGHUP, as dockerd's: the configuration read again (the file, then the command line's
    flags over it). What a running berthd can change (RELOADABLE: the registries' settings, the
    log level, the transfers' limits) changes for the next pull, push or log line; what it cannot is logged as waiting
    for the next start. A configuration that does not load changes nothing (logged). A daemon
    reload event tells what was applied. (SIGHUP's default action ended berthd.)"""
    try:
        new = load()
    except BerthError as e:
        log.error("reloading the configuration: %s (the running configuration is kept)", e.message)
        return
    cur = daemon.cfg
    changed = [k for k in RELOADABLE if getattr(new, k) != getattr(cur, k)]
    for k in changed:
        setattr(cur, k, getattr(new, k))
    daemon.registry.update(cur)
    logging.getLogger().setLevel(getattr(logging, cur.log_level.upper()))
    import dataclasses
    later = [f.name for f in dataclasses.fields(cur)
             if f.name not in RELOADABLE and f.name != "source" and getattr(new, f.name) != getattr(cur, f.name)]
    log.info("configuration reloaded from %s: %s", cur.source or "the defaults and flags",
             ", ".join(changed) + " changed" if changed else "nothing to change")
    if later:
        log.warning("configuration reloaded: %s changed, applied at berthd's next start", ", ".join(later))
    import json
    import socket as socket_
    from berth.services.system import _daemon_id
    daemon.events.publish(cur.namespace, "daemon", "reload", _daemon_id(cur.root), name=socket_.gethostname(),
                          **{"registry-mirrors": json.dumps(cur.registry_mirrors),
                             "insecure-registries": json.dumps(cur.insecure_registries),
                             "max-concurrent-downloads": str(cur.max_concurrent_downloads),
                             "max-concurrent-uploads": str(cur.max_concurrent_uploads),
                             "max-download-attempts": str(cur.max_download_attempts),
                             "live-restore": str(cur.live_restore).lower(),
                             "shutdown-timeout": str(cur.shutdown_timeout),
                             "debug": str(cur.log_level == "debug").lower(), "log-level": cur.log_level})


def dump_stacks(state_dir: str) -> str:
    """SIGUSR1, as dockerd's and containerd's: every thread's stack written to a file in the state
    directory, its path logged (SIGUSR1's default action ended berthd)."""
    import sys
    import threading
    import time
    import traceback
    names = {t.ident: t.name for t in threading.enumerate()}
    path = os.path.join(state_dir, time.strftime("berthd-stacks-%Y-%m-%dT%H%M%S.log"))
    with open(path, "w") as f:
        for ident, frame in sys._current_frames().items():
            f.write(f"thread {names.get(ident, '?')} ({ident}):\n{''.join(traceback.format_stack(frame))}\n")
    log.info("thread stacks written to %s", path)
    return path


def _load_again(cfg: Config) -> Config:
    from berth.daemon import config as cfgmod
    new = cfgmod.load(cfg.source or None, required=bool(cfg.source))
    cfgmod.validate(new, new.source or "the defaults")
    return new


def socket_group(cfg: Config) -> int | None:
    """The gid of the unix sockets' group (cfg.group; daemon.json's group): None when it is the
    default and the host lacks it; another that is missing is refused, in dockerd's words."""
    from berth.daemon.config import Config as _C
    try:
        return grp.getgrnam(cfg.group).gr_gid
    except KeyError:
        if cfg.group == _C.group:
            return None
        raise InvalidArgument(f"failed to load listeners: group {cfg.group} not found") from None


async def _release_networks(daemon: Daemon) -> None:
    """At a stop, or a start that could not listen: the embedded DNS, and the network plumbing
    (bridges, host rules) no running container needs."""
    if daemon.dns is not None:
        await daemon.dns.close()
    try:
        await daemon.run(daemon.networks.release_unused)
    except Exception:  # noqa: BLE001 - a stop must not fail on this
        log.exception("releasing network resources")


async def serve(cfg: Config, ready: Callable[[], None] | None = None, zygote: Zygote | None = None,
                reload: Callable[[], Config] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; reload(): the configuration again, at a SIGHUP."""
    from aiohttp import web

    from berth.api.app import make_app
    from berth.daemon.config import parse_host
    # Refuse before touching the stores: a second daemon must not run startup GC (which drops
    # every lease) under a live one.
    for h in cfg.hosts:
        addr = parse_host(h, cfg.allow_insecure_tcp, cfg.tls.enabled, verify=cfg.tls.verify)
        if addr[0] == "unix" and socket_alive(addr[1]):
            raise InvalidArgument(f"another daemon is serving on {addr[1]}")
    # a bad certificate or key is a start-up error, before anything listens
    ssl_ctx = _tls_context(cfg.tls) if cfg.tls.enabled and any(h.startswith("tcp://") for h in cfg.hosts) else None
    socket_group(cfg)  # a group named and missing: refused before anything is made (dockerd's words)
    if cfg.pidfile:  # a pid file of a running process: refused, in dockerd's words
        try:
            with open(cfg.pidfile) as f:
                other = int(f.read().strip() or 0)
        except (OSError, ValueError):
            other = 0
        if other and other != os.getpid() and os.path.exists(f"/proc/{other}"):
            raise InvalidArgument(f"pid file found, ensure berthd is not running or delete {cfg.pidfile}")
    remap = None
    if cfg.userns_remap:  # the remapping, before anything is made (dockerd's words when it cannot be)
        from berth.linux import userns
        remap = userns.resolve(cfg.userns_remap)
    root_lock = _lock_root(cfg.root)  # noqa: F841 (held for the life of the process)
    daemon = Daemon(cfg, zygote, remap)
    daemon.loop = asyncio.get_running_loop()
    # a SIGTERM from here on is a graceful stop, even one that comes while the CRI still starts
    # (a client that saw the API socket may stop us at once: the default action would leave the
    # bridge's iptables rules behind)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        daemon.loop.add_signal_handler(sig, stop.set)
    daemon.loop.add_signal_handler(signal.SIGUSR1, lambda: daemon.loop.run_in_executor(
        daemon.pool, dump_stacks, cfg.state))
    daemon.loop.add_signal_handler(signal.SIGHUP, lambda: daemon.loop.run_in_executor(
        daemon.pool, reload_config, daemon, reload or (lambda: _load_again(cfg))))
    daemon.start_dns()
    await daemon.run(daemon.system.collect_leftovers)  # what a daemon killed mid-pull left
    await daemon.run(daemon.containers.monitor.restore)  # what the shims still run
    app = make_app(daemon.services)
    # a stop waits this long for the requests in flight: streams that last as long as a container
    # (logs -f, attach, events) are cut then, as dockerd does, not waited for (60 s by default)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    # the pid file is there by the time a client can connect (a client that saw the socket
    # may read it at once, as dockerd's users read docker.pid)
    pidfile = os.path.join(cfg.state, "berthd.pid")
    pidfiles = [pidfile] + ([cfg.pidfile] if cfg.pidfile and os.path.abspath(cfg.pidfile) != pidfile else [])
    for path in pidfiles:  # (cfg.pidfile: daemon.json's pidfile, besides berth's own)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    sites = []
    made = []
    try:
        for h in cfg.hosts:
            addr = parse_host(h, cfg.allow_insecure_tcp, cfg.tls.enabled, verify=cfg.tls.verify)
            if addr[0] == "unix":
                path = addr[1]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if os.path.exists(path):
                    if socket_alive(path):
                        raise InvalidArgument(f"another daemon is serving on {path}")
                    os.unlink(path)
                site: web.BaseSite = web.UnixSite(runner, path, backlog=_somaxconn())
                await site.start()
                made.append(path)
                os.chmod(path, 0o660)
                try:
                    os.chown(path, 0, socket_group(cfg) or 0)
                except KeyError:
                    pass
            else:
                site = web.TCPSite(runner, addr[1], addr[2], ssl_context=ssl_ctx, backlog=_somaxconn())
                await site.start()
                if not cfg.tls.verify and not _loopback(addr[1]):  # allowed by allow_insecure_tcp
                    log.warning("Binding to IP address without --tlsverify is insecure and gives root access on "
                                "this machine to everyone who has access to your network (%s)", h)
            sites.append(site)
            log.info("serving the Docker Engine API on %s", h)
    except (OSError, BerthError) as e:
        # e.g. the port is taken: listen on nothing, leave no socket behind (nor the host's rules
        # and bridges the start made for the networks), say it in one line
        await runner.cleanup()
        await _release_networks(daemon)
        daemon.close()
        for path in made + pidfiles:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if isinstance(e, BerthError):
            raise
        raise InvalidArgument(f"cannot listen on {h}: {e.strerror or e}") from None
    cri = await _start_cri(daemon) if cfg.cri else None
    if ready:
        ready()
    try:
        await stop.wait()
    finally:
        if cri is not None:
            await _stop_cri(daemon, *cri)
        await runner.cleanup()
        if not cfg.live_restore:  # dockerd's stop without live-restore: its containers stop too
            try:
                await daemon.run(_shut_down, daemon)
            except Exception:  # noqa: BLE001 - a stop must not fail on this
                log.exception("stopping the containers")
        try:  # the network releases under way (an ended run's, after its exit's record) end first
            await daemon.run(daemon.networks.drain, 10)
        except Exception:  # noqa: BLE001 - a stop must not fail on this
            log.exception("waiting for the network releases under way")
        await _release_networks(daemon)
        daemon.close()
        for h in cfg.hosts:
            if h.startswith("unix://"):
                try:
                    os.unlink(h[len("unix://"):])
                except FileNotFoundError:
                    pass
        for path in pidfiles:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _shut_down(daemon: Daemon) -> None:
    """The Docker API's running containers stopped, each with its stop signal and timeout, at
    once, as dockerd's shutdown without live-restore; the whole at most its shutdown timeout
    (dockerd's: shutdown-timeout, or the longest stop timeout and 5 s; -1: no limit)."""
    c = daemon.containers
    ns = daemon.cfg.namespace
    running = [rec for rec in c.meta.list_containers(ns) if c.states.get(ns, rec.id, rec).running]
    limit = None
    if daemon.cfg.shutdown_timeout >= 0:
        stops = [(rec.spec_json() or {}).get("StopTimeout") for rec in running]
        limit = max([daemon.cfg.shutdown_timeout] + [(10 if t is None else int(t)) + 5 for t in stops])
        if any(t is not None and int(t) < 0 for t in stops):
            limit = None
    log.info("stopping %d containers (live_restore is off)", len(running))
    c.shut_down([(ns, rec.id) for rec in running], limit)


async def _start_cri(daemon):
    """The Kubernetes CRI (gRPC, berth/cri) on cri_socket and its streaming server; a CRI that
    cannot start is logged, the Docker API is served regardless."""
    from berth.cri.server import grpc_experiments
    done = grpc_experiments()  # before the imports below bring grpc in
    try:
        return await _start_cri_servers(daemon)
    finally:
        done()


async def _start_cri_servers(daemon):
    from berth.cri.server import CRIServer
    from berth.daemon.config import stream_server_host
    cfg = daemon.cfg
    streaming = None
    try:
        host = stream_server_host(cfg)
    except OSError as e:  # containerd: its CRI plugin does not load
        log.warning("CRI: not served: failed to create stream server: failed to get stream server address: %s", e)
        return CRIServer(daemon.services, None), None
    try:
        from berth.cri.stream_backend import StreamBackend
        from berth.cri.streaming import StreamingServer
    except ImportError:
        log.warning("CRI: no streaming server in this build: Exec, Attach and PortForward answer UNAVAILABLE")
    else:
        from berth.cri.runtime import netns_of
        streaming = StreamingServer(f"[{host}]:{cfg.stream_server_port}" if ":" in host else
                                    f"{host}:{cfg.stream_server_port}",
                                    StreamBackend(daemon.containers, netns_of=netns_of(daemon.services),
                                                  executor=daemon.pool))
        try:
            await streaming.start()
        except OSError as e:
            log.warning("CRI: the streaming server cannot listen: %s", e)
            streaming = None
    server = CRIServer(daemon.services, streaming)
    try:
        await daemon.run(server.start)
    except (OSError, RuntimeError, ImportError) as e:  # e.g. grpcio missing: the Docker API goes on
        log.warning("CRI: not served: %s", e)
    return server, streaming


async def _stop_cri(daemon: Daemon, server: Any, streaming: Any) -> None:
    await daemon.run(server.stop)
    if streaming is not None:
        await streaming.stop()


def _lock_root(root: str) -> int:
    """One berthd per root directory: a POSIX record lock (not inherited by forked children,
    so a shim that outlives the daemon does not keep the next daemon out)."""
    import fcntl
    os.makedirs(root, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(root, "berthd.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InvalidArgument(f"another berthd is using the root directory {root}") from None
    return fd


def _somaxconn():
    """The listen backlog: the system's limit, as Go's listeners use (aiohttp's 128 makes a
    burst of clients fail with EAGAIN)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(128, min(int(f.read().strip()), 65535))
    except (OSError, ValueError):
        return 4096


def _loopback(host: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _tls_context(tls: Any) -> ssl.SSLContext:
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"tls: cannot load the certificate {tls.cert} / key {tls.key}: {e}") from None
    if tls.verify:
        if not tls.cacert:
            raise InvalidArgument("tls: --tlsverify needs --tlscacert")
        ctx.load_verify_locations(tls.cacert)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
