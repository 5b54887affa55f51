"""berthd: wiring the stores and services, serving the API on unix sockets and TCP."""

import asyncio
import concurrent.futures
import grp
import logging
import os
import platform
import signal
import socket

from berth import __version__
from berth.errors import BerthError, InvalidArgument

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
        self.images = ImageService(self.meta, self.content, self.snapshotter, self.snapshotter_name,
                                   self.registry)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="berthd")
        # waits that last as long as a container (wait, logs -f, stats streams) get threads of
        # their own (made as needed): they never starve the pool that serves short requests
        self.waits = concurrent.futures.ThreadPoolExecutor(max_workers=4096, thread_name_prefix="berthd-wait")
        from berth.services.containers import ContainerService
        self.zygote = zygote
        self.containers = ContainerService(cfg, self.meta, self.images, self.snapshotter, self.snapshotter_name,
                                           zygote)
        from berth.services.networks import NetworkService
        self.networks = NetworkService(cfg, self.meta)
        self.containers.networks = self.networks
        self.image_users = self.containers.image_users
        from berth.services.volumes import VolumeService
        self.volumes = VolumeService(cfg, self.meta)
        self.volumes.containers, self.containers.volumes = self.containers, self.volumes
        self.attach_waiting = set()  # containers with an attach waiting for their start
        self.execs = {}  # exec id -> {ns, container, body, process, started, pid}
        import collections
        self.event_log = collections.deque(maxlen=1000)  # (namespace, event)
        self.subscribers = set()  # asyncio queues of /events streams
        self.loop = None

    def emit(self, ns, type_, action, actor_id, **attrs):
        """Record an event (docker's shape) and hand it to the /events streams; any thread may call it."""
        import time as _time
        now = _time.time_ns()
        ev = {"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": {k: str(v) for k, v in attrs.items() if v is not None}},
              "scope": "local", "time": now // 10**9, "timeNano": now}
        if type_ == "container":
            ev.update(status=action, id=actor_id, **({"from": attrs["image"]} if attrs.get("image") else {}))
        elif type_ == "image":
            ev.update(status=action, id=actor_id)
        self.event_log.append((ns, ev))
        if self.loop is not None:
            for q in list(self.subscribers):
                self.loop.call_soon_threadsafe(q.put_nowait, (ns, ev))

    def emit_container(self, ns, cid, action, **extra):
        try:
            rec = self.meta.get_container(ns, cid)
            attrs = {"image": (rec.extensions or {}).get("image_name") or rec.image, "name": rec.name}
            attrs.update(rec.labels or {})
        except BerthError:
            attrs = {}
        attrs.update(extra)
        self.emit(ns, "container", action, cid, **attrs)

    def watch(self, ns, cid):
        """A thread per running container: when it exits, unmount its rootfs (and remove it if --rm)."""
        import threading

        def run():
            try:
                while True:
                    code = self.containers.wait_exit(ns, cid)
                    self.emit_container(ns, cid, "die", exitCode=code)
                    try:
                        rec = self.meta.get_container(ns, cid)
                        attrs = {"image": (rec.extensions or {}).get("image_name") or rec.image, "name": rec.name}
                    except BerthError:
                        attrs = {}
                    outcome = self.containers.cleanup_exited(ns, cid)
                    if outcome == "removed":
                        self.emit(ns, "container", "destroy", cid, **attrs)
                    if outcome != "restarted":
                        return
                    self.emit_container(ns, cid, "start")
            except BerthError:
                pass
            except Exception:
                log.exception("watching container %s", cid)
        threading.Thread(target=run, name=f"watch-{cid[:12]}", daemon=True).start()

    def watch_running(self):
        """After a (re)start of berthd: watch the containers still running, record the exits that
        happened while it was down, and bring back those whose restart policy says so."""
        running = set(self.containers.running())
        try:
            self.networks.ensure_host([n.name for n in self.meta.list_namespaces()])
        except BerthError as e:
            log.warning("networks: %s", e)
        for cid in self.networks.orphans({cid for _, cid in running}):
            self.networks.detach_all(cid)  # attachments of containers that exited while berthd was down
        for ns, cid in running:
            net = (self.meta.get_container(ns, cid).extensions or {}).get("net") or {}
            if net.get("networks"):
                self.networks.register(ns, cid, net["networks"], net.get("ports"))
                if self.networks.dns is not None and any(e.get("DNSNames") for e in net["networks"].values()):
                    try:
                        self.networks.dns.attach(cid, net["netns"])
                    except (BerthError, OSError) as e:
                        log.warning("container %s: embedded DNS: %s", cid[:12], e)
            self.watch(ns, cid)
        for n in self.meta.list_namespaces():
            for rec in self.meta.list_containers(n.name):
                if (n.name, rec.id) not in running and (rec.extensions or {}).get("started_at"):
                    try:
                        # it exited while berthd was down: what its watcher would have done
                        st = self.containers.state(rec)
                        if st["Status"] == "exited" and not self.containers.should_restart(rec, st["ExitCode"], True):
                            self.containers.cleanup_exited(n.name, rec.id)
                        else:
                            from berth.snapshots.mount import unmount
                            unmount(self.containers.rootfs(rec.id))
                    except BerthError as e:
                        log.warning("container %s: %s", rec.id[:12], e)
        for ns, cid in self.containers.to_restart_at_startup():
            try:
                self.containers.start(ns, cid, restarting=True)
                self.watch(ns, cid)
            except BerthError as e:
                log.warning("restarting container %s: %s", cid[:12], e)

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

    # --- system ---

    def info(self, ns):
        from berth.runtime import cgroups
        images = len(self.images.list(ns))
        mode = cgroups.detect_mode()
        mem = 0
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        mem = int(line.split()[1]) * 1024
        except OSError:
            pass
        u = os.uname()
        mirrors = list(self.cfg.registry_mirrors)
        return {
            "ID": _daemon_id(self.cfg.root), "Name": socket.gethostname(),
            "ServerVersion": __version__, "Driver": self.snapshotter_name, "DriverStatus": [],
            **self._container_counts(ns),
            "Images": images, "DockerRootDir": self.cfg.root,
            "CgroupDriver": self.cfg.cgroup_driver, "CgroupVersion": "2" if mode == "v2" else "1",
            "Runtimes": {name: {"path": rt.path, "runtimeArgs": rt.args or None}
                         for name, rt in self.cfg.runtimes.items()},
            "DefaultRuntime": self.cfg.default_runtime,
            "RegistryConfig": {
                "Mirrors": mirrors, "InsecureRegistryCIDRs": [r for r in self.cfg.insecure_registries if "/" in r],
                "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True,
                                               "Official": True}},
            },
            "OperatingSystem": _os_name(), "OSType": "linux", "OSVersion": "", "Architecture": platform.machine(),
            "KernelVersion": u.release, "NCPU": os.cpu_count() or 1, "MemTotal": mem,
            "IndexServerAddress": "https://index.docker.io/v1/", "LoggingDriver": "json-file",
            "SecurityOptions": ["name=seccomp,profile=builtin"], "Labels": [f"berth.namespace={ns}"],
            "ExperimentalBuild": False, "Debug": self.cfg.log_level == "debug",
            "Swarm": {"LocalNodeState": "inactive"},
            "Berth": {"Namespace": ns, "ConfigPath": self.cfg.config_path, "SandboxImage": self.cfg.sandbox_image,
                      "StateDir": self.cfg.state},
        }

    def _container_counts(self, ns):
        counts = {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0}
        for rec in self.meta.list_containers(ns):
            st = self.containers.state(rec)
            counts["Containers"] += 1
            key = {"running": "ContainersRunning", "paused": "ContainersPaused"}.get(st["Status"], "ContainersStopped")
            counts[key] += 1
        return counts

    # --- namespaces ---

    def namespaces(self):
        out = []
        for n in self.meta.list_namespaces():
            out.append({"Name": n.name, "Labels": n.labels})
        return out

    def namespace_inspect(self, name):
        n = self.meta.get_namespace(name)
        usage = self.meta.namespace_usage(name)
        return {"Name": n.name, "Labels": n.labels, "Usage": usage}

    def namespace_create(self, name, labels=None):
        from berth.metadata.records import check_namespace
        check_namespace(name)
        try:
            self.meta.get_namespace(name)
        except BerthError:
            return self.meta.create_namespace(name, labels or {})
        from berth.errors import AlreadyExists
        raise AlreadyExists(f'namespace "{name}" already exists')

    def namespace_remove(self, name):
        self.meta.delete_namespace(name)

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
        self.loop.call_soon_threadsafe(self.dns.detach, key)


