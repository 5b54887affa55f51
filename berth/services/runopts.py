"""docker run's process, namespace and resource options beyond the basics of ocispec.build:
checked at create (docker's messages), applied to the OCI spec at start.

  check(svc, ns, body, image_config) -> (body, warnings)   at create: validate and normalise
  apply(svc, ns, rec, body, oci, rootfs)                    at start: --pid, --ipc, --device,
      --device-cgroup-rule, --sysctl, --shm-size, --cpuset-*, --memory-swap,
      --memory-reservation, --group-add, --oom-score-adj, --domainname
"""

from __future__ import annotations

import os
import re

from berth.errors import FailedPrecondition, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any

    from berth.daemon.config import Config
    from berth.metadata.records import Container
    from berth.services.containers import ContainerService

# none: the output goes nowhere (and `logs` cannot read it); local: kept as json-file's (its own
# defaults: services/containers.py _local_opts)
LOG_DRIVERS_OK = ("", "json-file", "local", "none")
CRI_LOG_DRIVER = "cri"  # the kubelet's log format (shim/crilog.py): for containers of the CRI only
# docker's built-in logging drivers that berth's shim does not write
LOG_DRIVERS_OTHER = ("syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs",
                     "gcplogs", "logentries")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_MIN_MEMORY = 6 * 1024 * 1024


# --- at create ---


def parse_docker_signal(raw: str) -> int:
    """moby's signal.ParseSignal: a number (any but 0) or a name of its map, "SIG" optional, any
    case; InvalidArgument "Invalid signal: X" otherwise."""
    s = str(raw)
    body = s[1:] if s[:1] in "+-" else s
    if body.isascii() and body.isdigit() and -(1 << 63) <= int(s) < (1 << 63):
        if int(s) != 0:
            return int(s)
    else:  # moby's map on Linux has the signal module's names, and RTMIN+1..15, RTMAX-1..14
        from berth.runtime.container import parse_signal
        try:
            return parse_signal(s)
        except InvalidArgument:
            pass
    raise InvalidArgument(f"Invalid signal: {s}")


def _check_shared_network(body: dict[str, Any], hc: dict[str, Any]) -> None:
    """What a container on another's network (container:X; some on the host's) cannot have: what
    that network decides, in dockerd's words and order (its validateNetContainerMode)."""
    mode = str(hc.get("NetworkMode") or "")
    shared = mode.startswith("container:")
    conflict = "conflicting options: "
    if shared and body.get("Hostname"):
        raise InvalidArgument(conflict + "hostname and the network mode")
    if shared and hc.get("Links"):
        raise InvalidArgument(conflict + "container type network can't be used with links. This would result in "
                                         "undefined behavior")
    if shared and hc.get("Dns"):
        raise InvalidArgument(conflict + "dns and the network mode")
    if shared and hc.get("ExtraHosts"):
        raise InvalidArgument(conflict + "custom host-to-IP mapping and the network mode")
    if (shared or mode == "host") and body.get("MacAddress"):
        raise InvalidArgument(conflict + "mac-address and the network mode")
    if shared and (any(hc.get("PortBindings") or {}) or hc.get("PublishAllPorts")):
        raise InvalidArgument(conflict + "port publishing and the container type network mode")
    if shared and body.get("ExposedPorts"):
        raise InvalidArgument(conflict + "port exposing and the container type network mode")


def check_early(body: dict[str, Any], cri: bool = False) -> None:
    """What dockerd refuses before it looks the image up (a 400, not the 404 that has docker's
    CLI pull it): a relative working directory, a StopSignal it does not know, a capability the kernel does not have (not
    the CRI's: containerd passes them on and runc ignores them)."""
    wd = body.get("WorkingDir")
    if wd and not cri and not str(wd).startswith("/"):  # dockerd's translateWorkingDir, its first check
        raise InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    if body.get("StopSignal"):
        parse_docker_signal(body["StopSignal"])
    if cri:
        return
    for e in body.get("Env") or []:  # dockerd's validateContainerConfig: a variable needs a name
        if str(e).split("=", 1)[0] == "":
            raise InvalidArgument(f"invalid environment variable: {e}")
    hc = body.get("HostConfig") or {}
    _check_port_bindings(hc.get("PortBindings") or {})
    _check_shared_network(body, hc)
    # dockerd's checks as it reads the request (its runconfig): the isolation, then the
    # Windows-only QoS limits (IOMaximumIOps, IOMaximumBandwidth), refused on Linux
    iso = hc.get("Isolation") or ""
    if iso not in ("", "default"):
        raise InvalidArgument(f'Invalid isolation: "{iso}" - linux only supports \'default\'')
    for key, what in (("IOMaximumBandwidth", "maximum bandwidth"), ("IOMaximumIOps", "maximum IOPs")):
        if hc.get(key):
            raise InvalidArgument(f"Invalid QoS settings: linux does not support configuration of {what}")
    from berth.linux import caps as capsmod
    known = set(capsmod.NAMES[: capsmod.last_cap() + 1])
    for field in ("CapAdd", "CapDrop"):
        for c in hc.get(field) or []:
            c = str(c).upper()
            if c == "ALL":
                continue
            if not c.startswith("CAP_"):
                c = "CAP_" + c
            if c not in known:
                import json
                raise InvalidArgument(f"invalid {field}: unknown capability: {json.dumps(c)}")

