#!/usr/bin/env python3
"""Time `berth-runc run` of a trivial container against `runc run` on the same bundle.

Interleaved runs (berth-runc, runc, berth-runc, ...), the median wall time of each.
Usage: bench/runtime_run.py [--runs N] [--berth-runc PATH] [--runc PATH]
Prints a Markdown table row set for docs/benchmarks.md.
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
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))
from bundles import make_bundle  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--berth-runc", default=os.path.join(HERE, "..", ".venv", "bin", "berth-runc"))
    ap.add_argument("--runc", default=shutil.which("runc") or "runc")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="berth-bench-")
    try:
        bundle = make_bundle(os.path.join(work, "bundle"), ["true"])
        runtimes = {"berth-runc": [args.berth_runc, "--root", os.path.join(work, "berth-state")],
                    "runc": [args.runc, "--root", os.path.join(work, "runc-state")]}
        times = {k: [] for k in runtimes}
        for i in range(args.runs + 2):
            for name, cmd in runtimes.items():
                t = time.perf_counter()
                p = subprocess.run(cmd + ["run", "-b", bundle, f"bench-{i}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
                dt = time.perf_counter() - t
                if p.returncode != 0:
                    sys.exit(f"{name} failed: {p.stderr.decode()}")
                if i >= 2:  # the first two rounds warm caches
                    times[name].append(dt)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(json.dumps({"runs": args.runs, "median_ms": med, "ratio": med["berth-runc"] / med["runc"]}, indent=2))
        print(f"| berth-runc run (true) | {med['berth-runc']:.1f} ms |")
        print(f"| runc run (true) | {med['runc']:.1f} ms |")
        print(f"| ratio | {med['berth-runc'] / med['runc']:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
