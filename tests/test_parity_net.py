"""Docker parity (issue 11) for networks, images, swarm endpoints and exec/attach streams, as
users of the real docker CLI and the Docker SDK for Python observe it against berthd; dockerd
20.10's behaviour is the reference each test encodes.

Traffic goes only to 127.0.0.1 and to containers these tests create."""

import json
import os
import subprocess

import pytest
from daemon_fixtures import DATA, registry, shared_berthd, wait_for  # noqa: F401 (fixtures)
from peer_dockerd import dockerd  # noqa: F401 (fixture)

IMG = "busybox-layers:1"


@pytest.fixture(scope="module")
def daemon(shared_berthd):
    shared_berthd.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    return shared_berthd


@pytest.fixture
def d(daemon):
    try:
        yield daemon
    finally:
        ids = daemon.berth("ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            daemon.berth("rm", "-f", *ids)
        names = daemon.berth("network", "ls", "-q", "--filter", "type=custom").out.split()
        if names:
            daemon.berth("network", "rm", *names)


def inspect(d, ref):
    return json.loads(d.docker("inspect", ref, check=True).out)[0]


def addrs(d, name):
    """The IPv4 interfaces a running container has: {ifname: address}."""
    out = d.docker("exec", name, "ip", "-o", "-4", "addr", check=True).out
    return {f[1]: f[3].split("/")[0] for f in (line.split() for line in out.splitlines())}


# --- disconnect / connect (what docker-compose does on `up`) ---

@pytest.mark.parametrize("running", [False, True])
def test_disconnect_last_network_then_connect_again(d, running):
    d.docker("network", "create", "n1", check=True)
    d.docker("create", "--name", "c1", "--network", "n1", IMG, "sleep", "600", check=True)
    if running:
        d.docker("start", "c1", check=True)
    d.docker("network", "disconnect", "n1", "c1", check=True)
    info = inspect(d, "c1")
    # the network mode stays as asked; the container is simply on no network
    assert info["HostConfig"]["NetworkMode"] == "n1"
    assert info["NetworkSettings"]["Networks"] == {}
    if running:
        assert set(addrs(d, "c1")) == {"lo"}
    # a second disconnect is an error, with or without --force (dockerd 20.10's words: its daemon's for
    # a container that does not run, libnetwork's for one that does)
    for extra in ([], ["--force"]):
        p = d.docker("network", "disconnect", *extra, "n1", "c1")
        words = "is not connected to network n1" if running else "is not connected to the network n1"
        assert p.returncode != 0 and words in p.err, p.err
    p = d.docker("network", "connect", "--alias", "again", "n1", "c1")
    assert p.returncode == 0, p.err
    if not running:
        d.docker("start", "c1", check=True)
    info = inspect(d, "c1")
    assert info["HostConfig"]["NetworkMode"] == "n1"
    ep = info["NetworkSettings"]["Networks"]["n1"]
    assert ep["IPAddress"] and "again" in ep["Aliases"]
    assert ep["IPAddress"] in addrs(d, "c1").values()
    # and the name answers on that network
    p = d.docker("run", "--rm", "--network", "n1", IMG, "ping", "-c1", "-W2", "again")
    assert p.returncode == 0, p.out + p.err


def test_default_bridge_disconnected_and_connected_again(d):
    d.docker("create", "--name", "c2", IMG, "sleep", "600", check=True)
    d.docker("network", "disconnect", "bridge", "c2", check=True)
    assert inspect(d, "c2")["HostConfig"]["NetworkMode"] == "default"
    d.docker("start", "c2", check=True)
    assert set(addrs(d, "c2")) == {"lo"}
    d.docker("network", "connect", "bridge", "c2", check=True)
    nets = inspect(d, "c2")["NetworkSettings"]["Networks"]
    assert list(nets) == ["bridge"] and nets["bridge"]["IPAddress"] in addrs(d, "c2").values()


def _run_rm_thrice(e, net):
    """Three `run --rm` on net one after the other: each one's address, and how many links its
    bridge had right after it returned."""
    e.docker("network", "create", net, check=True)
    try:
        bridge = "br-" + e.docker("network", "inspect", "-f", "{{.Id}}", net, check=True).out.strip()[:12]
        seen = []
        for _ in range(3):
            addr = e.docker("run", "--rm", "--network", net, IMG, "sh", "-c",
                            "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4", check=True).out.strip()
            links = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True,
                                   check=True).stdout.splitlines()
            seen.append((addr.split(".")[-1], len(links)))
        return seen
    finally:
        e.docker("network", "rm", net)


def test_run_rm_returns_with_its_network_released_as_dockerd(d, dockerd):
    """When `run --rm` returns, the container's veth has left its bridge and its address is free:
    the next container gets the same one, as dockerd 20.10's (its Cleanup before its auto-removal).
    berthd released a --rm container's network after its removal's answer: the veth was still on
    the bridge when the client returned."""
    dockerd.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    theirs = _run_rm_thrice(dockerd, "rmnet")
    assert theirs == [("2/26", 0)] * 3
    assert _run_rm_thrice(d, "rmnet") == [("2/24", 0)] * 3
    # and on the default network (no embedded DNS there holding the container's namespace)
    d.docker("run", "--rm", IMG, "true", check=True)
    assert subprocess.run(["ip", "-o", "link", "show", "master", d.bridge], capture_output=True, text=True,
                          check=True).stdout == ""


