//! SSH messages from TCP segment sizes, when the records cannot be walked
//! (encrypted lengths, a flow picked up mid-stream): a segment that is
//! MSS-full goes on in the next one of its direction, so such runs are
//! merged into one message; any other segment ends its message. The SSH
//! analyzer and the mid-stream analysis share this.

use super::model::Unit;
use crate::analyzer::{Dir, PacketView};
use crate::time::Timestamp;

/// A segment at least this large that equals the largest seen in its
/// direction is taken as MSS-full: the message goes on in the next one.
const FULL_SEGMENT_MIN: u32 = 1200;
/// Segments merged into one unit at most (bulk data is bulk either way).
const MAX_MERGED: u32 = 1 << 20;
/// A continuation segment comes within this time.
const CONTINUATION_NANOS: u64 = 50_000_000;

/// A message being assembled from MSS-full segments.
#[derive(Copy, Clone, Debug)]
pub struct Pending {
    size: u32,
    idx: u64,
    ts: Timestamp,
    last_full: bool,
}

impl Pending {
    /// The message as a unit of the size model.
    pub fn unit(self, dir: Dir) -> Unit {
        Unit {
            dir,
            size: self.size,
            idx: self.idx,
            ts: self.ts,
            exact: false,
        }
    }
}

/// What `size` new bytes in the segment of `pkt` did to its direction's
/// message in `pending` (`max_seg`: the largest segment seen that way):
/// the message they ended before starting a new one, if any, and whether
/// the message now in `pending` is complete (the segment was not MSS-full).
pub fn add(
    pending: &mut Option<Pending>,
    size: u32,
    pkt: &PacketView<'_>,
    max_seg: u32,
) -> (Option<Pending>, bool) {
    let full = size >= FULL_SEGMENT_MIN && size >= max_seg;
    let mut ended = None;
    match pending.as_mut() {
        Some(p)
            if p.last_full && pkt.ts.since(p.ts) <= CONTINUATION_NANOS && p.size < MAX_MERGED =>
        {
            p.size = p.size.saturating_add(size);
            p.ts = pkt.ts;
            p.last_full = full;
        }
        _ => {
            ended = pending.take();
            *pending = Some(Pending {
                size,
                idx: pkt.index,
                ts: pkt.ts,
                last_full: full,
            });
        }
    }
    (ended, !full)
}
