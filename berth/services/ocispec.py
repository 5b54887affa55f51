"""Docker's container configuration (image config + create options) -> an OCI runtime spec,
with docker's defaults: capabilities, masked and read-only paths, mounts, devices."""

from __future__ import annotations

import os
import posixpath

from berth.linux.paths import read_in_root

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterable
    from typing import Any

    from berth.errors import BerthError

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _all_caps() -> list[str]:
    """Every capability the kernel knows that berthd itself may still grant (its bounding set):
    asking for one outside it fails the start with EPERM (berthd inside a container, say)."""
    from berth.linux import caps
    bounding = ~0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    bounding = int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return [n for i, n in enumerate(caps.NAMES[: caps.last_cap() + 1]) if bounding >> i & 1]


def capabilities(hc: dict[str, Any]) -> list[str]:
    """The container's capability set (sorted names) from HostConfig, as moby's
    TweakCapabilities makes it: all with Privileged (CapAdd and CapDrop are not looked at);
    else with "ALL" in CapAdd all but CapDrop's; with "ALL" in CapDrop CapAdd's alone; else
    docker's default set without CapDrop's, then CapAdd's (one in both is kept). Names are
    upper-cased and get their CAP_ prefix; dockerd refuses unknown ones at create
    (runopts.check_early), the CRI passes them on to the runtime, which ignores them."""
    if hc.get("Privileged"):
        return sorted(_all_caps())

    def norm(c: str) -> str:
        c = str(c).upper()
        return c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c
    adds = [norm(c) for c in hc.get("CapAdd") or []]
    drops = [norm(c) for c in hc.get("CapDrop") or []]
    if "ALL" in adds:
        caps = {c for c in _all_caps() if c not in drops}
    elif "ALL" in drops:
        caps = set(adds)
    else:
        caps = {c for c in DEFAULT_CAPS if c not in drops} | set(adds)
    return sorted(caps)


def replace_or_append_env(defaults: Iterable[str], overrides: Iterable[str]) -> list[str]:
    """moby's ReplaceOrAppendEnvValues: each KEY=VALUE of overrides replaces the default of its
    key, or is appended; a bare KEY (no "=": docker's `-e KEY` of a variable the client's
    environment does not have) removes the default of that key, and is never passed on."""
    out = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    gone = set()
    for e in overrides:
        k, eq, _ = e.partition("=")
        i = index.get(k)
        if not eq:
            if i is not None:
                gone.add(i)
        elif i is not None:
            out[i] = e
            gone.discard(i)
        else:
            out.append(e)
    return [e for i, e in enumerate(out) if i not in gone]


def config_env(user_env: Iterable[str] | None, image_env: Iterable[str] | None) -> list[str]:
    """A container's Config.Env as dockerd makes it at create: the create's Env (bare KEYs
    kept), then each of the image's whose key the create's does not name."""
    user = list(user_env or [])
    keys = {e.partition("=")[0] for e in user}
    return user + [e for e in image_env or [] if e.partition("=")[0] not in keys]


def container_env(cfg_env: Iterable[str], hostname: str, tty: bool, link_env: Iterable[str] = ()) -> list[str]:
    """The process env of a container (or of an exec, with the exec's tty): docker's
    CreateDaemonEnvironment, PATH, HOSTNAME, TERM (with a tty) and the links' variables,
    replaced or removed by Config.Env."""
    defaults = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if tty else []) + list(link_env)
    return replace_or_append_env(defaults, cfg_env)


def lookup_user(rootfs: str, user: str | None) -> tuple[int, int, list[int]]:
    """docker's -u: "uid", "uid:gid", "name", "name:group" resolved in the container's passwd/group:
    (uid, gid, supplementary gids, the primary one first)."""
    if not user:
        return 0, 0, [0]
    name, _, group = user.partition(":")

    def read(path: str) -> list[list[str]]:
        try:  # inside the rootfs: its /etc/passwd may be a symlink, never to the host's
            text = read_in_root(rootfs, path).decode(errors="replace")
        except OSError:
            return []
        return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]
    passwd = read("/etc/passwd")
    groups = read("/etc/group")
    uid = gid = None
    if name.isdigit():
        uid = int(name)
        for p in passwd:
            if len(p) > 3 and p[2] == name:
                gid = int(p[3])
    else:
        for p in passwd:
            if p and p[0] == name and len(p) > 3:
                uid, gid = int(p[2]), int(p[3])
                break
        if uid is None:
            from berth.errors import InvalidArgument
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for g in groups:
                if g and g[0] == group and len(g) > 2:
                    gid = int(g[2])
                    break
            else:
                from berth.errors import InvalidArgument
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
    if gid is None:  # a uid without a passwd entry: group 0, as runc's GetExecUser and containerd's WithUserID
        gid = 0
    _check_ids(uid, gid)
    uname = next((p[0] for p in passwd if len(p) > 2 and p[2] == str(uid)), None)
    extra = sorted({int(g[2]) for g in groups if len(g) > 3 and uname and uname in g[3].split(",") and g[2].isdigit()})
    # the primary group is a supplementary group too, as dockerd and containerd set it up since
    # their fixes for CVE-2022-36109 / CVE-2023-25173 (supplementary groups not set up properly:
    # a primary group left out of them could be used to get around permissions denying it)
    return uid, gid, [gid] + [g for g in extra if g != gid]


