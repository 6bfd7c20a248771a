//! SSH and mining inside TLS, found by the shape of the TLS records, on
//! captures made with the real tools in namespaces
//! (`tests/lab/tlsshape_lab.py`): OpenSSH through stunnel4 and through
//! `openssl s_client` as ProxyCommand on 443 (an interactive session typed
//! on a pty), `ssh -N -R` through stunnel with a login back through the
//! forward, an XMRig-dialect miner over TLS timed as XMRig (the capture's
//! time stretched 100x), and benign TLS: a long poll, a push channel that
//! acknowledges its pushes, HTTPS downloads with curl. Each capture is
//! replayed with `tests/rules/tlsshape` (no pool list, no allow entries).
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_tlsshape
//! EGRESSWATCH_TLSSHAPE_CAPTURES=DIR cargo test --test netns_tlsshape   # made earlier
//! ```
//!
//! Without either variable the test passes after saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const INFERRED: &str = "tls-record-shape";
/// Detections the shape analyses can raise.
const SHAPE_DETECTIONS: &[&str] = &[
    "crypto-mining",
    "ssh-to-external",
    "ssh-nonstandard-port",
    "ssh-reverse-forward",
    "ssh-reverse-session",
    "ssh-reverse-interactive",
    "ssh-reverse-role",
    "ssh-long-lived",
];

fn captures() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("EGRESSWATCH_TLSSHAPE_CAPTURES") {
        return Some(PathBuf::from(dir));
    }
    if !harness::enabled("netns_tlsshape") {
        return None;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tlsshape-lab");
    let _ = std::fs::remove_dir_all(&out);
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/tlsshape_lab.py");
    let status = Command::new("timeout")
        .args(["--signal=TERM", "--kill-after=20", "180", "python3"])
        .arg(lab)
        .arg(&out)
        .stdin(Stdio::null())
        .status()
        .expect("run the lab");
    assert!(status.success(), "tlsshape lab failed: {status}");
    Some(out)
}

fn replay(pcap: &Path) -> Vec<Value> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/tlsshape");
    harness::replay_with(pcap, &["--rules".as_ref(), rules.as_os_str()]).expect("replay")
}

/// The shape detections raised, with their evidence.
fn alerts(events: &[Value]) -> Vec<(String, &Value)> {
    events
        .iter()
        .filter(|e| e["event_type"] == "alert")
        .filter_map(|e| {
            let d = e["egresswatch"]["detection"].as_str()?;
            SHAPE_DETECTIONS
                .contains(&d)
                .then(|| (d.to_string(), &e["egresswatch"]["evidence"]))
        })
        .collect()
}

fn has_inferred(alerts: &[(String, &Value)], detection: &str) -> bool {
    alerts.iter().any(|(d, ev)| {
        d == detection
            && ev["inferred"] == INFERRED
            && ev["packets"].as_array().is_some_and(|p| !p.is_empty())
    })
}

fn check(name: &str, truth: &Value, events: &[Value]) -> Vec<String> {
    let found = alerts(events);
    let names: Vec<&str> = found.iter().map(|(d, _)| d.as_str()).collect();
    let mut problems = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{name}: {what}; raised {names:?}"));
        }
    };
    match truth["label"].as_str() {
        Some("ssh_external") => {
            want(
                has_inferred(&found, "ssh-to-external"),
                "no inferred ssh-to-external",
            );
            want(
                !names.iter().any(|d| d.starts_with("ssh-reverse")),
                "a reverse verdict on a forward session",
            );
            want(!names.contains(&"crypto-mining"), "crypto-mining on SSH");
        }
        Some("reverse_tunnel") => {
            for d in ["ssh-reverse-forward", "ssh-reverse-session"] {
                want(has_inferred(&found, d), &format!("no inferred {d}"));
            }
            want(!names.contains(&"crypto-mining"), "crypto-mining on SSH");
        }
        Some("stratum_mining") => {
            want(
                has_inferred(&found, "crypto-mining"),
                "no inferred crypto-mining",
            );
            want(
                !names.iter().any(|d| d.starts_with("ssh")),
                "SSH on a miner",
            );
        }
        _ => want(found.is_empty(), "alerts on benign TLS"),
    }
    problems
}

#[test]
fn ssh_and_mining_inside_tls_by_record_shape() {
    let Some(dir) = captures() else {
        return;
    };
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let failures = manifest["failures"].as_array().cloned().unwrap_or_default();
    assert!(failures.is_empty(), "lab scenarios failed: {failures:?}");
    let scenarios = manifest["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 7, "every scenario captured");
    let mut problems = Vec::new();
    for sc in scenarios {
        let name = sc["name"].as_str().unwrap_or("?");
        let pcap = dir.join(format!("{name}.pcap"));
        let events = replay(&pcap);
        let tls = events
            .iter()
            .filter(|e| e["event_type"] == "flow" && e["app_proto"] == "tls")
            .count();
        assert!(tls >= 1, "{name}: no TLS flow in the capture");
        problems.extend(check(name, sc, &events));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
