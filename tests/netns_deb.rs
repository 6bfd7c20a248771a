//! The Debian package on this machine: `dpkg -i` of the .deb that
//! `dist/deb.sh` built, what it installs (the system user, conffiles, the
//! unit that `systemd-analyze verify` accepts, man pages, completions), the
//! installed sensor started in a network namespace twice — as the unit runs
//! it (user `egresswatch`, ambient `CAP_NET_RAW` only) and as the
//! DaemonSet's container runs it (root with `CAP_NET_RAW` only) — judged by
//! its EVE output and metrics, then `dpkg --purge`.
//!
//! Needs root, `EGRESSWATCH_NETNS=1` and `EGRESSWATCH_DEB=path/to.deb`;
//! refuses to run where egresswatch is already installed. About 30 s:
//!
//! ```sh
//! dist/deb.sh --dev
//! sudo EGRESSWATCH_NETNS=1 EGRESSWATCH_DEB=$(ls target/debian/egresswatch_*.deb) \
//!     cargo test --test netns_deb
//! ```

use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "lab/harness.rs"]
mod harness;

const SENDER: &str = "10.213.0.1";
const SENSOR: &str = "10.213.0.2";

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Runs `argv`; panics with its output unless it succeeds.
fn ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Undoes everything the test did, also when it fails.
struct Guard {
    namespaces: Vec<String>,
    sensors: Vec<Child>,
    installed: bool,
    remove_user: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.sensors {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            run(&["ip", "netns", "del", ns]);
        }
        if self.installed {
            run(&["dpkg", "--purge", "egresswatch"]);
        }
        if self.remove_user {
            run(&["userdel", "egresswatch"]);
            run(&["groupdel", "egresswatch"]);
        }
    }
}

fn user_exists() -> bool {
    run(&["getent", "passwd", "egresswatch"]).status.success()
}

fn in_ns(ns: &str, argv: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = ["ip", "netns", "exec", ns].map(String::from).to_vec();
    all.extend(argv.iter().map(|s| s.to_string()));
    all
}

