//! `egresswatch learn` end to end over captures the project generates: the
//! learned entries load with the shipped rules, cover the egress they were
//! learned from, never cover a refused flow, leave every incident detection
//! firing, and come out the same on every run.

use egresswatch::analyzer::dispatch::Protocols;
use egresswatch::analyzer::names::NameCache;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::gen::{self, CaptureFormat, GenOptions, TsPrecision};
use egresswatch::learn::render::{render, Context};
use egresswatch::learn::{refusing, LearnConfig, Learner, Target};
use egresswatch::policy::{self, Detection, RuleSet, SourceFile};
use egresswatch::source::file::ReplaySource;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

fn capture(name: &str, packets: u64) -> Vec<u8> {
    let opts = GenOptions {
        seed: Some(7),
        packets: Some(packets),
        flows: None,
        format: CaptureFormat::Pcap(TsPrecision::Micro),
    };
    let mut out = Vec::new();
    gen::generate(name, &opts, &mut out).expect("generate");
    out
}

/// The shipped rules, with hosts in no zone denied by default so that
/// every egress flow of the generated mix is judged as in a default-deny
/// zone.
fn deny_all() -> Vec<SourceFile> {
    policy::shipped()
        .into_iter()
        .map(|mut f| {
            f.text = f.text.replace(
                "default_egress = \"monitor\"",
                "default_egress = \"default-deny\"",
            );
            f
        })
        .collect()
}

fn load(files: Vec<SourceFile>) -> RuleSet {
    match policy::load_sources(files, None).into_result() {
        Ok((rules, _)) => rules,
        Err(d) => panic!("rules do not load:\n{}", d.render()),
    }
}

/// Replays the captures (one timeline) with the rules.
fn analyze(pcaps: &[&[u8]], rules: RuleSet) -> Vec<Event> {
    let names = Arc::new(NameCache::default());
    let protocols: Arc<Protocols> = Arc::from(egresswatch::analyzer::registry(
        names.clone(),
        &Default::default(),
    ));
    let shared = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
    let mut engine = Engine::analyzing(EngineConfig::default(), protocols, shared, names);
    let readers = pcaps.iter().enumerate().map(|(i, p)| {
        let r: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(p.to_vec()));
        (format!("capture-{i}"), r)
    });
    let mut source = ReplaySource::from_readers(readers);
    let mut events = Vec::new();
    egresswatch::driver::run(&mut source, &mut engine, &mut events).expect("replay");
    events
}

fn records(events: &[Event]) -> impl Iterator<Item = &FlowRecord> {
    events.iter().filter_map(|e| match e {
        Event::Flow(r) if !r.interim => Some(&**r),
        _ => None,
    })
}

fn learn(events: &[Event], rules: &RuleSet) -> (Learner, String) {
    let mut learner = Learner::new(LearnConfig::default());
    for r in records(events) {
        learner.observe_record(r, rules);
    }
    let text = render(
        &learner,
        rules,
        &Context {
            sources: vec!["generated".into()],
        },
    );
    (learner, text)
}

/// Alerts by detection, counting each flow once per detection.
fn alerts(events: &[Event]) -> BTreeMap<Detection, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        if let Event::Alert(a) = e {
            *out.entry(a.detection).or_default() += 1;
        }
    }
    out
}

/// The community ids of the flows that raised `d`.
fn flows_with(events: &[Event], d: Detection) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.detection == d => a.community_id.clone(),
            _ => None,
        })
        .collect()
}

/// Learned rules added to `base`; checked as `check-rules` would.
fn with_learned(base: Vec<SourceFile>, learned: &str) -> RuleSet {
    let mut files = base;
    files.push(SourceFile {
        name: "rules/zz-learned.toml".into(),
        text: learned.into(),
    });
    let loaded = policy::load_sources(files.clone(), None);
    assert!(
        !loaded.diagnostics.has_errors(),
        "{}",
        loaded.diagnostics.render()
    );
    load(files)
}

