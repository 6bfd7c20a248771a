//! HTTP/1.x on any port: request and response heads read from the in-order
//! streams (however they are cut into segments), one EVE `http` record per
//! transaction for the first [`MAX_TRANSACTIONS`], and the first request's
//! host as the flow's `server_name` (Host header, or the authority of an
//! absolute or CONNECT target, port stripped).
//!
//! JSON bodies with a Content-Length are handed to the [`MiningDetector`]:
//! pre-Stratum mining (`getwork`, `getblocktemplate`) and ethproxy's
//! `eth_getWork` run over plain HTTP POSTs. A confirmed exchange sets the
//! flow's mining facts and writes one `stratum` record, as raw Stratum does.

use super::stratum::{Family, MiningDetector};
use super::{
    Analyzer, AppEvent, AppFacts, Chunk, Dir, Emit, FlowContext, PacketView, Probe, Protocol,
};
use crate::json::Rendered;
use crate::time::Timestamp;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::VecDeque;

/// Longest message head read; a longer head is parsed as far as it got.
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Longest body handed to the mining detector.
pub const MAX_JSON_BODY: usize = 16 * 1024;
/// Transactions read (and logged) per flow.
pub const MAX_TRANSACTIONS: u32 = 16;
/// Longest string field kept.
const MAX_FIELD_LEN: usize = 2048;

const METHODS: [&[u8]; 15] = [
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"CONNECT",
    b"PATCH",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
];

/// Claims flows whose client starts with `METHOD ` (or, for captures that
/// missed the client, whose server starts with `HTTP/1.`).
pub struct HttpProtocol;

impl Protocol for HttpProtocol {
    fn name(&self) -> &'static str {
        "http"
    }

    fn probe(&self, _ctx: &FlowContext, dir: Dir, data: &[u8]) -> Probe {
        probe(dir, data)
    }

    fn start(&self, _ctx: &FlowContext) -> Box<dyn Analyzer> {
        Box::new(HttpAnalyzer::new())
    }
}

pub fn probe(dir: Dir, data: &[u8]) -> Probe {
    let mut answer = Probe::NoMatch;
    let mut check = |token: &[u8]| {
        let n = token.len().min(data.len());
        if data[..n] != token[..n] {
            return;
        }
        if data.len() > token.len() {
            answer = Probe::Match;
        } else if answer != Probe::Match {
            answer = Probe::NeedMore;
        }
    };
    match dir {
        Dir::ToServer => {
            let mut token = [0u8; 16];
            for m in METHODS {
                // "GET " followed by at least the first byte of a target.
                let Some(room) = token.get_mut(..m.len() + 1) else {
                    continue;
                };
                room[..m.len()].copy_from_slice(m);
                room[m.len()] = b' ';
                if data.get(room.len()).is_some_and(|&b| b == b' ') {
                    continue;
                }
                check(room);
            }
        }
        Dir::ToClient => check(b"HTTP/1."),
    }
    if data.is_empty() {
        Probe::NoMatch
    } else {
        answer
    }
}

/// A parsed request head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub uri: String,
    pub protocol: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user_agent: Option<String>,
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    pub chunked: bool,
    /// The user of `Authorization: Basic` (getwork miners send the worker).
    pub basic_user: Option<String>,
    /// Getwork's `X-Mining-Extensions` header was sent.
    pub mining_extensions: bool,
}

/// A parsed response head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    pub protocol: String,
    pub status: u16,
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    pub chunked: bool,
    /// Getwork pool headers present (`x-stratum`, `x-long-polling`,
    /// `x-roll-ntime`).
    pub mining_headers: Vec<&'static str>,
}

/// Header fields common to requests and responses.
#[derive(Default)]
struct Fields {
    host: Option<String>,
    user_agent: Option<String>,
    content_length: Option<u64>,
    content_type: Option<String>,
    chunked: bool,
    basic_user: Option<String>,
    mining_headers: Vec<&'static str>,
}

/// Headers that only getwork mining clients and pools send.
const MINING_HEADERS: [&str; 4] = [
    "x-mining-extensions",
    "x-stratum",
    "x-long-polling",
    "x-roll-ntime",
];

/// The user name of a `Basic` credential.
fn basic_user(value: &[u8]) -> Option<String> {
    let b64 = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_ascii())
        .ok()?;
    let user = decoded.split(|&b| b == b':').next()?;
    (!user.is_empty()).then(|| text(user))
}

fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.chars().take(MAX_FIELD_LEN).collect()
}

