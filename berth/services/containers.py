"""The containers use-cases: create, start, wait, stop, kill, remove, list, inspect, logs.

A container is a metadata record (its Docker create request, image and snapshot) plus, once
started, a shim that holds it. Paths:
  <root>/containers/<id>/   hostname, hosts, resolv.conf, <id>-json.log, rootfs/ (mount point)
  <state>/containers/<id>/  bundle/config.json; shim.sock, shim.json, exit.json (the shim's)
"""

import json
import os
import random
import secrets
import shutil
import signal
import socket
import time

from berth.errors import AlreadyExists, BerthError, FailedPrecondition, InvalidArgument, NotFound, SystemError_
from berth.services.volumes import inspect_mounts

_ADJ = ["admiring", "brave", "calm", "clever", "dreamy", "eager", "focused", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "tender", "upbeat", "vibrant", "zealous"]
_NAMES = ["babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "lovelace", "meitner", "noether",
          "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "hamilton", "lamport", "knuth", "liskov"]


def _now():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _parse_time(s):
    if not s or s.startswith("0001"):
        return 0.0
    import calendar
    base, _, frac = s.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def _shim_call(path, req, timeout=5.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return json.loads(buf.split(b"\n")[0]) if buf.strip() else None
    finally:
        s.close()


class ContainerService:
    def __init__(self, cfg, meta, images, snapshotter, snapshotter_name, zygote):
        self.cfg = cfg
        self.meta = meta
        self.images = images
        self.snapshotter = snapshotter
        self.snapshotter_name = snapshotter_name
        self.zygote = zygote
        self.runtime_root = os.path.join(cfg.state, "runtime")
        self._removed_exits = {}  # id -> exit code of removed containers, for waits that outlive them
        self.networks = None  # NetworkService, set by the daemon
        import threading
        # notified when a container starts, exits (cleaned up) or goes: waits need not poll
        self._changed = threading.Condition()
        self.volumes = None  # the VolumeService (berthd wires it): the container's mounts

    # --- paths ---

    def cdir(self, cid):
        return os.path.join(self.cfg.root, "containers", cid)

    def sdir(self, cid):
        return os.path.join(self.cfg.state, "containers", cid)

    def shim_socket(self, cid):
        """Short on purpose: a unix socket path must fit in 108 bytes."""
        return os.path.join(self.cfg.state, "s", cid[:16] + ".sock")

    def rootfs(self, cid):
        return os.path.join(self.cdir(cid), "rootfs")

    def log_path(self, cid):
        return os.path.join(self.cdir(cid), f"{cid}-json.log")

    # --- lookup ---

    def get(self, ns, ref):
        ref = ref.lstrip("/")
        try:
            return self.meta.get_container(ns, ref)
        except NotFound:
            pass
        try:
            return self.meta.get_container_by_name(ns, ref)
        except NotFound:
            pass
        if len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
            found = [c for c in self.meta.list_containers(ns) if c.id.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple containers match the ID prefix {ref!r}")
        raise NotFound(f"No such container: {ref}")

    # --- state ---

    def state(self, rec):
        """{"Status", "Running", "Pid", "ExitCode", "StartedAt", "FinishedAt", "Error"} from the shim's files."""
        ext = rec.extensions or {}
        sd = self.sdir(rec.id)
        st = {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
              "Dead": False, "Pid": 0, "ExitCode": ext.get("error_code", 0), "Error": ext.get("error", ""),
              "StartedAt": ext.get("started_at", "0001-01-01T00:00:00Z"),
              "FinishedAt": "0001-01-01T00:00:00Z"}
        shim = _read_json(os.path.join(sd, "shim.json"))
        exitj = _read_json(os.path.join(sd, "exit.json"))
        if exitj is None:
            exitj = ext.get("last_exit")
        if shim and shim.get("status") == "running" and exitj is None:
            # the shim writes exit.json as soon as it reaps the init: until then (a live shim, even
            # with the init just dead) the container is running, never "exited (255)"
            if _alive(shim.get("shim_pid", 0)):
                st.update(Status="running", Running=True, Pid=shim.get("pid", 0))
                if self._paused(rec):
                    st.update(Status="paused", Paused=True)
                return st
        if exitj is not None:
            st.update(Status="exited", ExitCode=exitj.get("exit_code", 0), FinishedAt=exitj.get("finished_at"))
            if ext.get("restarting"):  # between an exit and the restart its policy asks for
                st.update(Status="restarting", Restarting=True)
        elif ext.get("started_at"):
            st.update(Status="exited", ExitCode=255, FinishedAt=ext.get("started_at"))
        return st

    def runtime_root_of(self, rec):
        """Each OCI runtime keeps its own state root (their state files differ)."""
        rt = self.cfg.runtimes.get(rec.runtime)
        if rt is None or rt.path == "berth-runc":
            return self.runtime_root
        return os.path.join(self.cfg.state, "runtime-" + rec.runtime)

    def runtime_call(self, rec, op):
        """pause | resume | delete (forced) | state of a container, with its own runtime."""
        rt = self.cfg.runtimes.get(rec.runtime)
        if rt is None or rt.path == "berth-runc":
            from berth.runtime import container as rtlib
            from berth.runtime import state as rstate
            if op == "state":
                return rstate.load(self.runtime_root, rec.id).status()
            if op == "delete":
                return rtlib.delete(self.runtime_root, rec.id, force=True)
            return getattr(rtlib, op)(self.runtime_root, rec.id)
        import subprocess
        args = [rt.path] + list(rt.args or []) + ["--root", self.runtime_root_of(rec)]
        args += {"delete": ["delete", "--force"], "state": ["state"]}.get(op, [op]) + [rec.id]
        p = subprocess.run(args, capture_output=True, timeout=60)
        if p.returncode != 0:
            msg = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
            if op in ("state", "delete") and any("not exist" in m for m in msg):
                raise NotFound(f"{rt.path}: container {rec.id} does not exist")
            raise SystemError_(f"{rt.path} {op}: {msg[-1] if msg else f'exit status {p.returncode}'}")
        if op == "state":
            return json.loads(p.stdout).get("status")
        return None

    def _paused(self, rec):
        try:
            return self.runtime_call(rec, "state") == "paused"
        except BerthError:
            return False

    # --- create ---

    def create(self, ns, body, name=None):
        image_ref = body.get("Image")
        if not image_ref:
            raise InvalidArgument("no image given (Image)")
        r = self.images.resolve(ns, image_ref, platform=body.get("Platform"))
        if name:
            name = name.lstrip("/")
            import re
            if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
                raise InvalidArgument(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
            try:
                other = self.meta.get_container_by_name(ns, name)
                raise AlreadyExists(f'Conflict. The container name "/{name}" is already in use by container '
                                    f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
            except NotFound:
                pass
        else:
            name = None  # generated below, under the same transaction as the record
        hc = body.get("HostConfig") or {}
        runtime = hc.get("Runtime") or self.cfg.default_runtime
        if runtime not in self.cfg.runtimes:
            raise InvalidArgument(f"unknown or invalid runtime name: {runtime}")
        from berth.services.ocispec import check_security
        body = dict(body, HostConfig=check_security(hc))  # --security-opt checked; a seccomp file read in
        from berth.services import runopts
        body, warnings = runopts.check(self, ns, body, r.config)  # run options (docker's messages)
        if self.networks is not None:
            from berth.services import container_net
            container_net.check(self.networks, ns, body)
        cid = secrets.token_hex(32)
        mounts, new_volumes = self.volumes.resolve(ns, body, self.images.read_json(r.config_digest, 20 << 20,
                                                                                   "image config"))
        try:
            top = self.images.unpack(r)
            key = f"container-{cid}"
            self.snapshotter.prepare(key, top)
        except BaseException:
            self.volumes.discard(ns, new_volumes)
            raise
        try:
            os.makedirs(self.cdir(cid), mode=0o710, exist_ok=True)
            spec = dict(body)
            spec["_mounts"] = mounts
            spec["_image_id"] = r.config_digest
            spec["_created"] = _now()
            with self.volumes.lock:  # no volume rm between the check and the record that uses them
                self.volumes.check_exist(ns, mounts)
                for attempt in range(20):
                    # a generated name may be taken by a concurrent create: take another, as docker
                    try_name = name or _random_name(self.meta, ns, digits=attempt >= 10)
                    try:
                        self.meta.create_container(ns, cid, name=try_name, image=r.config_digest,
                                                   snapshotter=self.snapshotter_name, snapshot_key=key,
                                                   runtime=runtime, spec=spec, labels=body.get("Labels") or {},
                                                   extensions={"image_name": image_ref})
                        break
                    except AlreadyExists:
                        if name:
                            raise
                else:
                    raise AlreadyExists("could not find a free name for the container; name it with --name")
        except BaseException:
            try:
                self.snapshotter.remove(key)
            except BerthError:
                pass
            shutil.rmtree(self.cdir(cid), ignore_errors=True)
            self.volumes.discard(ns, new_volumes)
            raise
        return {"Id": cid, "Warnings": warnings}

    # --- start ---

    def start(self, ns, ref, attach_pending=False, restarting=False):
        rec = self.get(ns, ref)
        st = self.state(rec)
        if st["Running"]:
            return False  # 304
        spec_body = rec.spec_json()
        sd = self.sdir(rec.id)
        os.makedirs(sd, mode=0o711, exist_ok=True)
        old_shim = _read_json(os.path.join(sd, "shim.json")) or {}
        deadline = time.monotonic() + 10
        while _alive(old_shim.get("shim_pid", 0)) and time.monotonic() < deadline:
            time.sleep(0.02)  # the previous run's shim is still finishing (draining, cleaning up)
        try:
            self.runtime_call(rec, "delete")  # whatever a dead shim left
        except BerthError:
            pass
        for f in ("exit.json", "shim.json", "start-error", "shim-error"):
            try:
                os.unlink(os.path.join(sd, f))
            except FileNotFoundError:
                pass
        from berth.services import ocispec
        from berth.snapshots.mount import mount_all, unmount
        rootfs = self.rootfs(rec.id)
        unmount(rootfs)
        mount_all(self.snapshotter.mounts(rec.snapshot_key), rootfs)
        try:
            cfg_doc = self.images.read_json(spec_body["_image_id"], 20 << 20, "image config")
            hostname = spec_body.get("Hostname") or rec.id[:12]
            from berth.services import container_net
            netns, files_dir = container_net.setup(self, ns, rec, spec_body, hostname, cfg_doc)
            extra = self.volumes.oci_mounts(ns, rec, rootfs)
            from berth.services import links, runopts
            spec_body = links.apply(self, ns, rec, spec_body, files_dir)  # --link: hosts entries, env
            oci = ocispec.build(rec.id, cfg_doc, spec_body, rootfs, files_dir, netns=netns, extra_mounts=extra)
            runopts.apply(self, ns, rec, spec_body, oci, rootfs)  # --pid, --ipc, --device, --sysctl, ...
            bundle = os.path.join(sd, "bundle")
            os.makedirs(bundle, exist_ok=True)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(oci, f)
            rt = self.cfg.runtimes[rec.runtime]
            binary = None if rt.path == "berth-runc" else rt.path
            hc = spec_body.get("HostConfig") or {}
            lc = (hc.get("LogConfig") or {}).get("Config") or {}
            params = {
                "id": rec.id, "state_dir": sd, "bundle": bundle, "runtime_root": self.runtime_root_of(rec),
                "runtime_binary": binary, "runtime_args": rt.args, "log_path": self.log_path(rec.id),
                "tty": bool(spec_body.get("Tty")), "open_stdin": bool(spec_body.get("OpenStdin")),
                "log_max_size": _size(lc.get("max-size")), "log_max_file": int(lc.get("max-file") or 1),
                "systemd": self.cfg.cgroup_driver == "systemd", "wait_attach": attach_pending,
                "socket": self.shim_socket(rec.id),
            }
            # this run's start time is taken before the process can end (StartedAt <= FinishedAt);
            # the last run's end and start go now, so no one reads them as this run's
            started_at = _now()
            ext0 = dict(self.meta.get_container(ns, rec.id).extensions or {})
            if "last_exit" in ext0 or "started_at" in ext0:
                ext0.pop("last_exit", None)
                ext0.pop("started_at", None)
                self.meta.update_container(ns, rec.id, extensions=ext0)
            self.zygote.spawn(params)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                shim = _read_json(os.path.join(sd, "shim.json"))
                if shim and shim.get("status") in ("running", "exited"):
                    break
                if shim and shim.get("status") == "failed":
                    err = _read_text(os.path.join(sd, "start-error")) or "the container failed to start"
                    self.meta.update_container(ns, rec.id, extensions=dict(rec.extensions or {}, error=err,
                                                                            error_at=_now(),
                                                                            error_code=_start_error_code(err)))
                    self._notify_change()
                    raise SystemError_(f"failed to create task for container: {err}")
                crash = _read_text(os.path.join(sd, "shim-error"))
                if crash:  # the shim died before it could say running or failed: no waiting a minute
                    raise SystemError_(f"the container's shim failed: {crash}")
                time.sleep(0.001)
            else:
                raise SystemError_("the container's shim did not start in time")
        except BaseException:
            unmount(rootfs)
            from berth.services import container_net
            container_net.teardown(self, ns, rec.id)
            self.volumes.release(ns, rec)
            raise
        ext = dict(self.meta.get_container(ns, rec.id).extensions or {})
        ext.pop("error", None)
        ext.pop("error_code", None)
        ext.pop("last_exit", None)
        ext["started_at"] = started_at
        if not restarting:
            ext["stopped_by_user"] = False
            ext["restart_count"] = 0
        self.meta.update_container(ns, rec.id, extensions=ext)
        self._notify_change()
        return True

    # --- wait, stop, kill ---

    def wait_exit(self, ns, ref, condition="not-running"):
        """Block until the container is not running (or, for next-exit, until it ran and exited).
        A container removed meanwhile (--rm) still answers with its exit code."""
        rec = self.get(ns, ref)
        try:
            return self._wait_exit(ns, ref, rec, condition)
        except NotFound:
            if rec.id in self._removed_exits:
                return self._removed_exits[rec.id]
            raise

    def _wait_exit(self, ns, ref, rec, condition):
        if condition == "next-exit" or self.state(rec)["Status"] == "created":
            # docker calls wait before start: wait for the start, then the exit
            failed_before = (rec.extensions or {}).get("error_at")
            while True:
                try:
                    rec = self.meta.get_container(ns, rec.id)
                except NotFound:
                    raise NotFound(f"No such container: {ref}") from None
                st = self.state(rec)
                if st["Running"] or st["Status"] == "exited" and rec.extensions.get("started_at"):
                    break
                if (rec.extensions or {}).get("error_at", failed_before) != failed_before:
                    break  # the start failed: docker's exit code for it (127 not found, 126, 128)
                self._wait_change(0.05)
        code = None
        if self.state(rec)["Status"] == "created" and (rec.extensions or {}).get("error_code"):
            code = rec.extensions["error_code"]
        while code is None:
            st = self.state(rec)
            if not st["Running"]:
                # removed meanwhile (--rm), its files may be gone already: the code remove() kept
                code = self._removed_exits.get(rec.id, st["ExitCode"])
                break
            path = self.shim_socket(rec.id)
            try:
                reply = _shim_call(path, {"op": "wait"}, timeout=None)
                if reply and "exit_code" in reply:
                    code = reply["exit_code"]
            except OSError:
                time.sleep(0.05)
        if condition == "removed":
            while True:  # --rm: the daemon's watcher removes it
                try:
                    self.meta.get_container(ns, rec.id)
                except NotFound:
                    break
                self._wait_change(0.05)
        return code

    def _wait_change(self, timeout):
        with self._changed:
            self._changed.wait(timeout)

    def _notify_change(self):
        with self._changed:
            self._changed.notify_all()

    def mark_stopped_by_user(self, ns, rec, value=True):
        ext = dict(self.meta.get_container(ns, rec.id).extensions or {})
        if ext.get("stopped_by_user") != value:
            ext["stopped_by_user"] = value
            self.meta.update_container(ns, rec.id, extensions=ext)

    def restart_policy(self, rec):
        hc = (rec.spec_json() or {}).get("HostConfig") or {}
        rp = hc.get("RestartPolicy") or {}
        return rp.get("Name") or "no", int(rp.get("MaximumRetryCount") or 0)

    def should_restart(self, rec, exit_code, daemon_start=False):
        """docker's restart policies: always, unless-stopped, on-failure[:N]; never after a user's stop."""
        name, limit = self.restart_policy(rec)
        ext = rec.extensions or {}
        if ext.get("stopped_by_user") or name in ("", "no"):
            return False
        if name == "always":
            return True
        if name == "unless-stopped":
            return True
        if name == "on-failure":
            if daemon_start:
                return False
            return exit_code != 0 and (limit <= 0 or int(ext.get("restart_count", 0)) < limit)
        return False

    def kill(self, ns, ref, sig="KILL", by_user=True):
        rec = self.get(ns, ref)
        if by_user:
            self.mark_stopped_by_user(ns, rec)
        st = self.state(rec)
        if not st["Running"]:
            raise FailedPrecondition(f"Cannot kill container: {ref}: container {rec.id} is not running")
        from berth.runtime.container import parse_signal
        n = parse_signal(sig or "KILL")
        if st["Paused"]:
            self.runtime_call(rec, "resume")
        os.kill(st["Pid"], n)

    def stop(self, ns, ref, timeout=None, signal_=None):
        rec = self.get(ns, ref)
        st = self.state(rec)
        if not st["Running"]:
            return False
        self.mark_stopped_by_user(ns, rec)
        if st["Paused"]:  # a frozen process cannot take the stop signal (nor SIGKILL) until thawed
            try:
                self.runtime_call(rec, "resume")
            except BerthError:
                pass
        spec = rec.spec_json()
        sig = signal_ or spec.get("StopSignal") or "TERM"
        t = 10 if timeout is None else int(timeout)
        if spec.get("StopTimeout") is not None and timeout is None:
            t = int(spec["StopTimeout"])
        from berth.runtime.container import parse_signal
        try:
            os.kill(st["Pid"], parse_signal(sig))
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + max(t, 0)
        while time.monotonic() < deadline:
            if not self.state(self.meta.get_container(ns, rec.id))["Running"]:
                return True
            time.sleep(0.05)
        try:
            os.kill(st["Pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait_exit(ns, rec.id)
        return True

    # --- remove ---

    def remove(self, ns, ref, force=False, volumes=False, network_after=False):
        """Remove a container (force: kill it first). network_after: its network attachments are
        released after the record is gone (the --rm path: `run --rm` returns at the removal)."""
        rec = self.get(ns, ref)
        st = self.state(rec)
        if st["Running"]:
            if not force:
                raise FailedPrecondition(f"You cannot remove a running container {rec.id}. "
                                         "Stop the container before attempting removal or force remove")
            self.kill(ns, rec.id, "KILL")
            self.wait_exit(ns, rec.id)
        from berth.snapshots.mount import unmount
        unmount(self.rootfs(rec.id))
        from berth.services import runopts
        runopts.release(self, rec.id)  # a shareable /dev/shm
        try:
            self.runtime_call(rec, "delete")
        except BerthError:
            pass
        from berth.services import container_net
        if network_after and self.networks is not None:
            self.networks.hold(rec.id)  # a network rm meanwhile waits for this release
            try:
                self._remove_record(ns, rec, volumes)
            finally:
                container_net.teardown(self, ns, rec.id)
        else:
            container_net.teardown(self, ns, rec.id)
            self._remove_record(ns, rec, volumes)

    def _remove_record(self, ns, rec, volumes):
        final = self.state(self.meta.get_container(ns, rec.id))
        if final["Status"] == "exited" or final["ExitCode"]:
            self._removed_exits[rec.id] = final["ExitCode"]
            while len(self._removed_exits) > 1000:
                self._removed_exits.pop(next(iter(self._removed_exits)))
        self.meta.delete_container(ns, rec.id)
        self._notify_change()
        self.volumes.container_removed(ns, rec, remove_anonymous=volumes)
        try:
            self.snapshotter.remove(rec.snapshot_key)
        except NotFound:
            pass
        shutil.rmtree(self.sdir(rec.id), ignore_errors=True)
        shutil.rmtree(self.cdir(rec.id), ignore_errors=True)

    def cleanup_exited(self, ns, cid):
        """After an exit: unmount the rootfs; remove the container when it asked (--rm)."""
        try:
            rec = self.meta.get_container(ns, cid)
        except NotFound:
            return
        if self.state(rec)["Running"]:
            return
        exitj = _read_json(os.path.join(self.sdir(cid), "exit.json"))
        if exitj is not None:
            self.meta.update_container(ns, cid, extensions=dict(rec.extensions or {}, last_exit=exitj))
        from berth.snapshots.mount import unmount
        unmount(self.rootfs(cid))
        from berth.services import runopts
        runopts.release(self, cid)  # a shareable /dev/shm
        from berth.services import container_net
        rec = self.meta.get_container(ns, cid)
        code = (exitj or {}).get("exit_code", 0)
        restart = self.should_restart(rec, code)
        auto_remove = not restart and ((rec.spec_json() or {}).get("HostConfig") or {}).get("AutoRemove")
        # --rm without published ports: the network goes after the record (the client is told
        # sooner); with ports it goes first, so they are free when `run --rm` returns
        network_after = bool(auto_remove) and not container_net.published(rec)
        if not network_after:
            container_net.teardown(self, ns, cid)
        self.volumes.release(ns, rec)
        if restart:
            ext = dict(rec.extensions or {})
            ext["restart_count"] = int(ext.get("restart_count", 0)) + 1
            ext["restarting"] = True
            self.meta.update_container(ns, cid, extensions=ext)
            time.sleep(min(0.1 * 2 ** min(ext["restart_count"], 6), 5.0))  # docker backs off too
            try:
                self.start(ns, cid, restarting=True)
            finally:
                try:
                    rec = self.meta.get_container(ns, cid)
                    self.meta.update_container(ns, cid, extensions=dict(rec.extensions or {}, restarting=False))
                except NotFound:
                    pass
            return "restarted"
        if auto_remove:
            try:
                self.remove(ns, cid, force=True, volumes=True, network_after=network_after)
                return "removed"
            except NotFound:
                pass

    # --- listing, inspecting ---

    def list(self, ns, all_=False, filters=None, limit=-1):
        filters = filters or {}
        out = []
        from berth.services.health import annotate
        for rec in self.meta.list_containers(ns):
            st = annotate(self, rec, self.state(rec))  # + State.Health
            if not all_ and not st["Running"] and not filters.get("status"):
                continue
            item = self._summary(rec, st)
            if _match(filters, item, rec, st):
                out.append(item)
        out.sort(key=lambda c: -c["Created"])
        if limit is not None and limit > 0:
            out = out[:limit]
        return out

    def _summary(self, rec, st):
        spec = rec.spec_json() or {}
        ns_ = self.network_settings(rec, st)
        cmd = " ".join(_quote(a) for a in _args(spec, self.images, rec))
        return {
            "Id": rec.id, "Names": ["/" + rec.name], "Image": (rec.extensions or {}).get("image_name") or rec.image,
            "ImageID": rec.image, "Command": cmd, "Created": int(rec.created_at),
            "Ports": _port_list(ns_["Ports"]), "Labels": rec.labels or {}, "State": st["Status"],
            "Status": _status_text(st),
            "HostConfig": {"NetworkMode": (spec.get("HostConfig") or {}).get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": ns_["Networks"]}, "Mounts": inspect_mounts(spec.get("_mounts")),
        }

    def inspect(self, ns, ref):
        rec = self.get(ns, ref)
        from berth.services.health import annotate
        st = annotate(self, rec, self.state(rec))  # + State.Health
        spec = rec.spec_json() or {}
        args = _args(spec, self.images, rec)
        cfg_doc = {}
        try:
            cfg_doc = self.images.read_json(rec.image, 20 << 20, "image config")
        except BerthError:
            pass
        ic = cfg_doc.get("config") or {}
        env = list(ic.get("Env") or []) + list(spec.get("Env") or [])
        hc = dict(spec.get("HostConfig") or {})
        hc.setdefault("NetworkMode", "default")
        if hc.get("Links"):
            from berth.services.links import inspect_links
            hc["Links"] = inspect_links(rec, hc)
        hc.setdefault("Runtime", rec.runtime)
        if not (hc.get("LogConfig") or {}).get("Type"):  # docker-py run() reads LogConfig.Type
            hc["LogConfig"] = {"Type": "json-file", "Config": dict((hc.get("LogConfig") or {}).get("Config") or {})}
        cdir = self.cdir(rec.id)
        return {
            "Id": rec.id, "Created": spec.get("_created") or "", "Path": args[0] if args else "",
            "Args": args[1:], "State": st, "Image": rec.image,
            "ResolvConfPath": os.path.join(cdir, "resolv.conf"), "HostnamePath": os.path.join(cdir, "hostname"),
            "HostsPath": os.path.join(cdir, "hosts"), "LogPath": self.log_path(rec.id), "Name": "/" + rec.name,
            "RestartCount": int((rec.extensions or {}).get("restart_count", 0)), "Driver": self.snapshotter_name, "Platform": "linux", "MountLabel": "",
            "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "HostConfig": hc,
            "GraphDriver": {"Name": self.snapshotter_name, "Data": {"MergedDir": self.rootfs(rec.id)}},
            "Mounts": inspect_mounts(spec.get("_mounts")),
            "Config": {
                "Hostname": spec.get("Hostname") or rec.id[:12], "Domainname": spec.get("Domainname") or "",
                "User": spec.get("User") or ic.get("User") or "", "AttachStdin": bool(spec.get("AttachStdin")),
                "AttachStdout": bool(spec.get("AttachStdout")), "AttachStderr": bool(spec.get("AttachStderr")),
                "Tty": bool(spec.get("Tty")), "OpenStdin": bool(spec.get("OpenStdin")),
                "StdinOnce": bool(spec.get("StdinOnce")), "Env": env,
                "Cmd": spec.get("Cmd") if spec.get("Cmd") else ic.get("Cmd"),
                **({"Healthcheck": spec["Healthcheck"]} if spec.get("Healthcheck") else {}),
                "Image": (rec.extensions or {}).get("image_name") or rec.image,
                "Volumes": dict(ic.get("Volumes") or {}, **(spec.get("Volumes") or {})) or None, "WorkingDir": spec.get("WorkingDir") or ic.get("WorkingDir") or "",
                "Entrypoint": spec.get("Entrypoint") if spec.get("Entrypoint") is not None else ic.get("Entrypoint"),
                "OnBuild": None, "Labels": dict(ic.get("Labels") or {}, **(rec.labels or {})),
                "StopSignal": spec.get("StopSignal") or ic.get("StopSignal"),
            },
            "NetworkSettings": self.network_settings(rec, st),
        }

    def network_settings(self, rec, st):
        if self.networks is None:
            return {"Bridge": "", "SandboxID": "", "Ports": {}, "Networks": {}, "IPAddress": "", "Gateway": "",
                    "MacAddress": ""}
        from berth.services import container_net
        return container_net.settings(self, rec, st["Running"])

    def logs(self, ns, ref, stdout=True, stderr=True, follow=False, tail=None, since=0, until=0, timestamps=False):
        """Yield (stream, bytes) from the json-file log; with follow, until the container exits."""
        rec = self.get(ns, ref)
        path = self.log_path(rec.id)
        want = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return
        with f:
            lines = f.readlines()
            if tail is not None and tail >= 0:
                lines = lines[-tail:] if tail else []
            for line in lines:
                item = self._log_item(line, want, since, until, timestamps)
                if item:
                    yield item
            if not follow:
                return
            buf = b""
            while True:
                chunk = f.readline()
                if chunk:
                    buf += chunk
                    if buf.endswith(b"\n"):
                        item = self._log_item(buf, want, since, until, timestamps)
                        buf = b""
                        if item:
                            yield item
                    continue
                try:
                    running = self.state(self.meta.get_container(ns, rec.id))["Running"]
                except NotFound:
                    return
                if not running:
                    rest = f.read()
                    for line in rest.splitlines(keepends=True):
                        item = self._log_item(line, want, since, until, timestamps)
                        if item:
                            yield item
                    return
                time.sleep(0.05)

    @staticmethod
    def _log_item(line, want, since, until, timestamps):
        try:
            e = json.loads(line)
        except ValueError:
            return None
        if e.get("stream") not in want:
            return None
        t = _parse_time(e.get("time"))
        if since and t < since or until and t > until:
            return None
        data = e.get("log", "").encode()
        if timestamps:
            data = e.get("time", "").encode() + b" " + data
        return e["stream"], data

    def image_users(self, ns):
        """A callable: the ids of a namespace's containers of an image (.running: those running)."""
        def users(resolved):
            return _Users(self, (c for c in self.meta.list_containers(ns) if c.image == resolved.config_digest))
        return users

    def to_restart_at_startup(self):
        out = []
        for n in self.meta.list_namespaces():
            for rec in self.meta.list_containers(n.name):
                st = self.state(rec)
                if not st["Running"] and (rec.extensions or {}).get("started_at") and \
                        self.should_restart(rec, st["ExitCode"], daemon_start=True):
                    out.append((n.name, rec.id))
        return out

    def running(self):
        """(namespace, id) of containers whose shims are alive, for watchers after a daemon restart."""
        out = []
        for n in self.meta.list_namespaces():
            for rec in self.meta.list_containers(n.name):
                if self.state(rec)["Running"]:
                    out.append((n.name, rec.id))
        return out


class _Users(list):
    """Container ids; .running, computed on demand: the running ones (rmi's conflicts)."""

    def __init__(self, svc, recs):
        self._svc = svc
        self._recs = list(recs)
        super().__init__(r.id for r in self._recs)

    @property
    def running(self):
        return [r.id for r in self._recs if self._svc.state(r)["Running"]]


def _args(spec, images, rec):
    try:
        cfg = images.read_json(rec.image, 20 << 20, "image config").get("config") or {}
    except BerthError:
        cfg = {}
    if spec.get("Entrypoint") is not None:
        ep, cmd = spec["Entrypoint"] or [], spec.get("Cmd") or []
    else:
        ep, cmd = cfg.get("Entrypoint") or [], spec.get("Cmd") or cfg.get("Cmd") or []
    return list(ep) + list(cmd)


def _random_name(meta, ns, digits=False):
    """docker's adjective_scientist names (with a number when they run short)."""
    existing = {c.name for c in meta.list_containers(ns)}
    for _ in range(100):
        name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
        if digits:
            name += str(random.randint(0, 99))
        if name not in existing:
            return name
    return f"{random.choice(_ADJ)}_{random.choice(_NAMES)}{secrets.randbelow(10**6)}"


def _port_list(ports):
    """NetworkSettings.Ports -> the list of /containers/json."""
    out = []
    for key, binds in (ports or {}).items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in binds:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
    return out


def _quote(a):
    return a if a and all(c not in a for c in " \"'\t") else json.dumps(a)


def _status_text(st):
    from berth.units import human_duration
    if st["Running"]:
        up = human_duration(time.time() - _parse_time(st["StartedAt"]))
        from berth.services.health import status_suffix
        return f"Up {up}" + (" (Paused)" if st["Paused"] else status_suffix(st))
    if st["Status"] == "exited":
        return f"Exited ({st['ExitCode']}) {human_duration(time.time() - _parse_time(st['FinishedAt']))} ago"
    return "Created"


def _match(filters, item, rec, st):
    for key, values in filters.items():
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        if key == "status":
            if st["Status"] not in values:
                return False
        elif key == "name":
            if not any(v.lstrip("/") in rec.name for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in (rec.labels or {}) or (eq and rec.labels[k] != val):
                    return False
        elif key == "ancestor":
            if not any(v in (item["Image"], rec.image, rec.image[7:19]) for v in values):
                return False
        elif key == "volume":
            mounts = (rec.spec_json() or {}).get("_mounts") or []
            if not any(v in (m.get("Name"), m.get("Source"), m.get("Destination")) for v in values for m in mounts):
                return False
        elif key == "health":
            from berth.services.health import match_filter
            if not match_filter(st, values):
                return False
        elif key == "exited":
            if st["Status"] != "exited" or str(st["ExitCode"]) not in values:
                return False
        else:
            raise InvalidArgument(f"invalid filter {key!r}")
    return True


def _start_error_code(err):
    """docker's exit code for a container that could not start."""
    low = err.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low or "is a directory" in low:
        return 126
    return 128


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid):
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")
    except OSError:
        return False


def _size(s):
    if not s:
        return 0
    s = str(s).strip().lower()
    mult = 1
    for suf, m in (("kb", 1000), ("mb", 1000**2), ("gb", 1000**3), ("k", 1024), ("m", 1024**2), ("g", 1024**3), ("b", 1)):
        if s.endswith(suf):
            mult = m
            s = s[: -len(suf)]
            break
    try:
        return int(float(s) * mult)
    except ValueError:
        raise InvalidArgument(f"invalid log max-size {s!r}") from None
