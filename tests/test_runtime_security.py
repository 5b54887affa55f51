"""berth-runc's security properties and its handling of bad bundles, checked from inside and outside."""

import json
import os
import subprocess
import tempfile
import time

import pytest


def processes_in(rootfs):
    """Pids of processes whose root directory is rootfs (a container left running)."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/root") == rootfs:
                    found.append(int(p))
            except OSError:
                pass
    return found


def run_with_fd3(runtime, args, path):
    """Run berth-runc with `path` open as fd 3 (as an engine passes fds with --preserve-fds)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(["sh", "-c", 'exec "$@" 3<"$F"', "sh", runtime.binary, "--root", runtime.root, *args],
                           stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=30, env=dict(os.environ, F=str(path)))
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read().decode(), err.read().decode()


def test_no_runtime_fd_leaks_into_the_container(runtime):
    b = runtime.bundle(["ls", "/proc/self/fd"])
    p = runtime("run", "-b", b, runtime.new_id(), check=True)
    # 0-2 are stdio, 3 is ls's own handle on /proc/self/fd
    assert p.out.split() == ["0", "1", "2", "3"]


def test_no_fd_leaks_into_an_exec_process(runtime):
    b = runtime.bundle(["sleep", "30"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    p = runtime("exec", cid, "ls", "/proc/self/fd", check=True)
    assert p.out.split() == ["0", "1", "2", "3"]


def test_preserve_fds_passes_exactly_those(runtime, tmp_path):
    b = runtime.bundle(["sh", "-c", "ls /proc/self/fd; cat <&3"])
    f = tmp_path / "data"
    f.write_text("through fd 3\n")
    code, out, err = run_with_fd3(runtime, ["run", "--preserve-fds", "1", "-b", b, runtime.new_id()], f)
    assert code == 0, err
    lines = out.split("\n")
    assert lines[-2] == "through fd 3"
    assert sorted(set(lines[:-2]) - {""}) == ["0", "1", "2", "3", "4"]


def test_cwd_outside_the_rootfs_is_refused(runtime, tmp_path):
    """A leaked directory fd used as cwd (CVE-2024-21626) must not put the process outside its root."""
    host = tmp_path / "host-dir"
    host.mkdir()
    b = runtime.bundle(["sh", "-c", "touch escaped; pwd"], mutate=lambda c: c["process"].update(cwd="/proc/self/fd/3"))
    code, out, err = run_with_fd3(runtime, ["run", "--preserve-fds", "1", "-b", b, runtime.new_id()], host)
    assert code != 0
    assert "outside" in err
    assert list(host.iterdir()) == []
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_mount_destination_symlinks_stay_inside_the_rootfs(runtime, tmp_path, kind):
    host = tmp_path / "host-target"
    host.mkdir()
    (host / "keep").write_text("host file\n")

    def mutate(c):
        c["mounts"].append({"destination": "/escape", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
        c["mounts"].append({"destination": "/escape2/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
    b = runtime.bundle(["sh", "-c", "touch /escape/pwned /escape2/sub/pwned && echo ok"], mutate=mutate)
    rootfs = os.path.join(b, "rootfs")
    target = str(host) if kind == "absolute" else os.path.relpath(str(host), rootfs)
    if kind == "relative":
        target = "../" * 20 + str(host).lstrip("/")
    os.symlink(target, os.path.join(rootfs, "escape"))
    os.symlink(target, os.path.join(rootfs, "escape2"))
    p = runtime("run", "-b", b, runtime.new_id())
    assert p.returncode == 0, p.err
    assert sorted(os.listdir(host)) == ["keep"]
    assert not os.path.ismount(host)
    # the mount was made inside the rootfs, where the symlink resolves when the rootfs is the root
    inside = os.path.join(rootfs, str(host).lstrip("/"))
    assert os.path.isdir(inside)


def test_bind_mount_onto_a_symlinked_file_stays_inside(runtime, tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("bound\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("host victim\n")

    def mutate(c):
        c["mounts"].append({"destination": "/etc/link.txt", "type": "bind", "source": str(src), "options": ["rbind", "ro"]})
    b = runtime.bundle(["cat", "/etc/link.txt"], mutate=mutate)
    os.symlink(str(victim), os.path.join(b, "rootfs", "etc", "link.txt"))
    p = runtime("run", "-b", b, runtime.new_id())
    assert p.returncode == 0, p.err
    assert p.out == "bound\n"
    assert victim.read_text() == "host victim\n" and not os.path.ismount(victim)


def test_proc_that_is_a_symlink_is_refused(runtime):
    b = runtime.bundle(["true"])
    rootfs = os.path.join(b, "rootfs")
    os.rmdir(os.path.join(rootfs, "proc"))
    os.symlink("/tmp", os.path.join(rootfs, "proc"))
    cid = runtime.new_id()
    p = runtime("run", "-b", b, cid)
    assert p.returncode != 0  # runc 1.1's words (side by side)
    assert p.err.strip() == ('berth-runc: error during container init: error mounting "proc" to rootfs at "/proc": '
                             'filesystem "proc" must be mounted on ordinary directory'), p.err
    assert not os.path.exists(os.path.join(runtime.root, cid))
    assert processes_in(rootfs) == []


@pytest.mark.parametrize("fake", ["file", "symlink", "other-device"])
def test_a_fake_dev_null_is_not_used_for_masking(runtime, fake):
    def mutate(c):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/dev" and not m["destination"].startswith("/dev/")]
        c["linux"]["maskedPaths"] = ["/proc/keys", "/proc/timer_list"]
    b = runtime.bundle(["true"], mutate=mutate)
    null = os.path.join(b, "rootfs", "dev", "null")
    if fake == "file":
        with open(null, "w") as f:
            f.write("not null")
    elif fake == "symlink":
        os.symlink("/etc/passwd", null)
    else:
        os.mknod(null, 0o666 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers
    cid = runtime.new_id()
    p = runtime("run", "-b", b, cid)
    assert p.returncode != 0
    assert "/dev/null" in p.err and len(p.err.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(runtime.root, cid))


def test_exec_process_is_not_dumpable_before_it_execs(runtime):
    """While the joining process is still berth's interpreter, nothing in the container may open
    /proc/<pid>/exe (the host's python) or its memory."""
    watcher = ("while true; do for p in /proc/[0-9]*; do "
               "e=$(readlink $p/exe 2>/dev/null); case \"$e\" in *python*) echo \"SEEN $p $e\";; esac; done; done")
    b = runtime.bundle(["sh", "-c", watcher + " > /tmp/seen 2>&1"])
    cid = runtime.new_id()
    runtime("run", "-d", "-b", b, cid, check=True)
    time.sleep(0.2)
    for _ in range(15):
        runtime("exec", cid, "true", check=True)
    time.sleep(0.2)
    seen = open(os.path.join(b, "rootfs", "tmp", "seen")).read()
    assert "SEEN" not in seen, seen


BAD = {
    "missing rootfs": (lambda b, c: os.rename(os.path.join(b, "rootfs"), os.path.join(b, "gone")), "rootfs"),
    "invalid json": (lambda b, c: open(os.path.join(b, "config.json"), "w").write("{not json"), "invalid JSON"),
    "missing config": (lambda b, c: os.unlink(os.path.join(b, "config.json")), "config.json"),
    "unknown namespace": (lambda b, c: c["linux"]["namespaces"].append({"type": "bogus"}), "bogus"),
    # a path of the bundle's own (a fixed one such as /nonexistent/dir may exist on a host where a
    # docker -v or a CRI mount of it made it)
    "bind source missing": (lambda b, c: c["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": os.path.join(b, "no-such-dir"), "options": ["rbind"]}),
        "no-such-dir"),
    "unknown filesystem": (lambda b, c: c["mounts"].append(
        {"destination": "/mnt", "type": "nosuchfs", "source": "x"}), "nosuchfs"),
    "no destination": (lambda b, c: c["mounts"].append(  # (a relative one is the root's, as runc's)
        {"destination": "", "type": "tmpfs", "source": "tmpfs"}), "destination"),
    "bad tmpfs option": (lambda b, c: c["mounts"].append(
        {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=lots"]}), "/mnt"),
    "unknown rlimit": (lambda b, c: c["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}),
                       "RLIMIT_BOGUS"),
    "empty args": (lambda b, c: c["process"].update(args=[]), "args"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundles_fail_in_one_line_and_leave_nothing(runtime, case):
    change, needle = BAD[case]
    b = runtime.bundle(["true"])
    cfg_path = os.path.join(b, "config.json")
    c = json.load(open(cfg_path))
    change(b, c)
    if os.path.exists(cfg_path) and case not in ("invalid json",):
        with open(cfg_path, "w") as f:
            json.dump(c, f)
    for cmd in ("create", "run"):
        cid = runtime.new_id()
        p = runtime(cmd, "-b", b, cid)
        assert p.returncode != 0
        lines = p.err.strip().splitlines()
        assert len(lines) == 1, p.err
        assert needle in lines[0], lines[0]
        assert "Traceback" not in p.err
        assert not os.path.exists(os.path.join(runtime.root, cid))
        for h in os.listdir("/sys/fs/cgroup"):
            assert not os.path.exists(os.path.join("/sys/fs/cgroup", h, cid))
        assert processes_in(os.path.join(b, "rootfs")) == []


def test_rlimit_above_the_hard_limit_is_a_clear_error(runtime):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    too_high = hard + 1 if hard != resource.RLIM_INFINITY else None
    if too_high is None:
        pytest.skip("no finite hard limit")
    b = runtime.bundle(["true"], mutate=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": too_high, "hard": too_high}]))
    cid = runtime.new_id()
    p = runtime("run", "-b", b, cid)
    assert p.returncode != 0
    assert "RLIMIT_NOFILE" in p.err and len(p.err.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(runtime.root, cid))


def _run_both(runtime, runc, args, mutate):
    seen = {}
    for rt in (runtime, runc):
        p = rt("run", "-b", rt.bundle(args, mutate=mutate), rt.new_id("s"))
        seen[rt is runc] = (p.returncode, p.out, p.err)
    return seen[False], seen[True]


@pytest.mark.parametrize("user", [{"uid": 4294967295, "gid": 0}, {"uid": 0, "gid": 2147483648},
                                  {"uid": 0, "gid": 0, "additionalGids": [4294967295]}])
def test_an_id_past_the_signed_range_is_refused_as_runc(runtime, runc, user):
    """runc refuses uids and gids above 2^31-1. 4294967295 is (uid_t)-1, which setresuid(2)
    reads as "leave it as it is": berth-runc ran such a process as root."""
    mine, theirs = _run_both(runtime, runc, ["id", "-u"], lambda c: c["process"].update(user=user))
    assert theirs[0] != 0 and "uids and gids must be in range 0-2147483647" in theirs[2]
    assert mine[0] != 0 and mine[1] == "" and "uids and gids must be in range 0-2147483647" in mine[2]


def test_more_supplementary_groups_than_the_kernel_takes_as_runc(runtime, runc):
    user = {"uid": 0, "gid": 0, "additionalGids": list(range(1, 70000))}
    mine, theirs = _run_both(runtime, runc, ["true"], lambda c: c["process"].update(user=user))
    assert theirs[0] != 0 and "unable to setup user: setgroups: invalid argument" in theirs[2]
    assert mine[0] != 0 and mine[2].strip() == "berth-runc: unable to setup user: setgroups: invalid argument"


@pytest.mark.skipif(os.path.exists("/sys/module/apparmor"), reason="the host has AppArmor")
def test_an_apparmor_profile_on_a_host_without_apparmor_fails_as_runc(runtime, runc):
    """A profile asked for is applied or the start fails (berth-runc ignored it: a process
    unconfined that asked for confinement)."""
    mine, theirs = _run_both(runtime, runc, ["echo", "ran"],
                             lambda c: c["process"].update(apparmorProfile="docker-default"))
    why = "unable to apply apparmor profile: apparmor failed to apply profile: write /proc/self/attr/exec: "
    assert theirs[0] != 0 and why in theirs[2]
    assert mine[0] != 0 and mine[1] == "" and why in mine[2]


@pytest.mark.skipif(os.path.exists("/sys/fs/selinux/enforce"), reason="the host has SELinux")
@pytest.mark.parametrize("where", ["process", "mount"])
def test_an_selinux_label_on_a_host_without_selinux_is_refused_as_runc(runtime, runc, where):
    def label(c):
        if where == "process":
            c["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
        else:
            c["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    mine, theirs = _run_both(runtime, runc, ["echo", "ran"], label)
    why = "selinux label is specified in config, but selinux is disabled or not supported"
    # (runc 1.1 refuses a process label so; a mount label fails its mounts' context= option)
    assert theirs[0] != 0 and theirs[1] == "" and (why in theirs[2] or where == "mount")
    assert mine[0] != 0 and mine[1] == "" and why in mine[2]


def test_recursive_mount_options_apply_to_the_whole_tree_as_runc(runtime, runc, tmp_path):
    """rro, rnoexec, rnosuid, rnodev, rnoatime (runc's recursive options, mount_setattr(2)) on
    an rbind whose source has a mount inside: both mounts get them; plain ro leaves the inner
    one as it is. berth-runc ignored them: an `rro` bind was writable, on the host's files."""
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "inner")], check=True)
    try:
        script = ("touch /x/a 2>/dev/null && echo top-rw || echo top-ro; "
                  "touch /x/inner/a 2>/dev/null && echo inner-rw || echo inner-ro; "
                  "grep -E ' /x(/inner)? ' /proc/self/mountinfo | awk '{print $5, $6}'")
        seen = {}
        for rt in (runtime, runc):
            got = []
            for opts in (["rbind", "rro"], ["rbind", "ro"], ["rbind", "rnoexec", "rnosuid", "rnodev", "rnoatime"],
                         ["rbind", "ro", "rrw"]):
                def mount(c, opts=opts):
                    c["mounts"].append({"destination": "/x", "type": "bind", "source": str(src), "options": opts})
                p = rt("run", "-b", rt.bundle(["sh", "-c", script], mutate=mount), rt.new_id("r"))
                got.append((p.returncode, p.out, p.err))
                for f in (src / "a", src / "inner" / "a"):
                    if f.exists():
                        f.unlink()
            seen[rt is runc] = got
        assert seen[False][0][1].startswith("top-ro\ninner-ro\n"), seen[False][0]
        assert seen[False][1][1].startswith("top-ro\ninner-rw\n"), seen[False][1]
        assert seen[False] == seen[True]
    finally:
        subprocess.run(["umount", str(src / "inner")], check=True)


@pytest.mark.skipif(os.path.exists("/sys/module/apparmor") or os.path.exists("/sys/fs/selinux/enforce"),
                    reason="the host has AppArmor or SELinux")
def test_exec_flags_for_labels_and_a_bad_env_as_runc(runtime, runc):
    """exec --apparmor and --process-label are applied or refused as runc does (berth-runc
    ignored both flags); `--env =x` in runc's words (a Python ValueError before)."""
    seen = {}
    for rt in (runtime, runc):
        cid = rt.new_id("x")
        rt("run", "-d", "-b", rt.bundle(["sleep", "30"]), cid, check=True)
        got = []
        for flags, why in ((["--apparmor", "docker-default"], "apparmor failed to apply profile: write /proc/self/attr/exec"),
                           (["--process-label", "system_u:system_r:container_t:s0"],
                            "selinux label is specified in config, but selinux is disabled or not supported"),
                           (["--env", "=x"], "environment variable name can't be empty: \"=x\"")):
            p = rt("exec", *flags, cid, "echo", "ran")
            got.append((p.returncode != 0, p.out, why in p.err.replace('\\"', '"')))
        rt("delete", "-f", cid, check=True)
        seen[rt is runc] = got
    assert seen[False] == [(True, "", True)] * 3, seen
    assert seen[False] == seen[True]
