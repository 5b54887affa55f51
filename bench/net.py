#!/usr/bin/env python3
"""Networking figures of issue 5: berth against podman (and Debian's docker.io engine when
`dockerd` is installed), each private to a temp work dir.

1. `run --rm busybox-layers:1 true` on each engine's DEFAULT bridge network (berth: no
   --network flag, its "bridge" network; podman: its default netavark network; docker: its
   default bridge), plus `berth run --rm --network none` in the same rounds to show what the
   networking costs. Interleaved rounds (the order rotates each round), warm-ups dropped,
   medians. Then, in a second private berthd whose CNI plugin dir holds timing wrappers around
   /usr/lib/cni's plugins, the time of each plugin's ADD and DEL (--plugin-runs containers).
2. TCP throughput, Python on both ends (busybox's nc has tiny buffers and measures itself): an
   image whose rootfs holds only the merged-/usr symlinks and empty dirs (`berth import` /
   `podman import` of the same tar), run with `-v /usr:/usr:ro` so the host's /usr/bin/python3
   runs inside. Server: recv_into a 1 MiB buffer until EOF, replies with the byte count.
   Client: sendall of 1 MiB buffers, --mib MiB in all; throughput = bytes / (connect to reply).
   host -> container: client on the host to 127.0.0.1:<published port>; container ->
   container: client in a second container (`run --rm`, same default network) to the server's
   IP. Interleaved, --tput-runs runs each, medians.
3. Leaks (--cycles N): N x `berth run --rm busybox-layers:1 true`, alternating the default
   bridge and a user network, every other pair with `-p 127.0.0.1:<port>:80`; counts of veths,
   netns files and nsfs mounts under the daemon's state dir, host-local IPAM allocations, CNI
   result cache files, iptables -A lines (filter and nat) before (after one warm-up run of each
   kind) and after, berthd's VmRSS and open fds.

dockerd runs with its own data/exec root and socket, WITH its bridge (--bip 10.199.0.1/24,
bridge docker0, deleted at the end) but --iptables=false --ip6tables=false --ip-forward=false so
it leaves the host's rules and sysctls alone. podman: bench/engines.py's containers.conf
(cgroupfs, private network config dir) and --ulimit nofile/nproc=1024 as in bench/run.py.
Traffic goes only to 127.0.0.1 and to containers this script created.

Usage (root): bench/net.py [--runs 15] [--tput-runs 5] [--mib 2048] [--cycles 1000]
              [--plugin-runs 10] [--no-docker] [--only run,plugins,tput,leaks]
Prints JSON (stdout) and Markdown rows for docs/benchmarks.md (stderr).
"""

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engines
from engines import BERTH, Daemon, Podman, log, run, wait_for
from run import ARCHIVE, IMAGE, PODMAN_EXTRA, Docker, interleaved

PYIMG = "netpy:1"
SERVER_PORT = 5001
DOCKER_BIP = "10.199.0.1/24"

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d)); s.listen(8)
buf = bytearray(1 << 20); mv = memoryview(buf)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        k = c.recv_into(mv)
        if not k:
            break
        n += k
    c.sendall(str(n).encode()); c.close()
""" % SERVER_PORT

CLIENT = r"""
import socket, sys, time, json
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = b"x" * (1 << 20)
c = socket.socket()
t = time.perf_counter()
c.connect((host, port))
for _ in range(mib):
    c.sendall(buf)
c.shutdown(socket.SHUT_WR)
got = b""
while True:
    k = c.recv(64)
    if not k:
        break
    got += k
