//! Per-flow application-layer state: probing a new flow's first bytes
//! against every registered [`Protocol`], then driving the one analyzer that
//! claimed it. Owned by the flow ([`crate::flow::Flow::app`]); created only
//! when a flow first carries payload.

use super::{Analyzer, AppFacts, Chunk, Dir, Emit, FlowContext, PacketView, Probe, Protocol};
use crate::flow::stream::{Segment, Stream};
use crate::json::Rendered;
use crate::time::Timestamp;

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
    state: State,
    /// The active analyzer said it is done: packets are no longer handed
    /// to it.
    finished: bool,
    streams: [Stream; 2],
    ctx: FlowContext,
}

enum State {
    Probing(Box<Probing>),
    Active(Box<dyn Analyzer>),
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
        let state = match &self.state {
            State::Probing(_) => "probing",
            State::Active(a) => a.facts().app_proto.unwrap_or("active"),
            State::Unknown => "unknown",
        };
        f.debug_struct("AppSlot").field("state", &state).finish()
    }
}

/// What the flow needs to hand a packet to its analyzer.
pub struct PacketInput<'a> {
    pub view: PacketView<'a>,
    /// TCP only: where this direction's data starts, when the SYN was seen.
    pub data_start: Option<u32>,
    /// Stream bytes per direction handed over at most.
    pub budget: u64,
}

impl AppSlot {
    pub fn new(ctx: FlowContext) -> Self {
        AppSlot {
            state: State::Probing(Box::default()),
            finished: false,
            streams: Default::default(),
            ctx,
        }
    }

    /// Facts of the active analyzer, if one claimed the flow.
    pub fn facts(&self) -> Option<&AppFacts> {
        match &self.state {
            State::Active(a) => Some(a.facts()),
            _ => None,
        }
    }

    /// The active analyzer's EVE object so far, for an alert.
    pub fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        match &self.state {
            State::Active(a) => a.alert_object(),
            _ => None,
        }
    }

    /// The active analyzer said it is done; packets are no longer needed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// True once no protocol can claim the flow any more.
    pub fn is_unknown(&self) -> bool {
        matches!(self.state, State::Unknown)
    }

    /// Hands one packet of the flow to probing or to the analyzer.
    pub fn on_packet(&mut self, protocols: &Protocols, input: &PacketInput<'_>, out: &mut Emit) {
        if self.finished {
            return;
        }
        let view = &input.view;
        if let State::Active(a) = &mut self.state {
            a.on_packet(view, out);
        }
        match view.tcp {
            Some(tcp) => self.on_segment(protocols, input, tcp.seq, tcp.flags.syn(), out),
            None if view.payload_len > 0 => self.on_datagram(protocols, view, out),
            None => {}
        }
        if let State::Active(a) = &self.state {
            self.finished = a.done();
        }
    }

    fn on_datagram(&mut self, protocols: &Protocols, view: &PacketView<'_>, out: &mut Emit) {
        let State::Probing(probing) = &mut self.state else {
            return;
        };
        match probing.probe(protocols, &self.ctx, view.dir, view.payload) {
            Verdict::Claimed(mut analyzer) => {
                analyzer.on_packet(view, out);
                self.state = State::Active(analyzer);
            }
            Verdict::Unknown => self.state = State::Unknown,
            Verdict::Undecided => {}
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
        if !self.wants_stream(dir) || self.streams[dir.index()].delivered() >= input.budget {
            return;
        }
        if let State::Probing(probing) = &mut self.state {
            probing.log_packet(view);
        }
        let AppSlot {
            state,
            streams,
            ctx,
            ..
        } = self;
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
        stream.push(seg, &mut |chunk| {
            state.on_chunk(protocols, ctx, chunk, view, out)
        });
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        match &self.state {
            State::Probing(_) => true,
            State::Active(a) => a.wants_stream(dir),
            State::Unknown => false,
        }
    }

    /// The flow ended: held stream bytes are flushed to the analyzer, which
    /// then writes its final events.
    pub fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        let AppSlot { state, streams, .. } = self;
        if let State::Active(a) = state {
            for dir in [Dir::ToServer, Dir::ToClient] {
                if a.wants_stream(dir) {
                    let view = PacketView {
                        index: 0,
                        ts: last_ts,
                        dir,
                        tcp: None,
                        payload: &[],
                        payload_len: 0,
                    };
                    streams[dir.index()].finish(&mut |chunk| a.on_stream(dir, chunk, &view, out));
                }
            }
            a.finish(last_ts, out);
        }
    }
}

impl State {
    fn on_chunk(
        &mut self,
        protocols: &Protocols,
        ctx: &FlowContext,
        chunk: Chunk<'_>,
        view: &PacketView<'_>,
        out: &mut Emit,
    ) {
        match self {
            State::Active(a) => a.on_stream(view.dir, chunk, view, out),
            State::Probing(probing) => {
                let Chunk::Data(data) = chunk else {
                    // A hole before anything was claimed: the prefix the
                    // probes need is gone.
                    *self = State::Unknown;
                    return;
                };
                match probing.offer(protocols, ctx, view.dir, data) {
                    Verdict::Claimed(mut a) => {
                        probing.replay(a.as_mut(), out);
                        *self = State::Active(a);
                    }
                    Verdict::Unknown => *self = State::Unknown,
                    Verdict::Undecided => {}
                }
            }
            State::Unknown => {}
        }
    }
}

enum Verdict {
    Claimed(Box<dyn Analyzer>),
    Unknown,
    Undecided,
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
    /// far.
    fn offer(
        &mut self,
        protocols: &Protocols,
        ctx: &FlowContext,
        dir: Dir,
        data: &[u8],
    ) -> Verdict {
        let buf = &mut self.bytes[dir.index()];
        let room = PROBE_BYTES.saturating_sub(buf.len());
        let take = data.len().min(room);
        buf.extend_from_slice(&data[..take]);
        // Chunks are always logged: their bytes are what the claimer needs.
        self.log.push(Logged::Chunk(dir, take));
        let bytes = std::mem::take(&mut self.bytes[dir.index()]);
        let verdict = self.probe(protocols, ctx, dir, &bytes);
        self.bytes[dir.index()] = bytes;
        if matches!(verdict, Verdict::Undecided) && room <= data.len() {
            return Verdict::Unknown;
        }
        verdict
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

    /// Hands everything probing saw to the analyzer that claimed the flow,
    /// in arrival order.
    fn replay(&self, a: &mut dyn Analyzer, out: &mut Emit) {
        let mut offsets = [0usize; 2];
        let mut last = None;
        for entry in &self.log {
            match entry {
                Logged::Packet(view) => {
                    a.on_packet(view, out);
                    last = Some(*view);
                }
                Logged::Chunk(dir, len) => {
                    let at = &mut offsets[dir.index()];
                    let data = self.bytes[dir.index()].get(*at..*at + len).unwrap_or(&[]);
                    *at += len;
                    if let Some(view) = &last {
                        a.on_stream(*dir, Chunk::Data(data), view, out);
                    }
                }
            }
        }
    }
}
