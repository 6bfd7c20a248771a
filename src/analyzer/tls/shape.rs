//! After the handshake: the shape of the session's application data,
//! record by record — each record's direction, plaintext length estimate
//! ([`records::Overhead`]) and packet time — handed to the two shape
//! analyses, mining ([`mining::MiningShape`]) and SSH inside TLS
//! ([`inner_ssh::SshShape`]). State is fixed-size per flow (the mining
//! analysis, boxed from the first application record until it settles, and
//! the SSH size model's inference, once an SSH handshake showed, are its
//! heap state); nothing is allocated per record. The walk stops for good when
//! both analyses have ruled the flow out or decided, when a direction has
//! a gap, or after [`MAX_RECORDS`] records.

use super::inner_ssh::SshShape;
use super::mining::MiningShape;
use super::records::{Overhead, RecordWalker, CONTENT_APPLICATION_DATA};
use crate::analyzer::{Dir, MiningFacts, SshFacts};
use crate::time::Timestamp;

/// Application records looked at, at most (a long quiet mining session has
/// a few per minute; an interactive session a few per keystroke).
pub const MAX_RECORDS: u32 = 200_000;

/// One application-data record as the shape analyses see it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AppRecord {
    pub dir: Dir,
    /// Plaintext length estimate (record length less the AEAD overhead).
    pub len: u32,
    /// The packet that completed the record's header (1-based input
    /// position) and its time.
    pub idx: u64,
    pub ts: Timestamp,
}

/// What the shape analyses concluded so far.
#[derive(Debug, Default)]
pub struct Outcome {
    pub mining: Option<MiningFacts>,
    /// SSH inferred inside TLS: its facts changed.
    pub ssh_changed: bool,
}

/// The mining analysis: not started before the first application record,
/// dropped once it settled (ruled out or reported: nothing more comes of
/// it, before or at the end of the flow).
#[derive(Debug, Default)]
enum Mining {
    #[default]
    NotYet,
    Reading(Box<MiningShape>),
    Settled,
}

impl Mining {
    fn on_record(&mut self, r: &AppRecord) -> Option<MiningFacts> {
        if let Mining::NotYet = self {
            *self = Mining::Reading(Box::default());
        }
        let Mining::Reading(m) = self else {
            return None;
        };
        let facts = m.on_record(r);
        if m.settled() {
            *self = Mining::Settled;
        }
        facts
    }

    fn finish(&mut self, last: Timestamp) -> Option<MiningFacts> {
        match self {
            Mining::Reading(m) => m.finish(last),
            // No record: what a fresh analysis would conclude, nothing.
            Mining::NotYet | Mining::Settled => None,
        }
    }

    fn settled(&self) -> bool {
        matches!(self, Mining::Settled)
    }

    /// [`Mining::finish`] has nothing to conclude: no record was seen, or
    /// the analysis settled.
    fn concluded(&self) -> bool {
        !matches!(self, Mining::Reading(_))
    }
}

pub struct Shape {
    walkers: [Option<RecordWalker>; 2],
    /// TLS 1.3: the client's first encrypted record is its Finished, and
    /// the server's records before the client's first application record
    /// are its encrypted handshake.
    tls13: bool,
    client_finished: bool,
    app_started: bool,
    overhead: Option<Overhead>,
    records: u32,
    mining: Mining,
    ssh: SshShape,
    stopped: bool,
}

impl Shape {
    pub fn new() -> Shape {
        Shape {
            walkers: [Some(RecordWalker::default()); 2],
            tls13: false,
            client_finished: false,
            app_started: false,
            overhead: None,
            records: 0,
            mining: Mining::NotYet,
            ssh: SshShape::default(),
            stopped: false,
        }
    }

    /// The ServerHello was read: the record protection is known.
    pub fn set_server(&mut self, server: &super::ServerHello) {
        self.tls13 = server.version() >= 0x0304;
        self.overhead = Some(Overhead::of(server));
    }

    pub fn active(&self) -> bool {
        !self.stopped
    }

    /// Stopped, with nothing left for [`Shape::finish`] to conclude: the
    /// shape can be dropped.
    pub fn spent(&self) -> bool {
        self.stopped && self.mining.concluded() && !self.ssh.running()
    }

    /// The mining analysis has ruled the flow out or reported it.
    #[cfg(test)]
    pub fn mining_settled(&self) -> bool {
        self.mining.settled()
    }

    /// Bytes of `dir` are missing: the record boundaries are lost.
    pub fn gap(&mut self) {
        self.stopped = true;
    }

    /// Stream bytes of `dir`.
    pub fn push(&mut self, dir: Dir, data: &[u8], idx: u64, ts: Timestamp) -> Outcome {
        let mut out = Outcome::default();
        let Some(mut walker) = self.walkers.get_mut(dir.index()).and_then(Option::take) else {
            return out;
        };
        let result = walker.push(data, |kind, len| {
            if kind == CONTENT_APPLICATION_DATA {
                self.record(dir, len, idx, ts, &mut out);
            }
        });
        match result {
            Ok(()) => {
                if let Some(slot) = self.walkers.get_mut(dir.index()) {
                    *slot = Some(walker);
                }
            }
            Err(_) => self.stopped = true,
        }
        if self.records >= MAX_RECORDS || (self.mining.settled() && self.ssh.settled()) {
            self.stopped = true;
        }
        out
    }

    fn record(&mut self, dir: Dir, len: u16, idx: u64, ts: Timestamp, out: &mut Outcome) {
        // Application data before the ServerHello was read: not a session
        // this analysis understands.
        let Some(overhead) = self.overhead else {
            self.stopped = true;
            return;
        };
        if self.stopped {
            return;
        }
        if self.tls13 && dir == Dir::ToServer && !self.client_finished {
            self.client_finished = true;
            return;
        }
        if dir == Dir::ToServer {
            self.app_started = true;
        } else if self.tls13 && !self.app_started {
            return;
        }
        self.records = self.records.saturating_add(1);
        let r = AppRecord {
            dir,
            len: overhead.plaintext(len),
            idx,
            ts,
        };
        if let Some(m) = self.mining.on_record(&r) {
            out.mining = Some(m);
        }
        out.ssh_changed |= self.ssh.on_record(&r, overhead.is_exact());
    }

    /// A bare ACK of `dir` (the SSH inference counts acknowledged echoes).
    pub fn bare_ack(&mut self, dir: Dir) {
        if !self.stopped {
            self.ssh.bare_ack(dir);
        }
    }

    /// The flow ended: settle what needs the whole session.
    pub fn finish(&mut self, last: Timestamp) -> Outcome {
        Outcome {
            mining: self.mining.finish(last),
            ssh_changed: self.ssh.finish(last),
        }
    }

    /// The SSH facts, once SSH was inferred inside this session.
    pub fn ssh_facts(&self) -> Option<&SshFacts> {
        self.ssh.facts()
    }
}

impl Default for Shape {
    fn default() -> Self {
        Shape::new()
    }
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
