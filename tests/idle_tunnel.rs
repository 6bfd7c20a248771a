//! An `ssh -N -R` tunnel silent for hours (generated: `gen::tunnel`) stays
//! one SSH flow: it is kept in the `tcp-tunnel` idle class, `ssh-long-lived`
//! fires at 1, 4, 8 and 12 h, and no later packet is an unknown TCP flow.

use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::flow::{EndReason, FlowConfig, TimeoutClass};
use egresswatch::gen::tunnel::idle_tunnel;
use egresswatch::gen::Capture;
use egresswatch::policy::{Alert, Detection};
use egresswatch::source::{Frame, LinkType};

fn replay(cap: &Capture, flow: FlowConfig) -> Vec<Event> {
    let cfg = EngineConfig {
        flow,
        community_seed: 0,
    };
    let mut engine = Engine::with_builtin_rules(cfg).expect("built-in rules load");
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

#[test]
fn generic_timeout_alone_would_cut_the_tunnel() {
    // With the tunnel class no longer than tcp-established, the gaps cut
    // the session: what the long class prevents.
    let mut flow = FlowConfig::default();
    flow.idle_seconds[TimeoutClass::TcpTunnel.index()] = 600;
    let events = replay(&idle_tunnel(7), flow);
    assert!(final_flows(&events).len() > 1);
}
