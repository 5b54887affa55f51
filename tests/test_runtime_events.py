"""berth-runc events beside runc's: the stats JSON engines and monitoring scripts parse (runc 1.1's
types.Stats), the stream of stats and OOM kills, and the refusals."""

import json
import os
import re
import subprocess
import time

from test_runtime_cgroup2 import UNIFIED

MiB = 1 << 20


def _on_v2(rt, cid, bundle, *args):
    """`rt run -d`, then `rt ARGS ID`, then `rt delete -f` as on a unified host (this machine's
    cgroup2 tree mounted at /sys/fs/cgroup in a private mount namespace; see test_runtime_cgroup2):
    the second command's result."""
    script = ('mount --make-rprivate / && mount --bind "$U" /sys/fs/cgroup && "$@" run -d -b "$B" "$C" '
              '</dev/null >/dev/null 2>&1; "$@" $A "$C"; r=$?; "$@" delete -f "$C"; exit $r')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", rt.binary, "--root", rt.root], capture_output=True,
                          timeout=30, env=dict(os.environ, U=UNIFIED, B=bundle, C=cid, A=" ".join(args)))


def _limited(c, limit=100 * MiB, swap=None):
    r = c["linux"].setdefault("resources", {})
    r["memory"] = {"limit": limit, **({"swap": swap} if swap else {})}
    r["pids"] = {"limit": 50}


