"""Registry authentication: WWW-Authenticate challenges, bearer tokens, docker credentials.

* :func:`parse_www_authenticate` parses challenges (``Bearer realm=...,service=...,scope=...``,
  ``Basic realm=...``).
* :class:`Authorizer` answers "which Authorization header for this host and these
  scopes?": it remembers each host's challenge, fetches bearer tokens from the
  realm (``GET realm?service=&scope=...`` with basic credentials when known, or
  the OAuth2 refresh-token POST with an identity token) and caches them per
  (host, scopes) until they expire. Thread-safe; one token fetch per key at a time.
* Credentials live in a docker ``config.json`` (``~/.docker/config.json``, or
  ``$DOCKER_CONFIG/config.json``): ``auths`` entries with a base64 ``auth`` of
  "user:password" (or ``username``/``password``, ``identitytoken``), keyed by
  host; Docker Hub's key is ``https://index.docker.io/v1/``. Credential helpers
  (``credHelpers``, ``credsStore``: ``docker-credential-<name>``) are used when
  configured. :func:`save_credentials` and :func:`remove_credentials` implement
  ``login``/``logout``: the file is replaced atomically with mode 0600 and keys
  berth does not know are kept.

No network or file I/O at import time; paths are resolved at each call.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from berth.errors import BerthError, InvalidArgument, Unavailable

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
#: tokens without expires_in live this long (the distribution token spec's minimum)
DEFAULT_TOKEN_LIFETIME = 60.0
#: refresh a token this long before it expires
TOKEN_EXPIRY_MARGIN = 5.0
_MAX_TOKEN_RESPONSE = 1 << 20


class PermissionDenied(BerthError):
    """The registry refused the credentials, or there are none and it wants some."""

    http_status = 403


@dataclass(frozen=True)
class Challenge:
    """One WWW-Authenticate challenge; ``scheme`` is lower-case ("bearer", "basic")."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    #: docker's "identitytoken": an OAuth2 refresh token used instead of a password
    identity_token: str = field(default="", repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# --- WWW-Authenticate --------------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(r"\s*(" + _TOKEN + r")")
_PARAM_RE = re.compile(r"\s*(" + _TOKEN + r")\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^,\s\"]*))")
_SEP_RE = re.compile(r"[\s,]*")
_COMMA_RE = re.compile(r"\s*,")


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Parse one or more WWW-Authenticate header values into challenges, in order.

    Parameter names are lower-cased; quoted values are unescaped. Malformed
    trailing text is ignored (a registry's header is advisory).
    """
    if isinstance(values, str):
        values = [values]
    out: list[Challenge] = []
    for value in values:
        pos, n = 0, len(value)
        while pos < n:
            pos = _SEP_RE.match(value, pos).end()
            m = _SCHEME_RE.match(value, pos)
            if not m:
                break
            scheme = m.group(1).lower()
            pos = m.end()
            params: dict[str, str] = {}
            while pos < n:
                pm = _PARAM_RE.match(value, pos)
                if pm is None:
                    break
                name = pm.group(1).lower()
                raw = pm.group(2)
                params[name] = re.sub(r"\\(.)", r"\1", raw) if raw is not None else pm.group(3)
                pos = pm.end()
                sep = _COMMA_RE.match(value, pos)
                if sep is None:
                    break
                pos = sep.end()
                # a following "token token" or "token" without "=" starts a new challenge
                if not _PARAM_RE.match(value, pos):
                    break
            out.append(Challenge(scheme, params))
    return out


# --- docker config.json ------------------------------------------------------

def default_docker_config_path() -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (read at each call)."""
    d = os.environ.get("DOCKER_CONFIG")
    if d:
        return os.path.join(d, "config.json")
    return os.path.join(os.path.expanduser("~"), ".docker", "config.json")


def credential_key(host: str) -> str:
    """The config.json key for a registry host: Docker Hub's legacy URL, else the host."""
    h = host.strip().lower()
    h = _key_hostname(h) if "://" in h or "/" in h else h
    return DOCKER_HUB_KEY if h in _DOCKER_HUB_HOSTS else h


def _key_hostname(key: str) -> str:
    """docker's ConvertToHostname: strip the scheme and any path."""
    k = key.strip()
    for prefix in ("http://", "https://"):
        if k.lower().startswith(prefix):
            k = k[len(prefix):]
            break
    return k.split("/", 1)[0].lower()


def _same_registry(key: str, host: str) -> bool:
    a, b = _key_hostname(key), _key_hostname(host)
    if a in _DOCKER_HUB_HOSTS and b in _DOCKER_HUB_HOSTS:
        return True
    return a == b


def _read_config(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidArgument(f"{path}: cannot read: {e.strerror or e}") from None
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{path}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{path}: expected a JSON object")
    return doc


def _write_config(path: str, doc: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=d)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _helper_for(doc: dict, key: str) -> str | None:
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for k, v in helpers.items():
            if isinstance(v, str) and v and _same_registry(k, key):
                return v
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _run_helper(helper: str, action: str, stdin: str) -> subprocess.CompletedProcess:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", helper):
        raise InvalidArgument(f"invalid credential helper name {json.dumps(helper)}")
    try:
        return subprocess.run([f"docker-credential-{helper}", action], input=stdin.encode(),
                              capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        raise InvalidArgument(f"credential helper docker-credential-{helper} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"credential helper docker-credential-{helper} timed out") from None


def _helper_error(helper: str, p: subprocess.CompletedProcess) -> str:
    msg = (p.stdout or p.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return f"docker-credential-{helper}: {msg[0] if msg else f'exit status {p.returncode}'}"


def _decode_entry(entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    user, password = entry.get("username") or "", entry.get("password") or ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            raw = base64.b64decode(auth + "=" * (-len(auth) % 4)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("invalid base64 \"auth\" in docker config") from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise InvalidArgument("invalid \"auth\" in docker config: expected base64 of user:password")
    token = entry.get("identitytoken") or ""
    if not isinstance(user, str) or not isinstance(password, str) or not isinstance(token, str):
        return None
    if not (user or password or token):
        return None
    return Credentials(user, password, token)


def load_credentials(host: str, config_path: str | os.PathLike | None = None) -> Credentials | None:
    """The stored credentials for a registry host, or None.

    Looks at the credential helper for the host (``credHelpers``, then
    ``credsStore``), then at ``auths``: the exact key, then any key with the same
    host name (keys may be URLs such as ``https://host/v1/``).
    """
    path = os.fspath(config_path) if config_path is not None else default_docker_config_path()
    doc = _read_config(path)
    key = credential_key(host)
    helper = _helper_for(doc, key)
    if helper:
        try:
            p = _run_helper(helper, "get", key)
        except InvalidArgument:
            p = None  # helper missing: fall back to the file, as docker does for reads
        if p is not None and p.returncode == 0:
            try:
                out = json.loads(p.stdout)
                user, secret = out.get("Username", ""), out.get("Secret", "")
            except (ValueError, AttributeError):
                raise InvalidArgument(f"docker-credential-{helper}: invalid output") from None
            if user == "<token>":
                return Credentials(identity_token=secret)
            if user or secret:
                return Credentials(user, secret)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    if key in auths:
        c = _decode_entry(auths[key])
        if c is not None:
            return c
    for k, v in auths.items():
        if _same_registry(k, key):
            c = _decode_entry(v)
            if c is not None:
                return c
    return None


def save_credentials(host: str, username: str, password: str,
                     config_path: str | os.PathLike | None = None) -> str:
    """Store credentials for ``host`` (``berth login``); returns the config file written."""
    if not isinstance(username, str) or not username or ":" in username:
        raise InvalidArgument("a username must be non-empty and must not contain \":\"")
    if not isinstance(password, str) or not password:
        raise InvalidArgument("a password must be non-empty")
    path = os.fspath(config_path) if config_path is not None else default_docker_config_path()
    doc = _read_config(path)
    key = credential_key(host)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    # Drop other spellings of the same registry so they cannot shadow the new entry.
    for k in [k for k in auths if k != key and _same_registry(k, key)]:
        del auths[k]
    helper = _helper_for(doc, key)
    if helper:
        p = _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": password}))
        if p.returncode != 0:
            raise Unavailable(_helper_error(helper, p))
        auths[key] = {}
    else:
        entry = auths.get(key) if isinstance(auths.get(key), dict) else {}
        entry = {k: v for k, v in entry.items() if k not in ("auth", "username", "password", "identitytoken")}
        entry["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        auths[key] = entry
    doc["auths"] = auths
    _write_config(path, doc)
    return path


def remove_credentials(host: str, config_path: str | os.PathLike | None = None) -> bool:
    """Forget the credentials for ``host`` (``berth logout``); True if there were any."""
    path = os.fspath(config_path) if config_path is not None else default_docker_config_path()
    doc = _read_config(path)
    key = credential_key(host)
    removed = False
    helper = _helper_for(doc, key)
    if helper:
        p = _run_helper(helper, "erase", key)
        removed = p.returncode == 0
    auths = doc.get("auths")
    if isinstance(auths, dict):
        for k in [k for k in auths if _same_registry(k, key)]:
            del auths[k]
            removed = True
    if removed:
        _write_config(path, doc)
    return removed


def docker_credentials(config_path: str | os.PathLike | None = None) -> Callable[[str], Credentials | None]:
    """A credentials callback reading a docker config.json at each call."""
    def lookup(host: str) -> Credentials | None:
        return load_credentials(host, config_path)
    return lookup


# --- tokens ------------------------------------------------------------------

#: fetch(method, url, headers, body) -> (status, headers mapping (case-insensitive get), body bytes)
Fetcher = Callable[[str, str, dict, bytes | None], tuple[int, Mapping[str, str], bytes]]


def scope_string(scopes: Iterable[str]) -> str:
    """Merge "repository:name:actions" scopes: one entry per resource, actions sorted."""
    merged: dict[str, set[str]] = {}
    order: list[str] = []
    for s in scopes:
        for part in s.split():
            resource, sep, actions = part.rpartition(":")
            if not sep or not resource:
                resource, actions = part, ""
            if resource not in merged:
                merged[resource] = set()
                order.append(resource)
            merged[resource].update(a for a in actions.split(",") if a)
    return " ".join(f"{r}:{','.join(sorted(merged[r]))}" if merged[r] else r for r in sorted(order))


class Authorizer:
    """Per-host challenges and a token cache, shared by a client's threads.

    ``credentials(host)`` returns :class:`Credentials` (or a (user, password)
    tuple) or None. ``fetch`` performs the token request (the client supplies
    it, so timeouts and TLS settings are its own).
    """

    def __init__(self, credentials: Callable[[str], object] | None, fetch: Fetcher,
                 *, clock: Callable[[], float] = time.monotonic, client_id: str = "berth"):
        self._credentials = credentials
        self._fetch = fetch
        self._clock = clock
        self._client_id = client_id
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._fetch_locks: dict[tuple[str, str], threading.Lock] = {}
        #: number of token requests made (for tests and metrics)
        self.token_requests = 0

    def credentials_for(self, host: str) -> Credentials | None:
        if self._credentials is None:
            return None
        c = self._credentials(host)
        if c is None or isinstance(c, Credentials):
            return c
        if isinstance(c, tuple) and len(c) == 2:
            return Credentials(str(c[0]), str(c[1]))
        raise InvalidArgument("a credentials callback must return Credentials, (user, password) or None")

    def challenge(self, host: str) -> Challenge | None:
        with self._lock:
            return self._challenges.get(host)

    def forget(self, host: str | None = None) -> None:
        """Drop cached challenges and tokens (of one host, or all)."""
        with self._lock:
            if host is None:
                self._challenges.clear()
                self._tokens.clear()
            else:
                self._challenges.pop(host, None)
                for k in [k for k in self._tokens if k[0] == host]:
                    del self._tokens[k]

    def authorization(self, host: str, scopes: Iterable[str]) -> str | None:
        """The Authorization header to send before any 401, from what is known of ``host``."""
        ch = self.challenge(host)
        if ch is None:
            return None
        if ch.scheme == "basic":
            c = self.credentials_for(host)
            return c.basic() if c and c.username else None
        if ch.scheme == "bearer":
            return "Bearer " + self._token(host, ch, scope_string(scopes))
        return None

    def handle_unauthorized(self, host: str, scopes: Iterable[str], www_authenticate: Iterable[str],
                            sent: str | None) -> str | None:
        """After a 401: the Authorization header to retry with, or None if retrying is pointless."""
        challenges = parse_www_authenticate(list(www_authenticate))
        ch = next((c for c in challenges if c.scheme == "bearer" and c.realm), None) \
            or next((c for c in challenges if c.scheme == "basic"), None)
        if ch is None:
            return None
        with self._lock:
            self._challenges[host] = Challenge(ch.scheme, {k: v for k, v in ch.params.items() if k != "scope" and k != "error"})
        if ch.scheme == "basic":
            c = self.credentials_for(host)
            header = c.basic() if c and c.username else None
            return header if header and header != sent else None
        want = list(scopes)
        if ch.params.get("scope"):
            want.append(ch.params["scope"])
        key = scope_string(want)
        with self._lock:
            cached = self._tokens.get((host, key))
            if cached and sent == "Bearer " + cached[0]:
                del self._tokens[(host, key)]  # refused: expired or revoked
        header = "Bearer " + self._token(host, ch, key)
        return header if header != sent else None

    def _token(self, host: str, ch: Challenge, scope: str) -> str:
        k = (host, scope)
        with self._lock:
            cached = self._tokens.get(k)
            if cached and cached[1] > self._clock():
                return cached[0]
            flock = self._fetch_locks.setdefault(k, threading.Lock())
        with flock:
            with self._lock:
                cached = self._tokens.get(k)
                if cached and cached[1] > self._clock():
                    return cached[0]
            token, lifetime = self._fetch_token(host, ch, scope)
            with self._lock:
                self._tokens[k] = (token, self._clock() + max(lifetime - TOKEN_EXPIRY_MARGIN, 1.0))
            return token

    def _fetch_token(self, host: str, ch: Challenge, scope: str) -> tuple[str, float]:
        realm = ch.realm or ""
        u = urllib.parse.urlsplit(realm)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise InvalidArgument(f"registry {host} sent an invalid token realm {json.dumps(realm)}")
        creds = self.credentials_for(host)
        service = ch.params.get("service")
        scopes = scope.split() if scope else []
        self.token_requests += 1
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": self._client_id}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            body = urllib.parse.urlencode(form).encode("ascii")
            status, _headers, data = self._fetch("POST", realm, {
                "Content-Type": "application/x-www-form-urlencoded"}, body)
        else:
            q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
            if service:
                q.append(("service", service))
            q += [("scope", s) for s in scopes]
            url = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path or "/", urllib.parse.urlencode(q), ""))
            headers_out = {}
            if creds and creds.username:
                headers_out["Authorization"] = creds.basic()
            status, _headers, data = self._fetch("GET", url, headers_out, None)
        if status in (401, 403):
            if creds:
                raise PermissionDenied(f"authentication to {host} failed: incorrect username or password")
            raise PermissionDenied(f"authentication to {host} required: no credentials (try berth login {host})")
        if status != 200:
            raise Unavailable(f"token server {u.scheme}://{u.netloc} for {host} answered {status}")
        try:
            doc = json.loads(data[:_MAX_TOKEN_RESPONSE])
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument(f"token server for {host} sent invalid JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise InvalidArgument(f"token server for {host} sent no token")
        lifetime = doc.get("expires_in")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime < DEFAULT_TOKEN_LIFETIME:
            lifetime = DEFAULT_TOKEN_LIFETIME
        return token, float(lifetime)
