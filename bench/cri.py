#!/usr/bin/env python3
"""CRI figures of issue 10: berthd's CRI against containerd 1.6's CRI plugin, both private (own
root, state, sockets, a CNI conflist of their own on a bridge of their own), both holding
registry.k8s.io/pause:3.9 and busybox-layers:1 from tests/data.

1. Pod start: `crictl runp` + `crictl create` + `crictl start` of one busybox container
   (`sleep 600`), and the teardown (`stop`, `rm`, `stopp`, `rmp`): interleaved rounds (the order
   rotates each round), two warm-up rounds dropped, medians. crictl's own start-up is in both;
   each command's median, and `crictl version`'s in the same rounds: crictl's own part of a
   command, so 3x and 4x of it are the least time any engine could show (the floor).
   `grpc`: the same cycle through the gRPC API on a kept connection (the engines' own time), with
   each call's median. `floor`: the crictl cycle against bench/cri_floor.py too, a CRI server
   that answers every call at once (grpcio, berthd's settings), in the same rounds: crictl's own
   time and a grpcio server's, the least an engine served by grpcio could show; and what each
   engine adds to it (its median minus the floor's).
2. `--pods N` (default 30) pods of 2 containers each, started through the gRPC API from 5
   client threads: the time until all run, berthd's VmRSS afterwards, and the memory of what runs
   per pod besides the containers' own processes (berth: a berth-shim per container and per
   sandbox; containerd: its containerd-shim-runc-v2 per pod), Pss from smaps_rollup.

   `split` (with `start,floor`): each crictl step of the cycle split by berthd's and the floor's
   own call times (berthd's BERTH_CRI_TIMES, bench/cri_floor.py's TIMES): crictl's start-up to
   its first call, the handlers, the answers' sending, the gaps between calls, and crictl's exit
   after the last answer; medians per step, berth and the floor side by side. What berth adds
   to a step is either its handlers' time or crictl slowed by what berth runs beside it.
3. `--only cpu`: the CPU time of each crictl step of the same cycle (runp, create, start,
   stop+rm, stopp+rmp), by what spent it: crictl itself, the engine's daemon with everything it
   starts (berthd, its zygote, shims and CNI plugins; containerd, its shims, runc and the
   plugins: a cpuacct cgroup each, the daemon moved into it), and the pods' containers (their
   cgroup parent, a cpuacct cgroup of the bench's). Cycles interleaved, means per cycle. On a
   node of two cores this is what the steps' times are made of besides waiting.

Usage (root): bench/cri.py [--runs 15] [--pods 30] [--only start,floor,split,grpc,many,cpu]
Prints JSON and Markdown table rows for docs/benchmarks.md.
"""

import argparse
import bisect
import concurrent.futures
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
from cri_client import CRIClient  # noqa: E402
from daemon_fixtures import (DATA, Daemon, host_dirs_containerd_makes, missing_cgroup_parents, missing_dirs,  # noqa: E402
                             remove_made, unmount_under, wait_for)
from engines import descendants  # noqa: E402  (bench/, the script's own directory)

from berth.cri import api_pb2 as pb  # noqa: E402

CRICTL = next((p for p in (os.path.join(REPO, "..", "shared", "bin", "crictl"), shutil.which("crictl") or "")
               if p and os.access(p, os.X_OK)), None)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def conflist(path, name, bridge, subnet, ipam_dir):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": name, "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": ipam_dir}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}, f)


