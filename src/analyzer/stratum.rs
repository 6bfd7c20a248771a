//! Mining protocols on any port: Stratum v1, the CryptoNote/XMRig `login`
//! dialect and ethproxy, all newline-delimited JSON-RPC over TCP, read
//! anywhere in the first messages of a flow (not only at its first byte).
//!
//! A method name alone is not a verdict: a benign JSON-RPC service may well
//! have a `login` method. A flow is called mining only when the exchange
//! itself is mining-shaped (see [`MiningDetector`]): a mining request and
//! its reply (for `login`, a reply carrying a job), two distinct mining
//! methods, or a mining request plus a pool's own push (`mining.notify`,
//! `job`, ...). Until then the flow's `app_proto` stays unknown.
//!
//! EVE: one `event_type: "stratum"` record per confirmed flow (not a
//! Suricata type; the layout is ours):
//! `stratum {protocol, methods, login, agent, confirmed_by}`, with the
//! evidence (packet indices and times) under `egresswatch.stratum`.
//! A flow whose client used an unambiguous mining method (`mining.*`,
//! `eth_*`, getwork, or an XMRig `login` that names its algorithms or
//! rig) that no pool answered gets the same record at its end with
//! `confirmed_by: null` and mining facts marked as an attempt
//! (`unanswered`: the server sent nothing; `refused`: it sent an error or
//! something that is not a pool's reply), so a miner whose pool is
//! blocked or gone is still found.

use super::{
    Analyzer, AppEvent, AppFacts, Chunk, Dir, Emit, Evidence, FlowContext, MiningFacts, PacketView,
    Probe, Protocol,
};
use crate::json::Rendered;
use crate::time::Timestamp;
use serde_json::{json, Value};

/// Longest JSON message kept while waiting for its end.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Most JSON messages read per direction.
pub const MAX_MESSAGES: u32 = 64;
/// Messages still read per direction after the verdict, to pick up the
/// login that follows a subscribe.
const MESSAGES_AFTER_VERDICT: u32 = 8;
/// Longest login or agent string kept.
const MAX_FIELD_LEN: usize = 256;
/// Most pending requests remembered for reply matching.
const MAX_PENDING: usize = 16;
/// Most distinct method names remembered.
const MAX_METHODS: usize = 16;
/// Bytes a probe looks at.
const PROBE_WINDOW: usize = 4096;

/// Quoted names whose presence makes a JSON-ish payload worth analysing.
const MARKERS: [&[u8]; 10] = [
    b"\"mining.",
    b"\"login\"",
    b"\"eth_submitLogin\"",
    b"\"eth_login\"",
    b"\"eth_getWork\"",
    b"\"eth_submitWork\"",
    b"\"eth_submitHashrate\"",
    b"\"job\"",
    b"\"getjob\"",
    b"\"submit\"",
];

/// Claims flows that carry JSON-RPC with mining method names.
pub struct StratumProtocol;

impl Protocol for StratumProtocol {
    fn name(&self) -> &'static str {
        "stratum"
    }

    fn probe(&self, _ctx: &FlowContext, _dir: Dir, data: &[u8]) -> Probe {
        probe(data)
    }

    fn start(&self, _ctx: &FlowContext) -> Box<dyn Analyzer> {
        Box::new(StratumAnalyzer::new())
    }
}

/// Match when a JSON object with a mining method name appears anywhere in
/// the first bytes; keep looking while the bytes are text (a miner or a
/// proxy may say something else first); give up on binary data.
pub fn probe(data: &[u8]) -> Probe {
    let window = &data[..data.len().min(PROBE_WINDOW)];
    if window.contains(&b'{') && has_marker(window) {
        return Probe::Match;
    }
    if !window.is_empty() && mostly_text(window) {
        Probe::NeedMore
    } else {
        Probe::NoMatch
    }
}

/// At least 90 % printable ASCII; binary data is told apart after its
/// first few bytes.
fn mostly_text(bytes: &[u8]) -> bool {
    let allowed = bytes.len() / 10;
    let mut binary = 0;
    for &b in bytes {
        if !(b.is_ascii_graphic() || b.is_ascii_whitespace()) {
            binary += 1;
            if binary > allowed {
                return false;
            }
        }
    }
    true
}

