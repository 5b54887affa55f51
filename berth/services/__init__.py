"""Use-cases over the layers below (images, containers, execs, networks, volumes, events).

A front end (the Docker API in berth.api, a CRI server) receives a ``Services`` and calls its
members; it owns no container state and publishes no events of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Services:
    cfg: Any
    containers: Any  # berth.services.containers.ContainerService
    execs: Any  # berth.services.execs.ExecService
    images: Any  # berth.services.images.ImageService
    networks: Any  # berth.services.networks.NetworkService
    volumes: Any  # berth.services.volumes.VolumeService
    events: Any  # berth.services.events.EventBus
    system: Any  # berth.services.system.SystemService (info, namespaces)
    run: Callable  # async: blocking work in a worker thread
    run_wait: Callable  # async: work that lasts as long as a container, in a thread of its own
    waits: Any = None  # the executor behind run_wait (streams that call next() on a generator)
    pool: Any = None  # the executor behind run
