#!/usr/bin/env python3
"""Issue 11's Docker SDK for Python behaviours, run against a private berthd and a private
dockerd 20.10 (Debian's docker.io) on this machine: how many pass on each.

Each behaviour is a short function over a docker.DockerClient that raises when the engine does
not do what dockerd does (dockerd is the reference: a behaviour it fails here is reported, not
hidden). Both engines get the same image (tests/data/busybox-layers.docker.tar), a private
docker-registry on 127.0.0.1 for push, and user-defined networks (dockerd runs with
--bridge=none --iptables=false, so nothing of the host changes). Everything is removed at the end.

Usage (root): bench/sdk_parity.py [--only NAME,...] [--no-docker] [--json]
Prints a Markdown table (behaviour, berthd, dockerd) and the totals for docs/benchmarks.md.
"""

import argparse
import io
import json
import os
import random
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
from daemon_fixtures import DATA, Daemon, Registry  # noqa: E402
from peer_dockerd import Dockerd  # noqa: E402

import docker  # noqa: E402

IMG = "busybox-layers:1"
CHECKS = []


def check(section):
    def deco(fn):
        CHECKS.append((section, fn.__name__, fn))
        return fn
    return deco


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def wait(pred, timeout=20, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def sleeper(c, name, **kw):
    return c.containers.run(IMG, ["sleep", "600"], name=name, detach=True, **kw)


def subnet4():
    return f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"


def prefix6():
    return "fd%02x:%x:%x::" % (random.getrandbits(8), random.getrandbits(16), random.getrandbits(16))


# --- networks ---

@check("networks")
def disconnect_then_connect_created(c, env):
    net = c.networks.create("par-n1")
    ct = c.containers.create(IMG, ["sleep", "600"], name="par-dc1", network="par-n1")
    net.disconnect(ct)
    net.connect(ct, aliases=["again"])
    ct.start()
    ct.reload()
    expect(ct.attrs["NetworkSettings"]["Networks"]["par-n1"]["IPAddress"], "no address after connect")


@check("networks")
def disconnect_then_connect_running(c, env):
    net = c.networks.create("par-n2")
    ct = sleeper(c, "par-dc2", network="par-n2")
    net.disconnect(ct)
    ct.reload()
    expect(ct.attrs["NetworkSettings"]["Networks"] == {}, "still on a network")
    expect(ct.attrs["HostConfig"]["NetworkMode"] == "par-n2", "network mode changed")
    net.connect(ct)
    ct.reload()
    expect(ct.attrs["NetworkSettings"]["Networks"]["par-n2"]["IPAddress"], "no address after connect")


@check("networks")
def disconnect_force_not_connected_is_an_error(c, env):
    net = c.networks.create("par-n3")
    ct = c.containers.create(IMG, ["true"], name="par-dc3")
    try:
        net.disconnect(ct, force=True)
    except docker.errors.APIError:
        return
    raise AssertionError("no error")


@check("networks")
def ipv6_dual_stack_and_ip6(c, env):
    v6 = prefix6()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet4()),
                                                 docker.types.IPAMPool(subnet=v6 + "/64", gateway=v6 + "1")])
    net = c.networks.create("par-v6", enable_ipv6=True, ipam=ipam)
    net.reload()
    expect(net.attrs["EnableIPv6"] is True, "EnableIPv6")
    cid = c.api.create_container(IMG, ["sleep", "600"], name="par-v6c", host_config=c.api.create_host_config(
        network_mode="par-v6"), networking_config=c.api.create_networking_config(
        {"par-v6": c.api.create_endpoint_config(ipv6_address=v6 + "10")}))["Id"]
    ct = c.containers.get(cid)
    ct.start()
    ct.reload()
    ep = ct.attrs["NetworkSettings"]["Networks"]["par-v6"]
    expect(ep["GlobalIPv6Address"] == v6 + "10" and ep["IPv6Gateway"] == v6 + "1", ep)
    code, out = ct.exec_run(["ip", "-6", "addr", "show"])
    expect(f"{v6}10/64" in out.decode(), out)


@check("networks")
def ipam_auxiliary_addresses(c, env):
    s = subnet4()
    aux = {"router": s.rsplit(".", 1)[0] + ".2"}
    net = c.networks.create("par-aux", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=s, aux_addresses=aux)]))
    net.reload()
    expect(net.attrs["IPAM"]["Config"][0].get("AuxiliaryAddresses") == aux, net.attrs["IPAM"])