class Berth:
    name = "berth"

    def __init__(self, base):
        self.bridge = "bb%05x" % random.getrandbits(20)
        cni = os.path.join(base, "cni")
        conflist(os.path.join(cni, "10-pods.conflist"), "pods", self.bridge, "10.241.0.0/16", os.path.join(base, "ipam"))
        self.d = Daemon(os.path.join(base, "berthd"), extra_config=f'cri_cni_conf_dir = "{cni}"\n')
        try:
            self.d.start()
            wait_for(lambda: os.path.exists(self.d.cri_sock), 30, "berthd's CRI socket")
            self.sock = self.d.cri_sock
            for a in ("pause.oci.tar", "busybox-layers.oci.tar"):
                self.d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, a), check=True)
        except BaseException:
            self.close()  # a berthd that did not come up (or a load that failed) leaves nothing running
            raise
        self.image = "busybox-layers:1"

    def daemon_pid(self):
        return self.d.proc.pid

    def monitors(self):
        """pids of what runs per container/pod besides the containers: berth-shims."""
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "berth-shim"
                and self.d.base in _cmdline(p)]

    def close(self):
        self.d.cleanup()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class Floor:
    """bench/cri_floor.py on a socket of its own: a CRI server that does nothing."""
    name = "floor"

    def __init__(self, base, times=None):
        self.sock = os.path.join(base, "floor.sock")
        self.log = open(os.path.join(base, "floor.log"), "ab")
        self.times = times
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "cri_floor.py"), self.sock,
                                      *([times] if times else [])],
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.sock), 30, "the floor server's socket")
        self.image = "busybox-layers:1"

    def close(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


class Containerd:
    name = "containerd"

    def __init__(self, base):
        self.base = os.path.join(base, "containerd")
        os.makedirs(self.base)
        self.bridge = "bc%05x" % random.getrandbits(20)
        cni = os.path.join(self.base, "cni")
        conflist(os.path.join(cni, "10-pods.conflist"), "pods", self.bridge, "10.242.0.0/16",
                 os.path.join(self.base, "ipam"))
        self.sock = os.path.join(self.base, "c.sock")
        cfg = os.path.join(self.base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    f'[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n'
                    f'  stream_server_port = "0"\n  restrict_oom_score_adj = true\n'
                    f'  [plugins."io.containerd.grpc.v1.cri".cni]\n    bin_dir = "/usr/lib/cni"\n'
                    f'    conf_dir = "{cni}"\n')
        # under /run/containerd, and /run/netns for its pods' namespaces: removed at close
        self.made = host_dirs_containerd_makes("k8s.io") + missing_dirs(["/run/netns"])
        self.log = open(os.path.join(self.base, "log"), "ab")
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: os.path.exists(self.sock), 30, "containerd's socket")
        for a in ("pause.oci.tar", "busybox-layers.oci.tar"):
            subprocess.run(["ctr", "-a", self.sock, "-n", "k8s.io", "images", "import", os.path.join(DATA, a)],
                           check=True, capture_output=True)
        subprocess.run(["ctr", "-a", self.sock, "-n", "k8s.io", "images", "tag", "busybox-layers:1",
                        "docker.io/library/busybox-layers:1"], check=True, capture_output=True)
        self.image = "docker.io/library/busybox-layers:1"

    def daemon_pid(self):
        return self.proc.pid

    def monitors(self):
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(p).startswith("containerd-shim")
                and self.sock in _cmdline(p)]

    def close(self):
        c = CRIClient(self.sock)
        for s in c.ListPodSandbox().items:
            c.StopPodSandbox(pod_sandbox_id=s.id)
            c.RemovePodSandbox(pod_sandbox_id=s.id)
        c.close()
        self.proc.terminate()
        self.proc.wait(30)
        unmount_under(self.base)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        remove_made(self.made)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rollup(pid, key):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def crictl(engine, *args):
    p = subprocess.run([CRICTL, "--runtime-endpoint", "unix://" + engine.sock, "--image-endpoint",
                        "unix://" + engine.sock, "--timeout", "60s", *args], capture_output=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"{engine.name}: crictl {' '.join(args)}: {p.stderr.decode(errors='replace')}")
    return p.stdout.decode().strip()


def pod_cycle(engine, work, i):
    pod = os.path.join(work, f"{engine.name}-pod-{i}.json")
    ctr = os.path.join(work, f"{engine.name}-ctr-{i}.json")
    with open(pod, "w") as f:
        json.dump({"metadata": {"name": f"b{i}", "namespace": "bench", "uid": f"u{i}", "attempt": 0},
                   "log_directory": os.path.join(work, "logs", engine.name, str(i)), "linux": {}}, f)
    with open(ctr, "w") as f:
        json.dump({"metadata": {"name": "c"}, "image": {"image": engine.image}, "command": ["sleep", "600"],
                   "log_path": "c.log", "linux": {}}, f)
    steps = {}
    t0 = time.monotonic()
    sid = _timed(steps, "runp", crictl, engine, "runp", pod)
    cid = _timed(steps, "create", crictl, engine, "create", sid, ctr, pod)
    _timed(steps, "start", crictl, engine, "start", cid)
    t1 = time.monotonic()
    for verb, ref in (("stop", cid), ("rm", cid), ("stopp", sid), ("rmp", sid)):
        _timed(steps, verb, crictl, engine, verb, ref)
    t2 = time.monotonic()
    # crictl's own part of every command: the same program with a trivial request (`version`:
    # the connection, its Version check, one more Version), in the same rounds
    _timed(steps, "version", crictl, engine, "version")
    _keep(engine, i, steps)
    return t1 - t0, t2 - t1


