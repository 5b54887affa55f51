"""Output helpers as docker prints them: a Go-template subset for --format, tab-aligned tables,
human sizes and times."""

import json
import time

from berth.errors import BerthError
from berth.units import human_duration, human_size  # noqa: F401 - used here and by importers


def ago(ts):
    if not ts:
        return "N/A"
    return human_duration(time.time() - ts) + " ago"


def table(rows, out=None):
    """Rows of cells, aligned like Go's tabwriter(minwidth 10, tabwidth 1, padding 3)."""
    if not rows:
        return ""
    ncol = max(len(r) for r in rows)
    widths = [0] * ncol
    for r in rows:
        for i, c in enumerate(r[:-1] if len(r) == ncol else r):
            widths[i] = max(widths[i], len(str(c)))
    lines = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            c = str(c)
            if i < len(r) - 1:
                cells.append(c.ljust(max(widths[i] + 3, 10)))
            else:
                cells.append(c)
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


class Template:
    """A subset of Go's text/template as docker uses it: {{.A.B}}, {{json .X}}, {{upper .X}},
    {{lower .X}}, {{join .X ","}}, {{index .M "k"}}, {{println .X}}, {{range .L}}...{{end}},
    {{if .X}}...{{else}}...{{end}}, and pipes into json/upper/lower."""

    def __init__(self, text):
        self.table = False
        if text.startswith("table"):
            self.table = True
            text = text[len("table"):]
        text = text.strip(" ") if self.table else text
        text = text.replace("\\t", "\t").replace("\\n", "\n")
        self.tokens = self._lex(text)
        pos, self.tree = self._parse(0, ())
        if pos != len(self.tokens):
            raise BerthError(f"template: unexpected {{{{{self.tokens[pos][1]}}}}}")

    @staticmethod
    def _lex(text):
        out = []
        i = 0
        while i < len(text):
            j = text.find("{{", i)
            if j < 0:
                out.append(("text", text[i:]))
                break
            if j > i:
                out.append(("text", text[i:j]))
            k = text.find("}}", j)
            if k < 0:
                raise BerthError("template: unclosed action")
            out.append(("action", text[j + 2:k].strip().strip("-").strip()))
            i = k + 2
        return out

    def _parse(self, pos, stop):
        nodes = []
        while pos < len(self.tokens):
            kind, val = self.tokens[pos]
            if kind == "action" and (val in stop or val.split(" ")[0] in stop):
                return pos, nodes
            pos += 1
            if kind == "text":
                nodes.append(("text", val))
            elif val.startswith("range "):
                pos, body = self._parse(pos, ("end",))
                pos += 1
                nodes.append(("range", val[6:].strip(), body))
            elif val.startswith("if "):
                pos, body = self._parse(pos, ("end", "else"))
                other = []
                if self.tokens[pos][1] == "else":
                    pos, other = self._parse(pos + 1, ("end",))
                pos += 1
                nodes.append(("if", val[3:].strip(), body, other))
            else:
                nodes.append(("expr", val))
        return pos, nodes

    def render(self, data):
        return "".join(self._render(self.tree, data))

    def _render(self, nodes, dot):
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                out.append(_str(self._eval(n[1], dot)))
            elif n[0] == "range":
                for item in self._eval(n[1], dot) or []:
                    out.extend(self._render(n[2], item))
            elif n[0] == "if":
                out.extend(self._render(n[2] if self._eval(n[1], dot) else n[3], dot))
        return out

    def _eval(self, expr, dot):
        stages = [s.strip() for s in expr.split("|")]
        val = self._call(stages[0], dot)
        for s in stages[1:]:
            val = self._call(s, dot, piped=(val,))
        return val

    def _call(self, expr, dot, piped=()):
        words = _split_words(expr)
        if not words:
            return dot
        fn = words[0]
        args = [self._arg(w, dot) for w in words[1:]] + list(piped)
        if fn.startswith(".") or fn.startswith('"'):
            return self._arg(fn, dot)
        if fn == "json":
            return json.dumps(args[0] if args else dot, separators=(",", ":"))
        if fn == "upper":
            return _str(args[0]).upper()
        if fn == "lower":
            return _str(args[0]).lower()
        if fn == "title":
            return _str(args[0]).title()
        if fn == "join":
            return _str(args[1] if len(args) > 1 else " ").join(_str(x) for x in (args[0] or []))
        if fn == "index":
            cur = args[0]
            for k in args[1:]:
                cur = cur.get(k) if isinstance(cur, dict) else (cur[int(k)] if cur is not None else None)
            return cur
        if fn == "println":
            return " ".join(_str(a) for a in args) + "\n"
        if fn == "len":
            return len(args[0] or [])
        if fn == "truncate":
            return _str(args[0])[: int(args[1])]
        raise BerthError(f'template: function "{fn}" not defined')

    def _arg(self, w, dot):
        if w.startswith('"') and w.endswith('"'):
            return w[1:-1]
        if w.isdigit():
            return int(w)
        if w == ".":
            return dot
        if w.startswith("."):
            cur = dot
            for part in w[1:].split("."):
                if isinstance(cur, dict):
                    if part in cur:
                        cur = cur[part]
                    else:
                        lower = {k.lower(): k for k in cur}
                        if part.lower() in lower:
                            cur = cur[lower[part.lower()]]
                        else:
                            raise BerthError(f"template: can't evaluate field {part}")
                else:
                    raise BerthError(f"template: can't evaluate field {part} in type {type(cur).__name__}")
            return cur
        raise BerthError(f"template: unexpected {w!r}")

    def header(self, fields_to_header):
        """For table formats: the header line, with {{.Field}} replaced by its column title."""
        out = []
        for n in self.tree:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                name = n[1].lstrip(".").split(".")[-1].split(" ")[-1].lstrip(".")
                out.append(fields_to_header.get(name, name.upper()))
        return "".join(out)


def _split_words(expr):
    words = []
    cur = ""
    q = False
    for ch in expr:
        if ch == '"':
            q = not q
            cur += ch
        elif ch == " " and not q:
            if cur:
                words.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        words.append(cur)
    return words


def _str(v):
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_str(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def print_formatted(fmt, items, headers=None):
    """--format over a list of dicts: json, table ..., or a template per item."""
    if fmt == "json":
        for it in items:
            print(json.dumps(it, separators=(",", ":")))
        return
    t = Template(fmt)
    if t.table:
        rows = [t.header(headers or {}).split("\t")]
        rows += [t.render(it).split("\t") for it in items]
        print(table(rows))
    else:
        for it in items:
            print(t.render(it))
