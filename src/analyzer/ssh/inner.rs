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
/// `forwarded-tcpip` opens are at least this large (1 + 4+15 + 12 + 4+4 +
/// 4+4 with empty addresses); agent and X11 opens are smaller.
pub const FORWARDED_TCPIP_MIN: u32 = 48;
/// CHANNEL_OPEN_CONFIRMATION payload.
const OPEN_CONFIRMATION: u32 = 17;

/// A channel opened by one side and confirmed by the other.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub opener: Dir,
    pub open: (u64, Timestamp),
    pub confirm: (u64, Timestamp),
    /// Largest payload the open message can have.
    pub payload_hi: u32,
}

/// Pairs channel-open-sized messages with their confirmation.
#[derive(Debug, Default)]
pub struct Opens {
    pending: Option<(Dir, u64, Timestamp, u32)>,
    /// Confirmed opens by opener direction.
    pub count: [u32; 2],
}

impl Opens {
    pub fn on_unit(&mut self, u: &Unit, m: &Model) -> Option<Opened> {
        if let Some((dir, idx, ts, hi)) = self.pending {
            if dir != u.dir {
                self.pending = None;
                if u.size == m.suite(u.dir).wire(OPEN_CONFIRMATION) {
                    self.count[dir.index()] += 1;
                    return Some(Opened {
                        opener: dir,
                        open: (idx, ts),
                        confirm: (u.idx, u.ts),
                        payload_hi: hi,
                    });
                }
            }
        }
        if let Some((lo, hi)) = m.suite(u.dir).payload_range(u.size) {
            if lo <= OPEN_MAX && hi >= OPEN_MIN {
                self.pending = Some((u.dir, u.idx, u.ts, hi));
            }
        }
        None
    }
}

/// Inner messages at least this large: KEXINIT, key exchange reply.
const LARGE: u32 = 161;
/// Inner messages at most this large: NEWKEYS, ECDH inits, service request.
const SMALL: u32 = 160;
/// Smallest identification line (`SSH-2.0-x\r\n`).
const BANNER_MIN: u32 = 11;
const BANNER_MAX: u32 = 300;
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

/// One candidate inner connection, from its channel open on.
#[derive(Debug)]
pub struct Candidate {
    opened: Opened,
    first_data: [Option<(u32, u32)>; 2],
    large: [u32; 2],
    /// Direction and size class of the last channel-data message.
    last: Option<(Dir, bool)>,
    units: u32,
    pkts: Vec<u64>,
    sizes: Vec<(Dir, u32)>,
}

/// What one message did to a candidate.
#[derive(Debug, PartialEq)]
pub enum Step {
    Continue,
    Expired,
    Decided(Verdict),
}

impl Candidate {
    pub fn new(opened: Opened) -> Candidate {
        Candidate {
            opened,
            first_data: [None; 2],
            large: [0; 2],
            last: None,
            units: 0,
            pkts: vec![opened.open.0, opened.confirm.0],
            sizes: Vec::new(),
        }
    }

    pub fn on_unit(&mut self, u: &Unit, m: &Model) -> Step {
        self.units += 1;
        if self.units > MAX_UNITS || u.ts.since(self.opened.confirm.1) > MAX_NANOS {
            return Step::Expired;
        }
        let Some((lo, hi)) = m.suite(u.dir).channel_data_range(u.size) else {
            return Step::Continue; // window adjust, EOF, ...
        };
        let d = u.dir.index();
        if self.first_data[d].is_none() {
            self.first_data[d] = Some((lo, hi));
        }
        let large = lo >= LARGE;
        let small = hi <= SMALL;
        let after_large_from_other = matches!(self.last, Some((dir, true)) if dir != u.dir);
        self.last = Some((u.dir, large));
        if large || self.pkts.len() < 6 {
            self.note(u);
        }
        if large {
            self.large[d] += 1;
            return Step::Continue;
        }
        if !(small && after_large_from_other && self.large.iter().all(|&n| n > 0)) {
            return Step::Continue;
        }
        if !self.banners_plausible() {
            return Step::Continue;
        }
        let Some(suites) = handshake_small(lo, hi, m) else {
            return Step::Continue;
        };
        self.note(u);
        Step::Decided(self.verdict(u, suites))
    }

    fn note(&mut self, u: &Unit) {
        if self.pkts.len() < Evidence::MAX_PACKETS {
            self.pkts.push(u.idx);
            self.sizes.push((u.dir, u.size));
        }
    }

    /// At least one side opened with an identification-line-sized message
    /// (TLS and most other protocols open with a large client message and
    /// a large server reply).
    fn banners_plausible(&self) -> bool {
        self.first_data
            .iter()
            .flatten()
            .any(|&(lo, hi)| hi >= BANNER_MIN && lo <= BANNER_MAX && lo < LARGE)
    }

    fn verdict(&self, u: &Unit, suites: (u16, bool)) -> Verdict {
        let inner_server = u.dir.reverse();
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .map(|(d, s)| format!("{}{}", if *d == Dir::ToServer { '>' } else { '<' }, s))
            .collect();
        let summary = format!(
            "channel opened by {} (pkt {}), inner handshake: large messages both ways, then the {} \
             answered the {}'s key exchange reply with a {}-byte NEWKEYS-sized message; inner SSH \
             server on the {} side; sizes [{}]",
            side(self.opened.opener),
            self.opened.open.0,
            side(u.dir),
            side(inner_server),
            u.size,
            side(inner_server),
            sizes.join(" ")
        );
        Verdict {
            inner_server,
            evidence: Evidence::new(summary, &self.pkts, self.opened.open.1, u.ts),
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
    pub fn on_unit(&mut self, u: &Unit, m: &Model) -> Option<Evidence> {
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
            self.requests += 1;
            self.awaiting = true;
            self.push(u.idx);
            return None;
        }
        if self.requests == 0 {
            return None;
        }
        let mask = self.suite_mask();
        let success = m
            .inner
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
                    self.failures += 1;
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
