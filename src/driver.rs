//! The loop that feeds a packet source through an engine. Live capture and
//! replay differ only in the source handed in here.
//!
//! [`run`] does everything on the calling thread (tests, benchmarks and
//! the fuzz targets use it as the reference). [`sharded`] is how the
//! binary replays: a reader thread, engines on their own threads and a
//! writer, with the same output as [`run`] for any number of engines.

use crate::engine::Engine;
use crate::event::EventSink;
use crate::source::{PacketSource, SourceError};

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
