"""Shell-word processing as docker's builder does it (moby/buildkit ``shell.Lex``).

``expand(word, env)`` removes quotes, applies escapes and substitutes ``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+alt}``, ``${VAR+alt}``, ``${VAR:?msg}``,
``${VAR?msg}``; single quotes keep everything literal; in double quotes the escape character
only escapes ``"``, ``$`` and itself. ``words(text, env)`` also splits on unquoted
whitespace (a quoted empty string is a word). ``env`` maps names to values; a name that is
not in it is unset (substituted by nothing).
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.errors import InvalidArgument

_NAME_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME = _NAME_START | set("0123456789")


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str):
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self):
        c = self.peek()
        self.i += 1 if c else 0
        return c

    # returns (words, joined) where words splits on unquoted whitespace
    def process(self, stop: str = "", split: bool = False):
        words: list[str] = []
        cur: list[str] = []
        in_word = False
        while True:
            c = self.peek()
            if not c:
                if stop:
                    raise InvalidArgument(f"failed to process {self.s!r}: missing '}}'")
                break
            if stop and c == stop:
                self.next()
                break
            if split and c in " \t\r\n":
                self.next()
                if in_word:
                    words.append("".join(cur))
                    cur, in_word = [], False
                continue
            in_word = True
            if c == "'":
                self.next()
                cur.append(self._single())
            elif c == '"':
                self.next()
                cur.append(self._double())
            elif c == "$":
                self.next()
                value = self._dollar()
                if split:  # an unquoted substitution is split too (docker's wordsStruct.addString)
                    for ch in value:
                        if ch in " \t\r\n":
                            if cur:
                                words.append("".join(cur))
                                cur = []
                        else:
                            cur.append(ch)
                    in_word = bool(cur)
                    continue
                cur.append(value)
            elif c == self.esc:
                self.next()
                n = self.next()
                if n:
                    cur.append(n)
            else:
                self.next()
                cur.append(c)
        if in_word:
            words.append("".join(cur))
        return words

    def _single(self):
        out = []
        while True:
            c = self.next()
            if not c:
                raise InvalidArgument(f"failed to process {self.s!r}: unexpected end of statement while looking for matching single-quote")
            if c == "'":
                return "".join(out)
            out.append(c)

    def _double(self):
        out = []
        while True:
            c = self.peek()
            if not c:
                raise InvalidArgument(f"failed to process {self.s!r}: unexpected end of statement while looking for matching double-quote")
            if c == '"':
                self.next()
                return "".join(out)
            if c == "$":
                self.next()
                out.append(self._dollar())
            elif c == self.esc:
                self.next()
                n = self.peek()
                if n in ('"', "$", self.esc):
                    self.next()
                    out.append(n)
                else:
                    out.append(c)
            else:
                self.next()
                out.append(c)

    def _name(self):
        out = []
        while self.peek() and self.peek() in _NAME:
            out.append(self.next())
        return "".join(out)

    def _dollar(self):
        c = self.peek()
        if c == "{":
            self.next()
            name = self._name()
            if not name:
                raise InvalidArgument(f"failed to process {self.s!r}: bad substitution")
            c = self.peek()
            if not c:
                raise InvalidArgument(f"failed to process {self.s!r}: missing '}}'")
            if c == "}":
                self.next()
                return self.env.get(name, "")
            colon = False
            if c == ":":
                colon = True
                self.next()
                c = self.peek()
            if c not in ("-", "+", "?"):
                raise InvalidArgument(f"failed to process {self.s!r}: unsupported modifier ({c or 'EOF'}) in substitution")
            self.next()
            word = "".join(self.process(stop="}"))
            value = self.env.get(name)
            is_set = value is not None and (value != "" or not colon)
            if c == "-":
                return value if is_set else word
            if c == "+":
                return word if is_set else ""
            if not is_set:
                raise InvalidArgument(f"failed to process {self.s!r}: {name}: {word or 'is not allowed to be unset'}")
            return value
        if c and c in _NAME_START:
            return self.env.get(self._name(), "")
        if c and c.isdigit():  # $1 ... positional: nothing in a Dockerfile
            self.next()
            return ""
        return "$"


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, escapes applied, variables substituted (no splitting)."""
    return "".join(_Lexer(word, env, escape).process())


def words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words of ``text`` after substitution, split on unquoted whitespace."""
    return _Lexer(text, env, escape).process(split=True)
