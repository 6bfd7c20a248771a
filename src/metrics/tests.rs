use super::*;
use crate::analyzer::AppEvent;
use crate::event::AppRecord;
use crate::flow::key::Endpoint;
use crate::policy::{load_sources, SourceFile};
use std::collections::BTreeMap;

/// `name{labels} value` lines of an exposition, keyed by `name{labels}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn value(m: &Metrics, key: &str) -> f64 {
    *samples(&m.encode())
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}"))
}

/// (family name, type) of every `# TYPE` line.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (n, t) = l.split_once(' ')?;
            Some((n.to_string(), t.to_string()))
        })
        .collect()
}

const RULES: &str = r#"
[cluster]
internal = ["10.0.0.0/8"]
default_egress = "monitor"

[[allow]]
name = "partner"
cidrs = ["203.0.113.7/32"]
ports = [22]
protocol = "ssh"
reason = "partner"
"#;

fn rules() -> RuleSet {
    let src = vec![SourceFile {
        name: "t.toml".into(),
        text: RULES.into(),
    }];
    load_sources(src, None)
        .into_result()
        .map(|r| r.0)
        .expect("rules")
}

fn ep(s: &str) -> Endpoint {
    let sa: std::net::SocketAddr = s.parse().unwrap();
    Endpoint {
        addr: sa.ip(),
        port: sa.port(),
    }
}

fn ssh_event(dest: &str) -> Event {
    Event::App(Box::new(AppRecord {
        meta: FlowMeta {
            flow_id: 1,
            community_id: "1:x".into(),
            src: ep("10.1.2.3:40000"),
            dest: ep(dest),
            proto: 6,
            app_proto: Some("ssh"),
            input: 0,
        },
        event: AppEvent {
            ts: Timestamp::from_secs(1_700_000_000),
            event_type: "ssh",
            body: crate::json::Rendered::build(|_| {}),
            extra: None,
            dns: None,
        },
    }))
}

#[test]
fn every_family_follows_the_naming_rules() {
    let m = Metrics::new();
    m.capture("eth0");
    m.workers(2, 128);
    let text = m.encode();
    let fams = families(&text);
    assert!(fams.len() >= 30, "{} families", fams.len());
    let forbidden = [
        "instance", "job", "cluster", "ip", "src_ip", "dest_ip", "port", "host", "flow", "flow_id",
        "type",
    ];
    for (name, kind) in &fams {
        assert!(name.starts_with("egresswatch_"), "{name}");
        assert!(!name.contains(':'), "{name}");
        match kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "counter {name}"),
            "gauge" => assert!(!name.ends_with("_total"), "gauge {name}"),
            other => panic!("{name}: unexpected type {other}"),
        }
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    for key in samples(&text).keys() {
        if let Some((_, labels)) = key.split_once('{') {
            for pair in labels.trim_end_matches('}').split(',') {
                let label = pair.split('=').next().unwrap_or("");
                assert!(!forbidden.contains(&label), "{key}: label {label}");
            }
        }
    }
}

#[test]
fn known_label_values_start_at_zero() {
    let m = Metrics::new();
    let s = samples(&m.encode());
    let build_info = format!(
        "egresswatch_build_info{{revision=\"{}\",rustc=\"{}\",version=\"{}\"}}",
        crate::version::REVISION,
        crate::version::RUSTC,
        env!("CARGO_PKG_VERSION")
    );
    for key in [
        "egresswatch_alerts_total{detection=\"ssh-reverse-forward\",severity=\"high\"}",
        "egresswatch_alerts_total{detection=\"crypto-mining\",severity=\"low\"}",
        "egresswatch_decode_skipped_packets_total{reason=\"non_ip\"}",
        "egresswatch_flows_ended_total{reason=\"evicted\"}",
        "egresswatch_flows_evicted_total{kind=\"protected\"}",
        "egresswatch_alerts_total{detection=\"flow-table-pressure\",severity=\"medium\"}",
        "egresswatch_ssh_sessions_total{destination=\"allowlisted\"}",
        "egresswatch_eve_records_total{event_type=\"alert\"}",
        "egresswatch_rules_reload_failures_total",
        &build_info,
    ] {
        let want = if key.starts_with("egresswatch_build_info") {
            1.0
        } else {
            0.0
        };
        assert_eq!(s.get(key), Some(&want), "{key}");
    }
    // Interim records are not flow ends.
    assert!(!s.contains_key("egresswatch_flows_ended_total{reason=\"active\"}"));
}

