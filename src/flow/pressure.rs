//! Flow-table pressure: the table is full and flows are evicted to make
//! room. A flood of cheap flows (spoofed SYNs, scans) is how an attacker
//! pushes a quiet tunnel out of the table, so pressure is a finding of its
//! own, reported once per episode.
//!
//! An episode begins with the first eviction and ends once the table has
//! drained below [`RECOVERY_PERCENT`] of its capacity (Suricata's
//! `emergency-recovery`). While it lasts cheap flows get the emergency idle
//! timeout, and the sources of the cheap flows evicted are tallied in a
//! few fixed slots (Misra–Gries: a source that made more than 1/(K+1) of
//! them keeps its slot). Everything runs on packet time; nothing allocates
//! until the report.

use super::key::{Endpoint, FlowKey};
use super::{EvictionTier, Flow};
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::fmt::Write;
use std::net::IpAddr;

/// An episode ends when the table holds less than this share of its
/// capacity.
pub const RECOVERY_PERCENT: usize = 70;

/// An episode is reported at the first look at least this long after it
/// began, so the report has figures (or when it ends, if sooner).
pub const REPORT_AFTER: u64 = NANOS_PER_SEC;

/// Source slots of the tally.
const TOP: usize = 4;

/// The pressure state of one table.
#[derive(Debug)]
pub struct Pressure {
    episode: Option<Episode>,
    /// What cheap flows get as idle timeout during an episode (reported).
    emergency_idle_seconds: u64,
}

#[derive(Debug)]
struct Episode {
    since: Timestamp,
    /// Evictions by [`EvictionTier`] since the episode began.
    evicted: [u64; EvictionTier::COUNT],
    reported: bool,
    top: [(IpAddr, u64); TOP],
    /// The latest flow evicted, preferring cheap ones: the alert's flow.
    sample: Sample,
    /// Input position of the packet whose flow made the first eviction.
    packet: u64,
}

/// The endpoints and id of an evicted flow.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub key: FlowKey,
    pub client: Endpoint,
    pub server: Endpoint,
    pub flow_id: u64,
    pub tier: EvictionTier,
}

impl Sample {
    fn of(flow: &Flow) -> Sample {
        Sample {
            key: flow.key,
            client: flow.client(),
            server: flow.server(),
            flow_id: flow.id(),
            tier: flow.tier(),
        }
    }
}

/// What is reported about one episode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub since: Timestamp,
    pub now: Timestamp,
    pub capacity: usize,
    pub tracked: usize,
    pub evicted: [u64; EvictionTier::COUNT],
    pub emergency_idle_seconds: u64,
    /// Sources of the cheap flows evicted that stand out, most first.
    pub top: Vec<(IpAddr, u64)>,
    pub sample: Sample,
    pub packet: u64,
}

impl Pressure {
    pub fn new(emergency_idle_seconds: u64) -> Self {
        Pressure {
            episode: None,
            emergency_idle_seconds,
        }
    }

    /// Whether an episode is going on (cheap flows get the emergency
    /// timeout).
    pub fn active(&self) -> bool {
        self.episode.is_some()
    }

    /// `flow` was evicted at `now` to make room for the flow of packet
    /// `packet`.
    pub fn on_evict(&mut self, flow: &Flow, now: Timestamp, packet: u64) {
        let sample = Sample::of(flow);
        let e = self.episode.get_or_insert_with(|| Episode {
            since: now,
            evicted: [0; EvictionTier::COUNT],
            reported: false,
            top: [(IpAddr::from([0u8; 4]), 0); TOP],
            sample,
            packet,
        });
        e.evicted[sample.tier.index()] += 1;
        if sample.tier == EvictionTier::Cheap {
            tally(&mut e.top, sample.client.addr);
        }
        if sample.tier <= e.sample.tier {
            e.sample = sample;
        }
    }

    /// A look at `now` with the table holding `tracked` of `capacity`
    /// flows: the episode's report when it is due (once per episode); the
    /// episode ends once the table has drained.
    pub fn check(&mut self, now: Timestamp, tracked: usize, capacity: usize) -> Option<Report> {
        let e = self.episode.as_ref()?;
        let drained = tracked * 100 < capacity * RECOVERY_PERCENT;
        let due = !e.reported && (drained || now.since(e.since) >= REPORT_AFTER);
        let report = due.then(|| self.report(now, tracked, capacity)).flatten();
        if drained {
            self.episode = None;
        }
        report
    }

    /// The report of the episode going on, if not made yet (end of input).
    pub fn report(&mut self, now: Timestamp, tracked: usize, capacity: usize) -> Option<Report> {
        let emergency_idle_seconds = self.emergency_idle_seconds;
        let e = self.episode.as_mut().filter(|e| !e.reported)?;
        e.reported = true;
        let mut top: Vec<(IpAddr, u64)> = e.top.iter().copied().filter(|t| t.1 > 1).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Some(Report {
            since: e.since,
            now,
            capacity,
            tracked,
            evicted: e.evicted,
            emergency_idle_seconds,
            top,
            sample: e.sample,
            packet: e.packet,
        })
    }
}

