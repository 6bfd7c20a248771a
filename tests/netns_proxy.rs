//! Protocols inside proxies on real traffic: `tests/lab/proxy_lab.py`
//! runs OpenSSH through tinyproxy (HTTP CONNECT, `nc -X connect`), danted
//! (SOCKS5, `nc -X 5`) and haproxy (PROXY v1 and v2 headers), the reverse
//! tunnel `ssh -N -R` with a login typed back through it, and curl's HTTPS
//! through tinyproxy, in namespaces `ewpx-*` (10.81.0.0/16), capturing at
//! the router. Each capture is replayed with `tests/rules/proxy-lab`, which
//! allows the proxies themselves.
//!
//! Needs root; about 30 s:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_proxy -- --test-threads=1
//! ```

#[path = "lab/harness.rs"]
mod harness;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn run_lab() -> Result<PathBuf, String> {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("netns-proxy-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/proxy_lab.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !dir.join("manifest.json").exists() {
        return Err(format!("the proxy lab wrote no manifest (exit {status})"));
    }
    Ok(dir)
}

fn replay(pcap: &Path) -> Vec<Value> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/proxy-lab");
    harness::replay_with(pcap, &["--rules".as_ref(), rules.as_os_str()]).expect("replay")
}

/// The flow of the proxied connection: the client's flow to the proxy
/// port (SSH or curl), not the lab's own control traffic.
fn proxied_flow<'a>(eve: &'a [Value], via: &str) -> Option<&'a Value> {
    eve.iter().find(|r| {
        r["event_type"] == "flow" && r["egresswatch"]["tunnel"]["layers"][0]["via"] == via
    })
}

fn detections(eve: &[Value], flow_id: &Value) -> Vec<String> {
    eve.iter()
        .filter(|r| r["event_type"] == "alert" && &r["flow_id"] == flow_id)
        .filter_map(|r| r["egresswatch"]["detection"].as_str().map(String::from))
        .collect()
}

/// What one capture must show; the problems found.
fn check(entry: &Value, eve: &[Value]) -> Vec<String> {
    let name = entry["scenario"].as_str().unwrap_or("?");
    let via = entry["via"].as_str().unwrap_or("?");
    let Some(flow) = proxied_flow(eve, via) else {
        return vec![format!("{name}: no flow with a {via} tunnel")];
    };
    let found = detections(eve, &flow["flow_id"]);
    let has = |d: &str| found.iter().any(|f| f == d);
    let mut bad = Vec::new();
    let kind = entry["kind"].as_str().unwrap_or("");
    let want_app = if kind == "benign" { "tls" } else { "ssh" };
    if flow["app_proto"] != want_app {
        bad.push(format!(
            "{name}: app_proto {} (want {want_app})",
            flow["app_proto"]
        ));
    }
    let tunnel = &flow["egresswatch"]["tunnel"];
    if via != "proxy-v1" && via != "proxy-v2" && tunnel["target_host"] != "10.81.2.10" {
        bad.push(format!("{name}: tunnel {tunnel}"));
    }
    match kind {
        "forward" => {
            if !has("ssh-to-external") {
                bad.push(format!("{name}: no ssh-to-external in {found:?}"));
            }
            if found.iter().any(|d| d.starts_with("ssh-reverse")) {
                bad.push(format!(
                    "{name}: reverse verdict on a forward session: {found:?}"
                ));
            }
        }
        "reverse" => {
            for d in [
                "ssh-to-external",
                "ssh-reverse-forward",
                "ssh-reverse-session",
            ] {
                if !has(d) {
                    bad.push(format!("{name}: no {d} in {found:?}"));
                }
            }
        }
        _ => {
            if !found.is_empty() {
                bad.push(format!(
                    "{name}: HTTPS through an allowed proxy alerted: {found:?}"
                ));
            }
        }
    }
    let ssh = eve
        .iter()
        .any(|r| r["event_type"] == "ssh" && r["flow_id"] == flow["flow_id"]);
    if want_app == "ssh" && !ssh {
        bad.push(format!("{name}: no ssh record"));
    }
    bad
}

#[test]
fn proxied_sessions_are_judged_as_direct() {
    if !harness::enabled("netns_proxy") {
        return;
    }
    let dir = run_lab().expect("proxy lab");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let failures = manifest["failures"].as_array().cloned().unwrap_or_default();
    assert!(
        failures.is_empty(),
        "lab scenarios failed: {failures:?}\n{}",
        manifest["logs"]
    );
    let captures = manifest["captures"].as_array().cloned().unwrap_or_default();
    assert_eq!(captures.len(), 7, "{manifest}");
    let mut bad = Vec::new();
    for entry in &captures {
        let eve = replay(&dir.join(entry["file"].as_str().unwrap()));
        bad.extend(check(entry, &eve));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
