//! The live sensor on real traffic: `tests/lab/sensor_lab.py` runs
//! `egresswatch capture` on the namespace lab's span port while real
//! OpenSSH opens a reverse tunnel and a login comes back through it, a real
//! Prometheus server scrapes the sensor, the rules are reloaded (a broken
//! set, then a good one) and the sensor is stopped with SIGTERM; and, on a
//! plain veth pair, tcpreplay pushes traffic at increasing rates, and once
//! at its top rate into the af-packet fanout. These tests judge what it
//! recorded.
//!
//! They need root (network namespaces, sshd, tcpdump-free capture,
//! Debian's `prometheus` and `tcpreplay`) and take about two minutes:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_sensor -- --test-threads=1
//! ```
//!
//! Without `EGRESSWATCH_NETNS=1` (or not as root) every test here passes
//! after saying it skipped.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

#[path = "lab/harness.rs"]
mod harness;

fn enabled(what: &str) -> bool {
    harness::enabled(&format!("netns_sensor {what}"))
}

type Run = harness::SensorRun;

fn run_lab(mode: &str, extra: &[&str]) -> Result<Run, String> {
    harness::sensor_lab("netns_sensor", mode, extra)
}

static LIVE: OnceLock<Option<Result<Run, String>>> = OnceLock::new();
static LOAD: OnceLock<Option<Result<Run, String>>> = OnceLock::new();

fn live() -> Option<&'static Run> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/lab");
    let run = LIVE.get_or_init(|| {
        enabled("live").then(|| run_lab("live", &["--rules", &rules.display().to_string()]))
    });
    match run.as_ref()? {
        Ok(run) => Some(run),
        Err(e) => panic!("{e}"),
    }
}

fn load() -> Option<&'static Run> {
    let run = LOAD.get_or_init(|| enabled("load").then(|| run_lab("load", &[])));
    match run.as_ref()? {
        Ok(run) => Some(run),
        Err(e) => panic!("{e}"),
    }
}

/// A metrics snapshot taken during the live run.
fn snapshot<'a>(run: &'a Run, name: &str) -> &'a serde_json::Map<String, Value> {
    run.result["snapshots"][name]
        .as_object()
        .unwrap_or_else(|| panic!("no snapshot {name} in {}", run.dir.display()))
}

fn metric(run: &Run, snap: &str, key: &str) -> f64 {
    snapshot(run, snap)
        .get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("snapshot {snap} has no {key}"))
}

/// EVE `timestamp`-style text to Unix seconds (UTC, `+0000`).
fn eve_secs(ts: &str) -> f64 {
    let parse =
        |r: std::ops::Range<usize>| -> i64 { ts.get(r).and_then(|s| s.parse().ok()).unwrap() };
    let (y, mo, d) = (parse(0..4), parse(5..7), parse(8..10));
    let (h, mi) = (parse(11..13), parse(14..16));
    let secs: f64 = ts.get(17..26).and_then(|s| s.parse().ok()).unwrap();
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + h * 3600 + mi * 60) as f64 + secs
}

fn to(ev: &Value, ip: &str, port: u64) -> bool {
    let ev = harness::flow_endpoints(ev);
    ev["dest_ip"] == ip && ev["dest_port"].as_u64() == Some(port)
}

const EXTERNAL: &str = "198.51.100.10";

#[test]
fn sensor_runs_without_privileges_and_stops_cleanly() {
    let Some(run) = live() else { return };
    let st = &run.result["sensor_status"];
    let uid = st["Uid"].as_str().unwrap_or("");
    assert!(
        uid.split_whitespace().all(|u| u == "65534"),
        "not running as nobody: {st}"
    );
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(st[set], "0000000000000000", "{set}: {st}");
    }
    assert_eq!(st["NoNewPrivs"], "1", "{st}");
    assert_eq!(run.result["exit_code"], 0, "exit code after SIGTERM");
    let secs = run.result["shutdown_seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(secs < 5.0, "took {secs} s to stop");
}

