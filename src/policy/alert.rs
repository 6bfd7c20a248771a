//! From findings to alerts: one alert per flow and detection (the
//! per-flow [`AlertState`] remembers what was raised; each long-lived
//! threshold is its own escalation), a suppression window per (source,
//! destination, detection), and the two renderings: a Suricata EVE
//! `alert` record and a one-line summary for humans.

use super::classify::{ep, fmt_hours, proto_name, Considered, Direction, FlowSubject, Verdict};
use super::detection::{tactics, techniques, Detection, Severity, GID, REV};
use super::schema::RuleSet;
use super::suppress::{target_key, SuppressKey, SuppressionWindow};
use crate::analyzer::facts::Evidence;
use crate::analyzer::Dir;
use crate::flow::key::Endpoint;
use crate::json::{Obj, Rendered};
use crate::time::Timestamp;
use serde_json::Value;
use std::sync::Arc;

/// What a flow has already alerted on; the engine keeps one per flow.
/// Four bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertState {
    /// Bit `d.index()` set once detection `d` was raised (or suppressed).
    raised: u16,
    /// Long-lived thresholds already raised.
    long_lived_level: u8,
}

const _: () = assert!(Detection::COUNT <= 16);
const _: () = assert!(std::mem::size_of::<AlertState>() <= 16);

impl AlertState {
    /// A state with these detections raised (long-lived at its first
    /// threshold).
    pub fn of(detections: &[Detection]) -> AlertState {
        let mut s = AlertState::default();
        for d in detections {
            s.mark(*d, 1);
        }
        s
    }

    /// Whether anything was raised (or suppressed) on the flow.
    pub fn any(&self) -> bool {
        self.raised != 0
    }

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
    /// MITRE ATT&CK techniques: the detection's, or what the finding
    /// showed (a host sweep is T1018, a port scan T1046).
    pub mitre: &'static [&'static str],
    /// A host finding's counts, written under `egresswatch.discovery`
    /// (`internal-discovery`) or `egresswatch.dns_tunnel`.
    pub discovery: Option<Rendered>,
    /// What the engine adds of the flow (`None` for a sensor finding).
    pub flow: Option<AlertFlow>,
    /// The incident the host stage grouped the alert into
    /// (`egresswatch.incident_id`); set where every worker's events meet,
    /// before the alert is written.
    pub incident_id: Option<Arc<str>>,
    /// What runs at the alert's internal host, from the inventory
    /// (`egresswatch.workload`).
    pub workload: Option<Arc<crate::inventory::Workload>>,
}

/// The flow an alert was raised on, as EVE writes it on the alert (so an
/// analyst needs no join on `flow_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertFlow {
    /// The flow's input (EVE `in_iface`).
    pub input: u16,
    /// The packet that raised the alert (EVE `direction`); `None` when
    /// the flow's end did.
    pub dir: Option<Dir>,
    /// toserver, toclient, so far.
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    pub start: Timestamp,
    /// The analyzer's protocol object so far (`ssh`, ...) and its key.
    pub app: Option<(&'static str, Rendered)>,
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

/// A finding about the sensor rather than about one flow (flow-table
/// pressure). The flow it names is a sample; there is no allow entry, and
/// one suppression key per detection spans every flow.
#[derive(Clone, Debug)]
pub struct SensorFinding {
    pub detection: Detection,
    pub ts: Timestamp,
    pub flow_id: u64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub proto: u8,
    pub evidence: Evidence,
}

/// A finding about one host rather than one flow (internal discovery): the
/// source host, the attempt that crossed the threshold, and how far the
/// episode has grown (1 started, 2 escalated: the severity rises a step).
#[derive(Clone, Debug)]
pub struct HostFinding {
    pub detection: Detection,
    pub ts: Timestamp,
    pub flow_id: u64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub proto: u8,
    pub level: u8,
    pub mitre: &'static [&'static str],
    pub evidence: Evidence,
    pub detail: Rendered,
}