def _check_ids(*ids: int) -> None:
    """moby/sys/user's bound (the kernel's (uid_t)-1 means "unchanged"), in its words."""
    from berth.runtime.spec import MAX_ID
    if any(i > MAX_ID for i in ids):
        from berth.errors import InvalidArgument
        raise InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")


def lookup_group(rootfs: str, group: str | int) -> int:
    """--group-add: a gid, or a group name resolved in the container's /etc/group."""
    if str(group).isdigit():
        _check_ids(int(group))
        return int(group)
    try:
        for line in read_in_root(rootfs, "/etc/group").decode(errors="replace").splitlines():
            g = line.split(":")
            if len(g) > 2 and g[0] == group and g[2].isdigit():
                return int(g[2])
    except OSError:
        pass
    from berth.errors import InvalidArgument
    raise InvalidArgument(f"Unable to find group {group}: no matching entries in group file")


def merged_command(create: dict[str, Any], ic: dict[str, Any]) -> tuple[list[str] | None, Any]:
    """(Entrypoint, Cmd) of a container as dockerd merges its create with the image's config
    (mergeAndVerifyConfig): without an entrypoint of its own (none or []) it takes the image's
    Cmd when it gives none, and the image's Entrypoint when it gives none at all; [""] (`run
    --entrypoint ""`) resets the entrypoint and takes nothing from the image. None where there is
    none (inspect shows null)."""
    ep, cmd = create.get("Entrypoint"), create.get("Cmd")
    if isinstance(ep, str):
        ep = [ep]
    if not ep:
        if not cmd:
            cmd = ic.get("Cmd")
        if ep is None:
            ep = ic.get("Entrypoint")
    if ep == [""]:
        ep = None
    return ep, cmd