def _check_port_bindings(bindings: dict[str, Any]) -> None:
    """dockerd's validatePortBindings: a container port is a number up to 65535 (its protocol after
    a "/"), a host port one or a range of them (or nothing: any)."""
    from berth.goquote import quote

    def number(p: str) -> bool:
        return p.isascii() and p.isdigit() and int(p) <= 65535

    for key, binds in bindings.items():
        port = str(key).split("/")[0]
        if port and not number(port):
            raise InvalidArgument(f"invalid port specification: {quote(port)}")
        for b in binds or []:
            host = str((b or {}).get("HostPort") or "")
            hp = host.split("/")[0]
            if not hp:
                continue
            lo, dash, hi = hp.partition("-")
            if not number(lo) or dash and (not number(hi) or int(hi) < int(lo)):
                raise InvalidArgument(f"invalid port specification: {quote(host)}")


def check_log_config(driver: str, opts: dict[str, str]) -> None:
    """A json-file or local log config's options as dockerd checks them at create (its words)."""
    opts = dict(opts)
    # dockerd's options of every driver first (logger.ValidateLogOpts): the delivery mode and its
    # buffer (berth's shim writes each piece of output to the log as it comes, a local file: the
    # non-blocking mode's buffer is never needed)
    mode = opts.pop("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidArgument(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts:
        if mode != "non-blocking":
            raise InvalidArgument("logger: max-buffer-size option is only supported with 'mode=non-blocking'")
        buf = opts.pop("max-buffer-size")
        if not re.fullmatch(r"\d+(\.\d+)? ?([kKmMgGtTpP]?[iI]?[bB]?)", str(buf)):
            raise InvalidArgument(f"error parsing option max-buffer-size: invalid size: '{buf}'")
    if driver in ("", "json-file"):
        for k in opts:
            if k not in ("max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"):
                raise InvalidArgument(f"unknown log opt '{k}' for json-file log driver")
    elif driver == "local":
        for k in opts:
            if k not in ("max-file", "max-size", "compress"):
                raise InvalidArgument(f"unknown log opt '{k}' for log driver local")


def check(svc: ContainerService, ns: str, body: dict[str, Any], image_config: dict[str, Any] | None = None,
          cri: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Validate the create body's HostConfig as dockerd does; returns (body, warnings) with
    docker's defaults filled in (IpcMode, ShmSize). `cri`: a container the CRI makes (its log
    driver is "cri", which the Docker API does not know)."""
    hc = dict(body.get("HostConfig") or {})
    warnings: list[str] = []
    _check_platform(body, image_config)
    from berth.services.ocispec import merged_command
    if not any(merged_command(body, (image_config or {}).get("config") or {})):
        raise InvalidArgument("No command specified")  # dockerd's, at create
    _check_restart(hc)
    lc = dict(hc.get("LogConfig") or {})
    if not cri:  # dockerd's mergeAndVerifyLogConfig: the daemon's driver, and its options for it
        cfg = svc.cfg
        if not lc.get("Type"):
            lc["Type"] = cfg.log_driver
        if lc["Type"] == cfg.log_driver and cfg.log_opts:
            lc["Config"] = {**cfg.log_opts, **(lc.get("Config") or {})}
        hc["LogConfig"] = {"Type": lc["Type"], "Config": dict(lc.get("Config") or {})}
    lt = lc.get("Type") or ""
    if lt in ("", "json-file", "local"):
        check_log_config(lt, dict(lc.get("Config") or {}))
    if lt not in LOG_DRIVERS_OK and not (cri and lt == CRI_LOG_DRIVER):
        if lt in LOG_DRIVERS_OTHER:
            raise InvalidArgument(f'logging driver "{lt}" is not supported by berth (only json-file and local)')
        raise InvalidArgument(f'error looking up logging plugin {lt}: plugin "{lt}" not found')
    if hc.get("DeviceRequests"):
        caps = [c for r in hc["DeviceRequests"] for cs in (r.get("Capabilities") or [[]]) for c in cs]
        raise InvalidArgument(f'could not select device driver "{(hc["DeviceRequests"][0].get("Driver") or "")}" '
                              f"with capabilities: [{' '.join('[' + c + ']' for c in caps)}]")
    pid = hc.get("PidMode") or ""
    if pid not in ("", "host") and not (pid.startswith("container:") and pid[10:]):
        raise InvalidArgument(f"invalid PID mode: {pid}")
    if pid.startswith("container:"):
        _exists(svc, ns, pid[10:])
    ipc = hc.get("IpcMode") or ""
    if ipc not in ("", "none", "private", "shareable", "host") and not (ipc.startswith("container:") and ipc[10:]):
        raise InvalidArgument(f"Invalid IPC mode: {ipc}")
    if ipc.startswith("container:"):
        _exists(svc, ns, ipc[10:])
    hc["IpcMode"] = ipc or ("private" if cri else svc.cfg.default_ipc_mode or "private")  # (daemon.json's default-ipc-mode)
    shm = hc.get("ShmSize")
    if shm is not None and int(shm) < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if not shm and ipc in ("", "private", "shareable"):
        from berth.daemon.config import shm_size
        hc["ShmSize"] = 64 * 1024 * 1024 if cri else shm_size(svc.cfg)  # (daemon.json's default-shm-size)
    if not cri and svc.cfg.default_ulimits:  # daemon.json's default-ulimits: those the create names none of
        from berth.opts import parse_ulimit
        have = {u.get("Name") for u in hc.get("Ulimits") or []}
        hc["Ulimits"] = list(hc.get("Ulimits") or []) + [u for u in map(parse_ulimit, svc.cfg.default_ulimits)
                                                         if u["Name"] not in have]
    for rule in hc.get("DeviceCgroupRules") or []:
        if not _CGROUP_RULE.match(rule or ""):
            raise InvalidArgument(f"invalid device cgroup format '{rule}'")
    for d in hc.get("Devices") or []:
        if not (d.get("PathOnHost") or "").startswith("/"):
            raise InvalidArgument(f"{d.get('PathOnHost')} is not an absolute path")
        perms = d.get("CgroupPermissions") or "rwm"
        if not re.fullmatch(r"[rwm]{1,3}", perms):
            raise InvalidArgument(f"invalid device mode: {perms}")
    netmode = (hc.get("NetworkMode") or "default")
    for k, v in (hc.get("Sysctls") or {}).items():
        # which are allowed is the runtime's to say, at the start (runc's validation, as dockerd and
        # containerd pass them on): `runc create failed: sysctl "vm.swappiness" is not in ...`
        if not isinstance(v, str):
            raise InvalidArgument(f"sysctl {k}: the value must be a string")
    if not cri and int(hc.get("Memory") or 0) > 0 and not hc.get("MemorySwap"):
        # dockerd's default, recorded in HostConfig: as much swap as memory (the CRI's: none)
        hc["MemorySwap"] = 2 * int(hc["Memory"])
    # dockerd's limits on the values; the CRI's go to the runtime, which refuses what the kernel
    # refuses at the start (containerd's)
    _check_memory(hc, warnings, cri)
    check_cpu(hc, cri)
    if not cri:
        _check_cpuset(hc)
    adj = hc.get("OomScoreAdj")
    if adj is not None:
        adj = int(adj)
        if not -1000 <= adj <= 1000:
            raise InvalidArgument(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
        cur = _own_oom_score_adj()
        if adj < cur and not _has_cap_sys_resource():
            raise InvalidArgument(f"cannot set --oom-score-adj {adj}: lower than berthd's own ({cur}) and berthd "
                                  "lacks CAP_SYS_RESOURCE, which lowering it needs")
    _check_unsupported(hc, body, warnings, cri, svc.cfg)
    if not cri:
        check_remap(svc, hc)
    if not cri and (hc.get("IpcMode") == "host" or hc.get("PidMode") == "host" or hc.get("Privileged")) and \
            not any(str(o).split("=")[0] == "label" for o in hc.get("SecurityOpt") or []):
        # dockerd's record (its generateSecurityOpt): SELinux labelling off for a container that
        # shares the host's IPC or PIDs or is privileged, unless the create gives a label= option
        hc["SecurityOpt"] = list(hc.get("SecurityOpt") or []) + ["label=disable"]
    # dockerd's record of what the container gets: no swappiness and no pids limit are null, the
    # default masked and read-only /proc paths are listed (not for a privileged container)
    if hc.get("MemorySwappiness") == -1:
        hc["MemorySwappiness"] = None
    if hc.get("PidsLimit") is not None and int(hc["PidsLimit"]) <= 0:
        hc["PidsLimit"] = None
    if not hc.get("Privileged"):
        from berth.services.ocispec import MASKED, READONLY
        if hc.get("MaskedPaths") is None:
            hc["MaskedPaths"] = list(MASKED)
        if hc.get("ReadonlyPaths") is None:
            hc["ReadonlyPaths"] = list(READONLY)
    if hc.get("Links"):
        if netmode == "host" or netmode.startswith("container:"):
            kind = "host" if netmode == "host" else "container"
            raise InvalidArgument(f"conflicting options: {kind} type networking can't be used with links. "
                                  "This would result in undefined behavior")
        from berth.services import links
        if links.legacy(hc):
            if not svc.cfg.icc:  # (dockerd opens the linked ports across its icc false: berth cannot)
                raise InvalidArgument("berth cannot link containers on the default network with icc false: "
                                      "put them on a user-defined network, where a link is a name")
            hc["Links"] = links.check(svc, ns, hc)
    if netmode == "host" and any(hc.get("PortBindings") or {}):  # dockerd's warning: they are recorded, not published
        warnings.append("Published ports are discarded when using host network mode")
    if netmode == "host" and not body.get("Hostname"):  # dockerd: on the host's network, the host's name
        import socket
        body = dict(body, Hostname=socket.gethostname())
    from berth.services import health
    out = dict(body, HostConfig=hc)
    hcheck = health.effective_config(body, image_config)
    health.check(hcheck)
    if hcheck:
        out["Healthcheck"] = hcheck
    return out, warnings


def _exists(svc: ContainerService, ns: str, ref: str) -> None:
    """A 400, as dockerd's (a 404 from create would make docker's CLI pull the image)."""
    try:
        svc.get(ns, ref)
    except NotFound as e:
        raise InvalidArgument(e.message) from None


def _check_unsupported(hc: dict[str, Any], body: dict[str, Any], warnings: list[str],
                       cri: bool = False, svc_cfg: Config | None = None) -> None:
    """Options berth cannot honour are refused (or, where docker too lets them go, warned about):
    never accepted and dropped."""
    bw = int(hc.get("BlkioWeight") or 0)
    if bw and not os.path.exists("/sys/fs/cgroup/blkio/blkio.weight"):  # dockerd's sysinfo: not on this host
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
        hc["BlkioWeight"] = bw = 0
    if bw and not 10 <= bw <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if hc.get("BlkioWeightDevice") and not os.path.exists("/sys/fs/cgroup/blkio/blkio.weight_device"):
        warnings.append("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
                        "Weight-device discarded.")  # dockerd's
        hc["BlkioWeightDevice"] = []
    for key, flag in (("BlkioWeight", "--blkio-weight"), ("BlkioWeightDevice", "--blkio-weight-device"),
                      ("CpuRealtimePeriod", "--cpu-rt-period"), ("CpuRealtimeRuntime", "--cpu-rt-runtime")):
        if hc.get(key):
            raise InvalidArgument(f"berth does not support {key} ({flag})")
    if hc.get("OomKillDisable") is not None:  # dockerd's words and order (verifyPlatformContainerResources)
        from berth.runtime.cgroups import detect_mode
        if detect_mode() == "v2" or not os.path.exists("/sys/fs/cgroup/memory/memory.oom_control"):
            if hc["OomKillDisable"]:
                warnings.append("Your kernel does not support OomKillDisable. OomKillDisable discarded.")
            hc["OomKillDisable"] = None
        elif hc["OomKillDisable"] and not int(hc.get("Memory") or 0):
            warnings.append("OOM killer is disabled for the container, but no memory limit is set, this can "
                            "result in the system running out of resources.")
    sw = hc.get("MemorySwappiness")
    if sw is not None and sw != -1 and not 0 <= int(sw) <= 100:  # dockerd's words
        raise InvalidArgument(f"Invalid value: {sw}, valid memory swappiness range is 0-100")
    kmem = int(hc.get("KernelMemory") or 0)
    if kmem:
        warnings.append("Specifying a kernel memory limit is deprecated and will be removed in a future release.")
        if 0 < kmem < _MIN_MEMORY and os.path.exists("/sys/fs/cgroup/memory/memory.kmem.limit_in_bytes"):
            raise InvalidArgument("Minimum kernel memory limit allowed is 6MB")
    if int(hc.get("CpuPercent") or 0) > 0:  # Windows-only; CpuCount is kept and means nothing (dockerd's)
        warnings.append("linux does not support CPU percent. Percent discarded.")
        hc["CpuPercent"] = 0
    if hc.get("StorageOpt"):
        raise InvalidArgument("--storage-opt is supported only for overlay over xfs with 'pquota' mount option")
    userns = hc.get("UsernsMode") or ""
    if userns not in ("", "host"):
        raise InvalidArgument(f"invalid USER mode {userns!r}: berth has no user namespace remapping "
                              "(only --userns=host)")
    uts = hc.get("UTSMode") or ""
    if uts not in ("", "host") and not uts.startswith("container:"):  # container: as podman's (CRI pods)
        raise InvalidArgument(f"invalid UTS mode: {uts}")
    if uts == "host" and body.get("Hostname") and not cri:  # (a CRI pod on the host's network: its HOSTNAME)
        raise InvalidArgument("Conflicting options: hostname and the UTS mode")
    cg = hc.get("CgroupnsMode") or ""
    if cg not in ("", "host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cg}")
    if not cg and not cri and svc_cfg is not None and svc_cfg.default_cgroupns_mode:  # daemon.json's default-cgroupns-mode
        hc["CgroupnsMode"] = svc_cfg.default_cgroupns_mode
    elif not cg:  # dockerd's default: private on a cgroup v2 host only, as runc and containerd
        from berth.runtime.cgroups import detect_mode
        hc["CgroupnsMode"] = "private" if detect_mode() == "v2" else "host"
    vd = hc.get("VolumeDriver") or ""
    if vd not in ("", "local"):
        raise InvalidArgument(f'error looking up volume plugin {vd}: plugin "{vd}" not found')
    parent = hc.get("CgroupParent") or ""
    if parent and (".." in parent.split("/") or not all(c.isalnum() or c in "/-_.:" for c in parent)):
        raise InvalidArgument(f"invalid cgroup parent {parent!r}")


def check_remap(svc: ContainerService, hc: dict[str, Any]) -> None:
    """What a container in the daemon's remapping (userns-remap) cannot share with the host, in
    dockerd's words and order (verifyPlatformContainerSettings: at the create and the start)."""
    if svc.remap is None or (hc.get("UsernsMode") or "") == "host":
        return
    if hc.get("Privileged"):
        raise InvalidArgument("privileged mode is incompatible with user namespaces.  You must run the container "
                              "in the host namespace when running privileged mode")
    if (hc.get("NetworkMode") or "") == "host":
        raise InvalidArgument("cannot share the host's network namespace when user namespaces are enabled")
    if (hc.get("PidMode") or "") == "host":
        raise InvalidArgument("cannot share the host PID namespace when user namespaces are enabled")


