//! The shipped monitoring files: `docs/grafana-dashboard.json` and
//! `docs/alerts.yml` name only documented metrics, and every dashboard query
//! is filtered on the dashboard's `$job` and `$instance`. (`promtool test
//! rules docs/alerts_test.yml` tests the alerts themselves, in CI.)

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `name` or `name{selector}` of a metric with one of `prefixes` in
/// `text`, with its selector (empty when it has none).
fn selectors<'a>(text: &'a str, prefixes: &[&str]) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let starts_word = text[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        if !starts_word || !prefixes.iter().any(|p| rest.starts_with(p)) {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let name = &rest[..end];
        let selector = match rest[end..].strip_prefix('{') {
            Some(s) => &s[..s.find('}').expect("closed selector")],
            None => "",
        };
        found.push((name, selector));
        i += end;
    }
    found
}

/// The metric names `docs/METRICS.md` documents in its tables.
fn documented() -> BTreeSet<String> {
    let doc = read("docs/METRICS.md");
    let names: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("egresswatch_"))
        .map(String::from)
        .collect();
    assert!(names.len() > 30, "METRICS.md tables not found: {names:?}");
    names
}

fn dashboard() -> Value {
    serde_json::from_str(&read("docs/grafana-dashboard.json")).expect("the dashboard is JSON")
}

fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target has an expr");
            out.push((title.clone(), expr.to_string()));
        }
    }
    out
}

#[test]
fn dashboard_filters_every_query_on_job_and_instance() {
    let dash = dashboard();
    let queries = queries(&dash);
    assert!(queries.len() > 20, "{} queries", queries.len());
    for (title, expr) in &queries {
        let found = selectors(expr, &["egresswatch_", "process_"]);
        assert!(!found.is_empty(), "{title}: no metric in `{expr}`");
        for (name, selector) in found {
            for filter in ["job=~\"$job\"", "instance=~\"$instance\""] {
                assert!(
                    selector.split(',').any(|m| m.trim() == filter),
                    "{title}: {name} lacks {filter} in `{expr}`"
                );
            }
        }
    }
}

#[test]
fn dashboard_stats_have_units_and_no_import_inputs() {
    let dash = dashboard();
    assert!(dash.get("__inputs").is_none(), "unused __inputs");
    let text = read("docs/grafana-dashboard.json");
    assert!(
        !text.contains("DS_PROMETHEUS"),
        "a leftover input reference"
    );
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for var in ["datasource", "job", "instance"] {
        assert!(vars.contains(&var), "variable {var} missing: {vars:?}");
    }
    let stats: Vec<&Value> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] == "stat")
        .collect();
    assert!(stats.len() >= 5);
    for p in stats {
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str();
        assert!(
            unit.is_some_and(|u| !u.is_empty()),
            "stat {} has no unit",
            p["title"]
        );
    }
}

#[test]
fn dashboard_and_alerts_name_documented_metrics() {
    let known = documented();
    let mut named = BTreeSet::new();
    for (_, expr) in queries(&dashboard()) {
        named.extend(
            selectors(&expr, &["egresswatch_"])
                .into_iter()
                .map(|s| s.0.to_string()),
        );
    }
    let alerts = read("docs/alerts.yml");
    let exprs: String = alerts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| !l.contains("summary:") && !l.contains("description:"))
        .collect::<Vec<_>>()
        .join("\n");
    let in_alerts: Vec<&str> = selectors(&exprs, &["egresswatch_"])
        .into_iter()
        .map(|s| s.0)
        .collect();
    for required in [
        "egresswatch_capture_up",
        "egresswatch_eve_records_lost_total",
        "egresswatch_capture_dropped_packets_total",
    ] {
        assert!(in_alerts.contains(&required), "no alert on {required}");
    }
    named.extend(in_alerts.iter().map(|s| s.to_string()));
    for name in named {
        assert!(known.contains(&name), "{name} is not in docs/METRICS.md");
    }
}

#[test]
fn selectors_are_found() {
    let s = selectors(
        "sum(rate(egresswatch_a_total{job=~\"$job\"}[5m])) / egresswatch_b + xegresswatch_c",
        &["egresswatch_"],
    );
    assert_eq!(
        s,
        vec![
            ("egresswatch_a_total", "job=~\"$job\""),
            ("egresswatch_b", "")
        ]
    );
}
