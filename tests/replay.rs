//! End-to-end replay over captures the project generates itself: flow
//! counts against the generator's ground truth, the binary's bad-input
//! handling and exit codes, and the policy options.

use egresswatch::analyzer::dispatch::Protocols;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::Event;
use egresswatch::gen::{self, BenchConfig, Capture, CaptureFormat, GenOptions, TsPrecision};
use egresswatch::source::file::ReplaySource;
use std::io::Write;
use std::process::{Command, Output};
use std::sync::Arc;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egresswatch"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run egresswatch")
}

/// Replays `pcap` through an engine with every analyzer and no policy.
fn replay(pcap: Vec<u8>) -> Vec<Event> {
    let names = Arc::new(egresswatch::analyzer::names::NameCache::default());
    let protocols: Arc<Protocols> =
        Arc::from(egresswatch::analyzer::registry(names, &Default::default()));
    let mut engine = Engine::new(
        EngineConfig::default(),
        protocols,
        ahash::RandomState::new(),
    );
    let reader: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(pcap));
    let mut source = ReplaySource::from_readers([("test".to_string(), reader)]);
    let mut events = Vec::new();
    egresswatch::driver::run(&mut source, &mut engine, &mut events).expect("replay");
    events
}

/// Every flow the generator made is one flow record with the generator's
/// per-direction packet and byte counts, and the originator it chose.
fn assert_matches_truth(cap_truth: &gen::Truth, events: &[Event]) {
    let records: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), cap_truth.flows.len(), "flow count");
    for t in &cap_truth.flows {
        let r = records
            .iter()
            .find(|r| {
                let (k, _) = egresswatch::flow::key::FlowKey::new(
                    r.meta.src,
                    r.meta.dest,
                    r.meta.proto,
                    false,
                );
                k == t.key()
            })
            .unwrap_or_else(|| panic!("no record for {:?}", t.key()));
        if t.handshake {
            assert_eq!(
                (r.meta.src, r.meta.dest),
                (t.client, t.server),
                "originator of {}",
                t.label
            );
        }
        let (ts, tc) = if r.meta.src == t.client {
            (0, 1)
        } else {
            (1, 0)
        };
        let got = |d: usize| {
            (
                r.dirs[d].pkts,
                r.dirs[d].bytes,
                r.dirs[d].ip_bytes,
                r.dirs[d].payload_bytes,
            )
        };
        let want = |d: usize| {
            (
                t.packets[d],
                t.frame_bytes[d],
                t.ip_bytes[d],
                t.payload_bytes[d],
            )
        };
        assert_eq!(got(ts), want(0), "toserver counts of {}", t.label);
        assert_eq!(got(tc), want(1), "toclient counts of {}", t.label);
    }
}

#[test]
fn demo_flows_match_the_generator_truth() {
    let cap: Capture = gen::demo::demo(gen::demo::DEMO_SEED);
    let events = replay(cap.pcap(TsPrecision::Micro));
    assert_matches_truth(&cap.truth, &events);
}

#[test]
fn bench_mix_flows_match_the_generator_truth() {
    let mut cfg = BenchConfig::new(40_000, 7);
    cfg.flows = 4_000;
    cfg.truth = true;
    let mut packets = Vec::new();
    let report = gen::bench::run(&cfg, &mut packets).unwrap();
    let pcap = gen::write_pcap(Vec::new(), &packets, TsPrecision::Nano).unwrap();
    let events = replay(pcap);
    let truth = report.truth.expect("truth requested");
    assert_matches_truth(&truth, &events);
}

