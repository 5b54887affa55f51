"""berthd's API, one thin method per endpoint (the Docker Engine API plus berth's namespaces).

APIClient is the transport plumbing (call, upgrade), the system, namespace and image endpoints,
and the endpoint groups of its sibling modules as mixins: containers and execs
(client/containers.py), networks, volumes, build.
"""

from __future__ import annotations

from berth import fastjson as json
from berth.client.build import BuildAPI
from berth.client.containers import ContainersAPI
from berth.client.networks import NetworksAPI
from berth.client.transport import Transport, error_from
from berth.client.volumes import VolumesAPI

NAMESPACE_HEADER = "X-Berth-Namespace"


class APIClient(ContainersAPI, NetworksAPI, VolumesAPI, BuildAPI):
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
