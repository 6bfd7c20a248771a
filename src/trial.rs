//! Trying rules on a capture before they ship: `replay --compare-rules`
//! and `check-rules --capture`.
//!
//! A [`Trial`] rides along with the engine's [`Judge`](crate::judge::Judge)
//! in one pass over the capture. At every judgement the engine makes with
//! its rules (NEW), the trial judges the same flow, with the same facts
//! and names at the same packet time, under the OLD rules, with a per-flow
//! [`AlertState`] and a suppression window of its own; when the flow ends
//! it records which entries of each rule set permitted it
//! ([`Usage`]) and whether its findings differ. One pass, not two replays:
//! the judgement points are decided by facts and stages, which do not
//! depend on the rules, so both sets see the flow exactly as a replay of
//! their own would; only the long-lived rechecks depend on the rules, and
//! the engine is asked to recheck at the earlier of the two sets' times.
//! (A table under eviction pressure protects flows that alerted under NEW:
//! that is the one place OLD's view can differ from a replay with OLD.)
//!
//! Without a trial the judge does none of this: one `Option` test per
//! judgement, nothing per packet.
//!
//! Memory: one [`AlertState`] (4 bytes plus the map's overhead) per live
//! flow in compare mode, bounded by the flow table; per entry a bounded
//! [`Usage`] record; at most [`MAX_GROUPS`] groups of changed alerts, the
//! flows beyond counted in [`Comparison::groups_dropped`].

pub mod report;

use crate::community_id::community_id;
use crate::flow::Flow;
use crate::policy::usage::{EntryOutcome, FlowBrief, Usage};
use crate::policy::{
    AlertState, Detection, FlowSubject, RuleSet, Severity, Stage, SuppressionWindow,
};
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// Groups of changed alerts kept at most.
pub const MAX_GROUPS: usize = 10_000;
/// Suppression entries the OLD side remembers (as a worker's judge).
const SUPPRESSION_CAPACITY: usize = 65_536;

/// Whether an alert appears or disappears with the NEW rules.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// Raised under NEW, not under OLD.
    Appears,
    /// Raised under OLD, not under NEW.
    Disappears,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Appears => "appears",
            Change::Disappears => "disappears",
        }
    }
}

/// Changed alerts of like flows: to one destination, for the same
/// reasons.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub change: Change,
    pub proto: u8,
    pub server: IpAddr,
    pub port: u16,
    pub app_proto: Option<String>,
    pub name: Option<String>,
    /// The client's zone, by name.
    pub zone: Option<String>,
    /// What the entries of each rule set said about these flows.
    pub new_why: String,
    pub old_why: String,
}

/// The flows of a group, what changed on them, and one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub flows: u64,
    /// Per (detection, level; the level is the `ssh-long-lived` threshold,
    /// else 0): how many of the flows it changed on, and its severity in
    /// the rule set that raised it.
    pub detections: BTreeMap<(Detection, u8), (u64, Severity)>,
    pub example: FlowBrief,
}

impl Group {
    /// Changed (flow, detection) pairs.
    pub fn alerts(&self) -> u64 {
        self.detections.values().map(|(n, _)| n).sum()
    }
}

/// What the OLD side keeps.
struct Old {
    rules: Arc<RuleSet>,
    usage: Usage,
    window: SuppressionWindow,
    /// Per live flow, by flow id.
    states: HashMap<u64, AlertState>,
    alerts: u64,
}

/// The comparison's result: the changed alerts, grouped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub groups: BTreeMap<GroupKey, Group>,
    /// Changed (flow, detection) pairs that fit in no group (over
    /// [`MAX_GROUPS`]).
    pub groups_dropped: u64,
    /// Alerts each set raised (after per-flow dedup and suppression).
    pub new_alerts: u64,
    pub old_alerts: u64,
    /// OLD's usage of its own entries.
    pub old_usage: Usage,
}

impl Comparison {
    /// Changed (flow, detection) pairs of one kind.
    pub fn count(&self, change: Change) -> u64 {
        self.groups
            .iter()
            .filter(|(k, _)| k.change == change)
            .map(|(_, g)| g.alerts())
            .sum()
    }

