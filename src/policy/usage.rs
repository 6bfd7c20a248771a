//! Entry usage: which allow entries permit a flow, and for each entry the
//! evidence of the flows it permitted (how many, the server addresses,
//! names, ports and protocols seen). `replay --compare-rules` reports
//! entries nothing used (dead entries) from it, and `check-rules --capture`
//! entries wider than their evidence ([`super::lint`]).
//!
//! Pure like the classifier, and only run when one of those asks: the
//! normal judging path never records usage. Memory is bounded by the rule
//! set, not by the traffic: per entry a fixed set of counters, at most
//! [`MAX_KEPT`] distinct names per host pattern and [`MAX_KEPT`] ports and
//! protocols (more are counted as "more").

use super::classify::{ep, Considered, EntryStatus, FlowSubject};
use super::detection::Detection;
use super::schema::{AppProto, RuleSet};
use crate::flow::key::{has_ports, proto_name, Endpoint};
use crate::time::Timestamp;
use std::fmt;
use std::net::IpAddr;

/// Distinct values kept per entry and kind of evidence.
pub const MAX_KEPT: usize = 16;

/// What the allow entries say about one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryOutcome {
    /// Every entry that permits the flow, in file order.
    pub permitting: Vec<usize>,
    /// When none permits: the closest miss (the entry an alert reports),
    /// an entry whose destination matched but something else did not.
    pub closest: Option<Considered>,
}

impl RuleSet {
    /// Every allow entry that permits the flow, or the closest miss; the
    /// same judgement as [`RuleSet::judge`] makes, entry by entry.
    pub fn entry_outcome(&self, s: &FlowSubject<'_>) -> EntryOutcome {
        let zone = self.zone_index(s.client.addr);
        let mut out = EntryOutcome::default();
        for (idx, dest_matched) in self.candidates(s) {
            let Some(entry) = self.allows.get(idx) else {
                continue;
            };
            let status = self.entry_status(entry, s, zone, dest_matched);
            if status == EntryStatus::Permits {
                out.permitting.push(idx);
            } else if out
                .closest
                .as_ref()
                .is_none_or(|c| status.rank() < c.status.rank())
            {
                out.closest = Some(Considered { entry: idx, status });
            }
        }
        if !out.permitting.is_empty() {
            out.closest = None;
        }
        out
    }
}

/// One flow, as reports name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowBrief {
    pub flow_id: u64,
    pub community_id: Option<String>,
    pub client: Endpoint,
    pub server: Endpoint,
    pub proto: u8,
    pub app_proto: Option<String>,
    /// The first name the server was known by (SNI, Host or DNS).
    pub name: Option<String>,
    pub first_ts: Timestamp,
}

impl FlowBrief {
    pub fn of(s: &FlowSubject<'_>) -> Self {
        FlowBrief {
            flow_id: s.flow_id,
            community_id: s.community_id.map(str::to_string),
            client: s.client,
            server: s.server,
            proto: s.proto,
            app_proto: app_of(s).map(str::to_string),
            name: s.names.first().map(|n| normalize(n)),
            first_ts: s.first_ts,
        }
    }
}

impl fmt::Display for FlowBrief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            proto_name(self.proto),
            ep(self.client),
            ep(self.server)
        )?;
        if let Some(app) = &self.app_proto {
            write!(f, " {app}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// Distinct values, at most [`MAX_KEPT`] of them, in the order first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept<T> {
    pub items: Vec<T>,
    /// Some value did not fit.
    pub more: bool,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            items: Vec::new(),
            more: false,
        }
    }
}

impl<T: PartialEq> Kept<T> {
    pub fn add(&mut self, value: T) {
        if self.items.contains(&value) {
            return;
        }
        if self.items.len() < MAX_KEPT {
            self.items.push(value);
        } else {
            self.more = true;
        }
    }

    /// How many distinct values, if all were kept.
    pub fn exact_len(&self) -> Option<usize> {
        (!self.more).then_some(self.items.len())
    }
}

