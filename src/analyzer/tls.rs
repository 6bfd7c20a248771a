//! TLS on any port: the ClientHello, ServerHello and (TLS ≤ 1.2) the
//! server's leaf certificate, read from each direction's in-order stream
//! however they are cut into TCP segments and TLS records. The client's
//! SNI becomes the flow's `server_name`; the EVE `tls` record carries what
//! Suricata writes: the certificate's `subject`, `issuerdn`,
//! `subjectaltname`, `serial`, `fingerprint`, `notbefore`, `notafter`
//! (`cert`), `sni`, `version` (Suricata's spelling), JA3/JA3S, JA4
//! (`ja4`) and the ALPN lists.
//!
//! JA3 and JA3S follow Salesforce's published definition (BSD-3-Clause):
//! the MD5 of `version,ciphers,extensions,groups,point_formats` (server:
//! `version,cipher,extensions`), decimal values joined by `-`, GREASE
//! values (RFC 8701) left out. JA4 follows FoxIO's description of the TLS
//! client fingerprint (BSD-3-Clause); the rest of JA4+ is not computed.
//!
//! Bounds: the client's handshake bytes are buffered up to
//! [`MAX_HELLO_LEN`], the server's (ServerHello and the leaf certificate)
//! up to [`MAX_SERVER_HANDSHAKE_LEN`]; a certificate that does not fit is
//! not decoded and the record says so (`egresswatch.tls.certificate_error`).
//! Only the first (leaf) certificate is read; the chain is skipped.

use super::stratum::PoolList;
use super::{
    md5_hex, Analyzer, AppEvent, AppFacts, Chunk, Dir, Emit, FlowContext, PacketView, Probe,
    Protocol,
};
use crate::decode::TcpFlags;
use crate::json::{Obj, Rendered};
use crate::time::Timestamp;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

/// Most handshake bytes the client direction buffers for its hello.
pub const MAX_HELLO_LEN: usize = 32 * 1024;
/// Most handshake bytes the server direction buffers: its hello and, up
/// to TLS 1.2, the Certificate message up to the end of the leaf.
pub const MAX_SERVER_HANDSHAKE_LEN: usize = 64 * 1024;
const RECORD_HEADER_LEN: usize = 5;
const MAX_RECORD_LEN: usize = 16_384 + 2_048;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
/// The highest version whose Certificate message is sent in clear.
const TLS12: u16 = 0x0303;

mod cert;
mod inner_ssh;
mod ja4;
mod mining;
mod records;
mod shape;
pub use cert::ServerCert;
pub use ja4::ja4;
use shape::{Outcome, Shape};

mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

/// Claims flows whose first client bytes are a TLS handshake record that
/// starts a ClientHello (or, for captures that missed the client, whose
/// first server bytes start a ServerHello). With a mining pool list, an SNI
/// on it gives the flow mining facts (`protocol: "pool-name"`).
#[derive(Default)]
pub struct TlsProtocol {
    pools: Option<Arc<PoolList>>,
}

impl TlsProtocol {
    pub fn new(pools: Option<Arc<PoolList>>) -> Self {
        TlsProtocol { pools }
    }
}

impl Protocol for TlsProtocol {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn probe(&self, _ctx: &FlowContext, dir: Dir, data: &[u8]) -> Probe {
        probe(dir, data)
    }

    fn start(&self, _ctx: &FlowContext) -> Box<dyn Analyzer> {
        Box::new(TlsAnalyzer::with_pools(self.pools.clone()))
    }
}

pub fn probe(dir: Dir, data: &[u8]) -> Probe {
    let hello = match dir {
        Dir::ToServer => CLIENT_HELLO,
        Dir::ToClient => SERVER_HELLO,
    };
    let want = [CONTENT_HANDSHAKE, 3];
    for (i, &b) in data.iter().take(6).enumerate() {
        let ok = match i {
            0 | 1 => b == want[i],
            2 => b <= 4,
            3 => usize::from(b) << 8 <= MAX_RECORD_LEN,
            4 => data
                .get(3)
                .is_some_and(|&hi| u16::from_be_bytes([hi, b]) > 0),
            _ => b == hello,
        };
        if !ok {
            return Probe::NoMatch;
        }
    }
    if data.len() < 6 {
        Probe::NeedMore
    } else {
        Probe::Match
    }
}

