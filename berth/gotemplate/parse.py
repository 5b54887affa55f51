"""Lexer and parser of Go's text/template (go/src/text/template/parse), with Go's error messages."""

# item types
ERROR, BOOL, CHAR, CHARCONST, COMMENT, COMPLEX, ASSIGN, DECLARE, EOF, FIELD, IDENT, LDELIM, LPAREN, \
    NUMBER, PIPE, RAWSTRING, RDELIM, RPAREN, SPACE, STRING, TEXT, VARIABLE = range(22)
KEYWORD = 100
BLOCK, BREAK, CONTINUE, DOT, DEFINE, ELSE, END, IF, NIL, RANGE, TEMPLATE, WITH = range(101, 113)
KEYWORDS = {".": DOT, "block": BLOCK, "break": BREAK, "continue": CONTINUE, "define": DEFINE,
            "else": ELSE, "end": END, "if": IF, "range": RANGE, "nil": NIL, "template": TEMPLATE,
            "with": WITH}
SPACES = " \t\r\n"


from berth.goquote import quote as go_quote  # noqa: F401 - used here and by importers


class TemplateError(Exception):
    """A parse or execution error; str() is Go's message."""


class Item:
    __slots__ = ("typ", "pos", "val", "line")

    def __init__(self, typ, pos, val, line):
        self.typ, self.pos, self.val, self.line = typ, pos, val, line

    def __str__(self):
        if self.typ == EOF:
            return "EOF"
        if self.typ == ERROR:
            return self.val
        if self.typ > KEYWORD:
            return "<%s>" % self.val
        if len(self.val.encode()) > 10:
            return go_quote(self.val, 10) + "..."
        return go_quote(self.val)


def _alnum(r):
    return r == "_" or r.isalpha() or r.isdigit()


def _unicode_repr(r):
    """%#U of a rune: U+0041 'A'."""
    return "U+%04X '%s'" % (ord(r), r) if r.isprintable() else "U+%04X" % ord(r)


