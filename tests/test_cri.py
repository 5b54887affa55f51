"""berthd as a Kubernetes node runtime: the CRI (runtime.v1) driven by crictl v1.26 and by the
project's own gRPC client, pods in the k8s.io namespace with a node CNI configuration of the
test's own (its bridge, subnet and IPAM dir), the pause image from the fixtures."""

import concurrent.futures
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time

import grpc
import pytest

from daemon_fixtures import DATA, REPO, Daemon, free_port, lo_only_cni, registry, skopeo, wait_for  # noqa: F401

grpc = pytest.importorskip("grpc")
from berth.cri import api_pb2 as pb  # noqa: E402
from cri_client import CRIClient  # noqa: E402


def _crictl():
    for p in (os.path.join(REPO, "..", "shared", "bin", "crictl"), shutil.which("crictl") or ""):
        if p and os.access(p, os.X_OK):
            return os.path.realpath(p)
    return None


CRICTL = _crictl()
need_crictl = pytest.mark.skipif(CRICTL is None, reason="crictl is not installed (../shared/bin/crictl or PATH)")


class Node:
    """A berthd serving the CRI on its own socket, with a node CNI conflist of its own."""

    def __init__(self, base, extra=""):
        self.base = str(base)
        tag = "%05x" % random.getrandbits(20)
        self.bridge = "bk" + tag
        self.subnet = f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"
        self.cni_dir = os.path.join(self.base, "node-cni")
        os.makedirs(self.cni_dir, exist_ok=True)
        with open(os.path.join(self.cni_dir, "10-pods.conflist"), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "pods", "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]],
                          "dataDir": os.path.join(self.base, "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, f)
        self.d = Daemon(os.path.join(self.base, "d"), extra_config=f'cri_cni_conf_dir = "{self.cni_dir}"\n' + extra)
        self.sock = self.d.cri_sock
        self.logs = os.path.join(self.base, "pod-logs")

    def start(self):
        self.d.start()
        wait_for(lambda: os.path.exists(self.sock), 30, "the CRI socket")
        return self

    def wait_serving(self, timeout=30):
        """Until the CRI answers (after a kill -9, the old socket file is there before the next
        berthd listens on it)."""
        c = self.client()

        def serving():
            try:
                return c.Version(version="v1").runtime_api_version == "v1"
            except grpc.RpcError:
                return False
        try:
            wait_for(serving, timeout, "the CRI to answer")
        finally:
            c.close()

    def edit_plugins(self, edit):
        """edit(plugins) changes the list of the node's conflist's plugins in place (before start)."""
        conf = os.path.join(self.cni_dir, "10-pods.conflist")
        with open(conf) as f:
            doc = json.load(f)
        edit(doc["plugins"])
        with open(conf, "w") as f:
            json.dump(doc, f)

    def crictl(self, *args, check=True, timeout=120):
        p = subprocess.run([CRICTL, "--runtime-endpoint", "unix://" + self.sock, "--image-endpoint",
                            "unix://" + self.sock, "--timeout", "60s", *args], capture_output=True, timeout=timeout)
        p.out, p.err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"crictl {' '.join(args)} failed ({p.returncode}): {p.err}\n{self.d.log()}")
        return p

    def client(self):
        return CRIClient(self.sock)

    def pod_config(self, name, **extra):
        cfg = {"metadata": {"name": name, "namespace": "testns", "uid": "uid-" + name, "attempt": 1},
               "hostname": name + "-host", "log_directory": os.path.join(self.logs, name),
               "labels": {"app": name}, "annotations": {"note": "from the test"}, "linux": {}}
        cfg.update(extra)
        path = os.path.join(self.base, f"pod-{name}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def ctr_config(self, name, command, **extra):
        cfg = {"metadata": {"name": name}, "image": {"image": "busybox-layers:1"}, "command": command,
               "log_path": f"{name}/0.log", "labels": {"ctr": name}, "linux": {}}
        cfg.update(extra)
        path = os.path.join(self.base, f"ctr-{name}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def cleanup(self):
        try:
            self.wait_serving(10)  # a berthd restarted by the test may still be starting
            c = self.client()
            for s in c.ListPodSandbox().items:
                c.StopPodSandbox(pod_sandbox_id=s.id)
                c.RemovePodSandbox(pod_sandbox_id=s.id)
            c.close()
        except Exception:  # noqa: BLE001 - best effort: the daemon may be down
            pass
        try:
            ids = os.listdir(os.path.join(self.d.state, "containers"))
        except OSError:
            ids = []
        self.d.cleanup()
        # what the CRI could not remove (a test that failed with its berthd down): the node's
        # shims and container processes, then their cgroups
        left = [int(p) for p in os.listdir("/proc") if p.isdigit() and _in_node(p, self)]
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        if left:
            wait_for(lambda: not [p for p in left if os.path.exists(f"/proc/{p}")], 10, "the node's processes to end")
        import glob
        for cid in ids:
            for d in glob.glob(f"/sys/fs/cgroup/*/berth/{cid}") + glob.glob(f"/sys/fs/cgroup/*/k8s.io/{cid}"):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("crinode")).start()
    for archive in ("pause.oci.tar", "busybox-layers.oci.tar"):
        n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, archive), check=True)
    yield n
    n.cleanup()


def http_get(host, port, path="/", timeout=3):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")
    finally:
        s.close()


# --- crictl --------------------------------------------------------------------------------

@need_crictl
def test_version_and_info(node):
    v = node.crictl("version").out
    assert "RuntimeName:  berth" in v and "RuntimeApiVersion:  v1" in v
    info = json.loads(node.crictl("info").out)
    conds = {c["type"]: c["status"] for c in info["status"]["conditions"]}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}
    assert info["config"]["sandboxImage"] == "registry.k8s.io/pause:3.9"
    # the CNI config as containerd 1.6 shows it (go-cni's): the loopback, then the node's conflist
    nets = info["cniconfig"]["Networks"]
    assert [n["Config"]["Name"] for n in nets] == ["cni-loopback", "pods"] and nets[1]["IFName"] == "eth0"
    assert [p["Network"]["type"] for p in nets[1]["Config"]["Plugins"]] == ["bridge", "portmap"]
    assert json.loads(nets[1]["Config"]["Source"])["name"] == "pods"
    assert info["lastCNILoadStatus"] == info["lastCNILoadStatus.default"] == "OK"


def test_call_times_for_the_benchs_split(tmp_path, monkeypatch):
    """BERTH_CRI_TIMES (bench/cri.py --only split): berthd appends each answered call's name, its
    handler's start and end, and when its answer had gone out (CLOCK_MONOTONIC, in order); a call
    answered with an error is not written."""
    times = tmp_path / "times"
    monkeypatch.setenv("BERTH_CRI_TIMES", str(times))
    n = Node(tmp_path / "n").start()
    try:
        c = n.client()
        before = time.monotonic()
        assert c.Version(version="v1").runtime_name == "berth"
        with pytest.raises(grpc.RpcError) as e:
            c.PodSandboxStatus(pod_sandbox_id="nosuch")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        c.ListPodSandbox()
        after = time.monotonic()
        c.close()
        wait_for(lambda: times.exists() and len(times.read_text().splitlines()) >= 2, 10, "the calls' times")
        lines = [line.split() for line in times.read_text().splitlines()]
        assert [x[0] for x in lines] == ["Version", "ListPodSandbox"]
        for _, start, end, sent in lines:
            # the answer's sending is seen by the server once it is out: at the client's receipt or just after
            assert before <= float(start) <= float(end) <= after and float(end) <= float(sent) < after + 5
    finally:
        n.cleanup()


@need_crictl
def test_images_live_in_k8s_io_only(node):
    out = node.crictl("images").out
    assert "registry.k8s.io/pause" in out and "docker.io/library/busybox-layers" in out
    listed = json.loads(node.crictl("images", "-o", "json").out)["images"]
    tags = {t for i in listed for t in i["repoTags"]}
    assert {"registry.k8s.io/pause:3.9", "docker.io/library/busybox-layers:1"} <= tags
    pause = next(i for i in listed if "registry.k8s.io/pause:3.9" in i["repoTags"])
    assert pause["uid"] == {"value": "65535"} and int(pause["size"]) > 0
    # containerd's CRI lists every image whatever the filter (crictl images <name>)
    everything = set(node.crictl("images", "-q").out.split())
    assert set(node.crictl("images", "-q", "nosuch").out.split()) == everything >= {pause["id"]}
    assert set(node.crictl("images", "-q", "pause").out.split()) == everything
    assert pause["repoDigests"] == []  # an imported image has none, as with containerd's CRI (a pull records one)
    # the docker side (namespace default) does not see them; berth -n k8s.io does
    assert "pause" not in node.d.berth("images").out
    assert "registry.k8s.io/pause" in node.d.berth("-n", "k8s.io", "images").out
    st = json.loads(node.crictl("inspecti", "busybox-layers:1").out)
    assert st["status"]["id"].startswith("sha256:") and st["info"]["imageSpec"]["config"]["Cmd"] == ["sh"]
    # as containerd 1.6 (side by side): the layers' chain ID, no spec in an image's status or listing
    from berth.images.config import chain_ids
    assert st["info"]["chainID"] == chain_ids(st["info"]["imageSpec"]["rootfs"]["diff_ids"])[-1]
    assert st["status"]["spec"] is None and all(i["spec"] is None for i in listed)
    fs = json.loads(node.crictl("imagefsinfo", "-o", "json").out)
    assert int(fs["status"]["usedBytes"]["value"]) > 0


@need_crictl
def test_pull_and_rmi(node, registry):
    skopeo("copy", "--dest-tls-verify=false", "oci-archive:" + os.path.join(DATA, "hello-world.oci.tar"),
           f"docker://{registry.addr}/cri/hello:1")
    hosts = os.path.join(node.d.certs_d, registry.addr)
    os.makedirs(hosts, exist_ok=True)
    with open(os.path.join(hosts, "hosts.toml"), "w") as f:
        f.write(f'server = "http://{registry.addr}"\n')
    p = node.crictl("pull", f"{registry.addr}/cri/hello:1")
    assert "Image is up to date for sha256:" in p.out
    assert f"{registry.addr}/cri/hello" in node.crictl("images").out
    # the pull's digest reference, as containerd's CRI records it (an imported image has none)
    st = json.loads(node.crictl("inspecti", f"{registry.addr}/cri/hello:1").out)["status"]
    assert st["repoTags"] == [f"{registry.addr}/cri/hello:1"]
    assert [d.split("@")[0] for d in st["repoDigests"]] == [f"{registry.addr}/cri/hello"]
    assert st["repoDigests"][0].split("@")[1].startswith("sha256:")
    node.crictl("rmi", f"{registry.addr}/cri/hello:1")
    assert f"{registry.addr}/cri/hello" not in node.crictl("images").out
    # the failures in containerd 1.6's words and codes (side by side: its CRI answers the same)
    ref = f"{registry.addr}/cri/nothing:1"
    bad = node.crictl("pull", ref, check=False)
    assert bad.returncode != 0 and (f'code = NotFound desc = failed to pull and unpack image \\"{ref}\\": failed to '
                                    f'resolve reference \\"{ref}\\": {ref}: not found') in bad.err, bad.err
    ref = f"127.0.0.1:{free_port()}/cri/nothing:1"  # nothing listens there
    bad = node.crictl("pull", ref, check=False)
    assert bad.returncode != 0 and (f'code = Unknown desc = failed to pull and unpack image \\"{ref}\\": failed to '
                                    f'resolve reference \\"{ref}\\": ') in bad.err, bad.err
    bad = node.crictl("pull", "cri/Upper:1", check=False)
    assert bad.returncode != 0 and ('code = Unknown desc = failed to parse image reference \\"cri/Upper:1\\": '
                                    'invalid reference format: repository name must be lowercase') in bad.err, bad.err


@need_crictl
def test_pod_and_container_lifecycle(node):
    port = free_port()
    pod = node.pod_config("web", dns_config={"servers": ["10.0.0.10"], "searches": ["svc.cluster.local"],
                                             "options": ["ndots:5"]},
                          port_mappings=[{"protocol": 0, "container_port": 80, "host_port": port,
                                          "host_ip": "127.0.0.1"}])
    sid = node.crictl("runp", pod).out.strip()
    try:
        pods = node.crictl("pods", "-o", "json").out
        assert sid in pods and "SANDBOX_READY" in pods
        st = json.loads(node.crictl("inspectp", sid).out)
        ip = st["status"]["network"]["ip"]
        assert ip.startswith(node.subnet.rsplit(".", 1)[0] + ".")
        assert st["status"]["labels"] == {"app": "web"} and st["status"]["annotations"] == {"note": "from the test"}
        assert st["info"]["pid"] > 0 and st["info"]["image"] == "registry.k8s.io/pause:3.9"
        pod_netns = st["info"]["netns"]
        assert os.path.exists(pod_netns)

        ctr = node.ctr_config("srv", ["sh", "-c", "echo hello; echo oops >&2; mkdir -p /www; hostname > /www/h;"
                                                  " exec httpd -f -p 80 -h /www"],
                              envs=[{"key": "GREETING", "value": "hi there"}], working_dir="/data")
        cid = node.crictl("create", sid, ctr, pod).out.strip()
        assert json.loads(node.crictl("inspect", cid).out)["status"]["state"] == "CONTAINER_CREATED"
        node.crictl("start", cid)
        wait_for(lambda: "hello" in node.crictl("logs", cid).out, 10, "the container's output")
        logs = node.crictl("logs", cid)
        assert "hello" in logs.out and "oops" in logs.err
        # the file is the kubelet's CRI log format
        with open(os.path.join(node.logs, "web", "srv", "0.log")) as f:
            lines = f.read().splitlines()
        assert any(line.endswith(" stdout F hello") for line in lines), lines
        assert any(line.endswith(" stderr F oops") for line in lines), lines
        ts = lines[0].split(" ", 1)[0]
        assert ts.endswith("Z") and "T" in ts and "." in ts

        ps = json.loads(node.crictl("ps", "-o", "json").out)["containers"]
        assert [c["id"] for c in ps] == [cid] and ps[0]["podSandboxId"] == sid and ps[0]["state"] == "CONTAINER_RUNNING"
        ins = json.loads(node.crictl("inspect", cid).out)
        # containerd 1.6's image refs: the image's id in the listing; in the status its repo digest,
        # which an imported image has not (containerd's the same: its id)
        image_id = json.loads(node.crictl("inspecti", "busybox-layers:1").out)["status"]["id"]
        assert ps[0]["imageRef"] == image_id and image_id.startswith("sha256:")
        assert ins["status"]["imageRef"] == image_id
        assert ins["status"]["logPath"] == os.path.join(node.logs, "web", "srv", "0.log")
        assert ins["info"]["sandboxID"] == sid and ins["info"]["pid"] > 0

        # hostname, DNS, env, working dir in the container
        r = node.crictl("exec", "-s", cid, "sh", "-c", "hostname; cat /etc/resolv.conf; echo $GREETING; pwd")
        assert r.out.splitlines()[0] == "web-host"
        assert "nameserver 10.0.0.10" in r.out and "search svc.cluster.local" in r.out and "ndots:5" in r.out
        assert "hi there" in r.out and "/data" in r.out.splitlines()
        bad = node.crictl("exec", "-s", cid, "sh", "-c", "exit 3", check=False)
        assert bad.returncode != 0 and "exited with 3" in bad.err

        # the pod IP is reachable from the host, and the hostPort on 127.0.0.1
        wait_for(lambda: _try_get(ip, 80, "/h"), 10, "httpd in the pod")
        assert "web-host" in http_get(ip, 80, "/h")
        assert "web-host" in http_get("127.0.0.1", port, "/h")

        stats = json.loads(node.crictl("stats", "-o", "json", cid).out)["stats"][0]
        assert int(stats["memory"]["workingSetBytes"]["value"]) > 0
        assert int(stats["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
        sp = json.loads(node.crictl("statsp", "-o", "json", sid).out)["stats"][0]
        assert sp["attributes"]["id"] == sid and int(sp["linux"]["memory"]["workingSetBytes"]["value"]) > 0
        assert sp["linux"]["containers"][0]["attributes"]["id"] == cid

        # the same objects, seen by berth in the k8s.io namespace only
        ps_k8s = node.d.berth("-n", "k8s.io", "ps", "--no-trunc").out
        assert cid in ps_k8s and sid in ps_k8s
        assert cid not in node.d.berth("ps", "-a", "--no-trunc").out
        assert node.d.berth("-n", "k8s.io", "inspect", cid).returncode == 0
        blogs = node.d.berth("-n", "k8s.io", "logs", cid)
        assert blogs.out.startswith("hello\n") and "oops" in blogs.err

        t0 = time.monotonic()
        node.crictl("stop", "--timeout", "5", cid)
        assert time.monotonic() - t0 < 5  # httpd takes SIGTERM
        ins = json.loads(node.crictl("inspect", cid).out)["status"]
        assert ins["state"] == "CONTAINER_EXITED" and ins["finishedAt"] and ins["reason"] in ("Error", "Completed")
        node.crictl("stopp", sid)
        assert "SANDBOX_NOTREADY" in node.crictl("inspectp", sid).out
        with pytest.raises(OSError):
            http_get("127.0.0.1", port, "/h", timeout=1)
        node.crictl("rm", cid)
        assert cid not in node.crictl("ps", "-a", "-q").out
    finally:
        node.crictl("stopp", sid, check=False)
        node.crictl("rmp", sid, check=False)
    assert sid not in node.crictl("pods", "-q").out
    assert sid not in node.d.berth("-n", "k8s.io", "ps", "-a", "--no-trunc").out
    assert not os.path.exists(pod_netns)
    assert len(os.listdir(os.path.join(node.d.state, "cri", "netns"))) <= 1  # the spare made for the next pod


def _try_get(host, port, path):
    try:
        return bool(http_get(host, port, path, timeout=1))
    except OSError:
        return False


@need_crictl
def test_rmp_removes_running_containers_and_is_idempotent(node):
    pod = node.pod_config("gone")
    sid = node.crictl("runp", pod).out.strip()
    cid = node.crictl("create", sid, node.ctr_config("sleeper", ["sleep", "300"]), pod).out.strip()
    node.crictl("start", cid)
    assert "Running" in node.crictl("ps").out
    node.crictl("stopp", sid)
    node.crictl("stopp", sid)  # a second stop is fine
    node.crictl("rmp", sid)
    assert cid not in node.crictl("ps", "-a", "-q").out and sid not in node.crictl("pods", "-q").out
    c = node.client()
    c.RemovePodSandbox(pod_sandbox_id=sid)  # removed already: not an error
    c.RemoveContainer(container_id=cid)
    c.close()


@need_crictl
def test_containers_survive_kill9_of_berthd(node):
    pod = node.pod_config("durable")
    sid = node.crictl("runp", pod).out.strip()
    try:
        cid = node.crictl("create", sid, node.ctr_config("sl", ["sleep", "300"]), pod).out.strip()
        node.crictl("start", cid)
        pid = json.loads(node.crictl("inspect", cid).out)["info"]["pid"]
        node.d.kill9()
        node.d.start()
        wait_for(lambda: node.crictl("version", check=False).returncode == 0, 30, "the CRI after a restart")
        assert os.path.exists(f"/proc/{pid}")
        ins = json.loads(node.crictl("inspect", cid).out)
        assert ins["status"]["state"] == "CONTAINER_RUNNING" and ins["info"]["pid"] == pid
        assert json.loads(node.crictl("inspectp", sid).out)["status"]["state"] == "SANDBOX_READY"
        node.crictl("stop", "--timeout", "0", cid)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the container to stop")
    finally:
        node.crictl("stopp", sid, check=False)
        node.crictl("rmp", sid, check=False)


# --- the project's own gRPC client ---------------------------------------------------------

def _pod(c, node, name, **linux):
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="testns", uid="u-" + name),
                              hostname=name, log_directory=os.path.join(node.logs, name),
                              linux=pb.LinuxPodSandboxConfig(**linux))
    return c.RunPodSandbox(config=cfg).pod_sandbox_id, cfg