/// Whether a marker starts at one of the quotes of `hay`.
fn has_marker(hay: &[u8]) -> bool {
    hay.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'"')
        .any(|(i, _)| MARKERS.iter().any(|m| hay[i..].starts_with(m)))
}

/// Splits one direction's bytes into JSON values: whitespace-separated or
/// newline-delimited, split across chunks, several per chunk. Lines that
/// are not JSON are skipped; a message longer than [`MAX_MESSAGE_LEN`] is
/// dropped with the rest of its line.
#[derive(Debug, Default)]
pub struct JsonStream {
    buf: Vec<u8>,
    /// Dropping bytes up to the next newline.
    skipping: bool,
    messages: u32,
    pub skipped_lines: u32,
    pub oversized: u32,
}

impl JsonStream {
    /// Feeds bytes; complete values are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Value>) {
        while !data.is_empty() && !self.exhausted() {
            if self.skipping {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.skipping = false;
                    }
                    None => return,
                }
            }
            let take = (MAX_MESSAGE_LEN - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.drain(out);
            if self.buf.len() >= MAX_MESSAGE_LEN {
                self.oversized += 1;
                self.buf.clear();
                self.skipping = true;
            }
        }
    }

    /// Bytes are missing: resume at the next line.
    pub fn gap(&mut self) {
        self.buf.clear();
        self.skipping = true;
    }

    /// Whether the message budget is used up.
    pub fn exhausted(&self) -> bool {
        self.messages >= MAX_MESSAGES
    }

    pub fn messages(&self) -> u32 {
        self.messages
    }

    fn drain(&mut self, out: &mut Vec<Value>) {
        let mut at = 0;
        while let Some(start) = self.buf[at..].iter().position(|b| !b.is_ascii_whitespace()) {
            at += start;
            if self.exhausted() {
                break;
            }
            let rest = &self.buf[at..];
            if !matches!(rest.first(), Some(b'{' | b'[')) {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.skipped_lines += 1;
                        at += i + 1;
                        continue;
                    }
                    None => break,
                }
            }
            let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
            match values.next() {
                Some(Ok(v)) => {
                    at += values.byte_offset();
                    self.messages += 1;
                    out.push(v);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    self.skipped_lines += 1;
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => at += i + 1,
                        None => {
                            at = self.buf.len();
                            self.skipping = true;
                        }
                    }
                }
                None => break,
            }
        }
        if at >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..at);
        }
    }
}

/// Mining protocol families, as written in [`MiningFacts::protocol`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Family {
    /// Stratum v1 (`mining.*`).
    Stratum,
    /// CryptoNote / XMRig `login` / `job` / `submit`.
    XmrigLogin,
    /// ethproxy / Ethereum stratum proxy (`eth_submitLogin`, `eth_getWork`).
    EthProxy,
    /// Pre-Stratum HTTP JSON-RPC (`getwork`, `getblocktemplate`).
    Getwork,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Stratum => "stratum",
            Family::XmrigLogin => "xmrig-login",
            Family::EthProxy => "ethproxy",
            Family::Getwork => "getwork",
        }
    }
}

/// A recognised client request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct ClientMethod {
    name: &'static str,
    family: Family,
    /// The reply must carry a job for the pair to count (`login`).
    reply_needs_job: bool,
    /// The request alone is evidence of a mining client (every method but
    /// a CryptoNote `login` or `submit` that could be a benign API's).
    unambiguous: bool,
}