def test_rm_of_a_container_another_joined_as_dockerd(d, dockerd):
    """rm -f of a container whose network namespace another container joined (--network
    container:<it>): its veth goes with it, the other is left with lo alone, as dockerd 20.10's.
    (The namespace outlives the removal there: berthd deletes the veth itself.)"""
    dockerd.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)

    def observe(e):
        e.docker("network", "create", "jnet", check=True)
        try:
            bridge = "br-" + e.docker("network", "inspect", "-f", "{{.Id}}", "jnet", check=True).out.strip()[:12]
            e.docker("run", "-d", "--name", "j1", "--network", "jnet", IMG, "sleep", "60", check=True)
            e.docker("run", "-d", "--name", "j2", "--network", "container:j1", IMG, "sleep", "60", check=True)
            e.docker("rm", "-f", "j1", check=True)
            links = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True,
                                   check=True).stdout
            return links, e.docker("exec", "j2", "sh", "-c", "ip -o link | cut -d' ' -f2", check=True).out
        finally:
            e.docker("rm", "-f", "j1", "j2")
            e.docker("network", "rm", "jnet")
    ours = observe(d)
    assert ours == ("", "lo:\n")
    assert observe(dockerd) == ours


def test_the_aux_address_default_gateway_is_the_containers_route_as_dockerd(d, dockerd):
    """--aux-address DefaultGatewayIPv4=X: the containers' default route goes by X (libnetwork's
    bridge driver), an internal network's too; the name is case-sensitive; X may not be the
    network's gateway. As dockerd 20.10 (the same subnets, one engine after the other)."""
    dockerd.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    script = "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route"

    def observe(e):
        out = []
        for net, extra in (("10.176.3", ["--aux-address", "DefaultGatewayIPv4=10.176.3.2"]),
                           ("10.176.7", ["--internal", "--aux-address", "DefaultGatewayIPv4=10.176.7.9"]),
                           ("10.176.8", ["--aux-address", "defaultgatewayipv4=10.176.8.9"])):
            e.docker("network", "create", "--subnet", net + ".0/24", *extra, "gwnet", check=True)
            try:
                out.append(e.docker("run", "--rm", "--network", "gwnet", IMG, "sh", "-c", script, check=True).out)
                out.append(e.docker("network", "inspect", "-f", "{{json .IPAM.Config}}", "gwnet", check=True).out)
            finally:
                e.docker("network", "rm", "gwnet", check=True)
        p = e.docker("network", "create", "--subnet", "10.176.6.0/24", "--gateway", "10.176.6.1", "--aux-address",
                     "DefaultGatewayIPv4=10.176.6.1", "gwnet")
        out.append((p.returncode, p.err))
        return out
    ours = observe(d)
    assert ours[0] == ("10.176.3.3/24\ndefault via 10.176.3.2 dev eth0 \n"
                       "10.176.3.0/24 dev eth0 scope link  src 10.176.3.3 \n")
    assert ours[2] == ("10.176.7.2/24\ndefault via 10.176.7.9 dev eth0 \n"
                       "10.176.7.0/24 dev eth0 scope link  src 10.176.7.2 \n")
    assert ours[6] == (1, "Error response from daemon: failed to allocate secondary ip address "
                          "(DefaultGatewayIPv4:10.176.6.1): Address already in use\n")
    assert observe(dockerd) == ours


# --- IPv6, dual stack, auxiliary addresses ---

def _v6_prefix():
    import random
    return "fd%02x:%x:%x::" % (random.getrandbits(8), random.getrandbits(16), random.getrandbits(16))


def _v4_subnet():
    import random
    return f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"


def test_dual_stack_network_ip6_aux_addresses(d):
    v6, v4 = _v6_prefix(), _v4_subnet()
    base4 = v4.rsplit(".", 1)[0]
    p = d.docker("network", "create", "--ipv6", "--subnet", v4, "--subnet", v6 + "/64", "--gateway", v6 + "1",
                 "--aux-address", f"router={base4}.2", "--aux-address", f"router6={v6}2", "ds")
    assert p.returncode == 0, p.err
    net = json.loads(d.docker("network", "inspect", "ds", check=True).out)[0]
    assert net["EnableIPv6"] is True
    cfg = net["IPAM"]["Config"]
    assert [c["Subnet"] for c in cfg] == [v4, v6 + "/64"]
    assert cfg[0]["AuxiliaryAddresses"] == {"router": f"{base4}.2"}
    assert cfg[1]["Gateway"] == v6 + "1" and cfg[1]["AuxiliaryAddresses"] == {"router6": v6 + "2"}

    d.docker("run", "-d", "--name", "ca", "--network", "ds", "--ip6", v6 + "10", IMG, "sleep", "600", check=True)
    d.docker("run", "-d", "--name", "cb", "--network", "ds", IMG, "sleep", "600", check=True)
    ep = inspect(d, "ca")["NetworkSettings"]["Networks"]["ds"]
    assert ep["GlobalIPv6Address"] == v6 + "10" and ep["GlobalIPv6PrefixLen"] == 64
    assert ep["IPv6Gateway"] == v6 + "1" and ep["IPAMConfig"]["IPv6Address"] == v6 + "10"
    epb = inspect(d, "cb")["NetworkSettings"]["Networks"]["ds"]
    # the auxiliary addresses (and the gateways) are never handed out
    for e in (ep, epb):
        assert e["IPAddress"] not in (f"{base4}.1", f"{base4}.2")
        assert e["GlobalIPv6Address"] not in (v6 + "1", v6 + "2") and e["GlobalIPv6Address"].startswith(v6)
    out = d.docker("exec", "ca", "ip", "-o", "-6", "addr", "show", "eth0", check=True).out
    assert f"{v6}10/64" in out
    p = d.docker("exec", "cb", "ping", "-c1", "-W2", v6 + "10")
    assert p.returncode == 0, p.out + p.err
    # the embedded DNS answers AAAA with the v6 address
    p = d.docker("exec", "cb", "ping", "-6", "-c1", "-W2", "ca")
    assert p.returncode == 0 and v6 + "10" in p.out, p.out + p.err
    p = d.docker("exec", "cb", "ping", "-4", "-c1", "-W2", "ca")
    assert p.returncode == 0 and ep["IPAddress"] in p.out, p.out + p.err
    ctrs = json.loads(d.docker("network", "inspect", "ds", check=True).out)[0]["Containers"]
    assert sorted(c["IPv6Address"] for c in ctrs.values()) == sorted(
        [v6 + "10/64", epb["GlobalIPv6Address"] + "/64"])
    # an address outside the subnet, and --ip6 on the default bridge: refused
    p = d.docker("run", "--rm", "--network", "ds", "--ip6", "fd99::1", IMG, "true")
    assert p.returncode != 0 and "fd99::1" in p.err
    p = d.docker("run", "--rm", "--ip6", v6 + "20", IMG, "true")
    assert p.returncode != 0 and "user defined networks" in p.err