impl RuleSet {
    /// The alert for a host finding, unless its detection is disabled or
    /// suppressed (counted); one suppression key per (source, level).
    pub fn host_alert(&self, f: HostFinding, window: &mut SuppressionWindow) -> Classified {
        let settings = self.settings(f.detection);
        let mut out = Classified::default();
        if !settings.enabled {
            return out;
        }
        let key = SuppressKey {
            src: f.src.addr,
            dst: std::net::IpAddr::from([0u8; 4]),
            detection: f.detection,
            level: f.level,
            target: 0,
        };
        if !window.admit(key, f.ts, settings.suppress_seconds) {
            out.suppressed = 1;
            return out;
        }
        let severity = match f.level {
            0 | 1 => settings.severity,
            _ => Severity::new(settings.severity.get().saturating_sub(1)).unwrap_or(Severity::HIGH),
        };
        out.alerts.push(Alert {
            ts: f.ts,
            flow_id: f.flow_id,
            community_id: None,
            src: f.src,
            dst: f.dst,
            proto: f.proto,
            app_proto: None,
            detection: f.detection,
            severity,
            threshold_hours: None,
            direction: self.direction(f.src.addr, f.dst.addr),
            zone: self.zone_of(f.src.addr).map(|z| z.name.clone()),
            allow: None,
            evidence: f.evidence,
            mitre: f.mitre,
            discovery: Some(f.detail),
            flow: None,
            incident_id: None,
            workload: None,
        });
        out
    }

