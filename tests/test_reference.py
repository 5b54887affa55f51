"""berth.oci.reference (docker's normalisation), plus berth.oci.digest and berth.oci.mediatypes.

The tables follow distribution/reference's ParseNormalizedNamed + TagNameOnly
(and its normalize_test.go), i.e. what `docker pull NAME` accepts.
"""

import pytest

from berth.errors import InvalidArgument
from berth.oci import digest as dg
from berth.oci import mediatypes as mt
from berth.oci.reference import Reference, is_reference, is_tag, parse, parse_name

D = "sha256:" + "a" * 64
D2 = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# input -> (str(ref), familiar(), domain, path, tag, digest)
GOOD = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/debian", "docker.io/library/debian:latest", "debian:latest", "docker.io", "library/debian", "latest", None),
    ("index.docker.io/docker/docker", "docker.io/docker/docker:latest", "docker/docker:latest", "docker.io", "docker/docker", "latest", None),
    ("user/repo", "docker.io/user/repo:latest", "user/repo:latest", "docker.io", "user/repo", "latest", None),
    ("user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag", "docker.io", "user/repo", "tag", None),
    ("test_com/foo", "docker.io/test_com/foo:latest", "test_com/foo:latest", "docker.io", "test_com/foo", "latest", None),
    ("docker.io/library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest", "docker.io", "library/foo/bar", "latest", None),
    ("store/foo/bar", "docker.io/store/foo/bar:latest", "store/foo/bar:latest", "docker.io", "store/foo/bar", "latest", None),
    ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest", "localhost", "foo", "latest", None),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest", "localhost:5000", "x", "latest", None),
    ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag", "127.0.0.1:5000", "a/b", "tag", None),
    ("example.com/a@" + D, "example.com/a@" + D, "example.com/a@" + D, "example.com", "a", None, D),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase:latest", "example.com:8000/private/moonbase:latest", "example.com:8000", "private/moonbase", "latest", None),
    ("test-com:8080/foo", "test-com:8080/foo:latest", "test-com:8080/foo:latest", "test-com:8080", "foo", "latest", None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo:latest", "xn--n3h.com:18080/foo:latest", "xn--n3h.com:18080", "foo", "latest", None),
    ("[fc00::1]:5000/docker", "[fc00::1]:5000/docker:latest", "[fc00::1]:5000/docker:latest", "[fc00::1]:5000", "docker", "latest", None),
    ("busybox:latest@" + D2, "docker.io/library/busybox:latest@" + D2, "busybox:latest@" + D2, "docker.io", "library/busybox", "latest", D2),
    ("busybox@" + D2, "docker.io/library/busybox@" + D2, "busybox@" + D2, "docker.io", "library/busybox", None, D2),
    ("user/repo:v1@" + D, "docker.io/user/repo:v1@" + D, "user/repo:v1@" + D, "docker.io", "user/repo", "v1", D),
    # an upper-case first element can only be a registry host
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest", "Foo", "bar", "latest", None),
    # separators: one period, one or two underscores, any number of dashes
    ("docker---rules/dock__er", "docker.io/docker---rules/dock__er:latest", "docker---rules/dock__er:latest", "docker.io", "docker---rules/dock__er", "latest", None),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest", "docker.io", "library/ubuntu-12.04-base", "latest", None),
    # tags may have upper case, dots, dashes, underscores
    ("busybox:V1.2_rc-3", "docker.io/library/busybox:V1.2_rc-3", "busybox:V1.2_rc-3", "docker.io", "library/busybox", "V1.2_rc-3", None),
    ("busybox:_x", "docker.io/library/busybox:_x", "busybox:_x", "docker.io", "library/busybox", "_x", None),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128, "busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, None),
    # no "/" means no domain, even when it looks like one (docker's FIXME)
    ("localhost", "docker.io/library/localhost:latest", "localhost:latest", "docker.io", "library/localhost", "latest", None),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
    # 64 hex is an ID alone, but fine as a path under a domain; 63 hex is a name
    ("docker.io/" + HEX64, "docker.io/library/" + HEX64 + ":latest", HEX64 + ":latest", "docker.io", "library/" + HEX64, "latest", None),
    (HEX64[:63], "docker.io/library/" + HEX64[:63] + ":latest", HEX64[:63] + ":latest", "docker.io", "library/" + HEX64[:63], "latest", None),
    ("a/" + "b" * 253, "docker.io/a/" + "b" * 253 + ":latest", "a/" + "b" * 253 + ":latest", "docker.io", "a/" + "b" * 253, "latest", None),
]

