"""berthd's command line: serve, or print the default / effective configuration."""

import argparse
import logging
import os
import sys

from berth.errors import BerthError


def _parser():
    p = argparse.ArgumentParser(prog="berthd", description="berth's engine: the Docker Engine API over images and containers")
    p.add_argument("--config", help="configuration file (default /etc/berth/berthd.toml)")
    p.add_argument("--config-file", dest="daemon_json", metavar="PATH",
                   help="a docker daemon.json whose directives berthd honours (dockerd's flag)")
    p.add_argument("-H", "--host", action="append", dest="hosts", help="address to serve: unix:///PATH or tcp://HOST:PORT")
    p.add_argument("--root", help="root directory for persistent data")
    p.add_argument("--state", help="state directory (sockets, shims)")
    p.add_argument("-n", "--namespace", "--containerd-namespace", dest="namespace",
                   help="the namespace of the Docker API's objects (dockerd's --containerd-namespace)")
    p.add_argument("--config-path", help="registry host configuration directory (certs.d)")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors", help="a docker.io mirror")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--max-concurrent-downloads", type=int, metavar="N",
                   help="layers downloaded at once by all pulls (default 3; dockerd's flag)")
    p.add_argument("--max-concurrent-uploads", type=int, metavar="N", help="layers uploaded at once by all pushes (default 5)")
    p.add_argument("--max-download-attempts", type=int, metavar="N",
                   help="how many times a layer's failed download is tried again (default 5)")
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--live-restore", action="store_const", const=True, default=None,
                   help="containers keep running while berthd is down (the default; dockerd's flag)")
    p.add_argument("--shutdown-timeout", type=int, metavar="S", help="the longest wait for the containers at a stop")
    p.add_argument("--api-cors-header", metavar="ORIGIN", help="the Access-Control-Allow-Origin of the API's answers")
    p.add_argument("--allow-insecure-tcp", action="store_true", default=None,
                   help="serve plain TCP on a non-loopback address (anyone who can connect is root)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("-p", "--pidfile", help="a pid file besides <state>/berthd.pid (dockerd's flag)")
    p.add_argument("-G", "--group", help='the group of the unix sockets (default "berth")')
    p.add_argument("--userns-remap", help='user namespace remapping: "default" or USER[:GROUP] (dockerd\'s)')
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("command", nargs="*", help="config default | config dump")
    return p


_TRANSFERS = ("max_concurrent_downloads", "max_concurrent_uploads", "max_download_attempts")


def load_config(args):
    from berth.daemon import config as cfgmod
    cfg = cfgmod.load(args.config, required=bool(args.config))
    if args.daemon_json:
        cfg.daemon_json = os.path.abspath(args.daemon_json)
    if cfg.daemon_json:  # its directives over berthd.toml's keys; a flag that sets one too is refused (dockerd's)
        from berth.daemon import daemonjson
        daemonjson.apply(cfg, cfg.daemon_json, {k: getattr(args, k, None) for k in (
            "hosts", "root", "state", "registry_mirrors", "insecure_registries", "log_level", "userns_remap",
            "tlsverify", "tlscacert", "tlscert", "tlskey", "group", "pidfile", "api_cors_header", "namespace",
            "live_restore", "shutdown_timeout", *_TRANSFERS)})
    for k in ("hosts", "root", "state", "namespace", "config_path", "registry_mirrors", "insecure_registries",
              "log_level", "allow_insecure_tcp", "userns_remap", "group", "pidfile", "api_cors_header",
              "live_restore", "shutdown_timeout", *_TRANSFERS):
        v = getattr(args, k, None)
        if v is not None:
            setattr(cfg, k, v)
    if args.tlsverify is not None:
        cfg.tls.verify = args.tlsverify
    for k in ("cacert", "cert", "key"):
        v = getattr(args, "tls" + k)
        if v:
            setattr(cfg.tls, k, v)
    cfgmod.validate(cfg, "command line" if not cfg.source else cfg.source)
    return cfg


def _limit_malloc_arenas():
    """glibc gives each thread that allocates while another does an arena of its own (up to 8
    per core); berthd's threads run Python under one lock and gain little from them but resident
    memory (30 pods of 2 containers, from 5 clients: 83 MiB, 76-78 MiB with two). A
    MALLOC_ARENA_MAX the user set is left alone; another libc (no mallopt) too."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes
        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.version:
            from berth import __version__
            print(f"berthd version {__version__}")
            return 0
        if args.command:
            if args.command[:1] != ["config"] or len(args.command) != 2 or args.command[1] not in ("default", "dump"):
                raise BerthError(f"unknown command {' '.join(args.command)!r}: use `berthd config default` or `berthd config dump`")
            if args.command[1] == "default":
                from berth.daemon.config import DEFAULT_TEXT
                sys.stdout.write(DEFAULT_TEXT)
            else:
                sys.stdout.write(load_config(args).to_toml())
            return 0
        cfg = load_config(args)
        logging.basicConfig(level=getattr(logging, cfg.log_level.upper()),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # shims and the containers' inits are forked from us: run from a read-only interpreter file
        from berth.linux import exe
        exe.ensure_protected("berth.daemon.main")
        _limit_malloc_arenas()
        # the zygote is forked before any thread or event loop exists; shims are forked from it
        from berth.shim.zygote import Zygote
        zygote = Zygote()
        # berthd's threads (the API's and CRI's handlers, a pod's pause starting in the background,
        # the exit monitors) share one GIL: a thread that computes in Python keeps a request's
        # thread waiting up to the switch interval, 5 ms by default, when it would need only a
        # fraction of one. 1 ms: RunPodSandbox's and CreateContainer's answers do not wait for a
        # pause being started beside them (the shims, forked above, keep the default)
        sys.setswitchinterval(0.001)
        import asyncio

        from berth.daemon.server import serve
        try:
            asyncio.run(serve(cfg, zygote=zygote, reload=lambda: load_config(args)))
        finally:
            zygote.close()
        # served and cleaned up: threads still waiting on containers (a logs -f, a wait) are not
        # joined (they would hold the exit until their container ends; the containers go on)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except BerthError as e:
        print(f"berthd: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
