"""Pure helpers over image configurations and platforms, for the images service.

    image_id(config_digest)            the image ID (docker's: the config digest)
    chain_ids(diff_ids)                OCI image-spec ChainIDs, one per layer prefix
    host_platform()                    {"os", "architecture"[, "variant"]} of this machine
    parse_platform("linux/arm64/v8")   the same dict from a --platform string
    format_platform(p)                 and back: "linux/arm64/v8"
    normalize_platform(p)              canonical names (x86_64 -> amd64, aarch64 -> arm64 ...)
    match_platform(manifests, p)       the best descriptor of an index for a platform
    history_rows(config, ...)          rows for `docker history` / GET /images/{name}/history

No I/O beyond reading ``uname`` (``host_platform``), no state, nothing at import.
Platform dicts use the OCI image-spec keys ("os", "architecture", "variant",
"os.version", "os.features"); "variant" is present only when it means something.
"""

from __future__ import annotations

import calendar
import hashlib
import platform as _platform
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.digest import parse_digest, validate_digest

MISSING_ID = "<missing>"
MAX_MANIFEST = 4 << 20  #: the largest manifest or index read (bytes)
MAX_CONFIG = 20 << 20  #: the largest image config read (bytes)

# --- image IDs and chain IDs -------------------------------------------------


def image_id(config_digest: str) -> str:
    """The image ID of the image whose config blob has ``config_digest``.

    As in docker (>= 1.10) and containerd, the ID *is* the config digest
    ("sha256:<hex>"); this validates it and returns it, so callers can say
    what they mean. ``short_id`` gives the 12-character form docker shows.
    """
    return validate_digest(config_digest)


