"""berth-runc fuzz: config.json with one to three values changed at random (wrong types, negative
and huge numbers, empty and oversized strings, NUL bytes, relative paths, objects for lists and
the other way round, keys removed), through `create` and `run`. A config berth-runc refuses is one
line on stderr, never an internal error or a traceback; one it takes runs; and nothing of any of
them is left behind (state, cgroups, mounts: the runtime fixture checks its containers' after
`delete --force`). Seeded and bounded."""

import copy
import json
import os
import random

from bundles import default_config

SEED = 20261203
CASES = 400
VALUES = [None, -1, 0, 1, 2 ** 70, -2 ** 70, "x", "", [], {}, True, False, 1.5, "a" * 5000, {"a": 1}, [1, "x"],
          "/", "../..", "a\u0000b", "\u00fc"]


def _paths(o, p=()):
    yield p
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _paths(v, p + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _paths(v, p + (i,))


def _mutate(c, rng, paths):
    """One to three of the paths (paths(c): the ones to choose from) given a value of VALUES or
    removed; a path an earlier change took away is skipped."""
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths(c))
        parent = c
        try:
            for k in path[:-1]:
                parent = parent[k]
            if rng.random() < 0.15 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = rng.choice(VALUES)
        except (KeyError, IndexError, TypeError):
            pass


def _not_one_line(p):
    """A refusal that is not one line (runc's warnings, an unknown capability's, may come before
    it), a traceback or an internal error."""
    lines = [ln for ln in p.err.strip().splitlines() if not ln.startswith("berth-runc: warning: ")]
    return len(lines) != 1 or "Traceback" in p.err or "internal error" in p.err


def test_mutated_configs_are_refused_in_one_line_or_run(runtime):
    rng = random.Random(SEED)
    base = default_config(["true"])
    base["linux"].setdefault("resources", {}).update(
        {"memory": {"limit": 64 << 20}, "pids": {"limit": 100}, "cpu": {"shares": 512}})
    bundle = runtime.bundle(config=copy.deepcopy(base))
    bad, refused = [], 0
    for i in range(CASES):
        c = copy.deepcopy(base)
        _mutate(c, rng, lambda c: [p for p in _paths(c) if p])
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(c, f)
        verb = "run" if i % 2 else "create"
        cid = runtime.new_id("fz")
        p = runtime(verb, "-b", bundle, cid)
        if p.returncode == 0 or verb == "run" and p.returncode in (126, 127):
            pass  # it ran (or its process could not be executed: the process's own exit code)
        else:
            refused += 1
            if _not_one_line(p):
                bad.append((json.dumps(c)[:2000], p.err[-1000:]))
        runtime("delete", "--force", cid)
    assert not bad, "\n\n".join(f"{e}\n{c}" for c, e in bad[:5])
    assert 50 < refused < CASES  # the changes reach the validation, and some configs still run


def test_mutated_newer_spec_fields_are_refused_in_one_line_or_run(runtime):
    """The same over the OCI runtime spec's newer fields (runc 1.2's): the scheduler, the I/O
    priority, time namespace offsets, the personality, CPU idle and burst, Intel RDT, network
    devices (the host's lo, which the kernel never moves) and an idmapped bind mount."""
    rng = random.Random(SEED + 1)
    base = default_config(["true"])
    base["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
    base["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 4}
    base["linux"]["namespaces"].append({"type": "time"})
    base["linux"]["timeOffsets"] = {"boottime": {"secs": 10, "nanosecs": 5}}
    base["linux"]["personality"] = {"domain": "LINUX"}
    base["linux"]["intelRdt"] = {"closID": "x"}
    base["linux"]["netDevices"] = {"lo": {"name": "lo2"}}
    base["linux"].setdefault("resources", {})["cpu"] = {"idle": 0, "quota": 50000, "period": 100000, "burst": 1000}
    bundle = runtime.bundle(config=copy.deepcopy(base))
    src = os.path.join(bundle, "idsrc")
    os.mkdir(src)
    base["mounts"].append({"destination": "/mnt", "type": "bind", "source": src, "options": ["bind", "idmap"],
                           "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                           "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    paths = [p for p in _paths(base) if p and p[0] in ("process", "linux", "mounts") and any(
        k in p for k in ("scheduler", "ioPriority", "timeOffsets", "personality", "intelRdt", "netDevices", "cpu",
                         "uidMappings", "gidMappings")) or p[-2:] == ("mounts", len(base["mounts"]) - 1)]
    bad, refused = [], 0
    for i in range(150):
        c = copy.deepcopy(base)
        _mutate(c, rng, lambda c: paths)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(c, f)
        cid = runtime.new_id("fn")
        p = runtime("run" if i % 2 else "create", "-b", bundle, cid)
        if p.returncode != 0:
            refused += 1
            if _not_one_line(p):
                bad.append((json.dumps(c)[:2000], p.err[-1000:]))
        runtime("delete", "--force", cid)
    assert not bad, "\n\n".join(f"{e}\n{c}" for c, e in bad[:5])
    assert refused > 20
