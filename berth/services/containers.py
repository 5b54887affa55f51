"""The containers use-cases: create, start, attach, wait, stop, kill, pause, remove, list, inspect,
logs — callable by any front end (the Docker API, the CRI) without HTTP.

A container is a metadata record (its Docker create request, image and snapshot), a state in the
state machine (berth.services.state, persisted in the record) and, once started, a shim that
holds it: every verb on a running container goes through the shim's client (berth.shim.client),
and the shim's events (start result, exit) drive the state; the monitor (berth.services.monitor)
handles exits. Paths:
  <root>/containers/<id>/   hostname, hosts, resolv.conf, <id>-json.log, rootfs/ (mount point)
  <state>/containers/<id>/  bundle/config.json; shim.json, exit.json (the shim's records)
  <state>/s/<id[:16]>.sock  the shim's socket
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import logging
import os
import posixpath
import random
import re
import secrets
import shutil
import signal
import stat as stat_
import socket
import threading
import time

from berth.gotime import rfc3339nano as _now
from berth.gotime import rfc3339nano_fixed
from berth.services.filtermatch import filter_values as _values
from berth.metadata.records import Container
from berth.oci import reference as refmod
from berth.errors import (
    AlreadyExists,
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
    start_exit_code,
)
from berth.runtime import oci as oci_runtime
from berth.services import state as S
from berth.services.createspec import CreateSpec, mounts_of
from berth.services import volumes as volumes_mod
from berth.services.volumes import inspect_mounts
from berth.shim import protocol as proto
from berth.shim.client import EventChannel, ShimClient, ShimGone

log = logging.getLogger("berthd")

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Callable, Collection, Iterable, Iterator
    from typing import Any

    from berth.daemon.config import Config
    from berth.linux.userns import Remap
    from berth.metadata.store import MetadataStore
    from berth.metadata.tx import Tx
    from berth.services.events import EventBus
    from berth.services.images import ImageService, Resolved
    from berth.services.networks import NetworkService
    from berth.services.volumes import VolumeService
    from berth.shim.zygote import Zygote
    from berth.snapshots import Snapshotter

_ADJ = ["admiring", "brave", "calm", "clever", "dreamy", "eager", "focused", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "tender", "upbeat", "vibrant", "zealous"]
_NAMES = ["babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "lovelace", "meitner", "noether",
          "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "hamilton", "lamport", "knuth", "liskov"]


def _parse_time(s: str | None) -> float:
    if not s or s.startswith("0001"):
        return 0.0
    import calendar
    base, _, frac = s.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def find_container(meta: MetadataStore, ns: str, ref: str) -> Container:
    """A container by id, name or unique id prefix."""
    ref = ref.lstrip("/")
    try:
        return meta.get_container(ns, ref)
    except NotFound:
        pass
    try:
        return meta.get_container_by_name(ns, ref)
    except NotFound:
        pass
    if len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
        found = [c for c in meta.list_containers(ns) if c.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"multiple containers match the ID prefix {ref!r}")
    raise NotFound(f"No such container: {ref}")


class RemovalFailed(BerthError):
    """A wait for a container's removal: it exited (status_code) but could not be removed."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def _listed_endpoint(ep: dict[str, Any]) -> dict[str, Any]:
    """An endpoint as the container list shows it: dockerd's list keeps the addresses alone
    (its view's copy), no aliases, links, driver options or DNS names."""
    return dict(ep, Aliases=None, Links=None, DriverOpts=None, DNSNames=None)


