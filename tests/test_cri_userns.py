"""Pods with a user namespace of their own (the CRI's userns_options in POD mode: a kubelet's
hostUsers: false): the pod's processes are root in it and an unprivileged range of ids on the
host; its images' files are seen with their owners (the rootfs's layers are id-mapped), its
network namespace is the user namespace's own, the kubelet's volumes come id-mapped (the Mount's
uid/gid mappings). What containerd 2 does; containerd 1.6, the peer here, ignores the field.
Status reports the feature per runtime handler."""

import json
import os
import random
import shutil
import subprocess
import tempfile

import grpc
import pytest
from daemon_fixtures import DATA
from test_cri import Node, _ctr, _pod, cri  # noqa: F401 (cri: a fixture, on this module's node)

from berth.cri import api_pb2 as pb

SIZE = 65536


@pytest.fixture(scope="module")
def node():
    # a root the pods' unprivileged ids can walk down to their rootfs (pytest's own temporary
    # directories are 0700: as a node's /var/lib/berth must not be)
    base = tempfile.mkdtemp(prefix="berth-userns-", dir="/tmp")
    os.chmod(base, 0o755)
    n = Node(base).start()
    try:
        for archive in ("pause.oci.tar", "busybox-layers.oci.tar"):
            n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, archive), check=True)
        yield n
    finally:
        n.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def userns(base, mode=pb.POD, **nso):
    maps = [pb.IDMapping(host_id=base, container_id=0, length=SIZE)]
    return pb.NamespaceOption(userns_options=pb.UserNamespace(mode=mode, uids=maps, gids=maps), **nso)


def pod_with(c, node, name, nso):
    return _pod(c, node, name, security_context=pb.LinuxSandboxSecurityContext(namespace_options=nso))


def ctr_in(nso, **kw):
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(namespace_options=nso), **kw)


def run(c, cid, script):
    r = c.ExecSync(container_id=cid, cmd=["sh", "-c", script], timeout=20)
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode()


def test_status_reports_user_namespaces_for_the_handlers_that_can(node, cri):
    got = {h.name: h.features.user_namespaces for h in cri.Status().runtime_handlers}
    assert got[""] is True and got["berth-runc"] is True
    # runc 1.1 makes no idmapped mounts (its features say so): a kubelet must not send it such pods
    assert got.get("runc", False) is False


def test_a_pod_in_its_own_user_namespace(node, cri, tmp_path):
    """Before, berthd refused userns_options POD (INVALID_ARGUMENT)."""
    base = SIZE * random.randint(40, 400)
    nso = userns(base)
    sid, sbx = pod_with(cri, node, "uns", nso)
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "kubelets").write_text("a configmap's file\n")  # the host's root's
    maps = [pb.IDMapping(host_id=base, container_id=0, length=SIZE)]
    (tmp_path / "termination-log").write_text("")
    mounts = [pb.Mount(container_path="/mapped", host_path=str(vol), uidMappings=maps, gidMappings=maps),
              pb.Mount(container_path="/plain", host_path=str(vol)),
              pb.Mount(container_path="/dev/termination-log", host_path=str(tmp_path / "termination-log"),
                       uidMappings=maps, gidMappings=maps)]  # (a file, as a kubelet's)
    cid = _ctr(cri, sid, sbx, "c1", ["sleep", "600"], linux=ctr_in(nso), mounts=mounts)
    assert run(cri, cid, "cat /proc/self/uid_map /proc/self/gid_map").split() == ["0", str(base), str(SIZE)] * 2
    status = cri.PodSandboxStatus(pod_sandbox_id=sid).status
    assert status.linux.namespaces.options.userns_options == nso.userns_options  # (containerd 2's: as asked)
    # the image's files are its root's (the layers id-mapped), as are the pod's /etc files
    owners = run(cri, cid, "stat -c '%u:%g' / /bin /bin/busybox /etc/hosts /etc/resolv.conf /etc/hostname").split()
    assert owners == ["0:0"] * 6
    assert run(cri, cid, "id -u; touch /made && stat -c %u /made") == "0\n0\n"
    # the kubelet's id-mapped volume: its files the container's root's; the same directory bound
    # without mappings: the host's root is nobody there
    assert run(cri, cid, "stat -c %u /mapped/kubelets /plain/kubelets") == "0\n65534\n"
    assert run(cri, cid, "echo changed > /mapped/kubelets && cat /mapped/kubelets") == "changed\n"
    assert (vol / "kubelets").stat().st_uid == 0  # on the host, still the host's root's
    assert run(cri, cid, "echo done > /dev/termination-log && stat -c %u /dev/termination-log") == "0\n"
    assert (tmp_path / "termination-log").read_text() == "done\n"
    # the network namespace is the pod's user namespace's own: sysfs mounted, eth0 there
    assert run(cri, cid, "ls /sys/class/net").split() == ["eth0", "lo"]
    # on the host: the container's processes are the range's first id, not root
    info = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])
    with open(f"/proc/{info['pid']}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(base)] * 4
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)
    # nothing of it is left: its namespaces' pins, the layers' mounts
    base_dir = node.d.base
    with open("/proc/self/mountinfo") as f:
        left = [line.split()[4] for line in f if base_dir in line.split()[4] and "/userns/" in line.split()[4]
                or ".idmapped" in line.split()[4]]
    assert left == []
    assert not [d for d in os.listdir(os.path.join(node.d.state, "cri", "userns"))]


