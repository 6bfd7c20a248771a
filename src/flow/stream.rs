//! Per-direction TCP stream reassembly for analyzers: bytes in sequence
//! order, retransmissions dropped, out-of-order segments placed, holes
//! reported as gaps, up to a byte budget.
//!
//! In-order segments (the common case) are handed over without copying;
//! only segments that arrive ahead of a hole are copied, into a buffer
//! bounded by [`MAX_PENDING_BYTES`].

use super::tcp::{seq_le, seq_lt};
use crate::analyzer::Chunk;

/// Out-of-order bytes held per direction before giving up on the hole.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;
/// Out-of-order segments held per direction.
const MAX_PENDING_SEGMENTS: usize = 64;

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct Stream {
    started: bool,
    /// Next sequence number to deliver.
    next: u32,
    /// Bytes delivered (data and gaps) so far.
    delivered: u64,
    /// Segments that arrived ahead of `next`; boxed, and only while there
    /// are any (most streams never hold one, and every analysed flow has
    /// two streams).
    pending: Option<Box<Pending>>,
}

/// Segments held ahead of a hole.
#[derive(Debug, Default)]
struct Pending {
    /// Sorted by sequence number, never empty.
    segments: Vec<(u32, Vec<u8>)>,
    bytes: usize,
}

/// One TCP segment as the reassembler needs it.
#[derive(Copy, Clone, Debug)]
pub struct Segment<'a> {
    pub seq: u32,
    pub syn: bool,
    /// Captured payload (possibly cut by the snap length).
    pub data: &'a [u8],
    /// Payload length on the wire.
    pub wire_len: u32,
}

impl Stream {
    /// Bytes delivered so far, gaps included.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Sequence number of the stream's first byte, once the stream started.
    pub fn origin(&self) -> Option<u32> {
        self.started
            .then(|| self.next.wrapping_sub(self.delivered as u32))
    }

    /// Starts the stream at a known first sequence number (the SYN was
    /// seen), so a first data segment that arrives late is still placed.
    pub fn start_at(&mut self, seq: u32) {
        self.started = true;
        self.next = seq;
    }

