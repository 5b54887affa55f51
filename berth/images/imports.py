"""`docker import`: a root filesystem tar becomes a one-layer image.

    desc, config_digest = import_rootfs(fileobj, store, changes=["CMD /bin/sh"], message=None)

The input (a file or stdin; plain tar, or gzip / bzip2 / xz compressed) is read
once: the uncompressed stream is hashed for the diff ID and recompressed with
gzip into the content store in the same pass, so the layer is stored as
``application/vnd.oci.image.layer.v1.tar+gzip``. Then the config (host
platform unless ``platform`` says otherwise, ``rootfs.diff_ids``, one history
entry with the comment "Imported from -" or ``message``) and an OCI image
manifest are stored; the manifest's descriptor and the config digest (the
image ID) are returned. Naming the image is the caller's job.

``changes`` are Dockerfile instructions applied to the config's ``config``
(docker's ``--change``): CMD and ENTRYPOINT (JSON array, or shell form which
becomes ["/bin/sh", "-c", ...]), ENV (``K=V ...`` and the old ``ENV K V``),
WORKDIR (relative paths join the previous WORKDIR), USER, LABEL (``k=v ...``,
quoted keys and values), EXPOSE (``80``, ``80/tcp``, ``53/udp``, ranges
``8000-8002/tcp``), VOLUME (JSON array or words) and STOPSIGNAL. Quotes and
backslash escapes are processed as the Dockerfile parser does; ``$VAR``
substitution is not done. Any other instruction raises
InvalidArgument("unsupported --change instruction X"). Changes, the platform
and the first tar header are all validated before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

from berth.errors import BerthError, InvalidArgument
from berth.images.config import host_platform, normalize_platform, parse_platform
from berth.dockerfile.parser import json_array
from berth.oci import mediatypes as mt

_CHUNK = 1 << 20
_BLOCK = 512

# dockerd's validCommitCommands (a commit's and an import's --change): not STOPSIGNAL
SUPPORTED_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "USER", "VOLUME",
                     "WORKDIR")


def _q(s: object) -> str:
    text = s if isinstance(s, str) else repr(s)
    if len(text) > 200:
        text = text[:200] + "..."
    return json.dumps(text, ensure_ascii=False)


# --- Dockerfile words ------------------------------------------------------------


def _split_words(s: str) -> list[str]:
    """Split on whitespace outside quotes; quotes and escapes are kept (raw words)."""
    words, cur, quote, i, in_word = [], [], None, 0, False
    while i < len(s):
        c = s[i]
        if quote is None and c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        cur.append(c)
        if c == "\\" and quote != "'" and i + 1 < len(s):
            cur.append(s[i + 1])
            i += 2
            continue
        if quote is None and c in "'\"":
            quote = c
        elif c == quote:
            quote = None
        i += 1
    if quote is not None:
        raise InvalidArgument(f"unmatched quote in {_q(s)}")
    if in_word:
        words.append("".join(cur))
    return words


def _unquote(s: str) -> str:
    """Remove quotes and process backslash escapes (whitespace kept), as the Dockerfile lexer does."""
    out, quote, i = [], None, 0
    while i < len(s):
        c = s[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                out.append(c)
        elif c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if quote == '"' and nxt not in '"\\$`':
                out.append(c)  # inside double quotes only these are escapes
            out.append(nxt)
            i += 2
            continue
        elif c in "'\"" and quote is None:
            quote = c
        elif c == '"' and quote == '"':
            quote = None
        else:
            out.append(c)
        i += 1
    if quote is not None:
        raise InvalidArgument(f"unmatched quote in {_q(s)}")
    return "".join(out)


def _name_values(instr: str, args: str) -> list[tuple[str, str]]:
    """ENV / LABEL arguments: "k=v k2='v 2'" or the old single-pair form "k value with spaces"."""
    words = _split_words(args)
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        parts = args.split(None, 1)
        if len(parts) < 2:
            raise InvalidArgument(f"{instr} must have two arguments")
        key = _unquote(parts[0])
        return [(key, _unquote(parts[1].strip()))]
    out = []
    for w in words:
        key_raw, eq, value_raw = w.partition("=")
        key = _unquote(key_raw)
        if not eq or not key:
            raise InvalidArgument(f"{instr}: syntax error - can't find = in {_q(w)}. Must be of the form: name=value")
        out.append((key, _unquote(value_raw)))
    return out


_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?")


def _ports(words: list[str]) -> list[str]:
    out = []
    for w in words:
        m = _PORT_RE.fullmatch(w)
        if not m:
            raise InvalidArgument(f"invalid port {_q(w)} in EXPOSE")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        proto = (m.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid protocol {_q(m.group(3))} in EXPOSE {w}")
        if not (0 < lo <= hi <= 65535):
            raise InvalidArgument(f"invalid port range {_q(w)} in EXPOSE")
        out += [f"{p}/{proto}" for p in range(lo, hi + 1)]
    return out


def _instructions(changes: Iterable[str]) -> Iterator[tuple[str, str]]:
    if isinstance(changes, str):
        changes = [changes]
    for change in changes:
        if not isinstance(change, str):
            raise InvalidArgument(f"a --change must be a string, got {_q(change)}")
        pending = ""
        for line in change.splitlines():
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            line, pending = pending + stripped, ""
            parts = line.split(None, 1)
            keyword = parts[0]
            rest = parts[1].strip() if len(parts) > 1 else ""
            yield keyword.upper(), rest
        if pending.strip():
            parts = pending.split(None, 1)
            yield parts[0].upper(), (parts[1].strip() if len(parts) > 1 else "")


def apply_changes(changes: Iterable[str], base: Mapping[str, Any] | None = None) -> dict:
    """Apply Dockerfile ``changes`` to an image config's ``config`` object and return the new one.

    Raises InvalidArgument (one line) for an unsupported instruction or bad
    arguments; ``base`` is not modified.
    """
    cfg = json.loads(json.dumps(dict(base or {})))
    cmd_set = False
    for instr, args in _instructions(changes):
        if instr not in SUPPORTED_CHANGES:
            raise InvalidArgument(f"{instr.lower()} is not a valid change command")  # dockerd's words
        if instr in ("CMD", "ENTRYPOINT"):
            form = json_array(args)
            if form is None:
                if not args:
                    raise InvalidArgument(f"{instr} requires at least one argument")
                form = ["/bin/sh", "-c", args]
            cfg["Cmd" if instr == "CMD" else "Entrypoint"] = form
            if instr == "CMD":
                cmd_set = True
            elif not cmd_set:  # the builder's: an ENTRYPOINT drops the Cmd but one given before it
                cfg["Cmd"] = None
        elif instr == "HEALTHCHECK":
            from berth.dockerfile import health, parser
            cfg["Healthcheck"] = health.config(parser.parse(f"HEALTHCHECK {args}").instructions[0])
        elif instr == "ENV":
            env = [e for e in cfg.get("Env") or [] if isinstance(e, str)]
            for k, v in _name_values(instr, args):  # in its place when the name is there (the builder's)
                at = next((i for i, e in enumerate(env) if e.partition("=")[0] == k), None)
                if at is None:
                    env.append(f"{k}={v}")
                else:
                    env[at] = f"{k}={v}"
            cfg["Env"] = env
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for k, v in _name_values(instr, args):
                labels[k] = v
            cfg["Labels"] = labels
        elif instr == "WORKDIR":
            path = _unquote(args)
            if not path:
                raise InvalidArgument("WORKDIR requires exactly one argument")
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join("/", cfg.get("WorkingDir") or "", path))
        elif instr == "USER":
            user = _unquote(args)
            if not user:
                raise InvalidArgument("USER requires exactly one argument")
            cfg["User"] = user
        elif instr == "EXPOSE":
            words = [_unquote(w) for w in _split_words(args)]
            if not words:
                raise InvalidArgument("EXPOSE requires at least one argument")
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in _ports(words):
                ports[p] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "VOLUME":
            form = json_array(args)
            if form is None:
                form = [_unquote(w) for w in _split_words(args)]
            if not form or any(not v.strip() for v in form):
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols = dict(cfg.get("Volumes") or {})
            for v in form:
                vols[v] = {}
            cfg["Volumes"] = vols
        elif instr == "ONBUILD":  # the trigger as written, as dockerd records it
            trigger = args.strip()
            first = trigger.split(None, 1)[0].upper() if trigger else ""
            if not first:
                raise InvalidArgument("ONBUILD requires at least one argument")
            if first == "ONBUILD":
                raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
            if first in ("FROM", "MAINTAINER"):
                raise InvalidArgument(f"{first} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
    return cfg


def merge_config(user: Mapping[str, Any], image: Mapping[str, Any]) -> dict:
    """dockerd's merge of a config over an image's (daemon/commit.go, what a commit does after
    its changes): its empty fields take the image's, its Env, Labels, ExposedPorts and Volumes
    are completed with the image's others, its Healthcheck's zero fields are the image's."""
    out = json.loads(json.dumps(dict(user)))
    if not out.get("User"):
        out["User"] = image.get("User") or ""
    if image.get("ExposedPorts"):
        out["ExposedPorts"] = dict(image["ExposedPorts"], **(out.get("ExposedPorts") or {}))
    if not out.get("Env"):
        out["Env"] = image.get("Env")
    else:
        keys = {e.partition("=")[0] for e in out["Env"]}
        out["Env"] = out["Env"] + [e for e in image.get("Env") or [] if e.partition("=")[0] not in keys]
    out["Labels"] = dict(image.get("Labels") or {}, **(out.get("Labels") or {}))
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = image.get("Entrypoint")
    if image.get("Healthcheck"):
        from berth.dockerfile import health
        out["Healthcheck"] = health.merged(out.get("Healthcheck") or {}, image["Healthcheck"])
    if not out.get("WorkingDir"):
        out["WorkingDir"] = image.get("WorkingDir") or ""
    if image.get("Volumes"):
        out["Volumes"] = dict(out.get("Volumes") or {}, **image["Volumes"])
    if not out.get("StopSignal") and image.get("StopSignal"):
        out["StopSignal"] = image["StopSignal"]
    return out


