"""berth update and berth export."""

import sys

from berth.cli.args import for_each, parser
from berth.errors import BerthError


def update(ctx, argv, cmd):
    p = parser(cmd, "update configuration of one or more containers")
    p.add_argument("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000, or 0 to disable")
    p.add_argument("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    p.add_argument("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    p.add_argument("--cpu-rt-period", type=int, help="Limit the CPU real-time period in microseconds")
    p.add_argument("--cpu-rt-runtime", type=int, help="Limit the CPU real-time runtime in microseconds")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--cpus", type=float, help="Number of CPUs")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-reservation", help="Memory soft limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    p.add_argument("names", nargs="+", help="containers")
    a = p.parse_args(argv)
    from berth.cli.runflags import _ram_or_unlimited, ram
    body = {}
    for key, v in (("BlkioWeight", a.blkio_weight), ("CpuPeriod", a.cpu_period), ("CpuQuota", a.cpu_quota),
                   ("CpuRealtimePeriod", a.cpu_rt_period), ("CpuRealtimeRuntime", a.cpu_rt_runtime),
                   ("CpuShares", a.cpu_shares), ("CpusetCpus", a.cpuset_cpus), ("CpusetMems", a.cpuset_mems),
                   ("PidsLimit", a.pids_limit)):
        if v is not None:
            body[key] = v
    if a.cpus:
        body["NanoCpus"] = int(a.cpus * 1e9)
    if a.memory:
        body["Memory"] = ram("-m, --memory", a.memory)
    if a.memory_reservation:
        body["MemoryReservation"] = ram("--memory-reservation", a.memory_reservation)
    if a.memory_swap:
        body["MemorySwap"] = _ram_or_unlimited("--memory-swap", a.memory_swap)
    if a.restart:
        name, colon, count = a.restart.partition(":")
        try:
            n = int(count) if colon else 0
        except ValueError:
            raise BerthError("invalid restart policy format: maximum retry count must be an integer") from None
        body["RestartPolicy"] = {"Name": name, "MaximumRetryCount": n}
    if not body:
        raise BerthError("you must provide one or more flags when using this command")

    def one(n):
        res = ctx.client.call("POST", f"/containers/{n}/update", body=body) or {}
        for w in res.get("Warnings") or []:
            print(f"WARNING: {w}", file=sys.stderr)
    return for_each(a.names, one)


def export(ctx, argv, cmd):
    p = parser(cmd, "export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container", help="the container")
    a = p.parse_args(argv)
    if not a.output and sys.stdout.isatty():
        raise BerthError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    what = "failed to export container"
    if a.output:
        from berth.cli.output import check_destination
        check_destination(a.output, what)
    resp = ctx.client.call("GET", f"/containers/{a.container}/export", stream=True)

    def copy(out):
        while True:
            d = resp.read_some()
            if not d:
                break
            out.write(d)
    try:
        if a.output:
            from berth.cli.output import write_atomically
            write_atomically(a.output, what, copy)
        else:
            copy(sys.stdout.buffer)
    except OSError as e:
        raise BerthError(f"{what}: {e.strerror or e}") from None
    finally:
        resp.close()
    return 0