class ContainerService:
    def __init__(self, cfg: Config, meta: MetadataStore, images: ImageService, snapshotter: Snapshotter,
                 snapshotter_name: str, zygote: Zygote, *, networks: NetworkService | None = None,
                 volumes: VolumeService | None = None, events: EventBus | None = None,
                 states: S.ContainerStates | None = None) -> None:
        from berth.services.events import EventBus
        from berth.services.monitor import Monitor
        self.cfg = cfg
        self.meta = meta
        self.images = images
        self.snapshotter = snapshotter
        self.snapshotter_name = snapshotter_name
        self.zygote = zygote
        self.runtime_root = os.path.join(cfg.state, "runtime")
        self.networks = networks  # the NetworkService (None: no networking, e.g. in unit tests)
        self.volumes = volumes  # the VolumeService: the container's mounts
        self.events = events if events is not None else EventBus()
        self.states = states if states is not None else S.ContainerStates(meta)
        self.monitor = Monitor(self)  # exits, restart policies, restore at daemon start
        # id -> how many attaches are announced (expect_attach) and not yet connected: its next
        # start holds the process until none is left to come
        self.attach_pending: dict[str, int] = {}
        self._handoff: dict[str, str] = {}  # id -> "ready" (created, holding its process for its attaches)
        from berth.services.trash import Trash
        self.trash = Trash()  # what the CRI's removals leave, deleted after they answer
        self._trash_dirs = (os.path.join(cfg.state, "removing"), os.path.join(cfg.root, "removing"))
        self.user_stops: set[str] = set()  # ids stopped by a user, the flag not yet in their record (mark_stopped_by_user)
        self.shutting_down = False  # set while shut_down stops the daemon's containers: no restart then
        # a stop's event comes after its exit's die, as dockerd's: the stop's answer need not wait
        # for the die (published after the exit's record wakes it), so the exit's handling
        # publishes the stop it finds pending (died())
        self._die_lock = threading.Lock()
        # id -> the stops waiting for a run's die: [(the run's generation, publish)]
        self._stop_after_die: dict[str, list[tuple[int, Callable[[], None]]]] = {}
        self._died: dict[str, int] = {}  # id -> the generation of the last run whose die is published
        self._detached: dict[str, int] = {}  # id -> an fd holding its unmounted rootfs until the removal (cleanup_exited)
        self._rootfs_release: dict[str, threading.Event] = {}  # id -> set once its exited run's rootfs is unmounted (late_rootfs)
        self._net_release: dict[str, threading.Event] = {}  # id -> set once its exited run's network is released (late_rootfs)
        self._exit_heard: dict[str, threading.Event] = {}  # id -> set once the run's exit its monitor heard is recorded
        self._prelaunched: dict[str, _Prelaunch] = {}  # id -> its process, being created ahead of its start
        self._lifecycle = _OneAtATime()  # one_at_a_time(): what changes how a container runs
        self._commit_lock = threading.Lock()
        self._commit_pauses: dict[str, list] = {}  # id -> [commits under way, whether they paused it]
        self._removals_lock = threading.Lock()
        self._removals: dict[str, int] = {}  # id -> removals of it under way
        self._shim_ends: dict[str, _ShimEnd] = {}  # id -> the events channel of its run that exited, until the shim closes it
        self._records_of: dict[str, tuple[int, builtins.list[Container]]] = {}  # namespace -> (store generation, records)
        # Set by a front end whose containers come in groups (the CRI: pods). shim_group(rec) ->
        # None: a shim of its own; "": a shim that hosts the group's other containers (a pod's
        # sandbox); an id: the container whose shim hosts this one (when it is there to).
        self.shim_group: Callable[[Container], str | None] | None = None
        # Set by a front end whose containers' OCI specs differ from docker's (the CRI: its
        # annotations, the pause's mounts and the pod's resolv.conf): spec_hook(rec, spec) changes
        # the built spec in place (and the container's files) before the shim starts.
        self.spec_hook: Callable[[Container, dict[str, Any]], None] | None = None
        # Set by a front end whose containers may have a user namespace of their own (the CRI: a
        # pod's): rootfs_idmap(rec) -> (the namespace's path, its root's host uid, gid) or None;
        # the rootfs's layers are then id-mapped through it (berth.snapshots.mount.mount_all)
        self.rootfs_idmap: Callable[[Container], tuple[str, int, int] | None] | None = None
        # a launch's last step before its shim, by container id: called once its bundle is made,
        # it returns when the shim may be forked or raises to stop the launch there (the CRI: a
        # pod's pause prepared while its network is attached, forked once it is)
        self.launch_gates: dict[str, Callable[[], None]] = {}
        # Set by a front end with containers whose exit is a fact only while the host is up (the
        # CRI: a pod's sandbox): exit_synced(rec) False -> the exit's record is committed to the
        # store's log without waiting for the disk (as a running state is; the next synced commit
        # syncs it too): it survives a crash of berthd, not one of the host.
        self.exit_synced: Callable[[Container], bool] | None = None
        # docker's userns-remap (berth.linux.userns.Remap, set by the daemon; None: off) and the
        # user namespace pinned with its mappings, through which remapped containers' layers are
        # id-mapped
        # the seccomp profile of docker containers that name none (berthd.toml's seccomp_profile,
        # read at the start as dockerd reads its seccomp-profile): a docker profile, "unconfined",
        # or None (berth's built-in one)
        self.seccomp_default: Any = seccomp_default(cfg)
        self.remap: Remap | None = None
        self.remap_pin = os.path.join(cfg.state, "userns-remap")

    # --- paths ---

    def remapped(self, rec: Container) -> Remap | None:
        """The daemon's remapping (berth.linux.userns.Remap) when it applies to the container (a
        docker one not on --userns=host), else None."""
        if self.remap is None or _is_cri(rec):
            return None
        if ((rec.spec_json() or {}).get("HostConfig") or {}).get("UsernsMode") == "host":
            return None
        return self.remap

    def idmap_of(self, rec: Container) -> tuple[str, int, int] | None:
        """How the container's layers are seen (see mount_fs): through a CRI pod's user namespace
        or the daemon's remapping; None: as they are."""
        if self.rootfs_idmap is not None:
            got = self.rootfs_idmap(rec)
            if got is not None:
                return got
        remap = self.remapped(rec)
        return (self.remap_pin, *remap.root) if remap is not None else None

    def cdir(self, cid: str) -> str:
        return os.path.join(self.cfg.root, "containers", cid)

    def sdir(self, cid: str) -> str:
        return os.path.join(self.cfg.state, "containers", cid)

    def shim_socket(self, cid: str) -> str:
        """Short on purpose: a unix socket path must fit in 108 bytes."""
        return os.path.join(self.cfg.state, "s", cid[:16] + ".sock")

    def host_socket(self, cid: str) -> str:
        """Where the shim of a group's host container (shim_group) takes the group's others."""
        return os.path.join(self.cfg.state, "s", cid[:16] + ".host")

    def rootfs(self, cid: str) -> str:
        return os.path.join(self.cdir(cid), "rootfs")

    def log_path(self, cid: str) -> str:
        return os.path.join(self.cdir(cid), f"{cid}-json.log")

    # --- lookup ---

    def get(self, ns: str, ref: str) -> Container:
        return find_container(self.meta, ns, ref)

    # --- state ---

    def state(self, rec: Container, paused: bool = True) -> dict:
        """docker's State object of a container, from the engine's state machine (cheap: no
        runtime is asked; ``paused`` is accepted for the callers that once had to say so)."""
        return self.states.get(rec.namespace, rec.id, rec).docker()

    def run_state(self, ns: str, cid: str) -> S.RunState:
        return self.states.get(ns, cid)

    def runtime_root_of(self, rec: Container) -> str:
        """Each OCI runtime keeps its own state root (their state files differ)."""
        return oci_runtime.root_of(self.cfg, rec.runtime)

    def runtime(self, rec: Container) -> oci_runtime.OCIRuntime:
        """The container's OCI runtime (berth.runtime.oci): chosen in one place."""
        return oci_runtime.for_config(self.cfg, rec.runtime)

    def shim(self, rec_or_id: Container | str) -> ShimClient:
        """The client of a container's shim (berth.shim.client): the only way to a running container."""
        cid = rec_or_id if isinstance(rec_or_id, str) else rec_or_id.id
        return ShimClient(self.shim_socket(cid))

    def _ext_update(self, ns: str, cid: str, **kv: Any) -> Container:
        """Change some keys of the record's extensions in one transaction (others' keys stay)."""
        def update(tx: Tx) -> Container:
            rec = tx.get_container(ns, cid)
            ext = dict(rec.extensions or {})
            for k, v in kv.items():
                if v is None:
                    ext.pop(k, None)
                else:
                    ext[k] = v
            return tx.update_container(ns, cid, extensions=ext)
        return self.meta.write(update)

    def pause(self, ns: str, ref: str) -> None:
        with self.one_at_a_time(self.get(ns, ref).id) as cid:  # two at once: the second's words as dockerd's
            self._pause(ns, self.get(ns, cid))

    def _pause(self, ns: str, rec: Container) -> None:
        st = self.states.get(ns, rec.id, rec)
        if st.status == S.PAUSED:
            raise FailedPrecondition(f"Container {rec.id} is already paused")
        if st.status != S.RUNNING:
            raise FailedPrecondition(f"Container {rec.id} is not running")
        self.shim(rec).pause()
        self.states.transition(ns, rec.id, S.PAUSED)
        self.events.container(ns, rec, "pause")

    def unpause(self, ns: str, ref: str) -> None:
        with self.one_at_a_time(self.get(ns, ref).id) as cid:
            self._unpause(ns, self.get(ns, cid))

    def _unpause(self, ns: str, rec: Container) -> None:
        st = self.states.get(ns, rec.id, rec)
        if st.status != S.PAUSED:
            raise FailedPrecondition(f"Container {rec.id} is not paused")
        self.shim(rec).resume()
        self.states.transition(ns, rec.id, S.RUNNING)
        self.events.container(ns, rec, "unpause")

    # --- create ---

    def create(self, ns: str, body: dict, name: str | None = None, cri: bool = False,
               extensions: dict[str, Any] | None = None, cid: str | None = None,
               ro_nonrecursive: bool = False) -> dict:
        """Create a container from docker's create body; returns docker's answer ({Id, Warnings}).
        cri: the Kubernetes CRI's rules for the run options; extensions: a front end's own
        metadata, kept in the record's extensions (berth.cri's, as containerd's CRI plugin does);
        cid: its id, chosen by the caller (a new random one: the CRI's sandbox, whose network is
        made meanwhile); ro_nonrecursive: read-only binds read-only at their top only (a client
        of API < 1.44)."""
        if not set(body) - {"HostConfig", "NetworkingConfig", "Platform"}:  # dockerd's words for {}
            raise InvalidArgument("Config cannot be empty in order to create a container")
        image_ref = body.get("Image")
        if not image_ref:
            raise InvalidArgument("no image given (Image)")
        from berth.services import runopts
        runopts.check_early(body, cri)  # StopSignal, CapAdd/CapDrop: before the image, as dockerd
        runtime = (body.get("HostConfig") or {}).get("Runtime") or self.cfg.default_runtime
        if runtime not in self.cfg.runtimes:  # (dockerd's platform checks, before the image too)
            raise InvalidArgument(f"Unknown runtime specified {runtime}")  # dockerd 20.10's words
        if not cri:  # (dockerd refuses a reference that is none; containerd's CRI looks it up)
            refmod.check_any(image_ref)
        r = self.images.resolve(ns, image_ref, platform=body.get("Platform"))
        if name:
            name = name.lstrip("/")
            import re
            if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):  # dockerd's: two characters at least
                raise InvalidArgument(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
            try:
                raise _name_in_use(name, self.meta.get_container_by_name(ns, name).id)
            except NotFound:
                pass
        else:
            name = None  # generated below, under the same transaction as the record
        hc = body.get("HostConfig") or {}
        runtime = hc.get("Runtime") or self.cfg.default_runtime
        from berth.services.ocispec import check_security
        body = dict(body, HostConfig=check_security(hc))  # --security-opt checked; a seccomp file read in
        from berth.services import runopts
        body, warnings = runopts.check(self, ns, body, r.config, cri=cri)  # run options (docker's messages)
        if self.networks is not None:
            from berth.services import container_net
            container_net.check(self.networks, ns, body)
        cid = cid or secrets.token_hex(32)
        mounts, new_volumes = self.volumes.resolve(ns, body, self.images.read_json(r.config_digest, 20 << 20,
                                                                                   "image config"), cri=cri,
                                                   ro_nonrecursive=ro_nonrecursive)
        try:
            top = self.images.unpack(r)
            key = f"container-{cid}"
            self.snapshotter.prepare(key, top)
        except BaseException:
            self.volumes.discard(ns, new_volumes)
            raise
        try:
            if not cri:
                remap = self.remap if (body.get("HostConfig") or {}).get("UsernsMode") != "host" else None
                try:
                    self._init_entries(key, remap.to_host if remap is not None else None)
                except OSError as e:
                    raise SystemError_(f"preparing the container's root: {e.strerror or e}") from None
            os.makedirs(self.cdir(cid), mode=0o710, exist_ok=True)
            spec = CreateSpec(dict(body), mounts=mounts, image_id=r.config_digest, created=_now()).to_json()
            labels = dict(body.get("Labels") or {})
            if not cri:  # dockerd's container has its image's labels too (the create's win): ps and filters see them
                labels = {**((r.config.get("config") or {}).get("Labels") or {}), **labels}
            with self.volumes.lock:  # no volume rm between the check and the record that uses them
                self.volumes.check_exist(ns, mounts)
                for attempt in range(20):
                    # a generated name may be taken by a concurrent create: take another, as docker
                    try_name = name or _random_name(self.meta, ns, digits=attempt >= 10)
                    try:
                        self.meta.create_container(ns, cid, name=try_name, image=r.config_digest,
                                                   snapshotter=self.snapshotter_name, snapshot_key=key,
                                                   runtime=runtime, spec=spec, labels=labels,
                                                   extensions=dict(extensions or {}, image_name=image_ref))
                        break
                    except AlreadyExists as e:
                        if name:  # taken by a create at the same time: the words of the check above
                            try:
                                taken = _name_in_use(name, self.meta.get_container_by_name(ns, name).id)
                            except NotFound:  # (and gone again since)
                                raise e from None
                            raise taken from None
                else:
                    raise AlreadyExists("could not find a free name for the container; name it with --name")
        except BaseException:
            try:
                self.snapshotter.remove(key)
            except BerthError:
                pass
            shutil.rmtree(self.cdir(cid), ignore_errors=True)
            self.volumes.discard(ns, new_volumes)
            raise
        try:
            self.events.container(ns, self.meta.get_container(ns, cid), "create")
        except NotFound:
            pass
        return {"Id": cid, "Warnings": warnings}

    # --- start ---

    def start(self, ns: str, ref: str, attach_pending: bool | None = None, restarting: bool = False) -> bool:
        """Start a created or exited container; False when it runs already (docker's 304).
        attach_pending: hold the process until an attach comes (None: whether one is waiting).
        restarting: the restart policy's start, which a stop or removal meanwhile has cancelled
        (False: the container is no longer restarting).
        One start or removal of a container at a time: a second start waits and finds it running,
        a removal waits for the start to be done (its network attached, its process running) and
        then undoes all of it; a start that waited for a removal finds no container."""
        with self._lifecycle.of(self.get(ns, ref).id) as cid:
            rec = self.get(ns, cid)
            st = self.states.get(ns, rec.id, rec)
            if st.running or restarting and st.status != S.RESTARTING:
                return False
            if self.remap is not None and not restarting and not _is_cri(rec):
                # what the remapping refuses, checked again as dockerd's ContainerStart does (its
                # setting may have come since the create): refused, the container as it was
                from berth.services import runopts
                runopts.check_remap(self, (rec.spec_json() or {}).get("HostConfig") or {})
            return self._start(ns, rec, st, attach_pending, restarting)

    def _start(self, ns: str, rec: Container, st: S.RunState, attach_pending: bool | None,
               restarting: bool) -> bool:
        if st.status in (S.REMOVING, S.DEAD):
            raise FailedPrecondition(f"container {rec.id} is marked for removal and cannot be started")
        if attach_pending is None:
            attach_pending = self.attach_pending.get(rec.id, 0) > 0
        launched = self._take_prelaunch(rec.id)  # its process, created ahead (prelaunch)
        if launched is not None and not attach_pending:
            channel, res, in_place = launched
            started_at = _now()
            res = self._release(rec, res, in_place)
            if not res.ok:
                # the held process is gone (killed meanwhile), or would not start: once its shim
                # has ended (its socket is the next one's too), the container is launched anew,
                # and that says what is wrong
                self.end_held(rec, channel)
                self._unlaunch(ns, rec, channel)
                launched = None
        if launched is None:
            channel, res, started_at, _ = self._launch(ns, rec, st, hold=False, attach_pending=attach_pending)
        elif attach_pending:
            channel, res, _ = launched
            started_at = _now()
        try:
            if res.ok and attach_pending:
                res = self._start_after_attach(rec, res)
            if not res.ok:
                err, code = start_failure(rec, res.error, res.kind)
                self.states.transition(ns, rec.id, S.CREATED if st.status == S.CREATED else S.EXITED,
                                       error=err, exit_code=code, generation=st.generation + 1)
                raise error_of_start(res.kind, err)
        except BaseException:
            self._unlaunch(ns, rec, channel)
            raise
        self.user_stops.discard(rec.id)
        self.states.transition(ns, rec.id, S.RUNNING, pid=res.pid, started_at=started_at, error="",
                               exit_code=0, generation=st.generation + 1, oom_killed=False, durable=False,
                               ext=None if restarting else {"stopped_by_user": False, "restart_count": 0})
        self.announce_run(ns, rec, start=True)
        self.events.container(ns, rec, "start")
        self.monitor.watch(ns, rec.id, channel)
        return True

    def announce_run(self, ns: str, rec: Container, start: bool) -> None:
        """dockerd's events around a run: at its start a network connect for each network it is
        on (none and host too) then a volume mount for each volume; after its die a network
        disconnect and a volume unmount for each. Not for the CRI's containers (whose network is
        their pod's, made by CNI)."""
        if _is_cri(rec):  # (before the spec's parse: on every CRI start and exit)
            return
        body = rec.spec_json() or {}
        hc = body.get("HostConfig") or {}
        if self.networks is not None:
            from berth.services import container_net
            mode = container_net.network_mode(hc)
            detached_none = mode == "none" and body.get(container_net.DETACHED)  # taken off none: its networks
            refs = [mode] if mode == "host" or (mode == "none" and not detached_none) else \
                [r for r, _ in container_net.requested_networks(body)]
            for ref in refs:
                try:
                    n = self.networks.get(ns, ref)
                except BerthError:
                    continue
                self.events.publish(ns, "network", "connect" if start else "disconnect", n.id, container=rec.id,
                                    name=n.name, type=n.driver)
        for m in CreateSpec.from_json(body).mounts:
            if m.get("Type") == "volume" and m.get("Name"):
                extra = {"destination": m.get("Destination") or "", "propagation": m.get("Propagation") or "",
                         "read/write": "true" if m.get("RW", True) else "false"} if start else {}
                self.events.publish(ns, "volume", "mount" if start else "unmount", m["Name"], container=rec.id,
                                    driver=m.get("Driver") or "local", **extra)

    def _launch(self, ns: str, rec: Container, st: S.RunState, hold: bool,
                attach_pending: bool) -> tuple[EventChannel, proto.StartResult, str, bool]:
        """The shim and the container's process: (events channel, start result, start time, in
        place). With hold, or an attach pending, the process is created and waits for its start
        (in place: the library's exec fifo handshake, _release)."""
        spec_body = rec.spec_json()
        sd = self.sdir(rec.id)
        os.makedirs(sd, mode=0o711, exist_ok=True)
        rt = self.runtime(rec)
        self.shim_ended(rec.id)  # the last run's shim has deleted its runtime state
        if rt.has_state(rec.id):
            try:
                rt.delete(rec.id, force=True)  # whatever a dead shim left
            except BerthError:
                pass
        for f in ("exit.json", "shim.json", "start-error", "shim-error"):
            try:
                os.unlink(os.path.join(sd, f))
            except FileNotFoundError:
                pass
        from berth.services import ocispec
        from berth.snapshots.mount import unmount
        rootfs = self.rootfs(rec.id)
        self.await_rootfs_release(rec.id)
        unmount(rootfs)
        self.mount_fs(rec, rootfs, self.idmap_of(rec))
        channel = None
        recorded = False  # the failure is in the container's state (docker's State.Error, ExitCode)
        try:
            cfg_doc = self.images.read_json(CreateSpec.from_json(spec_body).image_id, 20 << 20, "image config")
            hostname = spec_body.get("Hostname") or rec.id[:12]
            from berth.services import container_net
            netns, files_dir, forwarded = container_net.setup(self, ns, rec, spec_body, hostname, cfg_doc)
            extra = self.volumes.oci_mounts(ns, rec, rootfs, pins=os.path.join(self.cdir(rec.id), "mounts"))
            from berth.services import links, runopts
            spec_body = links.apply(self, ns, rec, spec_body, files_dir)  # --link: hosts entries, env
            oci = ocispec.build(rec.id, cfg_doc, spec_body, rootfs, files_dir, netns=netns, extra_mounts=extra,
                                no_new_privileges=self.cfg.no_new_privileges and not _is_cri(rec),
                                init=self.cfg.init and not _is_cri(rec), init_path=self.cfg.init_path,
                                seccomp=None if _is_cri(rec) else self.seccomp_default)
            runopts.apply(self, ns, rec, spec_body, oci, rootfs)  # --pid, --ipc, --uts, --device, --sysctl, ...
            runopts.apply_remap(self, rec, oci, files_dir)  # userns-remap: the container's own user namespace
            linux = oci.setdefault("linux", {})
            rp = volumes_mod.rootfs_propagation(extra, linux.get("rootfsPropagation"))
            if rp:
                linux["rootfsPropagation"] = rp
            if not _is_cri(rec):
                _check_working_dir(rootfs, (oci.get("process") or {}).get("cwd") or "/")
            if self.spec_hook is not None:
                self.spec_hook(rec, oci)
            bundle = os.path.join(sd, "bundle")
            os.makedirs(bundle, exist_ok=True)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                f.write(json.dumps(oci))  # dumps: the C encoder (json.dump iterates in Python)
            hc = spec_body.get("HostConfig") or {}
            lc = (hc.get("LogConfig") or {}).get("Config") or {}
            from berth.services.container_net import network_mode
            params = dict(self.runtime(rec).shim_params(network_mode(hc)), **{
                "id": rec.id, "state_dir": sd, "bundle": bundle,
                "log_path": os.devnull if no_log(hc) else self.log_path(rec.id),  # none: nothing kept
                "tty": bool(spec_body.get("Tty")), "open_stdin": bool(spec_body.get("OpenStdin")),
                **(_local_opts(lc) if (hc.get("LogConfig") or {}).get("Type") == "local" else
                   _json_file_opts(lc, spec_body, cfg_doc, rec)),
                "wait_attach": bool(attach_pending or hold), "hold": hold, "socket": self.shim_socket(rec.id),
                "systemd": self.cfg.cgroup_driver == "systemd",
                "oom_file": _oom_file(oci, rec.id),
                # the exit is acknowledged on the events channel once recorded (EventChannel.ack:
                # the monitor's wait for the shim's end): the shim's cleanup comes after the record
                "exit_ack": True,
                # the library's start without poststart hooks: the shim releases the init in place
                "start_in_place": rt.light_start and not (oci.get("hooks") or {}).get("poststart"),
            })
            if forwarded:  # ports published on [::]: the shim forwards them (berth.shim.portproxy)
                params["proxies"] = forwarded
            if rt.light_start:  # this library: the shim forks the init, which creates itself (most specs)
                from berth.runtime.container import direct_pidns
                params["create_direct"] = direct_pidns(oci, self.cfg.cgroup_driver == "systemd")
            if (hc.get("LogConfig") or {}).get("Type") == "cri" and lc.get("path"):  # the CRI's log file and format (kubelet's)
                params.update(log_path=lc["path"], log_format="cri")
            group = self.shim_group(rec) if self.shim_group is not None else None
            if group == "":
                params["host_socket"] = self.host_socket(rec.id)
            gate = self.launch_gates.pop(rec.id, None)
            if gate is not None:
                gate()
            # this run's start time is taken before the process can end (StartedAt <= FinishedAt)
            started_at = _now()
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                # a container of a group goes to the shim of its host when that one takes it
                # (one monitor process per pod, as containerd's shim), else to a shim of its own
                from berth.shim.client import spawn_hosted
                if not group or not spawn_hosted(self.host_socket(group), params, child.fileno()):
                    self.zygote.spawn(params, events_fd=child.fileno())
            except BaseException:
                parent.close()
                raise
            finally:
                child.close()
            channel = EventChannel(parent)
            res = channel.start_result()
            if not res.ok and not hold:
                err, code = start_failure(rec, res.error, res.kind)
                recorded = True
                self.states.transition(ns, rec.id, S.CREATED if st.status == S.CREATED else S.EXITED,
                                       error=err, exit_code=code, generation=st.generation + 1)
            if not res.ok:
                raise error_of_start(res.kind, start_failure(rec, res.error, res.kind)[0])
        except BaseException as e:
            self._unlaunch(ns, rec, channel)
            if not hold and not recorded and isinstance(e, BerthError):
                # as dockerd's: what failed the start before the process (a network that is not
                # there, a volume, a link) is the container's error, its exit code 128
                try:
                    self.states.transition(ns, rec.id, S.CREATED if st.status == S.CREATED else S.EXITED,
                                           error=e.message, exit_code=128, generation=st.generation + 1)
                except BerthError:
                    pass
            raise
        return channel, res, started_at, bool(params["start_in_place"])

    def _unlaunch(self, ns: str, rec: Container, channel: EventChannel | None) -> None:
        """What a launch that did not become a run held: its channel, rootfs mount, network, volumes."""
        if channel is not None:
            channel.close()
        from berth.snapshots.mount import unmount
        unmount(self.rootfs(rec.id))
        from berth.services import container_net
        container_net.teardown(self, ns, rec.id, rec)
        self.volumes.release(ns, rec)

    def _release(self, rec: Container, created: proto.StartResult, in_place: bool = False) -> proto.StartResult:
        """Start a process the shim holds created; its failure is the start's result. in_place:
        the library runtime's start, the exec fifo's handshake, done from here: no op for the
        shim, whose pages stay shared with the zygote (an op's first handling copies ~140 KB)."""
        try:
            if in_place:
                from berth.runtime import container as runtime_lib
                runtime_lib.release(self.runtime_root_of(rec), rec.id, created.pid)
            else:
                self.shim(rec).start()
        except BerthError as e:
            kind = "SystemError" if isinstance(e, SystemError_) else type(e).__name__
            return proto.StartResult(ok=False, kind=kind, error=e.message)
        return created

    # --- prelaunch: the process created ahead of its start ---

    def prelaunch(self, ns: str, cid: str, after: Callable[[], None] | None = None) -> None:
        """Create a created container's process now, in the background, held by its shim until
        start() releases it (the OCI runtime's create at the container's create, as CRI-O does:
        the CRI's StartContainer is then a release). A failure is forgotten: start() launches
        again and reports it. after: what to wait for first (the CRI: the pod's pause container)."""
        with self.states.cond:
            if cid in self._prelaunched:
                return
            pre = _Prelaunch()
            self._prelaunched[cid] = pre
        threading.Thread(target=self._prelaunch_run, args=(ns, cid, pre, after), name=f"prelaunch-{cid[:12]}",
                         daemon=True).start()

    def _prelaunch_run(self, ns: str, cid: str, pre: _Prelaunch, after: Callable[[], None] | None) -> None:
        try:
            if after is not None:
                after()
            rec = self.meta.get_container(ns, cid)
            st = self.states.get(ns, cid, rec)
            if st.status == S.CREATED:
                channel, res, _, in_place = self._launch(ns, rec, st, hold=True, attach_pending=False)
                pre.result = (channel, res, in_place)
        except Exception as e:  # noqa: BLE001 - start() launches again and reports it
            log.debug("container %s: prelaunch: %s", cid[:12], e)
        finally:
            pre.done.set()
            self.meta.release_thread()  # this thread ends

    def _take_prelaunch(self, cid: str) -> tuple[EventChannel, proto.StartResult, bool] | None:
        with self.states.cond:
            pre = self._prelaunched.pop(cid, None)
        if pre is None:
            return None
        pre.done.wait()
        return pre.result

    def _discard_prelaunch(self, ns: str, rec: Container) -> None:
        """A held process that will not start (a removal): kill it, wait for its shim's end."""
        launched = self._take_prelaunch(rec.id)
        if launched is None:
            return
        channel = launched[0]
        self.end_held(rec, channel)
        self._unlaunch(ns, rec, channel)

    def end_held(self, rec: Container, channel: EventChannel) -> None:
        """Kill a held process; return once its shim has said its last word (its socket and the
        runtime's state are gone by then)."""
        try:
            self.shim(rec).kill(signal.SIGKILL)
        except BerthError:
            pass  # it is ending already
        channel.next_exit()
        channel.ack()  # nothing to record: its cleanup now

    def _start_after_attach(self, rec: Container, created: proto.StartResult) -> proto.StartResult:
        """The container is created and holds its process for the attaches that are coming: once
        every one is connected (10 s at most), start it; its failure is the start's result. Every
        one: docker-py's attach_socket attaches each stream on a connection of its own
        (docker-compose 1.29's run: stdout, then stderr), and one connected after the release
        would miss what the process printed first."""
        cid = rec.id
        with self.states.cond:
            self._handoff[cid] = "ready"
            self.states.cond.notify_all()
        try:
            self.states.wait_until(lambda: not self.attach_pending.get(cid), 10)
            return self._release(rec, created)
        finally:
            with self.states.cond:
                self._handoff.pop(cid, None)

    def one_at_a_time(self, cid: str) -> contextlib.AbstractContextManager[str]:
        """The container's lock for what changes how it runs: its starts, its removal, its pause
        and unpause, its rename, its network connects and disconnects (re-entrant)."""
        return self._lifecycle.of(cid)

    # --- attach ---

    def check_attachable(self, ns: str, rec: Container, ref: str) -> None:
        """dockerd's refusals of an attach (409, its words, the container named as asked)."""
        st = self.states.get(ns, rec.id, rec)
        if st.status == S.PAUSED:
            raise FailedPrecondition(f"container {ref} is paused, unpause the container before attach")
        if st.status == S.RESTARTING:
            raise FailedPrecondition(f"container {ref} is restarting, wait until the container is running")

    def attached(self, ns: str, rec: Container) -> None:
        """The attach event (dockerd's, once an attach has replayed its logs: before its stream)."""
        self.events.container(ns, rec, "attach")

    def expect_attach(self, cid: str) -> None:
        """An attach is coming: the next start holds the process until it is connected (or given
        up), which attach_done says, once for each call."""
        with self.states.cond:
            self.attach_pending[cid] = self.attach_pending.get(cid, 0) + 1

    def attach_done(self, cid: str) -> None:
        """An attach that expect_attach announced is connected, or will not be."""
        with self.states.cond:
            n = self.attach_pending.pop(cid, 0) - 1
            if n > 0:
                self.attach_pending[cid] = n
            self.states.cond.notify_all()

    def attach(self, ns: str, ref: str, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               timeout: float = 12.0, decided: Callable[[], None] | None = None) -> tuple[socket.socket, dict] | None:
        """A socket carrying the container's stream (berth.shim.protocol.Attach) and the shim's
        reply ({"tty"}), or None when it did not run. Docker attaches before it starts: a container
        that is not running is waited for (its next start holds the process for this attach,
        which expect_attach announced; this ends the announcement, connected or not).

        decided() is called once it is known that the attach waits for a start (the client may
        send it now); a connected attach just returns. A run whose process has ended but whose
        exit is not recorded yet is not attached to (its shim has nothing more to send, and a
        client told the attach is there would still see it running): the attach waits for the
        exit's record, then, as after any exit, for the next start (docker-compose 1.29's `run`
        attaches after its start and starts again when inspect says the run ended)."""
        cid = ref
        try:
            rec = self.get(ns, ref)
            cid = rec.id
            st = self.states.get(ns, cid, rec)
            for _ in range(3):  # a run ended under the attach: the next one (a few at most)
                if not st.running:
                    gen0 = st.generation
                    if decided is not None:
                        decided()

                    def ready() -> bool:
                        s = self.states._cache.get(cid)
                        return self._handoff.get(cid) == "ready" or s is None or s.generation > gen0
                    self.states.wait_until(ready, timeout)
                    st = self.states.peek(cid)
                    if self._handoff.get(cid) != "ready" and (st is None or not st.running):
                        return None
                gen = st.generation
                try:
                    # dockerd: the client's end of input closes the container's stdin only with StdinOnce
                    return self.shim(rec).open(proto.Attach(stdin=stdin, stdout=stdout, stderr=stderr,
                                                            close_stdin=bool((rec.spec_json() or {}).get("StdinOnce"))))
                except FailedPrecondition:  # its process has ended (ShimGone too): its exit's record
                    def ended() -> bool:
                        s = self.states._cache.get(cid)
                        return s is None or s.generation != gen or not s.running
                    if not self.states.wait_until(ended, timeout):
                        return None
                    st = self.states.peek(cid)
                    if st is None:
                        return None
            return None
        finally:
            self.attach_done(cid)  # a start that holds its process for it goes on

    def resize(self, ns: str, ref: str, h: int, w: int) -> None:
        rec = self.get(ns, ref)
        if not self.states.get(ns, rec.id, rec).running:  # dockerd's 409 (a paused one runs)
            raise FailedPrecondition(f"Container {rec.id} is not running")
        try:
            self.shim(rec).resize(int(h), int(w))
        except ShimGone:
            pass

    # --- wait, stop, kill ---

    def wait_exit(self, ns: str, ref: str, condition: str = "not-running") -> int:
        """Block until the container is not running (next-exit: until it ran and exited; removed:
        until it is gone too); its exit code. A container removed meanwhile (--rm) still
        answers with its exit code. As dockerd's: not-running answers at once for a container
        that does not run (created, never started, too: its exit code, 0), and waits through a
        restarting one to its next exit (docker's CLI waits with next-exit or removed, before
        its start)."""
        return self.wait_result(ns, ref, condition)[0]

    def wait_result(self, ns: str, ref: str, condition: str = "not-running",
                    gone: Callable[[], bool] | None = None) -> tuple[int, str]:
        """wait_exit's (exit code, error): the error of a start that failed (docker's State.Error),
        which POST /containers/{id}/wait answers with (not-running). next-exit waits for an exit
        after a run: a start that fails does not answer it (dockerd's; its CLI would log the wait's
        error after the start's). gone(): the client left, the wait ends (looked at each second)."""
        rec = self.get(ns, ref)
        cid = rec.id
        st = self.states.get(ns, cid, rec)
        gen0 = st.generation
        left = gone or (lambda: False)
        if condition == "next-exit":  # the start, then its exit (not a failed start: no run)
            self.states.wait_for(cid, lambda s: left() or s is None or s.generation > gen0 and not s.running
                                 and not s.error)
        elif condition == "removed" and st.status == S.CREATED:  # the start (or its failure), then the exit
            self.states.wait_for(cid, lambda s: left() or s is None or s.generation > gen0 and not s.running)
        elif st.status == S.RESTARTING:  # dockerd counts it as running: its next exit, or a stop
            self.states.wait_for(cid, lambda s: left() or s is None or not s.running and (
                s.generation > gen0 or s.status != S.RESTARTING))
        else:
            self.states.wait_for(cid, lambda s: left() or s is None or not s.running)
        if condition == "removed":
            # --rm: the monitor removes it; a removal that failed leaves it dead, and says why
            self.states.wait_for(cid, lambda s: left() or s is None or s.status == S.DEAD)
            last = self.states.peek(cid)
            if last is not None and last.status == S.DEAD:
                raise RemovalFailed(last.exit_code, last.error or "the removal failed")
            return (last.exit_code, "") if last is not None else (0, "")
        last = self.states.peek(cid)
        if condition == "next-exit":  # (dockerd's: an exit, or the removal, without the start's error)
            return (last.exit_code, "") if last is not None else (0, "")
        return (last.exit_code, last.error or "") if last is not None else (0, "")

    def mark_stopped_by_user(self, ns: str, rec: Container, value: bool = True) -> None:
        if value and self.restart_policy(rec)[0] == "no":
            # no policy restarts it, whatever the flag says: the exit's record carries the flag
            # (monitor._record_exit), one write to the store less per stop
            self.user_stops.add(rec.id)
            return
        if (self.meta.get_container(ns, rec.id).extensions or {}).get("stopped_by_user") != value:
            # stop and kill work on a full disk (they may use the metadata reserve): stopping
            # what fills the disk is how an operator recovers it
            with self.meta.freeing():
                self._ext_update(ns, rec.id, stopped_by_user=value)

    def restart_policy(self, rec: Container) -> tuple[str, int]:
        hc = (rec.spec_json() or {}).get("HostConfig") or {}
        rp = hc.get("RestartPolicy") or {}
        return rp.get("Name") or "no", int(rp.get("MaximumRetryCount") or 0)

    def should_restart(self, rec: Container, exit_code: int, daemon_start: bool = False) -> bool:
        return self.monitor.should_restart(rec, exit_code, daemon_start)

    def kill(self, ns: str, ref: str, sig: str | int = "KILL", by_user: bool = True) -> None:
        """Send a signal to the container's init (through its shim). With SIGKILL, return once
        the container is recorded as exited, as docker does."""
        from berth.runtime.container import parse_signal
        number = str(sig).isascii() and str(sig).isdigit() and int(sig) > 64  # a number no signal has
        try:
            n = 0 if number else parse_signal(sig or "KILL")
        except InvalidArgument:
            raise InvalidArgument(f"Invalid signal: {sig}") from None  # dockerd's (signal.ParseSignal)
        try:
            rec = self.get(ns, ref)
        except NotFound as e:  # dockerd's words
            raise NotFound(f"Cannot kill container: {ref}: {e}") from None
        if number:  # dockerd's words, after the container is found (its answer is a 500)
            raise InvalidArgument(f"Cannot kill container: {ref}: The linux daemon does not support signal {int(sig)}")
        st = self.states.get(ns, rec.id, rec)
        if not st.running:
            raise FailedPrecondition(f"Cannot kill container: {ref}: Container {rec.id} is not running")
        if by_user:
            self.mark_stopped_by_user(ns, rec)
        shim = self.shim(rec)
        try:
            if st.status == S.PAUSED:  # a frozen process takes no signal until thawed
                shim.resume()
                self.states.transition(ns, rec.id, S.RUNNING)
            self._signal(rec, st, shim, n)
        except (ShimGone, FailedPrecondition):
            pass  # it is exiting: the exit event is on its way
        self.events.container(ns, rec, "kill", signal=n)
        if n == signal.SIGKILL:
            self.states.wait_for(rec.id, lambda s: s is None or not s.running, 30)

    def _signal(self, rec: Container, st: S.RunState, shim: ShimClient, sig: int) -> None:
        """sig to the container's init. Where the init is its shim's own child (the shim says so
        in its shim.json: berth's runtime library), sent from here through a pidfd of the
        process whose parent is that shim: what the shim's kill does (os.kill of its child),
        without a request to it (a connection it accepts, and the pages of a forked process
        that its first request touches: ~1 ms on a stop's way). Else, or in any doubt, the
        shim's kill (FailedPrecondition when the init has exited)."""
        if sig and st.pid > 0 and self._signal_child(rec.id, st.pid, sig):
            return
        shim.kill(sig)

    def _signal_child(self, cid: str, pid: int, sig: int) -> bool:
        try:
            with open(os.path.join(self.sdir(cid), "shim.json"), "rb") as f:
                sj = json.loads(f.read())
            if not (sj.get("own_child") and sj.get("status") == "running" and sj.get("pid") == pid):
                return False
            shim_pid = int(sj["shim_pid"])
            fd = os.pidfd_open(pid)  # this process, whatever its pid becomes
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False  # (gone already: the shim says so, and its exit is on its way)
        try:
            # a child of that shim (or, once it is reaped, whoever has its pid now): the init
            # while the shim has not reaped it, for only execs of the container are its other
            # children (and an exec's pid reused for an exited init would be one to end too)
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rpartition(b")")[2].split()[1])  # after the command's name
            if ppid != shim_pid:
                return False
            try:
                signal.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                raise FailedPrecondition(f"container {cid} is not running") from None
            return True
        except (OSError, ValueError, IndexError):
            return False
        finally:
            os.close(fd)

    # dockerd's init layer (daemon/initlayer): what every container it makes has
    _INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
    _INIT_FILES = (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console")

    def _init_entries(self, key: str, ids: Callable[[int, int], tuple[int, int]] | None = None) -> None:
        """What dockerd's init layer gives every container it makes (containerd's CRI does not):
        /.dockerenv, which programs look for to know they run in a container, empty
        /etc/{resolv.conf,hosts,hostname} and /dev/console (mount points), /dev/pts, /dev/shm,
        /proc and /sys where the image lacks them, and /etc/mtab -> /proc/mounts; written into
        the new snapshot's own directory, before its first mount. diff, commit and SizeRw leave
        them out (berth.images.diff.INIT_PATHS), export and cp see them, as dockerd's. Nothing
        is followed: below a path the image has as a link or a file, nothing is made. ids: the
        host's ids of a container's (a remapped container's entries are its root's, dockerd's)."""
        from berth.services.changes import _lstat, snapshot_dirs
        dirs = snapshot_dirs(self, key)
        if dirs is None:
            return
        upper, lowers, _ = dirs

        def image_has(rel: str) -> os.stat_result | None:  # the nearest layer's entry
            return next((st for st in (_lstat(os.path.join(d, rel)) for d in lowers) if st is not None), None)
        fds = {"": os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)}
        try:
            for rel in self._INIT_DIRS:
                parent, name = posixpath.split(rel)
                if parent not in fds:
                    continue  # not a directory here: nothing below it
                below = image_has(rel)
                if below is not None and not stat_.S_ISDIR(below.st_mode):
                    continue  # the image's is a link or a file: left as it is
                try:
                    os.mkdir(name, 0o755, dir_fd=fds[parent])
                    if below is not None or ids is not None:  # the image's directory, as a copy-up keeps it
                        owner = (below.st_uid, below.st_gid) if below is not None else (0, 0)
                        os.chown(name, *(ids(*owner) if ids is not None else owner), dir_fd=fds[parent],
                                 follow_symlinks=False)
                    os.chmod(name, stat_.S_IMODE(below.st_mode) if below is not None else 0o755, dir_fd=fds[parent])
                except FileExistsError:
                    pass
                try:
                    fds[rel] = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                       dir_fd=fds[parent])
                except OSError:
                    continue
            for rel in self._INIT_FILES:
                parent, name = posixpath.split(rel)
                if parent not in fds:
                    continue
                try:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o755,
                                 dir_fd=fds[parent])
                except FileExistsError:  # (a snapshot without a parent is the image's whole tree)
                    continue
                os.fchmod(fd, 0o755)
                if ids is not None:
                    os.fchown(fd, *ids(0, 0))
                os.close(fd)
            if "etc" in fds:
                try:
                    os.symlink("/proc/mounts", "mtab", dir_fd=fds["etc"])  # (the host's root's: dockerd's too)
                except FileExistsError:
                    pass
        finally:
            for fd in fds.values():
                os.close(fd)

    def shut_down(self, which: builtins.list[tuple[str, str]], limit: float | None = None) -> None:
        """dockerd's shutdown of its containers without live-restore (at its stop, and at its start
        for those still running): each (namespace, id) stopped at once with its stop signal and
        timeout, as a stop that is not a user's (the restart policies decide at the next start,
        none restarts them now); limit: the most seconds all of it may take."""
        if not which:
            return

        def stop(ns: str, cid: str) -> None:
            try:
                self.stop(ns, cid, by_user=False)
            except BerthError as e:
                log.warning("shutting container %s down: %s", cid[:12], e.message)
        self.shutting_down = True
        try:  # (daemon threads: past the limit, berthd goes on without them, as dockerd)
            threads = [threading.Thread(target=stop, args=(ns, cid), name=f"shut-down-{cid[:12]}", daemon=True)
                       for ns, cid in which]
            for t in threads:
                t.start()
            deadline = None if limit is None else time.monotonic() + limit
            for t in threads:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            late = [t for t in threads if t.is_alive()]
            if late:
                log.warning("%d containers still stopping after %s s: left to end", len(late), limit)
        finally:
            self.shutting_down = False

    def stop(self, ns: str, ref: str, timeout: int | None = None, signal_: str | None = None,
             signalled: Callable[[], None] | None = None, rec: Container | None = None, by_user: bool = True) -> bool:
        """Stop a running container: its stop signal, then SIGKILL after timeout s. signalled():
        called once the first signal is sent (what may go on while the process ends). rec: the
        container's record, when the caller has just read it. by_user: a user's stop (which the
        restart policies heed), not the daemon's own (shut_down)."""
        rec = rec if rec is not None and rec.namespace == ns and rec.id == ref else self.get(ns, ref)
        st = self.states.get(ns, rec.id, rec)
        if st.status == S.RESTARTING:  # between an exit and its restart: no restart then
            if by_user:
                self.mark_stopped_by_user(ns, rec)
            self.monitor.cancel_restart(ns, rec.id)
            self.events.container(ns, rec, "stop")
            return True
        if not st.running:
            self.await_net_release(rec.id)  # (ended just before: its network's release under way)
            return False
        if by_user:
            self.mark_stopped_by_user(ns, rec)
        spec = rec.spec_json()
        sig = signal_ or spec.get("StopSignal") or "TERM"
        t = 10 if timeout is None else int(timeout)
        if spec.get("StopTimeout") is not None and timeout is None:
            t = int(spec["StopTimeout"])
        from berth.runtime.container import parse_signal
        shim = self.shim(rec)
        try:
            if st.status == S.PAUSED:  # a frozen process cannot take the stop signal (nor SIGKILL) until thawed
                shim.resume()
                self.states.transition(ns, rec.id, S.RUNNING)
            self._signal(rec, st, shim, parse_signal(sig))
            if signalled is not None:
                signalled()
            self.events.container(ns, rec, "kill", signal=parse_signal(sig))
            if parse_signal(sig) != signal.SIGKILL and \
                    not self.states.wait_for(rec.id, lambda s: s is None or not s.running, None if t < 0 else t):
                self._signal(rec, st, shim, signal.SIGKILL)
                self.events.container(ns, rec, "kill", signal=int(signal.SIGKILL))
        except (ShimGone, FailedPrecondition):
            pass
        ended = self.states.wait_for(rec.id, lambda s: s is None or not s.running, 60)
        self.await_net_release(rec.id)  # a stop answers once the run's network is released, as before its record
        self._publish_stop(ns, rec, ended, st.generation)
        return True

    def _publish_stop(self, ns: str, rec: Container, ended: bool, generation: int) -> None:
        """The stop event: now if its run's die is out (or the run did not end), else once it is.
        Stops of one run at once each have theirs after its die, as dockerd's (berth told the
        first alone, and the others after the die of the container's next run)."""
        def publish() -> None:
            self.events.container(ns, rec, "stop")
        with self._die_lock:
            now = not ended or self._died.get(rec.id, -1) >= generation
            if not now:
                self._stop_after_die.setdefault(rec.id, []).append((generation, publish))
        if now:
            publish()

    def died(self, cid: str, generation: int) -> None:
        """The die of the container's run of that generation (and what dockerd tells after it) is
        published: the stops waiting for it go out now."""
        with self._die_lock:
            self._died[cid] = max(generation, self._died.get(cid, -1))
            waiting = self._stop_after_die.pop(cid, [])
            pending = [p for g, p in waiting if g <= generation]
            later = [(g, p) for g, p in waiting if g > generation]
            if later:
                self._stop_after_die[cid] = later
        for publish in pending:
            publish()

    def restart(self, ns: str, ref: str, timeout: int | None = None, signal_: str | None = None) -> None:
        rec = self.get(ns, ref)
        self.stop(ns, rec.id, timeout, signal_)
        self.wait_exit(ns, rec.id)
        self.start(ns, rec.id)
        self.events.container(ns, rec, "restart")

    # --- remove ---

    def remove(self, ns: str, ref: str, force: bool = False, volumes: bool = False,
               at_exit: bool = False, files_after: bool = False,
               exclusive: bool = False, destroy_later: list | None = None) -> None:
        """Remove a container (force: kill it first); its network is released before its record
        goes (`run --rm` returns at the removal: its veth gone, its address free). at_exit: the
        --rm removal right after the exit, whose state the store still has as
        running: "removing" is kept in memory only (a berthd killed meanwhile finds it running,
        its shim gone, and removes it again at restore). files_after: the container's files
        (its directories, its snapshot's) are moved out of their paths and deleted after the
        answer, as containerd's collector does (the CRI); else, as dockerd, before it: the space
        is free when the removal answers. exclusive: a removal of it under way is a conflict, in
        dockerd's words (a docker client's); else this one waits for it. destroy_later: the destroy
        event's publication is appended there, not made (the API makes it once its answer is out,
        as dockerd's answer comes no later than its event)."""
        with self.meta.freeing():  # a removal works on a full disk: it frees space
            self._remove(ns, ref, force, volumes, at_exit, files_after, exclusive, destroy_later)

    def _remove(self, ns: str, ref: str, force: bool, volumes: bool, at_exit: bool = False,
                files_after: bool = False, exclusive: bool = False, destroy_later: list | None = None) -> None:
        cid = self.get(ns, ref).id
        with self._removals_lock:
            if exclusive and cid in self._removals:  # dockerd's conflict (SetRemovalInProgress)
                raise FailedPrecondition(f"removal of container {cid} is already in progress")
            self._removals[cid] = self._removals.get(cid, 0) + 1
        try:
            with self._lifecycle.of(cid):  # not while a start of it is under way
                self._remove_locked(ns, self.get(ns, cid), force, volumes, at_exit, files_after, destroy_later)
        finally:
            with self._removals_lock:
                n = self._removals.pop(cid) - 1
                if n:
                    self._removals[cid] = n

    def _remove_locked(self, ns: str, rec: Container, force: bool, volumes: bool, at_exit: bool,
                       files_after: bool, destroy_later: list | None = None) -> None:
        self._discard_prelaunch(ns, rec)
        st = self.states.get(ns, rec.id, rec)
        if st.running or st.status == S.RESTARTING:
            if not force:  # dockerd's words: the state, and for a paused one its way out
                what = {S.RESTARTING: "restarting", S.PAUSED: "paused"}.get(st.status, "running")
                how = "Stop the container before attempting removal or force remove"
                if what == "paused":
                    how = "Unpause and then " + how[0].lower() + how[1:]
                raise FailedPrecondition(f"You cannot remove a {what} container {rec.id}. {how}")
            self.mark_stopped_by_user(ns, rec)
            if st.status == S.RESTARTING:
                self.monitor.cancel_restart(ns, rec.id)
            else:
                try:
                    self.kill(ns, rec.id, "KILL", by_user=True)
                except FailedPrecondition:
                    pass  # it exited meanwhile
                self.states.wait_for(rec.id, lambda s: s is None or not s.running)
        self.await_rootfs_release(rec.id)
        try:
            # not synced: the record's deletion right after syncs it with it; a host that crashes
            # before that finds the container as it was, its removal not answered. files_after (the
            # CRI's): not written at all. Nothing of the container's files goes before its record
            # (_remove_record), so a berthd killed in between finds it whole, as it was: stopped,
            # its removal not answered (the kubelet removes it again)
            self.states.transition(ns, rec.id, S.REMOVING, persist=not (at_exit or files_after), durable=False)
        except FailedPrecondition:
            cur = self.states.peek(rec.id)
            if cur is None or cur.status == S.REMOVING:  # removed (or being removed) by another: --rm
                self.states.wait_for(rec.id, lambda s: s is None or s.status != S.REMOVING, 60)
                return
            raise
        except NotFound:
            return
        try:
            from berth.snapshots.mount import unmount
            unmount(self.rootfs(rec.id))
            from berth.services import runopts
            runopts.release(self, rec.id)  # a shareable /dev/shm
            rt = self.runtime(rec)
            self.shim_ended(rec.id)  # its last run's shim has deleted its runtime state
            if rt.has_state(rec.id):
                try:
                    rt.delete(rec.id, force=True)
                except BerthError:
                    pass
            from berth.services import container_net
            container_net.teardown(self, ns, rec.id, rec)
            self._remove_record(ns, rec, volumes, files_after, destroy_later)
        except BaseException as e:
            if self.states.peek(rec.id) is not None and self.states.peek(rec.id).status == S.REMOVING:
                try:
                    self.states.transition(ns, rec.id, S.DEAD, error=f"removal failed: {e}")
                except BerthError:
                    pass
            raise

    def _remove_record(self, ns: str, rec: Container, volumes: bool, files_after: bool = False,
                       destroy_later: list | None = None) -> None:
        self.meta.delete_container(ns, rec.id)
        self.states.forget(rec.id)
        with self._die_lock:
            self._died.pop(rec.id, None)
            pending = self._stop_after_die.pop(rec.id, [])
        for _, publish in pending:  # (its die never told: the stops before the destroy)
            publish()
        try:
            self.close_detached(rec.id)  # the rootfs's teardown, after the answer (`run --rm`'s wait)
            self.volumes.container_removed(ns, rec, remove_anonymous=volumes)
            try:
                self.snapshotter.remove(rec.snapshot_key, reap=self.trash.put if files_after else None)
            except NotFound:
                pass
            self.user_stops.discard(rec.id)
            if files_after:  # out of their paths now, deleted after the answer (berth/services/trash.py)
                self.trash.discard(self.sdir(rec.id), self._trash_dirs[0])  # under the state dir
                self.trash.discard(self.cdir(rec.id), self._trash_dirs[1])  # under the root
            else:
                from berth.snapshots.mount import unmount_under
                for d in (self.sdir(rec.id), self.cdir(rec.id)):
                    unmount_under(d)  # (never deleting through a mount left in it)
                    shutil.rmtree(d, ignore_errors=True)
        finally:
            # the last word, as dockerd's: a client that ends at the destroy (the docker CLI's
            # client-side --rm of API < 1.25 cancels its removal's request then) finds it done
            if destroy_later is not None:
                destroy_later.append(lambda: self.events.container(ns, rec, "destroy"))
            else:
                self.events.container(ns, rec, "destroy")

    def cleanup_exited(self, ns: str, cid: str, network: bool = True, hold: bool = False,
                       rootfs: bool = True, rec: Container | None = None) -> None:
        """After an exit: unmount the rootfs (unless rootfs=False: late_rootfs() does it), release
        its network (unless network=False) and volumes.
        hold: the rootfs is unmounted at once but its teardown (an overlay syncs its upper
        filesystem: ms) waits for close_detached(), run after the exit is recorded (the
        monitor), once the record is gone (a removal), or before the next mount (a start). rec:
        the container's record as the caller has just read it."""
        if rec is None:
            try:
                rec = self.meta.get_container(ns, cid)
            except NotFound:
                return
        if rootfs:
            self.release_rootfs(cid, hold)
        if network:
            from berth.services import container_net
            container_net.teardown(self, ns, cid, rec)
        self.volumes.release(ns, rec)

    @contextlib.contextmanager
    def paused_for_commit(self, ns: str, cid: str) -> Iterator[None]:
        """docker commit's pause (its default): the container's processes frozen while its files
        are read, if it runs and is not paused already. Commits of it at once share one pause,
        resumed when the last of them is done (each paused and resumed it alone: the second
        failed, "container is already paused")."""
        with self._commit_lock:
            hold = self._commit_pauses.get(cid)
            if hold is None:
                st = self.states.get(ns, cid)
                hold = self._commit_pauses[cid] = [0, st.status == S.RUNNING]
                if hold[1]:
                    try:
                        self.pause(ns, cid)
                    except BaseException:
                        del self._commit_pauses[cid]
                        raise
            hold[0] += 1
        try:
            yield
        finally:
            with self._commit_lock:
                hold[0] -= 1
                if not hold[0]:
                    del self._commit_pauses[cid]
                    if hold[1]:
                        try:
                            self.unpause(ns, cid)
                        except (FailedPrecondition, NotFound):
                            pass  # resumed, stopped or removed meanwhile

    @contextlib.contextmanager
    def temporary_mount(self, rec: Container, purpose: str = ""):  # -> Iterator[str]
        """The container's filesystem (its snapshot) mounted, for the with block, on a directory
        of its own under the state dir's container-ops/ (named <id12>-<purpose>...), which goes
        after it: export, cp of a stopped container, the CRI's look at the image's passwd."""
        import tempfile

        from berth.snapshots.mount import unmount
        base = os.path.join(self.cfg.state, "container-ops")
        os.makedirs(base, mode=0o700, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f"{rec.id[:12]}-{purpose}", dir=base)
        try:
            # a remapped container's files as its processes leave them (their owners the host's ids)
            self.mount_fs(rec, tmp, (self.remap_pin, *self.remap.root) if self.remapped(rec) is not None else None)
            try:
                yield tmp
            finally:
                unmount(tmp)
        finally:
            try:
                os.rmdir(tmp)
            except OSError:
                pass

    def mount_fs(self, rec: Container, target: str, idmap: tuple[str, int, int] | None = None) -> None:
        """Mount the container's filesystem (its snapshot) at target, once the teardown of its
        last run's rootfs, if still to come, is done (cleanup_exited's hold); idmap: its layers
        seen through a user namespace (see rootfs_idmap)."""
        from berth.snapshots.mount import mount_all
        self.await_rootfs_release(rec.id)
        self.close_detached(rec.id)
        mount_all(self.snapshotter.mounts(rec.snapshot_key), target, idmap)

    def sweep_trash(self) -> None:
        """At daemon start: delete what a killed berthd's removals had left to delete."""
        for d in self._trash_dirs:
            self.trash.sweep(d)

    def shim_ending(self, cid: str, channel: EventChannel) -> _ShimEnd:
        """A run's exit was heard on channel: its shim deletes the run's runtime state next, then
        closes the channel (berth.shim.shim.Shim._finish)."""
        end = self._shim_ends[cid] = _ShimEnd(channel)
        return end

    def shim_ended(self, cid: str, end: _ShimEnd | None = None, timeout: float = 10.0) -> None:
        """Wait until the shim of the container's last run (or of the run of end) has deleted
        that run's runtime state (up to timeout s: a shim that hangs there is not waited for
        longer; what it left is deleted by whoever needs the place, as a dead shim's)."""
        end = end or self._shim_ends.get(cid)
        if end is not None:
            end.wait(timeout)
            if self._shim_ends.get(cid) is end:
                self._shim_ends.pop(cid, None)

    def release_rootfs(self, cid: str, hold: bool) -> None:
        """Unmount an exited run's rootfs (hold: its teardown waits for close_detached) and its
        shareable /dev/shm; nothing mounted is fine."""
        from berth.snapshots import mount
        if hold:
            fd = mount.detach(self.rootfs(cid))
            if fd is not None:
                self.close_detached(cid)
                self._detached[cid] = fd
        else:
            mount.unmount(self.rootfs(cid))
        from berth.services import runopts
        runopts.release(self, cid)  # a shareable /dev/shm

    @contextlib.contextmanager
    def late_rootfs(self, cid: str, network: Container | None = None):  # -> Iterator[None]
        """For the with block (an exit's record), the exited run's rootfs stays mounted; it is
        unmounted (held, as cleanup_exited's hold) at the block's end. An unmount waits for the
        kernel's RCU grace period (0.2-1 ms), which a stop need not wait for. Whoever mounts
        or removes the container's filesystem meanwhile (a start, a removal, a temporary
        mount) waits for it first (await_rootfs_release).
        network: the container's record when its network goes at the block's end too, before
        the rootfs (dockerd's order: the exit recorded, then the network released). A start or
        a removal waits for it as for the rootfs, a stop for the network (await_net_release), a
        network rm for its attachments (NetworkService.hold)."""
        done = self._rootfs_release[cid] = threading.Event()
        released = None
        if network is not None and self.networks is not None:
            released = self._net_release[cid] = threading.Event()
            self.networks.hold(cid)
        try:
            yield
        finally:
            try:
                if released is not None:
                    from berth.services import container_net
                    try:
                        container_net.teardown(self, network.namespace, cid, network)
                    finally:
                        self.networks.unhold(cid)  # (detach_all's, unless it did not run)
                        released.set()
                        if self._net_release.get(cid) is released:
                            del self._net_release[cid]
                self.release_rootfs(cid, hold=True)
            finally:
                done.set()
                if self._rootfs_release.get(cid) is done:
                    del self._rootfs_release[cid]

    def exit_heard(self, cid: str) -> threading.Event:
        """The monitor has heard the run's exit from its shim; exit_recorded() follows."""
        ev = self._exit_heard[cid] = threading.Event()
        return ev

    def exit_recorded(self, cid: str, heard: threading.Event | None = None) -> None:
        """The exit exit_heard() announced (heard: the event it gave, if not the latest) is in
        the state machine, or will not be."""
        ev = heard or self._exit_heard.get(cid)
        if ev is None:
            return
        if self._exit_heard.get(cid) is ev:
            del self._exit_heard[cid]
        ev.set()

    def await_exit_record(self, cid: str) -> None:
        """Once the exit heard from the container's shim, if any, is recorded: an inspect right
        after a run's end shows it ended, as dockerd's (whose exit handling holds the container
        while it records the exit and releases the run)."""
        ev = self._exit_heard.get(cid)
        if ev is not None:
            ev.wait(10)

    def await_net_release(self, cid: str) -> None:
        """Once the network of the container's exited run is released (late_rootfs)."""
        done = self._net_release.get(cid)
        if done is not None:
            done.wait(60)

    def await_rootfs_release(self, cid: str) -> None:
        """Once the rootfs of the container's exited run is unmounted (late_rootfs)."""
        done = self._rootfs_release.get(cid)
        if done is not None:
            done.wait(30)

    def close_detached(self, cid: str) -> None:
        """Let the kernel tear down the rootfs cleanup_exited(hold=True) unmounted."""
        fd = self._detached.pop(cid, None)
        if fd is not None:
            os.close(fd)

    # --- listing, inspecting ---

    def list(self, ns: str, all_: bool = False, filters: dict | None = None, limit: int = -1) -> list:
        filters = filters or {}
        for key in filters:  # refused whether or not there is a container to match (as dockerd)
            if key not in _FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
        _check_values(filters)
        # before= / since=: containers made before / after the one named (it must exist)
        after, before = _bounds(self, ns, filters)
        out = []
        from berth.services.health import annotate
        limited = limit is not None and limit > 0  # the last n made, whatever their state (ps -n, -l)
        for rec in self.meta.list_containers(ns):
            if not after < rec.created_at < before:
                continue
            st = annotate(self, rec, self.state(rec))  # + State.Health
            if not all_ and not limited and not st["Running"] and not filters.get("status"):
                continue
            item = self._summary(rec, st)
            if _match(filters, item, rec, st):
                out.append((rec.created_at, item))
        out.sort(key=lambda c: -c[0])  # newest first, to the nanosecond (Created is in seconds)
        return [item for _, item in (out[:limit] if limited else out)]

    def records(self, ns: str) -> builtins.list[Container]:
        """Every container record of a namespace as stored (no state, no health): for a front end
        that lists often and renders its own view (the CRI: a kubelet lists every second). The
        records are read again only after a write to the store: they are shared, read-only."""
        gen = self.meta.generation  # before the read: a write meanwhile makes the next call read again
        hit = self._records_of.get(ns)
        if hit is None or hit[0] != gen:
            hit = (gen, self.meta.list_containers(ns))
            self._records_of[ns] = hit
        return builtins.list(hit[1])

    def layer_usage(self, rec: Container) -> tuple[int, int]:
        """(bytes, inodes) on disk of the container's writable layer (its snapshot's own directory)."""
        return self.snapshotter.usage_inodes(rec.snapshot_key)

    def _summary(self, rec: Container, st: dict[str, Any]) -> dict[str, Any]:
        spec = rec.spec_json() or {}
        ns_ = self.network_settings(rec, st)
        cmd = _command(_args(spec, self.images, rec))
        return {
            "Id": rec.id, "Names": ["/" + rec.name], "Image": (rec.extensions or {}).get("image_name") or rec.image,
            "ImageID": rec.image, "Command": cmd, "Created": int(rec.created_at),
            "Ports": _port_list(ns_["Ports"]), "Labels": rec.labels or {}, "State": st["Status"],
            "Status": _status_text(st),
            "HostConfig": {"NetworkMode": (spec.get("HostConfig") or {}).get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": {k: _listed_endpoint(v) for k, v in ns_["Networks"].items()}},
            "Mounts": inspect_mounts(CreateSpec.from_json(spec).mounts),
        }

    def _graph_data(self, rec: Container) -> dict[str, str]:
        """GraphDriver.Data as dockerd's overlay2 shows it: the container's layers on the host
        (its snapshot's overlay options), its root while mounted."""
        data = {"MergedDir": self.rootfs(rec.id)}
        try:
            mounts = self.snapshotter.mounts(rec.snapshot_key)
        except BerthError:
            return data
        keys = {"lowerdir": "LowerDir", "upperdir": "UpperDir", "workdir": "WorkDir"}
        for m in mounts:
            if m.type == "bind":  # an image without layers: the snapshot's own directory, no lower one
                data["UpperDir"] = m.source
            for o in m.options:
                k, _, v = o.partition("=")
                if k in keys:
                    data[keys[k]] = v
        return dict(sorted(data.items()))

    def inspect(self, ns: str, ref: str) -> dict:
        rec = self.get(ns, ref)
        self.await_exit_record(rec.id)
        from berth.services.health import annotate
        st = annotate(self, rec, self.state(rec))  # + State.Health
        spec = rec.spec_json() or {}
        args = _args(spec, self.images, rec)
        cfg_doc = {}
        try:
            cfg_doc = self.images.read_json(rec.image, 20 << 20, "image config")
        except BerthError:
            pass
        ic = cfg_doc.get("config") or {}
        from berth.services.ocispec import config_env, merged_command
        env = config_env(spec.get("Env"), ic.get("Env"))  # as dockerd's: the create's, then the image's others
        entrypoint, cmd = merged_command(spec, ic)
        hc = dict(spec.get("HostConfig") or {})
        hc.setdefault("NetworkMode", "default")
        if hc.get("Links"):
            from berth.services.links import inspect_links
            hc["Links"] = inspect_links(rec, hc)
        hc.setdefault("Runtime", rec.runtime)
        if not (hc.get("LogConfig") or {}).get("Type"):  # docker-py run() reads LogConfig.Type
            hc["LogConfig"] = {"Type": "json-file", "Config": dict((hc.get("LogConfig") or {}).get("Config") or {})}
        from berth.services.createspec import inspect_host_config
        hc = inspect_host_config(hc)  # every field, as dockerd's: a create may have sent a few
        cdir = self.cdir(rec.id)
        return {
            "Id": rec.id, "Created": CreateSpec.from_json(spec).created, "Path": args[0] if args else "",
            "Args": args[1:], "State": st, "Image": rec.image,
            "ResolvConfPath": os.path.join(cdir, "resolv.conf"), "HostnamePath": os.path.join(cdir, "hostname"),
            "HostsPath": os.path.join(cdir, "hosts"), "LogPath": "" if no_log(hc) or (hc.get("LogConfig") or {}).get("Type") == "local" else self.log_path(rec.id),  # (local: dockerd shows none)
            "Name": "/" + rec.name,
            "RestartCount": int((rec.extensions or {}).get("restart_count", 0)), "Driver": self.snapshotter_name, "Platform": "linux", "MountLabel": "",
            "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "HostConfig": hc,
            "GraphDriver": {"Name": self.snapshotter_name, "Data": self._graph_data(rec)},
            "Mounts": inspect_mounts(CreateSpec.from_json(spec).mounts),
            "Config": self.container_config(rec, spec, ic, env, entrypoint, cmd),
            "NetworkSettings": self.network_settings(rec, st),
        }

    def container_config(self, rec: Container, spec: dict[str, Any] | None = None, ic: dict[str, Any] | None = None,
                         env: list[str] | None = None, entrypoint: Any = None, cmd: Any = None) -> dict[str, Any]:
        """A container's Config as dockerd keeps it (inspect's; a commit's image config starts
        from it): its create's merged with its image's. spec, ic, env, entrypoint and cmd: the
        create body, the image's config and what inspect derived from them, when it has them."""
        if spec is None:
            spec = rec.spec_json() or {}
            try:
                ic = self.images.read_json(rec.image, 20 << 20, "image config").get("config") or {}
            except BerthError:
                ic = {}
            from berth.services.ocispec import config_env, merged_command
            env = config_env(spec.get("Env"), ic.get("Env"))
            entrypoint, cmd = merged_command(spec, ic)
        ic = ic or {}
        return {
            "Hostname": spec.get("Hostname") or rec.id[:12], "Domainname": spec.get("Domainname") or "",
            "User": spec.get("User") or ic.get("User") or "", "AttachStdin": bool(spec.get("AttachStdin")),
            "AttachStdout": bool(spec.get("AttachStdout")), "AttachStderr": bool(spec.get("AttachStderr")),
            # the image's and the create's, left out when none (dockerd's merge, omitempty)
            **({"ExposedPorts": exposed} if (exposed := dict(ic.get("ExposedPorts") or {},
                                                             **(spec.get("ExposedPorts") or {}))) else {}),
            "Tty": bool(spec.get("Tty")), "OpenStdin": bool(spec.get("OpenStdin")),
            "StdinOnce": bool(spec.get("StdinOnce")), "Env": env,
            "Cmd": cmd or None,
            # dockerd's HealthConfig leaves out its fields at zero (omitempty)
            **({"Healthcheck": {k: v for k, v in spec["Healthcheck"].items() if v not in (None, 0, [])}}
               if spec.get("Healthcheck") else {}),
            "Image": (rec.extensions or {}).get("image_name") or rec.image,
            "Volumes": dict(ic.get("Volumes") or {}, **(spec.get("Volumes") or {})) or None, "WorkingDir": spec.get("WorkingDir") or ic.get("WorkingDir") or "",
            "Entrypoint": entrypoint,
            **({"MacAddress": spec["MacAddress"]} if spec.get("MacAddress") else {}),
            "OnBuild": None, "Labels": dict(ic.get("Labels") or {}, **(rec.labels or {})),
            # omitted when neither the create nor the image gives one, as dockerd's
            **({"StopSignal": spec.get("StopSignal") or ic.get("StopSignal")}
               if spec.get("StopSignal") or ic.get("StopSignal") else {}),
            **({"StopTimeout": spec["StopTimeout"]} if spec.get("StopTimeout") is not None else {}),
        }

    def network_settings(self, rec: Container, st: dict[str, Any]) -> dict[str, Any]:
        if self.networks is None:
            return {"Bridge": "", "SandboxID": "", "Ports": {}, "Networks": {}, "IPAddress": "", "Gateway": "",
                    "MacAddress": ""}
        from berth.services import container_net
        return container_net.settings(self, rec, st["Running"], not st.get("StartedAt", "").startswith("0001-"))

    def logs(self, ns: str, ref: str, stdout: bool = True, stderr: bool = True, follow: bool = False,
             tail: int | None = None, since: float = 0, until: float = 0,
             timestamps: bool = False, ticks: bool = False, details: bool = False) -> Iterator[tuple[str, bytes] | None]:
        """Yield (stream, bytes) from the json-file log; with follow, until the container exits.
        ticks: also None each time the follow has caught up and waits for more (a reader that
        batches sends what it holds; one whose client left stops). details: each line after its
        entry's attributes (k=v,...) and a space, as dockerd's --details."""
        rec = self.get(ns, ref)
        self.states.get(ns, rec.id, rec)
        path = self.log_path(rec.id)
        spec = rec.spec_json() or {}
        check_log_readable(spec)
        lc = (spec.get("HostConfig") or {}).get("LogConfig") or {}
        item_of = self._log_item if not details else functools.partial(self._log_item, details=True)
        if lc.get("Type") == "cri" and (lc.get("Config") or {}).get("path"):  # a CRI container's log
            path, item_of = lc["Config"]["path"], _cri_log_item
        want = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        json_file = item_of is not _cri_log_item  # (a CRI log is rotated by the kubelet, ReopenContainerLog)
        rotated = _rotated_logs(path) if json_file else []
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return
        try:
            lines = [line for old in rotated for line in _read_lines(old)] + f.readlines()
            if tail is not None and tail >= 0:
                lines = lines[-tail:] if tail else []
            for line in lines:
                item = item_of(line, want, since, until, timestamps)
                if item:
                    yield item
            if not follow:
                return
            buf = b""
            while True:
                chunk = f.readline()
                if chunk:
                    buf += chunk
                    if buf.endswith(b"\n"):
                        item = item_of(buf, want, since, until, timestamps)
                        buf = b""
                        if item:
                            yield item
                    continue
                if json_file and _replaced(f, path):  # rotated (max-size): on in the new file
                    try:
                        nf = open(path, "rb")
                    except FileNotFoundError:
                        pass
                    else:
                        f.close()
                        f = nf
                        continue
                st = self.states.peek(rec.id)
                if st is None or not st.running:  # exited (its shim drained the output first) or gone
                    rest = buf + f.read()
                    if json_file and _replaced(f, path):  # (rotated at the last moment)
                        rest += b"".join(_read_lines(path))
                    for line in rest.splitlines(keepends=True):
                        item = item_of(line, want, since, until, timestamps)
                        if item:
                            yield item
                    return
                # the log file has no more yet: look again in 50 ms, or at once when it exits
                if ticks:
                    yield None
                self.states.wait_for(rec.id, lambda s: s is None or not s.running, 0.05)
        finally:
            f.close()

    @staticmethod
    def _log_item(line: bytes, want: Collection[str], since: float, until: float, timestamps: bool,
                  details: bool = False) -> tuple[str, bytes] | None:
        """One json-file entry as logs yields it; details: after the entry's attributes and a space
        (dockerd's --details: "<time> <k=v,...> <line>", the attributes sorted by key, query-escaped)."""
        try:
            e = json.loads(line)
        except ValueError:
            return None
        if e.get("stream") not in want:
            return None
        if since or until:
            t = _parse_time(e.get("time"))
            if since and t < since or until and t > until:
                return None
        data = e.get("log", "").encode()
        if details:
            from urllib.parse import quote_plus
            attrs = e.get("attrs") or {}
            data = ",".join(f"{quote_plus(k)}={quote_plus(str(attrs[k]))}" for k in sorted(attrs)).encode() + b" " + data
        if timestamps:  # (nine digits, docker's RFC3339NanoFixed; the file has Go's RFC3339Nano)
            data = rfc3339nano_fixed(e.get("time", "")).encode() + b" " + data
        return e["stream"], data

    def image_users(self, ns: str) -> Callable[[Resolved], _Users]:
        """A callable: the ids of a namespace's containers of an image (.running: those running)."""
        def users(resolved: Resolved) -> _Users:
            return _Users(self, (c for c in self.meta.list_containers(ns) if c.image == resolved.config_digest))
        return users

    def running(self) -> list[tuple[str, str]]:
        """(namespace, id) of the running containers."""
        out = []
        for n in self.meta.list_namespaces():
            for rec in self.meta.list_containers(n.name):
                if self.states.get(n.name, rec.id, rec).running:
                    out.append((n.name, rec.id))
        return out


class _Prelaunch:
    """A prelaunch's outcome once done: (events channel, start result, in place), None when it failed."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: tuple[EventChannel, proto.StartResult, bool] | None = None  # (channel, result, in place)


def _name_in_use(name: str, other: str) -> AlreadyExists:
    return AlreadyExists(f'Conflict. The container name "/{name}" is already in use by container "{other}". You '
                         'have to remove (or rename) that container to be able to reuse that name.')


class _OneAtATime:
    """A lock per container id, made when first asked for and dropped when nobody holds or waits
    for it (re-entrant: a start's failure path may remove)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.RLock, list[int]]] = {}  # id -> (lock, [holders and waiters])

    @contextlib.contextmanager
    def of(self, cid: str) -> Iterator[str]:
        with self._guard:
            lock, users = self._locks.setdefault(cid, (threading.RLock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield cid
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[cid]


class _ShimEnd:
    """The events channel of a run whose exit was heard, until its shim closes it; whoever waits
    first reads it to its end, the others wait for that one."""

    def __init__(self, channel: EventChannel) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self.done = False

    def wait(self, timeout: float) -> None:
        with self.lock:
            if not self.done:
                self.done = True
                if not self.channel.wait_closed(timeout):
                    log.warning("a container's shim did not end within %.0f s of its exit", timeout)
                self.channel.close()


class _Users(list):
    """Container ids; .running, computed on demand: the running ones (rmi's conflicts)."""

    def __init__(self, svc: ContainerService, recs: Iterable[Container]) -> None:
        self._svc = svc
        self._recs = list(recs)
        super().__init__(r.id for r in self._recs)

    @property
    def running(self) -> list[str]:
        return [r.id for r in self._recs if self._svc.state(r)["Running"]]


def _cri_log_item(line: bytes, want: Collection[str], since: float, until: float, timestamps: bool) -> tuple[str, bytes] | None:
    """A line of the CRI log format (`<time> <stream> F|P <content>`) as _log_item's (stream, bytes)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1].decode(errors="replace") not in want:
        return None
    if since or until:
        ts = parts[0].decode(errors="replace")
        t = _parse_time(ts) if ts.endswith("Z") else 0.0
        if since and t < since or until and t > until:
            return None
    data = (parts[3] if len(parts) > 3 else b"").rstrip(b"\n")
    if parts[2] == b"F":
        data += b"\n"
    if timestamps:
        data = parts[0] + b" " + data
    return parts[1].decode(), data


def _args(spec: dict[str, Any], images: ImageService, rec: Container) -> list[str]:
    try:
        cfg = images.read_json(rec.image, 20 << 20, "image config").get("config") or {}
    except BerthError:
        cfg = {}
    return _argv(spec, cfg)


def _argv(spec: dict[str, Any], image_cfg: dict[str, Any]) -> list[str]:
    """The container's command line: its entrypoint and command, the image's where it names none."""
    from berth.services.ocispec import merged_command
    ep, cmd = merged_command(spec, image_cfg)
    return list(ep or []) + list(cmd or [])


def _random_name(meta: MetadataStore, ns: str, digits: bool = False) -> str:
    """docker's adjective_scientist names (with a number when they run short)."""
    existing = {c.name for c in meta.list_containers(ns)}
    for _ in range(100):
        name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
        if digits:
            name += str(random.randint(0, 99))
        if name not in existing:
            return name
    return f"{random.choice(_ADJ)}_{random.choice(_NAMES)}{secrets.randbelow(10**6)}"


def _port_list(ports: dict[str, Any] | None) -> list[dict[str, Any]]:
    """NetworkSettings.Ports -> the list of /containers/json."""
    out = []
    for key, binds in (ports or {}).items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in binds:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
    return out


def _command(args: list[str]) -> str:
    """The list's Command as dockerd's: the path, then the arguments, one with a space in single
    quotes (as it is: nothing escaped)."""
    if not args:
        return ""
    return " ".join([args[0]] + [f"'{a}'" if " " in a else a for a in args[1:]])


def _status_text(st: dict[str, Any]) -> str:
    from berth.units import human_duration
    if st["Running"]:
        up = human_duration(time.time() - _parse_time(st["StartedAt"]))
        from berth.services.health import status_suffix
        return f"Up {up}" + (" (Paused)" if st["Paused"] else status_suffix(st))
    if st["Status"] == "exited":
        return f"Exited ({st['ExitCode']}) {human_duration(time.time() - _parse_time(st['FinishedAt']))} ago"
    return "Created"


_FILTERS = ("status", "name", "id", "label", "ancestor", "volume", "health", "exited", "network", "publish", "is-task",
            "expose", "before", "since")  # what _match and _bounds know


def _bounds(svc: ContainerService, ns: str, filters: dict[str, Any]) -> tuple[float, float]:
    """(after, before): the creation times a listed container lies strictly between."""
    after, before = float("-inf"), float("inf")
    for key in ("since", "before"):
        for ref in _values(filters.get(key) or []):
            try:
                t = svc.get(ns, ref).created_at
            except NotFound:
                raise NotFound(f"no such container {ref}") from None  # dockerd's words here
            after, before = (max(after, t), before) if key == "since" else (after, min(before, t))
    return after, before


def _ports_match(ports: list[dict[str, Any]], key: str, values: list[str]) -> bool:
    """publish= / expose= <port>[/<proto>] or <from>-<to>[/<proto>], as dockerd 20.10 matches them
    (checked side by side): publish a host port a container port is published on, expose a
    container port that is exposed or published."""
    field = "PublicPort" if key == "publish" else "PrivatePort"
    for v in values:
        port, _, proto = v.partition("/")
        lo, _, hi = port.partition("-")
        try:
            lo_i, hi_i = int(lo), int(hi or lo)
        except ValueError:
            raise InvalidArgument(f"invalid filter '{key}={v}'") from None
        for p in ports:
            if p.get(field) and lo_i <= int(p[field]) <= hi_i and (p.get("Type") or "tcp") == (proto or "tcp"):
                return True
    return False


def _match(filters: dict[str, Any], item: dict[str, Any], rec: Container, st: dict[str, Any]) -> bool:
    for key, raw in filters.items():
        values = _values(raw)
        if key == "status":
            if st["Status"] not in values:
                return False
        elif key == "name":  # dockerd's: as a regular expression, on the name with and without its "/"
            from berth.services.filtermatch import matches
            if not any(matches(v, rec.name) or matches(v, "/" + rec.name) for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in (rec.labels or {}) or (eq and rec.labels[k] != val):
                    return False
        elif key == "ancestor":
            if not any(v in (item["Image"], rec.image, rec.image[7:19]) for v in values):
                return False
        elif key == "volume":
            mounts = mounts_of(rec)
            if not any(v in (m.get("Name"), m.get("Source"), m.get("Destination")) for v in values for m in mounts):
                return False
        elif key == "health":
            from berth.services.health import match_filter
            if not match_filter(st, values):
                return False
        elif key == "exited":
            if st["Status"] != "exited" or str(st["ExitCode"]) not in values:
                return False
        elif key == "network":  # a network's name or id, as dockerd
            nets = item["NetworkSettings"]["Networks"] or {}
            if not any(v == name or v and ((ep or {}).get("NetworkID") or "").startswith(v)
                       for v in values for name, ep in nets.items()):
                return False
        elif key in ("publish", "expose"):
            if not _ports_match(item["Ports"], key, values):
                return False
        elif key in ("before", "since"):
            pass  # (_bounds)
        elif key == "is-task":
            if values == ["true"]:
                return False  # no swarm task runs here
        else:
            raise InvalidArgument(f"Invalid filter '{key}'")
    return True


_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def _check_values(filters: dict[str, Any]) -> None:
    """The values dockerd 20.10 refuses before it lists anything, in its words."""
    for key, raw in filters.items():
        values = _values(raw)
        if key == "status":
            for v in values:
                if v not in _STATUSES:
                    raise InvalidArgument(f"Invalid filter 'status={v}'")
        elif key == "health":
            for v in values:
                if v not in ("starting", "healthy", "unhealthy", "none"):
                    raise InvalidArgument(f"Unrecognised filter value for health: {v}")
        elif key == "is-task":
            if values not in (["true"], ["false"]):
                raise InvalidArgument(f"Invalid filter 'is-task=[{' '.join(values)}]'")
        elif key == "exited":
            for v in values:
                body = v[1:] if v[:1] in "+-" else v
                if not (body.isascii() and body.isdigit()):
                    from berth.goquote import quote
                    raise InvalidArgument(f"strconv.Atoi: parsing {quote(v)}: invalid syntax")


def no_log(hc: dict[str, Any]) -> bool:
    """docker's none logging driver: the output is kept nowhere."""
    return ((hc or {}).get("LogConfig") or {}).get("Type") == "none"


def check_log_readable(spec: dict[str, Any]) -> None:
    """logs of a container whose driver keeps nothing: dockerd's refusal (before any header)."""
    if no_log(spec.get("HostConfig") or {}):
        raise FailedPrecondition("configured logging driver does not support reading")


def start_error(why: str | None, kind: str | None = None) -> str:
    """A start that failed in dockerd's words (its containerd shim's and runc's), which State.Error
    keeps too: `failed to create shim task: OCI runtime create failed: runc create failed: unable
    to start container process: <why>: unknown` (a configuration the runtime refused before it
    made anything: `runc create failed: <why>`)."""
    started = "" if kind == "ConfigInvalid" else "unable to start container process: "
    return (f"failed to create shim task: OCI runtime create failed: runc create failed: {started}"
            f"{why or 'the container failed to start'}: unknown")


# dockerd's (translateContainerdStartErr) after a start's error that says ENOTDIR
MOUNT_TYPE_HINT = (": Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified host "
                   "path exists and is the expected type")


def start_failure(rec: Container, why: str | None, kind: str | None = None) -> tuple[str, int]:
    """A failed start's error and exit code as State keeps them. As dockerd's: a command not found
    127, not invokable 126, else 128; a mount of a file on a directory or the reverse (ENOTDIR)
    gets dockerd's hint and 127 (a CRI container's error stays containerd's, without the hint)."""
    err = start_error(why, kind)
    if "not a directory" in err and not _is_cri(rec):
        return err + MOUNT_TYPE_HINT, 127
    return err, start_exit_code(err, 128)


def _check_working_dir(rootfs: str, cwd: str) -> None:
    """dockerd's check at the start (SetupWorkingDirectory): a working directory that the image
    has as something else than a directory. (The runtime makes a missing one, as dockerd does.)"""
    from berth.linux.paths import resolve_in
    try:
        host = resolve_in(rootfs, cwd)
    except (OSError, BerthError):
        return  # the runtime's chdir says why
    walked = rootfs
    for part in os.path.relpath(host, rootfs).split("/"):
        walked = os.path.join(walked, part)
        try:
            os.lstat(walked)
        except NotADirectoryError:  # a file on the way (dockerd's FollowSymlinkInScope)
            raise InvalidArgument(f"lstat {walked}: not a directory") from None
        except OSError:
            break
    if os.path.lexists(host) and not os.path.isdir(host):
        raise InvalidArgument(f"Cannot mkdir: {os.path.normpath(cwd)} is not a directory")


def seccomp_default(cfg: Config) -> Any:
    """The daemon's seccomp profile (berthd.toml's seccomp_profile): None (berth's built-in one),
    "unconfined", or the parsed docker profile of the file it names."""
    value = getattr(cfg, "seccomp_profile", "")
    if value in ("", "builtin", "default"):
        return None
    if value == "unconfined":
        return value
    from berth.services.ocispec import _seccomp_profile
    return _seccomp_profile(value)


def _is_cri(rec: Container) -> bool:
    """A container of the Kubernetes CRI (its record carries the CRI's metadata, as containerd's)."""
    return any(k.startswith("io.cri-containerd.") for k in rec.extensions or {})


def error_of_start(kind: str | None, message: str) -> BerthError:
    """The error of a failed start: a bad command (docker's 126/127) or a bind mount of the
    wrong type (dockerd's hint) is the caller's (400), the rest the engine's; kinds the shim sent
    are kept."""
    if start_exit_code(message, 0) or message.endswith(MOUNT_TYPE_HINT):
        return InvalidArgument(message)
    if kind in (None, "", "SystemError", "NotFound"):
        return SystemError_(message)
    return proto.error_of(kind, message)


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")
    except OSError:
        return False


def _oom_file(oci: dict[str, Any], cid: str) -> str:
    """Where the shim reads the OOM kills of the container's cgroup at its exit ("" for none)."""
    try:
        from berth.runtime import cgroups
        path = (oci.get("linux") or {}).get("cgroupsPath")
        return cgroups.oom_file(path, cid, bool(path and path.count(":") == 2))  # as the shim resolves it
    except Exception:  # noqa: BLE001 - no OOM report rather than no start
        return ""


def _rotated_logs(path: str) -> list[str]:
    """A json-file log's rotated files (max-file), the oldest first: <log>.N ... <log>.1."""
    out = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        out.append(f"{path}.{i}")
        i += 1
    return out[::-1]


def _read_lines(path: str) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            return f.readlines()
    except FileNotFoundError:  # rotated away meanwhile
        return []


def _replaced(f: Any, path: str) -> bool:
    """Whether the file at path is no longer the one f reads (a rotation renamed it)."""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def _json_file_opts(lc: dict[str, str], body: dict[str, Any], cfg_doc: dict[str, Any],
                    rec: Container) -> dict[str, Any]:
    """The json-file driver's options as its shim takes them, checked as dockerd's driver checks
    them at the start (its words): max-size, max-file, compress, and each entry's attributes
    from the labels, labels-regex, env and env-regex options and the tag (docker logs --details
    shows them)."""
    why = "failed to initialize logging driver: "
    size = _size(lc.get("max-size"))
    if lc.get("max-size") and size <= 0:
        raise InvalidArgument(why + "max-size must be a positive number")
    files = 1
    if lc.get("max-file") is not None:
        try:
            files = int(str(lc["max-file"]).strip(), 10)
        except ValueError:
            raise InvalidArgument(why + f'strconv.Atoi: parsing "{lc["max-file"]}": invalid syntax') from None
        if files < 1:
            raise InvalidArgument(why + "max-file cannot be less than 1")
    if lc.get("compress") is not None:
        from berth.services.ocispec import _FALSE, _TRUE  # Go's strconv.ParseBool
        if lc["compress"] not in _TRUE + _FALSE:
            raise InvalidArgument(why + f'strconv.ParseBool: parsing "{lc["compress"]}": invalid syntax')
        compress = lc["compress"] in _TRUE
        if compress and (files == 1 or not lc.get("max-size")):
            raise InvalidArgument(why + "compress cannot be true when max-file is less than 2 or max-size is not set")
    attrs = _log_attrs(lc, body, cfg_doc)
    if lc.get("tag"):
        attrs = dict(sorted(dict(attrs, tag=_log_tag(lc["tag"], body, cfg_doc, rec)).items()))
    return {"log_max_size": size, "log_max_file": files, "log_attrs": attrs}


def _log_tag(template: str, body: dict[str, Any], cfg_doc: dict[str, Any], rec: Container) -> str:
    """The tag log option, a Go template over dockerd's logger.Info (its fields and methods: ID,
    FullID, Name, ImageID, ImageFullID, ImageName, Command, Hostname, DaemonName, ...), in its
    words when it does not parse or run."""
    from berth.gotemplate import Template, TemplateError
    from berth.gotemplate.values import GoStruct
    args = _argv(body, cfg_doc.get("config") or {})
    image_id = CreateSpec.from_json(body).image_id or ""
    name = (rec.name or "").lstrip("/")
    info = GoStruct("*logger.Info", {
        "ID": rec.id[:12], "FullID": rec.id, "Name": name, "ImageID": image_id[:12], "ImageFullID": image_id,
        "ImageName": body.get("Image") or "", "Command": " ".join(args), "Hostname": socket.gethostname(),
        "DaemonName": "docker", "ContainerID": rec.id, "ContainerName": "/" + name,
        "ContainerImageID": image_id, "ContainerImageName": body.get("Image") or "",
        "ContainerEntrypoint": args[0] if args else "", "ContainerArgs": args[1:]})
    try:
        return Template("log-tag").parse(template).execute(info)
    except TemplateError as e:
        raise InvalidArgument(f"failed to initialize logging driver: {e}") from None


def _local_opts(lc: dict[str, str]) -> dict[str, Any]:
    """The local driver's options, checked as dockerd's checks them at the start (its words): its
    log is kept as json-file's is (the local driver's format is its own, read only through
    `docker logs`), with its defaults: 20 MB a file, 5 files."""
    why = "failed to initialize logging driver: "
    size = 20 * 1000 * 1000
    if lc.get("max-size") is not None:
        v = lc["max-size"]
        try:
            size = _size(v)
        except InvalidArgument:
            raise InvalidArgument(why + f"invalid value for max-size: {v}: invalid size: '{v}'") from None
    files = 5
    if lc.get("max-file") is not None:
        v = lc["max-file"]
        try:
            files = int(str(v).strip(), 10)
        except ValueError:
            raise InvalidArgument(why + f'invalid value for max-file: {v}: strconv.Atoi: parsing "{v}": invalid '
                                  'syntax') from None
    compress = True
    if lc.get("compress") is not None:
        from berth.services.ocispec import _FALSE, _TRUE  # Go's strconv.ParseBool
        if lc["compress"] not in _TRUE + _FALSE:
            raise InvalidArgument(why + f'error reading compress log option: strconv.ParseBool: parsing '
                                  f'"{lc["compress"]}": invalid syntax')
        compress = lc["compress"] in _TRUE
    if files < 0:
        raise InvalidArgument(why + "max file count cannot be less than 0")
    if compress and files <= 1:  # (0 too, in dockerd's words for 1)
        raise InvalidArgument(why + "compression cannot be enabled when max file count is 1")
    return {"log_max_size": size, "log_max_file": max(files, 1), "log_attrs": {}}


def _log_attrs(lc: dict[str, str], body: dict[str, Any], cfg_doc: dict[str, Any]) -> dict[str, str]:
    """dockerd's ExtraAttributes: the container labels named by `labels` (and, only then, those
    `labels-regex` matches), the Config.Env variables named by `env` or matched by `env-regex`."""
    out: dict[str, str] = {}
    labels = body.get("Labels") or {}
    if lc.get("labels"):
        for k in lc["labels"].split(","):
            if k in labels:
                out[k] = labels[k]
        if lc.get("labels-regex"):
            rx = _log_regex(lc["labels-regex"])
            out.update({k: v for k, v in labels.items() if rx.search(k)})
    if lc.get("env") or lc.get("env-regex"):
        from berth.services.ocispec import config_env
        env = dict(e.split("=", 1) for e in config_env(body.get("Env"), (cfg_doc.get("config") or {}).get("Env"))
                   if "=" in e)
        for k in (lc.get("env") or "").split(","):
            if k and k in env:
                out[k] = env[k]
        if lc.get("env-regex"):
            rx = _log_regex(lc["env-regex"])
            out.update({k: v for k, v in env.items() if rx.search(k)})
    return dict(sorted(out.items()))  # as Go writes a map: by key


def _log_regex(term: str) -> re.Pattern[str]:
    try:
        return re.compile(term)
    except re.error as e:
        raise InvalidArgument(f"failed to initialize logging driver: error parsing regexp: {e}") from None


def _size(s: str | int | None) -> int:
    """json-file's max-size as docker reads it (go-units FromHumanSize: decimal units, k=1000)."""
    if not s:
        return 0
    from berth.units import parse_size
    try:
        return parse_size(str(s), binary=False)
    except ValueError as e:
        raise InvalidArgument(f"failed to initialize logging driver: {e}") from None  # dockerd's words
