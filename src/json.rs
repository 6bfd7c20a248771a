//! JSON objects appended to a byte buffer field by field, in the order the
//! fields are written (as Suricata's JsonBuilder does). EVE records and
//! analyzer bodies are written with it instead of through `serde_json::Value`:
//! they are fixed shapes of numbers, strings, timestamps and addresses, and
//! the generic route (a map and a key string allocated per field, `fmt` for
//! every address) was most of the cost of a record.

use crate::time::Timestamp;
use std::io::Write;
use std::net::IpAddr;

/// A rendered JSON object, e.g. an analyzer's EVE body. Short-lived (it
/// lives until its record is written), so its buffer is not shrunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered(String);

/// Room for a typical body (DNS, TLS with JA3 strings) without growing.
const BODY_CAPACITY: usize = 1024;

impl Rendered {
    /// Renders the object `fill` writes.
    pub fn build(fill: impl FnOnce(&mut Obj<'_>)) -> Self {
        let mut buf = Vec::with_capacity(BODY_CAPACITY);
        let mut obj = Obj::open(&mut buf);
        fill(&mut obj);
        obj.close();
        // Only whole UTF-8 strs and ASCII are ever appended.
        Rendered(String::from_utf8(buf).unwrap_or_default())
    }

    /// Renders a serde value: the route for rare, deeply nested records
    /// (SSH, Stratum) where writing fields by hand buys nothing.
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        Rendered(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A JSON object rendered before (the sensor's state file keeps them
    /// as text); `None` if `text` is not one.
    pub fn parse(text: String) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value.is_object().then_some(Rendered(text))
    }

    /// The object as a value, for tests and the human-readable report.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// An open JSON object; [`Obj::close`] writes the closing brace.
pub struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    pub fn open(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        Obj { buf, empty: true }
    }

    /// Starts a field. Keys are the project's own literals: plain ASCII that
    /// needs no escaping.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        debug_assert!(key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    pub fn str(&mut self, key: &str, value: &str) {
        let buf = self.key(key);
        string(buf, value);
    }

    /// A string, or `null` for `None`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn null(&mut self, key: &str) {
        self.key(key).extend_from_slice(b"null");
    }

    pub fn u64(&mut self, key: &str, value: u64) {
        let buf = self.key(key);
        buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        let buf = self.key(key);
        buf.extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub fn ts(&mut self, key: &str, ts: Timestamp) {
        let buf = self.key(key);
        buf.push(b'"');
        buf.extend_from_slice(&ts.eve().bytes());
        buf.push(b'"');
    }

    pub fn ip(&mut self, key: &str, addr: IpAddr) {
        let buf = self.key(key);
        buf.push(b'"');
        ip(buf, addr);
        buf.push(b'"');
    }

    /// Unprefixed, unpadded lower-case hex, as a string (EVE's DNS flags).
    pub fn hex(&mut self, key: &str, value: u64) {
        let buf = self.key(key);
        buf.push(b'"');
        let digits = (64 - value.leading_zeros()).div_ceil(4).max(1);
        for i in (0..digits).rev() {
            buf.push(HEX_DIGITS[((value >> (i * 4)) & 0xf) as usize]);
        }
        buf.push(b'"');
    }

    /// A byte as two lower-case hex digits, as a string (EVE's TCP flags).
    pub fn hex_byte(&mut self, key: &str, value: u8) {
        let buf = self.key(key);
        buf.extend_from_slice(&[
            b'"',
            HEX_DIGITS[usize::from(value >> 4)],
            HEX_DIGITS[usize::from(value & 0xf)],
            b'"',
        ]);
    }

    /// `[a,b]`.
    pub fn pair(&mut self, key: &str, values: [u32; 2]) {
        let buf = self.key(key);
        buf.push(b'[');
        buf.extend_from_slice(itoa::Buffer::new().format(values[0]).as_bytes());
        buf.push(b',');
        buf.extend_from_slice(itoa::Buffer::new().format(values[1]).as_bytes());
        buf.push(b']');
    }

    /// An array of strings.
    pub fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) {
        let buf = self.key(key);
        buf.push(b'[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            string(buf, value);
        }
        buf.push(b']');
    }

