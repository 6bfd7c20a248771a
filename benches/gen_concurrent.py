#!/usr/bin/env python3
"""Synthetic TCP captures for the cost curves of docs/PERFORMANCE.md ("How the
cost grows"), benches/curves.sh runs them. Two modes:

--flows N: N concurrent, idle-ish flows (peak RSS against flows tracked at once).
Every flow opens (SYN, SYN-ACK, ACK) and, with --payload, sends one 64-byte
segment from the client that no protocol claims (the flow gets analysis state
until probing gives up); no flow closes, so at the end of the capture all of
them are tracked at once. Packets of all flows are written in rounds (every
flow's SYN, then every SYN-ACK, ...), 1 microsecond apart, so no flow idles
out.

--packets-per-flow P --packets T: T packets in flows of P packets each (the
last flows may be cut short by T), at most --concurrent W flows open at once
(default 1000), packets --gap-us G apart (default 100, i.e. 10,000 packets per
second of packet time). W slots take turns, one packet each; a slot runs its
flows one after the other. A flow is: SYN, SYN-ACK, ACK, then data segments of
--segment-bytes B (default 512: 566-byte frames) that no protocol claims,
alternating client and server, and a client RST as its last packet; P = 2 is
SYN and a server RST (refused), P = 3 is SYN, SYN-ACK, RST, P = 4 has no data.
A reset flow stays tracked for the tcp-closed timeout (10 s of packet time),
so about 10 s x flows/s closed flows are tracked beside the W open ones.

Every flow has its own client (10.x.y.z, never in 10.10.0.0/16, the built-in
rules' default-deny zone: with the built-in rules nothing alerts), servers are
198.51.100.1-200:8443.
Deterministic (the same arguments give the same bytes); standard library only.

  python3 benches/gen_concurrent.py --flows 100000 --out /tmp/conc100k.pcap
  python3 benches/gen_concurrent.py --flows 100000 --payload --out /tmp/conc100k_p.pcap
  python3 benches/gen_concurrent.py --packets-per-flow 10 --packets 2000000 --out /tmp/ppf10.pcap
"""
import argparse
import struct

EPOCH = 1700000000
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def csum(data):
    """Internet checksum (end-around carry via the 2**16 == 1 mod 0xFFFF identity)."""
    if len(data) & 1:
        data += b"\0"
    v = int.from_bytes(data, "big")
    s = v % 0xFFFF
    if s == 0 and v:
        s = 0xFFFF
    return (~s) & 0xFFFF


def frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    tcp_len = 20 + len(payload)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, tcp_len)
    c = csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00"
    return eth + ip + tcp + payload


def endpoints(i):
    # client 10.(i>>16).(i>>8).(i) : 40000+(i%20000), server 198.51.100.x:8443;
    # 10.10.0.0/16 is skipped: it is the built-in rules' default-deny zone
    # (gpu-training), whose flows would alert
    b = (i >> 16) & 0xFF
    client = bytes([10, b + 1 if b >= 10 else b, (i >> 8) & 0xFF, i & 0xFF])
    server = bytes([198, 51, 100, 1 + (i % 200)])
    return client, server, 40000 + (i % 20000), 8443


def concurrent(a, write):
    rounds = 4 if a.payload else 3
    payload = bytes((7 * k + 3) & 0xFF for k in range(64))
    for r in range(rounds):
        for i in range(a.flows):
            c, s, cp, sp = endpoints(i)
            cseq, sseq = 1000 + i, 5000 + i
            if r == 0:
                pkt = frame(c, s, cp, sp, cseq, 0, SYN)
            elif r == 1:
                pkt = frame(s, c, sp, cp, sseq, cseq + 1, SYN | ACK)
            elif r == 2:
                pkt = frame(c, s, cp, sp, cseq + 1, sseq + 1, ACK)
            else:
                pkt = frame(c, s, cp, sp, cseq + 1, sseq + 1, PSH | ACK, payload)
            write(pkt)


class Flow:
    """One flow of P packets; next() gives its k-th frame."""

    def __init__(self, i, p):
        self.i, self.p, self.k = i, p, 0
        self.c, self.s, self.cp, self.sp = endpoints(i)
        self.cseq, self.sseq = 1000 + i, 5000 + i  # next sequence number of each side

    def next(self, payload):
        i, p, k = self.i, self.p, self.k
        c, s, cp, sp = self.c, self.s, self.cp, self.sp
        self.k += 1
        if k == 0:
            self.cseq += 1
            return frame(c, s, cp, sp, self.cseq - 1, 0, SYN)
        if p == 2:
            return frame(s, c, sp, cp, 0, self.cseq, RST | ACK)
        if k == 1:
            self.sseq += 1
            return frame(s, c, sp, cp, self.sseq - 1, self.cseq, SYN | ACK)
        if k == p - 1:
            return frame(c, s, cp, sp, self.cseq, self.sseq, RST | ACK)
        if k == 2:
            return frame(c, s, cp, sp, self.cseq, self.sseq, ACK)
        if k % 2 == 1:
            self.cseq += len(payload)
            return frame(c, s, cp, sp, self.cseq - len(payload), self.sseq, PSH | ACK, payload)
        self.sseq += len(payload)
        return frame(s, c, sp, cp, self.sseq - len(payload), self.cseq, PSH | ACK, payload)

    def done(self):
        return self.k >= self.p


def per_flow(a, write):
    if a.packets_per_flow < 2:
        raise SystemExit("--packets-per-flow must be at least 2")
    payload = bytes((7 * k + 3) & 0xFF for k in range(a.segment_bytes))
    slots = [None] * a.concurrent
    next_id = 0
    n = 0
    while n < a.packets:
        for w in range(a.concurrent):
            if n >= a.packets:
                break
            f = slots[w]
            if f is None or f.done():
                f = slots[w] = Flow(next_id, a.packets_per_flow)
                next_id += 1
            write(f.next(payload))
            n += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, help="concurrent mode: this many flows, all open at the end")
    ap.add_argument("--payload", action="store_true", help="concurrent mode: one unclaimed 64-byte segment each")
    ap.add_argument("--packets-per-flow", type=int, help="flow-length mode: packets in each flow (>= 2)")
    ap.add_argument("--packets", type=int, default=2000000, help="flow-length mode: packets in all")
    ap.add_argument("--concurrent", type=int, default=1000, help="flow-length mode: flows open at once")
    ap.add_argument("--gap-us", type=int, default=None, help="microseconds between packets (default 1 concurrent mode, 100 flow-length mode)")
    ap.add_argument("--segment-bytes", type=int, default=512, help="flow-length mode: TCP payload of a data segment")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if (a.flows is None) == (a.packets_per_flow is None):
        raise SystemExit("give exactly one of --flows and --packets-per-flow")
    gap = a.gap_us if a.gap_us is not None else (1 if a.flows is not None else 100)
    state = {"n": 0}
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

        def write(pkt):
            usec = state["n"] * gap
            state["n"] += 1
            f.write(struct.pack("<IIII", EPOCH + usec // 1000000, usec % 1000000, len(pkt), len(pkt)))
            f.write(pkt)

        if a.flows is not None:
            concurrent(a, write)
        else:
            per_flow(a, write)


if __name__ == "__main__":
    main()
