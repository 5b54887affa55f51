"""CNI: run the standard plugins on a network configuration list (the CNI spec, 1.0).

The only place that executes CNI plugins. ``add`` runs each plugin of a conflist in order with
the previous result, ``delete`` runs them in reverse with the cached result, as libcni does:
the configuration and result of each attachment are kept in a cache directory so a DEL after
a daemon restart uses exactly what the ADD used.
"""

from __future__ import annotations

import json
import os
import subprocess

from berth.errors import BerthError, InvalidArgument
from berth.linux.command import run as run_command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

SPEC_VERSION = "1.0.0"
PLUGIN_TIMEOUT = 60.0  # seconds a plugin may take before it is killed (and its call failed)


class CNIError(BerthError):
    """A plugin failed; the message is the plugin's own (msg: details)."""
    http_status = 500
    exit_code = 125


def find_plugin(kind: str, dirs: Sequence[str]) -> str:
    for d in dirs:
        p = os.path.join(d, kind)
        if os.access(p, os.X_OK):
            return p
    raise CNIError(f"failed to find plugin {kind!r} in path {list(dirs)}")


def _invoke(kind: str, command: str, conf: dict[str, Any], container_id: str, netns: str | None, ifname: str,
            dirs: Sequence[str], args: str = "") -> Any:
    env = {
        "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns or "",
        "CNI_IFNAME": ifname, "CNI_PATH": os.pathsep.join(dirs), "CNI_ARGS": args,
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    plugin = find_plugin(kind, dirs)
    try:  # memfds and a pidfd, not subprocess.run's pipes and polling: ~1 ms less a plugin
        p = run_command([plugin], PLUGIN_TIMEOUT, input=json.dumps(conf).encode(), env=env)
    except OSError as e:
        raise CNIError(f"cannot run plugin {plugin}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise CNIError(f"plugin {kind} {command} timed out") from None
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip()
        try:
            err = json.loads(p.stdout)
            msg = err.get("msg") or msg
            if err.get("details"):
                msg += ": " + err["details"]
        except (ValueError, AttributeError):
            msg = msg or p.stdout.decode(errors="replace").strip()
        raise CNIError(f"plugin type={kind!r} failed ({command}): {msg or f'exit status {p.returncode}'}")
    if command == "ADD":
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise CNIError(f"plugin {kind} returned no valid result") from None
    return None


def _plugin_conf(conflist: dict[str, Any], plugin: dict[str, Any], runtime_config: dict[str, Any] | None,
                 prev: Any) -> dict[str, Any]:
    conf = dict(plugin)
    conf["cniVersion"] = conflist.get("cniVersion", SPEC_VERSION)
    conf["name"] = conflist["name"]
    caps = plugin.get("capabilities") or {}
    rc = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
    if rc:
        conf["runtimeConfig"] = rc
    conf.pop("capabilities", None)
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def _cache_path(cache_dir: str, name: str, container_id: str, ifname: str) -> str:
    return os.path.join(cache_dir, f"{name}-{container_id}-{ifname}.json")


def add(conflist: dict[str, Any], container_id: str, netns: str | None, ifname: str, dirs: Sequence[str],
        cache_dir: str, runtime_config: dict[str, Any] | None = None, args: str = "") -> Any:
    """Attach: every plugin's ADD in order; returns the final result (interfaces, ips, routes, dns).
    On a failure the plugins that ran are undone (DEL) and the error is raised."""
    os.makedirs(cache_dir, exist_ok=True)
    cache = _cache_path(cache_dir, conflist["name"], container_id, ifname)
    record: dict[str, Any] = {"conflist": conflist, "runtimeConfig": runtime_config or {}, "args": args, "netns": netns,
              "result": None}
    tmp = cache + ".tmp"
    with open(tmp, "w") as f:  # written first: a DEL after a crash mid-ADD still finds the config
        f.write(json.dumps(record))  # dumps: the C encoder (json.dump iterates in Python)
    os.replace(tmp, cache)
    prev = None
    ran = 0  # plugins whose ADD was run: only they are undone on a failure
    try:
        for plugin in conflist["plugins"]:
            find_plugin(plugin["type"], dirs)  # not installed: it never ran, nothing of it to undo
            ran += 1
            prev = _invoke(plugin["type"], "ADD", _plugin_conf(conflist, plugin, runtime_config, prev),
                           container_id, netns, ifname, dirs, args)
    except BaseException:
        record["ran"] = ran
        with open(tmp, "w") as f:
            f.write(json.dumps(record))  # dumps: the C encoder (json.dump iterates in Python)
        os.replace(tmp, cache)
        try:
            delete_cached(cache_dir, conflist["name"], container_id, ifname, dirs)
        except BerthError:
            pass
        raise
    record["result"] = prev
    with open(tmp, "w") as f:
        f.write(json.dumps(record))  # dumps: the C encoder (json.dump iterates in Python)
    os.replace(tmp, cache)
    return prev


def delete_cached(cache_dir: str, name: str, container_id: str, ifname: str, dirs: Sequence[str],
                  netns: str | None = None, record: dict[str, Any] | None = None,
                  keep_as: str | None = None) -> bool:
    """Detach with what the ADD used (from the cache; record: the cached record, as cached()
    just read it); nothing cached = nothing to do. Every plugin's DEL runs (in reverse) even
    when one fails; the first error is raised after. keep_as: the record, once its DELs are
    done, is moved there rather than deleted (where the move fails, it is deleted)."""
    cache = _cache_path(cache_dir, name, container_id, ifname)
    if record is None:
        try:
            with open(cache) as f:
                record = json.load(f)
        except FileNotFoundError:
            return False
        except ValueError:
            os.unlink(cache)
            return False
    conflist = record["conflist"]
    if netns is None:
        netns = record.get("netns") or ""
    if netns and not os.path.exists(netns):
        netns = ""  # gone with its container: plugins still release IPs and host-side rules
    first: CNIError | None = None
    ran = record.get("ran")  # a failed ADD's: the plugins after the failed one never ran
    for plugin in reversed(conflist["plugins"][:ran] if ran is not None else conflist["plugins"]):
        try:
            _invoke(plugin["type"], "DEL", _plugin_conf(conflist, plugin, record.get("runtimeConfig"),
                                                        record.get("result")),
                    container_id, netns, ifname, dirs, record.get("args", ""))
        except CNIError as e:
            first = first or e
    if first is not None:
        raise first
    if keep_as is not None:
        try:
            os.rename(cache, keep_as)
            return True
        except OSError:
            pass
    try:
        os.unlink(cache)
    except FileNotFoundError:
        pass
    return True


def cached(cache_dir: str, container_id: str | None = None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, container_id, ifname, record) of every cached attachment (of one container)."""
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    try:
        names = os.listdir(cache_dir)
    except FileNotFoundError:
        return out
    for n in names:
        if not n.endswith(".json") or container_id and f"-{container_id}-" not in n:
            continue
        try:
            with open(os.path.join(cache_dir, n)) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        base = n[:-5]
        ifname = base.rsplit("-", 1)[-1]
        rest = base[: -len(ifname) - 1]
        cid = rest.rsplit("-", 1)[-1]
        out.append((rec["conflist"]["name"], cid, ifname, rec))
    return out


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
        raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name
