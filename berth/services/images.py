"""The images use-cases: resolve, list, inspect, history, tag, remove, prune, unpack,
pull, push, save, load and import — over the content store, the metadata store, a
snapshotter, the registry client and the archive formats.

Every method is blocking (run it in a worker thread) and takes the namespace first.
Image records: name (a full normalised reference, or "sha256:<config hex>" for an image that
has no name, docker's <none>) -> target descriptor (a manifest or an index).
"""

import gzip
import hashlib
import secrets
import threading
import time

from berth import fastjson as json
from berth.errors import (BerthError, FailedPrecondition, InvalidArgument, NotFound)
from berth.images import config as imgconfig
from berth.oci import mediatypes as mt
from berth.oci import reference as refmod

MAX_MANIFEST = 4 << 20
MAX_CONFIG = 20 << 20
UNPACKED_LABEL = "berth.io/unpacked"


class Resolved:
    """An image as the services see it: its names, target, manifest and config."""

    def __init__(self, names, target, manifest_desc, manifest, config_digest, config):
        self.names = names
        self.target = target
        self.manifest_desc = manifest_desc
        self.manifest = manifest
        self.config_digest = config_digest
        self.config = config

    @property
    def id(self):
        return self.config_digest

    @property
    def diff_ids(self):
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def layers(self):
        return list(self.manifest.get("layers") or [])


def _no_such_image(s, ns):
    # "no such image" is what docker clients look for (docker-py raises ImageNotFound on it)
    return f'image "{s}" not found in namespace "{ns}" (no such image)'


def is_untagged_name(name):
    return name.startswith("sha256:")


def is_digest_name(name):
    """repo@sha256:... (an image pulled by digest): a RepoDigest, never a RepoTag."""
    return "@" in name and not is_untagged_name(name)


def familiar(name):
    if is_untagged_name(name):
        return "<none>:<none>"
    return refmod.parse(name).familiar()


