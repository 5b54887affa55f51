"""Making images from snapshots: a snapshot's changes as a layer, a new image from a parent
image plus layers and config changes, and `commit` (a container as an image).

Shared by the builder (each RUN / COPY / WORKDIR step) and POST /commit. Blocking: run in a
worker thread.
"""

from __future__ import annotations

import contextlib
import json
import logging

from berth.errors import BerthError, FailedPrecondition, InvalidArgument
from berth.gotime import rfc3339nano as now_rfc3339
from berth.images import config as imgconfig
from berth.oci import mediatypes as mt

log = logging.getLogger("berthd")

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Callable, Sequence

    from berth.images.diff import TarWriter
    from berth.metadata.records import Container
    from berth.services.containers import ContainerService
    from berth.services.images import ImageService, Resolved

EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def snapshot_diff(images: ImageService, key: str, ids: Callable[[int, int], tuple[int, int]] | None = None,
                  name_ids: Callable[[int, int], tuple[int, int]] | None = None) -> tuple[str | None, dict | None]:
    """The changes of the active snapshot ``key`` over its parent, stored as a layer.
    Returns (diff_id, layer descriptor), or (None, None) when nothing changed. ids: how the
    files' owners are recorded (a remapped container's: userns.Remap.to_container); name_ids:
    the ids whose host names are recorded (a remapped daemon's COPY: to_host, as dockerd, which
    writes such files with those ids, looks their names up, then records its containers' ids)."""
    from berth.images import diff
    sn = images.snapshotter
    upper = sn.fs_path(key)
    if images.snapshotter_name == "overlayfs":
        lowers = []
        for m in sn.mounts(key):
            for o in m.options:
                if o.startswith("lowerdir="):
                    lowers = o[len("lowerdir="):].split(":")

        def produce(tw: TarWriter) -> None:
            diff.write_overlay_diff(upper, tw, lowers)
    else:
        parent = sn.stat(key).parent
        lower = sn.fs_path(parent) if parent else None

        def produce(tw: TarWriter) -> None:
            diff.write_tree_diff(lower, upper, tw)
    counter = {}

    def counted(tw: TarWriter) -> None:
        tw.ids, tw.name_ids = ids, name_ids
        produce(tw)
        counter["n"] = tw.count
    diff_id, desc = diff.store_layer(images.content, counted)
    if counter.get("n", 0) == 0:
        return None, None  # an empty layer: docker records the step as empty_layer
    return diff_id, desc


def base_config(images: ImageService, parent: Resolved | None) -> dict:
    """The config document a new image starts from (a copy of the parent's, or scratch's)."""
    if parent is None:
        plat = imgconfig.host_platform()
        doc = {"architecture": plat["architecture"], "os": plat["os"], "config": {},
               "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        if plat.get("variant"):
            doc["variant"] = plat["variant"]
        return doc
    return json.loads(json.dumps(parent.config))


def write_image(images: ImageService, ns: str, parent: Resolved | None, doc: dict,
                new_layers: list[tuple[str, dict]], history: list[dict], names: Sequence[str] = (),
                keep: bool = True) -> Resolved:
    """Store a new image: ``doc`` (the config, e.g. from base_config, its "config" already
    changed), the parent's layers plus ``new_layers`` [(diff_id, descriptor)], ``history``
    entries appended. Named with ``names`` (else kept as an untagged image when ``keep``).
    Returns the Resolved image."""
    doc = dict(doc)
    created = history[-1].get("created") if history else now_rfc3339()
    doc["created"] = created
    diff_ids = list((doc.get("rootfs") or {}).get("diff_ids") or [])
    layers = list(parent.layers) if parent is not None else []
    for diff_id, desc in new_layers:
        diff_ids.append(diff_id)
        layers.append(desc)
    doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    doc["history"] = list(doc.get("history") or []) + list(history)
    config_data = json.dumps(doc, separators=(",", ":")).encode()
    config_digest = images.content.write_blob(config_data)
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config_data)},
                "layers": layers}
    mdata = json.dumps(manifest, separators=(",", ":")).encode()
    mdigest = images.content.write_blob(mdata)
    target = {"mediaType": mt.OCI_MANIFEST, "digest": mdigest, "size": len(mdata)}
    images.add_refs(target)
    if names or keep:
        return images.record(ns, list(names), target, tagged=True)  # commit's names: a tag
    return images._resolved([], target)


