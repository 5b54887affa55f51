"""Registry credentials from ~/.docker/config.json (docker's format), sent as X-Registry-Auth."""

import os

DOCKER_IO_KEY = "https://index.docker.io/v1/"


def config_path():
    d = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def key_for(host):
    return DOCKER_IO_KEY if host in ("docker.io", "index.docker.io", "registry-1.docker.io") else host


def credentials_for(host):
    import json  # here, not at the top: config_path is on the run path (re, base64: ~15 ms)
    try:
        with open(config_path()) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    auths = doc.get("auths") or {}
    key = key_for(host)
    for k, entry in auths.items():
        kh = k.split("://", 1)[-1].rstrip("/").split("/")[0]
        if k == key or kh == host or (key == DOCKER_IO_KEY and kh in ("index.docker.io", "docker.io")):
            if entry.get("auth"):
                import base64
                try:
                    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                except ValueError:
                    return None
                return {"username": user, "password": pw, "serveraddress": host}
            if entry.get("identitytoken"):
                return {"identitytoken": entry["identitytoken"], "serveraddress": host}
    return None
