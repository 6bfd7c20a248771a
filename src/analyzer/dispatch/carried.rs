//! A tunnel layer: the proxy handshake read from both directions, then
//! the stream it carries handed to an inner [`Layer`] as if it were a
//! flow of its own.
//!
//! Offsets: the layer counts each direction's handshake bytes; the inner
//! stream of a direction starts at the layer's origin plus that count.
//! Packets are handed inward with their sequence number and payload cut to
//! the inner stream: a packet wholly inside the handshake is not passed,
//! the packet that carries the end of the proxy's reply and the first
//! inner bytes is passed as its inner part only (SSH's size model counts
//! payload lengths), later packets unchanged.
//!
//! Bounds: bytes a direction sends before the handshake wants them are
//! held, at most [`HOLD_BYTES`] per direction (more fails the layer);
//! packets seen before the handshake ended are remembered, at most
//! [`RECENT_PACKETS`], to replay the ones that carry inner bytes.

use super::{Cx, Layer};
use crate::analyzer::tunnel::connect::Transaction;
use crate::analyzer::tunnel::{Handshake, Hop, Progress, Via};
use crate::analyzer::{AppEvent, AppFacts, Chunk, Dir, Emit, PacketView};
use crate::flow::tcp::{seq_le, seq_lt};
use crate::json::Rendered;
use crate::time::Timestamp;

/// Bytes held per direction while the handshake waits for the other side.
pub const HOLD_BYTES: usize = 8 * 1024;
/// Packets remembered before the handshake is established.
pub const RECENT_PACKETS: usize = 16;

pub(crate) struct Carried {
    handshake: Handshake,
    depth: u8,
    /// Handshake bytes per direction.
    consumed: [u64; 2],
    held: [Vec<u8>; 2],
    recent: Vec<PacketView<'static>>,
    /// The carried stream, once the handshake is established.
    inner: Option<Layer>,
    failed: bool,
    /// Failed because a direction sent more than [`HOLD_BYTES`] early.
    overflowed: bool,
    /// What the flow is when nothing inside is identified (or the
    /// handshake failed): the carrier protocol, with the target's name.
    carrier: AppFacts,
    hop: Option<Hop>,
}

impl Carried {
    pub(crate) fn new(handshake: Handshake, depth: u8) -> Carried {
        let carrier = AppFacts::new(handshake.via().app_proto());
        Carried {
            handshake,
            depth,
            consumed: [0; 2],
            held: Default::default(),
            recent: Vec::new(),
            inner: None,
            failed: false,
            overflowed: false,
            carrier,
            hop: None,
        }
    }

    /// The inner analyzer's facts; the carrier's when the inner stream is
    /// unknown or the handshake failed; none while either is undecided.
    pub(crate) fn facts(&self) -> Option<&AppFacts> {
        match &self.inner {
            Some(inner) if inner.is_unknown() => Some(&self.carrier),
            Some(inner) => inner.facts(),
            None if self.failed => Some(&self.carrier),
            None => None,
        }
    }

