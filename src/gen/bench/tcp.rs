//! TCP conversations: a list of messages cut into segments lazily, with
//! the reference generator's ACK and teardown pattern.

use super::hosts::{hostname, WORDS};
use super::{copy_pool, secs, Step, ACK, FIN, POOL_LEN, PSH, RST, SYN};
use crate::gen::proto::ssh::{self, KexLists, Role};
use crate::gen::proto::{http, tls};
use crate::gen::rng::Rng;
use crate::time::Nanos;

// ------------------------------------------------------------------ messages

/// What a TCP message carries; structured parts are built when the message
/// starts, bulk parts are copied from the random pool segment by segment.
#[derive(Copy, Clone, Debug)]
pub(super) enum Body {
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
    /// Identification line: 0 is OpenSSH 9.2 (Debian), 1.. the others.
    SshBanner(u8),
    SshKexInit(Role),
    SshEcdhInit,
    SshKexBurst,
    SshNewKeys,
    /// Encrypted bytes on the wire (already a wire length).
    SshWire(u32),
}

#[derive(Copy, Clone, Debug)]
pub(super) struct Msg {
    pub(super) dir: u8,
    /// Idle time before the message, in microseconds (keeps `Msg` at 16
    /// bytes: a keep-alive flow holds dozens of them for minutes).
    pub(super) think_us: u32,
    pub(super) body: Body,
}

/// The part of a message that is not built up front.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Tail {
    None,
    Random(usize),
    Records(usize),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Close {
    Fin,
    Rst,
    Open,
}

pub(super) fn pick_close(rng: &mut Rng) -> Close {
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
pub(super) enum Phase {
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
pub(super) struct TcpScript {
    pub(super) msgs: Vec<Msg>,
    pub(super) mi: usize,
    pub(super) off: usize,
    pub(super) total: usize,
    pub(super) head: Vec<u8>,
    pub(super) tail: Tail,
    pub(super) pool_off: usize,
    pub(super) phase: Phase,
    pub(super) unacked: u8,
    pub(super) first: bool,
    pub(super) close: Close,
    pub(super) seq: [u32; 2],
    pub(super) win: [u16; 2],
    pub(super) mss: u16,
    pub(super) seg: usize,
    pub(super) ts: Option<[u32; 2]>,
    /// The last TSval each side sent (the other side's TSecr).
    pub(super) last_tsval: [u32; 2],
    pub(super) rtt: f64,
    pub(super) rate_gap: f64,
}

impl TcpScript {
    pub(super) fn new(
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

    pub(super) fn half_rtt(&self) -> Nanos {
        secs(self.rtt * 0.5)
    }

    /// Builds the structured head of message `mi` and sizes its tail.
    pub(super) fn prepare(&mut self, rng: &mut Rng) {
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
            Body::SshBanner(which) => {
                let ident = match which {
                    0 => ssh::OPENSSH_9_2_DEBIAN,
                    n => ssh::OTHER_CLIENTS[usize::from(n - 1) % ssh::OTHER_CLIENTS.len()],
                };
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
        if self.head.is_empty() && self.head.capacity() > 0 {
            // Long-lived flows keep no ClientHello or KEXINIT around.
            self.head = Vec::new();
        }
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
    pub(super) fn fill(&self, off: usize, len: usize, pool: &[u8], out: &mut Vec<u8>) {
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
    pub(super) fn next(&mut self, rng: &mut Rng) -> Option<(Nanos, Step)> {
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
                        self.msgs = Vec::new();
                        self.head = Vec::new();
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
                        Nanos::from(m.think_us) * 1000
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

    pub(super) fn ctl(&self, dir: u8, flags: u8) -> Step {
        Step::Tcp {
            dir,
            flags,
            off: 0,
            len: 0,
        }
    }
}

/// Bytes `from..to` of a run of TLS application-data records totalling
/// `total` bytes (headers computed, bodies from the pool).
pub(super) fn fill_records(
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
