"""The network of a Kubernetes pod: a network namespace made before the pod's sandbox (pause)
container starts, attached with the node's own CNI configuration (the first conflist of
`cri_cni_conf_dir`, as containerd's CRI plugin does), port mappings by the portmap plugin.

State lives under <state>/cri/: netns/<key> (the namespace, bind-mounted) and cni-cache/ (what
each ADD used, so a DEL after a daemon restart undoes exactly that).

Once a pod has been made, the next pod's namespace is made ahead (one spare, an empty namespace
with `lo` up: nothing of a pod in it): the kernel takes 2-4 ms to make one, on the path of
RunPodSandbox otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import threading

from berth import cni
from berth.errors import BerthError, FailedPrecondition, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterable
    from typing import Any

    from berth.daemon.config import Config

IFNAME = "eth0"


class PodNetwork:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.base = os.path.join(cfg.state, "cri")
        self.cache_dir = os.path.join(self.base, "cni-cache")
        self._ips: dict[str, tuple[str, ...]] = {}  # sandbox id -> its IPs (an attachment's result does not change): listings ask every second
        self._spare_lock = threading.Condition()  # notified when a making ends
        self._spare: str | None = None  # the key of the namespace made ahead for the next pod
        self._making: str | None = None  # the key of the one being made

    def netns_path(self, key: str) -> str:
        return os.path.join(self.base, "netns", key)

    def userns_path(self, key: str) -> str:
        """Where the user namespace of a pod that has one is pinned (create_netns with maps)."""
        return os.path.join(self.base, "userns", key)

    def conflist(self) -> dict[str, Any]:
        """The node's network: the first *.conflist / *.conf / *.json of the conf dir by name."""
        return self.conflist_source()[1]

    def conflist_source(self) -> tuple[str, dict[str, Any], str]:
        """(file, conflist, the file's text) of the node's network (conflist())."""
        d = self.cfg.cri_cni_conf_dir
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith((".conflist", ".conf", ".json")))
        except OSError:
            names = []
        for n in names:
            try:
                with open(os.path.join(d, n)) as f:
                    text = f.read()
                doc = json.loads(text)
            except (OSError, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            if "plugins" not in doc:  # a single plugin's .conf
                if not doc.get("type"):
                    continue
                doc = {"cniVersion": doc.get("cniVersion", cni.SPEC_VERSION), "name": doc.get("name", n),
                       "plugins": [doc]}
            if doc.get("plugins"):
                return os.path.join(d, n), doc, text
        raise FailedPrecondition(f"cni config not initialized: no network configuration in {d}")

    @staticmethod
    def check_ports(port_mappings: Iterable[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The mappings portmap is given (those with a host port); a bad one is refused before
        anything is made."""
        ports = []
        for p in port_mappings or []:
            if p.get("hostPort"):
                if not 0 < int(p["hostPort"]) < 65536 or not 0 < int(p.get("containerPort") or 0) < 65536:
                    raise InvalidArgument(f"invalid port mapping {p}")
                ports.append(p)
        return ports

    def create_netns(self, key: str, maps: tuple[list[dict[str, int]], list[dict[str, int]]] | None = None) -> str:
        """The pod's network namespace at netns_path(key), `lo` up, not attached yet: the sandbox
        container can join it while attach() runs (containerd's CRI also makes it first). maps:
        (uid, gid mappings) of the pod's user namespace, made with it and pinned at
        userns_path(key): the network namespace is then that user namespace's own."""
        self.conflist()  # no network configured: refused before anything is made
        from berth.linux import netns
        if maps is not None:
            return netns.create_in_userns(self.netns_path(key), self.userns_path(key), *maps)
        return netns.create(self.netns_path(key))

    def take_netns(self) -> tuple[str, bool]:
        """(key, made) of the next pod's network namespace: the spare made ahead (made=True),
        else a new key for create_netns."""
        with self._spare_lock:
            # one being made is taken once made (a few ms: no slower than making another)
            self._spare_lock.wait_for(lambda: self._making is None, 5)
            key, self._spare = self._spare, None
        if key is not None and os.path.exists(self.netns_path(key)):
            return key, True
        return secrets.token_hex(16), False

    def make_spare(self) -> None:
        """Make the next pod's namespace now (at most one waits); a failure is only a lost head start."""
        with self._spare_lock:
            if self._spare is not None or self._making is not None:
                return
            key = self._making = secrets.token_hex(16)
        try:
            self.create_netns(key)
        except BaseException as e:
            with self._spare_lock:
                self._making = None
                self._spare_lock.notify_all()
            if isinstance(e, (BerthError, OSError)):
                return
            raise
        with self._spare_lock:  # one step: the collector sees it as the spare or as being made
            self._spare, self._making = key, None
            self._spare_lock.notify_all()

    def put_back(self, key: str) -> None:
        """The spare taken by a pod refused before it used it: the spare again (removed if another
        was made meanwhile)."""
        with self._spare_lock:
            if self._spare is None and self._making is None:
                self._spare = key
                self._spare_lock.notify_all()
                return
        self.remove_netns(key)

    def drop_spare(self) -> None:
        """The spare namespace goes (berthd stops)."""
        with self._spare_lock:
            key, self._spare = self._spare, None
        if key is not None:
            self.remove_netns(key)

    def remove_netns(self, key: str) -> None:
        """The namespaces made by create_netns(key) go (absent is fine)."""
        from berth.linux import netns
        netns.remove(self.netns_path(key))
        if os.path.lexists(self.userns_path(key)):
            netns.remove(self.userns_path(key))

    def attach(self, key: str, sandbox_id: str, meta: dict[str, Any],
               port_mappings: Iterable[dict[str, Any]] | None) -> tuple[str, list[str]]:
        """CNI ADD of the node's network into the namespace made by create_netns(key); returns
        (ip, [other ips]). A failure leaves the namespace (teardown() removes it)."""
        conf = self.conflist()
        ports = self.check_ports(port_mappings)
        args = ";".join(["IgnoreUnknown=1", f"K8S_POD_NAMESPACE={meta.get('namespace', '')}",
                         f"K8S_POD_NAME={meta.get('name', '')}", f"K8S_POD_INFRA_CONTAINER_ID={sandbox_id}",
                         f"K8S_POD_UID={meta.get('uid', '')}"])
        rc = {"portMappings": ports} if ports else {}
        if not ports:
            conf = _without_idle_portmap(conf)
        result = cni.add(conf, sandbox_id, self.netns_path(key), IFNAME, self.cfg.cri_cni_bin_dirs,
                         self.cache_dir, runtime_config=rc, args=args)
        ips = _ips(result)
        return (ips[0] if ips else ""), ips[1:]

    def ips(self, sandbox_id: str) -> list[str]:
        """The pod's IPs from the cached ADD result (primary first)."""
        hit = self._ips.get(sandbox_id)
        if hit is not None:
            return list(hit)
        for _name, _cid, ifname, rec in cni.cached(self.cache_dir, sandbox_id):
            if ifname == IFNAME:
                out = _ips(rec.get("result") or {})
                if out:  # none yet: the ADD is still running
                    if len(self._ips) > 4096:
                        self._ips.clear()
                    self._ips[sandbox_id] = tuple(out)
                return out
        return []

    def result(self, sandbox_id: str) -> dict[str, Any] | None:
        """The CNI result of the pod's attachment (for status), or None."""
        for _name, _cid, ifname, rec in cni.cached(self.cache_dir, sandbox_id):
            if ifname == IFNAME:
                return rec.get("result")
        return None

    def teardown(self, key: str | None, sandbox_id: str, keep_as: str | None = None) -> dict[str, Any] | None:
        """CNI DEL with what the ADD used, then the namespace goes; nothing there is fine.
        Returns the pod's attachment's CNI result as it was (result()), if there was one.
        keep_as: where the pod's attachment's cached record (its result in it) is moved once its
        DEL is done, rather than deleted."""
        self._ips.pop(sandbox_id, None)
        err = None
        result = None
        for name, cid, ifname, rec in cni.cached(self.cache_dir, sandbox_id):
            if cid != sandbox_id:
                continue
            if ifname == IFNAME:
                result = rec.get("result")
            try:
                cni.delete_cached(self.cache_dir, name, cid, ifname, self.cfg.cri_cni_bin_dirs, record=rec,
                                  keep_as=keep_as if ifname == IFNAME else None)
            except cni.CNIError as e:
                err = err or e
        if key:
            self.remove_netns(key)
        if err is not None:
            raise err
        return result


    def collect(self, live: dict[str, str]) -> list[str]:
        """Release what belongs to no sandbox any more (one removed by `berth -n k8s.io rm -f`, or
        a crash between the network's set-up and the record's removal): live is {sandbox id:
        netns key}. Returns the sandbox ids whose attachments went."""
        gone = []
        for name, cid, ifname, _rec in cni.cached(self.cache_dir):
            if cid in live:
                continue
            self._ips.pop(cid, None)
            try:
                cni.delete_cached(self.cache_dir, name, cid, ifname, self.cfg.cri_cni_bin_dirs)
                gone.append(cid)
            except cni.CNIError:
                pass
        keys = set(live.values())
        with self._spare_lock:
            keys.update((self._spare, self._making))
        names = set()
        for kind in ("netns", "userns"):
            try:
                names.update(os.listdir(os.path.join(self.base, kind)))
            except FileNotFoundError:
                pass
        for key in names:
            if key not in keys:
                self.remove_netns(key)
        return gone


def _without_idle_portmap(conf: dict[str, Any]) -> dict[str, Any]:
    """The conflist for a pod that maps no host port: the portmap plugin left out of its chain.
    Given no mappings, its ADD hands the previous result back unchanged and its DEL returns at
    once (containernetworking/plugins' portmap): running it only costs a Go program's start,
    ~3.5 ms on RunPodSandbox's path and as much in the teardown. The DEL uses the chain the ADD
    ran (the CNI cache), so it leaves portmap out too."""
    kept = [p for p in conf["plugins"] if p.get("type") != "portmap"]
    return dict(conf, plugins=kept) if kept else conf


def _ips(result: dict[str, Any] | None) -> list[str]:
    out = []
    for ip in (result or {}).get("ips") or []:
        addr = (ip.get("address") or "").split("/")[0]
        if addr:
            out.append(addr)
    out.sort(key=lambda a: ":" in a)  # IPv4 first, as the kubelet expects
    return out
