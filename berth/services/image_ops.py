"""Image use-cases that combine the image service with the containers: docker images (a
reference filter narrows the names shown), rmi and image prune (an image a container uses is
kept, as docker's)."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from berth.services.containers import ContainerService
    from berth.services.images import ImageService


def _values(filters: dict, key: str) -> list[str] | None:
    from berth.services.filtermatch import filter_values
    v = filters.get(key)
    return None if v is None else filter_values(v)


def list_images(images: ImageService, ns: str, all_: bool = False, filters: dict | None = None,
                digests: bool = False, shared_size: bool = False) -> list[dict]:
    """docker images: as dockerd, with a reference filter an image lists only the names that
    match it (`images hello-world` does not show the image's other tags); shared_size (API
    1.42): each image's SharedSize counted (-1 otherwise, as dockerd)."""
    filters = filters or {}
    data = images.list(ns, all_, filters, digests)
    refs = _values(filters, "reference")
    data = _only_matching_names(data, refs) if refs else data
    if shared_size:
        from berth.services.export import with_shared_sizes
        counted, _sizes = with_shared_sizes(images, ns, images.list(ns, True))
        shared = {img["Id"]: img["SharedSize"] for img, _d in counted}
        data = [dict(img, SharedSize=shared.get(img["Id"], -1)) for img in data]
    return data


def remove_image(images: ImageService, containers: ContainerService, ns: str, name: str, force: bool = False,
                 noprune: bool = False) -> list[dict]:
    """docker rmi: refused (without force) while a container uses the image."""
    return images.remove(ns, name, force, noprune, containers.image_users(ns))


_PRUNE_FILTERS = ("dangling", "label", "label!", "until")


def prune_images(images: ImageService, containers: ContainerService, ns: str,
                 filters: dict | None = None) -> dict:
    """docker image prune: dangling images; with dangling=false (-a) every image no container uses;
    until= (made before that time), label= and label!= (the image's labels) narrow it. The
    filters are checked as dockerd's, with its words (400)."""
    from berth.errors import InvalidArgument
    filters = filters or {}
    f = {k: list(v) if isinstance(v, dict) else _values(filters, k) or [] for k, v in filters.items()}
    for k in f:
        if k not in _PRUNE_FILTERS:
            raise InvalidArgument(f"Invalid filter '{k}'")
    all_ = False
    if "dangling" in f:
        d = f["dangling"]
        if not d or "false" in d or "0" in d:
            all_ = True
        elif "true" not in d and "1" not in d:
            raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(d)}]'")
    until = None
    if f.get("until"):
        if len(f["until"]) > 1:
            raise InvalidArgument("more than one until filter specified")
        from berth.gotime import get_timestamp
        try:
            until = get_timestamp(f["until"][0])
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    match = None
    if until is not None or f.get("label") or "label!" in f:
        from berth.images import config as imgconfig

        def match(r) -> bool:
            if until is not None and imgconfig.parse_time(r.config.get("created")) > until:
                return False
            labels = (r.config.get("config") or {}).get("Labels") or {}
            if not _match_kv_list(f.get("label") or [], labels):
                return False
            return "label!" not in f or not _match_kv_list(f["label!"], labels)
    return images.prune(ns, all_, containers.image_users(ns), match)


def _match_kv_list(wanted: list[str], labels: dict) -> bool:
    """docker's filters.MatchKVList: every KEY or KEY=VALUE is among the labels (none asked: true)."""
    if not wanted:
        return True
    if not labels:
        return False
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or eq and labels[k] != v:
            return False
    return True


def ref_match(pattern: str, name: str) -> bool:
    """docker's reference.FamiliarMatch: path.Match against "repo:tag", then against "repo"
    (a `*` does not cross a `/`)."""
    def match(pat: str, s: str) -> bool:
        pp, ss = pat.split("/"), s.split("/")
        return len(pp) == len(ss) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(ss, pp))
    repo = name.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return match(pattern, name) or match(pattern, repo)


def _only_matching_names(images: list[dict], patterns: list[str]) -> list[dict]:
    out = []
    for img in images:
        tags = [t for t in img.get("RepoTags") or [] if any(ref_match(p, t) for p in patterns)]
        digests = [t for t in img.get("RepoDigests") or [] if any(ref_match(p, t) for p in patterns)]
        if not tags and not digests:
            continue
        out.append(dict(img, RepoTags=tags, RepoDigests=digests))
    return out
