//! Replay on every core: one engine per thread, each owning the flows that
//! [`Sharder`] gives it, all fed the same batches by one reader, their
//! events merged by one writer into an order that does not depend on how
//! many engines there are.
//!
//! Every engine walks every frame: it analyzes the frames it owns and, for
//! the others, only moves its packet time forward, so each engine sweeps
//! its idle flows at the same frame a single engine would. The writer
//! orders events by the frame that caused them; at one frame, the flows
//! ended by the sweeps come first, by start and flow id whichever engine
//! held them, then the frame's own events (one engine's, in its order);
//! the flows still open at the end come last, by start and flow id. The
//! DNS name cache, the one thing engines share per packet, is read and
//! written in turns ([`Turns`]), so it sees the operations of one engine.
//!
//! The output is therefore the same for any number of engines, byte for
//! byte, except where a bound splits by engine: each engine has its own
//! flow table bound and its own memory of ended flows (a capture that
//! fills the table reports that per engine).

use crate::analyzer::names::NameCache;
use crate::decode::decode;
use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::flow::shard::{Sharder, Turns};
use crate::source::batch::Batch;
use crate::source::{LinkType, PacketSource, SourceError};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::Arc;
use std::thread;

/// Events an engine gathers before it sends them to the writer.
const EVENT_BATCH: usize = 256;

/// The sharder of a replay over `engines` engines. Its seed is fixed:
/// which engine holds a flow (and so which bound it counts against) is
/// the same on every run.
pub fn sharder(engines: usize) -> Sharder {
    Sharder::new(engines, 0)
}

/// `n` engines (at least one) that share the name cache `names`, each
/// through a view taking its turn: `make` builds an engine around its
/// view. With the turns, what [`run_sharded`] runs.
pub fn engines(
    n: usize,
    names: &NameCache,
    mut make: impl FnMut(Arc<NameCache>) -> Engine,
) -> (Vec<Engine>, Arc<Turns>) {
    let turns = Arc::new(Turns::new(n));
    let engines = (0..turns.engines())
        .map(|me| make(Arc::new(names.taking_turns(turns.clone(), me))))
        .collect();
    (engines, turns)
}

/// [`run_sharded`] with one engine: the reader, the engine and the writer
/// each on a thread of their own.
pub fn run_alone(
    source: &mut (dyn PacketSource + Send),
    engine: &mut Engine,
    sink: &mut (dyn EventSink + Send),
) -> Result<(), SourceError> {
    run_sharded(source, std::slice::from_mut(engine), &Turns::new(1), sink)
}

/// Runs `source` through `engines` (engine `i` is engine `i` of `turns`,
/// whose name cache views take those turns), each on its own thread, and
/// writes the merged events to `sink`. Frames read before an error are
/// fully reported.
pub fn run_sharded(
    source: &mut (dyn PacketSource + Send),
    engines: &mut [Engine],
    turns: &Turns,
    sink: &mut (dyn EventSink + Send),
) -> Result<(), SourceError> {
    let n = engines.len();
    let (events_tx, events_rx) = bounded::<Message>(n * 4);
    let (free_tx, free_rx) = bounded::<Arc<Batch>>((FRAME_BATCHES + 1) * n);
    for _ in 0..=FRAME_BATCHES {
        // Cannot fail: the channel has room for every batch.
        let _ = free_tx.send(Arc::new(replay_batch()));
    }
    thread::scope(|scope| {
        thread::Builder::new()
            .name("replay-write".into())
            .spawn_scoped(scope, move || merge(n, &events_rx, sink))
            .map_err(SourceError::Thread)?;
        let mut to_engines = Vec::with_capacity(n);
        for (me, engine) in engines.iter_mut().enumerate() {
            let (tx, rx) = bounded::<Arc<Batch>>(FRAME_BATCHES);
            let shard = Shard {
                me,
                sharder: sharder(n),
                turns,
                out: TaggingSink::new(me, events_tx.clone()),
            };
            let spent = free_tx.clone();
            thread::Builder::new()
                .name(format!("replay-engine-{me}"))
                .spawn_scoped(scope, move || shard.run(engine, &rx, &spent))
                .map_err(SourceError::Thread)?;
            to_engines.push(tx);
        }
        drop((events_tx, free_tx));
        // The reader is this thread; dropping `to_engines` at its end lets
        // the engines finish.
        let Ok(first) = free_rx.recv() else {
            return Ok(());
        };
        let Some(first) = Arc::into_inner(first) else {
            return Ok(());
        };
        read(source, first, &mut |full| {
            deliver(full, &to_engines, &free_rx)
        })
    })
}

/// Hands a full batch to every engine and waits for one all of them have
/// let go of.
fn deliver(
    full: Batch,
    engines: &[Sender<Arc<Batch>>],
    free: &Receiver<Arc<Batch>>,
) -> Option<Batch> {
    let full = Arc::new(full);
    for engine in engines {
        engine.send(Arc::clone(&full)).ok()?;
    }
    drop(full);
    loop {
        // The last engine to give a batch back leaves it whole.
        if let Some(batch) = Arc::into_inner(free.recv().ok()?) {
            return Some(batch);
        }
    }
}

/// One engine's thread.
struct Shard<'a> {
    me: usize,
    sharder: Sharder,
    turns: &'a Turns,
    out: TaggingSink,
}

