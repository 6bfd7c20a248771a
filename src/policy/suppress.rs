//! The suppression window: after an alert for (source, destination,
//! detection), further alerts for the same triple within the detection's
//! `suppress_seconds` of packet time are counted but not written. An
//! autossh loop that reconnects every minute raises one alert an hour, not
//! sixty. Memory is bounded: the oldest entries are dropped first.

use super::detection::Detection;
use crate::time::{Nanos, Timestamp, NANOS_PER_SEC};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// What a suppression entry is keyed by. `level` separates the escalation
/// steps of `ssh-long-lived`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SuppressKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub detection: Detection,
    pub level: u8,
    /// A tunnel to a host name ([`super::Tunnelled`]): a hash of the
    /// name and port, so tunnels to different targets through one proxy
    /// are not taken for repeats; 0 otherwise.
    pub target: u32,
}

/// The [`SuppressKey::target`] of a tunnel to `host:port` (FNV-1a).
pub fn target_key(host: &str, port: u16) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in host.bytes().chain(port.to_be_bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h | 1
}

/// Remembers recent alerts; one per engine worker.
#[derive(Debug)]
pub struct SuppressionWindow {
    last: HashMap<SuppressKey, Timestamp>,
    /// Admissions in arrival order, for expiry and eviction.
    order: VecDeque<(SuppressKey, Timestamp)>,
    capacity: usize,
    /// The longest window seen; older entries can go.
    longest: Nanos,
}

impl Default for SuppressionWindow {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl SuppressionWindow {
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A window remembering at most `capacity` recent alerts (at least 1).
    pub fn new(capacity: usize) -> Self {
        SuppressionWindow {
            last: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            longest: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Whether an alert for `key` at `now` may be written; records it if
    /// so. `window_secs == 0` never suppresses.
    pub fn admit(&mut self, key: SuppressKey, now: Timestamp, window_secs: u64) -> bool {
        if window_secs == 0 {
            return true;
        }
        let window = window_secs.saturating_mul(NANOS_PER_SEC);
        self.longest = self.longest.max(window);
        self.expire(now);
        if let Some(at) = self.last.get(&key) {
            if now.since(*at) < window {
                return false;
            }
        }
        self.last.insert(key, now);
        self.order.push_back((key, now));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
        true
    }

    /// Drops entries older than the longest window.
    fn expire(&mut self, now: Timestamp) {
        while let Some((_, at)) = self.order.front() {
            if now.since(*at) < self.longest {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((key, at)) = self.order.pop_front() {
            // A later admission of the same key owns the map entry.
            if self.last.get(&key) == Some(&at) {
                self.last.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, dst: &str, d: Detection) -> SuppressKey {
        SuppressKey {
            target: 0,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            detection: d,
            level: 0,
        }
    }

    const D: Detection = Detection::SshToExternal;

    #[test]
    fn second_alert_within_window_is_suppressed() {
        let mut w = SuppressionWindow::new(16);
        let k = key("10.0.0.1", "198.51.100.1", D);
        assert!(w.admit(k, Timestamp::from_secs(100), 60));
        assert!(!w.admit(k, Timestamp::from_secs(159), 60));
        assert!(w.admit(k, Timestamp::from_secs(160), 60));
        assert!(!w.admit(k, Timestamp::from_secs(161), 60));
    }

    #[test]
    fn keys_differ_by_source_destination_detection_and_level() {
        let mut w = SuppressionWindow::new(16);
        let t = Timestamp::from_secs(5);
        let base = key("10.0.0.1", "198.51.100.1", D);
        assert!(w.admit(base, t, 60));
        assert!(w.admit(key("10.0.0.2", "198.51.100.1", D), t, 60));
        assert!(w.admit(key("10.0.0.1", "198.51.100.2", D), t, 60));
        assert!(w.admit(
            key("10.0.0.1", "198.51.100.1", Detection::CryptoMining),
            t,
            60
        ));
        assert!(w.admit(SuppressKey { level: 2, ..base }, t, 60));
        assert!(!w.admit(base, t, 60));
    }

    #[test]
    fn zero_window_never_suppresses_or_remembers() {
        let mut w = SuppressionWindow::new(16);
        let k = key("10.0.0.1", "198.51.100.1", D);
        assert!(w.admit(k, Timestamp::from_secs(1), 0));
        assert!(w.admit(k, Timestamp::from_secs(1), 0));
        assert!(w.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_old_entries_expire() {
        let mut w = SuppressionWindow::new(4);
        for i in 0..100u8 {
            let k = key(&format!("10.0.0.{i}"), "198.51.100.1", D);
            assert!(w.admit(k, Timestamp::from_secs(10), 3600));
            assert!(w.len() <= 4);
        }
        // The oldest were evicted, so they alert again.
        assert!(w.admit(
            key("10.0.0.0", "198.51.100.1", D),
            Timestamp::from_secs(11),
            3600
        ));
        // Everything expires after the longest window.
        w.admit(
            key("10.9.9.9", "198.51.100.1", D),
            Timestamp::from_secs(10_000),
            3600,
        );
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn reordered_packets_do_not_reopen_the_window() {
        let mut w = SuppressionWindow::new(16);
        let k = key("10.0.0.1", "198.51.100.1", D);
        assert!(w.admit(k, Timestamp::from_secs(100), 60));
        assert!(!w.admit(k, Timestamp::from_secs(90), 60));
    }
}
