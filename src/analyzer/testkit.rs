//! Test support for protocol analyzers: flow contexts, hex vectors, and a
//! small driver that plays a flow's payloads the way the flow tracker does
//! (probe each direction's in-order bytes until a protocol claims the flow,
//! then hand the analyzer every earlier packet and chunk, then the rest).

use super::{Analyzer, Chunk, Dir, Emit, FlowContext, PacketView, Probe, Protocol};
use crate::flow::key::Endpoint;
use crate::time::Timestamp;

pub fn ctx(proto: u8, client: &str, server: &str) -> FlowContext {
    let ep = |s: &str| {
        let (addr, port) = s.rsplit_once(':').unwrap();
        Endpoint {
            addr: addr.trim_matches(['[', ']']).parse().unwrap(),
            port: port.parse().unwrap(),
        }
    };
    FlowContext {
        client: ep(client),
        server: ep(server),
        proto,
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What playing a flow produced.
pub struct Played {
    pub analyzer: Option<Box<dyn Analyzer>>,
    pub events: Emit,
    /// 1-based index of the segment at which the protocol matched.
    pub matched_at: Option<u64>,
}

/// Plays `segments` (direction, payload) as one flow, one packet per
/// segment at one-second steps. TCP probes see all in-order bytes of the
/// direction so far; UDP probes see each datagram.
pub fn play(proto: &dyn Protocol, ctx: &FlowContext, segments: &[(Dir, &[u8])]) -> Played {
    let tcp = ctx.proto == crate::flow::key::proto::TCP;
    let mut played = Played {
        analyzer: None,
        events: Vec::new(),
        matched_at: None,
    };
    let mut seen: [Vec<u8>; 2] = Default::default();
    let mut given_up = [false; 2];
    for (i, &(dir, data)) in segments.iter().enumerate() {
        let index = i as u64 + 1;
        if played.analyzer.is_none() {
            let d = dir.index();
            seen[d].extend_from_slice(data);
            if given_up[d] {
                continue;
            }
            let probe_on = if tcp { &seen[d][..] } else { data };
            match proto.probe(ctx, dir, probe_on) {
                Probe::Match => {
                    played.analyzer = Some(proto.start(ctx));
                    played.matched_at = Some(index);
                    // The tracker hands over everything seen so far.
                    for (j, &(dir, data)) in segments.iter().enumerate().take(i + 1) {
                        deliver(&mut played, tcp, j as u64 + 1, dir, data);
                    }
                }
                Probe::NoMatch => given_up[d] = true,
                Probe::NeedMore => {}
            }
            continue;
        }
        deliver(&mut played, tcp, index, dir, data);
    }
    played
}

pub fn packet(index: u64, dir: Dir, payload: &[u8]) -> PacketView<'_> {
    PacketView {
        index,
        ts: Timestamp::from_secs(1_000 + index),
        dir,
        tcp: None,
        payload,
        payload_len: payload.len() as u32,
    }
}

fn deliver(played: &mut Played, tcp: bool, index: u64, dir: Dir, data: &[u8]) {
    let Some(a) = played.analyzer.as_mut() else {
        return;
    };
    let pkt = packet(index, dir, data);
    a.on_packet(&pkt, &mut played.events);
    if tcp && !data.is_empty() && a.wants_stream(dir) {
        a.on_stream(dir, Chunk::Data(data), &pkt, &mut played.events);
    }
}

/// Splits `data` at the given offsets.
pub fn split_at<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut from = 0;
    for &c in cuts {
        parts.push(&data[from..c]);
        from = c;
    }
    parts.push(&data[from..]);
    parts
}
