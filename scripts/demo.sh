#!/usr/bin/env bash
# The demo: build a busybox bundle from the host's busybox-static and run it with berth-runc,
# showing the container's hostname, that its shell is PID 1, and the mounts it sees.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNC=${BERTH_RUNC:-$PWD/.venv/bin/berth-runc}
WORK=$(mktemp -d /tmp/berth-demo.XXXXXX)
ROOT=$WORK/state
trap '"$RUNC" --root "$ROOT" delete -f demo >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

.venv/bin/python - "$WORK/bundle" <<'PY'
import sys
sys.path.insert(0, "tests")
from bundles import make_bundle, default_config
script = ("echo \"hostname: $(hostname)\"; echo \"my pid: $$\"; echo 'mounts:'; "
          "cat /proc/self/mountinfo | while read -r id parent dev root mnt opts rest; do echo \"  $mnt ($opts)\"; done")
c = default_config(["sh", "-c", script])
c["hostname"] = "berth-demo"
make_bundle(sys.argv[1], None, config=c)
PY

echo "+ berth-runc run -b $WORK/bundle demo"
"$RUNC" --root "$ROOT" run -b "$WORK/bundle" demo
