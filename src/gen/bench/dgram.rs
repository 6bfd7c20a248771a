//! Datagram flows (DNS, QUIC-like, NTP, syslog, RTP, generic UDP, ICMP
//! echo, fragmented UDP, ARP), generated step by step, and their payloads.

use super::hosts::hostname;
use super::{copy_pool, secs, Step, POOL_LEN};
use crate::gen::frame;
use crate::gen::proto::{dns, ntp};
use crate::gen::rng::Rng;
use crate::time::{Nanos, Timestamp};
use std::net::{IpAddr, Ipv4Addr};

/// A datagram flow's script, generated as it goes.
#[derive(Clone, Debug)]
pub(super) enum Dgram {
    Dns(Dns),
    Quic(Quic),
    /// A request and its answer (NTP), `rtt` apart.
    Ntp {
        sent: u8,
        rtt: f64,
    },
    /// `n` datagrams from the client (syslog), Poisson-spaced.
    Syslog {
        i: u32,
        n: u32,
    },
    /// `n` RTP packets alternating directions every 10 ms.
    Voice {
        i: u32,
        n: u32,
    },
    /// `n` request/response datagrams of random size.
    Generic {
        i: u32,
        n: u32,
    },
    Icmp(Icmp),
    Frag(Frag),
    /// An ARP request and, when `answered`, its reply.
    Arp {
        sent: u8,
        answered: bool,
    },
}

fn udp(dir: u8, payload: Payload) -> Step {
    Step::Udp { dir, payload }
}

impl Dgram {
    pub(super) fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
        match self {
            Dgram::Dns(d) => d.next(rng),
            Dgram::Quic(q) => q.next(rng),
            Dgram::Ntp { sent, rtt } => {
                *sent += 1;
                match *sent {
                    1 => Some((0, udp(0, Payload::NtpClient))),
                    2 => Some((secs(*rtt), udp(1, Payload::NtpServer))),
                    _ => None,
                }
            }
            Dgram::Syslog { i, n } => {
                let gap = if *i == 0 { 0 } else { secs(rng.exp(1.0)) };
                count_up(i, *n).map(|k| (gap, udp(0, Payload::Syslog { n: k })))
            }
            Dgram::Voice { i, n } => {
                let gap = if *i == 0 { 0 } else { 10_000_000 };
                count_up(i, *n).map(|k| (gap, udp((k & 1) as u8, Payload::Rtp)))
            }
            Dgram::Generic { i, n } => {
                let gap = if *i == 0 { 0 } else { secs(rng.exp(0.2)) };
                let payload = Payload::Random(rng.range(20, 1400) as u32);
                count_up(i, *n).map(|k| (gap, udp((k & 1) as u8, payload)))
            }
            Dgram::Icmp(i) => i.next(),
            Dgram::Frag(f) => f.next(rng),
            Dgram::Arp { sent, answered } => {
                *sent += 1;
                match (*sent, *answered) {
                    (1, _) => Some((0, Step::Arp { reply: false })),
                    (2, true) => Some((300_000, Step::Arp { reply: true })),
                    _ => None,
                }
            }
        }
    }
}

/// The index of the next of `n` items, counting `i` up; None when done.
fn count_up(i: &mut u32, n: u32) -> Option<u32> {
    if *i >= n {
        return None;
    }
    let k = *i;
    *i += 1;
    Some(k)
}

/// One or two questions (A and AAAA) for one name; 3 % of queries are
/// retransmitted after a second.
#[derive(Clone, Debug)]
pub(super) struct Dns {
    pub(super) name: u32,
    pub(super) qtypes: [u16; 2],
    pub(super) count: u8,
    pub(super) q: u8,
    /// 0: ask, 1: ask again, 2: answer.
    pub(super) phase: u8,
    pub(super) txid: u16,
    pub(super) rtt: f64,
}

