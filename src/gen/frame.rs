//! Ethernet frames built with etherparse's `PacketBuilder`: the builder
//! fills in lengths and the IPv4, TCP, UDP and ICMP checksums. Every
//! function clears `buf` and leaves one complete frame in it, padded to the
//! 60-byte Ethernet minimum the way a tap or mirror port delivers it.

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, IpFragOffset, IpHeaders, IpNumber,
    Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, PacketBuilder,
    PacketBuilderStep, TcpHeader, UdpHeader, VlanId,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Smallest Ethernet frame on the wire without the FCS.
pub const MIN_FRAME: usize = 60;

/// 802.1Q tagging of a frame.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Vlan {
    #[default]
    Untagged,
    /// One 802.1Q tag (TPID 0x8100).
    Dot1q(u16),
    /// QinQ: an 802.1ad service tag (TPID 0x88A8) around an 802.1Q tag.
    QinQ { outer: u16, inner: u16 },
}

impl Vlan {
    /// Bytes the tags add to a frame.
    pub fn tag_len(self) -> usize {
        match self {
            Vlan::Untagged => 0,
            Vlan::Dot1q(_) => 4,
            Vlan::QinQ { .. } => 8,
        }
    }
}

/// Everything below the transport header for one direction of a
/// conversation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Vlan,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// IPv6 flow label (20 bits); unused for IPv4.
    pub flow_label: u32,
}

impl Path {
    /// The same path walked the other way (the reply direction).
    pub fn reversed(&self, ttl: u8) -> Path {
        Path {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            vlan: self.vlan,
            src: self.dst,
            dst: self.src,
            ttl,
            flow_label: self.flow_label,
        }
    }

    pub fn is_v6(&self) -> bool {
        matches!(self.src, IpAddr::V6(_))
    }
}

/// IPv4 fragmentation fields (ignored for IPv6).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Frag {
    /// Byte offset of this fragment's data; must be a multiple of 8.
    pub offset: usize,
    pub more: bool,
}

/// IP header fields that change per packet.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IpFields {
    pub ident: u16,
    pub dont_fragment: bool,
    pub frag: Frag,
}

/// A TCP segment's header fields.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpFields<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Flag bits as on the wire (FIN 0x01 ... CWR 0x80).
    pub flags: u8,
    pub window: u16,
    /// Raw option bytes, a multiple of 4 long, at most 40.
    pub options: &'a [u8],
}

fn v4_pair(src: IpAddr, dst: IpAddr) -> Option<([u8; 4], [u8; 4])> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some((s.octets(), d.octets())),
        _ => None,
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn vlan_id(v: u16) -> VlanId {
    VlanId::try_new(v & VlanId::MAX_U16).unwrap_or(VlanId::ZERO)
}

/// The IP headers of a packet on `path`. Mixed address families (a caller
/// bug) fall back to IPv6 with the IPv4 address mapped.
fn ip_headers(path: &Path, f: IpFields) -> IpHeaders {
    if let Some((src, dst)) = v4_pair(path.src, path.dst) {
        let mut h = Ipv4Header::new(0, path.ttl, IpNumber::UDP, src, dst).unwrap_or_default();
        h.identification = f.ident;
        h.dont_fragment = f.dont_fragment;
        h.more_fragments = f.frag.more;
        h.fragment_offset =
            IpFragOffset::try_new((f.frag.offset / 8) as u16).unwrap_or(IpFragOffset::ZERO);
        IpHeaders::Ipv4(h, Ipv4Extensions::default())
    } else {
        let h = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::try_new(path.flow_label & 0xF_FFFF)
                .unwrap_or(Ipv6FlowLabel::ZERO),
            payload_length: 0,
            next_header: IpNumber::UDP,
            hop_limit: path.ttl,
            source: v6_octets(path.src),
            destination: v6_octets(path.dst),
        };
        IpHeaders::Ipv6(h, Ipv6Extensions::default())
    }
}

