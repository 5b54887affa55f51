"""Go's fmt (Sprint, Sprintln, Sprintf) and encoding/json over the values of values.py."""

import math

from berth.gotemplate.parse import go_quote
from berth.gotemplate.values import (MISSING, Box, Func, GoList, GoMap, GoStruct, JsonNumber,
                                         _Ordered, type_name)


def _shortest_digits(f):
    """(digits, decimal point position) of the shortest repr of abs(f), as strconv does."""
    r = repr(abs(f))
    mant, _, exp = r.partition("e")
    whole, _, frac = mant.partition(".")
    digits = whole + frac
    dp = len(whole) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    return stripped.rstrip("0") or "0", dp


def format_float(f, fmt="g", prec=-1):
    """strconv.FormatFloat(f, fmt, prec, 64) for fmt in g, e, f."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if prec >= 0:
        if fmt == "f":
            return "%.*f" % (prec, f)
        if fmt == "e":
            return "%.*e" % (prec, f)
        if fmt == "g":
            s = "%.*g" % (max(prec, 1) if prec else 1, f)
            return s
    neg = f < 0 or (f == 0 and math.copysign(1, f) < 0)
    if f == 0:
        ds, dp = "0", 1
    else:
        ds, dp = _shortest_digits(f)
    sign = "-" if neg else ""
    exp = dp - 1
    if fmt == "g" and (exp < -4 or exp >= (21 if prec == -2 else max(6, 0))):
        fmt = "e"
    elif fmt == "g":
        fmt = "f"
    if fmt == "e":
        m = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return "%s%se%s%02d" % (sign, m, "-" if exp < 0 else "+", abs(exp))
    # f, shortest
    if dp <= 0:
        return sign + "0." + "0" * (-dp) + ds
    if dp >= len(ds):
        return sign + ds + "0" * (dp - len(ds))
    return sign + ds[:dp] + "." + ds[dp:]


class _ArgNum:
    """[n] of an explicit argument index, as a tiny regular expression match."""

    def __init__(self, s, i, j):
        self.n, self._end = s[i + 1:j - 1], j

    def group(self, k):
        return self.n

    def end(self):
        return self._end

    @staticmethod
    def match(s, i):
        if i < len(s) and s[i] == "[":
            j = i + 1
            while j < len(s) and s[j].isdigit():
                j += 1
            if j > i + 1 and j < len(s) and s[j] == "]":
                return _ArgNum(s, i, j + 1)
        return None


_ARGNUM = _ArgNum


class Flags:
    __slots__ = ("minus", "plus", "sharp", "space", "zero", "width", "prec", "plusV", "sharpV")

    def __init__(self):
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.width = self.prec = None
        self.plusV = self.sharpV = False


def _pad(s, fl, numeric=False):
    if fl.width is None:
        return s
    w = fl.width - len(s)
    if w <= 0:
        return s
    if fl.minus:
        return s + " " * w
    if fl.zero:
        if numeric and s[:1] in "+- ":
            return s[0] + "0" * w + s[1:]
        return "0" * w + s
    return " " * w + s


def _bad(verb, v, fl=None):
    if v is None:
        return "%!" + verb + "(<nil>)"
    return "%%!%s(%s=%s)" % (verb, type_name(v), fmt_value(v, "v", fl or Flags()))


def _fmt_int(v, verb, fl):
    if verb in "vd":
        s = str(abs(v))
        base = ""
    elif verb == "b":
        s, base = format(abs(v), "b"), ""
    elif verb == "o":
        s, base = format(abs(v), "o"), ("0" if fl.sharp else "")
    elif verb == "O":
        s, base = format(abs(v), "o"), "0o"
    elif verb == "x":
        s, base = format(abs(v), "x"), ("0x" if fl.sharp else "")
    elif verb == "X":
        s, base = format(abs(v), "X"), ("0X" if fl.sharp else "")
    elif verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", fl)
    elif verb == "q":
        return _pad(_quote_rune(v), fl)
    elif verb == "U":
        s = "U+%04X" % v
        if fl.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
            s += " '%s'" % chr(v)
        return _pad(s, fl)
    else:
        return _bad(verb, v, fl)
    if fl.prec is not None:
        if fl.prec == 0 and v == 0:
            s = ""
        s = s.rjust(fl.prec, "0")
    s = base + s
    if v < 0:
        s = "-" + s
    elif fl.plus:
        s = "+" + s
    elif fl.space:
        s = " " + s
    if fl.zero and fl.prec is None and not fl.minus and fl.width:
        return _pad(s, fl, numeric=True)
    z = fl.zero
    fl.zero = False
    r = _pad(s, fl)
    fl.zero = z
    return r


def _quote_rune(v):
    c = chr(v) if 0 <= v <= 0x10FFFF else "\ufffd"
    if c == "'":
        return "'\\''"
    q = go_quote(c)[1:-1]
    if q == '\\"':
        q = '"'
    return "'" + q + "'"


def _fmt_float(v, verb, fl):
    if verb == "v":
        s = format_float(v, "g", fl.prec if fl.prec is not None else -1)
    elif verb in "fF":
        s = format_float(v, "f", 6 if fl.prec is None else fl.prec)
    elif verb in "eE":
        s = format_float(v, "e", 6 if fl.prec is None else fl.prec)
        if verb == "E":
            s = s.upper()
    elif verb in "gG":
        s = format_float(v, "g", -1 if fl.prec is None else fl.prec)
        if verb == "G":
            s = s.upper()
    elif verb in "xX" and fl.prec is None and not (math.isinf(v) or math.isnan(v)):
        h = v.hex()
        sign = "-" if h.startswith("-") else ""
        mant, _, exp = h.lstrip("-").partition("p")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        e = int(exp)
        s = "%s%sp%s%02d" % (sign, mant, "-" if e < 0 else "+", abs(e))
        if verb == "X":
            s = s.upper()
    else:
        return _bad(verb, v, fl)
    if fl.sharp and verb in "vgG" and "." not in s and "e" not in s.lower() and s[-1:].isdigit():
        s += "."
    if s[0] not in "+-":
        if fl.plus:
            s = "+" + s
        elif fl.space:
            s = " " + s
    if s.lstrip("+-") in ("Inf", "NaN"):
        z = fl.zero
        fl.zero = False
        r = _pad(s, fl)
        fl.zero = z
        return r
    return _pad(s, fl, numeric=True)


def _fmt_str(s, verb, fl):
    if verb == "v" and fl.sharpV:
        return _pad(go_quote(s), fl)
    if verb in "vs":
        if fl.prec is not None:
            s = s[:fl.prec]
        return _pad(s, fl)
    if verb == "q":
        if fl.prec is not None:
            s = s[:fl.prec]
        if fl.sharp and "`" not in s and all(c == "\t" or c.isprintable() for c in s):
            return _pad("`" + s + "`", fl)
        q = go_quote(s)
        if fl.plus:
            q = "".join(c if ord(c) < 128 else ("\\u%04x" % ord(c) if ord(c) < 0x10000 else "\\U%08x" % ord(c))
                        for c in q)
        return _pad(q, fl)
    if verb in "xX":
        b = s.encode("utf-8", "surrogateescape")
        if fl.prec is not None:
            b = b[:fl.prec]
        digits = "%02x" if verb == "x" else "%02X"
        parts = [digits % c for c in b]
        if fl.space:
            pre = ("0x" if verb == "x" else "0X") if fl.sharp else ""
            out = " ".join(pre + p for p in parts)
        else:
            out = "".join(parts)
            if fl.sharp and out:
                out = ("0x" if verb == "x" else "0X") + out
        return _pad(out, fl)
    return _bad(verb, s, fl)


def fmt_value(v, verb, fl, depth=0):
    """printValue/printArg of fmt for one operand with a verb and flags."""
    if isinstance(v, Box):
        v = v.v
        if v is None:
            if fl.sharpV and depth > 0:
                return "interface {}(nil)"
            if verb in "vT" or depth > 0:
                return _pad("<nil>", fl)
            return _bad(verb, None, fl)
    if v is MISSING:
        return "<invalid reflect.Value>"
    if verb == "T":
        return _pad(type_name(v) if v is not None else "<nil>", fl)
    if v is None:
        if fl.sharpV and depth > 0:
            return "interface {}(nil)"
        if verb in "vT" or depth > 0:
            return _pad("<nil>", fl)
        return _bad(verb, None, fl)
    if isinstance(v, bool):
        if verb in "vt":
            return _pad("true" if v else "false", fl)
        return _bad(verb, v, fl)
    if isinstance(v, int):
        return _fmt_int(v, verb, fl)
    if isinstance(v, float):
        return _fmt_float(v, verb, fl)
    if isinstance(v, str):
        return _fmt_str(v, verb, fl)
    if isinstance(v, GoMap) and v.nil and fl.sharpV:
        return type_name(v) + "(nil)"
    if isinstance(v, dict):
        if fl.sharpV:
            inner = ", ".join("%s:%s" % (go_quote(k), fmt_value(v[k], verb, fl, depth + 1)) for k in sorted(v))
            return type_name(v) + "{" + inner + "}"
        return "map[" + " ".join("%s:%s" % (fmt_value(k, verb, fl, depth + 1), fmt_value(v[k], verb, fl, depth + 1))
                                 for k in sorted(v)) + "]"
    if isinstance(v, list):
        if verb in "sxXq" and isinstance(v, GoList) and v.gotype == "[]byte":
            return _fmt_str(bytes(v).decode("utf-8", "replace"), verb, fl)
        if fl.sharpV:
            return type_name(v) + "{" + ", ".join(fmt_value(x, verb, fl, depth + 1) for x in v) + "}"
        return "[" + " ".join(fmt_value(x, verb, fl, depth + 1) for x in v) + "]"
    if isinstance(v, GoStruct):
        s = v.go_string() if hasattr(v, "go_string") else None
        if s is not None and verb in "vs":
            return _fmt_str(s, verb, fl)
        groups = getattr(v, "groups", None)
        if groups and not fl.plusV:
            return "{" + " ".join("{" + " ".join(fmt_value(v.fields[k], verb, fl, depth + 1) for k in g) + "}"
                                  for g in groups) + "}"
        if fl.plusV:
            return "{" + " ".join("%s:%s" % (k, fmt_value(x, verb, fl, depth + 1)) for k, x in v.fields.items()) + "}"
        return "{" + " ".join(fmt_value(x, verb, fl, depth + 1) for x in v.fields.values()) + "}"
    if isinstance(v, Func):
        return "%!" + verb + "(" + v.gotype + ")" if verb != "v" else "0x0"
    if isinstance(v, complex):
        return "(" + _fmt_float(v.real, verb, fl) + _fmt_float(v.imag, verb, _plus(fl)) + "i)"
    return _pad(str(v), fl)


def _plus(fl):
    f = Flags()
    f.plus = True
    f.prec = fl.prec
    return f


def _is_string(v):
    if isinstance(v, Box):
        v = v.v
    return isinstance(v, str)


def sprint(args):
    out = []
    prev_string = False
    for i, a in enumerate(args):
        is_str = _is_string(a)
        if i > 0 and not is_str and not prev_string:
            out.append(" ")
        out.append(fmt_value(a, "v", Flags()))
        prev_string = is_str
    return "".join(out)


def sprintln(args):
    return " ".join(fmt_value(a, "v", Flags()) for a in args) + "\n"


def sprintf(fmt, args):
    out = []
    argn = 0
    i = 0
    n = len(fmt)
    reordered = False
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        fl = Flags()
        m = _ARGNUM.match(fmt, i)
        while i < n and fmt[i] in "#0+- ":
            c = fmt[i]
            if c == "#":
                fl.sharp = True
            elif c == "0":
                fl.zero = not fl.minus
            elif c == "+":
                fl.plus = True
            elif c == "-":
                fl.minus = True
                fl.zero = False
            else:
                fl.space = True
            i += 1
        # width
        if i < n and fmt[i] == "*":
            i += 1
            if argn < len(args) and isinstance(_unbox(args[argn]), int) and not isinstance(_unbox(args[argn]), bool):
                fl.width = _unbox(args[argn])
                if fl.width < 0:
                    fl.minus, fl.width, fl.zero = True, -fl.width, False
            else:
                out.append("%!(BADWIDTH)")
            argn += 1
        else:
            k = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > k:
                fl.width = int(fmt[k:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argn < len(args) and isinstance(_unbox(args[argn]), int):
                    fl.prec = _unbox(args[argn])
                    if fl.prec < 0:
                        fl.prec = None
                else:
                    out.append("%!(BADPREC)")
                argn += 1
            else:
                k = i
                while i < n and fmt[i].isdigit():
                    i += 1
                fl.prec = int(fmt[k:i]) if i > k else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        m = _ARGNUM.match(fmt, i)
        if m:
            reordered = True
            k = int(m.group(1))
            if 1 <= k <= len(args):
                argn = k - 1
            else:
                i = m.end()
                if i < n:
                    out.append("%!" + fmt[i] + "(BADINDEX)")
                    i += 1
                continue
            i = m.end()
            if i >= n:
                out.append("%!(NOVERB)")
                break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argn >= len(args):
            out.append("%!" + verb + "(MISSING)")
            continue
        a = args[argn]
        argn += 1
        if verb == "v":
            if fl.sharp:
                fl.sharp, fl.sharpV = False, True
            if fl.plus:
                fl.plus, fl.plusV = False, True
        if verb == "w":
            verb = "v"
        out.append(fmt_value(a, verb, fl))
    if not reordered and argn < len(args):
        extra = ", ".join((type_name(_unbox(a)) + "=" + fmt_value(a, "v", Flags())) if _unbox(a) is not None
                          else "<nil>" for a in args[argn:])
        out.append("%!(EXTRA " + extra + ")")
    return "".join(out)


def _unbox(v):
    return v.v if isinstance(v, Box) else v


# ---- encoding/json ----

_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _json_str(s, html=False):
    out = ['"']
    for c in s:
        o = ord(c)
        if html and c in _HTML:
            out.append(_HTML[c])
        elif c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}.get(c, "\\u%04x" % o))
        elif o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        elif 0xD800 <= o < 0xE000:
            out.append("\\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_float(f):
    if math.isnan(f) or math.isinf(f):
        raise ValueError("json: unsupported value: %s" % format_float(f))
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = format_float(f, "e")
        # clean up e-09 to e-9
        m, e = s.split("e")
        sign, digits = e[0], e[1:].lstrip("0") or "0"
        return m + "e" + sign + digits
    return format_float(f, "f")


def json_marshal(v, escape_html=False):
    """json.Marshal, with SetEscapeHTML(false)."""
    if isinstance(v, Box):
        v = v.v
    if v is None or v is MISSING:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, JsonNumber):
        return str(v) or "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_str(v, escape_html)
    if isinstance(v, GoStruct):
        if hasattr(v, "marshal_json"):
            return v.marshal_json()
        return json_marshal(v.marshal(), escape_html)
    if isinstance(v, _Ordered):
        return "{" + ",".join(_json_str(k, escape_html) + ":" + json_marshal(x, escape_html) for k, x in v.items()) + "}"
    if isinstance(v, dict):
        if isinstance(v, GoMap) and v.nil:
            return "null"
        return "{" + ",".join(_json_str(k, escape_html) + ":" + json_marshal(v[k], escape_html) for k in sorted(v)) + "}"
    if isinstance(v, list):
        if isinstance(v, GoList) and v.nil:
            return "null"
        return "[" + ",".join(json_marshal(x, escape_html) for x in v) + "]"
    if isinstance(v, Func):
        raise ValueError("json: unsupported type: " + v.gotype)
    if isinstance(v, complex):
        raise ValueError("json: unsupported type: complex128")
    return _json_str(str(v), escape_html)
