#!/usr/bin/env python3
"""A CRI server that does nothing: every call bench/cri.py's crictl cycle makes is answered at
once, from grpcio with berthd's settings (its polling, a pool of threads). The cycle against it
is crictl's own time plus what any grpcio server costs, the least an engine served this way
could show: bench/cri.py's `floor` row, interleaved with the engines.

Usage: bench/cri_floor.py SOCKET [TIMES]  (serves until SIGTERM). TIMES: each answered call's
times appended there, as berthd does with BERTH_CRI_TIMES (bench/cri.py --only split).
"""

import functools
import os
import secrets
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from berth.cri.server import grpc_experiments, new_grpc_server  # noqa: E402

grpc_experiments()  # before grpc is imported, as berthd does

from berth.cri import api_pb2 as pb  # noqa: E402
from berth.cri import api_pb2_grpc as rpc  # noqa: E402
from berth.cri.errors import log_call_times  # noqa: E402

IMAGE_ID = "sha256:" + "0" * 64


class Runtime(rpc.RuntimeServiceServicer):
    def Version(self, request, context):
        return pb.VersionResponse(version="0.1.0", runtime_name="floor", runtime_version="0",
                                  runtime_api_version="v1")

    def RunPodSandbox(self, request, context):
        return pb.RunPodSandboxResponse(pod_sandbox_id=secrets.token_hex(32))

    def CreateContainer(self, request, context):
        return pb.CreateContainerResponse(container_id=secrets.token_hex(32))

    def StartContainer(self, request, context):
        return pb.StartContainerResponse()

    def StopContainer(self, request, context):
        return pb.StopContainerResponse()

    def RemoveContainer(self, request, context):
        return pb.RemoveContainerResponse()

    def StopPodSandbox(self, request, context):
        return pb.StopPodSandboxResponse()

    def RemovePodSandbox(self, request, context):
        return pb.RemovePodSandboxResponse()

    def ContainerStatus(self, request, context):  # what crictl rm checks: exited
        return pb.ContainerStatusResponse(status=pb.ContainerStatus(
            id=request.container_id, metadata=pb.ContainerMetadata(name="c"), state=pb.CONTAINER_EXITED,
            created_at=time.time_ns(), image=pb.ImageSpec(image="busybox-layers:1"), image_ref=IMAGE_ID))

    def PodSandboxStatus(self, request, context):  # what crictl rmp checks: not ready
        return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(
            id=request.pod_sandbox_id, metadata=pb.PodSandboxMetadata(name="p", uid="u", namespace="n"),
            state=pb.SANDBOX_NOTREADY, created_at=time.time_ns()))


class Images(rpc.ImageServiceServicer):
    def ImageStatus(self, request, context):  # crictl create's look before it pulls: present
        return pb.ImageStatusResponse(image=pb.Image(id=IMAGE_ID, repo_tags=[request.image.image], size=1))


def timed(servicer, path):
    """servicer with each call's times appended to path as berthd writes them (its
    BERTH_CRI_TIMES): name, start, end and the answer's sending (its completion callback)."""
    def wrap(name, fn):
        def call(request, context):
            start = time.monotonic()
            reply = fn(request, context)
            context.add_callback(functools.partial(log_call_times, path, name, start, time.monotonic()))
            return reply
        return call
    for name in dir(type(servicer)):
        if name[:1].isupper():
            setattr(servicer, name, wrap(name, getattr(servicer, name)))
    return servicer


def main():
    path = sys.argv[1]
    times = sys.argv[2] if len(sys.argv) > 2 else None
    runtime, images = Runtime(), Images()
    if times:
        runtime, images = timed(runtime, times), timed(images, times)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])  # for sigwait (grpc's threads too)
    server = new_grpc_server("floor")
    rpc.add_RuntimeServiceServicer_to_server(runtime, server)
    rpc.add_ImageServiceServicer_to_server(images, server)
    if not server.add_insecure_port("unix://" + path):
        sys.exit(f"cannot listen on {path}")
    server.start()
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    server.stop(0)


if __name__ == "__main__":
    main()
