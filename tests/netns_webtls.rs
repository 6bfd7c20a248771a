//! `egresswatch capture --config FILE` with `--web.config.file` in a
//! network namespace of its own (capturing on its loopback): the sensor
//! takes its options from the TOML file, serves `/metrics` over HTTPS only
//! (curl checks the certificate against its CA), refuses a scrape without
//! the password (401) and with a wrong one, answers with it (200), picks
//! up a changed user list on SIGHUP, and stops on SIGTERM with exit 0. A
//! wrong `--config` stops it before anything starts, at file:line:col.
//!
//! Root only (a namespace), about 10 s; needs `openssl`, `curl` and `ip`:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_webtls
//! ```
//!
//! Without `EGRESSWATCH_NETNS=1` (or not as root) it passes after saying
//! it skipped.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "lab/harness.rs"]
mod harness;

const NS: &str = "ewconfig-web";

/// The namespace and the sensor in it, removed on drop (also when a check
/// fails).
struct Lab {
    sensor: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.sensor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", NS]).status();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn in_ns(program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", NS, program]);
    c
}

/// `curl` in the namespace: the HTTP status, `000` when nothing answered.
fn curl(dir: &Path, url: &str, extra: &[&str]) -> String {
    let out = in_ns("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(dir.join("cert.pem"))
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_users(dir: &Path, user: &str, password: &str) {
    let hash = bcrypt::hash(password, 4).unwrap();
    let text = format!(
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS12\nbasic_auth_users:\n  {user}: {hash}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    );
    std::fs::write(dir.join("web.yml"), text).unwrap();
}

fn signal(child: &Child, sig: &str) {
    run(Command::new("kill").args([sig, &child.id().to_string()]));
}

#[test]
fn https_scrapes_need_the_password_and_options_come_from_the_file() {
    if !harness::enabled("netns_webtls") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_egresswatch");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem")));
    write_users(dir, "prom", "first");
    let config = dir.join("egresswatch.toml");
    std::fs::write(
        &config,
        format!(
            "interface = [\"lo\"]\nflow-capacity = 5000\nworkers = 1\n[web]\nlisten-address = \"127.0.0.1:8463\"\nconfig.file = \"{}\"\n",
            dir.join("web.yml").display()
        ),
    )
    .unwrap();

    // A wrong file: nothing starts, the problem is placed.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "interface = [\"lo\"]\nflow-capacty = 1\n").unwrap();
    let out = Command::new(bin)
        .args(["capture", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains(&format!("{}:2:1", bad.display())), "{err}");
    assert!(err.contains("did you mean `flow-capacity`?"), "{err}");

    let _ = Command::new("ip")
        .args(["netns", "del", NS])
        .stderr(Stdio::null())
        .status();
    run(Command::new("ip").args(["netns", "add", NS]));
    let mut lab = Lab { sensor: None };
    run(in_ns("ip").args(["link", "set", "lo", "up"]));
    let log = std::fs::File::create(dir.join("sensor.log")).unwrap();
    let child = in_ns(bin)
        .args(["--log-level", "info", "capture", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let sensor = lab.sensor.insert(child);
    let url = "https://localhost:8463/metrics";
    let started = Instant::now();
    while curl(dir, url, &[]) == "000" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no HTTPS answer; log:\n{}",
            std::fs::read_to_string(dir.join("sensor.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(curl(dir, url, &[]), "401");
    assert_eq!(curl(dir, url, &["-u", "prom:wrong"]), "401");
    assert_eq!(curl(dir, url, &["-u", "prom:first"]), "200");
    // Plain HTTP gets no answer on the TLS port.
    assert_eq!(
        curl(dir, "http://localhost:8463/metrics", &["-u", "prom:first"]),
        "000"
    );
    // The file's options are in force: the interface came from it, and
    // so did the headers of the web config.
    let body = in_ns("curl")
        .args([
            "-s",
            "-D",
            "-",
            "--max-time",
            "5",
            "-u",
            "prom:first",
            "--cacert",
        ])
        .arg(dir.join("cert.pem"))
        .arg(url)
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&body.stdout);
    assert!(body.contains("x-content-type-options: nosniff"), "{body}");
    assert!(
        body.contains("egresswatch_capture_up{interface=\"lo\"} 1"),
        "{body}"
    );

    // SIGHUP: a new password for the next connections.
    write_users(dir, "prom", "second");
    signal(sensor, "-HUP");
    let started = Instant::now();
    while curl(dir, url, &["-u", "prom:second"]) != "200" {
        assert!(started.elapsed() < Duration::from_secs(10), "no reload");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(curl(dir, url, &["-u", "prom:first"]), "401");

    signal(sensor, "-TERM");
    let status = sensor.wait().unwrap();
    lab.sensor = None;
    let log = std::fs::read_to_string(dir.join("sensor.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("web config reloaded"), "{log}");
}
