"""berthd's API, one thin method per endpoint (the Docker Engine API plus berth's namespaces).

APIClient is the transport plumbing (call, upgrade), the system, namespace and image endpoints,
and the endpoint groups of its sibling modules as mixins: containers and execs
(client/containers.py), networks, volumes, build.
"""

from berth import fastjson as json
from berth.client.build import BuildAPI
from berth.client.containers import ContainersAPI
from berth.client.networks import NetworksAPI
from berth.client.transport import Transport, error_from
from berth.client.volumes import VolumesAPI

TYPE_CHECKING = False  # the type comments' names; typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence  # noqa: F401
    from typing import Any  # noqa: F401

    from berth.client.transport import Response, TLSConfig  # noqa: F401

NAMESPACE_HEADER = "X-Berth-Namespace"


class APIClient(ContainersAPI, NetworksAPI, VolumesAPI, BuildAPI):
    def __init__(self, address, namespace=None, tls=None, timeout=None):
        # type: (str, str | None, TLSConfig | None, float | None) -> None
        self.transport = Transport(address, tls=tls, timeout=timeout)
        self.namespace = namespace

    # --- plumbing ---

    def _headers(self, extra=None):
        # type: (dict[str, str] | None) -> dict[str, str]
        h = {}
        if self.namespace:
            h[NAMESPACE_HEADER] = self.namespace
        if extra:
            h.update(extra)
        return h

    def call(self, method, path, params=None, body=None, headers=None, stream=False):
        # type: (str, str, dict[str, Any] | None, Any | None, dict[str, str] | None, bool) -> Any
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
        # type: (str, str, dict[str, Any] | None, Any | None, dict[str, str] | None) -> Response
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
        # type: () -> Any
        return self.call("GET", "/_ping")

    def version(self):
        # type: () -> dict
        return self.call("GET", "/version")

    def info(self):
        # type: () -> dict
        return self.call("GET", "/info")

    def auth(self, username, password, serveraddress):
        # type: (str, str, str) -> dict
        return self.call("POST", "/auth", body={"username": username, "password": password,
                                                "serveraddress": serveraddress})

    # --- namespaces (berth) ---

    def namespaces(self):
        # type: () -> list[dict]
        return self.call("GET", "/berth/namespaces")

    def namespace_create(self, name, labels=None):
        # type: (str, dict[str, str] | None) -> Any
        return self.call("POST", "/berth/namespaces", body={"Name": name, "Labels": labels or {}})

    def namespace_inspect(self, name):
        # type: (str) -> dict
        return self.call("GET", f"/berth/namespaces/{name}")

    def namespace_remove(self, name):
        # type: (str) -> Any
        return self.call("DELETE", f"/berth/namespaces/{name}")

    # --- images ---

    def images(self, all_=False, filters=None, digests=False):
        # type: (bool, dict[str, Any] | None, bool) -> list[dict]
        params = {"all": all_ or None, "digests": digests or None}
        if filters:
            params["filters"] = json.dumps(filters)
        return self.call("GET", "/images/json", params=params)

    def image_inspect(self, name):
        # type: (str) -> dict
        return self.call("GET", f"/images/{name}/json")

    def image_history(self, name):
        # type: (str) -> list[dict]
        return self.call("GET", f"/images/{name}/history")

    def image_tag(self, name, repo, tag=None):
        # type: (str, str, str | None) -> Any
        return self.call("POST", f"/images/{name}/tag", params={"repo": repo, "tag": tag})

    def image_remove(self, name, force=False, noprune=False):
        # type: (str, bool, bool) -> list[dict]
        return self.call("DELETE", f"/images/{name}", params={"force": force or None, "noprune": noprune or None})

    def image_pull(self, name, tag=None, platform=None, auth=None):
        # type: (str, str | None, str | None, dict[str, str] | None) -> Response
        params = {"fromImage": name, "tag": tag, "platform": platform}
        return self.call("POST", "/images/create", params=params, headers=_auth_header(auth), stream=True)

    def image_search(self, term, limit=None, filters=None, auth=None):
        # type: (str, int | None, dict | None, dict[str, str] | None) -> list[dict]
        params = {"term": term, "limit": limit, "filters": json.dumps(filters) if filters else None}
        return self.call("GET", "/images/search", params=params, headers=_auth_header(auth))

    def image_push(self, name, tag=None, auth=None):
        # type: (str, str | None, dict[str, str] | None) -> Response
        return self.call("POST", f"/images/{name}/push", params={"tag": tag}, headers=_auth_header(auth),
                         stream=True)

    def image_save(self, names):
        # type: (str | list[str]) -> Response
        return self.call("GET", "/images/get", params={"names": names} if isinstance(names, str) else None,
                         stream=True) if isinstance(names, str) else \
            self._save_many(names)

    def _save_many(self, names):
        # type: (list[str]) -> Response
        from berth.client.transport import urlencode
        return self.call("GET", "/images/get?" + urlencode([("names", n) for n in names]), stream=True)

    def image_load(self, chunks, quiet=False):
        # type: (Iterable[bytes], bool) -> Response
        return self.call("POST", "/images/load", params={"quiet": quiet or None}, body=chunks,
                         headers={"Content-Type": "application/x-tar"}, stream=True)

    def image_import(self, chunks, repo=None, tag=None, changes=(), message=None, platform=None):
        # type: (Iterable[bytes], str | None, str | None, Sequence[str], str | None, str | None) -> Response
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
        # type: (dict[str, Any] | None) -> dict
        params = {"filters": json.dumps(filters)} if filters else None
        return self.call("POST", "/images/prune", params=params)


def _message(data, status):
    # type: (bytes, int) -> str
    """The daemon's {"message": ...}, or the body as text."""
    try:
        msg = json.loads(data).get("message")
    except (ValueError, AttributeError):
        msg = None
    return msg or data.decode(errors="replace").strip() or f"HTTP {status}"


def _auth_header(auth):
    # type: (dict[str, str]) -> dict[str, str] | None
    if not auth:
        return None
    import base64
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()}
