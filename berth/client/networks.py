"""The client's methods for /networks."""

from berth import fastjson as json


class NetworksAPI:
    """Network endpoints, mixed into berth.client.api.APIClient (which provides call())."""

    def networks(self, filters=None):
        return self.call("GET", "/networks", params={"filters": json.dumps(filters) if filters else None})

    def network_inspect(self, ref):
        return self.call("GET", f"/networks/{ref}")

    def network_create(self, body):
        return self.call("POST", "/networks/create", body=body)

    def network_remove(self, ref):
        return self.call("DELETE", f"/networks/{ref}")

    def networks_prune(self, filters=None):
        return self.call("POST", "/networks/prune", params={"filters": json.dumps(filters) if filters else None})

    def network_connect(self, ref, container, endpoint_config=None):
        return self.call("POST", f"/networks/{ref}/connect",
                         body={"Container": container, "EndpointConfig": endpoint_config or {}})

    def network_disconnect(self, ref, container, force=False):
        return self.call("POST", f"/networks/{ref}/disconnect", body={"Container": container, "Force": force})
