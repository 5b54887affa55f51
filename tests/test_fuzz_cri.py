"""CRI fuzz: every RPC of RuntimeService and ImageService with requests generated from the
protocol's own descriptors (random values for every field, at any depth: odd strings, NUL bytes,
negative and huge numbers, unknown enum values), and valid pod and container configurations
with a few fields changed at random, run through create, start, exec, status, stop and removal.
Bad input is an error with its reason (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
ALREADY_EXISTS, UNIMPLEMENTED, or UNKNOWN with a message, containerd's code for most of its
errors), never INTERNAL (an exception berthd did not expect), berthd logs no traceback, and it
answers afterwards.

Seeded and bounded in count and time. Nothing leaves the host: PullImage is only given
references to 127.0.0.1:1 (nothing listens) or invalid ones, and the node has its sandbox
image, so no pull is attempted for a pod."""
# ruff: noqa: F811

import os
import random
import time

import pytest
from google.protobuf import descriptor
from test_cri import node  # noqa: F401 (the node: a berthd with the pause and busybox images, this module's own)

grpc = pytest.importorskip("grpc")
from berth.cri import api_pb2 as pb  # noqa: E402

SEED = 20261203
PER_RPC = 25          # generated requests per RPC
MUTATED = 60          # mutated pod/container rounds
MAX_SECONDS = 240
BAD_CODES = {grpc.StatusCode.INTERNAL}
F = descriptor.FieldDescriptor

STRINGS = ["", "x", "../../etc/passwd", "a" * 300, "a\0b", "sha256:", "sha256:" + "0" * 64, "::", "-1",
           "\u00fc\u00df", "/", "a:b:c", "UPPER", "busybox-layers:1", "/dev/null", "localhost/x", "runtime/default"]
# only these references reach PullImage: an address where nothing listens, or not a reference at all
PULL_REFS = ["127.0.0.1:1/fz:1", "127.0.0.1:1/fz@sha256:" + "0" * 64, "", "UPPER/x", "a\0b", "::", "x" * 300]
INTS = [0, 1, -1, 2 ** 31 - 1, -2 ** 31, 2 ** 62, -2 ** 62, 65536, 100]
UINTS = [0, 1, 2 ** 32 - 1, 65536, 2 ** 63]


class Fuzzer:
    def __init__(self, rng, strings):
        self.rng = rng
        self.strings = strings

    def value(self, f):
        r = self.rng
        if f.type == F.TYPE_STRING:
            return r.choice(self.strings)
        if f.type == F.TYPE_BYTES:
            return r.choice([b"", b"\0\xff", b"x" * 100])
        if f.type == F.TYPE_BOOL:
            return r.choice([True, False])
        if f.type in (F.TYPE_INT64, F.TYPE_INT32, F.TYPE_SINT64, F.TYPE_SINT32, F.TYPE_SFIXED64):
            v = r.choice(INTS)
            return max(-2 ** 31, min(v, 2 ** 31 - 1)) if f.type in (F.TYPE_INT32, F.TYPE_SINT32) else v
        if f.type in (F.TYPE_UINT64, F.TYPE_UINT32, F.TYPE_FIXED64):
            v = r.choice(UINTS)
            return min(v, 2 ** 32 - 1) if f.type == F.TYPE_UINT32 else v
        if f.type == F.TYPE_ENUM:
            return r.choice([v.number for v in f.enum_type.values] + [99])
        if f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return r.choice([0.0, -1.0, 1e30])
        return None

    def fill(self, msg, depth=0):
        """Random values in about half of msg's fields, nested messages to a depth of 4."""
        for f in msg.DESCRIPTOR.fields:
            if self.rng.random() < 0.5:
                continue
            self.set(msg, f, depth)

    def set(self, msg, f, depth=0):
        if f.type != F.TYPE_MESSAGE:
            v = self.value(f)
            if f.is_repeated:
                getattr(msg, f.name).extend([v] * self.rng.randint(0, 2))
            else:
                setattr(msg, f.name, v)
            return
        if depth > 4:
            return
        if f.message_type.GetOptions().map_entry:
            m = getattr(msg, f.name)
            kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            for _ in range(self.rng.randint(0, 2)):
                k = self.value(kf)
                if vf.type == F.TYPE_MESSAGE:
                    self.fill(m[k], depth + 1)
                else:
                    m[k] = self.value(vf)
        elif f.is_repeated:
            for _ in range(self.rng.randint(0, 2)):
                self.fill(getattr(msg, f.name).add(), depth + 1)
        else:
            self.fill(getattr(msg, f.name), depth + 1)

    def mutate(self, msg, n):
        """n fields anywhere in msg (not inside lists or maps) set at random."""
        fields = []

        def walk(m, depth):
            for f in m.DESCRIPTOR.fields:
                fields.append((m, f))
                if f.type == F.TYPE_MESSAGE and not f.is_repeated and depth < 5:
                    walk(getattr(m, f.name), depth + 1)
        walk(msg, 0)
        for _ in range(n):
            m, f = self.rng.choice(fields)
            self.set(m, f, 1)


