//! DNS message decoding (RFC 1035), written for hostile input: every read is
//! bounds-checked, compression pointers must point strictly backwards (so a
//! pointer chain always terminates) and are capped in number, names are
//! capped at 255 octets, and section counts that the message cannot hold are
//! reported instead of trusted. A problem ends the parse of the message but
//! keeps everything decoded before it, so a truncated answer still yields
//! its question.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name on the wire (RFC 1035 §2.3.4), length octets included.
pub const MAX_NAME_LEN: usize = 255;
/// Most compression pointers followed while reading one name.
pub const MAX_POINTER_HOPS: usize = 32;
/// Most records kept per section; a larger section ends the parse.
pub const MAX_RECORDS_PER_SECTION: usize = 64;

const HEADER_LEN: usize = 12;
const MIN_QUESTION_LEN: usize = 5;
const MIN_RECORD_LEN: usize = 11;

/// Why a message (or the rest of it) could not be decoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DnsError {
    #[error("message ends inside a field")]
    Truncated,
    #[error("label with reserved type bits (oversized or extended label)")]
    BadLabel,
    #[error("name longer than 255 octets")]
    NameTooLong,
    #[error("compression pointer that does not point backwards")]
    BadPointer,
    #[error("too many compression pointers in one name")]
    PointerLoop,
    #[error("section counts larger than the message can hold")]
    BadCount,
    #[error("more records in a section than are kept")]
    TooManyRecords,
}

impl DnsError {
    pub const ALL: [DnsError; 7] = [
        DnsError::Truncated,
        DnsError::BadLabel,
        DnsError::NameTooLong,
        DnsError::BadPointer,
        DnsError::PointerLoop,
        DnsError::BadCount,
        DnsError::TooManyRecords,
    ];

