"""CRI configurations -> the container configuration the services take (the Docker API's create
body: Config fields at the top, HostConfig), and back again for status answers."""

from __future__ import annotations

import base64
import os
import re
from typing import TYPE_CHECKING

from berth.cri import KIND_LABEL
from berth.cri import api_pb2 as pb
from berth.errors import InvalidArgument
from berth.goquote import errno_text, quote as _q

if TYPE_CHECKING:
    from typing import Any, TypeVar

    from google.protobuf.message import Message

    M = TypeVar("M", bound=Message)

POD, CONTAINER, NODE, TARGET = pb.POD, pb.CONTAINER, pb.NODE, pb.TARGET
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")


def encode(msg: Message) -> str:
    return base64.b64encode(msg.SerializeToString()).decode()


def decode(cls: type[M], s: str | None) -> M:
    m = cls()
    if s:
        m.ParseFromString(base64.b64decode(s))
    return m


def reject_nul(msg: Message, path: str = "") -> None:
    """InvalidArgument when a string of the request (at any depth: lists, maps, nested
    configurations) holds a NUL byte: no name, path, argument or variable can carry one to the
    kernel, and the request is refused before anything is made."""
    for f, v in msg.ListFields():
        where = f"{path}.{f.name}" if path else f.name
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry:
                vf = f.message_type.fields_by_name["value"]
                for k, x in v.items():
                    _check_str(k, f"{where}[{k!r}]")
                    if vf.message_type is not None:
                        reject_nul(x, f"{where}[{k!r}]")
                    else:
                        _check_str(x, f"{where}[{k!r}]")
            elif f.is_repeated:
                for i, x in enumerate(v):
                    reject_nul(x, f"{where}[{i}]")
            else:
                reject_nul(v, where)
        elif f.type == f.TYPE_STRING:
            for i, x in enumerate(v) if f.is_repeated else ((None, v),):
                _check_str(x, where if i is None else f"{where}[{i}]")


def _check_str(x: object, where: str) -> None:
    if isinstance(x, str) and "\0" in x:
        raise InvalidArgument(f'invalid value for "{where}": contains a NUL character')  # as the Docker API's


def protocol_name(value: int) -> str:
    """A port mapping's protocol as portmap takes it (tcp, udp, sctp)."""
    try:
        return pb.Protocol.Name(value).lower()
    except ValueError:
        raise InvalidArgument(f"unknown port mapping protocol {value}") from None


def _name(*parts: object) -> str:
    """containerd's CRI naming: <pod>_<namespace>_<uid>_<attempt> for a sandbox,
    <container>_<pod>_<namespace>_<uid>_<attempt> for a container."""
    return _NAME_BAD.sub("-", "_".join(str(p) for p in parts))


def sandbox_name(md: pb.PodSandboxMetadata) -> str:
    if not md.name:
        raise InvalidArgument("sandbox config must include metadata.name")
    return _name(md.name, md.namespace, md.uid, md.attempt)


def container_name(md: pb.ContainerMetadata, sandbox_md: pb.PodSandboxMetadata) -> str:
    if not md.name:
        raise InvalidArgument("container config must include metadata.name")
    return _name(md.name, sandbox_md.name, sandbox_md.namespace, sandbox_md.uid, md.attempt)


def ns_options(sc: pb.LinuxSandboxSecurityContext | pb.LinuxContainerSecurityContext | None) -> pb.NamespaceOption:
    """The namespace options (their user namespace checked: userns_maps)."""
    nso = sc.namespace_options if sc is not None and sc.HasField("namespace_options") else pb.NamespaceOption()
    userns_maps(nso)
    return nso


IDMaps = tuple[list[dict[str, int]], list[dict[str, int]]]


def _oci_maps(field: str, maps: Any) -> list[dict[str, int]]:
    out = []
    for m in maps:
        if m.length == 0 or m.host_id + m.length > 1 << 32 or m.container_id + m.length > 1 << 32:
            raise InvalidArgument(f"invalid {field} mapping: host_id {m.host_id}, container_id {m.container_id}, "
                                  f"length {m.length}")
        out.append({"containerID": m.container_id, "hostID": m.host_id, "size": m.length})
    return out


