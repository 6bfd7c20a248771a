//! Bidirectional flow tracking: the flow record ([`Flow`]), its TCP state
//! ([`tcp`]), stream reassembly for analyzers ([`stream`]) and the bounded
//! table with packet-time expiry ([`table`]).

pub mod ended;
pub mod key;
pub mod pressure;
pub mod shard;
pub mod stream;
pub mod table;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testkit;

use crate::analyzer::dispatch::AppSlot;
use crate::analyzer::Dir;
use crate::decode::{Packet, Transport};
use crate::policy::AlertState;
use crate::time::Timestamp;
use key::{proto, Endpoint, FlowKey, Side};
use tcp::TcpState;

/// Packet and byte counts of one direction.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirStats {
    pub pkts: u64,
    /// Frame bytes on the wire (what EVE's `bytes_to*` count).
    pub bytes: u64,
    pub ip_bytes: u64,
    pub payload_bytes: u64,
    #[serde(with = "crate::time::nanos")]
    pub first: Timestamp,
    #[serde(with = "crate::time::nanos")]
    pub last: Timestamp,
}

impl DirStats {
    fn add(&mut self, pkt: &Packet<'_>) {
        if self.pkts == 0 {
            self.first = pkt.ts;
        }
        self.pkts += 1;
        self.bytes += u64::from(pkt.frame_len);
        self.ip_bytes += u64::from(pkt.ip_len);
        self.payload_bytes += u64::from(pkt.payload_len);
        self.last = self.last.max(pkt.ts);
    }
}

/// How the originator (the `src` of records) was decided.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OriginBasis {
    /// It sent the SYN.
    Syn,
    /// The other side's SYN-ACK was the first packet seen.
    SynAck,
    /// UDP/ICMP: it sent the first packet (or the ICMP request).
    FirstPacket,
    /// Handshake not seen: the endpoint with the higher (ephemeral) port
    /// is taken as the client. A guess.
    PortGuess,
}

impl OriginBasis {
    pub fn name(self) -> &'static str {
        match self {
            OriginBasis::Syn => "syn",
            OriginBasis::SynAck => "syn_ack",
            OriginBasis::FirstPacket => "first_packet",
            OriginBasis::PortGuess => "port_guess",
        }
    }
}

/// One-bit facts about a flow, as a set.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marks(u8);

impl Marks {
    /// Payload was seen and no protocol claimed it.
    pub const APP_UNKNOWN: Marks = Marks(1);
    /// The flow's analyzer learned all it can: packets no longer go to it
    /// (nor need the analysis state be touched per packet).
    pub const APP_DONE: Marks = Marks(2);
    /// An ICMP error quoting one of the flow's packets came back.
    pub const ICMP_ERROR: Marks = Marks(4);
    /// The engine found a tunnel (an identified SSH session): while open
    /// it is kept in [`TimeoutClass::TcpTunnel`], whose idle timeout
    /// outlasts a silent `ssh -N -R`. The flow module does not know why.
    pub const TUNNEL: Marks = Marks(8);

    pub fn has(self, mark: Marks) -> bool {
        self.0 & mark.0 == mark.0
    }

    pub fn set(&mut self, mark: Marks, on: bool) {
        match on {
            true => self.0 |= mark.0,
            false => self.0 &= !mark.0,
        }
    }
}

