//! A bounded memory of flows that ended while their connection may still be
//! open (idle timeout, eviction), so that a TCP flow picked up mid-stream on
//! the same 5-tuple continues the one that ended: same identity, analysis,
//! alert state and start time. What is worth remembering is the engine's
//! call; this module keeps whatever it is given, by key.
//!
//! Bounded by a capacity (entries in end order, a ring: the oldest is
//! dropped to make room) and by a keep time on packet time (older entries
//! expire). Lookup is by key through a hash index; a key remembered twice
//! keeps only the newer flow.

use super::{Flow, FlowKey};
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::collections::VecDeque;

/// Default entries per engine.
pub const ENDED_CAPACITY: usize = 4096;
/// Default keep time: a day of packet time.
pub const ENDED_KEEP_SECONDS: u64 = 24 * 3600;

struct Entry {
    ended: Timestamp,
    /// `None` once taken back or superseded by a newer flow on its key.
    flow: Option<Flow>,
}

/// What became of remembered flows, for counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EndedCounts {
    /// Flows taken back by a continuation.
    pub resumed: u64,
    /// Flows dropped to make room (the capacity was reached).
    pub dropped: u64,
    /// Flows forgotten after the keep time.
    pub expired: u64,
}

/// Recently ended flows, by key.
pub struct EndedFlows {
    capacity: usize,
    keep_nanos: u64,
    /// Oldest first; `ring[i]` has sequence number `base + i`.
    ring: VecDeque<Entry>,
    base: u64,
    index: hashbrown::HashMap<FlowKey, u64, ahash::RandomState>,
    counts: EndedCounts,
}

impl EndedFlows {
    /// A memory of at most `capacity` flows (0: remember nothing), each
    /// kept `keep_seconds` of packet time after it ended.
    pub fn new(capacity: usize, keep_seconds: u64, hasher: ahash::RandomState) -> Self {
        EndedFlows {
            capacity,
            keep_nanos: keep_seconds.saturating_mul(NANOS_PER_SEC),
            ring: VecDeque::new(),
            base: 0,
            index: hashbrown::HashMap::with_hasher(hasher),
            counts: EndedCounts::default(),
        }
    }

    /// Flows held now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn counts(&self) -> EndedCounts {
        self.counts
    }

    /// The flows held, oldest first, with the time each ended.
    pub fn iter(&self) -> impl Iterator<Item = (&Flow, Timestamp)> {
        self.ring
            .iter()
            .filter_map(|e| Some((e.flow.as_ref()?, e.ended)))
    }

    /// Remembers `flow`, which ended at `now`.
    pub fn remember(&mut self, flow: Flow, now: Timestamp) {
        if self.capacity == 0 {
            return;
        }
        self.expire(now);
        if self.ring.len() >= self.capacity && self.pop_front() {
            self.counts.dropped += 1;
        }
        let seq = self.base + self.ring.len() as u64;
        if let Some(old) = self.index.insert(flow.key, seq) {
            // The newer flow on this key replaces the older.
            if let Some(e) = self.entry_mut(old) {
                e.flow = None;
            }
        }
        self.ring.push_back(Entry {
            ended: now,
            flow: Some(flow),
        });
    }

    /// Takes back the flow remembered for `key`, unless it expired by `now`.
    pub fn take(&mut self, key: &FlowKey, now: Timestamp) -> Option<Flow> {
        self.take_if(key, now, |_| true)
    }

    /// [`EndedFlows::take`], if `accept` says the flow is the one wanted;
    /// otherwise it stays remembered.
    pub fn take_if(
        &mut self,
        key: &FlowKey,
        now: Timestamp,
        accept: impl FnOnce(&Flow) -> bool,
    ) -> Option<Flow> {
        self.expire(now);
        let seq = *self.index.get(key)?;
        let entry = self.entry_mut(seq)?;
        if !entry.flow.as_ref().is_some_and(accept) {
            return None;
        }
        let flow = entry.flow.take()?;
        self.index.remove(key);
        self.counts.resumed += 1;
        Some(flow)
    }

    /// Forgets the flows that ended more than the keep time before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(front) = self.ring.front() {
            if now.since(front.ended) < self.keep_nanos {
                break;
            }
            if self.pop_front() {
                self.counts.expired += 1;
            }
        }
    }

    /// Removes the oldest entry; true if it still held a flow.
    fn pop_front(&mut self) -> bool {
        let Some(entry) = self.ring.pop_front() else {
            return false;
        };
        let seq = self.base;
        self.base += 1;
        let Some(flow) = entry.flow else {
            return false;
        };
        if self.index.get(&flow.key) == Some(&seq) {
            self.index.remove(&flow.key);
        }
        true
    }

    fn entry_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.ring.get_mut(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testkit;

    fn flow(port: u16) -> Flow {
        testkit::flow_on_port(port)
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + secs)
    }

    fn memory(capacity: usize) -> EndedFlows {
        EndedFlows::new(capacity, 3600, ahash::RandomState::new())
    }

    #[test]
    fn a_remembered_flow_is_taken_back_once() {
        let mut m = memory(4);
        let f = flow(1000);
        let key = f.key;
        m.remember(f, at(0));
        assert_eq!(m.take(&key, at(10)).map(|f| f.key), Some(key));
        assert!(m.take(&key, at(11)).is_none());
        assert_eq!(m.counts().resumed, 1);
        assert!(m.is_empty());
    }

    #[test]
    fn capacity_bounds_the_memory_and_drops_the_oldest() {
        let mut m = memory(3);
        let keys: Vec<_> = (0..5).map(|i| flow(1000 + i).key).collect();
        for i in 0..5 {
            m.remember(flow(1000 + i), at(u64::from(i)));
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.counts().dropped, 2);
        assert!(m.take(&keys[0], at(6)).is_none());
        assert!(m.take(&keys[1], at(6)).is_none());
        assert!(m.take(&keys[4], at(6)).is_some());
    }

    #[test]
    fn entries_expire_on_packet_time() {
        let mut m = memory(8);
        let key = flow(1000).key;
        m.remember(flow(1000), at(0));
        m.remember(flow(1001), at(100));
        m.expire(at(3599));
        assert_eq!(m.len(), 2);
        assert!(m.take(&key, at(3600)).is_none(), "kept exactly 3600 s");
        assert_eq!(m.counts().expired, 1);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_key_remembered_twice_keeps_the_newer_flow_and_the_bound_holds() {
        let mut m = memory(2);
        let mut older = flow(1000);
        older.judged = 1;
        let key = older.key;
        m.remember(older, at(0));
        m.remember(flow(1000), at(1));
        assert_eq!(m.len(), 1);
        // The superseded entry still occupies a ring slot; dropping it to
        // make room drops no live flow.
        m.remember(flow(1001), at(2));
        assert_eq!(m.counts().dropped, 0);
        assert_eq!(m.take(&key, at(3)).map(|f| f.judged), Some(0));
    }

    #[test]
    fn a_refused_flow_stays_remembered() {
        let mut m = memory(4);
        let key = flow(1000).key;
        m.remember(flow(1000), at(0));
        assert!(m.take_if(&key, at(1), |_| false).is_none());
        assert_eq!(m.len(), 1);
        assert!(m.take(&key, at(2)).is_some());
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut m = memory(0);
        let key = flow(1000).key;
        m.remember(flow(1000), at(0));
        assert!(m.take(&key, at(1)).is_none());
    }
}
