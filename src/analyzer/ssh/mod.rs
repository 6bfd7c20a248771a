//! SSH analysis: identification by banner on any port, KEXINIT parsing with
//! HASSH and algorithm negotiation, a cipher-aware size model of the
//! encrypted phase, and inferences from it (login outcome, `-R` requests,
//! reverse and nested sessions, typing side, file transfer, keepalive-only
//! tunnels, role reversal), reported as [`SshFacts`] and one EVE `ssh`
//! record per session.
//!
//! Stream handling per direction: identification line(s), then clear-text
//! binary packets up to NEWKEYS, then either record walking (length field in
//! clear: AES-GCM, `-etm` MACs) on the stream, or TCP segment sizes from the
//! packets (chacha20-poly1305 and plain MACs) with the stream turned off.

pub mod banner;
mod eve;
pub(crate) mod infer;
mod inner;
pub mod kex;
pub mod midstream;
pub(crate) mod model;
pub mod records;
mod segments;
pub mod sizes;
pub mod window;

use crate::analyzer::{
    Analyzer, AppFacts, Chunk, Dir, Emit, Evidence, FlowContext, PacketView, Probe, Protocol,
    SshFacts,
};
use crate::decode::TcpFlags;
use crate::json::Rendered;
use crate::time::Timestamp;
use banner::{Banner, LineReader, LineResult};
use infer::Inference;
use kex::{KexInit, Negotiated};
use model::{Model, Unit};
use records::{Framer, Walker};
use segments::Pending;
use sizes::Suite;

/// The SSH protocol: claims flows whose first bytes are an SSH
/// identification line, from either side, on any port.
#[derive(Debug, Default)]
pub struct SshProtocol;

impl Protocol for SshProtocol {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn probe(&self, _ctx: &FlowContext, dir: Dir, data: &[u8]) -> Probe {
        banner::probe(dir, data)
    }

    fn start(&self, _ctx: &FlowContext) -> Box<dyn Analyzer> {
        Box::new(SshAnalyzer::new())
    }
}

/// Key exchange message codes sent only by the SSH client (KEXDH/ECDH/
/// hybrid init, DH-GEX request and init) and only by the server (replies,
/// DH-GEX group).
const CLIENT_KEX_CODES: [u8; 3] = [30, 32, 34];
const SERVER_KEX_CODES: [u8; 2] = [31, 33];
const MSG_NEWKEYS: u8 = 21;

/// Payloads above this cannot be one wire segment on a 1500-byte MTU link:
/// receive offload merged them on the capture host.
const MAX_WIRE_SEGMENT: u32 = 1460;
/// Stream bytes missing behind the packets before record walking is given
/// up for segment sizes.
const WALK_LAG: u64 = 256 * 1024;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Identification line (and pre-banner lines).
    Ident,
    /// Clear-text binary packets.
    Clear,
    /// Encrypted, records walked on the stream.
    Walk,
    /// Encrypted, sizes from TCP segments.
    Segments,
    /// Nothing more to learn from this direction's bytes.
    Off,
}

#[derive(Debug)]
struct Side {
    phase: Phase,
    lines: LineReader,
    framer: Framer,
    walker: Option<Walker>,
    /// Highest TCP sequence number seen (end of payload), for telling new
    /// segments from retransmissions.
    hi_seq: Option<u32>,
    /// Largest payload seen.
    max_seg: u32,
    /// Largest payload seen before NEWKEYS (the handshake's large messages
    /// are cut at the path MSS, jumbo frames included).
    handshake_seg: u32,
    /// Record walking: new bytes seen in packets and bytes fed to the
    /// walker; when the stream falls far behind the packets, the flow
    /// tracker stopped delivering (its per-flow stream budget).
    walk_seen: u64,
    walk_fed: u64,
    /// Reasons already reported, so bulk traffic does not format one per
    /// packet.
    hole_noted: bool,
    oversize_noted: bool,
    pending: Option<Pending>,
    newkeys: Option<(u64, Timestamp)>,
    kexinit_at: Option<(u64, Timestamp)>,
}

