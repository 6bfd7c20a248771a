//! One incident per host: the alerts about one internal host within a
//! window of packet time (default four hours since its last alert) are one
//! incident, with a stable id derived from the host and the time of the
//! alert that opened it, so a replay of the same packets gives the same
//! ids. The incident lists what was seen in kill-chain order (the order of
//! ATT&CK's tactics: discovery before command and control before impact)
//! and names how far it got (`stage`).
//!
//! Memory is bounded: at most `max_open` incidents are open; when full,
//! the one quiet the longest is closed early to make room, counted in
//! [`Incidents::evicted`]. An incident keeps at most [`MAX_FLOW_IDS`] flow
//! ids; past that, every alert on a flow it does not list counts as a new
//! flow. Closing is lazy: [`Incidents::expire`] closes what went quiet,
//! and an alert after the window opens a new incident for the host.
//!
//! Pure: no I/O, no clock, no globals.

use crate::inventory::Workload;
use crate::policy::detection::{techniques, Tactic, TACTICS};
use crate::policy::{Alert, Detection, Severity};
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// Flow ids an incident lists at most.
pub const MAX_FLOW_IDS: usize = 256;

/// Settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IncidentConfig {
    /// An alert joins the host's incident when it comes at most this long
    /// after the incident's last alert.
    pub window_seconds: u64,
    /// Incidents open at once.
    pub max_open: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            window_seconds: 4 * 3600,
            max_open: 4096,
        }
    }
}

/// One signature seen in an incident, with its first alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub detection: Detection,
    /// The highest severity it was raised with.
    pub severity: Severity,
    /// Its position in the kill chain: the index in [`TACTICS`] of the
    /// tactic of its alert's first (primary) technique.
    pub rank: usize,
    /// The first alert's time, peer and evidence summary.
    pub first: Timestamp,
    pub peer: crate::flow::key::Endpoint,
    pub summary: Box<str>,
}

/// The alerts about one host.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    /// Stable: from the host and the opening alert's time.
    pub id: Arc<str>,
    pub host: IpAddr,
    pub zone: Option<Arc<str>>,
    pub workload: Option<Arc<Workload>>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Signatures in kill-chain order, each once.
    pub signatures: Vec<Seen>,
    /// Technique ids in kill-chain order, each once.
    pub techniques: Vec<&'static str>,
    pub alerts: u64,
    pub flows: u64,
    flow_ids: Vec<u64>,
}

impl Incident {
    fn open(alert: &Alert, host: IpAddr, zone: Option<Arc<str>>) -> Incident {
        Incident {
            id: incident_id(host, alert.ts),
            host,
            zone,
            workload: None,
            first_seen: alert.ts,
            last_seen: alert.ts,
            signatures: Vec::new(),
            techniques: Vec::new(),
            alerts: 0,
            flows: 0,
            flow_ids: Vec::new(),
        }
    }

    /// The tactics reached, in kill-chain order.
    pub fn tactics(&self) -> impl Iterator<Item = &'static Tactic> + '_ {
        let mut reached = [false; TACTICS.len()];
        for t in techniques_by_id(&self.techniques) {
            if let Some(i) = tactic_rank(t.tactic) {
                reached[i] = true;
            }
        }
        TACTICS
            .iter()
            .enumerate()
            .filter(move |(i, _)| reached[*i])
            .map(|(_, t)| t)
    }

