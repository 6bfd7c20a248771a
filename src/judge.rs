//! The engine's link to the egress policy: when to judge a flow, with
//! which facts and names, and what to remember so a long-lived flow does
//! not alert on every packet.
//!
//! A flow is judged when its stage changes (probing → identified → ended),
//! when its analyzer's facts change, and when packet time reaches the
//! policy's next check (long-lived thresholds) — never merely because a
//! packet arrived.

use crate::analyzer::facts::Evidence;
use crate::analyzer::names::NameCache;
use crate::analyzer::tunnel::{self, Hop, Via};
use crate::community_id::community_id;
use crate::flow::key::Endpoint;
use crate::flow::{pressure, Flow, Marks};
use crate::policy::{
    Alert, Detection, FlowSubject, RuleSet, SensorFinding, Stage, SuppressionWindow, Tunnelled,
};
use crate::time::{Timestamp, NANOS_PER_SEC};
use crate::trial::Trial;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The rules every worker reads; a reload swaps them for all at once.
pub type SharedRules = Arc<ArcSwap<RuleSet>>;

/// Suppression entries a worker remembers at most.
const SUPPRESSION_CAPACITY: usize = 65_536;

/// The policy state of one worker.
pub struct Judge {
    rules: SharedRules,
    window: SuppressionWindow,
    names: Arc<NameCache>,
    community_seed: u16,
    /// Findings swallowed by the suppression window.
    pub suppressed: u64,
    /// Trying other rules alongside (`replay --compare-rules`,
    /// `check-rules --capture`); `None` in normal runs.
    trial: Option<Box<Trial>>,
}

impl Judge {
    pub fn new(rules: SharedRules, names: Arc<NameCache>, community_seed: u16) -> Self {
        Judge {
            rules,
            window: SuppressionWindow::new(SUPPRESSION_CAPACITY),
            names,
            community_seed,
            suppressed: 0,
            trial: None,
        }
    }

    /// Runs `trial` alongside every judgement from now on.
    pub fn set_trial(&mut self, trial: Trial) {
        self.trial = Some(Box::new(trial));
    }

    /// The trial, with what it recorded.
    pub fn take_trial(&mut self) -> Option<Trial> {
        self.trial.take().map(|t| *t)
    }

    /// Judges `flow` at `now` if anything changed since the last time;
    /// new alerts are appended to `out`. `analyzed`: the flow's analysis
    /// ran for this packet (only then can its facts have changed).
    ///
    /// A flow still being probed is not judged: until its protocol is known
    /// every detection an allow entry could silence has to wait anyway.
    pub fn on_packet(
        &mut self,
        flow: &mut Flow,
        now: Timestamp,
        analyzed: bool,
        out: &mut Vec<Alert>,
    ) {
        let due = flow.recheck_minutes != 0
            && flow.secs_since_start(now) >= u32::from(flow.recheck_minutes) * 60;
        if !analyzed && flow.judged != 0 {
            // Judged before and nothing new: the facts stay unread.
            if due {
                self.judge(flow, Stage::Identified, now, out);
            }
            return;
        }
        let revision = flow
            .app
            .as_ref()
            .and_then(|a| a.facts())
            .map(|f| f.revision);
        if revision.is_none() && !flow.marks.has(Marks::APP_UNKNOWN) {
            return; // still probing
        }
        let mark = judged_mark(revision.unwrap_or(0), Stage::Identified);
        if mark != flow.judged || due {
            self.judge(flow, Stage::Identified, now, out);
        }
    }

    /// Alerts on a flow-table pressure episode (see [`pressure`]).
    pub fn on_pressure(&mut self, report: &pressure::Report, out: &mut Vec<Alert>) {
        let sample = &report.sample;
        let finding = SensorFinding {
            detection: Detection::FlowTablePressure,
            ts: report.now,
            flow_id: sample.flow_id,
            src: sample.client,
            dst: sample.server,
            proto: sample.key.proto,
            evidence: Evidence::new(report.summary(), &[report.packet], report.since, report.now),
        };
        let classified = self.rules.load().sensor_alert(finding, &mut self.window);
        self.suppressed += u64::from(classified.suppressed);
        for mut alert in classified.alerts {
            alert.community_id = Some(community_id(&sample.key, self.community_seed));
            out.push(alert);
        }
    }

    /// Judges a flow that ended, with whatever is known.
    pub fn on_end(&mut self, flow: &mut Flow, out: &mut Vec<Alert>) {
        self.judge(flow, Stage::Ended, flow.last(), out);
    }

