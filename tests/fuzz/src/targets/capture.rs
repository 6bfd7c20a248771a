//! `capture`: a capture file through the pcap/pcapng reader,
//! [`egresswatch::source::file::CaptureReader`], and again through
//! [`ReplaySource`] fed by a reader that returns a few bytes per call.
//!
//! Input: the file's bytes.
//!
//! Checked: no record is longer than [`MAX_RECORD`] or than the input; the
//! number of frames is bounded by the input's size (each record takes at
//! least 12 bytes: no loop without progress); and both reads, with a
//! 64-byte starting buffer and short reads against the default buffer,
//! give the same frames and the same error.

use egresswatch::source::file::{CaptureReader, ReplaySource, MAX_RECORD};
use egresswatch::source::{LinkType, PacketSource};
use egresswatch::time::Timestamp;
use std::io::Read;

type Owned = (Timestamp, LinkType, Vec<u8>, u32);

pub fn run(data: &[u8]) {
    let whole = match CaptureReader::with_buffer("fuzz", data, vec![0; 64]) {
        Ok(mut reader) => read_all(&mut reader, data.len()),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let trickle = Trickle {
        data: data.to_vec(),
        at: 0,
        calls: 0,
    };
    let mut replay = ReplaySource::from_readers([("fuzz".to_string(), Box::new(trickle) as _)]);
    let short = read_all(&mut replay, data.len());
    // The message may quote fewer header bytes when fewer have arrived.
    assert_eq!(
        whole.1.is_some(),
        short.1.is_some(),
        "the error depends on how the bytes arrive"
    );
    assert!(
        whole.0 == short.0,
        "the frames depend on how the bytes arrive"
    );
    assert!(
        replay.next_frame().is_ok_and(|f| f.is_none()),
        "a finished source goes on"
    );
}

fn read_all(source: &mut impl PacketSource, len: usize) -> (Vec<Owned>, Option<String>) {
    let mut frames = Vec::new();
    loop {
        match source.next_frame() {
            Ok(Some(f)) => {
                assert!(f.data.len() <= MAX_RECORD, "record beyond the limit");
                assert!(f.data.len() <= len, "record longer than the input");
                frames.push((f.ts, f.link, f.data.to_vec(), f.orig_len));
                assert!(
                    frames.len() <= len / 12,
                    "more records than the input can hold"
                );
            }
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e.to_string())),
        }
    }
}

/// Hands out the input 1 to 7 bytes per read, as a pipe might.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    calls: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        let left = &self.data[self.at..];
        let n = (self.calls % 7 + 1).min(buf.len()).min(left.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Ok(n)
    }
}
