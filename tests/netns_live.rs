//! The live sensor on a real interface: while the namespace lab opens a
//! reverse tunnel with a login back through it (and, separately, mines in
//! the clear), `egresswatch capture` listens on the router's cluster-facing
//! veth — the lab's span port — and is stopped with SIGTERM after each
//! scenario. Its EVE output must have the alerts and complete flow records,
//! and say the same about each session as a replay of tcpdump's capture of
//! the same traffic (live and replay differ only in the packet source).
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_live -- --test-threads=1
//! ```
//!
//! Without it (or not as root) every test passes after saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use harness::{detections, parse_eve, records, Lab};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const SCENARIOS: &[&str] = &["rev_login_ok-chacha20", "mining_stratum-3333"];

struct Live {
    lab: Lab,
    /// Scenario -> the sensor's EVE records.
    live: Vec<(String, Result<Vec<Value>, String>)>,
}

static LIVE: OnceLock<Option<Result<Live, String>>> = OnceLock::new();

fn live() -> Option<&'static Result<Live, String>> {
    LIVE.get_or_init(|| {
        if !harness::enabled("netns_live") {
            return None;
        }
        let cmd = format!(
            "{} capture --interface {{iface}} --eve {{out}}",
            env!("CARGO_BIN_EXE_egresswatch")
        );
        let mut args: Vec<String> =
            vec!["--live-cmd".into(), cmd, "--live-ready".into(), "3".into()];
        args.extend(SCENARIOS.iter().map(|s| s.to_string()));
        Some(
            harness::run_lab("netns_live", &args)
                .and_then(|dir| harness::load(&dir, None))
                .map(|lab| {
                    let live = lab
                        .captures
                        .iter()
                        .map(|(name, cap)| {
                            let path: PathBuf = lab
                                .dir
                                .join(cap.entry["live"]["output"].as_str().unwrap_or(""));
                            let eve = std::fs::read_to_string(&path)
                                .map_err(|e| format!("{}: {e}", path.display()))
                                .and_then(|t| parse_eve(&t));
                            (name.clone(), eve)
                        })
                        .collect();
                    Live { lab, live }
                }),
        )
    })
    .as_ref()
}

fn with_live(scenario: &str, check: impl Fn(&Value, &[Value], &[Value]) -> Vec<String>) {
    let Some(live) = live() else { return };
    let live = live
        .as_ref()
        .unwrap_or_else(|e| panic!("namespace lab failed: {e}"));
    let failures = live.lab.manifest["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        failures.is_empty(),
        "lab scenarios failed (a non-zero sensor exit is one): {failures:#?}"
    );
    let cap = live
        .lab
        .captures
        .get(scenario)
        .unwrap_or_else(|| panic!("no capture of {scenario}"));
    let live_eve = live
        .live
        .iter()
        .find(|(n, _)| n == scenario)
        .map(|(_, e)| e.clone())
        .unwrap_or_else(|| Err("no live output".into()))
        .unwrap_or_else(|e| panic!("{scenario}: live sensor output: {e}"));
    let replay = cap
        .eve
        .as_ref()
        .unwrap_or_else(|e| panic!("{scenario}: replay: {e}"));
    let problems = check(&cap.entry, &live_eve, replay);
    assert!(problems.is_empty(), "{scenario}:\n{}", problems.join("\n"));
}

/// The flow record the sensor wrote at SIGTERM (or before) is complete: the
/// connection ended inside the scenario, so it is closed, with both
/// directions counted as in the replay.
fn flow_complete(entry: &Value, live: &[Value], replay: &[Value]) -> Vec<String> {
    let outer = &entry["outer"];
    let mut out = Vec::new();
    let finals = |evs: &[Value]| -> Vec<Value> {
        records(evs, outer, "flow")
            .into_iter()
            .filter(|f| f["egresswatch"]["interim"] != true)
            .cloned()
            .collect()
    };
    let (l, r) = (finals(live), finals(replay));
    if l.len() != 1 {
        out.push(format!("{} final flow records live, expected 1", l.len()));
        return out;
    }
    let f = &l[0];
    if f["flow"]["state"] != "closed" {
        out.push(format!(
            "live flow state {}, the connection was closed",
            f["flow"]["state"]
        ));
    }
    if let Some(rf) = r.first() {
        for k in [
            "pkts_toserver",
            "pkts_toclient",
            "bytes_toserver",
            "bytes_toclient",
        ] {
            if f["flow"][k] != rf["flow"][k] {
                out.push(format!(
                    "live flow.{k} {} but replay {}",
                    f["flow"][k], rf["flow"][k]
                ));
            }
        }
        if f["app_proto"] != rf["app_proto"] {
            out.push(format!(
                "live app_proto {} but replay {}",
                f["app_proto"], rf["app_proto"]
            ));
        }
    } else {
        out.push("no final flow record in the replay".into());
    }
    out
}

/// Which inferences are made (not the packet numbers and times they cite:
/// the sensor and tcpdump timestamp the same packets a few microseconds
/// apart, and packet numbers count from the start of each input).
fn inference_summary(ssh: &Value) -> Vec<String> {
    ssh["inferences"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| match v {
                    Value::String(outcome) => format!("{k}={outcome}"),
                    _ => k.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn live_sensor_catches_reverse_tunnel_and_login_back() {
    with_live("rev_login_ok-chacha20", |entry, live, replay| {
        let outer = &entry["outer"];
        let mut out = flow_complete(entry, live, replay);
        let found = detections(live, outer);
        for d in ["ssh-reverse-forward", "ssh-reverse-session"] {
            if !found.iter().any(|f| f == d) {
                out.push(format!("no {d} alert live (alerts: {found:?})"));
            }
        }
        let (l, r) = (records(live, outer, "ssh"), records(replay, outer, "ssh"));
        match (l.first(), r.first()) {
            (Some(l), Some(r)) => {
                let (li, ri) = (
                    inference_summary(&l["egresswatch"]["ssh"]),
                    inference_summary(&r["egresswatch"]["ssh"]),
                );
                if li != ri {
                    out.push(format!("live inferences {li:?} differ from replay {ri:?}"));
                }
                if l["egresswatch"]["ssh"]["inferences"]["reverse_session"].is_null() {
                    out.push("live: no reverse_session".into());
                }
            }
            _ => out.push(format!("ssh records: {} live, {} replay", l.len(), r.len())),
        }
        out
    });
}

#[test]
fn live_sensor_catches_mining() {
    with_live("mining_stratum-3333", |entry, live, replay| {
        let outer = &entry["outer"];
        let mut out = flow_complete(entry, live, replay);
        if !detections(live, outer).iter().any(|d| d == "crypto-mining") {
            out.push("no crypto-mining alert live".into());
        }
        out
    });
}
