"""berthd: wiring the stores and services, serving the API on unix sockets and TCP."""

import asyncio
import concurrent.futures
import grp
import logging
import os
import signal

from berth.errors import BerthError, InvalidArgument
from berth.linux.hostnet import socket_alive

log = logging.getLogger("berthd")


class Daemon:
    def __init__(self, cfg, zygote=None):
        from berth.content.store import ContentStore
        from berth.metadata import MetadataStore
        from berth.services.images import ImageService
        from berth.services.registry import RegistryConfig
        self.cfg = cfg
        os.makedirs(cfg.root, mode=0o711, exist_ok=True)
        os.makedirs(cfg.state, mode=0o711, exist_ok=True)
        self.content = ContentStore(os.path.join(cfg.root, "content"))
        self.meta = MetadataStore(cfg.root)
        self.snapshotter, self.snapshotter_name = _snapshotter(cfg.root)
        self.registry = RegistryConfig(cfg)
        from berth.services.events import EventBus
        self.events = EventBus()
        self.images = ImageService(self.meta, self.content, self.snapshotter, self.snapshotter_name,
                                   self.registry, events=self.events)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="berthd")
        # waits that last as long as a container (wait, logs -f, stats streams) get threads of
        # their own (made as needed): they never starve the pool that serves short requests
        self.waits = concurrent.futures.ThreadPoolExecutor(max_workers=4096, thread_name_prefix="berthd-wait")
        from berth.services import Services
        from berth.services.containers import ContainerService
        from berth.services.execs import ExecService
        from berth.services.networks import NetworkService
        from berth.services.state import ContainerStates
        from berth.services.volumes import VolumeService
        self.zygote = zygote
        states = ContainerStates(self.meta)
        self.networks = NetworkService(cfg, self.meta, events=self.events)
        self.volumes = VolumeService(cfg, self.meta, states, events=self.events)
        self.containers = ContainerService(cfg, self.meta, self.images, self.snapshotter, self.snapshotter_name,
                                           zygote, networks=self.networks, volumes=self.volumes,
                                           events=self.events, states=states)
        self.execs = ExecService(self.containers, self.events)
        from berth.services.system import SystemService
        self.system = SystemService(cfg, self.meta, self.images, self.containers, self.snapshotter_name)
        self.image_users = self.containers.image_users
        from berth.services.health import HealthMonitor
        # healthchecks of running containers, started and stopped by the monitor
        self.containers.monitor.health = HealthMonitor(self.containers, self.emit_container)
        self.services = Services(cfg=cfg, containers=self.containers, execs=self.execs, images=self.images,
                                 networks=self.networks, volumes=self.volumes, events=self.events, system=self.system,
                                 run=self.run, run_wait=self.run_wait, waits=self.waits, pool=self.pool)
        self.loop = None

    def emit(self, ns, type_, action, actor_id, **attrs):
        """An event on the bus (for the handlers that still publish their own)."""
        self.events.publish(ns, type_, action, actor_id, **attrs)

    def emit_container(self, ns, cid, action, **extra):
        try:
            rec = self.meta.get_container(ns, cid)
        except BerthError:
            rec = None
        if rec is None:
            self.events.publish(ns, "container", action, cid, **extra)
        else:
            self.events.container(ns, rec, action, **extra)

    def watch(self, ns, cid):
        """Nothing to do: the monitor watches every container a start starts (kept for callers
        written against the wiring before the monitor)."""

    @property
    def attach_waiting(self):
        """The containers an attach waits for (the container service holds them)."""
        return self.containers.attach_pending

    def watch_running(self):
        """After a (re)start of berthd: the monitor restores what the shims hold."""
        self.containers.monitor.restore()

    async def run(self, fn, *args, **kwargs):
        """Run blocking work in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def run_wait(self, fn, *args, **kwargs):
        """Run work that may block until a container exits (wait, follow) in a thread of its own."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.waits, lambda: fn(*args, **kwargs))

    def startup_gc(self):
        """Collect what a daemon killed mid-pull left: its leases are dead now, and so is
        everything only they kept (half-pulled blobs, ingests, snapshots being extracted)."""
        try:
            for lease in self.meta.list_leases(None):
                self.meta.delete_lease(lease.namespace, lease.id)
            report = self.meta.collect(self.content, self.snapshotter, snapshotter_name=self.snapshotter_name,
                                       grace=0, cleanup=True)
            if report.content or report.snapshots or report.ingests:
                log.info("collected %d blobs, %d snapshots, %d ingests left by an earlier run",
                         len(report.content), len(report.snapshots), len(report.ingests))
        except BerthError as e:
            log.warning("garbage collection: %s", e)

    # --- the system use-cases (berth.services.system), under the names the handlers use ---

    def info(self, ns):
        return self.system.info(ns)

    def namespaces(self):
        return self.system.namespaces()

    def namespace_inspect(self, name):
        return self.system.namespace_inspect(name)

    def namespace_create(self, name, labels=None):
        return self.system.namespace_create(name, labels)

    def namespace_remove(self, name):
        self.system.namespace_remove(name)

    def start_dns(self):
        """The embedded DNS server (127.0.0.11 in the network namespace of each container on a
        user-defined network), answering from the networks' live endpoints."""
        from berth.daemon.dns import EmbeddedDNS
        self.dns = EmbeddedDNS(self.networks.lookup, upstreams=list(self.cfg.dns) or None, loop=self.loop,
                               reverse=self.networks.reverse)
        self.networks.dns = _DNSBridge(self.dns, self.loop)

    def release_host(self):
        """At a graceful stop: the network plumbing no running container needs goes."""
        try:
            busy = set()
            for ns, cid in self.containers.running():
                net = (self.meta.get_container(ns, cid).extensions or {}).get("net") or {}
                for ep in (net.get("networks") or {}).values():
                    try:
                        n = self.networks.get(ns, ep["NetworkID"])
                        if n.data.get("bridge"):
                            busy.add(n.data["bridge"])
                    except BerthError:
                        pass
                busy.add("")  # something runs: keep the shared chains
            self.networks.release_host([n.name for n in self.meta.list_namespaces()], busy)
        except Exception:  # noqa: BLE001 - a stop must not fail on this
            log.exception("releasing network resources")

    def close(self):
        self.containers.monitor.health.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.waits.shutdown(wait=False, cancel_futures=True)
        self.meta.close()


