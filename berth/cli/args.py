"""Command-line parsing for berth's commands, with one-line errors and the docker CLI's exit
codes: 125 for a flag it cannot parse (unknown, missing its value, a bad value), 1 for the
wrong number of arguments.

A small parser with the part of argparse's interface the commands use (flags with one or more
names, store_true/append actions, types, choices, defaults, positionals with ?, + and ...
(the rest of the line), short flags combined as in `-it`, `--flag=value`, `--`). argparse
itself costs ~7 ms to import, and every berth command pays its start-up; `--help` is laid out
as docker's (cli/flaghelp.py).
"""

import sys

from berth.errors import BerthError

REMAINDER = "..."


class UsageError(BerthError):
    """A flag the command line cannot parse: exit 125, as the docker CLI's flag errors (and its
    run/create checks of their flags' values)."""

    code = 125


def usage_error(e):
    """e as a UsageError (exit 125) unless it names an exit code of its own."""
    if getattr(e, "code", None) is not None:
        return e
    u = UsageError(e.message)
    u.__cause__ = e
    return u


class Namespace:
    pass


class _Arg:
    def __init__(self, names, kw):
        self.names = names
        self.positional = not names[0].startswith("-")
        self.action = kw.get("action", "store")
        self.nargs = kw.get("nargs")
        self.type = kw.get("type")
        self.choices = kw.get("choices")
        self.kw = kw
        if self.positional:
            self.dest = kw.get("dest", names[0])
        else:
            long = next((n for n in names if n.startswith("--")), names[0])
            self.dest = kw.get("dest", long.lstrip("-").replace("-", "_"))
        if "default" in kw:
            self.default = kw["default"]
        elif self.action == "store_true":
            self.default = False
        elif self.action == "append" or self.nargs in ("+", "*", REMAINDER):
            self.default = [] if self.action != "append" else None
        else:
            self.default = None

    def convert(self, parser, value, shown):
        if self.type is not None:
            try:
                value = self.type(value)
            except (TypeError, ValueError):
                parser.error(f"argument {shown}: invalid {getattr(self.type, '__name__', 'value')} value: {value!r}")
        if self.choices is not None and value not in self.choices:
            parser.error(f"argument {shown}: invalid choice: {value!r} (choose from "
                         + ", ".join(repr(c) for c in self.choices) + ")")
        return value


