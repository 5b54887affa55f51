"""Go's text/template in pure Python: lexer and parser (parse.py), evaluation (exec.py), Go's fmt
and encoding/json (gofmt.py), the built-in and docker's functions (funcs.py), decoded JSON as
typed Go values (jsonview.py) and Go's text/tabwriter (tabwriter.py).

    t = Template("").parse("{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}")
    t.execute({"Labels": {"a": "1"}})  ->  "a=1 "

Errors (TemplateError) carry Go's messages: "template: :1: unclosed action",
"template: :1:2: executing \"\" at <.Foo>: map has no entry for key \"Foo\"", ..."""

__all__ = ["Template", "TemplateError"]


def __getattr__(name):
    # the light modules of the package (tabwriter, parse.go_quote) serve outputs without --format:
    # the engine itself is loaded when a template is used
    if name == "Template":
        from berth.gotemplate.template import Template
        return Template
    if name == "TemplateError":
        from berth.gotemplate.parse import TemplateError
        return TemplateError
    raise AttributeError(name)
