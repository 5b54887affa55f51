"""The Dockerfile language as docker's classic builder reads it: the parser (directives,
continuations, comments, JSON and shell forms, flags, errors naming the line), shell-word
expansion, and .dockerignore's pattern rules. Pure functions: no daemon."""

import pytest

from berth.dockerfile import ignore, parser, shell
from berth.errors import InvalidArgument


def cmds(text):
    return [(i.cmd, i.args) for i in parser.parse(text).instructions]


def test_directives_are_read_only_at_the_top():
    df = parser.parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert df.escape == "`"
    # after a comment, blank line or instruction, "# escape=" is just a comment
    df = parser.parse("FROM x\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.directives == {}
    assert df.instructions[1].args == ["a  b"]
    df = parser.parse("\n# escape=`\nFROM x\n")
    assert df.escape == "\\"


def test_bad_escape_and_duplicate_directive():
    with pytest.raises(InvalidArgument, match="invalid escape token"):
        parser.parse("# escape=x\nFROM a\n")
    with pytest.raises(InvalidArgument, match="only one escape parser directive"):
        parser.parse("# escape=`\n# escape=\\\nFROM a\n")


def test_continuations_comments_and_blank_lines():
    text = "FROM busybox\nRUN echo a \\\n# a comment inside\n\n    b \\   \n  c\n# trailing comment\nCMD x\n"
    df = parser.parse(text)
    run = df.instructions[1]
    assert run.cmd == "RUN" and run.args == ["echo a     b   c"]
    assert run.line == 2
    assert df.instructions[2].line == 8


def test_backtick_escape_continues_lines():
    df = parser.parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n")
    assert df.instructions[1].args == ["dir c:\\   && echo"]


def test_keywords_are_case_insensitive_and_forms():
    got = cmds('from busybox AS build\nrun ["echo", "hi"]\nCMD echo hi\nENTRYPOINT ["/bin/sh"]\n'
               'COPY ["a b", "/c/"]\nADD x y /z/\nVOLUME /a /b\nVOLUME ["/c"]\nEXPOSE 80 53/udp\n')
    assert got == [("FROM", ["busybox", "AS", "build"]), ("RUN", ["echo", "hi"]), ("CMD", ["echo hi"]),
                   ("ENTRYPOINT", ["/bin/sh"]), ("COPY", ["a b", "/c/"]), ("ADD", ["x", "y", "/z/"]),
                   ("VOLUME", ["/a", "/b"]), ("VOLUME", ["/c"]), ("EXPOSE", ["80", "53/udp"])]
    # not valid JSON: the shell form
    assert cmds("FROM a\nRUN [not json\n")[1] == ("RUN", ["[not json"])


def test_env_and_label_forms():
    got = cmds('FROM a\nENV A=1 B="x y" C=\\"q\nENV OLD value with  spaces\nLABEL "k 1"=v k2=\'w\'\n')
    assert got[1] == ("ENV", ["A", "1", "B", '"x y"', "C", '\\"q'])
    assert got[2] == ("ENV", ["OLD", "value with  spaces"])
    assert got[3] == ("LABEL", ['"k 1"', "v", "k2", "'w'"])
    with pytest.raises(InvalidArgument, match="line 2: .*can't find = in"):
        parser.parse("FROM a\nENV A=1 B\n")
    with pytest.raises(InvalidArgument, match="line 2: ENV must have two arguments"):
        parser.parse("FROM a\nENV A\n")


def test_flags():
    df = parser.parse("FROM --platform=linux/amd64 a\nCOPY --from=build --chown=1:2 --chmod=755 a /b\n"
                      "HEALTHCHECK --interval=5s --retries=3 CMD true\nHEALTHCHECK NONE\n")
    assert df.instructions[0].flags == {"platform": "linux/amd64"}
    assert df.instructions[1].flags == {"from": "build", "chown": "1:2", "chmod": "755"}
    assert df.instructions[2].args == ["CMD", "true"] and df.instructions[2].flags["interval"] == "5s"
    assert df.instructions[3].args == ["NONE"]
    with pytest.raises(InvalidArgument, match="line 2: Unknown flag: nope"):
        parser.parse("FROM a\nCOPY --nope=1 a b\n")
    with pytest.raises(InvalidArgument, match="line 2: the --mount option requires BuildKit"):
        parser.parse("FROM a\nRUN --mount=type=cache,target=/x true\n")


def test_onbuild_and_shell():
    df = parser.parse('FROM a\nONBUILD RUN echo hi\nSHELL ["/bin/bash", "-c"]\n')
    assert df.instructions[1].sub.cmd == "RUN" and df.instructions[1].args == ["RUN echo hi"]
    assert df.instructions[2].args == ["/bin/bash", "-c"]
    with pytest.raises(InvalidArgument, match="line 2: SHELL requires the arguments to be in JSON form"):
        parser.parse("FROM a\nSHELL /bin/bash -c\n")
    with pytest.raises(InvalidArgument, match="ONBUILD ONBUILD"):
        parser.parse("FROM a\nONBUILD ONBUILD RUN x\n")
    with pytest.raises(InvalidArgument, match="FROM isn't allowed as an ONBUILD trigger"):
        parser.parse("FROM a\nONBUILD FROM b\n")


def test_syntax_errors_name_the_line():
    with pytest.raises(InvalidArgument, match="^dockerfile parse error line 4: unknown instruction: FOO$"):
        parser.parse("FROM a\n\n# c\nFOO bar\n")
    with pytest.raises(InvalidArgument, match="line 2: FROM requires either one or three arguments"):
        parser.parse("FROM a\nFROM a b\n")
    with pytest.raises(InvalidArgument, match="line 2: COPY requires at least two arguments"):
        parser.parse("FROM a\nCOPY onlyone\n")
    with pytest.raises(InvalidArgument, match="line 3: RUN requires at least one argument"):
        parser.parse("FROM a\n\nRUN\n")


def test_arg_words():
    assert cmds("ARG A\nARG B=1 C\nFROM a\n")[:2] == [("ARG", ["A"]), ("ARG", ["B=1", "C"])]


# --- expansion ----------------------------------------------------------------------------------

ENV = {"A": "1", "EMPTY": "", "SP": "a b"}


@pytest.mark.parametrize("word,want", [
    ("$A", "1"), ("${A}", "1"), ("x${A}y", "x1y"), ("$NOPE", ""), ("${NOPE:-def}", "def"),
    ("${EMPTY:-def}", "def"), ("${EMPTY-def}", ""), ("${NOPE-def}", "def"), ("${A:+alt}", "alt"),
    ("${NOPE:+alt}", ""), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"),
    ("'$A'", "$A"), ('"$A"', "1"), ('"a\\"b"', 'a"b'), ('"a\\nb"', "a\\nb"), ("\\$A", "$A"),
    ("a\\ b", "a b"), ('"${SP}"', "a b"), ("$", "$"), ("a$", "a$"), ("${A:-${NOPE:-x}}", "1"),
    ("${NOPE:-${A}}", "1"), ("$1x", "x"),
])
def test_expand(word, want):
    assert shell.expand(word, ENV) == want


def test_expand_errors():
    with pytest.raises(InvalidArgument, match="missing '}'"):
        shell.expand("${A", ENV)
    with pytest.raises(InvalidArgument, match="bad substitution"):
        shell.expand("${}", ENV)
    with pytest.raises(InvalidArgument, match="NOPE: must be set"):
        shell.expand("${NOPE:?must be set}", ENV)
    with pytest.raises(InvalidArgument, match="matching single-quote"):
        shell.expand("'abc", ENV)


def test_words_split_on_unquoted_space():
    assert shell.words('a "b c" $SP \'\' ${A:+yes}', ENV) == ["a", "b c", "a", "b", "", "yes"]


def test_backtick_escape_in_expansion():
    assert shell.expand("c:\\dir`$A", ENV, escape="`") == "c:\\dir$A"


# --- .dockerignore ------------------------------------------------------------------------------

def test_ignore_read_cleans_patterns():
    assert ignore.read("# comment\n\n  /a/b/  \n!./c//d\n  # not a comment\n") == ["a/b", "!c/d", "# not a comment"]


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.pyc"], "a.pyc", True),
    (["*.pyc"], "d/a.pyc", False),           # * does not cross /
    (["**/*.pyc"], "d/e/a.pyc", True),
    (["**/*.pyc"], "a.pyc", True),           # **/ matches no directory too
    (["build"], "build/x/y", True),          # a parent directory that matches excludes
    (["build"], "buildx", False),
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "other", True),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["!keep", "*"], "keep", True),          # the last matching pattern wins
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["[!a-c]x"], "bx", False),
    (["docs/**"], "docs/a/b.md", True),
    (["**"], "anything/at/all", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
])
def test_ignore_rules(patterns, path, excluded):
    assert ignore.Matcher(patterns).excluded(path) is excluded


def test_ignore_walk_hint():
    m = ignore.Matcher(["dir", "!dir/keep"])
    assert m.may_include_below("dir")
    assert not ignore.Matcher(["dir"]).may_include_below("dir")
