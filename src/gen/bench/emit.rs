//! Turning a flow's pending step into one frame, and counting it.

use super::dgram::{build_payload, Payload};
use super::{copy_pool, Flow, Gen, Script, Step, ACK, FIN, POOL_LEN, SYN};
use crate::analyzer::Dir;
use crate::flow::key::proto;
use crate::gen::frame::{self, Arp, Frag, IpFields, TcpFields, Vlan};
use crate::gen::pcap::FrameSink;
use crate::gen::rng::Rng;
use crate::gen::truth::Lens;
use crate::time::{Nanos, Timestamp};
use std::io;
use std::net::IpAddr;

/// How a written frame counts in the truth.
enum Counted {
    Flow { dir: u8, ip: usize, payload: usize },
    LaterFragment,
    NonIp,
}

/// The reusable buffers a frame is built in, and the byte sources.
struct Work<'a> {
    buf: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    pool: &'a [u8],
    rng: &'a mut Rng,
}

impl Gen<'_> {
    /// Writes the flow's pending step as one frame.
    pub(super) fn emit<S: FrameSink + ?Sized>(
        &mut self,
        slot: u32,
        at: Nanos,
        sink: &mut S,
    ) -> io::Result<()> {
        let ts = self.cfg.start.add_nanos(at);
        let Some(flow) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return Ok(());
        };
        let mut w = Work {
            buf: &mut self.buf,
            scratch: &mut self.scratch,
            pool: &self.pool,
            rng: &mut self.rng,
        };
        let counted = match flow.pending {
            Step::Tcp {
                dir,
                flags,
                off,
                len,
            } => tcp_frame(flow, &mut w, at, dir, flags, (off, len)),
            Step::Udp { dir, payload } => udp_frame(flow, &mut w, ts, dir, payload),
            Step::FragFirst { dir, len } => first_fragment(flow, &mut w, dir, len),
            Step::FragNext { dir } => {
                send_fragment(flow, usize::from(dir), w.buf);
                Counted::LaterFragment
            }
            Step::Icmp { dir, seq } => icmp_frame(flow, &mut w, ts, dir, seq),
            Step::Arp { reply } => arp_frame(flow, &mut w, reply),
        };
        let index = flow.truth;
        sink.frame(ts, &self.buf)?;
        self.count(ts, counted, index);
        Ok(())
    }

    fn count(&mut self, ts: Timestamp, counted: Counted, index: Option<usize>) {
        let frame = self.buf.len();
        self.report.packets += 1;
        self.report.bytes += frame as u64;
        self.first_ts.get_or_insert(ts);
        self.last_ts = ts;
        let Some(truth) = &mut self.truth else {
            return;
        };
        truth.count_frame(frame);
        match counted {
            Counted::NonIp => truth.non_ip += 1,
            Counted::LaterFragment => truth.later_fragments += 1,
            Counted::Flow { dir, ip, payload } => {
                let dir = if dir == 0 {
                    Dir::ToServer
                } else {
                    Dir::ToClient
                };
                if let Some(f) = index.and_then(|i| truth.flows.get_mut(i)) {
                    f.record(dir, ts, Lens { frame, ip, payload });
                }
            }
        }
    }
}

/// A TCP segment: the payload range `seg` of the current message.
fn tcp_frame(
    flow: &mut Flow,
    w: &mut Work<'_>,
    at: Nanos,
    dir: u8,
    flags: u8,
    seg: (usize, usize),
) -> Counted {
    let path = flow.path(dir);
    let Script::Tcp(t) = &mut flow.script else {
        return Counted::NonIp;
    };
    let d = usize::from(dir);
    let (off, len) = seg;
    t.fill(off, len, w.pool, w.scratch);
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
    let ip_len = frame::tcp(w.buf, &path, ip, &fields, w.scratch);
    let advance = len as u32 + u32::from(flags & (SYN | FIN) != 0);
    t.seq[d] = t.seq[d].wrapping_add(advance);
    Counted::Flow {
        dir,
        ip: ip_len,
        payload: len,
    }
}

fn udp_frame(
    flow: &mut Flow,
    w: &mut Work<'_>,
    ts: Timestamp,
    dir: u8,
    payload: Payload,
) -> Counted {
    let d = usize::from(dir);
    build_payload(payload, ts, w.rng, w.pool, w.scratch);
    let ip = next_ip(&mut flow.ident, d, false);
    let ip_len = frame::udp(
        w.buf,
        &flow.path(dir),
        ip,
        flow.ports[d],
        flow.ports[1 - d],
        w.scratch,
    );
    Counted::Flow {
        dir,
        ip: ip_len,
        payload: w.scratch.len(),
    }
}

/// Builds the whole UDP datagram (`len` bytes of payload) and sends its
/// first fragment, which counts toward the flow.
fn first_fragment(flow: &mut Flow, w: &mut Work<'_>, dir: u8, len: u32) -> Counted {
    let d = usize::from(dir);
    w.scratch.clear();
    let start = w.rng.below(POOL_LEN as u64) as usize;
    copy_pool(w.pool, start, len as usize, w.scratch);
    flow.frag = frame::udp_datagram(&flow.path(dir), flow.ports[d], flow.ports[1 - d], w.scratch);
    flow.frag_off = 0;
    flow.frag_ident = next_ip(&mut flow.ident, d, false).ident;
    let ip_len = send_fragment(flow, d, w.buf);
    Counted::Flow {
        dir,
        ip: ip_len,
        payload: ip_len - 20 - 8,
    }
}

/// An echo request or reply with Linux ping's 56-byte payload.
fn icmp_frame(flow: &mut Flow, w: &mut Work<'_>, ts: Timestamp, dir: u8, seq: u16) -> Counted {
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
    let ip_len = frame::icmp_echo(w.buf, &flow.path(dir), ip, dir == 1, id, seq, &payload);
    Counted::Flow {
        dir,
        ip: ip_len,
        payload: payload.len(),
    }
}

/// Who-has from the flow's client for its server's address, or the reply.
fn arp_frame(flow: &Flow, w: &mut Work<'_>, reply: bool) -> Counted {
    let p = flow.path(0);
    let (IpAddr::V4(a), IpAddr::V4(b)) = (p.src, p.dst) else {
        w.buf.clear();
        return Counted::NonIp;
    };
    let arp = if reply {
        Arp {
            reply: true,
            sender_mac: p.dst_mac,
            sender_ip: b,
            target_mac: p.src_mac,
            target_ip: a,
        }
    } else {
        Arp {
            reply: false,
            sender_mac: p.src_mac,
            sender_ip: a,
            target_mac: p.dst_mac,
            target_ip: b,
        }
    };
    frame::arp(w.buf, Vlan::Untagged, &arp);
    Counted::NonIp
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
    let ip_len = frame::ipv4_fragment(buf, &flow.path(d as u8), ip, proto::UDP, data);
    flow.frag_off = end;
    if end >= flow.frag.len() {
        flow.frag = Vec::new();
    }
    ip_len
}
