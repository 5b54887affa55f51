"""A content-addressed blob store on a local filesystem (containerd's content store).

Layout under ``root``::

    blobs/<algorithm>/<hex>      verified blobs, mode 0444, never modified
    ingest/<sha256(ref)>/        one in-flight write, named by a caller-chosen ref
        data                     the bytes received so far
        ref                      the ref, in clear
        expected                 {"digest": ..., "size": ...} (JSON, either may be null)
        started                  time.time() when the ingest began

Writes go ``writer(ref) -> write()* -> commit(size, digest)``. Commit checks
the size and digest, fsyncs the data, renames it into blobs/ and fsyncs that
directory, so a blob is either complete and verified or absent: nothing
appears under blobs/ before it is verified.

An ingest outlives its Writer: if the process dies (or the writer is simply
closed or dropped) the partial data stays, and a later ``writer()`` with the
same ref resumes it, rebuilding the hash from the bytes on disk. That is why
leaving a ``with store.writer(...)`` block by an exception only *closes* the
writer; call ``abort()`` (or ``abort_ingest(ref)``) to throw the data away.
Stale ingests are listed by ``ingests()`` for a garbage collector to remove.

Concurrency: one writer per ref at a time (an flock on ``data``, released when
the writer is closed or its process dies; a second writer gets Unavailable).
Creating, committing and removing ingests are serialised by an flock on the
``ingest`` directory, across threads and processes. Committing content that
is already present keeps the existing blob and succeeds.

Digests given to any method are validated with berth.oci.digest before they
are used in a path, so a crafted string cannot reach outside ``blobs/``.
Blocking I/O throughout: call it from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from typing import BinaryIO, Iterator, NamedTuple

from berth.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
    Unavailable,
)
from berth.oci.digest import (
    ALGORITHMS,
    CANONICAL,
    digest_bytes,
    is_digest,
    new_hasher,
    parse_digest,
)

CHUNK_SIZE = 1 << 20
BLOB_MODE = 0o444


class IngestLocked(Unavailable):
    """Another writer holds the ingest (containerd's locked ref): wait for it, or give up."""


class Ingest(NamedTuple):
    """An in-flight write: its ref, bytes received so far, and start time (epoch seconds)."""

    ref: str
    offset: int
    started: float


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdirs(path: str) -> None:
    """os.makedirs that fsyncs each parent it adds an entry to."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _mkdirs(parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    _fsync_dir(parent or ".")


def _write_text(dirpath: str, name: str, text: str) -> None:
    """Replace dirpath/name atomically (metadata; advisory, so not fsynced)."""
    tmp = os.path.join(dirpath, name + ".tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    os.replace(tmp, os.path.join(dirpath, name))


def _read_text(dirpath: str, name: str) -> str | None:
    try:
        with open(os.path.join(dirpath, name), encoding="utf-8", errors="surrogatepass") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None


def _check_size(size: object, what: str) -> None:
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InvalidArgument(f"{what} must be a non-negative integer, got {size!r}")


def _os_error(action: str, e: OSError) -> SystemError_:
    return SystemError_(f"{action}: {e.strerror or e}")


class ContentStore:
    """Blobs under ``<root>/blobs``, in-flight writes under ``<root>/ingest``.

    Creating the object does no I/O; directories are made on first write.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = os.fspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._ingest = os.path.join(self.root, "ingest")
        self._sources = os.path.join(self.root, "sources")
        self._sources_lock = threading.Lock()

    # --- reading -----------------------------------------------------------

    def path(self, digest: str) -> str:
        """Where the blob for ``digest`` lives (whether or not it exists)."""
        algo, hexd = parse_digest(digest)
        return os.path.join(self._blobs, algo, hexd)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def info(self, digest: str) -> int:
        """The size in bytes of a committed blob; NotFound if absent."""
        p = self.path(digest)
        try:
            return os.stat(p).st_size
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        """A binary file object on a committed blob; NotFound if absent."""
        p = self.path(digest)
        try:
            return open(p, "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def read(self, digest: str, max_size: int | None = None) -> bytes:
        """A whole blob; InvalidArgument if it is larger than ``max_size``."""
        _check_size(max_size, "max_size")
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if max_size is not None and size > max_size:
                raise InvalidArgument(f"content {digest} is {size} bytes, more than the limit of {max_size}")
            return f.read()

    def list(self) -> Iterator[str]:
        """The digests of all committed blobs, sorted by algorithm then hex."""
        for algo in sorted(ALGORITHMS):
            try:
                names = sorted(os.listdir(os.path.join(self._blobs, algo)))
            except FileNotFoundError:
                continue
            for name in names:
                d = f"{algo}:{name}"
                if is_digest(d):
                    yield d

    def delete(self, digest: str) -> None:
        """Remove a committed blob; NotFound if absent.

        Nothing here stops a blob that is in use from being deleted: that is
        the job of the metadata layer's references and leases.
        """
        p = self.path(digest)
        try:
            os.unlink(p)
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None
        try:
            os.unlink(self._source_path(digest))
        except FileNotFoundError:
            pass

    # --- where a blob is in registries ---------------------------------------
    # (containerd's containerd.io/distribution.source.<host> labels; dockerd's v2 metadata): the
    # repositories a blob was pulled from or pushed to, by registry host, so that a push to another
    # repository of that registry mounts it from there rather than upload it again

    SOURCES_KEPT = 5  # repositories kept per registry host, the latest first

    def _source_path(self, digest: str) -> str:
        algo, hexd = parse_digest(digest)
        return os.path.join(self._sources, algo, hexd)

    def sources(self, digest: str, host: str) -> list[str]:
        """The repositories (paths) of registry ``host`` known to have the blob, the latest first."""
        try:
            with open(self._source_path(digest)) as f:
                repos = json.load(f).get(host) or []
        except (OSError, ValueError, AttributeError):
            return []
        return [r for r in repos if isinstance(r, str)]

    def add_source(self, digest: str, host: str, repo: str) -> None:
        """Note that repository ``repo`` of registry ``host`` has the blob (best effort: a blob
        that is not here, or a failed write, notes nothing)."""
        if not self.exists(digest):
            return
        path = self._source_path(digest)
        with self._sources_lock:
            try:
                with open(path) as f:
                    known = json.load(f)
                if not isinstance(known, dict):
                    known = {}
            except (OSError, ValueError):
                known = {}
            repos = [repo] + [r for r in known.get(host) or [] if r != repo]
            if repos == known.get(host):
                return
            known[host] = repos[:self.SOURCES_KEPT]
            try:
                _mkdirs(os.path.dirname(path))
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(json.dumps(known))
                os.replace(tmp, path)
            except OSError:
                pass

    # --- writing -----------------------------------------------------------

    def writer(
        self, ref: str, expected_digest: str | None = None, expected_size: int | None = None
    ) -> "Writer":
        """A Writer for the ingest named ``ref``, resuming it if it exists.

        On resume ``Writer.offset`` is the number of bytes already there. If
        the recorded expectations contradict the new ones (another digest or
        size), or the data is already longer than expected, the old bytes
        belong to other content and the ingest starts again from zero.
        Raises IngestLocked if another writer holds the same ref.
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("an ingest ref must be a non-empty string")
        if expected_digest is not None:
            parse_digest(expected_digest)
        _check_size(expected_size, "expected size")
        return Writer._open(self, ref, expected_digest, expected_size)

    def write_blob(self, data: bytes, expected_digest: str | None = None) -> str:
        """Store ``data`` in one go and return its digest.

        The digest is checked before anything touches the disk; content that
        is already present is not written again.
        """
        algo = parse_digest(expected_digest)[0] if expected_digest is not None else CANONICAL
        actual = digest_bytes(data, algo)
        if expected_digest is not None and actual != expected_digest:
            raise InvalidArgument(f"digest mismatch: expected {expected_digest}, got {actual}")
        if self.exists(actual):
            return actual
        w = self.writer(f"write-blob-{actual}-{os.urandom(8).hex()}", actual, len(data))
        try:
            w.write(data)
            return w.commit()
        except BaseException:
            w.abort()  # a unique ref: nothing could resume it
            raise

    def ingest_from(
        self,
        fileobj: BinaryIO,
        ref: str | None = None,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> str:
        """Copy a file object into the store and return the committed digest.

        With a ``ref`` the copy is resumable: if that ingest already holds N
        bytes, ``fileobj`` is taken to yield the blob from its beginning and
        its first N bytes are skipped (seek if it is seekable, else read and
        discarded); on error the ingest is left for a later call. Without a
        ``ref`` a unique one is used and a failed copy is discarded. If
        ``expected_digest`` is already stored, returns at once without
        reading ``fileobj``.
        """
        if expected_digest is not None and self.exists(expected_digest):
            return expected_digest
        unique = ref is None
        if unique:
            ref = f"ingest-{os.urandom(16).hex()}"
        w = self.writer(ref, expected_digest, expected_size)
        try:
            if w.offset:
                _skip(fileobj, w.offset)
            while True:
                chunk = fileobj.read(chunk_size)
                if not chunk:
                    break
                w.write(chunk)
            return w.commit()
        except BaseException:
            if unique:
                w.abort()
            raise
        finally:
            w.close()

    def ingests(self) -> list[Ingest]:
        """The in-flight writes, as (ref, offset, started), sorted by ref."""
        try:
            names = os.listdir(self._ingest)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            d = os.path.join(self._ingest, name)
            ref = _read_text(d, "ref")
            if ref is None:  # not an ingest dir, or one being created
                continue
            try:
                offset = os.stat(os.path.join(d, "data")).st_size
            except FileNotFoundError:
                offset = 0
            started_text = _read_text(d, "started")
            try:
                started = float(started_text) if started_text is not None else os.stat(d).st_mtime
            except (ValueError, FileNotFoundError):
                started = 0.0
            out.append(Ingest(ref, offset, started))
        out.sort()
        return out

    def abort_ingest(self, ref: str) -> None:
        """Throw away the ingest ``ref``; NotFound if absent, Unavailable if a writer holds it."""
        d = self._ingest_dir(ref)
        with self._lock():
            if not os.path.isdir(d):
                raise NotFound(f'ingest "{ref}" not found')
            try:
                f = open(os.path.join(d, "data"), "rb")
            except FileNotFoundError:
                f = None
            try:
                if f is not None:
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise IngestLocked(f'ingest "{ref}" is in use by another writer') from None
                _remove_tree(d)
            finally:
                if f is not None:
                    f.close()

    # --- internals ---------------------------------------------------------

    def _ingest_dir(self, ref: str) -> str:
        h = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
        return os.path.join(self._ingest, h)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise creating, committing and removing ingests (threads and processes)."""
        _mkdirs(self._ingest)
        fd = os.open(self._ingest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _remove_tree(path: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


def _skip(fileobj: BinaryIO, n: int) -> None:
    seekable = getattr(fileobj, "seekable", None)
    if seekable is not None and seekable():
        fileobj.seek(n)
        return
    while n > 0:
        chunk = fileobj.read(min(n, CHUNK_SIZE))
        if not chunk:
            raise InvalidArgument(f"source ended before the {n} bytes already ingested")
        n -= len(chunk)


class Writer:
    """Writes one blob into an ingest; get one from ContentStore.writer().

    ``offset`` is the number of bytes in the ingest. ``commit()`` verifies and
    publishes, ``abort()`` discards, ``close()`` (also what leaving a ``with``
    block does, even on an exception) only releases the writer and keeps the
    data so a later writer with the same ref can resume.
    """

    def __init__(self, store: ContentStore, ref: str, dirpath: str, f, algo: str, hasher,
                 offset: int, expected_digest: str | None, expected_size: int | None, started: float):
        self._store = store
        self.ref = ref
        self._dir = dirpath
        self._f = f
        self._algo = algo
        self._hasher = hasher
        self._offset = offset
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self.started = started
        self._finished = False  # committed or aborted

    @classmethod
    def _open(cls, store: ContentStore, ref: str, expected_digest: str | None,
              expected_size: int | None) -> "Writer":
        d = store._ingest_dir(ref)
        with store._lock():
            os.makedirs(d, exist_ok=True)
            # "a+b": O_APPEND|O_CREAT, readable for re-hashing on resume.
            f = open(os.path.join(d, "data"), "a+b", buffering=0)
            try:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise IngestLocked(f'ingest "{ref}" is in use by another writer') from None
                rec_digest, rec_size = None, None
                text = _read_text(d, "expected")
                if text is not None:
                    try:
                        rec = json.loads(text)
                        rec_digest = rec.get("digest") if is_digest(rec.get("digest")) else None
                        rec_size = rec.get("size") if isinstance(rec.get("size"), int) else None
                    except (ValueError, AttributeError):
                        pass
                restart = (expected_digest is not None and rec_digest is not None
                           and expected_digest != rec_digest) or (
                          expected_size is not None and rec_size is not None
                           and expected_size != rec_size)
                if expected_digest is None:
                    expected_digest = rec_digest
                if expected_size is None:
                    expected_size = rec_size
                algo = parse_digest(expected_digest)[0] if expected_digest else CANONICAL
                hasher = new_hasher(algo)
                offset = 0
                if not restart:
                    f.seek(0)
                    while True:
                        chunk = f.read(CHUNK_SIZE)
                        if not chunk:
                            break
                        hasher.update(chunk)
                        offset += len(chunk)
                    if expected_size is not None and offset > expected_size:
                        restart = True
                if restart:
                    f.truncate(0)
                    hasher, offset = new_hasher(algo), 0
                started_text = _read_text(d, "started")
                try:
                    started = float(started_text) if started_text and not restart else None
                except ValueError:
                    started = None
                if started is None:
                    started = time.time()
                    _write_text(d, "started", repr(started))
                _write_text(d, "ref", ref)
                _write_text(d, "expected", json.dumps({"digest": expected_digest, "size": expected_size}))
            except BaseException:
                f.close()
                raise
        return cls(store, ref, d, f, algo, hasher, offset, expected_digest, expected_size, started)

    @property
    def offset(self) -> int:
        return self._offset

    def digest(self) -> str:
        """The digest of the bytes written so far."""
        return f"{self._algo}:{self._hasher.hexdigest()}"

    def _check_open(self) -> None:
        if self._finished:
            raise FailedPrecondition(f'ingest "{self.ref}" is already committed or aborted')
        if self._f is None:
            raise FailedPrecondition(f'writer for ingest "{self.ref}" is closed')

    def write(self, data: bytes) -> int:
        """Append ``data``; returns its length.

        Writing past the expected size discards the ingest and raises
        InvalidArgument (a server sending too much is not resumable).
        """
        self._check_open()
        mv = memoryview(data).cast("B")
        n = mv.nbytes
        if self.expected_size is not None and self._offset + n > self.expected_size:
            got = self._offset + n
            self.abort()
            raise InvalidArgument(f"size mismatch: expected {self.expected_size} bytes, got at least {got}")
        try:
            done = 0
            while done < n:
                done += self._f.write(mv[done:])
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                # a full disk: the partial data goes at once (it is what filled the disk, and
                # keeping it for a resume would keep the disk full)
                with contextlib.suppress(OSError):
                    self.abort()
            else:
                # What reached the disk is unknown: drop this writer; a resume re-reads the data.
                self.close()
            raise _os_error(f'writing ingest "{self.ref}"', e) from e
        self._hasher.update(mv)
        self._offset += n
        return n

    def _digest_with(self, algo: str) -> str:
        if algo == self._algo:
            return self.digest()
        h = new_hasher(algo)
        self._f.seek(0)
        while True:
            chunk = self._f.read(CHUNK_SIZE)
            if not chunk:
                break
            h.update(chunk)
        return f"{algo}:{h.hexdigest()}"

    def commit(self, size: int | None = None, digest: str | None = None) -> str:
        """Verify and publish the blob; returns its digest.

        ``size`` and ``digest`` are checked in addition to the expectations
        given to ``writer()``. A mismatch discards the ingest and raises
        InvalidArgument. If the blob already exists it is kept as is and the
        commit still succeeds.
        """
        self._check_open()
        _check_size(size, "size")
        if digest is not None:
            parse_digest(digest)
        for want in (self.expected_size, size):
            if want is not None and want != self._offset:
                self.abort()
                raise InvalidArgument(f"size mismatch: expected {want} bytes, got {self._offset}")
        try:
            for want in (self.expected_digest, digest):
                if want is not None:
                    got = self._digest_with(parse_digest(want)[0])
                    if got != want:
                        self.abort()
                        raise InvalidArgument(f"digest mismatch: expected {want}, got {got}")
            final_algo = parse_digest(self.expected_digest or digest or self.digest())[0]
            final = self._digest_with(final_algo)
            _, hexd = parse_digest(final)
            fd = self._f.fileno()
            os.fsync(fd)
            os.fchmod(fd, BLOB_MODE)
            blob_dir = os.path.join(self._store._blobs, final_algo)
            target = os.path.join(blob_dir, hexd)
            with self._store._lock():
                _mkdirs(blob_dir)
                if not os.path.exists(target):
                    os.rename(os.path.join(self._dir, "data"), target)
                    _fsync_dir(blob_dir)
                _remove_tree(self._dir)
        except OSError as e:
            self.close()
            raise _os_error(f'committing ingest "{self.ref}"', e) from e
        self._finished = True
        self.close()
        return final

    def abort(self) -> None:
        """Discard the ingest and its data. A no-op once committed or aborted."""
        if self._finished:
            return
        self._finished = True
        if self._f is None:
            # Closed: the ingest may have been resumed by another writer since;
            # go through the store so its lock is respected.
            with contextlib.suppress(NotFound):
                self._store.abort_ingest(self.ref)
            return
        try:
            with self._store._lock():
                _remove_tree(self._dir)
        finally:
            self.close()

    def close(self) -> None:
        """Release the writer (and its lock) but keep the ingest for a later resume."""
        f, self._f = self._f, None
        if f is not None:
            f.close()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Writer ref={self.ref!r} offset={self._offset}>"
