//! Frames in flight between threads (a capture thread and a worker, the
//! replay reader and the engine): a batch copies frames into one buffer
//! allocated up front and is sent back once analyzed, so the hot path
//! allocates nothing per packet and a channel operation is paid per batch.

use crate::source::{Frame, LinkType};
use crate::time::Timestamp;

/// Frames per batch.
pub const BATCH_FRAMES: usize = 64;

/// Bytes of frame data per batch: 64 typical frames, and always room for
/// one frame of the largest snap length.
pub fn batch_bytes(snaplen: u32) -> usize {
    (BATCH_FRAMES * 1600).max(snaplen as usize)
}

#[derive(Copy, Clone, Debug)]
struct Slot {
    ts: Timestamp,
    start: usize,
    len: usize,
    orig_len: u32,
}

/// A reusable buffer of frames from one capture.
#[derive(Debug)]
pub struct Batch {
    data: Vec<u8>,
    slots: Vec<Slot>,
    link: LinkType,
    /// The capture thread it returns to.
    pub origin: usize,
}

impl Batch {
    pub fn new(origin: usize, link: LinkType, bytes: usize) -> Batch {
        Batch::with_capacity(origin, link, BATCH_FRAMES, bytes)
    }

    /// A batch for at most `frames` frames and `bytes` bytes of frame data.
    pub fn with_capacity(origin: usize, link: LinkType, frames: usize, bytes: usize) -> Batch {
        Batch {
            data: Vec::with_capacity(bytes),
            slots: Vec::with_capacity(frames),
            link,
            origin,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `frame` fits without growing the buffers.
    pub fn fits(&self, frame: &Frame<'_>) -> bool {
        self.slots.len() < self.slots.capacity()
            && self.data.len() + frame.data.len() <= self.data.capacity()
    }

    /// Copies `frame` in; false (and nothing copied) when it does not fit.
    /// A frame longer than the whole buffer is cut to it (the engine sees
    /// the wire length and counts a truncated frame).
    pub fn push(&mut self, frame: &Frame<'_>) -> bool {
        let data = match frame.data.get(..self.data.capacity()) {
            Some(cut) => cut,
            None => frame.data,
        };
        if self.slots.len() >= self.slots.capacity()
            || self.data.len() + data.len() > self.data.capacity()
        {
            return false;
        }
        let start = self.data.len();
        self.data.extend_from_slice(data);
        self.slots.push(Slot {
            ts: frame.ts,
            start,
            len: data.len(),
            orig_len: frame.orig_len,
        });
        true
    }

    /// Empties the batch for reuse (capacity is kept).
    pub fn clear(&mut self) {
        self.data.clear();
        self.slots.clear();
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Empties the batch for frames of `link` (several capture files in
    /// one replay may differ).
    pub fn clear_for(&mut self, link: LinkType) {
        self.clear();
        self.link = link;
    }

    /// The frames, in the order they were pushed.
    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> + '_ {
        self.slots.iter().map(move |s| Frame {
            ts: s.ts,
            link: self.link,
            data: self.data.get(s.start..s.start + s.len).unwrap_or(&[]),
            orig_len: s.orig_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts: u64, data: &[u8]) -> Frame<'_> {
        Frame {
            ts: Timestamp::from_secs(ts),
            link: LinkType::Ethernet,
            data,
            orig_len: data.len() as u32 + 4,
        }
    }

    #[test]
    fn frames_come_back_as_pushed() {
        let mut b = Batch::new(0, LinkType::Ethernet, 100);
        assert!(b.push(&frame(1, b"abc")));
        assert!(b.push(&frame(2, b"")));
        assert!(b.push(&frame(3, b"defgh")));
        let got: Vec<(u64, Vec<u8>, u32)> = b
            .frames()
            .map(|f| (f.ts.as_secs(), f.data.to_vec(), f.orig_len))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, b"abc".to_vec(), 7),
                (2, vec![], 4),
                (3, b"defgh".to_vec(), 9)
            ]
        );
    }

    #[test]
    fn full_batch_refuses_without_growing() {
        let mut b = Batch::new(0, LinkType::Ethernet, 10);
        let cap = (b.data.capacity(), b.slots.capacity());
        assert!(b.push(&frame(1, b"123456")));
        assert!(!b.fits(&frame(2, b"12345")));
        assert!(!b.push(&frame(2, b"12345")));
        assert_eq!(b.len(), 1);
        for _ in 1..BATCH_FRAMES {
            b.push(&frame(3, b""));
        }
        assert_eq!(b.len(), BATCH_FRAMES);
        assert!(!b.push(&frame(4, b"")));
        assert_eq!((b.data.capacity(), b.slots.capacity()), cap);
        b.clear();
        assert!(b.is_empty());
        assert!(b.push(&frame(5, b"12345")));
    }

    #[test]
    fn oversized_frame_is_cut_to_the_buffer() {
        let mut b = Batch::new(0, LinkType::Ethernet, 8);
        let cap = b.data.capacity();
        let big = vec![7u8; cap + 50];
        assert!(b.push(&frame(1, &big)));
        let f = b.frames().next().map(|f| (f.data.len(), f.orig_len));
        assert_eq!(f, Some((cap, big.len() as u32 + 4)));
    }

    #[test]
    fn batch_bytes_holds_one_max_frame() {
        assert_eq!(batch_bytes(200), BATCH_FRAMES * 1600);
        assert_eq!(batch_bytes(262_144), 262_144);
    }
}
