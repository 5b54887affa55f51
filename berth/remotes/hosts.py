"""Registry host configuration: which endpoints serve a registry, in which order.

The format is containerd's ``config_path`` directory (docs/hosts.md)::

    <config_dir>/<host>/hosts.toml       e.g. docker.io/hosts.toml, 10.0.0.1_5000_/hosts.toml
    <config_dir>/_default/hosts.toml     used when no host directory matches

A host with a port is looked up as ``host_port_`` first, then ``host:port``,
then ``_default``; the first directory that exists is used. Inside::

    server = "https://registry-1.docker.io"      # optional: the registry itself by default

    [host."https://mirror.example.com"]          # tried first, in file order
      capabilities = ["pull", "resolve"]         # of pull, resolve, push; default all three
      ca = "mirror-ca.pem"                       # path or list; relative to the hosts.toml
      client = [["client.cert", "client.key"]]   # or "both.pem", or ["a.pem", "b.pem"]
      skip_verify = false
      override_path = false                      # true: the URL path is the API root (no /v2)
      dial_timeout = "3s"
      [host."https://mirror.example.com".header]
        x-custom = ["a", "b"]

The top level takes the same keys as a ``[host]`` table; they apply to the
server. A host directory without hosts.toml is read the Docker way: ``*.crt``
are CA files, ``*.cert`` + ``*.key`` client key pairs, for the server.

:func:`load_hosts` reads the files at every call (no cache), so an edit takes
effect at the next pull. Docker's daemon.json ``registry-mirrors`` for
docker.io are passed as ``mirrors`` and used when docker.io has no hosts.toml
of its own. Loopback registries (localhost, 127.0.0.0/8, ::1) are spoken to
in plain HTTP; registries listed in ``insecure`` (host[:port] or an IP network
in CIDR form) get HTTPS without certificate verification, falling back to
plain HTTP, as docker does.
"""

from __future__ import annotations

import ipaddress
import json
import os
import posixpath
import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

PULL = "pull"
RESOLVE = "resolve"
PUSH = "push"
ALL_CAPABILITIES = frozenset({PULL, RESOLVE, PUSH})

DOCKER_IO = "docker.io"
DOCKER_IO_SERVER = "registry-1.docker.io"
DEFAULT_DIR = "_default"
HOSTS_FILE = "hosts.toml"

_HOST_KEYS = frozenset({"capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout"})
_TOP_KEYS = _HOST_KEYS | {"server", "host"}
_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Endpoint:
    """One place to talk to for a registry: a mirror or the registry's server.

    ``host`` is "name[:port]" as in a URL, ``path`` the API root ("/v2", or
    the URL's own path with ``override_path``), so a manifest lives at
    ``{scheme}://{host}{path}/<repository>/manifests/<ref>``.
    """

    scheme: str
    host: str
    path: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    skip_verify: bool = False
    ca_files: tuple[str, ...] = ()
    client_certs: tuple[tuple[str, str], ...] = ()  # (cert, key or "" when the key is in cert)
    headers: tuple[tuple[str, str], ...] = ()
    dial_timeout: float | None = None
    #: try HTTPS first and fall back to plain HTTP (insecure registries)
    http_fallback: bool = False
    #: this endpoint is not the registry itself (requests carry ?ns=<registry>)
    mirror: bool = False
    #: the file this endpoint came from, for messages (None: built-in default)
    source: str | None = field(default=None, compare=False)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def url(self, suffix: str) -> str:
        """The URL of ``suffix`` ("library/busybox/manifests/latest") under the API root."""
        return f"{self.base_url}/{suffix.lstrip('/')}"

    def __str__(self) -> str:
        return self.base_url


def host_dir_names(host: str) -> list[str]:
    """The directory names tried for ``host``, in order (containerd's hostPaths)."""
    names = []
    idx = host.rfind(":")
    if idx > 0 and not host.endswith("]"):
        names.append(f"{host[:idx]}_{host[idx + 1:]}_")
    names += [host, DEFAULT_DIR]
    return names


