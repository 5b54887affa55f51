"""Real Docker clients against berthd: the docker CLI (v28) and the Docker SDK for Python,
plus the Engine API details they rely on (ping, versioned paths, errors, Api-Version) and
berth's namespaces as a docker user sees them.

Everything talks to a private berthd on a unix socket and to a docker-registry on 127.0.0.1.
"""
# ruff: noqa: F811 (pytest fixtures imported from daemon_fixtures are test parameters)

import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile

import pytest
from daemon_fixtures import DATA, Daemon, berthd, registry, skopeo  # noqa: F401 (fixtures)

docker_sdk = pytest.importorskip("docker")

HELLO = os.path.join(DATA, "hello-world.docker.tar")
HELLO_OCI = os.path.join(DATA, "hello-world.oci.tar")
BUSYBOX = os.path.join(DATA, "busybox-layers.docker.tar")
MIRROR = "https://mirror.invalid:5000"

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")


def archive_facts(path):
    """(image ID, repo tags, diff IDs, config) of a docker-archive, read straight from the tar."""
    with tarfile.open(path) as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        raw = t.extractfile(manifest["Config"]).read()
    config = json.loads(raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest(), manifest["RepoTags"], config["rootfs"]["diff_ids"], config


HELLO_ID, HELLO_TAGS, HELLO_DIFF_IDS, HELLO_CONFIG = archive_facts(HELLO)
BUSYBOX_ID, BUSYBOX_TAGS, _, _ = archive_facts(BUSYBOX)


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    """One daemon for the read-mostly tests, with a registry mirror configured and both
    fixtures loaded: hello-world by `berth load`, busybox-layers by `docker load`."""
    d = Daemon(tmp_path_factory.mktemp("berthd"), f'registry_mirrors = ["{MIRROR}"]\n')
    d.start()
    try:
        d.berth("load", "-i", HELLO, check=True)
        d.docker("load", "-i", BUSYBOX, check=True)
        yield d
    finally:
        d.cleanup()


def images_table(out):
    """`docker images` output -> list of {REPOSITORY, TAG, IMAGE ID, ...} (columns split on 2+ spaces)."""
    lines = [line for line in out.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


def sdk(d, **kw):
    return docker_sdk.DockerClient(base_url="unix://" + d.sock, timeout=60, **kw)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(self.unix_path)


def call(d, method, path, body=None, headers=None):
    """One raw request: (status, headers, body bytes)."""
    c = UnixHTTP(d.sock)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def ns_docker_config(d, ns):
    """A DOCKER_CONFIG directory whose config.json makes the docker CLI send X-Berth-Namespace."""
    path = os.path.join(d.base, f"docker-config-{ns}")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"HttpHeaders": {"X-Berth-Namespace": ns}}, f)
    return d.env(DOCKER_CONFIG=path)


# --- the docker CLI ---

def test_docker_version_shows_the_server(eng):
    p = eng.docker("version", check=True)
    assert "Server:" in p.out and "Engine:" in p.out
    api = eng.docker("version", "--format", "{{.Server.APIVersion}}", check=True).out.strip()
    assert tuple(int(x) for x in api.split(".")) >= (1, 43)
    assert eng.docker("version", "--format", "{{.Server.Os}}/{{.Server.Arch}}", check=True).out.startswith("linux/")


def test_docker_info(eng):
    p = eng.docker("info", check=True)
    out = p.out
    for key in ("Runtimes:", "Default Runtime:", "Storage Driver:", "Cgroup Driver:", "Docker Root Dir:"):
        assert key in out, f"{key} missing from docker info:\n{out}"
    assert re.search(r"Runtimes:.*\bberth-runc\b", out)
    assert re.search(r"Default Runtime: berth-runc", out)
    assert re.search(r"Storage Driver: (overlayfs|native)", out)
    assert re.search(r"Cgroup Driver: (cgroupfs|systemd)", out)
    assert f"Docker Root Dir: {eng.root}" in out
    mirrors = out.split("Registry Mirrors:", 1)[1].splitlines()[1].strip()
    assert mirrors == MIRROR + "/" or mirrors == MIRROR
    assert re.search(r"Images: [1-9]", out)
    assert "WARNING" not in p.err or "mirror" not in p.err


