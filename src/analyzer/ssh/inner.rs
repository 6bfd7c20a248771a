//! SSH inside SSH: channel opens, the inner handshake carried as channel
//! data, which side of it is the inner *server*, and the inner login.
//!
//! An inner connection starts with a channel open answered by
//! `CHANNEL_OPEN_CONFIRMATION` (17 bytes of payload). Then both sides send an
//! identification line and a KEXINIT (large), the inner client sends its key
//! exchange init and the inner server its reply with host key and signature
//! (large); the inner client then sends NEWKEYS (16 bytes, alone or with its
//! first encrypted message). So the first *small* channel-data message after
//! both sides sent large ones comes from the inner client, right after a
//! large one from the inner server. Its size must be one of the handshake
//! sizes (NEWKEYS, an ECDH init, or NEWKEYS + SERVICE_REQUEST for some inner
//! suite). If the inner server is the TCP originator, somebody outside is
//! logging in to the inside: a reverse session. If it is the responder, the
//! inside client is jumping through (ProxyJump): a nested forward session.

use super::model::{Model, Unit, CLEAR, INNER_N};
use crate::analyzer::{AuthOutcome, Dir, Evidence};
use crate::time::{Timestamp, NANOS_PER_SEC};

/// CHANNEL_OPEN payloads we consider: `auth-agent@openssh.com` (39) up to
/// `direct-tcpip`/`forwarded-tcpip` with long host names.
const OPEN_MIN: u32 = 39;
const OPEN_MAX: u32 = 600;
/// `forwarded-tcpip` opens: 1 + 4+15 + 12 + 4+addr+4 + 4+orig+4, at least
/// 48 bytes with empty addresses; agent and X11 opens are smaller.
/// With the connecting peer's address (at least `1.2.3.4`) the payload
/// is 55 or more; the whole payload range must be at least 44.
pub const FORWARDED_TCPIP: (u32, u32) = (44, 350);
/// CHANNEL_OPEN_CONFIRMATION payload.
const OPEN_CONFIRMATION: u32 = 17;
/// The confirmation follows its open within this time at a sensor next to
/// the confirming side (the target is connected locally first).
const CONFIRM_NANOS: u64 = 300_000_000;
/// Opens awaiting confirmation.
const MAX_PENDING: usize = 4;

/// A channel opened by one side and confirmed by the other.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub opener: Dir,
    pub open: (u64, Timestamp),
    pub confirm: (u64, Timestamp),
    /// Payload range of the open message.
    pub payload: (u32, u32),
    /// Silence before the open message.
    pub pause_before: u64,
}

/// Whether `u` can be a CHANNEL_OPEN.
pub fn open_sized(u: &Unit, m: &Model) -> Option<(u32, u32)> {
    let (lo, hi) = m.suite(u.dir).payload_range(u.size)?;
    (lo <= OPEN_MAX && hi >= OPEN_MIN).then_some((lo, hi))
}

/// A channel-open-sized message awaiting its confirmation.
#[derive(Copy, Clone, Debug)]
struct PendingOpen {
    dir: Dir,
    idx: u64,
    ts: Timestamp,
    payload: (u32, u32),
    pause_before: u64,
}

/// Pairs channel-open-sized messages with their confirmation (the oldest
/// pending open of the other side, within [`CONFIRM_NANOS`]).
#[derive(Debug, Default)]
pub struct Opens {
    pending: Vec<PendingOpen>,
    /// Confirmed opens by opener direction.
    pub count: [u32; 2],
}

impl Opens {
    /// `allow`: whether an open from this message's sender is possible now.
    /// `pause`: time since the previous message of either side.
    pub fn on_unit(&mut self, u: &Unit, m: &Model, allow: bool, pause: u64) -> Option<Opened> {
        self.pending.retain(|p| u.ts.since(p.ts) <= CONFIRM_NANOS);
        // The SSH client confirms a server-opened channel before it sends
        // anything else.
        let confirm_now = u.size == m.suite(u.dir).wire(OPEN_CONFIRMATION);
        if u.dir == m.client && !confirm_now {
            self.pending.retain(|p| p.dir == u.dir);
        }
        if u.size == m.suite(u.dir).wire(OPEN_CONFIRMATION) {
            if let Some(i) = self.pending.iter().position(|p| p.dir != u.dir) {
                let p = self.pending.remove(i);
                self.count[p.dir.index()] = self.count[p.dir.index()].saturating_add(1);
                return Some(Opened {
                    opener: p.dir,
                    open: (p.idx, p.ts),
                    confirm: (u.idx, u.ts),
                    payload: p.payload,
                    pause_before: p.pause_before,
                });
            }
        }
        if let (true, Some(range)) = (allow, open_sized(u, m)) {
            if self.pending.len() >= MAX_PENDING {
                self.pending.remove(0);
            }
            self.pending.push(PendingOpen {
                dir: u.dir,
                idx: u.idx,
                ts: u.ts,
                payload: range,
                pause_before: pause,
            });
        }
        None
    }
}

