//! SSH carried inside TLS (stunnel, `openssl s_client` as ProxyCommand,
//! sslh): the inner SSH connection writes one packet at a time, and each
//! write becomes (at least) one TLS record, so the record plaintext
//! lengths are the SSH packet sizes. The inner handshake shows as
//! KEXINIT-sized records from both sides, then the inner client's NEWKEYS
//! (16 bytes in clear) and its first encrypted message, the
//! `SERVICE_REQUEST "ssh-userauth"`, answered by a `SERVICE_ACCEPT` of the
//! same size; that size names the inner cipher suite (one of the size
//! model's [`INNER_SUITES`]). From there the records are fed, as
//! (direction, size, time) units, to the very inference the SSH analyzer
//! runs on SSH packets ([`Inference`]): login outcome, keystroke/echo and
//! which side types, remote forwards, sessions coming back through them.
//!
//! Its facts are published (the flow then counts as SSH, marked
//! `inferred`) only once the inference confirmed an SSH session: a login
//! or an interactive, forwarding or reverse verdict. Before the handshake
//! showed, the state is a few counters; afterwards one boxed inference.

use super::shape::AppRecord;
use crate::analyzer::ssh::infer::Inference;
use crate::analyzer::ssh::model::{Model, Unit};
use crate::analyzer::ssh::sizes::{Suite, INNER_SUITES};
use crate::analyzer::{AuthOutcome, Dir, Evidence, SshFacts};
use crate::time::Timestamp;

/// A record at least this large is (or holds) a KEXINIT.
const KEXINIT_MIN: u32 = 300;
/// `SSH_MSG_NEWKEYS` in clear: 4 + 1 + 1 + 10 bytes of padding.
const NEWKEYS: u32 = 16;
/// `SERVICE_REQUEST`/`SERVICE_ACCEPT "ssh-userauth"`: 1 + 4 + 12.
const SERVICE_PAYLOAD: u32 = 17;
/// Records per direction the handshake must show within.
const LOOK_RECORDS: u32 = 12;

#[derive(Debug, Default)]
enum State {
    #[default]
    Looking,
    Running(Box<Running>),
    Gone,
}

#[derive(Debug, Default)]
pub struct SshShape {
    state: State,
    look: Looking,
}

#[derive(Debug, Default)]
struct Looking {
    records: [u32; 2],
    /// First KEXINIT-sized record per direction.
    kexinit: [Option<u64>; 2],
    /// A lone NEWKEYS-sized record per direction.
    newkeys: [bool; 2],
    /// The inner client's SERVICE_REQUEST: direction, suite, packet, time.
    request: Option<(Dir, usize, u64, Timestamp)>,
}

struct Running {
    inference: Inference,
    facts: SshFacts,
    published: bool,
    /// What the handshake showed (the `inferred` evidence).
    handshake: Evidence,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("published", &self.published)
            .finish()
    }
}

/// Which inner suite's SERVICE_REQUEST has `size` bytes.
fn suite_of_service(size: u32) -> Option<(usize, Suite)> {
    INNER_SUITES.iter().enumerate().find_map(|(i, (c, m))| {
        let s = Suite::from_names(c, Some(m))?;
        (s.wire(SERVICE_PAYLOAD) == size).then_some((i, s))
    })
}

impl SshShape {
    /// Nothing more to learn before the flow ends: ruled out (running
    /// inferences keep going).
    pub fn settled(&self) -> bool {
        matches!(self.state, State::Gone)
    }

    /// An inference runs: the end of the flow may still change its facts
    /// ([`SshShape::finish`] does nothing otherwise).
    pub fn running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    pub fn facts(&self) -> Option<&SshFacts> {
        match &self.state {
            State::Running(r) if r.published => Some(&r.facts),
            _ => None,
        }
    }

    /// `exact`: record lengths give exact plaintext sizes (AEAD).
    /// Returns whether the published facts changed.
    pub fn on_record(&mut self, r: &AppRecord, exact: bool) -> bool {
        match &mut self.state {
            State::Gone => false,
            State::Running(run) => run.on_record(r),
            State::Looking if !exact => {
                self.state = State::Gone;
                false
            }
            State::Looking => {
                if let Some(run) = self.look.on_record(r) {
                    self.state = State::Running(run);
                } else if self.look.records.iter().any(|&n| n > LOOK_RECORDS) {
                    self.state = State::Gone;
                }
                false
            }
        }
    }

