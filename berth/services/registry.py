"""Registry settings the images service needs from berthd's configuration."""


class RegistryConfig:
    def __init__(self, cfg):
        self.hosts_dir = cfg.config_path
        self.mirrors = list(cfg.registry_mirrors)
        self.insecure = list(cfg.insecure_registries)
        self.docker_config = None  # the default ~/.docker/config.json of the daemon's user