def _ctr(c, sid, sbx, name, cmd, **kw):
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=cmd, log_path=f"{name}.log", **kw)
    cid = c.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
    c.StartContainer(container_id=cid)
    return cid


@pytest.fixture
def cri(node):
    c = node.client()
    yield c
    for s in c.ListPodSandbox().items:
        c.StopPodSandbox(pod_sandbox_id=s.id)
        c.RemovePodSandbox(pod_sandbox_id=s.id)
    c.close()


def test_cri_metadata_is_a_record_extension_and_old_records_still_load(node, cri):
    """The CRI's own metadata (the kubelet's config, the pod, the log path) is kept in the
    record's extensions under containerd's keys, not in the container's configuration that
    `berth -n k8s.io inspect` shows; a record of an older berthd (the metadata under "_cri" in
    its configuration) still answers after a restart."""
    from berth.metadata import MetadataStore
    sid, sbx = _pod(cri, node, "meta")
    cid = _ctr(cri, sid, sbx, "m1", ["sleep", "300"])
    for ref in (sid, cid):
        doc = node.d.berth("-n", "k8s.io", "inspect", ref, check=True).out
        assert "_cri" not in doc and ".metadata" not in doc
    with MetadataStore(node.d.root) as md:
        rec = md.get_container("k8s.io", cid)
        meta = rec.extensions.pop("io.cri-containerd.container.metadata")
        assert meta["sandbox"] == sid and meta["kind"] == "container"
        md.update_container("k8s.io", cid, spec=dict(rec.spec_json(), _cri=meta), extensions=rec.extensions)
    node.d.stop()
    node.d.start()
    wait_for(lambda: node.d.berth("-n", "k8s.io", "ps", check=False).returncode == 0, 30, "berthd again")
    node.wait_serving()  # (the CRI listens after the Docker API: a CI run asked it before)
    c = node.client()
    try:
        st = c.ContainerStatus(container_id=cid).status
        assert st.metadata.name == "m1" and st.log_path.endswith("m1.log")
        assert [x.id for x in c.ListContainers(filter=pb.ContainerFilter(pod_sandbox_id=sid)).containers] == [cid]
    finally:
        c.close()


def test_exec_sync_output_exit_code_and_timeout(node, cri):
    sid, sbx = _pod(cri, node, "execs")
    cid = _ctr(cri, sid, sbx, "e", ["sleep", "300"])
    r = cri.ExecSync(container_id=cid, cmd=["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 7)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        cri.ExecSync(container_id=cid, cmd=["sh", "-c", "echo started; sleep 30"], timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 10
    # containerd's words (crictl shows them)
    assert e.value.details() == "failed to exec in container: timeout 1s exceeded: context deadline exceeded"
    # no docker init layer in a CRI container (containerd's have none): no /.dockerenv, no /etc/mtab
    r = cri.ExecSync(container_id=cid, cmd=["sh", "-c", "ls /.dockerenv /etc/mtab 2>&1; true"])
    assert r.stdout.count(b"No such file or directory") == 2, r.stdout
    # the timed-out command was killed: only the container's own sleep is left
    ps = cri.ExecSync(container_id=cid, cmd=["ps", "-o", "args"]).stdout.decode().splitlines()
    assert "sleep 30" not in ps and "sleep 300" in ps
    with pytest.raises(grpc.RpcError) as e:
        cri.ExecSync(container_id="0" * 64, cmd=["true"])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_pods_and_containers_with_kubernetes_longest_names(node, cri):
    """A pod name may be 253 characters (a DNS subdomain), its namespace and a container name 63:
    containerd's names of them (<container>_<pod>_<namespace>_<uid>_<attempt>) are ~430 characters,
    which containerd takes. berth refused any name above 255 as "only [a-zA-Z0-9][a-zA-Z0-9_.-]+
    are allowed"."""
    pod = ".".join(["p" * 63] * 4)[:253]
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=pod, namespace="n" * 63,
                                                             uid="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", attempt=7),
                              hostname="long", log_directory=os.path.join(node.logs, "long"))
    sid = cri.RunPodSandbox(config=cfg).pod_sandbox_id
    cid = _ctr(cri, sid, cfg, "c" * 63, ["sleep", "300"])
    st = cri.ContainerStatus(container_id=cid).status
    assert (st.metadata.name, st.state) == ("c" * 63, pb.CONTAINER_RUNNING)
    assert cri.PodSandboxStatus(pod_sandbox_id=sid).status.metadata.name == pod
    names = node.d.berth("-n", "k8s.io", "ps", "-a", "--format", "{{.Names}}", check=True).out.split()
    assert f"{'c' * 63}_{pod}_{'n' * 63}_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0_0" in names, names
    # a Docker API name is as long as it likes too (dockerd sets no length), up to berth's bound
    name = "d" * 300
    node.d.berth("-n", "k8s.io", "create", "--name", name, "busybox-layers:1", "true", check=True)
    node.d.berth("-n", "k8s.io", "rm", name, check=True)
    p = node.d.berth("-n", "k8s.io", "create", "--name", "d" * 1100, "busybox-layers:1", "true")
    assert p.returncode == 1 and "longer than 1024 characters" in p.err, p.err


def test_list_filters(node, cri):
    sid1, sbx1 = _pod(cri, node, "fa")
    sid2, sbx2 = _pod(cri, node, "fb")
    c1 = _ctr(cri, sid1, sbx1, "one", ["sleep", "300"], labels={"tier": "front"})
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="two"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["true"], labels={"tier": "back"})
    c2 = cri.CreateContainer(pod_sandbox_id=sid2, config=cfg, sandbox_config=sbx2).container_id
    ids = lambda **f: sorted(c.id for c in cri.ListContainers(filter=pb.ContainerFilter(**f)).containers)  # noqa: E731
    assert ids() == sorted([c1, c2])
    assert ids(pod_sandbox_id=sid1) == [c1]
    assert ids(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED)) == [c2]
    assert ids(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == [c1]
    assert ids(label_selector={"tier": "back"}) == [c2]
    assert ids(id=c1[:12]) == [c1]
    pods = lambda **f: sorted(s.id for s in cri.ListPodSandbox(filter=pb.PodSandboxFilter(**f)).items)  # noqa: E731
    assert pods(label_selector={}) == sorted([sid1, sid2])
    assert pods(id=sid2[:10]) == [sid2]
    cri.StopPodSandbox(pod_sandbox_id=sid2)
    assert pods(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) == [sid1]
    assert pods(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)) == [sid2]
    stats = cri.ListContainerStats(filter=pb.ContainerStatsFilter(pod_sandbox_id=sid1)).stats
    assert [s.attributes.id for s in stats] == [c1]
    c3 = _ctr(cri, sid1, sbx1, "three", ["sleep", "300"])
    pods = {s.attributes.id: s for s in cri.ListPodSandboxStats().stats}
    assert sorted(pods) == [sid1]  # the stopped pod has no stats
    assert sorted(x.attributes.metadata.name for x in pods[sid1].linux.containers) == ["one", "three"]
    # every container is listed, as containerd lists them: one not running has its writable layer's
    # usage but no cpu or memory (crictl stats -a shows it; berth listed running ones only)
    c4 = _ctr(cri, sid1, sbx1, "four", ["true"])
    wait_for(lambda: cri.ContainerStatus(container_id=c4).status.state == pb.CONTAINER_EXITED, 10, "four to exit")
    listed = {s.attributes.id: s for s in cri.ListContainerStats().stats}
    assert sorted(listed) == sorted([c1, c2, c3, c4])
    for idle in (c2, c4):
        assert not listed[idle].HasField("cpu") and not listed[idle].HasField("memory"), listed[idle]
        assert listed[idle].writable_layer.fs_id.mountpoint and listed[idle].attributes.metadata.name
    assert listed[c1].HasField("cpu") and listed[c1].memory.working_set_bytes.value > 0


def test_lists_follow_changes_made_outside_the_cri(node, cri):
    """The lists a kubelet asks for every second are kept between calls until the store changes:
    a container removed, an image tagged or untagged through `berth -n k8s.io` shows in the next
    ListContainers, ContainerStatus and ListPodSandbox, as do the states, which are never kept
    (an image's names are kept across the writes of containers' records, not of images')."""
    sid, sbx = _pod(cri, node, "lc")
    c1 = _ctr(cri, sid, sbx, "one", ["sleep", "300"])
    c2 = _ctr(cri, sid, sbx, "two", ["sleep", "300"])
    listed = lambda: {c.id: c for c in cri.ListContainers().containers}  # noqa: E731
    first = listed()
    assert sorted(first) == sorted([c1, c2]) and first[c1].state == pb.CONTAINER_RUNNING
    assert [s.id for s in cri.ListPodSandbox().items] == [sid]
    assert node.d.berth("-n", "k8s.io", "rm", "-f", c1).returncode == 0
    assert sorted(listed()) == [c2]
    cri.StopContainer(container_id=c2, timeout=0)
    assert listed()[c2].state == pb.CONTAINER_EXITED

    def first_tag():
        return cri.ImageStatus(image=pb.ImageSpec(image="busybox-layers:1")).image.repo_tags[0]
    # the list gives the image as the container's config asked for it (containerd 1.6's), the
    # status the image's first name
    before = cri.ContainerStatus(container_id=c2).status.image.image
    assert before == first_tag() == "docker.io/library/busybox-layers:1"
    assert listed()[c2].image.image == "busybox-layers:1"
    assert node.d.berth("-n", "k8s.io", "tag", "busybox-layers:1", "aaa-first:1").returncode == 0
    try:
        assert first_tag() != before  # the new name sorts first
        assert cri.ContainerStatus(container_id=c2).status.image.image == first_tag()
        assert listed()[c2].image.image == "busybox-layers:1"
    finally:
        assert node.d.berth("-n", "k8s.io", "rmi", "aaa-first:1").returncode == 0
    assert cri.ContainerStatus(container_id=c2).status.image.image == before
    cri.RemoveContainer(container_id=c2)
    assert listed() == {}
    cri.StopPodSandbox(pod_sandbox_id=sid)
    assert [s.state for s in cri.ListPodSandbox().items] == [pb.SANDBOX_NOTREADY]
    assert node.d.berth("-n", "k8s.io", "rm", "-f", sid).returncode == 0
    assert list(cri.ListPodSandbox().items) == []


def test_writable_layer_and_image_fs_usage(node, cri):
    """ContainerStats' writable layer counts what the container wrote; ImageFsInfo reports the
    snapshots' directory and what is on it."""
    sid, sbx = _pod(cri, node, "usage")
    cid = _ctr(cri, sid, sbx, "writer", ["sh", "-c", "dd if=/dev/urandom of=/big bs=1024 count=3072 && "
                                         "mv /big /big.done; sleep 300"])
    wait_for(lambda: cri.ExecSync(container_id=cid, cmd=["ls", "/big.done"], timeout=10).exit_code == 0, 20,
             "the container's write")
    layer = cri.ContainerStats(container_id=cid).stats.writable_layer
    assert 3 << 20 <= layer.used_bytes.value < 8 << 20
    # and its inodes, the directory's own among them, as containerd's snapshotter counts them
    # (berth said 0)
    upper = json.loads(node.d.berth("-n", "k8s.io", "inspect", cid, check=True).out)[0]["GraphDriver"]["Data"]["UpperDir"]
    seen = set()
    for d, dirs, files in os.walk(upper):
        seen.add(os.lstat(d).st_ino)
        seen.update(os.lstat(os.path.join(d, n)).st_ino for n in files)
    assert layer.inodes_used.value == len(seen) >= 3  # the directory, the file written, /etc (its files)
    fs = cri.ImageFsInfo().image_filesystems[0]
    assert fs.fs_id.mountpoint == os.path.join(node.d.root, "snapshots", "overlayfs")
    assert layer.fs_id.mountpoint == fs.fs_id.mountpoint  # one filesystem, named alike (containerd's)
    assert fs.used_bytes.value > 0 and fs.inodes_used.value > 0  # (measured at most every 10 s)


def test_unimplemented_and_errors(node, cri):
    for rpc, fields in (("CheckpointContainer", {"container_id": "x"}), ("ListMetricDescriptors", {}),
                        ("ListPodSandboxMetrics", {})):
        with pytest.raises(grpc.RpcError) as e:
            getattr(cri, rpc)(**fields)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED and "not implemented by berth" in e.value.details()
    for rpc, fields in (("ContainerStatus", {"container_id": "nope"}), ("PodSandboxStatus", {"pod_sandbox_id": "nope"}),
                        ("StartContainer", {"container_id": "nope"})):
        with pytest.raises(grpc.RpcError) as e:
            getattr(cri, rpc)(**fields)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, rpc
    assert not cri.ImageStatus(image=pb.ImageSpec(image="no/such:image")).HasField("image")
    cri.RemoveImage(image=pb.ImageSpec(image="no/such:image"))  # idempotent
    sid, sbx = _pod(cri, node, "dup")
    cri.PodSandboxStatus(pod_sandbox_id=sid)  # its pause started; the next pod's namespace is made after
    netns_dir = os.path.join(node.d.state, "cri", "netns")
    wait_for(lambda: len(os.listdir(netns_dir)) == 2, 10, "the pod's namespace and the spare")
    netns = sorted(os.listdir(netns_dir))
    with pytest.raises(grpc.RpcError) as e:
        cri.RunPodSandbox(config=sbx)
    assert e.value.code() == grpc.StatusCode.UNKNOWN  # containerd 1.6's code for a reserved name
    assert e.value.details().startswith('failed to reserve sandbox name "dup_testns_u-dup_0": name ')
    assert sorted(os.listdir(netns_dir)) == netns  # the refused pod made none
    with pytest.raises(grpc.RpcError) as e:
        cri.RunPodSandbox(config=sbx, runtime_handler="nosuch")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cri.Version(version="v1").runtime_api_version == "v1"
    assert cri.RuntimeConfig().linux.cgroup_driver == pb.CGROUPFS


def test_errors_in_containerds_words_and_codes(node, cri):
    """What containerd 1.6's CRI answers for the same requests (run side by side with crictl on this
    machine, session 15): its words differ by RPC, a reserved name and a container in the wrong
    state are UNKNOWN, a container cannot be made in a stopped pod."""
    def err(rpc, **fields):
        with pytest.raises(grpc.RpcError) as e:
            getattr(cri, rpc)(**fields)
        return e.value.code().name, e.value.details()
    nf = "NOT_FOUND"
    assert err("ContainerStatus", container_id="nope") == (nf, 'an error occurred when try to find container "nope": not found')
    assert err("StopContainer", container_id="nope") == (nf, 'an error occurred when try to find container "nope": not found')
    assert err("PodSandboxStatus", pod_sandbox_id="nope") == (nf, "an error occurred when try to find sandbox: not found")
    assert err("StopPodSandbox", pod_sandbox_id="nope") == (nf, 'an error occurred when try to find sandbox "nope": not found')
    assert err("ExecSync", container_id="nope", cmd=["true"]) == (
        nf, 'failed to exec in container: failed to find container "nope" in store: not found')
    assert err("Exec", container_id="nope", cmd=["true"], stdout=True) == (
        nf, 'failed to find container "nope" in store: not found')
    assert err("Attach", container_id="nope", stdout=True) == (nf, "failed to find container in store: not found")
    assert err("UpdateContainerResources", container_id="nope") == (nf, "failed to find container: not found")
    assert err("PortForward", pod_sandbox_id="nope") == (nf, 'failed to find sandbox "nope": not found')
    assert err("ContainerStats", container_id="nope") == (nf, "failed to find container: not found")
    assert err("PodSandboxStats", pod_sandbox_id="nope") == (nf, "an error occurred when trying to find sandbox nope: not found")
    ccfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="w"), image=pb.ImageSpec(image="busybox-layers:1"),
                              command=["sleep", "60"])
    assert err("CreateContainer", pod_sandbox_id="nope", config=ccfg) == (nf, 'failed to find sandbox id "nope": not found')
    sid, sbx = _pod(cri, node, "words")
    cid = _ctr(cri, sid, sbx, "w", ["sleep", "60"])
    code, msg = err("CreateContainer", pod_sandbox_id=sid, config=ccfg, sandbox_config=sbx)
    assert code == "UNKNOWN" and msg == (f'failed to reserve container name "w_words_testns_u-words_0": name '
                                         f'"w_words_testns_u-words_0" is reserved for "{cid}"')
    other = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="x"), image=pb.ImageSpec(image="no/such:1"))
    assert err("CreateContainer", pod_sandbox_id=sid, config=other, sandbox_config=sbx) == (
        nf, 'failed to resolve image "no/such:1": not found')
    code, msg = err("ExecSync", container_id=cid, cmd=["/nonexistent"])
    assert code == "UNKNOWN" and msg.startswith('failed to exec in container: failed to start exec "'), msg
    assert msg.endswith('OCI runtime exec failed: exec failed: unable to start container process: '
                        'exec: "/nonexistent": stat /nonexistent: no such file or directory: unknown'), msg
    from berth.runtime.cgroups import detect_mode
    if detect_mode() != "v2":  # a limit below the usage: runc's words after containerd's prefix (v2 reclaims instead)
        code, msg = err("UpdateContainerResources", container_id=cid,
                        linux=pb.LinuxContainerResources(memory_limit_in_bytes=1))
        assert code == "UNKNOWN" and re.fullmatch(r"failed to update resources: failed to update resources: runc did not "
                                                  r"terminate successfully: exit status 1: unable to set memory limit to 1 "
                                                  r"\(current usage: \d+, peak usage: \d+\)\n: unknown", msg), msg
    assert err("Attach", container_id=cid) == ("INVALID_ARGUMENT", "one of stdin, stdout, and stderr must be set")
    cri.StopContainer(container_id=cid, timeout=0)
    # an exited container's resources: recorded for its next start, as containerd's (no error)
    cri.UpdateContainerResources(container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20))
    assert cri.ContainerStatus(container_id=cid).status.resources.linux.memory_limit_in_bytes == 64 << 20
    exited = "container is in CONTAINER_EXITED state"
    assert err("StartContainer", container_id=cid) == (
        "UNKNOWN", f'failed to set starting state for container "{cid}": {exited}')
    assert err("ExecSync", container_id=cid, cmd=["true"]) == ("UNKNOWN", f"failed to exec in container: {exited}")
    assert err("Attach", container_id=cid, stdout=True) == ("UNKNOWN", exited)
    assert err("ReopenContainerLog", container_id=cid) == ("UNKNOWN", "container is not running")
    cri.StopPodSandbox(pod_sandbox_id=sid)
    info = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])
    assert info["processStatus"] == "deleted" and info["netNamespaceClosed"] is True  # containerd's words
    assert err("CreateContainer", pod_sandbox_id=sid, config=other, sandbox_config=sbx) == (
        nf, f"failed to get sandbox container task: no running task found: task {sid} not found: not found")
    assert [c.id for c in cri.ListContainers().containers] == [cid]  # nothing was made


