//! The loop that feeds a packet source through an engine. Live capture and
//! replay differ only in the source handed in here.

use crate::engine::Engine;
use crate::event::EventSink;
use crate::source::{PacketSource, SourceError};

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
                engine.process(&frame, index, sink);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    engine.finish(sink);
    result
}