# --- the input stream ------------------------------------------------------------------


def _read_head(f: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class _Decompressor:
    """Incremental, memory-bounded decompression of a plain, gzip, bzip2 or xz stream.

    Concatenated members (pigz, pbzip2, multi-stream xz) are followed; zero
    padding after the last member is ignored.
    """

    def __init__(self, head: bytes):
        if head.startswith(mt.GZIP_MAGIC):
            self.kind = "gzip"
        elif head.startswith(b"BZh"):
            self.kind = "bzip2"
        elif head.startswith(b"\xfd7zXZ\x00"):
            self.kind = "xz"
        elif head.startswith(mt.ZSTD_MAGIC):
            raise InvalidArgument("import: zstd-compressed input is not supported; decompress it first")
        else:
            self.kind = None
        self._d = self._new()
        self._started = False  # the current member has had input
        self._done = False  # only padding may follow

    def _errors(self) -> tuple[type[BaseException], ...]:
        errors: list[type[BaseException]] = [zlib.error, EOFError, ValueError]
        if self.kind == "bzip2":
            errors.append(OSError)  # bz2 reports bad data as OSError("Invalid data stream")
        if self.kind == "xz":
            import lzma

            errors.append(lzma.LZMAError)
        return tuple(errors)

    def _new(self):
        if self.kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.kind == "bzip2":
            import bz2

            return bz2.BZ2Decompressor()
        if self.kind == "xz":
            import lzma

            return lzma.LZMADecompressor()
        return None

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._d is None:
            if chunk:
                yield chunk
            return
        try:
            yield from self._feed(chunk)
        except self._errors() as e:
            raise InvalidArgument(f"import: invalid {self.kind} data: {e}") from None

    def _feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._done:
                if data.strip(b"\0"):
                    raise InvalidArgument(f"import: unexpected data after the {self.kind} stream")
                return
            self._started = True
            d = self._d
            if self.kind == "gzip":
                while True:
                    out = d.decompress(data, _CHUNK)
                    if out:
                        yield out
                    data = d.unconsumed_tail
                    if d.eof or (not data and len(out) < _CHUNK):
                        break
            else:
                out = d.decompress(data, _CHUNK)
                if out:
                    yield out
                while not d.eof and not d.needs_input:
                    out = d.decompress(b"", _CHUNK)
                    if out:
                        yield out
                data = b""
            if d.eof:
                data = d.unused_data
                self._d, self._started = self._new(), False
                if data and not data.strip(b"\0"):
                    self._done = True
                    return

    def finish(self) -> None:
        if self._d is not None and self._started:
            raise InvalidArgument(f"import: the {self.kind} input is truncated")


def _uncompressed_chunks(f: BinaryIO, head: bytes, dec: _Decompressor) -> Iterator[bytes]:
    chunk = head
    while chunk:
        yield from dec.feed(chunk)
        chunk = f.read(_CHUNK)
    dec.finish()


def _check_tar_header(block: bytes) -> None:
    if len(block) < _BLOCK:
        raise InvalidArgument("import: the input is not a tar archive (too short)")
    if block == b"\0" * _BLOCK:
        return  # an empty archive
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise InvalidArgument(f"import: the input is not a tar archive ({e})") from None


def _now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def import_rootfs(fileobj: BinaryIO, store, *, changes: Iterable[str] = (), message: str | None = None,
                  platform: Mapping[str, Any] | str | None = None, created: str | None = None,
                  compresslevel: int = 6) -> tuple[dict, str]:
    """Store the rootfs tar read from ``fileobj`` as a one-layer image; return (manifest descriptor, config digest).

    ``platform`` ("linux/arm64" or a dict) defaults to the host's; ``created``
    (RFC 3339) to now. Raises InvalidArgument for a bad change, platform or
    input; nothing is stored when the changes or platform are bad.
    """
    container_config = apply_changes(changes)
    if platform is None:
        plat = host_platform()
    elif isinstance(platform, str):
        plat = parse_platform(platform)
    else:
        plat = normalize_platform(platform)
    if message is not None and not isinstance(message, str):
        raise InvalidArgument("import: the message must be a string")
    when = created or _now()

    head = _read_head(fileobj, 64 * 1024)
    dec = _Decompressor(head)
    chunks = _uncompressed_chunks(fileobj, head, dec)
    pending: list[bytes] = []
    have = 0
    for data in chunks:
        pending.append(data)
        have += len(data)
        if have >= _BLOCK:
            break
    _check_tar_header(b"".join(pending)[:_BLOCK])

    diff = hashlib.sha256()
    comp = zlib.compressobj(compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    w = store.writer(f"import-{os.urandom(16).hex()}")
    try:
        def consume(data: bytes) -> None:
            diff.update(data)
            out = comp.compress(data)
            if out:
                w.write(out)

        for data in pending:
            consume(data)
        for data in chunks:
            consume(data)
        w.write(comp.flush())
        size = w.offset
        layer_digest = w.commit()
    except BaseException:
        with contextlib.suppress(BerthError, OSError):
            w.abort()  # the ref is unique: nothing could resume it
        raise
    finally:
        w.close()
    diff_id = "sha256:" + diff.hexdigest()

    config: dict = {"created": when, "architecture": plat["architecture"], "os": plat["os"]}
    if plat.get("variant"):
        config["variant"] = plat["variant"]
    config["config"] = container_config
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    config["history"] = [{"created": when, "created_by": "",
                          "comment": message if message is not None else "Imported from -"}]
    config_data = json.dumps(config, separators=(",", ":")).encode()
    config_digest = store.write_blob(config_data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config_data)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer_digest, "size": size}],
    }
    manifest_data = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = store.write_blob(manifest_data)
    return {"mediaType": mt.OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_data)}, config_digest
