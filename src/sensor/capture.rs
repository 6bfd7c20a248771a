//! A capture thread: reads one interface, sends each frame to its flow's
//! worker in batches, and counts what it read and what it had to drop.
//!
//! When a worker's queue is full the batch for it is dropped and counted
//! (reason `queue`): nothing is buffered without bound. While no packet
//! arrives the thread sends the workers the capture clock so idle flows
//! still expire.

use super::shard::Sharder;
use super::worker::Msg;
use crate::decode::decode;
use crate::metrics::CaptureCounters;
use crate::source::batch::{batch_bytes, Batch, BATCH_FRAMES};
use crate::source::live::{capture_clock, CaptureDrops, LiveCapture};
use crate::source::{Frame, SourceError};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames taken from the ring per dispatch call.
const DISPATCH_BUDGET: usize = 512;
/// How long to wait for the socket when the ring is empty.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How often idle workers get the clock.
const TICK_EVERY: Duration = Duration::from_millis(250);
/// How often libpcap's drop counters are read.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The batching side of a capture thread, apart from the pcap handle so
/// the dispatch callback can borrow it.
struct Shipper {
    sharder: Sharder,
    workers: Vec<Sender<Msg>>,
    queue_depth: Vec<IntGauge>,
    current: Vec<Option<Batch>>,
    free: Vec<Batch>,
    returns: Receiver<Batch>,
    counters: CaptureCounters,
    /// Counted since the last publish.
    packets: u64,
    bytes: u64,
    queue_drops: u64,
}

pub struct CaptureThread {
    pub capture: LiveCapture,
    pub stop: Arc<AtomicBool>,
    /// How long the kernel may hold a block: the drain time at stop.
    pub read_timeout: Duration,
    shipper: Shipper,
}

impl CaptureThread {
    /// Sets up capture thread `id` with its pool of batches: for each
    /// worker, a full queue's worth plus the one being filled.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        capture: LiveCapture,
        sharder: Sharder,
        workers: Vec<Sender<Msg>>,
        queue_depth: Vec<IntGauge>,
        queue_batches: usize,
        snaplen: u32,
        counters: CaptureCounters,
        stop: Arc<AtomicBool>,
        read_timeout: Duration,
        returns: (Sender<Batch>, Receiver<Batch>),
    ) -> CaptureThread {
        let n = workers.len();
        let pool = pool_size(n, queue_batches);
        let bytes = batch_bytes(snaplen);
        let link = capture.link();
        let free = (0..pool).map(|_| Batch::new(id, link, bytes)).collect();
        // The sending half goes to the workers; this thread keeps the
        // receiving half.
        drop(returns.0);
        CaptureThread {
            capture,
            stop,
            read_timeout,
            shipper: Shipper {
                sharder,
                workers,
                queue_depth,
                current: (0..n).map(|_| None).collect(),
                free,
                returns: returns.1,
                counters,
                packets: 0,
                bytes: 0,
                queue_drops: 0,
            },
        }
    }

    /// Reads until stopped (then drains what the kernel still holds) or a
    /// read fails.
    pub fn run(mut self) -> Result<(), SourceError> {
        let s = &mut self.shipper;
        s.counters.up.set(1);
        let mut drops = CaptureDrops::default();
        let mut next_tick = Instant::now() + TICK_EVERY;
        let mut next_stats = Instant::now() + STATS_EVERY;
        let mut drain_until: Option<Instant> = None;
        let result = loop {
            let n = match self.capture.dispatch(DISPATCH_BUDGET, |f| s.on_frame(f)) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n < DISPATCH_BUDGET {
                // The ring is empty for now: hand over partial batches.
                s.flush_all();
            }
            let now = Instant::now();
            if now >= next_tick {
                s.flush_all();
                s.tick();
                next_tick = now + TICK_EVERY;
            }
            if now >= next_stats {
                s.publish();
                if let Err(e) = update_drops(&mut self.capture, &s.counters, &mut drops) {
                    break Err(e);
                }
                next_stats = now + STATS_EVERY;
            }
            if drain_until.is_none() && self.stop.load(Ordering::Relaxed) {
                // A block the kernel has not retired yet shows up within
                // the read timeout.
                drain_until = Some(now + self.read_timeout * 2 + Duration::from_millis(20));
            }
            match drain_until {
                // Past the drain time stop even if frames keep coming.
                Some(t) if now >= t => break Ok(()),
                Some(_) if n == 0 => {
                    let _ = self.capture.wait(Duration::from_millis(10));
                }
                _ if n == 0 => {
                    if let Err(e) = self.capture.wait(IDLE_WAIT) {
                        break Err(e);
                    }
                }
                _ => {}
            }
        };
        s.flush_all();
        s.tick();
        s.publish();
        let _ = update_drops(&mut self.capture, &s.counters, &mut drops);
        s.counters.up.set(0);
        result
    }
}