def donor_userns(svc: ContainerService, rec: Container) -> str | None:
    """A remapped container that shares another's network, PID or IPC namespace shares its user
    namespace (dockerd's): that user namespace's path; None when it shares none."""
    hc = (rec.spec_json() or {}).get("HostConfig") or {}
    donor = next((m[10:] for m in (hc.get("NetworkMode"), hc.get("PidMode"), hc.get("IpcMode"))
                  if (m or "").startswith("container:")), None)
    if donor is None:
        return None
    other, pid = _running(svc, rec.namespace, donor, "user")
    theirs = svc.networks.userns_path(other) if svc.networks is not None else ""
    return theirs if theirs and os.path.exists(theirs) else f"/proc/{pid}/ns/user"


def apply_remap(svc: ContainerService, rec: Container, oci: dict[str, Any], files_dir: str | None) -> None:
    """A container in the daemon's remapping: a user namespace of its own with the remapping's
    mappings (made by the runtime, as dockerd's runc makes it); the files berthd gives it (hosts,
    resolv.conf, hostname) its root's, its directory (its rootfs's mount point is there, 0710)
    its root's group's, a shareable /dev/shm its root's (dockerd's)."""
    remap = svc.remapped(rec)
    if remap is None:
        return
    uid, gid = remap.root
    linux = oci.setdefault("linux", {})
    nss = [n for n in linux.get("namespaces") or [] if n.get("type") != "user"]
    pin = svc.networks.userns_path(rec.id) if svc.networks is not None else ""
    net = next((n.get("path") for n in nss if n.get("type") == "network"), None)
    if pin and net == svc.networks.netns_path(rec.id) and os.path.exists(pin):
        joined = pin  # the owner of its network namespace (container_net.new_netns: a donor's, if any)
    else:
        joined = donor_userns(svc, rec)
    if joined is not None:
        nss.insert(0, {"type": "user", "path": joined})
        linux.pop("uidMappings", None)
        linux.pop("gidMappings", None)
    else:  # (no network namespace of its own: the runtime makes the user namespace)
        nss.append({"type": "user"})
        linux["uidMappings"], linux["gidMappings"] = remap.spec_maps()
    linux["namespaces"] = nss
    # its ids are not all the host's: dockerd sets no ping_group_range then (unless --sysctl does)
    if "net.ipv4.ping_group_range" not in (((rec.spec_json() or {}).get("HostConfig") or {}).get("Sysctls") or {}):
        (linux.get("sysctl") or {}).pop("net.ipv4.ping_group_range", None)
    os.chown(svc.cdir(rec.id), -1, gid)
    from berth.linux.userns import check_reachable
    check_reachable(svc.rootfs(rec.id), uid, gid)
    if files_dir == svc.cdir(rec.id):  # (not those of a container whose network it shares)
        for name in ("hosts", "resolv.conf", "hostname"):
            try:
                os.chown(os.path.join(files_dir, name), uid, gid)
            except FileNotFoundError:
                pass
    shm = next((m for m in oci.get("mounts") or [] if m.get("destination") == "/dev/shm"), None)
    if shm is not None and shm.get("type") == "bind" and shm.get("source", "").startswith(svc.cdir(rec.id)):
        os.chown(shm["source"], uid, gid)


