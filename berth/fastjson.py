"""JSON for the runtime's start-up path, without importing the json package.

`import json` pulls in re and enum (about 5 ms of every berth-runc start). This module
uses the same C accelerator (_json) that the json package uses, so parsing is identical;
only the error path imports json (for JSONDecodeError). Falls back to json without _json.
"""

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None

_WS = " \t\n\r"


def _constant(name):
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo = None


_scanner = None


def loads(s):
    global _scanner
    if isinstance(s, (bytes, bytearray)):
        s = bytes(s)
        # what decode("utf-8-sig") does, without importing that codec's module (CLI start-up)
        s = (s[3:] if s[:3] == b"\xef\xbb\xbf" else s).decode("utf-8")
    if _json is None:
        import json
        return json.loads(s)
    if _scanner is None:
        _scanner = _json.make_scanner(_Context)
    n = len(s)
    i = 0
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scanner(s, i)
    except StopIteration as e:
        import json
        raise json.JSONDecodeError("Expecting value", s, e.value) from None
    except SystemError:
        # _json raises its JSONDecodeError only when json.decoder is loaded: let json say what is wrong
        import json
        return json.loads(s)
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        import json
        raise json.JSONDecodeError("Extra data", s, end)
    return obj


def load(f):
    return loads(f.read())


def dumps(obj, indent=None):
    out = []
    _encode(obj, out, indent, 0)
    return "".join(out)


def _encode(o, out, indent, level):
    if isinstance(o, str):
        out.append(_json.encode_basestring_ascii(o) if _json else _slow_str(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif isinstance(o, int):
        out.append(int.__repr__(o))
    elif isinstance(o, float):
        if o != o or o in (float("inf"), float("-inf")):
            raise ValueError("out of range float values are not JSON compliant")
        out.append(float.__repr__(o))
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        out.append("{")
        first = True
        for k, v in o.items():
            if not isinstance(k, str):
                k = str(k)
            if not first:
                out.append(",")
            first = False
            if indent is not None:
                out.append("\n" + " " * (indent * (level + 1)))
            out.append(_json.encode_basestring_ascii(k) if _json else _slow_str(k))
            out.append(": " if indent is not None else ":")
            _encode(v, out, indent, level + 1)
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append("}")
    elif isinstance(o, (list, tuple)):
        if not o:
            out.append("[]")
            return
        out.append("[")
        for i, v in enumerate(o):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + " " * (indent * (level + 1)))
            _encode(v, out, indent, level + 1)
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append("]")
    else:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _slow_str(s):
    import json
    return json.dumps(s)


def dump(obj, f, indent=None):
    f.write(dumps(obj, indent))
