#!/usr/bin/env python3
"""Application servers and clients of the lab (issue: app-layer identification).

Servers:
  pool ADDR PORT [--tls CERT KEY]   a mining pool speaking Stratum v1, the
                                     CryptoNote/XMRig `login` dialect and
                                     ethproxy, chosen by the first method
  jsonrpc ADDR PORT                  a benign JSON-RPC 2.0 service whose API
                                     starts with a `login` method
Clients:
  miner HOST PORT FAMILY [--tls SNI] [--seed N] [--shares N]
        FAMILY: stratum (cgminer/bmminer style: configure, subscribe,
        extranonce.subscribe, authorize, submit), xmrig (login, job, submit,
        keepalived), ethproxy (eth_submitLogin, eth_getWork,
        eth_submitHashrate, eth_submitWork; compact JSON without spaces)
  app HOST PORT [--seed N]           the benign service's client

Messages are newline-delimited JSON as the real protocols send them. Clients
resolve HOST with the system resolver (so the capture holds the DNS lookup),
pause like a miner between shares, and print what they were told to stdout.
Standard library only.
"""

import argparse
import hashlib
import json
import random
import socket
import ssl
import sys
import threading
import time

MONERO_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def fake_monero_wallet(rng):
    """A string shaped like a Monero address (95 base58 characters, leading 4)."""
    return "4" + rng.choice("3456789AB") + "".join(rng.choice(MONERO_ALPHABET) for _ in range(93))


def wallets(seed):
    rng = random.Random(seed)
    return {
        "stratum": "bc1q" + "".join(rng.choice("023456789acdefghjklmnpqrstuvwxyz") for _ in range(38)) + ".rig01",
        "xmrig": fake_monero_wallet(rng),
        "ethproxy": "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40)) + ".gpu07",
    }


AGENTS = {
    "stratum": "bmminer/2.0.0",
    "xmrig": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
    "ethproxy": "ethminer/0.19.0",
}


