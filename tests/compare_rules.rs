//! Trying rules before they ship, end to end through the binary:
//! `replay --compare-rules` over the generated demo capture with rule
//! directories built in temp dirs (an entry removed, added, unused or a
//! near miss), its exit codes and JSON form, and `check-rules --capture`
//! warnings (shadowed, wider than the evidence, unused) at file:line:col.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(args)
        .output()
        .expect("run egresswatch")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The demo capture (generated) and a place for rule directories.
struct Lab {
    dir: tempfile::TempDir,
    pcap: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("demo.pcap");
        std::fs::write(&pcap, egresswatch::gen::demo_pcap()).unwrap();
        Lab { dir, pcap }
    }

    /// A rules directory `name`: the shipped rules plus `extra.toml`.
    fn rules(&self, name: &str, extra: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        for f in std::fs::read_dir(shipped).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
        if !extra.is_empty() {
            std::fs::write(dir.join("extra.toml"), extra).unwrap();
        }
        dir
    }

    fn pcap(&self) -> &str {
        self.pcap.to_str().unwrap()
    }

    fn compare(&self, new: &Path, old: &Path, more: &[&str]) -> Output {
        let mut args = vec![
            "replay",
            self.pcap(),
            "-q",
            "--rules",
            new.to_str().unwrap(),
            "--compare-rules",
            old.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        run(&args)
    }
}

/// Allows the demo's SSH relay (the reverse tunnel on 443).
const RELAY: &str = r#"
[[allow]]
name = "relay"
zones = ["gpu-training"]
cidrs = ["198.51.100.23/32"]
ports = [443]
protocol = "ssh"
reason = "test: the relay"
"#;

#[test]
fn an_entry_removed_makes_its_alerts_appear() {
    let lab = Lab::new();
    let old = lab.rules("old", RELAY);
    let new = lab.rules("new", "");
    let out = lab.compare(&new, &old, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("  + TCP -> 198.51.100.23:443 ssh (vps-relay.example.net)  zone gpu-training: 1 flow(s)\n      + ssh-to-external, ssh-nonstandard-port, egress-not-allowed\n"),
        "{text}"
    );
    assert!(
        text.contains("alerts that appear with NEW: 3 on 1 flow(s), 1 group(s)"),
        "{text}"
    );
    assert!(text.contains("alerts that disappear with NEW: 0"), "{text}");
    assert!(text.contains("OLD: permitted by `relay` ("), "{text}");
    assert!(
        text.contains("NEW: no entry covers the destination"),
        "{text}"
    );
    // The reverse-tunnel detections fire under both: not in the diff.
    assert!(!text.contains("ssh-reverse-forward "), "{text}");
    // Only medium and low alerts appear.
    let gate = lab.compare(&new, &old, &["--fail-on", "high"]);
    assert_eq!(gate.status.code(), Some(0), "{}", stdout(&gate));
    let gate = lab.compare(&new, &old, &["--fail-on", "medium"]);
    assert_eq!(gate.status.code(), Some(3));
}

#[test]
fn an_entry_added_makes_alerts_disappear_and_still_alerts_on_the_tunnel() {
    let lab = Lab::new();
    let old = lab.rules("old", "");
    let new = lab.rules("new", RELAY);
    let out = lab.compare(&new, &old, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "alerts changed: {text}");
    assert!(
        text.contains("alerts that disappear with NEW: 3 on 1 flow(s)"),
        "{text}"
    );
    assert!(
        text.contains("      - ssh-to-external, ssh-nonstandard-port, egress-not-allowed\n"),
        "{text}"
    );
    assert!(text.contains("NEW: permitted by `relay` ("), "{text}");
    assert!(
        text.contains("entries of NEW that permitted a flow that still alerted: 1"),
        "{text}"
    );
    assert!(
        text.contains("ssh-reverse-forward, ssh-reverse-session, ssh-reverse-interactive"),
        "{text}"
    );
    // Nothing appears: a gate on new alerts passes.
    let gate = lab.compare(&new, &old, &["--fail-on", "low"]);
    assert_eq!(gate.status.code(), Some(0), "{}", stdout(&gate));
}

