//! The writer thread: every worker's events, in one EVE stream (a file,
//! opened for appending, or standard output). Records are serialized into
//! a buffer and written when it fills or when no event is waiting, so a
//! quiet sensor's output is never stale. SIGHUP reopens the file (for
//! logrotate).

use crate::eve::{Spool, Target};
use crate::event::Event;
use crate::hosts::HostStage;
use crate::metrics::{Metrics, SshClassifier};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Write once this much is buffered.
const FLUSH_BYTES: usize = 1 << 16;
/// While the output fails, records wait for it up to this many bytes
/// (about 35,000 flow records); records beyond are dropped and counted.
pub const PENDING_LIMIT: usize = 32 << 20;
/// The first retry of a failed output, and the longest wait between two.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long the writer waits for an event before it looks at the output.
const IDLE: Duration = Duration::from_millis(500);

/// Where EVE records go.
pub enum EveTarget {
    Discard,
    Stdout,
    File { path: PathBuf, file: File },
}

impl EveTarget {
    /// `None`: no output; `-`: standard output; else a file, appended to.
    pub fn open(path: Option<&Path>) -> io::Result<EveTarget> {
        match path {
            None => Ok(EveTarget::Discard),
            Some(p) if p == Path::new("-") => Ok(EveTarget::Stdout),
            Some(p) => Ok(EveTarget::File {
                path: p.to_path_buf(),
                file: open_append(p)?,
            }),
        }
    }