/// What a ClientHello says, as parsed: every list in a `Vec` of its own.
/// [`ClientHello`] keeps the same packed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHelloFields {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The first ALPN value's bytes, as sent (JA4 reads its ends).
    pub alpn_first: Option<Vec<u8>>,
    pub supported_versions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    /// signature_algorithms, in the order sent.
    pub sig_algs: Vec<u16>,
}

/// What a ClientHello says. A TLS flow keeps its hello for life (each
/// alert renders its JA3 and JA4), so the five lists of numbers share one
/// allocation and nothing has spare room: 104 bytes, not 224.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    /// Where each list of `numbers` ends, in [`List`] order.
    ends: [u32; List::COUNT],
    /// Ciphers, extensions, supported versions, groups and signature
    /// algorithms, end to end.
    numbers: Box<[u16]>,
    sni: Option<Box<str>>,
    alpn: Box<[Box<str>]>,
    alpn_first: Option<Box<[u8]>>,
    point_formats: Box<[u8]>,
}

/// The lists of numbers a [`ClientHello`] packs, in their order there.
#[derive(Copy, Clone)]
enum List {
    Ciphers,
    Extensions,
    SupportedVersions,
    Groups,
    SigAlgs,
}

impl List {
    const COUNT: usize = 5;
}

impl From<ClientHelloFields> for ClientHello {
    fn from(f: ClientHelloFields) -> ClientHello {
        let lists = [
            &f.ciphers,
            &f.extensions,
            &f.supported_versions,
            &f.groups,
            &f.sig_algs,
        ];
        let mut numbers = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
        let mut ends = [0; List::COUNT];
        for (end, list) in ends.iter_mut().zip(lists) {
            numbers.extend_from_slice(list);
            // A hello is at most a handshake message: far below u32::MAX.
            *end = u32::try_from(numbers.len()).unwrap_or(u32::MAX);
        }
        ClientHello {
            legacy_version: f.legacy_version,
            ends,
            numbers: numbers.into_boxed_slice(),
            sni: f.sni.map(String::into_boxed_str),
            alpn: f.alpn.into_iter().map(String::into_boxed_str).collect(),
            alpn_first: f.alpn_first.map(Vec::into_boxed_slice),
            point_formats: f.point_formats.into_boxed_slice(),
        }
    }
}

/// What a ServerHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    pub selected_version: Option<u16>,
    pub alpn: Option<String>,
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a 1- or 2-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn u16_list(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect()
}

/// Extensions as (type, data) pairs; `None` when the block is malformed.
fn extensions<'a>(c: &mut Cursor<'a>) -> Option<Vec<(u16, &'a [u8])>> {
    if c.is_empty() {
        return Some(Vec::new());
    }
    let mut block = Cursor { buf: c.vec16()? };
    let mut out = Vec::new();
    while !block.is_empty() {
        let t = block.u16()?;
        let data = block.vec16()?;
        out.push((t, data));
    }
    Some(out)
}

impl ClientHello {
    /// Parses the body of a ClientHello handshake message (after its
    /// 4-byte header).
    pub fn parse(body: &[u8]) -> Option<ClientHello> {
        ClientHelloFields::parse(body).map(ClientHello::from)
    }

