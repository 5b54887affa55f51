"""Private engines for the image benchmarks (bench/pull.py, bench/list_info.py).

- the bench image: a debootstrap minbase bookworm rootfs (~200 MB uncompressed), imported by
  berth and pushed once into a registry storage dir cached under bench/out/ (gitignored);
- a private berthd and Debian's docker-registry on 127.0.0.1 (tests/daemon_fixtures.py);
- podman with its own --root/--runroot, containers.conf (cgroupfs, events to a file, tmp and
  network dirs private) under the work dir;
- a private containerd (own root, state, socket; CRI disabled) driven by ctr.

Everything lives under one temp work dir; Engines.close() stops the daemons, unmounts what is
mounted under it and removes it.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
DATA = os.path.join(REPO, "tests", "data")
sys.path.insert(0, os.path.join(REPO, "tests"))
from daemon_fixtures import BERTH, BERTHD, Daemon, Registry, host_dirs_containerd_makes, missing_dirs, remove_made, wait_for

IMAGE_PATH = "bench/minbase:1"          # repository:tag inside the registry
ROOTFS = os.path.join(OUT, "minbase-rootfs")
ROOTFS_TAR = os.path.join(OUT, "minbase.tar")
REGISTRY_DATA = os.path.join(OUT, "registry-data")
REGISTRY_DONE = os.path.join(OUT, "registry-data.done")
MIRROR = "http://deb.debian.org/debian"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=900, env=None, quiet=True):
    p = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
    return p


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def du(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for n in files:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


# --- the bench image (built once) ---

def build_rootfs():
    """bench/out/minbase-rootfs: debootstrap minbase, or ~200 MB of the host's /usr as a fallback."""
    if os.path.isdir(ROOTFS) and os.path.exists(os.path.join(ROOTFS, ".bench-source")):
        return open(os.path.join(ROOTFS, ".bench-source")).read().strip()
    os.makedirs(OUT, exist_ok=True)
    tmp = ROOTFS + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if not shutil.which("debootstrap"):
        run(["apt-get", "install", "-y", "debootstrap"], check=False)
    source = None
    if shutil.which("debootstrap"):
        log("debootstrap --variant=minbase bookworm ...")
        p = run(["debootstrap", "--variant=minbase", "bookworm", tmp, MIRROR], check=False, timeout=1800)
        if p.returncode == 0:
            source = f"debootstrap --variant=minbase bookworm {MIRROR}"
        else:
            log("debootstrap failed, falling back to the host's /usr:", p.stderr.decode(errors="replace")[-500:])
            shutil.rmtree(tmp, ignore_errors=True)
    if source is None:
        _copy_host_usr(tmp, 200 << 20)
        source = "fallback: ~200 MB copied from the host's /usr/lib and /usr/share"
    with open(os.path.join(tmp, ".bench-source"), "w") as f:
        f.write(source + "\n")
    os.rename(tmp, ROOTFS)
    return source


