//! The server's leaf certificate (TLS ≤ 1.2, where the Certificate message
//! is in clear), decoded with `x509-parser` and written as Suricata's
//! `tls` object writes it: `subject` and `issuerdn` as x509-parser prints
//! a name (`C=US, O=..., CN=...`), `serial` as upper-case hex bytes joined
//! by `:`, `fingerprint` the SHA-1 of the DER as lower-case hex joined by
//! `:`, `notbefore`/`notafter` as `YYYY-MM-DDTHH:MM:SS` (UTC), and
//! `subjectaltname` (DNS names, URIs, e-mail addresses, IP addresses).

use super::u24;
use crate::json::Obj;
use sha1::{Digest, Sha1};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::time::ASN1Time;

/// Most subject alternative names kept from one certificate.
pub const MAX_SANS: usize = 64;

/// What the EVE record says about a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerCert {
    pub subject: String,
    pub issuerdn: String,
    pub serial: String,
    pub fingerprint: String,
    pub notbefore: String,
    pub notafter: String,
    /// At most [`MAX_SANS`] names.
    pub subjectaltname: Vec<String>,
}

impl ServerCert {
    /// Decodes one DER certificate; `None` when x509-parser rejects it.
    pub fn parse(der: &[u8]) -> Option<ServerCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        Some(ServerCert {
            subject: cert.subject().to_string(),
            issuerdn: cert.issuer().to_string(),
            serial: hex_joined(cert.raw_serial(), true),
            fingerprint: hex_joined(&Sha1::digest(der), false),
            notbefore: iso_time(&validity.not_before),
            notafter: iso_time(&validity.not_after),
            subjectaltname: sans(&cert),
        })
    }

    /// Suricata's field order: subject, issuerdn, subjectaltname, serial,
    /// fingerprint (then sni and version, written by the caller), and the
    /// validity, written by [`ServerCert::eve_validity`].
    pub fn eve_names(&self, o: &mut Obj<'_>) {
        o.str("subject", &self.subject);
        o.str("issuerdn", &self.issuerdn);
        if !self.subjectaltname.is_empty() {
            o.strs(
                "subjectaltname",
                self.subjectaltname.iter().map(String::as_str),
            );
        }
        o.str("serial", &self.serial);
        o.str("fingerprint", &self.fingerprint);
    }

    pub fn eve_validity(&self, o: &mut Obj<'_>) {
        o.str("notbefore", &self.notbefore);
        o.str("notafter", &self.notafter);
    }
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                Some((*s).to_owned())
            }
            GeneralName::IPAddress(b) => ip_text(b),
            _ => None,
        })
        .take(MAX_SANS)
        .collect()
}

fn ip_text(b: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| Ipv6Addr::from(v6).to_string())
}

/// Bytes as two-digit hex joined by `:`.
fn hex_joined(bytes: &[u8], upper: bool) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = if upper {
            write!(s, "{b:02X}")
        } else {
            write!(s, "{b:02x}")
        };
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, as Suricata writes certificate dates.
fn iso_time(t: &ASN1Time) -> String {
    let d = t.to_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// The first certificate of a TLS ≤ 1.2 Certificate message body
/// (`certificate_list<0..2^24-1>` of `ASN.1Cert<1..2^24-1>`), once the
/// bytes up to its end are at hand.
pub enum Leaf<'a> {
    Complete(&'a [u8]),
    /// Needs this many bytes of the message body in all.
    NeedBody(usize),
    Malformed,
}

pub fn leaf(body: &[u8]) -> Leaf<'_> {
    let (Some(list), Some(first)) = (body.get(..3), body.get(3..6)) else {
        return Leaf::NeedBody(6);
    };
    let list_len = u24(list);
    let len = u24(first);
    if len == 0 || 3 + len > list_len {
        return Leaf::Malformed;
    }
    match body.get(6..6 + len) {
        Some(der) => Leaf::Complete(der),
        None => Leaf::NeedBody(6 + len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::testkit::hex;

    #[test]
    fn hex_and_time_formats() {
        assert_eq!(hex_joined(&[0x0a, 0xbc, 0x01], true), "0A:BC:01");
        assert_eq!(hex_joined(&[0x0a, 0xbc], false), "0a:bc");
        assert_eq!(hex_joined(&[], false), "");
        let t = ASN1Time::from_timestamp(2_177_367_003).unwrap();
        assert_eq!(iso_time(&t), "2038-12-31T00:10:03");
    }

    #[test]
    fn leaf_framing() {
        let body = hex("00000a 000003 aabbcc 000001 dd");
        assert!(matches!(leaf(&body), Leaf::Complete(d) if d == [0xaa, 0xbb, 0xcc]));
        assert!(matches!(leaf(&body[..7]), Leaf::NeedBody(9)));
        assert!(matches!(leaf(&body[..2]), Leaf::NeedBody(6)));
        assert!(matches!(leaf(&hex("000002 000003")), Leaf::Malformed));
        assert!(matches!(leaf(&hex("000003 000000")), Leaf::Malformed));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(ServerCert::parse(&[]), None);
        assert_eq!(ServerCert::parse(&[0x30, 0x03, 1, 2, 3]), None);
    }
}