class Parser:
    def __init__(self, cmd, description=None, **_kw):
        self.cmd = cmd
        self.description = description
        self.args = []
        self.flags = {}
        self.min_args = None  # a command that needs more arguments than its required positionals

    def add_argument(self, *names, **kw):
        a = _Arg(list(names), kw)
        self.args.append(a)
        for n in names:
            if n.startswith("-"):
                self.flags[n] = a
        return a

    def error(self, message):
        """A flag error: exit 125."""
        raise UsageError(f"{self.cmd}: {message}")

    def count_error(self, message=None):
        """The wrong number of arguments: exit 1, in docker's words for the command's arity
        ("'berth tag' requires 2 arguments", "requires at least 1 argument", "accepts no
        arguments", ...) unless a message is given."""
        raise BerthError(message if message is not None else f"'berth {self.cmd}' {self.arity()}")

    def arity(self):
        """docker's (cobra's) words for how many arguments the command takes."""
        lo, hi, unbounded = 0, 0, False
        for a in self.args:
            if not a.positional:
                continue
            if a.nargs is None or a.nargs == "+":
                lo, hi = lo + 1, hi + 1
            elif a.nargs == "?":
                hi += 1
            if a.nargs in ("+", "*", REMAINDER):
                unbounded = True
        if self.min_args is not None:
            lo = max(lo, self.min_args)

        def n(k):
            return f"{k} argument" + ("" if k == 1 else "s")
        if unbounded:
            return f"requires at least {n(lo)}" if lo else "accepts any arguments"
        if hi == 0:
            return "accepts no arguments"
        if lo == hi:
            return f"requires {n(lo)}"
        if lo == 0:
            return f"requires at most {n(hi)}"
        return f"requires at least {lo} and at most {n(hi)}"

    def print_help(self):
        """docker's layout: usage, description, every flag with its type and help."""
        from berth.cli import flaghelp
        sys.stdout.write(flaghelp.render(self))

    def parse_args(self, argv):
        ns = Namespace()
        for a in self.args:
            setattr(ns, a.dest, list(a.default) if isinstance(a.default, list) else a.default)
        positionals = [a for a in self.args if a.positional]
        values = []  # positional words
        rest = None
        i = 0
        argv = list(argv)

        def needs_value(a):
            return a.action not in ("store_true", "help")

        while i < len(argv):
            w = argv[i]
            i += 1
            if rest is not None:
                rest.append(w)
                continue
            if w == "--":
                values.extend(argv[i:])
                break
            if w in ("--help",) or (w == "-h" and "-h" not in self.flags):
                self.print_help()
                raise SystemExit(0)
            if w.startswith("--") and len(w) > 2:
                name, eq, val = w.partition("=")
                a = self.flags.get(name)
                if a is None:
                    self.error(f"unknown flag: {name}")
                if needs_value(a):
                    if not eq:
                        if i >= len(argv):
                            self.error(f"argument {name}: expected one argument")
                        val = argv[i]
                        i += 1
                    self._store(ns, a, a.convert(self, val, name))
                else:
                    self._store(ns, a, _go_bool(self, name, val) if eq else True)
                continue
            if w.startswith("-") and len(w) > 1 and not _is_number(w):
                # -x, -xVALUE, -abc (combined short flags)
                j = 1
                while j < len(w):
                    name = "-" + w[j]
                    a = self.flags.get(name)
                    if a is None:
                        self.error(f"unknown shorthand flag: {w[j]!r} in {w}")
                    if needs_value(a):
                        val = w[j + 1:]
                        if val.startswith("="):
                            val = val[1:]
                        if not val:
                            if i >= len(argv):
                                self.error(f"argument {name}: expected one argument")
                            val = argv[i]
                            i += 1
                        self._store(ns, a, a.convert(self, val, name))
                        break
                    if w[j + 1:j + 2] == "=":  # -d=false, as pflag takes a bool shorthand's value
                        self._store(ns, a, _go_bool(self, name, w[j + 2:]))
                        break
                    self._store(ns, a, True)
                    j += 1
                continue
            values.append(w)
            # once the positionals before a "..." one are filled, the rest of the line is its
            filled = _fill(positionals, values)
            if filled is not None:
                rest = filled
        self._assign(ns, positionals, values, rest)
        return ns

    def _store(self, ns, a, value):
        if a.action == "append":
            cur = getattr(ns, a.dest)
            if cur is None:
                cur = []
                setattr(ns, a.dest, cur)
            cur.append(value)
        else:
            setattr(ns, a.dest, value)

    def _assign(self, ns, positionals, values, rest):
        vals = list(values)
        for idx, a in enumerate(positionals):
            later_required = sum(1 for b in positionals[idx + 1:] if b.nargs in (None, "+"))
            if a.nargs == REMAINDER:
                setattr(ns, a.dest, vals + (rest or []))
                vals = []
            elif a.nargs == "+":
                take = len(vals) - later_required
                if take < 1:
                    self.count_error()
                setattr(ns, a.dest, [a.convert(self, v, a.dest) for v in vals[:take]])
                vals = vals[take:]
            elif a.nargs == "*":
                take = max(len(vals) - later_required, 0)
                setattr(ns, a.dest, [a.convert(self, v, a.dest) for v in vals[:take]])
                vals = vals[take:]
            elif a.nargs == "?":
                if len(vals) > later_required:
                    setattr(ns, a.dest, a.convert(self, vals.pop(0), a.dest))
            else:
                if not vals:
                    self.count_error()
                setattr(ns, a.dest, a.convert(self, vals.pop(0), a.dest))
        if vals:
            self.count_error()


def _go_bool(parser, name, value):
    """A boolean flag's explicit value (--rm=false), as Go's strconv.ParseBool takes it."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    parser.error(f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: parsing "{value}": invalid syntax')


def _fill(positionals, values):
    """[] when a REMAINDER positional starts right after these values, else None."""
    need = 0
    for a in positionals:
        if a.nargs == REMAINDER:
            return [] if len(values) >= need else None
        if a.nargs in (None,):
            need += 1
        else:
            return None  # ?, +, * before a remainder: not used by berth's commands
    return None


def _is_number(w):
    try:
        float(w)
        return True
    except ValueError:
        return False


def parser(cmd, description=None):
    return Parser(cmd, description=description)


def parse_filters(cmd, values, filters=None):
    """--filter name=value (repeatable) -> {name: [values]}, as the Engine API takes them."""
    filters = {} if filters is None else filters
    for f in values:
        k, eq, v = f.partition("=")
        if not eq:
            raise UsageError(f"{cmd}: bad format of filter (expected name=value): {f}")
        filters.setdefault(k, []).append(v)
    return filters


def for_each(names, action, echo=True, missing_ok=False, summary=None):
    """Apply action to each name as docker does: print the name, or a one-line error and go on;
    exit status 1 if any failed. missing_ok (`rm -f`): an object not found is shown, not a failure.
    summary: the words of a last line naming the failed ones (docker start's "failed to start
    containers")."""
    failed = []
    for n in names:
        try:
            action(n)
            if echo:
                print(n)
        except BerthError as e:
            print(f"berth: {e.message}", file=sys.stderr)
            if not (missing_ok and getattr(e, "http_status", None) == 404):
                failed.append(n)
    if failed and summary:
        print(f"berth: {summary}: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def confirm(message):
    """docker's prompt of a prune without -f: the message and " [y/N] " on stdout, an answer
    read from stdin (a pipe too); no answer (EOF) is no, and the command ends with status 0."""
    sys.stdout.write(message + " [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")