def test_starts_at_once_of_one_container(node, cri):
    """StartContainer from several clients at once: one starts it, the others are refused in
    containerd's words (its Starting flag: "already in starting state", or the running state
    once it has started). Before, each of them answered OK."""
    import threading
    sid, sbx = _pod(cri, node, "starts")
    for round_ in range(3):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=f"s{round_}"),
                                 image=pb.ImageSpec(image="busybox-layers:1"), command=["sleep", "60"])
        cid = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
        results = []

        def start():
            try:
                cri.StartContainer(container_id=cid)
                results.append("ok")
            except grpc.RpcError as e:
                results.append((e.code().name, e.details()))
        threads = [threading.Thread(target=start) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("ok") == 1, results
        prefix = f'failed to set starting state for container "{cid}": '
        for r in results:
            assert r == "ok" or r in (("UNKNOWN", prefix + "container is already in starting state"),
                                      ("UNKNOWN", prefix + "container is in CONTAINER_RUNNING state")), r
        assert cri.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_RUNNING


def test_pod_hostname_pause_hardening_and_cgroupns_as_containerd(node, cri):
    """As containerd 1.6 (side by side, session 15): a pod without a hostname is named as the node
    (the containers' hostname, HOSTNAME and /etc/hostname); with one, its containers' HOSTNAME is
    the pod's, not their own id; the pause runs with a read-only root and no new privileges; on a
    host that is not cgroup v2 only, no container gets a cgroup namespace (nor the pause, nor a
    privileged container anywhere)."""
    import socket
    from berth.runtime.cgroups import detect_mode
    v2 = detect_mode() == "v2"
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="anon", namespace="testns", uid="u-anon"),
                              log_directory=os.path.join(node.logs, "anon"))
    anon = cri.RunPodSandbox(config=cfg).pod_sandbox_id
    named, named_cfg = _pod(cri, node, "myhost")
    script = ["sh", "-c", "echo $HOSTNAME; hostname; cat /etc/hostname; cat /proc/self/cgroup"]
    for sid, sbx, want in ((anon, cfg, socket.gethostname()), (named, named_cfg, "myhost")):
        cid = _ctr(cri, sid, sbx, "h", ["sleep", "60"])
        out = cri.ExecSync(container_id=cid, cmd=script, timeout=10).stdout.decode().split()
        assert out[:3] == [want] * 3, out
        assert all(line.endswith(":/") for line in out[3:]) == v2, out  # the host's view of its cgroup
        spec = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["runtimeSpec"]
        assert ("cgroup" in [n["type"] for n in spec["linux"]["namespaces"]]) == v2
        pause = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])["runtimeSpec"]
        assert pause["root"]["readonly"] is True and pause["process"]["noNewPrivileges"] is True
        assert "cgroup" not in [n["type"] for n in pause["linux"]["namespaces"]]
        # a pod without a hostname: none in the pause's spec (its UTS namespace keeps the node's), as containerd
        assert pause.get("hostname") == (None if sid == anon else "myhost")
    priv_cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="priv", namespace="testns", uid="u-priv"),
                                   log_directory=os.path.join(node.logs, "priv"), linux=pb.LinuxPodSandboxConfig(
                                       security_context=pb.LinuxSandboxSecurityContext(privileged=True)))
    priv = cri.RunPodSandbox(config=priv_cfg).pod_sandbox_id
    cid = _ctr(cri, priv, priv_cfg, "p", ["sleep", "60"],
               linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(privileged=True)))
    spec = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["runtimeSpec"]
    assert "cgroup" not in [n["type"] for n in spec["linux"]["namespaces"]]


def test_pause_mounts_and_default_paths_as_containerd(node, cri):
    """As containerd 1.6 (side by side): a container whose config names no masked or read-only
    paths gets none (a kubelet always sends its defaults); the pause gets the default masked and
    read-only /proc paths, and no cgroup tree, /etc/hostname or /etc/hosts of its own."""
    sid, sbx = _pod(cri, node, "paths")
    cid = _ctr(cri, sid, sbx, "c", ["sleep", "60"])
    spec = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["runtimeSpec"]
    assert spec["linux"].get("maskedPaths", []) == [] and spec["linux"].get("readonlyPaths", []) == []
    mounts = cri.ExecSync(container_id=cid, cmd=["cat", "/proc/self/mountinfo"], timeout=10).stdout.decode()
    points = [line.split()[4] for line in mounts.splitlines()]
    assert "/proc/keys" not in points and "/proc/sys" not in points, points
    assert "/sys/fs/cgroup" in points and "/etc/hostname" in points  # the container's own are there
    info = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])
    pause = info["runtimeSpec"]
    dests = [m["destination"] for m in pause["mounts"]]
    assert not {"/sys/fs/cgroup", "/etc/hostname", "/etc/hosts"} & set(dests), dests
    assert {"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/dev/shm", "/etc/resolv.conf"} <= set(dests)
    assert sorted(pause["linux"]["maskedPaths"]) == sorted([
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"])
    assert sorted(pause["linux"]["readonlyPaths"]) == sorted([
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"])
    with open(f"/proc/{info['pid']}/mountinfo") as f:
        seen = [(line.split()[4], line.split(" - ")[1].split()[0]) for line in f]
    assert not [t for _mp, t in seen if t in ("cgroup", "cgroup2")], seen
    assert "/proc/keys" in [mp for mp, _t in seen]  # masked
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)


def _own_mount(path, propagation):
    """path bound on itself with that propagation (a mount of its own, whatever the host's / is);
    umount_all(path) undoes it."""
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", f"--make-{propagation}", str(path)], check=True)
    return path


def umount_all(path):
    for _ in range(8):  # what was mounted under it too
        if subprocess.run(["umount", "-l", str(path)], capture_output=True).returncode != 0:
            break


@pytest.fixture
def shared_dir(tmp_path):
    """A directory on a shared mount: what bidirectional and host-to-container mounts need."""
    d = _own_mount(tmp_path / "shared", "rshared")
    yield d
    umount_all(d)


def test_oci_annotations_cpu_shares_and_env_of_pods_as_containerd(node, cri, shared_dir):
    """As containerd 1.6 (side by side): the OCI specs carry the CRI's annotations that runtimes
    such as runsc and kata group a pod's containers by (container-type, sandbox-id, the pod's
    name, namespace and uid, its log directory; the container's name and image); the pause runs
    with cpu.shares 2 and the image's environment only; the verbose PodSandboxStatus shows the CNI
    result as containerd does."""
    sid, sbx = _pod(cri, node, "annot")
    cid = _ctr(cri, sid, sbx, "web", ["sleep", "60"])
    pause = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])
    ctr = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])
    pod = {"io.kubernetes.cri.sandbox-id": sid, "io.kubernetes.cri.sandbox-name": "annot",
           "io.kubernetes.cri.sandbox-namespace": "testns", "io.kubernetes.cri.sandbox-uid": "u-annot"}
    want = dict(pod, **{"io.kubernetes.cri.container-type": "sandbox",
                        "io.kubernetes.cri.sandbox-log-directory": os.path.join(node.logs, "annot")})
    got = pause["runtimeSpec"]["annotations"]
    assert {k: got.get(k) for k in want} == want, got
    want = dict(pod, **{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": "web",
                        "io.kubernetes.cri.image-name": "docker.io/library/busybox-layers:1"})
    got = ctr["runtimeSpec"]["annotations"]
    assert {k: got.get(k) for k in want} == want, got
    assert pause["runtimeSpec"]["linux"]["resources"]["cpu"]["shares"] == 2
    # the verbose info's CNI result in containerd's shape (go-cni's Result)
    ip = cri.PodSandboxStatus(pod_sandbox_id=sid).status.network.ip
    cni = pause["cniResult"]
    assert sorted(cni) == ["DNS", "Interfaces", "Routes"], cni
    assert cni["Interfaces"]["eth0"]["IPConfigs"][0]["IP"] == ip and "/" not in ip
    assert cni["Interfaces"]["eth0"]["Sandbox"] == pause["netns"] == cni["Interfaces"]["lo"]["Sandbox"]
    assert cni["Interfaces"]["lo"]["IPConfigs"][0] == {"IP": "127.0.0.1", "Gateway": ""}
    # the configs as containerd shows them (Go's JSON of the CRI structs): proto field names,
    # 64-bit numbers as numbers, enums as numbers, zero values left out
    assert pause["config"]["metadata"] == {"name": "annot", "uid": "u-annot", "namespace": "testns"}
    assert pause["config"]["log_directory"] == os.path.join(node.logs, "annot")
    assert ctr["config"]["log_path"] == "web.log" and ctr["config"]["command"] == ["sleep", "60"]
    uid = _ctr(cri, sid, sbx, "uid", ["sleep", "60"], envs=[pb.KeyValue(key="A", value="b")],
               mounts=[pb.Mount(container_path="/m", host_path=str(shared_dir),
                                propagation=pb.PROPAGATION_HOST_TO_CONTAINER)],
               linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                   run_as_user=pb.Int64Value(value=1000))))
    cfg = json.loads(cri.ContainerStatus(container_id=uid, verbose=True).info["info"])["config"]
    assert cfg["linux"]["security_context"]["run_as_user"] == {"value": 1000}
    assert cfg["envs"] == [{"key": "A", "value": "b"}]
    assert cfg["mounts"] == [{"container_path": "/m", "host_path": str(shared_dir), "propagation": 1}]
    assert [e.split("=")[0] for e in pause["runtimeSpec"]["process"]["env"]] == ["PATH"]
    paths = {}
    with open(f"/proc/{pause['pid']}/cgroup") as f:
        for line in f:
            _n, ctrls, path = line.rstrip("\n").split(":", 2)
            paths[ctrls] = path
    if "cpu,cpuacct" in paths:
        assert open(f"/sys/fs/cgroup/cpu,cpuacct{paths['cpu,cpuacct']}/cpu.shares").read().strip() == "2"
        assert paths["cpu,cpuacct"] == f"/k8s.io/{sid}"  # no cgroup parent: containerd's /<namespace>/<id>
    # the specs as Go's JSON of runtime-spec's types (omitempty fields left out when empty), the
    # pause's oomScoreAdj given (containerd's -998 within what the host allows)
    for spec in (pause["runtimeSpec"], ctr["runtimeSpec"]):
        assert spec["linux"]["cgroupsPath"].startswith("/k8s.io/")
        assert "terminal" not in spec["process"] and "rlimits" not in spec["process"], spec["process"]
        assert not [k for k, v in spec["linux"].items() if v in ([], {}, "", False)], spec["linux"]
    assert isinstance(pause["runtimeSpec"]["process"]["oomScoreAdj"], int)
    cri.StopPodSandbox(pod_sandbox_id=sid)
    stopped = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])
    assert stopped["cniResult"] == cni  # a stopped pod's is kept, as containerd keeps it
    cri.RemovePodSandbox(pod_sandbox_id=sid)


def test_an_oom_killed_container_says_so_as_containerd(node, cri):
    """A container killed by the OOM killer of its memory cgroup: EXITED, 137, reason OOMKilled
    (containerd 1.6 side by side; a kubelet shows the reason in the pod's status); one killed
    otherwise: reason Error."""
    sid, sbx = _pod(cri, node, "oom")
    res = pb.LinuxContainerResources(memory_limit_in_bytes=8 << 20)
    hog = _ctr(cri, sid, sbx, "hog", ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"],
               linux=pb.LinuxContainerConfig(resources=res))
    killed = _ctr(cri, sid, sbx, "killed", ["sleep", "60"], linux=pb.LinuxContainerConfig(resources=res))
    cri.StopContainer(container_id=killed, timeout=0)
    wait_for(lambda: cri.ContainerStatus(container_id=hog).status.state == pb.CONTAINER_EXITED, 20, "the OOM kill")
    st = cri.ContainerStatus(container_id=hog).status
    assert (st.exit_code, st.reason) == (137, "OOMKilled"), st
    st = cri.ContainerStatus(container_id=killed).status
    assert (st.exit_code, st.reason) == (137, "Error"), st
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)


def test_pod_resolv_conf_and_env_order_as_containerd(node, cri):
    """As containerd 1.6 (side by side): a pod's resolv.conf is its DNS config alone, search then
    nameservers then options (nothing of the host's), else the host's as it is; its /etc/hosts is
    the node's; a container's environment has the image's variables first, the config's
    replacing or after them."""
    sbx = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="dns", namespace="testns", uid="u-dns"),
                              dns_config=pb.DNSConfig(servers=["10.0.0.10", "10.0.0.11"], searches=["svc.local"],
                                                      options=["ndots:5"]))
    sid = cri.RunPodSandbox(config=sbx).pod_sandbox_id
    cid = _ctr(cri, sid, sbx, "e", ["sleep", "60"], envs=[pb.KeyValue(key="A", value="1"),
                                                            pb.KeyValue(key="FIXTURE", value="mine")])
    run = lambda *cmd: cri.ExecSync(container_id=cid, cmd=list(cmd), timeout=10).stdout.decode()  # noqa: E731
    assert run("cat", "/etc/resolv.conf") == "search svc.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
    env = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["runtimeSpec"]["process"]["env"]
    assert [e.split("=")[0] for e in env] == ["PATH", "HOSTNAME", "FIXTURE", "A"] and "FIXTURE=mine" in env, env
    plain, plain_cfg = _pod(cri, node, "nodns")
    pc = _ctr(cri, plain, plain_cfg, "p", ["sleep", "60"])
    with open("/etc/resolv.conf") as f:
        assert cri.ExecSync(container_id=pc, cmd=["cat", "/etc/resolv.conf"], timeout=10).stdout.decode() == f.read()
    # /etc/hosts: the node's, copied into the pod (containerd's; a kubelet mounts its own over it)
    with open("/etc/hosts") as f:
        hosts = f.read()
    for c in (cid, pc):
        assert cri.ExecSync(container_id=c, cmd=["cat", "/etc/hosts"], timeout=10).stdout.decode() == hosts
    for s in (sid, plain):
        cri.StopPodSandbox(pod_sandbox_id=s)
        cri.RemovePodSandbox(pod_sandbox_id=s)


def test_image_size_is_its_stored_content_as_containerd(node, cri):
    """containerd 1.6 reports an image's size as the content it is made of: manifest, config and
    the compressed layers (1089892 for this fixture side by side; berth gave 560 less, without the
    manifest)."""
    import tarfile
    with tarfile.open(os.path.join(DATA, "busybox-layers.oci.tar")) as t:
        desc = json.load(t.extractfile("index.json"))["manifests"][0]
        manifest = json.load(t.extractfile("blobs/sha256/" + desc["digest"].split(":")[1]))
    want = desc["size"] + manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    assert cri.ImageStatus(image=pb.ImageSpec(image="busybox-layers:1")).image.size == want
    listed = [i for i in cri.ListImages().images if "docker.io/library/busybox-layers:1" in i.repo_tags]
    assert [i.size for i in listed] == [want]


