"""Execution of parsed templates with Go's semantics (go/src/text/template/exec.go)."""

from berth.gotemplate import parse as P
from berth.gotemplate.gofmt import sprint
from berth.gotemplate.values import (BOOL, COMPLEX, FLOAT, FUNC, IFACE, INT, INVALID, MAP, MISSING,
                                         NILPTR, SLICE, STRING, STRUCT, Box, Func, GoList, GoMap, GoStruct,
                                         box_elem, indirect_interface, kind,
                                         type_name)

# Go allows 100000 nested {{template}} calls; Python's stack holds fewer: past this depth, the
# same error as Go's (an endless recursion ends there in both)
MAX_TEMPLATE_DEPTH = 1000


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class GoError(Exception):
    """An error returned by a function called from a template (error calling X: ...)."""


# Parameter types of functions (a tiny reflect.Type): "any" (interface {}), "value" (reflect.Value),
# "string", "int", "bool", "float64", "[]string".
class Builtin:
    def __init__(self, name, fn, params, variadic=False, builtin=True):
        self.name, self.fn, self.params, self.variadic, self.builtin = name, fn, params, variadic, builtin


def _assignable(v, typ):
    """Whether a concrete value is assignable to a parameter type."""
    if typ in ("any", "value"):
        return True
    k = kind(v)
    if typ == "string":
        return k == STRING and type_name(v) == "string"
    if typ == "int":
        return k == INT
    if typ == "bool":
        return k == BOOL
    if typ == "float64":
        return k == FLOAT
    if typ == "[]string":
        return isinstance(v, GoList) and v.gotype == "[]string"
    return False


def _typ_str(typ):
    return {"any": "interface {}", "value": "reflect.Value"}.get(typ, typ)


def _zero(typ):
    return {"string": "", "int": 0, "bool": False, "float64": 0.0}.get(typ)


