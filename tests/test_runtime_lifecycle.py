"""berth-runc's lifecycle and command line, driven as runc is driven by engines."""

import json
import os
import re
import signal
import subprocess
import time


def wait_status(runtime, cid, status, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runtime.state(cid)["status"] == status:
            return True
        time.sleep(0.02)
    return False


def test_run_prints_output_and_exits_with_the_code(runtime):
    b = runtime.bundle(["sh", "-c", "echo hello from $(hostname); exit 3"])
    p = runtime("run", "-b", b, runtime.new_id())
    assert p.out == "hello from berth\n"
    assert p.returncode == 3


def test_run_reports_death_by_signal_as_128_plus_n(runtime):
    import subprocess
    b = runtime.bundle(["sleep", "30"])
    cid = runtime.new_id()
    p = subprocess.Popen([runtime.binary, "--root", runtime.root, "run", "-b", b, cid])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and runtime("state", cid).out.find('"running"') < 0:
        time.sleep(0.02)
    runtime("kill", cid, "KILL", check=True)
    assert p.wait(10) == 128 + 9


def test_the_process_is_pid_1_in_its_own_pid_namespace(runtime):
    b = runtime.bundle(["sh", "-c", "echo $$; ps -o pid | wc -l"])
    p = runtime("run", "-b", b, runtime.new_id(), check=True)
    lines = p.out.split()
    assert lines[0] == "1"


def test_lifecycle_create_start_kill_delete(runtime, tmp_path):
    b = runtime.bundle(["sleep", "30"], mutate=lambda c: c.update(annotations={"org.example/k": "v"}))
    cid = runtime.new_id()
    pidfile = tmp_path / "pid"
    runtime("create", "-b", b, "--pid-file", str(pidfile), cid, check=True)
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid
    assert st["bundle"] == b
    assert st["pid"] > 0 and int(pidfile.read_text()) == st["pid"]
    assert st["annotations"] == {"org.example/k": "v"}
    assert st["ociVersion"]
    # the init waits: it has not exec'd sleep yet
    assert "sleep" not in open(f"/proc/{st['pid']}/cmdline").read()
    runtime("start", cid, check=True)
    assert runtime.state(cid)["status"] == "running"
    assert open(f"/proc/{st['pid']}/cmdline").read().startswith("sleep")
    runtime("kill", cid, "KILL", check=True)
    assert wait_status(runtime, cid, "stopped")
    runtime("delete", cid, check=True)
    p = runtime("state", cid)
    assert p.returncode != 0 and "does not exist" in p.err


def test_invalid_transitions_fail_clearly(runtime):
    b = runtime.bundle(["sleep", "30"])
    cid = runtime.new_id()
    runtime("create", "-b", b, cid, check=True)
    p = runtime("create", "-b", b, cid)
    assert p.returncode != 0 and "already exists" in p.err
    runtime("start", cid, check=True)
    p = runtime("start", cid)
    assert p.returncode != 0 and "already running" in p.err
    p = runtime("delete", cid)
    assert p.returncode != 0 and "not stopped" in p.err
    assert runtime.state(cid)["status"] == "running"
    runtime("kill", cid, "9", check=True)
    assert wait_status(runtime, cid, "stopped")
    p = runtime("kill", cid, "TERM")
    assert p.returncode != 0 and "not running" in p.err
    p = runtime("start", cid)
    assert p.returncode != 0 and "stopped" in p.err
    runtime("delete", cid, check=True)
    for cmd in (("start", cid), ("kill", cid), ("delete", cid), ("state", cid), ("pause", cid)):
        p = runtime(*cmd)
        assert p.returncode != 0 and "does not exist" in p.err and len(p.err.strip().splitlines()) == 1


def test_delete_force_kills_a_running_container(runtime):
    b = runtime.bundle(["sleep", "30"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    pid = runtime.state(cid)["pid"]
    runtime("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_kill_by_name_number_and_all(runtime):
    b = runtime.bundle(["sh", "-c", "trap 'echo got-usr1 > /tmp/sig' USR1; sleep 30 & wait; sleep 30 & wait"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    time.sleep(0.2)
    runtime("kill", cid, "SIGUSR1", check=True)
    time.sleep(0.2)
    rootfs = os.path.join(b, "rootfs")
    assert open(os.path.join(rootfs, "tmp", "sig")).read() == "got-usr1\n"
    p = runtime("kill", cid, "NOSUCHSIG")
    assert p.returncode != 0 and "unknown signal" in p.err
    runtime("kill", "--all", cid, str(int(signal.SIGKILL)), check=True)
    assert wait_status(runtime, cid, "stopped")


def test_pause_and_resume(runtime):
    b = runtime.bundle(["sleep", "30"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    pid = runtime.state(cid)["pid"]
    runtime("pause", cid, check=True)
    assert runtime.state(cid)["status"] == "paused"
    p = runtime("pause", cid)
    assert p.returncode != 0
    runtime("resume", cid, check=True)
    assert runtime.state(cid)["status"] == "running"
    assert os.path.exists(f"/proc/{pid}")


def test_list_and_ps(runtime):
    b = runtime.bundle(["sh", "-c", "sleep 30 & sleep 31"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    time.sleep(0.2)
    p = runtime("list", check=True)
    header, *rows = p.out.splitlines()
    assert header.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert any(r.split()[0] == cid and r.split()[2] == "running" for r in rows)
    entries = json.loads(runtime("list", "--format", "json", check=True).out)
    assert [e["status"] for e in entries if e["id"] == cid] == ["running"]
    assert runtime("list", "-q", check=True).out.split() == [cid]
    pids = json.loads(runtime("ps", "--format", "json", cid, check=True).out)
    assert runtime.state(cid)["pid"] in pids and len(pids) == 2
    table = runtime("ps", cid, check=True).out.splitlines()
    assert "PID" in table[0] and len(table) == 3


def test_state_and_list_print_as_runc(runtime, runc):
    """state and list as runc 1.1 prints them (engines and scripts parse them): state's keys in
    runc's order, annotations only when there are some, no newline after; list's columns as Go's
    tabwriter pads them, the owner named in its JSON, an empty list `null`."""
    out = {}
    for rt in (runtime, runc):
        with_ann, plain = rt.new_id("a"), rt.new_id("b")  # listed in this order (by name) by both
        rt("create", "-b", rt.bundle(["sleep", "30"], mutate=lambda c: c.update(annotations={"k": "v"})), with_ann,
           check=True)
        rt("create", "-b", rt.bundle(["sleep", "30"]), plain, check=True)
        got = [rt("state", with_ann, check=True).out, rt("state", plain, check=True).out,
               rt("list", check=True).out, rt("list", "-f", "json", check=True).out]
        for cid in (with_ann, plain):
            rt("delete", "-f", cid, check=True)
        got += [rt("list", check=True).out, rt("list", "-f", "json", check=True).out]
        norm = []
        for text in got:
            for cid, name in ((with_ann, "ONE"), (plain, "TWO"), (os.path.dirname(rt.bundle()), "BUNDLES")):
                text = text.replace(cid, name)
            text = re.sub(r"bundle-[0-9a-f]{8}", "bundle-X", text)
            text = re.sub(r'"ociVersion": ?"[^"]*"', '"ociVersion":V', text)  # each its own spec version
            text = re.sub(r'"pid": ?\d+', '"pid":P', re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "T", text))
            text = re.sub(r"(ONE|TWO) +\d+ +", r"\1 P ", text)
            # the table's padding follows its widest pid, which differs between the two runs
            norm.append(re.sub(r"(?m)^(ID|ONE|TWO)( .*)$", lambda m: m.group(1) + re.sub(" +", " ", m.group(2)), text))
        out[rt is runc] = norm
    assert out[False] == out[True]
    assert not out[False][0].endswith("\n") and out[False][5] == "null\n"


def test_update_as_runc(runtime, runc, tmp_path):
    """runc update side by side: its flags (sizes with suffixes, the CPU and pids values), the
    resources as JSON on stdin (devices in it left alone), the cgroup's values after each; a bad
    size, a bad number, an empty update, a stopped container, in runc's words and codes."""
    cg = "/sys/fs/cgroup"
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("u")
        path = f"/berth-test-{cid}"
        b = rt.bundle(["sleep", "30"], mutate=lambda c: c["linux"].update(cgroupsPath=path))
        rt("create", "-b", b, cid, check=True)
        log = tmp_path / f"{rt is runc}.json"
        files = [f"{cg}/memory{path}/memory.limit_in_bytes", f"{cg}/memory{path}/memory.memsw.limit_in_bytes",
                 f"{cg}/pids{path}/pids.max", f"{cg}/cpu{path}/cpu.cfs_quota_us", f"{cg}/cpu{path}/cpu.shares",
                 f"{cg}/cpuset{path}/cpuset.cpus", f"{cg}/devices{path}/devices.list"]

        def values():  # the first line of each (the device rules: all of them, in any order)
            return [open(f).read().split("\n")[0] for f in files[:-1]] + [sorted(open(files[-1]).read().split("\n"))]
        got = []
        for args, stdin in ((("--memory", "64m"), None),
                            (("--memory", "32m", "--memory-swap", "48m", "--pids-limit", "9", "--cpu-quota", "20000",
                              "--cpu-period", "100000", "--cpu-share", "300", "--cpuset-cpus", "0"), None),
                            (("-r", "-"), b'{"memory": {"limit": 40000000}, "pids": {"limit": 20}, '
                                          b'"devices": [{"allow": true, "access": "rwm"}]}'),
                            (("--memory", "abc"), None), (("--cpu-share", "x"), None), ((), None),
                            (("--memory", "-1"), None)):
            p = rt("update", *args, cid, input=stdin, extra_globals=("--log", str(log), "--log-format", "json"))
            lines = log.read_text().splitlines() if log.exists() else []
            got.append((p.returncode, json.loads(lines[-1])["msg"] if p.returncode else "", values()))
            log.unlink(missing_ok=True)
        rt("kill", cid, "KILL", check=True)
        wait_status(rt, cid, "stopped")
        p = rt("update", "--memory", "64m", cid, extra_globals=("--log", str(log), "--log-format", "json"))
        got.append((p.returncode, json.loads(log.read_text().splitlines()[-1])["msg"]))
        rt("delete", cid, check=True)
        seen[rt is runc] = got
    assert seen[False] == seen[True]
    assert seen[False][1][2][:6] == [str(32 << 20), str(48 << 20), "9", "20000", "300", "0"]


def test_exec_runs_in_the_container(runtime, tmp_path):
    b = runtime.bundle(["sleep", "30"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    p = runtime("exec", "--env", "X=1", "--cwd", "/tmp", cid, "sh", "-c", "echo $X $(pwd) $(hostname); exit 4")
    assert p.out == "1 /tmp berth\n" and p.returncode == 4
    p = runtime("exec", "-u", "65534:65534", cid, "id")
    assert p.out.startswith("uid=65534") and "gid=65534" in p.out
    # the same pid namespace as the init
    p = runtime("exec", cid, "sh", "-c", "cat /proc/1/cmdline")
    assert p.out.startswith("sleep")
    proc = {"args": ["sh", "-c", "echo from-process-json"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    p = runtime("exec", "--process", str(pf), cid)
    assert p.out == "from-process-json\n" and p.returncode == 0
    pidfile = tmp_path / "exec.pid"
    runtime("exec", "-d", "--pid-file", str(pidfile), cid, "sleep", "20", check=True)
    epid = int(pidfile.read_text())
    assert open(f"/proc/{epid}/cmdline").read().startswith("sleep")
    assert epid in json.loads(runtime("ps", "--format", "json", cid).out)
    p = runtime("exec", cid, "nosuchcommand")
    assert p.returncode != 0 and "executable file not found" in p.err


def test_exec_in_a_stopped_container_is_refused(runtime):
    b = runtime.bundle(["true"])
    cid = runtime.new_id()
    runtime("run", "--keep", "-b", b, cid, check=True)
    p = runtime("exec", cid, "true")
    assert p.returncode != 0 and "stopped" in p.err


def test_a_failed_execve_is_the_processs_own_failure_as_runc(runtime, runc):
    """runc 1.1's last step: the process's execve, after which the container (or the exec) has
    started. Its failure (a #! naming a missing interpreter, as a binary without its loader; a
    file that is no program; an argument list too long) is `exec PATH: <why>` on the process's
    stderr and exit status 1, for run and exec alike (berth-runc: its own words, 126/127, and an
    exec refused)."""
    seen = {}
    for rt in (runtime, runc):
        got = []
        for args, content in ((["/noint"], "#!/nonexistent/interpreter\n"), (["/garbage"], "\x7fELF\x02garbage"),
                              (["/bin/sh", "-c", "true", "x" * 200000], None)):
            b = rt.bundle(args)
            if content is not None:
                f = os.path.join(b, "rootfs", args[0].lstrip("/"))
                with open(f, "w") as fh:
                    fh.write(content)
                os.chmod(f, 0o755)
            p = rt("run", "-b", b, rt.new_id("x"))
            got.append((p.returncode, p.out, p.err))
        b = rt.bundle(["sleep", "30"])
        cid = rt.new_id("e")
        rt("run", "-d", "-b", b, cid, check=True)
        with open(os.path.join(b, "rootfs", "noint"), "w") as fh:
            fh.write("#!/nonexistent/interpreter\n")
        os.chmod(os.path.join(b, "rootfs", "noint"), 0o755)
        p = rt("exec", cid, "/noint")
        got.append((p.returncode, p.out, p.err))
        rt("delete", "-f", cid, check=True)
        seen[rt is runc] = got
    assert seen[False][0] == (1, "", "exec /noint: no such file or directory\n"), seen[False]
    assert seen[False] == seen[True]


def test_a_process_without_path_finds_only_what_it_names_as_runc(runtime, runc):
    """runc looks a bare command up in the process's PATH alone: without one (or an empty one)
    nothing is found (berth-runc searched a default PATH); a path with a slash is taken as it is."""
    seen = {}
    for rt in (runtime, runc):
        got = []
        for env, args in (([], ["true"]), (["PATH="], ["true"]), ([], ["/bin/true"]), (["PATH=/bin"], ["true"])):
            p = rt("run", "-b", rt.bundle(args, mutate=lambda c, env=env: c["process"].update(env=env)), rt.new_id("p"))
            err = p.err.replace('\\"', '"')  # (runc's log line escapes its quotes)
            got.append((p.returncode, 'exec: "true": executable file not found in $PATH' in err))
        seen[rt is runc] = got
    assert seen[False] == [(1, True), (1, True), (0, False), (0, False)], seen
    assert seen[False] == seen[True]


def test_create_reports_a_missing_executable_at_create_time(runtime):
    b = runtime.bundle(["/bin/nonexistent"])
    cid = runtime.new_id()
    p = runtime("create", "-b", b, cid)
    assert p.returncode != 0 and "nonexistent" in p.err and len(p.err.strip().splitlines()) == 1


def test_spec_writes_a_default_config(tmp_path, runtime):
    p = runtime("spec", "-b", str(tmp_path))
    assert p.returncode == 0
    c = json.loads((tmp_path / "config.json").read_text())
    assert c["process"]["args"] == ["sh"] and c["root"]["path"] == "rootfs"
    assert {n["type"] for n in c["linux"]["namespaces"]} == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    p = runtime("spec", "-b", str(tmp_path))
    assert p.returncode != 0 and "exists" in p.err
    rl = tmp_path / "rootless"
    rl.mkdir()
    runtime("spec", "--rootless", "-b", str(rl), check=True)
    c = json.loads((rl / "config.json").read_text())
    assert any(n["type"] == "user" for n in c["linux"]["namespaces"]) and c["linux"]["uidMappings"]


def test_features_is_json(runtime):
    f = json.loads(runtime("features", check=True).out)
    assert "createRuntime" in f["hooks"]
    assert "user" in f["linux"]["namespaces"]
    assert f["linux"]["seccomp"]["enabled"] is True
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert {"idmap", "ridmap", "rro", "tmpcopyup"} <= set(f["mountOptions"])
    assert f["linux"]["mountExtensions"]["idmap"]["enabled"] is True and f["linux"]["netDevices"]["enabled"] is True


def _log_lines(rt, log, steps):
    """Each step's exit code and the error line it adds to the JSON log (runc's
    --log/--log-format json, which containerd's shim reads)."""
    out = []
    for args in steps:
        before = len(log.read_text().splitlines()) if log.exists() else 0
        p = rt(*args, extra_globals=("--log", str(log), "--log-format", "json"), timeout=15)
        lines = log.read_text().splitlines()[before:] if log.exists() else []
        entries = [json.loads(x) for x in lines]
        for e in entries:
            assert e["level"] == "error" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]), e
        out.append((p.returncode, [e["msg"] for e in entries]))
    return out


def test_json_log_for_engines_as_runc(runtime, runc, tmp_path):
    """The same steps under berth-runc and runc 1.1: the same exit codes and the same log lines,
    the words containerd's shim passes on and matches (a kill of a stopped container is
    "container not running", which it takes for ErrNotFound; "does not exist"); create's errors
    after `runc create failed: `, the container process's after `unable to start container
    process: `, exec's after `exec failed: ` with exit code 255; a created container can be
    paused, and then is neither started nor exec'd into."""
    seen = {}
    for rt in (runtime, runc):
        cid, gone = rt.new_id(), rt.new_id()
        b = rt.bundle(["sleep", "30"])
        bad = rt.bundle(["nosuchcmd"])
        steps = [("create", "-b", bad, gone), ("start", gone), ("create", "-b", b, cid), ("create", "-b", b, cid),
                 ("pause", cid), ("start", cid), ("exec", cid, "true"), ("resume", cid), ("resume", cid),
                 ("start", cid), ("start", cid), ("exec", cid, "nosuchcmd"), ("exec", "--cwd", "/nonexist", cid, "true"),
                 ("kill", cid, "NOSIG"), ("delete", cid), ("kill", cid, "KILL")]
        got = _log_lines(rt, tmp_path / f"{rt is runc}.json", steps)
        deadline = time.monotonic() + 10
        while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        got += _log_lines(rt, tmp_path / f"{rt is runc}.json",
                          [("kill", cid, "KILL"), ("pause", cid), ("exec", cid, "true"), ("start", cid)])
        rt("delete", cid, check=True)
        seen[rt is runc] = [(code, [m.replace(cid, "ID") for m in msgs]) for code, msgs in got]
    assert seen[False] == seen[True]
    assert seen[True][0] == (1, ["runc create failed: unable to start container process: "
                                 'exec: "nosuchcmd": executable file not found in $PATH'])


def test_usage_errors_are_one_line(runtime):
    for args in (("create",), ("frobnicate",), ("kill",), ("create", "--bogus", "x"), ("exec", "x"), ("checkpoint", "x"),
                 ("events",)):
        p = runtime(*args)
        assert p.returncode != 0
        assert len(p.err.strip().splitlines()) == 1, p.err
        assert "Traceback" not in p.err


def test_run_with_terminal_proxies_the_pty(runtime):
    import pty
    import subprocess
    b = runtime.bundle(["sh", "-c", "tty; test -t 1 && echo on-a-tty"], terminal=True)
    cid = runtime.new_id()
    master, slave = pty.openpty()
    p = subprocess.Popen([runtime.binary, "--root", runtime.root, "run", "-b", b, cid],
                         stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if b"on-a-tty" in out:
            break
    assert p.wait(10) == 0
    os.close(master)
    assert b"/dev/pts/0" in out and b"on-a-tty" in out


def test_every_namespace_type_is_new(runtime):
    types = ["pid", "network", "ipc", "uts", "mount", "cgroup", "time"]

    def mutate(c):
        c["linux"]["namespaces"] = [{"type": t} for t in types]
    names = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "time"]
    b = runtime.bundle(["sh", "-c", " ".join(f"readlink /proc/self/ns/{n};" for n in names)], mutate=mutate)
    p = runtime("run", "-b", b, runtime.new_id(), check=True)
    inside = p.out.split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in names]
    assert len(inside) == len(host)
    for n, i, h in zip(names, inside, host):
        assert i.startswith(n + ":[") and i != h, (n, i, h)


def test_without_a_namespace_the_host_one_is_kept(runtime):
    def mutate(c):
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "network"]
    b = runtime.bundle(["readlink", "/proc/self/ns/net"], mutate=mutate)
    p = runtime("run", "-b", b, runtime.new_id(), check=True)
    assert p.out.strip() == os.readlink("/proc/self/ns/net")


def test_delete_removes_the_cgroup_in_every_hierarchy_its_create_found(runtime):
    """The state keeps the cgroup hierarchies the create found (as runc's keeps its cgroup
    paths): the delete removes the container's cgroup in each without reading mountinfo again.
    A state without them (an older create's) is deleted as before, from mountinfo."""
    root = "/sys/fs/cgroup"
    for older in (False, True):
        b = runtime.bundle(["sleep", "30"])
        cid = runtime.new_id()
        runtime("run", "-d", "-b", b, cid, check=True)
        path = os.path.join(runtime.root, cid, "state.json")
        with open(path) as f:
            st = json.load(f)
        mounts = [mp for _key, mp in st["cgroup_hier"]]
        assert mounts and all(os.path.dirname(mp) == root for mp in mounts)
        made = [d for d in (os.path.join(mp, st["cgroup_path"].lstrip("/")) for mp in mounts) if os.path.isdir(d)]
        assert made, st  # (the cgroup exists in the hierarchies it was made in)
        if older:
            del st["cgroup_hier"]
            with open(path + ".tmp", "w") as f:
                json.dump(st, f)
            os.rename(path + ".tmp", path)
        runtime("kill", cid, "KILL", check=True)
        assert wait_status(runtime, cid, "stopped")
        runtime("delete", cid, check=True)
        assert [d for d in made if os.path.exists(d)] == [], older


def test_exec_into_a_sub_cgroup_as_runc(runtime, runc):
    """exec --cgroup: the process joins a sub-cgroup that exists below the container's, in every
    hierarchy (PATH) or per controller (CONTROLLER[,CONTROLLER]:PATH); one that does not exist,
    an unknown controller, a path out of the container's cgroup, a PATH beside CONTROLLER:PATH
    ones, refused with status 255 and no process left (berth-runc had no --cgroup)."""
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("cg")
        path = f"/berth-test-{cid}"
        rt("run", "-d", "-b", rt.bundle(["sleep", "30"], mutate=lambda c: c["linux"].update(cgroupsPath=path)), cid,
           check=True)
        os.mkdir(f"/sys/fs/cgroup/memory{path}/sub")
        os.mkdir(f"/sys/fs/cgroup/pids{path}/sub2")
        got = []
        for args in (("--cgroup", "memory:sub"), ("--cgroup", "memory:/sub", "--cgroup", "pids:sub2"),
                     ("--cgroup", "memory,pids:sub"), ("--cgroup", "nope:sub"), ("--cgroup", "a:b:c"),
                     ("--cgroup", "sub", "--cgroup", "pids:sub2"), ("--cgroup", "memory:../.."),
                     ("--cgroup", "memory:")):
            p = rt("exec", *args, cid, "cat", "/proc/self/cgroup")
            lines = sorted(line.split(":", 1)[1] for line in p.out.splitlines()
                           if line.split(":")[1] in ("memory", "pids"))
            err = re.sub(r'^time="[^"]*" level=error msg="(.*)"$', r"\1", p.err.strip()).replace('\\"', '"')
            for prefix in ("exec failed: ", "berth-runc: ", "unable to create new parent process: "):
                err = err.replace(prefix, "")
            # a missing sub-cgroup: each says so in its words
            got.append((p.returncode, lines, "sub" if "/sub/" in err or "/sub " in err or err.endswith("/sub")
                        else err))
        rt("delete", "-f", cid, check=True)
        seen[rt is runc] = got
    assert seen[False][0] == (0, ["memory:/sub", "pids:/"], "")
    assert seen[False][1] == (0, ["memory:/sub", "pids:/sub2"], "")
    assert seen[False] == seen[True]


def test_run_no_subreaper_and_a_shared_pid_namespace_as_runc(runtime, runc):
    """A container without a PID namespace of its own whose init leaves a process behind: run
    re-parents the orphan to itself (a subreaper), or not with --no-subreaper, as runc; and the
    container's end takes the orphan and the cgroup with it (berth-runc left both: the orphan
    running on and the cgroup's removal failing busy)."""
    # (the container sees every process of the host: its orphan's command line is its own, not a
    # `sleep 30` or `sleep 300` another test's container runs meanwhile)
    script = ("(sleep 29.1357 &); sleep 0.3; for d in /proc/[0-9]*; do grep -q '^sleep.29\\.1357.$' $d/cmdline "
              "2>/dev/null && grep PPid $d/status && echo ${d#/proc/} > /tmp/orphan; done; true")

    def no_pidns(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    seen = {}
    for rt in (runtime, runc):
        got = []
        for flags in ((), ("--no-subreaper",)):
            b = rt.bundle(["sh", "-c", script], mutate=no_pidns)
            cid = rt.new_id("sr")
            p = subprocess.Popen([rt.binary, "--root", rt.root, "run", *flags, "-b", b, cid], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            out, err = p.communicate(timeout=30)
            ppid = int(out.decode().split()[-1])
            orphan = int(open(os.path.join(b, "rootfs", "tmp", "orphan")).read())
            gone = False
            for _ in range(100):
                try:
                    os.kill(orphan, 0)
                except ProcessLookupError:
                    gone = True
                    break
                time.sleep(0.02)
            got.append((p.returncode, ppid == p.pid, gone))
            if rt is runtime:
                assert err == b"", err
                assert not [h for h in os.listdir("/sys/fs/cgroup") if os.path.exists(f"/sys/fs/cgroup/{h}/{cid}")]
        seen[rt is runc] = got
    assert seen[False] == [(0, True, True), (0, False, True)]
    assert seen[False] == seen[True]


def test_socket_activation_passes_the_listening_sockets_as_runc(runtime, runc):
    """A runtime started by systemd's socket activation (LISTEN_FDS, LISTEN_PID naming it) hands
    the sockets to the container's init as fds 3.., before the --preserve-fds ones, with
    LISTEN_FDS=N and LISTEN_PID=1 (berth-runc closed them: the service found no socket)."""
    import socket
    script = "echo $LISTEN_FDS,$LISTEN_PID; for f in 3 4 5; do readlink /proc/self/fd/$f | cut -d: -f1; done; true"
    seen = {}
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        r, w = os.pipe()
        try:
            for rt in (runtime, runc):
                got = []
                for preserve in ((), ("--preserve-fds", "1")):
                    cid = rt.new_id("sa")
                    wrapper = 'exec 3<&$S 4<&$P; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"'
                    p = subprocess.run(["bash", "-c", wrapper, "bash", rt.binary, "--root", rt.root, "run", *preserve,
                                        "-b", rt.bundle(["sh", "-c", script]), cid],
                                       pass_fds=(srv.fileno(), r), capture_output=True, text=True, timeout=30,
                                       stdin=subprocess.DEVNULL, env=dict(os.environ, S=str(srv.fileno()), P=str(r)))
                    got.append((p.returncode, p.stdout.split()))
                seen[rt is runc] = got
        finally:
            os.close(r)
            os.close(w)
    assert seen[False] == [(0, ["1,1", "socket"]), (0, ["1,1", "socket", "pipe"])], seen
    assert seen[False] == seen[True]


def _in_own_session_with_a_key(desc):
    """preexec_fn: the runtime starts in a session keyring of its own holding a key only its
    possessors may view (what a caller's session keyring may hold: credentials)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    keyctl, add_key = (219, 217) if os.uname().machine == "aarch64" else (250, 248)

    def prepare():
        assert libc.syscall(keyctl, 1, None) > 0  # KEYCTL_JOIN_SESSION_KEYRING: a new anonymous one
        key = libc.syscall(add_key, b"user", desc.encode(), b"secret", 6, -3)  # into KEY_SPEC_SESSION_KEYRING
        assert key > 0
        assert libc.syscall(keyctl, 5, ctypes.c_int(key), ctypes.c_uint(0x3F000000)) == 0  # KEYCTL_SETPERM
    return prepare


def test_a_container_has_a_session_keyring_of_its_own_as_runc(runtime, runc):
    """runc gives each container a new session keyring ("_ses.<id>", which its execs join): the
    keys of the runtime's caller's session keyring are out of the container's reach (berth-runc's
    processes kept the caller's: a pod could read the keys of its engine's session, another pod's
    too). --no-new-keyring keeps the caller's."""
    import uuid
    desc = f"berth-probe-{uuid.uuid4().hex[:8]}"
    probe = f"grep -c {desc} /proc/keys; grep -c _ses /proc/keys; true"
    seen = {}

    def unmasked(c):
        c["linux"]["maskedPaths"] = [m for m in c["linux"].get("maskedPaths") or [] if m != "/proc/keys"]
    for rt in (runtime, runc):
        got = []
        for flags in ((), ("--no-new-keyring",)):
            cid = rt.new_id("kr")
            p = subprocess.run([rt.binary, "--root", rt.root, "run", *flags, "-b",
                                rt.bundle(["sh", "-c", probe], mutate=unmasked), cid],
                               preexec_fn=_in_own_session_with_a_key(desc), capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            got.append((p.returncode, p.stdout.split()[0]))
        cid = rt.new_id("kx")
        rt("run", "-d", "-b", rt.bundle(["sleep", "30"], mutate=unmasked), cid, check=True)
        p = subprocess.run([rt.binary, "--root", rt.root, "exec", cid, "sh", "-c", probe],
                           preexec_fn=_in_own_session_with_a_key(desc), capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        got.append((p.returncode, p.stdout.split()[0]))
        names = [line.split()[-2].rstrip(":").replace(cid, "ID") for line in open("/proc/keys") if f"_ses.{cid}:" in line]
        got.append(names)
        rt("delete", "-f", cid, check=True)
        seen[rt is runc] = got
    assert seen[False] == [(0, "0"), (0, "1"), (0, "0"), ["_ses.ID"]], seen
    assert seen[False] == seen[True]
