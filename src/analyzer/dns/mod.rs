//! DNS over UDP and TCP, on any port: EVE `dns` records in Suricata's
//! version 3 layout (one per message, Suricata 8's default) or version 2
//! (one per question of a query, one per response), and every answered
//! name fed to the shared [`NameCache`] so later flows of the asking client
//! carry the names.
//!
//! Only the chain that starts at a question is learned: the question name,
//! the CNAMEs it leads through, and the A/AAAA records at the end of it.
//! Records in the answer section that no question leads to are logged but
//! not learned (the usual bailiwick caution). Names are only as trustworthy
//! as the resolver: [`DnsProtocol::with_trusted_resolvers`] restricts
//! learning to answers from the cluster's own resolvers, so a workload that
//! queries a resolver of its choosing cannot dress an address up as an
//! allowlisted name.

pub mod wire;

use super::facts::{Lookup, MAX_LOOKUPS};
use super::names::NameCache;
use super::{
    Analyzer, AppEvent, AppFacts, Chunk, Dir, Emit, FlowContext, PacketView, Probe, Protocol,
};
use crate::flow::key::proto;
use crate::json::{Obj, Rendered};
use crate::time::Timestamp;
use ipnet::IpNet;

use std::net::IpAddr;
use std::sync::Arc;
use wire::{rcode_name, rtype, rtype_name, DnsError, Message, RData, Record};

/// Most EVE records one flow writes; later messages are still learned.
pub const MAX_EVENTS_PER_FLOW: u32 = 512;
/// Most messages read from one TCP direction before it is let go.
pub const MAX_TCP_MESSAGES: u32 = 4_096;
/// Longest CNAME chain followed from a question.
pub const MAX_CNAME_HOPS: usize = 8;
/// Most questions of one message whose answers are learned.
const MAX_LEARNED_QUESTIONS: usize = 4;

/// Suricata's EVE DNS layouts (`dns.version`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum DnsVersion {
    /// `type: query` per question, `type: answer` per response (with
    /// `answers` and `grouped`), as Elastic's and Filebeat's pipelines read.
    V2,
    /// `type: request|response` per message with `queries` and `answers`:
    /// Suricata 8's default.
    #[default]
    V3,
}

impl DnsVersion {
    /// `2` or `3`.
    pub fn parse(text: &str) -> Option<DnsVersion> {
        match text.trim() {
            "2" => Some(DnsVersion::V2),
            "3" => Some(DnsVersion::V3),
            _ => None,
        }
    }
}

/// Claims DNS flows and starts their analyzers.
pub struct DnsProtocol {
    cache: Arc<NameCache>,
    trusted: Option<Arc<[IpNet]>>,
    version: DnsVersion,
}

impl DnsProtocol {
    pub fn new(cache: Arc<NameCache>) -> Self {
        DnsProtocol {
            cache,
            trusted: None,
            version: DnsVersion::default(),
        }
    }

    /// Writes records in this EVE layout.
    pub fn with_version(mut self, version: DnsVersion) -> Self {
        self.version = version;
        self
    }

    /// Learn names only from answers sent by addresses in `nets`.
    pub fn with_trusted_resolvers(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted = Some(nets.into());
        self
    }
}

impl Protocol for DnsProtocol {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn probe(&self, ctx: &FlowContext, _dir: Dir, data: &[u8]) -> Probe {
        match ctx.proto {
            proto::UDP => probe_datagram(data),
            proto::TCP => probe_tcp(data),
            _ => Probe::NoMatch,
        }
    }

    fn start(&self, ctx: &FlowContext) -> Box<dyn Analyzer> {
        let mut a = DnsAnalyzer::new(ctx, Arc::clone(&self.cache), self.trusted.clone());
        a.version = self.version;
        Box::new(a)
    }
}

/// A UDP payload is DNS when it decodes completely, to its last byte, into
/// a message with a plausible header and question classes.
pub fn probe_datagram(data: &[u8]) -> Probe {
    match Message::parse(data) {
        Ok(m) if m.error.is_none() && m.consumed == data.len() && plausible(&m) => Probe::Match,
        _ => Probe::NoMatch,
    }
}

