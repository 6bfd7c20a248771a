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

use super::frame::{self, Arp, Frag, IpFields, Path, TcpFields, Vlan};
use super::pcap::FrameSink;
use super::proto::ssh::{self, msg, KexLists, Role, Suite};
use super::proto::{dns, http, ntp, tls};
use super::rng::{self, Rng};
use super::scenario::GATEWAY_MAC;
use super::truth::{FlowTruth, Lens, Truth};
use crate::analyzer::Dir;
use crate::flow::key::{icmp_ports, proto, Endpoint, FlowKey};
use crate::time::{Nanos, Timestamp};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

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

// ------------------------------------------------------------------ hosts

const RESERVED4: [(u32, u32); 13] = [
    (0x0000_0000, 8),
    (0x0A00_0000, 8),
    (0x6440_0000, 10),
    (0x7F00_0000, 8),
    (0xA9FE_0000, 16),
    (0xAC10_0000, 12),
    (0xC000_0000, 24),
    (0xC000_0200, 24),
    (0xC0A8_0000, 16),
    (0xC612_0000, 15),
    (0xC633_6400, 24),
    (0xCB00_7100, 24),
    (0xE000_0000, 3),
];

fn reserved(a: u32) -> bool {
    RESERVED4
        .iter()
        .any(|&(net, len)| (a ^ net) >> (32 - len) == 0)
}

/// The address pools of the reference generator, with Zipf-like
/// popularity of external servers (a few CDNs get most flows).
struct Hosts {
    int4: Vec<IpAddr>,
    srv4: Vec<IpAddr>,
    dns4: [IpAddr; 2],
    pubdns4: [IpAddr; 3],
    ext4: Vec<IpAddr>,
    int6: Vec<IpAddr>,
    srv6: Vec<IpAddr>,
    ext6: Vec<IpAddr>,
    cum4: Vec<f64>,
    cum6: Vec<f64>,
    /// Next ephemeral port per internal client (v4 then v6).
    next_port: Vec<u16>,
}

fn zipf_cumulative(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut sum = 0.0;
    for i in 0..n {
        sum += rng::exp(-0.9 * rng::ln((i + 1) as f64));
        out.push(sum);
    }
    out
}

impl Hosts {
    fn new(rng: &mut Rng) -> Hosts {
        let mut int4 = Vec::with_capacity(6000);
        for _ in 0..6000 {
            let a = if rng.chance(0.8) {
                Ipv4Addr::new(
                    10,
                    rng.range(1, 40) as u8,
                    rng.below(256) as u8,
                    rng.range(1, 255) as u8,
                )
            } else {
                Ipv4Addr::new(192, 168, rng.below(16) as u8, rng.range(1, 255) as u8)
            };
            int4.push(IpAddr::V4(a));
        }
        let srv4 = (0..60)
            .map(|_| {
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    rng.below(4) as u8,
                    rng.range(1, 255) as u8,
                ))
            })
            .collect();
        let mut ext4 = Vec::with_capacity(25_000);
        while ext4.len() < 25_000 {
            let a = rng.next_u32();
            if !reserved(a) {
                ext4.push(IpAddr::V4(Ipv4Addr::from(a)));
            }
        }
        let v6 = |prefix: [u8; 8], rng: &mut Rng| {
            let mut o = [0u8; 16];
            o[..8].copy_from_slice(&prefix);
            o[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
            frame::v6(o)
        };
        let int6 = (0..1500)
            .map(|_| v6([0xfd, 0, 0, 0x10, 0, 0, 0, 0], rng))
            .collect();
        let srv6 = (0..20)
            .map(|_| v6([0xfd, 0, 0, 0x10, 0, 0, 0, 0xff], rng))
            .collect();
        const PREFIXES: [u16; 10] = [
            0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2600, 0x2606, 0x2607, 0x2406, 0x2400, 0x2c0f,
        ];
        let ext6 = (0..4000)
            .map(|_| {
                let mut o = [0u8; 16];
                o[..2].copy_from_slice(&rng.pick(&PREFIXES).to_be_bytes());
                o[2..10].copy_from_slice(&rng.next_u64().to_be_bytes());
                o[10..16].copy_from_slice(&rng.next_u64().to_be_bytes()[..6]);
                frame::v6(o)
            })
            .collect();
        let next_port = (0..7500)
            .map(|_| rng.range(32_768, 61_000) as u16)
            .collect();
        Hosts {
            int4,
            srv4,
            dns4: [IpAddr::from([10, 0, 0, 53]), IpAddr::from([10, 0, 0, 54])],
            pubdns4: [
                IpAddr::from([1, 1, 1, 1]),
                IpAddr::from([8, 8, 8, 8]),
                IpAddr::from([9, 9, 9, 9]),
            ],
            ext4,
            int6,
            srv6,
            ext6,
            cum4: zipf_cumulative(25_000),
            cum6: zipf_cumulative(4000),
            next_port,
        }
    }

    fn ext(&self, rng: &mut Rng, v6: bool) -> IpAddr {
        let (pool, cum) = if v6 {
            (&self.ext6, &self.cum6)
        } else {
            (&self.ext4, &self.cum4)
        };
        let total = cum.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        let i = cum.partition_point(|&c| c <= x).min(pool.len() - 1);
        pool[i]
    }

    /// An internal client and its index (for its port counter).
    fn internal(&self, rng: &mut Rng, v6: bool) -> (IpAddr, usize) {
        if v6 {
            let i = rng.below(self.int6.len() as u64) as usize;
            (self.int6[i], self.int4.len() + i)
        } else {
            let i = rng.below(self.int4.len() as u64) as usize;
            (self.int4[i], i)
        }
    }

    fn server(&self, rng: &mut Rng, v6: bool) -> IpAddr {
        if v6 {
            *rng.pick(&self.srv6)
        } else {
            *rng.pick(&self.srv4)
        }
    }

    /// The client's next ephemeral port (Linux counts up within
    /// 32768..61000).
    fn port(&mut self, client: usize) -> u16 {
        let p = &mut self.next_port[client];
        let port = *p;
        *p = if *p >= 60_999 { 32_768 } else { *p + 1 };
        port
    }
}

const WORDS: [&str; 20] = [
    "api",
    "cdn",
    "static",
    "img",
    "mail",
    "login",
    "update",
    "telemetry",
    "assets",
    "media",
    "edge",
    "push",
    "sync",
    "files",
    "auth",
    "ws",
    "graph",
    "metrics",
    "portal",
    "shop",
];
const DOMAINS: [&str; 15] = [
    "example-cloud.com",
    "contoso-cdn.net",
    "acme-corp.io",
    "northwind.org",
    "fabrikam.net",
    "globex.com",
    "initech.dev",
    "umbrella-svc.com",
    "hooli.xyz",
    "piedpiper.app",
    "stark-ind.com",
    "wayne-ent.net",
    "tyrell.io",
    "cyberdyne.ai",
    "aperture-labs.org",
];

