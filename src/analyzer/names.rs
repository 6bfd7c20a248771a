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
//! expiry (ties by client and address, so the same ones on every run), in
//! one sweep that frees an eighth of the capacity so sweeps stay rare. IPv4
//! pairs, nearly all of them, have a table of their own with 8-byte keys.

use crate::flow::shard::Turns;
use crate::time::{Timestamp, NANOS_PER_SEC};
use dashmap::DashMap;
use std::net::{IpAddr, Ipv4Addr};
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

/// A client's names for one address, oldest first. A boxed slice, not a
/// Vec: 16 bytes an entry in the table, not 24, and no spare room.
type Names = Box<[NameTtl]>;

/// Names per (client, resolved address), shared across threads.
#[derive(Debug)]
pub struct NameCache {
    shared: Arc<Shared>,
    /// The engine this view belongs to, where engines take turns.
    turn: Option<(Arc<Turns>, usize)>,
}

#[derive(Debug)]
struct Shared {
    map: Pairs,
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
            map: Pairs::default(),
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
        self.wait_turn()
            .insert(Pair::of(client, addr), name, ttl_secs, now);
    }

    /// The names `client` resolved to `addr` that are still valid at `now`,
    /// in the order they were first seen.
    pub fn lookup(&self, client: IpAddr, addr: IpAddr, now: Timestamp) -> Vec<Arc<str>> {
        self.wait_turn()
            .map
            .read(&Pair::of(client, addr), |names| {
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
        map.for_each(|client, addr, names| {
            out.extend(names.iter().map(|n| SavedName {
                client,
                addr,
                name: n.name.to_string(),
                expires: n.expires,
            }));
        });
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
        self.shared.map.len() == 0
    }

    /// Entries dropped to make room (not counting expired ones).
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn insert(&self, key: Pair, name: String, ttl_secs: u32, now: Timestamp) {
        let ttl = ttl_secs.clamp(self.config.min_ttl_secs, self.config.max_ttl_secs);
        let expires = now.add_nanos(u64::from(ttl) * NANOS_PER_SEC);
        if self.map.read(&key, |_| ()).is_none() && self.map.len() >= self.config.capacity {
            self.make_room(now);
        }
        self.map.update(key, |entry| {
            let mut names = std::mem::take(entry).into_vec();
            add_name(
                &mut names,
                name,
                expires,
                now,
                self.config.max_names_per_key,
            );
            *entry = names.into_boxed_slice();
        });
    }

    /// Drops expired entries, then, if the map is still above seven eighths
    /// of its capacity, the entries whose last name expires soonest. One
    /// thread sweeps at a time; the others insert meanwhile (the map may
    /// briefly exceed its capacity by a few entries per thread).
    fn make_room(&self, now: Timestamp) {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        self.map.retain(|names| {
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

    /// Drops the `count` entries whose last name expires soonest, ties
    /// broken by client and address: the same entries go whatever order
    /// the table (its hasher seeded per process) iterates in.
    fn evict_soonest(&self, count: usize) {
        let mut expiries = Vec::with_capacity(self.map.len());
        self.map
            .for_each(|_, _, names| expiries.push(last_expiry(names)));
        if count == 0 || count > expiries.len() {
            return;
        }
        let (_, &mut threshold, _) = expiries.select_nth_unstable(count - 1);
        // Every entry that expires sooner goes (fewer than `count`), then
        // the first of those at the threshold, as many as are left to go.
        let sooner = expiries.iter().filter(|&&e| e < threshold).count();
        let mut ties = Vec::new();
        self.map.for_each(|client, addr, names| {
            if last_expiry(names) == threshold {
                ties.push((client, addr));
            }
        });
        ties.sort_unstable();
        self.map.retain(|names| last_expiry(names) >= threshold);
        for &(client, addr) in ties.iter().take(count - sooner) {
            self.map.remove(&Pair::of(client, addr));
        }
        self.evicted.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// A (client, address) key: an IPv4 pair (nearly every one) in 8 bytes.
enum Pair {
    V4(u64),
    Other((IpAddr, IpAddr)),
}

impl Pair {
    fn of(client: IpAddr, addr: IpAddr) -> Pair {
        match (client, addr) {
            (IpAddr::V4(c), IpAddr::V4(a)) => {
                Pair::V4(u64::from(c.to_bits()) << 32 | u64::from(a.to_bits()))
            }
            pair => Pair::Other(pair),
        }
    }
}

/// The entries: IPv4 pairs in a table of their own, 24 bytes an entry
/// instead of the 56 of a pair of `IpAddr`s.
#[derive(Debug, Default)]
struct Pairs {
    v4: DashMap<u64, Names, ahash::RandomState>,
    other: DashMap<(IpAddr, IpAddr), Names, ahash::RandomState>,
}

impl Pairs {
    fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    /// `f` of the entry's names, if there is an entry.
    fn read<R>(&self, key: &Pair, f: impl FnOnce(&[NameTtl]) -> R) -> Option<R> {
        match key {
            Pair::V4(k) => self.v4.get(k).map(|e| f(e.value())),
            Pair::Other(k) => self.other.get(k).map(|e| f(e.value())),
        }
    }

    /// `f` on the entry's names, made empty first if there was none.
    fn update(&self, key: Pair, f: impl FnOnce(&mut Names)) {
        match key {
            Pair::V4(k) => f(&mut self.v4.entry(k).or_default()),
            Pair::Other(k) => f(&mut self.other.entry(k).or_default()),
        }
    }

    fn remove(&self, key: &Pair) {
        match key {
            Pair::V4(k) => drop(self.v4.remove(k)),
            Pair::Other(k) => drop(self.other.remove(k)),
        }
    }

    fn retain(&self, mut keep: impl FnMut(&mut Names) -> bool) {
        self.v4.retain(|_, names| keep(names));
        self.other.retain(|_, names| keep(names));
    }

    /// `f(client, address, names)` for every entry.
    fn for_each(&self, mut f: impl FnMut(IpAddr, IpAddr, &[NameTtl])) {
        for e in self.v4.iter() {
            let k = *e.key();
            let client = Ipv4Addr::from_bits((k >> 32) as u32);
            let addr = Ipv4Addr::from_bits(k as u32);
            f(client.into(), addr.into(), e.value());
        }
        for e in self.other.iter() {
            let (client, addr) = *e.key();
            f(client, addr, e.value());
        }
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

    /// IPv4 pairs sit in a table of their own; an IPv6 or mixed pair, or an
    /// IPv4 address written as IPv4-mapped IPv6, is a key of its own.
    #[test]
    fn every_address_family_pairing_is_kept_apart_and_saved() {
        let cache = small(100, 4);
        let t0 = Timestamp::from_secs(100);
        let pairs = [
            (CLIENT, ADDR, "v4.example"),
            (CLIENT, "2001:db8::80", "mixed.example"),
            ("2001:db8::10", "2001:db8::80", "v6.example"),
            (CLIENT, "::ffff:203.0.113.80", "mapped.example"),
        ];
        for (client, addr, name) in pairs {
            cache.insert(ip(client), ip(addr), name, 60, t0);
        }
        assert_eq!(cache.len(), 4);
        for (client, addr, name) in pairs {
            assert_eq!(names(cache.lookup(ip(client), ip(addr), t0)), [name]);
        }
        let mut saved: Vec<_> = cache
            .saved()
            .into_iter()
            .map(|n| (n.client, n.addr, n.name))
            .collect();
        saved.sort();
        let mut want: Vec<_> = pairs
            .iter()
            .map(|&(c, a, n)| (ip(c), ip(a), n.to_string()))
            .collect();
        want.sort();
        assert_eq!(saved, want);
        let back = small(100, 4);
        back.restore(&cache.saved(), t0);
        for (client, addr, name) in pairs {
            assert_eq!(names(back.lookup(ip(client), ip(addr), t0)), [name]);
        }
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

    /// Entries that expire together are evicted by client and address, not
    /// by where the table's per-process random hasher put them: two caches
    /// given the same names keep the same ones.
    #[test]
    fn eviction_among_equal_expiries_does_not_depend_on_the_hasher() {
        let survivors = || {
            let cache = small(64, 1);
            let t0 = Timestamp::from_secs(0);
            for i in 0..200u8 {
                cache.insert(
                    ip(CLIENT),
                    IpAddr::from([192, 0, 2, i]),
                    "same.example",
                    60,
                    t0,
                );
            }
            let mut kept: Vec<_> = cache.saved().into_iter().map(|n| n.addr).collect();
            kept.sort();
            (kept, cache.evicted())
        };
        let first = survivors();
        assert!(first.1 > 0);
        for _ in 0..8 {
            assert_eq!(survivors(), first);
        }
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