    /// Hands the output file to the user the sensor will run as, so it can
    /// reopen it after SIGHUP (its directory must let that user create
    /// files for logrotate's `create` mode).
    pub fn give_to(&self, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> io::Result<()> {
        if let EveTarget::File { file, .. } = self {
            nix::unistd::fchown(file, Some(uid), Some(gid)).map_err(io::Error::from)?;
        }
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let EveTarget::File { path, file } = self {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

impl Write for EveTarget {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            EveTarget::Discard => Ok(buf.len()),
            EveTarget::Stdout => io::stdout().lock().write(buf),
            EveTarget::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            EveTarget::Stdout => io::stdout().lock().flush(),
            _ => Ok(()),
        }
    }
}

impl Target for EveTarget {
    fn end(&mut self) -> Option<u64> {
        match self {
            EveTarget::File { file, .. } => file.end(),
            _ => None,
        }
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        match self {
            EveTarget::File { file, .. } => file.cut(len),
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

/// Records the writer could not write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// While the sensor ran and at shutdown.
    pub total: u64,
    /// Of those, at shutdown: the output still failed when the last
    /// records were to be written.
    pub at_shutdown: u64,
}

pub struct Writer {
    pub rx: Receiver<Event>,
    pub target: EveTarget,
    pub metrics: Metrics,
    pub ssh: SshClassifier,
    /// Set by SIGHUP: reopen the output file.
    pub reopen: Arc<AtomicBool>,
    /// `--learn FILE`.
    pub learn: Option<super::learn::LearnFile>,
    /// The fleet fields of every record (`host`, `in_iface`).
    pub stamp: crate::eve::Stamp,
    /// Per-host detections over every worker's flow records.
    pub hosts: HostStage,
}

impl Writer {
    /// Writes until every worker has hung up; returns what it could not
    /// write.
    pub fn run(self) -> Lost {
        let Writer {
            rx,
            target,
            metrics,
            ssh,
            reopen,
            mut learn,
            stamp,
            mut hosts,
        } = self;
        let mut handled = Vec::new();
        let discard = matches!(target, EveTarget::Discard);
        let mut out = Output::new(target, metrics.clone());
        out.spool.set_stamp(stamp);
        loop {
            match rx.recv_timeout(out.wait(Instant::now())) {
                Ok(event) => {
                    handle_hosts(&mut hosts, event, &metrics, &mut handled);
                    for event in handled.drain(..) {
                        if let Some(l) = &mut learn {
                            l.observe(&event);
                        }
                        write_event(&event, &metrics, &ssh, &mut out, discard);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if reopen.swap(false, Ordering::Relaxed) {
                out.write(Instant::now());
                out.reopen();
            }
            if out.due(rx.is_empty(), Instant::now()) {
                out.write(Instant::now());
            }
            if let Some(l) = &mut learn {
                l.tick(Instant::now());
            }
        }
        if let Some(l) = &mut learn {
            l.write();
        }
        out.finish()
    }
}

/// Runs the host stage on one event (alerts it raises, incidents, the
/// workload); what is to be written goes to `out`, its counters to the
/// metrics.
fn handle_hosts(hosts: &mut HostStage, event: Event, metrics: &Metrics, out: &mut Vec<Event>) {
    if !HostStage::reads(&event) {
        out.push(event);
        return;
    }
    let flow = matches!(event, Event::Flow(_));
    let before = hosts.stats.clone();
    hosts.handle(event, out);
    if hosts.stats != before {
        metrics.add_engine(&before, &hosts.stats);
    }
    if flow {
        metrics.set_discovery_sources(hosts.sources());
    }
    if hosts.take_changed() {
        metrics.set_incidents_open(&hosts.incidents().open_by_zone_and_severity());
    }
}

/// Counts, logs (alerts) and queues one record.
fn write_event<T: Target>(
    event: &Event,
    metrics: &Metrics,
    ssh: &SshClassifier,
    out: &mut Output<T>,
    discard: bool,
) {
    metrics.observe_event(event, Some(ssh));
    if let Event::Alert(alert) = event {
        tracing::info!(target: "egresswatch::alert", "{}", alert.line());
    }
    if !discard {
        out.push(event);
    }
}

/// The EVE output of the sensor: writes whole records, and while the
/// output fails keeps them (up to [`PENDING_LIMIT`]) and retries with
/// back-off, until it works again.
struct Output<T: Target> {
    spool: Spool<T>,
    metrics: Metrics,
    /// `Some` while the output fails.
    failing: Option<Failing>,
    lost: u64,
    /// [`PENDING_LIMIT`], smaller in tests.
    limit: usize,
}

struct Failing {
    retry_at: Instant,
    delay: Duration,
    /// Records lost before the failure began.
    lost_before: u64,
}

impl<T: Target> Output<T> {
    fn new(target: T, metrics: Metrics) -> Self {
        Output {
            spool: Spool::new(target, FLUSH_BYTES * 2),
            metrics,
            failing: None,
            lost: 0,
            limit: PENDING_LIMIT,
        }
    }

    fn push(&mut self, event: &Event) {
        if self.spool.pending_bytes() >= self.limit {
            self.lose(1);
            return;
        }
        self.spool.push(event);
    }

    fn lose(&mut self, records: u64) {
        self.lost += records;
        self.metrics.eve_records_lost(records);
    }

    /// How long to wait for the next event before looking at the output.
    fn wait(&self, now: Instant) -> Duration {
        self.failing.as_ref().map_or(IDLE, |f| {
            f.retry_at.saturating_duration_since(now).min(IDLE)
        })
    }

    /// Whether to write now: a full buffer or an idle moment, or while the
    /// output fails, the time of the next retry.
    fn due(&self, idle: bool, now: Instant) -> bool {
        match &self.failing {
            Some(f) => now >= f.retry_at,
            None => {
                self.spool.pending_bytes() >= FLUSH_BYTES
                    || (idle && self.spool.pending_bytes() > 0)
            }
        }
    }

    fn write(&mut self, now: Instant) {
        if self.spool.pending_bytes() == 0 {
            // Nothing waits (a reopen dropped the rest of a record).
            self.failing = None;
            return;
        }
        let result = self.spool.write_pending();
        self.metrics
            .set_eve_records_pending(self.spool.pending_records());
        match (result, self.failing.take()) {
            (Ok(()), None) => {}
            (Ok(()), Some(f)) => tracing::warn!(
                lost = self.lost - f.lost_before,
                "EVE output works again; the records that waited are written"
            ),
            (Err(e), None) => {
                self.metrics.eve_write_error();
                tracing::error!(
                    error = %e,
                    "cannot write EVE output; records wait for it (up to {} MiB), beyond that they are lost",
                    PENDING_LIMIT >> 20
                );
                self.failing = Some(Failing {
                    retry_at: now + RETRY_FIRST,
                    delay: RETRY_FIRST,
                    lost_before: self.lost,
                });
            }
            (Err(_), Some(f)) => {
                self.metrics.eve_write_error();
                let delay = (f.delay * 2).min(RETRY_MAX);
                self.failing = Some(Failing {
                    retry_at: now + delay,
                    delay,
                    ..f
                });
            }
        }
    }

    fn finish(mut self) -> Lost {
        self.write(Instant::now());
        let at_shutdown = self.spool.discard();
        self.lose(at_shutdown);
        self.metrics.set_eve_records_pending(0);
        Lost {
            total: self.lost,
            at_shutdown,
        }
    }
}

impl Output<EveTarget> {
    /// SIGHUP: a new file (logrotate); a failing output is tried again
    /// at once.
    fn reopen(&mut self) {
        match self.spool.get_mut().reopen() {
            Ok(()) => {
                let dropped = self.spool.reopened();
                self.lose(dropped);
                if let Some(f) = &mut self.failing {
                    f.retry_at = Instant::now();
                    f.delay = RETRY_FIRST;
                }
                tracing::info!("EVE output reopened");
            }
            Err(e) => tracing::error!(error = %e, "cannot reopen the EVE output"),
        }
    }
}

#[cfg(test)]
mod tests;