def userns_maps(nso: pb.NamespaceOption) -> IDMaps | None:
    """The (uid, gid) mappings of the pod's user namespace (userns_options in POD mode, a
    kubelet's hostUsers: false), or None: the host's (NODE, or no options). A pod's user namespace
    is the only kind (CONTAINER and TARGET refused, as containerd's); it needs its mappings, and
    the node's network, PID and IPC namespaces are not for it (a kubelet never asks them together)."""
    if not nso.HasField("userns_options") or nso.userns_options.mode == NODE:
        return None
    u = nso.userns_options
    if u.mode != POD:
        mode = pb.NamespaceMode.Name(u.mode) if u.mode in pb.NamespaceMode.values() else str(u.mode)
        raise InvalidArgument(f"unsupported user namespace mode: {mode} (a pod's, POD, or the node's, NODE)")
    if not u.uids or not u.gids:
        raise InvalidArgument("user namespace mode POD needs uid and gid mappings (userns_options uids and gids)")
    for what, mode in (("network", nso.network), ("pid", nso.pid), ("ipc", nso.ipc)):
        if mode == NODE:
            raise InvalidArgument(f"a user namespace cannot go with the node's {what} namespace")
    return _oci_maps("uid", u.uids), _oci_maps("gid", u.gids)


def mount_maps(m: pb.Mount) -> IDMaps | None:
    """A CRI mount's id mappings (a kubelet's, for a pod with a user namespace: the pod's), as the
    OCI mount's uidMappings and gidMappings of an idmap mount; None when it has none."""
    if not m.uidMappings and not m.gidMappings:
        return None
    if not m.uidMappings or not m.gidMappings:
        raise InvalidArgument(f"mount {m.container_path}: an id-mapped mount needs uid and gid mappings")
    return _oci_maps("uid", m.uidMappings), _oci_maps("gid", m.gidMappings)


def _unreported_features(sc: pb.LinuxSandboxSecurityContext | pb.LinuxContainerSecurityContext) -> None:
    """What Status's runtime features say berthd does not do, refused where asked (a kubelet asks
    only where they are reported; another client would get a container without them):
    supplemental_groups_policy Strict (berthd merges the image's groups, as docker), a writable
    cgroup mount."""
    if sc.supplemental_groups_policy == pb.Strict:
        raise InvalidArgument("supplemental_groups_policy Strict is not supported (the image's groups of the user "
                              "are added, Merge; Status reports supplemental_groups_policy false)")
    if getattr(sc, "cgroup_mount_mode", 0) == pb.CGROUP_MOUNT_MODE_WRITABLE:
        raise InvalidArgument("cgroup_mount_mode WRITABLE is not supported (the cgroup mount is read-only; Status "
                              "reports cgroup_mount_mode false)")


def _seccomp(sc: pb.LinuxSandboxSecurityContext | pb.LinuxContainerSecurityContext, opts: list[str],
             sandbox: bool = False) -> None:
    """seccomp RuntimeDefault / Unconfined / Localhost (and the deprecated path strings); a
    profile that cannot be read or decoded is refused in containerd's words (a pod's, a container's)."""
    if sc.privileged:
        return
    prof = sc.seccomp if sc.HasField("seccomp") else None
    if prof is not None:
        kind = prof.profile_type
        if kind == pb.SecurityProfile.Unconfined:
            opts.append("seccomp=unconfined")
        elif kind == pb.SecurityProfile.Localhost:
            _check_seccomp_file(prof.localhost_ref)
            opts.append("seccomp=" + prof.localhost_ref)
        return
    path = sc.seccomp_profile_path
    if path in ("", "unconfined"):
        # the CRI's default for an unset profile is unconfined (the kubelet asks for RuntimeDefault)
        opts.append("seccomp=unconfined")
    elif path in ("runtime/default", "docker/default"):
        pass
    elif path.startswith("localhost/"):
        _check_seccomp_file(path[len("localhost/"):])
        opts.append("seccomp=" + path[len("localhost/"):])
    else:
        where = "failed to generate sanbdox container spec options" if sandbox else "failed to get container spec opts"
        raise Refused(f"{where}: failed to generate seccomp spec opts: invalid profile {_q(path)}")  # (containerd's typo)


