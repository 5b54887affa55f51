"""The images use-cases: resolve, list, inspect, history, tag, remove, prune, unpack,
pull, push, save, load and import — over the content store, the metadata store, a
snapshotter, the registry client and the archive formats.

Every method is blocking (run it in a worker thread) and takes the namespace first.
Image records: name (a full normalised reference, or "sha256:<config hex>" for an image that
has no name, docker's <none>) -> target descriptor (a manifest or an index).
"""

from __future__ import annotations

import secrets
import threading
import time

from berth import fastjson as json
from berth.errors import (BerthError, FailedPrecondition, InvalidArgument, NotFound)
from berth.images import config as imgconfig
from berth.images.config import MAX_CONFIG, MAX_MANIFEST
from berth.images.names import familiar, is_digest_name, is_untagged_name, no_such_image, repo_of
from berth.images.stream import Decompressed, LayerStream
from berth.oci import mediatypes as mt
from berth.oci import reference as refmod
from berth.services.image_archives import ArchiveOps
from berth.services.image_registry import RegistryOps

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Callable
    from typing import Any

    from berth.content.store import ContentStore
    from berth.metadata.records import Image, Lease
    from berth.metadata.store import MetadataStore
    from berth.services.events import EventBus
    from berth.services.registry import RegistryConfig
    from berth.snapshots import Snapshotter

__all__ = ["ImageService", "Resolved", "familiar", "is_digest_name", "is_untagged_name"]
UNPACKED_LABEL = "berth.io/unpacked"


class Resolved:
    """An image as the services see it: its names, target, manifest and config."""

    def __init__(self, names: list[str], target: dict, manifest_desc: dict, manifest: dict, config_digest: str,
                 config: dict) -> None:
        self.names = names
        self.target = target
        self.manifest_desc = manifest_desc
        self.manifest = manifest
        self.config_digest = config_digest
        self.config = config

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def layers(self) -> list[dict]:
        return list(self.manifest.get("layers") or [])


class _Counted:
    """A layer's compressed bytes as the unpacker reads them, counted for its "Extracting"
    progress: reported at most every 0.1 s, and at the end."""

    def __init__(self, f: Any, report: Callable[[int], None]) -> None:
        self.f = f
        self.report = report
        self.n = 0
        self.last = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.n += len(data)
        now = time.monotonic()
        if not data or now - self.last >= 0.1:
            self.last = now
            self.report(self.n)
        return data


def _deleted_layers(r: Resolved, snaps: set[str], blobs: set[str], unpacked: Callable[[str], bool]) -> list[dict]:
    """The layers of r that a collection removed (their unpacked snapshot, or their blob where
    no snapshot of the layer is left: unpacked(chain) tells), the top one first, by their chain
    IDs, as dockerd lists them after an image it deletes. A blob of r's own for a layer another
    image still has unpacked (a compressed blob pulled beside a loaded image's) is no layer gone:
    dockerd, which keeps layers by their chain, lists it not."""
    try:
        chains = imgconfig.chain_ids(r.diff_ids)
    except BerthError:
        return []
    blob_of = [layer.get("digest") for layer in r.layers]
    return [{"Deleted": c} for i, c in reversed(list(enumerate(chains)))
            if c in snaps or (i < len(blob_of) and blob_of[i] in blobs and not unpacked(c))]


def _no_such_image(s: str, ns: str) -> str:
    return no_such_image(_as_dockerd_names_missing(s), ns)


def _check_names(names: list[str]) -> None:
    """dockerd's reference store's refusal, before any name is written: a repository named after
    a digest algorithm ("sha256:x") would read as an image ID."""
    for n in names:
        if is_untagged_name(n):  # berth's own record of an image without a name (names are stored qualified)
            continue
        try:
            ref = refmod.parse(n)
        except InvalidArgument:
            continue
        if ref.familiar_name() == "sha256":
            raise InvalidArgument("refusing to create an ambiguous tag using digest algorithm as name")


def _as_dockerd_names_missing(s: str) -> str:
    """The image a lookup missed as dockerd names it (ErrImageDoesNotExist): a reference in its
    familiar form, with the default tag when it had neither tag nor digest ("busybox:latest",
    "localhost:5000/a:latest", "a@sha256:..."); an ID (full, with or without sha256:) as a digest."""
    hexpart = s[7:] if s.startswith("sha256:") else s
    if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
        return "sha256:" + hexpart
    try:
        return refmod.parse(s).familiar()
    except InvalidArgument:
        return s


