"""text/template's built-in functions and docker's template functions (docker/cli templates)."""

from berth.gotemplate.exec import Builtin, GoError, truth
from berth.gotemplate.gofmt import Flags, fmt_value, json_marshal, sprint, sprintf, sprintln
from berth.gotemplate.values import GoInt
from berth.gotemplate.values import (BOOL, COMPLEX, FLOAT, INT, INVALID, MAP, MISSING, SLICE, STRING,
                                         Box, Func, GoList, GoMap, box_elem, indirect_interface, kind,
                                         type_name)

_ZERO_VALUE_TYPE = "reflect: call of reflect.Value.Type on zero Value"


def _indirect(v):
    while isinstance(v, Box):
        if v.v is None:
            return v, True
        v = v.v
    return v, v is None


def _len(item):
    item, is_nil = _indirect(item)
    if is_nil and item is not None:
        raise GoError("len of nil pointer")
    k = kind(item)
    if k in (MAP, SLICE, STRING):
        return len(item.encode()) if k == STRING else len(item)
    if item is MISSING:
        raise GoError(_ZERO_VALUE_TYPE)
    if item is None:
        raise GoError("len of nil pointer")
    raise GoError("len of type %s" % type_name(item))


def _index_arg(index, cap_):
    k = kind(index)
    if k == INT:
        x = index
    elif k == INVALID:
        raise GoError("cannot index slice/array with nil")
    else:
        raise GoError("cannot index slice/array with type %s" % type_name(index))
    if x < 0 or x > cap_:
        raise GoError("index out of range: %d" % x)
    return x


def _index(item, *indexes):
    item = indirect_interface(item)
    if item is MISSING:
        raise GoError("index of untyped nil")
    for index in indexes:
        index = indirect_interface(index)
        item, is_nil = _indirect(item)
        if is_nil:
            raise GoError("index of nil pointer")
        k = kind(item)
        if k in (SLICE, STRING):
            n = len(item.encode()) if k == STRING else len(item)
            x = _index_arg(index, n)
            if x == n:
                raise GoError("reflect: slice index out of range" if k == SLICE else "reflect: string index out of range")
            if k == STRING:
                item = GoInt(item.encode()[x], "uint8")
            else:
                item = box_elem(item, item[x])
        elif k == MAP:
            if index is MISSING:
                raise GoError("value is nil; should be of type string")
            if kind(index) != STRING or type_name(index) != "string":
                raise GoError("value has type %s; should be string" % type_name(index))
            if index in item:
                item = box_elem(item, item[index])
            else:
                item = item.zero if isinstance(item, GoMap) else Box(None)
        else:
            raise GoError("can't index item of type %s" % type_name(item))
    return item


def _slice(item, *indexes):
    item = indirect_interface(item)
    if item is MISSING:
        raise GoError("slice of untyped nil")
    if len(indexes) > 3:
        raise GoError("too many slice indexes: %d" % len(indexes))
    k = kind(item)
    if k == STRING:
        if len(indexes) == 3:
            raise GoError("cannot 3-index slice a string")
        b = item.encode()
        cap_ = len(b)
    elif k == SLICE:
        cap_ = len(item)
    else:
        raise GoError("can't slice item of type %s" % type_name(item))
    idx = [0, cap_ if k == STRING else len(item), 0]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, cap_)
    if idx[0] > idx[1]:
        raise GoError("invalid slice index: %d > %d" % (idx[0], idx[1]))
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise GoError("invalid slice index: %d > %d" % (idx[1], idx[2]))
    if k == STRING:
        return b[idx[0]:idx[1]].decode("utf-8", "surrogateescape")
    out = item[idx[0]:idx[1]]
    if isinstance(item, GoList):
        return GoList(out, item.gotype, elem_iface=item.elem_iface)
    return list(out)


def _not(v):
    return not truth(v)


# comparisons
_BOOL, _INT, _FLOAT, _STR, _COMPLEX = "b", "i", "f", "s", "c"


