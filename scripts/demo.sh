#!/usr/bin/env bash
# The demo: berth's main job in well under a minute, with no internet.
#   berthd up (its own root, state dir, socket, bridge and subnets under a temp dir),
#   an image made on the spot from the host's busybox-static, `berth run --rm`, a detached web
#   server with a published port fetched from the host, ps, logs, clean-up; berthd stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-$PWD/.venv/bin}
WORK=$(mktemp -d /tmp/berth-demo.XXXXXX)
SOCK=$WORK/berth.sock
export BERTH_HOST=unix://$SOCK
TAG=$(printf '%04x' $((RANDOM % 65536)))
BERTHD_PID=

step() { printf '\n\033[1m+ %s\033[0m\n' "$*"; }
berth() { echo "\$ berth $*"; "$BIN/berth" "$@"; }

# what the demo's berthd may leave that others share: the CNI plugins' chains (CNI-FORWARD,
# CNI-HOSTPORT-*) and the "berth" cgroup parents; they go at the end if the demo made them
CNI_CHAINS_BEFORE=$(iptables-save 2>/dev/null | grep -c '^:CNI-' || true)
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then HIERARCHIES=/sys/fs/cgroup/; else HIERARCHIES=$(ls -d /sys/fs/cgroup/*/); fi
CGROUPS_MADE=$(for h in $HIERARCHIES; do [ -L "${h%/}" ] || [ -e "${h}berth" ] || echo "${h}berth"; done)

cleanup() {
    set +e
    "$BIN/berth" rm -f demo-web >/dev/null 2>&1
    if [ -n "$BERTHD_PID" ] && kill -0 "$BERTHD_PID" 2>/dev/null; then
        kill -TERM "$BERTHD_PID"; wait "$BERTHD_PID" 2>/dev/null
    fi
    grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$WORK"
    if [ "$CNI_CHAINS_BEFORE" = 0 ]; then  # empty ones only
        "$BIN/python" -c "from berth.linux import iptables; iptables.remove_shared_cni_chains()" 2>/dev/null
    fi
    for d in $CGROUPS_MADE; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

step "berthd up: root, state and socket of its own under $WORK"
cat > "$WORK/berthd.toml" <<EOF
root = "$WORK/root"
state = "$WORK/state"
hosts = ["unix://$SOCK"]
cni_conf_dir = "$WORK/cni"
bridge = "bdemo$TAG"
bridge_subnet = "10.$((150 + RANDOM % 50)).$((RANDOM % 256)).0/24"
address_pool = "10.$((200 + RANDOM % 50)).$((RANDOM % 64 * 4)).0/22"
EOF
cat "$WORK/berthd.toml"
"$BIN/berthd" --config "$WORK/berthd.toml" >"$WORK/berthd.log" 2>&1 </dev/null &
BERTHD_PID=$!
for _ in $(seq 200); do
    [ -S "$SOCK" ] && "$BIN/berth" version >/dev/null 2>&1 && break
    kill -0 "$BERTHD_PID" 2>/dev/null || { cat "$WORK/berthd.log"; exit 1; }
    sleep 0.1
done
berth version

step "an image made on the spot: Debian's busybox-static imported as 'busybox'"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "busybox-static is not installed (apt-get install busybox-static)"; exit 1; }
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp" "$WORK/rootfs/www"
cp "$BUSYBOX" "$WORK/rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ -e "$WORK/rootfs/bin/$applet" ] || ln -s busybox "$WORK/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/rootfs/etc/passwd"
echo 'root:x:0:' > "$WORK/rootfs/etc/group"
echo '<h1>hello from a berth container</h1>' > "$WORK/rootfs/www/index.html"
echo "\$ tar -C rootfs -c . | berth import -c 'CMD [\"sh\"]' - busybox"
tar -C "$WORK/rootfs" -c . | "$BIN/berth" import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - busybox
berth images

step "a container that runs one command and is removed"
berth run --rm busybox echo "hello from busybox in a container"

step "a detached web server (busybox httpd) with a published port"
berth run -d --name demo-web -p 127.0.0.1::80 busybox httpd -f -v -p 80 -h /www
HOSTPORT=$("$BIN/berth" port demo-web 80 | head -1)
echo "published on $HOSTPORT"
step "fetched from the host: http://$HOSTPORT/"
fetch() {
    if command -v curl >/dev/null; then curl -fsS "http://$HOSTPORT/"
    elif command -v wget >/dev/null; then wget -qO- "http://$HOSTPORT/"
    else python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://$HOSTPORT/"
    fi
}
for i in $(seq 50); do fetch 2>/dev/null && break; [ "$i" = 50 ] && { fetch; exit 1; }; sleep 0.1; done

step "what runs, and what it logged"
berth ps
berth logs demo-web

step "clean-up"
berth rm -f demo-web
berth rmi busybox
echo "\$ kill -TERM berthd"
kill -TERM "$BERTHD_PID"; wait "$BERTHD_PID" || true
BERTHD_PID=
echo "done."
