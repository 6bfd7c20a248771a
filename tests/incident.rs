//! One incident per host, end to end through `egresswatch generate` and
//! the (threaded) `egresswatch replay`: every alert about a host carries
//! the id of its host's incident, the incident records tell the kill chain
//! in order, the ids are stable (the same packets give the same ids, with
//! or without other hosts' traffic in the capture), and the inventory
//! names the workload on alerts, incidents and in `explain`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_egresswatch")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run egresswatch")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates a scenario into `dir`.
fn generate(scenario: &str, dir: &Path) -> PathBuf {
    let pcap = dir.join(format!("{scenario}.pcap"));
    ok(&run(&[
        "generate",
        scenario,
        "--out",
        pcap.to_str().unwrap(),
    ]));
    pcap
}

/// Replays `files` (one timeline) with `extra` options; the EVE records.
fn replay(files: &[&Path], extra: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(bin());
    cmd.args(["replay", "-q", "--eve", "-"]).args(extra);
    for f in files {
        cmd.arg(f);
    }
    let out = cmd.output().expect("run replay");
    ok(&out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(records: &'a [Value], t: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event_type"] == t).collect()
}

/// Host → the incident ids its alerts carry.
fn alert_ids(records: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in of_type(records, "alert") {
        let id = a["egresswatch"]["incident_id"]
            .as_str()
            .unwrap_or_else(|| panic!("alert without incident_id: {a}"));
        let host = match a["egresswatch"]["direction"].as_str() {
            Some("ingress") => &a["flow"]["dest_ip"],
            _ => &a["flow"]["src_ip"],
        };
        let host = host
            .as_str()
            .unwrap_or_else(|| a["src_ip"].as_str().unwrap());
        ids.entry(host.to_string())
            .or_default()
            .insert(id.to_string());
    }
    ids
}

/// The last incident record of each incident id.
fn latest(records: &[Value]) -> BTreeMap<String, Value> {
    of_type(records, "incident")
        .into_iter()
        .map(|r| {
            (
                r["incident"]["id"].as_str().unwrap().to_string(),
                r["incident"].clone(),
            )
        })
        .collect()
}

struct Captures {
    _dir: tempfile::TempDir,
    demo: PathBuf,
    scan: PathBuf,
    miner: PathBuf,
}

fn captures() -> Captures {
    let dir = tempfile::tempdir().unwrap();
    Captures {
        demo: generate("demo", dir.path()),
        scan: generate("scan", dir.path()),
        miner: generate("unanswered-miner", dir.path()),
        _dir: dir,
    }
}

#[test]
fn every_alert_carries_its_hosts_incident_and_the_ids_are_stable() {
    let c = captures();
    let all = replay(&[&c.demo, &c.scan, &c.miner], &[]);
    let ids = alert_ids(&all);
    let hosts: Vec<&str> = ids.keys().map(String::as_str).collect();
    assert_eq!(hosts, ["10.10.0.10", "10.10.0.21", "10.10.0.66"], "{ids:?}");
    let incidents = latest(&all);
    for (host, set) in &ids {
        assert_eq!(set.len(), 1, "{host}: one incident, got {set:?}");
        let id = set.iter().next().unwrap();
        assert!(id.starts_with("ewi-"), "{id}");
        let inc = incidents
            .get(id)
            .unwrap_or_else(|| panic!("{host}: no incident record for {id}"));
        assert_eq!(inc["host"], host.as_str());
        let alerts = of_type(&all, "alert")
            .into_iter()
            .filter(|a| a["egresswatch"]["incident_id"] == id.as_str())
            .count();
        // Records are written when the incident opens or grows, so the
        // last one counts at least the alerts up to its last growth.
        let counted = inc["alerts"].as_u64().unwrap();
        assert!(counted >= 1 && counted <= alerts as u64, "{host}: {inc}");
    }
    // Ids differ between hosts.
    let distinct: BTreeSet<_> = ids.values().flatten().collect();
    assert_eq!(distinct.len(), 3);

    // The same packets give the same ids: again, and with the demo alone.
    assert_eq!(alert_ids(&replay(&[&c.demo, &c.scan, &c.miner], &[])), ids);
    let alone = alert_ids(&replay(&[&c.demo], &[]));
    assert_eq!(alone["10.10.0.10"], ids["10.10.0.10"]);
}

#[test]
fn the_demo_incident_tells_the_kill_chain_in_order() {
    let c = captures();
    let records = replay(&[&c.demo], &[]);
    let incidents = latest(&records);
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let inc = incidents.values().next().unwrap();
    assert_eq!(inc["host"], "10.10.0.10");
    assert_eq!(inc["zone"], "gpu-training");
    assert_eq!(inc["stage"], "impact");
    let tactics: Vec<&str> = inc["tactics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // Discovery, lateral movement (T1021.004), command and control, impact.
    assert_eq!(tactics, ["TA0007", "TA0008", "TA0011", "TA0040"]);
    let detections: Vec<&str> = inc["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(detections.first(), Some(&"internal-discovery"));
    assert_eq!(detections.last(), Some(&"crypto-mining"));
    for d in [
        "ssh-reverse-forward",
        "ssh-reverse-session",
        "ssh-reverse-interactive",
    ] {
        assert!(detections.contains(&d), "{d} in {detections:?}");
    }
    assert_eq!(
        inc["signature_ids"].as_array().unwrap().len(),
        detections.len()
    );
    assert_eq!(inc["score"], 100);
    assert_eq!(inc["severity"], 1);
    // Opened once, then only grown.
    let changes: Vec<&str> = of_type(&records, "incident")
        .iter()
        .map(|r| r["incident"]["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes[0], "opened");
    assert!(changes[1..].iter().all(|c| *c == "grew"), "{changes:?}");
    // The incident record comes before the alert it was written for.
    let first_incident = records.iter().position(|r| r["event_type"] == "incident");
    let first_alert = records.iter().position(|r| r["event_type"] == "alert");
    assert!(first_incident < first_alert);
}

#[test]
fn a_short_window_splits_a_host_into_several_incidents() {
    let c = captures();
    // The demo's discovery (12:00:05) and tunnel (12:00:30) are 25 s apart.
    let records = replay(&[&c.demo], &["--incident-window-seconds", "10"]);
    let ids = alert_ids(&records);
    assert!(ids["10.10.0.10"].len() >= 2, "{ids:?}");
}

#[test]
fn the_inventory_names_the_workload_and_a_broken_one_names_its_line() {
    let c = captures();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pods.csv");
    std::fs::write(
        &csv,
        "address,node,namespace,pod,job,owner\n\
         10.10.0.66,gpu-03,ml,notebook-5f7,,mallory\n\
         10.10.0.0/16,,,,,gpu-pool\n",
    )
    .unwrap();
    let records = replay(
        &[&c.scan, &c.miner],
        &["--inventory", csv.to_str().unwrap()],
    );
    let alerts = of_type(&records, "alert");
    assert!(!alerts.is_empty());
    for a in &alerts {
        let w = &a["egresswatch"]["workload"];
        match a["src_ip"].as_str().unwrap() {
            "10.10.0.66" => {
                assert_eq!(w["pod"], "notebook-5f7", "{a}");
                assert_eq!(w["namespace"], "ml");
                assert_eq!(w["owner"], "mallory");
            }
            // The prefix names the owner of every other host.
            _ => assert_eq!(w["owner"], "gpu-pool", "{a}"),
        }
    }
    for inc in latest(&records).values() {
        assert!(inc["workload"]["owner"].is_string(), "{inc}");
    }

    // JSON lines (jq -c) work the same way.
    let jsonl = dir.path().join("jobs.json");
    std::fs::write(
        &jsonl,
        "{\"address\":\"10.10.0.21\",\"node\":\"cn021\",\"job\":4711,\"owner\":\"bob\"}\n",
    )
    .unwrap();
    let records = replay(&[&c.miner], &["--inventory", jsonl.to_str().unwrap()]);
    let a = of_type(&records, "alert")[0];
    assert_eq!(a["egresswatch"]["workload"]["job"], "4711");

    // explain names the source's workload.
    let out = run(&[
        "explain",
        "--inventory",
        csv.to_str().unwrap(),
        "--from",
        "10.10.0.66",
        "--to",
        "198.51.100.1:22",
        "--protocol",
        "ssh",
    ]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pod ml/notebook-5f7 on gpu-03, owner mallory"),
        "{text}"
    );

    // A broken file: a configuration error naming the file and the line.
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "address,pod\n10.0.0.1,a\n10.0.0.x,b\n").unwrap();
    let out = run(&[
        "replay",
        "-q",
        "--inventory",
        broken.to_str().unwrap(),
        c.miner.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", broken.display())), "{err}");
}

#[test]
fn replay_tells_the_incidents_first_and_counts_them_in_metrics() {
    let c = captures();
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("m.prom");
    let out = run(&[
        "replay",
        "--metrics-file",
        prom.to_str().unwrap(),
        c.demo.to_str().unwrap(),
        c.miner.to_str().unwrap(),
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let story = err.find("Incidents (2):").expect("the story");
    let summary = err.find("packets, ").expect("the summary");
    assert!(story < summary, "{err}");
    assert!(err.contains("discovery"), "{err}");
    let metrics = std::fs::read_to_string(&prom).unwrap();
    // The miner's capture is a year after the demo's: by then the demo's
    // incident had gone quiet for longer than the window and was closed.
    assert!(
        metrics.contains("egresswatch_incidents_open{severity=\"high\",zone=\"gpu-training\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("egresswatch_incidents_opened_total 2"),
        "{metrics}"
    );
}
