"""Deleting what a removal leaves, after the removal has answered.

A removal renames each directory it no longer needs (a container's state and root directories,
a removed snapshot's) into a trash directory on the same filesystem: one atomic rename before
the answer, so the path is free at once and nothing half-deleted is ever seen under it. A thread
deletes the trash's contents afterwards, as containerd's garbage collector deletes a removed
snapshot's files after the removal has answered. What a stopped or killed berthd left in a
trash directory is deleted after the next start (``sweep``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from collections import deque

log = logging.getLogger("berthd.trash")


class Trash:
    def __init__(self) -> None:
        self._todo: deque[str] = deque()
        self._cond = threading.Condition()
        self._busy = False  # a deletion under way
        self._thread: threading.Thread | None = None

    def discard(self, path: str, trash_dir: str) -> None:
        """Move path into trash_dir (made if missing) and have it deleted in the background;
        nothing to do if path does not exist. Where it cannot be moved, it is deleted here."""
        dead = os.path.join(trash_dir, f"{os.path.basename(path)}-{secrets.token_hex(4)}")
        try:
            os.makedirs(trash_dir, mode=0o700, exist_ok=True)
            os.rename(path, dead)
        except OSError:
            if os.path.lexists(path):  # not movable there (another filesystem?): deleted now
                from berth.snapshots.mount import unmount_under
                unmount_under(path)
                shutil.rmtree(path, ignore_errors=True)
            return
        self.put(dead)

    def put(self, path: str) -> None:
        """Delete path (a directory already out of every live path) in the background."""
        with self._cond:
            self._todo.append(path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="trash", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def sweep(self, trash_dir: str) -> None:
        """Delete what an earlier run left in trash_dir."""
        try:
            names = os.listdir(trash_dir)
        except OSError:
            return
        for n in names:
            self.put(os.path.join(trash_dir, n))

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is deleted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._todo and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._todo))
                path = self._todo.popleft()
                self._busy = True
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    from berth.snapshots.mount import unmount_under
                    unmount_under(path)  # nothing deleted through a mount left in it (a volume's files)
                    shutil.rmtree(path, onerror=_log_error)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("deleting %s: %s", path, e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _log_error(fn: object, path: str, exc: tuple) -> None:
    e = exc[1]
    if not isinstance(e, FileNotFoundError):
        log.warning("deleting %s: %s", path, e)