class ImageService:
    def __init__(self, meta, content, snapshotter, snapshotter_name="overlayfs", registry=None, events=None):
        self.meta = meta
        self.content = content
        self.snapshotter = snapshotter
        self.snapshotter_name = snapshotter_name
        self.registry = registry  # berth.services.registry.RegistryConfig (hosts dir, mirrors, insecure)
        self._unpack_lock = threading.Lock()
        from berth.services.events import EventBus
        self.events = events if events is not None else EventBus()

    # --- reading blobs ---

    def read_json(self, digest, limit, what):
        try:
            data = self.content.read(digest, max_size=limit)
        except NotFound:
            raise NotFound(f"{what} {digest} is missing from the content store") from None
        try:
            return json.loads(data)
        except ValueError:
            raise InvalidArgument(f"{what} {digest} is not valid JSON") from None

    def manifest_for(self, target, platform=None):
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

    def _have(self, digest):
        try:
            return isinstance(digest, str) and self.content.exists(digest)
        except BerthError:
            return False

    def _resolved(self, names, target, platform=None):
        mdesc, manifest = self.manifest_for(target, platform)
        cdesc = manifest.get("config") or {}
        if not cdesc.get("digest"):
            raise InvalidArgument(f"manifest {mdesc['digest']} has no config")
        config = self.read_json(cdesc["digest"], MAX_CONFIG, "image config")
        return Resolved(names, target, mdesc, manifest, cdesc["digest"], config)

    # --- resolution ---

    def _all(self, ns):
        """{target digest: [image records]} of a namespace."""
        groups = {}
        for img in self.meta.list_images(ns):
            groups.setdefault(img.target.digest, []).append(img)
        return groups

    def resolve(self, ns, s, platform=None):
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

    def _by_repo_digest(self, ns, ref):
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

    def _size(self, r):
        return sum(int(layer.get("size") or 0) for layer in r.layers) + int((r.manifest.get("config") or {}).get("size") or 0)

    def _repo_digests(self, r):
        out = []
        for n in r.names:
            if is_untagged_name(n):
                continue
            ref = refmod.parse(n)
            rd = f"{_familiar_name(ref)}@{r.target['digest']}"
            if rd not in out:
                out.append(rd)
        return out

    def _repo_tags(self, r):
        # docker sorts by the familiar form (its lexicalRefs), not by the full name
        return sorted(familiar(n) for n in r.names if not is_untagged_name(n) and not is_digest_name(n))

    def snapshots_usage(self):
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

    def list(self, ns, all_=False, filters=None, digests=False):
        filters = filters or {}
        for key in filters:  # refused even when there is nothing to filter
            if key not in ("dangling", "reference", "label", "before", "since"):
                raise InvalidArgument(f"invalid filter {key!r}")
        out = []
        for digest, imgs in self._all(ns).items():
            try:
                r = self._resolved([i.name for i in imgs], imgs[0].target.to_dict())
            except BerthError:
                continue
            tags = self._repo_tags(r)
            if not _match_filters(filters, r, tags):
                continue
            created = imgconfig.parse_time(r.config.get("created"))
            out.append({
                "Id": r.config_digest, "ParentId": "", "RepoTags": tags, "RepoDigests": self._repo_digests(r),
                "Created": created, "Size": self._size(r), "SharedSize": -1, "VirtualSize": self._size(r),
                "Labels": (r.config.get("config") or {}).get("Labels") or {}, "Containers": -1,
            })
        out.sort(key=lambda e: (-e["Created"], e["Id"]))
        return out

    def inspect(self, ns, name):
        r = self.resolve(ns, name)
        cfg = r.config
        imgs = [self.meta.find_image(ns, n) for n in r.names]
        last_tag = max((i.updated_at for i in imgs if i is not None), default=0)
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
            "Variant": cfg.get("variant") or None,
            "Os": cfg.get("os") or "",
            "Size": self._size(r),
            "VirtualSize": self._size(r),
            "GraphDriver": {"Name": self.snapshotter_name, "Data": None},
            "RootFS": {"Type": "layers", "Layers": r.diff_ids},
            "Metadata": {"LastTagTime": _rfc3339(last_tag) if last_tag else "0001-01-01T00:00:00Z"},
            "Descriptor": r.target,
        }

    def history(self, ns, name):
        r = self.resolve(ns, name)
        sizes = []
        for layer in r.layers:
            sizes.append(int(layer.get("size") or 0))
        return imgconfig.history_rows(r.config, image_id=r.config_digest, layer_sizes=sizes,
                                      tags=self._repo_tags(r))

    # --- tag and remove ---

    def tag(self, ns, source, repo, tag=None):
        r = self.resolve(ns, source)
        target_s = repo if not tag else f"{repo}:{tag}"
        ref = refmod.parse(target_s)
        if ref.digest:
            raise InvalidArgument(f'refusing to create a tag with a digest reference: "{target_s}"')
        self.meta.put_image(ns, str(ref), r.target)
        self._drop_untagged(ns, r)
        self.events.publish(ns, "image", "tag", source, name=str(ref))
        return str(ref)

    def _drop_untagged(self, ns, r):
        for n in r.names:
            if is_untagged_name(n):
                try:
                    self.meta.delete_image(ns, n)
                except NotFound:
                    pass

    def remove(self, ns, name, force=False, noprune=False, in_use=None):
        """docker rmi: untag a name; delete the image when its last name goes (or by ID with -f)."""
        result = self._remove(ns, name, force, noprune, in_use)
        for item in result:
            for k, v in item.items():
                self.events.publish(ns, "image", "untag" if k == "Untagged" else "delete", v, name=v)
        return result

    def _remove(self, ns, name, force, noprune, in_use):
        r = self.resolve(ns, name)
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
            for n in r.names:
                self.meta.delete_image(ns, n)
                if not is_untagged_name(n):
                    if {"Untagged": familiar(n)} not in result:
                        result.append({"Untagged": familiar(n)})
                    rd = f"{_familiar_name(refmod.parse(n))}@{r.target['digest']}"
                    if {"Untagged": rd} not in result:
                        result.append({"Untagged": rd})
        result.append({"Deleted": r.config_digest})
        if not noprune:
            self.collect()
        return result

    def collect(self):
        return self.meta.collect(self.content, self.snapshotter, snapshotter_name=self.snapshotter_name, grace=0)

    def prune(self, ns, all_=False, in_use=None):
        """docker image prune: dangling images (no name), or with all_ every unused image."""
        deleted = []
        for digest, imgs in self._all(ns).items():
            names = [i.name for i in imgs]
            dangling = all(is_untagged_name(n) for n in names)
            if not dangling and not all_:
                continue
            try:
                r = self._resolved(names, imgs[0].target.to_dict())
            except BerthError:
                r = None
            if r is not None and in_use and in_use(r):
                continue
            for n in names:
                self.meta.delete_image(ns, n)
                if not is_untagged_name(n):
                    deleted.append({"Untagged": familiar(n)})
            deleted.append({"Deleted": r.config_digest if r else digest})
        report = self.collect()
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": report.reclaimed_bytes}

    # --- recording a new image ---

    def record(self, ns, names, target, resolved=None):
        """Name an image (or keep it as <none> when it has no name); returns the Resolved."""
        r = resolved or self._resolved(names, target)
        if not names:
            if not any(i.target.digest == target["digest"] for i in self.meta.list_images(ns)):
                self.meta.put_image(ns, r.config_digest, target)
        for n in names:
            self.meta.put_image(ns, n, target)
        if names:
            self._drop_untagged(ns, self._resolved(names, target))
        return r

    def add_refs(self, target):
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

    def unpack(self, r, lease=None, ns=None, progress=None, source=None):
        """Apply every layer into committed snapshots named by chain ID; returns the top key.
        ``source(layer)``, when given, returns a _Stream of the layer's bytes as they arrive from
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
                    if progress:
                        progress(layer["digest"], "Extracting")
                    self._apply(layer, diff_id, key, parent, lease, ns, source(layer) if source else None)
                    if progress:
                        progress(layer["digest"], "Pull complete")
                parent = key
            if parent is not None:
                self.meta.add_snapshot_ref(r.config_digest, parent, self.snapshotter_name)
        return parent

    def _apply(self, layer, diff_id, key, parent, lease, ns, streamed=None):
        from berth.images.layer import apply_layer
        tmp = f"extract-{secrets.token_hex(6)}-{key}"
        if lease is not None:
            self.meta.add_lease_resource(ns, lease.id, "snapshot", tmp, snapshotter=self.snapshotter_name)
        self.snapshotter.prepare(tmp, parent)
        try:
            mode = "overlay" if self.snapshotter_name == "overlayfs" else "delete"
            f = streamed if streamed is not None else self.content.open(layer["digest"])
            try:
                with _Decompressed(f, mt.layer_compression(layer.get("mediaType", "")) if
                                   mt.is_layer(layer.get("mediaType", "")) else None) as stream:
                    apply_layer(stream, self.snapshotter.fs_path(tmp), whiteout_mode=mode, compression="none")
                    stream.drain()
                if streamed is not None:
                    streamed.finish()  # the download's own verdict: size and digest of the blob
            except BaseException:
                if streamed is not None:
                    streamed.abort()
                    if streamed.error is not None and not isinstance(streamed.error, _Stream.Aborted):
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

    def ensure_unpacked(self, ns, name):
        r = self.resolve(ns, name)
        return r, self.unpack(r)


class _Stream:
    """A layer's bytes as a download delivers them: the fetch runs in its own thread, writing
    each chunk to the content store's writer and handing it to the unpacker, so the blob is
    hashed (compressed, by the writer), decompressed, hashed (diff_id) and unpacked in one pass.
    The snapshot is committed only after the blob's size and digest were verified (finish)."""

    class Aborted(Exception):
        pass

    def __init__(self, fetch, writer, expected):
        import queue
        import threading
        self.q = queue.Queue(maxsize=32)
        self.buf = b""
        self.eof = False
        self.aborted = False
        self.error = None
        self.writer = writer
        self.expected = expected

        def run():
            try:
                fetch(self)
                writer.commit(expected["size"], expected["digest"])
            except BaseException as e:  # reported by finish()
                self.error = e
            finally:
                writer.close()
                self._put(None)
        self.thread = threading.Thread(target=run, name=f"fetch-{expected['digest'][7:19]}", daemon=True)
        self.thread.start()

    def _put(self, item):
        import queue
        while True:
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.aborted:
                    return

    def write(self, data):
        """Called by the registry client with each chunk."""
        if self.aborted:
            raise _Stream.Aborted("unpacking failed")
        self.writer.write(data)
        self._put(bytes(data))
        return len(data)

    def read(self, n=-1):
        while not self.eof and (n is None or n < 0 or len(self.buf) < n):
            item = self.q.get()
            if item is None:
                self.eof = True
                break
            self.buf += item
        if n is None or n < 0:
            data, self.buf = self.buf, b""
        else:
            data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def finish(self):
        while self.read(1 << 20):
            pass
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self):
        self.aborted = True
        while not self.eof:  # unblock the fetch thread
            try:
                item = self.q.get(timeout=0.2)
            except Exception:
                if not self.thread.is_alive():
                    break
                continue
            if item is None:
                self.eof = True
        self.thread.join(5)

    def close(self):
        pass


