//! The benchmark capture: realistic mixed traffic streamed straight to a
//! sink, millions of packets and 100k+ flows in seconds and a few tens of
//! megabytes of memory.
//!
//! The mix follows the reference generator `bench/gen_pcap.py` that the
//! peer tools were measured on (average frame about 584 bytes): TLS with
//! SNI, long-lived keep-alive flows, DNS, QUIC-like UDP, NTP, syslog, RTP,
//! HTTP/1.1, internal bulk transfers, ICMP/ICMPv6 echo, IPv4 fragments,
//! ARP, and SSH (banners, KEXINIT, key exchange, then chacha20-poly1305
//! sized packets) on 22, 443 and 2222, including reverse-tunnel-shaped
//! sessions where 76-byte keystrokes arrive from the server and inbound and
//! internal SSH as negatives. About 12 % of flows are IPv6, about 10 %
//! carry an 802.1Q tag (a tenth of those QinQ), a fifth of the flows were
//! already open when the capture started (no handshake), and tens of
//! thousands are open at once.
//!
//! Flows start at a pace tied to the packet count so that `flows` flows
//! are spread over `packets` packets. Each flow is a small state machine
//! (a list of messages segmented lazily, or a datagram script); a heap
//! orders their next packets in time. Payload bytes come from a 1 MiB
//! random pool, so building a frame costs a copy and the checksums.
//!
//! Every 5-tuple is used by one flow only (client ports count up per
//! client, ICMP pairs are not repeated), so a flow table and [`Truth`]
//! agree exactly. NTP clients use an ephemeral source port (as chrony
//! does) for the same reason.

use self::dgram::{Dgram, Payload};
use self::hosts::Hosts;
use self::mix::{Kind, KINDS};
use self::tcp::TcpScript;
use super::frame::Path;
use super::pcap::FrameSink;
use super::rng::Rng;
use super::truth::Truth;

use crate::flow::key::FlowKey;
use crate::time::{Nanos, Timestamp};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

/// Seed of the reference capture (the Python generator's default).
pub const DEFAULT_SEED: u64 = 20_240_601;
/// Capture start: 2023-11-14T22:13:20Z, as in the reference generator.
pub const START_SECS: u64 = 1_700_000_000;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// Frames to write.
    pub packets: u64,
    /// Flows to start over the capture (ARP exchanges included).
    pub flows: u64,
    pub seed: u64,
    pub start: Timestamp,
    /// Collect per-flow [`Truth`] (costs about 120 bytes per flow).
    pub truth: bool,
}

impl Default for BenchConfig {
    /// 2 M packets and 100 k flows, like the capture the peers were
    /// measured on.
    fn default() -> Self {
        BenchConfig {
            packets: 2_000_000,
            flows: 100_000,
            seed: DEFAULT_SEED,
            start: Timestamp::from_secs(START_SECS),
            truth: false,
        }
    }
}

