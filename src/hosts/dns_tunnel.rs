//! DNS tunnels (`dns-tunnel`): per client and registered domain, over a
//! sliding window of packet time, what a tunnel cannot hide. Data carried
//! in names makes many distinct names under one domain; encoded data makes
//! long, high-entropy labels; the way back wants record types that carry
//! bytes (NULL, TXT, CNAME, MX, SRV, KEY, private types) and answers much
//! larger than an address. A (client, domain) is a tunnel when at least
//! `min_unique` distinct names were asked within the window and at least
//! two of the four shapes hold:
//!
//! - *names*: at least half of the queries have an encoded-looking name;
//! - *types*: at least half ask for a data-carrying type;
//! - *volume*: the names carried at least `name_bytes` bytes;
//! - *answers*: answers average at least `answer_bytes` bytes.
//!
//! One finding when the episode starts, one more at ten times
//! `min_unique` distinct names.
//!
//! Not counted: mDNS, LLMNR and NetBIOS (by port or multicast
//! destination, in [`crate::hosts`]), `.local` and `.arpa` names, labels
//! that start with `_` (DNS-SD and SRV service labels), names without a
//! registrable domain. A domain is only tracked from its first query that
//! looks like a tunnel's (encoded name or data-carrying type), so a
//! client's ordinary lookups take no room.
//!
//! Memory is bounded twice over. Per client: at most `domains_per_client`
//! domains of [`DOMAIN_BYTES`] each (when full, an idle domain or the one
//! with the fewest queries is let go). Clients: at most `max_clients`;
//! when full, idle clients go first and then the least recently seen
//! eighth. Every domain let go is counted in [`DnsTunnels::dropped`].
//!
//! Pure: no I/O, no clock (time is the messages' packet time), no globals.

use super::discovery::{mix, Bitmap};
use super::window::Window;
use crate::flow::key::Endpoint;
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::collections::HashMap;
use std::net::IpAddr;

/// Buckets per window.
pub use super::window::BUCKETS;
/// Longest domain name kept (bytes); longer names are cut.
pub const MAX_DOMAIN_LEN: usize = 96;
/// Longest sample name kept in a finding (bytes).
pub const SAMPLE_LEN: usize = 80;
/// Distinct names rise a level at this many times `min_unique`.
pub const ESCALATION: u32 = 10;

/// Record types that carry data back (besides addresses).
pub fn data_type(qtype: u16) -> bool {
    matches!(qtype, 5 | 10 | 15 | 16 | 25 | 33 | 65280..=65534)
}

/// One DNS message of a client: its query, or the response it got.
#[derive(Copy, Clone, Debug)]
pub struct Message<'a> {
    pub ts: Timestamp,
    pub flow_id: u64,
    pub client: IpAddr,
    pub resolver: Endpoint,
    pub response: bool,
    pub qname: &'a str,
    pub qtype: u16,
    pub size: u32,
}

/// Thresholds and bounds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DnsTunnelConfig {
    pub window_seconds: u64,
    /// Distinct names under one domain that make a tunnel (with two shapes).
    pub min_unique: u32,
    /// Bytes of names (below the registered domain) that make *volume*.
    pub name_bytes: u32,
    /// Mean answer size that makes *answers*.
    pub answer_bytes: u32,
    pub max_clients: usize,
    pub domains_per_client: usize,
}

impl Default for DnsTunnelConfig {
    fn default() -> Self {
        DnsTunnelConfig {
            window_seconds: 300,
            min_unique: 48,
            name_bytes: 4096,
            answer_bytes: 256,
            max_clients: 4096,
            domains_per_client: 8,
        }
    }
}

/// What a name below its registered domain looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct NameShape<'a> {
    /// The registered domain (lower case).
    pub domain: &'a str,
    /// Bytes below the domain, dots and `_` labels not counted.
    pub length: u32,
    pub longest_label: u32,
    /// Shannon entropy of those bytes, bits per byte.
    pub entropy: f64,
    /// Bytes outside a host name's letters, digits and `-`.
    pub odd: u32,
    /// Hash of those bytes (the distinct-name count).
    pub hash: u64,
}

