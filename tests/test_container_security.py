"""docker's default security for containers run through berthd, each checked from inside a
container: the default seccomp profile (allowlist, EPERM, capability-dependent rules), the
default capability set, masked and read-only paths, no-new-privileges, custom seccomp
profiles, and --privileged lifting all of it."""

import json
import os
import shutil
import tempfile

import pytest
from daemon_fixtures import DATA, Daemon

IMAGE = "busybox-layers:1"
DOCKER_DEFAULT_CAPS = 0x00000000A80425FB

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def d():
    # A short base directory: the shim's socket, <state>/containers/<64-hex id>/shim.sock, must
    # fit in sun_path (108 bytes), which pytest's tmp_path does not leave room for.
    base = tempfile.mkdtemp(prefix="b", dir="/tmp")
    daemon = Daemon(base).start()
    try:
        daemon.berth("load", "-i", f"{DATA}/busybox-layers.docker.tar", check=True)
        yield daemon
    finally:
        daemon.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def run(d, *args, script, check=True):
    p = d.berth("run", "--rm", "--network", "none", *args, IMAGE, "sh", "-c", script)
    if check:
        assert p.returncode == 0, (p.returncode, p.out, p.err)
    return p


def status(out):
    """The `Key:\tvalue` lines of /proc/self/status in a container's output."""
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Seccomp", "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs"):
            fields[key] = value.strip()
    return fields


STATUS = "grep -E '^(Seccomp|Cap[A-Za-z]+|NoNewPrivs):' /proc/self/status"


def host_capbnd():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


def one_line_error(p):
    assert p.returncode == 125, (p.returncode, p.out, p.err)
    lines = p.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.err, p.err
    return lines[0]


# --- defaults ---

def test_default_seccomp_and_capabilities(d):
    s = status(run(d, script=STATUS).out)
    assert s["Seccomp"] == "2"  # a filter is installed
    assert int(s["CapEff"], 16) == DOCKER_DEFAULT_CAPS
    assert int(s["CapPrm"], 16) == DOCKER_DEFAULT_CAPS
    assert int(s["CapBnd"], 16) == DOCKER_DEFAULT_CAPS
    assert int(s["CapInh"], 16) == 0 and int(s["CapAmb"], 16) == 0
    assert s["NoNewPrivs"] == "0"


def test_default_profile_blocks_with_eperm_and_allows_normal_work(d):
    # A user namespace needs no capability: only the seccomp profile forbids it, with EPERM.
    # mount without CAP_SYS_ADMIN fails too (busybox reports EPERM as "permission denied").
    p = run(d, script="unshare -U true; echo unshare=$?; "
                      "mount -t tmpfs none /tmp; echo mount=$?; "
                      "ls / >/dev/null && cat /etc/hostname >/dev/null && echo hello && sleep 0.1 && "
                      "(echo from-a-subshell) && { sleep 0.1 & wait $!; } && sh -c 'exit 3'; echo sh=$?")
    assert "unshare=1" in p.out and "Operation not permitted" in p.err, (p.out, p.err)
    assert "mount=1" in p.out and "permission denied" in p.err.lower(), (p.out, p.err)
    assert "hello" in p.out and "from-a-subshell" in p.out and "sh=3" in p.out, (p.out, p.err)


def test_seccomp_unconfined(d):
    p = run(d, "--security-opt", "seccomp=unconfined", script=STATUS + "; unshare -U true && echo unshared")
    s = status(p.out)
    assert s["Seccomp"] == "0" and int(s["CapEff"], 16) == DOCKER_DEFAULT_CAPS
    assert "unshared" in p.out, p.err  # what the default profile blocked is now allowed


def test_cap_add_sys_admin_allows_mount(d):
    p = run(d, "--cap-add", "SYS_ADMIN",
            script=STATUS + "; mount -t tmpfs none /tmp && grep ' /tmp tmpfs' /proc/mounts && unshare -U true && echo ok")
    s = status(p.out)
    assert s["Seccomp"] == "2"  # still filtered, but the profile follows the capabilities
    assert int(s["CapEff"], 16) == DOCKER_DEFAULT_CAPS | 1 << 21
    assert " /tmp tmpfs" in p.out and "ok" in p.out, p.err


