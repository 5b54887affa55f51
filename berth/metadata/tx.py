"""Every metadata operation, as methods of one transaction (``Tx``).

A ``Tx`` is handed out by ``MetadataStore.tx()``; everything done through it
commits together or not at all. ``MetadataStore`` also exposes each method
directly, running it in a transaction of its own.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from berth.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from berth.metadata.records import (
    CONTENT,
    DEFAULT_SNAPSHOTTER,
    INGEST,
    RESOURCE_KINDS,
    SNAPSHOT,
    Container,
    Descriptor,
    Image,
    Lease,
    LeaseResource,
    Namespace,
    OBJECT_KINDS,
    Object,
    Roots,
    check_container_name,
    check_digest,
    check_identifier,
    check_image_name,
    check_labels,
    check_namespace,
    check_text,
    check_time,
    dump_json,
    q,
)
from berth.oci.digest import is_digest


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "leave this field as it is" in update methods (None is a real value for some fields)
UNSET: Any = _Unset()


def _labels(text: str) -> dict[str, str]:
    return json.loads(text) if text else {}


def _spec_text(spec: Any) -> str | None:
    if spec is None:
        return None
    if isinstance(spec, (bytes, bytearray)):
        spec = bytes(spec).decode("utf-8")
    if isinstance(spec, str):
        try:
            json.loads(spec)
        except ValueError as e:
            raise InvalidArgument(f"container spec is not valid JSON: {e}") from None
        return spec
    try:
        return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"container spec cannot be encoded as JSON: {e}") from None


def _extensions(ext: Mapping[str, Any] | None) -> str:
    if ext is None:
        return "{}"
    if not isinstance(ext, Mapping) or not all(isinstance(k, str) for k in ext):
        raise InvalidArgument("container extensions must be a mapping with string keys")
    try:
        return dump_json(dict(ext))
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"container extensions cannot be encoded as JSON: {e}") from None


_IMAGE_COLS = "namespace, name, target_media_type, target_digest, target_size, labels, created_at, updated_at"
_CONTAINER_COLS = ("namespace, id, name, image, snapshotter, snapshot_key, runtime, spec, labels, "
                   "extensions, created_at, updated_at")
_LEASE_COLS = "namespace, id, expires_at, labels, created_at"


def _image(row: tuple) -> Image:
    return Image(namespace=row[0], name=row[1], target=Descriptor(row[2], row[3], row[4]),
                 labels=_labels(row[5]), created_at=row[6], updated_at=row[7])


def _container(row: tuple) -> Container:
    return Container(namespace=row[0], id=row[1], name=row[2], image=row[3], snapshotter=row[4],
                     snapshot_key=row[5], runtime=row[6], spec=row[7], labels=_labels(row[8]),
                     extensions=json.loads(row[9]) if row[9] else {}, created_at=row[10],
                     updated_at=row[11])


def _lease(row: tuple) -> Lease:
    return Lease(namespace=row[0], id=row[1], expires_at=row[2], labels=_labels(row[3]),
                 created_at=row[4])


class Tx:
    """One SQLite transaction. Obtain it from ``MetadataStore.tx()``.

    Writes made in a namespace that does not exist yet create it (as
    containerd does); reads in one find nothing.
    """

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float], readonly: bool):
        self._conn = conn
        self._clock = clock
        self.readonly = readonly
        self.images_written = False  # an image record written (MetadataStore.image_generation)

    # -- helpers ------------------------------------------------------------

    def _x(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, tuple(args))

    def _write(self) -> None:
        if self.readonly:
            raise FailedPrecondition("write attempted in a read-only metadata transaction")

    def _write_images(self) -> None:
        self._write()
        self.images_written = True

    def now(self) -> float:
        return float(self._clock())

    def _ensure_namespace(self, namespace: str) -> None:
        check_namespace(namespace)
        now = self.now()
        self._x("INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) "
                "VALUES (?, '{}', ?, ?)", (namespace, now, now))

    # -- namespaces -----------------------------------------------------------

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create a namespace; AlreadyExists if it exists."""
        self._write()
        check_namespace(name)
        lab = check_labels(labels)
        now = self.now()
        try:
            self._x("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (name, dump_json(lab), now, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"namespace {q(name)} already exists") from None
        return Namespace(name, lab, now, now)

    def get_namespace(self, name: str) -> Namespace:
        row = self._x("SELECT name, labels, created_at, updated_at FROM namespaces WHERE name = ?",
                      (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {q(name)} not found")
        return Namespace(row[0], _labels(row[1]), row[2], row[3])

    def list_namespaces(self) -> list[Namespace]:
        return [Namespace(r[0], _labels(r[1]), r[2], r[3]) for r in self._x(
            "SELECT name, labels, created_at, updated_at FROM namespaces ORDER BY name")]

    def set_namespace_labels(self, name: str, labels: Mapping[str, str]) -> Namespace:
        """Replace the labels of a namespace; NotFound if it does not exist."""
        self._write()
        lab = check_labels(labels)
        cur = self._x("UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
                      (dump_json(lab), self.now(), name))
        if cur.rowcount == 0:
            raise NotFound(f"namespace {q(name)} not found")
        return self.get_namespace(name)

    def namespace_usage(self, name: str) -> dict[str, int]:
        """How many images, containers and leases the namespace holds."""
        return {
            table: self._x(f"SELECT count(*) FROM {table} WHERE namespace = ?", (name,)).fetchone()[0]
            for table in ("images", "containers", "leases")
        } | {
            kind + "s": self._x("SELECT count(*) FROM objects WHERE namespace = ? AND kind = ?",
                                (name, kind)).fetchone()[0]
            for kind in OBJECT_KINDS
        }

    def delete_namespace(self, name: str) -> None:
        """Delete an empty namespace.

        NotFound if absent; FailedPrecondition ("namespace X is not empty")
        while it holds images, containers or leases.
        """
        self._write()
        self.get_namespace(name)
        usage = {k: n for k, n in self.namespace_usage(name).items() if n}
        if usage:
            what = ", ".join(f"{n} {k if n > 1 else k[:-1]}" for k, n in usage.items())
            raise FailedPrecondition(f"namespace {q(name)} is not empty: it still has {what}")
        self._x("DELETE FROM namespaces WHERE name = ?", (name,))

    # -- images ---------------------------------------------------------------

    def create_image(self, namespace: str, name: str, target: Descriptor | Mapping[str, Any],
                     labels: Mapping[str, str] | None = None) -> Image:
        """Record ``name`` -> ``target``; AlreadyExists if the name is taken in the namespace."""
        self._write_images()
        check_image_name(name)
        desc = Descriptor.of(target)
        lab = check_labels(labels)
        self._ensure_namespace(namespace)
        now = self.now()
        try:
            self._x(f"INSERT INTO images ({_IMAGE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (namespace, name, desc.media_type, desc.digest, desc.size, dump_json(lab), now, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"image {q(name)} already exists in namespace {q(namespace)}") from None
        return Image(namespace, name, desc, lab, now, now)

    def get_image(self, namespace: str, name: str) -> Image:
        row = self._x(f"SELECT {_IMAGE_COLS} FROM images WHERE namespace = ? AND name = ?",
                      (namespace, name)).fetchone()
        if row is None:
            raise NotFound(f"image {q(name)} not found in namespace {q(namespace)}")
        return _image(row)

    def find_image(self, namespace: str, name: str) -> Image | None:
        """Like get_image, but None when absent."""
        try:
            return self.get_image(namespace, name)
        except NotFound:
            return None

    def update_image(self, namespace: str, name: str, *,
                     target: Descriptor | Mapping[str, Any] = UNSET,
                     labels: Mapping[str, str] = UNSET) -> Image:
        """Retag (set the target) and/or replace the labels of an existing image."""
        self._write_images()
        old = self.get_image(namespace, name)
        desc = old.target if target is UNSET else Descriptor.of(target)
        lab = old.labels if labels is UNSET else check_labels(labels)
        now = self.now()
        self._x("UPDATE images SET target_media_type = ?, target_digest = ?, target_size = ?, "
                "labels = ?, updated_at = ? WHERE namespace = ? AND name = ?",
                (desc.media_type, desc.digest, desc.size, dump_json(lab), now, namespace, name))
        return Image(namespace, name, desc, lab, old.created_at, now)

    def put_image(self, namespace: str, name: str, target: Descriptor | Mapping[str, Any],
                  labels: Mapping[str, str] | None = None) -> tuple[Image, Image | None]:
        """Create or retag (docker's pull/tag): returns (new record, previous record or None).

        On retag ``labels=None`` keeps the existing labels.
        """
        self._write_images()
        old = self.find_image(namespace, name)
        if old is None:
            return self.create_image(namespace, name, target, labels), None
        new = self.update_image(namespace, name, target=target,
                                labels=UNSET if labels is None else labels)
        return new, old

    def list_images(self, namespace: str | None, *, name_prefix: str | None = None,
                    target_digest: str | None = None) -> list[Image]:
        """Images of a namespace (of all when None) sorted by namespace and name,
        optionally only those whose name starts with ``name_prefix`` and/or whose
        target is ``target_digest``."""
        sql = f"SELECT {_IMAGE_COLS} FROM images WHERE 1"
        args: list[Any] = []
        if namespace is not None:
            sql += " AND namespace = ?"
            args.append(namespace)
        if name_prefix:
            sql += " AND substr(name, 1, ?) = ?"
            args += [len(name_prefix), name_prefix]
        if target_digest is not None:
            sql += " AND target_digest = ?"
            args.append(target_digest)
        sql += " ORDER BY namespace, name"
        return [_image(r) for r in self._x(sql, args)]

    def image_names_for_target(self, namespace: str, digest: str) -> list[str]:
        """All names in the namespace whose target is ``digest`` (one image, many tags)."""
        return [r[0] for r in self._x(
            "SELECT name FROM images WHERE namespace = ? AND target_digest = ? ORDER BY name",
            (namespace, digest))]

    def delete_image(self, namespace: str, name: str) -> Image:
        """Remove a name; returns the removed record. Content goes at the next collect()
        if no other name (in any namespace) or lease still reaches it."""
        self._write_images()
        img = self.get_image(namespace, name)
        self._x("DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name))
        return img

    # -- containers -------------------------------------------------------------

    def create_container(self, namespace: str, id: str, *, name: str | None = None,
                         image: str = "", snapshotter: str = "", snapshot_key: str = "",
                         runtime: str = "", spec: Any = None,
                         labels: Mapping[str, str] | None = None,
                         extensions: Mapping[str, Any] | None = None) -> Container:
        """A plain container record. ``name`` defaults to the id and is unique per namespace.

        ``spec`` is JSON text (or anything json.dumps accepts); ``extensions`` a JSON object.
        """
        self._write()
        check_identifier("container", id)
        name = check_container_name(id if name is None else name)
        for what, v in (("image", image), ("snapshotter", snapshotter),
                        ("snapshot key", snapshot_key), ("runtime", runtime)):
            check_text(f"container {what}", v)
        spec_text = _spec_text(spec)
        lab = check_labels(labels)
        ext = _extensions(extensions)
        self._ensure_namespace(namespace)
        self._check_container_free(namespace, id, name)
        now = self.now()
        self._x(f"INSERT INTO containers ({_CONTAINER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (namespace, id, name, image, snapshotter, snapshot_key, runtime, spec_text,
                 dump_json(lab), ext, now, now))
        return self.get_container(namespace, id)

    def _check_container_free(self, namespace: str, id: str | None, name: str) -> None:
        if id is not None and self._x("SELECT 1 FROM containers WHERE namespace = ? AND id = ?",
                                      (namespace, id)).fetchone():
            raise AlreadyExists(f"container {q(id)} already exists in namespace {q(namespace)}")
        row = self._x("SELECT id FROM containers WHERE namespace = ? AND name = ?",
                      (namespace, name)).fetchone()
        if row is not None:
            raise AlreadyExists(
                f"container name {q(name)} is already in use by container {q(row[0])} "
                f"in namespace {q(namespace)}")

    def get_container(self, namespace: str, id: str) -> Container:
        row = self._x(f"SELECT {_CONTAINER_COLS} FROM containers WHERE namespace = ? AND id = ?",
                      (namespace, id)).fetchone()
        if row is None:
            raise NotFound(f"container {q(id)} not found in namespace {q(namespace)}")
        return _container(row)

    def get_container_by_name(self, namespace: str, name: str) -> Container:
        row = self._x(f"SELECT {_CONTAINER_COLS} FROM containers WHERE namespace = ? AND name = ?",
                      (namespace, name)).fetchone()
        if row is None:
            raise NotFound(f"container {q(name)} not found in namespace {q(namespace)}")
        return _container(row)

    def list_containers(self, namespace: str, *, image: str | None = None) -> list[Container]:
        """Containers of a namespace by creation time, optionally those of one image name."""
        sql = f"SELECT {_CONTAINER_COLS} FROM containers WHERE namespace = ?"
        args: list[Any] = [namespace]
        if image is not None:
            sql += " AND image = ?"
            args.append(image)
        sql += " ORDER BY created_at, id"
        return [_container(r) for r in self._x(sql, args)]

    def update_container(self, namespace: str, id: str, *, name: str = UNSET, image: str = UNSET,
                         snapshotter: str = UNSET, snapshot_key: str = UNSET, runtime: str = UNSET,
                         spec: Any = UNSET, labels: Mapping[str, str] = UNSET,
                         extensions: Mapping[str, Any] = UNSET) -> Container:
        """Change the given fields (the others stay); AlreadyExists on a name clash."""
        self._write()
        old = self.get_container(namespace, id)
        sets: dict[str, Any] = {}
        if name is not UNSET and name != old.name:
            check_container_name(name)
            self._check_container_free(namespace, None, name)
            sets["name"] = name
        for col, v in (("image", image), ("snapshotter", snapshotter),
                       ("snapshot_key", snapshot_key), ("runtime", runtime)):
            if v is not UNSET:
                sets[col] = check_text(f"container {col.replace('_', ' ')}", v)
        if spec is not UNSET:
            sets["spec"] = _spec_text(spec)
        if labels is not UNSET:
            sets["labels"] = dump_json(check_labels(labels))
        if extensions is not UNSET:
            sets["extensions"] = _extensions(extensions)
        sets["updated_at"] = self.now()
        self._x(f"UPDATE containers SET {', '.join(c + ' = ?' for c in sets)} "
                "WHERE namespace = ? AND id = ?", (*sets.values(), namespace, id))
        return self.get_container(namespace, id)

    def merge_container_extensions(self, namespace: str, id: str, changes: Mapping[str, Any]) -> None:
        """Set these keys of the record's extensions, the others as they are: update_container
        with extensions, reading only that column (a container's state is written so at each
        start and exit). NotFound as get_container."""
        self._write()
        row = self._x("SELECT extensions FROM containers WHERE namespace = ? AND id = ?", (namespace, id)).fetchone()
        if row is None:
            raise NotFound(f"container {q(id)} not found in namespace {q(namespace)}")
        ext = json.loads(row[0]) if row[0] else {}
        ext.update(changes)
        self._x("UPDATE containers SET extensions = ?, updated_at = ? WHERE namespace = ? AND id = ?",
                (_extensions(ext), self.now(), namespace, id))

    def delete_container(self, namespace: str, id: str) -> Container:
        """Remove the record; its snapshot and image are released for the next collect()."""
        self._write()
        c = self.get_container(namespace, id)
        self._x("DELETE FROM containers WHERE namespace = ? AND id = ?", (namespace, id))
        return c

    # -- networks and volumes ---------------------------------------------------

    _OBJ_COLS = "namespace, kind, id, name, data, labels, created_at, updated_at"

    @staticmethod
    def _object(row: tuple) -> Object:
        return Object(namespace=row[0], kind=row[1], id=row[2], name=row[3], data=json.loads(row[4]),
                      labels=_labels(row[5]), created_at=row[6], updated_at=row[7])

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in OBJECT_KINDS:
            raise InvalidArgument(f"unknown object kind {q(kind)}")

    def create_object(self, namespace: str, kind: str, id: str, name: str, data: Mapping[str, Any],
                      labels: Mapping[str, str] | None = None) -> Object:
        """A network or volume record; AlreadyExists when the name or id is taken in the namespace."""
        self._write()
        self._check_kind(kind)
        check_text(f"{kind} name", name, allow_empty=False)
        check_text(f"{kind} id", id, allow_empty=False)
        lab = check_labels(labels)
        self._ensure_namespace(namespace)
        now = self.now()
        try:
            self._x(f"INSERT INTO objects ({self._OBJ_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (namespace, kind, id, name, dump_json(dict(data)), dump_json(lab), now, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"{kind} with name {name} already exists") from None
        return self.get_object(namespace, kind, id)

    def get_object(self, namespace: str, kind: str, id: str) -> Object:
        row = self._x(f"SELECT {self._OBJ_COLS} FROM objects WHERE namespace = ? AND kind = ? AND id = ?",
                      (namespace, kind, id)).fetchone()
        if row is None:
            raise NotFound(f"{kind} {q(id)} not found in namespace {q(namespace)}")
        return self._object(row)

    def find_object(self, namespace: str, kind: str, name: str) -> Object | None:
        row = self._x(f"SELECT {self._OBJ_COLS} FROM objects WHERE namespace = ? AND kind = ? AND name = ?",
                      (namespace, kind, name)).fetchone()
        return None if row is None else self._object(row)

    def list_objects(self, namespace: str | None, kind: str) -> list[Object]:
        """The networks or volumes of a namespace (of all namespaces with None), by creation time."""
        self._check_kind(kind)
        if namespace is None:
            rows = self._x(f"SELECT {self._OBJ_COLS} FROM objects WHERE kind = ? ORDER BY created_at, id", (kind,))
        else:
            rows = self._x(f"SELECT {self._OBJ_COLS} FROM objects WHERE namespace = ? AND kind = ? "
                           "ORDER BY created_at, id", (namespace, kind))
        return [self._object(r) for r in rows]

    def update_object(self, namespace: str, kind: str, id: str, *, data: Mapping[str, Any] = UNSET,
                      labels: Mapping[str, str] = UNSET) -> Object:
        self._write()
        self.get_object(namespace, kind, id)
        sets: dict[str, Any] = {}
        if data is not UNSET:
            sets["data"] = dump_json(dict(data))
        if labels is not UNSET:
            sets["labels"] = dump_json(check_labels(labels))
        sets["updated_at"] = self.now()
        self._x(f"UPDATE objects SET {', '.join(c + ' = ?' for c in sets)} "
                "WHERE namespace = ? AND kind = ? AND id = ?", (*sets.values(), namespace, kind, id))
        return self.get_object(namespace, kind, id)

    def delete_object(self, namespace: str, kind: str, id: str) -> Object:
        self._write()
        o = self.get_object(namespace, kind, id)
        self._x("DELETE FROM objects WHERE namespace = ? AND kind = ? AND id = ?", (namespace, kind, id))
        return o

    # -- leases -----------------------------------------------------------------

    def create_lease(self, namespace: str, id: str | None = None, *, expires_at: float | None = None,
                     ttl: float | None = None, labels: Mapping[str, str] | None = None) -> Lease:
        """A lease keeps what is added to it alive until it expires or is deleted.

        ``id`` defaults to a random one; ``ttl`` (seconds from now) is an
        alternative to the absolute ``expires_at``; neither means no expiry.
        """
        self._write()
        if id is None:
            id = f"lease-{secrets.token_hex(8)}"
        check_identifier("lease", id)
        if ttl is not None and expires_at is not None:
            raise InvalidArgument("give either expires_at or ttl, not both")
        now = self.now()
        if ttl is not None:
            expires_at = now + check_time("lease ttl", ttl)  # type: ignore[operator]
        expires_at = check_time("lease expiry", expires_at)
        lab = check_labels(labels)
        self._ensure_namespace(namespace)
        try:
            self._x(f"INSERT INTO leases ({_LEASE_COLS}) VALUES (?, ?, ?, ?, ?)",
                    (namespace, id, expires_at, dump_json(lab), now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"lease {q(id)} already exists in namespace {q(namespace)}") from None
        return Lease(namespace, id, expires_at, lab, now)

    def get_lease(self, namespace: str, id: str) -> Lease:
        row = self._x(f"SELECT {_LEASE_COLS} FROM leases WHERE namespace = ? AND id = ?",
                      (namespace, id)).fetchone()
        if row is None:
            raise NotFound(f"lease {q(id)} not found in namespace {q(namespace)}")
        return _lease(row)

    def list_leases(self, namespace: str | None = None) -> list[Lease]:
        """The leases of a namespace, or of all namespaces when ``namespace`` is None."""
        if namespace is None:
            rows = self._x(f"SELECT {_LEASE_COLS} FROM leases ORDER BY namespace, created_at, id")
        else:
            rows = self._x(f"SELECT {_LEASE_COLS} FROM leases WHERE namespace = ? "
                           "ORDER BY created_at, id", (namespace,))
        return [_lease(r) for r in rows]

    def update_lease(self, namespace: str, id: str, *, expires_at: float | None = UNSET,
                     labels: Mapping[str, str] = UNSET) -> Lease:
        """Extend (or end: a past time) a lease, or replace its labels."""
        self._write()
        old = self.get_lease(namespace, id)
        exp = old.expires_at if expires_at is UNSET else check_time("lease expiry", expires_at)
        lab = old.labels if labels is UNSET else check_labels(labels)
        self._x("UPDATE leases SET expires_at = ?, labels = ? WHERE namespace = ? AND id = ?",
                (exp, dump_json(lab), namespace, id))
        return Lease(namespace, id, exp, lab, old.created_at)

    def delete_lease(self, namespace: str, id: str) -> None:
        """Delete a lease and its resource list (not the resources themselves)."""
        self._write()
        cur = self._x("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, id))
        if cur.rowcount == 0:
            raise NotFound(f"lease {q(id)} not found in namespace {q(namespace)}")

    def add_lease_resource(self, namespace: str, id: str, kind: str, ref: str,
                           snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        """Put a resource under the lease: ``kind`` is "content" (``ref`` a digest),
        "ingest" (a content-store ingest ref) or "snapshot" (a key of ``snapshotter``).

        Add it *before* writing the resource, so no collect() can see it unprotected.
        FailedPrecondition if the lease has expired.
        """
        self._write()
        sn = self._resource(kind, ref, snapshotter)
        lease = self.get_lease(namespace, id)
        if lease.expired(self.now()):
            raise FailedPrecondition(f"lease {q(id)} in namespace {q(namespace)} has expired")
        self._x("INSERT OR IGNORE INTO lease_resources (namespace, lease_id, kind, snapshotter, ref) "
                "VALUES (?, ?, ?, ?, ?)", (namespace, id, kind, sn, ref))

    def remove_lease_resource(self, namespace: str, id: str, kind: str, ref: str,
                              snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        self._write()
        sn = self._resource(kind, ref, snapshotter)
        self.get_lease(namespace, id)
        self._x("DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ? AND kind = ? "
                "AND snapshotter = ? AND ref = ?", (namespace, id, kind, sn, ref))

    def lease_resources(self, namespace: str, id: str) -> list[LeaseResource]:
        self.get_lease(namespace, id)
        return [LeaseResource(r[0], r[1], r[2]) for r in self._x(
            "SELECT kind, ref, snapshotter FROM lease_resources WHERE namespace = ? AND lease_id = ? "
            "ORDER BY kind, snapshotter, ref", (namespace, id))]

    @staticmethod
    def _resource(kind: str, ref: str, snapshotter: str) -> str:
        if kind not in RESOURCE_KINDS:
            raise InvalidArgument(f"unknown lease resource kind {q(kind)}")
        if kind == CONTENT:
            check_digest(ref)
        else:
            check_text(f"{kind} ref", ref, allow_empty=False)
        if kind == SNAPSHOT:
            return check_text("snapshotter name", snapshotter, allow_empty=False)
        return ""

    def expired_leases(self, now: float | None = None) -> list[Lease]:
        now = self.now() if now is None else now
        return [_lease(r) for r in self._x(
            f"SELECT {_LEASE_COLS} FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ? "
            "ORDER BY namespace, id", (now,))]

    # -- references for GC ---------------------------------------------------------

    def add_content_refs(self, parent: str, children: Iterable[str]) -> None:
        """Record that blob ``parent`` references ``children`` (an index its manifests,
        a manifest its config and layers). Idempotent; call it every time the parent is
        stored or found already present."""
        self._write()
        check_digest(parent)
        kids = [check_digest(c) for c in children]
        self._conn.executemany("INSERT OR IGNORE INTO content_refs (parent, child) VALUES (?, ?)",
                               [(parent, c) for c in kids if c != parent])

    def content_refs(self, parent: str) -> list[str]:
        return [r[0] for r in self._x(
            "SELECT child FROM content_refs WHERE parent = ? ORDER BY child", (parent,))]

    def content_referrers(self, child: str) -> list[str]:
        """The blobs that reference ``child``."""
        return [r[0] for r in self._x(
            "SELECT parent FROM content_refs WHERE child = ? ORDER BY parent", (child,))]

    def add_snapshot_ref(self, digest: str, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        """Record that blob ``digest`` (an image config, or a manifest) needs the
        committed snapshot ``key`` (the top of its layer chain); its parents are kept
        alive through the snapshotter's own parent links."""
        self._write()
        check_digest(digest)
        check_text("snapshot key", key, allow_empty=False)
        check_text("snapshotter name", snapshotter, allow_empty=False)
        self._x("INSERT OR IGNORE INTO snapshot_refs (digest, snapshotter, key) VALUES (?, ?, ?)",
                (digest, snapshotter, key))

    def snapshot_refs(self, digest: str) -> list[tuple[str, str]]:
        """(snapshotter, key) pairs the blob keeps alive."""
        return [(r[0], r[1]) for r in self._x(
            "SELECT snapshotter, key FROM snapshot_refs WHERE digest = ? ORDER BY snapshotter, key",
            (digest,))]

    def remove_refs(self, digest: str) -> None:
        """Forget the content and snapshot references *from* ``digest`` (done by collect()
        when it deletes the blob)."""
        self._write()
        self._x("DELETE FROM content_refs WHERE parent = ?", (digest,))
        self._x("DELETE FROM snapshot_refs WHERE digest = ?", (digest,))

    # -- garbage collection: mark -----------------------------------------------------

    def gc_roots(self, now: float | None = None) -> Roots:
        """What is alive by itself, across all namespaces.

        * every image's target;
        * every container's snapshot (snapshotter, key) and its image: the image's
          target when that name exists in its namespace, or the value itself when it
          is a digest (a container whose image was removed by force);
        * everything held by a lease that has not expired.
        """
        now = self.now() if now is None else now
        roots = Roots()
        roots.content.update(r[0] for r in self._x("SELECT DISTINCT target_digest FROM images"))
        for ns, image, snapshotter, key in self._x(
                "SELECT namespace, image, snapshotter, snapshot_key FROM containers"):
            if key:
                roots.snapshots.add((snapshotter or DEFAULT_SNAPSHOTTER, key))
            if image:
                row = self._x("SELECT target_digest FROM images WHERE namespace = ? AND name = ?",
                              (ns, image)).fetchone()
                if row is not None:
                    roots.content.add(row[0])
                elif is_digest(image):
                    roots.content.add(image)
        for kind, sn, ref in self._x(
                "SELECT r.kind, r.snapshotter, r.ref FROM lease_resources r JOIN leases l "
                "ON l.namespace = r.namespace AND l.id = r.lease_id "
                "WHERE l.expires_at IS NULL OR l.expires_at > ?", (now,)):
            if kind == CONTENT:
                roots.content.add(ref)
            elif kind == INGEST:
                roots.ingests.add(ref)
            else:
                roots.snapshots.add((sn, ref))
        return roots

    def mark(self, now: float | None = None) -> Roots:
        """The roots closed over content refs and snapshot refs.

        Snapshot parents are not followed here: the snapshotter owns them (see
        ``MetadataStore.collect``).
        """
        roots = self.gc_roots(now)
        children: dict[str, list[str]] = {}
        for parent, child in self._x("SELECT parent, child FROM content_refs"):
            children.setdefault(parent, []).append(child)
        snaps: dict[str, list[tuple[str, str]]] = {}
        for digest, sn, key in self._x("SELECT digest, snapshotter, key FROM snapshot_refs"):
            snaps.setdefault(digest, []).append((sn, key))
        live = set(roots.content)
        stack = list(live)
        while stack:
            d = stack.pop()
            for c in children.get(d, ()):
                if c not in live:
                    live.add(c)
                    stack.append(c)
        snapshots = set(roots.snapshots)
        for d in live:
            snapshots.update(snaps.get(d, ()))
        return Roots(content=live, snapshots=snapshots, ingests=set(roots.ingests))

    def ref_parents(self) -> set[str]:
        """Every digest that has outgoing content or snapshot refs."""
        out = {r[0] for r in self._x("SELECT DISTINCT parent FROM content_refs")}
        out.update(r[0] for r in self._x("SELECT DISTINCT digest FROM snapshot_refs"))
        return out

    def delete_expired_leases(self, now: float | None = None) -> list[tuple[str, str]]:
        """Delete the leases that have expired; returns their (namespace, id)."""
        self._write()
        gone = [(l.namespace, l.id) for l in self.expired_leases(now)]
        self._conn.executemany("DELETE FROM leases WHERE namespace = ? AND id = ?", gone)
        return gone
