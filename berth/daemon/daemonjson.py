"""docker's daemon.json for berthd: `berthd --config-file /etc/docker/daemon.json` (dockerd's
flag), or `daemon_json = "..."` in berthd.toml. The directives berthd honours set its own keys
over berthd.toml's; a directive given by a command-line flag too is refused, unknown directives
are refused, both in dockerd's words; those dockerd knows and berthd cannot honour are refused
by name (never taken and ignored).

daemon.json                    berthd.toml
registry-mirrors               registry_mirrors
insecure-registries            insecure_registries
max-concurrent-downloads,      max_concurrent_downloads, max_concurrent_uploads,
  max-concurrent-uploads,        max_download_attempts
  max-download-attempts
log-driver, log-opts           log_driver, [log_opts]
log-level, debug               log_level (warn: warning; fatal: error; debug: true is debug)
userns-remap                   userns_remap
dns                            dns
data-root (graph), exec-root   root, state
hosts                          hosts
api-cors-header                api_cors_header
containerd-namespace           namespace (where the Docker API's objects live)
default-runtime, runtimes      default_runtime, [runtimes.NAME] (path, runtimeArgs: args)
exec-opts                      native.cgroupdriver=cgroupfs|systemd: cgroup_driver
tls, tlsverify, tlscacert,     [tls]
  tlscert, tlskey
default-address-pools          address_pool (one pool of /24s, berthd's)
dns-search, dns-opts           dns_search, dns_options
default-ulimits                default_ulimits ("nofile=1024:2048")
default-shm-size               default_shm_size
no-new-privileges              no_new_privileges
labels                         labels
seccomp-profile, init,        seccomp_profile, init, init_path
  init-path
group                          group (of the unix sockets)
pidfile                        pidfile (besides <state>/berthd.pid)
mtu, bip                       mtu, bridge_subnet (its address the subnet's first: berthd's gateway)
fixed-cidr                     fixed_cidr (the part of it containers' addresses come from)
bridge                         bridge, bridge_subnet (an existing bridge, its address the gateway;
                                 none: no default network)
default-gateway,               default_gateway, default_gateway6 (the containers' default routes, if
  default-gateway-v6             not the bridge)
ipv6, fixed-cidr-v6            bridge_subnet6 (the default network's IPv6 subnet)
storage-opts                   storage_opts (overlay2.override_kernel_check only: nothing to override)
icc, ip                        icc, ip (the default network's host binding address)
userland-proxy                 userland_proxy (false: no IPv6 forwarder, no IPv6 bindings)
default-ipc-mode,              default_ipc_mode, default_cgroupns_mode, cgroup_parent
  default-cgroupns-mode,
  cgroup-parent

live-restore, shutdown-timeout  live_restore, shutdown_timeout

What berthd always does is taken when asked for: storage-driver overlay2
(berthd's overlayfs), iptables, ip-forward and ip-masq true, features {"buildkit": false} (its
builder is docker's classic one), experimental false, selinux-enabled false (berthd labels
nothing: SELinux is dockerd's option, off by default).
"""

from __future__ import annotations

import json

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.daemon.config import Config

# directive -> (berthd's command-line flag's dest that sets the same, or "")
_HONOURED = {
    "registry-mirrors": "registry_mirrors", "insecure-registries": "insecure_registries", "log-driver": "",
    "log-opts": "", "log-level": "log_level", "debug": "", "userns-remap": "userns_remap", "dns": "",
    "data-root": "root", "graph": "root", "exec-root": "state", "hosts": "hosts", "default-runtime": "",
    "runtimes": "", "exec-opts": "", "tls": "", "tlsverify": "tlsverify", "tlscacert": "tlscacert",
    "tlscert": "tlscert", "tlskey": "tlskey", "default-address-pools": "",
    "live-restore": "live_restore", "storage-driver": "", "iptables": "", "ip-forward": "", "ip-masq": "",
    "dns-search": "", "dns-opts": "", "default-ulimits": "", "default-shm-size": "", "no-new-privileges": "",
    "labels": "", "default-ipc-mode": "", "default-cgroupns-mode": "", "cgroup-parent": "",
    "seccomp-profile": "", "init": "", "group": "group", "mtu": "", "bip": "", "features": "",
    "pidfile": "pidfile", "experimental": "", "ipv6": "", "fixed-cidr-v6": "", "icc": "", "ip": "",
    "max-concurrent-downloads": "max_concurrent_downloads", "max-concurrent-uploads": "max_concurrent_uploads",
    "max-download-attempts": "max_download_attempts", "storage-opts": "", "selinux-enabled": "",
    "userland-proxy": "", "fixed-cidr": "", "bridge": "", "default-gateway": "", "default-gateway-v6": "",
    "api-cors-header": "api_cors_header", "containerd-namespace": "namespace", "shutdown-timeout": "shutdown_timeout",
    "init-path": "",
}
# what berthd always does: the values that ask for it
_ALWAYS = {"storage-driver": ("overlay2", "overlay"), "iptables": (True,),
           "ip-forward": (True,), "ip-masq": (True,), "features": ({"buildkit": False}, {}),
           "experimental": (False,), "selinux-enabled": (False,)}
