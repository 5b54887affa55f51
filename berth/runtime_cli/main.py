"""berth-runc: runc's command line over berth.runtime.

Argument parsing only; the work is done by berth.runtime. Imports what a command needs.
"""

import os
import sys

from berth import fastjson as json
from berth.errors import BerthError, NotFound

DEFAULT_ROOT = "/run/berth-runc"
VERSION = "1.2.0"


class _Log:
    def __init__(self, path, fmt):
        self.path = path
        self.fmt = fmt

    def error(self, msg):
        if not self.path:
            return
        import datetime
        # logrus's RFC 3339 time, whole seconds
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.fmt == "json":
            line = json.dumps({"level": "error", "msg": msg, "time": now})
        else:
            line = f'time="{now}" level=error msg={json.dumps(msg)}'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


_GLOBAL_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}
_GLOBAL_BOOL = {"--debug", "--systemd-cgroup", "-v", "--version", "-h", "--help"}

USAGE = """usage: berth-runc [global options] COMMAND [options] [arguments]

berth's OCI runtime, with runc's command line.

commands:
  create    create a container
  start     start a created container
  run       create and start a container, and wait for it (-d to detach)
  state     print a container's state as JSON
  kill      send a signal to a container's init (or all its processes with --all)
  delete    delete a container
  update    change a running container's resources
  exec      run a process in a container
  pause     pause every process in a container
  resume    resume a paused container
  ps        list the processes in a container
  list      list containers
  spec      write a default config.json
  features  print the runtime's features as JSON
  events    print a container's stats and OOM kills as JSON (--stats: once)

global options:
  --root DIR             root directory for container state (default /run/berth-runc)
  --log FILE             log file
  --log-format text|json log format
  --debug                debug output
  --systemd-cgroup       cgroupsPath is slice:prefix:name
  -v, --version          print the version
"""


class _Globals:
    root = DEFAULT_ROOT
    log = ""
    log_format = "text"
    debug = False
    systemd_cgroup = False
    version = False
    help = False


def _parse_globals(argv):
    g = _Globals()
    g.log = os.environ.get("BERTH_RUNC_LOG", "")
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name.startswith("-") and not name.startswith("--") and len(name) > 2:
            name = "-" + name  # runc (urfave/cli) also takes -root, -log ...
        if name in _GLOBAL_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise BerthError(f"flag {name} needs a value")
                value = argv[i]
            setattr(g, name[2:].replace("-", "_"), value)
        elif name in _GLOBAL_BOOL:
            if name in ("-v", "--version"):
                g.version = True
            elif name in ("-h", "--help"):
                g.help = True
            else:
                setattr(g, name[2:].replace("-", "_"), True)
        else:
            raise BerthError(f"unknown global flag {arg}")
        i += 1
    if g.log_format not in ("text", "json"):
        raise BerthError(f"invalid --log-format {g.log_format!r}: text or json")
    return g, argv[i:]