fn ip_step(path: &Path, f: IpFields) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(path.src_mac, path.dst_mac);
    let ip = ip_headers(path, f);
    match path.vlan {
        Vlan::Untagged => eth.ip(ip),
        Vlan::Dot1q(id) => eth.single_vlan(vlan_id(id)).ip(ip),
        Vlan::QinQ { outer, inner } => eth.double_vlan(vlan_id(outer), vlan_id(inner)).ip(ip),
    }
}

/// Pads to the Ethernet minimum with zeros (what a capture on a mirror port
/// shows; the IP length field, not the frame length, ends the packet).
/// Returns the IP packet length (the frame before padding, minus the
/// Ethernet header and tags).
fn pad(buf: &mut Vec<u8>, vlan: Vlan) -> usize {
    let ip_len = buf.len().saturating_sub(14 + vlan.tag_len());
    if buf.len() < MIN_FRAME {
        buf.resize(MIN_FRAME, 0);
    }
    ip_len
}

/// Frames are bounded by construction (segments at most an MSS, datagrams
/// at most 64 KiB); a builder error would be a bug in the generator.
const BUILD_INVARIANT: &str = "generated frames stay within IP length limits";

/// A TCP segment carrying `payload`. Returns the IP packet length.
pub fn tcp(
    buf: &mut Vec<u8>,
    path: &Path,
    ip: IpFields,
    t: &TcpFields<'_>,
    payload: &[u8],
) -> usize {
    buf.clear();
    let mut h = TcpHeader::new(t.sport, t.dport, t.seq, t.window);
    h.acknowledgment_number = t.ack;
    h.fin = t.flags & 0x01 != 0;
    h.syn = t.flags & 0x02 != 0;
    h.rst = t.flags & 0x04 != 0;
    h.psh = t.flags & 0x08 != 0;
    h.ack = t.flags & 0x10 != 0;
    h.urg = t.flags & 0x20 != 0;
    h.ece = t.flags & 0x40 != 0;
    h.cwr = t.flags & 0x80 != 0;
    if h.set_options_raw(t.options).is_err() {
        // Options must be a multiple of 4 and at most 40 bytes; send none
        // rather than a malformed header.
        let _ = h.set_options_raw(&[]);
    }
    ip_step(path, ip)
        .tcp_header(h)
        .write(buf, payload)
        .expect(BUILD_INVARIANT);
    pad(buf, path.vlan)
}

