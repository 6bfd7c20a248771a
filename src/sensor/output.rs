//! The writer thread: every worker's events, in one EVE stream (a file,
//! opened for appending, or standard output). Records are serialized into
//! a buffer and written when it fills or when no event is waiting, so a
//! quiet sensor's output is never stale. SIGHUP reopens the file (for
//! logrotate).

use crate::event::Event;
use crate::metrics::{Metrics, SshClassifier};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Write once this much is buffered.
const FLUSH_BYTES: usize = 1 << 16;

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

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            EveTarget::Discard => Ok(()),
            EveTarget::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            EveTarget::File { file, .. } => file.write_all(buf),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let EveTarget::File { path, file } = self {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

pub struct Writer {
    pub rx: Receiver<Event>,
    pub target: EveTarget,
    pub metrics: Metrics,
    pub ssh: SshClassifier,
    /// Set by SIGHUP: reopen the output file.
    pub reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Writes until every worker has hung up.
    pub fn run(mut self) {
        let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_BYTES * 2);
        let mut failed = false;
        loop {
            match self.rx.recv_timeout(Duration::from_millis(500)) {
                Ok(event) => self.record(&event, &mut buf),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.reopen.swap(false, Ordering::Relaxed) {
                self.write_out(&mut buf, &mut failed);
                match self.target.reopen() {
                    Ok(()) => {
                        failed = false;
                        tracing::info!("EVE output reopened");
                    }
                    Err(e) => tracing::error!(error = %e, "cannot reopen the EVE output"),
                }
            }
            if buf.len() >= FLUSH_BYTES || (self.rx.is_empty() && !buf.is_empty()) {
                self.write_out(&mut buf, &mut failed);
            }
        }
        self.write_out(&mut buf, &mut failed);
    }

    fn record(&self, event: &Event, buf: &mut Vec<u8>) {
        self.metrics.observe_event(event, Some(&self.ssh));
        if let Event::Alert(alert) = event {
            tracing::info!(target: "egresswatch::alert", "{}", alert.line());
        }
        if matches!(self.target, EveTarget::Discard) {
            return;
        }
        crate::eve::append(buf, event);
    }

    fn write_out(&mut self, buf: &mut Vec<u8>, failed: &mut bool) {
        if buf.is_empty() {
            return;
        }
        if let Err(e) = self.target.write_all(buf) {
            self.metrics.eve_write_error();
            if !*failed {
                tracing::error!(error = %e, "cannot write EVE output; records are lost until it works again");
            }
            *failed = true;
        } else {
            *failed = false;
        }
        buf.clear();
    }
}
