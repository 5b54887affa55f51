"""berthd's configuration: /etc/berth/berthd.toml (TOML), defaults, validation, dump.

An invalid file is a one-line error naming the key; berthd does not start with it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal

DEFAULT_PATH = "/etc/berth/berthd.toml"
DEFAULT_SOCKET = "/run/berth/berth.sock"

DEFAULT_TEXT = '''# berthd configuration (TOML). Every key is optional; these are the defaults.

# Where images, snapshots, containers and volumes live.
root = "/var/lib/berth"
# Sockets, shim state, pid files (a tmpfs).
state = "/run/berth"
# Addresses to serve the Docker Engine API on: unix:///path or tcp://127.0.0.1:PORT.
# Plain TCP on a non-loopback address is refused unless allow_insecure_tcp = true.
hosts = ["unix:///run/berth/berth.sock"]
allow_insecure_tcp = false
# The Access-Control-Allow-Origin of the API's answers, for web pages that call it (dockerd's
# api-cors-header); empty: none.
api_cors_header = ""
# The group that owns the unix sockets (mode 0660), as dockerd's group ("docker"); the default
# group, when the host has none, is not an error.
group = "berth"
# Whether the Docker API's containers keep running while berthd is down (dockerd's live-restore;
# berthd's default: its shims outlive it, as containerd's). false: berthd stops them when it stops
# (each with its stop signal and timeout, the whole at most shutdown_timeout seconds or the
# longest stop timeout and 5; -1: no limit), and those it finds running at its start, whose
# restart policies then decide, as dockerd's.
live_restore = true
shutdown_timeout = 15
# The namespace of requests that do not name one (header X-Berth-Namespace).
namespace = "default"
# containerd-style registry host configs: <config_path>/<host>/hosts.toml, read at each pull.
config_path = "/etc/berth/certs.d"
# Mirrors for docker.io, as in docker's daemon.json (used when certs.d has no docker.io entry).
registry_mirrors = []
# Registries that may be reached over plain HTTP or with unverified TLS (host[:port] or CIDR).
insecure_registries = []
# Layers downloaded at once (by all pulls together) and uploaded at once (by all pushes), and how
# many times a layer's failed download is tried again (after 5, 10, 15... seconds), as dockerd's
# max-concurrent-downloads, max-concurrent-uploads (0: the default) and max-download-attempts.
max_concurrent_downloads = 3
max_concurrent_uploads = 5
max_download_attempts = 5
# The OCI runtime used when a container names none, and the runtimes that can be named.
default_runtime = "berth-runc"
# cgroupfs | systemd
cgroup_driver = "cgroupfs"
# The pause image of pod sandboxes.
sandbox_image = "registry.k8s.io/pause:3.9"
# Kubernetes CRI (runtime.v1 over gRPC) for kubelets and crictl; cri = false turns it off.
cri = true
cri_socket = "/run/berth/cri.sock"
# containerd's SystemdCgroup: true is cgroup_driver = "systemd".
systemd_cgroup = false
# The streaming server of exec/attach/port-forward (port 0: any free port). An empty address is
# the node's IP, as containerd's: that of the default route's interface (no default route: no CRI).
stream_server_address = "127.0.0.1"
stream_server_port = "0"
# The node's CNI configuration for pods (the first conflist by name), and the plugin dirs.
cri_cni_conf_dir = "/etc/cni/net.d"
cri_cni_bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
# debug | info | warning | error
log_level = "info"
# The log driver of containers that name none (json-file | local | none), as daemon.json's
# log-driver; [log_opts] below are its default options (log-opts).
log_driver = "json-file"
# Where the CNI plugins (bridge, host-local, portmap, firewall, ...) are looked for, in order.
cni_plugin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
# Where berth writes the conflist of each network (<dir>/<namespace>/<network>.conflist).
cni_conf_dir = "/etc/berth/cni/net.d"
# The default network ("bridge"): its Linux bridge and subnet. "none": no default network (the
# containers that would be on it have a network namespace with lo alone), as dockerd's -b none.
bridge = "berth0"
bridge_subnet = "10.87.0.0/16"
# The part of bridge_subnet its containers' addresses come from (empty: all of it), as
# daemon.json's fixed-cidr.
fixed_cidr = ""
# The default route of the default network's containers when it is not the bridge (an address
# of bridge_subnet; empty: the bridge), as daemon.json's default-gateway.
default_gateway = ""
# The same for IPv6 (an address of bridge_subnet6; without it, unused), as default-gateway-v6.
default_gateway6 = ""
# Whether containers on the default network may talk to each other (daemon.json's icc).
icc = true
# Where the default network publishes ports that name no host address (daemon.json's ip).
ip = "0.0.0.0"
# Ports published on IPv6 addresses (and [::] beside 0.0.0.0) are forwarded in user space by the
# container's shim (dockerd's docker-proxy; the IPv4 ones are NAT); false: no forwarder, and, as
# dockerd 20.10 without one, no IPv6 bindings (daemon.json's userland-proxy).
userland_proxy = true
# The default network's IPv6 subnet (empty: IPv4 only), as daemon.json's ipv6 and fixed-cidr-v6.
bridge_subnet6 = ""
# The MTU of the default network's interfaces (0: the kernel's, 1500), daemon.json's mtu.
mtu = 0
# Subnets of user-defined networks are /24s taken from this pool (skipping any the host routes).
address_pool = "10.90.0.0/16"
# A pid file besides <state>/berthd.pid (daemon.json's pidfile); empty: none.
pidfile = ""
# DNS servers, search domains and resolver options of docker containers that give none of their
# own (daemon.json's dns, dns-search, dns-opts); dns is also the embedded DNS server's upstream
# (empty: those of the host's /etc/resolv.conf).
dns = []
dns_search = []
dns_options = []
# Defaults of docker containers (daemon.json's default-ulimits, as `--ulimit` gives them;
# default-shm-size, "64m" when empty; no-new-privileges, --security-opt no-new-privileges=false
# turns it off), and the labels `docker info` shows (daemon.json's labels).
default_ulimits = []
default_shm_size = ""
no_new_privileges = false
labels = []
# Docker containers' IPC mode (private | shareable) and cgroup namespace mode (host | private; empty:
# private on a cgroup v2 host only) when they give none, and the cgroup parent of those that give
# none (empty: /berth), as daemon.json's default-ipc-mode, default-cgroupns-mode, cgroup-parent.
default_ipc_mode = ""
default_cgroupns_mode = ""
cgroup_parent = ""
# The seccomp profile of docker containers that name none (a docker profile's path, "unconfined";
# empty: berth's built-in one) and whether they run an init by default (daemon.json's
# seccomp-profile and init).
seccomp_profile = ""
init = false
# The init --init runs (bound at /sbin/docker-init), as daemon.json's init-path; empty: the
# host's tini-static (Debian's tini package).
init_path = ""
# docker's daemon-wide user namespace remapping (daemon.json's userns-remap): "default" (the
# user dockremap, made when missing), "user" or "user:group" (names or ids) whose ranges in
# /etc/subuid and /etc/subgid the containers' ids become; empty: none.
userns_remap = ""
# docker's storage-opts for its overlay2 driver (daemon.json's storage-opts), which berthd's
# overlayfs snapshotter takes: "overlay2.override_kernel_check=true" (its check is for kernels
# before 4.0: nothing to override) alone.
storage_opts = []
# A docker daemon.json whose directives berthd honours set the keys here over this file's
# (berth.daemon.daemonjson: registry-mirrors, log-driver, userns-remap, ...; `berthd
# --config-file PATH` as dockerd's); empty: none.
daemon_json = ""

[log_opts]
#   max-size = "10m"
#   max-file = "3"

[runtimes.berth-runc]
path = "berth-runc"
args = []

[runtimes.runc]
path = "runc"
args = []

# Registry mirrors in containerd's CRI form (its config.toml's registry.mirrors), for any
# registry host or "*": tried in order, then the registry itself, for pulls. A host with a
# hosts.toml (or certs directory) of its own under config_path uses that instead.
#   [registry.mirrors."docker.io"]
#   endpoint = ["https://mirror.example.com"]
[registry.mirrors]

[tls]
# Serve TCP with TLS; verify = true also requires client certificates signed by cacert.
verify = false
cacert = ""
cert = ""
key = ""
'''


@dataclass
class Runtime:
    path: str
    args: list[str] = field(default_factory=list)


@dataclass
class TLS:
    verify: bool = False
    cacert: str = ""
    cert: str = ""
    key: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.verify or self.cert)


@dataclass
class Config:
    root: str = "/var/lib/berth"
    state: str = "/run/berth"
    hosts: list[str] = field(default_factory=lambda: ["unix://" + DEFAULT_SOCKET])
    allow_insecure_tcp: bool = False
    api_cors_header: str = ""
    live_restore: bool = True
    shutdown_timeout: int = 15
    group: str = "berth"
    pidfile: str = ""
    namespace: str = "default"
    config_path: str = "/etc/berth/certs.d"
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    max_download_attempts: int = 5
    default_runtime: str = "berth-runc"
    runtimes: dict[str, Runtime] = field(default_factory=lambda: {"berth-runc": Runtime("berth-runc"), "runc": Runtime("runc")})
    cgroup_driver: str = "cgroupfs"
    sandbox_image: str = "registry.k8s.io/pause:3.9"
    cri: bool = True
    cri_socket: str = "/run/berth/cri.sock"
    systemd_cgroup: bool = False
    stream_server_address: str = "127.0.0.1"
    stream_server_port: str = "0"
    cri_cni_conf_dir: str = "/etc/cni/net.d"
    cri_cni_bin_dirs: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    log_level: str = "info"
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    cni_plugin_dirs: list[str] = field(default_factory=lambda: ["/usr/lib/cni", "/opt/cni/bin"])
    cni_conf_dir: str = "/etc/berth/cni/net.d"
    bridge: str = "berth0"
    bridge_subnet: str = "10.87.0.0/16"
    fixed_cidr: str = ""
    default_gateway: str = ""
    default_gateway6: str = ""
    bridge_subnet6: str = ""
    icc: bool = True
    ip: str = "0.0.0.0"
    userland_proxy: bool = True
    mtu: int = 0
    address_pool: str = "10.90.0.0/16"
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    default_ulimits: list[str] = field(default_factory=list)
    default_shm_size: str = ""
    no_new_privileges: bool = False
    labels: list[str] = field(default_factory=list)
    default_ipc_mode: str = ""
    default_cgroupns_mode: str = ""
    cgroup_parent: str = ""
    seccomp_profile: str = ""
    init: bool = False
    init_path: str = ""
    userns_remap: str = ""
    storage_opts: list[str] = field(default_factory=list)
    daemon_json: str = ""
    mirrors: dict[str, list[str]] = field(default_factory=dict)  # [registry.mirrors."host"] endpoint
    tls: TLS = field(default_factory=TLS)
    source: str = ""

    def to_toml(self) -> str:
        def q(s: object) -> str:
            return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

        def arr(xs: Iterable[object]) -> str:
            return "[" + ", ".join(q(x) for x in xs) + "]"
        lines = [f"# effective configuration{' (from ' + self.source + ')' if self.source else ''}",
                 f"root = {q(self.root)}", f"state = {q(self.state)}", f"hosts = {arr(self.hosts)}",
                 f"allow_insecure_tcp = {str(self.allow_insecure_tcp).lower()}", f"group = {q(self.group)}",
                 f"api_cors_header = {q(self.api_cors_header)}", f"live_restore = {str(self.live_restore).lower()}",
                 f"shutdown_timeout = {self.shutdown_timeout}",
                 f"pidfile = {q(self.pidfile)}",
                 f"namespace = {q(self.namespace)}", f"config_path = {q(self.config_path)}",
                 f"registry_mirrors = {arr(self.registry_mirrors)}",
                 f"insecure_registries = {arr(self.insecure_registries)}",
                 f"max_concurrent_downloads = {self.max_concurrent_downloads}",
                 f"max_concurrent_uploads = {self.max_concurrent_uploads}",
                 f"max_download_attempts = {self.max_download_attempts}",
                 f"default_runtime = {q(self.default_runtime)}", f"cgroup_driver = {q(self.cgroup_driver)}",
                 f"sandbox_image = {q(self.sandbox_image)}", f"log_level = {q(self.log_level)}",
                 f"log_driver = {q(self.log_driver)}",
                 f"cni_plugin_dirs = {arr(self.cni_plugin_dirs)}", f"cni_conf_dir = {q(self.cni_conf_dir)}",
                 f"bridge = {q(self.bridge)}", f"bridge_subnet = {q(self.bridge_subnet)}",
                 f"fixed_cidr = {q(self.fixed_cidr)}", f"default_gateway = {q(self.default_gateway)}",
                 f"default_gateway6 = {q(self.default_gateway6)}",
                 f"bridge_subnet6 = {q(self.bridge_subnet6)}", f"mtu = {self.mtu}", f"icc = {str(self.icc).lower()}",
                 f"ip = {q(self.ip)}", f"userland_proxy = {str(self.userland_proxy).lower()}",
                 f"address_pool = {q(self.address_pool)}", f"dns = {arr(self.dns)}",
                 f"dns_search = {arr(self.dns_search)}", f"dns_options = {arr(self.dns_options)}",
                 f"default_ulimits = {arr(self.default_ulimits)}", f"default_shm_size = {q(self.default_shm_size)}",
                 f"no_new_privileges = {str(self.no_new_privileges).lower()}", f"labels = {arr(self.labels)}",
                 f"default_ipc_mode = {q(self.default_ipc_mode)}",
                 f"default_cgroupns_mode = {q(self.default_cgroupns_mode)}", f"cgroup_parent = {q(self.cgroup_parent)}",
                 f"seccomp_profile = {q(self.seccomp_profile)}", f"init = {str(self.init).lower()}",
                 f"init_path = {q(self.init_path)}",
                 f"userns_remap = {q(self.userns_remap)}", f"storage_opts = {arr(self.storage_opts)}",
                 f"daemon_json = {q(self.daemon_json)}",
                 f"cri = {str(self.cri).lower()}", f"cri_socket = {q(self.cri_socket)}",
                 f"systemd_cgroup = {str(self.systemd_cgroup).lower()}",
                 f"stream_server_address = {q(self.stream_server_address)}",
                 f"stream_server_port = {q(self.stream_server_port)}",
                 f"cri_cni_conf_dir = {q(self.cri_cni_conf_dir)}", f"cri_cni_bin_dirs = {arr(self.cri_cni_bin_dirs)}", ""]
        lines += ["[log_opts]"] + [f"{q(k)} = {q(v)}" for k, v in self.log_opts.items()] + [""]
        for name, rt in self.runtimes.items():
            lines += [f"[runtimes.{q(name) if not name.replace('-', '').replace('_', '').isalnum() else name}]",
                      f"path = {q(rt.path)}", f"args = {arr(rt.args)}", ""]
        lines += ["[registry.mirrors]", ""]
        for host, urls in self.mirrors.items():
            lines += [f"[registry.mirrors.{q(host)}]", f"endpoint = {arr(urls)}", ""]
        lines += ["[tls]", f"verify = {str(self.tls.verify).lower()}", f"cacert = {q(self.tls.cacert)}",
                  f"cert = {q(self.tls.cert)}", f"key = {q(self.tls.key)}", ""]
        return "\n".join(lines)

    @property
    def socket_path(self) -> str | None:
        for h in self.hosts:
            if h.startswith("unix://"):
                return h[len("unix://"):]
        return None


_KEYS: dict[str, Any] = {  # key -> its type (str, list, bool, dict)
    "root": str, "state": str, "hosts": list, "allow_insecure_tcp": bool, "namespace": str, "group": str,
    "pidfile": str,
    "config_path": str, "registry_mirrors": list, "insecure_registries": list, "default_runtime": str,
    "max_concurrent_downloads": int, "max_concurrent_uploads": int, "max_download_attempts": int,
    "cgroup_driver": str, "sandbox_image": str, "log_level": str, "runtimes": dict, "tls": dict,
    "cni_plugin_dirs": list, "cni_conf_dir": str, "bridge": str, "bridge_subnet": str, "bridge_subnet6": str, "mtu": int, "icc": bool, "ip": str,
    "address_pool": str,
    "dns": list, "cri": bool, "cri_socket": str, "systemd_cgroup": bool, "stream_server_address": str,
    "stream_server_port": str, "cri_cni_conf_dir": str, "cri_cni_bin_dirs": list, "registry": dict,
    "log_driver": str, "log_opts": dict, "userns_remap": str,
    "daemon_json": str, "dns_search": list, "dns_options": list, "default_ulimits": list,
    "default_shm_size": str, "no_new_privileges": bool, "labels": list, "default_ipc_mode": str,
    "default_cgroupns_mode": str, "cgroup_parent": str, "seccomp_profile": str, "init": bool, "init_path": str,
    "storage_opts": list, "userland_proxy": bool, "fixed_cidr": str, "default_gateway": str,
    "default_gateway6": str, "api_cors_header": str, "live_restore": bool, "shutdown_timeout": int,
}


def _bad(path: str, key: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {key}: {why}")


def _check_default_gateway(path: str, key: str, value: str, subnet_s: str, version: int) -> None:
    """default_gateway(6): an address of the default network's subnet (one without that subnet:
    unused), not its bridge's own; dockerd's words."""
    import ipaddress
    try:
        gw = (ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address)(value)
    except ValueError:
        raise _bad(path, key, f"invalid IP address: {value}") from None
    try:
        subnet = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)(subnet_s, strict=False) \
            if subnet_s else None
    except ValueError:
        return  # (the subnet's own error, where the network is made)
    if subnet is None:
        return
    name = f"DefaultGatewayIPv{version}"
    if gw not in subnet or gw == subnet.network_address or (version == 4 and gw == subnet.broadcast_address):
        raise _bad(path, key, f"auxiliary address: ({name}:{gw}) must belong to the master pool: {subnet}")
    if gw == subnet.network_address + 1:  # the bridge's own address
        raise _bad(path, key, f"failed to allocate secondary ip address ({name}:{gw}): Address already in use")


def load(path: str | None = None, required: bool = False) -> Config:
    """Read the config file (the default path may be absent; an explicit one must exist)."""
    p = path or DEFAULT_PATH
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if path and required:
            raise InvalidArgument(f"config file {p} not found") from None
        return Config()
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"{p}: invalid TOML: {e}") from None
    except OSError as e:
        raise InvalidArgument(f"cannot read config file {p}: {e.strerror}") from None
    cfg = from_dict(data, p)
    cfg.source = p
    return cfg


def from_dict(data: dict[str, Any], path: str = "config") -> Config:
    cfg = Config()
    for key, value in data.items():
        if key not in _KEYS:
            raise _bad(path, key, "unknown key")
        want = _KEYS[key]
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            kind = {"str": "a string", "list": "a list", "bool": "true or false", "dict": "a table",
                    "int": "a number"}[want.__name__]
            raise _bad(path, key, f"must be {kind}, not {type(value).__name__}")
        if want is list and not all(isinstance(x, str) for x in value):
            raise _bad(path, key, "must be a list of strings")
        if key == "runtimes":
            rts: dict[str, Runtime] = {}
            for name, rt in value.items():
                if not isinstance(rt, dict) or not isinstance(rt.get("path"), str) or not rt["path"]:
                    raise _bad(path, f"runtimes.{name}.path", "must be a non-empty string")
                args = rt.get("args", [])
                if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                    raise _bad(path, f"runtimes.{name}.args", "must be a list of strings")
                extra = set(rt) - {"path", "args"}
                if extra:
                    raise _bad(path, f"runtimes.{name}.{sorted(extra)[0]}", "unknown key")
                rts[name] = Runtime(rt["path"], list(args))
            value = rts
        elif key == "registry":
            key, value = "mirrors", _registry_mirrors(path, value)
        elif key == "log_opts":
            bad = next((k for k, v in value.items() if not isinstance(v, str)), None)
            if bad is not None:
                raise _bad(path, f"log_opts.{bad}", 'must be a string (max-file = "3", as in daemon.json)')
            value = dict(value)
        elif key == "tls":
            t = TLS()
            for k, v in value.items():
                if k not in ("verify", "cacert", "cert", "key"):
                    raise _bad(path, f"tls.{k}", "unknown key")
                if (k == "verify") != isinstance(v, bool) or (k != "verify" and not isinstance(v, str)):
                    raise _bad(path, f"tls.{k}", "has the wrong type")
                setattr(t, k, v)
            value = t
        setattr(cfg, key, value)
    validate(cfg, path)
    return cfg


def _registry_mirrors(path: str, table: dict[str, Any]) -> dict[str, list[str]]:
    """[registry.mirrors."<host>"] endpoint = [URL, ...]: containerd's CRI mirrors -> host -> URLs."""
    extra = set(table) - {"mirrors"}
    if extra:
        raise _bad(path, f"registry.{sorted(extra)[0]}", "unknown key (registry.mirrors is the one known)")
    mirrors = table.get("mirrors", {})
    if not isinstance(mirrors, dict):
        raise _bad(path, "registry.mirrors", 'must be tables like [registry.mirrors."docker.io"]')
    out: dict[str, list[str]] = {}
    for host, entry in mirrors.items():
        key = f'registry.mirrors."{host}"'
        if not isinstance(entry, dict):
            raise _bad(path, key, "must be a table with endpoint = [URL, ...]")
        if set(entry) - {"endpoint"}:
            raise _bad(path, f"{key}.{sorted(set(entry) - {'endpoint'})[0]}", "unknown key")
        urls = entry.get("endpoint", [])
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise _bad(path, f"{key}.endpoint", "must be a list of URLs")
        host = host.lower()
        out["docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host] = list(urls)
    if out:
        from berth.remotes.hosts import check_host_mirrors
        try:
            check_host_mirrors(out)
        except InvalidArgument as e:
            raise InvalidArgument(f"{path}: {e}") from None
    return out


def shm_size(cfg: Config) -> int:
    """The /dev/shm size of docker containers that give none (64 MiB unless default_shm_size)."""
    if not cfg.default_shm_size:
        return 64 << 20
    from berth.units import parse_size
    try:
        n = parse_size(cfg.default_shm_size, binary=True)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    if n <= 0:
        raise InvalidArgument(f"invalid size: '{cfg.default_shm_size}'")
    return n


def stream_server_host(cfg: Config) -> str:
    """Where the CRI's streaming server listens: stream_server_address, or when it is empty the
    node's IP as containerd chooses it (berth.linux.hostnet.node_address; OSError without a
    default route)."""
    if cfg.stream_server_address:
        return cfg.stream_server_address
    from berth.linux import hostnet
    return hostnet.node_address()


def validate(cfg: Config, path: str = "config") -> Config:
    if cfg.systemd_cgroup:  # containerd's SystemdCgroup = true
        cfg.cgroup_driver = "systemd"
    for k in ("cri_socket", "cri_cni_conf_dir"):
        if not os.path.isabs(getattr(cfg, k)):
            raise _bad(path, k, "must be an absolute path")
    if not cfg.stream_server_port.isdigit() or int(cfg.stream_server_port) > 65535:
        raise _bad(path, "stream_server_port", f"{cfg.stream_server_port!r} is not a port number")
    if cfg.cgroup_driver not in ("cgroupfs", "systemd"):
        raise _bad(path, "cgroup_driver", f"must be cgroupfs or systemd, not {cfg.cgroup_driver!r}")
    from berth.opts import parse_ulimit
    for u in cfg.default_ulimits:
        try:
            parse_ulimit(u)
        except InvalidArgument as e:
            raise _bad(path, "default_ulimits", e.message) from None
    if cfg.default_shm_size:
        try:
            shm_size(cfg)
        except InvalidArgument as e:
            raise _bad(path, "default_shm_size", e.message) from None
    if cfg.default_ipc_mode not in ("", "private", "shareable"):  # dockerd's words
        raise _bad(path, "default_ipc_mode", f'invalid default IPC mode: {cfg.default_ipc_mode!r}: only "private" '
                   'or "shareable"')
    if cfg.default_cgroupns_mode not in ("", "host", "private"):
        raise _bad(path, "default_cgroupns_mode", f"invalid default cgroup namespace mode: "
                   f'{cfg.default_cgroupns_mode!r}: only "host" or "private"')
    if cfg.cgroup_parent and (".." in cfg.cgroup_parent.split("/") or
                              not all(c.isalnum() or c in "/-_.:" for c in cfg.cgroup_parent)):
        raise _bad(path, "cgroup_parent", f"invalid cgroup parent {cfg.cgroup_parent!r}")
    if cfg.seccomp_profile not in ("", "builtin", "default", "unconfined"):
        from berth.services.ocispec import _seccomp_profile
        try:
            _seccomp_profile(cfg.seccomp_profile)  # (read again at berthd's start)
        except InvalidArgument as e:
            raise _bad(path, "seccomp_profile", e.message) from None
    try:
        import ipaddress
        ipaddress.IPv4Address(cfg.ip)
    except ValueError:
        raise _bad(path, "ip", f"{cfg.ip!r} is not an IPv4 address") from None
    if cfg.fixed_cidr:
        import ipaddress
        try:
            fixed = ipaddress.IPv4Network(cfg.fixed_cidr, strict=False)
        except ValueError as e:
            raise _bad(path, "fixed_cidr", str(e)) from None
        try:
            subnet = ipaddress.IPv4Network(cfg.bridge_subnet, strict=False)
        except ValueError:
            subnet = None  # (bridge_subnet's own error, where the network is made)
        if subnet is not None and not fixed.subnet_of(subnet):
            raise _bad(path, "fixed_cidr", f"{fixed} is not within the default network's subnet {subnet}")
    for key, subnet_key, version in (("default_gateway", "bridge_subnet", 4),
                                     ("default_gateway6", "bridge_subnet6", 6)):
        if getattr(cfg, key):
            _check_default_gateway(path, key, getattr(cfg, key), getattr(cfg, subnet_key), version)
    if cfg.bridge_subnet6:
        import ipaddress
        try:
            net6 = ipaddress.IPv6Network(cfg.bridge_subnet6, strict=False)
        except ValueError as e:
            raise _bad(path, "bridge_subnet6", str(e)) from None
        if net6.prefixlen > 126:
            raise _bad(path, "bridge_subnet6", f"{net6} has no room for containers")
    from berth.snapshots.overlay import check_storage_opts
    try:
        check_storage_opts(cfg.storage_opts)
    except InvalidArgument as e:
        raise _bad(path, "storage_opts", e.message) from None
    defaults = Config()
    for k, what in (("max_concurrent_downloads", "max concurrent downloads"),
                    ("max_concurrent_uploads", "max concurrent uploads"), ("max_download_attempts", "max download attempts")):
        n = getattr(cfg, k)
        if n < 0 or (n == 0 and k == "max_download_attempts"):  # dockerd's words
            raise _bad(path, k, f"invalid {what}: {n}")
        if n == 0:  # (dockerd's default, as dockerd takes it)
            setattr(cfg, k, getattr(defaults, k))
    if not 0 <= cfg.mtu <= 65535 or 0 < cfg.mtu < 68:
        raise _bad(path, "mtu", f"invalid MTU {cfg.mtu}: 68 to 65535, or 0 for the kernel's")
    for label in cfg.labels:
        if "=" not in label:
            raise _bad(path, "labels", f"bad attribute format: {label}")  # dockerd's
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise _bad(path, "log_level", f"must be debug, info, warning or error, not {cfg.log_level!r}")
    if cfg.log_driver not in ("json-file", "local", "none"):
        raise _bad(path, "log_driver", f"must be json-file, local or none, not {cfg.log_driver!r}")
    if cfg.log_opts:  # as the containers' own options are checked (dockerd checks daemon.json's at its start)
        from berth.services.runopts import check_log_config
        try:
            check_log_config(cfg.log_driver, cfg.log_opts)
        except InvalidArgument as e:
            raise _bad(path, "log_opts", e.message) from None
    if cfg.default_runtime not in cfg.runtimes:
        raise _bad(path, "default_runtime", f"{cfg.default_runtime!r} is not in [runtimes]")
    for k in ("root", "state"):
        if not os.path.isabs(getattr(cfg, k)):
            raise _bad(path, k, "must be an absolute path")
    if not cfg.hosts:
        raise _bad(path, "hosts", "must name at least one address")
    import ipaddress
    for k in ("bridge_subnet", "address_pool"):
        try:
            net = ipaddress.IPv4Network(getattr(cfg, k), strict=False)
        except ValueError as e:
            raise _bad(path, k, f"not an IPv4 subnet: {e}") from None
        if net.prefixlen > (30 if k == "bridge_subnet" else 24):
            raise _bad(path, k, f"{net} is too small")
    for d in cfg.dns:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise _bad(path, "dns", f"{d!r} is not an IP address") from None
    if not cfg.bridge or len(cfg.bridge) > 15 or "/" in cfg.bridge or " " in cfg.bridge:
        raise _bad(path, "bridge", f"{cfg.bridge!r} is not a valid interface name (1-15 characters)")
    if not os.path.isabs(cfg.cni_conf_dir):
        raise _bad(path, "cni_conf_dir", "must be an absolute path")
    for h in cfg.hosts:
        parse_host(h, cfg.allow_insecure_tcp, cfg.tls.enabled, path, verify=cfg.tls.verify)
    import re
    if not re.fullmatch(r"[a-z0-9]([a-z0-9._-]{0,74}[a-z0-9])?", cfg.namespace):
        raise _bad(path, "namespace", f"invalid namespace name {cfg.namespace!r}")
    return cfg


def parse_host(h: str, allow_insecure: bool = False, tls: bool = False, path: str = "hosts",
               verify: bool = True) -> tuple[Literal["unix"], str] | tuple[Literal["tcp"], str, int]:
    """unix:///path or tcp://host:port -> ("unix", path) or ("tcp", host, port). On a
    non-loopback address, TCP without TLS, or TLS that does not verify clients (anyone can
    connect, and the API is root on this host), is refused unless allow_insecure."""
    if h.startswith("unix://"):
        p = h[len("unix://"):]
        if not p.startswith("/"):
            raise _bad(path, "hosts", f"{h!r}: the socket path must be absolute")
        return ("unix", p)
    if h.startswith("tcp://"):
        hostport = h[len("tcp://"):].rstrip("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise _bad(path, "hosts", f"{h!r}: expected tcp://HOST:PORT")
        host = host.strip("[]")
        import ipaddress
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback and not tls and not allow_insecure:
            raise _bad(path, "hosts", f"{h!r}: plain TCP on a non-loopback address is refused "
                                      "(use TLS, or allow_insecure_tcp = true)")
        if not loopback and tls and not verify and not allow_insecure:
            raise _bad(path, "hosts", f"{h!r}: TLS without client verification on a non-loopback address "
                                      "gives root on this host to anyone who can connect: refused "
                                      "(use tls.verify = true with tls.cacert, or allow_insecure_tcp = true)")
        return ("tcp", host, int(port))
    raise _bad(path, "hosts", f"{h!r}: expected unix:///PATH or tcp://HOST:PORT")
