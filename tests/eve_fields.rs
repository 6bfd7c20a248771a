//! The EVE records stay inside Suricata's schema (`etc/schema.json` of
//! OISF/suricata, whose objects allow no other keys): the field names each
//! object may hold are listed here by hand (the schema itself is GPL-2.0
//! and not vendored), and checked over the demo and a benchmark capture in
//! both DNS layouts. The full schema is checked over a capture corpus by
//! `tests/lab/eve_schema.py`, outside the test suite (docs/EVE.md).

use egresswatch::gen::{self, CaptureFormat, GenOptions};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

/// Top-level keys egresswatch writes that Suricata's schema knows.
const TOP: &[&str] = &[
    "timestamp",
    "flow_id",
    "event_type",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "icmp_type",
    "icmp_code",
    "community_id",
    "app_proto",
    "host",
    "in_iface",
    "pcap_filename",
    "direction",
    "alert",
    "flow",
    "tcp",
    "dns",
    "ssh",
    "tls",
    "http",
];
/// Event types of egresswatch's own, and their objects.
const OWN: &[&str] = &["egresswatch", "flow_interim", "stratum", "incident"];
/// The `incident` record's object (docs/EVE.md).
const INCIDENT: &[&str] = &[
    "id",
    "host",
    "zone",
    "workload",
    "first_seen",
    "last_seen",
    "tactics",
    "tactic_names",
    "techniques",
    "signature_ids",
    "detections",
    "alerts",
    "flows",
    "severity",
    "score",
    "stage",
    "change",
];
/// What an incident record holds at the top level.
const INCIDENT_TOP: &[&str] = &[
    "timestamp",
    "event_type",
    "src_ip",
    "host",
    "pcap_filename",
    "in_iface",
    "incident",
];
const FLOW: &[&str] = &[
    "pkts_toserver",
    "pkts_toclient",
    "bytes_toserver",
    "bytes_toclient",
    "start",
    "end",
    "age",
    "state",
    "reason",
    "alerted",
    "src_ip",
    "dest_ip",
    "src_port",
    "dest_port",
];
const TCP: &[&str] = &[
    "tcp_flags",
    "tcp_flags_ts",
    "tcp_flags_tc",
    "syn",
    "fin",
    "rst",
    "psh",
    "ack",
    "urg",
    "ecn",
    "cwr",
    "state",
];
const ALERT: &[&str] = &[
    "action",
    "gid",
    "signature_id",
    "rev",
    "signature",
    "category",
    "severity",
    "metadata",
];
const DNS: &[&str] = &[
    "version",
    "type",
    "id",
    "flags",
    "qr",
    "aa",
    "tc",
    "rd",
    "ra",
    "z",
    "opcode",
    "rcode",
    "queries",
    "answers",
    "authorities",
    "grouped",
    "rrname",
    "rrtype",
    "tx_id",
];
const DNS_QUERY: &[&str] = &["rrname", "rrtype"];
const DNS_ANSWER: &[&str] = &["rrname", "rrtype", "ttl", "rdata", "soa"];
const SSH: &[&str] = &["client", "server"];
const TLS: &[&str] = &[
    "sni",
    "version",
    "ja3",
    "ja3s",
    "ja4",
    "client_alpns",
    "server_alpns",
    "subject",
    "issuerdn",
    "serial",
    "fingerprint",
    "notbefore",
    "notafter",
    "session_resumed",
];

fn keys_within(v: &Value, allowed: &[&str], what: &str, problems: &mut Vec<String>) {
    let Some(obj) = v.as_object() else {
        problems.push(format!("{what} is not an object: {v}"));
        return;
    };
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            problems.push(format!("{what}.{k} is not in Suricata's schema"));
        }
    }
}

/// A non-empty list of strings, as the schema's metadata and DNS arrays.
fn string_list(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
}

fn check(r: &Value, problems: &mut Vec<String>) {
    let mut top: Vec<&str> = TOP.to_vec();
    top.extend(OWN);
    keys_within(r, &top, "record", problems);
    for (key, allowed) in [
        ("flow", FLOW),
        ("tcp", TCP),
        ("alert", ALERT),
        ("ssh", SSH),
        ("tls", TLS),
    ] {
        if let Some(v) = r.get(key) {
            keys_within(v, allowed, key, problems);
        }
    }
    if r["event_type"] == "incident" {
        keys_within(r, INCIDENT_TOP, "incident record", problems);
        keys_within(&r["incident"], INCIDENT, "incident", problems);
        for key in ["id", "host", "first_seen", "last_seen", "stage"] {
            if !r["incident"][key].is_string() {
                problems.push(format!("incident.{key} missing: {r}"));
            }
        }
        for key in ["tactics", "techniques", "detections"] {
            if !string_list(&r["incident"][key]) {
                problems.push(format!("incident.{key} is not a list of strings: {r}"));
            }
        }
    }
    if r["event_type"] == "alert" {
        let m = &r["alert"]["metadata"];
        for (k, v) in m.as_object().into_iter().flatten() {
            if !string_list(v) {
                problems.push(format!("alert.metadata.{k} is not a list of strings: {v}"));
            }
        }
        if !string_list(&m["mitre_technique_id"]) || !string_list(&m["mitre_tactic_id"]) {
            problems.push(format!("alert without MITRE metadata: {r}"));
        }
    }
    if let Some(dns) = r.get("dns") {
        keys_within(dns, DNS, "dns", problems);
        if let Some(q) = dns.get("queries") {
            match q.as_array() {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .for_each(|q| keys_within(q, DNS_QUERY, "dns.queries[]", problems)),
                _ => problems.push(format!("dns.queries empty or not a list: {r}")),
            }
        }
        for a in dns["answers"].as_array().into_iter().flatten() {
            keys_within(a, DNS_ANSWER, "dns.answers[]", problems);
        }
        for (k, v) in dns["grouped"].as_object().into_iter().flatten() {
            if !string_list(v) {
                problems.push(format!("dns.grouped.{k} is not a list of strings"));
            }
        }
    }
}

fn eve(pcap: &[u8], args: &[&str]) -> Vec<Value> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pcap).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(["replay", "-q", "--eve", "-"])
        .arg(file.path())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_record_stays_inside_suricatas_objects() {
    let opts = GenOptions {
        seed: Some(3),
        packets: Some(20_000),
        flows: Some(1_000),
        format: CaptureFormat::default(),
    };
    let mut bench = Vec::new();
    gen::generate("bench", &opts, &mut bench).unwrap();
    let mut problems = Vec::new();
    let mut types = BTreeSet::new();
    let mut dns_types = BTreeSet::new();
    for pcap in [gen::demo_pcap(), bench] {
        for version in ["2", "3"] {
            let args = [
                "--eve-dns-version",
                version,
                "--active-timeout-seconds",
                "1",
            ];
            for r in eve(&pcap, &args) {
                check(&r, &mut problems);
                types.insert(r["event_type"].as_str().unwrap_or("").to_string());
                if let Some(t) = r["dns"]["type"].as_str() {
                    dns_types.insert(format!("v{version} {t}"));
                }
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for t in [
        "alert",
        "flow",
        "flow_interim",
        "dns",
        "ssh",
        "tls",
        "incident",
    ] {
        assert!(types.contains(t), "{t} records checked: {types:?}");
    }
    let want = ["v2 answer", "v2 query", "v3 request", "v3 response"];
    assert_eq!(
        dns_types.iter().map(String::as_str).collect::<Vec<_>>(),
        want
    );
}
