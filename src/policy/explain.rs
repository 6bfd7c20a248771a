//! The two policy-as-code tools: `check-rules` (every diagnostic, exit 78
//! on error like `vector validate`, otherwise a one-screen summary) and
//! `explain` (what would happen to a flow from A to B:port with protocol
//! P). Both return printable text; the binary prints it.

use super::classify::{ep, fmt_hours, FlowSubject, Stage, Verdict};
use super::detection::Detection;
use super::diag::{Diagnostics, SourceFile};
use super::load::{load_dir, load_sources, Loaded};
use super::schema::{AllowEntry, AppProto, RuleSet};
use crate::analyzer::facts::{Evidence, SshFacts};
use crate::flow::key::{proto, Endpoint};
use crate::time::Timestamp;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

/// `EX_CONFIG` from sysexits.h: the exit code for a broken configuration.
pub const EX_CONFIG: u8 = 78;

/// What `check-rules` prints and how it exits.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub text: String,
    /// 0 when the rules load (warnings allowed), [`EX_CONFIG`] otherwise.
    pub exit_code: u8,
    pub diagnostics: Diagnostics,
}

/// Validates a rules directory. `now` is the wall-clock time the CLI reads
/// (for expiry warnings); the library itself never reads a clock.
pub fn check_rules(dir: &Path, now: Option<Timestamp>) -> CheckReport {
    report(load_dir(dir, now))
}

/// [`check_rules`] over files already in memory.
pub fn check_sources(sources: Vec<SourceFile>, now: Option<Timestamp>) -> CheckReport {
    report(load_sources(sources, now))
}

fn report(loaded: Loaded) -> CheckReport {
    let mut text = loaded.diagnostics.render();
    let exit_code = match &loaded.rules {
        Some(rules) if !loaded.diagnostics.has_errors() => {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&summary(rules));
            0
        }
        _ => EX_CONFIG,
    };
    CheckReport {
        text,
        exit_code,
        diagnostics: loaded.diagnostics,
    }
}

/// How many allow entries the summary lists before "... and N more".
const SUMMARY_ALLOWS: usize = 15;

/// A one-screen overview of a loaded policy.
pub fn summary(rules: &RuleSet) -> String {
    let mut out = String::new();
    let files: Vec<&str> = rules.files().iter().map(|f| f.as_ref()).collect();
    let _ = writeln!(out, "rules OK: {} file(s): {}", files.len(), files.join(", "));
    if let Some(name) = rules.cluster_name() {
        let _ = writeln!(out, "cluster: {name}");
    }
    let internal: Vec<String> = rules.internal_ranges().iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "internal: {}", internal.join(", "));
    let _ = writeln!(
        out,
        "egress of internal hosts outside any zone: {}",
        rules.default_egress().name()
    );
    let _ = writeln!(out, "zones ({}):", rules.zones().len());
    for z in rules.zones() {
        let cidrs: Vec<String> = z.cidrs.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  {:<20} {:<13} {}", z.name, z.egress.name(), cidrs.join(", "));
    }
    summarize_allows(rules, &mut out);
    let _ = writeln!(out, "detections:");
    for d in Detection::ALL {
        let s = rules.settings(d);
        let mut line = format!(
            "  {:<24} {:<7} sid {}  suppress {} s",
            d.id(),
            s.severity.name(),
            d.sid(),
            s.suppress_seconds
        );
        if d == Detection::SshLongLived {
            let hours: Vec<String> = s.long_lived_seconds.iter().map(|t| fmt_hours(*t)).collect();
            let _ = write!(line, "  thresholds {} h", hours.join(", "));
        }
        if !s.enabled {
            line.push_str("  (disabled)");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "mining pool names: {}", rules.mining_pool_count());
    out
}

fn summarize_allows(rules: &RuleSet, out: &mut String) {
    let allows = rules.allows();
    let wide = allows.iter().filter(|a| a.zones.is_empty()).count();
    let _ = writeln!(
        out,
        "allow entries ({}: {} cluster-wide, {} zone-scoped):",
        allows.len(),
        wide,
        allows.len() - wide
    );
    for a in allows.iter().take(SUMMARY_ALLOWS) {
        let _ = writeln!(out, "  {}", describe_entry(rules, a));
    }
    if allows.len() > SUMMARY_ALLOWS {
        let _ = writeln!(out, "  ... and {} more", allows.len() - SUMMARY_ALLOWS);
    }
}

