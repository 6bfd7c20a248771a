//! Frames in flight between threads (a capture thread and a worker, the
//! replay reader and the engine): a batch copies frames into one buffer
//! allocated up front, or (for a mapped capture file) refers to them in the
//! shared mapping window they lie in, and is sent back once analyzed, so
//! the hot path allocates nothing per packet and a channel operation is
//! paid per batch. A batch is read through `&self` only (`Send + Sync`):
//! several threads may read one batch at once.

use crate::decode::{decode, Detached, Packet, Skip};
use crate::source::mapped::Mapping;
use crate::source::{Frame, LinkType};
use crate::time::Timestamp;

/// Frames per batch.
pub const BATCH_FRAMES: usize = 64;

/// Mapping windows one batch may refer to (a batch spans a window's end
/// at most once unless its frames are huge; then it is sent earlier).
const BATCH_MAPS: usize = 4;

/// `Slot::map` of a frame copied into the batch's own buffer.
const COPIED: u16 = u16::MAX;

/// Bytes of frame data per batch: 64 typical frames, and always room for
/// one frame of the largest snap length.
pub fn batch_bytes(snaplen: u32) -> usize {
    (BATCH_FRAMES * 1600).max(snaplen as usize)
}

#[derive(Copy, Clone, Debug)]
struct Slot {
    ts: Timestamp,
    /// Where the bytes are: `data[start..]` when `map` is `COPIED`,
    /// otherwise `maps[map]`'s bytes from `start`.
    map: u16,
    start: usize,
    len: usize,
    orig_len: u32,
    input: u16,
    /// Decoded by the sending thread.
    decoded: Result<Detached, Skip>,
}

/// A reusable buffer of frames from one capture.
#[derive(Debug)]
pub struct Batch {
    data: Vec<u8>,
    slots: Vec<Slot>,
    /// The mapping windows the uncopied frames lie in (kept alive, and so
    /// mapped, until the batch is cleared).
    maps: Vec<Mapping>,
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
            maps: Vec::with_capacity(BATCH_MAPS),
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

    /// Copies `frame` in with its decoding (`decoded`, from `decode(frame)`);
    /// false (and nothing copied) when it does not fit. A frame longer than
    /// the whole buffer is cut to it (and decoded again: the engine sees the
    /// wire length and counts a truncated frame).
    pub fn push(&mut self, frame: &Frame<'_>, decoded: Result<Packet<'_>, Skip>) -> bool {
        let data = match frame.data.get(..self.data.capacity()) {
            Some(cut) => cut,
            None => frame.data,
        };
        if self.slots.len() >= self.slots.capacity()
            || self.data.len() + data.len() > self.data.capacity()
        {
            return false;
        }
        let decoded = if data.len() < frame.data.len() {
            decode(&Frame { data, ..*frame })
        } else {
            decoded
        };
        let start = self.data.len();
        self.data.extend_from_slice(data);
        self.slots.push(Slot {
            ts: frame.ts,
            map: COPIED,
            start,
            len: data.len(),
            orig_len: frame.orig_len,
            input: frame.input,
            decoded: decoded.map(|p| Detached::new(&p, data)),
        });
        true
    }

    /// Whether `frame`, whose bytes lie in `map`, fits without growing the
    /// buffers (see [`Batch::push_shared`]).
    pub fn fits_shared(&self, frame: &Frame<'_>, map: &Mapping) -> bool {
        if map.offset_of(frame.data).is_none() {
            return self.fits(frame);
        }
        self.slots.len() < self.slots.capacity()
            && (self.last_map_is(map) || self.maps.len() < self.maps.capacity())
    }

