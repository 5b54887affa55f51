"""--help of berth's commands, laid out as docker's: the usage, the description, then each
flag with its type and what it does (docker's words). Flags declared without help= get it
from the table below, by command then by flag. Imported only for --help."""

_FMT = "Format output using a custom template ('json' or a Go template)"
_FILTER = "Filter output based on conditions provided"

# (command's last word, flag) -> help; then (None, flag)
HELP = {
    # ps
    ("ps", "--all"): "Show all containers (default shows just running)",
    ("ls", "--all"): "Show all containers (default shows just running)",
    ("ps", "--quiet"): "Only display container IDs",
    ("ps", "--size"): "Display total file sizes",
    ("ls", "--size"): "Display total file sizes",
    ("ps", "--last"): "Show n last created containers (includes all states) (default -1)",
    ("ls", "--last"): "Show n last created containers (includes all states) (default -1)",
    ("ps", "--latest"): "Show the latest created container (includes all states)",
    ("ls", "--latest"): "Show the latest created container (includes all states)",
    # images
    ("images", "--all"): "Show all images (default hides intermediate images)",
    ("images", "--quiet"): "Only show image IDs",
    ("images", "--digests"): "Show digests",
    ("images", "--tree"): "List multi-platform images as a tree (refused: not supported)",
    ("history", "--quiet"): "Only show image IDs",
    ("history", "--human"): "Print sizes and dates in human readable format (default true)",
    ("rmi", "--force"): "Force removal of the image",
    ("rm", "--force"): "Force removal of the image",
    ("rmi", "--no-prune"): "Do not delete untagged parents",
    ("pull", "--all-tags"): "Download all tagged images in the repository",
    ("pull", "--quiet"): "Suppress verbose output",
    ("push", "--all-tags"): "Push all tags of an image to the repository",
    ("push", "--quiet"): "Suppress verbose output",
    ("save", "--output"): "Write to a file, instead of STDOUT",
    ("load", "--input"): "Read from tar archive file, instead of STDIN",
    ("load", "--quiet"): "Suppress the load output",
    ("import", "--change"): "Apply Dockerfile instruction to the created image",
    ("import", "--message"): "Set commit message for imported image",
    ("inspect", "--size"): "Display total file sizes if the type is container",
    ("inspect", "--type"): "Return JSON for specified type",
    # containers
    ("start", "--attach"): "Attach STDOUT/STDERR and forward signals",
    ("start", "--interactive"): "Attach container's STDIN",
    ("start", "--checkpoint"): "Restore from this checkpoint (refused: no checkpoints)",
    ("start", "--checkpoint-dir"): "Use a custom checkpoint storage directory (refused: no checkpoints)",
    ("stop", "--signal"): "Signal to send to the container",
    ("restart", "--signal"): "Signal to send to the container",
    ("kill", "--signal"): "Signal to send to the container",
    ("stop", "--timeout"): "Seconds to wait before killing the container",
    ("restart", "--timeout"): "Seconds to wait before killing the container",
    ("logs", "--follow"): "Follow log output",
    ("logs", "--tail"): 'Number of lines to show from the end of the logs (default "all")',
    ("logs", "--since"): 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)',
    ("logs", "--until"): 'Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)',
    ("logs", "--timestamps"): "Show timestamps",
    ("logs", "--details"): "Show extra details provided to logs",
    ("exec", "--detach"): "Detached mode: run command in the background",
    ("exec", "--privileged"): "Give extended privileges to the command",
    ("exec", "--user"): 'Username or UID (format: "<name|uid>[:<group|gid>]")',
    ("attach", "--no-stdin"): "Do not attach STDIN",
    ("attach", "--sig-proxy"): "Proxy all received signals to the process (default true)",
    ("events", "--since"): "Show all events created since timestamp",
    ("events", "--until"): "Stream events until this timestamp",
    ("stats", "--all"): "Show all containers (default shows just running)",
    ("stats", "--no-stream"): "Disable streaming stats and only pull the first result",
    ("stats", "--no-trunc"): "Do not truncate output",
    ("cp", "--archive"): "Archive mode (copy all uid/gid information)",
    ("cp", "--follow-link"): "Always follow symbol link in SRC_PATH",
    ("cp", "--quiet"): "Suppress progress output during copy",
    ("prune", "--force"): "Do not prompt for confirmation",
    ("prune", "--all"): "Remove all unused images (volumes: all unused volumes), not just dangling (anonymous) ones",
    # system
    ("login", "--password"): "Password or Personal Access Token (PAT)",
    ("login", "--password-stdin"): "Take the Password or Personal Access Token (PAT) from stdin",
    ("login", "--username"): "Username",
    # networks
    ("create", "--attachable"): "Enable manual container attachment",
    ("create", "--driver"): 'Driver to manage the Network (default "bridge"; volumes: "local")',
    ("create", "--gateway"): "IPv4 or IPv6 Gateway for the master subnet",
    ("create", "--internal"): "Restrict external access to the network",
    ("create", "--ip-range"): "Allocate container ip from a sub-range",
    ("create", "--ipam-driver"): 'IP Address Management Driver (default "default")',
    ("create", "--ipam-opt"): "Set IPAM driver specific options",
    ("create", "--ipv6"): "Enable or disable IPv6 networking",
    ("create", "--label"): "Set metadata on a network (or volume)",
    ("create", "--opt"): "Set driver specific options",
    ("create", "--subnet"): "Subnet in CIDR format that represents a network segment",
    ("create", "--name"): "Specify volume name",
    ("ls", "--quiet"): "Only display IDs (containers, networks) or names (volumes)",
    ("rm", "--volumes"): "Remove anonymous volumes associated with the container",
    ("connect", "--alias"): "Add network-scoped alias for the container",
    ("connect", "--ip"): "IPv4 address (e.g., 172.30.100.104)",
    ("disconnect", "--force"): "Force the container to disconnect from a network",
    ("inspect", "--verbose"): "Verbose output for diagnostics",
    # defaults
    ("search", "--limit"): "Max number of search results",
    ("search", "--format"): "Pretty-print search using a Go template",
    (None, "--format"): _FMT,
    (None, "--filter"): _FILTER,
    (None, "--no-trunc"): "Don't truncate output",
    (None, "--quiet"): "Only display IDs",
    (None, "--force"): "Force the removal",
    (None, "--platform"): "Set platform if server is multi-platform capable",
    (None, "--disable-content-trust"): "Skip image verification (default true)",
    (None, "--detach-keys"): "Override the key sequence for detaching a container",
    (None, "--detach"): "Run container in background and print container ID",
    (None, "--interactive"): "Keep STDIN open even if not attached",
    (None, "--tty"): "Allocate a pseudo-TTY",
    (None, "--env"): "Set environment variables",
    (None, "--env-file"): "Read in a file of environment variables",
    (None, "--workdir"): "Working directory inside the container",
    (None, "--user"): "Username or UID (format: <name|uid>[:<group|gid>])",
    (None, "--privileged"): "Give extended privileges to this container",
    (None, "--signal"): "Signal to send to the container",
    (None, "--timeout"): "Seconds to wait before killing the container",
    (None, "--time"): "Seconds to wait before killing the container",
    (None, "--network"): "Connect a container to a network",
    (None, "--net"): "Connect a container to a network",
    (None, "--publish"): "Publish a container's port(s) to the host",
    (None, "--publish-all"): "Publish all exposed ports to random ports",
    (None, "--expose"): "Expose a port or a range of ports",
    (None, "--ip"): "IPv4 address (e.g., 172.30.100.104)",
    (None, "--mac-address"): "Container MAC address (e.g., 92:d0:c6:0a:29:33)",
    (None, "--network-alias"): "Add network-scoped alias for the container",
    (None, "--net-alias"): "Add network-scoped alias for the container",
    (None, "--dns"): "Set custom DNS servers",
    (None, "--dns-search"): "Set custom DNS search domains",
    (None, "--dns-option"): "Set DNS options",
    (None, "--dns-opt"): "Set DNS options",
    (None, "--add-host"): "Add a custom host-to-IP mapping (host:ip)",
    (None, "--label"): "Set metadata",
    (None, "--all"): "Show all",
    (None, "--size"): "Display total file sizes",
    (None, "--output"): "Write to a file, instead of STDOUT",
    (None, "--input"): "Read from a file, instead of STDIN",
    (None, "--name"): "Assign a name",
    (None, "--driver"): "Driver to use",
    (None, "--opt"): "Set driver specific options",
    (None, "--type"): "Return JSON for specified type",
    (None, "--message"): "Set a message",
    (None, "--change"): "Apply Dockerfile instruction to the created image",
    (None, "--attach"): "Attach to STDIN, STDOUT or STDERR",
    (None, "--latest"): "Show the latest created container (includes all states)",
    (None, "--last"): "Show n last created containers (includes all states) (default -1)",
    (None, "--since"): "Show since timestamp",
    (None, "--until"): "Show until timestamp",
    (None, "--follow"): "Follow output",
    (None, "--tail"): "Number of lines to show from the end",
    (None, "--timestamps"): "Show timestamps",
    (None, "--no-stdin"): "Do not attach STDIN",
    (None, "--sig-proxy"): "Proxy received signals to the process (default true)",
    (None, "--verbose"): "Verbose output",
    (None, "--digests"): "Show digests",
    (None, "--human"): "Print sizes and dates in human readable format (default true)",
    (None, "--no-prune"): "Do not delete untagged parents",
    (None, "--all-tags"): "All tagged images in the repository",
    (None, "--archive"): "Archive mode (copy all uid/gid information)",
    (None, "--follow-link"): "Always follow symbol link in SRC_PATH",
    (None, "--no-stream"): "Disable streaming stats and only pull the first result",
    (None, "--password"): "Password",
    (None, "--password-stdin"): "Take the password from stdin",
    (None, "--username"): "Username",
    (None, "--subnet"): "Subnet in CIDR format that represents a network segment",
    (None, "--gateway"): "IPv4 or IPv6 Gateway for the master subnet",
    (None, "--ip-range"): "Allocate container ip from a sub-range",
    (None, "--internal"): "Restrict external access to the network",
    (None, "--ipv6"): "Enable or disable IPv6 networking",
    (None, "--ipam-driver"): 'IP Address Management Driver (default "default")',
    (None, "--ipam-opt"): "Set IPAM driver specific options",
    (None, "--attachable"): "Enable manual container attachment",
    (None, "--alias"): "Add network-scoped alias for the container",
    (None, "--ip6"): "IPv6 address (e.g., 2001:db8::33)",
    (None, "--link"): "Add link to another container",
    (None, "--link-local-ip"): "Add a link-local address for the container",
    (None, "--driver-opt"): "driver options for the network",
    (None, "--gw-priority"): "Highest gw-priority provides the default gateway. Accepts positive and negative values.",
    (None, "--aux-address"): "Auxiliary IPv4 or IPv6 addresses used by Network driver",
    (None, "--config-from"): "The network from which to copy the configuration",
    (None, "--config-only"): "Create a configuration only network",
    (None, "--ingress"): "Create swarm routing-mesh network",
    (None, "--ipv4"): "Enable or disable IPv4 address assignment",
    (None, "--scope"): "Control the network's scope",
}