/// One line describing an allow entry.
fn describe_entry(rules: &RuleSet, a: &AllowEntry) -> String {
    let mut dest: Vec<String> = a.cidrs.iter().map(ToString::to_string).collect();
    dest.extend(a.hosts.iter().map(ToString::to_string));
    let ports = if a.ports.is_empty() {
        "any port".to_string()
    } else {
        let p: Vec<String> = a.ports.iter().map(ToString::to_string).collect();
        format!("port {}", p.join(","))
    };
    let scope = if a.zones.is_empty() {
        "cluster-wide".to_string()
    } else {
        let z: Vec<&str> = a
            .zones
            .iter()
            .filter_map(|i| rules.zones().get(*i))
            .map(|z| z.name.as_ref())
            .collect();
        format!("zone {}", z.join(","))
    };
    let mut line = format!(
        "{:<20} {:<7} {} {} ({scope})",
        a.label(),
        a.protocol.name(),
        dest.join(", "),
        ports
    );
    let perms: Vec<&str> = a.permissions.keys().collect();
    if !perms.is_empty() {
        let _ = write!(line, " [{}]", perms.join(", "));
    }
    if let Some(e) = &a.expires {
        let _ = write!(line, " expires {}", e.text);
    }
    line
}

/// An `explain` question: a flow from `src` to `dst:port` carrying
/// `protocol`.
#[derive(Clone, Debug)]
pub struct ExplainQuery {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub port: u16,
    /// Identified protocol; `None` for "not identified".
    pub protocol: Option<AppProto>,
    /// IP protocol number (TCP unless the protocol is DNS or `udp` asked).
    pub transport: u8,
    /// Host names the flow is known by (SNI, Host, DNS).
    pub names: Vec<String>,
    pub hassh: Option<String>,
    pub hassh_server: Option<String>,
    /// Packet time to judge expiry against.
    pub at: Timestamp,
}

impl ExplainQuery {
    /// `protocol` is `ssh|tls|http|dns|stratum` (transport follows),
    /// or `tcp|udp|any` for an unidentified flow.
    pub fn new(src: IpAddr, dst: IpAddr, port: u16, protocol: &str, at: Timestamp) -> Result<Self, String> {
        let p = protocol.trim().to_ascii_lowercase();
        let (protocol, transport) = match p.as_str() {
            "tcp" | "any" => (None, proto::TCP),
            "udp" => (None, proto::UDP),
            "dns" => (Some(AppProto::Dns), proto::UDP),
            other => match AppProto::parse(other) {
                Some(a) => (Some(a), proto::TCP),
                None => {
                    return Err(format!(
                        "unknown protocol `{protocol}`: expected ssh, tls, http, dns, stratum, tcp, udp or any"
                    ))
                }
            },
        };
        Ok(ExplainQuery {
            src,
            dst,
            port,
            protocol,
            transport,
            names: Vec::new(),
            hassh: None,
            hassh_server: None,
            at,
        })
    }
}

/// The reverse-tunnel inferences the SSH analyzer may add later, used to
/// say what would happen if they were made on this flow.
fn hypothetical_reverse_facts(q: &ExplainQuery) -> SshFacts {
    let ev = Some(Evidence::new("(hypothetical)", &[], q.at, q.at));
    SshFacts {
        hassh: q.hassh.clone(),
        hassh_server: q.hassh_server.clone(),
        role_reversed: ev.clone(),
        remote_forward: ev.clone(),
        reverse_session: ev.clone(),
        reverse_interactive: ev,
        ..SshFacts::default()
    }
}

/// Answers "what would happen to this flow": the direction, the zone, the
/// allow entry that matches (or the closest miss) and which detections
/// would alert.
pub fn explain(rules: &RuleSet, q: &ExplainQuery) -> String {
    let names: Vec<&str> = q.names.iter().map(String::as_str).collect();
    let plain_ssh = SshFacts {
        hassh: q.hassh.clone(),
        hassh_server: q.hassh_server.clone(),
        ..SshFacts::default()
    };
    let is_ssh = q.protocol == Some(AppProto::Ssh);
    let mut subject = FlowSubject::new(
        0,
        Endpoint { addr: q.src, port: 0 },
        Endpoint { addr: q.dst, port: q.port },
        q.transport,
        q.at,
    );
    subject.app_proto = q.protocol.map(AppProto::name);
    subject.stage = Stage::Identified;
    subject.names = &names;
    subject.ssh = is_ssh.then_some(&plain_ssh);
    let verdict = rules.judge(&subject);

    let mut out = String::new();
    explain_flow(rules, q, &verdict, &mut out);
    let fired: Vec<Detection> = verdict.findings.iter().map(|f| f.detection).collect();
    let _ = writeln!(out, "alerts for this flow:");
    if fired.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for f in &verdict.findings {
        let s = rules.settings(f.detection);
        let _ = writeln!(
            out,
            "  {} ({}, sid {}): {}",
            f.detection.id(),
            s.severity.name(),
            f.detection.sid(),
            f.evidence.summary
        );
    }
    if is_ssh {
        explain_reverse(rules, q, &subject, &mut out);
    }
    let verdict_line = if fired.is_empty() {
        "allowed, no alert".to_string()
    } else {
        let ids: Vec<&str> = fired.iter().map(|d| d.id()).collect();
        format!("alert: {}", ids.join(", "))
    };
    let _ = writeln!(out, "verdict: {verdict_line}");
    out
}

