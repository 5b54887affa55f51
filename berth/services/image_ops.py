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
    v = filters.get(key)
    if v is None:
        return None
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def list_images(images: ImageService, ns: str, all_: bool = False, filters: dict | None = None,
                digests: bool = False) -> list[dict]:
    """docker images: as dockerd, with a reference filter an image lists only the names that
    match it (`images hello-world` does not show the image's other tags)."""
    filters = filters or {}
    data = images.list(ns, all_, filters, digests)
    refs = _values(filters, "reference")
    return _only_matching_names(data, refs) if refs else data


def remove_image(images: ImageService, containers: ContainerService, ns: str, name: str, force: bool = False,
                 noprune: bool = False) -> list[dict]:
    """docker rmi: refused (without force) while a container uses the image."""
    return images.remove(ns, name, force, noprune, containers.image_users(ns))


def prune_images(images: ImageService, containers: ContainerService, ns: str,
                 filters: dict | None = None) -> dict:
    """docker image prune: dangling images; with dangling=false (-a) every image no container uses."""
    dangling = _values(filters or {}, "dangling") or ["true"]
    all_ = any(v.lower() in ("false", "0") for v in dangling)  # dockerd takes any other value as true
    return images.prune(ns, all_, containers.image_users(ns))


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
