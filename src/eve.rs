//! Suricata EVE JSON lines. Field names follow Suricata's EVE format so
//! Filebeat's Suricata module, EveBox and Vector read the output unchanged;
//! everything of our own lives under one `egresswatch` object.

use crate::analyzer::tunnel::{self, Hop, Via};
use crate::event::{AppRecord, Event, EventSink, FlowMeta, FlowRecord};
use crate::flow::key::proto;
use crate::json::Obj;
use crate::time::Timestamp;
use std::io;

pub mod spool;
pub use spool::{Spool, Target};

/// Records are gathered in a buffer and written out in blocks of this size.
const BLOCK: usize = 256 * 1024;

/// Writes events as one JSON object per line, for `replay`: the first
/// write error stops the output, which then ends with the last whole
/// record written, and every record after it is counted as lost.
pub struct EveWriter<W: Target> {
    spool: Spool<W>,
    error: Option<io::Error>,
    records: u64,
    lost: u64,
}

/// The EVE output failed: how many records it lacks.
#[derive(Debug, thiserror::Error)]
#[error("{lost} of {records} records were not written")]
pub struct WriteError {
    pub lost: u64,
    pub records: u64,
    #[source]
    pub source: io::Error,
}

impl<W: Target> EveWriter<W> {
    pub fn new(out: W) -> Self {
        EveWriter {
            spool: Spool::new(out, BLOCK + 4096),
            error: None,
            records: 0,
            lost: 0,
        }
    }

    /// Writes the fleet fields of `stamp` on every record.
    pub fn with_stamp(mut self, stamp: Stamp) -> Self {
        self.spool.set_stamp(stamp);
        self
    }

    /// Writes one record; after the first error, records are counted as
    /// lost.
    pub fn write(&mut self, event: &Event) {
        self.records += 1;
        if self.error.is_some() {
            self.lost += 1;
            return;
        }
        self.spool.push(event);
        if self.spool.pending_bytes() >= BLOCK {
            self.drain();
        }
    }

    fn drain(&mut self) {
        if let Err(e) = self.spool.write_pending() {
            self.lost += self.spool.discard();
            self.error = Some(e);
        }
    }

    /// Records handed in so far.
    pub fn written(&self) -> u64 {
        self.records
    }

    /// Writes what is left; the first error says how many records the
    /// output lacks.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if self.error.is_none() {
            self.drain();
        }
        match self.error {
            Some(source) => Err(WriteError {
                lost: self.lost,
                records: self.records,
                source,
            }),
            None => Ok(self.spool.into_inner()),
        }
    }
}

impl<W: Target> EventSink for EveWriter<W> {
    fn event(&mut self, event: Event) {
        self.write(&event);
    }
}

pub use crate::flow::key::proto_name;

/// The fields of a sensor fleet that every record carries: Suricata's
/// `host` (the sensor name) and where its packets came from, `in_iface`
/// (live) or `pcap_filename` (replay). The binary fills it; the core never
/// reads the host name.
#[derive(Clone, Debug, Default)]
pub struct Stamp {
    pub host: Option<String>,
    pub inputs: Inputs,
}

/// Where a record's packets came from.
#[derive(Clone, Debug, Default)]
pub enum Inputs {
    #[default]
    Unnamed,
    /// Live interfaces by position ([`crate::flow::Flow::input`]).
    Interfaces(Vec<String>),
    /// The one capture file replayed.
    File(String),
    /// Capture files replayed one after the other, by position
    /// ([`crate::source::Frame::input`]); an empty name (standard input)
    /// is not written.
    Files(Vec<String>),
}

impl Stamp {
    fn write(&self, m: &mut Obj<'_>, input: Option<u16>) {
        match (&self.inputs, input) {
            (Inputs::Interfaces(names), Some(i)) => {
                if let Some(name) = names.get(usize::from(i)) {
                    m.str("in_iface", name);
                }
            }
            (Inputs::File(name), _) => m.str("pcap_filename", name),
            (Inputs::Files(names), Some(i)) => {
                if let Some(name) = names.get(usize::from(i)).filter(|n| !n.is_empty()) {
                    m.str("pcap_filename", name);
                }
            }
            _ => {}
        }
        if let Some(host) = &self.host {
            m.str("host", host);
        }
    }
}

/// Appends one event as an EVE line (a JSON object and a newline).
pub fn append(buf: &mut Vec<u8>, event: &Event) {
    append_stamped(buf, event, &Stamp::default());
}

/// [`append`] with the fleet fields of `stamp`.
pub fn append_stamped(buf: &mut Vec<u8>, event: &Event, stamp: &Stamp) {
    let mut m = Obj::open(buf);
    let input = match event {
        Event::Flow(r) => {
            flow_record(&mut m, r);
            Some(r.meta.input)
        }
        Event::App(r) => {
            app_record(&mut m, r);
            Some(r.meta.input)
        }
        Event::Alert(a) => {
            a.write_eve(&mut m);
            a.flow.as_ref().map(|f| f.input)
        }
        Event::Incident(i) => {
            i.write_eve(&mut m);
            None
        }
    };
    stamp.write(&mut m, input);
    m.close();
    buf.push(b'\n');
}

