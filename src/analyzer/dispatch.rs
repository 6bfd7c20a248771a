//! Per-flow application-layer state: probing a new flow's first bytes
//! against every registered [`Protocol`], then driving the one analyzer that
//! claimed it. Owned by the flow ([`crate::flow::Flow::app`]); created only
//! when a flow first carries payload.
//!
//! A flow whose client starts a proxy handshake (HTTP CONNECT, SOCKS, a
//! PROXY header: [`super::tunnel`]) becomes a [`carried`] layer: once the
//! handshake is established, the bytes after it are probed again as a new
//! stream of the same flow, to at most [`MAX_DEPTH`] layers.

mod carried;

use super::ssh::midstream::Midstream;
use super::tunnel::{self, Handshake, Hop, Via};
use super::{Analyzer, AppFacts, Chunk, Dir, Emit, FlowContext, PacketView, Probe, Protocol};
use crate::flow::stream::{Segment, Stream};
use crate::json::Rendered;
use crate::time::Timestamp;
use carried::Carried;

/// Tunnel layers followed at most (SSH through CONNECT through SOCKS is
/// two); a handshake deeper than this is analyzed as a plain protocol
/// (or not at all) and the flow counts as depth-limited.
pub const MAX_DEPTH: u8 = 4;

/// Chunks or datagrams offered to the probes before a flow is declared
/// unknown.
const PROBE_LIMIT: u8 = 16;
/// In-order bytes per direction kept while probing; probes see all of
/// them, and the analyzer that claims the flow gets them replayed.
const PROBE_BYTES: usize = 8 * 1024;

/// The registered protocols, shared by all flows of a worker.
pub type Protocols = [Box<dyn Protocol>];

/// Application-layer state of one flow.
pub struct AppSlot {
    layer: Layer,
    /// The active analyzer said it is done: packets are no longer handed
    /// to it.
    finished: bool,
    streams: [Stream; 2],
    /// Sequence number of each direction's first stream byte, once known:
    /// where tunnel layers count their handshake bytes from.
    origins: [Option<u32>; 2],
}

/// What every layer needs from the slot: the protocols, the flow and
/// where the layer's own byte streams start.
#[derive(Copy, Clone)]
pub(crate) struct Cx<'a> {
    pub protocols: &'a Protocols,
    pub flow: &'a FlowContext,
    pub origins: [Option<u32>; 2],
}

/// One stream of the flow: the TCP stream itself, or the stream carried
/// inside a tunnel layer.
pub(crate) struct Layer {
    state: State,
    depth: u8,
    /// A handshake was found here but not followed ([`MAX_DEPTH`]).
    depth_limited: bool,
    /// The TCP flow was picked up mid-stream: if nobody claims it, its
    /// segment sizes are checked for SSH ([`Midstream`]).
    midstream: bool,
}

enum State {
    Probing(Box<Probing>),
    Active(Box<dyn Analyzer>),
    /// A proxy handshake and the stream it carries.
    Carried(Box<Carried>),
    /// Nobody claimed the mid-stream flow: probable SSH by its sizes?
    Midstream(Box<Midstream>),
    /// Nobody claimed the flow.
    Unknown,
}

/// What probing has seen so far, kept to replay it to the analyzer that
/// claims the flow: the bytes of each direction and, in arrival order,
/// the packets and chunks.
#[derive(Default)]
struct Probing {
    /// Protocols that answered `NoMatch` (bit i = protocols[i]).
    rejected: u32,
    /// The bytes are no proxy handshake.
    not_tunnel: bool,
    /// They are one, but too deep to follow.
    depth_limited: bool,
    offered: u8,
    bytes: [Vec<u8>; 2],
    log: Vec<Logged>,
}

enum Logged {
    /// A packet; its payload is not kept (analyzers get stream bytes as
    /// chunks), only its length.
    Packet(PacketView<'static>),
    Chunk(Dir, usize),
}

impl std::fmt::Debug for AppSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.layer.state {
            State::Probing(_) => "probing",
            State::Active(a) => a.facts().app_proto.unwrap_or("active"),
            State::Carried(_) => "tunnel",
            State::Midstream(_) => "midstream",
            State::Unknown => "unknown",
        };
        f.debug_struct("AppSlot").field("state", &state).finish()
    }
}