def build(container_id: str, image_config: dict[str, Any], create: dict[str, Any], rootfs: str, files_dir: str,
          cgroup_parent: str = "/berth", netns: str | None = None, extra_mounts: Iterable[dict[str, Any]] = (),
          no_new_privileges: bool = False, init: bool = False, seccomp: Any = None,
          init_path: str = "") -> dict[str, Any]:
    """The OCI config.json for a container. ``create`` is the Docker API's create body
    (Config fields at top level plus HostConfig). ``netns``: "host" (the host's network), the
    path of a network namespace to join, or None (a new, empty one). ``extra_mounts``: the OCI
    mounts of its volumes, binds and tmpfs (services/volumes.py), after the defaults, which they
    replace at the same destination. The HostConfig options beyond these defaults (--pid, --ipc,
    --device, --sysctl, --group-add, ...) are services/runopts.py's, applied to this spec."""
    ic = image_config.get("config") or {}
    hc = create.get("HostConfig") or {}
    entrypoint, cmd = merged_command(create, ic)
    entrypoint, cmd = entrypoint or [], cmd or []
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    args = list(entrypoint) + list(cmd)
    if not args:
        from berth.errors import InvalidArgument
        raise InvalidArgument("No command specified")
    hostname = create.get("Hostname") or container_id[:12]
    env = container_env(config_env(create.get("Env"), ic.get("Env")), hostname, bool(create.get("Tty")),
                        create.get("_LinkEnv") or [])
    uid, gid, groups = lookup_user(rootfs, create.get("User") or ic.get("User") or "")
    privileged = bool(hc.get("Privileged"))
    caps = capabilities(hc)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if netns is None:
        namespaces.append({"type": "network"})
    elif netns != "host":
        namespaces.append({"type": "network", "path": netns})
    security = security_options(hc.get("SecurityOpt"))
    # no_new_privileges: the daemon's default (daemon.json's), which the create's option overrides
    nnp = security["no-new-privileges"] if security["nnp-given"] else no_new_privileges
    if security["seccomp"] is None and seccomp is not None:  # the daemon's profile (a dict) or "unconfined"
        security["seccomp"] = seccomp
    rlimits = []
    for u in hc.get("Ulimits") or []:
        rlimits.append({"type": "RLIMIT_" + u["Name"].upper(), "soft": int(u["Soft"]), "hard": int(u["Hard"])})
    resources: dict[str, Any] = {"devices": [{"allow": privileged, "access": "rwm"}]}
    if not privileged:
        resources["devices"] += [dict(r) for r in DOCKER_DEVICE_RULES]
    if hc.get("Memory"):
        resources["memory"] = {"limit": int(hc["Memory"])}
    cpu = {}
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(hc["NanoCpus"]) * 100000 // 10**9
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if cpu:
        resources["cpu"] = cpu
    if hc.get("PidsLimit"):
        resources["pids"] = {"limit": int(hc["PidsLimit"])}
    _more_resources(resources, hc)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]
    if hc.get("Init") or hc.get("Init") is None and init:  # (init: the daemon's default, daemon.json's)
        # --init: a tiny init (tini, static) as PID 1 that reaps zombies and forwards signals, as docker-init
        from berth.errors import InvalidArgument
        if init_path:  # (daemon.json's init-path): as runc says it when it is not there
            if not os.path.isabs(init_path) or not os.path.exists(init_path):
                raise InvalidArgument(f'error mounting "{init_path}" to rootfs at "/sbin/docker-init": stat '
                                      f'{init_path}: no such file or directory')
            init = init_path
        else:
            init = next((p for p in ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/local/bin/tini-static")
                         if os.path.exists(p)), None)
        if init is None:
            raise InvalidArgument("--init needs tini-static (Debian's tini package) on the host")
        mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": init,
                       "options": ["bind", "ro"]})  # dockerd's
        args = ["/sbin/docker-init", "--"] + args
    # read-only with the root (--read-only; the CRI's readonly_rootfs), as dockerd's and containerd's;
    # in dockerd's order
    etc_opts = ["rbind", "rprivate"] + (["ro"] if hc.get("ReadonlyRootfs") else [])
    etc = [{"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(files_dir, name),
            "options": list(etc_opts)} for name in ("resolv.conf", "hostname", "hosts")]
    dests = {m["destination"] for m in extra_mounts or ()}
    # the container's own mounts after the defaults, fewest path components first (dockerd's
    # and containerd's order): a mount on /etc (or /) does not hide /etc/hosts
    mounts = [m for m in mounts if m["destination"] not in dests] + \
        sorted([m for m in etc if m["destination"] not in dests] + list(extra_mounts or ()), key=_depth)
    spec: dict[str, Any] = {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": bool(create.get("Tty")),
            "user": {"uid": uid, "gid": gid, "additionalGids": groups},
            "args": args,
            "env": env,
            "cwd": create.get("WorkingDir") or ic.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": nnp,
            "rlimits": rlimits,
        },
        "root": {"path": rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": {"io.berth.container.id": container_id},
        "linux": {
            "resources": resources,
            "cgroupsPath": cgroups_path(hc.get("CgroupParent") or cgroup_parent, container_id),
            "namespaces": namespaces,
            "maskedPaths": [] if privileged else list(MASKED),
            "readonlyPaths": [] if privileged else list(READONLY),
        },
    }
    _apply_security(spec, hc, caps, security)
    cs = hc.get("ConsoleSize")  # API 1.42+: the pty has the client's size from the start
    if create.get("Tty") and isinstance(cs, list) and len(cs) == 2 and all(isinstance(x, int) and x > 0 for x in cs):
        spec["process"]["consoleSize"] = {"height": cs[0], "width": cs[1]}
    return spec


# dockerd's default device rules after its deny-all (moby's DefaultLinuxSpec), which the runtime's
# own allowed list then follows: /dev/console allowed, fuse denied (containerd's CRI has none)
DOCKER_DEVICE_RULES = [{"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
                       for ma, mi in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))] + [
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]


def drop_docker_device_rules(spec: dict[str, Any]) -> None:
    """A spec built as dockerd's without dockerd's default device rules (the CRI's, as containerd's)."""
    res = (spec.get("linux") or {}).get("resources") or {}
    if res.get("devices"):
        res["devices"] = [r for r in res["devices"] if r not in DOCKER_DEVICE_RULES]


def cgroups_path(parent: str, container_id: str) -> str:
    """HostConfig.CgroupParent -> the OCI cgroupsPath: a systemd slice ("x.slice") gives the
    "slice:prefix:name" form (docker's and containerd's systemd driver), a path "<parent>/<id>"."""
    if parent.endswith(".slice") and "/" not in parent:
        return f"{parent}:berth:{container_id}"
    return f"{parent.rstrip('/')}/{container_id}"