def lex(text):
    """Go's lexer as a list of items (ending with EOF or ERROR)."""
    items = []
    n = len(text)
    pos = start = 0
    line = start_line = 1
    state = "text"
    paren = 0

    def emit(typ, p=None):
        nonlocal start, start_line
        items.append(Item(typ, start, text[start:pos] if p is None else p, start_line))
        start_line = line
        start = pos

    def ignore():
        nonlocal start, start_line, line
        line += text.count("\n", start, pos)
        start = pos
        start_line = line

    def at_right_delim():
        if text.startswith(" -}}", pos) or text.startswith("\t-}}", pos) or text.startswith("\r-}}", pos) \
                or text.startswith("\n-}}", pos):
            return True, True
        return text.startswith("}}", pos), False

    def at_terminator():
        if pos >= n:
            return True
        r = text[pos]
        return r in SPACES or r in ".,|:)(" or text.startswith("}}", pos)

    def error(msg):
        items.append(Item(ERROR, start, msg, start_line))

    while True:
        if state == "text":
            x = text.find("{{", pos)
            if x >= 0:
                if x > pos:
                    pos = x
                    trim = 0
                    if text[x + 2:x + 3] == "-" and text[x + 3:x + 4] in tuple(SPACES) and x + 3 < n:
                        seg = text[start:pos]
                        trim = len(seg) - len(seg.rstrip(SPACES))
                    pos -= trim
                    line += text.count("\n", start, pos)
                    val = text[start:pos]
                    it = Item(TEXT, start, val, start_line)
                    start_line = line
                    start = pos
                    pos += trim
                    ignore()
                    if val:
                        items.append(it)
                state = "ldelim"
                continue
            pos = n
            if pos > start:
                line += text.count("\n", start, pos)
                emit(TEXT)
            emit(EOF)
            return items
        if state == "ldelim":
            pos += 2
            trim = text[pos:pos + 1] == "-" and pos + 1 < n and text[pos + 1] in SPACES
            after = 2 if trim else 0
            if text.startswith("/*", pos + after):
                pos += after
                ignore()
                # comment
                pos += 2
                x = text.find("*/", pos)
                if x < 0:
                    error("unclosed comment")
                    return items
                pos = x + 2
                delim, trim_r = at_right_delim()
                if not delim:
                    error("comment ends before closing delimiter")
                    return items
                if trim_r:
                    pos += 2
                pos += 2
                if trim_r:
                    rest = text[pos:]
                    pos += len(rest) - len(rest.lstrip(SPACES))
                ignore()
                state = "text"
                continue
            emit(LDELIM)
            pos += after
            ignore()
            paren = 0
            state = "action"
            continue
        # inside action
        delim, trim_r = at_right_delim()
        if delim:
            if paren == 0:
                if trim_r:
                    pos += 2
                    ignore()
                pos += 2
                emit(RDELIM)
                if trim_r:
                    rest = text[pos:]
                    pos += len(rest) - len(rest.lstrip(SPACES))
                    ignore()
                state = "text"
                continue
            error("unclosed left paren")
            return items
        if pos >= n:
            error("unclosed action")
            return items
        r = text[pos]
        pos += 1
        if r in SPACES:
            pos -= 1
            k = 0
            while pos < n and text[pos] in SPACES:
                if text[pos] == "\n":
                    line += 1
                pos += 1
                k += 1
            if text[pos - 1] in SPACES and text.startswith("-}}", pos):
                pos -= 1
                if text[pos] == "\n":
                    line -= 1
                if k == 1:
                    continue
            emit(SPACE)
        elif r == "=":
            emit(ASSIGN)
        elif r == ":":
            if pos >= n or text[pos] != "=":
                pos += 1 if pos < n else 0
                error("expected :=")
                return items
            pos += 1
            emit(DECLARE)
        elif r == "|":
            emit(PIPE)
        elif r == '"':
            while True:
                c = text[pos] if pos < n else ""
                pos += 1
                if c == "\\":
                    c2 = text[pos] if pos < n else ""
                    pos += 1
                    if c2 and c2 != "\n":
                        continue
                    error("unterminated quoted string")
                    return items
                if c == "" or c == "\n":
                    error("unterminated quoted string")
                    return items
                if c == '"':
                    break
            emit(STRING)
        elif r == "`":
            x = text.find("`", pos)
            if x < 0:
                error("unterminated raw quoted string")
                return items
            line += text.count("\n", pos, x)
            pos = x + 1
            emit(RAWSTRING)
        elif r == "$":
            if at_terminator():
                emit(VARIABLE)
                continue
            pos = _lex_field(text, n, pos, items, start, start_line)
            if pos is None:
                return items
            emit(VARIABLE)
        elif r == "'":
            while True:
                c = text[pos] if pos < n else ""
                pos += 1
                if c == "\\":
                    c2 = text[pos] if pos < n else ""
                    pos += 1
                    if c2 and c2 != "\n":
                        continue
                    error("unterminated character constant")
                    return items
                if c == "" or c == "\n":
                    error("unterminated character constant")
                    return items
                if c == "'":
                    break
            emit(CHARCONST)
        elif r == "." and pos < n and not ("0" <= text[pos] <= "9"):
            if at_terminator():
                emit(DOT)
                continue
            pos = _lex_field(text, n, pos, items, start, start_line)
            if pos is None:
                return items
            emit(FIELD)
        elif r in "+-." or "0" <= r <= "9":
            pos -= 1
            ok, pos = _scan_number(text, pos)
            if not ok:
                error("bad number syntax: %s" % go_quote(text[start:pos]))
                return items
            if pos < n and text[pos] in "+-":
                ok, pos = _scan_number(text, pos)
                if not ok or text[pos - 1] != "i":
                    error("bad number syntax: %s" % go_quote(text[start:pos]))
                    return items
                emit(COMPLEX)
            else:
                emit(NUMBER)
        elif _alnum(r):
            while pos < n and _alnum(text[pos]):
                pos += 1
            word = text[start:pos]
            if not at_terminator():
                pos += 1
                error("bad character %s" % _unicode_repr(text[pos - 1]))
                return items
            if word in KEYWORDS and KEYWORDS[word] > KEYWORD:
                emit(KEYWORDS[word])
            elif word in ("true", "false"):
                emit(BOOL)
            else:
                emit(IDENT)
        elif r == "(":
            paren += 1
            emit(LPAREN)
        elif r == ")":
            paren -= 1
            emit(RPAREN)
            if paren < 0:
                error("unexpected right paren")
                return items
        elif ord(r) < 0x80 and r.isprintable():
            emit(CHAR)
        else:
            error("unrecognized character in action: %s" % _unicode_repr(r))
            return items