/// A host name from a packed id: word, number 0..40, domain.
fn hostname(id: u32) -> String {
    let w = WORDS[(id % 20) as usize];
    let n = (id / 20) % 40;
    let d = DOMAINS[((id / 800) % 15) as usize];
    format!("{w}{n}.{d}")
}

fn name_id(rng: &mut Rng) -> u32 {
    rng.below(20 * 40 * 15) as u32
}

// ------------------------------------------------------------------ messages

/// What a TCP message carries; structured parts are built when the message
/// starts, bulk parts are copied from the random pool segment by segment.
#[derive(Copy, Clone, Debug)]
enum Body {
    ClientHello {
        name: u32,
    },
    /// ServerHello, CCS, then this many bytes of encrypted records.
    ServerFlight(u32),
    /// TLS application-data records totalling this many bytes.
    Records(u32),
    HttpRequest {
        name: u32,
    },
    HttpResponse(u32),
    Random(u32),
    SshBanner(&'static str),
    SshKexInit(Role),
    SshEcdhInit,
    SshKexBurst,
    SshNewKeys,
    /// Encrypted bytes on the wire (already a wire length).
    SshWire(u32),
}

#[derive(Copy, Clone, Debug)]
struct Msg {
    dir: u8,
    think: Nanos,
    body: Body,
}

/// The part of a message that is not built up front.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Tail {
    None,
    Random(usize),
    Records(usize),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Close {
    Fin,
    Rst,
    Open,
}

fn pick_close(rng: &mut Rng) -> Close {
    let r = rng.unit();
    if r < 0.85 {
        Close::Fin
    } else if r < 0.95 {
        Close::Rst
    } else {
        Close::Open
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Syn,
    SynAck,
    HsAck,
    NextMsg,
    Seg,
    MidAck,
    EndAck,
    Fin1,
    Fin2,
    Fin3,
    Done,
}

/// A TCP conversation: the reference generator's `tcp_conversation`.
struct TcpScript {
    msgs: Vec<Msg>,
    mi: usize,
    off: usize,
    total: usize,
    head: Vec<u8>,
    tail: Tail,
    pool_off: usize,
    phase: Phase,
    unacked: u8,
    first: bool,
    close: Close,
    seq: [u32; 2],
    win: [u16; 2],
    mss: u16,
    seg: usize,
    ts: Option<[u32; 2]>,
    /// The last TSval each side sent (the other side's TSecr).
    last_tsval: [u32; 2],
    rtt: f64,
    rate_gap: f64,
}

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

/// A datagram payload, built when sent.
#[derive(Copy, Clone, Debug)]
enum Payload {
    DnsQuery {
        name: u32,
        txid: u16,
        qtype: u16,
    },
    DnsResponse {
        name: u32,
        txid: u16,
        qtype: u16,
        answers: u8,
    },
    NtpClient,
    NtpServer,
    Syslog {
        n: u32,
    },
    Rtp,
    QuicInitial {
        len: u16,
    },
    QuicHandshake {
        len: u16,
    },
    QuicShort {
        first: u8,
        len: u16,
    },
    Random(u32),
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

impl TcpScript {
    fn new(
        rng: &mut Rng,
        v6: bool,
        msgs: Vec<Msg>,
        rtt: f64,
        rate_gap: f64,
        close: Close,
        handshake: bool,
    ) -> TcpScript {
        let ts = rng.chance(0.75);
        let mss: u16 = if v6 { 1440 } else { 1460 };
        TcpScript {
            msgs,
            mi: 0,
            off: 0,
            total: 0,
            head: Vec::new(),
            tail: Tail::None,
            pool_off: 0,
            phase: if handshake {
                Phase::Syn
            } else {
                Phase::NextMsg
            },
            unacked: 0,
            first: !handshake,
            close,
            seq: [rng.next_u32(), rng.next_u32()],
            win: [
                *rng.pick(&[502, 501, 2048, 64240]),
                *rng.pick(&[509, 235, 1024, 65535]),
            ],
            mss,
            seg: usize::from(mss) - if ts { 12 } else { 0 },
            ts: ts.then(|| [rng.next_u32() >> 1, rng.next_u32() >> 1]),
            last_tsval: [0; 2],
            rtt,
            rate_gap,
        }
    }

    fn half_rtt(&self) -> Nanos {
        secs(self.rtt * 0.5)
    }

    /// Builds the structured head of message `mi` and sizes its tail.
    fn prepare(&mut self, rng: &mut Rng) {
        self.head.clear();
        let body = self.msgs[self.mi].body;
        self.tail = match body {
            Body::ClientHello { name } => {
                tls::client_hello(&mut self.head, rng, &hostname(name), &["h2", "http/1.1"]);
                Tail::None
            }
            Body::ServerFlight(n) => {
                tls::server_hello_ccs(&mut self.head, rng);
                Tail::Records(n as usize)
            }
            Body::Records(n) => Tail::Records(n as usize),
            Body::HttpRequest { name } => {
                let path = format!("/{}/{}", WORDS[(name % 20) as usize], rng.below(100_000));
                http::request(&mut self.head, &hostname(name), &path);
                Tail::None
            }
            Body::HttpResponse(n) => {
                http::response_header(&mut self.head, n as usize);
                Tail::Random(n as usize)
            }
            Body::Random(n) | Body::SshWire(n) => Tail::Random(n as usize),
            Body::SshBanner(ident) => {
                ssh::banner(&mut self.head, ident);
                Tail::None
            }
            Body::SshKexInit(role) => {
                ssh::kexinit(&mut self.head, rng, &KexLists::openssh_9_2(role));
                Tail::None
            }
            Body::SshEcdhInit => {
                ssh::ecdh_init(&mut self.head, rng);
                Tail::None
            }
            Body::SshKexBurst => {
                ssh::server_kex_burst(&mut self.head, rng);
                Tail::None
            }
            Body::SshNewKeys => {
                ssh::newkeys(&mut self.head, rng);
                Tail::None
            }
        };
        let tail_len = match self.tail {
            Tail::None => 0,
            Tail::Random(n) | Tail::Records(n) => n,
        };
        self.total = self.head.len() + tail_len;
        self.pool_off = rng.below(POOL_LEN as u64) as usize;
        self.off = 0;
        self.unacked = 0;
    }

    /// Copies bytes `off..off+len` of the current message into `out`.
    fn fill(&self, off: usize, len: usize, pool: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let end = off + len;
        let head = self.head.len();
        if off < head {
            out.extend_from_slice(&self.head[off..end.min(head)]);
        }
        let from = off.max(head) - head;
        let to = end.max(head) - head;
        if from >= to {
            return;
        }
        match self.tail {
            Tail::None => {}
            Tail::Random(_) => copy_pool(pool, self.pool_off + from, to - from, out),
            Tail::Records(total) => fill_records(total, from, to, pool, self.pool_off, out),
        }
    }

    /// The next packet of the conversation and the gap before it.
    fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
        loop {
            match self.phase {
                Phase::Syn => {
                    self.phase = Phase::SynAck;
                    return Some((0, self.ctl(0, SYN)));
                }
                Phase::SynAck => {
                    self.phase = Phase::HsAck;
                    return Some((self.half_rtt(), self.ctl(1, SYN | ACK)));
                }
                Phase::HsAck => {
                    self.phase = Phase::NextMsg;
                    return Some((self.half_rtt(), self.ctl(0, ACK)));
                }
                Phase::NextMsg => {
                    if self.mi >= self.msgs.len() {
                        match self.close {
                            Close::Fin => self.phase = Phase::Fin1,
                            Close::Rst => {
                                self.phase = Phase::Done;
                                let dir = rng.below(2) as u8;
                                return Some((secs(rng.exp(0.5)), self.ctl(dir, RST | ACK)));
                            }
                            Close::Open => self.phase = Phase::Done,
                        }
                        continue;
                    }
                    self.prepare(rng);
                    if self.total == 0 {
                        self.mi += 1;
                        continue;
                    }
                    self.phase = Phase::Seg;
                }
                Phase::Seg => {
                    let m = self.msgs[self.mi];
                    let len = self.seg.min(self.total - self.off);
                    let gap = if self.first {
                        0
                    } else if self.off == 0 {
                        m.think
                    } else {
                        secs(rng.exp(self.rate_gap))
                    };
                    self.first = false;
                    let last = self.off + len == self.total;
                    let step = Step::Tcp {
                        dir: m.dir,
                        flags: if last { ACK | PSH } else { ACK },
                        off: self.off,
                        len,
                    };
                    self.off += len;
                    self.unacked += 1;
                    self.phase = if self.unacked == 2 {
                        Phase::MidAck
                    } else if last {
                        Phase::EndAck
                    } else {
                        Phase::Seg
                    };
                    return Some((gap, step));
                }
                Phase::MidAck => {
                    let dir = 1 - self.msgs[self.mi].dir;
                    self.unacked = 0;
                    self.phase = if self.off == self.total {
                        self.mi += 1;
                        Phase::NextMsg
                    } else {
                        Phase::Seg
                    };
                    return Some((secs(rng.exp(self.rate_gap * 0.5)), self.ctl(dir, ACK)));
                }
                Phase::EndAck => {
                    let dir = 1 - self.msgs[self.mi].dir;
                    self.mi += 1;
                    self.phase = Phase::NextMsg;
                    return Some((self.half_rtt() + 200_000, self.ctl(dir, ACK)));
                }
                Phase::Fin1 => {
                    self.phase = Phase::Fin2;
                    return Some((secs(rng.exp(0.5)), self.ctl(0, FIN | ACK)));
                }
                Phase::Fin2 => {
                    self.phase = Phase::Fin3;
                    return Some((self.half_rtt(), self.ctl(1, FIN | ACK)));
                }
                Phase::Fin3 => {
                    self.phase = Phase::Done;
                    return Some((self.half_rtt(), self.ctl(0, ACK)));
                }
                Phase::Done => return None,
            }
        }
    }

    fn ctl(&self, dir: u8, flags: u8) -> Step {
        Step::Tcp {
            dir,
            flags,
            off: 0,
            len: 0,
        }
    }
}

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

/// Bytes `from..to` of a run of TLS application-data records totalling
/// `total` bytes (headers computed, bodies from the pool).
fn fill_records(
    total: usize,
    from: usize,
    to: usize,
    pool: &[u8],
    pool_off: usize,
    out: &mut Vec<u8>,
) {
    let (_, base, extra) = tls::record_layout(total);
    let big = extra * (base + 1);
    let mut p = from;
    while p < to {
        let (index, start, len) = if p < big {
            let i = p / (base + 1);
            (i, i * (base + 1), base + 1)
        } else {
            let i = (p - big) / base;
            (extra + i, big + i * base, base)
        };
        let within = p - start;
        let record_end = (start + len).min(to);
        if within < 5 {
            let (header, _) = tls::record_header(total, index);
            let n = (5 - within).min(to - p);
            out.extend_from_slice(&header[within..within + n]);
            p += n;
        } else {
            copy_pool(pool, pool_off + p, record_end - p, out);
            p = record_end;
        }
    }
}

// ------------------------------------------------------------------ behaviours

fn app(n: u64) -> Body {
    Body::Records(n.max(tls::MIN_RECORD as u64) as u32)
}

fn msg(dir: u8, think: f64, body: Body) -> Msg {
    Msg {
        dir,
        think: secs(think),
        body,
    }
}

/// A TLS handshake's opening messages (ClientHello, server flight, the
/// client's Finished).
fn tls_opening(rng: &mut Rng, name: u32, rtt: f64, msgs: &mut Vec<Msg>) {
    msgs.push(msg(0, 0.0, Body::ClientHello { name }));
    msgs.push(msg(
        1,
        rtt * 0.5,
        Body::ServerFlight(rng.range(2000, 4600) as u32),
    ));
    msgs.push(msg(0, rtt * 0.5, app(80)));
}

fn tls_flow(rng: &mut Rng, v6: bool, midstream: bool) -> TcpScript {
    let rtt = rng.uniform(0.004, 0.12);
    let rate_gap = *rng.pick(&[0.00002, 0.00008, 0.0003, 0.001]);
    let mut msgs = Vec::new();
    if !midstream {
        let name = name_id(rng);
        tls_opening(rng, name, rtt, &mut msgs);
    }
    for _ in 0..1 + rng.pareto(1.5, 1.0, 40.0) as u32 {
        msgs.push(msg(0, rng.exp(0.6), app(rng.range(90, 900))));
        msgs.push(msg(
            1,
            rtt * 0.5 + 0.002,
            app(rng.pareto(1.1, 1200.0, 6e6) as u64),
        ));
    }
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, rate_gap, close, !midstream)
}

fn http_flow(rng: &mut Rng, v6: bool) -> TcpScript {
    let rtt = rng.uniform(0.004, 0.12);
    let name = name_id(rng);
    let mut msgs = Vec::new();
    for _ in 0..1 + rng.pareto(1.6, 1.0, 20.0) as u32 {
        msgs.push(msg(0, rng.exp(0.4), Body::HttpRequest { name }));
        msgs.push(msg(
            1,
            rtt * 0.5 + 0.003,
            Body::HttpResponse(rng.pareto(1.2, 400.0, 3e6) as u32),
        ));
    }
    let rate_gap = *rng.pick(&[0.00003, 0.0002, 0.001]);
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, rate_gap, close, true)
}

