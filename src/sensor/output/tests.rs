use super::*;
use crate::eve::spool::fault::{event, ids, Disk};

fn output(disk: &mut Disk) -> (Output<&mut Disk>, Metrics) {
    let metrics = Metrics::new();
    (Output::new(disk, metrics.clone()), metrics)
}

fn sample(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn records_wait_for_a_full_disk_and_are_written_when_space_returns() {
    let mut disk = Disk::file(2000);
    let (mut out, metrics) = output(&mut disk);
    let t0 = Instant::now();
    (0..100).for_each(|n| out.push(&event(n)));
    out.write(t0);
    assert!(out.failing.is_some());
    let before = out.spool.get_mut().records().len() as u64;
    assert!(before > 0 && before < 100);
    (100..200).for_each(|n| out.push(&event(n)));
    assert!(!out.due(true, t0), "retried before the back-off");
    assert!(out.due(true, t0 + RETRY_FIRST));

    out.spool.get_mut().space = usize::MAX;
    out.write(t0 + RETRY_FIRST);
    assert!(out.failing.is_none());
    assert_eq!(out.finish(), Lost::default());
    assert_eq!(ids(&disk.records()), (0..200).collect::<Vec<_>>());
    assert_eq!(sample(&metrics, "egresswatch_eve_write_errors_total"), 1.0);
    assert_eq!(sample(&metrics, "egresswatch_eve_records_lost_total"), 0.0);
}

#[test]
fn retries_back_off_up_to_the_longest_wait() {
    let mut disk = Disk::file(0);
    let (mut out, metrics) = output(&mut disk);
    out.push(&event(0));
    let mut now = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..10 {
        out.write(now);
        let next = out.failing.as_ref().unwrap().retry_at;
        waits.push(next - now);
        assert_eq!(out.wait(now), IDLE.min(next - now));
        now = next;
    }
    assert_eq!(waits[0], RETRY_FIRST);
    assert_eq!(waits[1], RETRY_FIRST * 2);
    assert_eq!(*waits.last().unwrap(), RETRY_MAX);
    assert_eq!(sample(&metrics, "egresswatch_eve_write_errors_total"), 10.0);
    assert_eq!(sample(&metrics, "egresswatch_eve_records_pending"), 1.0);
}

#[test]
fn records_beyond_the_limit_are_lost_and_counted() {
    let mut disk = Disk::file(0);
    let (mut out, metrics) = output(&mut disk);
    out.limit = 10_000;
    let t0 = Instant::now();
    (0..1000).for_each(|n| out.push(&event(n)));
    out.write(t0);
    let kept = out.spool.pending_records();
    assert!(kept > 0 && kept < 1000, "{kept}");
    assert_eq!(out.lost, 1000 - kept);

    out.spool.get_mut().space = usize::MAX;
    out.write(t0 + RETRY_FIRST);
    (1000..1010).for_each(|n| out.push(&event(n)));
    let lost = out.finish();
    assert_eq!(
        lost,
        Lost {
            total: 1000 - kept,
            at_shutdown: 0
        }
    );
    assert_eq!(
        sample(&metrics, "egresswatch_eve_records_lost_total"),
        lost.total as f64
    );
    // The oldest records waited; the newest beyond the limit were dropped.
    let want: Vec<u64> = (0..kept).chain(1000..1010).collect();
    assert_eq!(ids(&disk.records()), want);
}

#[test]
fn shutdown_on_a_full_disk_reports_what_was_not_written() {
    let mut disk = Disk::file(3000);
    let (mut out, metrics) = output(&mut disk);
    (0..600).for_each(|n| out.push(&event(n)));
    let lost = out.finish();
    let written = disk.records().len() as u64;
    assert_eq!(
        lost,
        Lost {
            total: 600 - written,
            at_shutdown: 600 - written
        }
    );
    assert_eq!(
        sample(&metrics, "egresswatch_eve_records_lost_total"),
        lost.total as f64
    );
    assert_eq!(sample(&metrics, "egresswatch_eve_records_pending"), 0.0);
}

/// The sensor's writer thread gives alerts their incident and workload as
/// the replay's [`crate::hosts::HostSink`] does: same ids, the incident
/// record before its alert, the open incidents in the metrics.
#[test]
fn the_writer_assigns_incidents_as_the_replay_does() {
    use crate::engine::{Engine, EngineConfig};
    use crate::hosts::{HostSink, HostStage};
    let rules = crate::policy::load_sources(crate::policy::shipped(), None)
        .rules
        .expect("shipped rules");
    let rules: crate::judge::SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
    let inventory = crate::inventory::shared(
        crate::inventory::Inventory::parse("inv.csv", "address,pod\n10.10.0.10,trainer\n").unwrap(),
    );
    let stage = || HostStage::new(rules.clone()).with_inventory(inventory.clone());
    // What the workers send: the engine's events, host stage not yet run.
    let cap = crate::gen::demo::demo(crate::gen::demo::DEMO_SEED);
    let mut engine = Engine::with_builtin_rules(EngineConfig::default()).unwrap();
    let mut raw: Vec<Event> = Vec::new();
    for (i, p) in cap.packets.iter().enumerate() {
        let frame = p.frame();
        engine.process(&frame, i as u64 + 1, &mut raw);
    }
    engine.finish(&mut raw);
    // The replay's way.
    let mut replayed: Vec<Event> = Vec::new();
    let mut sink = HostSink::new(&mut replayed, stage());
    for e in raw.iter().cloned() {
        crate::event::EventSink::event(&mut sink, e);
    }
    let mut want = Vec::new();
    for e in &replayed {
        crate::eve::append(&mut want, e);
    }
    // The sensor's way.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eve.json");
    let metrics = Metrics::new();
    let (tx, rx) = crossbeam_channel::unbounded();
    let names = Arc::new(crate::analyzer::names::NameCache::default());
    let writer = Writer {
        rx,
        target: EveTarget::open(Some(&path)).unwrap(),
        metrics: metrics.clone(),
        ssh: SshClassifier::new(rules.clone(), names),
        reopen: Arc::new(AtomicBool::new(false)),
        learn: None,
        stamp: crate::eve::Stamp::default(),
        hosts: stage(),
    };
    for e in raw {
        tx.send(e).unwrap();
    }
    drop(tx);
    assert_eq!(writer.run(), Lost::default());
    let got = std::fs::read(&path).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    let text = String::from_utf8(got).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event_type"] == "alert")
        .collect();
    assert!(alerts.len() >= 5);
    let id = &alerts[0]["egresswatch"]["incident_id"];
    assert!(id.as_str().unwrap().starts_with("ewi-"));
    for a in &alerts {
        assert_eq!(&a["egresswatch"]["incident_id"], id, "{a}");
        assert_eq!(a["egresswatch"]["workload"]["pod"], "trainer", "{a}");
    }
    let open = metrics.encode();
    assert!(
        open.contains("egresswatch_incidents_open{severity=\"high\",zone=\"gpu-training\"} 1"),
        "{open}"
    );
}
