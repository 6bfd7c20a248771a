//! Shared by the `tests/netns_*.rs` tests: runs the namespace lab
//! (`tests/lab/run.sh`), replays its captures through the `egresswatch`
//! binary and reads the EVE output back. Included with
//! `#[path = "lab/harness.rs"] mod harness;`.
//!
//! The lab needs root and is opt-in: `EGRESSWATCH_NETNS=1` as root runs it;
//! `EGRESSWATCH_LAB_CAPTURES=DIR` checks captures made earlier by
//! `tests/lab/run.sh DIR` instead (no root needed). Otherwise every test
//! says it skipped and passes, so `cargo test` as a normal user is green.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One capture of the manifest with the EVE records egresswatch wrote for it.
pub struct Capture {
    pub entry: Value,
    pub eve: Result<Vec<Value>, String>,
}

pub struct Lab {
    pub dir: PathBuf,
    pub manifest: Value,
    pub captures: BTreeMap<String, Capture>,
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Whether the lab may run here; prints why not.
pub fn enabled(test: &str) -> bool {
    if std::env::var("EGRESSWATCH_NETNS").as_deref() != Ok("1") {
        eprintln!(
            "{test}: skipped (set EGRESSWATCH_NETNS=1 and run as root to run the namespace lab)"
        );
        return false;
    }
    if !is_root() {
        eprintln!(
            "{test}: skipped (EGRESSWATCH_NETNS=1 but not root: the lab needs network namespaces)"
        );
        return false;
    }
    true
}

/// Runs `tests/lab/run.sh` into a fresh directory under the target dir with
/// the given extra arguments (scenario prefixes, options).
pub fn run_lab(tag: &str, args: &[String]) -> Result<PathBuf, String> {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("netns-{tag}-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/run.sh");
    eprintln!("{tag}: running the lab into {}", dir.display());
    let status = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    // Failed scenarios are listed in the manifest and reported by the tests;
    // the other captures are still checked.
    if !dir.join("manifest.json").exists() {
        return Err(format!("the lab wrote no manifest (exit {status})"));
    }
    Ok(dir)
}

/// The lab's captures of one `kind` (`ssh`, `app`) or of every kind, each
/// replayed through egresswatch.
pub fn load(dir: &Path, kind: Option<&str>) -> Result<Lab, String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut captures = BTreeMap::new();
    for entry in manifest["captures"].as_array().cloned().unwrap_or_default() {
        let entry_kind = entry["kind"].as_str().unwrap_or("ssh");
        if kind.is_some_and(|k| k != entry_kind) {
            continue;
        }
        let name = entry["scenario"].as_str().unwrap_or("?").to_string();
        let eve = replay(&dir.join(entry["file"].as_str().unwrap_or("")));
        captures.insert(name, Capture { entry, eve });
    }
    Ok(Lab {
        dir: dir.to_path_buf(),
        manifest,
        captures,
    })
}

/// The lab for one test binary: captures made earlier, or a lab run of the
/// given scenarios; `None` when the lab is not enabled here.
pub fn lab_for(tag: &str, kind: &str, scenarios: &[&str]) -> Option<Result<Lab, String>> {
    if let Ok(dir) = std::env::var("EGRESSWATCH_LAB_CAPTURES") {
        return Some(load(Path::new(&dir), Some(kind)));
    }
    if !enabled(tag) {
        return None;
    }
    let args: Vec<String> = scenarios.iter().map(|s| s.to_string()).collect();
    Some(run_lab(tag, &args).and_then(|dir| load(&dir, Some(kind))))
}

/// `egresswatch replay FILE --eve -`, parsed line by line.
pub fn replay(pcap: &Path) -> Result<Vec<Value>, String> {
    replay_with(pcap, &[])
}

