//! Internal discovery (`internal-discovery`): per source host, over a
//! sliding window of packet time, the distinct internal hosts and ports it
//! tried and how many of those attempts failed. A source that tries many
//! hosts (a sweep, T1018) or many ports (a port scan, T1046) and fails at
//! least half of the time is in a scan episode: one finding when the
//! episode starts, one more when it grows tenfold.
//!
//! Memory is bounded twice over. Per source: the window is
//! [`BUCKETS`] buckets of `window / BUCKETS` seconds, each with fixed-size
//! bitmaps (linear counting) for hosts, ports and host:port pairs, so a
//! source costs [`SOURCE_BYTES`] however much it scans. Sources: at most
//! `max_sources`; when full, idle sources are let go first and then the
//! least recently seen one, counted in [`Discovery::dropped`]. A source
//! is only tracked from its first failed attempt on, so the hosts that
//! merely talk to each other (resolvers, scrapes) take no room.
//!
//! Pure: no I/O, no clock (time is the attempts' packet time), no globals.

use super::window::Window;
use crate::flow::key::Endpoint;
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::collections::HashMap;
use std::net::IpAddr;

/// Buckets per window.
pub use super::window::BUCKETS;
/// Most ports listed in a finding.
pub const SAMPLE_PORTS: usize = 16;
/// Severity rises when a count reaches this many times its trigger.
pub const ESCALATION: u32 = 10;

/// How one attempt (a flow the source opened) went.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The destination answered (SYN-ACK, a reply).
    Answered,
    /// TCP RST to the SYN.
    Refused,
    /// An ICMP error came back.
    Unreachable,
    /// Nothing came back.
    Unanswered,
}

/// What a probe was.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// TCP or UDP to a port.
    Port,
    /// An ICMP echo (or timestamp) request.
    Echo,
}

/// One flow a source opened toward an internal destination.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When the flow started.
    pub ts: Timestamp,
    pub flow_id: u64,
    pub src: IpAddr,
    pub dst: Endpoint,
    pub proto: u8,
    pub kind: ProbeKind,
    pub outcome: Outcome,
}

/// Thresholds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub window_seconds: u64,
    /// Distinct hosts that make a sweep.
    pub hosts: u32,
    /// Distinct ports that make a port scan.
    pub ports: u32,
    /// The share of attempts that must fail, in percent.
    pub failed_percent: u32,
    /// Sources tracked at once.
    pub max_sources: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            window_seconds: 300,
            hosts: 32,
            ports: 32,
            failed_percent: 50,
            max_sources: 4096,
        }
    }
}

/// The shape of a scan.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// ICMP echo requests to many hosts.
    EchoSweep,
    /// Few ports on many hosts (horizontal).
    HostSweep,
    /// Many ports on few hosts (vertical).
    PortScan,
    /// Many ports on many hosts.
    BlockScan,
}

impl ScanKind {
    pub fn name(self) -> &'static str {
        match self {
            ScanKind::EchoSweep => "icmp-sweep",
            ScanKind::HostSweep => "host-sweep",
            ScanKind::PortScan => "port-scan",
            ScanKind::BlockScan => "block-scan",
        }
    }

    /// MITRE ATT&CK: host sweeps are Remote System Discovery, port scans
    /// Network Service Discovery.
    pub fn mitre(self) -> &'static [&'static str] {
        match self {
            ScanKind::EchoSweep | ScanKind::HostSweep => &["T1018"],
            ScanKind::PortScan => &["T1046"],
            ScanKind::BlockScan => &["T1046", "T1018"],
        }
    }
}

/// Counts over the window, as estimated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub hosts: u32,
    pub echo_hosts: u32,
    pub ports: u32,
    pub pairs: u32,
    pub attempts: u32,
    pub refused: u32,
    pub unreachable: u32,
    pub unanswered: u32,
}

impl Counts {
    pub fn failed(&self) -> u32 {
        self.refused + self.unreachable + self.unanswered
    }
}

/// A scan episode started (level 1) or grew tenfold (level 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub src: IpAddr,
    /// The attempt that crossed the threshold.
    pub sample: Attempt,
    pub kind: ScanKind,
    pub level: u8,
    pub counts: Counts,
    /// Distinct ports tried, the first [`SAMPLE_PORTS`].
    pub ports: Vec<u16>,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    pub window_seconds: u64,
}

