"""Use-cases over the layers below (images, containers, execs, networks, volumes, events).

A front end (the Docker API in berth.api, a CRI server) receives a ``Services`` and calls its
members; it owns no container state and publishes no events of its own."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:  # the types only: importing a Services imports none of them
    from berth.services.buildcache import BuildCache
    from berth.services.builder import Builder
    from berth.services.containers import ContainerService
    from berth.services.events import EventBus
    from berth.services.execs import ExecService
    from berth.services.images import ImageService
    from berth.services.networks import NetworkService
    from berth.services.system import SystemService
    from berth.services.volumes import VolumeService


@dataclass
class Services:
    cfg: Any  # berth.daemon.config.Config
    containers: ContainerService
    execs: ExecService
    images: ImageService
    networks: NetworkService
    volumes: VolumeService
    events: EventBus
    system: SystemService  # info, system df, namespaces
    run: Callable[..., Awaitable[Any]]  # async: blocking work in a worker thread
    run_wait: Callable[..., Awaitable[Any]]  # async: work that lasts as long as a container, in a thread of its own
    waits: Executor  # the executor behind run_wait (streams that call next() on a generator)
    pool: Executor  # the executor behind run
    builder: Builder  # docker build (the classic builder)
    build_cache: BuildCache  # its cache (build prune, system df)
