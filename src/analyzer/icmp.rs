//! ICMP echo tunnels (`icmp-tunnel`): per echo flow (one pair of hosts),
//! what separates data carried in echo payloads from a ping.
//!
//! A ping sends the same payload again and again: a fixed pattern (Windows'
//! alphabet, iputils' incrementing bytes, zeros) after at most a
//! timestamp, so past its first [`STAMP_BYTES`] bytes a request is the
//! previous one again; and every reply echoes a request byte for byte. A
//! tunnel breaks both: its requests carry new data each time (*varying*),
//! and its replies carry the other side's data instead of the echo
//! (*unechoed*). A flow is a tunnel when
//!
//! - at least [`MIN_UNECHOED`] replies, a quarter of them, echo no recent
//!   request; or
//! - at least [`MIN_VARYING`] requests, half of them, differ from the
//!   request before, and the requests carried at least [`MIN_VARYING_BYTES`]
//!   (an upload through echoes the kernel answers).
//!
//! State: a few counters and [`RECENT`] payload hashes per flow; nothing
//! per packet is allocated. Once the tunnel is found the analyzer is done.
//! The facts carry no `app_proto`, so ICMP flow records read as before.

use super::facts::Evidence;
use super::{Analyzer, AppFacts, Dir, Emit, FlowContext, PacketView, Probe, Protocol};
use crate::flow::key::proto;
use crate::time::Timestamp;

/// Leading payload bytes a ping may change every time (its timestamp).
pub const STAMP_BYTES: usize = 16;
/// Request hashes a reply is compared with.
pub const RECENT: usize = 8;
pub const MIN_UNECHOED: u32 = 8;
pub const MIN_VARYING: u32 = 32;
pub const MIN_VARYING_BYTES: u64 = 16 * 1024;

/// Claims ICMP and ICMPv6 echo flows.
pub struct IcmpProtocol;

impl Protocol for IcmpProtocol {
    fn name(&self) -> &'static str {
        "icmp-echo"
    }

    fn probe(&self, ctx: &FlowContext, _dir: Dir, _data: &[u8]) -> Probe {
        if is_echo(ctx) {
            Probe::Match
        } else {
            Probe::NoMatch
        }
    }

    fn start(&self, _ctx: &FlowContext) -> Box<dyn Analyzer> {
        Box::new(EchoAnalyzer::default())
    }
}

/// An echo flow: requests one way (ICMP type 8, ICMPv6 128), replies
/// the other (0, 129); the flow's ports are the types.
fn is_echo(ctx: &FlowContext) -> bool {
    let types = [ctx.client.port, ctx.server.port];
    match ctx.proto {
        proto::ICMP => types.contains(&8) && types.contains(&0),
        proto::ICMPV6 => types.contains(&128) && types.contains(&129),
        _ => false,
    }
}

/// What one direction sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EchoDir {
    pub packets: u32,
    pub bytes: u64,
    pub largest: u32,
    /// Payloads that differ, past the timestamp, from the one before.
    pub varying: u32,
    last_tail: Option<(u32, u64)>,
}

/// Per-flow echo state.
#[derive(Debug, Default)]
pub struct EchoAnalyzer {
    facts: AppFacts,
    /// Requests (toward the server when the client pings), replies.
    pub dirs: [EchoDir; 2],
    /// Replies that echo none of the last [`RECENT`] requests.
    pub unechoed: u32,
    recent: [u64; RECENT],
    next: usize,
    first_ts: Option<Timestamp>,
    packets: Vec<u64>,
    found: bool,
}

impl EchoAnalyzer {
    fn request_dir(&self, pkt: &PacketView<'_>) -> bool {
        pkt.dir == Dir::ToServer
    }

    fn judge(&mut self, pkt: &PacketView<'_>) {
        let [req, rep] = &self.dirs;
        let unechoed = self.unechoed >= MIN_UNECHOED && self.unechoed * 4 >= rep.packets;
        let varying = req.varying >= MIN_VARYING
            && req.varying * 2 >= req.packets
            && req.bytes >= MIN_VARYING_BYTES;
        if !(unechoed || varying) {
            return;
        }
        self.found = true;
        let summary = format!(
            "ICMP echo payloads carry data: {} of {} replies echo no request, {} of {} requests \
             differ from the one before; requests {} bytes (largest {}), replies {} bytes \
             (largest {})",
            self.unechoed,
            rep.packets,
            req.varying,
            req.packets,
            req.bytes,
            req.largest,
            rep.bytes,
            rep.largest
        );
        let first = self.first_ts.unwrap_or(pkt.ts);
        self.facts.icmp_tunnel = Some(Box::new(Evidence::new(
            summary,
            &self.packets,
            first,
            pkt.ts,
        )));
        self.facts.touch();
    }
}

/// Hash of `bytes` (FNV-1a, 64 bits).
fn hash(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Analyzer for EchoAnalyzer {
    fn on_packet(&mut self, pkt: &PacketView<'_>, _out: &mut Emit) {
        if self.found || pkt.payload_len == 0 {
            return;
        }
        self.first_ts.get_or_insert(pkt.ts);
        let request = self.request_dir(pkt);
        let payload = pkt.payload;
        let whole = hash(payload, u64::from(pkt.payload_len));
        let tail = (
            pkt.payload_len,
            hash(payload.get(STAMP_BYTES..).unwrap_or(&[]), 0),
        );
        let d = &mut self.dirs[usize::from(!request)];
        d.packets = d.packets.saturating_add(1);
        d.bytes = d.bytes.saturating_add(u64::from(pkt.payload_len));
        d.largest = d.largest.max(pkt.payload_len);
        let varied = d.last_tail.is_some_and(|t| t != tail);
        d.last_tail = Some(tail);
        if varied {
            d.varying = d.varying.saturating_add(1);
        }
        if request {
            self.recent[self.next % RECENT] = whole;
            self.next = self.next.wrapping_add(1);
        } else if !self.recent.contains(&whole) {
            self.unechoed = self.unechoed.saturating_add(1);
        }
        let notable = varied || (!request && !self.recent.contains(&whole));
        if notable && self.packets.len() < Evidence::MAX_PACKETS {
            self.packets.push(pkt.index);
        }
        self.judge(pkt);
    }

    fn done(&self) -> bool {
        self.found
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }
}

#[cfg(test)]
mod tests;
