#!/usr/bin/env python3
"""Time pull + unpack of a ~200 MB image from a registry on 127.0.0.1: berth (private berthd)
against `podman pull` and containerd's `ctr images pull` (both unpack), when installed.

The image (a debootstrap minbase bookworm rootfs, one gzip layer made by `berth import`) is
built once and kept in a registry storage dir under bench/out/. Each run starts cold: the
tool's images are removed and its content store garbage-collected (checked: the blobs and
snapshots are gone), then `sync; echo 3 > /proc/sys/vm/drop_caches`. Interleaved rounds (the
order rotates each round), one warm-up round dropped, the median of each tool reported.
Usage (root): bench/pull.py [--runs N] [--tools berth,podman,ctr] [--berthd LABEL=LAUNCHER ...]
--berthd (repeatable) runs one private berthd per launcher instead of $BERTHD or .venv's, each
timed as its own tool: e.g. a launcher whose sys.path also has isal, or an older checkout.
Prints JSON and a Markdown table row for docs/benchmarks.md.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engines


def machine():
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / (1 << 20)
    return f"{os.cpu_count()} CPU, {mem:.0f} GB, kernel {os.uname().release}"


def gzip_reader(launcher):
    """Which gzip reader berthd's ImageService picks (isal, zlib-ng, or zlib: the stdlib's)."""
    with open(launcher) as f:
        text = f.read()
    interp = text.splitlines()[0][2:].split()
    setup = text.split("from berth")[0].split("\n", 1)[1]
    code = setup + ("try:\n    from berth.images.stream import gzip_reader as _gzip_reader\nexcept ImportError:\n    print('zlib')\n"
                    "else:\n    r = _gzip_reader()\n    print(r[2] if len(r) > 2 else r[0].__name__)\n")
    p = engines.run(interp + ["-c", code], check=False)
    return p.stdout.decode().strip() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tools", default="berth,podman,ctr")
    ap.add_argument("--berthd", action="append", default=[], metavar="LABEL=LAUNCHER")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/pull.py needs root (private daemons, drop_caches)")
    source, tar_size = engines.build_image()
    berthds = dict(b.split("=", 1) for b in args.berthd) or {"berth": engines.BERTHD}
    e = engines.Engines(berthds=berthds)
    try:
        ref = e.ref
        tools = {}
        want = args.tools.split(",")
        if "berth" in want:
            for label, d in e.berthds.items():
                tools[label] = ([engines.BERTH, "-H", d.host, "pull", ref], d.env(), lambda d=d: e.berth_clear(d))
        if "podman" in want and e.podman:
            tools["podman"] = (e.podman.cmd + ["pull", "--tls-verify=false", ref], e.podman.env, e.podman.clear)
        if "ctr" in want and e.containerd:
            tools["ctr"] = (e.containerd.cmd("images", "pull", "--plain-http", ref), None, e.containerd.clear)
        names = list(tools)
        times = {k: [] for k in names}
        load = [engines.load_average()]
        for i in range(args.runs + args.warmup):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                cmd, env, clear = tools[name]
                engines.drop_caches()
                dt = engines.timed(cmd, env)
                clear()
                if i >= args.warmup:
                    times[name].append(dt)
                engines.log(f"round {i}{' (warm-up)' if i < args.warmup else ''}: {name} {dt:.2f} s")
        load.append(engines.load_average())
        med = {k: statistics.median(v) for k, v in times.items()}
        peers = [k for k in ("podman", "ctr") if k in med]
        fastest = min(peers, key=med.get) if peers else None
        mine = [k for k in names if k in berthds]
        result = {"image": ref, "rootfs": source, "uncompressed_tar_bytes": tar_size, "runs": args.runs,
                  "berthd": {k: {"launcher": berthds[k], "gzip_reader": gzip_reader(berthds[k])} for k in mine},
                  "median_s": med, "loadavg_start_end": load,
                  "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()}}
        if fastest:
            result["ratio_to_fastest_peer"] = {k: med[k] / med[fastest] for k in mine}
        print(json.dumps(result, indent=2))
        for k in mine:
            peer_cols = " | ".join(f"{med[p]:.2f} s" for p in peers)
            ratio = f" | {med[k] / med[fastest]:.2f}x ({fastest})" if fastest else ""
            print(f"| {time.strftime('%Y-%m-%d')} | {machine()} | {args.runs} | {k} "
                  f"({result['berthd'][k]['gzip_reader']}) | {med[k]:.2f} s | {peer_cols}{ratio} |")
    finally:
        e.close()


if __name__ == "__main__":
    main()
