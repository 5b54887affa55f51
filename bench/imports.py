#!/usr/bin/env python3
"""Import cost of berth's entry points, this tree against another revision of it.

Each tree is exported (`git archive`) to a temporary directory and byte-compiled, as pip installs
it; then, interleaved (old, new, old, ...), a fresh interpreter times the import of one set of
modules, after importing the set before it. Medians and minimums of the wall time in ms.
Usage: bench/imports.py [--base REV] [--runs N]
Prints a Markdown table for docs/benchmarks.md.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (label, modules imported before the timed ones, timed modules)
CASES = [
    ("CLI start (cli.main + client.api)", "", "berth.cli.main, berth.client.api"),
    ("`berth cp`'s tar code, after the CLI", "berth.cli.main, berth.client.api", "{cp}"),
    ("runtime (container, cgroups, rootfs)", "", "berth.runtime.container, berth.runtime.cgroups, berth.runtime.rootfs"),
]


def export(rev, dest):
    os.makedirs(dest)
    if rev is None:  # the working tree as it is
        shutil.copytree(os.path.join(REPO, "berth"), os.path.join(dest, "berth"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "-C", REPO, "archive", rev, "berth"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(dest, "berth")], check=True,
                   stdout=subprocess.DEVNULL)


def cp_module(tree):
    return "berth.archive.tar" if os.path.exists(os.path.join(tree, "berth", "archive", "tar.py")) \
        else "berth.services.archive"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="HEAD~1", help="the revision to compare with (default HEAD~1)")
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="berth-imports-")
    try:
        trees = {"old": os.path.join(tmp, "old"), "new": os.path.join(tmp, "new")}
        export(args.base, trees["old"])
        export(None, trees["new"])
        print(f"| imports (base {args.base}) | old median | new median | old min | new min |")
        print("|---|---|---|---|---|")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        for label, before, timed in CASES:
            res = {"old": [], "new": []}
            for _ in range(args.runs):
                for k, tree in trees.items():
                    mods = timed.format(cp=cp_module(tree))
                    code = (f"import time\n{'import ' + before if before else ''}\n"
                            f"t = time.perf_counter()\nimport {mods}\nprint(time.perf_counter() - t)")
                    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tree, env=env,
                                         capture_output=True, text=True, check=True).stdout
                    res[k].append(float(out) * 1000)
            o, n = res["old"], res["new"]
            print(f"| {label} | {statistics.median(o):.2f} ms | {statistics.median(n):.2f} ms | "
                  f"{min(o):.2f} ms | {min(n):.2f} ms |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