fn bulk_flow(rng: &mut Rng, v6: bool) -> TcpScript {
    let rtt = rng.uniform(0.0002, 0.002);
    let mut msgs = Vec::new();
    for _ in 0..1 + rng.pareto(1.3, 1.0, 50.0) as u32 {
        msgs.push(msg(
            0,
            rng.exp(0.2),
            Body::Random(rng.range(60, 700) as u32),
        ));
        msgs.push(msg(
            1,
            0.0005,
            Body::Random(rng.pareto(1.1, 300.0, 8e6) as u32),
        ));
    }
    let rate_gap = *rng.pick(&[0.000012, 0.00005, 0.0002]);
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, rate_gap, close, true)
}

/// Long-lived, low-rate TCP (push channels, websockets, MQTT over TLS).
fn keepalive_flow(rng: &mut Rng, v6: bool, midstream: bool) -> TcpScript {
    let rtt = rng.uniform(0.01, 0.15);
    let mut msgs = Vec::new();
    if !midstream {
        let name = name_id(rng);
        tls_opening(rng, name, rtt, &mut msgs);
    }
    let period = rng.uniform(4.0, 30.0);
    for _ in 0..rng.range(4, 40) {
        let dir = rng.below(2) as u8;
        let think = rng.uniform(0.5, 1.5) * period;
        msgs.push(msg(dir, think, app(rng.range(31, 140))));
    }
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, 0.001, close, !midstream)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum SshPattern {
    Interactive,
    Scp,
    Reverse,
}

