"""The client's methods for volumes: /volumes, /volumes/create, /volumes/{name}, /volumes/prune."""

from berth import fastjson as json

TYPE_CHECKING = False  # the type comments' names; typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from typing import Any  # noqa: F401


class VolumesAPI:
    """Volume endpoints, mixed into berth.client.api.APIClient (which provides call())."""

    def volumes(self, filters=None):
        # type: (dict[str, Any] | None) -> dict
        params = {"filters": json.dumps(filters)} if filters else None
        return self.call("GET", "/volumes", params=params)

    def volume_create(self, name=None, driver=None, opts=None, labels=None):
        # type: (str | None, str | None, dict[str, str] | None, dict[str, str] | None) -> dict
        body = {"Name": name or "", "Driver": driver or "local", "DriverOpts": opts or {}, "Labels": labels or {}}
        return self.call("POST", "/volumes/create", body=body)

    def volume_inspect(self, name):
        # type: (str) -> dict
        return self.call("GET", f"/volumes/{name}")

    def volume_remove(self, name, force=False):
        # type: (str, bool) -> Any
        return self.call("DELETE", f"/volumes/{name}", params={"force": force or None})

    def volumes_prune(self, filters=None):
        # type: (dict[str, Any] | None) -> dict
        params = {"filters": json.dumps(filters)} if filters else None
        return self.call("POST", "/volumes/prune", params=params)
