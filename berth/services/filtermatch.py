"""dockerd's match of a filter's value against a name (its filters.Args.Match): the value as it is,
else as a regular expression found anywhere in it (`name=^web$`, `name=w.b`); a value that is
not a regular expression matches only as it is. Container, network and volume names (and
network ids) are matched so by `ps`, `network ls` and `volume ls`."""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=256)
def _compiled(term: str) -> re.Pattern[str] | None:
    try:
        return re.compile(term)
    except (re.error, RecursionError, OverflowError):
        return None


def filter_values(v: object) -> list[str]:
    """A filter's values, in either of docker's shapes ({"v": true} or ["v"]; a lone string too)."""
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    return [v] if isinstance(v, str) else [str(x) for x in v]  # type: ignore[attr-defined]


def matches(term: str, source: str) -> bool:
    if term == source:
        return True
    rx = _compiled(term)
    return rx is not None and rx.search(source) is not None