fn ns_ok(ns: &str, argv: &[&str]) -> String {
    let all = in_ns(ns, argv);
    ok(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

fn http(ns: &str, path: &str) -> (String, String) {
    let url = format!("http://127.0.0.1:8463{path}");
    let all = in_ns(ns, &["curl", "-s", "-m", "2", "-w", "\n%{http_code}", &url]);
    let out = run(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

/// Two namespaces joined by a veth pair: the sender's `ewpkg-s0` and the
/// sensor's `ewpkg-r0`.
fn lab(guard: &mut Guard) -> (String, String) {
    let pid = std::process::id();
    let (tx, rx) = (format!("ewpkg-s-{pid}"), format!("ewpkg-r-{pid}"));
    for ns in [&tx, &rx] {
        ok(&["ip", "netns", "add", ns]);
        guard.namespaces.push(ns.clone());
        ns_ok(ns, &["ip", "link", "set", "lo", "up"]);
    }
    ok(&[
        "ip", "link", "add", "ewpkg-s0", "netns", &tx, "type", "veth", "peer", "name", "ewpkg-r0",
        "netns", &rx,
    ]);
    for (ns, dev, addr) in [(&tx, "ewpkg-s0", SENDER), (&rx, "ewpkg-r0", SENSOR)] {
        ns_ok(
            ns,
            &["ip", "addr", "add", &format!("{addr}/24"), "dev", dev],
        );
        ns_ok(ns, &["ip", "link", "set", dev, "up"]);
    }
    (tx, rx)
}

/// Starts the installed sensor in `rx` under `setpriv` with `privileges`,
/// sends TCP and UDP from `tx`, checks the metrics, stops it with SIGTERM
/// and returns its EVE records.
fn sensor_run(
    guard: &mut Guard,
    (tx, rx): (&str, &str),
    privileges: &[&str],
    eve: &Path,
) -> Vec<Value> {
    let eve_arg = eve.display().to_string();
    let mut argv = vec!["setpriv"];
    argv.extend_from_slice(privileges);
    argv.extend_from_slice(&[
        "/usr/bin/egresswatch",
        "--log-level",
        "info",
        "capture",
        "--interface",
        "ewpkg-r0",
        "--rules",
        "/etc/egresswatch/rules",
        "--eve",
        &eve_arg,
    ]);
    let all = in_ns(rx, &argv);
    let child = Command::new(&all[0])
        .args(&all[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the sensor");
    let pid = child.id();
    guard.sensors.push(child);
    let start = Instant::now();
    while http(rx, "/-/ready").0 != "200" {
        let exited = guard
            .sensors
            .last_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "{privileges:?}: the sensor exited: {exited:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{privileges:?}: never ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for port in ["22", "80", "443"] {
        let script = format!("echo x >/dev/tcp/{SENSOR}/{port}");
        let all = in_ns(tx, &["timeout", "2", "bash", "-c", &script]);
        run(&all.iter().map(String::as_str).collect::<Vec<_>>()); // refused: fine
    }
    let script = format!("echo x >/dev/udp/{SENSOR}/5353");
    ns_ok(tx, &["bash", "-c", &script]);
    std::thread::sleep(Duration::from_millis(1500));

    let (code, metrics) = http(rx, "/metrics");
    assert_eq!(code, "200", "{privileges:?}: /metrics");
    let version = ok(&["/usr/bin/egresswatch", "--version"]);
    let revision = version
        .split("revision ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("--version names the revision");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("egresswatch_build_info{")
                && l.contains(&format!("revision=\"{revision}\""))
                && l.ends_with(" 1")),
        "{privileges:?}: build_info with revision {revision}"
    );
    let received = metrics
        .lines()
        .find(|l| {
            l.starts_with("egresswatch_capture_received_packets_total{interface=\"ewpkg-r0\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("received packets metric");
    assert!(received >= 6.0, "{privileges:?}: received {received}");

    ok(&["kill", "-TERM", &pid.to_string()]);
    let mut child = guard.sensors.pop().expect("the sensor");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("{privileges:?}: the sensor did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{privileges:?}: exit {status}");
    let text = std::fs::read_to_string(eve).expect("EVE written");
    harness::parse_eve(&text).expect("EVE lines")
}

fn flows_from_sender<'a>(eve: &'a [Value], proto: &str) -> Vec<&'a Value> {
    eve.iter()
        .filter(|r| r["event_type"] == "flow" && r["proto"] == proto)
        .filter(|r| r["src_ip"] == SENDER && r["dest_ip"] == SENSOR)
        .collect()
}

#[test]
fn the_package_installs_runs_the_sensor_and_purges() {
    if !harness::enabled("netns_deb") {
        return;
    }
    let Some(deb) = std::env::var_os("EGRESSWATCH_DEB").map(PathBuf::from) else {
        eprintln!("netns_deb: skipped (set EGRESSWATCH_DEB to the .deb that dist/deb.sh built)");
        return;
    };
    let query = run(&["dpkg-query", "-W", "-f=${Status}", "egresswatch"]);
    assert!(
        !String::from_utf8_lossy(&query.stdout).contains("installed"),
        "egresswatch is already installed here; this test would replace and purge it"
    );
    let started = Instant::now();
    let mut guard = Guard {
        namespaces: Vec::new(),
        sensors: Vec::new(),
        installed: false,
        remove_user: !user_exists(),
    };
    guard.installed = true;
    ok(&["dpkg", "-i", deb.to_str().expect("a UTF-8 path")]);

    // The system user, its log and state directories, the files and conffiles.
    let passwd = ok(&["getent", "passwd", "egresswatch"]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "not a system user: {passwd}");
    assert!(fields[6].ends_with("nologin"), "a login shell: {passwd}");
    for dir in ["/var/log/egresswatch", "/var/lib/egresswatch"] {
        let meta = std::fs::metadata(dir).expect(dir);
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o750), "{dir}");
    }
    for file in [
        "/usr/bin/egresswatch",
        "/usr/lib/systemd/system/egresswatch.service",
        "/etc/default/egresswatch",
        "/etc/logrotate.d/egresswatch",
        "/etc/egresswatch/rules/cluster.toml",
        "/usr/share/man/man1/egresswatch.1.gz",
        "/usr/share/man/man1/egresswatch-capture.1.gz",
        "/usr/share/bash-completion/completions/egresswatch",
        "/usr/share/zsh/vendor-completions/_egresswatch",
        "/usr/share/fish/vendor_completions.d/egresswatch.fish",
        "/usr/share/doc/egresswatch/copyright",
    ] {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    let conffiles = ok(&["dpkg-query", "--control-show", "egresswatch", "conffiles"]);
    for file in [
        "/etc/egresswatch/rules/cluster.toml",
        "/etc/default/egresswatch",
    ] {
        assert!(conffiles.lines().any(|l| l == file), "{file}: {conffiles}");
    }
    ok(&[
        "/usr/bin/egresswatch",
        "check-rules",
        "/etc/egresswatch/rules",
    ]);
    let verify = run(&[
        "systemd-analyze",
        "verify",
        "--man=no",
        "/usr/lib/systemd/system/egresswatch.service",
    ]);
    let said = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");

    let (tx, rx) = lab(&mut guard);
    // As the unit runs it.
    let unit_eve = Path::new("/var/log/egresswatch/eve-netns-deb.json");
    let eve = sensor_run(
        &mut guard,
        (&tx, &rx),
        &[
            "--reuid=egresswatch",
            "--regid=egresswatch",
            "--init-groups",
            "--inh-caps=-all,+net_raw",
            "--ambient-caps=-all,+net_raw",
            "--bounding-set=-all,+net_raw",
            "--no-new-privs",
        ],
        unit_eve,
    );
    assert_eq!(std::fs::metadata(unit_eve).expect("EVE").uid(), uid);
    assert!(flows_from_sender(&eve, "TCP").len() >= 3, "unit: {eve:?}");
    assert!(!flows_from_sender(&eve, "UDP").is_empty(), "unit: {eve:?}");

    // As the DaemonSet's container runs it: root holding CAP_NET_RAW alone.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let eve = sensor_run(
        &mut guard,
        (&tx, &rx),
        &[
            "--inh-caps=-all",
            "--bounding-set=-all,+net_raw",
            "--no-new-privs",
        ],
        &dir.path().join("eve.json"),
    );
    assert!(
        flows_from_sender(&eve, "TCP").len() >= 3,
        "container: {eve:?}"
    );

    ok(&["dpkg", "--purge", "egresswatch"]);
    guard.installed = false;
    for gone in [
        "/usr/bin/egresswatch",
        "/etc/egresswatch",
        "/var/log/egresswatch",
        "/var/lib/egresswatch",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    eprintln!("netns_deb: {:.1} s", started.elapsed().as_secs_f64());
}