/// TCP: a 2-byte length, then a message as for UDP. A message not yet
/// complete asks for more while what has arrived still looks right.
pub fn probe_tcp(data: &[u8]) -> Probe {
    let Some(len) = data
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Probe::NeedMore;
    };
    let body = &data[2..];
    if len < 12 {
        return Probe::NoMatch;
    }
    if body.len() >= len {
        return probe_datagram(&body[..len]);
    }
    match Message::parse(body) {
        Err(_) => Probe::NeedMore,
        Ok(m) => {
            let cut = matches!(
                m.error,
                None | Some(DnsError::Truncated | DnsError::BadCount)
            );
            if cut && plausible_header(&m) {
                Probe::NeedMore
            } else {
                Probe::NoMatch
            }
        }
    }
}

fn plausible_header(m: &Message) -> bool {
    let h = &m.header;
    let max = wire::MAX_RECORDS_PER_SECTION as u16;
    matches!(h.opcode(), 0 | 1 | 2 | 4 | 5 | 6)
        && h.qdcount <= 4
        && h.ancount <= max
        && h.nscount <= max
        && h.arcount <= max
        && (h.qdcount > 0 || (h.qr() && h.ancount > 0))
}

fn plausible(m: &Message) -> bool {
    // IN, CH, HS, NONE, ANY; the top bit is mDNS's unicast-response flag.
    let class_ok = |c: u16| matches!(c & 0x7fff, 1 | 3 | 4 | 254 | 255);
    plausible_header(m) && m.questions.iter().all(|q| class_ok(q.class))
}

/// What a DNS flow's analysis counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsCounters {
    pub messages: u64,
    /// Messages (or their remainders) skipped, by [`DnsError::index`].
    pub errors: [u64; DnsError::ALL.len()],
    /// TCP directions abandoned after missing bytes.
    pub gaps: u64,
    /// Answers not learned because the resolver is not trusted.
    pub untrusted_answers: u64,
    /// Messages beyond [`MAX_EVENTS_PER_FLOW`] that wrote no record.
    pub events_suppressed: u64,
}

/// One message as the per-host DNS tunnel detector sees it
/// ([`crate::hosts::dns_tunnel`]): carried on the message's [`AppEvent`]
/// (so on at most [`MAX_EVENTS_PER_FLOW`] messages of a flow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The asking side (the flow's originator).
    pub client: IpAddr,
    /// A response to the client (else the client's query).
    pub response: bool,
    /// The first question's name (odd bytes escaped as `\xNN`).
    pub qname: String,
    pub qtype: u16,
    /// The message's length in bytes.
    pub size: u32,
}

/// Splits one TCP direction into length-prefixed messages.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    messages: u32,
    done: bool,
}

impl Framer {
    /// Appends `data` and returns the complete messages' byte ranges in
    /// `self.buf`, to be dropped with [`Framer::consume`].
    fn push(&mut self, data: &[u8]) -> Vec<(usize, usize)> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some(b) = self.buf.get(at..at + 2) {
            let end = at + 2 + usize::from(u16::from_be_bytes([b[0], b[1]]));
            if end > self.buf.len() {
                break;
            }
            frames.push((at + 2, end));
            at = end;
        }
        frames
    }

    fn consume(&mut self, upto: usize) {
        self.buf.drain(..upto.min(self.buf.len()));
    }
}

/// Per-flow DNS state.
pub struct DnsAnalyzer {
    facts: AppFacts,
    client: IpAddr,
    server: IpAddr,
    tcp: bool,
    cache: Arc<NameCache>,
    trusted: Option<Arc<[IpNet]>>,
    /// DNS over TCP only (boxed: nearly every DNS flow is UDP).
    framers: Option<Box<[Framer; 2]>>,
    events: u32,
    counters: DnsCounters,
    version: DnsVersion,
}

impl DnsAnalyzer {
    pub fn new(ctx: &FlowContext, cache: Arc<NameCache>, trusted: Option<Arc<[IpNet]>>) -> Self {
        DnsAnalyzer {
            facts: AppFacts::new("dns"),
            client: ctx.client.addr,
            server: ctx.server.addr,
            tcp: ctx.proto == proto::TCP,
            cache,
            trusted,
            framers: (ctx.proto == proto::TCP).then(Box::default),
            events: 0,
            counters: DnsCounters::default(),
            version: DnsVersion::default(),
        }
    }

    pub fn counters(&self) -> &DnsCounters {
        &self.counters
    }

