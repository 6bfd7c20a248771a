//! A capture thread: reads one interface, sends each frame to its flow's
//! worker in batches, and counts what it read and what it had to drop.
//!
//! Back-pressure goes into the kernel ring: when a worker's queue is full
//! the thread waits for room instead of dropping, so the frames behind stay
//! in the ring (64 MiB by default) and only a full ring loses frames
//! (counted `kernel`). One stalled worker stalls the whole interface (the
//! ring is what rides it out). A full queue drops its batch (counted
//! `queue`) only at shutdown, after [`STOP_QUEUE_WAIT`]. While no packet
//! arrives the thread sends the workers the capture clock so idle flows
//! still expire.
//!
//! An interface that fails (it was deleted, its driver went away) does not
//! stop the sensor: the thread hands over what it has, marks the interface
//! down and reopens it with exponential back-off ([`Backoff`]) until it
//! comes back or the sensor stops. The flows it carried stay in the
//! workers and expire there as usual.

use super::privilege;
use super::worker::Msg;
use crate::decode::decode;
use crate::flow::shard::Sharder;
use crate::metrics::CaptureCounters;
use crate::source::batch::{batch_bytes, Batch, BATCH_FRAMES};
use crate::source::live::{capture_clock, CaptureDrops, LiveCapture, LiveOptions};
use crate::source::{Frame, LinkType, SourceError};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
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
/// How long one wait for room in a full queue lasts before the thread
/// looks at the stop flag and publishes its counters again.
const QUEUE_WAIT: Duration = Duration::from_millis(50);
/// Once stopping, how long a full queue is waited for before its batch is
/// dropped: a worker that takes longer is stuck.
pub const STOP_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// The batching side of a capture thread, apart from the pcap handle so
/// the dispatch callback can borrow it.
struct Shipper {
    sharder: Sharder,
    workers: Vec<Sender<Msg>>,
    queue_depth: Vec<IntGauge>,
    current: Vec<Option<Batch>>,
    free: Vec<Batch>,
    returns: Receiver<Batch>,
    /// The link type of the open capture, given to each batch taken.
    link: LinkType,
    counters: CaptureCounters,
    stop: Arc<AtomicBool>,
    /// Counted since the last publish.
    packets: u64,
    bytes: u64,
    queue_drops: u64,
    queue_wait: Duration,
}

pub struct CaptureThread {
    interface: String,
    options: LiveOptions,
    /// `None` while the interface is lost.
    capture: Option<LiveCapture>,
    stop: Arc<AtomicBool>,
    shipper: Shipper,
}