def lookup(cmd, names, given=None):
    if given:
        return given
    last = (cmd or "").split()[-1] if cmd else ""
    long = next((n for n in names if n.startswith("--")), names[0])
    return HELP.get((last, long)) or HELP.get((None, long)) or ""


def _type_word(a):
    if a.action == "store_true":
        return ""
    if a.action == "append":
        return "list"
    t = a.type
    if t is int:
        return "int"
    if t is float:
        return "decimal"
    return "string"


def render(p):
    """The --help text of a berth.cli.args.Parser, as docker lays it out."""
    import textwrap
    pos = [a for a in p.args if a.positional]
    usage = " ".join(_pos_word(a) for a in pos)
    opts = [a for a in p.args if not a.positional and not a.kw.get("hidden")]
    out = [f"\nUsage:  berth {p.cmd} [OPTIONS]{' ' + usage if usage else ''}\n"]
    if p.description:
        out.append(p.description[:1].upper() + p.description[1:] + "\n")
    if True:  # docker lists --help even when a command has no other flag
        out.append("Options:")
        rows = []
        for a in opts:
            short = next((n for n in a.names if not n.startswith("--")), None)
            long = next((n for n in a.names if n.startswith("--")), None)
            aliases = [n for n in a.names if n.startswith("--") and n != long]
            spec = (f"{short}, " if short else "    ") + (long or "")
            word = _type_word(a)
            if word:
                spec += " " + word
            text = lookup(p.cmd, a.names, a.kw.get("help"))
            if a.choices:
                text += f" ({', '.join(map(str, a.choices))})"
            if aliases:
                text += f" (also {', '.join(aliases)})"
            rows.append((spec, text))
        rows.append(("    --help", "Print usage"))
        width = max(len(s) for s, _ in rows) + 3
        for spec, text in rows:
            lines = textwrap.wrap(text, max(30, 100 - width - 2)) or [""]
            out.append(f"  {spec.ljust(width)}{lines[0]}")
            out += [" " * (width + 2) + line for line in lines[1:]]
    return "\n".join(out) + "\n"


def _pos_word(a):
    name = a.dest.upper()
    if a.nargs == "...":
        return f"[{name}...]"
    if a.nargs == "+":
        return f"{name} [{name}...]"
    if a.nargs in ("?", "*"):
        return f"[{name}]"
    return name