def test_masked_and_readonly_paths(d):
    p = run(d, script="echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); "
                      "echo keys=$(cat /proc/keys | wc -c); echo firmware=$(ls -A /sys/firmware | wc -l); "
                      "echo interrupts=$(cat /proc/interrupts | wc -c); "
                      "echo 1 > /proc/sys/kernel/ns_last_pid; echo pid=$?; "
                      "echo 1 > /proc/sys/net/ipv4/ip_forward; echo fwd=$?; "
                      "echo 1 > /proc/sysrq-trigger; echo sysrq=$?; touch /sys/x 2>/dev/null; echo sys=$?")
    out = p.out
    assert "kcore=0" in out and "keys=0" in out and "firmware=0" in out and "interrupts=0" in out, out
    assert "pid=1" in out and "fwd=1" in out and "sysrq=1" in out and "sys=1" in out, out
    assert "Read-only file system" in p.err, p.err


def test_no_new_privileges(d):
    s = status(run(d, "--security-opt", "no-new-privileges", script=STATUS).out)
    assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2"
    # as another user, the filter is loaded after the switch, under no_new_privs
    p = run(d, "--security-opt", "no-new-privileges=true", "-u", "1000", script=STATUS + "; id -u")
    s = status(p.out)
    assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2" and int(s["CapEff"], 16) == 0
    assert "1000" in p.out.split()
    assert status(run(d, "--security-opt", "no-new-privileges=false", script=STATUS).out)["NoNewPrivs"] == "0"


# --- --privileged ---

def test_privileged(d):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_forward = f.read()
    p = run(d, "--privileged",
            script=STATUS + "; ls -A /dev; echo 1 > /proc/sys/net/ipv4/ip_forward && "
                            "echo forward=$(cat /proc/sys/net/ipv4/ip_forward); "
                            "grep ' /sys sysfs' /proc/mounts; "
                            "echo interrupts=$(head -c 10 /proc/interrupts | wc -c); "
                            "mount -t tmpfs none /tmp && echo mounted")
    s = status(p.out)
    assert s["Seccomp"] == "0"
    assert int(s["CapEff"], 16) == host_capbnd()  # every capability berthd can give
    assert "forward=1" in p.out, (p.out, p.err)  # /proc/sys writable, in the container's own netns
    assert "interrupts=10" in p.out, p.out  # nothing masked
    assert " /sys sysfs rw," in p.out, p.out  # /sys writable
    assert "mounted" in p.out, p.err
    names = set(p.out.split())
    for dev in ("loop-control", "null", "kmsg"):
        if os.path.exists("/dev/" + dev):
            assert dev in names, p.out  # the host's devices
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_forward  # the host's own setting is untouched


def test_unprivileged_dev_has_only_default_devices(d):
    p = run(d, script="ls -A /dev")
    names = set(p.out.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= names, p.out
    assert "loop-control" not in names and "kmsg" not in names, p.out


# --- custom profiles and errors ---

def test_custom_profile_blocks_mkdir(d, tmp_path):
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            # docker's conditional form: a rule for a capability the container lacks is left out
            {"names": ["unlink", "unlinkat"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }))
    p = run(d, "--security-opt", f"seccomp={path}",
            script=STATUS + "; mkdir /made; echo mkdir=$?; touch /touched && echo touched; "
                            "rm /touched && echo removed")
    assert status(p.out)["Seccomp"] == "2"
    assert "mkdir=1" in p.out and "Operation not permitted" in p.err, (p.out, p.err)
    assert "touched" in p.out and "removed" in p.out, (p.out, p.err)

    # the profile is read at create: the container no longer needs the file
    cid = d.berth("create", "--network", "none", "--security-opt", f"seccomp={path}", IMAGE,
                  "sh", "-c", "mkdir /x", check=True).out.strip()
    try:
        path.unlink()
        opts = d.berth("inspect", "--format", "{{json .HostConfig.SecurityOpt}}", cid, check=True).out
        assert "mkdirat" in opts
        d.berth("start", cid, check=True)
        assert d.berth("wait", cid, check=True).out.strip() == "1"
        p = d.berth("logs", cid)
        assert "Operation not permitted" in p.out + p.err, (p.out, p.err)
    finally:
        d.berth("rm", "-f", cid)


