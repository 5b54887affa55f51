"""APIClient methods for pause/unpause, rename, top, stats, archive (cp), changes and prune.

Added to berth.client.api.APIClient by install(APIClient), as _containers(cls) does there.
"""


from berth import fastjson as json
from berth.errors import NotFound

STAT_HEADER = "x-docker-container-path-stat"


def _decode_stat(value):
    if not value:
        return None
    try:
        import base64
        return json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return None


def install(cls):
    def container_pause(self, cid):
        return self.call("POST", f"/containers/{cid}/pause")

    def container_unpause(self, cid):
        return self.call("POST", f"/containers/{cid}/unpause")

    def container_rename(self, cid, name):
        return self.call("POST", f"/containers/{cid}/rename", params={"name": name})

    def container_top(self, cid, ps_args=None):
        return self.call("GET", f"/containers/{cid}/top", params={"ps_args": ps_args or None})

    def container_stats(self, cid, stream=False, one_shot=False):
        """stream=False: one stats object; stream=True: the response (iter_json() over it)."""
        params = {"stream": stream, "one-shot": one_shot or None}
        if stream:
            return self.call("GET", f"/containers/{cid}/stats", params=params, stream=True)
        return self.call("GET", f"/containers/{cid}/stats", params=params)

    def container_stat_path(self, cid, path):
        """HEAD /containers/{id}/archive: docker's path stat (name, size, mode, mtime, linkTarget)."""
        from berth.client.api import error_from
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
        """GET /containers/{id}/archive: (stat, response streaming the tar)."""
        resp = self.call("GET", f"/containers/{cid}/archive", params={"path": path}, stream=True)
        return _decode_stat(resp.headers.get(STAT_HEADER)), resp

    def container_put_archive(self, cid, path, chunks, copy_uid_gid=False, no_overwrite_dir_nondir=True):
        return self.call("PUT", f"/containers/{cid}/archive", body=chunks,
                         params={"path": path, "copyUIDGID": copy_uid_gid or None,
                                 "noOverwriteDirNonDir": no_overwrite_dir_nondir or None},
                         headers={"Content-Type": "application/x-tar"})

    def container_changes(self, cid):
        return self.call("GET", f"/containers/{cid}/changes")

    def containers_prune(self, filters=None):
        params = {"filters": json.dumps(filters)} if filters else None
        return self.call("POST", "/containers/prune", params=params)

    for f in (container_pause, container_unpause, container_rename, container_top, container_stats,
              container_stat_path, container_get_archive, container_put_archive, container_changes,
              containers_prune):
        setattr(cls, f.__name__, f)
    return cls