    /// The alert for a sensor finding, unless its detection is disabled
    /// or suppressed (counted).
    pub fn sensor_alert(&self, f: SensorFinding, window: &mut SuppressionWindow) -> Classified {
        let settings = self.settings(f.detection);
        let mut out = Classified::default();
        let anywhere = std::net::IpAddr::from([0u8; 4]);
        let key = SuppressKey {
            src: anywhere,
            dst: anywhere,
            detection: f.detection,
            level: 0,
            target: 0,
        };
        if !settings.enabled {
            return out;
        }
        if !window.admit(key, f.ts, settings.suppress_seconds) {
            out.suppressed = 1;
            return out;
        }
        out.alerts.push(Alert {
            ts: f.ts,
            flow_id: f.flow_id,
            community_id: None,
            src: f.src,
            dst: f.dst,
            proto: f.proto,
            app_proto: None,
            detection: f.detection,
            severity: settings.severity,
            threshold_hours: None,
            direction: self.direction(f.src.addr, f.dst.addr),
            zone: self.zone_of(f.src.addr).map(|z| z.name.clone()),
            allow: None,
            evidence: f.evidence,
            flow: None,
            mitre: f.detection.mitre(),
            discovery: None,
            incident_id: None,
            workload: None,
        });
        out
    }

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
                target: s
                    .tunnel
                    .filter(|t| t.target_addr.is_none())
                    .map_or(0, |t| target_key(t.target_host, s.server.port)),
            };
            if !window.admit(key, s.now, self.settings(d).suppress_seconds) {
                out.suppressed = out.suppressed.saturating_add(1);
                continue;
            }
            out.alerts
                .push(self.alert(s, &verdict, d, finding.level, &finding.evidence));
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
                self.settings(d)
                    .long_lived_seconds
                    .get(idx)
                    .map(|t| fmt_hours(*t))
            })
            .flatten();
        Alert {
            ts: s.now,
            flow_id: s.flow_id,
            community_id: s.community_id.map(str::to_string),
            src: s.client,
            // The flow's own server (a tunnel's proxy), as on its records;
            // the evidence names the target.
            dst: s.tunnel.map_or(s.server, |t| t.proxy),
            proto: s.proto,
            app_proto: s.app_proto.map(str::to_string),
            detection: d,
            severity: self.settings(d).severity,
            threshold_hours,
            direction: v.direction,
            zone: v
                .zone
                .and_then(|z| self.zones.get(z))
                .map(|z| z.name.clone()),
            allow: v.considered.as_ref().and_then(|c| self.allow_ref(c, d)),
            evidence: evidence.clone(),
            flow: None,
            mitre: d.mitre(),
            discovery: None,
            incident_id: None,
            workload: None,
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

    /// The signature text; long-lived alerts name their threshold.
    pub fn signature(&self) -> String {
        match &self.threshold_hours {
            Some(h) => format!("{} (over {h} h)", self.detection.signature()),
            None => self.detection.signature().to_string(),
        }
    }

    /// Writes the whole EVE `alert` record.
    /// The addresses follow the packet that raised it, as Suricata's: a
    /// packet to the client has the server as `src_ip` (`direction:
    /// to_client`); `flow` has the client as `src_ip` either way.
    pub fn write_eve(&self, o: &mut Obj<'_>) {
        let flow = self.flow.as_ref();
        let to_client = flow.is_some_and(|f| f.dir == Some(Dir::ToClient));
        let (src, dst) = match to_client {
            true => (self.dst, self.src),
            false => (self.src, self.dst),
        };
        o.ts("timestamp", self.ts);
        o.u64("flow_id", self.flow_id);
        o.str("event_type", "alert");
        o.ip("src_ip", src.addr);
        o.u64("src_port", src.port.into());
        o.ip("dest_ip", dst.addr);
        o.u64("dest_port", dst.port.into());
        o.str("proto", &proto_name(self.proto));
        if let Some(c) = &self.community_id {
            o.str("community_id", c);
        }
        if let Some(p) = &self.app_proto {
            o.str("app_proto", p);
        }
        o.obj("alert", |o| self.write_alert_object(o));
        if let Some(f) = flow {
            self.write_flow(o, f);
        }
        o.obj("egresswatch", |o| self.write_own_object(o));
    }

    /// Suricata's `direction`, `flow {}` summary and app-layer object.
    fn write_flow(&self, o: &mut Obj<'_>, f: &AlertFlow) {
        if let Some((key, body)) = &f.app {
            o.rendered(key, body);
        }
        match f.dir {
            Some(Dir::ToServer) => o.str("direction", "to_server"),
            Some(Dir::ToClient) => o.str("direction", "to_client"),
            None => {}
        }
        o.obj("flow", |o| {
            o.u64("pkts_toserver", f.pkts[0]);
            o.u64("pkts_toclient", f.pkts[1]);
            o.u64("bytes_toserver", f.bytes[0]);
            o.u64("bytes_toclient", f.bytes[1]);
            o.ts("start", f.start);
            o.ip("src_ip", self.src.addr);
            o.ip("dest_ip", self.dst.addr);
            let icmp = matches!(self.proto, 1 | 58);
            if crate::flow::key::has_ports(self.proto) && !icmp {
                o.u64("src_port", self.src.port.into());
                o.u64("dest_port", self.dst.port.into());
            }
        });
    }

    /// EVE's `alert` object.
    fn write_alert_object(&self, o: &mut Obj<'_>) {
        o.str("action", "allowed");
        o.u64("gid", GID.into());
        o.u64("signature_id", self.detection.sid().into());
        o.u64("rev", REV.into());
        o.str("signature", &self.signature());
        o.str("category", self.detection.category());
        o.u64("severity", self.severity.get().into());
        o.obj("metadata", |o| self.write_metadata(o));
    }

    /// `alert.metadata` as ET rules fill it (every value a list of
    /// strings), where Elastic's Suricata pipeline reads `threat.*`.
    fn write_metadata(&self, o: &mut Obj<'_>) {
        let d = self.detection;
        // The alert's own techniques: a host sweep names T1018 where the
        // detection's default is T1046.
        o.strs("mitre_tactic_id", tactics(self.mitre).map(|t| t.id));
        o.strs("mitre_tactic_name", tactics(self.mitre).map(|t| t.name));
        o.strs("mitre_technique_id", techniques(self.mitre).map(|t| t.id));
        o.strs(
            "mitre_technique_name",
            techniques(self.mitre).map(|t| t.name),
        );
        o.strs("signature_severity", [self.severity.et_name()]);
        // A protocol inferred from record shapes is a Medium-confidence
        // finding whatever the detection.
        let confidence = match self.evidence.inferred {
            Some(_) => "Medium",
            None => d.confidence(),
        };
        o.strs("confidence", [confidence]);
        o.strs("attack_target", [d.attack_target()]);
        o.strs("deployment", ["Perimeter"]);
    }

    /// The project's own detail, written under `egresswatch`.
    fn write_own_object(&self, o: &mut Obj<'_>) {
        o.str("detection", self.detection.id());
        o.str("direction", self.direction.name());
        o.opt_str("zone", self.zone.as_deref());
        match &self.allow {
            Some(a) => o.obj("allow", |o| {
                o.str("file", &a.file);
                o.u64("line", a.line.into());
                o.opt_str("name", a.name.as_deref());
                o.str("reason", &a.reason);
                o.str("status", a.status);
                o.opt_str("detail", a.detail.as_deref());
            }),
            None => o.null("allow"),
        }
        o.strs("mitre", self.mitre.iter().copied());
        o.value("evidence", &self.evidence);
        if let Some(d) = &self.discovery {
            let key = match self.detection {
                Detection::DnsTunnel => "dns_tunnel",
                _ => "discovery",
            };
            o.rendered(key, d);
        }
        if let Some(h) = &self.threshold_hours {
            o.str("threshold_hours", h);
        }
        if let Some(id) = &self.incident_id {
            o.str("incident_id", id);
        }
        if let Some(w) = &self.workload {
            o.obj("workload", |o| w.write(o));
        }
    }

    /// The EVE record as a value (tests, tools).
    pub fn to_eve(&self) -> Value {
        Rendered::build(|o| self.write_eve(o)).to_value()
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
        let workload = self
            .workload
            .as_ref()
            .map_or_else(String::new, |w| format!(" host={}", w.describe()));
        format!(
            "{} [{}:{}:{}] {} {}{} {} -> {} {} zone={} allow={}: {} [{}]{workload}",
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
            self.mitre.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::classify::Stage;
    use super::super::testutil::{ep, rules, test_rules};
    use super::*;
    use crate::analyzer::facts::SshFacts;
    use crate::flow::key::proto;
    use crate::time::NANOS_PER_SEC;

    const START: u64 = 1_750_000_000;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(START + secs)
    }

    fn ev(summary: &str, pkt: u64) -> Option<Evidence> {
        Some(Evidence::new(summary, &[pkt], at(pkt), at(pkt)))
    }

    fn subject<'a>(client: &str, server: &str, ssh: &'a SshFacts, now: u64) -> FlowSubject<'a> {
        let mut s = FlowSubject::new(42, ep(client), ep(server), proto::TCP, at(0));
        s.app_proto = Some("ssh");
        s.stage = Stage::Identified;
        s.ssh = Some(ssh);
        s.now = at(now);
        s
    }

    /// A flow that starts at `now`.
    fn fresh<'a>(client: &str, server: &str, ssh: &'a SshFacts, now: u64) -> FlowSubject<'a> {
        let mut s = subject(client, server, ssh, now);
        s.first_ts = s.now;
        s
    }

    fn ids(c: &Classified) -> Vec<&'static str> {
        c.alerts.iter().map(|a| a.detection.id()).collect()
    }

    #[test]
    fn alert_state_is_small() {
        assert!(std::mem::size_of::<AlertState>() <= 16);
    }

    #[test]
    fn one_alert_per_flow_and_detection_with_escalations_separate() {
        let rules = test_rules();
        let mut state = AlertState::default();
        let mut window = SuppressionWindow::new(64);
        let mut facts = SshFacts::default();
        let (c, s) = ("10.10.0.10:40000", "10.20.0.10:22");

        let first = rules.classify(&subject(c, s, &facts, 1), &mut state, &mut window);
        assert!(first.alerts.is_empty(), "allowlisted git");

        facts.remote_forward = ev("tcpip-forward", 20);
        let fwd = rules.classify(&subject(c, s, &facts, 2), &mut state, &mut window);
        assert_eq!(ids(&fwd), ["ssh-reverse-forward"]);
        let again = rules.classify(&subject(c, s, &facts, 3), &mut state, &mut window);
        assert!(again.alerts.is_empty());
        assert_eq!(again.suppressed, 0, "dedup is not suppression");

        facts.reverse_session = ev("inner handshake", 30);
        let sess = rules.classify(&subject(c, s, &facts, 4), &mut state, &mut window);
        assert_eq!(ids(&sess), ["ssh-reverse-session"]);

        facts.reverse_interactive = ev("keystrokes from outside", 40);
        let typing = rules.classify(&subject(c, s, &facts, 5), &mut state, &mut window);
        assert_eq!(ids(&typing), ["ssh-reverse-interactive"]);
        assert_eq!(
            state.raised().collect::<Vec<_>>(),
            [
                Detection::SshReverseForward,
                Detection::SshReverseSession,
                Detection::SshReverseInteractive
            ]
        );
    }

    #[test]
    fn suppression_window_spans_flows_of_the_same_pair() {
        let rules = test_rules();
        let mut window = SuppressionWindow::new(64);
        let facts = SshFacts::default();
        let (c, s) = ("10.11.0.10:40000", "198.51.100.10:22");
        let mut st1 = AlertState::default();
        let a = rules.classify(&fresh(c, s, &facts, 0), &mut st1, &mut window);
        assert_eq!(ids(&a), ["ssh-to-external"]);
        // A reconnect ten minutes later: a new flow, same pair.
        let mut st2 = AlertState::default();
        let b = rules.classify(
            &fresh("10.11.0.10:40001", s, &facts, 600),
            &mut st2,
            &mut window,
        );
        assert!(b.alerts.is_empty());
        assert_eq!(b.suppressed, 1);
        assert!(
            st2.has_raised(Detection::SshToExternal),
            "not retried on the same flow"
        );
        // Another destination is not suppressed.
        let mut st3 = AlertState::default();
        let d = rules.classify(
            &fresh(c, "198.51.100.11:22", &facts, 600),
            &mut st3,
            &mut window,
        );
        assert_eq!(ids(&d), ["ssh-to-external"]);
        // After the window (3600 s) the pair alerts again.
        let mut st4 = AlertState::default();
        let e = rules.classify(
            &fresh("10.11.0.10:40002", s, &facts, 3601),
            &mut st4,
            &mut window,
        );
        assert_eq!(ids(&e), ["ssh-to-external"]);
    }

    #[test]
    fn long_lived_thresholds_cross_one_by_one() {
        let rules = test_rules();
        let mut state = AlertState::default();
        let mut window = SuppressionWindow::new(64);
        let facts = SshFacts::default();
        let (c, s) = ("10.11.0.10:40000", "198.51.100.10:22");
        let h = 3600;
        let first = rules.classify(&subject(c, s, &facts, 10), &mut state, &mut window);
        assert_eq!(ids(&first), ["ssh-to-external"]);
        assert_eq!(first.next_check, Some(at(h)));
        let early = rules.classify(&subject(c, s, &facts, h - 1), &mut state, &mut window);
        assert!(early.alerts.is_empty());
        let mut seen = Vec::new();
        for (now, next) in [(h, 4 * h), (4 * h + 5, 8 * h), (8 * h, 12 * h), (13 * h, 0)] {
            let out = rules.classify(&subject(c, s, &facts, now), &mut state, &mut window);
            assert_eq!(ids(&out), ["ssh-long-lived"], "at {now}");
            assert_eq!(out.next_check, (next > 0).then(|| at(next)));
            seen.push(out.alerts[0].threshold_hours.clone().unwrap());
            let repeat = rules.classify(&subject(c, s, &facts, now + 1), &mut state, &mut window);
            assert!(repeat.alerts.is_empty(), "repeat at {now}");
        }
        assert_eq!(seen, ["1", "4", "8", "12"]);
        assert_eq!(state.long_lived_level(), 4);
    }

    #[test]
    fn a_late_first_look_raises_only_the_highest_threshold() {
        let rules = test_rules();
        let mut state = AlertState::default();
        let mut window = SuppressionWindow::new(64);
        let facts = SshFacts::default();
        let out = rules.classify(
            &subject("10.11.0.10:40000", "198.51.100.10:22", &facts, 5 * 3600),
            &mut state,
            &mut window,
        );
        assert_eq!(ids(&out), ["ssh-to-external", "ssh-long-lived"]);
        assert_eq!(out.alerts[1].threshold_hours.as_deref(), Some("4"));
        assert_eq!(out.next_check, Some(at(8 * 3600)));
    }

    #[test]
    fn settings_change_severity_and_disable_detections() {
        let text = r#"
[cluster]
internal = ["10.0.0.0/8"]
[detections.ssh-to-external]
severity = "low"
[detections.ssh-nonstandard-port]
enabled = false
"#;
        let rules = rules(&[("a.toml", text)]);
        let mut state = AlertState::default();
        let mut window = SuppressionWindow::new(8);
        let facts = SshFacts::default();
        let out = rules.classify(
            &subject("10.1.0.1:40000", "198.51.100.10:443", &facts, 0),
            &mut state,
            &mut window,
        );
        assert_eq!(ids(&out), ["ssh-to-external"]);
        assert_eq!(out.alerts[0].severity, Severity::LOW);
    }

    fn forward_alert() -> Alert {
        let rules = test_rules();
        let mut state = AlertState::default();
        let mut window = SuppressionWindow::new(8);
        let facts = SshFacts {
            server_banner: Some("SSH-2.0-OpenSSH_9.2p1".into()),
            remote_forward: ev("tcpip-forward request answered with REQUEST_SUCCESS", 21),
            ..SshFacts::default()
        };
        let mut s = subject("10.10.0.10:40000", "10.20.0.10:22", &facts, 21);
        s.community_id = Some("1:wCb3OG7yAFWelaUydu0D+125CLM=");
        let mut out = rules.classify(&s, &mut state, &mut window);
        assert_eq!(out.alerts.len(), 1);
        out.alerts.remove(0)
    }

    #[test]
    fn eve_record_matches_suricata_alert_layout() {
        let alert = forward_alert();
        let expected = serde_json::json!({
            "timestamp": "2025-06-15T15:07:01.000000+0000",
            "flow_id": 42,
            "event_type": "alert",
            "src_ip": "10.10.0.10",
            "src_port": 40000,
            "dest_ip": "10.20.0.10",
            "dest_port": 22,
            "proto": "TCP",
            "community_id": "1:wCb3OG7yAFWelaUydu0D+125CLM=",
            "app_proto": "ssh",
            "alert": {
                "action": "allowed",
                "gid": 1,
                "signature_id": 1_750_003,
                "rev": 1,
                "signature": "EGRESSWATCH SSH remote port forwarding requested (ssh -R)",
                "category": "A Network Trojan was detected",
                "severity": 1,
                "metadata": {
                    "mitre_tactic_id": ["TA0011"],
                    "mitre_tactic_name": ["Command_And_Control"],
                    "mitre_technique_id": ["T1572"],
                    "mitre_technique_name": ["Protocol_Tunneling"],
                    "signature_severity": ["Major"],
                    "confidence": ["High"],
                    "attack_target": ["Client_Endpoint"],
                    "deployment": ["Perimeter"]
                }
            },
            "egresswatch": {
                "detection": "ssh-reverse-forward",
                "direction": "internal",
                "zone": "gpu",
                "allow": {
                    "file": "rules/test.toml",
                    "line": 16,
                    "name": "internal-git",
                    "reason": "internal git",
                    "status": "permits",
                    "detail": "does not set `allow_remote_forward = true`"
                },
                "mitre": ["T1572"],
                "evidence": {
                    "summary": "tcpip-forward request answered with REQUEST_SUCCESS",
                    "packets": [21],
                    "first_ts": "2025-06-15T15:07:01.000000+0000",
                    "last_ts": "2025-06-15T15:07:01.000000+0000"
                }
            }
        });
        assert_eq!(alert.to_eve(), expected);
    }

    /// With its flow, an alert is written as Suricata writes one raised
    /// by a packet to the client: the packet's addresses on top,
    /// `direction`, the flow (client first) and the app-layer object.
    #[test]
    fn alert_on_a_packet_to_the_client_carries_its_flow() {
        let mut alert = forward_alert();
        let ssh = Rendered::build(|o| o.obj("server", |o| o.str("proto_version", "2.0")));
        alert.flow = Some(AlertFlow {
            input: 0,
            dir: Some(Dir::ToClient),
            pkts: [5, 4],
            bytes: [500, 400],
            start: at(0),
            app: Some(("ssh", ssh)),
        });
        let eve = alert.to_eve();
        assert_eq!(
            (&eve["src_ip"], &eve["src_port"], &eve["dest_port"]),
            (
                &serde_json::json!("10.20.0.10"),
                &serde_json::json!(22),
                &serde_json::json!(40000)
            )
        );
        assert_eq!(eve["direction"], "to_client");
        assert_eq!(
            eve["flow"],
            serde_json::json!({
                "pkts_toserver": 5, "pkts_toclient": 4,
                "bytes_toserver": 500, "bytes_toclient": 400,
                "start": "2025-06-15T15:06:40.000000+0000",
                "src_ip": "10.10.0.10", "dest_ip": "10.20.0.10",
                "src_port": 40000, "dest_port": 22
            })
        );
        assert_eq!(eve["ssh"]["server"]["proto_version"], "2.0");
        alert.flow.as_mut().unwrap().dir = None;
        let at_end = alert.to_eve();
        assert_eq!(at_end["src_ip"], "10.10.0.10", "the flow's order");
        assert!(at_end.get("direction").is_none());
    }

    #[test]
    fn human_line_has_everything_on_one_line() {
        assert_eq!(
            forward_alert().line(),
            "2025-06-15T15:07:01.000000+0000 [1:1750003:1] high ssh-reverse-forward \
             10.10.0.10:40000 -> 10.20.0.10:22 TCP zone=gpu \
             allow=internal-git(permits: does not set `allow_remote_forward = true`): \
             tcpip-forward request answered with REQUEST_SUCCESS [T1572]"
        );
    }

    #[test]
    fn alerts_without_an_allow_entry_say_null_and_none() {
        let rules = test_rules();
        let mut state = AlertState::default();
        let mut window = SuppressionWindow::new(8);
        let facts = SshFacts::default();
        let out = rules.classify(
            &subject("10.11.0.10:40000", "198.51.100.10:22", &facts, 4 * 3600),
            &mut state,
            &mut window,
        );
        let long = &out.alerts[1];
        let eve = long.to_eve();
        assert_eq!(eve["egresswatch"]["allow"], serde_json::Value::Null);
        assert_eq!(eve["egresswatch"]["threshold_hours"], "4");
        assert_eq!(
            eve["alert"]["signature"],
            "EGRESSWATCH Long-lived SSH session to an external host (over 4 h)"
        );
        assert!(
            long.line().contains(" ssh-long-lived >4h "),
            "{}",
            long.line()
        );
        assert!(long.line().contains("allow=none:"), "{}", long.line());
        assert_eq!(long.ts.since(at(0)), 4 * 3600 * NANOS_PER_SEC);
    }
}
