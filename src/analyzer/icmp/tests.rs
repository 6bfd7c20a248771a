use super::*;
use crate::flow::key::Endpoint;
use std::net::{IpAddr, Ipv4Addr};

fn ctx() -> FlowContext {
    let ep = |last: u8, port: u16| Endpoint {
        addr: IpAddr::V4(Ipv4Addr::new(10, 10, 0, last)),
        port,
    };
    FlowContext {
        client: ep(5, 8),
        server: ep(9, 0),
        proto: proto::ICMP,
    }
}

fn view(index: u64, dir: Dir, payload: &[u8]) -> PacketView<'_> {
    PacketView {
        index,
        ts: Timestamp::from_nanos(1_750_000_000_000_000_000 + index * 1_000_000_000),
        dir,
        tcp: None,
        payload,
        payload_len: payload.len() as u32,
    }
}

/// iputils ping: a 16-byte timestamp, then bytes 0x10..0x37.
fn iputils(seq: u64) -> Vec<u8> {
    let mut p: Vec<u8> = (0u8..56).collect();
    p[..8].copy_from_slice(&(1_750_000_000 + seq).to_le_bytes());
    p[8..16].copy_from_slice(&(seq * 7919 % 1_000_000).to_le_bytes());
    p
}

/// Some bytes that change every time (data through a tunnel).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn run(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> EchoAnalyzer {
    let mut a = EchoAnalyzer::default();
    let mut out = Emit::new();
    for (i, (req, rep)) in pairs.into_iter().enumerate() {
        let i = i as u64 * 2 + 1;
        a.on_packet(&view(i, Dir::ToServer, &req), &mut out);
        a.on_packet(&view(i + 1, Dir::ToClient, &rep), &mut out);
    }
    assert!(out.is_empty());
    a
}

#[test]
fn claims_echo_flows_only() {
    assert_eq!(
        IcmpProtocol.probe(&ctx(), Dir::ToServer, b"x"),
        Probe::Match
    );
    let mut unreachable = ctx();
    unreachable.client.port = 3;
    assert_eq!(
        IcmpProtocol.probe(&unreachable, Dir::ToServer, b"x"),
        Probe::NoMatch
    );
    let mut udp = ctx();
    udp.proto = proto::UDP;
    assert_eq!(
        IcmpProtocol.probe(&udp, Dir::ToServer, b"x"),
        Probe::NoMatch
    );
    let mut v6 = ctx();
    (v6.proto, v6.client.port, v6.server.port) = (proto::ICMPV6, 128, 129);
    assert_eq!(IcmpProtocol.probe(&v6, Dir::ToServer, b"x"), Probe::Match);
}

#[test]
fn pings_are_no_tunnel() {
    let windows = b"abcdefghijklmnopqrstuvwabcdefghi".to_vec();
    let patterns = [
        (0..3000)
            .map(|s| (iputils(s), iputils(s)))
            .collect::<Vec<_>>(),
        (0..3000)
            .map(|_| (windows.clone(), windows.clone()))
            .collect(),
        // ping -s 1400 -p ff: large, but the same every time.
        (0..3000)
            .map(|s| {
                let mut p = vec![0xff; 1400];
                p[..8].copy_from_slice(&u64::to_le_bytes(s));
                (p.clone(), p)
            })
            .collect(),
        // A prober with random payloads, echoed: small, so no upload.
        (0..100).map(|s| (data(s, 56), data(s, 56))).collect(),
    ];
    for pairs in patterns {
        let a = run(pairs);
        assert!(a.facts().icmp_tunnel.is_none(), "{:?}", a.dirs);
        assert_eq!(a.unechoed, 0);
        assert!(!a.done());
    }
}

#[test]
fn replies_that_carry_data_are_a_tunnel() {
    // ptunnel-ng / hans: requests and replies each carry their side's data.
    let a = run((0..40).map(|s| (data(s, 100 + s as usize), data(s + 1000, 900))));
    let ev = a.facts().icmp_tunnel.as_ref().expect("tunnel");
    assert!(
        ev.summary
            .starts_with("ICMP echo payloads carry data: 8 of 8 replies echo no request"),
        "{}",
        ev.summary
    );
    assert!(a.done());
    assert!(!ev.packets.is_empty());
    assert_eq!(a.facts().app_proto, None);
}

#[test]
fn an_upload_through_echoes_is_a_tunnel() {
    // Data in the requests, the kernel echoing them.
    let a = run((0..64).map(|s| (data(s, 1000), data(s, 1000))));
    let ev = a.facts().icmp_tunnel.as_ref().expect("tunnel");
    assert_eq!(a.unechoed, 0);
    assert!(ev.summary.contains("0 of"), "{}", ev.summary);
}