def short_id(digest: str, n: int = 12) -> str:
    """The first ``n`` hex characters of a digest, as `docker images` shows IDs."""
    return parse_digest(digest)[1][:n]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainIDs of every layer prefix (OCI image-spec, "Layer ChainID").

    ChainID(L0) = DiffID(L0); ChainID(L0|...|Ln) = SHA256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln)).
    The last element identifies the whole stack (one snapshot per chain ID).
    """
    out: list[str] = []
    for d in diff_ids:
        validate_digest(d)
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


# --- platforms ----------------------------------------------------------------

KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
    "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows",
})

_ARCH_ALIASES = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
    "i386": ("386", None), "i486": ("386", None), "i586": ("386", None),
    "i686": ("386", None), "x86": ("386", None), "386": ("386", None),
}
_PART_RE = re.compile(r"[a-z0-9_.]+")


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch = arch.lower()
    variant = variant.lower() if variant else None
    m = re.fullmatch(r"armv(\d+)[a-z]*", arch)  # uname's armv7l, armv6l, armv8l
    if m:
        arch, variant = "arm", variant or f"v{m.group(1)}"
    elif arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = variant or implied
    if arch == "arm64":
        if variant in (None, "8", "v8", "v8.0"):
            variant = "v8"
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "arm":
        if variant is None:
            variant = "v7"
        elif re.fullmatch(r"\d+", variant):
            variant = "v" + variant
    elif arch == "amd64":
        if variant in ("v1", "1"):
            variant = None  # the baseline
        elif variant and re.fullmatch(r"\d+", variant):
            variant = "v" + variant
    return arch, variant


def normalize_platform(p: Mapping[str, Any]) -> dict:
    """A copy of platform ``p`` with canonical OS/architecture/variant names.

    arm64 always carries variant "v8" unless another is given (so "arm64"
    and "arm64/v8" compare equal), 32-bit arm defaults to "v7", amd64's
    baseline "v1" is dropped.
    """
    if not isinstance(p, Mapping):
        raise InvalidArgument(f"invalid platform {p!r}: not an object")
    os_ = p.get("os")
    arch = p.get("architecture")
    if not isinstance(os_, str) or not os_ or not isinstance(arch, str) or not arch:
        raise InvalidArgument(f"invalid platform {_plain(p)}: os and architecture are required")
    variant = p.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise InvalidArgument(f"invalid platform {_plain(p)}: variant must be a string")
    arch, variant = _normalize_arch(arch, variant or None)
    out: dict = {"os": os_.lower(), "architecture": arch}
    if variant:
        out["variant"] = variant
    for k in ("os.version", "os.features"):
        if p.get(k):
            out[k] = p[k]
    return out


def _plain(p: Any) -> str:
    try:
        return format_platform(p)
    except (KeyError, TypeError):
        return repr(p)


def host_platform(machine: str | None = None, system: str | None = None) -> dict:
    """This machine's platform in OCI terms, e.g. {"os": "linux", "architecture": "amd64"}.

    ``machine`` and ``system`` (uname's) may be given for tests; by default
    they come from ``platform.machine()`` and ``sys.platform``.
    """
    if machine is None:
        machine = _platform.machine() or "unknown"
    if system is None:
        system = sys.platform
    os_ = system.lower()
    if os_.startswith("linux"):
        os_ = "linux"
    elif os_ == "win32":
        os_ = "windows"
    return normalize_platform({"os": os_, "architecture": machine})


def parse_platform(s: str, host: Mapping[str, Any] | None = None) -> dict:
    """Parse a --platform value: "linux/arm64/v8", "linux/amd64", "arm64", "linux".

    Like containerd's platforms.Parse, a single component is an OS if it is
    a known one (the architecture is then the host's) and otherwise an
    architecture (on the host's OS). ``host`` overrides the host platform.
    The result is normalised (see normalize_platform).
    """
    if not isinstance(s, str) or not s.strip():
        raise InvalidArgument(f"invalid platform {s!r}: empty")
    text = s.strip()
    parts = text.lower().split("/")
    if len(parts) > 3 or not all(_PART_RE.fullmatch(x) for x in parts):
        raise InvalidArgument(f'invalid platform "{text}": expected os[/arch[/variant]]')
    if host is None:
        host = host_platform()
    if len(parts) == 1:
        if parts[0] in KNOWN_OS:
            p = {"os": parts[0], "architecture": host["architecture"]}
            if parts[0] == host["os"] and host.get("variant"):
                p["variant"] = host["variant"]
        else:
            p = {"os": host["os"], "architecture": parts[0]}
    else:
        if parts[0] not in KNOWN_OS:
            raise InvalidArgument(f'invalid platform "{text}": unknown operating system "{parts[0]}"')
        p = {"os": parts[0], "architecture": parts[1]}
        if len(parts) == 3:
            p["variant"] = parts[2]
    return normalize_platform(p)


def format_platform(p: Mapping[str, Any]) -> str:
    """"os/architecture[/variant]"."""
    out = f"{p['os']}/{p['architecture']}"
    if p.get("variant"):
        out += "/" + p["variant"]
    return out


def _variant_rank(arch: str, variant: str | None) -> int | None:
    """An orderable number for arm/amd64 variants (v7 -> 7, amd64 baseline -> 1)."""
    if variant is None:
        return 1 if arch == "amd64" else None
    m = re.fullmatch(r"v(\d+)", variant)
    return int(m.group(1)) if m else None


def match_platform(index_manifests: Iterable[Mapping[str, Any]],
                   platform: Mapping[str, Any] | str | None = None) -> Mapping[str, Any] | None:
    """The descriptor of ``index_manifests`` that best fits ``platform`` (default: the host).

    An exact os/architecture/variant match wins; otherwise the highest older
    variant the platform can run (arm v7 runs v6 and v5, amd64 v3 runs v2
    and the baseline). Entries whose os or architecture is "unknown"
    (buildkit's attestation manifests) never match. If nothing matches and
    the index holds exactly one descriptor without a platform, that one is
    returned. None when there is no match.
    """
    if platform is None:
        want = host_platform()
    elif isinstance(platform, str):
        want = parse_platform(platform)
    else:
        want = normalize_platform(platform)
    want_rank = _variant_rank(want["architecture"], want.get("variant"))
    best, best_rank = None, None
    without_platform = []
    for d in index_manifests:
        p = d.get("platform") if isinstance(d, Mapping) else None
        if not isinstance(p, Mapping):
            without_platform.append(d)
            continue
        if p.get("os") == "unknown" or p.get("architecture") == "unknown":
            continue
        try:
            have = normalize_platform(p)
        except InvalidArgument:
            continue
        if have["os"] != want["os"] or have["architecture"] != want["architecture"]:
            continue
        if have.get("variant") == want.get("variant"):
            return d
        rank = _variant_rank(have["architecture"], have.get("variant"))
        if rank is None or want_rank is None or rank > want_rank:
            continue
        if best_rank is None or rank > best_rank:
            best, best_rank = d, rank
    if best is not None:
        return best
    if len(without_platform) == 1:
        return without_platform[0]
    return None


# --- history ------------------------------------------------------------------

_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?")


def parse_time(s: object) -> int:
    """Seconds since the epoch of an RFC 3339 time ("2024-01-02T03:04:05.123456789Z"); 0 if absent or bad."""
    return _parse_time(s)[0]


def parse_time_ns(s: object) -> int:
    """parse_time to the nanosecond (the fraction kept: images' created times compared as Go's
    time.Time are); 0 if absent or bad."""
    t, frac = _parse_time(s)
    return t * 10**9 + int((frac + "000000000")[:9]) if t else 0


def _parse_time(s: object) -> tuple[int, str]:
    """(seconds since the epoch, the fraction's digits) of an RFC 3339 time; (0, "") if absent or bad."""
    if not isinstance(s, str):
        return 0, ""
    m = _TIME_RE.fullmatch(s.strip())
    if not m:
        return 0, ""
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    try:
        t = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
    except (ValueError, OverflowError):
        return 0, ""
    tz = m.group(8)
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        t -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return t, m.group(7) or ""


def history_rows(config: Mapping[str, Any], image_id: str | None = None,
                 layer_sizes: Sequence[int] | None = None,
                 tags: Sequence[str] | None = None) -> list[dict]:
    """Rows of `docker history`, newest first, shaped like the Engine API's answer.

    Each row is {"Id", "Created" (epoch seconds), "CreatedBy", "Tags", "Size",
    "Comment"}: IMAGE, CREATED, CREATED BY, SIZE and COMMENT of the CLI.
    Entries with ``empty_layer`` get size 0; the others take the next layer of
    rootfs.diff_ids in order and its size from ``layer_sizes`` (aligned with
    diff_ids; 0 when not given). As docker does with images from a content
    store, only the newest row carries the image ID (and ``tags``), the
    others show "<missing>". A config without history gives one row per layer.
    """
    if not isinstance(config, Mapping):
        raise InvalidArgument("image config is not a JSON object")
    rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), Mapping) else {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs.get("diff_ids"), list) else []
    sizes = list(layer_sizes or [])
    history = config.get("history") if isinstance(config.get("history"), list) else []
    if not history:
        history = [{"created": config.get("created")} for _ in diff_ids] or [{"created": config.get("created")}]
    rows = []
    layer = 0
    for h in history:
        if not isinstance(h, Mapping):
            h = {}
        size = 0
        if not h.get("empty_layer"):
            if layer < len(sizes) and isinstance(sizes[layer], int):
                size = sizes[layer]
            layer += 1
        rows.append({
            "Id": MISSING_ID,
            "Created": parse_time(h.get("created")),
            "CreatedBy": h.get("created_by") if isinstance(h.get("created_by"), str) else "",
            "Tags": None,
            "Size": size,
            "Comment": h.get("comment") if isinstance(h.get("comment"), str) else "",
        })
    rows.reverse()
    if image_id is not None:
        rows[0]["Id"] = image_id
    if tags:
        rows[0]["Tags"] = list(tags)
    return rows
