//! Scenarios: hosts and conversations laid out on a timeline, then merged
//! into one time-ordered capture with its ground truth.
//!
//! ```
//! use egresswatch::analyzer::Dir;
//! use egresswatch::gen::{Scenario, TsPrecision};
//! use egresswatch::time::Timestamp;
//! use std::time::Duration;
//!
//! let mut s = Scenario::new(Timestamp::from_secs(1_700_000_000));
//! let node = s.host("10.10.0.10");
//! let git = s.remote("10.20.0.10");
//! s.tcp(node, 40000, git, 22)
//!     .at(Duration::from_millis(5))
//!     .handshake()
//!     .recv(b"SSH-2.0-OpenSSH_9.2p1\r\n")
//!     .send(b"SSH-2.0-OpenSSH_9.2p1\r\n")
//!     .data(Dir::ToServer, &[0u8; 3000]) // two segments at the default MSS
//!     .close_fin();
//! let capture = s.finish();
//! assert_eq!(capture.truth.flows.len(), 1);
//! let pcap = capture.pcap(TsPrecision::Micro);
//! assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
//! ```
//!
//! Each conversation keeps its own clock: a packet in the same direction as
//! the previous one follows it after the inter-packet gap, a packet in the
//! other direction after half the round-trip time, and `think` adds idle
//! time. Conversations may overlap freely; `finish` sorts all packets by
//! time (stably, so equal times keep their order of creation).

use super::frame::{self, Arp, Frag, IpFields, Path, TcpFields, Vlan};
use super::pcap::{write_pcap, write_pcapng, FrameSink, GenPacket, TsPrecision};
use super::rng::Rng;
use super::truth::{FlowTruth, Lens, Truth};
use crate::analyzer::Dir;
use crate::flow::key::{icmp_ports, proto, Endpoint};
use crate::time::{Nanos, Timestamp};
use std::io;
use std::net::IpAddr;
use std::time::Duration;

/// The MAC of the default gateway; traffic to hosts off the local segment
/// carries it.
pub const GATEWAY_MAC: [u8; 6] = [0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e];

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A host of a scenario.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub addr: IpAddr,
    /// The MAC frames to and from this host carry on the capture link.
    pub mac: [u8; 6],
    /// TTL (hop limit) of its packets as they reach the capture point.
    pub ttl: u8,
}

/// A handle to a host of a [`Scenario`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostId(usize);

/// A finished scenario: frames in time order and their ground truth.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    pub packets: Vec<GenPacket>,
    pub truth: Truth,
}

impl Capture {
    /// The capture as classic pcap bytes.
    pub fn pcap(&self, prec: TsPrecision) -> Vec<u8> {
        write_pcap(Vec::new(), &self.packets, prec).unwrap_or_default()
    }

    /// The capture as pcapng bytes.
    pub fn pcapng(&self, prec: TsPrecision) -> Vec<u8> {
        write_pcapng(Vec::new(), &self.packets, prec).unwrap_or_default()
    }

    /// Feeds every frame to `sink`.
    pub fn write_to<S: FrameSink + ?Sized>(&self, sink: &mut S) -> io::Result<()> {
        for p in &self.packets {
            sink.frame(p.ts, &p.data)?;
        }
        Ok(())
    }
}

/// Hosts and conversations on a timeline. See the module documentation.
pub struct Scenario {
    start: Timestamp,
    rng: Rng,
    hosts: Vec<Host>,
    packets: Vec<GenPacket>,
    truth: Truth,
    buf: Vec<u8>,
}

