//! A sliding window of packet time cut into [`BUCKETS`] slices, each with
//! its own tally: what the per-host detectors keep per source or domain.
//! A slice is reused once the window has moved past it, so the memory is
//! fixed; a late event counts in the oldest slice still in the window.

use crate::time::{Timestamp, NANOS_PER_SEC};

/// Slices per window.
pub const BUCKETS: usize = 5;

/// The slice of `window_seconds / BUCKETS` seconds (at least one) that
/// holds `ts`; numbered from 1, so 0 never names a slice in use.
pub fn epoch(ts: Timestamp, window_seconds: u64) -> u64 {
    let secs = (window_seconds / BUCKETS as u64).max(1);
    ts.as_nanos() / NANOS_PER_SEC / secs + 1
}

/// The window's slices, each a tally `B`.
#[derive(Clone, Debug, Default)]
pub struct Window<B> {
    epochs: [u64; BUCKETS],
    tallies: [B; BUCKETS],
    newest: u64,
}

impl<B: Default> Window<B> {
    /// The tally of slice `epoch` (from [`epoch`]), emptied first if it
    /// held an older slice.
    pub fn slot(&mut self, epoch: u64) -> &mut B {
        let oldest = self.oldest();
        let epoch = epoch.max(oldest);
        self.newest = self.newest.max(epoch);
        let i = (epoch % BUCKETS as u64) as usize;
        if self.epochs[i] != epoch {
            self.epochs[i] = epoch;
            self.tallies[i] = B::default();
        }
        &mut self.tallies[i]
    }

    /// The tallies of the slices still in the window.
    pub fn live(&self) -> impl Iterator<Item = &B> {
        let oldest = self.oldest();
        self.epochs
            .iter()
            .zip(&self.tallies)
            .filter(move |(e, _)| **e >= oldest && **e != 0)
            .map(|(_, t)| t)
    }

    fn oldest(&self) -> u64 {
        self.newest.saturating_sub(BUCKETS as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(w: &Window<u32>) -> u32 {
        w.live().sum()
    }

    #[test]
    fn slices_leave_the_window_as_time_moves_on() {
        let mut w = Window::<u32>::default();
        for e in 1..=5 {
            *w.slot(e) += 1;
        }
        assert_eq!(sum(&w), 5);
        *w.slot(6) += 10; // reuses slice 1's place
        assert_eq!(sum(&w), 14);
        *w.slot(20) += 1; // a long gap: only the new slice is left
        assert_eq!(sum(&w), 1);
    }

    #[test]
    fn a_late_event_counts_in_the_oldest_slice_still_in_the_window() {
        let mut w = Window::<u32>::default();
        *w.slot(10) += 1;
        *w.slot(2) += 1;
        assert_eq!(sum(&w), 2);
        *w.slot(11) += 1;
        // Slice 6 (where the late event went) has left the window.
        assert_eq!(sum(&w), 2);
    }

    #[test]
    fn epochs_start_at_one() {
        assert_eq!(epoch(Timestamp::from_nanos(0), 300), 1);
        assert_eq!(epoch(Timestamp::from_nanos(60 * NANOS_PER_SEC), 300), 2);
        assert_eq!(epoch(Timestamp::from_nanos(5 * NANOS_PER_SEC), 0), 6);
    }
}
