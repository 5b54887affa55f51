"""Image references ("busybox", "example.com:5000/a/b:tag@sha256:...").

Pure, no I/O. The grammar and the normalisation are those of docker's
distribution/reference (``ParseNormalizedNamed`` followed by ``TagNameOnly``):

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] remote-name
    domain           := host [":" port-number]
    host             := domain-name | "[" IPv6address "]"
    domain-name      := domain-component ("." domain-component)*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name      := path-component ("/" path-component)*
    path-component   := /[a-z0-9]+/ (separator /[a-z0-9]+/)*
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex        (validated by berth.oci.digest)

The first "/"-separated element is a registry domain only if it contains "."
or ":", is "localhost", or has an upper-case letter; otherwise the reference
is on Docker Hub ("docker.io"), and one-element Hub names get the "library/"
prefix. "index.docker.io" is an alias of "docker.io". A bare 64-hex string is
refused: it is an image ID, not a name.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from berth.errors import InvalidArgument
from berth.oci.digest import parse_digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
LOCALHOST = "localhost"
#: maximum length of the path (remote name) part, as distribution/reference
NAME_TOTAL_LENGTH_MAX = 255

# --- grammar (translated from distribution/reference regexp.go; ASCII only) ---
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?")
_ANCHORED_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")")
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT)
_REMOTE_NAME_RE = re.compile(_REMOTE_NAME)
_TAG_RE = re.compile(_TAG)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


def _quote(s: object) -> str:
    text = s if isinstance(s, str) else repr(s)
    if len(text) > 300:
        text = text[:300] + "..."
    return json.dumps(text, ensure_ascii=False)


def _invalid(s: object, reason: str = "") -> InvalidArgument:
    msg = f"invalid reference format: {_quote(s)}"
    return InvalidArgument(f"{msg}: {reason}" if reason else msg)


def is_tag(s: str) -> bool:
    """True if ``s`` is a valid tag."""
    return isinstance(s, str) and _TAG_RE.fullmatch(s) is not None


@dataclass(frozen=True)
class Reference:
    """A normalised, validated image reference.

    ``domain`` is the registry ("docker.io", "localhost:5000"), ``path`` the
    repository on it ("library/busybox"), ``tag`` and ``digest`` are optional
    (at least one is set by :func:`parse` unless ``default_tag=None``).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.domain, str) or not _DOMAIN_RE.fullmatch(self.domain):
            raise _invalid(self.domain, "bad registry domain")
        if not isinstance(self.path, str) or not _REMOTE_NAME_RE.fullmatch(self.path):
            raise _invalid(self.path, "bad repository name")
        if len(self.path) > NAME_TOTAL_LENGTH_MAX:
            raise _invalid(self.path, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
        if self.tag is not None and not is_tag(self.tag):
            raise _invalid(self.tag, "bad tag")
        if self.digest is not None:
            parse_digest(self.digest)

    @property
    def name(self) -> str:
        """Fully qualified name without tag or digest: "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    @property
    def repository(self) -> str:
        """The repository path on the registry ("library/busybox"), as used in /v2/<repository>/."""
        return self.path

    def familiar_name(self) -> str:
        """The name as docker shows it: "busybox", "user/repo", "example.com/a"."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            if "/" not in rest:
                return rest
        return self.path

    def familiar(self) -> str:
        """The whole reference as docker shows it: "busybox:latest", "user/repo:tag@sha256:..."."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag: str) -> "Reference":
        """The same repository with ``tag`` (the digest, if any, is kept)."""
        return dataclasses.replace(self, tag=tag)

    def with_digest(self, digest: str) -> "Reference":
        """The same repository with ``digest`` (the tag, if any, is kept)."""
        return dataclasses.replace(self, digest=digest)

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_docker_domain(name: str) -> tuple[str, str]:
    """distribution/reference splitDockerDomain."""
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == LOCALHOST:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain.lower() != maybe_domain:
        # upper-case namespaces are not allowed, so this must be a host name
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse(s: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise a reference as docker does.

    "busybox" -> docker.io/library/busybox:latest. A reference that has
    neither tag nor digest gets ``default_tag`` (pass None to leave it
    name-only). Raises InvalidArgument with a one-line message.
    """
    if not isinstance(s, str):
        raise _invalid(s, "not a string")
    if default_tag is not None and not is_tag(default_tag):
        raise InvalidArgument(f"invalid tag format: {_quote(default_tag)}")
    if s == "":
        raise _invalid(s, "repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(s):
        raise _invalid(s, "cannot specify 64-byte hexadecimal strings as a repository name")

    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise _invalid(s, f"repository name ({remote}) must be lowercase")

    full = domain + "/" + remainder
    m = _REFERENCE_RE.fullmatch(full)
    if m is None:
        low = full.lower()
        if low != full and _REFERENCE_RE.fullmatch(low):
            raise _invalid(s, "repository name must be lowercase")
        raise _invalid(s)
    name, tag, digest = m.group(1), m.group(2), m.group(3)

    nm = _ANCHORED_NAME_RE.fullmatch(name)
    assert nm is not None  # name matched the same grammar above
    dom, path = nm.group(1), nm.group(2)
    if not dom:  # cannot happen after _split_docker_domain, kept for safety
        raise _invalid(s, "no registry domain")
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(s, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        try:
            parse_digest(digest)
        except InvalidArgument as e:
            raise _invalid(s, str(e)) from None
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain=dom, path=path, tag=tag, digest=digest)


def why_not(s: str, dockerd_20: bool = False) -> str | None:
    """Why s is not a reference, in distribution/reference's words as the docker CLI (v28) says
    them, or dockerd 20.10 (dockerd_20: the older library, which does not name the repository
    in its upper-case error); None when s is one (parse takes it)."""
    try:
        parse(s)
        return None
    except InvalidArgument:
        pass
    if not isinstance(s, str):
        return "invalid reference format"
    if _IDENTIFIER_RE.fullmatch(s):
        return f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
    _domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        return ("invalid reference format: repository name must be lowercase" if dockerd_20 else
                f"invalid reference format: repository name ({remote}) must be lowercase")
    m = _REFERENCE_RE.fullmatch(_domain + "/" + remainder)
    if m is not None and len(m.group(1).split("/", 1)[1]) > NAME_TOTAL_LENGTH_MAX:
        return f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
    return "invalid reference format"



def check_any(s: str) -> None:
    """What dockerd's image lookups take (distribution/reference's ParseAnyReference): an image
    ID (64 hex digits, bare or as a digest), a digest, or a name (a short ID parses as one);
    anything else is refused in dockerd 20.10's words (a 400), not looked up."""
    if _IDENTIFIER_RE.fullmatch(s):
        return
    if ":" in s and "/" not in s and "@" not in s:
        try:
            parse_digest(s)
            return
        except InvalidArgument:
            pass
    parse_checked(s, default_tag=None, dockerd_20=True)


def parse_checked(s: str, default_tag: str | None = DEFAULT_TAG, dockerd_20: bool = False) -> Reference:
    """parse, its refusal in why_not's words (what a client of dockerd reads)."""
    try:
        return parse(s, default_tag=default_tag)
    except InvalidArgument:
        raise InvalidArgument(why_not(s, dockerd_20=dockerd_20) or "invalid reference format") from None


def parse_name(s: str) -> Reference:
    """Parse a repository name only (no tag, no digest), normalised."""
    ref = parse(s, default_tag=None)
    if ref.tag is not None or ref.digest is not None:
        raise _invalid(s, "expected a repository name without tag or digest")
    return ref


def is_reference(s: str) -> bool:
    """True if ``s`` parses as a reference."""
    try:
        parse(s)
    except InvalidArgument:
        return False
    return True