    fn count(&mut self, e: DnsError) {
        if let Some(c) = self.counters.errors.get_mut(e.index()) {
            *c += 1;
        }
    }

    fn on_message(&mut self, dir: Dir, bytes: &[u8], at: (u64, Timestamp), out: &mut Emit) {
        let (packet, ts) = at;
        self.counters.messages += 1;
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => return self.count(e),
        };
        if let Some(e) = msg.error {
            self.count(e);
        }
        if msg.header.qr() {
            self.learn(&msg, dir, ts);
        } else if dir == Dir::ToServer {
            self.note_lookups(&msg, packet, ts);
        }
        if self.events >= MAX_EVENTS_PER_FLOW {
            self.counters.events_suppressed += 1;
            return;
        }
        self.events += 1;
        let extra = msg
            .error
            .map(|e| Rendered::build(|o| o.str("parse_error", e.name())));
        let mut shape = self.shape(&msg, dir, bytes.len()).map(Box::new);
        let mut push = |body| {
            out.push(AppEvent {
                ts,
                event_type: "dns",
                body,
                extra: extra.clone(),
                dns: shape.take(),
            })
        };
        match self.version {
            DnsVersion::V3 => push(eve(&msg)),
            // Suricata's transaction index: one per message, from 0.
            DnsVersion::V2 => eve_v2(&msg, self.counters.messages - 1, push),
        }
    }

    /// What the tunnel detector reads of a message: a query the client
    /// sent or a response it got, with its first question.
    fn shape(&self, msg: &Message, dir: Dir, size: usize) -> Option<Shape> {
        let response = msg.header.qr();
        if response != (dir == Dir::ToClient) {
            return None;
        }
        let q = msg.questions.first()?;
        Some(Shape {
            client: self.client,
            response,
            qname: q.name.clone(),
            qtype: q.rtype,
            size: u32::try_from(size).unwrap_or(u32::MAX),
        })
    }

    /// Feeds the answered names of a response to the cache. The asking
    /// client is the receiver of the response, whichever side opened the
    /// flow.
    fn learn(&mut self, msg: &Message, dir: Dir, ts: Timestamp) {
        let (client, resolver) = match dir {
            Dir::ToClient => (self.client, self.server),
            Dir::ToServer => (self.server, self.client),
        };
        if let Some(nets) = &self.trusted {
            if !nets.iter().any(|n| n.contains(&resolver)) {
                self.counters.untrusted_answers += 1;
                return;
            }
        }
        for r in resolutions(msg) {
            self.cache.insert(client, r.addr, r.name, r.ttl, ts);
        }
    }

    /// The names a query from the client asks for, for the policy (a
    /// lookup of a mining pool is evidence on its own).
    fn note_lookups(&mut self, msg: &Message, packet: u64, ts: Timestamp) {
        if msg.questions.is_empty() {
            return;
        }
        // Collected, not pushed: exactly as many as asked (usually one),
        // and the flow keeps them to its end.
        self.facts.lookups = msg
            .questions
            .iter()
            .take(MAX_LOOKUPS)
            .map(|q| Lookup {
                name: q.name.clone(),
                packet,
                ts,
            })
            .collect();
        self.facts.touch();
    }

    fn on_tcp_data(&mut self, dir: Dir, data: &[u8], at: (u64, Timestamp), out: &mut Emit) {
        let i = dir.index();
        let Some(framer) = self.framers.as_deref_mut().and_then(|f| f.get_mut(i)) else {
            return;
        };
        let frames = framer.push(data);
        let buf = std::mem::take(&mut framer.buf);
        let mut used = 0;
        let count = u32::try_from(frames.len()).unwrap_or(u32::MAX);
        for (start, end) in frames {
            if let Some(bytes) = buf.get(start..end) {
                self.on_message(dir, bytes, at, out);
            }
            used = end;
        }
        if let Some(framer) = self.framers.as_deref_mut().and_then(|f| f.get_mut(i)) {
            framer.buf = buf;
            framer.consume(used);
            framer.messages = framer.messages.saturating_add(count);
            if framer.messages >= MAX_TCP_MESSAGES {
                framer.done = true;
                framer.buf = Vec::new();
            }
        }
    }
}

