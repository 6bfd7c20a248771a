//! Deterministic capture generator: test and bench support.
//!
//! Builds Ethernet captures from scripted scenarios with etherparse's
//! `PacketBuilder` (valid IPv4, TCP, UDP and ICMP checksums), writes them
//! as pcap or pcapng, and reports per-flow ground truth ([`Truth`]).
//! Nothing here reads a clock or global state: the same scenario name and
//! seed give the same bytes on every machine.
//!
//! - [`Scenario`]: hosts, TCP/UDP/ICMP conversations and ARP on a timeline
//!   (handshakes, FIN/RST teardowns, MSS segmentation, retransmission,
//!   reordering, VLAN and QinQ tags, IPv4 fragments), merged into one
//!   time-ordered [`Capture`].
//! - [`demo`]: the GPU training node with one outbound reverse SSH tunnel
//!   and a Stratum miner, embedded in the binary for `egresswatch demo`.
//! - [`flood`]: a SYN flood from spoofed sources, to fill a flow table.
//! - [`bench`](mod@bench): a streaming generator of realistic mixed traffic, millions
//!   of packets and 100k+ flows, for the throughput benchmarks.

pub mod bench;
pub mod chain;
pub mod demo;
pub mod flood;
pub mod frame;
pub mod pcap;
pub mod proto;
pub mod proxy;
pub mod rng;
pub mod scenario;
pub mod truth;
pub mod tunnel;

pub use bench::{BenchConfig, BenchReport};
pub use frame::Vlan;
pub use pcap::{
    write_pcap, write_pcapng, CaptureFormat, CaptureWriter, FrameSink, GenPacket, PcapWriter,
    PcapngWriter, TsPrecision,
};
pub use rng::Rng;
pub use scenario::{Capture, Host, HostId, Ping, Scenario, Tcp, Udp};
pub use truth::{FlowTruth, Truth};

use std::io::Write;

/// Names accepted by [`generate`], with a one-line description each.
pub const SCENARIOS: [(&str, &str); 8] = [
    (
        "demo",
        "a GPU node's ordinary traffic plus a reverse SSH tunnel and a Stratum miner",
    ),
    (
        "bench",
        "realistic mixed traffic: 2 M packets and 100 k flows by default",
    ),
    (
        "flood",
        "a SYN flood from spoofed sources: 100 k SYNs (--packets) over 10 s",
    ),
    (
        "scan",
        "a training node port-scans a neighbour (1000 ports) and ping-sweeps a /24",
    ),
    (
        "unanswered-miner",
        "a lone mining.subscribe nobody answers and an XMRig login refused",
    ),
    (
        "pool-lookup",
        "a DNS lookup of a mining pool's name, no connection",
    ),
    (
        "scraping",
        "Prometheus scraping 300 exporters every 15 s (benign)",
    ),
    (
        "ssh-via-proxy",
        "reverse SSH tunnels through HTTP CONNECT and SOCKS5, SSH through both nested, HTTPS through the proxy",
    ),
];

/// Options of [`generate`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GenOptions {
    /// Seed; `None` takes the scenario's own default (the embedded demo's,
    /// or the reference bench capture's).
    pub seed: Option<u64>,
    /// Packets to write (bench and flood; the demo has a fixed size).
    pub packets: Option<u64>,
    /// Flows to start (bench only; default: packets / 20).
    pub flows: Option<u64>,
    pub format: CaptureFormat,
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

/// Why [`generate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("unknown scenario {0:?}; known: demo, idle-tunnel, bench, flood, scan, unanswered-miner, pool-lookup, scraping, ssh-via-proxy")]
    UnknownScenario(String),
    #[error("writing the capture: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the named scenario as a capture to `out`.
pub fn generate<W: Write>(name: &str, opts: &GenOptions, out: W) -> Result<Summary, GenError> {
    let mut w = CaptureWriter::new(out, opts.format)?;
    let whole = |cap: Capture, mut w: CaptureWriter<W>| -> Result<Summary, GenError> {
        cap.write_to(&mut w)?;
        w.into_inner().flush()?;
        Ok(Summary {
            packets: cap.truth.frames,
            bytes: cap.truth.frame_bytes,
            flows: cap.truth.flows.len() as u64,
        })
    };
    match name {
        "demo" => whole(demo::demo(opts.seed.unwrap_or(demo::DEMO_SEED)), w),
        "idle-tunnel" => whole(tunnel::idle_tunnel(opts.seed.unwrap_or(demo::DEMO_SEED)), w),
        "flood" => {
            let syns = opts.packets.unwrap_or(flood::DEFAULT_SYNS);
            let syns = u32::try_from(syns).unwrap_or(u32::MAX);
            whole(flood::flood(syns, opts.seed.unwrap_or(0)), w)
        }
        "bench" => {
            let seed = opts.seed.unwrap_or(bench::DEFAULT_SEED);
            let mut cfg = BenchConfig::new(opts.packets.unwrap_or(2_000_000), seed);
            if let Some(flows) = opts.flows {
                cfg.flows = flows;
            }
            let report = bench::run(&cfg, &mut w)?;
            w.into_inner().flush()?;
            Ok(Summary {
                packets: report.packets,
                bytes: report.bytes,
                flows: report.flows,
            })
        }
        other => match scenario(other, opts.seed.unwrap_or(0)) {
            Some(cap) => whole(cap, w),
            None => Err(GenError::UnknownScenario(other.to_string())),
        },
    }
}

/// An in-memory scenario by name (`demo`, `idle-tunnel`); the bench is too large for
/// memory and is only streamed (see [`generate`] and [`bench::run`]).
pub fn scenario(name: &str, seed: u64) -> Option<Capture> {
    match name {
        "demo" => Some(demo::demo(seed)),
        "idle-tunnel" => Some(tunnel::idle_tunnel(seed)),
        "scan" => Some(chain::scan()),
        "unanswered-miner" => Some(chain::unanswered_miner()),
        "pool-lookup" => Some(chain::pool_lookup()),
        "scraping" => Some(chain::scraping()),
        "ssh-via-proxy" => Some(proxy::ssh_via_proxy(seed)),
        _ => None,
    }
}

/// The demo capture as classic pcap bytes (microsecond timestamps): what
/// `egresswatch demo` replays.
pub fn demo_pcap() -> Vec<u8> {
    demo::demo(demo::DEMO_SEED).pcap(TsPrecision::Micro)
}

#[cfg(test)]
mod tests;
