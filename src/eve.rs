//! Suricata EVE JSON lines. Field names follow Suricata's EVE format so
//! Filebeat's Suricata module, EveBox and Vector read the output unchanged;
//! everything of our own lives under one `egresswatch` object.

use crate::event::{AppRecord, Event, EventSink, FlowMeta, FlowRecord};
use crate::flow::key::proto;
use crate::time::Timestamp;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::io::{self, Write};

/// Writes events as one JSON object per line.
pub struct EveWriter<W: Write> {
    out: W,
    error: Option<io::Error>,
    written: u64,
}

impl<W: Write> EveWriter<W> {
    pub fn new(out: W) -> Self {
        EveWriter {
            out,
            error: None,
            written: 0,
        }
    }

    /// Writes one record; the first error is kept for [`Self::finish`] and
    /// later records are dropped.
    pub fn write(&mut self, event: &Event) {
        if self.error.is_none() {
            if let Err(e) = self.try_write(event) {
                self.error = Some(e);
            }
        }
    }

    fn try_write(&mut self, event: &Event) -> io::Result<()> {
        match event {
            Event::Flow(r) => serde_json::to_writer(&mut self.out, &FlowJson(r)),
            Event::App(r) => serde_json::to_writer(&mut self.out, &AppJson(r)),
            Event::Alert(a) => serde_json::to_writer(&mut self.out, &a.to_eve()),
        }
        .map_err(io::Error::from)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the first write error, if any happened.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> EventSink for EveWriter<W> {
    fn event(&mut self, event: Event) {
        self.write(&event);
    }
}

pub use crate::flow::key::proto_name;

/// Writes the fields every record of a flow shares.
fn header<M: SerializeMap>(
    m: &mut M,
    ts: Timestamp,
    event_type: &str,
    meta: &FlowMeta,
) -> Result<(), M::Error> {
    m.serialize_entry("timestamp", &ts)?;
    m.serialize_entry("flow_id", &meta.flow_id)?;
    m.serialize_entry("event_type", event_type)?;
    m.serialize_entry("src_ip", &meta.src.addr)?;
    let ports = crate::flow::key::has_ports(meta.proto) && !is_icmp(meta.proto);
    if ports {
        m.serialize_entry("src_port", &meta.src.port)?;
    }
    m.serialize_entry("dest_ip", &meta.dest.addr)?;
    if ports {
        m.serialize_entry("dest_port", &meta.dest.port)?;
    }
    m.serialize_entry("proto", &proto_name(meta.proto))?;
    if is_icmp(meta.proto) {
        m.serialize_entry("icmp_type", &meta.src.port)?;
        m.serialize_entry("icmp_code", &meta.dest.port)?;
    }
    m.serialize_entry("community_id", &meta.community_id)?;
    if let Some(app) = meta.app_proto {
        m.serialize_entry("app_proto", app)?;
    }
    Ok(())
}

fn is_icmp(p: u8) -> bool {
    p == proto::ICMP || p == proto::ICMPV6
}

struct FlowJson<'a>(&'a FlowRecord);

impl Serialize for FlowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        header(&mut m, r.start, "flow", &r.meta)?;
        m.serialize_entry("flow", &FlowBody(r))?;
        if let Some(tcp) = &r.tcp {
            m.serialize_entry("tcp", &TcpBody(tcp))?;
        }
        m.serialize_entry("egresswatch", &FlowExtra(r))?;
        m.end()
    }
}

struct FlowBody<'a>(&'a FlowRecord);

impl Serialize for FlowBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let [ts, tc] = &r.dirs;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("pkts_toserver", &ts.pkts)?;
        m.serialize_entry("pkts_toclient", &tc.pkts)?;
        m.serialize_entry("bytes_toserver", &ts.bytes)?;
        m.serialize_entry("bytes_toclient", &tc.bytes)?;
        m.serialize_entry("start", &r.start)?;
        m.serialize_entry("end", &r.end)?;
        m.serialize_entry("age", &(r.end.since(r.start) / crate::time::NANOS_PER_SEC))?;
        m.serialize_entry("state", r.state)?;
        m.serialize_entry("reason", r.reason.eve())?;
        m.serialize_entry("alerted", &r.alerted)?;
        m.end()
    }
}

struct TcpBody<'a>(&'a crate::event::TcpSummary);

impl Serialize for TcpBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::decode::TcpFlags as F;
        let t = self.0;
        let all = t.flags[0] | t.flags[1];
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("tcp_flags", &format_args!("{all:02x}"))?;
        m.serialize_entry("tcp_flags_ts", &format_args!("{:02x}", t.flags[0]))?;
        m.serialize_entry("tcp_flags_tc", &format_args!("{:02x}", t.flags[1]))?;
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
                m.serialize_entry(name, &true)?;
            }
        }
        m.serialize_entry("state", t.state)?;
        m.end()
    }
}

struct FlowExtra<'a>(&'a FlowRecord);

impl Serialize for FlowExtra<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("end_reason", r.reason.name())?;
        if r.interim {
            m.serialize_entry("interim", &true)?;
        }
        m.serialize_entry("originator", r.originator)?;
        for (i, name) in ["toserver", "toclient"].iter().enumerate() {
            let d = &r.dirs[i];
            m.serialize_entry(name, &DirJson(d))?;
        }
        if let Some(tcp) = &r.tcp {
            m.serialize_entry("conn_state", tcp.conn_state)?;
            m.serialize_entry("history", &tcp.history)?;
            m.serialize_entry("retransmitted", &tcp.retransmitted)?;
            m.serialize_entry("out_of_order", &tcp.out_of_order)?;
        }
        if !r.names.is_empty() {
            let names: Vec<&str> = r.names.iter().map(|n| &**n).collect();
            m.serialize_entry("names", &names)?;
        }
        m.end()
    }
}

struct DirJson<'a>(&'a crate::flow::DirStats);

impl Serialize for DirJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("pkts", &d.pkts)?;
        m.serialize_entry("bytes", &d.bytes)?;
        m.serialize_entry("ip_bytes", &d.ip_bytes)?;
        m.serialize_entry("payload_bytes", &d.payload_bytes)?;
        if d.pkts > 0 {
            m.serialize_entry("first", &d.first)?;
            m.serialize_entry("last", &d.last)?;
        }
        m.end()
    }
}

struct AppJson<'a>(&'a AppRecord);

impl Serialize for AppJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let e = &r.event;
        let mut m = s.serialize_map(None)?;
        header(&mut m, e.ts, e.event_type, &r.meta)?;
        m.serialize_entry(e.event_type, &e.body)?;
        if let Some(extra) = &e.extra {
            m.serialize_entry("egresswatch", &Nested(e.event_type, extra))?;
        }
        m.end()
    }
}

/// `{ key: value }`.
struct Nested<'a, T>(&'a str, &'a T);

impl<T: Serialize> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, self.1)?;
        m.end()
    }
}

#[cfg(test)]
mod tests;
