"""The project's own CRI client for tests: the generated runtime.v1 stubs on a unix socket."""

import grpc

from berth.cri import api_pb2 as pb
from berth.cri import api_pb2_grpc


class CRIClient:
    def __init__(self, path, timeout=60):
        self.channel = grpc.insecure_channel("unix://" + path)
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        self.timeout = timeout

    def __getattr__(self, name):
        """client.RunPodSandbox(config=...) calls the RPC of either service with keyword fields."""
        for stub in (self.runtime, self.images):
            method = getattr(stub, name, None)
            if method is not None:
                req_cls = getattr(pb, _request_name(name))

                def call(_m=method, _r=req_cls, _deadline=None, **fields):
                    return _m(_r(**fields), timeout=_deadline or self.timeout)
                return call
        raise AttributeError(name)

    def close(self):
        self.channel.close()


def _request_name(rpc):
    return {"GetContainerEvents": "GetEventsRequest"}.get(rpc, rpc + "Request")