/// Misra–Gries: count `addr` in its slot, or take a free one, or else
/// decrement every slot.
fn tally(top: &mut [(IpAddr, u64); TOP], addr: IpAddr) {
    if let Some(slot) = top.iter_mut().find(|t| t.1 > 0 && t.0 == addr) {
        slot.1 += 1;
    } else if let Some(slot) = top.iter_mut().find(|t| t.1 == 0) {
        *slot = (addr, 1);
    } else {
        top.iter_mut().for_each(|t| t.1 -= 1);
    }
}

impl Report {
    pub fn evicted_total(&self) -> u64 {
        self.evicted.iter().sum()
    }

    /// One sentence with the figures, for the alert's evidence.
    pub fn summary(&self) -> String {
        let secs = self.now.since(self.since) as f64 / NANOS_PER_SEC as f64;
        let mut s = format!(
            "flow table full (capacity {}, {} tracked): {} flows evicted in {secs:.1} s (",
            self.capacity,
            self.tracked,
            self.evicted_total()
        );
        for (i, tier) in EvictionTier::ALL.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}{} {}", tier.name(), self.evicted[tier.index()]);
        }
        let _ = write!(
            s,
            "); cheap flows go idle after {} s until it drains below {RECOVERY_PERCENT} %",
            self.emergency_idle_seconds
        );
        if self.top.is_empty() {
            s.push_str("; no source stands out (spoofed?)");
        } else {
            s.push_str("; top sources of cheap flows:");
            for (addr, n) in &self.top {
                let _ = write!(s, " {addr} (at least {n})");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;

    fn syn_flow(src: [u8; 4], port: u16) -> Flow {
        let dst = "198.51.100.1".parse().unwrap();
        let p = crate::flow::testkit::tcp_packet(IpAddr::from(src), port, dst, 1, TcpFlags::SYN);
        let (key, side) = p.flow_key();
        let mut f = Flow::new(key, side, &p);
        f.count(crate::analyzer::Dir::ToServer, &p);
        f
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_secs(100).add_nanos(ms * 1_000_000)
    }

    #[test]
    fn one_report_per_episode_after_a_second() {
        let mut p = Pressure::new(5);
        assert!(p.check(at(0), 10, 10).is_none(), "no eviction, no episode");
        p.on_evict(&syn_flow([10, 0, 0, 1], 1), at(0), 7);
        assert!(p.active());
        assert!(p.check(at(500), 10, 10).is_none(), "too early");
        for i in 0..9 {
            p.on_evict(&syn_flow([10, 0, 0, 1], 2 + i), at(600), 8);
        }
        let r = p.check(at(1000), 10, 10).expect("due");
        assert_eq!((r.evicted, r.since, r.packet), ([10, 0, 0], at(0), 7));
        assert_eq!(r.top, [(IpAddr::from([10, 0, 0, 1]), 10)]);
        p.on_evict(&syn_flow([10, 0, 0, 2], 1), at(1500), 9);
        assert!(p.check(at(3000), 10, 10).is_none(), "reported already");
        assert!(p.report(at(3000), 10, 10).is_none());
        assert!(p.check(at(4000), 7, 10).is_none(), "70 %: not drained");
        assert!(p.active());
        assert!(p.check(at(5000), 6, 10).is_none());
        assert!(!p.active(), "drained: the episode is over");
        p.on_evict(&syn_flow([10, 0, 0, 3], 1), at(9000), 10);
        let again = p
            .check(at(9000), 6, 10)
            .expect("a short episode reports as it ends");
        assert_eq!(again.evicted_total(), 1);
        assert!(!p.active());
    }

    #[test]
    fn spoofed_sources_leave_no_top_source() {
        let mut p = Pressure::new(5);
        for i in 0..1000u32 {
            let src = (0x0a00_0000 + i).to_be_bytes();
            p.on_evict(&syn_flow(src, 1), at(0), 1);
        }
        let r = p.report(at(2000), 100, 100).unwrap();
        assert!(r.top.is_empty(), "{:?}", r.top);
        assert!(
            r.summary().contains("no source stands out"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn a_heavy_source_among_spoofed_ones_is_named() {
        let mut p = Pressure::new(5);
        for i in 0..3000u32 {
            let src = if i % 2 == 0 {
                [192, 0, 2, 9]
            } else {
                (0x0a00_0000 + i).to_be_bytes()
            };
            p.on_evict(&syn_flow(src, i as u16), at(0), 1);
        }
        let r = p.report(at(2000), 100, 100).unwrap();
        assert_eq!(r.top.len(), 1, "{:?}", r.top);
        assert_eq!(r.top[0].0, IpAddr::from([192, 0, 2, 9]));
        let text = r.summary();
        assert!(
            text.starts_with(
                "flow table full (capacity 100, 100 tracked): 3000 flows evicted in 2.0 s \
                 (cheap 3000, plain 0, protected 0)"
            ),
            "{text}"
        );
        assert!(
            text.contains("top sources of cheap flows: 192.0.2.9 (at least"),
            "{text}"
        );
    }
}