const C: Suite = Suite::CHACHA20_POLY1305;

fn wire(payload: usize) -> Body {
    Body::SshWire(C.wire_len(payload) as u32)
}

/// An SSH connection: OpenSSH's clear-text opening (client banner first),
/// public-key login, a session channel, then the pattern's traffic.
fn ssh_flow(rng: &mut Rng, v6: bool, pattern: SshPattern) -> TcpScript {
    let rtt = rng.uniform(0.01, 0.15);
    let h = rtt * 0.5;
    let client = if rng.chance(0.5) {
        ssh::OPENSSH_9_2_DEBIAN
    } else {
        *rng.pick(&ssh::OTHER_CLIENTS)
    };
    let user = *rng.pick(&["root", "ubuntu", "git", "deploy", "tunnel"]);
    let mut m = vec![
        msg(0, 0.0, Body::SshBanner(client)),
        msg(1, h, Body::SshBanner(ssh::OPENSSH_9_2_DEBIAN)),
        msg(0, 0.0003, Body::SshKexInit(Role::Client)),
        msg(1, h, Body::SshKexInit(Role::Server)),
        msg(0, h, Body::SshEcdhInit),
        msg(1, h + 0.003, Body::SshKexBurst),
        msg(0, h, Body::SshNewKeys),
        msg(0, 0.0002, wire(msg::service_request("ssh-userauth"))),
        msg(1, h, wire(msg::service_accept("ssh-userauth"))),
        msg(0, h, wire(msg::userauth_none(user))),
        msg(1, h, wire(msg::userauth_failure("publickey"))),
        msg(0, h, wire(msg::userauth_pk_query(user))),
        msg(1, h, wire(msg::userauth_pk_ok())),
        msg(0, h, wire(msg::userauth_pk_signed(user))),
        msg(1, h, wire(msg::USERAUTH_SUCCESS)),
    ];
    let keystroke = C.wire_len(msg::channel_data(1));
    let close = match pattern {
        SshPattern::Interactive => {
            m.push(msg(0, h, wire(msg::channel_open_session())));
            m.push(msg(1, h, wire(msg::HOSTKEYS_PUSH)));
            m.push(msg(1, 0.0001, wire(msg::CHANNEL_OPEN_CONFIRMATION)));
            for _ in 0..rng.range(20, 400) {
                m.push(msg(0, rng.exp(0.35), wire(msg::channel_data(1))));
                let reply = *rng.pick(&[1usize, 1, 33, 185, 1385]);
                m.push(msg(1, h, wire(msg::channel_data(reply))));
            }
            pick_close(rng)
        }
        SshPattern::Scp => {
            m.push(msg(0, h, wire(msg::channel_open_session())));
            m.push(msg(1, h, wire(msg::CHANNEL_OPEN_CONFIRMATION)));
            for _ in 0..rng.range(1, 6) {
                m.push(msg(
                    0,
                    rng.exp(0.5),
                    wire(msg::channel_data(rng.range(32, 64) as usize)),
                ));
                m.push(msg(
                    0,
                    0.001,
                    Body::Random(rng.pareto(1.1, 20_000.0, 2e7) as u32),
                ));
            }
            pick_close(rng)
        }
        SshPattern::Reverse => {
            // `ssh -N -R`: the forward request and its grant, then
            // keep-alives and bursts driven from the remote side: keys of
            // an inner chacha20 session (76 bytes) arrive from the server
            // and the inside host echoes or answers.
            m.push(msg(0, h, wire(msg::tcpip_forward("localhost"))));
            m.push(msg(1, h, wire(msg::HOSTKEYS_PUSH)));
            m.push(msg(1, 0.0002, wire(msg::REQUEST_SUCCESS)));
            let tunnelled = C.wire_len(msg::channel_data(keystroke));
            for _ in 0..rng.range(8, 60) {
                if rng.chance(0.6) {
                    m.push(msg(0, rng.uniform(10.0, 30.0), wire(msg::KEEPALIVE)));
                    m.push(msg(1, h, wire(msg::REQUEST_FAILURE)));
                } else {
                    m.push(msg(
                        1,
                        rng.uniform(1.0, 20.0),
                        wire(*rng.pick(&[71usize, 111])),
                    ));
                    for _ in 0..rng.range(3, 40) {
                        m.push(msg(1, rng.exp(0.3), Body::SshWire(tunnelled as u32)));
                        let answer = *rng.pick(&[tunnelled, tunnelled, 340, 1400]);
                        m.push(msg(0, h, Body::SshWire(answer as u32)));
                    }
                }
            }
            if rng.chance(0.7) {
                Close::Open
            } else {
                Close::Fin
            }
        }
    };
    TcpScript::new(rng, v6, m, rtt, 0.0002, close, true)
}

// ------------------------------------------------------------------ datagram flows

/// A datagram flow's script, generated as it goes.
#[derive(Clone, Debug)]
enum Dgram {
    Dns {
        name: u32,
        qtypes: [u16; 2],
        count: u8,
        q: u8,
        phase: u8,
        txid: u16,
        rtt: f64,
    },
    Quic {
        stage: u32,
        packets: u32,
        rtt: f64,
        gap: f64,
    },
    Ntp {
        stage: u8,
        rtt: f64,
    },
    Syslog {
        i: u32,
        n: u32,
    },
    Voice {
        i: u32,
        n: u32,
    },
    Generic {
        i: u32,
        n: u32,
    },
    Icmp {
        s: u16,
        n: u16,
        reply: bool,
        rtt: f64,
    },
    Frag {
        stage: u8,
        left: u32,
        big: u32,
    },
    Arp {
        stage: u8,
        answered: bool,
    },
}