def _timed(steps, name, fn, *args, **kw):
    """fn(*args, **kw), its time in steps[name] (and its start, for split)."""
    t = time.monotonic()
    r = fn(*args, **kw)
    steps[name] = time.monotonic() - t
    steps.setdefault("at", {})[name] = t
    return r


def _keep(engine, i, steps):
    at = steps.pop("at", {})
    if i >= 2:  # the warm-up rounds are dropped
        for k, v in steps.items():
            engine.steps.setdefault(k, []).append(v)
            if getattr(engine, "spans", None) is not None:
                engine.spans.append((k, at[k], at[k] + v))


def split(engine):
    """{step: {part: median ms}} of engine's crictl steps (engine.spans) by the server's call
    times (engine.times, lines "name start end sent"): first (crictl's start-up to its first
    call), handlers, answers (handler's end to the answer sent), gaps (between calls), exit
    (last answer sent to crictl's end)."""
    with open(engine.times) as f:
        calls = sorted((float(a), float(b), float(c)) for _, a, b, c in (line.split() for line in f))
    starts = [c[0] for c in calls]
    parts = {}
    for name, t0, t1 in engine.spans:
        inside = calls[bisect.bisect_left(starts, t0):bisect.bisect_right(starts, t1)]
        if not inside:
            continue
        d = parts.setdefault(name, {k: [] for k in ("total", "first", "handlers", "answers", "gaps", "exit")})
        d["total"].append(t1 - t0)
        d["first"].append(inside[0][0] - t0)
        d["handlers"].append(sum(b - a for a, b, _ in inside))
        d["answers"].append(sum(c - b for _, b, c in inside))
        d["gaps"].append(sum(inside[j][0] - inside[j - 1][2] for j in range(1, len(inside))))
        d["exit"].append(t1 - inside[-1][2])
    return {name: {k: statistics.median(v) * 1000 for k, v in d.items()} for name, d in parts.items()}


def pod_cycle_grpc(engine, work, i):
    """The same cycle through the gRPC API on a kept connection: the engines' own time."""
    c = engine.client
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=f"g{i}", namespace="bench", uid=f"g{i}"),
                              log_directory=os.path.join(work, "glogs", engine.name, str(i)))
    cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=engine.image),
                            command=["sleep", "600"], log_path="c.log")
    steps = {}
    t0 = time.monotonic()
    sid = _timed(steps, "RunPodSandbox", c.RunPodSandbox, config=cfg).pod_sandbox_id
    cid = _timed(steps, "CreateContainer", c.CreateContainer, pod_sandbox_id=sid, config=cc, sandbox_config=cfg).container_id
    _timed(steps, "StartContainer", c.StartContainer, container_id=cid)
    t1 = time.monotonic()
    _timed(steps, "StopContainer", c.StopContainer, container_id=cid, timeout=0)
    _timed(steps, "RemoveContainer", c.RemoveContainer, container_id=cid)
    _timed(steps, "StopPodSandbox", c.StopPodSandbox, pod_sandbox_id=sid)
    _timed(steps, "RemovePodSandbox", c.RemovePodSandbox, pod_sandbox_id=sid)
    t2 = time.monotonic()
    _keep(engine, i, steps)
    return t1 - t0, t2 - t1


def bench_start(engines, runs, work, cycle=pod_cycle):
    times = {e.name: {"start": [], "teardown": []} for e in engines}
    for e in engines:
        e.client = CRIClient(e.sock)
        e.steps = {}
    for r in range(runs + 2):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        for e in order:
            s, t = cycle(e, work, r)
            if r >= 2:
                times[e.name]["start"].append(s)
                times[e.name]["teardown"].append(t)
        log(f"round {r}: " + ", ".join(f"{n} {v['start'][-1]*1000:.0f}/{v['teardown'][-1]*1000:.0f} ms"
                                       for n, v in times.items() if v["start"]))
    out = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}
    for e in engines:
        if e.steps:  # the gRPC cycle's: each call's median
            out[e.name]["calls"] = {k: statistics.median(v) for k, v in e.steps.items()}
    return out


