//! Frame → packet: the link layer walked by hand (it is a few fixed
//! offsets), IP with etherparse's lax IP slicer, transport headers with
//! etherparse's slices. Borrowing only, no allocation, no panics: a frame
//! that cannot be decoded yields a [`Skip`] reason that the caller counts.

use crate::flow::key::{icmp_ports, proto, Endpoint, FlowKey, Side};
use crate::source::{Frame, LinkType};
use crate::time::Timestamp;
use etherparse::err::ip::LaxHeaderSliceError;
use etherparse::{
    ArpPacketSlice, EtherType, Ipv6ExtensionSlice, LaxIpPayloadSlice, LaxIpSlice,
    LaxMacsecPayloadSlice, LaxMacsecSlice, TcpSlice, UdpSlice,
};
use std::net::IpAddr;

/// Why a frame was not turned into a packet. The names are stable: they are
/// metric label values and summary lines.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// The frame ends inside a header.
    Truncated,
    /// A link type we do not decode.
    UnsupportedLink,
    /// ARP, LLDP and other non-IP frames.
    NonIp,
    /// A header field is impossible (bad IHL, length smaller than the
    /// header, malformed TCP options, IPv6 extension loop, ...).
    BadHeader,
    /// A length field claims more bytes than the frame had on the wire.
    BadLength,
    /// A non-first IP fragment: it has no ports, so it joins no flow.
    Fragment,
}

impl Skip {
    pub const ALL: [Skip; 6] = [
        Skip::Truncated,
        Skip::UnsupportedLink,
        Skip::NonIp,
        Skip::BadHeader,
        Skip::BadLength,
        Skip::Fragment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Skip::Truncated => "truncated",
            Skip::UnsupportedLink => "unsupported_link",
            Skip::NonIp => "non_ip",
            Skip::BadHeader => "bad_header",
            Skip::BadLength => "bad_length",
            Skip::Fragment => "fragment",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// TCP header fields the flow tracker and the analyzers use.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
}

/// TCP flag bits as on the wire (FIN = 0x01 ... CWR = 0x80).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
}

/// The transport layer of a decoded packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(TcpInfo),
    Udp,
    Icmp {
        icmp_type: u8,
        code: u8,
    },
    /// Any other IP protocol: keyed by addresses only.
    Other,
}

/// IP fragmentation of a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fragment {
    None,
    /// The first fragment: it carries the transport header and counts
    /// toward its flow.
    First,
}

/// A decoded packet, borrowing the frame's bytes.
#[derive(Copy, Clone, Debug)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub proto: u8,
    pub transport: Transport,
    /// Bytes of the frame on the wire (what EVE's `bytes_to*` count).
    pub frame_len: u32,
    /// Bytes of the IP packet (header included), from its length field.
    pub ip_len: u32,
    /// Transport payload length on the wire.
    pub payload_len: u32,
    /// The captured part of the transport payload (shorter than
    /// `payload_len` when the snap length cut it).
    pub payload: &'a [u8],
    pub fragment: Fragment,
    /// ICMP types without a counterpart are one-way in Community ID.
    pub one_way: bool,
    /// ICMP errors: the packet that caused the error, as (source,
    /// destination, protocol), so the error can count toward its flow.
    pub icmp_inner: Option<(Endpoint, Endpoint, u8)>,
}

impl Packet<'_> {
    /// The canonical flow key and which side of it sent this packet.
    pub fn flow_key(&self) -> (FlowKey, Side) {
        FlowKey::new(self.src, self.dst, self.proto, self.one_way)
    }

    pub fn tcp(&self) -> Option<&TcpInfo> {
        match &self.transport {
            Transport::Tcp(t) => Some(t),
            _ => None,
        }
    }
}

/// A decoded packet detached from its frame's bytes (the payload is kept as
/// a position in them), so one thread can decode and another analyze.
#[derive(Copy, Clone, Debug)]
pub struct Detached {
    packet: Packet<'static>,
    payload_at: u32,
    payload_caplen: u32,
}

impl Detached {
    /// `pkt` decoded from `data`.
    pub fn new(pkt: &Packet<'_>, data: &[u8]) -> Detached {
        Detached {
            packet: Packet {
                payload: &[],
                ..*pkt
            },
            payload_at: offset_of(data, pkt.payload),
            payload_caplen: pkt.payload.len() as u32,
        }
    }