def test_ipv6_needs_a_subnet_and_a_v6_subnet_without_ipv6_is_only_recorded(d):
    p = d.docker("network", "create", "--ipv6", "nov6")
    assert p.returncode != 0 and "IPv6 address pool" in p.err
    v6 = _v6_prefix()
    d.docker("network", "create", "--subnet", v6 + "/64", "off6", check=True)
    net = json.loads(d.docker("network", "inspect", "off6", check=True).out)[0]
    assert net["EnableIPv6"] is False and [c["Subnet"] for c in net["IPAM"]["Config"]][1:] == [v6 + "/64"]
    d.docker("run", "-d", "--name", "cc", "--network", "off6", IMG, "sleep", "600", check=True)
    assert inspect(d, "cc")["NetworkSettings"]["Networks"]["off6"]["GlobalIPv6Address"] == ""
    p = d.docker("network", "create", "--subnet", v6 + "/64", "--aux-address", "x=10.0.0.1", "bad")
    assert p.returncode != 0


# --- names, endpoint settings ---

def test_network_names_docker_allows(d):
    names = ["my.net_1-x", "UPPER", "a:b", "with space", "ünï", "_u", "x,y@z", "n" * 70]
    base = _v4_subnet().rsplit(".", 1)[0]
    for i, n in enumerate(names):
        p = d.docker("network", "create", "--subnet", f"{base}.{16 * i}/28", n)
        assert p.returncode == 0, (n, p.err)
    listed = d.docker("network", "ls", "--format", "{{.Name}}", check=True).out.splitlines()
    assert set(names) <= set(listed)
    d.docker("run", "-d", "--name", "ww", "--network", "with space", IMG, "sleep", "600", check=True)
    assert list(inspect(d, "ww")["NetworkSettings"]["Networks"]) == ["with space"]
    p = d.docker("run", "--rm", "--network", "with space", IMG, "ping", "-c1", "-W2", "ww")
    assert p.returncode == 0, p.out + p.err
    d.docker("rm", "-f", "ww", check=True)
    for n in names:
        d.docker("network", "rm", n, check=True)
    p = d.docker("network", "create", "bad\tname")
    assert p.returncode != 0 and len(p.err.strip().splitlines()) == 1


def test_mac_address_of_a_created_container(d):
    d.docker("network", "create", "m1", check=True)
    mac = "02:42:ac:11:00:99"
    d.docker("create", "--name", "mm", "--network", "m1", "--mac-address", mac, IMG, "sleep", "600", check=True)
    assert inspect(d, "mm")["NetworkSettings"]["Networks"]["m1"]["MacAddress"] == mac
    d.docker("start", "mm", check=True)
    assert inspect(d, "mm")["NetworkSettings"]["Networks"]["m1"]["MacAddress"] == mac
    assert mac in d.docker("exec", "mm", "cat", "/sys/class/net/eth0/address", check=True).out


PREDEFINED_ONLY = "user specified IP address is supported on user defined networks only"


@pytest.mark.parametrize("net", ["bridge", "none", "host"])
def test_an_address_on_a_predefined_network_fails_the_start_as_dockerd(d, net):
    """dockerd creates the container and refuses its start: the container stays, created, with
    the error and exit code 128, its network entry as asked (no network id before a start).
    berthd refused --ip on the default bridge at the create, and ran a container on none or host
    with the address asked for silently dropped."""
    name = f"ip-{net}"
    d.docker("create", "--name", name, "--network", net, "--ip", "10.99.0.5", IMG, "echo", "ran", check=True)
    p = d.docker("start", name)
    assert p.returncode == 1 and PREDEFINED_ONLY in p.err and "ran" not in p.out, p.err
    c = inspect(d, name)
    assert (c["State"]["Status"], c["State"]["ExitCode"], c["State"]["Error"]) == ("created", 128, PREDEFINED_ONLY)
    ep = c["NetworkSettings"]["Networks"][net]
    assert ep["IPAMConfig"] == {"IPv4Address": "10.99.0.5"} and ep["NetworkID"] == "" and ep["EndpointID"] == ""
    p = d.docker("run", "--rm", "--network", net, "--ip6", "fd00::5", IMG, "true")
    assert p.returncode == 125 and PREDEFINED_ONLY in p.err
    assert d.docker("ps", "-aq", "--filter", f"network={net}").out.split() == [c["Id"][:12]]


def test_aliases_on_a_predefined_network_fail_the_start_as_dockerd(d):
    docker = pytest.importorskip("docker")
    api = docker.APIClient(base_url=d.host, version="1.41")
    try:
        c = api.create_container(IMG, ["true"], host_config=api.create_host_config(network_mode="none"),
                                 networking_config=api.create_networking_config(
                                     {"none": api.create_endpoint_config(aliases=["web"])}))
        with pytest.raises(docker.errors.APIError) as ei:
            api.start(c["Id"])
        assert "network-scoped alias is supported only for containers in user defined networks" in str(ei.value)
        assert api.inspect_container(c["Id"])["State"]["ExitCode"] == 128
    finally:
        api.close()


