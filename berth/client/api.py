"""berthd's API, one thin method per endpoint (the Docker Engine API plus berth's namespaces)."""


from berth import fastjson as json
from berth.client.transport import Transport
from berth.errors import (BerthError, FailedPrecondition, InvalidArgument, NotFound,
                          SystemError_, Unavailable)

NAMESPACE_HEADER = "X-Berth-Namespace"


def error_from(status, message):
    cls = {400: InvalidArgument, 404: NotFound, 409: FailedPrecondition, 503: Unavailable}.get(status)
    if cls is None:
        cls = SystemError_ if status >= 500 else BerthError
    e = cls(message)
    e.http_status = status
    return e


class APIClient:
    def __init__(self, address, namespace=None, tls=None, timeout=None):
        self.transport = Transport(address, tls=tls, timeout=timeout)
        self.namespace = namespace

    # --- plumbing ---

    def _headers(self, extra=None):
        h = {}
        if self.namespace:
            h[NAMESPACE_HEADER] = self.namespace
        if extra:
            h.update(extra)
        return h

    def call(self, method, path, params=None, body=None, headers=None, stream=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        resp = self.transport.request(method, path, params=params, body=body, headers=self._headers(headers))
        if resp.status >= 400:
            data = resp.read()
            resp.close()
            raise error_from(resp.status, _message(data, resp.status))
        if stream:
            return resp
        try:
            if resp.headers.get("content-type", "").startswith("application/json"):
                return resp.json()
            return resp.read()
        finally:
            resp.close()

    def upgrade(self, method, path, params=None, body=None, headers=None):
        """A request that hijacks the connection (attach, exec): the response after the daemon's 101."""
        resp = self.transport.request(method, path, params=params, body=body, headers=self._headers(headers),
                                      upgrade=True)
        if resp.status >= 400:
            data = resp.read()
            resp.close()
            raise error_from(resp.status, _message(data, resp.status))
        return resp

    # --- system ---

    def ping(self):
        return self.call("GET", "/_ping")

    def version(self):
        return self.call("GET", "/version")

    def info(self):
        return self.call("GET", "/info")

    def auth(self, username, password, serveraddress):
        return self.call("POST", "/auth", body={"username": username, "password": password,
                                                "serveraddress": serveraddress})

    # --- namespaces (berth) ---

    def namespaces(self):
        return self.call("GET", "/berth/namespaces")

    def namespace_create(self, name, labels=None):
        return self.call("POST", "/berth/namespaces", body={"Name": name, "Labels": labels or {}})

    def namespace_inspect(self, name):
        return self.call("GET", f"/berth/namespaces/{name}")

    def namespace_remove(self, name):
        return self.call("DELETE", f"/berth/namespaces/{name}")

    # --- images ---

    def images(self, all_=False, filters=None, digests=False):
        params = {"all": all_ or None, "digests": digests or None}
        if filters:
            params["filters"] = json.dumps(filters)
        return self.call("GET", "/images/json", params=params)

    def image_inspect(self, name):
        return self.call("GET", f"/images/{name}/json")

    def image_history(self, name):
        return self.call("GET", f"/images/{name}/history")

    def image_tag(self, name, repo, tag=None):
        return self.call("POST", f"/images/{name}/tag", params={"repo": repo, "tag": tag})

    def image_remove(self, name, force=False, noprune=False):
        return self.call("DELETE", f"/images/{name}", params={"force": force or None, "noprune": noprune or None})

    def image_pull(self, name, tag=None, platform=None, auth=None):
        params = {"fromImage": name, "tag": tag, "platform": platform}
        return self.call("POST", "/images/create", params=params, headers=_auth_header(auth), stream=True)

    def image_push(self, name, tag=None, auth=None):
        return self.call("POST", f"/images/{name}/push", params={"tag": tag}, headers=_auth_header(auth),
                         stream=True)

    def image_save(self, names):
        return self.call("GET", "/images/get", params={"names": names} if isinstance(names, str) else None,
                         stream=True) if isinstance(names, str) else \
            self._save_many(names)

    def _save_many(self, names):
        from berth.client.transport import urlencode
        return self.call("GET", "/images/get?" + urlencode([("names", n) for n in names]), stream=True)

    def image_load(self, chunks, quiet=False):
        return self.call("POST", "/images/load", params={"quiet": quiet or None}, body=chunks,
                         headers={"Content-Type": "application/x-tar"}, stream=True)

    def image_import(self, chunks, repo=None, tag=None, changes=(), message=None, platform=None):
        from berth.client.transport import urlencode
        params = [("fromSrc", "-")]
        if repo:
            params.append(("repo", repo))
        if tag:
            params.append(("tag", tag))
        for c in changes:
            params.append(("changes", c))
        if message:
            params.append(("message", message))
        if platform:
            params.append(("platform", platform))
        return self.call("POST", "/images/create?" + urlencode(params), body=chunks,
                         headers={"Content-Type": "application/x-tar"}, stream=True)

    def images_prune(self, filters=None):
        params = {"filters": json.dumps(filters)} if filters else None
        return self.call("POST", "/images/prune", params=params)


def _message(data, status):
    """The daemon's {"message": ...}, or the body as text."""
    try:
        msg = json.loads(data).get("message")
    except (ValueError, AttributeError):
        msg = None
    return msg or data.decode(errors="replace").strip() or f"HTTP {status}"


def _auth_header(auth):
    if not auth:
        return None
    import base64
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()}


