#!/usr/bin/env python3
"""Build figures of issue 12: `berth build` against dockerd's classic builder (Debian's docker.io,
DOCKER_BUILDKIT=0) and `buildah bud --layers` (Debian), each private to a temp work dir, all
holding busybox-layers:1 (tests/data/busybox-layers.docker.tar).

The Dockerfile (12 steps, two stages): FROM the fixture, ENV, WORKDIR, COPY a directory of 20
source files, RUN, COPY a file, RUN; FROM the fixture, WORKDIR, COPY --from the first stage,
ENV, CMD. Every RUN uses --network none on all three engines (dockerd runs with --bridge=none).

1. cold: `build --no-cache` (buildah: `bud --layers --no-cache`);
2. cached: the same build again, every step from the cache;
3. changed: one source file is changed before each build (the COPY of the sources and all
   that follows are rebuilt, the steps before come from the cache).

Interleaved rounds (the engines' order rotates each round), one warm-up round dropped, medians.
buildah runs with its own --root/--runroot, --cgroup-manager cgroupfs and --runtime runc (crun
refuses this machine's hybrid cgroups).

Usage (root): bench/build.py [--runs 5] [--no-docker] [--no-buildah]
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engines  # noqa: E402
from engines import BERTH, Daemon, load_average, log, run, timed  # noqa: E402

IMAGE = "busybox-layers:1"
ARCHIVE = os.path.join(engines.DATA, "busybox-layers.docker.tar")

DOCKERFILE = f"""FROM {IMAGE} AS build
ENV APP=/app
WORKDIR /app
COPY src/ ./src/
RUN cat src/* > all.txt && mkdir -p out && cp all.txt out/
COPY main.txt ./
RUN wc -l all.txt main.txt > out/count
FROM {IMAGE}
WORKDIR /srv
COPY --from=build /app/out ./
ENV MODE=prod
CMD ["cat", "/srv/count"]
"""


def make_context(path):
    os.makedirs(os.path.join(path, "src"))
    for i in range(20):
        with open(os.path.join(path, "src", f"f{i:02d}.txt"), "w") as f:
            f.write(f"source file {i}\n" * 50)
    with open(os.path.join(path, "main.txt"), "w") as f:
        f.write("main\n")
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)


class Buildah:
    def __init__(self, base):
        self.base = base
        self.cmd = ["buildah", "--root", os.path.join(base, "root"), "--runroot", os.path.join(base, "run"),
                    "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"]
        run(self.cmd + ["pull", "-q", "docker-archive:" + ARCHIVE])

    def build(self, ctx, nocache):
        return self.cmd + ["bud", "--runtime", "runc", "--layers", "--network", "none", "-q", "-t", "bench:1"] + \
            (["--no-cache"] if nocache else []) + [ctx]

    def close(self):
        run(self.cmd + ["rm", "--all"], check=False)
        run(self.cmd + ["rmi", "--all", "--force"], check=False)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(self.base)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--no-buildah", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/build.py needs root (private daemons)")
    work = tempfile.mkdtemp(prefix="berth-bench-build-")
    d = dk = bh = None
    try:
        engines_ = {}
        d = Daemon(os.path.join(work, "berthd")).start()
        d.berth("load", "-i", ARCHIVE, check=True)
        engines_["berth"] = lambda ctx, nocache: ([BERTH, "-H", d.host, "build", "-q", "--network", "none", "-t",
                                                   "bench:1"] + (["--no-cache"] if nocache else []) + [ctx], d.env())
        if not args.no_docker and shutil.which("dockerd"):
            from run import Docker
            dk = Docker(os.path.join(work, "docker"))
            dk("load", "-i", ARCHIVE)
            denv = dict(dk.env, DOCKER_BUILDKIT="0")
            engines_["docker"] = lambda ctx, nocache: (dk.cmd + ["build", "-q", "--network", "none", "-t", "bench:1"] +
                                                       (["--no-cache"] if nocache else []) + [ctx], denv)
        if not args.no_buildah and shutil.which("buildah"):
            bh = Buildah(os.path.join(work, "buildah"))
            engines_["buildah"] = lambda ctx, nocache: (bh.build(ctx, nocache), None)
        contexts = {}
        for name in engines_:
            contexts[name] = os.path.join(work, "ctx-" + name)
            make_context(contexts[name])
            cmd, env = engines_[name](contexts[name], False)
            timed(cmd, env)  # warm: every engine has the image and a cache
        names = list(engines_)
        results = {s: {n: [] for n in names} for s in ("cold", "cached", "changed")}
        counter = 0
        for i in range(args.runs + args.warmup):
            order = names[i % len(names):] + names[:i % len(names)]
            for scenario in ("cold", "cached", "changed"):
                for name in order:
                    ctx = contexts[name]
                    if scenario == "changed":
                        counter += 1
                        with open(os.path.join(ctx, "src", "f07.txt"), "a") as f:
                            f.write(f"change {counter}\n")
                    cmd, env = engines_[name](ctx, scenario == "cold")
                    dt = timed(cmd, env)
                    if i >= args.warmup:
                        results[scenario][name].append(dt)
            log(f"round {i + 1}/{args.runs + args.warmup} done (load {load_average()})")
        med = {s: {n: statistics.median(v) for n, v in r.items()} for s, r in results.items()}
        out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": args.runs,
               "load": load_average(), "cpus": os.cpu_count(), "medians_s": med, "all_s": results}
        print(json.dumps(out, indent=1))
        for s in ("cold", "cached", "changed"):
            peers = {n: v for n, v in med[s].items() if n != "berth"}
            best = min(peers.values()) if peers else None
            cells = " | ".join(f"{med[s].get(n, float('nan')):.2f} s" for n in ("berth", "docker", "buildah"))
            ratio = f"{med[s]['berth'] / best:.2f}x" if best else "-"
            print(f"| {s} | {cells} | {ratio} |")
    finally:
        if d is not None:
            d.cleanup()
        if dk is not None:
            dk.close()
        if bh is not None:
            bh.close()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(work)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
