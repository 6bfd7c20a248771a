//! `capture --learn FILE`: the writer thread feeds every final flow record
//! to a [`Learner`] (per flow end, never per packet) and rewrites FILE
//! atomically (a temporary file in the same directory, then a rename)
//! every [`REWRITE_EVERY`] and at shutdown. Memory is bounded by the
//! learner's caps (`--max-destinations`).

use crate::event::Event;
use crate::judge::SharedRules;
use crate::learn::{render, LearnConfig, Learner};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the learned file is rewritten while the sensor runs.
pub const REWRITE_EVERY: Duration = Duration::from_secs(300);

/// Writes `bytes` to `path` so a reader sees the old file or the new one,
/// never a part: a temporary file beside it, synced, renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Readable as a rules file is (the umask still applies).
    let mut tmp = tempfile::Builder::new()
        .prefix(".egresswatch-learn")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The learner of a running sensor and where it writes.
pub struct LearnFile {
    learner: Learner,
    path: PathBuf,
    rules: SharedRules,
    context: render::Context,
    next: Instant,
    every: Duration,
}

impl LearnFile {
    pub fn new(path: PathBuf, cfg: LearnConfig, rules: SharedRules, interfaces: &[String]) -> Self {
        LearnFile {
            learner: Learner::new(cfg),
            path,
            rules,
            context: render::Context {
                sources: vec![format!("live capture on {}", interfaces.join(", "))],
            },
            next: Instant::now() + REWRITE_EVERY,
            every: REWRITE_EVERY,
        }
    }

    /// Rewrites more often (tests).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self.next = Instant::now() + every;
        self
    }

    pub fn observe(&mut self, event: &Event) {
        if let Event::Flow(record) = event {
            self.learner.observe_record(record, &self.rules.load());
        }
    }

    /// Rewrites the file when it is due.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next {
            self.write();
            self.next = now + self.every;
        }
    }

    /// Rewrites the file now.
    pub fn write_now(&self) -> io::Result<()> {
        let text = render::render(&self.learner, &self.rules.load(), &self.context);
        write_atomically(&self.path, text.as_bytes())
    }

    /// Rewrites the file now; a failure is logged, the learning goes on.
    pub fn write(&mut self) {
        match self.write_now() {
            Ok(()) => tracing::info!(
                path = %self.path.display(),
                destinations = self.learner.destinations(),
                flows = self.learner.counts.flows,
                dropped = self.learner.counts.dropped,
                "learned allow entries written"
            ),
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot write the learned allow entries"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned.toml");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/learned.toml");
        assert!(write_atomically(&path, b"x").is_err());
    }
}
