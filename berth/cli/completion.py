"""`berth completion bash|zsh|fish`: shell completion for commands, flags, and image, container
and namespace names (asked of berthd when completing)."""

import sys

from berth.errors import BerthError

FLAGS = {
    "pull": "-q --quiet --platform", "push": "-q --quiet", "images": "-q --quiet -a --all --digests --no-trunc --filter --format",
    "rmi": "-f --force --no-prune", "tag": "", "history": "--no-trunc -q --quiet -H --human --format",
    "save": "-o --output --platform", "load": "-i --input -q --quiet", "import": "-c --change -m --message --platform",
    "inspect": "-f --format --type", "login": "-u --username -p --password --password-stdin", "logout": "",
    "info": "-f --format", "version": "-f --format", "completion": "",
    "search": "-f --filter --format --limit --no-trunc",
}
IMAGE_ARGS = "push rmi tag history save inspect run create"
GLOBAL = "-H --host -n --namespace --debug --tls --tlsverify --tlscacert --tlscert --tlskey -v --version"


def _commands():
    from berth.cli.main import COMMANDS, GROUPS
    extra = ["run", "create", "start", "stop", "restart", "kill", "rm", "ps", "logs", "exec", "attach",
             "wait", "top", "stats", "cp", "port", "diff", "events", "pause", "unpause", "rename", "container", "volume"]
    return sorted(set(COMMANDS) | set(GROUPS) | set(extra)), {g: sorted(set(v)) for g, v in GROUPS.items()}


BASH = r'''# bash completion for berth: source <(berth completion bash)
# the -H/-n given on the line being completed are passed on ($_berth_g, set by _berth)
_berth_images() { berth "${_berth_g[@]}" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>'; }
_berth_containers() { berth "${_berth_g[@]}" ps -a --format '{{.Names}}' 2>/dev/null; }
_berth_namespaces() { berth "${_berth_g[@]}" namespace ls -q 2>/dev/null; }
_berth_volumes() { berth "${_berth_g[@]}" volume ls -q 2>/dev/null; }
_berth() {
    local cur prev words cword
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    local i cmd="" sub=""
    local -a _berth_g=()
    for ((i=1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -H|--host|-n|--namespace)
                [ -z "$cmd" ] && [ $((i+1)) -lt "$COMP_CWORD" ] && _berth_g+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}")
                ((i++)); continue;;
            --tlscacert|--tlscert|--tlskey) ((i++)); continue;;
            -*) continue;;
        esac
        if [ -z "$cmd" ]; then cmd="${COMP_WORDS[i]}"; elif [ -z "$sub" ]; then sub="${COMP_WORDS[i]}"; fi
    done
    case "$prev" in
        -n|--namespace) COMPREPLY=($(compgen -W "$(_berth_namespaces)" -- "$cur")); return;;
        -H|--host|-o|--output|-i|--input|--tlscacert|--tlscert|--tlskey) COMPREPLY=($(compgen -f -- "$cur")); return;;
    esac
    if [ -z "$cmd" ]; then
        if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "@GLOBAL@" -- "$cur"));
        else COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur")); fi
        return
    fi
    case "$cmd" in
@GROUPCASES@
    esac
    if [[ "$cur" == -* ]]; then
        case "$cmd" in
@FLAGCASES@
        esac
        return
    fi
    case "$cmd" in
        @IMAGECMDS@) COMPREPLY=($(compgen -W "$(_berth_images)" -- "$cur"));;
        start|stop|restart|kill|rm|logs|exec|attach|wait|top|stats|port|diff|pause|unpause|rename)
            COMPREPLY=($(compgen -W "$(_berth_containers)" -- "$cur"));;
        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"));;
        import|load) COMPREPLY=($(compgen -f -- "$cur"));;
    esac
}
complete -F _berth berth
'''


def bash():
    cmds, groups = _commands()
    group_cases = []
    for g, subs in groups.items():
        group_cases.append(f'        {g}) if [ -z "$sub" ]; then COMPREPLY=($(compgen -W "{" ".join(subs)}" -- "$cur")); return; '
                           f'fi; case "$sub" in rm|remove|inspect|history|push|tag|save) '
                           + ('COMPREPLY=($(compgen -W "$(_berth_namespaces)" -- "$cur"));; ' if g in ("namespace", "ns")
                              else 'COMPREPLY=($(compgen -W "$(_berth_volumes)" -- "$cur"));; ' if g == "volume"
                              else 'COMPREPLY=($(compgen -W "$(_berth_images)" -- "$cur"));; ')
                           + 'esac; return;;')
    flag_cases = [f'            {c}) COMPREPLY=($(compgen -W "{f}" -- "$cur"));;' for c, f in FLAGS.items() if f]
    return (BASH.replace("@GLOBAL@", GLOBAL).replace("@COMMANDS@", " ".join(cmds))
            .replace("@GROUPCASES@", "\n".join(group_cases)).replace("@FLAGCASES@", "\n".join(flag_cases))
            .replace("@IMAGECMDS@", "|".join(IMAGE_ARGS.split())))


def zsh():
    # zsh runs bash completion functions through bashcompinit
    return "# zsh completion for berth: source <(berth completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n" + bash()


def fish():
    cmds, groups = _commands()
    lines = ["# fish completion for berth: berth completion fish | source",
             "complete -c berth -f",
             f"complete -c berth -n '__fish_use_subcommand' -a '{' '.join(cmds)}'",
             "complete -c berth -s n -l namespace -x -a '(berth namespace ls -q 2>/dev/null)'",
             "complete -c berth -s H -l host -r"]
    for g, subs in groups.items():
        lines.append(f"complete -c berth -n '__fish_seen_subcommand_from {g}' -a '{' '.join(subs)}'")
    for c, f in FLAGS.items():
        for flag in f.split():
            if flag.startswith("--"):
                lines.append(f"complete -c berth -n '__fish_seen_subcommand_from {c}' -l {flag[2:]}")
    lines.append(f"complete -c berth -n '__fish_seen_subcommand_from {IMAGE_ARGS}' "
                 "-a \"(berth images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null)\"")
    return "\n".join(lines) + "\n"


def completion(ctx, argv, cmd):
    if not argv or argv[0] in ("-h", "--help"):  # as docker: the command's usage, status 0
        sys.stdout.write("usage: berth completion bash | zsh | fish\n")
        return 0
    if len(argv) != 1 or argv[0] not in ("bash", "zsh", "fish"):
        raise BerthError("completion: choose one shell: bash, zsh or fish")
    sys.stdout.write({"bash": bash, "zsh": zsh, "fish": fish}[argv[0]]())
    return 0
