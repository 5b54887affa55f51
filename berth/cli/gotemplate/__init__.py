"""Go's text/template in pure Python: lexer and parser (parse.py), evaluation (exec.py), Go's fmt
and encoding/json (gofmt.py), the built-in and docker's functions (funcs.py), decoded JSON as
typed Go values (jsonview.py) and Go's text/tabwriter (tabwriter.py).

    t = Template("").parse("{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}")
    t.execute({"Labels": {"a": "1"}})  ->  "a=1 "

Errors (TemplateError) carry Go's messages: "template: :1: unclosed action",
"template: :1:2: executing \"\" at <.Foo>: map has no entry for key \"Foo\"", ..."""

from berth.cli.gotemplate.exec import State
from berth.cli.gotemplate.parse import TemplateError, parse

__all__ = ["Template", "TemplateError"]


class Template:
    def __init__(self, name="", funcs=None, trees=None):
        from berth.cli.gotemplate.funcs import BUILTINS, DOCKER
        self.name = name
        self.funcs = dict(BUILTINS)
        self.funcs.update(DOCKER if funcs is None else funcs)
        self.trees = {} if trees is None else trees
        self.tree = None

    def parse(self, text):
        parse(self.name, text, self.funcs, self.trees)
        self.tree = self.trees.get(self.name)
        return self

    def lookup(self, name):
        tree = self.trees.get(name)
        if tree is None:
            return None
        t = Template.__new__(Template)
        t.name, t.funcs, t.trees, t.tree = name, self.funcs, self.trees, tree
        return t

    def with_funcs(self, funcs):
        """The same trees executed with other functions (as Template.Funcs after Parse)."""
        t = Template.__new__(Template)
        t.name, t.trees, t.tree = self.name, self.trees, self.tree
        t.funcs = dict(self.funcs)
        t.funcs.update(funcs)
        return t

    def execute(self, data, missingkey="default"):
        """The output; raises TemplateError. Output written before an error is in err.partial."""
        if self.tree is None or self.tree.root is None:
            raise TemplateError('template: %s: "%s" is an incomplete or empty template' % (self.name, self.name))
        out = []
        st = State(self, out, missingkey)
        st.vars = [["$", data]]
        import sys
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20000))
        try:
            st.walk(data, self.tree.root)
        except TemplateError as e:
            e.partial = "".join(out)
            raise
        except RecursionError:
            e = TemplateError("template: %s: exceeded maximum template depth" % self.name)
            e.partial = "".join(out)
            raise e
        finally:
            sys.setrecursionlimit(limit)
        return "".join(out)