# Each command: its flags (name -> (dest, kind, default, help)), its positional arguments,
# and whether everything after them is passed through (exec's command, ps's arguments).
# A tiny parser instead of argparse: the runtime's start-up time is part of every container start.
_BUNDLE = {
    "--bundle": ("bundle", "str", ".", "path to the bundle directory"), "-b": "--bundle",
    "--pid-file": ("pid_file", "str", None, "file to write the init's pid to"),
    "--console-socket": ("console_socket", "str", None, "unix socket that receives the pty master"),
    "--no-pivot": ("no_pivot", "bool", False, "use MS_MOVE + chroot instead of pivot_root"),
    "--no-new-keyring": ("no_new_keyring", "bool", False, "keep the caller's session keyring (no keyring of its own)"),
    "--preserve-fds": ("preserve_fds", "int", 0, "pass N more fds (3..3+N-1) to the container"),
}
COMMANDS = {
    "create": (_BUNDLE, ["id"], None),
    "run": (dict(_BUNDLE, **{
        "--detach": ("detach", "bool", False, "do not wait for the container"), "-d": "--detach",
        "--keep": ("keep", "bool", False, "do not delete the container after it exits"),
        "--no-subreaper": ("no_subreaper", "bool", False, "orphaned processes are not re-parented to berth-runc")}),
        ["id"], None),
    "start": ({}, ["id"], None),
    "state": ({}, ["id"], None),
    "pause": ({}, ["id"], None),
    "resume": ({}, ["id"], None),
    "kill": ({"--all": ("all", "bool", False, "signal every process in the container"), "-a": "--all"},
             ["id", "signal?"], None),
    "delete": ({"--force": ("force", "bool", False, "kill a running container first"), "-f": "--force"},
               ["id"], None),
    "exec": ({
        "--process": ("process", "str", None, "process.json to run"), "-p": "--process",
        "--tty": ("tty", "bool", False, "allocate a pseudo-terminal"), "-t": "--tty",
        "--detach": ("detach", "bool", False, "do not wait for the process"), "-d": "--detach",
        "--pid-file": ("pid_file", "str", None, "file to write the process's pid to"),
        "--console-socket": ("console_socket", "str", None, "unix socket that receives the pty master"),
        "--env": ("env", "list", None, "KEY=VALUE to add to the environment"), "-e": "--env",
        "--cwd": ("cwd", "str", None, "working directory"),
        "--user": ("user", "str", None, "uid[:gid]"), "-u": "--user",
        "--additional-gids": ("additional_gids", "intlist", None, "additional gid"), "-g": "--additional-gids",
        "--cap": ("cap", "list", None, "add a capability"), "-c": "--cap",
        "--no-new-privs": ("no_new_privs", "bool", False, "set no_new_privs"),
        "--preserve-fds": ("preserve_fds", "int", 0, "pass N more fds to the process"),
        "--process-label": ("process_label", "str", None, ""),
        "--apparmor": ("apparmor", "str", None, ""),
        "--ignore-paused": ("ignore_paused", "bool", False, ""),
        "--cgroup": ("cgroup", "list", None, "join an existing sub-cgroup: [CONTROLLER[,CONTROLLER]:]PATH"),
    }, ["id"], "command"),
    "list": ({"--format": ("format", "str", "table", "table or json"), "-f": "--format",
              "--quiet": ("quiet", "bool", False, "only ids"), "-q": "--quiet"}, [], None),
    "ps": ({"--format": ("format", "str", "table", "table or json"), "-f": "--format"}, ["id"], "ps_args"),
    "spec": ({"--bundle": ("bundle", "str", ".", "where to write config.json"), "-b": "--bundle",
              "--rootless": ("rootless", "bool", False, "a spec for a rootless container")}, [], None),
    "features": ({}, [], None),
    "events": ({"--interval": ("interval", "str", "5s", "how often to print the stats (a Go duration)"),
                "--stats": ("stats", "bool", False, "print the stats once and exit")}, ["id"], None),
    "update": ({
        "--resources": ("resources", "str", None, "a JSON file of linux.resources to apply, - for stdin"),
        "-r": "--resources",
        **{f"--{name}": (name.replace("-", "_"), "str", None, what) for name, what in (
            ("blkio-weight", "block I/O weight, 10 to 1000"), ("cpu-period", "CPU CFS period (us)"),
            ("cpu-quota", "CPU CFS quota (us)"), ("cpu-share", "CPU shares"),
            ("cpu-rt-period", "CPU realtime period (us)"), ("cpu-rt-runtime", "CPU realtime runtime (us)"),
            ("cpuset-cpus", "CPUs to use"), ("cpuset-mems", "memory nodes to use"),
            ("memory", "memory limit (bytes, or with a k/m/g suffix)"), ("memory-reservation", "memory soft limit"),
            ("memory-swap", "memory + swap limit, -1 for unlimited"), ("kernel-memory", "kernel memory limit"),
            ("kernel-memory-tcp", "kernel TCP memory limit"), ("pids-limit", "maximum number of pids"),
            ("l3-cache-schema", "Intel RDT L3 schema (unsupported)"),
            ("mem-bw-schema", "Intel RDT memory bandwidth schema (unsupported)"))},
    }, ["id"], None),
}


