//! What the engine reports: owned records that can cross threads to the
//! writer. [`crate::eve`] turns them into EVE JSON lines.

use crate::analyzer::tunnel::{Hop, Via};
use crate::analyzer::AppEvent;
use crate::community_id::community_id;
use crate::flow::key::{proto, Endpoint};
use crate::flow::{DirStats, EndReason, Flow, Marks};
use crate::time::Timestamp;

/// The identity every record of a flow shares.
#[derive(Clone, Debug)]
pub struct FlowMeta {
    pub flow_id: u64,
    pub community_id: String,
    /// The originator.
    pub src: Endpoint,
    pub dest: Endpoint,
    pub proto: u8,
    pub app_proto: Option<&'static str>,
    /// The input the flow came from ([`Flow::input`]).
    pub input: u16,
}

impl FlowMeta {
    pub fn of(flow: &Flow, community_seed: u16) -> Self {
        FlowMeta {
            flow_id: flow.id(),
            community_id: community_id(&flow.key, community_seed),
            src: flow.client(),
            dest: flow.server(),
            proto: flow.key.proto,
            app_proto: flow
                .app
                .as_ref()
                .and_then(|a| a.facts())
                .and_then(|f| f.app_proto),
            input: flow.input,
        }
    }
}

/// A flow record: written when a flow ends, or as an interim record of a
/// long-lived flow.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    pub meta: FlowMeta,
    pub reason: EndReason,
    pub state: &'static str,
    pub start: Timestamp,
    pub end: Timestamp,
    /// toserver, toclient.
    pub dirs: [DirStats; 2],
    pub tcp: Option<TcpSummary>,
    pub originator: &'static str,
    /// Interim records are cumulative since the flow started.
    pub interim: bool,
    /// The policy raised at least one alert on this flow.
    pub alerted: bool,
    /// Times the flow was continued mid-stream after an earlier record of
    /// it ended by idle timeout or eviction (its counts and start are
    /// cumulative since the real start, under the same flow id).
    pub resumed: u8,
    /// Names of the server (DNS answers the client got, SNI, Host).
    pub names: Vec<std::sync::Arc<str>>,
    /// Every detection the policy found on the flow, suppressed ones
    /// included (what `egresswatch learn` refuses to legitimise).
    pub findings: crate::policy::AlertState,
    /// SSH client and server fingerprints (HASSH, HASSHServer).
    pub hassh: [Option<Box<str>>; 2],
    /// An ICMP error came back for the flow (unreachable, ...).
    pub icmp_error: bool,
    /// Tunnel layers (CONNECT, SOCKS, PROXY header), outermost first;
    /// empty (no allocation) for flows that are not tunnelled.
    pub tunnel: Vec<(Via, Option<Hop>)>,
}

#[derive(Clone, Debug)]
pub struct TcpSummary {
    pub flags: [u8; 2],
    pub state: &'static str,
    pub conn_state: &'static str,
    pub history: crate::flow::tcp::History,
    pub retransmitted: [u32; 2],
    pub out_of_order: [u32; 2],
}

impl FlowRecord {
    pub fn of(
        flow: &Flow,
        reason: EndReason,
        community_seed: u16,
        names: Vec<std::sync::Arc<str>>,
    ) -> Self {
        let tcp = flow.is_tcp().then(|| TcpSummary {
            flags: [flow.tcp.dirs[0].flags, flow.tcp.dirs[1].flags],
            state: flow.tcp.eve_state(),
            conn_state: flow.tcp.conn_state(),
            history: flow.tcp.history(),
            retransmitted: [
                flow.tcp.dirs[0].retransmitted,
                flow.tcp.dirs[1].retransmitted,
            ],
            out_of_order: [flow.tcp.dirs[0].out_of_order, flow.tcp.dirs[1].out_of_order],
        });
        let mut meta = FlowMeta::of(flow, community_seed);
        // TCP or UDP payload nobody identified is `failed`, as Suricata
        // writes it when protocol detection gave up (it runs no app-layer
        // detection on other protocols); a flow without payload has no
        // app_proto.
        let payload = flow.dirs[0].payload_bytes + flow.dirs[1].payload_bytes > 0;
        let app_layer = matches!(flow.key.proto, proto::TCP | proto::UDP);
        if meta.app_proto.is_none() && payload && app_layer {
            meta.app_proto = Some("failed");
        }
        FlowRecord {
            meta,
            reason,
            state: flow.eve_state(),
            start: flow.start(),
            end: flow.last(),
            dirs: flow.dirs,
            tcp,
            originator: flow.basis.name(),
            interim: reason == EndReason::Active,
            alerted: flow.alerts.raised().next().is_some(),
            resumed: flow.resumed,
            names,
            findings: flow.alerts,
            hassh: ssh_fingerprints(flow),
            icmp_error: flow.marks.has(Marks::ICMP_ERROR),
            tunnel: tunnel_layers(flow),
        }
    }
}

fn tunnel_layers(flow: &Flow) -> Vec<(Via, Option<Hop>)> {
    let Some(app) = flow.app.as_ref() else {
        return Vec::new();
    };
    app.tunnel()
        .into_iter()
        .map(|(via, hop)| (via, hop.cloned()))
        .collect()
}

/// The HASSH and HASSHServer of an SSH flow (allocates for SSH flows only).
fn ssh_fingerprints(flow: &Flow) -> [Option<Box<str>>; 2] {
    let ssh = flow
        .app
        .as_ref()
        .and_then(|a| a.facts())
        .and_then(|f| f.ssh.as_deref());
    match ssh {
        Some(s) => [
            s.hassh.as_deref().map(Box::from),
            s.hassh_server.as_deref().map(Box::from),
        ],
        None => [None, None],
    }
}

/// An application-layer record (ssh, dns, tls, http, ...).
#[derive(Clone, Debug)]
pub struct AppRecord {
    pub meta: FlowMeta,
    pub event: AppEvent,
}

/// Everything the engine reports.
#[derive(Clone, Debug)]
pub enum Event {
    Flow(Box<FlowRecord>),
    App(Box<AppRecord>),
    Alert(Box<crate::policy::Alert>),
    /// An incident opened or grew ([`crate::hosts::incident`]).
    Incident(Box<crate::hosts::incident::IncidentRecord>),
}

/// Where events go: the EVE writer, a channel to it, or a test collector.
pub trait EventSink {
    fn event(&mut self, event: Event);

    /// The events up to the next call are about one flow that ends, which
    /// `order` (its start, then its id) places among others ending at the
    /// same packet. A sink that merges engines' events sorts by it.
    fn flow_ending(&mut self, _order: (u64, u64)) {}
}

impl EventSink for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}
