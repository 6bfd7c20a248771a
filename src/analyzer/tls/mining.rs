//! A mining protocol inside TLS, told by its shape: the client's login (or
//! subscribe) is its first message and the server answers it with a job;
//! from then on the server pushes jobs of much the same size on its own,
//! tens of seconds apart, which the client never answers; the client now
//! and then submits a share (or a keepalive) and gets a small reply; every
//! record is small, both ways, for a long life. Stratum v1 and the
//! CryptoNote/XMRig dialect all look like this; the benign long-lived TLS
//! flows do not: keep-alive and MQTT channels have no job-sized pushes,
//! push services and long polls are answered (acknowledged or re-polled)
//! by the client, downloads and git carry large records.
//!
//! Fixed-size state, O(1) per record.

use super::shape::AppRecord;
use crate::analyzer::{Dir, Evidence, MiningFacts};
use crate::time::{Timestamp, NANOS_PER_SEC};

/// A login/subscribe request and a job: JSON lines of these plaintext sizes.
const LOGIN: (u32, u32) = (40, 2048);
/// The reply to the login carries the first job (or the subscription).
const LOGIN_REPLY_MIN: u32 = 60;
/// A pushed job (XMRig: blob, target, seed hash ≈ 300-500 bytes; Stratum
/// v1 mining.notify ≈ 250-700).
const JOB: (u32, u32) = (150, 2048);
/// Requests after the login (submit, keepalived) and their small replies.
const REQUEST: (u32, u32) = (40, 1024);
const REPLY: (u32, u32) = (16, 200);
/// A reply comes within this time of its request.
const REPLY_NANOS: u64 = 3 * NANOS_PER_SEC;
/// A push is unsolicited: the client was silent this long before it.
const PUSH_QUIET_NANOS: u64 = 2 * NANOS_PER_SEC;
/// Pushes closer than this to the previous one are one burst.
const PUSH_SPACING_NANOS: u64 = 5 * NANOS_PER_SEC;
/// A client record this soon after a push answers it (an acknowledgement
/// or the next long poll): mining clients never answer a job.
const ANSWER_NANOS: u64 = NANOS_PER_SEC;
/// Any larger record, or more bytes in a direction, and it is not mining.
const MAX_RECORD: u32 = 4096;
const MAX_BYTES: u64 = 1024 * 1024;
/// What the verdict needs.
const MIN_PUSHES: u32 = 3;
const MIN_PAIRS: u32 = 2;
const MIN_LIFE_NANOS: u64 = 60 * NANOS_PER_SEC;

#[derive(Debug, Default)]
pub struct MiningShape {
    /// Never mining: a record too large, too many bytes, or a first
    /// client message no miner sends.
    ruled_out: bool,
    reported: bool,
    login: Option<(u64, Timestamp, u32)>,
    login_reply: Option<(u64, u32)>,
    last_client: Option<Timestamp>,
    /// A request (after the login) awaiting its reply.
    request: Option<(u64, Timestamp, u32)>,
    pairs: u32,
    pair_pkts: [u64; 4],
    last_push: Option<Timestamp>,
    pushes: u32,
    push_pkts: [u64; 4],
    push_sizes: (u32, u32),
    push_gaps: (u64, u64),
    answered_pushes: u32,
    bytes: [u64; 2],
    records: [u32; 2],
    last_ts: Timestamp,
}

impl MiningShape {
    /// Nothing more to learn: ruled out or reported.
    pub fn settled(&self) -> bool {
        self.ruled_out || self.reported
    }

    pub fn on_record(&mut self, r: &AppRecord) -> Option<MiningFacts> {
        if self.settled() {
            return None;
        }
        let d = r.dir.index();
        self.bytes[d] = self.bytes[d].saturating_add(u64::from(r.len));
        self.records[d] = self.records[d].saturating_add(1);
        self.last_ts = r.ts;
        let unanswered = self.login_reply.is_none()
            && self
                .login
                .is_some_and(|(_, ts, _)| r.ts.since(ts) > REPLY_NANOS);
        if r.len > MAX_RECORD || self.bytes[d] > MAX_BYTES || unanswered {
            self.ruled_out = true;
            return None;
        }
        match r.dir {
            Dir::ToServer => self.client(r),
            Dir::ToClient => self.server(r),
        }
        self.verdict(r.ts)
    }

    fn client(&mut self, r: &AppRecord) {
        if self.login.is_none() {
            if !(LOGIN.0..=LOGIN.1).contains(&r.len) {
                self.ruled_out = true;
            }
            self.login = Some((r.idx, r.ts, r.len));
            self.last_client = Some(r.ts);
            return;
        }
        if self
            .last_push
            .is_some_and(|p| r.ts.since(p) <= ANSWER_NANOS)
        {
            self.answered_pushes = self.answered_pushes.saturating_add(1);
        }
        self.request = (REQUEST.0..=REQUEST.1)
            .contains(&r.len)
            .then_some((r.idx, r.ts, r.len));
        self.last_client = Some(r.ts);
    }