class Args:
    pass


def _command_help(cmd):
    flags, positional, rest = COMMANDS[cmd]
    lines = [f"usage: berth-runc {cmd} [options] " + " ".join(p.rstrip("?").upper() for p in positional)
             + (" [ARGS...]" if rest else ""), "", "options:"]
    for name, spec in flags.items():
        if isinstance(spec, tuple):
            short = [k for k, v in flags.items() if v == name]
            lines.append(f"  {', '.join(short + [name]):28} {spec[3]}")
    return "\n".join(lines)


def parse_command(cmd, argv):
    if cmd in ("checkpoint", "restore"):
        raise BerthError(f"{cmd} is not supported: berth-runc has no CRIU support")
    if cmd not in COMMANDS:
        raise BerthError(f"unknown command {cmd!r}; see berth-runc --help")
    flags, positional, rest_name = COMMANDS[cmd]
    args = Args()
    for spec in flags.values():
        if isinstance(spec, tuple):
            setattr(args, spec[0], [] if spec[1] in ("list", "intlist") else spec[2])
    pos = []
    rest = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if rest_name and len(pos) == len(positional):
            rest.append(tok)
            continue
        if tok == "--":
            pos.extend(argv[i:])
            break
        if tok in ("-h", "--help"):
            print(_command_help(cmd))
            raise SystemExit(0)
        if tok.startswith("-") and len(tok) > 1:
            name, eq, value = tok.partition("=")
            if not name.startswith("--") and len(name) > 2:
                name = "-" + name  # runc also takes -bundle, -pid-file ...
            spec = flags.get(name)
            if isinstance(spec, str):
                spec = flags[spec]
            if spec is None:
                raise BerthError(f"{cmd}: unknown flag {tok}")
            dest, kind = spec[0], spec[1]
            if kind == "bool":
                setattr(args, dest, value.lower() not in ("false", "0") if eq else True)
                continue
            if not eq:
                if i >= len(argv):
                    raise BerthError(f"{cmd}: flag {name} needs a value")
                value = argv[i]
                i += 1
            if kind in ("int", "intlist"):
                try:
                    value = int(value)
                except ValueError:
                    raise BerthError(f"{cmd}: flag {name} needs an integer, not {value!r}") from None
            if kind in ("list", "intlist"):
                getattr(args, dest).append(value)
            else:
                setattr(args, dest, value)
            continue
        pos.append(tok)
    required = [p for p in positional if not p.endswith("?")]
    if len(pos) < len(required):
        raise BerthError(f"{cmd}: missing {' '.join(p.upper() for p in required[len(pos):])}")
    if len(pos) > len(positional):
        raise BerthError(f"{cmd}: unexpected argument {pos[len(positional)]!r}")
    for j, p in enumerate(positional):
        setattr(args, p.rstrip("?"), pos[j] if j < len(pos) else None)
    if rest_name:
        setattr(args, rest_name, rest)
    return args


def _exec_process(args, root):
    if args.process:
        try:
            with open(args.process) as f:
                return json.load(f)
        except OSError as e:
            raise BerthError(f"cannot read process file {args.process}: {e.strerror}") from None
        except ValueError as e:
            raise BerthError(f"{args.process}: invalid JSON: {e}") from None
    from berth.runtime import state as statemod
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise BerthError("exec needs a command or --process")
    process = dict(statemod.load(root, args.id).config().get("process") or {})
    process["args"] = command
    process["terminal"] = args.tty
    process["env"] = list(process.get("env") or []) + args.env
    if args.cwd:
        process["cwd"] = args.cwd
    user = dict(process.get("user") or {})
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            user["uid"] = int(uid)
            if gid:
                user["gid"] = int(gid)
        except ValueError:
            raise BerthError(f"invalid --user {args.user!r}: numeric uid[:gid] expected") from None
    if args.additional_gids:
        user["additionalGids"] = args.additional_gids
    process["user"] = user
    if args.cap:
        caps = dict(process.get("capabilities") or {})
        for k in ("bounding", "effective", "permitted"):
            caps[k] = list(dict.fromkeys(list(caps.get(k) or []) + args.cap))
        process["capabilities"] = caps
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    if args.apparmor:
        process["apparmorProfile"] = args.apparmor
    if args.process_label:
        process["selinuxLabel"] = args.process_label
    process.pop("consoleSize", None)
    return process