fn parse_addr(addr: &str) -> IpAddr {
    match addr.parse() {
        Ok(a) => a,
        Err(_) => panic!("scenario host {addr:?} is not an IP address"),
    }
}

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Scenario {
    /// A scenario starting at `start`, with seed 0 for sequence numbers,
    /// IP ids and ports chosen by the generator.
    pub fn new(start: Timestamp) -> Scenario {
        Scenario::with_seed(start, 0)
    }

    pub fn with_seed(start: Timestamp, seed: u64) -> Scenario {
        Scenario {
            start,
            rng: Rng::new(seed),
            hosts: Vec::new(),
            packets: Vec::new(),
            truth: Truth::default(),
            buf: Vec::with_capacity(2048),
        }
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// A host on the capture's own segment: its own (derived) MAC, TTL 64.
    ///
    /// # Panics
    /// If `addr` is not an IPv4 or IPv6 address literal.
    pub fn host(&mut self, addr: &str) -> HostId {
        let addr = parse_addr(addr);
        self.host_with(addr, frame::mac_for(addr), 64)
    }

    /// A host behind the gateway: frames carry the gateway's MAC, and its
    /// packets arrive with a TTL a few hops below 64.
    ///
    /// # Panics
    /// If `addr` is not an IPv4 or IPv6 address literal.
    pub fn remote(&mut self, addr: &str) -> HostId {
        let addr = parse_addr(addr);
        self.host_with(addr, GATEWAY_MAC, 54)
    }

    /// A host behind the gateway whose packets arrive with `ttl` (e.g. 63
    /// for a server one router away).
    ///
    /// # Panics
    /// If `addr` is not an IPv4 or IPv6 address literal.
    pub fn routed(&mut self, addr: &str, ttl: u8) -> HostId {
        let addr = parse_addr(addr);
        self.host_with(addr, GATEWAY_MAC, ttl)
    }

    /// Another address of an existing host's interface (its IPv6 address,
    /// or its address on a VLAN): same MAC, same TTL.
    ///
    /// # Panics
    /// If `addr` is not an IPv4 or IPv6 address literal.
    pub fn alias(&mut self, addr: &str, of: HostId) -> HostId {
        let addr = parse_addr(addr);
        let h = self.hosts[of.0];
        self.host_with(addr, h.mac, h.ttl)
    }

    /// A host with a chosen MAC and TTL.
    pub fn host_with(&mut self, addr: IpAddr, mac: [u8; 6], ttl: u8) -> HostId {
        self.hosts.push(Host { addr, mac, ttl });
        HostId(self.hosts.len() - 1)
    }

    pub fn host_info(&self, id: HostId) -> Host {
        self.hosts[id.0]
    }

    /// A TCP connection from `client:cport` to `server:sport`. Nothing is
    /// sent until a method of the returned builder says so.
    ///
    /// # Panics
    /// If the two hosts have different address families.
    pub fn tcp(&mut self, client: HostId, cport: u16, server: HostId, sport: u16) -> Tcp<'_> {
        let conv = Conv::new(self, client, server, proto::TCP, (cport, sport));
        let isn = [self.rng.next_u32(), self.rng.next_u32()];
        let ts_base = [self.rng.next_u32() >> 1, self.rng.next_u32() >> 1];
        let v6 = self.hosts[client.0].addr.is_ipv6();
        Tcp {
            s: self,
            c: conv,
            ports: [cport, sport],
            seq: isn,
            window: [502, 509],
            mss_option: if v6 { 1440 } else { 1460 },
            ts_base: Some(ts_base),
            last_tsval: [0; 2],
            auto_ack: true,
            pending: None,
            retransmit_next: false,
            reorder_next: false,
            rto: 200_000_000,
        }
    }

    /// A UDP exchange from `client:cport` to `server:sport`.
    pub fn udp(&mut self, client: HostId, cport: u16, server: HostId, sport: u16) -> Udp<'_> {
        let conv = Conv::new(self, client, server, proto::UDP, (cport, sport));
        Udp {
            s: self,
            c: conv,
            ports: [cport, sport],
        }
    }

    /// ICMP (or ICMPv6) echo requests from `client`, answered by `server`.
    pub fn ping(&mut self, client: HostId, server: HostId) -> Ping<'_> {
        let v6 = self.hosts[client.0].addr.is_ipv6();
        let (p, request) = if v6 {
            (proto::ICMPV6, 128u8)
        } else {
            (proto::ICMP, 8u8)
        };
        let (cport, sport, _) = icmp_ports(v6, request, 0);
        let mut conv = Conv::new(self, client, server, p, (cport, sport));
        conv.gap = 1_000_000_000;
        let id = self.rng.next_u16();
        Ping {
            s: self,
            c: conv,
            id,
            seq: 0,
        }
    }

    /// An ARP request from `asker` for `target`'s address at `at`, and the
    /// reply 300 µs later when `answered`.
    ///
    /// # Panics
    /// If either host has an IPv6 address.
    pub fn arp(&mut self, at: Duration, asker: HostId, target: HostId, answered: bool) {
        let a = self.hosts[asker.0];
        let t = self.hosts[target.0];
        let (IpAddr::V4(a_ip), IpAddr::V4(t_ip)) = (a.addr, t.addr) else {
            panic!("ARP needs IPv4 hosts");
        };
        let ts = self.start.add_nanos(nanos(at));
        let request = Arp {
            reply: false,
            sender_mac: a.mac,
            sender_ip: a_ip,
            target_mac: t.mac,
            target_ip: t_ip,
        };
        frame::arp(&mut self.buf, Vlan::Untagged, &request);
        self.push_non_ip(ts);
        if answered {
            let reply = Arp {
                reply: true,
                sender_mac: t.mac,
                sender_ip: t_ip,
                target_mac: a.mac,
                target_ip: a_ip,
            };
            frame::arp(&mut self.buf, Vlan::Untagged, &reply);
            self.push_non_ip(ts.add_nanos(300_000));
        }
    }

    /// Sorts the frames by time and closes the truth.
    pub fn finish(mut self) -> Capture {
        self.packets.sort_by_key(|p| p.ts);
        self.truth.finish();
        Capture {
            packets: self.packets,
            truth: self.truth,
        }
    }

    fn push_frame(&mut self, ts: Timestamp) {
        self.truth.count_frame(self.buf.len());
        self.packets.push(GenPacket {
            ts,
            data: self.buf.clone(),
        });
    }

    fn push_non_ip(&mut self, ts: Timestamp) {
        self.truth.non_ip += 1;
        self.push_frame(ts);
    }

    /// Records the frame in `buf` as a packet of `flow` going `dir`.
    fn push_flow(&mut self, ts: Timestamp, flow: usize, dir: Dir, ip: usize, payload: usize) {
        let lens = Lens {
            frame: self.buf.len(),
            ip,
            payload,
        };
        if let Some(f) = self.truth.flows.get_mut(flow) {
            f.record(dir, ts, lens);
        }
        self.push_frame(ts);
    }
}