/// What the flow needs to hand a packet to its analyzer.
pub struct PacketInput<'a> {
    /// The flow's endpoints (the flow keeps them: the slot does not).
    pub flow: &'a FlowContext,
    pub view: PacketView<'a>,
    /// TCP only: where this direction's data starts, when the SYN was seen.
    pub data_start: Option<u32>,
    /// Stream bytes per direction handed over at most.
    pub budget: u64,
}

impl Default for AppSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl AppSlot {
    pub fn new() -> Self {
        AppSlot {
            layer: Layer::new(0),
            finished: false,
            streams: Default::default(),
            origins: [None; 2],
        }
    }

    /// The TCP flow was picked up mid-stream (no handshake seen): a flow
    /// no protocol claims is then checked for SSH by its segment sizes.
    pub fn set_midstream(&mut self) {
        self.layer.midstream = true;
    }

    /// A slot whose analysis is `analyzer`, already claimed and finished
    /// (a flow restored from the state file).
    pub fn restored(analyzer: Box<dyn Analyzer>) -> Self {
        AppSlot {
            layer: Layer {
                state: State::Active(analyzer),
                depth: 0,
                depth_limited: false,
                midstream: false,
            },
            finished: true,
            ..AppSlot::new()
        }
    }

    /// Facts of the analyzer that claimed the flow (the innermost one of a
    /// tunnel), if any did.
    pub fn facts(&self) -> Option<&AppFacts> {
        self.layer.facts()
    }

    /// The active analyzer's EVE object so far, for an alert.
    pub fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        self.layer.alert_object()
    }

    /// The tunnel layers of the flow, outermost first (empty for a flow
    /// that is not tunnelled): each carrier, with its requested target
    /// once the client named one.
    pub fn tunnel(&self) -> Vec<(Via, Option<&Hop>)> {
        let mut hops = Vec::new();
        self.layer.hops(&mut hops);
        hops
    }

    /// A proxy handshake was not followed because of a bound: deeper than
    /// [`MAX_DEPTH`] layers, or more than [`carried::HOLD_BYTES`] sent
    /// before the proxy answered.
    pub fn tunnel_bounded(&self) -> bool {
        self.layer.bounded()
    }

    /// The active analyzer said it is done; packets are no longer needed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// True once no protocol can claim the flow any more.
    pub fn is_unknown(&self) -> bool {
        self.layer.is_unknown()
    }

    /// Hands one packet of the flow to probing or to the analyzer.
    pub fn on_packet(&mut self, protocols: &Protocols, input: &PacketInput<'_>, out: &mut Emit) {
        if self.finished {
            return;
        }
        let view = &input.view;
        if let Some(tcp) = view.tcp {
            self.note_origin(input, tcp.seq, tcp.flags.syn());
        }
        let cx = Cx {
            protocols,
            flow: input.flow,
            origins: self.origins,
        };
        self.layer.on_packet(&cx, view, out);
        match view.tcp {
            Some(tcp) => self.on_segment(protocols, input, tcp.seq, tcp.flags.syn(), out),
            None if view.payload_len > 0 => self.layer.on_datagram(&cx, view, out),
            None => {}
        }
        self.finished = self.layer.done();
    }

    /// Remembers where the direction's stream starts, before its first
    /// bytes are delivered (the SYN's, the handshake's, or the first data
    /// segment's sequence number, as [`Stream`] places it).
    fn note_origin(&mut self, input: &PacketInput<'_>, seq: u32, syn: bool) {
        let d = input.view.dir.index();
        let stream = &self.streams[d];
        if stream.delivered() > 0 {
            return;
        }
        let origin = if syn {
            seq.wrapping_add(1)
        } else {
            stream.origin().or(input.data_start).unwrap_or(seq)
        };
        if let Some(o) = self.origins.get_mut(d) {
            *o = Some(origin);
        }
    }

    fn on_segment(
        &mut self,
        protocols: &Protocols,
        input: &PacketInput<'_>,
        seq: u32,
        syn: bool,
        out: &mut Emit,
    ) {
        let view = &input.view;
        let dir = view.dir;
        if !self.layer.wants_stream(dir) || self.streams[dir.index()].delivered() >= input.budget {
            return;
        }
        let (layer, streams, cx) = self.parts(protocols, input.flow);
        let stream = &mut streams[dir.index()];
        if let Some(start) = input.data_start {
            if stream.delivered() == 0 && !syn {
                stream.start_at(start);
            }
        }
        let seg = Segment {
            seq,
            syn,
            data: view.payload,
            wire_len: view.payload_len,
        };
        stream.push(seg, &mut |chunk| layer.on_chunk(&cx, dir, chunk, view, out));
    }

    /// The layer and streams to drive, with the context they need.
    fn parts<'a>(
        &'a mut self,
        protocols: &'a Protocols,
        flow: &'a FlowContext,
    ) -> (&'a mut Layer, &'a mut [Stream; 2], Cx<'a>) {
        let cx = Cx {
            protocols,
            flow,
            origins: self.origins,
        };
        (&mut self.layer, &mut self.streams, cx)
    }

    /// The flow ended: held stream bytes are flushed to the analyzer, which
    /// then writes its final events.
    pub fn finish(
        &mut self,
        protocols: &Protocols,
        flow: &FlowContext,
        last_ts: Timestamp,
        out: &mut Emit,
    ) {
        let (layer, streams, cx) = self.parts(protocols, flow);
        if !layer.is_probing() {
            for dir in [Dir::ToServer, Dir::ToClient] {
                if layer.wants_stream(dir) {
                    let view = PacketView {
                        index: 0,
                        ts: last_ts,
                        dir,
                        tcp: None,
                        payload: &[],
                        payload_len: 0,
                    };
                    streams[dir.index()]
                        .finish(&mut |chunk| layer.on_chunk(&cx, dir, chunk, &view, out));
                }
            }
        }
        layer.finish(last_ts, out);
    }
}

