//! JA4, the TLS client fingerprint of FoxIO (BSD-3-Clause, "JA4: TLS
//! Client Fingerprinting"; the rest of JA4+ is under another licence and
//! not implemented here), written from its published technical
//! description:
//!
//! `a_b_c` where `a` is `t` (TLS over TCP), the two-character version
//! (highest supported_versions entry, else the hello's legacy version),
//! `d` with an SNI extension or `i` without, the cipher and extension
//! counts (two digits, at most 99), and the first and last character of
//! the first ALPN value; `b` is the first 12 hex digits of the SHA-256 of
//! the sorted ciphers (4-digit lower-case hex, comma-separated); `c` the
//! same of the sorted extensions without SNI and ALPN, then `_` and the
//! signature algorithms in the order sent. GREASE values (RFC 8701) are
//! left out everywhere; an empty list hashes to `000000000000`.

use super::{ext, is_grease, ClientHello};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The JA4 fingerprint of a ClientHello, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub fn ja4(hello: &ClientHello) -> String {
    let ciphers = sorted_no_grease(hello.ciphers());
    let exts: Vec<u16> = hello
        .extensions()
        .iter()
        .copied()
        .filter(|&e| !is_grease(e))
        .collect();
    let mut out = String::with_capacity(36);
    out.push('t');
    out.push_str(version_code(hello.max_version()));
    out.push(if exts.contains(&ext::SERVER_NAME) {
        'd'
    } else {
        'i'
    });
    let _ = write!(out, "{:02}{:02}", ciphers.len().min(99), exts.len().min(99));
    let [first, last] = alpn_chars(hello.alpn_first());
    out.push(first);
    out.push(last);
    out.push('_');
    out.push_str(&truncated_sha256(&hex_list(&ciphers)));
    out.push('_');
    let mut sorted_exts: Vec<u16> = exts
        .into_iter()
        .filter(|&e| e != ext::SERVER_NAME && e != ext::ALPN)
        .collect();
    sorted_exts.sort_unstable();
    let mut c = hex_list(&sorted_exts);
    let sigs: Vec<u16> = hello
        .sig_algs()
        .iter()
        .copied()
        .filter(|&s| !is_grease(s))
        .collect();
    if !sigs.is_empty() {
        c.push('_');
        c.push_str(&hex_list(&sigs));
    }
    out.push_str(&truncated_sha256(&c));
    out
}

/// JA4's two characters for a protocol version.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last byte of the first ALPN value: as characters when both
/// are ASCII alphanumerics, else the first hex digit of the first byte
/// and the last hex digit of the last; `00` without a value.
fn alpn_chars(first: Option<&[u8]>) -> [char; 2] {
    let Some((&a, &z)) = first.and_then(|v| Some((v.first()?, v.last()?))) else {
        return ['0', '0'];
    };
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        [char::from(a), char::from(z)]
    } else {
        [hex_digit(a >> 4), hex_digit(z & 0xf)]
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

fn sorted_no_grease(values: &[u16]) -> Vec<u16> {
    let mut v: Vec<u16> = values.iter().copied().filter(|&x| !is_grease(x)).collect();
    v.sort_unstable();
    v
}

/// `002f,0035,...`: 4-digit lower-case hex, comma-separated.
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

/// The first 12 hex digits of the SHA-256 of `s`; `000000000000` for an
/// empty `s`.
fn truncated_sha256(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(12);
    for b in digest.iter().take(6) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::tls::ClientHelloFields;

    fn ja4_of(h: &ClientHelloFields) -> String {
        ja4(&h.clone().into())
    }

    /// The worked example of FoxIO's JA4 description.
    fn spec_example() -> ClientHelloFields {
        ClientHelloFields {
            legacy_version: 0x0303,
            ciphers: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            supported_versions: vec![0x0304, 0x0303],
            sig_algs: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            alpn_first: Some(b"h2".to_vec()),
            ..ClientHelloFields::default()
        }
    }

    #[test]
    fn spec_worked_example() {
        assert_eq!(
            ja4_of(&spec_example()),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn grease_is_ignored_everywhere() {
        let mut h = spec_example();
        h.ciphers.insert(0, 0x0a0a);
        h.extensions.insert(0, 0x1a1a);
        h.extensions.push(0xfafa);
        h.sig_algs.insert(2, 0x2a2a);
        h.supported_versions.insert(0, 0x3a3a);
        assert_eq!(ja4_of(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn without_signature_algorithms_no_underscore() {
        // The description's second example: the same extensions, no
        // signature algorithms.
        let mut h = spec_example();
        h.sig_algs.clear();
        assert!(ja4_of(&h).ends_with("_6d807ffa2a79"), "{}", ja4_of(&h));
    }

    #[test]
    fn empty_lists_and_no_sni_or_alpn() {
        let h = ClientHelloFields {
            legacy_version: 0x0301,
            ..ClientHelloFields::default()
        };
        assert_eq!(ja4_of(&h), "t10i000000_000000000000_000000000000");
        let h = ClientHelloFields {
            legacy_version: 0x0303,
            extensions: vec![0x0000, 0x0010],
            alpn_first: Some(b"http/1.1".to_vec()),
            ..ClientHelloFields::default()
        };
        assert_eq!(ja4_of(&h), "t12d0002h1_000000000000_000000000000");
    }

    #[test]
    fn counts_stop_at_99() {
        let h = ClientHelloFields {
            legacy_version: 0x0303,
            ciphers: (1..200).collect(),
            extensions: (1..200).collect(),
            ..ClientHelloFields::default()
        };
        assert!(ja4_of(&h).starts_with("t12i999900_"), "{}", ja4_of(&h));
    }

    #[test]
    fn alpn_characters_follow_the_description() {
        let cases: [(&[u8], &str); 10] = [
            (b"h2", "h2"),
            (b"http/1.1", "h1"),
            (b"b", "bb"),
            (&[0xab], "ab"),
            (&[0x20], "20"),
            (&[0xab, 0xcd], "ad"),
            (&[0x20, 0x61], "21"),
            (&[0x30, 0xab], "3b"),
            (&[0x61, 0x20], "60"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ];
        for (alpn, want) in cases {
            let got: String = alpn_chars(Some(alpn)).iter().collect();
            assert_eq!(got, want, "{alpn:02x?}");
        }
        assert_eq!(alpn_chars(Some(b"")), ['0', '0']);
        assert_eq!(alpn_chars(None), ['0', '0']);
    }

    #[test]
    fn version_codes() {
        let got: Vec<&str> = [0x0304, 0x0300, 0x0002, 0xfefd, 0x7f1c, 0x0305]
            .into_iter()
            .map(version_code)
            .collect();
        assert_eq!(got, ["13", "s3", "s2", "d2", "00", "00"]);
    }
}