/// What every conversation has: paths, the truth entry, a clock.
///
/// The capture point is at the client: a packet the server sends in reply
/// reaches it a full round trip after the client's packet, while the
/// client reacts within `react`; back-to-back packets in one direction are
/// `gap` apart.
struct Conv {
    flow: usize,
    paths: [Path; 2],
    ident: [u16; 2],
    start: Timestamp,
    /// Time of the last packet (or the start time before any).
    last: Timestamp,
    last_dir: Option<Dir>,
    /// Idle time to add before the next packet.
    wait: Nanos,
    /// Exact delay of the next packet, replacing the automatic step.
    next_step: Option<Nanos>,
    /// The next packet is not sent before this time.
    not_before: Option<Timestamp>,
    rtt: Nanos,
    gap: Nanos,
    react: Nanos,
}

impl Conv {
    /// `truth_ports` are the flow-key ports (for ICMP, Community ID's
    /// type and counterpart type).
    fn new(
        s: &mut Scenario,
        client: HostId,
        server: HostId,
        proto: u8,
        truth_ports: (u16, u16),
    ) -> Conv {
        let c = s.hosts[client.0];
        let v = s.hosts[server.0];
        assert_eq!(
            c.addr.is_ipv6(),
            v.addr.is_ipv6(),
            "a conversation needs two hosts of one address family"
        );
        let fwd = Path {
            src_mac: c.mac,
            dst_mac: v.mac,
            vlan: Vlan::Untagged,
            src: c.addr,
            dst: v.addr,
            ttl: c.ttl,
            flow_label: s.rng.next_u32() & 0xF_FFFF,
        };
        let rev = fwd.reversed(v.ttl);
        let truth = FlowTruth::new(
            "",
            proto,
            Endpoint {
                addr: c.addr,
                port: truth_ports.0,
            },
            Endpoint {
                addr: v.addr,
                port: truth_ports.1,
            },
            Vlan::Untagged,
        );
        s.truth.flows.push(truth);
        Conv {
            flow: s.truth.flows.len() - 1,
            paths: [fwd, rev],
            ident: [s.rng.next_u16(), s.rng.next_u16()],
            start: s.start,
            last: s.start,
            last_dir: None,
            wait: 0,
            next_step: None,
            not_before: None,
            rtt: 2_000_000,
            gap: 20_000,
            react: 200_000,
        }
    }