impl Analyzer for DnsAnalyzer {
    fn on_packet(&mut self, pkt: &PacketView<'_>, out: &mut Emit) {
        if !self.tcp && !pkt.payload.is_empty() {
            self.on_message(pkt.dir, pkt.payload, (pkt.index, pkt.ts), out);
        }
    }

    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, pkt: &PacketView<'_>, out: &mut Emit) {
        if !self.wants_stream(dir) {
            return;
        }
        match chunk {
            Chunk::Data(data) => self.on_tcp_data(dir, data, (pkt.index, pkt.ts), out),
            Chunk::Gap(_) => {
                // Message boundaries are lost for good: let the direction go.
                self.counters.gaps += 1;
                if let Some(f) = self
                    .framers
                    .as_deref_mut()
                    .and_then(|f| f.get_mut(dir.index()))
                {
                    f.done = true;
                    f.buf = Vec::new();
                }
            }
        }
    }

    fn wants_stream(&self, dir: Dir) -> bool {
        self.tcp
            && self
                .framers
                .as_deref()
                .and_then(|f| f.get(dir.index()))
                .is_some_and(|f| !f.done)
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }
}

/// One learned mapping: `name` resolved to `addr`, valid for `ttl` seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution<'a> {
    pub addr: IpAddr,
    pub name: &'a str,
    pub ttl: u32,
}

/// The name → address mappings a successful response establishes: for each
/// question, its CNAME chain and the addresses at the chain's names. Every
/// name of the chain maps to every final address, with the smallest TTL
/// along the way.
pub fn resolutions(msg: &Message) -> Vec<Resolution<'_>> {
    let mut out = Vec::new();
    if !msg.header.qr() || msg.header.rcode() != 0 {
        return out;
    }
    for q in msg.questions.iter().take(MAX_LEARNED_QUESTIONS) {
        let (chain, chain_ttl) = cname_chain(&msg.answers, &q.name);
        for r in &msg.answers {
            let RData::Addr(addr) = r.data else {
                continue;
            };
            if !matches!(r.rtype, rtype::A | rtype::AAAA)
                || !chain.iter().any(|n| n.eq_ignore_ascii_case(&r.name))
            {
                continue;
            }
            let ttl = chain_ttl.min(r.ttl);
            out.extend(chain.iter().map(|&name| Resolution { addr, name, ttl }));
        }
    }
    out
}

/// The names from `start` through its CNAMEs (without repeats) and the
/// smallest CNAME TTL met.
fn cname_chain<'a>(answers: &'a [Record], start: &'a str) -> (Vec<&'a str>, u32) {
    let mut chain = vec![start];
    let mut ttl = u32::MAX;
    let mut current = start;
    for _ in 0..MAX_CNAME_HOPS {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::Name(target)
                if r.rtype == rtype::CNAME && r.name.eq_ignore_ascii_case(current) =>
            {
                Some((target.as_str(), r.ttl))
            }
            _ => None,
        });
        let Some((target, link_ttl)) = next else {
            break;
        };
        if chain.iter().any(|n| n.eq_ignore_ascii_case(target)) {
            break;
        }
        ttl = ttl.min(link_ttl);
        chain.push(target);
        current = target;
    }
    (chain, ttl)
}

/// The EVE `dns` object, Suricata "version 3" layout: one record per
/// message, `queries` in both directions, `answers`/`authorities` in
/// responses, flags as unprefixed hex, flag booleans only when set.
pub fn eve(msg: &Message) -> Rendered {
    let h = &msg.header;
    Rendered::build(|o| {
        o.u64("version", 3);
        o.str("type", if h.qr() { "response" } else { "request" });
        o.u64("id", h.id.into());
        flags(o, h);
        o.u64("opcode", h.opcode().into());
        if h.qr() {
            o.str("rcode", &rcode_name(h.rcode()));
        }
        // A message without a question (an mDNS response) has no
        // `queries` key, as Suricata writes it (the schema wants one item).
        if !msg.questions.is_empty() {
            o.arr("queries", |a| {
                for q in &msg.questions {
                    a.obj(|o| {
                        o.str("rrname", &q.name);
                        o.str("rrtype", &rtype_name(q.rtype));
                    });
                }
            });
        }
        sections(o, msg);
    })
}