def _copy_host_usr(dest, budget):
    """Regular files of /usr/lib (up to half the budget), then /usr/share, up to ``budget`` bytes."""
    used = 0
    for top, limit in (("/usr/lib", budget // 2), ("/usr/share", budget)):
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            rel = os.path.relpath(dirpath, "/")
            os.makedirs(os.path.join(dest, rel), exist_ok=True)
            for n in sorted(files):
                src = os.path.join(dirpath, n)
                if os.path.islink(src) or not os.path.isfile(src):
                    continue
                shutil.copy2(src, os.path.join(dest, rel, n))
                used += os.lstat(src).st_size
                if used >= limit:
                    break
            if used >= limit:
                break


def build_image():
    """Returns (source of the rootfs, uncompressed tar size). The registry storage under
    bench/out/registry-data then holds bench/minbase:1 (gzip layer made by `berth import`)."""
    source = build_rootfs()
    if not os.path.exists(ROOTFS_TAR):
        # device nodes out: image rootfs tars carry an empty /dev
        run(["tar", "--numeric-owner", "--xattrs", "--exclude=./dev/*", "--exclude=./.bench-source",
             "-C", ROOTFS, "-cf", ROOTFS_TAR + ".tmp", "."])
        os.rename(ROOTFS_TAR + ".tmp", ROOTFS_TAR)
    if not os.path.exists(REGISTRY_DONE):
        shutil.rmtree(REGISTRY_DATA, ignore_errors=True)
        work = tempfile.mkdtemp(prefix="berth-bench-build-")
        d = reg = None
        try:
            reg = Registry(os.path.join(work, "registry"))
            reg.data = REGISTRY_DATA
            os.makedirs(REGISTRY_DATA)
            with open(reg.config, "w") as f:
                f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                        f"    rootdirectory: {REGISTRY_DATA}\nhttp:\n  addr: {reg.addr}\n")
            reg.start()
            d = Daemon(os.path.join(work, "berthd")).start()
            ref = f"{reg.addr}/{IMAGE_PATH}"
            log(f"berth import {ROOTFS_TAR} {ref}; berth push")
            d.berth("import", ROOTFS_TAR, ref, check=True, timeout=900)
            d.berth("push", ref, check=True, timeout=900)
        finally:
            if d:
                d.cleanup()
            if reg:
                reg.stop()
            shutil.rmtree(work, ignore_errors=True)
        open(REGISTRY_DONE, "w").close()
    return source, os.path.getsize(ROOTFS_TAR)


# --- the engines ---

class Podman:
    # podman 4.3 (rootful) makes these whatever its config says; removed on close if it made them
    RUN_DIRS = ("/run/containers", "/run/containers/networks")

    def __init__(self, base):
        self.base = base
        self.made = missing_dirs(self.RUN_DIRS)
        for d in ("root", "runroot", "tmp", "networks", "volumes", "static"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        self.conf = os.path.join(base, "containers.conf")
        with open(self.conf, "w") as f:
            # runc: podman 4.3 prefers crun when it is installed, and crun refuses cgroup v1 hybrid
            f.write(f'[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                    f'events_logfile_path = "{base}/events.log"\ntmp_dir = "{base}/tmp"\n'
                    f'volume_path = "{base}/volumes"\nstatic_dir = "{base}/static"\n'
                    f'[network]\nnetwork_config_dir = "{base}/networks"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf, TMPDIR=os.path.join(base, "tmp"))
        self.cmd = ["podman", "--root", os.path.join(base, "root"), "--runroot", os.path.join(base, "runroot"),
                    "--storage-driver", "overlay"]

    def __call__(self, *args, check=True, timeout=900):
        return run(self.cmd + list(args), check=check, timeout=timeout, env=self.env)

    def clear(self):
        self("rmi", "-a", "-f")
        left = du(os.path.join(self.base, "root", "overlay"))
        if left > (4 << 20):
            raise RuntimeError(f"podman still holds {left} bytes of layers after rmi -a")

    def close(self):
        self("rmi", "-a", "-f", check=False)
        remove_made(self.made)


class Containerd:
    NS = "bench"

    def __init__(self, base):
        self.base = base
        self.sock = os.path.join(base, "containerd.sock")
        os.makedirs(base, exist_ok=True)
        cfg = os.path.join(base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.sock}"\n'
                    f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base}/opt"\n')
        self.made = host_dirs_containerd_makes(self.NS)  # under /run/containerd: removed at close
        self.log = open(os.path.join(base, "containerd.log"), "w")  # noqa: SIM115 (open while containerd runs)
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: os.path.exists(self.sock) and self("version", check=False).returncode == 0, 30,
                 "containerd to listen")

    def cmd(self, *args):
        return ["ctr", "-a", self.sock, "-n", self.NS, *args]

    def __call__(self, *args, check=True, timeout=900):
        return run(self.cmd(*args), check=check, timeout=timeout)

    def clear(self):
        for ref in self("images", "ls", "-q").stdout.decode().split():
            self("images", "rm", "--sync", ref)
        left = self("content", "ls", "-q").stdout.decode().split()
        if left:
            raise RuntimeError(f"containerd kept content after images rm --sync: {left}")
        snaps = self("snapshots", "ls").stdout.decode().strip().splitlines()[1:]
        if snaps:
            raise RuntimeError(f"containerd kept snapshots: {snaps}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        remove_made(self.made)


class Engines:
    """A registry serving the cached bench image, a private berthd (or several: {label: launcher},
    each its own daemon, to compare builds), podman and containerd (each optional)."""

    def __init__(self, containerd=True, podman=True, berthds=None):
        self.work = tempfile.mkdtemp(prefix="berth-bench-")
        self.registry = self.berthd = self.podman = self.containerd = None
        self.berthds = {}
        try:
            self.registry = Registry(os.path.join(self.work, "registry"))
            with open(self.registry.config, "w") as f:
                f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                        f"    rootdirectory: {REGISTRY_DATA}\n  maintenance:\n    uploadpurging:\n"
                        f"      enabled: false\n    readonly:\n      enabled: true\n"
                        f"http:\n  addr: {self.registry.addr}\n")
            self.registry.start()
            self.ref = f"{self.registry.addr}/{IMAGE_PATH}"
            import daemon_fixtures
            for i, (label, launcher) in enumerate((berthds or {"berth": BERTHD}).items()):
                daemon_fixtures.BERTHD = launcher  # read by Daemon.start
                self.berthds[label] = Daemon(os.path.join(self.work, f"berthd{i}")).start()
            daemon_fixtures.BERTHD = BERTHD
            self.berthd = next(iter(self.berthds.values()))
            if podman and shutil.which("podman"):
                self.podman = Podman(os.path.join(self.work, "podman"))
            if containerd and shutil.which("containerd") and shutil.which("ctr"):
                self.containerd = Containerd(os.path.join(self.work, "containerd"))
        except BaseException:
            self.close()
            raise

    def berth(self, *args, check=True, timeout=900, daemon=None):
        d = daemon or self.berthd
        return run([BERTH, "-H", d.host, *args], check=check, timeout=timeout, env=d.env())

    def berth_clear(self, daemon=None):
        """Every image removed and the content store and snapshots garbage-collected."""
        d = daemon or self.berthd
        for ref in self.berth("images", "-q", "--no-trunc", daemon=d).stdout.decode().split():
            self.berth("rmi", "-f", ref, check=False, daemon=d)
        self.berth("image", "prune", "-a", "-f", daemon=d)
        left = du(d.root)
        if left > (4 << 20):
            raise RuntimeError(f"berthd still holds {left} bytes under {d.root} after rmi + prune")

    def close(self):
        errors = []
        for what in (self.podman, self.containerd):
            if what is not None:
                try:
                    what.close()
                except Exception as e:  # noqa: BLE001 (keep cleaning up)
                    errors.append(e)
        for d in self.berthds.values():
            d.cleanup()
        if self.registry is not None:
            self.registry.stop()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(self.work)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)
        if errors:
            log("cleanup errors:", errors)


def descendants(root_pid):
    """The pids below root_pid (not root_pid itself)."""
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [root_pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.decode(errors='replace')[-2000:]}")
    return dt