def test_nul_bytes_bad_ids_and_unknown_protocols_are_refused_before_anything_is_made(node, cri):
    """A NUL byte in any string of a request (a name, an argument, a variable, a map's value)
    answers INVALID_ARGUMENT naming the field, and nothing is made (it used to reach the CNI
    plugins' environment: INTERNAL, "embedded null byte", and left the pod's record); so do a
    user or group id out of the kernel's range and a port mapping's unknown protocol, when the
    mapping has a host port (containerd ignores a mapping without one, and so does berth,
    whatever its protocol). Found by fuzzing the CRI."""
    sid, sbx = _pod(cri, node, "nul")  # the pod the bad containers are asked for
    netns_dir = os.path.join(node.d.state, "cri", "netns")
    wait_for(lambda: len(os.listdir(netns_dir)) == 2, 10, "the pod's namespace and the spare")
    netns = sorted(os.listdir(netns_dir))
    pods = sorted(p.id for p in cri.ListPodSandbox().items)

    def refused(rpc, what, **fields):
        with pytest.raises(grpc.RpcError) as e:
            getattr(cri, rpc)(**fields)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and what in e.value.details(), e.value.details()

    for md in ({"name": "a\0b"}, {"name": "n", "namespace": "\0"}, {"name": "n", "uid": "u\0"}):
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(**md), log_directory=os.path.join(node.logs, "n"))
        refused("RunPodSandbox", "contains a NUL character", config=cfg)
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", uid="p"), hostname="h",
                              labels={"k": "v\0"}, log_directory=os.path.join(node.logs, "p"))
    refused("RunPodSandbox", "invalid value for \"config.labels['k']\": contains a NUL character", config=cfg)
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", uid="p"), log_directory=os.path.join(node.logs, "p"),
                              port_mappings=[pb.PortMapping(protocol=99, container_port=80, host_port=free_port())])
    refused("RunPodSandbox", "unknown port mapping protocol 99", config=cfg)
    # an id the kernel cannot take: refused at once (the pod's pause used to fail after the answer)
    sc = pb.LinuxSandboxSecurityContext(run_as_user=pb.Int64Value(value=-1))
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", uid="p"), log_directory=os.path.join(node.logs, "p"),
                              linux=pb.LinuxPodSandboxConfig(security_context=sc))
    refused("RunPodSandbox", "run_as_user -1 is not a valid id", config=cfg)
    assert sorted(p.id for p in cri.ListPodSandbox().items) == pods
    assert sorted(os.listdir(netns_dir)) == netns  # the refused pods made no namespace

    for kw, what in (({"envs": [pb.KeyValue(key="A", value="1\0")]}, "config.envs[0].value"),
                     ({"args": ["ok", "x\0"]}, "config.args[1]"), ({"working_dir": "/\0"}, "config.working_dir")):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="bad"), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["sleep", "300"], **kw)
        refused("CreateContainer", f'invalid value for "{what}": contains a NUL character', pod_sandbox_id=sid,
                config=cfg, sandbox_config=sbx)
    sc = pb.LinuxContainerSecurityContext(run_as_user=pb.Int64Value(value=0), run_as_group=pb.Int64Value(value=2**32))
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="bad"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["sleep", "300"], linux=pb.LinuxContainerConfig(security_context=sc))
    refused("CreateContainer", "run_as_group 4294967296 is not a valid id", pod_sandbox_id=sid, config=cfg,
            sandbox_config=sbx)
    assert not cri.ListContainers().containers
    cid = _ctr(cri, sid, sbx, "good", ["sleep", "300"])
    refused("ExecSync", 'invalid value for "cmd[1]": contains a NUL character', container_id=cid, cmd=["echo", "a\0b"])
    assert cri.ExecSync(container_id=cid, cmd=["echo", "ab"]).stdout == b"ab\n"

    # a mapping without a host port is no mapping: its protocol is not looked at
    ok = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="noport", uid="noport"),
                             log_directory=os.path.join(node.logs, "noport"),
                             port_mappings=[pb.PortMapping(protocol=99, container_port=80)])
    other = cri.RunPodSandbox(config=ok).pod_sandbox_id
    assert cri.PodSandboxStatus(pod_sandbox_id=other).status.state == pb.SANDBOX_READY


def test_exec_sync_at_a_container_that_is_exiting_answers_not_running(node, cri):
    """ExecSync racing the container's own exit (its shim closing the connection under the exec
    request) answers that the container is not running (containerd's words and code, UNKNOWN),
    never INTERNAL (the fuzzing of the
    CRI found ConnectionResetError from the shim's socket answered as INTERNAL)."""
    sid, sbx = _pod(cri, node, "exiting")
    codes = set()
    for i in range(3):
        cid = _ctr(cri, sid, sbx, f"brief{i}", ["sh", "-c", "sleep 0.3"])
        deadline = time.monotonic() + 10

        def hammer():
            seen = set()
            while time.monotonic() < deadline:
                try:
                    cri.ExecSync(container_id=cid, cmd=["true"], timeout=5)
                    seen.add("OK")
                except grpc.RpcError as e:
                    seen.add(e.code().name)
                    if e.code() == grpc.StatusCode.UNKNOWN:  # not running, or its exec could not start
                        assert e.details().startswith("failed to exec in container: "), e.details()
                        return seen
            return seen
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            for f in [pool.submit(hammer) for _ in range(3)]:
                codes |= f.result()
    assert codes <= {"OK", "UNKNOWN", "NOT_FOUND"} and "UNKNOWN" in codes, codes


def test_namespaces_pid_pod_container_and_host_network(node, cri):
    sid, sbx = _pod(cri, node, "nsp")
    shared = _ctr(cri, sid, sbx, "shared", ["sleep", "300"])
    own = _ctr(cri, sid, sbx, "own", ["sleep", "301"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))))
    seen = cri.ExecSync(container_id=shared, cmd=["ps", "-o", "args"]).stdout.decode()
    assert "/pause" in seen and "sleep 300" in seen
    seen = cri.ExecSync(container_id=own, cmd=["ps", "-o", "args"]).stdout.decode()
    assert "/pause" not in seen and "sleep 301" in seen
    # containers share the pod's network, IPC and UTS namespaces
    def ns_of(cid, kind):
        return cri.ExecSync(container_id=cid, cmd=["readlink", f"/proc/self/ns/{kind}"]).stdout
    for kind in ("net", "ipc", "uts"):
        assert ns_of(shared, kind) == ns_of(own, kind)
    assert ns_of(shared, "pid") != ns_of(own, "pid")
    assert os.readlink("/proc/self/ns/net").encode() not in ns_of(shared, "net")
    # hostNetwork: the node's network namespace and hostname; a hostname of its own is refused and
    # nothing is made, as containerd's (runc: "unable to set hostname without a private UTS namespace")
    hostnet = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE)))
    named = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="hostnet", namespace="testns", uid="u-hn"),
                                hostname="mine", linux=hostnet)
    before = len(cri.ListPodSandbox().items)
    with pytest.raises(grpc.RpcError) as e:
        cri.RunPodSandbox(config=named)
    assert e.value.code() == grpc.StatusCode.UNKNOWN and "without a private UTS namespace" in e.value.details()
    assert len(cri.ListPodSandbox().items) == before
    hsbx = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="hostnet", namespace="testns", uid="u-hn"),
                               log_directory=os.path.join(node.logs, "hostnet"), linux=hostnet)
    hsid = cri.RunPodSandbox(config=hsbx).pod_sandbox_id
    h = _ctr(cri, hsid, hsbx, "h", ["sleep", "300"])
    assert ns_of(h, "net").strip().decode() == os.readlink("/proc/self/ns/net")
    assert cri.ExecSync(container_id=h, cmd=["hostname"]).stdout.decode().strip() == socket.gethostname()
    assert cri.PodSandboxStatus(pod_sandbox_id=hsid).status.network.ip == ""


def test_what_the_handlers_do_not_report_is_refused(node, cri):
    """What Status does not report is refused where asked, nothing made: supplemental_groups_policy
    Strict, a writable cgroup mount, ambient capabilities, CDI devices (they were ignored: the
    container ran without them). userns_options in NODE mode is the host's user namespace (a
    pod's own: test_cri_userns.py)."""
    sid, sbx = _pod(cri, node, "usnode", security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(userns_options=pb.UserNamespace(mode=pb.NODE))))
    cid = _ctr(cri, sid, sbx, "c", ["sleep", "300"])
    assert cri.ExecSync(container_id=cid, cmd=["cat", "/proc/self/uid_map"]).stdout.split() == [b"0", b"0", b"4294967295"]
    # the other runtime features Status does not report: refused where asked, nothing made
    assert not cri.Status().features.supplemental_groups_policy and not cri.Status().features.cgroup_mount_mode
    before = len(cri.ListContainers().containers)
    for sc, words, extra in (
            (pb.LinuxContainerSecurityContext(supplemental_groups_policy=pb.Strict), "Strict", {}),
            (pb.LinuxContainerSecurityContext(cgroup_mount_mode=pb.CGROUP_MOUNT_MODE_WRITABLE), "WRITABLE", {}),
            (pb.LinuxContainerSecurityContext(capabilities=pb.Capability(add_ambient_capabilities=["NET_RAW"])),
             "ambient", {}),
            (None, "CDI", {"CDI_devices": [pb.CDIDevice(name="vendor.com/gpu=0")]})):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="f-" + words), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["true"], linux=pb.LinuxContainerConfig(security_context=sc), **extra)
        with pytest.raises(grpc.RpcError) as e:
            cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in e.value.details()
    assert len(cri.ListContainers().containers) == before
    ro = _ctr(cri, sid, sbx, "ro", ["sleep", "300"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(cgroup_mount_mode=pb.CGROUP_MOUNT_MODE_READ_ONLY)))
    probe = "touch /sys/fs/cgroup/pids/x /sys/fs/cgroup/x 2>&1 || true"  # (v1's hierarchy, or v2's root)
    assert b"Read-only file system" in cri.ExecSync(container_id=ro, cmd=["sh", "-c", probe]).stdout


def test_recursive_read_only_mounts(node, cri, tmp_path):
    """CRI's recursive_read_only (what a kubelet 1.30+ asks where Status says the handler can, as
    containerd 2 and CRI-O do): the mount and the mounts under it read-only; a plain read-only
    mount only at its top, as containerd 1.6's; the kubelet's rules refused in CRI-O's words."""
    import grpc
    features = {h.name: h.features.recursive_read_only_mounts for h in cri.Status().runtime_handlers}
    assert features[""] is True and features["berth-runc"] is True, features
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "inner")], check=True)
    try:
        sid, sbx = _pod(cri, node, "rro")
        script = "touch /m/a 2>/dev/null && echo top-rw || echo top-ro; touch /m/inner/a 2>/dev/null && echo inner-rw || echo inner-ro"
        got = []
        for name, rro in (("r1", True), ("r2", False)):
            cid = _ctr(cri, sid, sbx, name, ["sleep", "60"], mounts=[
                pb.Mount(container_path="/m", host_path=str(src), readonly=True, recursive_read_only=rro,
                         propagation=pb.PROPAGATION_PRIVATE)])
            got.append(cri.ExecSync(container_id=cid, cmd=["sh", "-c", script]).stdout.decode().split())
        assert got == [["top-ro", "inner-ro"], ["top-ro", "inner-rw"]], got
        for kw, why in (({"readonly": False}, "recursive read-only mount conflicts with read-write mount for hostPath"),
                        ({"readonly": True, "propagation": pb.PROPAGATION_HOST_TO_CONTAINER},
                         "recursive read-only mount requires private propagation for hostPath")):
            cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="bad"), image=pb.ImageSpec(image="busybox-layers:1"),
                                     command=["true"], mounts=[pb.Mount(container_path="/m", host_path=str(src),
                                                                        recursive_read_only=True, **kw)])
            with pytest.raises(grpc.RpcError) as e:
                cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx)
            assert why in e.value.details(), e.value.details()
        cri.StopPodSandbox(pod_sandbox_id=sid)
        cri.RemovePodSandbox(pod_sandbox_id=sid)
    finally:
        subprocess.run(["umount", str(src / "inner")], check=True)


def test_security_context_and_resources(node, cri, tmp_path):
    sid, sbx = _pod(cri, node, "sec")
    src = tmp_path / "vol"
    src.mkdir()
    (src / "f").write_text("from the host\n")
    sc = pb.LinuxContainerSecurityContext(
        run_as_user=pb.Int64Value(value=1234), run_as_group=pb.Int64Value(value=5678), supplemental_groups=[42],
        readonly_rootfs=True, no_new_privs=True, capabilities=pb.Capability(drop_capabilities=["ALL"]),
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))
    res = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_shares=512, cpu_quota=50000,
                                     cpu_period=100000)
    cid = _ctr(cri, sid, sbx, "s", ["sleep", "300"], linux=pb.LinuxContainerConfig(security_context=sc, resources=res),
               mounts=[pb.Mount(container_path="/vol", host_path=str(src), readonly=True)])
    out = cri.ExecSync(container_id=cid, cmd=["sh", "-c", "id; cat /vol/f; touch /x 2>&1; touch /vol/y 2>&1;"
                                                          " grep -E 'NoNewPrivs|CapEff|Seccomp:' /proc/self/status"])
    text = out.stdout.decode()
    assert "uid=1234 gid=5678" in text and "42" in text
    assert "from the host" in text and "Read-only file system" in text
    assert "NoNewPrivs:\t1" in text and "CapEff:\t0000000000000000" in text and "Seccomp:\t2" in text
    pid = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["pid"]
    with open(f"/proc/{pid}/mountinfo") as f:  # read-only with the root, as containerd mounts them
        opts = {line.split()[4]: line.split()[5].split(",") for line in f}
    assert all("ro" in opts[f"/etc/{n}"] for n in ("hosts", "hostname", "resolv.conf")), opts
    assert "rw" in opts["/dev/shm"]
    assert _memory_limit(pid) == 64 << 20
    from berth.services.runopts import swap_accounting
    swap = swap_accounting()  # then no swap beyond the memory limit unless asked, as containerd's
    assert _memory_limit(pid, swap=True) == (64 << 20 if swap else None)
    cri.UpdateContainerResources(container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20))
    assert _memory_limit(pid) == 96 << 20
    assert _memory_limit(pid, swap=True) == (96 << 20 if swap else None)
    status = cri.ContainerStatus(container_id=cid).status
    assert status.resources.linux.memory_limit_in_bytes == 96 << 20 and status.resources.linux.cpu_shares == 512
    assert status.resources.linux.memory_swap_limit_in_bytes == (96 << 20 if swap else 0)
    # the spec the verbose status shows is updated as containerd's (crictl inspect's runtimeSpec)
    spec = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["runtimeSpec"]
    assert spec["linux"]["resources"]["memory"]["limit"] == 96 << 20
    assert spec["linux"]["resources"]["memory"].get("swap") == (96 << 20 if swap else None)
    assert spec["linux"]["resources"]["cpu"]["shares"] == 512
    assert status.mounts[0].container_path == "/vol"
    mem = cri.ContainerStats(container_id=cid).stats.memory  # what its limit leaves it
    assert 0 < mem.available_bytes.value == (96 << 20) - mem.working_set_bytes.value
    (unlimited,) = cri.ListContainerStats(filter=pb.ContainerStatsFilter(id=_ctr(cri, sid, sbx, "u", ["sleep", "60"]))).stats
    assert unlimited.memory.working_set_bytes.value > 0 and unlimited.memory.available_bytes.value == 0  # as containerd
    assert unlimited.memory.HasField("available_bytes")  # given, as containerd's (crictl: {"value": "0"}, not null)
    assert (status.user.linux.uid, status.user.linux.gid) == (1234, 5678)
    assert list(status.user.linux.supplemental_groups) == [42, 5678]
    # an AppArmor profile cannot be honoured: refused as containerd refuses it on a host without AppArmor
    with pytest.raises(grpc.RpcError) as e:
        _ctr(cri, sid, sbx, "aa", ["true"], linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            apparmor=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref="k8s-x"))))
    assert e.value.code() == grpc.StatusCode.UNKNOWN and "apparmor is not supported" in e.value.details()


def _memory_limit(pid, swap=False):
    """The memory limit of a process's cgroup (v1 memory controller or v2); swap: its memory+swap
    limit (v2: memory.max + memory.swap.max), None without swap accounting."""
    paths = dict(line.split(":", 2)[1:] for line in open(f"/proc/{pid}/cgroup").read().splitlines())
    if "memory" in paths:
        d = f"/sys/fs/cgroup/memory{paths['memory']}"
        name = "memory.memsw.limit_in_bytes" if swap else "memory.limit_in_bytes"
        return int(open(f"{d}/{name}").read()) if os.path.exists(f"{d}/{name}") else None
    d = f"/sys/fs/cgroup{paths['']}"
    if swap:
        if not os.path.exists(f"{d}/memory.swap.max"):
            return None
        return int(open(f"{d}/memory.max").read()) + int(open(f"{d}/memory.swap.max").read())
    return int(open(f"{d}/memory.max").read())


def test_reopen_container_log(node, cri):
    sid, sbx = _pod(cri, node, "rot")
    cid = _ctr(cri, sid, sbx, "r", ["sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"])
    path = cri.ContainerStatus(container_id=cid).status.log_path
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10, "log lines")
    os.rename(path, path + ".1")
    cri.ReopenContainerLog(container_id=cid)
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10, "a new log file")
    with open(path) as f:
        assert " stdout F line" in f.readline()


def test_container_events(node, cri):
    stream = cri.runtime.GetContainerEvents(pb.GetEventsRequest(), timeout=60)
    sid, sbx = _pod(cri, node, "ev")
    cid = _ctr(cri, sid, sbx, "x", ["true"])
    seen = []
    for ev in stream:
        if ev.container_id == cid:
            seen.append(ev.container_event_type)
            if pb.CONTAINER_STOPPED_EVENT in seen:
                break
    stream.cancel()
    assert seen[:3] == [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT]


def _pause_in_local_registry(registry):
    skopeo("copy", "--dest-tls-verify=false", "oci-archive:" + os.path.join(DATA, "pause.oci.tar"),
           f"docker://{registry.addr}/pause:3.9")


def _pod_from_mirrored_sandbox_image(n, check=None):
    """Start n, run a pod: its sandbox image registry.k8s.io/pause:3.9 must come from the mirror.
    check(client) runs first. Removed with its pod, the image is pulled again for the next pod."""
    n.start()
    try:
        c = n.client()
        if check is not None:
            check(c)
        for name in ("mirrored", "again"):
            sid, _ = _pod(c, n, name)
            assert c.PodSandboxStatus(pod_sandbox_id=sid).status.state == pb.SANDBOX_READY
            assert "registry.k8s.io/pause:3.9" in [t for i in c.ListImages().images for t in i.repo_tags]
            c.StopPodSandbox(pod_sandbox_id=sid)
            c.RemovePodSandbox(pod_sandbox_id=sid)
            c.RemoveImage(image=pb.ImageSpec(image="registry.k8s.io/pause:3.9"))
            assert "registry.k8s.io/pause:3.9" not in [t for i in c.ListImages().images for t in i.repo_tags]
        c.close()
    finally:
        n.cleanup()


def test_sandbox_image_pulled_through_a_certs_d_mirror(tmp_path, registry):
    """A node without internet: registry.k8s.io/pause:3.9 comes from a local mirror (certs.d)."""
    _pause_in_local_registry(registry)
    n = Node(tmp_path)
    hosts = os.path.join(n.d.certs_d, "registry.k8s.io")
    os.makedirs(hosts)
    with open(os.path.join(hosts, "hosts.toml"), "w") as f:
        # the server is the local registry too: nothing may leave the machine, even on a failure
        f.write(f'server = "http://{registry.addr}"\n\n[host."http://{registry.addr}"]\n'
                f'  capabilities = ["pull", "resolve"]\n')
    _pod_from_mirrored_sandbox_image(n)


