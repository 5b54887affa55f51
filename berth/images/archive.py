"""Image archives: `docker load` and `docker save` for docker-archive and OCI-layout tars.

    loaded = load_archive(fileobj, store)          # -> [Loaded(names, target, config_digest, platform)]
    save_archive(fileobj, store, [(names, target), ...])

Loading reads three forms, plain or compressed (gzip, bzip2, xz: tarfile's
``"r|*"``), in ONE streaming pass, so a pipe or stdin works:

* docker-archive (``docker save`` before 25, ``skopeo copy ... docker-archive:``):
  ``manifest.json`` = ``[{"Config": path, "RepoTags": [...], "Layers": [path...]}]``,
  legacy per-layer directories (``<id>/layer.tar``, ``json``, ``VERSION``, often
  symlinks between them) and ``repositories`` (ignored: manifest.json says it all).
* OCI image layout (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``), as
  written by skopeo (``oci-archive:``), containerd and buildkit.
* docker 25+'s combined form: an OCI layout plus a ``manifest.json`` whose paths
  point into ``blobs/``.

While the tar streams by, every blob (``blobs/<alg>/<hex>``, verified against its
name as it is written) and every other data file (layer tars, docker-archive
configs ``<hex>.json``) is ingested into the content store, hashing on the fly;
only the small top-level JSON files (index.json, manifest.json, oci-layout,
repositories) are kept in memory. The images are resolved when the tar ends:

* From ``index.json`` (when present): one image per distinct target descriptor;
  names come from the ``io.containerd.image.name`` annotation or, without it,
  from ``org.opencontainers.image.ref.name`` when that is a full reference
  (contains "/", ":" or "@"; skopeo's oci-archive writes "hello-world:latest").
  A tag-only ref.name ("latest", as docker and containerd write next to the
  full name) is combined with ``base_name`` when one is given, else ignored.
  A target that is an index (manifest list) stays the target; the manifest
  for ``platform`` (default: the host) gives the config digest; only that
  manifest, its config and layers must be in the archive.
* From ``manifest.json``: entries whose config is the config of an image found
  in index.json only add their RepoTags to it (the combined form); the others
  become images of their own, addressed by an OCI image manifest synthesised
  here and stored, as containerd's import does: config mediaType
  ``application/vnd.oci.image.config.v1+json``, uncompressed layers
  ``application/vnd.oci.image.layer.v1.tar`` whose digest is the sha256 of the
  layer tar, i.e. its diff ID. A layer file that is gzip (or zstd) gets the
  matching ``+gzip``/``+zstd`` type and its own digest.

Verification: blobs against their names; manifests and configs against their
descriptors' digests and sizes; every layer of the chosen manifest must be in
the archive; uncompressed layers against the config's ``rootfs.diff_ids`` (in
docker-archives gzip layers are decompressed from the store to check their diff
ID too; zstd ones cannot be with the standard library and are left to the
unpacker, which recomputes diff IDs anyway). Manifests and indexes over 4 MiB,
configs over 20 MiB, malformed JSON, missing blobs, unsafe paths (absolute, or
with ``..``, in tar entries, manifest.json or symlink targets) and mismatches
raise ``InvalidArgument`` with a one-line message. Then nothing is returned, so
nothing gets tagged; blobs already ingested (and synthesised manifests) stay in
the content store unreferenced, for the garbage collector to remove.

Saving writes one tar that both ``docker load`` (any version) and OCI tools read,
like docker 25+: ``oci-layout``, ``blobs/<alg>/<hex>`` (manifests, configs and
layers exactly as stored, each written once even when several images share
it), ``index.json`` (one descriptor per name, annotated with
``io.containerd.image.name`` = the full reference and
``org.opencontainers.image.ref.name`` = its tag, as docker and containerd do;
one plain descriptor for an image saved without a name), ``manifest.json``
(Config and Layers as ``blobs/sha256/<hex>`` paths, RepoTags in docker's
familiar form "busybox:latest") and ``repositories``. For an index target the
index blob is kept (index.json points to it) and the manifest for the host
platform, its config and layers are written.

Compressed layers in manifest.json: a stored gzip/zstd layer is referenced
as-is, not duplicated as an uncompressed copy. docker load has decompressed
layer files it is given (``archive.DecompressStream``: gzip, bzip2, xz, and
zstd since 23.0) for as long as manifest.json exists, and skopeo's
docker-archive reader does the same; an uncompressed copy would double the
archive and cannot be made for zstd with the standard library. Images loaded
from docker-archives keep uncompressed layers, so they round-trip unchanged.

Blocking I/O throughout: call from a worker thread in async code.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from berth.errors import InvalidArgument, NotFound
from berth.images.config import (
    format_platform,
    host_platform,
    match_platform,
    normalize_platform,
    parse_platform,
)
from berth.oci import mediatypes as mt
from berth.oci import reference
from berth.oci.digest import is_digest, parse_digest

MAX_MANIFEST_SIZE = 4 << 20  #: manifests and indexes (and index.json, manifest.json)
MAX_CONFIG_SIZE = 20 << 20  #: image configs
MAX_SMALL_FILE = 1 << 20  #: oci-layout, repositories
MAX_INDEX_DEPTH = 4  #: index -> index -> ... -> manifest
MAX_LINK_HOPS = 16

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"  # containerd's (and docker 25+'s) full name

_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Loaded:
    """One image found in an archive.

    ``names``: normalised references as strings ("docker.io/library/busybox:latest"),
    possibly empty (an untagged image, known by its ID only).
    ``target``: the descriptor {"mediaType", "digest", "size"} the names should
    point to: a manifest, or an index for multi-platform images.
    ``config_digest``: the image ID (of the platform manifest for an index).
    ``platform``: {"os", "architecture"[, "variant"]} from the config, or None.
    """

    names: list[str]
    target: dict
    config_digest: str
    platform: dict | None = None
    layers: list[dict] = field(default_factory=list)  #: layer descriptors of the (platform) manifest


# --- small helpers -------------------------------------------------------------


def _q(s: object) -> str:
    text = s if isinstance(s, str) else repr(s)
    if len(text) > 200:
        text = text[:200] + "..."
    return json.dumps(text, ensure_ascii=False)


def _err(msg: str) -> InvalidArgument:
    return InvalidArgument("archive: " + " ".join(msg.split("\n")))


def _parse_json(data: bytes, what: str, kind: type = dict) -> Any:
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        raise _err(f"{what}: malformed JSON: not UTF-8") from None
    except json.JSONDecodeError as e:
        raise _err(f"{what}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise _err(f"{what}: malformed JSON: nested too deeply") from None
    if not isinstance(value, kind):
        raise _err(f"{what}: expected a JSON {'object' if kind is dict else 'array'}")
    return value


def _clean_path(name: str, what: str) -> str:
    """A tar or manifest.json path as a relative, normalised path; refuse "..", absolute paths."""
    if not isinstance(name, str) or not name:
        raise _err(f"{what}: empty or invalid path {_q(name)}")
    if name.startswith("/") or "\x00" in name:
        raise _err(f"{what}: unsafe path {_q(name)}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _err(f"{what}: unsafe path {_q(name)}")
    return "/".join(parts)


def _link_target(member_path: str, linkname: str, symbolic: bool) -> str:
    """Where a link entry points, as an archive path; refuses targets outside the archive."""
    if not linkname or linkname.startswith("/"):
        raise _err(f"link {_q(member_path)} points outside the archive ({_q(linkname)})")
    base = posixpath.dirname(member_path) if symbolic else ""
    joined = posixpath.normpath(posixpath.join(base, linkname))
    if joined == ".." or joined.startswith(("../", "/")):
        raise _err(f"link {_q(member_path)} points outside the archive ({_q(linkname)})")
    return "" if joined == "." else joined


def _check_descriptor(d: Any, what: str) -> dict:
    if not isinstance(d, dict):
        raise _err(f"{what}: descriptor is not an object")
    media_type, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _err(f"{what}: descriptor has no mediaType")
    if not is_digest(digest):
        raise _err(f"{what}: descriptor has an invalid digest {_q(digest)}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _err(f"{what}: descriptor {digest} has an invalid size {_q(size)}")
    return d


def _desc(media_type: str, digest: str, size: int) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size}


def _blob_path(digest: str) -> str:
    algo, hexd = parse_digest(digest)
    return f"blobs/{algo}/{hexd}"


def _platform_of(config: Mapping[str, Any]) -> dict | None:
    p = {k: config[k] for k in ("os", "architecture", "variant") if isinstance(config.get(k), str) and config[k]}
    try:
        return normalize_platform(p)
    except InvalidArgument:
        return None


def _want_platform(platform: Mapping[str, Any] | str | None) -> dict:
    if platform is None:
        return host_platform()
    if isinstance(platform, str):
        return parse_platform(platform)
    return normalize_platform(platform)


def _gunzip_digest(f: BinaryIO) -> str:
    """sha256 of the decompressed content of a gzip stream (multi-member aware, bounded memory)."""
    import hashlib

    h = hashlib.sha256()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    started = False
    try:
        while True:
            data = f.read(_CHUNK)
            if not data:
                break
            while data:
                if started is None:  # after the last member: only zero padding may follow
                    if data.strip(b"\0"):
                        raise _err("invalid gzip layer: unexpected data after the gzip stream")
                    break
                started = True
                while True:
                    out = d.decompress(data, _CHUNK)
                    h.update(out)
                    data = d.unconsumed_tail
                    if d.eof or (not data and len(out) < _CHUNK):
                        break
                if d.eof:
                    data = d.unused_data
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    started = None if (data and not data.strip(b"\0")) else False
    except zlib.error as e:
        raise _err(f"invalid gzip layer: {e}") from None
    if started:
        raise _err("invalid gzip layer: truncated")
    return "sha256:" + h.hexdigest()


def _tar_errors() -> tuple[type[BaseException], ...]:
    import gzip

    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile]
    try:
        import lzma

        errors.append(lzma.LZMAError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


# --- loading --------------------------------------------------------------------


class _Loader:
    def __init__(self, store, platform: dict, base_name: str | None):
        self.store = store
        self.platform = platform
        self.base_name = base_name
        self.files: dict[str, tuple[str, int]] = {}  # archive path -> (digest, size), ingested
        self.small: dict[str, bytes] = {}  # archive path -> content, in memory
        self.links: dict[str, str] = {}  # archive path -> archive path

    # -- the streaming pass --

    def read_tar(self, fileobj: BinaryIO) -> None:
        errors = _tar_errors()
        try:
            tf = tarfile.open(fileobj=fileobj, mode="r|*")  # noqa: SIM115 - closed below
        except errors as e:
            raise _err(f"not a tar archive: {e}") from None
        with tf:
            try:
                for m in tf:
                    self._member(tf, m)
            except errors as e:
                raise _err(f"corrupt tar archive: {e}") from None

    def _member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        path = _clean_path(m.name, "tar entry")
        if not path or m.isdir():
            return
        if m.issym() or m.islnk():
            self.links[path] = _link_target(path, m.linkname, m.issym())
            return
        if not m.isreg():
            return  # devices, fifos: nothing an image archive needs
        self.files.pop(path, None)
        self.small.pop(path, None)
        self.links.pop(path, None)
        parts = path.split("/")
        limit = self._small_limit(parts)
        if limit is not None:
            if m.size > limit:
                raise _err(f"{path} is {m.size} bytes, more than the limit of {limit}")
            f = tf.extractfile(m)
            self.small[path] = f.read() if f is not None else b""
            return
        if len(parts) == 2 and parts[1] in ("json", "VERSION"):
            return  # legacy v1 layer metadata, unused
        expected = None
        if parts[0] == "blobs":
            if len(parts) != 3 or not is_digest(f"{parts[1]}:{parts[2]}"):
                raise _err(f"{_q(path)} is not a valid blob name")
            expected = f"{parts[1]}:{parts[2]}"
        f = tf.extractfile(m)
        try:
            digest = self.store.ingest_from(f, expected_digest=expected, expected_size=m.size)
        except InvalidArgument as e:
            raise _err(f"{path}: {e}") from None
        self.files[path] = (digest, m.size)

    @staticmethod
    def _small_limit(parts: list[str]) -> int | None:
        if len(parts) != 1:
            return None
        name = parts[0]
        if name in ("index.json", "manifest.json"):
            return MAX_MANIFEST_SIZE
        if name in ("oci-layout", "repositories"):
            return MAX_SMALL_FILE
        return None  # docker-archive configs (<hex>.json) are blobs: ingested, size-checked when used

    # -- lookups --

    def _follow(self, path: str) -> str:
        hops = 0
        while path in self.links:
            path = self.links[path]
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise _err(f"too many levels of links at {_q(path)}")
        return path

    def file(self, path: str, what: str) -> tuple[str, int]:
        """(digest, size) of an archive file, storing it if it was kept in memory."""
        real = self._follow(path)
        if real in self.files:
            return self.files[real]
        if real in self.small:
            data = self.small[real]
            digest = self.store.write_blob(data)
            self.files[real] = (digest, len(data))
            return digest, len(data)
        raise _err(f"{what} {_q(path)} is not in the archive")

    def blob(self, desc: dict, what: str) -> str:
        """Check a descriptor's blob is in the archive with the right size; return the digest."""
        digest = desc["digest"]
        path = _blob_path(digest)
        real = self._follow(path)
        if real not in self.files:
            raise _err(f"{what} {digest} is not in the archive")
        got, size = self.files[real]
        if got != digest:  # a link from blobs/x to some other file
            raise _err(f"{what} {digest}: {path} holds {got}")
        if size != desc["size"]:
            raise _err(f"{what} {digest} is {size} bytes, its descriptor says {desc['size']}")
        return digest

    def read_blob(self, desc: dict, what: str, limit: int) -> bytes:
        if desc["size"] > limit:
            raise _err(f"{what} {desc['digest']} is {desc['size']} bytes, more than the limit of {limit}")
        digest = self.blob(desc, what)
        return self.store.read(digest, max_size=limit)

    # -- OCI layout --

    def names_from_annotations(self, ann: Any, what: str) -> list[str]:
        if not isinstance(ann, dict):
            return []
        full = ann.get(ANNOTATION_IMAGE_NAME)
        if isinstance(full, str) and full:
            try:
                return [str(reference.parse(full))]
            except InvalidArgument as e:
                raise _err(f"{what}: {e}") from None
        name = ann.get(ANNOTATION_REF_NAME)
        if not isinstance(name, str) or not name:
            return []
        if any(c in name for c in "/:@"):
            try:
                return [str(reference.parse(name))]
            except InvalidArgument:
                return []  # an OCI ref.name that is no docker reference: load untagged
        if self.base_name and reference.is_tag(name):
            try:
                return [str(reference.parse(self.base_name, default_tag=None).with_tag(name))]
            except InvalidArgument as e:
                raise _err(f"{what}: {e}") from None
        return []

    def load_oci(self) -> list[Loaded]:
        index = _parse_json(self.small["index.json"], "index.json")
        manifests = index.get("manifests")
        if manifests is None:
            manifests = []
        if not isinstance(manifests, list):
            raise _err("index.json: manifests is not an array")
        by_digest: dict[str, Loaded] = {}
        for i, d in enumerate(manifests):
            what = f"index.json manifests[{i}]"
            d = _check_descriptor(d, what)
            names = self.names_from_annotations(d.get("annotations"), what)
            loaded = by_digest.get(d["digest"])
            if loaded is None:
                target = _desc(mt.normalize(d["mediaType"]), d["digest"], d["size"])
                config_digest, platform, layers = self.resolve(target, 0)
                loaded = Loaded([], target, config_digest, platform, layers)
                by_digest[d["digest"]] = loaded
            for n in names:
                if n not in loaded.names:
                    loaded.names.append(n)
        return list(by_digest.values())

    def resolve(self, desc: dict, depth: int) -> tuple[str, dict | None, list[dict]]:
        """(config digest, platform, layers) of a manifest or index descriptor."""
        media_type = mt.normalize(desc["mediaType"])
        digest = desc["digest"]
        if mt.is_index(media_type):
            if depth >= MAX_INDEX_DEPTH:
                raise _err(f"image index {digest}: indexes nested too deeply")
            body = _parse_json(self.read_blob(desc, "image index", MAX_MANIFEST_SIZE), f"image index {digest}")
            self._check_body_type(body, media_type, f"image index {digest}")
            children = body.get("manifests")
            if not isinstance(children, list):
                raise _err(f"image index {digest}: manifests is not an array")
            children = [_check_descriptor(c, f"image index {digest}") for c in children]
            children = [c for c in children if mt.is_manifest(c["mediaType"]) or mt.is_index(c["mediaType"])]
            child = match_platform(children, self.platform)
            if child is None:
                raise _err(f"image index {digest} has no manifest for {format_platform(self.platform)}")
            return self.resolve(_desc(mt.normalize(child["mediaType"]), child["digest"], child["size"]), depth + 1)
        if not mt.is_manifest(media_type):
            raise _err(f"{digest}: unsupported media type {_q(desc['mediaType'])}")
        body = _parse_json(self.read_blob(desc, "manifest", MAX_MANIFEST_SIZE), f"manifest {digest}")
        self._check_body_type(body, media_type, f"manifest {digest}")
        cdesc = _check_descriptor(body.get("config"), f"manifest {digest} config")
        if not mt.is_config(cdesc["mediaType"]):
            raise _err(f"manifest {digest}: config media type {_q(cdesc['mediaType'])} is not an image config")
        config = _parse_json(self.read_blob(cdesc, "config", MAX_CONFIG_SIZE), f"config {cdesc['digest']}")
        layers = body.get("layers")
        if not isinstance(layers, list):
            raise _err(f"manifest {digest}: layers is not an array")
        diff_ids = self._diff_ids(config, cdesc["digest"])
        if len(diff_ids) != len(layers):
            raise _err(f"manifest {digest} has {len(layers)} layers, its config lists {len(diff_ids)} diff IDs")
        out = []
        for i, ld in enumerate(layers):
            ld = _check_descriptor(ld, f"manifest {digest} layer {i}")
            if not mt.is_layer(ld["mediaType"]):
                raise _err(f"manifest {digest}: unsupported layer media type {_q(ld['mediaType'])}")
            try:
                compression = mt.layer_compression(ld["mediaType"])
            except InvalidArgument as e:
                raise _err(f"manifest {digest}: {e}") from None
            if mt.is_foreign_layer(ld["mediaType"]) and ld.get("urls") and \
                    self._follow(_blob_path(ld["digest"])) not in self.files:
                out.append(ld)
                continue  # non-distributable: fetched from its URLs, not shipped
            self.blob(ld, "layer")
            if compression is None and ld["digest"] != diff_ids[i] and not self._is_compressed(ld["digest"]):
                raise _err(f"layer {ld['digest']} does not match diff ID {diff_ids[i]} of config {cdesc['digest']}")
            out.append(_desc(ld["mediaType"], ld["digest"], ld["size"]))
        return cdesc["digest"], _platform_of(config), out

    @staticmethod
    def _check_body_type(body: dict, media_type: str, what: str) -> None:
        declared = body.get("mediaType")
        if declared is not None and mt.normalize(declared) != media_type:
            raise _err(f"{what}: media type {_q(declared)} does not match its descriptor's {_q(media_type)}")

    @staticmethod
    def _diff_ids(config: dict, digest: str) -> list[str]:
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if diff_ids is None:
            diff_ids = []
        if not isinstance(diff_ids, list) or not all(is_digest(x) for x in diff_ids):
            raise _err(f"config {digest}: rootfs.diff_ids is not a list of digests")
        return diff_ids

    def _is_compressed(self, digest: str) -> bool:
        with self.store.open(digest) as f:
            return mt.detect_compression(f.read(4)) is not None

    # -- docker-archive --

    def load_docker(self, oci: list[Loaded]) -> list[Loaded]:
        entries = _parse_json(self.small["manifest.json"], "manifest.json", list)
        by_config = {}
        for loaded in oci:
            by_config.setdefault(loaded.config_digest, loaded)
        out: list[Loaded] = []
        for i, e in enumerate(entries):
            what = f"manifest.json[{i}]"
            if not isinstance(e, dict):
                raise _err(f"{what}: not an object")
            names = self._repo_tags(e.get("RepoTags"), what)
            config_path = _clean_path(e.get("Config"), f"{what} Config")
            config_digest, config_size = self.file(config_path, f"{what}: config")
            base = posixpath.basename(config_path)
            if base.endswith(".json") and _HEX64.fullmatch(base[:-5]) and config_digest != "sha256:" + base[:-5]:
                raise _err(f"{what}: config {_q(config_path)} does not match its name (it is {config_digest})")
            known = by_config.get(config_digest)
            if known is not None:  # docker 25+: the same image is in index.json
                for n in names:
                    if n not in known.names:
                        known.names.append(n)
                continue
            loaded = self._docker_image(e, what, config_digest, config_size)
            loaded.names = names
            by_config[config_digest] = loaded
            out.append(loaded)
        return out

    def _repo_tags(self, tags: Any, what: str) -> list[str]:
        if tags is None:
            return []
        if not isinstance(tags, list):
            raise _err(f"{what}: RepoTags is not an array")
        out = []
        for t in tags:
            try:
                n = str(reference.parse(t))
            except InvalidArgument as e:
                raise _err(f"{what}: {e}") from None
            if n not in out:
                out.append(n)
        return out

    def _docker_image(self, e: dict, what: str, config_digest: str, config_size: int) -> Loaded:
        if config_size > MAX_CONFIG_SIZE:
            raise _err(f"{what}: config is {config_size} bytes, more than the limit of {MAX_CONFIG_SIZE}")
        config = _parse_json(self.store.read(config_digest, max_size=MAX_CONFIG_SIZE), f"config {config_digest}")
        diff_ids = self._diff_ids(config, config_digest)
        paths = e.get("Layers")
        if paths is None:
            paths = []
        if not isinstance(paths, list):
            raise _err(f"{what}: Layers is not an array")
        if len(paths) != len(diff_ids):
            raise _err(f"{what} has {len(paths)} layers, its config lists {len(diff_ids)} diff IDs")
        layers = []
        for i, p in enumerate(paths):
            path = _clean_path(p, f"{what} Layers[{i}]")
            digest, size = self.file(path, f"{what}: layer")
            with self.store.open(digest) as f:
                compression = mt.detect_compression(f.read(4))
                if compression == "gzip":
                    f.seek(0)
                    uncompressed = _gunzip_digest(f)
                    if uncompressed != diff_ids[i]:
                        raise _err(f"layer {_q(path)} does not match diff ID {diff_ids[i]} (it is {uncompressed})")
                    media_type = mt.OCI_LAYER_GZIP
                elif compression == "zstd":
                    media_type = mt.OCI_LAYER_ZSTD  # diff ID checked when unpacked
                else:
                    if digest != diff_ids[i]:
                        raise _err(f"layer {_q(path)} does not match diff ID {diff_ids[i]} (it is {digest})")
                    media_type = mt.OCI_LAYER
            layers.append(_desc(media_type, digest, size))
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": _desc(mt.OCI_CONFIG, config_digest, config_size),
            "layers": layers,
        }
        data = json.dumps(manifest, separators=(",", ":")).encode()
        digest = self.store.write_blob(data)
        return Loaded([], _desc(mt.OCI_MANIFEST, digest, len(data)), config_digest, _platform_of(config), layers)