def _snapshotter(root):
    from berth.snapshots import overlay
    sroot = os.path.join(root, "snapshots")
    os.makedirs(sroot, exist_ok=True)
    if overlay.supported(sroot):
        return overlay.OverlaySnapshotter(os.path.join(root, "snapshots", "overlayfs")), "overlayfs"
    from berth.snapshots.native import NativeSnapshotter
    return NativeSnapshotter(os.path.join(root, "snapshots", "native")), "native"


def _daemon_id(root):
    path = os.path.join(root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        import uuid
        i = str(uuid.uuid4())
        with open(path, "w") as f:
            f.write(i)
        return i


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


async def serve(cfg, ready=None, zygote=None):
    """Serve until SIGTERM/SIGINT."""
    from aiohttp import web

    from berth.api.app import make_app
    from berth.daemon.config import parse_host
    # Refuse before touching the stores: a second daemon must not run startup GC (which drops
    # every lease) under a live one.
    for h in cfg.hosts:
        addr = parse_host(h, cfg.allow_insecure_tcp, cfg.tls.enabled)
        if addr[0] == "unix" and _socket_alive(addr[1]):
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
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sites = []
    made = []
    try:
        for h in cfg.hosts:
            addr = parse_host(h, cfg.allow_insecure_tcp, cfg.tls.enabled)
            if addr[0] == "unix":
                path = addr[1]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if os.path.exists(path):
                    if _socket_alive(path):
                        raise InvalidArgument(f"another daemon is serving on {path}")
                    os.unlink(path)
                site = web.UnixSite(runner, path)
                await site.start()
                made.append(path)
                os.chmod(path, 0o660)
                try:
                    os.chown(path, 0, grp.getgrnam("berth").gr_gid)
                except KeyError:
                    pass
            else:
                site = web.TCPSite(runner, addr[1], addr[2], ssl_context=ssl_ctx)
                await site.start()
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
    cfg = daemon.cfg
    streaming = None
    try:
        from berth.cri.stream_backend import StreamBackend
        from berth.cri.streaming import StreamingServer
    except ImportError:
        log.warning("CRI: no streaming server in this build: Exec, Attach and PortForward answer UNAVAILABLE")
    else:
        from berth.cri.runtime import netns_of
        streaming = StreamingServer(f"{cfg.stream_server_address}:{cfg.stream_server_port}",
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


def _socket_alive(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


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