impl Dgram {
    fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
        match self {
            Dgram::Dns {
                name,
                qtypes,
                count,
                q,
                phase,
                txid,
                rtt,
            } => {
                if *q >= *count {
                    return None;
                }
                let qtype = qtypes[usize::from(*q)];
                match *phase {
                    0 => {
                        *txid = rng.next_u16();
                        let gap = if *q == 0 { 0 } else { 50_000 };
                        *phase = if rng.chance(0.03) { 1 } else { 2 };
                        Some((gap, dns_query(*name, *txid, qtype)))
                    }
                    1 => {
                        *phase = 2;
                        Some((1_000_000_000, dns_query(*name, *txid, qtype)))
                    }
                    _ => {
                        *phase = 0;
                        *q += 1;
                        let answers = if qtype == dns::TYPE_HTTPS {
                            0
                        } else {
                            *rng.pick(&[1u8, 1, 2, 4, 8])
                        };
                        let payload = Payload::DnsResponse {
                            name: *name,
                            txid: *txid,
                            qtype,
                            answers,
                        };
                        Some((secs(*rtt), Step::Udp { dir: 1, payload }))
                    }
                }
            }
            Dgram::Quic {
                stage,
                packets,
                rtt,
                gap,
            } => {
                let s = *stage;
                *stage += 1;
                let udp = |dir, payload| Step::Udp { dir, payload };
                match s {
                    0 => Some((0, udp(0, Payload::QuicInitial { len: 1236 }))),
                    1 => Some((secs(*rtt), udp(1, Payload::QuicInitial { len: 1180 }))),
                    2 => Some((
                        100_000,
                        udp(
                            1,
                            Payload::QuicHandshake {
                                len: rng.range(800, 1200) as u16,
                            },
                        ),
                    )),
                    3 => Some((
                        secs(*rtt * 0.5),
                        udp(
                            0,
                            Payload::QuicShort {
                                first: 0x40,
                                len: rng.range(31, 61) as u16,
                            },
                        ),
                    )),
                    _ if s - 4 < *packets => {
                        let g = secs(rng.exp(*gap));
                        if rng.chance(0.7) {
                            let len = *rng.pick(&[1231u16, 1251, 1301, 1351]);
                            Some((g, udp(1, Payload::QuicShort { first: 0x41, len })))
                        } else {
                            let len = rng.range(29, 81) as u16;
                            Some((g, udp(0, Payload::QuicShort { first: 0x42, len })))
                        }
                    }
                    _ => None,
                }
            }
            Dgram::Ntp { stage, rtt } => {
                *stage += 1;
                match *stage {
                    1 => Some((
                        0,
                        Step::Udp {
                            dir: 0,
                            payload: Payload::NtpClient,
                        },
                    )),
                    2 => Some((
                        secs(*rtt),
                        Step::Udp {
                            dir: 1,
                            payload: Payload::NtpServer,
                        },
                    )),
                    _ => None,
                }
            }
            Dgram::Syslog { i, n } => {
                if *i >= *n {
                    return None;
                }
                let gap = if *i == 0 { 0 } else { secs(rng.exp(1.0)) };
                *i += 1;
                let payload = Payload::Syslog { n: *i };
                Some((gap, Step::Udp { dir: 0, payload }))
            }
            Dgram::Voice { i, n } => {
                if *i >= *n {
                    return None;
                }
                let gap = if *i == 0 { 0 } else { 10_000_000 };
                let dir = (*i & 1) as u8;
                *i += 1;
                Some((
                    gap,
                    Step::Udp {
                        dir,
                        payload: Payload::Rtp,
                    },
                ))
            }
            Dgram::Generic { i, n } => {
                if *i >= *n {
                    return None;
                }
                let gap = if *i == 0 { 0 } else { secs(rng.exp(0.2)) };
                let dir = (*i & 1) as u8;
                *i += 1;
                let payload = Payload::Random(rng.range(20, 1400) as u32);
                Some((gap, Step::Udp { dir, payload }))
            }
            Dgram::Icmp { s, n, reply, rtt } => {
                if *reply {
                    *reply = false;
                    return Some((secs(*rtt), Step::Icmp { dir: 1, seq: *s }));
                }
                if *s >= *n {
                    return None;
                }
                let gap = if *s == 0 { 0 } else { secs(1.0 - *rtt) };
                *s += 1;
                *reply = true;
                Some((gap, Step::Icmp { dir: 0, seq: *s }))
            }
            Dgram::Frag { stage, left, big } => {
                *stage += 1;
                match *stage {
                    1 => {
                        let payload = Payload::Random(rng.range(40, 200) as u32);
                        Some((0, Step::Udp { dir: 0, payload }))
                    }
                    2 => {
                        // fragments of at most 1480 bytes of the datagram
                        let dgram = 8 + *big as usize;
                        *left = (dgram.div_ceil(1480) - 1) as u32;
                        Some((2_000_000, Step::FragFirst { dir: 1, len: *big }))
                    }
                    _ if *left > 0 => {
                        *left -= 1;
                        Some((0, Step::FragNext { dir: 1 }))
                    }
                    _ => None,
                }
            }
            Dgram::Arp { stage, answered } => {
                *stage += 1;
                match (*stage, *answered) {
                    (1, _) => Some((0, Step::Arp { reply: false })),
                    (2, true) => Some((300_000, Step::Arp { reply: true })),
                    _ => None,
                }
            }
        }
    }
}

fn dns_query(name: u32, txid: u16, qtype: u16) -> Step {
    Step::Udp {
        dir: 0,
        payload: Payload::DnsQuery { name, txid, qtype },
    }
}

// ------------------------------------------------------------------ flows

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    Tls,
    Dns,
    Keepalive,
    Quic,
    UdpMisc,
    Http,
    Bulk,
    Icmp,
    Arp,
    Frag,
    SshOut22,
    SshOut443,
    SshOut2222,
    SshReverse,
    SshIn22,
    SshInternal22,
    SshScp,
}

/// The reference generator's flow mix (weights of new flows).
const KINDS: [(Kind, f64); 17] = [
    (Kind::Tls, 0.270),
    (Kind::Dns, 0.200),
    (Kind::Keepalive, 0.300),
    (Kind::Quic, 0.060),
    (Kind::UdpMisc, 0.050),
    (Kind::Http, 0.035),
    (Kind::Bulk, 0.025),
    (Kind::Icmp, 0.020),
    (Kind::Arp, 0.010),
    (Kind::Frag, 0.002),
    (Kind::SshOut22, 0.0040),
    (Kind::SshOut443, 0.0015),
    (Kind::SshOut2222, 0.0008),
    (Kind::SshReverse, 0.0015),
    (Kind::SshIn22, 0.0020),
    (Kind::SshInternal22, 0.0020),
    (Kind::SshScp, 0.0008),
];

enum Script {
    Tcp(Box<TcpScript>),
    Dgram(Dgram),
}

struct Flow {
    /// Index into the truth's flows (when collected).
    truth: Option<usize>,
    paths: [Path; 2],
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

/// Who a new flow connects and how.
struct Shape {
    label: &'static str,
    proto: u8,
    client: (IpAddr, Option<usize>),
    server: IpAddr,
    sport: u16,
    cport: Option<u16>,
    vlan: Vlan,
    script: Script,
    handshake: bool,
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

