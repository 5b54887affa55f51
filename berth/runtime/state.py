"""Container state kept under the runtime's --root: <root>/<id>/{state.json,config.json,exec.fifo}.

The status is never trusted from disk alone: it is refreshed from the init process
(alive? the same process, by its start time?), the exec fifo and the freezer.
"""

from __future__ import annotations

import os

from berth import fastjson as json
from berth.errors import AlreadyExists, InvalidArgument, NotFound

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from typing import Any

    from berth.runtime.cgroups import Manager

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(cid: str) -> str:
    if not cid or not set(cid) <= _ID_CHARS or cid in (".", ".."):
        raise InvalidArgument(f"invalid container id {cid!r}")
    return cid


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


class State:
    def __init__(self, root: str, cid: str, data: dict[str, Any]) -> None:
        self.root = root
        self.id = cid
        self.data = data

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    @property
    def pid(self) -> int:
        return self.data.get("pid", 0)

    def alive(self) -> bool:
        pid = self.pid
        return pid > 0 and proc_start_time(pid) == self.data.get("start_time")

    def status(self) -> str:
        if not self.alive():
            return STOPPED
        if self.cgroup().frozen():  # before created, as runc: a created container can be paused
            return PAUSED
        if os.path.exists(self.fifo):
            return CREATED
        return RUNNING

    def cgroup(self) -> Manager:
        """The container's cgroup, in the hierarchies its create found (a state without them, an
        older create's: read from mountinfo again)."""
        from berth.runtime import cgroups
        hier, mode = self.data.get("cgroup_hier"), self.data.get("cgroup_mode")
        if hier and mode:
            try:
                return cgroups.Manager.of(self.data["cgroup_path"], mode, hier)
            except (TypeError, ValueError, InvalidArgument):
                pass
        return cgroups.Manager(self.data["cgroup_path"], mode=mode)

    def config(self) -> dict[str, Any]:
        with open(os.path.join(self.dir, "config.json")) as f:
            return json.load(f)

    def oci(self, status: str | None = None) -> dict[str, Any]:
        """The state as the OCI runtime spec defines it (plus runc's rootfs, created, owner)."""
        status = status or self.status()
        state = {
            "ociVersion": self.data.get("ociVersion", "1.2.0"),
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data["created"],
        }
        if self.data.get("annotations"):  # runc's order, and none when there are none
            state["annotations"] = self.data["annotations"]
        state["owner"] = ""
        return state

    def save(self) -> None:
        tmp = os.path.join(self.dir, ".state.json.tmp")
        # rename makes the update atomic; no fsync: the state lives on a tmpfs (/run) by default
        # and describes processes that do not survive a reboot anyway
        with open(tmp, "w") as f:
            f.write(json.dumps(self.data))
        os.rename(tmp, os.path.join(self.dir, "state.json"))


def load(root: str, cid: str) -> State:
    check_id(cid)
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise NotFound("container does not exist") from None  # runc's words
    except ValueError:
        raise NotFound(f"container {cid}: state is damaged") from None
    return State(root, cid, data)


def new_dir(root: str, cid: str) -> str:
    check_id(cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    d = os.path.join(root, cid)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise AlreadyExists("container with given ID already exists") from None  # runc's words
    return d


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, "state.json"))]
