//! Application payloads in their real wire formats: DNS messages, a TLS 1.3
//! ClientHello and server flight, SSH identification lines, KEXINIT and key
//! exchange packets with the encrypted-size model, Stratum JSON-RPC, NTP and
//! HTTP/1.1. Builders append to a caller's buffer.

pub mod dns;
pub mod http;
pub mod ntp;
pub mod ssh;
pub mod stratum;
pub mod tls;

/// Appends a big-endian u16.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian u32.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