    /// The packet again, borrowing `data` (the bytes it was decoded from).
    pub fn attach<'a>(&self, data: &'a [u8]) -> Packet<'a> {
        let (at, len) = (self.payload_at as usize, self.payload_caplen as usize);
        Packet {
            payload: data.get(at..at + len).unwrap_or(&[]),
            ..self.packet
        }
    }
}

/// Decodes one frame.
pub fn decode<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, Skip> {
    let ip_bytes = link_payload(frame.link, frame.data)?;
    let (sliced, stop) = LaxIpSlice::from_slice(ip_bytes).map_err(|e| match e {
        LaxHeaderSliceError::Len(_) => Skip::Truncated,
        LaxHeaderSliceError::Content(_) => Skip::BadHeader,
    })?;
    let ip = match &sliced {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            if v4.is_payload_fragmented() && h.fragments_offset().value() != 0 {
                return Err(Skip::Fragment);
            }
            IpPart {
                src: IpAddr::from(h.source_addr()),
                dst: IpAddr::from(h.destination_addr()),
                len: u32::from(h.total_len()),
                header_len: offset_of(h.slice(), v4.payload().payload),
                payload: v4.payload(),
            }
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            if v6.is_payload_fragmented() && !is_first_v6_fragment(v6.extensions()) {
                return Err(Skip::Fragment);
            }
            IpPart {
                src: IpAddr::from(h.source_addr()),
                dst: IpAddr::from(h.destination_addr()),
                len: 40 + u32::from(h.payload_length()),
                header_len: offset_of(h.slice(), v6.payload().payload),
                payload: v6.payload(),
            }
        }
    };
    if stop.is_some() {
        // An IPv6 extension or IP authentication header is broken.
        return Err(Skip::BadHeader);
    }
    check_ip_len(frame, ip.len, ip.payload)?;
    let l4 = decode_transport(ip.payload)?;
    Ok(build_packet(frame, &ip, l4))
}

/// The IP layer of a packet.
struct IpPart<'s, 'a> {
    src: IpAddr,
    dst: IpAddr,
    /// Total length from the header (IPv6: fixed header + payload length).
    len: u32,
    /// Fixed header plus options or extension headers.
    header_len: u32,
    payload: &'s LaxIpPayloadSlice<'a>,
}

/// How far into `outer` the slice `inner` starts (both borrow one frame).
fn offset_of(outer: &[u8], inner: &[u8]) -> u32 {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize) as u32
}

/// The part of the packet from the transport header on.
struct L4<'a> {
    transport: Transport,
    icmp_inner: Option<(Endpoint, Endpoint, u8)>,
    sport: u16,
    dport: u16,
    header_len: usize,
    one_way: bool,
    payload: &'a [u8],
}

fn build_packet<'a>(frame: &Frame<'a>, ip: &IpPart<'_, 'a>, l4: L4<'a>) -> Packet<'a> {
    let payload_len = ip
        .len
        .saturating_sub(ip.header_len)
        .saturating_sub(l4.header_len as u32);
    Packet {
        ts: frame.ts,
        src: Endpoint {
            addr: ip.src,
            port: l4.sport,
        },
        dst: Endpoint {
            addr: ip.dst,
            port: l4.dport,
        },
        proto: ip.payload.ip_number.0,
        transport: l4.transport,
        frame_len: frame.orig_len,
        ip_len: ip.len,
        payload_len: payload_len.max(l4.payload.len() as u32),
        payload: l4.payload,
        fragment: if ip.payload.fragmented {
            Fragment::First
        } else {
            Fragment::None
        },
        one_way: l4.one_way,
        icmp_inner: l4.icmp_inner,
    }
}

/// VLAN and MACsec headers walked at most (as etherparse's slicer does).
const LINK_EXTENSIONS: usize = 3;