def _lex_field(text, n, pos, items, start, start_line):
    """The end of the .Field or $var starting before pos; None after an error item."""
    while pos < n and _alnum(text[pos]):
        pos += 1
    if pos >= n or text[pos] in SPACES or text[pos] in ".,|:)(" or text.startswith("}}", pos):
        return pos
    items.append(Item(ERROR, start, "bad character %s" % _unicode_repr(text[pos]), start_line))
    return None


def _scan_number(text, pos):
    n = len(text)

    def accept(valid):
        nonlocal pos
        if pos < n and text[pos] in valid:
            pos += 1
            return True
        return False

    def accept_run(valid):
        nonlocal pos
        while pos < n and text[pos] in valid:
            pos += 1

    accept("+-")
    digits = "0123456789_"
    if accept("0"):
        if accept("xX"):
            digits = "0123456789abcdefABCDEF_"
        elif accept("oO"):
            digits = "01234567_"
        elif accept("bB"):
            digits = "01_"
    accept_run(digits)
    if accept("."):
        accept_run(digits)
    if len(digits) == 11 and accept("eE"):
        accept("+-")
        accept_run("0123456789_")
    if len(digits) == 23 and accept("pP"):
        accept("+-")
        accept_run("0123456789_")
    accept("i")
    if pos < n and _alnum(text[pos]):
        pos += 1
        return False, pos
    return True, pos


# ---- nodes ----

class Node:
    pos = 0

    def __str__(self):
        return self.string()


class ListNode(Node):
    def __init__(self, pos):
        self.pos, self.nodes = pos, []

    def string(self):
        return "".join(n.string() for n in self.nodes)


class TextNode(Node):
    def __init__(self, pos, text):
        self.pos, self.text = pos, text

    def string(self):
        return go_quote(self.text)


class CommentNode(Node):
    def __init__(self, pos, text):
        self.pos, self.text = pos, text

    def string(self):
        return "{{" + self.text + "}}"


class PipeNode(Node):
    def __init__(self, pos, line):
        self.pos, self.line, self.is_assign, self.decl, self.cmds = pos, line, False, [], []

    def string(self):
        s = ""
        if self.decl:
            s = ", ".join(v.string() for v in self.decl) + " := "
        return s + " | ".join(c.string() for c in self.cmds)


class ActionNode(Node):
    def __init__(self, pos, line, pipe):
        self.pos, self.line, self.pipe = pos, line, pipe

    def string(self):
        return "{{" + self.pipe.string() + "}}"


class CommandNode(Node):
    def __init__(self, pos):
        self.pos, self.args = pos, []

    def string(self):
        return " ".join("(" + a.string() + ")" if isinstance(a, PipeNode) else a.string() for a in self.args)


class IdentifierNode(Node):
    def __init__(self, pos, ident):
        self.pos, self.ident = pos, ident

    def string(self):
        return self.ident


class VariableNode(Node):
    def __init__(self, pos, name):
        self.pos, self.ident = pos, name.split(".")

    def string(self):
        return ".".join(self.ident)


class DotNode(Node):
    def __init__(self, pos):
        self.pos = pos

    def string(self):
        return "."


class NilNode(Node):
    def __init__(self, pos):
        self.pos = pos

    def string(self):
        return "nil"


class FieldNode(Node):
    def __init__(self, pos, name):
        self.pos, self.ident = pos, name[1:].split(".")

    def string(self):
        return "".join("." + i for i in self.ident)