impl Layer {
    pub(crate) fn new(depth: u8) -> Layer {
        Layer {
            state: State::Probing(Box::default()),
            depth,
            depth_limited: false,
            midstream: false,
        }
    }

    pub(crate) fn facts(&self) -> Option<&AppFacts> {
        match &self.state {
            State::Active(a) => Some(a.facts()),
            State::Carried(c) => c.facts(),
            State::Midstream(m) => m.facts(),
            _ => None,
        }
    }

    pub(crate) fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        match &self.state {
            State::Active(a) => a.alert_object(),
            State::Carried(c) => c.alert_object(),
            _ => None,
        }
    }

    pub(crate) fn hops<'a>(&'a self, out: &mut Vec<(Via, Option<&'a Hop>)>) {
        if let State::Carried(c) = &self.state {
            c.hops(out);
        }
    }

    pub(crate) fn bounded(&self) -> bool {
        match &self.state {
            State::Carried(c) => c.bounded(),
            _ => self.depth_limited,
        }
    }

    pub(crate) fn is_unknown(&self) -> bool {
        matches!(self.state, State::Unknown)
    }

    fn is_probing(&self) -> bool {
        matches!(self.state, State::Probing(_))
    }

    /// Nothing more to learn from packets.
    pub(crate) fn done(&self) -> bool {
        match &self.state {
            State::Active(a) => a.done(),
            State::Carried(c) => c.done(),
            _ => false,
        }
    }

    pub(crate) fn wants_stream(&self, dir: Dir) -> bool {
        match &self.state {
            State::Probing(_) => true,
            State::Active(a) => a.wants_stream(dir),
            State::Carried(c) => c.wants_stream(dir),
            State::Midstream(_) | State::Unknown => false,
        }
    }

    pub(crate) fn on_packet(&mut self, cx: &Cx<'_>, view: &PacketView<'_>, out: &mut Emit) {
        match &mut self.state {
            State::Probing(p) if view.tcp.is_some() => p.log_packet(view),
            State::Active(a) => a.on_packet(view, out),
            State::Carried(c) => c.on_packet(cx, view, out),
            State::Midstream(m) => {
                m.on_packet(view);
                if m.gave_up() {
                    self.state = State::Unknown;
                }
            }
            _ => {}
        }
    }

    fn on_datagram(&mut self, cx: &Cx<'_>, view: &PacketView<'_>, out: &mut Emit) {
        let State::Probing(probing) = &mut self.state else {
            return;
        };
        match probing.probe(cx.protocols, cx.flow, view.dir, view.payload) {
            Verdict::Claimed(mut analyzer) => {
                analyzer.on_packet(view, out);
                self.state = State::Active(analyzer);
            }
            Verdict::Unknown => self.state = State::Unknown,
            Verdict::Tunnel | Verdict::Undecided => {}
        }
    }

    pub(crate) fn on_chunk(
        &mut self,
        cx: &Cx<'_>,
        dir: Dir,
        chunk: Chunk<'_>,
        view: &PacketView<'_>,
        out: &mut Emit,
    ) {
        match &mut self.state {
            State::Active(a) => a.on_stream(dir, chunk, view, out),
            State::Carried(c) => c.on_chunk(cx, dir, chunk, view, out),
            State::Probing(probing) => {
                let Chunk::Data(data) = chunk else {
                    // A hole before anything was claimed: the prefix the
                    // probes need is gone.
                    self.state = unclaimed(self.midstream && self.depth == 0, cx, probing);
                    return;
                };
                let tcp = cx.flow.proto == crate::flow::key::proto::TCP;
                let verdict = probing.offer(cx, dir, data, tcp, self.depth);
                self.depth_limited |= probing.depth_limited;
                match verdict {
                    Verdict::Claimed(mut a) => {
                        probing.replay(&mut |e| match e {
                            Replayed::Packet(v) => a.on_packet(v, out),
                            Replayed::Chunk(d, data, v) => {
                                a.on_stream(d, Chunk::Data(data), v, out)
                            }
                        });
                        self.state = State::Active(a);
                    }
                    Verdict::Tunnel => {
                        let hs = Handshake::for_bytes(&probing.bytes[Dir::ToServer.index()]);
                        let mut c = Box::new(Carried::new(hs, self.depth));
                        probing.replay(&mut |e| match e {
                            Replayed::Packet(v) => c.on_packet(cx, v, out),
                            Replayed::Chunk(d, data, v) => {
                                c.on_chunk(cx, d, Chunk::Data(data), v, out)
                            }
                        });
                        self.state = State::Carried(c);
                    }
                    Verdict::Unknown => {
                        self.state = unclaimed(self.midstream && self.depth == 0, cx, probing)
                    }
                    Verdict::Undecided => {}
                }
            }
            State::Midstream(_) | State::Unknown => {}
        }
    }

    pub(crate) fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        match &mut self.state {
            State::Active(a) => a.finish(last_ts, out),
            State::Carried(c) => c.finish(last_ts, out),
            State::Midstream(m) => m.finish(last_ts),
            _ => {}
        }
    }
}