CPUACCT = "/sys/fs/cgroup/cpuacct"


def _cg_usage_ms(path):
    with open(os.path.join(path, "cpuacct.usage")) as f:
        return int(f.read()) / 1e6


def bench_cpu(engines, runs, work):
    """CPU per crictl step (ms per cycle): crictl, the daemon's cgroup, the containers' cgroup."""
    if not os.path.exists(os.path.join(CPUACCT, "cpuacct.usage")):
        raise SystemExit("--only cpu needs the cgroup v1 cpuacct hierarchy at " + CPUACCT)
    groups = {}
    try:
        for e in engines:
            tag = f"bench-cri-{e.name}-{os.getpid()}"
            d, c = os.path.join(CPUACCT, tag + "-daemon"), os.path.join(CPUACCT, tag + "-pods")
            os.makedirs(d)
            os.makedirs(c)
            groups[e.name] = (d, c, "/" + tag + "-pods")
            for p in [e.daemon_pid(), *descendants(e.daemon_pid())]:  # berthd's zygote is there already
                try:
                    with open(os.path.join(d, "cgroup.procs"), "w") as f:
                        f.write(str(p))
                except OSError:
                    pass
        steps = ("runp", "create", "start", "stop+rm", "stopp+rmp")
        acc = {e.name: {s: {"wall": 0.0, "crictl": 0.0, "daemon": 0.0, "containers": 0.0} for s in steps}
               for e in engines}
        for r in range(runs + 2):
            order = engines[r % len(engines):] + engines[:r % len(engines)]
            for e in order:
                d, c, parent = groups[e.name]
                pod = os.path.join(work, f"{e.name}-cpod-{r}.json")
                ctr = os.path.join(work, f"{e.name}-cctr-{r}.json")
                with open(pod, "w") as f:
                    json.dump({"metadata": {"name": f"c{r}", "namespace": "bench", "uid": f"c{r}", "attempt": 0},
                               "log_directory": os.path.join(work, "clogs", e.name, str(r)),
                               "linux": {"cgroup_parent": parent}}, f)
                with open(ctr, "w") as f:
                    json.dump({"metadata": {"name": "c"}, "image": {"image": e.image}, "command": ["sleep", "600"],
                               "log_path": "c.log", "linux": {}}, f)
                ids = {}

                def step(name, *cmds):
                    t0, o0, d0, c0 = time.monotonic(), os.times(), _cg_usage_ms(d), _cg_usage_ms(c)
                    out = [crictl(e, *[ids.get(x, x) for x in cmd]) for cmd in cmds]
                    t1, o1, d1, c1 = time.monotonic(), os.times(), _cg_usage_ms(d), _cg_usage_ms(c)
                    if r >= 2:
                        a = acc[e.name][name]
                        a["wall"] += (t1 - t0) * 1000
                        a["crictl"] += (o1.children_user + o1.children_system
                                        - o0.children_user - o0.children_system) * 1000
                        a["daemon"] += d1 - d0
                        a["containers"] += c1 - c0
                    return out[-1]
                ids["SID"] = step("runp", ("runp", pod))
                ids["CID"] = step("create", ("create", "SID", ctr, pod))
                step("start", ("start", "CID"))
                step("stop+rm", ("stop", "CID"), ("rm", "CID"))
                step("stopp+rmp", ("stopp", "SID"), ("rmp", "SID"))
                time.sleep(0.2)  # what a step leaves under way ends before the next cycle
            log(f"cpu round {r}")
        return {n: {s: {k: v / runs for k, v in a.items()} for s, a in per.items()} for n, per in acc.items()}
    finally:
        for e in engines:  # the daemons back where the bench is
            if e.name in groups:
                with open("/proc/self/cgroup") as f:
                    own = next((l.split(":", 2)[2].strip() for l in f if ":cpuacct" in l), "/")
                for p in [e.daemon_pid(), *descendants(e.daemon_pid())]:
                    try:
                        with open(os.path.join(CPUACCT + own.rstrip("/"), "cgroup.procs"), "w") as f:
                            f.write(str(p))
                    except OSError:
                        pass
        for d, c, parent in groups.values():
            for g in (c, d):
                for _ in range(50):
                    try:
                        os.rmdir(g)
                        break
                    except OSError:
                        time.sleep(0.1)
            # the pods' cgroup parent, which the engines made in every other hierarchy too
            for h in os.listdir("/sys/fs/cgroup"):
                top = os.path.join("/sys/fs/cgroup", h) + parent
                for root, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])) if os.path.isdir(top) else ():
                    try:
                        os.rmdir(root)
                    except OSError:
                        pass


