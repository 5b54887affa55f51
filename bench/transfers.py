#!/usr/bin/env python3
"""Pull and push of a many-layer image through a registry that is slow to answer each blob
request (a remote registry's round trips), berthd against dockerd 20.10, both private and given
the same daemon.json: how much the layers at once (max-concurrent-downloads 3, -uploads 5,
dockerd's defaults) are worth. A new image each round.

Debian's docker-registry on 127.0.0.1 behind tests/transfer_proxy.py, which holds each blob
download and each upload request --hold seconds (default 0.2) before passing it on. The image:
--layers (8) layers of --size (1 MiB) random bytes each, gzip. Each round, for each engine (the
order alternates): `docker pull`, then `docker push` to a repository the layers are not in yet. One warm-up round dropped, medians.
Usage (root): bench/transfers.py [--runs N] [--hold S] [--layers N] [--size BYTES]
[--berthd LABEL=LAUNCHER ...]: one private berthd per launcher (an older checkout's, say),
each timed as an engine of its own (default: $BERTHD or .venv's, as "berthd").
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import daemon_fixtures  # noqa: E402
from daemon_fixtures import Daemon, Registry  # noqa: E402
from peer_dockerd import Dockerd  # noqa: E402
from test_registry_flow import Img, make_tar, push_image  # noqa: E402
from transfer_proxy import TransferProxy  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hold", type=float, default=0.2)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--berthd", action="append", default=[], metavar="LABEL=LAUNCHER")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/transfers.py needs root (private daemons)")
    base = tempfile.mkdtemp(prefix="bench-tr-")
    made, regs = [], []
    try:
        for name in ("from", "to"):
            r = Registry(os.path.join(base, name)).start()
            made.append(r)
            regs.append(TransferProxy(r.addr, hold=args.hold))
        src, dst = regs
        dj = os.path.join(base, "daemon.json")
        with open(dj, "w") as f:
            json.dump({}, f)
        engines = {}
        for label, launcher in (dict(b.split("=", 1) for b in args.berthd) or {"berthd": daemon_fixtures.BERTHD}).items():
            daemon_fixtures.BERTHD = launcher
            engines[label] = Daemon(os.path.join(base, label), f'daemon_json = "{dj}"\ncri = false\n').start()
        dk = Dockerd(tempfile.mkdtemp(prefix="dk-"))
        engines["dockerd"] = dk
        times = {k: {"pull": [], "push": []} for k in engines}
        try:
            for rnd in range(args.runs + 1):
                # a new image each round (layers no engine has, nor has pushed anywhere: dockerd
                # remembers where it pushed a layer and mounts it from there the next time)
                img = Img([(make_tar([(f"f{i}", os.urandom(args.size))]), "gzip") for i in range(args.layers)])
                ref = f"{src.addr}/many:r{rnd}"
                push_image(made[0].addr, "many", f"r{rnd}", img)
                order = list(engines) if rnd % 2 == 0 else list(reversed(engines))
                for name in order:
                    e = engines[name]
                    t = time.monotonic()
                    e.docker("pull", ref, check=True)
                    pulled = time.monotonic() - t
                    to = f"{dst.addr}/p{os.urandom(4).hex()}:v1"
                    e.docker("tag", ref, to, check=True)
                    t = time.monotonic()
                    e.docker("push", to, check=True)
                    pushed = time.monotonic() - t
                    e.docker("rmi", ref, to, check=True)
                    if rnd:  # (the first round warms up)
                        times[name]["pull"].append(pulled)
                        times[name]["push"].append(pushed)
        finally:
            for e in engines.values():
                if e is not dk:
                    e.cleanup()
            dk.stop()
            shutil.rmtree(dk.base, ignore_errors=True)
        med = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in times.items()}
        print(json.dumps({"runs": args.runs, "hold": args.hold, "layers": args.layers, "size": args.size,
                          "medians": med, "all": times}, indent=1))
        print(f"| {time.strftime('%Y-%m-%d')} | {args.layers} x {args.size >> 10} KiB, {args.hold} s a blob request | "
              + " | ".join(f"{k}: pull {v['pull']:.2f} s, push {v['push']:.2f} s" for k, v in med.items()) + " |")
    finally:
        for p in regs:
            p.close()
        for r in made:
            r.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
