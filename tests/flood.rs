//! A full flow table under a SYN flood: eviction takes what costs an
//! attacker nothing (the spoofed SYNs) and keeps the identified SSH
//! session, so `ssh-long-lived` still fires; the pressure itself is one
//! `flow-table-pressure` alert; the demo and the benchmark traffic at the
//! default capacity raise none.

use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, EventSink, FlowRecord};
use egresswatch::flow::{EndReason, EvictionTier, FlowConfig};
use egresswatch::gen::proto::ssh::{self, KexLists, Role};
use egresswatch::gen::{flood, BenchConfig, Capture, FrameSink, Rng, Scenario};
use egresswatch::policy::{Alert, Detection};
use egresswatch::source::{Frame, LinkType};
use egresswatch::time::{Timestamp, NANOS_PER_SEC};
use std::time::Duration;

const CAPACITY: usize = 1000;
const SSH_PORT: u16 = 40022;

fn t0() -> Timestamp {
    Timestamp::from_secs(1_750_000_000)
}

/// An SSH session from a training node to an external host, quiet but for
/// a keepalive every 5 minutes for 70 minutes, and `syns` spoofed SYNs in
/// 10 s starting a minute after the keepalive at 30 minutes.
fn ssh_under_flood(syns: u32) -> Capture {
    let mut s = Scenario::with_seed(t0(), 7);
    let (c, srv) = (s.host("10.10.0.10"), s.remote("203.0.113.50"));
    {
        let mut rng = Rng::new(7);
        let mut t = s.tcp(c, SSH_PORT, srv, 22);
        t.handshake();
        let mut b = Vec::new();
        ssh::banner(&mut b, ssh::OPENSSH_9_2_DEBIAN);
        t.send(&b).recv(&b);
        b.clear();
        ssh::kexinit(&mut b, &mut rng, &KexLists::openssh_9_2(Role::Client));
        t.send(&b);
        b.clear();
        ssh::kexinit(&mut b, &mut rng, &KexLists::openssh_9_2(Role::Server));
        t.recv(&b);
        for _ in 0..14 {
            t.think(Duration::from_secs(300))
                .send(&[0x5a; 36])
                .recv(&[0xa5; 36]);
        }
    }
    let at = Duration::from_secs(31 * 60);
    flood::syn_flood(&mut s, at, syns, Duration::from_secs(10), 1);
    s.finish()
}

#[derive(Default)]
struct Seen {
    flows: Vec<FlowRecord>,
    alerts: Vec<Alert>,
}

impl EventSink for Seen {
    fn event(&mut self, event: Event) {
        match event {
            Event::Flow(f) => self.flows.push(*f),
            Event::Alert(a) => self.alerts.push(*a),
            Event::App(_) | Event::Incident(_) => {}
        }
    }
}

impl Seen {
    fn detections(&self, d: Detection) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| a.detection == d).collect()
    }
}

/// Feeds frames to an engine with the built-in rules.
struct Feed {
    engine: Engine,
    seen: Seen,
    index: u64,
}

impl Feed {
    fn new(capacity: usize) -> Feed {
        let cfg = EngineConfig {
            flow: FlowConfig {
                capacity,
                ..FlowConfig::default()
            },
            community_seed: 0,
        };
        Feed {
            engine: Engine::with_builtin_rules(cfg).expect("built-in rules load"),
            seen: Seen::default(),
            index: 0,
        }
    }

    fn finish(mut self) -> (Engine, Seen) {
        self.engine.finish(&mut self.seen);
        (self.engine, self.seen)
    }
}

impl FrameSink for Feed {
    fn frame(&mut self, ts: Timestamp, data: &[u8]) -> std::io::Result<()> {
        self.index += 1;
        let frame = Frame {
            ts,
            link: LinkType::Ethernet,
            data,
            orig_len: data.len() as u32,
            input: 0,
        };
        self.engine.process(&frame, self.index, &mut self.seen);
        Ok(())
    }
}