    fn list(&self, list: List) -> &[u16] {
        let i = list as usize;
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] as usize);
        self.numbers
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }

    pub fn ciphers(&self) -> &[u16] {
        self.list(List::Ciphers)
    }

    /// Extension types in the order sent.
    pub fn extensions(&self) -> &[u16] {
        self.list(List::Extensions)
    }

    pub fn supported_versions(&self) -> &[u16] {
        self.list(List::SupportedVersions)
    }

    pub fn groups(&self) -> &[u16] {
        self.list(List::Groups)
    }

    /// signature_algorithms, in the order sent.
    pub fn sig_algs(&self) -> &[u16] {
        self.list(List::SigAlgs)
    }

    pub fn point_formats(&self) -> &[u8] {
        &self.point_formats
    }

    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    pub fn alpn(&self) -> impl Iterator<Item = &str> {
        self.alpn.iter().map(|a| &**a)
    }

    /// The first ALPN value's bytes, as sent (JA4 reads its ends).
    pub fn alpn_first(&self) -> Option<&[u8]> {
        self.alpn_first.as_deref()
    }

    /// The highest version offered (supported_versions, else legacy).
    pub fn max_version(&self) -> u16 {
        self.supported_versions()
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    pub fn ja3_string(&self) -> String {
        let mut s = String::with_capacity(128);
        push_number(&mut s, self.legacy_version);
        for list in [self.ciphers(), self.extensions(), self.groups()] {
            s.push(',');
            push_no_grease(&mut s, list);
        }
        s.push(',');
        let formats: Vec<u16> = self.point_formats.iter().map(|&f| u16::from(f)).collect();
        push_no_grease(&mut s, &formats);
        s
    }
}

impl ClientHelloFields {
    /// [`ClientHello::parse`] before the lists are packed.
    fn parse(body: &[u8]) -> Option<ClientHelloFields> {
        let mut c = Cursor { buf: body };
        let mut hello = ClientHelloFields {
            legacy_version: c.u16()?,
            ..ClientHelloFields::default()
        };
        c.take(32)?; // random
        c.vec8()?; // session id
        hello.ciphers = u16_list(c.vec16()?);
        c.vec8()?; // compression methods
        for (t, data) in extensions(&mut c)? {
            hello.extensions.push(t);
            let mut d = Cursor { buf: data };
            match t {
                ext::SERVER_NAME => hello.sni = server_name(&mut d),
                ext::ALPN => {
                    hello.alpn_first = first_alpn(data).map(<[u8]>::to_vec);
                    hello.alpn = alpn_list(&mut d);
                }
                ext::SIGNATURE_ALGORITHMS => {
                    hello.sig_algs = u16_list(d.vec16().unwrap_or_default())
                }
                ext::SUPPORTED_VERSIONS => {
                    hello.supported_versions = u16_list(d.vec8().unwrap_or_default())
                }
                ext::SUPPORTED_GROUPS => hello.groups = u16_list(d.vec16().unwrap_or_default()),
                ext::EC_POINT_FORMATS => {
                    hello.point_formats = d.vec8().unwrap_or_default().to_vec()
                }
                _ => {}
            }
        }
        Some(hello)
    }
}

impl ServerHello {
    pub fn parse(body: &[u8]) -> Option<ServerHello> {
        let mut c = Cursor { buf: body };
        let mut hello = ServerHello {
            legacy_version: c.u16()?,
            ..ServerHello::default()
        };
        c.take(32)?;
        c.vec8()?;
        hello.cipher = c.u16()?;
        c.u8()?; // compression method
        for (t, data) in extensions(&mut c)? {
            hello.extensions.push(t);
            let mut d = Cursor { buf: data };
            match t {
                ext::SUPPORTED_VERSIONS => hello.selected_version = d.u16(),
                ext::ALPN => hello.alpn = alpn_list(&mut d).into_iter().next(),
                _ => {}
            }
        }
        hello.extensions.shrink_to_fit();
        Some(hello)
    }

    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }

    pub fn ja3s_string(&self) -> String {
        let mut s = String::with_capacity(64);
        push_number(&mut s, self.legacy_version);
        s.push(',');
        push_number(&mut s, self.cipher);
        s.push(',');
        push_no_grease(&mut s, &self.extensions);
        s
    }
}

fn server_name(d: &mut Cursor<'_>) -> Option<String> {
    let mut list = Cursor { buf: d.vec16()? };
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            return Some(printable(name));
        }
    }
    None
}

/// The first protocol of an ALPN extension's body.
fn first_alpn(data: &[u8]) -> Option<&[u8]> {
    let mut d = Cursor { buf: data };
    let mut list = Cursor { buf: d.vec16()? };
    list.vec8()
}