    /// Adds `frame`, whose bytes lie in the mapping window `map`, without
    /// copying them: the batch refers to them and holds the window. (A
    /// frame not inside `map` is copied, as by [`Batch::push`].) False,
    /// and nothing added, when it does not fit.
    pub fn push_shared(
        &mut self,
        frame: &Frame<'_>,
        decoded: Result<Packet<'_>, Skip>,
        map: &Mapping,
    ) -> bool {
        let Some(start) = map.offset_of(frame.data) else {
            return self.push(frame, decoded);
        };
        if self.slots.len() >= self.slots.capacity() {
            return false;
        }
        if !self.last_map_is(map) {
            if self.maps.len() >= self.maps.capacity() {
                return false;
            }
            self.maps.push(map.clone());
        }
        self.slots.push(Slot {
            ts: frame.ts,
            map: (self.maps.len() - 1) as u16,
            start,
            len: frame.data.len(),
            orig_len: frame.orig_len,
            input: frame.input,
            decoded: decoded.map(|p| Detached::new(&p, frame.data)),
        });
        true
    }

    fn last_map_is(&self, map: &Mapping) -> bool {
        self.maps.last().is_some_and(|m| m.same(map))
    }

    /// Frames whose bytes were copied into the batch (the others refer
    /// into a mapping).
    pub fn copied(&self) -> usize {
        self.slots.iter().filter(|s| s.map == COPIED).count()
    }

    /// Empties the batch for reuse (capacity is kept); the mapping windows
    /// it held are let go.
    pub fn clear(&mut self) {
        self.data.clear();
        self.slots.clear();
        self.maps.clear();
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

    /// The frames with their decoding, in the order they were pushed.
    pub fn decoded(&self) -> impl Iterator<Item = (Frame<'_>, Result<Packet<'_>, Skip>)> + '_ {
        self.slots.iter().map(move |s| {
            let frame = self.frame(s);
            (frame, s.decoded.map(|d| d.attach(frame.data)))
        })
    }

