"""Every flag of docker's run/create, with its help text, and what it puts in the create body
beyond the basics (cli/containers.py's _body). A flag's value that does not parse is a
UsageError (exit 125, also for `update`'s flags that use these parsers)."""

import os

from berth.cli.args import UsageError
from berth.errors import BerthError

# (names, kwargs); "run" only: detach, detach-keys, sig-proxy
RUN_ONLY = ("--detach", "--detach-keys", "--sig-proxy", "--rm")


def add(p, run=True):
    A = p.add_argument
    app = {"action": "append", "default": []}
    if run:
        A("-d", "--detach", action="store_true", help="Run container in background and print container ID")
        A("--detach-keys", help="Override the key sequence for detaching a container")
        A("--sig-proxy", default="true", help="Proxy received signals to the process (default true)")
    A("--rm", action="store_true", help="Automatically remove the container and its associated anonymous volumes "
      "when it exits")
    A("-a", "--attach", **app, help="Attach to STDIN, STDOUT or STDERR")
    A("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    A("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    A("--name", help="Assign a name to the container")
    A("-e", "--env", **app, help="Set environment variables")
    A("--env-file", **app, help="Read in a file of environment variables")
    A("-w", "--workdir", help="Working directory inside the container")
    A("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    A("--group-add", **app, help="Add additional groups to join")
    A("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    A("-h", "--hostname", help="Container host name")
    A("--domainname", help="Container NIS domain name")
    A("--runtime", help="Runtime to use for this container")
    A("--platform", help="Set platform if server is multi-platform capable")
    A("--pull", default="missing",  # its values checked in _docker_checks, in docker's words
      help='Pull image before running ("always", "missing", "never") (default "missing")')
    A("-q", "--quiet", action="store_true", help="Suppress the pull output")
    A("--disable-content-trust", default="true", help="Skip image verification (default true)")
    A("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    A("-m", "--memory", help="Memory limit")
    A("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    A("--memory-reservation", help="Memory soft limit")
    A("--memory-swappiness", type=int, help="Tune container memory swappiness (0 to 100) (default -1)")
    A("--kernel-memory", help="Kernel memory limit")
    A("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    A("--oom-score-adj", type=int, help="Tune host's OOM preferences (-1000 to 1000)")
    A("--cpus", type=float, help="Number of CPUs")
    A("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    A("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    A("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    A("--cpu-rt-period", type=int, help="Limit CPU real-time period in microseconds")
    A("--cpu-rt-runtime", type=int, help="Limit CPU real-time runtime in microseconds")
    A("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    A("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    # docker's Windows-only flags: hidden from --help and refused (windows_only) by a CLI whose
    # daemon runs on Linux, as berthd does
    A("--cpu-count", type=int, hidden=True, help="CPU count (Windows only)")
    A("--cpu-percent", type=int, hidden=True, help="CPU percent (Windows only)")
    A("--io-maxbandwidth", hidden=True, help="Maximum IO bandwidth limit for the system drive (Windows only)")
    A("--io-maxiops", type=int, hidden=True, help="Maximum IOps limit for the system drive (Windows only)")
    A("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000, or 0 to disable")
    A("--blkio-weight-device", **app, help="Block IO weight (relative device weight)")
    A("--device-read-bps", **app, help="Limit read rate (bytes per second) from a device")
    A("--device-read-iops", **app, help="Limit read rate (IO per second) from a device")
    A("--device-write-bps", **app, help="Limit write rate (bytes per second) to a device")
    A("--device-write-iops", **app, help="Limit write rate (IO per second) to a device")
    A("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    A("--ulimit", **app, help="Ulimit options")
    A("--shm-size", help="Size of /dev/shm")
    A("--sysctl", **app, help="Sysctl options")
    A("--device", **app, help="Add a host device to the container")
    A("--device-cgroup-rule", **app, help="Add a rule to the cgroup allowed devices list")
    A("--gpus", help="GPU devices to add to the container ('all' to pass all GPUs) (refused: no GPU support)")
    A("--cap-add", **app, help="Add Linux capabilities")
    A("--cap-drop", **app, help="Drop Linux capabilities")
    A("--privileged", action="store_true", help="Give extended privileges to this container")
    A("--security-opt", **app, help="Security Options")
    A("--pid", help="PID namespace to use")
    A("--ipc", help="IPC mode to use")
    A("--uts", help="UTS namespace to use")
    A("--userns", help="User namespace to use")
    A("--cgroupns", help="Cgroup namespace to use (host|private)")
    A("--cgroup-parent", help="Optional parent cgroup for the container")
    A("--isolation", help="Container isolation technology")
    A("--storage-opt", **app, help="Storage driver options for the container")
    A("--restart", default="no", help='Restart policy to apply when a container exits (default "no")')
    A("--stop-signal", help="Signal to stop the container")
    A("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    A("-l", "--label", **app, help="Set meta data on a container")
    A("--label-file", **app, help="Read in a line delimited file of labels")
    A("--annotation", **app, help="Add an annotation to the container (passed through to the OCI runtime)")
    A("--cidfile", help="Write the container ID to the file")
    A("--log-driver", help="Logging driver for the container")
    A("--log-opt", **app, help="Log driver options")
    A("--init", action="store_true", help="Run an init inside the container that forwards signals and reaps processes")
    A("--health-cmd", help="Command to run to check health")
    A("--health-interval", help="Time between running the check (ms|s|m|h) (default 0s)")
    A("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
    A("--health-retries", type=int, help="Consecutive failures needed to report unhealthy")
    A("--health-start-period", help="Start period for the container to initialize before starting "
      "health-retries countdown (ms|s|m|h) (default 0s)")
    A("--health-start-interval", help="Time between running the check during the start period (ms|s|m|h) (default 0s)")
    A("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    A("--link", **app, help="Add link to another container")
    A("--link-local-ip", **app, help="Container IPv4/IPv6 link-local addresses")
    A("--use-api-socket", action="store_true", help="Bind mount Docker API socket and required auth (refused)")
    from berth.cli import netflags
    netflags.add_flags(p)
    if "--ip6" not in p.flags:  # netflags may define it (the networks' flags)
        A("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    A("-v", "--volume", **app, help="Bind mount a volume")
    A("--mount", **app, help="Attach a filesystem mount to the container")
    A("--tmpfs", **app, help="Mount a tmpfs directory")
    A("--volumes-from", **app, help="Mount volumes from the specified container(s)")
    A("--volume-driver", help="Optional volume driver for the container")
    A("image", help="the image to run")
    A("command", nargs="...", help="the command and its arguments")


WINDOWS_ONLY = ("cpu-count", "cpu-percent", "io-maxbandwidth", "io-maxiops")


def windows_only(a):
    """The docker CLI's check of the flags it has for a Windows daemon only: any of them given
    (whatever its value), one line each in the flags' order, and nothing is sent: exit 1."""
    given = [f for f in WINDOWS_ONLY if getattr(a, f.replace("-", "_"), None) is not None]
    if given:
        # the sizes docker's flag parsing takes (MemBytes): their errors come before this check
        for flag, value in (("-m, --memory", a.memory), ("--memory-reservation", a.memory_reservation),
                            ("--kernel-memory", a.kernel_memory), ("--shm-size", a.shm_size),
                            ("--io-maxbandwidth", a.io_maxbandwidth)):
            if value:
                ram(flag, value)
        if a.memory_swap:
            _ram_or_unlimited("--memory-swap", a.memory_swap)
        raise PlainError("\n".join(f'"--{f}" is only supported on a Docker daemon running on windows, '
                                   "but the Docker daemon is running on linux" for f in given))


def ram(flag, s):
    """docker's RAMInBytes ("-m 1x": invalid suffix) with its flag error."""
    from berth.units import parse_size
    s = (s or "").strip()
    try:
        return parse_size(s, binary=True, suffix_words=True)
    except ValueError as e:
        raise UsageError(f"invalid argument \"{s}\" for \"{flag}\" flag: {e}") from None


def ulimit(value):
    """docker's ParseUlimit: name=soft[:hard] -> the API's {Name, Soft, Hard}, its flag errors."""
    from berth.errors import InvalidArgument
    from berth.opts import parse_ulimit
    try:
        return parse_ulimit(value)
    except InvalidArgument as e:
        raise UsageError(f"invalid argument \"{value}\" for \"--ulimit\" flag: {e.message}") from None


def weight_device(value):
    """docker's ValidateWeightDevice: /dev/path:weight (10 to 1000, or 0), its flag errors."""
    def bad(why):
        return UsageError(f"invalid argument \"{value}\" for \"--blkio-weight-device\" flag: {why}: {value}")
    path, sep, w = value.partition(":")
    if not sep:
        raise bad("bad format")
    if not path.startswith("/dev/"):
        raise bad("bad format for device path")
    import re
    if not re.fullmatch(r"[0-9]+", w) or int(w) >= 1 << 16 or 0 < int(w) < 10 or int(w) > 1000:
        raise bad("invalid weight for device")
    return {"Path": path, "Weight": int(w)}


def _ram_or_unlimited(flag, s):
    return -1 if s.strip() == "-1" else ram(flag, s)


def duration(flag, s):
    """Go's time.ParseDuration for the --health-* flags, in nanoseconds (the docker CLI's words
    when it cannot: Go's own, e.g. `time: missing unit in duration "5"`)."""
    if s in (None, ""):
        return 0
    from berth.gotime import parse_duration
    try:
        return parse_duration(s)
    except ValueError as e:
        raise UsageError(f'invalid argument "{s}" for "--{flag}" flag: {e}') from None


def _device(spec):
    parts = spec.split(":")
    src = parts[0]
    dst, perms = src, "rwm"
    if len(parts) == 2:
        if all(c in "rwm" for c in parts[1]) and not parts[1].startswith("/"):
            perms = parts[1]
        else:
            dst = parts[1]
    elif len(parts) == 3:
        dst, perms = parts[1], parts[2]
    elif len(parts) > 3:
        raise UsageError(f"invalid argument \"{spec}\" for \"--device\" flag: invalid device specification: {spec}")
    return {"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}


def _throttle(flag, values, iops):
    out = []
    for v in values:
        path, sep, rate = v.rpartition(":")
        if not sep or not path.startswith("/dev/"):
            raise UsageError(f"invalid argument \"{v}\" for \"--{flag}\" flag: bad format: {v}")
        out.append({"Path": path, "Rate": int(rate) if iops else ram(f"--{flag}", rate)})
    return out


_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
            "kernel.shmmni", "kernel.shm_rmid_forced")


def _check_sysctl(s):
    """docker's opts.ValidateSysctl: the namespaced sysctls only (the daemon says more)."""
    k, eq, _ = s.partition("=")
    if not eq or not (k in _SYSCTLS or k.startswith(("net.", "fs.mqueue."))):
        raise UsageError(f"invalid argument \"{s}\" for \"--sysctl\" flag: sysctl '{s}' is not allowed")


def _is_mac(s):
    """Go's net.ParseMAC: 6, 8 or 20 octets as xx:xx.. or xx-xx.., or xxxx.xxxx.. groups."""
    hexd = set("0123456789abcdefABCDEF")
    for sep, width, counts in ((":", 2, (6, 8, 20)), ("-", 2, (6, 8, 20)), (".", 4, (3, 4, 10))):
        parts = s.split(sep)
        if len(parts) in counts and all(len(x) == width and set(x) <= hexd for x in parts):
            return True
    return False


def _check_security_opt(opt):
    """docker's parseSecurityOpts: key=value (or key:value), no-new-privileges alone; a seccomp
    profile file must be readable JSON (the docker CLI reads it; berthd reads it again)."""
    k, eq, v = opt.partition("=")
    if not eq and k != "no-new-privileges":
        k, eq, v = opt.partition(":")
    if (not eq or not v) and k != "no-new-privileges":
        raise BerthError(f'Invalid --security-opt: "{opt}"')
    if k == "seccomp" and v not in ("builtin", "unconfined") and not v.lstrip().startswith("{"):
        try:
            with open(v, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BerthError(f"opening seccomp profile ({v}) failed: open {v}: "
                             f"{(e.strerror or str(e)).lower()}") from None
        import json
        try:
            json.loads(data)
        except ValueError as e:
            raise BerthError(f"compacting json for seccomp profile ({v}) failed: {e}") from None


def _check_gpus(value):
    """docker's GpuOpts: fields count (a bare one too: "all" or a number), driver, device,
    capabilities, options, each once."""
    def bad(why):
        return UsageError(f"invalid argument \"{value}\" for \"--gpus\" flag: {why}")
    if '"' in value:  # CSV quoting ("device=0,1"): left to the daemon (which has no GPUs to give)
        return
    seen = set()
    for field in value.split(","):
        key, eq, val = field.partition("=")
        if key in seen:
            raise bad(f"gpu request key '{key}' can be specified only once")
        seen.add(key)
        if not eq:
            key, val = "count", key
            seen.add("count")
        if key == "count" and val != "all" and not val.lstrip("-").isdigit():
            raise bad(f"invalid count ({val}): value must be either \"all\" or an integer: invalid syntax")
        if key not in ("count", "driver", "device", "capabilities", "options"):
            raise bad(f"unexpected key '{key}' in '{field}'")


def pass_env(e):
    """docker's opts.ValidateEnv: NAME without "=" takes the caller's value when it has one, else
    goes as it is (a bare name: the container does not have the variable), NAME=... as given."""
    if "=" in e or e not in os.environ:
        return e
    return f"{e}={os.environ[e]}"


def env_file(path):
    """docker's --env-file: NAME=value lines (the value as it is, nothing trimmed), a bare NAME
    takes the caller's value (else it is left out)."""
    return kv_file(path, os.environ.get)


def kv_file(path, lookup=lambda name: None):
    """docker's key=value files (opts.parseKeyValueFile, --env-file and --label-file): each line's
    leading white space dropped, blank lines and #comments skipped, a UTF-8 byte order mark
    dropped; NAME=value as it is, a bare NAME as lookup(NAME) gives it (None: left out)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BerthError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            shown = " ".join(str(b) for b in raw)
            raise BerthError(f"invalid env file ({path}): invalid utf8 bytes at line {n}: [{shown}]") from None
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        if any(c in name for c in " \t\n\v\f\r"):
            raise BerthError(f"invalid env file ({path}): variable '{name}' contains whitespaces")
        if not name:
            raise BerthError(f"invalid env file ({path}): no variable name on line '{line}'")
        if eq:
            out.append(f"{name}={value}")
        elif (found := lookup(name)) is not None:
            out.append(f"{name}={found}")
    return out


def check_env(values):
    """docker's opts.ValidateEnv of each -e: a name before any "=" (run, create, exec)."""
    for e in values:
        if not e.partition("=")[0]:
            raise UsageError(f"invalid argument \"{e}\" for \"-e, --env\" flag: invalid environment variable: {e}")


def _docker_checks(a):
    """What the docker CLI checks of run/create's flags before it sends anything (its status 125),
    beyond what the parsing of each flag checks."""
    if a.pull not in ("always", "missing", "never"):
        raise BerthError(f"invalid pull option: '{a.pull}': must be one of \"always\", \"missing\" or \"never\"")
    check_env(a.env)
    if a.mac_address and not _is_mac(a.mac_address):
        raise BerthError(f"{a.mac_address} is not a valid mac address")
    if a.dns:
        import ipaddress
        for d in a.dns:
            try:
                ipaddress.ip_address(d.strip())
            except ValueError:
                raise UsageError(f"invalid argument \"{d}\" for \"--dns\" flag: IP address is not correctly "
                                 f"formatted: {d}") from None
    sw = a.memory_swappiness
    if sw is not None and sw != -1 and not 0 <= sw <= 100:
        raise BerthError(f"invalid value: {sw}. Valid memory swappiness range is 0-100")
    if a.userns and a.userns.strip() not in ("", "host"):
        raise BerthError("--userns: invalid USER mode")
    for opt in a.security_opt:
        _check_security_opt(opt)
    for opt in a.storage_opt:
        if "=" not in opt:
            raise BerthError("invalid storage option")
    if a.log_driver == "none" and a.log_opt:
        raise BerthError("invalid logging opts for driver none")
    nets = a.network or []
    builtin = [n for n in nets if n in ("default", "bridge", "host", "none") or n.startswith("container:")]
    if builtin and len(builtin) < len(nets):
        raise BerthError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
    if a.gpus:
        _check_gpus(a.gpus)
    if a.network_alias and (not nets or builtin):
        raise BerthError("network-scoped aliases are only supported for user-defined networks")


def apply(a, body, interactive_tty_check=True):
    """The flags of this module into the create body (in place). One-line errors, docker's words."""
    _docker_checks(a)
    hc = body["HostConfig"]
    if a.memory:
        hc["Memory"] = ram("-m, --memory", a.memory)
    if a.memory_swap:
        hc["MemorySwap"] = _ram_or_unlimited("--memory-swap", a.memory_swap)
    if a.memory_reservation:
        hc["MemoryReservation"] = ram("--memory-reservation", a.memory_reservation)
    if a.memory_swappiness is not None and a.memory_swappiness != -1:
        hc["MemorySwappiness"] = a.memory_swappiness
    if a.kernel_memory:
        hc["KernelMemory"] = ram("--kernel-memory", a.kernel_memory)
    if a.oom_kill_disable:
        hc["OomKillDisable"] = True
    if a.oom_score_adj is not None:
        hc["OomScoreAdj"] = a.oom_score_adj
    if a.shm_size:
        hc["ShmSize"] = ram("--shm-size", a.shm_size)
    for key, v in (("CpuPeriod", a.cpu_period), ("CpuQuota", a.cpu_quota), ("CpuRealtimePeriod", a.cpu_rt_period),
                   ("CpuRealtimeRuntime", a.cpu_rt_runtime), ("CpuCount", a.cpu_count),
                   ("CpuPercent", a.cpu_percent), ("IOMaximumIOps", a.io_maxiops), ("BlkioWeight", a.blkio_weight)):
        if v:
            hc[key] = v
    if a.io_maxbandwidth:
        hc["IOMaximumBandwidth"] = ram("--io-maxbandwidth", a.io_maxbandwidth)
    if a.cpuset_cpus:
        hc["CpusetCpus"] = a.cpuset_cpus
    if a.cpuset_mems:
        hc["CpusetMems"] = a.cpuset_mems
    if a.blkio_weight_device:
        hc["BlkioWeightDevice"] = [weight_device(x) for x in a.blkio_weight_device]
    for flag, key, iops in (("device-read-bps", "BlkioDeviceReadBps", False),
                            ("device-write-bps", "BlkioDeviceWriteBps", False),
                            ("device-read-iops", "BlkioDeviceReadIOps", True),
                            ("device-write-iops", "BlkioDeviceWriteIOps", True)):
        vals = getattr(a, flag.replace("-", "_"))
        if vals:
            hc[key] = _throttle(flag, vals, iops)
    if a.sysctl:
        sysctls = {}
        for s in a.sysctl:
            _check_sysctl(s)
            k, _, v = s.partition("=")
            sysctls[k] = v
        hc["Sysctls"] = sysctls
    if a.device:
        hc["Devices"] = [_device(d) for d in a.device]
    if a.device_cgroup_rule:
        import re
        for r in a.device_cgroup_rule:
            if not re.fullmatch(r"([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})", r):
                raise UsageError(f"invalid argument \"{r}\" for \"--device-cgroup-rule\" flag: "
                                 f"invalid device cgroup format '{r}'")
        hc["DeviceCgroupRules"] = list(a.device_cgroup_rule)
    if a.gpus:
        hc["DeviceRequests"] = [{"Driver": "", "Count": -1 if a.gpus == "all" else 0, "DeviceIDs": None,
                                 "Capabilities": [["gpu"]], "Options": {}}]
    if a.group_add:
        hc["GroupAdd"] = list(a.group_add)
    for key, v in (("PidMode", a.pid), ("IpcMode", a.ipc), ("UTSMode", a.uts), ("UsernsMode", a.userns),
                   ("CgroupnsMode", a.cgroupns), ("CgroupParent", a.cgroup_parent), ("Isolation", a.isolation),
                   ("VolumeDriver", a.volume_driver)):
        if v:
            hc[key] = v
    if a.pid and a.pid not in ("host",) and not (a.pid.startswith("container:") and len(a.pid) > 10):
        raise BerthError("--pid: invalid PID mode")
    if a.uts and a.uts != "host":
        raise BerthError("--uts: invalid UTS mode")
    if a.cgroupns and a.cgroupns not in ("host", "private"):
        raise BerthError("--cgroupns: invalid CGROUP mode")
    if a.storage_opt:
        hc["StorageOpt"] = dict(s.partition("=")[::2] for s in a.storage_opt)
    if a.link:
        hc["Links"] = list(a.link)
    if a.log_driver:
        hc.setdefault("LogConfig", {"Type": "", "Config": {}})["Type"] = a.log_driver
    if a.annotation:
        hc["Annotations"] = dict(s.partition("=")[::2] for s in a.annotation)
    if a.use_api_socket:
        raise BerthError("--use-api-socket is not supported by berth")
    if a.domainname:
        body["Domainname"] = a.domainname
    # restart policy, as docker's CLI parses it
    name, colon, count = (a.restart or "no").partition(":")
    if colon:
        try:
            n = int(count)
        except ValueError:
            raise BerthError("invalid restart policy format: maximum retry count must be an integer") from None
    else:
        n = 0
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": n}
    if a.rm and name not in ("", "no"):
        raise BerthError("conflicting options: cannot specify both --restart and --rm")
    # labels from files, then -l
    labels = {}
    for path in a.label_file:
        for line in kv_file(path):
            k, _, v = line.partition("=")
            labels[k] = v
    labels.update(body.get("Labels") or {})
    body["Labels"] = labels
    # health
    hcfg = {}
    if a.no_healthcheck:
        if (a.health_cmd or a.health_interval or a.health_timeout or a.health_retries or a.health_start_period
                or a.health_start_interval):
            raise BerthError("--no-healthcheck conflicts with --health-* options")
        hcfg = {"Test": ["NONE"]}
    else:
        if a.health_cmd:
            hcfg["Test"] = ["CMD-SHELL", a.health_cmd]
        for flag, key in (("health-interval", "Interval"), ("health-timeout", "Timeout"),
                          ("health-start-period", "StartPeriod"), ("health-start-interval", "StartInterval")):
            v = getattr(a, flag.replace("-", "_"))
            if v:
                d = duration(flag, v)
                if d < 0:
                    raise BerthError(f"--{flag} cannot be negative")
                hcfg[key] = d
        if a.health_retries:
            if a.health_retries < 0:
                raise BerthError("--health-retries cannot be negative")
            hcfg["Retries"] = a.health_retries
    if hcfg:
        body["Healthcheck"] = hcfg
    # -a/--attach
    if a.attach:
        want = set()
        for s in a.attach:
            if s.lower() not in ("stdin", "stdout", "stderr"):
                raise UsageError(f"invalid argument \"{s}\" for \"-a, --attach\" flag: valid streams are STDIN, "
                                 "STDOUT and STDERR")
            want.add(s.lower())
        if getattr(a, "detach", False):
            raise PlainError("conflicting options: cannot specify both --attach and --detach")
        body["AttachStdin"] = "stdin" in want
        body["AttachStdout"] = "stdout" in want
        body["AttachStderr"] = "stderr" in want
    eps = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if a.ip6 or a.link_local_ip:
        if not eps:
            mode = hc.get("NetworkMode") or "default"
            body.setdefault("NetworkingConfig", {}).setdefault("EndpointsConfig", {})[mode] = {}
            eps = body["NetworkingConfig"]["EndpointsConfig"]
        first = next(iter(eps.values()))
        ipam = first.setdefault("IPAMConfig", {}) or {}
        first["IPAMConfig"] = ipam
        if a.ip6:
            ipam["IPv6Address"] = a.ip6
        if a.link_local_ip:
            ipam["LinkLocalIPs"] = list(a.link_local_ip)
    if interactive_tty_check and a.tty and body.get("AttachStdin") and not os.isatty(0):
        raise TtyError("the input device is not a TTY")
    return body


class PlainError(BerthError):
    """A check docker's `run` makes after its flags' (its error as it is, not its status 125): exit 1."""
    code = 1


class TtyError(PlainError):
    """docker prints it alone and exits 1."""
