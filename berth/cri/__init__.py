"""The Kubernetes Container Runtime Interface (CRI v1, runtime.v1) front end of berthd.

A second front end over the same services as the Docker API (api/): it parses gRPC requests,
calls berth/services in-process and renders their answers and errors; it owns no container
state. Pods and their containers live in the "k8s.io" namespace of the same metadata, content
store, snapshots and shims, so `berth -n k8s.io ps|images|inspect` shows them.

  server.py     the gRPC server (a thread pool) on the unix socket `cri_socket`
  runtime.py    RuntimeService: pod sandboxes, containers, exec, stats, status, events
  images.py     ImageService: list, status, pull, remove, fs info
  convert.py    PodSandboxConfig / ContainerConfig -> the services' container configuration
  api.proto     the wire contract; api_pb2*.py are generated from it (tools/gen_cri.sh)
"""

NAMESPACE = "k8s.io"
KIND_LABEL = "io.cri-containerd.kind"
