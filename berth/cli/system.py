"""Engine commands: info, version, login, logout."""

import sys

from berth.cli.args import parser
from berth.errors import BerthError


def info(ctx, argv, cmd):
    p = parser(cmd, "show the engine's configuration")
    p.add_argument("-f", "--format")
    a = p.parse_args(argv)
    i = ctx.client.info()
    if a.format:
        from berth.cli.format import client_info, print_typed
        print_typed(a.format, dict(i, ClientInfo=client_info()), "system.dockerInfo")
        return 0
    b = i.get("Berth") or {}
    rc = i.get("RegistryConfig") or {}
    lines = [
        "Client:",
        f" Context:    {ctx.address}",
        f" Namespace:  {ctx.namespace or b.get('Namespace', 'default')}",
        "",
        "Server:",
        f" Containers: {i.get('Containers', 0)}",
        f"  Running: {i.get('ContainersRunning', 0)}",
        f"  Paused: {i.get('ContainersPaused', 0)}",
        f"  Stopped: {i.get('ContainersStopped', 0)}",
        f" Images: {i.get('Images', 0)}",
        f" Server Version: {i.get('ServerVersion')}",
        f" Storage Driver: {i.get('Driver')}",
        f" Cgroup Driver: {i.get('CgroupDriver')}",
        f" Cgroup Version: {i.get('CgroupVersion')}",
        f" Runtimes: {' '.join(sorted((i.get('Runtimes') or {}).keys()))}",
        f" Default Runtime: {i.get('DefaultRuntime')}",
        f" Namespace: {b.get('Namespace', '')}",
        f" Kernel Version: {i.get('KernelVersion')}",
        f" Operating System: {i.get('OperatingSystem')}",
        f" OSType: {i.get('OSType')}",
        f" Architecture: {i.get('Architecture')}",
        f" CPUs: {i.get('NCPU')}",
        f" Total Memory: {_gib(i.get('MemTotal', 0))}",
        f" Name: {i.get('Name')}",
        f" ID: {i.get('ID')}",
        f" Docker Root Dir: {i.get('DockerRootDir')}",
        f" Registry Config Path: {b.get('ConfigPath', '')}",
        f" Sandbox Image: {b.get('SandboxImage', '')}",
    ]
    mirrors = rc.get("Mirrors") or []
    if mirrors:
        lines.append(" Registry Mirrors:")
        lines += [f"  {m}" for m in mirrors]
    insecure = rc.get("InsecureRegistryCIDRs") or []
    if insecure:
        lines.append(" Insecure Registries:")
        lines += [f"  {r}" for r in insecure]
    print("\n".join(lines))
    return 0


def _gib(n):
    return f"{n / (1 << 30):.4g}GiB"


def version(ctx, argv, cmd):
    from berth import __version__
    if argv == ["--client-short"]:
        print(f"berth version {__version__}")
        return 0
    p = parser(cmd, "show client and server versions")
    p.add_argument("-f", "--format")
    a = p.parse_args(argv)
    client = {"Version": __version__, "ApiVersion": "1.45", "Os": "linux", "Arch": _arch()}
    server = None
    err = None
    try:
        server = ctx.client.version()
    except BerthError as e:
        err = e
    if a.format:
        from berth.cli.format import client_info, print_typed
        try:
            print_typed(a.format, {"Client": client_info(), "Server": server}, "system.versionInfo", "version",
                        (20, 1, 1))
        except BerthError:
            if err is None:
                raise  # else the server's error is the one to report (as docker)
    else:
        print(f"Client:\n Version:     {client['Version']}\n API version: {client['ApiVersion']}\n"
              f" OS/Arch:     {client['Os']}/{client['Arch']}")
        if server:
            print(f"\nServer:\n Engine:\n  Version:     {server.get('Version')}\n"
                  f"  API version: {server.get('ApiVersion')} (minimum version {server.get('MinAPIVersion')})\n"
                  f"  OS/Arch:     {server.get('Os')}/{server.get('Arch')}\n"
                  f"  Kernel:      {server.get('KernelVersion')}")
    if err is not None:
        raise err
    return 0


def _arch():
    import os
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def login(ctx, argv, cmd):
    p = parser(cmd, "log in to a registry")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="docker.io")
    a = p.parse_args(argv)
    if a.password and a.password_stdin:
        raise BerthError("--password and --password-stdin are mutually exclusive")
    user = a.username
    password = a.password
    if a.password_stdin:
        if not user:
            raise BerthError("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\n").rstrip("\r")
    if not user:
        if not sys.stdin.isatty():
            raise BerthError("cannot perform an interactive login from a non-TTY device")
        user = input("Username: ")
    if password is None:
        if not sys.stdin.isatty():
            raise BerthError("cannot perform an interactive login from a non-TTY device")
        import getpass
        password = getpass.getpass("Password: ")
    host = _host(a.server)
    ctx.client.auth(user, password, host)
    _save(host, user, password)
    print("Login Succeeded")
    return 0


def logout(ctx, argv, cmd):
    p = parser(cmd, "log out from a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    a = p.parse_args(argv)
    host = _host(a.server)
    removed = _remove(host)
    print(f"Removing login credentials for {host}" if removed else f"Not logged in to {host}")
    return 0


def _host(server):
    s = server.split("://", 1)[-1].rstrip("/").split("/")[0]
    return "docker.io" if s in ("index.docker.io", "registry-1.docker.io") else s


def _load_doc(path):
    import json
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise BerthError(f"cannot read {path}: {e}") from None


def _write_doc(path, doc):
    """As the docker CLI saves its config file: a temporary file renamed over it, where a
    symlinked config.json (a dotfiles link) points, keeping that file's mode and owner."""
    import json
    import os
    import tempfile
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    target = os.path.realpath(path)  # a dangling link too: the file it names is made
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(target), dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
        try:
            st = os.stat(target)
            os.chmod(tmp, st.st_mode & 0o7777)
            os.chown(tmp, st.st_uid, st.st_gid)
        except FileNotFoundError:
            pass
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _save(host, user, password):
    import base64

    from berth.cli.auth import config_path, key_for
    path = config_path()
    doc = _load_doc(path)
    doc.setdefault("auths", {})[key_for(host)] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write_doc(path, doc)


def _remove(host):
    from berth.cli.auth import config_path, key_for
    path = config_path()
    doc = _load_doc(path)
    auths = doc.get("auths") or {}
    if key_for(host) in auths:
        del auths[key_for(host)]
        _write_doc(path, doc)
        return True
    return False