# dockerd 20.10's other directives (those it knows: log-format, for one, is newer): refused by name
_DOCKERD = frozenset("""
allow-nondistributable-artifacts authorization-plugins bridge builder
cluster-advertise cluster-store cluster-store-opts containerd
cpu-rt-period cpu-rt-runtime cri-containerd default-gateway default-gateway-v6
init-path ip6tables
metrics-addr network-control-plane-mtu
node-generic-resources oom-score-adjust raw-logs
swarm-default-advertise-addr userland-proxy-path
""".split()) | frozenset(_HONOURED)


def _default_subnet(path: str, key: str, iface: Any) -> str:
    """The default network's subnet from its bridge's address (bip's, an existing bridge's): the
    address must be the subnet's first, berthd's gateway."""
    net = iface.network
    if net.prefixlen > 30 or iface.ip != next(net.hosts()):
        raise _err(path, f"{key}: berthd's default bridge has its subnet's first address ({next(net.hosts())}"
                   f"/{net.prefixlen} for {net}) and room for containers")
    return str(net)


def _err(path: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"unable to configure berthd with file {path}: {why}")


def _kind(v: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _strings(path: str, key: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _err(path, f"{key}: must be a list of strings, not {_kind(v)}")
    return list(v)


def _string(path: str, key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _err(path, f"{key}: must be a string, not {_kind(v)}")
    return v


def _int(path: str, key: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _err(path, f"{key}: must be a number, not {_kind(v)}")
    return v


def _bool(path: str, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _err(path, f"{key}: must be true or false, not {_kind(v)}")
    return v


def read(path: str) -> dict[str, Any]:
    """The file's directives (dockerd's words for what is not a JSON object)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"unable to configure berthd with file {path}: open {path}: no such file or "
                              "directory") from None
    except OSError as e:
        raise _err(path, (e.strerror or str(e)).lower()) from None
    if not raw.strip():
        return {}  # (dockerd takes an empty file as no directive)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _err(path, f"invalid JSON: {getattr(e, 'msg', str(e))}") from None
    if not isinstance(data, dict):
        raise _err(path, f"must be a JSON object, not {_kind(data)}")
    return data


def apply(cfg: Config, path: str, flags: dict[str, Any]) -> Config:
    """Set cfg's keys from the daemon.json at path. flags: the command line's values by dest
    (those not given: None), refused when a directive sets the same (dockerd's conflict)."""
    data = read(path)
    unknown = [k for k in data if k not in _DOCKERD]
    if unknown:
        raise _err(path, "the following directives don't match any configuration option: " + ", ".join(unknown))
    both = []
    for k, v in data.items():
        dest = _HONOURED.get(k, "")
        if dest and flags.get(dest) is not None:
            mine = flags[dest]

            def go(x: Any) -> str:  # as Go's %v prints it
                return "[" + " ".join(map(go, x)) + "]" if isinstance(x, list) else str(x).lower() \
                    if isinstance(x, bool) else str(x)
            show, theirs = go(mine), go(v)
            both.append(f"{k}: (from flag: {show}, from file: {theirs})")
    if both:
        raise _err(path, "the following directives are specified both as a flag and in the configuration file: "
                   + ", ".join(sorted(both)))  # (dockerd's order)
    unsupported = [k for k in data if k not in _HONOURED]
    if unsupported:
        raise _err(path, "berthd does not support the directives " + ", ".join(unsupported))
    if "tls" in data:  # berthd serves TLS when it has a certificate: tls must say the same
        if _bool(path, "tls", data["tls"]) != bool(data.get("tlscert") or data.get("tlsverify") or flags.get("tlscert")):
            raise _err(path, "tls: berthd serves TLS exactly when it has a certificate (tlscert and tlskey): "
                       "name them for true, none for false")
    if data.get("bridge") and "bip" in data:  # dockerd's words
        raise InvalidArgument("failed to start daemon: You specified -b & --bip, mutually exclusive options. "
                              "Please specify only one")
    if data.get("ipv6") is True:  # the default network's IPv6 subnet (without ipv6, as dockerd, none)
        if not isinstance(data.get("fixed-cidr-v6"), str):
            raise _err(path, "ipv6: berthd's default network takes its IPv6 subnet from fixed-cidr-v6")
        cfg.bridge_subnet6 = data["fixed-cidr-v6"]
    for k, v in data.items():
        if k in _ALWAYS:
            if v not in _ALWAYS[k] or type(v) is not type(_ALWAYS[k][0]):
                want = " or ".join(json.dumps(x) for x in _ALWAYS[k])
                raise _err(path, f"{k}: berthd supports only {want} (what it always does)")
            continue
        _set(cfg, path, k, v)
    return cfg


# the directives that set one of berthd's keys as they are: directive -> (key, its check)
_PLAIN = {
    "registry-mirrors": ("registry_mirrors", _strings), "insecure-registries": ("insecure_registries", _strings),
    "dns": ("dns", _strings), "hosts": ("hosts", _strings), "dns-search": ("dns_search", _strings),
    "labels": ("labels", _strings), "dns-opts": ("dns_options", _strings),
    "log-driver": ("log_driver", _string), "userns-remap": ("userns_remap", _string),
    "default-runtime": ("default_runtime", _string), "data-root": ("root", _string), "graph": ("root", _string),
    "exec-root": ("state", _string), "group": ("group", _string), "api-cors-header": ("api_cors_header", _string),
    "containerd-namespace": ("namespace", _string), "pidfile": ("pidfile", _string),
    "seccomp-profile": ("seccomp_profile", _string), "default-shm-size": ("default_shm_size", _string),
    "ip": ("ip", _string), "init": ("init", _bool), "init-path": ("init_path", _string), "no-new-privileges": ("no_new_privileges", _bool),
    "icc": ("icc", _bool), "userland-proxy": ("userland_proxy", _bool), "live-restore": ("live_restore", _bool),
    "shutdown-timeout": ("shutdown_timeout", _int), "fixed-cidr": ("fixed_cidr", _string),
    "cgroup-parent": ("cgroup_parent", _string), "tlsverify": ("tls.verify", _bool),
    "tlscacert": ("tls.cacert", _string), "tlscert": ("tls.cert", _string), "tlskey": ("tls.key", _string),
}


def _set(cfg: Config, path: str, k: str, v: Any) -> None:
    from berth.daemon.config import Runtime
    if k in _PLAIN:
        key, check = _PLAIN[k]
        target, _, attr = key.rpartition(".")
        setattr(getattr(cfg, target) if target else cfg, attr, check(path, k, v))
    elif k in ("default-ipc-mode", "default-cgroupns-mode"):
        value = _string(path, k, v)
        if k == "default-ipc-mode" and value not in ("private", "shareable"):  # dockerd's words
            raise _err(path, f'configuration validation from file failed: IPC mode "{value}" is not supported as '
                       'default value; use "shareable" or "private"')
        if k == "default-cgroupns-mode" and value not in ("host", "private"):
            raise _err(path, f"configuration validation from file failed: default cgroup namespace mode ({value}) "
                       'is invalid; use "host" or "private"')
        setattr(cfg, k.replace("-", "_"), value)
    elif k == "mtu":
        cfg.mtu = _int(path, k, v)
    elif k == "storage-opts":
        from berth.snapshots.overlay import check_storage_opts
        opts = _strings(path, k, v)
        try:
            check_storage_opts(opts)
        except InvalidArgument as e:  # dockerd's words
            raise InvalidArgument(f"failed to start daemon: error initializing graphdriver: {e.message}") from None
        cfg.storage_opts = opts
    elif k in ("max-concurrent-downloads", "max-concurrent-uploads", "max-download-attempts"):
        n = _int(path, k, v)
        if n < 0 or (n == 0 and k == "max-download-attempts"):  # dockerd's words (0 concurrent: its default)
            raise _err(path, f"configuration validation from file failed: invalid {k.replace('-', ' ')}: {n}")
        setattr(cfg, k.replace("-", "_"), n)
    elif k == "bip":
        import ipaddress
        try:
            iface = ipaddress.IPv4Interface(_string(path, k, v))
        except ValueError as e:
            raise _err(path, f"{k}: {e}") from None
        cfg.bridge_subnet = _default_subnet(path, k, iface)
    elif k == "bridge":
        name = _string(path, k, v)
        if name == "none":  # no default network
            cfg.bridge = name
        elif name:
            import os
            if not os.path.exists(f"/sys/class/net/{name}") or "/" in name or name in (".", ".."):
                raise InvalidArgument('failed to start daemon: Error initializing network controller: Error creating '
                                      f'default "bridge" network: bridge device with non default name {name} must be '
                                      'created manually')  # dockerd's words
            if not os.path.isdir(f"/sys/class/net/{name}/bridge"):
                raise _err(path, f"bridge: {name} is not a Linux bridge")
            # its address is the default network's gateway, its subnet the network's (dockerd's);
            # one without an address gets the gateway of bridge_subnet
            from berth.linux.hostnet import ipv4_interface
            iface = ipv4_interface(name)
            if iface is not None:
                cfg.bridge_subnet = _default_subnet(path, k, iface)
            cfg.bridge = name
    elif k in ("default-gateway", "default-gateway-v6"):
        import ipaddress
        gw = _string(path, k, v)
        try:
            ip = (ipaddress.IPv4Address if k == "default-gateway" else ipaddress.IPv6Address)(gw)
        except ValueError:
            raise _err(path, f"invalid IP address: {gw}") from None  # dockerd's words
        setattr(cfg, "default_gateway" if k == "default-gateway" else "default_gateway6", str(ip))
    elif k == "ipv6":
        _bool(path, k, v)  # (set with fixed-cidr-v6 in apply)
    elif k == "fixed-cidr-v6":
        _string(path, k, v)
    elif k == "default-ulimits":
        # {"nofile": {"Name": "nofile", "Hard": 2048, "Soft": 1024}} (go-units' Ulimit)
        if not isinstance(v, dict):
            raise _err(path, f"{k}: must be an object, not {_kind(v)}")
        out = []
        for name, u in v.items():
            if not isinstance(u, dict) or not isinstance(u.get("Soft"), int) or not isinstance(u.get("Hard"), int):
                raise _err(path, f'{k}.{name}: must be {{"Name": "{name}", "Soft": N, "Hard": N}}')
            out.append(f"{u.get('Name') or name}={u['Soft']}:{u['Hard']}")
        cfg.default_ulimits = out
    elif k == "log-opts":
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise _err(path, f"{k}: must be an object of strings")
        cfg.log_opts = dict(v)
    elif k == "log-level":
        level = _string(path, k, v)
        levels = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error",
                  "fatal": "error", "panic": "error"}
        if level not in levels:
            raise InvalidArgument(f"unable to parse logging level: {level}")  # dockerd's
        cfg.log_level = levels[level]
    elif k == "debug":
        if _bool(path, k, v):
            cfg.log_level = "debug"
    elif k == "runtimes":
        if not isinstance(v, dict):
            raise _err(path, f"{k}: must be an object, not {_kind(v)}")
        for name, rt in v.items():
            if not isinstance(rt, dict) or not isinstance(rt.get("path"), str) or not rt["path"]:
                raise _err(path, f"{k}.{name}: needs a path")
            extra = set(rt) - {"path", "runtimeArgs"}
            if extra:
                raise _err(path, f"{k}.{name}: berthd does not support {', '.join(sorted(extra))}")
            cfg.runtimes[name] = Runtime(rt["path"], _strings(path, f"{k}.{name}.runtimeArgs",
                                                              rt.get("runtimeArgs") or []))
    elif k == "exec-opts":
        for opt in _strings(path, k, v):
            key, sep, val = opt.partition("=")
            if not sep or key.strip().lower() != "native.cgroupdriver":
                raise _err(path, f"{k}: berthd supports only native.cgroupdriver=cgroupfs|systemd, not {opt!r}")
            val = val.strip()
            if val not in ("cgroupfs", "systemd"):
                raise InvalidArgument(f"native.cgroupdriver option {val} not supported")  # dockerd's
            cfg.cgroup_driver = val
            cfg.systemd_cgroup = val == "systemd"
    elif k == "tls":
        pass  # (checked with the certificate above)
    elif k == "default-address-pools":
        pools = v if isinstance(v, list) else None
        if not pools or len(pools) != 1 or not isinstance(pools[0], dict) or \
                not isinstance(pools[0].get("base"), str) or pools[0].get("size", 24) != 24:
            raise _err(path, f"{k}: berthd takes one pool of /24s: [{{\"base\": \"10.90.0.0/16\", \"size\": 24}}]")
        cfg.address_pool = pools[0]["base"]