impl NameShape<'_> {
    /// Long and random-looking, or full of bytes no host name has.
    pub fn encoded(&self) -> bool {
        (self.length >= 20 && self.entropy >= 3.4)
            || self.longest_label >= 40
            || (self.length >= 8 && self.odd * 4 >= self.length)
    }
}

/// The shape of `name` (lower case), `None` for names the detector does
/// not count.
pub fn name_shape(name: &str) -> Option<NameShape<'_>> {
    let name = name.trim_end_matches('.');
    if name.ends_with(".local") || name.ends_with(".arpa") || !name.contains('.') {
        return None;
    }
    let domain = psl::domain_str(name)?;
    let sub = name.get(..name.len().checked_sub(domain.len() + 1)?)?;
    let mut hist = [0u16; 256];
    let (mut length, mut longest, mut odd, mut hash) = (0u32, 0u32, 0u32, 0u64);
    for label in sub.split('.').filter(|l| !l.starts_with('_')) {
        let mut n = 0u32;
        for b in unescape(label) {
            n += 1;
            hist[usize::from(b)] = hist[usize::from(b)].saturating_add(1);
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                odd += 1;
            }
            hash = mix(hash ^ u64::from(b));
        }
        hash = mix(hash ^ 0x2e);
        length += n;
        longest = longest.max(n);
    }
    if length == 0 {
        return None;
    }
    Some(NameShape {
        domain,
        length,
        longest_label: longest,
        entropy: entropy(&hist, length),
        odd,
        hash,
    })
}

/// The bytes of a label as the DNS parser escaped them (`\\`, `\xNN`).
fn unescape(label: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = label.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        if b != b'\\' {
            i += 1;
            return Some(b);
        }
        match bytes.get(i + 1) {
            Some(b'x') => {
                let hex = label
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                i += if hex.is_some() { 4 } else { 1 };
                Some(hex.unwrap_or(b'\\'))
            }
            Some(&next) => {
                i += 2;
                Some(next)
            }
            None => {
                i += 1;
                Some(b)
            }
        }
    })
}

fn entropy(hist: &[u16; 256], total: u32) -> f64 {
    let n = f64::from(total);
    hist.iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Counts over the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub queries: u32,
    /// Distinct names (estimated).
    pub unique: u32,
    pub encoded: u32,
    pub data_types: u32,
    pub name_bytes: u32,
    pub longest_name: u32,
    pub responses: u32,
    pub response_bytes: u64,
    pub largest_response: u32,
}

impl Counts {
    pub fn mean_response(&self) -> u32 {
        if self.responses == 0 {
            return 0;
        }
        (self.response_bytes / u64::from(self.responses)) as u32
    }

    /// Which of the four shapes hold, by name.
    pub fn shapes(&self, cfg: &DnsTunnelConfig) -> Vec<&'static str> {
        let half = |n: u32| n > 0 && n.saturating_mul(2) >= self.queries;
        [
            ("names", half(self.encoded)),
            ("types", half(self.data_types)),
            ("volume", self.name_bytes >= cfg.name_bytes),
            ("answers", self.mean_response() >= cfg.answer_bytes),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}

/// A tunnel episode started (level 1) or grew tenfold (level 2).
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub client: IpAddr,
    pub resolver: Endpoint,
    pub flow_id: u64,
    pub domain: String,
    /// One of the encoded names (cut at [`SAMPLE_LEN`] bytes).
    pub sample: String,
    pub level: u8,
    pub counts: Counts,
    pub shapes: Vec<&'static str>,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    pub window_seconds: u64,
}

impl Finding {
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "dns-tunnel from {} via {}: {} distinct names under {} in {} queries \
             ({} encoded, {} of data-carrying types, {} bytes of names, longest {}), \
             {} answers averaging {} bytes (largest {}) within {} s; shapes {}",
            self.client,
            self.resolver.addr,
            c.unique,
            self.domain,
            c.queries,
            c.encoded,
            c.data_types,
            c.name_bytes,
            c.longest_name,
            c.responses,
            c.mean_response(),
            c.largest_response,
            self.window_seconds,
            self.shapes.join(",")
        )
    }
}

/// One slice of the window.
#[derive(Clone, Debug, Default)]
struct Bucket {
    names: Bitmap<8>,
    queries: u32,
    encoded: u32,
    data_types: u32,
    name_bytes: u32,
    longest_name: u32,
    responses: u32,
    response_bytes: u64,
    largest_response: u32,
}