/// One bidirectional flow.
#[derive(Debug)]
pub struct Flow {
    pub key: FlowKey,
    /// The canonical side that originated the flow.
    pub orig: Side,
    pub basis: OriginBasis,
    /// One-bit facts ([`Marks`]), packed to keep the flow small.
    pub marks: Marks,
    /// Which direction sent the first packet (its time anchors the id).
    first_dir: Dir,
    /// What the policy already alerted on.
    pub alerts: AlertState,
    /// The facts revision (low 14 bits) and stage (top 2 bits) the policy
    /// last judged; see [`crate::judge`].
    pub judged: u16,
    /// Minutes after the start when the policy wants another look (0: no);
    /// minutes keep it small, the checks are for hour-long thresholds.
    pub recheck_minutes: u16,
    /// Which input (live interface, by its position) the flow's first
    /// packet came from: EVE's `in_iface`.
    pub input: u16,
    /// The table's expiry list this flow is linked into: its timeout
    /// class and eviction tier.
    pub(crate) class: TimeoutClass,
    pub(crate) tier: EvictionTier,
    /// Times this flow was picked up again mid-stream after it ended by
    /// idle timeout or eviction (see [`ended`]).
    pub resumed: u8,
    /// Start of the current reporting period (active timeout).
    /// Seconds after the start at which the current reporting period began.
    pub period_secs: u32,
    /// Packets toserver (index 0) and toclient (index 1).
    pub dirs: [DirStats; 2],
    pub tcp: TcpState,
    /// Protocol analysis; `None` until the flow carries payload, and again
    /// once no protocol claimed it.
    pub app: Option<Box<AppSlot>>,
}

/// What of a flow outlives the process (the sensor's state file): all of
/// it but its analysis, which the engine saves its own way.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FlowState {
    pub key: FlowKey,
    pub orig: Side,
    pub basis: OriginBasis,
    pub marks: Marks,
    pub first_dir: Dir,
    pub alerts: AlertState,
    pub judged: u16,
    pub recheck_minutes: u16,
    pub input: u16,
    pub resumed: u8,
    pub period_secs: u32,
    pub dirs: [DirStats; 2],
    pub tcp: TcpState,
}

impl Flow {
    /// A flow whose first packet is `pkt`, sent by `side`.
    pub fn new(key: FlowKey, side: Side, pkt: &Packet<'_>) -> Flow {
        let (sender_is_orig, basis) = originator(pkt);
        let orig = if sender_is_orig { side } else { side.other() };
        Flow {
            key,
            orig,
            basis,
            marks: Marks::default(),
            first_dir: if sender_is_orig {
                Dir::ToServer
            } else {
                Dir::ToClient
            },
            alerts: AlertState::default(),
            judged: 0,
            recheck_minutes: 0,
            input: 0,
            class: TimeoutClass::Other,
            tier: EvictionTier::Cheap,
            resumed: 0,
            period_secs: 0,
            dirs: [DirStats::default(); 2],
            tcp: TcpState::default(),
            app: None,
        }
    }

    /// The flow without its analysis.
    pub fn state(&self) -> FlowState {
        FlowState {
            key: self.key,
            orig: self.orig,
            basis: self.basis,
            marks: self.marks,
            first_dir: self.first_dir,
            alerts: self.alerts,
            judged: self.judged,
            recheck_minutes: self.recheck_minutes,
            input: self.input,
            resumed: self.resumed,
            period_secs: self.period_secs,
            dirs: self.dirs,
            tcp: self.tcp,
        }
    }

    /// The flow a [`FlowState`] was taken from, with `app` as its analysis.
    pub fn restore(s: FlowState, app: Option<Box<AppSlot>>) -> Flow {
        Flow {
            key: s.key,
            orig: s.orig,
            basis: s.basis,
            marks: s.marks,
            first_dir: s.first_dir,
            alerts: s.alerts,
            judged: s.judged,
            recheck_minutes: s.recheck_minutes,
            input: s.input,
            class: TimeoutClass::Other,
            tier: EvictionTier::Cheap,
            resumed: s.resumed,
            period_secs: s.period_secs,
            dirs: s.dirs,
            tcp: s.tcp,
            app,
        }
    }

    /// EVE `flow_id`: derived from the key and the first packet's time, so
    /// it is stable for the flow's life and reproduced by replays; at most
    /// 2^53 so JSON readers that use doubles keep it exact.
    pub fn id(&self) -> u64 {
        flow_id(&self.key, self.dirs[self.first_dir.index()].first)
    }

    pub fn dir_of(&self, side: Side) -> Dir {
        if side == self.orig {
            Dir::ToServer
        } else {
            Dir::ToClient
        }
    }

