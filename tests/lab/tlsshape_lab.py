#!/usr/bin/env python3
"""Lab for the TLS record-shape inferences (issue 10, items 2 and 3).

Two namespaces joined by one veth pair (offloads off, so segments are
wire-sized); the capture runs on the client's end:

    ewts-c 10.83.0.10  --veth--  ewts-s 10.83.0.20 (stands for the Internet:
                                  the test's rules make only 10.83.0.10 internal)

Scenarios, each with its own pcap:
  ssh-stunnel-fwd   interactive OpenSSH session through stunnel4 on 443
                    (stunnel client in ewts-c, stunnel server in ewts-s), typed
                    on a pty
  ssh-sclient-fwd   the same with `openssl s_client` as the ProxyCommand
  ssh-stunnel-rev   `ssh -N -R` through stunnel on 443, then a login back
                    through the forward from the far side, typed on a pty
  miner-tls         a Stratum pool and an XMRig-dialect miner over TLS (Python
                    ssl), timed as XMRig at 1/100 of real time: jobs pushed
                    every 30-60 s, shares every 40-120 s, keepalived; the pcap's
                    timestamps are then stretched 100x to real XMRig timing
  longpoll-tls      benign: a long-poll client over TLS (same stretch)
  push-tls          benign: a push channel whose client acknowledges each push
  download-tls      benign: HTTPS downloads with curl from `openssl s_server`

Run as root: `tlsshape_lab.py OUTDIR [SCENARIO...]`. Writes OUTDIR/NAME.pcap
and OUTDIR/manifest.json (what each scenario is: the ground truth). Every
namespace and process started is removed/stopped on success, failure or
signal. Standard library only.
"""

import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ptydrive import PtySession, seeded  # noqa: E402
from twohosts import TwoHosts, ensure_privsep, ns, run  # noqa: E402

NS_C, NS_S = "ewts-c", "ewts-s"
ADDR_C, ADDR_S = "10.83.0.10", "10.83.0.20"
STRETCH = 100.0
SCENARIOS = ["ssh-stunnel-fwd", "ssh-sclient-fwd", "ssh-stunnel-rev", "miner-tls", "longpoll-tls",
             "push-tls", "download-tls"]
TRUTH = {
    "ssh-stunnel-fwd": {"label": "ssh_external", "inner": "ssh", "reverse": False},
    "ssh-sclient-fwd": {"label": "ssh_external", "inner": "ssh", "reverse": False},
    "ssh-stunnel-rev": {"label": "reverse_tunnel", "inner": "ssh", "reverse": True},
    "miner-tls": {"label": "stratum_mining", "inner": "xmrig-login", "stretched": STRETCH},
    "longpoll-tls": {"label": "benign", "inner": "long-poll", "stretched": STRETCH},
    "push-tls": {"label": "benign", "inner": "push-with-acks", "stretched": STRETCH},
    "download-tls": {"label": "benign", "inner": "https-download"},
}


def log(msg):
    print(f"tlsshape-lab: {msg}", file=sys.stderr, flush=True)


class Lab(TwoHosts):
    def __init__(self, work):
        super().__init__(work, (NS_C, NS_S), (ADDR_C, ADDR_S), ("ewts0", "ewts1"))

    # --- tools --------------------------------------------------------------------
    def setup_files(self):
        w = self.work
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=edge.example-lab.test", "-days", "2", "-keyout", f"{w}/tls.key", "-out", f"{w}/tls.crt"])
        self.ssh_keys()

    def stunnel(self, n, name, client, accept, connect):
        w = self.work
        conf = f"{w}/{name}.conf"
        with open(conf, "w") as f:
            f.write(f"foreground = yes\npid =\nsyslog = no\n")
            if client:
                f.write("client = yes\n")
            f.write(f"[{name}]\naccept = {accept}\nconnect = {connect}\n")
            if not client:
                f.write(f"cert = {w}/tls.crt\nkey = {w}/tls.key\n")
        p = self.spawn(n, ["stunnel4", conf], name)
        self.wait_listen(n, int(accept.rsplit(":", 1)[1]))
        return p

    def capture(self, name):
        pcap = os.path.join(self.work, f"{name}.pcap")
        p = self.spawn(NS_C, ["tcpdump", "-i", "ewts0", "-s", "0", "-U", "-w", pcap, "tcp"], f"tcpdump-{name}")
        time.sleep(0.5)
        return p, pcap