/// A UDP datagram carrying `payload`. Returns the IP packet length.
pub fn udp(
    buf: &mut Vec<u8>,
    path: &Path,
    ip: IpFields,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> usize {
    buf.clear();
    ip_step(path, ip)
        .udp(sport, dport)
        .write(buf, payload)
        .expect(BUILD_INVARIANT);
    pad(buf, path.vlan)
}

/// An ICMP (IPv4) or ICMPv6 echo request or reply. Returns the IP packet
/// length.
pub fn icmp_echo(
    buf: &mut Vec<u8>,
    path: &Path,
    ip: IpFields,
    reply: bool,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> usize {
    buf.clear();
    let step = ip_step(path, ip);
    let result = match (path.is_v6(), reply) {
        (false, false) => step.icmpv4_echo_request(id, seq).write(buf, payload),
        (false, true) => step.icmpv4_echo_reply(id, seq).write(buf, payload),
        (true, false) => step.icmpv6_echo_request(id, seq).write(buf, payload),
        (true, true) => step.icmpv6_echo_reply(id, seq).write(buf, payload),
    };
    result.expect(BUILD_INVARIANT);
    pad(buf, path.vlan)
}

/// A whole UDP datagram (header with its checksum over the full payload,
/// then the payload), ready to be cut into IPv4 fragments.
pub fn udp_datagram(path: &Path, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let header = match v4_pair(path.src, path.dst) {
        Some((src, dst)) => UdpHeader::with_ipv4_checksum(
            sport,
            dport,
            &Ipv4Header::new(0, path.ttl, IpNumber::UDP, src, dst).unwrap_or_default(),
            payload,
        ),
        None => UdpHeader::with_ipv6_checksum(
            sport,
            dport,
            &Ipv6Header {
                source: v6_octets(path.src),
                destination: v6_octets(path.dst),
                ..Default::default()
            },
            payload,
        ),
    }
    .expect(BUILD_INVARIANT);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// One IPv4 fragment: `data` is the slice of the transport datagram that
/// starts at `ip.frag.offset`. Returns the IP packet length.
pub fn ipv4_fragment(
    buf: &mut Vec<u8>,
    path: &Path,
    ip: IpFields,
    proto: u8,
    data: &[u8],
) -> usize {
    buf.clear();
    ip_step(path, ip)
        .write(buf, IpNumber(proto), data)
        .expect(BUILD_INVARIANT);
    pad(buf, path.vlan)
}

/// An ARP request (`target_mac` unknown, sent to broadcast) or reply.
pub struct Arp {
    pub reply: bool,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

pub const BROADCAST: [u8; 6] = [0xff; 6];

pub fn arp(buf: &mut Vec<u8>, vlan: Vlan, a: &Arp) {
    buf.clear();
    let (dst, target_hw) = if a.reply {
        (a.target_mac, a.target_mac)
    } else {
        (BROADCAST, [0u8; 6])
    };
    let op = if a.reply {
        ArpOperation::REPLY
    } else {
        ArpOperation::REQUEST
    };
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &a.sender_mac,
        &a.sender_ip.octets(),
        &target_hw,
        &a.target_ip.octets(),
    )
    .expect(BUILD_INVARIANT);
    let eth = PacketBuilder::ethernet2(a.sender_mac, dst);
    let result = match vlan {
        Vlan::Untagged => eth.arp(packet).write(buf),
        Vlan::Dot1q(id) => eth.single_vlan(vlan_id(id)).arp(packet).write(buf),
        Vlan::QinQ { outer, inner } => eth
            .double_vlan(vlan_id(outer), vlan_id(inner))
            .arp(packet)
            .write(buf),
    };
    result.expect(BUILD_INVARIANT);
    pad(buf, vlan);
}

/// Linux's TCP option layout, written into `out`; returns its length.
/// SYN and SYN-ACK: `MSS, SACK_PERM, TS, NOP, WS=7` with timestamps, else
/// `MSS, NOP, NOP, SACK_PERM, NOP, WS=7`; other segments `NOP, NOP, TS`
/// with timestamps, else nothing; RST carries none. `stamps` is (TSval,
/// TSecr); a SYN without ACK sends TSecr 0.
pub fn linux_tcp_options(
    flags: u8,
    mss: u16,
    stamps: Option<(u32, u32)>,
    out: &mut [u8; 20],
) -> usize {
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    if flags & RST != 0 {
        return 0;
    }
    let m = mss.to_be_bytes();
    match (flags & SYN != 0, stamps) {
        (true, Some((val, ecr))) => {
            let ecr = if flags & ACK != 0 { ecr } else { 0 };
            out[..8].copy_from_slice(&[2, 4, m[0], m[1], 4, 2, 8, 10]);
            out[8..12].copy_from_slice(&val.to_be_bytes());
            out[12..16].copy_from_slice(&ecr.to_be_bytes());
            out[16..20].copy_from_slice(&[1, 3, 3, 7]);
            20
        }
        (true, None) => {
            out[..12].copy_from_slice(&[2, 4, m[0], m[1], 1, 1, 4, 2, 1, 3, 3, 7]);
            12
        }
        (false, Some((val, ecr))) => {
            out[..4].copy_from_slice(&[1, 1, 8, 10]);
            out[4..8].copy_from_slice(&val.to_be_bytes());
            out[8..12].copy_from_slice(&ecr.to_be_bytes());
            12
        }
        (false, None) => 0,
    }
}

/// A locally administered unicast MAC derived from an address, so every
/// host in a scenario has a stable, distinct MAC.
pub fn mac_for(addr: IpAddr) -> [u8; 6] {
    let tail: [u8; 4] = match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let o = a.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    let family = if addr.is_ipv6() { 0x06 } else { 0x04 };
    [0x02, family, tail[0], tail[1], tail[2], tail[3]]
}

/// `Ipv6Addr` from 16 bytes (used by the host pools).
pub fn v6(octets: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(octets))
}
