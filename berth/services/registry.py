"""Registry settings the images service needs from berthd's configuration."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from berth.daemon.config import Config


class RegistryConfig:
    def __init__(self, cfg: Config) -> None:
        self.update(cfg)
        self.docker_config: str | None = None  # the default ~/.docker/config.json of the daemon's user

    def update(self, cfg: Config) -> None:
        """The settings from the configuration (again, at a reload): the next pull or push uses them."""
        self.hosts_dir = cfg.config_path
        self.mirrors = list(cfg.registry_mirrors)
        self.host_mirrors = {h: list(urls) for h, urls in cfg.mirrors.items()}  # containerd's CRI form
        self.insecure = list(cfg.insecure_registries)
