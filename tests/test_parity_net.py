"""Docker parity (issue 11) for networks, images, swarm endpoints and exec/attach streams, as
users of the real docker CLI and the Docker SDK for Python observe it against berthd; dockerd
20.10's behaviour is the reference each test encodes.

Traffic goes only to 127.0.0.1 and to containers these tests create."""

import json
import os

import pytest
from daemon_fixtures import DATA, shared_berthd, wait_for  # noqa: F401 (fixtures)

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
    # a second disconnect is an error, with or without --force (docker's wording)
    for extra in ([], ["--force"]):
        p = d.docker("network", "disconnect", *extra, "n1", "c1")
        assert p.returncode != 0 and "is not connected to the network n1" in p.err, p.err
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
