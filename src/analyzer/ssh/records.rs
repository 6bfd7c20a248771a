//! SSH binary packet framing on an in-order byte stream (RFC 4253 section
//! 6): clear-text packets before `SSH_MSG_NEWKEYS` (message code and, for
//! KEXINIT, the payload), and afterwards, when the length field is in clear
//! (AES-GCM, `-etm` MACs), the size of every encrypted record regardless of
//! how TCP cut or merged them.

/// Largest packet we believe (OpenSSH's limit is 256 KiB).
pub const MAX_PACKET: u32 = 256 * 1024;

/// Largest payload we buffer (only KEXINIT is buffered).
const MAX_KEPT: u32 = 64 * 1024;

/// One clear-text packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub code: u8,
    /// Bytes on the wire (length field included).
    pub wire_len: u32,
    /// The payload (message code first) when it was asked to be kept.
    pub payload: Option<Vec<u8>>,
}

/// A packet header no SSH implementation would send.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Desync;

/// Frames clear-text binary packets; keeps the payloads of the message codes
/// `keep` accepts.
#[derive(Debug, Default)]
pub struct Framer {
    header: [u8; 6],
    header_len: usize,
    /// Bytes of the current packet after its 6-byte header still to come.
    remaining: u32,
    payload: Option<Vec<u8>>,
    payload_left: u32,
    dead: bool,
}

impl Framer {
    /// Consumes bytes of `data` up to the end of the next complete packet.
    /// Returns the bytes used and the packet if one was completed; stop
    /// feeding after a `Desync`.
    pub fn next(
        &mut self,
        data: &[u8],
        keep: impl Fn(u8) -> bool,
    ) -> (usize, Result<Option<Frame>, Desync>) {
        if self.dead {
            return (data.len(), Err(Desync));
        }
        let mut used = 0;
        if self.header_len < self.header.len() {
            let want = self.header.len() - self.header_len;
            let take = want.min(data.len());
            let src = data.get(..take).unwrap_or_default();
            if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + take) {
                dst.copy_from_slice(src);
            }
            self.header_len += take;
            used += take;
            if self.header_len < self.header.len() {
                return (used, Ok(None));
            }
            if let Err(e) = self.start_packet(&keep) {
                self.dead = true;
                return (data.len(), Err(e));
            }
        }
        let rest = data.get(used..).unwrap_or_default();
        let take = (self.remaining as usize).min(rest.len());
        if let Some(buf) = self.payload.as_mut() {
            let keep_n = (self.payload_left as usize).min(take);
            buf.extend_from_slice(rest.get(..keep_n).unwrap_or_default());
            self.payload_left -= keep_n as u32;
        }
        self.remaining -= take as u32;
        used += take;
        if self.remaining > 0 {
            return (used, Ok(None));
        }
        let frame = Frame {
            code: self.header[5],
            wire_len: self.packet_len() + 4,
            payload: self.payload.take(),
        };
        self.header_len = 0;
        (used, Ok(Some(frame)))
    }

    fn packet_len(&self) -> u32 {
        u32::from_be_bytes([
            self.header[0],
            self.header[1],
            self.header[2],
            self.header[3],
        ])
    }

    fn start_packet(&mut self, keep: &impl Fn(u8) -> bool) -> Result<(), Desync> {
        let len = self.packet_len();
        let pad = u32::from(self.header[4]);
        // padding >= 4, message code present, sane total.
        if !(6..=MAX_PACKET).contains(&len) || pad < 4 || pad + 2 > len {
            return Err(Desync);
        }
        self.remaining = len - 2;
        let payload_len = len - pad - 1;
        self.payload = None;
        if keep(self.header[5]) && payload_len <= MAX_KEPT {
            let mut buf = Vec::with_capacity(payload_len as usize);
            buf.push(self.header[5]);
            self.payload = Some(buf);
            self.payload_left = payload_len - 1;
        }
        Ok(())
    }
}

/// Walks encrypted records whose length field is in clear: each record is
/// the length field, `length` encrypted bytes and the tag.
#[derive(Debug)]
pub struct Walker {
    tag: u32,
    block: u32,
    header: [u8; 4],
    header_len: usize,
    remaining: u32,
    current: u32,
}

impl Walker {
    pub fn new(tag: u32, block: u32) -> Walker {
        Walker {
            tag,
            block: block.max(1),
            header: [0; 4],
            header_len: 0,
            remaining: 0,
            current: 0,
        }
    }

