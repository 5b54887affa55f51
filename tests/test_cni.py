"""How berth runs CNI plugins (berth.cni): what a plugin is given (its configuration with the
previous result on stdin, the CNI_* variables) and how its answers and failures come back.
Plugins here are small scripts; the standard plugins run in test_networks and test_cri."""

import json
import os
import time

import pytest
from daemon_fixtures import ppid

from berth import cni

ECHO = r"""#!/usr/bin/python3
import json, os, sys
conf = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
if os.environ["CNI_COMMAND"] == "ADD":
    prev = conf.get("prevResult") or {"cniVersion": conf["cniVersion"], "ips": []}
    prev.setdefault("seen", []).append({"type": conf["type"], "env": env, "size": len(json.dumps(conf)),
                                        "runtimeConfig": conf.get("runtimeConfig")})
    print(json.dumps(prev))
else:
    with open(os.path.join(conf["log"], "del-" + conf["type"]), "w") as f:
        json.dump({"env": env, "prev": conf.get("prevResult")}, f)
"""

FAIL_JSON = """#!/bin/sh
cat >/dev/null
[ "$CNI_COMMAND" = ADD ] || exit 0
echo '{"cniVersion": "1.0.0", "code": 11, "msg": "no address left", "details": "range 10.0.0.0/30 is full"}'
exit 1
"""

FAIL_STDERR = """#!/bin/sh
cat >/dev/null
[ "$CNI_COMMAND" = ADD ] || exit 0
echo "something broke" >&2
exit 3
"""

SLOW = """#!/bin/sh
exec sleep 30
"""


@pytest.fixture
def plugins(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    for name, text in (("echo-a", ECHO), ("echo-b", ECHO), ("fail-json", FAIL_JSON), ("fail-stderr", FAIL_STDERR),
                       ("slow", SLOW)):
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return str(d)


def _conflist(tmp_path, *types, **extra):
    return {"cniVersion": "1.0.0", "name": "t",
            "plugins": [dict({"type": t, "log": str(tmp_path)}, **extra) for t in types]}


def test_add_chains_results_and_del_gets_what_add_returned(tmp_path, plugins):
    conf = _conflist(tmp_path, "echo-a", "echo-b", capabilities={"portMappings": True}, padding="x" * 200_000)
    res = cni.add(conf, "c1", "/var/run/netns/none", "eth0", [plugins], str(tmp_path / "cache"),
                  runtime_config={"portMappings": [{"hostPort": 8080}]}, args="K8S_POD_NAME=p")
    a, b = res["seen"]
    assert (a["type"], b["type"]) == ("echo-a", "echo-b")
    assert a["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/none",
                        "CNI_IFNAME": "eth0", "CNI_PATH": plugins, "CNI_ARGS": "K8S_POD_NAME=p"}
    assert a["size"] > 200_000  # a configuration larger than a pipe's buffer arrives whole
    assert a["runtimeConfig"] == {"portMappings": [{"hostPort": 8080}]}
    assert cni.delete_cached(str(tmp_path / "cache"), "t", "c1", "eth0", [plugins])
    for t in ("echo-a", "echo-b"):
        with open(tmp_path / f"del-{t}") as f:
            got = json.load(f)
        assert got["env"]["CNI_COMMAND"] == "DEL"
        assert got["env"]["CNI_NETNS"] == ""  # the namespace is gone: plugins still clean up
        assert got["prev"] == res
    assert os.listdir(tmp_path / "cache") == []


@pytest.mark.parametrize("plugin, message", [
    ("fail-json", "plugin type='fail-json' failed (ADD): no address left: range 10.0.0.0/30 is full"),
    ("fail-stderr", "plugin type='fail-stderr' failed (ADD): something broke"),
    ("missing", "failed to find plugin 'missing'"),
])
def test_a_failed_add_says_why_and_undoes_what_ran(tmp_path, plugins, plugin, message):
    conf = _conflist(tmp_path, "echo-a", plugin)
    with pytest.raises(cni.CNIError) as e:
        cni.add(conf, "c2", "", "eth0", [plugins], str(tmp_path / "cache"))
    assert str(e.value).startswith(message)
    assert os.path.exists(tmp_path / "del-echo-a")  # the plugin that had run was undone
    assert os.listdir(tmp_path / "cache") == []


def test_a_plugin_that_hangs_is_killed(tmp_path, plugins, monkeypatch):
    monkeypatch.setattr(cni, "PLUGIN_TIMEOUT", 0.5)
    t = time.monotonic()
    with pytest.raises(cni.CNIError, match="plugin slow ADD timed out"):
        cni.add(_conflist(tmp_path, "slow"), "c3", "", "eth0", [plugins], str(tmp_path / "cache"))
    assert time.monotonic() - t < 10
    assert not [p for p in os.listdir("/proc") if p.isdigit() and ppid(p) == os.getpid()
                and _cmdline(p) == b"sleep\x0030\x00"]  # killed and reaped


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


_SHARED_CHAINS = r"""
import subprocess, sys
from berth.linux import iptables
for prog in ("iptables", "ip6tables"):
    for args in (["-N", "CNI-FORWARD"],
                 ["-A", "FORWARD", "-m", "comment", "--comment", "CNI firewall plugin rules", "-j", "CNI-FORWARD"],
                 ["-t", "nat", "-N", "CNI-HOSTPORT-DNAT"], ["-t", "nat", "-N", "CNI-HOSTPORT-MASQ"],
                 ["-t", "nat", "-N", "CNI-HOSTPORT-SETMARK"],
                 ["-t", "nat", "-A", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"],
                 ["-t", "nat", "-A", "POSTROUTING", "-j", "CNI-HOSTPORT-MASQ"]):
        subprocess.run([prog, "-w", *args], check=True, capture_output=True)
def save():
    return "".join(subprocess.run([p], capture_output=True, text=True).stdout for p in ("iptables-save", "ip6tables-save"))
print(save().count(":CNI-"))
iptables.remove_shared_cni_chains()
print(save().count("CNI-"))
"""


def test_the_shared_cni_chains_go_when_empty_ipv4_and_ipv6():
    """remove_shared_cni_chains (the test suite's end, when no CNI user is left) removes the empty
    chains the plugins share, CNI-FORWARD with its FORWARD jump and CNI-HOSTPORT-* with theirs,
    from ip6tables as well as iptables (the firewall and portmap plugins make them in both).
    Run in a network namespace of its own: its tables are its own, the host's are left alone."""
    import shutil
    import subprocess
    import sys
    if not (shutil.which("iptables-save") and shutil.which("ip6tables-save") and shutil.which("unshare")):
        pytest.skip("iptables, ip6tables or unshare not installed")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(["unshare", "--net", sys.executable, "-c", _SHARED_CHAINS], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=repo), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["8", "0"]  # 4 chains in each family made, nothing of them left
