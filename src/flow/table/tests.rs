use super::*;
use crate::decode::{Packet, TcpFlags};
use crate::flow::Flow;
use crate::time::NANOS_PER_SEC;

fn packet(port: u16, secs: u64, flags: u8) -> Packet<'static> {
    let (src, dst) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    crate::flow::testkit::tcp_packet(src, port, dst, secs, flags)
}

fn insert(t: &mut FlowTable, port: u16, secs: u64) -> (u32, Vec<Flow>) {
    insert_as(t, port, secs, EvictionTier::Cheap)
}

fn insert_as(t: &mut FlowTable, port: u16, secs: u64, tier: EvictionTier) -> (u32, Vec<Flow>) {
    let p = packet(port, secs, TcpFlags::SYN);
    let (key, side) = p.flow_key();
    let mut evicted = Vec::new();
    let slot = t.find_or_insert(&key, || Flow::new(key, side, &p), &mut |f| evicted.push(f));
    if let Some(f) = t.get_mut(slot.index) {
        f.count(crate::analyzer::Dir::ToServer, &p);
    }
    t.touch(slot.index, tier);
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
    let idle = &[30 * crate::time::NANOS_PER_SEC; EvictionTier::COUNT];
    let first = t.pop_idle(TimeoutClass::TcpNew, now, idle).unwrap();
    assert_eq!(first.client().port, 1000);
    let second = t.pop_idle(TimeoutClass::TcpNew, now, idle).unwrap();
    assert_eq!(second.client().port, 1001);
    assert!(t.pop_idle(TimeoutClass::TcpNew, now, idle).is_none());
    assert_eq!(t.len(), 1);
}

#[test]
fn evicts_the_lowest_tier_first_and_the_longest_idle_within_it() {
    let mut t = FlowTable::new(4, ahash::RandomState::new());
    insert_as(&mut t, 1000, 1, EvictionTier::Protected);
    insert_as(&mut t, 1001, 2, EvictionTier::Plain);
    insert_as(&mut t, 1002, 3, EvictionTier::Cheap);
    insert_as(&mut t, 1003, 4, EvictionTier::Cheap);
    let mut order = Vec::new();
    for (i, port) in (2000..2004).enumerate() {
        // Each newcomer is protected, so the victims are the old flows.
        let (_, evicted) = insert_as(&mut t, port, 10 + i as u64, EvictionTier::Protected);
        order.extend(evicted.iter().map(|f| (f.client().port, f.tier())));
    }
    assert_eq!(
        order,
        [
            (1002, EvictionTier::Cheap),
            (1003, EvictionTier::Cheap),
            (1001, EvictionTier::Plain),
            (1000, EvictionTier::Protected),
        ]
    );
}

#[test]
fn a_flow_moves_to_the_list_of_its_new_tier() {
    let mut t = FlowTable::new(2, ahash::RandomState::new());
    let (a, _) = insert_as(&mut t, 1000, 1, EvictionTier::Cheap);
    insert_as(&mut t, 1001, 2, EvictionTier::Cheap);
    t.touch(a, EvictionTier::Protected);
    assert_eq!(t.get(a).map(Flow::tier), Some(EvictionTier::Protected));
    let (_, evicted) = insert_as(&mut t, 1002, 3, EvictionTier::Cheap);
    assert_eq!(
        evicted[0].client().port,
        1001,
        "the older flow is protected"
    );
    // Idle expiry still sees it, with its tier's own limit.
    let now = Timestamp::from_secs(100);
    let limits = [0, 0, 200 * crate::time::NANOS_PER_SEC];
    let cheap = t.pop_idle(TimeoutClass::TcpNew, now, &limits).unwrap();
    assert_eq!(cheap.client().port, 1002);
    assert!(t.pop_idle(TimeoutClass::TcpNew, now, &limits).is_none());
    let limits = [0, 0, 99 * crate::time::NANOS_PER_SEC];
    let protected = t.pop_idle(TimeoutClass::TcpNew, now, &limits).unwrap();
    assert_eq!(protected.client().port, 1000);
    assert!(t.is_empty());
}

#[test]
fn idle_expiry_merges_the_tiers_of_a_class_in_activity_order() {
    let mut t = FlowTable::new(10, ahash::RandomState::new());
    let tiers = [
        EvictionTier::Plain,
        EvictionTier::Cheap,
        EvictionTier::Protected,
        EvictionTier::Cheap,
    ];
    for (i, tier) in tiers.into_iter().enumerate() {
        insert_as(&mut t, 1000 + i as u16, i as u64, tier);
    }
    let limits = &[NANOS_PER_SEC; EvictionTier::COUNT];
    let mut ports = Vec::new();
    while let Some(f) = t.pop_idle(TimeoutClass::TcpNew, Timestamp::from_secs(60), limits) {
        ports.push(f.client().port);
    }
    assert_eq!(ports, [1000, 1001, 1002, 1003]);
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

#[test]
fn grows_over_several_chunks_without_moving_flows() {
    let n = 3 * CHUNK + 7;
    let mut t = FlowTable::new(n, ahash::RandomState::new());
    let mut at = Vec::new();
    for port in 0..n as u16 {
        let (index, evicted) = insert(&mut t, port, u64::from(port));
        assert!(evicted.is_empty());
        assert_eq!(index as usize, at.len(), "slots are handed out in order");
        at.push(index);
    }
    assert_eq!(t.len(), n);
    assert_eq!(t.slots.len(), n);
    assert_eq!(t.slots.chunks.len(), 4);
    for (port, &index) in at.iter().enumerate() {
        assert_eq!(t.get(index).map(|f| f.client().port), Some(port as u16));
    }
    let ports: Vec<u16> = t.iter().map(|f| f.client().port).collect();
    assert_eq!(
        ports,
        (0..n as u16).collect::<Vec<_>>(),
        "iteration in slot order"
    );
    let slots: Vec<u32> = t.iter_slots().map(|(slot, _)| slot).collect();
    assert_eq!(slots, at);
    assert!(t.slots.chunks.iter().all(|c| c.capacity() == CHUNK));
    // A removed slot in an inner chunk is reused before the slab grows.
    let removed = t.remove(at[CHUNK + 5]).map(|f| f.client().port);
    assert_eq!(removed, Some(CHUNK as u16 + 5));
    assert!(t.iter_slots().all(|(slot, _)| slot != at[CHUNK + 5]));
    let (index, _) = insert(&mut t, 60_000, 1);
    assert_eq!(index, at[CHUNK + 5]);
    assert_eq!(t.slots.len(), n);
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
