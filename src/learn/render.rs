//! The learned entries as TOML in the shipped schema, every entry with its
//! evidence as comments, refused flows under a warning at the top. The
//! text depends only on what was observed: the same flows give the same
//! bytes.

use super::cover::{Entry, Proposal, FILL, WIDEST_V4, WIDEST_V6, WILDCARD_MIN};
use super::{Evidence, LearnConfig, Learner};
use crate::policy::RuleSet;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Refused-flow groups written out at most (the rest are counted).
pub const REFUSED_SHOWN: usize = 200;
/// Per-pattern evidence lines per entry at most.
const DETAILS_SHOWN: usize = 12;
/// Arrays with more items are written one item a line.
const ARRAY_INLINE: usize = 4;
/// Names listed under a wildcard at most.
const NAMES_SHOWN: usize = 8;

/// What the output says about where the flows came from.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `demo.pcap`, `live capture on eth0`, ...
    pub sources: Vec<String>,
}

/// Renders the learner's proposal judged against `rules`.
pub fn render(learner: &Learner, rules: &RuleSet, ctx: &Context) -> String {
    let proposal = learner.proposal();
    let mut out = String::new();
    header(&mut out, learner, rules, ctx, &proposal);
    refused(&mut out, learner);
    summary(&mut out, learner, &proposal);
    entries(&mut out, rules, &proposal.entries);
    out
}

fn header(out: &mut String, l: &Learner, rules: &RuleSet, ctx: &Context, p: &Proposal) {
    let cfg: &LearnConfig = l.config();
    out.push_str("# Allow entries learned by `egresswatch learn` from observed egress.\n");
    let _ = writeln!(out, "# From: {}", ctx.sources.join(", "));
    if let Some((first, last)) = l.counts.span {
        let _ = writeln!(out, "# Packet time: {} .. {}", first.eve(), last.eve());
    }
    let files: Vec<&str> = rules.files().iter().map(|f| &**f).collect();
    let _ = writeln!(out, "# Judged with the rules in: {}", files.join(", "));
    let mut filters = format!(
        "--min-flows {} --min-hosts {}",
        cfg.min_flows, cfg.min_hosts
    );
    if let Some(t) = cfg.since {
        let _ = write!(filters, " --since {}", t.eve());
    }
    if let Some(t) = cfg.until {
        let _ = write!(filters, " --until {}", t.eve());
    }
    let _ = writeln!(out, "# Filters: {filters}");
    let _ = writeln!(
        out,
        "# Wildcards: `*.parent` for >= {WILDCARD_MIN} names below a registrable domain; \
         CIDRs: at most /{WIDEST_V4} (IPv4) or /{WIDEST_V6} (IPv6), seen addresses >= 1/{FILL} of each prefix."
    );
    out.push_str(
        "# Review every entry before enforcing it: learning proposes what was seen, not what should be.\n",
    );
    let _ = writeln!(out, "# {} entries proposed.", p.entries.len());
    out.push_str("#\n");
}

fn refused(out: &mut String, l: &Learner) {
    let c = &l.counts;
    if c.refused == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "# WARNING: {} flow(s) REFUSED: they raised detections that an allow entry must never \
         legitimise.\n# No entry below names or covers their destinations. Investigate them:",
        c.refused
    );
    let groups: Vec<_> = l.refused().collect();
    for (k, e) in groups.iter().take(REFUSED_SHOWN) {
        let transport = crate::flow::key::proto_name(k.proto).to_ascii_lowercase();
        let _ = writeln!(
            out,
            "#   {} -> {} {transport} {} (zone {}): {}",
            k.client,
            k.server,
            k.app_proto.unwrap_or("-"),
            k.zone.as_deref().unwrap_or("none"),
            k.detections.join(", ")
        );
        let _ = writeln!(out, "#     {}", evidence_line(e));
        let _ = writeln!(out, "#     example {}", e.example.1);
    }
    let unlisted = groups.len().saturating_sub(REFUSED_SHOWN) as u64 + c.refused_unlisted;
    if unlisted > 0 {
        let _ = writeln!(out, "#   ... and {unlisted} more refused flow group(s)");
    }
    if c.taint_dropped > 0 {
        let _ = writeln!(
            out,
            "# WARNING: {} refused destinations did not fit the taint list; an entry below may cover one.",
            c.taint_dropped
        );
    }
    out.push_str("#\n");
}

fn summary(out: &mut String, l: &Learner, p: &Proposal) {
    let c = &l.counts;
    let covered: u64 = c.covered.values().sum();
    let _ = writeln!(
        out,
        "# Flows: {} seen, {} not egress, {} refused, {} already allowed, {} learned.",
        c.flows, c.not_egress, c.refused, covered, c.learned
    );
    for (label, n) in &c.covered {
        let _ = writeln!(out, "#   already allowed by {label}: {n}");
    }
    let notes = [
        (c.outside_window, "started outside --since/--until"),
        (
            c.no_zone,
            "came from hosts in no zone while default_egress is monitor (not learned: an entry \
             without `zones` would apply to every zone)",
        ),
        (
            c.not_tcp_udp,
            "were neither TCP nor UDP (not learned: an entry cannot be limited to ICMP)",
        ),
        (
            p.trimmed.tainted_flows,
            "went to a destination that also had refused flows (not learned)",
        ),
        (
            p.trimmed.below_threshold_flows,
            "went to destinations below --min-flows/--min-hosts",
        ),
        (
            c.dropped,
            "were left out: the table of destinations was full (--max-destinations)",
        ),
    ];
    for (n, what) in notes {
        if n > 0 {
            let _ = writeln!(out, "#   {n} flow(s) {what}");
        }
    }
}