/// `flags` in hex, and each flag that is set as a boolean.
fn flags(o: &mut Obj<'_>, h: &wire::Header) {
    o.hex("flags", h.flags.into());
    for (key, set) in [
        ("qr", h.qr()),
        ("aa", h.aa()),
        ("tc", h.tc()),
        ("rd", h.rd()),
        ("ra", h.ra()),
        ("z", h.z()),
    ] {
        if set {
            o.bool(key, true);
        }
    }
}

/// `answers` (in full and, as Suricata 8 writes by default, by type in
/// `grouped`) and `authorities`, each only when not empty.
fn sections(o: &mut Obj<'_>, msg: &Message) {
    if !msg.answers.is_empty() {
        o.arr("answers", |a| {
            msg.answers.iter().for_each(|r| a.obj(|o| record(o, r)))
        });
        o.obj("grouped", |o| grouped(o, &msg.answers));
    }
    if !msg.authorities.is_empty() {
        o.arr("authorities", |a| {
            msg.authorities.iter().for_each(|r| a.obj(|o| record(o, r)))
        });
    }
}

/// The EVE `dns` objects of one message in Suricata's "version 2" layout:
/// a query gives one `type: query` record per question (`tx_id` is the
/// message's index in the flow); a response gives one `type: answer`
/// record with its first question's `rrname`/`rrtype`, the answers in
/// full (`answers`) and by type (`grouped`), and the authorities.
/// Suricata writes no answer record for a response without a question;
/// this one does, without `rrname`/`rrtype`.
pub fn eve_v2(msg: &Message, tx_id: u64, mut push: impl FnMut(Rendered)) {
    let h = &msg.header;
    if !h.qr() {
        for q in &msg.questions {
            push(Rendered::build(|o| {
                o.u64("version", 2);
                o.str("type", "query");
                o.u64("id", h.id.into());
                o.str("rrname", &q.name);
                o.str("rrtype", &rtype_name(q.rtype));
                o.u64("tx_id", tx_id);
                if h.z() {
                    o.bool("z", true);
                }
                o.u64("opcode", h.opcode().into());
            }));
        }
        return;
    }
    push(Rendered::build(|o| {
        o.u64("version", 2);
        o.str("type", "answer");
        o.u64("id", h.id.into());
        flags(o, h);
        o.u64("opcode", h.opcode().into());
        if let Some(q) = msg.questions.first() {
            o.str("rrname", &q.name);
            o.str("rrtype", &rtype_name(q.rtype));
        }
        o.str("rcode", &rcode_name(h.rcode()));
        sections(o, msg);
    }));
}

/// `grouped`: the answers' data by record type (in order of
/// first appearance), for the types whose data is a string and that
/// Suricata's schema names (not DNAME).
fn grouped(o: &mut Obj<'_>, answers: &[Record]) {
    let text = |r: &Record| match &r.data {
        RData::Addr(_) | RData::Txt(_) | RData::Mx { .. } => true,
        RData::Name(_) => r.rtype != rtype::DNAME,
        RData::Soa { .. } | RData::Other { .. } => false,
    };
    for (i, r) in answers.iter().enumerate() {
        let first = !answers[..i].iter().any(|p| p.rtype == r.rtype && text(p));
        if !text(r) || !first {
            continue;
        }
        o.arr(&rtype_name(r.rtype), |a| {
            for same in answers[i..].iter().filter(|x| x.rtype == r.rtype) {
                match &same.data {
                    RData::Addr(addr) => a.ip(*addr),
                    RData::Name(n) | RData::Txt(n) | RData::Mx { exchange: n, .. } => a.str(n),
                    RData::Soa { .. } | RData::Other { .. } => {}
                }
            }
        });
    }
}

fn record(o: &mut Obj<'_>, r: &Record) {
    o.str("rrname", &r.name);
    o.str("rrtype", &rtype_name(r.rtype));
    o.u64("ttl", r.ttl.into());
    match &r.data {
        RData::Addr(a) => o.ip("rdata", *a),
        RData::Name(n) | RData::Txt(n) | RData::Mx { exchange: n, .. } => o.str("rdata", n),
        RData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => o.obj("soa", |o| {
            o.str("mname", mname);
            o.str("rname", rname);
            o.u64("serial", (*serial).into());
            o.u64("refresh", (*refresh).into());
            o.u64("retry", (*retry).into());
            o.u64("expire", (*expire).into());
            o.u64("minimum", (*minimum).into());
        }),
        RData::Other { .. } => {}
    }
}

#[cfg(test)]
mod tests;
