//! Rule loading time against the number of entries in one file: 20,000
//! allow entries in one file and the same entries split over 100 files,
//! loaded one after the other in one run (what `check-rules`, `explain`,
//! `replay --rules`, the sensor's start and every SIGHUP do). Loading is
//! linear when the two take about the same time; the figure that matters
//! is their ratio, not the absolute times.
//!
//! `cargo bench --bench rules`; figures are recorded in
//! docs/PERFORMANCE.md.

use egresswatch::policy::check_rules;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const ENTRIES: usize = 20_000;
const FILES: usize = 100;
const RUNS: usize = 3;

const CLUSTER: &str = r#"[cluster]
internal = ["10.0.0.0/8"]

[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16"]
egress = "default-deny"
"#;

/// Allow entries `range` as TOML, one /24 each.
fn entries(range: std::ops::Range<usize>) -> String {
    let mut out = String::new();
    for i in range {
        let _ = write!(
            out,
            "[[allow]]\nname = \"e{i}\"\nzones = [\"gpu\"]\ncidrs = [\"198.{}.{}.0/24\"]\nports = [443]\nprotocol = \"tls\"\nreason = \"bench entry {i}\"\n\n",
            i / 256 % 256,
            i % 256
        );
    }
    out
}

/// A rules directory holding `ENTRIES` allow entries in `files` files.
fn layout(root: &Path, name: &str, files: usize) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).expect("create rules dir");
    std::fs::write(dir.join("00-cluster.toml"), CLUSTER).expect("write cluster");
    let per = ENTRIES / files;
    for f in 0..files {
        let text = entries(f * per..(f + 1) * per);
        std::fs::write(dir.join(format!("allow-{f:03}.toml")), text).expect("write entries");
    }
    dir
}

/// The fastest of `RUNS` loads of `dir`.
fn time_load(dir: &Path) -> Duration {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let report = check_rules(dir, None);
            let took = started.elapsed();
            assert_eq!(report.exit_code, 0, "{}", report.text);
            took
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then one quick load checks that the bench still works.
    let benching = std::env::args().any(|a| a == "--bench");
    let root = tempfile::tempdir().expect("temp dir");
    let one = layout(root.path(), "one-file", 1);
    let split = layout(root.path(), "split", FILES);
    if !benching {
        assert_eq!(check_rules(&split, None).exit_code, 0);
        return;
    }
    let t_one = time_load(&one);
    let t_split = time_load(&split);
    println!(
        "rules/{ENTRIES} entries in 1 file      {:>10.3} s",
        t_one.as_secs_f64()
    );
    println!(
        "rules/{ENTRIES} entries in {FILES} files   {:>10.3} s",
        t_split.as_secs_f64()
    );
    println!(
        "rules/ratio one file : split          {:>10.2}",
        t_one.as_secs_f64() / t_split.as_secs_f64().max(1e-9)
    );
}
