"""Go values as the template engine sees them (a small model of reflect).

Python values stand for Go values: str (string), bool, int (int), float (float64), dict
(map[string]interface {} as encoding/json decodes an object), list ([]interface {}). Beside them:
Box (an interface value: what a map[string]interface {} or []interface {} hands out), MISSING
(the invalid reflect.Value: a missing map key), typed containers (GoMap, GoList, GoStruct) and
JsonNumber (json.Number, as `json.Decoder.UseNumber` gives)."""


class _Missing:
    __slots__ = ()

    def __repr__(self):
        return "MISSING"

    def __bool__(self):
        return False


MISSING = _Missing()


class Box:
    """An interface{} value holding v (None: a nil interface)."""
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __repr__(self):
        return "Box(%r)" % (self.v,)


class GoInt(int):
    """An integer of another Go type than int (int64, uint64...)."""

    def __new__(cls, v, gotype="int64"):
        o = super().__new__(cls, v)
        o.gotype = gotype
        return o


class JsonNumber(str):
    gotype = "json.Number"


class GoList(list):
    """A typed slice: gotype like "[]string"; nil=True for a nil slice."""

    def __init__(self, items=(), gotype="[]string", nil=False, elem_iface=False):
        super().__init__(items)
        self.gotype = gotype
        self.nil = nil
        self.elem_iface = elem_iface


class GoMap(dict):
    """A typed map with string keys: gotype like "map[string]string", zero = the element's zero
    value (what index gives for a missing key)."""

    def __init__(self, items=(), gotype="map[string]string", zero="", nil=False, elem_iface=False):
        super().__init__(items)
        self.gotype = gotype
        self.zero = zero
        self.nil = nil
        self.elem_iface = elem_iface


class GoStruct:
    """A struct value: ordered fields (Go name -> value), json names, methods (name -> Method)."""

    gotype = "struct {}"

    def __init__(self, gotype=None, fields=None, json_names=None, omitempty=(), methods=None):
        if gotype:
            self.gotype = gotype
        self.fields = fields if fields is not None else {}
        self.json_names = json_names or {}
        self.omitempty = set(omitempty)
        self.methods = methods or {}

    def go_methods(self):
        return self.methods

    def marshal(self):
        """What encoding/json makes of it: an ordered dict (or another value)."""
        out = {}
        for k, v in self.fields.items():
            if k in self.omitempty and is_empty(v):
                continue
            out[self.json_names.get(k, k)] = v
        return _Ordered(out)


class _Ordered(dict):
    """A JSON object whose key order is kept (a struct), not sorted (a map)."""


class Method:
    """A Go method: fn(*args) with params, a list of Go type names ("string", "int", ...)."""

    def __init__(self, fn, params=(), variadic=False):
        self.fn, self.params, self.variadic = fn, list(params), variadic


class Func:
    """A Go function value (as returned by a field of func type)."""

    def __init__(self, fn, params=(), variadic=False, gotype="func()"):
        self.fn, self.params, self.variadic, self.gotype = fn, list(params), variadic, gotype


def is_empty(v):
    if v is None or v is MISSING:
        return True
    if isinstance(v, Box):
        return v.v is None
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v == 0
    if isinstance(v, (str, list, dict)):
        return len(v) == 0
    return False


def type_name(v):
    """reflect.Type.String() of a value."""
    if isinstance(v, Box):
        return "interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, JsonNumber):
        return "json.Number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, int):
        return getattr(v, "gotype", "int")
    if isinstance(v, float):
        return "float64"
    if isinstance(v, (GoList, GoMap, GoStruct, Func)):
        return v.gotype
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, complex):
        return "complex128"
    if v is None:
        return "<nil>"
    return getattr(v, "gotype", type(v).__name__)


# kinds
INVALID, BOOL, INT, FLOAT, STRING, MAP, SLICE, STRUCT, IFACE, NILPTR, FUNC, COMPLEX = range(12)


def kind(v):
    if v is MISSING:
        return INVALID
    if isinstance(v, Box):
        return IFACE
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int):
        return INT
    if isinstance(v, float):
        return FLOAT
    if isinstance(v, complex):
        return COMPLEX
    if isinstance(v, str):
        return STRING
    if isinstance(v, dict):
        return MAP
    if isinstance(v, list):
        return SLICE
    if isinstance(v, GoStruct):
        return STRUCT
    if isinstance(v, Func):
        return FUNC
    if v is None:
        return NILPTR
    return STRUCT


def indirect_interface(v):
    """The concrete value inside an interface, MISSING for a nil interface."""
    if isinstance(v, Box):
        return MISSING if v.v is None else v.v
    return v


def box_elem(container, v):
    """An element taken out of a container: boxed if the element type is an interface."""
    if isinstance(container, (GoList, GoMap)):
        return Box(v) if container.elem_iface else v
    if isinstance(container, (list, dict)):
        return Box(v)
    return v


def elem_type_name(container):
    if isinstance(container, GoMap):
        return container.gotype.split("]", 1)[1]
    if isinstance(container, GoList):
        return container.gotype[2:]
    return "interface {}"