def typing_session(s):
    """A person at a shell: a few commands typed key by key."""
    s.expect(r"[#$] ", 20)
    for cmd in ("ls /", "uname -a", "id"):
        s.think(0.3, 0.7)
        s.line(cmd)
        s.expect(r"[#$] ", 10)
    s.line("exit")
    s.wait(10)


def sc_ssh_fwd(lab, name, via):
    lab.sshd(NS_S, "sshd-s")
    lab.stunnel(NS_S, "stunnel-s", False, f"{ADDR_S}:443", "127.0.0.1:22")
    if via == "stunnel":
        lab.stunnel(NS_C, "stunnel-c", True, "127.0.0.1:2200", f"{ADDR_S}:443")
        argv = lab.ssh_argv(2200, extra=["-tt"])
    else:
        proxy = f"ProxyCommand=openssl s_client -quiet -verify_quiet -connect {ADDR_S}:443 -servername edge.example-lab.test"
        argv = lab.ssh_argv(22, host="edge.example-lab.test", extra=["-tt", "-o", proxy])
    cap, pcap = lab.capture(name)
    ensure_privsep()
    s = PtySession(ns(NS_C, *argv), seeded(1, name), os.path.join(lab.work, f"{name}.pty.log"))
    try:
        typing_session(s)
    finally:
        s.close()
    time.sleep(0.5)
    lab.stop(cap)
    return pcap


def sc_ssh_rev(lab, name):
    lab.sshd(NS_S, "sshd-s")
    lab.sshd(NS_C, "sshd-c")
    lab.stunnel(NS_S, "stunnel-s", False, f"{ADDR_S}:443", "127.0.0.1:22")
    lab.stunnel(NS_C, "stunnel-c", True, "127.0.0.1:2200", f"{ADDR_S}:443")
    cap, pcap = lab.capture(name)
    outer = lab.spawn(NS_C, lab.ssh_argv(2200, extra=["-N", "-R", "2222:127.0.0.1:22",
                                                      "-o", "ExitOnForwardFailure=yes"]), "outer")
    lab.wait_listen(NS_S, 2222)
    time.sleep(1.5)
    ensure_privsep()
    s = PtySession(ns(NS_S, *lab.ssh_argv(2222, extra=["-tt"])), seeded(1, name),
                   os.path.join(lab.work, f"{name}.pty.log"))
    try:
        typing_session(s)
    finally:
        s.close()
    time.sleep(1.0)
    if outer.poll() is not None:
        raise RuntimeError("the outer ssh -R ended early")
    lab.stop(outer)
    time.sleep(0.5)
    lab.stop(cap)
    return pcap


# --- timed JSON-over-TLS services (1/STRETCH of real time) ----------------------------

