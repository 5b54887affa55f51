"""The Dockerfile language as docker's classic builder reads it (pure: no I/O).

    df = parser.parse(text)            # directives, instructions with their line numbers
    shell.expand("${A:-x}", env)       # docker's shell-word substitution (quotes, escapes)
    ignore.Matcher(lines).excluded(p)  # .dockerignore rules

Errors are ``berth.errors.InvalidArgument`` with docker's wording, the line included
("dockerfile parse error line 3: unknown instruction: FOO").
"""