#[test]
fn live_reverse_tunnel_is_detected() {
    let Some(run) = live() else { return };
    let alerts: Vec<&str> = run
        .eve
        .iter()
        .filter(|e| e["event_type"] == "alert" && to(e, EXTERNAL, 22))
        .filter_map(|e| e["egresswatch"]["detection"].as_str())
        .collect();
    for want in [
        "ssh-reverse-forward",
        "ssh-reverse-session",
        "ssh-to-external",
    ] {
        assert!(
            alerts.contains(&want),
            "no {want} alert; alerts: {alerts:?}"
        );
    }
    let tunnel_port = run
        .eve
        .iter()
        .find(|e| {
            e["event_type"] == "alert" && e["egresswatch"]["detection"] == "ssh-reverse-forward"
        })
        .and_then(|e| harness::flow_endpoints(e)["src_port"].as_u64());
    let ssh = run
        .eve
        .iter()
        .find(|e| e["event_type"] == "ssh" && e["src_port"].as_u64() == tunnel_port);
    let ssh = ssh.unwrap_or_else(|| panic!("no ssh record for the tunnel"));
    let banner = ssh["ssh"]["client"]["software_version"]
        .as_str()
        .unwrap_or("");
    assert!(banner.starts_with("OpenSSH"), "client banner {banner:?}");
    // The tunnel was closed during the run: its flow record is complete.
    let flows: Vec<&Value> = run
        .eve
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["src_port"].as_u64() == tunnel_port)
        .collect();
    assert_eq!(flows.len(), 1, "tunnel flow records: {flows:?}");
    let f = flows[0];
    assert_eq!(f["tcp"]["state"], "closed", "{f}");
    assert!(f["flow"]["pkts_toserver"].as_u64() > Some(20), "{f}");
    assert!(f["flow"]["pkts_toclient"].as_u64() > Some(20), "{f}");
    // Nothing was lost on the way.
    for reason in ["kernel", "interface", "queue"] {
        let key = format!(
            "egresswatch_capture_dropped_packets_total{{interface=\"c0\",reason=\"{reason}\"}}"
        );
        assert_eq!(metric(run, "before_term", &key), 0.0, "{key}");
    }
    assert_eq!(
        metric(run, "before_term", "egresswatch_processed_packets_total"),
        metric(
            run,
            "before_term",
            "egresswatch_capture_received_packets_total{interface=\"c0\"}"
        )
    );
}

#[test]
fn prometheus_reads_the_alert_counter() {
    let Some(run) = live() else { return };
    let p = &run.result["prometheus"];
    assert_eq!(p["answer"]["status"], "success", "{p}");
    let value = p["answer"]["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok());
    assert!(value >= Some(1.0), "Prometheus answered {p}");
    assert_eq!(
        value,
        p["sensor_value"].as_f64(),
        "Prometheus and /metrics disagree: {p}"
    );
    assert_eq!(p["up"]["data"]["result"][0]["value"][1], "1", "{p}");
    let promtool = &run.result["promtool"];
    assert_eq!(promtool["rc"], 0, "promtool check metrics: {promtool}");
    assert_eq!(promtool["output"], "", "promtool check metrics: {promtool}");
}

#[test]
fn reload_keeps_old_rules_on_error_and_takes_new_ones_without_losing_flows() {
    let Some(run) = live() else { return };
    let m = |snap: &str, key: &str| metric(run, snap, key);
    // The broken set: counted, flagged, old rules in force.
    assert_eq!(m("after_broken", "egresswatch_rules_reloads_total"), 1.0);
    assert_eq!(
        m("after_broken", "egresswatch_rules_reload_failures_total"),
        1.0
    );
    assert_eq!(
        m("after_broken", "egresswatch_rules_last_reload_successful"),
        0.0
    );
    assert_eq!(m("after_broken", "egresswatch_rules_allow_entries"), 1.0);
    assert_eq!(
        m(
            "after_broken",
            "egresswatch_rules_last_reload_success_timestamp_seconds"
        ),
        m(
            "start",
            "egresswatch_rules_last_reload_success_timestamp_seconds"
        )
    );
    // The good set: in force.
    assert_eq!(m("after_good", "egresswatch_rules_reloads_total"), 2.0);
    assert_eq!(
        m("after_good", "egresswatch_rules_reload_failures_total"),
        1.0
    );
    assert_eq!(
        m("after_good", "egresswatch_rules_last_reload_successful"),
        1.0
    );
    assert_eq!(m("after_good", "egresswatch_rules_allow_entries"), 2.0);
    let good_at = run.result["events"]["good_reload"].as_f64().unwrap();
    let ts = m(
        "after_good",
        "egresswatch_rules_last_reload_success_timestamp_seconds",
    );
    assert!(
        (ts - good_at).abs() < 5.0,
        "reload timestamp {ts} vs {good_at}"
    );
    // It takes effect: the SSH session after it is allowlisted and raises
    // no ssh-to-external alert, while the tunnel before it did.
    assert_eq!(run.result["ssh_after_reload"], 0);
    assert_eq!(
        m(
            "before_term",
            "egresswatch_ssh_sessions_total{destination=\"allowlisted\"}"
        ),
        1.0
    );
    assert_eq!(
        m(
            "before_term",
            "egresswatch_ssh_sessions_total{destination=\"external\"}"
        ),
        1.0
    );
    let after: Vec<&Value> = run
        .eve
        .iter()
        .filter(|e| e["event_type"] == "flow" && to(e, EXTERNAL, 22))
        .filter(|e| eve_secs(e["flow"]["start"].as_str().unwrap_or("")) > good_at)
        .collect();
    assert_eq!(after.len(), 1, "SSH flows after the reload: {after:?}");
    let port = after[0]["src_port"].as_u64();
    let alerted: Vec<&Value> = run
        .eve
        .iter()
        .filter(|e| {
            e["event_type"] == "alert" && harness::flow_endpoints(e)["src_port"].as_u64() == port
        })
        .collect();
    assert!(
        alerted.is_empty(),
        "alerts for the allowlisted session: {alerted:?}"
    );
    // The connection open across both reloads is one flow, with the
    // packets from before and after them.
    let held = &run.result["held"];
    let records: Vec<&Value> = run
        .eve
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["src_port"] == held["client_port"])
        .collect();
    assert_eq!(records.len(), 1, "held connection records: {records:?}");
    let f = &records[0]["flow"];
    let broken_at = run.result["events"]["broken_reload"].as_f64().unwrap();
    let phase2 = run.result["events"]["held_phase2"].as_f64().unwrap();
    let start = eve_secs(f["start"].as_str().unwrap_or(""));
    let end = eve_secs(f["end"].as_str().unwrap_or(""));
    assert!(
        start < broken_at && end > good_at,
        "flow {start}..{end}, reloads {broken_at}, {good_at}"
    );
    assert!(
        end <= phase2 + 1.0,
        "flow end {end}, second burst done {phase2}"
    );
    // SYN, 10 messages (each acknowledged by the echo), final ACKs.
    assert!(f["pkts_toserver"].as_u64() >= Some(12), "{f}");
    assert!(f["bytes_toserver"].as_u64() >= Some(1000), "{f}");
    assert!(f["bytes_toclient"].as_u64() >= Some(1000), "{f}");
}