def _listen_fds():
    """How many sockets systemd's socket activation passed to this process (fds 3..): its
    LISTEN_FDS when LISTEN_PID names this process, else none."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return 0
    try:
        return max(int(os.environ.get("LISTEN_FDS", "")), 0)
    except ValueError:
        return 0


def _sub_cgroups(values):
    """exec --cgroup values as {controller: path}: one PATH alone ({"": PATH}, every hierarchy),
    or CONTROLLER[,CONTROLLER]:PATH ones; runc's words for the rest."""
    out = {}
    for v in values:
        parts = v.split(":", 2)
        if len(parts) > 2:
            raise BerthError(f"invalid --cgroup argument: {v}")
        if len(parts) == 1:
            if len(values) != 1:
                raise BerthError(f"invalid --cgroup argument: {v} (missing <controller>: prefix)")
            out[""] = v
        else:
            for ctrl in parts[0].split(","):
                out[ctrl] = parts[1]
    return out


def _ram(flag, s):
    """go-units' RAMInBytes ("64m", "1.5g", "512"), or -1, in runc's words."""
    if s == "-1":
        return -1
    from berth.units import parse_size
    try:
        return parse_size(s, binary=True)
    except ValueError as e:
        raise BerthError(f"invalid value for {flag}: {e}") from None


def _update_resources(args):
    """runc update's resources: the JSON of -r (a file, - for stdin; its other flags then
    ignored), else the flags given."""
    if args.resources:
        try:
            if args.resources == "-":
                text = sys.stdin.read()
            else:
                with open(args.resources) as f:
                    text = f.read()
        except OSError as e:
            raise BerthError(f"open {args.resources}: {e.strerror.lower()}") from None
        try:
            return json.loads(text)
        except ValueError as e:
            raise BerthError(f"invalid resources JSON: {e}") from None
    if args.l3_cache_schema or args.mem_bw_schema:
        raise BerthError("Intel RDT is not supported")
    r = {}

    def num(flag, value, unsigned):
        try:
            v = int(value)
            if unsigned and v < 0:
                raise ValueError
        except ValueError:
            parse = "ParseUint" if unsigned else "ParseInt"
            raise BerthError(f'invalid value for {flag}: strconv.{parse}: parsing "{value}": invalid syntax') from None
        return v
    for flag, section, key in (("memory", "memory", "limit"), ("memory-swap", "memory", "swap"),
                               ("memory-reservation", "memory", "reservation"), ("kernel-memory", "memory", "kernel"),
                               ("kernel-memory-tcp", "memory", "kernelTCP")):
        value = getattr(args, flag.replace("-", "_"))
        if value:
            r.setdefault(section, {})[key] = _ram(flag, value)
    for flag, section, key, unsigned in (("cpu-period", "cpu", "period", True), ("cpu-quota", "cpu", "quota", False),
                                         ("cpu-share", "cpu", "shares", True),
                                         ("cpu-rt-period", "cpu", "realtimePeriod", True),
                                         ("cpu-rt-runtime", "cpu", "realtimeRuntime", False),
                                         ("pids-limit", "pids", "limit", False),
                                         ("blkio-weight", "blockIO", "weight", True)):
        value = getattr(args, flag.replace("-", "_"))
        if value:
            r.setdefault(section, {})[key] = num(flag, value, unsigned)
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        value = getattr(args, flag.replace("-", "_"))
        if value:
            r.setdefault("cpu", {})[key] = value
    return r


