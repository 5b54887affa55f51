#!/usr/bin/env python3
"""Time `berth images` / `berth info` (private berthd) against `podman images` / `podman info`
(private --root/--runroot), both holding the same images: the fixtures of tests/data and the
~200 MB minbase image of bench/pull.py (pulled from a registry on 127.0.0.1).

Warm caches (no drop_caches): what a user typing the command sees. Interleaved rounds (the
order rotates each round), two warm-up rounds dropped, the median of each command reported.
Usage (root): bench/list_info.py [--runs N]
Prints JSON and Markdown table rows for docs/benchmarks.md.
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/list_info.py needs root (private daemons)")
    engines.build_image()
    e = engines.Engines(containerd=False)
    try:
        if e.podman is None:
            sys.exit("podman is not installed")
        fixtures = sorted(glob.glob(os.path.join(engines.DATA, "*.tar")))
        for path in fixtures:
            e.berth("load", "-i", path)
            e.podman("load", "-i", path)
        e.berth("pull", e.ref)
        e.podman("pull", "--tls-verify=false", e.ref)
        counts = {"berth": len(e.berth("images", "-q").stdout.split()),
                  "podman": len(e.podman("images", "-q").stdout.split())}
        berth = [engines.BERTH, "-H", e.berthd.host]
        cmds = {"berth images": (berth + ["images"], e.berthd.env()),
                "podman images": (e.podman.cmd + ["images"], e.podman.env),
                "berth info": (berth + ["info"], e.berthd.env()),
                "podman info": (e.podman.cmd + ["info"], e.podman.env)}
        names = list(cmds)
        times = {k: [] for k in names}
        load = [engines.load_average()]
        for i in range(args.runs + args.warmup):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                cmd, env = cmds[name]
                dt = engines.timed(cmd, env)
                if i >= args.warmup:
                    times[name].append(dt)
        load.append(engines.load_average())
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        ratio = {"images": med["berth images"] / med["podman images"],
                 "info": med["berth info"] / med["podman info"]}
        print(json.dumps({"runs": args.runs, "images_listed": counts, "fixtures": [os.path.basename(p) for p in fixtures],
                          "median_ms": med, "ratio_berth_to_podman": ratio, "loadavg_start_end": load,
                          "all_ms": {k: [round(x * 1000, 1) for x in v] for k, v in times.items()}}, indent=2))
        day = time.strftime("%Y-%m-%d")
        for what in ("images", "info"):
            print(f"| {day} | {args.runs} | `{what}` | {med['berth ' + what]:.0f} ms | "
                  f"{med['podman ' + what]:.0f} ms | {ratio[what]:.2f}x |")
    finally:
        e.close()


if __name__ == "__main__":
    main()