    pub fn bare_ack(&mut self, dir: Dir) {
        if let State::Running(run) = &mut self.state {
            run.inference.bare_ack(dir);
        }
    }

    pub fn finish(&mut self, last: Timestamp) -> bool {
        match &mut self.state {
            State::Running(run) => {
                let before = run.facts.clone();
                run.inference.finish(last, &mut run.facts);
                run.publish_if_confirmed() || (run.published && run.facts != before)
            }
            _ => false,
        }
    }
}

impl Looking {
    fn on_record(&mut self, r: &AppRecord) -> Option<Box<Running>> {
        let d = r.dir.index();
        self.records[d] = self.records[d].saturating_add(1);
        if r.len >= KEXINIT_MIN {
            self.kexinit[d].get_or_insert(r.idx);
            return None;
        }
        let (Some(a), Some(b)) = (self.kexinit[0], self.kexinit[1]) else {
            return None;
        };
        if let Some((client, suite, idx, ts)) = self.request {
            self.request = None;
            let accept = suite_of_service(r.len).filter(|&(i, _)| i == suite);
            if let (true, Some((_, s))) = (r.dir != client, accept) {
                return Some(Running::start(client, suite, s, [a, b, idx, r.idx], ts, r));
            }
        }
        if r.len == NEWKEYS {
            self.newkeys[d] = true;
            return None;
        }
        let (size, coalesced) = match r.len.checked_sub(NEWKEYS) {
            Some(rest) if suite_of_service(rest).is_some() => (rest, true),
            _ => (r.len, false),
        };
        if coalesced || self.newkeys[d] {
            if let Some((i, _)) = suite_of_service(size) {
                self.request = Some((r.dir, i, r.idx, r.ts));
            }
        }
        None
    }
}

impl Running {
    fn start(
        client: Dir,
        suite: usize,
        s: Suite,
        pkts: [u64; 4],
        request_ts: Timestamp,
        accept: &AppRecord,
    ) -> Box<Running> {
        let (cipher, mac) = INNER_SUITES.get(suite).copied().unwrap_or(("?", "?"));
        let side = |d: Dir| match d {
            Dir::ToServer => "TLS client",
            Dir::ToClient => "TLS server",
        };
        let summary = format!(
            "SSH inside TLS, inferred from TLS record sizes: KEXINIT-sized records from both \
             sides, then from the {} NEWKEYS and a {}-byte SERVICE_REQUEST answered by a \
             same-size SERVICE_ACCEPT (inner suite {cipher}{})",
            side(client),
            s.wire(SERVICE_PAYLOAD),
            if mac == "none" {
                String::new()
            } else {
                format!("+{mac}")
            },
        );
        let handshake =
            Evidence::new(summary, &pkts, request_ts, accept.ts).inferred("tls-record-shape");
        let mut facts = SshFacts::default();
        if client == Dir::ToClient {
            let mut ev = handshake.clone();
            ev.summary = format!("the TLS server side is the SSH client: {}", ev.summary);
            facts.role_reversed = Some(ev);
        }
        let mut inference = Inference::new(Model::new([s, s], client), false);
        let request = Unit {
            dir: client,
            size: s.wire(SERVICE_PAYLOAD),
            idx: pkts[2],
            ts: request_ts,
            exact: false,
        };
        inference.on_unit(request, &mut facts);
        let mut run = Box::new(Running {
            inference,
            facts,
            published: false,
            handshake,
        });
        run.on_record(accept);
        run
    }

    fn on_record(&mut self, r: &AppRecord) -> bool {
        let u = Unit {
            dir: r.dir,
            size: r.len,
            idx: r.idx,
            ts: r.ts,
            exact: false,
        };
        let ch = self.inference.on_unit(u, &mut self.facts);
        self.publish_if_confirmed() || (self.published && ch.facts)
    }

    /// Publishes the facts once an SSH session is confirmed; true if this
    /// call did.
    fn publish_if_confirmed(&mut self) -> bool {
        let f = &self.facts;
        let confirmed = f.auth == AuthOutcome::Success
            || f.forward_interactive.is_some()
            || f.reverse_interactive.is_some()
            || f.remote_forward.is_some()
            || f.reverse_session.is_some()
            || f.nested_forward.is_some();
        if self.published || !confirmed {
            return false;
        }
        self.published = true;
        self.facts.inferred = Some(self.handshake.clone());
        true
    }
}
