#!/usr/bin/env python3
"""Capture of many concurrent, idle-ish TCP flows, for the memory curve of
docs/PERFORMANCE.md ("Memory"): peak RSS against the number of flows tracked
at once.

Every flow opens (SYN, SYN-ACK, ACK) and, with --payload, sends one 64-byte
segment from the client that no protocol claims (the flow gets analysis state
until probing gives up); no flow closes, so at the end of the capture all of
them are tracked at once. Packets of all flows are written in rounds (every
flow's SYN, then every SYN-ACK, ...), 1 microsecond apart, so no flow idles
out. Deterministic; standard library only.

  python3 benches/gen_concurrent.py --flows 100000 --out /tmp/conc100k.pcap
  python3 benches/gen_concurrent.py --flows 100000 --payload --out /tmp/conc100k_p.pcap
"""
import argparse
import struct

EPOCH = 1700000000
SYN, ACK, PSH = 0x02, 0x10, 0x08


def csum(data):
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
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
    # client 10.(i>>16).(i>>8).(i) : 40000+(i%20000), server 198.51.100.x:8443
    client = bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
    server = bytes([198, 51, 100, 1 + (i % 200)])
    return client, server, 40000 + (i % 20000), 8443


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, required=True)
    ap.add_argument("--payload", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rounds = 4 if a.payload else 3
    payload = bytes((7 * k + 3) & 0xFF for k in range(64))
    n = 0
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
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
                usec = n
                n += 1
                f.write(struct.pack("<IIII", EPOCH + usec // 1000000, usec % 1000000, len(pkt), len(pkt)))
                f.write(pkt)


if __name__ == "__main__":
    main()
