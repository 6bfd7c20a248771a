use super::*;
use crate::decode::{Fragment, Packet, TcpFlags, TcpInfo, Transport};
use crate::flow::key::Endpoint;
use crate::flow::Flow;

fn packet(port: u16, secs: u64, flags: u8) -> Packet<'static> {
    Packet {
        ts: Timestamp::from_secs(secs),
        src: Endpoint {
            addr: "10.0.0.1".parse().unwrap(),
            port,
        },
        dst: Endpoint {
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
        },
        proto: 6,
        transport: Transport::Tcp(TcpInfo {
            flags: TcpFlags(flags),
            seq: 1,
            ack: 0,
            window: 0,
        }),
        frame_len: 60,
        ip_len: 40,
        payload_len: 0,
        payload: &[],
        fragment: Fragment::None,
        one_way: false,
        icmp_inner: None,
    }
}

fn insert(t: &mut FlowTable, port: u16, secs: u64) -> (u32, Vec<Flow>) {
    let p = packet(port, secs, TcpFlags::SYN);
    let (key, side) = p.flow_key();
    let mut evicted = Vec::new();
    let slot = t.find_or_insert(&key, || Flow::new(key, side, &p), &mut |f| evicted.push(f));
    if let Some(f) = t.get_mut(slot.index) {
        f.count(crate::analyzer::Dir::ToServer, &p);
    }
    t.touch(slot.index);
    (slot.index, evicted)
}

#[test]
fn finds_what_it_inserted() {
    let mut t = FlowTable::new(10, ahash::RandomState::new());
    let (a, _) = insert(&mut t, 1000, 1);
    let (b, _) = insert(&mut t, 1001, 2);
    let (a2, _) = insert(&mut t, 1000, 3);
    assert_eq!(a, a2);
    assert_ne!(a, b);
    assert_eq!(t.len(), 2);
}

#[test]
fn evicts_the_longest_idle_when_full() {
    let mut t = FlowTable::new(2, ahash::RandomState::new());
    insert(&mut t, 1000, 1);
    insert(&mut t, 1001, 2);
    insert(&mut t, 1000, 3); // 1001 is now the longest idle
    let (_, evicted) = insert(&mut t, 1002, 4);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].client().port, 1001);
    assert_eq!(t.len(), 2);
}

#[test]
fn idle_flows_pop_oldest_first_per_class() {
    let mut t = FlowTable::new(10, ahash::RandomState::new());
    for (i, port) in [1000, 1001, 1002].into_iter().enumerate() {
        insert(&mut t, port, i as u64);
    }
    let now = Timestamp::from_secs(31);
    let idle = 30 * crate::time::NANOS_PER_SEC;
    let first = t.pop_idle(TimeoutClass::TcpNew, now, idle).unwrap();
    assert_eq!(first.client().port, 1000);
    let second = t.pop_idle(TimeoutClass::TcpNew, now, idle).unwrap();
    assert_eq!(second.client().port, 1001);
    assert!(t.pop_idle(TimeoutClass::TcpNew, now, idle).is_none());
    assert_eq!(t.len(), 1);
}

#[test]
fn removed_slots_are_reused_and_stay_consistent() {
    let mut t = FlowTable::new(100, ahash::RandomState::new());
    for round in 0..5u64 {
        for port in 0..50u16 {
            insert(&mut t, 2000 + port, round * 100 + u64::from(port));
        }
        while t.pop_longest_idle().is_some() {}
        assert!(t.is_empty());
    }
    assert!(t.slots.len() <= 50);
}

proptest::proptest! {
    /// Against a model: after any sequence of inserts and idle pops, the
    /// table holds exactly the model's flows.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec((0u16..20, 0u64..5), 1..200)) {
        let mut t = FlowTable::new(8, ahash::RandomState::new());
        let mut model: std::collections::BTreeMap<u16, u64> = Default::default();
        let mut now = 0u64;
        // Activity order: time never goes back here, so the latest touch
        // is the most recent activity (ties broken by touch order).
        for (touch, (port, step)) in ops.into_iter().enumerate() {
            now += step;
            if !model.contains_key(&port) && model.len() == 8 {
                let (&oldest, _) = model.iter().min_by_key(|(_, &seen)| seen).unwrap();
                model.remove(&oldest);
            }
            let (_, evicted) = insert(&mut t, port, now);
            model.insert(port, touch as u64);
            proptest::prop_assert!(evicted.len() <= 1);
            proptest::prop_assert_eq!(t.len(), model.len());
        }
        let mut left = Vec::new();
        while let Some(f) = t.pop_longest_idle() {
            left.push(f.client().port);
        }
        left.sort_unstable();
        let want: Vec<u16> = model.keys().copied().collect();
        proptest::prop_assert_eq!(left, want);
    }
}

/// Memory per tracked flow without analysis state: the slab node, its list
/// links (8 bytes) and the index entry (4 bytes and a control byte). Kept
/// at or under 256 bytes.
#[test]
fn flow_memory_budget() {
    let per_flow = std::mem::size_of::<Option<Flow>>() + 8 + 5;
    eprintln!("{per_flow} bytes per tracked flow");
    assert!(per_flow <= 256, "{per_flow} bytes per flow");
}
