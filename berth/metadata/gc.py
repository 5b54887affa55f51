"""Mark and sweep over the metadata, the content store and the snapshotters.

Called by ``MetadataStore.collect`` inside one write transaction; see the
package docstring for the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berth.errors import BerthError, NotFound, Unavailable
from berth.metadata.records import GCReport, Roots, q
from berth.metadata.tx import Tx


def collect(tx: Tx, content_store: Any, snapshotters: Mapping[str, Any], *,
            grace: float, now: float, dry_run: bool, cleanup: bool = False) -> GCReport:
    report = GCReport(dry_run=dry_run)
    report.leases = [(lease.namespace, lease.id) for lease in tx.expired_leases(now)]
    marks = tx.mark(now)  # expired leases protect nothing
    if not dry_run:
        tx.delete_expired_leases(now)
    if content_store is not None:
        _sweep_content(tx, content_store, marks, report, dry_run)
        _sweep_ingests(content_store, marks, report, grace=grace, now=now, dry_run=dry_run)
    for name in sorted(snapshotters):
        _sweep_snapshots(name, snapshotters[name], marks, report, grace=grace, now=now,
                         dry_run=dry_run, cleanup=cleanup)
    return report


def _sweep_content(tx: Tx, store: Any, marks: Roots, report: GCReport, dry_run: bool) -> None:
    present = set(store.list())
    for d in sorted(present - marks.content):
        try:
            size = store.info(d)
        except NotFound:
            continue
        if not dry_run:
            try:
                store.delete(d)
            except NotFound:
                continue
            except (BerthError, OSError) as e:
                report.errors.append(f"content {d}: {e}")
                continue
        report.content.append(d)
        report.content_bytes += size
    if dry_run:
        return
    # The references *from* a blob go with it (and with blobs already gone).
    removed = set(report.content)
    for d in tx.ref_parents():
        if d not in marks.content and (d in removed or d not in present):
            tx.remove_refs(d)


def _sweep_ingests(store: Any, marks: Roots, report: GCReport, *, grace: float, now: float,
                   dry_run: bool) -> None:
    for ing in store.ingests():
        if ing.ref in marks.ingests or ing.started > now - grace:
            continue
        if not dry_run:
            try:
                store.abort_ingest(ing.ref)
            except (NotFound, Unavailable):
                continue  # gone already, or a writer is using it right now
            except (BerthError, OSError) as e:
                report.errors.append(f"ingest {q(ing.ref)}: {e}")
                continue
        report.ingests.append(ing.ref)
        report.ingest_bytes += ing.offset


def _kind(info: Any) -> str:
    return str(getattr(info.kind, "value", info.kind))


def _sweep_snapshots(name: str, sn: Any, marks: Roots, report: GCReport, *, grace: float,
                     now: float, dry_run: bool, cleanup: bool) -> None:
    if cleanup and not dry_run and hasattr(sn, "cleanup"):
        # Leftovers of interrupted prepares and removes. Only while nothing else uses
        # the snapshotter: its cleanup() empties the directory a concurrent remove()
        # is still deleting.
        sn.cleanup()
    infos = {i.name: i for i in sn.list()}
    live = {key for (n, key) in marks.snapshots if n == name and key in infos}
    # Active snapshots and views nothing references get the grace period; committed
    # ones do not (an unpack in progress holds its snapshots in a lease).
    live.update(k for k, i in infos.items() if _kind(i) != "committed" and i.created > now - grace)
    stack = list(live)
    while stack:  # a live snapshot keeps its parents
        parent = infos[stack.pop()].parent
        if parent is not None and parent in infos and parent not in live:
            live.add(parent)
            stack.append(parent)

    depth: dict[str, int] = {}

    def depth_of(key: str) -> int:
        chain = []
        k: str | None = key
        while k is not None and k in infos and k not in depth and k not in chain:
            chain.append(k)
            k = infos[k].parent
        base = depth.get(k, 0) if k is not None else 0
        for c in reversed(chain):
            base += 1
            depth[c] = base
        return depth[key]

    dead = sorted((k for k in infos if k not in live), key=lambda k: (-depth_of(k), k))
    for key in dead:  # children before parents
        try:
            size = sn.usage(key)
        except (BerthError, OSError):
            size = 0
        if not dry_run:
            try:
                sn.remove(key)
            except NotFound:
                continue
            except (BerthError, OSError) as e:
                report.errors.append(f"snapshot {q(key)} ({name}): {e}")
                continue
        report.snapshots.append((name, key))
        report.snapshot_bytes += size