/// The evidence of the flows one allow entry permitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryUsage {
    pub flows: u64,
    /// Frame bytes of those flows, both directions.
    pub bytes: u64,
    /// The first flow it permitted.
    pub example: Option<FlowBrief>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    /// Per CIDR of the entry (same order): flows whose server address fell
    /// in it, and the lowest and highest such address.
    pub cidr_flows: Vec<u64>,
    pub cidr_range: Vec<Option<(IpAddr, IpAddr)>>,
    /// Per host pattern of the entry (same order): flows with a name it
    /// matched, and the distinct names.
    pub host_flows: Vec<u64>,
    pub host_names: Vec<Kept<String>>,
    /// Server ports of the flows that have ports.
    pub ports: Kept<u16>,
    /// Protocols as identified by bytes (`None`: not identified).
    pub protocols: Kept<Option<AppProto>>,
    /// Flows that alerted for which this entry was the closest miss (its
    /// destination matched, something else did not), and the first of
    /// them with the reason.
    pub near_misses: u64,
    pub miss_example: Option<(FlowBrief, String)>,
    /// Flows it permitted that still raised a detection (one it does not
    /// silence, such as a reverse tunnel), and the first with them.
    pub alerting: u64,
    pub alerting_example: Option<(FlowBrief, Vec<Detection>)>,
}

impl EntryUsage {
    fn for_entry(cidrs: usize, hosts: usize) -> Self {
        EntryUsage {
            cidr_flows: vec![0; cidrs],
            cidr_range: vec![None; cidrs],
            host_flows: vec![0; hosts],
            host_names: vec![Kept::default(); hosts],
            ..EntryUsage::default()
        }
    }
}

/// Usage of every allow entry of one rule set over a capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// By entry index ([`RuleSet::allows`]).
    pub entries: Vec<EntryUsage>,
    /// Flows recorded.
    pub flows: u64,
}

impl Usage {
    pub fn new(rules: &RuleSet) -> Self {
        Usage {
            entries: rules
                .allows
                .iter()
                .map(|e| EntryUsage::for_entry(e.cidrs.len(), e.hosts.len()))
                .collect(),
            flows: 0,
        }
    }

    /// Records one flow (once, when it ended) and the entries that
    /// permitted it; `bytes` is its size on the wire.
    pub fn record(
        &mut self,
        rules: &RuleSet,
        s: &FlowSubject<'_>,
        permitting: &[usize],
        bytes: u64,
    ) {
        self.flows += 1;
        let server = s.server.addr.to_canonical();
        for &idx in permitting {
            let (Some(entry), Some(u)) = (rules.allows.get(idx), self.entries.get_mut(idx)) else {
                continue;
            };
            u.flows += 1;
            u.bytes = u.bytes.saturating_add(bytes);
            if u.example.is_none() {
                u.example = Some(FlowBrief::of(s));
            }
            u.first_seen = Some(u.first_seen.map_or(s.first_ts, |t| t.min(s.first_ts)));
            u.last_seen = Some(u.last_seen.map_or(s.now, |t| t.max(s.now)));
            for (i, net) in entry.cidrs.iter().enumerate() {
                if !net.contains(&server) {
                    continue;
                }
                if let Some(n) = u.cidr_flows.get_mut(i) {
                    *n += 1;
                }
                if let Some(range) = u.cidr_range.get_mut(i) {
                    *range = Some(match *range {
                        None => (server, server),
                        Some((lo, hi)) => (lo.min(server), hi.max(server)),
                    });
                }
            }
            for (i, pattern) in entry.hosts.iter().enumerate() {
                let mut hit = false;
                for name in s.names.iter().filter(|n| pattern.matches(n)) {
                    hit = true;
                    if let Some(kept) = u.host_names.get_mut(i) {
                        kept.add(normalize(name));
                    }
                }
                if let (true, Some(n)) = (hit, u.host_flows.get_mut(i)) {
                    *n += 1;
                }
            }
            if has_ports(s.proto) {
                u.ports.add(s.server.port);
            }
            u.protocols.add(app_of(s).and_then(AppProto::parse));
        }
    }

    /// Records that entry `c.entry` was the closest miss of a flow that
    /// alerted.
    pub fn record_miss(&mut self, c: &Considered, s: &FlowSubject<'_>) {
        let Some(u) = self.entries.get_mut(c.entry) else {
            return;
        };
        u.near_misses += 1;
        if u.miss_example.is_none() {
            let why = c.status.detail().unwrap_or(c.status.name()).to_string();
            u.miss_example = Some((FlowBrief::of(s), why));
        }
    }

    /// Records that the entries `permitting` permitted a flow that still
    /// raised `raised`.
    pub fn record_alerting(
        &mut self,
        permitting: &[usize],
        s: &FlowSubject<'_>,
        raised: &[Detection],
    ) {
        for &idx in permitting {
            let Some(u) = self.entries.get_mut(idx) else {
                continue;
            };
            u.alerting += 1;
            if u.alerting_example.is_none() {
                u.alerting_example = Some((FlowBrief::of(s), raised.to_vec()));
            }
        }
    }