/// The head's lines without their line ends; the first line separately.
fn lines(head: &[u8]) -> (&[u8], impl Iterator<Item = &[u8]>) {
    // Stray line ends between messages (after a body) are tolerated.
    let mut it = head
        .trim_ascii_start()
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = it.next().unwrap_or_default();
    (first, it)
}

fn fields<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Fields {
    let mut f = Fields::default();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"host") && f.host.is_none() {
            f.host = Some(text(value));
        } else if name.eq_ignore_ascii_case(b"user-agent") && f.user_agent.is_none() {
            f.user_agent = Some(text(value));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            f.content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"content-type") && f.content_type.is_none() {
            f.content_type = Some(text(value));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.chunked = value
                .to_ascii_lowercase()
                .windows(7)
                .any(|w| w == b"chunked");
        } else if name.eq_ignore_ascii_case(b"authorization") && f.basic_user.is_none() {
            f.basic_user = basic_user(value);
        } else if let Some(h) = MINING_HEADERS
            .iter()
            .find(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            if !f.mining_headers.contains(h) {
                f.mining_headers.push(h);
            }
        }
    }
    f
}

impl RequestHead {
    /// Parses a request head (request line and header fields).
    pub fn parse(head: &[u8]) -> Option<RequestHead> {
        let (first, rest) = lines(head);
        let mut parts = first.split(|&b| b == b' ').filter(|p| !p.is_empty());
        let method = text(parts.next()?);
        let uri = text(parts.next()?);
        let protocol = parts.next().map(text).unwrap_or_default();
        let f = fields(rest);
        let authority = uri_authority(&method, &uri).or(f.host.clone());
        let (host, port) = authority
            .as_deref()
            .map(split_host_port)
            .unwrap_or_default();
        Some(RequestHead {
            method,
            uri,
            protocol,
            host,
            port,
            user_agent: f.user_agent,
            content_length: f.content_length,
            content_type: f.content_type,
            chunked: f.chunked,
            basic_user: f.basic_user,
            mining_extensions: f.mining_headers.contains(&"x-mining-extensions"),
        })
    }
}

impl ResponseHead {
    pub fn parse(head: &[u8]) -> Option<ResponseHead> {
        let (first, rest) = lines(head);
        let mut parts = first.split(|&b| b == b' ').filter(|p| !p.is_empty());
        let protocol = text(parts.next()?);
        if !protocol.starts_with("HTTP/") {
            return None;
        }
        let status = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let f = fields(rest);
        Some(ResponseHead {
            protocol,
            status,
            content_length: f.content_length,
            content_type: f.content_type,
            chunked: f.chunked,
            mining_headers: f.mining_headers,
        })
    }

    /// Whether a body follows (RFC 9112 §6.3).
    fn has_body(&self, request_method: Option<&str>) -> bool {
        !(self.status < 200
            || self.status == 204
            || self.status == 304
            || request_method == Some("HEAD"))
    }
}

/// The authority of an absolute-form (`http://host:port/...`) or
/// CONNECT (`host:port`) request target, which takes precedence over Host.
fn uri_authority(method: &str, uri: &str) -> Option<String> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Some(uri.to_string());
    }
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then(|| authority.to_string())
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (lowercase host, port).
pub fn split_host_port(authority: &str) -> (Option<String>, Option<u16>) {
    let a = authority.trim();
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (rest, None),
        }
    } else if a.matches(':').count() == 1 {
        let (h, p) = a.split_once(':').unwrap_or((a, ""));
        (h, Some(p))
    } else {
        (a, None)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let port = port.and_then(|p| p.parse().ok());
    ((!host.is_empty()).then_some(host), port)
}

/// Where one direction's parser is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Head,
    /// Body bytes still to come; `keep` collects a JSON body.
    Body {
        left: u64,
        keep: bool,
    },
    Done,
}

#[derive(Debug)]
struct Side {
    buf: Vec<u8>,
    state: State,
    body: Vec<u8>,
}

impl Default for Side {
    fn default() -> Self {
        Side {
            buf: Vec::new(),
            state: State::Head,
            body: Vec::new(),
        }
    }
}

/// What one side's bytes produced.
enum Item {
    Head(Vec<u8>),
    /// A complete JSON body.
    Json(Vec<u8>),
}

impl Side {
    fn stop(&mut self) {
        self.state = State::Done;
        self.buf = Vec::new();
        self.body = Vec::new();
    }