class ChainNode(Node):
    def __init__(self, pos, node):
        self.pos, self.node, self.fields = pos, node, []

    def add(self, field):
        self.fields.extend(field[1:].split("."))

    def string(self):
        s = "(" + self.node.string() + ")" if isinstance(self.node, PipeNode) else self.node.string()
        return s + "".join("." + f for f in self.fields)


class BoolNode(Node):
    def __init__(self, pos, true):
        self.pos, self.true = pos, true

    def string(self):
        return "true" if self.true else "false"


class NumberNode(Node):
    def __init__(self, pos, text):
        self.pos, self.text = pos, text
        self.is_int = self.is_uint = self.is_float = self.is_complex = False
        self.int = self.uint = 0
        self.float = 0.0
        self.complex = 0j

    def string(self):
        return self.text


class StringNode(Node):
    def __init__(self, pos, quoted, text):
        self.pos, self.quoted, self.text = pos, quoted, text

    def string(self):
        return self.quoted


class EndNode(Node):
    def __init__(self, pos):
        self.pos = pos

    def string(self):
        return "{{end}}"


class ElseNode(Node):
    def __init__(self, pos, line):
        self.pos, self.line = pos, line

    def string(self):
        return "{{else}}"


class BranchNode(Node):
    kind = ""

    def __init__(self, pos, line, pipe, lst, else_list):
        self.pos, self.line, self.pipe, self.list, self.else_list = pos, line, pipe, lst, else_list

    def string(self):
        s = "{{%s %s}}%s" % (self.kind, self.pipe.string(), self.list.string())
        if self.else_list is not None:
            s += "{{else}}" + self.else_list.string()
        return s + "{{end}}"


class IfNode(BranchNode):
    kind = "if"


class RangeNode(BranchNode):
    kind = "range"


class WithNode(BranchNode):
    kind = "with"


class BreakNode(Node):
    def __init__(self, pos, line):
        self.pos, self.line = pos, line

    def string(self):
        return "{{break}}"


class ContinueNode(Node):
    def __init__(self, pos, line):
        self.pos, self.line = pos, line

    def string(self):
        return "{{continue}}"


class TemplateNode(Node):
    def __init__(self, pos, line, name, pipe):
        self.pos, self.line, self.name, self.pipe = pos, line, name, pipe

    def string(self):
        if self.pipe is None:
            return "{{template %s}}" % go_quote(self.name)
        return "{{template %s %s}}" % (go_quote(self.name), self.pipe.string())


# ---- Go string literal unquoting ----

_SIMPLE_ESC = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unquote_char(s, i, quote):
    """strconv.UnquoteChar: (char, next index) or raises ValueError."""
    c = s[i]
    if c == quote and quote in "'\"":
        raise ValueError
    if c != "\\":
        return c, i + 1
    i += 1
    if i >= len(s):
        raise ValueError
    c = s[i]
    i += 1
    if c in _SIMPLE_ESC:
        return _SIMPLE_ESC[c], i
    if c in "xuU":
        k = {"x": 2, "u": 4, "U": 8}[c]
        h = s[i:i + k]
        if len(h) < k or any(ch not in "0123456789abcdefABCDEF" for ch in h):
            raise ValueError
        v = int(h, 16)
        if c == "x":
            return chr(v), i + k  # a byte; good enough for ASCII
        if v > 0x10FFFF or 0xD800 <= v < 0xE000:
            raise ValueError
        return chr(v), i + k
    if c in "01234567":
        o = s[i - 1:i + 2]
        if len(o) < 3 or any(ch not in "01234567" for ch in o) or int(o, 8) > 255:
            raise ValueError
        return chr(int(o, 8)), i + 2
    if c == quote:
        return c, i
    raise ValueError


def unquote(s):
    """strconv.Unquote for "..." and `...`."""
    if len(s) < 2 or s[0] != s[-1]:
        raise ValueError
    q = s[0]
    body = s[1:-1]
    if q == "`":
        if "`" in body:
            raise ValueError
        return body.replace("\r", "")
    if q != '"' or "\n" in body:
        raise ValueError
    out = []
    i = 0
    while i < len(body):
        c, i = unquote_char(body, i, '"')
        out.append(c)
    return "".join(out)