fn entries(out: &mut String, rules: &RuleSet, entries: &[Entry]) {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut zone: Option<Option<&str>> = None;
    for e in entries {
        let this = e.zone.as_deref();
        if zone != Some(this) {
            zone = Some(this);
            zone_header(out, rules, this);
        }
        let base = entry_name(e);
        let n = names.entry(base.clone()).or_default();
        *n += 1;
        let name = if *n == 1 { base } else { format!("{base}-{n}") };
        entry(out, e, &name);
    }
}

fn zone_header(out: &mut String, rules: &RuleSet, zone: Option<&str>) {
    out.push('\n');
    match zone {
        Some(z) => {
            let mode = rules
                .zones()
                .iter()
                .find(|x| &*x.name == z)
                .map_or("?", |x| x.egress.name());
            let _ = writeln!(out, "# ---- zone {z} ({mode}) ----");
        }
        None => out.push_str(
            "# ---- hosts in no zone (default_egress default-deny): these entries have no \
             `zones`, so they apply to every zone; narrow them ----\n",
        ),
    }
}

fn entry_name(e: &Entry) -> String {
    let what = e.protocol.unwrap_or(e.transport);
    match &e.zone {
        Some(z) => format!("learned-{z}-{}-{what}", e.group),
        None => format!("learned-{}-{what}", e.group),
    }
}

fn entry(out: &mut String, e: &Entry, name: &str) {
    out.push('\n');
    let _ = writeln!(out, "# {}", evidence_line(&e.evidence));
    let _ = writeln!(out, "# example {}", e.evidence.example.1);
    if e.details.len() > 1 || e.details.iter().any(|d| !d.names.is_empty()) {
        for d in e.details.iter().take(DETAILS_SHOWN) {
            let _ = writeln!(
                out,
                "#   {}: {} flow(s), {} host(s)",
                d.pattern,
                d.evidence.flows,
                d.evidence.sources.count()
            );
            if !d.names.is_empty() {
                let shown: Vec<&str> = d.names.iter().take(NAMES_SHOWN).map(|n| &**n).collect();
                let more = d.names.len().saturating_sub(NAMES_SHOWN);
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "#     {} names seen: {}{tail}",
                    d.names.len(),
                    shown.join(", ")
                );
            }
        }
        if e.details.len() > DETAILS_SHOWN {
            let _ = writeln!(out, "#   ... {} more", e.details.len() - DETAILS_SHOWN);
        }
    }
    if let Some((lo, hi, n)) = e.span {
        let _ = writeln!(
            out,
            "# ports widened: {n} distinct unidentified ports between {lo} and {hi} were seen, few flows each \
             (peer-to-peer or RTC?); the addresses are as seen. Narrow or drop this entry."
        );
    }
    out.push_str("[[allow]]\n");
    let _ = writeln!(out, "name = {}", quote(name));
    if let Some(z) = &e.zone {
        let _ = writeln!(out, "zones = [{}]", quote(z));
    }
    if !e.hosts.is_empty() {
        array(out, "hosts", e.hosts.iter().map(|h| quote(h)).collect());
    }
    if !e.cidrs.is_empty() {
        array(
            out,
            "cidrs",
            e.cidrs.iter().map(|c| quote(&c.to_string())).collect(),
        );
    }
    match e.span {
        Some((lo, hi, _)) => {
            let _ = writeln!(out, "ports = [\"{lo}-{hi}\"]");
        }
        None => array(out, "ports", port_ranges(&e.ports)),
    }
    let _ = writeln!(out, "transport = \"{}\"", e.transport);
    if let Some(p) = e.protocol {
        let _ = writeln!(out, "protocol = \"{p}\"");
    }
    if let Some(h) = &e.hassh[0] {
        let _ = writeln!(out, "hassh = [{}]", list(h.iter().map(|x| quote(x))));
    }
    if let Some(h) = &e.hassh[1] {
        let _ = writeln!(out, "hassh_server = [{}]", list(h.iter().map(|x| quote(x))));
    }
    let reason = format!(
        "learned from {} flow(s) seen {} .. {}; review",
        e.evidence.flows,
        day(e.evidence.first),
        day(e.evidence.last)
    );
    let _ = writeln!(out, "reason = {}", quote(&reason));
}

/// `12 flow(s), 34567 bytes, 3 host(s), first .. last`
pub fn evidence_line(e: &Evidence) -> String {
    format!(
        "{} flow(s), {} bytes, {} host(s), first {}, last {}",
        e.flows,
        e.bytes,
        e.sources.count(),
        e.first.eve(),
        e.last.eve()
    )
}

/// The date of a packet time, `2025-06-15`.
fn day(t: Timestamp) -> String {
    let s = t.eve().to_string();
    s.get(..10).unwrap_or(&s).to_string()
}

/// `key = [a, b]`, or one item a line when there are many.
fn array(out: &mut String, key: &str, items: Vec<String>) {
    if items.len() <= ARRAY_INLINE {
        let _ = writeln!(out, "{key} = [{}]", items.join(", "));
        return;
    }
    let _ = writeln!(out, "{key} = [");
    for item in items {
        let _ = writeln!(out, "    {item},");
    }
    out.push_str("]\n");
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `[22, "8000-8002"]`: runs of consecutive ports as ranges.
fn port_ranges(ports: &[u16]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&first) = ports.get(i) {
        let mut last = first;
        while ports.get(i + 1) == Some(&last.wrapping_add(1)) && last < u16::MAX {
            last += 1;
            i += 1;
        }
        i += 1;
        out.push(if last > first.saturating_add(1) {
            format!("\"{first}-{last}\"")
        } else if last == first {
            first.to_string()
        } else {
            // Two ports read better as a list than as a range.
            format!("{first}, {last}")
        });
    }
    out
}