#[test]
fn engine_deltas_add_up() {
    let m = Metrics::new();
    let mut a = Stats::default();
    let mut b = Stats {
        packets: 10,
        bytes: 1500,
        decoded: 9,
        flows_created: 3,
        ..Stats::default()
    };
    b.skipped[Skip::NonIp.index()] = 1;
    b.flows_ended[EndReason::Evicted as usize] = 2;
    b.flows_evicted = [2, 0, 0];
    b.flows_ended[EndReason::Active as usize] = 4;
    b.count_alert(Detection::SshReverseForward, Severity::HIGH);
    m.add_engine(&a, &b);
    a.clone_from(&b);
    b.packets = 25;
    b.count_alert(Detection::SshReverseForward, Severity::HIGH);
    m.add_engine(&a, &b);
    // A second worker adds its own.
    m.add_engine(
        &Stats::default(),
        &Stats {
            packets: 5,
            ..Stats::default()
        },
    );
    let s = samples(&m.encode());
    let get = |k: &str| s.get(k).copied().unwrap_or(f64::NAN);
    assert_eq!(get("egresswatch_processed_packets_total"), 30.0);
    assert_eq!(get("egresswatch_processed_bytes_total"), 1500.0);
    assert_eq!(
        get("egresswatch_decode_skipped_packets_total{reason=\"non_ip\"}"),
        1.0
    );
    assert_eq!(
        get("egresswatch_flows_ended_total{reason=\"evicted\"}"),
        2.0
    );
    assert_eq!(get("egresswatch_flows_evicted_total{kind=\"cheap\"}"), 2.0);
    assert_eq!(get("egresswatch_flows_evicted_total{kind=\"plain\"}"), 0.0);
    assert_eq!(get("egresswatch_flow_interim_records_total"), 4.0);
    assert_eq!(
        get("egresswatch_alerts_total{detection=\"ssh-reverse-forward\",severity=\"high\"}"),
        2.0
    );
}

#[test]
fn ssh_sessions_by_destination() {
    let m = Metrics::new();
    let shared: SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(rules()));
    let c = SshClassifier::new(shared, Arc::new(NameCache::default()));
    for dest in [
        "10.9.9.9:22",
        "203.0.113.7:22",
        "198.51.100.10:22",
        "198.51.100.10:22",
    ] {
        m.observe_event(&ssh_event(dest), Some(&c));
    }
    // The allow entry is for port 22 only.
    m.observe_event(&ssh_event("203.0.113.7:2222"), Some(&c));
    let key = |d: &str| format!("egresswatch_ssh_sessions_total{{destination=\"{d}\"}}");
    assert_eq!(value(&m, &key("internal")), 1.0);
    assert_eq!(value(&m, &key("allowlisted")), 1.0);
    assert_eq!(value(&m, &key("external")), 3.0);
    assert_eq!(
        value(&m, "egresswatch_eve_records_total{event_type=\"ssh\"}"),
        5.0
    );
}

#[test]
fn reload_metrics() {
    let m = Metrics::new();
    let r = rules();
    m.rules_loaded(&r, 100.0);
    m.rules_reloaded(false, &r, 200.0);
    assert_eq!(value(&m, "egresswatch_rules_last_reload_successful"), 0.0);
    assert_eq!(value(&m, "egresswatch_rules_reload_failures_total"), 1.0);
    assert_eq!(
        value(
            &m,
            "egresswatch_rules_last_reload_success_timestamp_seconds"
        ),
        100.0
    );
    m.rules_reloaded(true, &r, 300.0);
    assert_eq!(value(&m, "egresswatch_rules_last_reload_successful"), 1.0);
    assert_eq!(value(&m, "egresswatch_rules_reloads_total"), 2.0);
    assert_eq!(
        value(
            &m,
            "egresswatch_rules_last_reload_success_timestamp_seconds"
        ),
        300.0
    );
    assert_eq!(value(&m, "egresswatch_rules_allow_entries"), 1.0);
}