    /// The time the next packet going `dir` would have.
    fn peek(&self, dir: Dir) -> Timestamp {
        let step = match (self.next_step, self.last_dir) {
            (_, None) => 0,
            (Some(step), _) => step,
            (None, Some(d)) if d == dir => self.gap,
            (None, Some(_)) => match dir {
                Dir::ToClient => self.rtt,
                Dir::ToServer => self.react,
            },
        };
        let t = self.last.add_nanos(step).add_nanos(self.wait);
        match self.not_before {
            Some(nb) if nb > t => nb,
            _ => t,
        }
    }

    /// Takes the time of the next packet going `dir`.
    fn tick(&mut self, dir: Dir) -> Timestamp {
        let t = self.peek(dir);
        self.last = t;
        self.last_dir = Some(dir);
        self.wait = 0;
        self.next_step = None;
        self.not_before = None;
        t
    }

    fn started(&self) -> bool {
        self.last_dir.is_some()
    }

    fn ip(&mut self, dir: Dir, dont_fragment: bool) -> IpFields {
        let i = dir.index();
        let ident = self.ident[i];
        self.ident[i] = ident.wrapping_add(1);
        IpFields {
            ident,
            dont_fragment,
            frag: Frag::default(),
        }
    }

    fn at(&mut self, offset: Duration) {
        let t = self.start.add_nanos(nanos(offset));
        if self.started() {
            self.not_before = Some(t);
        } else {
            self.last = t;
        }
    }

    fn set_vlan(&mut self, s: &mut Scenario, vlan: Vlan) {
        self.paths[0].vlan = vlan;
        self.paths[1].vlan = vlan;
        if let Some(f) = s.truth.flows.get_mut(self.flow) {
            f.vlan = vlan;
        }
    }
}

/// Builder methods every conversation shares.
macro_rules! conv_methods {
    () => {
        /// Starts the conversation `offset` after the scenario start, or
        /// (once started) waits until then if that is later than now.
        pub fn at(&mut self, offset: Duration) -> &mut Self {
            self.c.at(offset);
            self
        }

        /// Idle time added before the next packet.
        pub fn think(&mut self, d: Duration) -> &mut Self {
            self.c.wait = self.c.wait.saturating_add(nanos(d));
            self
        }

        /// The next packet follows the previous one after exactly `d`
        /// (instead of the gap, round trip or reaction time).
        pub fn next_in(&mut self, d: Duration) -> &mut Self {
            self.c.next_step = Some(nanos(d));
            self
        }

        /// Round-trip time seen from the client (2 ms by default): a
        /// server's reply arrives this long after the client's packet.
        pub fn rtt(&mut self, d: Duration) -> &mut Self {
            self.c.rtt = nanos(d);
            self
        }

        /// Gap between back-to-back packets in one direction (20 µs).
        pub fn gap(&mut self, d: Duration) -> &mut Self {
            self.c.gap = nanos(d);
            self
        }

        /// How soon the client answers a server packet (200 µs).
        pub fn react(&mut self, d: Duration) -> &mut Self {
            self.c.react = nanos(d);
            self
        }

        /// 802.1Q / QinQ tags on every frame of the conversation.
        pub fn vlan(&mut self, vlan: Vlan) -> &mut Self {
            self.c.set_vlan(self.s, vlan);
            self
        }

        /// The label its truth entry carries.
        pub fn label(&mut self, label: &'static str) -> &mut Self {
            if let Some(f) = self.s.truth.flows.get_mut(self.c.flow) {
                f.label = label;
            }
            self
        }

        /// Time of the last packet sent (or the start time).
        pub fn now(&self) -> Timestamp {
            self.c.last
        }
    };
}

