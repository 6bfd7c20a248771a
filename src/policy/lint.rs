//! Warnings about allow entries that load fine but are probably not what
//! was meant. [`shadowing`] needs only the rules: an entry another entry
//! makes redundant. [`evidence`] needs a capture's [`Usage`]: entries (or
//! parts of them) that permitted nothing, and entries wider than what
//! they were used for. Both are warnings in the loader's file:line:col
//! style; they never stop a rule set loading.
//!
//! Definitions (docs/RULES.md, "Trying rules before they ship"):
//! - entry A *covers* entry B when every flow B permits, A permits too,
//!   and A grants at least B's permissions for at least as long: A is
//!   cluster-wide or names every zone of B; A's transport and protocol are
//!   `any` or B's; A allows any port or every port of B; A pins no HASSH,
//!   or every value B pins (and B pins); each CIDR of B lies inside one
//!   CIDR of A and each host pattern of B is matched by a pattern of A
//!   (`*.example.com` covers `a.example.com` and `*.a.example.com`); A
//!   sets every `allow_*` permission B sets; A does not expire, or not
//!   before B. B is *shadowed* when some other entry covers it; of two
//!   entries that cover each other the later one is reported.
//! - a CIDR is *wider than its evidence* when the flows it permitted fit
//!   in a prefix [`SLACK_BITS`] bits longer (a /8 whose flows all went to
//!   one /16 or narrower); addresses closer than a /24 (IPv4) or a /64
//!   (IPv6) count as one network. A `*.` pattern is wider than its
//!   evidence when it matched one name only; an entry allowing more than
//!   [`MANY_PORTS`] ports (or any) when its flows used at most
//!   [`FEW_PORTS`] distinct ports; `protocol = "any"` when every flow was
//!   identified as one protocol.

use super::diag::{Diagnostic, Kind};
use super::names::NamePattern;
use super::schema::{AllowEntry, PortRange, ProtoMatch, RuleSet, Transport};
use super::usage::{EntryUsage, Usage};
use ipnet::IpNet;
use std::net::IpAddr;
use std::ops::Range;

/// How many bits narrower the evidence must be for a CIDR to be flagged.
pub const SLACK_BITS: u8 = 8;
/// Evidence is not narrowed below these prefixes.
pub const V4_GRANULE: u8 = 24;
pub const V6_GRANULE: u8 = 64;
/// Port evidence: an entry allowing more than `MANY_PORTS` ports whose
/// flows used at most `FEW_PORTS` distinct ones.
pub const MANY_PORTS: u32 = 256;
pub const FEW_PORTS: usize = 4;

/// A warning for each allow entry another entry shadows, at the shadowed
/// entry's header.
pub fn shadowing(rules: &RuleSet) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (b_idx, b) in rules.allows.iter().enumerate() {
        let shadow = candidates(rules, b)
            .into_iter()
            .filter(|a| *a != b_idx)
            .filter_map(|a| rules.allows.get(a).map(|e| (a, e)))
            .find(|(a_idx, a)| covers(a, b) && (*a_idx < b_idx || !covers(b, a)));
        if let Some((_, a)) = shadow {
            out.push(
                Diagnostic::warning(
                    Kind::Shadowed,
                    format!(
                        "allow entry `{}` is shadowed by `{}` ({}:{})",
                        b.label(),
                        a.label(),
                        a.file,
                        a.line
                    ),
                )
                .at(b.site.file, b.site.header.clone())
                .label(format!(
                    "every flow this entry permits, `{}` permits too",
                    a.label()
                ))
                .note("remove this entry, or narrow the other one if this one is the intent"),
            );
        }
    }
    out
}