class _DNSBridge:
    """The DNS server's attach/detach for worker threads (the server lives in the event loop)."""

    def __init__(self, dns, loop):
        self.dns, self.loop = dns, loop

    def attach(self, key, path):
        try:
            asyncio.run_coroutine_threadsafe(self.dns.attach(key, path), self.loop).result(10)
        except (OSError, concurrent.futures.TimeoutError) as e:
            # e.g. the container binds port 53 itself: it runs, without the embedded DNS
            log.warning("container %s: embedded DNS not attached: %s", key[:12], e)

    def detach(self, key):
        if self.loop.is_closed():  # berthd is stopping: the DNS server is gone with the loop
            return
        self.loop.call_soon_threadsafe(self.dns.detach, key)


def _snapshotter(root):
    from berth.snapshots import overlay
    sroot = os.path.join(root, "snapshots")
    os.makedirs(sroot, exist_ok=True)
    if overlay.supported(sroot):
        return overlay.OverlaySnapshotter(os.path.join(root, "snapshots", "overlayfs")), "overlayfs"
    from berth.snapshots.native import NativeSnapshotter
    return NativeSnapshotter(os.path.join(root, "snapshots", "native")), "native"


async def serve(cfg, ready=None, zygote=None):
    """Serve until SIGTERM/SIGINT."""
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
    root_lock = _lock_root(cfg.root)  # noqa: F841 (held for the life of the process)
    daemon = Daemon(cfg, zygote)
    daemon.loop = asyncio.get_running_loop()
    daemon.start_dns()
    await daemon.run(daemon.startup_gc)
    await daemon.run(daemon.watch_running)
    app = make_app(daemon)
    # a stop waits this long for the requests in flight: streams that last as long as a container
    # (logs -f, attach, events) are cut then, as dockerd does, not waited for (60 s by default)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
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
                site = web.UnixSite(runner, path, backlog=_somaxconn())
                await site.start()
                made.append(path)
                os.chmod(path, 0o660)
                try:
                    os.chown(path, 0, grp.getgrnam("berth").gr_gid)
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
        # e.g. the port is taken: listen on nothing, leave no socket behind, say it in one line
        await runner.cleanup()
        daemon.close()
        for path in made:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if isinstance(e, BerthError):
            raise
        raise InvalidArgument(f"cannot listen on {h}: {e.strerror or e}") from None
    cri = await _start_cri(daemon) if cfg.cri else None
    pidfile = os.path.join(cfg.state, "berthd.pid")
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    if ready:
        ready()
    try:
        await stop.wait()
    finally:
        if cri is not None:
            await _stop_cri(daemon, *cri)
        await runner.cleanup()
        await daemon.dns.close()
        await daemon.run(daemon.release_host)
        daemon.close()
        for h in cfg.hosts:
            if h.startswith("unix://"):
                try:
                    os.unlink(h[len("unix://"):])
                except FileNotFoundError:
                    pass
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass


async def _start_cri(daemon):
    """The Kubernetes CRI (gRPC, berth/cri) on cri_socket and its streaming server; a CRI that
    cannot start is logged, the Docker API is served regardless."""
    from berth.cri.server import CRIServer
    from berth.daemon.config import stream_server_host
    cfg = daemon.cfg
    streaming = None
    try:
        host = stream_server_host(cfg)
    except OSError as e:  # containerd: its CRI plugin does not load
        log.warning("CRI: not served: failed to create stream server: failed to get stream server address: %s", e)
        return CRIServer(daemon, None), None
    try:
        from berth.cri.stream_backend import StreamBackend
        from berth.cri.streaming import StreamingServer
    except ImportError:
        log.warning("CRI: no streaming server in this build: Exec, Attach and PortForward answer UNAVAILABLE")
    else:
        from berth.cri.runtime import netns_of
        streaming = StreamingServer(f"[{host}]:{cfg.stream_server_port}" if ":" in host else
                                    f"{host}:{cfg.stream_server_port}",
                                    StreamBackend(daemon.containers, netns_of=netns_of(daemon),
                                                  executor=daemon.pool))
        try:
            await streaming.start()
        except OSError as e:
            log.warning("CRI: the streaming server cannot listen: %s", e)
            streaming = None
    server = CRIServer(daemon, streaming)
    try:
        await daemon.run(server.start)
    except (OSError, RuntimeError, ImportError) as e:  # e.g. grpcio missing: the Docker API goes on
        log.warning("CRI: not served: %s", e)
    return server, streaming


async def _stop_cri(daemon, server, streaming):
    await daemon.run(server.stop)
    if streaming is not None:
        await streaming.stop()


def _lock_root(root):
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


def _loopback(host):
    import ipaddress
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _tls_context(tls):
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
