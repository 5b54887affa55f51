#!/bin/sh
# Regenerate berth/cri/api_pb2.py (+ its .pyi, for the annotations) and api_pb2_grpc.py from berth/cri/api.proto.
# Needs grpcio-tools (a development tool only: `pip install grpcio-tools==1.85.1`).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -I berth/cri --python_out=berth/cri --pyi_out=berth/cri --grpc_python_out=berth/cri berth/cri/api.proto
# the generated service module imports "api_pb2" as a top-level module: make it relative
sed -i 's/^import api_pb2 as api__pb2$/from berth.cri import api_pb2 as api__pb2/' berth/cri/api_pb2_grpc.py
