"""ImageService: the k8s.io namespace's images, by the services' image use-cases."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc

from berth.cri import NAMESPACE
from berth.cri import api_pb2 as pb
from berth.cri import api_pb2_grpc, convert
from berth.cri.errors import Abort, code_of, rpc, unimplemented
from berth.errors import BerthError, InvalidArgument, NotFound
from berth.goquote import marshal as go_marshal, quote

if TYPE_CHECKING:
    from berth.services import Services
    from berth.services.images import Resolved

NS = NAMESPACE


def _auth(a: pb.AuthConfig | None) -> dict[str, str] | None:
    """CRI AuthConfig -> the services' auth dict (docker's X-Registry-Auth shape)."""
    if a is None:
        return None
    user, password = a.username, a.password
    if a.auth and not user:
        import base64
        try:
            user, _, password = base64.b64decode(a.auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("auth: not base64 of user:password") from None
    out = {"serveraddress": a.server_address}
    if a.identity_token:
        out["identitytoken"] = a.identity_token
    elif a.registry_token:
        out["identitytoken"] = a.registry_token
    if user:
        out.update(username=user, password=password)
    return out if len(out) > 1 else None


def _parse_for_pull(ref: str) -> str:
    """The reference PullImage pulls, normalised (docker.io/library/busybox:latest); one that does
    not parse is refused in containerd's words (its CRI, distribution's reference errors)."""
    from berth.oci import reference as refmod
    try:
        return str(refmod.parse(ref))
    except InvalidArgument as e:
        why = "invalid reference format"
        if "must be lowercase" in str(e):
            why += ": repository name must be lowercase"
        raise Abort(grpc.StatusCode.UNKNOWN, f"failed to parse image reference {quote(ref)}: {why}") from None


def _pull_error(canon: str, e: BerthError) -> Abort:
    """A failed pull in containerd's CRI's words: `failed to pull and unpack image "<ref>": ...`,
    a reference the registry does not know as its resolver says it (`failed to resolve reference
    "<ref>": <ref>: not found`, NOT_FOUND), a registry that cannot be reached or refuses the
    resolve likewise under `failed to resolve reference` (UNKNOWN, as containerd's code)."""
    from berth.remotes.transport import ConnectionFailed
    msg = str(e)
    if isinstance(e, NotFound) and msg.startswith("manifest"):
        return Abort(grpc.StatusCode.NOT_FOUND, f"failed to pull and unpack image {quote(canon)}: failed to resolve reference "
                                 f"{quote(canon)}: {canon}: not found")
    if isinstance(e, ConnectionFailed):  # (containerd's resolver: "failed to do request: " before Go's words)
        if '": dial tcp ' in msg:
            msg = "failed to do request: " + msg
        msg = f"failed to resolve reference {quote(canon)}: {msg}"
    return Abort(code_of(e) if isinstance(e, NotFound) else grpc.StatusCode.UNKNOWN,
                 f"failed to pull and unpack image {quote(canon)}: {msg}")


def repo_tags_digests(r: Resolved) -> tuple[list[str], list[str]]:
    """An image's full repo tags and its repo digests: the digest references its pulls recorded,
    as containerd's CRI (an imported image has none: `crictl images --digests` shows <none>)."""
    from berth.services.images import is_digest_name, is_untagged_name
    tags = [n for n in r.names if not is_untagged_name(n) and not is_digest_name(n)]
    return tags, [n for n in r.names if is_digest_name(n)]


def content_size(r: Resolved) -> int:
    """An image's size as containerd's CRI reports it: the content it is made of, its index (if its
    target is one), its manifest, config and layers, as stored (compressed)."""
    try:
        size = int(r.manifest_desc.get("size") or 0) + int((r.manifest.get("config") or {}).get("size") or 0)
        size += sum(int(layer.get("size") or 0) for layer in r.layers)
        if r.target.get("digest") != r.manifest_desc.get("digest"):
            size += int(r.target.get("size") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0
    return size


class ImageServicer(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, services: Services) -> None:
        self.d = services  # berth.services.Services
        self.images = services.images
        self._fs: tuple[float, pb.ImageFsInfoResponse] | None = None  # (monotonic time, ImageFsInfoResponse)

    def _image(self, r: Resolved, size: int) -> pb.Image:
        tags, repos = repo_tags_digests(r)
        # no spec: containerd 1.6 gives none (null in crictl's JSON)
        img = pb.Image(id=r.config_digest, repo_tags=tags, repo_digests=repos, size=content_size(r) or size)
        user = ((r.config or {}).get("config") or {}).get("User") or ""
        name = user.split(":", 1)[0]
        if name.isdigit():
            img.uid.value = int(name)
        elif name:
            img.username = name
        return img

    def _sizes(self) -> dict[str, int]:
        return {i["Id"]: int(i.get("Size") or 0) for i in self.images.list(NS)}

    @rpc
    def ListImages(self, request: pb.ListImagesRequest, context: grpc.ServicerContext) -> pb.ListImagesResponse:
        # every image, whatever the filter: containerd's CRI does not apply it (a kubelet sends
        # none), so `crictl images <name>` lists them all there
        sizes = self._sizes()
        out = []
        for image_id, size in sizes.items():
            try:
                out.append(self._image(self.images.resolve(NS, image_id), size))
            except BerthError:
                continue
        return pb.ListImagesResponse(images=out)

    @rpc
    def ImageStatus(self, request: pb.ImageStatusRequest, context: grpc.ServicerContext) -> pb.ImageStatusResponse:
        try:
            r = self.images.resolve(NS, request.image.image)
        except NotFound:
            return pb.ImageStatusResponse()  # no image: an empty answer, not an error (the CRI's rule)
        img = self._image(r, self._sizes().get(r.config_digest, 0))
        info = {}
        if request.verbose:
            from berth.images.config import chain_ids
            chain = chain_ids(r.diff_ids)
            info["info"] = go_marshal({"chainID": chain[-1] if chain else "", "imageSpec": r.config,
                                       "manifest": r.manifest, "berthNamespace": NS})
        return pb.ImageStatusResponse(image=img, info=info)

    @rpc
    def PullImage(self, request: pb.PullImageRequest, context: grpc.ServicerContext) -> pb.PullImageResponse:
        convert.reject_nul(request)
        ref = request.image.image
        if not ref:
            raise InvalidArgument("no image given")
        auth = _auth(request.auth if request.HasField("auth") else None)
        canon = _parse_for_pull(ref)
        try:
            self.images.pull(NS, ref, auth=auth)
        except BerthError as e:
            raise _pull_error(canon, e) from None
        r = self.images.resolve(NS, ref)
        return pb.PullImageResponse(image_ref=r.config_digest)

    @rpc
    def RemoveImage(self, request: pb.RemoveImageRequest, context: grpc.ServicerContext) -> pb.RemoveImageResponse:
        try:
            r = self.images.resolve(NS, request.image.image)
        except NotFound:
            return pb.RemoveImageResponse()  # removed already: idempotent
        self.images.remove(NS, r.config_digest, force=True)
        return pb.RemoveImageResponse()

    @rpc
    def ImageFsInfo(self, request: pb.ImageFsInfoRequest, context: grpc.ServicerContext) -> pb.ImageFsInfoResponse:
        """The snapshots' disk use, measured at most every 10 s (the kubelet asks often)."""
        now = time.monotonic()
        if self._fs is None or now - self._fs[0] > 10:
            self._fs = (now, self._measure())
        return self._fs[1]

    def _measure(self) -> pb.ImageFsInfoResponse:
        mount, used, inodes = self.images.snapshots_usage()
        now = time.time_ns()
        fs = pb.FilesystemUsage(timestamp=now, fs_id=pb.FilesystemIdentifier(mountpoint=mount))
        fs.used_bytes.value = used
        fs.inodes_used.value = inodes
        return pb.ImageFsInfoResponse(image_filesystems=[fs])

    StreamImages = unimplemented("StreamImages (use ListImages)")