    /// How far along the kill chain the host got: its latest tactic.
    pub fn stage(&self) -> &'static str {
        self.tactics()
            .last()
            .map_or("unknown", |t| stage_name(t.id))
    }

    /// The highest severity of its alerts.
    pub fn severity(&self) -> Severity {
        self.signatures
            .iter()
            .map(|s| s.severity)
            .min_by_key(|s| s.get())
            .unwrap_or(Severity::LOW)
    }

    /// 0..=100: each signature by its severity (high 30, medium 15, low
    /// 5), and 10 for every tactic reached beyond the first; a host that
    /// went the whole way scores 100.
    pub fn score(&self) -> u64 {
        let signatures: u64 = self
            .signatures
            .iter()
            .map(|s| match s.severity.get() {
                1 => 30,
                2 => 15,
                _ => 5,
            })
            .sum();
        let tactics = self.tactics().count() as u64;
        (signatures + 10 * tactics.saturating_sub(1)).min(100)
    }

    /// Adds an alert; whether the incident grew (a signature or technique
    /// it did not have, a higher severity, or its flow count reaching a
    /// power of two), so a host with a thousand alerting flows writes a
    /// handful of incident records, not a thousand.
    fn add(&mut self, alert: &Alert) -> bool {
        self.alerts += 1;
        self.first_seen = self.first_seen.min(alert.ts);
        self.last_seen = self.last_seen.max(alert.ts);
        let mut grew = self.add_signature(alert);
        for t in techniques(alert.mitre) {
            if !self.techniques.contains(&t.id) {
                self.techniques.push(t.id);
                grew = true;
            }
        }
        self.techniques
            .sort_by_key(|id| (technique_rank(id), technique_order(id)));
        if self.add_flow(alert.flow_id) && self.flows.is_power_of_two() {
            grew = true;
        }
        grew
    }

    fn add_signature(&mut self, alert: &Alert) -> bool {
        let rank = techniques(alert.mitre)
            .find_map(|t| tactic_rank(t.tactic))
            .unwrap_or(TACTICS.len());
        match self
            .signatures
            .iter_mut()
            .find(|s| s.detection == alert.detection)
        {
            Some(s) if alert.severity.get() < s.severity.get() => {
                s.severity = alert.severity;
                true
            }
            Some(_) => false,
            None => {
                let peer = match alert.src.addr == self.host {
                    true => alert.dst,
                    false => alert.src,
                };
                self.signatures.push(Seen {
                    detection: alert.detection,
                    severity: alert.severity,
                    rank,
                    first: alert.ts,
                    peer,
                    summary: alert.evidence.summary.as_str().into(),
                });
                self.signatures
                    .sort_by_key(|s| (s.rank, s.first, s.detection.sid()));
                true
            }
        }
    }

    /// Counts the flow if it is new.
    fn add_flow(&mut self, flow_id: u64) -> bool {
        if self.flow_ids.contains(&flow_id) {
            return false;
        }
        if self.flow_ids.len() < MAX_FLOW_IDS {
            self.flow_ids.push(flow_id);
        }
        self.flows += 1;
        true
    }
}

/// `ewi-` and 16 hex digits of SHA-256 over the host's address and the
/// opening alert's packet time: the same packets give the same id.
pub fn incident_id(host: IpAddr, first: Timestamp) -> Arc<str> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"egresswatch incident 1\0");
    match host.to_canonical() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(first.as_nanos().to_be_bytes());
    let digest = h.finalize();
    let mut id = String::from("ewi-");
    for b in &digest[..8] {
        id.push_str(&format!("{b:02x}"));
    }
    id.into()
}

fn tactic_rank(id: &str) -> Option<usize> {
    TACTICS.iter().position(|t| t.id == id)
}

fn technique_rank(id: &str) -> usize {
    techniques_by_id(&[id])
        .filter_map(|t| tactic_rank(t.tactic))
        .next()
        .unwrap_or(TACTICS.len())
}

fn technique_order(id: &str) -> usize {
    crate::policy::detection::TECHNIQUES
        .iter()
        .position(|t| t.id == id)
        .unwrap_or(usize::MAX)
}

fn techniques_by_id<'a>(
    ids: &'a [&'a str],
) -> impl Iterator<Item = &'static crate::policy::detection::Technique> + 'a {
    ids.iter().filter_map(|id| {
        crate::policy::detection::TECHNIQUES
            .iter()
            .find(|t| t.id == *id)
    })
}

/// The stage a tactic stands for, in words (`command-and-control`).
pub fn stage_name(tactic: &str) -> &'static str {
    match tactic {
        "TA0005" => "defense-evasion",
        "TA0007" => "discovery",
        "TA0008" => "lateral-movement",
        "TA0011" => "command-and-control",
        "TA0040" => "impact",
        _ => "unknown",
    }
}

/// What an alert did to its host's incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Opened,
    Grew,
    Joined,
}

/// The open incidents, one per host.
#[derive(Debug)]
pub struct Incidents {
    cfg: IncidentConfig,
    open: HashMap<IpAddr, Incident>,
    /// The open incidents by last alert, quietest first: what a full table
    /// closes and what the window expires, found without a scan.
    quiet: BTreeSet<(Timestamp, IpAddr)>,
    opened: u64,
    evicted: u64,
}