def _check_seccomp_file(path: str) -> None:
    """containerd's loading of a Localhost profile (WithSeccompProfile), its words."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Refused(f"failed to create containerd container: cannot load seccomp profile {_q(path)}: "
                      f"open {path}: {errno_text(e)}") from None
    import json
    try:
        json.loads(data)
    except ValueError as e:
        raise Refused(f"failed to create containerd container: decoding seccomp profile failed {_q(path)}: "
                      f"{e}") from None


def _apparmor(sc: pb.LinuxSandboxSecurityContext | pb.LinuxContainerSecurityContext) -> None:
    """berth has no AppArmor: as containerd's CRI on a host without it, any profile but
    unconfined is refused (the default too: a kubelet asks for one only where the node has it)."""
    prof = sc.apparmor if sc.HasField("apparmor") else None
    if prof is not None:
        confined = prof.profile_type != pb.SecurityProfile.Unconfined
    else:
        path = getattr(sc, "apparmor_profile", "")
        confined = path not in ("", "unconfined")
    if confined:
        raise Refused("failed to get container spec opts: failed to generate apparmor spec opts: apparmor is "
                      "not supported")


def _user(sc: pb.LinuxSandboxSecurityContext | pb.LinuxContainerSecurityContext,
          user_field: str = "run_as_user", sandbox: bool = False) -> str:
    """The process's user ("uid[:gid]", "name[:gid]"). A group without a user is refused as
    containerd refuses it (its sandbox's words misspelt as they are)."""
    user = ""
    if getattr(sc, "run_as_username", ""):
        user = sc.run_as_username  # type: ignore[union-attr]  # (getattr: the sandbox context has none)
    elif sc.HasField(user_field):
        user = str(_id(user_field, getattr(sc, user_field).value))
    if sc.HasField("run_as_group"):
        group = _id("run_as_group", sc.run_as_group.value)
        if not user:
            what = "failed to generate sanbdox container spec options" if sandbox else \
                "failed to get container spec opts"
            raise Refused(f"{what}: failed to generate user string: user group {_q(str(group))} is specified "
                          "without user")
        user += f":{group}"
    return user


def _capabilities(c: pb.Capability) -> list[str]:
    """containerd's capability set for a container (its CRI's WithCapabilities): "ALL" (in any
    case) among the adds gives the host's set, among the drops none; then each other add joins
    and each other drop goes, every name as "CAP_" + its upper case: a name given with its
    prefix ("CAP_NET_ADMIN") is "CAP_CAP_NET_ADMIN", a capability no kernel has, which the
    runtime ignores, as runc does (with a warning)."""
    from berth.services.ocispec import DEFAULT_CAPS, _all_caps
    if c.add_ambient_capabilities:  # (the ambient set is not given to a container's process: never dropped silently)
        raise InvalidArgument(f"ambient capabilities are not supported by berth: {c.add_ambient_capabilities[0]}")
    caps = list(DEFAULT_CAPS)
    if any(a.upper() == "ALL" for a in c.add_capabilities):
        caps = _all_caps()
    if any(d.upper() == "ALL" for d in c.drop_capabilities):
        caps = []
    for a in c.add_capabilities:
        if a.upper() != "ALL" and "CAP_" + a.upper() not in caps:
            caps.append("CAP_" + a.upper())
    drops = {"CAP_" + d.upper() for d in c.drop_capabilities}
    return [n for n in caps if n not in drops]


def _id(field: str, value: int) -> int:
    """A user or group id runc takes, 0 to 2^31-1 (refused here, before anything is made, where
    containerd's CreateContainer fails too: a pod's sandbox would otherwise fail to start after
    RunPodSandbox answered)."""
    from berth.runtime.spec import MAX_ID
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"{field} {value} is not a valid id (0 to {MAX_ID})")
    return value


