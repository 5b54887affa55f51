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
