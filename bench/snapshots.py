#!/usr/bin/env python3
"""The snapshotter's bookkeeping with many snapshots: `mounts()` (every container start) and
`prepare()` (every create) on a native snapshotter holding N active snapshots of one committed
parent, under /var/tmp; medians. Run it once per berth tree to compare builds:

    bench/snapshots.py [--count 300] [--tree PATH_OF_A_BERTH_CHECKOUT]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--tree", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    from berth.snapshots.native import NativeSnapshotter
    d = tempfile.mkdtemp(dir="/var/tmp", prefix="berth-bench-snap-")
    try:
        sn = NativeSnapshotter(os.path.join(d, "root"))
        sn.prepare("base")
        sn.commit("c0", "base")
        for i in range(args.count):
            sn.prepare(f"k{i}", "c0")
        mounts = []
        for i in range(50):
            t = time.perf_counter()
            sn.mounts(f"k{i % args.count}")
            mounts.append((time.perf_counter() - t) * 1000)
        prepares = []
        for i in range(20):
            t = time.perf_counter()
            sn.prepare(f"n{i}", "c0")
            prepares.append((time.perf_counter() - t) * 1000)
        print(f"| {os.path.abspath(args.tree)} | {args.count} snapshots | mounts {statistics.median(mounts):.3f} ms "
              f"| prepare {statistics.median(prepares):.2f} ms |")
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
