//! Learning an allowlist from observed egress (`egresswatch learn`,
//! `capture --learn`): flow observations in, proposed `[[allow]]` entries
//! out, each with its evidence.
//!
//! [`Learner::observe`] takes one ended flow and the rules in force; it
//! keeps, per (zone, transport, protocol, port, destination), what was seen
//! (flows, bytes, source hosts, first and last packet time, an example flow,
//! SSH fingerprints). [`Learner::proposal`] groups that into entries
//! ([`cover`]: wildcards by name, CIDRs by address) and [`render`] writes
//! them as TOML in the shipped schema.
//!
//! Learning never legitimises an incident: a flow on which the policy found
//! any detection other than the three an allow entry is meant to silence
//! (`egress-not-allowed`, `ssh-to-external`, `ssh-nonstandard-port`) is
//! refused, listed with its detections, and its destination (address and
//! names) is *tainted*: no proposed entry names it or covers it with a
//! wildcard or a CIDR. Flows an existing entry already permits are counted,
//! not proposed again.
//!
//! Pure: no I/O, no clock (time is packet time), deterministic output
//! (ordered maps only, bounded sets keep their smallest members). Memory is
//! bounded by [`LearnConfig::max_destinations`] and the caps below; what
//! does not fit is counted and reported in the output.

pub mod cover;
pub mod render;

#[cfg(test)]
mod tests;

use crate::analyzer::facts::SshFacts;
use crate::event::FlowRecord;
use crate::flow::key::{proto, Endpoint};
use crate::policy::{
    AlertState, AppProto, Detection, Direction, EgressMode, FlowSubject, RuleSet, Stage,
};
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// Destinations tracked at most by default (one per zone, transport,
/// protocol, port and name or address); about 600 bytes each.
pub const MAX_DESTINATIONS: usize = 50_000;
/// Distinct source hosts remembered per destination (more shows as `16+`).
pub const MAX_SOURCES: usize = 16;
/// Distinct HASSH values remembered per destination and side; more and the
/// side is not pinned.
pub const MAX_FINGERPRINTS: usize = 4;
/// Refused-flow groups listed at most.
pub const MAX_REFUSED: usize = 1_000;
/// Tainted destinations (names and addresses of refused flows) at most.
pub const MAX_TAINTED: usize = 65_536;

/// What to learn.
#[derive(Clone, Debug)]
pub struct LearnConfig {
    /// A destination needs at least this many flows.
    pub min_flows: u64,
    /// ... from at least this many source hosts.
    pub min_hosts: usize,
    /// Only flows that started at or after this packet time.
    pub since: Option<Timestamp>,
    /// ... and before this one.
    pub until: Option<Timestamp>,
    pub max_destinations: usize,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            min_flows: 1,
            min_hosts: 1,
            since: None,
            until: None,
            max_destinations: MAX_DESTINATIONS,
        }
    }
}

/// One ended flow as learning sees it.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub community_id: &'a str,
    /// The originator.
    pub client: Endpoint,
    pub server: Endpoint,
    pub proto: u8,
    /// As identified by bytes.
    pub app_proto: Option<&'a str>,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Frame bytes, both directions.
    pub bytes: u64,
    /// The server's names (DNS answers the client got, SNI, Host).
    pub names: &'a [Arc<str>],
    /// Client and server HASSH.
    pub hassh: [Option<&'a str>; 2],
    /// Every detection the policy found, suppressed ones included.
    pub findings: AlertState,
}

impl<'a> Observation<'a> {
    /// A final flow record; `None` for an interim one (the flow counts
    /// when it ends).
    pub fn of(r: &'a FlowRecord) -> Option<Self> {
        if r.interim {
            return None;
        }
        Some(Observation {
            community_id: &r.meta.community_id,
            client: r.meta.src,
            server: r.meta.dest,
            proto: r.meta.proto,
            app_proto: r.meta.app_proto,
            start: r.start,
            end: r.end,
            bytes: r.dirs[0].bytes + r.dirs[1].bytes,
            names: &r.names,
            hassh: [r.hassh[0].as_deref(), r.hassh[1].as_deref()],
            findings: r.findings,
        })
    }
}

/// What a destination is known by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Name(Arc<str>),
    Addr(IpAddr),
}

/// One destination of one zone on one port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DestKey {
    /// `None`: hosts in no zone (learned only under a default-deny
    /// `default_egress`).
    pub zone: Option<Arc<str>>,
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// `None`: not identified (the entry allows any protocol).
    pub protocol: Option<&'static str>,
    pub port: u16,
    pub target: Target,
}

/// A few values kept in order, the smallest first; `more` once one did
/// not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounded<T: Ord> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T: Ord> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            items: Vec::new(),
            more: false,
        }
    }
}