# --- containers ---

def _containers(cls):
    def container_create(self, body, name=None):
        return self.call("POST", "/containers/create", params={"name": name}, body=body)

    def container_start(self, cid):
        return self.call("POST", f"/containers/{cid}/start")

    def container_wait(self, cid, condition=None):
        return self.call("POST", f"/containers/{cid}/wait", params={"condition": condition})

    def container_inspect(self, cid):
        return self.call("GET", f"/containers/{cid}/json")

    def containers(self, all_=False, filters=None, limit=None):
        params = {"all": all_ or None, "limit": limit}
        if filters:
            params["filters"] = json.dumps(filters)
        return self.call("GET", "/containers/json", params=params)

    def container_remove(self, cid, force=False, volumes=False):
        return self.call("DELETE", f"/containers/{cid}", params={"force": force or None, "v": volumes or None})

    def container_stop(self, cid, timeout=None):
        return self.call("POST", f"/containers/{cid}/stop", params={"t": timeout})

    def container_kill(self, cid, signal=None):
        return self.call("POST", f"/containers/{cid}/kill", params={"signal": signal})

    def container_logs(self, cid, follow=False, tail=None, since=None, until=None, timestamps=False):
        return self.call("GET", f"/containers/{cid}/logs", params={
            "stdout": True, "stderr": True, "follow": follow or None, "tail": tail, "since": since, "until": until,
            "timestamps": timestamps or None}, stream=True)

    def container_resize(self, cid, h, w):
        return self.call("POST", f"/containers/{cid}/resize", params={"h": h, "w": w})

    def container_attach(self, cid, stdin=False, detach_keys=None):
        """Hijack: the raw socket of an attach, after the daemon's 101."""
        params = {"stream": True, "stdin": stdin, "stdout": True, "stderr": True}
        if detach_keys:
            params["detachKeys"] = detach_keys
        return self.upgrade("POST", f"/containers/{cid}/attach", params=params)

    for f in (container_create, container_start, container_wait, container_inspect, containers, container_remove,
              container_stop, container_kill, container_logs, container_resize, container_attach):
        setattr(cls, f.__name__, f)
    return cls


_containers(APIClient)


def _execs(cls):
    def exec_create(self, cid, body):
        return self.call("POST", f"/containers/{cid}/exec", body=body)

    def exec_inspect(self, eid):
        return self.call("GET", f"/exec/{eid}/json")

    def exec_start(self, eid, detach=False, tty=False):
        body = json.dumps({"Detach": detach, "Tty": tty}).encode()
        if detach:
            return self.call("POST", f"/exec/{eid}/start", body=body, headers={"Content-Type": "application/json"})
        return self.upgrade("POST", f"/exec/{eid}/start", body=body, headers={"Content-Type": "application/json"})

    for f in (exec_create, exec_inspect, exec_start):
        setattr(cls, f.__name__, f)
    return cls


_execs(APIClient)

from berth.client.container_ops import install as _install_container_ops  # noqa: E402
_install_container_ops(APIClient)
from berth.client.networks import install as _install_networks  # noqa: E402
_install_networks(APIClient)

from berth.client.volumes import install as _install_volumes  # noqa: E402
_install_volumes(APIClient)

from berth.client.build import install as _install_build  # noqa: E402
_install_build(APIClient)
