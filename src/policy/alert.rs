//! From findings to alerts: one alert per flow and detection (the
//! per-flow [`AlertState`] remembers what was raised; each long-lived
//! threshold is its own escalation), a suppression window per (source,
//! destination, detection), and the two renderings: a Suricata EVE
//! `alert` record and a one-line summary for humans.

use super::classify::{ep, fmt_hours, proto_name, Considered, Direction, FlowSubject, Verdict};
use super::detection::{Detection, Severity, GID, REV};
use super::schema::RuleSet;
use super::suppress::{SuppressKey, SuppressionWindow};
use crate::analyzer::facts::Evidence;
use crate::flow::key::Endpoint;
use crate::time::Timestamp;
use serde_json::{json, Value};
use std::sync::Arc;

/// What a flow has already alerted on; the engine keeps one per flow.
/// Four bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertState {
    /// Bit `d.index()` set once detection `d` was raised (or suppressed).
    raised: u16,
    /// Long-lived thresholds already raised.
    long_lived_level: u8,
}

const _: () = assert!(Detection::COUNT <= 16);
const _: () = assert!(std::mem::size_of::<AlertState>() <= 16);

impl AlertState {
    pub fn has_raised(&self, d: Detection) -> bool {
        self.raised & (1 << d.index()) != 0
    }

    /// Detections raised so far.
    pub fn raised(&self) -> impl Iterator<Item = Detection> + '_ {
        Detection::ALL.into_iter().filter(|d| self.has_raised(*d))
    }

    pub fn long_lived_level(&self) -> u8 {
        self.long_lived_level
    }

    /// Whether a finding at `level` is new for this flow.
    pub fn is_new(&self, d: Detection, level: u8) -> bool {
        if d == Detection::SshLongLived {
            level > self.long_lived_level
        } else {
            !self.has_raised(d)
        }
    }

    fn mark(&mut self, d: Detection, level: u8) {
        self.raised |= 1 << d.index();
        if d == Detection::SshLongLived {
            self.long_lived_level = self.long_lived_level.max(level);
        }
    }
}

/// The allow entry an alert reports.
#[derive(Clone, Debug, PartialEq)]
pub struct AllowRef {
    pub file: Arc<str>,
    pub line: u32,
    pub name: Option<Arc<str>>,
    pub reason: Arc<str>,
    /// `permits`, `undecided`, `expired` or `not-matching`.
    pub status: &'static str,
    /// Why it does not permit, or which permission it lacks.
    pub detail: Option<String>,
}

/// One alert, ready to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub ts: Timestamp,
    pub flow_id: u64,
    pub community_id: Option<String>,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub proto: u8,
    pub app_proto: Option<String>,
    pub detection: Detection,
    pub severity: Severity,
    /// `ssh-long-lived`: the threshold passed, in hours.
    pub threshold_hours: Option<String>,
    pub direction: Direction,
    pub zone: Option<Arc<str>>,
    pub allow: Option<AllowRef>,
    pub evidence: Evidence,
}

/// The alerts of one classification, and what the engine needs next.
#[derive(Clone, Debug, Default)]
pub struct Classified {
    pub alerts: Vec<Alert>,
    /// Findings swallowed by the suppression window (for metrics).
    pub suppressed: u32,
    /// Judge the flow again at this packet time even without new facts.
    pub next_check: Option<Timestamp>,
    /// Allow-suppressible detections wait for facts still to come.
    pub pending: bool,
}

impl RuleSet {
    /// Judges a flow and turns new findings into alerts. Call it when the
    /// flow starts, whenever its facts change (`AppFacts::revision`), when
    /// packet time reaches `next_check`, and when the flow ends — not on
    /// every packet. `state` is the flow's; `window` is the worker's.
    pub fn classify(
        &self,
        s: &FlowSubject<'_>,
        state: &mut AlertState,
        window: &mut SuppressionWindow,
    ) -> Classified {
        let current = *state;
        let verdict = self.judge_skipping(s, |d, level| !current.is_new(d, level));
        let mut out = Classified {
            alerts: Vec::new(),
            suppressed: 0,
            next_check: verdict.next_check,
            pending: verdict.pending,
        };
        for finding in &verdict.findings {
            let d = finding.detection;
            state.mark(d, finding.level);
            let key = SuppressKey {
                src: s.client.addr,
                dst: s.server.addr,
                detection: d,
                level: finding.level,
            };
            if !window.admit(key, s.now, self.settings(d).suppress_seconds) {
                out.suppressed = out.suppressed.saturating_add(1);
                continue;
            }
            out.alerts.push(self.alert(s, &verdict, d, finding.level, &finding.evidence));
        }
        out
    }

