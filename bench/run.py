#!/usr/bin/env python3
"""Container run figures of issue 4: berth against podman (and Debian's docker.io engine when
`dockerd` is installed), each private to a temp work dir, all holding busybox-layers:1 loaded
from tests/data/busybox-layers.docker.tar.

1. `run --rm --network none busybox-layers:1 true`: interleaved rounds (the order rotates each
   round), two warm-up rounds dropped, medians.
2. `ps -a` with 20 exited containers (berth, podman, docker): same scheme.
3. N containers started concurrently (`run -d --network none busybox-layers:1 sleep 600` from
   C parallel clients): time until all run, berthd's VmRSS afterwards, the Pss/Rss of each
   berth-shim and, in the same kind of run with podman, of each conmon.
4. `--only mem` (the shim memory figure alone): rounds of N containers started as in 3, one
   engine at a time, the engines' order rotating each round (podman, then each berthd given by
   --berthd LABEL=LAUNCHER, default the installed one); per round the median Pss/Rss/private of
   the per-container monitors (berth-shim, conmon) from /proc/<pid>/smaps_rollup, 2 s after all
   run, and whether anything else per container is left (berth's short-lived helpers must be
   gone); the medians over the rounds. Everything is removed after each round.

podman runs with --cgroup-manager cgroupfs (bench/engines.py's containers.conf) and
--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 (needed on this machine). dockerd runs with
its own --data-root/--exec-root/socket, --iptables=false --bridge=none, and is stopped and its
dirs removed at the end. Every container is removed at the end.

Usage (root): bench/run.py [--runs 15] [--ps-runs 20] [--count 100] [--clients 10] [--no-docker] [--ctr]
              [--only run,ps,many,mem] [--mem-rounds 3] [--berthd LABEL=LAUNCHER ...]
Prints JSON and Markdown table rows for docs/benchmarks.md.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engines
from engines import BERTH, Daemon, Podman, descendants, log, run, timed, wait_for
from daemon_fixtures import host_dirs_dockerd_makes, remove_made  # noqa: E402 (tests/ is on the path: engines put it there)

IMAGE = "busybox-layers:1"
ARCHIVE = os.path.join(engines.DATA, "busybox-layers.docker.tar")
PODMAN_EXTRA = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


class Docker:
    """dockerd (Debian's docker.io) with its own data root, exec root and socket; it starts its
    own containerd under the exec root."""

    #: the network flags: no bridge (bench/net.py's DockerBridge has one)
    NETWORK_ARGS = ["--bridge=none"]

    def __init__(self, base):
        self.base = base
        self.made = host_dirs_dockerd_makes()  # whatever its exec root: removed on close if it made them
        os.makedirs(base, exist_ok=True)
        self.sock = os.path.join(base, "docker.sock")
        self.data = os.path.join(base, "data")
        self.exec_root = os.path.join(base, "exec")
        self.log = open(os.path.join(base, "dockerd.log"), "w")  # noqa: SIM115 (open while dockerd runs)
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", self.data, "--exec-root", self.exec_root, "-H", "unix://" + self.sock,
             "--pidfile", os.path.join(base, "docker.pid"), "--iptables=false", "--ip6tables=false",
             *self.NETWORK_ARGS, "--config-file", self._config()],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.env = dict(os.environ, DOCKER_CONFIG=os.path.join(base, "cli"))
        self.env.pop("DOCKER_HOST", None)
        self.cmd = ["docker", "-H", "unix://" + self.sock]
        wait_for(lambda: self.proc.poll() is not None or (os.path.exists(self.sock) and
                 self("version", check=False).returncode == 0), 60, "dockerd to listen")
        if self.proc.poll() is not None:
            with open(os.path.join(base, "dockerd.log")) as f:
                raise RuntimeError("dockerd exited: " + f.read()[-2000:])

    def _config(self):
        path = os.path.join(self.base, "daemon.json")
        with open(path, "w") as f:
            json.dump({}, f)
        return path

    def __call__(self, *args, check=True, timeout=900):
        return run(self.cmd + list(args), check=check, timeout=timeout, env=self.env)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        remove_made(self.made)


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return None


def smaps_rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def procs_named(comm, marker):
    """pids whose comm is ``comm`` and whose command line mentions ``marker`` (our work dir),
    so that engines of other sessions on the machine are left out."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(p))
    return found


def mem_of(pids):
    rows = []
    for p in pids:
        try:
            r = smaps_rollup(p)
            rows.append({"pid": p, "rss_kb": r.get("Rss"), "pss_kb": r.get("Pss"),
                         "private_kb": (r.get("Private_Clean", 0) + r.get("Private_Dirty", 0))})
        except OSError:
            pass
    if not rows:
        return {"count": 0}
    med = {k: statistics.median(r[k] for r in rows) for k in ("rss_kb", "pss_kb", "private_kb")}
    return {"count": len(rows), "median": med,
            "sum_pss_kb": sum(r["pss_kb"] for r in rows), "sum_rss_kb": sum(r["rss_kb"] for r in rows),
            "min_max_pss_kb": [min(r["pss_kb"] for r in rows), max(r["pss_kb"] for r in rows)]}


def start_many(c, x, e, count, clients):
    """`count` containers started by `clients` parallel clients; returns (seconds until all the
    CLIs returned, seconds until `ps -q` lists them all)."""
    per = count // clients

    def client(i):
        # explicit names: berth's generated names can collide among 100 (docker retries; berth
        # reports "already in use")
        for j in range(per):
            run(c + ["run", "-d", "--name", f"bench-{i}-{j}", "--network", "none", *x, IMAGE, "sleep", "600"],
                env=e, timeout=600)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    t_cli = time.perf_counter() - t0
    total = per * clients
    wait_for(lambda: len(run(c + ["ps", "-q"], env=e).stdout.split()) >= total, 300, f"{total} containers running")
    return t_cli, time.perf_counter() - t0


def remove_all(c, e, podman=False):
    ids = run(c + ["ps", "-aq"], env=e).stdout.decode().split()
    if ids:
        run(c + ["rm", "-f", "-t", "0", *ids] if podman else c + ["rm", "-f", *ids], env=e, timeout=900)


def shim_memory(work, d_by_label, pm, args):
    """Rounds of args.count containers per engine, order rotating; per-container monitor memory."""
    engines_ = [("podman", None)] + [(label, d) for label, d in d_by_label.items()]
    rounds = {name: [] for name, _ in engines_}
    for i in range(args.mem_rounds):
        order = engines_[i % len(engines_):] + engines_[:i % len(engines_)]
        for name, d in order:
            if d is None:
                c, x, e = pm.cmd, PODMAN_EXTRA, pm.env
            else:
                c, x, e = [BERTH, "-H", d.host], [], d.env()
            t_cli, t_all = start_many(c, x, e, args.count, args.clients)
            time.sleep(2)
            if d is None:
                mons = procs_named("conmon", work)
                others = []
            else:
                mons = procs_named("berth-shim", d.base)
                # anything else of berth's per container: children of the shims that are not the
                # containers' inits (the set-up helpers must have exited)
                mine = set(mons)
                inits = set()
                for p in mons:
                    inits.update(q for q in descendants(p))
                others = [p for p in inits if comm(p) not in ("sleep",) and _ppid(p) in mine]
            m = mem_of(mons)
            r = {"round": i, "all_running_s": round(t_all, 2), "monitors": m["count"],
                 "median_pss_kb": m["median"]["pss_kb"], "median_rss_kb": m["median"]["rss_kb"],
                 "median_private_kb": m["median"]["private_kb"], "sum_pss_kb": m["sum_pss_kb"],
                 "other_per_container_processes": len(others), "loadavg": engines.load_average()}
            if d is not None:
                z = [p for p in descendants(d.proc.pid) if comm(p) == "berth-zygote"]
                r["zygote_pss_kb"] = smaps_rollup(z[0]).get("Pss") if z else None
                r["berthd_pss_kb"] = smaps_rollup(d.proc.pid).get("Pss")
            rounds[name].append(r)
            log(name, "mem:", json.dumps(r))
            remove_all(c, e, podman=d is None)
    out = {}
    for name, rs in rounds.items():
        out[name] = {k: statistics.median(r[k] for r in rs)
                     for k in ("median_pss_kb", "median_rss_kb", "median_private_kb", "all_running_s")}
        out[name]["rounds"] = rs
    return out


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def interleaved(cmds, runs, warmup):
    names = list(cmds)
    times = {k: [] for k in names}
    for i in range(runs + warmup):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            cmd, env = cmds[name]
            dt = timed(cmd() if callable(cmd) else cmd, env)
            if i >= warmup:
                times[name].append(dt)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ps-runs", type=int, default=20)
    ap.add_argument("--ps-containers", type=int, default=20)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--ctr", action="store_true",
                    help="with run: also containerd's `ctr run --rm` (a private containerd, CRI off)")
    ap.add_argument("--only", default="run,ps,many")
    ap.add_argument("--mem-rounds", type=int, default=3)
    ap.add_argument("--berthd", action="append", default=[], metavar="LABEL=LAUNCHER",
                    help="with --only mem: a berthd build to measure (repeatable; default the installed one)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root (private daemons)")
    work = tempfile.mkdtemp(prefix="berth-bench-run-")
    d = pm = dk = ctr = None
    extra = {}
    result = {"loadavg": [engines.load_average()], "work": work}
    try:
        import daemon_fixtures
        default_launcher = daemon_fixtures.BERTHD
        for i, spec in enumerate(args.berthd):
            label, launcher = spec.split("=", 1)
            daemon_fixtures.BERTHD = launcher  # read by Daemon.start
            extra[label] = Daemon(os.path.join(work, f"b{i}")).start()
            extra[label].berth("load", "-i", ARCHIVE, check=True)
        daemon_fixtures.BERTHD = default_launcher
        d = Daemon(os.path.join(work, "berthd")).start()
        d.berth("load", "-i", ARCHIVE, check=True)
        pm = Podman(os.path.join(work, "podman"))
        pm("load", "-i", ARCHIVE)
        if not args.no_docker and shutil.which("dockerd"):
            dk = Docker(os.path.join(work, "docker"))
            dk("load", "-i", ARCHIVE)
        berth = [BERTH, "-H", d.host]
        benv = d.env()
        engines_ = {"berth": (berth, [], benv), "podman": (pm.cmd, PODMAN_EXTRA, pm.env)}
        if "run" in parts and extra:  # `run` also times each --berthd build
            engines_.update({label: ([BERTH, "-H", dd.host], [], dd.env()) for label, dd in extra.items()})
        if dk:
            engines_["docker"] = (dk.cmd, [], dk.env)
        result["versions"] = {"podman": pm("--version").stdout.decode().strip()}
        if dk:
            result["versions"]["docker"] = dk("version", "--format", "{{.Server.Version}}").stdout.decode().strip()

        if "run" in parts:
            cmds = {n: (c + ["run", "--rm", "--network", "none", *x, IMAGE, "true"], e) for n, (c, x, e) in engines_.items()}
            if args.ctr and shutil.which("containerd") and shutil.which("ctr"):
                ctr = engines.Containerd(os.path.join(work, "containerd"))
                ctr("images", "import", ARCHIVE)
                seq = iter(range(10**6))
                # no --net-host: a new network namespace with a loopback only (berth's --network none)
                cmds["ctr"] = (lambda: ctr.cmd("run", "--rm", "docker.io/library/" + IMAGE, f"b{next(seq)}", "true"),
                               None)
                result["versions"]["containerd"] = ctr("version").stdout.decode().split("Server:")[-1].split()[1]
            t = interleaved(cmds, args.runs, args.warmup)
            result["run_rm_true"] = {"runs": args.runs, "median_ms": {k: statistics.median(v) * 1000 for k, v in t.items()},
                                     "all_ms": {k: [round(x * 1000, 1) for x in v] for k, v in t.items()}}
            result["loadavg"].append(engines.load_average())
            log("run:", json.dumps(result["run_rm_true"]["median_ms"]))

        if "ps" in parts:
            for c, x, e in engines_.values():
                for _ in range(args.ps_containers):
                    run(c + ["run", "--network", "none", *x, IMAGE, "true"], env=e)
            counts = {n: len(run(c + ["ps", "-aq"], env=e).stdout.split()) for n, (c, x, e) in engines_.items()}
            cmds = {n: (c + ["ps", "-a"], e) for n, (c, x, e) in engines_.items()}
            t = interleaved(cmds, args.ps_runs, args.warmup)
            result["ps_a"] = {"runs": args.ps_runs, "containers": counts,
                              "median_ms": {k: statistics.median(v) * 1000 for k, v in t.items()},
                              "all_ms": {k: [round(x * 1000, 1) for x in v] for k, v in t.items()}}
            for c, _x, e in engines_.values():
                ids = run(c + ["ps", "-aq"], env=e).stdout.decode().split()
                if ids:
                    run(c + ["rm", "-f", *ids], env=e)
            result["loadavg"].append(engines.load_average())
            log("ps:", json.dumps(result["ps_a"]["median_ms"]))

        if "mem" in parts:
            result["mem"] = shim_memory(work, extra or {"berth": d}, pm, args)
            result["loadavg"].append(engines.load_average())

        if "many" in parts:
            result["many"] = {}
            for name in ("berth", "podman"):
                c, x, e = engines_[name]
                per = args.count // args.clients

                def client(_i, c=c, x=x, e=e, per=per):
                    for _ in range(per):
                        run(c + ["run", "-d", "--network", "none", *x, IMAGE, "sleep", "600"], env=e, timeout=600)

                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                    list(pool.map(client, range(args.clients)))
                t_cli = time.perf_counter() - t0
                total = per * args.clients
                # all running: `ps -q` lists running containers only
                wait_for(lambda c=c, e=e, total=total: len(run(c + ["ps", "-q"], env=e).stdout.split()) >= total, 300,
                         f"{name}: {total} containers running")
                t_all = time.perf_counter() - t0
                time.sleep(2)
                r = {"containers": total, "clients": args.clients, "cli_all_returned_s": t_cli, "all_running_s": t_all,
                     "loadavg": engines.load_average()}
                if name == "berth":
                    r["berthd_vmrss_kb"] = proc_status(d.proc.pid, "VmRSS")
                    r["berthd_pss_kb"] = smaps_rollup(d.proc.pid).get("Pss")
                    shims = procs_named("berth-shim", work)
                    if not shims:  # shim command lines may not name the work dir: its daemon's descendants
                        shims = [p for p in descendants(d.proc.pid) if comm(p) == "berth-shim"]
                    r["shim"] = mem_of(shims)
                else:
                    r["conmon"] = mem_of(procs_named("conmon", work))
                result["many"][name] = r
                log(name, "many:", json.dumps(r))
                ids = run(c + ["ps", "-aq"], env=e).stdout.decode().split()
                if ids:
                    run(c + ["rm", "-f", "-t", "0", *ids] if name == "podman" else c + ["rm", "-f", *ids],
                        env=e, timeout=900)
            result["loadavg"].append(engines.load_average())

        print(json.dumps(result, indent=2))
    finally:
        if ctr is not None:
            ctr.close()
        for eng in (dk, pm):
            if eng is None:
                continue
            try:
                ids = run(eng.cmd + ["ps", "-aq"], env=eng.env, check=False).stdout.decode().split()
                if ids:
                    run(eng.cmd + ["rm", "-f", *ids], env=eng.env, check=False, timeout=900)
                eng.close()
            except Exception as ex:  # noqa: BLE001 (keep cleaning up)
                log("cleanup:", ex)
        for dd in [d, *extra.values()]:
            if dd is None:
                continue
            p = dd.berth("ps", "-aq")
            ids = p.out.split() if p.returncode == 0 else []
            if ids:
                dd.berth("rm", "-f", *ids, timeout=900)
            dd.cleanup()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(work)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