def _hostname(host: str) -> str:
    """"name" of "name:port", "::1" of "[::1]:5000"."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _port(host: str) -> str:
    if host.startswith("["):
        rest = host[host.find("]") + 1:] if "]" in host else ""
        return rest[1:] if rest.startswith(":") else ""
    return host.rsplit(":", 1)[1] if host.count(":") == 1 else ""


def is_loopback(host: str) -> bool:
    """localhost, *.localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    name = _hostname(host).lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_insecure(host: str, insecure: Iterable[str]) -> bool:
    """True if ``host`` ("name[:port]") matches an entry of ``insecure``.

    An entry is "name[:port]" (a scheme prefix is tolerated) or an IP network
    ("10.0.0.0/8"), which matches IP literals only: no DNS lookup is made here.
    """
    h = host.lower()
    name = _hostname(h)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    for entry in insecure:
        e = str(entry).strip().lower()
        for prefix in ("http://", "https://"):
            e = e.removeprefix(prefix)
        e = e.rstrip("/")
        if not e:
            continue
        if "/" in e:
            if ip is None:
                continue
            try:
                if ip in ipaddress.ip_network(e, strict=False):
                    return True
            except ValueError:
                continue
        elif e == h or (not _port(e) and e == name):
            return True
    return False


def _bad(source: str, key: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{source}: invalid {key}: {why}")


def _parse_duration(source: str, key: str, value: object) -> float:
    """A Go duration ("1.5s", "300ms", "1m30s") or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    elif isinstance(value, str) and value and _DURATION_RE.sub("", value) == "":
        secs = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_RE.findall(value))
    else:
        raise _bad(source, key, f"expected a duration like \"5s\", got {json.dumps(value, default=str)}")
    if secs <= 0:
        raise _bad(source, key, "must be positive")
    return secs


def _parse_url(source: str, key: str, raw: object, override_path: bool) -> tuple[str, str, str]:
    """(scheme, host, API path) of a server or host URL."""
    if not isinstance(raw, str) or not raw.strip():
        raise _bad(source, key, "expected a URL string")
    text = raw.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        text = "https://" + text
    u = urllib.parse.urlsplit(text)
    scheme = u.scheme.lower()
    if scheme not in ("http", "https"):
        raise _bad(source, key, f"unsupported scheme {json.dumps(u.scheme)} (http or https)")
    if not u.netloc or "@" in u.netloc or not _HOST_RE.fullmatch(u.netloc):
        raise _bad(source, key, f"bad host in {json.dumps(raw)}")
    if u.query or u.fragment:
        raise _bad(source, key, f"{json.dumps(raw)} must not have a query or fragment")
    path = u.path
    if path and path != "/":
        path = "/" + "/".join(c for c in posixpath.normpath(path).split("/") if c)
        if not override_path and not path.endswith("/v2"):
            path += "/v2"
    else:
        path = "" if override_path else "/v2"
    return scheme, u.netloc, path


def _str_list(source: str, key: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _bad(source, key, "expected a string or a list of strings")


def _abs(base_dir: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(base_dir, p))


def _check_file(source: str, key: str, path: str) -> None:
    if not os.path.isfile(path):
        raise _bad(source, key, f"no such file {json.dumps(path)}")


class _HostSettings:
    """The per-host keys of a hosts.toml table, validated."""

    def __init__(self) -> None:
        self.capabilities: frozenset[str] = ALL_CAPABILITIES
        self.ca_files: tuple[str, ...] = ()
        self.client_certs: tuple[tuple[str, str], ...] = ()
        self.skip_verify: bool | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.override_path = False
        self.dial_timeout: float | None = None

    @property
    def explicit_tls(self) -> bool:
        return bool(self.ca_files or self.client_certs or self.skip_verify is not None)


def _parse_settings(source: str, prefix: str, table: dict, base_dir: str, allowed: frozenset[str]) -> _HostSettings:
    s = _HostSettings()
    for k in table:
        if k not in allowed:
            hint = " (proxies are not supported)" if k == "proxy" else ""
            raise _bad(source, prefix + k, f"unknown key{hint}")
    key = prefix + "capabilities"
    if "capabilities" in table:
        caps = table["capabilities"]
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise _bad(source, key, "expected a list of strings")
        out = set()
        for c in caps:
            if c.lower() not in ALL_CAPABILITIES:
                raise _bad(source, key, f"unknown capability {json.dumps(c)} (pull, resolve or push)")
            out.add(c.lower())
        # An empty list means "all", as in containerd.
        s.capabilities = frozenset(out) or ALL_CAPABILITIES
    if "ca" in table:
        key = prefix + "ca"
        files = [_abs(base_dir, p) for p in _str_list(source, key, table["ca"])]
        for f in files:
            _check_file(source, key, f)
        s.ca_files = tuple(files)
    if "client" in table:
        key = prefix + "client"
        value = table["client"]
        pairs: list[tuple[str, str]] = []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise _bad(source, key, "expected a path, a list of paths or a list of [cert, key] pairs")
        for item in items:
            if isinstance(item, str):
                pairs.append((_abs(base_dir, item), ""))
            elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                pairs.append((_abs(base_dir, item[0]), _abs(base_dir, item[1]) if item[1] else ""))
            else:
                raise _bad(source, key, "expected a path, a list of paths or a list of [cert, key] pairs")
        for cert, keyfile in pairs:
            _check_file(source, key, cert)
            if keyfile:
                _check_file(source, key, keyfile)
        s.client_certs = tuple(pairs)
    if "skip_verify" in table:
        if not isinstance(table["skip_verify"], bool):
            raise _bad(source, prefix + "skip_verify", "expected true or false")
        s.skip_verify = table["skip_verify"]
    if "override_path" in table:
        if not isinstance(table["override_path"], bool):
            raise _bad(source, prefix + "override_path", "expected true or false")
        s.override_path = table["override_path"]
    if "dial_timeout" in table:
        s.dial_timeout = _parse_duration(source, prefix + "dial_timeout", table["dial_timeout"])
    if "header" in table:
        key = prefix + "header"
        hdr = table["header"]
        if not isinstance(hdr, dict):
            raise _bad(source, key, "expected a table of header names to strings or lists of strings")
        out_h: list[tuple[str, str]] = []
        for name, v in hdr.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise _bad(source, f"{key}.{name}", "not a valid header name")
            for item in _str_list(source, f"{key}.{name}", v):
                if "\r" in item or "\n" in item:
                    raise _bad(source, f"{key}.{name}", "header values must be one line")
                out_h.append((name, item))
        s.headers = tuple(out_h)
    return s


def _toml_key(name: str) -> str:
    return f"host.{json.dumps(name)}."


def _endpoint(scheme: str, host: str, path: str, s: _HostSettings, *, registry: str,
              insecure: Sequence[str], source: str | None) -> Endpoint:
    skip_verify = bool(s.skip_verify)
    fallback = False
    if scheme == "http" and s.explicit_tls and _port(host) != "80":
        # containerd: TLS configured for an http:// host -> try HTTPS first.
        scheme, fallback = "https", True
    if scheme == "https" and is_insecure(host, insecure):
        skip_verify, fallback = True, True
    return Endpoint(
        scheme=scheme, host=host, path=path, capabilities=s.capabilities,
        skip_verify=skip_verify, ca_files=s.ca_files, client_certs=s.client_certs,
        headers=s.headers, dial_timeout=s.dial_timeout, http_fallback=fallback,
        mirror=host.lower() != registry.lower() and not (registry == DOCKER_IO and host == DOCKER_IO_SERVER),
        source=source,
    )


def default_server(registry_host: str, insecure: Sequence[str] = (), settings: _HostSettings | None = None,
                   source: str | None = None) -> Endpoint:
    """The registry's own endpoint when no file names a server."""
    s = settings or _HostSettings()
    if registry_host == DOCKER_IO:
        return _endpoint("https", DOCKER_IO_SERVER, "/v2", s, registry=registry_host, insecure=insecure, source=source)
    if is_loopback(registry_host) and _port(registry_host) not in ("", "443"):
        # Plain HTTP for a local registry, as containerd and docker allow.
        return _endpoint("http", registry_host, "/v2", s, registry=registry_host, insecure=insecure, source=source)
    return _endpoint("https", registry_host, "/v2", s, registry=registry_host, insecure=insecure, source=source)


def _parse_hosts_file(path: str, registry_host: str, insecure: Sequence[str]) -> list[Endpoint]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InvalidArgument(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path}: invalid TOML: not UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"{path}: invalid TOML: {e}") from None
    base_dir = os.path.dirname(path)
    top = _parse_settings(path, "", doc, base_dir, _TOP_KEYS)
    endpoints: list[Endpoint] = []
    hosts = doc.get("host", {})
    if not isinstance(hosts, dict):
        raise _bad(path, "host", 'expected tables like [host."https://mirror.example.com"]')
    for url, table in hosts.items():  # tomllib keeps file order
        prefix = _toml_key(url)
        if not isinstance(table, dict):
            raise _bad(path, prefix.rstrip("."), "expected a table")
        s = _parse_settings(path, prefix, table, base_dir, _HOST_KEYS)
        scheme, host, api = _parse_url(path, prefix.rstrip("."), url, s.override_path)
        endpoints.append(_endpoint(scheme, host, api, s, registry=registry_host, insecure=insecure, source=path))
    if "server" in doc:
        scheme, host, api = _parse_url(path, "server", doc["server"], top.override_path)
        endpoints.append(_endpoint(scheme, host, api, top, registry=registry_host, insecure=insecure, source=path))
    else:
        endpoints.append(default_server(registry_host, insecure, top, source=path))
    return endpoints


