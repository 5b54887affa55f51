"""The system use-cases: what the engine is and holds (docker info, system df), and berth's
namespaces."""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
from typing import TYPE_CHECKING

from berth import __version__
from berth.errors import BerthError
from berth.services.state import now_rfc3339

if TYPE_CHECKING:
    from berth.daemon.config import Config
    from berth.metadata import MetadataStore
    from berth.metadata.records import Namespace
    from berth.services.buildcache import BuildCache
    from berth.services.containers import ContainerService
    from berth.services.images import ImageService
    from berth.services.volumes import VolumeService


log = logging.getLogger("berthd")


class SystemService:
    def __init__(self, cfg: Config, meta: MetadataStore, images: ImageService, containers: ContainerService,
                 snapshotter_name: str, volumes: VolumeService | None = None,
                 build_cache: BuildCache | None = None) -> None:
        self.cfg = cfg
        self.meta = meta
        self.images = images
        self.containers = containers
        self.snapshotter_name = snapshotter_name
        self.volumes = volumes  # berth.services.volumes.VolumeService
        self.build_cache = build_cache  # berth.services.buildcache.BuildCache

    def info(self, ns: str) -> dict:
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
        # docker.io's mirrors, in the order pulls try them: containerd's form, then daemon.json's
        cri_form = self.cfg.mirrors.get("docker.io", self.cfg.mirrors.get("*", []))
        mirrors = list(cri_form) + list(self.cfg.registry_mirrors)
        caps = _host_support(mode)
        events = getattr(self.containers, "events", None)
        return _in_dockerds_order({
            **caps, "Warnings": _warnings(caps),
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "ipvlan", "macvlan", "null"],
                        "Authorization": None, "Log": ["json-file", "local", "none"]},
            "NFd": _count("/proc/self/fd"), "NGoroutines": threading.active_count(),
            "SystemTime": now_rfc3339(),
            "NEventsListener": len(getattr(events, "_subscribers", ())),
            "GenericResources": None, "HttpProxy": _proxy("HTTP_PROXY"), "HttpsProxy": _proxy("HTTPS_PROXY"),
            "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
            # a container's shim is not berthd's child: containers run on while berthd stops or restarts
            "LiveRestoreEnabled": self.cfg.live_restore, "Isolation": "",
            "InitBinary": self.cfg.init_path or "docker-init",  # --init's (tini-static; init-path's)
            "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "N/A", "Expected": "N/A"},
            # user-defined networks' subnets: /24s of berthd.toml's address_pool
            "DefaultAddressPools": [{"Base": self.cfg.address_pool, "Size": 24}],
            "ID": _daemon_id(self.cfg.root), "Name": socket.gethostname(),
            "ServerVersion": __version__, "Driver": self.snapshotter_name, "DriverStatus": [],
            **self._container_counts(ns),
            "Images": images, "DockerRootDir": self.cfg.root,
            "CgroupDriver": self.cfg.cgroup_driver, "CgroupVersion": "2" if mode == "v2" else "1",
            "Runtimes": {name: {"path": rt.path, "runtimeArgs": rt.args or None}
                         for name, rt in self.cfg.runtimes.items()},
            "DefaultRuntime": self.cfg.default_runtime,
            "RegistryConfig": {
                # (not dockerd 20.10's AllowNondistributableArtifacts*: gone from the API since 1.49,
                # and from the docker CLI's own view of it, which `info --format` renders)
                # loopback registries are spoken to over plain HTTP too, as dockerd's 127.0.0.0/8
                "InsecureRegistryCIDRs": ["127.0.0.0/8"] + [r for r in self.cfg.insecure_registries
                                                            if "/" in r and r != "127.0.0.0/8"],
                "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True,
                                               "Official": True}},
                "Mirrors": mirrors,
            },
            "OperatingSystem": _os_name(), "OSType": "linux", "OSVersion": "", "Architecture": platform.machine(),
            "KernelVersion": u.release, "NCPU": os.cpu_count() or 1, "MemTotal": mem,
            "IndexServerAddress": "https://index.docker.io/v1/", "LoggingDriver": self.cfg.log_driver,
            # the daemon's seccomp profile as dockerd names it: its path, or unconfined
            "SecurityOptions": ["name=seccomp,profile=" + (self.cfg.seccomp_profile if self.cfg.seccomp_profile
                                                           not in ("", "default") else "builtin")] +
            (["name=userns"] if getattr(self.containers, "remap", None) is not None else []),
            "Labels": list(self.cfg.labels) + [f"berth.namespace={ns}"],  # (daemon.json's labels first)
            "ExperimentalBuild": False, "Debug": self.cfg.log_level == "debug",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "Berth": {"Namespace": ns, "ConfigPath": self.cfg.config_path, "SandboxImage": self.cfg.sandbox_image,
                      "StateDir": self.cfg.state},
        })

    def collect_leftovers(self) -> None:
        """At daemon start: collect what a daemon killed mid-pull left. Its leases are dead now,
        and so is everything only they kept (half-pulled blobs, ingests, snapshots being extracted)."""
        try:
            for lease in self.meta.list_leases(None):
                self.meta.delete_lease(lease.namespace, lease.id)
            report = self.meta.collect(self.images.content, self.images.snapshotter,
                                       snapshotter_name=self.snapshotter_name, grace=0, cleanup=True)
            if report.content or report.snapshots or report.ingests:
                log.info("collected %d blobs, %d snapshots, %d ingests left by an earlier run",
                         len(report.content), len(report.snapshots), len(report.ingests))
        except BerthError as e:
            log.warning("garbage collection: %s", e)
        self.containers.sweep_trash()  # containers' directories a removal had moved away

    def disk_usage(self, ns: str) -> dict:
        """docker system df: images, containers, volumes and the build cache of a namespace."""
        from berth.services import export
        out = export.disk_usage(self.containers, ns, self.volumes)
        out["BuildCache"] = self.build_cache.usage(ns) if self.build_cache is not None else []
        return out

    def _container_counts(self, ns: str) -> dict[str, int]:
        counts = {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0}
        for rec in self.meta.list_containers(ns):
            st = self.containers.state(rec)
            counts["Containers"] += 1
            key = {"running": "ContainersRunning", "paused": "ContainersPaused"}.get(st["Status"], "ContainersStopped")
            counts[key] += 1
        return counts

    # --- namespaces ---

    def namespaces(self) -> list[dict]:
        out = []
        for n in self.meta.list_namespaces():
            out.append({"Name": n.name, "Labels": n.labels})
        return out

    def namespace_inspect(self, name: str) -> dict:
        n = self.meta.get_namespace(name)
        usage = self.meta.namespace_usage(name)
        return {"Name": n.name, "Labels": n.labels, "Usage": usage}

    def namespace_create(self, name: str, labels: dict | None = None) -> Namespace:
        from berth.metadata.records import check_namespace
        check_namespace(name)
        try:
            self.meta.get_namespace(name)
        except BerthError:
            return self.meta.create_namespace(name, labels or {})
        from berth.errors import AlreadyExists
        raise AlreadyExists(f'namespace "{name}" already exists')

    def namespace_remove(self, name: str) -> None:
        self.meta.delete_namespace(name)