    fn server(&mut self, r: &AppRecord) {
        let Some((_, login_ts, _)) = self.login else {
            return; // the server spoke first: not a miner's session (yet)
        };
        if self.login_reply.is_none() {
            if r.ts.since(login_ts) <= REPLY_NANOS && r.len >= LOGIN_REPLY_MIN {
                self.login_reply = Some((r.idx, r.len));
            }
            return;
        }
        if let Some((idx, ts, len)) = self.request {
            if r.ts.since(ts) <= REPLY_NANOS {
                self.request = None;
                if (REPLY.0..=REPLY.1).contains(&r.len) && r.len < len {
                    note(&mut self.pair_pkts, self.pairs * 2, [idx, r.idx]);
                    self.pairs = self.pairs.saturating_add(1);
                }
                return;
            }
        }
        let quiet = self
            .last_client
            .is_none_or(|c| r.ts.since(c) >= PUSH_QUIET_NANOS);
        if !(quiet && (JOB.0..=JOB.1).contains(&r.len)) {
            return;
        }
        let spaced = self
            .last_push
            .is_none_or(|p| r.ts.since(p) >= PUSH_SPACING_NANOS);
        if let (true, Some(p)) = (spaced, self.last_push) {
            let gap = r.ts.since(p);
            self.push_gaps = if self.pushes <= 1 {
                (gap, gap)
            } else {
                (self.push_gaps.0.min(gap), self.push_gaps.1.max(gap))
            };
        }
        if spaced {
            note(&mut self.push_pkts, self.pushes * 2, [r.idx, r.idx]);
            self.push_sizes = if self.pushes == 0 {
                (r.len, r.len)
            } else {
                (self.push_sizes.0.min(r.len), self.push_sizes.1.max(r.len))
            };
            self.pushes = self.pushes.saturating_add(1);
        }
        self.last_push = Some(r.ts);
    }

    fn verdict(&mut self, now: Timestamp) -> Option<MiningFacts> {
        let (login_idx, login_ts, login_len) = self.login?;
        let (reply_idx, reply_len) = self.login_reply?;
        let (lo, hi) = self.push_sizes;
        let ok = !self.ruled_out
            && self.pushes >= MIN_PUSHES
            && self.pairs >= MIN_PAIRS
            && self.answered_pushes.saturating_mul(2) <= self.pushes
            && hi <= lo.saturating_mul(2)
            && now.since(login_ts) >= MIN_LIFE_NANOS;
        if !ok {
            return None;
        }
        self.reported = true;
        let summary = format!(
            "inferred from TLS record sizes and timing: a {login_len}-byte first client message \
             answered by a {reply_len}-byte reply (login/subscribe and its job), {} unsolicited \
             server pushes of {lo}..{hi} bytes {}..{} s apart that the client never answered \
             ({} answered), {} small client requests answered by smaller replies (share \
             submissions), largest record {MAX_RECORD} bytes or less, {} and {} bytes in {:.0} s",
            self.pushes,
            self.push_gaps.0 / NANOS_PER_SEC,
            self.push_gaps.1 / NANOS_PER_SEC,
            self.answered_pushes,
            self.pairs,
            self.bytes[0],
            self.bytes[1],
            now.since(login_ts) as f64 / NANOS_PER_SEC as f64,
        );
        let mut pkts = vec![login_idx, reply_idx];
        let n_push = (self.pushes.min(2) * 2) as usize;
        pkts.extend(self.push_pkts.iter().take(n_push).step_by(2));
        let n_pair = (self.pairs.min(2) * 2) as usize;
        pkts.extend(self.pair_pkts.iter().take(n_pair));
        let evidence = Evidence::new(summary, &pkts, login_ts, now).inferred("tls-record-shape");
        Some(MiningFacts {
            protocol: "tls-shape",
            wallet: None,
            agent: None,
            evidence,
        })
    }

    /// The flow ended.
    pub fn finish(&mut self, last: Timestamp) -> Option<MiningFacts> {
        if self.settled() {
            return None;
        }
        self.verdict(last.max(self.last_ts))
    }
}

/// Keeps the first two pairs of packet indices (slot `at`, `at + 1`).
fn note(slots: &mut [u64; 4], at: u32, pair: [u64; 2]) {
    let at = at as usize;
    if let Some(s) = slots.get_mut(at..at + 2) {
        s.copy_from_slice(&pair);
    }
}