    /// Feeds in-order bytes; calls `record` with the size of each record
    /// that ends inside `data`.
    pub fn push(&mut self, mut data: &[u8], mut record: impl FnMut(u32)) -> Result<(), Desync> {
        while !data.is_empty() {
            if self.remaining == 0 {
                let take = (4 - self.header_len).min(data.len());
                if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + take) {
                    dst.copy_from_slice(data.get(..take).unwrap_or_default());
                }
                self.header_len += take;
                data = data.get(take..).unwrap_or_default();
                if self.header_len < 4 {
                    return Ok(());
                }
                let len = u32::from_be_bytes(self.header);
                if len < self.block || len > MAX_PACKET || !len.is_multiple_of(self.block) {
                    return Err(Desync);
                }
                self.header_len = 0;
                self.current = len + 4 + self.tag;
                self.remaining = len + self.tag;
            }
            let take = (self.remaining as usize).min(data.len());
            self.remaining -= take as u32;
            data = data.get(take..).unwrap_or_default();
            if self.remaining == 0 {
                record(self.current);
            }
        }
        Ok(())
    }

    /// Whether a record has been started but not finished.
    pub fn mid_record(&self) -> bool {
        self.header_len > 0 || self.remaining > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::ssh::kex::tests::{hex, OPENSSH_CLIENT};

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let (used, frame) = f.next(rest, |c| c == 20);
                rest = &rest[used..];
                if let Some(frame) = frame.unwrap() {
                    out.push(frame);
                }
            }
        }
        out
    }

    /// NEWKEYS as OpenSSH sends it: length 12, padding 10.
    const NEWKEYS: [u8; 16] = [0, 0, 0, 12, 10, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn kexinit_spanning_segments_and_sharing_one() {
        let kexinit = hex(OPENSSH_CLIENT);
        let mut stream = kexinit.clone();
        stream.extend_from_slice(&NEWKEYS);
        // Cut everywhere: every split gives the same two frames.
        for cut in [1, 5, 6, 7, 100, kexinit.len() - 1, kexinit.len() + 3] {
            let got = frames(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(got.len(), 2, "cut {cut}");
            assert_eq!(got[0].code, 20);
            assert_eq!(got[0].wire_len as usize, kexinit.len());
            let payload = got[0].payload.as_ref().unwrap();
            assert!(crate::analyzer::ssh::kex::parse(payload).is_ok());
            assert_eq!(
                (got[1].code, got[1].wire_len, got[1].payload.clone()),
                (21, 16, None)
            );
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytes).len(), 2);
    }

    #[test]
    fn framer_rejects_garbage() {
        for bad in [
            &[0u8, 0, 0, 0, 4, 20][..],       // zero length
            &[0, 0, 0, 12, 2, 20],            // padding < 4
            &[0, 0, 0, 12, 12, 20],           // no room for a code
            &[0x7f, 0xff, 0xff, 0xff, 4, 20], // huge
        ] {
            let mut f = Framer::default();
            assert_eq!(f.next(bad, |_| true).1, Err(Desync));
            assert_eq!(f.next(b"more", |_| true).1, Err(Desync));
        }
    }

    fn record(len: u32, tag: u32) -> Vec<u8> {
        let mut r = len.to_be_bytes().to_vec();
        r.resize((4 + len + tag) as usize, 0xab);
        r
    }

    #[test]
    fn walker_two_records_per_segment_and_one_over_three() {
        // AES-GCM: tag 16, lengths multiples of 16.
        let a = record(16, 16); // keystroke: 36 bytes
        let b = record(32, 16); // 52 bytes
        let c = record(1424, 16); // 1444 bytes, split over three segments
        let mut w = Walker::new(16, 16);
        let mut seen = Vec::new();
        let seg1: Vec<u8> = [a.clone(), b.clone()].concat();
        w.push(&seg1, |s| seen.push(s)).unwrap();
        assert_eq!(seen, vec![36, 52]);
        assert!(!w.mid_record());
        w.push(&c[..2], |s| seen.push(s)).unwrap();
        assert!(w.mid_record());
        w.push(&c[2..700], |s| seen.push(s)).unwrap();
        w.push(&c[700..], |s| seen.push(s)).unwrap();
        assert_eq!(seen, vec![36, 52, 1444]);
    }

    #[test]
    fn walker_detects_desync() {
        let mut w = Walker::new(32, 16);
        assert_eq!(w.push(&[0, 0, 0, 17], |_| {}), Err(Desync)); // not a block multiple
        let mut w = Walker::new(32, 16);
        assert_eq!(w.push(&[0xff, 0, 0, 16], |_| {}), Err(Desync)); // too long
    }
}
