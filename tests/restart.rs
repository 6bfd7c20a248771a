//! A sensor restarted in the middle of a silent `ssh -N -R` tunnel
//! (generated: `gen::tunnel`): the engine that stops saves the tunnel into
//! the state file, a new engine reads it back, and the tunnel's later
//! packets continue the same flow: still SSH, the same flow id and start,
//! its alerts raised once across both runs, `ssh-long-lived` at the
//! session's real age.

use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::flow::{EndReason, FlowConfig};
use egresswatch::gen::tunnel::idle_tunnel;
use egresswatch::gen::GenPacket;
use egresswatch::policy::Detection;
use egresswatch::state::{self, State};

fn engine() -> Engine {
    let cfg = EngineConfig {
        flow: FlowConfig::default(),
        community_seed: 0,
    };
    Engine::with_builtin_rules(cfg).expect("built-in rules load")
}

/// Runs `packets` (numbered from `first`) through `engine`, then stops it
/// as the sensor does: the state is saved before every flow is ended.
fn run_and_stop(mut engine: Engine, packets: &[GenPacket], first: u64) -> (Vec<Event>, Vec<u8>) {
    let mut events = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        engine.process(&p.frame(), first + i as u64, &mut events);
    }
    let saved = State {
        saved_at: packets.last().map(|p| p.ts).unwrap_or_default(),
        flows: engine.save(),
        names: Vec::new(),
    };
    engine.finish(&mut events);
    (events, state::encode(&saved))
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

fn alerts(events: &[Event]) -> Vec<(Detection, Option<String>, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some((a.detection, a.threshold_hours.clone(), a.flow_id)),
            _ => None,
        })
        .collect()
}

/// The capture cut where the tunnel has been silent for a while, past its
/// first hour (the restart falls in a long gap).
fn cut(packets: &[GenPacket]) -> usize {
    let start = packets[0].ts;
    (1..packets.len())
        .find(|&i| {
            packets[i].ts.since(start) > 2 * 3_600_000_000_000
                && packets[i].ts.since(packets[i - 1].ts) > 600_000_000_000
        })
        .expect("a long gap after two hours")
}

#[test]
fn a_tunnel_outlives_a_restart_with_its_identity_age_and_alerts() {
    let cap = idle_tunnel(7);
    let at = cut(&cap.packets);
    let (before, file) = run_and_stop(engine(), &cap.packets[..at], 1);
    let state = state::decode(&file).expect("the state file reads back");
    assert_eq!(state.flows.len(), 1, "the tunnel is saved");

    let mut after_engine = engine();
    assert_eq!(after_engine.restore(state.flows), 1);
    let (after, _) = run_and_stop(after_engine, &cap.packets[at..], at as u64 + 1);

    let first = final_flows(&before);
    let second = final_flows(&after);
    assert_eq!((first.len(), second.len()), (1, 1), "one flow each run");
    let (a, b) = (first[0], second[0]);
    assert_eq!(a.reason, EndReason::Shutdown);
    assert_eq!(b.meta.app_proto, Some("ssh"), "still SSH after the restart");
    assert_eq!(b.meta.flow_id, a.meta.flow_id);
    assert_eq!(b.start, a.start, "the session keeps its real start");
    assert_eq!(b.resumed, 1);

    // Every alert once across the two runs; the thresholds at the real age.
    let all: Vec<_> = alerts(&before).into_iter().chain(alerts(&after)).collect();
    let once: std::collections::HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), once.len(), "an alert raised twice: {all:?}");
    let long: Vec<_> = all
        .iter()
        .filter(|x| x.0 == Detection::SshLongLived)
        .filter_map(|x| x.1.clone())
        .collect();
    assert_eq!(long, ["1", "4", "8", "12"]);
    assert!(alerts(&after)
        .iter()
        .all(|x| x.0 == Detection::SshLongLived));
    assert!(all.iter().all(|x| x.2 == a.meta.flow_id));
}

#[test]
fn without_the_state_the_tunnel_is_lost_after_a_restart() {
    // What the issue saw: a new sensor picks the tunnel up mid-stream and
    // no analyzer can claim it, the generic idle timeout cuts it again at
    // each gap, and the long-lived thresholds never fire.
    let cap = idle_tunnel(7);
    let at = cut(&cap.packets);
    let (after, _) = run_and_stop(engine(), &cap.packets[at..], at as u64 + 1);
    let flows = final_flows(&after);
    assert!(!flows.is_empty());
    assert!(flows.iter().all(|f| f.meta.app_proto != Some("ssh")));
    assert!(alerts(&after)
        .iter()
        .all(|x| x.0 != Detection::SshLongLived));
}

/// `egresswatch replay --state-file STATE FILE --eve -`: the EVE records.
fn replay_keeping_state(pcap: &std::path::Path, state: &std::path::Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .arg("replay")
        .arg(pcap)
        .arg("--state-file")
        .arg(state)
        .args(["--eve", "-", "-q"])
        .output()
        .expect("run egresswatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an EVE line"))
        .collect()
}

#[test]
fn replay_keeps_state_across_runs_and_ignores_a_damaged_file() {
    use egresswatch::gen::{write_pcap, TsPrecision};
    let dir = tempfile::tempdir().unwrap();
    let cap = idle_tunnel(7);
    let at = cut(&cap.packets);
    let (one, two) = (dir.path().join("one.pcap"), dir.path().join("two.pcap"));
    let write = |path: &std::path::Path, packets: &[GenPacket]| {
        let bytes = write_pcap(Vec::new(), packets, TsPrecision::Micro).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write(&one, &cap.packets[..at]);
    write(&two, &cap.packets[at..]);
    let state = dir.path().join("state");
    let first = replay_keeping_state(&one, &state);
    assert!(state.exists(), "the first run writes the state");
    let second = replay_keeping_state(&two, &state);
    let ssh_flow = |eve: &[serde_json::Value]| {
        eve.iter()
            .find(|r| r["event_type"] == "flow" && r["app_proto"] == "ssh")
            .map(|r| r["flow_id"].clone())
    };
    assert!(ssh_flow(&first).is_some());
    assert_eq!(
        ssh_flow(&second),
        ssh_flow(&first),
        "the same SSH flow goes on"
    );
    let signatures = |eve: &[serde_json::Value]| -> Vec<String> {
        eve.iter()
            .filter(|r| r["event_type"] == "alert")
            .map(|r| {
                r["egresswatch"]["detection"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    assert!(!signatures(&second).is_empty(), "the later thresholds");
    assert!(signatures(&second).iter().all(|d| d == "ssh-long-lived"));
    // A damaged file is ignored: the run goes on as a first start.
    let mut bytes = std::fs::read(&state).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&state, bytes).unwrap();
    let again = replay_keeping_state(&two, &state);
    assert_eq!(
        ssh_flow(&again),
        None,
        "without the state the tunnel is unknown"
    );
}