/// Entries that may cover `b`: those with a CIDR holding b's first CIDR,
/// else those with a pattern matching b's first host pattern.
fn candidates(rules: &RuleSet, b: &AllowEntry) -> Vec<usize> {
    let mut out = Vec::new();
    if let Some(net) = b.cidrs.first() {
        for (n, ids) in rules.allow_cidrs.covering(net.network()) {
            if n.prefix_len() <= net.prefix_len() {
                out.extend(ids.iter().copied());
            }
        }
    } else if let Some(h) = b.hosts.first() {
        let probe = match h {
            NamePattern::Exact(n) => n.to_string(),
            NamePattern::Suffix(s) => format!("x.{s}"),
        };
        rules
            .allow_names
            .for_each_match(&probe, |_, i| out.push(*i));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether every flow `b` permits, `a` permits with at least `b`'s
/// permissions (see the module docs).
pub fn covers(a: &AllowEntry, b: &AllowEntry) -> bool {
    let zones =
        a.zones.is_empty() || (!b.zones.is_empty() && b.zones.iter().all(|z| a.zones.contains(z)));
    let transport = a.transport == Transport::Any || a.transport == b.transport;
    let protocol = a.protocol == ProtoMatch::Any || a.protocol == b.protocol;
    let permissions = b.permissions.0 & !a.permissions.0 == 0;
    let expiry = match (&a.expires, &b.expires) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => y.at <= x.at,
    };
    let cidrs = b
        .cidrs
        .iter()
        .all(|n| a.cidrs.iter().any(|m| m.contains(n)));
    let hosts = b
        .hosts
        .iter()
        .all(|h| a.hosts.iter().any(|g| pattern_covers(g, h)));
    zones
        && transport
        && protocol
        && permissions
        && expiry
        && ports_cover(&a.ports, &b.ports)
        && pins_cover(&a.hassh, &b.hassh)
        && pins_cover(&a.hassh_server, &b.hassh_server)
        && cidrs
        && hosts
}

/// Every name `h` matches, `g` matches.
fn pattern_covers(g: &NamePattern, h: &NamePattern) -> bool {
    let below = |name: &str, parent: &str| {
        name.strip_suffix(parent)
            .is_some_and(|head| head.ends_with('.'))
    };
    match (g, h) {
        (NamePattern::Exact(x), NamePattern::Exact(y)) => x == y,
        (NamePattern::Suffix(s), NamePattern::Exact(y)) => below(y, s),
        (NamePattern::Suffix(s), NamePattern::Suffix(t)) => s == t || below(t, s),
        (NamePattern::Exact(_), NamePattern::Suffix(_)) => false,
    }
}

/// Every port of `b` (empty: any) is a port of `a`.
fn ports_cover(a: &[PortRange], b: &[PortRange]) -> bool {
    if a.is_empty() {
        return true;
    }
    if b.is_empty() {
        return false;
    }
    let mut merged: Vec<(u32, u32)> = a
        .iter()
        .map(|r| (u32::from(r.first), u32::from(r.last)))
        .collect();
    merged.sort_unstable();
    let mut union: Vec<(u32, u32)> = Vec::new();
    for (lo, hi) in merged {
        match union.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => union.push((lo, hi)),
        }
    }
    b.iter().all(|r| {
        union
            .iter()
            .any(|(lo, hi)| *lo <= u32::from(r.first) && u32::from(r.last) <= *hi)
    })
}

/// Pins of `a` (empty: any) admit every client `b`'s pins admit.
fn pins_cover(a: &[Box<str>], b: &[Box<str>]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|h| a.contains(h)))
}

/// Warnings from a capture's evidence: entries and parts of entries that
/// permitted no flow, and entries wider than what they were used for.
/// `capture` names the capture in the messages.
pub fn evidence(rules: &RuleSet, usage: &Usage, capture: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (entry, u) in rules.allows.iter().zip(&usage.entries) {
        if u.flows == 0 {
            out.push(unused_entry(entry, u, capture));
            continue;
        }
        cidr_evidence(entry, u, capture, &mut out);
        host_evidence(entry, u, capture, &mut out);
        if let Some(d) = port_evidence(entry, u, capture) {
            out.push(d);
        }
        if let Some(d) = protocol_evidence(entry, u, capture) {
            out.push(d);
        }
    }
    out
}

