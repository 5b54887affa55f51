"""Images and archives: load (docker-archive and OCI layouts), save and import (a rootfs tar
made an image), as a mixin of berth.services.images.ImageService."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO

from berth.errors import InvalidArgument, NotFound
from berth.images.names import familiar, is_digest_name, is_untagged_name, no_such_image
from berth.oci import reference as refmod
from berth.services.image_registry import Progress, short, transfer_progress

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from berth.services.images import Resolved


class ArchiveOps:
    """load, save (prepare_save, save) and import_ of ImageService."""

    def load(self, ns: str, fileobj: BinaryIO, quiet: bool = False,
             progress: Progress | None = None) -> list[list[str]]:
        from berth.images.archive import load_archive
        progress = progress or (lambda m: None)
        with self.meta.lease(ns, ttl=3600, labels={"berth.io/load": "1"}) as lease:
            loaded = load_archive(fileobj, self.content)
            for img in loaded:
                self.meta.add_lease_resource(ns, lease.id, "content", img.target["digest"])
            for img in loaded:
                self.add_refs(img.target)
                r = self._resolved(list(img.names), img.target)
                self.unpack(r, lease=lease, ns=ns, progress=None if quiet else _loading_bars(progress, r))
                moved: dict[str, str] = {}
                self.record(ns, list(img.names), img.target, r, moved=moved)
                if img.names:
                    for n in img.names:
                        if n in moved:  # dockerd's words (quiet or not), the old image's ID
                            progress({"stream": f"The image {familiar(n)} already exists, renaming the old one with ID "
                                                f"{moved[n]} to empty string\n"})
                        progress({"stream": f"Loaded image: {familiar(n)}\n"})
                else:
                    progress({"stream": f"Loaded image ID: {r.config_digest}\n"})
                self.image_event(ns, r, "load", r.config_digest)  # dockerd's
        return [i.names for i in loaded]

    def prepare_save(self, ns: str, names: list[str]) -> list[tuple[list[str], dict]]:
        """The images names ask for, each once (dockerd's: an image named twice, by a tag and
        by its ID say, is one entry of the archive, with the tags asked for)."""
        images: dict[str, tuple[list[str], dict]] = {}
        for n in names:
            try:
                r = self.resolve(ns, n)
            except NotFound:
                raise NotFound(_save_missing(n, ns)) from None
            try:
                ref = refmod.parse(n)
                picked = [str(ref)] if self.meta.find_image(ns, str(ref)) is not None else []
            except InvalidArgument:
                picked = []
            by_id = r.config_digest.split(":", 1)[-1].startswith(n.split("sha256:", 1)[-1]) and \
                (n.startswith("sha256:") or all(c in "0123456789abcdef" for c in n))
            if not picked and not by_id:  # an image saved by its ID gets no RepoTags, as docker's
                picked = [x for x in r.names if not is_untagged_name(x)]
            # an archive's RepoTags hold tags only (docker saves repo@digest without a name)
            picked = [x for x in picked if not is_digest_name(x)]
            tags, _target = images.setdefault(r.config_digest, ([], r.target))  # by image ID
            tags.extend(x for x in picked if x not in tags)
        return list(images.values())

    def save(self, ns: str, images: list[tuple[list[str], dict]], fileobj: BinaryIO) -> None:
        from berth.images.archive import save_archive
        save_archive(fileobj, self.content, images)
        for names, target in images:  # dockerd's, each image once it is written
            r = self._resolved(list(names), target)
            self.image_event(ns, r, "save", r.config_digest)

    def import_(self, ns: str, fileobj: BinaryIO, repo: str | None = None, tag: str | None = None,
                changes: Sequence[str] = (), message: str | None = None, platform: str | None = None,
                progress: Progress | None = None) -> str:
        from berth.images.imports import apply_changes, import_rootfs
        progress = progress or (lambda m: None)
        name = None
        if repo:
            ref = refmod.parse(f"{repo}:{tag}" if tag else repo)
            if ref.digest:
                raise InvalidArgument("import: the target must be a name, not a digest")
            name = str(ref)
        apply_changes(list(changes))  # refuse a bad --change before reading anything
        with self.meta.lease(ns, ttl=3600, labels={"berth.io/import": "1"}) as lease:
            desc, config_digest = import_rootfs(fileobj, self.content, changes=list(changes), message=message,
                                                platform=platform)
            desc = dict(desc) if not isinstance(desc, dict) else desc
            self.meta.add_lease_resource(ns, lease.id, "content", desc["digest"])
            self.add_refs(desc)
            r = self._resolved([name] if name else [], desc)
            self.unpack(r, lease=lease, ns=ns)
            self.record(ns, [name] if name else [], desc, r, tagged=True)
        if name:  # dockerd's: the tag, then the import
            self.image_event(ns, r, "tag", familiar(name))
        self.image_event(ns, r, "import", r.config_digest)
        progress({"status": r.config_digest})
        return r.config_digest


def _loading_bars(progress: Progress, r: Resolved) -> Callable[[str, str], None]:
    """As docker's load: a full "Loading layer" bar for each layer new to this engine."""
    ids = {b["digest"]: (short(diff), b.get("size", 0)) for b, diff in zip(r.layers, r.diff_ids)}

    def layer_done(digest: str, status: str, *_detail: int) -> None:
        if status == "Pull complete" and digest in ids:
            transfer_progress(progress, "Loading layer", *ids[digest])(ids[digest][1])
    return layer_done


def _save_missing(n: str, ns: str) -> str:
    """dockerd's words for a name `docker save` did not find: a tag or digest the reference store
    lacks, a bare name as it was given (looked up as an image ID after the store had no tag of it)."""
    try:
        ref = refmod.parse(n, default_tag=None)
    except InvalidArgument:
        ref = None
    if ref is not None and (ref.tag or ref.digest) and ref.familiar_name() != "sha256":
        return "reference does not exist"
    return no_such_image(n, ns)