/// Inner messages at least this large: KEXINIT, key exchange reply.
const LARGE: u32 = 161;
/// Inner messages at most this large: NEWKEYS, ECDH inits, service request.
const SMALL: u32 = 160;
/// No inner handshake message is larger (a KEXINIT, or a post-quantum key
/// exchange reply with a host certificate, even coalesced with the
/// identification line, stays under a few KiB). Channel data this large
/// is bulk transfer (scp and forwards send full 32 KiB channel packets): the
/// candidate ends there.
const HANDSHAKE_MAX: u32 = 16 * 1024;
/// Smallest identification line (`SSH-2.0-x\r\n`).
const BANNER_MIN: u32 = 11;
const BANNER_MAX: u32 = 300;
/// Large messages of a handshake: two KEXINITs and the server's reply.
const HANDSHAKE_LARGE: u32 = 3;
/// Steps of a handshake (key exchange reply, then NEWKEYS) follow within
/// this time.
const HANDSHAKE_STEP_NANOS: u64 = 2 * NANOS_PER_SEC;
/// Give up on a candidate after this many messages or this long.
const MAX_UNITS: u32 = 48;
const MAX_NANOS: u64 = 30 * NANOS_PER_SEC;

/// Clear-text sizes of the inner client's small handshake messages:
/// NEWKEYS and the ECDH inits of curve25519, nistp256, nistp384, nistp521.
const HANDSHAKE_PAYLOADS: [u32; 5] = [1, 37, 70, 102, 138];

/// Who the inner server is, and on what it rests.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub inner_server: Dir,
    pub evidence: Evidence,
    /// Inner suites consistent with the NEWKEYS + SERVICE_REQUEST size
    /// (bit i = inner suite i), zero if not yet known.
    pub suites: u16,
    /// The inner client's SERVICE_REQUEST was part of the deciding message.
    pub service_request_seen: bool,
}

/// One candidate inner connection, from a channel-open-sized message on.
#[derive(Debug)]
pub struct Candidate {
    start: (u64, Timestamp),
    start_dir: Dir,
    /// The other side has sent something since the start.
    other_seen: bool,
    first_data: [Option<(u32, u32)>; 2],
    large: [u32; 2],
    /// Sender of the last large message, and whether the other side has
    /// sent channel data since.
    last_large: Option<Dir>,
    last_large_ts: Timestamp,
    answered: bool,
    units: u32,
    /// Evidence: packet indices and sizes, fixed capacity (candidates
    /// come and go with ordinary traffic; no allocation per message).
    pkts: [u64; Evidence::MAX_PACKETS],
    sizes: [(Dir, u32); Evidence::MAX_PACKETS],
    noted: usize,
}

/// What one message did to a candidate.
#[derive(Debug, PartialEq)]
pub enum Step {
    Continue,
    Expired,
    Decided(Verdict),
}

impl Candidate {
    pub fn new(u: &Unit, m: &Model) -> Candidate {
        // The start may be an identification line; if the other side
        // answers with a channel-open confirmation it was an open instead.
        let mut c = Candidate::empty((u.idx, u.ts), u.dir, false);
        c.first_data[u.dir.index()] = m.suite(u.dir).channel_data_range(u.size);
        c.noting(u.idx, u.dir, u.size)
    }

    /// A candidate that has seen nothing yet.
    fn empty(start: (u64, Timestamp), start_dir: Dir, other_seen: bool) -> Candidate {
        Candidate {
            start,
            start_dir,
            other_seen,
            first_data: [None; 2],
            large: [0; 2],
            last_large: None,
            last_large_ts: Timestamp::default(),
            answered: false,
            units: 0,
            pkts: [0; Evidence::MAX_PACKETS],
            sizes: [(Dir::ToServer, 0); Evidence::MAX_PACKETS],
            noted: 0,
        }
    }

    fn noting(mut self, idx: u64, dir: Dir, size: u32) -> Candidate {
        self.push(idx, dir, size);
        self
    }

    /// A candidate for a confirmed channel: it starts empty after the
    /// confirmation.
    pub fn from_open(o: &Opened) -> Candidate {
        Candidate::empty(o.open, o.opener, true)
            .noting(o.open.0, o.opener, 0)
            .noting(o.confirm.0, o.opener.reverse(), 0)
    }

    /// Both sides have sent large messages: a handshake may be under way,
    /// do not restart on the next open-sized message.
    pub fn mid_handshake(&self) -> bool {
        self.large.iter().all(|&n| n > 0)
    }