impl<T: Ord + Clone> Bounded<T> {
    fn insert(&mut self, value: T, cap: usize) {
        if let Err(at) = self.items.binary_search(&value) {
            self.items.insert(at, value);
            if self.items.len() > cap {
                self.items.truncate(cap);
                self.more = true;
            }
        }
    }

    fn merge(&mut self, other: &Bounded<T>, cap: usize) {
        for v in &other.items {
            self.insert(v.clone(), cap);
        }
        self.more |= other.more;
    }

    /// `3`, or `16+` when some did not fit.
    pub fn count(&self) -> String {
        if self.more {
            format!("{}+", self.items.len())
        } else {
            self.items.len().to_string()
        }
    }
}

/// The SSH fingerprints one side showed; `unpinnable` when some flow showed
/// none or too many were seen (the entry then pins nothing on that side).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    pub seen: Bounded<Box<str>>,
    pub unpinnable: bool,
}

impl Pins {
    fn add(&mut self, hash: Option<&str>) {
        // Only what an allow entry accepts: 32 hex digits (an MD5 HASSH).
        match hash.filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(h) => self
                .seen
                .insert(h.to_ascii_lowercase().into(), MAX_FINGERPRINTS),
            None => self.unpinnable = true,
        }
    }

    fn merge(&mut self, other: &Pins) {
        self.seen.merge(&other.seen, MAX_FINGERPRINTS);
        self.unpinnable |= other.unpinnable;
    }

    /// The values to pin, if any.
    pub fn pinned(&self) -> Option<&[Box<str>]> {
        (!self.unpinnable && !self.seen.more && !self.seen.items.is_empty())
            .then_some(&self.seen.items[..])
    }
}

/// What was seen of a destination (or of an entry's destinations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    pub flows: u64,
    pub bytes: u64,
    pub sources: Bounded<IpAddr>,
    pub first: Timestamp,
    pub last: Timestamp,
    /// The earliest flow: (start, community id and 5-tuple).
    pub example: (Timestamp, String),
    /// Client and server HASSH (SSH only).
    pub hassh: [Pins; 2],
}

impl Evidence {
    fn of(o: &Observation<'_>) -> Evidence {
        let mut sources = Bounded::default();
        sources.insert(o.client.addr, MAX_SOURCES);
        let mut hassh = [Pins::default(), Pins::default()];
        if o.app_proto == Some("ssh") {
            hassh[0].add(o.hassh[0]);
            hassh[1].add(o.hassh[1]);
        }
        Evidence {
            flows: 1,
            bytes: o.bytes,
            sources,
            first: o.start,
            last: o.end,
            example: (o.start, example(o)),
            hassh,
        }
    }

    pub fn merge(&mut self, other: &Evidence) {
        self.flows += other.flows;
        self.bytes += other.bytes;
        self.sources.merge(&other.sources, MAX_SOURCES);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        if other.example < self.example {
            self.example = other.example.clone();
        }
        self.hassh[0].merge(&other.hassh[0]);
        self.hassh[1].merge(&other.hassh[1]);
    }
}

/// `1:… 10.10.0.10:41874 -> 198.51.100.23:443 tcp`
fn example(o: &Observation<'_>) -> String {
    let transport = crate::flow::key::proto_name(o.proto).to_ascii_lowercase();
    format!(
        "{} {} -> {} {transport}",
        o.community_id, o.client, o.server
    )
}

/// A refused flow, grouped by what makes it one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefusedKey {
    pub zone: Option<Arc<str>>,
    pub client: IpAddr,
    pub server: Endpoint,
    pub proto: u8,
    pub app_proto: Option<&'static str>,
    /// The detections found, by id.
    pub detections: Vec<&'static str>,
}

/// What happened to the flows seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Final flow records seen.
    pub flows: u64,
    /// Started outside `--since`/`--until`.
    pub outside_window: u64,
    /// Not egress (internal, ingress, external).
    pub not_egress: u64,
    /// Refused: they raised a detection learning never legitimises.
    pub refused: u64,
    /// Already permitted, by entry label.
    pub covered: BTreeMap<String, u64>,
    /// From hosts in no zone while `default_egress` is `monitor`.
    pub no_zone: u64,
    /// Neither TCP nor UDP (an entry cannot be limited to ICMP).
    pub not_tcp_udp: u64,
    /// Learned into a destination.
    pub learned: u64,
    /// Left out because the destination table was full.
    pub dropped: u64,
    /// Refused flows not listed because the refused list was full.
    pub refused_unlisted: u64,
    /// Tainted destinations that did not fit (then some may be proposed).
    pub taint_dropped: u64,
    /// Packet time of the first flow start and the last flow end seen.
    pub span: Option<(Timestamp, Timestamp)>,
}

