"""RuntimeService: pod sandboxes, containers, exec, stats, runtime status, container events."""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from typing import TYPE_CHECKING

import grpc

from berth import __version__
from berth.cri import KIND_LABEL, NAMESPACE, convert
from berth.cri import api_pb2 as pb
from berth.cri import api_pb2_grpc
from berth.cri.errors import Abort, rpc, unimplemented
from berth.errors import BerthError, FailedPrecondition, InvalidArgument, NotFound
from berth.goquote import errno_text, marshal as go_marshal, quote as _q
from berth.services.ocispec import drop_docker_device_rules

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from google.protobuf.message import Message

    from berth.cri.streaming import StreamingServer
    from berth.metadata.records import Container
    from berth.services import Services

log = logging.getLogger("berthd")
NS = NAMESPACE
MAX_EXEC_TIMEOUT = 10 ** 9  # seconds (~32 years)
CNI_RESULT = "cni-result.json"  # a stopped pod's last CNI result, in its container directory


def _task_error(why: str) -> str:
    """A container's start that failed, as containerd's CRI says it (its StartContainer error and
    the status message): the docker side's shim and runc words after `failed to create containerd
    task: `."""
    return why if why.startswith("failed to create containerd task: ") else f"failed to create containerd task: {why}"


def _go_join(*parts: str) -> str:
    """Go's filepath.Join, as containerd joins a pod's log directory and a container's log path:
    the parts joined with "/", then cleaned (a part's leading "/" does not restart the path)."""
    import posixpath
    joined = "/".join(p for p in parts if p)
    if not joined:
        return ""
    clean = posixpath.normpath(joined)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def _ns_time(s: str | None) -> int:
    """An RFC 3339 time of the services (UTC, "YYYY-MM-DDTHH:MM:SS[.frac]Z") -> nanoseconds since
    the epoch (0 when unset). Its fields by position (a status is asked for often: strptime
    takes ten times as long)."""
    if not s or s.startswith("0001"):
        return 0
    import calendar
    base, _, frac = s.rstrip("Z").partition(".")
    try:
        if len(base) != 19 or base[4] != "-" or base[10] != "T":
            raise ValueError(base)
        fields = (int(base[0:4]), int(base[5:7]), int(base[8:10]), int(base[11:13]), int(base[14:16]), int(base[17:19]))
    except ValueError:
        fields = time.strptime(base, "%Y-%m-%dT%H:%M:%S")[:6]  # (an error of strptime's if not a time)
    return calendar.timegm(fields) * 10**9 + int((frac + "000000000")[:9] or 0)


def _user_labels(labels: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if k != KIND_LABEL}