def _check_platform(body: dict[str, Any], image_config: dict[str, Any] | None) -> None:
    want = body.get("Platform")
    if not want or image_config is None:
        return
    from berth.images import config as imgconfig
    p = imgconfig.parse_platform(want)
    have = {"os": image_config.get("os") or "linux", "architecture": image_config.get("architecture") or "amd64"}
    if image_config.get("variant"):
        have["variant"] = image_config["variant"]
    have = imgconfig.normalize_platform(have)

    def fmt(x: dict[str, Any]) -> str:  # containerd's Format: arm64's v8 is the default variant, not shown
        x = dict(x)
        if x.get("architecture") == "arm64" and x.get("variant") == "v8":
            x.pop("variant")
        return imgconfig.format_platform(x)
    if p["os"] != have["os"] or p["architecture"] != have["architecture"] or \
            p.get("variant") and have.get("variant") and p["variant"] != have["variant"]:
        raise NotFound(f"image with reference {body.get('Image')} was found but does not match the specified "
                       f"platform: wanted {fmt(p)}, actual: {fmt(have)}")


def _check_restart(hc: dict[str, Any]) -> None:
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name") or ""
    count = rp.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy '{name}'")
    if not isinstance(count, int):
        raise InvalidArgument("maximum retry count must be an integer")
    if count < 0:
        raise InvalidArgument("maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")


