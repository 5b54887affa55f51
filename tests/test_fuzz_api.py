"""API fuzz: malformed requests against every route of a private berthd, generated from the
table of routes and their schemas (berth/api/validate.py ROUTES): wrong types, ranges, sizes and
encodings for every query parameter and body field, bodies of the wrong JSON type, deep nesting,
oversized bodies, bad API versions. Bad input is a 4xx: not one 5xx, and the daemon lives on.

Bounded in count and in time. Every request goes to the daemon's unix socket; requests that
could reach a registry use 127.0.0.1:1 (nothing listens) or names that are not valid references.
"""
# ruff: noqa: F811

import json
import os
import socket
import time

import pytest
from daemon_fixtures import DATA, Daemon

from berth.api import validate as v

MAX_REQUESTS = 8000
MAX_SECONDS = 240
MISSING = "fz-missing"
IMAGE = "busybox-layers:1"

# the values tried for a query parameter and for a JSON body field
Q_VALUES = ["abc", "-1", "99999999999999999999999", "1.5", "", "x" * 300, "\u00fc\u00df", "%ff%fe", "[1]",
            '{"label":[5]}', "{}", "true", "0"]
B_VALUES = [5, -1, 1, 1.5, "x", "", True, None, [], {}, [5], {"a": 5}, "x" * 300, 2 ** 70, -(2 ** 70)]
RAW_BODIES = [b"", b"{", b"[]", b'"x"', b"5", b"null", b"true", b"[" * 100000, b"{\"a\":" * 50000,
              b"\xff\xfe\xfa", b'{"Image": "\xff"}', b"[" * 500 + b"]" * 500]

# which id/name a route's path takes: a real object only where the request cannot destroy it
READ_ONLY = {"GET", "HEAD"}
REAL_ALSO = {("POST", "/containers/{id}/resize"), ("POST", "/containers/{id}/exec"),
             ("PUT", "/containers/{id}/archive"), ("POST", "/exec/{id}/resize")}

BASE_BODIES = {
    # an image that is not there: the request is checked all the way, without making hundreds of
    # containers (test_api_versions_and_messages sends bad values with a real image)
    ("POST", "/containers/create"): {"Image": "fz-no-such-image:1", "Cmd": ["true"]},
    ("POST", "/containers/{id}/exec"): {"Cmd": ["true"]},
    ("POST", "/exec/{id}/start"): {"Detach": True},
    ("POST", "/networks/create"): {"Name": "fznet2"},
    ("POST", "/networks/{id}/connect"): {"Container": MISSING},
    ("POST", "/networks/{id}/disconnect"): {"Container": MISSING},
    ("POST", "/volumes/create"): {"Name": "fzvol2"},
    ("POST", "/auth"): {"username": "u", "password": "p", "serveraddress": "127.0.0.1:1"},
    ("POST", "/berth/namespaces"): {"Name": "fzns"},
}
BASE_QUERY = {
    ("POST", "/images/create"): {"fromImage": "127.0.0.1:1/fz", "tag": "1"},
    ("POST", "/containers/{id}/rename"): {"name": "fz-renamed"},
    ("GET", "/containers/{id}/archive"): {"path": "/etc/hostname"},
    ("HEAD", "/containers/{id}/archive"): {"path": "/etc/hostname"},
    ("PUT", "/containers/{id}/archive"): {"path": "/tmp"},
    ("GET", "/containers/{id}/logs"): {"stdout": "1"},
}
# values of these would make berthd contact a registry if they were valid names: only invalid ones
NO_VALID_NAMES = {("POST", "/images/create", "fromImage"), ("POST", "/auth", "serveraddress")}
INVALID_REFS = ["", "x" * 300, "UPPER/case", "\u00fc", "a b", "[1]", "%ff"]