    /// Stable name, for counters.
    pub fn name(self) -> &'static str {
        match self {
            DnsError::Truncated => "truncated",
            DnsError::BadLabel => "bad_label",
            DnsError::NameTooLong => "name_too_long",
            DnsError::BadPointer => "bad_pointer",
            DnsError::PointerLoop => "pointer_loop",
            DnsError::BadCount => "bad_count",
            DnsError::TooManyRecords => "too_many_records",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The fixed 12-byte header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(buf: &[u8]) -> Result<Header, DnsError> {
        let word = |i: usize| be16(buf, i).ok_or(DnsError::Truncated);
        Ok(Header {
            id: word(0)?,
            flags: word(2)?,
            qdcount: word(4)?,
            ancount: word(6)?,
            nscount: word(8)?,
            arcount: word(10)?,
        })
    }

    fn bit(&self, mask: u16) -> bool {
        self.flags & mask != 0
    }
    pub fn qr(&self) -> bool {
        self.bit(0x8000)
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    pub fn aa(&self) -> bool {
        self.bit(0x0400)
    }
    pub fn tc(&self) -> bool {
        self.bit(0x0200)
    }
    pub fn rd(&self) -> bool {
        self.bit(0x0100)
    }
    pub fn ra(&self) -> bool {
        self.bit(0x0080)
    }
    pub fn z(&self) -> bool {
        self.bit(0x0040)
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

/// Decoded record data for the types the project uses; the rest keep their
/// type number (in [`Record::rtype`]) and length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    Addr(IpAddr),
    /// CNAME, NS, PTR, DNAME: a single name.
    Name(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// TXT strings, concatenated.
    Txt(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// Any other type, or data that did not decode as its type says.
    Other {
        len: u16,
    },
}

/// A decoded message. `error` is the first problem met; the sections after
/// it are empty or incomplete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    pub error: Option<DnsError>,
    /// Bytes decoded, up to the end of the last complete section.
    pub consumed: usize,
}

impl Message {
    /// Decodes `buf`. Fails only when the header itself is incomplete.
    pub fn parse(buf: &[u8]) -> Result<Message, DnsError> {
        let header = Header::parse(buf)?;
        let mut msg = Message {
            header,
            questions: Vec::new(),
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            error: None,
            consumed: HEADER_LEN,
        };
        if let Err(e) = msg.parse_sections(buf) {
            msg.error = Some(e);
        }
        Ok(msg)
    }

    fn parse_sections(&mut self, buf: &[u8]) -> Result<(), DnsError> {
        let mut pos = HEADER_LEN;
        let h = self.header;
        check_count(buf, pos, h.qdcount, MIN_QUESTION_LEN)?;
        for _ in 0..h.qdcount {
            if self.questions.len() == MAX_RECORDS_PER_SECTION {
                return Err(DnsError::TooManyRecords);
            }
            let (q, next) = parse_question(buf, pos)?;
            self.questions.push(q);
            pos = next;
        }
        self.consumed = pos;
        for (count, which) in [(h.ancount, 0), (h.nscount, 1), (h.arcount, 2)] {
            check_count(buf, pos, count, MIN_RECORD_LEN)?;
            for _ in 0..count {
                let section = match which {
                    0 => &mut self.answers,
                    1 => &mut self.authorities,
                    _ => &mut self.additionals,
                };
                if section.len() == MAX_RECORDS_PER_SECTION {
                    return Err(DnsError::TooManyRecords);
                }
                let (r, next) = parse_record(buf, pos)?;
                section.push(r);
                pos = next;
            }
            self.consumed = pos;
        }
        Ok(())
    }
}

fn check_count(buf: &[u8], pos: usize, count: u16, min_len: usize) -> Result<(), DnsError> {
    let left = buf.len().saturating_sub(pos);
    if usize::from(count) * min_len > left {
        Err(DnsError::BadCount)
    } else {
        Ok(())
    }
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn parse_question(buf: &[u8], pos: usize) -> Result<(Question, usize), DnsError> {
    let (name, pos) = read_name(buf, pos)?;
    let rtype = be16(buf, pos).ok_or(DnsError::Truncated)?;
    let class = be16(buf, pos + 2).ok_or(DnsError::Truncated)?;
    Ok((Question { name, rtype, class }, pos + 4))
}

fn parse_record(buf: &[u8], pos: usize) -> Result<(Record, usize), DnsError> {
    let (name, pos) = read_name(buf, pos)?;
    let field = |at: usize| be16(buf, pos + at).ok_or(DnsError::Truncated);
    let rtype = field(0)?;
    let class = field(2)?;
    let ttl = be32(buf, pos + 4).ok_or(DnsError::Truncated)?;
    let rdlen = field(8)?;
    let start = pos + 10;
    let end = start + usize::from(rdlen);
    if end > buf.len() {
        return Err(DnsError::Truncated);
    }
    let data = parse_rdata(buf, start, end, rtype).unwrap_or(RData::Other { len: rdlen });
    Ok((
        Record {
            name,
            rtype,
            class,
            ttl,
            data,
        },
        end,
    ))
}

/// Record data of `rtype` in `buf[start..end]`; `None` when it does not
/// decode as its type (the record is then kept as [`RData::Other`]).
fn parse_rdata(buf: &[u8], start: usize, end: usize, rtype: u16) -> Option<RData> {
    let data = buf.get(start..end)?;
    // Names inside record data may point anywhere earlier in the message,
    // but must not run past the record.
    let name_at = |at: usize| read_name(buf, at).ok().filter(|&(_, next)| next <= end);
    match rtype {
        rtype::A => <[u8; 4]>::try_from(data)
            .ok()
            .map(|b| RData::Addr(Ipv4Addr::from(b).into())),
        rtype::AAAA => <[u8; 16]>::try_from(data)
            .ok()
            .map(|b| RData::Addr(Ipv6Addr::from(b).into())),
        rtype::CNAME | rtype::NS | rtype::PTR | rtype::DNAME => {
            name_at(start).map(|(name, _)| RData::Name(name))
        }
        rtype::MX => {
            let preference = be16(data, 0)?;
            name_at(start + 2).map(|(exchange, _)| RData::Mx {
                preference,
                exchange,
            })
        }
        rtype::TXT => Some(RData::Txt(txt_strings(data))),
        rtype::SOA => {
            let (mname, next) = name_at(start)?;
            let (rname, next) = name_at(next)?;
            let n = |i: usize| be32(buf, next + 4 * i).filter(|_| next + 4 * i + 4 <= end);
            Some(RData::Soa {
                mname,
                rname,
                serial: n(0)?,
                refresh: n(1)?,
                retry: n(2)?,
                expire: n(3)?,
                minimum: n(4)?,
            })
        }
        _ => None,
    }
}

fn txt_strings(mut data: &[u8]) -> String {
    let mut out = String::new();
    while let Some((&len, rest)) = data.split_first() {
        let take = usize::from(len).min(rest.len());
        push_escaped(&mut out, &rest[..take]);
        data = &rest[take..];
    }
    out
}

/// Reads the (possibly compressed) name at `pos`. Returns the name in
/// presentation form (labels joined by dots, no trailing dot, the root as
/// an empty string) and the position after the name's bytes at `pos`.
pub fn read_name(buf: &[u8], pos: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut at = pos;
    // Where the name continues in the record once the first pointer is met.
    let mut after: Option<usize> = None;
    // Every pointer must land strictly before this, so a chain terminates.
    let mut limit = pos;
    let mut hops = 0;
    let mut wire_len = 1; // the root label
    loop {
        let len = *buf.get(at).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((out, after.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = buf
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or(DnsError::Truncated)?;
                wire_len += label.len() + 1;
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong);
                }
                if !out.is_empty() {
                    out.push('.');
                }
                push_escaped(&mut out, label);
                at += 1 + label.len();
            }
            0xc0 => {
                let low = *buf.get(at + 1).ok_or(DnsError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                after.get_or_insert(at + 2);
                if target >= limit {
                    return Err(DnsError::BadPointer);
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(DnsError::PointerLoop);
                }
                limit = target;
                at = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// Printable ASCII as is (backslash doubled); anything else as `\xNN`, so
/// names stay one line of valid UTF-8 in EVE output.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x21..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// Record type numbers the project names.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const DNAME: u16 = 39;
}

/// The mnemonic Suricata writes for a record type; other types as their
/// decimal number.
pub fn rtype_name(t: u16) -> std::borrow::Cow<'static, str> {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        44 => "SSHFP",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return t.to_string().into(),
    };
    name.into()
}

/// The response code mnemonic (RFC 6895); others as their number.
pub fn rcode_name(rcode: u8) -> std::borrow::Cow<'static, str> {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return rcode.to_string().into(),
    };
    name.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds DNS messages for tests: names as dotted strings, optional
    /// compression pointers written by hand.
    #[derive(Default)]
    pub(crate) struct Builder {
        pub buf: Vec<u8>,
    }

    impl Builder {
        pub fn header(id: u16, flags: u16, counts: [u16; 4]) -> Builder {
            let mut b = Builder::default();
            b.u16(id).u16(flags);
            for c in counts {
                b.u16(c);
            }
            b
        }
        pub fn u16(&mut self, v: u16) -> &mut Self {
            self.buf.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn u32(&mut self, v: u32) -> &mut Self {
            self.buf.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
            self.buf.extend_from_slice(v);
            self
        }
        /// Labels of `name`, then the root (or nothing if `tail` is set).
        pub fn labels(&mut self, name: &str, terminate: bool) -> &mut Self {
            for label in name.split('.').filter(|l| !l.is_empty()) {
                self.buf.push(label.len() as u8);
                self.buf.extend_from_slice(label.as_bytes());
            }
            if terminate {
                self.buf.push(0);
            }
            self
        }
        pub fn name(&mut self, name: &str) -> &mut Self {
            self.labels(name, true)
        }
        pub fn pointer(&mut self, to: u16) -> &mut Self {
            self.u16(0xc000 | to)
        }
        pub fn question(&mut self, name: &str, rtype: u16) -> &mut Self {
            self.name(name).u16(rtype).u16(1)
        }
        /// Record header after its name: type, class IN, TTL, rdata.
        pub fn rr_tail(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> &mut Self {
            self.u16(rtype).u16(1).u32(ttl).u16(rdata.len() as u16);
            self.bytes(rdata)
        }
        pub fn pos(&self) -> u16 {
            self.buf.len() as u16
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A real response from the lab capture (www.example.com A, with an
    /// EDNS OPT record): compression pointer to the question.
    const REAL_RESPONSE: &str = "98d58580000100010000000103777777076578616d706c6503636f6d0000010001c00c00010001000000000004cb00715000002904d0000000000000";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn real_response_with_compression_and_opt() {
        let buf = hex(REAL_RESPONSE);
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.error, None);
        assert_eq!(m.consumed, buf.len());
        assert_eq!(m.header.id, 0x98d5);
        assert!(m.header.qr() && m.header.aa() && m.header.rd() && m.header.ra());
        assert_eq!(m.questions[0].name, "www.example.com");
        assert_eq!(m.answers[0].name, "www.example.com");
        assert_eq!(m.answers[0].data, RData::Addr(ip("203.0.113.80")));
        assert_eq!(m.additionals[0].rtype, 41);
    }

    #[test]
    fn cname_chain_and_aaaa() {
        let mut b = Builder::header(7, 0x8180, [1, 3, 0, 0]);
        b.question("www.Example.com", rtype::AAAA);
        let cname_target = b.pos() + 12; // after pointer(2)+type/class/ttl/len(10)
        b.pointer(12).rr_tail(rtype::CNAME, 300, &{
            let mut t = Builder::default();
            t.labels("edge", false).pointer(16); // "edge" + "example.com" from the question
            t.buf
        });
        b.pointer(cname_target).rr_tail(rtype::CNAME, 60, &{
            let mut t = Builder::default();
            t.name("cdn.example.net");
            t.buf
        });
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        b.name("cdn.example.net")
            .rr_tail(rtype::AAAA, 30, &v6.octets());
        let m = Message::parse(&b.buf).unwrap();
        assert_eq!(m.error, None, "{m:?}");
        let got: Vec<_> = m
            .answers
            .iter()
            .map(|r| (r.name.as_str(), &r.data))
            .collect();
        assert_eq!(
            got,
            [
                ("www.Example.com", &RData::Name("edge.Example.com".into())),
                ("edge.Example.com", &RData::Name("cdn.example.net".into())),
                ("cdn.example.net", &RData::Addr(v6.into())),
            ]
        );
    }

    #[test]
    fn malformed_names_are_reported() {
        // (description, bytes after the header, expected error)
        let self_loop = {
            let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
            b.pointer(12).u16(1).u16(1);
            b.buf
        };
        let forward = {
            let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
            b.pointer(20).u16(1).u16(1).name("a");
            b.buf
        };
        let two_cycle = {
            // A pointer at 12 to 14 (forward), which points back to 12.
            let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
            b.pointer(14).pointer(12).u16(1).u16(1);
            b.buf
        };
        let reserved_bits = {
            let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
            b.bytes(&[0x41]).bytes(&[b'a'; 65]).bytes(&[0, 0, 1, 0, 1]);
            b.buf
        };
        let too_long = {
            let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
            for _ in 0..5 {
                b.bytes(&[63]).bytes(&[b'a'; 63]);
            }
            b.bytes(&[0, 0, 1, 0, 1]);
            b.buf
        };
        let cut_label = {
            let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
            b.bytes(&[10, b'a', b'b', 0, 0, 1, 0, 1]);
            b.buf
        };
        let lying_count = {
            let mut b = Builder::header(1, 0, [1, 200, 0, 0]);
            b.question("a.example", 1);
            b.buf
        };
        let cases: [(&str, Vec<u8>, DnsError); 7] = [
            ("pointer to itself", self_loop, DnsError::BadPointer),
            ("forward pointer", forward, DnsError::BadPointer),
            ("pointer cycle", two_cycle, DnsError::BadPointer),
            ("label type 01", reserved_bits, DnsError::BadLabel),
            ("name over 255", too_long, DnsError::NameTooLong),
            ("label cut short", cut_label, DnsError::Truncated),
            ("ancount too big", lying_count, DnsError::BadCount),
        ];
        for (what, buf, want) in cases {
            let m = Message::parse(&buf).unwrap();
            assert_eq!(m.error, Some(want), "{what}");
        }
    }

    #[test]
    fn backward_pointer_chain_is_capped() {
        // 40 names, each a one-letter label plus a pointer to the previous
        // one: every pointer points backwards, but the chain is too long.
        let mut b = Builder::header(1, 0, [0, 0, 0, 0]);
        b.name("z");
        let mut prev = 12u16;
        for _ in 0..40 {
            let here = b.pos();
            b.labels("x", false).pointer(prev);
            prev = here;
        }
        assert_eq!(
            read_name(&b.buf, usize::from(prev)),
            Err(DnsError::PointerLoop)
        );
        assert_eq!(
            read_name(&b.buf, 15).map(|(n, _)| n),
            Ok("x.z".to_string()),
            "a short chain is fine"
        );
    }

    #[test]
    fn truncated_answer_keeps_question() {
        let buf = hex(REAL_RESPONSE);
        let m = Message::parse(&buf[..40]).unwrap();
        assert_eq!(m.questions.len(), 1);
        assert!(m.answers.is_empty());
        assert!(m.error.is_some());
        assert_eq!(Message::parse(&buf[..11]), Err(DnsError::Truncated));
    }

    #[test]
    fn too_many_records_stops_the_parse() {
        let n = MAX_RECORDS_PER_SECTION as u16 + 1;
        let mut b = Builder::header(1, 0x8180, [0, n, 0, 0]);
        for i in 0..n {
            b.name("a.example")
                .rr_tail(rtype::A, 5, &[10, 0, 0, i as u8]);
        }
        let m = Message::parse(&b.buf).unwrap();
        assert_eq!(m.answers.len(), MAX_RECORDS_PER_SECTION);
        assert_eq!(m.error, Some(DnsError::TooManyRecords));
    }

    #[test]
    fn other_types_keep_their_number() {
        let mut b = Builder::header(1, 0x8180, [0, 2, 0, 0]);
        b.name("x.example").rr_tail(65, 5, &[0, 1, 0]);
        b.name("x.example").rr_tail(rtype::A, 5, &[1, 2, 3]); // bad A length
        let m = Message::parse(&b.buf).unwrap();
        assert_eq!(m.error, None);
        assert_eq!(m.answers[0].rtype, 65);
        assert_eq!(m.answers[0].data, RData::Other { len: 3 });
        assert_eq!(m.answers[1].data, RData::Other { len: 3 });
        assert_eq!(rtype_name(65), "HTTPS");
        assert_eq!(rtype_name(4242), "4242");
    }

    #[test]
    fn odd_bytes_are_escaped() {
        let mut b = Builder::header(1, 0, [1, 0, 0, 0]);
        b.bytes(&[3, b'a', 0xff, b'\\', 0]).u16(1).u16(1);
        let m = Message::parse(&b.buf).unwrap();
        assert_eq!(m.questions[0].name, "a\\xff\\\\");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = Message::parse(&buf) {
                prop_assert!(m.consumed <= buf.len());
            }
        }

        #[test]
        fn mutated_real_message_never_panics(i in 0usize..64, v in any::<u8>(), cut in 0usize..64) {
            let mut buf = hex(REAL_RESPONSE);
            let i = i % buf.len();
            buf[i] = v;
            buf.truncate(buf.len() - cut % buf.len());
            let _ = Message::parse(&buf);
        }
    }
}