def test_sandbox_image_pulled_through_containerd_style_mirrors(tmp_path, registry):
    """The mirrors of containerd's CRI config (registry.mirrors."<host>".endpoint) in berthd.toml:
    registry.k8s.io/pause:3.9 comes from the local registry; `crictl info` shows them."""
    _pause_in_local_registry(registry)
    n = Node(tmp_path, extra=f'[registry.mirrors."registry.k8s.io"]\nendpoint = ["http://{registry.addr}"]\n')
    # nothing may leave the machine, even on a failure: every registry's own server is a closed port
    os.makedirs(os.path.join(n.d.certs_d, "_default"))
    with open(os.path.join(n.d.certs_d, "_default", "hosts.toml"), "w") as f:
        f.write(f'server = "http://127.0.0.1:{free_port()}"\n')

    def shows_mirrors(c):
        config = json.loads(c.Status(verbose=True).info["config"])
        assert config["registry"]["mirrors"] == {"registry.k8s.io": {"endpoint": [f"http://{registry.addr}"]}}
    _pod_from_mirrored_sandbox_image(n, shows_mirrors)


def test_debug_log_times_each_call(tmp_path):
    """At log_level debug, berthd's log has each CRI call with its time, and a failed call's code
    and message (containerd logs CRI requests at debug); at info, none."""
    n = Node(tmp_path, extra='log_level = "debug"\n').start()
    try:
        c = n.client()
        c.Version()
        with pytest.raises(grpc.RpcError) as e:
            c.ContainerStatus(container_id="nosuchcontainer")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        c.close()
        log = n.d.log()
        assert re.search(r"CRI Version: \d+\.\d ms$", log, re.M), log[-2000:]
        assert re.search(r"CRI ContainerStatus: \d+\.\d ms: NOT_FOUND an error occurred when try to find "
                         r'container "nosuchcontainer": not found$', log, re.M), log[-2000:]
    finally:
        n.cleanup()
    quiet = Node(tmp_path / "info").start()
    try:
        c = quiet.client()
        c.Version()
        c.close()
        assert "CRI Version" not in quiet.d.log()
    finally:
        quiet.cleanup()


def test_cri_false_serves_no_cri_socket(tmp_path):
    d = Daemon(tmp_path / "d", extra_config="cri = false\n")
    d.start()
    try:
        assert d.berth("version").returncode == 0
        time.sleep(1)
        assert not os.path.exists(d.cri_sock)
        dump = d.berth("info").returncode  # the Docker API is served regardless
        assert dump == 0
    finally:
        d.cleanup()


def _cgroup_paths(pid):
    return {line.split(":", 2)[1]: line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()}


def _rm_cgroups(name):
    """The parent cgroups a test named (the kubelet makes and removes them on a node)."""
    for root, dirs, _files in os.walk("/sys/fs/cgroup", topdown=False):
        for d in dirs:
            if d == name or d.startswith(name + "/"):
                try:
                    os.rmdir(os.path.join(root, d))
                except OSError:
                    pass


@pytest.mark.parametrize("driver", ["cgroupfs", "systemd"])
def test_cgroup_parent_with_both_drivers(tmp_path, driver):
    tag = "%06x" % random.getrandbits(24)
    parent = f"berthtest{tag}.slice" if driver == "systemd" else f"/berthtest{tag}"
    n = Node(tmp_path, extra=f'cgroup_driver = "{driver}"\n')
    n.start()
    try:
        for archive in ("pause.oci.tar", "busybox-layers.oci.tar"):
            n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, archive), check=True)
        c = n.client()
        assert c.RuntimeConfig().linux.cgroup_driver == (pb.SYSTEMD if driver == "systemd" else pb.CGROUPFS)
        sid, sbx = _pod(c, n, "cg", cgroup_parent=parent)
        cid = _ctr(c, sid, sbx, "x", ["sleep", "300"])
        pid = json.loads(c.ContainerStatus(container_id=cid, verbose=True).info["info"])["pid"]
        path = _cgroup_paths(pid).get("memory") or _cgroup_paths(pid)[""]
        if driver == "systemd":
            assert path == f"/{parent}/berth-{cid}.scope"
        else:
            assert path == f"{parent}/{cid}"
        c.StopPodSandbox(pod_sandbox_id=sid)
        c.RemovePodSandbox(pod_sandbox_id=sid)
        c.close()
    finally:
        n.cleanup()
        _rm_cgroups(parent.strip("/"))


def test_pull_image_with_auth(node, tmp_path):
    """PullImage's AuthConfig against a registry with TLS and htpasswd (the kubelet passes the
    pod's image pull secret this way)."""
    from daemon_fixtures import Registry
    try:
        import bcrypt
    except ImportError:
        pytest.skip("the bcrypt module is not installed")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    (tls / "htpasswd").write_text("kube:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=5)).decode() + "\n")
    reg = Registry(tmp_path / "reg", extra=(
        f"  tls:\n    certificate: {tls / 'cert.pem'}\n    key: {tls / 'key.pem'}\n"
        f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {tls / 'htpasswd'}\n")).start()
    try:
        ref = f"{reg.addr}/private/hello:1"
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "kube:s3cret",
               "oci-archive:" + os.path.join(DATA, "hello-world.oci.tar"), f"docker://{ref}")
        hostdir = os.path.join(node.d.certs_d, f"127.0.0.1_{reg.port}_")
        os.makedirs(hostdir, exist_ok=True)
        with open(os.path.join(hostdir, "hosts.toml"), "w") as f:
            f.write(f'server = "https://{reg.addr}"\nca = "{tls / "cert.pem"}"\n')
        c = node.client()
        for auth in (None, pb.AuthConfig(username="kube", password="wrong")):
            with pytest.raises(grpc.RpcError) as e:
                c.PullImage(image=pb.ImageSpec(image=ref), **({"auth": auth} if auth else {}))
            assert "denied" in e.value.details() or "unauthorized" in e.value.details().lower()
        import base64
        for auth in (pb.AuthConfig(username="kube", password="s3cret", server_address=reg.addr),
                     pb.AuthConfig(auth=base64.b64encode(b"kube:s3cret").decode())):
            image_ref = c.PullImage(image=pb.ImageSpec(image=ref), auth=auth).image_ref
            assert image_ref.startswith("sha256:")
            assert ref in [t for i in c.ListImages().images for t in i.repo_tags]
            c.RemoveImage(image=pb.ImageSpec(image=ref))
        c.close()
    finally:
        reg.stop()


@need_crictl
def test_logs_follow_until_the_container_exits(node):
    pod = node.pod_config("follow")
    sid = node.crictl("runp", pod).out.strip()
    try:
        cid = node.crictl("create", sid, node.ctr_config(
            "f", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done; printf 'no newline'"]), pod).out.strip()
        node.crictl("start", cid)
        p = node.crictl("logs", "-f", cid, timeout=30)
        assert p.out.split() == ["line1", "line2", "line3", "no", "newline"]
        assert json.loads(node.crictl("inspect", cid).out)["status"]["reason"] == "Completed"
    finally:
        node.crictl("stopp", sid, check=False)
        node.crictl("rmp", sid, check=False)


def test_a_pull_from_a_registry_that_refuses_the_connection_in_containerds_words(node, cri):
    """containerd's resolver's words for a registry that refuses the connection (Go's dial error
    after `failed to do request`), UNKNOWN."""
    ref = f"127.0.0.1:{free_port()}/nothere/x:1"
    with pytest.raises(grpc.RpcError) as e:
        cri.PullImage(image=pb.ImageSpec(image=ref))
    host, path = ref.split("/", 1)
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.UNKNOWN, f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": failed to '
        f'do request: Head "http://{host}/v2/nothere/x/manifests/1": dial tcp {host}: connect: connection refused')


def test_log_path_is_joined_to_the_pods_log_directory_as_containerd(node, cri, tmp_path):
    """A container's log_path is joined to its pod's log_directory as containerd joins them (Go's
    filepath.Join): an absolute one stays in the directory (berth wrote /abs.log on the host), a
    missing subdirectory is made, `x/../y` is y."""
    sid, sbx = _pod(cri, node, "logjoin")
    logs = sbx.log_directory
    for name, path, where in (("abs", f"/{tmp_path.name}-abs.log", f"{tmp_path.name}-abs.log"),
                              ("sub", "c/0.log", "c/0.log"), ("dots", "x/../d.log", "d.log")):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["echo", name], log_path=path)
        cid = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
        assert cri.ContainerStatus(container_id=cid).status.log_path == os.path.join(logs, where)
        cri.StartContainer(container_id=cid)
        wait_for(lambda: cri.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_EXITED, 10, "the exit")
        with open(os.path.join(logs, where)) as f:
            assert f.read().endswith(f" stdout F {name}\n")
    assert not os.path.exists(f"/{tmp_path.name}-abs.log")


def test_capabilities_as_containerd(node, cri):
    """A container's capabilities as containerd 1.6's CRI makes them (side by side): "ALL" among
    the adds, then among the drops, then each add, then each drop, every name "CAP_" + its upper
    case, so a name given with its prefix is a capability no kernel has, which the runtime
    ignores (runc's warning): "CAP_NET_ADMIN" grants nothing, "CAP_CHOWN" drops nothing, "FOO"
    runs. berth refused unknown names and took prefixed ones as docker does."""
    sid, sbx = _pod(cri, node, "caps", security_context=pb.LinuxSandboxSecurityContext(privileged=True))

    def caps(add=(), drop=(), privileged=False):
        sc = pb.LinuxContainerSecurityContext(capabilities=pb.Capability(add_capabilities=add, drop_capabilities=drop),
                                              privileged=privileged)
        cid = _ctr(cri, sid, sbx, f"c{random.getrandbits(32):x}", ["sleep", "60"],
                   linux=pb.LinuxContainerConfig(security_context=sc))
        out = cri.ExecSync(container_id=cid, cmd=["grep", "^CapBnd", "/proc/self/status"], timeout=10).stdout
        spec = json.loads(cri.ContainerStatus(container_id=cid, verbose=True).info["info"])["runtimeSpec"]
        return int(out.split()[1], 16), set((spec["process"].get("capabilities") or {}).get("bounding") or [])

    default = caps()[0]
    bit = {"CHOWN": 0, "KILL": 5, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13}
    assert caps(add=["CAP_NET_ADMIN"]) == (default, caps()[1] | {"CAP_CAP_NET_ADMIN"})
    assert caps(drop=["CAP_CHOWN"])[0] == default
    assert caps(add=["FOO"], drop=["bar"])[0] == default
    assert caps(add=["net_admin"])[0] == default | 1 << bit["NET_ADMIN"]
    assert caps(add=["net_raw"], drop=["ALL"])[0] == 1 << bit["NET_RAW"]
    assert caps(add=["kill"], drop=["KILL"])[0] == default & ~(1 << bit["KILL"])  # the drop after the add
    everything = caps(add=["all"], drop=["chown"])[0]
    assert everything & default == default & ~1 and everything.bit_count() > 20
    assert caps(add=["ALL"], drop=["ALL", "kill"])[0] == 0
    assert caps(drop=["CHOWN"], privileged=True)[0] == everything | 1  # privileged: all, whatever else


def test_run_as_username_is_resolved_at_create_as_containerd(node, cri):
    """run_as_username is looked up in the image's /etc/passwd at CreateContainer (containerd 1.6
    side by side: a temporary mount of the container's snapshot): a name the file lacks, or an
    image without the file, fails the create UNKNOWN in containerd's words, nothing left (berth
    made the container and its start failed in runc's words); a name it has runs as that user."""
    sid, sbx = _pod(cri, node, "uname")

    def create(name, user, image="busybox-layers:1"):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
                                 command=["sleep", "600"] if image.startswith("busybox") else ["/pause"],
                                 linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                                     run_as_username=user)))
        return cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id

    for name, user, image, why in (("nouser", "nosuchuser", "busybox-layers:1", "no users found"),
                                   ("nofile", "someone", "registry.k8s.io/pause:3.9",
                                    "open {tmp}/etc/passwd: no such file or directory")):
        with pytest.raises(grpc.RpcError) as e:
            create(name, user, image)
        m = re.fullmatch(r"failed to create containerd container: mount callback failed on (\S+): (.*)", e.value.details())
        assert e.value.code() == grpc.StatusCode.UNKNOWN and m, e.value.details()
        assert m.group(2) == why.format(tmp=m.group(1))
        assert not os.path.exists(m.group(1))  # the temporary mount is gone, with its directory
        assert name not in node.d.berth("-n", "k8s.io", "ps", "-a").out
    assert [c.metadata.name for c in cri.ListContainers().containers] == []
    cid = create("root", "root")
    cri.StartContainer(container_id=cid)
    assert cri.ExecSync(container_id=cid, cmd=["id", "-u"], timeout=10).stdout == b"0\n"


def test_devices_sysctls_paths_seccomp_privileged(node, cri, tmp_path):
    sid, sbx = _pod(cri, node, "more", sysctls={"net.ipv4.ip_unprivileged_port_start": "80",
                                                 "kernel.shm_rmid_forced": "1"})
    profile = tmp_path / "deny-mkdir.json"  # a Localhost seccomp profile: everything but mkdir(at)
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    sc = pb.LinuxContainerSecurityContext(
        masked_paths=["/proc/kcore", "/etc/hostname"], readonly_paths=["/proc/sys"],
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref=str(profile)))
    cid = _ctr(cri, sid, sbx, "d", ["sleep", "300"], linux=pb.LinuxContainerConfig(security_context=sc),
               devices=[pb.Device(host_path="/dev/zero", container_path="/dev/xzero", permissions="r")])
    run = lambda *cmd: cri.ExecSync(container_id=cid, cmd=list(cmd))  # noqa: E731
    assert run("sh", "-c", "head -c 4 /dev/xzero | od -An -tx1").stdout.split() == [b"00"] * 4
    assert run("cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").stdout.strip() == b"80"
    assert run("cat", "/proc/sys/kernel/shm_rmid_forced").stdout.strip() == b"1"
    assert run("cat", "/etc/hostname").stdout == b""  # masked
    r = run("mkdir", "/tmp/x")
    assert r.exit_code != 0 and (b"ermission" in r.stderr or b"not permitted" in r.stderr), r
    # unconfined and privileged: mkdir works, all capabilities, /sys writable
    sbx2 = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="priv", namespace="testns", uid="u-priv"),
                               linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                                   privileged=True)))
    sid2 = cri.RunPodSandbox(config=sbx2).pod_sandbox_id
    priv = _ctr(cri, sid2, sbx2, "p", ["sleep", "300"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(privileged=True)))
    text = cri.ExecSync(container_id=priv, cmd=["sh", "-c", "mkdir /tmp/x && grep -E 'CapEff|Seccomp:' "
                                                             "/proc/self/status; ls /dev | wc -l"]).stdout.decode()
    assert "Seccomp:\t0" in text and "CapEff:\t0000000000000000" not in text
    assert int(text.split()[-1]) > 20  # the host's devices
    # its pause is not privileged itself, as containerd's: docker's capabilities, no host devices,
    # the masked paths, a read-only /sys; no seccomp
    pause = json.loads(cri.PodSandboxStatus(pod_sandbox_id=sid2, verbose=True).info["info"])
    spec = pause["runtimeSpec"]
    assert len(spec["process"]["capabilities"]["bounding"]) == 14 and not spec["linux"].get("devices")
    assert "/proc/keys" in spec["linux"]["maskedPaths"] and "seccomp" not in spec["linux"]
    assert "ro" in next(m for m in spec["mounts"] if m["destination"] == "/sys")["options"]
    with open(f"/proc/{pause['pid']}/status") as f:
        status = f.read()
    assert "Seccomp:\t0" in status and "CapBnd:\t00000000a80425fb" in status, status  # (it runs as 65535)
    # a privileged container in a sandbox that is not: refused
    with pytest.raises(grpc.RpcError) as e:
        _ctr(cri, sid, sbx, "np", ["true"], linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(privileged=True)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_host_pid_and_ipc(node, cri):
    sid, sbx = _pod(cri, node, "hostns", security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.NODE, ipc=pb.NODE)))
    opts = pb.NamespaceOption(pid=pb.NODE, ipc=pb.NODE)
    cid = _ctr(cri, sid, sbx, "h", ["sleep", "300"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=opts)))
    for kind in ("pid", "ipc"):
        seen = cri.ExecSync(container_id=cid, cmd=["readlink", f"/proc/self/ns/{kind}"]).stdout.decode().strip()
        assert seen == os.readlink(f"/proc/self/ns/{kind}")
    assert cri.ExecSync(container_id=cid, cmd=["readlink", "/proc/self/ns/net"]).stdout.decode().strip() != \
        os.readlink("/proc/self/ns/net")
    st = cri.PodSandboxStatus(pod_sandbox_id=sid).status
    assert st.linux.namespaces.options.pid == pb.NODE and st.linux.namespaces.options.ipc == pb.NODE


