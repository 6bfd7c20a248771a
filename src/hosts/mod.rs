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
//! Today it holds the internal-discovery detector ([`discovery`]).

pub mod discovery;

use crate::event::{Event, EventSink, FlowRecord};
use crate::flow::key::{proto, Endpoint};
use crate::json::Rendered;
use crate::judge::SharedRules;
use crate::policy::{
    Alert, Detection, FlowSubject, HostFinding, RuleSet, Stage, SuppressionWindow,
};
use crate::stats::Stats;
use discovery::{Attempt, Discovery, DiscoveryConfig, Finding, Outcome, ProbeKind};
use std::net::IpAddr;

/// Suppression entries the host stage remembers at most.
const SUPPRESSION_CAPACITY: usize = 16_384;

/// The per-host detectors and what they counted.
pub struct HostStage {
    rules: SharedRules,
    discovery: Discovery,
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
            window: SuppressionWindow::new(SUPPRESSION_CAPACITY),
            stats: Stats::default(),
        }
    }

    /// Sources the discovery detector tracks now.
    pub fn sources(&self) -> usize {
        self.discovery.sources()
    }

    /// Looks at one event on its way out; alerts it raises are appended
    /// to `out`.
    pub fn observe(&mut self, event: &Event, out: &mut Vec<Alert>) {
        let Event::Flow(record) = event else {
            return;
        };
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
        let classified = rules.host_alert(host_finding(&finding), &mut self.window);
        self.stats.alerts_suppressed += u64::from(classified.suppressed);
        for alert in classified.alerts {
            self.stats.count_alert(alert.detection, alert.severity);
            out.push(alert);
        }
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
