"""What a container was created with, as its record keeps it.

A container record's spec (metadata's ContainerRecord.spec, JSON) is docker's create body
(Config fields, HostConfig, NetworkingConfig, ...) plus what create resolved: the mount points,
the image's config digest and the creation time. Those are typed fields of CreateSpec here;
on disk they stay the keys "_mounts", "_image_id" and "_created" beside the body's, so records
written by any earlier berth load unchanged (and a record without them loads with empty values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_MOUNTS, _IMAGE_ID, _CREATED = "_mounts", "_image_id", "_created"
_OWN_KEYS = frozenset((_MOUNTS, _IMAGE_ID, _CREATED))


@dataclass
class CreateSpec:
    body: dict[str, Any]  #: docker's create body, as the client sent it (after the run-option checks)
    mounts: list[dict] = field(default_factory=list)  #: docker's MountPoint shape plus berth's keys
    image_id: str = ""  #: the image's config digest ("sha256:...")
    created: str = ""  #: RFC 3339 with nanoseconds, as inspect's Created

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> CreateSpec:
        doc = doc or {}
        return cls(body={k: v for k, v in doc.items() if k not in _OWN_KEYS},
                   mounts=list(doc.get(_MOUNTS) or []), image_id=doc.get(_IMAGE_ID) or "",
                   created=doc.get(_CREATED) or "")

    @classmethod
    def of(cls, rec: Any) -> CreateSpec:
        """The CreateSpec of a container record (berth.metadata.records.ContainerRecord)."""
        return cls.from_json(rec.spec_json())

    def to_json(self) -> dict[str, Any]:
        """The record's JSON document (the persisted shape)."""
        return dict(self.body, **{_MOUNTS: self.mounts, _IMAGE_ID: self.image_id, _CREATED: self.created})


def mounts_of(rec: Any) -> list[dict]:
    """The mount points a container record was created with."""
    return CreateSpec.of(rec).mounts