def _docker_cert_dir(dirpath: str, registry_host: str, insecure: Sequence[str]) -> list[Endpoint]:
    """A host directory without hosts.toml: Docker's certs.d layout."""
    s = _HostSettings()
    try:
        names = sorted(os.listdir(dirpath))
    except OSError:
        names = []
    cas = [os.path.join(dirpath, n) for n in names if n.endswith(".crt")]
    pairs = []
    for n in names:
        if n.endswith(".cert"):
            keyfile = os.path.join(dirpath, n[:-5] + ".key")
            if not os.path.isfile(keyfile):
                raise InvalidArgument(f"{os.path.join(dirpath, n)}: missing key file {keyfile}")
            pairs.append((os.path.join(dirpath, n), keyfile))
    s.ca_files, s.client_certs = tuple(cas), tuple(pairs)
    return [default_server(registry_host, insecure, s, source=dirpath if (cas or pairs) else None)]


def _mirror_endpoints(mirrors: Sequence[str], registry_host: str, insecure: Sequence[str],
                      key: str = "registry_mirrors") -> list[Endpoint]:
    out = []
    for i, m in enumerate(mirrors):
        s = _HostSettings()
        s.capabilities = frozenset({PULL, RESOLVE})
        scheme, host, api = _parse_url(key, f"{key}[{i}]", m, False)
        out.append(_endpoint(scheme, host, api, s, registry=registry_host, insecure=insecure, source=key))
    return out