impl Incidents {
    pub fn new(cfg: IncidentConfig) -> Self {
        Incidents {
            cfg,
            open: HashMap::new(),
            quiet: BTreeSet::new(),
            opened: 0,
            evicted: 0,
        }
    }

    fn window(&self) -> u64 {
        self.cfg.window_seconds.saturating_mul(NANOS_PER_SEC)
    }

    /// Adds `alert` to the incident of `host` (opening one if the host has
    /// none or its incident went quiet for longer than the window); the
    /// incident as it is now and what changed.
    pub fn observe(
        &mut self,
        alert: &Alert,
        host: IpAddr,
        zone: Option<Arc<str>>,
        workload: Option<Arc<Workload>>,
    ) -> (&Incident, Change) {
        let window = self.window();
        let last_seen = self.open.get(&host).map(|i| i.last_seen);
        if let Some(last) = last_seen {
            self.quiet.remove(&(last, host));
            if alert.ts.as_nanos() > last.as_nanos().saturating_add(window) {
                self.open.remove(&host);
            }
        }
        if !self.open.contains_key(&host) {
            self.make_room();
            self.opened += 1;
        }
        let incident = self
            .open
            .entry(host)
            .or_insert_with(|| Incident::open(alert, host, zone));
        let opened = incident.alerts == 0;
        let mut grew = incident.add(alert);
        self.quiet.insert((incident.last_seen, host));
        if workload.is_some() && incident.workload != workload {
            incident.workload = workload;
            grew = true;
        }
        let change = match (opened, grew) {
            (true, _) => Change::Opened,
            (false, true) => Change::Grew,
            (false, false) => Change::Joined,
        };
        (incident, change)
    }

    /// Closes the longest-quiet incident if the table is full.
    fn make_room(&mut self) {
        if self.open.len() < self.cfg.max_open.max(1) {
            return;
        }
        if let Some((_, host)) = self.quiet.pop_first() {
            self.open.remove(&host);
            self.evicted += 1;
        }
    }

    /// Closes the incidents whose last alert is more than the window
    /// before `now`; how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let window = self.window();
        let mut closed = 0;
        while let Some(&(last, host)) = self.quiet.first() {
            if now.as_nanos() <= last.as_nanos().saturating_add(window) {
                break;
            }
            self.quiet.pop_first();
            self.open.remove(&host);
            closed += 1;
        }
        closed
    }

    pub fn get(&self, host: IpAddr) -> Option<&Incident> {
        self.open.get(&host)
    }

    /// Open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Opened since the start.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Closed early to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Open incidents by zone and severity (the metric's labels).
    pub fn open_by_zone_and_severity(&self) -> Vec<(Option<Arc<str>>, Severity, u64)> {
        let mut counts: Vec<(Option<Arc<str>>, Severity, u64)> = Vec::new();
        for i in self.open.values() {
            let sev = i.severity();
            match counts
                .iter_mut()
                .find(|(z, s, _)| *z == i.zone && *s == sev)
            {
                Some(c) => c.2 += 1,
                None => counts.push((i.zone.clone(), sev, 1)),
            }
        }
        counts.sort_by(|a, b| (&a.0, a.1.get()).cmp(&(&b.0, b.1.get())));
        counts
    }
}

/// The EVE `incident` record: the incident as it was when it opened or
/// grew.
#[derive(Clone, Debug)]
pub struct IncidentRecord {
    /// The packet time of the alert that opened or grew it.
    pub ts: Timestamp,
    /// `opened` or `grew`.
    pub change: &'static str,
    pub incident: Incident,
}