impl CaptureThread {
    /// Sets up capture thread `id` for an open capture.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        capture: LiveCapture,
        options: LiveOptions,
        sharder: Sharder,
        workers: Vec<Sender<Msg>>,
        queue_depth: Vec<IntGauge>,
        queue_batches: usize,
        counters: CaptureCounters,
        stop: Arc<AtomicBool>,
        returns: (Sender<Batch>, Receiver<Batch>),
    ) -> CaptureThread {
        let shipper = Shipper {
            sharder,
            workers,
            queue_depth,
            current: Vec::new(),
            free: Vec::new(),
            returns: returns.1,
            link: capture.link(),
            counters,
            stop: stop.clone(),
            packets: 0,
            bytes: 0,
            queue_drops: 0,
            queue_wait: Duration::ZERO,
        };
        // The sending half goes to the workers; this thread keeps the
        // receiving half.
        drop(returns.0);
        CaptureThread {
            interface: capture.interface().to_string(),
            shipper: shipper.with_pool(id, queue_batches, batch_bytes(options.snaplen)),
            options,
            capture: Some(capture),
            stop,
        }
    }

    /// Captures until stopped, reopening the interface whenever it fails.
    pub fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut last_error = String::new();
        loop {
            if let Some(capture) = self.capture.take() {
                let opened = Instant::now();
                match self.read(capture) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(interface = %self.interface, error = %e,
                            "capture lost; reopening it with back-off");
                        last_error = e.to_string();
                    }
                }
                if opened.elapsed() >= MAX_BACKOFF {
                    backoff = Backoff::default();
                }
            }
            if self.sleep(backoff.next_wait()) {
                return;
            }
            match privilege::with_net_raw(|| LiveCapture::open(&self.interface, &self.options)) {
                Ok(capture) => {
                    tracing::info!(interface = %self.interface, "capture reopened");
                    self.shipper.counters.restarts.inc();
                    self.shipper.link = capture.link();
                    self.capture = Some(capture);
                }
                Err(e) => {
                    // Once per kind of failure, not once per retry.
                    let e = e.to_string();
                    if e != last_error {
                        tracing::warn!(interface = %self.interface, error = %e,
                            "cannot reopen the capture; retrying");
                        last_error = e;
                    }
                }
            }
        }
    }

    /// Waits `d` unless stopped first; true if stopped.
    fn sleep(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep((until - now).min(IDLE_WAIT));
            // Keep idle flows expiring while the interface is away.
            self.shipper.tick();
        }
    }

    /// Reads `capture` until stopped (then drains what the kernel still
    /// holds) or a read fails; either way hands over every frame read.
    fn read(&mut self, mut capture: LiveCapture) -> Result<(), SourceError> {
        let s = &mut self.shipper;
        s.counters.up.set(1);
        let read_timeout = Duration::from_millis(u64::from(self.options.read_timeout_ms));
        let mut drops = CaptureDrops::default();
        let mut next_tick = Instant::now() + TICK_EVERY;
        let mut next_stats = Instant::now() + STATS_EVERY;
        let mut drain_until: Option<Instant> = None;
        let result = loop {
            let n = match capture.dispatch(DISPATCH_BUDGET, |f| s.on_frame(f)) {
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
                if let Err(e) = update_drops(&mut capture, &s.counters, &mut drops) {
                    break Err(e);
                }
                next_stats = now + STATS_EVERY;
            }
            if drain_until.is_none() && self.stop.load(Ordering::Relaxed) {
                // A block the kernel has not retired yet shows up within
                // the read timeout.
                drain_until = Some(now + read_timeout * 2 + Duration::from_millis(20));
            }
            match drain_until {
                // Past the drain time stop even if frames keep coming.
                Some(t) if now >= t => break Ok(()),
                Some(_) if n == 0 => {
                    let _ = capture.wait(Duration::from_millis(10));
                }
                _ if n == 0 => {
                    if let Err(e) = capture.wait(IDLE_WAIT) {
                        break Err(e);
                    }
                }
                _ => {}
            }
        };
        s.counters.up.set(0);
        s.flush_all();
        s.tick();
        s.publish();
        // A lost interface has no counters left to read.
        let _ = update_drops(&mut capture, &s.counters, &mut drops);
        result
    }
}

