"""berth.content.store: commit-or-nothing writes, resumable ingests, safe paths."""

import hashlib
import io
import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from berth.content.store import ContentStore, Ingest
from berth.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.urandom(3 * 1024 * 1024 + 17)  # more than one internal chunk
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
OTHER = "sha256:" + "0" * 64


@pytest.fixture
def store(tmp_path):
    return ContentStore(tmp_path / "content")


def blob_files(root):
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "blobs")):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def ingest_dirs(root):
    try:
        return os.listdir(os.path.join(root, "ingest"))
    except FileNotFoundError:
        return []


def test_no_io_on_construction(tmp_path):
    s = ContentStore(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    assert list(s.list()) == [] and s.ingests() == []
    assert not s.exists(DIGEST)
    assert not (tmp_path / "nope").exists()


def test_write_commit_read(store):
    with store.writer("layer-1", DIGEST, len(DATA)) as w:
        for i in range(0, len(DATA), 100_000):
            w.write(DATA[i : i + 100_000])
        assert w.offset == len(DATA)
        assert w.digest() == DIGEST
        # nothing is visible before commit
        assert not store.exists(DIGEST) and list(store.list()) == []
        assert store.ingests()[0][:2] == ("layer-1", len(DATA))
        assert w.commit(len(DATA), DIGEST) == DIGEST
    assert store.exists(DIGEST)
    assert store.info(DIGEST) == len(DATA)
    assert store.read(DIGEST) == DATA
    with store.open(DIGEST) as f:
        assert f.read(10) == DATA[:10]
    hexd = DIGEST.split(":")[1]
    assert store.path(DIGEST) == os.path.join(store.root, "blobs", "sha256", hexd)
    assert list(store.list()) == [DIGEST]
    assert store.ingests() == [] and ingest_dirs(store.root) == []


def test_commit_without_expectations_returns_sha256(store):
    w = store.writer("anon")
    w.write(b"hello")
    d = w.commit()
    assert d == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.read(d) == b"hello"


def test_sha512(store):
    d = "sha512:" + hashlib.sha512(b"x").hexdigest()
    w = store.writer("s512", d)
    w.write(b"x")
    assert w.commit() == d
    assert store.read(d) == b"x"
    assert os.path.dirname(store.path(d)).endswith(os.path.join("blobs", "sha512"))
    # a digest of another algorithm given at commit is verified too
    w = store.writer("mixed")
    w.write(b"y")
    assert w.commit(digest="sha512:" + hashlib.sha512(b"y").hexdigest()).startswith("sha512:")


def test_blob_files_are_read_only(store):
    d = store.write_blob(b"read only")
    assert stat.S_IMODE(os.stat(store.path(d)).st_mode) == 0o444
    assert stat.S_ISREG(os.stat(store.path(d)).st_mode)


def test_digest_mismatch_leaves_nothing(store):
    w = store.writer("bad", OTHER)
    w.write(DATA)
    with pytest.raises(InvalidArgument, match=f"^digest mismatch: expected {OTHER}, got {DIGEST}$"):
        w.commit()
    assert blob_files(store.root) == [] and ingest_dirs(store.root) == []
    assert not store.exists(DIGEST)
    with pytest.raises(FailedPrecondition):
        w.write(b"more")

    w = store.writer("bad2")
    w.write(b"abc")
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        w.commit(digest=OTHER)
    assert blob_files(store.root) == [] and store.ingests() == []


def test_size_mismatch(store):
    w = store.writer("short", expected_size=10)
    w.write(b"12345")
    with pytest.raises(InvalidArgument, match="size mismatch: expected 10 bytes, got 5"):
        w.commit()
    assert blob_files(store.root) == [] and store.ingests() == []

    w = store.writer("commit-size")
    w.write(b"12345")
    with pytest.raises(InvalidArgument, match="size mismatch"):
        w.commit(size=4)
    assert blob_files(store.root) == [] and store.ingests() == []

    # a source sending more than announced is cut off at once
    w = store.writer("long", expected_size=4)
    with pytest.raises(InvalidArgument, match="size mismatch"):
        w.write(b"12345")
    assert store.ingests() == [] and blob_files(store.root) == []


def test_resume_after_dropped_writer(tmp_path):
    root = tmp_path / "content"
    half = len(DATA) // 2
    w = ContentStore(root).writer("pull-layer", DIGEST, len(DATA))
    w.write(DATA[:half])
    del w  # dropped without commit or abort: the ingest stays

    store = ContentStore(root)  # e.g. after a daemon restart
    (ing,) = store.ingests()
    assert isinstance(ing, Ingest) and ing.ref == "pull-layer" and ing.offset == half
    w = store.writer("pull-layer")  # expectations are remembered
    assert w.offset == half
    assert w.expected_digest == DIGEST and w.expected_size == len(DATA)
    assert w.started == ing.started
    w.write(DATA[half:])
    assert w.commit() == DIGEST
    assert store.read(DIGEST) == DATA


def test_resume_after_process_crash(tmp_path):
    root = tmp_path / "content"
    half = len(DATA) // 2
    src = tmp_path / "data"
    src.write_bytes(DATA)
    code = textwrap.dedent(
        f"""
        import os
        from berth.content.store import ContentStore
        data = open({str(src)!r}, "rb").read()
        w = ContentStore({str(root)!r}).writer("crashy", {DIGEST!r}, len(data))
        w.write(data[:{half}])
        os._exit(9)  # no cleanup of any kind
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 9, r.stderr

    store = ContentStore(root)
    w = store.writer("crashy", DIGEST, len(DATA))  # the dead process's lock is gone
    assert w.offset == half
    w.write(DATA[half:])
    assert w.commit() == DIGEST
    assert store.read(DIGEST) == DATA
    assert store.ingests() == []


def test_exception_in_with_block_keeps_ingest(store):
    with pytest.raises(RuntimeError):
        with store.writer("net", DIGEST) as w:
            w.write(DATA[:1000])
            raise RuntimeError("connection reset")
    assert store.ingests()[0][:2] == ("net", 1000)
    with store.writer("net", DIGEST) as w:
        assert w.offset == 1000
        w.write(DATA[1000:])
        assert w.commit() == DIGEST


def test_resume_with_other_expected_digest_restarts(store):
    w = store.writer("moving-tag", OTHER)
    w.write(b"old content")
    w.close()
    w = store.writer("moving-tag", DIGEST)
    assert w.offset == 0
    w.write(DATA)
    assert w.commit() == DIGEST


def test_one_writer_per_ref(store):
    w = store.writer("busy")
    w.write(b"a")
    with pytest.raises(Unavailable):
        store.writer("busy")
    with pytest.raises(Unavailable):
        store.abort_ingest("busy")
    w.close()
    w2 = store.writer("busy")
    assert w2.offset == 1
    w2.abort()
    assert store.ingests() == []


def test_abort(store):
    w = store.writer("gone")
    w.write(b"abc")
    w.abort()
    w.abort()  # idempotent
    assert store.ingests() == [] and ingest_dirs(store.root) == []
    with pytest.raises(FailedPrecondition):
        w.commit()

    w = store.writer("later")
    w.write(b"abc")
    w.close()
    store.abort_ingest("later")
    assert store.ingests() == []
    with pytest.raises(NotFound):
        store.abort_ingest("later")


def test_commit_of_existing_content(store):
    d = store.write_blob(DATA)
    inode = os.stat(store.path(d)).st_ino
    w = store.writer("again", d)
    w.write(DATA)
    assert w.commit() == d
    assert os.stat(store.path(d)).st_ino == inode  # the existing blob is kept
    assert store.ingests() == [] and list(store.list()) == [d]
    assert store.write_blob(DATA, d) == d


def test_concurrent_commit_of_same_content(store):
    n = 8
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker(i):
        try:
            w = store.writer(f"dup-{i}", DIGEST, len(DATA))
            w.write(DATA)
            barrier.wait()
            results.append(w.commit())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [DIGEST] * n
    assert list(store.list()) == [DIGEST] and store.read(DIGEST) == DATA
    assert store.ingests() == [] and ingest_dirs(store.root) == []

    # and through the one-shot helper
    data = b"small blob"
    barrier = threading.Barrier(n)
    out = []

    def one(_):
        barrier.wait()
        out.append(store.write_blob(data))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == n and len(set(out)) == 1
    assert store.read(out[0]) == data and store.ingests() == []


def test_write_blob(store):
    d = store.write_blob(b"config")
    assert d == "sha256:" + hashlib.sha256(b"config").hexdigest()
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.write_blob(b"config", OTHER)
    assert list(store.list()) == [d] and store.ingests() == []


def test_list_and_delete(store):
    digests = sorted(store.write_blob(bytes([i]) * 10) for i in range(3))
    assert list(store.list()) == digests
    store.delete(digests[1])
    assert list(store.list()) == [digests[0], digests[2]]
    with pytest.raises(NotFound):
        store.delete(digests[1])
    with pytest.raises(NotFound):
        store.info(digests[1])
    with pytest.raises(NotFound):
        store.open(digests[1])
    with pytest.raises(NotFound):
        store.read(digests[1])
    assert not store.exists(digests[1])
    # stray files under blobs/ are not digests and are not listed
    open(os.path.join(store.root, "blobs", "sha256", "junk"), "w").close()
    assert list(store.list()) == [digests[0], digests[2]]


def test_read_max_size(store):
    d = store.write_blob(b"x" * 100)
    assert store.read(d, max_size=100) == b"x" * 100
    with pytest.raises(InvalidArgument, match="more than the limit of 99"):
        store.read(d, max_size=99)


def test_ingest_from(store):
    assert store.ingest_from(io.BytesIO(DATA), expected_digest=DIGEST) == DIGEST
    assert store.read(DIGEST) == DATA
    # already present: the source is not read
    assert store.ingest_from(io.BytesIO(b""), expected_digest=DIGEST) == DIGEST
    with pytest.raises(InvalidArgument):
        store.ingest_from(io.BytesIO(b"wrong"), expected_digest=OTHER)
    assert store.ingests() == []


class Flaky(io.RawIOBase):
    """A non-seekable stream that fails after `fail_after` bytes."""

    def __init__(self, data, fail_after=None):
        self._data, self._pos, self._fail = data, 0, fail_after

    def readable(self):
        return True

    def readinto(self, b):
        if self._fail is not None and self._pos >= self._fail:
            raise ConnectionError("reset by peer")
        end = len(self._data) if self._fail is None else self._fail
        n = min(len(b), end - self._pos, 65536)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_ingest_from_resumes_with_a_ref(store):
    with pytest.raises(ConnectionError):
        store.ingest_from(Flaky(DATA, fail_after=1_000_000), ref="dl", expected_digest=DIGEST)
    assert store.ingests()[0][:2] == ("dl", 1_000_000)
    # the retry starts from the beginning of the stream; the ingested part is skipped
    assert store.ingest_from(Flaky(DATA), ref="dl", expected_digest=DIGEST) == DIGEST
    assert store.read(DIGEST) == DATA and store.ingests() == []
    # without a ref, a failed copy is thrown away
    with pytest.raises(ConnectionError):
        store.ingest_from(Flaky(b"z" * 200_000, fail_after=100_000))
    assert store.ingests() == []


CRAFTED = [
    "sha256:../../../../etc/passwd",
    "sha256:" + "a" * 62 + "/.",
    "sha256/../../x:" + "a" * 64,
    "../sha256:" + "a" * 64,
    "sha256:" + "a" * 64 + "/../../x",
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63 + "\x00",
    "md5:" + "a" * 32,
    "sha256:",
    "",
    "/etc/passwd",
    None,
]


@pytest.mark.parametrize("bad", CRAFTED, ids=[repr(c)[:30] for c in CRAFTED])
def test_crafted_digests_are_refused(store, tmp_path, bad):
    calls = [
        lambda: store.path(bad),
        lambda: store.exists(bad),
        lambda: store.info(bad),
        lambda: store.open(bad),
        lambda: store.read(bad),
        lambda: store.delete(bad),
    ]
    if bad is not None:  # None means "no expectation" for these
        calls += [
            lambda: store.writer("r", bad),
            lambda: store.write_blob(b"data", bad),
            lambda: store.ingest_from(io.BytesIO(b"data"), expected_digest=bad),
        ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()
    if bad is not None:
        w = store.writer("r2")
        w.write(b"data")
        with pytest.raises(InvalidArgument):
            w.commit(digest=bad)
        w.abort()
    assert blob_files(store.root) == []
    assert set(os.listdir(tmp_path)) <= {"content"}  # nothing escaped the root


def test_bad_arguments(store):
    with pytest.raises(InvalidArgument):
        store.writer("")
    with pytest.raises(InvalidArgument):
        store.writer("r", expected_size=-1)
    with pytest.raises(InvalidArgument):
        store.read(store.write_blob(b"x"), max_size=-5)
