"""Docker's container configuration (image config + create options) -> an OCI runtime spec,
with docker's defaults: capabilities, masked and read-only paths, mounts, devices."""

import os

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


def _all_caps():
    from berth.linux import caps
    return caps.NAMES[: caps.last_cap() + 1]


def lookup_user(rootfs, user):
    """docker's -u: "uid", "uid:gid", "name", "name:group" resolved in the container's passwd/group."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")

    def read(path):
        try:
            with open(os.path.join(rootfs, path.lstrip("/"))) as f:
                return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
        except OSError:
            return []
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
    if gid is None:
        gid = 0 if uid == 0 else uid
    uname = next((p[0] for p in passwd if len(p) > 2 and p[2] == str(uid)), None)
    extra = sorted({int(g[2]) for g in groups if len(g) > 3 and uname and uname in g[3].split(",") and g[2].isdigit()})
    return uid, gid, [g for g in extra if g != gid]


def build(container_id, image_config, create, rootfs, files_dir, cgroup_parent="/berth"):
    """The OCI config.json for a container. ``create`` is the Docker API's create body
    (Config fields at top level plus HostConfig)."""
    ic = image_config.get("config") or {}
    hc = create.get("HostConfig") or {}
    if create.get("Entrypoint") is not None:  # --entrypoint replaces the image's, and drops its CMD
        entrypoint = create["Entrypoint"] or []
        cmd = create.get("Cmd") or []
    else:
        entrypoint = ic.get("Entrypoint") or []
        cmd = create.get("Cmd") or ic.get("Cmd") or []
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    args = list(entrypoint) + list(cmd)
    if not args:
        from berth.errors import InvalidArgument
        raise InvalidArgument("no command specified")
    env = {}
    for e in (ic.get("Env") or []) + (create.get("Env") or []):
        k, _, v = e.partition("=")
        env[k] = v
    env.setdefault("PATH", DEFAULT_PATH)
    hostname = create.get("Hostname") or container_id[:12]
    env.setdefault("HOSTNAME", hostname)
    if create.get("Tty"):
        env.setdefault("TERM", "xterm")
    uid, gid, groups = lookup_user(rootfs, create.get("User") or ic.get("User") or "")
    privileged = bool(hc.get("Privileged"))
    caps = set(_all_caps()) if privileged else set(DEFAULT_CAPS)
    for c in hc.get("CapAdd") or []:
        c = c.upper()
        if c == "ALL":
            caps = set(_all_caps())
        else:
            caps.add(c if c.startswith("CAP_") else "CAP_" + c)
    for c in hc.get("CapDrop") or []:
        c = c.upper()
        if c == "ALL":
            caps = set()
        else:
            caps.discard(c if c.startswith("CAP_") else "CAP_" + c)
    caps = sorted(caps)
    network_mode = hc.get("NetworkMode") or "none"
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if network_mode != "host":
        namespaces.append({"type": "network"})
    security = hc.get("SecurityOpt") or []
    nnp = any(s in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true") for s in security)
    rlimits = []
    for u in hc.get("Ulimits") or []:
        rlimits.append({"type": "RLIMIT_" + u["Name"].upper(), "soft": int(u["Soft"]), "hard": int(u["Hard"])})
    resources = {"devices": [{"allow": privileged, "access": "rwm"}]}
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
    if hc.get("Init"):
        # --init: a tiny init (tini, static) as PID 1 that reaps zombies and forwards signals, as docker-init
        init = next((p for p in ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/local/bin/tini-static")
                     if os.path.exists(p)), None)
        if init is None:
            from berth.errors import InvalidArgument
            raise InvalidArgument("--init needs tini-static (Debian's tini package) on the host")
        mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": init,
                       "options": ["bind", "ro", "nosuid", "nodev"]})
        args = ["/sbin/docker-init", "--"] + args
    for name in ("hostname", "hosts", "resolv.conf"):
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(files_dir, name),
                       "options": ["rbind", "rprivate"]})
    spec = {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": bool(create.get("Tty")),
            "user": {"uid": uid, "gid": gid, "additionalGids": groups},
            "args": args,
            "env": [f"{k}={v}" for k, v in env.items()],
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
            "cgroupsPath": f"{cgroup_parent}/{container_id}",
            "namespaces": namespaces,
            "maskedPaths": [] if privileged else list(MASKED),
            "readonlyPaths": [] if privileged else list(READONLY),
        },
    }
    return spec


def container_files(files_dir, container_id, hostname, host_network=False):
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container, written by berth."""
    os.makedirs(files_dir, exist_ok=True)
    with open(os.path.join(files_dir, "hostname"), "w") as f:
        f.write(hostname + "\n")
    with open(os.path.join(files_dir, "hosts"), "w") as f:
        f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                f"127.0.1.1\t{hostname}\n")
    resolv = ""
    try:
        with open("/etc/resolv.conf") as f:
            resolv = "".join(line for line in f if not line.startswith("nameserver 127."))
    except OSError:
        pass
    with open(os.path.join(files_dir, "resolv.conf"), "w") as f:
        f.write(resolv)