#[test]
fn sigterm_writes_every_open_flow() {
    let Some(run) = live() else { return };
    let held = &run.result["held"];
    let rec = run
        .eve
        .iter()
        .find(|e| e["event_type"] == "flow" && e["src_port"] == held["client_port"])
        .unwrap_or_else(|| panic!("no record of the connection open at SIGTERM"));
    assert_eq!(rec["flow"]["reason"], "shutdown", "{rec}");
    assert_eq!(rec["flow"]["state"], "established", "{rec}");
    let records = run.eve.iter().filter(|e| e["event_type"] == "flow").count() as f64;
    let created = metric(run, "before_term", "egresswatch_flows_created_total");
    assert!(created >= 3.0, "flows created {created}");
    assert!(
        records >= created,
        "{records} flow records for {created} flows created before SIGTERM"
    );
}

#[test]
fn load_reports_the_zero_drop_rate_and_honest_drops() {
    let Some(run) = load() else { return };
    assert_eq!(run.result["exit_code"], 0, "{}", run.result);
    let steps = run.result["steps"].as_array().cloned().unwrap_or_default();
    assert!(steps.len() >= 3, "only {} load steps", steps.len());
    let mut table = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        let sent = s["tcpreplay"]["sent"]
            .as_f64()
            .unwrap_or_else(|| panic!("step {i}: {s}"));
        let c = &s["sensor"];
        let get = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        let (received, kernel, iface, queue, processed) = (
            get("received"),
            get("kernel"),
            get("interface"),
            get("queue"),
            get("processed"),
        );
        let veth = s["veth_dropped"].as_f64().unwrap_or(0.0);
        // Every frame sent is either received or counted as dropped
        // somewhere (the veth itself counts its own).
        let accounted = received + kernel + iface + veth;
        let slack = (sent * 0.001).max(5.0);
        assert!(
            (accounted - sent).abs() <= slack,
            "step {i}: sent {sent}, received {received} + kernel {kernel} + interface {iface} + veth {veth}"
        );
        // Every frame received was analyzed or dropped at a queue, exactly.
        assert_eq!(processed, received - queue, "step {i}: {s}");
        table.insert(
            i,
            format!(
                "{:>8} pps requested, {:>9.0} achieved: sent {sent}, received {received}, dropped kernel {kernel} queue {queue}",
                s["requested_pps"].as_u64().map_or("top".to_string(), |r| r.to_string()),
                s["tcpreplay"]["achieved_pps"].as_f64().unwrap_or(0.0),
            ),
        );
    }
    eprintln!("netns_sensor load:");
    for line in table.values() {
        eprintln!("  {line}");
    }
    let best = run.result["highest_zero_drop_pps"].as_f64();
    eprintln!("  highest rate with zero drops: {best:?} pps");
    assert!(best.is_some(), "no rate without drops: {}", run.result);
}

static FANOUT: OnceLock<Option<Result<Run, String>>> = OnceLock::new();