def _request(sock_path, method, target, body=None, headers=None, timeout=15):
    """One raw HTTP/1.1 request; the status (the body is not waited for: streams stay open)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        h = {"Host": "berth", "Connection": "close"}
        if body is not None:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {val}\r\n" for k, val in h.items()) + "\r\n"
        s.sendall(head.encode("utf-8", "surrogateescape") + (body or b""))
        data = b""
        while b"\r\n" not in data:
            c = s.recv(65536)
            if not c:
                break
            data += c
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the daemon refused the rest of a huge body early
    except socket.timeout:
        return -1  # no answer: a hang
    finally:
        s.close()


def _q(s):
    """Percent-encode a query value, except a literal %xx sequence kept to send raw bytes."""
    if s == "%ff%fe":
        return s
    from urllib.parse import quote
    return quote(s, safe="")


def _target(path, query):
    if not query:
        return path
    return path + "?" + "&".join(f"{k}={_q(val)}" for k, val in query.items())


def _paths(schema, prefix=""):
    """The field paths of an Obj schema (and of the Objs inside it), with their types."""
    out = []
    if isinstance(schema, v.Obj):
        for k, t in schema.fields.items():
            p = f"{prefix}.{k}" if prefix else k
            out.append((p, t))
            if isinstance(t, v.Obj):
                out.extend(_paths(t, p))
    return out


def _set(body, path, value):
    body = json.loads(json.dumps(body))
    cur = body
    keys = path.split(".")
    for k in keys[:-1]:
        if not isinstance(cur.get(k), dict):
            cur[k] = {}
        cur = cur[k]
    cur[keys[-1]] = value
    return body


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("fuzz"))
    d.start()
    try:
        assert d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
        assert d.berth("run", "-d", "--name", "fz-run", IMAGE, "sleep", "1000").returncode == 0
        assert d.berth("create", "--name", "fz-stopped", IMAGE, "true").returncode == 0
        assert d.berth("run", "-d", "--name", "fz-talk", IMAGE, "sh", "-c",
                       "while true; do echo talk; sleep 0.05; done").returncode == 0
        assert d.berth("volume", "create", "fzvol").returncode == 0
        assert d.berth("network", "create", "fznet").returncode == 0
        yield d
    finally:
        d.berth("rm", "-f", "fz-run", "fz-talk")
        d.cleanup()


def _exec_id(d):
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    body = json.dumps({"Cmd": ["true"]}).encode()
    s.sendall(b"POST /containers/fz-run/exec HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[-1] if b"Transfer-Encoding: chunked" in data
                      else data.split(b"\r\n\r\n", 1)[1])["Id"]


def _real(path, exec_id):
    if path.startswith("/exec/"):
        return exec_id
    if path.startswith("/containers/"):
        return "fz-run"
    if path.startswith("/images/"):
        return IMAGE
    if path.startswith("/networks/"):
        return "fznet"
    if path.startswith("/volumes/"):
        return "fzvol"
    if path.startswith("/berth/namespaces/"):
        return "default"
    return MISSING


def _fill(path, value):
    return path.replace("{id}", value).replace("{name}", value)


# routes that reach outside with well-formed values (a registry, a build context URL): only
# checked by test_api_versions_and_messages' hand-written requests, never fuzzed
NOT_FUZZED = {("POST", "/build"), ("GET", "/images/search"), ("GET", "/distribution/{name}/json")}


def _served():
    """(method, route) of every route berthd serves."""
    from berth.api.app import make_app
    return {(r.method, r.resource.canonical) for r in make_app(None).router.routes()
            if not r.resource.canonical.startswith("/v{")}


def _requests(exec_id):
    """(method, target, body) of the whole run, generated from the routes' schemas."""
    out = []
    served = _served()
    for (method, path), route in v.ROUTES.items():
        key = (method, path)
        if key in NOT_FUZZED or key not in served:  # ROUTES also has routes berthd may serve later
            continue
        real = (method in READ_ONLY or key in REAL_ALSO) and "{" in path
        pid = _real(path, exec_id) if real else MISSING
        if path.startswith("/images/{name}/push"):
            pid = "127.0.0.1:1/fz-missing"
        base_path = _fill(path, pid)
        base_q = BASE_QUERY.get(key, {})
        base_b = BASE_BODIES.get(key, {}) if route.body is not None else None

        def body_bytes(b):
            return None if b is None else json.dumps(b).encode()
        # bad path parameters
        if "{" in path:
            for bad in ("x" * 300, "x" * 2000, "%00", "..", "\u00fc", "a%2Fb"):
                if path.startswith("/images/{name}/push") and bad in ("x" * 300, "\u00fc"):
                    continue
                out.append((method, _target(_fill(path, _q(bad) if bad not in ("%00", "a%2Fb") else bad), base_q),
                            body_bytes(base_b)))
        # each query parameter, each bad value
        for name in route.query:
            values = INVALID_REFS if (method, path, name) in NO_VALID_NAMES else Q_VALUES
            for val in values:
                out.append((method, _target(base_path, dict(base_q, **{name: val})), body_bytes(base_b)))
        # the body: wrong JSON, wrong types of each field
        if route.body is not None:
            for raw in RAW_BODIES:
                out.append((method, _target(base_path, base_q), raw))
            for field, t in _paths(route.body):
                for val in B_VALUES:
                    if (method, path, field) in NO_VALID_NAMES and isinstance(val, str):
                        continue
                    out.append((method, _target(base_path, base_q), body_bytes(_set(base_b, field, val))))
            # a body beyond the limit
            out.append((method, _target(base_path, base_q), b'{"x": "' + b"x" * (v.MAX_JSON_BODY + 10) + b'"}'))
        elif route.stream:
            for raw in (b"not a tar at all", b"\x00" * 1024, os.urandom(4096)):
                out.append((method, _target(base_path, base_q), raw))
    for ver in ("0.1", "1.0", "1.23", "99.0", "2.0", "1.999"):
        out.append(("GET", f"/v{ver}/_ping", None))
        out.append(("GET", f"/v{ver}/containers/json?limit=abc", None))
    return out


