//! The per-flow protocol hook. The flow tracker owns the table; analyzers
//! see only what this module hands them: every packet of their flow, and
//! for TCP each direction's bytes in sequence order. They report what they
//! learned as [`AppFacts`] (read by the classifier) and as [`AppEvent`]s
//! (written as EVE records).
//!
//! Protocols are identified by their bytes, never by port: every flow starts
//! in a probing state that offers its first payload to each [`Protocol`];
//! the first to claim it gets an [`Analyzer`] for the rest of the flow. A
//! flow nobody claims stops costing anything after its first bytes.

pub mod applayer;
pub mod dispatch;
pub mod dns;
pub mod facts;
pub mod http;
pub mod icmp;
pub mod names;
pub mod restored;
pub mod ssh;
pub mod stratum;
#[cfg(test)]
mod testkit;
pub mod tls;
pub mod tunnel;

pub use facts::{AppFacts, AuthOutcome, Evidence, MiningFacts, SshFacts};

use crate::decode::TcpInfo;
use crate::flow::key::Endpoint;
use crate::json::Rendered;
use crate::time::Timestamp;

/// Direction of a packet relative to the flow's originator.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Dir {
    /// Originator (client) to responder (server).
    ToServer,
    /// Responder to originator.
    ToClient,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn reverse(self) -> Dir {
        match self {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dir::ToServer => "toserver",
            Dir::ToClient => "toclient",
        }
    }
}

/// What an analyzer is told about its flow when it starts.
#[derive(Copy, Clone, Debug)]
pub struct FlowContext {
    /// The originator (TCP SYN sender, or the best guess).
    pub client: Endpoint,
    pub server: Endpoint,
    pub proto: u8,
}

/// One packet of the flow as an analyzer sees it.
#[derive(Copy, Clone, Debug)]
pub struct PacketView<'a> {
    /// 1-based position of the packet in the input (EVE's `pcap_cnt`);
    /// evidence cites these.
    pub index: u64,
    pub ts: Timestamp,
    pub dir: Dir,
    pub tcp: Option<TcpInfo>,
    /// Captured payload bytes (may be shorter than `payload_len`).
    pub payload: &'a [u8],
    /// Payload length on the wire.
    pub payload_len: u32,
}

/// In-order stream content of one TCP direction.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// This many bytes were never seen (capture loss, snap length, or the
    /// reassembly window overflowed); the stream resumes after them.
    Gap(u32),
}

/// Lower-case hex MD5 of a string: how HASSH and JA3 fingerprints are
/// written.
pub fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(s.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A record an analyzer wants written, e.g. one EVE `ssh` or `dns` event.
#[derive(Clone, Debug)]
pub struct AppEvent {
    pub ts: Timestamp,
    /// EVE `event_type`, e.g. `"ssh"`.
    pub event_type: &'static str,
    /// The protocol object, written under the key `event_type`.
    pub body: Rendered,
    /// Project-specific detail, written under `egresswatch.<event_type>`.
    pub extra: Option<Rendered>,
    /// DNS: what the per-host tunnel detector reads of the message
    /// ([`crate::hosts::dns_tunnel`]); not written.
    pub dns: Option<Box<dns::Shape>>,
}

/// Where analyzers put their events.
pub type Emit = Vec<AppEvent>;

/// The per-flow analysis state of one protocol.
pub trait Analyzer: Send {
    /// Every packet of the flow, in capture order (called before the
    /// packet's stream bytes are delivered).
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _out: &mut Emit) {}

    /// TCP: the next in-order bytes of `dir`. Retransmissions are already
    /// dropped and out-of-order segments placed; `pkt` is the packet that
    /// completed this chunk.
    fn on_stream(&mut self, _dir: Dir, _chunk: Chunk<'_>, _pkt: &PacketView<'_>, _out: &mut Emit) {}

    /// Whether stream bytes of `dir` are still wanted. Returning false lets
    /// the tracker stop reassembling that direction for good.
    fn wants_stream(&self, _dir: Dir) -> bool {
        false
    }

    /// Nothing more to learn: neither packets nor stream bytes are wanted
    /// from now on. The tracker then stops calling the analyzer per packet;
    /// its facts stay readable and `finish` is still called.
    fn done(&self) -> bool {
        false
    }

    /// What has been learned so far.
    fn facts(&self) -> &AppFacts;

    /// The protocol's EVE object as far as it is known, and its key (e.g.
    /// `ssh`), written inline on an alert raised on the flow. Called per
    /// alert, never per packet.
    fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        None
    }

    /// The flow ended (closed, timed out, evicted or shut down).
    fn finish(&mut self, _last_ts: Timestamp, _out: &mut Emit) {}
}

/// Every protocol egresswatch identifies, in probing order.
/// ICMP echo first (it decides on the flow's types alone), then SSH (its
/// probe decides on the first bytes), then the app-layer
/// protocols, which share one DNS name cache.
pub fn registry(
    names: std::sync::Arc<names::NameCache>,
    config: &applayer::AppLayerConfig,
) -> Vec<Box<dyn Protocol>> {
    let mut all: Vec<Box<dyn Protocol>> =
        vec![Box::new(icmp::IcmpProtocol), Box::new(ssh::SshProtocol)];
    all.extend(applayer::protocols(names, config));
    all
}

/// A probe's answer about the bytes it was shown.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Match,
    NoMatch,
    /// Not decided yet: show me the next chunk of this direction too.
    NeedMore,
}

/// A protocol that can claim flows by their first bytes.
pub trait Protocol: Send + Sync {
    /// The `app_proto` name (`ssh`, `tls`, `http`, `dns`, `stratum`).
    fn name(&self) -> &'static str;

    /// Whether `data`, the first (or a following) payload of `dir`, belongs
    /// to this protocol. TCP probes see in-order stream chunks, UDP probes
    /// datagram payloads.
    fn probe(&self, ctx: &FlowContext, dir: Dir, data: &[u8]) -> Probe;

    /// A fresh analyzer for a claimed flow. It is then handed the packet
    /// and chunk that matched.
    fn start(&self, ctx: &FlowContext) -> Box<dyn Analyzer>;
}