    fn vlan(&mut self) -> Vlan {
        let r = self.rng.unit();
        if r < 0.09 {
            Vlan::Dot1q(*self.rng.pick(&[100, 200, 300, 310]))
        } else if r < 0.10 {
            Vlan::QinQ {
                outer: *self.rng.pick(&[10, 20]),
                inner: *self.rng.pick(&[100, 200]),
            }
        } else {
            Vlan::Untagged
        }
    }

    /// Picks the endpoints and the script of a new flow.
    fn shape(&mut self, kind: Kind, midstream: bool) -> Shape {
        let rng = &mut self.rng;
        let v6 = rng.chance(0.12) && !matches!(kind, Kind::Arp | Kind::Frag);
        let vlan = self.vlan();
        let rng = &mut self.rng;
        let (cl, ci) = self.hosts.internal(rng, v6);
        let client = (cl, Some(ci));
        let tcp = |s: TcpScript| Script::Tcp(Box::new(s));
        let mut shape = Shape {
            label: "",
            proto: proto::TCP,
            client,
            server: cl,
            sport: 443,
            cport: None,
            vlan,
            script: Script::Dgram(Dgram::Arp {
                stage: 0,
                answered: false,
            }),
            handshake: !midstream,
        };
        match kind {
            Kind::Tls => {
                shape.label = if midstream { "tls_midstream" } else { "tls" };
                shape.server = self.hosts.ext(rng, v6);
                shape.script = tcp(tls_flow(rng, v6, midstream));
            }
            Kind::Keepalive => {
                shape.label = if midstream {
                    "keepalive_midstream"
                } else {
                    "keepalive"
                };
                shape.sport = *rng.pick(&[443, 443, 443, 5223, 8883, 5228]);
                shape.server = self.hosts.ext(rng, v6);
                shape.script = tcp(keepalive_flow(rng, v6, midstream));
            }
            Kind::Http => {
                shape.label = "http";
                shape.sport = 80;
                shape.server = self.hosts.ext(rng, v6);
                shape.script = tcp(http_flow(rng, v6));
            }
            Kind::Bulk => {
                shape.label = "bulk_internal";
                shape.sport = *rng.pick(&[445, 3306, 5432, 8080, 9092, 2049, 6379]);
                shape.server = self.hosts.server(rng, v6);
                shape.script = tcp(bulk_flow(rng, v6));
            }
            Kind::Dns => {
                shape.label = "dns";
                shape.proto = proto::UDP;
                shape.handshake = false;
                shape.sport = 53;
                shape.server = if !v6 && rng.chance(0.85) {
                    *rng.pick(&self.hosts.dns4)
                } else if v6 {
                    self.hosts.ext(rng, true)
                } else {
                    *rng.pick(&self.hosts.pubdns4)
                };
                let (qtypes, count) = if rng.chance(0.5) {
                    ([dns::TYPE_A, dns::TYPE_AAAA], 2)
                } else {
                    let t = *rng.pick(&[1u16, 1, 1, 28, 65]);
                    ([t, t], 1)
                };
                shape.script = Script::Dgram(Dgram::Dns {
                    name: name_id(rng),
                    qtypes,
                    count,
                    q: 0,
                    phase: 0,
                    txid: 0,
                    rtt: rng.uniform(0.0005, 0.04),
                });
            }
            Kind::Quic => {
                shape.label = "quic";
                shape.proto = proto::UDP;
                shape.handshake = false;
                shape.server = self.hosts.ext(rng, v6);
                shape.script = Script::Dgram(Dgram::Quic {
                    stage: 0,
                    packets: rng.pareto(1.2, 4.0, 20_000.0) as u32,
                    rtt: rng.uniform(0.004, 0.1),
                    gap: *rng.pick(&[0.00003, 0.0002, 0.001]),
                });
            }
            Kind::UdpMisc => {
                shape.proto = proto::UDP;
                shape.handshake = false;
                let r = rng.unit();
                if r < 0.45 {
                    shape.label = "ntp";
                    shape.sport = 123;
                    shape.server = self.hosts.ext(rng, v6);
                    shape.script = Script::Dgram(Dgram::Ntp {
                        stage: 0,
                        rtt: rng.uniform(0.005, 0.05),
                    });
                } else if r < 0.70 {
                    shape.label = "syslog";
                    shape.sport = 514;
                    shape.server = self.hosts.server(rng, v6);
                    shape.script = Script::Dgram(Dgram::Syslog {
                        i: 0,
                        n: rng.range(1, 30) as u32,
                    });
                } else if r < 0.704 {
                    shape.label = "rtp";
                    shape.sport = (rng.range(5000, 10_000) * 2) as u16;
                    shape.cport = Some((rng.range(5000, 10_000) * 2) as u16);
                    shape.server = self.hosts.ext(rng, v6);
                    shape.script = Script::Dgram(Dgram::Voice {
                        i: 0,
                        n: rng.range(200, 3000) as u32,
                    });
                } else {
                    shape.label = "udp_generic";
                    shape.sport = rng.range(1024, 65_535) as u16;
                    shape.server = self.hosts.ext(rng, v6);
                    shape.script = Script::Dgram(Dgram::Generic {
                        i: 0,
                        n: rng.pareto(1.3, 2.0, 500.0) as u32,
                    });
                }
            }
            Kind::Icmp => {
                shape.label = "icmp_echo";
                shape.proto = if v6 { proto::ICMPV6 } else { proto::ICMP };
                shape.handshake = false;
                shape.server = self.hosts.ext(rng, v6);
                shape.script = Script::Dgram(Dgram::Icmp {
                    s: 0,
                    n: rng.range(1, 10) as u16,
                    reply: false,
                    rtt: rng.uniform(0.001, 0.08),
                });
            }
            Kind::Frag => {
                shape.label = "udp_fragmented";
                shape.proto = proto::UDP;
                shape.handshake = false;
                shape.sport = *rng.pick(&[2049, 7001]);
                shape.server = self.hosts.server(rng, false);
                shape.script = Script::Dgram(Dgram::Frag {
                    stage: 0,
                    left: 0,
                    big: rng.range(1600, 4000) as u32,
                });
            }
            Kind::Arp => {
                shape.label = "arp";
                shape.proto = 0;
                shape.handshake = false;
                shape.vlan = Vlan::Untagged;
                shape.server = self.hosts.internal(rng, false).0;
                shape.script = Script::Dgram(Dgram::Arp {
                    stage: 0,
                    answered: rng.chance(0.8),
                });
            }
            Kind::SshOut22
            | Kind::SshOut443
            | Kind::SshOut2222
            | Kind::SshReverse
            | Kind::SshIn22
            | Kind::SshInternal22
            | Kind::SshScp => {
                let (label, pattern, port) = match kind {
                    Kind::SshOut22 => ("ssh_out_22", SshPattern::Interactive, 22),
                    Kind::SshOut443 => ("ssh_out_443", SshPattern::Interactive, 443),
                    Kind::SshOut2222 => ("ssh_out_2222", SshPattern::Interactive, 2222),
                    Kind::SshReverse => (
                        "ssh_reverse_tunnel",
                        SshPattern::Reverse,
                        *rng.pick(&[22, 443]),
                    ),
                    Kind::SshIn22 => ("ssh_in_22", SshPattern::Interactive, 22),
                    Kind::SshInternal22 => ("ssh_internal_22", SshPattern::Interactive, 22),
                    _ => ("ssh_scp_out_22", SshPattern::Scp, 22),
                };
                shape.label = label;
                shape.sport = port;
                shape.server = match kind {
                    Kind::SshIn22 | Kind::SshInternal22 => self.hosts.server(rng, v6),
                    _ => self.hosts.ext(rng, v6),
                };
                if kind == Kind::SshIn22 {
                    shape.client = (self.hosts.ext(rng, v6), None);
                }
                shape.script = tcp(ssh_flow(rng, v6, pattern));
            }
        }
        shape
    }