/// Classifies a client request by method name and, where the name alone is
/// ambiguous, by the shape of its parameters.
fn client_method(method: &str, params: &Value) -> Option<ClientMethod> {
    let m = |name, family| {
        Some(ClientMethod {
            name,
            family,
            reply_needs_job: false,
            unambiguous: family != Family::XmrigLogin,
        })
    };
    let has = |key: &str| params.get(key).is_some();
    match method {
        "mining.subscribe" => m("mining.subscribe", Family::Stratum),
        "mining.authorize" => m("mining.authorize", Family::Stratum),
        "mining.configure" => m("mining.configure", Family::Stratum),
        "mining.submit" => m("mining.submit", Family::Stratum),
        "mining.extranonce.subscribe" => m("mining.extranonce.subscribe", Family::Stratum),
        "mining.suggest_difficulty" => m("mining.suggest_difficulty", Family::Stratum),
        "mining.suggest_target" => m("mining.suggest_target", Family::Stratum),
        "mining.get_transactions" => m("mining.get_transactions", Family::Stratum),
        "login" if has("login") => Some(ClientMethod {
            name: "login",
            family: Family::XmrigLogin,
            reply_needs_job: true,
            unambiguous: miner_login(params),
        }),
        "submit" if has("job_id") && has("nonce") => m("submit", Family::XmrigLogin),
        "getjob" if has("id") => m("getjob", Family::XmrigLogin),
        "keepalived" => m("keepalived", Family::XmrigLogin),
        "eth_submitLogin" => m("eth_submitLogin", Family::EthProxy),
        "eth_login" => m("eth_login", Family::EthProxy),
        "eth_getWork" => m("eth_getWork", Family::EthProxy),
        "eth_submitWork" => m("eth_submitWork", Family::EthProxy),
        "eth_submitHashrate" => m("eth_submitHashrate", Family::EthProxy),
        "getwork" => m("getwork", Family::Getwork),
        "getblocktemplate" => m("getblocktemplate", Family::Getwork),
        _ => None,
    }
}

/// An XMRig-style `login` that only a miner sends: it lists the hashing
/// algorithms (`algo`) or a rig id (`rigid`), or its agent names a miner.
fn miner_login(params: &Value) -> bool {
    const MINERS: [&str; 6] = [
        "xmrig",
        "xmr-stak",
        "srbminer",
        "cpuminer",
        "teamred",
        "nanominer",
    ];
    let agent = params
        .get("agent")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    params.get("algo").is_some()
        || params.get("rigid").is_some()
        || agent.is_some_and(|a| MINERS.iter().any(|m| a.contains(m)))
}

/// Classifies a pool's own push (a request without a reply from the
/// server side).
fn server_method(method: &str, params: &Value) -> Option<(&'static str, Family)> {
    let has = |key: &str| params.get(key).is_some();
    match method {
        "mining.notify" => Some(("mining.notify", Family::Stratum)),
        "mining.set_difficulty" => Some(("mining.set_difficulty", Family::Stratum)),
        "mining.set_target" => Some(("mining.set_target", Family::Stratum)),
        "mining.set_extranonce" => Some(("mining.set_extranonce", Family::Stratum)),
        "mining.set_version_mask" => Some(("mining.set_version_mask", Family::Stratum)),
        "job" if has("blob") || has("job_id") => Some(("job", Family::XmrigLogin)),
        _ => None,
    }
}

/// A job in a CryptoNote login reply: `result.job` with a blob or job id.
fn reply_has_job(msg: &Value) -> bool {
    msg.get("result")
        .and_then(|r| r.get("job"))
        .is_some_and(|j| j.get("blob").is_some() || j.get("job_id").is_some())
}

/// ethproxy pushes new work as an unsolicited reply: a result of three or
/// more `0x` hex strings (header hash, seed hash, target).
fn is_eth_work_push(msg: &Value) -> bool {
    msg.get("result")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.len() >= 3
                && a.iter().all(|s| {
                    s.as_str()
                        .is_some_and(|s| s.starts_with("0x") && s.len() > 2)
                })
        })
}

#[derive(Clone, Debug)]
struct Pending {
    id: Value,
    method: ClientMethod,
}

/// Why a flow was called mining.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// A mining request and its matching reply.
    Reply,
    /// Two distinct mining methods from the client.
    ClientMethods,
    /// A mining request and a pool push, or two distinct pool pushes.
    ServerPush,
}

impl Confirmation {
    pub fn name(self) -> &'static str {
        match self {
            Confirmation::Reply => "reply",
            Confirmation::ClientMethods => "client_methods",
            Confirmation::ServerPush => "server_push",
        }
    }
}