/// A TCP connection being scripted. Directions are [`Dir::ToServer`]
/// (client to server) and [`Dir::ToClient`].
///
/// ACKs follow the receiver's usual behaviour unless `auto_ack(false)`:
/// every second segment of a transfer is acknowledged at once, and the end
/// of a message is acknowledged by the receiver's next packet if it sends
/// one before its delayed-ACK timer (40 ms) fires, otherwise by a bare ACK
/// when the timer fires. So a request answered within the timer gets no
/// bare ACK, while keystrokes typed 200 ms apart each get one.
pub struct Tcp<'s> {
    s: &'s mut Scenario,
    c: Conv,
    ports: [u16; 2],
    /// Next sequence number each side sends.
    seq: [u32; 2],
    window: [u16; 2],
    mss_option: u16,
    ts_base: Option<[u32; 2]>,
    /// The last TSval each side sent (echoed as the other side's TSecr).
    last_tsval: [u32; 2],
    auto_ack: bool,
    pending: Option<PendingAck>,
    retransmit_next: bool,
    reorder_next: bool,
    rto: Nanos,
}

/// An acknowledgement the receiver owes.
#[derive(Copy, Clone, Debug)]
struct PendingAck {
    /// The direction the ACK travels in.
    dir: Dir,
    ack: u32,
    due: Timestamp,
}

/// Linux's minimum delayed-ACK timeout.
const DELAYED_ACK: Nanos = 40_000_000;

