"""Go's strconv.Quote, errno texts and encoding/json's text, for messages and outputs in Go programs'
words (shared by the CLI's templates and outputs, the daemon's errors, the json-file log and the
CRI's Go-written texts; light: no imports at its own import)."""


def quote(s: str, limit: int | None = None) -> str:
    """strconv.Quote (and %.Nq when limit is given: the first N runes)."""
    if limit is not None:
        s = s[:limit]
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7f:
            out.append("\\x%02x" % o)
        elif 0xd800 <= o < 0xe000:  # a lone surrogate: invalid UTF-8 in Go
            out.append("\\ufffd")
        elif o >= 0x80 and not ch.isprintable():
            out.append("\\u%04x" % o if o < 0x10000 else "\\U%08x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def errno_text(e: BaseException) -> str:
    """An OS error's text as a Go program prints it (syscall.Errno: strerror in lower case)."""
    why = getattr(e, "strerror", None) or str(e)
    return why[:1].lower() + why[1:]


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def marshal(obj, sort_keys: bool = False) -> str:
    """obj as Go's encoding/json writes it: compact, UTF-8 as it is, <, >, & and U+2028/9
    escaped; sort_keys for a Go map (its keys come out sorted)."""
    import json
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    for c, esc in _GO_ESCAPES.items():
        if c in text:
            text = text.replace(c, esc)
    return text
