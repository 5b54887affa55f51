"""The Template: parse and execute as Go's text/template.Template (with docker's functions)."""

import sys

from berth.gotemplate.exec import State
from berth.gotemplate.parse import TemplateError, parse


class Template:
    def __init__(self, name="", funcs=None, trees=None):
        from berth.gotemplate.funcs import BUILTINS, DOCKER
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
