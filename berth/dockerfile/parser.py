"""Parse a Dockerfile into instructions, as docker's classic builder does.

    df = parse(text)
    df.directives   {"syntax": ..., "escape": "\\"}
    df.instructions [Instruction(cmd="RUN", line=3, flags={}, args=[...], json=False, original=...)]

Parser directives (``# syntax=``, ``# escape=``) are read only at the top, before any
comment, blank line or instruction. A line ending in the escape character (trailing blanks
allowed) continues on the next one; comment and blank lines inside a continuation are
skipped. ``#`` starts a comment only at the start of a line. Keywords are case-insensitive.

``args`` by instruction (the shapes of moby's parser):

* RUN, CMD, ENTRYPOINT: JSON array (``json=True``) or the raw rest of the line ([text]);
* COPY, ADD, VOLUME: JSON array or whitespace-separated words (quotes kept for expansion);
* ENV, LABEL: [key, value, key, value, ...] (``k=v ...`` or the old ``k value`` form);
* ARG: ["name" or "name=value", ...];  FROM: ["image", "AS", "name"];  others: words;
* HEALTHCHECK: ["NONE"] or ["CMD", json?, args...]; SHELL: JSON only;
* ONBUILD: the sub-instruction in ``sub`` (its own Instruction).

Flags (``--name=value`` at the start of the arguments) are checked against the ones each
instruction takes; errors name the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

INSTRUCTIONS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")

# flag name -> kind ("str" or "bool"); RUN's buildkit flags are named to be refused clearly
FLAGS = {
    "FROM": {"platform": "str"},
    "COPY": {"from": "str", "chown": "str", "chmod": "str", "link": "bool"},
    "ADD": {"chown": "str", "chmod": "str", "link": "bool", "checksum": "str", "keep-git-dir": "bool"},
    "HEALTHCHECK": {"interval": "str", "timeout": "str", "start-period": "str", "start-interval": "str",
                    "retries": "str"},
    "RUN": {"mount": "str", "network": "str", "security": "str"},
}

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass
class Instruction:
    cmd: str
    line: int
    original: str
    args: list = field(default_factory=list)
    flags: dict = field(default_factory=dict)
    json: bool = False
    sub: Instruction | None = None
    end_line: int = 0

    def error(self, msg: str) -> InvalidArgument:
        return InvalidArgument(f"dockerfile parse error line {self.line}: {msg}")


@dataclass
class Dockerfile:
    directives: dict
    escape: str
    instructions: list


def _err(line, msg):
    return InvalidArgument(f"dockerfile parse error line {line}: {msg}")


def parse(text: str | bytes) -> Dockerfile:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("the Dockerfile is not valid UTF-8") from None
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    directives: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        key = m.group(1).lower()
        if key in directives:
            raise _err(i + 1, f"only one {key} parser directive can be used")
        directives[key] = m.group(2)
        i += 1
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise InvalidArgument(f"invalid escape token '{escape}' does not match ` or \\")
    cont = re.compile(re.escape(escape) + r"[ \t]*$")

    out = []
    n = 0
    while n < len(lines):
        raw = lines[n]
        start = n + 1
        n += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        buf = raw.lstrip()
        while cont.search(buf):
            buf = cont.sub("", buf)
            # continuation: skip comments and blank lines until a real line
            while n < len(lines) and (not lines[n].strip() or lines[n].lstrip().startswith("#")):
                n += 1
            if n >= len(lines):
                break
            buf += lines[n]
            n += 1
        out.append(_instruction(buf.strip(), start, n, escape))
    return Dockerfile(directives=directives, escape=escape, instructions=out)


def _instruction(text: str, line: int, end: int, escape: str, in_onbuild: bool = False) -> Instruction:
    parts = text.split(None, 1)
    cmd = parts[0].upper()
    rest = parts[1].strip() if len(parts) > 1 else ""
    if cmd not in INSTRUCTIONS:
        raise _err(line, f"unknown instruction: {parts[0]}")
    ins = Instruction(cmd=cmd, line=line, original=text, end_line=end)
    rest = _flags(ins, rest)
    if cmd == "ONBUILD":
        if not rest:
            raise _err(line, "ONBUILD requires at least one argument")
        sub_cmd = rest.split(None, 1)[0].upper()
        if sub_cmd in ("ONBUILD",):
            raise _err(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if sub_cmd in ("FROM", "MAINTAINER"):
            raise _err(line, f"{sub_cmd} isn't allowed as an ONBUILD trigger")
        ins.sub = _instruction(rest, line, end, escape, in_onbuild=True)
        ins.args = [rest]
        return ins
    if cmd in ("RUN", "CMD", "ENTRYPOINT"):
        arr = json_array(rest)
        if arr is not None:
            ins.args, ins.json = arr, True
        else:
            if not rest and cmd == "RUN":
                raise _err(line, "RUN requires at least one argument")
            ins.args = [rest] if rest else []
    elif cmd in ("COPY", "ADD", "VOLUME"):
        arr = json_array(rest)
        if arr is not None:
            ins.args, ins.json = arr, True
        else:
            ins.args = _split_words(rest, escape, line)
        if cmd in ("COPY", "ADD") and len(ins.args) < 2:
            raise _err(line, f"{cmd} requires at least two arguments, but only one was provided. "
                             "Destination could not be determined." if len(ins.args) == 1 else
                       f"{cmd} requires at least two arguments")
        if cmd == "VOLUME" and not ins.args:
            raise _err(line, "VOLUME requires at least one argument")
    elif cmd in ("ENV", "LABEL"):
        ins.args = _name_values(cmd, rest, escape, line)
    elif cmd == "ARG":
        words = _split_words(rest, escape, line)
        if not words:
            raise _err(line, "ARG requires at least one argument")
        ins.args = words
    elif cmd == "SHELL":
        arr = json_array(rest)
        if arr is None:
            raise _err(line, "SHELL requires the arguments to be in JSON form")
        if not arr:
            raise _err(line, "SHELL requires at least one argument")
        ins.args, ins.json = arr, True
    elif cmd == "HEALTHCHECK":
        words = rest.split(None, 1)
        if not words:
            raise _err(line, "HEALTHCHECK requires an argument")
        kind = words[0].upper()
        if kind == "NONE":
            if len(words) > 1:
                raise _err(line, "HEALTHCHECK NONE takes no arguments")
            ins.args = ["NONE"]
        elif kind == "CMD":
            body = words[1].strip() if len(words) > 1 else ""
            if not body:
                raise _err(line, "Missing command after HEALTHCHECK CMD")
            arr = json_array(body)
            if arr is not None:
                ins.args, ins.json = ["CMD"] + arr, True
            else:
                ins.args = ["CMD", body]
        else:
            raise _err(line, f"Unknown type {words[0]!r} in HEALTHCHECK (try CMD)")
    elif cmd == "FROM":
        words = rest.split()
        if len(words) == 1 or (len(words) == 3 and words[1].upper() == "AS"):
            ins.args = words
        else:
            raise _err(line, "FROM requires either one or three arguments")
    elif cmd in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"):
        if not rest:
            raise _err(line, f"{cmd} requires exactly one argument")
        if cmd in ("USER", "STOPSIGNAL") and len(_split_words(rest, escape, line)) != 1:
            raise _err(line, f"{cmd} requires exactly one argument")
        ins.args = [rest]
    elif cmd == "EXPOSE":
        words = _split_words(rest, escape, line)
        if not words:
            raise _err(line, "EXPOSE requires at least one argument")
        ins.args = words
    return ins


def _flags(ins: Instruction, rest: str) -> str:
    allowed = FLAGS.get(ins.cmd, {})
    while rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise ins.error(f"Unknown flag: {name}")
        if ins.cmd == "RUN":
            raise ins.error(f"the --{name} option requires BuildKit. Refer to "
                            "https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
        if name in ins.flags:
            raise ins.error(f"Duplicate flag specified: {name}")
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise ins.error(f"expecting boolean value for flag {name}, not: {value}")
            ins.flags[name] = not eq or value.lower() == "true"
        else:
            if not eq:
                raise ins.error(f"Missing a value on flag: {name}")
            ins.flags[name] = value
        rest = tail.lstrip()
    return rest


def json_array(rest: str) -> list[str] | None:
    """The JSON (exec) form of an instruction's arguments, or None for the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return None
    return value


def _split_words(s: str, escape: str, line: int) -> list[str]:
    """Whitespace-separated words; quotes and escapes are kept (expansion removes them)."""
    words, cur, quote, i, in_word = [], [], None, 0, False
    while i < len(s):
        c = s[i]
        if quote is None and c in " \t\r\n":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        cur.append(c)
        if c == escape and quote != "'" and i + 1 < len(s):
            cur.append(s[i + 1])
            i += 2
            continue
        if quote is None and c in "'\"":
            quote = c
        elif c == quote:
            quote = None
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def _name_values(cmd: str, rest: str, escape: str, line: int) -> list[str]:
    words = _split_words(rest, escape, line)
    if not words:
        raise _err(line, f"{cmd} requires at least one argument")
    if "=" not in words[0]:
        # the old form: ENV key value with spaces (one pair)
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise _err(line, f"{cmd} must have two arguments")
        return [parts[0], parts[1].strip()]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            raise _err(line, f"Syntax error - can't find = in \"{w}\". Must be of the form: name=value")
        if not key:
            raise _err(line, f"{cmd} names can not be blank")
        out += [key, value]
    return out