def check_cpu(hc: dict[str, Any], cri: bool = False) -> None:
    """dockerd 20.10's CPU checks (verifyPlatformContainerResources), in its order and words."""
    nano, period, quota = (int(hc.get(k) or 0) for k in ("NanoCpus", "CpuPeriod", "CpuQuota"))
    if nano > 0 and period > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    n = len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    if nano < 0 or nano > n * 10**9:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available")
    if 0 < quota < 1000 and not cri:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def _check_memory(hc: dict[str, Any], warnings: list[str], cri: bool = False) -> None:
    mem = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    res = int(hc.get("MemoryReservation") or 0)
    if mem and mem < _MIN_MEMORY and not cri:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap > 0 and not mem:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if res and res < _MIN_MEMORY and not cri:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if mem and res and mem < res:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if swap and not swap_accounting():
        warnings.append("Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
                        "Memory limited without swap.")
        hc["MemorySwap"] = -1


def _cpuset_list(s: str) -> set[int]:
    out: set[int] = set()
    for part in s.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _check_cpuset(hc: dict[str, Any]) -> None:
    for key, what, avail_file in (("CpusetCpus", "cpus", "cpus"), ("CpusetMems", "mems", "mems")):
        v = hc.get(key)
        if not v:
            continue
        if not _CPUSET.match(v):
            raise InvalidArgument(f"Invalid value {v} for cpuset {what}: invalid format: {v}")
        avail = _read_first(f"/sys/fs/cgroup/cpuset/cpuset.{avail_file}", f"/sys/fs/cgroup/cpuset.{avail_file}.effective")
        if avail and not _cpuset_list(v) <= _cpuset_list(avail):
            raise InvalidArgument(f"Requested {'CPUs' if what == 'cpus' else 'memory nodes'} are not available - "
                                  f"requested {v}, available: {avail}")


