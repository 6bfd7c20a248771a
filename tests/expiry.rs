//! Flow expiry on packet time: idle timeouts per class, interim records of
//! long-lived flows (which go on being tracked), the capacity bound with
//! eviction of the longest-idle flow, and TCP 5-tuple reuse.

use egresswatch::analyzer::dispatch::Protocols;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::flow::{EndReason, FlowConfig};
use egresswatch::gen::{Capture, Scenario};
use egresswatch::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn run(cap: &Capture, flow: FlowConfig) -> Vec<FlowRecord> {
    run_events(cap, flow)
        .into_iter()
        .filter_map(|e| match e {
            Event::Flow(f) => Some(*f),
            _ => None,
        })
        .collect()
}

fn run_events(cap: &Capture, flow: FlowConfig) -> Vec<Event> {
    let none: Arc<Protocols> = Arc::from(Vec::new());
    let cfg = EngineConfig {
        flow,
        community_seed: 0,
    };
    let mut engine = Engine::new(cfg, none, ahash::RandomState::new());
    let mut events = Vec::new();
    for (i, p) in cap.packets.iter().enumerate() {
        let frame = p.frame();
        engine.process(&frame, i as u64 + 1, &mut events);
    }
    engine.finish(&mut events);
    events
}

#[test]
fn long_lived_flow_gets_interim_records_and_stays_one_flow() {
    let mut s = Scenario::new(t0());
    let (c, srv) = (s.host("10.10.0.10"), s.remote("198.51.100.10"));
    {
        let mut tcp = s.tcp(c, 40000, srv, 22);
        tcp.handshake();
        // Keepalives every 100 s for just under 2 hours: well under the idle
        // timeout.
        for _ in 0..71 {
            tcp.think(Duration::from_secs(100)).send(b"k").recv(b"k");
        }
        tcp.close_fin();
    }
    let cap = s.finish();
    let flow = FlowConfig {
        active_seconds: 1800,
        ..FlowConfig::default()
    };
    let records = run(&cap, flow);
    let interims: Vec<_> = records.iter().filter(|r| r.interim).collect();
    assert_eq!(
        interims.len(),
        3,
        "at 30, 60 and 90 minutes; the flow ends before 120"
    );
    let last = records
        .iter()
        .find(|r| !r.interim)
        .expect("the final record");
    assert!(
        interims.iter().all(|r| r.meta.flow_id == last.meta.flow_id),
        "one flow id throughout"
    );
    assert!(
        interims
            .windows(2)
            .all(|w| w[0].dirs[0].pkts < w[1].dirs[0].pkts),
        "cumulative counts"
    );
    assert_eq!(last.reason, EndReason::Shutdown);
    assert_eq!(
        last.dirs[0].pkts + last.dirs[1].pkts,
        cap.truth.flows[0].total_packets()
    );
}

/// A consumer that sums the `flow` records' packet counters counts every
/// packet once, and every flow once, however many interim records the
/// long flows got (those are `flow_interim`, cumulative).
#[test]
fn summing_flow_records_counts_each_packet_once() {
    let mut s = Scenario::new(t0());
    let c = s.host("10.10.0.10");
    let servers = [s.remote("198.51.100.10"), s.remote("198.51.100.11")];
    for (i, srv) in servers.into_iter().enumerate() {
        let mut tcp = s.tcp(c, 40000 + i as u16, srv, 22);
        tcp.handshake();
        for _ in 0..40 + 20 * i {
            tcp.think(Duration::from_secs(90)).send(b"k").recv(b"k");
        }
        tcp.close_fin();
    }
    s.udp(c, 50000, servers[0], 53).send(b"q").recv(b"a");
    let cap = s.finish();
    let flow = FlowConfig {
        active_seconds: 600,
        ..FlowConfig::default()
    };
    let mut eve = Vec::new();
    for event in run_events(&cap, flow) {
        egresswatch::eve::append(&mut eve, &event);
    }
    let records: Vec<serde_json::Value> = eve
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let of_type = |t: &'static str| records.iter().filter(move |r| r["event_type"] == t);
    let pkts = |r: &serde_json::Value, key: &str| {
        r[key]["pkts_toserver"].as_u64().unwrap() + r[key]["pkts_toclient"].as_u64().unwrap()
    };
    let summed: u64 = of_type("flow").map(|r| pkts(r, "flow")).sum();
    assert_eq!(summed, cap.truth.frames, "every packet counted once");
    assert_eq!(of_type("flow").count(), cap.truth.flows.len());
    let interims: Vec<_> = of_type(egresswatch::eve::INTERIM).collect();
    assert!(interims.len() >= 8, "{} interim records", interims.len());
    for r in &interims {
        assert!(r.get("flow").is_none(), "no `flow` object: {r}");
        assert!(r["flow_interim"].get("reason").is_none(), "not an end: {r}");
        assert!(pkts(r, "flow_interim") > 0);
    }
}