/// The longest wait between two attempts to reopen a lost interface.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Waits between attempts to reopen an interface: 1 s, doubling up to
/// [`MAX_BACKOFF`]. Reset once a reopened capture has run that long, so a
/// flapping interface is not reopened more than about twice a minute.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
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
    /// Gives capture thread `id` its pool of batches: for each worker, a
    /// full queue's worth plus the one being filled and the one analyzed.
    fn with_pool(mut self, id: usize, queue_batches: usize, bytes: usize) -> Shipper {
        let n = self.workers.len();
        self.current = (0..n).map(|_| None).collect();
        self.free = (0..pool_size(n, queue_batches))
            .map(|_| Batch::new(id, self.link, bytes))
            .collect();
        self
    }

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
    /// The pool holds a batch for every place one can be (see
    /// [`pool_size`]), so one is always free or on its way back.
    fn take_free(&mut self, w: usize) -> bool {
        if w >= self.current.len() {
            return false;
        }
        let mut waited = false;
        loop {
            while let Ok(b) = self.returns.try_recv() {
                self.free.push(b);
            }
            if let Some(mut b) = self.free.pop() {
                b.clear_for(self.link);
                self.current[w] = Some(b);
                return true;
            }
            if waited && self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if let Ok(b) = self.returns.recv_timeout(QUEUE_WAIT) {
                self.free.push(b);
            }
            waited = true;
        }
    }

    /// Sends worker `w`'s batch, waiting while its queue is full (the
    /// kernel ring holds what arrives meanwhile). Only once stopping is a
    /// batch dropped and counted, after [`STOP_QUEUE_WAIT`].
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
        let mut msg = match tx.try_send(Msg::Batch(batch)) {
            Ok(()) => return,
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => msg,
        };
        // The slow path: a clone, so the counters can be published while
        // waiting.
        let tx = tx.clone();
        let mut since = Instant::now();
        let refused = loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            let wait = if stopping {
                STOP_QUEUE_WAIT
            } else {
                QUEUE_WAIT
            };
            match tx.send_timeout(msg, wait) {
                Ok(()) => break None,
                Err(SendTimeoutError::Timeout(m)) if !stopping => {
                    msg = m;
                    // What was received shows while the ring fills.
                    let now = Instant::now();
                    self.queue_wait += now - since;
                    since = now;
                    self.publish();
                }
                Err(SendTimeoutError::Timeout(m) | SendTimeoutError::Disconnected(m)) => {
                    break Some(m)
                }
            }
        };
        self.queue_wait += since.elapsed();
        if let Some(msg) = refused {
            if let Some(depth) = self.queue_depth.get(w) {
                depth.sub(len as i64);
            }
            self.queue_drops += len as u64;
            if let Msg::Batch(mut b) = msg {
                b.clear();
                self.free.push(b);
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
        self.counters
            .queue_wait_seconds
            .inc_by(self.queue_wait.as_secs_f64());
        self.queue_wait = Duration::ZERO;
        self.packets = 0;
        self.bytes = 0;
        self.queue_drops = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::time::Timestamp;

    /// A shipper for one worker whose queue holds `queue_batches`, and the
    /// worker's end of the queue and of the return channel.
    fn shipper(queue_batches: usize, stop: bool) -> (Shipper, Receiver<Msg>, Sender<Batch>) {
        let (tx, rx) = crossbeam_channel::bounded(queue_batches);
        let (ret_tx, ret_rx) = crossbeam_channel::bounded(pool_size(1, queue_batches));
        let metrics = Metrics::new();
        let s = Shipper {
            sharder: Sharder::new(1, 0),
            workers: vec![tx],
            queue_depth: metrics.workers(1, queue_batches * BATCH_FRAMES),
            current: Vec::new(),
            free: Vec::new(),
            returns: ret_rx,
            link: LinkType::Ethernet,
            counters: metrics.capture("t0"),
            stop: Arc::new(AtomicBool::new(stop)),
            packets: 0,
            bytes: 0,
            queue_drops: 0,
            queue_wait: Duration::ZERO,
        };
        (s.with_pool(0, queue_batches, batch_bytes(1600)), rx, ret_tx)
    }

    fn feed(s: &mut Shipper, frames: usize) {
        let data = [0u8; 60];
        for i in 0..frames {
            s.on_frame(&Frame {
                ts: Timestamp::from_nanos(i as u64),
                link: LinkType::Ethernet,
                data: &data,
                orig_len: 60,
                input: 0,
            });
        }
        s.flush_all();
        s.publish();
    }

    #[test]
    fn a_stalled_worker_is_waited_for_not_dropped() {
        let (mut s, rx, ret) = shipper(1, false);
        // A worker that stalls, then takes its time over every batch.
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut frames = 0;
            while let Ok(msg) = rx.recv() {
                if let Msg::Batch(mut b) = msg {
                    frames += b.len();
                    b.clear();
                    let _ = ret.try_send(b);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            frames
        });
        feed(&mut s, BATCH_FRAMES * 20 + 7);
        let c = s.counters.clone();
        drop(s);
        assert_eq!(worker.join().unwrap(), BATCH_FRAMES * 20 + 7);
        assert_eq!(c.dropped_queue.get(), 0);
        assert_eq!(c.received_packets.get(), (BATCH_FRAMES * 20 + 7) as u64);
        assert!(
            c.queue_wait_seconds.get() >= 0.25,
            "{}",
            c.queue_wait_seconds.get()
        );
    }

    #[test]
    fn once_stopping_a_full_queue_drops_after_the_stop_wait() {
        let (mut s, _rx, _ret) = shipper(1, true);
        let t0 = Instant::now();
        // The first batch fills the queue nobody reads; the second waits
        // STOP_QUEUE_WAIT, then is dropped and counted.
        feed(&mut s, BATCH_FRAMES * 2);
        assert!(t0.elapsed() >= STOP_QUEUE_WAIT);
        assert_eq!(s.counters.dropped_queue.get(), BATCH_FRAMES as u64);
        assert_eq!(s.counters.received_packets.get(), 2 * BATCH_FRAMES as u64);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn queue_sizes() {
        assert_eq!(queue_batches(8192), 128);
        assert_eq!(queue_batches(1), 1);
        assert_eq!(queue_batches(0), 1);
        assert_eq!(queue_batches(65), 2);
        assert_eq!(pool_size(3, 128), 390);
    }
}
