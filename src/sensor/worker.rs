//! A worker thread: owns one [`Engine`] (and so its flow table), analyzes
//! the batches the capture threads send it, and publishes its counters to
//! the metrics per batch, as deltas of its plain [`Stats`].

use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::metrics::Metrics;
use crate::source::batch::Batch;
use crate::stats::Stats;
use crate::time::Timestamp;
use crossbeam_channel::{Receiver, Sender};
use prometheus::IntGauge;

/// What a capture thread sends a worker.
pub enum Msg {
    Batch(Batch),
    /// The capture clock, when no packet carries time: drives flow expiry.
    Tick(Timestamp),
}

/// What a worker hands back when it ends: the flows its engine saved for
/// the state file (none unless asked) and its latest packet time.
pub type Saved = (Vec<crate::engine::SavedFlow>, Timestamp);

/// Publish at least every this many batches even under constant load.
const PUBLISH_EVERY: u32 = 16;

/// Sends events to the writer; blocks when it falls behind, which backs up
/// into the worker queues, where drops are counted.
pub struct ChannelSink(pub Sender<Event>);

impl EventSink for ChannelSink {
    fn event(&mut self, event: Event) {
        // The writer only goes away at shutdown after every worker.
        let _ = self.0.send(event);
    }
}

pub struct Worker {
    pub engine: Engine,
    pub rx: Receiver<Msg>,
    /// Where analyzed batches go back to, by capture thread.
    pub returns: Vec<Sender<Batch>>,
    pub events: ChannelSink,
    pub metrics: Metrics,
    pub queue_depth: IntGauge,
}

impl Worker {
    /// Runs until every capture thread has hung up, then ends every open
    /// flow.
    pub fn run(mut self) -> Saved {
        let mut published = Published::default();
        let mut since_publish = 0u32;
        let mut index = 0u64;
        while let Ok(msg) = self.rx.recv() {
            match msg {
                Msg::Batch(mut batch) => {
                    self.queue_depth.sub(batch.len() as i64);
                    self.engine
                        .set_input(u16::try_from(batch.origin).unwrap_or(u16::MAX));
                    for (frame, decoded) in batch.decoded() {
                        index += 1;
                        self.engine
                            .process_decoded(&frame, decoded, index, &mut self.events);
                    }
                    batch.clear();
                    if let Some(home) = self.returns.get(batch.origin) {
                        // Sized for every batch there is: never full.
                        let _ = home.try_send(batch);
                    }
                    since_publish += 1;
                }
                Msg::Tick(now) => {
                    self.engine.advance(now, &mut self.events);
                    since_publish = PUBLISH_EVERY;
                }
            }
            if since_publish >= PUBLISH_EVERY || self.rx.is_empty() {
                published.publish(&self.engine, &self.metrics);
                since_publish = 0;
            }
        }
        self.engine.finish(&mut self.events);
        published.publish(&self.engine, &self.metrics);
        self.engine.take_saved()
    }
}

/// What a worker's engine has published to the metrics so far; publishing
/// adds the difference.
#[derive(Default)]
pub struct Published {
    stats: Stats,
    flows_active: i64,
}

impl Published {
    pub fn publish(&mut self, engine: &Engine, metrics: &Metrics) {
        let stats = engine.stats();
        metrics.add_engine(&self.stats, stats);
        self.stats.clone_from(stats);
        let now = i64::try_from(engine.flows_active()).unwrap_or(i64::MAX);
        metrics.add_flows_active(now - self.flows_active);
        self.flows_active = now;
    }
}