def _resources(r: pb.LinuxContainerResources | None, hc: dict[str, Any]) -> None:
    if r is None:
        return
    if r.memory_limit_in_bytes:
        hc["Memory"] = r.memory_limit_in_bytes
        from berth.services.runopts import swap_accounting
        if not r.memory_swap_limit_in_bytes and swap_accounting():
            hc["MemorySwap"] = r.memory_limit_in_bytes  # no swap beyond the limit, as containerd's
    if r.memory_swap_limit_in_bytes:
        hc["MemorySwap"] = r.memory_swap_limit_in_bytes
    if r.cpu_shares:
        hc["CpuShares"] = r.cpu_shares
    if r.cpu_period:
        hc["CpuPeriod"] = r.cpu_period
    if r.cpu_quota:
        hc["CpuQuota"] = r.cpu_quota
    if r.cpuset_cpus:
        hc["CpusetCpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        hc["CpusetMems"] = r.cpuset_mems
    if r.oom_score_adj:
        hc["OomScoreAdj"] = oom_score_adj(r.oom_score_adj)
    pages = [{"pageSize": h.page_size, "limit": h.limit} for h in r.hugepage_limits
             if _hugepages_present(h.page_size)]
    if pages:
        hc["HugepageLimits"] = pages
    if r.unified:
        hc["Unified"] = dict(r.unified)


def oom_score_adj(v: int) -> int:
    """Within what the host allows: below berthd's own score only with CAP_SYS_RESOURCE (berthd in
    a container may lack it), as containerd's restrict_oom_score_adj does."""
    v = max(-1000, min(1000, int(v)))
    try:
        with open("/proc/self/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
        with open("/proc/self/oom_score_adj") as f:
            own = int(f.read())
    except (OSError, ValueError, StopIteration):
        return v
    if eff >> 24 & 1:  # CAP_SYS_RESOURCE
        return v
    return max(v, own)


def _hugepages_present(size: str) -> bool:
    """Hugepage limits apply only to page sizes the host has (hugetlb.<size>.* files)."""
    for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/hugetlb"):
        if os.path.exists(os.path.join(d, f"hugetlb.{size}.max")) or \
                os.path.exists(os.path.join(d, f"hugetlb.{size}.limit_in_bytes")):
            return True
    return False


# The CRI's own metadata of a sandbox or container (its config as the kubelet sent it, its pod,
# runtime handler, netns key, log path): an extension of the container record, under the keys
# containerd's CRI plugin uses for the same thing.
SANDBOX_EXT = "io.cri-containerd.sandbox.metadata"
CONTAINER_EXT = "io.cri-containerd.container.metadata"


def metadata_of(rec: Any) -> dict[str, Any]:
    """The CRI's metadata of a record ({} for a record the CRI did not make). Records made before
    it moved to the extensions kept it under the "_cri" key of their stored configuration."""
    ext = rec.extensions or {}
    meta = ext.get(SANDBOX_EXT) or ext.get(CONTAINER_EXT)
    if meta is None:
        meta = (rec.spec_json() or {}).get("_cri") or {}
    return meta


# containerd's default masked paths, which its pause has (berth's docker defaults add two)
PAUSE_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
_NOT_FOR_PAUSE = ("/sys/fs/cgroup", "/etc/hostname", "/etc/hosts")


def pause_spec(spec: dict[str, Any]) -> None:
    """The pause container's OCI spec as containerd's: no cgroup tree, /etc/hostname or
    /etc/hosts of its own (the pod's containers have theirs), the image's environment alone.
    Fewer mounts: less work in its init on every pod's start."""
    spec["mounts"] = [m for m in spec.get("mounts") or [] if m.get("destination") not in _NOT_FOR_PAUSE]
    process = spec.get("process") or {}
    process["env"] = [e for e in process.get("env") or [] if not e.startswith("HOSTNAME=")]
    # containerd's -998 for the pause, within what the host allows (restrict_oom_score_adj): set
    # even where that is 0 (the docker side's 0 means none given)
    process.setdefault("oomScoreAdj", oom_score_adj(-998))


def resolv_conf(dns: pb.DNSConfig | None) -> str | None:
    """The pod's /etc/resolv.conf as containerd writes it from the DNS config (search, nameservers,
    options; nothing merged from the host's), or None: the host's, as it is."""
    out = []
    if dns is not None and dns.searches:
        out.append("search " + " ".join(dns.searches))
    if dns is not None and dns.servers:
        out += ["nameserver " + s for s in dns.servers]
    if dns is not None and dns.options:
        out.append("options " + " ".join(dns.options))
    return "\n".join(out) + "\n" if out else None


# the OCI annotations containerd's CRI gives a pod's specs (k8s.io/cri-api's annotations,
# containerd/pkg/cri/annotations): runtimes such as runsc and kata group a pod's containers by them
ANN = "io.kubernetes.cri."


def pod_annotations(sandbox_id: str, config: pb.PodSandboxConfig) -> dict[str, str]:
    md = config.metadata
    return {ANN + "sandbox-id": sandbox_id, ANN + "sandbox-name": md.name, ANN + "sandbox-namespace": md.namespace,
            ANN + "sandbox-uid": md.uid}


def sandbox_annotations(sandbox_id: str, config: pb.PodSandboxConfig) -> dict[str, str]:
    return dict(pod_annotations(sandbox_id, config), **{
        ANN + "container-type": "sandbox", ANN + "sandbox-log-directory": config.log_directory})


def container_annotations(sandbox_id: str, sandbox_config: pb.PodSandboxConfig, config: pb.ContainerConfig,
                          image_name: str) -> dict[str, str]:
    return dict(pod_annotations(sandbox_id, sandbox_config), **{
        ANN + "container-type": "container", ANN + "container-name": config.metadata.name,
        ANN + "image-name": image_name})


def cni_result_as_containerd(result: dict[str, Any] | None, netns_path: str) -> dict[str, Any] | None:
    """A pod's CNI result (the spec's JSON) in the shape containerd's verbose PodSandboxStatus
    shows it (go-cni's Result): interfaces by name with their addresses without prefix length, the
    loopback's (containerd runs the loopback plugin; berth brings lo up itself), one DNS entry per
    network, the routes."""
    if result is None:
        return None
    interfaces: dict[str, Any] = {}
    ifaces = result.get("interfaces") or []
    for i, iface in enumerate(ifaces):
        ips = [{"IP": (ip.get("address") or "").split("/")[0], "Gateway": ip.get("gateway") or ""}
               for ip in result.get("ips") or [] if ip.get("interface") == i]
        interfaces[iface.get("name", "")] = {"IPConfigs": ips or None, "Mac": iface.get("mac", ""),
                                             "Sandbox": iface.get("sandbox", "")}
    lo = [{"IP": "127.0.0.1", "Gateway": ""}]
    if os.path.exists("/proc/net/if_inet6"):
        lo.append({"IP": "::1", "Gateway": ""})
    interfaces["lo"] = {"IPConfigs": lo, "Mac": "00:00:00:00:00:00", "Sandbox": netns_path}
    return {"Interfaces": dict(sorted(interfaces.items())), "DNS": [{}, result.get("dns") or {}],
            "Routes": result.get("routes") or None}


def go_json_text(v: Any) -> str:
    """v as Go's encoding/json writes a decoded document (json.Marshal of a map): compact, keys
    sorted, <, > and & escaped."""
    from berth.goquote import marshal
    return marshal(v, sort_keys=True)


# runtime-spec's Go fields that are written even when empty (no omitempty): the rest are left out
_SPEC_KEPT = frozenset(("ociVersion", "cwd", "path", "destination", "type", "defaultAction", "action", "names",
                        "allow", "user", "uid", "gid"))


def spec_as_go(v: Any, key: str = "") -> Any:
    """An OCI runtime spec as containerd's verbose info shows it (Go's encoding/json of
    runtime-spec's types): false, empty strings, lists and objects of omitempty fields left out
    (a namespace's empty path too); numbers stay (the optional ones are pointers in Go)."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            x = spec_as_go(x, k)
            if x is None or (k not in _SPEC_KEPT and (x is False or x == "" or x == [] or x == {})):
                continue
            out[k] = x
        if key == "namespaces" and out.get("path") == "":  # a namespace's path is omitempty
            del out["path"]
        return out
    if isinstance(v, list):
        return [spec_as_go(x, key) for x in v]
    return v


_LOOPBACK_SOURCE = '{\n"cniVersion": "0.3.1",\n"name": "cni-loopback",\n"plugins": [{\n  "type": "loopback"\n}]\n}'


def _cni_plugin_as_containerd(plugin: dict[str, Any]) -> dict[str, Any]:
    """One plugin of a conflist as go-cni shows it: the CNI's NetConf (its own fields only, in
    their order) and the plugin's JSON as libcni keeps it."""
    net: dict[str, Any] = {}
    for key in ("cniVersion", "name", "type"):
        if isinstance(plugin.get(key), str) and plugin[key]:
            net[key] = plugin[key]
    caps = plugin.get("capabilities")
    if isinstance(caps, dict) and caps:
        net["capabilities"] = {k: bool(v) for k, v in sorted(caps.items())}
    ipam = plugin.get("ipam") if isinstance(plugin.get("ipam"), dict) else {}
    net["ipam"] = {"type": ipam["type"]} if isinstance(ipam.get("type"), str) and ipam["type"] else {}
    dns_in = plugin.get("dns") if isinstance(plugin.get("dns"), dict) else {}
    net["dns"] = {k: dns_in[k] for k in ("nameservers", "domain", "search", "options") if dns_in.get(k)}
    if isinstance(plugin.get("prevResult"), dict) and plugin["prevResult"]:
        net["prevResult"] = plugin["prevResult"]
    return {"Network": net, "Source": go_json_text(plugin)}


def cni_config_as_containerd(conf_dir: str, bin_dirs: list[str], loaded: tuple[dict[str, Any], str] | None
                             ) -> dict[str, Any]:
    """`crictl info`'s cniconfig as containerd 1.6 shows it (go-cni's ConfigResult): the plugin
    and conf dirs, the loopback network containerd always has, then the node's conflist (its
    plugins, and the file's text as Source) when one is loaded."""
    lo = {"Config": {"Name": "cni-loopback", "CNIVersion": "0.3.1",
                     "Plugins": [{"Network": {"type": "loopback", "ipam": {}, "dns": {}},
                                  "Source": '{"type":"loopback"}'}],
                     "Source": _LOOPBACK_SOURCE}, "IFName": "lo"}
    networks = [lo]
    if loaded is not None:
        doc, text = loaded
        networks.append({"Config": {"Name": doc.get("name") or "", "CNIVersion": doc.get("cniVersion") or "",
                                    "Plugins": [_cni_plugin_as_containerd(p) for p in doc.get("plugins") or []
                                                if isinstance(p, dict)],
                                    "Source": text}, "IFName": "eth0"})
    return {"PluginDirs": list(bin_dirs), "PluginConfDir": conf_dir, "PluginMaxConfNum": 1, "Prefix": "eth",
            "Networks": networks}


def sandbox_body(config: pb.PodSandboxConfig, image: str, handler: str, netns_path: str | None,
                 runtime: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """RunPodSandbox's config -> the pause container's configuration, and the CRI's metadata of
    the sandbox (its record's extension SANDBOX_EXT)."""
    linux = config.linux if config.HasField("linux") else pb.LinuxPodSandboxConfig()
    sc = linux.security_context if linux.HasField("security_context") else pb.LinuxSandboxSecurityContext()
    nso = ns_options(sc)
    _unreported_features(sc)
    host_net = nso.network == NODE
    # as containerd's pause: a read-only root, no new privileges and the host's cgroup namespace
    # whatever the pod's security context, and not privileged itself in a privileged pod (only
    # without seccomp): its containers may be
    hc = {"NetworkMode": "host" if host_net else f"ns:{netns_path}", "Runtime": runtime,
          "OomScoreAdj": oom_score_adj(-998), "Privileged": False, "ReadonlyRootfs": True,
          "CgroupnsMode": "host",
          "IpcMode": "shareable"}  # the pod's containers join its IPC namespace and /dev/shm
    hc["MaskedPaths"] = list(PAUSE_MASKED)
    hc["CpuShares"] = 2  # containerd's DefaultSandboxCPUshares: the pause needs next to nothing
    if nso.ipc == NODE:
        hc["IpcMode"] = "host"
    if nso.pid == NODE:
        hc["PidMode"] = "host"
    if host_net:
        hc["UTSMode"] = "host"
    if config.HasField("dns_config"):
        dns = config.dns_config
        if dns.servers:
            hc["Dns"] = list(dns.servers)
        if dns.searches:
            hc["DnsSearch"] = list(dns.searches)
        if dns.options:
            hc["DnsOptions"] = list(dns.options)
    if linux.cgroup_parent:
        hc["CgroupParent"] = linux.cgroup_parent
    if linux.sysctls:
        hc["Sysctls"] = dict(linux.sysctls)
    if sc.supplemental_groups:
        hc["GroupAdd"] = [str(_id("supplemental_groups", g)) for g in sc.supplemental_groups]
    opts: list[str] = ["no-new-privileges"]
    if sc.privileged:
        opts.append("seccomp=unconfined")
    else:
        _seccomp(sc, opts, sandbox=True)
    hc["SecurityOpt"] = opts  # (no AppArmor profile for the pause: containerd 1.6 applies none)
    labels = dict(config.labels)
    labels[KIND_LABEL] = "sandbox"
    # on the host's network the pod's UTS namespace is the host's: the name is its HOSTNAME only
    body = {"Image": image, "Labels": labels, "HostConfig": hc, "User": _user(sc, sandbox=True),
            "Hostname": pod_hostname(config)}
    return body, {"kind": "sandbox", "config": encode(config), "handler": handler}


def pod_hostname(config: pb.PodSandboxConfig) -> str:
    """The pod's hostname: its config's, else the node's (containerd's), the pod on the host's
    network or not: its containers' HOSTNAME too."""
    if config.hostname:
        return config.hostname
    import socket
    return socket.gethostname()


class Refused(Exception):
    """What containerd's CRI refuses at CreateContainer, answered UNKNOWN in its words."""


class SpecRefused(Refused):
    """What containerd's spec generation refuses (CreateContainer answers UNKNOWN `failed to
    generate container "<id>" spec: failed to generate spec: <this>`)."""


def _host_path(path: str) -> str:
    """A mount's host path as containerd's WithMounts takes it: made (0755) when missing, then
    its symlinks followed."""
    try:
        os.stat(path)
    except FileNotFoundError:
        try:
            os.makedirs(path, 0o755, exist_ok=True)
        except OSError as e:
            raise SpecRefused(f"failed to mkdir {_q(path)}: mkdir {e.filename or path}: {errno_text(e)}") from None
    except OSError as e:
        raise SpecRefused(f"failed to stat {_q(path)}: stat {path}: {errno_text(e)}") from None
    return os.path.realpath(path)


def _check_device(path: str) -> None:
    """containerd's WithDevices: the host path (its symlink followed) is a device node or a
    directory of them, else its spec generation fails."""
    import stat
    try:
        os.lstat(path)
        mode = os.stat(path).st_mode
    except OSError as e:
        raise SpecRefused(f"lstat {path}: {errno_text(e)}") from None
    if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)):
        raise SpecRefused("not a device node")