    pub fn client(&self) -> Endpoint {
        self.key.endpoint(self.orig)
    }

    pub fn server(&self) -> Endpoint {
        self.key.endpoint(self.orig.other())
    }

    pub fn is_tcp(&self) -> bool {
        self.key.proto == proto::TCP
    }

    /// Counts a packet sent in `dir`.
    pub fn count(&mut self, dir: Dir, pkt: &Packet<'_>) {
        self.dirs[dir.index()].add(pkt);
    }

    /// Whole seconds of packet time from the start to `now`.
    pub fn secs_since_start(&self, now: Timestamp) -> u32 {
        (now.since(self.start()) / crate::time::NANOS_PER_SEC).min(u64::from(u32::MAX)) as u32
    }

    /// Active timeout: true (and a new reporting period begins) when the
    /// current period has lasted `active_seconds` at `now`; 0 disables it.
    pub fn next_period_due(&mut self, now: Timestamp, active_seconds: u64) -> bool {
        let age = self.secs_since_start(now);
        let due =
            active_seconds > 0 && u64::from(age.saturating_sub(self.period_secs)) >= active_seconds;
        if due {
            self.period_secs = age;
        }
        due
    }

    /// Time of the first packet.
    pub fn start(&self) -> Timestamp {
        match (self.dirs[0].pkts, self.dirs[1].pkts) {
            (0, _) => self.dirs[1].first,
            (_, 0) => self.dirs[0].first,
            _ => self.dirs[0].first.min(self.dirs[1].first),
        }
    }

    /// Time of the latest packet.
    pub fn last(&self) -> Timestamp {
        self.dirs[0].last.max(self.dirs[1].last)
    }

    /// EVE's `flow.state`.
    pub fn eve_state(&self) -> &'static str {
        if self.is_tcp() {
            match self.tcp.eve_state() {
                "closed" => "closed",
                "established" | "fin_wait1" => "established",
                _ => "new",
            }
        } else if self.dirs[1].pkts > 0 && self.dirs[0].pkts > 0 {
            "established"
        } else {
            "new"
        }
    }

    /// The eviction tier the table keeps this flow in (what the engine
    /// last said, through [`table::FlowTable::touch`]).
    pub fn tier(&self) -> EvictionTier {
        self.tier
    }

    /// Whether the flow cost whoever made it nothing: one direction
    /// silent, no payload either way, or a TCP handshake begun and never
    /// completed. A spoofed SYN, scan probe or one-way datagram is cheap.
    /// Once false it stays false.
    pub fn is_cheap(&self) -> bool {
        let [a, b] = &self.dirs;
        a.pkts == 0
            || b.pkts == 0
            || a.payload_bytes + b.payload_bytes == 0
            || (self.is_tcp() && !self.tcp.established() && self.basis != OriginBasis::PortGuess)
    }

    /// The expiry class this flow is in now.
    pub fn timeout_class(&self) -> TimeoutClass {
        match self.key.proto {
            proto::TCP if self.tcp.closed() => TimeoutClass::TcpClosed,
            proto::TCP if self.marks.has(Marks::TUNNEL) => TimeoutClass::TcpTunnel,
            proto::TCP if self.tcp.established() => TimeoutClass::TcpEstablished,
            // Mid-stream flows (no SYN seen) are as good as established.
            proto::TCP if self.basis == OriginBasis::PortGuess => TimeoutClass::TcpEstablished,
            proto::TCP => TimeoutClass::TcpNew,
            proto::UDP => TimeoutClass::Udp,
            proto::ICMP | proto::ICMPV6 => TimeoutClass::Icmp,
            _ => TimeoutClass::Other,
        }
    }
}

