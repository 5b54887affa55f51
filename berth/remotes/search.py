"""`docker search`: a registry index's v1 search API, asked as dockerd 20.10 asks it.

A term names its index as a repository names its registry ("127.0.0.1:5000/busy" asks the
registry on 127.0.0.1:5000 for "busy"); without one it is Docker Hub's index
(https://index.docker.io/v1/, where "library/" is dropped from the term). An index other than
the Hub's is pinged first (GET /v1/_ping; any answer will do): an insecure one (loopback, or
listed as insecure) over HTTPS without verification, then over plain HTTP, and when both fail
the error names both attempts, in dockerd's words. Then GET /v1/search?q=<term>&n=<limit>, with
the index's credentials (basic auth) when there are some; an answer other than 200 is
"Unexpected status code N". Mirrors are not asked: search is the index's alone, as in dockerd.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Callable

from berth.errors import InvalidArgument, Unavailable
from berth.remotes.hosts import DOCKER_IO, is_insecure, is_loopback
from berth.remotes.transport import ConnectionFailed, TLSOptions, Transport

INDEX_SERVER = "https://index.docker.io/v1/"
_MAX_ANSWER = 16 << 20

# dockerd's registry.SearchResult, in its field order (what the API answers for each)
_FIELDS = (("star_count", int), ("is_official", bool), ("name", str), ("is_automated", bool), ("description", str))


class SearchFailed(Unavailable):
    """The index could not be asked or did not answer with results."""


def split_term(term: str) -> tuple[str, str]:
    """(index, what to ask it for) of a search term, as dockerd's splitReposSearchTerm: the
    first component names an index when it looks like a host (a dot, a port, or localhost)."""
    first, sep, rest = term.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        return DOCKER_IO, term
    return first, rest


def _index_name(name: str) -> str:
    """dockerd's ValidateIndexName."""
    if name == "index.docker.io":
        name = DOCKER_IO
    if name.startswith("-") or name.endswith("-"):
        raise InvalidArgument(f"invalid index name ({name}). Cannot begin or end with a hyphen")
    return name


def _basic(credentials: object) -> dict[str, str]:
    """Basic auth of a host's credentials (a Credentials or a (user, password) pair)."""
    if isinstance(credentials, tuple):
        user, password = credentials
    else:
        user, password = getattr(credentials, "username", ""), getattr(credentials, "password", "")
    if not user:
        return {}
    token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    return {"Authorization": "Basic " + token}


def _ping(transport: Transport, endpoint: str, insecure: bool) -> None:
    resp = transport.request("GET", endpoint + "_ping", tls=TLSOptions(skip_verify=insecure))
    resp.close()


def _endpoint(transport: Transport, index: str, insecure: bool) -> str:
    """The index's v1 endpoint once a ping answered (dockerd's validateEndpoint)."""
    https = f"https://{index}/v1/"
    try:
        _ping(transport, https, insecure)
        return https
    except ConnectionFailed as e:
        first = e
    if not insecure:
        raise SearchFailed(
            f"invalid registry endpoint {https}: {first}. If this private registry supports only HTTP or HTTPS "
            f"with an unknown CA certificate, please add `--insecure-registry {index}` to the daemon's arguments. "
            f"In the case of HTTPS, if you have access to the registry's CA certificate, no need for the flag; "
            f"simply place the CA certificate at /etc/docker/certs.d/{index}/ca.crt") from None
    plain = f"http://{index}/v1/"
    try:
        _ping(transport, plain, insecure)
        return plain
    except ConnectionFailed as e:
        raise SearchFailed(f'invalid registry endpoint "{plain}". HTTPS attempt: {first}. '
                           f"HTTP attempt: {e}") from None


def _result(x: object) -> dict:
    if not isinstance(x, dict):
        raise SearchFailed("error decoding registry search results: a result is not an object")
    out = {}
    for key, kind in _FIELDS:
        v = x.get(key)
        if v is None:
            v = kind()
        elif not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise SearchFailed(f"error decoding registry search results: {key} is not a {kind.__name__}")
        out[key] = v
    return out


def search(term: str, limit: int, *, insecure: tuple[str, ...] | list[str] = (),
           credentials: Callable[[str], object] | None = None, transport: Transport | None = None) -> list[dict]:
    """The index's results for term (at most limit, as the index counts them)."""
    index, remote = split_term(term)
    index = _index_name(index)
    own = transport is None
    transport = transport or Transport(user_agent="berth")
    try:
        unverified = index != DOCKER_IO and (is_loopback(index) or is_insecure(index, insecure))
        if index == DOCKER_IO:
            endpoint = INDEX_SERVER  # (dockerd pings every index but the Hub's)
            remote = remote.removeprefix("library/")
        else:
            endpoint = _endpoint(transport, index, unverified)
        if not 1 <= limit <= 100:  # (dockerd's session checks it once the index answered its ping)
            raise InvalidArgument(f"Limit {limit} is outside the range of [1, 100]")
        url = (endpoint + "search?q=" + urllib.parse.quote_plus(remote, safe="") + "&n="
               + urllib.parse.quote_plus(str(limit)))
        headers = {"X-Docker-Token": "true", **_basic(credentials(index) if credentials else None)}
        try:
            resp = transport.request("GET", url, headers=headers, tls=TLSOptions(skip_verify=unverified))
        except ConnectionFailed as e:
            raise SearchFailed(str(e)) from None
        try:
            if resp.status != 200:
                raise SearchFailed(f"Unexpected status code {resp.status}")
            body = resp.read_limited(_MAX_ANSWER, "search results")
        finally:
            resp.close()
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise SearchFailed(f"error decoding registry search results: {e}") from None
        results = doc.get("results") if isinstance(doc, dict) else "not an object"
        if results is None:
            results = []
        if not isinstance(results, list):
            raise SearchFailed("error decoding registry search results: results is not an array")
        return [_result(x) for x in results]
    finally:
        if own:
            transport.close()