impl Dns {
    fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
        let qtype = *self.qtypes.get(usize::from(self.q))?;
        if self.q >= self.count {
            return None;
        }
        let query = |d: &Dns| {
            udp(
                0,
                Payload::DnsQuery {
                    name: d.name,
                    txid: d.txid,
                    qtype,
                },
            )
        };
        match self.phase {
            0 => {
                self.txid = rng.next_u16();
                let gap = if self.q == 0 { 0 } else { 50_000 };
                self.phase = if rng.chance(0.03) { 1 } else { 2 };
                Some((gap, query(self)))
            }
            1 => {
                self.phase = 2;
                Some((1_000_000_000, query(self)))
            }
            _ => {
                self.phase = 0;
                self.q += 1;
                let answers = if qtype == dns::TYPE_HTTPS {
                    0
                } else {
                    *rng.pick(&[1u8, 1, 2, 4, 8])
                };
                let payload = Payload::DnsResponse {
                    name: self.name,
                    txid: self.txid,
                    qtype,
                    answers,
                };
                Some((secs(self.rtt), udp(1, payload)))
            }
        }
    }
}

/// A QUIC-like exchange: client Initial, server Initial and Handshake,
/// then short-header packets, mostly from the server.
#[derive(Clone, Debug)]
pub(super) struct Quic {
    pub(super) stage: u32,
    pub(super) packets: u32,
    pub(super) rtt: f64,
    pub(super) gap: f64,
}

impl Quic {
    fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
        let s = self.stage;
        self.stage += 1;
        match s {
            0 => Some((0, udp(0, Payload::QuicInitial { len: 1236 }))),
            1 => Some((secs(self.rtt), udp(1, Payload::QuicInitial { len: 1180 }))),
            2 => {
                let len = rng.range(800, 1200) as u16;
                Some((100_000, udp(1, Payload::QuicHandshake { len })))
            }
            3 => {
                let len = rng.range(31, 61) as u16;
                let first = 0x40;
                Some((
                    secs(self.rtt * 0.5),
                    udp(0, Payload::QuicShort { first, len }),
                ))
            }
            _ if s - 4 < self.packets => {
                let g = secs(rng.exp(self.gap));
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
}

/// `n` pings a second apart, each answered after `rtt`.
#[derive(Clone, Debug)]
pub(super) struct Icmp {
    pub(super) s: u16,
    pub(super) n: u16,
    pub(super) reply: bool,
    pub(super) rtt: f64,
}

impl Icmp {
    fn next(&mut self) -> Option<(Nanos, Step)> {
        if self.reply {
            self.reply = false;
            return Some((
                secs(self.rtt),
                Step::Icmp {
                    dir: 1,
                    seq: self.s,
                },
            ));
        }
        if self.s >= self.n {
            return None;
        }
        let gap = if self.s == 0 { 0 } else { secs(1.0 - self.rtt) };
        self.s += 1;
        self.reply = true;
        Some((
            gap,
            Step::Icmp {
                dir: 0,
                seq: self.s,
            },
        ))
    }
}

/// A small request, then a `big`-byte reply datagram sent as IPv4
/// fragments of at most 1480 bytes.
#[derive(Clone, Debug)]
pub(super) struct Frag {
    pub(super) stage: u8,
    pub(super) left: u32,
    pub(super) big: u32,
}

impl Frag {
    fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
        self.stage = self.stage.saturating_add(1);
        match self.stage {
            1 => Some((0, udp(0, Payload::Random(rng.range(40, 200) as u32)))),
            2 => {
                let dgram = 8 + self.big as usize;
                self.left = (dgram.div_ceil(1480) - 1) as u32;
                Some((
                    2_000_000,
                    Step::FragFirst {
                        dir: 1,
                        len: self.big,
                    },
                ))
            }
            _ if self.left > 0 => {
                self.left -= 1;
                Some((0, Step::FragNext { dir: 1 }))
            }
            _ => None,
        }
    }
}

/// A datagram payload, built when sent.
#[derive(Copy, Clone, Debug)]
pub(super) enum Payload {
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

/// Builds a datagram payload into `out`.
pub(super) fn build_payload(
    p: Payload,
    ts: Timestamp,
    rng: &mut Rng,
    pool: &[u8],
    out: &mut Vec<u8>,
) {
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