def test_a_profile_with_a_seccomp_agent(d, tmp_path):
    """A profile's SCMP_ACT_NOTIFY rules and listenerPath (moby's profile format carries them, as
    podman's does): the agent gets the container's state and answers its mkdir; a missing agent
    fails the start in runc's words. berthd refused such a profile ("seccomp notify is not
    supported")."""
    from seccomp_agent import Agent
    agent = Agent(str(tmp_path / "agent.sock"))
    try:
        path = tmp_path / "notify.json"
        path.write_text(json.dumps({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path, "listenerMetadata": "from docker",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}))
        p = run(d, "--security-opt", f"seccomp={path}", script="mkdir /made; echo mkdir=$?", check=False)
        assert p.returncode == 0 and p.out == "mkdir=1\n" and "No medium found" in p.err, (p.out, p.err)
        (state, nfds), = agent.states
        assert nfds == 1 and state["metadata"] == "from docker" and state["state"]["status"] == "creating"
        assert len(state["state"]["id"]) == 64 and state["pid"] == state["state"]["pid"]
    finally:
        agent.close()
    p = d.berth("run", "--rm", "--network", "none", "--security-opt", f"seccomp={path}", IMAGE, "true")
    assert p.returncode == 127, (p.returncode, p.err)  # the docker CLI's for "no such file or directory"
    assert ("failed to connect with seccomp agent specified in the seccomp profile: "
            f"dial unix {agent.path}: connect: no such file or directory") in p.err


def test_bad_profiles_and_options_are_one_line_errors(d, tmp_path):
    before = d.berth("ps", "-aq", check=True).out.split()
    msg = one_line_error(d.berth("run", "--rm", "--security-opt", f"seccomp={tmp_path}/missing.json", IMAGE, "true"))
    assert "missing.json" in msg and "no such file" in msg.lower()  # the docker CLI reads it: its words
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "bad.json" in one_line_error(d.berth("run", "--rm", "--security-opt", f"seccomp={bad}", IMAGE, "true"))
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_NOPE", "syscalls": []}))
    assert "SCMP_ACT_NOPE" in one_line_error(d.berth("run", "--rm", "--security-opt", f"seccomp={bad}", IMAGE, "true"))
    for opt in ("foo", "foo=bar", "no-new-privileges=maybe", "systempaths=open"):
        msg = one_line_error(d.berth("run", "--rm", "--security-opt", opt, IMAGE, "true"))
        assert "invalid --security-opt" in msg.lower() and opt in msg, msg
    assert d.berth("ps", "-aq", check=True).out.split() == before  # nothing was created


# --- the profile itself ---

def test_default_profile_shape():
    from berth.linux import seccomp
    from berth.services.ocispec import DEFAULT_CAPS
    from berth.services.seccomp_default import default_profile, to_oci

    def rules(p, name):
        return [r for r in p["syscalls"] if name in r["names"]]

    p = default_profile(set(DEFAULT_CAPS), "x86_64")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert rules(p, "read") and rules(p, "arch_prctl") and not rules(p, "mount") and not rules(p, "unshare")
    assert not rules(p, "kcmp") and not rules(p, "reboot") and not rules(p, "init_module")
    assert rules(p, "chroot")  # CAP_SYS_CHROOT is a default capability
    (clone,) = rules(p, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = rules(p, "clone3")
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38
    (sock,) = rules(p, "socket")
    assert sock["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]
    assert sorted(r["args"][0]["value"] for r in rules(p, "personality")) == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    seccomp.validate(p)

    admin = default_profile(set(DEFAULT_CAPS) | {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}, "x86_64")
    assert all(rules(admin, n) for n in ("mount", "umount2", "unshare", "setns", "kcmp", "ptrace"))
    assert [r.get("args") for r in rules(admin, "clone")] == [None]
    assert [r["action"] for r in rules(admin, "clone3")] == ["SCMP_ACT_ALLOW"]
    seccomp.validate(admin)

    arm = default_profile(set(DEFAULT_CAPS), "aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert rules(arm, "set_tls") and not rules(arm, "arch_prctl")

    with pytest.raises(Exception, match="either 'architectures' or 'archMap'"):
        to_oci({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, set(), "x86_64")
