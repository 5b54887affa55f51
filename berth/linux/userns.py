"""docker's daemon-wide user namespace remapping (daemon.json's userns-remap; berthd.toml's
userns_remap): the containers' ids are the subordinate ranges (/etc/subuid, /etc/subgid) of a
host user and group, container id 0 on the first range's start, as dockerd's idtools makes them.

resolve() reads the setting as dockerd does ("default" is the user dockremap, made with its
ranges when missing; "user", "user:group", numeric ids, in dockerd's words when wrong);
pin() makes a user namespace with those mappings and bind-mounts it on a file, for the
id-mapped mounts of the containers' image layers (berth.snapshots.mount)."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass

from berth.errors import InvalidArgument

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
DEFAULT_USER = "dockremap"
_RANGE = 65536  # what dockerd gives the user it makes


@dataclass(frozen=True)
class Remap:
    user: str
    group: str
    uids: tuple[tuple[int, int, int], ...]  # (containerID, hostID, size)
    gids: tuple[tuple[int, int, int], ...]

    @property
    def root(self) -> tuple[int, int]:
        """The host's uid and gid of the containers' root."""
        return _to_host(self.uids, 0), _to_host(self.gids, 0)

    def spec_maps(self) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
        """The OCI linux.uidMappings and gidMappings."""
        def conv(ms: tuple[tuple[int, int, int], ...]) -> list[dict[str, int]]:
            return [{"containerID": c, "hostID": h, "size": n} for c, h, n in ms]
        return conv(self.uids), conv(self.gids)

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        """A container's ids as the host sees them (dockerd's ToHost; unmapped: the overflow id's)."""
        return _to_host(self.uids, uid), _to_host(self.gids, gid)

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """The host's ids as the containers see them (dockerd's ToContainer; an id outside the
        ranges: the overflow id, as a container sees it)."""
        return _to_container(self.uids, uid), _to_container(self.gids, gid)

    def root_dir_name(self) -> str:
        """dockerd's name for its data root's remapped part (<uid>.<gid>)."""
        return "%d.%d" % self.root


def _to_host(maps: tuple[tuple[int, int, int], ...], i: int) -> int:
    for c, h, n in maps:
        if c <= i < c + n:
            return h + i - c
    return 65534


def _to_container(maps: tuple[tuple[int, int, int], ...], i: int) -> int:
    for c, h, n in maps:
        if h <= i < h + n:
            return c + i - h
    return 65534