/// The IP packet inside a frame's link layer.
fn link_payload(link: LinkType, data: &[u8]) -> Result<&[u8], Skip> {
    match link {
        LinkType::Ethernet => {
            let ty = data.get(12..14).ok_or(Skip::Truncated)?;
            ether_payload(ether_type(ty), &data[14..])
        }
        LinkType::RawIp => Ok(data),
        LinkType::Null | LinkType::Loop => data.get(4..).ok_or(Skip::Truncated),
        LinkType::LinuxSll => ether_typed(data, 16, 14),
        LinkType::LinuxSll2 => ether_typed(data, 20, 0),
        LinkType::Other(_) => Err(Skip::UnsupportedLink),
    }
}

/// Linux cooked captures: a fixed header with an EtherType at `type_at`.
fn ether_typed(data: &[u8], header_len: usize, type_at: usize) -> Result<&[u8], Skip> {
    let ty = data.get(type_at..type_at + 2).ok_or(Skip::Truncated)?;
    let payload = data.get(header_len..).ok_or(Skip::Truncated)?;
    ether_payload(ether_type(ty), payload)
}

fn ether_type(bytes: &[u8]) -> EtherType {
    EtherType(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Walks VLAN tags (802.1Q, QinQ) and unencrypted MACsec to the IP packet.
fn ether_payload(mut ty: EtherType, mut payload: &[u8]) -> Result<&[u8], Skip> {
    use etherparse::ether_type::*;
    let mut extensions = 0;
    loop {
        let is_extension = matches!(
            ty,
            VLAN_TAGGED_FRAME | PROVIDER_BRIDGING | VLAN_DOUBLE_TAGGED_FRAME | MACSEC
        );
        if is_extension {
            if extensions == LINK_EXTENSIONS {
                return Err(Skip::NonIp); // more headers than are walked
            }
            extensions += 1;
        }
        (ty, payload) = match ty {
            IPV4 | IPV6 => return Ok(payload),
            MACSEC => macsec_payload(payload)?,
            ARP => return Err(arp_skip(payload)),
            _ if is_extension => {
                let tag = payload.get(..4).ok_or(Skip::Truncated)?;
                (ether_type(&tag[2..]), &payload[4..])
            }
            _ => return Err(Skip::NonIp),
        };
    }
}

/// What an integrity-only MACsec frame carries (an encrypted one is not
/// decoded).
fn macsec_payload(data: &[u8]) -> Result<(EtherType, &[u8]), Skip> {
    match LaxMacsecSlice::from_slice(data) {
        Ok(m) => match m.payload {
            LaxMacsecPayloadSlice::Unmodified(e) => Ok((e.ether_type, e.payload)),
            LaxMacsecPayloadSlice::Modified { .. } => Err(Skip::NonIp),
        },
        Err(_) => Err(Skip::Truncated),
    }
}

/// ARP is not IP; a cut ARP packet is counted as truncated.
fn arp_skip(data: &[u8]) -> Skip {
    match ArpPacketSlice::from_slice(data) {
        Ok(_) => Skip::NonIp,
        Err(_) => Skip::Truncated,
    }
}

fn is_first_v6_fragment(exts: &etherparse::Ipv6ExtensionsSlice<'_>) -> bool {
    exts.clone().into_iter().any(|ext| match ext {
        Ipv6ExtensionSlice::Fragment(f) => f.fragment_offset().value() == 0,
        _ => false,
    })
}

/// A length field that claims more than the frame carried on the wire is a
/// lie (snap-length cuts are fine: the wire length covers them).
fn check_ip_len(frame: &Frame<'_>, ip_len: u32, p: &LaxIpPayloadSlice<'_>) -> Result<(), Skip> {
    if ip_len > frame.orig_len {
        return Err(Skip::BadLength);
    }
    if p.incomplete && frame.data.len() as u32 >= frame.orig_len {
        // Everything the wire carried was captured, yet the IP length
        // field promises more.
        return Err(Skip::BadLength);
    }
    Ok(())
}

/// The transport header at the start of the IP payload (a first fragment
/// carries it too).
fn decode_transport<'a>(p: &LaxIpPayloadSlice<'a>) -> Result<L4<'a>, Skip> {
    let data = p.payload;
    match p.ip_number.0 {
        proto::TCP => match TcpSlice::from_slice(data) {
            Ok(tcp) => tcp_l4(&tcp),
            Err(etherparse::err::tcp::HeaderSliceError::Content(_)) if !p.fragmented => {
                Err(Skip::BadHeader)
            }
            Err(_) => Err(Skip::Truncated),
        },
        proto::UDP => {
            let udp = UdpSlice::from_slice_lax(data).map_err(|_| Skip::Truncated)?;
            Ok(L4 {
                transport: Transport::Udp,
                icmp_inner: None,
                sport: udp.source_port(),
                dport: udp.destination_port(),
                header_len: 8,
                one_way: false,
                payload: udp.payload(),
            })
        }
        proto::ICMP | proto::ICMPV6 => {
            let h = data.get(..8).ok_or(Skip::Truncated)?;
            let is_v6 = p.ip_number.0 == proto::ICMPV6;
            Ok(icmp_l4(is_v6, h[0], h[1], &data[8..]))
        }
        _ => Ok(other_l4()),
    }
}

