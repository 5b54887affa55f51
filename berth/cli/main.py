"""berth: a docker/nerdctl-compatible command line over berthd's API.

Only what the command needs is imported. User errors are one line on stderr with the docker
CLI's exit codes: 125 for a flag it cannot parse (and for `run`'s errors before its container
runs; 126/127 for its command not invokable/not found), 1 for anything else (the daemon's
errors, the wrong number of arguments, an unknown command); never a traceback.
"""

import os
import sys

from berth.cli.args import UsageError
from berth.errors import BerthError

DEFAULT_SOCKET = "/run/berth/berth.sock"
DEFAULT_TOML = "/etc/berth/berth.toml"

# command -> (module, function); "image X" and "namespace X" are groups
COMMANDS = {
    "pull": ("images", "pull"), "push": ("images", "push"), "images": ("images", "ls"), "rmi": ("images", "rm"),
    "tag": ("images", "tag"), "history": ("images", "history"), "save": ("images", "save"),
    "load": ("images", "load"), "import": ("images", "import_"), "inspect": ("images", "inspect"),
    "search": ("images", "search"), "login": ("system", "login"), "logout": ("system", "logout"),
    "info": ("system", "info"), "version": ("system", "version"), "completion": ("completion", "completion"),
    "run": ("containers", "run"), "create": ("containers", "create"), "start": ("containers", "start"),
    "ps": ("containers", "ps"), "rm": ("containers", "rm"), "stop": ("containers", "stop"),
    "kill": ("containers", "kill"), "wait": ("containers", "wait"), "logs": ("containers", "logs"),
    "exec": ("containers", "exec_"), "restart": ("containers", "restart"), "attach": ("containers", "attach"),
    "events": ("containers", "events"),
    "build": ("build", "build"), "commit": ("build", "commit"),
}
GROUPS = {
    "image": {"ls": ("images", "ls"), "list": ("images", "ls"), "pull": ("images", "pull"),
              "push": ("images", "push"), "rm": ("images", "rm"), "remove": ("images", "rm"),
              "tag": ("images", "tag"), "history": ("images", "history"), "save": ("images", "save"),
              "load": ("images", "load"), "import": ("images", "import_"), "inspect": ("images", "inspect"),
              "prune": ("images", "prune")},
    "namespace": {"ls": ("namespace", "ls"), "list": ("namespace", "ls"), "create": ("namespace", "create"),
                  "rm": ("namespace", "rm"), "remove": ("namespace", "rm"), "inspect": ("namespace", "inspect")},
    "system": {"info": ("system", "info"), "events": ("containers", "events")},
    "container": {"run": ("containers", "run"), "create": ("containers", "create"), "start": ("containers", "start"),
                  "ls": ("containers", "ps"), "list": ("containers", "ps"), "ps": ("containers", "ps"),
                  "rm": ("containers", "rm"), "remove": ("containers", "rm"), "stop": ("containers", "stop"),
                  "kill": ("containers", "kill"), "wait": ("containers", "wait"), "logs": ("containers", "logs"),
                  "inspect": ("images", "inspect"), "exec": ("containers", "exec_"),
                  "restart": ("containers", "restart"), "attach": ("containers", "attach")},
}
_OPS = {n: ("container_ops", n) for n in ("pause", "unpause", "rename", "top", "stats", "cp", "port", "diff")}
COMMANDS.update(_OPS)
GROUPS["container"].update(_OPS, prune=("container_ops", "prune"))
GROUPS["ns"] = GROUPS["namespace"]
GROUPS["image"]["build"] = ("build", "build")
GROUPS["container"]["commit"] = ("build", "commit")
GROUPS["builder"] = {"build": ("build", "build"), "prune": ("build", "prune")}
_EXTRA = {"update": ("container_extra", "update"), "export": ("container_extra", "export")}
COMMANDS.update(_EXTRA)
GROUPS["container"].update(_EXTRA)
GROUPS["system"].update(df=("disk", "df"), prune=("disk", "prune"))
GROUPS["network"] = {"create": ("networks", "create"), "ls": ("networks", "ls"), "list": ("networks", "ls"),
                     "inspect": ("networks", "inspect"), "rm": ("networks", "rm"), "remove": ("networks", "rm"),
                     "prune": ("networks", "prune"), "connect": ("networks", "connect"),
                     "disconnect": ("networks", "disconnect")}