BAD = [
    "",
    " ",
    "busybox ",
    "busy box",
    "busybox:",  # trailing colon
    "busybox::latest",
    "busybox:la test",
    "busybox:-latest",  # tag must start with [\w]
    "busybox:.latest",
    "busybox:" + "t" * 129,  # tag longer than 128
    "busybox@",
    "busybox@sha256:abc",  # short digest
    "busybox@sha256:" + "A" * 64,  # upper-case hex
    "busybox@sha256:" + "a" * 63,
    "busybox@md5:" + "a" * 32,  # unsupported algorithm
    "busybox@" + "a" * 64,  # digest without algorithm
    "Busybox",  # upper-case repository
    "docker/Docker",
    "docker.io/docker/Docker",
    "localhost:5000/Foo",
    "-docker",
    "-docker/docker",
    "docker-/docker",
    "_docker/_docker",
    "____/____",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "..",
    "a/../b",
    "./busybox",
    "docker///docker",
    "docker/",
    "/busybox",
    "busybox/",
    "https://github.com/docker/docker",
    "-docker.io/docker/docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "example.com:/busybox",  # empty port
    "example.com:abc/busybox",
    "bus\nybox",
    "busybox\n",
    "\u00e9t\u00e9",
    HEX64,  # an image ID, refused as a name
    "a/" + "b" * 254,  # path longer than 255
]


@pytest.mark.parametrize("s,full,familiar,domain,path,tag,digest", GOOD, ids=[g[0][:40] for g in GOOD])
def test_good_references(s, full, familiar, domain, path, tag, digest):
    ref = parse(s)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.repository == path
    assert ref.name == f"{domain}/{path}"
    # normalisation is idempotent, from either form
    assert parse(full) == ref
    assert parse(familiar) == ref
    assert is_reference(s)


@pytest.mark.parametrize("s", BAD, ids=[repr(b)[:40] for b in BAD])
def test_bad_references(s):
    with pytest.raises(InvalidArgument) as ei:
        parse(s)
    msg = str(ei.value)
    assert msg.startswith("invalid reference format: ")
    assert "\n" not in msg
    assert not is_reference(s)


def test_error_messages():
    with pytest.raises(InvalidArgument, match=r'^invalid reference format: "busybox:"$'):
        parse("busybox:")
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        parse("Busybox")
    with pytest.raises(InvalidArgument, match="64-byte hexadecimal"):
        parse(HEX64)
    with pytest.raises(InvalidArgument, match="at least one component"):
        parse("")
    with pytest.raises(InvalidArgument, match="must not be more than 255 characters"):
        parse("a/" + "b" * 254)
    with pytest.raises(InvalidArgument, match="unsupported algorithm"):
        parse("busybox@md5:" + "a" * 32)
    # newlines in the input never make a multi-line message
    with pytest.raises(InvalidArgument) as ei:
        parse("a\nb")
    assert "\n" not in str(ei.value)
    with pytest.raises(InvalidArgument):
        parse(None)  # type: ignore[arg-type]


def test_default_tag():
    assert str(parse("busybox", default_tag="stable")) == "docker.io/library/busybox:stable"
    assert str(parse("busybox:1", default_tag="stable")) == "docker.io/library/busybox:1"
    assert parse("busybox@" + D, default_tag="stable").tag is None
    name_only = parse("busybox", default_tag=None)
    assert name_only.tag is None and name_only.digest is None
    assert str(name_only) == "docker.io/library/busybox"
    assert name_only.familiar() == "busybox"
    with pytest.raises(InvalidArgument):
        parse("busybox", default_tag="-bad")


def test_parse_name():
    assert str(parse_name("user/repo")) == "docker.io/user/repo"
    with pytest.raises(InvalidArgument):
        parse_name("user/repo:tag")