def hexstr(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


# ---- line I/O ------------------------------------------------------------------


class Lines:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.lock = threading.Lock()

    def send(self, obj, compact=False):
        text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj)
        with self.lock:
            self.sock.sendall(text.encode() + b"\n")

    def recv(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


# ---- the pool --------------------------------------------------------------------


class PoolSession:
    def __init__(self, conn, rng):
        self.io = Lines(conn)
        self.rng = rng
        self.job = 0

    def stratum_notify(self):
        self.job += 1
        r = self.rng
        self.io.send({"id": None, "method": "mining.set_difficulty", "params": [8192]})
        self.io.send({
            "id": None,
            "method": "mining.notify",
            "params": [f"{self.job:x}", hexstr(r, 64), "01000000010000000000000000000000000000000000000000"
                       "000000000000000000000000ffffffff", "ffffffff0100f2052a01000000", [hexstr(r, 64)],
                       "20000000", "1705ae3a", f"{int(time.time()):08x}", True],
        })

    def xmrig_job(self):
        self.job += 1
        r = self.rng
        return {"blob": hexstr(r, 152), "job_id": f"{r.getrandbits(48):x}", "target": "b88d0600",
                "algo": "rx/0", "height": 3123456 + self.job, "seed_hash": hexstr(r, 64)}

    def handle(self, msg):
        method = msg.get("method")
        mid = msg.get("id")
        r = self.rng
        if method == "mining.configure":
            self.io.send({"id": mid, "result": {"version-rolling": True, "version-rolling.mask": "1fffe000"},
                          "error": None})
        elif method == "mining.subscribe":
            self.io.send({"id": mid, "result": [[["mining.set_difficulty", hexstr(r, 16)],
                                                 ["mining.notify", hexstr(r, 16)]], hexstr(r, 8), 4],
                          "error": None})
        elif method == "mining.extranonce.subscribe":
            self.io.send({"id": mid, "result": True, "error": None})
        elif method == "mining.authorize":
            self.io.send({"id": mid, "result": True, "error": None})
            self.stratum_notify()
        elif method == "mining.submit":
            self.io.send({"id": mid, "result": True, "error": None})
            if r.random() < 0.5:
                self.stratum_notify()
        elif method == "login":
            self.io.send({"id": mid, "jsonrpc": "2.0", "error": None,
                          "result": {"id": hexstr(r, 16), "job": self.xmrig_job(),
                                     "extensions": ["algo", "nicehash", "connect", "tls", "keepalive"],
                                     "status": "OK"}})
        elif method == "submit":
            self.io.send({"id": mid, "jsonrpc": "2.0", "error": None, "result": {"status": "OK"}})
            self.io.send({"jsonrpc": "2.0", "method": "job", "params": self.xmrig_job()})
        elif method == "keepalived":
            self.io.send({"id": mid, "jsonrpc": "2.0", "error": None, "result": {"status": "KEEPALIVED"}})
        elif method in ("eth_submitLogin", "eth_login"):
            self.io.send({"id": mid, "jsonrpc": "2.0", "result": True}, compact=True)
        elif method == "eth_getWork":
            self.io.send({"id": mid, "jsonrpc": "2.0",
                          "result": ["0x" + hexstr(r, 64), "0x" + hexstr(r, 64),
                                     "0x00000000" + hexstr(r, 56)]}, compact=True)
        elif method in ("eth_submitWork", "eth_submitHashrate"):
            self.io.send({"id": mid, "jsonrpc": "2.0", "result": True}, compact=True)
        else:
            self.io.send({"id": mid, "result": None, "error": [20, "unknown method", None]})

    def run(self):
        while True:
            msg = self.io.recv()
            if msg is None:
                return
            self.handle(msg)


def serve(addr, port, tls, session_factory):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(16)
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
    print(f"listening on {addr}:{port}", flush=True)
    n = 0
    while True:
        conn, _ = ls.accept()
        n += 1

        def work(conn=conn, n=n):
            try:
                c = ctx.wrap_socket(conn, server_side=True) if ctx else conn
                session_factory(c, random.Random(n)).run()
            except (OSError, ValueError, ssl.SSLError) as e:
                print(f"session {n}: {e}", flush=True)
            finally:
                conn.close()

        threading.Thread(target=work, daemon=True).start()


# ---- the benign JSON-RPC service ------------------------------------------------------


class AppSession:
    def __init__(self, conn, rng):
        self.io = Lines(conn)
        self.rng = rng

    def run(self):
        while True:
            msg = self.io.recv()
            if msg is None:
                return
            m, mid = msg.get("method"), msg.get("id")
            if m == "login":
                result = {"session": hexstr(self.rng, 32), "expires_in": 3600, "user": msg["params"].get("user")}
            elif m == "get_balance":
                result = {"account": msg["params"].get("account"), "balance": "1042.17", "currency": "EUR"}
            elif m == "list_orders":
                result = [{"order": 1000 + i, "state": "shipped"} for i in range(3)]
            elif m == "logout":
                result = True
            else:
                self.io.send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no such method"}})
                continue
            self.io.send({"jsonrpc": "2.0", "id": mid, "result": result})


# ---- clients ------------------------------------------------------------------------


def connect(host, port, sni):
    sock = socket.create_connection((host, port), 5)
    if sni:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=sni)
    return sock


def expect_reply(io, mid):
    """Reads until the reply to `mid` (printing notifications on the way)."""
    while True:
        msg = io.recv()
        if msg is None:
            raise SystemExit(f"pool closed the connection waiting for reply {mid}")
        print(json.dumps(msg)[:200], flush=True)
        if msg.get("id") == mid:
            return msg