def _read_first(*paths: str) -> str:
    for p in paths:
        try:
            with open(p) as f:
                v = f.read().strip()
            if v:
                return v
        except OSError:
            continue
    return ""


def swap_accounting() -> bool:
    return any(os.path.exists(p) for p in ("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
                                           "/sys/fs/cgroup/memory.swap.max")) or \
        any(n.startswith("memory.swap") for n in _listdir("/sys/fs/cgroup"))


def _listdir(p: str) -> list[str]:
    try:
        return os.listdir(p)
    except OSError:
        return []


def _own_oom_score_adj() -> int:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def _has_cap_sys_resource() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE = 24
    except (OSError, ValueError):
        pass
    return False


# --- at start ---

_HAS_UNPRIV_PORT_START = os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start")  # Linux 4.11 and later


def apply(svc: ContainerService, ns: str, rec: Container, body: dict[str, Any], oci: dict[str, Any], rootfs: str) -> None:
    """Apply the options to a built OCI spec (in place)."""
    hc = body.get("HostConfig") or {}
    linux = oci["linux"]
    proc = oci["process"]
    _namespace(svc, ns, linux, "pid", hc.get("PidMode") or "")
    uts = hc.get("UTSMode") or ""
    if uts == "host" or uts.startswith("container:"):
        _namespace(svc, ns, linux, "uts", uts)
        oci.pop("hostname", None)
    if hc.get("CgroupnsMode") == "host":
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    cri = any(k.startswith("io.cri-containerd.") for k in rec.extensions or {})
    # a path, or a systemd slice ("x.slice": the systemd driver's form); none: the daemon's
    # cgroup_parent (daemon.json's cgroup-parent, not recorded, as dockerd's), if any
    parent = hc.get("CgroupParent") or ("" if cri else svc.cfg.cgroup_parent)
    if parent:
        from berth.services.ocispec import cgroups_path
        linux["cgroupsPath"] = cgroups_path(parent if parent.endswith(".slice") else "/" + parent.strip("/"),
                                            rec.id)
    if hc.get("Annotations"):
        oci.setdefault("annotations", {}).update({str(k): str(v) for k, v in hc["Annotations"].items()})
    ipc = hc.get("IpcMode") or "private"
    _namespace(svc, ns, linux, "ipc", ipc)
    mounts = oci["mounts"]
    shm = next((m for m in mounts if m["destination"] == "/dev/shm"), None)
    if shm is not None and shm.get("type") == "tmpfs":
        if ipc == "host":
            mounts[mounts.index(shm)] = {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                                         "options": ["rbind", "rprivate"]}
        elif ipc.startswith("container:"):
            donor, _ = _running(svc, ns, ipc[10:], "ipc")
            # a host-IPC donor's /dev/shm is the host's (dockerd's ShmPath of such a container)
            host = ((svc.get(ns, donor).spec_json() or {}).get("HostConfig") or {}).get("IpcMode") == "host"
            mounts[mounts.index(shm)] = {"destination": "/dev/shm", "type": "bind",
                                         "source": "/dev/shm" if host else shm_path(svc, donor),
                                         "options": ["rbind", "rprivate"]}
        elif ipc == "shareable":
            # as docker: the /dev/shm of a shareable container is a tmpfs on the host, so others can join it
            path = shm_path(svc, rec.id)
            release(svc, rec.id)
            os.makedirs(path, mode=0o700, exist_ok=True)
            from berth.linux import syscalls
            size = int(hc.get("ShmSize") or 64 << 20)
            syscalls.mount("shm", path, "tmpfs", 0x2 | 0x4 | 0x8, f"mode=1777,size={size}")  # nosuid,nodev,noexec
            mounts[mounts.index(shm)] = {"destination": "/dev/shm", "type": "bind", "source": path,
                                         "options": ["rbind", "rprivate"]}
        elif ipc == "none":
            mounts.remove(shm)
        elif hc.get("ShmSize"):
            shm["options"] = [o for o in shm["options"] if not o.startswith("size=")] + [f"size={int(hc['ShmSize'])}"]
    res = linux.setdefault("resources", {})
    if hc.get("Devices"):
        devs = linux.setdefault("devices", [])
        for d in hc["Devices"]:
            for dev in _host_devices(d["PathOnHost"], d.get("PathInContainer") or d["PathOnHost"]):
                devs.append(dev)
                res.setdefault("devices", []).append({"allow": True, "type": dev["type"], "major": dev["major"],
                                                      "minor": dev["minor"],
                                                      "access": d.get("CgroupPermissions") or "rwm"})
    for rule in hc.get("DeviceCgroupRules") or []:
        m = _CGROUP_RULE.match(rule)
        entry = {"allow": True, "type": m.group(1), "access": m.group(4)}
        if m.group(2) != "*":
            entry["major"] = int(m.group(2))
        if m.group(3) != "*":
            entry["minor"] = int(m.group(3))
        res.setdefault("devices", []).append(entry)
    netmode = hc.get("NetworkMode") or "default"
    if netmode != "host" and not netmode.startswith(("container:", "ns:")) and _HAS_UNPRIV_PORT_START:
        # a network namespace of its own: dockerd 20.10's defaults (not in HostConfig.Sysctls), which
        # let a process without capabilities ping and bind ports below 1024; --sysctl wins
        linux["sysctl"] = {"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"}
    if body.get("Domainname"):
        # as dockerd: the kernel.domainname sysctl (the same as setdomainname(2)), which every
        # runtime applies (runc 1.1 ignores the OCI domainname field); --sysctl wins
        linux["sysctl"] = dict(linux.get("sysctl") or {}, **{"kernel.domainname": body["Domainname"]})
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(linux.get("sysctl") or {}, **hc["Sysctls"])
    cpu = res.setdefault("cpu", {})
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if not cpu:
        res.pop("cpu")
    mem = res.setdefault("memory", {})
    if hc.get("MemorySwap"):
        mem["swap"] = int(hc["MemorySwap"])
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    if mem.get("swap") == -1 and not mem.get("limit"):
        mem.pop("swap")
    if not mem:
        res.pop("memory")
    if hc.get("GroupAdd"):
        from berth.services.ocispec import lookup_group
        gids = list(proc["user"].get("additionalGids") or [])
        for g in hc["GroupAdd"]:
            gid = lookup_group(rootfs, g)
            if gid not in gids:
                gids.append(gid)
        proc["user"]["additionalGids"] = gids
    if hc.get("OomScoreAdj"):
        proc["oomScoreAdj"] = int(hc["OomScoreAdj"])


