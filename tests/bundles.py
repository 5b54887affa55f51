"""Build OCI bundles with a busybox-static rootfs, for the tests and benchmarks."""

import json
import os
import shutil

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "echo", "id", "hostname", "sleep", "ps", "mount", "grep", "true", "false",
           "pwd", "env", "readlink", "stat", "test", "touch", "mkdir", "wc", "head", "ulimit", "kill",
           "domainname", "umask", "nproc", "whoami", "printf", "tr", "cut", "awk", "sed", "rm", "ln"]


def make_rootfs(path):
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for a in APPLETS:
        link = os.path.join(path, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    return path


def default_config(args, terminal=False):
    from berth.runtime.spec import default_spec
    c = default_spec()
    c["process"]["args"] = list(args)
    c["process"]["terminal"] = terminal
    c["root"]["readonly"] = False
    return c


def make_bundle(path, args, config=None, terminal=False):
    os.makedirs(path, exist_ok=True)
    make_rootfs(os.path.join(path, "rootfs"))
    c = config if config is not None else default_config(args, terminal)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    return path
