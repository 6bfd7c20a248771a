//! TLS 1.3 handshakes as they appear on the wire (RFC 8446): a ClientHello
//! with SNI and ALPN padded to a 512-byte handshake (the 517-byte record
//! browsers and BoringSSL send), a server flight of ServerHello,
//! ChangeCipherSpec and encrypted records, and application-data records.

use super::super::rng::Rng;
use super::put_u16;

const HANDSHAKE: u8 = 0x16;
const CHANGE_CIPHER_SPEC: u8 = 0x14;
const APPLICATION_DATA: u8 = 0x17;
/// Largest TLS 1.3 record on the wire: 16 KiB plaintext + type byte +
/// 16-byte tag + 5-byte header.
pub const MAX_RECORD: usize = 16_384 + 17 + 5;
/// Smallest application-data record: header, content type byte, tag.
pub const MIN_RECORD: usize = 5 + 1 + 16;

fn put_u24(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

/// Appends an extension: type, 16-bit length, body.
fn ext(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
    put_u16(out, ty);
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// A ClientHello record offering TLS 1.3 and 1.2, with the server name
/// `sni` and the ALPN protocols `alpn` (e.g. `["h2", "http/1.1"]`).
pub fn client_hello(out: &mut Vec<u8>, rng: &mut Rng, sni: &str, alpn: &[&str]) {
    const SUITES: [u16; 15] = [
        0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
        0x009C, 0x009D, 0x002F, 0x0035,
    ];
    let mut exts = Vec::with_capacity(512);
    // server_name: list of one host_name entry
    let host = sni.as_bytes();
    let mut sn = Vec::with_capacity(host.len() + 5);
    put_u16(&mut sn, (host.len() + 3) as u16);
    sn.push(0);
    put_u16(&mut sn, host.len() as u16);
    sn.extend_from_slice(host);
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(&mut exts, 0xFF01, &[0]); // renegotiation_info
    ext(
        &mut exts,
        0x000A,
        &[0, 6, 0x00, 0x1D, 0x00, 0x17, 0x00, 0x18],
    ); // x25519, P-256, P-384
    ext(&mut exts, 0x000B, &[1, 0]); // ec_point_formats: uncompressed
    ext(&mut exts, 0x0023, &[]); // session_ticket
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut body = Vec::with_capacity(list.len() + 2);
        put_u16(&mut body, list.len() as u16);
        body.extend_from_slice(&list);
        ext(&mut exts, 0x0010, &body);
    }
    ext(&mut exts, 0x0005, &[1, 0, 0, 0, 0]); // status_request (OCSP)
    let sigs: [u16; 8] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];
    let mut sig_body = Vec::with_capacity(18);
    put_u16(&mut sig_body, 16);
    for s in sigs {
        put_u16(&mut sig_body, s);
    }
    ext(&mut exts, 0x000D, &sig_body);
    ext(&mut exts, 0x0012, &[]); // signed_certificate_timestamp
    let mut ks = Vec::with_capacity(38);
    put_u16(&mut ks, 36);
    put_u16(&mut ks, 0x001D);
    put_u16(&mut ks, 32);
    rng.extend(&mut ks, 32);
    ext(&mut exts, 0x0033, &ks); // key_share: x25519
    ext(&mut exts, 0x002D, &[1, 1]); // psk_key_exchange_modes: psk_dhe_ke
    ext(&mut exts, 0x002B, &[4, 0x03, 0x04, 0x03, 0x03]); // supported_versions

    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(&[0x03, 0x03]); // legacy_version
    rng.extend(&mut body, 32); // random
    body.push(32);
    rng.extend(&mut body, 32); // legacy_session_id
    put_u16(&mut body, (SUITES.len() * 2) as u16);
    for s in SUITES {
        put_u16(&mut body, s);
    }
    body.extend_from_slice(&[1, 0]); // compression: null
                                     // Pad the handshake message to 512 bytes (RFC 7685), as BoringSSL does
                                     // for ClientHellos between 256 and 511 bytes.
    let unpadded = 4 + body.len() + 2 + exts.len();
    if unpadded + 4 <= 512 {
        let pad = 512 - unpadded - 4;
        put_u16(&mut exts, 0x0015);
        put_u16(&mut exts, pad as u16);
        exts.resize(exts.len() + pad, 0);
    }
    put_u16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);

    out.push(HANDSHAKE);
    out.extend_from_slice(&[0x03, 0x01]);
    put_u16(out, (body.len() + 4) as u16);
    out.push(1); // client_hello
    put_u24(out, body.len());
    out.extend_from_slice(&body);
}

/// The server's first flight: ServerHello (TLS_AES_128_GCM_SHA256, x25519
/// key share), a ChangeCipherSpec, then `encrypted_len` bytes of
/// application-data records (EncryptedExtensions, Certificate,
/// CertificateVerify and Finished, which are encrypted in TLS 1.3).
pub fn server_flight(out: &mut Vec<u8>, rng: &mut Rng, encrypted_len: usize) {
    server_hello_ccs(out, rng);
    app_data(out, rng, encrypted_len);
}

