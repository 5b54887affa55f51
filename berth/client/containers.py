"""The client's methods for containers and their execs: create, start, wait, inspect, list, remove,
stop, kill, logs, resize, attach; pause/unpause, rename, top, stats, archive (cp), changes, prune;
exec create, inspect, start."""


from berth import fastjson as json
from berth.client.transport import error_from
from berth.errors import NotFound

TYPE_CHECKING = False  # the type comments' names; typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable  # noqa: F401
    from typing import Any  # noqa: F401

    from berth.client.transport import Response  # noqa: F401

STAT_HEADER = "x-docker-container-path-stat"


def _decode_stat(value):
    # type: (str | None) -> dict | None
    if not value:
        return None
    try:
        import base64
        return json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return None


class ContainersAPI:
    """Container and exec endpoints, mixed into berth.client.api.APIClient (which provides call(),
    upgrade(), transport and _headers())."""

    def container_create(self, body, name=None):
        # type: (Any, str | None) -> dict
        return self.call("POST", "/containers/create", params={"name": name}, body=body)

    def container_start(self, cid):
        # type: (str) -> Any
        return self.call("POST", f"/containers/{cid}/start")

    def container_wait(self, cid, condition=None):
        # type: (str, str | None) -> dict
        return self.call("POST", f"/containers/{cid}/wait", params={"condition": condition})

    def container_inspect(self, cid):
        # type: (str) -> dict
        return self.call("GET", f"/containers/{cid}/json")

    def containers(self, all_=False, filters=None, limit=None):
        # type: (bool, dict[str, Any] | None, int | None) -> list[dict]
        params = {"all": all_ or None, "limit": limit}
        if filters:
            params["filters"] = json.dumps(filters)
        return self.call("GET", "/containers/json", params=params)

    def container_remove(self, cid, force=False, volumes=False):
        # type: (str, bool, bool) -> Any
        return self.call("DELETE", f"/containers/{cid}", params={"force": force or None, "v": volumes or None})

    def container_stop(self, cid, timeout=None):
        # type: (str, float | None) -> Any
        return self.call("POST", f"/containers/{cid}/stop", params={"t": timeout})

    def container_kill(self, cid, signal=None):
        # type: (str, str | int | None) -> Any
        return self.call("POST", f"/containers/{cid}/kill", params={"signal": signal})

    def container_logs(self, cid, follow=False, tail=None, since=None, until=None, timestamps=False, details=False):
        # type: (str, bool, str | int | None, str | int | None, str | int | None, bool, bool) -> Response
        return self.call("GET", f"/containers/{cid}/logs", params={
            "stdout": True, "stderr": True, "follow": follow or None, "tail": tail, "since": since, "until": until,
            "timestamps": timestamps or None, "details": details or None}, stream=True)

    def container_resize(self, cid, h, w):
        # type: (str, int, int) -> Any
        return self.call("POST", f"/containers/{cid}/resize", params={"h": h, "w": w})

    def container_attach(self, cid, stdin=False, detach_keys=None):
        # type: (str, bool, str | None) -> Response
        """Hijack: the raw socket of an attach, after the daemon's 101."""
        params = {"stream": True, "stdin": stdin, "stdout": True, "stderr": True}
        if detach_keys:
            params["detachKeys"] = detach_keys
        return self.upgrade("POST", f"/containers/{cid}/attach", params=params)

    # --- pause, rename, top, stats, archive, changes, prune ---

    def container_pause(self, cid):
        # type: (str) -> Any
        return self.call("POST", f"/containers/{cid}/pause")

    def container_unpause(self, cid):
        # type: (str) -> Any
        return self.call("POST", f"/containers/{cid}/unpause")

    def container_rename(self, cid, name):
        # type: (str, str) -> Any
        return self.call("POST", f"/containers/{cid}/rename", params={"name": name})

    def container_top(self, cid, ps_args=None):
        # type: (str, str | None) -> dict
        return self.call("GET", f"/containers/{cid}/top", params={"ps_args": ps_args or None})

    def container_stats(self, cid, stream=False, one_shot=False):
        # type: (str, bool, bool) -> dict | Response
        """stream=False: one stats object; stream=True: the response (iter_json() over it)."""
        params = {"stream": stream, "one-shot": one_shot or None}
        if stream:
            return self.call("GET", f"/containers/{cid}/stats", params=params, stream=True)
        return self.call("GET", f"/containers/{cid}/stats", params=params)

    def container_stat_path(self, cid, path):
        # type: (str, str) -> dict | None
        """HEAD /containers/{id}/archive: docker's path stat (name, size, mode, mtime, linkTarget)."""
        resp = self.transport.request("HEAD", f"/containers/{cid}/archive", params={"path": path},
                                      headers=self._headers())
        try:
            if resp.status >= 400:
                if resp.status == 404:
                    raise NotFound(f"Could not find the file {path} in container {cid}")
                raise error_from(resp.status, f"cannot stat {path} in container {cid}: HTTP {resp.status}")
            return _decode_stat(resp.headers.get(STAT_HEADER))
        finally:
            resp.close()

    def container_get_archive(self, cid, path):
        # type: (str, str) -> tuple[dict | None, Response]
        """GET /containers/{id}/archive: (stat, response streaming the tar)."""
        resp = self.call("GET", f"/containers/{cid}/archive", params={"path": path}, stream=True)
        return _decode_stat(resp.headers.get(STAT_HEADER)), resp

    def container_put_archive(self, cid, path, chunks, copy_uid_gid=False, no_overwrite_dir_nondir=True):
        # type: (str, str, Iterable[bytes], bool, bool) -> Any
        return self.call("PUT", f"/containers/{cid}/archive", body=chunks,
                         params={"path": path, "copyUIDGID": copy_uid_gid or None,
                                 "noOverwriteDirNonDir": no_overwrite_dir_nondir or None},
                         headers={"Content-Type": "application/x-tar"})

    def container_changes(self, cid):
        # type: (str) -> list[dict] | None
        return self.call("GET", f"/containers/{cid}/changes")

    def containers_prune(self, filters=None):
        # type: (dict[str, Any] | None) -> dict
        params = {"filters": json.dumps(filters)} if filters else None
        return self.call("POST", "/containers/prune", params=params)

    # --- execs ---

    def exec_create(self, cid, body):
        # type: (str, Any) -> dict
        return self.call("POST", f"/containers/{cid}/exec", body=body)

    def exec_inspect(self, eid):
        # type: (str) -> dict
        return self.call("GET", f"/exec/{eid}/json")

    def exec_start(self, eid, detach=False, tty=False):
        # type: (str, bool, bool) -> Any
        body = json.dumps({"Detach": detach, "Tty": tty}).encode()
        if detach:
            return self.call("POST", f"/exec/{eid}/start", body=body, headers={"Content-Type": "application/json"})
        return self.upgrade("POST", f"/exec/{eid}/start", body=body, headers={"Content-Type": "application/json"})