fn unused_entry(entry: &AllowEntry, u: &EntryUsage, capture: &str) -> Diagnostic {
    let mut d = Diagnostic::warning(
        Kind::Unused,
        format!(
            "allow entry `{}` permitted no flow in {capture}",
            entry.label()
        ),
    )
    .at(entry.site.file, entry.site.header.clone())
    .label("unused in this capture");
    if let Some(e) = &entry.expires {
        d = d.note(format!("it expires on {}", e.text));
    }
    if let Some((flow, why)) = &u.miss_example {
        d = d.note(format!(
            "it was the closest entry for {} flow(s) that alerted, e.g. {flow}: {why}",
            u.near_misses
        ));
    }
    d
}

fn part_unused(entry: &AllowEntry, what: String, span: Range<usize>, capture: &str) -> Diagnostic {
    Diagnostic::warning(
        Kind::Unused,
        format!(
            "`{what}` of allow entry `{}` matched no flow in {capture}",
            entry.label()
        ),
    )
    .at(entry.site.file, span)
    .label("no permitted flow went here")
}

fn wide(entry: &AllowEntry, what: String, span: Range<usize>, capture: &str) -> Diagnostic {
    Diagnostic::warning(
        Kind::WiderThanEvidence,
        format!(
            "`{what}` of allow entry `{}` is wider than its evidence in {capture}",
            entry.label()
        ),
    )
    .at(entry.site.file, span)
}

fn span_or_header(entry: &AllowEntry, span: Option<&Range<usize>>) -> Range<usize> {
    span.cloned().unwrap_or_else(|| entry.site.header.clone())
}

fn cidr_evidence(entry: &AllowEntry, u: &EntryUsage, capture: &str, out: &mut Vec<Diagnostic>) {
    for (i, net) in entry.cidrs.iter().enumerate() {
        let span = span_or_header(entry, entry.site.cidrs.get(i));
        let flows = u.cidr_flows.get(i).copied().unwrap_or(0);
        let Some(Some((lo, hi))) = u.cidr_range.get(i) else {
            out.push(part_unused(entry, net.to_string(), span, capture));
            continue;
        };
        let Some(seen) = evidence_net(*lo, *hi) else {
            continue;
        };
        if seen.prefix_len() < net.prefix_len().saturating_add(SLACK_BITS) {
            continue;
        }
        let range = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo} to {hi}")
        };
        out.push(
            wide(entry, net.to_string(), span, capture)
                .label(format!(
                    "the {flows} flow(s) it permitted all went to {seen}"
                ))
                .note(format!("addresses seen: {range}; narrower: `\"{seen}\"`")),
        );
    }
}

/// The smallest network holding `lo..=hi`, no narrower than the granule.
fn evidence_net(lo: IpAddr, hi: IpAddr) -> Option<IpNet> {
    let (common, granule) = match (lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            (u32::from(a) ^ u32::from(b)).leading_zeros() as u8,
            V4_GRANULE,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (
            (u128::from(a) ^ u128::from(b)).leading_zeros() as u8,
            V6_GRANULE,
        ),
        _ => return None,
    };
    IpNet::new(lo, common.min(granule)).ok().map(|n| n.trunc())
}

fn host_evidence(entry: &AllowEntry, u: &EntryUsage, capture: &str, out: &mut Vec<Diagnostic>) {
    for (i, pattern) in entry.hosts.iter().enumerate() {
        let span = span_or_header(entry, entry.site.hosts.get(i));
        let flows = u.host_flows.get(i).copied().unwrap_or(0);
        if flows == 0 {
            out.push(part_unused(entry, pattern.to_string(), span, capture));
            continue;
        }
        let Some(names) = u.host_names.get(i) else {
            continue;
        };
        let (NamePattern::Suffix(_), Some(1), Some(name)) =
            (pattern, names.exact_len(), names.items.first())
        else {
            continue;
        };
        out.push(
            wide(entry, pattern.to_string(), span, capture)
                .label(format!("the {flows} flow(s) it matched all named {name}"))
                .note(format!("narrower: `\"{name}\"`")),
        );
    }
}

