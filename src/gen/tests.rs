//! Whole-generator checks: every frame parses back with etherparse (an
//! independent parser) to the intended tuple, checksums verify with our own
//! one's-complement sums, TCP sequence numbers are continuous, the truth
//! matches a recount of the frames, and output is deterministic.

use super::*;
use crate::analyzer::Dir;
use crate::flow::key::{icmp_ports, proto, Endpoint, FlowKey};
use crate::time::Timestamp;
use etherparse::{LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

// ------------------------------------------------------------------ parsing

#[derive(Clone, Debug, PartialEq, Eq)]
enum FragState {
    Whole,
    First,
    Later,
}

#[derive(Clone, Debug)]
struct TcpSeen {
    seq: u32,
    ack: u32,
    flags: u8,
}

/// What a frame turned out to be.
#[derive(Clone, Debug)]
struct Seen {
    ts: Timestamp,
    frame_len: usize,
    /// TPIDs of the tags, outermost first.
    tpids: Vec<u16>,
    vlan_ids: Vec<u16>,
    arp: bool,
    src: Option<Endpoint>,
    dst: Option<Endpoint>,
    proto: u8,
    ip_len: usize,
    payload: Vec<u8>,
    payload_len: usize,
    frag: FragState,
    frag_id: (u16, usize, bool),
    tcp: Option<TcpSeen>,
    checksums_ok: bool,
}

impl Seen {
    fn key(&self) -> Option<FlowKey> {
        Some(FlowKey::new(self.src?, self.dst?, self.proto, false).0)
    }
}

fn ones(data: &[u8], mut sum: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn folds_to_ffff(mut sum: u64) -> bool {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Vec::new();
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            ones(&p, 0)
        }
        (s, d) => {
            let o = |a: IpAddr| match a {
                IpAddr::V6(v) => v.octets(),
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
            let mut p = Vec::new();
            p.extend_from_slice(&o(s));
            p.extend_from_slice(&o(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
            ones(&p, 0)
        }
    }
}

/// Transport checksum of a complete segment / datagram / ICMP message.
fn transport_checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    match proto {
        proto::ICMP => folds_to_ffff(ones(segment, 0)),
        _ => folds_to_ffff(ones(segment, pseudo(src, dst, proto, segment.len()))),
    }
}

fn parse(ts: Timestamp, data: &[u8]) -> Seen {
    let sliced = LaxSlicedPacket::from_ethernet(data).expect("an Ethernet frame");
    assert!(
        sliced.stop_err.is_none(),
        "frame did not parse: {:?}",
        sliced.stop_err
    );
    let mut seen = Seen {
        ts,
        frame_len: data.len(),
        tpids: Vec::new(),
        vlan_ids: Vec::new(),
        arp: false,
        src: None,
        dst: None,
        proto: 0,
        ip_len: 0,
        payload: Vec::new(),
        payload_len: 0,
        frag: FragState::Whole,
        frag_id: (0, 0, false),
        tcp: None,
        checksums_ok: true,
    };
    // TPIDs straight from the bytes: 12..14 and then every 4 bytes.
    let mut at = 12;
    while matches!(
        u16::from_be_bytes([data[at], data[at + 1]]),
        0x8100 | 0x88A8
    ) {
        seen.tpids
            .push(u16::from_be_bytes([data[at], data[at + 1]]));
        at += 4;
    }
    for ext in &sliced.link_exts {
        if let LaxLinkExtSlice::Vlan(v) = ext {
            seen.vlan_ids.push(v.vlan_identifier().value());
        }
    }
    let (src, dst, ip_payload, header_ok, fragmented, offset, more, ident) = match &sliced.net {
        Some(LaxNetSlice::Arp(_)) => {
            seen.arp = true;
            return seen;
        }
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            seen.ip_len = usize::from(h.total_len());
            seen.proto = h.protocol().0;
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v4.payload().payload.to_vec(),
                folds_to_ffff(ones(h.slice(), 0)),
                v4.is_payload_fragmented(),
                usize::from(h.fragments_offset().value()) * 8,
                h.more_fragments(),
                h.identification(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            seen.ip_len = 40 + usize::from(h.payload_length());
            seen.proto = v6.payload().ip_number.0;
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v6.payload().payload.to_vec(),
                true,
                false,
                0,
                false,
                0,
            )
        }
        None => panic!("no network layer"),
    };
    seen.checksums_ok = header_ok;
    seen.frag_id = (ident, offset, more);
    if fragmented {
        seen.frag = if offset == 0 {
            FragState::First
        } else {
            FragState::Later
        };
    }
    if seen.frag == FragState::Later {
        seen.payload = ip_payload;
        return seen;
    }
    let (sport, dport, header_len) = match (&sliced.transport, seen.frag == FragState::First) {
        (_, true) => (
            u16::from_be_bytes([ip_payload[0], ip_payload[1]]),
            u16::from_be_bytes([ip_payload[2], ip_payload[3]]),
            8,
        ),
        (Some(TransportSlice::Tcp(t)), _) => {
            let mut flags = 0u8;
            for (on, bit) in [
                (t.fin(), 0x01),
                (t.syn(), 0x02),
                (t.rst(), 0x04),
                (t.psh(), 0x08),
                (t.ack(), 0x10),
            ] {
                if on {
                    flags |= bit;
                }
            }
            seen.tcp = Some(TcpSeen {
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                flags,
            });
            (
                t.source_port(),
                t.destination_port(),
                usize::from(t.data_offset()) * 4,
            )
        }
        (Some(TransportSlice::Udp(u)), _) => (u.source_port(), u.destination_port(), 8),
        (Some(TransportSlice::Icmpv4(i)), _) => {
            let (a, b, _) = icmp_ports(false, i.type_u8(), i.code_u8());
            (a, b, 8)
        }
        (Some(TransportSlice::Icmpv6(i)), _) => {
            let (a, b, _) = icmp_ports(true, i.type_u8(), i.code_u8());
            (a, b, 8)
        }
        other => panic!("unexpected transport {other:?}"),
    };
    if seen.frag == FragState::Whole {
        seen.checksums_ok &= transport_checksum_ok(src, dst, seen.proto, &ip_payload);
    }
    seen.src = Some(Endpoint {
        addr: src,
        port: sport,
    });
    seen.dst = Some(Endpoint {
        addr: dst,
        port: dport,
    });
    seen.payload = ip_payload[header_len..].to_vec();
    seen.payload_len = seen.payload.len();
    seen
}

fn parse_all(packets: &[GenPacket]) -> Vec<Seen> {
    packets.iter().map(|p| parse(p.ts, &p.data)).collect()
}

/// Fragments are reassembled by (source, id) and their UDP checksum
/// verified over the whole datagram.
fn check_fragments(seen: &[Seen], packets: &[GenPacket]) -> usize {
    /// (offset, data, more fragments) of one datagram's fragments.
    type Pieces = Vec<(usize, Vec<u8>, bool)>;
    let mut groups: HashMap<(Vec<u8>, u16), Pieces> = HashMap::new();
    for (s, p) in seen.iter().zip(packets) {
        if s.frag == FragState::Whole || s.arp {
            continue;
        }
        // addresses from the raw frame (IPv4 only): src 26..30 after tags
        let base = 14 + 4 * s.tpids.len();
        let addrs = p.data[base + 12..base + 20].to_vec();
        let data = if s.frag == FragState::First {
            p.data[base + 20..base + s.ip_len].to_vec()
        } else {
            s.payload.clone()
        };
        groups
            .entry((addrs, s.frag_id.0))
            .or_default()
            .push((s.frag_id.1, data, s.frag_id.2));
    }
    for ((addrs, id), mut frags) in groups.clone() {
        frags.sort_by_key(|f| f.0);
        let mut dgram = Vec::new();
        for (off, data, _) in &frags {
            assert_eq!(*off, dgram.len(), "fragments of {id} are contiguous");
            dgram.extend_from_slice(data);
        }
        assert!(!frags.last().unwrap().2, "last fragment has MF clear");
        assert_eq!(
            u16::from_be_bytes([dgram[4], dgram[5]]) as usize,
            dgram.len()
        );
        let src = IpAddr::from([addrs[0], addrs[1], addrs[2], addrs[3]]);
        let dst = IpAddr::from([addrs[4], addrs[5], addrs[6], addrs[7]]);
        assert!(
            transport_checksum_ok(src, dst, proto::UDP, &dgram),
            "UDP checksum of datagram {id}"
        );
    }
    groups.len()
}

// ------------------------------------------------------------------ recount

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Count {
    packets: [u64; 2],
    frame_bytes: [u64; 2],
    ip_bytes: [u64; 2],
    payload_bytes: [u64; 2],
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

/// Recounts every flow of `truth` from the parsed frames and checks them
/// field by field; also checks no frame belongs to a flow truth lacks.
fn check_truth(truth: &Truth, seen: &[Seen]) {
    let mut by_key: HashMap<FlowKey, Vec<&Seen>> = HashMap::new();
    let (mut non_ip, mut later) = (0, 0);
    for s in seen {
        if s.arp {
            non_ip += 1;
        } else if s.frag == FragState::Later {
            later += 1;
        } else {
            by_key.entry(s.key().unwrap()).or_default().push(s);
        }
    }
    assert_eq!(truth.non_ip, non_ip);
    assert_eq!(truth.later_fragments, later);
    assert_eq!(truth.frames, seen.len() as u64);
    assert_eq!(
        truth.frame_bytes,
        seen.iter().map(|s| s.frame_len as u64).sum::<u64>()
    );
    assert_eq!(
        by_key.len(),
        truth.flows.len(),
        "one truth entry per 5-tuple"
    );
    for f in &truth.flows {
        let pkts = by_key
            .get(&f.key())
            .unwrap_or_else(|| panic!("no frames for {f:?}"));
        let mut c = Count::default();
        for s in pkts {
            let dir = if s.src == Some(f.client) {
                Dir::ToServer
            } else {
                assert_eq!(s.src, Some(f.server));
                Dir::ToClient
            };
            let i = dir.index();
            c.packets[i] += 1;
            c.frame_bytes[i] += s.frame_len as u64;
            c.ip_bytes[i] += s.ip_len as u64;
            c.payload_bytes[i] += s.payload_len as u64;
            c.first = Some(c.first.map_or(s.ts, |t| t.min(s.ts)));
            c.last = Some(c.last.map_or(s.ts, |t| t.max(s.ts)));
            if f.vlan == Vlan::Untagged {
                assert!(s.tpids.is_empty());
            }
        }
        assert_eq!(c.packets, f.packets, "{}", f.label);
        assert_eq!(c.frame_bytes, f.frame_bytes, "{}", f.label);
        assert_eq!(c.ip_bytes, f.ip_bytes, "{}", f.label);
        assert_eq!(c.payload_bytes, f.payload_bytes, "{}", f.label);
        assert_eq!(c.first, Some(f.first));
        assert_eq!(c.last, Some(f.last));
        let syn_from_client = pkts.iter().any(|s| {
            s.tcp.as_ref().is_some_and(|t| t.flags & 0x12 == 0x02) && s.src == Some(f.client)
        });
        assert_eq!(syn_from_client, f.handshake, "{}: handshake flag", f.label);
        let vlan = match (pkts[0].tpids.as_slice(), pkts[0].vlan_ids.as_slice()) {
            ([], []) => Vlan::Untagged,
            ([0x8100], [id]) => Vlan::Dot1q(*id),
            ([0x88A8, 0x8100], [o, i]) => Vlan::QinQ {
                outer: *o,
                inner: *i,
            },
            other => panic!("unexpected tags {other:?}"),
        };
        assert_eq!(vlan, f.vlan, "{}", f.label);
    }
}

/// Per TCP flow and direction: the bytes sent cover one contiguous range
/// from the ISN (no holes), ACK numbers never acknowledge bytes the other
/// side has not sent yet and never go backwards.
fn check_tcp_continuity(truth: &Truth, seen: &[Seen]) {
    let mut by_key: HashMap<FlowKey, Vec<&Seen>> = HashMap::new();
    for s in seen.iter().filter(|s| s.tcp.is_some()) {
        by_key.entry(s.key().unwrap()).or_default().push(s);
    }
    for f in truth.flows.iter().filter(|f| f.proto == proto::TCP) {
        let pkts = &by_key[&f.key()];
        let mut sent_end: [Option<u32>; 2] = [None, None];
        let mut intervals: [Vec<(u32, u32)>; 2] = [Vec::new(), Vec::new()];
        let mut last_ack: [Option<u32>; 2] = [None, None];
        for s in pkts {
            let t = s.tcp.as_ref().unwrap();
            let i = usize::from(s.src != Some(f.client));
            let len = s.payload_len as u32 + u32::from(t.flags & 0x03 != 0);
            let end = t.seq.wrapping_add(len);
            intervals[i].push((t.seq, end));
            let prev = sent_end[i].unwrap_or(t.seq);
            if end.wrapping_sub(prev) as i32 > 0 || sent_end[i].is_none() {
                sent_end[i] = Some(end);
            }
            if t.flags & 0x10 != 0 {
                if let Some(other_end) = sent_end[1 - i] {
                    assert!(
                        other_end.wrapping_sub(t.ack) as i32 >= 0,
                        "{}: ack {} beyond data sent ({other_end})",
                        f.label,
                        t.ack
                    );
                }
                if let Some(prev) = last_ack[i] {
                    assert!(
                        t.ack.wrapping_sub(prev) as i32 >= 0,
                        "{}: ack went back",
                        f.label
                    );
                }
                last_ack[i] = Some(t.ack);
            }
        }
        for iv in &mut intervals {
            if iv.is_empty() {
                continue;
            }
            // the lowest sequence number (in wrapping order) starts the range
            let first = iv[0].0;
            let base = iv
                .iter()
                .map(|(a, _)| *a)
                .min_by_key(|a| a.wrapping_sub(first) as i32)
                .unwrap_or(first);
            iv.sort_by_key(|(a, _)| a.wrapping_sub(base));
            let mut reach = 0u32;
            for (a, b) in iv.iter() {
                let (a, b) = (a.wrapping_sub(base), b.wrapping_sub(base));
                assert!(a <= reach, "{}: hole before relative seq {a}", f.label);
                reach = reach.max(b);
            }
        }
    }
}

fn check_capture(packets: &[GenPacket], truth: &Truth) -> Vec<Seen> {
    let seen = parse_all(packets);
    for (k, s) in seen.iter().enumerate() {
        assert!(s.checksums_ok, "frame {} has a bad checksum", k + 1);
        assert!(s.frame_len >= 60);
    }
    assert!(packets.windows(2).all(|w| w[0].ts <= w[1].ts), "time order");
    check_fragments(&seen, packets);
    check_truth(truth, &seen);
    check_tcp_continuity(truth, &seen);
    seen
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

// ------------------------------------------------------------------ scenario

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn tcp_session_has_handshake_mss_segments_and_fin_teardown() {
    let mut s = Scenario::new(t0());
    let c = s.host("10.0.0.1");
    let v = s.remote("192.0.2.7");
    s.tcp(c, 40_000, v, 80)
        .handshake()
        .send(&[7u8; 3000])
        .recv(b"ok")
        .close_fin();
    let cap = s.finish();
    let seen = check_capture(&cap.packets, &cap.truth);
    let shape: Vec<(bool, u8, usize)> = seen
        .iter()
        .map(|s| {
            (
                s.src.unwrap().port == 40_000,
                s.tcp.as_ref().unwrap().flags,
                s.payload_len,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (true, 0x02, 0),
            (false, 0x12, 0),
            (true, 0x10, 0),
            (true, 0x10, 1448),
            (true, 0x10, 1448),
            (true, 0x18, 104),
            (false, 0x10, 0), // the second segment's ACK, a round trip later
            (false, 0x18, 2), // the reply carries the ACK of the last segment
            (true, 0x11, 0),  // the client's FIN carries the ACK of the reply
            (false, 0x11, 0),
            (true, 0x10, 0),
        ]
    );
    // SYN options: MSS 1460, SACK permitted, timestamps, window scale 7.
    let syn = &cap.packets[0].data;
    assert_eq!(&syn[54..58], &[2, 4, 0x05, 0xb4]);
    assert_eq!(&syn[70..74], &[1, 3, 3, 7]);
    assert!(cap.truth.flows[0].handshake);
}

#[test]
fn clocks_follow_rtt_reaction_gap_and_think_time() {
    let mut s = Scenario::new(t0());
    let c = s.host("10.0.0.1");
    let v = s.remote("192.0.2.7");
    s.tcp(c, 40_000, v, 80)
        .at(ms(1000))
        .rtt(ms(50))
        .react(Duration::from_micros(300))
        .gap(Duration::from_micros(10))
        .handshake()
        .think(ms(700))
        .send(b"GET")
        .recv(b"200");
    let cap = s.finish();
    let t: Vec<u64> = cap
        .packets
        .iter()
        .map(|p| p.ts.since(t0()) / 1000)
        .collect();
    // SYN at 1 s, SYN-ACK a round trip later, ACK after the reaction time,
    // the request after 10 µs gap + 700 ms think, the reply (with the ACK)
    // a round trip later, and the client's delayed ACK 40 ms after it.
    assert_eq!(
        t,
        vec![1_000_000, 1_050_000, 1_050_300, 1_750_310, 1_800_310, 1_840_610]
    );
}

#[test]
fn slow_replies_get_bare_acks_and_fast_ones_carry_them() {
    let mut s = Scenario::new(t0());
    let c = s.host("10.0.0.1");
    let v = s.remote("192.0.2.7");
    s.tcp(c, 40_000, v, 22)
        .rtt(ms(80))
        .handshake()
        .recv(b"key") // client echoes within 1 ms: no bare ACK
        .next_in(ms(1))
        .send(b"key") // server sends its next key 300 ms later: bare ACK
        .think(ms(300))
        .recv(b"key");
    let cap = s.finish();
    let seen = parse_all(&cap.packets);
    let dirs: Vec<(bool, usize)> = seen[3..]
        .iter()
        .map(|s| (s.src.unwrap().port == 22, s.payload_len))
        .collect();
    assert_eq!(
        dirs,
        vec![(true, 3), (false, 3), (true, 0), (true, 3), (false, 0)]
    );
    check_capture(&cap.packets, &cap.truth);
}

#[test]
fn retransmission_reordering_midstream_and_rst() {
    let mut s = Scenario::new(t0());
    let c = s.host("10.0.0.1");
    let v = s.host("10.0.0.2");
    s.tcp(c, 40_000, v, 2049)
        .midstream()
        .reorder_next()
        .send(&[1u8; 4000])
        .retransmit_next()
        .recv(&[2u8; 100])
        .close_rst(Dir::ToServer);
    let cap = s.finish();
    let seen = check_capture(&cap.packets, &cap.truth);
    assert!(!cap.truth.flows[0].handshake);
    assert!(seen
        .iter()
        .all(|s| s.tcp.as_ref().unwrap().flags & 0x02 == 0));
    let client_seqs: Vec<u32> = seen
        .iter()
        .filter(|s| s.src.unwrap().port == 40_000 && s.payload_len > 0)
        .map(|s| s.tcp.as_ref().unwrap().seq)
        .collect();
    assert_eq!(
        client_seqs[1].wrapping_add(1448),
        client_seqs[0],
        "second segment first"
    );
    let server_data: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.src.unwrap().port == 2049 && s.payload_len > 0)
        .collect();
    assert_eq!(server_data.len(), 2);
    assert_eq!(
        server_data[0].tcp.as_ref().unwrap().seq,
        server_data[1].tcp.as_ref().unwrap().seq
    );
    assert_eq!(
        server_data[1].ts.since(server_data[0].ts),
        200_000_000 + 20_000
    );
    let last = seen.last().unwrap().tcp.as_ref().unwrap();
    assert_eq!(last.flags, 0x14);
}

#[test]
fn vlan_qinq_ipv6_icmp_fragments_and_arp() {
    let mut s = Scenario::new(t0());
    let a = s.host("10.1.0.1");
    let b = s.host("10.1.0.2");
    let a6 = s.alias("fd00::1", a);
    let b6 = s.remote("2001:db8::2");
    s.udp(a, 5000, b, 53)
        .vlan(Vlan::Dot1q(30))
        .send(b"q")
        .recv(b"r");
    s.udp(a, 5001, b, 7001)
        .vlan(Vlan::QinQ {
            outer: 10,
            inner: 200,
        })
        .send_fragmented(&[9u8; 3000], 1480);
    s.ping(a6, b6).echo(2);
    s.ping(a, b).at(ms(5)).echo(1);
    s.tcp(a6, 41_000, b6, 443)
        .handshake()
        .send(&[0u8; 2000])
        .close_fin();
    s.arp(ms(1), a, b, true);
    s.arp(ms(2), b, a, false);
    let cap = s.finish();
    let seen = check_capture(&cap.packets, &cap.truth);
    assert_eq!(check_fragments(&seen, &cap.packets), 1);
    let tags: Vec<&[u16]> = seen.iter().map(|s| s.tpids.as_slice()).collect();
    assert!(tags.contains(&&[0x8100][..]));
    assert!(tags.contains(&&[0x88A8, 0x8100][..]));
    assert_eq!(cap.truth.non_ip, 3);
    assert_eq!(cap.truth.later_fragments, 2);
    let frag_flow = cap
        .truth
        .flows
        .iter()
        .find(|f| f.server.port == 7001)
        .unwrap();
    assert_eq!(frag_flow.packets, [1, 0]);
    assert_eq!(frag_flow.payload_bytes, [1472, 0]);
    let v6_ping = cap
        .truth
        .flows
        .iter()
        .find(|f| f.proto == proto::ICMPV6)
        .unwrap();
    assert_eq!((v6_ping.client.port, v6_ping.server.port), (128, 129));
    assert_eq!(v6_ping.packets, [2, 2]);
    let v4_ping = cap
        .truth
        .flows
        .iter()
        .find(|f| f.proto == proto::ICMP)
        .unwrap();
    assert_eq!((v4_ping.client.port, v4_ping.server.port), (8, 0));
    assert_eq!(v4_ping.payload_bytes, [56, 56]);
    // v6 TCP segments at MSS 1440 - 12
    assert!(seen
        .iter()
        .any(|s| s.proto == proto::TCP && s.payload_len == 1428));
}

#[test]
fn scenario_frames_decode_with_the_project_decoder() {
    use crate::decode::{decode, Skip};
    let cap = demo::demo(demo::DEMO_SEED);
    let seen = parse_all(&cap.packets);
    for (p, s) in cap.packets.iter().zip(&seen) {
        let frame = p.frame();
        match decode(&frame) {
            Ok(pkt) => {
                assert_eq!(Some(pkt.src), s.src);
                assert_eq!(Some(pkt.dst), s.dst);
                assert_eq!(pkt.payload_len as usize, s.payload_len);
                assert_eq!(pkt.ip_len as usize, s.ip_len);
            }
            Err(Skip::NonIp) => assert!(s.arp),
            Err(Skip::Fragment) => assert_eq!(s.frag, FragState::Later),
            Err(e) => panic!("decoder skipped a generated frame: {e:?}"),
        }
    }
}

// ------------------------------------------------------------------ demo

fn tcp_payloads(seen: &[Seen], port: u16) -> Vec<(bool, &Seen)> {
    seen.iter()
        .filter(|s| s.tcp.is_some())
        .filter(|s| s.src.unwrap().port == port || s.dst.unwrap().port == port)
        .map(|s| (s.src.unwrap().port == port, s))
        .collect()
}

#[test]
fn demo_parses_back_and_matches_its_truth() {
    let cap = demo::demo(demo::DEMO_SEED);
    check_capture(&cap.packets, &cap.truth);
    let bytes = demo_pcap();
    assert!(bytes.len() < 300_000, "demo is {} bytes", bytes.len());
    assert!((300..3000).contains(&cap.packets.len()));
    let span = cap.packets.last().unwrap().ts.since(cap.packets[0].ts);
    assert!(
        (100..130).contains(&(span / 1_000_000_000)),
        "about two minutes"
    );
}

#[test]
fn demo_is_deterministic_and_follows_its_seed() {
    let a = demo_pcap();
    let b = demo::demo(demo::DEMO_SEED).pcap(TsPrecision::Micro);
    assert_eq!(fnv(&a), fnv(&b));
    assert_eq!(a, b);
    let other = demo::demo(1).pcap(TsPrecision::Micro);
    assert_ne!(a, other);
    assert_eq!(scenario("demo", 1).unwrap().pcap(TsPrecision::Micro), other);
    assert!(scenario("bench", 1).is_none());
    let mut via_generate = Vec::new();
    let summary = generate("demo", &GenOptions::default(), &mut via_generate).unwrap();
    assert_eq!(via_generate, a);
    assert_eq!(
        summary.packets,
        demo::demo(demo::DEMO_SEED).packets.len() as u64
    );
    assert!(matches!(
        generate("nope", &GenOptions::default(), Vec::new()),
        Err(GenError::UnknownScenario(_))
    ));
}

#[test]
fn demo_has_exactly_one_external_ssh_session_with_the_tunnel_shape() {
    let cap = demo::demo(demo::DEMO_SEED);
    let external: Vec<&FlowTruth> = cap
        .truth
        .flows
        .iter()
        .filter(|f| match f.server.addr {
            IpAddr::V4(a) => !a.is_private(),
            IpAddr::V6(a) => a.octets()[0] != 0xfd,
        })
        .collect();
    let labels: Vec<&str> = external.iter().map(|f| f.label).collect();
    assert_eq!(labels, vec!["ssh_reverse_tunnel", "stratum"]);
    let tunnel = external[0];
    assert_eq!(tunnel.client.addr.to_string(), demo::NODE);
    assert_eq!(tunnel.server.addr.to_string(), demo::RELAY);
    assert_eq!(tunnel.server.port, 443);

    let seen = parse_all(&cap.packets);
    let sizes: Vec<(bool, &Seen)> = tcp_payloads(&seen, demo::TUNNEL_CLIENT_PORT);
    let data: Vec<(bool, usize)> = sizes
        .iter()
        .filter(|(_, s)| s.payload_len > 0)
        .map(|(c, s)| (*c, s.payload_len))
        .collect();
    // banners, then everything after the client's NEWKEYS (16 bytes)
    let first_client = sizes
        .iter()
        .find(|(c, s)| *c && s.payload_len > 0)
        .unwrap()
        .1;
    assert!(first_client
        .payload
        .starts_with(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"));
    let newkeys = data.iter().position(|&d| d == (true, 16)).unwrap();
    let after: Vec<(bool, usize)> = data[newkeys + 1..newkeys + 15].to_vec();
    assert_eq!(
        after,
        vec![
            (true, 44),   // SERVICE_REQUEST
            (false, 44),  // SERVICE_ACCEPT
            (true, 68),   // USERAUTH_REQUEST none ("tunnel")
            (false, 44),  // USERAUTH_FAILURE "publickey"
            (true, 140),  // public key query
            (false, 100), // PK_OK
            (true, 308),  // signed request
            (false, 28),  // USERAUTH_SUCCESS
            (true, 68),   // GLOBAL_REQUEST tcpip-forward, want reply
            (true, 60),   // no-more-sessions
            (false, 628), // hostkeys-00 push
            (false, 28),  // REQUEST_SUCCESS
            (true, 52),   // keepalive@openssh.com
            (false, 28),  // REQUEST_FAILURE
        ]
    );
    // The inner session: forwarded-tcpip open in, confirmation out, inner
    // banners, KEXINITs, a small ECDH init in and the big reply out.
    let rest = &data[newkeys + 15..];
    assert_eq!(
        &rest[..4],
        &[(false, 92), (true, 44), (true, 76), (false, 76)]
    );
    assert_eq!(rest[4].1 + rest[5].1, 1572, "inner client KEXINIT wrapped");
    assert_eq!(rest[6], (true, 1148), "inner server KEXINIT wrapped");
    assert_eq!(rest[7], (false, 1244), "inner ECDH init wrapped");
    assert!(rest[8].0 && rest[9].0);
    assert_eq!(
        rest[8].1 + rest[9].1,
        1604,
        "inner ECDH reply + NEWKEYS + EXT_INFO wrapped"
    );
    assert_eq!(
        &rest[10..13],
        &[(false, 52), (false, 84), (true, 84)],
        "packetStrider S+40"
    );

    // Reverse typing: 76 in, 76 echoed out, then a bare ACK from the
    // server side.
    let mut triples = 0;
    for w in sizes.windows(3) {
        let k = |i: usize| (w[i].0, w[i].1.payload_len);
        if k(0) == (false, 76) && k(1) == (true, 76) && k(2) == (false, 0) {
            triples += 1;
        }
    }
    // "nvidia-smi", "./start.sh" and "exit": every key but Enter, whose
    // echo is followed by the command's output.
    assert_eq!(triples, 24);
}

#[test]
fn demo_carries_dns_tls_ntp_stratum_and_the_odd_frames() {
    let cap = demo::demo(demo::DEMO_SEED);
    let seen = parse_all(&cap.packets);
    let text = |s: &Seen| String::from_utf8_lossy(&s.payload).into_owned();
    let all: Vec<String> = seen.iter().map(text).collect();
    let joined = all.join("\n");
    for needle in [
        "mining.subscribe",
        "mining.authorize",
        "mining.set_difficulty",
        "mining.notify",
        "mining.submit",
        "pypi",
        "vps-relay",
        "git-upload-pack",
    ] {
        if needle == "git-upload-pack" {
            assert!(!joined.contains(needle), "the git command is encrypted");
        } else {
            assert!(joined.contains(needle), "missing {needle}");
        }
    }
    // DNS answers carry the relay and the pool addresses.
    let relay: [u8; 4] = [198, 51, 100, 23];
    assert!(seen
        .iter()
        .any(|s| s.src.is_some_and(|e| e.port == 53) && s.payload.windows(4).any(|w| w == relay)));
    // TLS ClientHello with SNI over IPv6.
    assert!(seen.iter().any(|s| s.src.is_some_and(|e| e.addr.is_ipv6())
        && s.payload.starts_with(&[0x16, 0x03, 0x01])
        && text(s).contains("pypi.mirror.internal")));
    // NTP: 48-byte datagrams both ways on port 123.
    assert_eq!(
        seen.iter()
            .filter(|s| s.dst.is_some_and(|e| e.port == 123) || s.src.is_some_and(|e| e.port == 123))
            .map(|s| s.payload_len)
            .collect::<Vec<_>>(),
        vec![48, 48]
    );
    assert!(seen.iter().any(|s| s.arp));
    assert!(seen.iter().any(|s| s.vlan_ids == [30]));
    let nfs = cap.truth.flows.iter().find(|f| f.label == "nfs").unwrap();
    assert!(!nfs.handshake);
    assert_eq!(nfs.vlan, Vlan::Dot1q(30));
    // one retransmitted segment in the NFS flow
    let nfs_seqs: Vec<u32> = tcp_payloads(&seen, 871)
        .iter()
        .filter(|(c, s)| *c && s.payload_len > 0)
        .map(|(_, s)| s.tcp.as_ref().unwrap().seq)
        .collect();
    let mut dedup = nfs_seqs.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(nfs_seqs.len(), dedup.len() + 1);
    assert!(
        nfs_seqs
            .windows(2)
            .any(|w| w[1].wrapping_sub(w[0]) as i32 <= 0),
        "a reordered pair"
    );
}

#[test]
fn capture_formats_round_trip_through_pcap_parser() {
    use pcap_parser::{Block, PcapBlockOwned, PcapError};
    let cap = demo::demo(demo::DEMO_SEED);
    for bytes in [
        cap.pcap(TsPrecision::Micro),
        cap.pcap(TsPrecision::Nano),
        cap.pcapng(TsPrecision::Micro),
        cap.pcapng(TsPrecision::Nano),
    ] {
        let mut reader = pcap_parser::create_reader(1 << 20, &bytes[..]).unwrap();
        let mut frames = Vec::new();
        loop {
            match reader.next() {
                Ok((off, block)) => {
                    match block {
                        PcapBlockOwned::Legacy(b) => frames.push(b.data.to_vec()),
                        PcapBlockOwned::NG(Block::EnhancedPacket(b)) => {
                            frames.push(b.data[..b.caplen as usize].to_vec())
                        }
                        _ => {}
                    }
                    reader.consume(off);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(frames.len(), cap.packets.len());
        assert!(frames.iter().zip(&cap.packets).all(|(a, b)| *a == b.data));
    }
}

// ------------------------------------------------------------------ bench

fn small_bench(seed: u64) -> (Vec<GenPacket>, BenchReport) {
    let cfg = BenchConfig {
        packets: 40_000,
        flows: 4_000,
        seed,
        truth: true,
        ..BenchConfig::default()
    };
    let mut frames = Vec::new();
    let report = bench::run(&cfg, &mut frames).unwrap();
    (frames, report)
}

#[test]
fn bench_frames_parse_back_and_match_truth() {
    let (frames, report) = small_bench(7);
    assert_eq!(report.packets, 40_000);
    assert_eq!(frames.len(), 40_000);
    assert_eq!(report.flows, 4_000);
    let truth = report.truth.as_ref().unwrap();
    let seen = check_capture(&frames, truth);
    assert!(
        check_fragments(&seen, &frames) > 0,
        "fragmented datagrams present"
    );
    let avg = report.bytes / report.packets;
    assert!((450..750).contains(&avg), "average frame {avg}");
    assert!(
        report.peak_open > 1_000,
        "many flows open at once: {}",
        report.peak_open
    );
    assert!(report.open_at_end > 0 && report.open_at_end < report.flows);
}

#[test]
fn bench_mix_has_the_intended_shares() {
    let (frames, report) = small_bench(11);
    let truth = report.truth.unwrap();
    let flows = truth.flows.len() as f64;
    let share = |pred: &dyn Fn(&FlowTruth) -> bool| {
        truth.flows.iter().filter(|f| pred(f)).count() as f64 / flows
    };
    let v6 = share(&|f| f.client.addr.is_ipv6());
    let tagged = share(&|f| f.vlan != Vlan::Untagged);
    let qinq = share(&|f| matches!(f.vlan, Vlan::QinQ { .. }));
    let midstream = share(&|f| f.label.ends_with("_midstream"));
    assert!((0.09..0.15).contains(&v6), "IPv6 {v6}");
    assert!((0.075..0.125).contains(&tagged), "VLAN {tagged}");
    assert!((0.003..0.02).contains(&qinq), "QinQ {qinq}");
    assert!((0.17..0.23).contains(&midstream), "midstream {midstream}");
    let labels = |l: &str| truth.flows.iter().filter(|f| f.label == l).count();
    for l in [
        "tls",
        "dns",
        "keepalive",
        "quic",
        "http",
        "icmp_echo",
        "ntp",
        "bulk_internal",
    ] {
        assert!(labels(l) > 0, "{l} flows present");
    }
    assert!(labels("udp_fragmented") > 0);
    let ssh = truth
        .flows
        .iter()
        .filter(|f| f.label.starts_with("ssh"))
        .count();
    assert!(ssh > 0, "SSH flows present");
    // frame level: ARP, tags, fragments, IPv6
    let seen = parse_all(&frames);
    assert!(seen.iter().filter(|s| s.arp).count() as u64 == truth.non_ip && truth.non_ip > 0);
    assert!(seen.iter().any(|s| s.tpids == [0x88A8, 0x8100]));
    assert!(seen.iter().any(|s| s.frag == FragState::Later));
    let v6_frames = seen
        .iter()
        .filter(|s| s.src.is_some_and(|e| e.addr.is_ipv6()))
        .count();
    assert!(v6_frames > 0);
    // SSH banners and KEXINITs on 22, 443 and 2222
    let banner_ports: std::collections::BTreeSet<u16> = seen
        .iter()
        .filter(|s| s.payload.starts_with(b"SSH-2.0-"))
        .map(|s| s.src.unwrap().port.min(s.dst.unwrap().port))
        .collect();
    assert!(banner_ports.contains(&22), "{banner_ports:?}");
}

#[test]
fn bench_is_deterministic_streams_the_same_bytes_and_follows_its_seed() {
    let cfg = BenchConfig {
        packets: 5_000,
        flows: 500,
        seed: 3,
        ..BenchConfig::default()
    };
    let mut a = PcapWriter::new(Vec::new(), TsPrecision::Nano).unwrap();
    bench::run(&cfg, &mut a).unwrap();
    let mut b = PcapWriter::new(Vec::new(), TsPrecision::Nano).unwrap();
    bench::run(&cfg, &mut b).unwrap();
    let (a, b) = (a.into_inner(), b.into_inner());
    assert_eq!(fnv(&a), fnv(&b));
    let mut frames = Vec::new();
    bench::run(&cfg, &mut frames).unwrap();
    assert_eq!(
        write_pcap(Vec::new(), &frames, TsPrecision::Nano).unwrap(),
        a
    );
    let other = BenchConfig {
        seed: 4,
        ..cfg.clone()
    };
    let mut c = PcapWriter::new(Vec::new(), TsPrecision::Nano).unwrap();
    bench::run(&other, &mut c).unwrap();
    assert_ne!(fnv(&c.into_inner()), fnv(&a));
    let opts = GenOptions {
        seed: Some(3),
        packets: Some(5_000),
        flows: Some(500),
        format: CaptureFormat::Pcap(TsPrecision::Nano),
    };
    let mut via_generate = Vec::new();
    let summary = generate("bench", &opts, &mut via_generate).unwrap();
    assert_eq!(via_generate, a);
    assert_eq!(summary.packets, 5_000);
}

// ------------------------------------------------------------------ properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn vlan_strategy() -> impl Strategy<Value = Vlan> {
        prop_oneof![
            Just(Vlan::Untagged),
            (0u16..4096).prop_map(Vlan::Dot1q),
            (0u16..4096, 0u16..4096).prop_map(|(outer, inner)| Vlan::QinQ { outer, inner }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any mix of message sizes, MSS, tags, address family, options and
        /// teardown parses back with valid checksums, continuous sequence
        /// numbers and a truth that matches the recount.
        #[test]
        fn any_tcp_script_parses_back_consistently(
            sizes in proptest::collection::vec((any::<bool>(), 0usize..5000), 0..8),
            mss in 100u16..1500,
            vlan in vlan_strategy(),
            v6 in any::<bool>(),
            stamps in any::<bool>(),
            handshake in any::<bool>(),
            close in 0u8..3,
            reorder in any::<bool>(),
            retransmit in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut s = Scenario::with_seed(t0(), seed);
            let (c, v) = if v6 {
                (s.host("fd00::1"), s.remote("2001:db8::9"))
            } else {
                (s.host("10.0.0.1"), s.remote("192.0.2.9"))
            };
            {
                let mut t = s.tcp(c, 40_000, v, 443);
                t.vlan(vlan).mss(mss).timestamps(stamps);
                if handshake {
                    t.handshake();
                }
                if reorder {
                    t.reorder_next();
                }
                if retransmit {
                    t.retransmit_next();
                }
                for (up, n) in &sizes {
                    let dir = if *up { Dir::ToServer } else { Dir::ToClient };
                    t.data(dir, &vec![0xA5; *n]);
                }
                match close {
                    0 => { t.close_fin(); }
                    1 => { t.close_rst(Dir::ToClient); }
                    _ => {}
                }
            }
            let cap = s.finish();
            let seen = check_capture(&cap.packets, &cap.truth);
            let sent: usize = sizes.iter().map(|(_, n)| n).sum();
            let carried: usize = seen.iter().map(|s| s.payload_len).sum();
            prop_assert!(carried >= sent);
            prop_assert!(seen.iter().all(|s| s.payload_len <= usize::from(mss)));
        }

        /// Fragmented datagrams of any size reassemble with a valid UDP
        /// checksum, and only the first fragment counts toward the flow.
        #[test]
        fn any_fragmented_datagram_reassembles(len in 0usize..9000, size in 16usize..1500) {
            let mut s = Scenario::new(t0());
            let c = s.host("10.0.0.1");
            let v = s.host("10.0.0.2");
            s.udp(c, 5000, v, 7001).send_fragmented(&vec![3u8; len], size);
            let cap = s.finish();
            let seen = check_capture(&cap.packets, &cap.truth);
            let frag = (size / 8 * 8).max(16);
            let expected = (len + 8).div_ceil(frag);
            prop_assert_eq!(seen.len(), expected);
            prop_assert_eq!(cap.truth.flows[0].packets, [1, 0]);
            prop_assert_eq!(cap.truth.later_fragments as usize, expected - 1);
        }
    }
}

/// The capture built into the binary for `egresswatch demo` is exactly
/// what the generator makes (regenerate with
/// `egresswatch generate demo -o src/gen/demo.pcap`).
#[test]
fn embedded_demo_capture_is_current() {
    assert!(super::demo_pcap() == include_bytes!("demo.pcap"));
}