def test_docker_images_lists_loaded_fixtures(eng):
    rows = images_table(eng.docker("images", check=True).out)
    assert set(rows[0]) >= {"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}
    by_name = {(r["REPOSITORY"], r["TAG"]): r["IMAGE ID"] for r in rows}
    assert by_name[("hello-world", "latest")] == HELLO_ID[7:19]
    assert by_name[("busybox-layers", "1")] == BUSYBOX_ID[7:19]
    q = eng.docker("images", "-q", "--no-trunc", check=True).out.split()
    assert HELLO_ID in q and BUSYBOX_ID in q
    f = eng.docker("images", "--filter", "reference=hello-*", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                   check=True).out.splitlines()
    assert f == [f"hello-world:latest {HELLO_ID[7:19]}"]


def test_docker_inspect(eng):
    [img] = json.loads(eng.docker("inspect", "hello-world", check=True).out)
    assert img["Id"] == HELLO_ID
    assert img["RepoTags"] == ["hello-world:latest"]
    assert img["Config"]["Cmd"] == ["/hello"]
    assert img["RootFS"]["Type"] == "layers"
    assert img["RootFS"]["Layers"] == HELLO_DIFF_IDS
    assert img["Os"] == "linux" and img["Architecture"] == HELLO_CONFIG["architecture"]
    # by ID (full and short) the same image; with a Go template
    assert eng.docker("image", "inspect", "-f", "{{.Id}}", HELLO_ID[7:19], check=True).out.strip() == HELLO_ID
    assert json.loads(eng.docker("image", "inspect", HELLO_ID, check=True).out)[0]["Id"] == HELLO_ID


def test_docker_history(eng):
    p = eng.docker("history", "--no-trunc", "hello-world", check=True)
    lines = p.out.splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "CREATED"] and "CREATED BY" in lines[0]
    assert HELLO_ID in lines[1] and 'CMD ["/hello"]' in lines[1]
    assert any("COPY" in line for line in lines[2:])
    short = eng.docker("history", "hello-world", check=True).out.splitlines()
    assert short[1].startswith(HELLO_ID[7:19])


def test_docker_tag_and_rmi(berthd):
    berthd.docker("load", "-i", HELLO, check=True)
    berthd.docker("tag", "hello-world", "example.com/team/hello:v1", check=True)
    berthd.docker("tag", HELLO_ID[7:19], "second:two", check=True)
    rows = images_table(berthd.docker("images", check=True).out)
    names = {(r["REPOSITORY"], r["TAG"]) for r in rows}
    assert names == {("hello-world", "latest"), ("example.com/team/hello", "v1"), ("second", "two")}
    assert {r["IMAGE ID"] for r in rows} == {HELLO_ID[7:19]}

    # by ID with several names: docker's conflict, nothing removed
    p = berthd.docker("rmi", HELLO_ID[7:19])
    assert p.returncode != 0
    assert (f"conflict: unable to delete {HELLO_ID[7:19]} (must be forced) - image is referenced in multiple "
            "repositories") in p.err
    assert len(images_table(berthd.docker("images").out)) == 3

    # by name: untag only
    p = berthd.docker("rmi", "second:two", check=True)
    assert p.out.splitlines() == ["Untagged: second:two"]
    # docker's order: by the familiar name
    assert berthd.docker("inspect", "-f", "{{.RepoTags}}", "hello-world", check=True).out.strip() == \
        "[example.com/team/hello:v1 hello-world:latest]"

    # by ID with -f: every name goes, then the image
    p = berthd.docker("rmi", "-f", HELLO_ID[7:19], check=True)
    untagged = [line for line in p.out.splitlines() if line.startswith("Untagged: ")]
    assert "Untagged: hello-world:latest" in untagged and "Untagged: example.com/team/hello:v1" in untagged
    # then the image, and its one layer (by its chain ID), as dockerd lists them
    assert p.out.splitlines()[-2] == f"Deleted: {HELLO_ID}" and p.out.splitlines()[-1].startswith("Deleted: sha256:")
    assert images_table(berthd.docker("images", check=True).out) == []

    # the last name of an image: Untagged then Deleted, and the content is gone
    berthd.docker("load", "-i", HELLO, check=True)
    p = berthd.docker("rmi", "hello-world", check=True)
    assert p.out.splitlines()[0] == "Untagged: hello-world:latest"
    assert f"Deleted: {HELLO_ID}" in p.out.splitlines()
    assert not os.path.exists(os.path.join(berthd.root, "content", "blobs", "sha256", HELLO_ID[7:]))
    p = berthd.docker("rmi", "hello-world")
    assert p.returncode == 1 and "No such image: hello-world" in p.err

    # --no-prune keeps an image's untagged parent images (dockerd's): its layers go all the same,
    # listed as with rmi alone (berthd left them behind, unlisted)
    berthd.docker("load", "-i", HELLO, check=True)
    p = berthd.docker("rmi", "--no-prune", "hello-world", check=True)
    assert p.out.splitlines()[1:] == [f"Deleted: {HELLO_ID}", p.out.splitlines()[-1]]
    assert p.out.splitlines()[-1].startswith("Deleted: sha256:") and len(p.out.splitlines()) == 3
    assert os.listdir(os.path.join(berthd.root, "snapshots", "overlayfs", "snapshots")) == []