dt = time.perf_counter() - t
n = int(got)
assert n == mib << 20, (n, mib)
print(json.dumps({"bytes": n, "s": dt, "gbit_s": n * 8 / dt / 1e9}))
"""

# --- helpers ---


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def links():
    return set(os.listdir("/sys/class/net"))


def veths(master=None):
    cmd = ["ip", "-o", "link", "show", "type", "veth"] + (["master", master] if master else [])
    p = run(cmd, check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in p.stdout.decode().splitlines() if line.strip()]


def iptables_lines(table):
    p = run(["iptables-save", "-t", table], check=False)
    return sorted(line for line in p.stdout.decode().splitlines() if line.startswith("-A "))


def chains(table):
    p = run(["iptables-save", "-t", table], check=False)
    return {line[1:].split()[0] for line in p.stdout.decode().splitlines() if line.startswith(":")}


def drop_chains(table, names):
    """Delete the jumps to ``names`` from every chain, then flush and delete them (podman's
    netavark leaves its NETAVARK* chains behind when its last container goes)."""
    import shlex
    for line in iptables_lines(table):
        words = shlex.split(line)
        if "-j" in words and words[words.index("-j") + 1] in names and words[1] not in names:
            run(["iptables", "-w", "-t", table, "-D", *words[1:]], check=False)
    for n in names:
        run(["iptables", "-w", "-t", table, "-F", n], check=False)
    for n in names:
        run(["iptables", "-w", "-t", table, "-X", n], check=False)


def count_files(path, skip=lambda n: False):
    n = 0
    for dirpath, _dirs, files in os.walk(path):
        n += sum(1 for f in files if not skip(f))
    return n


def nsfs_mounts(under):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(under) and " nsfs " in line]


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def make_pyimage_tar(path):
    """The merged-/usr symlinks and empty dirs: /usr comes from the host with -v /usr:/usr:ro."""
    with tarfile.open(path, "w") as tar:
        for d in ("usr", "tmp", "etc", "proc", "sys", "dev", "root", "run", "var"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, 0
            tar.addfile(ti)
        for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(ti)
        for name, data in (("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", b"root:x:0:\n")):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tar.addfile(ti, io.BytesIO(data))


class DockerBridge(Docker):
    """bench/run.py's Docker, but with its default bridge (docker0, --bip) and no iptables,
    ip-forward or userland-proxy changes to the host."""

    NETWORK_ARGS = ["--ip-forward=false", "--userland-proxy=false", "--bip", DOCKER_BIP]

    def __init__(self, base):
        self.had_docker0 = os.path.exists("/sys/class/net/docker0")
        if self.had_docker0:
            raise RuntimeError("a docker0 bridge already exists on this host: not starting a second dockerd on it")
        super().__init__(base)

    def close(self):
        super().close()
        if not self.had_docker0 and os.path.exists("/sys/class/net/docker0"):
            run(["ip", "link", "del", "docker0"], check=False)


# --- 1. run --rm on the default bridge ---

def fig_run(args, d, pm, dk, result):
    berth = [BERTH, "-H", d.host]
    cmds = {"berth": (berth + ["run", "--rm", IMAGE, "true"], d.env()),
            "berth --network none": (berth + ["run", "--rm", "--network", "none", IMAGE, "true"], d.env()),
            }
    if pm:
        cmds["podman"] = (pm.cmd + ["run", "--rm", *PODMAN_EXTRA, IMAGE, "true"], pm.env)
    if dk:
        cmds["docker"] = (dk.cmd + ["run", "--rm", IMAGE, "true"], dk.env)
    # each engine's default network, checked once (a container that lists its interfaces)
    nets = {}
    for name, (cmd, env) in cmds.items():
        p = run(cmd[:-1] + ["ip", "-o", "-4", "addr"], env=env, check=False)
        nets[name] = [ln.split()[1] + " " + ln.split()[3] for ln in p.stdout.decode().splitlines()]
    result["run_default_bridge"] = {"addresses_seen": nets}
    log("addresses:", json.dumps(nets))
    t = interleaved(cmds, args.runs, args.warmup)
    med = {k: statistics.median(v) * 1000 for k, v in t.items()}
    peers = [med[k] for k in ("podman", "docker") if k in med]
    result["run_default_bridge"].update({
        "runs": args.runs, "warmup": args.warmup, "median_ms": med,
        "all_ms": {k: [round(x * 1000, 1) for x in v] for k, v in t.items()},
        "ratio_to_faster_peer": med["berth"] / min(peers),
        "network_cost_ms": med["berth"] - med["berth --network none"]})
    result["loadavg"].append(engines.load_average())
    log("run:", json.dumps(med), "ratio %.2f" % result["run_default_bridge"]["ratio_to_faster_peer"])


# --- 1b. where the networking time goes: CNI plugins timed by wrappers ---

WRAPPER = """#!/bin/sh
s=$(date +%%s%%N)
%s "$@"
rc=$?
echo "%s ${CNI_COMMAND:-unset} $s $(date +%%s%%N) $rc" >> %s
exit $rc
"""


def fig_plugins(args, work, result):
    wrap = os.path.join(work, "cni-wrap")
    os.makedirs(wrap)
    tlog = os.path.join(work, "cni-times.log")
    for n in os.listdir("/usr/lib/cni"):
        p = os.path.join(wrap, n)
        with open(p, "w") as f:
            f.write(WRAPPER % (os.path.join("/usr/lib/cni", n), n, tlog))
        os.chmod(p, 0o755)
    # the cost of the wrapper itself (two `date` forks and a sh): measured on a no-op
    noop = os.path.join(work, "noop")
    with open(noop, "w") as f:
        f.write(WRAPPER % ("true", "wrapper-alone", tlog))
    os.chmod(noop, 0o755)
    d2 = Daemon(os.path.join(work, "berthd-wrapped"), extra_config=f'cni_plugin_dirs = ["{wrap}"]\n').start()
    try:
        d2.berth("load", "-i", ARCHIVE, check=True)
        d2.berth("run", "--rm", IMAGE, "true", check=True)  # warm-up (bridge creation)
        os.unlink(tlog)
        for _ in range(args.plugin_runs):
            run([noop])
        for _ in range(args.plugin_runs):
            d2.berth("run", "--rm", IMAGE, "true", check=True)
        per = {}
        with open(tlog) as f:
            for line in f:
                name, cmd, s, e, rc = line.split()
                per.setdefault(f"{name} {cmd}", []).append((int(e) - int(s)) / 1e6)
        med = {k: round(statistics.median(v), 2) for k, v in per.items()}
        counts = {k: len(v) for k, v in per.items()}
        result["cni_plugins"] = {"containers": args.plugin_runs, "median_ms": med, "calls": counts,
                                 "note": "wall time of each plugin call inside a sh wrapper; 'noop' is the wrapper alone"}
        log("plugins:", json.dumps(med))
    finally:
        ids = d2.berth("ps", "-aq").out.split()
        if ids:
            d2.berth("rm", "-f", *ids)
        for ref in d2.berth("images", "-q").out.split():
            d2.berth("rmi", "-f", ref)
        d2.cleanup()
        if os.path.exists(f"/sys/class/net/{d2.bridge}"):
            run(["ip", "link", "del", d2.bridge], check=False)


# --- 2. throughput ---

def fig_tput(args, work, d, pm, result):
    tar = os.path.join(work, "netpy.tar")
    make_pyimage_tar(tar)
    d.berth("import", tar, PYIMG, check=True)
    pm("import", tar, PYIMG)
    vol = ["-v", "/usr:/usr:ro"]
    eng = {"berth": (lambda *a: d.berth(*a, check=True, timeout=600), []),
           "podman": (lambda *a: pm(*a, timeout=600), PODMAN_EXTRA)}
    servers, cmds = {}, {}
    for name, (call, extra) in eng.items():
        hport = free_port()
        cid = call("run", "-d", *extra, *vol, "-p", f"127.0.0.1:{hport}:{SERVER_PORT}", PYIMG,
                   "/usr/bin/python3", "-c", SERVER)
        cid = (cid.out if hasattr(cid, "out") else cid.stdout.decode()).strip()
        out = call("inspect", cid)
        info = json.loads(out.out if hasattr(out, "out") else out.stdout.decode())[0]
        ip = info["NetworkSettings"].get("IPAddress") or next(
            n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n.get("IPAddress"))
        servers[name] = {"id": cid, "ip": ip, "host_port": hport}

        def up(hport=hport):
            import socket
            try:
                socket.create_connection(("127.0.0.1", hport), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, 30, f"{name} server on 127.0.0.1:{hport}")
        # the probe connection counts 0 bytes: the server replies "0" and goes on
        cmds[f"{name} host->container"] = (call, ["/usr/bin/python3", "-c", CLIENT, "127.0.0.1", str(hport), str(args.mib)], None)
        cmds[f"{name} container->container"] = (call, ["run", "--rm", *extra, *vol, PYIMG, "/usr/bin/python3", "-c", CLIENT,
                                                        ip, str(SERVER_PORT), str(args.mib)], True)
    log("servers:", json.dumps(servers))
    names = list(cmds)
    res = {k: [] for k in names}
    for i in range(args.tput_runs + 1):
        order = names[i % len(names):] + names[:i % len(names)]
        for k in order:
            call, argv, in_ctr = cmds[k]
            if in_ctr:
                out = call(*argv)
                out = out.out if hasattr(out, "out") else out.stdout.decode()
            else:
                out = run(argv, timeout=600).stdout.decode()
            r = json.loads(out.strip().splitlines()[-1])
            if i >= 1:
                res[k].append(r["gbit_s"])
            log(f"  {k}: {r['gbit_s']:.2f} Gbit/s ({r['s']:.2f} s)")
    med = {k: statistics.median(v) for k, v in res.items()}
    result["throughput"] = {"mib_per_run": args.mib, "runs": args.tput_runs, "warmup": 1, "servers": servers,
                            "median_gbit_s": med, "all_gbit_s": {k: [round(x, 2) for x in v] for k, v in res.items()}}
    result["loadavg"].append(engines.load_average())
    log("throughput:", json.dumps(med))
    d.berth("rm", "-f", servers["berth"]["id"], check=True)
    pm("rm", "-f", "-t", "0", servers["podman"]["id"])


# --- 3. leaks ---

def snapshot(d, bridges, subnets):
    ours = re.compile("|".join(re.escape(x) for x in bridges + [s.rsplit(".", 1)[0] + "." for s in subnets]))
    ipam = os.path.join(d.state, "cni", "ipam")
    filt, nat = iptables_lines("filter"), iptables_lines("nat")
    return {
        "veth_on_our_bridges": sum(len(veths(b)) for b in bridges if os.path.exists(f"/sys/class/net/{b}")),
        "veth_host_total": len(veths()),
        "netns_files": count_files(os.path.join(d.state, "netns")),
        "nsfs_mounts_under_state": len(nsfs_mounts(d.state)),
        "ipam_allocations": count_files(ipam, skip=lambda n: n == "lock" or n.startswith("last_reserved_ip")),
        "cni_result_files": count_files(os.path.join(d.state, "cni", "results")),
        "iptables_filter_A": len(filt), "iptables_nat_A": len(nat),
        "iptables_lines_naming_ours": sum(1 for ln in filt + nat if ours.search(ln)),
        "containers": len(d.berth("ps", "-aq").out.split()),
        "berthd_vmrss_kb": proc_status(d.proc.pid, "VmRSS"),
        "berthd_fds": len(os.listdir(f"/proc/{d.proc.pid}/fd")),
        "_filter": filt, "_nat": nat,
    }


def fig_leaks(args, d, result):
    d.berth("network", "create", "benchnet", check=True)
    info = json.loads(d.berth("network", "inspect", "benchnet", check=True).out)[0]
    subnets = [d.subnet] + [c["Subnet"] for c in info["IPAM"]["Config"]]
    bridges = [d.bridge, (info.get("Options") or {}).get("com.docker.network.bridge.name") or "br-" + info["Id"][:12]]
    result["_ours"] += bridges
    port = free_port()
    kinds = [[], ["--network", "benchnet"], ["-p", f"127.0.0.1:{port}:80"], ["--network", "benchnet", "-p", f"127.0.0.1:{port}:80"]]
    for k in kinds:  # warm-up: shared chains, bridges
        d.berth("run", "--rm", *k, IMAGE, "true", check=True)
    before = snapshot(d, bridges, subnets)
    t0 = time.perf_counter()
    fails, rss = [], [(0, proc_status(d.proc.pid, "VmRSS"))]
    for i in range(args.cycles):
        p = d.berth("run", "--rm", *kinds[i % 4], IMAGE, "true", timeout=120)
        if p.returncode != 0:
            fails.append((i, p.err.strip()[-300:]))
        if (i + 1) % 100 == 0:
            rss.append((i + 1, proc_status(d.proc.pid, "VmRSS")))
            log(f"  cycle {i + 1}/{args.cycles} ({time.perf_counter() - t0:.0f} s)")
    dt = time.perf_counter() - t0
    time.sleep(1)
    after = snapshot(d, bridges, subnets)
    diff = {"filter_added": sorted(set(after["_filter"]) - set(before["_filter"])),
            "filter_removed": sorted(set(before["_filter"]) - set(after["_filter"])),
            "nat_added": sorted(set(after["_nat"]) - set(before["_nat"])),
            "nat_removed": sorted(set(before["_nat"]) - set(after["_nat"]))}
    for s in (before, after):
        del s["_filter"], s["_nat"]
    result["leaks"] = {"cycles": args.cycles, "seconds": dt, "per_cycle_ms": dt / args.cycles * 1000,
                       "failures": len(fails), "first_failures": fails[:5],
                       "berthd_vmrss_kb_every_100": rss, "bridges": bridges, "subnets": subnets,
                       "before": before, "after": after, "iptables_diff": diff}
    log("leaks:", json.dumps({k: v for k, v in result["leaks"].items() if k != "iptables_diff"}))
    log("iptables diff:", json.dumps(diff, indent=1))
    d.berth("network", "rm", "benchnet", check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--plugin-runs", type=int, default=10)
    ap.add_argument("--tput-runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=2048)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--only", default="run,plugins,tput,leaks")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if os.geteuid() != 0:
        sys.exit("bench/net.py needs root (private daemons, bridges)")
    work = tempfile.mkdtemp(prefix="berth-bench-net-")
    links_before = links()
    chains_before = {t: chains(t) for t in ("filter", "nat")}
    d = pm = dk = None
    result = {"loadavg": [engines.load_average()], "work": work, "_ours": []}
    try:
        d = Daemon(os.path.join(work, "berthd")).start()
        d.berth("load", "-i", ARCHIVE, check=True)
        result["berth_bridge"] = {"bridge": d.bridge, "subnet": d.subnet}
        result["_ours"].append(d.bridge)
        # leaks first, while only berth runs: the iptables comparison then sees no other engine of ours
        if "leaks" in parts:
            fig_leaks(args, d, result)
        result["versions"] = {}
        if parts & {"run", "tput"} and shutil.which("podman"):
            pm = Podman(os.path.join(work, "podman"))
            pm("load", "-i", ARCHIVE)
            result["versions"]["podman"] = pm("--version").stdout.decode().strip()
        elif parts & {"run", "tput"}:
            log("podman is not installed: its figures are left out")
        if "run" in parts and not args.no_docker and shutil.which("dockerd"):
            dk = DockerBridge(os.path.join(work, "docker"))
            dk("load", "-i", ARCHIVE)
            result["versions"]["docker"] = dk("version", "--format", "{{.Server.Version}}").stdout.decode().strip()
        if "run" in parts:
            fig_run(args, d, pm, dk, result)
        if dk is not None:  # docker done: stop it (and its bridge) before the throughput runs
            ids = run(dk.cmd + ["ps", "-aq"], env=dk.env, check=False).stdout.decode().split()
            if ids:
                run(dk.cmd + ["rm", "-f", *ids], env=dk.env, check=False)
            dk.close()
            dk = None
        if "plugins" in parts:
            fig_plugins(args, work, result)
        if "tput" in parts and pm is not None:
            fig_tput(args, work, d, pm, result)
        print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
    finally:
        for eng in (dk, pm):
            if eng is None:
                continue
            try:
                ids = run(eng.cmd + ["ps", "-aq"], env=eng.env, check=False).stdout.decode().split()
                if ids:
                    run(eng.cmd + ["rm", "-f", *ids], env=eng.env, check=False, timeout=900)
                if eng is pm:
                    pm("network", "prune", "-f", check=False)
                eng.close()
                # netavark keeps its IPAM db there whatever the config: removed when podman made the dir
                if eng is pm and "/run/containers/networks" in pm.made:
                    try:
                        os.unlink("/run/containers/networks/ipam.db")
                        os.rmdir("/run/containers/networks")
                        if "/run/containers" in pm.made:
                            os.rmdir("/run/containers")
                    except OSError:
                        pass
            except Exception as ex:  # noqa: BLE001 (keep cleaning up)
                log("cleanup:", ex)
        if d is not None:
            p = d.berth("ps", "-aq")
            ids = p.out.split() if p.returncode == 0 else []
            if ids:
                d.berth("rm", "-f", *ids, timeout=900)
            for n in d.berth("network", "ls", "-q").out.split():
                d.berth("network", "rm", n)
            for ref in d.berth("images", "-q").out.split():
                d.berth("rmi", "-f", ref)
            d.cleanup()
        # bridges this run made: berth's, and podman's podman0 when it was not there before and
        # nothing is attached to it (docker0: DockerBridge.close)
        ours = set(result["_ours"]) | ({"podman0"} - links_before)
        for b in sorted(ours & links()):
            if b == "podman0" and veths("podman0"):
                continue
            run(["ip", "link", "del", b], check=False)
        # netavark's chains, when this run made them and no podman container is left on podman0
        if not os.path.exists("/sys/class/net/podman0"):
            for t in ("filter", "nat"):
                made = {c for c in chains(t) - chains_before[t] if c.startswith("NETAVARK")}
                if made:
                    drop_chains(t, made)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(work)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        left = sorted(links() - links_before)
        if left:
            log("interfaces left that were not there before:", left)


if __name__ == "__main__":
    main()