#[test]
fn pcapng_and_pcap_give_the_same_records() {
    let opts = |format| GenOptions {
        seed: Some(3),
        packets: Some(3_000),
        flows: Some(300),
        format,
    };
    let mut a = Vec::new();
    gen::generate(
        "bench",
        &opts(CaptureFormat::Pcap(TsPrecision::Micro)),
        &mut a,
    )
    .unwrap();
    let mut b = Vec::new();
    gen::generate(
        "bench",
        &opts(CaptureFormat::Pcapng(TsPrecision::Micro)),
        &mut b,
    )
    .unwrap();
    let flows = |events: Vec<Event>| -> Vec<_> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Flow(f) => Some((f.meta.flow_id, f.dirs)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(flows(replay(a)), flows(replay(b)));
}

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_inputs_get_one_clear_line_and_a_distinct_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let out = run(&["replay", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(66));
    assert!(
        stderr(&out).contains("missing.pcap: cannot open"),
        "{}",
        stderr(&out)
    );

    let out = run(&["replay", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(66));
    assert!(stderr(&out).contains("is a directory"));

    let empty = temp_file(b"");
    let out = run(&["replay", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("empty file"));

    let text = temp_file(b"this is not a capture at all\n");
    let out = run(&["replay", text.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("not a pcap or pcapng capture"));
}

#[test]
fn truncated_capture_reports_what_it_read() {
    let pcap = egresswatch::gen::demo_pcap();
    let cut = temp_file(&pcap[..pcap.len() / 2]);
    let out = run(&["replay", cut.path().to_str().unwrap(), "--eve", "-"]);
    assert_eq!(out.status.code(), Some(65));
    let err = stderr(&out);
    assert!(err.contains("truncated after packet"), "{err}");
    let flows = String::from_utf8_lossy(&out.stdout)
        .matches("\"event_type\":\"flow\"")
        .count();
    assert!(flows > 0, "flows read before the cut are reported");
}

#[test]
fn stdin_and_several_files_form_one_timeline() {
    let demo = egresswatch::gen::demo_pcap();
    let opts = GenOptions {
        seed: Some(9),
        packets: Some(2_000),
        flows: Some(200),
        format: CaptureFormat::default(),
    };
    let mut bench = Vec::new();
    gen::generate("bench", &opts, &mut bench).unwrap();
    let bench_file = temp_file(&bench);
    let demo_file = temp_file(&demo);
    let flows = |args: &[&str], stdin: &[u8]| -> usize {
        let mut child = bin()
            .args(["replay", "-q", "--eve", "-"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .matches("\"event_type\":\"flow\"")
            .count()
    };
    let demo_alone = flows(&[demo_file.path().to_str().unwrap()], b"");
    let bench_alone = flows(&[bench_file.path().to_str().unwrap()], b"");
    let both = flows(&["-", bench_file.path().to_str().unwrap()], &demo);
    assert_eq!(both, demo_alone + bench_alone);

    // Each flow names the file it began in (standard input: none).
    let (d, b) = (
        demo_file.path().to_str().unwrap(),
        bench_file.path().to_str().unwrap(),
    );
    let named = |args: &[&str]| -> Vec<String> {
        let out = run(&[&["replay", "-q", "--eve", "-"], args].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["event_type"] == "flow")
            .map(|r| r["pcap_filename"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let files = named(&[d, b]);
    let count = |name: &str| files.iter().filter(|f| *f == name).count();
    assert_eq!((count(d), count(b)), (demo_alone, bench_alone));
}

#[test]
fn fail_on_exits_3_when_an_alert_meets_the_threshold() {
    let file = temp_file(&egresswatch::gen::demo_pcap());
    let path = file.path().to_str().unwrap();
    let out = run(&["replay", path, "--fail-on", "high"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ssh-reverse-forward"),
        "alert lines on stderr"
    );
    let out = run(&[
        "replay",
        "-q",
        path,
        "--bpf",
        "udp port 53",
        "--fail-on",
        "high",
    ]);
    assert_eq!(out.status.code(), Some(0), "DNS alone raises nothing high");
}

#[test]
fn bpf_filters_and_bad_filters_are_config_errors() {
    let file = temp_file(&egresswatch::gen::demo_pcap());
    let path = file.path().to_str().unwrap();
    let out = run(&["replay", path, "--bpf", "tcp port", "-q"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("tcp port"));
    let out = run(&["replay", path, "--bpf", "udp port 53", "--eve", "-", "-q"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().all(|l| l.contains("\"dest_port\":53")),
        "{text}"
    );
}

#[test]
fn check_rules_reports_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.toml"),
        "[cluster]\ninternal = [\"10.0.0.0/8\", \"10.300.0.0/16\"]\n",
    )
    .unwrap();
    let out = run(&["check-rules", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("cluster.toml:2:"), "{text}");
    assert!(
        text.contains('^'),
        "a caret under the offending text: {text}"
    );
    let shipped = run(&["check-rules", concat!(env!("CARGO_MANIFEST_DIR"), "/rules")]);
    assert_eq!(
        shipped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shipped.stdout)
    );
}

#[test]
fn demo_shows_the_incident() {
    let out = run(&["demo"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for detection in [
        "ssh-reverse-forward",
        "ssh-reverse-session",
        "ssh-reverse-interactive",
        "crypto-mining",
    ] {
        assert!(text.contains(detection), "{detection} in:\n{text}");
    }
}

/// `demo --eve -` leaves standard output to EVE alone, so `| jq` works:
/// the report goes to stderr, and `-q` drops it.
#[test]
fn demo_eve_on_stdout_is_only_json_lines() {
    let out = run(&["demo", "--eve", "-"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut types = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        types.insert(v["event_type"].as_str().unwrap().to_string());
    }
    assert!(
        types.contains("alert") && types.contains("flow"),
        "{types:?}"
    );
    assert!(
        stderr(&out).contains("ssh-reverse-forward"),
        "report on stderr"
    );
    let quiet = run(&["demo", "--eve", "-", "-q"]);
    assert!(quiet.status.success());
    assert_eq!(quiet.stdout.len(), text.len());
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));
}

/// Every alert carries what an analyst needs without a join on `flow_id`:
/// `direction`, the `flow` summary (its client is the flow record's
/// `src_ip`), the SSH object of SSH flows, MITRE metadata; every record
/// names the sensor and the capture.
#[test]
fn alerts_are_self_contained_and_records_name_sensor_and_capture() {
    let file = temp_file(&egresswatch::gen::demo_pcap());
    let path = file.path().to_str().unwrap();
    let out = run(&["replay", "-q", path, "--eve", "-", "--sensor-name", "rack7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records
        .iter()
        .all(|r| r["host"] == "rack7" && r["pcap_filename"] == path));
    let flow_src = |id: &serde_json::Value| {
        records
            .iter()
            .find(|r| r["event_type"] == "flow" && r["flow_id"] == *id)
            .map(|r| r["src_ip"].clone())
    };
    let alerts: Vec<_> = records
        .iter()
        .filter(|r| r["event_type"] == "alert")
        .collect();
    assert!(alerts.len() >= 4);
    let mut directions = std::collections::BTreeSet::new();
    for a in &alerts {
        assert!(a["egresswatch"]["incident_id"].is_string(), "{a}");
        if a["egresswatch"]["discovery"].is_object() {
            // A host finding (the demo's sweep) is about many flows: it
            // names a sample, not one flow's summary.
            continue;
        }
        let d = a["direction"].as_str().unwrap_or("at the end");
        directions.insert(d.to_string());
        let f = &a["flow"];
        assert_eq!(Some(f["src_ip"].clone()), flow_src(&a["flow_id"]), "{a}");
        assert!(f["pkts_toserver"].as_u64().unwrap() > 0, "{a}");
        assert!(f["start"].is_string(), "{a}");
        assert!(a["alert"]["metadata"]["mitre_technique_id"][0].is_string());
        if a["app_proto"] == "ssh" {
            assert!(a["ssh"]["client"].is_object(), "ssh object inline: {a}");
        }
        if d == "to_client" {
            assert_eq!(a["src_ip"], f["dest_ip"], "the packet's addresses: {a}");
        }
    }
    assert!(directions.contains("to_server"), "{directions:?}");
}

/// An engine with every analyzer and the built-in rules.
fn judging_engine() -> Engine {
    Engine::with_builtin_rules(EngineConfig::default()).expect("built-in rules load")
}

/// The EVE bytes of a replay of `pcap` on one thread.
fn eve_of(pcap: &[u8]) -> Vec<u8> {
    let mut engine = judging_engine();
    let mut source = memory_source(pcap);
    let mut eve = egresswatch::eve::EveWriter::new(Vec::new());
    egresswatch::driver::run(&mut source, &mut engine, &mut eve).expect("replay");
    eve.finish().expect("eve")
}

/// The EVE bytes of a replay of `pcap` on `n` engines, as `egresswatch
/// replay --threads n` runs it.
fn sharded_eve_of(pcap: &[u8], n: usize) -> Vec<u8> {
    let rules = egresswatch::policy::load_sources(egresswatch::policy::shipped(), None)
        .rules
        .expect("built-in rules load");
    let rules = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
    let names = egresswatch::analyzer::names::NameCache::default();
    let (mut engines, turns) = egresswatch::driver::sharded::engines(n, &names, |view| {
        let protocols = egresswatch::analyzer::registry(view.clone(), &Default::default());
        Engine::analyzing(
            EngineConfig::default(),
            Arc::from(protocols),
            rules.clone(),
            view,
        )
    });
    let mut source = memory_source(pcap);
    let mut eve = egresswatch::eve::EveWriter::new(Vec::new());
    egresswatch::driver::sharded::run_sharded(&mut source, &mut engines, &turns, &mut eve)
        .expect("replay");
    eve.finish().expect("eve")
}

/// The benchmark mix, 30,000 packets of 3,000 flows, as a pcap.
fn bench_pcap(seed: u64) -> Vec<u8> {
    let mut cfg = BenchConfig::new(30_000, seed);
    cfg.flows = 3_000;
    let mut packets = Vec::new();
    gen::bench::run(&cfg, &mut packets).unwrap();
    gen::write_pcap(Vec::new(), &packets, TsPrecision::Micro).unwrap()
}

/// `pcap` as a replay source read from memory.
fn memory_source(pcap: &[u8]) -> ReplaySource {
    let reader: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(pcap.to_vec()));
    ReplaySource::from_readers([("test".to_string(), reader)])
}

fn sorted_lines(eve: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = eve.split(|&b| b == b'\n').collect();
    lines.sort_unstable();
    lines
}

#[test]
fn sharded_replay_writes_the_same_bytes_for_any_number_of_engines() {
    let pcap = bench_pcap(12);
    let one = sharded_eve_of(&pcap, 1);
    for n in [2, 3, 4] {
        assert!(
            one == sharded_eve_of(&pcap, n),
            "{n} engines wrote other bytes"
        );
    }
    // The same records as a single engine's replay, in an order that
    // differs only among flows ended at the same frame.
    let single = eve_of(&pcap);
    let text = String::from_utf8(one.clone()).unwrap();
    for kind in ["\"flow\"", "\"dns\"", "\"tls\"", "\"alert\"", "\"ssh\""] {
        assert!(text.contains(&format!("\"event_type\":{kind}")), "{kind}");
    }
    assert!(sorted_lines(&one) == sorted_lines(&single));
}