def _daemon_id(root: str) -> str:
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


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


# dockerd's /info, key by key in its order (berth's own, "Berth", last)
_INFO_ORDER = (
    "ID", "Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images", "Driver",
    "DriverStatus", "Plugins", "MemoryLimit", "SwapLimit", "KernelMemory", "KernelMemoryTCP", "CpuCfsPeriod",
    "CpuCfsQuota", "CPUShares", "CPUSet", "PidsLimit", "IPv4Forwarding", "BridgeNfIptables", "BridgeNfIp6tables",
    "Debug", "NFd", "OomKillDisable", "NGoroutines", "SystemTime", "LoggingDriver", "CgroupDriver", "CgroupVersion",
    "NEventsListener", "KernelVersion", "OperatingSystem", "OSVersion", "OSType", "Architecture",
    "IndexServerAddress", "RegistryConfig", "NCPU", "MemTotal", "GenericResources", "DockerRootDir", "HttpProxy",
    "HttpsProxy", "NoProxy", "Name", "Labels", "ExperimentalBuild", "ServerVersion", "Runtimes", "DefaultRuntime",
    "Swarm", "LiveRestoreEnabled", "Isolation", "InitBinary", "ContainerdCommit", "RuncCommit", "InitCommit",
    "SecurityOptions", "DefaultAddressPools", "Warnings",
)