def shm_path(svc: ContainerService, cid: str) -> str:
    return os.path.join(svc.cdir(cid), "mounts", "shm")


def release(svc: ContainerService, cid: str) -> None:
    """After the exit of a container (or before its start): its shareable /dev/shm goes, and the
    volume subpaths bound for it."""
    path = shm_path(svc, cid)
    if os.path.isdir(path):
        from berth.snapshots.mount import unmount
        unmount(path)
    svc.volumes.release_pins(os.path.dirname(path))


def _running(svc: ContainerService, ns: str, ref: str, what: str) -> tuple[str, int]:
    """(id, pid) of the container whose namespace is joined, with docker's refusals."""
    other = svc.get(ns, ref)
    st = svc.state(other)
    if what == "ipc":
        if not st["Running"]:
            raise FailedPrecondition(f"can't join IPC of container {other.id}: container {other.id} is not running")
        mode = ((other.spec_json() or {}).get("HostConfig") or {}).get("IpcMode") or "private"
        if mode not in ("shareable", "host"):
            raise FailedPrecondition(f"can't join IPC of container {other.id}: non-shareable IPC "
                                     "(hint: use IpcMode:shareable for the donor container)")
    elif not st["Running"]:
        raise FailedPrecondition(f"container {other.id} is not running")
    return other.id, st["Pid"]


def _namespace(svc: ContainerService, ns: str, linux: dict[str, Any], kind: str, mode: str) -> None:
    nss = [n for n in linux["namespaces"] if n["type"] != kind]
    if mode == "host":
        pass
    elif mode.startswith("container:"):
        _, pid = _running(svc, ns, mode[10:], kind)
        nss.append({"type": kind, "path": f"/proc/{pid}/ns/{kind}"})
    else:
        nss.append({"type": kind})
    linux["namespaces"] = nss


def _host_devices(path: str, dest: str) -> list[dict[str, Any]]:
    """OCI linux.devices for --device PATH[:DEST]: the device, or each device under a directory."""
    import stat
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f'error gathering device information while adding custom device "{path}": '
                              f"{(e.strerror or str(e)).lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        out = []
        for root, _dirs, files in os.walk(path):
            for f in sorted(files):
                p = os.path.join(root, f)
                try:
                    out += _host_devices(p, os.path.join(dest, os.path.relpath(p, path)))
                except InvalidArgument:
                    continue
        return out
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f'error gathering device information while adding custom device "{path}": '
                              "not a device node")
    return [{"path": dest, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
             "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}]
