"""The client's methods for /networks."""

from berth import fastjson as json

TYPE_CHECKING = False  # the type comments' names; typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from typing import Any  # noqa: F401


class NetworksAPI:
    """Network endpoints, mixed into berth.client.api.APIClient (which provides call())."""

    def networks(self, filters=None):
        # type: (dict[str, Any] | None) -> list[dict]
        return self.call("GET", "/networks", params={"filters": json.dumps(filters) if filters else None})

    def network_inspect(self, ref):
        # type: (str) -> dict
        return self.call("GET", f"/networks/{ref}")

    def network_create(self, body):
        # type: (Any) -> dict
        return self.call("POST", "/networks/create", body=body)

    def network_remove(self, ref):
        # type: (str) -> Any
        return self.call("DELETE", f"/networks/{ref}")

    def networks_prune(self, filters=None):
        # type: (dict[str, Any] | None) -> dict
        return self.call("POST", "/networks/prune", params={"filters": json.dumps(filters) if filters else None})

    def network_connect(self, ref, container, endpoint_config=None):
        # type: (str, str, dict[str, Any] | None) -> Any
        return self.call("POST", f"/networks/{ref}/connect",
                         body={"Container": container, "EndpointConfig": endpoint_config or {}})

    def network_disconnect(self, ref, container, force=False):
        # type: (str, str, bool) -> Any
        return self.call("POST", f"/networks/{ref}/disconnect", body={"Container": container, "Force": force})