_GZIP = None  # (open(fileobj) -> gzip reader, the library's error class or None, name), chosen on first use


def _gzip_reader():
    """The fastest gzip reader importable. python-isal (ISA-L, ~2.5x zlib's inflate speed) or
    zlib-ng (~2x), each through its threaded reader: one thread of the library inflates 1 MiB
    blocks without the GIL while the caller hashes and unpacks. Else the stdlib's GzipFile."""
    global _GZIP
    if _GZIP is None:
        try:
            from isal import igzip_threaded, isal_zlib
            _GZIP = (lambda f: igzip_threaded.open(f, "rb", threads=1), isal_zlib.error, "isal")
        except ImportError:
            try:
                from zlib_ng import gzip_ng_threaded, zlib_ng
                _GZIP = (lambda f: gzip_ng_threaded.open(f, "rb", threads=1), zlib_ng.error, "zlib-ng")
            except ImportError:
                _GZIP = (lambda f: gzip.GzipFile(fileobj=f, mode="rb"), None, "zlib")
    return _GZIP


class _Decompressed:
    """A reader over a stored layer that decompresses (gzip, zstd) and hashes the tar stream.

    The decompressor is read in 1 MiB chunks (each hashed once) and small reads (tarfile asks
    for 10 KiB at a time) are served from the chunk: a read may return fewer bytes than asked
    for, and b"" only at the end. Use it as a context manager: closing stops the decompressing
    thread of a threaded gzip reader (it reads the file, so close this before the file)."""

    CHUNK = 1 << 20

    def __init__(self, f, compression):
        self.hasher = hashlib.sha256()
        self._error = None
        self._closable = False
        self._buf = b""
        self._pos = 0
        head = f.read(4)
        if compression is None:
            compression = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == b"\x28\xb5\x2f\xfd" else "none"
        rest = _Prefix(head, f)
        if compression == "gzip":
            open_gzip, self._error, _name = _gzip_reader()
            self.f = open_gzip(rest)
            self._closable = True
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise InvalidArgument("zstd layers need the zstandard module") from None
            self.f = zstandard.ZstdDecompressor().stream_reader(rest)
        else:
            self.f = rest

    def _fill(self):
        try:
            self._buf = self.f.read(self.CHUNK)
        except Exception as e:
            if self._error is not None and isinstance(e, self._error):
                # the accelerated readers' own error class: report it as zlib's, like the stdlib
                # reader, so that apply_layer calls it an invalid archive
                import zlib
                raise zlib.error(str(e)) from e
            raise
        self._pos = 0
        self.hasher.update(self._buf)

    def read(self, n=-1):
        if self._pos >= len(self._buf):
            self._fill()
        if n is None or n < 0:
            n = len(self._buf) - self._pos
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    def drain(self):
        while self.read(self.CHUNK):
            pass

    def close(self):
        # the gzip readers only (closing zstandard's would close the file under it)
        if self._closable:
            self._closable = False
            self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Prefix:
    def __init__(self, head, f):
        self.head = head
        self.f = f

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.f.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.f.read(n - len(data))
            return data
        return self.f.read(n)

    def readinto(self, b):
        # isal's and zlib-ng's gzip readers fill their buffers with readinto
        if not self.head and hasattr(self.f, "readinto"):
            return self.f.readinto(b)
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readable(self):
        return True


