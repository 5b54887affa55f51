"""A per-test leak tracker (a pytest plugin), loaded by conftest.py when BERTH_LEAKCHECK=1.

Before and after each test (its setup, call and teardown, so module fixtures torn down after a
module's last test count for that test) it takes a snapshot of host state a test can leave
behind: iptables rules (filter and nat), network links, network namespaces, mounts, container
cgroups, and berthd / berth-shim processes. What appeared during a test and is still there after it is written to
the file named by BERTH_LEAKCHECK_FILE (default: berth-leakcheck.txt in the current directory),
under the test's nodeid. At the end of the run, what is still there of everything reported is
listed again, with the test it appeared in. Other engines and test runs on the host change the
same state meanwhile, so this only reports: it never fails a test."""

import os
import subprocess
import time

import pytest


def _lines(*cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return p.stdout.splitlines()


def _processes():
    """berthd (its launcher runs .berthd.py), and the zygote and shims forked from it (named by
    their comm: their command line is berthd's)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if comm.startswith("berth-") or {os.path.basename(a) for a in argv[:3]} & {"berthd", ".berthd.py"}:
            out.append(f"{pid} {comm}: {' '.join(argv)}")
    return out


def snapshot():
    """A set of (kind, item) pairs."""
    items = set()
    for table in ("filter", "nat"):
        items |= {(f"iptables-{table}", r) for r in _lines("iptables", "-w", "-t", table, "-S")}
    # `ip -br link` shows state and flags that change while a link lives: the name is enough
    items |= {("link", line.split()[0]) for line in _lines("ip", "-br", "link") if line.strip()}
    items |= {("netns", line.split()[0]) for line in _lines("ip", "netns", "list") if line.strip()}
    with open("/proc/mounts") as f:
        items |= {("mount", " ".join(line.split()[:3])) for line in f}  # source, target, type
    items |= {("process", p) for p in _processes()}
    items |= {("cgroup", c) for c in _container_cgroups()}
    return items


def _container_cgroups():
    """Container cgroups (a 64-hex name) under the memory hierarchy's first two levels (v1) or
    the unified one (v2): what a container's runtime makes and its delete removes."""
    out = []
    for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if not os.path.isdir(root) or root == "/sys/fs/cgroup" and out:
            continue
        for parent, dirs, _files in os.walk(root):
            depth = parent[len(root):].count("/")
            for d in dirs:
                if len(d) >= 64 and all(c in "0123456789abcdef" for c in d[-64:]):
                    out.append(os.path.join(parent, d))
            if depth >= 2:
                dirs[:] = []
        if out:
            break
    return out


class LeakCheck:
    def __init__(self, path):
        self.path = path
        self.origin = {}  # item -> nodeid of the test after which it was first reported
        with open(self.path, "w") as f:
            f.write(f"# berth leakcheck {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n")

    def _write(self, text):
        with open(self.path, "a") as f:
            f.write(text)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        before = snapshot()
        yield
        new = snapshot() - before
        if new:
            for it in new:
                self.origin.setdefault(it, item.nodeid)
            self._write(f"\n== {item.nodeid}\n" + "".join(f"+ {k}: {v}\n" for k, v in sorted(new)))

    def pytest_sessionfinish(self, session):
        left = sorted((self.origin[it], it) for it in snapshot() if it in self.origin)
        self._write("\n== still there at the end of the run (with the test they appeared in)\n")
        self._write("".join(f"{nodeid}  {k}: {v}\n" for nodeid, (k, v) in left) or "(nothing)\n")


def register(config):
    path = os.path.abspath(os.environ.get("BERTH_LEAKCHECK_FILE") or "berth-leakcheck.txt")
    config.pluginmanager.register(LeakCheck(path), "berth-leakcheck")