def _services():
    for name in ("RuntimeService", "ImageService"):
        yield from pb.DESCRIPTOR.services_by_name[name].methods


@pytest.fixture(scope="module")
def fuzzed_cgroup_parents():
    """A pod's or container's cgroup_parent may be any of STRINGS (runtime/default, sha256:0...):
    the cgroup directories the engine makes for one (and, as runc and containerd, leaves when its
    containers go) are removed after the node (asked for before it: torn down after it), those
    that were not there before and are empty. The test adds the ids it fuzzes with (yielded:
    a function of a name)."""
    from daemon_fixtures import missing_cgroup_parents_of, remove_made
    made = []

    def parent(s):
        made.extend(missing_cgroup_parents_of(s))
    for s in STRINGS:
        parent(s)
    yield parent
    remove_made(sorted(made, key=lambda d: d.count("/")))


def test_cri_fuzz_no_internal_errors_and_the_daemon_lives(fuzzed_cgroup_parents, node):
    c = node.client()
    rng = random.Random(SEED)
    logs = os.path.join(node.logs, "fz")
    sbx = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="fz", namespace="fz", uid="fz"), log_directory=logs)
    sid = c.RunPodSandbox(config=sbx).pod_sandbox_id
    ctr = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["sleep", "600"], log_path="c.log")
    cid = c.CreateContainer(pod_sandbox_id=sid, config=ctr, sandbox_config=sbx).container_id
    c.StartContainer(container_id=cid)
    # the real ids (and prefixes) are among the strings: requests reach past the lookups (and
    # may name a cgroup parent: seed 66 made /sys/fs/cgroup/*/<the container's id>)
    for s in (sid, cid, sid[:12], cid[:12]):
        fuzzed_cgroup_parents(s)
    fz = Fuzzer(rng, STRINGS + [sid, cid, sid[:12], cid[:12]] * 3)
    bad = {}
    deadline = time.monotonic() + MAX_SECONDS
    count = created = 0

    def call(rpc, req):
        nonlocal count
        count += 1
        try:
            stub = c.runtime if hasattr(c.runtime, rpc) else c.images
            return getattr(stub, rpc)(req, timeout=30)
        except grpc.RpcError as e:
            if e.code() in BAD_CODES or e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and rpc != "ExecSync":
                bad.setdefault((rpc, e.code().name, e.details()[:200]), str(req)[:400])
            return None

    def generated(methods):
        for m in methods:
            for _ in range(PER_RPC):
                if time.monotonic() > deadline:
                    return
                req = getattr(pb, m.input_type.name)()
                fz.fill(req)
                if m.name == "PullImage":
                    req.image.image = rng.choice(PULL_REFS)
                call(m.name, req)

    # 1. every RPC with generated requests, but those that end the shared pod, container or image
    ending = {"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox", "RemoveImage"}
    methods = [m for m in _services() if m.name != "GetContainerEvents"]  # a stream: no request to fuzz
    generated([m for m in methods if m.name not in ending])

    # 2. valid configurations with a few fields changed, through a container's whole life
    for i in range(MUTATED):
        if time.monotonic() > deadline:
            break
        psbx = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=f"m{i}", namespace="fz", uid=f"m{i}"),
                                   log_directory=logs)
        if rng.random() < 0.5:
            fz.mutate(psbx, rng.randint(1, 3))
        r = call("RunPodSandbox", pb.RunPodSandboxRequest(config=psbx))
        psid = r.pod_sandbox_id if r else None
        cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="busybox-layers:1"),
                                command=["sleep", "600"], log_path="c.log")
        fz.mutate(cc, rng.randint(1, 3))
        if psid:
            r = call("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=psid, config=cc, sandbox_config=psbx))
            if r:
                created += 1
                ccid = r.container_id
                call("StartContainer", pb.StartContainerRequest(container_id=ccid))
                es = pb.ExecSyncRequest(container_id=ccid, cmd=["true"], timeout=5)
                fz.mutate(es, 1)
                es.container_id = ccid
                call("ExecSync", es)
                call("ContainerStatus", pb.ContainerStatusRequest(container_id=ccid, verbose=True))
                call("ContainerStats", pb.ContainerStatsRequest(container_id=ccid))
                call("StopContainer", pb.StopContainerRequest(container_id=ccid, timeout=1))
                call("RemoveContainer", pb.RemoveContainerRequest(container_id=ccid))
            call("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=psid, verbose=True))
            call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=psid))
            call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=psid))

    # 3. those that end things, last
    generated([m for m in methods if m.name in ending])

    try:
        assert created > 10  # the mutated rounds reached containers
        assert not bad, "\n".join(f"{k}: {v!r}" for k, v in bad.items())
        assert count > 500
        assert c.Version(version="v1").runtime_api_version == "v1"
        with open(node.d.log_path) as f:
            log = f.read()
        assert "Traceback" not in log, log[log.index("Traceback") - 500:][:4000]
    finally:
        for s in c.ListPodSandbox().items:
            c.StopPodSandbox(pod_sandbox_id=s.id)
            c.RemovePodSandbox(pod_sandbox_id=s.id)
        c.close()
