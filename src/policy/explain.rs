//! The two policy-as-code tools: `check-rules` (every diagnostic, exit 78
//! on error like `vector validate`, otherwise a one-screen summary) and
//! `explain` (what would happen to a flow from A to B:port with protocol
//! P). Both return printable text; the binary prints it.

use super::classify::{ep, fmt_hours, FlowSubject, Stage, Verdict};
use super::detection::Detection;
use super::diag::{Diagnostics, SourceFile};
use super::lint;
use super::load::{load_dir, load_sources, Loaded};
use super::schema::{AllowEntry, AppProto, RuleSet};
use super::usage::Usage;
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
    check_loaded(load_dir(dir, now), None)
}

/// [`check_rules`] over files already in memory.
pub fn check_sources(sources: Vec<SourceFile>, now: Option<Timestamp>) -> CheckReport {
    check_loaded(load_sources(sources, now), None)
}

/// The `check-rules` report of a load: its diagnostics, the shadowed
/// entries ([`lint::shadowing`]) and, given a capture's entry usage and
/// the capture's name, the entries wider than their evidence or unused
/// ([`lint::evidence`]); all of those are warnings.
pub fn check_loaded(mut loaded: Loaded, evidence: Option<(&Usage, &str)>) -> CheckReport {
    if let (Some(rules), false) = (&loaded.rules, loaded.diagnostics.has_errors()) {
        let mut lints = lint::shadowing(rules);
        if let Some((usage, capture)) = evidence {
            lints.extend(lint::evidence(rules, usage, capture));
        }
        if !lints.is_empty() {
            loaded.diagnostics.items.extend(lints);
            loaded.diagnostics.sort();
        }
    }
    report(loaded)
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
    let _ = writeln!(
        out,
        "rules OK: {} file(s): {}",
        files.len(),
        files.join(", ")
    );
    if let Some(name) = rules.cluster_name() {
        let _ = writeln!(out, "cluster: {name}");
    }
    let internal: Vec<String> = rules
        .internal_ranges()
        .iter()
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(out, "internal: {}", internal.join(", "));
    let _ = writeln!(
        out,
        "egress of internal hosts outside any zone: {}",
        rules.default_egress().name()
    );
    let _ = writeln!(out, "zones ({}):", rules.zones().len());
    for z in rules.zones() {
        let cidrs: Vec<String> = z.cidrs.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "  {:<20} {:<13} {}",
            z.name,
            z.egress.name(),
            cidrs.join(", ")
        );
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
        if d == Detection::FlowTablePressure {
            line.push_str("  once per episode of a full flow table, not per flow");
        }
        if d == Detection::InternalDiscovery {
            line.push_str("  once per scan episode of a host, again at 10x");
        }
        if d == Detection::DnsTunnel {
            line.push_str("  once per tunnel episode of a client and domain, again at 10x");
        }
        if d == Detection::IcmpTunnel {
            line.push_str("  once per echo flow");
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
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        protocol: &str,
        at: Timestamp,
    ) -> Result<Self, String> {
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
        Endpoint {
            addr: q.src,
            port: 0,
        },
        Endpoint {
            addr: q.dst,
            port: q.port,
        },
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
    let proto = q.protocol.map_or(
        if q.transport == proto::UDP {
            "udp"
        } else {
            "tcp"
        },
        AppProto::name,
    );
    let _ = writeln!(
        out,
        "flow: {} -> {} protocol {proto}",
        q.src,
        ep(Endpoint {
            addr: q.dst,
            port: q.port
        })
    );
    let side = |a: IpAddr| {
        if rules.is_internal(a) {
            "internal"
        } else {
            "external"
        }
    };
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
    match v
        .considered
        .as_ref()
        .and_then(|c| Some((c, rules.allows().get(c.entry)?)))
    {
        None => {
            let _ = writeln!(out, "allow entry: none covers this destination");
        }
        Some((c, e)) => {
            let detail = c
                .status
                .detail()
                .map_or_else(String::new, |d| format!(": {d}"));
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
    let longest = rules
        .settings(Detection::SshLongLived)
        .long_lived_seconds
        .last()
        .copied();
    if let Some(secs) = longest {
        subject.now = subject
            .first_ts
            .add_nanos(secs.saturating_mul(crate::time::NANOS_PER_SEC));
    }
    let v = rules.judge(&subject);
    let _ = writeln!(out, "if the SSH analyzer later sees on this flow:");
    let cases = [
        (Detection::SshReverseForward, "remote forwarding (ssh -R)"),
        (
            Detection::SshReverseSession,
            "a session back through the tunnel",
        ),
        (Detection::SshReverseInteractive, "typing from the outside"),
        (
            Detection::SshReverseRole,
            "the inside host acting as SSH server",
        ),
        (
            Detection::SshLongLived,
            "a session open past the long-lived thresholds",
        ),
    ];
    for (d, what) in cases {
        let fires = v.findings.iter().any(|f| f.detection == d);
        let outcome = if fires {
            format!("alert {} ({})", d.id(), rules.settings(d).severity.name())
        } else if !rules.settings(d).enabled {
            format!("no alert ({} is disabled)", d.id())
        } else if d == Detection::SshLongLived && v.direction != super::classify::Direction::Egress
        {
            "no alert (not an egress session)".to_string()
        } else {
            let key = d.permission().map_or("", |p| p.key());
            format!("no alert (allowed by `{key}`)")
        };
        let _ = writeln!(out, "  {what}: {outcome}");
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::{sources, test_rules, TEST_RULES};

    const NOW: u64 = 1_750_000_000;

    fn ask(src: &str, dst: &str, port: u16, protocol: &str) -> String {
        let q = ExplainQuery::new(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            port,
            protocol,
            Timestamp::from_secs(NOW),
        )
        .unwrap();
        explain(&test_rules(), &q)
    }

    #[test]
    fn clean_rules_exit_zero_with_warnings_and_a_summary() {
        let r = check_sources(
            sources(&[("rules/test.toml", TEST_RULES)]),
            Some(Timestamp::from_secs(NOW)),
        );
        assert_eq!(r.exit_code, 0);
        assert_eq!(
            r.text,
            r#"warning[expired]: allow entry expired on 2024-01-31
  --> rules/test.toml:51:11
   |
51 | expires = 2024-01-31
   |           ^^^^^^^^^^ this entry no longer allows anything

0 errors, 1 warning

rules OK: 1 file(s): rules/test.toml
internal: 10.0.0.0/8, fd00::/8
egress of internal hosts outside any zone: monitor
zones (2):
  gpu                  default-deny  10.10.0.0/16, fd00:10::/32
  lab                  monitor       10.11.0.0/16
allow entries (6: 3 cluster-wide, 3 zone-scoped):
  internal-git         ssh     10.20.0.10/32 port 22 (cluster-wide)
  github               ssh     github.com, ssh.github.com port 22,443 (zone gpu)
  vendor-tunnel        ssh     203.0.113.7/32 port 22 (cluster-wide) [allow_remote_forward]
  pypi                 tls     pypi.org port 443 (zone gpu)
  old-mirror           any     198.51.100.80/32 any port (cluster-wide) expires 2024-01-31
  pinned               ssh     198.51.100.22/32 any port (zone gpu)
detections:
  ssh-to-external          medium  sid 1750001  suppress 3600 s
  ssh-nonstandard-port     low     sid 1750002  suppress 3600 s
  ssh-reverse-forward      high    sid 1750003  suppress 3600 s
  ssh-reverse-session      high    sid 1750004  suppress 3600 s
  ssh-reverse-interactive  high    sid 1750005  suppress 3600 s
  ssh-reverse-role         high    sid 1750006  suppress 3600 s
  ssh-long-lived           medium  sid 1750007  suppress 60 s  thresholds 1, 4, 8, 12 h
  crypto-mining            high    sid 1750008  suppress 3600 s
  egress-not-allowed       medium  sid 1750009  suppress 3600 s
  flow-table-pressure      medium  sid 1750010  suppress 3600 s  once per episode of a full flow table, not per flow
  internal-discovery       medium  sid 1750011  suppress 3600 s  once per scan episode of a host, again at 10x
  dns-tunnel               medium  sid 1750012  suppress 3600 s  once per tunnel episode of a client and domain, again at 10x
  icmp-tunnel              medium  sid 1750013  suppress 3600 s  once per echo flow
mining pool names: 1
"#
        );
    }

    #[test]
    fn broken_rules_exit_78_with_every_diagnostic() {
        let files = [
            ("rules/a.toml", "[cluster]\ninternal = [\"10.0.0.0/8\"]\n[[zone]]\nname = \"x\"\ncidrs = [\"10.1.0.0/99\"]\n"),
            ("rules/b.toml", "[[allow]]\ncidrs = [\"1.2.3.4\"]\nzones = [\"y\"]\nreason = \"r\"\n"),
        ];
        let r = check_sources(sources(&files), None);
        assert_eq!(r.exit_code, EX_CONFIG);
        assert_eq!(r.diagnostics.error_count(), 2);
        assert_eq!(r.text, r.diagnostics.render());
        assert!(r.text.contains(" --> rules/a.toml:5:10\n"), "{}", r.text);
        assert!(r.text.contains(" --> rules/b.toml:3:10\n"), "{}", r.text);
        assert!(!r.text.contains("rules OK"));
    }

    #[test]
    fn explain_names_a_permission_that_covers_the_forward_only() {
        assert_eq!(
            ask("10.10.0.10", "203.0.113.7", 22, "ssh"),
            r#"flow: 10.10.0.10 -> 203.0.113.7:22 protocol ssh
direction: egress (10.10.0.10 is internal, 203.0.113.7 is external)
zone: gpu (default-deny)
allow entry: vendor-tunnel (rules/test.toml:31) permits
  reason: vendor support tunnel
  permissions: allow_remote_forward
alerts for this flow:
  none
if the SSH analyzer later sees on this flow:
  remote forwarding (ssh -R): no alert (allowed by `allow_remote_forward`)
  a session back through the tunnel: alert ssh-reverse-session (high)
  typing from the outside: alert ssh-reverse-interactive (high)
  the inside host acting as SSH server: alert ssh-reverse-role (high)
  a session open past the long-lived thresholds: alert ssh-long-lived (medium)
verdict: allowed, no alert
"#
        );
    }

    #[test]
    fn explain_shows_an_expired_entry_and_the_alert() {
        assert_eq!(
            ask("10.10.0.10", "198.51.100.80", 80, "http"),
            r#"flow: 10.10.0.10 -> 198.51.100.80:80 protocol http
direction: egress (10.10.0.10 is internal, 198.51.100.80 is external)
zone: gpu (default-deny)
allow entry: old-mirror (rules/test.toml:47) expired
  reason: retired mirror
  expires: 2024-01-31
alerts for this flow:
  egress-not-allowed (medium, sid 1750009): TCP flow from 10.10.0.10 (zone gpu) to external 198.51.100.80:80: no allow entry covers it
verdict: alert: egress-not-allowed
"#
        );
    }

    #[test]
    fn explain_in_a_monitor_zone_without_entries() {
        assert_eq!(
            ask("10.11.0.10", "198.51.100.9", 3333, "tcp"),
            r#"flow: 10.11.0.10 -> 198.51.100.9:3333 protocol tcp
direction: egress (10.11.0.10 is internal, 198.51.100.9 is external)
zone: lab (monitor)
allow entry: none covers this destination
alerts for this flow:
  none
verdict: allowed, no alert
"#
        );
    }

    #[test]
    fn explain_allowlisted_git_and_its_tunnel_risk() {
        let out = ask("10.10.0.10", "10.20.0.10", 22, "ssh");
        assert!(
            out.contains("allow entry: internal-git (rules/test.toml:16) permits\n"),
            "{out}"
        );
        assert!(
            out.contains("remote forwarding (ssh -R): alert ssh-reverse-forward (high)\n"),
            "{out}"
        );
        assert!(out.ends_with("verdict: allowed, no alert\n"), "{out}");
    }

    #[test]
    fn explain_protocols_parse() {
        let at = Timestamp::from_secs(NOW);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let dns = ExplainQuery::new(ip("10.0.0.1"), ip("8.8.8.8"), 53, "DNS", at).unwrap();
        assert_eq!(
            (dns.protocol, dns.transport),
            (Some(AppProto::Dns), proto::UDP)
        );
        let udp = ExplainQuery::new(ip("10.0.0.1"), ip("8.8.8.8"), 123, "udp", at).unwrap();
        assert_eq!((udp.protocol, udp.transport), (None, proto::UDP));
        assert!(ExplainQuery::new(ip("10.0.0.1"), ip("8.8.8.8"), 1, "quic", at).is_err());
    }
}