fn alpn_list(d: &mut Cursor<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(buf) = d.vec16() else {
        return out;
    };
    let mut list = Cursor { buf };
    while let Some(p) = list.vec8() {
        out.push(printable(p));
    }
    out
}

/// Printable ASCII as is, other bytes as `\xNN`.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Appends the values that are not GREASE, `-`-separated (JA3's lists).
fn push_no_grease(s: &mut String, values: &[u16]) {
    for (i, &v) in values.iter().filter(|&&v| !is_grease(v)).enumerate() {
        if i > 0 {
            s.push('-');
        }
        push_number(s, v);
    }
}

fn push_number(s: &mut String, v: u16) {
    s.push_str(itoa::Buffer::new().format(v));
}

/// Suricata's names for protocol versions.
pub fn version_name(v: u16) -> Cow<'static, str> {
    match v {
        0x0002 | 0x0200 => "SSLv2".into(),
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        0x7f00..=0x7fff => format!("TLS 1.3 draft-{}", v & 0xff).into(),
        _ => format!("0x{v:04x}").into(),
    }
}

/// Splits one direction's stream into TLS records and keeps the payloads
/// of its handshake records, concatenated, until they are consumed.
#[derive(Debug, Default)]
struct HandshakeReader {
    /// The header of the record being read (`header_len` bytes of it in).
    header: [u8; RECORD_HEADER_LEN],
    header_len: usize,
    /// Body bytes of the record being read still to come. Bodies of
    /// handshake records go straight into `handshake`; other bodies are
    /// skipped, never buffered.
    body_left: usize,
    /// Handshake payloads not yet consumed, at most the direction's bound;
    /// the last `partial` bytes belong to the record still being read and
    /// are not visible to the message parser until it is complete.
    handshake: Vec<u8>,
    partial: usize,
    /// The record being read does not fit under the bound.
    partial_overflow: bool,
    /// Handshake bytes were dropped at the bound.
    overflow: bool,
    /// A record other than a handshake record (ChangeCipherSpec, alert,
    /// application data) was seen: no more handshake messages in clear.
    other_record: bool,
}

/// Why a direction's hello (or the server's certificate) was not read.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not a TLS record")]
    NotTls,
    #[error("larger than the buffer")]
    TooLarge,
    #[error("first handshake message is not the expected hello")]
    UnexpectedMessage,
    #[error("does not decode")]
    Malformed,
    #[error("bytes missing from the stream")]
    Gap,
}

impl TlsError {
    /// The name written in `egresswatch.tls.certificate_error`.
    pub fn name(self) -> &'static str {
        match self {
            TlsError::NotTls => "not_tls",
            TlsError::TooLarge => "too_large",
            TlsError::UnexpectedMessage => "unexpected_message",
            TlsError::Malformed => "malformed",
            TlsError::Gap => "gap",
        }
    }
}

