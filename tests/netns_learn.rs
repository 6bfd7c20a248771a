//! `capture --learn FILE` on a real veth pair: tcpreplay pushes a
//! generated capture at the sensor, SIGTERM stops it, and the learned file
//! holds the same entries `egresswatch learn` makes from the capture file.
//!
//! Root only, about 15 s:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_learn
//! ```
//!
//! Without `EGRESSWATCH_NETNS=1` (or not as root) the test passes after
//! saying it skipped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "lab/harness.rs"]
mod harness;

const NS: &str = "ewlearn-t";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egresswatch"))
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespace and stops the sensor, also when the test fails.
struct Guard {
    sensor: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.sensor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", NS]).status();
    }
}

/// The entries without comments and reasons (which carry packet times).
fn entries(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("reason"))
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_sensor_learns_what_learn_learns_from_the_file() {
    if !harness::enabled("netns_learn") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let status = bin()
        .args([
            "generate",
            "bench",
            "--packets",
            "20000",
            "--seed",
            "11",
            "-o",
        ])
        .arg(&pcap)
        .status()
        .unwrap();
    assert!(status.success());
    let from_file = dir.path().join("from-file.toml");
    let status = bin()
        .arg("learn")
        .arg(&pcap)
        .arg("-o")
        .arg(&from_file)
        .status()
        .unwrap();
    assert!(status.success());

    let mut guard = Guard { sensor: None };
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
    sh("ip", &["netns", "add", NS]);
    let in_ns = |args: &[&str]| {
        let mut all = vec!["netns", "exec", NS];
        all.extend_from_slice(args);
        sh("ip", &all);
    };
    in_ns(&[
        "ip",
        "link",
        "add",
        "ewlearn-a",
        "type",
        "veth",
        "peer",
        "name",
        "ewlearn-b",
    ]);
    in_ns(&["ip", "link", "set", "ewlearn-a", "up"]);
    in_ns(&["ip", "link", "set", "ewlearn-b", "up"]);

    let live = dir.path().join("live.toml");
    let sensor = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(env!("CARGO_BIN_EXE_egresswatch"))
        .args([
            "capture",
            "-i",
            "ewlearn-b",
            "--web.listen-address",
            "none",
            "--learn",
        ])
        .arg(&live)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sensor.id().to_string();
    guard.sensor = Some(sensor);
    // The first (empty) file is written once the sensor has started.
    wait_for("the first learned file", Duration::from_secs(10), || {
        live.exists()
    });
    in_ns(&[
        "tcpreplay",
        "-q",
        "-i",
        "ewlearn-a",
        "--mbps",
        "50",
        &pcap.display().to_string(),
    ]);
    std::thread::sleep(Duration::from_secs(1));
    sh("kill", &["-TERM", &pid]);
    let mut sensor = guard.sensor.take().unwrap();
    let status = sensor.wait().unwrap();
    assert!(status.success(), "sensor: {status}");

    let want = std::fs::read_to_string(&from_file).unwrap();
    let got = std::fs::read_to_string(&live).unwrap();
    assert!(got.contains("From: live capture on ewlearn-b"), "{got}");
    assert!(want.matches("[[allow]]").count() > 10, "{want}");
    assert_eq!(entries(&want), entries(&got), "file:\n{want}\nlive:\n{got}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".egresswatch-learn")
        })
        .collect();
    assert!(leftovers.is_empty());
    assert!(Path::new(&live).exists());
}
