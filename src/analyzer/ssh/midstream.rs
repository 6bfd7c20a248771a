//! Probable SSH in a TCP flow picked up mid-stream: no handshake was seen
//! (the sensor started, or the flow table lost the flow, while the
//! connection was open), no remembered flow continues it and no probe
//! recognises its first bytes, because they are the middle of an
//! encrypted SSH session. What is left are the segment sizes and times.
//!
//! Interactive and tunnel traffic writes one SSH packet per TCP segment,
//! so the segment sizes are SSH packet sizes, and the cipher suite leaves
//! a signature in them (chacha20-poly1305: every packet is 4 mod 8;
//! AES-GCM 4 mod 16; CTR with a MAC: a multiple of the block plus the MAC;
//! EtM: the block plus length field plus MAC). The first [`SNIFF_UNITS`]
//! units choose the candidate suite of the size model
//! ([`INNER_SUITES`]) that explains the most of them; from there the units
//! go, as for SSH read from its bytes and SSH inside TLS, to the one
//! inference ([`Inference`]): keystroke/echo and which side types, inner
//! handshakes of reverse and nested sessions, keepalive rhythm.
//!
//! The facts are published (the flow then counts as SSH, marked inferred
//! `midstream-size-model`) only once the inference reaches a verdict that
//! only SSH produces: interactive typing, a reverse or nested session, or
//! a keepalive-only tunnel. A flow whose sizes fit no suite is given up
//! after [`SNIFF_UNITS`], one without a verdict after [`RUN_UNITS`], so
//! bulk flows cost a few counters.

use super::infer::Inference;
use super::model::{Model, Unit};
use super::segments::{self, Pending};
use super::sizes::{inner_suites, Suite, INNER_SUITES};
use crate::analyzer::{AppFacts, Dir, Evidence, PacketView, SshFacts};
use crate::decode::TcpFlags;
use crate::time::Timestamp;

/// The `inferred` evidence value of SSH found this way.
pub const INFERRED: &str = "midstream-size-model";
/// Data units that choose the suite (or rule SSH out).
pub const SNIFF_UNITS: usize = 16;
/// Share of the sniffed units (out of [`SNIFF_UNITS`]) the chosen suite
/// must explain as whole messages.
const SNIFF_FIT: u32 = 12;
/// Events (units and bare ACKs) buffered while sniffing.
const SNIFF_EVENTS: usize = 48;
/// Room for them at first: most mid-stream flows (keep-alives) send only a
/// few packets, so the rest is reserved, once, when they are used up.
const SNIFF_FIRST: usize = 8;
/// Units fed to the inference without a verdict before it is given up.
pub const RUN_UNITS: u32 = 600;
/// Confirmed channel opens of the client that make a forwarding session.
const FORWARD_OPENS: u32 = 4;

/// One event of the flow as the inference takes it: a data unit, or a bare
/// ACK (`size` 0).
type Event = Unit;

#[derive(Default)]
enum State {
    #[default]
    Sniffing,
    Running(Box<Running>),
    /// Not SSH by its sizes, or no verdict in time: nothing more to learn.
    Gone,
}

struct Running {
    inference: Inference,
    ssh: SshFacts,
    facts: AppFacts,
    published: bool,
    units: u32,
    /// Why the suite was chosen (the start of the evidence).
    why: String,
    first: (u64, Timestamp),
    last: Timestamp,
}

/// Per TCP direction: new bytes only, MSS-full segments merged.
#[derive(Copy, Clone, Debug, Default)]
struct Side {
    hi_seq: Option<u32>,
    max_seg: u32,
    pending: Option<Pending>,
}

/// The mid-stream analysis of one flow.
#[derive(Default)]
pub struct Midstream {
    state: State,
    sides: [Side; 2],
    /// Events seen while sniffing (allocated at most twice, at most
    /// [`SNIFF_EVENTS`]), and the data units among them.
    sniffed: Vec<Event>,
    data_units: usize,
}

impl std::fmt::Debug for Midstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Sniffing => "sniffing",
            State::Running(_) => "running",
            State::Gone => "gone",
        };
        f.debug_struct("Midstream").field("state", &state).finish()
    }
}

impl Midstream {
    pub fn new() -> Midstream {
        Midstream {
            sniffed: Vec::with_capacity(SNIFF_FIRST),
            ..Midstream::default()
        }
    }

    /// The flow is not (or no longer followed as) SSH.
    pub fn gave_up(&self) -> bool {
        matches!(self.state, State::Gone)
    }

    /// The facts, once SSH is inferred.
    pub fn facts(&self) -> Option<&AppFacts> {
        match &self.state {
            State::Running(r) if r.published => Some(&r.facts),
            _ => None,
        }
    }

