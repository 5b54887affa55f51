"""Build commands: build (the context streamed as a tar, .dockerignore applied here, as the
docker CLI does), commit, builder prune."""

import os
import sys

from berth.cli.args import parser
from berth.errors import BerthError


def commit(ctx, argv, cmd):
    p = parser(cmd, "create a new image from a container's changes")
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("-p", "--pause", default="true")
    p.add_argument("container")
    p.add_argument("repository", nargs="?")
    a = p.parse_args(argv)
    if a.pause.lower() not in ("true", "false", "1", "0"):
        raise BerthError(f'invalid argument "{a.pause}" for "-p, --pause" flag: must be true or false')
    repo = tag = None
    if a.repository:
        from berth.oci import reference
        try:
            ref = reference.parse(a.repository)
        except BerthError as e:
            raise BerthError(f"invalid reference format: {e.message}") from None
        repo, tag = ref.name, ref.tag
    res = ctx.client.container_commit(a.container, repo=repo, tag=tag, changes=a.change, comment=a.message,
                                      author=a.author, pause=a.pause.lower() in ("true", "1"))
    print(res.get("Id", ""))
    return 0
