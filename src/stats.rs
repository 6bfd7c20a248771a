//! Counters of one engine. Plain integers owned by one thread: they are
//! published per batch (metrics) or at the end (summary), never bumped
//! atomically per packet.

use crate::decode::Skip;
use crate::flow::{EndReason, EvictionTier};
use crate::policy::{Detection, Severity};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the engine.
    pub packets: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Frames that became flow packets.
    pub decoded: u64,
    /// Frames skipped, by [`Skip::index`].
    pub skipped: [u64; Skip::ALL.len()],
    /// First IP fragments (counted toward their flow) and later fragments
    /// (skipped as [`Skip::Fragment`]).
    pub first_fragments: u64,
    pub flows_created: u64,
    /// Flows picked up mid-stream that continued a remembered ended flow
    /// (not counted as created).
    pub flows_resumed: u64,
    /// Flows read back from the sensor's state file at start (into the
    /// memory of ended flows; a continuation then counts as resumed).
    pub flows_restored: u64,
    /// Remembered ended flows dropped to make room, and forgotten after
    /// the keep time ([`crate::flow::ended`]).
    pub ended_dropped: u64,
    pub ended_expired: u64,
    /// Flow records written, by [`EndReason`] (interim records under
    /// `Active`).
    pub flows_ended: [u64; EndReason::ALL.len()],
    /// Flows evicted (also under `flows_ended`), by [`EvictionTier`].
    pub flows_evicted: [u64; EvictionTier::COUNT],
    /// Application-layer records written.
    pub app_events: u64,
    /// Alerts raised, by detection and severity (1..=3 at index 0..=2).
    pub alerts: [[u64; 3]; Detection::COUNT],
    /// Findings the suppression window swallowed.
    pub alerts_suppressed: u64,
    /// Sources the internal-discovery detector let go to make room
    /// ([`crate::hosts`]).
    pub discovery_sources_dropped: u64,
    /// Flows that ended carried through a proxy (CONNECT, SOCKS, PROXY
    /// header; [`crate::analyzer::tunnel`]).
    pub tunnels: u64,
    /// Flows whose proxy handshake was not followed because of a bound
    /// (nesting depth, bytes held before the proxy answered).
    pub tunnels_unfollowed: u64,
    /// (Client, domain) tallies the dns-tunnel detector let go to make
    /// room ([`crate::hosts::dns_tunnel`]).
    pub dns_tunnel_domains_dropped: u64,
    /// Incidents opened ([`crate::hosts::incident`]).
    pub incidents_opened: u64,
    /// Incidents closed early to stay within the bound of open incidents.
    pub incidents_evicted: u64,
}

impl Stats {
    pub fn count_alert(&mut self, detection: Detection, severity: Severity) {
        let sev = usize::from(severity.get().clamp(1, 3)) - 1;
        self.alerts[detection.index()][sev] += 1;
    }

    pub fn alerts_total(&self) -> u64 {
        self.alerts.iter().flatten().sum()
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }

    pub fn ended(&self, reason: EndReason) -> u64 {
        self.flows_ended[reason as usize]
    }

    /// Adds another engine's counters (several workers, one summary).
    pub fn merge(&mut self, other: &Stats) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.decoded += other.decoded;
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
        self.first_fragments += other.first_fragments;
        self.flows_created += other.flows_created;
        self.flows_resumed += other.flows_resumed;
        self.flows_restored += other.flows_restored;
        self.ended_dropped += other.ended_dropped;
        self.ended_expired += other.ended_expired;
        for (a, b) in self.flows_ended.iter_mut().zip(other.flows_ended) {
            *a += b;
        }
        for (a, b) in self.flows_evicted.iter_mut().zip(other.flows_evicted) {
            *a += b;
        }
        self.app_events += other.app_events;
        for (a, b) in self.alerts.iter_mut().zip(other.alerts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.alerts_suppressed += other.alerts_suppressed;
        self.discovery_sources_dropped += other.discovery_sources_dropped;
        self.tunnels += other.tunnels;
        self.tunnels_unfollowed += other.tunnels_unfollowed;
        self.dns_tunnel_domains_dropped += other.dns_tunnel_domains_dropped;
        self.incidents_opened += other.incidents_opened;
        self.incidents_evicted += other.incidents_evicted;
    }
}
