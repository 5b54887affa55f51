"""argparse with one-line errors (exit 125, as docker)."""

import argparse

from berth.errors import BerthError


class Parser(argparse.ArgumentParser):
    def __init__(self, cmd, **kw):
        super().__init__(prog=f"berth {cmd}", **kw)
        self.cmd = cmd

    def error(self, message):
        raise BerthError(f"{self.cmd}: {message}")


def parser(cmd, description=None):
    return Parser(cmd, description=description)