/// Writes the fields every record of a flow shares.
fn header(m: &mut Obj<'_>, ts: Timestamp, event_type: &str, meta: &FlowMeta) {
    m.ts("timestamp", ts);
    m.u64("flow_id", meta.flow_id);
    m.str("event_type", event_type);
    m.ip("src_ip", meta.src.addr);
    let ports = crate::flow::key::has_ports(meta.proto) && !is_icmp(meta.proto);
    if ports {
        m.u64("src_port", meta.src.port.into());
    }
    m.ip("dest_ip", meta.dest.addr);
    if ports {
        m.u64("dest_port", meta.dest.port.into());
    }
    m.str("proto", &proto_name(meta.proto));
    if is_icmp(meta.proto) {
        m.u64("icmp_type", meta.src.port.into());
        m.u64("icmp_code", meta.dest.port.into());
    }
    m.str("community_id", &meta.community_id);
    if let Some(app) = meta.app_proto {
        m.str("app_proto", app);
    }
}

fn is_icmp(p: u8) -> bool {
    p == proto::ICMP || p == proto::ICMPV6
}

/// EVE `event_type` (and object key) of interim records: not `flow`, so
/// a consumer that sums or counts `flow` records (Elastic maps
/// `flow.pkts_*` of any record into `source.packets`) counts each packet
/// and each flow once, from the final record. Their counters are
/// cumulative since the flow's start, as Zeek's long-connection log.
pub const INTERIM: &str = "flow_interim";

fn flow_record(m: &mut Obj<'_>, r: &FlowRecord) {
    let kind = if r.interim { INTERIM } else { "flow" };
    header(m, r.start, kind, &r.meta);
    m.obj(kind, |m| flow_body(m, r));
    if let Some(tcp) = &r.tcp {
        m.obj("tcp", |m| tcp_body(m, tcp));
    }
    m.obj("egresswatch", |m| flow_extra(m, r));
}

fn flow_body(m: &mut Obj<'_>, r: &FlowRecord) {
    let [ts, tc] = &r.dirs;
    m.u64("pkts_toserver", ts.pkts);
    m.u64("pkts_toclient", tc.pkts);
    m.u64("bytes_toserver", ts.bytes);
    m.u64("bytes_toclient", tc.bytes);
    m.ts("start", r.start);
    m.ts("end", r.end);
    m.u64("age", r.end.since(r.start) / crate::time::NANOS_PER_SEC);
    m.str("state", r.state);
    if !r.interim {
        m.str("reason", r.reason.eve());
        m.bool("alerted", r.alerted);
    }
}

fn tcp_body(m: &mut Obj<'_>, t: &crate::event::TcpSummary) {
    use crate::decode::TcpFlags as F;
    let all = t.flags[0] | t.flags[1];
    m.hex_byte("tcp_flags", all);
    m.hex_byte("tcp_flags_ts", t.flags[0]);
    m.hex_byte("tcp_flags_tc", t.flags[1]);
    for (name, bit) in [
        ("syn", F::SYN),
        ("fin", F::FIN),
        ("rst", F::RST),
        ("psh", F::PSH),
        ("ack", F::ACK),
        ("urg", F::URG),
        ("ecn", F::ECE),
        ("cwr", F::CWR),
    ] {
        if all & bit != 0 {
            m.bool(name, true);
        }
    }
    m.str("state", t.state);
}

fn flow_extra(m: &mut Obj<'_>, r: &FlowRecord) {
    m.str("end_reason", r.reason.name());
    if r.interim {
        m.bool("interim", true);
    }
    if r.resumed > 0 {
        m.u64("resumed", u64::from(r.resumed));
    }
    m.str("originator", r.originator);
    for (name, d) in ["toserver", "toclient"].into_iter().zip(&r.dirs) {
        m.obj(name, |m| dir_stats(m, d));
    }
    if let Some(tcp) = &r.tcp {
        m.str("conn_state", tcp.conn_state);
        m.str("history", tcp.history.as_str());
        m.pair("retransmitted", tcp.retransmitted);
        m.pair("out_of_order", tcp.out_of_order);
    }
    if !r.names.is_empty() {
        m.strs("names", r.names.iter().map(|n| &**n));
    }
    if !r.tunnel.is_empty() {
        m.obj("tunnel", |m| tunnel_body(m, &r.tunnel));
    }
}

/// `egresswatch.tunnel`: `via` (the carriers, outermost first, joined
/// by `+`), the requested target the flow was judged toward
/// (`target_host`, `target_port`), and every layer in `layers`.
fn tunnel_body(m: &mut Obj<'_>, layers: &[(Via, Option<Hop>)]) {
    let refs: Vec<(Via, Option<&Hop>)> = layers.iter().map(|(v, h)| (*v, h.as_ref())).collect();
    m.str("via", &tunnel::chain(&refs));
    if let Some(t) = tunnel::target(&refs) {
        m.str("target_host", &t.host);
        m.u64("target_port", t.port.into());
    }
    m.arr("layers", |a| {
        for (via, hop) in layers {
            a.obj(|o| match hop {
                Some(h) => h.write(o),
                None => o.str("via", via.name()),
            });
        }
    });
}

fn dir_stats(m: &mut Obj<'_>, d: &crate::flow::DirStats) {
    m.u64("pkts", d.pkts);
    m.u64("bytes", d.bytes);
    m.u64("ip_bytes", d.ip_bytes);
    m.u64("payload_bytes", d.payload_bytes);
    if d.pkts > 0 {
        m.ts("first", d.first);
        m.ts("last", d.last);
    }
}

fn app_record(m: &mut Obj<'_>, r: &AppRecord) {
    let e = &r.event;
    header(m, e.ts, e.event_type, &r.meta);
    m.rendered(e.event_type, &e.body);
    if let Some(extra) = &e.extra {
        m.obj("egresswatch", |m| m.rendered(e.event_type, extra));
    }
}

#[cfg(test)]
mod tests;