    /// Feeds one segment; `deliver` receives every chunk that became
    /// in-order, in order.
    pub fn push(&mut self, seg: Segment<'_>, deliver: &mut dyn FnMut(Chunk<'_>)) {
        if seg.syn {
            // A SYN places the stream only until bytes were delivered; a
            // later one (retransmitted, duplicated by the capture, or of a
            // new connection on the same ports) must not move it back or
            // forward under the analyzer: its data is placed like any.
            if self.delivered == 0 {
                self.started = true;
                self.next = seg.seq.wrapping_add(1);
            }
            return self.push_data(seg.seq.wrapping_add(1), seg, deliver);
        }
        if !self.started {
            // Mid-stream start: the first data segment defines the origin.
            if seg.wire_len == 0 {
                return;
            }
            self.started = true;
            self.next = seg.seq;
        }
        self.push_data(seg.seq, seg, deliver);
    }

    fn push_data(&mut self, seq: u32, seg: Segment<'_>, deliver: &mut dyn FnMut(Chunk<'_>)) {
        if seg.wire_len == 0 {
            return;
        }
        let end = seq.wrapping_add(seg.wire_len);
        if seq_le(end, self.next) {
            return; // retransmission
        }
        if seq_lt(self.next, seq) {
            return self.hold(seq, seg.data, seg.wire_len, deliver);
        }
        let skip = self.next.wrapping_sub(seq) as usize;
        self.emit(
            seg.data.get(skip..).unwrap_or(&[]),
            seg.wire_len as usize - skip,
            deliver,
        );
        self.drain(deliver);
    }

    /// Delivers `data` followed by a gap for bytes the capture cut off.
    fn emit(&mut self, data: &[u8], wire_len: usize, deliver: &mut dyn FnMut(Chunk<'_>)) {
        if !data.is_empty() {
            deliver(Chunk::Data(data));
        }
        let cut = wire_len.saturating_sub(data.len());
        if cut > 0 {
            deliver(Chunk::Gap(cut as u32));
        }
        self.next = self.next.wrapping_add(wire_len as u32);
        self.delivered += wire_len as u64;
    }

    fn hold(&mut self, seq: u32, data: &[u8], wire_len: u32, deliver: &mut dyn FnMut(Chunk<'_>)) {
        let pending = self.pending.get_or_insert_with(Box::default);
        if pending.segments.iter().any(|(s, _)| *s == seq) {
            return;
        }
        let mut bytes = data.to_vec();
        // Bytes the snap length cut are zero-filled; a gap would be more
        // honest but they are rare and the analyzers treat data as opaque
        // beyond the headers they parse.
        bytes.resize(wire_len as usize, 0);
        pending.bytes += bytes.len();
        let at = pending.segments.partition_point(|(s, _)| seq_lt(*s, seq));
        pending.segments.insert(at, (seq, bytes));
        if pending.bytes > MAX_PENDING_BYTES || pending.segments.len() > MAX_PENDING_SEGMENTS {
            self.skip_to_pending(deliver);
        }
    }

    /// Sequence number of the first held segment.
    fn first_pending(&self) -> Option<u32> {
        let pending = self.pending.as_deref()?;
        pending.segments.first().map(|&(seq, _)| seq)
    }

    /// Takes the first held segment out; the hold is freed once empty.
    fn pop_pending(&mut self) -> Option<(u32, Vec<u8>)> {
        let pending = self.pending.as_deref_mut()?;
        let first = (!pending.segments.is_empty()).then(|| pending.segments.remove(0));
        if let Some((_, bytes)) = &first {
            pending.bytes -= bytes.len();
        }
        if pending.segments.is_empty() {
            self.pending = None;
        }
        first
    }

    #[cfg(test)]
    fn pending_bytes(&self) -> usize {
        self.pending.as_deref().map_or(0, |p| p.bytes)
    }

    /// Gives up on the hole before the first held segment.
    fn skip_to_pending(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        if let Some(seq) = self.first_pending() {
            let gap = seq.wrapping_sub(self.next);
            deliver(Chunk::Gap(gap));
            self.delivered += u64::from(gap);
            self.next = seq;
            self.drain(deliver);
        }
    }

    /// Delivers held segments that are now in order.
    fn drain(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(seq) = self.first_pending() {
            if seq_lt(self.next, seq) {
                return;
            }
            let Some((seq, bytes)) = self.pop_pending() else {
                return;
            };
            let end = seq.wrapping_add(bytes.len() as u32);
            if seq_lt(self.next, end) {
                let skip = self.next.wrapping_sub(seq) as usize;
                let tail = bytes.get(skip..).unwrap_or(&[]);
                self.emit(tail, tail.len(), deliver);
            }
        }
    }

    /// End of flow: whatever is still held is delivered after a gap.
    pub fn finish(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while self.pending.is_some() {
            self.skip_to_pending(deliver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Out {
        D(Vec<u8>),
        G(u32),
    }

    fn run(stream: &mut Stream, segs: &[(u32, &[u8])]) -> Vec<Out> {
        let mut out = Vec::new();
        for &(seq, data) in segs {
            let seg = Segment {
                seq,
                syn: false,
                data,
                wire_len: data.len() as u32,
            };
            stream.push(seg, &mut |c| {
                out.push(match c {
                    Chunk::Data(d) => Out::D(d.to_vec()),
                    Chunk::Gap(n) => Out::G(n),
                })
            });
        }
        out
    }

    fn syn(stream: &mut Stream, isn: u32) {
        stream.push(
            Segment {
                seq: isn,
                syn: true,
                data: &[],
                wire_len: 0,
            },
            &mut |_| {},
        );
    }

    #[test]
    fn in_order_and_retransmission() {
        let mut s = Stream::default();
        syn(&mut s, 99);
        let out = run(
            &mut s,
            &[(100, b"abc"), (100, b"abc"), (103, b"de"), (101, b"bcdef")],
        );
        assert_eq!(
            out,
            vec![
                Out::D(b"abc".to_vec()),
                Out::D(b"de".to_vec()),
                Out::D(b"f".to_vec())
            ]
        );
    }

    #[test]
    fn out_of_order_is_placed() {
        let mut s = Stream::default();
        syn(&mut s, 0);
        let out = run(&mut s, &[(1, b"a"), (4, b"d"), (3, b"c"), (2, b"b")]);
        let joined: Vec<u8> = out
            .iter()
            .flat_map(|o| match o {
                Out::D(d) => d.clone(),
                Out::G(_) => panic!("no gap expected"),
            })
            .collect();
        assert_eq!(joined, b"abcd");
    }

    #[test]
    fn unfilled_hole_becomes_a_gap_at_finish() {
        let mut s = Stream::default();
        syn(&mut s, 0);
        let mut out = run(&mut s, &[(1, b"ab"), (10, b"xyz")]);
        s.finish(&mut |c| {
            out.push(match c {
                Chunk::Data(d) => Out::D(d.to_vec()),
                Chunk::Gap(n) => Out::G(n),
            })
        });
        assert_eq!(
            out,
            vec![Out::D(b"ab".to_vec()), Out::G(7), Out::D(b"xyz".to_vec())]
        );
        assert_eq!(s.delivered(), 12);
    }

    #[test]
    fn overflow_skips_the_hole() {
        let mut s = Stream::default();
        syn(&mut s, 0);
        let big = vec![7u8; 1000];
        let segs: Vec<(u32, &[u8])> = (0..70).map(|i| (5000 + i * 1000, big.as_slice())).collect();
        let out = run(&mut s, &segs);
        assert_eq!(out.first(), Some(&Out::G(4999)));
        assert!(s.pending_bytes() <= MAX_PENDING_BYTES);
    }

    #[test]
    fn snap_cut_segment_reports_a_gap() {
        let mut s = Stream::default();
        syn(&mut s, 0);
        let mut out = Vec::new();
        let seg = Segment {
            seq: 1,
            syn: false,
            data: b"head",
            wire_len: 10,
        };
        s.push(seg, &mut |c| out.push(format!("{c:?}")));
        assert_eq!(out, vec!["Data([104, 101, 97, 100])", "Gap(6)"]);
    }

    /// Found by the `stream` fuzz target: a SYN after data used to restart
    /// the stream at its sequence number, so retransmitted bytes were
    /// delivered twice and another connection's bytes were glued on.
    #[test]
    fn late_syn_does_not_move_the_stream() {
        let mut s = Stream::default();
        syn(&mut s, 99);
        let mut out = run(&mut s, &[(100, b"abc")]);
        syn(&mut s, 99);
        out.extend(run(&mut s, &[(100, b"abc"), (103, b"de")]));
        syn(&mut s, 7_000);
        out.extend(run(&mut s, &[(7_001, b"other")]));
        assert_eq!(out, vec![Out::D(b"abc".to_vec()), Out::D(b"de".to_vec())]);
        assert_eq!(s.delivered(), 5);
    }

    #[test]
    fn midstream_start_uses_first_data_segment() {
        let mut s = Stream::default();
        let out = run(&mut s, &[(5000, b"hello"), (5005, b"!")]);
        assert_eq!(out, vec![Out::D(b"hello".to_vec()), Out::D(b"!".to_vec())]);
    }

    use proptest::prelude::*;

    proptest! {
        /// Any permutation of segments (with duplicates) reassembles to the
        /// original bytes when nothing is missing.
        #[test]
        fn reassembles_any_order(perm in Just((0u32..20).collect::<Vec<_>>()).prop_shuffle(), dup in 0usize..20) {
            let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
            let mut order: Vec<u32> = perm.clone();
            order.push(order[dup % order.len()]);
            let mut s = Stream::default();
            syn(&mut s, 0);
            let segs: Vec<(u32, &[u8])> = order.iter().map(|&i| (1 + i * 10, &data[(i * 10) as usize..(i * 10 + 10) as usize])).collect();
            let mut got = Vec::new();
            for o in run(&mut s, &segs) {
                if let Out::D(d) = o { got.extend(d) } else { prop_assert!(false, "gap") }
            }
            prop_assert_eq!(got, data);
        }
    }
}