def test_every_route_has_a_schema():
    missing = sorted(k for k in _served() if k not in v.ROUTES)
    assert missing == [], f"routes without a schema in berth/api/validate.py ROUTES: {missing}"


def test_api_fuzz_no_5xx_and_the_daemon_lives(fuzz_daemon):
    d = fuzz_daemon
    exec_id = _exec_id(d)
    reqs = _requests(exec_id)
    assert len(reqs) > 1000, len(reqs)
    reqs = reqs[:MAX_REQUESTS]
    t0 = time.monotonic()
    tried, five, statuses = 0, [], {}
    for method, target, body in reqs:
        if time.monotonic() - t0 > MAX_SECONDS:
            break
        st = _request(d.sock, method, target, body)
        tried += 1
        statuses[st // 100] = statuses.get(st // 100, 0) + 1
        if st == 503 and target.startswith(("/auth", "/images/create")):
            continue  # a well-formed login or pull to 127.0.0.1:1: the registry is unavailable, rightly a 503
        if st == 503 and SWARM_PATHS & set(target.split("?")[0].split("/")[1:3]):
            continue  # dockerd's answer of a node not in a swarm (berth/api/swarm.py), whatever it is sent
        if st >= 500 or st == -1 or st == 0 and (body is None or len(body) < v.MAX_JSON_BODY):
            five.append((st, method, target[:120], (body or b"")[:80]))
    print(f"\nAPI fuzz: {tried} requests in {time.monotonic() - t0:.0f}s, by status class {sorted(statuses.items())}, "
          f"5xx/no answer: {len(five)}")
    assert d.proc.poll() is None, "berthd died"
    assert _request(d.sock, "GET", "/_ping") == 200
    for f in five:
        print("5XX", f)
    assert five == [], five[:20]
    log = d.log()
    assert "Traceback" not in log, log[-3000:]
    assert tried >= min(len(reqs), 1000)


SWARM_PATHS = {"swarm", "nodes", "services", "tasks", "secrets", "configs"}


def test_api_versions_and_messages(fuzz_daemon):
    d = fuzz_daemon
    from berth.client.api import APIClient
    c = APIClient(d.host)
    ver = c.version()
    lo, hi = ver["MinAPIVersion"], ver["ApiVersion"]

    def call(method, target, body=None):
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.sock)
        h = f"{method} {target} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
        if body is not None:
            h += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        s.sendall(h.encode() + b"\r\n" + (body or b""))
        data = b""
        while True:
            c_ = s.recv(65536)
            if not c_:
                break
            data += c_
        s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        try:
            msg = json.loads(rest).get("message", "")
        except (ValueError, AttributeError):
            msg = rest.decode(errors="replace")
        return int(head.split(b" ")[1]), msg

    assert call("GET", f"/v{hi}/_ping")[0] == 200
    assert call("GET", f"/v{lo}/version")[0] == 200
    assert call("GET", "/v0.1/version") == (400, f"client version 0.1 is too old. Minimum supported API version is {lo}, "
                                                 "please upgrade your client to a newer version")
    assert call("GET", "/v99.0/version") == (400, f"client version 99.0 is too new. Maximum supported API version is {hi}")
    st, msg = call("POST", "/containers/create", json.dumps({"Image": IMAGE, "HostConfig": {"Memory": "x"}}).encode())
    assert (st, msg) == (400, 'invalid value for "HostConfig.Memory": expected an integer, got string "x"')
    st, msg = call("POST", "/containers/create", json.dumps({"Image": IMAGE, "HostConfig": {"Memory": 1}}).encode())
    assert st == 400 and "Minimum memory limit allowed is 6MB" in msg, msg
    st, msg = call("POST", "/containers/create", json.dumps({"Image": IMAGE, "HostConfig": {"CpuShares": -1}}).encode())
    assert st == 400 and "HostConfig.CpuShares" in msg, msg
    st, msg = call("POST", "/containers/create", json.dumps({"Image": 5}).encode())
    assert (st, msg) == (400, 'invalid value for "Image": expected a string, got number')
    st, msg = call("POST", "/containers/create", json.dumps({"Image": IMAGE, "HostConfig": "x"}).encode())
    assert (st, msg) == (400, 'invalid value for "HostConfig": expected an object, got string')
    st, msg = call("POST", "/containers/create", b"[" * 100000)
    assert st == 400 and "nested too deeply" in msg, msg
    assert call("GET", "/containers/json?limit=abc") == (
        400, 'invalid value for "limit": expected an integer, got "abc"')
    assert call("POST", "/containers/fz-run/stop?t=abc")[0] == 400
    assert call("GET", "/containers/fz-run/logs?stdout=1&since=x")[0] == 400
    st, msg = call("GET", "/containers/json?filters=" + _q('{"label":[5]}'))
    assert (st, msg) == (400, 'invalid value for "filters.label": expected strings, got number')
    st, msg = call("POST", "/volumes/create", json.dumps({"Name": "v" * 300}).encode())
    assert (st, msg) == (400, 'invalid value for "Name": longer than 255 characters')
    st, msg = call("POST", "/auth", b"")
    assert st == 400, msg
    st, msg = call("PUT", "/containers/fz-run/archive?path=/tmp", b"not a tar")
    assert 400 <= st < 500, (st, msg)
    big = b'{"Image": "' + b"x" * (8 << 20) + b'"}'
    st, msg = call("POST", "/containers/create", big)
    assert st == 413 and len(msg) < 200, (st, msg[:300])
    st, msg = call("GET", "/volumes/" + "y" * 3000)
    assert st == 400 and len(msg) < 200, msg


def test_listen_backlog_is_somaxconn(fuzz_daemon):
    """As Go's listeners: the backlog is the system's somaxconn (aiohttp's 128 drops bursts)."""
    import subprocess
    with open("/proc/sys/net/core/somaxconn") as f:
        want = min(int(f.read()), 65535)
    out = subprocess.run(["ss", "-xlH"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if fuzz_daemon.sock in line]
    assert rows, out
    assert int(rows[0][3]) == want, rows


def test_clients_that_go_away_are_not_errors(fuzz_daemon):
    """`logs -f`, `events`, `stats` and a save whose client disconnects: normal, not ERROR tracebacks."""
    d = fuzz_daemon
    before = os.path.getsize(d.log_path)
    for target in ("/containers/fz-talk/logs?follow=1&stdout=1", "/events", "/containers/fz-talk/stats",
                   "/images/get?names=" + IMAGE):
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.sock)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200"), target
        s.close()
    time.sleep(1.5)  # the next writes find the connections gone
    p = d.berth("logs", "--tail", "1", "fz-talk")
    assert p.returncode == 0 and "talk" in p.out
    with open(d.log_path, errors="replace") as f:
        f.seek(before)
        new = f.read()
    assert "Traceback" not in new and "ERROR" not in new, new