    fn frame(&self, s: &Slot) -> Frame<'_> {
        let bytes = match s.map {
            COPIED => self.data.as_slice(),
            i => self
                .maps
                .get(usize::from(i))
                .map_or(&[][..], Mapping::bytes),
        };
        Frame {
            ts: s.ts,
            link: self.link,
            data: bytes.get(s.start..s.start + s.len).unwrap_or(&[]),
            orig_len: s.orig_len,
            input: s.input,
        }
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
            input: 0,
        }
    }

    fn put(b: &mut Batch, f: &Frame<'_>) -> bool {
        b.push(f, decode(f))
    }

    #[test]
    fn decoded_packets_come_back_with_their_payload() {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [198, 51, 100, 7], 64)
            .udp(5353, 53)
            .write(&mut data, b"query")
            .unwrap();
        let mut b = Batch::new(0, LinkType::Ethernet, 1600);
        assert!(put(&mut b, &frame(1, b"junk")));
        assert!(put(&mut b, &frame(2, &data)));
        let got: Vec<_> = b
            .decoded()
            .map(|(_, p)| p.map(|p| (p.src.port, p.payload.to_vec())))
            .collect();
        assert_eq!(
            got,
            vec![Err(Skip::Truncated), Ok((5353, b"query".to_vec()))]
        );
    }

    #[test]
    fn frames_come_back_as_pushed() {
        let mut b = Batch::new(0, LinkType::Ethernet, 100);
        assert!(put(&mut b, &frame(1, b"abc")));
        assert!(put(&mut b, &frame(2, b"")));
        assert!(put(&mut b, &frame(3, b"defgh")));
        let got: Vec<(u64, Vec<u8>, u32)> = b
            .decoded()
            .map(|(f, _)| f)
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
        assert!(put(&mut b, &frame(1, b"123456")));
        assert!(!b.fits(&frame(2, b"12345")));
        assert!(!put(&mut b, &frame(2, b"12345")));
        assert_eq!(b.len(), 1);
        for _ in 1..BATCH_FRAMES {
            put(&mut b, &frame(3, b""));
        }
        assert_eq!(b.len(), BATCH_FRAMES);
        assert!(!put(&mut b, &frame(4, b"")));
        assert_eq!((b.data.capacity(), b.slots.capacity()), cap);
        b.clear();
        assert!(b.is_empty());
        assert!(put(&mut b, &frame(5, b"12345")));
    }

    #[test]
    fn oversized_frame_is_cut_to_the_buffer() {
        let mut b = Batch::new(0, LinkType::Ethernet, 8);
        let cap = b.data.capacity();
        let big = vec![7u8; cap + 50];
        assert!(put(&mut b, &frame(1, &big)));
        let f = b.decoded().next().map(|(f, _)| (f.data.len(), f.orig_len));
        assert_eq!(f, Some((cap, big.len() as u32 + 4)));
        // Decoded again as cut (8 bytes: no whole Ethernet header), not as
        // the whole frame (non-IP).
        assert_eq!(decode(&frame(1, &big)).err(), Some(Skip::NonIp));
        let decoded = b.decoded().next().map(|(_, p)| p.err());
        assert_eq!(decoded, Some(Some(Skip::Truncated)));
    }

    fn window_of(bytes: &[u8]) -> Mapping {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let map = crate::source::mapped::MapBuf::open(f).unwrap();
        map.window().unwrap().clone()
    }

    #[test]
    fn mapped_frames_are_referred_to_not_copied() {
        let a = window_of(b"0123456789");
        let b = window_of(b"abcdefghij");
        let mut batch = Batch::with_capacity(0, LinkType::Ethernet, 8, 4);
        let (fa, fb) = (frame(1, &a.bytes()[2..5]), frame(2, &b.bytes()[4..9]));
        assert!(batch.fits_shared(&fa, &a));
        assert!(batch.push_shared(&fa, decode(&fa), &a));
        assert!(batch.push_shared(&fb, decode(&fb), &b));
        // Not inside the window given: copied (4 bytes of room).
        let outside = frame(3, b"xyz");
        assert!(batch.push_shared(&outside, decode(&outside), &a));
        assert_eq!((batch.len(), batch.copied(), batch.maps.len()), (3, 1, 2));
        assert!(batch.data.len() == 3);
        let got: Vec<Vec<u8>> = batch.decoded().map(|(f, _)| f.data.to_vec()).collect();
        assert_eq!(got, [b"234".to_vec(), b"efghi".to_vec(), b"xyz".to_vec()]);
        // The batch holds the windows until it is cleared.
        assert_eq!(std::sync::Arc::strong_count(&a.0), 2);
        batch.clear();
        assert_eq!(std::sync::Arc::strong_count(&a.0), 1);
    }

    #[test]
    fn a_batch_refers_to_a_bounded_number_of_windows() {
        let windows: Vec<Mapping> = (0..=BATCH_MAPS).map(|_| window_of(b"frame")).collect();
        let mut batch = Batch::with_capacity(0, LinkType::Ethernet, 64, 0);
        for w in &windows[..BATCH_MAPS] {
            let f = frame(1, w.bytes());
            assert!(batch.fits_shared(&f, w));
            assert!(batch.push_shared(&f, decode(&f), w));
        }
        let last = &windows[BATCH_MAPS];
        let f = frame(1, last.bytes());
        assert!(!batch.fits_shared(&f, last));
        assert!(!batch.push_shared(&f, decode(&f), last));
        // The last window again costs no slot of its own.
        let again = frame(2, &windows[BATCH_MAPS - 1].bytes()[1..]);
        assert!(batch.push_shared(&again, decode(&again), &windows[BATCH_MAPS - 1]));
        assert_eq!((batch.len(), batch.copied()), (BATCH_MAPS + 1, 0));
    }

    #[test]
    fn batches_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Batch>();
    }

    #[test]
    fn batch_bytes_holds_one_max_frame() {
        assert_eq!(batch_bytes(200), BATCH_FRAMES * 1600);
        assert_eq!(batch_bytes(262_144), 262_144);
    }
}
