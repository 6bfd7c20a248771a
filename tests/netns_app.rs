//! End-to-end app-layer tests on real traffic: the namespace lab resolves
//! names through dnsmasq, fetches over HTTPS (openssl s_server) and HTTP,
//! mines against the lab's pool in three dialects (Stratum v1, XMRig
//! `login`, ethproxy) and over TLS to a name on the mining-pool list, and
//! talks to a benign JSON-RPC service with a `login` method. Each capture is
//! replayed through `egresswatch` and its EVE output checked against the
//! lab's ground truth.
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_app -- --test-threads=1
//! EGRESSWATCH_LAB_CAPTURES=DIR cargo test --test netns_app   # captures made earlier
//! ```
//!
//! Without either variable every test passes after saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use harness::{check_complete, check_group, detections, json_contains_str, records, Capture, Lab};
use serde_json::Value;
use std::sync::OnceLock;

const SCENARIOS: &[&str] = &["https_", "http_host", "dns_", "tls_", "mining_", "jsonrpc_"];

static LAB: OnceLock<Option<Result<Lab, String>>> = OnceLock::new();

fn lab() -> Option<&'static Result<Lab, String>> {
    LAB.get_or_init(|| harness::lab_for("netns_app", "app", SCENARIOS))
        .as_ref()
}

fn group(prefixes: &[&str], check: fn(&Capture, &[Value]) -> Vec<String>) {
    check_group(lab(), prefixes, check);
}

fn truth_str<'a>(cap: &'a Capture, key: &str) -> Option<&'a str> {
    cap.entry["truth"][key].as_str()
}

