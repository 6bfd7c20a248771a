//! An `ssh -N -R` tunnel silent for hours (generated: `gen::tunnel`) stays
//! one SSH flow: it is kept in the `tcp-tunnel` idle class, `ssh-long-lived`
//! fires at 1, 4, 8 and 12 h, and no later packet is an unknown TCP flow.

use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::flow::{EndReason, FlowConfig, TimeoutClass};
use egresswatch::gen::tunnel::idle_tunnel;
use egresswatch::gen::Capture;
use egresswatch::policy::{Alert, Detection};
use egresswatch::stats::Stats;

fn replay(cap: &Capture, flow: FlowConfig) -> Vec<Event> {
    replay_counted(cap, flow).0
}

fn replay_counted(cap: &Capture, flow: FlowConfig) -> (Vec<Event>, Stats) {
    let cfg = EngineConfig {
        flow,
        community_seed: 0,
    };
    let mut engine = Engine::with_builtin_rules(cfg).expect("built-in rules load");
    let mut events = Vec::new();
    for (i, p) in cap.packets.iter().enumerate() {
        let frame = p.frame();
        engine.process(&frame, i as u64 + 1, &mut events);
    }
    engine.finish(&mut events);
    (events, engine.stats().clone())
}

fn final_flows(events: &[Event]) -> Vec<&FlowRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Flow(f) if !f.interim => Some(&**f),
            _ => None,
        })
        .collect()
}

fn long_lived(events: &[Event]) -> Vec<&Alert> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.detection == Detection::SshLongLived => Some(&**a),
            _ => None,
        })
        .collect()
}

fn thresholds(alerts: &[&Alert]) -> Vec<String> {
    alerts
        .iter()
        .filter_map(|a| a.threshold_hours.clone())
        .collect()
}

#[test]
fn silent_tunnel_stays_one_ssh_flow_past_every_threshold() {
    let cap = idle_tunnel(7);
    let events = replay(&cap, FlowConfig::default());
    let flows = final_flows(&events);
    assert_eq!(flows.len(), 1, "one flow record: {flows:#?}");
    let flow = flows[0];
    assert_eq!(flow.meta.app_proto, Some("ssh"));
    assert_eq!(flow.reason, EndReason::Shutdown);
    let hours = flow.end.since(flow.start) / 3_600_000_000_000;
    assert!(hours >= 12, "the flow spans {hours} h");
    let alerts = long_lived(&events);
    assert_eq!(thresholds(&alerts), ["1", "4", "8", "12"]);
    assert!(alerts.iter().all(|a| a.flow_id == flow.meta.flow_id));
    for (alert, hours) in alerts.iter().zip([1u64, 4, 8, 12]) {
        let age = alert.ts.since(flow.start) / 1_000_000_000;
        assert!(age >= hours * 3600, "{hours} h alert at {age} s");
    }
}

/// The tunnel class cut to the generic timeout: every gap ends the flow.
fn short_tunnel_class() -> FlowConfig {
    let mut flow = FlowConfig::default();
    flow.idle_seconds[TimeoutClass::TcpTunnel.index()] = 600;
    flow
}

#[test]
fn a_tunnel_cut_by_idle_timeout_continues_with_its_identity_and_age() {
    let (events, stats) = replay_counted(&idle_tunnel(7), short_tunnel_class());
    let flows = final_flows(&events);
    assert!(flows.len() > 4, "the gaps cut the flow: {}", flows.len());
    assert_eq!(stats.flows_resumed, flows.len() as u64 - 1);
    assert_eq!(stats.flows_created, 1);
    let first = flows[0];
    assert_eq!(first.reason, EndReason::Idle);
    for (i, f) in flows.iter().enumerate() {
        assert_eq!(f.meta.app_proto, Some("ssh"), "record {i} is unknown");
        assert_eq!(f.meta.flow_id, first.meta.flow_id, "record {i}");
        assert_eq!(f.start, first.start, "record {i} keeps the real start");
        assert_eq!(usize::from(f.resumed), i, "record {i}");
    }
    // Each threshold once, at the session's real age, not again after a cut.
    let alerts = long_lived(&events);
    assert_eq!(thresholds(&alerts), ["1", "4", "8", "12"]);
    for (alert, hours) in alerts.iter().zip([1u64, 4, 8, 12]) {
        let age = alert.ts.since(first.start) / 1_000_000_000;
        assert!(age >= hours * 3600, "{hours} h alert at {age} s");
        assert_eq!(alert.flow_id, first.meta.flow_id);
    }
    let raised = |e: &Event| match e {
        Event::Alert(a) => Some((a.detection, a.threshold_hours.clone())),
        _ => None,
    };
    let all: Vec<_> = events.iter().filter_map(raised).collect();
    let once: std::collections::HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), once.len(), "an alert raised twice: {all:?}");
}

#[test]
fn without_the_memory_the_continuations_are_unidentified_tcp() {
    // What the issue saw: with the long class cut and nothing remembered,
    // the later packets are new mid-stream flows no analyzer claims.
    let flow = FlowConfig {
        ended_capacity: 0,
        ..short_tunnel_class()
    };
    let events = replay(&idle_tunnel(7), flow);
    let flows = final_flows(&events);
    assert!(flows.len() > 4);
    assert!(flows[1..]
        .iter()
        .all(|f| f.meta.app_proto == Some("failed") && f.meta.flow_id != flows[0].meta.flow_id));
    assert_eq!(thresholds(&long_lived(&events)), Vec::<String>::new());
}
