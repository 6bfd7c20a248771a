//! TLS on any port: the ClientHello and ServerHello read from each
//! direction's in-order stream, however the hello is cut into TCP segments
//! and TLS records. The client's SNI becomes the flow's `server_name`; the
//! EVE `tls` record carries `sni`, `version` (Suricata's spelling), the
//! ALPN lists and JA3/JA3S.
//!
//! JA3 and JA3S follow Salesforce's published definition (BSD-3-Clause):
//! the MD5 of `version,ciphers,extensions,groups,point_formats` (server:
//! `version,cipher,extensions`), decimal values joined by `-`, GREASE
//! values (RFC 8701) left out. JA4 is not computed: its licence (FoxIO
//! License 1.1) does not fit this project.

use super::stratum::PoolList;
use super::{
    md5_hex, Analyzer, AppEvent, AppFacts, Chunk, Dir, Emit, FlowContext, PacketView, Probe,
    Protocol,
};
use crate::json::{Obj, Rendered};
use crate::time::Timestamp;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

/// Most handshake bytes buffered per direction while waiting for a hello.
pub const MAX_HELLO_LEN: usize = 32 * 1024;
const RECORD_HEADER_LEN: usize = 5;
const MAX_RECORD_LEN: usize = 16_384 + 2_048;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;

mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
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

/// What a ClientHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub supported_versions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
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
fn extensions(c: &mut Cursor<'_>) -> Option<Vec<(u16, Vec<u8>)>> {
    if c.is_empty() {
        return Some(Vec::new());
    }
    let mut block = Cursor { buf: c.vec16()? };
    let mut out = Vec::new();
    while !block.is_empty() {
        let t = block.u16()?;
        let data = block.vec16()?;
        out.push((t, data.to_vec()));
    }
    Some(out)
}

impl ClientHello {
    /// Parses the body of a ClientHello handshake message (after its
    /// 4-byte header).
    pub fn parse(body: &[u8]) -> Option<ClientHello> {
        let mut c = Cursor { buf: body };
        let mut hello = ClientHello {
            legacy_version: c.u16()?,
            ..ClientHello::default()
        };
        c.take(32)?; // random
        c.vec8()?; // session id
        hello.ciphers = u16_list(c.vec16()?);
        c.vec8()?; // compression methods
        for (t, data) in extensions(&mut c)? {
            hello.extensions.push(t);
            let mut d = Cursor { buf: &data };
            match t {
                ext::SERVER_NAME => hello.sni = server_name(&mut d),
                ext::ALPN => hello.alpn = alpn_list(&mut d),
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

    /// The highest version offered (supported_versions, else legacy).
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    pub fn ja3_string(&self) -> String {
        let mut s = String::with_capacity(128);
        push_number(&mut s, self.legacy_version);
        for list in [&self.ciphers, &self.extensions, &self.groups] {
            s.push(',');
            push_no_grease(&mut s, list);
        }
        s.push(',');
        let formats: Vec<u16> = self.point_formats.iter().map(|&f| u16::from(f)).collect();
        push_no_grease(&mut s, &formats);
        s
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
            let mut d = Cursor { buf: &data };
            match t {
                ext::SUPPORTED_VERSIONS => hello.selected_version = d.u16(),
                ext::ALPN => hello.alpn = alpn_list(&mut d).into_iter().next(),
                _ => {}
            }
        }
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

/// Reassembles one direction's handshake messages from its records.
#[derive(Debug, Default)]
struct HelloReader {
    /// Stream bytes not yet split into records.
    raw: Vec<u8>,
    /// Handshake-record payloads, concatenated.
    handshake: Vec<u8>,
    done: bool,
}

/// Why a direction's hello was not read.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not a TLS record")]
    NotTls,
    #[error("hello larger than the buffer")]
    TooLarge,
    #[error("first handshake message is not the expected hello")]
    UnexpectedMessage,
    #[error("hello does not decode")]
    Malformed,
    #[error("bytes missing from the stream")]
    Gap,
}

impl HelloReader {
    /// Adds stream bytes; returns the first handshake message (type and
    /// body) once it is complete.
    fn push(&mut self, data: &[u8]) -> Result<Option<(u8, Vec<u8>)>, TlsError> {
        let room = MAX_HELLO_LEN.saturating_sub(self.raw.len());
        self.raw.extend_from_slice(&data[..data.len().min(room)]);
        let mut at = 0;
        while let Some(h) = self.raw.get(at..at + RECORD_HEADER_LEN) {
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            if h[1] != 3 || len > MAX_RECORD_LEN || !(20..=24).contains(&h[0]) {
                return Err(TlsError::NotTls);
            }
            let Some(body) = self
                .raw
                .get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len)
            else {
                break;
            };
            if h[0] == CONTENT_HANDSHAKE {
                self.handshake.extend_from_slice(body);
            }
            at += RECORD_HEADER_LEN + len;
        }
        self.raw.drain(..at);
        if let Some(msg) = first_message(&self.handshake) {
            return Ok(Some(msg));
        }
        if self.raw.len() >= MAX_HELLO_LEN || self.handshake.len() >= MAX_HELLO_LEN {
            return Err(TlsError::TooLarge);
        }
        Ok(None)
    }
}

fn first_message(hs: &[u8]) -> Option<(u8, Vec<u8>)> {
    let h = hs.get(..4)?;
    let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
    let body = hs.get(4..4 + len)?;
    Some((h[0], body.to_vec()))
}

/// Per-flow TLS state.
pub struct TlsAnalyzer {
    facts: AppFacts,
    readers: [HelloReader; 2],
    client: Option<ClientHello>,
    server: Option<ServerHello>,
    errors: [Option<TlsError>; 2],
    first_ts: Option<Timestamp>,
    logged: bool,
    pools: Option<Arc<PoolList>>,
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
            readers: Default::default(),
            client: None,
            server: None,
            errors: [None; 2],
            first_ts: None,
            logged: false,
            pools,
        }
    }