/// Reads JSON-RPC messages of one flow and decides whether they are a
/// mining session. Shared by the Stratum analyzer (raw TCP) and the HTTP
/// analyzer (JSON-RPC bodies).
#[derive(Debug, Default)]
pub struct MiningDetector {
    pending: Vec<Pending>,
    client_methods: Vec<&'static str>,
    server_methods: Vec<&'static str>,
    /// Every method seen, in order, for the record.
    methods: Vec<&'static str>,
    family: Option<Family>,
    login: Option<String>,
    agent: Option<String>,
    packets: Vec<u64>,
    first_ts: Option<Timestamp>,
    last_ts: Timestamp,
    confirmed: Option<Confirmation>,
    /// The family of the first unambiguous client method (any but the
    /// CryptoNote names, which benign APIs share, unless the login is a
    /// miner's).
    attempt: Option<Family>,
    /// The server sent something (bytes, a message, a header).
    answered: bool,
    /// The server replied to a mining request with an error, or its reply
    /// to a login carried no job.
    refused: bool,
    /// Login or agent learned since the facts were last taken.
    changed: bool,
}

impl MiningDetector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn confirmed(&self) -> Option<Confirmation> {
        self.confirmed
    }

    pub fn login(&self) -> Option<&str> {
        self.login.as_deref()
    }

    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Whether anything mining-like was seen at all.
    pub fn saw_mining_method(&self) -> bool {
        !self.methods.is_empty()
    }

    /// An unconfirmed but unambiguous attempt: the client used a Stratum,
    /// ethproxy or getwork method that no pool answered (pool probes,
    /// unreachable or wrong-protocol pools).
    pub fn attempted(&self) -> Option<Family> {
        self.attempt.filter(|_| self.confirmed.is_none())
    }

    /// The server sent bytes on the flow (whether or not they parse).
    pub fn server_spoke(&mut self) {
        self.answered = true;
    }

    /// How an attempt went: `refused` when the server answered (with an
    /// error, or with something that is not a pool), else `unanswered`.
    pub fn attempt_outcome(&self) -> &'static str {
        if self.refused || self.answered {
            "refused"
        } else {
            "unanswered"
        }
    }

    /// The facts of an attempt ([`attempted`](Self::attempted)): a mining
    /// client's request alone, no pool's answer.
    pub fn attempt_facts(&self) -> Option<MiningFacts> {
        let family = self.attempted()?;
        let mut summary = format!(
            "{} attempt ({}): {}",
            family.name(),
            self.attempt_outcome(),
            self.methods.join(", ")
        );
        self.push_credentials(&mut summary);
        let first = self.first_ts.unwrap_or(self.last_ts);
        Some(MiningFacts {
            protocol: family.name(),
            wallet: self.login.clone(),
            agent: self.agent.clone(),
            evidence: Evidence::new(summary, &self.packets, first, self.last_ts),
        })
    }

    fn push_credentials(&self, summary: &mut String) {
        if let Some(l) = &self.login {
            summary.push_str(&format!("; login {l}"));
        }
        if let Some(a) = &self.agent {
            summary.push_str(&format!("; agent {a}"));
        }
    }

    /// Feeds one JSON value (a message or a batch). Returns true when this
    /// message confirmed the flow as mining, or added a login or agent to
    /// a confirmed flow.
    pub fn on_message(&mut self, dir: Dir, msg: &Value, packet: u64, ts: Timestamp) -> bool {
        let before = (self.confirmed.is_some(), self.changed);
        match msg {
            Value::Array(batch) => {
                for m in batch.iter().take(MAX_PENDING) {
                    self.on_object(dir, m, packet, ts);
                }
            }
            _ => self.on_object(dir, msg, packet, ts),
        }
        let after = (self.confirmed.is_some(), self.changed);
        after.0 && after != before
    }

    fn on_object(&mut self, dir: Dir, msg: &Value, packet: u64, ts: Timestamp) {
        let method = msg.get("method").and_then(Value::as_str);
        let params = msg.get("params").unwrap_or(&Value::Null);
        if dir == Dir::ToClient {
            self.answered = true;
        }
        match (dir, method) {
            (Dir::ToServer, Some(name)) => {
                if let Some(m) = client_method(name, params) {
                    self.on_client_request(m, msg, params, packet, ts);
                }
            }
            (Dir::ToClient, Some(name)) => {
                if let Some((name, family)) = server_method(name, params) {
                    self.on_server_push(name, family, packet, ts);
                }
            }
            (Dir::ToClient, None) => self.on_reply(msg, packet, ts),
            (Dir::ToServer, None) => {}
        }
    }

    fn note(&mut self, name: &'static str, packet: u64, ts: Timestamp) {
        if !self.methods.contains(&name) && self.methods.len() < MAX_METHODS {
            self.methods.push(name);
        }
        if self.packets.len() < Evidence::MAX_PACKETS && !self.packets.contains(&packet) {
            self.packets.push(packet);
        }
        self.first_ts.get_or_insert(ts);
        self.last_ts = self.last_ts.max(ts);
    }

    fn confirm(&mut self, how: Confirmation, family: Family) {
        if self.confirmed.is_none() {
            self.confirmed = Some(how);
            self.family = Some(family);
        }
    }

    /// A mining signal from the client that is not a JSON-RPC method (for
    /// example getwork's `X-Mining-Extensions` HTTP header). It counts as a
    /// distinct client method.
    pub fn on_client_hint(
        &mut self,
        name: &'static str,
        family: Family,
        packet: u64,
        ts: Timestamp,
    ) {
        self.note(name, packet, ts);
        // A header is a hint, not a request: alone it is no attempt.
        self.add_client_method(name, family, false);
    }

    /// A mining signal from the server that is not a JSON-RPC push (for
    /// example getwork's `X-Stratum` or `X-Long-Polling` headers).
    pub fn on_server_hint(
        &mut self,
        name: &'static str,
        family: Family,
        packet: u64,
        ts: Timestamp,
    ) {
        self.answered = true;
        self.on_server_push(name, family, packet, ts);
    }

    /// Login and agent learned outside JSON-RPC (HTTP Basic user, HTTP
    /// User-Agent); values from JSON-RPC seen earlier are kept.
    pub fn offer_credentials(&mut self, login: Option<&str>, agent: Option<&str>) {
        if let Some(l) = login.filter(|l| !l.is_empty() && self.login.is_none()) {
            self.login = Some(truncate(l));
            self.changed = true;
        }
        if let Some(a) = agent.filter(|a| !a.is_empty() && self.agent.is_none()) {
            self.agent = Some(truncate(a));
            self.changed = true;
        }
    }

    fn add_client_method(&mut self, name: &'static str, family: Family, unambiguous: bool) {
        if unambiguous {
            self.attempt.get_or_insert(family);
        }
        if !self.client_methods.contains(&name) {
            self.client_methods.push(name);
        }
        if self.client_methods.len() >= 2 {
            self.confirm(Confirmation::ClientMethods, family);
        } else if !self.server_methods.is_empty() {
            self.confirm(Confirmation::ServerPush, family);
        }
    }

    fn on_client_request(
        &mut self,
        m: ClientMethod,
        msg: &Value,
        params: &Value,
        packet: u64,
        ts: Timestamp,
    ) {
        self.note(m.name, packet, ts);
        self.take_credentials(m.name, msg, params);
        if let Some(id) = msg.get("id").filter(|id| !id.is_null()) {
            if self.pending.len() == MAX_PENDING {
                self.pending.remove(0);
            }
            self.pending.push(Pending {
                id: id.clone(),
                method: m,
            });
        }
        self.add_client_method(m.name, m.family, m.unambiguous);
    }

    fn on_server_push(&mut self, name: &'static str, family: Family, packet: u64, ts: Timestamp) {
        self.note(name, packet, ts);
        if !self.server_methods.contains(&name) {
            self.server_methods.push(name);
        }
        if !self.client_methods.is_empty() || self.server_methods.len() >= 2 {
            self.confirm(Confirmation::ServerPush, family);
        }
    }

    fn on_reply(&mut self, msg: &Value, packet: u64, ts: Timestamp) {
        let Some(id) = msg.get("id") else {
            return;
        };
        if msg.get("result").is_none() && msg.get("error").is_none() {
            return;
        }
        if let Some(i) = self.pending.iter().position(|p| p.id == *id) {
            let p = self.pending.remove(i);
            if !p.method.reply_needs_job || reply_has_job(msg) {
                self.note(p.method.name, packet, ts);
                self.confirm(Confirmation::Reply, p.method.family);
            } else {
                self.refused = true;
            }
            return;
        }
        if is_eth_work_push(msg) && !self.client_methods.is_empty() {
            self.note("eth_getWork", packet, ts);
            self.confirm(Confirmation::ServerPush, Family::EthProxy);
        }
    }

    /// The login (wallet or worker) and agent a request carries.
    fn take_credentials(&mut self, method: &str, msg: &Value, params: &Value) {
        let first = params.get(0).and_then(Value::as_str);
        let (login, agent) = match method {
            "mining.authorize" | "eth_submitLogin" | "eth_login" => (first, None),
            "mining.subscribe" => (None, first),
            "login" => (
                params.get("login").and_then(Value::as_str),
                params.get("agent").and_then(Value::as_str),
            ),
            _ => (None, None),
        };
        let worker = msg
            .get("worker")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty());
        let login = match (login, worker) {
            (Some(l), Some(w)) if !l.contains(w) => Some(format!("{l} (worker {w})")),
            (l, _) => l.map(str::to_string),
        };
        if let Some(l) = login.filter(|l| !l.is_empty()) {
            if self.login.is_none() {
                self.login = Some(truncate(&l));
                self.changed = true;
            }
        }
        if let Some(a) = agent.filter(|a| !a.is_empty()) {
            if self.agent.is_none() {
                self.agent = Some(truncate(a));
                self.changed = true;
            }
        }
    }

    /// The facts of a confirmed flow.
    pub fn facts(&mut self) -> Option<MiningFacts> {
        let how = self.confirmed?;
        let family = self.family?;
        self.changed = false;
        let mut summary = format!(
            "{} session ({}): {}",
            family.name(),
            how.name(),
            self.methods.join(", ")
        );
        self.push_credentials(&mut summary);
        let first = self.first_ts.unwrap_or(self.last_ts);
        Some(MiningFacts {
            protocol: family.name(),
            wallet: self.login.clone(),
            agent: self.agent.clone(),
            evidence: Evidence::new(summary, &self.packets, first, self.last_ts),
        })
    }

    /// The EVE `stratum` object; `confirmed_by` is null for an attempt.
    pub fn eve(&self) -> Value {
        json!({
            "protocol": self.family.or(self.attempt).map(Family::name),
            "methods": self.methods,
            "login": self.login,
            "agent": self.agent,
            "confirmed_by": self.confirmed.map(Confirmation::name),
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_FIELD_LEN).collect()
}

/// Mining pool domains (a user-extendable list shipped in `rules/`): a
/// TLS SNI, HTTP Host or DNS name on it marks the flow as mining even when
/// the protocol itself is hidden (Stratum over TLS, xmrig `--tls`).
///
/// Text format: one domain per line, `#` starts a comment; an entry matches
/// the domain itself and every name below it (`*.` or `.` prefixes are
/// accepted and mean the same).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolList {
    /// Lowercase domains without a trailing dot.
    domains: std::collections::HashSet<String>,
}