#[test]
fn identified_ssh_survives_a_syn_flood_and_long_lived_still_fires() {
    let syns = 3 * CAPACITY as u32;
    let cap = ssh_under_flood(syns);
    let mut feed = Feed::new(CAPACITY);
    let flood_end = t0().add_nanos((31 * 60 + 10) * NANOS_PER_SEC);
    let mut tracked_after = None;
    for p in &cap.packets {
        feed.frame(p.ts, &p.data).unwrap();
        if tracked_after.is_none() && p.ts.since(flood_end) >= 20 * NANOS_PER_SEC {
            tracked_after = Some(feed.engine.flows_active());
        }
    }
    let (engine, seen) = feed.finish();

    let ssh: Vec<_> = seen
        .flows
        .iter()
        .filter(|r| r.meta.dest.port == 22 && r.meta.src.port == SSH_PORT)
        .filter(|r| !r.interim)
        .collect();
    assert_eq!(ssh.len(), 1, "one SSH flow from start to end: {ssh:?}");
    assert_eq!(ssh[0].reason, EndReason::Shutdown);
    let long = seen.detections(Detection::SshLongLived);
    assert_eq!(long.len(), 1, "{:?}", seen.alerts);
    assert_eq!(long[0].flow_id, ssh[0].meta.flow_id);

    let stats = engine.stats();
    let evicted = stats.flows_evicted;
    assert_eq!(evicted[EvictionTier::Protected.index()], 0);
    assert_eq!(evicted[EvictionTier::Plain.index()], 0);
    assert!(
        evicted[EvictionTier::Cheap.index()] >= u64::from(syns) - CAPACITY as u64,
        "{evicted:?}"
    );
    assert_eq!(evicted.iter().sum::<u64>(), stats.ended(EndReason::Evicted));
    assert_eq!(
        tracked_after,
        Some(1),
        "under pressure the SYNs went idle after 5 s, not 30 s"
    );

    let pressure = seen.detections(Detection::FlowTablePressure);
    assert_eq!(pressure.len(), 1, "one alert per episode");
    let alert = pressure[0];
    let summary = &alert.evidence.summary;
    assert!(
        summary.starts_with(&format!("flow table full (capacity {CAPACITY}, ")),
        "{summary}"
    );
    assert!(summary.contains("plain 0, protected 0"), "{summary}");
    assert!(summary.contains("no source stands out"), "{summary}");
    assert!(
        alert.src.addr.to_string().starts_with("10.200."),
        "{alert:?}"
    );
    let after = alert.ts.since(alert.evidence.first_ts);
    assert!(
        (NANOS_PER_SEC..=2 * NANOS_PER_SEC).contains(&after),
        "reported {after} ns after the first eviction"
    );
    assert_eq!(alert.to_eve()["alert"]["signature_id"], 1_750_010);
}

#[test]
fn a_disabled_or_suppressed_pressure_alert_is_not_written_again() {
    // Two floods an hour apart less a minute: the second episode is inside
    // the suppression window.
    let mut s = Scenario::with_seed(t0(), 3);
    flood::syn_flood(&mut s, Duration::ZERO, 2000, Duration::from_secs(5), 1);
    let later = Duration::from_secs(59 * 60);
    flood::syn_flood(&mut s, later, 2000, Duration::from_secs(5), 2);
    let cap = s.finish();
    let mut feed = Feed::new(CAPACITY);
    cap.write_to(&mut feed).unwrap();
    let (engine, seen) = feed.finish();
    assert_eq!(seen.detections(Detection::FlowTablePressure).len(), 1);
    assert_eq!(engine.stats().alerts_suppressed, 1);
}

#[test]
fn demo_and_bench_traffic_at_the_default_capacity_raise_no_pressure() {
    let mut demo = Feed::new(FlowConfig::default().capacity);
    egresswatch::gen::demo::demo(egresswatch::gen::demo::DEMO_SEED)
        .write_to(&mut demo)
        .unwrap();
    let mut bench = Feed::new(FlowConfig::default().capacity);
    let cfg = BenchConfig::new(300_000, egresswatch::gen::bench::DEFAULT_SEED);
    egresswatch::gen::bench::run(&cfg, &mut bench).unwrap();
    for (name, feed) in [("demo", demo), ("bench", bench)] {
        let (engine, seen) = feed.finish();
        if name == "demo" {
            assert!(!seen.alerts.is_empty(), "the demo does alert");
        }
        assert!(
            seen.detections(Detection::FlowTablePressure).is_empty(),
            "{name}"
        );
        assert_eq!(engine.stats().flows_evicted, [0; 3], "{name}");
    }
}