fn names(cap: &Capture) -> Vec<String> {
    cap.entry["truth"]["dns_names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// DNS: an EVE `dns` response answers every name the client asked for,
/// with the server's address at the end of any CNAME chain; the flow record
/// of the connection that followed carries those names.
fn dns(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let server = cap.entry["outer"]["server"].as_str().unwrap_or("");
    let cnames = &cap.entry["truth"]["dns_cnames"];
    for name in names(cap) {
        let answered = events.iter().any(|e| {
            e["event_type"] == "dns"
                && e["dns"]["type"] == "response"
                && e["dns"]["answers"].as_array().is_some_and(|answers| {
                    let target = cnames[name.as_str()].as_str().unwrap_or(&name);
                    answers.iter().any(|a| {
                        a["rrname"] == target && a["rrtype"] == "A" && a["rdata"] == server
                    }) && (target == name
                        || answers.iter().any(|a| {
                            a["rrname"] == name && a["rrtype"] == "CNAME" && a["rdata"] == target
                        }))
                })
        });
        if !answered {
            out.push(format!("no EVE dns response maps {name} to {server}"));
        }
        let queried = events.iter().any(|e| {
            e["event_type"] == "dns"
                && e["dns"]["type"] == "request"
                && e["dns"]["queries"]
                    .as_array()
                    .is_some_and(|q| q.iter().any(|q| q["rrname"] == name))
        });
        if !queried {
            out.push(format!("no EVE dns request for {name}"));
        }
        let flows = records(events, &cap.entry["outer"], "flow");
        if !flows.iter().any(|f| json_contains_str(f, &name)) {
            out.push(format!("the flow record does not carry the name {name}"));
        }
    }
    out
}

/// The flow record's `app_proto` is what the bytes were.
fn app_proto(cap: &Capture, events: &[Value]) -> Vec<String> {
    // Payload nobody identified is `failed`, as Suricata writes it.
    let want = truth_str(cap, "app_proto").unwrap_or("failed");
    let flows = records(events, &cap.entry["outer"], "flow");
    if flows.is_empty() {
        return vec!["no flow record for the connection".into()];
    }
    flows
        .iter()
        // An unidentified flow may say so under `egresswatch` instead.
        .filter(|f| {
            f["app_proto"] != want
                && !(want == "failed" && f["egresswatch"]["app_proto"] == "failed")
        })
        .map(|f| format!("flow app_proto is {}, expected {want}", f["app_proto"]))
        .collect()
}

fn tls(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = app_proto(cap, events);
    out.extend(dns(cap, events));
    let recs = records(events, &cap.entry["outer"], "tls");
    let Some(rec) = recs.first() else {
        out.push("no EVE tls record".into());
        return out;
    };
    let sni = truth_str(cap, "sni").unwrap_or("");
    if rec["tls"]["sni"] != sni {
        out.push(format!(
            "tls.sni is {}, the ClientHello said {sni}",
            rec["tls"]["sni"]
        ));
    }
    let alpn = &cap.entry["truth"]["alpn"];
    if alpn.as_array().is_some_and(|a| !a.is_empty()) && &rec["tls"]["client_alpns"] != alpn {
        out.push(format!(
            "tls.client_alpns is {}, the ClientHello offered {alpn}",
            rec["tls"]["client_alpns"]
        ));
    }
    out.extend(tls_ja4_and_certificate(cap, &rec["tls"]));
    out
}

/// Every ClientHello gets a well-formed JA4; a TLS 1.2 handshake shows the
/// server's certificate (the lab's self-signed one), TLS 1.3 none (it is
/// encrypted there).
fn tls_ja4_and_certificate(cap: &Capture, tls: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let ja4 = tls["ja4"].as_str().unwrap_or("");
    let parts: Vec<&str> = ja4.split('_').collect();
    let well_formed = parts.len() == 3
        && parts[0].len() == 10
        && parts[0].starts_with('t')
        && parts[1..]
            .iter()
            .all(|p| p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        out.push(format!("tls.ja4 is {}, not a JA4 fingerprint", tls["ja4"]));
    }
    let version = truth_str(cap, "tls_version").unwrap_or("TLS 1.3");
    if tls["version"] != version {
        out.push(format!(
            "tls.version is {}, expected {version}",
            tls["version"]
        ));
    }
    let Some(subject) = truth_str(cap, "cert_subject") else {
        if tls.get("subject").is_some() {
            out.push(format!(
                "tls.subject {} on a TLS 1.3 handshake",
                tls["subject"]
            ));
        }
        return out;
    };
    for key in ["subject", "issuerdn"] {
        if tls[key] != subject {
            out.push(format!(
                "tls.{key} is {}, the lab's certificate is {subject}",
                tls[key]
            ));
        }
    }
    if tls["subjectaltname"] != cap.entry["truth"]["cert_names"] {
        out.push(format!("tls.subjectaltname is {}", tls["subjectaltname"]));
    }
    let fp = tls["fingerprint"].as_str().unwrap_or("");
    if fp.len() != 59 || fp.split(':').any(|b| b.len() != 2) {
        out.push(format!(
            "tls.fingerprint is {}, not SHA-1 colon hex",
            tls["fingerprint"]
        ));
    }
    for key in ["serial", "notbefore", "notafter"] {
        if tls[key].as_str().is_none_or(str::is_empty) {
            out.push(format!("no tls.{key}"));
        }
    }
    out
}

fn http(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = app_proto(cap, events);
    out.extend(dns(cap, events));
    let recs = records(events, &cap.entry["outer"], "http");
    let Some(rec) = recs.first() else {
        out.push("no EVE http record".into());
        return out;
    };
    for (field, key) in [
        ("hostname", "http_host"),
        ("url", "http_uri"),
        ("http_method", "http_method"),
    ] {
        let want = truth_str(cap, key).unwrap_or("");
        if rec["http"][field] != want {
            out.push(format!(
                "http.{field} is {}, expected {want}",
                rec["http"][field]
            ));
        }
    }
    out
}

/// Mining in the clear: a `stratum` record naming the dialect, the wallet
/// or worker and the agent, confirmed by the pool's reply, and an alert.
fn mining(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = app_proto(cap, events);
    out.extend(dns(cap, events));
    let recs = records(events, &cap.entry["outer"], "stratum");
    let Some(rec) = recs.first() else {
        out.push("no EVE stratum record".into());
        return out;
    };
    let s = &rec["stratum"];
    for (field, key) in [
        ("protocol", "mining_protocol"),
        ("login", "mining_wallet"),
        ("agent", "mining_agent"),
    ] {
        let want = &cap.entry["truth"][key];
        if &s[field] != want {
            out.push(format!("stratum.{field} is {}, expected {want}", s[field]));
        }
    }
    if s["confirmed_by"].is_null() {
        out.push("stratum record not confirmed by the pool's reply".into());
    }
    if !detections(events, &cap.entry["outer"])
        .iter()
        .any(|d| d == "crypto-mining")
    {
        out.push("no crypto-mining alert".into());
    }
    out
}

/// Mining behind TLS: only the name tells, and it is on the pool list; the
/// crypto-mining alert's evidence names it.
fn pool_name(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = tls(cap, events);
    let sni = truth_str(cap, "sni").unwrap_or("");
    let named = records(events, &cap.entry["outer"], "alert")
        .iter()
        .any(|a| {
            a["egresswatch"]["detection"] == "crypto-mining"
                && a["egresswatch"]["evidence"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains(sni))
        });
    if !named {
        out.push(format!("no crypto-mining alert naming the pool {sni}"));
    }
    out
}

/// A JSON-RPC `login` that is not mining must not be called mining.
fn benign(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = app_proto(cap, events);
    out.extend(dns(cap, events));
    let outer = &cap.entry["outer"];
    for rec in records(events, outer, "stratum") {
        if !rec["stratum"]["confirmed_by"].is_null() {
            out.push(format!("benign JSON-RPC called mining: {}", rec["stratum"]));
        }
    }
    if detections(events, outer)
        .iter()
        .any(|d| d == "crypto-mining")
    {
        out.push("crypto-mining alert on a benign JSON-RPC login".into());
    }
    out
}

#[test]
fn lab_made_every_capture() {
    check_complete(lab(), 11);
}

#[test]
fn tls_sni_alpn_and_dns_names() {
    group(&["https_"], tls);
}

#[test]
fn tls_client_hello_split_across_segments() {
    group(&["tls_client_hello_split"], tls);
}

#[test]
fn http_host_and_uri() {
    group(&["http_host", "dns_external_resolver"], http);
}

#[test]
fn mining_dialects_on_any_port() {
    group(
        &["mining_stratum", "mining_xmrig", "mining_ethproxy"],
        mining,
    );
}

#[test]
fn mining_pool_behind_tls_by_name() {
    group(&["mining_pool_tls_sni"], pool_name);
}

#[test]
fn benign_jsonrpc_login_is_not_mining() {
    group(&["jsonrpc_login_benign"], benign);
}