def _familiar_name(ref):
    return ref.familiar_name()


def _last_comment(cfg):
    hist = cfg.get("history") or []
    return (hist[-1].get("comment") or "") if hist else ""


def _rfc3339(t):
    ns = int(t * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _docker_config(c):
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


def _container_config(c):
    out = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
           "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
           "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}
    out.update({k: v for k, v in c.items() if k in out or k in ("ExposedPorts", "StopSignal")})
    return out


def _match_filters(filters, r, tags):
    for key, values in filters.items():
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        if key == "dangling":
            want = any(str(v).lower() in ("true", "1") for v in values)
            if want != (not tags):
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
            raise InvalidArgument(f"invalid filter {key!r}")
    return True


# --- registry and archive operations (mixed into ImageService) ---

def _client(self, auth=None):
    from berth.remotes import RegistryClient
    from berth.remotes.auth import Credentials, docker_credentials
    reg = self.registry
    fallback = docker_credentials(reg.docker_config if reg else None)

    def creds(host):
        if auth:
            server = (auth.get("serveraddress") or "").split("://", 1)[-1].rstrip("/").split("/")[0]
            server = "docker.io" if server in ("index.docker.io", "registry-1.docker.io", "") else server
            if server == host or not auth.get("serveraddress"):
                if auth.get("identitytoken"):
                    return Credentials(identity_token=auth["identitytoken"])
                if auth.get("username"):
                    return Credentials(auth.get("username"), auth.get("password") or "")
        return fallback(host)
    return RegistryClient(reg.hosts_dir if reg else None, mirrors=reg.mirrors if reg else None,
                          insecure=reg.insecure if reg else (), credentials=creds)


def _pull_name(ref):
    return f"{ref.name}@{ref.digest}" if ref.digest else str(ref)


def _short(digest):
    return digest.split(":", 1)[-1][:12]


def _transfer_progress(progress, status, lid, total, step=512 << 10):
    """A callback of bytes done -> docker's progress messages ("Pushing [==>  ] 1.2MB/3.4MB"),
    at most one per ``step`` bytes and one at the end."""
    def human_size(n):  # go-units' HumanSize: 4 significant digits
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if n < 1000 or unit == "TB":
                return f"{n:.4g}{unit}"
            n /= 1000.0
    last = [-step]

    def report(done):
        if done - last[0] < step and done < total:
            return
        last[0] = done
        filled = min(50, int(50 * done / total)) if total else 50
        bar = "[" + "=" * filled + ">" + " " * (50 - filled) + "]"
        sizes = f"{human_size(done):>8}" + (f"/{human_size(total)}" if total and done <= total else "")
        progress({"status": status, "progressDetail": {"current": done, "total": total},
                  "progress": f"{bar} {sizes}", "id": lid})
    return report


def pull(self, ns, ref_s, platform=None, auth=None, progress=None):
    """Resolve, fetch (layers in parallel, resumable), verify, unpack, name."""
    import concurrent.futures
    progress = progress or (lambda m: None)
    ref = refmod.parse(ref_s)
    if platform:
        imgconfig.parse_platform(platform)
    client = self._client(auth)
    try:
        progress({"status": f"Pulling from {ref.familiar_name()}", "id": ref.tag or ref.digest})
        _name, desc = client.resolve(ref)
        target = desc.to_dict()
        if target["mediaType"] in ("", None):
            target["mediaType"] = mt.OCI_MANIFEST if hasattr(mt, "OCI_MANIFEST") else "application/vnd.oci.image.manifest.v1+json"
        existing = self.meta.find_image(ns, _pull_name(ref))
        with self.meta.lease(ns, ttl=3600, labels={"berth.io/pull": str(ref)}) as lease:
            def fetch_small(d):
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
            if not self.content.exists(cdesc["digest"]):
                w = self.content.writer(f"pull-{cdesc['digest']}", cdesc["digest"], cdesc["size"])
                try:
                    client.fetch_blob(ref, cdesc, w, offset=w.offset)
                    w.commit(cdesc["size"], cdesc["digest"])
                finally:
                    w.close()
            layers = manifest.get("layers") or []
            for layer in layers:
                lmt = layer.get("mediaType", "")
                if lmt and not mt.is_layer(lmt):
                    raise InvalidArgument(f"{ref}: unknown layer media type {lmt!r}")
                progress({"status": "Pulling fs layer" if not self.content.exists(layer["digest"]) else "Already exists",
                          "progressDetail": {}, "id": _short(layer["digest"])})

            def fetch_layer(layer):
                d = layer["digest"]
                self.meta.add_lease_resource(ns, lease.id, "content", d)
                if self.content.exists(d):
                    return
                w = self.content.writer(f"pull-{d}", d, layer["size"])
                try:
                    total = layer["size"]
                    last = [0.0]

                    def cb(n):
                        now = time.monotonic()
                        if now - last[0] > 0.1 or n == total:
                            last[0] = now
                            progress({"status": "Downloading", "progressDetail": {"current": n, "total": total},
                                      "id": _short(d)})
                    self.meta.add_lease_resource(ns, lease.id, "ingest", f"pull-{d}")
                    client.fetch_blob(ref, layer, w, offset=w.offset, progress=cb)
                    progress({"status": "Verifying Checksum", "progressDetail": {}, "id": _short(d)})
                    w.commit(layer["size"], d)
                finally:
                    w.close()
                progress({"status": "Download complete", "progressDetail": {}, "id": _short(d)})

            self.add_refs(target)
            r = self._resolved([str(ref)] if ref.tag else [], target, platform)
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                # the first layer streams straight into its snapshot; the next ones download in
                # parallel meanwhile; a layer whose download has not begun when the unpacker
                # reaches it streams too
                futures = {layer["digest"]: pool.submit(fetch_layer, layer) for layer in layers[1:]}

                def source(layer):
                    d = layer["digest"]
                    fut = futures.get(d)
                    if fut is not None and not fut.cancel():
                        fut.result()
                        return None
                    if self.content.exists(d):
                        return None
                    w = self.content.writer(f"pull-{d}", d, layer["size"])
                    if w.offset:  # a resumed download: fetch the rest, then unpack from the store
                        w.close()
                        fetch_layer(layer)
                        return None
                    self.meta.add_lease_resource(ns, lease.id, "content", d)
                    self.meta.add_lease_resource(ns, lease.id, "ingest", f"pull-{d}")
                    total = layer["size"]
                    last = [0.0]

                    def cb(n):
                        now = time.monotonic()
                        if now - last[0] > 0.1 or n == total:
                            last[0] = now
                            progress({"status": "Downloading", "progressDetail": {"current": n, "total": total},
                                      "id": _short(d)})
                    def fetch(dest):
                        client.fetch_blob(ref, layer, dest, offset=0, progress=cb)
                        progress({"status": "Verifying Checksum", "progressDetail": {}, "id": _short(d)})
                        progress({"status": "Download complete", "progressDetail": {}, "id": _short(d)})
                    return _Stream(fetch, w, layer)

                try:
                    self.unpack(r, lease=lease, ns=ns, source=source,
                                progress=lambda d, s: progress({"status": s, "progressDetail": {}, "id": _short(d)}))
                    for layer in layers:  # layers whose snapshots existed still need their blobs
                        fut = futures.get(layer["digest"])
                        if fut is not None and not fut.cancelled():
                            fut.result()
                        elif not self.content.exists(layer["digest"]):
                            fetch_layer(layer)
                except BaseException:
                    for fut in futures.values():
                        fut.cancel()
                    raise
            # pulled by digest: docker keeps it as repo@digest (a RepoDigest, shown with a <none> tag)
            names = [_pull_name(ref)]
            self.record(ns, names, target, r)
        progress({"status": f"Digest: {target['digest']}"})
        if existing is not None and existing.target.digest == target["digest"]:
            progress({"status": f"Status: Image is up to date for {ref.familiar()}"})
        else:
            progress({"status": f"Status: Downloaded newer image for {ref.familiar()}"})
        self.events.publish(ns, "image", "pull", ref_s, name=ref_s)
        return str(ref)
    except (InvalidArgument, NotFound, FailedPrecondition):
        # bad content (digest mismatch, hostile or unknown layer, no such platform...): what it
        # left in the store is garbage. Network failures keep theirs, for the next pull to resume.
        _collect_quietly(self)
        raise
    finally:
        client.close()


def _collect_quietly(self):
    """Collect what nothing references, with the default grace for ingests and unfinished snapshots."""
    try:
        self.meta.collect(self.content, self.snapshotter, snapshotter_name=self.snapshotter_name)
    except BerthError:
        pass


def push(self, ns, ref_s, auth=None, progress=None):
    progress = progress or (lambda m: None)
    ref = refmod.parse(ref_s)
    r = self.resolve(ns, ref_s)
    if not ref.tag and not ref.digest:
        raise InvalidArgument(f"{ref_s}: a tag is needed to push")
    client = self._client(auth)
    try:
        progress({"status": f"The push refers to repository [{ref.name}]"})
        blobs = list(r.layers) + [r.manifest["config"]]
        # as docker's: each layer is named by its diff ID, the top one first
        ids = {b["digest"]: _short(diff) for b, diff in zip(r.layers, r.diff_ids)}
        for b in reversed(r.layers):
            progress({"status": "Preparing", "progressDetail": {}, "id": ids[b["digest"]]})
        mount_from = None
        for n in r.names:
            if not is_untagged_name(n):
                other = refmod.parse(n)
                if other.domain == ref.domain and other.name != ref.name:
                    mount_from = other
        for b in blobs:
            layer_progress = _transfer_progress(progress, "Pushing", ids[b["digest"]], b.get("size", 0)) \
                if b["digest"] in ids else None
            with self.content.open(b["digest"]) as f:
                how = client.push_blob(ref, b, f, mount_from=mount_from, progress=layer_progress)
            if b in r.layers:
                status = {"exists": "Layer already exists", "mounted": f"Mounted from {mount_from.path if mount_from else ''}",
                          "uploaded": "Pushed"}[how]
                progress({"status": status, "progressDetail": {}, "id": ids[b["digest"]]})
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
                        raise InvalidArgument(f"{ref_s}: pushing multi-platform images with several local "
                                              "platforms is not supported")
                target = r.target
        else:
            target = r.target
        data = self.content.read(target["digest"])
        digest = client.push_manifest(ref, ref.tag, target.get("mediaType") or mt.OCI_MANIFEST, data)
        progress({"status": f"{ref.tag or 'latest'}: digest: {digest} size: {len(data)}"})
        progress({"progressDetail": {}, "aux": {"Tag": ref.tag or "latest", "Digest": digest, "Size": len(data)}})
        return digest
    finally:
        client.close()


def load(self, ns, fileobj, quiet=False, progress=None):
    from berth.images.archive import load_archive
    progress = progress or (lambda m: None)
    with self.meta.lease(ns, ttl=3600, labels={"berth.io/load": "1"}) as lease:
        loaded = load_archive(fileobj, self.content)
        for img in loaded:
            self.meta.add_lease_resource(ns, lease.id, "content", img.target["digest"])
        for img in loaded:
            self.add_refs(img.target)
            r = self._resolved(list(img.names), img.target)
            layer_done = None
            if not quiet:  # as docker's: a full bar for each layer new to this engine
                ids = {b["digest"]: (_short(diff), b.get("size", 0)) for b, diff in zip(r.layers, r.diff_ids)}

                def layer_done(digest, status, ids=ids):
                    if status == "Pull complete" and digest in ids:
                        _transfer_progress(progress, "Loading layer", *ids[digest])(ids[digest][1])
            self.unpack(r, lease=lease, ns=ns, progress=layer_done)
            self.record(ns, list(img.names), img.target, r)
            if img.names:
                for n in img.names:
                    progress({"stream": f"Loaded image: {familiar(n)}\n"})
            else:
                progress({"stream": f"Loaded image ID: {r.config_digest}\n"})
    return [i.names for i in loaded]


def prepare_save(self, ns, names):
    images = []
    for n in names:
        r = self.resolve(ns, n)
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
        images.append((picked, r.target))
    return images


def save(self, ns, images, fileobj):
    from berth.images.archive import save_archive
    save_archive(fileobj, self.content, images)


def import_(self, ns, fileobj, repo=None, tag=None, changes=(), message=None, platform=None, progress=None):
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
        self.record(ns, [name] if name else [], desc, r)
    progress({"status": r.config_digest})
    return r.config_digest


def login(self, server, username, password):
    from berth.remotes.auth import Credentials
    host = (server or "docker.io").split("://", 1)[-1].rstrip("/").split("/")[0]
    host = "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
    from berth.remotes import RegistryClient
    reg = self.registry
    client = RegistryClient(reg.hosts_dir if reg else None, mirrors=reg.mirrors if reg else None,
                            insecure=reg.insecure if reg else (),
                            credentials=lambda h: Credentials(username, password))
    try:
        client.check_login(host) if hasattr(client, "check_login") else None
    finally:
        client.close()


for _f in (_client, pull, push, load, prepare_save, save, import_, login):
    setattr(ImageService, _f.__name__, _f)