    /// A handshake under way right now: its last large message is recent.
    pub fn in_progress(&self, now: Timestamp) -> bool {
        self.mid_handshake() && now.since(self.last_large_ts) <= HANDSHAKE_STEP_NANOS
    }

    /// `compressed`: sizes of small messages are not exact; skip the
    /// handshake-size check.
    pub fn on_unit(&mut self, u: &Unit, m: &Model, compressed: bool) -> Step {
        self.units = self.units.saturating_add(1);
        if self.units > MAX_UNITS || u.ts.since(self.start.1) > MAX_NANOS {
            return Step::Expired;
        }
        if u.dir != self.start_dir && !self.other_seen {
            self.other_seen = true;
            if u.size == m.suite(u.dir).wire(OPEN_CONFIRMATION) {
                self.first_data[self.start_dir.index()] = None;
                self.note(u);
                return Step::Continue;
            }
        }
        let Some((lo, hi)) = m.suite(u.dir).channel_data_range(u.size) else {
            return Step::Continue; // window adjust, EOF, ...
        };
        if lo > HANDSHAKE_MAX {
            return Step::Expired;
        }
        let d = u.dir.index();
        if self.first_data[d].is_none() {
            self.first_data[d] = Some((lo, hi));
        }
        if lo >= LARGE {
            self.large[d] = self.large[d].saturating_add(1);
            self.last_large = Some(u.dir);
            self.last_large_ts = u.ts;
            self.answered = false;
            self.note(u);
            return Step::Continue;
        }
        let reply_to_large = self.last_large.is_some_and(|l| l != u.dir) && !self.answered;
        if self.last_large.is_some_and(|l| l != u.dir) {
            self.answered = true;
        }
        if self.noted < 6 {
            self.note(u);
        }
        // The inner server sent its KEXINIT and its key exchange reply.
        let server_large = self.large[u.dir.reverse().index()] >= 2;
        if !(hi <= SMALL
            && reply_to_large
            && u.ts.since(self.last_large_ts) <= HANDSHAKE_STEP_NANOS
            && server_large
            && self.mid_handshake()
            && self.large.iter().sum::<u32>() >= HANDSHAKE_LARGE
            && self.banners_plausible())
        {
            return Step::Continue;
        }
        let suites = match handshake_small(lo, hi, m) {
            Some(s) => s,
            None if compressed => (0, false),
            None => return Step::Continue,
        };
        self.note(u);
        Step::Decided(self.verdict(u, suites, compressed))
    }

    fn note(&mut self, u: &Unit) {
        self.push(u.idx, u.dir, u.size);
    }

    fn push(&mut self, idx: u64, dir: Dir, size: u32) {
        if let (Some(p), Some(s)) = (
            self.pkts.get_mut(self.noted),
            self.sizes.get_mut(self.noted),
        ) {
            *p = idx;
            *s = (dir, size);
            self.noted += 1;
        }
    }

    /// At least one side began with an identification-line-sized message
    /// (TLS and most other protocols begin with a large client message and
    /// a large server reply).
    fn banners_plausible(&self) -> bool {
        self.first_data
            .iter()
            .flatten()
            .any(|&(lo, hi)| hi >= BANNER_MIN && lo <= BANNER_MAX && lo < LARGE)
    }

    fn verdict(&self, u: &Unit, suites: (u16, bool), compressed: bool) -> Verdict {
        let inner_server = u.dir.reverse();
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .take(self.noted)
            .filter(|(_, s)| *s > 0)
            .map(|(d, s)| format!("{}{}", if *d == Dir::ToServer { '>' } else { '<' }, s))
            .collect();
        let pkts = self.pkts.get(..self.noted).unwrap_or_default();
        let check = if compressed {
            "compressed session: size not checked"
        } else if suites.1 {
            "NEWKEYS + SERVICE_REQUEST size"
        } else {
            "NEWKEYS / key exchange init size"
        };
        let summary = format!(
            "inner SSH handshake in channel data from pkt {}: large messages both ways \
             (KEXINITs, key exchange), then the {} answered the {}'s last large message (the key \
             exchange reply) with a {}-byte message ({check}): inner client on the {} side, inner \
             server on the {} side; sizes (> toserver, < toclient) [{}]",
            self.start.0,
            side(u.dir),
            side(inner_server),
            u.size,
            side(u.dir),
            side(inner_server),
            sizes.join(" ")
        );
        Verdict {
            inner_server,
            evidence: Evidence::new(summary, pkts, self.start.1, u.ts),
            suites: suites.0,
            service_request_seen: suites.1,
        }
    }
}

/// `originator` / `responder` for a TCP direction's sender.
pub fn side(dir: Dir) -> &'static str {
    match dir {
        Dir::ToServer => "originator",
        Dir::ToClient => "responder",
    }
}

