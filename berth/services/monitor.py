"""The monitor: what happens after a container's process exits, and at daemon start.

One thread per running container reads its shim's events channel (berth.shim.client): at the
exit it releases what the run held (rootfs mount, network, volumes), records the exit in the
state machine, and applies the restart policy (docker's always / unless-stopped /
on-failure[:N], with a growing back-off; between the exit and the restart the container is
`restarting`) or the auto-removal (--rm). At daemon start, ``restore`` finds the shims still
running (their events come from a subscription), records the exits that happened meanwhile
(from the shim's exit.json) and restarts what the policies ask for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Callable

from berth.errors import BerthError, NotFound
from berth.services import state as S
from berth.shim.client import EventChannel, ShimGone
from berth.shim.protocol import ExecExit, ExitEvent

log = logging.getLogger("berthd.monitor")


class Monitor:
    def __init__(self, containers):
        self.c = containers  # the ContainerService whose containers this monitors
        self.health = None  # the HealthMonitor (services/health.py) of their healthchecks, if any
        # told the end of each exec (namespace, container id, ExecExit): the exec service's
        self.on_exec_exit: Callable[[str, str, ExecExit], None] | None = None

    # --- policies ---

    def should_restart(self, rec, exit_code: int, daemon_start: bool = False) -> bool:
        """docker's restart policies: always, unless-stopped, on-failure[:N]; not after a user's
        stop, but that `always` comes back when the daemon starts (as dockerd's: checked with
        dockerd 20.10, an `always` container stopped by `docker stop` runs again after dockerd's
        restart, an `unless-stopped` one does not)."""
        name, limit = self.c.restart_policy(rec)
        ext = rec.extensions or {}
        if name in ("", "no") or (self.c.shutting_down and not daemon_start):
            return False  # (the daemon's own stop of its containers: their policies at its next start)
        if name == "always" and daemon_start:
            return True
        if ext.get("stopped_by_user"):
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            if daemon_start:
                return False
            return exit_code != 0 and (limit <= 0 or int(ext.get("restart_count", 0)) < limit)
        return False

    def cancel_restart(self, ns: str, cid: str) -> None:
        """A stop (or rm -f) between an exit and its restart: it stays exited."""
        try:
            self.c.states.transition(ns, cid, S.EXITED)
        except BerthError:
            pass

    # --- watching ---

    def watch(self, ns: str, cid: str, channel: EventChannel, restored: bool = False) -> None:
        if self.health is not None:  # a new run's health starts again; a restored one goes on
            self.health.started(ns, cid, reset=not restored)
        threading.Thread(target=self._run, args=(ns, cid, channel), name=f"monitor-{cid[:12]}",
                         daemon=True).start()

    def _run(self, ns: str, cid: str, channel: EventChannel) -> None:
        def exec_exit(ev: ExecExit) -> None:
            if self.on_exec_exit is not None:
                try:
                    self.on_exec_exit(ns, cid, ev)
                except Exception:  # noqa: BLE001 - the container's exit must still be heard
                    log.exception("container %s: after an exec's exit", cid[:12])
        end = heard = None
        try:
            ev = channel.next_exit(exec_exit)
            if ev is not None:
                heard = self.c.exit_heard(cid)  # an inspect from now on shows the exit (it waits for its record)
                end = self.c.shim_ending(cid, channel)  # the shim deletes the run's runtime state now, then closes the channel
        finally:
            if end is None:
                channel.close()
        try:
            self.exited(ns, cid, ev)
        except BerthError as e:
            log.warning("container %s: after its exit: %s", cid[:12], e)
        except Exception:  # noqa: BLE001
            log.exception("container %s: after its exit", cid[:12])
        finally:
            if heard is not None:
                self.c.exit_recorded(cid, heard)
        if end is not None:
            self.c.shim_ended(cid, end)  # the channel is not left open (a restart or removal may have read it already)

    def _shim_lost(self, rec) -> None:
        """The shim went without telling the exit (killed): nobody holds the container any more;
        its runtime's forced delete ends what may still run of it (as containerd does when a
        shim dies), and the dead shim's socket goes."""
        rt = self.c.runtime(rec)
        if rt.has_state(rec.id):
            try:
                rt.delete(rec.id, force=True)
            except BerthError as e:
                log.warning("container %s: its shim died; deleting it: %s", rec.id[:12], e)
        try:
            os.unlink(self.c.shim_socket(rec.id))
        except OSError:
            pass

    def _end_held(self, ns: str, rec) -> None:
        """A process created ahead of its start (prelaunch) by the berthd before this one: its
        shim holds it, and nobody will release it (a start launches anew): it goes."""
        try:
            ch = self.c.shim(rec).subscribe()
        except (ShimGone, OSError, BerthError):
            self._shim_lost(rec)
        else:
            try:
                self.c.end_held(rec, ch)
            finally:
                ch.close()
        try:
            self.c.cleanup_exited(ns, rec.id)
        except BerthError as e:
            log.warning("container %s: %s", rec.id[:12], e)

    def _recorded_exit(self, cid: str) -> ExitEvent:
        """The exit the shim wrote on disk (a shim killed before it told: 255)."""
        try:
            with open(os.path.join(self.c.sdir(cid), "exit.json")) as f:
                d = json.load(f)
            return ExitEvent(exit_code=int(d.get("exit_code", 255)), finished_at=d.get("finished_at") or S.now_rfc3339(),
                             pid=int(d.get("pid", 0)), oom_killed=bool(d.get("oom_killed")))
        except (OSError, ValueError):
            return ExitEvent(exit_code=255, finished_at=S.now_rfc3339())

    def exited(self, ns: str, cid: str, ev: ExitEvent | None, daemon_start: bool = False) -> str:
        """A run ended: release, record, then restart or remove. Returns what followed:
        "restarted", "removed" or ""."""
        with self.c.meta.freeing():  # recording an exit works on a full disk (a stop is how it is freed)
            return self._exited(ns, cid, ev, daemon_start)

    def _exited(self, ns: str, cid: str, ev: ExitEvent | None, daemon_start: bool = False) -> str:
        c = self.c
        if self.health is not None:
            self.health.stopped(cid)
        try:
            rec = c.meta.get_container(ns, cid)
        except NotFound:
            c.states.forget(cid)
            return ""
        if ev is None:
            ev = self._recorded_exit(cid)
            self._shim_lost(rec)
        code = ev.exit_code
        restart = self.should_restart(rec, code, daemon_start)
        auto_remove = not restart and ((rec.spec_json() or {}).get("HostConfig") or {}).get("AutoRemove")
        from berth.services import container_net
        # the rootfs's teardown after the exit's record (which a stop waits for), unless a restart
        # mounts it again at once; its unmount too, unless the record is followed here by a
        # restart or a removal
        late = not restart and not auto_remove
        # a run that ended for good without published ports: its network goes after the exit's
        # record too (dockerd records the exit, then releases the network): `wait` and a `run`
        # without --rm answer without waiting for the CNI DEL (~25 ms), and a client that looks
        # right after the exit (docker-compose's `run -T` looks whether the container it just
        # started still runs) sees it ended. Whatever needs the network gone waits for it
        late_net = late and c.networks is not None and not container_net.published(rec) and \
            container_net.holds_network(rec)
        # --rm: the network goes in the removal, after the exit's record and before the record's
        # deletion (dockerd's order: its Cleanup, then the auto-removal): when `run --rm` returns
        # the container's veth is gone and its address free for the next container
        c.cleanup_exited(ns, cid, network=not (auto_remove or late_net), hold=not restart, rootfs=not late,
                         rec=rec)
        try:
            with c.late_rootfs(cid, network=rec if late_net else None) if late else contextlib.nullcontext():
                return self._record_exit(ns, rec, ev, restart, auto_remove)
        finally:
            c.close_detached(cid)  # the removal did not (it failed, or someone else's removal)

    def _record_exit(self, ns, rec, ev, restart, auto_remove) -> str:
        c, cid, code = self.c, rec.id, ev.exit_code
        fields = {"exit_code": code, "finished_at": ev.finished_at or S.now_rfc3339(), "pid": 0,
                  "oom_killed": bool(ev.oom_killed)}
        stopped = cid in c.user_stops
        c.user_stops.discard(cid)
        run = c.states.peek(cid)
        generation = run.generation if run is not None else 0  # the run that ended (an exit keeps it)
        try:
            # --rm: the removal's own transition persists the state with these fields right after;
            # a berthd killed before it finds the run's exit on disk and removes the container then
            c.states.transition(ns, cid, S.RESTARTING if restart else S.EXITED, persist=not auto_remove,
                                ext={"stopped_by_user": True} if stopped and not auto_remove else None,
                                durable=c.exit_synced is None or c.exit_synced(rec), **fields)
        except NotFound:
            c.died(cid, generation)
            return ""  # removed meanwhile
        except BerthError as e:
            log.warning("container %s: recording its exit: %s", cid[:12], e)
            c.died(cid, generation)
            if auto_remove:
                self._release_network(ns, rec)
            return ""
        c.exit_recorded(cid)  # an inspect that waited for it answers
        # the stop, kill or wait that the record woke answers first (the interpreter's lock to
        # it now, not after this thread's work to come: the rootfs's release, the events):
        # StopPodSandbox's answer 0.2-0.25 ms sooner
        time.sleep(0)
        c.events.container(ns, rec, "die", exitCode=code)
        c.announce_run(ns, rec, start=False)  # network disconnects, volume unmounts
        c.died(cid, generation)  # a stop's event after them
        if restart:
            return "restarted" if self._restart(ns, cid) else ""
        if auto_remove:
            try:
                c.remove(ns, cid, force=True, volumes=True, at_exit=True)
                return "removed"
            except NotFound:
                pass
            except Exception as e:  # noqa: BLE001 - as dockerd: the removal's failure is the wait's answer
                log.error("container %s: removing it after its exit failed: %s", cid[:12], e)
                self._release_network(ns, rec)
                st = c.states.peek(cid)
                if st is not None and st.status != S.DEAD:
                    msg = e.message if isinstance(e, BerthError) else str(e)
                    try:
                        c.states.transition(ns, cid, S.DEAD, error=f"removal failed: {msg}")
                    except BerthError:
                        pass
        return ""

    def _release_network(self, ns: str, rec) -> None:
        """A --rm container's network when its removal did not come to it: it goes all the same
        (dockerd's Cleanup comes before the auto-removal)."""
        from berth.services import container_net
        try:
            container_net.teardown(self.c, ns, rec.id, rec)
        except BerthError as e:
            log.warning("container %s: releasing its network: %s", rec.id[:12], e)

    def _restart(self, ns: str, cid: str) -> bool:
        c = self.c
        try:
            rec = c._ext_update(ns, cid, restart_count=int((c.meta.get_container(ns, cid).extensions or {})
                                                           .get("restart_count", 0)) + 1)
        except NotFound:  # removed (rm -f) since its exit: nothing to restart
            return False
        count = int(rec.extensions["restart_count"])
        delay = min(0.1 * 2 ** min(count, 6), 5.0)  # docker backs off too
        # a stop or rm meanwhile ends the wait (and the restart)
        c.states.wait_for(cid, lambda s: s is None or s.status != S.RESTARTING, delay)
        st = c.states.peek(cid)
        if st is None or st.status != S.RESTARTING:
            return False
        try:
            return bool(c.start(ns, cid, restarting=True))
        except BerthError as e:
            if c.states.peek(cid) is not None:  # (not: removed while the start waited for the removal)
                log.warning("container %s: restart: %s", cid[:12], e)
            return False

    # --- daemon start ---

    def _legacy(self, ns: str, rec) -> S.RunState:
        """The state of a container an older berthd ran (no state machine in its record): running
        when its shim answers, else exited with the code its shim recorded."""
        c = self.c
        ext = rec.extensions or {}
        fields = {"started_at": ext.get("started_at") or S.ZERO_TIME, "error": ext.get("error", "")}
        try:
            s = c.shim(rec).state()
            return c.states.transition(ns, rec.id, S.PAUSED if s.status == "paused" else S.RUNNING, pid=s.pid,
                                       generation=1, **fields)
        except (ShimGone, OSError, BerthError):
            pass
        ev = self._recorded_exit(rec.id)
        last = ext.get("last_exit") or {}
        code = int(last.get("exit_code", ev.exit_code))
        return c.states.transition(ns, rec.id, S.EXITED, exit_code=code, generation=1,
                                   finished_at=last.get("finished_at") or ev.finished_at, **fields)

    def restore(self) -> None:
        """After a (re)start of berthd: watch the containers still running, record the exits that
        happened while it was down, and bring back those whose restart policy says so."""
        c = self.c
        live: set[tuple[str, str]] = set()
        channels: dict[str, EventChannel] = {}
        for n in c.meta.list_namespaces():
            for rec in c.meta.list_containers(n.name):
                st = c.states.get(n.name, rec.id, rec)
                ext = rec.extensions or {}
                if "state" not in ext and ext.get("started_at"):
                    st = self._legacy(n.name, rec)  # recorded by a berthd without the state machine
                if st.status not in (S.RUNNING, S.PAUSED, S.RESTARTING):
                    if st.status == S.EXITED:  # a berthd killed between an exit's record and its unmount
                        c.release_rootfs(rec.id, hold=False)
                    if st.status == S.CREATED and os.path.exists(c.shim_socket(rec.id)):
                        self._end_held(n.name, rec)
                    if st.status == S.REMOVING:
                        c.states.transition(n.name, rec.id, S.DEAD, error="removal interrupted by a daemon stop")
                    continue
                shim = c.shim(rec)
                try:
                    channels[rec.id] = shim.subscribe(ack=True)  # its monitor's wait for the shim's end acknowledges
                    s = shim.state()
                    live.add((n.name, rec.id))
                    if s.status == "paused" and st.status != S.PAUSED:
                        c.states.transition(n.name, rec.id, S.PAUSED)
                    elif s.status == "running" and st.status == S.PAUSED:
                        c.states.transition(n.name, rec.id, S.RUNNING)
                except (ShimGone, OSError, BerthError):
                    ch = channels.pop(rec.id, None)
                    if ch is not None:
                        ch.close()
        nets = c.networks
        if nets is not None:
            try:
                nets.ensure_host([n.name for n in c.meta.list_namespaces()])
            except BerthError as e:
                log.warning("networks: %s", e)
            for cid in nets.orphans({cid for _, cid in live}):
                nets.detach_all(cid)  # attachments of containers that exited while berthd was down
        for ns, cid in live:
            net = (c.meta.get_container(ns, cid).extensions or {}).get("net") or {}
            if nets is not None and net.get("networks"):
                nets.register(ns, cid, net["networks"], net.get("ports"))
                if nets.dns is not None and any(e.get("DNSNames") for e in net["networks"].values()):
                    try:
                        nets.dns.attach(cid, net["netns"])
                    except (BerthError, OSError) as e:
                        log.warning("container %s: embedded DNS: %s", cid[:12], e)
            self.watch(ns, cid, channels[cid], restored=True)
        if not c.cfg.live_restore:  # dockerd's restore without live-restore: what runs is stopped
            stopping = [(ns, cid) for ns, cid in live if ns == c.cfg.namespace]
            c.shut_down(stopping)
            live -= set(stopping)
        for n in c.meta.list_namespaces():
            for rec in c.meta.list_containers(n.name):
                if (n.name, rec.id) in live:
                    continue
                st = c.states.get(n.name, rec.id, rec)
                try:
                    if st.status in (S.RUNNING, S.PAUSED):
                        self.exited(n.name, rec.id, None, daemon_start=True)  # it exited while berthd was down
                    elif st.status == S.EXITED and self.should_restart(rec, st.exit_code, daemon_start=True):
                        c.states.transition(n.name, rec.id, S.RESTARTING)
                        c.start(n.name, rec.id, restarting=True)
                    elif st.status == S.RESTARTING:
                        c.start(n.name, rec.id, restarting=True)
                except BerthError as e:
                    log.warning("container %s: %s", rec.id[:12], e)
