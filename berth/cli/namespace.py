"""namespace ls | create | rm | inspect (containerd's namespaces, as nerdctl)."""

import json

from berth.cli.args import for_each, parser


def ls(ctx, argv, cmd):
    p = parser(cmd, "list namespaces")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    a = p.parse_args(argv)
    nss = ctx.client.namespaces()
    if a.quiet:
        for n in nss:
            print(n["Name"])
        return 0
    if a.format:
        from berth.cli.format import print_formatted
        print_formatted(a.format, nss, {"Name": "NAME", "Labels": "LABELS"})
        return 0
    from berth.cli.format import join_labels, table
    rows = [["NAME", "LABELS"]] + [[n["Name"], join_labels(n.get("Labels"))]
                                   for n in nss]
    print(table(rows))
    return 0


def create(ctx, argv, cmd):
    p = parser(cmd, "create a namespace")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("name")
    a = p.parse_args(argv)
    labels = dict(x.partition("=")[::2] for x in a.label)
    ctx.client.namespace_create(a.name, labels)
    return 0


def rm(ctx, argv, cmd):
    p = parser(cmd, "remove namespaces (refused while they hold anything)")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    return for_each(a.names, ctx.client.namespace_remove)


def inspect(ctx, argv, cmd):
    p = parser(cmd, "show namespaces")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    print(json.dumps([ctx.client.namespace_inspect(n) for n in a.names], indent=4))
    return 0