/// What a flow no protocol claimed becomes: unknown, or, picked up
/// mid-stream over TCP with SSH analysis on, checked for SSH by its
/// segment sizes (the packets seen so far replayed).
fn unclaimed(midstream: bool, cx: &Cx<'_>, probing: &Probing) -> State {
    let tcp = cx.flow.proto == crate::flow::key::proto::TCP;
    let ssh_on = cx.protocols.iter().any(|p| p.name() == "ssh");
    if !(midstream && tcp && ssh_on) {
        return State::Unknown;
    }
    let mut m = Box::new(Midstream::new());
    for entry in &probing.log {
        if let Logged::Packet(view) = entry {
            m.on_packet(view);
        }
    }
    match m.gave_up() {
        true => State::Unknown,
        false => State::Midstream(m),
    }
}

enum Verdict {
    Claimed(Box<dyn Analyzer>),
    /// The client's bytes start a proxy handshake.
    Tunnel,
    Unknown,
    Undecided,
}

/// One entry of the probing log as replayed to the claimer.
enum Replayed<'a> {
    Packet(&'a PacketView<'a>),
    Chunk(Dir, &'a [u8], &'a PacketView<'a>),
}

/// Packets logged while probing, at most (bare ACKs do not end probing).
const PROBE_PACKETS: usize = 64;

