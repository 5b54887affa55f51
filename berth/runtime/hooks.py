"""OCI hooks: run each with the container's state JSON on stdin, within its timeout."""

from __future__ import annotations


from berth import fastjson as json
from berth.errors import SystemError_

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from typing import Any


def run(hooks: dict[str, list[dict[str, Any]]] | None, kind: str, state: dict[str, Any]) -> None:
    """Run the hooks of one kind in order; the first failure raises SystemError_."""
    if not (hooks or {}).get(kind):
        return
    import subprocess
    data = json.dumps(state).encode()
    for h in (hooks or {}).get(kind) or []:
        args = h.get("args") or [h["path"]]
        env = {}
        for e in h.get("env") or []:
            k, _, v = e.partition("=")
            env[k] = v
        try:
            p = subprocess.run(args, executable=h["path"], input=data, env=env, capture_output=True,
                               timeout=h.get("timeout"), close_fds=True)
        except subprocess.TimeoutExpired:
            raise SystemError_(f"{kind} hook {h['path']} timed out after {h['timeout']}s") from None
        except OSError as e:
            raise SystemError_(f"{kind} hook {h['path']}: {e.strerror}") from None
        if p.returncode != 0:
            err = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
            detail = f": {err[-1]}" if err else ""
            raise SystemError_(f"{kind} hook {h['path']} failed with exit status {p.returncode}{detail}")