impl Tcp<'_> {
    conv_methods!();

    /// The MSS announced in the SYNs; data is cut into segments of the MSS
    /// less 12 bytes of timestamp option (1448 bytes by default).
    pub fn mss(&mut self, mss: u16) -> &mut Self {
        self.mss_option = mss.max(64);
        self
    }

    /// Whether segments carry the timestamp option (on by default).
    pub fn timestamps(&mut self, on: bool) -> &mut Self {
        if !on {
            self.ts_base = None;
        } else if self.ts_base.is_none() {
            self.ts_base = Some([self.s.rng.next_u32() >> 1, self.s.rng.next_u32() >> 1]);
        }
        self
    }

    /// Whether receivers acknowledge on their own (see the type's
    /// documentation; on by default). Off, only [`Tcp::ack`] sends ACKs.
    pub fn auto_ack(&mut self, on: bool) -> &mut Self {
        self.auto_ack = on;
        if !on {
            self.pending = None;
        }
        self
    }

    /// The next data segment is sent again after the retransmission
    /// timeout (200 ms), as if the first copy was lost past the capture
    /// point.
    pub fn retransmit_next(&mut self) -> &mut Self {
        self.retransmit_next = true;
        self
    }

    /// The next `send`/`recv` of at least two segments delivers its second
    /// segment before its first.
    pub fn reorder_next(&mut self) -> &mut Self {
        self.reorder_next = true;
        self
    }

    /// Bytes of payload per segment.
    pub fn segment_size(&self) -> usize {
        usize::from(self.mss_option) - if self.ts_base.is_some() { 12 } else { 0 }
    }

    /// Marks the connection as picked up mid-stream: no handshake is sent
    /// (this is also what happens when `handshake` is never called).
    pub fn midstream(&mut self) -> &mut Self {
        self
    }

    /// SYN, SYN-ACK, ACK with Linux's options (MSS, SACK permitted,
    /// timestamps, window scale 7).
    pub fn handshake(&mut self) -> &mut Self {
        if let Some(f) = self.s.truth.flows.get_mut(self.c.flow) {
            f.handshake = true;
        }
        self.emit(Dir::ToServer, SYN, 0, &[]);
        self.seq[0] = self.seq[0].wrapping_add(1);
        let ack = self.seq[0];
        self.emit(Dir::ToClient, SYN | ACK, ack, &[]);
        self.seq[1] = self.seq[1].wrapping_add(1);
        let ack = self.seq[1];
        self.emit(Dir::ToServer, ACK, ack, &[]);
        self
    }

    /// A lone SYN that nobody answers: a scan probe, or one packet of a
    /// flood from a spoofed source.
    pub fn syn(&mut self) -> &mut Self {
        if let Some(f) = self.s.truth.flows.get_mut(self.c.flow) {
            f.handshake = true;
        }
        self.emit(Dir::ToServer, SYN, 0, &[]);
        self.seq[0] = self.seq[0].wrapping_add(1);
        self
    }

    /// Client to server data.
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.data(Dir::ToServer, bytes)
    }

    /// Server to client data.
    pub fn recv(&mut self, bytes: &[u8]) -> &mut Self {
        self.data(Dir::ToClient, bytes)
    }

    /// `bytes` in `dir`, cut into segments; the last one has PSH.
    pub fn data(&mut self, dir: Dir, bytes: &[u8]) -> &mut Self {
        if bytes.is_empty() {
            return self;
        }
        let seg = self.segment_size();
        let n = bytes.len().div_ceil(seg);
        let base = self.seq[dir.index()];
        let mut order: Vec<usize> = (0..n).collect();
        if self.reorder_next && n >= 2 {
            order.swap(0, 1);
            self.reorder_next = false;
        }
        let receiver = dir.reverse();
        for (k, &i) in order.iter().enumerate() {
            let off = i * seg;
            let chunk = &bytes[off..(off + seg).min(bytes.len())];
            let flags = if i + 1 == n { ACK | PSH } else { ACK };
            self.seq[dir.index()] = base.wrapping_add(off as u32);
            let peer_ack = self.seq[receiver.index()];
            self.emit(dir, flags, peer_ack, chunk);
            if self.retransmit_next {
                self.retransmit_next = false;
                self.c.wait = self.c.wait.saturating_add(self.rto);
                self.emit(dir, flags, peer_ack, chunk);
            }
            let sent = k + 1;
            // The receiver acknowledges every second segment at once. The
            // swap only touches the first two segments, so after an even
            // count every segment so far has arrived.
            if self.auto_ack && sent % 2 == 0 && sent < n {
                let covered = base.wrapping_add((sent * seg).min(bytes.len()) as u32);
                let at = self.c.last.add_nanos(self.ack_delay(receiver, false));
                self.bare_ack_at(receiver, covered, at);
            }
        }
        self.seq[dir.index()] = base.wrapping_add(bytes.len() as u32);
        if self.auto_ack {
            self.pending = Some(PendingAck {
                dir: receiver,
                ack: self.seq[dir.index()],
                due: self.c.last.add_nanos(self.ack_delay(receiver, true)),
            });
        }
        self
    }

    /// A bare ACK sent now in `dir`, acknowledging everything received.
    pub fn ack(&mut self, dir: Dir) -> &mut Self {
        let ack = self.seq[dir.reverse().index()];
        self.emit(dir, ACK, ack, &[]);
        self
    }

    /// The client closes first: FIN, FIN, ACK.
    pub fn close_fin(&mut self) -> &mut Self {
        self.close_fin_from(Dir::ToServer)
    }

    /// Orderly close started by the side sending in `dir`.
    pub fn close_fin_from(&mut self, dir: Dir) -> &mut Self {
        let other = dir.reverse();
        let ack = self.seq[other.index()];
        self.emit(dir, FIN | ACK, ack, &[]);
        self.seq[dir.index()] = self.seq[dir.index()].wrapping_add(1);
        let ack = self.seq[dir.index()];
        self.emit(other, FIN | ACK, ack, &[]);
        self.seq[other.index()] = self.seq[other.index()].wrapping_add(1);
        let ack = self.seq[other.index()];
        self.emit(dir, ACK, ack, &[]);
        self
    }

    /// An abortive close: RST+ACK from the side sending in `dir`.
    pub fn close_rst(&mut self, dir: Dir) -> &mut Self {
        let ack = self.seq[dir.reverse().index()];
        self.emit(dir, RST | ACK, ack, &[]);
        self.pending = None;
        self
    }

    /// How long a receiver sending in `dir` takes to acknowledge, as seen
    /// at the client: a server's ACK needs a round trip, and a delayed ACK
    /// (end of a message) waits for the timer.
    fn ack_delay(&self, dir: Dir, delayed: bool) -> Nanos {
        let timer = if delayed { DELAYED_ACK } else { 0 };
        match dir {
            Dir::ToClient => self.c.rtt + timer,
            Dir::ToServer => self.c.react + timer,
        }
    }

    /// Settles an owed ACK before a packet going `dir`: the packet carries
    /// it if its sender owes it and sends before the timer; otherwise a
    /// bare ACK goes out when due (unless the other side is still sending
    /// and the ACK is not due yet).
    fn settle_pending(&mut self, dir: Dir) {
        let Some(p) = self.pending else { return };
        let next = self.c.peek(dir);
        if p.dir == dir && next <= p.due {
            self.pending = None;
        } else if p.dir == dir || next >= p.due {
            self.pending = None;
            self.bare_ack_at(p.dir, p.ack, p.due.min(next));
        }
    }

    /// Flushes an owed ACK (the script ended).
    fn flush_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            self.bare_ack_at(p.dir, p.ack, p.due);
        }
    }

    /// A bare ACK at a given time, outside the conversation's clock (the
    /// capture is sorted by time at the end).
    fn bare_ack_at(&mut self, dir: Dir, ack: u32, ts: Timestamp) {
        self.write(dir, ACK, ack, &[], ts);
    }

    /// One segment at `seq[dir]` (not advanced here) at the next tick.
    fn emit(&mut self, dir: Dir, flags: u8, ack: u32, payload: &[u8]) {
        if flags & SYN == 0 {
            self.settle_pending(dir);
        }
        let ts = self.c.tick(dir);
        self.write(dir, flags, ack, payload, ts);
    }

    fn write(&mut self, dir: Dir, flags: u8, ack: u32, payload: &[u8], ts: Timestamp) {
        let i = dir.index();
        let mut opts = [0u8; 20];
        let opt_len = self.options(dir, flags, ts, &mut opts);
        if opt_len >= 12 {
            let at = if flags & SYN != 0 { 8 } else { 4 };
            self.last_tsval[i] =
                u32::from_be_bytes([opts[at], opts[at + 1], opts[at + 2], opts[at + 3]]);
        }
        let fields = TcpFields {
            sport: self.ports[i],
            dport: self.ports[1 - i],
            seq: self.seq[i],
            ack,
            flags,
            window: if flags & SYN != 0 {
                [64240, 65160][i]
            } else {
                self.window[i]
            },
            options: &opts[..opt_len],
        };
        let ip = self.c.ip(dir, true);
        let ip_len = frame::tcp(&mut self.s.buf, &self.c.paths[i], ip, &fields, payload);
        self.s
            .push_flow(ts, self.c.flow, dir, ip_len, payload.len());
    }

    /// Linux's options: TSval counts milliseconds since the scenario start
    /// from a random base, TSecr echoes the peer's last TSval.
    fn options(&self, dir: Dir, flags: u8, ts: Timestamp, out: &mut [u8; 20]) -> usize {
        let ms = (ts.since(self.c.start) / 1_000_000) as u32;
        let i = dir.index();
        let stamps = self
            .ts_base
            .map(|b| (b[i].wrapping_add(ms), self.last_tsval[1 - i]));
        frame::linux_tcp_options(flags, self.mss_option, stamps, out)
    }
}