/// Whether the sender of a flow's first packet is its originator, and why.
fn originator(pkt: &Packet<'_>) -> (bool, OriginBasis) {
    match &pkt.transport {
        Transport::Tcp(t) if t.flags.syn() && !t.flags.ack() => (true, OriginBasis::Syn),
        Transport::Tcp(t) if t.flags.syn() => (false, OriginBasis::SynAck),
        Transport::Tcp(_) => (port_says_client(pkt), OriginBasis::PortGuess),
        Transport::Udp if service_rank(pkt.src.port) > service_rank(pkt.dst.port) => {
            (false, OriginBasis::PortGuess)
        }
        Transport::Icmp { icmp_type, .. } => (!is_icmp_reply(*icmp_type), OriginBasis::FirstPacket),
        _ => (true, OriginBasis::FirstPacket),
    }
}

/// Without a handshake: the side whose port looks more like a service is
/// the server (a well-known service port, then any port below 1024); on a
/// tie the lower port is. Clients use ephemeral ports, but not always high
/// ones (an NFS client binds a port below 1024 to talk to 2049).
fn port_says_client(pkt: &Packet<'_>) -> bool {
    let (src, dst) = (service_rank(pkt.src.port), service_rank(pkt.dst.port));
    if src != dst {
        return src < dst;
    }
    pkt.src.port >= pkt.dst.port
}

/// How much a port looks like a listening service.
fn service_rank(port: u16) -> u8 {
    const SERVICES: [u16; 30] = [
        22, 25, 53, 80, 110, 123, 143, 389, 443, 445, 465, 587, 636, 853, 993, 995, 1194, 1883,
        2049, 2222, 3306, 3333, 3389, 5432, 5672, 6379, 6443, 8080, 8443, 9092,
    ];
    if SERVICES.contains(&port) {
        2
    } else {
        u8::from(port < 1024)
    }
}

fn is_icmp_reply(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        0 | 14 | 16 | 18 | 129 | 131 | 134 | 136 | 140 | 145
    )
}

/// A deterministic 53-bit flow id from the key and the start time
/// (splitmix64 finalizer over the fields), so replays reproduce ids.
fn flow_id(key: &FlowKey, start: Timestamp) -> u64 {
    let mut h = start.as_nanos() ^ u64::from(key.proto);
    for ep in [key.lo, key.hi] {
        let bits = match ep.addr {
            std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
            std::net::IpAddr::V6(a) => u128::from(a),
        };
        h = mix(h ^ bits as u64);
        h = mix(h ^ (bits >> 64) as u64);
        h = mix(h ^ u64::from(ep.port));
    }
    (mix(h) & ((1 << 53) - 1)).max(1)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Flows share an idle timeout within a class, so each class keeps its
/// flows in last-activity order and expiry pops from the front.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimeoutClass {
    TcpNew = 0,
    TcpEstablished = 1,
    TcpClosed = 2,
    Udp = 3,
    Icmp = 4,
    Other = 5,
    /// An open TCP flow the engine marked as a tunnel ([`Flow::tunnel`]).
    TcpTunnel = 6,
}

impl TimeoutClass {
    pub const COUNT: usize = 7;
    pub const ALL: [TimeoutClass; 7] = [
        TimeoutClass::TcpNew,
        TimeoutClass::TcpEstablished,
        TimeoutClass::TcpClosed,
        TimeoutClass::Udp,
        TimeoutClass::Icmp,
        TimeoutClass::Other,
        TimeoutClass::TcpTunnel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimeoutClass::TcpNew => "tcp-new",
            TimeoutClass::TcpEstablished => "tcp-established",
            TimeoutClass::TcpClosed => "tcp-closed",
            TimeoutClass::Udp => "udp",
            TimeoutClass::Icmp => "icmp",
            TimeoutClass::Other => "other",
            TimeoutClass::TcpTunnel => "tcp-tunnel",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How much a flow is worth keeping when the table is full, lowest first:
/// what it costs an attacker to make one. The engine decides a flow's tier
/// (it knows what analysis found); the table keeps one last-activity list
/// per timeout class and tier, so a victim is still found in O(1): the
/// longest-idle flow of the lowest tier that has any.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum EvictionTier {
    /// [`Flow::is_cheap`]: spoofed SYNs, scans, one-way datagrams.
    #[default]
    Cheap = 0,
    /// Answered and carrying payload, but nothing identified or alerted.
    Plain = 1,
    /// An analyzer claimed it (SSH, TLS, ...) or the policy alerted on it.
    Protected = 2,
}

impl EvictionTier {
    pub const COUNT: usize = 3;
    pub const ALL: [EvictionTier; 3] = [
        EvictionTier::Cheap,
        EvictionTier::Plain,
        EvictionTier::Protected,
    ];

