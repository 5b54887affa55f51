#!/usr/bin/env python3
"""CRI streaming figures: berthd's streaming server against containerd 1.6's (its CRI plugin,
private root/state/socket), both driven by the same crictl v1.26.1 (../shared/bin/crictl).

Each engine runs one pod (its network from a ptp CNI conflist of the bench's own)
with one busybox container serving a 32 MiB file with httpd on port 18080. Interleaved rounds
(the order alternates each round, one warm-up round dropped), medians:

1. `crictl exec C true`: the whole path (Exec RPC, the URL, SPDY upgrade and streams, the exec
   in the container, the exit status);
2. `crictl exec C head -c 16777216 /dev/zero`: 16 MiB through the stdout stream;
   `crictl exec -i C wc -c` fed 16 MiB: the same through the stdin stream (and the shim's
   non-blocking stdin);
3. one `crictl port-forward POD L:18080` per engine for the whole run: a GET of the 32 MiB file
   from the host through the forwarded port (a new connection, i.e. new SPDY streams, each time);
4. berth only: where an exec's time goes (the Exec RPC, the upgrade, the streams, the command),
   with a gRPC client and the SPDY client of tests/test_cri_streaming.py.

containerd needs `restrict_oom_score_adj = true` on this machine (its sandbox's -998 is refused).
Everything is removed at the end (pods, daemons, their dirs).

Usage (root): bench/cri_stream.py [--runs 15]
Prints JSON and Markdown table rows for docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
from daemon_fixtures import (DATA, Daemon, free_port, host_dirs_containerd_makes, missing_cgroup_parents,  # noqa: E402
                             remove_made, unmount_under, wait_for)

CRICTL = os.path.join(REPO, "..", "shared", "bin", "crictl")
IMAGE = "busybox-layers:1"
BIG = 32 << 20
OUT_BYTES = 16 << 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Containerd:
    def __init__(self, base, cni_dir):
        self.base = base
        self.sock = os.path.join(base, "c.sock")
        os.makedirs(base, exist_ok=True)
        cfg = os.path.join(base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n[grpc]\n  address = "{self.sock}"\n'
                    f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base}/opt"\n'
                    f'[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n'
                    f'  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n  stream_server_address = "127.0.0.1"\n'
                    f'  stream_server_port = "0"\n  [plugins."io.containerd.grpc.v1.cri".cni]\n'
                    f'    bin_dir = "/usr/lib/cni"\n    conf_dir = "{cni_dir}"\n')
        self.made = host_dirs_containerd_makes("k8s.io")  # under /run/containerd: removed at close
        self.log = open(os.path.join(base, "containerd.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: os.path.exists(self.sock), 30, "containerd to listen")
        self.endpoint = "unix://" + self.sock

    def ctr(self, *args):
        subprocess.run(["ctr", "-a", self.sock, "-n", "k8s.io", *args], check=True, capture_output=True)

    def load(self):
        self.ctr("images", "import", os.path.join(DATA, "pause.oci.tar"))
        self.ctr("images", "import", "--all-platforms", os.path.join(DATA, "busybox-layers.oci.tar"))
        self.ctr("images", "tag", IMAGE, "docker.io/library/" + IMAGE)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        remove_made(self.made)


class Berthd:
    def __init__(self, base, cni_dir):
        self.d = Daemon(base, extra_config=f'cri_cni_conf_dir = "{cni_dir}"\n').start()
        self.endpoint = "unix://" + self.d.cri_sock

    def load(self):
        for f in ("pause.oci.tar", "busybox-layers.docker.tar"):
            self.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, f), check=True)

    def close(self):
        self.d.cleanup()


class Engine:
    def __init__(self, name, daemon, work):
        self.name = name
        self.daemon = daemon
        self.work = os.path.join(work, name + "-crictl")
        os.makedirs(self.work, exist_ok=True)
        self.argv = [CRICTL, "-r", daemon.endpoint, "-i", daemon.endpoint, "--timeout", "60s"]
        self.pod = self.ctr = self.pf = None

    def crictl(self, *args, timeout=120):
        p = subprocess.run(self.argv + list(args), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"{self.name}: crictl {' '.join(args)}: {p.stderr.decode(errors='replace')}")
        return p.stdout.decode().strip()

    def setup(self):
        pod = os.path.join(self.work, "pod.json")
        ctr = os.path.join(self.work, "ctr.json")
        with open(pod, "w") as f:
            json.dump({"metadata": {"name": "bench", "namespace": "default", "uid": "bench-" + self.name},
                       "log_directory": os.path.join(self.work, "logs")}, f)
        with open(ctr, "w") as f:
            json.dump({"metadata": {"name": "web"}, "image": {"image": IMAGE}, "log_path": "web.log",
                       "command": ["sh", "-c", f"mkdir -p /www && head -c {BIG} /dev/zero > /www/big && "
                                               "exec httpd -f -p 18080 -h /www"]}, f)
        self.pod = self.crictl("runp", pod)
        self.ctr = self.crictl("create", self.pod, ctr, pod)
        self.crictl("start", self.ctr)

        def serving():  # crictl port-forward gives up at the first refused connection: wait for httpd
            p = subprocess.run(self.argv + ["exec", self.ctr, "wget", "-q", "-O", "/dev/null",
                                            "http://127.0.0.1:18080/big"], capture_output=True)
            return p.returncode == 0
        wait_for(serving, 60, f"{self.name}: httpd in the pod")
        self.port = free_port()
        self.pf_log = open(os.path.join(self.work, "pf.log"), "wb")  # noqa: SIM115
        self.pf = subprocess.Popen(self.argv + ["port-forward", self.pod, f"{self.port}:18080"], stdout=self.pf_log,
                                   stderr=self.pf_log, stdin=subprocess.DEVNULL)
        wait_for(lambda: self._get() == BIG, 30, f"{self.name}: the file through the forwarded port")

    def _get(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/big", timeout=60) as r:
                n = 0
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        return n
                    n += len(chunk)
        except OSError:
            return -1

    def exec_true(self):
        t = time.perf_counter()
        self.crictl("exec", self.ctr, "true")
        return time.perf_counter() - t

    def exec_output(self):
        t = time.perf_counter()
        p = subprocess.run(self.argv + ["exec", self.ctr, "head", "-c", str(OUT_BYTES), "/dev/zero"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        dt = time.perf_counter() - t
        if p.returncode != 0 or len(p.stdout) != OUT_BYTES:
            raise RuntimeError(f"{self.name}: exec output: rc {p.returncode}, {len(p.stdout)} bytes")
        return dt

    def exec_input(self):
        t = time.perf_counter()
        p = subprocess.run(self.argv + ["exec", "-i", self.ctr, "wc", "-c"], input=b"\0" * OUT_BYTES,
                           capture_output=True)
        dt = time.perf_counter() - t
        if p.returncode != 0 or p.stdout.strip() != str(OUT_BYTES).encode():
            raise RuntimeError(f"{self.name}: exec input: rc {p.returncode}, {p.stdout!r}")
        return dt

    def forward(self):
        t = time.perf_counter()
        n = self._get()
        dt = time.perf_counter() - t
        if n != BIG:
            raise RuntimeError(f"{self.name}: port-forward GET gave {n} bytes")
        return dt

    def teardown(self):
        if self.pf is not None:
            self.pf.terminate()
            self.pf.wait(10)
            self.pf_log.close()
        if self.pod:
            subprocess.run(self.argv + ["stopp", self.pod], capture_output=True)
            subprocess.run(self.argv + ["rmp", "-f", self.pod], capture_output=True)


def breakdown(engine, runs):
    """Where the time of an exec goes in berth (medians, ms): the Exec RPC, the HTTP upgrade, the
    three SPDY streams, the command (`true`) from the last stream to the exit status (shim and
    runtime), against the whole `crictl exec` (the rest is crictl's own start and gRPC set-up)."""
    import grpc

    from berth.cri import api_pb2 as pb
    from berth.cri import api_pb2_grpc as rpc
    from test_cri_streaming import SpdyClient
    stub = rpc.RuntimeServiceStub(grpc.insecure_channel(engine.daemon.endpoint))
    ts = {"rpc": [], "upgrade": [], "streams": [], "command": [], "total": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        url = stub.Exec(pb.ExecRequest(container_id=engine.ctr, cmd=["true"], stdout=True, stderr=True)).url
        t1 = time.perf_counter()
        c = SpdyClient(url)
        t2 = time.perf_counter()
        for kind in ("error", "stdout", "stderr"):
            c.open(streamtype=kind)
        c.wait(lambda: len(c.replied) == 3)
        t3 = time.perf_counter()
        c.run_to_end()
        t4 = time.perf_counter()
        assert c.data[1] == b'{"metadata":{},"status":"Success"}'
        for k, v in (("rpc", t1 - t0), ("upgrade", t2 - t1), ("streams", t3 - t2), ("command", t4 - t3),
                     ("total", t4 - t0)):
            ts[k].append(v)
    return {k: round(statistics.median(v) * 1000, 1) for k, v in ts.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    if not (os.path.exists(CRICTL) and shutil.which("containerd")):
        sys.exit("needs ../shared/bin/crictl and containerd")
    work = tempfile.mkdtemp(prefix="berth-bench-cri-")
    cni = os.path.join(work, "cni")
    os.makedirs(cni)
    import random
    with open(os.path.join(cni, "10-bench.conflist"), "w") as f:  # ptp: a veth per pod, gone with the pod
        json.dump({"cniVersion": "0.4.0", "name": f"bench{random.getrandbits(20):05x}", "plugins": [
            {"type": "ptp", "ipMasq": False, "ipam": {
                "type": "host-local", "dataDir": os.path.join(work, "ipam"),
                "ranges": [[{"subnet": f"172.30.{random.randint(0, 255)}.0/24"}]]}}]}, f)
    daemons, engines = [], []
    made = missing_cgroup_parents("k8s.io")  # the pods' parent both engines make: removed at the end
    try:
        for name, cls in (("berth", Berthd), ("containerd", Containerd)):
            d = cls(os.path.join(work, name), cni)
            daemons.append(d)
            d.load()
            e = Engine(name, d, work)
            engines.append(e)
            e.setup()
        results = {e.name: {"exec_true": [], "exec_16MiB": [], "exec_stdin_16MiB": [], "portforward_32MiB": []}
                   for e in engines}
        for r in range(a.runs + 1):
            order = engines if r % 2 == 0 else engines[::-1]
            for e in order:
                sample = {"exec_true": e.exec_true(), "exec_16MiB": e.exec_output(),
                          "exec_stdin_16MiB": e.exec_input(), "portforward_32MiB": e.forward()}
                if r > 0:  # round 0 warms up
                    for k, v in sample.items():
                        results[e.name][k].append(v)
            log(f"round {r}/{a.runs}")
        med = {n: {k: statistics.median(v) for k, v in m.items()} for n, m in results.items()}
        out = {"runs": a.runs, "medians_s": med, "berth_exec_breakdown_ms": breakdown(engines[0], a.runs),
               "load": open("/proc/loadavg").read().split()[:3]}
        print(json.dumps(out, indent=2))
        b, c = med["berth"], med["containerd"]
        print(f"| `crictl exec C true` | {b['exec_true'] * 1000:.0f} ms | {c['exec_true'] * 1000:.0f} ms | "
              f"{b['exec_true'] / c['exec_true']:.2f}x |")
        for k, size in (("exec_16MiB", 16), ("exec_stdin_16MiB", 16), ("portforward_32MiB", 32)):
            print(f"| {k} | {size / b[k]:.0f} MiB/s | {size / c[k]:.0f} MiB/s | {b[k] / c[k]:.2f}x (time) |")
    finally:
        for e in engines:
            try:
                e.teardown()
            except Exception as ex:  # noqa: BLE001 - keep cleaning up
                log("teardown:", ex)
        for d in daemons:
            d.close()
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
        remove_made(made)


if __name__ == "__main__":
    main()