def _shape(x):
    """A JSON value's shape: its keys in order and the types and list lengths of what they hold
    (the counters themselves move between two readings)."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [len(x)] + sorted({type(v).__name__ for v in x})
    return type(x).__name__


def _events_stats(rt, cid):
    p = rt("events", "--stats", cid)
    assert p.returncode == 0, p.err
    assert p.out.endswith("}\n") and p.out.count("\n") == 1 and ": " not in p.out  # Go's encoder: compact, a line
    return json.loads(p.out)


def test_events_stats_as_runc(runtime, runc):
    """`events --stats` on cgroup v1 (this host's controllers): the same fields in the same order
    as runc 1.1 prints them (zero counters left out where its structs say omitempty, the memory
    entries' limits, the cpuset's members, memory.stat whole), the values the limits set."""
    seen = {}
    # the blkio entries and the page cache's counter are left out where they are zero: each
    # container writes past the page cache and into it, so that both have them (a run with
    # neither depended on what the host's page cache held)
    work = ("dd if=/dev/zero of=/direct bs=64k count=4 oflag=direct 2>/dev/null;"
            " dd if=/dev/zero of=/cached bs=64k count=4 2>/dev/null; touch /ready; sleep 30")
    for rt in (runtime, runc):
        cid = rt.new_id("ev")
        b = rt.bundle(["sh", "-c", work], mutate=_limited)
        rt("run", "-d", "-b", b, cid, check=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(b, "rootfs", "ready")) and time.monotonic() < deadline:
            time.sleep(0.02)
        ev = _events_stats(rt, cid)
        rt("delete", "-f", cid, check=True)
        assert ev["type"] == "stats" and ev["id"] == cid
        seen[rt is runc] = ev["data"]
    ours, theirs = seen[False], seen[True]
    assert _shape(ours) == _shape(theirs)
    assert ours["memory"]["usage"]["limit"] == 100 * MiB and ours["pids"] == {"current": 1, "limit": 50}
    assert ours["cpuset"] == theirs["cpuset"]
    assert ours["memory"]["swap"]["limit"] == theirs["memory"]["swap"]["limit"]
    assert ours["cpu"]["usage"]["total"] > 0 and ours["network_interfaces"] is None
    assert ours["blkio"]["ioServiceBytesRecursive"] and ours["memory"]["cache"] > 0


def test_events_refusals_as_runc(runtime, runc):
    """A container that does not exist, one that has stopped, an interval that is no duration or
    not above zero, a missing id: refused, exit status 1, runc's words (its usage text aside)."""
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("ev")
        rt("run", "-d", "-b", rt.bundle(["sleep", "30"]), cid, check=True)
        got = []
        for args in (("--stats", "nonexistent"), ("--interval", "0s", cid), ("--interval", "-1s", cid),
                     ("--interval", "xx", cid)):
            p = rt("events", *args)
            got.append((p.returncode, p.err.strip().splitlines()[-1]))  # (runc prints its usage on stdout too)
        rt("kill", cid, "KILL", check=True)
        deadline = time.monotonic() + 5
        while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        p = rt("events", "--stats", cid)
        got.append((p.returncode, p.err.strip().splitlines()[-1]))
        p = rt("events")
        got.append((p.returncode,))
        rt("delete", cid, check=True)
        norm = []
        for g in got:
            text = [re.sub(r'^time="[^"]*" level=error msg="(.*)"$', r"\1", t).replace('\\"', '"').replace(cid, "ID")
                    if isinstance(t, str) else t for t in g]
            norm.append(tuple(t.replace("berth-runc: ", "") if isinstance(t, str) else t for t in text))
        seen[rt is runc] = norm
    assert seen[False][:5] == seen[True][:5]
    assert seen[False][4][1] == "container with id ID is not running"
    assert seen[False][5][0] == seen[True][5][0] == 1


def test_events_stream_with_an_interval_longer_than_poll_takes(runtime):
    """An interval of a million hours (more milliseconds than poll(2) takes): the stream waits,
    no error (an internal OverflowError before)."""
    cid = runtime.new_id("ev")
    runtime("run", "-d", "-b", runtime.bundle(["sleep", "30"]), cid, check=True)
    p = subprocess.Popen([runtime.binary, "--root", runtime.root, "events", "--interval", "1000000h", cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=1.5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    runtime("delete", "-f", cid, check=True)
    assert p.returncode == -9 and out == b"" and err == b"", (p.returncode, err)


def test_events_stream_stats_and_oom_until_the_container_goes(runtime, runc):
    """Without --stats: the stats every interval and an "oom" event when the kernel kills a
    process of the container for its memory limit; the stream ends (status 0) when the
    container is deleted. Side by side with runc: the same kinds of events, the same end."""
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("oom")
        rt("run", "-d", "-b", rt.bundle(["sleep", "30"], mutate=lambda c: _limited(c, 16 * MiB, 16 * MiB)), cid,
           check=True)
        out = os.path.join(rt.tmp, f"events-{cid}.out")
        with open(out, "wb") as f:
            watcher = subprocess.Popen([rt.binary, "--root", rt.root, "events", "--interval", "300ms", cid],
                                       stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            time.sleep(0.8)
            p = rt("exec", cid, "sh", "-c", 'a=$(head -c 40000000 /dev/zero | tr "\\0" x); echo ${#a}')
            assert p.returncode == 137, (p.returncode, p.err)
            time.sleep(0.5)
            rt("delete", "-f", cid, check=True)
            code = watcher.wait(timeout=10)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
        with open(out) as f:
            events = [json.loads(line) for line in f]
        kinds = [e["type"] for e in events]
        assert all(e["id"] == cid for e in events)
        seen[rt is runc] = (code, kinds[0], "oom" in kinds, kinds.count("stats") >= 2)
    assert seen[False] == seen[True] == (0, "stats", True, True)


def test_events_stats_on_cgroup_v2_as_runc(runtime, runc):
    """On a unified host (this machine's cgroup2 tree mounted at /sys/fs/cgroup in a private mount
    namespace: no memory or pids controller there, hugetlb only): runc's v2 reading — the CPU
    times from cpu.stat, the processes counted from cgroup.procs, zero memory entries, each huge
    page size's failcnt."""
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("ev2")
        b = rt.bundle(["sleep", "30"])
        p = _on_v2(rt, cid, b, "events", "--stats")
        assert p.returncode == 0, p.stderr.decode()
        ev = json.loads(p.stdout)
        seen[rt is runc] = ev["data"]
    assert _shape(seen[False]) == _shape(seen[True])
    for key in ("cpuset", "memory", "pids", "hugetlb"):
        assert seen[False][key] == seen[True][key], key
    assert seen[False]["pids"] == {"current": 1}
    assert not os.path.exists(os.path.join(UNIFIED, cid))


def test_events_stream_without_a_memory_controller_on_cgroup_v2_as_runc(runtime, runc):
    """The stream watches memory.events: where the v2 cgroup has none, refused as runc refuses it."""
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("ev2")
        b = rt.bundle(["sleep", "30"])
        p = _on_v2(rt, cid, b, "events", "--interval", "100ms")
        err = p.stderr.decode().strip().splitlines()[-1]
        seen[rt is runc] = (p.returncode, p.stdout, re.sub(r'^time="[^"]*" level=error msg="(.*)"$', r"\1", err)
                            .replace("berth-runc: ", ""))
    assert seen[False] == seen[True]
    assert seen[False][2] == "unable to add inotify watch: no such file or directory"
