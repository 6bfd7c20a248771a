//! `ssh`, `tls`, `dns`, `http`, `stratum`: one flow's payloads handed to a
//! protocol the way the engine does it, through
//! [`egresswatch::analyzer::dispatch::AppSlot`] (probing, replay of what
//! probing saw, stream reassembly, then the analyzer behind the
//! protocol's [`Protocol`]/[`Analyzer`](egresswatch::analyzer::Analyzer)
//! traits), with only that protocol registered.
//!
//! Input (a "conversation"): a flags byte (bit 0: UDP, else TCP; bit 1:
//! TCP handshake seen), then payloads, each a big-endian u16 whose top bit
//! is the direction (set: server to client) and whose low 15 bits are the
//! length, followed by that many bytes. TCP payloads are consecutive in
//! sequence space; reordering is the `stream` target's job.
//!
//! Checked: every event is one this protocol writes, its body and extra
//! are JSON objects, and its time lies within the flow's; a claimed flow's
//! facts name the protocol; the DNS name cache stays within its capacity.

use crate::input::{Input, Output};
use egresswatch::analyzer::dispatch::{AppSlot, PacketInput};
use egresswatch::analyzer::dns::DnsProtocol;
use egresswatch::analyzer::http::HttpProtocol;
use egresswatch::analyzer::names::NameCache;
use egresswatch::analyzer::ssh::SshProtocol;
use egresswatch::analyzer::stratum::StratumProtocol;
use egresswatch::analyzer::tls::TlsProtocol;
use egresswatch::analyzer::{AppEvent, Dir, FlowContext, PacketView, Protocol};
use egresswatch::decode::{TcpFlags, TcpInfo};
use egresswatch::flow::key::{proto, Endpoint};
use egresswatch::flow::FlowConfig;
use egresswatch::time::Timestamp;
use std::sync::Arc;

pub const UDP: u8 = 1;
pub const HANDSHAKE: u8 = 2;
/// Payloads played at most.
pub const MAX_PAYLOADS: usize = 256;
const ISN: [u32; 2] = [0x1000_0000, 0xfff0_0000];
const START_SECS: u64 = 1_700_000_000;

pub fn ssh(data: &[u8]) {
    claims("ssh", data);
}

pub fn tls(data: &[u8]) {
    claims("tls", data);
}

pub fn http(data: &[u8]) {
    claims("http", data);
}

pub fn stratum(data: &[u8]) {
    claims("stratum", data);
}

pub fn dns(data: &[u8]) {
    claims("dns", data);
}

/// Plays a conversation to the protocol called `name` (`ssh`, `tls`,
/// `dns`, `http` or `stratum`), checking what it writes; true if the
/// protocol claimed the flow.
pub fn claims(name: &str, data: &[u8]) -> bool {
    let cache = Arc::new(NameCache::default());
    let (protocol, kinds): (Box<dyn Protocol>, &[&str]) = match name {
        "ssh" => (Box::new(SshProtocol), &["ssh"]),
        "tls" => (Box::new(TlsProtocol::new(None)), &["tls"]),
        // Mining over HTTP (getwork) is reported as a stratum record.
        "http" => (Box::new(HttpProtocol), &["http", "stratum"]),
        "stratum" => (Box::new(StratumProtocol), &["stratum"]),
        "dns" => (Box::new(DnsProtocol::new(cache.clone())), &["dns"]),
        _ => return false,
    };
    let claimed = play(protocol, kinds, data);
    assert!(
        cache.len() <= cache.config().capacity,
        "name cache over capacity"
    );
    claimed
}

/// Writes a conversation for [`play`]: `(direction, payload)` pairs.
pub fn encode(flags: u8, payloads: &[(Dir, &[u8])]) -> Vec<u8> {
    let mut out = Output::default();
    out.u8(flags);
    for &(dir, data) in payloads.iter().take(MAX_PAYLOADS) {
        let data = &data[..data.len().min(0x7fff)];
        let top = if dir == Dir::ToClient { 0x8000 } else { 0 };
        out.u16(top | data.len() as u16).bytes(data);
    }
    out.0
}

fn endpoint(addr: [u8; 4], port: u16) -> Endpoint {
    Endpoint {
        addr: addr.into(),
        port,
    }
}

/// Plays the conversation in `data` to `protocol`, which writes events of
/// the `kinds` given; true if the protocol claimed the flow.
fn play(protocol: Box<dyn Protocol>, kinds: &[&str], data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let flags = input.u8();
    let udp = flags & UDP != 0;
    let ctx = FlowContext {
        client: endpoint([10, 0, 0, 1], 40_000),
        server: endpoint([198, 51, 100, 7], if udp { 53 } else { 443 }),
        proto: if udp { proto::UDP } else { proto::TCP },
    };
    let name = protocol.name();
    let protocols = [protocol];
    let mut slot = AppSlot::new();
    let mut events = Vec::new();
    let mut next_seq = ISN.map(|isn| isn.wrapping_add(1));
    let budget = FlowConfig::default().stream_budget_bytes;
    let mut index = 0;
    while !input.is_empty() && index < MAX_PAYLOADS as u64 {
        let head = input.u16();
        let dir = if head & 0x8000 != 0 {
            Dir::ToClient
        } else {
            Dir::ToServer
        };
        let payload = input.bytes(usize::from(head & 0x7fff));
        index += 1;
        let d = dir.index();
        let tcp = (!udp).then(|| TcpInfo {
            flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
            seq: next_seq[d],
            ack: next_seq[1 - d],
            window: 512,
        });
        next_seq[d] = next_seq[d].wrapping_add(payload.len() as u32);
        let packet = PacketInput {
            flow: &ctx,
            view: PacketView {
                index,
                ts: Timestamp::from_secs(START_SECS + index),
                dir,
                tcp,
                payload,
                payload_len: payload.len() as u32,
            },
            data_start: (flags & HANDSHAKE != 0 && !udp).then(|| ISN[d].wrapping_add(1)),
            budget,
        };
        slot.on_packet(&protocols, &packet, &mut events);
    }
    let last = Timestamp::from_secs(START_SECS + index);
    slot.finish(&protocols, &ctx, last, &mut events);
    if let Some(facts) = slot.facts() {
        // `None` until the protocol is confirmed (Stratum waits for it).
        assert!(
            // A proxy handshake in front: the carrier when nothing inside
            // was identified.
            facts
                .app_proto
                .is_none_or(|p| p == name || CARRIERS.contains(&p)),
            "facts of another protocol"
        );
    }
    for event in &events {
        check_event(event, kinds, last);
    }
    slot.facts().is_some()
}

/// `app_proto` of tunnel carriers (`analyzer::tunnel::Via::app_proto`).
const CARRIERS: [&str; 4] = ["http", "socks4", "socks5", "proxy"];

fn check_event(event: &AppEvent, kinds: &[&str], last: Timestamp) {
    assert!(
        kinds.contains(&event.event_type) || event.event_type == "http",
        "unexpected event type {:?}",
        event.event_type
    );
    assert!(
        event.ts >= Timestamp::from_secs(START_SECS) && event.ts <= last,
        "event time {:?} outside the flow",
        event.ts
    );
    for part in std::iter::once(&event.body).chain(&event.extra) {
        let value: serde_json::Value = serde_json::from_str(part.as_str())
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", part.as_str()));
        assert!(value.is_object(), "not an object: {}", part.as_str());
    }
}
