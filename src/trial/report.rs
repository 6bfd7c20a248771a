//! The `replay --compare-rules` report: a readable diff (text) and the
//! same facts as one JSON document (`--compare-format json`).

use super::{Change, Comparison, Group, GroupKey, TrialReport};
use crate::flow::key::proto_name;
use crate::policy::usage::{EntryUsage, FlowBrief};
use crate::policy::{AllowEntry, RuleSet};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Lines a text section shows before "... and N more" (JSON has all).
pub const SECTION_LINES: usize = 50;

/// How the two rule sets are named in the report (their directories).
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    pub new: &'a str,
    pub old: &'a str,
}

/// The groups of one change, most flows first (then in key order).
fn sorted(c: &Comparison, change: Change) -> Vec<(&GroupKey, &Group)> {
    let mut v: Vec<_> = c
        .groups
        .iter()
        .filter(|(k, _)| k.change == change)
        .collect();
    v.sort_by(|a, b| b.1.flows.cmp(&a.1.flows).then_with(|| a.0.cmp(b.0)));
    v
}

fn entry_name(e: &AllowEntry) -> String {
    format!("{}:{}  {}", e.file, e.line, e.label())
}

/// The readable diff.
pub fn text(report: &TrialReport, new: &RuleSet, names: Names<'_>) -> String {
    let mut out = String::new();
    let Some(c) = &report.comparison else {
        return out;
    };
    let _ = writeln!(
        out,
        "compare-rules: NEW {} vs OLD {}: {} flows judged",
        names.new, names.old, report.usage.flows
    );
    let _ = writeln!(
        out,
        "alerts written: NEW {}, OLD {} (repeats inside the suppression window are held back; \
         the diff counts each flow's findings, held back or not)",
        c.new_alerts, c.old_alerts
    );
    for (change, sign, title) in [
        (Change::Appears, '+', "alerts that appear with NEW"),
        (Change::Disappears, '-', "alerts that disappear with NEW"),
    ] {
        let groups = sorted(c, change);
        let flows: u64 = groups.iter().map(|(_, g)| g.flows).sum();
        let _ = writeln!(
            out,
            "\n{title}: {} on {flows} flow(s), {} group(s)",
            c.count(change),
            groups.len()
        );
        for (k, g) in groups.iter().take(SECTION_LINES) {
            group_lines(&mut out, sign, k, g);
        }
        more(&mut out, groups.len());
    }
    if c.groups_dropped > 0 {
        let _ = writeln!(
            out,
            "  ({} more changed alerts were not grouped: over {} groups)",
            c.groups_dropped,
            super::MAX_GROUPS
        );
    }
    let dead: Vec<(&AllowEntry, &EntryUsage)> =
        entries(report, new).filter(|(_, u)| u.flows == 0).collect();
    let _ = writeln!(
        out,
        "\ndead entries of NEW (permitted no flow): {}",
        dead.len()
    );
    for (e, u) in dead.iter().take(SECTION_LINES) {
        let mut line = format!("  {}", entry_name(e));
        if let Some(x) = &e.expires {
            let _ = write!(line, "  (expires {})", x.text);
        }
        let _ = writeln!(out, "{line}");
        if u.near_misses > 0 {
            near_miss_line(&mut out, u);
        }
    }
    more(&mut out, dead.len());
    let near: Vec<_> = entries(report, new)
        .filter(|(_, u)| u.flows > 0 && u.near_misses > 0)
        .collect();
    let _ = writeln!(
        out,
        "\nentries of NEW that nearly covered a flow that alerted: {}",
        near.len()
    );
    for (e, u) in near.iter().take(SECTION_LINES) {
        let _ = writeln!(out, "  {}", entry_name(e));
        near_miss_line(&mut out, u);
    }
    more(&mut out, near.len());
    let alerting: Vec<_> = entries(report, new)
        .filter(|(_, u)| u.alerting > 0)
        .collect();
    let _ = writeln!(
        out,
        "\nentries of NEW that permitted a flow that still alerted: {}",
        alerting.len()
    );
    for (e, u) in alerting.iter().take(SECTION_LINES) {
        let _ = writeln!(out, "  {}", entry_name(e));
        if let Some((flow, raised)) = &u.alerting_example {
            let ids: Vec<&str> = raised.iter().map(|d| d.id()).collect();
            let _ = writeln!(
                out,
                "      {} flow(s), e.g. {flow}: {}",
                u.alerting,
                ids.join(", ")
            );
        }
    }
    more(&mut out, alerting.len());
    let _ = writeln!(
        out,
        "\nsummary: {} alert(s) appear, {} disappear; {} dead entr{} of {}",
        c.count(Change::Appears),
        c.count(Change::Disappears),
        dead.len(),
        if dead.len() == 1 { "y" } else { "ies" },
        new.allows().len()
    );
    out
}

fn more(out: &mut String, n: usize) {
    if n > SECTION_LINES {
        let _ = writeln!(out, "  ... and {} more", n - SECTION_LINES);
    }
}