def test_none_and_host_list_their_running_containers_as_dockerd(d):
    """dockerd's none and host networks hold an endpoint of each container running in that mode:
    `network inspect` lists it, its own Networks entry has the endpoint's id, `ps --filter
    network=` finds it by a prefix of the network's id; after its exit the network id stays, the
    endpoint goes. berthd listed nobody on none or host and showed no endpoint."""
    for net in ("none", "host"):
        nid = json.loads(d.docker("network", "inspect", net, check=True).out)[0]["Id"]
        d.docker("create", "--name", f"m-{net}", "--network", net, IMG, "sleep", "600", check=True)
        assert inspect(d, f"m-{net}")["NetworkSettings"]["Networks"][net]["NetworkID"] == ""  # not started
        d.docker("start", f"m-{net}", check=True)
        c = inspect(d, f"m-{net}")
        ep = c["NetworkSettings"]["Networks"][net]
        assert ep["NetworkID"] == nid and len(ep["EndpointID"]) == 64
        listed = json.loads(d.docker("network", "inspect", net, check=True).out)[0]["Containers"]
        assert listed == {c["Id"]: {"Name": f"m-{net}", "EndpointID": ep["EndpointID"], "MacAddress": "",
                                    "IPv4Address": "", "IPv6Address": ""}}
        assert d.docker("ps", "--filter", f"network={nid[:6]}", "--format", "{{.Names}}").out.split() == [f"m-{net}"]
        d.docker("kill", f"m-{net}", check=True)
        ep = inspect(d, f"m-{net}")["NetworkSettings"]["Networks"][net]
        assert (ep["NetworkID"], ep["EndpointID"]) == (nid, "")
        assert json.loads(d.docker("network", "inspect", net, check=True).out)[0]["Containers"] == {}


def test_a_created_container_shows_no_network_id_until_it_starts(d):
    d.docker("network", "create", "n-created", check=True)
    d.docker("create", "--name", "nc", "--network", "n-created", IMG, "true", check=True)
    assert inspect(d, "nc")["NetworkSettings"]["Networks"]["n-created"]["NetworkID"] == ""
    d.docker("start", "-a", "nc", check=True)
    nid = json.loads(d.docker("network", "inspect", "n-created", check=True).out)[0]["Id"]
    assert inspect(d, "nc")["NetworkSettings"]["Networks"]["n-created"]["NetworkID"] == nid


def test_endpoint_links_and_driver_opts_through_the_sdk(d):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=d.host)
    try:
        net = client.networks.create("sdkn")
        web = client.containers.run(IMG, ["sleep", "600"], name="lweb", network="sdkn", detach=True)
        cli = client.containers.create(IMG, ["sleep", "600"], name="lcli")
        net.connect(cli, links=[("lweb", "site")], driver_opt={"com.example.opt": "1"})
        cli.reload()
        ep = cli.attrs["NetworkSettings"]["Networks"]["sdkn"]
        assert ep["Links"] == ["lweb:site"] and ep["DriverOpts"] == {"com.example.opt": "1"}
        cli.start()
        cli.reload()
        ep = cli.attrs["NetworkSettings"]["Networks"]["sdkn"]
        assert ep["Links"] == ["lweb:site"] and ep["DriverOpts"] == {"com.example.opt": "1"}
        # the link's alias answers for the linked container, in this container only
        code, out = cli.exec_run(["ping", "-c1", "-W2", "site"])
        web.reload()
        assert code == 0 and web.attrs["NetworkSettings"]["Networks"]["sdkn"]["IPAddress"] in out.decode()
        code, out = web.exec_run(["ping", "-c1", "-W2", "site"])
        assert code != 0
    finally:
        client.close()


def test_link_on_a_user_defined_network_is_an_endpoint_link(d):
    d.docker("network", "create", "ln", check=True)
    d.docker("run", "-d", "--name", "lweb2", "--network", "ln", IMG, "sleep", "600", check=True)
    d.docker("run", "-d", "--name", "lcli2", "--network", "ln", "--link", "lweb2:db", IMG, "sleep", "600", check=True)
    assert inspect(d, "lcli2")["NetworkSettings"]["Networks"]["ln"]["Links"] == ["lweb2:db"]
    ip = inspect(d, "lweb2")["NetworkSettings"]["Networks"]["ln"]["IPAddress"]
    p = d.docker("exec", "lcli2", "ping", "-c1", "-W2", "db")
    assert p.returncode == 0 and ip in p.out, p.out + p.err
    assert d.docker("exec", "lweb2", "ping", "-c1", "-W2", "db").returncode != 0  # for lcli2 only


# --- swarm: a node that is not part of one ---

def test_swarm_endpoints_answer_as_a_node_not_in_a_swarm(d):
    p = d.docker("swarm", "leave")
    assert p.returncode != 0 and "This node is not part of a swarm" in p.err
    for args in (["node", "ls"], ["service", "ls"], ["secret", "ls"], ["config", "ls"]):
        p = d.docker(*args)
        assert p.returncode != 0 and "This node is not a swarm manager" in p.err, (args, p.err)
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=d.host)
    try:
        for call in (client.api.inspect_swarm, client.api.nodes, client.api.services, client.api.tasks,
                     client.api.secrets, client.api.configs):
            with pytest.raises(docker.errors.APIError) as e:
                call()
            assert e.value.status_code == 503
        assert client.info()["Swarm"]["LocalNodeState"] == "inactive"
    finally:
        client.close()


