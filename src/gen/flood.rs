//! A SYN flood from spoofed sources, what an attacker on a span port sends
//! to fill a sensor's flow table: one lone SYN per source address, each to
//! a random public destination and port, spread evenly over a period.

use super::rng::Rng;
use super::scenario::{Capture, Scenario};
use crate::time::Timestamp;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The flood's sources: consecutive addresses from here (internal-looking,
/// as spoofed sources on a span port are).
pub const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);

/// Default number of SYNs of the `flood` scenario.
pub const DEFAULT_SYNS: u64 = 100_000;

/// Adds `syns` SYNs to `s`, starting `at` after its start and spread over
/// `over`; `seed` picks the destinations and ports.
pub fn syn_flood(s: &mut Scenario, at: Duration, syns: u32, over: Duration, seed: u64) {
    let mut rng = Rng::new(seed);
    let first = u32::from(FIRST_SOURCE);
    let step = over / syns.max(1);
    for i in 0..syns {
        let src = IpAddr::V4(Ipv4Addr::from(first.wrapping_add(i)));
        // 198.18.0.0/15 is set aside for benchmarks: never a real peer.
        let dst = IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (rng.next_u32() & 0x1_ffff)));
        let client = s.host_with(src, super::frame::mac_for(src), 64);
        let server = s.host_with(dst, super::frame::mac_for(dst), 64);
        let (sport, dport) = (1024 + rng.next_u16() % 60_000, 1 + rng.next_u16() % 65_000);
        s.tcp(client, sport, server, dport).at(at + step * i).syn();
    }
}

/// The `flood` scenario: `syns` SYNs over 10 s, alone.
pub fn flood(syns: u32, seed: u64) -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(1_750_000_000), seed);
    syn_flood(&mut s, Duration::ZERO, syns, Duration::from_secs(10), seed);
    s.finish()
}
