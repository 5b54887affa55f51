"""docker export (a container's filesystem as a tar, without its volumes), the sizes of a
container (SizeRw, SizeRootFs: ps -s, inspect --size) and the disk usage report (system df)."""

from __future__ import annotations

import contextlib
import os

from berth.errors import BerthError
from berth.services.createspec import mounts_of

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterator

    from berth.metadata.records import Container
    from berth.services.archive import Archive
    from berth.services.containers import ContainerService
    from berth.services.volumes import VolumeService


@contextlib.contextmanager
def _rootfs(svc: ContainerService, rec: Container) -> Iterator[int]:
    """A directory fd of the container's own filesystem (its snapshot: no volumes, no /proc)."""
    st = svc.state(rec)
    path = svc.rootfs(rec.id)
    if st["Running"] and os.path.ismount(path):
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
        return
    with svc.temporary_mount(rec, "export-") as tmp:
        fd = os.open(tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)


def export(svc: ContainerService, ns: str, ref: str) -> Archive:
    """GET /containers/{id}/export: an Archive-like iterator of tar bytes (close() it)."""
    from berth.archive.tar import tar_stream
    from berth.services.archive import Archive
    rec = svc.get(ns, ref)
    stack = contextlib.ExitStack()
    try:
        rootfd = stack.enter_context(_rootfs(svc, rec))
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rootfd)
        stack.callback(os.close, dfd)

        from berth.archive.tar import owner_names
        names = owner_names(rootfd)  # (the owners' names as the container's files give them, dockerd's)
        remap = svc.remapped(rec)
        ids = remap.to_container if remap is not None else None  # (dockerd's: a remapped one's own ids)

        def chunks() -> Iterator[bytes]:
            for name in sorted(os.listdir(dfd)):
                prev = None
                for c in tar_stream(dfd, name, name, names=names, ids=ids):
                    if prev is not None:
                        yield prev
                    prev = c  # the last chunk of each stream is its end-of-archive blocks: dropped
            yield bytes(1024)
        svc.events.container(ns, rec, "export")
        return Archive(stack, None, chunks())
    except BaseException:
        stack.close()
        raise


def _du(path: str) -> int:
    total = 0
    seen = set()
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def size_rw(svc: ContainerService, rec: Container) -> int:
    """The size of what the container changed (its snapshot's upper directory)."""
    from berth.services.changes import _overlay_dirs
    try:
        dirs = _overlay_dirs(svc, rec)
    except BerthError:
        return 0
    if dirs is None:
        return 0
    total = _du(dirs[0])
    # dockerd's init layer is not the container's: its /etc/mtab link (.dockerenv is empty) not counted
    mtab = os.path.join(dirs[0], "etc", "mtab")
    try:
        if os.readlink(mtab) == "/proc/mounts":
            total -= os.lstat(mtab).st_size
    except OSError:
        pass
    return total


def image_size(svc: ContainerService, rec: Container) -> int:
    try:
        r = svc.images._resolved([], _target_of(svc, rec))
        return svc.images._size(r)
    except (BerthError, KeyError, TypeError):
        return 0


def _target_of(svc: ContainerService, rec: Container) -> dict | None:
    for img in svc.meta.list_images(rec.namespace):
        try:
            r = svc.images._resolved([img.name], img.target.to_dict())
        except BerthError:
            continue
        if r.config_digest == rec.image:
            return img.target.to_dict()
    raise KeyError(rec.image)


def sizes(svc: ContainerService, rec: Container, image_sizes: dict[str, int] | None = None) -> tuple[int, int]:
    """(SizeRw, SizeRootFs) of a container."""
    rw = size_rw(svc, rec)
    if image_sizes is not None and rec.image in image_sizes:
        return rw, rw + image_sizes[rec.image]
    return rw, rw + image_size(svc, rec)


def image_sizes(svc: ContainerService, ns: str) -> dict[str, int]:
    """{config digest: size} of a namespace's images (as `images` shows them)."""
    out = {}
    for img in svc.images.list(ns):
        out[img["Id"]] = img.get("Size") or 0
    return out


def with_shared_sizes(images_svc, ns: str, listing: list[dict]) -> tuple[list[tuple[dict, list[str]]], dict[str, int]]:
    """Image summaries (copies) with their SharedSize, what their layers hold that another image
    of the namespace has too, as dockerd counts it: [(summary, its layers' digests)] and each
    layer's size."""
    images: list[tuple[dict, list[str]]] = []
    layer_users: dict[str, int] = {}
    layer_size: dict[str, int] = {}
    for img in listing:
        digests: list[str] = []
        try:
            r = images_svc.resolve(ns, img["Id"])
            unpacked = images_svc.layer_sizes(r)  # dockerd's layer sizes where the snapshots give them
            for i, layer in enumerate(r.layers):
                d = layer.get("digest")
                layer_users[d] = layer_users.get(d, 0) + 1
                layer_size[d] = unpacked[i] if unpacked is not None else int(layer.get("size") or 0)
            digests = [layer.get("digest") for layer in r.layers]
        except BerthError:
            pass
        images.append((dict(img), digests))
    for img, digests in images:
        img["SharedSize"] = sum(layer_size[d] for d in digests if layer_users.get(d, 0) > 1)
    return images, layer_size


def disk_usage(svc: ContainerService, ns: str, volumes_service: VolumeService | None = None) -> dict:
    """GET /system/df: docker's DiskUsage (LayersSize, Images, Containers, Volumes, BuildCache)."""
    isz = image_sizes(svc, ns)
    containers = []
    users = {}
    for rec in svc.meta.list_containers(ns):
        st = svc.state(rec)
        item = svc._summary(rec, st)
        item["SizeRw"], item["SizeRootFs"] = sizes(svc, rec, isz)
        containers.append(item)
        users[rec.image] = users.get(rec.image, 0) + 1
    images, layer_size = with_shared_sizes(svc.images, ns, svc.images.list(ns))
    for img, _digests in images:
        img["Containers"] = users.get(img["Id"], 0)
    vols = []
    if volumes_service is not None:
        try:
            listing = volumes_service.list(ns)
            vols = listing.get("Volumes") if isinstance(listing, dict) else listing
        except BerthError:
            vols = []
        used = {}
        for rec in svc.meta.list_containers(ns):
            for m in mounts_of(rec):
                if m.get("Type") == "volume" and m.get("Name"):
                    used[m["Name"]] = used.get(m["Name"], 0) + 1
        out = []
        for v in vols or []:
            v = dict(v)
            size = _du(v["Mountpoint"]) if v.get("Mountpoint") and os.path.isdir(v["Mountpoint"]) else -1
            v["UsageData"] = {"Size": size, "RefCount": used.get(v["Name"], 0)}
            out.append(v)
        vols = out
    configs = sum(max(int(img.get("Size") or 0) - sum(layer_size.get(d, 0) for d in digests), 0)
                  for img, digests in images)
    return {"LayersSize": sum(layer_size.values()) + configs, "Images": [img for img, _digests in images],
            "Containers": containers, "Volumes": vols, "BuildCache": []}