def _depth(mount: dict[str, Any]) -> int:
    """The number of components of a mount's destination (moby's and containerd's sort key)."""
    return posixpath.normpath(mount["destination"]).count("/")


def _more_resources(resources: dict[str, Any], hc: dict[str, Any]) -> None:
    """docker's cpu period/quota, cpuset, memory swap and reservation, blkio weight."""
    cpu = resources.setdefault("cpu", {})
    for key, field in (("CpuPeriod", "period"), ("CpuQuota", "quota"), ("CpuRealtimePeriod", "realtimePeriod"),
                       ("CpuRealtimeRuntime", "realtimeRuntime")):
        if hc.get(key):
            cpu[field] = int(hc[key])
    for key, field in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        if hc.get(key):
            cpu[field] = str(hc[key])
    if not cpu:
        resources.pop("cpu")
    mem = resources.setdefault("memory", {})
    if hc.get("MemorySwap"):
        mem["swap"] = int(hc["MemorySwap"])
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    if hc.get("OomKillDisable"):  # --oom-kill-disable (cgroup v1's memory.oom_control)
        mem["disableOOMKiller"] = True
    if hc.get("MemorySwappiness") is not None and int(hc["MemorySwappiness"]) != -1:  # --memory-swappiness
        mem["swappiness"] = int(hc["MemorySwappiness"])
    if not mem:
        resources.pop("memory")
    blkio: dict[str, Any] = {}
    if hc.get("BlkioWeight"):
        blkio["weight"] = int(hc["BlkioWeight"])
    for key, field in (("BlkioDeviceReadBps", "throttleReadBpsDevice"), ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                       ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                       ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
        if hc.get(key):  # --device-read-bps and the like: the device's numbers, read at the start as dockerd's
            blkio[field] = [dict(_device_numbers(str(t.get("Path") or "")), rate=int(t.get("Rate") or 0))
                            for t in hc[key]]
    if blkio:
        resources["blockIO"] = blkio
    if hc.get("HugepageLimits"):  # not docker's: the CRI's hugepage limits [{"pageSize", "limit"}]
        resources["hugepageLimits"] = [{"pageSize": h["pageSize"], "limit": int(h["limit"])}
                                       for h in hc["HugepageLimits"]]
    if hc.get("Unified"):
        resources["unified"] = dict(hc["Unified"])


def _device_numbers(path: str) -> dict[str, int]:
    """A block device's major and minor numbers (dockerd's words when it is not there)."""
    try:
        st = os.stat(path)
    except OSError as e:
        from berth.errors import InvalidArgument
        raise InvalidArgument(f"stat {path}: {(e.strerror or str(e)).lower()}") from None
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}


# --- security: --security-opt, seccomp, --privileged ---

_SECCOMP_MAX = 10 << 20
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def _bad_opt(n: int, opt: object) -> BerthError:
    from berth.errors import InvalidArgument
    return InvalidArgument(f"invalid --security-opt {n}: {opt!r} (known: seccomp=unconfined|builtin|<profile.json>, "
                           "no-new-privileges[=true|false], apparmor=..., label=..., systempaths=unconfined)")


def _seccomp_profile(value: str) -> dict[str, Any]:
    """A --security-opt seccomp= value other than unconfined/builtin: the profile's JSON text
    (what docker's CLI sends) or the path of a file holding it. Returns the parsed profile."""
    import json

    from berth.errors import InvalidArgument
    text: str | bytes
    text, where = value, "seccomp profile"
    if not value.lstrip().startswith("{"):
        where = f"seccomp profile ({value})"
        try:
            with open(value, "rb") as f:
                text = f.read(_SECCOMP_MAX + 1)
        except OSError as e:
            raise InvalidArgument(f"opening {where} failed: {e.strerror or e}") from None
        if len(text) > _SECCOMP_MAX:
            raise InvalidArgument(f"opening {where} failed: larger than {_SECCOMP_MAX} bytes")
    try:
        profile = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"decoding {where} failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument(f"decoding {where} failed: expected a JSON object")
    return profile