def test_the_pod_and_its_containers_share_one_user_namespace(node, cri):
    base = SIZE * random.randint(401, 800)
    nso = userns(base)
    sid, sbx = pod_with(cri, node, "shared", nso)
    a = _ctr(cri, sid, sbx, "a", ["sleep", "600"], linux=ctr_in(nso))
    b = _ctr(cri, sid, sbx, "b", ["sleep", "600"], linux=ctr_in(nso))
    ids = {run(cri, c, "readlink /proc/self/ns/user") for c in (a, b)}
    assert len(ids) == 1
    pause = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])["pid"]
    assert os.readlink(f"/proc/{pause}/ns/user") == ids.pop().strip()


@pytest.mark.parametrize("case", ["container mode", "no mappings", "host network", "container differs",
                                  "container without"])
def test_what_a_pod_user_namespace_cannot_be_is_refused(node, cri, case):
    base = SIZE * random.randint(801, 900)
    before = {s.id for s in cri.ListPodSandbox().items}
    if case == "container mode":
        nso = userns(base, mode=pb.CONTAINER)
    elif case == "no mappings":
        nso = pb.NamespaceOption(userns_options=pb.UserNamespace(mode=pb.POD))
    elif case == "host network":
        nso = userns(base, network=pb.NODE)
    else:
        nso = userns(base)
    if case.startswith("container ") and case != "container mode":
        sid, sbx = pod_with(cri, node, "refuse-" + case.replace(" ", "-"), nso)
        other = userns(base + SIZE) if case == "container differs" else pb.NamespaceOption()
        with pytest.raises(grpc.RpcError) as ei:
            _ctr(cri, sid, sbx, "c", ["true"], linux=ctr_in(other))
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "differ from its pod's" in ei.value.details()
        assert not cri.ListContainers(filter=pb.ContainerFilter(pod_sandbox_id=sid)).containers
        return
    with pytest.raises(grpc.RpcError) as ei:
        pod_with(cri, node, "refuse-" + case.replace(" ", "-"), nso)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    assert "\n" not in ei.value.details()
    assert {s.id for s in cri.ListPodSandbox().items} == before


def test_a_pod_without_one_is_as_before(node, cri):
    sid, sbx = _pod(cri, node, "host-users")
    cid = _ctr(cri, sid, sbx, "c", ["sleep", "600"])
    assert run(cri, cid, "cat /proc/self/uid_map").split() == ["0", "0", "4294967295"]
    out = subprocess.run(["ls", os.path.join(node.d.state, "cri", "userns")], capture_output=True, text=True)
    assert out.stdout.strip() == ""