    pub(crate) fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        self.inner.as_ref().and_then(Layer::alert_object)
    }

    pub(crate) fn hops<'a>(&'a self, out: &mut Vec<(Via, Option<&'a Hop>)>) {
        if self.inner.is_none() {
            return;
        }
        out.push((self.handshake.via(), self.hop.as_ref()));
        if let Some(inner) = &self.inner {
            inner.hops(out);
        }
    }

    pub(crate) fn bounded(&self) -> bool {
        self.overflowed || self.inner.as_ref().is_some_and(Layer::bounded)
    }

    pub(crate) fn done(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.done() || inner.is_unknown(),
            None => self.failed,
        }
    }

    pub(crate) fn wants_stream(&self, dir: Dir) -> bool {
        match &self.inner {
            Some(inner) => inner.wants_stream(dir),
            None => !self.failed,
        }
    }

    pub(crate) fn on_packet(&mut self, cx: &Cx<'_>, view: &PacketView<'_>, out: &mut Emit) {
        if let Some(inner) = self.inner.as_mut() {
            let icx = Cx {
                origins: inner_origins(cx.origins, self.consumed),
                ..*cx
            };
            if let Some(v) = cut(&icx, view) {
                inner.on_packet(&icx, &v, out);
            }
        } else if !self.failed && view.payload_len > 0 {
            if self.recent.len() >= RECENT_PACKETS {
                self.recent.remove(0);
            }
            self.recent.push(PacketView {
                payload: &[],
                ..*view
            });
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
        if let Some(inner) = self.inner.as_mut() {
            let icx = Cx {
                origins: inner_origins(cx.origins, self.consumed),
                ..*cx
            };
            inner.on_chunk(&icx, dir, chunk, view, out);
            return;
        }
        if self.failed {
            return;
        }
        match chunk {
            Chunk::Gap(_) => self.failed = true,
            Chunk::Data(data) => self.take(dir, data),
        }
        self.settle();
        self.write_records(view.ts, out);
        match self.handshake.progress() {
            Progress::Established => self.establish(cx, view, out),
            Progress::Failed => self.fail(),
            Progress::More if self.failed => self.fail(),
            Progress::More => {}
        }
    }

    /// Feeds handshake bytes of `dir`; what the handshake does not want
    /// yet is held.
    fn take(&mut self, dir: Dir, data: &[u8]) {
        let d = dir.index();
        let mut rest = data;
        while self.held[d].is_empty() && !rest.is_empty() && self.handshake.wants(dir) {
            let n = self.handshake.feed(dir, rest);
            if n == 0 {
                break;
            }
            self.consumed[d] += n as u64;
            rest = rest.get(n..).unwrap_or_default();
        }
        if rest.is_empty() {
            return;
        }
        if self.held[d].len() + rest.len() > HOLD_BYTES {
            self.failed = true;
            self.overflowed = true;
            return;
        }
        self.held[d].extend_from_slice(rest);
    }

    /// Feeds held bytes to the handshake while it wants them.
    fn settle(&mut self) {
        let mut moved = true;
        while moved && !self.failed && self.handshake.progress() == Progress::More {
            moved = false;
            for dir in [Dir::ToServer, Dir::ToClient] {
                let d = dir.index();
                if self.held[d].is_empty() || !self.handshake.wants(dir) {
                    continue;
                }
                let n = self.handshake.feed(dir, &self.held[d]);
                if n > 0 {
                    self.held[d].drain(..n);
                    self.consumed[d] += n as u64;
                    moved = true;
                }
            }
        }
    }

    /// The handshake is established: the inner layer starts and gets the
    /// packets and bytes that already belong to it.
    fn establish(&mut self, cx: &Cx<'_>, view: &PacketView<'_>, out: &mut Emit) {
        self.hop = self.handshake.hop().cloned();
        self.carrier.server_name = self.hop.as_ref().and_then(|h| h.name().map(String::from));
        let mut inner = Layer::new(self.depth + 1);
        let icx = Cx {
            origins: inner_origins(cx.origins, self.consumed),
            ..*cx
        };
        let mut last = [None::<PacketView<'static>>; 2];
        for p in std::mem::take(&mut self.recent) {
            if let Some(v) = cut(&icx, &p) {
                inner.on_packet(&icx, &v, out);
                last[v.dir.index()] = Some(v);
            }
        }
        for dir in [Dir::ToServer, Dir::ToClient] {
            let held = std::mem::take(&mut self.held[dir.index()]);
            if held.is_empty() {
                continue;
            }
            let at = last[dir.index()].unwrap_or(PacketView {
                payload: &[],
                dir,
                ..*view
            });
            inner.on_chunk(&icx, dir, Chunk::Data(&held), &at, out);
        }
        self.inner = Some(inner);
    }

    /// CONNECT attempts become EVE `http` records as they finish.
    fn write_records(&mut self, ts: Timestamp, out: &mut Emit) {
        for tx in self.handshake.take_records() {
            out.push(connect_record(&tx, ts));
        }
    }

    pub(crate) fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        if let Handshake::Connect(c) = &mut self.handshake {
            if let Some(tx) = c.open.take() {
                out.push(connect_record(&tx, last_ts));
            }
        }
        match self.inner.as_mut() {
            Some(inner) => inner.finish(last_ts, out),
            // Never established: the flow was the carrier protocol alone.
            None => self.fail(),
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.carrier.server_name = self
            .handshake
            .hop()
            .or(self.handshake.requested())
            .and_then(|h| h.name().map(String::from));
    }
}

fn inner_origins(origins: [Option<u32>; 2], consumed: [u64; 2]) -> [Option<u32>; 2] {
    let mut out = origins;
    for (o, n) in out.iter_mut().zip(consumed) {
        *o = o.map(|o| o.wrapping_add(n as u32));
    }
    out
}

/// `view` as the inner stream sees it: `None` if it carries handshake
/// bytes only; its inner part if it carries both.
fn cut<'a>(icx: &Cx<'_>, view: &PacketView<'a>) -> Option<PacketView<'a>> {
    let Some(mut tcp) = view.tcp else {
        return Some(*view);
    };
    if view.payload_len == 0 {
        return Some(*view);
    }
    let start = icx.origins[view.dir.index()]?;
    let end = tcp.seq.wrapping_add(view.payload_len);
    if seq_le(end, start) {
        return None;
    }
    if !seq_lt(tcp.seq, start) {
        return Some(*view);
    }
    let skip = start.wrapping_sub(tcp.seq);
    tcp.seq = start;
    Some(PacketView {
        tcp: Some(tcp),
        payload: view.payload.get(skip as usize..).unwrap_or_default(),
        payload_len: view.payload_len - skip,
        ..*view
    })
}

/// The EVE `http` record of one CONNECT attempt (Suricata's field names).
fn connect_record(tx: &Transaction, ts: Timestamp) -> AppEvent {
    let body = Rendered::build(|o| {
        if let Some(h) = &tx.host {
            o.str("hostname", h);
        }
        if let Some(p) = tx.port {
            o.u64("http_port", p.into());
        }
        o.str("url", &tx.authority);
        if let Some(ua) = &tx.user_agent {
            o.str("http_user_agent", ua);
        }
        o.str("http_method", "CONNECT");
        o.str("protocol", &tx.protocol);
        if let Some(s) = tx.status {
            o.u64("status", s.into());
        }
    });
    AppEvent {
        ts,
        event_type: "http",
        body,
        extra: None,
        dns: None,
    }
}