# --- images: save by ID, load of a non-tar, push and load progress ---

def _manifest(data):
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return json.load(tf.extractfile("manifest.json"))


def test_save_by_id_writes_no_repo_tags(d):
    iid = d.docker("images", "-q", IMG, check=True).out.strip()
    assert _manifest(d.docker("save", iid, check=True).stdout)[0]["RepoTags"] is None
    full = inspect(d, IMG)["Id"]
    assert _manifest(d.docker("save", full, check=True).stdout)[0]["RepoTags"] is None
    assert _manifest(d.docker("save", IMG, check=True).stdout)[0]["RepoTags"] == [IMG]


def test_load_of_a_non_tar_is_an_error_in_the_stream(d):
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=d.host)
    try:
        resp = client._post(client._url("/images/load"), data=b"this is not a tar archive\n" * 4,
                            headers={"Content-Type": "application/x-tar"})
        assert resp.status_code == 200
        msgs = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        assert msgs and msgs[-1].get("error") and msgs[-1]["errorDetail"]["message"] == msgs[-1]["error"]
    finally:
        client.close()
    p = d.docker("load", input=b"not a tar\n")
    assert p.returncode == 1 and p.err.strip() and len(p.err.strip().splitlines()) == 1


def test_load_and_push_progress_as_docker(d, registry):
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=d.host)
    try:
        with open(os.path.join(DATA, "busybox-layers.docker.tar"), "rb") as f:
            data = f.read()
        diff_ids = [x.split(":")[1][:12] for x in inspect(d, IMG)["RootFS"]["Layers"]]
        d.docker("rmi", IMG, check=True)
        msgs = list(client.load_image(data, quiet=False))
        loading = [m for m in msgs if m.get("status") == "Loading layer"]
        assert [m["id"] for m in loading] == diff_ids
        for m in loading:
            det = m["progressDetail"]
            assert det["current"] == det["total"] > 0 and m["progress"].startswith("[" + "=" * 50 + ">]")
        assert msgs[-1] == {"stream": f"Loaded image: {IMG}\n"}
        # quiet (what the docker CLI asks when its output is no terminal): the result only
        assert list(client.load_image(data, quiet=True)) == [{"stream": f"Loaded image: {IMG}\n"}]

        target = f"{registry.addr}/parity/bb"
        client.tag(IMG, target, "p1")
        msgs = list(client.push(target, tag="p1", stream=True, decode=True))
        assert msgs[0] == {"status": f"The push refers to repository [{target}]"}
        preparing = [m["id"] for m in msgs if m.get("status") == "Preparing"]
        assert preparing == diff_ids[::-1]  # named by diff ID, the top layer first
        pushing = [m for m in msgs if m.get("status") == "Pushing"]
        assert {m["id"] for m in pushing} == set(diff_ids)
        assert all(m["progressDetail"]["total"] > 0 and m["progress"].startswith("[") for m in pushing)
        assert sorted(m["id"] for m in msgs if m.get("status") == "Pushed") == sorted(diff_ids)
        aux = msgs[-1]["aux"]
        assert aux["Tag"] == "p1" and aux["Digest"].startswith("sha256:") and aux["Size"] > 0
        assert msgs[-2]["status"] == f"p1: digest: {aux['Digest']} size: {aux['Size']}"
        # again: every layer exists
        msgs = list(client.push(target, tag="p1", stream=True, decode=True))
        assert sorted(m["id"] for m in msgs if m.get("status") == "Layer already exists") == sorted(diff_ids)
        # the docker CLI, no terminal: no progress bars, the same lines as docker's
        p = d.docker("push", f"{target}:p1")
        assert p.returncode == 0 and "Pushing" not in p.out and f"p1: digest: {aux['Digest']}" in p.out
    finally:
        client.close()


# --- exec and attach streams ---

