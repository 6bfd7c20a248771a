//! The HAProxy PROXY protocol header a load balancer sends before the
//! client's bytes (`send-proxy`, `send-proxy-v2`): the v1 text line
//! (`PROXY TCP4 src dst sport dport\r\n`, at most 107 bytes) or the v2
//! binary block (12-byte signature, version/command, family, length,
//! addresses). The header alone establishes the layer; the server sends
//! no reply. The hop's target is the header's destination, its `source`
//! the original client; the flow's server stays the judged destination.

use super::{fill, Hop, Progress, Via};
use crate::analyzer::{Dir, Probe};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX: usize = 107;
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v2 block read (addresses and TLVs).
const V2_MAX: usize = 16 + 1024;

pub fn probe(data: &[u8]) -> Probe {
    if let Some(p) = prefix(data, V1_PREFIX) {
        return match p {
            Probe::Match => probe_v1(data),
            other => other,
        };
    }
    match prefix(data, &V2_SIGNATURE) {
        Some(Probe::Match) => match data.get(12) {
            Some(0x20 | 0x21) => Probe::Match,
            Some(_) => Probe::NoMatch,
            None => Probe::NeedMore,
        },
        Some(p) => p,
        None => Probe::NoMatch,
    }
}

/// `Some(Match)` if `data` starts with `token`, `Some(NeedMore)` if it is
/// a prefix of it, `None` otherwise.
fn prefix(data: &[u8], token: &[u8]) -> Option<Probe> {
    let n = token.len().min(data.len());
    if data[..n] != token[..n] {
        return None;
    }
    Some(if data.len() >= token.len() {
        Probe::Match
    } else {
        Probe::NeedMore
    })
}

fn probe_v1(data: &[u8]) -> Probe {
    match data.iter().take(V1_MAX).position(|&b| b == b'\n') {
        Some(end) if parse_v1(&data[..=end]).is_some() => Probe::Match,
        Some(_) => Probe::NoMatch,
        None if data.len() >= V1_MAX => Probe::NoMatch,
        None => Probe::NeedMore,
    }
}

/// `PROXY TCP4|TCP6 src dst sport dport\r\n` or `PROXY UNKNOWN ...`.
fn parse_v1(line: &[u8]) -> Option<Option<Hop>> {
    let text = std::str::from_utf8(line).ok()?.strip_suffix("\r\n")?;
    let mut parts = text.split(' ');
    if parts.next()? != "PROXY" {
        return None;
    }
    match parts.next()? {
        "UNKNOWN" => Some(None),
        "TCP4" | "TCP6" => {
            let src: IpAddr = parts.next()?.parse().ok()?;
            let dst: IpAddr = parts.next()?.parse().ok()?;
            let sport: u16 = parts.next()?.parse().ok()?;
            let dport: u16 = parts.next()?.parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            let mut hop = Hop::new(Via::ProxyV1, &dst.to_string(), dport);
            hop.source = Some((src, sport));
            Some(Some(hop))
        }
        _ => None,
    }
}

/// v2 addresses: family 0x11 (TCP over IPv4) or 0x21 (TCP over IPv6).
fn parse_v2(block: &[u8]) -> Option<Hop> {
    let addrs = block.get(16..)?;
    let (src, dst, ports): (IpAddr, IpAddr, &[u8]) = match block.get(13)? {
        0x11 => (
            Ipv4Addr::from(<[u8; 4]>::try_from(addrs.get(0..4)?).ok()?).into(),
            Ipv4Addr::from(<[u8; 4]>::try_from(addrs.get(4..8)?).ok()?).into(),
            addrs.get(8..12)?,
        ),
        0x21 => (
            Ipv6Addr::from(<[u8; 16]>::try_from(addrs.get(0..16)?).ok()?).into(),
            Ipv6Addr::from(<[u8; 16]>::try_from(addrs.get(16..32)?).ok()?).into(),
            addrs.get(32..36)?,
        ),
        _ => return None,
    };
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    let mut hop = Hop::new(Via::ProxyV2, &dst.to_string(), dport);
    hop.source = Some((src, sport));
    Some(hop)
}

#[derive(Debug)]
pub struct ProxyHeader {
    pub progress: Progress,
    pub hop: Option<Hop>,
    buf: Vec<u8>,
}

impl Default for ProxyHeader {
    fn default() -> Self {
        ProxyHeader {
            progress: Progress::More,
            hop: None,
            buf: Vec::new(),
        }
    }
}

impl ProxyHeader {
    pub fn wants(&self, dir: Dir) -> bool {
        self.progress == Progress::More && dir == Dir::ToServer
    }

    pub fn feed(&mut self, dir: Dir, data: &[u8]) -> usize {
        if !self.wants(dir) {
            return 0;
        }
        if self.buf.first().copied().or(data.first().copied()) == Some(b'P') {
            self.feed_v1(data)
        } else {
            self.feed_v2(data)
        }
    }

    fn feed_v1(&mut self, data: &[u8]) -> usize {
        let before = self.buf.len();
        let end = data.iter().position(|&b| b == b'\n');
        let take = end.map_or(data.len(), |e| e + 1);
        let used = fill(&mut self.buf, data, before + take);
        if self.buf.len() > V1_MAX {
            self.progress = Progress::Failed;
        } else if end.is_some() {
            match parse_v1(&self.buf) {
                Some(hop) => {
                    self.hop = hop;
                    self.progress = Progress::Established;
                }
                None => self.progress = Progress::Failed,
            }
        }
        used
    }

    fn feed_v2(&mut self, data: &[u8]) -> usize {
        let mut used = fill(&mut self.buf, data, 16);
        if self.buf.len() < 16 {
            return used;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
        if self.buf[..12] != V2_SIGNATURE || 16 + len > V2_MAX {
            self.progress = Progress::Failed;
            return used;
        }
        used += fill(&mut self.buf, &data[used..], 16 + len);
        if self.buf.len() == 16 + len {
            // LOCAL (0x20): health checks, no addresses.
            self.hop = (self.buf[12] == 0x21)
                .then(|| parse_v2(&self.buf))
                .flatten();
            self.progress = Progress::Established;
        }
        used
    }
}
