//! End-to-end SSH tests on real traffic: the namespace lab (`tests/lab`)
//! runs real OpenSSH and Dropbear sessions and captures them at the router;
//! the `egresswatch` binary replays each capture and its EVE output must
//! agree with the ground truth the lab wrote into its manifest.
//!
//! These tests need root (network namespaces, sshd, tcpdump) and take about
//! seven minutes, so they run only when asked for:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_ssh -- --test-threads=1
//! ```
//!
//! `EGRESSWATCH_LAB_CAPTURES=DIR` checks captures made earlier by
//! `tests/lab/run.sh DIR` instead of running the lab (no root needed then).
//! Without either variable every test here passes after saying it skipped.
//! The shared plumbing is in `tests/lab/harness.rs`.

#[path = "lab/harness.rs"]
mod harness;

use harness::{check_complete, check_group, evidence_ok, is_set, records, Capture, Lab};
use md5::{Digest, Md5};
use serde_json::Value;
use std::sync::OnceLock;

/// The SSH scenarios of the lab (`tests/lab/run.sh --list`).
const SCENARIOS: &[&str] = &[
    "fwd_",
    "rev_",
    "dropbear_",
    "local_forward",
    "dynamic_forward",
    "proxyjump",
    "scp_",
    "port443_",
    "port2222_",
    "internal_git",
    "role_reversal",
];

static LAB: OnceLock<Option<Result<Lab, String>>> = OnceLock::new();

fn lab() -> Option<&'static Result<Lab, String>> {
    LAB.get_or_init(|| harness::lab_for("netns_ssh", "ssh", SCENARIOS))
        .as_ref()
}