/// Accumulates observations; see the module docs.
#[derive(Clone, Debug)]
pub struct Learner {
    cfg: LearnConfig,
    dests: BTreeMap<DestKey, Evidence>,
    refused: BTreeMap<RefusedKey, Evidence>,
    tainted: BTreeSet<Target>,
    pub counts: Counts,
}

/// The detections an allow entry is meant to silence: a flow with only
/// these may be learned.
const LEARNABLE: [Detection; 3] = [
    Detection::EgressNotAllowed,
    Detection::SshToExternal,
    Detection::SshNonstandardPort,
];

/// The detections found on a flow that forbid learning it (any but
/// [`LEARNABLE`], so a detection added later refuses too).
pub fn refusing(findings: &AlertState) -> Vec<&'static str> {
    findings
        .raised()
        .filter(|d| !LEARNABLE.contains(d))
        .map(Detection::id)
        .collect()
}

impl Learner {
    pub fn new(cfg: LearnConfig) -> Self {
        Learner {
            cfg,
            dests: BTreeMap::new(),
            refused: BTreeMap::new(),
            tainted: BTreeSet::new(),
            counts: Counts::default(),
        }
    }

    pub fn config(&self) -> &LearnConfig {
        &self.cfg
    }

    /// Destinations tracked now.
    pub fn destinations(&self) -> usize {
        self.dests.len()
    }

    /// Observes a final flow record (interim records are ignored).
    pub fn observe_record(&mut self, record: &FlowRecord, rules: &RuleSet) {
        if let Some(o) = Observation::of(record) {
            self.observe(&o, rules);
        }
    }

    /// Observes one ended flow judged by `rules`.
    pub fn observe(&mut self, o: &Observation<'_>, rules: &RuleSet) {
        self.counts.flows += 1;
        self.counts.span = Some(match self.counts.span {
            None => (o.start, o.end),
            Some((a, b)) => (a.min(o.start), b.max(o.end)),
        });
        if self.cfg.since.is_some_and(|t| o.start < t)
            || self.cfg.until.is_some_and(|t| o.start >= t)
        {
            self.counts.outside_window += 1;
            return;
        }
        if rules.direction(o.client.addr, o.server.addr) != Direction::Egress {
            self.counts.not_egress += 1;
            return;
        }
        let zone = rules.zone_of(o.client.addr).map(|z| z.name.clone());
        let detections = refusing(&o.findings);
        if !detections.is_empty() {
            self.refuse(o, zone, detections);
            return;
        }
        if zone.is_none() && rules.default_egress() == EgressMode::Monitor {
            self.counts.no_zone += 1;
            return;
        }
        if let Some(label) = covering_entry(o, rules) {
            *self.counts.covered.entry(label).or_default() += 1;
            return;
        }
        let transport = match o.proto {
            proto::TCP => "tcp",
            proto::UDP => "udp",
            _ => {
                self.counts.not_tcp_udp += 1;
                return;
            }
        };
        let key = DestKey {
            zone,
            transport,
            protocol: o.app_proto.and_then(AppProto::parse).map(AppProto::name),
            port: o.server.port,
            target: target_of(o),
        };
        let evidence = Evidence::of(o);
        if let Some(e) = self.dests.get_mut(&key) {
            e.merge(&evidence);
        } else if self.dests.len() < self.cfg.max_destinations {
            self.dests.insert(key, evidence);
        } else {
            self.counts.dropped += 1;
            return;
        }
        self.counts.learned += 1;
    }

    fn refuse(
        &mut self,
        o: &Observation<'_>,
        zone: Option<Arc<str>>,
        detections: Vec<&'static str>,
    ) {
        self.counts.refused += 1;
        self.taint(Target::Addr(o.server.addr));
        for name in o.names {
            if let Some(n) = valid_name(name) {
                self.taint(Target::Name(n));
            }
        }
        let key = RefusedKey {
            zone,
            client: o.client.addr,
            server: o.server,
            proto: o.proto,
            app_proto: o.app_proto.and_then(AppProto::parse).map(AppProto::name),
            detections,
        };
        let evidence = Evidence::of(o);
        if let Some(e) = self.refused.get_mut(&key) {
            e.merge(&evidence);
        } else if self.refused.len() < MAX_REFUSED {
            self.refused.insert(key, evidence);
        } else {
            self.counts.refused_unlisted += 1;
        }
    }

    fn taint(&mut self, target: Target) {
        if self.tainted.len() < MAX_TAINTED || self.tainted.contains(&target) {
            self.tainted.insert(target);
        } else {
            self.counts.taint_dropped += 1;
        }
    }

    /// The refused flows, grouped.
    pub fn refused(&self) -> impl Iterator<Item = (&RefusedKey, &Evidence)> {
        self.refused.iter()
    }

    pub fn is_tainted(&self, target: &Target) -> bool {
        self.tainted.contains(target)
    }