def load_archive(fileobj: BinaryIO, store, *, platform: Mapping[str, Any] | str | None = None,
                 base_name: str | None = None) -> list[Loaded]:
    """Load every image of a docker-archive or OCI-layout tar into ``store``.

    ``fileobj`` is read once, front to back (a pipe or stdin is fine), plain
    or compressed. ``platform`` chooses the manifest of multi-platform
    images (default: the host's). ``base_name`` ("docker.io/library/foo")
    names images whose OCI ref.name is only a tag.

    Returns the images in archive order, each with its names, target
    descriptor, config digest and platform; tagging them is the caller's job.
    On any problem raises InvalidArgument (one line) and returns nothing, so
    nothing is tagged; blobs already ingested stay in the content store,
    unreferenced, until garbage collection removes them.
    """
    want = _want_platform(platform)
    if base_name is not None:
        reference.parse_name(base_name)
    loader = _Loader(store, want, base_name)
    loader.read_tar(fileobj)
    if "index.json" not in loader.small and "manifest.json" not in loader.small:
        raise _err("neither index.json nor manifest.json found: not a docker or OCI image archive")
    if "oci-layout" in loader.small:
        layout = _parse_json(loader.small["oci-layout"], "oci-layout")
        version = layout.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise _err(f"oci-layout: unsupported imageLayoutVersion {_q(version)}")
    images = loader.load_oci() if "index.json" in loader.small else []
    if "manifest.json" in loader.small:
        images += loader.load_docker(images)
    # a name points to one image: the last one that claims it wins, as with docker load
    seen: set[str] = set()
    for loaded in reversed(images):
        loaded.names = [n for n in loaded.names if n not in seen]
        seen.update(loaded.names)
    return images


