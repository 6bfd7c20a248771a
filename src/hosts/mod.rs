//! Per-host state, fed from the flow records on their way out.
//!
//! The engine is per worker and flows are sharded by the symmetric flow
//! hash, so one host's flows are spread over every worker: a per-worker
//! detector would see a fraction of a scan (and lower thresholds would
//! make it noisy). The host stage therefore sits where every worker's
//! events already meet in one place: the EVE writer (the sensor's output
//! thread; the replay's writer stage, through [`HostSink`]). It reads flow
//! records, never packets, so the flow table knows nothing about it, and
//! it runs on packet time (the records' timestamps) like the rest of the
//! core.
//!
//! It holds the internal-discovery detector ([`discovery`]), fed by flow
//! records, and the DNS tunnel detector ([`dns_tunnel`]), fed by the
//! per-message shapes the DNS analyzer puts on its `dns` records. It
//! groups every alert (the engines' and its own) into one incident per
//! host ([`incident`]), naming the host's workload from the inventory
//! ([`crate::inventory`]) — before the alert is written, so the alert
//! carries its `incident_id`.

pub mod discovery;
pub mod dns_tunnel;
pub mod incident;
pub mod window;

use crate::event::{AppRecord, Event, EventSink, FlowRecord};
use crate::flow::key::{proto, Endpoint};
use crate::inventory::SharedInventory;
use crate::json::Rendered;
use crate::judge::SharedRules;
use crate::policy::Direction;
use crate::policy::{
    Alert, Detection, FlowSubject, HostFinding, RuleSet, Stage, SuppressionWindow,
};
use crate::stats::Stats;
use crate::time::{Timestamp, NANOS_PER_SEC};
use discovery::{Attempt, Discovery, DiscoveryConfig, Finding, Outcome, ProbeKind};
use dns_tunnel::{DnsTunnelConfig, DnsTunnels};
use incident::{Change, IncidentConfig, IncidentRecord, Incidents};
use std::net::IpAddr;

/// Suppression entries the host stage remembers at most.
const SUPPRESSION_CAPACITY: usize = 16_384;

/// Packet time between two looks for incidents that went quiet.
const SWEEP_NANOS: u64 = 60 * NANOS_PER_SEC;

/// The per-host detectors and what they counted.
pub struct HostStage {
    rules: SharedRules,
    discovery: Discovery,
    dns: DnsTunnels,
    window: SuppressionWindow,
    incidents: Incidents,
    inventory: SharedInventory,
    next_sweep: Timestamp,
    /// The open incidents changed since [`HostStage::take_changed`].
    changed: bool,
    /// Alerts raised (by detection and severity), sources dropped,
    /// incidents opened and evicted.
    pub stats: Stats,
}

impl HostStage {
    pub fn new(rules: SharedRules) -> Self {
        Self::with_config(rules, DiscoveryConfig::default())
    }

    pub fn with_config(rules: SharedRules, cfg: DiscoveryConfig) -> Self {
        HostStage {
            rules,
            discovery: Discovery::new(cfg),
            dns: DnsTunnels::new(DnsTunnelConfig::default()),
            window: SuppressionWindow::new(SUPPRESSION_CAPACITY),
            incidents: Incidents::new(IncidentConfig::default()),
            inventory: crate::inventory::shared(Default::default()),
            next_sweep: Timestamp::from_nanos(0),
            changed: false,
            stats: Stats::default(),
        }
    }

    /// Groups alerts into incidents with these settings.
    pub fn with_incidents(mut self, cfg: IncidentConfig) -> Self {
        self.incidents = Incidents::new(cfg);
        self
    }

    /// Names hosts from this inventory (read per alert; a reload swaps it).
    pub fn with_inventory(mut self, inventory: SharedInventory) -> Self {
        self.inventory = inventory;
        self
    }

    /// The open incidents.
    pub fn incidents(&self) -> &Incidents {
        &self.incidents
    }