    pub fn client_hello(&self) -> Option<&ClientHello> {
        self.client.as_ref()
    }

    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server.as_ref()
    }

    /// Why a direction's hello was not read, if it was not.
    pub fn error(&self, dir: Dir) -> Option<TlsError> {
        self.errors.get(dir.index()).copied().flatten()
    }

    fn fail(&mut self, dir: Dir, e: TlsError) {
        if let Some(r) = self.readers.get_mut(dir.index()) {
            r.done = true;
            r.raw = Vec::new();
            r.handshake = Vec::new();
        }
        if let Some(slot) = self.errors.get_mut(dir.index()) {
            *slot = Some(e);
        }
    }

    fn on_hello(
        &mut self,
        dir: Dir,
        kind: u8,
        body: &[u8],
        pkt: &PacketView<'_>,
    ) -> Result<(), TlsError> {
        match (dir, kind) {
            (Dir::ToServer, CLIENT_HELLO) => {
                let hello = ClientHello::parse(body).ok_or(TlsError::Malformed)?;
                self.set_server_name(hello.sni.as_deref());
                self.check_pool(pkt);
                self.client = Some(hello);
            }
            (Dir::ToClient, SERVER_HELLO) => {
                self.server = Some(ServerHello::parse(body).ok_or(TlsError::Malformed)?);
            }
            _ => return Err(TlsError::UnexpectedMessage),
        }
        Ok(())
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
        self.readers.iter().all(|r| r.done)
    }

    /// Writes the record once: when both hellos are read (or given up
    /// on), or at the end of the flow.
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
        });
    }

    /// Suricata's `tls` object.
    fn eve(&self) -> Rendered {
        Rendered::build(|o| {
            if let Some(sni) = self.client.as_ref().and_then(|c| c.sni.as_deref()) {
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
            if let Some(c) = &self.client {
                fingerprint(o, "ja3", &c.ja3_string());
                if !c.alpn.is_empty() {
                    o.strs("client_alpns", c.alpn.iter().map(String::as_str));
                }
            }
            if let Some(s) = &self.server {
                fingerprint(o, "ja3s", &s.ja3s_string());
                if let Some(a) = &s.alpn {
                    o.strs("server_alpns", [a.as_str()]);
                }
            }
        })
    }

    fn eve_extra(&self) -> Option<Rendered> {
        let c = self.client.as_ref()?;
        Some(Rendered::build(|o| {
            o.str("client_legacy_version", &version_name(c.legacy_version));
            o.arr("client_supported_versions", |a| {
                for &v in c.supported_versions.iter().filter(|&&v| !is_grease(v)) {
                    a.str(&version_name(v));
                }
            });
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

impl Analyzer for TlsAnalyzer {
    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>, out: &mut Emit) {
        if !self.wants_stream(dir) {
            return;
        }
        self.first_ts.get_or_insert(pkt.ts);
        let result = match chunk {
            Chunk::Gap(_) => Err(TlsError::Gap),
            Chunk::Data(data) => match self.readers.get_mut(dir.index()) {
                Some(r) => r.push(data),
                None => Ok(None),
            },
        };
        match result.and_then(|msg| match msg {
            Some((kind, body)) => self.on_hello(dir, kind, &body, pkt).map(|_| true),
            None => Ok(false),
        }) {
            Ok(true) => {
                if let Some(r) = self.readers.get_mut(dir.index()) {
                    *r = HelloReader {
                        done: true,
                        ..HelloReader::default()
                    };
                }
            }
            Ok(false) => {}
            Err(e) => self.fail(dir, e),
        }
        self.maybe_log(pkt.ts, out, false);
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        self.readers.get(dir.index()).is_some_and(|r| !r.done)
    }

    fn done(&self) -> bool {
        self.logged && self.finished_reading()
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }

    fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        self.maybe_log(last_ts, out, true);
    }
}

#[cfg(test)]
mod tests;