def test_config_dump_shows_the_containerd_keys(tmp_path):
    from daemon_fixtures import BERTHD
    cfg = tmp_path / "berthd.toml"
    cfg.write_text('sandbox_image = "127.0.0.1:5000/pause:3.9"\nsystemd_cgroup = true\n'
                   'config_path = "/etc/containerd/certs.d"\ncri_socket = "/run/x/cri.sock"\n')
    p = subprocess.run([BERTHD, "--config", str(cfg), "config", "dump"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for line in ('sandbox_image = "127.0.0.1:5000/pause:3.9"', 'cgroup_driver = "systemd"',
                 'config_path = "/etc/containerd/certs.d"', 'cri_socket = "/run/x/cri.sock"', "cri = true",
                 'cri_cni_conf_dir = "/etc/cni/net.d"'):
        assert line in p.stdout.splitlines(), line
    cfg.write_text('cri_socket = "relative.sock"\n')
    p = subprocess.run([BERTHD, "--config", str(cfg), "config", "dump"], capture_output=True, text=True)
    assert p.returncode != 0 and "cri_socket" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_mount_propagation(node, cri, tmp_path, shared_dir):
    """Host-to-container: what the host mounts later under the source shows in the container;
    bidirectional: what the (privileged) container mounts there shows on the host, its root's
    propagation rshared and the mount a peer of the host's (containerd 1.6 and runc side by side:
    the same mountinfo tags); private: neither. containerd's refusals when the source's mount
    does not propagate (UNKNOWN, at CreateContainer, nothing made)."""
    sid, sbx = _pod(cri, node, "prop", security_context=pb.LinuxSandboxSecurityContext(privileged=True))
    ids = {}
    for name, prop in (("slave", pb.PROPAGATION_HOST_TO_CONTAINER), ("private", pb.PROPAGATION_PRIVATE),
                       ("both", pb.PROPAGATION_BIDIRECTIONAL)):
        ids[name] = _ctr(cri, sid, sbx, name, ["sleep", "300"],
                         mounts=[pb.Mount(container_path="/prop", host_path=str(shared_dir), propagation=prop)],
                         linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                             privileged=name == "both")))
    (shared_dir / "sub").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shared_dir / "sub")], check=True)
    (shared_dir / "sub" / "f").write_text("mounted later\n")
    seen = cri.ExecSync(container_id=ids["slave"], cmd=["cat", "/prop/sub/f"])
    assert seen.stdout == b"mounted later\n"
    assert cri.ExecSync(container_id=ids["both"], cmd=["cat", "/prop/sub/f"]).stdout == b"mounted later\n"
    assert cri.ExecSync(container_id=ids["private"], cmd=["cat", "/prop/sub/f"]).exit_code != 0
    (shared_dir / "back").mkdir()
    r = cri.ExecSync(container_id=ids["both"], cmd=["mount", "-t", "tmpfs", "-o", "size=1m", "fromctr", "/prop/back"])
    assert r.exit_code == 0, r.stderr
    assert os.path.ismount(shared_dir / "back")  # the container's mount reached the host
    spec = json.loads(cri.ContainerStatus(container_id=ids["both"], verbose=True).info["info"])["runtimeSpec"]
    assert spec["linux"]["rootfsPropagation"] == "rshared"
    spec = json.loads(cri.ContainerStatus(container_id=ids["slave"], verbose=True).info["info"])["runtimeSpec"]
    assert spec["linux"]["rootfsPropagation"] == "rslave"
    tags = cri.ExecSync(container_id=ids["both"], cmd=["sh", "-c", "grep ' /prop ' /proc/self/mountinfo"]).stdout.split()
    assert [t for t in tags if t.startswith((b"shared:", b"master:"))][0].startswith(b"shared:"), tags
    assert b"master:" not in b" ".join(tags[:tags.index(b"-")])  # a peer of the host's, not its slave
    # a source whose mount neither shares nor receives: containerd's words, nothing created
    private = _own_mount(tmp_path / "private", "private")
    try:
        for prop, words in ((pb.PROPAGATION_BIDIRECTIONAL, "a shared mount"),
                            (pb.PROPAGATION_HOST_TO_CONTAINER, "a shared or slave mount")):
            cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=f"no{prop}"), command=["true"],
                                     image=pb.ImageSpec(image="busybox-layers:1"),
                                     mounts=[pb.Mount(container_path="/p", host_path=str(private), propagation=prop)])
            with pytest.raises(grpc.RpcError) as e:
                cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx)
            assert e.value.code() == grpc.StatusCode.UNKNOWN
            assert re.fullmatch(f'failed to generate container "[0-9a-f]{{64}}" spec: failed to generate spec: '
                                f'path "{private}" is mounted on "{private}" but it is not {words}',
                                e.value.details()), e.value.details()
        assert {c.metadata.name for c in cri.ListContainers().containers} == {"slave", "private", "both"}
    finally:
        umount_all(private)
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)


def test_security_profiles_devices_env_and_workdir_as_containerd(node, cri, tmp_path):
    """containerd 1.6's CRI on a host without AppArmor (side by side with crictl): an AppArmor
    profile other than unconfined is refused for a container (RuntimeDefault too), not for a pod;
    a Localhost seccomp profile that cannot be read, an unknown profile string (a pod's in
    containerd's misspelt words), a device that is not there or not a device node, a group without
    a user: UNKNOWN in its words at CreateContainer or RunPodSandbox. What runc refuses at the start: an empty variable
    name, a working directory below a file (its mkdir's words)."""
    def refused(fn, **kw):
        with pytest.raises(grpc.RpcError) as e:
            fn(**kw)
        assert e.value.code() == grpc.StatusCode.UNKNOWN, e.value.details()
        return re.sub(r'"[0-9a-f]{64}"', '"<id>"', e.value.details())
    sid, sbx = _pod(cri, node, "secw")
    sec = pb.LinuxContainerSecurityContext
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    want = {
        "aa": (sec(apparmor=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)), [],
               "failed to get container spec opts: failed to generate apparmor spec opts: apparmor is not supported"),
        "aastr": (sec(apparmor_profile="runtime/default"), [],
                  "failed to get container spec opts: failed to generate apparmor spec opts: apparmor is not supported"),
        "sc": (sec(seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref="/nonexistent.json")),
               [], 'failed to create containerd container: cannot load seccomp profile "/nonexistent.json": '
                   'open /nonexistent.json: no such file or directory'),
        "scjson": (sec(seccomp_profile_path=f"localhost/{bad}"), [],
                   f'failed to create containerd container: decoding seccomp profile failed "{bad}": '),
        "scstr": (sec(seccomp_profile_path="bogus"), [],
                  'failed to get container spec opts: failed to generate seccomp spec opts: invalid profile "bogus"'),
        "devgone": (sec(), [pb.Device(container_path="/dev/x", host_path="/dev/nonexistent", permissions="rwm")],
                    'failed to generate container "<id>" spec: failed to generate spec: lstat /dev/nonexistent: '
                    'no such file or directory'),
        "devfile": (sec(), [pb.Device(container_path="/dev/x", host_path=str(bad), permissions="rwm")],
                    'failed to generate container "<id>" spec: failed to generate spec: not a device node'),
        "grp": (sec(run_as_group=pb.Int64Value(value=5)), [],
                'failed to get container spec opts: failed to generate user string: user group "5" is specified '
                'without user'),
    }
    for name, (sc, devices, words) in want.items():
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["true"], devices=devices, linux=pb.LinuxContainerConfig(security_context=sc))
        got = refused(cri.CreateContainer, pod_sandbox_id=sid, config=cfg, sandbox_config=sbx)
        assert got.startswith(words) if name == "scjson" else got == words, (name, got)
    assert [c.metadata.name for c in cri.ListContainers().containers] == []
    unconfined = _ctr(cri, sid, sbx, "unconf", ["sleep", "60"], linux=pb.LinuxContainerConfig(security_context=sec(
        apparmor=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))))
    assert cri.ContainerStatus(container_id=unconfined).status.state == pb.CONTAINER_RUNNING
    prefix = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
              "failed: unable to start container process: error during container init: ")
    for name, kw, why in (("env", {"envs": [pb.KeyValue(key="", value="x")]},
                           'environment variable name can\'t be empty: "=x"'),
                          ("wd", {"working_dir": "/etc/passwd/x"}, "mkdir /etc/passwd: not a directory")):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["true"], **kw)
        c = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
        assert refused(cri.StartContainer, container_id=c) == prefix + why + ": unknown"
        st = cri.ContainerStatus(container_id=c).status
        assert (st.state, st.reason, st.exit_code) == (pb.CONTAINER_EXITED, "StartError", 128)
    pod = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="scpod", namespace="testns", uid="u-scpod"),
                              linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                                  seccomp_profile_path="bogus")))
    assert refused(cri.RunPodSandbox, config=pod) == ("failed to generate sanbdox container spec options: failed to "
                                                      'generate seccomp spec opts: invalid profile "bogus"')
    pod = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="grppod", namespace="testns", uid="u-grppod"),
                              linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                                  run_as_group=pb.Int64Value(value=5))))
    assert refused(cri.RunPodSandbox, config=pod) == ("failed to generate sanbdox container spec options: failed to "
                                                      'generate user string: user group "5" is specified without user')
    assert [p.metadata.name for p in cri.ListPodSandbox().items] == ["secw"]
    aa_pod, _ = _pod(cri, node, "aapod", security_context=pb.LinuxSandboxSecurityContext(
        apparmor=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)))
    assert cri.PodSandboxStatus(pod_sandbox_id=aa_pod).status.state == pb.SANDBOX_READY
    for s_ in (sid, aa_pod):
        cri.StopPodSandbox(pod_sandbox_id=s_)
        cri.RemovePodSandbox(pod_sandbox_id=s_)


def test_pod_sysctls_and_unified_refused_as_containerd(node, cri):
    """runc's sysctl rules for the pause's namespaces (containerd 1.6 side by side): a sysctl that
    is not namespaced (vm.*: it would be the host's), or net.* on the host's network, fails
    RunPodSandbox UNKNOWN in runc's words after containerd's prefixes, nothing left; a namespaced
    one runs. linux.resources.unified on this cgroup v1 host: runc's `invalid configuration`."""
    prefix = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: "
    for name, sysctls, host in (("vm", {"vm.swappiness": "10"}, False), ("hostnet", {"net.ipv4.ip_forward": "1"}, True)):
        sc = pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE)) if host else None
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="testns", uid="u-" + name),
                                  linux=pb.LinuxPodSandboxConfig(sysctls=sysctls, security_context=sc))
        with pytest.raises(grpc.RpcError) as e:
            cri.RunPodSandbox(config=cfg)
        key = next(iter(sysctls))
        words = "is not in a separate kernel namespace" if name == "vm" else "not allowed in host network namespace"
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNKNOWN, f'{prefix}sysctl "{key}" {words}: unknown')
    # what the kernel refuses as the pause's init writes them (a key the pod's network namespace
    # lacks, a value): containerd's RunPodSandbox fails with runc's words, nothing of the pod left
    for name, sysctls, why in (
            ("nokey", {"net.ipv4.nonexistent": "1"}, "open /proc/sys/net/ipv4/nonexistent: no such file or directory"),
            ("badval", {"net.ipv4.ip_unprivileged_port_start": "abc"},
             "write /proc/sys/net/ipv4/ip_unprivileged_port_start: invalid argument")):
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="testns", uid="u-" + name),
                                  linux=pb.LinuxPodSandboxConfig(sysctls=sysctls))
        with pytest.raises(grpc.RpcError) as e:
            cri.RunPodSandbox(config=cfg)
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.UNKNOWN,
            f"{prefix}unable to start container process: error during container init: {why}: unknown")
        assert name not in node.d.berth("-n", "k8s.io", "ps", "-a").out
    assert [p.metadata.name for p in cri.ListPodSandbox().items] == []
    sid, sbx = _pod(cri, node, "okctl", sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    from berth.runtime.cgroups import detect_mode
    if detect_mode() != "v2":
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="uni"), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["true"], linux=pb.LinuxContainerConfig(
                                     resources=pb.LinuxContainerResources(unified={"memory.max": "1000000"})))
        c = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
        with pytest.raises(grpc.RpcError) as e:
            cri.StartContainer(container_id=c)
        assert e.value.details() == prefix + "invalid configuration: cannot use unified on cgroup v1: unknown"
        # values the kernel refuses: made (no dockerd limits at create), the start fails in runc's words
        cg = f"/sys/fs/cgroup/%s/k8s.io/%s"
        for name, res, why in (
                ("cpus", pb.LinuxContainerResources(cpuset_cpus="x-y"),
                 'unable to apply cgroup configuration: failed to write "x-y": write {cpuset}/cpuset.cpus: invalid argument'),
                ("quota", pb.LinuxContainerResources(cpu_quota=500, cpu_period=100000),
                 "error during container init: error setting cgroup config for procHooks process: "
                 'failed to write "500": write {cpu}/cpu.cfs_quota_us: invalid argument')):
            cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox-layers:1"),
                                     command=["true"], linux=pb.LinuxContainerConfig(resources=res))
            c = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
            with pytest.raises(grpc.RpcError) as e:
                cri.StartContainer(container_id=c)
            cpu_dir = cg % ("cpu,cpuacct" if os.path.isdir("/sys/fs/cgroup/cpu,cpuacct") else "cpu", c)
            want = why.format(cpuset=cg % ("cpuset", c), cpu=cpu_dir)
            assert e.value.details() == prefix + "unable to start container process: " + want + ": unknown"
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)


def test_mount_sources_and_failures_as_containerd(node, cri, tmp_path):
    """containerd 1.6's CRI (side by side): a missing host path is made (0755) at CreateContainer;
    an empty one refused in its words; a relative container path is the root's. Mounts runc
    refuses fail the start in runc's words after containerd's prefix: a file on a directory, a
    directory over /proc (its masking would have written into the host's directory)."""
    sid, sbx = _pod(cri, node, "msrc")
    made = tmp_path / "made" / "a" / "b"
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("in d\n")
    cid = _ctr(cri, sid, sbx, "made", ["sleep", "60"], mounts=[pb.Mount(container_path="/m", host_path=str(made)),
                                                            pb.Mount(container_path="rel/x", host_path=str(d))])
    assert made.is_dir() and oct(made.stat().st_mode & 0o777) == "0o755"
    assert cri.ExecSync(container_id=cid, cmd=["cat", "/rel/x/f"]).stdout == b"in d\n"
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="empty"), image=pb.ImageSpec(image="busybox-layers:1"),
                             mounts=[pb.Mount(container_path="/m", host_path="")])
    with pytest.raises(grpc.RpcError) as e:
        cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx)
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert re.fullmatch('failed to generate container "[0-9a-f]{64}" spec: failed to generate spec: '
                        'failed to mkdir "": mkdir : no such file or directory', e.value.details()), e.value.details()
    rootfs = os.path.join(node.d.root, "containers")
    for name, mount, why in (
            ("fileondir", pb.Mount(container_path="/etc", host_path=str(d / "f")),
             f'error mounting "{d / "f"}" to rootfs at "/etc": mount {d / "f"}:/etc (via /proc/self/fd/N), '
             'flags: 0x5000: not a directory'),
            ("overproc", pb.Mount(container_path="/proc", host_path=str(d)),
             f'error mounting "{d}" to rootfs at "/proc": "{rootfs}/<id>/rootfs/proc" cannot be mounted because it '
             'is not of type proc')):
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox-layers:1"),
                                 command=["true"], mounts=[mount])
        c = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
        with pytest.raises(grpc.RpcError) as e:
            cri.StartContainer(container_id=c)
        want = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
                f"failed: unable to start container process: error during container init: {why}: unknown")
        got = re.sub(r"/proc/self/fd/\d+", "/proc/self/fd/N", e.value.details()).replace(c, "<id>")
        assert (e.value.code(), got) == (grpc.StatusCode.UNKNOWN, want)
        st = cri.ContainerStatus(container_id=c).status
        assert (st.state, st.reason, st.exit_code) == (pb.CONTAINER_EXITED, "StartError", 128)
    assert sorted(os.listdir(d)) == ["f"]  # nothing made in the host's directory
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)


def test_a_sandbox_removed_by_berth_releases_its_network(tmp_path):
    """`berth -n k8s.io rm -f` of a sandbox (ctr-style clean-up): the CRI releases its pod
    network (CNI DEL: the address goes back to IPAM) at its next ListPodSandbox."""
    n = Node(tmp_path)
    n.start()
    try:
        n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        c = n.client()
        sid, _ = _pod(c, n, "byberth")
        st = c.PodSandboxStatus(pod_sandbox_id=sid, verbose=True)
        ip, pod_netns = st.status.network.ip, json.loads(st.info["info"])["netns"]
        ipam = os.path.join(n.base, "ipam", "pods")
        assert ip in os.listdir(ipam)
        assert n.d.berth("-n", "k8s.io", "rm", "-f", sid).returncode == 0
        assert [s.id for s in c.ListPodSandbox().items] == []
        assert ip not in os.listdir(ipam)
        assert not os.path.exists(pod_netns)
        wait_for(lambda: len(os.listdir(os.path.join(n.d.state, "cri", "netns"))) == 1, 10, "the spare")
        c.close()
    finally:
        n.cleanup()



def test_the_next_pods_namespace_is_made_ahead(tmp_path):
    """Once a pod is made, berthd makes the next pod's network namespace (an empty one) off the
    path of its RunPodSandbox; the next pod takes it, another is made, and the spare goes when
    berthd stops (the pods' own stay: they outlive berthd)."""
    n = Node(tmp_path)
    n.start()
    try:
        n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        c = n.client()
        netns_dir = os.path.join(n.d.state, "cri", "netns")

        def pod(name):
            sid, _ = _pod(c, n, name)
            return json.loads(c.PodSandboxStatus(pod_sandbox_id=sid, verbose=True).info["info"])["netns"]
        first = pod("first")
        # made after the pause's start is reported: a moment after the status
        wait_for(lambda: len(set(os.listdir(netns_dir)) - {os.path.basename(first)}) == 1, 10, "the spare")
        spare = set(os.listdir(netns_dir)) - {os.path.basename(first)}
        second = pod("second")
        assert os.path.basename(second) == spare.pop() and c.PodSandboxStatus(
            pod_sandbox_id=[s.id for s in c.ListPodSandbox().items if s.metadata.name == "second"][0]).status.network.ip
        pods = {os.path.basename(p) for p in (first, second)}
        wait_for(lambda: len(set(os.listdir(netns_dir)) - pods) == 1, 10, "the next spare")
        spare = set(os.listdir(netns_dir)) - pods
        c.close()
        n.d.stop()
        assert set(os.listdir(netns_dir)) == pods
        with open("/proc/self/mountinfo") as f:
            mounted = {line.split()[4] for line in f}
        assert {first, second} <= mounted and os.path.join(netns_dir, spare.pop()) not in mounted
        n.d.start()
        wait_for(lambda: os.path.exists(n.sock), 30, "the CRI socket")
    finally:
        n.cleanup()

def test_a_failed_pod_network_leaves_nothing(tmp_path):
    """The CNI ADD runs while the pause container starts: when a plugin fails, RunPodSandbox
    answers the plugin's error and nothing of the pod is left (record, pause process and shim,
    namespace, address, cache). A bad port mapping is refused before anything is made."""
    n = Node(tmp_path)
    n.edit_plugins(lambda plugins: plugins.insert(1, {"type": "no-such-plugin"}))
    n.start()
    try:
        n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        c = n.client()
        with pytest.raises(grpc.RpcError) as e:
            _pod(c, n, "nonet")
        assert "no-such-plugin" in e.value.details()
        bad = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="badport", namespace="t", uid="u"),
                                  port_mappings=[pb.PortMapping(host_port=70000, container_port=80)])
        with pytest.raises(grpc.RpcError) as e:
            c.RunPodSandbox(config=bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [s.id for s in c.ListPodSandbox().items] == []
        assert n.d.berth("-n", "k8s.io", "ps", "-aq", check=True).out.strip() == ""
        assert os.listdir(os.path.join(n.d.state, "cri", "netns")) == []
        assert os.listdir(os.path.join(n.d.state, "cri", "cni-cache")) == []
        assert [f for f in os.listdir(os.path.join(n.base, "ipam", "pods")) if f.count(".") == 3] == []
        wait_for(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _in_node(p, n)], 10,
                 "the pod's processes to be gone")
        c.close()
    finally:
        n.cleanup()


