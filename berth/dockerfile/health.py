"""HEALTHCHECK's config, as docker's classic builder makes it from the instruction (for a
Dockerfile's HEALTHCHECK and for a commit's or an import's --change)."""

from __future__ import annotations

from typing import Any

from berth.dockerfile.parser import Instruction
from berth.errors import InvalidArgument

_DURATIONS = (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
              ("start-interval", "StartInterval"))
KEPT = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")


def parse_duration(s: str, what: str) -> int:
    """Go's time.ParseDuration for HEALTHCHECK flags; nanoseconds."""
    if s == "":
        return 0
    from berth.gotime import parse_duration as go_duration
    try:
        return go_duration(s)
    except ValueError as e:
        raise InvalidArgument(f"{e} in --{what}") from None


def config(ins: Instruction) -> dict[str, Any]:
    """The Healthcheck of a parsed HEALTHCHECK instruction: {"Test": ["NONE"]}, or its test and
    the durations and retries its flags give (the ones at zero left out)."""
    if ins.args[0] == "NONE":
        return {"Test": ["NONE"]}
    test = (["CMD"] + ins.args[1:]) if ins.json else ["CMD-SHELL", ins.args[1]]
    hc: dict[str, Any] = {"Test": test}
    for flag, key in _DURATIONS:
        if flag in ins.flags:
            v = parse_duration(ins.flags[flag], flag)
            if v and v < 1_000_000:
                raise InvalidArgument(f"Interval \"{flag}\" cannot be less than 1ms")
            if v:
                hc[key] = v
    if "retries" in ins.flags:
        try:
            n = int(ins.flags["retries"])
        except ValueError:
            raise InvalidArgument(f"--retries: invalid number {ins.flags['retries']!r}") from None
        if n < 1:
            raise InvalidArgument(f"--retries cannot be less than 1 ({n})")
        hc["Retries"] = n
    return hc


def merged(hc: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """hc over the healthcheck before it, as dockerd's commit merges a config over the image's:
    what hc leaves unset or at zero (NONE's too) is the one before's."""
    before = before or {}
    return dict(hc, **{k: before[k] for k in KEPT if before.get(k) and not hc.get(k)})