    /// Any serde value (analyzer bodies, alerts).
    pub fn value<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let buf = self.key(key);
        // Serializing into a Vec cannot fail for the types written here
        // (no maps with non-string keys); a failure would leave `null`.
        let mark = buf.len();
        if serde_json::to_writer(&mut *buf, value).is_err() {
            buf.truncate(mark);
            buf.extend_from_slice(b"null");
        }
    }

    /// A nested object, written by `fill`.
    pub fn obj(&mut self, key: &str, fill: impl FnOnce(&mut Obj<'_>)) {
        let buf = self.key(key);
        let mut inner = Obj::open(buf);
        fill(&mut inner);
        inner.close();
    }

    /// An array, written by `fill`.
    pub fn arr(&mut self, key: &str, fill: impl FnOnce(&mut Arr<'_>)) {
        let buf = self.key(key);
        buf.push(b'[');
        let mut inner = Arr { buf, empty: true };
        fill(&mut inner);
        inner.buf.push(b']');
    }

    /// An object rendered before.
    pub fn rendered(&mut self, key: &str, value: &Rendered) {
        let buf = self.key(key);
        buf.extend_from_slice(value.0.as_bytes());
    }

    pub fn close(self) {
        self.buf.push(b'}');
    }
}

/// An open JSON array.
pub struct Arr<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl Arr<'_> {
    fn next(&mut self) -> &mut Vec<u8> {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        self.buf
    }

    pub fn str(&mut self, value: &str) {
        let buf = self.next();
        string(buf, value);
    }

    /// An address as a string.
    pub fn ip(&mut self, addr: IpAddr) {
        let buf = self.next();
        buf.push(b'"');
        ip(buf, addr);
        buf.push(b'"');
    }

    /// An object, written by `fill`.
    pub fn obj(&mut self, fill: impl FnOnce(&mut Obj<'_>)) {
        let buf = self.next();
        let mut inner = Obj::open(buf);
        fill(&mut inner);
        inner.close();
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn string(buf: &mut Vec<u8>, value: &str) {
    let clean = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if clean {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
    }
}

/// An address in its canonical text form; IPv4 without `fmt`.
fn ip(buf: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                buf.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(fill: impl FnOnce(&mut Obj<'_>)) -> String {
        let mut buf = Vec::new();
        let mut obj = Obj::open(&mut buf);
        fill(&mut obj);
        obj.close();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn fields_keep_their_order_and_types() {
        let ts = Timestamp::from_parts(1_700_000_000, 5, 1_000_000);
        let out = written(|o| {
            o.u64("n", 18_446_744_073_709_551_615);
            o.str("s", "a\"b\\c\n\u{1}é");
            o.opt_str("o1", Some("x"));
            o.opt_str("o2", None);
            o.bool("t", true);
            o.ts("ts", ts);
            o.ip("v4", "10.0.0.255".parse().unwrap());
            o.ip("v6", "fd00::1".parse().unwrap());
            o.hex_byte("f", 0x0b);
            o.hex("h", 0x8180);
            o.hex("z", 0);
            o.pair("p", [1, 40_000]);
            o.strs("names", ["x", "y\""]);
            o.obj("o", |o| o.u64("k", 0));
            o.obj("e", |_| {});
            o.value("v", &serde_json::json!({"a": [1, null]}));
            o.arr("a", |a| {
                a.str("s");
                a.obj(|o| o.bool("b", false));
            });
            o.arr("none", |_| {});
            o.rendered("r", &Rendered::build(|o| o.u64("k", 1)));
        });
        assert_eq!(
            out,
            r#"{"n":18446744073709551615,"s":"a\"b\\c\n\u0001é","o1":"x","o2":null,"t":true,"ts":"2023-11-14T22:13:20.000005+0000","v4":"10.0.0.255","v6":"fd00::1","f":"0b","h":"8180","z":"0","p":[1,40000],"names":["x","y\""],"o":{"k":0},"e":{},"v":{"a":[1,null]},"a":["s",{"b":false}],"none":[],"r":{"k":1}}"#
        );
    }

    proptest! {
        /// Strings and addresses read back as what was written.
        #[test]
        fn strings_and_addresses_round_trip(s in ".*", v4 in any::<u32>(), v6 in any::<u128>()) {
            let v4 = IpAddr::from(std::net::Ipv4Addr::from(v4));
            let v6 = IpAddr::from(std::net::Ipv6Addr::from(v6));
            let out = written(|o| {
                o.str("s", &s);
                o.ip("a", v4);
                o.ip("b", v6);
            });
            let back: serde_json::Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back["s"].as_str(), Some(s.as_str()));
            let (v4, v6) = (v4.to_string(), v6.to_string());
            prop_assert_eq!(back["a"].as_str(), Some(v4.as_str()));
            prop_assert_eq!(back["b"].as_str(), Some(v6.as_str()));
            // Byte-identical to serde_json's own escaping.
            let mut reference = Vec::new();
            serde_json::to_writer(&mut reference, &s).unwrap();
            let mut ours = Vec::new();
            string(&mut ours, &s);
            prop_assert_eq!(ours, reference);
        }
    }
}
