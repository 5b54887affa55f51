"""The builder: a Dockerfile and a context become an image, as docker's classic builder does.

    Builder(containers).build(ns, context_stream, options, emit)

* The context (a tar, maybe compressed, or a bare Dockerfile) is extracted as it streams in,
  safely (``images.layer.apply_layer``: nothing escapes the directory), into a private
  directory under the daemon's root; it is removed when the build ends.
* Each step yields an image (recorded untagged while the build runs, as docker's
  intermediate images). RUN runs in a real container made by ContainerService (create,
  start, logs, wait, remove: what `run` does) and its snapshot's changes become the step's
  layer. COPY / ADD / WORKDIR write into a snapshot of their own mounted for the step.
  Metadata-only steps add a history entry (``/bin/sh -c #(nop)  CMD ["sh"]``) and no layer;
  a step whose changes are empty is an ``empty_layer`` too (as dockerd 20.10).
* The build cache: a step is reused when the parent image and the step (its instruction
  after substitution, the config it runs with, and for COPY / ADD the content of the
  sources) are the same. Each entry is a lease (``buildcache-<key>``) that keeps the step's
  image alive; ``prune`` drops them.
* ``emit`` gets docker's JSON progress messages: {"stream": ...}, {"aux": {"ID": ...}}.
  A failing step raises BuildError (message and exit code of the step).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import secrets
import shutil
import stat
import threading

from berth.dockerfile import parser as dfparser
from berth.dockerfile import shell
from berth.errors import BerthError, InvalidArgument, NotFound
from berth.gotime import format_duration
from berth.images.stream import Prefixed
from berth.linux.paths import resolve_in
from berth.services import layers
from berth.services.buildcache import BuildCache
from berth.services.buildfs import (_copy_into, _ids, _is_archive, _is_local_archive, _mkdir_all, _read_exact,
                                    source_hash)

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, BinaryIO

    from berth.dockerfile.parser import Instruction
    from berth.metadata.records import Lease
    from berth.services.containers import ContainerService
    from berth.services.images import Resolved

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
# the config of an image built FROM scratch starts as dockerd's (every key of its container config)
SCRATCH_CONFIG = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
                  "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
                  "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                  "OnBuild": None, "Labels": None}
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
NOP = "#(nop) "


# intermediate images are named (untagged) while a RUN step's container is made from them, and
# unnamed when their build ends: one lock, so a concurrent build never loses a name it relies on
_NAMES_LOCK = threading.Lock()


class BuildError(BerthError):
    """A step failed: ``message`` as docker says it, ``exit_code`` (the step's, or 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Options:
    def __init__(self, tags: Iterable[str] = (), dockerfile: str | None = "Dockerfile",
                 buildargs: Mapping[str, str | None] | None = None, target: str | None = None, nocache: bool = False,
                 pull: bool = False, quiet: bool = False, labels: Mapping[str, str] | None = None,
                 networkmode: str | None = None, rm: bool = True, forcerm: bool = False, platform: str | None = None,
                 extrahosts: list[str] | None = None, resources: Mapping[str, Any] | None = None) -> None:
        self.tags = list(tags)
        self.dockerfile = dockerfile or "Dockerfile"
        self.buildargs = dict(buildargs or {})
        self.target = target or None
        self.nocache = nocache
        self.pull = pull
        self.quiet = quiet
        self.labels = dict(labels or {})
        self.networkmode = networkmode or None
        self.rm = rm
        self.forcerm = forcerm
        self.platform = platform or None
        self.extrahosts = extrahosts or []
        self.resources = dict(resources or {})  # HostConfig fields of the RUN steps' containers
        self.cancelled = threading.Event()  # set when the client went away: the build stops
        self.running: str | None = None  # the id of the RUN step's container, while it runs


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _go_quote_list(items: Iterable[str]) -> str:
    """Go's fmt %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(s, ensure_ascii=False) for s in items) + "]"


def _env_dict(env_list: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env_list or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def _set_env(env_list: list[str] | None, key: str, value: str) -> list[str]:
    out = [e for e in env_list or [] if e.partition("=")[0] != key]
    out.append(f"{key}={value}")
    # keep the original position when the key existed (docker replaces in place)
    for i, e in enumerate(env_list or []):
        if e.partition("=")[0] == key:
            res = list(env_list)
            res[i] = f"{key}={value}"
            return res
    return out


# --- a stage's state ----------------------------------------------------------------------------------

class _Stage:
    def __init__(self, name: str | None, index: int) -> None:
        self.name = name
        self.index = index
        self.image: Resolved | None = None  # Resolved or None (scratch)
        self.config: dict[str, Any] = {}
        self.doc: dict[str, Any] | None = None  # the config document of the current image
        self.args: dict[str, str | None] = {}  # declared ARGs in effect: name -> value (None: declared without value)
        self.cmd_set = False


class Builder:
    def __init__(self, containers: ContainerService, cache: BuildCache | None = None) -> None:
        self.containers = containers
        self.images = containers.images
        self.meta = containers.meta
        self.cache = cache or BuildCache(self.meta, self.images)

    # --- entry point ---

    def build(self, ns: str, stream: BinaryIO, opts: Options, emit: Callable[[dict[str, Any]], None]) -> str:
        workdir = os.path.join(self.containers.cfg.root, "builds", secrets.token_hex(8))
        os.makedirs(workdir, mode=0o700)
        job = _Job(self, ns, opts, emit, workdir)
        try:
            return job.run(stream)
        finally:
            job.cleanup()
            shutil.rmtree(workdir, ignore_errors=True)


class _Job:
    def __init__(self, builder: Builder, ns: str, opts: Options, emit: Callable[[dict[str, Any]], None],
                 workdir: str) -> None:
        self.b = builder
        self.ns = ns
        self.opts = opts
        self._emit = emit
        self.workdir = workdir
        self.context = os.path.join(workdir, "context")
        self.temp_names: set[str] = set()  # untagged image records made for intermediate steps
        self.stages: list[_Stage] = []
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0
        self.lease: Lease | None = None
        self.held: list[str] = []
        self.known: dict[str, Any] | None = None  # the cache's entries, read at the first lookup

    # --- output ---

    def out(self, text: str) -> None:
        if self.opts.quiet:
            self.held.append(text)  # shown only if the build fails (as dockerd with q=1)
        else:
            self._emit({"stream": text})

    def nop_prefix(self, config: dict[str, Any]) -> str:
        return " ".join(config.get("Shell") or DEFAULT_SHELL) + " " + NOP

    # --- context ---

    def _extract(self, stream: BinaryIO) -> bytes | None:
        os.makedirs(self.context, mode=0o700)
        head = _read_exact(stream, 512)
        if _is_archive(head):
            from berth.images.layer import apply_layer
            try:
                # unended: the docker CLI's context with a Dockerfile from outside it
                apply_layer(Prefixed(head, stream), self.context, whiteout_mode="delete", unended=True)
            except InvalidArgument as e:
                raise InvalidArgument(f"the build context is not a valid tar archive: "
                                      f"{e.message.removeprefix('layer: ')}") from None
            return None
        # a bare Dockerfile as the body
        data = head + stream.read(1 << 20)
        if stream.read(1):
            raise InvalidArgument("the build context is neither a tar archive nor a Dockerfile (too large)")
        if not data.strip():  # no context at all (an empty body): dockerd's words
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {self.opts.dockerfile}")
        return data

    def _dockerfile(self, bare: bytes | None) -> bytes:
        if bare is not None:
            return bare
        name = self.opts.dockerfile
        path = resolve_in(self.context, name)
        if not os.path.isfile(path):
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        with open(path, "rb") as f:
            data = f.read(10 << 20)
        return data

    def _drop_ignored(self) -> None:
        """The .dockerignore and the Dockerfile leave the context when its .dockerignore lists
        them, as dockerd's removeDockerfile does once the Dockerfile is read: the docker CLI
        lists both when it adds them (a Dockerfile from outside the context or from stdin), so
        that a `COPY .` does not take them. The other patterns the client has applied."""
        try:
            with open(resolve_in(self.context, ".dockerignore"), "rb") as f:
                text = f.read(1 << 20).decode(errors="replace")
        except OSError:
            return
        from berth.dockerfile import ignore
        try:
            matcher = ignore.Matcher(ignore.read(text))
        except InvalidArgument:
            return  # (dockerd's match ignores a bad pattern's error too)
        for name in (".dockerignore", self.opts.dockerfile):
            if matcher.excluded(name):
                path = resolve_in(self.context, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    # --- the build ---

    def run(self, stream: BinaryIO) -> str:
        try:
            return self._run(stream)
        except BuildError:
            if self.held:
                self._emit({"stream": "".join(self.held)})
            raise
        except BerthError:
            if self.held and any(t.startswith("Step ") for t in self.held):
                self._emit({"stream": "".join(self.held)})
            raise

    def _run(self, stream: BinaryIO) -> str:
        bare = self._extract(stream)
        df = dfparser.parse(self._dockerfile(bare))
        if bare is None:
            self._drop_ignored()
        self.escape = df.escape
        instrs = df.instructions
        meta_args = []
        i = 0
        while i < len(instrs) and instrs[i].cmd == "ARG":
            meta_args.append(instrs[i])
            i += 1
        if i >= len(instrs):
            raise InvalidArgument("the Dockerfile has no FROM instruction" if not instrs or meta_args else
                                  "the Dockerfile (Dockerfile) cannot be empty")
        if instrs[i].cmd != "FROM":
            raise InvalidArgument(f"dockerfile parse error line {instrs[i].line}: "
                                  f"no build stage in current context" if instrs[i].cmd != "FROM" else "")
        stages = []
        for ins in instrs[i:]:
            if ins.cmd == "FROM":
                stages.append([ins])
            else:
                stages[-1].append(ins)
        # stage names
        names = []
        for s in stages:
            a = s[0].args
            names.append(a[2].lower() if len(a) == 3 else None)
        if self.opts.target:
            t = self.opts.target.lower()
            if t not in names:
                raise InvalidArgument(f"failed to reach build target {self.opts.target} in Dockerfile")
            stages = stages[:names.index(t) + 1]
        if self.opts.labels:
            text = "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(self.opts.labels.items()))
            stages[-1].append(dfparser._instruction(text, stages[-1][-1].line, stages[-1][-1].line, self.escape))
        self.total = len(meta_args) + sum(len(s) for s in stages)
        # meta args: visible to FROM lines
        self.meta_args: dict[str, str | None] = {}
        for ins in meta_args:
            self.step += 1
            self.out(f"Step {self.step}/{self.total} : {ins.original}\n")
            for w in ins.args:
                name, eq, default = w.partition("=")
                env = {k: v for k, v in self.meta_args.items() if v is not None}  # declared, no value: unset
                name = shell.expand(name, env, self.escape)
                value = shell.expand(default, env, self.escape) if eq else None
                if name in self.opts.buildargs:
                    value = self.opts.buildargs[name]
                    self.used_args.add(name)
                self.meta_args[name] = value
        for idx, s in enumerate(stages):
            st = _Stage(names[idx], idx)
            self.stages.append(st)
            for ins in s:
                self.step += 1
                self.out(f"Step {self.step}/{self.total} : {ins.original}\n")
                self.dispatch(st, ins)
        final = self.stages[-1]
        if final.image is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        unused = sorted(k for k in self.opts.buildargs if k not in self.used_args and k not in PROXY_ARGS)
        if unused:
            self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        image_id = final.image.config_digest
        names_ = []
        from berth.oci import reference as refmod
        for t in self.opts.tags:
            names_.append(str(refmod.parse(t)))
        # every layer unpacked, as dockerd's layers are once built: their sizes are their files'
        # (as dockerd's), and a run of the image needs no unpacking
        self.b.images.unpack(final.image, lease=self.lease, ns=self.ns)
        with self.b.meta.tx():  # the names in one transaction
            self.b.images.record(self.ns, names_, final.image.target, resolved=final.image, tagged=True)
        if not names_:
            self.temp_names.discard(image_id)
        self._emit({"aux": {"ID": image_id}})
        if self.opts.quiet:
            self._emit({"stream": image_id + "\n"})
        else:
            self.out(f"Successfully built {_short(image_id)}\n")
            for t in self.opts.tags:
                self.out(f"Successfully tagged {refmod.parse(t).familiar()}\n")
        self.final_id = image_id
        return image_id

    def cleanup(self) -> None:
        final = getattr(self, "final_id", None)
        with _NAMES_LOCK:
            self._drop_temp_names(final)
        if self.lease is not None:
            try:
                self.b.meta.delete_lease(self.ns, self.lease.id)
            except BerthError:
                pass

    def _drop_temp_names(self, final: str | None) -> None:
        for name in self.temp_names:
            if name == final:
                continue
            try:
                img = self.b.meta.find_image(self.ns, name)
                if img is not None and len(self.b.meta.image_names_for_target(self.ns, img.target.digest)) == 1:
                    self.b.meta.delete_image(self.ns, name)
            except BerthError:
                pass

    # --- helpers ---

    def env_for_expansion(self, st: _Stage) -> dict[str, str]:
        env = {k: v for k, v in st.args.items() if v is not None}
        env.update(_env_dict(st.config.get("Env")))
        return env

    def expand(self, st: _Stage, word: str) -> str:
        return shell.expand(word, self.env_for_expansion(st), self.escape)

    def _record_temp(self, r: Resolved) -> None:
        names = self.b.meta.image_names_for_target(self.ns, r.target["digest"])
        if not names:
            self.b.images.record(self.ns, [], r.target)
            self.temp_names.add(r.config_digest)

    def _hold(self, kind: str, ref: str) -> None:
        """Keep what the build makes from a concurrent garbage collection until it ends (a lease
        made at the first need: a build served from the cache writes nothing)."""
        meta = self.b.meta
        if self.lease is None:
            self.lease = meta.create_lease(self.ns, f"build-{secrets.token_hex(8)}", ttl=24 * 3600)
        meta.add_lease_resource(self.ns, self.lease.id, kind, ref,
                                snapshotter=self.b.images.snapshotter_name)

    def _keep(self, target: dict[str, Any]) -> None:
        self._hold("content", target["digest"])

    def _set_image(self, st: _Stage, r: Resolved) -> None:
        st.image = r
        st.doc = r.config  # never changed in place (_commit works on a copy)
        st.config = dict(st.doc.get("config") or {})
        self.out(f" ---> {_short(r.config_digest)}\n")

    def _cached(self, st: _Stage, key_text: str) -> bool:
        if self.opts.nocache:
            return False
        parent = st.image.config_digest if st.image else None
        if self.known is None:
            self.known = self.b.cache.load(self.ns)
        hit = self.b.cache.get(self.ns, self.b.cache.key(parent, key_text), self.known)
        if hit is None:
            return False
        desc, r = hit  # kept alive by its cache lease
        self.out(" ---> Using cache\n")
        self._set_image(st, r)
        return True

    def _commit(self, st: _Stage, key_text: str, created_by: str, new_layer: tuple[str, dict[str, Any]] | None = None,
                config: dict[str, Any] | None = None, empty: bool | None = None) -> Resolved:
        """A new image: the stage's image + new_layer (diff_id, desc) or none, with config."""
        doc = st.doc if st.doc is not None else layers.base_config(self.b.images, None)
        doc = json.loads(json.dumps(doc))
        doc["config"] = config if config is not None else st.config
        doc.pop("container", None)
        cc = dict(doc["config"])
        cc["Cmd"] = created_by_cmd(created_by, doc["config"].get("Shell"))
        doc["container_config"] = cc
        h: dict[str, Any] = {"created": layers.now_rfc3339(), "created_by": created_by}
        if new_layer is None:
            h["empty_layer"] = True
        parent = st.image.config_digest if st.image else None
        size = new_layer[1]["size"] if new_layer else 0
        with self.b.meta.tx():  # the step's metadata in one transaction (one sync)
            r = layers.write_image(self.b.images, self.ns, st.image, doc,
                                   [new_layer] if new_layer else [], [h], keep=False)
            self._keep(r.target)
            self.b.cache.put(self.ns, self.b.cache.key(parent, key_text), r.target, size)
        self._set_image(st, r)
        return r

    def _nop(self, st: _Stage, text: str, config: dict[str, Any]) -> None:
        """A metadata-only step: history "/bin/sh -c #(nop)  TEXT", cache keyed by the config."""
        created_by = self.nop_prefix(config) + " " + text
        key_text = json.dumps({"nop": text, "config": config}, sort_keys=True)
        saved = st.config
        if self._cached(st, key_text):
            return
        st.config = config
        try:
            self._commit(st, key_text, created_by, config=config)
        except BaseException:
            st.config = saved
            raise

    # --- instructions ---

    def dispatch(self, st: _Stage, ins: Instruction) -> None:
        if self.opts.cancelled.is_set():
            raise BuildError("the build was cancelled (the client went away)")
        handler = getattr(self, "do_" + ins.cmd.lower())
        handler(st, ins)

    def do_from(self, st: _Stage, ins: Instruction) -> None:
        env = {k: v for k, v in self.meta_args.items() if v is not None}
        name = shell.expand(ins.args[0], env, self.escape)
        platform = ins.flags.get("platform")
        if platform:
            platform = shell.expand(platform, env, self.escape)
        platform = platform or self.opts.platform
        if platform:
            from berth.images import config as imgconfig
            want = imgconfig.parse_platform(platform)
            host = imgconfig.host_platform()
            if want.get("os") != host.get("os") or want.get("architecture") != host.get("architecture"):
                raise InvalidArgument(f"FROM --platform={platform}: berth builds only for "
                                      f"{imgconfig.format_platform(host)}")
        st.args = {}
        by_stage = {s.name: s for s in self.stages[:-1] if s.name}
        if name.lower() in by_stage:
            src = by_stage[name.lower()]
            self._set_image(st, src.image) if src.image else self._scratch(st)
        elif name.isdigit() and int(name) < len(self.stages) - 1:
            src = self.stages[int(name)]
            self._set_image(st, src.image) if src.image else self._scratch(st)
        elif name == "scratch":
            self._scratch(st)
        else:
            r = self._image(name, pull=self.opts.pull)
            self._set_image(st, r)
        env = st.config.get("Env") or []
        if not any(e.startswith("PATH=") for e in env):
            st.config["Env"] = list(env) + [DEFAULT_PATH]
        triggers = list(st.config.get("OnBuild") or [])
        if triggers:
            st.config["OnBuild"] = None
            self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) != 1 else ''}\n")
            for t in triggers:
                sub = dfparser._instruction(t, ins.line, ins.line, self.escape)
                if sub.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise InvalidArgument(f"{sub.cmd} isn't allowed as an ONBUILD trigger")
                self.dispatch(st, sub)

    def _scratch(self, st: _Stage) -> None:
        st.image = None
        st.doc = layers.base_config(self.b.images, None)
        st.config = dict(SCRATCH_CONFIG)

    def _image(self, name: str, pull: bool = False) -> Resolved:
        from berth.oci import reference as refmod
        try:
            ref = str(refmod.parse(name))
        except InvalidArgument:
            raise InvalidArgument(f"invalid reference format: repository name ({name}) must be lowercase"
                                  if name.lower() != name else f"invalid reference format: {name}") from None
        if not pull:
            try:
                return self.b.images.resolve(self.ns, ref)
            except NotFound:
                pass
        try:
            self.b.images.pull(self.ns, ref, progress=lambda m: None)
        except BerthError as e:
            if not pull:
                raise NotFound(f"pull access denied for {name}, repository does not exist or may require "
                               f"'docker login': {e.message}") from None
            raise
        return self.b.images.resolve(self.ns, ref)

    def do_arg(self, st: _Stage, ins: Instruction) -> None:
        parts = []
        for w in ins.args:
            name, eq, default = w.partition("=")
            name = self.expand(st, name)
            value = self.expand(st, default) if eq else None
            parts.append(name + ("=" + value if value is not None else ""))
            if name in self.opts.buildargs:
                value = self.opts.buildargs[name]
                self.used_args.add(name)
            elif value is None and name in self.meta_args:
                value = self.meta_args[name]
            st.args[name] = value
        self._nop(st, "ARG " + " ".join(parts), st.config)

    def do_env(self, st: _Stage, ins: Instruction) -> None:
        cfg = dict(st.config)
        env = list(cfg.get("Env") or [])
        shown = []
        a = ins.args
        for k, v in zip(a[::2], a[1::2]):
            key = self.expand(st, k)
            val = shell.expand(v, self.env_for_expansion(st), self.escape)  # the env before this step
            env = _set_env(env, key, val)
            shown.append(f"{key}={val}")
        cfg["Env"] = env
        self._nop(st, "ENV " + " ".join(shown), cfg)

    def do_label(self, st: _Stage, ins: Instruction) -> None:
        cfg = dict(st.config)
        labels = dict(cfg.get("Labels") or {})
        shown = []
        a = ins.args
        for k, v in zip(a[::2], a[1::2]):
            key, val = self.expand(st, k), self.expand(st, v)
            labels[key] = val
            shown.append(f"{key}={val}")
        cfg["Labels"] = labels
        self._nop(st, "LABEL " + " ".join(shown), cfg)

    def do_maintainer(self, st: _Stage, ins: Instruction) -> None:
        who = ins.args[0]
        st.doc = dict(st.doc or layers.base_config(self.b.images, None), author=who)
        self._nop(st, "MAINTAINER " + who, dict(st.config))

    def do_expose(self, st: _Stage, ins: Instruction) -> None:
        from berth.images.imports import _ports
        ports = [self.expand(st, w) for w in ins.args]
        cfg = dict(st.config)
        exposed = dict(cfg.get("ExposedPorts") or {})
        for p in _ports(ports):
            exposed[p] = {}
        cfg["ExposedPorts"] = exposed
        self._nop(st, "EXPOSE " + " ".join(sorted(ports)), cfg)  # sorted, as dockerd

    def do_volume(self, st: _Stage, ins: Instruction) -> None:
        vols = [self.expand(st, w) for w in ins.args]
        if any(not v.strip() for v in vols):
            raise InvalidArgument("VOLUME specified can not be an empty string")
        cfg = dict(st.config)
        v = dict(cfg.get("Volumes") or {})
        for x in vols:
            v[x] = {}
        cfg["Volumes"] = v
        self._nop(st, "VOLUME [" + " ".join(vols) + "]", cfg)

    def do_user(self, st: _Stage, ins: Instruction) -> None:
        user = self.expand(st, ins.args[0])
        self._nop(st, "USER " + user, dict(st.config, User=user))

    def do_stopsignal(self, st: _Stage, ins: Instruction) -> None:
        sig = self.expand(st, ins.args[0])
        from berth.runtime.container import parse_signal
        try:
            parse_signal(sig)
        except BerthError:
            raise InvalidArgument(f"Invalid signal: {sig}") from None
        self._nop(st, "STOPSIGNAL " + sig, dict(st.config, StopSignal=sig))

    def do_shell(self, st: _Stage, ins: Instruction) -> None:
        self._nop(st, "SHELL [" + " ".join(ins.args) + "]", dict(st.config, Shell=list(ins.args)))

    def _command(self, st: _Stage, ins: Instruction) -> list[str]:
        if ins.json:
            return list(ins.args)
        return list(st.config.get("Shell") or DEFAULT_SHELL) + [ins.args[0] if ins.args else ""]

    def do_cmd(self, st: _Stage, ins: Instruction) -> None:
        cmd = self._command(st, ins) if ins.args else []
        st.cmd_set = True
        self._nop(st, "CMD " + _go_quote_list(cmd), dict(st.config, Cmd=cmd))

    def do_entrypoint(self, st: _Stage, ins: Instruction) -> None:
        ep = self._command(st, ins) if ins.args else []
        cfg = dict(st.config, Entrypoint=ep or None)
        if not st.cmd_set:
            cfg["Cmd"] = None
        self._nop(st, "ENTRYPOINT " + _go_quote_list(ep), cfg)

    def do_onbuild(self, st: _Stage, ins: Instruction) -> None:
        expr = ins.args[0]
        cfg = dict(st.config)
        cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [expr]
        self._nop(st, "ONBUILD " + expr, cfg)

    def do_healthcheck(self, st: _Stage, ins: Instruction) -> None:
        from berth.dockerfile import health
        cfg = dict(st.config)
        hc = health.config(ins)
        # the step's commit merges it over the image before (dockerd's merge, as a commit's): what
        # it leaves unset, HEALTHCHECK NONE's too, is the previous healthcheck's
        cfg["Healthcheck"] = health.merged(hc, st.config.get("Healthcheck"))
        text = "HEALTHCHECK &{" + _go_quote_list(hc["Test"]) + " " + " ".join(
            json.dumps(format_duration(hc.get(k, 0))) for k in ("Interval", "Timeout", "StartPeriod")) + \
            " " + repr(chr(hc.get("Retries", 0))).replace("'\\x", "'\\x") + "}"
        self._nop(st, text, cfg)

    def do_workdir(self, st: _Stage, ins: Instruction) -> None:
        path = self.expand(st, ins.args[0])
        wd = posixpath.normpath(posixpath.join("/", st.config.get("WorkingDir") or "/", path))
        cfg = dict(st.config, WorkingDir=wd)
        text = "WORKDIR " + wd
        key_text = json.dumps({"workdir": text, "config": cfg}, sort_keys=True)
        if self._cached(st, key_text):
            return
        st.config = cfg

        if st.image is not None and self._is_dir_in_image(st.image, wd):
            # nothing to make: an empty layer (dockerd's commit of an unchanged container)
            self._commit(st, key_text, self.nop_prefix(st.config) + text)
            return

        def work(root: str) -> None:
            target = resolve_in(root, wd)
            if not os.path.lexists(target):
                _mkdir_all(root, wd, 0, 0)
        self._snapshot_step(st, key_text, self.nop_prefix(st.config) + text, work)

    def _is_dir_in_image(self, r: Resolved, path: str) -> bool:
        """Whether ``path`` is a directory in the image, read from its layers without mounting
        them (False also when a symlink is on the way: the caller then mounts and looks)."""
        images = self.b.images
        sn = images.snapshotter
        key = images.unpack(r)
        if key is None:
            return False
        if images.snapshotter_name != "overlayfs":
            host = resolve_in(sn.fs_path(key), path)
            return os.path.isdir(host) and not os.path.islink(host)
        dirs = []
        while key is not None:
            dirs.append(sn.fs_path(key))
            key = sn.stat(key).parent
        from berth.images import diff
        done: list[str] = []
        for comp in [p for p in path.split("/") if p]:
            found = False
            for layer in dirs:
                try:
                    st = os.lstat(os.path.join(layer, *done, comp))
                except (FileNotFoundError, NotADirectoryError):
                    st = None
                if st is not None:
                    if not stat.S_ISDIR(st.st_mode):
                        return False  # a file, a whiteout or a symlink
                    found = True
                    break
                if diff._opaque(os.path.join(layer, *done)):
                    break  # the lower layers' content is hidden here
            if not found:
                return False
            done.append(comp)
        return True

    def do_copy(self, st: _Stage, ins: Instruction) -> None:
        self._copy(st, ins, add=False)

    def do_add(self, st: _Stage, ins: Instruction) -> None:
        self._copy(st, ins, add=True)

    def do_run(self, st: _Stage, ins: Instruction) -> None:
        cmd = self._command(st, ins)
        # build args in effect (declared, with a value, not overridden by ENV) go into the
        # environment of the step and, as docker's "|N a=b" prefix, into its history
        env_keys = set(_env_dict(st.config.get("Env")))
        args = {k: v for k, v in st.args.items() if v is not None and k not in env_keys}
        proxies = {k: self.opts.buildargs[k] for k in PROXY_ARGS
                   if k in self.opts.buildargs and self.opts.buildargs[k] is not None and k not in args}
        for k in proxies:
            self.used_args.add(k)
        save = list(cmd)
        if args:
            save = [f"|{len(args)}"] + [f"{k}={v}" for k, v in sorted(args.items())] + cmd
        created_by = " ".join(save)
        key_text = json.dumps({"run": save, "config": st.config}, sort_keys=True)
        if self._cached(st, key_text):
            return
        env = list(st.config.get("Env") or []) + [f"{k}={v}" for k, v in sorted(args.items())] + \
            [f"{k}={v}" for k, v in sorted(proxies.items())]
        body = {"Image": st.image.config_digest if st.image else None, "Cmd": cmd, "Entrypoint": [],
                "Env": env, "WorkingDir": st.config.get("WorkingDir") or "", "User": st.config.get("User") or "",
                "AttachStdout": True, "AttachStderr": True, "Labels": {},
                "HostConfig": dict(self.opts.resources, NetworkMode=self.opts.networkmode or "default",
                                   ExtraHosts=self.opts.extrahosts or None)}
        if st.image is None:
            raise BuildError("The command '" + created_by + "' returned a non-zero code: 127 "
                             "(a RUN step needs an image with a shell; this stage is FROM scratch)", 127)
        cs = self.b.containers
        with _NAMES_LOCK:
            self._record_temp(st.image)  # the container's image must be one the engine can name
            res = cs.create(self.ns, body)
        cid = res["Id"]
        keep = False
        try:
            self.out(f" ---> Running in {cid[:12]}\n")
            cs.start(self.ns, cid)
            self.opts.running = cid
            if self.opts.cancelled.is_set():
                cancel(cs, self.ns, self.opts)
            seen = False
            for _stream, data in cs.logs(self.ns, cid, follow=True):
                seen = True
                if not self.opts.quiet:
                    self._emit({"stream": data.decode("utf-8", "replace")})
            code = cs.wait_exit(self.ns, cid)
            if not seen:  # the log was not there yet when the step started: read it now
                for _stream, data in cs.logs(self.ns, cid):
                    if not self.opts.quiet:
                        self._emit({"stream": data.decode("utf-8", "replace")})
            self.opts.running = None
            cs.cleanup_exited(self.ns, cid)
            if self.opts.cancelled.is_set():
                raise BuildError("the build was cancelled (the client went away)")
            if code != 0:
                # dockerd's: a failed step's container stays (to look into, commit, or run from
                # the step before) unless --force-rm; --rm is for the steps that succeed
                keep = not self.opts.forcerm
                if not keep:
                    self.out(f"Removing intermediate container {cid[:12]}\n")
                raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
            rec = cs.get(self.ns, cid)
            remap = cs.remapped(rec)  # (a RUN step's files: its root's ids in a remapping)
            diff_id, desc = layers.snapshot_diff(self.b.images, rec.snapshot_key,
                                                 remap.to_container if remap is not None else None)
            keep = not self.opts.rm and not self.opts.forcerm
            if not keep:
                self.out(f"Removing intermediate container {cid[:12]}\n")
        finally:
            if keep:  # the container's image stays (untagged), as dockerd's intermediate images
                self.temp_names.discard(st.image.config_digest)
            else:
                try:
                    cs.remove(self.ns, cid, force=True, volumes=True)
                except BerthError:
                    pass
        self._commit(st, key_text, created_by, (diff_id, desc) if diff_id else None)

    # --- COPY / ADD ---

    def _copy(self, st: _Stage, ins: Instruction, add: bool) -> None:
        name = "ADD" if add else "COPY"
        words = [self.expand(st, w) for w in ins.args]
        srcs, dest = words[:-1], words[-1]
        chown = ins.flags.get("chown")
        chown = self.expand(st, chown) if chown else None
        chmod = ins.flags.get("chmod")
        mode = None
        if chmod:
            try:
                mode = int(chmod, 8)
                if mode > 0o7777:
                    raise ValueError
            except ValueError:
                raise InvalidArgument(f"invalid chmod parameter: {chmod}") from None
        src_from = ins.flags.get("from")
        if src_from is not None and add:
            raise InvalidArgument("ADD does not support the --from flag")
        view = None
        try:
            if src_from is not None:
                src_from = self.expand(st, src_from)
                src_img = self._stage_image(src_from)
                # an image does not change: its ID and the paths key the step without reading it
                from_key = json.dumps({"copy-from": src_img.config_digest if src_img else "scratch",
                                       "srcs": srcs, "to": dest, "chown": chown, "chmod": chmod,
                                       "config": st.config}, sort_keys=True)
                if self._cached(st, from_key):
                    return
                if src_img is None:
                    root = os.path.join(self.workdir, "empty")
                    os.makedirs(root, exist_ok=True)
                else:
                    view = self._mount_view(src_img)
                    root = view[1]
            else:
                root = self.context
            for s in srcs:
                if add and (s.startswith(("http://", "https://")) or s.startswith("git@")):
                    raise InvalidArgument(f"ADD {s}: downloading a URL is not supported (berth builds "
                                          "offline); fetch it into the context and COPY it")
            sources = []
            for s in srcs:
                sources += self._match_sources(root, s, from_context=src_from is None)
            if not sources:
                raise InvalidArgument(f"{name} failed: no source files were specified")
            # dockerd's hashes: the history shows the same for the same files
            hashes = [source_hash(root, host, src_from is None) for _, host in sources]
            if len(hashes) > 1:
                kind, digest = "multi", hashlib.sha256(",".join(hashes).encode()).hexdigest()
            else:
                kind, _, digest = hashes[0].partition(":")
            wd = st.config.get("WorkingDir") or "/"
            dest_abs = dest  # docker's normalizeDest: relative to WORKDIR, cleaned, the trailing / kept
            if not dest.startswith("/"):
                dest_abs = posixpath.normpath(posixpath.join("/", wd, dest))
                if dest.endswith("/") and dest_abs != "/":
                    dest_abs += "/"
            # docker's comment: the destination as written, --chown glued to the hash (sic)
            chown_comment = f"--chown={chown}" if chown else ""
            text = f"{name} {chown_comment}{kind}:{digest} in {dest} "
            if src_from is not None:
                key_text = from_key
            else:
                key_text = json.dumps({"copy": text, "to": dest_abs, "chown": chown, "chmod": chmod,
                                       "config": st.config}, sort_keys=True)
                if self._cached(st, key_text):
                    return
            multi = len(sources) > 1 or len(srcs) > 1 or dest in (".", "..") or dest.endswith(("/.", "/.."))

            def work(rootfs: str) -> None:
                # COPY --from keeps the owners of what it copies (dockerd's classic builder does);
                # from the context everything is root's, unless --chown
                uid, gid = _ids(rootfs, chown) if chown else (None, None) if src_from is not None else (0, 0)
                for rel, host in sources:
                    _copy_into(rootfs, host, dest_abs, multi, uid, gid, mode, chown is not None,
                               extract=add and _is_local_archive(host))
            self._snapshot_step(st, key_text, self.nop_prefix(st.config) + text, work)
        finally:
            if view is not None:
                self._unmount_view(view)

    def _stage_image(self, name: str) -> Resolved | None:
        low = name.lower()
        for s in self.stages[:-1]:
            if s.name == low:
                return s.image
        if name.isdigit():
            i = int(name)
            if i < len(self.stages) - 1:
                return self.stages[i].image
            raise InvalidArgument(f"invalid from flag value {name}: refers to current or future build stage")
        return self._image(name)

    def _match_sources(self, root: str, pattern: str, from_context: bool) -> list[tuple[str, str]]:
        """[(shown path, host path)] for a source (globs as Go's filepath.Match)."""
        if from_context and posixpath.normpath(pattern).startswith("../") or posixpath.normpath(pattern) == "..":
            raise InvalidArgument(f"COPY failed: forbidden path outside the build context: {pattern} ()")
        clean = posixpath.normpath("/" + pattern).lstrip("/")
        if any(c in clean for c in "*?["):
            import fnmatch
            out = []
            for dirpath, dirnames, filenames in os.walk(root):
                rel_dir = os.path.relpath(dirpath, root)
                for n in sorted(dirnames + filenames):
                    rel = n if rel_dir == "." else f"{rel_dir}/{n}"
                    if len(rel.split("/")) == len(clean.split("/")) and all(
                            fnmatch.fnmatchcase(a, b) for a, b in zip(rel.split("/"), clean.split("/"))):
                        out.append((rel, resolve_in(root, rel)))
                dirnames.sort()
            return sorted(out)
        host = resolve_in(root, clean)
        if not os.path.lexists(host):
            where = "build context or excluded by .dockerignore" if from_context else "image"
            raise InvalidArgument(f"COPY failed: file not found in {where}: stat {clean}: file does not exist")
        return [(clean or ".", host)]

    def _mount_view(self, r: Resolved) -> tuple[str, str]:
        from berth.snapshots.mount import mount_all
        sn = self.b.images.snapshotter
        top = self.b.images.unpack(r)
        key = f"build-view-{secrets.token_hex(6)}"
        self._hold("snapshot", key)
        mounts = sn.view(key, top)
        target = os.path.join(self.workdir, key)
        try:
            mount_all(mounts, target)
        except BaseException:
            sn.remove(key)
            raise
        return key, target

    def _unmount_view(self, view: tuple[str, str]) -> None:
        from berth.snapshots.mount import unmount
        key, target = view
        unmount(target)
        try:
            self.b.images.snapshotter.remove(key)
        except BerthError:
            pass

    def _snapshot_step(self, st: _Stage, key_text: str, created_by: str, work: Callable[[str], None]) -> None:
        """Mount a writable snapshot of the stage's image, let ``work(rootfs)`` change it, and
        commit its changes as the step's layer."""
        from berth.images import config as imgconfig
        from berth.snapshots.mount import mount_all, unmount
        images = self.b.images
        sn = images.snapshotter
        top = images.unpack(st.image) if st.image is not None else None
        key = f"build-{secrets.token_hex(8)}"
        self._hold("snapshot", key)
        mounts = sn.prepare(key, top)
        target = os.path.join(self.workdir, key)
        committed = False
        try:
            mount_all(mounts, target)
            try:
                work(target)
            finally:
                unmount(target)
            remap = self.b.containers.remap
            diff_id, desc = layers.snapshot_diff(images, key, name_ids=remap.to_host if remap is not None else None)
            new_layer = (diff_id, desc) if diff_id else None
            if new_layer:
                chain = imgconfig.chain_ids(((st.doc or {}).get("rootfs") or {}).get("diff_ids", []) + [diff_id])[-1]
                try:
                    sn.stat(chain)
                except NotFound:
                    self._hold("snapshot", chain)
                    sn.commit(chain, key)
                    committed = True
            self._commit(st, key_text, created_by, new_layer)
            if new_layer:
                images.unpack(st.image)  # the snapshot ref of the new image (the chain is there)
        finally:
            if not committed:
                try:
                    sn.remove(key)
                except BerthError:
                    pass
            try:
                os.rmdir(target)
            except OSError:
                pass


def cancel(containers: ContainerService, ns: str, opts: Options) -> None:
    """Stop a build: no step starts after this, and a RUN step's container is killed."""
    opts.cancelled.set()
    cid = opts.running
    if cid:
        try:
            containers.kill(ns, cid, "KILL", by_user=False)
        except BerthError:
            pass


def created_by_cmd(created_by: str, shell_: Iterable[str] | None = None) -> list[str]:
    sh = list(shell_ or DEFAULT_SHELL)
    prefix = " ".join(sh) + " " + NOP
    if created_by.startswith(prefix):
        rest = created_by[len(prefix):]
        if rest.startswith(" "):
            return sh + [NOP, rest[1:]]
        return sh + [NOP + rest]
    return sh + [created_by]


__all__ = ["Builder", "BuildCache", "BuildError", "Options"]
