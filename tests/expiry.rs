//! Flow expiry on packet time: idle timeouts per class, interim records of
//! long-lived flows (which go on being tracked), the capacity bound with
//! eviction of the longest-idle flow, and TCP 5-tuple reuse.

use egresswatch::analyzer::dispatch::Protocols;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::flow::{EndReason, FlowConfig};
use egresswatch::gen::{Capture, Scenario};
use egresswatch::source::{Frame, LinkType};
use egresswatch::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn run(cap: &Capture, flow: FlowConfig) -> Vec<FlowRecord> {
    let none: Arc<Protocols> = Arc::from(Vec::new());
    let cfg = EngineConfig {
        flow,
        community_seed: 0,
    };
    let mut engine = Engine::new(cfg, none, ahash::RandomState::new());
    let mut events = Vec::new();
    for (i, p) in cap.packets.iter().enumerate() {
        let frame = Frame {
            ts: p.ts,
            link: LinkType::Ethernet,
            data: &p.data,
            orig_len: p.data.len() as u32,
        };
        engine.process(&frame, i as u64 + 1, &mut events);
    }
    engine.finish(&mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Flow(f) => Some(*f),
            _ => None,
        })
        .collect()
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
    assert!(records.iter().any(|r| r.reason == EndReason::Reused));
    assert!(records
        .iter()
        .all(|r| r.tcp.as_ref().unwrap().conn_state == "SF"));
}