def security_options(opts: Iterable[object] | None) -> dict[str, Any]:
    """HostConfig.SecurityOpt, parsed like docker's daemon: returns {"no-new-privileges": bool,
    "seccomp": None (the default profile) | "unconfined" | a docker-format profile (dict),
    "systempaths": None | "unconfined"}. Raises a one-line InvalidArgument."""
    out: dict[str, Any] = {"no-new-privileges": False, "seccomp": None, "systempaths": None, "nnp-given": False}
    for opt in opts or []:
        if not isinstance(opt, str):
            raise _bad_opt(1, opt)
        if opt == "no-new-privileges":
            out["no-new-privileges"] = out["nnp-given"] = True
            continue
        if opt == "disable":  # label:disable, SELinux is not supported: nothing to disable
            continue
        sep = "=" if "=" in opt else ":"  # key:value is docker's legacy form
        key, found, value = opt.partition(sep)
        if not found:
            raise _bad_opt(1, opt)
        if key == "no-new-privileges":
            if value not in _TRUE + _FALSE:
                raise _bad_opt(2, opt)
            out["no-new-privileges"] = value in _TRUE
            out["nnp-given"] = True
        elif key == "seccomp":
            if value in ("", "builtin"):
                out["seccomp"] = None
            elif value == "unconfined":
                out["seccomp"] = "unconfined"
            else:
                out["seccomp"] = _seccomp_profile(value)
        elif key == "systempaths":
            if value != "unconfined":
                raise _bad_opt(2, opt)
            out["systempaths"] = value
        elif key in ("apparmor", "label"):
            continue  # no AppArmor or SELinux support here: accepted and ignored, like a host without them
        else:
            raise _bad_opt(2, opt)
    return out


def seccomp_spec(hc: dict[str, Any], caps: list[str], security: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The OCI linux.seccomp object for a container, or None (privileged or unconfined)."""
    from berth.services import seccomp_default
    if security is None:
        security = security_options(hc.get("SecurityOpt"))
    profile = security["seccomp"]
    if hc.get("Privileged") or profile == "unconfined":
        return None
    if profile is None:
        return seccomp_default.default_profile(caps)
    return seccomp_default.to_oci(profile, caps)


def check_security(hc: dict[str, Any]) -> dict[str, Any]:
    """At create: check HostConfig's security options and return HostConfig with any seccomp
    profile path replaced by the profile's JSON text (as docker's CLI sends it), so the
    container does not depend on the file afterwards. Raises a one-line InvalidArgument."""
    import json
    opts = hc.get("SecurityOpt") or []
    security = security_options(opts)
    scmp = seccomp_spec(hc, capabilities(hc), security)
    if scmp is not None and isinstance(security["seccomp"], dict):
        from berth.linux import seccomp
        seccomp.validate(scmp)  # the whole profile, with libseccomp, short of loading it
    norm = []
    for opt in opts:
        key, found, value = opt.partition("=")
        if not found:
            key, found, value = opt.partition(":")
        if found and key == "seccomp" and value not in ("", "builtin", "unconfined") \
                and not value.lstrip().startswith("{"):
            opt = "seccomp=" + json.dumps(_seccomp_profile(value), separators=(",", ":"))
        norm.append(opt)
    if norm == opts:
        return hc
    return dict(hc, SecurityOpt=norm)


# host /dev entries docker (containerd's HostDevices) leaves out of a privileged container
_HOST_DEV_SKIP_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def host_devices(top: str = "/dev") -> list[dict[str, Any]]:
    """The host's device nodes as OCI linux.devices entries (for --privileged)."""
    import stat
    out = []

    def walk(path: str) -> None:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if e.name not in _HOST_DEV_SKIP_DIRS:
                        walk(e.path)
                    continue
                if e.name == "console":
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue  # symlinks, fifos, sockets, files
            out.append({"path": e.path, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    walk(top)
    return out


def _apply_security(spec: dict[str, Any], hc: dict[str, Any], caps: list[str], security: dict[str, Any]) -> None:
    """seccomp, docker's systempaths and --privileged on a built spec."""
    linux = spec["linux"]
    if hc.get("MaskedPaths") is not None:  # the API's fields (docker's CLI: systempaths=unconfined)
        linux["maskedPaths"] = list(hc["MaskedPaths"])
    if hc.get("ReadonlyPaths") is not None:
        linux["readonlyPaths"] = list(hc["ReadonlyPaths"])
    if security["systempaths"] == "unconfined":
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
    if hc.get("Privileged"):
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        for m in spec["mounts"]:  # /sys and the cgroup tree writable, like docker
            if m.get("type") in ("sysfs", "cgroup"):
                m["options"] = [o for o in m.get("options") or [] if o != "ro"]
        linux["devices"] = host_devices()
    scmp = seccomp_spec(hc, caps, security)
    if scmp is not None:
        linux["seccomp"] = scmp
