"""containerd 1.6 with its CRI plugin as a peer: the engine berthd's CRI is compared with, and an
engine that drives berth-runc in runc's place (runc_binary)."""

import json
import os
import subprocess

from daemon_fixtures import DATA, host_dirs_containerd_makes, remove_made, unmount_under, wait_for

IMG = "busybox-layers:1"


class ContainerdCRI:
    """containerd with its CRI plugin, private root/state/socket/netns, a ptp pod network of its own."""

    def __init__(self, base, runc_binary=None):
        import random
        self.base = str(base)
        self.sock = os.path.join(self.base, "c.sock")
        cni = os.path.join(self.base, "cni")
        os.makedirs(cni)
        with open(os.path.join(cni, "10-ptp.conflist"), "w") as f:
            json.dump({"cniVersion": "0.4.0", "name": f"ctdcmp{random.getrandbits(16):04x}", "plugins": [
                {"type": "ptp", "ipMasq": False, "ipam": {
                    "type": "host-local", "dataDir": os.path.join(self.base, "ipam"),
                    "ranges": [[{"subnet": f"172.31.{random.randint(0, 255)}.0/24"}]]}}]}, f)
        cfg = os.path.join(self.base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    f'[grpc]\n  address = "{self.sock}"\n'
                    f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.base}/opt"\n'
                    f'[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n'
                    # this machine refuses the sandbox's oom_score_adj of -998
                    f'  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n'
                    f'  stream_server_address = "127.0.0.1"\n  stream_server_port = "0"\n'
                    f'  [plugins."io.containerd.grpc.v1.cri".cni]\n    bin_dir = "/usr/lib/cni"\n'
                    f'    conf_dir = "{cni}"\n')
            if runc_binary:  # the runc shim's runtime binary, and a root of its own for its state
                f.write('  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
                        '    runtime_type = "io.containerd.runc.v2"\n'
                        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
                        f'      BinaryName = "{runc_binary}"\n      Root = "{self.base}/runc"\n')
        self.made = host_dirs_containerd_makes("k8s.io")  # under /run/containerd: removed at close
        self.log = open(os.path.join(self.base, "containerd.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, 30, "containerd to listen")
        for args in (["images", "import", os.path.join(DATA, "pause.oci.tar")],
                     ["images", "import", "--all-platforms", os.path.join(DATA, "busybox-layers.oci.tar")],
                     ["images", "tag", IMG, "docker.io/library/" + IMG]):
            subprocess.run(["ctr", "-a", self.sock, "-n", "k8s.io", *args], check=True, capture_output=True)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        unmount_under(self.base)
        remove_made(self.made)