def container_config(containers: ContainerService, rec: Container,
                     changes: Sequence[str] = ()) -> tuple[dict, dict, dict]:
    """(image config, container config, new config) of a commit, as dockerd makes them: the
    container's own Config (the create's merged with its image's: what inspect shows), the
    ``changes`` (Dockerfile instructions) applied to it, the result merged over it again."""
    from berth.images.imports import apply_changes, merge_config
    img = containers.images.read_json(rec.image, 20 << 20, "image config")
    base = containers.container_config(rec)
    return img, base, merge_config(apply_changes(changes, base), base)


def commit(containers: ContainerService, ns: str, ref: str, repo: str | None = None, tag: str | None = None,
           changes: Sequence[str] = (), comment: str | None = None, author: str | None = None, pause: bool = True) -> dict:
    """`docker commit`: the container's changes as a new layer on its image."""
    images = containers.images
    rec = containers.get(ns, ref)
    names = []
    if repo:
        from berth.oci import reference as refmod
        target_s = f"{repo}:{tag}" if tag else repo
        r = refmod.parse_checked(target_s, dockerd_20=True)
        if r.digest:
            raise InvalidArgument(f'refusing to create a tag with a digest reference: "{target_s}"')
        names.append(str(r))
    elif tag:
        raise InvalidArgument("tag is specified without repo")
    if isinstance(changes, str):
        changes = [changes]
    img, cc, cfg = container_config(containers, rec, changes)  # bad changes: refused before anything
    parent = images.resolve(ns, rec.image)
    if rec.snapshot_key is None:
        raise FailedPrecondition(f"container {rec.id} has no filesystem to commit")
    # paused until the image and its events are there, as dockerd's (its unpause is deferred)
    with containers.paused_for_commit(ns, rec.id) if pause else contextlib.nullcontext():
        remap = containers.remapped(rec)
        diff_id, desc = snapshot_diff(images, rec.snapshot_key, remap.to_container if remap is not None else None)
        doc = base_config(images, parent)
        doc["config"] = cfg
        doc["container"] = rec.id
        doc["container_config"] = cc
        if author:
            doc["author"] = author
        else:
            doc.pop("author", None)
        spec = rec.spec_json() or {}
        cmd = spec.get("Cmd") or (img.get("config") or {}).get("Cmd") or []
        h = {"created": now_rfc3339(), "created_by": " ".join(cmd)}
        if author:
            h["author"] = author
        if comment:
            h["comment"] = comment
        new_layers = []
        if diff_id is None:
            h["empty_layer"] = True
        else:
            new_layers.append((diff_id, desc))
        r = write_image(images, ns, parent, doc, new_layers, [h], names=names)
        if new_layers:
            # the new layer unpacked, as dockerd registers a committed layer: its size is then that of
            # its files (as dockerd's) and a run of the image needs no unpacking; a failure here
            # leaves that to the first run
            try:
                images.unpack(r)
            except (BerthError, OSError) as e:
                log.warning("commit %s: unpacking its new layer: %s", r.config_digest[7:19], e)
        # dockerd's: the new name's tag event, then the commit's with what it made
        from berth.images.names import familiar
        for n in names:
            images.image_event(ns, r, "tag", familiar(n))
        containers.events.container(ns, rec, "commit", comment=comment or "", imageID=r.config_digest,
                                    imageRef=familiar(names[0]) if names else "")
    return {"Id": r.config_digest}