@check("networks")
def endpoint_driver_opts_and_links(c, env):
    net = c.networks.create("par-eo")
    sleeper(c, "par-eo-web", network="par-eo")
    cid = c.api.create_container(IMG, ["sleep", "600"], name="par-eo-cli", host_config=c.api.create_host_config(
        network_mode="par-eo"), networking_config=c.api.create_networking_config(
        {"par-eo": c.api.create_endpoint_config(links=[("par-eo-web", "site")], driver_opt={"com.example.x": "1"})}))
    ct = c.containers.get(cid["Id"])
    ct.start()
    ct.reload()
    ep = ct.attrs["NetworkSettings"]["Networks"]["par-eo"]
    expect(ep["DriverOpts"] == {"com.example.x": "1"}, ep)
    expect(ep["Links"] == ["par-eo-web:site"], ep)
    code, out = ct.exec_run(["ping", "-c1", "-W2", "site"])
    expect(code == 0, out)


@check("networks")
def mac_address_of_a_created_container(c, env):
    mac = "02:42:ac:11:00:99"
    ct = c.containers.create(IMG, ["sleep", "600"], name="par-mac", mac_address=mac)
    ct.reload()
    expect(ct.attrs["Config"].get("MacAddress") == mac, ct.attrs["Config"].get("MacAddress"))


@check("networks")
def network_names_docker_allows(c, env):
    for i, n in enumerate(("par a b", "par:c", "par-ünï")):
        c.networks.create(n, ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=subnet4())]))
    names = {n.name for n in c.networks.list()}
    expect({"par a b", "par:c", "par-ünï"} <= names, names)


@check("networks")
def swarm_endpoints_503(c, env):
    for call in (c.api.inspect_swarm, c.api.nodes, c.api.services, c.api.tasks, c.api.secrets, c.api.configs):
        try:
            call()
        except docker.errors.APIError as e:
            expect(e.status_code == 503, f"{call.__name__}: {e.status_code}")
            continue
        raise AssertionError(f"{call.__name__}: no error")


# --- images ---

@check("images")
def save_by_id_no_repo_tags(c, env):
    img = c.images.get(IMG)
    data = b"".join(c.api.get_image(img.id))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = json.load(tf.extractfile("manifest.json"))
    expect(not m[0].get("RepoTags"), m[0].get("RepoTags"))


@check("images")
def load_non_tar_error_in_stream(c, env):
    try:
        c.images.load(b"this is not a tar archive\n")
    except docker.errors.ImageLoadError:
        return
    except docker.errors.APIError as e:
        raise AssertionError(f"a {e.status_code}, not an error in the stream")
    raise AssertionError("no error")


@check("images")
def load_progress(c, env):
    with open(os.path.join(DATA, "busybox-layers.docker.tar"), "rb") as f:
        data = f.read()
    c.images.remove(IMG)  # its layers are new again
    msgs = list(c.api.load_image(data, quiet=False))
    expect(any(m.get("status") == "Loading layer" and m.get("progressDetail", {}).get("total") for m in msgs), msgs)


@check("images")
def push_progress_and_aux(c, env):
    target = f"{env['registry']}/par/{env['name']}"
    c.images.get(IMG).tag(target, "1")
    msgs = list(c.api.push(target, tag="1", stream=True, decode=True))
    expect(any(m.get("status") == "Pushing" and m.get("progressDetail", {}).get("total") for m in msgs), msgs)
    expect(any((m.get("aux") or {}).get("Digest") for m in msgs), msgs)


# --- exec and attach streams ---

@check("exec")
def exec_output_never_lost(c, env):
    ct = sleeper(c, "par-ex1")
    for i in range(20):
        code, out = ct.exec_run(["echo", f"l{i}"])
        expect(out == f"l{i}\n".encode(), (i, out))


@check("exec")
def exec_start_tty_decides_framing(c, env):
    ct = sleeper(c, "par-ex2")
    eid = c.api.exec_create(ct.id, ["echo", "plain"], tty=False)["Id"]
    out = c.api.exec_start(eid, tty=True)
    expect(out == b"plain\n", out)


@check("exec")
def exec_missing_binary_126(c, env):
    ct = sleeper(c, "par-ex3")
    eid = c.api.exec_create(ct.id, ["nosuch"])["Id"]
    out = c.api.exec_start(eid)
    expect(b"executable file not found" in out, out)
    expect(c.api.exec_inspect(eid)["ExitCode"] in (126, 127), c.api.exec_inspect(eid)["ExitCode"])


