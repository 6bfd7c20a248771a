use super::*;
use etherparse::PacketBuilder;

fn frame(link: LinkType, data: &[u8]) -> Frame<'_> {
    Frame {
        ts: Timestamp::from_secs(1),
        link,
        data,
        orig_len: data.len() as u32,
        input: 0,
    }
}

fn tcp_v4(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([10, 0, 0, 1], [198, 51, 100, 7], 64)
        .tcp(40000, 443, 1000, 64240)
        .syn();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn ethernet_tcp() {
    let data = tcp_v4(b"hello");
    let p = decode(&frame(LinkType::Ethernet, &data)).unwrap();
    assert_eq!(p.src.addr.to_string(), "10.0.0.1");
    assert_eq!((p.src.port, p.dst.port, p.proto), (40000, 443, 6));
    assert_eq!(p.payload, b"hello");
    assert_eq!(
        (p.ip_len, p.payload_len, p.frame_len),
        (20 + 20 + 5, 5, 14 + 45)
    );
    let tcp = p.tcp().unwrap();
    assert!(tcp.flags.syn() && !tcp.flags.ack());
    assert_eq!(tcp.seq, 1000);
}

#[test]
fn vlan_and_qinq() {
    let single = PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(etherparse::VlanId::try_new(7).unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5353, 53);
    let mut data = Vec::new();
    single.write(&mut data, b"q").unwrap();
    assert_eq!(
        decode(&frame(LinkType::Ethernet, &data)).unwrap().dst.port,
        53
    );

    let double = PacketBuilder::ethernet2([1; 6], [2; 6])
        .double_vlan(
            etherparse::VlanId::try_new(7).unwrap(),
            etherparse::VlanId::try_new(8).unwrap(),
        )
        .ipv6([0xfd; 16], [0x20; 16], 64)
        .udp(5353, 53);
    let mut data = Vec::new();
    double.write(&mut data, b"q").unwrap();
    let p = decode(&frame(LinkType::Ethernet, &data)).unwrap();
    assert!(p.src.addr.is_ipv6());
    assert_eq!(p.ip_len, 40 + 8 + 1);
}

#[test]
fn cooked_raw_and_loopback_links() {
    let eth = tcp_v4(b"x");
    let ip = &eth[14..];
    assert!(decode(&frame(LinkType::RawIp, ip)).is_ok());
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(ip);
    assert!(decode(&frame(LinkType::Null, &null)).is_ok());
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    assert_eq!(
        decode(&frame(LinkType::LinuxSll, &sll)).unwrap().dst.port,
        443
    );
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(ip);
    assert_eq!(
        decode(&frame(LinkType::LinuxSll2, &sll2)).unwrap().dst.port,
        443
    );
    assert_eq!(
        decode(&frame(LinkType::Other(147), ip)).unwrap_err(),
        Skip::UnsupportedLink
    );
}

#[test]
fn skip_reasons() {
    let data = tcp_v4(b"hello");
    // Cut inside the TCP header.
    let cut = &data[..14 + 20 + 10];
    let f = Frame {
        ts: Timestamp::default(),
        link: LinkType::Ethernet,
        data: cut,
        orig_len: cut.len() as u32,
        input: 0,
    };
    assert_eq!(decode(&f).unwrap_err(), Skip::BadLength);
    // ARP.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2; 6]);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    assert_eq!(
        decode(&frame(LinkType::Ethernet, &arp)).unwrap_err(),
        Skip::NonIp
    );
    // Too short for Ethernet.
    assert_eq!(
        decode(&frame(LinkType::Ethernet, &[0; 5])).unwrap_err(),
        Skip::Truncated
    );
}

#[test]
fn snap_length_cut_keeps_wire_lengths() {
    let data = tcp_v4(&[7u8; 1000]);
    let cut = &data[..100];
    let f = Frame {
        ts: Timestamp::default(),
        link: LinkType::Ethernet,
        data: cut,
        orig_len: data.len() as u32,
        input: 0,
    };
    let p = decode(&f).unwrap();
    assert_eq!(p.payload_len, 1000);
    assert_eq!(p.payload.len(), 100 - 54);
    assert_eq!(p.ip_len, 1040);
}

#[test]
fn lying_ip_length_is_skipped() {
    let mut data = tcp_v4(b"abc");
    data[16..18].copy_from_slice(&2000u16.to_be_bytes()); // IPv4 total length
    assert_eq!(
        decode(&frame(LinkType::Ethernet, &data)).unwrap_err(),
        Skip::BadLength
    );
}

