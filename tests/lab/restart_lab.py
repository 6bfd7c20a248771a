#!/usr/bin/env python3
"""A sensor restarted in the middle of a live reverse SSH tunnel (issue 11,
item 4), with the real tools in two namespaces.

The client namespace (10.84.0.10, the cluster) opens `ssh -N -R` to the
server namespace (10.84.0.20, the Internet) with keepalives every second;
the server logs back in through the forward. The sensor captures the
client's interface with `--state-file`. It is stopped with SIGTERM in the
middle of the tunnel, started again with the same state file, the server
logs in through the tunnel once more, and the second sensor is stopped.

    restart_lab.py OUTDIR EGRESSWATCH_BINARY RULES_DIR

Writes OUTDIR/first.eve.json, OUTDIR/second.eve.json, the logs, and
OUTDIR/result.json ({"error": null | "...", "state_bytes": N}). Every
namespace and process it starts is gone when it returns.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

NS_C, NS_S = "ewrs-c", "ewrs-s"
ADDR_C, ADDR_S = "10.84.0.10", "10.84.0.20"
WEB = "127.0.0.1:9598"


def log(msg):
    print(f"restart-lab: {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, timeout=30):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()[:400]}")
    return r


def ns(name, *argv):
    return ["ip", "netns", "exec", name, *argv]


class Lab:
    def __init__(self, work, binary, rules):
        self.work, self.binary, self.rules = work, binary, rules
        self.procs = []

    def up(self):
        self.down()
        for n in (NS_C, NS_S):
            run(["ip", "netns", "add", n])
            run(ns(n, "ip", "link", "set", "lo", "up"))
        run(["ip", "link", "add", "ewrs0", "netns", NS_C, "type", "veth", "peer", "ewrs1", "netns", NS_S])
        for n, dev, addr in ((NS_C, "ewrs0", ADDR_C), (NS_S, "ewrs1", ADDR_S)):
            run(ns(n, "ip", "addr", "add", f"{addr}/24", "dev", dev))
            run(ns(n, "ip", "link", "set", dev, "up"))
            for feature in ("tso", "gso", "gro"):
                run(ns(n, "ethtool", "-K", dev, feature, "off"), check=False)

    def down(self):
        for p in reversed(self.procs):
            self.stop(p)
        self.procs = []
        for n in (NS_C, NS_S):
            run(["ip", "netns", "del", n], check=False)

    def spawn(self, n, argv, name):
        out = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(ns(n, *argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(3)
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def wait_for(self, what, probe, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if probe():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")

    def listening(self, n, port):
        return bool(run(ns(n, "ss", "-Hltn", f"sport = :{port}"), check=False).stdout.strip())

    def keys(self):
        w = self.work
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{w}/host_key"])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{w}/client_key"])
        shutil.copy(f"{w}/client_key.pub", f"{w}/authorized_keys")
        os.chmod(f"{w}/authorized_keys", 0o600)

    def sshd(self, n, listen, name):
        w = self.work
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        argv = ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-o", f"ListenAddress={listen}:22",
                "-o", f"HostKey={w}/host_key", "-o", f"AuthorizedKeysFile={w}/authorized_keys",
                "-o", "PermitRootLogin=prohibit-password", "-o", "StrictModes=no", "-o", "UsePAM=no",
                "-o", f"PidFile={w}/{name}.pid", "-o", "PasswordAuthentication=no", "-o", "AllowTcpForwarding=yes"]
        self.spawn(n, argv, name)
        self.wait_for(f"{name} to listen", lambda: self.listening(n, 22))

    def ssh(self, host, port, *extra):
        w = self.work
        return ["ssh", "-F", "/dev/null", "-i", f"{w}/client_key", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-p", str(port), *extra, f"root@{host}"]

    def sensor(self, name):
        argv = [self.binary, "--log-level", "info", "capture", "--interface", "ewrs0",
                "--rules", self.rules, "--eve", os.path.join(self.work, f"{name}.eve.json"),
                "--state-file", os.path.join(self.work, "state"), "--web.listen-address", WEB]
        p = self.spawn(NS_C, argv, name)
        ready = ns(NS_C, "curl", "-sf", "--max-time", "1", f"http://{WEB}/-/ready")
        self.wait_for(f"{name} ready", lambda: run(ready, check=False).returncode == 0)
        return p

    def login_back(self, tag):
        """The server logs in through the forward and runs a command."""
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        r = run(ns(NS_S, *self.ssh("127.0.0.1", 2222), "uname", "-a"), check=False, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"login back ({tag}) failed: {r.stderr.strip()[:300]}")


def scenario(lab):
    lab.up()
    lab.keys()
    lab.sshd(NS_S, ADDR_S, "sshd-s")
    lab.sshd(NS_C, "127.0.0.1", "sshd-c")
    first = lab.sensor("first")
    tunnel = lab.spawn(NS_C, lab.ssh(ADDR_S, 22, "-N", "-R", "2222:127.0.0.1:22", "-o", "ExitOnForwardFailure=yes",
                                     "-o", "ServerAliveInterval=1"), "tunnel")
    lab.wait_for("the forward on the server", lambda: lab.listening(NS_S, 2222))
    time.sleep(1.0)
    lab.login_back("before the restart")
    time.sleep(2.0)
    log("restarting the sensor")
    if lab.stop(first) != 0:
        raise RuntimeError("the first sensor did not exit cleanly")
    state = os.path.join(lab.work, "state")
    if not os.path.exists(state):
        raise RuntimeError("the first sensor wrote no state file")
    size = os.path.getsize(state)
    second = lab.sensor("second")
    time.sleep(2.0)
    lab.login_back("after the restart")
    time.sleep(2.0)
    if tunnel.poll() is not None:
        raise RuntimeError("the tunnel ended early")
    if lab.stop(second) != 0:
        raise RuntimeError("the second sensor did not exit cleanly")
    lab.stop(tunnel)
    return size


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    work, binary, rules = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    lab = Lab(os.path.abspath(work), binary, rules)
    result = {"error": None, "state_bytes": 0}
    try:
        result["state_bytes"] = scenario(lab)
    except Exception as e:  # reported by the Rust test
        result["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {result['error']}")
    finally:
        lab.down()
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f)
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
