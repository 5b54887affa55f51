"""Images and registries: pull (layers fetched in parallel and streamed into their snapshots,
resumable), push (cross-repository mounts, manifest lists) and login, as a mixin of
berth.services.images.ImageService (the resolve/unpack/record half it builds on)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from berth.errors import BerthError, FailedPrecondition, InvalidArgument, NotFound
from berth.images import config as imgconfig
from berth.images.config import MAX_CONFIG, MAX_MANIFEST
from berth.images.names import is_untagged_name, repo_of
from berth.images.stream import LayerStream
from berth.oci import mediatypes as mt
from berth.oci import reference as refmod

if TYPE_CHECKING:
    from berth.remotes import RegistryClient
    from berth.services.images import Resolved

Progress = Callable[[dict], None]


def _pull_name(ref: refmod.Reference) -> str:
    return f"{ref.name}@{ref.digest}" if ref.digest else str(ref)


def _quiet(_msg: dict) -> None:
    pass


def short(digest: str) -> str:
    """The 12 hex digits docker shows for a layer."""
    return digest.split(":", 1)[-1][:12]


def _downloading(progress: Progress, digest: str, total: int) -> Callable[[int], None]:
    """A callback of bytes fetched -> docker's "Downloading" messages, at most one per 0.1 s and
    one at the end."""
    last = [0.0]

    def report(n: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.1 or n == total:
            last[0] = now
            progress({"status": "Downloading", "progressDetail": {"current": n, "total": total},
                      "id": short(digest)})
    return report


def _count_down(progress: Progress, lid: str, seconds: int) -> None:
    """The wait before a transfer is tried again, said each second as dockerd says it."""
    for left in range(seconds, 0, -1):
        progress({"status": f"Retrying in {left} second{'s' if left != 1 else ''}", "progressDetail": {}, "id": lid})
        time.sleep(1)


def _unpack_progress(progress: Progress) -> Callable[..., None]:
    """The unpacker's reports -> docker's messages: "Extracting" with its bar, "Pull complete"."""
    bars: dict[str, Callable[[int], None]] = {}

    def report(digest: str, status: str, done: int | None = None, total: int = 0) -> None:
        if done is None:
            progress({"status": status, "progressDetail": {}, "id": short(digest)})
            return
        if digest not in bars:
            bars[digest] = transfer_progress(progress, status, short(digest), total, step=0)
        bars[digest](done)
    return report


def transfer_progress(progress: Progress, status: str, lid: str, total: int,
                      step: int = 512 << 10) -> Callable[[int], None]:
    """A callback of bytes done -> docker's progress messages ("Pushing [==>  ] 1.2MB/3.4MB"),
    at most one per ``step`` bytes and one at the end."""
    def human_size(n: float) -> str:  # go-units' HumanSize: 4 significant digits
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if n < 1000 or unit == "TB":
                return f"{n:.4g}{unit}"
            n /= 1000.0
    last = [-step]

    def report(done: int) -> None:
        if done - last[0] < step and done < total:
            return
        last[0] = done
        filled = min(50, int(50 * done / total)) if total else 50
        bar = "[" + "=" * filled + ">" + " " * (50 - filled) + "]"
        sizes = f"{human_size(done):>8}" + (f"/{human_size(total)}" if total and done <= total else "")
        progress({"status": status, "progressDetail": {"current": done, "total": total},
                  "progress": f"{bar} {sizes}", "id": lid})
    return report


class RegistryOps:
    """pull, push and login of ImageService."""

    def _client(self, auth: dict | None = None) -> RegistryClient:
        from berth.remotes import RegistryClient
        reg = self.registry
        return RegistryClient(reg.hosts_dir if reg else None, mirrors=reg.mirrors if reg else None,
                              host_mirrors=reg.host_mirrors if reg else None,
                              insecure=reg.insecure if reg else (), credentials=self._credentials(auth))

    def _credentials(self, auth: dict | None) -> Callable[[str], Any]:
        """A registry host's credentials: those of the request (X-Registry-Auth) when they are for
        that host (or name none), else the daemon's docker config's."""
        from berth.remotes.auth import Credentials, docker_credentials
        reg = self.registry
        fallback = docker_credentials(reg.docker_config if reg else None)

        def creds(host: str) -> Credentials | None:
            if auth:
                server = (auth.get("serveraddress") or "").split("://", 1)[-1].rstrip("/").split("/")[0]
                server = "docker.io" if server in ("index.docker.io", "registry-1.docker.io", "") else server
                if server == host or not auth.get("serveraddress"):
                    if auth.get("identitytoken"):
                        return Credentials(identity_token=auth["identitytoken"])
                    if auth.get("username"):
                        return Credentials(auth.get("username"), auth.get("password") or "")
            return fallback(host)
        return creds

    def search(self, term: str, limit: int, filters: dict, auth: dict | None = None) -> list[dict]:
        """GET /images/search, as dockerd 20.10's: its filters checked first (is-official,
        is-automated: true or false; stars: a least count), the index asked (berth.remotes.search),
        the results filtered."""
        from berth.services.filtermatch import filter_values
        want: dict[str, Any] = {}
        for key in filters:
            if key not in ("is-automated", "is-official", "stars"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        for key in ("is-automated", "is-official"):
            if key in filters:
                vals = filter_values(filters[key])
                if vals not in (["true"], ["false"]):
                    raise InvalidArgument(f"Invalid filter '{key}=[{' '.join(vals)}]'")
                want[key] = vals == ["true"]
        if "stars" in filters:
            least = 0
            for v in filter_values(filters["stars"]):
                if not re.fullmatch(r"[+-]?[0-9]{1,18}", v):
                    raise InvalidArgument(f"Invalid filter 'stars={v}'")
                least = max(least, int(v))
            want["stars"] = least
        if "://" in term:
            raise InvalidArgument('Invalid repository name (ex: "registry.domain.tld/myrepos")')
        from berth.remotes.search import search
        reg = self.registry
        found = search(term, limit, insecure=reg.insecure if reg else (), credentials=self._credentials(auth))
        return [r for r in found if r["star_count"] >= want.get("stars", 0)
                and all(r[k.replace("-", "_")] == v for k, v in want.items() if k != "stars")]

    def distribution_inspect(self, ref_s: str, auth: dict | None = None) -> dict:
        """GET /distribution/{name}/json, as dockerd's: the registry's descriptor of a reference
        (its manifest or index, resolved as a pull resolves it: mirrors, hosts.toml, credentials)
        and the platforms it holds: an index's entries, else the image config's os and
        architecture (none when the config names neither)."""
        import io
        from berth import fastjson as json
        ref = refmod.parse_checked(ref_s, dockerd_20=True)
        client = self._client(auth)
        try:
            _name, desc = client.resolve(ref)
        except NotFound as e:  # dockerd's: the registry's words alone, not a pull's
            raise NotFound(e.message.split(" not found: ", 1)[-1] if e.message.startswith("manifest for ")
                           else e.message) from None
        doc = json.loads(client.fetch_manifest(ref, desc.digest, size=desc.size))
        if not isinstance(doc, dict):
            raise InvalidArgument(f"manifest {desc.digest} of {ref.familiar()} is not a JSON object")
        platforms = []
        if mt.is_index(desc.media_type) or "manifests" in doc:
            for m in doc.get("manifests") or []:
                p = (m or {}).get("platform") if isinstance(m, dict) else None
                platforms.append(_go_platform(p if isinstance(p, dict) else {}))
        elif isinstance(doc.get("config"), dict) and doc["config"].get("digest"):
            cdesc = doc["config"]
            size = cdesc.get("size")
            if not isinstance(size, int) or size < 0 or size > MAX_CONFIG:
                raise InvalidArgument(f"config {cdesc['digest']} of {ref.familiar()}: invalid size {size!r}")
            buf = io.BytesIO()
            client.fetch_blob(ref, {"mediaType": cdesc.get("mediaType") or mt.OCI_CONFIG,
                                    "digest": cdesc["digest"], "size": size}, buf)
            algo, _, hexd = cdesc["digest"].partition(":")
            if algo != "sha256" or hashlib.sha256(buf.getvalue()).hexdigest() != hexd:
                raise InvalidArgument(f"config {cdesc['digest']} of {ref.familiar()}: digest mismatch")
            try:
                cfg = json.loads(buf.getvalue())
            except ValueError:
                cfg = None
            if isinstance(cfg, dict) and (cfg.get("os") or cfg.get("architecture")):
                platforms.append(_go_platform(cfg))
        elif doc.get("schemaVersion") == 1:
            platforms.append({"architecture": str(doc.get("architecture") or ""), "os": "linux"})
        return {"Descriptor": {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size},
                "Platforms": platforms or None}

    def pull(self, ns: str, ref_s: str, platform: str | None = None, auth: dict | None = None,
             progress: Progress | None = None, all_tags: bool = False) -> str:
        """Resolve, fetch (layers in parallel, resumable), verify, unpack, name. all_tags: a
        repository without tag or digest is pulled tag by tag, as the registry lists them
        (docker's `pull -a`); the status at the end is then the repository's."""
        progress = progress or (lambda m: None)
        ref = refmod.parse_checked(ref_s, default_tag=None if all_tags else refmod.DEFAULT_TAG, dockerd_20=True)
        if platform:
            imgconfig.parse_platform(platform)
        client = self._client(auth)
        try:
            if ref.tag or ref.digest:
                newer = self._pull_one(ns, ref, client, platform, progress)
                shown = ref.familiar()
            else:
                newer = False
                for tag in client.list_tags(ref):  # as dockerd: the first tag that fails ends the pull
                    newer = self._pull_one(ns, ref.with_tag(tag), client, platform, progress) or newer
                shown = ref.familiar_name()
            progress({"status": f"Status: {'Downloaded newer image' if newer else 'Image is up to date'} for {shown}"})
            # dockerd's: the reference pulled as the actor, the repository as its name, the image's labels
            labels = {}
            if ref.tag or ref.digest:
                try:
                    labels = (self.resolve(ns, str(ref)).config.get("config") or {}).get("Labels") or {}
                except BerthError:
                    pass
            self.events.publish(ns, "image", "pull", shown, **{**labels, "name": ref.familiar_name()})
            return str(ref)
        except (InvalidArgument, NotFound, FailedPrecondition):
            # bad content (digest mismatch, hostile or unknown layer, no such platform...): what it
            # left in the store is garbage. Network failures keep theirs, for the next pull to resume.
            self._collect_quietly()
            raise
        finally:
            client.close()

    def _pull_one(self, ns: str, ref: refmod.Reference, client: RegistryClient, platform: str | None,
                  progress: Progress) -> bool:
        """One reference (a tag or a digest) of a pull; whether its name now has another image."""
        import concurrent.futures
        # resolved before anything is said, as dockerd: a reference the registry does not know,
        # or a registry that cannot be reached, is the request's error (an error response)
        _name, desc = client.resolve(ref)
        # as dockerd: the repository's path in the registry (library/busybox, sdk/app)
        # (by digest: the whole reference as docker shows it, as dockerd 20.10 says it)
        progress({"status": f"Pulling from {ref.path}", "id": ref.tag or ref.familiar()})
        target = desc.to_dict()
        if target["mediaType"] in ("", None):
            target["mediaType"] = mt.OCI_MANIFEST if hasattr(mt, "OCI_MANIFEST") else "application/vnd.oci.image.manifest.v1+json"
        existing = self.meta.find_image(ns, _pull_name(ref))
        with self.meta.lease(ns, ttl=3600, labels={"berth.io/pull": str(ref)}) as lease:
            def fetch_small(d: dict) -> dict:
                self.meta.add_lease_resource(ns, lease.id, "content", d["digest"])
                if not self.content.exists(d["digest"]):
                    data = client.fetch_manifest(ref, d["digest"], size=d.get("size"))
                    self.content.write_blob(data, expected_digest=d["digest"])
                return self.read_json(d["digest"], MAX_MANIFEST, "manifest")

            doc = fetch_small(target)
            mdesc = target
            depth = 0
            while doc.get("manifests") is not None and "layers" not in doc:
                chosen = imgconfig.match_platform(doc.get("manifests") or [], platform)
                if chosen is None:
                    want = platform or imgconfig.format_platform(imgconfig.host_platform())
                    raise NotFound(f"no matching manifest for {want} in the manifest list entries of {ref}")
                mdesc = dict(chosen)
                doc = fetch_small(mdesc)
                depth += 1
                if depth > 3:
                    raise InvalidArgument(f"{ref}: image index nested too deeply")
            manifest = doc
            cdesc = manifest.get("config") or {}
            if not cdesc.get("digest"):
                raise InvalidArgument(f"{ref}: manifest has no config")
            if cdesc.get("size", 0) > MAX_CONFIG:
                raise InvalidArgument(f"{ref}: image config is larger than 20 MiB")
            self.meta.add_lease_resource(ns, lease.id, "content", cdesc["digest"])

            def fetch_config() -> None:
                w = self._writer(cdesc["digest"], cdesc["size"])
                if w is not None:
                    try:
                        client.fetch_blob(ref, cdesc, w, offset=w.offset)
                        w.commit(cdesc["size"], cdesc["digest"])
                    finally:
                        w.close()
            layers = manifest.get("layers") or []
            # an image that is here already (its ID, the config's digest): nothing said of its
            # layers, as dockerd's pull (which then fetches none)
            lprogress = progress if not self._has_image_id(ns, cdesc["digest"]) else _quiet
            for layer in layers:
                lmt = layer.get("mediaType", "")
                if lmt and not mt.is_layer(lmt):
                    raise InvalidArgument(f"{ref}: unknown layer media type {lmt!r}")
                lprogress({"status": "Pulling fs layer" if not self.content.exists(layer["digest"]) else "Already exists",
                          "progressDetail": {}, "id": short(layer["digest"])})

            def fetch_layer(layer: dict, first: bool = False) -> None:
                d = layer["digest"]
                self.meta.add_lease_resource(ns, lease.id, "content", d)
                w = self._writer(d, layer["size"])
                if w is None:
                    return
                try:
                    self.meta.add_lease_resource(ns, lease.id, "ingest", f"pull-{d}")
                    self._download(client, ref, layer, w, w, lprogress, first)
                    lprogress({"status": "Verifying Checksum", "progressDetail": {}, "id": short(d)})
                    w.commit(layer["size"], d)
                finally:
                    w.close()
                lprogress({"status": "Download complete", "progressDetail": {}, "id": short(d)})

            # max-concurrent-downloads (for all pulls: the slots _download takes): the first layer
            # streams straight into its snapshot, the next ones download in parallel meanwhile
            # (those beyond the limit waiting, as dockerd says), a layer whose download has not
            # begun when the unpacker reaches it streams too
            limit = self.transfers.downloads.limit
            later = list({x["digest"]: x for x in layers[1:] if x["digest"] != layers[0]["digest"]}.values())
            if limit == 1:
                later = []  # one at a time: each streams when the unpacker reaches it, in order
            waiting = [x for i, x in enumerate(layers) if i >= limit and not self.content.exists(x["digest"])]
            for layer in {x["digest"]: x for x in waiting}.values():
                lprogress({"status": "Waiting", "progressDetail": {}, "id": short(layer["digest"])})
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, limit - 1)) as pool, \
                    concurrent.futures.ThreadPoolExecutor(max_workers=1) as beside:
                config = beside.submit(fetch_config)  # beside the layers' downloads, as dockerd's
                futures = {layer["digest"]: pool.submit(fetch_layer, layer) for layer in later}

                def source(layer: dict) -> LayerStream | None:
                    d = layer["digest"]
                    fut = futures.get(d)
                    if fut is not None and not fut.cancel():
                        fut.result()
                        return None
                    self.meta.add_lease_resource(ns, lease.id, "content", d)
                    w = self._writer(d, layer["size"])
                    if w is None:
                        return None
                    if w.offset:  # a resumed download: fetch the rest, then unpack from the store
                        w.close()
                        fetch_layer(layer, first=True)
                        return None
                    self.meta.add_lease_resource(ns, lease.id, "ingest", f"pull-{d}")
                    def fetch(dest: LayerStream) -> None:
                        self._download(client, ref, layer, dest, dest.writer, lprogress, first=True)
                        lprogress({"status": "Verifying Checksum", "progressDetail": {}, "id": short(d)})
                        lprogress({"status": "Download complete", "progressDetail": {}, "id": short(d)})
                    return LayerStream(fetch, w, layer)

                try:
                    config.result()  # (the unpacker needs its layers' diff IDs)
                    self.add_refs(target)
                    r = self._resolved([str(ref)] if ref.tag else [], target, platform)
                    self.unpack(r, lease=lease, ns=ns, source=source,
                                progress=_unpack_progress(lprogress))
                    for layer in layers:  # layers whose snapshots existed still need their blobs
                        fut = futures.get(layer["digest"])
                        if fut is not None and not fut.cancelled():
                            fut.result()
                        elif not self.content.exists(layer["digest"]):
                            fetch_layer(layer, first=True)
                except BaseException:
                    for fut in futures.values():
                        fut.cancel()
                    raise
            # the tag and, as dockerd, the digest reference of what was pulled (a RepoDigest); pulled
            # by digest, that alone (shown with a <none> tag)
            names = [_pull_name(ref)] + ([f"{ref.name}@{target['digest']}"] if ref.tag else [])
            self.record(ns, names, target, r)
            for blob in [cdesc, *layers]:  # where they are, for pushes to that registry (mounts)
                self.content.add_source(blob["digest"], ref.domain, ref.path)
        progress({"status": f"Digest: {target['digest']}"})
        return existing is None or existing.target.digest != target["digest"]

    def _writer(self, digest: str, size: int) -> Any:
        """The writer of a blob a pull fetches (its ingest "pull-<digest>"), or None: the blob is in
        the store. Another pull fetching the same blob (two images with a layer in common, pulled
        at once: compose's parallel pulls) holds its ingest: waited for, as containerd's
        OpenWriter waits for a locked ref; then the blob is there, or (the other pull failed)
        this one goes on from where that one stopped."""
        from berth.content.store import IngestLocked
        delay = 0.02
        while not self.content.exists(digest):
            try:
                return self.content.writer(f"pull-{digest}", digest, size)
            except IngestLocked:
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        return None

    def _download(self, client: RegistryClient, ref: refmod.Reference, layer: dict, dest: Any, writer: Any,
                  progress: Progress, first: bool = False) -> None:
        """One layer's download into dest (writer: the content-store writer that counts what dest
        holds), as dockerd's: it waits for one of the slots all pulls share (max-concurrent-
        downloads); one that fails for the network or the registry (a 5xx) is tried again from
        where it stopped, after 5 s, then 10 s, 15 s... (said each second: "Retrying in 5
        seconds"), max-download-attempts times (dockerd 20.10's count: that many tries after
        the first). A refusal (4xx, 429 too) or bad content is not tried again. first: the
        layer the unpacker waits for, ahead of the others waiting for a slot."""
        import logging
        from berth.errors import Unavailable
        from berth.remotes.client import TooManyRequests
        d = layer["digest"]
        retries = 0
        with self.transfers.downloads.take(first, waiting=lambda: progress(
                {"status": "Waiting", "progressDetail": {}, "id": short(d)})):
            while True:
                try:
                    client.fetch_blob(ref, layer, dest, offset=writer.offset,
                                      progress=_downloading(progress, d, layer["size"]))
                    return
                except Unavailable as e:
                    retries += 1
                    if isinstance(e, TooManyRequests) or retries > self.transfers.download_attempts:
                        if retries > 1:
                            logging.getLogger("berth.pull").error("download of %s failed after %d attempts: %s",
                                                                  d, retries, e.message)
                        raise
                    logging.getLogger("berth.pull").info("download of %s failed, retrying (%d/%d): %s", d, retries,
                                                         self.transfers.download_attempts, e.message)
                _count_down(progress, short(d), retries * 5)

    def _has_image_id(self, ns: str, image_id: str) -> bool:
        try:
            self.resolve(ns, image_id)
            return True
        except BerthError:
            return False

    def _collect_quietly(self) -> None:
        """Collect what nothing references, with the default grace for ingests and unfinished snapshots."""
        try:
            self.meta.collect(self.content, self.snapshotter, snapshotter_name=self.snapshotter_name)
        except BerthError:
            pass

    def push(self, ns: str, ref_s: str, auth: dict | None = None, progress: Progress | None = None) -> str:
        """Push a tag, or every tag of a repository (a name without tag: docker's `push -a`), as
        dockerd: the repository named first, then what is wrong said in the stream (no image in
        the repository, a tag it lacks, a registry that cannot be reached: its /v2/ ping)."""
        progress = progress or (lambda m: None)
        ref = refmod.parse(ref_s, default_tag=None)
        progress({"status": f"The push refers to repository [{ref.name}]"})
        mine = [n for n in (i.name for i in self.meta.list_images(ns)) if not is_untagged_name(n) and repo_of(n) == ref.name]
        if not mine:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        if ref.digest:
            raise InvalidArgument("cannot push a digest reference")
        client = self._client(auth)
        try:
            client.ping(ref.domain)
            if ref.tag:
                if str(ref) not in mine:
                    raise NotFound(f"tag does not exist: {ref.familiar()}")
                tags = [ref]
            else:  # as dockerd's reference store lists them: by name
                tags = sorted((t for t in (refmod.parse(n, default_tag=None) for n in mine) if t.tag),
                              key=lambda t: str(t))
                if not tags:
                    raise NotFound(f"no tags to push for {ref.familiar_name()}")
            digest = ""
            for t in tags:
                digest = self._push_one(ns, t, client, progress)
            return digest
        finally:
            client.close()

    def _push_one(self, ns: str, ref: refmod.Reference, client: RegistryClient, progress: Progress) -> str:
        """One tag of a push: its layers and config, then its manifest; returns the manifest's digest."""
        r = self.resolve(ns, str(ref))
        if r.target["digest"] == r.manifest_desc["digest"] and any(self._compression(b) == "" for b in r.layers):
            r = self._compress_layers(ns, r)
        # as docker's: each layer is named by its diff ID, the top one first
        ids = {b["digest"]: short(diff) for b, diff in zip(r.layers, r.diff_ids)}
        for b in reversed(r.layers):
            progress({"status": "Preparing", "progressDetail": {}, "id": ids[b["digest"]]})
        named_from = None  # another repository of that registry the image is named in
        for n in r.names:
            if not is_untagged_name(n):
                other = refmod.parse(n)
                if other.domain == ref.domain and other.name != ref.name:
                    named_from = other

        def mount_from(b: dict) -> refmod.Reference | None:
            """Where in the registry the blob is known to be (pulled from, pushed to: as dockerd's
            v2 metadata), else the image's other repository there."""
            for repo in self.content.sources(b["digest"], ref.domain):
                if repo != ref.path:
                    try:
                        return refmod.parse(f"{ref.domain}/{repo}")
                    except InvalidArgument:
                        continue
            return named_from

        def push_layer(b: dict) -> None:
            lid = ids[b["digest"]]
            source = mount_from(b)
            with self.transfers.uploads.take(waiting=lambda: progress(
                    {"status": "Waiting", "progressDetail": {}, "id": lid})):
                how = self._upload(client, ref, b, source, lid, progress)
            self.content.add_source(b["digest"], ref.domain, ref.path)
            status = {"exists": "Layer already exists", "mounted": f"Mounted from {source.path if source else ''}",
                      "uploaded": "Pushed"}[how]
            progress({"status": status, "progressDetail": {}, "id": lid})

        # the layers at once, top first, in the slots all pushes share (max-concurrent-uploads),
        # then the config (dockerd's); the first failure ends the push, the others cancelled
        import concurrent.futures
        todo = list({b["digest"]: b for b in reversed(r.layers)}.values())
        for b in todo[self.transfers.uploads.limit:]:
            progress({"status": "Waiting", "progressDetail": {}, "id": ids[b["digest"]]})
        workers = max(1, min(len(todo), self.transfers.uploads.limit))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(push_layer, b) for b in todo]
            try:
                for fut in futures:
                    fut.result()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        with self.content.open(r.manifest["config"]["digest"]) as f:
            client.push_blob(ref, r.manifest["config"], f, mount_from=mount_from(r.manifest["config"]))
        self.content.add_source(r.manifest["config"]["digest"], ref.domain, ref.path)
        # a manifest list is pushed with the platform manifests it has locally
        if r.target["digest"] != r.manifest_desc["digest"]:
            data = self.content.read(r.manifest_desc["digest"])
            client.push_manifest(ref, None, r.manifest_desc.get("mediaType") or mt.OCI_MANIFEST, data)
            index = self.read_json(r.target["digest"], MAX_MANIFEST, "index")
            present = [m for m in index.get("manifests") or [] if self.content.exists(m["digest"])]
            if len(present) != len(index.get("manifests") or []):
                # push only the platform we have, like docker's single-platform push
                target = r.manifest_desc
            else:
                for m in present:
                    if m["digest"] != r.manifest_desc["digest"]:
                        raise InvalidArgument(f"{ref}: pushing multi-platform images with several local "
                                              "platforms is not supported")
                target = r.target
        else:
            target = r.target
        data = self.content.read(target["digest"])
        digest = client.push_manifest(ref, ref.tag, target.get("mediaType") or mt.OCI_MANIFEST, data)
        if digest == r.target["digest"]:  # as dockerd: the pushed manifest's digest reference (a RepoDigest)
            self.meta.put_image(ns, f"{ref.name}@{digest}", r.target)
        progress({"status": f"{ref.tag or 'latest'}: digest: {digest} size: {len(data)}"})
        progress({"progressDetail": {}, "aux": {"Tag": ref.tag or "latest", "Digest": digest, "Size": len(data)}})
        return digest

    UPLOAD_ATTEMPTS = 5  # dockerd 20.10's maxUploadAttempts

    def _upload(self, client: RegistryClient, ref: refmod.Reference, b: dict, mount_from: refmod.Reference | None,
                lid: str, progress: Progress) -> str:
        """One layer's upload, as dockerd's: one that fails for the network or the registry (a 5xx)
        starts again after 5 s, then 10 s... (said each second), up to 5 attempts in all."""
        import logging
        from berth.errors import Unavailable
        from berth.remotes.client import TooManyRequests
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.content.open(b["digest"]) as f:
                    return client.push_blob(ref, b, f, mount_from=mount_from,
                                            progress=transfer_progress(progress, "Pushing", lid, b.get("size", 0)))
            except Unavailable as e:
                if isinstance(e, TooManyRequests) or attempt >= self.UPLOAD_ATTEMPTS:
                    raise
                logging.getLogger("berth.push").info("upload of %s failed, retrying: %s", b["digest"], e.message)
            _count_down(progress, lid, attempt * 5)

    def _compression(self, layer: dict) -> str | None:
        """How a plain-typed layer's blob is stored ("" a plain tar, a docker-archive's; "gzip",
        "zstd"), its first bytes deciding; None for the other media types (their own word)."""
        if layer.get("mediaType") not in (mt.OCI_LAYER, mt.DOCKER_LAYER):
            return None
        try:
            with self.content.open(layer["digest"]) as f:
                head = f.read(4)
        except (OSError, BerthError):
            return None
        return "gzip" if head.startswith(b"\x1f\x8b") else "zstd" if head.startswith(b"\x28\xb5\x2f\xfd") else ""

    def _compress_layers(self, ns: str, r: Resolved) -> Resolved:
        """As dockerd pushes: layers compressed (gzip), in a Docker v2 manifest. An image whose
        layers are stored as plain tars (loaded from an archive) gets them compressed once, at
        its first push, and its names then point at that manifest (the same image: its ID is
        its config's; the plain blobs go with the next collection): pushed again, it is the
        same manifest, and its digest is the image's RepoDigest, as dockerd's."""
        from berth import fastjson
        from berth.images.diff import gzip_blob
        docker_type = {"gzip": mt.DOCKER_LAYER_GZIP, "zstd": mt.DOCKER_LAYER_ZSTD,
                       mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_ZSTD: mt.DOCKER_LAYER_ZSTD}
        with self.meta.lease(ns, ttl=3600, labels={"berth.io/push": r.config_digest}) as lease:
            layers = []
            for b in r.layers:
                how = self._compression(b)
                if how == "":
                    with self.content.open(b["digest"]) as f:
                        digest, size = gzip_blob(self.content, f, lambda d: self.meta.add_lease_resource(
                            ns, lease.id, "content", d))
                    b = {"mediaType": mt.DOCKER_LAYER_GZIP, "size": size, "digest": digest}
                else:
                    kind = how if how is not None else b["mediaType"]
                    b = {"mediaType": docker_type.get(kind, b["mediaType"]), "size": b["size"], "digest": b["digest"]}
                layers.append(b)
            cfg = r.manifest["config"]
            doc = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                   "config": {"mediaType": mt.DOCKER_CONFIG, "size": cfg["size"], "digest": cfg["digest"]},
                   "layers": layers}
            data = fastjson.dumps(doc).encode()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            self.meta.add_lease_resource(ns, lease.id, "content", digest)
            self.content.write_blob(data, expected_digest=digest)
            target = {"mediaType": mt.DOCKER_MANIFEST, "digest": digest, "size": len(data)}
            self.add_refs(target)
            with self._remove_lock:  # a removal reads the names, then deletes: not between
                for img in self.meta.list_images(ns):
                    if img.target.digest == r.target["digest"]:
                        self.meta.put_image(ns, img.name, target, img.labels)
        return self.resolve(ns, r.names[0] if r.names else r.config_digest)

    def login(self, server: str | None, username: str, password: str) -> None:
        from berth.remotes.auth import Credentials
        host = (server or "docker.io").split("://", 1)[-1].rstrip("/").split("/")[0]
        host = "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
        from berth.remotes import RegistryClient
        reg = self.registry
        client = RegistryClient(reg.hosts_dir if reg else None, mirrors=reg.mirrors if reg else None,
                                host_mirrors=reg.host_mirrors if reg else None,
                                insecure=reg.insecure if reg else (),
                                credentials=lambda h: Credentials(username, password))
        try:
            client.check_login(host) if hasattr(client, "check_login") else None
        finally:
            client.close()


def _go_platform(p: dict) -> dict:
    """An OCI platform as Go's encoding/json writes ocispec.Platform: architecture and os, the
    rest only when set."""
    out = {"architecture": str(p.get("architecture") or ""), "os": str(p.get("os") or "")}
    if p.get("os.version"):
        out["os.version"] = str(p["os.version"])
    if isinstance(p.get("os.features"), list) and p["os.features"]:
        out["os.features"] = [str(x) for x in p["os.features"]]
    if p.get("variant"):
        out["variant"] = str(p["variant"])
    return out