impl Finding {
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        format!(
            "{} from {}: {} host(s), {} port(s), {} attempt(s), {}% failed \
             ({} refused, {} unreachable, {} unanswered) within {} s; ports {}",
            self.kind.name(),
            self.src,
            c.hosts,
            c.ports,
            c.attempts,
            percent(c.failed(), c.attempts),
            c.refused,
            c.unreachable,
            c.unanswered,
            self.window_seconds,
            if ports.is_empty() {
                "-".to_string()
            } else {
                ports.join(",")
            }
        )
    }
}

fn percent(part: u32, whole: u32) -> u32 {
    if whole == 0 {
        return 0;
    }
    (u64::from(part) * 100 / u64::from(whole)) as u32
}

/// A fixed-size bitmap of hashed items; its zero bits estimate how many
/// distinct items were set (linear counting).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitmap<const W: usize>([u64; W]);

impl<const W: usize> Default for Bitmap<W> {
    fn default() -> Self {
        Bitmap([0; W])
    }
}

impl<const W: usize> Bitmap<W> {
    const BITS: u64 = (W * 64) as u64;

    pub(crate) fn set(&mut self, hash: u64) {
        let bit = hash % Self::BITS;
        if let Some(w) = self.0.get_mut((bit / 64) as usize) {
            *w |= 1 << (bit % 64);
        }
    }

    pub(crate) fn union(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    pub(crate) fn estimate(&self) -> u32 {
        let m = Self::BITS as f64;
        let ones: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        let zeros = m - f64::from(ones);
        if ones == 0 {
            return 0;
        }
        // A full bitmap says "at least this many".
        let n = if zeros < 1.0 {
            m * m.ln()
        } else {
            m * (m / zeros).ln()
        };
        n.round() as u32
    }
}

/// One slice of the window.
#[derive(Clone, Debug, Default)]
struct Bucket {
    hosts: Bitmap<8>,
    echo_hosts: Bitmap<8>,
    ports: Bitmap<8>,
    pairs: Bitmap<32>,
    attempts: u32,
    refused: u32,
    unreachable: u32,
    unanswered: u32,
}

/// What one source did in the window.
#[derive(Clone, Debug, Default)]
struct Source {
    window: Window<Bucket>,
    first_ts: Timestamp,
    last_seen: Timestamp,
    /// The episode's level: 0 none, 1 alerted, 2 escalated.
    level: u8,
    ports: Vec<u16>,
}

/// Bytes one tracked source costs (its state, boxed, plus its map entry).
pub const SOURCE_BYTES: usize = std::mem::size_of::<Source>() + SAMPLE_PORTS * 2 + 64;

// The bound docs/DETECTION.md states (about 2.5 KiB a source).
const _: () = assert!(SOURCE_BYTES < 3 * 1024);

/// The detector: one per host stage.
#[derive(Debug)]
pub struct Discovery {
    cfg: DiscoveryConfig,
    sources: HashMap<IpAddr, Box<Source>>,
    dropped: u64,
}

impl Discovery {
    pub fn new(cfg: DiscoveryConfig) -> Self {
        Discovery {
            cfg,
            sources: HashMap::new(),
            dropped: 0,
        }
    }

