"""Show a stream of docker JSON progress messages like the docker CLI does: one line per layer,
redrawn in place on a terminal; plain lines otherwise; nothing but the result with -q."""

import sys

from berth.errors import BerthError


def _bar(current, total, width=50):
    if not total:
        return ""
    filled = int(width * min(current, total) / total)
    arrow = ">" if filled < width else ""
    return "[" + "=" * max(filled - (1 if arrow else 0), 0) + arrow + " " * (width - filled) + "]"


def _size(n):
    from berth.cli.format import human_size
    return human_size(n)


def render(messages, quiet=False, out=None):
    """Consume the messages; raise BerthError on an error message. Returns the non-layer
    status lines (for callers that want the result, e.g. "Loaded image: ...")."""
    out = out or sys.stdout
    tty = out.isatty() and not quiet
    ids = []  # layer ids in the order they appeared (one line each on a tty)
    lines = {}
    statuses = []
    for m in messages:
        if m.get("error") or m.get("errorDetail"):
            msg = (m.get("errorDetail") or {}).get("message") or m.get("error")
            raise BerthError(msg)
        status = m.get("status") or m.get("stream") or ""
        lid = m.get("id")
        if lid and m.get("progressDetail") is not None or (lid and status and not status.startswith(("Digest", "Status"))):
            detail = m.get("progressDetail") or {}
            text = f"{lid}: {status}"
            if detail.get("total"):
                text += f" {_bar(detail.get('current', 0), detail['total'])} " \
                        f"{_size(detail.get('current', 0))}/{_size(detail['total'])}"
            if quiet:
                continue
            if tty:
                if lid not in lines:
                    ids.append(lid)
                    lines[lid] = text
                    out.write(text + "\n")
                else:
                    lines[lid] = text
                    up = len(ids) - ids.index(lid)
                    out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")
                out.flush()
            elif status in ("Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from",
                            "Download complete", "Pulling fs layer", "Waiting", "Preparing") or \
                    status.startswith(("Mounted from", "Loading", "Pulling from")):
                out.write(text + "\n")
            continue
        if status:
            statuses.append(status.rstrip("\n"))
            if not quiet:
                out.write(status.rstrip("\n") + "\n")
                out.flush()
        if m.get("aux") is not None:
            statuses.append(m["aux"])
    return statuses


def show(resp, quiet=False, out=None):
    """Render a streamed response's progress messages, then close it."""
    try:
        return render(resp.iter_json(), quiet=quiet, out=out)
    finally:
        resp.close()
