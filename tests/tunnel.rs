//! Protocols inside proxies, end to end through `egresswatch generate
//! ssh-via-proxy` and `egresswatch replay`: the reverse SSH tunnels carried
//! by HTTP CONNECT and SOCKS5 get every verdict they get direct, SSH
//! through two nested proxies is SSH, HTTPS through the proxy is judged
//! by its target, and an allow entry for the proxy does not silence SSH.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_egresswatch")
}

/// Replays the scenario; every EVE record. `extra_rules`: a file added to
/// a copy of the shipped rules.
fn replay(dir: &Path, extra_rules: Option<&str>) -> Vec<Value> {
    let pcap = dir.join("svp.pcap");
    if !pcap.exists() {
        let gen = Command::new(bin())
            .args(["generate", "ssh-via-proxy", "--out"])
            .arg(&pcap)
            .output()
            .expect("run generate");
        assert!(
            gen.status.success(),
            "{}",
            String::from_utf8_lossy(&gen.stderr)
        );
    }
    let eve = dir.join("svp.eve.json");
    let mut cmd = Command::new(bin());
    cmd.args(["replay", "-q", "--eve"]).arg(&eve);
    if let Some(text) = extra_rules {
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        for f in std::fs::read_dir(&shipped).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, rules.join(f.file_name().unwrap())).unwrap();
        }
        std::fs::write(rules.join("proxy.toml"), text).unwrap();
        cmd.arg("--rules").arg(&rules);
    }
    let out = cmd.arg(&pcap).output().expect("run replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The client port of a record's flow (alerts may be written to_client).
fn client_port(r: &Value) -> u64 {
    let (s, d) = (
        r["src_port"].as_u64().unwrap_or(0),
        r["dest_port"].as_u64().unwrap_or(0),
    );
    if r["src_ip"] == "10.10.0.10" {
        s
    } else {
        d
    }
}

fn detections(all: &[Value], port: u64) -> Vec<String> {
    let mut d: Vec<String> = all
        .iter()
        .filter(|r| r["event_type"] == "alert" && client_port(r) == port)
        .map(|r| r["egresswatch"]["detection"].as_str().unwrap().to_string())
        .collect();
    d.sort();
    d
}

fn flow(all: &[Value], port: u64) -> &Value {
    all.iter()
        .find(|r| r["event_type"] == "flow" && r["src_port"] == port)
        .expect("flow record")
}

const REVERSE: [&str; 4] = [
    "ssh-reverse-forward",
    "ssh-reverse-interactive",
    "ssh-reverse-session",
    "ssh-to-external",
];

#[test]
fn tunnelled_ssh_gets_the_direct_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let all = replay(dir.path(), None);
    for port in [41_880, 41_881] {
        let found = detections(&all, port);
        for d in REVERSE {
            assert!(
                found.iter().any(|f| f == d),
                "{port}: {d} missing in {found:?}"
            );
        }
        let f = flow(&all, port);
        assert_eq!(f["app_proto"], "ssh");
    }
    let t = &flow(&all, 41_880)["egresswatch"]["tunnel"];
    assert_eq!(t["via"], "http-connect");
    assert_eq!(t["target_host"], "198.51.100.23");
    assert_eq!(t["target_port"], 22);
    let t = &flow(&all, 41_881)["egresswatch"]["tunnel"];
    assert_eq!(t["via"], "socks5");
    assert_eq!(t["target_host"], "vps-relay.example.net");
    assert!(detections(&all, 41_881).contains(&"ssh-nonstandard-port".to_string()));
    // The ssh record and its HASSH, as for a direct session.
    let ssh = all
        .iter()
        .find(|r| r["event_type"] == "ssh" && r["src_port"] == 41_880)
        .expect("ssh record");
    assert!(
        ssh["ssh"]["client"]["software_version"].is_string(),
        "{ssh}"
    );
}

#[test]
fn nested_layers_are_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let all = replay(dir.path(), None);
    let t = &flow(&all, 41_882)["egresswatch"]["tunnel"];
    assert_eq!(t["via"], "socks5+http-connect");
    assert_eq!(t["target_host"], "bastion.example.net");
    assert_eq!(t["layers"][0]["target_host"], "proxy.corp.example");
    assert_eq!(t["layers"][1]["target_port"], 22);
    assert!(detections(&all, 41_882).contains(&"ssh-to-external".to_string()));
}

#[test]
fn https_through_the_proxy_is_judged_by_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let all = replay(dir.path(), None);
    // pypi.org:443 is allowed (protocol tls): nothing, through the proxy too.
    assert_eq!(detections(&all, 45_001), Vec::<String>::new());
    assert_eq!(flow(&all, 45_001)["app_proto"], "tls");
    let tls = all
        .iter()
        .find(|r| r["event_type"] == "tls" && r["src_port"] == 45_001)
        .expect("tls record");
    assert_eq!(tls["tls"]["sni"], "pypi.org");
    // An unlisted target under default-deny.
    assert_eq!(detections(&all, 45_002), ["egress-not-allowed"]);
}

#[test]
fn an_allow_entry_for_the_proxy_covers_https_but_not_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = r#"
[[allow]]
name = "corp-proxy"
cidrs = ["203.0.113.80/32", "203.0.113.81/32"]
ports = [3128, 1080]
reason = "the sanctioned egress proxies"
"#;
    let all = replay(dir.path(), Some(proxy));
    assert_eq!(detections(&all, 45_002), Vec::<String>::new());
    for port in [41_880, 41_881] {
        let found = detections(&all, port);
        for d in REVERSE {
            assert!(
                found.iter().any(|f| f == d),
                "{port}: {d} missing in {found:?}"
            );
        }
        // Not covered by the entry: default-deny still applies.
        assert!(
            found.contains(&"egress-not-allowed".to_string()),
            "{found:?}"
        );
    }
    // protocol = "ssh" on the proxy permits SSH through it (the reverse
    // inferences are not silenced by an allow entry).
    let ssh_ok = proxy.replace("reason =", "protocol = \"ssh\"\nreason =");
    let dir = tempfile::tempdir().unwrap();
    let all = replay(dir.path(), Some(&ssh_ok));
    let found = detections(&all, 41_880);
    assert!(!found.contains(&"ssh-to-external".to_string()), "{found:?}");
    assert!(
        found.contains(&"ssh-reverse-session".to_string()),
        "{found:?}"
    );
    // ... and no longer covers HTTPS through it.
    assert_eq!(detections(&all, 45_002), ["egress-not-allowed"]);
}