impl HandshakeReader {
    /// Adds stream bytes: splits them into records and appends handshake
    /// payloads, up to `limit` bytes buffered. A record's payload becomes
    /// visible to the parser once the whole record is in.
    fn push(&mut self, mut data: &[u8], limit: usize) -> Result<(), TlsError> {
        while !data.is_empty() {
            if self.header_len < RECORD_HEADER_LEN {
                let n = (RECORD_HEADER_LEN - self.header_len).min(data.len());
                let (head, rest) = data.split_at(n);
                if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + n) {
                    dst.copy_from_slice(head);
                }
                self.header_len += n;
                data = rest;
                if self.header_len == RECORD_HEADER_LEN {
                    check_header(&self.header)?;
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    if self.body_left == 0 {
                        self.end_record();
                    }
                }
                continue;
            }
            let n = self.body_left.min(data.len());
            let (body, rest) = data.split_at(n);
            data = rest;
            self.body_left -= n;
            if self.header[0] == CONTENT_HANDSHAKE {
                let room = limit.saturating_sub(self.handshake.len());
                self.partial_overflow |= n > room;
                let take = n.min(room);
                self.handshake.extend_from_slice(&body[..take]);
                self.partial += take;
            }
            if self.body_left == 0 {
                self.end_record();
            }
        }
        Ok(())
    }

    fn end_record(&mut self) {
        if self.header[0] == CONTENT_HANDSHAKE {
            self.overflow |= self.partial_overflow;
        } else {
            self.other_record = true;
        }
        self.partial = 0;
        self.partial_overflow = false;
        self.header_len = 0;
    }

    /// The handshake bytes of complete records.
    fn visible(&self) -> &[u8] {
        let end = self.handshake.len().saturating_sub(self.partial);
        self.handshake.get(..end).unwrap_or_default()
    }

    /// The type and body length of the next handshake message, once its
    /// header is in.
    fn next_header(&self) -> Option<(u8, usize)> {
        let h = self.visible().get(..4)?;
        Some((h[0], u24(&h[1..4])))
    }

    /// The next handshake message's body bytes at hand (all or a prefix).
    fn next_body(&self, len: usize) -> &[u8] {
        let visible = self.visible();
        let end = (4 + len).min(visible.len());
        visible.get(4..end).unwrap_or_default()
    }

    /// Drops a consumed message; an emptied buffer is released (most
    /// flows read one or two messages and then keep the reader idle).
    fn consume(&mut self, len: usize) {
        let n = (4 + len).min(self.visible().len());
        self.handshake.drain(..n);
        if self.handshake.is_empty() {
            self.handshake = Vec::new();
        }
    }
}

fn check_header(h: &[u8]) -> Result<(), TlsError> {
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    if h[1] != 3 || len > MAX_RECORD_LEN || !(20..=24).contains(&h[0]) {
        return Err(TlsError::NotTls);
    }
    Ok(())
}

/// A 24-bit big-endian length.
fn u24(b: &[u8]) -> usize {
    b.iter().fold(0, |n, &x| n << 8 | usize::from(x))
}

/// What a direction waits for next.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum Want {
    #[default]
    Hello,
    /// The server's Certificate message (TLS ≤ 1.2, after its hello).
    Certificate,
    Nothing,
}

/// Per-flow TLS state.
pub struct TlsAnalyzer {
    facts: AppFacts,
    /// Boxed, and freed once neither direction reads its handshake any
    /// more (most flows keep their analyzer long after).
    readers: Option<Box<[HandshakeReader; 2]>>,
    want: [Want; 2],
    client: Option<ClientHello>,
    server: Option<ServerHello>,
    /// Boxed: most flows never show a certificate in clear.
    cert: Option<Box<ServerCert>>,
    errors: [Option<TlsError>; 2],
    first_ts: Option<Timestamp>,
    logged: bool,
    pools: Option<Arc<PoolList>>,
    /// After the handshake: the record-shape analyses (mining, SSH inside);
    /// boxed, and freed once they stopped with nothing left to conclude
    /// ([`Shape::spent`]).
    shape: Option<Box<Shape>>,
    shape_has_server: bool,
}

impl Default for TlsAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsAnalyzer {
    pub fn new() -> Self {
        Self::with_pools(None)
    }

    pub fn with_pools(pools: Option<Arc<PoolList>>) -> Self {
        TlsAnalyzer {
            facts: AppFacts::new("tls"),
            readers: Some(Box::default()),
            want: [Want::Hello; 2],
            client: None,
            server: None,
            cert: None,
            errors: [None; 2],
            first_ts: None,
            logged: false,
            pools,
            shape: Some(Box::default()),
            shape_has_server: false,
        }
    }