def miner(args):
    rng = random.Random(args.seed)
    wallet = wallets(args.seed)[args.family]
    agent = AGENTS[args.family]
    sock = connect(args.host, args.port, args.tls)
    io = Lines(sock)
    pause = lambda: time.sleep(rng.uniform(0.6, 1.6))  # noqa: E731
    if args.family == "stratum":
        io.send({"id": 1, "method": "mining.configure",
                 "params": [["version-rolling"], {"version-rolling.mask": "1fffe000",
                                                  "version-rolling.min-bit-count": 2}]})
        expect_reply(io, 1)
        io.send({"id": 2, "method": "mining.subscribe", "params": [agent]})
        expect_reply(io, 2)
        io.send({"id": 3, "method": "mining.extranonce.subscribe", "params": []})
        expect_reply(io, 3)
        io.send({"id": 4, "method": "mining.authorize", "params": [wallet, "x"]})
        expect_reply(io, 4)
        for i in range(args.shares):
            pause()
            io.send({"id": 5 + i, "method": "mining.submit",
                     "params": [wallet, "1", hexstr(rng, 8), f"{int(time.time()):08x}", hexstr(rng, 8)]})
            expect_reply(io, 5 + i)
    elif args.family == "xmrig":
        io.send({"id": 1, "jsonrpc": "2.0", "method": "login",
                 "params": {"login": wallet, "pass": "x", "agent": agent,
                            "algo": ["rx/0", "cn/r", "cn-pico", "rx/wow", "argon2/chukwav2"]}})
        login = expect_reply(io, 1)
        sid = login["result"]["id"]
        job = login["result"]["job"]["job_id"]
        for i in range(args.shares):
            pause()
            io.send({"id": 2 + i, "jsonrpc": "2.0", "method": "submit",
                     "params": {"id": sid, "job_id": job, "nonce": hexstr(rng, 8),
                                "result": hashlib.sha256(rng.randbytes(32)).hexdigest(), "algo": "rx/0"}})
            expect_reply(io, 2 + i)
        io.send({"id": 100, "jsonrpc": "2.0", "method": "keepalived", "params": {"id": sid}})
        expect_reply(io, 100)
    else:
        io.send({"worker": "", "jsonrpc": "2.0", "params": [wallet, "x"], "id": 1, "method": "eth_submitLogin"},
                compact=True)
        expect_reply(io, 1)
        io.send({"worker": "", "jsonrpc": "2.0", "params": [], "id": 3, "method": "eth_getWork"}, compact=True)
        work = expect_reply(io, 3)
        for i in range(args.shares):
            pause()
            io.send({"id": 9, "jsonrpc": "2.0", "method": "eth_submitHashrate",
                     "params": ["0x" + f"{rng.randint(30_000_000, 32_000_000):x}".rjust(64, "0"),
                                "0x" + hexstr(rng, 64)]}, compact=True)
            expect_reply(io, 9)
            io.send({"id": 4, "jsonrpc": "2.0", "method": "eth_submitWork",
                     "params": ["0x" + hexstr(rng, 16), work["result"][0], "0x" + hexstr(rng, 64)]}, compact=True)
            expect_reply(io, 4)
    time.sleep(0.3)
    sock.close()


def app(args):
    rng = random.Random(args.seed)
    sock = connect(args.host, args.port, None)
    io = Lines(sock)
    calls = [
        ("login", {"user": "alice", "password": "correct horse battery"}),
        ("get_balance", {"account": "DE44 5001 0517 5407 3249 31"}),
        ("list_orders", {"limit": 3}),
        ("logout", {}),
    ]
    for i, (method, params) in enumerate(calls, 1):
        io.send({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
        expect_reply(io, i)
        time.sleep(rng.uniform(0.3, 0.9))
    sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pool")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p = sub.add_parser("jsonrpc")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p = sub.add_parser("miner")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("family", choices=sorted(AGENTS))
    p.add_argument("--tls", metavar="SNI")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shares", type=int, default=3)
    p = sub.add_parser("app")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.cmd == "pool":
        serve(a.addr, a.port, a.tls, PoolSession)
    elif a.cmd == "jsonrpc":
        serve(a.addr, a.port, None, AppSession)
    elif a.cmd == "miner":
        miner(a)
    else:
        app(a)


if __name__ == "__main__":
    sys.exit(main())