    /// Whether any alert appears or disappears.
    pub fn changed(&self) -> bool {
        !self.groups.is_empty() || self.groups_dropped > 0
    }

    /// Whether an alert at or above `threshold` appears with NEW (or
    /// might have: changes that fit in no group count).
    pub fn appears_at(&self, threshold: Severity) -> bool {
        let grouped = self.groups.iter().any(|(k, g)| {
            k.change == Change::Appears && g.detections.values().any(|(_, s)| s.meets(threshold))
        });
        grouped || self.groups_dropped > 0
    }
}

/// Entry usage of the engine's rules and, when asked, the comparison with
/// another rule set.
pub struct Trial {
    /// Usage of the engine's (NEW) rules, made on its first judgement.
    usage: Option<Usage>,
    old: Option<Old>,
    comparison: Comparison,
    new_alerts: u64,
    community_seed: u16,
}

/// What a finished trial found.
#[derive(Clone, Debug)]
pub struct TrialReport {
    /// Usage of the engine's rules (empty if no flow was judged).
    pub usage: Usage,
    /// The comparison, if an OLD rule set was given.
    pub comparison: Option<Comparison>,
}

impl Trial {
    /// Records entry usage only (`check-rules --capture`).
    pub fn usage_only(community_seed: u16) -> Self {
        Trial {
            usage: None,
            old: None,
            comparison: Comparison::default(),
            new_alerts: 0,
            community_seed,
        }
    }

    /// Records usage and compares with `old` (`replay --compare-rules`).
    pub fn comparing(old: Arc<RuleSet>, community_seed: u16) -> Self {
        let usage = Usage::new(&old);
        Trial {
            old: Some(Old {
                rules: old,
                usage,
                window: SuppressionWindow::new(SUPPRESSION_CAPACITY),
                states: HashMap::new(),
                alerts: 0,
            }),
            ..Trial::usage_only(community_seed)
        }
    }