    pub fn config(&self) -> &DiscoveryConfig {
        &self.cfg
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Sources let go before their window ended, to make room.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Counts one attempt; a finding when it starts or escalates an
    /// episode.
    pub fn observe(&mut self, a: &Attempt) -> Option<Finding> {
        let window = self.cfg.window_seconds.saturating_mul(NANOS_PER_SEC);
        let epoch = super::window::epoch(a.ts, self.cfg.window_seconds);
        if a.outcome == Outcome::Answered && !self.sources.contains_key(&a.src) {
            // Tracking starts at a source's first failure: a host whose
            // attempts all succeed (DNS, scrapes) costs nothing.
            return None;
        }
        self.make_room(a.src, a.ts, window);
        let src = self.sources.entry(a.src).or_default();
        if src.last_seen != Timestamp::default() && a.ts.since(src.last_seen) > window {
            **src = Source::default(); // quiet for a whole window: episode over
        }
        if src.first_ts == Timestamp::default() {
            src.first_ts = a.ts;
        }
        src.last_seen = src.last_seen.max(a.ts);
        record(src, a, epoch);
        let counts = counts(src);
        let level = level_of(&self.cfg, &counts);
        if level <= src.level {
            return None;
        }
        src.level = level;
        Some(Finding {
            src: a.src,
            sample: *a,
            kind: kind_of(&self.cfg, &counts),
            level,
            ports: src.ports.clone(),
            counts,
            first_ts: src.first_ts,
            last_ts: src.last_seen,
            window_seconds: self.cfg.window_seconds,
        })
    }

    /// Keeps the table within `max_sources` before `src` is added: idle
    /// sources go first, then the least recently seen (counted).
    fn make_room(&mut self, src: IpAddr, now: Timestamp, window: u64) {
        if self.sources.len() < self.cfg.max_sources.max(1) || self.sources.contains_key(&src) {
            return;
        }
        self.sources.retain(|_, s| now.since(s.last_seen) <= window);
        if self.sources.len() < self.cfg.max_sources.max(1) {
            return;
        }
        let oldest = self
            .sources
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.sources.remove(&ip);
            self.dropped += 1;
        }
    }
}

fn record(src: &mut Source, a: &Attempt, epoch: u64) {
    let b = src.window.slot(epoch);
    let host = mix(addr_bits(a.dst.addr));
    b.hosts.set(host);
    match a.kind {
        ProbeKind::Echo => b.echo_hosts.set(host),
        ProbeKind::Port => {
            let port = mix(u64::from(a.dst.port) << 8 | u64::from(a.proto));
            b.ports.set(port);
            b.pairs.set(mix(host ^ port));
            if src.ports.len() < SAMPLE_PORTS && !src.ports.contains(&a.dst.port) {
                src.ports.push(a.dst.port);
            }
        }
    }
    b.attempts = b.attempts.saturating_add(1);
    let counter = match a.outcome {
        Outcome::Answered => return,
        Outcome::Refused => &mut b.refused,
        Outcome::Unreachable => &mut b.unreachable,
        Outcome::Unanswered => &mut b.unanswered,
    };
    *counter = counter.saturating_add(1);
}

/// The window's counts: the buckets still in it, merged.
fn counts(src: &Source) -> Counts {
    let mut hosts = Bitmap::<8>::default();
    let mut echo = Bitmap::<8>::default();
    let mut ports = Bitmap::<8>::default();
    let mut pairs = Bitmap::<32>::default();
    let mut c = Counts::default();
    for b in src.window.live() {
        hosts.union(&b.hosts);
        echo.union(&b.echo_hosts);
        ports.union(&b.ports);
        pairs.union(&b.pairs);
        c.attempts = c.attempts.saturating_add(b.attempts);
        c.refused = c.refused.saturating_add(b.refused);
        c.unreachable = c.unreachable.saturating_add(b.unreachable);
        c.unanswered = c.unanswered.saturating_add(b.unanswered);
    }
    // An estimate never exceeds the attempts it counts.
    c.hosts = hosts.estimate().min(c.attempts);
    c.echo_hosts = echo.estimate().min(c.attempts);
    c.ports = ports.estimate().min(c.attempts);
    c.pairs = pairs.estimate().min(c.attempts);
    c
}

/// 0 below the triggers or when most attempts succeed; 1 at a trigger; 2
/// at [`ESCALATION`] times a trigger.
fn level_of(cfg: &DiscoveryConfig, c: &Counts) -> u8 {
    if percent(c.failed(), c.attempts) < cfg.failed_percent {
        return 0;
    }
    let level = |n: u32, trigger: u32| -> u8 {
        let trigger = trigger.max(1);
        match () {
            _ if n >= trigger.saturating_mul(ESCALATION) => 2,
            _ if n >= trigger => 1,
            _ => 0,
        }
    };
    level(c.hosts, cfg.hosts).max(level(c.ports, cfg.ports))
}

fn kind_of(cfg: &DiscoveryConfig, c: &Counts) -> ScanKind {
    let many_hosts = c.hosts >= cfg.hosts;
    let many_ports = c.ports >= cfg.ports;
    match (many_hosts, many_ports) {
        (true, true) => ScanKind::BlockScan,
        (true, false) if c.echo_hosts * 2 >= c.hosts => ScanKind::EchoSweep,
        (true, false) => ScanKind::HostSweep,
        _ => ScanKind::PortScan,
    }
}

fn addr_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
        }
    }
}