/// Frames pushed at the af-packet sensor: a burst its rings hold whole
/// (about 30 MB), so no frame may be lost however slow the machine.
const FANOUT_PACKETS: &str = "50000";

fn fanout() -> Option<&'static Run> {
    let run = FANOUT.get_or_init(|| {
        enabled("fanout").then(|| run_lab("fanout", &["--packets", FANOUT_PACKETS]))
    });
    match run.as_ref()? {
        Ok(run) => Some(run),
        Err(e) => panic!("{e}"),
    }
}

/// `--capture-method af-packet --workers 2` at tcpreplay's top rate: every
/// frame received and analysed (no capture thread, no queue), both workers
/// busy, and every flow whole on one worker: the same flows, packets and
/// bytes as a replay of the capture, no flow split into more records; and
/// 400 ICMP errors each counted in the flow it quotes (the kernel's program
/// hashes the quoted addresses), none a flow of its own.
#[test]
fn af_packet_fanout_keeps_every_flow_whole_on_one_worker() {
    let Some(run) = fanout() else { return };
    let r = &run.result;
    assert_eq!(r["exit_code"], 0, "{r}");
    let sent = r["tcpreplay"]["sent"].as_f64().unwrap_or(f64::NAN);
    let errors = r["icmp_errors"]["sent"].as_f64().unwrap_or(f64::NAN);
    let get = |k: &str| r["sensor"][k].as_f64().unwrap_or(f64::NAN);
    assert_eq!(sent, FANOUT_PACKETS.parse::<f64>().unwrap(), "{r}");
    assert_eq!(errors, 800.0, "{r}");
    assert_eq!(get("received"), sent + errors, "{r}");
    assert_eq!(get("kernel") + get("queue") + get("interface"), 0.0, "{r}");
    assert_eq!(get("processed"), get("received"), "{r}");
    let ticks = |name: &str| r["threads"][name].as_f64().unwrap_or(0.0);
    let (w0, w1) = (ticks("ew-worker-0"), ticks("ew-worker-1"));
    // The fanout spreads the flows: each worker did at least a fifth.
    assert!(w0.min(w1) >= 0.2 * (w0 + w1) && w0 + w1 > 0.0, "{r}");
    let flows = &r["flows"];
    assert_eq!(flows["live_keys"], flows["replay_keys"], "{r}");
    assert_eq!(flows["live_records"], flows["replay_records"], "{r}");
    assert_eq!(r["mismatched"].as_array().map(Vec::len), Some(0), "{r}");
    eprintln!(
        "netns_sensor fanout: {sent} frames at {} pps, worker CPU ticks {w0} / {w1}, {} flows as in the replay",
        r["tcpreplay"]["achieved_pps"], flows["live_keys"]
    );
}

/// Not root-only: `replay --metrics-file` writes the families the sensor
/// serves (less `process_*`), with the replay's counts, and promtool
/// accepts the file when it is installed.
#[test]
fn replay_metrics_file_matches_the_sensor_families() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("demo.pcap");
    let prom = dir.path().join("egresswatch.prom");
    let bin = env!("CARGO_BIN_EXE_egresswatch");
    let gen = Command::new(bin)
        .args(["generate", "demo", "--out"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let out = Command::new(bin)
        .arg("replay")
        .arg(&pcap)
        .arg("--metrics-file")
        .arg(&prom)
        .args(["--eve", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let live = egresswatch::metrics::Metrics::new();
    live.capture("eth0");
    live.workers(1, 64);
    // A labelled gauge is exported once it has a series: the sensor's
    // once an incident opens, as the demo's does.
    live.set_incidents_open(&[(None, egresswatch::policy::Severity::HIGH, 1)]);
    let expected: Vec<String> = live
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect();
    assert_eq!(families, expected);
    let value = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
    };
    let eve: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |t: &str| eve.iter().filter(|e| e["event_type"] == t).count() as f64;
    assert_eq!(
        value("egresswatch_eve_records_total{event_type=\"flow\"} "),
        count("flow")
    );
    assert_eq!(
        value("egresswatch_eve_records_total{event_type=\"alert\"} "),
        count("alert")
    );
    assert!(count("alert") > 0.0, "the demo has alerts");
    let alerts: f64 = text
        .lines()
        .filter(|l| l.starts_with("egresswatch_alerts_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(alerts, count("alert"));
    assert_eq!(
        value("egresswatch_processed_packets_total "),
        value("egresswatch_capture_received_packets_total{interface=\"replay\"} ")
    );
    assert!(value("egresswatch_ssh_sessions_total{destination=\"external\"} ") >= 1.0);
    if let Ok(check) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
    {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            check.status.success() && said.trim().is_empty(),
            "promtool: {said}"
        );
    }
}
