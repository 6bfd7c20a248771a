//! Ground truth: what the generator put on the wire, per flow, counted as
//! the generator emitted it. Integration tests compare the flow table's
//! output with this.
//!
//! Counting follows the project's decoding rules (issue 2): every frame of
//! a flow counts, including retransmissions and Ethernet padding (frame
//! bytes are wire bytes); the first fragment of a fragmented datagram
//! counts toward its flow, later fragments do not (they carry no ports) and
//! are counted in [`Truth::later_fragments`]; ARP frames belong to no flow
//! and are counted in [`Truth::non_ip`].

use super::frame::Vlan;
use crate::analyzer::Dir;
use crate::flow::key::{Endpoint, FlowKey};
use crate::time::Timestamp;

/// One flow as generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowTruth {
    /// What the flow models, e.g. `"tls"`, `"ssh_reverse_tunnel"`.
    pub label: &'static str,
    pub proto: u8,
    /// The originator: the TCP SYN sender, the first sender of a UDP
    /// exchange, the ICMP echo requester. ICMP endpoints carry Community
    /// ID's port equivalents (type and counterpart type).
    pub client: Endpoint,
    pub server: Endpoint,
    pub vlan: Vlan,
    /// Whether the TCP handshake is in the capture, at least the
    /// originator's SYN (a scan probe's lone SYN counts; false for flows
    /// picked up mid-stream and for non-TCP flows).
    pub handshake: bool,
    /// Per direction, indexed by [`Dir::index`].
    pub packets: [u64; 2],
    /// Bytes on the wire (Ethernet header and padding included).
    pub frame_bytes: [u64; 2],
    /// Bytes of the IP packets (from their length fields).
    pub ip_bytes: [u64; 2],
    /// Transport payload bytes (TCP/UDP payload, ICMP data after the
    /// 8-byte header).
    pub payload_bytes: [u64; 2],
    pub first: Timestamp,
    pub last: Timestamp,
}

impl FlowTruth {
    pub fn new(
        label: &'static str,
        proto: u8,
        client: Endpoint,
        server: Endpoint,
        vlan: Vlan,
    ) -> Self {
        FlowTruth {
            label,
            proto,
            client,
            server,
            vlan,
            handshake: false,
            packets: [0; 2],
            frame_bytes: [0; 2],
            ip_bytes: [0; 2],
            payload_bytes: [0; 2],
            first: Timestamp::default(),
            last: Timestamp::default(),
        }
    }

    /// The canonical flow key (Community ID endpoint order).
    pub fn key(&self) -> FlowKey {
        FlowKey::new(self.client, self.server, self.proto, false).0
    }

    pub fn total_packets(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }

    /// Counts one packet of this flow.
    pub fn record(&mut self, dir: Dir, ts: Timestamp, lens: Lens) {
        if self.total_packets() == 0 || ts < self.first {
            self.first = ts;
        }
        if ts > self.last || self.total_packets() == 0 {
            self.last = ts;
        }
        let i = dir.index();
        self.packets[i] += 1;
        self.frame_bytes[i] += lens.frame as u64;
        self.ip_bytes[i] += lens.ip as u64;
        self.payload_bytes[i] += lens.payload as u64;
    }
}

/// The three lengths truth counts for a packet.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Lens {
    pub frame: usize,
    pub ip: usize,
    pub payload: usize,
}

/// Ground truth of a whole capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Truth {
    /// Flows with at least one packet, in order of creation.
    pub flows: Vec<FlowTruth>,
    /// Every frame written.
    pub frames: u64,
    pub frame_bytes: u64,
    /// ARP and other non-IP frames.
    pub non_ip: u64,
    /// IP fragments after the first (no ports, no flow).
    pub later_fragments: u64,
}

impl Truth {
    /// Counts a frame that belongs to no flow or to a flow (see module doc).
    pub fn count_frame(&mut self, len: usize) {
        self.frames += 1;
        self.frame_bytes += len as u64;
    }

    /// Drops flows that never sent a packet (created just before a packet
    /// budget ran out).
    pub fn finish(&mut self) {
        self.flows.retain(|f| f.total_packets() > 0);
    }

    /// Packets that belong to flows.
    pub fn flow_packets(&self) -> u64 {
        self.flows.iter().map(FlowTruth::total_packets).sum()
    }
}