def test_docker_pull_from_local_registry(berthd, registry):
    name = f"{registry.addr}/dockercli/busybox-layers:v1"
    berthd.berth("load", "-i", BUSYBOX, check=True)
    berthd.berth("tag", "busybox-layers:1", name, check=True)
    push = berthd.berth("push", name, check=True)
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", push.out).group(1)
    berthd.berth("rmi", name, "busybox-layers:1", check=True)
    assert images_table(berthd.docker("images", check=True).out) == []

    p = berthd.docker("pull", name, check=True)
    lines = p.out.splitlines()
    assert lines[0] == "v1: Pulling from dockercli/busybox-layers"  # dockerd's: the path in the registry
    assert sum(line.endswith(": Pulling fs layer") for line in lines) == 2
    assert sum(line.endswith(": Download complete") for line in lines) == 2
    assert sum(line.endswith(": Pull complete") for line in lines) == 2
    assert f"Digest: {digest}" in lines
    assert f"Status: Downloaded newer image for {name}" in lines
    assert lines[-1] == name
    [img] = json.loads(berthd.docker("inspect", name, check=True).out)
    assert img["Id"] == BUSYBOX_ID
    assert img["RepoDigests"] == [f"{registry.addr}/dockercli/busybox-layers@{digest}"]

    again = berthd.docker("pull", name, check=True)
    assert f"Status: Image is up to date for {name}" in again.out

    # by digest: kept as repo@digest, a RepoDigest with a <none> tag, as docker does
    repo = f"{registry.addr}/dockercli/busybox-layers"
    berthd.docker("rmi", name, check=True)
    p = berthd.docker("pull", f"{repo}@{digest}", check=True)
    # the first line names the whole reference (dockerd 20.10's; berth said the digest alone)
    assert p.out.splitlines()[0] == f"{repo}@{digest}: Pulling from dockercli/busybox-layers"
    assert f"Status: Downloaded newer image for {repo}@{digest}" in p.out
    [img] = json.loads(berthd.docker("image", "inspect", f"{repo}@{digest}", check=True).out)
    assert img["Id"] == BUSYBOX_ID and img["RepoTags"] == [] and img["RepoDigests"] == [f"{repo}@{digest}"]
    rows = images_table(berthd.docker("images", "--digests", check=True).out)
    assert [(r["REPOSITORY"], r["TAG"], r["DIGEST"], r["IMAGE ID"]) for r in rows] == \
        [(repo, "<none>", digest, BUSYBOX_ID[7:19])]
    assert berthd.docker("images", "-q", repo, check=True).out.split() == [BUSYBOX_ID[7:19]]
    p = berthd.docker("rmi", f"{repo}@{digest}", check=True)
    lines = p.out.splitlines()  # the image, then its two layers by their chain IDs (dockerd's)
    assert lines[:2] == [f"Untagged: {repo}@{digest}", f"Deleted: {BUSYBOX_ID}"] and len(lines) == 4, lines
    assert all(x.startswith("Deleted: sha256:") for x in lines[2:]), lines

    missing = berthd.docker("pull", f"{registry.addr}/dockercli/nothing:here")
    assert missing.returncode != 0 and "not found" in (missing.out + missing.err)
    bad = berthd.docker("pull", "127.0.0.1:1/nope:x")
    assert bad.returncode != 0


