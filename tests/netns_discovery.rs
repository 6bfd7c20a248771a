//! Real nmap in a pair of network namespaces, captured with tcpdump and
//! replayed: a connect scan (`-sT`), a SYN scan (`-sS`) of the peer's first
//! 1000 ports and a ping sweep (`-sn`) of a routed /24 each raise
//! `internal-discovery`; the port scans escalate at 10x. And the live
//! sensor, with two workers (so the scan's flows are spread over both),
//! raises the same two alerts once and counts them in its metrics.
//!
//! Root only and opt-in, like the other namespace tests:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_discovery
//! ```
//!
//! The scanner `ewchain-s` (10.77.1.1) reaches the target `ewchain-t`
//! (10.77.1.2) over a veth pair; 10.77.2.0/24 is routed through the target,
//! where only 10.77.2.1 exists and the rest is a blackhole, so the sweep
//! goes out as IP probes (not ARP, which egresswatch does not decode).
//! Needs `ip`, `nmap` and `tcpdump`; takes about 20 s.

#[path = "lab/harness.rs"]
mod harness;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

/// Both tests use the same namespaces: one at a time.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SCANNER: &str = "ewchain-s";
const TARGET: &str = "ewchain-t";

/// Deletes the namespaces (and with them the veth pair) when dropped, also
/// when a test fails.
struct Namespaces;

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [SCANNER, TARGET] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Stops tcpdump when dropped.
struct Capture(Child);

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn setup() -> Result<Namespaces, String> {
    let guard = Namespaces;
    drop(Namespaces); // a previous run's leftovers
    let cmds: [&[&str]; 15] = [
        &["ip", "netns", "add", SCANNER],
        &["ip", "netns", "add", TARGET],
        &[
            "ip",
            "link",
            "add",
            "ewchain-s0",
            "type",
            "veth",
            "peer",
            "name",
            "ewchain-t0",
        ],
        &["ip", "link", "set", "ewchain-s0", "netns", SCANNER],
        &["ip", "link", "set", "ewchain-t0", "netns", TARGET],
        &[
            "ip",
            "-n",
            SCANNER,
            "addr",
            "add",
            "10.77.1.1/24",
            "dev",
            "ewchain-s0",
        ],
        &[
            "ip",
            "-n",
            TARGET,
            "addr",
            "add",
            "10.77.1.2/24",
            "dev",
            "ewchain-t0",
        ],
        &["ip", "-n", SCANNER, "link", "set", "ewchain-s0", "up"],
        &["ip", "-n", TARGET, "link", "set", "ewchain-t0", "up"],
        &["ip", "-n", TARGET, "link", "set", "lo", "up"],
        &["ip", "-n", SCANNER, "link", "set", "lo", "up"],
        &[
            "ip",
            "-n",
            SCANNER,
            "route",
            "add",
            "10.77.2.0/24",
            "via",
            "10.77.1.2",
        ],
        &[
            "ip",
            "-n",
            TARGET,
            "addr",
            "add",
            "10.77.2.1/32",
            "dev",
            "lo",
        ],
        &[
            "ip",
            "-n",
            TARGET,
            "route",
            "add",
            "blackhole",
            "10.77.2.0/24",
        ],
        &[
            "ip",
            "netns",
            "exec",
            TARGET,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    ];
    for c in cmds {
        sh(c)?;
    }
    Ok(guard)
}

/// Runs nmap with `args` in the scanner namespace while tcpdump captures
/// its interface into `pcap`.
fn scan(pcap: &Path, args: &[&str]) -> Result<(), String> {
    let tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            SCANNER,
            "tcpdump",
            "-i",
            "ewchain-s0",
            "-U",
            "-w",
        ])
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("tcpdump: {e}"))?;
    let capture = Capture(tcpdump);
    sleep(Duration::from_secs(1));
    let mut nmap = vec!["ip", "netns", "exec", SCANNER, "nmap", "-n"];
    nmap.extend_from_slice(args);
    let result = sh(&nmap);
    sleep(Duration::from_secs(1));
    drop(capture);
    result
}

/// The `internal-discovery` alerts of a replay of `pcap`.
fn discovery_alerts(pcap: &Path) -> Vec<Value> {
    let events = harness::replay(pcap).expect("replay");
    harness::alerts_of(events, &["internal-discovery"])
}

fn workdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("netns-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

#[test]
fn nmap_scans_raise_internal_discovery() {
    if !harness::enabled("netns_discovery") {
        return;
    }
    let _lab = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _ns = setup().unwrap_or_else(|e| panic!("namespaces: {e}"));
    let dir = workdir();
    let scans: [(&str, &[&str], &str, u64); 3] = [
        ("sT", &["-sT", "-p", "1-1000", "10.77.1.2"], "port-scan", 2),
        ("sS", &["-sS", "-p", "1-1000", "10.77.1.2"], "port-scan", 2),
        ("sn", &["-sn", "10.77.2.0/24"], "icmp-sweep", 1),
    ];
    for (name, args, kind, alerts) in scans {
        let pcap = dir.join(format!("{name}.pcap"));
        scan(&pcap, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = discovery_alerts(&pcap);
        let summaries: Vec<&str> = found
            .iter()
            .filter_map(|a| a["egresswatch"]["evidence"]["summary"].as_str())
            .collect();
        eprintln!("nmap -{name}: {summaries:#?}");
        assert_eq!(found.len() as u64, alerts, "nmap -{name}: {summaries:?}");
        assert_eq!(found[0]["src_ip"], "10.77.1.1");
        assert_eq!(found[0]["egresswatch"]["discovery"]["kind"], kind);
        if alerts == 2 {
            assert_eq!(found[1]["alert"]["severity"], 1, "escalated");
        }
    }
}

/// Stops the sensor (SIGINT) when dropped.
struct Sensor(Child);

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn the_live_sensor_sees_a_scan_spread_over_its_workers() {
    if !harness::enabled("netns_discovery live") {
        return;
    }
    let _lab = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _ns = setup().unwrap_or_else(|e| panic!("namespaces: {e}"));
    let eve = workdir().join("live.eve.json");
    let listen = "127.0.0.1:19911";
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            SCANNER,
            env!("CARGO_BIN_EXE_egresswatch"),
            "capture",
        ])
        .args([
            "-i",
            "ewchain-s0",
            "--workers",
            "2",
            "--immediate-mode",
            "--eve",
        ])
        .arg(&eve)
        .args(["--web.listen-address", listen])
        .args([
            "--idle-timeout",
            "tcp-closed=2",
            "--idle-timeout",
            "tcp-new=5",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the sensor");
    let sensor = Sensor(child);
    sleep(Duration::from_secs(3));
    sh(&[
        "ip",
        "netns",
        "exec",
        SCANNER,
        "nmap",
        "-n",
        "-sS",
        "-p",
        "1-1000",
        "10.77.1.2",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    sleep(Duration::from_secs(8));
    let metrics = Command::new("ip")
        .args(["netns", "exec", SCANNER, "curl", "-s"])
        .arg(format!("http://{listen}/metrics"))
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    drop(sensor);
    let alerts: Vec<Value> = std::fs::read_to_string(&eve)
        .expect("eve")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["egresswatch"]["detection"] == "internal-discovery")
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["alert"]["severity"], 2);
    assert_eq!(alerts[1]["alert"]["severity"], 1);
    for line in [
        "egresswatch_alerts_total{detection=\"internal-discovery\",severity=\"medium\"} 1",
        "egresswatch_alerts_total{detection=\"internal-discovery\",severity=\"high\"} 1",
        "egresswatch_discovery_sources 1",
        "egresswatch_discovery_sources_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}