def _in_dockerds_order(info: dict) -> dict:
    out = {k: info[k] for k in _INFO_ORDER if k in info}
    out.update((k, v) for k, v in info.items() if k not in out)
    return out


def _host_support(mode: str) -> dict[str, bool]:
    """What dockerd's sysinfo finds on the host: the cgroup controllers' limits, IP forwarding
    and the bridge's netfilter calls."""
    def v1(controller: str, name: str) -> bool:
        return os.path.exists(os.path.join("/sys/fs/cgroup", controller, name))

    if mode == "v2":
        try:
            with open("/sys/fs/cgroup/cgroup.subtree_control") as f:
                on = set(f.read().split())
        except OSError:
            on = set()
        out = {"MemoryLimit": "memory" in on, "SwapLimit": "memory" in on, "KernelMemory": False,
               "KernelMemoryTCP": False, "CpuCfsPeriod": "cpu" in on, "CpuCfsQuota": "cpu" in on,
               "CPUShares": "cpu" in on, "CPUSet": "cpuset" in on, "PidsLimit": "pids" in on,
               "OomKillDisable": False}
    else:
        out = {"MemoryLimit": v1("memory", "memory.limit_in_bytes"),
               "SwapLimit": v1("memory", "memory.memsw.limit_in_bytes"),
               "KernelMemory": v1("memory", "memory.kmem.limit_in_bytes"),
               "KernelMemoryTCP": v1("memory", "memory.kmem.tcp.limit_in_bytes"),
               "CpuCfsPeriod": v1("cpu", "cpu.cfs_period_us"), "CpuCfsQuota": v1("cpu", "cpu.cfs_quota_us"),
               "CPUShares": v1("cpu", "cpu.shares"), "CPUSet": v1("cpuset", "cpuset.cpus"),
               "PidsLimit": v1("pids", "cgroup.procs"), "OomKillDisable": v1("memory", "memory.oom_control")}
    out["IPv4Forwarding"] = _sysctl_on("/proc/sys/net/ipv4/ip_forward")
    out["BridgeNfIptables"] = _sysctl_on("/proc/sys/net/bridge/bridge-nf-call-iptables")
    out["BridgeNfIp6tables"] = _sysctl_on("/proc/sys/net/bridge/bridge-nf-call-ip6tables")
    return out


def _warnings(caps: dict[str, bool]) -> list[str] | None:
    """dockerd's warnings of what the host lacks (docker info prints them)."""
    words = (("MemoryLimit", "No memory limit support"), ("SwapLimit", "No swap limit support"),
             ("OomKillDisable", "No oom kill disable support"), ("CpuCfsQuota", "No cpu cfs quota support"),
             ("CpuCfsPeriod", "No cpu cfs period support"), ("CPUShares", "No cpu shares support"),
             ("CPUSet", "No cpuset support"), ("IPv4Forwarding", "IPv4 forwarding is disabled"),
             ("BridgeNfIptables", "bridge-nf-call-iptables is disabled"),
             ("BridgeNfIp6tables", "bridge-nf-call-ip6tables is disabled"))
    out = [f"WARNING: {w}" for key, w in words if not caps.get(key)]
    return out or None


def _sysctl_on(path: str) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _count(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def _proxy(name: str) -> str:
    """The daemon's proxy setting from its environment, its password masked as dockerd does."""
    value = os.environ.get(name, os.environ.get(name.lower(), ""))
    from urllib.parse import urlsplit
    try:
        u = urlsplit(value)
        if u.password:
            return value.replace(":" + u.password + "@", ":xxxxx@", 1)
    except ValueError:
        pass
    return value