/// Whether inner bytes `lo..=hi` can be one of the inner client's small
/// handshake messages; returns the inner suites consistent with a NEWKEYS +
/// SERVICE_REQUEST reading and whether that reading applies.
fn handshake_small(lo: u32, hi: u32, m: &Model) -> Option<(u16, bool)> {
    let within = |n: u32| lo <= n && n <= hi;
    let mut suites = 0u16;
    for (i, s) in m.inner.iter().enumerate() {
        let sr = s.wire(SERVICE_REQUEST);
        if within(sr + CLEAR.wire(1)) || within(sr) {
            suites |= 1 << i;
        }
    }
    if suites != 0 {
        return Some((suites, true));
    }
    HANDSHAKE_PAYLOADS
        .iter()
        .any(|&p| within(CLEAR.wire(p)))
        .then_some((0, false))
}

/// SERVICE_REQUEST / SERVICE_ACCEPT "ssh-userauth" payload.
const SERVICE_REQUEST: u32 = 17;

/// The login of an inner session, from the sizes of its messages.
#[derive(Debug)]
pub struct InnerAuth {
    client: Dir,
    suites: u16,
    service_request_seen: bool,
    requests: u32,
    awaiting: bool,
    fail_size: Option<u32>,
    failures: u32,
    pkts: Vec<u64>,
    start: Timestamp,
    pub outcome: AuthOutcome,
}

impl InnerAuth {
    pub fn new(v: &Verdict, start: Timestamp) -> InnerAuth {
        InnerAuth {
            client: v.inner_server.reverse(),
            suites: v.suites,
            service_request_seen: v.service_request_seen,
            requests: 0,
            awaiting: false,
            fail_size: None,
            failures: 0,
            pkts: Vec::new(),
            start,
            outcome: AuthOutcome::Unknown,
        }
    }

    fn suite_mask(&self) -> u16 {
        if self.suites == 0 {
            (1 << INNER_N) - 1
        } else {
            self.suites
        }
    }

    /// Feeds one outer message; returns the evidence when the inner login
    /// succeeded.
    /// `compressed`: success cannot be told by size; failures still show
    /// as repeated equal replies.
    pub fn on_unit(&mut self, u: &Unit, m: &Model, compressed: bool) -> Option<Evidence> {
        if self.outcome != AuthOutcome::Unknown {
            return None;
        }
        let (lo, hi) = m.suite(u.dir).channel_data_range(u.size)?;
        let within = |n: u32| lo <= n && n <= hi;
        if u.dir == self.client {
            if !self.service_request_seen {
                let mut suites = 0;
                for (i, s) in m.inner.iter().enumerate() {
                    if within(s.wire(SERVICE_REQUEST)) {
                        suites |= 1 << i;
                    }
                }
                if suites != 0 {
                    self.suites = suites;
                }
                // SERVICE_REQUEST (or whatever came in its place) is done.
                self.service_request_seen = true;
                return None;
            }
            self.requests = self.requests.saturating_add(1);
            self.awaiting = true;
            self.push(u.idx);
            return None;
        }
        if self.requests == 0 {
            return None;
        }
        let mask = self.suite_mask();
        let success = !compressed
            && m.inner
                .iter()
                .enumerate()
                .any(|(i, s)| mask & (1 << i) != 0 && within(s.wire(1)));
        if success {
            self.push(u.idx);
            self.outcome = AuthOutcome::Success;
            let summary = format!(
                "inner USERAUTH_SUCCESS: {}-byte message from the inner server after {} inner \
                 authentication request(s), {} failure(s)",
                u.size, self.requests, self.failures
            );
            return Some(Evidence::new(summary, &self.pkts, self.start, u.ts));
        }
        if self.awaiting {
            match self.fail_size {
                None => {
                    self.fail_size = Some(u.size);
                    self.failures = 1;
                    self.push(u.idx);
                }
                Some(f) if f == u.size => {
                    self.failures = self.failures.saturating_add(1);
                    self.push(u.idx);
                }
                Some(_) => {}
            }
        }
        self.awaiting = false;
        None
    }

    /// The outcome at flow end: repeated method-list replies and no success
    /// make a failed login.
    pub fn finish(&mut self, last: Timestamp) -> Option<Evidence> {
        if self.outcome == AuthOutcome::Unknown && self.failures >= 2 {
            self.outcome = AuthOutcome::Failure;
            let summary = format!(
                "inner login failed: {} replies of the method-list size {} to {} inner requests, \
                 no success",
                self.failures,
                self.fail_size.unwrap_or(0),
                self.requests
            );
            return Some(Evidence::new(summary, &self.pkts, self.start, last));
        }
        None
    }

    fn push(&mut self, idx: u64) {
        if self.pkts.len() < Evidence::MAX_PACKETS {
            self.pkts.push(idx);
        }
    }
}