    /// Feeds bytes, returning complete heads and JSON bodies. The caller
    /// sets the body state after each head with [`Side::expect_body`].
    fn push(&mut self, mut data: &[u8], on_item: &mut dyn FnMut(&mut Side, Item)) {
        while !data.is_empty() {
            match self.state.clone() {
                State::Done => return,
                State::Body { left, keep } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    if keep {
                        self.body.extend_from_slice(&data[..n]);
                    }
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = State::Body { left, keep };
                    if left == 0 {
                        self.state = State::Head;
                        if keep {
                            let body = std::mem::take(&mut self.body);
                            on_item(self, Item::Json(body));
                        }
                    }
                }
                State::Head => {
                    let old_len = self.buf.len();
                    let take = (MAX_HEAD_LEN - old_len).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    // A terminator may straddle the previous chunk's end.
                    match head_end(&self.buf, old_len.saturating_sub(3)) {
                        Some(end) => {
                            let mut head = std::mem::take(&mut self.buf);
                            head.truncate(end);
                            data = &data[end.saturating_sub(old_len).min(data.len())..];
                            on_item(self, Item::Head(head));
                        }
                        None if self.buf.len() >= MAX_HEAD_LEN => {
                            let head = std::mem::take(&mut self.buf);
                            on_item(self, Item::Head(head));
                            self.stop();
                            return;
                        }
                        None => data = &data[take..],
                    }
                }
            }
        }
    }

    fn expect_body(&mut self, len: Option<u64>, chunked: bool, json: bool, until_close: bool) {
        if self.state == State::Done {
            return;
        }
        self.state = match len {
            _ if chunked => State::Done,
            Some(0) => State::Head,
            Some(n) => State::Body {
                left: n,
                keep: json && n <= MAX_JSON_BODY as u64,
            },
            None if until_close => State::Done,
            None => State::Head,
        };
        if self.state == State::Done {
            self.stop();
        }
    }
}

/// Index just past the blank line that ends a head, searching from
/// `from` (heads are searched incrementally).
pub(crate) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1..i + 3) == Some(&b"\r\n"[..]) {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn looks_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json"))
}

/// A request waiting for its response.
#[derive(Debug)]
struct Transaction {
    request: RequestHead,
    ts: Timestamp,
}

/// Per-flow HTTP state.
pub struct HttpAnalyzer {
    facts: AppFacts,
    sides: [Side; 2],
    open: VecDeque<Transaction>,
    requests: u32,
    responses: u32,
    mining: MiningDetector,
    mining_logged: bool,
}

impl Default for HttpAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpAnalyzer {
    pub fn new() -> Self {
        HttpAnalyzer {
            facts: AppFacts::new("http"),
            sides: Default::default(),
            open: VecDeque::new(),
            requests: 0,
            responses: 0,
            mining: MiningDetector::new(),
            mining_logged: false,
        }
    }

    fn on_request(&mut self, side: &mut Side, head: &[u8], pkt: &PacketView<'_>, out: &mut Emit) {
        let Some(req) = RequestHead::parse(head) else {
            side.stop();
            return;
        };
        let ts = pkt.ts;
        self.mining
            .offer_credentials(req.basic_user.as_deref(), req.user_agent.as_deref());
        if req.mining_extensions {
            self.mining
                .on_client_hint("x-mining-extensions", Family::Getwork, pkt.index, ts);
            self.sync_mining(ts, out);
        }
        self.requests += 1;
        if self.facts.server_name.is_none() {
            // An address literal is not a name the client asked for.
            if let Some(h) = req
                .host
                .as_ref()
                .filter(|h| h.parse::<std::net::IpAddr>().is_err())
            {
                self.facts.server_name = Some(h.clone());
                self.facts.touch();
            }
        }
        let json = looks_json(req.content_type.as_deref()) || req.method == "POST";
        side.expect_body(req.content_length, req.chunked, json, false);
        if self.requests >= MAX_TRANSACTIONS || req.method.eq_ignore_ascii_case("CONNECT") {
            side.stop();
        }
        self.open.push_back(Transaction { request: req, ts });
    }

