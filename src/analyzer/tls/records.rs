//! TLS record framing after the handshake: each record's content type and
//! length, read from the 5-byte headers of one direction's in-order stream
//! however TCP cut it (bodies are skipped, never buffered), and the
//! plaintext length a record of application data carries under the
//! negotiated version and cipher (the AEAD overheads are fixed, as the SSH
//! size model's are: TLS 1.3 adds the inner content type and a 16-byte
//! tag, TLS 1.2 AES-GCM an 8-byte explicit nonce and the tag, TLS 1.2
//! ChaCha20-Poly1305 the tag alone).

use super::ServerHello;

/// Largest record length a conforming peer sends (RFC 8446 5.2: 2^14 +
/// 256; TLS 1.2 allows 2^14 + 2048).
const MAX_RECORD_LEN: u16 = 16_384 + 2_048;
pub const CONTENT_APPLICATION_DATA: u8 = 23;

/// A record header no TLS peer would send: the walk stops.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Desync;

/// Walks record headers across chunks: fixed size, no allocation.
#[derive(Copy, Clone, Debug, Default)]
pub struct RecordWalker {
    header: [u8; 5],
    have: u8,
    /// Body bytes of the current record still to skip.
    skip: u32,
}

impl RecordWalker {
    /// Consumes `data`, calling `on_record(content_type, length)` at each
    /// complete header.
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut on_record: impl FnMut(u8, u16),
    ) -> Result<(), Desync> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = data.len().min(self.skip as usize);
                self.skip -= n as u32;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let at = usize::from(self.have);
            let n = (5 - at).min(data.len());
            if let (Some(dst), Some(src)) = (self.header.get_mut(at..at + n), data.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.have += n as u8;
            data = data.get(n..).unwrap_or_default();
            if self.have < 5 {
                return Ok(());
            }
            self.have = 0;
            let [kind, major, _, hi, lo] = self.header;
            let len = u16::from_be_bytes([hi, lo]);
            if major != 3 || !(20..=24).contains(&kind) || len > MAX_RECORD_LEN {
                return Err(Desync);
            }
            self.skip = u32::from(len);
            on_record(kind, len);
        }
        Ok(())
    }
}

/// How a record's length relates to the plaintext it carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Overhead {
    /// AEAD: the plaintext is the record length less these bytes (exact,
    /// TLS 1.3 padding aside, which common stacks do not add).
    Exact(u16),
    /// CBC with a MAC, or a cipher we do not know: the length is only
    /// approximately the plaintext's (plaintext ≈ length − this).
    Approximate(u16),
}

impl Overhead {
    /// The negotiated record protection, from the ServerHello.
    pub fn of(server: &ServerHello) -> Overhead {
        if server.version() >= 0x0304 {
            // Inner content type + AEAD tag (CCM_8's tag is 8 bytes).
            return match server.cipher {
                0x1305 => Overhead::Exact(9),
                _ => Overhead::Exact(17),
            };
        }
        match server.cipher {
            // ChaCha20-Poly1305 (RFC 7905): nonce implicit.
            0xcca8..=0xccae => Overhead::Exact(16),
            // AES-GCM (RFC 5288, 5289) and AES-CCM (RFC 6655, 7251):
            // explicit nonce + tag.
            0x009c..=0x00a7 | 0xc02b..=0xc032 | 0xc09c..=0xc0a3 | 0xc0ac..=0xc0af => {
                Overhead::Exact(24)
            }
            // CBC: explicit IV (16) + HMAC-SHA1 (20) + at least 1 byte of
            // padding; the padding hides up to 15 bytes more.
            _ => Overhead::Approximate(37),
        }
    }

    /// The plaintext estimate of a record of `len` bytes.
    pub fn plaintext(self, len: u16) -> u32 {
        let cut = match self {
            Overhead::Exact(n) | Overhead::Approximate(n) => n,
        };
        u32::from(len.saturating_sub(cut))
    }

    pub fn is_exact(self) -> bool {
        matches!(self, Overhead::Exact(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, len: u16) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.resize(5 + usize::from(len), 0xab);
        r
    }

    #[test]
    fn walks_records_cut_anywhere() {
        let mut stream = record(23, 53);
        stream.extend(record(23, 1));
        stream.extend(record(21, 19));
        stream.extend(record(23, 16_401));
        for cut in [1, 2, 4, 5, 6, 57, 58, 1000] {
            let mut w = RecordWalker::default();
            let mut seen = Vec::new();
            for piece in stream.chunks(cut) {
                w.push(piece, |k, l| seen.push((k, l))).unwrap();
            }
            assert_eq!(
                seen,
                [(23, 53), (23, 1), (21, 19), (23, 16_401)],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn stops_on_a_header_no_peer_sends() {
        let mut w = RecordWalker::default();
        assert_eq!(w.push(b"SSH-2.0-x\r\n", |_, _| {}), Err(Desync));
        let mut w = RecordWalker::default();
        assert_eq!(w.push(&[23, 3, 3, 0x48, 1], |_, _| {}), Err(Desync));
    }

    #[test]
    fn overheads_by_version_and_cipher() {
        let hello = |version: Option<u16>, cipher| ServerHello {
            legacy_version: 0x0303,
            cipher,
            selected_version: version,
            ..ServerHello::default()
        };
        let tls13 = Overhead::of(&hello(Some(0x0304), 0x1301));
        assert_eq!(tls13.plaintext(53), 36);
        assert!(tls13.is_exact());
        assert_eq!(Overhead::of(&hello(None, 0xc02f)).plaintext(60), 36);
        assert_eq!(Overhead::of(&hello(None, 0xcca8)).plaintext(52), 36);
        let cbc = Overhead::of(&hello(None, 0xc013));
        assert!(!cbc.is_exact());
        assert_eq!(cbc.plaintext(10), 0);
    }
}