fn near_miss_line(out: &mut String, u: &EntryUsage) {
    if let Some((flow, why)) = &u.miss_example {
        let _ = writeln!(
            out,
            "      closest entry for {} flow(s) that alerted, e.g. {flow}: {why}",
            u.near_misses
        );
    }
}

fn entries<'a>(
    report: &'a TrialReport,
    new: &'a RuleSet,
) -> impl Iterator<Item = (&'a AllowEntry, &'a EntryUsage)> {
    new.allows().iter().zip(&report.usage.entries)
}

fn group_lines(out: &mut String, sign: char, k: &GroupKey, g: &Group) {
    let mut dest = format!("{} -> {}", proto_name(k.proto), endpoint(k));
    if let Some(app) = &k.app_proto {
        let _ = write!(dest, " {app}");
    }
    if let Some(name) = &k.name {
        let _ = write!(dest, " ({name})");
    }
    let zone = k.zone.as_deref().unwrap_or("-");
    let _ = writeln!(out, "  {sign} {dest}  zone {zone}: {} flow(s)", g.flows);
    let detections: Vec<String> = g
        .detections
        .iter()
        .map(|((d, level), (n, _))| {
            let id = match level {
                0 => d.id().to_string(),
                l => format!("{}#{l}", d.id()),
            };
            if *n == g.flows {
                id
            } else {
                format!("{id} ({n})")
            }
        })
        .collect();
    let _ = writeln!(out, "      {sign} {}", detections.join(", "));
    let _ = writeln!(
        out,
        "      e.g. {} at {}",
        g.example,
        g.example.first_ts.eve()
    );
    let _ = writeln!(out, "      NEW: {}", k.new_why);
    let _ = writeln!(out, "      OLD: {}", k.old_why);
}

fn endpoint(k: &GroupKey) -> String {
    crate::flow::key::Endpoint {
        addr: k.server,
        port: k.port,
    }
    .to_string()
}

/// The same facts as one JSON document.
pub fn json(report: &TrialReport, new: &RuleSet, names: Names<'_>) -> Value {
    let Some(c) = &report.comparison else {
        return Value::Null;
    };
    let groups = |change| -> Vec<Value> {
        sorted(c, change)
            .into_iter()
            .map(|(k, g)| {
                let detections: Vec<Value> = g
                    .detections
                    .iter()
                    .map(|((d, level), (n, sev))| {
                        json!({"detection": d.id(), "level": level, "severity": sev.get(), "flows": n})
                    })
                    .collect();
                json!({
                    "flows": g.flows,
                    "detections": detections,
                    "proto": proto_name(k.proto),
                    "dest_ip": k.server.to_string(),
                    "dest_port": k.port,
                    "app_proto": k.app_proto,
                    "name": k.name,
                    "zone": k.zone,
                    "new": k.new_why,
                    "old": k.old_why,
                    "example": flow_json(&g.example),
                })
            })
            .collect()
    };
    let entry_json = |e: &AllowEntry, u: &EntryUsage| {
        json!({
            "entry": e.label(),
            "file": e.file.as_ref(),
            "line": e.line,
            "flows": u.flows,
            "bytes": u.bytes,
            "expires": e.expires.as_ref().map(|x| x.text.clone()),
            "near_misses": u.near_misses,
            "near_miss_example": u.miss_example.as_ref().map(|(f, why)| json!({"flow": flow_json(f), "why": why})),
            "alerting_flows": u.alerting,
            "alerting_example": u.alerting_example.as_ref().map(|(f, ds)| json!({
                "flow": flow_json(f),
                "detections": ds.iter().map(|d| d.id()).collect::<Vec<_>>(),
            })),
        })
    };
    let pick = |f: &dyn Fn(&EntryUsage) -> bool| -> Vec<Value> {
        entries(report, new)
            .filter(|(_, u)| f(u))
            .map(|(e, u)| entry_json(e, u))
            .collect()
    };
    json!({
        "new_rules": names.new,
        "old_rules": names.old,
        "flows": report.usage.flows,
        "alerts": {"new": c.new_alerts, "old": c.old_alerts},
        "appears": groups(Change::Appears),
        "disappears": groups(Change::Disappears),
        "ungrouped": c.groups_dropped,
        "dead_entries": pick(&|u| u.flows == 0),
        "near_misses": pick(&|u| u.flows > 0 && u.near_misses > 0),
        "permitted_but_alerted": pick(&|u| u.alerting > 0),
    })
}

fn flow_json(f: &FlowBrief) -> Value {
    json!({
        "flow_id": f.flow_id,
        "community_id": f.community_id,
        "timestamp": f.first_ts.eve().to_string(),
        "proto": proto_name(f.proto),
        "src_ip": f.client.addr.to_string(),
        "src_port": f.client.port,
        "dest_ip": f.server.addr.to_string(),
        "dest_port": f.server.port,
        "app_proto": f.app_proto,
        "name": f.name,
    })
}