#[test]
fn idle_flows_end_on_packet_time_per_class() {
    let mut s = Scenario::new(t0());
    let (c, dns, web) = (
        s.host("10.10.0.10"),
        s.remote("198.51.100.53"),
        s.remote("198.51.100.80"),
    );
    s.udp(c, 50000, dns, 53).send(b"q").recv(b"a");
    // A TCP flow that keeps packet time moving for 5 minutes.
    {
        let mut tcp = s.tcp(c, 40001, web, 443);
        tcp.handshake();
        for _ in 0..10 {
            tcp.think(Duration::from_secs(30)).send(b"x").recv(b"y");
        }
    }
    let cap = s.finish();
    let records = run(&cap, FlowConfig::default());
    let udp = records.iter().find(|r| r.meta.dest.port == 53).unwrap();
    assert_eq!(udp.reason, EndReason::Idle, "UDP idle timeout is 60 s");
    let tcp = records.iter().find(|r| r.meta.dest.port == 443).unwrap();
    assert_eq!(tcp.reason, EndReason::Shutdown, "still active at the end");
}

#[test]
fn a_full_table_evicts_the_longest_idle_flow() {
    let mut s = Scenario::new(t0());
    let (c, srv) = (s.host("10.10.0.10"), s.remote("198.51.100.10"));
    for (i, port) in [41000u16, 41001, 41002].into_iter().enumerate() {
        s.udp(c, port, srv, 9000)
            .at(Duration::from_secs(i as u64))
            .send(b"ping");
    }
    let cap = s.finish();
    let records = run(
        &cap,
        FlowConfig {
            capacity: 2,
            ..FlowConfig::default()
        },
    );
    let evicted: Vec<_> = records
        .iter()
        .filter(|r| r.reason == EndReason::Evicted)
        .collect();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].meta.src.port, 41000, "the longest idle goes");
    assert_eq!(
        records.len(),
        3,
        "nothing is lost: the evicted flow is reported"
    );
}

#[test]
fn a_new_connection_on_a_closed_tuple_is_a_new_flow() {
    let mut s = Scenario::new(t0());
    let (c, srv) = (s.host("10.10.0.10"), s.remote("198.51.100.10"));
    s.tcp(c, 40000, srv, 80)
        .handshake()
        .send(b"GET /")
        .recv(b"200")
        .close_fin();
    s.tcp(c, 40000, srv, 80)
        .at(Duration::from_secs(5))
        .handshake()
        .send(b"GET /2")
        .close_fin();
    let cap = s.finish();
    let records = run(&cap, FlowConfig::default());
    assert_eq!(records.len(), 2);
    let reused = records
        .iter()
        .find(|r| r.reason == EndReason::Reused)
        .expect("the first connection ends by reuse");
    let mut eve = Vec::new();
    egresswatch::eve::append(&mut eve, &Event::Flow(Box::new(reused.clone())));
    let eve: serde_json::Value = serde_json::from_slice(&eve).unwrap();
    assert_eq!(eve["flow"]["reason"], "tcp_reuse", "Suricata's name");
    assert_eq!(eve["egresswatch"]["end_reason"], "reused");
    assert!(records
        .iter()
        .all(|r| r.tcp.as_ref().unwrap().conn_state == "SF"));
}