class State:
    def __init__(self, tmpl, out, missingkey="default"):
        self.tmpl = tmpl
        self.out = out
        self.node = None
        self.vars = []
        self.depth = 0
        self.missingkey = missingkey

    # variables
    def push(self, name, value):
        self.vars.append([name, value])

    def mark(self):
        return len(self.vars)

    def pop(self, mark):
        del self.vars[mark:]

    def set_var(self, name, value):
        for v in reversed(self.vars):
            if v[0] == name:
                v[1] = value
                return
        self.errorf("undefined variable: %s" % name)

    def set_top_var(self, n, value):
        self.vars[len(self.vars) - n][1] = value

    def var_value(self, name):
        for v in reversed(self.vars):
            if v[0] == name:
                return v[1]
        self.errorf("undefined variable: %s" % name)

    def at(self, node):
        self.node = node

    def errorf(self, msg):
        name = self.tmpl.name
        if self.node is None:
            raise P.TemplateError("template: %s: %s" % (name, msg))
        tree = self.tmpl.tree
        text = tree.text
        pos = self.node.pos
        before = text[:pos]
        nl = before.rfind("\n")
        col = len(before.encode()) if nl < 0 else len(before[nl + 1:].encode())
        line = 1 + before.count("\n")
        raise P.TemplateError('template: %s:%d:%d: executing %s at <%s>: %s'
                              % (tree.parse_name, line, col, P.go_quote(name), self.node.string(), msg))

    # walking
    def walk(self, dot, node):
        self.at(node)
        if isinstance(node, P.ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, val)
        elif isinstance(node, P.TextNode):
            self.out.append(node.text)
        elif isinstance(node, P.ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, P.IfNode):
            self.walk_if_or_with(False, dot, node)
        elif isinstance(node, P.WithNode):
            self.walk_if_or_with(True, dot, node)
        elif isinstance(node, P.RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, P.TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, P.BreakNode):
            raise _Break()
        elif isinstance(node, P.ContinueNode):
            raise _Continue()
        elif isinstance(node, P.CommentNode):
            pass
        else:
            self.errorf("unknown node: %s" % node)

    def walk_if_or_with(self, is_with, dot, node):
        mark = self.mark()
        try:
            val = self.eval_pipeline(dot, node.pipe)
            truth, ok = is_true(indirect_interface(val))
            if not ok:
                self.errorf("if/with can't use %s" % sprint([val]))
            if truth:
                self.walk(val if is_with else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot, r):
        self.at(r)
        mark0 = self.mark()
        try:
            val = self.eval_pipeline(dot, r.pipe)
            val, _ = indirect(val)
            mark = self.mark()

            def one(index, elem):
                if r.pipe.decl:
                    self.set_top_var(1, elem)
                if len(r.pipe.decl) > 1:
                    self.set_top_var(2, index)
                try:
                    self.walk(elem, r.list)
                except _Continue:
                    pass
                finally:
                    self.pop(mark)

            k = kind(val)
            if k == SLICE:
                if len(val):
                    for i, e in enumerate(list(val)):
                        one(i, box_elem(val, e))
                    return
            elif k == MAP:
                if len(val):
                    for key in sorted(val):
                        one(key, box_elem(val, val[key]))
                    return
            elif k == INT:
                if val < 0:
                    pass
                if val > 0:
                    for i in range(val):
                        one(i, i)
                    return
            elif k == INVALID:
                pass
            elif k == NILPTR:
                pass
            else:
                self.errorf("range can't iterate over %s" % sprint([val]))
            if r.else_list is not None:
                self.walk(dot, r.else_list)
        except _Break:
            pass
        finally:
            self.pop(mark0)

    def walk_template(self, dot, t):
        self.at(t)
        tmpl = self.tmpl.lookup(t.name)
        if tmpl is None:
            self.errorf("template %s not defined" % P.go_quote(t.name))
        if self.depth >= MAX_TEMPLATE_DEPTH:
            self.errorf("exceeded maximum template depth (100000)")
        dot = self.eval_pipeline(dot, t.pipe)
        new = State(tmpl, self.out, self.missingkey)
        new.depth = self.depth + 1
        new.vars = [["$", dot]]
        new.walk(dot, tmpl.tree.root)

    # evaluation
    def eval_pipeline(self, dot, pipe):
        if pipe is None:
            return MISSING
        self.at(pipe)
        value = _MISSING_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if isinstance(value, Box):
                value = MISSING if value.v is None else value.v
        for v in pipe.decl:
            if pipe.is_assign:
                self.set_var(v.ident[0], value)
            else:
                self.push(v.ident[0], value)
        return value

    def not_a_function(self, args, final):
        if (args is not None and len(args) > 1) or final is not _MISSING_FINAL:
            self.errorf("can't give argument to non-function %s" % args[0])

    def eval_command(self, dot, cmd, final):
        first = cmd.args[0]
        if isinstance(first, P.FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, P.ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, P.IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, P.PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, P.VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, P.BoolNode):
            return first.true
        if isinstance(first, P.DotNode):
            return dot
        if isinstance(first, P.NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, P.NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, P.StringNode):
            return first.text
        self.errorf("can't evaluate command %s" % P.go_quote(first.string()))

    def ideal_constant(self, c):
        self.at(c)
        if c.is_complex:
            return c.complex
        t = c.text
        is_hex = len(t) > 2 and t[0] == "0" and t[1] in "xX" and not any(ch in t for ch in "pP")
        if c.is_float and not is_hex and not t.startswith("'") and any(ch in t for ch in ".eEpP"):
            return c.float
        if c.is_int:
            return c.int
        if c.is_uint:
            self.errorf("%s overflows int" % t)
        return MISSING

    def eval_field_node(self, dot, field, args, final):
        self.at(field)
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(self, dot, chain, args, final):
        self.at(chain)
        if isinstance(chain.node, P.NilNode):
            self.errorf("indirection through explicit nil in %s" % chain)
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable_node(self, dot, variable, args, final):
        self.at(variable)
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args, final)

    def eval_field_chain(self, dot, receiver, node, ident, args, final):
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, _MISSING_FINAL, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_function(self, dot, node, cmd, args, final):
        self.at(node)
        name = node.ident
        fn = self.tmpl.funcs.get(name)
        if fn is None:
            self.errorf("%s is not a defined function" % P.go_quote(name))
        return self.eval_call(dot, fn, cmd, name, args, final)

    def eval_field(self, dot, name, node, args, final, receiver):
        if receiver is MISSING:
            if self.missingkey == "error":
                self.errorf("nil data; no entry for key %s" % P.go_quote(name))
            return MISSING
        typ = type_name(receiver)
        receiver, is_nil = indirect(receiver)
        if is_nil and isinstance(receiver, Box):
            self.errorf("nil pointer evaluating %s.%s" % (typ, name))
        methods = receiver.go_methods() if hasattr(receiver, "go_methods") else None
        if methods and name in methods:
            m = methods[name]
            return self.eval_call(dot, Builtin(name, m.fn, m.params, m.variadic, builtin=False), node, name,
                                  args, final)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING_FINAL
        k = kind(receiver)
        if k == STRUCT and isinstance(receiver, GoStruct):
            if name in receiver.fields:
                if has_args:
                    self.errorf("%s has arguments but cannot be invoked as function" % name)
                return receiver.fields[name]
        elif k == MAP:
            if has_args:
                self.errorf("%s is not a method but has arguments" % name)
            if name in receiver:
                return box_elem(receiver, receiver[name])
            if self.missingkey == "error":
                self.errorf("map has no entry for key %s" % P.go_quote(name))
            if self.missingkey == "zero":
                return receiver.zero if isinstance(receiver, GoMap) else Box(None)
            return MISSING
        elif k == NILPTR and receiver is None:
            ptype = getattr(node, "_nil_type", None)
            self.errorf("nil pointer evaluating %s.%s" % (ptype or typ, name))
        self.errorf("can't evaluate field %s in type %s" % (name, typ))

    def eval_call(self, dot, fn, node, name, args, final):
        if args is not None:
            args = args[1:]
        else:
            args = []
        num_in = len(args) + (0 if final is _MISSING_FINAL else 1)
        params = fn.params
        num_fixed = len(args)
        if fn.variadic:
            num_fixed = len(params) - 1
            if num_in < num_fixed:
                self.errorf("wrong number of args for %s: want at least %d got %d" % (name, len(params) - 1, len(args)))
        elif num_in != len(params):
            self.errorf("wrong number of args for %s: want %d got %d" % (name, len(params), num_in))

        if fn.builtin and name in ("and", "or"):
            v = MISSING
            for a in args:
                v = self.eval_arg(dot, "value", a)
                if truth(v) == (name == "or"):
                    return v
            if final is not _MISSING_FINAL:
                v = self.validate_type(final, "value")
            return v

        argv = []
        i = 0
        while i < num_fixed and i < len(args):
            argv.append(self.eval_arg(dot, params[i], args[i]))
            i += 1
        if fn.variadic:
            t = params[-1]
            while i < len(args):
                argv.append(self.eval_arg(dot, t, args[i]))
                i += 1
        if final is not _MISSING_FINAL:
            t = params[-1]
            if fn.variadic and num_in - 1 < num_fixed:
                t = params[num_in - 1]
            argv.append(self.validate_type(final, t))
        try:
            if fn.builtin and name == "call":
                if args:
                    callee = args[0].string()
                else:
                    callee = final if type_name(final) == "string" else "<%s Value>" % type_name(final)
                return fn.fn(callee, *argv)
            return fn.fn(*argv)
        except GoError as e:
            self.at(node)
            self.errorf("error calling %s: %s" % (name, e))

    def validate_type(self, value, typ):
        if value is MISSING:
            if typ is None:
                return MISSING
            if typ in ("any",):
                return Box(None)
            if typ == "value":
                return MISSING
            if typ == "[]string":
                return GoList(nil=True)
            self.errorf("invalid value; expected %s" % _typ_str(typ))
        if typ is None or typ == "value":
            return value
        if typ == "any":
            return value
        if not _assignable(value, typ):
            if isinstance(value, Box) and value.v is not None:
                value = value.v
                if _assignable(value, typ):
                    return value
            self.errorf("wrong type for value; expected %s; got %s" % (_typ_str(typ), type_name(value)))
        return value

    def eval_arg(self, dot, typ, n):
        self.at(n)
        if isinstance(n, P.DotNode):
            return self.validate_type(dot, typ)
        if isinstance(n, P.NilNode):
            if typ in ("any", "value", "[]string"):
                return Box(None) if typ == "any" else (MISSING if typ == "value" else GoList(nil=True))
            self.errorf("cannot assign nil to %s" % _typ_str(typ))
        if isinstance(n, P.FieldNode):
            return self.validate_type(self.eval_field_node(dot, n, [n], _MISSING_FINAL), typ)
        if isinstance(n, P.VariableNode):
            return self.validate_type(self.eval_variable_node(dot, n, None, _MISSING_FINAL), typ)
        if isinstance(n, P.PipeNode):
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if isinstance(n, P.IdentifierNode):
            return self.validate_type(self.eval_function(dot, n, n, None, _MISSING_FINAL), typ)
        if isinstance(n, P.ChainNode):
            return self.validate_type(self.eval_chain_node(dot, n, None, _MISSING_FINAL), typ)
        if typ == "bool":
            if isinstance(n, P.BoolNode):
                return n.true
            self.errorf("expected bool; found %s" % n)
        if typ == "float64":
            if isinstance(n, P.NumberNode) and n.is_float:
                return n.float
            self.errorf("expected float; found %s" % n)
        if typ == "int":
            if isinstance(n, P.NumberNode) and n.is_int:
                return n.int
            self.errorf("expected integer; found %s" % n)
        if typ in ("any", "value"):
            return self.eval_empty_interface(dot, n)
        if typ == "string":
            if isinstance(n, P.StringNode):
                return n.text
            self.errorf("expected string; found %s" % n)
        self.errorf("can't handle %s for arg of type %s" % (n, _typ_str(typ)))

    def eval_empty_interface(self, dot, n):
        self.at(n)
        if isinstance(n, P.BoolNode):
            return n.true
        if isinstance(n, P.NumberNode):
            return self.ideal_constant(n)
        if isinstance(n, P.StringNode):
            return n.text
        self.errorf("can't handle assignment of %s to empty interface argument" % n)

    def print_value(self, n, v):
        self.at(n)
        if v is MISSING:
            self.out.append("<no value>")
            return
        if isinstance(v, Func):
            self.errorf("can't print %s of type %s" % (n, v.gotype))
        self.out.append(sprint([v]))


class _MissingFinal:
    pass


_MISSING_FINAL = _MissingFinal()


def indirect(v):
    """(value, is_nil) after going through interfaces."""
    while isinstance(v, Box):
        if v.v is None:
            return v, True
        v = v.v
    return v, v is None


def is_true(v):
    """(truth, ok) as text/template's isTrue."""
    k = kind(v)
    if k == INVALID:
        return False, True
    if k in (STRING, MAP, SLICE):
        return len(v) > 0, True
    if k == BOOL:
        return v, True
    if k in (INT, FLOAT, COMPLEX):
        return v != 0, True
    if k == IFACE:
        return v.v is not None, True
    if k == NILPTR:
        return False, True
    if k in (STRUCT, FUNC):
        return True, True
    return False, False


def truth(v):
    return is_true(indirect_interface(v))[0]