    fn judge(&mut self, flow: &mut Flow, stage: Stage, now: Timestamp, out: &mut Vec<Alert>) {
        let facts = flow.app.as_ref().and_then(|a| a.facts());
        let cached = self
            .names
            .lookup(flow.client().addr, flow.server().addr, now);
        let mut names: Vec<&str> = cached.iter().map(|n| &**n).collect();
        let hops = flow.app.as_ref().map(|a| a.tunnel()).unwrap_or_default();
        let route = Route::of(&hops);
        // A tunnel goes to its target: the proxy's names are the carrier's.
        let proxy_names = match route {
            Some(_) => std::mem::take(&mut names),
            None => Vec::new(),
        };
        if let Some(host) = route.and_then(|r| r.target.name()) {
            names.push(host);
        }
        if let Some(sni) = facts.and_then(|f| f.server_name.as_deref()) {
            if !names.contains(&sni) {
                names.push(sni);
            }
        }
        let via = route.map(|_| tunnel::chain(&hops)).unwrap_or_default();
        let tunnel = route.map(|r| Tunnelled {
            via: &via,
            carrier_app: r.carrier.app_proto(),
            proxy: flow.server(),
            proxy_names: &proxy_names,
            target_host: &r.target.host,
            target_addr: r.target.addr,
        });
        let server = match route {
            Some(r) => Endpoint {
                addr: r.target.addr.unwrap_or(flow.server().addr),
                port: r.target.port,
            },
            None => flow.server(),
        };
        let subject = FlowSubject {
            app_proto: facts.and_then(|f| f.app_proto),
            stage,
            names: &names,
            ssh: facts.and_then(|f| f.ssh.as_deref()),
            mining: facts.and_then(|f| f.mining.as_deref()),
            lookups: facts.map_or(&[], |f| &f.lookups),
            icmp_tunnel: facts.and_then(|f| f.icmp_tunnel.as_deref()),
            now,
            tunnel,
            ..FlowSubject::new(
                flow.id(),
                flow.client(),
                server,
                flow.key.proto,
                flow.start(),
            )
        };
        let rules = self.rules.load();
        let classified = rules.classify(&subject, &mut flow.alerts, &mut self.window);
        self.suppressed += u64::from(classified.suppressed);
        let mut next_check = classified.next_check;
        if let Some(trial) = self.trial.as_deref_mut() {
            next_check = trial.observe(&rules, &subject, flow, classified.alerts.len(), next_check);
        }
        let revision = facts.map_or(0, |f| f.revision);
        flow.judged = judged_mark(revision, stage);
        flow.recheck_minutes = next_check.map_or(0, |t| {
            (t.since(flow.start()).div_ceil(60 * NANOS_PER_SEC)).clamp(1, u64::from(u16::MAX))
                as u16
        });
        if classified.alerts.is_empty() {
            return;
        }
        let id = community_id(&flow.key, self.community_seed);
        for mut alert in classified.alerts {
            alert.community_id = Some(id.clone());
            out.push(alert);
        }
    }
}

/// Where a tunnelled flow goes, and through which outermost carrier.
#[derive(Copy, Clone)]
struct Route<'a> {
    carrier: Via,
    target: &'a Hop,
}

impl<'a> Route<'a> {
    fn of(hops: &[(Via, Option<&'a Hop>)]) -> Option<Route<'a>> {
        let target = tunnel::target(hops)?;
        let carrier = hops.first()?.0;
        Some(Route { carrier, target })
    }
}

/// The names a flow's server is known by: what the client itself asked for
/// (TLS SNI, HTTP Host) and the names it resolved to that address via DNS
/// before the flow started.
pub fn flow_names(cache: &NameCache, flow: &Flow) -> Vec<Arc<str>> {
    let mut names = cache.lookup(flow.client().addr, flow.server().addr, flow.start());
    let asked = flow
        .app
        .as_ref()
        .and_then(|a| a.facts())
        .and_then(|f| f.server_name.as_deref());
    if let Some(name) = asked {
        if !names.iter().any(|n| **n == *name) {
            names.push(Arc::from(name));
        }
    }
    names
}

/// The facts revision (low 14 bits) and the stage, packed.
fn judged_mark(revision: u32, stage: Stage) -> u16 {
    let stage_bits: u16 = match stage {
        Stage::Probing => 1,
        Stage::Identified => 2,
        Stage::Ended => 3,
    };
    (revision as u16 & 0x3fff) | (stage_bits << 14)
}