fn explain_flow(rules: &RuleSet, q: &ExplainQuery, v: &Verdict, out: &mut String) {
    let proto = q.protocol.map_or(if q.transport == proto::UDP { "udp" } else { "tcp" }, AppProto::name);
    let _ = writeln!(
        out,
        "flow: {} -> {} protocol {proto}",
        q.src,
        ep(Endpoint { addr: q.dst, port: q.port })
    );
    let side = |a: IpAddr| if rules.is_internal(a) { "internal" } else { "external" };
    let _ = writeln!(
        out,
        "direction: {} ({} is {}, {} is {})",
        v.direction.name(),
        q.src,
        side(q.src),
        q.dst,
        side(q.dst)
    );
    let zone = v.zone.and_then(|z| rules.zones().get(z));
    match (zone, v.egress_mode) {
        (Some(z), _) => {
            let _ = writeln!(out, "zone: {} ({})", z.name, z.egress.name());
        }
        (None, Some(mode)) => {
            let _ = writeln!(out, "zone: none (default egress: {})", mode.name());
        }
        (None, None) => {
            let _ = writeln!(out, "zone: none");
        }
    }
    match v.considered.as_ref().and_then(|c| Some((c, rules.allows().get(c.entry)?))) {
        None => {
            let _ = writeln!(out, "allow entry: none covers this destination");
        }
        Some((c, e)) => {
            let detail = c.status.detail().map_or_else(String::new, |d| format!(": {d}"));
            let _ = writeln!(
                out,
                "allow entry: {} ({}:{}) {}{detail}",
                e.label(),
                e.file,
                e.line,
                c.status.name()
            );
            let _ = writeln!(out, "  reason: {}", e.reason);
            if let Some(x) = &e.expires {
                let _ = writeln!(out, "  expires: {}", x.text);
            }
            let perms: Vec<&str> = v.permissions.keys().collect();
            if !perms.is_empty() {
                let _ = writeln!(out, "  permissions: {}", perms.join(", "));
            }
        }
    }
}

/// What the reverse-tunnel and long-session detections would do if the
/// SSH analyzer inferred them on this flow.
fn explain_reverse(rules: &RuleSet, q: &ExplainQuery, base: &FlowSubject<'_>, out: &mut String) {
    let facts = hypothetical_reverse_facts(q);
    let mut subject = *base;
    subject.ssh = Some(&facts);
    // Long enough to pass every long-lived threshold.
    let longest = rules.settings(Detection::SshLongLived).long_lived_seconds.last().copied();
    if let Some(secs) = longest {
        subject.now = subject.first_ts.add_nanos(secs.saturating_mul(crate::time::NANOS_PER_SEC));
    }
    let v = rules.judge(&subject);
    let _ = writeln!(out, "if the SSH analyzer later sees on this flow:");
    let cases = [
        (Detection::SshReverseForward, "remote forwarding (ssh -R)"),
        (Detection::SshReverseSession, "a session back through the tunnel"),
        (Detection::SshReverseInteractive, "typing from the outside"),
        (Detection::SshReverseRole, "the inside host acting as SSH server"),
        (Detection::SshLongLived, "a session open past the long-lived thresholds"),
    ];
    for (d, what) in cases {
        let fires = v.findings.iter().any(|f| f.detection == d);
        let outcome = if fires {
            format!("alert {} ({})", d.id(), rules.settings(d).severity.name())
        } else if !rules.settings(d).enabled {
            format!("no alert ({} is disabled)", d.id())
        } else if d == Detection::SshLongLived && v.direction != super::classify::Direction::Egress {
            "no alert (not an egress session)".to_string()
        } else {
            let key = d.permission().map_or("", |p| p.key());
            format!("no alert (allowed by `{key}`)")
        };
        let _ = writeln!(out, "  {what}: {outcome}");
    }
}