def bench_many(engine, pods, work):
    c = CRIClient(engine.sock)

    def one(i):
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=f"m{i}", namespace="bench", uid=f"m{i}"),
                                  log_directory=os.path.join(work, "mlogs", engine.name, str(i)))
        sid = c.RunPodSandbox(config=cfg).pod_sandbox_id
        for n in ("a", "b"):
            cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=n), image=pb.ImageSpec(image=engine.image),
                                    command=["sleep", "600"], log_path=f"{n}.log")
            cid = c.CreateContainer(pod_sandbox_id=sid, config=cc, sandbox_config=cfg).container_id
            c.StartContainer(container_id=cid)
        return sid
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        sids = list(ex.map(one, range(pods)))
    elapsed = time.monotonic() - t0
    running = [x for x in c.ListContainers().containers if x.state == pb.CONTAINER_RUNNING]
    assert len(running) == 2 * pods, (engine.name, len(running))
    time.sleep(2)
    mons = engine.monitors()
    pss = sum(_rollup(p, "Pss") for p in mons)
    out = {"seconds": elapsed, "daemon_rss_kib": _rollup(engine.daemon_pid(), "Rss"),
           "monitors": len(mons), "monitor_pss_kib_per_pod": pss / pods}
    for sid in sids:
        c.StopPodSandbox(pod_sandbox_id=sid)
        c.RemovePodSandbox(pod_sandbox_id=sid)
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--only", default="start,grpc,many", help="start,floor,grpc,many,cpu")
    a = ap.parse_args()
    if CRICTL is None:
        sys.exit("crictl not found (../shared/bin/crictl or PATH)")
    work = tempfile.mkdtemp(prefix="bench-cri-")
    engines = []
    result = {}
    made = missing_cgroup_parents("k8s.io")  # the pods' parent both engines make: removed at the end
    try:
        only = a.only.split(",")
        splitting = "split" in only and "floor" in only and "start" in only
        if splitting:  # berthd appends its calls' times there (berth/cri/errors.py)
            os.environ["BERTH_CRI_TIMES"] = os.path.join(work, "berth-times")
        engines = [Berth(work), Containerd(work)]
        os.environ.pop("BERTH_CRI_TIMES", None)
        if splitting:
            engines[0].times = os.path.join(work, "berth-times")
        if "start" in only:
            floor = [Floor(work, os.path.join(work, "floor-times") if splitting else None)] if "floor" in only else []
            engines += floor
            for e in engines:
                e.spans = [] if splitting and e.name in ("berth", "floor") else None
            result["start"] = bench_start(engines, a.runs, work)
            if splitting:
                result["split"] = {e.name: split(e) for e in engines if e.spans is not None}
            for f in floor:
                engines.remove(f)
                f.close()
        if "grpc" in only:
            result["grpc"] = bench_start(engines, a.runs, work, pod_cycle_grpc)
        if "many" in only:
            result["many"] = {e.name: bench_many(e, a.pods, work) for e in engines}
        if "cpu" in only:
            result["cpu"] = bench_cpu(engines, a.runs, work)
    finally:
        for e in engines:
            try:
                e.close()
            except Exception as ex:  # noqa: BLE001
                log(f"closing {e.name}: {ex}")
        shutil.rmtree(work, ignore_errors=True)
        remove_made(made)
    print(json.dumps(result, indent=2))
    for key, how in (("start", "crictl"), ("grpc", "gRPC")):
        if key not in result:
            continue
        b, c = result[key]["berth"], result[key]["containerd"]
        print(f"| pod start (runp+create+start), {how} | {b['start']*1000:.0f} ms | {c['start']*1000:.0f} ms | "
              f"{b['start']/c['start']:.2f}x |")
        print(f"| pod teardown (stop+rm+stopp+rmp), {how} | {b['teardown']*1000:.0f} ms | "
              f"{c['teardown']*1000:.0f} ms | {b['teardown']/c['teardown']:.2f}x |")
    if "start" in result:
        b, c = result["start"]["berth"]["calls"], result["start"]["containerd"]["calls"]
        for k in b:
            print(f"| crictl {k} | {b[k]*1000:.0f} ms | {c[k]*1000:.0f} ms | {b[k]/c[k]:.2f}x |")
        # the least either engine could show: crictl's own time alone, 3 and 4 commands
        for key, n in (("start", 3), ("teardown", 4)):
            floor = n * statistics.median([b["version"], c["version"]])
            print(f"| crictl alone, {n} x `version` (the floor of the {key}) | {floor*1000:.0f} ms | "
                  f"containerd's {key}: {result['start']['containerd'][key]*1000:.0f} ms | "
                  f"{floor/result['start']['containerd'][key]:.2f}x at best |")
        if "floor" in result["start"]:
            f = result["start"]["floor"]
            for key in ("start", "teardown"):
                print(f"| the {key} against a CRI server that answers at once (the floor, grpcio) | "
                      f"{f[key]*1000:.0f} ms | containerd's {key}: {result['start']['containerd'][key]*1000:.0f} ms | "
                      f"{f[key]/result['start']['containerd'][key]:.2f}x at best |")
            print("| the floor's steps | " + ", ".join(f"{k} {v*1000:.0f}" for k, v in f["calls"].items()) + " ms | | |")
            # each engine's own part: less noisy than the ratio, which moves with containerd's
            # own time and the machine's speed between runs
            for key in ("start", "teardown"):
                own_b = result["start"]["berth"][key] - f[key]
                own_c = result["start"]["containerd"][key] - f[key]
                print(f"| the {key} above the floor (each engine's own part) | {own_b*1000:.0f} ms | "
                      f"{own_c*1000:.0f} ms | {own_b/own_c:.2f}x |")
    if "split" in result:
        b, f = result["split"]["berth"], result["split"]["floor"]
        parts = ("total", "first", "handlers", "answers", "gaps", "exit")
        print("| step | " + " | ".join(parts) + " |")
        for name in b:
            print(f"| {name} | " + " | ".join(f"{b[name][k]:.1f} ({b[name][k] - f[name][k]:+.1f})" for k in parts) + " |")
        print("(berth's medians in ms, in brackets what they are above the floor's)")
    if "grpc" in result:
        b, c = result["grpc"]["berth"]["calls"], result["grpc"]["containerd"]["calls"]
        for k in b:
            print(f"| {k} | {b[k]*1000:.0f} ms | {c[k]*1000:.0f} ms | {b[k]/c[k]:.2f}x |")
    if "cpu" in result:
        print("| step | engine | wall | crictl | daemon and what it starts | containers |")
        for stepname in result["cpu"]["berth"]:
            for n in ("berth", "containerd"):
                v = result["cpu"][n][stepname]
                print(f"| {stepname} | {n} | {v['wall']:.0f} ms | {v['crictl']:.1f} ms | {v['daemon']:.1f} ms | "
                      f"{v['containers']:.1f} ms |")
    if "many" in result:
        b, c = result["many"]["berth"], result["many"]["containerd"]
        print(f"| {a.pods} pods x 2 containers, all running | {b['seconds']:.1f} s | {c['seconds']:.1f} s | "
              f"{b['seconds']/c['seconds']:.2f}x |")
        print(f"| daemon RSS after | {b['daemon_rss_kib']/1024:.0f} MiB | {c['daemon_rss_kib']/1024:.0f} MiB | |")
        print(f"| per-pod monitors' Pss | {b['monitor_pss_kib_per_pod']/1024:.2f} MiB ({b['monitors']} shims) | "
              f"{c['monitor_pss_kib_per_pod']/1024:.2f} MiB ({c['monitors']} shims) | "
              f"{b['monitor_pss_kib_per_pod']/c['monitor_pss_kib_per_pod']:.2f}x |")


if __name__ == "__main__":
    main()
