//! Counters of one engine. Plain integers owned by one thread: they are
//! published per batch (metrics) or at the end (summary), never bumped
//! atomically per packet.

use crate::decode::Skip;
use crate::flow::EndReason;

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
    /// Flow records written, by [`EndReason`] (interim records under
    /// `Active`).
    pub flows_ended: [u64; EndReason::ALL.len()],
    /// Application-layer records written.
    pub app_events: u64,
}

impl Stats {
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
        for (a, b) in self.flows_ended.iter_mut().zip(other.flows_ended) {
            *a += b;
        }
        self.app_events += other.app_events;
    }
}