    /// Whether the open incidents changed since the last call (the
    /// writer then sets the metric).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Passes one event on to `out` with what the host stage adds: after
    /// a flow record, the alerts it raised; every alert gets its
    /// incident (and, before it, the incident record when the incident
    /// opened or grew) and its host's workload.
    pub fn handle(&mut self, event: Event, out: &mut Vec<Event>) {
        let mut raised = Vec::new();
        self.observe(&event, &mut raised);
        match event {
            Event::Alert(alert) => self.assign(alert, out),
            Event::Flow(record) => {
                self.sweep(record.end);
                out.push(Event::Flow(record));
            }
            other => out.push(other),
        }
        for alert in raised {
            self.assign(Box::new(alert), out);
        }
    }

    /// Puts an alert into its host's incident and writes both.
    fn assign(&mut self, mut alert: Box<Alert>, out: &mut Vec<Event>) {
        let Some(host) = host_of(&alert) else {
            out.push(Event::Alert(alert));
            return;
        };
        let zone = self.rules.load().zone_of(host).map(|z| z.name.clone());
        let workload = self.inventory.load().lookup(host).cloned();
        let (incident, change) = self.incidents.observe(&alert, host, zone, workload.clone());
        alert.incident_id = Some(incident.id.clone());
        alert.workload = workload;
        let change = match change {
            Change::Opened => Some("opened"),
            Change::Grew => Some("grew"),
            Change::Joined => None,
        };
        if let Some(change) = change {
            out.push(Event::Incident(Box::new(IncidentRecord {
                ts: alert.ts,
                change,
                incident: incident.clone(),
            })));
        }
        self.changed |= change.is_some();
        self.stats.incidents_opened = self.incidents.opened();
        self.stats.incidents_evicted = self.incidents.evicted();
        out.push(Event::Alert(alert));
    }

    /// Closes the incidents that went quiet, once a minute of packet time.
    fn sweep(&mut self, now: Timestamp) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.add_nanos(SWEEP_NANOS);
        if self.incidents.expire(now) > 0 {
            self.changed = true;
        }
    }

    /// Sources the discovery detector tracks now.
    pub fn sources(&self) -> usize {
        self.discovery.sources()
    }

    /// Clients the DNS tunnel detector tracks now.
    pub fn dns_clients(&self) -> usize {
        self.dns.clients()
    }

    /// Looks at one event on its way out; alerts it raises are appended
    /// to `out`.
    pub fn observe(&mut self, event: &Event, out: &mut Vec<Alert>) {
        match event {
            Event::Flow(record) => self.observe_flow(record, out),
            Event::App(app) => self.observe_dns(app, out),
            Event::Alert(_) | Event::Incident(_) => {}
        }
    }

    /// Whether the stage reads this event at all (the sensor's writer
    /// passes the others straight on).
    pub fn reads(event: &Event) -> bool {
        match event {
            Event::Flow(_) | Event::Alert(_) => true,
            Event::App(a) => a.event.dns.is_some(),
            Event::Incident(_) => false,
        }
    }

    fn observe_dns(&mut self, app: &AppRecord, out: &mut Vec<Alert>) {
        let Some(shape) = app.event.dns.as_deref() else {
            return;
        };
        let rules = self.rules.load();
        if !rules.settings(Detection::DnsTunnel).enabled || !unicast_dns(&app.meta) {
            return;
        }
        let resolver = if app.meta.src.addr == shape.client {
            app.meta.dest
        } else {
            app.meta.src
        };
        let message = dns_tunnel::Message {
            ts: app.event.ts,
            flow_id: app.meta.flow_id,
            client: shape.client,
            resolver,
            response: shape.response,
            qname: &shape.qname,
            qtype: shape.qtype,
            size: shape.size,
        };
        let finding = self.dns.observe(&message);
        self.stats.dns_tunnel_domains_dropped = self.dns.dropped();
        let Some(finding) = finding else {
            return;
        };
        if dns_tunnel_permitted(&rules, &app.meta, &finding) {
            return;
        }
        self.raise(&rules, dns_finding(&finding, app.meta.proto), out);
    }

    fn raise(&mut self, rules: &RuleSet, finding: HostFinding, out: &mut Vec<Alert>) {
        let classified = rules.host_alert(finding, &mut self.window);
        self.stats.alerts_suppressed += u64::from(classified.suppressed);
        for alert in classified.alerts {
            self.stats.count_alert(alert.detection, alert.severity);
            out.push(alert);
        }
    }

    fn observe_flow(&mut self, record: &FlowRecord, out: &mut Vec<Alert>) {
        let rules = self.rules.load();
        if !rules.settings(Detection::InternalDiscovery).enabled {
            return;
        }
        let Some(attempt) = attempt_of(&rules, record) else {
            return;
        };
        if permitted(&rules, record) {
            return;
        }
        let finding = self.discovery.observe(&attempt);
        self.stats.discovery_sources_dropped = self.discovery.dropped();
        let Some(finding) = finding else {
            return;
        };
        self.raise(&rules, host_finding(&finding), out);
    }
}

