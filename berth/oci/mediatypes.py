"""Media types of the OCI image-spec and Docker image manifest v2 schema 2.

Pure, no I/O. The helpers accept a media type as a registry sends it in a
Content-Type header (parameters such as "; charset=utf-8" and letter case are
ignored).
"""

from __future__ import annotations

import json

from berth.errors import InvalidArgument

# --- OCI image-spec -------------------------------------------------------
OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# Non-distributable ("foreign") layers; deprecated by image-spec 1.1 but still seen.
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# --- Docker image manifest v2, schema 2 ------------------------------------
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"  # may be gzip anyway; sniff
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
# Schema 1 is obsolete; named so it can be recognised and refused.
DOCKER_MANIFEST_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

#: What a registry client sends in Accept when resolving a reference.
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

# layer base type (before any "+suffix") -> compression implied by the base itself
_OCI_LAYER_BASES = frozenset({OCI_LAYER, OCI_LAYER_NONDISTRIBUTABLE})
_DOCKER_LAYER_BASES = {
    DOCKER_LAYER: None,
    DOCKER_LAYER_FOREIGN: None,
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
}
_COMPRESSIONS = ("gzip", "zstd")

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def normalize(mt: str) -> str:
    """Strip parameters and whitespace and lower-case a media type."""
    return mt.split(";", 1)[0].strip().lower() if isinstance(mt, str) else ""


def _split(mt: str) -> tuple[str, list[str]]:
    base, *suffixes = normalize(mt).split("+")
    return base, suffixes


def is_manifest(mt: str) -> bool:
    """An image manifest (OCI or Docker schema 2), not an index."""
    return normalize(mt) in MANIFEST_TYPES


def is_index(mt: str) -> bool:
    """A multi-platform index (OCI index or Docker manifest list)."""
    return normalize(mt) in INDEX_TYPES


def is_config(mt: str) -> bool:
    """An image configuration (OCI or Docker)."""
    return normalize(mt) in CONFIG_TYPES


def is_layer(mt: str) -> bool:
    """A filesystem layer of either family, including foreign/non-distributable ones."""
    base, suffixes = _split(mt)
    if base in _OCI_LAYER_BASES:
        return True
    return base in _DOCKER_LAYER_BASES and not suffixes


def is_foreign_layer(mt: str) -> bool:
    """A layer that registries need not serve (URLs in the descriptor instead)."""
    base, _ = _split(mt)
    return base in (OCI_LAYER_NONDISTRIBUTABLE, DOCKER_LAYER_FOREIGN, DOCKER_LAYER_FOREIGN_GZIP)


def layer_compression(mt: str) -> str | None:
    """The compression a layer media type declares: "gzip", "zstd" or None.

    None means the type declares an uncompressed tar; Docker's plain
    ``rootfs.diff.tar`` is known to carry gzip data sometimes, so unpackers
    should still check :func:`detect_compression` on the first bytes.
    Raises InvalidArgument for a non-layer media type or an unknown suffix
    (e.g. "+encrypted").
    """
    base, suffixes = _split(mt)
    if base in _DOCKER_LAYER_BASES and not suffixes:
        return _DOCKER_LAYER_BASES[base]
    if base in _OCI_LAYER_BASES:
        if not suffixes:
            return None
        if len(suffixes) == 1 and suffixes[0] in _COMPRESSIONS:
            return suffixes[0]
        raise InvalidArgument(f"unsupported layer media type {json.dumps(normalize(mt))}")
    raise InvalidArgument(f"{json.dumps(normalize(mt))} is not a layer media type")


def detect_compression(head: bytes) -> str | None:
    """Sniff "gzip" or "zstd" from the first bytes of a blob; None otherwise."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None