fn port_evidence(entry: &AllowEntry, u: &EntryUsage, capture: &str) -> Option<Diagnostic> {
    let allowed: u32 = if entry.ports.is_empty() {
        65_536
    } else {
        entry
            .ports
            .iter()
            .map(|r| u32::from(r.last) - u32::from(r.first) + 1)
            .sum()
    };
    let seen = u.ports.exact_len()?;
    if allowed <= MANY_PORTS || seen == 0 || seen > FEW_PORTS {
        return None;
    }
    let mut ports = u.ports.items.clone();
    ports.sort_unstable();
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let what = if entry.ports.is_empty() {
        "any port".to_string()
    } else {
        let r: Vec<String> = entry.ports.iter().map(ToString::to_string).collect();
        format!("ports = [{}]", r.join(", "))
    };
    let d = wide(
        entry,
        what,
        span_or_header(entry, entry.site.ports.as_ref()),
        capture,
    )
    .label(format!(
        "the {} flow(s) it permitted used port {} only",
        u.flows,
        list.join(", ")
    ))
    .note(format!("narrower: `ports = [{}]`", list.join(", ")));
    Some(d)
}

fn protocol_evidence(entry: &AllowEntry, u: &EntryUsage, capture: &str) -> Option<Diagnostic> {
    if entry.protocol != ProtoMatch::Any || u.protocols.exact_len() != Some(1) {
        return None;
    }
    let proto = (*u.protocols.items.first()?)?;
    let d = wide(
        entry,
        "protocol = \"any\"".into(),
        span_or_header(entry, entry.site.protocol.as_ref()),
        capture,
    )
    .label(format!(
        "the {} flow(s) it permitted were all identified as {}",
        u.flows,
        proto.name()
    ))
    .note(format!("narrower: `protocol = \"{}\"`", proto.name()));
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::super::diag::Diagnostics;
    use super::super::testutil::{rules, sources};
    use super::*;

    const CLUSTER: &str = r#"
[cluster]
internal = ["10.0.0.0/8"]

[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16"]
egress = "default-deny"

[[zone]]
name = "ci"
cidrs = ["10.40.0.0/16"]
egress = "monitor"
"#;

    fn render(files: &[(&str, &str)], diags: Vec<Diagnostic>) -> String {
        let mut d = Diagnostics::new(diags, sources(files));
        d.sort();
        d.render()
    }

    #[test]
    fn a_narrower_entry_is_shadowed_at_its_header() {
        let allow = r#"[[allow]]
name = "wide"
cidrs = ["198.51.100.0/24"]
hosts = ["*.example.com"]
reason = "wide"

[[allow]]
name = "narrow"
zones = ["gpu"]
cidrs = ["198.51.100.7/32"]
hosts = ["a.example.com", "*.b.example.com"]
ports = [443, "8000-8080"]
protocol = "tls"
reason = "narrow"

[[allow]]
name = "tunnel"
cidrs = ["198.51.100.8/32"]
allow_remote_forward = true
reason = "grants more than `wide`"

[[allow]]
name = "dup"
cidrs = ["198.51.100.0/24"]
hosts = ["*.example.com"]
reason = "same as wide"
"#;
        let files = [("c.toml", CLUSTER), ("allow.toml", allow)];
        let r = rules(&files);
        let text = render(&files, shadowing(&r));
        assert_eq!(
            text,
            r#"warning[shadowed]: allow entry `narrow` is shadowed by `wide` (allow.toml:1)
 --> allow.toml:7:1
  |
7 | [[allow]]
  | ^^^^^^^^^ every flow this entry permits, `wide` permits too
  = note: remove this entry, or narrow the other one if this one is the intent

warning[shadowed]: allow entry `dup` is shadowed by `wide` (allow.toml:1)
  --> allow.toml:22:1
   |
22 | [[allow]]
   | ^^^^^^^^^ every flow this entry permits, `wide` permits too
   = note: remove this entry, or narrow the other one if this one is the intent

0 errors, 2 warnings
"#
        );
    }

    #[test]
    fn cover_needs_every_dimension() {
        let base = r#"[[allow]]
name = "a"
zones = ["gpu"]
cidrs = ["198.51.100.0/24"]
ports = ["400-500"]
protocol = "tls"
hassh = ["0123456789abcdef0123456789abcdef"]
expires = 2030-01-01
reason = "a"
"#;
        let variants = [
            ("zones = [\"gpu\"]", "zones = [\"gpu\", \"ci\"]"),
            ("zones = [\"gpu\"]", "zones = []"),
            ("ports = [\"400-500\"]", "ports = [\"400-501\"]"),
            ("ports = [\"400-500\"]", "ports = []"),
            ("protocol = \"tls\"", "protocol = \"any\""),
            (
                "hassh = [\"0123456789abcdef0123456789abcdef\"]",
                "hassh = []",
            ),
            ("expires = 2030-01-01", "expires = 2031-01-01"),
            ("198.51.100.0/24", "198.51.0.0/16"),
        ];
        for (from, to) in variants {
            let b = base
                .replace("name = \"a\"", "name = \"b\"")
                .replace(from, to);
            let files = [
                ("c.toml", CLUSTER),
                ("a.toml", base),
                ("b.toml", b.as_str()),
            ];
            let r = rules(&files);
            let (a, b) = (&r.allows()[0], &r.allows()[1]);
            assert!(covers(b, a), "{to}: b is wider");
            assert!(!covers(a, b), "{to}: a does not cover b");
        }
        let files = [("c.toml", CLUSTER), ("a.toml", base)];
        let r = rules(&files);
        assert!(covers(&r.allows()[0], &r.allows()[0]));
        assert!(shadowing(&r).is_empty());
    }

    #[test]
    fn patterns_and_ports_cover() {
        let p = |s: &str| NamePattern::parse(s).unwrap();
        assert!(pattern_covers(&p("*.example.com"), &p("a.example.com")));
        assert!(pattern_covers(&p("*.example.com"), &p("*.a.example.com")));
        assert!(!pattern_covers(&p("*.example.com"), &p("example.com")));
        assert!(!pattern_covers(&p("*.example.com"), &p("badexample.com")));
        assert!(!pattern_covers(&p("a.example.com"), &p("*.example.com")));
        let r = |first, last| PortRange { first, last };
        assert!(ports_cover(&[r(1, 10), r(11, 20)], &[r(5, 15)]));
        assert!(!ports_cover(&[r(1, 10), r(12, 20)], &[r(5, 15)]));
        assert!(ports_cover(&[], &[]));
        assert!(!ports_cover(&[r(1, 10)], &[]));
    }

    #[test]
    fn evidence_prefix_stops_at_the_granule() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            evidence_net(a("10.1.2.3"), a("10.1.2.9"))
                .unwrap()
                .to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(
            evidence_net(a("10.1.2.3"), a("10.1.9.9"))
                .unwrap()
                .to_string(),
            "10.1.0.0/20"
        );
        assert_eq!(
            evidence_net(a("2001:db8::1"), a("2001:db8::2"))
                .unwrap()
                .to_string(),
            "2001:db8::/64"
        );
        assert_eq!(evidence_net(a("10.0.0.1"), a("::1")), None);
    }

    /// One allow entry drawn from small choice sets, as TOML.
    fn entry_toml(name: &str, pick: [usize; 7]) -> String {
        let zones = ["", "zones = [\"gpu\"]", "zones = [\"gpu\", \"ci\"]"];
        let dest = [
            "cidrs = [\"198.51.100.0/24\"]",
            "cidrs = [\"198.51.100.7/32\"]",
            "cidrs = [\"198.51.0.0/16\"]",
            "hosts = [\"*.example.com\"]",
            "hosts = [\"a.example.com\"]",
            "cidrs = [\"198.51.100.7/32\"]\nhosts = [\"a.example.com\"]",
        ];
        let ports = [
            "",
            "ports = [443]",
            "ports = [\"400-500\"]",
            "ports = [22, 443]",
        ];
        let protocol = ["", "protocol = \"tls\"", "protocol = \"ssh\""];
        let transport = ["", "transport = \"tcp\"", "transport = \"udp\""];
        let hassh = ["", "hassh = [\"0123456789abcdef0123456789abcdef\"]"];
        let expires = ["", "expires = 2030-01-01", "expires = 2020-01-01"];
        format!(
            "[[allow]]\nname = \"{name}\"\n{}\n{}\n{}\n{}\n{}\n{}\n{}\nreason = \"r\"\n",
            zones[pick[0] % zones.len()],
            dest[pick[1] % dest.len()],
            ports[pick[2] % ports.len()],
            protocol[pick[3] % protocol.len()],
            transport[pick[4] % transport.len()],
            hassh[pick[5] % hassh.len()],
            expires[pick[6] % expires.len()],
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// `covers` is sound: whenever it says A covers B, every flow B
        /// permits, A permits too.
        #[test]
        fn cover_implies_permits(
            a in proptest::array::uniform7(0usize..8),
            b in proptest::array::uniform7(0usize..8),
            flows in proptest::collection::vec(
                (0usize..3, 0usize..4, 0usize..4, 0usize..3, 0usize..3, proptest::bool::ANY, proptest::bool::ANY),
                16,
            ),
        ) {
            use crate::analyzer::facts::SshFacts;
            use crate::flow::key::{proto, Endpoint};
            use crate::policy::classify::{FlowSubject, Stage};
            use crate::time::Timestamp;
            let text = format!("{}\n{}", entry_toml("a", a), entry_toml("b", b));
            let files = [("c.toml", CLUSTER), ("allow.toml", text.as_str())];
            let r = rules(&files);
            let (ea, eb) = (&r.allows()[0], &r.allows()[1]);
            if !covers(ea, eb) {
                return Ok(());
            }
            let clients = ["10.10.0.5", "10.40.0.5", "10.99.0.5"];
            let servers = ["198.51.100.7", "198.51.100.9", "198.51.7.7", "203.0.113.1"];
            let ports = [443u16, 450, 22, 8080];
            let apps = [None, Some("tls"), Some("ssh")];
            let names: [&[&str]; 3] = [&[], &["a.example.com"], &["b.example.com"]];
            for (c, sv, p, app, n, udp, late) in flows {
                let hassh = SshFacts {
                    hassh: Some("0123456789abcdef0123456789abcdef".into()),
                    ..SshFacts::default()
                };
                let at = Timestamp::from_secs(if late { 2_000_000_000 } else { 1_700_000_000 });
                let mut s = FlowSubject::new(
                    1,
                    Endpoint { addr: clients[c].parse().unwrap(), port: 40000 },
                    Endpoint { addr: servers[sv].parse().unwrap(), port: ports[p] },
                    if udp { proto::UDP } else { proto::TCP },
                    at,
                );
                s.app_proto = apps[app];
                s.ssh = (apps[app] == Some("ssh")).then_some(&hassh);
                s.names = names[n];
                s.stage = Stage::Ended;
                let out = r.entry_outcome(&s);
                if out.permitting.contains(&1) {
                    proptest::prop_assert!(out.permitting.contains(&0), "{text}");
                }
            }
        }
    }
}