impl Drop for Tcp<'_> {
    /// An ACK still owed when the script ends is sent when it falls due.
    fn drop(&mut self) {
        self.flush_pending();
    }
}

/// A UDP exchange being scripted.
pub struct Udp<'s> {
    s: &'s mut Scenario,
    c: Conv,
    ports: [u16; 2],
}

impl Udp<'_> {
    conv_methods!();

    /// Client to server datagram.
    pub fn send(&mut self, payload: &[u8]) -> &mut Self {
        self.data(Dir::ToServer, payload)
    }

    /// Server to client datagram.
    pub fn recv(&mut self, payload: &[u8]) -> &mut Self {
        self.data(Dir::ToClient, payload)
    }

    /// One datagram in `dir` (payloads beyond 65507 bytes are cut).
    pub fn data(&mut self, dir: Dir, payload: &[u8]) -> &mut Self {
        let payload = &payload[..payload.len().min(65_507)];
        let ts = self.c.tick(dir);
        let i = dir.index();
        let ip = self.c.ip(dir, false);
        let ip_len = frame::udp(
            &mut self.s.buf,
            &self.c.paths[i],
            ip,
            self.ports[i],
            self.ports[1 - i],
            payload,
        );
        self.s
            .push_flow(ts, self.c.flow, dir, ip_len, payload.len());
        self
    }

    /// One datagram in `dir` sent as IPv4 fragments of at most
    /// `fragment_size` bytes of IP payload each (rounded down to a multiple
    /// of 8). The first fragment counts toward the flow; the others are
    /// counted in [`Truth::later_fragments`]. On an IPv6 path the datagram
    /// is sent whole.
    pub fn data_fragmented(&mut self, dir: Dir, payload: &[u8], fragment_size: usize) -> &mut Self {
        let i = dir.index();
        if self.c.paths[i].is_v6() {
            return self.data(dir, payload);
        }
        let payload = &payload[..payload.len().min(65_507)];
        let size = (fragment_size / 8 * 8).max(16);
        let dgram =
            frame::udp_datagram(&self.c.paths[i], self.ports[i], self.ports[1 - i], payload);
        let ident = self.c.ip(dir, false).ident;
        let mut offset = 0;
        while offset < dgram.len() {
            let end = (offset + size).min(dgram.len());
            let ts = self.c.tick(dir);
            let fields = IpFields {
                ident,
                dont_fragment: false,
                frag: Frag {
                    offset,
                    more: end < dgram.len(),
                },
            };
            let ip_len = frame::ipv4_fragment(
                &mut self.s.buf,
                &self.c.paths[i],
                fields,
                proto::UDP,
                &dgram[offset..end],
            );
            if offset == 0 {
                self.s.push_flow(ts, self.c.flow, dir, ip_len, end - 8);
            } else {
                self.s.truth.later_fragments += 1;
                self.s.push_frame(ts);
            }
            offset = end;
        }
        self
    }

    /// Client to server, fragmented (see [`Udp::data_fragmented`]).
    pub fn send_fragmented(&mut self, payload: &[u8], fragment_size: usize) -> &mut Self {
        self.data_fragmented(Dir::ToServer, payload, fragment_size)
    }

    /// Server to client, fragmented.
    pub fn recv_fragmented(&mut self, payload: &[u8], fragment_size: usize) -> &mut Self {
        self.data_fragmented(Dir::ToClient, payload, fragment_size)
    }
}