def _basic_kind(v):
    k = kind(v)
    if k == BOOL:
        return _BOOL
    if k == INT:
        return _INT
    if k == FLOAT:
        return _FLOAT
    if k == STRING:
        return _STR
    if k == COMPLEX:
        return _COMPLEX
    return None


def _is_nil(v):
    return v is MISSING or v is None or (isinstance(v, Box) and v.v is None) or \
        (isinstance(v, (GoList, GoMap)) and v.nil)


def _eq(arg1, *arg2):
    arg1 = indirect_interface(arg1)
    if not arg2:
        raise GoError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in arg2:
        arg = indirect_interface(arg)
        k2 = _basic_kind(arg)
        t = False
        if k1 != k2:
            if arg1 is not MISSING and arg is not MISSING:
                raise GoError("incompatible types for comparison")
        elif k1 is not None:
            t = (str(arg1) == str(arg)) if k1 == _STR else arg1 == arg
        else:
            if not (kind(arg1) == kind(arg) or arg1 is MISSING or arg is MISSING):
                raise GoError("non-comparable types %s: %s, %s: %s" % (
                    fmt_value(arg1, "s", Flags()), type_name(arg1), type_name(arg), sprint([arg])))
            if _is_nil(arg1) or _is_nil(arg):
                t = _is_nil(arg) == _is_nil(arg1)
            else:
                if kind(arg) in (MAP, SLICE) or isinstance(arg, Func):
                    raise GoError("non-comparable type %s: %s" % (fmt_value(arg, "s", Flags()), type_name(arg)))
                t = arg1 == arg
        if t:
            return True
    return False


def _ne(a, b):
    return not _eq(a, b)


def _lt(arg1, arg2):
    arg1 = indirect_interface(arg1)
    k1 = _basic_kind(arg1)
    if k1 is None:
        raise GoError("invalid type for comparison")
    arg2 = indirect_interface(arg2)
    k2 = _basic_kind(arg2)
    if k2 is None:
        raise GoError("invalid type for comparison")
    if k1 != k2:
        raise GoError("incompatible types for comparison")
    if k1 in (_BOOL, _COMPLEX):
        raise GoError("invalid type for comparison")
    if k1 == _STR:
        return str(arg1).encode() < str(arg2).encode()
    return arg1 < arg2


def _le(a, b):
    return _lt(a, b) or _eq(a, b)


def _gt(a, b):
    return not _le(a, b)


def _ge(a, b):
    return not _lt(a, b)


def _eval_args(args):
    if len(args) == 1:
        a = args[0]
        a = a.v if isinstance(a, Box) else a
        if isinstance(a, str) and type_name(a) == "string":
            return a
    return sprint(["<no value>" if a is MISSING or a is None or (isinstance(a, Box) and a.v is None) else a
                   for a in args])


def html_escape(s):
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("\0", "\ufffd"))


def _html(*args):
    return html_escape(_eval_args(args))


def js_escape(s):
    out = []
    for c in s:
        o = ord(c)
        if c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("\\'")
        elif c == '"':
            out.append('\\"')
        elif c == "<":
            out.append("\\u003C")
        elif c == ">":
            out.append("\\u003E")
        elif c == "&":
            out.append("\\u0026")
        elif c == "=":
            out.append("\\u003D")
        elif o < 0x20:
            out.append("\\u00%02X" % o)
        elif o >= 0x80 and not c.isprintable():
            out.append("\\u%04X" % o)
        else:
            out.append(c)
    return "".join(out)


def _js(*args):
    return js_escape(_eval_args(args))


_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def query_escape(s):
    out = []
    for b in s.encode("utf-8", "surrogateescape"):
        c = chr(b)
        if c in _UNRESERVED:
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def _urlquery(*args):
    return query_escape(_eval_args(args))


def _call(name, fn, *args):
    fn = indirect_interface(fn)
    if fn is MISSING:
        raise GoError("call of nil")
    if not isinstance(fn, Func):
        raise GoError("non-function %s of type %s" % (name, type_name(fn)))
    return fn.fn(*[indirect_interface(a) for a in args])


def _print(*args):
    return sprint(list(args))


def _printf(fmt, *args):
    return sprintf(fmt, list(args))


