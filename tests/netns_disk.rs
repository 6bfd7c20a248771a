//! The EVE output on a full disk: a small tmpfs (mounted here, unmounted
//! by a drop guard) holds the EVE file.
//!
//! - `replay` of a capture that makes more records than fit: exit 1, the
//!   "N of M records were not written" message, whole records only.
//! - `capture` (`tests/lab/sensor_lab.py disk-recover`): a flood makes
//!   records while the disk is full, then a filler file is deleted; the
//!   writer must recover, write what waited and what comes after, count
//!   what it had to drop, and leave only whole records.
//! - SIGTERM while the disk is full (`sensor_lab.py disk-term`): exit 74,
//!   and the log says how many records were not written.
//!
//! Root only (mount, network namespaces), about 45 s:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_disk -- --test-threads=1
//! ```
//!
//! Without `EGRESSWATCH_NETNS=1` (or not as root) every test passes after
//! saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use harness::{num, parse_eve};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs of a given size mounted on a fresh directory; unmounted and
/// removed when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Tmpfs {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tmpfs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "egresswatch-test",
            ])
            .arg(&dir)
            .status()
            .expect("cannot run mount");
        assert!(
            status.success(),
            "mount tmpfs on {}: {status}",
            dir.display()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 path")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The EVE file, every line of it a whole JSON record.
fn whole_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the file ends inside a record"
    );
    parse_eve(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn replay_onto_a_full_disk_writes_whole_records_and_says_what_was_lost() {
    if !harness::enabled("netns_disk replay") {
        return;
    }
    let disk = Tmpfs::mount("replay", "1m");
    let bin = env!("CARGO_BIN_EXE_egresswatch");
    let pcap = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("disk-flood-{}.pcap", std::process::id()));
    let gen = Command::new(bin)
        .args(["generate", "flood", "--packets", "20000", "--out"])
        .arg(&pcap)
        .output()
        .expect("egresswatch generate");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let eve = disk.dir.join("eve.json");
    let out = Command::new(bin)
        .arg("replay")
        .arg(&pcap)
        .arg("--eve")
        .arg(&eve)
        .stdin(Stdio::null())
        .output()
        .expect("egresswatch replay");
    let _ = std::fs::remove_file(&pcap);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    // "N of M records were not written".
    let line = stderr
        .lines()
        .find(|l| l.contains("records were not written"))
        .unwrap_or_else(|| panic!("no lost-records message: {stderr}"));
    let head = &line[..line.find(" records were not written").unwrap()];
    let words: Vec<&str> = head.split_whitespace().rev().take(3).collect();
    let (lost, of, total): (u64, &str, u64) = (
        words[2].parse().unwrap_or_else(|_| panic!("{line}")),
        words[1],
        words[0].parse().unwrap_or_else(|_| panic!("{line}")),
    );
    assert_eq!(of, "of", "{line}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let written = whole_records(&eve);
    eprintln!(
        "netns_disk replay: {} written, {lost} of {total} lost",
        written.len()
    );
    assert_eq!(total, 20_000, "one record per SYN: {line}");
    assert!(!written.is_empty() && lost > 0, "{line}");
    assert_eq!(
        written.len() as u64 + lost,
        total,
        "written + lost = records"
    );
}

#[test]
fn the_sensor_recovers_when_space_returns() {
    if !harness::enabled("netns_disk disk-recover") {
        return;
    }
    // Room for the 32 MiB that may wait for a failing output, once the
    // filler is gone.
    let disk = Tmpfs::mount("recover", "40m");
    let run = harness::sensor_lab("netns_disk", "disk-recover", &["--dir", disk.path()])
        .unwrap_or_else(|e| panic!("{e}"));
    let r = &run.result;
    let get = |step: &str, k: &str| num(&r[step][k], &format!("{step}.{k}"));
    eprintln!(
        "netns_disk disk-recover: full {}, recovered after {} s, end {}",
        r["full"], r["recovered_after_s"], r["end"]
    );
    assert_eq!(
        num(&r["flood"]["sent"], "flood"),
        60_000.0,
        "{}",
        r["flood"]
    );
    // While full: nothing written, errors counted, records waiting, and
    // those beyond the limit counted as lost.
    assert_eq!(get("full", "lines"), 0.0);
    assert!(get("full", "write_errors") > 0.0, "{}", r["full"]);
    assert!(get("full", "pending") > 0.0, "{}", r["full"]);
    let lost = get("full", "lost");
    assert!(lost > 0.0, "no record counted lost: {}", r["full"]);
    // Space back: what waited is written, nothing more is lost.
    assert_eq!(get("recovered", "pending"), 0.0);
    assert_eq!(get("end", "lost"), lost, "records lost after the recovery");
    // Every record handed to the writer is in the file or counted lost.
    assert_eq!(
        get("end", "lines") + lost,
        get("end", "handed"),
        "written + lost = handed: {}",
        r["end"]
    );
    // Whole records only, and those of the traffic after the recovery are
    // there, each flow once.
    let eve = whole_records(&run.dir.join("eve.json"));
    assert_eq!(eve.len() as f64, get("end", "lines"));
    let after = eve
        .iter()
        .filter(|e| {
            e["event_type"] == "flow"
                && e["src_ip"].as_str().is_some_and(|a| a.starts_with("10.1."))
        })
        .count();
    assert_eq!(after, 500, "flow records of the traffic after the recovery");
    assert_eq!(r["exit_code"], 0, "nothing unwritten at shutdown: {r}");
}

#[test]
fn sigterm_on_a_full_disk_exits_74_and_says_what_was_not_written() {
    if !harness::enabled("netns_disk disk-term") {
        return;
    }
    let disk = Tmpfs::mount("term", "1m");
    let run = harness::sensor_lab("netns_disk", "disk-term", &["--dir", disk.path()])
        .unwrap_or_else(|e| panic!("{e}"));
    let r = &run.result;
    assert_eq!(num(&r["open_flows"], "open flows"), 1000.0, "{r}");
    assert_eq!(r["exit_code"], 74, "exit after SIGTERM on a full disk: {r}");
    let log = r["log"].as_str().unwrap_or("");
    assert!(!log.contains("every flow was flushed"), "{log}");
    // The binary's last word: "N EVE records could not be written at
    // shutdown".
    let line = log
        .lines()
        .find(|l| l.contains("could not be written at shutdown"))
        .unwrap_or_else(|| panic!("no unwritten-records message: {log}"));
    let lost: u64 = line
        .trim_start_matches("egresswatch: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let written = whole_records(&run.dir.join("eve.json"));
    eprintln!(
        "netns_disk disk-term: {} written, {lost} not: {line}",
        written.len()
    );
    assert!(lost > 0, "{line}");
    // One record per open flow: written or reported.
    assert_eq!(written.len() as u64 + lost, 1000, "{line}");
}
