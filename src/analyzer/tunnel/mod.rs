//! Proxy handshakes that carry another protocol: HTTP `CONNECT`, SOCKS4,
//! SOCKS4a and SOCKS5, and the HAProxy PROXY header (v1 text, v2 binary).
//! Each is parsed from the client's and the proxy's in-order bytes until
//! it is established (or fails); what follows is a new stream of the same
//! flow, which [`crate::analyzer::dispatch`] probes and analyzes as if it
//! were direct. A [`Hop`] records the carrier and the requested target.
//!
//! The parsers are pure and bounded: a handshake message longer than its
//! format allows (at most [`connect::MAX_HEAD`] for a CONNECT head) fails
//! the handshake.

pub mod connect;
pub mod proxy_header;
pub mod socks;

use super::{Dir, Probe};
use crate::json::Obj;
use std::net::IpAddr;

/// The carrier of one tunnel layer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Via {
    HttpConnect,
    Socks4,
    Socks4a,
    Socks5,
    ProxyV1,
    ProxyV2,
}

impl Via {
    /// The name written in EVE (`egresswatch.tunnel.via`) and evidence.
    pub fn name(self) -> &'static str {
        match self {
            Via::HttpConnect => "http-connect",
            Via::Socks4 => "socks4",
            Via::Socks4a => "socks4a",
            Via::Socks5 => "socks5",
            Via::ProxyV1 => "proxy-v1",
            Via::ProxyV2 => "proxy-v2",
        }
    }

    /// The `app_proto` of the carrier when nothing inside is identified.
    pub fn app_proto(self) -> &'static str {
        match self {
            Via::HttpConnect => "http",
            Via::Socks4 | Via::Socks4a => "socks4",
            Via::Socks5 => "socks5",
            Via::ProxyV1 | Via::ProxyV2 => "proxy",
        }
    }

    /// Whether the proxy connects onward to the requested target (CONNECT,
    /// SOCKS). A PROXY header only tells the server who the original client
    /// was: the flow's server stays the destination.
    pub fn redirects(self) -> bool {
        !matches!(self, Via::ProxyV1 | Via::ProxyV2)
    }
}

/// One established tunnel layer: how, and to where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub via: Via,
    /// The requested host as the client wrote it (a name or an address).
    pub host: Box<str>,
    /// `host` when it is an address literal.
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// PROXY header: the original client (`source`).
    pub source: Option<(IpAddr, u16)>,
}

impl Hop {
    pub fn new(via: Via, host: &str, port: u16) -> Hop {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Hop {
            via,
            host: Box::from(bare),
            addr: bare.parse().ok(),
            port,
            source: None,
        }
    }

    /// The requested host when it is a name, not an address.
    pub fn name(&self) -> Option<&str> {
        self.addr.is_none().then_some(&*self.host)
    }

    /// The EVE object `{via, target_host, target_port}`.
    pub fn write(&self, o: &mut Obj<'_>) {
        o.str("via", self.via.name());
        o.str("target_host", &self.host);
        o.u64("target_port", self.port.into());
        if let Some((ip, port)) = self.source {
            o.str("source_ip", &ip.to_string());
            o.u64("source_port", port.into());
        }
    }
}

/// Where a flow with these tunnel layers (outermost first) goes: the
/// target of the innermost layer that connects onward (CONNECT, SOCKS).
pub fn target<'a>(hops: &[(Via, Option<&'a Hop>)]) -> Option<&'a Hop> {
    hops.iter()
        .rev()
        .find_map(|(via, hop)| hop.filter(|_| via.redirects()))
}

/// The carriers, outermost first: `socks5+http-connect`.
pub fn chain(hops: &[(Via, Option<&Hop>)]) -> String {
    let names: Vec<&str> = hops.iter().map(|(v, _)| v.name()).collect();
    names.join("+")
}

/// Where a handshake stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    More,
    Established,
    Failed,
}

/// A handshake in progress.
#[derive(Debug)]
pub enum Handshake {
    Connect(connect::Connect),
    Socks4(socks::Socks4),
    Socks5(socks::Socks5),
    Proxy(proxy_header::ProxyHeader),
}