    fn is_internal(a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) => v4.is_private(),
            IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
        }
    }

    /// Endpoints, paths, a unique 5-tuple, and the truth entry.
    fn make_flow(&mut self, shape: Shape) -> Flow {
        let rng = &mut self.rng;
        let (caddr, cindex) = shape.client;
        let mut server = shape.server;
        let icmp = matches!(shape.proto, proto::ICMP | proto::ICMPV6);
        let mut cport = match (shape.cport, cindex) {
            (Some(p), _) => p,
            (None, Some(i)) => self.hosts.port(i),
            (None, None) => rng.range(32_768, 61_000) as u16,
        };
        let (kc, ks) = if icmp {
            let (a, b, _) = icmp_ports(
                shape.proto == proto::ICMPV6,
                if shape.proto == proto::ICMP { 8 } else { 128 },
                0,
            );
            (a, b)
        } else {
            (cport, shape.sport)
        };
        let mut key_c = kc;
        // One flow per 5-tuple: bump the client port, or for ICMP pick
        // another target.
        if shape.proto != 0 {
            for _ in 0..64 {
                let key = FlowKey::new(
                    Endpoint {
                        addr: caddr,
                        port: key_c,
                    },
                    Endpoint {
                        addr: server,
                        port: ks,
                    },
                    shape.proto,
                    false,
                )
                .0;
                if self.used.insert(key) {
                    break;
                }
                if icmp {
                    server = self.hosts.ext(rng, caddr.is_ipv6());
                } else {
                    cport = match cindex {
                        Some(i) => self.hosts.port(i),
                        None => rng.range(32_768, 61_000) as u16,
                    };
                    key_c = cport;
                }
            }
        }
        // The capture sits on the internal hosts' uplink: an internal client
        // shows its own MAC and talks to the gateway; an outside client
        // (inbound SSH) comes from the gateway to the server's MAC; ARP
        // stays on the segment.
        let (cmac, smac) = if shape.proto == 0 {
            (frame::mac_for(caddr), frame::mac_for(server))
        } else if Self::is_internal(caddr) {
            (frame::mac_for(caddr), GATEWAY_MAC)
        } else {
            (GATEWAY_MAC, frame::mac_for(server))
        };
        let ttl_server = *rng.pick(&[47u8, 52, 54, 57, 58, 116, 118, 241]);
        let fwd = Path {
            src_mac: cmac,
            dst_mac: smac,
            vlan: shape.vlan,
            src: caddr,
            dst: server,
            ttl: 64,
            flow_label: rng.next_u32() & 0xF_FFFF,
        };
        let rev = fwd.reversed(ttl_server);
        let truth = match (&mut self.truth, shape.proto) {
            (Some(t), p) if p != 0 => {
                let mut f = FlowTruth::new(
                    shape.label,
                    p,
                    Endpoint {
                        addr: caddr,
                        port: key_c,
                    },
                    Endpoint {
                        addr: server,
                        port: ks,
                    },
                    shape.vlan,
                );
                f.handshake = shape.handshake && p == proto::TCP;
                t.flows.push(f);
                Some(t.flows.len() - 1)
            }
            _ => None,
        };
        Flow {
            truth,
            paths: [fwd, rev],
            ports: [cport, shape.sport],
            ident: [rng.next_u16(), rng.next_u16()],
            script: shape.script,
            pending: Step::Arp { reply: false },
            frag: Vec::new(),
            frag_off: 0,
            frag_ident: 0,
        }
    }

    /// Writes the flow's pending step as one frame.
    fn emit<S: FrameSink + ?Sized>(
        &mut self,
        slot: u32,
        at: Nanos,
        sink: &mut S,
    ) -> io::Result<()> {
        let ts = self.cfg.start.add_nanos(at);
        let Some(flow) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return Ok(());
        };
        let buf = &mut self.buf;
        let scratch = &mut self.scratch;
        let pool = &self.pool;
        // (direction, ip length, payload length, counts toward the flow)
        let counted: Option<(u8, usize, usize, bool)> = match flow.pending {
            Step::Tcp {
                dir,
                flags,
                off,
                len,
            } => {
                let Script::Tcp(t) = &mut flow.script else {
                    return Ok(());
                };
                let d = usize::from(dir);
                t.fill(off, len, pool, scratch);
                let ms = (at / 1_000_000) as u32;
                let stamps = t.ts.map(|b| (b[d].wrapping_add(ms), t.last_tsval[1 - d]));
                if let Some((val, _)) = stamps {
                    t.last_tsval[d] = val;
                }
                let mut opts = [0u8; 20];
                let n = frame::linux_tcp_options(flags, t.mss, stamps, &mut opts);
                let fields = TcpFields {
                    sport: flow.ports[d],
                    dport: flow.ports[1 - d],
                    seq: t.seq[d],
                    ack: if flags & ACK != 0 { t.seq[1 - d] } else { 0 },
                    flags,
                    window: if flags & SYN != 0 {
                        [64240, 65160][d]
                    } else {
                        t.win[d]
                    },
                    options: &opts[..n],
                };
                let ip = next_ip(&mut flow.ident, d, true);
                let ip_len = frame::tcp(buf, &flow.paths[d], ip, &fields, scratch);
                let advance = len as u32 + u32::from(flags & (SYN | FIN) != 0);
                t.seq[d] = t.seq[d].wrapping_add(advance);
                Some((dir, ip_len, len, true))
            }
            Step::Udp { dir, payload } => {
                let d = usize::from(dir);
                build_payload(payload, ts, &mut self.rng, pool, scratch);
                let ip = next_ip(&mut flow.ident, d, false);
                let ip_len = frame::udp(
                    buf,
                    &flow.paths[d],
                    ip,
                    flow.ports[d],
                    flow.ports[1 - d],
                    scratch,
                );
                Some((dir, ip_len, scratch.len(), true))
            }
            Step::FragFirst { dir, len } => {
                let d = usize::from(dir);
                scratch.clear();
                copy_pool(
                    pool,
                    self.rng.below(POOL_LEN as u64) as usize,
                    len as usize,
                    scratch,
                );
                flow.frag =
                    frame::udp_datagram(&flow.paths[d], flow.ports[d], flow.ports[1 - d], scratch);
                flow.frag_off = 0;
                flow.frag_ident = next_ip(&mut flow.ident, d, false).ident;
                let ip_len = send_fragment(flow, d, buf);
                Some((dir, ip_len, ip_len - 20 - 8, true))
            }
            Step::FragNext { dir } => {
                let d = usize::from(dir);
                let ip_len = send_fragment(flow, d, buf);
                Some((dir, ip_len, 0, false))
            }
            Step::Icmp { dir, seq } => {
                let d = usize::from(dir);
                let mut payload = [0u8; 56];
                payload[..8].copy_from_slice(&ts.as_secs().to_le_bytes());
                let micros = (ts.as_nanos() % 1_000_000_000) / 1000;
                payload[8..16].copy_from_slice(&micros.to_le_bytes());
                for (k, b) in payload[16..].iter_mut().enumerate() {
                    *b = 0x10 + k as u8;
                }
                let id = flow.ports[0];
                let ip = next_ip(&mut flow.ident, d, true);
                let ip_len = frame::icmp_echo(buf, &flow.paths[d], ip, dir == 1, id, seq, &payload);
                Some((dir, ip_len, payload.len(), true))
            }
            Step::Arp { reply } => {
                let (IpAddr::V4(a), IpAddr::V4(b)) = (flow.paths[0].src, flow.paths[0].dst) else {
                    return Ok(());
                };
                let (ma, mb) = (flow.paths[0].src_mac, flow.paths[0].dst_mac);
                let arp = if reply {
                    Arp {
                        reply: true,
                        sender_mac: mb,
                        sender_ip: b,
                        target_mac: ma,
                        target_ip: a,
                    }
                } else {
                    Arp {
                        reply: false,
                        sender_mac: ma,
                        sender_ip: a,
                        target_mac: mb,
                        target_ip: b,
                    }
                };
                frame::arp(buf, Vlan::Untagged, &arp);
                None
            }
        };
        sink.frame(ts, buf)?;
        self.report.packets += 1;
        self.report.bytes += buf.len() as u64;
        if self.first_ts.is_none() {
            self.first_ts = Some(ts);
        }
        self.last_ts = ts;
        if let Some(truth) = &mut self.truth {
            truth.count_frame(buf.len());
            match (counted, flow.truth) {
                (None, _) => truth.non_ip += 1,
                (Some((_, _, _, false)), _) => truth.later_fragments += 1,
                (Some((dir, ip, payload, true)), Some(i)) => {
                    let dir = if dir == 0 {
                        Dir::ToServer
                    } else {
                        Dir::ToClient
                    };
                    if let Some(f) = truth.flows.get_mut(i) {
                        f.record(
                            dir,
                            ts,
                            Lens {
                                frame: buf.len(),
                                ip,
                                payload,
                            },
                        );
                    }
                }
                (Some(_), None) => {}
            }
        }
        Ok(())
    }
}