#[test]
fn textfile_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egresswatch.prom");
    let m = Metrics::new();
    let stats = Stats {
        packets: 3,
        bytes: 180,
        ..Stats::default()
    };
    m.record_replay(&stats, 2, Some(&rules()), 1.0);
    m.write_textfile(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, m.encode());
    let s = samples(&text);
    assert_eq!(
        s.get("egresswatch_capture_received_packets_total{interface=\"replay\"}"),
        Some(&5.0)
    );
    assert!(
        !text.contains("process_"),
        "no process metrics in a textfile"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "node_exporter reads it as another user"
    );
    // Only the file itself is left (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// `promtool check metrics` (Debian's `prometheus` package) on the full
/// exposition, when promtool is installed.
#[test]
fn promtool_accepts_the_exposition() {
    let m = Metrics::new().with_process_collector();
    m.capture("eth0");
    m.workers(2, 128);
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match out {
        Ok(c) => c,
        Err(_) => {
            eprintln!("promtool not installed (apt-get install prometheus): check skipped");
            return;
        }
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.encode().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool: {text}"
    );
}

#[test]
fn every_family_is_documented() {
    let doc = include_str!("../../docs/METRICS.md");
    let m = Metrics::new();
    m.capture("eth0");
    m.workers(1, 64);
    for (name, _) in families(&m.encode()) {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is not in docs/METRICS.md"
        );
    }
}

/// `promtool check rules` and `promtool test rules` on docs/alerts.yml:
/// the alerts parse, and two of them fire on series shaped like the
/// sensor's.
#[test]
fn alerting_rules_check_and_fire() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules", rules])
        .output();
    let Ok(check) = check else {
        eprintln!("promtool not installed (apt-get install prometheus): check skipped");
        return;
    };
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("alerts_test.yml");
    std::fs::write(
        &test,
        format!(
            r#"rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'egresswatch_alerts_total{{instance="s1",job="egresswatch",detection="ssh-reverse-forward",severity="high"}}'
        values: '0 0 1 1 1'
      - series: 'egresswatch_rules_last_reload_successful{{instance="s1",job="egresswatch"}}'
        values: '1 0 0 0 0'
    alert_rule_test:
      - eval_time: 1m
        alertname: EgresswatchReverseSshTunnel
        exp_alerts: []
      - eval_time: 3m
        alertname: EgresswatchReverseSshTunnel
        exp_alerts:
          - exp_labels: {{severity: critical, instance: s1, detection: ssh-reverse-forward}}
            exp_annotations:
              summary: "Reverse SSH tunnel seen by s1 (ssh-reverse-forward)"
              description: "A host inside the cluster holds an SSH connection out that carries traffic back in. Search the EVE output for event_type=alert and egresswatch.detection=ssh-reverse-forward."
      - eval_time: 4m
        alertname: EgresswatchRulesReloadFailed
        exp_alerts:
          - exp_labels: {{severity: warning, instance: s1, job: egresswatch}}
            exp_annotations:
              summary: "egresswatch on s1 rejected its new rules"
              description: "The previous rules stay in force. `egresswatch check-rules DIR` shows every error."
"#
        ),
    )
    .unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every query of docs/grafana-dashboard.json names metrics the sensor
/// exports and is valid PromQL (checked by `promtool check rules` as
/// recording rules, Grafana's variables filled in), when promtool exists.
#[test]
fn dashboard_queries_use_real_metrics() {
    let text = include_str!("../../docs/grafana-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        exprs.push(a["expr"].as_str().unwrap().to_string());
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let m = Metrics::new().with_process_collector();
    m.capture("eth0");
    m.workers(1, 64);
    let known: Vec<String> = families(&m.encode()).into_iter().map(|f| f.0).collect();
    for e in &exprs {
        let names = e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("egresswatch_") || w.starts_with("process_"));
        for n in names {
            assert!(known.iter().any(|k| k == n), "{n} in {e:?} is not exported");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_rules.yml");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$job", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    std::fs::write(&file, rules).unwrap();
    let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
    else {
        eprintln!("promtool not installed: PromQL syntax not checked");
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