#[test]
fn zero_length_tcp_option_is_bad_header() {
    assert!(tcp_options_valid(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]));
    assert!(tcp_options_valid(&[2, 4, 5, 0xb4, 0, 0, 0, 0]));
    assert!(!tcp_options_valid(&[1, 8, 0, 0]));
    assert!(!tcp_options_valid(&[2, 40]));
}

#[test]
fn fragments() {
    // First fragment of a UDP datagram: ports known, counts toward the flow.
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000);
    let mut data = Vec::new();
    b.write(&mut data, &[0u8; 64]).unwrap();
    data[20] = 0x20; // MF set, offset 0
    let p = decode(&frame(LinkType::Ethernet, &data)).unwrap();
    assert_eq!((p.src.port, p.fragment), (1000, Fragment::First));
    data[20] = 0x00;
    data[21] = 0x10; // offset 16 * 8
    assert_eq!(
        decode(&frame(LinkType::Ethernet, &data)).unwrap_err(),
        Skip::Fragment
    );
}

#[test]
fn icmp_ports_follow_community_id() {
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(1, 1);
    let mut data = Vec::new();
    b.write(&mut data, b"ping").unwrap();
    let p = decode(&frame(LinkType::Ethernet, &data)).unwrap();
    assert_eq!((p.src.port, p.dst.port, p.one_way), (8, 0, false));
}

proptest::proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), link in 0u32..300, orig in 0u32..70000) {
        let f = Frame { ts: Timestamp::default(), link: LinkType::from_linktype(link), data: &data, orig_len: orig, input: 0 };
        let _ = decode(&f);
    }

    /// Mutating bytes of a valid frame never panics either (reaches deeper
    /// layers than random bytes do).
    #[test]
    fn mutated_frames_never_panic(pos in 0usize..80, byte in proptest::num::u8::ANY, cut in 0usize..80) {
        let mut data = tcp_v4(&[1u8; 20]);
        let p = pos % data.len();
        data[p] = byte;
        data.truncate(data.len() - cut.min(data.len()));
        let _ = decode(&frame(LinkType::Ethernet, &data));
    }
}

/// What etherparse's full lax slicer (an independent decoder) finds in an
/// Ethernet frame: addresses, ports and payload of an unfragmented TCP or
/// UDP packet it sliced without error.
fn etherparse_view(data: &[u8]) -> Option<(IpAddr, IpAddr, u16, u16, Vec<u8>)> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
    let sliced = LaxSlicedPacket::from_ethernet(data).ok()?;
    if sliced.stop_err.is_some() {
        return None;
    }
    let (src, dst) = match sliced.net? {
        LaxNetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        LaxNetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    match sliced.transport? {
        TransportSlice::Tcp(t) => Some((
            src,
            dst,
            t.source_port(),
            t.destination_port(),
            t.payload().to_vec(),
        )),
        TransportSlice::Udp(u) => Some((
            src,
            dst,
            u.source_port(),
            u.destination_port(),
            u.payload().to_vec(),
        )),
        _ => None,
    }
}

fn udp_v6_in_qinq(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .double_vlan(7.try_into().unwrap(), 8.try_into().unwrap())
        .ipv6([0xfd; 16], [0x20; 16], 64)
        .udp(5353, 53);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

proptest::proptest! {
    /// Wherever etherparse's full slicer decodes a TCP or UDP packet, the
    /// hand-walked link layer and our transport decoding agree with it.
    #[test]
    fn agrees_with_etherparse_slicer(
        v6 in proptest::bool::ANY,
        muts in proptest::collection::vec((0usize..100, proptest::num::u8::ANY), 0..3),
        cut in 0usize..40,
    ) {
        let mut data = if v6 { udp_v6_in_qinq(&[7u8; 30]) } else { tcp_v4(&[9u8; 30]) };
        for (pos, byte) in muts {
            let p = pos % data.len();
            data[p] = byte;
        }
        data.truncate(data.len() - cut.min(data.len()));
        if let Some((src, dst, sport, dport, payload)) = etherparse_view(&data) {
            match decode(&frame(LinkType::Ethernet, &data)) {
                Ok(p) => {
                    proptest::prop_assert_eq!((p.src.addr, p.dst.addr), (src, dst));
                    proptest::prop_assert_eq!((p.src.port, p.dst.port), (sport, dport));
                    proptest::prop_assert_eq!(p.payload, &payload[..]);
                }
                // Checks etherparse does not make: TCP options, lying lengths.
                Err(skip) => proptest::prop_assert!(matches!(skip, Skip::BadHeader | Skip::BadLength)),
            }
        }
    }
}
