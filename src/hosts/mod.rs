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
//! per-message shapes the DNS analyzer puts on its `dns` records.

pub mod discovery;
pub mod dns_tunnel;

use crate::event::{AppRecord, Event, EventSink, FlowRecord};
use crate::flow::key::{proto, Endpoint};
use crate::json::Rendered;
use crate::judge::SharedRules;
use crate::policy::{
    Alert, Detection, FlowSubject, HostFinding, RuleSet, Stage, SuppressionWindow,
};
use crate::stats::Stats;
use discovery::{Attempt, Discovery, DiscoveryConfig, Finding, Outcome, ProbeKind};
use dns_tunnel::{DnsTunnelConfig, DnsTunnels};
use std::net::IpAddr;

/// Suppression entries the host stage remembers at most.
const SUPPRESSION_CAPACITY: usize = 16_384;

/// The per-host detectors and what they counted.
pub struct HostStage {
    rules: SharedRules,
    discovery: Discovery,
    dns: DnsTunnels,
    window: SuppressionWindow,
    /// Alerts raised (by detection and severity) and sources dropped.
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
            stats: Stats::default(),
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
            Event::Alert(_) => {}
        }
    }

    /// Whether the stage reads this event at all (the sensor's writer
    /// skips the others).
    pub fn reads(event: &Event) -> bool {
        match event {
            Event::Flow(_) => true,
            Event::App(a) => a.event.dns.is_some(),
            Event::Alert(_) => false,
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

/// An [`EventSink`] that passes every event on and adds the host stage's
/// alerts after the record that raised them (the replay's writer).
pub struct HostSink<'a> {
    inner: &'a mut (dyn EventSink + Send),
    pub stage: HostStage,
    alerts: Vec<Alert>,
}

impl<'a> HostSink<'a> {
    pub fn new(inner: &'a mut (dyn EventSink + Send), stage: HostStage) -> Self {
        HostSink {
            inner,
            stage,
            alerts: Vec::new(),
        }
    }
}

impl EventSink for HostSink<'_> {
    fn event(&mut self, event: Event) {
        self.stage.observe(&event, &mut self.alerts);
        self.inner.event(event);
        for alert in self.alerts.drain(..) {
            self.inner.event(Event::Alert(Box::new(alert)));
        }
    }
}

#[cfg(test)]
mod tests;