    pub fn client_hello(&self) -> Option<&ClientHello> {
        self.client.as_ref()
    }

    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server.as_ref()
    }

    /// The server's leaf certificate (TLS ≤ 1.2), once decoded.
    pub fn server_cert(&self) -> Option<&ServerCert> {
        self.cert.as_deref()
    }

    /// Why a direction's hello (for the server after its hello: its
    /// certificate) was not read, if it was not.
    pub fn error(&self, dir: Dir) -> Option<TlsError> {
        self.errors.get(dir.index()).copied().flatten()
    }

    /// Stops reading `dir` and frees its buffers (all the readers' state
    /// once neither direction reads).
    fn stop(&mut self, dir: Dir) {
        if let Some(r) = self.reader_mut(dir) {
            *r = HandshakeReader::default();
        }
        if let Some(w) = self.want.get_mut(dir.index()) {
            *w = Want::Nothing;
        }
        if self.finished_reading() {
            self.readers = None;
        }
    }

    fn reader_mut(&mut self, dir: Dir) -> Option<&mut HandshakeReader> {
        self.readers.as_deref_mut()?.get_mut(dir.index())
    }

    fn fail(&mut self, dir: Dir, e: TlsError) {
        self.stop(dir);
        if let Some(slot) = self.errors.get_mut(dir.index()) {
            *slot = Some(e);
        }
    }

    fn limit(dir: Dir) -> usize {
        match dir {
            Dir::ToServer => MAX_HELLO_LEN,
            Dir::ToClient => MAX_SERVER_HANDSHAKE_LEN,
        }
    }

    /// Reads the messages `dir` has complete; its reader is taken out
    /// meanwhile (a move, no copy).
    fn advance(&mut self, dir: Dir, pkt: &PacketView<'_>) -> Result<(), TlsError> {
        let Some(slot) = self.reader_mut(dir) else {
            return Ok(());
        };
        let mut r = std::mem::take(slot);
        let result = self.read_messages(dir, &mut r, pkt);
        if self.reads_handshake(dir) {
            if let Some(slot) = self.reader_mut(dir) {
                *slot = r;
            }
        }
        result
    }

    fn read_messages(
        &mut self,
        dir: Dir,
        r: &mut HandshakeReader,
        pkt: &PacketView<'_>,
    ) -> Result<(), TlsError> {
        loop {
            let want = self.want.get(dir.index()).copied().unwrap_or(Want::Nothing);
            let next = match want {
                Want::Nothing => return Ok(()),
                Want::Hello => self.read_hello(dir, r, pkt)?,
                Want::Certificate => self.read_certificate(r)?,
            };
            match next {
                Some(Want::Nothing) => {
                    self.stop(dir);
                    return Ok(());
                }
                Some(w) => {
                    if let Some(slot) = self.want.get_mut(dir.index()) {
                        *slot = w;
                    }
                }
                None => return Ok(()),
            }
        }
    }

    /// The hello of `dir`, once complete: what to wait for next.
    fn read_hello(
        &mut self,
        dir: Dir,
        r: &mut HandshakeReader,
        pkt: &PacketView<'_>,
    ) -> Result<Option<Want>, TlsError> {
        let Some((kind, len)) = r.next_header() else {
            return waiting(r);
        };
        let body = r.next_body(len);
        if body.len() < len {
            return waiting(r);
        }
        let next = match (dir, kind) {
            (Dir::ToServer, CLIENT_HELLO) => {
                let hello = ClientHello::parse(body).ok_or(TlsError::Malformed)?;
                self.set_server_name(hello.sni());
                self.check_pool(pkt);
                self.client = Some(hello);
                Want::Nothing
            }
            (Dir::ToClient, SERVER_HELLO) => {
                let hello = ServerHello::parse(body).ok_or(TlsError::Malformed)?;
                let next = if hello.version() <= TLS12 {
                    Want::Certificate
                } else {
                    Want::Nothing
                };
                self.server = Some(hello);
                next
            }
            _ => return Err(TlsError::UnexpectedMessage),
        };
        r.consume(len);
        Ok(Some(next))
    }

    /// The server's leaf certificate, once its bytes are in; nothing to
    /// wait for when the server sends no Certificate message in clear.
    fn read_certificate(&mut self, r: &mut HandshakeReader) -> Result<Option<Want>, TlsError> {
        let Some((kind, len)) = r.next_header() else {
            return if r.other_record {
                Ok(Some(Want::Nothing))
            } else {
                waiting(r)
            };
        };
        if kind != CERTIFICATE {
            return Ok(Some(Want::Nothing));
        }
        match cert::leaf(r.next_body(len)) {
            cert::Leaf::Complete(der) => {
                self.cert = Some(Box::new(ServerCert::parse(der).ok_or(TlsError::Malformed)?));
                Ok(Some(Want::Nothing))
            }
            cert::Leaf::NeedBody(n) if n > len => Err(TlsError::Malformed),
            cert::Leaf::NeedBody(_) => waiting(r),
            cert::Leaf::Malformed => Err(TlsError::Malformed),
        }
    }

    fn reads_handshake(&self, dir: Dir) -> bool {
        self.want
            .get(dir.index())
            .is_some_and(|&w| w != Want::Nothing)
    }

    fn handshake_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>) {
        let result = match chunk {
            Chunk::Gap(_) => Err(TlsError::Gap),
            Chunk::Data(data) => match self.reader_mut(dir) {
                Some(r) => r.push(data, Self::limit(dir)),
                None => Ok(()),
            },
        };
        if let Err(e) = result.and_then(|()| self.advance(dir, pkt)) {
            self.fail(dir, e);
        }
    }

    /// Hands the stream to the record-shape analyses (after the
    /// handshake reader, so the ServerHello is known before the records
    /// that follow it in the same chunk).
    fn shape_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>) {
        let Some(shape) = self.shape.as_deref_mut().filter(|s| s.active()) else {
            return;
        };
        if let (false, Some(server)) = (self.shape_has_server, self.server.as_ref()) {
            shape.set_server(server);
            self.shape_has_server = true;
        }
        match chunk {
            Chunk::Gap(_) => shape.gap(),
            Chunk::Data(data) => {
                let outcome = shape.push(dir, data, pkt.index, pkt.ts);
                self.apply(outcome);
            }
        }
        if self.shape.as_ref().is_some_and(|s| s.spent()) {
            self.shape = None;
        }
    }

    fn shape_active(&self) -> bool {
        self.shape.as_ref().is_some_and(|s| s.active())
    }

    /// Takes what the shape analyses concluded into the facts.
    fn apply(&mut self, outcome: Outcome) {
        if let (Some(m), None) = (outcome.mining, &self.facts.mining) {
            self.facts.mining = Some(Box::new(m));
            self.facts.touch();
        }
        if outcome.ssh_changed {
            let ssh = self.shape.as_ref().and_then(|s| s.ssh_facts());
            self.facts.ssh = ssh.cloned().map(Box::new);
            self.facts.touch();
        }
    }

    fn set_server_name(&mut self, sni: Option<&str>) {
        let Some(name) = sni
            .and_then(super::names::normalize)
            .filter(|n| n.parse::<std::net::IpAddr>().is_err())
        else {
            return;
        };
        if self.facts.server_name.as_deref() != Some(name.as_str()) {
            self.facts.server_name = Some(name);
            self.facts.touch();
        }
    }

    fn check_pool(&mut self, pkt: &PacketView<'_>) {
        let (Some(pools), Some(name)) = (&self.pools, &self.facts.server_name) else {
            return;
        };
        let first = self.first_ts.unwrap_or(pkt.ts);
        if let Some(m) = pools.facts_for(name, "TLS SNI", &[pkt.index], first, pkt.ts) {
            self.facts.mining = Some(Box::new(m));
            self.facts.touch();
        }
    }

    fn finished_reading(&self) -> bool {
        self.want.iter().all(|&w| w == Want::Nothing)
    }

    /// Writes the record once: when both directions have been read (or
    /// given up on), or at the end of the flow.
    fn maybe_log(&mut self, ts: Timestamp, out: &mut Emit, at_end: bool) {
        if self.logged || self.client.is_none() && self.server.is_none() {
            return;
        }
        if !at_end && !self.finished_reading() {
            return;
        }
        self.logged = true;
        out.push(AppEvent {
            ts: self.first_ts.unwrap_or(ts),
            event_type: "tls",
            body: self.eve(),
            extra: self.eve_extra(),
            dns: None,
        });
    }

    /// Suricata's `tls` object, its fields in Suricata's order.
    fn eve(&self) -> Rendered {
        Rendered::build(|o| {
            if let Some(c) = &self.cert {
                c.eve_names(o);
            }
            if let Some(sni) = self.client.as_ref().and_then(ClientHello::sni) {
                o.str("sni", sni);
            }
            let version = match (&self.server, &self.client) {
                (Some(s), _) => Some(s.version()),
                (None, Some(c)) => Some(c.max_version()),
                _ => None,
            };
            if let Some(v) = version {
                o.str("version", &version_name(v));
            }
            if let Some(c) = &self.cert {
                c.eve_validity(o);
            }
            if let Some(c) = &self.client {
                fingerprint(o, "ja3", &c.ja3_string());
            }
            if let Some(s) = &self.server {
                fingerprint(o, "ja3s", &s.ja3s_string());
            }
            if let Some(c) = &self.client {
                o.str("ja4", &ja4(c));
                if c.alpn().next().is_some() {
                    o.strs("client_alpns", c.alpn());
                }
            }
            if let Some(a) = self.server.as_ref().and_then(|s| s.alpn.as_ref()) {
                o.strs("server_alpns", [a.as_str()]);
            }
        })
    }

    /// Why the server's certificate is missing from the record, when its
    /// hello was read but the certificate was not.
    fn certificate_error(&self) -> Option<TlsError> {
        self.server.as_ref()?;
        self.error(Dir::ToClient)
    }

    fn eve_extra(&self) -> Option<Rendered> {
        let cert_error = self.certificate_error();
        if self.client.is_none() && cert_error.is_none() {
            return None;
        }
        Some(Rendered::build(|o| {
            if let Some(c) = &self.client {
                o.str("client_legacy_version", &version_name(c.legacy_version));
                o.arr("client_supported_versions", |a| {
                    for &v in c.supported_versions().iter().filter(|&&v| !is_grease(v)) {
                        a.str(&version_name(v));
                    }
                });
            }
            if let Some(e) = cert_error {
                o.str("certificate_error", e.name());
            }
        }))
    }
}