def _raw(d, method, path, body=None):
    """A raw HTTP/1.1 request on the daemon's socket that asks for the upgrade; returns the
    socket and the response head."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.sock)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            break
        head += c
    return s, head.decode()


def _read_all(s, timeout=10):
    import time
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            c = s.recv(65536)
        except TimeoutError:
            break
        if not c:
            return out, True
        out += c
    return out, False


def _exec_id(d, cid, **body):
    p = d.docker("exec", cid, "true")  # the container runs
    assert p.returncode == 0, p.err
    docker = pytest.importorskip("docker")
    api = docker.APIClient(base_url=d.host)
    try:
        return api.exec_create(cid, **body)["Id"]
    finally:
        api.close()


def test_exec_output_never_lost_with_the_sdk(d):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=d.host)
    try:
        c = client.containers.run(IMG, ["sleep", "600"], name="ex1", detach=True)
        for i in range(25):
            code, out = c.exec_run(["echo", f"line-{i}"])
            assert (code, out) == (0, f"line-{i}\n".encode())
        code, out = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
        assert code == 3 and out == (b"out\n", b"err\n")
    finally:
        client.close()


def test_exec_start_tty_decides_the_framing(d):
    d.docker("run", "-d", "--name", "ex2", IMG, "sleep", "600", check=True)
    # a process without a terminal, started with Tty: the raw bytes, no frames
    eid = _exec_id(d, "ex2", cmd=["echo", "plain"], stdout=True, stderr=True, tty=False)
    s, head = _raw(d, "POST", f"/exec/{eid}/start", {"Detach": False, "Tty": True})
    assert head.startswith("HTTP/1.1 101")
    assert _read_all(s) == (b"plain\n", True)
    s.close()
    # a process with a terminal, started without Tty: its bytes framed as stdout
    eid = _exec_id(d, "ex2", cmd=["echo", "framed"], stdout=True, stderr=True, tty=True)
    s, head = _raw(d, "POST", f"/exec/{eid}/start", {"Detach": False, "Tty": False})
    out, closed = _read_all(s)
    s.close()
    assert closed and out[:4] == b"\x01\0\0\0" and out[8:] == b"framed\r\n"
    assert int.from_bytes(out[4:8], "big") == len(out) - 8


def test_exec_of_a_missing_binary(d):
    d.docker("run", "-d", "--name", "ex3", IMG, "sleep", "600", check=True)
    p = d.docker("exec", "ex3", "nosuch")
    assert p.returncode == 126 and "executable file not found" in p.out + p.err
    p = d.berth("exec", "ex3", "nosuch")
    assert p.returncode == 126 and "executable file not found" in p.out + p.err
    docker = pytest.importorskip("docker")
    api = docker.APIClient(base_url=d.host)
    try:
        eid = api.exec_create("ex3", ["nosuch"])["Id"]
        out = api.exec_start(eid)  # a 200: the error is in the stream
        assert b'exec: "nosuch": executable file not found in $PATH' in out
        info = api.exec_inspect(eid)
        assert info["ExitCode"] == 126 and info["Running"] is False
        eid = api.exec_create("ex3", ["nosuch"])["Id"]
        with pytest.raises(docker.errors.APIError) as e:  # detached: the start itself fails, as docker's
            api.exec_start(eid, detach=True)
        assert e.value.status_code == 400
        assert api.exec_inspect(eid)["ExitCode"] == 126
    finally:
        api.close()


def test_detach_keys_in_the_daemon(d):
    d.docker("run", "-dit", "--name", "tt", IMG, "sh", check=True)
    base = "/containers/tt/attach?stream=1&stdin=1&stdout=1&stderr=1"
    for query, keys in (("", b"\x10\x11"), ("&detachKeys=ctrl-x", b"\x18"), ("&detachKeys=a,b", b"ab")):
        s, head = _raw(d, "POST", base + query)
        assert head.startswith("HTTP/1.1 101"), head
        s.sendall(b"echo mark$((6*7))\n")
        out = b""
        while b"mark42" not in out:
            c = s.recv(65536)
            assert c, out
            out += c
        s.sendall(keys)
        out, closed = _read_all(s)
        s.close()
        assert closed, (query, out)
        assert inspect(d, "tt")["State"]["Running"]
    s, head = _raw(d, "POST", base + "&detachKeys=ctrl-1")
    assert head.startswith("HTTP/1.1 400") and "Invalid detach keys (ctrl-1) provided" in _read_all(s, 2)[0].decode()
    s.close()
    # an exec's DetachKeys: the exec keeps running after them
    eid = _exec_id(d, "tt", cmd=["sh"], stdin=True, stdout=True, stderr=True, tty=True, detach_keys="ctrl-a")
    s, head = _raw(d, "POST", f"/exec/{eid}/start", {"Detach": False, "Tty": True})
    s.sendall(b"echo in-exec\n")
    out = b""
    while b"in-exec\r\n" not in out:
        c = s.recv(65536)
        assert c, out
        out += c
    s.sendall(b"\x01")
    assert _read_all(s)[1]
    s.close()
    info = json.loads(d.berth("inspect", "tt", check=True).out)[0]
    docker = pytest.importorskip("docker")
    api = docker.APIClient(base_url=d.host)
    try:
        ex = api.exec_inspect(eid)
        # dockerd shows the keys' bytes base64-encoded (a Go []byte): ctrl-a is b"\x01"
        assert ex["Running"] is True and ex["DetachKeys"] == "AQ==" and info["State"]["Running"]
    finally:
        api.close()


def _in_pty(d, args, keys=b"", rows=33, cols=111, timeout=20, wait_for_text=None, cli=None):
    """Run the berth CLI with a terminal (rows x cols) as its stdio; type ``keys`` once
    ``wait_for_text`` shows (a list of (text, keys) steps for more); returns (exit code, output)."""
    steps = list(keys) if isinstance(keys, list) else ([(wait_for_text, keys)] if keys else [])
    import fcntl
    import pty
    import struct
    import subprocess
    import termios
    import time
    from daemon_fixtures import BERTH
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen([cli or BERTH, "-H", d.host, *args], stdin=slave, stdout=slave, stderr=slave, env=d.env(),
                         start_new_session=True)
    os.close(slave)
    out = b""
    seen = 0  # output already matched by an earlier step
    end = time.monotonic() + timeout
    import select
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                c = os.read(master, 65536)
            except OSError:
                break
            if not c:
                break
            out += c
        if steps and (steps[0][0] is None or steps[0][0] in out[seen:]):
            os.write(master, steps.pop(0)[1])
            seen = len(out)
        if p.poll() is not None and not r:
            break
    try:
        code = p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        code = p.wait()
    os.close(master)
    return code, out.decode(errors="replace")


def test_berth_exec_it_sets_the_terminal_size(d):
    d.docker("run", "-d", "--name", "sz", IMG, "sleep", "600", check=True)
    code, out = _in_pty(d, ["exec", "-it", "sz", "stty", "size"], rows=33, cols=111)
    assert code == 0 and "33 111" in out, out


def test_console_size_from_the_start_with_the_docker_cli(d):
    # docker's CLI sends ConsoleSize (API 1.42+) on run and exec: a quick `stty size` sees it
    d.docker("run", "-d", "--name", "cs", IMG, "sleep", "600", check=True)
    for args in (["run", "-it", "--rm", IMG, "stty", "size"], ["exec", "-it", "cs", "stty", "size"]):
        code, out = _in_pty(d, args, rows=41, cols=97, cli="docker")
        assert code == 0 and "41 97" in out, (args, out)


def test_berth_cli_detach_keys_from_config_json(d):
    d.docker("run", "-dit", "--name", "dk", IMG, "sh", check=True)
    with open(os.path.join(d.docker_config, "config.json"), "w") as f:
        json.dump({"detachKeys": "ctrl-x"}, f)
    try:
        code, out = _in_pty(d, ["attach", "dk"], keys=[(None, b"\r"), (b"# ", b"\x18")], timeout=10)
        assert code == 0, out
        assert inspect(d, "dk")["State"]["Running"]
        # and in an exec -it: the exec's shell stays, berth exits 0
        code, out = _in_pty(d, ["exec", "-it", "dk", "sh"], keys=b"\x18", wait_for_text=b"#", timeout=10)
        assert code == 0, out
    finally:
        os.unlink(os.path.join(d.docker_config, "config.json"))
    assert inspect(d, "dk")["State"]["Running"]


def test_berth_cli_pairs_gateways_ranges_and_aux_addresses_with_their_subnet(d):
    v6, v4 = _v6_prefix(), _v4_subnet()
    base4 = v4.rsplit(".", 1)[0]
    # given in any order, each goes with the subnet that contains it (docker's CLI)
    p = d.berth("network", "create", "--ipv6", "--subnet", v6 + "/64", "--subnet", v4, "--gateway", f"{base4}.254",
                "--gateway", v6 + "fe", "--ip-range", f"{base4}.128/25", "--aux-address", f"a={base4}.130",
                "--aux-address", f"b={v6}2", "cli-ds")
    assert p.returncode == 0, p.err
    cfg = {c["Subnet"]: c for c in json.loads(d.berth("network", "inspect", "cli-ds", check=True).out)[0]["IPAM"]["Config"]}
    assert cfg[v4] == {"Subnet": v4, "Gateway": f"{base4}.254", "IPRange": f"{base4}.128/25",
                       "AuxiliaryAddresses": {"a": f"{base4}.130"}}
    assert cfg[v6 + "/64"] == {"Subnet": v6 + "/64", "Gateway": v6 + "fe", "AuxiliaryAddresses": {"b": v6 + "2"}}
    d.berth("run", "-d", "--name", "cli6", "--network", "cli-ds", "--ip6", v6 + "33", IMG, "sleep", "600", check=True)
    ep = inspect(d, "cli6")["NetworkSettings"]["Networks"]["cli-ds"]
    assert ep["GlobalIPv6Address"] == v6 + "33" and ep["IPAddress"] != f"{base4}.130"
    p = d.berth("network", "create", "--subnet", v4, "--gateway", "10.255.255.1", "cli-bad")
    assert p.returncode != 0 and "no matching subnet for gateway 10.255.255.1" in p.err


def test_scopes_ingress_and_overlay_without_a_swarm_as_dockerd(d, dockerd):
    """What only a swarm makes, refused as dockerd (not in a swarm) refuses it, in its order: an
    overlay network (also with another scope but local, or ingress), a global or unknown scope
    (the swarm manager's words; dockerd's 500 is berthd's 403, bad input's 4xx), an overlay
    made local, an ingress network of local scope, a swarm scope (for any driver berth has, also
    null), a config-only network with operator fields. berthd made overlay's "plugin not found"
    and took the rest as local bridges."""
    import random
    reqs = [{"Driver": "overlay"}, {"Driver": "overlay", "Ingress": True}, {"Driver": "overlay", "Scope": "bogus"},
            {"Scope": "global"}, {"Scope": "bogus"}, {"Driver": "overlay", "Scope": "local"},
            {"Ingress": True}, {"Scope": "local", "Ingress": True}, {"Scope": "swarm"},
            {"Driver": "macvlan", "Scope": "swarm"}, {"Driver": "null", "Scope": "swarm"},
            {"Driver": "bogus", "Scope": "swarm"}, {"Driver": "null"},
            {"ConfigOnly": True, "Internal": True}, {"ConfigOnly": True, "Scope": "local"}]
    name = f"pn-sc{random.randint(0, 1 << 20)}"
    seen = []
    for e in (d, dockerd):
        got = []
        for body in reqs:
            p = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", e.sock, "-X", "POST",
                                "-H", "Content-Type: application/json", "-d", json.dumps(dict(body, Name=name)),
                                "http://x/v1.41/networks/create"], capture_output=True, text=True, timeout=30)
            text, _, status = p.stdout.rpartition("\n")
            got.append((int(status), json.loads(text).get("message")))
        seen.append(got)
        assert name not in e.docker("network", "ls", "--format", "{{.Name}}").out.split()
    for body, ours, theirs in zip(reqs, *seen):
        assert ours[1] == theirs[1] and (ours[0] == theirs[0] or (ours[0], theirs[0]) == (403, 500)), (body, ours, theirs)
    assert seen[0][0][1].startswith("This node is not a swarm manager.")


def test_config_only_networks_and_networks_made_from_them_as_dockerd(d, dockerd):
    """`network create --config-only` keeps IPAM and driver options for the networks made with
    `--config-from` (libnetwork's): a "null" network that takes no addresses and no endpoint,
    inspect showing what it keeps; a network made from it gets its subnet, range and options and
    names it in ConfigFrom; its own IPAM or options beside --config-from, a source that is none,
    and the removal of a source still in use are refused in dockerd's words; prune leaves the
    source. berthd refused --config-only (and before that made a bridge of it)."""
    import random
    sub = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
    tag = f"{random.randint(0, 1 << 20)}"
    cfg, net = f"pn-cfg{tag}", f"pn-from{tag}"
    dockerd.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    seen = []
    for e in (d, dockerd):
        got = []
        try:
            e.docker("network", "create", "--config-only", "--subnet", f"{sub}.0/24", "--gateway", f"{sub}.1",
                     "--ip-range", f"{sub}.128/25", "-o", "com.docker.network.bridge.enable_icc=true", "--label",
                     "k=v", cfg, check=True)
            i = json.loads(e.docker("network", "inspect", cfg, check=True).out)[0]
            got.append({k: v for k, v in i.items() if k not in ("Id", "Created")})
            got.append(e.docker("network", "ls", "--filter", "driver=null", "--format", "{{.Name}} {{.Scope}}").out)
            p = e.docker("run", "--rm", "--network", cfg, IMG, "true")
            got.append((p.returncode, p.err.splitlines()[:1]))
            for args in (["--subnet", "10.9.9.0/24"], ["-o", "a=b"], ["--ipv6"], ["--label", "a=b"]):
                p = e.docker("network", "create", "--config-from", cfg, *args, f"{net}x")
                got.append((args, p.returncode, p.err))
            p = e.docker("network", "create", "--config-from", f"{cfg}-none", f"{net}x")
            got.append((p.returncode, p.err))
            e.docker("network", "create", "--config-from", cfg, net, check=True)
            i = json.loads(e.docker("network", "inspect", net, check=True).out)[0]
            got.append((i["Driver"], i["ConfigFrom"], i["ConfigOnly"], i["IPAM"]["Config"], i["Options"]))
            p = e.docker("network", "create", "--config-from", net, f"{net}x")
            got.append((p.returncode, p.err))
            got.append(e.docker("run", "--rm", "--network", net, IMG, "sh", "-c",
                                "ip -4 -o addr show eth0 | awk '{print $4}'", check=True).out)
            p = e.docker("network", "rm", cfg)
            got.append((p.returncode, p.err.replace(cfg, "CFG")))
            e.docker("network", "rm", net, check=True)
            got.append(e.docker("network", "prune", "-f").out)
            got.append(e.docker("network", "ls", "--filter", f"name={cfg}", "--format", "{{.Name}}").out)
        finally:
            e.docker("network", "rm", net, f"{net}x")
            e.docker("network", "rm", cfg)
        seen.append(got)
    assert seen[0] == seen[1], [(a, b) for a, b in zip(*seen) if a != b]
    assert seen[0][0]["Driver"] == "null" and seen[0][0]["ConfigOnly"] is True
    assert seen[0][10] == f"{sub}.128/24\n", seen[0][10]
    assert seen[0][12] == "" and seen[0][13] == f"{cfg}\n"  # (prune leaves the source)


def test_aliases_and_address_fields_on_a_user_defined_network_as_dockerd(d, dockerd):
    """A container on a user-defined network, as clients of API 1.41 (dockerd 20.10's) see it:
    its endpoint's Aliases are those asked for, then its short ID and its hostname; the top-level
    (deprecated) address fields are the default bridge's alone, empty here; the container list
    shows the endpoint's addresses without aliases. berthd left the hostname out of the aliases,
    filled the top-level fields from any network and listed the aliases."""
    dockerd.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)

    def observe(e):
        env = e.env(DOCKER_API_VERSION="1.41")
        e.docker("network", "create", "anet", check=True)
        e.docker("network", "create", "bnet", check=True)
        try:
            e.docker("run", "-d", "--name", "a1", "--network", "anet", "--hostname", "hx", "--network-alias", "q",
                     "--network-alias", "b", IMG, "sleep", "60", check=True)
            e.docker("run", "-d", "--name", "a2", "--network", "anet", IMG, "sleep", "60", check=True)
            e.docker("network", "connect", "--alias", "zz", "bnet", "a1", check=True)
            a1 = json.loads(e.docker("inspect", "a1", env=env, check=True).out)[0]
            a2 = json.loads(e.docker("inspect", "a2", env=env, check=True).out)[0]
            s1, s2 = a1["Id"][:12], a2["Id"][:12]
            top = {k: a1["NetworkSettings"][k] for k in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress",
                                                          "EndpointID")}
            listed = json.loads(e.docker("ps", "--no-trunc", "--filter", "name=a1", "--format", "{{json .}}",
                                         env=env, check=True).out)
            sock = e.sock
            out = subprocess.run(["curl", "-s", "--unix-socket", sock, "http://x/v1.41/containers/json"],
                                 capture_output=True, text=True, check=True).stdout
            eps = {c["Names"][0]: c["NetworkSettings"]["Networks"] for c in json.loads(out)}
            return (
                [x.replace(s1, "<id>") for x in a1["NetworkSettings"]["Networks"]["anet"]["Aliases"]],
                [x.replace(s1, "<id>") for x in a1["NetworkSettings"]["Networks"]["bnet"]["Aliases"]],
                [x.replace(s2, "<id>") for x in a2["NetworkSettings"]["Networks"]["anet"]["Aliases"]],
                top, sorted(listed["Networks"].split(",")),
                {n: {k: ep[k] for k in ("Aliases", "Links", "DriverOpts")} for n, ep in eps["/a1"].items()},
                bool(eps["/a1"]["anet"]["IPAddress"]))
        finally:
            e.docker("rm", "-f", "a1", "a2")
            e.docker("network", "rm", "anet", "bnet")
    ours = observe(d)
    assert ours == (["q", "b", "<id>", "hx"], ["zz", "<id>", "hx"], ["<id>"],
                    {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "", "EndpointID": ""},
                    ["anet", "bnet"], {n: {"Aliases": None, "Links": None, "DriverOpts": None} for n in ("anet", "bnet")},
                    True)
    assert observe(dockerd) == ours