impl BenchConfig {
    /// `packets` frames with one flow per 20 packets (the reference mix's
    /// ratio), without truth.
    pub fn new(packets: u64, seed: u64) -> BenchConfig {
        BenchConfig {
            packets,
            flows: (packets / 20).max(1),
            seed,
            ..BenchConfig::default()
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BenchReport {
    pub packets: u64,
    /// Frame bytes written.
    pub bytes: u64,
    /// Flows started (ARP exchanges included).
    pub flows: u64,
    /// Most flows open at one time.
    pub peak_open: u64,
    /// Flows still open at the end (their teardown was not reached).
    pub open_at_end: u64,
    /// Time from the first to the last frame.
    pub span: Nanos,
    pub truth: Option<Truth>,
}

/// Generates the capture into `sink`.
pub fn run<S: FrameSink + ?Sized>(cfg: &BenchConfig, sink: &mut S) -> io::Result<BenchReport> {
    Gen::new(cfg).run(sink)
}

const POOL_LEN: usize = 1 << 20;
const NANOS: f64 = 1e9;

fn secs(s: f64) -> Nanos {
    if s <= 0.0 {
        0
    } else {
        (s * NANOS) as Nanos
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Copies `len` pool bytes starting at `start` (wrapping around).
fn copy_pool(pool: &[u8], start: usize, len: usize, out: &mut Vec<u8>) {
    let mut pos = start % POOL_LEN;
    let mut left = len;
    while left > 0 {
        let n = left.min(POOL_LEN - pos);
        out.extend_from_slice(&pool[pos..pos + n]);
        left -= n;
        pos = 0;
    }
}

mod dgram;
mod emit;
mod hosts;
mod mix;
mod scripts;
mod tcp;

#[derive(Copy, Clone, Debug)]
enum Step {
    Tcp {
        dir: u8,
        flags: u8,
        off: usize,
        len: usize,
    },
    Udp {
        dir: u8,
        payload: Payload,
    },
    FragFirst {
        dir: u8,
        len: u32,
    },
    FragNext {
        dir: u8,
    },
    Icmp {
        dir: u8,
        seq: u16,
    },
    Arp {
        reply: bool,
    },
}

// ------------------------------------------------------------------ flows

enum Script {
    Tcp(Box<TcpScript>),
    Dgram(Dgram),
}

struct Flow {
    /// Index into the truth's flows (when collected).
    truth: Option<usize>,
    /// Client to server; the reply path is derived.
    path: Path,
    /// TTL of the server's packets at the capture point.
    server_ttl: u8,
    ports: [u16; 2],
    ident: [u16; 2],
    script: Script,
    /// The step to emit at the flow's scheduled time.
    pending: Step,
    /// The datagram being fragmented and how far it was sent.
    frag: Vec<u8>,
    frag_off: usize,
    frag_ident: u16,
}

impl Flow {
    /// The path of direction `dir` (0 client to server, 1 back).
    fn path(&self, dir: u8) -> Path {
        if dir == 0 {
            self.path
        } else {
            self.path.reversed(self.server_ttl)
        }
    }
}

struct Gen<'c> {
    cfg: &'c BenchConfig,
    rng: Rng,
    hosts: Hosts,
    pool: Vec<u8>,
    heap: BinaryHeap<Reverse<(Nanos, u64, u32)>>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    order: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    truth: Option<Truth>,
    used: ahash::AHashSet<FlowKey>,
    cum: [f64; 17],
    report: BenchReport,
    open: u64,
    first_ts: Option<Timestamp>,
    last_ts: Timestamp,
}

impl<'c> Gen<'c> {
    fn new(cfg: &'c BenchConfig) -> Gen<'c> {
        let mut rng = Rng::new(cfg.seed);
        let hosts = Hosts::new(&mut rng);
        let mut pool = vec![0u8; POOL_LEN];
        rng.fill(&mut pool);
        let mut cum = [0.0; 17];
        let mut sum = 0.0;
        for (i, (_, w)) in KINDS.iter().enumerate() {
            sum += w;
            cum[i] = sum;
        }
        Gen {
            cfg,
            rng,
            hosts,
            pool,
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: 0,
            buf: Vec::with_capacity(2048),
            scratch: Vec::with_capacity(2048),
            truth: cfg.truth.then(Truth::default),
            used: ahash::AHashSet::default(),
            cum,
            report: BenchReport::default(),
            open: 0,
            first_ts: None,
            last_ts: cfg.start,
        }
    }

    fn run<S: FrameSink + ?Sized>(mut self, sink: &mut S) -> io::Result<BenchReport> {
        let cfg = self.cfg;
        let midstream = cfg.flows / 5;
        for _ in 0..midstream {
            let kind = if self.rng.chance(0.25) {
                Kind::Tls
            } else {
                Kind::Keepalive
            };
            let at = secs(self.rng.uniform(0.0, 2.0));
            self.start_flow(kind, true, at);
        }
        let regular = cfg.flows - midstream;
        let mut clock: Nanos = 0;
        while self.report.packets < cfg.packets {
            let due = midstream
                + (u128::from(regular) * u128::from(self.report.packets + 1)
                    / u128::from(cfg.packets)) as u64;
            if self.report.flows < due || self.heap.is_empty() {
                let kind = self.pick_kind();
                let at = clock + secs(self.rng.exp(1.0 / 3000.0));
                self.start_flow(kind, false, at);
                continue;
            }
            let Some(Reverse((t, _, slot))) = self.heap.pop() else {
                break;
            };
            clock = t;
            self.emit(slot, t, sink)?;
            self.advance(slot, t);
        }
        self.report.open_at_end = self.open;
        self.report.span = self.last_ts.since(self.first_ts.unwrap_or(self.last_ts));
        if let Some(mut truth) = self.truth.take() {
            truth.finish();
            self.report.truth = Some(truth);
        }
        Ok(self.report)
    }

    fn pick_kind(&mut self) -> Kind {
        let x = self.rng.unit() * self.cum[16];
        let i = self.cum.partition_point(|&c| c <= x).min(16);
        KINDS[i].0
    }

    fn schedule(&mut self, slot: u32, at: Nanos) {
        self.order += 1;
        self.heap.push(Reverse((at, self.order, slot)));
    }

    /// Computes the flow's next step and schedules it, or ends the flow.
    fn advance(&mut self, slot: u32, now: Nanos) {
        let next = match self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            Some(flow) => match &mut flow.script {
                Script::Tcp(t) => t.next(&mut self.rng),
                Script::Dgram(d) => d.next(&mut self.rng),
            }
            .map(|(gap, step)| {
                flow.pending = step;
                gap
            }),
            None => None,
        };
        match next {
            Some(gap) => self.schedule(slot, now + gap),
            None => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = None;
                }
                self.free.push(slot);
                self.open -= 1;
            }
        }
    }

    fn start_flow(&mut self, kind: Kind, midstream: bool, at: Nanos) {
        self.report.flows += 1;
        let shape = self.shape(kind, midstream);
        let mut flow = self.make_flow(shape);
        let first = match &mut flow.script {
            Script::Tcp(t) => t.next(&mut self.rng),
            Script::Dgram(d) => d.next(&mut self.rng),
        };
        let Some((gap, step)) = first else {
            return;
        };
        flow.pending = step;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(flow);
                s
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as u32
            }
        };
        self.open += 1;
        self.report.peak_open = self.report.peak_open.max(self.open);
        self.schedule(slot, at + gap);
    }
}
