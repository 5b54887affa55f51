"""Seccomp user notification (SCMP_ACT_NOTIFY): the runtime sends the filter's listener fd with
the container process's state to the seccomp agent at linux.seccomp.listenerPath, as runc does;
the agent answers the notified calls. berth-runc beside runc, the same bundles, a real agent."""

import os

import pytest
from seccomp_agent import Agent


@pytest.fixture
def agent(tmp_path):
    made = []

    def make(mode="errno"):
        a = Agent(str(tmp_path / f"agent{len(made)}.sock"), mode)
        made.append(a)
        return a
    yield make
    for a in made:
        a.close()


def notify_on(names, listener, metadata=None, nnp=False):
    def mutate(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": listener,
                                 "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}]}
        if metadata is not None:
            c["linux"]["seccomp"]["listenerMetadata"] = metadata
        c["process"]["noNewPrivileges"] = nnp
        c["annotations"] = {"org.example/who": "agent test"}
    return mutate


def _both(runtime, runc):
    return [runtime] + ([runc] if runc is not None else [])


@pytest.mark.parametrize("nnp", [False, True])
def test_a_notified_call_is_answered_by_the_agent_as_runc(runtime, runc, agent, nnp):
    """The agent gets the state of the container being created and the listener fd; the
    container's mkdir fails with what the agent answered. berth-runc refused any profile with
    SCMP_ACT_NOTIFY ("seccomp notify is not supported")."""
    seen = {}
    for rt in (runtime, runc):
        a = agent()
        cid = rt.new_id("n")
        b = rt.bundle(["sh", "-c", "mkdir /tmp/x; echo rc=$?; ls -d /tmp/x"],
                      mutate=notify_on(["mkdir", "mkdirat"], a.path, "m1", nnp))
        p = rt("run", "-b", b, cid)
        assert len(a.states) == 1, (rt.binary, p.err)
        state, nfds = a.states[0]
        seen[rt is runc] = (p.returncode, p.out, p.err, nfds, state, bool(a.calls), b, cid)
    for theirs in (False, True):
        code, out, err, nfds, state, called, b, cid = seen[theirs]
        assert code == 1 and out == "rc=1\n" and "No medium found" in err, seen[theirs]
        assert nfds == 1 and called
        assert sorted(state) == ["fds", "metadata", "ociVersion", "pid", "state"]
        assert state["fds"] == ["seccompFd"] and state["metadata"] == "m1"
        assert {k: v for k, v in state["state"].items() if k not in ("ociVersion", "pid")} == {
            "id": cid, "status": "creating", "bundle": b, "annotations": {"org.example/who": "agent test"}}
        assert state["pid"] == state["state"]["pid"] > 0


def test_the_agent_can_let_the_call_go_on(runtime, agent):
    a = agent("continue")
    b = runtime.bundle(["sh", "-c", "mkdir /tmp/x && ls -d /tmp/x"], mutate=notify_on(["mkdir", "mkdirat"], a.path))
    p = runtime("run", "-b", b, runtime.new_id("n"))
    assert (p.returncode, p.out) == (0, "/tmp/x\n"), p.err
    assert a.calls and "metadata" not in a.states[0][0]


def test_an_exec_sends_its_own_listener_fd_as_runc(runtime, runc, agent):
    """Each exec's process loads the container's filter anew: its own fd goes to the agent with
    the running container's state (the init's pid) and its own pid."""
    for rt in _both(runtime, runc):
        a = agent()
        cid = rt.new_id("n")
        b = rt.bundle(["sleep", "60"], mutate=notify_on(["mkdir", "mkdirat"], a.path))
        rt("run", "-d", "-b", b, cid, check=True)
        init = rt.state(cid)["pid"]
        p = rt("exec", cid, "sh", "-c", "mkdir /tmp/y; echo rc=$?")
        assert (p.returncode, p.out) == (0, "rc=1\n") and "No medium found" in p.err, (rt.binary, p.err)
        assert [s["state"]["status"] for s, _ in a.states] == ["creating", "running"]
        state = a.states[1][0]
        assert state["state"]["pid"] == init and state["pid"] not in (init, 0)
        rt("kill", cid, "KILL")
        rt("delete", "--force", cid, check=True)


@pytest.mark.parametrize("case", ["no agent", "no listenerPath", "write", "default"])
def test_what_runc_refuses_is_refused_in_its_words_leaving_nothing(runtime, runc, case, tmp_path):
    missing = str(tmp_path / "nobody.sock")

    def mutate(c):
        notify_on(["mkdir"], missing)(c)
        scmp = c["linux"]["seccomp"]
        if case == "no listenerPath":
            del scmp["listenerPath"]
        elif case == "write":
            scmp["syscalls"][0]["names"] = ["mkdir", "write"]
        elif case == "default":
            scmp["defaultAction"] = "SCMP_ACT_NOTIFY"
            del scmp["syscalls"]
    why = {"no agent": "failed to connect with seccomp agent specified in the seccomp profile: "
                       f"dial unix {missing}: connect: no such file or directory",
           "no listenerPath": "listenerPath is not set",
           "write": "SCMP_ACT_NOTIFY cannot be used for the write syscall",
           "default": "SCMP_ACT_NOTIFY cannot be used as default action"}[case]
    for rt in _both(runtime, runc):
        cid = rt.new_id("n")
        p = rt("run", "-b", rt.bundle(["echo", "ran"], mutate=mutate), cid)
        assert p.returncode != 0 and p.out == "" and why in p.err, (rt.binary, p.err)
        assert rt("state", cid).returncode != 0
    assert len(p.err.strip().splitlines()) == 1  # berth-runc's: one line
    assert not os.path.exists(os.path.join(runtime.root, cid))


def test_a_user_without_capabilities_is_notified_too(runtime, agent):
    """Without no_new_privs the filter is loaded before the user switch and the capabilities'
    drop; the listener fd is handed on before them."""
    a = agent()

    def mutate(c):
        notify_on(["mkdir", "mkdirat"], a.path)(c)
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted")}
    p = runtime("run", "-b", runtime.bundle(["sh", "-c", "mkdir /tmp/x; id -u"], mutate=mutate), runtime.new_id("n"))
    assert p.out == "1000\n" and "No medium found" in p.err, p.err
