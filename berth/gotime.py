"""Go's time.ParseDuration and docker's timestamps (api/types/time.GetTimestamp), with their
words: dockerd reads the until= of the prune filters so, the docker CLI the --health-* flags and
the builder HEALTHCHECK's, and they say what is wrong in Go's messages. Errors are ValueError;
callers make them theirs."""

from __future__ import annotations

import time

_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}


def rfc3339nano(ns: int | None = None) -> str:
    """A UTC time (ns since the epoch, now unless given) as Go's time.RFC3339Nano writes it, in
    which dockerd, containerd and runc record every time: the nanoseconds without their trailing
    zeros, no fraction at all on a whole second."""
    if ns is None:
        ns = time.time_ns()
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + (f".{frac}" if frac else "") + "Z"


def rfc3339nano_fixed(s: str) -> str:
    """An RFC 3339 time with its fraction padded to nine digits (docker's RFC3339NanoFixed, the
    form `docker logs -t` prints)."""
    if not s.endswith("Z") or len(s) < 20:
        return s
    base, _, frac = s[:-1].partition(".")
    return f"{base}.{frac.ljust(9, '0')}Z"


def go_quote(s: str) -> str:
    """Go's time.quote: "s" with \\x escapes for bytes outside printable ASCII."""
    out = ['"']
    for ch in s:
        if ch < " " or ord(ch) >= 0x80:
            out += [f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape")]
        else:
            out.append("\\" + ch if ch in '"\\' else ch)
    return "".join(out) + '"'


def format_duration(ns: int) -> str:
    """Go's time.Duration.String of ns nanoseconds: 0s, 1.5ms, 300ms, 1m30s, 1h0m0s."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:  # below a second: the largest unit that is at least 1, with its fraction
        for unit, size in (("ms", 10**6), ("µs", 1000), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "")
    return sign + out + _fraction(rest, 10**9) + "s"


def _fraction(n: int, size: int) -> str:
    whole, frac = divmod(n, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def parse_duration(s: str) -> int:
    """Go's time.ParseDuration: nanoseconds (ValueError with Go's message)."""
    orig = s
    bad = ValueError("time: invalid duration " + go_quote(orig))
    neg = False
    if s and s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise bad
    total = 0
    while s:
        if not (s[0] == "." or s[0].isascii() and s[0].isdigit()):
            raise bad
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        pre, v, s = i > 0, int(s[:i] or 0), s[i:]
        if v > 1 << 63:  # leadingInt's overflow
            raise bad
        frac, scale, post = 0, 1, False
        if s and s[0] == ".":
            s = s[1:]
            i = 0
            while i < len(s) and "0" <= s[i] <= "9":
                if frac <= ((1 << 63) - 1) // 10:  # leadingFraction stops adding when it would overflow
                    frac, scale = frac * 10 + int(s[i]), scale * 10
                i += 1
            post, s = i > 0, s[i:]
        if not pre and not post:
            raise bad
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + go_quote(orig))
        u, s = s[:i], s[i:]
        if u not in _UNITS:
            raise ValueError("time: unknown unit " + go_quote(u) + " in duration " + go_quote(orig))
        unit = _UNITS[u]
        if v > (1 << 63) // unit:
            raise bad
        v *= unit
        if frac:
            v += int(float(frac) * (float(unit) / scale))
            if v > 1 << 63:
                raise bad
        total += v
        if total > 1 << 63:
            raise bad
    if neg:
        return -total
    if total > (1 << 63) - 1:
        raise bad
    return total


# --- Go's time.Parse, for the layouts GetTimestamp uses ---

_RFC3339_LOCAL = "2006-01-02T15:04:05"
_RFC3339_NANO_LOCAL = "2006-01-02T15:04:05.999999999"
_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"
_DATE_WITH_ZONE = "2006-01-02Z07:00"
_DATE_LOCAL = "2006-01-02"
_STD = ("2006", "01", "02", "15", "04", "05", ".999999999", "Z07:00")


class _ParseError(ValueError):
    def __init__(self, layout: str, value: str, layout_elem: str, value_elem: str, message: str = "") -> None:
        if message:
            text = "parsing time " + go_quote(value) + message
        else:
            text = (f"parsing time {go_quote(value)} as {go_quote(layout)}: cannot parse "
                    f"{go_quote(value_elem)} as {go_quote(layout_elem)}")
        super().__init__(text)


def _chunks(layout: str) -> list[tuple[str, str]]:
    """(literal prefix, std element) pairs of a layout, the last element "" (Go's nextStdChunk)."""
    out, lit, i = [], "", 0
    while i < len(layout):
        for std in _STD:
            if layout.startswith(std, i):
                out.append((lit, std))
                lit, i = "", i + len(std)
                break
        else:
            lit += layout[i]
            i += 1
    out.append((lit, ""))
    return out


def _getnum(s: str, fixed: bool) -> tuple[int, str]:
    if not s[:1].isdigit() or not s[:1].isascii():
        raise _Bad
    if not (len(s) > 1 and "0" <= s[1] <= "9"):
        if fixed:
            raise _Bad
        return int(s[0]), s[1:]
    return int(s[:2]), s[2:]


class _Bad(Exception):
    pass


def go_parse(layout: str, value: str, offset: int | None) -> float:
    """Go's time.Parse (offset None: a zone is in the layout) or ParseInLocation in a fixed zone
    `offset` seconds east of UTC, for GetTimestamp's layouts: seconds since the epoch."""
    v = value
    year = month = day = 1
    hour = minute = sec = nsec = 0
    zone = None
    chunks = _chunks(layout)
    for n, (prefix, std) in enumerate(chunks):
        for ch in prefix:
            if not v or v[0] != ch:
                raise _ParseError(layout, value, prefix, v)
            v = v[1:]
        if not std:
            if v:
                raise _ParseError(layout, value, "", v, ": extra text: " + go_quote(v))
            break
        rng = ""
        try:  # on a failure, Go's ParseError shows the value as far as it got (v)
            if std == "2006":
                if len(v) < 4 or not ("0" <= v[0] <= "9"):
                    raise _Bad
                p, v = v[:4], v[4:]
                if not all("0" <= c <= "9" for c in p):
                    raise _Bad
                year = int(p)
            elif std == "01":
                month, v = _getnum(v, True)
                rng = "month" if not 1 <= month <= 12 else ""
            elif std == "02":
                day, v = _getnum(v, True)
            elif std == "15":
                hour, v = _getnum(v, False)
                rng = "hour" if not 0 <= hour < 24 else ""
            elif std == "04":
                minute, v = _getnum(v, True)
                rng = "minute" if not 0 <= minute < 60 else ""
            elif std == "05":
                sec, v = _getnum(v, True)
                rng = "second" if not 0 <= sec < 60 else ""
                if not rng and len(v) >= 2 and v[0] in ".," and "0" <= v[1] <= "9" and \
                        chunks[n + 1][1] != ".999999999":
                    i = 2  # a fraction the layout has not: taken all the same (9 digits count)
                    while i < len(v) and "0" <= v[i] <= "9":
                        i += 1
                    digits = v[1:min(i, 10)]
                    nsec, v = int(digits) * 10 ** (9 - len(digits)), v[i:]
            elif std == ".999999999":
                if len(v) >= 2 and v[0] in ".," and "0" <= v[1] <= "9":
                    i = 1  # at most 9 digits: what follows is the next element's
                    while i < 10 and i < len(v) and "0" <= v[i] <= "9":
                        i += 1
                    digits = v[1:i]
                    nsec, v = int(digits) * 10 ** (9 - len(digits)), v[i:]
            elif std == "Z07:00":
                if v[:1] == "Z":
                    zone, v = 0, v[1:]
                else:
                    if len(v) < 6 or v[3] != ":":
                        raise _Bad
                    sign, hh_s, mm_s, v = v[0], v[1:3], v[4:6], v[6:]
                    hh, _ = _getnum(hh_s, True)
                    mm, _ = _getnum(mm_s, True)
                    if sign not in "+-":
                        raise _Bad
                    zone = (hh * 60 + mm) * 60 * (-1 if sign == "-" else 1)
        except _Bad:
            raise _ParseError(layout, value, std, v) from None
        if rng:
            raise _ParseError(layout, value, std, v, f": {rng} out of range")
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day < 1 or day > (29 if month == 2 and leap else (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]):
        raise _ParseError(layout, value, "", v, ": day out of range")
    off = zone if zone is not None else (offset or 0)
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec - off + nsec / 1e9


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, 0 too)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def get_timestamp(value: str, now: float | None = None) -> float:
    """docker's GetTimestamp then ParseTimestamps: a Go duration before now ("10m", "1h30m"), an
    RFC 3339 date or time (in the daemon's zone without one), or Unix seconds ("1600000000.5");
    seconds since the epoch."""
    now = time.time() if now is None else now
    if value != "0":
        try:
            return now - parse_duration(value) / 1e9
        except ValueError:
            pass
    in_location = not (any(c in value for c in "zZ+") or value.count("-") == 3)
    if "." in value:
        layout = _RFC3339_NANO_LOCAL if in_location else _RFC3339_NANO
    elif "T" in value:
        colons = value.count(":")
        if not in_location and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1
        if in_location:
            layout = {0: "2006-01-02T15", 1: "2006-01-02T15:04"}.get(colons, _RFC3339_LOCAL)
        else:
            layout = {0: "2006-01-02T15Z07:00", 1: "2006-01-02T15:04Z07:00"}.get(colons, _RFC3339)
    else:
        layout = _DATE_LOCAL if in_location else _DATE_WITH_ZONE
    try:
        return go_parse(layout, value, time.localtime(now).tm_gmtoff if in_location else None)
    except ValueError:
        if "-" in value:
            raise
    secs, dot, frac = value.partition(".")
    try:
        if not _go_int(secs) or dot and not _go_int(frac):
            raise ValueError
        return int(secs) + (int(frac) / 10 ** len(frac) if dot else 0.0)
    except ValueError:
        from berth.goquote import quote  # strconv.Quote (%q), not time.quote
        raise ValueError("failed to parse value as time or duration: " + quote(value)) from None


def _go_int(s: str) -> bool:
    """strconv.ParseInt(s, 10, 64) accepts it."""
    body = s[1:] if s[:1] in "+-" else s
    return bool(body) and body.isascii() and body.isdigit() and -(1 << 63) <= int(s) < (1 << 63)
