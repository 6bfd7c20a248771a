//! The DNS name cache: which names a client asked for that resolved to an
//! address. A later flow from that client to that address is labelled with
//! those names, which is how host-name allowlists apply to connections that
//! carry no name themselves (SSH, raw TCP, Stratum).
//!
//! Keyed by (client, address) and never by address alone: a name another
//! client resolved says nothing about this client's flow, and a shared CDN
//! address must not pick up every name anyone mapped to it (Cilium #31803).
//! Several names of one client on one shared address are all kept, up to
//! [`NameCacheConfig::max_names_per_key`].
//!
//! Time is packet time. Entries expire at `now + ttl`, with the TTL clamped
//! to a floor (clients and applications cache answers longer than they are
//! told: Cilium's `tofqdns-min-ttl` makes the same call) and a ceiling.
//! The map is shared by all worker threads (`DashMap`); each engine of a
//! sharded replay holds a view of it that takes its turn
//! ([`crate::flow::shard::Turns`]) before it reads or writes, so the map
//! sees what one engine would have done, in that order. Bounded in size:
//! when full, expired entries are dropped first, then those closest to
//! expiry, in one sweep that frees an eighth of the capacity so sweeps stay
//! rare.

use crate::flow::shard::Turns;
use crate::time::{Timestamp, NANOS_PER_SEC};
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Limits of a [`NameCache`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NameCacheConfig {
    /// Most (client, address) entries kept.
    pub capacity: usize,
    /// Most names kept per (client, address).
    pub max_names_per_key: usize,
    /// TTLs below this are raised to it.
    pub min_ttl_secs: u32,
    /// TTLs above this are lowered to it.
    pub max_ttl_secs: u32,
}

impl Default for NameCacheConfig {
    fn default() -> Self {
        NameCacheConfig {
            capacity: 262_144,
            max_names_per_key: 8,
            min_ttl_secs: 3_600,
            max_ttl_secs: 86_400,
        }
    }
}

/// One name of the cache as the sensor's state file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedName {
    pub client: IpAddr,
    pub addr: IpAddr,
    pub name: String,
    #[serde(with = "crate::time::nanos")]
    pub expires: Timestamp,
}

/// One name with the packet time it stops being valid.
#[derive(Clone, Debug)]
struct NameTtl {
    name: Arc<str>,
    expires: Timestamp,
}

type Key = (IpAddr, IpAddr);

/// Names per (client, resolved address), shared across threads.
#[derive(Debug)]
pub struct NameCache {
    shared: Arc<Shared>,
    /// The engine this view belongs to, where engines take turns.
    turn: Option<(Arc<Turns>, usize)>,
}

#[derive(Debug)]
struct Shared {
    /// A boxed slice, not a Vec: 16 bytes an entry in the table, not 24,
    /// and no spare room.
    map: DashMap<Key, Box<[NameTtl]>, ahash::RandomState>,
    config: NameCacheConfig,
    sweeping: AtomicBool,
    evicted: AtomicU64,
}

impl Default for NameCache {
    fn default() -> Self {
        NameCache::new(NameCacheConfig::default())
    }
}

impl NameCache {
    pub fn new(config: NameCacheConfig) -> Self {
        let config = NameCacheConfig {
            capacity: config.capacity.max(1),
            max_names_per_key: config.max_names_per_key.max(1),
            min_ttl_secs: config.min_ttl_secs.min(config.max_ttl_secs),
            ..config
        };
        let shared = Shared {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            config,
            sweeping: AtomicBool::new(false),
            evicted: AtomicU64::new(0),
        };
        NameCache {
            shared: Arc::new(shared),
            turn: None,
        }
    }

    /// The same cache, for engine `me` of `turns`: every read and write
    /// first waits for that engine's turn.
    pub fn taking_turns(&self, turns: Arc<Turns>, me: usize) -> NameCache {
        NameCache {
            shared: Arc::clone(&self.shared),
            turn: Some((turns, me)),
        }
    }

    fn wait_turn(&self) -> &Shared {
        if let Some((turns, me)) = &self.turn {
            turns.wait(*me);
        }
        &self.shared
    }

    pub fn config(&self) -> &NameCacheConfig {
        &self.shared.config
    }

    /// Records that `client` resolved `name` to `addr` at `now`, valid for
    /// `ttl_secs` (clamped). The name is stored lowercase without a
    /// trailing dot; an empty name is ignored.
    pub fn insert(&self, client: IpAddr, addr: IpAddr, name: &str, ttl_secs: u32, now: Timestamp) {
        let Some(name) = normalize(name) else {
            return;
        };
        self.wait_turn().insert((client, addr), name, ttl_secs, now);
    }