# ---- parser ----

class Tree:
    def __init__(self, name, text, funcs, tree_set):
        self.name = name
        self.parse_name = name
        self.text = text
        self.funcs = funcs
        self.tree_set = tree_set
        self.root = None
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0

    # token stream
    def _init_stream(self, items):
        self.items = items + [items[-1]] * 4
        self.i = 0
        self.last = items[0] if items else None

    def next(self):
        it = self.items[self.i]
        if self.i < len(self.items) - 1:
            self.i += 1
        self.last = it
        return it

    def backup(self, k=1):
        self.i -= k

    def peek(self):
        it = self.items[self.i]
        return it

    def next_non_space(self):
        while True:
            it = self.next()
            if it.typ != SPACE:
                return it

    def peek_non_space(self):
        it = self.next_non_space()
        self.backup()
        return it

    def errorf(self, msg):
        line = self.last.line if self.last else 1
        raise TemplateError("template: %s:%d: %s" % (self.parse_name, line, msg))

    def expect(self, typ, context):
        tok = self.next_non_space()
        if tok.typ != typ:
            self.unexpected(tok, context)
        return tok

    def expect_one_of(self, t1, t2, context):
        tok = self.next_non_space()
        if tok.typ not in (t1, t2):
            self.unexpected(tok, context)
        return tok

    def unexpected(self, tok, context):
        if tok.typ == ERROR:
            extra = ""
            if self.action_line and self.action_line != tok.line:
                extra = " in action started at %s:%d" % (self.parse_name, self.action_line)
                if tok.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            self.errorf("%s%s" % (tok, extra))
        self.errorf("unexpected %s in %s" % (tok, context))

    # top level
    def parse(self, items):
        self._init_stream(items)
        self.root = ListNode(self.peek().pos)
        while self.peek().typ != EOF:
            if self.peek().typ == LDELIM:
                delim = self.next()
                if self.next_non_space().typ == DEFINE:
                    new = Tree("definition", self.text, self.funcs, self.tree_set)
                    new.parse_name = self.parse_name
                    new.items, new.i, new.last = self.items, self.i, self.last
                    new.parse_definition()
                    self.i, self.last = new.i, new.last
                    continue
                # back up to the delimiter
                while self.items[self.i] is not delim:
                    self.i -= 1
            n = self.text_or_action()
            if isinstance(n, (EndNode, ElseNode)):
                self.errorf("unexpected %s" % n)
            self.root.nodes.append(n)
        return self

    def add(self):
        tree = self.tree_set.get(self.name)
        if tree is None or _is_empty_tree(tree.root):
            self.tree_set[self.name] = self
            return
        if not _is_empty_tree(self.root):
            self.errorf("template: multiple definition of template %s" % go_quote(self.name))

    def parse_definition(self):
        context = "define clause"
        name = self.expect_one_of(STRING, RAWSTRING, context)
        try:
            self.name = unquote(name.val)
        except ValueError:
            self.errorf("invalid syntax")
        self.expect(RDELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, EndNode):
            self.errorf("unexpected %s in %s" % (end, context))
        self.add()

    def item_list(self):
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != EOF:
            n = self.text_or_action()
            if isinstance(n, (EndNode, ElseNode)):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self):
        tok = self.next_non_space()
        if tok.typ == TEXT:
            return TextNode(tok.pos, tok.val)
        if tok.typ == LDELIM:
            self.action_line = tok.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if tok.typ == COMMENT:
            return CommentNode(tok.pos, tok.val)
        self.unexpected(tok, "input")

    def action(self):
        tok = self.next_non_space()
        t = tok.typ
        if t == BLOCK:
            return self.block_control()
        if t == BREAK:
            return self.break_control(tok, "break")
        if t == CONTINUE:
            return self.break_control(tok, "continue")
        if t == ELSE:
            return self.else_control()
        if t == END:
            return EndNode(self.expect(RDELIM, "end").pos)
        if t == IF:
            return self.control(IfNode, "if")
        if t == RANGE:
            return self.control(RangeNode, "range")
        if t == TEMPLATE:
            return self.template_control()
        if t == WITH:
            return self.control(WithNode, "with")
        self.backup()
        tok = self.peek()
        return ActionNode(tok.pos, tok.line, self.pipeline("command", RDELIM))

    def break_control(self, tok, word):
        t2 = self.next_non_space()
        if t2.typ != RDELIM:
            self.unexpected(t2, "{{%s}}" % word)
        if self.range_depth == 0:
            self.errorf("{{%s}} outside {{range}}" % word)
        return (BreakNode if word == "break" else ContinueNode)(tok.pos, tok.line)

    def else_control(self):
        peek = self.peek_non_space()
        if peek.typ in (IF, WITH):
            return ElseNode(peek.pos, peek.line)
        tok = self.expect(RDELIM, "else")
        return ElseNode(tok.pos, tok.line)

    def control(self, cls, context):
        nvars = len(self.vars)
        try:
            pipe = self.pipeline(context, RDELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list = None
            if isinstance(nxt, ElseNode):
                if context == "if" and self.peek().typ == IF:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.nodes.append(self.control(IfNode, "if"))
                elif context == "with" and self.peek().typ == WITH:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.nodes.append(self.control(WithNode, "with"))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, EndNode):
                        self.errorf("expected end; found %s" % nxt)
            return cls(pipe.pos, pipe.line, pipe, lst, else_list)
        finally:
            del self.vars[nvars:]

    def parse_template_name(self, tok, context):
        if tok.typ in (STRING, RAWSTRING):
            try:
                return unquote(tok.val)
            except ValueError:
                self.errorf("invalid syntax")
        self.unexpected(tok, context)

    def block_control(self):
        context = "block clause"
        tok = self.next_non_space()
        name = self.parse_template_name(tok, context)
        pipe = self.pipeline(context, RDELIM)
        block = Tree(name, self.text, self.funcs, self.tree_set)
        block.parse_name = self.parse_name
        block.items, block.i, block.last = self.items, self.i, self.last
        block.root, end = block.item_list()
        if not isinstance(end, EndNode):
            self.errorf("unexpected %s in %s" % (end, context))
        block.add()
        self.i, self.last = block.i, block.last
        return TemplateNode(tok.pos, tok.line, name, pipe)

    def template_control(self):
        context = "template clause"
        tok = self.next_non_space()
        name = self.parse_template_name(tok, context)
        pipe = None
        if self.next_non_space().typ != RDELIM:
            self.backup()
            pipe = self.pipeline(context, RDELIM)
        return TemplateNode(tok.pos, tok.line, name, pipe)

    def pipeline(self, context, end):
        tok = self.peek_non_space()
        pipe = PipeNode(tok.pos, tok.line)
        while True:  # decls
            v = self.peek_non_space()
            if v.typ != VARIABLE:
                break
            start = self.i
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.typ in (ASSIGN, DECLARE):
                pipe.is_assign = nxt.typ == ASSIGN
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, v.val))
                self.vars.append(v.val)
                break
            if nxt.typ == CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, v.val))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (VARIABLE, RDELIM, RPAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf("too many declarations in %s" % context)
            # not a declaration: back up to the variable
            self.i = start
            break
        while True:
            tok = self.next_non_space()
            if tok.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if tok.typ in (BOOL, CHARCONST, COMPLEX, DOT, FIELD, IDENT, NUMBER, NIL, RAWSTRING, STRING,
                           VARIABLE, LPAREN):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(tok, context)

    def check_pipeline(self, pipe, context):
        if not pipe.cmds:
            self.errorf("missing value for %s" % context)
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(c.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                self.errorf("non executable command in pipeline stage %d" % (i + 2))

    def command(self):
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            op = self.operand()
            if op is not None:
                cmd.args.append(op)
            tok = self.next()
            if tok.typ == SPACE:
                continue
            if tok.typ in (RDELIM, RPAREN):
                self.backup()
            elif tok.typ == PIPE:
                pass
            else:
                self.unexpected(tok, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self):
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().typ == FIELD:
                chain.add(self.next().val)
            if isinstance(node, FieldNode):
                node = FieldNode(chain.pos, chain.string())
            elif isinstance(node, VariableNode):
                node = VariableNode(chain.pos, chain.string())
            elif isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                self.errorf("unexpected . after term %s" % go_quote(node.string()))
            else:
                node = chain
        return node

    def term(self):
        tok = self.next_non_space()
        t = tok.typ
        if t == IDENT:
            if tok.val not in self.funcs:
                self.errorf("function %s not defined" % go_quote(tok.val))
            return IdentifierNode(tok.pos, tok.val)
        if t == DOT:
            return DotNode(tok.pos)
        if t == NIL:
            return NilNode(tok.pos)
        if t == VARIABLE:
            name = tok.val.split(".")[0]
            if name not in self.vars:
                self.errorf("undefined variable %s" % go_quote(name))
            return VariableNode(tok.pos, tok.val)
        if t == FIELD:
            return FieldNode(tok.pos, tok.val)
        if t == BOOL:
            return BoolNode(tok.pos, tok.val == "true")
        if t in (CHARCONST, COMPLEX, NUMBER):
            return self.new_number(tok)
        if t == LPAREN:
            return self.pipeline("parenthesized pipeline", RPAREN)
        if t in (STRING, RAWSTRING):
            try:
                s = unquote(tok.val)
            except ValueError:
                self.errorf("invalid syntax")
            return StringNode(tok.pos, tok.val, s)
        self.backup()
        return None

    def new_number(self, tok):
        text = tok.val
        n = NumberNode(tok.pos, text)
        if tok.typ == CHARCONST:
            try:
                c, i = unquote_char(text, 1, "'")
            except (ValueError, IndexError):
                self.errorf("invalid syntax")
            if text[i:] != "'":
                self.errorf("malformed character constant: %s" % text)
            n.int = n.uint = ord(c)
            n.float = float(ord(c))
            n.is_int = n.is_uint = n.is_float = True
            return n
        if tok.typ == COMPLEX or text.endswith("i"):
            self.errorf("complex numbers are not supported: %s" % text)
        clean = text.replace("_", "")
        iv = None
        try:
            iv = int(clean, 0)
        except ValueError:
            if clean.lstrip("+-").startswith("0") and clean.lstrip("+-")[1:2].isdigit():
                try:
                    iv = int(clean.lstrip("+-"), 8) * (-1 if clean.startswith("-") else 1)
                except ValueError:
                    iv = None
        if iv is not None:
            if 0 <= iv < 1 << 64:
                n.is_uint, n.uint = True, iv
            if -(1 << 63) <= iv < 1 << 63:
                n.is_int, n.int = True, iv
            if n.is_int or n.is_uint:
                n.is_float, n.float = True, float(iv)
        if not n.is_int and not n.is_uint:
            try:
                f = float.fromhex(clean) if clean.lstrip("+-")[:2].lower() == "0x" else float(clean)
            except ValueError:
                f = None
            if f is not None:
                if not any(c in text for c in ".eEpP"):
                    self.errorf("integer overflow: %s" % go_quote(text))
                n.is_float, n.float = True, f
                if f == int(f) if f == f and abs(f) != float("inf") else False:
                    if -(1 << 63) <= int(f) < 1 << 63:
                        n.is_int, n.int = True, int(f)
                    if 0 <= int(f) < 1 << 64:
                        n.is_uint, n.uint = True, int(f)
        if not (n.is_int or n.is_uint or n.is_float):
            self.errorf("illegal number syntax: %s" % go_quote(text))
        return n


def _is_empty_tree(n):
    if n is None:
        return True
    if isinstance(n, ListNode):
        return all(_is_empty_tree(x) for x in n.nodes)
    if isinstance(n, TextNode):
        return not n.text.strip(SPACES)
    if isinstance(n, CommentNode):
        return True
    return False


def parse(name, text, funcs, tree_set):
    """Parse text into tree_set (name -> Tree); raises TemplateError with Go's message."""
    items = lex(text)
    t = Tree(name, text, funcs, tree_set)
    t.parse(items)
    t.add()
    return tree_set