def test_docker_save_and_load(eng, tmp_path):
    out = str(tmp_path / "saved.tar")
    eng.docker("save", "-o", out, "hello-world", "busybox-layers:1", check=True)
    with tarfile.open(out) as t:
        assert "manifest.json" in t.getnames()
        tags = sorted(tag for m in json.load(t.extractfile("manifest.json")) for tag in m["RepoTags"])
    assert tags == ["busybox-layers:1", "hello-world:latest"]

    info = json.loads(skopeo("inspect", f"docker-archive:{out}:hello-world:latest").out)
    assert info["Layers"] and info["Os"] == "linux"
    assert json.loads(skopeo("inspect", "--config", f"docker-archive:{out}:busybox-layers:1").out
                      )["config"]["Cmd"] == ["sh"]

    other = Daemon(tmp_path / "second")
    other.start()
    try:
        p = other.docker("load", "-i", out, check=True)
        assert sorted(p.out.splitlines()) == ["Loaded image: busybox-layers:1", "Loaded image: hello-world:latest"]
        ids = other.docker("images", "-q", "--no-trunc", check=True).out.split()
        assert sorted(ids) == sorted([HELLO_ID, BUSYBOX_ID])
        # stdin, and an OCI layout archive
        other.docker("rmi", "hello-world", check=True)
        with open(out, "rb") as f:
            p = other.docker("load", input=f.read(), check=True)
        assert "Loaded image: hello-world:latest" in p.out
        with open(HELLO_OCI, "rb") as f:
            p = other.docker("load", input=f.read(), check=True)
        # another image of the same name (its config differs): dockerd's words for the move, and
        # the old image stays, without a name
        assert p.out.splitlines() == [f"The image hello-world:latest already exists, renaming the old one with ID "
                                      f"{HELLO_ID} to empty string", "Loaded image: hello-world:latest"], p.out
        assert HELLO_ID in other.docker("images", "-q", "--no-trunc", "-f", "dangling=true", check=True).out.split()
        assert other.docker("history", "--no-trunc", "hello-world", check=True).out.count('CMD ["/hello"]') == 1
        bad = other.docker("load", input=b"this is not a tar archive")
        assert bad.returncode != 0 and bad.err.strip()
    finally:
        other.cleanup()



def test_an_image_named_twice_is_saved_once(eng, tmp_path):
    """`docker save busybox-layers:1 <its id> hello-world`: one archive entry per image, with the
    tags asked for (dockerd's; berthd wrote the image twice, once without RepoTags)."""
    out = str(tmp_path / "twice.tar")
    eng.docker("save", "-o", out, "busybox-layers:1", BUSYBOX_ID[len("sha256:"):][:12], "hello-world", BUSYBOX_ID,
               check=True)
    with tarfile.open(out) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert sorted((m["RepoTags"] or []) for m in manifest) == [["busybox-layers:1"], ["hello-world:latest"]]
    assert sorted(m["Config"] for m in manifest) == sorted(
        f"blobs/sha256/{i[len('sha256:'):]}" for i in (BUSYBOX_ID, HELLO_ID))


def test_docker_load_from_stdin(berthd):
    with open(HELLO, "rb") as f:
        p = berthd.docker("load", input=f.read(), check=True)
    assert p.out.strip() == "Loaded image: hello-world:latest"
    p = berthd.docker("load", "-q", "-i", BUSYBOX, check=True)
    assert p.out.strip() == "Loaded image: busybox-layers:1"
    assert berthd.docker("inspect", "-f", "{{.Id}}", "hello-world", check=True).out.strip() == HELLO_ID


# --- Engine API details ---

def test_ping_head_and_get(eng):
    for method in ("HEAD", "GET"):
        for path in ("/_ping", "/v1.43/_ping"):
            status, headers, body = call(eng, method, path)
            assert status == 200, (method, path)
            assert headers["Api-Version"] and tuple(map(int, headers["Api-Version"].split("."))) >= (1, 43)
            assert body == (b"OK" if method == "GET" else b"")


def test_versioned_and_unversioned_paths(eng):
    for path in ("/version", "/v1.43/version", "/v1.45/version"):
        status, headers, body = call(eng, "GET", path)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        v = json.loads(body)
        assert tuple(map(int, v["ApiVersion"].split("."))) >= (1, 43) and v["Os"] == "linux"
    status, _, body = call(eng, "GET", "/v1.43/images/json")
    assert status == 200 and {i["Id"] for i in json.loads(body)} >= {HELLO_ID, BUSYBOX_ID}


