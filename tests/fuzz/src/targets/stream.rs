//! `stream`: one TCP direction through [`egresswatch::flow::stream::Stream`].
//!
//! Input: a flags byte (bit 0: the SYN was seen, so the stream is started
//! at the first segment's sequence number, as the flow tracker does), then
//! up to [`MAX_SEGMENTS`] segments, each a flags byte (bit 0: SYN), a
//! sequence number (big-endian u32, added to [`BASE`] so that wraparound is
//! near), a captured length and a number of bytes the capture cut (both
//! big-endian u16), then the captured bytes.
//!
//! Checked: every delivered byte is a byte some segment carried at that
//! sequence number (or a zero the capture cut), chunks are never empty, and `delivered()`
//! counts exactly the data and gaps handed out.

use crate::input::{Input, Output};
use egresswatch::analyzer::Chunk;
use egresswatch::flow::stream::{Segment, Stream};

pub const MAX_SEGMENTS: usize = 128;
pub const BASE: u32 = 0xffff_f000;

/// One parsed segment.
#[derive(Clone, Copy, Debug)]
pub struct Seg<'a> {
    pub syn: bool,
    pub seq: u32,
    pub data: &'a [u8],
    pub wire_len: u32,
}

impl Seg<'_> {
    /// Sequence number of the first data byte (a SYN takes one).
    fn data_seq(&self) -> u32 {
        self.seq.wrapping_add(u32::from(self.syn))
    }

    /// Whether the segment carried `byte` at `seq` (a cut byte is zero
    /// when held out of order, or reported as a gap in order).
    fn carried(&self, seq: u32, byte: u8) -> bool {
        let at = seq.wrapping_sub(self.data_seq());
        if at >= self.wire_len {
            return false;
        }
        match self.data.get(at as usize) {
            Some(&b) => b == byte,
            None => byte == 0,
        }
    }
}

pub fn parse(data: &[u8]) -> (bool, Vec<Seg<'_>>) {
    let mut input = Input::new(data);
    let started = input.u8() & 1 != 0;
    let mut segs = Vec::new();
    while !input.is_empty() && segs.len() < MAX_SEGMENTS {
        let syn = input.u8() & 1 != 0;
        let seq = BASE.wrapping_add(input.u32());
        let caplen = input.u16();
        let cut = input.u16();
        let data = input.bytes(usize::from(caplen));
        // An IP payload is at most 65535 bytes on the wire.
        let wire_len = (data.len() as u32 + u32::from(cut)).min(65_535);
        segs.push(Seg {
            syn,
            seq,
            data,
            wire_len,
        });
    }
    (started, segs)
}

/// Writes what [`parse`] reads, for seeds: `(syn, seq, payload)`, with
/// sequence numbers relative to [`BASE`].
pub fn encode(started: bool, segs: &[(bool, u32, &[u8])]) -> Vec<u8> {
    let mut out = Output::default();
    out.u8(u8::from(started));
    for &(syn, seq, data) in segs.iter().take(MAX_SEGMENTS) {
        let data = &data[..data.len().min(usize::from(u16::MAX))];
        out.u8(u8::from(syn))
            .u32(seq.wrapping_sub(BASE))
            .u16(data.len() as u16)
            .u16(0)
            .bytes(data);
    }
    out.0
}

pub fn run(data: &[u8]) {
    let (started, segs) = parse(data);
    let mut stream = Stream::default();
    let mut out: Vec<(Option<Vec<u8>>, u32)> = Vec::new();
    let mut collect = |c: Chunk<'_>| match c {
        Chunk::Data(d) => out.push((Some(d.to_vec()), d.len() as u32)),
        Chunk::Gap(n) => out.push((None, n)),
    };
    // Where the stream begins: where it was started, else the first
    // segment with payload; a SYN moves it as long as nothing was
    // delivered (a later SYN is a retransmission).
    let mut origin = None;
    if let (true, Some(first)) = (started, segs.first()) {
        stream.start_at(first.data_seq());
        origin = Some(first.data_seq());
    }
    for s in &segs {
        if s.syn && stream.delivered() == 0 {
            origin = Some(s.data_seq());
        } else if origin.is_none() && s.wire_len > 0 {
            origin = Some(s.seq);
        }
        let seg = Segment {
            seq: s.seq,
            syn: s.syn,
            data: s.data,
            wire_len: s.wire_len,
        };
        stream.push(seg, &mut collect);
    }
    stream.finish(&mut collect);
    check(origin, &segs, &out, stream.delivered());
}

fn check(origin: Option<u32>, segs: &[Seg<'_>], out: &[(Option<Vec<u8>>, u32)], delivered: u64) {
    let Some(origin) = origin else {
        assert!(out.is_empty(), "output from no segment");
        return;
    };
    let mut pos: u64 = 0;
    for (data, len) in out {
        assert!(*len > 0, "empty chunk");
        if let Some(data) = data {
            for (i, &b) in data.iter().enumerate() {
                let seq = origin.wrapping_add((pos + i as u64) as u32);
                assert!(
                    segs.iter().any(|s| s.carried(seq, b)),
                    "byte {b:#04x} at stream offset {} (seq {seq}) was never sent",
                    pos + i as u64
                );
            }
        }
        pos += u64::from(*len);
    }
    assert_eq!(pos, delivered, "delivered() disagrees with the chunks");
}