    /// One packet of the flow, in capture order.
    pub fn on_packet(&mut self, pkt: &PacketView<'_>) {
        if self.gave_up() {
            return;
        }
        let bare_ack =
            pkt.payload_len == 0 && pkt.tcp.is_some_and(|t| t.flags == TcpFlags(TcpFlags::ACK));
        if bare_ack {
            self.event(Unit {
                dir: pkt.dir,
                size: 0,
                idx: pkt.index,
                ts: pkt.ts,
                exact: false,
            });
            return;
        }
        if self.is_new(pkt) {
            self.segment(pkt);
        }
    }

    /// The flow ended: units in flight are counted and the inference
    /// settles what needs the whole session.
    pub fn finish(&mut self, last: Timestamp) {
        self.flush(Dir::ToServer);
        self.flush(Dir::ToClient);
        if matches!(self.state, State::Sniffing) {
            self.decide();
        }
        if let State::Running(run) = &mut self.state {
            run.inference.finish(last, &mut run.ssh);
            match run.published {
                true => run.sync(),
                false => run.publish_if_confirmed(),
            }
        }
    }

    /// Whether the packet carries bytes beyond the highest seen in its
    /// direction (retransmissions are not new units).
    fn is_new(&mut self, pkt: &PacketView<'_>) -> bool {
        let (Some(tcp), true) = (pkt.tcp, pkt.payload_len > 0) else {
            return false;
        };
        let side = &mut self.sides[pkt.dir.index()];
        side.max_seg = side.max_seg.max(pkt.payload_len);
        let end = tcp.seq.wrapping_add(pkt.payload_len);
        match side.hi_seq {
            Some(hi) if (end.wrapping_sub(hi) as i32) <= 0 => false,
            _ => {
                side.hi_seq = Some(end);
                true
            }
        }
    }

    /// A new segment: merged with its predecessor when that one was
    /// MSS-full, else a unit of its own.
    fn segment(&mut self, pkt: &PacketView<'_>) {
        let (dir, size) = (pkt.dir, pkt.payload_len);
        self.flush(dir.reverse());
        let d = dir.index();
        let side = &mut self.sides[d];
        let (ended, complete) = segments::add(&mut side.pending, size, pkt, side.max_seg);
        if let Some(p) = ended {
            self.event(p.unit(dir));
        }
        if complete {
            self.flush(dir);
        }
    }

    fn flush(&mut self, dir: Dir) {
        if let Some(p) = self.sides[dir.index()].pending.take() {
            self.event(p.unit(dir));
        }
    }

    fn event(&mut self, e: Event) {
        match &mut self.state {
            State::Gone => {}
            State::Running(run) => {
                if !run.on_event(e) {
                    self.state = State::Gone;
                }
            }
            State::Sniffing => {
                if self.sniffed.len() == SNIFF_FIRST {
                    self.sniffed.reserve_exact(SNIFF_EVENTS - SNIFF_FIRST);
                }
                if self.sniffed.len() < SNIFF_EVENTS {
                    self.sniffed.push(e);
                }
                self.data_units += usize::from(e.size > 0);
                if self.data_units >= SNIFF_UNITS || self.sniffed.len() >= SNIFF_EVENTS {
                    self.decide();
                }
            }
        }
    }

    /// Chooses the suite from the sniffed units and replays them to the
    /// inference, or gives the flow up.
    fn decide(&mut self) {
        let events = std::mem::take(&mut self.sniffed);
        let data = || events.iter().filter(|e| e.size > 0);
        let both = [Dir::ToServer, Dir::ToClient].map(|d| data().any(|e| e.dir == d));
        let n = data().count();
        let chosen = match (n >= SNIFF_UNITS, both) {
            (true, [true, true]) => choose_suite(data().map(|e| e.size)),
            _ => None,
        };
        let Some((i, suite, fits)) = chosen else {
            self.state = State::Gone;
            return;
        };
        let first = events
            .first()
            .map_or((0, Timestamp::default()), |e| (e.idx, e.ts));
        let mut run = Box::new(Running::new(i, suite, fits, n, first));
        for e in events {
            if !run.on_event(e) {
                self.state = State::Gone;
                return;
            }
        }
        self.state = State::Running(run);
    }
}