def _ranges(path: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """The (start, length) ranges of a name (or its numeric id) in a subordinate id file, in
    the file's order."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0].startswith("#") or parts[0] not in names:
            continue
        try:
            start, length = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if length > 0 and start >= 0:
            out.append((start, length))
    return out


def _maps(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    out, cid = [], 0
    for start, length in ranges:
        out.append((cid, start, length))
        cid += length
    return tuple(out)


def _getent(db: str, key: str) -> str:
    return f'getent unable to find entry "{key}" in {db} database'


def resolve(value: str, create_default: bool = True) -> Remap:
    """The remapping of a userns-remap setting, in dockerd's words when it cannot be made
    (InvalidArgument). "default": the user and group dockremap, made (useradd) with a range of
    65536 ids when missing, as dockerd does."""
    if value == "default":
        user = group = DEFAULT_USER
        if create_default:
            _ensure_default_user()
    else:
        parts = value.split(":")
        if len(parts) > 2 or not parts[0]:
            raise InvalidArgument(f'Invalid user/group specification in --userns-remap: "{value}"')
        user, group = parts[0], (parts[1] if len(parts) == 2 else "")
    if user.isdigit():
        try:
            user = pwd.getpwuid(int(user)).pw_name
        except (KeyError, OverflowError):
            raise InvalidArgument(f"Uid {user} has no entry in /etc/passwd: {_getent('passwd', user)}") from None
    else:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise InvalidArgument(f'Error during uid lookup for "{user}": {_getent("passwd", user)}') from None
    if not group:
        try:
            grp.getgrnam(user)
        except KeyError:
            raise InvalidArgument(f'Error during gid lookup for "{user}": {_getent("group", user)}') from None
        group = user
    elif group.isdigit():
        try:
            group = grp.getgrgid(int(group)).gr_name
        except (KeyError, OverflowError):
            raise InvalidArgument(f"Gid {group} has no entry in /etc/group: {_getent('group', group)}") from None
    else:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise InvalidArgument(f'Error during groupname lookup for "{group}": {_getent("group", group)}') from None
    uids = _ranges(SUBUID, (user, str(pwd.getpwnam(user).pw_uid)))
    if not uids:
        raise InvalidArgument(f'Can\'t create ID mappings: no subuid ranges found for user "{user}"')
    gids = _ranges(SUBGID, (group, str(grp.getgrnam(group).gr_gid)))
    if not gids:
        raise InvalidArgument(f'Can\'t create ID mappings: no subgid ranges found for group "{group}"')
    return Remap(user, group, _maps(uids), _maps(gids))


def _ensure_default_user() -> None:
    """dockerd's AddNamespaceRangesUser: the system user dockremap (useradd -r -s /bin/false),
    and a range of 65536 subordinate uids and gids (usermod -v/-w) at the first free place from
    100000 when it has none."""
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        r = subprocess.run(["useradd", "-r", "-s", "/bin/false", DEFAULT_USER], capture_output=True, text=True)
        if r.returncode != 0:
            raise InvalidArgument(f"Couldn't create the user {DEFAULT_USER}: "
                                  f"{(r.stderr or r.stdout).strip() or 'useradd failed'}")
    uid = str(pwd.getpwnam(DEFAULT_USER).pw_uid)
    for path, flag in ((SUBUID, "-v"), (SUBGID, "-w")):
        if _ranges(path, (DEFAULT_USER, uid)):
            continue
        start = _free_start(path)
        r = subprocess.run(["usermod", flag, f"{start}-{start + _RANGE - 1}", DEFAULT_USER],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise InvalidArgument(f"Couldn't create subordinate ID ranges for {DEFAULT_USER}: "
                                  f"{(r.stderr or r.stdout).strip() or 'usermod failed'}")


def _free_start(path: str) -> int:
    """The first start from 100000 whose 65536 ids no range of the file holds (dockerd's
    findNextRangeStart)."""
    taken = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    taken.append((int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    start = 100000
    for s, n in sorted(taken):
        if s < start + _RANGE and start < s + n:
            start = s + n
    return start


def check_reachable(path: str, uid: int, gid: int) -> None:
    """That a user namespace's root (uid and gid on the host) can walk down to path (a
    container's directory, its rootfs's mount point below): every directory from / on must be
    searchable by it, as the runtime's init, inside the namespace, opens the rootfs by its path.
    A FailedPrecondition naming the first that is not (dockerd makes its remapped data root
    0710 for its root's group; berthd's root is 0711 by default)."""
    from berth.errors import FailedPrecondition
    parts = os.path.abspath(path).split("/")[1:]
    cur = "/"
    for name in [""] + parts[:-1]:
        cur = os.path.join(cur, name) if name else cur
        st = os.stat(cur)
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            raise FailedPrecondition(
                f"the container's root (uid {uid} on the host) cannot reach {path}: {cur} is not searchable "
                f"by it (mode {st.st_mode & 0o7777:04o}; make the directories down to berthd's root searchable, "
                "0711 or 0755)")


def pin(path: str, remap: Remap) -> str:
    """A user namespace with the remapping's mappings, bind-mounted on path (made anew)."""
    from berth.linux import netns
    if os.path.lexists(path):
        netns.remove(path)
    netns.pin_by_helper({"user": path}, *remap.spec_maps())
    return path
