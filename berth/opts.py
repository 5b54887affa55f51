"""Option values that both the CLI and berthd check, in docker's words (docker's opts package):
the CLI refuses them before any request, as the docker CLI does, and berthd refuses them from
any client at create, as dockerd does."""

from __future__ import annotations

import ipaddress

from berth.errors import InvalidArgument


def parse_extra_host(h: str) -> tuple[str, str]:
    """An --add-host entry, host:ip or host=ip -> (host, ip or "host-gateway")."""
    name, sep, ip = h.partition("=") if "=" in h else h.partition(":")
    if not sep or not name:
        raise InvalidArgument(f'bad format for add-host: "{h}"')
    if ip != "host-gateway":
        try:
            ip = str(ipaddress.ip_address(ip.strip().removeprefix("[").removesuffix("]")))
        except ValueError:
            raise InvalidArgument(f'invalid IP address in add-host: "{ip}"') from None
    return name, ip


ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")


def _parse_int(s: str) -> int:
    """Go's strconv.ParseInt(s, 10, 64), with its error words."""
    import re
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise ValueError(f"strconv.ParseInt: parsing \"{s}\": invalid syntax")
    v = int(s)
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(f"strconv.ParseInt: parsing \"{s}\": value out of range")
    return v


def parse_ulimit(value: str) -> dict[str, object]:
    """docker's ParseUlimit: name=soft[:hard] -> the API's {Name, Soft, Hard} (--ulimit's, and
    berthd's default_ulimits), its words."""
    name, eq, vals = value.partition("=")
    if not eq:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    if name not in ULIMITS:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    parts = vals.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"too many limit value arguments - {vals}, can only have up to two, `soft[:hard]`")
    try:
        hard = _parse_int(parts[1]) if len(parts) == 2 else None
        soft = _parse_int(parts[0])
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    hard = soft if hard is None else hard
    if hard != -1 and soft > hard:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}