impl Shard<'_> {
    fn run(
        mut self,
        engine: &mut Engine,
        batches: &Receiver<Arc<Batch>>,
        spent: &Sender<Arc<Batch>>,
    ) {
        let _done = self.turns.done_on_drop(self.me);
        let mut index = 0u64;
        for batch in batches {
            for (frame, decoded) in batch.decoded() {
                index += 1;
                let owner = self.sharder.worker_of(&decoded);
                if let Ok(pkt) = &decoded {
                    self.turns.set(self.me, self.turns.sweep(index, self.me));
                    self.out.at(Order::sweep(index));
                    engine.advance(pkt.ts, &mut self.out);
                }
                self.turns.set(self.me, self.turns.packet(index));
                if owner == self.me {
                    self.out.at(Order::packet(index));
                    engine.set_input(frame.input);
                    engine.process_decoded(&frame, decoded, index, &mut self.out);
                }
            }
            let _ = spent.send(batch);
            self.turns.set(self.me, self.turns.sweep(index + 1, 0));
            self.out.send((Order::sweep(index + 1), (0, 0)));
        }
        self.turns.set(self.me, self.turns.finish(self.me));
        self.out.at(Order::FINISH);
        engine.finish(&mut self.out);
        self.out.send((Order::DONE, (0, 0)));
    }
}

/// Where an event goes in the merged output: the frame's phase (the sweep
/// at frame `k` is `2k`, the frame's own packet `2k + 1`), then the flow
/// that ended (its start and id; none for a packet's events), then the
/// order the engine made them in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Order {
    phase: u64,
    flow: (u64, u64),
    seq: u64,
}

impl Order {
    /// Even, as the sweeps: its flows are placed by start and id.
    const FINISH: u64 = u64::MAX - 1;
    const DONE: u64 = u64::MAX;

    fn sweep(index: u64) -> u64 {
        index.saturating_mul(2)
    }

    fn packet(index: u64) -> u64 {
        index.saturating_mul(2).saturating_add(1)
    }
}

/// Events of one engine, and the (phase, flow) before which it has sent
/// them all.
struct Message {
    from: usize,
    events: Vec<(Order, Event)>,
    before: (u64, (u64, u64)),
}

/// An engine's sink: each event tagged with its [`Order`].
struct TaggingSink {
    me: usize,
    phase: u64,
    flow: (u64, u64),
    seq: u64,
    events: Vec<(Order, Event)>,
    to_writer: Sender<Message>,
}

impl TaggingSink {
    fn new(me: usize, to_writer: Sender<Message>) -> TaggingSink {
        TaggingSink {
            me,
            phase: 0,
            flow: (0, 0),
            seq: 0,
            events: Vec::with_capacity(EVENT_BATCH),
            to_writer,
        }
    }

    fn at(&mut self, phase: u64) {
        self.phase = phase;
        self.flow = (0, 0);
    }

    /// Sends what was gathered: everything before `before` is complete.
    fn send(&mut self, before: (u64, (u64, u64))) {
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(EVENT_BATCH));
        let message = Message {
            from: self.me,
            events,
            before,
        };
        // The writer only stops once every engine has hung up.
        let _ = self.to_writer.send(message);
    }
}

impl EventSink for TaggingSink {
    fn event(&mut self, event: Event) {
        self.seq += 1;
        let order = Order {
            phase: self.phase,
            flow: self.flow,
            seq: self.seq,
        };
        self.events.push((order, event));
        if self.events.len() >= EVENT_BATCH {
            // The flows open at the end come in order (`Engine::finish`):
            // the ones before this flow are complete. A sweep's are not in
            // order, so only earlier phases are.
            let flow = match self.phase {
                Order::FINISH => self.flow,
                _ => (0, 0),
            };
            self.send((self.phase, flow));
        }
    }

    /// A frame's own events stay in the engine's order; only flows ended
    /// by a sweep or at the end (even phases) are placed by start and id.
    fn flow_ending(&mut self, order: (u64, u64)) {
        if self.phase.is_multiple_of(2) {
            self.flow = order;
        }
    }
}

/// The writer stage: the engines' events, merged, to the sink. An event is
/// written once every engine has sent everything before its phase.
fn merge(engines: usize, from: &Receiver<Message>, sink: &mut (dyn EventSink + Send)) {
    let mut before = vec![(0u64, (0u64, 0u64)); engines];
    let mut pending: Vec<(Order, Event)> = Vec::new();
    for message in from {
        pending.extend(message.events);
        let Some(slot) = before.get_mut(message.from) else {
            continue;
        };
        *slot = message.before;
        let complete = before
            .iter()
            .copied()
            .min()
            .unwrap_or((Order::DONE, (0, 0)));
        write_before(&mut pending, complete, sink);
    }
    write_before(&mut pending, (Order::DONE, (0, 0)), sink);
}

/// Writes, in order, the pending events placed before `complete`.
fn write_before(
    pending: &mut Vec<(Order, Event)>,
    complete: (u64, (u64, u64)),
    sink: &mut (dyn EventSink + Send),
) {
    let done = |order: &Order| (order.phase, order.flow) < complete;
    if !pending.iter().any(|(order, _)| done(order)) {
        return;
    }
    pending.sort_by_key(|(order, _)| *order);
    let cut = pending.partition_point(|(order, _)| done(order));
    for (_, event) in pending.drain(..cut) {
        sink.event(event);
    }
}

/// Batches in flight between the reader and the engine, and their size
/// (larger than the live sensor's: a file is never waited on).
const FRAME_BATCHES: usize = 8;
const BATCH_FRAMES: usize = 512;
/// Bytes per batch: typical frames, and always room for the largest (the
/// pcap maximum snap length).
const BATCH_BYTES: usize = 1600 * BATCH_FRAMES;
const _: () = assert!(BATCH_BYTES >= 262_144);

/// An empty batch of the replay's size.
fn replay_batch() -> Batch {
    Batch::with_capacity(0, LinkType::Ethernet, BATCH_FRAMES, BATCH_BYTES)
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
