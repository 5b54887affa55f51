"""berth.archive.tar, the one owner of tar trees: what `docker cp` (both ways), export and image
layers write and extract. File capabilities travel as docker's tars carry them: the raw bytes of
security.capability in a SCHILY.xattr PAX record (Go's archive/tar writes them as they are)."""

import io
import os
import struct
import tarfile

import pytest

from berth.archive import tar
from berth.errors import InvalidArgument

# VFS_CAP_REVISION_2 with the effective flag, CAP_SETUID (bit 7: a byte >= 0x80) permitted
CAP = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)
PAX_KEY = b"SCHILY.xattr.security.capability="


def _stream(d, name="."):
    fd = os.open(d, os.O_PATH | os.O_DIRECTORY)
    try:
        return b"".join(tar.tar_stream(fd, name, "out"))
    finally:
        os.close(fd)


def _extract(data, dest, **kw):
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    try:
        tar.extract_tar(fd, "", io.BytesIO(data), **kw)
    finally:
        os.close(fd)


def _pax_value(data, key=PAX_KEY):
    """The raw value of a PAX record ("<len> key=value\n") in a tar."""
    i = data.index(key)
    k = i - 1  # the space after the length
    while data[k - 1:k].isdigit():
        k -= 1
    n = int(data[k:i - 1])
    return data[i + len(key):k + n - 1]


def test_capability_bytes_leave_and_come_back_as_they_are(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ping").write_bytes(b"\x7fELF...")
    os.setxattr(src / "ping", "security.capability", CAP)
    data = _stream(src)
    assert _pax_value(data) == CAP  # raw bytes in the archive, as docker writes them
    dest = tmp_path / "dest"
    dest.mkdir()
    _extract(data, dest)
    assert os.getxattr(dest / "out" / "ping", "security.capability") == CAP
    assert (dest / "out" / "ping").read_bytes() == b"\x7fELF..."


def test_a_go_style_capability_record_is_applied_exactly(tmp_path):
    """A PAX record holding raw bytes and no hdrcharset (what docker's Go archive/tar writes)."""
    value = PAX_KEY + CAP + b"\n"
    n = len(value) + 3
    n = len(str(n).encode()) + 1 + len(value)
    record = str(n).encode() + b" " + value
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = len(record)
    f = tarfile.TarInfo("bin/ping")
    f.size = 3
    f.mode = 0o755
    buf = io.BytesIO()
    buf.write(pax.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512))
    buf.write(f.tobuf(tarfile.USTAR_FORMAT) + b"abc" + bytes(509) + bytes(1024))
    _extract(buf.getvalue(), tmp_path)
    assert os.getxattr(tmp_path / "bin" / "ping", "security.capability") == CAP


def test_members_climbing_out_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        tf.addfile(ti, io.BytesIO(b""))
    (tmp_path / "d").mkdir()
    with pytest.raises(InvalidArgument, match="outside"):
        _extract(buf.getvalue(), tmp_path / "d")
    assert not (tmp_path / "escape").exists()
