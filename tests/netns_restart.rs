//! A sensor restarted in the middle of a live `ssh -N -R` tunnel, with the
//! real tools in namespaces (`tests/lab/restart_lab.py`): OpenSSH with
//! keepalives, a login back through the forward before and after the
//! restart, the sensor stopped with SIGTERM and started again with the same
//! `--state-file`. The second sensor knows the tunnel as SSH under the same
//! flow id and start, and raises none of its alerts again. A third sensor,
//! started without the state, picks the tunnel up mid-stream and infers it
//! from the sizes of the login back (`midstream-size-model`).
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_restart
//! ```
//!
//! Without the variable (or as a normal user) the test passes after
//! saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs the lab with `capture` added to every sensor's arguments.
fn lab(name: &str, capture: &[&str]) -> Option<PathBuf> {
    if !harness::enabled(&format!("netns_restart {name}")) {
        return None;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&out);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("timeout")
        .args(["--signal=TERM", "--kill-after=20", "120", "python3"])
        .arg(dir.join("tests/lab/restart_lab.py"))
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_egresswatch"))
        .arg(dir.join("tests/rules/restart"))
        .args(capture)
        .stdin(Stdio::null())
        .status()
        .expect("run the lab");
    let result: Value = std::fs::read_to_string(out.join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    assert!(
        status.success(),
        "restart lab failed ({status}): {}",
        result["error"]
    );
    Some(out)
}

fn eve(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("EVE written");
    harness::parse_eve(&text).expect("EVE lines")
}

/// The tunnel's final flow record: SSH to the server's port 22.
fn tunnel_flow(records: &[Value]) -> Option<&Value> {
    records
        .iter()
        .find(|r| r["event_type"] == "flow" && r["dest_ip"] == "10.84.0.20" && r["dest_port"] == 22)
}

fn alerts(records: &[Value], flow_id: &Value) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["event_type"] == "alert" && r["flow_id"] == *flow_id)
        .map(|r| {
            r["egresswatch"]["detection"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// With af-packet (the default) and four workers: the state file's flow
/// goes back to the worker whose socket the kernel's fanout gives its
/// packets.
#[test]
fn a_live_tunnel_outlives_a_sensor_restart() {
    let Some(dir) = lab("restart-lab", &["--workers", "4"]) else {
        return;
    };
    outlives_the_restart(&dir);
}

/// The same with `--capture-method pcap`.
#[test]
fn a_live_tunnel_outlives_a_restart_under_pcap() {
    let capture = ["--capture-method", "pcap", "--workers", "4"];
    let Some(dir) = lab("restart-lab-pcap", &capture) else {
        return;
    };
    outlives_the_restart(&dir);
}

fn outlives_the_restart(dir: &Path) {
    let first = eve(&dir.join("first.eve.json"));
    let second = eve(&dir.join("second.eve.json"));
    let a = tunnel_flow(&first).expect("the first sensor's tunnel record");
    let b = tunnel_flow(&second).expect("the second sensor's tunnel record");
    assert_eq!(a["app_proto"], "ssh");
    assert_eq!(b["app_proto"], "ssh", "still SSH after the restart: {b}");
    assert_eq!(b["flow_id"], a["flow_id"], "the same flow goes on");
    assert_eq!(
        b["flow"]["start"], a["flow"]["start"],
        "with its real start"
    );
    assert!(b["egresswatch"]["resumed"].as_u64() >= Some(1), "{b}");
    let before = alerts(&first, &a["flow_id"]);
    let after = alerts(&second, &a["flow_id"]);
    eprintln!("netns_restart: alerts before {before:?}, after {after:?}");
    for d in ["ssh-to-external", "ssh-reverse-forward"] {
        assert!(before.iter().any(|x| x == d), "{d} before the restart");
    }
    for d in &after {
        assert!(!before.contains(d), "{d} raised again after the restart");
    }
    let sensor_log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert!(sensor_log.contains("state file read"), "{sensor_log}");

    // Without the state: a new flow, SSH only by inference.
    let third = eve(&dir.join("third.eve.json"));
    let c = tunnel_flow(&third).expect("the third sensor's tunnel record");
    assert_ne!(c["flow_id"], a["flow_id"], "a flow of its own");
    assert_eq!(c["app_proto"], "ssh", "inferred mid-stream: {c}");
    let inferred: Vec<&Value> = third
        .iter()
        .filter(|r| r["event_type"] == "alert" && r["flow_id"] == c["flow_id"])
        .collect();
    let names: Vec<&str> = inferred
        .iter()
        .filter_map(|r| r["egresswatch"]["detection"].as_str())
        .collect();
    eprintln!("netns_restart: alerts without the state {names:?}");
    assert!(names.contains(&"ssh-reverse-session"), "{names:?}");
    assert!(inferred
        .iter()
        .all(|r| r["egresswatch"]["evidence"]["inferred"] == "midstream-size-model"));
}
