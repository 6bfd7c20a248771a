//! The loop that feeds a packet source through an engine. Live capture and
//! replay differ only in the source handed in here.
//!
//! [`run`] does everything on the calling thread. [`run_threaded`] is the
//! same loop cut into three stages that overlap on a multi-core machine:
//! the source is read and decoded on one thread, the engine runs on the
//! caller's, and events are written on a third. Frames and events keep their order, so
//! both produce the same output.

use crate::decode::decode;
use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::source::batch::Batch;
use crate::source::{LinkType, PacketSource, SourceError};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::thread;

pub mod sharded;

/// Runs `source` to its end (or first error) through `engine`, then ends
/// every open flow. Frames read before an error are fully reported: the
/// flows they built are flushed either way.
pub fn run(
    source: &mut dyn PacketSource,
    engine: &mut Engine,
    sink: &mut dyn EventSink,
) -> Result<(), SourceError> {
    let mut index = 0u64;
    let result = loop {
        match source.next_frame() {
            Ok(Some(frame)) => {
                index += 1;
                engine.set_input(frame.input);
                engine.process(&frame, index, sink);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    engine.finish(sink);
    result
}

/// Batches in flight between the reader and the engine, and their size
/// (larger than the live sensor's: a file is never waited on).
const FRAME_BATCHES: usize = 8;
const BATCH_FRAMES: usize = 512;
/// Events per message to the writer, and messages in flight.
const EVENT_BATCH: usize = 256;
const EVENT_BATCHES: usize = 32;
/// Bytes per batch: typical frames, and always room for the largest (the
/// pcap maximum snap length).
const BATCH_BYTES: usize = 1600 * BATCH_FRAMES;
const _: () = assert!(BATCH_BYTES >= 262_144);

/// An empty batch of the replay's size.
fn replay_batch() -> Batch {
    Batch::with_capacity(0, LinkType::Ethernet, BATCH_FRAMES, BATCH_BYTES)
}

/// [`run`], with the source read on its own thread and the events written
/// on another. Where the threads cannot be started, it is [`run`].
pub fn run_threaded(
    source: &mut (dyn PacketSource + Send),
    engine: &mut Engine,
    sink: &mut (dyn EventSink + Send),
) -> Result<(), SourceError> {
    match stages(source, engine, sink) {
        Some(result) => result,
        None => {
            tracing::warn!("cannot start the replay threads; replaying on one thread");
            run(source, engine, sink)
        }
    }
}

/// The three stages; `None` (with nothing read) when a thread could not be
/// started.
fn stages(
    source: &mut (dyn PacketSource + Send),
    engine: &mut Engine,
    sink: &mut (dyn EventSink + Send),
) -> Option<Result<(), SourceError>> {
    let (frames_tx, frames_rx) = bounded::<Batch>(FRAME_BATCHES);
    let (free_tx, free_rx) = bounded::<Batch>(FRAME_BATCHES + 1);
    let (events_tx, events_rx) = bounded::<Vec<Event>>(EVENT_BATCHES);
    let (spent_tx, spent_rx) = bounded::<Vec<Event>>(EVENT_BATCHES + 1);
    for _ in 0..=FRAME_BATCHES {
        // Cannot fail: the channel has room for every batch.
        let _ = free_tx.send(replay_batch());
    }
    std::thread::scope(|scope| {
        // The writer first: if the reader then cannot start, nothing has
        // been read and the writer ends when its channel closes.
        thread::Builder::new()
            .name("replay-write".into())
            .spawn_scoped(scope, move || write(sink, &events_rx, &spent_tx))
            .ok()?;
        let reader = thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || {
                let Ok(first) = free_rx.recv() else {
                    return Ok(());
                };
                read(source, first, &mut |full| {
                    frames_tx.send(full).ok()?;
                    free_rx.recv().ok()
                })
            })
            .ok()?;
        let mut events = BatchingSink {
            batch: Vec::with_capacity(EVENT_BATCH),
            to_writer: events_tx,
            spent: spent_rx,
        };
        let mut index = 0u64;
        for batch in frames_rx {
            for (frame, decoded) in batch.decoded() {
                index += 1;
                engine.set_input(frame.input);
                engine.process_decoded(&frame, decoded, index, &mut events);
            }
            // The reader may have stopped; then the batch is not needed.
            let _ = free_tx.send(batch);
        }
        engine.finish(&mut events);
        events.flush();
        // Dropping `events` hangs up on the writer, which then ends.
        drop(events);
        Some(
            reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    })
}

/// The reader stage: frames decoded into batches. `deliver` hands a full
/// batch on and returns an empty one, or `None` once nobody takes batches.
/// Frames of a mapped capture file are not copied: the batch refers to
/// them in the mapping window.
fn read(
    source: &mut (dyn PacketSource + Send),
    mut batch: Batch,
    deliver: &mut dyn FnMut(Batch) -> Option<Batch>,
) -> Result<(), SourceError> {
    loop {
        let (frame, window) = match source.next_frame_shared() {
            Ok(Some(shared)) => shared,
            Ok(None) => break,
            Err(e) => {
                let _ = deliver(batch);
                return Err(e);
            }
        };
        let fits = match window {
            Some(window) => batch.fits_shared(&frame, window),
            None => batch.fits(&frame),
        };
        if frame.link != batch.link() || !fits {
            if !batch.is_empty() {
                let Some(next) = deliver(batch) else {
                    return Ok(()); // the engine is gone
                };
                batch = next;
            }
            batch.clear_for(frame.link);
        }
        match window {
            Some(window) => batch.push_shared(&frame, decode(&frame), window),
            None => batch.push(&frame, decode(&frame)),
        };
    }
    let _ = deliver(batch);
    Ok(())
}

/// The writer stage: every event, in order, to the sink.
fn write(
    sink: &mut (dyn EventSink + Send),
    full: &Receiver<Vec<Event>>,
    spent: &Sender<Vec<Event>>,
) {
    for mut events in full {
        for event in events.drain(..) {
            sink.event(event);
        }
        // A full return channel just lets this buffer go.
        let _ = spent.try_send(events);
    }
}

/// Gathers the engine's events into batches for the writer thread.
struct BatchingSink {
    batch: Vec<Event>,
    to_writer: Sender<Vec<Event>>,
    spent: Receiver<Vec<Event>>,
}

impl BatchingSink {
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(EVENT_BATCH));
        let full = std::mem::replace(&mut self.batch, next);
        // The writer only stops once this sink is dropped.
        let _ = self.to_writer.send(full);
    }
}

impl EventSink for BatchingSink {
    fn event(&mut self, event: Event) {
        self.batch.push(event);
        if self.batch.len() >= EVENT_BATCH {
            self.flush();
        }
    }
}
