//! DNS and ICMP tunnels made with the real tools in a pair of network
//! namespaces, captured with tcpdump and replayed: iodine (raw mode off,
//! so everything goes over DNS) and dns2tcp each raise `dns-tunnel` for
//! their domain, ptunnel-ng raises `icmp-tunnel`; real `ping` (default,
//! `-s 1400 -p ff`, `-s 8`, a flood of 1000-byte pings) raises neither.
//!
//! Root only and opt-in, like the other namespace tests:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_tunnels
//! ```
//!
//! The client `ewdn-c` (10.82.1.1) reaches the server `ewdn-s`
//! (10.82.1.2) over a veth pair; iodine's tunnel is 10.82.9.0/24. Needs
//! `ip`, `tcpdump`, `iodine`, `dns2tcp`, `ptunnel-ng`, `ping` and
//! `python3`; takes about 20 s.

#[path = "lab/harness.rs"]
mod harness;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

const CLIENT: &str = "ewdn-c";
const SERVER: &str = "ewdn-s";

/// Deletes the namespaces (and with them the veth pair) when dropped, also
/// when the test fails.
struct Namespaces;

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [CLIENT, SERVER] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A background process, stopped (`signal`) and reaped when dropped.
struct Background(Child, &'static str);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args([self.1, &self.0.id().to_string()])
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
            "{}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `args` in namespace `ns` until it exits.
fn exec(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}

/// Starts `args` in namespace `ns` in the background.
fn spawn(ns: &str, args: &[&str], signal: &'static str) -> Result<Background, String> {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    Ok(Background(child, signal))
}

fn setup() -> Result<Namespaces, String> {
    let guard = Namespaces;
    drop(Namespaces); // a previous run's leftovers
    let cmds: [&[&str]; 10] = [
        &["ip", "netns", "add", CLIENT],
        &["ip", "netns", "add", SERVER],
        &[
            "ip", "link", "add", "ewdn-c0", "type", "veth", "peer", "name", "ewdn-s0",
        ],
        &["ip", "link", "set", "ewdn-c0", "netns", CLIENT],
        &["ip", "link", "set", "ewdn-s0", "netns", SERVER],
        &[
            "ip",
            "-n",
            CLIENT,
            "addr",
            "add",
            "10.82.1.1/24",
            "dev",
            "ewdn-c0",
        ],
        &[
            "ip",
            "-n",
            SERVER,
            "addr",
            "add",
            "10.82.1.2/24",
            "dev",
            "ewdn-s0",
        ],
        &["ip", "-n", CLIENT, "link", "set", "ewdn-c0", "up"],
        &["ip", "-n", SERVER, "link", "set", "ewdn-s0", "up"],
        &["ip", "-n", SERVER, "link", "set", "lo", "up"],
    ];
    for c in cmds {
        sh(c)?;
    }
    exec(CLIENT, &["ip", "link", "set", "lo", "up"])?;
    Ok(guard)
}

/// Captures the server's interface into `pcap` while `run` runs.
fn capture(pcap: &Path, run: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let path = pcap.to_str().ok_or("path")?;
    let tcpdump = spawn(
        SERVER,
        &["tcpdump", "-i", "ewdn-s0", "-U", "-w", path, "udp or icmp"],
        "-INT",
    )?;
    wait_for("tcpdump", || {
        std::fs::metadata(pcap).is_ok_and(|m| m.len() >= 24)
    })?;
    sleep(Duration::from_millis(500));
    let result = run();
    sleep(Duration::from_millis(500));
    drop(tcpdump);
    result
}

/// Waits until `ok` holds (up to 10 s).
fn wait_for(what: &str, ok: impl Fn() -> bool) -> Result<(), String> {
    for _ in 0..100 {
        if ok() {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    Err(format!("{what}: timed out"))
}

fn echo_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/tunnel_echo.py").to_string()
}

/// Pushes `bytes` through a TCP echo at `addr:port` from the client.
fn push(addr: &str, port: &str, bytes: &str) -> Result<(), String> {
    exec(
        CLIENT,
        &[
            "timeout",
            "60",
            "python3",
            &echo_script(),
            "send",
            addr,
            port,
            bytes,
        ],
    )
}

fn iodine() -> Result<(), String> {
    let _server = spawn(
        SERVER,
        &[
            "iodined",
            "-f",
            "-c",
            "-P",
            "ewdnsecret",
            "-l",
            "10.82.1.2",
            "-p",
            "53",
            "10.82.9.1/24",
            "t.ewdn.test",
        ],
        "-TERM",
    )?;
    sleep(Duration::from_secs(1));
    let _client = spawn(
        CLIENT,
        &[
            "iodine",
            "-f",
            "-r",
            "-P",
            "ewdnsecret",
            "10.82.1.2",
            "t.ewdn.test",
        ],
        "-TERM",
    )?;
    wait_for("iodine's dns0", || {
        Command::new("ip")
            .args(["-n", CLIENT, "-4", "addr", "show", "dns0"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("10.82.9."))
    })?;
    // The echo server binds the tunnel address iodined just made.
    let _echo = spawn(
        SERVER,
        &["python3", &echo_script(), "serve", "10.82.9.1", "7777"],
        "-TERM",
    )?;
    sleep(Duration::from_millis(500));
    push("10.82.9.1", "7777", "60000")
}

fn dns2tcp(dir: &Path) -> Result<(), String> {
    let conf = dir.join("dns2tcpd.conf");
    std::fs::write(
        &conf,
        "listen = 10.82.1.2\nport = 53\nuser = nobody\nchroot = /tmp\n\
         domain = d.ewdn.test\nresources = echo:127.0.0.1:7778\n",
    )
    .map_err(|e| e.to_string())?;
    let _echo = spawn(
        SERVER,
        &["python3", &echo_script(), "serve", "127.0.0.1", "7778"],
        "-TERM",
    )?;
    let conf = conf.to_str().ok_or("path")?;
    let _server = spawn(SERVER, &["dns2tcpd", "-F", "-f", conf], "-TERM")?;
    sleep(Duration::from_secs(1));
    let _client = spawn(
        CLIENT,
        &[
            "dns2tcpc",
            "-z",
            "d.ewdn.test",
            "-r",
            "echo",
            "-l",
            "4444",
            "10.82.1.2",
        ],
        "-TERM",
    )?;
    sleep(Duration::from_secs(1));
    push("127.0.0.1", "4444", "30000")
}

fn ptunnel() -> Result<(), String> {
    let _echo = spawn(
        SERVER,
        &["python3", &echo_script(), "serve", "127.0.0.1", "7779"],
        "-TERM",
    )?;
    let _server = spawn(SERVER, &["ptunnel-ng"], "-TERM")?;
    sleep(Duration::from_secs(1));
    let _client = spawn(
        CLIENT,
        &[
            "ptunnel-ng",
            "-p10.82.1.2",
            "-l4445",
            "-r127.0.0.1",
            "-R7779",
        ],
        "-TERM",
    )?;
    sleep(Duration::from_secs(1));
    push("127.0.0.1", "4445", "30000")
}

fn pings() -> Result<(), String> {
    let runs: [&[&str]; 4] = [
        &["ping", "-q", "-c", "100", "-i", "0.01", "10.82.1.2"],
        &[
            "ping",
            "-q",
            "-c",
            "60",
            "-i",
            "0.01",
            "-s",
            "1400",
            "-p",
            "ff",
            "10.82.1.2",
        ],
        &[
            "ping",
            "-q",
            "-c",
            "60",
            "-i",
            "0.01",
            "-s",
            "8",
            "10.82.1.2",
        ],
        &["ping", "-q", "-f", "-c", "2000", "-s", "1000", "10.82.1.2"],
    ];
    for r in runs {
        exec(CLIENT, r)?;
    }
    Ok(())
}

/// The alerts of a replay of `pcap`, by detection.
fn tunnel_alerts(pcap: &Path) -> Vec<Value> {
    let events = harness::replay(pcap).expect("replay");
    harness::alerts_of(events, &["dns-tunnel", "icmp-tunnel"])
}

fn workdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("netns-tunnels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

#[test]
fn real_tunnels_raise_their_detections_and_ping_does_not() {
    if !harness::enabled("netns_tunnels") {
        return;
    }
    let _ns = setup().unwrap_or_else(|e| panic!("namespaces: {e}"));
    let dir = workdir();
    type Run<'a> = Box<dyn FnOnce() -> Result<(), String> + 'a>;
    type Expect = Option<(&'static str, &'static str)>;
    let runs: [(&str, Run<'_>, Expect); 4] = [
        (
            "iodine",
            Box::new(iodine),
            Some(("dns-tunnel", "ewdn.test")),
        ),
        (
            "dns2tcp",
            Box::new(|| dns2tcp(&dir)),
            Some(("dns-tunnel", "ewdn.test")),
        ),
        ("ptunnel", Box::new(ptunnel), Some(("icmp-tunnel", ""))),
        ("ping", Box::new(pings), None),
    ];
    for (name, run, expect) in runs {
        let pcap = dir.join(format!("{name}.pcap"));
        capture(&pcap, run).unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = tunnel_alerts(&pcap);
        let summaries: Vec<&str> = found
            .iter()
            .filter_map(|a| a["egresswatch"]["evidence"]["summary"].as_str())
            .collect();
        eprintln!("{name}: {summaries:#?}");
        let Some((detection, domain)) = expect else {
            assert!(found.is_empty(), "{name}: {summaries:?}");
            continue;
        };
        assert_eq!(found.len(), 1, "{name}: {summaries:?}");
        let alert = &found[0];
        assert_eq!(alert["egresswatch"]["detection"], detection, "{name}");
        // An alert raised by a reply names the reply's sender first.
        let ends = [&alert["src_ip"], &alert["dest_ip"]];
        assert!(
            ends.contains(&&Value::from("10.82.1.1")),
            "{name}: {ends:?}"
        );
        if detection == "dns-tunnel" {
            assert_eq!(
                alert["egresswatch"]["dns_tunnel"]["domain"], domain,
                "{name}"
            );
        }
    }
}