    /// Entries that permitted no flow.
    pub fn dead(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, u)| u.flows == 0)
            .map(|(i, _)| i)
    }
}

/// The protocol, counting SSH facts as SSH (as the classifier does).
fn app_of<'a>(s: &FlowSubject<'a>) -> Option<&'a str> {
    s.app_proto.or(s.ssh.map(|_| "ssh"))
}

/// Lower case, no trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ep, test_rules};
    use super::*;
    use crate::flow::key::proto;

    const T2025: u64 = 1_750_000_000;

    fn subject<'a>(
        client: &str,
        server: &str,
        app: Option<&'a str>,
        names: &'a [&'a str],
    ) -> FlowSubject<'a> {
        let mut s = FlowSubject::new(
            7,
            ep(client),
            ep(server),
            proto::TCP,
            Timestamp::from_secs(T2025),
        );
        s.app_proto = app;
        s.names = names;
        s.stage = super::super::classify::Stage::Ended;
        s
    }

    fn index(rules: &RuleSet, label: &str) -> usize {
        rules
            .allows()
            .iter()
            .position(|e| e.label() == label)
            .unwrap()
    }

    #[test]
    fn outcome_lists_every_permitting_entry_or_the_closest_miss() {
        let rules = test_rules();
        let names = ["ssh.github.com"];
        let s = subject("10.10.0.10:40000", "140.82.112.36:443", Some("ssh"), &names);
        let out = rules.entry_outcome(&s);
        assert_eq!(out.permitting, vec![index(&rules, "github")]);
        assert_eq!(out.closest, None);
        assert!(rules.judge(&s).permitted);

        let s = subject("10.10.0.10:40000", "10.20.0.10:2222", Some("ssh"), &[]);
        let out = rules.entry_outcome(&s);
        assert!(out.permitting.is_empty());
        let closest = out.closest.unwrap();
        assert_eq!(closest.entry, index(&rules, "internal-git"));
        assert_eq!(closest.status.name(), "not-matching");
        assert_eq!(Some(closest), rules.judge(&s).considered);
    }

    #[test]
    fn usage_keeps_the_evidence_per_cidr_name_port_and_protocol() {
        let rules = test_rules();
        let mut usage = Usage::new(&rules);
        let pypi = index(&rules, "pypi");
        for (server, name) in [
            ("151.101.0.223:443", "pypi.org"),
            ("151.101.64.223:443", "PyPI.org."),
        ] {
            let names = [name];
            let s = subject("10.10.0.10:40000", server, Some("tls"), &names);
            let out = rules.entry_outcome(&s);
            assert_eq!(out.permitting, vec![pypi]);
            usage.record(&rules, &s, &out.permitting, 1000);
        }
        let u = &usage.entries[pypi];
        assert_eq!((u.flows, u.bytes), (2, 2000));
        assert_eq!(u.host_flows, vec![2]);
        assert_eq!(u.host_names[0].items, vec!["pypi.org".to_string()]);
        assert_eq!(u.ports.items, vec![443]);
        assert_eq!(u.protocols.items, vec![Some(AppProto::Tls)]);
        assert_eq!(
            u.example.as_ref().unwrap().to_string(),
            "TCP 10.10.0.10:40000 -> 151.101.0.223:443 tls (pypi.org)"
        );
        let dead: Vec<String> = usage.dead().map(|i| rules.allows()[i].label()).collect();
        assert!(dead.contains(&"github".to_string()), "{dead:?}");
        assert!(!dead.contains(&"pypi".to_string()));

        let git = index(&rules, "internal-git");
        let s = subject("10.10.0.10:40000", "10.20.0.10:22", Some("ssh"), &[]);
        let out = rules.entry_outcome(&s);
        usage.record(&rules, &s, &out.permitting, 10);
        let ip: IpAddr = "10.20.0.10".parse().unwrap();
        assert_eq!(usage.entries[git].cidr_range, vec![Some((ip, ip))]);
        assert_eq!(usage.flows, 3);
    }

    #[test]
    fn kept_values_are_bounded() {
        let mut k = Kept::default();
        for p in 0..100u16 {
            k.add(p);
            k.add(p);
        }
        assert_eq!(k.items.len(), MAX_KEPT);
        assert!(k.more);
        assert_eq!(k.exact_len(), None);
    }
}