def test_unknown_path_is_a_json_404(eng):
    for path in ("/nope", "/v1.43/nope", "/v1.43/nope/deeper/x", "/v9.99/images"):
        status, headers, body = call(eng, "GET", path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("application/json")
        assert set(json.loads(body)) == {"message"} and json.loads(body)["message"]


def test_missing_image_is_404_everywhere(eng):
    for method, path in [("GET", "/images/nosuch:1/json"), ("GET", "/v1.43/images/nosuch:1/history"),
                         ("POST", "/images/nosuch:1/tag?repo=other&tag=x"), ("DELETE", "/images/nosuch:1"),
                         ("GET", "/images/nosuch:1/get"), ("GET", "/images/" + "ab" * 32 + "/json")]:
        status, headers, body = call(eng, method, path)
        assert status == 404, (method, path, body)
        msg = json.loads(body)["message"]
        # a save's missing tag in dockerd's words for it
        assert "nosuch" in msg or "ab" in msg or (path.endswith("/get") and msg == "reference does not exist"), msg
        assert headers["Api-Version"]
    for args in (["inspect", "nosuch:1"], ["history", "nosuch:1"], ["tag", "nosuch:1", "x:y"],
                 ["rmi", "nosuch:1"]):
        p = eng.docker(*args)
        assert p.returncode == 1 and "nosuch" in p.err and "Traceback" not in p.err, args


def test_bad_requests_are_400(eng, berthd):
    for d in (eng, berthd):  # with images and without
        for raw in ("%7Bnot-json", "%5B1%5D", "%7B%22bogus%22%3A%5B%22x%22%5D%7D"):
            status, _, body = call(d, "GET", "/images/json?filters=" + raw)
            assert status == 400, (raw, body)
            assert json.loads(body)["message"]
    for method, path in [("POST", "/images/hello-world/tag?repo=UPPER&tag=x"),
                         ("POST", "/images/hello-world/tag?repo=ok&tag=" + "sha256:" + "a" * 64),
                         ("POST", "/images/hello-world/tag"),
                         ("POST", "/images/create?fromImage=Not%20Valid&tag=1"),
                         ("POST", "/images/create")]:
        status, _, body = call(eng, method, path)
        assert status == 400 and json.loads(body)["message"], (path, body)
    assert eng.docker("inspect", "-f", "{{.RepoTags}}", "hello-world", check=True).out.strip() == \
        "[hello-world:latest]"


def test_prune_filters_are_checked_as_dockerd(berthd):
    """image prune, builder prune and container prune refuse a filter they do not know and an
    until= they cannot read, with dockerd's words (berthd took them, and pruned regardless),
    before anything is pruned."""
    from urllib.parse import quote
    berthd.docker("load", "-i", BUSYBOX, check=True)
    berthd.docker("create", "--name", "pf-stopped", "busybox-layers:1", check=True)
    refused = [
        ("images", {"bogus": {"1": True}}, "Invalid filter 'bogus'"),
        ("images", {"until": {"bogus": True}}, 'failed to parse value as time or duration: "bogus"'),
        ("images", {"until": {"1h": True, "2h": True}}, "more than one until filter specified"),
        ("images", {"until": {"2021-13-01": True}}, 'parsing time "2021-13-01": month out of range'),
        ("images", {"dangling": {"maybe": True}}, "Invalid filter 'dangling=[maybe]'"),
        ("build", {"bogus": {"1": True}}, "failed to prune build cache: Invalid filter 'bogus'"),
        ("build", {"mutable": {"1": True}}, "failed to prune build cache: Invalid filter 'mutable'"),
        ("build", {"until": {"bogus": True}}, "failed to prune build cache: \"until\" filter expects a duration "
                                                "(e.g., '24h'): time: invalid duration \"bogus\""),
        ("build", {"until": {"1h": True}, "unused-for": {"2h": True}},
         'failed to prune build cache: conflicting filters: "until" and "unused-for"'),
        ("build", {"id": {"a": True, "b": True}}, "failed to prune build cache: filters expect only one value"),
        ("containers", {"bogus": {"1": True}}, "Invalid filter 'bogus'"),
        ("containers", {"until": {"10x": True}}, 'failed to parse value as time or duration: "10x"'),
    ]
    for what, filters, msg in refused:
        status, _, body = call(berthd, "POST", f"/{what}/prune?filters=" + quote(json.dumps(filters)))
        assert (status, json.loads(body)) == (400, {"message": msg}), (what, filters, body)
    for args, msg in ((["image", "prune", "-f", "--filter", "bogus=1"], "Invalid filter 'bogus'"),
                      (["image", "prune", "-af", "--filter", "until=bogus"],
                       'failed to parse value as time or duration: "bogus"'),
                      (["builder", "prune", "-f", "--filter", "bogus=1"],
                       "failed to prune build cache: Invalid filter 'bogus'")):
        p = berthd.docker(*args)
        assert p.returncode == 1 and f"Error response from daemon: {msg}\n" in p.err, (args, p.err)
    assert berthd.docker("inspect", "pf-stopped").returncode == 0
    berthd.docker("rm", "pf-stopped", check=True)
    # the filters that pass filter: the image was made after 2020, and has its fixture label
    for flt in ("until=2020-01-01T00:00:00Z", "label=nosuch", "label!=org.example.fixture",
                "label=org.example.fixture=other"):
        assert berthd.docker("image", "prune", "-af", "--filter", flt, check=True).out == "Total reclaimed space: 0B\n"
        assert berthd.docker("image", "inspect", "busybox-layers:1").returncode == 0, flt
    for flt in ("until=1s", "label=org.example.fixture"):
        assert berthd.docker("image", "prune", "-af", "--filter", flt, check=True).out.startswith("Deleted Images:")
        assert berthd.docker("image", "inspect", "busybox-layers:1").returncode == 1, flt
        berthd.docker("load", "-i", BUSYBOX, check=True)
    status, _, body = call(berthd, "POST", "/containers/prune?filters=" + quote('{"until":{"1h30m":true}}'))
    assert (status, json.loads(body)) == (200, {"ContainersDeleted": None, "SpaceReclaimed": 0})


def test_api_version_header_on_every_response(eng):
    responses = [call(eng, "HEAD", "/_ping"), call(eng, "GET", "/info"), call(eng, "GET", "/nope"),
                 call(eng, "POST", "/version"), call(eng, "GET", "/images/json?filters=bad"),
                 call(eng, "GET", "/images/hello-world/get"), call(eng, "POST", "/images/load", body=b"junk"),
                 call(eng, "GET", "/berth/namespaces"), call(eng, "POST", "/images/create?fromImage=Bad::ref")]
    with open(HELLO, "rb") as f:
        responses.append(call(eng, "POST", "/images/load?quiet=1", body=f.read(),
                              headers={"Content-Type": "application/x-tar"}))
    for status, headers, _ in responses:
        assert headers.get("Api-Version"), status
    # a load of a non-tar is a 200 with the error in the stream, as docker's
    assert [r[0] for r in responses] == [200, 200, 404, 404, 400, 200, 200, 200, 400, 200]


# --- namespaces ---

def test_namespaces_isolate_images(berthd):
    ns1 = ns_docker_config(berthd, "ns1")
    p = berthd.docker("load", "-i", HELLO, env=ns1, check=True)
    assert "Loaded image: hello-world:latest" in p.out
    berthd.docker("load", "-i", BUSYBOX, check=True)

    assert [(r["REPOSITORY"], r["IMAGE ID"]) for r in images_table(berthd.docker("images", env=ns1).out)] == \
        [("hello-world", HELLO_ID[7:19])]
    assert [r["REPOSITORY"] for r in images_table(berthd.docker("images").out)] == ["busybox-layers"]
    assert berthd.berth("-n", "ns1", "images", "-q", "--no-trunc", check=True).out.split() == [HELLO_ID]
    assert berthd.berth("images", "-q", "--no-trunc", check=True).out.split() == [BUSYBOX_ID]
    p = berthd.docker("image", "inspect", "hello-world")
    assert p.returncode == 1 and p.err.strip() == "Error response from daemon: No such image: hello-world:latest", p.err
    p = berthd.docker("image", "inspect", "busybox-layers:1", env=ns1)
    assert p.returncode == 1 and 'No such image: busybox-layers:1 (namespace "ns1")' in p.err, p.err
    p = berthd.docker("inspect", "hello-world")  # the CLI's own message when every kind misses
    assert p.returncode == 1 and "No such object: hello-world" in p.err
    assert berthd.docker("inspect", "-f", "{{.Id}}", "hello-world", env=ns1, check=True).out.strip() == HELLO_ID

    # the header over raw HTTP and the SDK
    status, _, body = call(berthd, "GET", "/images/json", headers={"X-Berth-Namespace": "ns1"})
    assert status == 200 and [i["Id"] for i in json.loads(body)] == [HELLO_ID]
    c = docker_sdk.APIClient(base_url="unix://" + berthd.sock)
    c.headers["X-Berth-Namespace"] = "ns1"
    try:
        assert c.inspect_image("hello-world")["Id"] == HELLO_ID
    finally:
        c.close()
    info = json.loads(berthd.docker("info", "--format", "{{json .}}", env=ns1, check=True).out)
    assert info["Images"] == 1


def test_invalid_namespace_header_is_400(berthd):
    status, headers, body = call(berthd, "GET", "/images/json", headers={"X-Berth-Namespace": "Bad Name!"})
    assert status == 400 and "namespace" in json.loads(body)["message"] and headers["Api-Version"]
    p = berthd.docker("images", env=ns_docker_config(berthd, "Bad Name!"))
    assert p.returncode == 1 and "invalid namespace name" in p.err


def test_namespace_commands(berthd):
    assert berthd.berth("namespace", "ls", "-q", check=True).out.split() == ["default"]
    berthd.berth("namespace", "create", "team-a", check=True)
    p = berthd.berth("namespace", "create", "team-a")
    assert p.returncode != 0 and len(p.err.strip().splitlines()) == 1 and "already exists" in p.err
    berthd.berth("-n", "team-a", "load", "-i", HELLO, check=True)
    assert berthd.berth("namespace", "ls", "-q", check=True).out.split() == ["default", "team-a"]
    [ns] = json.loads(berthd.berth("namespace", "inspect", "team-a", check=True).out)
    assert ns["Name"] == "team-a" and ns["Usage"]["images"] == 1

    p = berthd.berth("namespace", "rm", "team-a")
    assert p.returncode != 0
    err = p.err.strip().splitlines()
    assert len(err) == 1 and "team-a" in err[0] and "not empty" in err[0] and "Traceback" not in p.err
    status, _, body = call(berthd, "DELETE", "/berth/namespaces/team-a")
    assert status == 409 and "not empty" in json.loads(body)["message"]

    berthd.berth("-n", "team-a", "rmi", "hello-world", check=True)
    p = berthd.berth("namespace", "rm", "team-a", check=True)
    assert p.out.strip() == "team-a"
    assert berthd.berth("namespace", "ls", "-q", check=True).out.split() == ["default"]
    p = berthd.berth("namespace", "inspect", "team-a")
    assert p.returncode != 0 and "not found" in p.err


def test_namespaces_share_content(berthd):
    berthd.berth("-n", "one", "load", "-i", HELLO, check=True)
    berthd.berth("-n", "two", "load", "-i", HELLO, check=True)
    # one blob and one snapshot for both namespaces
    hellos = glob.glob(os.path.join(berthd.root, "snapshots", "**", "fs", "hello"), recursive=True)
    assert len(hellos) == 1, hellos
    blob = os.path.join(berthd.root, "content", "blobs", "sha256", HELLO_ID[7:])
    assert os.path.exists(blob)

    p = berthd.berth("-n", "one", "rmi", "hello-world", check=True)
    assert f"Deleted: {HELLO_ID}" in p.out
    assert berthd.berth("-n", "one", "images", "-q", check=True).out.split() == []
    # still whole in the other namespace: inspectable, saveable, and its unpacked layer runs
    two = ns_docker_config(berthd, "two")
    assert berthd.docker("inspect", "-f", "{{.Id}}", "hello-world", env=two, check=True).out.strip() == HELLO_ID
    assert os.path.exists(blob)
    [hello] = glob.glob(os.path.join(berthd.root, "snapshots", "**", "fs", "hello"), recursive=True)
    run = subprocess.run([hello], capture_output=True, timeout=10, check=False)
    assert run.returncode == 0 and b"Hello from the hello-world fixture!" in run.stdout
    saved = berthd.docker("save", "hello-world", env=two, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(saved)) as t:
        assert "manifest.json" in t.getnames()

    berthd.berth("-n", "two", "rmi", "hello-world", check=True)
    assert not os.path.exists(blob)
    assert glob.glob(os.path.join(berthd.root, "snapshots", "**", "fs", "hello"), recursive=True) == []


# --- the Docker SDK for Python ---

def test_sdk_version_and_info(eng):
    c = sdk(eng)
    try:
        v = c.version()
        assert tuple(map(int, v["ApiVersion"].split("."))) >= (1, 43)
        assert any(comp["Name"] == "Engine" for comp in v["Components"])
        assert c.ping() is True
        info = c.info()
        assert "berth-runc" in info["Runtimes"] and info["DefaultRuntime"] == "berth-runc"
        assert info["Driver"] in ("overlayfs", "native") and info["CgroupDriver"] in ("cgroupfs", "systemd")
        assert info["RegistryConfig"]["Mirrors"] in ([MIRROR], [MIRROR + "/"])
        assert info["Images"] >= 2
    finally:
        c.close()


def test_sdk_images(berthd, registry):
    name = f"{registry.addr}/sdk/hello"
    berthd.berth("load", "-i", HELLO, check=True)
    berthd.berth("tag", "hello-world", f"{name}:v1", check=True)
    berthd.berth("push", f"{name}:v1", check=True)
    berthd.berth("rmi", f"{name}:v1", "hello-world", check=True)

    c = sdk(berthd)
    try:
        assert c.images.list() == []
        img = c.images.pull(name, tag="v1")
        assert img.id == HELLO_ID and img.tags == [f"{name}:v1"]
        assert img.attrs["Config"]["Cmd"] == ["/hello"]

        berthd.berth("load", "-i", BUSYBOX, check=True)
        assert {i.id for i in c.images.list()} == {HELLO_ID, BUSYBOX_ID}
        assert [i.id for i in c.images.list(name=name)] == [HELLO_ID]
        assert [i.id for i in c.images.list(filters={"reference": "busybox-*"})] == [BUSYBOX_ID]
        assert c.images.list(name="nothing-like-this") == []

        assert img.tag("sdk/renamed", "t1") is True
        got = c.images.get("sdk/renamed:t1")
        assert got.id == HELLO_ID and sorted(got.tags) == sorted([f"{name}:v1", "sdk/renamed:t1"])
        assert c.images.get(HELLO_ID[7:19]).id == HELLO_ID

        hist = img.history()
        assert hist[0]["Id"] == HELLO_ID and 'CMD ["/hello"]' in hist[0]["CreatedBy"]
        assert all("CreatedBy" in h and "Size" in h and "Created" in h for h in hist)

        # save (named: the archive carries the image's first tag) -> chunks -> load again after removing
        data = b"".join(got.save(chunk_size=65536, named=True))
        with pytest.raises(docker_sdk.errors.APIError) as e:
            c.images.remove(HELLO_ID)
        assert e.value.status_code == 409 and "must be forced" in str(e.value)
        c.images.remove("sdk/renamed:t1")
        c.images.remove(HELLO_ID, force=True)
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            c.images.get(HELLO_ID)
        loaded = c.images.load(data)
        assert [i.id for i in loaded] == [HELLO_ID] and loaded[0].tags == [f"{name}:v1"]
        assert c.images.get(f"{name}:v1").id == HELLO_ID

        with open(HELLO, "rb") as f:
            [again] = c.images.load(f.read())
        assert again.id == HELLO_ID and "hello-world:latest" in again.tags

        # errors -> the SDK's exception tree with the right status
        with pytest.raises(docker_sdk.errors.ImageNotFound) as e:
            c.images.get("nosuch:1")
        assert e.value.status_code == 404
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            c.images.remove("nosuch:1")
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            c.api.history("nosuch:1")
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            c.api.tag("nosuch:1", "x", "y")
        with pytest.raises(docker_sdk.errors.ImageLoadError):  # the error comes in the stream, as docker's
            c.images.load(b"junk")
        with pytest.raises(docker_sdk.errors.APIError) as e:
            c.images.list(filters={"bogus": "x"})
        assert e.value.status_code == 400
        with pytest.raises(docker_sdk.errors.APIError) as e:
            c.api.pull("Not::Valid")
        assert e.value.status_code == 400
        # as dockerd's: the pull's own error response (a 404 that does not say "no such image":
        # the SDK's NotFound), not the lookup after it; the API call raises it too
        for pull in (c.images.pull, c.api.pull):
            with pytest.raises(docker_sdk.errors.NotFound) as e:
                pull(f"{registry.addr}/sdk/missing", tag="v1")
            assert type(e.value) is docker_sdk.errors.NotFound and e.value.explanation == (
                f"manifest for {registry.addr}/sdk/missing:v1 not found: manifest unknown: manifest unknown")
        with pytest.raises(docker_sdk.errors.APIError) as e:  # dockerd's status is a 500
            c.api.pull("127.0.0.1:1/sdk/x", tag="v1")
        assert e.value.status_code == 503 and e.value.explanation == (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused')
    finally:
        c.close()
