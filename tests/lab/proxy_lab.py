#!/usr/bin/env python3
"""Proxy lab: real OpenSSH, curl and HTTPS through real proxies, captured
at a router, for tests/netns_proxy.rs.

    client ewpx-c 10.81.1.10 --- ewpx-r (captures on ewpxr0) --- 10.81.2.10 ewpx-x

ewpx-x runs sshd (22), tinyproxy (HTTP CONNECT, 8888), danted (SOCKS5,
1080), haproxy accepting PROXY v1 (2223) and v2 (2225) in front of its
sshd, and openssl s_server (HTTPS, 4443). ewpx-c runs its own sshd on
127.0.0.1:22 (the target of the reverse tunnels) and haproxy sending PROXY
v1 (127.0.0.1:2222) and v2 (127.0.0.1:2224) to ewpx-x.

Usage: proxy_lab.py OUTDIR  (root). Writes one pcap per scenario and
OUTDIR/manifest.json with what each scenario did. Every namespace and
process it starts is removed again, also on failure.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

NS = {"c": "ewpx-c", "r": "ewpx-r", "x": "ewpx-x"}
CLIENT, ROUTER_C, ROUTER_X, SERVER = "10.81.1.10", "10.81.1.1", "10.81.2.1", "10.81.2.10"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def log(msg):
    print(f"proxy-lab: {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, timeout=30, **kw):
    return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True, **kw)


def nsx(role, argv):
    return ["ip", "netns", "exec", NS[role]] + argv


class Lab:
    def __init__(self, outdir):
        self.outdir = outdir
        self.wd = tempfile.mkdtemp(prefix="ewpx-")
        self.procs = []

    # topology
    def cleanup_stale(self):
        for ns in NS.values():
            run(["ip", "netns", "del", ns], check=False)

    def setup(self):
        self.cleanup_stale()
        for ns in NS.values():
            run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", "ewpxc0", "netns", NS["c"], "type", "veth", "peer", "name",
             "ewpxr0", "netns", NS["r"]])
        run(["ip", "link", "add", "ewpxr1", "netns", NS["r"], "type", "veth", "peer", "name",
             "ewpxx0", "netns", NS["x"]])
        for role, dev, addr in [("c", "ewpxc0", CLIENT), ("r", "ewpxr0", ROUTER_C),
                                ("r", "ewpxr1", ROUTER_X), ("x", "ewpxx0", SERVER)]:
            run(nsx(role, ["ip", "addr", "add", f"{addr}/24", "dev", dev]))
            run(nsx(role, ["ip", "link", "set", dev, "up"]))
            # No offload: segments on the wire as the stacks sent them.
            run(nsx(role, ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"]),
                check=False)
        for role in NS:
            run(nsx(role, ["ip", "link", "set", "lo", "up"]))
        run(nsx("c", ["ip", "route", "add", "default", "via", ROUTER_C]))
        run(nsx("x", ["ip", "route", "add", "default", "via", ROUTER_X]))
        run(nsx("r", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        self.cleanup_stale()
        shutil.rmtree(self.wd, ignore_errors=True)

    def spawn(self, role, argv, name):
        out = open(os.path.join(self.wd, f"{name}.log"), "w")
        p = subprocess.Popen(nsx(role, argv), stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def wait_listen(self, role, port, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end:
            out = run(nsx(role, ["ss", "-Hltn", f"sport = :{port}"]), check=False).stdout
            if out.strip():
                return
            time.sleep(0.1)
        raise RuntimeError(f"nothing listens on {role}:{port}")

    def path(self, name):
        return os.path.join(self.wd, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    # servers
    def start(self):
        os.makedirs("/run/sshd", exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.path("hostkey")])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.path("id")])
        shutil.copy(self.path("id.pub"), self.path("authorized_keys"))
        for role, listen in [("x", [SERVER, "127.0.0.1"]), ("c", ["127.0.0.1"])]:
            cfg = "".join(f"ListenAddress {a}\n" for a in listen) + (
                f"HostKey {self.path('hostkey')}\nAuthorizedKeysFile {self.path('authorized_keys')}\n"
                "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                f"PidFile {self.path('sshd-' + role + '.pid')}\nAllowTcpForwarding yes\n"
                "GatewayPorts no\n")
            conf = self.write(f"sshd-{role}.conf", cfg)
            self.spawn(role, ["/usr/sbin/sshd", "-D", "-e", "-f", conf], f"sshd-{role}")
        self.write("tinyproxy.conf", f"Port 8888\nListen {SERVER}\nTimeout 60\nAllow 10.81.0.0/16\n"
                   "MaxClients 20\nUser nobody\nGroup nogroup\n"
                   f"PidFile \"{self.path('tinyproxy.pid')}\"\n")
        self.spawn("x", ["tinyproxy", "-d", "-c", self.path("tinyproxy.conf")], "tinyproxy")
        self.write("danted.conf", f"logoutput: stderr\ninternal: {SERVER} port = 1080\n"
                   f"external: {SERVER}\nsocksmethod: none\nclientmethod: none\n"
                   "user.privileged: root\nuser.unprivileged: nobody\n"
                   "client pass { from: 10.81.0.0/16 to: 0.0.0.0/0 }\n"
                   "socks pass { from: 10.81.0.0/16 to: 0.0.0.0/0 }\n")
        self.spawn("x", ["danted", "-f", self.path("danted.conf"), "-p", self.path("danted.pid")],
                   "danted")
        front = ("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
                 "  timeout server 60s\n")
        self.write("haproxy-c.cfg", front +
                   f"listen v1\n  bind 127.0.0.1:2222\n  server s {SERVER}:2223 send-proxy\n"
                   f"listen v2\n  bind 127.0.0.1:2224\n  server s {SERVER}:2225 send-proxy-v2\n")
        self.write("haproxy-x.cfg", front +
                   f"listen v1\n  bind {SERVER}:2223 accept-proxy\n  server s 127.0.0.1:22\n"
                   f"listen v2\n  bind {SERVER}:2225 accept-proxy\n  server s 127.0.0.1:22\n")
        self.spawn("c", ["haproxy", "-db", "-f", self.path("haproxy-c.cfg")], "haproxy-c")
        self.spawn("x", ["haproxy", "-db", "-f", self.path("haproxy-x.cfg")], "haproxy-x")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=www.example.org", "-keyout", self.path("tls.key"), "-out", self.path("tls.crt")])
        self.spawn("x", ["openssl", "s_server", "-quiet", "-accept", f"{SERVER}:4443", "-www",
                         "-cert", self.path("tls.crt"), "-key", self.path("tls.key")], "s_server")
        for role, port in [("x", 22), ("c", 22), ("x", 8888), ("x", 1080), ("c", 2222),
                           ("c", 2224), ("x", 2223), ("x", 2225), ("x", 4443)]:
            self.wait_listen(role, port)

    # capture
    def capture(self, name, body):
        pcap = os.path.join(self.outdir, f"{name}.pcap")
        cap = self.spawn("r", ["tcpdump", "-U", "-n", "-s", "0", "-i", "ewpxr0", "-w", pcap,
                               "tcp"], f"tcpdump-{name}")
        time.sleep(0.8)
        started = time.time()
        try:
            body()
        finally:
            time.sleep(0.8)
            cap.send_signal(signal.SIGINT)
            cap.wait(timeout=10)
            self.procs.remove(cap)
        log(f"{name}: {time.time() - started:.1f} s")
        return os.path.basename(pcap)

    # clients
    def ssh(self, via, command, extra=()):
        return ["ssh", "-i", self.path("id")] + SSH_OPTS + list(extra) + [
            "-o", f"ProxyCommand=nc -X {via} -x {SERVER}:{8888 if via == 'connect' else 1080} %h %p",
            f"root@{SERVER}", command]

    def forward(self, via):
        run(nsx("c", self.ssh(via, "uname -a; sleep 1")), timeout=20)

    def reverse(self, via):
        """`ssh -N -R 2022:127.0.0.1:22` through the proxy, then a login
        back through it from the outside, typed key by key."""
        tunnel = self.spawn("c", self.ssh(via, "", ["-N", "-R", "2022:127.0.0.1:22",
                                                     "-o", "ExitOnForwardFailure=yes"]),
                            f"tunnel-{via}")
        self.wait_listen("x", 2022)
        time.sleep(1)
        back = subprocess.Popen(
            nsx("x", ["ssh", "-tt", "-i", self.path("id")] + SSH_OPTS +
                ["-p", "2022", "root@127.0.0.1"]),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.procs.append(back)
        time.sleep(2)
        for line in ["ls /", "id", "exit"]:
            for ch in line + "\n":
                back.stdin.write(ch.encode())
                back.stdin.flush()
                time.sleep(0.15)
            time.sleep(0.5)
        back.wait(timeout=10)
        self.procs.remove(back)
        time.sleep(0.5)
        tunnel.terminate()
        tunnel.wait(timeout=5)
        self.procs.remove(tunnel)

    def proxy_header(self, port):
        run(nsx("c", ["ssh", "-i", self.path("id")] + SSH_OPTS +
                ["-p", str(port), "root@127.0.0.1", "true"]), timeout=20)

    def https(self):
        run(nsx("c", ["curl", "-sk", "-o", "/dev/null", "--max-time", "10", "-x",
                      f"http://{SERVER}:8888", f"https://{SERVER}:4443/"]), timeout=20)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    outdir = os.path.abspath(sys.argv[1])
    os.makedirs(outdir, exist_ok=True)
    lab = Lab(outdir)
    entries, failures = [], []
    scenarios = [
        ("connect_forward", "http-connect", lambda: lab.forward("connect"), "forward"),
        ("socks5_forward", "socks5", lambda: lab.forward("5"), "forward"),
        ("connect_reverse", "http-connect", lambda: lab.reverse("connect"), "reverse"),
        ("socks5_reverse", "socks5", lambda: lab.reverse("5"), "reverse"),
        ("proxy_v1_ssh", "proxy-v1", lambda: lab.proxy_header(2222), "forward"),
        ("proxy_v2_ssh", "proxy-v2", lambda: lab.proxy_header(2224), "forward"),
        ("connect_https", "http-connect", lab.https, "benign"),
    ]
    try:
        lab.setup()
        lab.start()
        for name, via, body, kind in scenarios:
            try:
                f = lab.capture(name, body)
                entries.append({"scenario": name, "file": f, "via": via, "kind": kind})
            except Exception as e:  # noqa: BLE001 - reported in the manifest
                failures.append({"scenario": name, "error": str(e)})
                log(f"{name} failed: {e}")
    finally:
        logs = {}
        for n in os.listdir(lab.wd):
            if n.endswith(".log"):
                with open(os.path.join(lab.wd, n), errors="replace") as fh:
                    logs[n] = fh.read()[-2000:]
        lab.cleanup()
        with open(os.path.join(outdir, "manifest.json"), "w") as fh:
            json.dump({"captures": entries, "failures": failures, "logs": logs}, fh, indent=1)


if __name__ == "__main__":
    main()