/// `egresswatch replay FILE --eve - ARGS...`, parsed line by line.
pub fn replay_with(pcap: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<Value>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .arg("replay")
        .arg(pcap)
        .args(["--eve", "-"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run egresswatch: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "egresswatch replay {} exited {}: {}",
            pcap.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_eve(&String::from_utf8_lossy(&out.stdout))
}

/// The alerts among `events` whose detection is one of `names`.
pub fn alerts_of(events: Vec<Value>, names: &[&str]) -> Vec<Value> {
    events
        .into_iter()
        .filter(|r| {
            let d = r["egresswatch"]["detection"].as_str().unwrap_or("");
            r["event_type"] == "alert" && names.contains(&d)
        })
        .collect()
}

pub fn parse_eve(text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad EVE line {l:?}: {e}")))
        .collect()
}

/// Runs `check` on every capture whose scenario name starts with one of
/// `prefixes` and fails with all problems found; returns quietly when the
/// lab is not enabled (`lab` is `None`).
pub fn check_group(
    lab: Option<&Result<Lab, String>>,
    prefixes: &[&str],
    check: fn(&Capture, &[Value]) -> Vec<String>,
) {
    let Some(lab) = lab else { return };
    let lab = match lab {
        Ok(lab) => lab,
        Err(e) => panic!("namespace lab failed: {e}"),
    };
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, cap) in &lab.captures {
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        checked += 1;
        match &cap.eve {
            Err(e) => problems.push(format!("{name}: {e}")),
            Ok(events) => problems.extend(
                check(cap, events)
                    .into_iter()
                    .map(|p| format!("{name}: {p}")),
            ),
        }
    }
    assert!(
        checked > 0,
        "no capture in {} matches {prefixes:?}",
        lab.dir.display()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The lab ran every scenario it was asked for, with no capture loss.
pub fn check_complete(lab: Option<&Result<Lab, String>>, at_least: usize) {
    let Some(lab) = lab else { return };
    let lab = lab
        .as_ref()
        .unwrap_or_else(|e| panic!("namespace lab failed: {e}"));
    let failures = lab.manifest["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(failures.is_empty(), "lab scenarios failed: {failures:#?}");
    assert!(
        lab.captures.len() >= at_least,
        "only {} captures",
        lab.captures.len()
    );
    for (name, cap) in &lab.captures {
        assert!(
            cap.entry["outer"].is_object(),
            "{name}: no outer connection"
        );
        assert_eq!(
            cap.entry["observed"]["tcpdump"]["dropped_by_kernel"], 0,
            "{name}"
        );
    }
}

// ---- the live sensor (tests/lab/sensor_lab.py) ------------------------------

/// What one run of `sensor_lab.py MODE` left: its result.json and the EVE
/// records.
pub struct SensorRun {
    pub dir: PathBuf,
    pub result: Value,
    pub eve: Vec<Value>,
}

/// Runs `tests/lab/sensor_lab.py MODE` (bounded in time) into a fresh
/// directory for test binary `tag`; an error if it reports one.
pub fn sensor_lab(tag: &str, mode: &str, extra: &[&str]) -> Result<SensorRun, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}-{mode}-{}",
        tag.replace('_', "-"),
        std::process::id()
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/sensor_lab.py");
    eprintln!("{tag}: sensor_lab.py {mode} into {}", dir.display());
    let status = Command::new("timeout")
        .args(["--signal=TERM", "--kill-after=20", "400", "python3"])
        .arg(&script)
        .arg(mode)
        .arg(&dir)
        .args(["--bin", env!("CARGO_BIN_EXE_egresswatch")])
        .args(extra)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let text = std::fs::read_to_string(dir.join("result.json"))
        .map_err(|e| format!("sensor_lab.py {mode} wrote no result.json (exit {status}): {e}"))?;
    let result: Value = serde_json::from_str(&text).map_err(|e| format!("result.json: {e}"))?;
    let eve = parse_eve(&std::fs::read_to_string(dir.join("eve.json")).unwrap_or_default())?;
    if let Some(err) = result["error"].as_str() {
        return Err(format!(
            "sensor_lab.py {mode}: {err} (see {})",
            dir.display()
        ));
    }
    Ok(SensorRun { dir, result, eve })
}

/// [`sensor_lab`] for test binary `tag` when the lab is enabled here
/// (`None`, after saying so, when not); panics with its error.
pub fn sensor_lab_for(tag: &str, mode: &str, extra: &[&str]) -> Option<SensorRun> {
    if !enabled(&format!("{tag} {mode}")) {
        return None;
    }
    Some(sensor_lab(tag, mode, extra).unwrap_or_else(|e| panic!("{e}")))
}

/// A number of result.json (or of a metrics snapshot in it).
pub fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// The sum of the samples of a metrics snapshot that `sample` names: a
/// whole sample (`name{labels}`), a family (`name`), or a family with its
/// first labels (`name{a="x"`); 0 if there are none.
pub fn metric(snapshot: &Value, sample: &str) -> f64 {
    let matches = |k: &str| {
        k == sample
            || k.strip_prefix(sample)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(','))
    };
    snapshot
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| matches(k))
                .filter_map(|(_, v)| v.as_f64())
                .sum()
        })
        .unwrap_or(0.0)
}

// ---- reading the EVE output --------------------------------------------------

/// Whether an EVE record is about the given connection (the manifest's
/// `outer`: client, client_port, server, server_port).
pub fn outer_matches(ev: &Value, outer: &Value) -> bool {
    let ev = flow_endpoints(ev);
    ev["src_ip"] == outer["client"]
        && ev["src_port"] == outer["client_port"]
        && ev["dest_ip"] == outer["server"]
        && ev["dest_port"] == outer["server_port"]
}

/// Where a record names the flow's client and server: an alert's top
/// level follows the packet that raised it (Suricata's `direction`), its
/// `flow` object the flow.
pub fn flow_endpoints(ev: &Value) -> &Value {
    match &ev["flow"] {
        f if ev["event_type"] == "alert" && f.is_object() => f,
        _ => ev,
    }
}

/// Records of one `event_type` about the capture's outer connection.
pub fn records<'a>(events: &'a [Value], outer: &Value, event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == event_type && outer_matches(e, outer))
        .collect()
}

pub fn is_set(v: &Value) -> bool {
    !v.is_null()
}

/// Whether an inference (`Evidence`) cites packets that exist in the capture.
pub fn evidence_ok(v: &Value, frames: u64) -> bool {
    let Some(pkts) = v["packets"].as_array() else {
        return false;
    };
    !pkts.is_empty()
        && pkts
            .iter()
            .all(|p| p.as_u64().is_some_and(|i| i >= 1 && i <= frames))
}

/// Whether `needle` is a string anywhere inside `v`.
pub fn json_contains_str(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s == needle,
        Value::Array(a) => a.iter().any(|x| json_contains_str(x, needle)),
        Value::Object(o) => o.values().any(|x| json_contains_str(x, needle)),
        _ => false,
    }
}

/// Alerts about the outer connection, by `egresswatch.detection`.
pub fn detections(events: &[Value], outer: &Value) -> Vec<String> {
    records(events, outer, "alert")
        .iter()
        .filter_map(|a| a["egresswatch"]["detection"].as_str().map(str::to_string))
        .collect()
}
