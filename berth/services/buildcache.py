"""The build cache: one lease per step (``buildcache-<key>``), labelled with the image the step
made; the lease keeps that image's content alive until ``prune``."""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING

from berth.errors import BerthError, NotFound

if TYPE_CHECKING:
    from berth.metadata import MetadataStore
    from berth.services.images import ImageService

CACHE_LEASE_PREFIX = "buildcache-"


class BuildCache:
    def __init__(self, meta: MetadataStore, images: ImageService) -> None:
        self.meta = meta
        self.images = images

    @staticmethod
    def key(parent_id: str | None, step: str) -> str:
        return hashlib.sha256(f"{parent_id or 'scratch'}\n{step}".encode()).hexdigest()

    def load(self, ns: str) -> dict:
        """{lease id: lease} of the namespace's cache entries: one query for a whole build."""
        return {lease.id: lease for lease in self.entries(ns)}

    def get(self, ns: str, key: str, known: dict | None = None) -> tuple[dict, object] | None:
        lid = CACHE_LEASE_PREFIX + key[:32]
        if known is not None:
            lease = known.get(lid)
            if lease is None:
                return None
        else:
            try:
                lease = self.meta.get_lease(ns, lid)
            except NotFound:
                return None
        target = lease.labels.get("target")
        if not target:
            return None
        try:
            desc = json.loads(target)
            r = self.images._resolved([], desc)
        except (BerthError, ValueError):
            return None
        return desc, r

    def put(self, ns: str, key: str, desc: dict, size: int = 0) -> None:
        lid = CACHE_LEASE_PREFIX + key[:32]
        labels = {"target": json.dumps(desc), "size": str(size), "created": str(time.time())}
        try:
            self.meta.create_lease(ns, lid, labels=labels)
        except BerthError:
            try:
                self.meta.update_lease(ns, lid, labels=labels)
            except BerthError:
                return
        self.meta.add_lease_resource(ns, lid, "content", desc["digest"])

    def entries(self, ns: str) -> list:
        out = []
        for lease in self.meta.list_leases(ns):
            if lease.id.startswith(CACHE_LEASE_PREFIX):
                out.append(lease)
        return out

    def prune(self, ns: str, all_: bool = True) -> dict:
        removed = []
        size = 0
        for lease in self.entries(ns):
            try:
                self.meta.delete_lease(ns, lease.id)
            except NotFound:
                continue
            removed.append(lease.id[len(CACHE_LEASE_PREFIX):])
            size += int(lease.labels.get("size") or 0)
        report = self.images.collect()
        return {"CachesDeleted": removed or None, "SpaceReclaimed": max(size, report.reclaimed_bytes)}

    def usage(self, ns: str) -> list[dict]:
        """Build-cache records as GET /system/df lists them."""
        out = []
        for lease in self.entries(ns):
            created = float(lease.labels.get("created") or lease.created_at)
            out.append({"ID": lease.id[len(CACHE_LEASE_PREFIX):], "Parents": None, "Type": "regular",
                        "Description": "build step", "InUse": False, "Shared": False,
                        "Size": int(lease.labels.get("size") or 0),
                        "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
                        "LastUsedAt": None, "UsageCount": 0})
        return out