impl Side {
    fn new() -> Side {
        Side {
            phase: Phase::Ident,
            lines: LineReader::default(),
            framer: Framer::default(),
            walker: None,
            hi_seq: None,
            max_seg: 0,
            handshake_seg: 0,
            walk_seen: 0,
            walk_fed: 0,
            hole_noted: false,
            oversize_noted: false,
            pending: None,
            newkeys: None,
            kexinit_at: None,
        }
    }
}

/// Which TCP direction is the SSH client, and why.
#[derive(Clone, Debug, Default)]
struct Roles {
    /// `None` while undecided (the originator is assumed meanwhile).
    client: Option<Dir>,
    why: Vec<String>,
    pkts: Vec<u64>,
    first: Option<Timestamp>,
    last: Timestamp,
}

/// The per-flow SSH analyzer.
pub struct SshAnalyzer {
    facts: AppFacts,
    sides: [Side; 2],
    banners: [Option<Banner>; 2],
    kexinits: [Option<KexInit>; 2],
    roles: Roles,
    negotiated: Option<Negotiated>,
    infer: Option<Inference>,
    unreliable: Vec<String>,
    first_ts: Option<Timestamp>,
    last_ts: Timestamp,
    handshake_done: Option<Timestamp>,
    /// Record walking gave way to segment sizes (stream no longer
    /// delivered), by TCP direction.
    walk_stopped: [bool; 2],
    emitted: bool,
}

impl Default for SshAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl SshAnalyzer {
    pub fn new() -> SshAnalyzer {
        let mut facts = AppFacts::new("ssh");
        facts.ssh = Some(Box::default());
        SshAnalyzer {
            facts,
            sides: [Side::new(), Side::new()],
            banners: [None, None],
            kexinits: [None, None],
            roles: Roles::default(),
            negotiated: None,
            infer: None,
            unreliable: Vec::new(),
            first_ts: None,
            last_ts: Timestamp::default(),
            handshake_done: None,
            walk_stopped: [false; 2],
            emitted: false,
        }
    }

    fn ssh(&mut self) -> &mut SshFacts {
        self.facts.ssh.get_or_insert_with(Box::default)
    }

    /// The SSH client's TCP direction (the originator until known).
    fn client_dir(&self) -> Dir {
        self.roles.client.unwrap_or(Dir::ToServer)
    }

    fn see(&mut self, ts: Timestamp) {
        self.first_ts.get_or_insert(ts);
        if ts > self.last_ts {
            self.last_ts = ts;
        }
    }

    /// Records why sizes cannot be trusted (capture problems: gaps,
    /// coalescing, lost framing); the first reason is the fact.
    fn mark_unreliable(&mut self, reason: String) {
        if let Some(inf) = self.infer.as_mut() {
            inf.set_unreliable();
        }
        self.note_unreliable(reason);
    }

    /// Records a reason without stopping structural inferences (compressed
    /// payloads keep message order and pairs, not exact sizes).
    fn note_unreliable(&mut self, reason: String) {
        if self.unreliable.len() < 8 && !self.unreliable.contains(&reason) {
            self.unreliable.push(reason.clone());
        }
        let ssh = self.ssh();
        if ssh.sizes_unreliable.is_none() {
            ssh.sizes_unreliable = Some(reason);
            self.facts.touch();
        }
    }

    /// Tracks the highest sequence number of `dir`; true if the packet
    /// carries new bytes, and whether bytes before it are missing.
    fn track_seq(&mut self, pkt: &PacketView<'_>) -> (bool, bool) {
        let Some(tcp) = pkt.tcp else {
            return (pkt.payload_len > 0, false);
        };
        if pkt.payload_len == 0 {
            return (false, false);
        }
        let side = &mut self.sides[pkt.dir.index()];
        side.max_seg = side.max_seg.max(pkt.payload_len);
        if matches!(side.phase, Phase::Ident | Phase::Clear) {
            side.handshake_seg = side.handshake_seg.max(pkt.payload_len);
        }
        let end = tcp.seq.wrapping_add(pkt.payload_len);
        match side.hi_seq {
            None => {
                side.hi_seq = Some(end);
                (true, false)
            }
            Some(hi) if (end.wrapping_sub(hi) as i32) > 0 => {
                side.hi_seq = Some(end);
                (true, (tcp.seq.wrapping_sub(hi) as i32) > 0)
            }
            Some(_) => (false, false),
        }
    }

