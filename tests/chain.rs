//! The per-host detections end to end, through `egresswatch generate` and
//! `egresswatch replay`: a port scan and a ping sweep raise
//! `internal-discovery` (and escalate), Prometheus-like scraping raises
//! nothing, a miner nobody answers and a mining pool's DNS lookup raise
//! `crypto-mining`.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_egresswatch")
}

/// Generates `scenario` and replays it with the shipped rules; the alerts.
fn alerts(scenario: &str, dir: &Path) -> Vec<Value> {
    let pcap = dir.join(format!("{scenario}.pcap"));
    let eve = dir.join(format!("{scenario}.eve.json"));
    let gen = Command::new(bin())
        .args(["generate", scenario, "--out"])
        .arg(&pcap)
        .output()
        .expect("run generate");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let replay = Command::new(bin())
        .args(["replay", "-q", "--eve"])
        .arg(&eve)
        .arg(&pcap)
        .output()
        .expect("run replay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    std::fs::read_to_string(&eve)
        .expect("eve")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|r| r["event_type"] == "alert")
        .collect()
}

fn of<'a>(alerts: &'a [Value], detection: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["egresswatch"]["detection"] == detection)
        .collect()
}

#[test]
fn scan_raises_internal_discovery_and_escalates() {
    let dir = tempfile::tempdir().unwrap();
    let all = alerts("scan", dir.path());
    let found = of(&all, "internal-discovery");
    assert!(found.len() >= 2, "{found:?}");
    let first = found[0];
    assert_eq!(first["src_ip"], "10.10.0.66");
    assert_eq!(first["alert"]["signature_id"], 1_750_011);
    assert_eq!(first["alert"]["severity"], 2);
    assert_eq!(found[1]["alert"]["severity"], 1, "escalated at 10x");
    let d = &first["egresswatch"]["discovery"];
    assert_eq!(d["kind"], "port-scan");
    assert_eq!(d["window_seconds"], 300);
    assert!(d["refused"].as_u64().unwrap() >= 29, "{d}");
    assert_eq!(d["sample_ports"].as_array().unwrap().len(), 16);
    assert_eq!(first["egresswatch"]["mitre"], serde_json::json!(["T1046"]));
    assert!(of(&all, "crypto-mining").is_empty());
}

#[test]
fn scraping_raises_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let all = alerts("scraping", dir.path());
    assert!(all.is_empty(), "{all:?}");
}

#[test]
fn unanswered_and_refused_miners_raise_crypto_mining() {
    let dir = tempfile::tempdir().unwrap();
    let all = alerts("unanswered-miner", dir.path());
    let found = of(&all, "crypto-mining");
    assert_eq!(found.len(), 2, "{found:?}");
    let text: Vec<&str> = found
        .iter()
        .map(|a| a["egresswatch"]["evidence"]["summary"].as_str().unwrap())
        .collect();
    assert!(
        text.iter().any(|t| t.contains("attempt (unanswered)")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("attempt (refused)")),
        "{text:?}"
    );
}

#[test]
fn pool_lookup_raises_crypto_mining() {
    let dir = tempfile::tempdir().unwrap();
    let all = alerts("pool-lookup", dir.path());
    let found = of(&all, "crypto-mining");
    assert_eq!(found.len(), 1, "{all:?}");
    assert_eq!(found[0]["src_ip"], "10.10.0.22");
    let summary = found[0]["egresswatch"]["evidence"]["summary"]
        .as_str()
        .unwrap();
    assert!(
        summary.contains("DNS lookup of `xmr-eu1.nanopool.org`"),
        "{summary}"
    );
}