#[test]
fn unused_entries_are_dead_and_near_misses_say_why() {
    let lab = Lab::new();
    let old = lab.rules("old", "");
    let extra = r#"
[[allow]]
name = "nobody-goes-here"
cidrs = ["192.0.2.0/24"]
reason = "test: unused"

[[allow]]
name = "relay-on-22"
zones = ["gpu-training"]
cidrs = ["198.51.100.23/32"]
ports = [22]
protocol = "ssh"
reason = "test: the wrong port"
"#;
    let new = lab.rules("new", extra);
    let out = lab.compare(&new, &old, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "no alert changes: {text}");
    let dead = text
        .split("dead entries of NEW")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .unwrap_or("");
    assert!(dead.contains("extra.toml:2  nobody-goes-here"), "{dead}");
    assert!(dead.contains("extra.toml:7  relay-on-22"), "{dead}");
    assert!(
        dead.contains("closest entry for 1 flow(s) that alerted, e.g. TCP 10.10.0.10:41874 -> 198.51.100.23:443 ssh (vps-relay.example.net): port 443 is not in 22"),
        "{dead}"
    );
    // Used entries are not dead.
    assert!(!dead.contains("internal-git"), "{dead}");

    let json = lab.compare(&new, &old, &["--compare-format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    let dead: Vec<&str> = v["dead_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert!(dead.contains(&"nobody-goes-here"), "{dead:?}");
    assert!(!dead.contains(&"internal-git"), "{dead:?}");
    assert_eq!(v["appears"].as_array().unwrap().len(), 0);
    // The demo's 11 flows and the 64 probes of its internal sweep.
    assert_eq!(v["flows"], 75);
}

/// The one-pass comparison raises, for each rule set, exactly the alerts
/// a replay with that rule set alone raises.
#[test]
fn one_pass_counts_match_separate_replays() {
    let lab = Lab::new();
    let old = lab.rules("old", RELAY);
    let new = lab.rules("new", "");
    let json = lab.compare(&new, &old, &["--compare-format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for (side, dir) in [("new", &new), ("old", &old)] {
        let out = run(&[
            "replay",
            lab.pcap(),
            "-q",
            "--rules",
            dir.to_str().unwrap(),
            "--eve",
            "-",
        ]);
        let alerts = stdout(&out)
            .lines()
            .filter(|l| l.contains(r#""event_type":"alert""#))
            // Host findings (the demo's sweep) come from the host stage,
            // after the judge: the trial compares per-flow judgements.
            .filter(|l| !l.contains(r#""detection":"internal-discovery""#))
            .count();
        assert_eq!(v["alerts"][side], alerts as u64, "{side}");
    }
    let appears = v["appears"].as_array().unwrap();
    assert_eq!(appears.len(), 1);
    let g = &appears[0];
    assert_eq!(g["dest_ip"], "198.51.100.23");
    assert_eq!(g["flows"], 1);
    let ids: Vec<&str> = g["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["detection"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "ssh-to-external",
            "ssh-nonstandard-port",
            "egress-not-allowed"
        ]
    );
    assert_eq!(g["example"]["src_ip"], "10.10.0.10");
    assert!(g["example"]["community_id"]
        .as_str()
        .unwrap()
        .starts_with("1:"));
}

#[test]
fn the_same_rules_change_nothing_and_a_bad_old_set_is_a_config_error() {
    let lab = Lab::new();
    let rules = lab.rules("same", "");
    let out = lab.compare(&rules, &rules, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("summary: 0 alert(s) appear, 0 disappear"));
    let broken = lab.rules("broken", "[[allow]]\nname = \"x\"\n");
    let out = lab.compare(&rules, &broken, &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("extra.toml:1:1"));
}

#[test]
fn check_rules_warns_about_a_shadowed_entry_at_its_place() {
    let lab = Lab::new();
    let extra = r#"# a second git entry, inside internal-git
[[allow]]
name = "git-again"
zones = ["gpu-training"]
cidrs = ["10.20.0.10/32"]
ports = [22]
protocol = "ssh"
reason = "test: shadowed"
"#;
    let dir = lab.rules("shadow", extra);
    let out = run(&["check-rules", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "warnings are not errors: {text}"
    );
    assert!(
        text.contains("warning[shadowed]: allow entry `git-again` is shadowed by `internal-git` ("),
        "{text}"
    );
    assert!(text.contains("extra.toml:2:1"), "{text}");
    assert!(text.contains("rules OK"), "{text}");
}

#[test]
fn check_rules_with_a_capture_warns_about_entries_wider_than_the_evidence() {
    let lab = Lab::new();
    let extra = r#"[[allow]]
name = "relay-wide"
zones = ["gpu-training"]
cidrs = ["198.0.0.0/8"]
hosts = ["*.example.net"]
reason = "test: much wider than the one flow it permits"
"#;
    let dir = lab.rules("wide", extra);
    let out = run(&[
        "check-rules",
        dir.to_str().unwrap(),
        "--capture",
        lab.pcap(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let expect = [
        "warning[wider-than-evidence]: `198.0.0.0/8` of allow entry `relay-wide` is wider than its evidence in",
        "extra.toml:4:10",
        "the 1 flow(s) it permitted all went to 198.51.100.0/24",
        "warning[wider-than-evidence]: `*.example.net` of allow entry `relay-wide` is wider than its evidence",
        "extra.toml:5:10",
        "all named vps-relay.example.net",
        "warning[wider-than-evidence]: `any port` of allow entry `relay-wide`",
        "used port 443 only",
        "warning[wider-than-evidence]: `protocol = \"any\"` of allow entry `relay-wide`",
        "identified as ssh",
        // Shipped entries the demo never uses.
        "warning[unused]: allow entry `pypi` permitted no flow in",
    ];
    for e in expect {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
    // internal-git is used, and exactly as wide as its evidence.
    assert!(!text.contains("entry `internal-git`"), "{text}");
    // Without the capture: no evidence warnings.
    let plain = stdout(&run(&["check-rules", dir.to_str().unwrap()]));
    assert!(!plain.contains("wider-than-evidence"), "{plain}");
    assert!(!plain.contains("warning[unused]"), "{plain}");
}

/// A 2.5-hour SSH session from the gpu zone, a packet each way every five
/// minutes.
fn long_ssh_session() -> Vec<u8> {
    use egresswatch::gen::pcap::TsPrecision;
    use egresswatch::gen::scenario::Scenario;
    use std::time::Duration;
    let mut s = Scenario::new(egresswatch::time::Timestamp::from_secs(1_750_000_000));
    let client = s.host("10.10.0.10");
    let server = s.remote("198.51.100.9");
    {
        let mut t = s.tcp(client, 40000, server, 22);
        t.handshake()
            .send(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            .recv(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        for _ in 0..30 {
            t.think(Duration::from_secs(300))
                .send(&[0u8; 36])
                .recv(&[0u8; 36]);
        }
        t.close_fin();
    }
    s.finish().pcap(TsPrecision::Micro)
}

/// The long-lived thresholds are the one rule-dependent judging time: the
/// engine rechecks at the earlier of both sets' thresholds, so OLD's
/// escalations are raised as a replay with OLD alone raises them.
#[test]
fn long_lived_rechecks_follow_both_rule_sets() {
    let lab = Lab::new();
    let pcap = lab.dir.path().join("long.pcap");
    std::fs::write(&pcap, long_ssh_session()).unwrap();
    let pcap = pcap.to_str().unwrap();
    let thresholds = |hours: &str| {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/detections.toml"),
        )
        .unwrap();
        let changed = shipped.replace(
            "long_lived_hours = [1, 4, 8, 12]",
            &format!("long_lived_hours = {hours}"),
        );
        assert_ne!(changed, shipped);
        changed
    };
    let old = lab.rules("old", "");
    std::fs::write(old.join("detections.toml"), thresholds("[1, 2]")).unwrap();
    let new = lab.rules("new", "");
    std::fs::write(new.join("detections.toml"), thresholds("[4, 8]")).unwrap();
    let json = run(&[
        "replay",
        pcap,
        "-q",
        "--rules",
        new.to_str().unwrap(),
        "--compare-rules",
        old.to_str().unwrap(),
        "--compare-format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let long_lived = |dir: &Path| {
        let out = run(&[
            "replay",
            pcap,
            "-q",
            "--rules",
            dir.to_str().unwrap(),
            "--eve",
            "-",
        ]);
        stdout(&out)
            .lines()
            .filter(|l| l.contains(r#""event_type":"alert""#) && l.contains("ssh-long-lived"))
            .count()
    };
    assert_eq!(
        long_lived(&old),
        2,
        "OLD alone: the 1 h and the 2 h threshold"
    );
    assert_eq!(long_lived(&new), 0);
    let all = |dir: &Path| {
        let out = run(&[
            "replay",
            pcap,
            "-q",
            "--rules",
            dir.to_str().unwrap(),
            "--eve",
            "-",
        ]);
        stdout(&out)
            .lines()
            .filter(|l| l.contains(r#""event_type":"alert""#))
            .count() as u64
    };
    assert_eq!(v["alerts"]["old"], all(&old), "{v}");
    assert_eq!(v["alerts"]["new"], all(&new), "{v}");
    let gone = &v["disappears"][0]["detections"];
    assert_eq!(gone[0]["detection"], "ssh-long-lived", "{v}");
    assert_eq!(gone[0]["level"], 2, "{v}");
}
