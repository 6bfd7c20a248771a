//! Whole records on an output that can fail (a full disk, an I/O error).
//!
//! EVE lines are gathered in memory and written in large blocks, so one
//! failed or short `write` can stop in the middle of a record. A reader
//! must never see half of one record followed by the next one on the same
//! line, so after a write fails:
//!
//! - a regular file is cut back (`ftruncate`) to the end of the last whole
//!   record written: the file always ends at a record boundary, and what
//!   was not written stays pending, starting with a whole record;
//! - a stream (pipe, terminal, or a file that refused to be cut) cannot
//!   take bytes back: the rest of the record it holds the start of stays
//!   at the front of what is pending and is written before anything else.
//!
//! The caller bounds what it lets wait ([`Spool::pending_bytes`]) and
//! counts what it drops in records ([`Spool::discard`]).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Where EVE lines go. A regular file says where it ends and can be cut
/// back; a stream says nothing (`None`), and is never cut.
pub trait Target: Write {
    /// The length of a regular file (where the next byte goes), or `None`
    /// for a stream.
    fn end(&mut self) -> Option<u64> {
        None
    }

    /// Cuts a regular file to `len` bytes; the next write goes there.
    fn cut(&mut self, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Target for File {
    fn end(&mut self) -> Option<u64> {
        if !self.metadata().ok()?.is_file() {
            return None;
        }
        self.seek(SeekFrom::End(0)).ok()
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        // Opened for appending the next write goes to the end anyway; a
        // file written from the start must not leave a hole.
        self.seek(SeekFrom::Start(len)).map(drop)
    }
}

/// In memory, as a file: tests and callers that keep the output.
impl Target for Vec<u8> {
    fn end(&mut self) -> Option<u64> {
        Some(self.len() as u64)
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
}

impl Target for io::Stdout {}
impl Target for io::Sink {}

impl<T: Target + ?Sized> Target for Box<T> {
    fn end(&mut self) -> Option<u64> {
        (**self).end()
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        (**self).cut(len)
    }
}

impl<T: Target + ?Sized> Target for &mut T {
    fn end(&mut self) -> Option<u64> {
        (**self).end()
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        (**self).cut(len)
    }
}

/// Records waiting for their output, written whole or not at all.
pub struct Spool<T: Target> {
    out: T,
    /// Lines not written yet: whole records, except after a short write to
    /// a stream, when it begins with the rest of a record already started.
    pending: Vec<u8>,
    /// Records in `pending`, a started one included.
    records: u64,
    /// `Some(len)`: the output is a file ending at `len`, after a whole
    /// record, and is cut back to it after a short write.
    end: Option<u64>,
    /// `pending` begins in the middle of a record the stream holds the
    /// start of.
    started: bool,
    /// The fleet fields written on every record.
    stamp: super::Stamp,
}

impl<T: Target> Spool<T> {
    pub fn new(mut out: T, capacity: usize) -> Self {
        let end = out.end();
        Spool {
            out,
            pending: Vec::with_capacity(capacity),
            records: 0,
            end,
            started: false,
            stamp: super::Stamp::default(),
        }
    }

    /// Writes the fleet fields of `stamp` on every record from now on.
    pub fn set_stamp(&mut self, stamp: super::Stamp) {
        self.stamp = stamp;
    }

    /// Adds one record (an EVE line) to what is pending.
    pub fn push(&mut self, event: &crate::event::Event) {
        super::append_stamped(&mut self.pending, event, &self.stamp);
        self.records += 1;
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Records not written yet (one already started counts).
    pub fn pending_records(&self) -> u64 {
        self.records
    }

    /// Writes everything pending. On error the output keeps the whole
    /// records it took and ends at a record boundary (a file), or holds the
    /// start of a record whose rest is written first next time (a stream);
    /// everything else stays pending.
    pub fn write_pending(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.pending.len() {
                break Ok(());
            }
            match self.out.write(&self.pending[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.wrote(done);
        result.and_then(|()| self.out.flush())
    }

    /// Accounts for the first `done` pending bytes having been written.
    fn wrote(&mut self, done: usize) {
        if done == self.pending.len() {
            self.pending.clear();
            self.records = 0;
            self.started = false;
            self.end = self.end.map(|end| end + done as u64);
            return;
        }
        let whole = self.pending[..done]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let keep = match self.end {
            Some(end) if whole < done => match self.out.cut(end + whole as u64) {
                Ok(()) => whole,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot cut the EVE file back to its last whole record; the rest of that record is written first");
                    self.end = None;
                    done
                }
            },
            _ => done,
        };
        if keep == 0 {
            return;
        }
        self.records -= lines(&self.pending[..keep]);
        self.started = self.pending[keep - 1] != b'\n';
        self.pending.drain(..keep);
        self.end = self.end.map(|end| end + keep as u64);
    }

    /// Drops everything pending; returns how many records that was.
    pub fn discard(&mut self) -> u64 {
        let lost = self.records;
        self.pending.clear();
        self.records = 0;
        self.started = false;
        lost
    }

    /// The output, to reopen it; call [`Self::reopened`] after.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.out
    }

    /// After the output was replaced (a new file): the rest of a record
    /// the old output holds the start of is dropped, since the new one
    /// must begin with a whole record. Returns the records dropped (0 or 1).
    pub fn reopened(&mut self) -> u64 {
        self.end = self.out.end();
        if !self.started {
            return 0;
        }
        self.started = false;
        let rest = self
            .pending
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.pending.len(), |i| i + 1);
        self.pending.drain(..rest);
        self.records -= 1;
        1
    }

    /// The output, once everything is written.
    pub fn into_inner(self) -> T {
        self.out
    }
}

fn lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// A disk that fills up, on schedule, for the tests of the writers.
#[cfg(test)]
pub(crate) mod fault {
    use super::Target;
    use crate::analyzer::AppEvent;
    use crate::event::{AppRecord, Event, FlowMeta};
    use crate::flow::key::Endpoint;
    use crate::json::Rendered;
    use crate::time::Timestamp;
    use std::io::{self, Write};

    /// Holds at most `space` bytes (`write` takes what fits, then fails
    /// with ENOSPC, as a file system does); `file` says whether it can be
    /// cut back, as a regular file, or is a stream.
    pub struct Disk {
        pub data: Vec<u8>,
        pub space: usize,
        pub file: bool,
        pub cut_fails: bool,
        pub failed_writes: usize,
    }

    impl Disk {
        pub fn file(space: usize) -> Self {
            Disk {
                data: Vec::new(),
                space,
                file: true,
                cut_fails: false,
                failed_writes: 0,
            }
        }

        pub fn stream(space: usize) -> Self {
            Disk {
                file: false,
                ..Disk::file(space)
            }
        }

        /// Every line, which must each be one JSON object.
        pub fn records(&self) -> Vec<serde_json::Value> {
            let text = std::str::from_utf8(&self.data).expect("utf-8");
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
                .collect()
        }
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.space.saturating_sub(self.data.len());
            if room == 0 && !buf.is_empty() {
                self.failed_writes += 1;
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = room.min(buf.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A record of about 200 bytes, numbered `n` (its `flow_id`).
    pub fn event(n: u64) -> Event {
        let ep = |addr: [u8; 4], port| Endpoint {
            addr: addr.into(),
            port,
        };
        Event::App(Box::new(AppRecord {
            meta: FlowMeta {
                flow_id: n,
                community_id: "1:x".into(),
                src: ep([10, 0, 0, 1], 40000),
                dest: ep([198, 51, 100, 1], 53),
                proto: 17,
                app_proto: Some("dns"),
                input: 0,
            },
            event: AppEvent {
                ts: Timestamp::from_secs(1_700_000_000 + n),
                event_type: "dns",
                body: Rendered::build(|m| m.str("rrname", "a-long-enough-name.example.com")),
                extra: None,
                dns: None,
            },
        }))
    }

    /// The `flow_id`s of the records, in order.
    pub fn ids(records: &[serde_json::Value]) -> Vec<u64> {
        records
            .iter()
            .map(|r| r["flow_id"].as_u64().unwrap())
            .collect()
    }

    impl Target for Disk {
        fn end(&mut self) -> Option<u64> {
            self.file.then_some(self.data.len() as u64)
        }

        fn cut(&mut self, len: u64) -> io::Result<()> {
            if !self.file || self.cut_fails {
                return Err(io::ErrorKind::Unsupported.into());
            }
            self.data.truncate(len as usize);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