impl Probing {
    fn log_packet(&mut self, view: &PacketView<'_>) {
        if self.log.len() < PROBE_PACKETS {
            self.log.push(Logged::Packet(PacketView {
                payload: &[],
                ..*view
            }));
        }
    }

    /// Appends a stream chunk of `dir` and probes the direction's bytes so
    /// far: for a proxy handshake first (TCP, below [`MAX_DEPTH`]), then
    /// for every protocol.
    fn offer(&mut self, cx: &Cx<'_>, dir: Dir, data: &[u8], tcp: bool, depth: u8) -> Verdict {
        let buf = &mut self.bytes[dir.index()];
        let room = PROBE_BYTES.saturating_sub(buf.len());
        let take = data.len().min(room);
        buf.extend_from_slice(&data[..take]);
        // Chunks are always logged: their bytes are what the claimer needs.
        self.log.push(Logged::Chunk(dir, take));
        let bytes = std::mem::take(&mut self.bytes[dir.index()]);
        let verdict = match self.probe_tunnel(dir, &bytes, tcp, depth) {
            Some(v) => v,
            None => self.probe(cx.protocols, cx.flow, dir, &bytes),
        };
        self.bytes[dir.index()] = bytes;
        if matches!(verdict, Verdict::Undecided) && room <= data.len() {
            return Verdict::Unknown;
        }
        verdict
    }

    /// `Some` while the bytes are (or may still become) a proxy handshake:
    /// other protocols wait, as HTTP would claim a CONNECT.
    fn probe_tunnel(&mut self, dir: Dir, data: &[u8], tcp: bool, depth: u8) -> Option<Verdict> {
        let server_spoke = !self.bytes[Dir::ToClient.index()].is_empty();
        if self.not_tunnel || !tcp || server_spoke || dir != Dir::ToServer {
            self.not_tunnel |= server_spoke || !tcp;
            return None;
        }
        match tunnel::probe(dir, data) {
            Probe::Match if depth < MAX_DEPTH => Some(Verdict::Tunnel),
            Probe::Match => {
                self.depth_limited = true;
                self.not_tunnel = true;
                None
            }
            Probe::NeedMore => {
                self.offered += 1;
                Some(if self.offered >= PROBE_LIMIT {
                    Verdict::Unknown
                } else {
                    Verdict::Undecided
                })
            }
            Probe::NoMatch => {
                self.not_tunnel = true;
                None
            }
        }
    }

    /// Offers `data` to every protocol that has not rejected the flow yet.
    fn probe(
        &mut self,
        protocols: &Protocols,
        ctx: &FlowContext,
        dir: Dir,
        data: &[u8],
    ) -> Verdict {
        self.offered += 1;
        for (i, p) in protocols.iter().enumerate().take(32) {
            if self.rejected & (1 << i) != 0 {
                continue;
            }
            match p.probe(ctx, dir, data) {
                Probe::Match => return Verdict::Claimed(p.start(ctx)),
                Probe::NoMatch => self.rejected |= 1 << i,
                Probe::NeedMore => {}
            }
        }
        let all = if protocols.len() >= 32 {
            u32::MAX
        } else {
            (1u32 << protocols.len()) - 1
        };
        if self.rejected & all == all || self.offered >= PROBE_LIMIT {
            Verdict::Unknown
        } else {
            Verdict::Undecided
        }
    }

    /// Hands everything probing saw to the claimer, in arrival order.
    fn replay(&self, to: &mut dyn FnMut(Replayed<'_>)) {
        let mut offsets = [0usize; 2];
        let mut last = None;
        for entry in &self.log {
            match entry {
                Logged::Packet(view) => {
                    to(Replayed::Packet(view));
                    last = Some(*view);
                }
                Logged::Chunk(dir, len) => {
                    let at = &mut offsets[dir.index()];
                    let data = self.bytes[dir.index()].get(*at..*at + len).unwrap_or(&[]);
                    *at += len;
                    if let Some(view) = &last {
                        to(Replayed::Chunk(*dir, data, view));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