    fn alert(
        &self,
        s: &FlowSubject<'_>,
        v: &Verdict,
        d: Detection,
        level: u8,
        evidence: &Evidence,
    ) -> Alert {
        let threshold_hours = (d == Detection::SshLongLived)
            .then(|| {
                let idx = usize::from(level).checked_sub(1)?;
                self.settings(d).long_lived_seconds.get(idx).map(|t| fmt_hours(*t))
            })
            .flatten();
        Alert {
            ts: s.now,
            flow_id: s.flow_id,
            community_id: s.community_id.map(str::to_string),
            src: s.client,
            dst: s.server,
            proto: s.proto,
            app_proto: s.app_proto.map(str::to_string),
            detection: d,
            severity: self.settings(d).severity,
            threshold_hours,
            direction: v.direction,
            zone: v.zone.and_then(|z| self.zones.get(z)).map(|z| z.name.clone()),
            allow: v.considered.as_ref().and_then(|c| self.allow_ref(c, d)),
            evidence: evidence.clone(),
        }
    }

    /// The reported allow entry; for a permitting entry that does not
    /// suppress `d`, the detail names the permission it lacks.
    pub(crate) fn allow_ref(&self, c: &Considered, d: Detection) -> Option<AllowRef> {
        let e = self.allows.get(c.entry)?;
        let detail = match (c.status.detail(), d.permission()) {
            (Some(why), _) => Some(why.to_string()),
            (None, Some(p)) if c.status.name() == "permits" && !e.permissions.has(p) => {
                Some(format!("does not set `{} = true`", p.key()))
            }
            (None, _) => None,
        };
        Some(AllowRef {
            file: e.file.clone(),
            line: e.line,
            name: e.name.clone(),
            reason: e.reason.clone(),
            status: c.status.name(),
            detail,
        })
    }
}

impl Alert {
    pub fn signature_id(&self) -> u32 {
        self.detection.sid()
    }

    /// EVE's `alert` object.
    pub fn alert_object(&self) -> Value {
        json!({
            "action": "allowed",
            "gid": GID,
            "signature_id": self.detection.sid(),
            "rev": REV,
            "signature": self.signature(),
            "category": self.detection.category(),
            "severity": self.severity.get(),
        })
    }

    /// The signature text; long-lived alerts name their threshold.
    pub fn signature(&self) -> String {
        match &self.threshold_hours {
            Some(h) => format!("{} (over {h} h)", self.detection.signature()),
            None => self.detection.signature().to_string(),
        }
    }

    /// The project's own detail, written under `egresswatch`.
    pub fn egresswatch_object(&self) -> Value {
        let allow = self.allow.as_ref().map(|a| {
            json!({
                "file": &*a.file,
                "line": a.line,
                "name": a.name.as_deref(),
                "reason": &*a.reason,
                "status": a.status,
                "detail": a.detail,
            })
        });
        let mut obj = json!({
            "detection": self.detection.id(),
            "direction": self.direction.name(),
            "zone": self.zone.as_deref(),
            "allow": allow,
            "mitre": self.detection.mitre(),
            "evidence": &self.evidence,
        });
        if let (Some(h), Some(map)) = (&self.threshold_hours, obj.as_object_mut()) {
            map.insert("threshold_hours".into(), json!(h));
        }
        obj
    }

    /// A whole EVE `alert` record (one JSON line once serialized).
    pub fn to_eve(&self) -> Value {
        let mut rec = serde_json::Map::new();
        rec.insert("timestamp".into(), json!(self.ts.eve().to_string()));
        rec.insert("flow_id".into(), json!(self.flow_id));
        rec.insert("event_type".into(), json!("alert"));
        rec.insert("src_ip".into(), json!(self.src.addr.to_string()));
        rec.insert("src_port".into(), json!(self.src.port));
        rec.insert("dest_ip".into(), json!(self.dst.addr.to_string()));
        rec.insert("dest_port".into(), json!(self.dst.port));
        rec.insert("proto".into(), json!(proto_name(self.proto)));
        if let Some(c) = &self.community_id {
            rec.insert("community_id".into(), json!(c));
        }
        if let Some(p) = &self.app_proto {
            rec.insert("app_proto".into(), json!(p));
        }
        rec.insert("alert".into(), self.alert_object());
        rec.insert("egresswatch".into(), self.egresswatch_object());
        Value::Object(rec)
    }

    /// One line for stderr, e.g.
    /// `2024-... high ssh-reverse-forward 10.10.0.10:40000 -> 198.51.100.10:22 zone=gpu allow=none: ... [T1572]`.
    pub fn line(&self) -> String {
        let allow = match &self.allow {
            None => "none".to_string(),
            Some(a) => {
                let name = a
                    .name
                    .as_deref()
                    .map_or_else(|| format!("{}:{}", a.file, a.line), str::to_string);
                match &a.detail {
                    Some(d) => format!("{name}({}: {d})", a.status),
                    None => format!("{name}({})", a.status),
                }
            }
        };
        let level = self
            .threshold_hours
            .as_ref()
            .map_or_else(String::new, |h| format!(" >{h}h"));
        format!(
            "{} [{}:{}:{}] {} {}{} {} -> {} {} zone={} allow={}: {} [{}]",
            self.ts.eve(),
            GID,
            self.detection.sid(),
            REV,
            self.severity,
            self.detection.id(),
            level,
            ep(self.src),
            ep(self.dst),
            proto_name(self.proto),
            self.zone.as_deref().unwrap_or("-"),
            allow,
            self.evidence.summary,
            self.detection.mitre().join(",")
        )
    }
}