impl IncidentRecord {
    pub fn write_eve(&self, o: &mut crate::json::Obj<'_>) {
        let i = &self.incident;
        o.ts("timestamp", self.ts);
        o.str("event_type", "incident");
        o.ip("src_ip", i.host);
        o.obj("incident", |o| {
            o.str("id", &i.id);
            o.ip("host", i.host);
            o.opt_str("zone", i.zone.as_deref());
            if let Some(w) = &i.workload {
                o.obj("workload", |o| w.write(o));
            }
            o.ts("first_seen", i.first_seen);
            o.ts("last_seen", i.last_seen);
            o.strs("tactics", i.tactics().map(|t| t.id));
            o.strs("tactic_names", i.tactics().map(|t| t.name));
            o.strs("techniques", i.techniques.iter().copied());
            let sids: Vec<u32> = i.signatures.iter().map(|s| s.detection.sid()).collect();
            o.value("signature_ids", &sids);
            o.strs("detections", i.signatures.iter().map(|s| s.detection.id()));
            o.u64("alerts", i.alerts);
            o.u64("flows", i.flows);
            o.u64("severity", i.severity().get().into());
            o.u64("score", i.score());
            o.str("stage", i.stage());
            o.str("change", self.change);
        });
    }

    /// The story of the incident, for people: one line per signature in
    /// kill-chain order.
    pub fn story(&self) -> Vec<String> {
        let i = &self.incident;
        let who = i
            .workload
            .as_ref()
            .map_or_else(String::new, |w| format!(" ({})", w.describe()));
        let mut lines = vec![
            format!(
                "incident {}: host {}{who}, zone {}",
                i.id,
                i.host,
                i.zone.as_deref().unwrap_or("-")
            ),
            format!(
                "  {} alert(s) on {} flow(s) from {} to {}; reached {} (score {}, severity {})",
                i.alerts,
                i.flows,
                i.first_seen.eve(),
                i.last_seen.eve(),
                i.stage(),
                i.score(),
                i.severity().name(),
            ),
        ];
        for s in &i.signatures {
            let stage = TACTICS.get(s.rank).map_or("unknown", |t| stage_name(t.id));
            let time = s.first.eve().to_string();
            let signature = s.detection.signature();
            lines.push(format!(
                "  {} {:<19} {:<23} {} ({})",
                time.get(11..19).unwrap_or(&time),
                stage,
                s.detection.id(),
                signature.strip_prefix("EGRESSWATCH ").unwrap_or(signature),
                match s.detection {
                    // The host finding's counts say more than its sample.
                    Detection::InternalDiscovery => s.summary.to_string(),
                    _ => peer(s.peer),
                },
            ));
        }
        lines
    }
}

