//! A SYN flood against the flow table (`tests/lab/sensor_lab.py flood`):
//! on the lab topology the sensor captures the span port with a table of
//! 1,000 flows while real OpenSSH logs in from the cluster to the external
//! host and stays connected; then 20,000 spoofed SYNs
//! (`egresswatch generate flood`) are replayed with tcpreplay from the
//! cluster. The quiet, identified SSH session must survive the flood
//! (cheap flows are evicted first), the evictions must be counted by kind,
//! and the flood must raise exactly one `flow-table-pressure` alert.
//!
//! Root only, about 35 s:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_flood -- --test-threads=1
//! ```
//!
//! Without `EGRESSWATCH_NETNS=1` (or not as root) the test passes after
//! saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use harness::{metric, num, records};

/// `FLOOD_SYNS` and `FLOOD_CAPACITY` of sensor_lab.py.
const SYNS: f64 = 20_000.0;
const CAPACITY: f64 = 1_000.0;

#[test]
fn a_syn_flood_evicts_cheap_flows_not_the_ssh_session() {
    let Some(run) = harness::sensor_lab_for("netns_flood", "flood", &[]) else {
        return;
    };
    let r = &run.result;
    assert_eq!(
        num(&r["tcpreplay"]["sent"], "SYNs sent"),
        SYNS,
        "{}",
        r["tcpreplay"]
    );
    let after = &r["after"];
    let m = |name: &str| metric(after, name);
    eprintln!(
        "netns_flood: evicted cheap {} plain {} protected {}, ended idle {}, created {}",
        m("egresswatch_flows_evicted_total{kind=\"cheap\"}"),
        m("egresswatch_flows_evicted_total{kind=\"plain\"}"),
        m("egresswatch_flows_evicted_total{kind=\"protected\"}"),
        m("egresswatch_flows_ended_total{reason=\"idle\"}"),
        m("egresswatch_flows_created_total"),
    );
    assert_eq!(
        m("egresswatch_capture_dropped_packets_total"),
        0.0,
        "capture loss"
    );

    // The SSH session: one flow record, identified, written at shutdown
    // (it was open all along), never evicted.
    let outer = &r["outer"];
    let flows = records(&run.eve, outer, "flow");
    assert_eq!(
        flows.len(),
        1,
        "flow records of the SSH session: {flows:#?}"
    );
    let f = flows[0];
    assert_eq!(f["app_proto"], "ssh", "{f}");
    assert_eq!(f["egresswatch"]["end_reason"], "shutdown", "{f}");
    assert_eq!(records(&run.eve, outer, "ssh").len(), 1, "ssh records");

    // Evictions by kind: every one a cheap flow of the flood; none
    // protected, none plain.
    let cheap = m("egresswatch_flows_evicted_total{kind=\"cheap\"}");
    assert_eq!(
        m("egresswatch_flows_evicted_total{kind=\"protected\"}"),
        0.0
    );
    assert_eq!(m("egresswatch_flows_evicted_total{kind=\"plain\"}"), 0.0);
    assert_eq!(
        cheap,
        m("egresswatch_flows_ended_total{reason=\"evicted\"}"),
        "evictions by kind add up"
    );
    // The flood made SYNS flows (and the session one); the table held
    // CAPACITY: the rest were evicted, unless they went idle first.
    let created = m("egresswatch_flows_created_total");
    assert_eq!(created, SYNS + 1.0, "flows created");
    let idle = m("egresswatch_flows_ended_total{reason=\"idle\"}");
    assert_eq!(
        cheap + idle,
        created - 1.0,
        "every flood flow ended, evicted or idle"
    );
    assert!(cheap >= SYNS - CAPACITY - idle, "cheap evictions: {cheap}");
    assert!(cheap >= SYNS / 2.0, "the flood hardly evicted: {cheap}");

    // One episode, one alert, in the metrics and in the EVE output.
    assert_eq!(
        m("egresswatch_alerts_total{detection=\"flow-table-pressure\""),
        1.0,
        "flow-table-pressure alerts counted"
    );
    let pressure: Vec<_> = run
        .eve
        .iter()
        .filter(|e| {
            e["event_type"] == "alert" && e["egresswatch"]["detection"] == "flow-table-pressure"
        })
        .collect();
    assert_eq!(
        pressure.len(),
        1,
        "flow-table-pressure alerts: {pressure:#?}"
    );
    let summary = pressure[0].to_string();
    assert!(summary.contains("protected 0"), "{summary}");
    assert_eq!(r["exit_code"], 0, "exit after SIGTERM: {r}");
}