GROUPS["volume"] = {"create": ("volumes", "create"), "ls": ("volumes", "ls"), "list": ("volumes", "ls"),
                    "inspect": ("volumes", "inspect"), "rm": ("volumes", "rm"), "remove": ("volumes", "rm"),
                    "prune": ("volumes", "prune")}

USAGE = """usage: berth [OPTIONS] COMMAND

A docker/nerdctl-compatible client of berthd.

Images:
  pull        pull an image from a registry          push      push an image to a registry
  images      list images                            rmi       remove images
  tag         add a name to an image                 inspect   show an image's details
  history     show an image's history                save      write images to a tar archive
  load        load images from a tar archive         import    make an image from a rootfs tar
  build       build an image from a Dockerfile       commit    make an image from a container's changes
  image prune remove unused images                   builder prune  remove the build cache
  search      search a registry's index for images
Engine:
  info        show the engine's configuration        version   show client and server versions
  login       log in to a registry                   logout    log out from a registry
  namespace   ls | create | rm | inspect             completion bash | zsh | fish
Containers:
  run, create, start, stop, restart, kill, rm, ps, logs, exec, attach, wait, inspect,
  pause, unpause, rename, top, stats, cp, port, diff, events, update, export, container prune
  system df | prune   disk usage; remove unused containers, networks, images (and volumes)
Networks and volumes:
  network     create | ls | inspect | rm | prune | connect | disconnect
  volume      create | ls | inspect | rm | prune

Options:
  -H, --host ADDR        daemon address (unix:///path or tcp://host:port; BERTH_HOST, DOCKER_HOST)
  -n, --namespace NAME   namespace (default: from berth.toml, else "default")
      --tls, --tlsverify, --tlscacert F, --tlscert F, --tlskey F
      --debug            show more on errors
  -v, --version          print the client version
"""


class Globals:
    host = None
    namespace = None
    debug = False
    tls = False
    tlsverify = False
    tlscacert = None
    tlscert = None
    tlskey = None
    config = None


def load_toml():
    """The client config (nerdctl.toml's keys): BERTH_TOML or /etc/berth/berth.toml."""
    path = os.environ.get("BERTH_TOML") or DEFAULT_TOML
    try:
        with open(path, "rb") as f:
            import tomllib
            data = tomllib.load(f)
    except FileNotFoundError:
        if os.environ.get("BERTH_TOML"):
            raise BerthError(f"client config {path} not found") from None
        return {}
    except OSError as e:
        raise BerthError(f"cannot read client config {path}: {e.strerror}") from None
    except ValueError as e:
        raise BerthError(f"{path}: invalid TOML: {e}") from None
    known = {"debug": bool, "debug_full": bool, "address": str, "namespace": str, "insecure_registry": bool,
             "hosts_dir": list, "data_root": str, "cgroup_manager": str, "snapshotter": str,
             "experimental": bool, "host_gateway_ip": str}
    for k, v in data.items():
        if k not in known:
            raise BerthError(f"{path}: unknown key {k!r}")
        if not isinstance(v, known[k]):
            if k == "hosts_dir" and isinstance(v, str):
                continue
            raise BerthError(f"{path}: {k} has the wrong type")
    if data.get("cgroup_manager") not in (None, "cgroupfs", "systemd", "none"):
        raise BerthError(f"{path}: cgroup_manager must be cgroupfs, systemd or none")
    return data


