"""The records the metadata store hands out, and the validation of what goes in.

Plain frozen dataclasses, no I/O. Times are unix epoch seconds (float).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.digest import parse_digest

#: containerd's namespace rule, lower-case only
NAMESPACE_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
#: containerd's identifier rule (container and lease ids)
IDENTIFIER_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
#: docker's container-name rule (without the leading "/")
CONTAINER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
MAX_NAME = 76
MAX_IMAGE_NAME = 1024
#: dockerd and containerd's CRI set no length; a CRI container's name (<container>_<pod>_<namespace>_
#: <uid>_<attempt>, Kubernetes names of up to 63, 253, 63 and 36 characters) is up to ~430
MAX_CONTAINER_NAME = 1024
MAX_LABEL = 4096  # key + value, as containerd

DEFAULT_NAMESPACE = "default"
#: the snapshotter name used when none is given (containerd's name for overlay)
DEFAULT_SNAPSHOTTER = "overlayfs"

# lease resource kinds
CONTENT = "content"
INGEST = "ingest"
SNAPSHOT = "snapshot"
RESOURCE_KINDS = (CONTENT, INGEST, SNAPSHOT)


def q(s: object) -> str:
    """Quote a value for a one-line error message."""
    text = s if isinstance(s, str) else repr(s)
    if len(text) > 200:
        text = text[:200] + "..."
    return json.dumps(text, ensure_ascii=False)


def check_namespace(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument("namespace name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"invalid namespace name {q(name)}: longer than {MAX_NAME} characters")
    if not NAMESPACE_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid namespace name {q(name)}: must match [a-z0-9]([a-z0-9._-]*[a-z0-9])?"
        )
    return name


def check_identifier(kind: str, ident: object) -> str:
    if not isinstance(ident, str) or not ident:
        raise InvalidArgument(f"{kind} id must be a non-empty string")
    if len(ident) > MAX_NAME:
        raise InvalidArgument(f"invalid {kind} id {q(ident)}: longer than {MAX_NAME} characters")
    if not IDENTIFIER_RE.fullmatch(ident):
        raise InvalidArgument(
            f"invalid {kind} id {q(ident)}: must be letters and digits separated by '.', '_' or '-'"
        )
    return ident


def check_container_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument("container name must be a non-empty string")
    if len(name) > MAX_CONTAINER_NAME:
        raise InvalidArgument(f"invalid container name {q(name)}: longer than {MAX_CONTAINER_NAME} characters")
    if not CONTAINER_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid container name {q(name)}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed"
        )
    return name


def check_image_name(name: object) -> str:
    """Image names are stored as given (the images layer normalises them):
    non-empty, printable, no white space, at most 1024 characters."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("image name must be a non-empty string")
    if len(name) > MAX_IMAGE_NAME:
        raise InvalidArgument(f"invalid image name {q(name)}: longer than {MAX_IMAGE_NAME} characters")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise InvalidArgument(f"invalid image name {q(name)}: white space or control characters")
    return name


def check_digest(d: object) -> str:
    parse_digest(d)  # type: ignore[arg-type]
    return d  # type: ignore[return-value]


def check_text(what: str, s: object, *, allow_empty: bool = True) -> str:
    if not isinstance(s, str) or (not allow_empty and not s):
        raise InvalidArgument(f"{what} must be a{' non-empty' if not allow_empty else ''} string")
    if "\x00" in s:
        raise InvalidArgument(f"{what} must not contain NUL")
    return s


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidArgument("labels must be a mapping of strings to strings")
    out: dict[str, str] = {}
    for k, v in labels.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise InvalidArgument(f"label {q(k)}: keys must be non-empty strings and values strings")
        if len(k) + len(v) > MAX_LABEL:
            raise InvalidArgument(f"label {q(k)}: key and value longer than {MAX_LABEL} characters")
        out[k] = v
    return out


def check_time(what: str, t: object) -> float | None:
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t):
        raise InvalidArgument(f"{what} must be a unix time in seconds")
    return float(t)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor reduced to what an image record needs."""

    media_type: str
    digest: str
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.media_type, str) or not self.media_type:
            raise InvalidArgument("descriptor mediaType must be a non-empty string")
        check_digest(self.digest)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InvalidArgument(f"descriptor size must be a non-negative integer, got {self.size!r}")

    @classmethod
    def of(cls, value: Descriptor | Mapping[str, Any]) -> Descriptor:
        """Accept a Descriptor or an OCI-style dict {mediaType, digest, size}."""
        if isinstance(value, Descriptor):
            return value
        if isinstance(value, Mapping):
            try:
                return cls(value["mediaType"], value["digest"], value["size"])
            except KeyError as e:
                raise InvalidArgument(f"descriptor is missing {e.args[0]!r}") from None
        # duck-typed descriptors (e.g. dataclasses elsewhere in berth)
        try:
            return cls(value.media_type, value.digest, value.size)  # type: ignore[attr-defined]
        except AttributeError:
            raise InvalidArgument("target must be a descriptor {mediaType, digest, size}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Image:
    namespace: str
    name: str
    target: Descriptor
    labels: dict[str, str]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Container:
    namespace: str
    id: str
    name: str
    image: str
    snapshotter: str
    snapshot_key: str
    runtime: str
    spec: str | None  # JSON text
    labels: dict[str, str]
    extensions: dict[str, Any]
    created_at: float
    updated_at: float

    def spec_json(self) -> Any:
        return None if self.spec is None else json.loads(self.spec)


@dataclass(frozen=True)
class Object:
    """A network or a volume: its service keeps what it needs in ``data`` (a JSON object)."""
    namespace: str
    kind: str  # "network" | "volume"
    id: str
    name: str
    data: dict[str, Any]
    labels: dict[str, str]
    created_at: float
    updated_at: float


OBJECT_KINDS = ("network", "volume")


@dataclass(frozen=True)
class LeaseResource:
    kind: str  # CONTENT, INGEST or SNAPSHOT
    ref: str  # a digest, an ingest ref or a snapshot key
    snapshotter: str = ""  # for SNAPSHOT only


@dataclass(frozen=True)
class Lease:
    namespace: str
    id: str
    expires_at: float | None  # None: until deleted
    labels: dict[str, str]
    created_at: float

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class Roots:
    """What is alive by itself: the starting points of the mark phase."""

    content: set[str] = field(default_factory=set)
    snapshots: set[tuple[str, str]] = field(default_factory=set)  # (snapshotter, key)
    ingests: set[str] = field(default_factory=set)


@dataclass
class GCReport:
    """What a collection removed (or, with dry_run, would remove)."""

    content: list[str] = field(default_factory=list)
    content_bytes: int = 0
    snapshots: list[tuple[str, str]] = field(default_factory=list)  # (snapshotter, key)
    snapshot_bytes: int = 0
    ingests: list[str] = field(default_factory=list)
    ingest_bytes: int = 0
    leases: list[tuple[str, str]] = field(default_factory=list)  # expired (namespace, id) deleted
    errors: list[str] = field(default_factory=list)  # what could not be removed, one line each
    dry_run: bool = False

    @property
    def reclaimed_bytes(self) -> int:
        return self.content_bytes + self.snapshot_bytes + self.ingest_bytes