    /// The names `client` resolved to `addr` that are still valid at `now`,
    /// in the order they were first seen.
    pub fn lookup(&self, client: IpAddr, addr: IpAddr, now: Timestamp) -> Vec<Arc<str>> {
        self.wait_turn()
            .map
            .get(&(client, addr))
            .map(|names| {
                names
                    .iter()
                    .filter(|n| n.expires > now)
                    .map(|n| Arc::clone(&n.name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every name held, as (client, address, name, expires): what the
    /// sensor's state file keeps.
    pub fn saved(&self) -> Vec<SavedName> {
        let map = &self.wait_turn().map;
        let mut out = Vec::with_capacity(map.len());
        for entry in map.iter() {
            let (client, addr) = *entry.key();
            out.extend(entry.value().iter().map(|n| SavedName {
                client,
                addr,
                name: n.name.to_string(),
                expires: n.expires,
            }));
        }
        out
    }

    /// Takes back names [`NameCache::saved`] gave, at `now`: those still
    /// valid, within this cache's bounds.
    pub fn restore(&self, names: &[SavedName], now: Timestamp) {
        for n in names.iter().filter(|n| n.expires > now) {
            let secs = n.expires.since(now).div_ceil(NANOS_PER_SEC);
            self.insert(
                n.client,
                n.addr,
                &n.name,
                secs.min(u64::from(u32::MAX)) as u32,
                now,
            );
        }
    }

    /// Number of (client, address) entries, expired ones included until a
    /// sweep drops them.
    pub fn len(&self) -> usize {
        self.shared.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.map.is_empty()
    }

    /// Entries dropped to make room (not counting expired ones).
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn insert(&self, key: Key, name: String, ttl_secs: u32, now: Timestamp) {
        let ttl = ttl_secs.clamp(self.config.min_ttl_secs, self.config.max_ttl_secs);
        let expires = now.add_nanos(u64::from(ttl) * NANOS_PER_SEC);
        if !self.map.contains_key(&key) && self.map.len() >= self.config.capacity {
            self.make_room(now);
        }
        let mut entry = self.map.entry(key).or_default();
        let mut names = std::mem::take(&mut *entry).into_vec();
        add_name(
            &mut names,
            name,
            expires,
            now,
            self.config.max_names_per_key,
        );
        *entry = names.into_boxed_slice();
    }

    /// Drops expired entries, then, if the map is still above seven eighths
    /// of its capacity, the entries whose last name expires soonest. One
    /// thread sweeps at a time; the others insert meanwhile (the map may
    /// briefly exceed its capacity by a few entries per thread).
    fn make_room(&self, now: Timestamp) {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        self.map.retain(|_, names| {
            if names.iter().any(|n| n.expires <= now) {
                let mut kept = std::mem::take(names).into_vec();
                kept.retain(|n| n.expires > now);
                *names = kept.into_boxed_slice();
            }
            !names.is_empty()
        });
        let target = self.config.capacity - self.config.capacity / 8;
        let len = self.map.len();
        if len > target {
            self.evict_soonest(len - target);
        }
        self.sweeping.store(false, Ordering::Release);
    }

    fn evict_soonest(&self, count: usize) {
        let mut expiries: Vec<Timestamp> =
            self.map.iter().map(|e| last_expiry(e.value())).collect();
        let Some(index) = count.checked_sub(1).filter(|&i| i < expiries.len()) else {
            return;
        };
        let (_, &mut threshold, _) = expiries.select_nth_unstable(index);
        let mut removed = 0usize;
        self.map.retain(|_, names| {
            if removed < count && last_expiry(names) <= threshold {
                removed += 1;
                false
            } else {
                true
            }
        });
        self.evicted.fetch_add(removed as u64, Ordering::Relaxed);
    }
}

fn last_expiry(names: &[NameTtl]) -> Timestamp {
    names.iter().map(|n| n.expires).max().unwrap_or_default()
}

/// Adds or refreshes `name`; when the entry is full, the name expiring
/// soonest gives way (an expired one first).
fn add_name(
    names: &mut Vec<NameTtl>,
    name: String,
    expires: Timestamp,
    now: Timestamp,
    max: usize,
) {
    if let Some(known) = names.iter_mut().find(|n| *n.name == *name) {
        known.expires = known.expires.max(expires);
        return;
    }
    names.retain(|n| n.expires > now);
    let entry = NameTtl {
        name: Arc::from(name),
        expires,
    };
    if names.len() < max {
        // Grown one name at a time: nearly every entry holds one name, and
        // a Vec's first push would make room for four.
        names.reserve_exact(1);
        names.push(entry);
        return;
    }
    if let Some(soonest) = names.iter_mut().min_by_key(|n| n.expires) {
        if soonest.expires < expires {
            *soonest = entry;
        }
    }
}

/// Lowercase, without the root dot; `None` for the root name itself.
pub fn normalize(name: &str) -> Option<String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    (!trimmed.is_empty()).then(|| trimmed.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small(capacity: usize, max_names: usize) -> NameCache {
        NameCache::new(NameCacheConfig {
            capacity,
            max_names_per_key: max_names,
            min_ttl_secs: 10,
            max_ttl_secs: 1_000,
        })
    }

    fn names(v: Vec<Arc<str>>) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    const CLIENT: &str = "10.10.0.10";
    const ADDR: &str = "203.0.113.80";

    #[test]
    fn lookup_is_per_client_and_address() {
        let cache = small(100, 4);
        let t0 = Timestamp::from_secs(100);
        cache.insert(ip(CLIENT), ip(ADDR), "WWW.Example.com.", 60, t0);
        assert_eq!(
            names(cache.lookup(ip(CLIENT), ip(ADDR), t0)),
            ["www.example.com"]
        );
        assert!(cache.lookup(ip("10.10.0.11"), ip(ADDR), t0).is_empty());
        assert!(cache.lookup(ip(CLIENT), ip("203.0.113.81"), t0).is_empty());
    }

    #[test]
    fn ttl_expires_on_packet_time_with_floor_and_ceiling() {
        let cache = small(100, 4);
        let t0 = Timestamp::from_secs(100);
        let (c, a) = (ip(CLIENT), ip(ADDR));
        cache.insert(c, a, "short.example", 1, t0); // raised to 10 s
        cache.insert(c, a, "long.example", 50_000, t0); // lowered to 1000 s
        let at = |s| names(cache.lookup(c, a, Timestamp::from_secs(s)));
        assert_eq!(at(109), ["short.example", "long.example"]);
        assert_eq!(at(110), ["long.example"]);
        assert_eq!(at(1_099), ["long.example"]);
        assert!(at(1_100).is_empty());
    }

    #[test]
    fn shared_address_keeps_several_names_bounded() {
        let cache = small(100, 3);
        let (c, a) = (ip(CLIENT), ip(ADDR));
        for (i, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            cache.insert(c, a, name, 100 + i as u32, Timestamp::from_secs(0));
        }
        // Full: the newcomer replaces the name expiring soonest (a.example).
        cache.insert(c, a, "d.example", 500, Timestamp::from_secs(0));
        let got = names(cache.lookup(c, a, Timestamp::from_secs(1)));
        assert_eq!(got, ["d.example", "b.example", "c.example"]);
        // A newcomer expiring before all kept names is dropped instead.
        cache.insert(c, a, "e.example", 10, Timestamp::from_secs(0));
        assert!(!names(cache.lookup(c, a, Timestamp::from_secs(1))).contains(&"e.example".into()));
    }

    #[test]
    fn reinsert_refreshes_without_duplicates() {
        let cache = small(100, 4);
        let (c, a) = (ip(CLIENT), ip(ADDR));
        cache.insert(c, a, "x.example", 10, Timestamp::from_secs(0));
        cache.insert(c, a, "X.EXAMPLE", 10, Timestamp::from_secs(8));
        assert_eq!(
            names(cache.lookup(c, a, Timestamp::from_secs(15))),
            ["x.example"]
        );
    }

    #[test]
    fn capacity_is_bounded_expired_first_then_soonest() {
        let cache = small(16, 2);
        let c = ip(CLIENT);
        let t0 = Timestamp::from_secs(0);
        for i in 0..8u8 {
            cache.insert(c, IpAddr::from([192, 0, 2, i]), "old.example", 10, t0);
        }
        for i in 0..8u8 {
            cache.insert(
                c,
                IpAddr::from([198, 51, 100, i]),
                "mid.example",
                100 + u32::from(i),
                t0,
            );
        }
        assert_eq!(cache.len(), 16);
        // At t=50 the first eight have expired: a sweep frees them.
        let t50 = Timestamp::from_secs(50);
        cache.insert(c, ip("203.0.113.1"), "new.example", 500, t50);
        assert_eq!(cache.len(), 9);
        assert_eq!(cache.evicted(), 0);
        for i in 0..100u8 {
            cache.insert(c, IpAddr::from([203, 0, 113, i]), "new.example", 500, t50);
            assert!(cache.len() <= 16);
        }
        assert!(cache.evicted() > 0);
        // The entries closest to expiry went first; the newest survive.
        assert_eq!(
            names(cache.lookup(c, ip("203.0.113.99"), t50)),
            ["new.example"]
        );
        assert!(cache.lookup(c, ip("198.51.100.0"), t50).is_empty());
    }

    #[test]
    fn root_name_is_ignored() {
        let cache = small(4, 2);
        cache.insert(ip(CLIENT), ip(ADDR), ".", 60, Timestamp::from_secs(0));
        assert!(cache.is_empty());
    }

    #[test]
    fn shared_between_threads() {
        let cache = Arc::new(small(10_000, 4));
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..200u8 {
                        let addr = IpAddr::from([10, t, 0, i]);
                        cache.insert(ip(CLIENT), addr, "t.example", 60, Timestamp::from_secs(0));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cache.len(), 800);
    }
}
