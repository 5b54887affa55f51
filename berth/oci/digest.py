"""Content digests: "<algorithm>:<lowercase hex>", as the OCI image-spec defines them.

Pure functions, no I/O. Validation follows go-digest's ``Digest.Validate``: the
algorithm must be one we can compute (sha256, sha384, sha512) and the encoded
part must be lowercase hex of exactly that algorithm's length. Anything that
passes :func:`parse_digest` is therefore safe to use as a path component.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from berth.errors import InvalidArgument

SHA256 = "sha256"
SHA384 = "sha384"
SHA512 = "sha512"

#: algorithm -> length of its hex encoding
ALGORITHMS: dict[str, int] = {SHA256: 64, SHA384: 96, SHA512: 128}

CANONICAL = SHA256

# The general shape from the image-spec (algorithm components and separators,
# then an encoded part); used only to choose between "unsupported" and "malformed".
_GENERAL = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = {n: re.compile(r"[0-9a-f]{%d}" % n) for n in set(ALGORITHMS.values())}


def _quote(s: object) -> str:
    """Quote a value for a one-line error message (escapes newlines, caps length)."""
    text = s if isinstance(s, str) else repr(s)
    if len(text) > 200:
        text = text[:200] + "..."
    return json.dumps(text, ensure_ascii=False)


def parse_digest(s: str) -> tuple[str, str]:
    """Split a digest string into ``(algorithm, hex)``, validating both.

    Raises InvalidArgument with a one-line message when ``s`` is not a
    well-formed digest of a supported algorithm.
    """
    if not isinstance(s, str):
        raise InvalidArgument(f"invalid digest {_quote(s)}: not a string")
    algo, sep, encoded = s.partition(":")
    if not sep or not algo or not encoded:
        raise InvalidArgument(f'invalid digest {_quote(s)}: expected "<algorithm>:<hex>"')
    length = ALGORITHMS.get(algo)
    if length is None:
        if _GENERAL.fullmatch(s):
            raise InvalidArgument(f"invalid digest {_quote(s)}: unsupported algorithm {_quote(algo)}")
        raise InvalidArgument(f"invalid digest {_quote(s)}: malformed algorithm")
    if len(encoded) != length:
        raise InvalidArgument(
            f"invalid digest {_quote(s)}: {algo} needs {length} hex characters, got {len(encoded)}"
        )
    if not _HEX[length].fullmatch(encoded):
        raise InvalidArgument(f"invalid digest {_quote(s)}: not lowercase hex")
    return algo, encoded


def validate_digest(s: str) -> str:
    """Return ``s`` unchanged if it is a valid digest, else raise InvalidArgument."""
    parse_digest(s)
    return s


def is_digest(s: object) -> bool:
    """True if ``s`` is a well-formed digest of a supported algorithm."""
    try:
        parse_digest(s)  # type: ignore[arg-type]
    except InvalidArgument:
        return False
    return True


def new_hasher(algorithm: str = CANONICAL):
    """A fresh hashlib object for a supported digest algorithm."""
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {_quote(algorithm)}")
    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = CANONICAL) -> str:
    """The digest string of ``data`` with the given algorithm."""
    h = new_hasher(algorithm)
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"


def sha256_digest(data: bytes) -> str:
    """``"sha256:<hex>"`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Digest:
    """A validated digest. ``str(d)`` gives the "<algorithm>:<hex>" form."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        parse_digest(f"{self.algorithm}:{self.hex}")

    @classmethod
    def parse(cls, s: str) -> "Digest":
        algo, encoded = parse_digest(s)
        return cls(algo, encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = CANONICAL) -> "Digest":
        return cls.parse(digest_bytes(data, algorithm))

    def short(self, n: int = 12) -> str:
        """The first ``n`` hex characters, as docker shows image IDs."""
        return self.hex[:n]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