/// DNS that can carry a tunnel: unicast, not mDNS (5353), LLMNR (5355)
/// or NetBIOS names (137).
fn unicast_dns(meta: &crate::event::FlowMeta) -> bool {
    let local = |p: u16| matches!(p, 137 | 5353 | 5355);
    unicast(meta.dest.addr) && !local(meta.dest.port) && !local(meta.src.port)
}

/// Whether an allow entry for the resolver, or for the tunnel's domain,
/// grants `allow_dns_tunnel` (a sanctioned resolver or lookup service).
fn dns_tunnel_permitted(
    rules: &RuleSet,
    meta: &crate::event::FlowMeta,
    f: &dns_tunnel::Finding,
) -> bool {
    let names = [f.domain.as_str()];
    let subject = FlowSubject {
        app_proto: Some("dns"),
        stage: Stage::Ended,
        names: &names,
        now: f.last_ts,
        ..FlowSubject::new(
            meta.flow_id,
            Endpoint {
                addr: f.client,
                port: 0,
            },
            f.resolver,
            meta.proto,
            f.first_ts,
        )
    };
    rules.allow_grants(&subject, crate::policy::Permission::DnsTunnel)
}

fn dns_finding(f: &dns_tunnel::Finding, proto: u8) -> HostFinding {
    let c = &f.counts;
    let detail = Rendered::build(|o| {
        o.str("domain", &f.domain);
        o.str("sample", &f.sample);
        o.u64("level", f.level.into());
        o.u64("queries", c.queries.into());
        o.u64("unique_names", c.unique.into());
        o.u64("encoded_names", c.encoded.into());
        o.u64("data_type_queries", c.data_types.into());
        o.u64("name_bytes", c.name_bytes.into());
        o.u64("longest_name", c.longest_name.into());
        o.u64("responses", c.responses.into());
        o.u64("response_bytes", c.response_bytes);
        o.u64("largest_response", c.largest_response.into());
        o.strs("shapes", f.shapes.iter().copied());
        o.u64("window_seconds", f.window_seconds);
    });
    HostFinding {
        detection: Detection::DnsTunnel,
        ts: f.last_ts,
        flow_id: f.flow_id,
        src: Endpoint {
            addr: f.client,
            port: 0,
        },
        dst: f.resolver,
        proto,
        level: f.level,
        mitre: Detection::DnsTunnel.mitre(),
        evidence: crate::analyzer::facts::Evidence::new(f.summary(), &[], f.first_ts, f.last_ts),
        detail,
    }
}

/// The attempt a flow record stands for: a flow an internal host opened
/// toward another internal (unicast) host, with how it went. Interim
/// records, flows picked up mid-stream and ICMP messages other than echo
/// and timestamp requests are not attempts.
pub fn attempt_of(rules: &RuleSet, r: &FlowRecord) -> Option<Attempt> {
    if r.interim {
        return None;
    }
    let (src, dst) = (r.meta.src, r.meta.dest);
    if src.addr == dst.addr || !unicast(dst.addr) {
        return None;
    }
    if !rules.is_internal(src.addr) || !rules.is_internal(dst.addr) {
        return None;
    }
    let answered = r.dirs[1].pkts > 0;
    let (kind, outcome) = match r.meta.proto {
        proto::TCP => (ProbeKind::Port, tcp_outcome(r)?),
        proto::UDP => (ProbeKind::Port, reply_outcome(answered, r.icmp_error)),
        proto::ICMP | proto::ICMPV6 if matches!(src.port, 8 | 13 | 128) => {
            (ProbeKind::Echo, reply_outcome(answered, r.icmp_error))
        }
        _ => return None,
    };
    Some(Attempt {
        ts: r.start,
        flow_id: r.meta.flow_id,
        src: src.addr,
        dst,
        proto: r.meta.proto,
        kind,
        outcome,
    })
}

