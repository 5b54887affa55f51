"""argparse with one-line errors (exit 125, as docker)."""

import argparse

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
