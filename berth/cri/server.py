"""The CRI gRPC server of berthd: RuntimeService and ImageService on a unix socket, served by a
pool of threads (the services block; berthd's asyncio loop never runs them)."""

import concurrent.futures
import logging
import os

from berth.linux.hostnet import socket_alive

log = logging.getLogger("berthd")

# gRPC core's established polling code for the listener and the connections rather than its
# EventEngine (experiments grpcio 1.85 still lets a process turn off): every crictl command is a
# new connection with two or three calls, and each costs the server ~0.25 ms less processor and
# fewer hand-offs between threads (A/B through crictl, docs/benchmarks.md, session 26). A
# GRPC_EXPERIMENTS of the environment is left as it is.
_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints,-event_engine_callback_cq"


def grpc_experiments():
    """Call before anything imports grpc (its core reads GRPC_EXPERIMENTS then, once): berthd's
    choice of gRPC's experiments, in the environment until the returned function is called
    (once grpc is imported: not for the programs berthd runs)."""
    import sys
    if "grpc" in sys.modules or "GRPC_EXPERIMENTS" in os.environ:
        return lambda: None
    os.environ["GRPC_EXPERIMENTS"] = _EXPERIMENTS
    return lambda: os.environ.pop("GRPC_EXPERIMENTS", None)


def new_grpc_server(thread_name_prefix="berthd-cri"):
    """berthd's gRPC server for the CRI, not yet listening: a pool of threads (the services
    block), messages up to 16 MiB (bench/cri_floor.py serves from the same)."""
    import grpc
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix=thread_name_prefix)
    return grpc.server(pool, options=[("grpc.max_receive_message_length", 16 << 20),
                                      ("grpc.max_send_message_length", 16 << 20)])


class CRIServer:
    def __init__(self, services, streaming=None):
        self.services = services  # berth.services.Services: the same use-cases the Docker API drives
        self.path = services.cfg.cri_socket
        self.streaming = streaming
        self.server = None
        self.runtime = None
        self.inode = None

    def start(self):
        """Listen on cri_socket; False (with a warning) when another daemon serves there."""
        from berth.cri import api_pb2_grpc
        from berth.cri.images import ImageServicer
        from berth.cri.runtime import RuntimeServicer
        path = self.path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            if socket_alive(path):
                log.warning("CRI: another daemon serves on %s: the CRI is not served", path)
                return False
            os.unlink(path)
        self.server = new_grpc_server()
        self.runtime = RuntimeServicer(self.services, self.streaming)
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(self.runtime, self.server)
        api_pb2_grpc.add_ImageServiceServicer_to_server(ImageServicer(self.services), self.server)
        if not self.server.add_insecure_port("unix://" + path):
            raise OSError(f"cannot listen on {path}")
        os.chmod(path, 0o660)
        self.inode = os.stat(path).st_ino  # at stop, only this socket goes (not a successor's)
        self.server.start()
        log.info("serving the Kubernetes CRI (runtime.v1) on unix://%s", path)
        return True

    def stop(self):
        if self.server is None:
            return
        if self.runtime is not None:
            self.runtime.closing = True
        self.server.stop(grace=1).wait(3)
        if self.runtime is not None:
            self.runtime.drain(10)  # a pod's network teardown under way ends first
            self.runtime.net.drop_spare()
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