/// SplitMix64's finalizer: spreads an item over the bitmap.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::proto;
    use std::net::Ipv4Addr;

    const T0: u64 = 1_750_000_000;

    fn attempt(ms: u64, dst: [u8; 4], port: u16, outcome: Outcome) -> Attempt {
        Attempt {
            ts: Timestamp::from_nanos(T0 * NANOS_PER_SEC + ms * 1_000_000),
            flow_id: ms,
            src: IpAddr::V4(Ipv4Addr::new(10, 10, 0, 5)),
            dst: Endpoint {
                addr: IpAddr::from(dst),
                port,
            },
            proto: proto::TCP,
            kind: ProbeKind::Port,
            outcome,
        }
    }

    fn run(d: &mut Discovery, attempts: impl IntoIterator<Item = Attempt>) -> Vec<Finding> {
        attempts.into_iter().filter_map(|a| d.observe(&a)).collect()
    }

    #[test]
    fn bitmap_estimates_distinct_counts() {
        for n in [1u64, 10, 100, 500, 1000] {
            let mut b = Bitmap::<32>::default();
            for i in 0..n {
                b.set(mix(i));
                b.set(mix(i)); // repeats do not count
            }
            let est = f64::from(b.estimate());
            let err = (est - n as f64).abs() / n as f64;
            assert!(err < 0.1, "{n}: {est}");
        }
    }

    #[test]
    fn vertical_scan_alerts_once_then_escalates() {
        let mut d = Discovery::new(DiscoveryConfig::default());
        let scan =
            (1..=1000u16).map(|p| attempt(u64::from(p), [10, 10, 0, 9], p, Outcome::Refused));
        let found = run(&mut d, scan);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].level, found[0].kind), (1, ScanKind::PortScan));
        assert!(
            (30..=34).contains(&found[0].counts.ports),
            "{:?}",
            found[0].counts
        );
        assert_eq!(found[0].counts.hosts, 1);
        assert_eq!(found[1].level, 2);
        assert_eq!(found[0].ports.len(), SAMPLE_PORTS);
        assert!(found[1]
            .summary()
            .starts_with("port-scan from 10.10.0.5: 1 host(s)"));
    }

    #[test]
    fn host_sweep_of_a_subnet() {
        let mut d = Discovery::new(DiscoveryConfig::default());
        let sweep = (1..=254u8)
            .map(|h| attempt(u64::from(h) * 10, [10, 10, 1, h], 22, Outcome::Unanswered));
        let found = run(&mut d, sweep);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, ScanKind::HostSweep);
        assert_eq!(found[0].kind.mitre(), ["T1018"]);
    }

    #[test]
    fn answered_contacts_are_no_scan() {
        // A scraper: 500 targets, a few ports, every 15 s, all answered.
        let mut d = Discovery::new(DiscoveryConfig::default());
        let scrape = (0..4u64).flat_map(|round| {
            (0..500u64).map(move |i| {
                let dst = [10, 20, (i / 250) as u8, (i % 250) as u8 + 1];
                attempt(
                    round * 15_000 + i,
                    dst,
                    9100 + (i % 3) as u16,
                    Outcome::Answered,
                )
            })
        });
        assert!(run(&mut d, scrape).is_empty());
    }

    #[test]
    fn a_quiet_window_ends_the_episode() {
        let mut d = Discovery::new(DiscoveryConfig::default());
        let first = (1..=40u16).map(|p| attempt(u64::from(p), [10, 10, 0, 9], p, Outcome::Refused));
        assert_eq!(run(&mut d, first).len(), 1);
        let later = 400_000; // 400 s later: a new episode
        let second =
            (1..=40u16).map(|p| attempt(later + u64::from(p), [10, 10, 0, 9], p, Outcome::Refused));
        let found = run(&mut d, second);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].level, 1);
    }

    #[test]
    fn sources_are_bounded_and_drops_counted() {
        let cfg = DiscoveryConfig {
            max_sources: 8,
            ..DiscoveryConfig::default()
        };
        let mut d = Discovery::new(cfg);
        let mut ok = attempt(0, [10, 10, 0, 9], 22, Outcome::Answered);
        ok.src = IpAddr::from([10, 12, 0, 1]);
        assert!(d.observe(&ok).is_none());
        assert_eq!(d.sources(), 0, "success alone is not tracked");
        for i in 0..20u8 {
            let mut a = attempt(u64::from(i), [10, 10, 0, 9], 22, Outcome::Refused);
            a.src = IpAddr::from([10, 11, 0, i]);
            d.observe(&a);
        }
        assert_eq!(d.sources(), 8);
        assert_eq!(d.dropped(), 12);
    }
}
