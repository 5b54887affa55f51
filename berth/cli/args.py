"""argparse with one-line errors (exit 125, as docker)."""

import argparse
import sys

from berth.errors import BerthError


class Parser(argparse.ArgumentParser):
    def __init__(self, cmd, **kw):
        kw.setdefault("add_help", False)  # -h is --hostname for run/create, as in docker
        super().__init__(prog=f"berth {cmd}", **kw)
        self.add_argument("--help", action="help", help="show this help")
        self.cmd = cmd

    def error(self, message):
        raise BerthError(f"{self.cmd}: {message}")


def parser(cmd, description=None):
    return Parser(cmd, description=description)


def for_each(names, action, echo=True):
    """Apply action to each name as docker does: print the name, or a one-line error and go on;
    exit status 1 if any failed."""
    failed = 0
    for n in names:
        try:
            action(n)
            if echo:
                print(n)
        except BerthError as e:
            print(f"berth: {e.message}", file=sys.stderr)
            failed = 1
    return 1 if failed else 0