/// One (client, domain) in the window.
#[derive(Clone, Debug)]
struct Domain {
    hash: u64,
    name: Box<str>,
    window: Window<Bucket>,
    first_ts: Timestamp,
    last_seen: Timestamp,
    level: u8,
    sample: Box<str>,
}

/// Bytes one tracked domain costs at most.
pub const DOMAIN_BYTES: usize = std::mem::size_of::<Domain>() + MAX_DOMAIN_LEN + SAMPLE_LEN;

// The bound docs/DETECTION.md states (under 1 KiB a domain).
const _: () = assert!(DOMAIN_BYTES < 1024);

#[derive(Debug, Default)]
struct Client {
    domains: Vec<Domain>,
    last_seen: Timestamp,
}

/// The detector: one per host stage.
#[derive(Debug)]
pub struct DnsTunnels {
    cfg: DnsTunnelConfig,
    clients: HashMap<IpAddr, Client>,
    dropped: u64,
    lower: String,
}

impl DnsTunnels {
    pub fn new(cfg: DnsTunnelConfig) -> Self {
        DnsTunnels {
            cfg,
            clients: HashMap::new(),
            dropped: 0,
            lower: String::new(),
        }
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Domains let go before their window ended, to make room.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn window(&self) -> u64 {
        self.cfg.window_seconds.saturating_mul(NANOS_PER_SEC)
    }

    fn epoch(&self, ts: Timestamp) -> u64 {
        super::window::epoch(ts, self.cfg.window_seconds)
    }

    /// Counts one message; a finding when it starts or escalates an
    /// episode.
    pub fn observe(&mut self, m: &Message<'_>) -> Option<Finding> {
        let mut lower = std::mem::take(&mut self.lower);
        lower.clear();
        lower.extend(m.qname.chars().map(|c| c.to_ascii_lowercase()));
        let found = self.observe_name(m, &lower);
        self.lower = lower;
        found
    }

    fn observe_name(&mut self, m: &Message<'_>, lower: &str) -> Option<Finding> {
        let shape = name_shape(lower)?;
        let interesting = shape.encoded() || data_type(m.qtype);
        let epoch = self.epoch(m.ts);
        let window = self.window();
        let domain_hash = hash_str(shape.domain);
        if !m.response && interesting {
            self.make_room(m.client, m.ts);
        }
        let cfg = self.cfg;
        let client = self.clients.get_mut(&m.client)?;
        let at = match client.domains.iter().position(|d| d.hash == domain_hash) {
            Some(at) => at,
            None if m.response || !interesting => return None,
            None => {
                self.dropped += make_domain_room(client, &cfg, m.ts, window);
                client
                    .domains
                    .push(Domain::new(domain_hash, shape.domain, m.ts));
                client.domains.len() - 1
            }
        };
        client.last_seen = client.last_seen.max(m.ts);
        let d = client.domains.get_mut(at)?;
        if m.ts.since(d.last_seen) > window {
            *d = Domain::new(domain_hash, shape.domain, m.ts); // quiet a whole window
        }
        d.last_seen = d.last_seen.max(m.ts);
        d.record(m, &shape, epoch);
        let counts = d.counts();
        let shapes = counts.shapes(&cfg);
        let level = level_of(&cfg, &counts, shapes.len());
        if level <= d.level {
            return None;
        }
        d.level = level;
        Some(Finding {
            client: m.client,
            resolver: m.resolver,
            flow_id: m.flow_id,
            domain: d.name.to_string(),
            sample: d.sample.to_string(),
            level,
            counts,
            shapes,
            first_ts: d.first_ts,
            last_ts: d.last_seen,
            window_seconds: cfg.window_seconds,
        })
    }

    /// Makes sure `client` has an entry, within `max_clients`: idle
    /// clients go first, then the least recently seen eighth (counted by
    /// their domains).
    fn make_room(&mut self, client: IpAddr, now: Timestamp) {
        let max = self.cfg.max_clients.max(1);
        if self.clients.contains_key(&client) {
            return;
        }
        if self.clients.len() >= max {
            let window = self.window();
            let mut idle = 0u64;
            self.clients.retain(|_, c| {
                let keep = now.since(c.last_seen) <= window;
                if !keep {
                    idle += c
                        .domains
                        .iter()
                        .filter(|d| now.since(d.last_seen) <= window)
                        .count() as u64;
                }
                keep
            });
            self.dropped += idle;
        }
        if self.clients.len() >= max {
            let mut seen: Vec<Timestamp> = self.clients.values().map(|c| c.last_seen).collect();
            let cut = (max / 8).max(1).min(seen.len() - 1);
            let (_, limit, _) = seen.select_nth_unstable(cut);
            let limit = *limit;
            let mut gone = 0u64;
            self.clients.retain(|_, c| {
                let keep = c.last_seen > limit;
                if !keep {
                    gone += c.domains.len() as u64;
                }
                keep
            });
            self.dropped += gone;
        }
        self.clients.insert(
            client,
            Client {
                domains: Vec::new(),
                last_seen: now,
            },
        );
    }
}

/// Room for one more domain of `client`: an idle one goes (not counted),
/// else the one with the fewest queries in the window (counted).
fn make_domain_room(
    client: &mut Client,
    cfg: &DnsTunnelConfig,
    now: Timestamp,
    window: u64,
) -> u64 {
    client.domains.retain(|d| now.since(d.last_seen) <= window);
    if client.domains.len() < cfg.domains_per_client.max(1) {
        return 0;
    }
    let weakest = client
        .domains
        .iter()
        .enumerate()
        .min_by_key(|(_, d)| (d.counts().queries, d.last_seen))
        .map(|(i, _)| i);
    if let Some(i) = weakest {
        client.domains.swap_remove(i);
    }
    1
}

impl Domain {
    fn new(hash: u64, name: &str, ts: Timestamp) -> Self {
        Domain {
            hash,
            name: cut(name, MAX_DOMAIN_LEN).into(),
            window: Window::default(),
            first_ts: ts,
            last_seen: ts,
            level: 0,
            sample: Box::from(""),
        }
    }