class RuntimeServicer(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, services: Services, streaming: StreamingServer | None = None) -> None:
        from berth.services.podnet import PodNetwork
        self.d = services  # berth.services.Services
        self.svc = services.containers
        self.images = services.images
        self.net = PodNetwork(services.cfg)
        self.streaming = streaming
        self.closing = False
        self.svc.shim_group = self._shim_group  # one shim per pod
        self.svc.spec_hook = self._spec_hook  # the pods' OCI specs and files as containerd's
        self.svc.rootfs_idmap = self._rootfs_idmap  # a pod's own user namespace sees its images' owners
        self.svc.exit_synced = self._exit_synced
        self._cpu: dict[str, tuple[int, int]] = {}  # container id -> (time ns, cpu usage ns): the last sample, for usage_nano_cores
        # container id -> (monotonic time, (bytes, inodes) of its writable layer)
        self._usage: dict[str, tuple[float, tuple[int, int]]] = {}
        self._collected = -1e9  # when pod networks were last collected
        self._cri_of: dict[str, dict[str, Any]] = {}  # record id -> its CRI metadata (convert.metadata_of; read-only)
        # (container id, its start time) -> the user its first process got (ContainerStatus): a run's
        # bundle is written once, before its start
        self._user_of: dict[tuple[str, str], pb.ContainerUser | None] = {}
        # record id -> (the store's generation, its listing entry without the state): read-only
        self._listed: dict[str, tuple[int, pb.PodSandbox | pb.Container]] = {}
        self._names_of: dict[str, tuple[int, tuple[list[str], list[str]]]] = {}  # image id -> (generation, (tags, digests))
        self._sandbox_image: tuple[str, int] | None = None  # (ref, the store's image generation) when last found
        self._starting: set[str] = set()  # sandboxes whose RunPodSandbox has not finished: not ready yet
        # sandbox id -> what RunPodSandbox or StopPodSandbox left under way: its pause container's
        # start, or its network's teardown
        self._pending: dict[str, _Background] = {}
        self._busy: set[str] = set()  # their netns keys and ids: the network collector leaves them alone
        self._setup_lock = threading.Lock()
        self._starting: set[str] = set()  # the containers a StartContainer is starting (containerd's Starting)
        self._starting_lock = threading.Lock()

    def _shim_group(self, rec: Container) -> str | None:
        """A pod's containers are monitored by its sandbox's shim (one shim process per pod, as
        containerd's shim per pod): the sandbox's shim takes them on its host socket."""
        kind = (rec.labels or {}).get(KIND_LABEL)
        if kind == "sandbox":
            return ""
        if kind == "container":
            return self._cri(rec).get("sandbox") or None
        return None

    @staticmethod
    def _exit_synced(rec: Container) -> bool:
        """A pod sandbox's exit is recorded without a sync of the disk (StopPodSandbox -1 ms):
        after a crash of the host the pod is not ready whatever its record says (its pause is
        gone, which a restarted berthd records), and nothing reads a pause's exit code. A
        container's exit is synced before StopContainer answers (its code, the kubelet's last
        state), as containerd's."""
        return (rec.labels or {}).get(KIND_LABEL) != "sandbox"

    def _spec_hook(self, rec: Container, spec: dict[str, Any]) -> None:
        """A pod's OCI specs and files as containerd makes them: the CRI's annotations, the pause's
        mounts, the pod's resolv.conf and hosts (before its shim starts)."""
        kind = (rec.labels or {}).get(KIND_LABEL)
        ann = spec.setdefault("annotations", {})
        if kind in ("sandbox", "container"):
            drop_docker_device_rules(spec)  # containerd's CRI adds none of dockerd's
        if kind == "sandbox":
            config = self._sandbox_config(rec)
            _default_cgroup(spec, rec.id, config)
            convert.pause_spec(spec)
            if not config.hostname:  # its UTS namespace keeps the node's name, as containerd leaves it
                spec.pop("hostname", None)
            ann.update(convert.sandbox_annotations(rec.id, config))
            # the pod's resolv.conf (its containers share the pause's files) as containerd's
            from berth.services import container_net
            # (over the files the pause's network setup wrote a moment ago, in place: nothing has
            # them yet, and a file made anew costs an inode more than a rewrite)
            text = convert.resolv_conf(config.dns_config if config.HasField("dns_config") else None)
            _rewrite(os.path.join(self.svc.cdir(rec.id), "resolv.conf"),
                     container_net.host_resolv() if text is None else text)
            # and its /etc/hosts: the node's, copied (containerd's; a kubelet mounts its own over it)
            hosts = container_net.host_hosts()
            if hosts is not None:
                _rewrite(os.path.join(self.svc.cdir(rec.id), "hosts"), hosts)
            self._in_userns(rec, spec, files=True)
        elif kind == "container":
            sid = self._cri(rec).get("sandbox") or ""
            try:
                sbx_config = self._sandbox_config(self.svc.get(NS, sid))
            except NotFound:
                sbx_config = pb.PodSandboxConfig()
            _default_cgroup(spec, rec.id, sbx_config)
            # the root's propagation as containerd's WithMounts sets it for the pod's mounts
            props = {o for m in spec.get("mounts") or [] if m.get("type") == "bind" for o in m.get("options") or ()}
            linux = spec.setdefault("linux", {})
            if "rshared" in props:
                linux["rootfsPropagation"] = "rshared"
            elif "rslave" in props and linux.get("rootfsPropagation") not in ("rshared", "rslave"):
                linux["rootfsPropagation"] = "rslave"
            config = self._container_config(rec)
            ann.update(convert.container_annotations(sid, sbx_config, config, self._image_refs(rec)[0]))
            # the kubelet's id-mapped volumes (a pod with a user namespace): idmap mounts
            for m in config.mounts:
                maps = convert.mount_maps(m)
                dst = os.path.join("/", m.container_path)
                for om in spec.get("mounts") or [] if maps else ():
                    if om.get("destination") == dst:
                        om["options"] = list(om.get("options") or []) + ["idmap"]
                        om["uidMappings"], om["gidMappings"] = maps
            try:
                self._in_userns(self.svc.get(NS, sid), spec, rec=rec)
            except NotFound:
                pass

    def _userns_of(self, sbx: Container) -> tuple[str, int, int] | None:
        """A pod's own user namespace: (where it is pinned, the host's uid and gid of its root),
        or None (the node's)."""
        cri = self._cri(sbx)
        maps = cri.get("userns")
        if not maps or not cri.get("netns_key"):
            return None

        def host(ms: list[dict[str, int]]) -> int:
            for m in ms:
                if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                    return m["hostID"] - m["containerID"]
            return 65534  # (root unmapped: the overflow id)
        return self.net.userns_path(cri["netns_key"]), host(maps["uids"]), host(maps["gids"])

    def _in_userns(self, sbx: Container, spec: dict[str, Any], files: bool = False, rec: Container | None = None) -> None:
        """A spec of a pod with a user namespace joins it (pinned by the pod's network set-up,
        whose network namespace it owns); the container's directory (its rootfs's mount point is
        there, 0710) is then its root's group's; files: the pod's /etc files become its root's."""
        own = self._userns_of(sbx)
        if own is None:
            return
        path, uid, gid = own
        os.chown(self.svc.cdir((rec or sbx).id), -1, gid)
        from berth.linux.userns import check_reachable
        check_reachable(self.svc.rootfs((rec or sbx).id), uid, gid)
        linux = spec.setdefault("linux", {})
        linux["namespaces"] = [n for n in linux.get("namespaces") or [] if n.get("type") != "user"]
        linux["namespaces"].insert(0, {"type": "user", "path": path})
        linux.pop("uidMappings", None)
        linux.pop("gidMappings", None)
        if files:
            for name in ("hosts", "resolv.conf", "hostname"):
                try:
                    os.chown(os.path.join(self.svc.cdir(sbx.id), name), uid, gid)
                except FileNotFoundError:
                    pass

    def _rootfs_idmap(self, rec: Container) -> tuple[str, int, int] | None:
        """For a pod's sandbox or container in a user namespace of its own: (the namespace's pin,
        its root's host uid and gid), for the rootfs's id-mapped layers; else None."""
        kind = (rec.labels or {}).get(KIND_LABEL)
        if kind == "sandbox":
            return self._userns_of(rec)
        if kind == "container":
            try:
                return self._userns_of(self.svc.get(NS, self._cri(rec).get("sandbox") or ""))
            except NotFound:
                return None
        return None

    # --- lookups ---

    def _records(self, kind: str) -> list[tuple[Container, dict[str, Any]]]:
        """(record, state) of the CRI's sandboxes or containers (the CRI has no paused state: the
        runtime is not asked)."""
        if kind == "sandbox":
            self._settle()
        return [(rec, self.svc.state(rec, paused=False)) for rec in self.svc.records(NS)
                if (rec.labels or {}).get(KIND_LABEL) == kind]

    def _settle(self, sid: str | None = None, timeout: float | None = None) -> None:
        """Wait for what RunPodSandbox or StopPodSandbox left under way for a sandbox (every
        sandbox: None): the start of its pause container, the teardown of its network. Whoever
        looks at a sandbox sees it started (or failed), or its network gone."""
        with self._setup_lock:
            # not a pod whose RunPodSandbox is under way (its pause prepared while the network is
            # attached): until its answer it shows not ready, and a look must not wait for its ADD
            if sid is not None:
                pending = [] if sid in self._starting else [self._pending.get(sid)]
            else:
                pending = [b for s, b in self._pending.items() if s not in self._starting]
        for b in pending:
            if b is not None:
                b.wait(timeout)

    def drain(self, timeout: float) -> None:
        """berthd stops: what the RPCs left under way ends (each waited for up to timeout s)."""
        self._settle(None, timeout)

    def _find(self, ref: str, kind: str, settle: bool = True, words: str | None = None) -> Container:
        """The sandbox or container ref names; NotFound in containerd's words, which differ by RPC
        (words: the message before ": not found"; by default ContainerStatus's and
        PodSandboxStatus's, which do not name the sandbox)."""
        if not ref:
            raise InvalidArgument(f"{'pod sandbox' if kind == 'sandbox' else 'container'} id is empty")
        if words is None:
            words = f"an error occurred when try to find {'sandbox' if kind == 'sandbox' else 'container ' + _q(ref)}"
        try:
            rec = self.svc.get(NS, ref)
        except NotFound:
            raise NotFound(f"{words}: not found") from None
        except InvalidArgument as e:
            raise NotFound(f"{words}: {e}") from None
        if (rec.labels or {}).get(KIND_LABEL) != kind:
            raise NotFound(f"{words}: not found")
        if kind == "sandbox" and settle:
            self._settle(rec.id)
        return rec

    def _cri(self, rec: Container) -> dict[str, Any]:
        """The CRI's metadata of a record: written once, at create, so looked up once per record
        (listings and stats ask for it several times per record, every second)."""
        hit = self._cri_of.get(rec.id)
        if hit is None:
            hit = convert.metadata_of(rec)
            if len(self._cri_of) > 4096:
                self._cri_of.clear()
            self._cri_of[rec.id] = hit
        return hit

    def _sandbox_config(self, rec: Container) -> pb.PodSandboxConfig:
        return convert.decode(pb.PodSandboxConfig, self._cri(rec).get("config"))

    def _container_config(self, rec: Container) -> pb.ContainerConfig:
        return convert.decode(pb.ContainerConfig, self._cri(rec).get("config"))

    def _pod_containers(self, sid: str) -> list[tuple[Container, dict[str, Any]]]:
        return [(r, st) for r, st in self._records("container") if self._cri(r).get("sandbox") == sid]

    def _runtime(self, handler: str) -> str:
        if not handler:
            return self.d.cfg.default_runtime
        if handler not in self.d.cfg.runtimes:
            raise InvalidArgument(f"no runtime for {handler!r} is configured")
        return handler

    # --- version, status, config ---

    @rpc
    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name="berth", runtime_version=__version__,
                                  runtime_api_version="v1")

    @rpc
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        try:  # the node's network config, read once for the condition and the verbose info
            _, doc, text = self.net.conflist_source()
            loaded: tuple[dict[str, Any], str] | None = (doc, text)
        except BerthError:
            loaded = None
        ok = loaded is not None
        # containerd 1.6's words (a kubelet shows them in the node's conditions)
        conds = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                 pb.RuntimeCondition(type="NetworkReady", status=ok, reason="" if ok else "NetworkPluginNotReady",
                                     message="" if ok else "Network plugin returns error: cni plugin not initialized")]
        info = {}
        if request.verbose:
            cfg = self.d.cfg
            info["config"] = go_marshal({
                "sandboxImage": cfg.sandbox_image, "cgroupDriver": cfg.cgroup_driver,
                "systemdCgroup": cfg.cgroup_driver == "systemd", "defaultRuntimeName": cfg.default_runtime,
                "runtimes": {k: {"path": v.path, "args": v.args} for k, v in cfg.runtimes.items()},
                "cni": {"confDir": cfg.cri_cni_conf_dir, "binDirs": cfg.cri_cni_bin_dirs},
                "registry": {"configPath": cfg.config_path,  # mirrors as containerd shows them (none: null)
                             "mirrors": {h: {"endpoint": u} for h, u in cfg.mirrors.items()} or None},
                "rootDir": cfg.root, "stateDir": cfg.state,
                "streamServerAddress": cfg.stream_server_address, "streamServerPort": cfg.stream_server_port,
                "containerdNamespace": NS})
            info["cniconfig"] = go_marshal(convert.cni_config_as_containerd(
                cfg.cri_cni_conf_dir, list(cfg.cri_cni_bin_dirs), loaded))
            info["golang"] = go_marshal("none (berth is Python)")
            load = "OK" if ok else (f"cni config load failed: no network config found in {cfg.cri_cni_conf_dir}: "
                                    "cni plugin not initialized: failed to load cni config")
            info["lastCNILoadStatus"] = info["lastCNILoadStatus.default"] = go_marshal(load)
        def features(runtime: str) -> pb.RuntimeHandlerFeatures:  # (a kubelet asks for them only where true)
            vols = self.svc.volumes
            return pb.RuntimeHandlerFeatures(recursive_read_only_mounts=vols.rro_supported(runtime),
                                             user_namespaces=vols.idmap_supported(runtime))
        handlers = [pb.RuntimeHandler(name="", features=features(self.d.cfg.default_runtime))]
        handlers += [pb.RuntimeHandler(name=n, features=features(n)) for n in self.d.cfg.runtimes]
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conds), info=info, runtime_handlers=handlers,
                                 features=pb.RuntimeFeatures())

    @rpc
    def UpdateRuntimeConfig(self, request: pb.UpdateRuntimeConfigRequest,
                            context: grpc.ServicerContext) -> pb.UpdateRuntimeConfigResponse:
        convert.reject_nul(request)
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr:
            log.info("CRI: pod CIDR %s (the node's CNI configuration decides the pod addresses)", cidr)
        return pb.UpdateRuntimeConfigResponse()

    @rpc
    def RuntimeConfig(self, request: pb.RuntimeConfigRequest,
                      context: grpc.ServicerContext) -> pb.RuntimeConfigResponse:
        driver = pb.SYSTEMD if self.d.cfg.cgroup_driver == "systemd" else pb.CGROUPFS
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))

    # --- pod sandboxes ---

    def _ensure_image(self, ref: str) -> None:
        """The sandbox image is there, pulled if it was not: looked up again only after a commit
        that wrote an image record (its removal, a tag), not for every pod (~0.3 ms before the
        pod's network is made)."""
        gen = self.svc.meta.image_generation  # read first: a write meanwhile has the next call look again
        if self._sandbox_image == (ref, gen):
            return
        try:
            self.images.resolve(NS, ref)
        except NotFound:
            log.info("CRI: pulling the sandbox image %s", ref)
            self.images.pull(NS, ref)
            self.images.resolve(NS, ref)
        self._sandbox_image = (ref, gen)

    @rpc
    def RunPodSandbox(self, request: pb.RunPodSandboxRequest,
                      context: grpc.ServicerContext) -> pb.RunPodSandboxResponse:
        convert.reject_nul(request)
        config = request.config
        md = config.metadata
        name = convert.sandbox_name(md)
        runtime = self._runtime(request.runtime_handler)
        image = self.d.cfg.sandbox_image
        self._ensure_image(image)
        linux = config.linux if config.HasField("linux") else pb.LinuxPodSandboxConfig()
        sc = linux.security_context if linux.HasField("security_context") else None
        nso = convert.ns_options(sc)
        host_net = nso.network == convert.NODE
        userns = convert.userns_maps(nso)
        if host_net and config.hostname:  # the node's UTS namespace: runc's words (containerd's error), nothing made
            raise Abort(grpc.StatusCode.UNKNOWN, "failed to create sandbox: unable to set hostname without a "
                                                 "private UTS namespace")
        _check_sysctls(linux, host_net)
        ports = [] if host_net else self.net.check_ports(
            [{"hostPort": p.host_port, "containerPort": p.container_port,
              "protocol": convert.protocol_name(p.protocol), "hostIP": p.host_ip or ""}
             for p in config.port_mappings if p.host_port > 0])  # as containerd's: no host port, no mapping
        try:
            raise _name_reserved("sandbox", name, self.svc.meta.get_container_by_name(NS, name).id)
        except NotFound:
            pass
        with self._setup_lock:  # the network collector leaves the namespace alone (taken under its lock)
            # the spare, if made (not for a pod with a user namespace: its network namespace is that one's)
            key, made = (secrets.token_hex(16), False) if host_net or userns else self.net.take_netns()
            self._busy.add(key)
        try:
            try:
                body, meta = convert.sandbox_body(config, image, request.runtime_handler, self.net.netns_path(key),
                                                  runtime)
            except convert.Refused as e:
                raise Abort(grpc.StatusCode.UNKNOWN, str(e)) from None
        except BaseException:
            if made:
                self.net.put_back(key)  # a refused pod leaves the next one its head start
            self._busy.discard(key)
            raise
        meta["netns_key"] = "" if host_net else key
        if userns is not None:
            meta["userns"] = {"uids": userns[0], "gids": userns[1]}
        # the pod's network namespace and its CNI ADD (plugins exec'd one after the other) are made
        # while the sandbox's record and snapshot are. RunPodSandbox answers once the network is
        # attached (a CNI failure is its error); the pause container then starts in the background,
        # and whoever looks at the sandbox next waits for it (_settle): it sees it running, or
        # failed. Its shim is forked after the ADD, not during it: on a node of few cores the
        # plugins (Go programs, one after the other) are the answer's critical path, and the
        # pause's start, a few processes of its own, would slow them; it overlaps the client's
        # next steps instead. What berthd does for it before the shim (the rootfs's mount, the
        # spec and bundle) is done during the ADD, when the namespace is there already (the
        # spare): the plugins leave a core idle then.
        sid = secrets.token_hex(32)
        with self._setup_lock:
            self._busy.add(sid)  # the network collector leaves it alone
            self._starting.add(sid)
        attach = None if host_net else _Background(self._attach, key, made, sid, md, ports, userns)
        try:
            self._create_record("sandbox", name, body, convert.SANDBOX_EXT, meta, cid=sid)
            if attach is not None and made:
                gate = _Gate()
                self.svc.launch_gates[sid] = gate.wait
                with self._setup_lock:
                    launch = self._pending[sid] = _Background(self._launch_pause, sid, then=self._after_pause)
                try:
                    attach.result()
                except BaseException:
                    gate.fail()
                    raise
                finally:
                    gate.open()
            else:
                if attach is not None:
                    attach.result()
                with self._setup_lock:
                    launch = self._pending[sid] = _Background(self._launch_pause, sid, then=self._after_pause)
            if linux.sysctls:
                # the pause's init writes the pod's sysctls, and what the kernel refuses there (a
                # key the pod's namespaces lack, a value) is containerd's RunPodSandbox error: with
                # sysctls the answer waits for the pause's start (a pod without any does not)
                try:
                    launch.result()
                except BerthError as e:
                    raise Abort(grpc.StatusCode.UNKNOWN, _task_error(e.message)) from None
        except BaseException:
            if attach is not None:
                attach.wait()  # a DEL must not race its ADD
            try:
                self.net.teardown("" if host_net else key, sid)
            except BerthError as e:
                log.warning("sandbox %s: network teardown: %s", sid[:12], e)
            try:
                self.svc.remove(NS, sid, force=True)
            except BerthError:
                pass
            self.svc.launch_gates.pop(sid, None)  # a launch that ended before its gate
            raise
        finally:
            with self._setup_lock:
                self._starting.discard(sid)
                self._busy.difference_update((sid, key))
        return pb.RunPodSandboxResponse(pod_sandbox_id=sid)

    def _create_record(self, kind: str, name: str, body: dict[str, Any], ext: str, meta: dict[str, Any],
                       cid: str | None = None) -> str:
        """The record of a sandbox or container (the services' create, with the CRI's metadata as
        the extension ext); a name taken answers ALREADY_EXISTS in containerd's words."""
        try:
            return self.svc.create(NS, body, name, cri=True, extensions={ext: meta}, cid=cid)["Id"]
        except BerthError as e:
            if "already in use" not in str(e):
                raise
            raise _name_reserved(kind, name, str(e).split('by container "')[-1].split('"')[0]) from None

    def _attach(self, key: str, made: bool, sid: str, md: pb.PodSandboxMetadata, ports: list[dict[str, Any]],
                userns: convert.IDMaps | None = None) -> None:
        """The pod's network namespace (unless made ahead; with its user namespace, if it has
        one), then the CNI ADD into it."""
        if not made:
            self.net.create_netns(key, userns)
        self.net.attach(key, sid, {"name": md.name, "namespace": md.namespace, "uid": md.uid}, ports)

    def _launch_pause(self, sid: str) -> None:
        try:
            self.svc.start(NS, sid)
        except BerthError as e:
            log.warning("sandbox %s: its pause container did not start: %s", sid[:12], e)
            raise
        finally:
            with self._setup_lock:
                self._pending.pop(sid, None)

    def _after_pause(self) -> None:
        """After a pause container's start, once the pod's containers waiting for it go on."""
        if not self.closing:
            self.net.make_spare()  # the next pod's namespace, off its path
        self.svc.meta.release_thread()  # this thread ends

    @rpc
    def StopPodSandbox(self, request: pb.StopPodSandboxRequest,
                       context: grpc.ServicerContext) -> pb.StopPodSandboxResponse:
        rec = self._find(request.pod_sandbox_id, "sandbox",
                         words=f"an error occurred when try to find sandbox {_q(request.pod_sandbox_id)}")
        for crec, st in self._pod_containers(rec.id):
            if st["Running"]:
                self._stop(crec.id, 0, rec=crec)
        cri = self._cri(rec)
        # the CNI DELs (plugins exec'd one after the other) run while the pause container stops,
        # and go on after the answer: whoever looks at the sandbox next (status, listings, its
        # removal) waits for them (_settle), as for the pause's start. The bridge plugin's DEL is
        # mostly the kernel deleting a veth (~20 ms, asleep), which overlaps the client's next
        # step. A DEL that fails is logged and tried again by RemovePodSandbox, whose error it
        # then is (the kubelet retries it); the CNI cache keeps what it needs across a restart.
        key = cri.get("netns_key") or ""
        detach: list[_Background] = []

        def begin_detach() -> None:
            while not detach:
                with self._setup_lock:
                    prev = self._pending.get(rec.id)  # a StopPodSandbox at the same time: one DEL at a time
                    if prev is None:
                        self._busy.update((rec.id, key))  # the network collector leaves them to it
                        detach.append(_Background(self._detach, key, rec.id))
                        self._pending[rec.id] = detach[0]
                        break
                prev.wait()
        # the DEL begins once the pause has its SIGKILL (its fork and exec would slow the signal's
        # way), or here when the pause runs no more
        try:
            self._stop(rec.id, 0, signalled=begin_detach, rec=rec)
        finally:
            begin_detach()
        if self.closing:
            detach[0].wait()
        return pb.StopPodSandboxResponse()

    def _detach(self, key: str, sid: str) -> None:
        try:
            # the pod's result kept for the stopped pod's verbose status, as containerd keeps it:
            # its cached record moved there (a rename, not a file made anew: the DEL's end, which
            # the pod's next status waits for, comes sooner), else written
            kept = os.path.join(self.svc.cdir(sid), CNI_RESULT)
            result = self.net.teardown(key, sid, keep_as=kept)  # the cache read once: the plugins start sooner
            if result is not None and not os.path.exists(kept):
                try:
                    with open(kept, "w") as f:
                        f.write(json.dumps(result))
                except OSError:
                    pass
        except BerthError as e:
            log.warning("sandbox %s: network teardown (RemovePodSandbox tries again): %s", sid[:12], e)
        finally:
            with self._setup_lock:
                self._pending.pop(sid, None)
                self._busy.difference_update((sid, key))

    def _stop(self, cid: str, timeout: int, signalled: Callable[[], None] | None = None,
              rec: Container | None = None) -> None:
        """As containerd's CRI: the stop signal and up to timeout s for it, then SIGKILL; a
        timeout of 0 (crictl stop's default, and a pod's stop) is SIGKILL alone."""
        try:
            # the service publishes the stop event
            self.svc.stop(NS, cid, timeout=timeout, signal_="KILL" if timeout <= 0 else None, signalled=signalled,
                          rec=rec)
        except NotFound:
            pass

    @rpc
    def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest,
                         context: grpc.ServicerContext) -> pb.RemovePodSandboxResponse:
        try:
            rec = self._find(request.pod_sandbox_id, "sandbox")
        except NotFound:
            return pb.RemovePodSandboxResponse()  # removed already: idempotent
        for crec, _st in self._pod_containers(rec.id):
            self._remove(crec.id)
        cri = self._cri(rec)
        self.net.teardown(cri.get("netns_key") or "", rec.id)
        self._remove(rec.id)
        return pb.RemovePodSandboxResponse()

    def _remove(self, cid: str) -> None:
        try:
            # as containerd's: the files go after the answer (its collector), not before
            self.svc.remove(NS, cid, force=True, files_after=True)
        except NotFound:
            pass

    def _has_task(self, sbx: Container) -> bool:
        """Whether the sandbox's pause container runs or is being started (after RunPodSandbox's
        answer): what containerd calls the sandbox's task, which CreateContainer needs."""
        with self._setup_lock:
            pending = sbx.id in self._pending  # first: a launch that ends meanwhile shows in the state
        st = self.svc.state(sbx, paused=False)
        return st["Running"] or (pending and st["Status"] == "created")

    def _ready(self, rec: Container, st: dict[str, Any]) -> bool:
        """A sandbox is ready once its pause container runs and RunPodSandbox has attached its
        network (the pause starts while the CNI ADD runs)."""
        return st["Running"] and rec.id not in self._starting

    def _sandbox_status(self, rec: Container, st: dict[str, Any]) -> pb.PodSandboxStatus:
        config = self._sandbox_config(rec)
        cri = self._cri(rec)
        ready = pb.SANDBOX_READY if self._ready(rec, st) else pb.SANDBOX_NOTREADY
        linux = config.linux if config.HasField("linux") else pb.LinuxPodSandboxConfig()
        nso = convert.ns_options(linux.security_context if linux.HasField("security_context") else None)
        network = pb.PodSandboxNetworkStatus()
        if nso.network != convert.NODE and ready == pb.SANDBOX_READY:
            ips = self.net.ips(rec.id)
            if ips:
                network = pb.PodSandboxNetworkStatus(ip=ips[0], additional_ips=[pb.PodIP(ip=i) for i in ips[1:]])
        return pb.PodSandboxStatus(
            id=rec.id, metadata=config.metadata, state=ready, created_at=int(rec.created_at * 10**9),
            network=network,
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=pb.NamespaceOption(
                network=nso.network, pid=nso.pid, ipc=nso.ipc, target_id=nso.target_id,
                userns_options=nso.userns_options if nso.HasField("userns_options") else None))),
            labels=dict(config.labels), annotations=dict(config.annotations),
            runtime_handler=cri.get("handler", ""))

    @rpc
    def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest,
                         context: grpc.ServicerContext) -> pb.PodSandboxStatusResponse:
        rec = self._find(request.pod_sandbox_id, "sandbox")
        st = self.svc.state(rec, paused=False)
        status = self._sandbox_status(rec, st)
        info = {}
        if request.verbose:
            cri = self._cri(rec)
            netns = self.net.netns_path(cri["netns_key"]) if cri.get("netns_key") else ""
            info["info"] = go_marshal({  # containerd's keys in its order, then berth's own
                # a stopped pod's pause has no task left in containerd: "deleted"
                "pid": st.get("Pid", 0), "processStatus": "deleted" if st["Status"] == "exited" else st["Status"],
                "netNamespaceClosed": not st["Running"],
                "image": self.d.cfg.sandbox_image,
                "snapshotKey": rec.snapshot_key, "snapshotter": rec.snapshotter,
                "runtimeHandler": cri.get("handler", ""), "runtimeType": rec.runtime,
                "config": _go_json(self._sandbox_config(rec)),
                "runtimeSpec": convert.spec_as_go(_read_json(os.path.join(self.svc.sdir(rec.id), "bundle",
                                                                          "config.json"))),
                "cniResult": convert.cni_result_as_containerd(
                    self.net.result(rec.id) or _kept_result(_read_json(os.path.join(self.svc.cdir(rec.id), CNI_RESULT))),
                    netns),
                "netns": netns, "berthNamespace": NS, "stateDir": self.svc.sdir(rec.id),
            })
        return pb.PodSandboxStatusResponse(status=status, info=info, timestamp=time.time_ns())

    def _collect_networks(self) -> None:
        """At most every 30 s (the kubelet lists pods every second): pod networks whose sandbox
        is gone (removed by `berth -n k8s.io rm`, say) are released. Not those of a
        RunPodSandbox under way (its namespace and ADD come before or with its record)."""
        now = time.monotonic()
        if now - self._collected < 30:
            return
        self._collected = now
        with self._setup_lock:  # no RunPodSandbox starts meanwhile; the records are read inside
            live = {rec.id: self._cri(rec).get("netns_key") or "" for rec in self.svc.records(NS)
                    if (rec.labels or {}).get(KIND_LABEL) == "sandbox"}
            live.update({x: x for x in self._busy})  # a busy sandbox id or netns key is kept
            try:
                for sid in self.net.collect(live):
                    log.info("CRI: released the network of the removed sandbox %s", sid[:12])
            except (BerthError, OSError) as e:
                log.warning("CRI: collecting pod networks: %s", e)

    @rpc
    def ListPodSandbox(self, request: pb.ListPodSandboxRequest,
                       context: grpc.ServicerContext) -> pb.ListPodSandboxResponse:
        f = request.filter if request.HasField("filter") else None
        items = []
        self._collect_networks()
        gen = self.svc.meta.generation  # before the records are read
        sandboxes = self._records("sandbox")
        for rec, st in sandboxes:
            ready = pb.SANDBOX_READY if self._ready(rec, st) else pb.SANDBOX_NOTREADY
            if f is not None:
                if f.id and not rec.id.startswith(f.id):
                    continue
                if f.HasField("state") and f.state.state != ready:
                    continue
                labels = _user_labels(rec.labels)
                if any(labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            item = pb.PodSandbox()
            item.CopyFrom(self._listing(rec, gen))
            item.state = ready
            items.append(item)
        return pb.ListPodSandboxResponse(items=items)

    def _listing(self, rec: Container, gen: int) -> pb.PodSandbox | pb.Container:
        """A sandbox's or container's entry in the lists, but its state: made again only after a
        write to the store (the image's tags too may have changed), as a kubelet lists every second."""
        def make() -> pb.PodSandbox | pb.Container:
            if (rec.labels or {}).get(KIND_LABEL) != "sandbox":
                return self._container(rec)
            config = self._sandbox_config(rec)
            return pb.PodSandbox(id=rec.id, metadata=config.metadata, created_at=int(rec.created_at * 10**9),
                                 labels=dict(config.labels), annotations=dict(config.annotations),
                                 runtime_handler=self._cri(rec).get("handler", ""))
        return _kept(self._listed, rec.id, gen, make)

    # --- containers ---

    @rpc
    def CreateContainer(self, request: pb.CreateContainerRequest,
                        context: grpc.ServicerContext) -> pb.CreateContainerResponse:
        convert.reject_nul(request)
        sbx = self._find(request.pod_sandbox_id, "sandbox", settle=False,  # its pause may be starting
                         words=f"failed to find sandbox id {_q(request.pod_sandbox_id)}")
        if not self._has_task(sbx):  # stopped (or its pause failed): containerd's words
            raise NotFound(f"failed to get sandbox container task: no running task found: task {sbx.id} "
                           "not found: not found")
        config = request.config
        sandbox_config = self._sandbox_config(sbx)
        name = convert.container_name(config.metadata, sandbox_config.metadata)
        try:  # the name before the image, as containerd reserves it
            raise _name_reserved("container", name, self.svc.meta.get_container_by_name(NS, name).id)
        except NotFound:
            pass
        if not config.image.image:
            raise InvalidArgument("container config must include an image")
        try:
            img = self.images.resolve(NS, config.image.image)
        except NotFound:
            raise NotFound(f"failed to resolve image {_q(config.image.image)}: not found") from None
        log_path = ""
        if sandbox_config.log_directory and config.log_path:
            log_path = _go_join(sandbox_config.log_directory, config.log_path)  # an absolute log_path too
            if len(log_path.encode()) >= 4096 or any(len(c.encode()) > 255 for c in log_path.split("/")):
                raise InvalidArgument(f"log path {log_path!r}: file name too long")  # (containerd's start fails)
        cri = self._cri(sbx)
        host_net = not cri.get("netns_key")
        csc = config.linux.security_context if config.HasField("linux") and config.linux.HasField(
            "security_context") else None
        mine = convert.userns_maps(convert.ns_options(csc))
        pods = cri.get("userns")
        if (mine is None) != (pods is None) or mine is not None and (mine[0], mine[1]) != (pods["uids"], pods["gids"]):
            raise InvalidArgument("the container's user namespace options differ from its pod's (a container "
                                  "shares the pod's user namespace)")
        image = config.image.image if not img.config_digest.endswith(config.image.image) else img.config_digest
        cid = secrets.token_hex(32)  # named by a refusal of the spec, as containerd names it
        try:
            body, meta = convert.container_body(sbx.id, sandbox_config, config, image, log_path,
                                                self._runtime(cri.get("handler", "")), host_net)
        except convert.SpecRefused as e:
            raise Abort(grpc.StatusCode.UNKNOWN, f"failed to generate container {_q(cid)} spec: "
                                                 f"failed to generate spec: {e}") from None
        except convert.Refused as e:
            raise Abort(grpc.StatusCode.UNKNOWN, str(e)) from None
        meta["image"] = config.image.image
        # the image's variables first, the config's replacing or after them (containerd's order)
        from berth.services.ocispec import replace_or_append_env
        body["Env"] = replace_or_append_env(((img.config or {}).get("config") or {}).get("Env") or [], body["Env"])
        # the stop signal: the config's (newer kubelets), else the image's STOPSIGNAL, else SIGTERM
        if config.stop_signal:
            body["StopSignal"] = _signal_name(config.stop_signal)
        elif ((img.config or {}).get("config") or {}).get("StopSignal"):
            body["StopSignal"] = img.config["config"]["StopSignal"]
        cid = self._create_record("container", name, body, convert.CONTAINER_EXT, meta, cid=cid)
        username = config.linux.security_context.run_as_username if config.HasField("linux") else ""
        if username and not username.isdigit():
            try:
                self._check_username(cid, username)
            except BaseException:
                self._remove(cid)
                raise
        # its process is created now, in the background, as CRI-O creates it here: StartContainer
        # then releases it (and reports what failed in the creation)
        self.svc.prelaunch(NS, cid, after=lambda: self._settle(sbx.id))  # it joins the pause's namespaces
        return pb.CreateContainerResponse(container_id=cid)

    def _check_username(self, cid: str, name: str) -> None:
        """run_as_username in the image's /etc/passwd, as containerd resolves it at CreateContainer
        (in a temporary mount of the container's snapshot): a name it lacks, or no passwd file,
        fails the create in containerd's words (berth's start would otherwise fail, in runc's)."""
        from berth.linux.paths import read_in_root
        with self.svc.temporary_mount(self.svc.get(NS, cid), "user-") as tmp:
            try:
                text = read_in_root(tmp, "/etc/passwd").decode(errors="replace")
            except OSError as e:
                why = f"open {tmp}/etc/passwd: {errno_text(e)}"
            else:
                if any(line.split(":")[0] == name for line in text.splitlines() if line):
                    return
                why = "no users found"
        raise Abort(grpc.StatusCode.UNKNOWN, f"failed to create containerd container: mount callback failed on {tmp}: {why}")

    @rpc
    def StartContainer(self, request: pb.StartContainerRequest,
                       context: grpc.ServicerContext) -> pb.StartContainerResponse:
        rec = self._find(request.container_id, "container")
        with self._starting_lock:  # one start at a time, the others refused (containerd's words and code)
            if rec.id in self._starting:
                raise Abort(grpc.StatusCode.UNKNOWN, f"failed to set starting state for container {_q(rec.id)}: "
                            "container is already in starting state")
            st = self.svc.state(rec, paused=False)
            if st["Status"] != "created":
                raise Abort(grpc.StatusCode.UNKNOWN, f"failed to set starting state for container {_q(rec.id)}: "
                            f"container is in {pb.ContainerState.Name(self._state(st))} state")
            self._starting.add(rec.id)
        try:
            self._start(rec)
        finally:
            with self._starting_lock:
                self._starting.discard(rec.id)
        return pb.StartContainerResponse()

    def _start(self, rec: Container) -> None:
        sbx = self.svc.get(NS, self._cri(rec)["sandbox"])
        self._settle(sbx.id)
        if not self.svc.state(sbx, paused=False)["Running"]:
            raise Abort(grpc.StatusCode.UNKNOWN, f"sandbox container {_q(sbx.id)} is not running")
        try:
            self.svc.start(NS, rec.id)
        except BerthError as e:  # containerd's words and code for a task that could not start
            raise Abort(grpc.StatusCode.UNKNOWN, _task_error(e.message)) from None

    @rpc
    def StopContainer(self, request: pb.StopContainerRequest,
                      context: grpc.ServicerContext) -> pb.StopContainerResponse:
        rec = self._find(request.container_id, "container")
        self._stop(rec.id, max(0, request.timeout), rec=rec)
        return pb.StopContainerResponse()

    @rpc
    def RemoveContainer(self, request: pb.RemoveContainerRequest,
                        context: grpc.ServicerContext) -> pb.RemoveContainerResponse:
        try:
            rec = self._find(request.container_id, "container")
        except NotFound:
            return pb.RemoveContainerResponse()
        self._remove(rec.id)
        return pb.RemoveContainerResponse()

    @staticmethod
    def _state(st: dict[str, Any]) -> pb.ContainerState:
        if st["Running"] or st["Status"] in ("paused", "restarting"):
            return pb.CONTAINER_RUNNING
        if st["Status"] == "exited":
            return pb.CONTAINER_EXITED
        if st["Status"] == "created":
            return pb.CONTAINER_EXITED if st.get("Error") else pb.CONTAINER_CREATED
        return pb.CONTAINER_UNKNOWN

    def _image_refs(self, rec: Container) -> tuple[str, str, str]:
        """(image, image_ref, image id) of a container, by containerd's rule: the image's first
        repo tag (else what was asked), its first repo digest (else its id), its id."""
        image = self._cri(rec).get("image") or rec.image

        def names() -> tuple[list[str], list[str]]:
            try:
                from berth.cri.images import repo_tags_digests
                return repo_tags_digests(self.images.resolve(NS, rec.image))
            except BerthError:
                return [], []
        # an image's names are looked up again after a write of an image record
        tags, digests = _kept(self._names_of, rec.image, self.svc.meta.image_generation, names)
        return (tags[0] if tags else image), (digests[0] if digests else rec.image), rec.image

    def _container(self, rec: Container) -> pb.Container:
        """A container's entry in ListContainers, but its state. Its image is as its config asked
        for it (ContainerStatus gives the image's first tag), its image_ref the image's id
        (ContainerStatus gives the repo digest where there is one), as containerd 1.6's."""
        config = self._container_config(rec)
        return pb.Container(id=rec.id, pod_sandbox_id=self._cri(rec).get("sandbox", ""), metadata=config.metadata,
                            image=config.image, image_ref=rec.image, image_id=rec.image,
                            created_at=int(rec.created_at * 10**9), labels=dict(config.labels),
                            annotations=dict(config.annotations))

    @rpc
    def ListContainers(self, request: pb.ListContainersRequest,
                       context: grpc.ServicerContext) -> pb.ListContainersResponse:
        f = request.filter if request.HasField("filter") else None
        out = []
        gen = self.svc.meta.generation  # before the records are read
        for rec, st in self._records("container"):
            if f is not None and f.id and not rec.id.startswith(f.id):
                continue
            c = pb.Container()
            c.CopyFrom(self._listing(rec, gen))
            c.state = self._state(st)
            if f is not None:
                if f.pod_sandbox_id and not c.pod_sandbox_id.startswith(f.pod_sandbox_id):
                    continue
                if f.HasField("state") and f.state.state != c.state:
                    continue
                if any(c.labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            out.append(c)
        return pb.ListContainersResponse(containers=out)

    def _container_status(self, rec: Container, st: dict[str, Any]) -> pb.ContainerStatus:
        config = self._container_config(rec)
        asked, ref, image_id = self._image_refs(rec)
        state = self._state(st)
        reason = message = ""
        finished = _ns_time(st.get("FinishedAt")) if state == pb.CONTAINER_EXITED else 0
        if state == pb.CONTAINER_EXITED:
            if st.get("OOMKilled"):
                reason = "OOMKilled"
            elif st.get("Error"):
                reason, message = "StartError", _task_error(st["Error"])
                finished = finished or int(rec.created_at * 10**9)
                st = dict(st, ExitCode=128)  # containerd's code for a container that could not start
            else:
                reason = "Completed" if st["ExitCode"] == 0 else "Error"
        spec = rec.spec_json() or {}
        hc = spec.get("HostConfig") or {}
        res = pb.LinuxContainerResources(
            cpu_period=int(hc.get("CpuPeriod") or 0), cpu_quota=int(hc.get("CpuQuota") or 0),
            cpu_shares=int(hc.get("CpuShares") or 0), memory_limit_in_bytes=int(hc.get("Memory") or 0),
            oom_score_adj=int(hc.get("OomScoreAdj") or 0), cpuset_cpus=hc.get("CpusetCpus") or "",
            cpuset_mems=hc.get("CpusetMems") or "", memory_swap_limit_in_bytes=int(hc.get("MemorySwap") or 0))
        started = _ns_time(st.get("StartedAt")) if state != pb.CONTAINER_CREATED else 0
        user = self._user(rec.id, st.get("StartedAt") or "") if started else None
        return pb.ContainerStatus(
            user=user,
            id=rec.id, metadata=config.metadata, state=state, created_at=int(rec.created_at * 10**9),
            started_at=started, finished_at=finished,
            exit_code=int(st.get("ExitCode") or 0) if state == pb.CONTAINER_EXITED else 0,
            image=pb.ImageSpec(image=asked, annotations=dict(config.image.annotations)), image_ref=ref,
            image_id=image_id, reason=reason, message=message, labels=dict(config.labels),
            annotations=dict(config.annotations), mounts=list(config.mounts),
            log_path=self._cri(rec).get("log_path", ""), resources=pb.ContainerResources(linux=res))

    def _user(self, cid: str, started_at: str) -> pb.ContainerUser | None:
        """The identity a run's first process got (from the OCI spec it ran with); read once a run."""
        key = (cid, started_at)
        if key in self._user_of:
            return self._user_of[key]
        user = None
        u = (_read_json(os.path.join(self.svc.sdir(cid), "bundle", "config.json")).get("process") or {}).get("user")
        if u:
            user = pb.ContainerUser(linux=pb.LinuxContainerUser(
                uid=int(u.get("uid", 0)), gid=int(u.get("gid", 0)),
                supplemental_groups=sorted({int(u.get("gid", 0)), *map(int, u.get("additionalGids") or [])})))
        if len(self._user_of) > 4096:
            self._user_of.clear()
        self._user_of[key] = user
        return user

    @rpc
    def ContainerStatus(self, request: pb.ContainerStatusRequest,
                        context: grpc.ServicerContext) -> pb.ContainerStatusResponse:
        rec = self._find(request.container_id, "container")
        st = self.svc.state(rec, paused=False)
        info = {}
        if request.verbose:
            oci = _read_json(os.path.join(self.svc.sdir(rec.id), "bundle", "config.json"))
            info["info"] = go_marshal({
                "sandboxID": self._cri(rec).get("sandbox", ""), "pid": st.get("Pid", 0),
                "removing": False, "snapshotKey": rec.snapshot_key, "snapshotter": rec.snapshotter,
                "runtimeType": rec.runtime, "config": _go_json(self._container_config(rec)),
                "runtimeSpec": convert.spec_as_go(oci), "berthNamespace": NS})
        return pb.ContainerStatusResponse(status=self._container_status(rec, st), info=info)

    @rpc
    def UpdateContainerResources(self, request: pb.UpdateContainerResourcesRequest,
                                 context: grpc.ServicerContext) -> pb.UpdateContainerResourcesResponse:
        convert.reject_nul(request)
        rec = self._find(request.container_id, "container", words="failed to find container")
        from berth.services import execs
        if request.HasField("linux"):
            try:
                execs.update_resources(self.svc, NS, rec.id, convert.docker_resources(request.linux))
            except (NotFound, InvalidArgument):
                raise
            except BerthError as e:  # the runtime's refusal (`runc update`'s, its task's): containerd's words and code
                raise Abort(grpc.StatusCode.UNKNOWN, "failed to update resources: failed to update resources: runc did "
                                                     f"not terminate successfully: exit status 1: {e}\n: unknown") from None
        return pb.UpdateContainerResourcesResponse()

    @rpc
    def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest,
                           context: grpc.ServicerContext) -> pb.ReopenContainerLogResponse:
        rec = self._find(request.container_id, "container")
        if not self.svc.state(rec, paused=False)["Running"]:
            raise Abort(grpc.StatusCode.UNKNOWN, "container is not running")  # containerd's code and words
        if not self._cri(rec).get("log_path"):
            raise FailedPrecondition(f"container {rec.id} has no log path")
        from berth.services import execs
        execs.reopen_log(self.svc, NS, rec.id)
        return pb.ReopenContainerLogResponse()

    # --- exec, attach, port-forward ---

    @rpc
    def ExecSync(self, request: pb.ExecSyncRequest, context: grpc.ServicerContext) -> pb.ExecSyncResponse:
        convert.reject_nul(request)
        rec = self._find(request.container_id, "container", words="failed to exec in container: failed to find "
                         f"container {_q(request.container_id)} in store")
        from berth.services import execs
        if not request.cmd:
            raise InvalidArgument("cmd is empty")
        self._running(rec, "failed to exec in container: ")
        eid = secrets.token_hex(32)
        try:
            # a timeout beyond what a clock can hold (the kubelet's are seconds) is no timeout
            timeout = request.timeout if 0 < request.timeout < MAX_EXEC_TIMEOUT else 0
            code, out, err = execs.run_sync(self.svc, NS, rec.id, list(request.cmd), timeout, eid)
        except execs.ExecTimeout as e:
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"failed to exec in container: {e}") from None
        except FailedPrecondition:  # it ended meanwhile (its shim closed the connection under the exec)
            raise Abort(grpc.StatusCode.UNKNOWN, "failed to exec in container: container is in "
                        "CONTAINER_EXITED state") from None
        except BerthError as e:  # the process did not start (no such command...): containerd's code
            raise Abort(grpc.StatusCode.UNKNOWN, f"failed to exec in container: failed to start exec "
                        f"{_q(eid)}: {execs.start_failure(e)}") from None
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    def _stream_server(self) -> StreamingServer:
        if self.streaming is None:
            raise Abort(grpc.StatusCode.UNAVAILABLE, "the streaming server (exec, attach, port-forward) is not "
                                                     "available in this berthd (berth.cri.streaming is missing)")
        return self.streaming

    def _running(self, rec: Container, prefix: str = "") -> None:
        """Exec, Attach and ExecSync need the container running: else containerd's words and code
        (UNKNOWN)."""
        st = self.svc.state(rec, paused=False)
        if not st["Running"]:
            raise Abort(grpc.StatusCode.UNKNOWN, f"{prefix}container is in "
                        f"{pb.ContainerState.Name(self._state(st))} state")

    @rpc
    def Exec(self, request: pb.ExecRequest, context: grpc.ServicerContext) -> pb.ExecResponse:
        convert.reject_nul(request)
        rec = self._find(request.container_id, "container",
                         words=f"failed to find container {_q(request.container_id)} in store")
        if not request.cmd:
            raise InvalidArgument("cmd is empty")
        if not (request.stdin or request.stdout or request.stderr):
            raise InvalidArgument("one of stdin, stdout, or stderr must be set")
        if request.tty and request.stderr:
            raise InvalidArgument("tty and stderr cannot both be true")
        self._running(rec)
        srv = self._stream_server()
        return pb.ExecResponse(url=srv.exec_url(rec.id, list(request.cmd), request.tty, request.stdin,
                                                request.stdout, request.stderr))

    @rpc
    def Attach(self, request: pb.AttachRequest, context: grpc.ServicerContext) -> pb.AttachResponse:
        convert.reject_nul(request)
        rec = self._find(request.container_id, "container", words="failed to find container in store")
        if not (request.stdin or request.stdout or request.stderr):  # ("and": the streaming library's words for attach)
            raise InvalidArgument("one of stdin, stdout, and stderr must be set")
        self._running(rec)
        srv = self._stream_server()
        return pb.AttachResponse(url=srv.attach_url(rec.id, request.tty, request.stdin, request.stdout,
                                                    request.stderr))

    @rpc
    def PortForward(self, request: pb.PortForwardRequest, context: grpc.ServicerContext) -> pb.PortForwardResponse:
        convert.reject_nul(request)
        rec = self._find(request.pod_sandbox_id, "sandbox",
                         words=f"failed to find sandbox {_q(request.pod_sandbox_id)}")
        if not self.svc.state(rec, paused=False)["Running"]:
            raise FailedPrecondition(f"sandbox {rec.id} is not ready")
        srv = self._stream_server()
        return pb.PortForwardResponse(url=srv.portforward_url(rec.id, list(request.port)))

    # --- stats ---

    def _sample(self, rec: Container, st: dict[str, Any]) -> dict[str, Any] | None:
        from berth.services import container_ops
        try:
            return container_ops.sample_of(st["Pid"]) if st.get("Pid") else None
        except (BerthError, OSError):
            return None

    def _container_stats(self, rec: Container, st: dict[str, Any], idle_unset: bool = False) -> pb.ContainerStats:
        """idle_unset: a container not running has no cpu or memory stats (ListContainerStats,
        as containerd's: its metrics come from running tasks only); else they are zeros."""
        config = self._container_config(rec) if self._cri(rec).get("kind") == "container" else None
        now = time.time_ns()
        attrs = pb.ContainerAttributes(id=rec.id, metadata=config.metadata if config else None,
                                       labels=dict(config.labels) if config else {},
                                       annotations=dict(config.annotations) if config else {})
        s = self._sample(rec, st) if st["Running"] else None
        cpu = pb.CpuUsage(timestamp=now)
        mem = pb.MemoryUsage(timestamp=now)
        if s:
            total = int(((s.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
            cpu.usage_core_nano_seconds.value = total
            prev = self._cpu.get(rec.id)
            if prev and now > prev[0]:
                cpu.usage_nano_cores.value = max(0, (total - prev[1]) * 10**9 // (now - prev[0]))
            else:
                cpu.usage_nano_cores.value = 0
            self._cpu[rec.id] = (now, total)
            ms = s.get("memory_stats") or {}
            stats = ms.get("stats") or {}
            usage = int(ms.get("usage") or 0)
            inactive = int(stats.get("inactive_file", stats.get("total_inactive_file", 0)))
            ws = max(0, usage - inactive)
            mem.working_set_bytes.value = ws
            mem.usage_bytes.value = usage
            mem.rss_bytes.value = int(stats.get("anon", stats.get("total_rss", stats.get("rss", 0))))
            mem.page_faults.value = int(stats.get("pgfault", stats.get("total_pgfault", 0)))
            mem.major_page_faults.value = int(stats.get("pgmajfault", stats.get("total_pgmajfault", 0)))
            limit = int(ms.get("limit") or 0)
            from berth.services.stats import host_memory
            # a limit of its own; none: 0, given (as containerd's, which crictl shows as {"value": "0"})
            mem.available_bytes.value = max(0, limit - ws) if limit and limit < host_memory() else 0
            mem.available_bytes.SetInParent()
        # the snapshotter's directory, as ImageFsInfo names it (containerd's: the same for both)
        layer = pb.FilesystemUsage(timestamp=now, fs_id=pb.FilesystemIdentifier(
            mountpoint=self.svc.snapshotter.root))
        layer.used_bytes.value, layer.inodes_used.value = self._layer_usage(rec)
        if idle_unset and not st["Running"]:
            return pb.ContainerStats(attributes=attrs, writable_layer=layer)
        return pb.ContainerStats(attributes=attrs, cpu=cpu, memory=mem, writable_layer=layer)

    def _layer_usage(self, rec: Container) -> tuple[int, int]:
        """The writable layer's (bytes, inodes), measured at most every 10 s (the kubelet asks
        every few)."""
        now = time.monotonic()
        hit = self._usage.get(rec.id)
        if hit is not None and now - hit[0] < 10:
            return hit[1]
        try:
            v = self.svc.layer_usage(rec)
        except (BerthError, OSError, AttributeError, TypeError):
            v = (0, 0)
        if len(self._usage) > 4096:
            self._usage.clear()
        self._usage[rec.id] = (now, v)
        return v

    @rpc
    def ContainerStats(self, request: pb.ContainerStatsRequest,
                       context: grpc.ServicerContext) -> pb.ContainerStatsResponse:
        rec = self._find(request.container_id, "container", words="failed to find container")
        return pb.ContainerStatsResponse(stats=self._container_stats(rec, self.svc.state(rec, paused=False)))

    @rpc
    def ListContainerStats(self, request: pb.ListContainerStatsRequest,
                           context: grpc.ServicerContext) -> pb.ListContainerStatsResponse:
        f = request.filter if request.HasField("filter") else None
        out = []
        for rec, st in self._records("container"):  # every container, as containerd lists them
            cri = self._cri(rec)
            if f is not None:
                if f.id and not rec.id.startswith(f.id):
                    continue
                if f.pod_sandbox_id and not cri.get("sandbox", "").startswith(f.pod_sandbox_id):
                    continue
                labels = _user_labels(rec.labels)
                if any(labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            out.append(self._container_stats(rec, st, idle_unset=True))
        return pb.ListContainerStatsResponse(stats=out)

    def _running_by_sandbox(self) -> dict[str | None, list[tuple[Container, dict[str, Any]]]]:
        """{sandbox id: [(record, state)] of its running containers}."""
        out: dict[str | None, list[tuple[Container, dict[str, Any]]]] = {}
        for r, s in self._records("container"):
            if s["Running"]:
                out.setdefault(self._cri(r).get("sandbox"), []).append((r, s))
        return out

    def _pod_stats(self, rec: Container, st: dict[str, Any],
                   running: dict[str | None, list[tuple[Container, dict[str, Any]]]] | None = None) -> pb.PodSandboxStats:
        config = self._sandbox_config(rec)
        now = time.time_ns()
        attrs = pb.PodSandboxAttributes(id=rec.id, metadata=config.metadata, labels=dict(config.labels),
                                        annotations=dict(config.annotations))
        if running is None:
            running = self._running_by_sandbox()
        members = running.get(rec.id, [])
        cstats = [self._container_stats(r, s) for r, s in members]
        own = self._container_stats(rec, st)  # the pause container
        cpu = pb.CpuUsage(timestamp=now)
        mem = pb.MemoryUsage(timestamp=now)
        for c in cstats + [own]:
            cpu.usage_core_nano_seconds.value += c.cpu.usage_core_nano_seconds.value
            cpu.usage_nano_cores.value += c.cpu.usage_nano_cores.value
            mem.working_set_bytes.value += c.memory.working_set_bytes.value
            mem.usage_bytes.value += c.memory.usage_bytes.value
            mem.rss_bytes.value += c.memory.rss_bytes.value
            mem.page_faults.value += c.memory.page_faults.value
            mem.major_page_faults.value += c.memory.major_page_faults.value
        linux = pb.LinuxPodSandboxStats(cpu=cpu, memory=mem, containers=cstats)
        if st["Running"] and st.get("Pid"):
            linux.network.CopyFrom(_net_usage(st["Pid"], now))
            from berth.services import container_ops
            linux.process.timestamp = now
            linux.process.process_count.value = sum(len(container_ops.container_pids(s["Pid"]))
                                                    for _, s in members if s.get("Pid"))
        return pb.PodSandboxStats(attributes=attrs, linux=linux)

    @rpc
    def PodSandboxStats(self, request: pb.PodSandboxStatsRequest,
                        context: grpc.ServicerContext) -> pb.PodSandboxStatsResponse:
        rec = self._find(request.pod_sandbox_id, "sandbox",
                         words=f"an error occurred when trying to find sandbox {request.pod_sandbox_id}")
        return pb.PodSandboxStatsResponse(stats=self._pod_stats(rec, self.svc.state(rec, paused=False)))

    @rpc
    def ListPodSandboxStats(self, request: pb.ListPodSandboxStatsRequest,
                            context: grpc.ServicerContext) -> pb.ListPodSandboxStatsResponse:
        f = request.filter if request.HasField("filter") else None
        out = []
        running = self._running_by_sandbox()
        for rec, st in self._records("sandbox"):
            if not st["Running"]:
                continue
            if f is not None:
                if f.id and not rec.id.startswith(f.id):
                    continue
                labels = _user_labels(rec.labels)
                if any(labels.get(k) != v for k, v in f.label_selector.items()):
                    continue
            out.append(self._pod_stats(rec, st, running))
        return pb.ListPodSandboxStatsResponse(stats=out)

    # --- events ---

    def GetContainerEvents(self, request: pb.GetEventsRequest,
                           context: grpc.ServicerContext) -> Iterator[pb.ContainerEventResponse]:
        q: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

        def put(ns: str, ev: dict[str, Any]) -> None:
            q.put((ns, ev))
        self.d.events.subscribe(put)  # the event bus the services publish on
        kinds = {"create": pb.CONTAINER_CREATED_EVENT, "start": pb.CONTAINER_STARTED_EVENT,
                 "die": pb.CONTAINER_STOPPED_EVENT, "destroy": pb.CONTAINER_DELETED_EVENT}
        try:
            while context.is_active() and not self.closing:
                try:
                    ns, ev = q.get(timeout=0.5)
                except queue.Empty:
                    continue
                if ns != NS or ev.get("Type") != "container" or ev.get("Action") not in kinds:
                    continue
                cid = ev["Actor"]["ID"]
                resp = pb.ContainerEventResponse(container_id=cid, container_event_type=kinds[ev["Action"]],
                                                 created_at=int(ev.get("timeNano") or time.time_ns()))
                try:
                    rec = self.svc.get(NS, cid)
                except BerthError:
                    rec = None
                if rec is not None and (rec.labels or {}).get(KIND_LABEL) not in ("container", "sandbox"):
                    continue
                if rec is not None:
                    try:
                        st = self.svc.state(rec, paused=False)
                        if (rec.labels or {}).get(KIND_LABEL) == "sandbox":
                            resp.pod_sandbox_status.CopyFrom(self._sandbox_status(rec, st))
                        else:
                            resp.containers_statuses.append(self._container_status(rec, st))
                            sbx = self.svc.get(NS, self._cri(rec)["sandbox"])
                            resp.pod_sandbox_status.CopyFrom(self._sandbox_status(sbx, self.svc.state(sbx, paused=False)))
                    except BerthError:
                        pass
                yield resp
        finally:
            self.d.events.unsubscribe(put)

    # --- what berth does not do ---

    CheckpointContainer = unimplemented("CheckpointContainer")
    CheckpointPod = unimplemented("CheckpointPod")
    RestorePod = unimplemented("RestorePod")
    ListMetricDescriptors = unimplemented("ListMetricDescriptors")
    ListPodSandboxMetrics = unimplemented("ListPodSandboxMetrics")
    StreamPodSandboxMetrics = unimplemented("StreamPodSandboxMetrics")
    UpdatePodSandboxResources = unimplemented("UpdatePodSandboxResources")
    StreamPodSandboxes = unimplemented("StreamPodSandboxes (use ListPodSandbox)")
    StreamContainers = unimplemented("StreamContainers (use ListContainers)")
    StreamContainerStats = unimplemented("StreamContainerStats (use ListContainerStats)")
    StreamPodSandboxStats = unimplemented("StreamPodSandboxStats (use ListPodSandboxStats)")


def _check_sysctls(linux: pb.LinuxPodSandboxConfig, host_net: bool) -> None:
    """The pod's sysctls against runc's rules for the pause's namespaces (its validation refuses
    them before the pause is made; containerd's RunPodSandbox then fails with its words)."""
    if not linux.sysctls:
        return
    from berth.errors import ConfigInvalid
    from berth.runtime.spec import check_sysctl
    nso = convert.ns_options(linux.security_context if linux.HasField("security_context") else None)
    namespaces = [] if host_net else [{"type": "network"}, {"type": "uts"}]
    if nso.ipc != convert.NODE:
        namespaces.append({"type": "ipc"})
    for key in linux.sysctls:
        try:
            check_sysctl(key, namespaces)
        except ConfigInvalid as e:
            raise Abort(grpc.StatusCode.UNKNOWN, "failed to create containerd task: failed to create shim task: OCI "
                                                 f"runtime create failed: runc create failed: {e.message}: unknown") from None


def _name_reserved(kind: str, name: str, other: str) -> Abort:
    """containerd's words, and its code: UNKNOWN (its name index's error is not a gRPC status)."""
    return Abort(grpc.StatusCode.UNKNOWN,
                 f"failed to reserve {kind} name {_q(name)}: name {_q(name)} is reserved for {_q(other)}")


def _kept(table: dict[str, tuple[int, Any]], key: str, gen: int, make: Callable[[], Any]) -> Any:
    """table[key]'s value if it was made at the store's generation gen, else make()'s, kept."""
    hit = table.get(key)
    if hit is not None and hit[0] == gen:
        return hit[1]
    value = make()
    if len(table) > 4096:
        table.clear()
    table[key] = (gen, value)
    return value


class _Gate:
    """What a prepared launch waits for before its shim (ContainerService.launch_gates): open(),
    after fail() when it is not to go on (its error then)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._failed = False

    def fail(self) -> None:
        self._failed = True

    def open(self) -> None:
        self._event.set()

    def wait(self) -> None:
        self._event.wait()
        if self._failed:
            raise FailedPrecondition("the pod's network could not be attached")


class _Background:
    """fn(*args) in a thread of its own; result() waits and returns it or raises its error.
    then(): run by the thread after fn, once those waiting for fn have been let go."""

    def __init__(self, fn: Callable[..., Any], *args: Any, then: Callable[[], None] | None = None) -> None:
        self._out: dict[str, Any] = {}
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(fn, args, then), name="cri-bg", daemon=True).start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], then: Callable[[], None] | None) -> None:
        try:
            self._out["r"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to result()
            self._out["e"] = e
        finally:
            self._done.set()
        if then is not None:
            then()

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def result(self) -> Any:
        self._done.wait()
        if "e" in self._out:
            raise self._out["e"]
        return self._out.get("r")


def _net_usage(pid: int, now: int) -> pb.NetworkUsage:
    """eth0 of the pod's network namespace (/proc/<pid>/net/dev of its pause process)."""
    out = pb.NetworkUsage(timestamp=now)
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        iface = pb.NetworkInterfaceUsage(name=name)
        iface.rx_bytes.value, iface.rx_errors.value, iface.tx_bytes.value, iface.tx_errors.value = v[0], v[2], v[8], v[10]
        if name == "eth0":
            out.default_interface.CopyFrom(iface)
        else:
            out.interfaces.append(iface)
    return out


def _signal_name(value: int) -> str:
    """A CRI Signal -> what the services' kill takes ("SIGUSR1", or the number of a real-time one)."""
    import signal
    try:
        name = pb.Signal.Name(value)[len("SIGNAL_"):]
    except ValueError:
        raise InvalidArgument(f"unknown stop signal {value}") from None
    for prefix, base, sign in (("SIGRTMINPLUS", signal.SIGRTMIN, 1), ("SIGRTMAXMINUS", signal.SIGRTMAX, -1)):
        if name.startswith(prefix):
            return str(int(base) + sign * int(name[len(prefix):]))
    if name in ("SIGRTMIN", "SIGRTMAX"):
        return str(int(getattr(signal, name)))
    return name


def _rewrite(path: str, text: str) -> None:
    """A file nothing uses yet written over in place (made if missing)."""
    with open(path, "w") as f:
        f.write(text)


def _kept_result(doc: Any) -> Any:
    """A stopped pod's CNI result from its cni-result.json: the attachment's cached record moved
    there (its "result"), or the result itself; None when there is none."""
    if isinstance(doc, dict) and "conflist" in doc:
        doc = doc.get("result")
    return doc or None


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _default_cgroup(spec: dict[str, Any], cid: str, pod: pb.PodSandboxConfig) -> None:
    """A pod without a cgroup parent: its cgroups under /k8s.io/<id>, containerd's default for
    the namespace (the docker side's are under /berth)."""
    linux = spec.get("linux") or {}
    if not pod.linux.cgroup_parent and str(linux.get("cgroupsPath", "")).startswith("/"):
        linux["cgroupsPath"] = f"/{NS}/{cid}"


def _go_json(msg: Message) -> dict[str, Any]:
    """A CRI message as containerd's verbose info shows it (Go's encoding/json of the generated
    structs): fields by their proto names, zero values left out, enums and 64-bit integers as
    numbers, bytes in base64."""
    from google.protobuf.descriptor import FieldDescriptor as F

    def value(fd: Any, v: Any) -> Any:
        if fd.type == F.TYPE_MESSAGE:
            return _go_json(v)
        if fd.type == F.TYPE_BYTES:
            import base64
            return base64.b64encode(v).decode()
        return v  # enums: their number, as Go's

    out: dict[str, Any] = {}
    for fd, v in msg.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vf = fd.message_type.fields_by_name["value"]
            out[fd.name] = {str(k): value(vf, x) for k, x in v.items()}
        elif fd.is_repeated:
            out[fd.name] = [value(fd, x) for x in v]
        else:
            out[fd.name] = value(fd, v)
    return out


def netns_of(services: Services) -> Callable[[str], str]:
    """For the streaming server's port forwarding: a sandbox id -> the path of its network
    namespace, or "host" for a pod on the node's network."""
    from berth.services.podnet import PodNetwork
    net = PodNetwork(services.cfg)

    def find(sandbox_id: str) -> str:
        rec = services.containers.get(NS, sandbox_id)
        if (rec.labels or {}).get(KIND_LABEL) != "sandbox":
            raise NotFound(f"sandbox {sandbox_id} not found")
        key = convert.metadata_of(rec).get("netns_key")
        return net.netns_path(key) if key else "host"
    return find