/// Whether the client's first bytes start a proxy handshake. Only the
/// originator's bytes can; every format is checked strictly (exact
/// lengths, known codes) so other protocols are never claimed.
pub fn probe(dir: Dir, data: &[u8]) -> Probe {
    if dir != Dir::ToServer {
        return Probe::NoMatch;
    }
    let answers = [
        connect::probe(data),
        socks::probe4(data),
        socks::probe5(data),
        proxy_header::probe(data),
    ];
    if answers.contains(&Probe::Match) {
        Probe::Match
    } else if answers.contains(&Probe::NeedMore) {
        Probe::NeedMore
    } else {
        Probe::NoMatch
    }
}

impl Handshake {
    /// The handshake that `data` (which [`probe`] matched) starts.
    pub fn for_bytes(data: &[u8]) -> Handshake {
        match data.first() {
            Some(b'C') => Handshake::Connect(connect::Connect::default()),
            Some(4) => Handshake::Socks4(socks::Socks4::default()),
            Some(5) => Handshake::Socks5(socks::Socks5::default()),
            _ => Handshake::Proxy(proxy_header::ProxyHeader::default()),
        }
    }

    /// Whether the handshake expects bytes from `dir` now; bytes of the
    /// other direction wait until it does (a client may send its inner
    /// bytes before the proxy replied).
    pub fn wants(&self, dir: Dir) -> bool {
        match self {
            Handshake::Connect(h) => h.wants(dir),
            Handshake::Socks4(h) => h.wants(dir),
            Handshake::Socks5(h) => h.wants(dir),
            Handshake::Proxy(h) => h.wants(dir),
        }
    }

    /// Reads handshake bytes of `dir` from the front of `data`; returns how
    /// many belonged to the handshake (the rest is inner data or waits).
    pub fn feed(&mut self, dir: Dir, data: &[u8]) -> usize {
        match self {
            Handshake::Connect(h) => h.feed(dir, data),
            Handshake::Socks4(h) => h.feed(dir, data),
            Handshake::Socks5(h) => h.feed(dir, data),
            Handshake::Proxy(h) => h.feed(dir, data),
        }
    }

    pub fn progress(&self) -> Progress {
        match self {
            Handshake::Connect(h) => h.progress,
            Handshake::Socks4(h) => h.progress,
            Handshake::Socks5(h) => h.progress,
            Handshake::Proxy(h) => h.progress,
        }
    }

    /// The requested target, once the client named it.
    pub fn hop(&self) -> Option<&Hop> {
        match self {
            Handshake::Connect(h) => h.hop.as_ref(),
            Handshake::Socks4(h) => h.hop.as_ref(),
            Handshake::Socks5(h) => h.hop.as_ref(),
            Handshake::Proxy(h) => h.hop.as_ref(),
        }
    }

    /// The target the client asked for, whether or not it was granted.
    pub fn requested(&self) -> Option<&Hop> {
        match self {
            Handshake::Connect(h) => h.requested.as_ref(),
            _ => self.hop(),
        }
    }

    pub fn via(&self) -> Via {
        match self {
            Handshake::Connect(_) => Via::HttpConnect,
            Handshake::Socks4(h) => h.hop.as_ref().map_or(Via::Socks4, |h| h.via),
            Handshake::Socks5(_) => Via::Socks5,
            Handshake::Proxy(h) => h.hop.as_ref().map_or(Via::ProxyV1, |h| h.via),
        }
    }

    /// CONNECT: the EVE `http` records of its transactions, taken once.
    pub fn take_records(&mut self) -> Vec<connect::Transaction> {
        match self {
            Handshake::Connect(h) => std::mem::take(&mut h.done),
            _ => Vec::new(),
        }
    }
}

/// Appends up to `want` bytes of `data` to `buf`; returns how many.
fn fill(buf: &mut Vec<u8>, data: &[u8], want: usize) -> usize {
    let take = want.saturating_sub(buf.len()).min(data.len());
    buf.extend_from_slice(&data[..take]);
    take
}

#[cfg(test)]
mod tests;