def _attach_raw(c, cid, keys):
    s = c.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": keys})
    sock = s._sock if hasattr(s, "_sock") else s
    return sock


@check("exec")
def attach_detach_keys(c, env):
    ct = c.containers.run(IMG, ["sh"], name="par-dk", detach=True, tty=True, stdin_open=True)
    sock = _attach_raw(c, ct.id, "ctrl-x")
    sock.settimeout(10)
    sock.sendall(b"echo hi$((40+2))\n")
    out = b""
    while b"hi42" not in out:
        d = sock.recv(4096)
        expect(d, out)
        out += d
    sock.sendall(b"\x18")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if not sock.recv(4096):
                break
        except (socket.timeout, OSError):
            break
    else:
        raise AssertionError("still attached")
    sock.close()
    ct.reload()
    expect(ct.attrs["State"]["Running"], "not running")


@check("exec")
def exec_detach_keys_recorded(c, env):
    ct = sleeper(c, "par-edk")
    eid = c.api.exec_create(ct.id, ["sh"], stdin=True, tty=True, detach_keys="ctrl-a")["Id"]
    # dockerd shows the keys' bytes, base64-encoded (a Go []byte)
    expect(c.api.exec_inspect(eid)["DetachKeys"] == "AQ==", c.api.exec_inspect(eid)["DetachKeys"])


# --- containers (the other helpers' part of the issue) ---

@check("containers")
def healthcheck_state_health(c, env):
    ct = c.containers.run(IMG, ["sleep", "600"], name="par-hc", detach=True,
                          healthcheck={"test": ["CMD", "true"], "interval": 500_000_000, "retries": 3})
    wait(lambda: (ct.reload() or ct.attrs["State"].get("Health") or {}).get("Status") == "healthy", 20, "healthy")


@check("containers")
def commit_container(c, env):
    ct = c.containers.run(IMG, ["sh", "-c", "echo x > /committed"], name="par-commit", detach=True)
    ct.wait()
    img = ct.commit("par-committed", "1")
    out = c.containers.run(img.id, ["cat", "/committed"], remove=True)
    expect(out == b"x\n", out)


@check("containers")
def update_container(c, env):
    ct = sleeper(c, "par-upd")
    ct.update(mem_limit="64m", memswap_limit="128m")
    ct.reload()
    expect(ct.attrs["HostConfig"]["Memory"] == 64 << 20, ct.attrs["HostConfig"]["Memory"])


@check("containers")
def export_container(c, env):
    ct = c.containers.create(IMG, ["true"], name="par-exp")
    data = b"".join(ct.export())
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        expect(any(n.lstrip("./") == "bin/busybox" for n in tf.getnames()), "no bin/busybox")


@check("containers")
def system_df(c, env):
    df = c.df()
    expect("Images" in df and "Containers" in df and "Volumes" in df, list(df))


@check("containers")
def stats_networks_key(c, env):
    net = c.networks.create("par-st")
    ct = sleeper(c, "par-st", network="par-st")
    st = ct.stats(stream=False)
    expect("networks" in st, list(st))


@check("containers")
def rmi_of_used_image_conflict(c, env):
    c.images.get(IMG).tag("par-used", "1")
    c.containers.create("par-used:1", ["true"], name="par-used")
    try:
        c.images.remove("par-used:1")
        c.images.get(IMG).tag("par-used", "1")
    except docker.errors.APIError as e:
        expect(e.status_code == 409, e.status_code)
        return
    # docker untags a name other images share; removing by ID is what conflicts
    try:
        c.images.remove(c.images.get(IMG).id)
    except docker.errors.APIError as e:
        expect(e.status_code == 409, e.status_code)
        return
    raise AssertionError("removed")


@check("containers")
def restart_policy_bogus_refused(c, env):
    try:
        c.containers.create(IMG, ["true"], name="par-rp", restart_policy={"Name": "bogus"})
    except docker.errors.APIError as e:
        expect(400 <= e.status_code < 500, e.status_code)
        return
    raise AssertionError("accepted")


@check("containers")
def log_driver_unknown_refused(c, env):
    try:
        c.containers.create(IMG, ["true"], name="par-ld", log_config={"Type": "bogus-driver"})
    except docker.errors.APIError as e:
        expect(400 <= e.status_code < 500, e.status_code)
        return
    raise AssertionError("accepted")


def _run_out(c, name, cmd, **kw):
    return c.containers.run(IMG, ["sh", "-c", cmd], name=name, remove=True, **kw).decode()