def parse_globals(argv):
    g = Globals()
    i = 0
    takes = {"-H": "host", "--host": "host", "-n": "namespace", "--namespace": "namespace",
             "--tlscacert": "tlscacert", "--tlscert": "tlscert", "--tlskey": "tlskey", "--config": "config",
             "-c": "context", "--context": "context", "-l": "log_level", "--log-level": "log_level"}
    flags = {"--debug": "debug", "-D": "debug", "--tls": "tls", "--tlsverify": "tlsverify"}
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        a = argv[i]
        name, eq, val = a.partition("=")
        if name in takes:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
            setattr(g, takes[name], val)
        elif name in flags:
            setattr(g, flags[name], True)
        elif a in ("-v", "--version"):
            return g, ["version", "--client-short"]
        elif a in ("-h", "--help"):
            return g, ["help"]
        else:
            raise UsageError(f"unknown flag: {a}")
        i += 1
    return g, argv[i:]


class Context:
    """What a command handler gets: the parsed globals, the client config, and an API client."""

    def __init__(self, g, toml):
        self.g = g
        self.toml = toml
        explicit = g.host or os.environ.get("BERTH_HOST") or os.environ.get("DOCKER_HOST") or toml.get("address")
        self.explicit_host = explicit
        self.address = explicit or "unix://" + DEFAULT_SOCKET
        if self.address.startswith("/"):
            self.address = "unix://" + self.address
        self.namespace = g.namespace or os.environ.get("BERTH_NAMESPACE") or toml.get("namespace")
        self.debug = g.debug or bool(toml.get("debug"))
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from berth.client.api import APIClient
            tls = None
            if self.g.tls or self.g.tlsverify or self.g.tlscacert or self.g.tlscert:
                from berth.client.transport import TLSConfig
                tls = TLSConfig(ca=self.g.tlscacert, cert=self.g.tlscert, key=self.g.tlskey,
                                verify=bool(self.g.tlsverify))
            self._client = APIClient(self.address, namespace=self.namespace, tls=tls)
            if not self.explicit_host:
                from berth.cli.autostart import ensure_daemon
                ensure_daemon(self.address[len("unix://"):])
        return self._client


# commands that leave nothing to finalize (no files of their own left open, no threads that
# must finish): as the program, they end without the interpreter's teardown (~4 ms)
_FAST_EXIT = {("containers", "run")}


def _exit_now(code):
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv=None):
    argv_given = argv
    argv = sys.argv[1:] if argv is None else argv
    debug = False
    try:
        g, rest = parse_globals(argv)
        if not rest or rest[0] in ("help", "--help", "-h"):
            sys.stdout.write(USAGE)
            return 0
        cmd, args = rest[0], rest[1:]
        if cmd in GROUPS:
            if not args or args[0] in ("-h", "--help"):
                print(f"usage: berth {cmd} {' | '.join(sorted(set(GROUPS[cmd])))}")
                return 0  # as docker: a group's usage, status 0
            target = GROUPS[cmd].get(args[0])
            if target is None:
                raise BerthError(f"unknown command: berth {cmd} {args[0]}")
            cmd, args = f"{cmd} {args[0]}", args[1:]
        else:
            target = COMMANDS.get(cmd)
            if target is None:
                raise BerthError(f"unknown command: {cmd!r}; see berth --help")
        toml = load_toml() if target[0] not in ("completion",) else {}
        ctx = Context(g, toml)
        debug = ctx.debug
        import importlib
        mod = importlib.import_module(f"berth.cli.{target[0]}")
        code = getattr(mod, target[1])(ctx, args, cmd) or 0
        if argv_given is None and target in _FAST_EXIT:
            _exit_now(code)
        return code
    except BerthError as e:
        print(f"berth: {e.message}", file=sys.stderr)
        code = getattr(e, "code", None)
        return 1 if code is None else code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:
        if debug or os.environ.get("BERTH_DEBUG"):
            raise
        print(f"berth: internal error: {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main())