/// ServerHello and ChangeCipherSpec: the clear-text start of the server
/// flight.
pub fn server_hello_ccs(out: &mut Vec<u8>, rng: &mut Rng) {
    let mut body = Vec::with_capacity(122);
    body.extend_from_slice(&[0x03, 0x03]);
    rng.extend(&mut body, 32);
    body.push(32);
    rng.extend(&mut body, 32);
    put_u16(&mut body, 0x1301);
    body.push(0);
    let mut exts = Vec::with_capacity(46);
    ext(&mut exts, 0x002B, &[0x03, 0x04]);
    let mut ks = Vec::with_capacity(36);
    put_u16(&mut ks, 0x001D);
    put_u16(&mut ks, 32);
    rng.extend(&mut ks, 32);
    ext(&mut exts, 0x0033, &ks);
    put_u16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    out.push(HANDSHAKE);
    out.extend_from_slice(&[0x03, 0x03]);
    put_u16(out, (body.len() + 4) as u16);
    out.push(2); // server_hello
    put_u24(out, body.len());
    out.extend_from_slice(&body);
    out.extend_from_slice(&[CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01]);
}

/// Record sizes for `total` bytes of application data: as few records as
/// fit, evenly sized, none shorter than [`MIN_RECORD`].
pub fn record_layout(total: usize) -> (usize, usize, usize) {
    let total = total.max(MIN_RECORD);
    let count = total.div_ceil(MAX_RECORD);
    (count, total / count, total % count)
}

/// The 5-byte header of application-data record `index` of a `total`-byte
/// run laid out by [`record_layout`], and that record's length.
pub fn record_header(total: usize, index: usize) -> ([u8; 5], usize) {
    let (_, base, extra) = record_layout(total);
    let len = if index < extra { base + 1 } else { base };
    let body = (len - 5) as u16;
    let b = body.to_be_bytes();
    ([APPLICATION_DATA, 0x03, 0x03, b[0], b[1]], len)
}

/// Appends `total` bytes (at least [`MIN_RECORD`]) of application-data
/// records with random (encrypted-looking) bodies.
pub fn app_data(out: &mut Vec<u8>, rng: &mut Rng, total: usize) {
    let (count, _, _) = record_layout(total);
    for i in 0..count {
        let (header, len) = record_header(total, i);
        out.extend_from_slice(&header);
        rng.extend(out, len - 5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::rng::Rng;

    #[test]
    fn client_hello_is_a_517_byte_record_with_sni_and_alpn() {
        let mut out = Vec::new();
        client_hello(
            &mut out,
            &mut Rng::new(1),
            "pypi.mirror.internal",
            &["h2", "http/1.1"],
        );
        assert_eq!(out.len(), 517);
        assert_eq!(&out[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(u16::from_be_bytes([out[3], out[4]]) as usize, out.len() - 5);
        assert_eq!(out[5], 1);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("pypi.mirror.internal"));
        assert!(text.contains("http/1.1"));
        // server_name extension: type 0, then list length = name + 3
        let at = out
            .windows(4)
            .position(|w| w == [0, 0, 0, 25])
            .expect("sni ext");
        assert_eq!(&out[at + 4..at + 9], &[0, 23, 0, 0, 20]);
    }

    #[test]
    fn records_split_at_the_tls_maximum_and_never_get_tiny() {
        for total in [
            22,
            100,
            MAX_RECORD,
            MAX_RECORD + 1,
            3 * MAX_RECORD + 7,
            1_000_000,
        ] {
            let mut out = Vec::new();
            app_data(&mut out, &mut Rng::new(2), total);
            assert_eq!(out.len(), total);
            let mut at = 0;
            while at < out.len() {
                assert_eq!(&out[at..at + 3], &[0x17, 3, 3]);
                let len = u16::from_be_bytes([out[at + 3], out[at + 4]]) as usize + 5;
                assert!((MIN_RECORD..=MAX_RECORD).contains(&len));
                at += len;
            }
            assert_eq!(at, out.len());
        }
    }

    #[test]
    fn server_flight_starts_with_server_hello_and_ccs() {
        let mut out = Vec::new();
        server_flight(&mut out, &mut Rng::new(3), 2500);
        assert_eq!(&out[..3], &[0x16, 0x03, 0x03]);
        let sh_len = u16::from_be_bytes([out[3], out[4]]) as usize;
        assert_eq!(out[5], 2);
        let ccs = 5 + sh_len;
        assert_eq!(&out[ccs..ccs + 6], &[0x14, 3, 3, 0, 1, 1]);
        assert_eq!(out.len(), ccs + 6 + 2500);
    }
}