@check("containers")
def sysctl_applied(c, env):
    out = _run_out(c, "par-sysctl", "cat /proc/sys/kernel/shm_rmid_forced", sysctls={"kernel.shm_rmid_forced": "1"})
    expect(out.strip() == "1", out)


@check("containers")
def group_add_applied(c, env):
    out = _run_out(c, "par-grp", "id -G", group_add=["1234"])
    expect("1234" in out.split(), out)


@check("containers")
def shm_size_applied(c, env):
    out = _run_out(c, "par-shm", "df -k /dev/shm | tail -1", shm_size="32m")
    expect(out.split()[1] == "32768", out)


@check("containers")
def oom_score_adj_applied(c, env):
    out = _run_out(c, "par-oom", "cat /proc/self/oom_score_adj", oom_score_adj=300)
    expect(out.strip() == "300", out)


@check("containers")
def domainname_applied(c, env):
    out = _run_out(c, "par-dom", "cat /proc/sys/kernel/domainname", domainname="example.org")
    expect(out.strip() == "example.org", out)


@check("containers")
def pid_host(c, env):
    out = _run_out(c, "par-pid", "cat /proc/1/comm", pid_mode="host")
    expect(out.strip() not in ("sh", "cat"), out)


@check("containers")
def ipc_host(c, env):
    mine = os.readlink("/proc/self/ns/ipc")
    out = _run_out(c, "par-ipc", "readlink /proc/self/ns/ipc", ipc_mode="host")
    expect(out.strip() == mine, (out, mine))


# --- running ---

def cleanup(c):
    for ct in c.containers.list(all=True):
        try:
            ct.remove(force=True)
        except docker.errors.APIError:
            pass
    for n in c.networks.list():
        if n.name.startswith("par"):
            try:
                n.remove()
            except docker.errors.APIError:
                pass
    for img in c.images.list():
        if any(t.startswith(("par-", "par/")) or "/par/" in t for t in img.tags) and IMG not in img.tags:
            try:
                c.images.remove(img.id, force=True)
            except docker.errors.APIError:
                pass


def run_all(name, host, registry, only):
    c = docker.DockerClient(base_url=host, timeout=120)
    results = {}
    try:
        with open(os.path.join(DATA, "busybox-layers.docker.tar"), "rb") as f:
            c.images.load(f.read())
        for section, cname, fn in CHECKS:
            if only and cname not in only:
                continue
            try:
                fn(c, {"registry": registry, "name": name})
                results[cname] = (True, "")
            except Exception as e:  # noqa: BLE001 (a behaviour that fails, whatever the way)
                msg = f"{type(e).__name__}: {e}".splitlines()[0][:160]
                results[cname] = (False, msg)
                if os.environ.get("SDK_PARITY_DEBUG"):
                    traceback.print_exc()
            finally:
                cleanup(c)
            print(f"{name:8} {'pass' if results[cname][0] else 'FAIL'} {cname} {results[cname][1]}",
                  file=sys.stderr, flush=True)
    finally:
        cleanup(c)
        c.close()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    work = tempfile.mkdtemp(prefix="berth-sdk-parity-")
    engines = {}
    reg = d = dk = None
    try:
        reg = Registry(os.path.join(work, "registry"))
        os.makedirs(reg.base, exist_ok=True)
        reg.start()
        d = Daemon(os.path.join(work, "berthd")).start()
        engines["berthd"] = run_all("berthd", d.host, reg.addr, only)
        if not a.no_docker and shutil.which("dockerd"):
            dk = Dockerd(os.path.join(work, "dockerd"))
            engines["dockerd"] = run_all("dockerd", dk.host, reg.addr, only)
    finally:
        if dk:
            dk.stop()
        if d:
            d.cleanup()
        if reg:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    names = [n for _, n, _ in CHECKS if not only or n in only]
    sections = {n: s for s, n, _ in CHECKS}
    if a.json:
        print(json.dumps(engines, indent=1))
    cols = list(engines)
    print("| section | behaviour | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for n in names:
        print(f"| {sections[n]} | {n} | " + " | ".join("pass" if engines[e][n][0] else "fail" for e in cols) + " |")
    print("| | **total** | " + " | ".join(f"**{sum(ok for ok, _ in engines[e].values())}/{len(names)}**"
                                         for e in cols) + " |")
    for e in cols:
        for n in names:
            if not engines[e][n][0]:
                print(f"- {e} {n}: {engines[e][n][1]}")


if __name__ == "__main__":
    main()