    fn record(&mut self, m: &Message<'_>, shape: &NameShape<'_>, epoch: u64) {
        let b = self.window.slot(epoch);
        if m.response {
            b.responses = b.responses.saturating_add(1);
            b.response_bytes = b.response_bytes.saturating_add(u64::from(m.size));
            b.largest_response = b.largest_response.max(m.size);
            return;
        }
        b.names.set(shape.hash);
        b.queries = b.queries.saturating_add(1);
        b.name_bytes = b.name_bytes.saturating_add(shape.length);
        b.longest_name = b.longest_name.max(shape.length);
        if data_type(m.qtype) {
            b.data_types = b.data_types.saturating_add(1);
        }
        if shape.encoded() {
            b.encoded = b.encoded.saturating_add(1);
            if self.sample.is_empty() {
                self.sample = cut(m.qname, SAMPLE_LEN).into();
            }
        }
    }

    /// The window's counts: the buckets still in it, merged.
    fn counts(&self) -> Counts {
        let mut names = Bitmap::<8>::default();
        let mut c = Counts::default();
        for b in self.window.live() {
            names.union(&b.names);
            c.queries = c.queries.saturating_add(b.queries);
            c.encoded = c.encoded.saturating_add(b.encoded);
            c.data_types = c.data_types.saturating_add(b.data_types);
            c.name_bytes = c.name_bytes.saturating_add(b.name_bytes);
            c.longest_name = c.longest_name.max(b.longest_name);
            c.responses = c.responses.saturating_add(b.responses);
            c.response_bytes = c.response_bytes.saturating_add(b.response_bytes);
            c.largest_response = c.largest_response.max(b.largest_response);
        }
        c.unique = names.estimate().min(c.queries);
        c
    }
}

/// 0 below the thresholds; 1 at `min_unique` distinct names with two
/// shapes; 2 at [`ESCALATION`] times as many.
fn level_of(cfg: &DnsTunnelConfig, c: &Counts, shapes: usize) -> u8 {
    let min = cfg.min_unique.max(1);
    match () {
        _ if shapes < 2 => 0,
        _ if c.unique >= min.saturating_mul(ESCALATION) => 2,
        _ if c.unique >= min => 1,
        _ => 0,
    }
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0x5bd1_e995, |h, b| mix(h ^ u64::from(b)))
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
