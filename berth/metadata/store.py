"""MetadataStore: the SQLite database, its connections and transactions, and GC.

See the package docstring (``berth.metadata``) for the model.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from berth.errors import (
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
    Unavailable,
)
from berth.metadata import gc, schema
from berth.metadata.records import (
    DEFAULT_NAMESPACE,
    DEFAULT_SNAPSHOTTER,
    Container,
    Descriptor,
    GCReport,
    Image,
    Lease,
    LeaseResource,
    Namespace,
    Object,
    Roots,
    check_namespace,
)
from berth.metadata.tx import UNSET, Tx

T = TypeVar("T")

DB_NAME = "metadata.db"
#: an ingest or an active/view snapshot that nothing references is kept this long
DEFAULT_GRACE = 3600.0


#: space kept aside next to the database (``metadata.db.reserve.N``) and given back to the
#: filesystem, a piece at a time, when SQLite finds it full during a removal: removing things
#: must work on a full disk, and in WAL mode even a DELETE needs room to append to the log.
#: Pieces, so that what one removal frees (and a busy writer may take at once) is not all of it.
RESERVE_PIECES = 8
RESERVE_PIECE = 512 << 10
IDLE_CONNECTIONS = 4  # connections of ended threads kept for new ones (MetadataStore._park)


class DiskFull(SystemError_):
    """SQLite could not write: the filesystem (or the database) is full."""


def _translate(e: sqlite3.Error) -> BerthError:
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return Unavailable(f"metadata database is busy: {text}")
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in text:
        return DiskFull(f"metadata database: {text}")
    return SystemError_(f"metadata database: {text}")


class MetadataStore:
    """berth's metadata database (``<root>/metadata.db``).

    ``MetadataStore(root)`` creates ``root`` if needed, opens or creates the
    database (a path ending in ``.db`` is taken as the database file itself),
    migrates its schema forward and makes sure the ``default`` namespace exists.

    Threads: each thread gets its own SQLite connection (made on first use,
    closed by ``close()`` or when a later connection notices its thread has
    ended), so the store can be shared by the worker threads of an asyncio
    daemon and by several processes. Write transactions are serialised: in
    this process by a lock, across processes by SQLite (``BEGIN IMMEDIATE``);
    either wait is bounded by ``busy_timeout`` seconds, then Unavailable. In
    WAL mode readers never wait for writers.

    Transactions: every method is one transaction; ``with store.tx() as tx:``
    groups several operations (the methods of ``Tx``, same names and
    arguments) into one that commits when the block ends normally and rolls
    back entirely if it raises. Nested ``tx()`` on the same thread is a
    savepoint inside the outer transaction.
    """

    def __init__(self, root: str | os.PathLike[str], *, busy_timeout: float = 60.0,
                 clock: Callable[[], float] = time.time, synchronous: str = "FULL",
                 default_namespace: str = DEFAULT_NAMESPACE):
        root = os.fspath(root)
        if root.endswith(".db"):
            self.path = os.path.abspath(root)
        else:
            self.path = os.path.join(os.path.abspath(root), DB_NAME)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidArgument(f"invalid synchronous mode {synchronous!r}")
        self.busy_timeout = float(busy_timeout)
        self.default_namespace = check_namespace(default_namespace)
        self._clock = clock
        self._synchronous = synchronous.upper()
        self._local = threading.local()
        # counts the write transactions this process committed: a reader that saw the same count
        # before and after may reuse what it read (berthd, the one writer of its root: its lock)
        self.generation = 0
        # bumped after each commit that wrote an image record: what is worked out of images'
        # names alone stays valid across the commits of other records (containers' states)
        self.image_generation = 0
        self._conns: list[tuple[weakref.ref, sqlite3.Connection]] = []
        # connections of threads that ended, for the next new thread: a new connection costs a
        # fresh page cache and a read of the schema (~0.2 ms; a container's exit runs in a new thread)
        self._idle: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self.reserve_paths = [f"{self.path}.reserve.{i}" for i in range(RESERVE_PIECES)]
        self._reserve_ok = False
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            if not os.path.exists(self.path):
                # Specs may hold secrets (env): the database and its -wal/-shm are private.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as e:
            raise SystemError_(f"metadata database {self.path}: {e.strerror or e}") from e
        try:
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as e:
            self.close()
            raise _translate(e) from e
        self.journal_mode = str(mode).lower()
        try:
            if not self._up_to_date():
                with self.tx() as tx:
                    schema.migrate(tx._conn, tx.now())
                    tx._ensure_namespace(self.default_namespace)
        except BaseException:
            self.close()
            raise
        self._keep_reserve()

    # -- the reserve: room for removals on a full disk -------------------------

    def _keep_reserve(self) -> None:
        """Make the missing pieces of the reserve, as far as the filesystem has room."""
        if self._reserve_ok:
            return
        for path in self.reserve_paths:
            try:
                if os.stat(path).st_size >= RESERVE_PIECE:
                    continue
            except OSError:
                pass
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return
            try:
                os.posix_fallocate(fd, 0, RESERVE_PIECE)
            except OSError:  # no room (yet): given back at once, tried again after the next write
                with contextlib.suppress(OSError):
                    os.unlink(path)
                return
            finally:
                os.close(fd)
        self._reserve_ok = True

    def _release_reserve(self) -> bool:
        """Give one piece of the reserve back to the filesystem; whether there was one."""
        self._reserve_ok = False
        for path in self.reserve_paths:
            try:
                os.unlink(path)
                return True
            except OSError:
                continue
        return False

    @contextlib.contextmanager
    def freeing(self) -> Iterator[None]:
        """Writes in this block (this thread) belong to a removal: on a full disk they may use
        the reserve (a container's removal updates its record before deleting it)."""
        self._local.frees = getattr(self._local, "frees", 0) + 1
        try:
            yield
        finally:
            self._local.frees -= 1

    def _write(self, fn: Callable[[Tx], Any], frees: bool = False) -> Any:
        """fn(tx) in a write transaction. A removal (frees) on a full disk is tried once more
        after releasing the reserve: it then frees what it removes; other writes just fail, so
        that the reserve is there for the removals. It comes back when there is room."""
        while True:
            try:
                with self.tx() as tx:
                    result = fn(tx)
                break
            except DiskFull:
                if not (frees or getattr(self._local, "frees", 0)) or not self._release_reserve():
                    raise
        if not self._reserve_ok:
            self._keep_reserve()
        return result

    def write(self, fn: Callable[[Tx], Any], durable: bool = True) -> Any:
        """fn(tx) in one write transaction; inside freeing() (a removal, a stop) it may use the
        reserve on a full disk, as the store's own removal methods do.

        durable=False: a fact that only matters while the host is up (a container is running):
        committed to the WAL without waiting for the disk (synchronous=NORMAL for this one
        transaction). It survives a crash of the process, not of the host; the next durable
        commit syncs it too (one WAL, written in order). Inside an outer transaction, the
        outer one decides."""
        if durable or self._synchronous in ("OFF", "NORMAL") or getattr(self._local, "depth", 0):
            return self._write(fn)
        conn = self._conn()
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self._write(fn)
        finally:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _up_to_date(self) -> bool:
        """Whether opening needs no write (so it does not wait for a writer)."""
        with self.tx(readonly=True) as tx:
            conn = tx._conn
            if schema.current_version(conn) != schema.LATEST:
                return False
            return conn.execute("SELECT 1 FROM namespaces WHERE name = ?",
                                (self.default_namespace,)).fetchone() is not None

    # -- connections --------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise FailedPrecondition("metadata store is closed")
        me = threading.current_thread()
        with self._conns_lock:
            keep = []
            for ref, other in self._conns:
                t = ref()
                if t is None or not t.is_alive():
                    self._park(other)  # its thread has ended
                else:
                    keep.append((ref, other))
            conn = self._idle.pop() if self._idle else None
            if conn is not None:
                keep.append((weakref.ref(me), conn))
            self._conns = keep
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            except BaseException:
                conn.close()
                raise
            with self._conns_lock:
                self._conns.append((weakref.ref(me), conn))
        self._local.conn = conn
        self._local.depth = 0
        self._local.readonly = False
        return conn

    def release_thread(self) -> None:
        """Give up the calling thread's connection, if it has one and no transaction is open: for
        a short-lived thread at its end (the next new thread takes it; else it would stay with
        the ended thread until another opens one)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "depth", 0):
            return
        self._local.conn = None
        with self._conns_lock:
            self._conns = [(ref, other) for ref, other in self._conns if other is not conn]
            self._park(conn)

    def _park(self, conn: sqlite3.Connection) -> None:
        """Keep a connection no thread uses for the next new thread (a few at most). Under
        _conns_lock."""
        if self._closed or conn.in_transaction or len(self._idle) >= IDLE_CONNECTIONS:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards.

        Call it when no other thread is using the store.
        """
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
            idle, self._idle = self._idle, []
        for conn in [c for _, c in conns] + idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def __enter__(self) -> MetadataStore:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------

    @contextlib.contextmanager
    def tx(self, *, readonly: bool = False) -> Iterator[Tx]:
        """One transaction: commit at the end of the block, roll back if it raises.

        A write transaction takes SQLite's write lock at once (BEGIN IMMEDIATE);
        ``readonly=True`` gives a consistent snapshot without taking it.
        """
        if self._closed:
            raise FailedPrecondition("metadata store is closed")
        try:
            conn = self._conn()
        except sqlite3.Error as e:
            raise _translate(e) from e
        depth = self._local.depth
        if depth:
            if self._local.readonly and not readonly:
                raise FailedPrecondition("a write transaction cannot be nested in a read-only one")
            name = f"berth_sp{depth}"
            conn.execute(f"SAVEPOINT {name}")
            self._local.depth = depth + 1
            inner = Tx(conn, self._clock, readonly)
            try:
                yield inner
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                raise
            else:
                conn.execute(f"RELEASE {name}")
                if inner.images_written:
                    self._local.images_written = True  # the outermost commit says it
            finally:
                self._local.depth = depth
            return
        # Writers of this process queue on a lock first (SQLite's busy handler polls,
        # which starves waiters behind a busy writer); BEGIN IMMEDIATE then only
        # waits for other processes.
        if not readonly and not self._write_lock.acquire(timeout=self.busy_timeout):
            raise Unavailable("metadata database is busy: another write is in progress")
        try:
            try:
                conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise _translate(e) from e
            self._local.depth = 1
            self._local.readonly = readonly
            self._local.images_written = False
            outer = Tx(conn, self._clock, readonly)
            try:
                yield outer
                conn.execute("COMMIT")
                if not readonly:
                    self.generation += 1
                    if outer.images_written or self._local.images_written:
                        self.image_generation += 1  # after the commit: a reader then finds it
            except BaseException as e:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise _translate(e) from e
                raise
            finally:
                self._local.depth = 0
        finally:
            if not readonly:
                self._write_lock.release()

    @contextlib.contextmanager
    def lease(self, namespace: str | None = None, *, ttl: float | None = 3600.0,
              labels: Mapping[str, str] | None = None) -> Iterator[Lease]:
        """A lease for the duration of a block (an in-flight pull), deleted at the end.

        Add resources with ``add_lease_resource(lease.namespace, lease.id, ...)``
        before writing them, and record the finished image inside the block. If
        the process dies, the lease stays until it expires (``ttl``), then its
        resources are collected.
        """
        ns = self.default_namespace if namespace is None else namespace
        lease = self.create_lease(ns, ttl=ttl, labels=labels)
        try:
            yield lease
        finally:
            with contextlib.suppress(NotFound):
                self.delete_lease(ns, lease.id)

    def schema_version(self) -> int:
        with self.tx(readonly=True) as tx:
            return schema.current_version(tx._conn)

    # -- garbage collection ------------------------------------------------------

    def collect(self, content_store: Any = None, snapshotter: Any = None, *,
                snapshotter_name: str = DEFAULT_SNAPSHOTTER,
                snapshotters: Mapping[str, Any] | None = None,
                grace: float = DEFAULT_GRACE, now: float | None = None,
                dry_run: bool = False, cleanup: bool = False) -> GCReport:
        """Mark from the roots and sweep what nothing reaches; returns what went.

        ``content_store`` is a ``berth.content.store.ContentStore``; snapshots
        are swept in ``snapshotter`` (known to the metadata as
        ``snapshotter_name``) and/or in every ``snapshotters[name]``. A store
        not given is not swept. See the package docstring for the rules.

        ``cleanup=True`` also calls each snapshotter's ``cleanup()`` (leftovers of
        interrupted prepares and removes): only at startup, while nothing else
        uses the snapshotters.

        The whole collection holds the database's write lock, so no reference
        or lease can be added while it decides and deletes; reads go on.
        """
        sns: dict[str, Any] = dict(snapshotters or {})
        if snapshotter is not None:
            sns[snapshotter_name] = snapshotter
        return self._write(lambda tx: gc.collect(tx, content_store, sns, grace=grace,
                                                 now=tx.now() if now is None else now, dry_run=dry_run,
                                                 cleanup=cleanup), frees=True)

    # -- the Tx operations, each in a transaction of its own (a write joins the caller's open one) --

    def _read(self, fn: Callable[[Tx], T]) -> T:
        with self.tx(readonly=True) as tx:
            return fn(tx)

    def _change(self, fn: Callable[[Tx], T], frees: bool = False) -> T:
        if not getattr(self._local, "depth", 0):
            return self._write(fn, frees)
        with self.tx(readonly=False) as tx:
            return fn(tx)

    def get_namespace(self, name: str) -> Namespace:
        return self._read(lambda tx: tx.get_namespace(name))

    def list_namespaces(self) -> list[Namespace]:
        return self._read(lambda tx: tx.list_namespaces())

    def namespace_usage(self, name: str) -> dict[str, int]:
        return self._read(lambda tx: tx.namespace_usage(name))

    def get_image(self, namespace: str, name: str) -> Image:
        return self._read(lambda tx: tx.get_image(namespace, name))

    def find_image(self, namespace: str, name: str) -> Image | None:
        return self._read(lambda tx: tx.find_image(namespace, name))

    def list_images(self,
            namespace: str | None, *, name_prefix: str | None = None,
            target_digest: str | None = None) -> list[Image]:
        return self._read(lambda tx: tx.list_images(namespace, name_prefix=name_prefix, target_digest=target_digest))

    def image_names_for_target(self, namespace: str, digest: str) -> list[str]:
        return self._read(lambda tx: tx.image_names_for_target(namespace, digest))

    def get_container(self, namespace: str, id: str) -> Container:
        return self._read(lambda tx: tx.get_container(namespace, id))

    def get_container_by_name(self, namespace: str, name: str) -> Container:
        return self._read(lambda tx: tx.get_container_by_name(namespace, name))

    def list_containers(self, namespace: str, *, image: str | None = None) -> list[Container]:
        return self._read(lambda tx: tx.list_containers(namespace, image=image))

    def get_object(self, namespace: str, kind: str, id: str) -> Object:
        return self._read(lambda tx: tx.get_object(namespace, kind, id))

    def find_object(self, namespace: str, kind: str, name: str) -> Object | None:
        return self._read(lambda tx: tx.find_object(namespace, kind, name))

    def list_objects(self, namespace: str | None, kind: str) -> list[Object]:
        return self._read(lambda tx: tx.list_objects(namespace, kind))

    def get_lease(self, namespace: str, id: str) -> Lease:
        return self._read(lambda tx: tx.get_lease(namespace, id))

    def list_leases(self, namespace: str | None = None) -> list[Lease]:
        return self._read(lambda tx: tx.list_leases(namespace))

    def lease_resources(self, namespace: str, id: str) -> list[LeaseResource]:
        return self._read(lambda tx: tx.lease_resources(namespace, id))

    def expired_leases(self, now: float | None = None) -> list[Lease]:
        return self._read(lambda tx: tx.expired_leases(now))

    def content_refs(self, parent: str) -> list[str]:
        return self._read(lambda tx: tx.content_refs(parent))

    def content_referrers(self, child: str) -> list[str]:
        return self._read(lambda tx: tx.content_referrers(child))

    def snapshot_refs(self, digest: str) -> list[tuple[str, str]]:
        return self._read(lambda tx: tx.snapshot_refs(digest))

    def gc_roots(self, now: float | None = None) -> Roots:
        return self._read(lambda tx: tx.gc_roots(now))

    def mark(self, now: float | None = None) -> Roots:
        return self._read(lambda tx: tx.mark(now))

    def ref_parents(self) -> set[str]:
        return self._read(lambda tx: tx.ref_parents())

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        return self._change(lambda tx: tx.create_namespace(name, labels))

    def set_namespace_labels(self, name: str, labels: Mapping[str, str]) -> Namespace:
        return self._change(lambda tx: tx.set_namespace_labels(name, labels))

    def delete_namespace(self, name: str) -> None:
        return self._change(lambda tx: tx.delete_namespace(name), frees=True)

    def create_image(self,
            namespace: str, name: str, target: Descriptor | Mapping[str, Any],
            labels: Mapping[str, str] | None = None) -> Image:
        return self._change(lambda tx: tx.create_image(namespace, name, target, labels))

    def update_image(self,
            namespace: str, name: str, *, target: Descriptor | Mapping[str, Any] = UNSET,
            labels: Mapping[str, str] = UNSET) -> Image:
        return self._change(lambda tx: tx.update_image(namespace, name, target=target, labels=labels))

    def put_image(self,
            namespace: str, name: str, target: Descriptor | Mapping[str, Any],
            labels: Mapping[str, str] | None = None) -> tuple[Image, Image | None]:
        return self._change(lambda tx: tx.put_image(namespace, name, target, labels))

    def delete_image(self, namespace: str, name: str) -> Image:
        return self._change(lambda tx: tx.delete_image(namespace, name), frees=True)

    def create_container(self,
            namespace: str, id: str, *, name: str | None = None, image: str = '', snapshotter: str = '',
            snapshot_key: str = '', runtime: str = '', spec: Any = None, labels: Mapping[str, str] | None = None,
            extensions: Mapping[str, Any] | None = None) -> Container:
        return self._change(
            lambda tx: tx.create_container(namespace, id, name=name, image=image, snapshotter=snapshotter, snapshot_key=snapshot_key, runtime=runtime, spec=spec, labels=labels, extensions=extensions))

    def update_container(self,
            namespace: str, id: str, *, name: str = UNSET, image: str = UNSET, snapshotter: str = UNSET,
            snapshot_key: str = UNSET, runtime: str = UNSET, spec: Any = UNSET, labels: Mapping[str, str] = UNSET,
            extensions: Mapping[str, Any] = UNSET) -> Container:
        return self._change(
            lambda tx: tx.update_container(namespace, id, name=name, image=image, snapshotter=snapshotter, snapshot_key=snapshot_key, runtime=runtime, spec=spec, labels=labels, extensions=extensions))

    def delete_container(self, namespace: str, id: str) -> Container:
        return self._change(lambda tx: tx.delete_container(namespace, id), frees=True)

    def create_object(self,
            namespace: str, kind: str, id: str, name: str, data: Mapping[str, Any],
            labels: Mapping[str, str] | None = None) -> Object:
        return self._change(lambda tx: tx.create_object(namespace, kind, id, name, data, labels))

    def update_object(self,
            namespace: str, kind: str, id: str, *, data: Mapping[str, Any] = UNSET,
            labels: Mapping[str, str] = UNSET) -> Object:
        return self._change(lambda tx: tx.update_object(namespace, kind, id, data=data, labels=labels))

    def delete_object(self, namespace: str, kind: str, id: str) -> Object:
        return self._change(lambda tx: tx.delete_object(namespace, kind, id), frees=True)

    def create_lease(self,
            namespace: str, id: str | None = None, *, expires_at: float | None = None, ttl: float | None = None,
            labels: Mapping[str, str] | None = None) -> Lease:
        return self._change(lambda tx: tx.create_lease(namespace, id, expires_at=expires_at, ttl=ttl, labels=labels))

    def update_lease(self,
            namespace: str, id: str, *, expires_at: float | None = UNSET, labels: Mapping[str, str] = UNSET) -> Lease:
        return self._change(lambda tx: tx.update_lease(namespace, id, expires_at=expires_at, labels=labels))

    def delete_lease(self, namespace: str, id: str) -> None:
        return self._change(lambda tx: tx.delete_lease(namespace, id), frees=True)

    def add_lease_resource(self,
            namespace: str, id: str, kind: str, ref: str, snapshotter: str = 'overlayfs') -> None:
        return self._change(lambda tx: tx.add_lease_resource(namespace, id, kind, ref, snapshotter))

    def remove_lease_resource(self,
            namespace: str, id: str, kind: str, ref: str, snapshotter: str = 'overlayfs') -> None:
        return self._change(lambda tx: tx.remove_lease_resource(namespace, id, kind, ref, snapshotter), frees=True)

    def add_content_refs(self, parent: str, children: Iterable[str]) -> None:
        return self._change(lambda tx: tx.add_content_refs(parent, children))

    def add_snapshot_ref(self, digest: str, key: str, snapshotter: str = 'overlayfs') -> None:
        return self._change(lambda tx: tx.add_snapshot_ref(digest, key, snapshotter))

    def remove_refs(self, digest: str) -> None:
        return self._change(lambda tx: tx.remove_refs(digest), frees=True)

    def delete_expired_leases(self, now: float | None = None) -> list[tuple[str, str]]:
        return self._change(lambda tx: tx.delete_expired_leases(now), frees=True)
