"""Container operations beyond the lifecycle, as dockerd does them: pause/unpause, rename, prune;
and, one module per job, re-exported here for the API: top (services.processes), stats
(services.stats), the archive endpoints behind `cp` (services.archive), changes (services.changes).

Every function takes the ContainerService (berth.services.containers) and a namespace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from berth.errors import (
    AlreadyExists,
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

from berth.services.archive import (  # noqa: F401  (the API's names)
    container_root,
    encode_stat,
    get_archive,
    put_archive,
    stat_path,
)
from berth.services.changes import changes  # noqa: F401
from berth.services.processes import container_pids, top  # noqa: F401
from berth.services.stats import sample_of, stats  # noqa: F401

if TYPE_CHECKING:
    from berth.services.containers import ContainerService

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # dockerd's: two characters at least


# --- start, sizes ----------------------------------------------------------------------------

def start(svc: ContainerService, ns: str, ref: str) -> bool:
    """docker start: True when it started, False when it was running already. As docker's,
    --rm (AutoRemove) also removes a container that could not start."""
    rec = svc.get(ns, ref)
    try:
        return svc.start(ns, rec.id)
    except BerthError:
        if ((rec.spec_json() or {}).get("HostConfig") or {}).get("AutoRemove"):
            try:
                svc.remove(ns, rec.id, True, True)
            except BerthError:
                pass
        raise


def with_sizes(svc: ContainerService, ns: str, items: list[dict]) -> list[dict]:
    """ps -s and inspect --size: SizeRw and SizeRootFs added to container views (blocking)."""
    from berth.services import export
    isz = export.image_sizes(svc, ns)
    for item in items:
        try:
            rec = svc.meta.get_container(ns, item["Id"])
        except NotFound:  # removed meanwhile
            continue
        item["SizeRw"], item["SizeRootFs"] = export.sizes(svc, rec, isz)
    return items


# --- pause / unpause -------------------------------------------------------------------------

def pause(svc: ContainerService, ns: str, ref: str) -> None:
    svc.pause(ns, ref)


def unpause(svc: ContainerService, ns: str, ref: str) -> None:
    svc.unpause(ns, ref)


# --- rename ----------------------------------------------------------------------------------

def rename(svc: ContainerService, ns: str, ref: str, new_name: str) -> None:
    new_name = (new_name or "").lstrip("/")
    if not ref or not new_name:
        raise InvalidArgument("Neither old nor new names may be empty")
    if not _NAME_RE.fullmatch(new_name):
        raise InvalidArgument(f"Error when allocating new name: Invalid container name (/{new_name}), only "
                              "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    with svc.one_at_a_time(svc.get(ns, ref).id) as cid:  # two at once: one renames, as dockerd's
        rec = svc.get(ns, cid)
        if rec.name == new_name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        try:
            svc.meta.update_container(ns, rec.id, name=new_name)
        except AlreadyExists:
            other = svc.meta.get_container_by_name(ns, new_name)
            raise AlreadyExists(f'Error when allocating new name: Conflict. The container name "/{new_name}" is '
                                f'already in use by container '
                                f'"{other.id}". You have to remove (or rename) that container to be able to '
                                f'reuse that name.') from None
        svc.events.container(ns, svc.meta.get_container(ns, rec.id), "rename", oldName="/" + rec.name)


# --- prune -----------------------------------------------------------------------------------

def _until(values: list[str]) -> float | None:
    """dockerd's until= of a prune: one Go duration before now, RFC 3339 time or Unix time."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidArgument("more than one until filter specified")
    from berth.gotime import get_timestamp
    try:
        return get_timestamp(str(values[0]))
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def _labels_match(labels: dict, wanted: list[str], negate: bool) -> bool:
    for v in wanted:
        k, eq, val = v.partition("=")
        has = k in labels and (not eq or labels[k] == val)
        if has == negate:
            return False
    return True


def prune(svc: ContainerService, ns: str, filters: dict | None = None,
          on_removed: Callable | None = None) -> dict:
    """POST /containers/prune: remove every container that is not running (on_removed(rec) after
    each)."""
    filters = filters or {}
    vals = {}
    for k, v in filters.items():
        if isinstance(v, dict):
            v = [x for x, on in v.items() if on]
        if k not in ("until", "label", "label!"):
            raise InvalidArgument(f"Invalid filter '{k}'")
        vals[k] = list(v)
    until = _until(vals.get("until", []))
    from berth.services import export
    deleted, space = [], 0
    for rec in svc.meta.list_containers(ns):
        if svc.state(rec)["Running"]:
            continue
        if until is not None and rec.created_at >= until:
            continue
        labels = rec.labels or {}
        if not _labels_match(labels, vals.get("label", []), False):
            continue
        if not _labels_match(labels, vals.get("label!", []), True):
            continue
        # as dockerd counts it: the sizes of the files the container wrote (its SizeRw), not the
        # blocks its directory held
        size = export.size_rw(svc, rec)
        try:
            svc.remove(ns, rec.id)
        except NotFound:
            continue
        except FailedPrecondition:
            continue  # started meanwhile
        deleted.append(rec.id)
        space += size
        if on_removed is not None:
            on_removed(rec)
    svc.events.publish(ns, "container", "prune", "", reclaimed=space)
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}
