//! The EVE `ssh` record: Suricata's `ssh` object (banners and HASSH as
//! Suricata writes them) plus `egresswatch.ssh` with the negotiated
//! algorithms, the size model, every inference with its evidence and the
//! session-class timeline.

use super::banner::Banner;
use super::infer::Inference;
use super::kex::{md5_hex, DirAlgs, KexInit, Negotiated};
use super::sizes::Suite;
use crate::analyzer::{AppEvent, Dir, Evidence, SshFacts};
use crate::json::Rendered;
use crate::time::Timestamp;
use serde_json::{json, Map, Value};

/// Everything the record is built from.
pub struct View<'a> {
    pub facts: Option<&'a SshFacts>,
    pub client: Option<&'a Banner>,
    pub server: Option<&'a Banner>,
    pub client_kex: Option<&'a KexInit>,
    pub server_kex: Option<&'a KexInit>,
    pub negotiated: Option<&'a Negotiated>,
    /// TCP direction of the SSH client.
    pub client_dir: Dir,
    pub role_known: bool,
    pub infer: Option<&'a Inference>,
    pub unreliable: &'a [String],
    /// Record walking used, by TCP direction.
    pub walked: [bool; 2],
    /// Record walking stopped early (stream budget), by TCP direction.
    pub walk_stopped: [bool; 2],
    pub pre_banner_lines: [u32; 2],
}

pub fn event(v: &View<'_>, ts: Timestamp) -> AppEvent {
    AppEvent {
        ts,
        event_type: "ssh",
        body: Rendered::of(&body(v)),
        extra: Some(Rendered::of(&extra(v))),
        dns: None,
    }
}

/// Suricata's `ssh` object, rendered.
pub fn body_of(v: &View<'_>) -> Rendered {
    Rendered::of(&body(v))
}

/// Suricata's `ssh` object. `client` is the SSH client, which is the TCP
/// responder when roles are reversed (`egresswatch.ssh.role_reversed`).
fn body(v: &View<'_>) -> Value {
    let mut o = Map::new();
    if let Some(side) = side(v.client, v.client_kex.map(KexInit::hassh_string)) {
        o.insert("client".into(), side);
    }
    if let Some(side) = side(v.server, v.server_kex.map(KexInit::hassh_server_string)) {
        o.insert("server".into(), side);
    }
    Value::Object(o)
}

fn side(banner: Option<&Banner>, hassh: Option<String>) -> Option<Value> {
    if banner.is_none() && hassh.is_none() {
        return None;
    }
    let mut o = Map::new();
    if let Some(b) = banner {
        o.insert("proto_version".into(), json!(b.proto_version));
        o.insert("software_version".into(), json!(b.software_version));
    }
    if let Some(s) = hassh {
        o.insert("hassh".into(), json!({"hash": md5_hex(&s), "string": s}));
    }
    Some(Value::Object(o))
}

fn extra(v: &View<'_>) -> Value {
    let mut o = Map::new();
    let reversed = v.client_dir == Dir::ToClient;
    o.insert("role_reversed".into(), json!(reversed));
    o.insert(
        "ssh_client".into(),
        json!(if reversed { "responder" } else { "originator" }),
    );
    o.insert("role_known".into(), json!(v.role_known));
    if let Some(f) = v.facts {
        if let Some(e) = &f.role_reversed {
            o.insert("role_evidence".into(), evidence(e));
        }
    }
    o.insert("client_banner".into(), json!(v.client.map(|b| &b.line)));
    o.insert("server_banner".into(), json!(v.server.map(|b| &b.line)));
    let [pre_o, pre_r] = v.pre_banner_lines;
    if pre_o + pre_r > 0 {
        o.insert(
            "pre_banner_lines".into(),
            json!({"toserver": pre_o, "toclient": pre_r}),
        );
    }
    if let (Some(c), Some(s)) = (v.client_kex, v.server_kex) {
        o.insert(
            "host_key_algorithms".into(),
            json!({"client": c.host_key, "server": s.host_key}),
        );
    }
    if let Some(n) = v.negotiated {
        o.insert("kex".into(), json!(n.kex));
        o.insert("host_key".into(), json!(n.host_key));
        let client = v.client_dir;
        o.insert(
            "client_to_server".into(),
            algs(&n.c2s, v.walked[client.index()], client),
        );
        o.insert(
            "server_to_client".into(),
            algs(&n.s2c, v.walked[client.reverse().index()], client.reverse()),
        );
    }
    if let Some(f) = v.facts {
        o.insert(
            "auth".into(),
            json!({"outcome": f.auth, "evidence": f.auth_evidence.as_ref().map(evidence)}),
        );
        o.insert("inferences".into(), inferences(f));
        o.insert("sizes_unreliable".into(), json!(f.sizes_unreliable));
    }
    if v.walk_stopped.iter().any(|&w| w) {
        o.insert(
            "record_walk_stopped".into(),
            json!({"toserver": v.walk_stopped[0], "toclient": v.walk_stopped[1]}),
        );
    }
    if !v.unreliable.is_empty() {
        o.insert("sizes_unreliable_reasons".into(), json!(v.unreliable));
    }
    if let Some(Value::Object(i)) = v.infer.map(Inference::to_json) {
        o.extend(i);
    }
    Value::Object(o)
}

fn algs(a: &DirAlgs, walked: bool, dir: Dir) -> Value {
    let suite = a
        .cipher
        .as_deref()
        .and_then(|c| Suite::from_names(c, a.mac.as_deref()));
    json!({
        "tcp_direction": dir.name(),
        "cipher": a.cipher,
        "mac": a.mac,
        "compression": a.compression,
        "size_model": suite.map(|s| json!({
            "block": s.block,
            "tag": s.tag,
            "length_in_clear": s.len_clear,
            "record_walk": walked,
            "keystroke": s.keystroke(),
        })),
    })
}

fn inferences(f: &SshFacts) -> Value {
    let mut o = Map::new();
    let items = [
        ("remote_forward", &f.remote_forward),
        ("reverse_session", &f.reverse_session),
        ("reverse_interactive", &f.reverse_interactive),
        ("nested_forward", &f.nested_forward),
        ("forward_interactive", &f.forward_interactive),
        ("file_transfer", &f.file_transfer),
        ("keepalive_only", &f.keepalive_only),
    ];
    for (name, e) in items {
        if let Some(e) = e {
            o.insert(name.into(), evidence(e));
        }
    }
    if f.reverse_session.is_some() {
        o.insert("reverse_login".into(), json!(f.reverse_login));
    }
    Value::Object(o)
}

fn evidence(e: &Evidence) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}
