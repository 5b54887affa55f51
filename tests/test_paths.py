"""berth.linux.paths: paths inside a root resolved as if the root were "/", never leading out of it
(symlinks absolute and relative, "..", loops), with openat2 and with the walk a kernel without
openat2 gets."""

import errno
import os

import pytest

from berth.errors import InvalidArgument
from berth.linux import paths


@pytest.fixture(params=["openat2", "walk"])
def root(request, tmp_path, monkeypatch):
    """A root with hostile symlinks, and an "outside" next to it that nothing may reach."""
    if request.param == "walk":
        monkeypatch.setattr(paths, "_HAVE_OPENAT2", False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host\n")
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "secret").write_text("inside\n")
    os.symlink("/etc", r / "abs")                 # absolute: /etc of the root
    os.symlink("../../outside", r / "etc" / "up")  # climbs: stops at the root
    os.symlink(str(outside), r / "hostabs")        # the host's path, taken inside the root
    os.symlink("loop", r / "loop")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    yield fd, r
    os.close(fd)


def _read(fd, path):
    f = paths.open_in_root(fd, path, os.O_RDONLY)
    try:
        return os.read(f, 100).decode()
    finally:
        os.close(f)


def test_symlinks_and_dotdot_stay_inside(root):
    fd, r = root
    assert _read(fd, "/abs/secret") == "inside\n"
    assert _read(fd, "/../../../etc/secret") == "inside\n"
    with pytest.raises(FileNotFoundError):
        _read(fd, "/etc/up/secret")  # -> /outside/secret of the root: absent, not the host's
    with pytest.raises(FileNotFoundError):
        _read(fd, "/hostabs/secret")
    with pytest.raises(OSError) as e:
        _read(fd, "/loop")
    assert e.value.errno == errno.ELOOP
    assert paths.secure_join(fd, "/etc/up/secret") == "outside/secret"
    assert paths.secure_join(fd, "abs/../abs/./secret") == "etc/secret"


def test_ensure_in_root_creates_where_the_path_leads_inside(root, tmp_path):
    fd, r = root
    os.close(paths.ensure_in_root(fd, "/etc/up/made/here", directory=True))
    assert (r / "outside" / "made" / "here").is_dir()
    assert not (tmp_path / "outside" / "made").exists()
    os.close(paths.ensure_in_root(fd, "/hostabs/file", directory=False))
    assert (r / str(tmp_path / "outside").lstrip("/") / "file").is_file()
    assert sorted(os.listdir(tmp_path / "outside")) == ["secret"]


def test_resolve_in_host_paths(root, tmp_path):
    _fd, r = root
    assert paths.resolve_in(str(r), "/etc/up/secret") == str(r / "outside" / "secret")
    assert paths.resolve_in(str(r), "abs", follow_last=False) == str(r / "abs")
    assert paths.resolve_in(str(r), "abs") == str(r / "etc")
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        paths.resolve_in(str(r), "loop/x")


def test_read_in_root_and_the_users_of_a_hostile_rootfs(root, tmp_path):
    """A rootfs whose /etc/passwd and /etc/group are symlinks to the host's files: `-u name`,
    --group-add and a build's --chown read the rootfs's own (absent here), never the host's."""
    from berth.services import buildfs, ocispec
    _fd, r = root
    host_etc = tmp_path / "outside"
    (host_etc / "passwd").write_text("eve:x:4242:4343::/:/bin/sh\n")
    (host_etc / "group").write_text("evil:x:4444:eve\n")
    os.symlink(str(host_etc / "passwd"), r / "etc" / "passwd")
    os.symlink("../../../outside/group", r / "etc" / "group")
    with pytest.raises(FileNotFoundError):
        paths.read_in_root(str(r), "/etc/passwd")
    with pytest.raises(InvalidArgument, match="unable to find user eve"):
        ocispec.lookup_user(str(r), "eve")
    assert ocispec.lookup_user(str(r), "0") == (0, 0, [0])  # the primary group a supplementary one too
    assert ocispec.lookup_user(str(r), "4321") == (4321, 0, [0])  # no entry: group 0, as runc
    with pytest.raises(InvalidArgument, match="find group evil"):
        ocispec.lookup_group(str(r), "evil")
    assert buildfs._lookup(str(r), "/etc/passwd", "eve") == (None, None)
    # the rootfs's own files are read (through the symlink that stays inside)
    (r / "etc" / "passwd").unlink()
    (r / "etc" / "real").write_text("eve:x:1000:1001::/:/bin/sh\n")
    os.symlink("/etc/real", r / "etc" / "passwd")
    assert ocispec.lookup_user(str(r), "eve")[:2] == (1000, 1001)
    assert paths.read_in_root(str(r), "/abs/secret") == b"inside\n"
    os.mkfifo(r / "etc" / "fifo")
    with pytest.raises(OSError):
        paths.read_in_root(str(r), "/etc/fifo")  # never blocks on a FIFO
