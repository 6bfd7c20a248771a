"""Two namespaces joined by one veth pair, offloads off so segments are
wire-sized: the topology of tlsshape_lab.py and restart_lab.py, with the
tools they share (processes started in a namespace and stopped with their
group, an OpenSSH server and client with throwaway keys). Standard library
only.
"""

import os
import shutil
import signal
import subprocess
import time


def run(argv, check=True, timeout=30):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()[:400]}")
    return r


def ns(name, *argv):
    return ["ip", "netns", "exec", name, *argv]


def ensure_privsep():
    """sshd's privilege separation directory, needed at every connection
    (a system ssh.service or another lab run on the machine may remove it;
    it is left in place here, as the openssh-server package leaves it)."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


class TwoHosts:
    """Namespaces `names` (client, server) with addresses `addrs` on the
    veth ends `devs`; logs and keys go to `work`."""

    def __init__(self, work, names, addrs, devs):
        self.work = work
        self.names, self.addrs, self.devs = names, addrs, devs
        self.procs = []

    def up(self):
        self.down()
        for n in self.names:
            run(["ip", "netns", "add", n])
            run(ns(n, "ip", "link", "set", "lo", "up"))
        (c, s), (dc, ds) = self.names, self.devs
        run(["ip", "link", "add", dc, "netns", c, "type", "veth", "peer", ds, "netns", s])
        for n, dev, addr in zip(self.names, self.devs, self.addrs):
            run(ns(n, "ip", "addr", "add", f"{addr}/24", "dev", dev))
            run(ns(n, "ip", "link", "set", dev, "up"))
            for feature in ("tso", "gso", "gro", "tx", "rx"):
                run(ns(n, "ethtool", "-K", dev, feature, "off"), check=False)

    def down(self):
        for p in reversed(self.procs):
            self.stop(p)
        self.procs = []
        for n in self.names:
            run(["ip", "netns", "del", n], check=False)

    def spawn(self, n, argv, name, stdin=None):
        out = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(ns(n, *argv), stdout=out, stderr=subprocess.STDOUT, stdin=stdin or subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, timeout=3):
        """Stops `p` and its group (SIGTERM, then SIGKILL); its exit code."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(3)
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def listening(self, n, port):
        return bool(run(ns(n, "ss", "-Hltn", f"sport = :{port}"), check=False).stdout.strip())

    def wait_listen(self, n, port, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.listening(n, port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listens on {n}:{port}")

    def ssh_keys(self):
        w = self.work
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{w}/host_key"])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{w}/client_key"])
        shutil.copy(f"{w}/client_key.pub", f"{w}/authorized_keys")
        os.chmod(f"{w}/authorized_keys", 0o600)

    def sshd(self, n, name, listen="127.0.0.1"):
        w = self.work
        argv = ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-o", f"ListenAddress={listen}:22",
                "-o", f"HostKey={w}/host_key", "-o", f"AuthorizedKeysFile={w}/authorized_keys",
                "-o", "PermitRootLogin=prohibit-password", "-o", "StrictModes=no", "-o", "UsePAM=no",
                "-o", f"PidFile={w}/{name}.pid", "-o", "PasswordAuthentication=no",
                "-o", "AllowTcpForwarding=yes"]
        ensure_privsep()
        p = self.spawn(n, argv, name)
        try:
            self.wait_listen(n, 22)
        except RuntimeError as e:
            with open(os.path.join(self.work, f"{name}.log"), errors="replace") as f:
                raise RuntimeError(f"{e}: sshd says {f.read()[-300:]!r}") from None
        return p

    def ssh_argv(self, port=22, host="127.0.0.1", extra=()):
        w = self.work
        return ["ssh", "-F", "/dev/null", "-i", f"{w}/client_key", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-p", str(port), *extra, f"root@{host}"]
