"""The names of image records: a full normalised reference, repo@digest (a RepoDigest: the
manifest a pull or a push of that repository named, as dockerd's digest references), or
"sha256:<config hex>" for an image that has no name (docker's <none>)."""

from __future__ import annotations

from berth.oci import reference as refmod


def is_untagged_name(name: str) -> bool:
    """sha256:<config hex>: the record of an image without a name (docker's <none>)."""
    return name.startswith("sha256:")


def is_digest_name(name: str) -> bool:
    """repo@sha256:... (what a pull or a push named): a RepoDigest, never a RepoTag."""
    return "@" in name and not is_untagged_name(name)


def familiar(name: str) -> str:
    """The name as docker shows it (busybox:latest, not docker.io/library/busybox:latest)."""
    if is_untagged_name(name):
        return "<none>:<none>"
    return refmod.parse(name).familiar()


def repo_of(name: str) -> str:
    """The repository of a tag or digest name (docker.io/library/busybox of ...busybox:1)."""
    return refmod.parse(name, default_tag=None).name


def no_such_image(shown: str, ns: str) -> str:
    """dockerd's words for an image a lookup missed (docker clients look for "No such image":
    docker-py's ImageNotFound), the namespace named when it is not the default one."""
    return f"No such image: {shown}" if ns == "default" else f'No such image: {shown} (namespace "{ns}")'