def _node_with_plugin(tmp_path, name, program):
    """A Node (not started) whose CNI plugin directories start with one holding program as the
    plugin `name` (a plugin of its own, or one shadowing the standard one); (node, that directory)."""
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    (bindir / name).write_text(program)
    (bindir / name).chmod(0o755)
    return Node(tmp_path, extra=f'cri_cni_bin_dirs = ["{bindir}", "/opt/cni/bin", "/usr/lib/cni"]\n'), bindir


@contextlib.contextmanager
def _node_with_chained_plugin(tmp_path, name, program):
    """_node_with_plugin's node with the plugin last in the node's conflist, started, the pause
    image loaded: (node, the plugin's directory, a client), the node cleaned up after."""
    n, bindir = _node_with_plugin(tmp_path, name, program)
    n.edit_plugins(lambda plugins: plugins.append({"type": name}))
    n.start()
    try:
        n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        yield n, bindir, n.client()
    finally:
        n.cleanup()


SLOW_PLUGIN = """#!/usr/bin/python3
import json, os, sys, time
conf = json.load(sys.stdin)
if os.environ["CNI_COMMAND"] == "ADD":
    time.sleep(1.5)
    print(json.dumps(conf["prevResult"]))
"""


def test_a_pod_is_ready_only_once_its_network_is(tmp_path):
    """The pause container starts while the CNI ADD runs: until RunPodSandbox has the pod's
    address, listings show the sandbox NOTREADY (never READY without an IP)."""
    with _node_with_chained_plugin(tmp_path, "slow", SLOW_PLUGIN) as (n, bindir, c):
        import threading
        done = {}
        t = threading.Thread(target=lambda: done.setdefault("sid", _pod(c, n, "slow")[0]))
        t.start()
        seen = set()
        while t.is_alive():
            for s in c.ListPodSandbox().items:
                st = c.PodSandboxStatus(pod_sandbox_id=s.id).status
                seen.update((s.state, st.state))
                if s.state == pb.SANDBOX_READY or st.state == pb.SANDBOX_READY:
                    assert st.state == pb.SANDBOX_READY and st.network.ip  # never ready without its address
            time.sleep(0.05)
        t.join()
        assert pb.SANDBOX_NOTREADY in seen  # the listing did look while it was being set up
        st = c.PodSandboxStatus(pod_sandbox_id=done["sid"]).status
        assert st.state == pb.SANDBOX_READY and st.network.ip
        c.close()


FLAKY_PLUGIN = """#!/usr/bin/python3
import json, os, sys, time
conf = json.load(sys.stdin)
here = os.path.dirname(os.path.abspath(sys.argv[0]))
if os.environ["CNI_COMMAND"] == "ADD":
    if os.path.exists(os.path.join(here, "slow")):
        time.sleep(1.5)
        open(os.path.join(here, "added"), "w").close()  # the ADD is over from here on
    if os.path.exists(os.path.join(here, "fail")):
        print(json.dumps({"cniVersion": conf["cniVersion"], "code": 999, "msg": "flaky says no"}))
        sys.exit(1)
    print(json.dumps(conf["prevResult"]))
"""


def test_a_pod_given_the_spare_namespace_is_prepared_during_its_add(tmp_path):
    """With the spare network namespace made ahead, berthd prepares the pod's pause (its rootfs,
    spec, bundle) while the CNI ADD runs and starts it once the ADD is done: meanwhile listings
    answer at once (the pod not ready), the pod is ready with its address after, and an ADD
    that fails leaves nothing of the pod, its pause never started."""
    with _node_with_chained_plugin(tmp_path, "flaky", FLAKY_PLUGIN) as (n, bindir, c):
        netns_dir = os.path.join(n.d.state, "cri", "netns")
        first, _ = _pod(c, n, "first")
        wait_for(lambda: len(os.listdir(netns_dir)) == 2, 10, "the spare namespace")
        (bindir / "slow").write_text("")
        import threading
        done = {}
        t = threading.Thread(target=lambda: done.setdefault("sid", _pod(c, n, "second")[0]))
        t.start()
        looks = []
        while t.is_alive():
            t0 = time.monotonic()
            items = c.ListPodSandbox().items
            # answered before the ADD's end: "added" not there yet once the answer is in
            looks.append((time.monotonic() - t0, (bindir / "added").exists(), {s.metadata.name: s.state for s in items}))
            time.sleep(0.05)
        t.join()
        during = [(took, states) for took, added, states in looks if "second" in states and not added]
        assert during, looks  # the listing did look while the ADD ran
        assert all(states["second"] == pb.SANDBOX_NOTREADY for _, states in during)
        assert max(took for took, _ in during) < 0.5  # not held back by the ADD (1.5 s)
        st = c.PodSandboxStatus(pod_sandbox_id=done["sid"]).status
        assert st.state == pb.SANDBOX_READY and st.network.ip
        os.unlink(bindir / "slow")
        wait_for(lambda: len(os.listdir(netns_dir)) == 3, 10, "the next spare namespace")
        ours = set(os.listdir(netns_dir))

        def node_processes():
            return sorted(p for p in os.listdir("/proc") if p.isdigit() and _in_node(p, n))
        before = node_processes()
        (bindir / "fail").write_text("")
        with pytest.raises(grpc.RpcError) as e:
            _pod(c, n, "third")
        assert "flaky says no" in e.value.details()
        assert sorted(s.metadata.name for s in c.ListPodSandbox().items) == ["first", "second"]
        names = n.d.berth("-n", "k8s.io", "ps", "-a", "--format", "{{.Names}}", check=True).out
        assert "third" not in names
        wait_for(lambda: len(os.listdir(netns_dir)) <= 3 and set(os.listdir(netns_dir)) != ours, 10,
                 "the failed pod's namespace gone (and a spare made again)")
        assert len(os.listdir(os.path.join(n.d.state, "cri", "cni-cache"))) == 2  # the two pods'
        assert node_processes() == before  # no shim or pause of the third pod left
        c.close()


GATE_PLUGIN = """#!/usr/bin/python3
import json, os, sys, time
conf = json.load(sys.stdin)
here = os.path.dirname(os.path.abspath(sys.argv[0]))
if os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps(conf["prevResult"]))
elif os.environ["CNI_COMMAND"] == "DEL":
    time.sleep(0.3)
    with open(os.path.join(here, "dels"), "a") as f:
        f.write(os.environ["CNI_CONTAINERID"] + "\\n")
    if os.path.exists(os.path.join(here, "fail")):
        print(json.dumps({"cniVersion": conf["cniVersion"], "code": 999, "msg": "gate says no"}))
        sys.exit(1)
"""


PORTMAP_SPY = """#!/bin/sh
# the real portmap, each call written down first (command, and whether it has port mappings)
here=$(dirname "$0")
conf=$(cat)
case "$conf" in *'"portMappings"'*) m=mapped;; *) m=none;; esac
echo "$CNI_COMMAND $m" >> "$here/calls"
for d in /opt/cni/bin /usr/lib/cni; do
    [ -x "$d/portmap" ] && { printf '%s' "$conf" | "$d/portmap"; exit $?; }
done
exit 1
"""


def test_portmap_runs_only_for_pods_that_map_ports(tmp_path):
    """A pod without host ports gets the node's chain without portmap (given no mappings, its ADD
    hands the previous result back and its DEL does nothing: only its start-up's cost); a pod
    with a host port gets it, at its ADD and at its DEL."""
    n, bindir = _node_with_plugin(tmp_path, "portmap", PORTMAP_SPY)
    n.start()
    try:
        n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        c = n.client()
        calls = bindir / "calls"
        sid, _ = _pod(c, n, "noports")
        st = c.PodSandboxStatus(pod_sandbox_id=sid).status
        assert st.state == pb.SANDBOX_READY and st.network.ip
        c.StopPodSandbox(pod_sandbox_id=sid)
        c.RemovePodSandbox(pod_sandbox_id=sid)
        assert not calls.exists()
        port = free_port()
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="ports", namespace="testns", uid="u-ports"),
                                  hostname="ports", log_directory=os.path.join(n.logs, "ports"),
                                  port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=port)])
        sid = c.RunPodSandbox(config=cfg).pod_sandbox_id
        assert c.PodSandboxStatus(pod_sandbox_id=sid).status.network.ip
        assert calls.read_text().split("\n")[:1] == ["ADD mapped"]
        c.StopPodSandbox(pod_sandbox_id=sid)
        c.RemovePodSandbox(pod_sandbox_id=sid)
        assert calls.read_text().split() == ["ADD", "mapped", "DEL", "mapped"]
        c.close()
    finally:
        n.cleanup()


def test_a_stopped_pods_network_goes_before_anyone_sees_it(tmp_path):
    """StopPodSandbox answers once the pause is stopped (its process is gone); the pod's CNI DEL
    goes on after the answer, and whoever looks at the sandbox next (its status, a listing, its
    removal) waits for it: the address is back in IPAM and the namespace gone by then. A DEL
    that fails is tried again by RemovePodSandbox, which answers the plugin's error and keeps
    the sandbox until a DEL succeeds."""
    # the plugin last: its DEL runs first, slowly
    with _node_with_chained_plugin(tmp_path, "gate", GATE_PLUGIN) as (n, bindir, c):
        ipam = os.path.join(n.base, "ipam", "pods")
        for look in ("status", "list"):
            sid, _ = _pod(c, n, "gone-" + look)
            st = c.PodSandboxStatus(pod_sandbox_id=sid, verbose=True)
            info = json.loads(st.info["info"])
            ip, netns, pause = st.status.network.ip, info["netns"], info["pid"]
            assert ip in os.listdir(ipam) and os.path.exists(netns) and os.path.exists(f"/proc/{pause}")
            c.StopPodSandbox(pod_sandbox_id=sid)
            assert not os.path.exists(f"/proc/{pause}")  # exited and reaped before the answer
            if look == "status":
                st = c.PodSandboxStatus(pod_sandbox_id=sid).status
                assert st.state == pb.SANDBOX_NOTREADY and not st.network.ip
            else:
                assert [(s.id, s.state) for s in c.ListPodSandbox().items] == [(sid, pb.SANDBOX_NOTREADY)]
            assert ip not in os.listdir(ipam) and not os.path.exists(netns)
            assert (bindir / "dels").read_text().split() == [sid]
            c.RemovePodSandbox(pod_sandbox_id=sid)
            (bindir / "dels").unlink()

        sid, _ = _pod(c, n, "twice")  # two StopPodSandbox at once: one DEL (the second finds none to do)
        c.PodSandboxStatus(pod_sandbox_id=sid)
        import threading
        stops = [threading.Thread(target=c.StopPodSandbox, kwargs={"pod_sandbox_id": sid}) for _ in range(2)]
        for t in stops:
            t.start()
        for t in stops:
            t.join()
        assert c.PodSandboxStatus(pod_sandbox_id=sid).status.state == pb.SANDBOX_NOTREADY
        assert (bindir / "dels").read_text().split() == [sid]
        c.RemovePodSandbox(pod_sandbox_id=sid)
        (bindir / "dels").unlink()

        sid, _ = _pod(c, n, "stuck")
        ip = c.PodSandboxStatus(pod_sandbox_id=sid).status.network.ip
        (bindir / "fail").write_text("")
        c.StopPodSandbox(pod_sandbox_id=sid)
        assert c.PodSandboxStatus(pod_sandbox_id=sid).status.state == pb.SANDBOX_NOTREADY
        with pytest.raises(grpc.RpcError) as e:
            c.RemovePodSandbox(pod_sandbox_id=sid)
        assert "gate says no" in e.value.details()
        assert [s.id for s in c.ListPodSandbox().items] == [sid]
        (bindir / "fail").unlink()
        c.RemovePodSandbox(pod_sandbox_id=sid)
        assert [s.id for s in c.ListPodSandbox().items] == []
        assert ip not in os.listdir(ipam)
        assert (bindir / "dels").read_text().split() == [sid] * 3
        assert os.listdir(os.path.join(n.d.state, "cri", "cni-cache")) == []
        c.close()


def _in_node(pid, n):
    """Whether a process is a shim of n's berthd or runs in a container of it (its root is there)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().decode(errors="replace")
        root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        return False
    return comm == "berth-shim" and n.d.base in cmd or root.startswith(n.d.base)


def test_stop_signal_then_sigkill(node, cri):
    sid, sbx = _pod(cri, node, "sig")
    trap = _ctr(cri, sid, sbx, "trap", ["sh", "-c", "trap 'echo got usr1; exit 0' USR1; "
                                                    "while true; do sleep 0.1; done"],
                stop_signal=pb.SIGNAL_SIGUSR1)
    deaf = _ctr(cri, sid, sbx, "deaf", ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    time.sleep(0.5)
    t0 = time.monotonic()
    cri.StopContainer(container_id=trap, timeout=10)
    assert time.monotonic() - t0 < 5
    st = cri.ContainerStatus(container_id=trap).status
    assert st.exit_code == 0 and st.reason == "Completed"
    wait_for(lambda: "got usr1" in open(st.log_path).read(), 5, "the trap's output")
    t0 = time.monotonic()
    cri.StopContainer(container_id=deaf, timeout=1)  # TERM is ignored: SIGKILL after the timeout
    assert 0.9 < time.monotonic() - t0 < 8
    assert cri.ContainerStatus(container_id=deaf).status.exit_code == 137


def test_stop_with_no_timeout_is_sigkill_alone(node, cri):
    """StopContainer with timeout 0 (crictl stop's default) sends SIGKILL and nothing before it,
    as containerd's CRI does (checked with strace on its shim: one kill(SIGKILL)); the stop
    signal would have ended this one at once with 3."""
    sid, sbx = _pod(cri, node, "kill0")
    cid = _ctr(cri, sid, sbx, "busy", ["sh", "-c", "trap 'exit 3' USR1; echo up; while :; do :; done"],
               stop_signal=pb.SIGNAL_SIGUSR1)
    wait_for(lambda: "up" in open(cri.ContainerStatus(container_id=cid).status.log_path).read(), 10, "the trap")
    cri.StopContainer(container_id=cid, timeout=0)
    st = cri.ContainerStatus(container_id=cid).status
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 137, "Error")



def _proc_state(pid):
    """The one-letter state of a process (R, S, T, Z...), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_a_stops_signal_goes_to_the_init_without_its_shim(node, cri):
    """The stop's signal goes from berthd to the init (a pidfd of it, checked to be the child
    its shim.json names), not through a request to the shim: with the shim stopped (SIGSTOP),
    StopContainer's SIGKILL still ends the init at once; the stop answers once the shim, let
    go, has reaped it and told the exit. Where shim.json does not say the init is the shim's
    own child, or names another process or another parent, the shim's kill does it: the same
    signal to the same process (and none to the process shim.json named instead)."""
    import signal as sig
    import subprocess
    import threading
    sid, sbx = _pod(cri, node, "direct")
    loop = ["sh", "-c", "trap 'exit 3' USR1; echo up; while :; do sleep 0.1; done"]
    cid = _ctr(cri, sid, sbx, "straight", loop, stop_signal=pb.SIGNAL_SIGUSR1)
    wait_for(lambda: "up" in open(cri.ContainerStatus(container_id=cid).status.log_path).read(), 10, "the trap")
    shim_pid, pid = _held(node, cid)
    os.kill(shim_pid, sig.SIGSTOP)
    done = []
    t = threading.Thread(target=lambda: done.append(cri.StopContainer(container_id=cid, timeout=0)))
    try:
        t.start()
        # killed while its shim cannot do a thing: a zombie, its parent's to reap
        wait_for(lambda: _proc_state(pid) in ("Z", None), 10, "the init's end while its shim is stopped")
        assert not done
    finally:
        os.kill(shim_pid, sig.SIGCONT)
        t.join(30)
    assert done and cri.ContainerStatus(container_id=cid).status.exit_code == 137

    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for how in ("not its own child", "another process", "another parent"):
            cid = _ctr(cri, sid, sbx, how.replace(" ", "-"), loop, stop_signal=pb.SIGNAL_SIGUSR1)
            wait_for(lambda: "up" in open(cri.ContainerStatus(container_id=cid).status.log_path).read(), 10,
                     "the trap")
            path = os.path.join(node.d.state, "containers", cid, "shim.json")
            with open(path) as f:
                sj = json.load(f)
            assert sj["own_child"] is True and sj["status"] == "running"
            if how == "not its own child":
                sj["own_child"] = False
            elif how == "another process":
                sj["pid"] = bystander.pid
            else:
                sj["shim_pid"] = os.getpid()  # the init's parent is not that one
            with open(path + ".tmp", "w") as f:
                json.dump(sj, f)
            os.rename(path + ".tmp", path)
            cri.StopContainer(container_id=cid, timeout=10)
            assert cri.ContainerStatus(container_id=cid).status.exit_code == 3, how  # USR1, through the shim
            assert bystander.poll() is None, how
    finally:
        bystander.kill()
        bystander.wait()


def test_a_shim_holds_its_containers_mount_namespace_until_the_exit_is_told(node, cri):
    """The init's mount namespace is held by its shim (an fd) while the container runs, so that
    its teardown (every mount of the container) comes after the exit is told, not in the exiting
    init before its shim hears of it; once the exit is told, the shim lets it go (the pod's
    shim goes on with the pause: nothing of the container is left in it)."""
    sid, sbx = _pod(cri, node, "mntns")
    cid = _ctr(cri, sid, sbx, "c", ["sleep", "600"])
    shim_pid, pid = _held(node, cid)
    ns = os.readlink(f"/proc/{pid}/ns/mnt")
    assert ns != os.readlink("/proc/self/ns/mnt")

    def held():
        links = []
        for fd in os.listdir(f"/proc/{shim_pid}/fd"):
            try:
                links.append(os.readlink(f"/proc/{shim_pid}/fd/{fd}"))
            except FileNotFoundError:  # closed meanwhile
                pass
        return links.count(ns)
    assert held() == 1
    cri.StopContainer(container_id=cid, timeout=0)
    wait_for(lambda: held() == 0, 10, "the shim to let the mount namespace go")
    pause_shim, _ = _held(node, sid)
    assert pause_shim == shim_pid and _proc_state(shim_pid) not in ("Z", None)  # the pod's shim goes on

def test_a_container_that_cannot_start(node, cri):
    sid, sbx = _pod(cri, node, "starterr")
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="bad"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["/nonexistent"])
    cid = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
    with pytest.raises(grpc.RpcError) as e:
        cri.StartContainer(container_id=cid)
    # containerd 1.6's words and code (side by side): its task, its shim's and runc's
    words = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create '
             'failed: unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or '
             'directory: unknown')
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNKNOWN, words)
    st = cri.ContainerStatus(container_id=cid).status
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 128, "StartError")
    assert st.message == words and st.finished_at > 0
    # a file that is not executable is refused at the start too (runc's exec.LookPath), and a
    # working directory the image lacks is made (runc's)
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="noexec"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["/etc/passwd"])
    cid = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
    with pytest.raises(grpc.RpcError) as e:
        cri.StartContainer(container_id=cid)
    assert 'exec: "/etc/passwd": permission denied: unknown' in e.value.details()
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="wd"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["sh", "-c", "pwd > /dev/termination-log; exit 3"], working_dir="/made/here")
    cid = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
    cri.StartContainer(container_id=cid)
    wait_for(lambda: cri.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_EXITED, 10, "the exit")
    assert cri.ContainerStatus(container_id=cid).status.exit_code == 3