def hexstr(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def tls_server(port, handler):
    """A TLS server in this process (run inside ewts-s by re-exec)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["EWTS_CRT"], os.environ["EWTS_KEY"])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ADDR_S, port))
    ls.listen(4)
    while True:
        conn, _ = ls.accept()
        c = ctx.wrap_socket(conn, server_side=True)
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def lines(sock):
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


def send(sock, lock, obj):
    with lock:
        sock.sendall(json.dumps(obj).encode() + b"\n")


def pool_handler(sock):
    """An XMRig-dialect pool: login answered with a job, jobs pushed every
    30-60 s (scaled), submits and keepalives answered."""
    rng = random.Random(7)
    lock = threading.Lock()
    height = [3123456]

    def job():
        height[0] += 1
        return {"blob": hexstr(rng, 152), "job_id": hexstr(rng, 12), "target": "b88d0600", "algo": "rx/0",
                "height": height[0], "seed_hash": hexstr(rng, 64)}

    def pusher():
        while True:
            time.sleep(rng.uniform(30, 60) / STRETCH)
            try:
                send(sock, lock, {"jsonrpc": "2.0", "method": "job", "params": job()})
            except OSError:
                return

    for msg in lines(sock):
        mid, method = msg.get("id"), msg.get("method")
        if method == "login":
            send(sock, lock, {"id": mid, "jsonrpc": "2.0", "error": None,
                              "result": {"id": hexstr(rng, 16), "job": job(), "extensions": ["algo", "keepalive"],
                                         "status": "OK"}})
            threading.Thread(target=pusher, daemon=True).start()
        elif method == "submit":
            send(sock, lock, {"id": mid, "jsonrpc": "2.0", "error": None, "result": {"status": "OK"}})
        elif method == "keepalived":
            send(sock, lock, {"id": mid, "jsonrpc": "2.0", "error": None, "result": {"status": "KEEPALIVED"}})


def miner_client(duration):
    rng = random.Random(11)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(socket.create_connection((ADDR_S, 3443), 5), server_hostname="edge.example-lab.test")
    lock = threading.Lock()
    wallet = "4" + "".join(rng.choice("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz") for _ in range(94))
    send(sock, lock, {"id": 1, "jsonrpc": "2.0", "method": "login",
                      "params": {"login": wallet, "pass": "x", "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
                                 "algo": ["rx/0", "cn/r", "cn-pico", "rx/wow", "argon2/chukwav2"]}})
    it = lines(sock)
    login = next(it)
    sid, job_id = login["result"]["id"], login["result"]["job"]["job_id"]
    threading.Thread(target=lambda: [None for _ in it], daemon=True).start()
    end = time.monotonic() + duration
    mid = 2
    next_keepalive = time.monotonic() + 60 / STRETCH
    while time.monotonic() < end:
        time.sleep(rng.uniform(40, 120) / STRETCH)
        send(sock, lock, {"id": mid, "jsonrpc": "2.0", "method": "submit",
                          "params": {"id": sid, "job_id": job_id, "nonce": hexstr(rng, 8), "result": hexstr(rng, 64),
                                     "algo": "rx/0"}})
        mid += 1
        if time.monotonic() > next_keepalive:
            send(sock, lock, {"id": mid, "jsonrpc": "2.0", "method": "keepalived", "params": {"id": sid}})
            mid += 1
            next_keepalive = time.monotonic() + 60 / STRETCH
    time.sleep(0.05)
    sock.close()


def longpoll_handler(sock):
    """Answers each poll after 20-50 s (scaled) with a small event list."""
    rng = random.Random(5)
    lock = threading.Lock()
    for msg in lines(sock):
        time.sleep(rng.uniform(20, 50) / STRETCH)
        send(sock, lock, {"id": msg.get("id"), "events": [{"type": "update", "etag": hexstr(rng, 24),
                                                            "body": hexstr(rng, rng.randrange(100, 300))}]})


def longpoll_client(duration):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(socket.create_connection((ADDR_S, 3444), 5), server_hostname="edge.example-lab.test")
    lock = threading.Lock()
    end = time.monotonic() + duration
    n = 1
    send(sock, lock, {"id": n, "method": "poll", "cursor": "0", "session": "a" * 120})
    for _msg in lines(sock):
        if time.monotonic() > end:
            break
        n += 1
        send(sock, lock, {"id": n, "method": "poll", "cursor": str(n), "session": "a" * 120})
    sock.close()


def push_handler(sock):
    """Pushes notifications every 30-60 s (scaled); the client acks each."""
    rng = random.Random(3)
    lock = threading.Lock()
    for msg in lines(sock):
        if msg.get("method") == "register":
            send(sock, lock, {"id": msg["id"], "ok": True, "token": hexstr(rng, 64), "config": hexstr(rng, 200)})
            break
    while True:
        time.sleep(rng.uniform(30, 60) / STRETCH)
        try:
            send(sock, lock, {"method": "notify", "msg": hexstr(rng, rng.randrange(200, 360))})
        except OSError:
            return


def push_client(duration):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(socket.create_connection((ADDR_S, 3445), 5), server_hostname="edge.example-lab.test")
    lock = threading.Lock()
    send(sock, lock, {"id": 1, "method": "register", "device": "d" * 64, "app": "com.example.lab"})
    end = time.monotonic() + duration
    sock.settimeout(0.2)
    buf = b""
    n = 2
    while time.monotonic() < end:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if b"notify" in line:
                send(sock, lock, {"ack": n, "id": n})
                n += 1
    sock.close()


def sc_timed(lab, name, port, server, client, duration=5.0):
    w = lab.work
    env_args = ["env", f"EWTS_CRT={w}/tls.crt", f"EWTS_KEY={w}/tls.key"]
    lab.spawn(NS_S, [*env_args, sys.executable, os.path.abspath(__file__), "--serve", server, str(port)], server)
    lab.wait_listen(NS_S, port)
    cap, pcap = lab.capture(name)
    run(ns(NS_C, sys.executable, os.path.abspath(__file__), "--client", client, str(duration)),
        timeout=duration + 20)
    time.sleep(0.3)
    lab.stop(cap)
    stretch(pcap, STRETCH)
    return pcap


def sc_download(lab, name):
    w = lab.work
    os.makedirs(f"{w}/www", exist_ok=True)
    with open(f"{w}/www/blob.bin", "wb") as f:
        f.write(random.Random(1).randbytes(3_000_000))
    with open(f"{w}/www/index.html", "w") as f:
        f.write("<html><body>" + "lab " * 2000 + "</body></html>\n")
    # `openssl s_server -WWW` serves files relative to its working directory.
    lab.spawn(NS_S, ["sh", "-c", f"cd {w}/www && exec openssl s_server -quiet -WWW -accept {ADDR_S}:443 "
                                 f"-cert {w}/tls.crt -key {w}/tls.key"], "s_server")
    lab.wait_listen(NS_S, 443)
    cap, pcap = lab.capture(name)
    for path in ("index.html", "blob.bin", "index.html"):
        run(ns(NS_C, "curl", "-sk", "-o", "/dev/null", "--resolve", f"edge.example-lab.test:443:{ADDR_S}",
               f"https://edge.example-lab.test/{path}"), timeout=30)
    time.sleep(0.3)
    lab.stop(cap)
    return pcap


def stretch(pcap, factor):
    """Rewrites a classic pcap's timestamps: t' = t0 + (t - t0) * factor."""
    with open(pcap, "rb") as f:
        data = bytearray(f.read())
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    unit = 1_000_000_000 if nano else 1_000_000
    off, t0 = 24, None
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        t = sec * unit + frac
        t0 = t if t0 is None else t0
        t2 = t0 + int((t - t0) * factor)
        struct.pack_into(endian + "II", data, off, t2 // unit, t2 % unit)
        off += 16 + incl
    with open(pcap, "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--serve":
        handlers = {"pool": (pool_handler, 3443), "longpoll": (longpoll_handler, 3444), "push": (push_handler, 3445)}
        h, _ = handlers[sys.argv[2]]
        tls_server(int(sys.argv[3]), h)
        return 0
    if len(sys.argv) >= 2 and sys.argv[1] == "--client":
        {"miner": miner_client, "longpoll": longpoll_client, "push": push_client}[sys.argv[2]](float(sys.argv[3]))
        return 0
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    outdir = os.path.abspath(sys.argv[1])
    wanted = sys.argv[2:] or SCENARIOS
    os.makedirs(outdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="ewts-lab-")
    lab = Lab(work)
    manifest, failures = [], []

    def on_signal(sig, _frame):
        lab.down()
        sys.exit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        lab.setup_files()
        for name in wanted:
            for attempt in (1, 2):
                log(f"scenario {name}" + (" (again)" if attempt > 1 else ""))
                if run_one(lab, name, outdir, manifest, failures if attempt > 1 else None):
                    break
    finally:
        lab.down()
        if os.environ.get("EWTS_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work dir kept: {work}")
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"scenarios": manifest, "failures": failures}, f, indent=1)
    return 1 if failures else 0


SCENARIO_RUNS = {
    "ssh-stunnel-fwd": lambda lab, name: sc_ssh_fwd(lab, name, "stunnel"),
    "ssh-sclient-fwd": lambda lab, name: sc_ssh_fwd(lab, name, "s_client"),
    "ssh-stunnel-rev": sc_ssh_rev,
    "miner-tls": lambda lab, name: sc_timed(lab, name, 3443, "pool", "miner"),
    "longpoll-tls": lambda lab, name: sc_timed(lab, name, 3444, "longpoll", "longpoll"),
    "push-tls": lambda lab, name: sc_timed(lab, name, 3445, "push", "push"),
    "download-tls": sc_download,
}


def run_one(lab, name, outdir, manifest, failures):
    """One scenario in fresh namespaces; False if it failed (recorded in
    `failures` unless that is None: the caller tries it again)."""
    lab.up()
    try:
        if name not in SCENARIO_RUNS:
            raise RuntimeError(f"no scenario {name}")
        pcap = SCENARIO_RUNS[name](lab, name)
        dest = os.path.join(outdir, f"{name}.pcap")
        shutil.copy(pcap, dest)
        manifest.append({"name": name, "pcap": dest, "client": ADDR_C, "server": ADDR_S, **TRUTH[name]})
        return True
    except Exception as e:  # noqa: BLE001 - reported, the lab goes on
        log(f"scenario {name} failed: {e}")
        if failures is not None:
            failures.append({"name": name, "error": str(e)})
        return False
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
