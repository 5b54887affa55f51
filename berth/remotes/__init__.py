"""Registry client (L2): host configuration and mirrors, authentication, resolve/fetch/push.

Only this package speaks HTTP to registries. See :mod:`berth.remotes.hosts`,
:mod:`berth.remotes.auth` and :mod:`berth.remotes.client`. Importing it has no
side effects.
"""

from .auth import (
    DOCKER_HUB_KEY,
    Authorizer,
    Challenge,
    Credentials,
    PermissionDenied,
    credential_key,
    default_docker_config_path,
    docker_credentials,
    load_credentials,
    parse_www_authenticate,
    remove_credentials,
    save_credentials,
)
from .client import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    RegistryClient,
    Resolver,
    as_descriptor,
)
from .hosts import PULL, PUSH, RESOLVE, Endpoint, endpoints_for, load_hosts

__all__ = [
    "DOCKER_HUB_KEY",
    "MAX_MANIFEST_SIZE",
    "PULL",
    "PUSH",
    "RESOLVE",
    "Authorizer",
    "Challenge",
    "Credentials",
    "Descriptor",
    "Endpoint",
    "PermissionDenied",
    "RegistryClient",
    "Resolver",
    "as_descriptor",
    "credential_key",
    "default_docker_config_path",
    "docker_credentials",
    "endpoints_for",
    "load_credentials",
    "load_hosts",
    "parse_www_authenticate",
    "remove_credentials",
    "save_credentials",
]