def _println(*args):
    return sprintln(list(args))


# docker's functions

def _json(v):
    try:
        return json_marshal(v).strip()
    except ValueError as e:
        raise GoError(str(e))


def _split(s, sep):
    if sep == "":
        return GoList(list(s))
    return GoList(s.split(sep))


def _join(items, sep):
    return sep.join(items)


def _is_separator(c):
    if ord(c) <= 0x7F:
        return not (c.isascii() and (c.isalnum() or c == "_"))
    if c.isalpha() or c.isdigit():
        return False
    return c.isspace()


def go_title(s):
    out = []
    prev = " "
    for c in s:
        out.append(c.title() if len(c.title()) == 1 and _is_separator(prev) else c)
        prev = c
    return "".join(out)


def _lower(s):
    # strings.ToLower maps rune by rune (Python's may grow a string: "İ".lower() is 2 runes)
    return s.lower() if s.isascii() else "".join(c.lower() if len(c.lower()) == 1 else
                                                 ("i" if c == "\u0130" else c) for c in s)


def _upper(s):
    return s.upper() if s.isascii() else "".join(c.upper() if len(c.upper()) == 1 else c for c in s)


def _pad(s, prefix, suffix):
    if s == "":
        return s
    return " " * prefix + s + " " * suffix


def _truncate(s, n):
    b = s.encode("utf-8", "surrogateescape")
    if len(b) < n:
        return s
    if n < 0:
        raise GoError("runtime error: slice bounds out of range [:%d]" % n)
    return b[:n].decode("utf-8", "surrogateescape")


V, A = "value", "any"
BUILTINS = {
    "and": Builtin("and", None, [V, V], True),
    "or": Builtin("or", None, [V, V], True),
    "not": Builtin("not", _not, [V]),
    "len": Builtin("len", _len, [V]),
    "index": Builtin("index", _index, [V, V], True),
    "slice": Builtin("slice", _slice, [V, V], True),
    "call": Builtin("call", _call, [V, V], True),
    "html": Builtin("html", _html, [A], True),
    "js": Builtin("js", _js, [A], True),
    "urlquery": Builtin("urlquery", _urlquery, [A], True),
    "print": Builtin("print", _print, [A], True),
    "printf": Builtin("printf", _printf, ["string", A], True),
    "println": Builtin("println", _println, [A], True),
    "eq": Builtin("eq", _eq, [V, V], True),
    "ne": Builtin("ne", _ne, [V, V]),
    "lt": Builtin("lt", _lt, [V, V]),
    "le": Builtin("le", _le, [V, V]),
    "gt": Builtin("gt", _gt, [V, V]),
    "ge": Builtin("ge", _ge, [V, V]),
}

DOCKER = {
    "json": Builtin("json", _json, [A], builtin=False),
    "split": Builtin("split", _split, ["string", "string"], builtin=False),
    "join": Builtin("join", _join, ["[]string", "string"], builtin=False),
    "title": Builtin("title", go_title, ["string"], builtin=False),
    "lower": Builtin("lower", _lower, ["string"], builtin=False),
    "upper": Builtin("upper", _upper, ["string"], builtin=False),
    "pad": Builtin("pad", _pad, ["string", "int", "int"], builtin=False),
    "truncate": Builtin("truncate", _truncate, ["string", "int"], builtin=False),
}


def _ident(v, *rest):
    return v


# docker's HeaderFunctions: applied to a table's header, they leave the header text alone
HEADER = {
    "json": Builtin("json", _ident, ["string"], builtin=False),
    "split": Builtin("split", _ident, ["string", "string"], builtin=False),
    "join": Builtin("join", _ident, ["string", "string"], builtin=False),
    "title": Builtin("title", _ident, ["string"], builtin=False),
    "lower": Builtin("lower", _ident, ["string"], builtin=False),
    "upper": Builtin("upper", _ident, ["string"], builtin=False),
    "pad": Builtin("pad", _ident, ["string", "int", "int"], builtin=False),
    "truncate": Builtin("truncate", _ident, ["string", "int"], builtin=False),
}