/// A peer as people read it: the address, and the port when there is one.
fn peer(p: crate::flow::key::Endpoint) -> String {
    match (p.port, p.addr) {
        (0, a) => a.to_string(),
        (port, IpAddr::V6(a)) => format!("[{a}]:{port}"),
        (port, a) => format!("{a}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::facts::Evidence;
    use crate::flow::key::Endpoint;
    use crate::policy::Direction;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(1_750_000_000 + secs)
    }

    fn alert(d: Detection, secs: u64, flow_id: u64) -> Alert {
        Alert {
            ts: at(secs),
            flow_id,
            community_id: None,
            src: Endpoint {
                addr: ip("10.10.0.10"),
                port: 40_000,
            },
            dst: Endpoint {
                addr: ip("198.51.100.23"),
                port: 443,
            },
            proto: 6,
            app_proto: None,
            detection: d,
            severity: d.default_severity(),
            threshold_hours: None,
            direction: Direction::Egress,
            zone: None,
            allow: None,
            evidence: Evidence::new("x", &[], at(secs), at(secs)),
            mitre: d.mitre(),
            discovery: None,
            flow: None,
            incident_id: None,
            workload: None,
        }
    }

    #[test]
    fn the_quiet_index_follows_every_incident() {
        let mut t = Incidents::new(IncidentConfig {
            window_seconds: 50,
            max_open: 8,
        });
        let mut seed = 7u64;
        for step in 0..2000u64 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let host = ip(&format!("10.0.0.{}", (seed >> 33) % 20));
            let secs = step / 4 + (seed >> 40) % 3;
            let d =
                [Detection::InternalDiscovery, Detection::CryptoMining][(seed >> 50) as usize % 2];
            // The quietest open incident, as a scan finds it.
            let full = t.len() == 8 && t.get(host).is_none();
            let quietest = t
                .open
                .values()
                .min_by_key(|i| (i.last_seen, i.host))
                .map(|i| i.host);
            t.observe(&alert(d, secs, step), host, None, None);
            if full {
                assert!(t.get(quietest.unwrap()).is_none() || quietest == Some(host));
            }
            if step % 97 == 0 {
                t.expire(at(secs));
            }
            let index: BTreeSet<_> = t.open.values().map(|i| (i.last_seen, i.host)).collect();
            assert_eq!(index, t.quiet, "step {step}");
        }
        assert!(t.evicted() > 0);
    }

    fn incidents() -> Incidents {
        Incidents::new(IncidentConfig::default())
    }

    const HOST: &str = "10.10.0.10";

    #[test]
    fn alerts_of_one_host_make_one_incident_in_kill_chain_order() {
        let mut inc = incidents();
        let zone: Option<Arc<str>> = Some("gpu".into());
        let steps = [
            (Detection::CryptoMining, 300, 3),
            (Detection::SshReverseForward, 100, 2),
            (Detection::InternalDiscovery, 10, 1),
            (Detection::SshToExternal, 100, 2),
        ];
        let mut changes = Vec::new();
        for (d, t, f) in steps {
            let (i, c) = inc.observe(&alert(d, t, f), ip(HOST), zone.clone(), None);
            changes.push(c);
            assert_eq!(i.id, incident_id(ip(HOST), at(300)));
        }
        assert_eq!(
            changes,
            [Change::Opened, Change::Grew, Change::Grew, Change::Grew]
        );
        let i = inc.get(ip(HOST)).unwrap();
        let ids: Vec<_> = i.signatures.iter().map(|s| s.detection.id()).collect();
        assert_eq!(
            ids,
            [
                "internal-discovery",
                "ssh-to-external",
                "ssh-reverse-forward",
                "crypto-mining"
            ]
        );
        // T1021.004 (lateral movement) sits between discovery and C2.
        assert_eq!(i.techniques, ["T1046", "T1021.004", "T1572", "T1496"]);
        let tactics: Vec<_> = i.tactics().map(|t| t.id).collect();
        assert_eq!(tactics, ["TA0007", "TA0008", "TA0011", "TA0040"]);
        assert_eq!(i.stage(), "impact");
        assert_eq!(i.first_seen, at(10));
        assert_eq!(i.last_seen, at(300));
        assert_eq!((i.alerts, i.flows), (4, 3));
        assert_eq!(i.severity(), Severity::HIGH);
        assert_eq!(i.score(), 100);
        assert_eq!(inc.len(), 1);
        assert_eq!(inc.opened(), 1);
    }

    #[test]
    fn a_repeat_alert_joins_without_growing() {
        let mut inc = incidents();
        let a = alert(Detection::SshToExternal, 0, 1);
        assert_eq!(inc.observe(&a, ip(HOST), None, None).1, Change::Opened);
        assert_eq!(inc.observe(&a, ip(HOST), None, None).1, Change::Joined);
        // A new flow: 2 is a power of two, 3 is not, 4 is.
        let b = |f| alert(Detection::SshToExternal, 5, f);
        assert_eq!(inc.observe(&b(2), ip(HOST), None, None).1, Change::Grew);
        assert_eq!(inc.observe(&b(3), ip(HOST), None, None).1, Change::Joined);
        assert_eq!(inc.observe(&b(4), ip(HOST), None, None).1, Change::Grew);
        let i = inc.get(ip(HOST)).unwrap();
        assert_eq!((i.alerts, i.flows), (5, 4));
        // One medium signature over two tactics (lateral movement, C2).
        assert_eq!(i.score(), 25);
        assert_eq!(i.stage(), "command-and-control");
    }

    #[test]
    fn after_the_window_the_host_gets_a_new_incident() {
        let mut inc = Incidents::new(IncidentConfig {
            window_seconds: 3600,
            max_open: 16,
        });
        let first = inc
            .observe(&alert(Detection::CryptoMining, 0, 1), ip(HOST), None, None)
            .0
            .id
            .clone();
        let again = inc
            .observe(
                &alert(Detection::CryptoMining, 3600, 2),
                ip(HOST),
                None,
                None,
            )
            .0
            .id
            .clone();
        assert_eq!(first, again);
        let (i, c) = inc.observe(
            &alert(Detection::CryptoMining, 7201, 3),
            ip(HOST),
            None,
            None,
        );
        assert_eq!(c, Change::Opened);
        assert_ne!(i.id, first);
        assert_eq!(i.id, incident_id(ip(HOST), at(7201)));
        assert_eq!(inc.opened(), 2);
        assert_eq!(inc.expire(at(7201 + 3600)), 0);
        assert_eq!(inc.expire(at(7201 + 3601)), 1);
        assert!(inc.is_empty());
    }

    #[test]
    fn ids_are_stable_and_differ_by_host_and_time() {
        let a = incident_id(ip(HOST), at(1));
        assert_eq!(a, incident_id(ip(HOST), at(1)));
        assert_eq!(a, incident_id(ip("::ffff:10.10.0.10"), at(1)));
        assert_ne!(a, incident_id(ip("10.10.0.11"), at(1)));
        assert_ne!(a, incident_id(ip(HOST), at(2)));
        assert!(a.starts_with("ewi-") && a.len() == 20, "{a}");
    }

    #[test]
    fn a_full_table_closes_the_quietest_incident_and_counts_it() {
        let mut inc = Incidents::new(IncidentConfig {
            window_seconds: 3600,
            max_open: 2,
        });
        for (k, host) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            let a = alert(Detection::CryptoMining, k as u64, k as u64);
            inc.observe(&a, ip(host), None, None);
        }
        assert_eq!(inc.len(), 2);
        assert_eq!(inc.evicted(), 1);
        assert!(inc.get(ip("10.0.0.1")).is_none());
        assert!(inc.get(ip("10.0.0.3")).is_some());
    }

    #[test]
    fn open_incidents_are_counted_by_zone_and_severity() {
        let mut inc = incidents();
        let gpu: Option<Arc<str>> = Some("gpu".into());
        inc.observe(
            &alert(Detection::CryptoMining, 0, 1),
            ip("10.0.0.1"),
            gpu.clone(),
            None,
        );
        inc.observe(
            &alert(Detection::CryptoMining, 0, 2),
            ip("10.0.0.2"),
            gpu.clone(),
            None,
        );
        inc.observe(
            &alert(Detection::SshToExternal, 0, 3),
            ip("10.0.0.3"),
            None,
            None,
        );
        assert_eq!(
            inc.open_by_zone_and_severity(),
            [(None, Severity::MEDIUM, 1), (gpu, Severity::HIGH, 2)]
        );
    }

    #[test]
    fn the_record_and_the_story_name_what_happened() {
        let mut inc = incidents();
        let w = Arc::new(Workload {
            node: Some("gpu-07".into()),
            namespace: Some("ml".into()),
            pod: Some("train-7".into()),
            ..Workload::default()
        });
        inc.observe(
            &alert(Detection::InternalDiscovery, 0, 1),
            ip(HOST),
            None,
            Some(w),
        );
        let (i, _) = inc.observe(&alert(Detection::CryptoMining, 9, 2), ip(HOST), None, None);
        let rec = IncidentRecord {
            ts: at(9),
            change: "grew",
            incident: i.clone(),
        };
        let v = crate::json::Rendered::build(|o| rec.write_eve(o)).to_value();
        assert_eq!(v["event_type"], "incident");
        let body = &v["incident"];
        assert_eq!(body["id"], &*i.id);
        assert_eq!(body["host"], HOST);
        assert_eq!(body["tactics"], serde_json::json!(["TA0007", "TA0040"]));
        assert_eq!(body["techniques"], serde_json::json!(["T1046", "T1496"]));
        assert_eq!(
            body["signature_ids"],
            serde_json::json!([
                Detection::InternalDiscovery.sid(),
                Detection::CryptoMining.sid()
            ])
        );
        assert_eq!(body["workload"]["pod"], "train-7");
        assert_eq!(body["stage"], "impact");
        assert_eq!(body["alerts"], 2);
        assert_eq!(body["flows"], 2);
        let story = rec.story();
        assert!(story[0].contains("pod ml/train-7 on gpu-07"), "{story:?}");
        assert!(story[1].contains("2 alert(s) on 2 flow(s)"), "{story:?}");
        assert!(story[2].contains("discovery") && story[2].contains("internal-discovery"));
        assert!(story[3].contains("impact") && story[3].contains("crypto-mining"));
    }
}