#[test]
fn round_trip_on_the_benchmark_mix_with_an_incident() {
    let bench = capture("bench", 30_000);
    let demo = capture("demo", 0);
    let base = load(deny_all());
    let before = analyze(&[&bench, &demo], base.clone());
    let (learner, text) = learn(&before, &base);
    assert!(learner.counts.learned > 500, "{:?}", learner.counts);
    assert!(learner.counts.refused >= 2, "{:?}", learner.counts);
    let entries = text.matches("[[allow]]").count();
    assert!((1..=300).contains(&entries), "{entries} entries");

    let learned = with_learned(deny_all(), &text);
    let after = analyze(&[&bench, &demo], learned);

    // Every incident detection fires exactly as before.
    let (a, b) = (alerts(&before), alerts(&after));
    for d in Detection::ALL {
        if !refusing(&egresswatch::policy::AlertState::of(&[d])).is_empty() {
            assert_eq!(a.get(&d), b.get(&d), "{d} before and after learning");
        }
    }
    assert!(b.get(&Detection::CryptoMining).is_some_and(|n| *n >= 1));
    assert!(b
        .get(&Detection::SshReverseForward)
        .is_some_and(|n| *n >= 1));

    // What still raises egress-not-allowed was refused, went to a refused
    // flow's destination, or is neither TCP nor UDP.
    let by_id: BTreeMap<&str, &FlowRecord> = records(&after)
        .map(|r| (r.meta.community_id.as_str(), r))
        .collect();
    let still = flows_with(&after, Detection::EgressNotAllowed);
    let mut unexplained = Vec::new();
    for id in &still {
        let r = by_id[id.as_str()];
        let refused = !refusing(&r.findings).is_empty();
        let tainted = learner.is_tainted(&Target::Addr(r.meta.dest.addr));
        let tcp_udp = matches!(r.meta.proto, 6 | 17);
        if !(refused || tainted || !tcp_udp) {
            unexplained.push(format!("{} -> {} {:?}", r.meta.src, r.meta.dest, r.names));
        }
    }
    assert!(unexplained.is_empty(), "{unexplained:#?}\n{text}");
    let was = flows_with(&before, Detection::EgressNotAllowed).len();
    assert!(still.len() * 10 < was, "{} of {was} remain", still.len());
}

#[test]
fn the_demo_incident_is_refused_and_nothing_is_proposed() {
    let demo = capture("demo", 0);
    let base = load(policy::shipped());
    let before = analyze(&[&demo], base.clone());
    let (learner, text) = learn(&before, &base);
    assert_eq!(learner.counts.refused, 2);
    assert_eq!(text.matches("[[allow]]").count(), 0, "{text}");
    assert!(text.contains("ssh-reverse-forward"), "{text}");
    assert!(text.contains("crypto-mining"), "{text}");
    let after = analyze(&[&demo], with_learned(policy::shipped(), &text));
    assert_eq!(alerts(&before), alerts(&after));
}

#[test]
fn learning_twice_gives_the_same_bytes() {
    let bench = capture("bench", 20_000);
    let base = load(deny_all());
    let one = learn(&analyze(&[&bench], base.clone()), &base).1;
    let two = learn(&analyze(&[&bench], base.clone()), &base).1;
    assert_eq!(one, two);
}

#[test]
fn the_command_writes_entries_that_check_rules_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("bench.pcap");
    std::fs::write(&pcap, capture("bench", 10_000)).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for f in deny_all() {
        let name = f.name.rsplit('/').next().unwrap().to_string();
        std::fs::write(rules.join(name), f.text).unwrap();
    }
    let learned = dir.path().join("learned.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(["learn", "--rules"])
        .arg(&rules)
        .arg("--out")
        .arg(&learned)
        .args(["--min-flows", "2"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&learned).unwrap();
    assert!(text.contains("--min-flows 2"), "{text}");
    std::fs::copy(&learned, rules.join("zz-learned.toml")).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .arg("check-rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(["learn", "--since", "yesterday"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
}