/// A line of a pool list that is not a domain name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text:?} is not a domain name")]
pub struct PoolListError {
    pub line: usize,
    pub text: String,
}

impl PoolList {
    pub fn parse(text: &str) -> Result<PoolList, PoolListError> {
        let mut domains = std::collections::HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let entry = raw.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let bare = entry
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.');
            let ok = !bare.is_empty()
                && bare.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !ok {
                return Err(PoolListError {
                    line: i + 1,
                    text: entry.to_string(),
                });
            }
            domains.insert(bare.to_ascii_lowercase());
        }
        Ok(PoolList { domains })
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The list entry `name` falls under, if any (the name itself or its
    /// closest listed parent domain).
    pub fn matches(&self, name: &str) -> Option<&str> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(hit) = self.domains.get(rest) {
                return Some(hit.as_str());
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Mining facts for a flow whose `name` (from `source`, e.g. "TLS
    /// SNI") is on the list.
    pub fn facts_for(
        &self,
        name: &str,
        source: &str,
        packets: &[u64],
        first_ts: Timestamp,
        last_ts: Timestamp,
    ) -> Option<MiningFacts> {
        let entry = self.matches(name)?;
        Some(MiningFacts {
            protocol: "pool-name",
            wallet: None,
            agent: None,
            evidence: Evidence::new(
                format!("{source} {name} is on the mining pool list ({entry})"),
                packets,
                first_ts,
                last_ts,
            ),
        })
    }
}

/// Per-flow Stratum state.
pub struct StratumAnalyzer {
    facts: AppFacts,
    streams: [JsonStream; 2],
    detector: MiningDetector,
    /// Messages read per direction since the verdict.
    after_verdict: [u32; 2],
    logged: bool,
    scratch: Vec<Value>,
}

impl Default for StratumAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl StratumAnalyzer {
    pub fn new() -> Self {
        StratumAnalyzer {
            // No app_proto until the exchange is known to be mining.
            facts: AppFacts::default(),
            streams: Default::default(),
            detector: MiningDetector::new(),
            after_verdict: [0; 2],
            logged: false,
            scratch: Vec::new(),
        }
    }

    pub fn detector(&self) -> &MiningDetector {
        &self.detector
    }

    fn update_facts(&mut self) {
        if let Some(m) = self.detector.facts() {
            self.facts.app_proto = Some("stratum");
            self.facts.mining = Some(Box::new(m));
            self.facts.touch();
        }
    }

    /// Logs once the login is known, or when reading stops.
    fn maybe_log(&mut self, ts: Timestamp, out: &mut Emit, at_end: bool) {
        if self.logged || self.detector.confirmed().is_none() {
            return;
        }
        let done = !self.wants_stream(Dir::ToServer) && !self.wants_stream(Dir::ToClient);
        if !(at_end || done || self.detector.login().is_some()) {
            return;
        }
        self.logged = true;
        let evidence = self
            .facts
            .mining
            .as_ref()
            .map(|m| Rendered::of(&json!({ "evidence": m.evidence })));
        out.push(AppEvent {
            ts,
            event_type: "stratum",
            body: Rendered::of(&self.detector.eve()),
            extra: evidence,
            dns: None,
        });
    }
}

impl Analyzer for StratumAnalyzer {
    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>, out: &mut Emit) {
        if !self.wants_stream(dir) {
            return;
        }
        let i = dir.index();
        let mut values = std::mem::take(&mut self.scratch);
        if dir == Dir::ToClient && matches!(chunk, Chunk::Data(d) if !d.is_empty()) {
            self.detector.server_spoke();
        }
        match (chunk, self.streams.get_mut(i)) {
            (Chunk::Data(data), Some(s)) => s.push(data, &mut values),
            (Chunk::Gap(_), Some(s)) => s.gap(),
            _ => {}
        }
        for v in values.drain(..) {
            let was_confirmed = self.detector.confirmed().is_some();
            if self.detector.on_message(dir, &v, pkt.index, pkt.ts) {
                self.update_facts();
            }
            if was_confirmed {
                if let Some(n) = self.after_verdict.get_mut(i) {
                    *n += 1;
                }
            }
        }
        self.scratch = values;
        self.maybe_log(pkt.ts, out, false);
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        let i = dir.index();
        let Some(stream) = self.streams.get(i) else {
            return false;
        };
        let verdict_done = self.detector.confirmed().is_some()
            && self
                .after_verdict
                .get(i)
                .is_some_and(|&n| n >= MESSAGES_AFTER_VERDICT);
        !stream.exhausted() && !verdict_done
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }

    fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        self.maybe_log(last_ts, out, true);
        if !self.logged && self.detector.attempted().is_some() {
            // A mining client's request alone: an attempt, still mining.
            if let Some(m) = self.detector.attempt_facts() {
                self.facts.app_proto = Some("stratum");
                self.facts.mining = Some(Box::new(m));
                self.facts.touch();
            }
            self.logged = true;
            out.push(AppEvent {
                ts: last_ts,
                event_type: "stratum",
                body: Rendered::of(&self.detector.eve()),
                extra: None,
                dns: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
