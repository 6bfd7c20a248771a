#!/usr/bin/env python3
"""Cut the start off a classic pcap, so its flows are picked up mid-stream.

  pcap_cut.py IN OUT --skip-fraction 0.1   drop the first 10% of all packets
  pcap_cut.py IN OUT --flow-head 40        drop the first 40 packets of every
                                           TCP connection (IPv4/IPv6, VLAN)

Used to measure egresswatch's mid-stream SSH inference (docs/DETECTION.md).
Prints the packets kept and dropped. Classic pcap only (either byte order).
"""
import argparse
import struct
import sys


def tcp_key(frame):
    """The connection of an Ethernet frame (sorted endpoints), or None."""
    off, etype = 12, None
    while off + 2 <= len(frame):
        etype = struct.unpack_from("!H", frame, off)[0]
        if etype in (0x8100, 0x88A8):
            off += 4
            continue
        off += 2
        break
    if etype == 0x0800 and len(frame) >= off + 20:
        if frame[off + 9] != 6:
            return None
        hl = (frame[off] & 0x0F) * 4
        src, dst = frame[off + 12:off + 16], frame[off + 16:off + 20]
        t = off + hl
    elif etype == 0x86DD and len(frame) >= off + 40:
        if frame[off + 6] != 6:
            return None
        src, dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
        t = off + 40
    else:
        return None
    if len(frame) < t + 4:
        return None
    sp, dp = struct.unpack_from("!HH", frame, t)
    return tuple(sorted([(src, sp), (dst, dp)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--skip-fraction", type=float, default=0.0)
    ap.add_argument("--flow-head", type=int, default=0)
    a = ap.parse_args()
    data = open(a.inp, "rb").read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        sys.exit(f"{a.inp}: not a classic pcap")
    records, at = [], 24
    while at + 16 <= len(data):
        incl = struct.unpack_from(end + "I", data, at + 8)[0]
        records.append((at, 16 + incl))
        at += 16 + incl
    skip = int(len(records) * a.skip_fraction)
    seen, kept = {}, 0
    with open(a.out, "wb") as out:
        out.write(data[:24])
        for i, (at, n) in enumerate(records):
            if i < skip:
                continue
            if a.flow_head:
                key = tcp_key(data[at + 16:at + n])
                if key is not None:
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] <= a.flow_head:
                        continue
            out.write(data[at:at + n])
            kept += 1
    print(f"kept {kept} of {len(records)} packets")


if __name__ == "__main__":
    main()