    /// Called by the judge after `rules` (NEW) judged `s` and raised
    /// `new_alerts` alerts; `flow.alerts` is NEW's state after it. Returns
    /// when to judge again: the earlier of NEW's `next_check` and OLD's.
    pub fn observe(
        &mut self,
        rules: &RuleSet,
        s: &FlowSubject<'_>,
        flow: &Flow,
        new_alerts: usize,
        next_check: Option<Timestamp>,
    ) -> Option<Timestamp> {
        self.new_alerts += new_alerts as u64;
        let mut next = next_check;
        let mut old_state = AlertState::default();
        if let Some(old) = &mut self.old {
            let state = old.states.entry(s.flow_id).or_default();
            let classified = old.rules.classify(s, state, &mut old.window);
            old.alerts += classified.alerts.len() as u64;
            old_state = *state;
            next = match (next, classified.next_check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if s.stage == Stage::Ended {
                old.states.remove(&s.flow_id);
            }
        }
        if s.stage == Stage::Ended {
            self.on_end(rules, s, flow, old_state);
        }
        next
    }

    fn on_end(&mut self, rules: &RuleSet, s: &FlowSubject<'_>, flow: &Flow, old_state: AlertState) {
        let bytes = flow.dirs[0].bytes.saturating_add(flow.dirs[1].bytes);
        // Flows that alerted are named by Community ID in the reports.
        let cid = (flow.alerts.any() || old_state.any())
            .then(|| community_id(&flow.key, self.community_seed));
        let named = FlowSubject {
            community_id: cid.as_deref(),
            ..*s
        };
        let s = &named;
        let usage = self.usage.get_or_insert_with(|| Usage::new(rules));
        let new = rules.entry_outcome(s);
        usage.record(rules, s, &new.permitting, bytes);
        let new_state = flow.alerts;
        if new_state.any() {
            let raised: Vec<Detection> = new_state.raised().collect();
            usage.record_alerting(&new.permitting, s, &raised);
            if let Some(c) = &new.closest {
                usage.record_miss(c, s);
            }
        }
        let Some(old) = &mut self.old else {
            return;
        };
        let old_out = old.rules.entry_outcome(s);
        old.usage.record(&old.rules, s, &old_out.permitting, bytes);
        if old_state.any() {
            if let Some(c) = &old_out.closest {
                old.usage.record_miss(c, s);
            }
        }
        let changes = diff(new_state, old_state);
        if changes.is_empty() {
            return;
        }
        let brief = FlowBrief::of(s);
        let new_why = why(rules, &new);
        let old_why = why(&old.rules, &old_out);
        let zone = rules.zone_of(s.client.addr).map(|z| z.name.to_string());
        for change in [Change::Appears, Change::Disappears] {
            let detections: Vec<_> = changes
                .iter()
                .filter(|(c, _, _)| *c == change)
                .map(|(_, d, level)| {
                    let set = match change {
                        Change::Appears => rules,
                        Change::Disappears => &*old.rules,
                    };
                    (*d, *level, set.settings(*d).severity)
                })
                .collect();
            if detections.is_empty() {
                continue;
            }
            let key = GroupKey {
                change,
                proto: s.proto,
                server: s.server.addr,
                port: s.server.port,
                app_proto: brief.app_proto.clone(),
                name: brief.name.clone(),
                zone: zone.clone(),
                new_why: new_why.clone(),
                old_why: old_why.clone(),
            };
            add_to_group(&mut self.comparison, key, &brief, &detections);
        }
    }

    /// The usage and comparison so far.
    pub fn report(self) -> TrialReport {
        let comparison = self.old.map(|old| Comparison {
            new_alerts: self.new_alerts,
            old_alerts: old.alerts,
            old_usage: old.usage,
            ..self.comparison
        });
        TrialReport {
            usage: self.usage.unwrap_or_default(),
            comparison,
        }
    }
}

fn add_to_group(
    c: &mut Comparison,
    key: GroupKey,
    flow: &FlowBrief,
    detections: &[(Detection, u8, Severity)],
) {
    if !c.groups.contains_key(&key) && c.groups.len() >= MAX_GROUPS {
        c.groups_dropped += detections.len() as u64;
        return;
    }
    let g = c.groups.entry(key).or_insert_with(|| Group {
        flows: 0,
        detections: BTreeMap::new(),
        example: flow.clone(),
    });
    g.flows += 1;
    for (d, level, severity) in detections {
        g.detections.entry((*d, *level)).or_insert((0, *severity)).0 += 1;
    }
}

/// Findings raised under one state and not the other: (change,
/// detection, level).
fn diff(new: AlertState, old: AlertState) -> Vec<(Change, Detection, u8)> {
    let mut out = Vec::new();
    for d in Detection::ALL {
        if d == Detection::SshLongLived {
            let (n, o) = (new.long_lived_level(), old.long_lived_level());
            if n > o {
                out.push((Change::Appears, d, n));
            } else if o > n {
                out.push((Change::Disappears, d, o));
            }
            continue;
        }
        match (new.has_raised(d), old.has_raised(d)) {
            (true, false) => out.push((Change::Appears, d, 0)),
            (false, true) => out.push((Change::Disappears, d, 0)),
            _ => {}
        }
    }
    out
}

/// What a rule set's entries said about a flow, in a phrase.
fn why(rules: &RuleSet, out: &EntryOutcome) -> String {
    let entry = |i: usize| {
        rules.allows().get(i).map_or_else(
            || "?".into(),
            |e| format!("`{}` ({}:{})", e.label(), e.file, e.line),
        )
    };
    if let Some(first) = out.permitting.first() {
        let more = out.permitting.len() - 1;
        return match more {
            0 => format!("permitted by {}", entry(*first)),
            n => format!("permitted by {} and {n} more", entry(*first)),
        };
    }
    match &out.closest {
        Some(c) => format!(
            "no entry permits it; closest {}: {}",
            entry(c.entry),
            c.status.detail().unwrap_or(c.status.name())
        ),
        None => "no entry covers the destination".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::FlowKey;
    use crate::flow::testkit::tcp_packet;
    use crate::policy::testutil::{rules, TEST_RULES};

    /// A TLS flow from the gpu zone to pypi.org, judged once at its end
    /// under NEW (as the judge does) and observed by `trial`.
    fn pypi_flow(new: &RuleSet, trial: &mut Trial) -> AlertState {
        let mut pkt = tcp_packet(
            "10.10.0.10".parse().unwrap(),
            40000,
            "151.101.0.223".parse().unwrap(),
            1_750_000_000,
            0x02,
        );
        pkt.dst.port = 443;
        let (key, side) = FlowKey::new(pkt.src, pkt.dst, pkt.proto, false);
        let mut flow = Flow::new(key, side, &pkt);
        let names = ["pypi.org"];
        let mut s = FlowSubject::new(flow.id(), flow.client(), flow.server(), 6, pkt.ts);
        s.app_proto = Some("tls");
        s.names = &names;
        s.stage = Stage::Ended;
        let mut window = SuppressionWindow::new(16);
        let classified = new.classify(&s, &mut flow.alerts, &mut window);
        trial.observe(new, &s, &flow, classified.alerts.len(), None);
        flow.alerts
    }

    #[test]
    fn an_entry_changed_in_new_makes_its_alert_appear() {
        let old = Arc::new(rules(&[("old/test.toml", TEST_RULES)]));
        let changed = TEST_RULES.replace(r#"hosts = ["pypi.org"]"#, r#"hosts = ["pypi.example"]"#);
        let new = rules(&[("new/test.toml", &changed)]);
        let mut trial = Trial::comparing(old, 0);
        let state = pypi_flow(&new, &mut trial);
        assert!(state.has_raised(Detection::EgressNotAllowed));
        let report = trial.report();
        let c = report.comparison.unwrap();
        assert_eq!((c.new_alerts, c.old_alerts), (1, 0));
        assert_eq!(c.count(Change::Appears), 1);
        assert_eq!(c.count(Change::Disappears), 0);
        let (key, group) = c.groups.iter().next().unwrap();
        let detections: Vec<_> = group.detections.keys().collect();
        assert_eq!(detections, [&(Detection::EgressNotAllowed, 0)]);
        assert_eq!(key.name.as_deref(), Some("pypi.org"));
        assert_eq!(key.zone.as_deref(), Some("gpu"));
        assert_eq!(key.new_why, "no entry covers the destination");
        assert!(
            key.old_why
                .starts_with("permitted by `pypi` (old/test.toml:"),
            "{}",
            key.old_why
        );
        assert!(group
            .example
            .community_id
            .as_deref()
            .is_some_and(|id| id.starts_with("1:")));
        assert!(c.appears_at(Severity::MEDIUM));
        assert!(!c.appears_at(Severity::HIGH));
        let pypi = new
            .allows()
            .iter()
            .position(|e| e.label() == "pypi")
            .unwrap();
        assert!(report.usage.dead().any(|i| i == pypi));
        assert_eq!(report.usage.flows, 1);
        assert_eq!(c.old_usage.entries[pypi].flows, 1);
    }

    #[test]
    fn the_same_rules_change_nothing() {
        let old = Arc::new(rules(&[("r/test.toml", TEST_RULES)]));
        let new = rules(&[("r/test.toml", TEST_RULES)]);
        let mut trial = Trial::comparing(old, 0);
        pypi_flow(&new, &mut trial);
        let c = trial.report().comparison.unwrap();
        assert!(!c.changed());
        assert_eq!((c.new_alerts, c.old_alerts), (0, 0));
    }

    #[test]
    fn usage_only_compares_nothing() {
        let new = rules(&[("r/test.toml", TEST_RULES)]);
        let mut trial = Trial::usage_only(0);
        pypi_flow(&new, &mut trial);
        let report = trial.report();
        assert!(report.comparison.is_none());
        let pypi = new
            .allows()
            .iter()
            .position(|e| e.label() == "pypi")
            .unwrap();
        assert_eq!(report.usage.entries[pypi].flows, 1);
    }
}