    fn on_response(&mut self, side: &mut Side, head: &[u8], pkt: &PacketView<'_>, out: &mut Emit) {
        let Some(resp) = ResponseHead::parse(head) else {
            side.stop();
            return;
        };
        self.mining.server_spoke();
        for &h in &resp.mining_headers {
            self.mining
                .on_server_hint(h, Family::Getwork, pkt.index, pkt.ts);
        }
        if !resp.mining_headers.is_empty() {
            self.sync_mining(pkt.ts, out);
        }
        if resp.status < 200 && resp.status != 101 {
            return; // interim response: the final one follows
        }
        self.responses += 1;
        if self.responses >= MAX_TRANSACTIONS {
            side.stop();
        }
        let tx = self.open.pop_front();
        let method = tx.as_ref().map(|t| t.request.method.as_str());
        let tunnel = resp.status == 101 || (method == Some("CONNECT") && resp.status < 300);
        if tunnel {
            side.stop();
        } else if resp.has_body(method) && side.state != State::Done {
            let json = looks_json(resp.content_type.as_deref());
            side.expect_body(resp.content_length, resp.chunked, json, true);
        }
        if let Some(tx) = tx {
            out.push(log(&tx, Some(&resp)));
        }
    }

    fn on_json(&mut self, dir: Dir, body: &[u8], pkt: &PacketView<'_>, out: &mut Emit) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        self.mining.on_message(dir, &v, pkt.index, pkt.ts);
        self.sync_mining(pkt.ts, out);
    }

    /// Copies a new or grown mining verdict into the facts; writes the
    /// `stratum` record the first time.
    fn sync_mining(&mut self, ts: Timestamp, out: &mut Emit) {
        let Some(m) = self.mining.facts() else {
            return;
        };
        if self.facts.mining.as_deref() != Some(&m) {
            self.facts.mining = Some(Box::new(m));
            self.facts.touch();
        }
        if !self.mining_logged {
            self.mining_logged = true;
            out.push(AppEvent {
                ts,
                event_type: "stratum",
                body: Rendered::of(&self.mining.eve()),
                extra: self
                    .facts
                    .mining
                    .as_ref()
                    .map(|m| Rendered::of(&json!({ "evidence": m.evidence }))),
                dns: None,
            });
        }
    }
}

/// The EVE `http` object, with Suricata's field names.
fn log(tx: &Transaction, resp: Option<&ResponseHead>) -> AppEvent {
    let r = &tx.request;
    let body = Rendered::build(|o| {
        if let Some(h) = &r.host {
            o.str("hostname", h);
        }
        if let Some(p) = r.port {
            o.u64("http_port", p.into());
        }
        o.str("url", &r.uri);
        if let Some(ua) = &r.user_agent {
            o.str("http_user_agent", ua);
        }
        o.str("http_method", &r.method);
        if !r.protocol.is_empty() {
            o.str("protocol", &r.protocol);
        }
        if let Some(resp) = resp {
            o.u64("status", resp.status.into());
            if let Some(t) = &resp.content_type {
                o.str("http_content_type", t);
            }
            if let Some(n) = resp.content_length {
                o.u64("length", n);
            }
        }
    });
    AppEvent {
        ts: tx.ts,
        event_type: "http",
        body,
        extra: None,
        dns: None,
    }
}

impl Analyzer for HttpAnalyzer {
    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>, out: &mut Emit) {
        let i = dir.index();
        let Some(side) = self.sides.get_mut(i) else {
            return;
        };
        let mut side = std::mem::take(side);
        match chunk {
            Chunk::Gap(_) => side.stop(),
            Chunk::Data(data) => {
                let mut items = Vec::new();
                side.push(data, &mut |s, item| match item {
                    Item::Head(head) => {
                        // Heads set the body state before more bytes are read.
                        match dir {
                            Dir::ToServer => self.on_request(s, &head, pkt, out),
                            Dir::ToClient => self.on_response(s, &head, pkt, out),
                        }
                    }
                    Item::Json(body) => items.push(body),
                });
                for body in items {
                    self.on_json(dir, &body, pkt, out);
                }
            }
        }
        if let Some(slot) = self.sides.get_mut(i) {
            *slot = side;
        }
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        self.sides
            .get(dir.index())
            .is_some_and(|s| s.state != State::Done)
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }

    /// The oldest request still waiting for its response.
    fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        self.open.front().map(|tx| ("http", log(tx, None).body))
    }

    fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        for tx in self.open.drain(..) {
            out.push(log(&tx, None));
        }
        // A mining request no pool answered is still mining evidence.
        if let Some(m) = self.mining.attempt_facts() {
            self.facts.mining = Some(Box::new(m));
            self.facts.touch();
            if !self.mining_logged {
                self.mining_logged = true;
                out.push(AppEvent {
                    ts: last_ts,
                    event_type: "stratum",
                    body: Rendered::of(&self.mining.eve()),
                    extra: None,
                    dns: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
