""".dockerignore, with docker's rules (moby/patternmatcher and the CLI's dockerignore reader).

* one pattern a line; lines starting with ``#`` are comments; blanks are trimmed and empty
  lines skipped; ``!pattern`` is an exception (re-includes what earlier patterns excluded);
* patterns are cleaned like paths (``./a//b/`` is ``a/b``) and a leading ``/`` is dropped:
  they are always relative to the context's root;
* ``*`` matches any run of characters but ``/``, ``?`` one character but ``/``, ``[...]``
  a class, ``\\`` escapes; ``**`` matches any number of directories (``**/x`` also
  matches ``x`` at the top);
* a path is excluded when the last pattern that matches it, or one of its parent
  directories, is not an exception.
"""

from __future__ import annotations

import posixpath
import re

from berth.errors import InvalidArgument


def read(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        p = line.strip()
        if not p:
            continue
        neg = p.startswith("!")
        if neg:
            p = p[1:].strip()
            if not p:
                continue
        p = posixpath.normpath(p)
        if len(p) > 1 and p.startswith("/"):
            p = p.lstrip("/") or "."
        out.append(("!" if neg else "") + p)
    return out


def _regex(pattern: str) -> re.Pattern:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                    out.append("(.*/)?" if i < n else ".*")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise InvalidArgument(f"invalid .dockerignore pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise InvalidArgument(f"invalid .dockerignore pattern {pattern!r}: unterminated [")
            body = pattern[i + 1:j]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    try:
        return re.compile("".join(out))
    except re.error as e:
        raise InvalidArgument(f"invalid .dockerignore pattern {pattern!r}: {e}") from None


class Matcher:
    def __init__(self, patterns: list[str]):
        self.rules = []
        for p in patterns:
            neg = p.startswith("!")
            body = p[1:] if neg else p
            self.rules.append((neg, body, _regex(body)))
        self.has_exceptions = any(neg for neg, _, _ in self.rules)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative, '/'-separated) is left out of the context."""
        path = posixpath.normpath(path)
        parents = []
        p = path
        while True:
            p = posixpath.dirname(p)
            if not p:
                break
            parents.append(p)
        result = False
        for neg, body, rx in self.rules:
            if rx.match(path) or any(rx.match(q) for q in parents):
                result = not neg
        return result

    def may_include_below(self, dirpath: str) -> bool:
        """Whether an exception could re-include something under an excluded directory
        (else the walk skips the directory entirely, as docker's does)."""
        if not self.has_exceptions:
            return False
        prefix = dirpath.rstrip("/") + "/"
        for neg, body, _ in self.rules:
            if not neg:
                continue
            if body.startswith(prefix) or "*" in body or "?" in body or "[" in body:
                return True
        return False