/// A TCP attempt: the originator's SYN and what came back (`None`: no SYN
/// from the originator, the flow was picked up mid-stream).
fn tcp_outcome(r: &FlowRecord) -> Option<Outcome> {
    let tcp = r.tcp.as_ref()?;
    Some(match tcp.conn_state {
        "REJ" => Outcome::Refused,
        "S0" | "SH" | "RSTOS0" if r.icmp_error => Outcome::Unreachable,
        "S0" | "SH" | "RSTOS0" => Outcome::Unanswered,
        "OTH" | "RSTRH" | "SHR" => return None,
        _ => Outcome::Answered,
    })
}

fn reply_outcome(answered: bool, icmp_error: bool) -> Outcome {
    match (icmp_error, answered) {
        (true, _) => Outcome::Unreachable,
        (false, true) => Outcome::Answered,
        (false, false) => Outcome::Unanswered,
    }
}

/// The internal host an alert is about: the originator of egress and
/// internal flows (a scanner is the source of its host finding), the
/// responder of ingress. Sensor findings (flow-table pressure) and flows
/// with no inside end belong to no host.
fn host_of(a: &Alert) -> Option<IpAddr> {
    if a.detection == Detection::FlowTablePressure {
        return None;
    }
    match a.direction {
        Direction::Egress | Direction::Internal => Some(a.src.addr),
        Direction::Ingress => Some(a.dst.addr),
        Direction::External => None,
    }
}

fn unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified())
                && v4.octets()[3] != 255
        }
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

/// Whether the rules let this flow's source discover (zone or allow entry
/// with `allow_discovery`).
fn permitted(rules: &RuleSet, r: &FlowRecord) -> bool {
    let names: Vec<&str> = r.names.iter().map(|n| &**n).collect();
    let subject = FlowSubject {
        app_proto: r.meta.app_proto.filter(|p| *p != "unknown"),
        stage: Stage::Ended,
        names: &names,
        now: r.end,
        ..FlowSubject::new(
            r.meta.flow_id,
            r.meta.src,
            r.meta.dest,
            r.meta.proto,
            r.start,
        )
    };
    rules.discovery_permitted(&subject)
}

fn host_finding(f: &Finding) -> HostFinding {
    let c = &f.counts;
    let detail = Rendered::build(|o| {
        o.str("kind", f.kind.name());
        o.u64("level", f.level.into());
        o.u64("hosts", c.hosts.into());
        o.u64("ports", c.ports.into());
        o.u64("host_ports", c.pairs.into());
        o.u64("echo_hosts", c.echo_hosts.into());
        o.u64("attempts", c.attempts.into());
        o.u64("failed", c.failed().into());
        o.u64("refused", c.refused.into());
        o.u64("unreachable", c.unreachable.into());
        o.u64("unanswered", c.unanswered.into());
        o.value("sample_ports", &f.ports);
        o.u64("window_seconds", f.window_seconds);
    });
    HostFinding {
        detection: Detection::InternalDiscovery,
        ts: f.last_ts,
        flow_id: f.sample.flow_id,
        src: Endpoint {
            addr: f.src,
            port: 0,
        },
        dst: f.sample.dst,
        proto: f.sample.proto,
        level: f.level,
        mitre: f.kind.mitre(),
        evidence: crate::analyzer::facts::Evidence::new(f.summary(), &[], f.first_ts, f.last_ts),
        detail,
    }
}

/// An [`EventSink`] that passes every event through the host stage
/// ([`HostStage::handle`]) on its way (the replay's writer).
pub struct HostSink<'a> {
    inner: &'a mut (dyn EventSink + Send),
    pub stage: HostStage,
    out: Vec<Event>,
}

impl<'a> HostSink<'a> {
    pub fn new(inner: &'a mut (dyn EventSink + Send), stage: HostStage) -> Self {
        HostSink {
            inner,
            stage,
            out: Vec::new(),
        }
    }
}

impl EventSink for HostSink<'_> {
    fn event(&mut self, event: Event) {
        self.stage.handle(event, &mut self.out);
        for e in self.out.drain(..) {
            self.inner.event(e);
        }
    }
}

#[cfg(test)]
mod tests;