def test_reference_object():
    ref = parse("busybox")
    assert ref.familiar_name() == "busybox"
    with pytest.raises(Exception):
        ref.tag = "x"  # type: ignore[misc]  # frozen
    assert str(ref.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    assert str(ref.with_digest(D)) == "docker.io/library/busybox:latest@" + D
    with pytest.raises(InvalidArgument):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:../../etc")
    with pytest.raises(InvalidArgument):
        Reference("docker.io", "Library/Busybox")
    with pytest.raises(InvalidArgument):
        Reference("docker.io", "library/busybox", tag=":x")
    assert Reference("docker.io", "library/busybox", "latest") == ref
    assert hash(Reference("docker.io", "library/busybox", "latest")) == hash(ref)


def test_is_tag():
    assert is_tag("latest") and is_tag("1.0-rc_1") and is_tag("A")
    assert not is_tag("") and not is_tag("-x") and not is_tag("x" * 129) and not is_tag("a/b")


def test_long_garbage_is_fast():
    # Python's backtracking regexps must not blow up on hostile input.
    import time

    for s in ["a" * 20000 + "!", "a." * 5000 + "!", "a-" * 5000 + "!", "a/" * 5000 + "!", "[" + ":" * 5000 + "]:1/!"]:
        t = time.monotonic()
        with pytest.raises(InvalidArgument):
            parse(s)
        assert time.monotonic() - t < 1.0


# --- digests -----------------------------------------------------------------


def test_digest_parse_and_helpers():
    assert dg.parse_digest(D) == ("sha256", "a" * 64)
    assert dg.parse_digest("sha512:" + "0" * 128) == ("sha512", "0" * 128)
    assert dg.sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert dg.digest_bytes(b"abc", "sha512").startswith("sha512:ddaf35a1")
    assert dg.is_digest(D)
    d = dg.Digest.parse(D)
    assert str(d) == D and d.algorithm == "sha256" and d.short() == "a" * 12
    assert dg.Digest.from_bytes(b"") == dg.Digest.parse(dg.sha256_digest(b""))
    assert dg.validate_digest(D) == D


@pytest.mark.parametrize(
    "s",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "SHA256:" + "a" * 64,
        "sha256:../../../../etc/passwd",
        "sha256:" + "a" * 60 + "/../",
        "../sha256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
        None,
    ],
)
def test_bad_digests(s):
    assert not dg.is_digest(s)
    with pytest.raises(InvalidArgument) as ei:
        dg.parse_digest(s)
    assert "\n" not in str(ei.value)


# --- media types -------------------------------------------------------------


def test_mediatypes():
    assert mt.is_manifest(mt.OCI_MANIFEST) and mt.is_manifest(mt.DOCKER_MANIFEST)
    assert mt.is_manifest("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
    assert not mt.is_manifest(mt.OCI_INDEX) and not mt.is_manifest(mt.DOCKER_MANIFEST_SCHEMA1_SIGNED)
    assert mt.is_index(mt.OCI_INDEX) and mt.is_index(mt.DOCKER_MANIFEST_LIST)
    assert not mt.is_index(mt.OCI_MANIFEST)
    assert mt.is_config(mt.OCI_CONFIG) and mt.is_config(mt.DOCKER_CONFIG)
    for layer in (
        mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        mt.DOCKER_LAYER, mt.DOCKER_LAYER_GZIP, mt.DOCKER_LAYER_FOREIGN_GZIP, mt.DOCKER_LAYER_ZSTD,
    ):
        assert mt.is_layer(layer), layer
    for other in (mt.OCI_CONFIG, mt.OCI_MANIFEST, mt.DOCKER_CONFIG, mt.OCI_EMPTY, "text/plain", ""):
        assert not mt.is_layer(other), other
    assert mt.is_foreign_layer(mt.DOCKER_LAYER_FOREIGN_GZIP) and not mt.is_foreign_layer(mt.OCI_LAYER_GZIP)


@pytest.mark.parametrize(
    "media_type,compression",
    [
        (mt.OCI_LAYER, None),
        (mt.OCI_LAYER_GZIP, "gzip"),
        (mt.OCI_LAYER_ZSTD, "zstd"),
        (mt.OCI_LAYER_NONDISTRIBUTABLE, None),
        (mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP, "gzip"),
        (mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD, "zstd"),
        (mt.DOCKER_LAYER, None),
        (mt.DOCKER_LAYER_GZIP, "gzip"),
        (mt.DOCKER_LAYER_ZSTD, "zstd"),
        (mt.DOCKER_LAYER_FOREIGN, None),
        (mt.DOCKER_LAYER_FOREIGN_GZIP, "gzip"),
    ],
)
def test_layer_compression(media_type, compression):
    assert mt.layer_compression(media_type) == compression


def test_layer_compression_refuses_non_layers():
    for bad in (mt.OCI_CONFIG, mt.OCI_MANIFEST, mt.OCI_LAYER_GZIP + "+encrypted", "application/x-tar"):
        with pytest.raises(InvalidArgument):
            mt.layer_compression(bad)
    assert mt.detect_compression(b"\x1f\x8b\x08\x00") == "gzip"
    assert mt.detect_compression(b"\x28\xb5\x2f\xfd\x00") == "zstd"
    assert mt.detect_compression(b"ustar") is None