    /// The `kind` label of the eviction counter.
    pub fn name(self) -> &'static str {
        match self {
            EvictionTier::Cheap => "cheap",
            EvictionTier::Plain => "plain",
            EvictionTier::Protected => "protected",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a flow record was written.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Idle longer than its class's timeout.
    Idle,
    /// Evicted because the table was full.
    Evicted,
    /// A new connection reused the 5-tuple of a closed one.
    Reused,
    /// End of input or the sensor stopped.
    Shutdown,
    /// Interim record of a long-lived flow (active timeout); the flow goes on.
    Active,
}

impl EndReason {
    pub const ALL: [EndReason; 5] = [
        EndReason::Idle,
        EndReason::Evicted,
        EndReason::Reused,
        EndReason::Shutdown,
        EndReason::Active,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Evicted => "evicted",
            EndReason::Reused => "reused",
            EndReason::Shutdown => "shutdown",
            EndReason::Active => "active",
        }
    }

    /// EVE's `flow.reason` vocabulary (`timeout`, `forced`, `shutdown`,
    /// and `tcp_reuse` for a TCP 5-tuple a new SYN reopened, as Suricata's
    /// `FLOW_END_FLAG_TCPREUSE`).
    pub fn eve(self) -> &'static str {
        match self {
            EndReason::Idle | EndReason::Active => "timeout",
            EndReason::Reused => "tcp_reuse",
            EndReason::Evicted => "forced",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Default idle timeout of [`TimeoutClass::TcpTunnel`]: 8 hours.
pub const TUNNEL_IDLE_SECONDS: u64 = 8 * 3600;

/// Flow-tracking settings. Defaults follow Zeek and Suricata practice.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Idle timeout per [`TimeoutClass`], in seconds.
    pub idle_seconds: [u64; TimeoutClass::COUNT],
    /// A flow open this long gets an interim record, then another every
    /// period; 0 disables interim records.
    pub active_seconds: u64,
    /// Maximum flows tracked at once; to make room the longest-idle flow
    /// of the lowest [`EvictionTier`] is evicted.
    pub capacity: usize,
    /// Under pressure (the table filled up, see [`pressure`]), cheap flows
    /// go idle after at most this many seconds (Suricata's emergency mode).
    pub emergency_idle_seconds: u64,
    /// Stream bytes per direction handed to analyzers, at most.
    pub stream_budget_bytes: u64,
    /// Identified flows ended by idle timeout or eviction remembered, at
    /// most, so a mid-stream continuation inherits them ([`ended`]).
    pub ended_capacity: usize,
    /// How long (packet time) an ended flow is remembered.
    pub ended_keep_seconds: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            // tcp-new, tcp-established, tcp-closed, udp, icmp, other,
            // tcp-tunnel: 8 h, four rounds of Linux's 2 h TCP keepalive, so
            // a silent tunnel the kernel still holds is kept, and the 1 and
            // 4 h long-lived thresholds are met with no packet between.
            idle_seconds: [30, 600, 10, 60, 30, 60, TUNNEL_IDLE_SECONDS],
            active_seconds: 1800,
            capacity: 1_000_000,
            emergency_idle_seconds: 5,
            stream_budget_bytes: 1 << 20,
            ended_capacity: ended::ENDED_CAPACITY,
            ended_keep_seconds: ended::ENDED_KEEP_SECONDS,
        }
    }
}