class ImageService(RegistryOps, ArchiveOps):
    """The images use-cases; pull/push/login (RegistryOps, services/image_registry.py) and
    load/save/import (ArchiveOps, services/image_archives.py) are its mixins."""

    def __init__(self, meta: MetadataStore, content: ContentStore, snapshotter: Snapshotter,
                 snapshotter_name: str = "overlayfs", registry: RegistryConfig | None = None,
                 events: EventBus | None = None) -> None:
        self.meta = meta
        self.content = content
        self.snapshotter = snapshotter
        self.snapshotter_name = snapshotter_name
        self.registry = registry  # berth.services.registry.RegistryConfig (hosts dir, mirrors, insecure)
        if registry is None:
            from berth.services.registry import RegistryConfig
        # the slots of layer downloads and uploads, and the download attempts (berthd's settings)
        self.transfers = registry if registry is not None else RegistryConfig()
        self._unpack_lock = threading.Lock()
        self._remove_lock = threading.Lock()  # docker rmi, one at a time (its reads, then its deletes)
        from berth.services.events import EventBus
        self.events = events if events is not None else EventBus()

    # --- reading blobs ---

    def read_json(self, digest: str, limit: int, what: str) -> Any:
        try:
            data = self.content.read(digest, max_size=limit)
        except NotFound:
            raise NotFound(f"{what} {digest} is missing from the content store") from None
        try:
            return json.loads(data)
        except ValueError:
            raise InvalidArgument(f"{what} {digest} is not valid JSON") from None

    def manifest_for(self, target: dict, platform: str | dict | None = None) -> tuple[dict, dict]:
        """(manifest descriptor, manifest) of a target, choosing the platform in an index."""
        desc = dict(target)
        for _ in range(4):
            doc = self.read_json(desc["digest"], MAX_MANIFEST, "manifest")
            if mt.is_index(desc.get("mediaType", "")) or doc.get("manifests") is not None and "layers" not in doc:
                chosen = imgconfig.match_platform(doc.get("manifests") or [], platform)
                if platform is None and (chosen is None or not self._have(chosen.get("digest"))):
                    # no platform asked: the host's if it is here, else the platform that was
                    # pulled (`pull --platform linux/arm64` keeps the index as the target)
                    present = [m for m in doc.get("manifests") or [] if self._have(m.get("digest"))
                               and (m.get("platform") or {}).get("architecture") not in (None, "unknown")]
                    chosen = present[0] if present else chosen
                if chosen is None:
                    want = imgconfig.format_platform(imgconfig.parse_platform(platform) if isinstance(platform, str)
                                                     else (platform or imgconfig.host_platform()))
                    raise NotFound(f"no image for platform {want} in {desc['digest']}")
                desc = dict(chosen)
                continue
            return desc, doc
        raise InvalidArgument(f"image index {target['digest']} is nested too deeply")

    def _have(self, digest: str) -> bool:
        try:
            return isinstance(digest, str) and self.content.exists(digest)
        except BerthError:
            return False

    def _resolved(self, names: list[str], target: dict, platform: str | dict | None = None) -> Resolved:
        mdesc, manifest = self.manifest_for(target, platform)
        cdesc = manifest.get("config") or {}
        if not cdesc.get("digest"):
            raise InvalidArgument(f"manifest {mdesc['digest']} has no config")
        config = self.read_json(cdesc["digest"], MAX_CONFIG, "image config")
        return Resolved(names, target, mdesc, manifest, cdesc["digest"], config)

    # --- resolution ---

    def _all(self, ns: str) -> dict[str, list[Image]]:
        """{target digest: [image records]} of a namespace."""
        groups = {}
        for img in self.meta.list_images(ns):
            groups.setdefault(img.target.digest, []).append(img)
        return groups

    def resolve(self, ns: str, s: str, platform: str | dict | None = None) -> Resolved:
        """An image by name, name@digest, full ID (sha256:...) or unambiguous short ID."""
        s = s.strip()
        if not s:
            raise InvalidArgument("image name is empty")
        hexpart = s[7:] if s.startswith("sha256:") else s
        is_hex = len(hexpart) >= 1 and all(c in "0123456789abcdef" for c in hexpart)
        if not (s.startswith("sha256:") and len(hexpart) == 64):
            try:
                ref = refmod.parse(s)
            except InvalidArgument:
                ref = None
            if ref is not None:
                if ref.digest and not ref.tag:
                    found = self._by_repo_digest(ns, ref)
                    if found:
                        return found
                else:
                    img = self.meta.find_image(ns, str(ref))
                    if img is not None:
                        names = [i.name for i in self.meta.list_images(ns) if i.target.digest == img.target.digest]
                        return self._resolved(names, img.target.to_dict(), platform)
            if not is_hex or s.startswith("sha256:") is False and len(hexpart) < 4:
                raise NotFound(_no_such_image(s, ns))
        # by image ID (the config digest), full or a prefix
        matches = {}
        for digest, imgs in self._all(ns).items():
            try:
                r = self._resolved([i.name for i in imgs], imgs[0].target.to_dict(), platform)
            except BerthError:
                continue
            if r.config_digest[7:].startswith(hexpart) or digest[7:] == hexpart:
                matches.setdefault(r.config_digest, r)
        if len(matches) == 1:
            return next(iter(matches.values()))
        if len(matches) > 1:
            raise InvalidArgument(f'image ID prefix "{s}" is ambiguous in namespace "{ns}"')
        raise NotFound(_no_such_image(s, ns))

    def _by_repo_digest(self, ns: str, ref: refmod.Reference) -> Resolved | None:
        for digest, imgs in self._all(ns).items():
            names = [i.name for i in imgs]
            same_repo = [n for n in names if not is_untagged_name(n) and refmod.parse(n).name == ref.name]
            if not same_repo:
                continue
            if digest == ref.digest:
                return self._resolved(names, imgs[0].target.to_dict())
            try:
                r = self._resolved(names, imgs[0].target.to_dict())
            except BerthError:
                continue
            if r.manifest_desc["digest"] == ref.digest:
                return r
        return None

    # --- listing and inspecting (docker's shapes) ---

    def _size(self, r: Resolved) -> int:
        """dockerd's image size: the sum of its layers' sizes (layer_sizes)."""
        sizes = self.layer_sizes(r)
        if sizes is not None:
            return sum(sizes)
        return sum(int(layer.get("size") or 0) for layer in r.layers) + int((r.manifest.get("config") or {}).get("size") or 0)

    def layer_sizes(self, r: Resolved) -> list[int] | None:
        """Each layer's size as dockerd gives it (its unpacked files' sizes, from its snapshot), or
        None where a layer is not unpacked or the snapshotter keeps whole trees (then the stored
        blobs' sizes stand in)."""
        try:
            out = []
            for chain in imgconfig.chain_ids(r.diff_ids):
                size = self.snapshotter.diff_size(chain)
                if size is None:
                    return None
                out.append(size)
            return out if len(out) == len(r.layers) else None
        except (BerthError, OSError):
            return None

    def _repo_digests(self, r: Resolved) -> list[str]:
        """dockerd's RepoDigests: the digest references a pull or a push recorded (a loaded, built,
        committed or tagged image has none of its own)."""
        return sorted(familiar(n) for n in r.names if is_digest_name(n))

    def _repo_tags(self, r: Resolved) -> list[str]:
        # docker sorts by the familiar form (its lexicalRefs), not by the full name
        return sorted(familiar(n) for n in r.names if not is_untagged_name(n) and not is_digest_name(n))

    def snapshots_usage(self) -> tuple[str, int, int]:
        """(directory, bytes, inodes) on disk of every snapshot (the CRI's image filesystem)."""
        import os
        root = self.snapshotter.root
        used = inodes = 0
        for dirpath, dirnames, filenames in os.walk(root):
            for n in filenames:
                try:
                    st = os.lstat(os.path.join(dirpath, n))
                except OSError:
                    continue
                used += st.st_blocks * 512
                inodes += 1
            inodes += len(dirnames)
        return root, used, inodes

    def list(self, ns: str, all_: bool = False, filters: dict[str, Any] | None = None,
             digests: bool = False) -> list[dict]:
        filters = filters or {}
        for key in filters:  # refused even when there is nothing to filter
            if key not in ("dangling", "reference", "label", "before", "since"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        # before= / since=: images created strictly before / after the one named (dockerd's)
        lo, hi = _created_bounds(self, ns, filters)
        out = []
        for digest, imgs in self._all(ns).items():
            try:
                r = self._resolved([i.name for i in imgs], imgs[0].target.to_dict())
            except BerthError:
                continue
            tags = self._repo_tags(r)
            if not _match_filters(filters, r, tags):
                continue
            if lo is not None or hi is not None:
                t = imgconfig.parse_time_ns(r.config.get("created"))
                if (hi is not None and t >= hi) or (lo is not None and t <= lo):
                    continue
            created = imgconfig.parse_time(r.config.get("created"))
            out.append({
                "Id": r.config_digest, "ParentId": "", "RepoTags": tags, "RepoDigests": self._repo_digests(r),
                "Created": created, "Size": self._size(r), "SharedSize": -1, "VirtualSize": self._size(r),
                "Labels": (r.config.get("config") or {}).get("Labels") or {}, "Containers": -1,
            })
        out.sort(key=lambda e: (-e["Created"], e["Id"]))
        return out

    def inspect(self, ns: str, name: str) -> dict:
        r = self.resolve(ns, name)
        cfg = r.config
        imgs = [self.meta.find_image(ns, n) for n in r.names]
        last_tag = max((_tag_time(i) for i in imgs if i is not None), default=0)
        return {
            "Id": r.config_digest,
            "RepoTags": self._repo_tags(r),
            "RepoDigests": self._repo_digests(r),
            "Parent": "",
            "Comment": _last_comment(cfg),
            "Created": cfg.get("created") or "",
            "DockerVersion": cfg.get("docker_version") or "",
            "Author": cfg.get("author") or "",
            "Container": cfg.get("container") or "",
            # docker 20.10's legacy field (the builder's container): docker-compose 1.29 reads it to recreate
            "ContainerConfig": _container_config(cfg.get("container_config") or {}),
            "Config": _docker_config(cfg.get("config") or {}),
            "Architecture": cfg.get("architecture") or "",
            **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),  # omitted when empty, as dockerd's
            "Os": cfg.get("os") or "",
            "Size": self._size(r),
            "VirtualSize": self._size(r),
            "GraphDriver": {"Name": self.snapshotter_name, "Data": self._graph_data(r)},
            "RootFS": {"Type": "layers", "Layers": r.diff_ids},
            "Metadata": {"LastTagTime": _rfc3339(last_tag) if last_tag else "0001-01-01T00:00:00Z"},
            "Descriptor": r.target,
        }

    def _graph_data(self, r: Resolved) -> dict[str, str] | None:
        """GraphDriver.Data as dockerd's overlay2 shows an image's: its top layer's directory on
        the host (UpperDir) and those below it, nearest first (LowerDir); None when not unpacked."""
        try:
            dirs = [self.snapshotter.fs_path(c) for c in reversed(imgconfig.chain_ids(r.diff_ids))]
        except BerthError:
            return None
        if not dirs:
            return None
        data = {"UpperDir": dirs[0]}
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(dirs[1:])
        return dict(sorted(data.items()))

    def history(self, ns: str, name: str) -> list[dict]:
        r = self.resolve(ns, name)
        sizes = self.layer_sizes(r)
        if sizes is None:
            sizes = [int(layer.get("size") or 0) for layer in r.layers]
        return imgconfig.history_rows(r.config, image_id=r.config_digest, layer_sizes=sizes,
                                      tags=self._repo_tags(r))

    # --- tag and remove ---

    def tag(self, ns: str, source: str, repo: str, tag: str | None = None) -> str:
        """dockerd's TagImage: the image first, then repo as a reference (its own tag or digest
        replaced by tag when one is given), the default tag for a bare name."""
        r = self.resolve(ns, source)
        ref = refmod.parse_checked(repo, default_tag=None, dockerd_20=True)
        if tag:
            if not refmod.is_tag(tag):
                raise InvalidArgument("invalid tag format")
            ref = refmod.Reference(ref.domain, ref.path, tag=tag)
        elif ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        elif ref.tag is None:
            ref = ref.with_tag(refmod.DEFAULT_TAG)
        _check_names([str(ref)])
        self._put_name(ns, str(ref), r, tagged=True)
        self._drop_untagged(ns, r)
        self.image_event(ns, r, "tag", familiar(str(ref)))
        return str(ref)

    def image_event(self, ns: str, r: Resolved, action: str, name: str) -> None:
        """An image event as dockerd's (its LogImageEvent): the image's ID as the actor, its
        labels and the name as attributes."""
        labels = (r.config.get("config") or {}).get("Labels") or {}
        self.events.publish(ns, "image", action, r.config_digest, **{**labels, "name": name})

    def _drop_untagged(self, ns: str, r: Resolved) -> None:
        for n in r.names:
            if is_untagged_name(n):
                try:
                    self.meta.delete_image(ns, n)
                except NotFound:
                    pass

    def remove(self, ns: str, name: str, force: bool = False, noprune: bool = False,
               in_use: Callable[[Resolved], Any] | None = None) -> list[dict]:
        """docker rmi: untag a name; delete the image when its last name goes (or by ID with -f).
        One at a time: two at once each found the other's name still there (or gone under it)."""
        with self._remove_lock:
            r = self.resolve(ns, name)
            result = self._remove(ns, name, r, force, noprune, in_use)
        # dockerd's: an untag per name gone and the image's delete, each named by the image's ID
        # (the layers' Deleted items have no event)
        for item in result:
            if "Untagged" in item:
                self.image_event(ns, r, "untag", r.config_digest)
            elif item.get("Deleted") == r.config_digest:
                self.events.publish(ns, "image", "delete", r.config_digest, name=r.config_digest)
        return result

    def _remove(self, ns: str, name: str, r: Resolved, force: bool, noprune: bool,
                in_use: Callable[[Resolved], Any] | None) -> list[dict]:
        by_name = None
        try:
            ref = refmod.parse(name)
            if self.meta.find_image(ns, str(ref)) is not None:
                by_name = str(ref)
        except InvalidArgument:
            pass
        users = in_use(r) if in_use else []
        result = []
        if by_name is not None:
            remaining = [n for n in r.names if n != by_name]
            if not remaining and users and not force:
                raise FailedPrecondition(f'conflict: unable to remove repository reference "{name}" '
                                         f'(must force) - container {users[0][:12]} is using its referenced image '
                                         f'{r.config_digest[7:19]}')
            self.meta.delete_image(ns, by_name)
            result.append({"Untagged": familiar(by_name)})
            if not is_digest_name(by_name):
                # as dockerd: the repository's last tag takes its digest references with it
                repo = repo_of(by_name)
                if not any(repo_of(n) == repo for n in remaining if not is_untagged_name(n) and not is_digest_name(n)):
                    for n in [n for n in remaining if is_digest_name(n) and repo_of(n) == repo]:
                        self.meta.delete_image(ns, n)
                        result.append({"Untagged": familiar(n)})
                        remaining.remove(n)
            if remaining:
                return result
            if getattr(users, "running", None):  # a running container keeps the image, dangling (docker)
                self.meta.put_image(ns, r.config_digest, r.target)
                return result
        else:
            # docker's isSingleReference: digest references do not count as more repositories
            tagged = [n for n in r.names if not is_untagged_name(n) and not is_digest_name(n)]
            running = getattr(users, "running", users)
            if running:  # docker's hard conflict comes first
                raise FailedPrecondition(f"conflict: unable to delete {r.config_digest[7:19]} (cannot be forced) - "
                                         f"image is being used by running container {running[0][:12]}")
            if len(tagged) > 1 and not force:
                raise FailedPrecondition(f"conflict: unable to delete {r.config_digest[7:19]} (must be forced) - "
                                         "image is referenced in multiple repositories")
            if users and not force:
                raise FailedPrecondition(f"conflict: unable to delete {r.config_digest[7:19]} (must be forced) - "
                                         f"image is being used by stopped container {users[0][:12]}")
            # dockerd's order: the tags, then the digest references
            for n in sorted(r.names, key=is_digest_name):
                self.meta.delete_image(ns, n)
                if not is_untagged_name(n) and {"Untagged": familiar(n)} not in result:
                    result.append({"Untagged": familiar(n)})
        result.append({"Deleted": r.config_digest})
        # its layers go with it, noprune or not: dockerd's noprune keeps an image's untagged
        # parent images, which images here do not have (they left the layers behind)
        report = self.collect()
        result += _deleted_layers(r, {key for _, key in report.snapshots}, set(report.content), self._unpacked)
        return result

    def _unpacked(self, chain: str) -> bool:
        """Whether the layer of that chain ID is unpacked (its snapshot is there)."""
        try:
            self.snapshotter.stat(chain)
            return True
        except NotFound:
            return False

    def collect(self) -> Any:
        return self.meta.collect(self.content, self.snapshotter, snapshotter_name=self.snapshotter_name, grace=0)

    def prune(self, ns: str, all_: bool = False, in_use: Callable[[Resolved], Any] | None = None,
              match: Callable[[Resolved], bool] | None = None) -> dict:
        """docker image prune: dangling images (no name), or with all_ every unused image; with
        match, only those it takes (an image whose config cannot be read is then kept)."""
        gone = []
        for digest, imgs in self._all(ns).items():
            names = [i.name for i in imgs]
            # dockerd's: without a tag (an image with only digest references is pruned too)
            dangling = all(is_untagged_name(n) or is_digest_name(n) for n in names)
            if not dangling and not all_:
                continue
            try:
                r = self._resolved(names, imgs[0].target.to_dict())
            except BerthError:
                r = None
            if r is not None and in_use and in_use(r):
                continue
            if match is not None and (r is None or not match(r)):
                continue
            # each layer's size, read while its snapshot is there (the stored blob's where it is not)
            sizes = (self.layer_sizes(r) or [int(layer.get("size") or 0) for layer in r.layers]) if r else []
            for n in names:
                self.meta.delete_image(ns, n)
            gone.append((names, r, digest, sizes))
        report = self.collect()
        snaps, blobs = {key for _, key in report.snapshots}, set(report.content)
        deleted: list[dict] = []
        reclaimed = 0
        for names, r, digest, sizes in gone:  # each image's names, then itself and its layers, as dockerd lists them
            deleted += [{"Untagged": familiar(n)} for n in sorted(names, key=is_digest_name) if not is_untagged_name(n)]
            deleted.append({"Deleted": r.config_digest if r else digest})
            if r is not None:
                try:
                    size_of = dict(zip(imgconfig.chain_ids(r.diff_ids), sizes))
                except BerthError:
                    size_of = {}
                for d in _deleted_layers(r, snaps, blobs, self._unpacked):
                    if d not in deleted:
                        deleted.append(d)
                        reclaimed += size_of.get(d["Deleted"], 0)
        # dockerd's events: each image's untags and delete (named by its ID), then the prune's
        for names, r, digest, _ in gone:
            image_id = r.config_digest if r else digest
            for n in names:
                if not is_untagged_name(n):
                    if r is not None:
                        self.image_event(ns, r, "untag", image_id)
                    else:
                        self.events.publish(ns, "image", "untag", image_id, name=image_id)
            self.events.publish(ns, "image", "delete", image_id, name=image_id)
        # dockerd's figure: the deleted layers' sizes (their unpacked files), not what the disk got back
        self.events.publish(ns, "image", "prune", "", reclaimed=reclaimed)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # --- recording a new image ---

    def record(self, ns: str, names: list[str], target: dict, resolved: Resolved | None = None,
               moved: dict[str, str] | None = None, tagged: bool = False) -> Resolved:
        """Name an image (or keep it as <none> when it has no name); returns the Resolved.
        moved: gets {name: the ID of the other image it named} of each name taken over.
        tagged: named by a tag, commit, build or import (not a load or pull): the image's
        LastTagTime, as dockerd's."""
        _check_names(names)
        r = resolved or self._resolved(names, target)
        if not names:
            if not any(i.target.digest == target["digest"] for i in self.meta.list_images(ns)):
                self.meta.put_image(ns, r.config_digest, target)
        for n in names:
            old_id = self._put_name(ns, n, r, tagged)
            if old_id is not None and moved is not None:
                moved[n] = old_id
        if names:
            self._drop_untagged(ns, self._resolved(names, target))
        return r

    def _put_name(self, ns: str, name: str, r: Resolved, tagged: bool = False) -> str | None:
        """Point name at r's image; returns the ID of another image it named, if any. An image the
        name leaves, with no other name, stays as an image without a name (<none>), as dockerd
        keeps it: a tag moved by tag, load, pull, commit or build never takes its old image away."""
        old = self.meta.find_image(ns, name)
        records = self.meta.list_images(ns)
        old_id = None
        if old is not None and old.target.digest != r.target["digest"]:
            try:
                old_id = self._resolved([name], old.target.to_dict()).config_digest
            except BerthError:
                old_id = None
            if old_id == r.config_digest:
                old_id = None
            elif old_id is not None and not any(i.target.digest == old.target.digest and i.name != name
                                                for i in records):
                kept = old.labels or {}
                self.meta.put_image(ns, old_id, old.target,
                                    {TAG_TIME_LABEL: kept[TAG_TIME_LABEL]} if TAG_TIME_LABEL in kept else None)
        # the time of the image's last tag, which dockerd keeps with the image ID, is on every
        # record naming the image (so it stays when one of its names goes); a name a load or a
        # pull puts on it takes the image's time, if it has one
        same = [i for i in records if i.target.digest == r.target["digest"]]  # with name's, if its
        stamp = str(time.time_ns()) if tagged else \
            max((i.labels[TAG_TIME_LABEL] for i in same if TAG_TIME_LABEL in (i.labels or {})), key=int, default=None)
        labels = {k: v for k, v in ((old.labels or {}) if old is not None else {}).items() if k != TAG_TIME_LABEL}
        if stamp is not None:
            labels[TAG_TIME_LABEL] = stamp
        self.meta.put_image(ns, name, r.target, labels)
        if tagged:
            for i in same:
                if i.name != name:
                    self.meta.put_image(ns, i.name, i.target, dict(i.labels or {}, **{TAG_TIME_LABEL: stamp}))
        return old_id

    def add_refs(self, target: dict) -> None:
        """Record the content graph of a target for GC: index -> manifests -> config + layers."""
        doc = self.read_json(target["digest"], MAX_MANIFEST, "manifest")
        children = []
        if doc.get("manifests") is not None and "layers" not in doc:
            for m in doc.get("manifests") or []:
                if self.content.exists(m["digest"]):
                    children.append(m["digest"])
                    self.add_refs(m)
        else:
            if doc.get("config"):
                children.append(doc["config"]["digest"])
            children += [layer["digest"] for layer in doc.get("layers") or []]
        self.meta.add_content_refs(target["digest"], children)

    # --- unpacking into snapshots ---

    def unpack(self, r: Resolved, lease: Lease | None = None, ns: str | None = None,
               progress: Callable[[str, str], None] = None, source: Callable[[dict], LayerStream | None] = None) -> str | None:
        """Apply every layer into committed snapshots named by chain ID; returns the top key.
        ``source(layer)``, when given, returns a LayerStream of the layer's bytes as they arrive from
        the registry (or None: read it from the content store, waiting for its download)."""
        diff_ids = r.diff_ids
        layers = r.layers
        if len(diff_ids) != len(layers):
            raise InvalidArgument(f"image {r.config_digest}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        chains = imgconfig.chain_ids(diff_ids)
        parent = None
        with self._unpack_lock:
            for layer, diff_id, chain in zip(layers, diff_ids, chains):
                key = chain
                if lease is not None:
                    # committed layer snapshots are not yet referenced by the image: the lease keeps
                    # them (and their parents) from a collect() that runs before the snapshot ref
                    self.meta.add_lease_resource(ns, lease.id, "snapshot", key, snapshotter=self.snapshotter_name)
                try:
                    self.snapshotter.stat(key)
                except NotFound:
                    report = None
                    if progress:
                        # as dockerd's: "Extracting" with the layer's bytes read so far (a progress
                        # bar, which the docker CLI shows on a terminal only)
                        def report(n: int, d: str = layer["digest"], total: int = int(layer.get("size") or 0)) -> None:
                            progress(d, "Extracting", n, total)
                        report(0)
                    self._apply(layer, diff_id, key, parent, lease, ns, source(layer) if source else None, report)
                    if progress:
                        progress(layer["digest"], "Pull complete")
                parent = key
            if parent is not None:
                self.meta.add_snapshot_ref(r.config_digest, parent, self.snapshotter_name)
        return parent

    def _apply(self, layer: dict, diff_id: str, key: str, parent: str | None, lease: Lease | None, ns: str | None,
               streamed: LayerStream | None = None, report: Callable[[int], None] | None = None) -> None:
        from berth.images.layer import apply_layer
        tmp = f"extract-{secrets.token_hex(6)}-{key}"
        if lease is not None:
            self.meta.add_lease_resource(ns, lease.id, "snapshot", tmp, snapshotter=self.snapshotter_name)
        self.snapshotter.prepare(tmp, parent)
        try:
            mode = "overlay" if self.snapshotter_name == "overlayfs" else "delete"
            f = streamed if streamed is not None else self.content.open(layer["digest"])
            try:
                with Decompressed(f if report is None else _Counted(f, report),
                                  mt.layer_compression(layer.get("mediaType", "")) if
                                   mt.is_layer(layer.get("mediaType", "")) else None) as stream:
                    apply_layer(stream, self.snapshotter.fs_path(tmp), whiteout_mode=mode, compression="none")
                    stream.drain()
                if streamed is not None:
                    streamed.finish()  # the download's own verdict: size and digest of the blob
            except BaseException:
                if streamed is not None:
                    streamed.abort()
                    if streamed.error is not None and not isinstance(streamed.error, LayerStream.Aborted):
                        # the download failed first (a full disk, a cut connection): that is the
                        # cause, not the unpacker's "unexpected end of data" that followed
                        raise streamed.error from None
                raise
            finally:
                if streamed is None:
                    f.close()
            got = "sha256:" + stream.hasher.hexdigest()
            if got != diff_id:
                raise InvalidArgument(f"layer {layer['digest']}: uncompressed digest {got} does not match "
                                      f"diff_id {diff_id}")
            self.snapshotter.commit(key, tmp)
        except BaseException:
            try:
                self.snapshotter.remove(tmp)
            except BerthError:
                pass
            raise

    def ensure_unpacked(self, ns: str, name: str) -> tuple[Resolved, str | None]:
        r = self.resolve(ns, name)
        return r, self.unpack(r)


TAG_TIME_LABEL = "berth.io/last-tag-time"  # ns since the epoch, on an image name record


def _tag_time(img: Any) -> float:
    """When a tag, commit, build or import last named this record's image (0: never: loaded or
    pulled), in seconds."""
    try:
        return int((img.labels or {}).get(TAG_TIME_LABEL) or 0) / 1e9
    except ValueError:
        return 0


def _last_comment(cfg: dict) -> str:
    hist = cfg.get("history") or []
    return (hist[-1].get("comment") or "") if hist else ""


def _rfc3339(t: float) -> str:
    ns = int(t * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _docker_config(c: dict) -> dict:
    keys = ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
            "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint",
            "OnBuild", "Labels", "StopSignal", "Healthcheck", "Shell"]
    out = {k: c.get(k) for k in keys if k in c}
    out.setdefault("Env", c.get("Env"))
    out.setdefault("Cmd", c.get("Cmd"))
    out.setdefault("Entrypoint", c.get("Entrypoint"))
    out.setdefault("WorkingDir", c.get("WorkingDir") or "")
    out.setdefault("User", c.get("User") or "")
    out.setdefault("Labels", c.get("Labels"))
    return out


def _container_config(c: dict) -> dict:
    out = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
           "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
           "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}
    # and those dockerd's container.Config leaves out when empty (omitempty)
    out.update({k: v for k, v in c.items() if k in out or k in ("ExposedPorts", "StopSignal", "Healthcheck",
                                                                   "ArgsEscaped", "NetworkDisabled", "MacAddress",
                                                                   "StopTimeout", "Shell") and v})
    return out


def _match_filters(filters: dict[str, Any], r: Resolved, tags: list[str]) -> bool:
    for key, values in filters.items():
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        if key == "dangling":
            # dockerd's: true lists the images without a tag (those with only digest references
            # too), false those with any reference (so an image with only a digest is in both)
            want = any(str(v).lower() in ("true", "1") for v in values)
            if want and tags or not want and not tags and not any(is_digest_name(n) for n in r.names):
                return False
        elif key == "reference":
            import fnmatch
            ok = False
            refs = tags + [familiar(n) for n in r.names if is_digest_name(n)]
            for pat in values:
                for t in refs:
                    repo = t.split("@", 1)[0]
                    repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
                    if fnmatch.fnmatchcase(t, pat) or fnmatch.fnmatchcase(repo, pat):
                        ok = True
            if not ok:
                return False
        elif key == "label":
            labels = (r.config.get("config") or {}).get("Labels") or {}
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        elif key in ("before", "since"):
            continue
        else:
            raise InvalidArgument(f"Invalid filter '{key}'")
    return True


def _created_bounds(images: ImageService, ns: str, filters: dict[str, Any]) -> tuple[int | None, int | None]:
    """(since's, before's) created times, from the images they name (the last of each filter's
    values, as dockerd's walk keeps; one that is not there: NotFound, in berth's words), after
    what else dockerd 20.10 refuses before listing: dangling other than true/false, a reference
    pattern path.Match cannot read."""
    bounds: dict[str, int | None] = {"since": None, "before": None}
    for key, values in filters.items():
        values = _filter_list(values)
        if key == "dangling" and values not in (["true"], ["false"]):
            raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(values)}]'")
        if key in bounds:
            for v in values:
                bounds[key] = imgconfig.parse_time_ns(images.resolve(ns, v).config.get("created"))
        if key == "reference" and not all(go_pattern_ok(v) for v in values):
            raise InvalidArgument("syntax error in pattern")
    return bounds["since"], bounds["before"]


def _filter_list(values: Any) -> list[str]:
    """A filter's values, in either of docker's shapes ({"v": true} or ["v"]; a lone string too)."""
    if isinstance(values, dict):
        return [k for k, v in values.items() if v]
    return [values] if isinstance(values, str) else list(values)


def go_pattern_ok(pattern: str) -> bool:
    """Go's path.Match reads the pattern (no ErrBadPattern): every [ closed by a ], a class's
    first character neither ] nor -, ranges complete, no trailing backslash."""
    p, n = pattern, len(pattern)

    def esc(i: int) -> int:  # getEsc: the index after one class character, or -1
        if i >= n or p[i] in "-]":
            return -1
        if p[i] == "\\":
            i += 1
            if i >= n:
                return -1
        return i + 1
    i = 0
    while i < n:
        if p[i] == "\\":
            if i + 1 >= n:
                return False
            i += 2
        elif p[i] == "[":
            i += 1
            if i < n and p[i] == "^":
                i += 1
            ranges = 0
            while not (i < n and p[i] == "]" and ranges):
                i = esc(i)
                if i >= 0 and i < n and p[i] == "-":
                    i = esc(i + 1)
                if i < 0:
                    return False
                ranges += 1
            i += 1
        else:
            i += 1
    return True