/// The candidate suite that explains the most sizes as whole messages, if
/// it explains at least [`SNIFF_FIT`] of them: its position in
/// [`INNER_SUITES`], its model and the count. Several suites share a size
/// residue (AES-GCM, CTR with `hmac-sha1` and some EtM MACs are all 4 mod
/// 16), so a tie goes to the suite whose keystroke sizes (direct or of a
/// tunnelled session) are the most frequent, then to the larger block (a
/// size that is 4 mod 16 is also 4 mod 8, not the other way).
fn choose_suite(sizes: impl Iterator<Item = u32> + Clone) -> Option<(usize, Suite, u32)> {
    let mut best: Option<(usize, Suite, (u32, u32, u32))> = None;
    for (i, (c, m)) in INNER_SUITES.iter().enumerate() {
        let Some(s) = Suite::from_names(c, Some(m)) else {
            continue;
        };
        let fits = sizes.clone().filter(|&w| s.is_single(w)).count() as u32;
        let keys = sizes.clone().filter(|&w| is_keystroke(&s, w)).count() as u32;
        let score = (fits, keys, s.block);
        if best.is_none_or(|(_, _, b)| score > b) {
            best = Some((i, s, score));
        }
    }
    best.map(|(i, s, (fits, _, _))| (i, s, fits))
        .filter(|&(_, _, fits)| fits >= SNIFF_FIT)
}

/// A keystroke of this suite, direct or carrying an inner session's.
fn is_keystroke(s: &Suite, wire: u32) -> bool {
    wire == s.keystroke() || inner_suites().any(|i| s.tunnelled(i.keystroke()) == wire)
}

impl Running {
    fn new(i: usize, suite: Suite, fits: u32, n: usize, first: (u64, Timestamp)) -> Running {
        let (c, m) = INNER_SUITES.get(i).copied().unwrap_or(("?", "none"));
        let name = match m {
            "none" => c.to_string(),
            m => format!("{c}+{m}"),
        };
        let why = format!(
            "SSH inferred from the segment sizes of a TCP flow picked up mid-stream (no \
             handshake or banner seen): {fits} of its first {n} messages are whole {name} \
             packets"
        );
        // The originator (by the port guess) is taken as the SSH client.
        let mut inference = Inference::new(Model::new([suite, suite], Dir::ToServer), false);
        inference.set_midstream();
        Running {
            inference,
            ssh: SshFacts::default(),
            facts: AppFacts::default(),
            published: false,
            units: 0,
            why,
            first,
            last: first.1,
        }
    }

    /// Feeds one event; false when the inference is given up.
    fn on_event(&mut self, e: Event) -> bool {
        if e.size == 0 {
            self.inference.bare_ack(e.dir);
            return true;
        }
        self.units = self.units.saturating_add(1);
        self.last = e.ts;
        let ch = self.inference.on_unit(e, &mut self.ssh);
        match self.published {
            true if ch.facts => self.sync(),
            true => {}
            false => self.publish_if_confirmed(),
        }
        self.published || self.units < RUN_UNITS
    }

    /// Publishes the facts once a verdict only SSH produces is reached.
    fn publish_if_confirmed(&mut self) {
        if self.published {
            return;
        }
        let opens = self.inference.confirmed_opens()[Dir::ToServer.index()];
        let Some(verdict) = verdict_of(&self.ssh, opens) else {
            return;
        };
        self.published = true;
        let summary = format!("{}; {verdict}", self.why);
        let (idx, ts) = self.first;
        let ev = Evidence::new(summary, &[idx], ts, self.last).inferred(INFERRED);
        self.ssh.inferred = Some(ev);
        self.facts.app_proto = Some("ssh");
        self.sync();
    }

    /// Copies the SSH facts into the published ones when they changed.
    fn sync(&mut self) {
        if self.facts.ssh.as_deref() != Some(&self.ssh) {
            self.facts.ssh = Some(Box::new(self.ssh.clone()));
            self.facts.touch();
        }
    }
}

/// The verdict that makes the flow SSH, in words (`opens`: channel opens
/// of the client confirmed by the server, as port forwarding makes them).
/// A login outcome is no verdict here (no login is looked for
/// mid-stream), nor is a file transfer (any bulk flow has one).
fn verdict_of(f: &SshFacts, opens: u32) -> Option<&'static str> {
    let verdicts = [
        (
            f.reverse_session.is_some(),
            "an inner SSH handshake came back through it",
        ),
        (
            f.nested_forward.is_some(),
            "an inner SSH handshake went through it",
        ),
        (
            f.reverse_interactive.is_some(),
            "keystroke/echo pairs typed from the server side",
        ),
        (
            f.forward_interactive.is_some(),
            "keystroke/echo pairs typed from the client side",
        ),
        (
            f.keepalive_only.is_some(),
            "only keepalive request/reply pairs",
        ),
        (
            opens >= FORWARD_OPENS,
            "channel opens from the client, each confirmed by the server (port forwarding)",
        ),
    ];
    verdicts.iter().find(|(hit, _)| *hit).map(|&(_, v)| v)
}

#[cfg(test)]
#[path = "midstream_tests.rs"]
mod tests;