def _held(node, cid):
    """(shim pid, process pid) of a container's shim as its state file says, or None."""
    try:
        with open(os.path.join(node.d.state, "containers", cid, "shim.json")) as f:
            st = json.load(f)
    except (OSError, ValueError):
        return None
    return st["shim_pid"], st["pid"]


def _monitored(node, cid):
    """Whether the container's monitor (its part of its pod's shim) is there: its socket."""
    return os.path.exists(os.path.join(node.d.state, "s", cid[:16] + ".sock"))


def test_one_shim_per_pod(tmp_path):
    """A pod's containers are monitored by its sandbox's shim, as containerd's shim per pod: one
    berth-shim process per pod, serving each container's socket, log, exits and execs; it stays
    through a kill -9 of berthd (the next berthd's containers of the pod join it too) and ends
    with the pod. A pod whose shim takes no containers (one of a berth before this) gives them
    shims of their own."""
    n = Node(tmp_path)
    n.start()
    try:
        for archive in ("pause.oci.tar", "busybox-layers.oci.tar"):
            n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, archive), check=True)
        c = n.client()
        sid, sbx = _pod(c, n, "shared")
        one = _ctr(c, sid, sbx, "one", ["sh", "-c", "echo one; exec sleep 300"])
        two = _ctr(c, sid, sbx, "two", ["sh", "-c", "echo two; exec sleep 300"])
        shim = _held(n, sid)[0]
        assert _held(n, one)[0] == _held(n, two)[0] == shim
        with open(f"/proc/{shim}/comm") as f:
            assert f.read().strip() == "berth-shim"
        # (a shim's short-lived helper of the last creation, a fork of it, may still be ending)
        mine = lambda: [p for p in os.listdir("/proc") if p.isdigit() and _in_node(p, n) and _comm(p) == "berth-shim"]  # noqa: E731
        wait_for(lambda: mine() == [str(shim)], 5, f"one berth-shim for the pod, not {mine()}")
        for cid, word in ((one, "one"), (two, "two")):
            wait_for(lambda: word in open(c.ContainerStatus(container_id=cid).status.log_path).read(), 10, word)
            r = c.ExecSync(container_id=cid, cmd=["sh", "-c", f"echo {word}; exit 4"])
            assert (r.exit_code, r.stdout) == (4, word.encode() + b"\n")
        c.StopContainer(container_id=one, timeout=0)
        assert c.ContainerStatus(container_id=one).status.exit_code == 137
        # its socket goes once the shim has deleted the run's runtime state, just after the exit
        wait_for(lambda: not _monitored(n, one), 10, "the stopped container's socket to go")
        assert _monitored(n, two) and os.path.exists(f"/proc/{shim}")
        c.close()

        n.d.kill9()
        n.d.start()
        n.wait_serving()
        c = n.client()
        assert c.ContainerStatus(container_id=two).status.state == pb.CONTAINER_RUNNING
        three = _ctr(c, sid, sbx, "three", ["sleep", "300"])
        assert _held(n, three)[0] == shim
        assert c.ExecSync(container_id=three, cmd=["true"]).exit_code == 0

        # a container that cannot start in the pod's shim (its log path is a directory) fails
        # alone: the pod's shim and its other containers go on
        os.makedirs(os.path.join(n.logs, "shared", "dir.log"))
        bad = c.CreateContainer(pod_sandbox_id=sid, sandbox_config=sbx, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="bad"), image=pb.ImageSpec(image="busybox-layers:1"),
            command=["true"], log_path="dir.log")).container_id
        with pytest.raises(grpc.RpcError):
            c.StartContainer(container_id=bad)
        assert os.path.exists(f"/proc/{shim}")
        assert c.ExecSync(container_id=three, cmd=["true"]).exit_code == 0

        other, osbx = _pod(c, n, "older")
        c.PodSandboxStatus(pod_sandbox_id=other)  # its pause runs
        os.unlink(os.path.join(n.d.state, "s", other[:16] + ".host"))  # as a shim of an older berth
        alone = _ctr(c, other, osbx, "alone", ["sleep", "300"])
        assert _held(n, alone)[0] not in (shim, _held(n, other)[0])
        assert c.ExecSync(container_id=alone, cmd=["true"]).exit_code == 0

        for pod in (sid, other):
            c.StopPodSandbox(pod_sandbox_id=pod)
            c.RemovePodSandbox(pod_sandbox_id=pod)
        wait_for(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _in_node(p, n)], 10,
                 "the pods' shims and processes to be gone")
        c.close()
    finally:
        n.cleanup()


def test_pods_made_at_once_each_get_one_shim(tmp_path):
    """A pod's shim listens for the pod's containers before berthd hears that its pause started:
    containers created the moment their sandbox is ready (here pods made from five threads at
    once, as the 30-pod figure does) all join their pod's shim, none gets a shim of its own."""
    n = Node(tmp_path)
    n.start()
    try:
        for archive in ("pause.oci.tar", "busybox-layers.oci.tar"):
            n.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, archive), check=True)

        def pod(i):
            c = n.client()
            try:
                sid, sbx = _pod(c, n, f"at-once-{i}")
                return sid, [_ctr(c, sid, sbx, f"c{j}", ["sleep", "300"]) for j in range(2)]
            finally:
                c.close()
        with concurrent.futures.ThreadPoolExecutor(5) as ex:
            pods = list(ex.map(pod, range(30)))
        for sid, cids in pods:
            shim = _held(n, sid)[0]
            assert [_held(n, cid)[0] for cid in cids] == [shim, shim], (sid, cids)
        shims = [p for p in os.listdir("/proc") if p.isdigit() and _in_node(p, n) and _comm(p) == "berth-shim"]
        assert len(shims) == len(pods)
    finally:
        n.cleanup()


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _create_held(node, cri, name):
    sid, sbx = _pod(cri, node, name)
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["sh", "-c", "echo started; exec sleep 300"], log_path="c.log")
    cid = cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
    wait_for(lambda: _held(node, cid), 10, "the container's shim")
    return sid, cid, os.path.join(node.logs, name, "c.log")


def test_a_created_container_is_held_until_started(node, cri):
    """CreateContainer creates the container's process, as CRI-O does, and its shim holds it:
    the user's command runs only once StartContainer releases it."""
    sid, cid, log = _create_held(node, cri, "held")
    shim, pid = _held(node, cid)
    time.sleep(0.5)
    assert os.path.exists(f"/proc/{shim}") and _cmdline(pid) not in (None, "sh", "sleep")  # created, not started
    assert cri.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_CREATED
    assert not os.path.exists(log) or "started" not in open(log).read()
    cri.StartContainer(container_id=cid)
    st = cri.ContainerStatus(container_id=cid).status
    assert st.state == pb.CONTAINER_RUNNING and st.started_at > 0
    wait_for(lambda: "started" in open(log).read(), 10, "the container's output")
    # the held process is the one that runs (its shell goes on to exec sleep after the echo)
    wait_for(lambda: _cmdline(pid) == "sleep", 10, "the held process's exec of sleep")
    with pytest.raises(grpc.RpcError) as e:
        cri.StartContainer(container_id=cid)
    assert e.value.code() == grpc.StatusCode.UNKNOWN  # containerd's code and words
    assert e.value.details() == (f'failed to set starting state for container "{cid}": container is in '
                                 "CONTAINER_RUNNING state")


def test_removing_a_created_container_ends_its_held_process(node, cri):
    sid, cid, log = _create_held(node, cri, "heldrm")
    shim, pid = _held(node, cid)
    rootfs = os.path.join(node.d.root, "containers", cid, "rootfs")
    assert _mounted(rootfs)
    assert shim == _held(node, sid)[0]  # the pod's shim holds it
    cri.RemoveContainer(container_id=cid)
    try:
        wait_for(lambda: not _monitored(node, cid) and not os.path.exists(f"/proc/{pid}"), 10,
                 "the held process and its monitor to end")
    except AssertionError as e:
        raise AssertionError(f"{e} (monitored: {_monitored(node, cid)}, the process: {_proc_state(pid)} "
                             f"{_cmdline(pid)!r}, its shim: {_proc_state(shim)})") from None
    assert os.path.exists(f"/proc/{shim}")  # the pod's shim goes on, for its sandbox
    assert not _mounted(rootfs) and not os.path.exists(os.path.join(node.d.state, "containers", cid))
    assert not [c for c in cri.ListContainers().containers if c.id == cid]
    assert not os.path.exists(log) or "started" not in open(log).read()



def test_a_held_process_killed_before_its_start(node, cri):
    """The created process died (killed by someone) before StartContainer: the start creates
    the container anew."""
    sid, cid, log = _create_held(node, cri, "heldkill")
    shim, pid = _held(node, cid)
    os.kill(pid, 9)
    wait_for(lambda: not _monitored(node, cid), 10, "the held process's monitor to end")
    cri.StartContainer(container_id=cid)
    assert cri.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_RUNNING
    wait_for(lambda: "started" in open(log).read(), 10, "the container's output")
    assert _held(node, cid)[1] != pid


def test_created_processes_under_concurrent_clients(node, cri):
    """Clients racing the background creations: a RemoveContainer while the process is being
    created, a start at once, a sandbox stopped under a created container, a start after a
    delay; every call answers, and once the pods are gone nothing of them is left."""
    import random
    import threading
    errors = []

    def worker(w):
        c = node.client()
        try:
            for i in range(6):
                sid, sbx = _pod(c, node, f"race{w}-{i}")
                cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), command=["sleep", "300"],
                                         image=pb.ImageSpec(image="busybox-layers:1"), log_path="c.log")
                cid = c.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx).container_id
                kind = (w + i) % 4
                if kind == 0:
                    c.RemoveContainer(container_id=cid)
                elif kind == 1:
                    c.StartContainer(container_id=cid)
                    assert c.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_RUNNING
                elif kind == 2:
                    c.StopPodSandbox(pod_sandbox_id=sid)
                else:
                    time.sleep(random.random() * 0.05)
                    c.StartContainer(container_id=cid)
                c.StopPodSandbox(pod_sandbox_id=sid)
                c.RemovePodSandbox(pod_sandbox_id=sid)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(repr(e))
        finally:
            c.close()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not cri.ListPodSandbox().items and not cri.ListContainers().containers
    wait_for(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _in_node(p, node)], 10,
             "the pods' processes and shims to be gone")
    with open("/proc/self/mountinfo") as f:
        left = [line.split()[4] for line in f if os.path.join(node.d.root, "containers") in line.split()[4]]
    assert not left
    assert len(os.listdir(os.path.join(node.d.state, "cri", "netns"))) <= 1  # the spare

def test_a_created_container_after_a_kill9_of_berthd(node, cri):
    """The berthd that created the container is gone: its successor ends the held process at
    restore, and StartContainer then starts the container anew."""
    sid, cid, log = _create_held(node, cri, "heldk9")
    shim, pid = _held(node, cid)
    node.d.kill9()
    node.d.start()
    node.wait_serving()
    c = node.client()
    try:
        wait_for(lambda: not _monitored(node, cid) and not os.path.exists(f"/proc/{pid}"), 10,
                 "the held process and its monitor to end")
        assert c.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_CREATED
        c.StartContainer(container_id=cid)
        assert c.ContainerStatus(container_id=cid).status.state == pb.CONTAINER_RUNNING
        wait_for(lambda: "started" in open(log).read(), 10, "the container's output")
        assert _held(node, cid)[1] != pid
    finally:
        c.close()


def _node_ip():
    """The address of the default route's interface, as `ip` shows them (IPv4)."""
    route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout.split()
    if "dev" not in route:
        return None
    dev = route[route.index("dev") + 1]
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True).stdout
    return addrs.split()[3].split("/")[0] if addrs.strip() else None


def test_an_empty_stream_server_address_is_the_node_ip(tmp_path):
    """containerd 1.6 with stream_server_address = "": its streaming server listens on the IP of
    the default route's interface (checked with containerd on this machine); without a default
    route its CRI plugin does not load ("no default routes found in ...")."""
    ip = _node_ip()
    if ip is None:
        pytest.skip("this host has no IPv4 default route")
    lo_only_cni(tmp_path / "net")
    d = Daemon(tmp_path / "d", extra_config=f'stream_server_address = ""\ncri_cni_conf_dir = "{tmp_path / "net"}"\n')
    d.start()
    try:
        d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        c = CRIClient(d.cri_sock)
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="ss", namespace="t", uid="u-ss"))
        sid = c.RunPodSandbox(config=cfg).pod_sandbox_id
        url = c.PortForward(pod_sandbox_id=sid, port=[80]).url
        assert url.startswith(f"http://{ip}:"), url
        port = int(url.split("/")[2].rsplit(":", 1)[1])
        assert "404" in http_get(ip, port, "/exec/unknown").splitlines()[0]  # it listens there
        assert json.loads(c.Status(verbose=True).info["config"])["streamServerAddress"] == ""  # as given
        c.StopPodSandbox(pod_sandbox_id=sid)
        c.RemovePodSandbox(pod_sandbox_id=sid)
        c.close()
    finally:
        d.cleanup()
    # no default route (a network namespace with only lo): containerd's words
    code = ("from berth.daemon import config\ncfg = config.Config(stream_server_address='')\n"
            "try:\n    print(config.stream_server_host(cfg))\nexcept OSError as e:\n    print('error:', e)\n")
    p = subprocess.run(["unshare", "--net", os.path.join(REPO, ".venv", "bin", "python"), "-c", code],
                       capture_output=True, text=True, timeout=30)
    assert p.stdout.strip() == 'error: no default routes found in "/proc/net/route" or "/proc/net/ipv6_route"', p


def test_a_node_without_a_cni_config(tmp_path):
    """No conflist in the conf dir: the NetworkReady condition and `crictl info`'s load status in
    containerd 1.6's words (checked side by side; a kubelet shows the condition in the node's
    status), a pod refused with nothing made (containerd answers UNKNOWN `failed to setup network
    for sandbox "<id>": cni plugin not initialized` and keeps a sandbox it cannot remove); a
    conflist written later is used at once."""
    net = tmp_path / "net"
    os.makedirs(net)
    d = Daemon(tmp_path / "d", extra_config=f'cri_cni_conf_dir = "{net}"\n')
    d.start()
    try:
        d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
        c = CRIClient(d.cri_sock)
        st = c.Status(verbose=True)
        cond = {x.type: x for x in st.status.conditions}["NetworkReady"]
        assert (cond.status, cond.reason, cond.message) == (
            False, "NetworkPluginNotReady", "Network plugin returns error: cni plugin not initialized")
        load = (f"cni config load failed: no network config found in {net}: cni plugin not initialized: "
                "failed to load cni config")
        assert json.loads(st.info["lastCNILoadStatus"]) == json.loads(st.info["lastCNILoadStatus.default"]) == load
        assert [n["IFName"] for n in json.loads(st.info["cniconfig"])["Networks"]] == ["lo"]
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="nocni", namespace="t", uid="u-nocni"))
        with pytest.raises(grpc.RpcError) as e:
            c.RunPodSandbox(config=cfg)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value
        assert not c.ListPodSandbox().items
        with open(net / "10-x.conflist", "w") as f:
            f.write("[1, 2]")  # not a conflist: skipped, as an unreadable file is
        assert not {x.type: x for x in c.Status().status.conditions}["NetworkReady"].status
        lo_only_cni(net / "more")
        os.rename(net / "more" / "10-lo.conflist", net / "20-lo.conflist")
        st = c.Status(verbose=True)
        assert {x.type: x for x in st.status.conditions}["NetworkReady"].status
        assert json.loads(st.info["lastCNILoadStatus"]) == "OK"
        lo = json.loads(st.info["cniconfig"])["Networks"][1]["Config"]
        assert lo["Name"] == "lo-only" and lo["Plugins"] == [
            {"Network": {"type": "loopback", "ipam": {}, "dns": {}}, "Source": '{"type":"loopback"}'}]
        c.close()
    finally:
        d.cleanup()


def test_the_cri_log_driver_is_the_cris_only(node):
    """The Docker API answers `--log-driver cri` as dockerd 20.10 answers any driver it does not
    have (the same words, checked with dockerd); CRI containers still log in the kubelet's format
    (test_pod_and_container_lifecycle)."""
    node.d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)  # docker's namespace
    for client in (node.d.docker, node.d.berth):
        p = client("run", "--rm", "--log-driver", "cri", "busybox-layers:1", "true")
        assert p.returncode == 125, p.err
        assert 'error looking up logging plugin cri: plugin "cri" not found' in p.err  # docker: "Error response ..."
    assert "busybox-layers" not in node.d.berth("ps", "-a").out


def test_a_user_id_past_the_signed_range_is_refused(node, cri):
    """runc refuses ids above 2^31-1 and containerd's CreateContainer fails for one (its mount
    callback: `no users found`); berth refuses it there, nothing made (4294967295, (uid_t)-1,
    ran the process as root before)."""
    import grpc
    sid, sbx = _pod(cri, node, "bigid")
    sc = pb.LinuxContainerSecurityContext(run_as_user=pb.Int64Value(value=3000000000))
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="big"), image=pb.ImageSpec(image="busybox-layers:1"),
                             command=["id", "-u"], linux=pb.LinuxContainerConfig(security_context=sc))
    with pytest.raises(grpc.RpcError) as e:
        cri.CreateContainer(pod_sandbox_id=sid, config=cfg, sandbox_config=sbx)
    assert "run_as_user 3000000000 is not a valid id (0 to 2147483647)" in e.value.details(), e.value.details()
    assert not cri.ListContainers().containers
    cri.StopPodSandbox(pod_sandbox_id=sid)
    cri.RemovePodSandbox(pod_sandbox_id=sid)