    fn feed(&mut self, dir: Dir, mut data: &[u8], pkt: &PacketView<'_>) {
        while !data.is_empty() {
            let d = dir.index();
            match self.sides[d].phase {
                Phase::Ident => match self.sides[d].lines.push(data) {
                    LineResult::Banner(b, used) => {
                        data = data.get(used..).unwrap_or_default();
                        self.on_banner(dir, b);
                    }
                    LineResult::More => return,
                    LineResult::Abandon => {
                        self.sides[d].phase = Phase::Off;
                        return;
                    }
                },
                Phase::Clear => {
                    let (used, frame) = self.sides[d].framer.next(data, |c| c == kex::MSG_KEXINIT);
                    data = data.get(used..).unwrap_or_default();
                    match frame {
                        Ok(Some(frame)) => {
                            let newkeys = frame.code == MSG_NEWKEYS;
                            self.on_frame(dir, frame, pkt);
                            if newkeys {
                                self.enter_encrypted(dir, data.len(), pkt);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => {
                            self.sides[d].phase = Phase::Off;
                            self.mark_unreliable(format!(
                                "{}: unparseable clear-text packet",
                                dir.name()
                            ));
                            return;
                        }
                    }
                }
                Phase::Walk => {
                    self.walk(dir, data, pkt);
                    return;
                }
                Phase::Segments | Phase::Off => return,
            }
        }
    }

    fn on_banner(&mut self, dir: Dir, b: Banner) {
        let d = dir.index();
        self.sides[d].phase = if b.speaks_ssh2() {
            Phase::Clear
        } else {
            Phase::Off
        };
        if !b.speaks_ssh2() {
            self.mark_unreliable(format!("SSH protocol version {}", b.proto_version));
        }
        self.banners[d] = Some(b);
        self.set_banner_facts();
    }

    fn set_banner_facts(&mut self) {
        let c = self.client_dir();
        let client = self.banners[c.index()].as_ref().map(|b| b.line.clone());
        let server = self.banners[c.reverse().index()]
            .as_ref()
            .map(|b| b.line.clone());
        let ssh = self.ssh();
        if ssh.client_banner != client || ssh.server_banner != server {
            ssh.client_banner = client;
            ssh.server_banner = server;
            self.facts.touch();
        }
    }

    fn on_frame(&mut self, dir: Dir, frame: records::Frame, pkt: &PacketView<'_>) {
        let code = frame.code;
        if code == kex::MSG_KEXINIT && self.kexinits[dir.index()].is_none() {
            if let Some(Ok(k)) = frame.payload.as_deref().map(kex::parse) {
                self.sides[dir.index()].kexinit_at = Some((pkt.index, pkt.ts));
                self.kexinits[dir.index()] = Some(k);
            }
        }
        if self.roles.client.is_none() {
            let client = if CLIENT_KEX_CODES.contains(&code) {
                Some(dir)
            } else if SERVER_KEX_CODES.contains(&code) {
                Some(dir.reverse())
            } else {
                None
            };
            if let Some(client) = client {
                let who = if client == dir { "client" } else { "server" };
                let why = format!(
                    "the {} sent key exchange message {code} (an SSH {who} message)",
                    inner::side(dir)
                );
                self.decide_roles(client, why, Some((pkt.index, pkt.ts)));
            }
        }
        if self.roles.client.is_some() {
            self.resolve();
        }
    }

    /// Settles who the SSH client is, from a key exchange message, backed
    /// by the pseudo-algorithms of both KEXINITs.
    fn decide_roles(&mut self, client: Dir, why: String, at: Option<(u64, Timestamp)>) {
        self.roles.client = Some(client);
        self.roles.why.push(why);
        if let Some((idx, ts)) = at {
            self.roles.pkts.push(idx);
            self.roles.first = Some(ts);
            self.roles.last = ts;
        }
        for dir in [Dir::ToServer, Dir::ToClient] {
            let Some(k) = &self.kexinits[dir.index()] else {
                continue;
            };
            let names = k.pseudo_names();
            if !names.is_empty() {
                self.roles.why.push(format!(
                    "the {}'s KEXINIT lists {}",
                    inner::side(dir),
                    names.join(", ")
                ));
                if let Some((idx, ts)) = self.sides[dir.index()].kexinit_at {
                    self.roles.pkts.push(idx);
                    self.roles.first = Some(self.roles.first.map_or(ts, |f| f.min(ts)));
                    self.roles.last = self.roles.last.max(ts);
                }
            }
        }
        self.roles.pkts.sort_unstable();
        self.roles.pkts.dedup();
        if client == Dir::ToClient {
            let summary = format!(
                "the TCP originator acts as the SSH server: {}",
                self.roles.why.join("; ")
            );
            let first = self.roles.first.unwrap_or(self.roles.last);
            let ev = Evidence::new(summary, &self.roles.pkts, first, self.roles.last);
            self.ssh().role_reversed = Some(ev);
            self.facts.touch();
        }
        self.set_banner_facts();
    }

    /// Falls back to the KEXINIT pseudo-algorithms, then to the originator.
    fn force_roles(&mut self) {
        if self.roles.client.is_some() {
            return;
        }
        for dir in [Dir::ToServer, Dir::ToClient] {
            let hint = self.kexinits[dir.index()]
                .as_ref()
                .and_then(KexInit::role_hint);
            if let Some(hint) = hint {
                let client = match hint {
                    kex::RoleHint::Client => dir,
                    kex::RoleHint::Server => dir.reverse(),
                };
                let why = format!("the {}'s KEXINIT pseudo-algorithms", inner::side(dir));
                self.decide_roles(client, why, None);
                return;
            }
        }
        self.roles.client = Some(Dir::ToServer);
    }

    /// With roles known and both KEXINITs parsed: HASSH and negotiation.
    fn resolve(&mut self) {
        if self.negotiated.is_some() {
            return;
        }
        let c = self.client_dir();
        let (Some(client), Some(server)) = (
            self.kexinits[c.index()].as_ref(),
            self.kexinits[c.reverse().index()].as_ref(),
        ) else {
            return;
        };
        let hassh = kex::md5_hex(&client.hassh_string());
        let hassh_server = kex::md5_hex(&server.hassh_server_string());
        self.negotiated = Some(kex::negotiate(client, server));
        let ssh = self.ssh();
        ssh.hassh = Some(hassh);
        ssh.hassh_server = Some(hassh_server);
        self.facts.touch();
    }

    /// NEWKEYS of `dir`: the rest of this direction is encrypted.
    fn enter_encrypted(&mut self, dir: Dir, rest: usize, pkt: &PacketView<'_>) {
        self.force_roles();
        self.resolve();
        let d = dir.index();
        self.sides[d].newkeys = Some((pkt.index, pkt.ts));
        if self.sides.iter().all(|s| s.newkeys.is_some()) {
            self.handshake_done = Some(pkt.ts);
        }
        self.ensure_inference();
        let suite = self.suite_of(dir);
        match suite {
            Some(s) if s.len_clear => {
                self.sides[d].phase = Phase::Walk;
                self.sides[d].walker = Some(Walker::new(s.tag, s.block));
            }
            _ => {
                self.sides[d].phase = Phase::Segments;
                if rest > 0 {
                    let size = u32::try_from(rest).unwrap_or(u32::MAX);
                    self.segment_unit(dir, size, pkt, false);
                }
            }
        }
    }

    /// The size model of `dir` (TCP direction), from the negotiation.
    fn suite_of(&self, dir: Dir) -> Option<Suite> {
        let n = self.negotiated.as_ref()?;
        let algs = if dir == self.client_dir() {
            &n.c2s
        } else {
            &n.s2c
        };
        Suite::from_names(algs.cipher.as_deref()?, algs.mac.as_deref())
    }

    fn ensure_inference(&mut self) {
        if self.infer.is_some() {
            return;
        }
        let Some(n) = self.negotiated.clone() else {
            self.mark_unreliable("no negotiated algorithms (KEXINIT missing)".into());
            return;
        };
        let comp = [n.c2s.compression.as_deref(), n.s2c.compression.as_deref()];
        let zlib = comp.contains(&Some("zlib"));
        if zlib {
            self.note_unreliable("zlib compression from the start".into());
        }
        let delayed = comp.contains(&Some("zlib@openssh.com"));
        match (self.suite_of(Dir::ToServer), self.suite_of(Dir::ToClient)) {
            (Some(a), Some(b)) => {
                let unreliable = !self.unreliable.is_empty() && !zlib;
                let mut inf = Inference::new(Model::new([a, b], self.client_dir()), delayed);
                if unreliable {
                    inf.set_unreliable();
                }
                if zlib {
                    inf.set_compressed();
                }
                self.infer = Some(inf);
            }
            _ => {
                let name = |a: &kex::DirAlgs| {
                    format!(
                        "{}+{}",
                        a.cipher.as_deref().unwrap_or("?"),
                        a.mac.as_deref().unwrap_or("-")
                    )
                };
                self.mark_unreliable(format!(
                    "no size model for {} / {}",
                    name(&n.c2s),
                    name(&n.s2c)
                ));
            }
        }
    }

    fn walk(&mut self, dir: Dir, data: &[u8], pkt: &PacketView<'_>) {
        let d = dir.index();
        self.sides[d].walk_fed += data.len() as u64;
        // The walker is taken out while its records are handed on.
        let Some(mut walker) = self.sides[d].walker.take() else {
            return;
        };
        let result = walker.push(data, |size| {
            self.emit(Unit {
                dir,
                size,
                idx: pkt.index,
                ts: pkt.ts,
                exact: true,
            })
        });
        match result {
            Ok(()) => self.sides[d].walker = Some(walker),
            Err(_) => {
                self.sides[d].phase = Phase::Segments;
                self.mark_unreliable(format!("{}: record walk lost synchronisation", dir.name()));
            }
        }
    }

    /// A new segment of an encrypted direction without walkable records.
    fn segment_unit(&mut self, dir: Dir, size: u32, pkt: &PacketView<'_>, hole: bool) {
        let d = dir.index();
        if hole && !self.sides[d].hole_noted {
            self.sides[d].hole_noted = true;
            self.mark_unreliable(format!("{}: capture gap (sequence hole)", dir.name()));
        }
        let oversize = size > MAX_WIRE_SEGMENT.max(self.sides[d].handshake_seg);
        if oversize && !self.sides[d].oversize_noted {
            self.sides[d].oversize_noted = true;
            self.mark_unreliable(format!(
                "{}: {size}-byte segment exceeds the MSS (offload coalescing on the capture host?)",
                dir.name()
            ));
        }
        // Messages in flight the other way end here.
        self.flush(dir.reverse());
        let side = &mut self.sides[d];
        let (ended, complete) = segments::add(&mut side.pending, size, pkt, side.max_seg);
        if let Some(p) = ended {
            self.emit(p.unit(dir));
        }
        if complete {
            self.flush(dir);
        }
    }

    fn flush(&mut self, dir: Dir) {
        if let Some(p) = self.sides[dir.index()].pending.take() {
            self.emit(p.unit(dir));
        }
    }

    fn emit(&mut self, u: Unit) {
        let Some(inf) = self.infer.as_mut() else {
            return;
        };
        let Some(ssh) = self.facts.ssh.as_mut() else {
            return;
        };
        let ch = inf.on_unit(u, ssh);
        if ch.facts {
            self.facts.touch();
        }
        if ch.compression_started {
            self.note_unreliable("zlib@openssh.com compression after login".into());
        }
    }

    fn emit_event(&mut self, out: &mut Emit) {
        if self.emitted {
            return;
        }
        self.emitted = true;
        let ts = self.handshake_done.unwrap_or(self.last_ts);
        out.push(eve::event(&self.view(), ts));
    }

    /// What the EVE record is built from, as far as it is known.
    fn view(&self) -> eve::View<'_> {
        let c = self.client_dir();
        eve::View {
            facts: self.facts.ssh.as_deref(),
            client: self.banners[c.index()].as_ref(),
            server: self.banners[c.reverse().index()].as_ref(),
            client_kex: self.kexinits[c.index()].as_ref(),
            server_kex: self.kexinits[c.reverse().index()].as_ref(),
            negotiated: self.negotiated.as_ref(),
            client_dir: c,
            role_known: self.roles.client.is_some(),
            infer: self.infer.as_ref(),
            unreliable: &self.unreliable,
            walked: [
                self.sides[0].walker.is_some() || self.walk_stopped[0],
                self.sides[1].walker.is_some() || self.walk_stopped[1],
            ],
            walk_stopped: self.walk_stopped,
            pre_banner_lines: [
                self.sides[0].lines.pre_banner_lines,
                self.sides[1].lines.pre_banner_lines,
            ],
        }
    }
}

impl Analyzer for SshAnalyzer {
    fn on_packet(&mut self, pkt: &PacketView<'_>, _out: &mut Emit) {
        self.see(pkt.ts);
        let bare_ack =
            pkt.payload_len == 0 && pkt.tcp.is_some_and(|t| t.flags == TcpFlags(TcpFlags::ACK));
        if bare_ack {
            if let Some(inf) = self.infer.as_mut() {
                inf.bare_ack(pkt.dir);
            }
            return;
        }
        let (new, hole) = self.track_seq(pkt);
        let d = pkt.dir.index();
        if new && self.sides[d].phase == Phase::Walk {
            let side = &mut self.sides[d];
            side.walk_seen += u64::from(pkt.payload_len);
            if side.walk_seen > side.walk_fed + WALK_LAG {
                // The stream stopped (reassembly budget): sizes from
                // segments from here on.
                side.walker = None;
                side.phase = Phase::Segments;
                self.walk_stopped[d] = true;
            }
        }
        if new && self.sides[d].phase == Phase::Segments {
            self.segment_unit(pkt.dir, pkt.payload_len, pkt, hole);
        }
    }

    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>, _out: &mut Emit) {
        self.see(pkt.ts);
        let d = dir.index();
        if pkt.dir == dir && self.sides[d].hi_seq.is_none() {
            self.track_seq(pkt);
        }
        match chunk {
            Chunk::Data(bytes) => self.feed(dir, bytes, pkt),
            Chunk::Gap(n) => match self.sides[d].phase {
                Phase::Ident | Phase::Clear => {
                    self.sides[d].phase = Phase::Off;
                    self.mark_unreliable(format!(
                        "{}: {n}-byte capture gap in the handshake",
                        dir.name()
                    ));
                }
                Phase::Walk => {
                    self.sides[d].walker = None;
                    self.sides[d].phase = Phase::Segments;
                    self.mark_unreliable(format!("{}: {n}-byte capture gap", dir.name()));
                }
                Phase::Segments | Phase::Off => {}
            },
        }
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        matches!(
            self.sides[dir.index()].phase,
            Phase::Ident | Phase::Clear | Phase::Walk
        )
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }

    fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        Some(("ssh", eve::body_of(&self.view())))
    }

    fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        self.see(last_ts);
        self.flush(Dir::ToServer);
        self.flush(Dir::ToClient);
        if self.negotiated.is_none() && self.kexinits.iter().all(Option::is_some) {
            self.force_roles();
            self.resolve();
        }
        if let (Some(inf), Some(ssh)) = (self.infer.as_mut(), self.facts.ssh.as_mut()) {
            let before = ssh.clone();
            inf.finish(self.last_ts, ssh);
            if *ssh != before {
                self.facts.touch();
            }
        }
        self.emit_event(out);
    }
}

#[cfg(test)]
mod tests;