def mirrors_key(host: str) -> str:
    """The key of a host's mirrors in berthd.toml (containerd's CRI form)."""
    return f'registry.mirrors."{host}".endpoint'


def check_host_mirrors(host_mirrors: Mapping[str, Sequence[str]]) -> None:
    """InvalidArgument naming the key of the first bad entry of containerd's legacy CRI mirrors
    (registry host or "*" -> endpoint URLs)."""
    for host, urls in host_mirrors.items():
        if host != "*" and not _HOST_RE.fullmatch(host):
            raise InvalidArgument(f'registry.mirrors."{host}": not a registry host (name[:port], or "*")')
        for i, url in enumerate(urls):
            _parse_url(f"{mirrors_key(host)}[{i}]", "URL", url, False)


def _config_dirs(config_dir: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str]:
    if config_dir is None:
        return []
    if isinstance(config_dir, (str, os.PathLike)):
        text = os.fspath(config_dir)
        return [p for p in text.split(os.pathsep) if p]
    return [os.fspath(p) for p in config_dir if p]


def load_hosts(
    config_dir: str | os.PathLike | Sequence[str | os.PathLike] | None,
    registry_host: str,
    *,
    mirrors: Sequence[str] | None = None,
    insecure: Sequence[str] = (),
    host_mirrors: Mapping[str, Sequence[str]] | None = None,
) -> list[Endpoint]:
    """The endpoints for ``registry_host`` ("docker.io", "localhost:5000"), in the order to try.

    ``config_dir`` is containerd's ``config_path`` (a directory, several
    joined by ":", a list of them, or None for no configuration). ``mirrors``
    are docker's ``registry-mirrors`` for docker.io (pull and resolve only),
    used when docker.io has no hosts.toml. ``host_mirrors`` are containerd's
    legacy CRI mirrors (``registry.mirrors."<host>".endpoint``, "*" for any
    host), pull and resolve only, tried before the registry's server (and
    before docker.io's ``mirrors``) when the host has no hosts.toml of its
    own. Reads the files at each call.
    Raises InvalidArgument naming the file and key for a bad configuration.
    The list may be empty only if it were configured so (it never is with
    these rules: the server always comes last).
    """
    if not isinstance(registry_host, str) or not _HOST_RE.fullmatch(registry_host):
        raise InvalidArgument(f"invalid registry host {json.dumps(str(registry_host))}")
    insecure = tuple(insecure or ())
    registry_host = registry_host.lower() if not registry_host.startswith("[") else registry_host
    if registry_host == "index.docker.io":
        registry_host = DOCKER_IO

    endpoints: list[Endpoint] | None = None
    specific = False
    for root in _config_dirs(config_dir):
        for i, name in enumerate(host_dir_names(registry_host)):
            d = os.path.join(root, name)
            if not os.path.isdir(d):
                continue
            f = os.path.join(d, HOSTS_FILE)
            if os.path.isfile(f):
                endpoints = _parse_hosts_file(f, registry_host, insecure)
                specific = name != DEFAULT_DIR
            elif name != DEFAULT_DIR:
                endpoints = _docker_cert_dir(d, registry_host, insecure)
            else:
                continue
            break
        if endpoints is not None:
            break
    if endpoints is None:
        endpoints = [default_server(registry_host, insecure)]
    if specific:  # a host's own hosts.toml (or certs directory) says it all
        return endpoints
    extra: list[Endpoint] = []
    if host_mirrors:
        name = registry_host if registry_host in host_mirrors else "*" if "*" in host_mirrors else None
        if name is not None:
            # containerd: the mirrors, then the registry itself (once: a mirror that is the
            # registry's own server is left to the end)
            extra = [e for e in _mirror_endpoints(list(host_mirrors[name]), registry_host, insecure,
                                                  key=mirrors_key(name))
                     if e.host != endpoints[-1].host]
    if mirrors and registry_host == DOCKER_IO:
        extra += _mirror_endpoints(list(mirrors), registry_host, insecure)
    return endpoints[:-1] + extra + endpoints[-1:] if extra else endpoints


def endpoints_for(endpoints: Iterable[Endpoint], capability: str) -> list[Endpoint]:
    """The endpoints that have ``capability``, in order."""
    if capability not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability {json.dumps(capability)}")
    return [e for e in endpoints if capability in e.capabilities]