def _check_propagation(src: str, prop: str) -> None:
    """containerd's ensureShared / ensureSharedOrSlave for a bidirectional / host-to-container mount."""
    from berth.linux.mountinfo import shared, shared_or_slave, source_mount
    mp, optional = source_mount(src)
    if prop == "rshared" and not shared(optional):
        raise SpecRefused(f"path {_q(src)} is mounted on {_q(mp)} but it is not a shared mount")
    if prop == "rslave" and not shared_or_slave(optional):
        raise SpecRefused(f"path {_q(src)} is mounted on {_q(mp)} but it is not a shared or slave mount")


def container_body(sandbox_id: str, sandbox_config: pb.PodSandboxConfig, config: pb.ContainerConfig, image_id: str,
                   log_path: str, runtime: str, sandbox_host_net: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """CreateContainer's config -> the container's configuration, in the pod of sandbox_id, and
    the CRI's metadata of the container (its record's extension CONTAINER_EXT)."""
    linux = config.linux if config.HasField("linux") else pb.LinuxContainerConfig()
    sc = linux.security_context if linux.HasField("security_context") else pb.LinuxContainerSecurityContext()
    nso = ns_options(sc)
    _unreported_features(sc)
    hc = {"NetworkMode": f"container:{sandbox_id}", "Runtime": runtime, "Privileged": sc.privileged,
          "ReadonlyRootfs": sc.readonly_rootfs, "IpcMode": f"container:{sandbox_id}",
          "UTSMode": "host" if sandbox_host_net else f"container:{sandbox_id}"}
    if nso.ipc == NODE:
        hc["IpcMode"] = "host"
    if nso.pid == NODE:
        hc["PidMode"] = "host"
    elif nso.pid == POD:
        hc["PidMode"] = f"container:{sandbox_id}"
    elif nso.pid == TARGET:
        if not nso.target_id:
            raise InvalidArgument("namespace_options.pid is TARGET but no target_id is given")
        hc["PidMode"] = f"container:{nso.target_id}"
    if sc.privileged:
        sbx = sandbox_config.linux.security_context if sandbox_config.HasField("linux") else None
        if sbx is not None and not sbx.privileged:
            raise InvalidArgument("no privileged container allowed in sandbox")
        hc["CgroupnsMode"] = "host"  # containerd: a privileged container sees the host's cgroups
    if sc.HasField("capabilities") and not sc.privileged:  # (a privileged container has them all)
        # the set containerd makes, given to the services whole: none, then these
        hc["CapDrop"], hc["CapAdd"] = ["ALL"], _capabilities(sc.capabilities)
    opts = []
    if sc.no_new_privs:
        opts.append("no-new-privileges")
    _seccomp(sc, opts)
    _apparmor(sc)
    hc["SecurityOpt"] = opts
    if not sc.privileged:
        # the config's, none when it names none (as containerd's: a kubelet always sends them)
        hc["MaskedPaths"] = list(sc.masked_paths)
        hc["ReadonlyPaths"] = list(sc.readonly_paths)
    if sc.supplemental_groups:
        hc["GroupAdd"] = [str(_id("supplemental_groups", g)) for g in sc.supplemental_groups]
    _resources(linux.resources if linux.HasField("resources") else None, hc)
    slinux = sandbox_config.linux if sandbox_config.HasField("linux") else None
    if slinux is not None and slinux.cgroup_parent:
        hc["CgroupParent"] = slinux.cgroup_parent
    binds = []
    if config.CDI_devices:  # (a kubelet's device plugins and DRA drivers name them; berthd reads no CDI specs)
        raise InvalidArgument(f"CDI devices are not supported by berth: {config.CDI_devices[0].name}")
    for m in config.mounts:
        if m.HasField("image") and m.image.image:
            raise InvalidArgument(f"mount {m.container_path}: image volumes are not supported by berth")
        mount_maps(m)  # (a kubelet sends them for a pod with a user namespace; the spec's mount takes them)
        if not m.container_path:  # (containerd's start then fails in runc)
            raise InvalidArgument(f"mount of {m.host_path or 'nothing'}: container_path is empty")
        if m.host_path and not os.path.isabs(m.host_path):  # (containerd makes it under its working directory)
            raise InvalidArgument(f"mount at {m.container_path}: host_path {m.host_path} is not absolute")
        mode = ["ro" if m.readonly else "rw"]
        # an unknown propagation is private, as containerd's (which warns)
        prop = {pb.PROPAGATION_HOST_TO_CONTAINER: "rslave", pb.PROPAGATION_BIDIRECTIONAL: "rshared"}.get(m.propagation,
                                                                                                          "rprivate")
        mode.append(prop)
        if m.recursive_read_only:  # (a kubelet asks for it where Status says the handler can: CRI-O's words)
            if not m.readonly:
                raise InvalidArgument(f"recursive read-only mount conflicts with read-write mount for hostPath "
                                      f"{_q(m.host_path)}")
            if m.propagation != pb.PROPAGATION_PRIVATE:
                raise InvalidArgument(f"recursive read-only mount requires private propagation for hostPath "
                                      f"{_q(m.host_path)}, got: {pb.MountPropagation.Name(m.propagation)}")
        src = _host_path(m.host_path)
        if prop != "rprivate":
            _check_propagation(src, prop)
        # a relative container path is the root's (runc's)
        dst = os.path.join('/', m.container_path)
        if m.recursive_read_only:
            hc.setdefault("Mounts", []).append({"Type": "bind", "Source": src, "Target": dst, "ReadOnly": True,
                                                "BindOptions": {"Propagation": "rprivate", "ReadOnlyForceRecursive": True}})
            continue
        binds.append(f"{src}:{dst}:{','.join(mode)}")
    if binds:
        hc["Binds"] = binds
    devices = []
    for d in config.devices:
        _check_device(d.host_path)
        devices.append({"PathOnHost": d.host_path, "PathInContainer": d.container_path or d.host_path,
                        "CgroupPermissions": d.permissions or "rwm"})
    if devices:
        hc["Devices"] = devices
    if log_path:
        hc["LogConfig"] = {"Type": "cri", "Config": {"path": log_path}}
    labels = dict(config.labels)
    labels[KIND_LABEL] = "container"
    body = {"Image": image_id, "Labels": labels, "HostConfig": hc,
            "Env": [f"{kv.key}={kv.value}"
                    for kv in config.envs],
            # its HOSTNAME (the image's and the config's envs override it), as containerd's; its
            # UTS namespace is the pod's
            "Hostname": pod_hostname(sandbox_config),
            "Tty": config.tty, "OpenStdin": config.stdin, "StdinOnce": config.stdin_once,
            "User": _user(sc)}
    meta = {"kind": "container", "sandbox": sandbox_id, "config": encode(config), "log_path": log_path}
    if config.command:
        body["Entrypoint"] = list(config.command)
        body["Cmd"] = list(config.args)
    elif config.args:
        body["Cmd"] = list(config.args)
    if config.working_dir:
        body["WorkingDir"] = config.working_dir
    return body, meta


def docker_resources(r: pb.LinuxContainerResources) -> dict[str, Any]:
    """LinuxContainerResources -> HostConfig's resource keys (UpdateContainerResources)."""
    hc: dict[str, Any] = {}
    _resources(r, hc)
    hc.pop("OomScoreAdj", None)
    return hc
