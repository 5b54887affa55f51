"""Registry settings the images service needs from berthd's configuration, and the limits on
what all pulls and pushes transfer at once."""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Callable

    from berth.daemon.config import Config


class Slots:
    """At most ``limit`` holders at once, the others waiting their turn in order (dockerd's
    transfer manager: max-concurrent-downloads / -uploads for the whole daemon). The limit can
    change while it is used (a reload): holders beyond a lower one finish first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._cond = threading.Condition()
        self._queue: list[object] = []

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    def take(self, first: bool = False, waiting: Callable[[], None] | None = None) -> _Held:
        """Wait for a slot (first: ahead of those waiting, for what a pull's unpacker waits
        for; waiting: called when it has to wait); `with slots.take(...):` gives it back."""
        me = object()
        with self._cond:
            self._queue.insert(0, me) if first else self._queue.append(me)
            blocked = self._queue[0] is not me or self.held >= self.limit
        try:
            if blocked and waiting is not None:
                waiting()  # (not under the lock: it may write to a client)
            with self._cond:
                while self._queue[0] is not me or self.held >= self.limit:
                    self._cond.wait()
                self.held += 1
        finally:
            with self._cond:
                self._queue.remove(me)
                self._cond.notify_all()  # the next in line may fit too
        return _Held(self)

    def give_back(self) -> None:
        with self._cond:
            self.held -= 1
            self._cond.notify_all()


class _Held:
    """A slot taken: `with` gives it back."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.slots.give_back()


class RegistryConfig:
    def __init__(self, cfg: Config | None = None) -> None:
        from berth.daemon.config import Config
        cfg = cfg or Config()
        self.downloads = Slots(cfg.max_concurrent_downloads)
        self.uploads = Slots(cfg.max_concurrent_uploads)
        self.update(cfg)
        self.docker_config: str | None = None  # the default ~/.docker/config.json of the daemon's user

    def update(self, cfg: Config) -> None:
        """The settings from the configuration (again, at a reload): the next pull or push uses them."""
        self.hosts_dir = cfg.config_path
        self.mirrors = list(cfg.registry_mirrors)
        self.host_mirrors = {h: list(urls) for h, urls in cfg.mirrors.items()}  # containerd's CRI form
        self.insecure = list(cfg.insecure_registries)
        self.downloads.set_limit(cfg.max_concurrent_downloads)
        self.uploads.set_limit(cfg.max_concurrent_uploads)
        self.download_attempts = cfg.max_download_attempts
