"""APIClient methods for /networks, added by install(APIClient)."""

from berth import fastjson as json


def install(cls):
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

    for f in (networks, network_inspect, network_create, network_remove, networks_prune, network_connect,
              network_disconnect):
        setattr(cls, f.__name__, f)
    return cls