# --- saving -----------------------------------------------------------------------


@dataclass
class _SaveItem:
    refs: list[reference.Reference]
    target: dict
    manifest: dict  # the (platform) manifest descriptor
    config: dict
    layers: list[dict]
    blobs: list[dict]  # every descriptor to write, target first


def _read_stored(store, desc: dict, what: str, limit: int) -> dict:
    if desc["size"] > limit:
        raise InvalidArgument(f"{what} {desc['digest']} is {desc['size']} bytes, more than the limit of {limit}")
    data = store.read(desc["digest"], max_size=limit)
    if len(data) != desc["size"]:
        raise InvalidArgument(f"{what} {desc['digest']} is {len(data)} bytes, its descriptor says {desc['size']}")
    return _parse_json(data, f"{what} {desc['digest']}")


def _plan(store, names: Sequence[str], target: Mapping[str, Any], platform: dict) -> _SaveItem:
    refs = []
    for n in names or ():
        r = n if isinstance(n, reference.Reference) else reference.parse(n)
        if r not in refs:
            refs.append(r)
    target = dict(target)
    if target.get("size") is None and is_digest(target.get("digest")):
        target["size"] = store.info(target["digest"])
    _check_descriptor(target, "target")
    target = _desc(mt.normalize(target["mediaType"]), target["digest"], target["size"])
    blobs = []
    desc = target
    for _ in range(MAX_INDEX_DEPTH + 1):
        if not mt.is_index(desc["mediaType"]):
            break
        blobs.append(desc)
        index = _read_stored(store, desc, "image index", MAX_MANIFEST_SIZE)
        children = [_check_descriptor(c, f"image index {desc['digest']}") for c in index.get("manifests") or []]
        child = match_platform(children, platform)
        if child is None:
            raise NotFound(f"image index {desc['digest']} has no manifest for {format_platform(platform)}")
        desc = _desc(mt.normalize(child["mediaType"]), child["digest"], child["size"])
    if not mt.is_manifest(desc["mediaType"]):
        raise InvalidArgument(f"cannot save {desc['digest']}: unsupported media type {_q(desc['mediaType'])}")
    manifest = _read_stored(store, desc, "manifest", MAX_MANIFEST_SIZE)
    config = _check_descriptor(manifest.get("config"), f"manifest {desc['digest']} config")
    layers = [_check_descriptor(ld, f"manifest {desc['digest']} layer") for ld in manifest.get("layers") or []]
    config = _desc(config["mediaType"], config["digest"], config["size"])
    layers = [_desc(ld["mediaType"], ld["digest"], ld["size"]) for ld in layers]
    blobs += [desc, config, *layers]
    for b in blobs:
        size = store.info(b["digest"])  # NotFound if the content is gone
        if size != b["size"]:
            raise InvalidArgument(f"content {b['digest']} is {size} bytes, its descriptor says {b['size']}")
    return _SaveItem(refs, target, desc, config, layers, blobs)


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if directory:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
    else:
        ti.mode = 0o644
        ti.size = size
    return ti


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def save_archive(fileobj: BinaryIO, store, images: Iterable[tuple[Sequence[str], Mapping[str, Any]]], *,
                 platform: Mapping[str, Any] | str | None = None) -> None:
    """Write ``images`` ((names, target descriptor) pairs) as one tar to ``fileobj``.

    The tar is an OCI image layout plus docker's manifest.json and
    repositories (see the module docstring), written as a stream (tarfile
    "w|"; stdout is fine), blobs once each, entries with mtime 0 so the same
    images give the same bytes. Everything is checked before the first byte
    is written: a blob missing from the store raises NotFound, a bad
    descriptor or name InvalidArgument. ``platform`` picks the manifest of
    index targets (default: the host's).
    """
    want = _want_platform(platform)
    items = [_plan(store, names, target, want) for names, target in images]

    index_entries = []
    docker_manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        tagged = [r for r in item.refs if r.tag is not None or r.digest is not None]
        for r in tagged:
            ann = {ANNOTATION_IMAGE_NAME: str(r)}
            if r.tag is not None:
                ann[ANNOTATION_REF_NAME] = r.tag
            index_entries.append({**item.target, "annotations": ann})
        if not tagged:
            index_entries.append(dict(item.target))
        repo_tags = []
        for r in item.refs:
            if r.tag is None:
                continue
            familiar = r.familiar_name() + ":" + r.tag
            if familiar not in repo_tags:
                repo_tags.append(familiar)
            if item.layers:
                repositories.setdefault(r.familiar_name(), {})[r.tag] = parse_digest(item.layers[-1]["digest"])[1]
        docker_manifest.append({
            "Config": _blob_path(item.config["digest"]),
            "RepoTags": repo_tags or None,  # docker writes null for an image saved by its ID
            "Layers": [_blob_path(ld["digest"]) for ld in item.layers],
        })
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}

    # On an error the with block does not write the end-of-archive marker, so
    # a reader sees a truncated tar rather than a complete-looking one.
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        tf.addfile(_tarinfo("blobs", directory=True))
        written: set[str] = set()
        dirs: set[str] = set()
        for item in items:
            for b in item.blobs:
                if b["digest"] in written:
                    continue
                written.add(b["digest"])
                path = _blob_path(b["digest"])
                d = posixpath.dirname(path)
                if d not in dirs:
                    dirs.add(d)
                    tf.addfile(_tarinfo(d, directory=True))
                with store.open(b["digest"]) as f:
                    tf.addfile(_tarinfo(path, b["size"]), f)
        _add_bytes(tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
        _add_bytes(tf, "manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
        if repositories:
            _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