    /// Tainted names (for wildcard checks).
    pub fn tainted_names(&self) -> impl Iterator<Item = &str> {
        self.tainted.iter().filter_map(|t| match t {
            Target::Name(n) => Some(&**n),
            Target::Addr(_) => None,
        })
    }

    /// Tainted addresses.
    pub fn tainted_addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.tainted.iter().filter_map(|t| match t {
            Target::Addr(a) => Some(*a),
            Target::Name(_) => None,
        })
    }

    /// The destinations that pass the thresholds and are not tainted,
    /// and how many were left out and why.
    pub fn eligible(&self) -> (Vec<(&DestKey, &Evidence)>, Trimmed) {
        // Thresholds apply per (zone, destination), over all its ports.
        let mut per_dest: BTreeMap<(&Option<Arc<str>>, &Target), Evidence> = BTreeMap::new();
        for (k, e) in &self.dests {
            per_dest
                .entry((&k.zone, &k.target))
                .and_modify(|t| t.merge(e))
                .or_insert_with(|| e.clone());
        }
        let mut trimmed = Trimmed::default();
        let mut out = Vec::new();
        for (k, e) in &self.dests {
            let total = &per_dest[&(&k.zone, &k.target)];
            if self.is_tainted(&k.target) {
                trimmed.tainted_flows += e.flows;
            } else if total.flows < self.cfg.min_flows
                || (total.sources.items.len() < self.cfg.min_hosts && !total.sources.more)
            {
                trimmed.below_threshold_flows += e.flows;
            } else {
                out.push((k, e));
            }
        }
        (out, trimmed)
    }

    /// The proposed entries.
    pub fn proposal(&self) -> cover::Proposal {
        cover::propose(self)
    }
}

/// Flows of eligible-looking destinations left out of the proposal.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Their destination also had refused flows.
    pub tainted_flows: u64,
    /// Below `--min-flows` / `--min-hosts`.
    pub below_threshold_flows: u64,
}

/// The first name the flow's server is known by that an allow entry can
/// name, else its address.
fn target_of(o: &Observation<'_>) -> Target {
    match o.names.iter().find_map(|n| valid_name(n)) {
        Some(name) => Target::Name(name),
        None => Target::Addr(o.server.addr),
    }
}

/// `name` as an allow entry's `hosts` would hold it (lower case, no
/// trailing dot), if it is a host name at all (not an address literal).
pub fn valid_name(name: &str) -> Option<Arc<str>> {
    if name.parse::<IpAddr>().is_ok() {
        return None;
    }
    match crate::policy::names::NamePattern::parse(name) {
        Ok(crate::policy::names::NamePattern::Exact(n)) => Some(Arc::from(n)),
        _ => None,
    }
}

/// The label of the existing entry that permits the flow, if one does.
fn covering_entry(o: &Observation<'_>, rules: &RuleSet) -> Option<String> {
    let names: Vec<&str> = o.names.iter().map(|n| &**n).collect();
    let ssh = (o.app_proto == Some("ssh")).then(|| SshFacts {
        hassh: o.hassh[0].map(str::to_string),
        hassh_server: o.hassh[1].map(str::to_string),
        ..SshFacts::default()
    });
    let subject = FlowSubject {
        app_proto: o.app_proto,
        stage: Stage::Ended,
        names: &names,
        ssh: ssh.as_ref(),
        now: o.end,
        ..FlowSubject::new(0, o.client, o.server, o.proto, o.start)
    };
    let verdict = rules.judge(&subject);
    if !verdict.permitted {
        return None;
    }
    let entry = verdict.considered.and_then(|c| rules.allows().get(c.entry));
    Some(entry.map_or_else(|| "an allow entry".to_string(), |e| e.label()))
}

/// Parses `--since`/`--until`: RFC 3339 (`2025-06-15T15:00:00Z`, an offset
/// allowed) or a date (`2025-06-15`, its midnight UTC).
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("`{text}` is not an RFC 3339 time such as 2025-06-15T15:00:00Z");
    let dt: toml::value::Datetime = text.parse().map_err(|_| bad())?;
    let date = dt.date.ok_or_else(bad)?;
    let days = crate::policy::days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let (secs_of_day, nanos) = dt.time.map_or((0, 0), |t| {
        (
            i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second),
            t.nanosecond,
        )
    });
    if dt.time.is_some() && dt.offset.is_none() {
        return Err(format!("`{text}`: give the offset (`Z` for UTC)"));
    }
    let offset = match dt.offset {
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes) * 60,
        _ => 0,
    };
    let secs = days * 86_400 + secs_of_day - offset;
    let secs = u64::try_from(secs).map_err(|_| format!("`{text}` is before 1970"))?;
    Ok(Timestamp::from_nanos(
        secs.saturating_mul(NANOS_PER_SEC)
            .saturating_add(u64::from(nanos)),
    ))
}
