"""Read back what a capture holds, to fill the manifest and check the lab.

Classic pcap with Ethernet frames (what tcpdump writes on a veth), IPv4/TCP
only. For each TCP connection (from its SYN) it reports the 5-tuple, packet
and byte counts, and for SSH the identification lines of both sides and the
algorithms negotiated from both KEXINITs (RFC 4253 section 7.1), so the
harness can check that the cipher it asked for is the one on the wire.
Standard library only. Usable as a script: `python3 pcapinfo.py FILE`.
"""

import json
import struct
import sys


def read_pcap(path):
    """Yields (ts_seconds_float, frame_bytes)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            endian = ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype != 1:
            raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield sec + frac / (1e9 if nano else 1e6), data


def parse_ip(frame):
    """Returns (protocol, src, dst, transport bytes) of an IPv4 frame, or None."""
    off = 14
    ethertype = struct.unpack(">H", frame[12:14])[0] if len(frame) >= 14 else 0
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        ethertype = struct.unpack(">H", frame[off + 2:off + 4])[0]
        off += 4
    if ethertype != 0x0800 or len(frame) < off + 20:
        return None
    ip = frame[off:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    if len(ip) < ihl:
        return None
    src = ".".join(str(b) for b in ip[12:16])
    dst = ".".join(str(b) for b in ip[16:20])
    return ip[9], src, dst, bytes(ip[ihl:total])


def parse_tcp(frame):
    """Returns (src, sport, dst, dport, flags, seq, payload) or None."""
    ip = parse_ip(frame)
    if ip is None or ip[0] != 6 or len(ip[3]) < 20:
        return None
    _, src, dst, tcp = ip
    sport, dport, seq = struct.unpack(">HHI", tcp[:8])
    doff = (tcp[12] >> 4) * 4
    flags = tcp[13]
    return src, sport, dst, dport, flags, seq, tcp[doff:]


def parse_udp(frame):
    """Returns (src, sport, dst, dport, payload) or None."""
    ip = parse_ip(frame)
    if ip is None or ip[0] != 17 or len(ip[3]) < 8:
        return None
    _, src, dst, udp = ip
    sport, dport = struct.unpack(">HH", udp[:4])
    return src, sport, dst, dport, udp[8:]


def dns_name(msg, pos, depth=0):
    labels = []
    while depth < 20 and pos < len(msg):
        n = msg[pos]
        if n == 0:
            return ".".join(labels), pos + 1
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack(">H", msg[pos:pos + 2])[0] & 0x3FFF
            rest, _ = dns_name(msg, ptr, depth + 1)
            return ".".join(labels + ([rest] if rest else [])), pos + 2
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    return ".".join(labels), pos


DNS_TYPES = {1: "A", 5: "CNAME", 28: "AAAA"}


def parse_dns(msg):
    """Question and answers of one DNS message (A, AAAA, CNAME), or None."""
    try:
        qid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
        pos = 12
        qname, pos = dns_name(msg, pos)
        qtype = struct.unpack(">H", msg[pos:pos + 2])[0]
        pos += 4
        for _ in range(qd - 1):
            _, pos = dns_name(msg, pos)
            pos += 4
        answers = []
        for _ in range(an):
            name, pos = dns_name(msg, pos)
            rtype, _cls, ttl, rdlen = struct.unpack(">HHIH", msg[pos:pos + 10])
            pos += 10
            rdata = msg[pos:pos + rdlen]
            if rtype == 1 and rdlen == 4:
                value = ".".join(str(b) for b in rdata)
            elif rtype == 5:
                value, _ = dns_name(msg, pos)
            elif rtype == 28 and rdlen == 16:
                value = ":".join(rdata[i:i + 2].hex() for i in range(0, 16, 2))
            else:
                value = rdata.hex()
            answers.append({"name": name, "type": DNS_TYPES.get(rtype, str(rtype)), "ttl": ttl, "data": value})
            pos += rdlen
    except (struct.error, IndexError):
        return None
    return {"id": qid, "response": bool(flags & 0x8000), "rcode": flags & 0xF, "query": qname,
            "qtype": DNS_TYPES.get(qtype, str(qtype)), "answers": answers}


SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
STREAM_LIMIT = 64 * 1024


class Conn:
    def __init__(self, client, cport, server, sport, ts):
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.first_ts = ts
        self.last_ts = ts
        self.packets = 0
        self.closed = False
        self.bytes = 0
        self.isn = {}
        self.segs = {"c": {}, "s": {}}

    def key(self):
        return (self.client, self.cport, self.server, self.sport)

    def add(self, ts, side, flags, seq, payload, size):
        self.packets += 1
        self.bytes += size
        self.last_ts = ts
        if flags & (FIN | RST):
            self.closed = True
        if flags & SYN:
            self.isn[side] = seq
            return
        if side not in self.isn or not payload:
            return
        rel = (seq - self.isn[side] - 1) & 0xFFFFFFFF
        if rel < STREAM_LIMIT:
            self.segs[side].setdefault(rel, payload)

    def stream(self, side):
        """The in-order bytes of one direction from its start, up to the first hole."""
        out = bytearray()
        for rel in sorted(self.segs[side]):
            data = self.segs[side][rel]
            if rel > len(out):
                break
            out += data[len(out) - rel:]
        return bytes(out)


def dns_messages(path):
    out = []
    for _ts, frame in read_pcap(path):
        u = parse_udp(frame)
        if u is None or 53 not in (u[1], u[3]):
            continue
        d = parse_dns(u[4])
        if d:
            d.update({"client": u[0] if u[3] == 53 else u[2], "server": u[2] if u[3] == 53 else u[0]})
            out.append(d)
    return out


def client_hello(conn):
    """SNI, ALPN and the number of TCP segments a TLS ClientHello spans."""
    data = conn.stream("c")
    hs = b""
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 22:
        rlen = struct.unpack(">H", data[pos + 3:pos + 5])[0]
        hs += data[pos + 5:pos + 5 + rlen]
        pos += 5 + rlen
        if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
            break
    if len(hs) < 4 or hs[0] != 1:
        return None
    end_on_wire = pos
    try:
        p = 4 + 2 + 32
        p += 1 + hs[p]
        p += 2 + struct.unpack(">H", hs[p:p + 2])[0]
        p += 1 + hs[p]
        ext_end = p + 2 + struct.unpack(">H", hs[p:p + 2])[0]
        p += 2
        sni, alpn = None, []
        while p + 4 <= ext_end:
            etype, elen = struct.unpack(">HH", hs[p:p + 4])
            body = hs[p + 4:p + 4 + elen]
            if etype == 0 and len(body) > 5:
                n = struct.unpack(">H", body[3:5])[0]
                sni = body[5:5 + n].decode("ascii", "replace")
            elif etype == 16:
                q = 2
                while q < len(body):
                    alpn.append(body[q + 1:q + 1 + body[q]].decode("ascii", "replace"))
                    q += 1 + body[q]
            p += 4 + elen
    except (struct.error, IndexError):
        return None
    segments = sum(1 for rel in conn.segs["c"] if rel < end_on_wire)
    return {"sni": sni, "alpn": alpn, "client_hello_bytes": end_on_wire, "client_hello_segments": segments}


def connections(path):
    conns = {}
    for ts, frame in read_pcap(path):
        t = parse_tcp(frame)
        if t is None:
            continue
        src, sp, dst, dp, flags, seq, payload = t
        fwd, rev = (src, sp, dst, dp), (dst, dp, src, sp)
        if fwd in conns:
            conns[fwd].add(ts, "c", flags, seq, payload, len(frame))
        elif rev in conns:
            conns[rev].add(ts, "s", flags, seq, payload, len(frame))
        elif flags & SYN and not flags & ACK:
            c = Conn(src, sp, dst, dp, ts)
            conns[fwd] = c
            c.add(ts, "c", flags, seq, payload, len(frame))
    return list(conns.values())


def split_banner(stream):
    """(identification line, rest) or (None, stream) when there is no SSH banner."""
    pos = 0
    while pos < len(stream):
        end = stream.find(b"\n", pos)
        if end < 0:
            return None, stream
        line = stream[pos:end].rstrip(b"\r")
        if line.startswith(b"SSH-"):
            return line.decode("ascii", "replace"), stream[end + 1:]
        pos = end + 1
    return None, stream


def kexinit_lists(rest):
    """The ten name-lists of the first (cleartext) KEXINIT after the banner."""
    if len(rest) < 6:
        return None
    plen, padlen = struct.unpack(">IB", rest[:5])
    payload = rest[5:4 + plen - padlen]  # packet_length - padding_length - 1 bytes
    if len(payload) < 17 or payload[0] != 20:
        return None
    pos = 17
    lists = []
    for _ in range(10):
        if pos + 4 > len(payload):
            return None
        n = struct.unpack(">I", payload[pos:pos + 4])[0]
        lists.append(payload[pos + 4:pos + 4 + n].decode("ascii", "replace").split(","))
        pos += 4 + n
    return lists


def negotiate(client_lists, server_lists, i):
    for alg in client_lists[i]:
        if alg in server_lists[i]:
            return alg
    return None


def ssh_summary(conn):
    """Banners and negotiated algorithms as seen in one TCP connection."""
    cb, crest = split_banner(conn.stream("c"))
    sb, srest = split_banner(conn.stream("s"))
    if cb is None and sb is None:
        return None
    out = {"originator_banner": cb, "responder_banner": sb}
    ck, sk = kexinit_lists(crest), kexinit_lists(srest)
    if ck and sk:
        # The SSH client is the side whose KEXINIT carries client-only
        # pseudo-algorithms; for an ordinary session that is the originator.
        client_only = ("ext-info-c", "kex-strict-c-v00@openssh.com")
        reversed_roles = any(a in sk[0] for a in client_only) and not any(a in ck[0] for a in client_only)
        cl, sl = (sk, ck) if reversed_roles else (ck, sk)
        out["ssh_client_is_originator"] = not reversed_roles
        out["kex"] = negotiate(cl, sl, 0)
        out["hostkey"] = negotiate(cl, sl, 1)
        out["cipher_c2s"] = negotiate(cl, sl, 2)
        out["cipher_s2c"] = negotiate(cl, sl, 3)
        aead = ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
        out["mac_c2s"] = None if out["cipher_c2s"] in aead else negotiate(cl, sl, 4)
        out["mac_s2c"] = None if out["cipher_s2c"] in aead else negotiate(cl, sl, 5)
        out["compression"] = negotiate(cl, sl, 6)
    return out


def summarize(path):
    conns = connections(path)
    frames = 0
    size = 0
    for _ts, frame in read_pcap(path):
        frames += 1
        size += len(frame)
    items = []
    for c in conns:
        item = {
            "client": c.client,
            "client_port": c.cport,
            "server": c.server,
            "server_port": c.sport,
            "packets": c.packets,
            "bytes": c.bytes,
            "duration_s": round(c.last_ts - c.first_ts, 3),
            "closed": c.closed,
        }
        ssh = ssh_summary(c)
        if ssh:
            item["ssh"] = ssh
        tls = client_hello(c)
        if tls:
            item["tls"] = tls
        items.append(item)
    return {"frames": frames, "frame_bytes": size, "tcp": items, "dns": dns_messages(path)}


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(json.dumps({p: summarize(p)}, indent=1))