fn group(prefixes: &[&str], check: fn(&Capture, &[Value]) -> Vec<String>) {
    check_group(lab(), prefixes, check);
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks one side of a Suricata-style `ssh` record (`client` or `server`).
fn check_ssh_side(side: &Value, name: &str, out: &mut Vec<String>) {
    if side["proto_version"] != "2.0" {
        out.push(format!(
            "ssh.{name}.proto_version is {}",
            side["proto_version"]
        ));
    }
    let sw = side["software_version"].as_str().unwrap_or("");
    if !(sw.starts_with("OpenSSH_") || sw.starts_with("dropbear_")) {
        out.push(format!("ssh.{name}.software_version is {:?}", sw));
    }
    let hash = side["hassh"]["hash"].as_str().unwrap_or("");
    let string = side["hassh"]["string"].as_str().unwrap_or("");
    if string.split(';').count() != 4 {
        out.push(format!(
            "ssh.{name}.hassh.string {string:?} is not four ;-joined lists"
        ));
    }
    if hash != md5_hex(string) {
        out.push(format!(
            "ssh.{name}.hassh.hash {hash:?} is not the MD5 of its string"
        ));
    }
}

/// What every SSH capture must show, whatever happened in it: a flow record
/// with `app_proto: "ssh"`, an `ssh` record with both banners and HASSH, and
/// the forced cipher in the client's HASSH list and in egresswatch's own
/// negotiated algorithms.
fn common(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let outer = &cap.entry["outer"];
    let flows = records(events, outer, "flow");
    if flows.is_empty() {
        out.push("no flow record for the outer connection".into());
    }
    for f in &flows {
        if f["app_proto"] != "ssh" {
            out.push(format!("flow app_proto is {}", f["app_proto"]));
        }
    }
    let ssh = records(events, outer, "ssh");
    if ssh.len() != 1 {
        out.push(format!(
            "{} ssh records for the outer connection, expected 1",
            ssh.len()
        ));
        return out;
    }
    let ev = ssh[0];
    check_ssh_side(&ev["ssh"]["client"], "client", &mut out);
    check_ssh_side(&ev["ssh"]["server"], "server", &mut out);
    let cipher = cap.entry["cipher"].as_str().unwrap_or("");
    let reversed = cap.entry["truth"]["role_reversed"] == true;
    // `ssh.client` is the SSH client (the TCP responder in a role
    // reversal); its HASSH lists what it offered: only the forced cipher.
    let lists: Vec<&str> = ev["ssh"]["client"]["hassh"]["string"]
        .as_str()
        .unwrap_or("")
        .split(';')
        .collect();
    if lists.get(1).copied() != Some(cipher) {
        out.push(format!(
            "client HASSH cipher list {:?}, the client offered only {cipher}",
            lists.get(1)
        ));
    }
    let ours = &ev["egresswatch"]["ssh"];
    if !ours.is_object() {
        out.push("no egresswatch.ssh object".into());
        return out;
    }
    let mac = &cap.entry["mac"];
    for dir in ["client_to_server", "server_to_client"] {
        if ours[dir]["cipher"] != cipher {
            out.push(format!(
                "egresswatch.ssh.{dir}.cipher is {}, negotiated was {cipher}",
                ours[dir]["cipher"]
            ));
        }
        if &ours[dir]["mac"] != mac {
            out.push(format!(
                "egresswatch.ssh.{dir}.mac is {}, negotiated was {mac}",
                ours[dir]["mac"]
            ));
        }
    }
    if ours["role_reversed"] != reversed {
        out.push(format!(
            "egresswatch.ssh.role_reversed is {}, expected {reversed}",
            ours["role_reversed"]
        ));
    }
    let seen = &cap.entry["observed"]["ssh"];
    let (client, server) = if reversed {
        // The SSH client is the TCP responder.
        (&seen["responder_banner"], &seen["originator_banner"])
    } else {
        (&seen["originator_banner"], &seen["responder_banner"])
    };
    for (key, want) in [("client_banner", client), ("server_banner", server)] {
        if &ours[key] != want {
            out.push(format!(
                "egresswatch.ssh.{key} is {}, the capture has {want}",
                ours[key]
            ));
        }
    }
    out
}

/// The inferences egresswatch draws for a session against the lab's truth.
fn inferences(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = common(cap, events);
    let outer = &cap.entry["outer"];
    let ssh = records(events, outer, "ssh");
    let Some(ev) = ssh.first() else { return out };
    let ours = &ev["egresswatch"]["ssh"];
    let inf = &ours["inferences"];
    let truth = &cap.entry["truth"];
    let frames = cap.entry["frames"].as_u64().unwrap_or(0);
    let mut expect = |field: &str, want: bool| {
        let got = if field == "role_reversed" {
            &ours["role_evidence"]
        } else {
            &inf[field]
        };
        if want && !is_set(got) {
            out.push(format!("inference {field} missing"));
        } else if !want && is_set(got) {
            out.push(format!(
                "inference {field} made but the session had none: {}",
                got["summary"]
            ));
        } else if want && !evidence_ok(got, frames) {
            out.push(format!(
                "inference {field} cites no packets of this capture: {got}"
            ));
        }
    };
    expect("remote_forward", truth["remote_forward"] == true);
    expect("reverse_session", truth["reverse_session"] == true);
    expect("nested_forward", truth["proxyjump"] == true);
    expect("keepalive_only", truth["keepalive_only"] == true);
    expect("role_reversed", truth["role_reversed"] == true);
    expect("forward_interactive", truth["typing_side"] == "client");
    expect("reverse_interactive", truth["typing_side"] == "server");
    let auth = truth["outer_auth"].as_str().unwrap_or("");
    if ours["auth"]["outcome"] != auth {
        out.push(format!(
            "egresswatch.ssh.auth.outcome is {}, the login was a {auth}",
            ours["auth"]["outcome"]
        ));
    }
    // Reported with a reverse session only.
    if inf["reverse_login"] != truth["reverse_login"] {
        out.push(format!(
            "inference reverse_login is {}, the login back was {}",
            inf["reverse_login"], truth["reverse_login"]
        ));
    }
    out
}

/// Like [`inferences`], plus the direction of a file transfer.
fn transfer(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = inferences(cap, events);
    let outer = &cap.entry["outer"];
    let ssh = records(events, outer, "ssh");
    let Some(ev) = ssh.first() else { return out };
    let ft = &ev["egresswatch"]["ssh"]["inferences"]["file_transfer"];
    let want = cap.entry["truth"]["file_transfer"].as_str();
    match want {
        None if is_set(ft) => out.push(format!("file_transfer reported without one: {ft}")),
        None => {}
        Some(dir) => {
            let summary = ft["summary"].as_str().unwrap_or("").to_ascii_lowercase();
            // Upload = originator (the cluster) to responder.
            let words: &[&str] = if dir == "upload" {
                &[
                    "upload",
                    "toserver",
                    "to server",
                    "client to server",
                    "outbound",
                ]
            } else {
                &[
                    "download",
                    "toclient",
                    "to client",
                    "server to client",
                    "inbound",
                ]
            };
            if !is_set(ft) {
                out.push(format!("no file_transfer for an scp {dir}"));
            } else if !words.iter().any(|w| summary.contains(w)) {
                out.push(format!(
                    "file_transfer summary {summary:?} does not say {dir}"
                ));
            }
        }
    }
    out
}

/// No file transfer is claimed where there was none.
fn no_transfer(cap: &Capture, events: &[Value]) -> Vec<String> {
    let mut out = inferences(cap, events);
    for ev in records(events, &cap.entry["outer"], "ssh") {
        let ft = &ev["egresswatch"]["ssh"]["inferences"]["file_transfer"];
        if is_set(ft) {
            out.push(format!("file_transfer reported without one: {ft}"));
        }
    }
    out
}

// ---- the tests -----------------------------------------------------------------

#[test]
fn lab_made_every_capture() {
    check_complete(lab(), 34);
}

#[test]
fn forward_interactive_sessions() {
    group(&["fwd_interactive-", "port443_", "port2222_"], no_transfer);
}

#[test]
fn failed_forward_login() {
    group(&["fwd_auth_fail-"], no_transfer);
}

#[test]
fn reverse_tunnel_with_login_back() {
    group(&["rev_login_ok", "dropbear_rev_login_ok"], no_transfer);
}

#[test]
fn reverse_tunnel_with_failed_login_back() {
    group(&["rev_login_fail-", "dropbear_rev_login_fail"], no_transfer);
}

#[test]
fn idle_reverse_tunnel_with_keepalives() {
    group(&["rev_idle-"], no_transfer);
}

/// Dropbear negotiates zlib compression, which destroys the size model: an
/// idle `-R` tunnel then shows nothing size-based to infer from. The
/// analyzer must say so instead of guessing, and still infer nothing false.
/// (Known gap: the `-R` request itself is not inferred here.)
#[test]
fn compressed_idle_reverse_tunnel_is_flagged_not_guessed() {
    group(&["dropbear_rev_idle"], |cap, events| {
        let mut out = common(cap, events);
        for ev in records(events, &cap.entry["outer"], "ssh") {
            let ours = &ev["egresswatch"]["ssh"];
            let why = ours["sizes_unreliable"].as_str().unwrap_or("");
            if !why.contains("compression") {
                out.push(format!(
                    "sizes not flagged as unreliable for compression: {why:?}"
                ));
            }
            for field in [
                "reverse_session",
                "reverse_interactive",
                "nested_forward",
                "file_transfer",
            ] {
                if is_set(&ours["inferences"][field]) {
                    out.push(format!("{field} inferred from unreliable sizes"));
                }
            }
        }
        out
    });
}

#[test]
fn local_and_dynamic_forwards_are_not_reverse() {
    group(&["local_forward-", "dynamic_forward-"], inferences);
}

#[test]
fn proxyjump_is_nested_forward_not_reverse() {
    group(&["proxyjump-"], no_transfer);
}

#[test]
fn scp_transfers_by_direction() {
    group(&["scp_"], transfer);
}

#[test]
fn internal_git_clone() {
    // A small clone; only the session facts are asserted, not a transfer.
    group(&["internal_git_clone-"], inferences);
}

#[test]
fn role_reversal_implant() {
    group(&["role_reversal-"], no_transfer);
}