/// ICMP echo requests and replies being scripted.
pub struct Ping<'s> {
    s: &'s mut Scenario,
    c: Conv,
    id: u16,
    seq: u16,
}

impl Ping<'_> {
    conv_methods!();

    /// `count` request/reply pairs, one per inter-packet gap (1 s unless
    /// set with `gap`), with Linux ping's 56-byte payload.
    pub fn echo(&mut self, count: u16) -> &mut Self {
        for _ in 0..count {
            self.one(true);
        }
        self
    }

    /// `count` requests nobody answers.
    pub fn unanswered(&mut self, count: u16) -> &mut Self {
        for _ in 0..count {
            self.one(false);
        }
        self
    }

    fn one(&mut self, answered: bool) {
        self.seq = self.seq.wrapping_add(1);
        let ts = self.c.tick(Dir::ToServer);
        self.packet(Dir::ToServer, ts);
        if answered {
            let reply = self.c.tick(Dir::ToClient);
            self.packet(Dir::ToClient, reply);
            // The next request is timed from this one, not from the reply.
            self.c.last = ts;
            self.c.last_dir = Some(Dir::ToServer);
        }
    }

    fn packet(&mut self, dir: Dir, sent: Timestamp) {
        let mut payload = [0u8; 56];
        let secs = sent.as_secs();
        let micros = (sent.as_nanos() % 1_000_000_000) / 1_000;
        payload[..8].copy_from_slice(&secs.to_le_bytes());
        payload[8..16].copy_from_slice(&micros.to_le_bytes());
        for (k, b) in payload[16..].iter_mut().enumerate() {
            *b = 0x10 + k as u8;
        }
        let i = dir.index();
        let ip = self.c.ip(dir, true);
        let ip_len = frame::icmp_echo(
            &mut self.s.buf,
            &self.c.paths[i],
            ip,
            dir == Dir::ToClient,
            self.id,
            self.seq,
            &payload,
        );
        self.s
            .push_flow(sent, self.c.flow, dir, ip_len, payload.len());
    }
}
