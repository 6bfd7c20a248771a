//! `decode`: one frame through [`egresswatch::decode::decode`].
//!
//! Input: a link-type selector byte ([`LINKS`], modulo), a wire-length
//! byte (0: the frame was captured whole; 1..=127: the capture cut that
//! many bytes; 128..: the record claims that many bytes fewer on the wire
//! than it holds, as a corrupt pcap can), then the frame's bytes.

use super::within;
use egresswatch::decode::{decode, Detached, Packet, Transport};
use egresswatch::flow::key::{proto, FlowKey};
use egresswatch::source::{Frame, LinkType};
use egresswatch::time::Timestamp;

pub const LINKS: [LinkType; 7] = [
    LinkType::Ethernet,
    LinkType::Null,
    LinkType::Loop,
    LinkType::RawIp,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Other(147),
];

/// The input byte that selects `link`.
pub fn link_byte(link: LinkType) -> u8 {
    LINKS.iter().position(|&l| l == link).unwrap_or(0) as u8
}

pub fn run(data: &[u8]) {
    let mut input = crate::input::Input::new(data);
    let link = LINKS[usize::from(input.u8()) % LINKS.len()];
    let wire = input.u8();
    let bytes = input.rest();
    let len = bytes.len() as u32;
    let orig_len = match wire {
        0 => len,
        1..=127 => len + u32::from(wire),
        _ => len.saturating_sub(u32::from(wire - 127)),
    };
    let frame = Frame {
        ts: Timestamp::from_secs(1_700_000_000),
        link,
        data: bytes,
        orig_len,
        input: 0,
    };
    match decode(&frame) {
        Ok(pkt) => check(&frame, &pkt),
        Err(skip) => assert!(!skip.name().is_empty()),
    }
}

fn check(frame: &Frame<'_>, pkt: &Packet<'_>) {
    assert_eq!(pkt.ts, frame.ts);
    assert_eq!(pkt.frame_len, frame.orig_len);
    assert!(
        pkt.ip_len <= pkt.frame_len,
        "IP length beyond the wire length"
    );
    assert!(within(frame.data, pkt.payload), "payload outside the frame");
    assert!(pkt.payload.len() as u64 <= u64::from(pkt.payload_len));
    let want = match pkt.transport {
        Transport::Tcp(_) => Some(proto::TCP),
        Transport::Udp => Some(proto::UDP),
        Transport::Icmp { .. } => None,
        Transport::Other => None,
    };
    if let Some(p) = want {
        assert_eq!(pkt.proto, p, "transport and IP protocol disagree");
    }
    // Crossing threads keeps the packet whole.
    let again = Detached::new(pkt, frame.data).attach(frame.data);
    assert_eq!(again.payload, pkt.payload);
    assert_eq!(
        (again.src, again.dst, again.proto, again.transport),
        (pkt.src, pkt.dst, pkt.proto, pkt.transport)
    );
    assert_eq!(
        (
            again.ip_len,
            again.payload_len,
            again.fragment,
            again.icmp_inner
        ),
        (pkt.ip_len, pkt.payload_len, pkt.fragment, pkt.icmp_inner)
    );
    // Both directions of a conversation share one flow key.
    let (key, side) = pkt.flow_key();
    if !pkt.one_way && pkt.src != pkt.dst {
        let (back, back_side) = FlowKey::new(pkt.dst, pkt.src, pkt.proto, false);
        assert_eq!(back, key);
        assert_eq!(back_side, side.other());
    }
}