fn tcp_l4<'a>(tcp: &TcpSlice<'a>) -> Result<L4<'a>, Skip> {
    if !tcp_options_valid(tcp.options()) {
        return Err(Skip::BadHeader);
    }
    let mut flags = 0u8;
    for (set, bit) in [
        (tcp.fin(), TcpFlags::FIN),
        (tcp.syn(), TcpFlags::SYN),
        (tcp.rst(), TcpFlags::RST),
        (tcp.psh(), TcpFlags::PSH),
        (tcp.ack(), TcpFlags::ACK),
        (tcp.urg(), TcpFlags::URG),
        (tcp.ece(), TcpFlags::ECE),
        (tcp.cwr(), TcpFlags::CWR),
    ] {
        if set {
            flags |= bit;
        }
    }
    Ok(L4 {
        icmp_inner: None,
        transport: Transport::Tcp(TcpInfo {
            flags: TcpFlags(flags),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            window: tcp.window_size(),
        }),
        sport: tcp.source_port(),
        dport: tcp.destination_port(),
        header_len: usize::from(tcp.data_offset()) * 4,
        one_way: false,
        payload: tcp.payload(),
    })
}

/// Walks TCP options without decoding them: every option after the
/// one-byte kinds (EOL, NOP) must carry a length of at least 2 that fits.
fn tcp_options_valid(mut opts: &[u8]) -> bool {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => return true,
            1 => opts = &opts[1..],
            _ => match opts.get(1) {
                Some(&len) if len >= 2 && usize::from(len) <= opts.len() => {
                    opts = &opts[usize::from(len)..]
                }
                _ => return false,
            },
        }
    }
    true
}

fn icmp_l4(is_v6: bool, icmp_type: u8, code: u8, payload: &[u8]) -> L4<'_> {
    let (sport, dport, one_way) = icmp_ports(is_v6, icmp_type, code);
    let is_error = if is_v6 {
        (1..=4).contains(&icmp_type)
    } else {
        matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
    };
    L4 {
        transport: Transport::Icmp { icmp_type, code },
        icmp_inner: if is_error { inner_tuple(payload) } else { None },
        sport,
        dport,
        header_len: 8,
        one_way,
        payload,
    }
}

/// The 5-tuple of the packet quoted in an ICMP error (its IP header and
/// the first 8 bytes of its transport header).
fn inner_tuple(quoted: &[u8]) -> Option<(Endpoint, Endpoint, u8)> {
    let (sliced, _) = LaxIpSlice::from_slice(quoted).ok()?;
    let (src, dst, payload) = match sliced {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v4.payload().clone(),
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v6.payload().clone(),
            )
        }
    };
    let proto = payload.ip_number.0;
    if !matches!(proto, proto::TCP | proto::UDP | proto::SCTP) {
        return None;
    }
    let p = payload.payload.get(..4)?;
    let sport = u16::from_be_bytes([p[0], p[1]]);
    let dport = u16::from_be_bytes([p[2], p[3]]);
    Some((
        Endpoint {
            addr: src,
            port: sport,
        },
        Endpoint {
            addr: dst,
            port: dport,
        },
        proto,
    ))
}

fn other_l4<'a>() -> L4<'a> {
    L4 {
        icmp_inner: None,
        transport: Transport::Other,
        sport: 0,
        dport: 0,
        header_len: 0,
        one_way: false,
        payload: &[],
    }
}

#[cfg(test)]
mod tests;