/// Batches one capture thread owns.
pub fn pool_size(workers: usize, queue_batches: usize) -> usize {
    workers * (queue_batches + 2)
}

/// Worker queue capacity in batches for a capacity in frames.
pub fn queue_batches(queue_packets: usize) -> usize {
    queue_packets.div_ceil(BATCH_FRAMES).max(1)
}

fn update_drops(
    capture: &mut LiveCapture,
    counters: &CaptureCounters,
    last: &mut CaptureDrops,
) -> Result<(), SourceError> {
    let now = capture.drops()?;
    counters
        .dropped_kernel
        .inc_by(now.kernel.saturating_sub(last.kernel));
    counters
        .dropped_interface
        .inc_by(now.interface.saturating_sub(last.interface));
    *last = now;
    Ok(())
}

impl Shipper {
    fn on_frame(&mut self, frame: &Frame<'_>) {
        self.packets += 1;
        self.bytes += u64::from(frame.orig_len);
        let decoded = decode(frame);
        let w = self.sharder.worker_of(&decoded);
        let has_room = self
            .current
            .get(w)
            .and_then(Option::as_ref)
            .is_some_and(|b| b.fits(frame));
        if !has_room {
            self.ship(w);
            if !self.take_free(w) {
                self.queue_drops += 1;
                return;
            }
        }
        let full = match self.current.get_mut(w).and_then(Option::as_mut) {
            Some(batch) => {
                batch.push(frame, decoded);
                batch.len() >= BATCH_FRAMES
            }
            None => false,
        };
        if full {
            self.ship(w);
        }
    }

    /// Gives worker `w` an empty batch to fill; false if none is free.
    fn take_free(&mut self, w: usize) -> bool {
        while let Ok(b) = self.returns.try_recv() {
            self.free.push(b);
        }
        match (self.free.pop(), self.current.get_mut(w)) {
            (Some(b), Some(slot)) => {
                *slot = Some(b);
                true
            }
            (Some(b), None) => {
                self.free.push(b);
                false
            }
            (None, _) => false,
        }
    }

    /// Sends worker `w`'s batch, or drops and counts it if its queue is full.
    fn ship(&mut self, w: usize) {
        let Some(batch) = self.current.get_mut(w).and_then(Option::take) else {
            return;
        };
        if batch.is_empty() {
            self.free.push(batch);
            return;
        }
        let (Some(tx), Some(depth)) = (self.workers.get(w), self.queue_depth.get(w)) else {
            return;
        };
        let len = batch.len();
        depth.add(len as i64);
        match tx.try_send(Msg::Batch(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => {
                depth.sub(len as i64);
                self.queue_drops += len as u64;
                if let Msg::Batch(mut b) = msg {
                    b.clear();
                    self.free.push(b);
                }
            }
        }
    }

    fn flush_all(&mut self) {
        for w in 0..self.current.len() {
            self.ship(w);
        }
    }

    /// Sends every worker the capture clock (skipped for a worker whose
    /// queue is full: it has packets to take time from).
    fn tick(&mut self) {
        let now = capture_clock();
        for tx in &self.workers {
            let _ = tx.try_send(Msg::Tick(now));
        }
    }

    fn publish(&mut self) {
        self.counters.received_packets.inc_by(self.packets);
        self.counters.received_bytes.inc_by(self.bytes);
        self.counters.dropped_queue.inc_by(self.queue_drops);
        self.packets = 0;
        self.bytes = 0;
        self.queue_drops = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_sizes() {
        assert_eq!(queue_batches(8192), 128);
        assert_eq!(queue_batches(1), 1);
        assert_eq!(queue_batches(0), 1);
        assert_eq!(queue_batches(65), 2);
        assert_eq!(pool_size(3, 128), 390);
    }
}