/// `{"hash": md5, "string": s}`, as JA3 and JA3S are written.
fn fingerprint(o: &mut Obj<'_>, key: &str, s: &str) {
    o.obj(key, |o| {
        o.str("hash", &md5_hex(s));
        o.str("string", s);
    });
}

/// No complete message yet: wait, unless the buffer is full.
fn waiting(r: &HandshakeReader) -> Result<Option<Want>, TlsError> {
    if r.overflow {
        Err(TlsError::TooLarge)
    } else {
        Ok(None)
    }
}

impl Analyzer for TlsAnalyzer {
    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>, out: &mut Emit) {
        if !self.wants_stream(dir) {
            return;
        }
        self.first_ts.get_or_insert(pkt.ts);
        if self.reads_handshake(dir) {
            self.handshake_stream(dir, chunk, pkt);
        }
        self.shape_stream(dir, chunk, pkt);
        self.maybe_log(pkt.ts, out, false);
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, _out: &mut Emit) {
        let bare_ack =
            pkt.payload_len == 0 && pkt.tcp.is_some_and(|t| t.flags == TcpFlags(TcpFlags::ACK));
        if let Some(shape) = self.shape.as_deref_mut().filter(|s| bare_ack && s.active()) {
            shape.bare_ack(pkt.dir);
        }
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        self.reads_handshake(dir) || self.shape_active()
    }

    fn done(&self) -> bool {
        self.logged && self.finished_reading() && !self.shape_active()
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }

    /// What the handshake showed so far, once either hello was read.
    fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        (self.client.is_some() || self.server.is_some()).then(|| ("tls", self.eve()))
    }

    fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        if let Some(shape) = self.shape.as_deref_mut() {
            let outcome = shape.finish(last_ts);
            self.apply(outcome);
        }
        self.maybe_log(last_ts, out, true);
    }
}

#[cfg(test)]
mod tests;