def _table(rows, minwidth=0):
    """Go's tabwriter (padding 3, the given minimum width) over rows: the last column unpadded."""
    widths = [max(minwidth, max(len(str(r[i])) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "\n".join("".join(str(c).ljust(w) for c, w in zip(r, widths)) + str(r[-1]) for r in rows)


def _owner(path):
    """The user owning a container's state directory (runc's list: "#<uid>" for an unknown one)."""
    import pwd
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _run(args):
    root = args.root
    c = args.cmd
    if c in ("create", "run", "exec"):
        # these put a process of ours into the container: run from a read-only interpreter file
        from berth.linux import exe
        exe.ensure_protected("berth.runtime_cli.main")
    if c in ("create", "run", "start", "kill", "delete", "pause", "resume", "exec"):
        from berth.runtime import container
    if c == "create":
        container.create(root, args.id, args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
                         no_pivot=args.no_pivot, preserve_fds=args.preserve_fds, systemd=args.systemd_cgroup,
                         listen_fds=_listen_fds(), no_new_keyring=args.no_new_keyring)
        return 0
    if c == "run":
        return container.run(root, args.id, args.bundle, detach=args.detach, pid_file=args.pid_file,
                             console_socket=args.console_socket, no_pivot=args.no_pivot,
                             preserve_fds=args.preserve_fds, systemd=args.systemd_cgroup, keep=args.keep,
                             no_subreaper=args.no_subreaper, listen_fds=_listen_fds(),
                             no_new_keyring=args.no_new_keyring)
    if c == "start":
        container.start(root, args.id)
        return 0
    if c == "kill":
        container.kill(root, args.id, args.signal or "SIGTERM", all_=args.all)
        return 0
    if c == "delete":
        try:
            container.delete(root, args.id, force=args.force)
        except NotFound:
            if not args.force:  # runc: --force of a container that does not exist is not an error
                raise
        return 0
    if c == "pause":
        container.pause(root, args.id)
        return 0
    if c == "resume":
        container.resume(root, args.id)
        return 0
    if c == "exec":
        process = _exec_process(args, root)
        return container.exec_(root, args.id, process, detach=args.detach, pid_file=args.pid_file,
                               console_socket=args.console_socket, preserve_fds=args.preserve_fds,
                               ignore_paused=args.ignore_paused, sub_cgroups=_sub_cgroups(args.cgroup))
    if c == "update":
        from berth.runtime import container
        container.update(root, args.id, _update_resources(args))
        return 0
    if c == "state":
        from berth.runtime import state as statemod
        sys.stdout.write(json.dumps(statemod.load(root, args.id).oci(), indent=2))  # no newline, as runc
        return 0
    if c == "list":
        if args.format not in ("table", "json"):
            raise BerthError(f"list: invalid --format {args.format!r}: table or json")
        from berth.runtime import state as statemod
        states = []
        for i in statemod.list_ids(root):
            st = statemod.load(root, i)
            states.append(dict(st.oci(), owner=_owner(st.dir)))  # runc's list names the owner, its state not
        if args.quiet:
            for s in states:
                print(s["id"])
        elif args.format == "json":
            print(json.dumps(states or None))  # Go's empty list: null
        else:
            rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
            rows += [(s["id"], s["pid"], s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
            print(_table(rows, minwidth=12))
        return 0
    if c == "ps":
        return _ps(args, root)
    if c == "spec":
        from berth.runtime.spec import default_spec
        path = os.path.join(args.bundle, "config.json")
        if os.path.exists(path):
            raise BerthError(f"{path} exists; remove it first")
        import json as stdjson
        with open(path, "w") as f:
            stdjson.dump(default_spec(rootless=args.rootless), f, indent="\t")
            f.write("\n")
        return 0
    if c == "events":
        return _events(args, root)
    if c == "features":
        from berth.runtime.features import features
        print(json.dumps(features(), indent=4))
        return 0
    raise BerthError("no command given; see berth-runc --help")


def _events(args, root):
    """runc events: --stats prints the stats once; else the stats every --interval and each OOM
    kill, one JSON object a line, until the container's cgroup goes (v1) or empties (v2)."""
    from berth.gotime import parse_duration
    try:
        interval = parse_duration(args.interval)
    except ValueError:
        raise BerthError(f"invalid value {json.dumps(args.interval)} for flag -interval: parse error") from None
    from berth.runtime import events, state as statemod
    st = statemod.load(root, args.id)
    if interval <= 0:
        raise BerthError("duration interval must be greater than 0")
    if st.status() == statemod.STOPPED:
        raise BerthError(f"container with id {args.id} is not running")

    def write(event):
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    mgr = st.cgroup()
    if args.stats:
        write({"type": "stats", "id": args.id, "data": events.stats(mgr)})
        return 0
    log = _Log(args.log, args.log_format)

    def log_error(msg):  # runc's logrus: the log, else stderr
        if log.path:
            log.error(msg)
        else:
            print(f"berth-runc: {msg}", file=sys.stderr)
    try:
        events.stream(args.id, mgr, interval / 1e9, write, log_error)
    except BrokenPipeError:
        return 0
    return 0


def _ps(args, root):
    from berth.runtime import state as statemod
    st = statemod.load(root, args.id)
    if st.status() == statemod.STOPPED:
        pids = []
    else:
        pids = st.cgroup().pids()
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    import subprocess
    ps_args = args.ps_args[1:] if args.ps_args[:1] == ["--"] else args.ps_args
    try:
        out = subprocess.run(["ps"] + (ps_args or ["-ef"]), capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BerthError(f"cannot run ps: {e}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise BerthError("ps output has no PID column") from None
    print(lines[0])
    wanted = set(pids)
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in wanted:
            print(line)
    return 0


def main(argv=None):
    """The program (argv None): its exit code, without the interpreter's teardown (~5 ms of
    module and object destruction a runtime's caller would wait for; everything berth-runc
    writes is written by then, its files closed). Called with argv: the code is returned."""
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is not None:
        return code
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else 1)


def _logged(cmd, e):
    """An error as runc 1.1 logs it, the line an engine reads from the log (containerd's shim puts
    it in its answer, and matches words such as "container not running"): create's and run's
    wrapped in `runc create failed: `, exec's in `exec failed: `, a failure of the container's
    process once its start was under way after `unable to start container process: `."""
    msg = e.message
    if cmd in ("create", "run", "exec"):
        if getattr(e, "started", False):
            msg = "unable to start container process: " + msg
        msg = f"exec failed: {msg}" if cmd == "exec" else f"runc {cmd} failed: {msg}"
    return msg


def _main(argv):
    log = _Log(None, "text")
    cmd = None
    try:
        g, rest = _parse_globals(argv)
        log = _Log(g.log, g.log_format)
        if g.version:
            from berth import __version__
            print(f"berth-runc version {__version__}\nspec: {VERSION}")
            return 0
        if g.help or not rest or rest[0] in ("help", "-h", "--help"):
            print(USAGE, end="")
            return 0
        args = parse_command(rest[0], rest[1:])
        args.cmd = cmd = rest[0]
        args.root = g.root
        args.systemd_cgroup = g.systemd_cgroup
        args.log, args.log_format = g.log, g.log_format
        if g.debug:
            os.environ["BERTH_DEBUG"] = "1"
        return _run(args)
    except BerthError as e:
        msg = _logged(cmd, e)
        log.error(msg)
        # with a log (an engine's call), the logged line as runc prints it beside; else for a human
        print(msg if log.path else f"berth-runc: {e.message}", file=sys.stderr)
        return 255 if cmd == "exec" else 1  # runc's codes
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        msg = e.strerror + (f": {e.filename}" if e.filename else "")
        log.error(msg)
        print(f"berth-runc: {msg}", file=sys.stderr)
        return 1
    except Exception as e:
        if os.environ.get("BERTH_DEBUG"):
            raise
        msg = f"internal error: {type(e).__name__}: {e} (run with --debug for details)"
        log.error(msg)
        print(f"berth-runc: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
