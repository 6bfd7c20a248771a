//! DNS messages (RFC 1035) as a stub resolver and a recursive server send
//! them: one question, recursion desired, an EDNS0 OPT record (RFC 6891)
//! advertising a 1232-byte UDP size, answers pointing back at the question
//! name with a compression pointer.

use super::{put_u16, put_u32};
use std::net::IpAddr;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_HTTPS: u16 = 65;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;

/// Appends `name` as length-prefixed labels ending with the root label.
/// Labels longer than 63 bytes are cut to 63.
pub fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() {
            continue;
        }
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

fn put_opt(out: &mut Vec<u8>) {
    out.push(0); // root name
    put_u16(out, TYPE_OPT);
    put_u16(out, 1232); // requestor's UDP payload size
    put_u32(out, 0); // extended rcode, version, flags
    put_u16(out, 0); // no options
}

fn put_header(out: &mut Vec<u8>, txid: u16, flags: u16, answers: u16) {
    put_u16(out, txid);
    put_u16(out, flags);
    put_u16(out, 1); // questions
    put_u16(out, answers);
    put_u16(out, 0); // authority
    put_u16(out, 1); // additional: the OPT record
}

/// A recursive query for `name` / `qtype`.
pub fn query(out: &mut Vec<u8>, txid: u16, name: &str, qtype: u16) {
    put_header(out, txid, 0x0100, 0);
    put_name(out, name);
    put_u16(out, qtype);
    put_u16(out, CLASS_IN);
    put_opt(out);
}

/// The answer to [`query`]: every address in `answers` as an A or AAAA
/// record (by its family) with `ttl`.
pub fn response(
    out: &mut Vec<u8>,
    txid: u16,
    name: &str,
    qtype: u16,
    answers: &[IpAddr],
    ttl: u32,
) {
    put_header(out, txid, 0x8180, answers.len() as u16);
    put_name(out, name);
    put_u16(out, qtype);
    put_u16(out, CLASS_IN);
    for a in answers {
        put_u16(out, 0xC00C); // pointer to the question name at offset 12
        match a {
            IpAddr::V4(v4) => {
                put_u16(out, TYPE_A);
                put_u16(out, CLASS_IN);
                put_u32(out, ttl);
                put_u16(out, 4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                put_u16(out, TYPE_AAAA);
                put_u16(out, CLASS_IN);
                put_u32(out, ttl);
                put_u16(out, 16);
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    put_opt(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_matches_dig_layout() {
        let mut q = Vec::new();
        query(&mut q, 0x1234, "pypi.org", TYPE_A);
        let expected: Vec<u8> = [
            &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1][..],
            &[4, b'p', b'y', b'p', b'i', 3, b'o', b'r', b'g', 0],
            &[0, 1, 0, 1],
            &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(q, expected);
    }

    #[test]
    fn response_carries_typed_answers() {
        let mut r = Vec::new();
        let answers = [
            "10.20.0.15".parse().unwrap(),
            "fd00:20::15".parse().unwrap(),
        ];
        response(&mut r, 7, "a.b", TYPE_A, &answers, 300);
        assert_eq!(&r[..4], &[0, 7, 0x81, 0x80]);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 2);
        // question: 1 a 1 b 0 + type + class = 9 bytes from offset 12
        let first = &r[21..];
        assert_eq!(&first[..12], &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
        assert_eq!(&first[12..16], &[10, 20, 0, 15]);
        let second = &first[16..];
        assert_eq!(&second[..4], &[0xc0, 0x0c, 0, 28]);
        assert_eq!(second.len(), 12 + 16 + 11);
    }
}