fn next_ip(ident: &mut [u16; 2], d: usize, dont_fragment: bool) -> IpFields {
    let id = ident[d];
    ident[d] = id.wrapping_add(1);
    IpFields {
        ident: id,
        dont_fragment,
        frag: Frag::default(),
    }
}

/// Sends the next fragment (at most 1480 bytes) of the flow's datagram.
fn send_fragment(flow: &mut Flow, d: usize, buf: &mut Vec<u8>) -> usize {
    let off = flow.frag_off;
    let end = (off + 1480).min(flow.frag.len());
    let ip = IpFields {
        ident: flow.frag_ident,
        dont_fragment: false,
        frag: Frag {
            offset: off,
            more: end < flow.frag.len(),
        },
    };
    let data = flow.frag.get(off..end).unwrap_or(&[]);
    let ip_len = frame::ipv4_fragment(buf, &flow.paths[d], ip, proto::UDP, data);
    flow.frag_off = end;
    ip_len
}

/// Builds a datagram payload into `out`.
fn build_payload(p: Payload, ts: Timestamp, rng: &mut Rng, pool: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match p {
        Payload::DnsQuery { name, txid, qtype } => {
            dns::query(out, txid, &hostname(name), qtype);
        }
        Payload::DnsResponse {
            name,
            txid,
            qtype,
            answers,
        } => {
            let mut addrs = [IpAddr::from([0, 0, 0, 0]); 8];
            let n = usize::from(answers).min(8);
            for a in addrs.iter_mut().take(n) {
                *a = if qtype == dns::TYPE_AAAA {
                    let mut o = [0u8; 16];
                    o[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
                    o[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
                    frame::v6(o)
                } else {
                    IpAddr::V4(Ipv4Addr::from(rng.next_u32()))
                };
            }
            let ttl = rng.range(30, 3600) as u32;
            dns::response(out, txid, &hostname(name), qtype, &addrs[..n], ttl);
        }
        Payload::NtpClient => ntp::client(out, ts),
        Payload::NtpServer => ntp::server(out, [0x47, 0x50, 0x53, 0x00], ts, ts, ts),
        Payload::Syslog { n } => {
            let pri = rng.range(8, 191);
            let host = rng.below(99);
            let pid = rng.below(65_535);
            let text = format!("<{pri}>Nov 14 22:13:{:02} host{host} app[{pid}]: ", n % 60);
            out.extend_from_slice(text.as_bytes());
            let len = rng.range(40, 400) as usize;
            let start = out.len();
            copy_pool(pool, rng.below(POOL_LEN as u64) as usize, len / 2, out);
            // hex-encode the random part, like the reference generator
            let raw: Vec<u8> = out.drain(start..).collect();
            for b in raw {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        Payload::Rtp => {
            out.extend_from_slice(&[0x80, 0x00]);
            copy_pool(pool, rng.below(POOL_LEN as u64) as usize, 170, out);
        }
        Payload::QuicInitial { len } | Payload::QuicHandshake { len } => {
            let first = if matches!(p, Payload::QuicInitial { .. }) {
                0xC3
            } else {
                0xE0
            };
            out.push(first);
            out.extend_from_slice(&[0, 0, 0, 1]);
            let cid = rng.next_u64().to_be_bytes();
            out.push(8);
            out.extend_from_slice(&cid);
            out.push(0);
            if first == 0xC3 {
                out.push(0); // token length
            }
            out.extend_from_slice(&(0x4000 | len).to_be_bytes());
            copy_pool(
                pool,
                rng.below(POOL_LEN as u64) as usize,
                usize::from(len),
                out,
            );
        }
        Payload::QuicShort { first, len } => {
            out.push(first);
            copy_pool(
                pool,
                rng.below(POOL_LEN as u64) as usize,
                usize::from(len),
                out,
            );
        }
        Payload::Random(n) => copy_pool(pool, rng.below(POOL_LEN as u64) as usize, n as usize, out),
    }
}
