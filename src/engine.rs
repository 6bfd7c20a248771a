//! The per-packet pipeline of one worker: decode, flow lookup, TCP state,
//! protocol analysis, expiry. Single-threaded and owning its flow table, so
//! the hot path takes no lock and touches no shared counter; workers are
//! sharded by the symmetric flow hash.

use crate::analyzer::dispatch::{AppSlot, PacketInput, Protocols};
use crate::analyzer::names::NameCache;
use crate::analyzer::restored::{Restored, SavedApp};
use crate::analyzer::{Dir, Emit, FlowContext, PacketView};
use crate::decode::{decode, Fragment, Packet, Skip};
use crate::event::{AppRecord, Event, EventSink, FlowMeta, FlowRecord};
use crate::flow::ended::EndedFlows;
use crate::flow::key::{FlowKey, Side};
use crate::flow::pressure::Pressure;
use crate::flow::table::FlowTable;
use crate::flow::{
    EndReason, EvictionTier, Flow, FlowConfig, FlowState, Marks, OriginBasis, TimeoutClass,
};
use crate::judge::{flow_names, Judge, SharedRules};
use crate::policy::Alert;
use crate::source::Frame;
use crate::stats::Stats;
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::sync::Arc;

/// How often (in packet time) idle flows are looked for.
const SWEEP_INTERVAL: u64 = NANOS_PER_SEC;

#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    pub flow: FlowConfig,
    /// Community ID seed (0 unless every sensor agrees on another).
    pub community_seed: u16,
}

pub struct Engine {
    cfg: EngineConfig,
    table: FlowTable,
    /// Whether the table is full and evicting, and what was evicted.
    pressure: Pressure,
    /// Identified flows ended while their connection may go on.
    ended: EndedFlows,
    protocols: Arc<Protocols>,
    stats: Stats,
    /// Scratch for analyzer events, reused across packets.
    emit: Emit,
    /// The egress policy, when rules are loaded.
    judge: Option<Judge>,
    /// Names learned from DNS, shared with the DNS analyzer.
    names: Option<Arc<NameCache>>,
    /// Scratch for alerts, reused across packets.
    alerts: Vec<Alert>,
    /// The input the current frames come from (see [`Engine::set_input`]).
    input: u16,
    /// The latest packet time seen; expiry runs on it.
    now: Timestamp,
    next_sweep: Timestamp,
    /// Set by [`Engine::saving_at_finish`]: what [`Engine::finish`] saved.
    saved: Option<Vec<SavedFlow>>,
}

impl Engine {
    pub fn new(cfg: EngineConfig, protocols: Arc<Protocols>, hasher: ahash::RandomState) -> Self {
        let (capacity, keep) = (cfg.flow.ended_capacity, cfg.flow.ended_keep_seconds);
        let ended = EndedFlows::new(capacity, keep, hasher.clone());
        let table = FlowTable::new(cfg.flow.capacity, hasher);
        let pressure = Pressure::new(cfg.flow.emergency_idle_seconds);
        Engine {
            cfg,
            table,
            pressure,
            ended,
            protocols,
            stats: Stats::default(),
            emit: Vec::new(),
            judge: None,
            names: None,
            alerts: Vec::new(),
            input: 0,
            now: Timestamp::default(),
            next_sweep: Timestamp::default(),
            saved: None,
        }
    }

    /// An engine as `replay` and the sensor run it: the analyzers in
    /// `protocols` (made with `names`), judging flows against `rules`, and
    /// labelling flow records with the names their clients resolved.
    pub fn analyzing(
        cfg: EngineConfig,
        protocols: Arc<Protocols>,
        rules: SharedRules,
        names: Arc<NameCache>,
    ) -> Self {
        let judge = Judge::new(rules, names.clone(), cfg.community_seed);
        Engine::new(cfg, protocols, ahash::RandomState::new())
            .with_judge(judge)
            .with_names(names)
    }

    /// [`Engine::analyzing`] with every analyzer and the rules built into
    /// the binary (`rules/`), as `egresswatch demo` runs: for tests and
    /// benchmarks. `None` only if the built-in rules do not load (a test
    /// keeps them loading).
    pub fn with_builtin_rules(cfg: EngineConfig) -> Option<Self> {
        let rules = crate::policy::load_sources(crate::policy::shipped(), None).rules?;
        let names = Arc::new(NameCache::default());
        let protocols = crate::analyzer::registry(names.clone(), &Default::default());
        let rules = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
        Some(Engine::analyzing(cfg, Arc::from(protocols), rules, names))
    }

    /// Labels flow records with the names their client resolved.
    pub fn with_names(mut self, names: Arc<NameCache>) -> Self {
        self.names = Some(names);
        self
    }

    /// Judges flows against the egress policy from now on.
    pub fn with_judge(mut self, judge: Judge) -> Self {
        self.judge = Some(judge);
        self
    }

    /// Runs `trial` alongside the judge (`replay --compare-rules`,
    /// `check-rules --capture`); without rules there is nothing to try.
    pub fn with_trial(mut self, trial: crate::trial::Trial) -> Self {
        if let Some(judge) = &mut self.judge {
            judge.set_trial(trial);
        }
        self
    }

    /// The trial, with what it recorded (after [`Engine::finish`]).
    pub fn take_trial(&mut self) -> Option<crate::trial::Trial> {
        self.judge.as_mut().and_then(Judge::take_trial)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn flows_active(&self) -> usize {
        self.table.len()
    }

    /// The frames processed from now on come from input `input` (the live
    /// interface by position); new flows remember it for EVE `in_iface`.
    pub fn set_input(&mut self, input: u16) {
        self.input = input;
    }

    /// Processes one frame; `index` is its 1-based position in the input.
    pub fn process(&mut self, frame: &Frame<'_>, index: u64, sink: &mut dyn EventSink) {
        self.process_decoded(frame, decode(frame), index, sink);
    }

    /// Processes one frame that another thread decoded already.
    pub fn process_decoded(
        &mut self,
        frame: &Frame<'_>,
        decoded: Result<Packet<'_>, Skip>,
        index: u64,
        sink: &mut dyn EventSink,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(frame.orig_len);
        match decoded {
            Ok(pkt) => self.on_packet(&pkt, index, sink),
            Err(skip) => self.stats.skipped[skip.index()] += 1,
        }
    }

    fn on_packet(&mut self, pkt: &Packet<'_>, index: u64, sink: &mut dyn EventSink) {
        self.stats.decoded += 1;
        if pkt.fragment == Fragment::First {
            self.stats.first_fragments += 1;
        }
        self.advance(pkt.ts, sink);
        if self.count_icmp_error(pkt) {
            return;
        }
        let (key, side) = pkt.flow_key();
        let slot = self.lookup(&key, side, pkt, index, sink);
        let Some(flow) = self.table.get_mut(slot) else {
            return;
        };
        let dir = flow.dir_of(side);
        flow.count(dir, pkt);
        if let Some(tcp) = pkt.tcp() {
            flow.tcp.update(dir, tcp, pkt.payload_len);
        }
        let analyzed = analyze(
            flow,
            &self.protocols,
            pkt,
            dir,
            index,
            &self.cfg.flow,
            &mut self.emit,
        );
        let interim = flow.next_period_due(pkt.ts, self.cfg.flow.active_seconds);
        if let Some(judge) = &mut self.judge {
            judge.on_packet(flow, pkt.ts, analyzed, &mut self.alerts);
        }
        describe_flow(&mut self.alerts, flow, Some(dir));
        let tier = eviction_tier(flow, analyzed);
        if analyzed && !flow.marks.has(Marks::TUNNEL) {
            let tunnel = is_tunnel(flow);
            flow.marks.set(Marks::TUNNEL, tunnel);
        }
        let flow = &*flow;
        write_alerts(&mut self.alerts, &mut self.stats, sink);
        write_app_events(
            &mut self.emit,
            &mut self.stats,
            self.cfg.community_seed,
            flow,
            sink,
        );
        if interim {
            self.stats.flows_ended[EndReason::Active as usize] += 1;
            let names = self
                .names
                .as_ref()
                .map(|c| flow_names(c, flow))
                .unwrap_or_default();
            let record = FlowRecord::of(flow, EndReason::Active, self.cfg.community_seed, names);
            sink.event(Event::Flow(Box::new(record)));
        }
        self.table.touch(slot, tier);
    }

    /// Counts an ICMP error toward the flow of the packet it quotes (as
    /// Suricata does), sent back toward that packet's sender. False when
    /// there is no such flow: the error is then a flow of its own.
    fn count_icmp_error(&mut self, pkt: &Packet<'_>) -> bool {
        let Some((src, dst, proto)) = pkt.icmp_inner else {
            return false;
        };
        let (key, side) = crate::flow::key::FlowKey::new(src, dst, proto, false);
        let Some(slot) = self.table.find(&key) else {
            return false;
        };
        let Some(flow) = self.table.get_mut(slot) else {
            return false;
        };
        let dir = flow.dir_of(side).reverse();
        flow.count(dir, pkt);
        flow.marks.set(Marks::ICMP_ERROR, true);
        let tier = flow.tier();
        self.table.touch(slot, tier);
        true
    }

    /// The slot of the packet's flow, created (and a full table or a reused
    /// 5-tuple resolved) as needed; `index` is the packet's position.
    fn lookup(
        &mut self,
        key: &crate::flow::key::FlowKey,
        side: crate::flow::key::Side,
        pkt: &Packet<'_>,
        index: u64,
        sink: &mut dyn EventSink,
    ) -> u32 {
        let mut evicted = None;
        let ended = &mut self.ended;
        let make = || resume(ended, key, side, pkt).unwrap_or_else(|| Flow::new(*key, side, pkt));
        let slot = self
            .table
            .find_or_insert(key, make, &mut |f| evicted = Some(f));
        if let Some(flow) = evicted {
            self.stats.flows_evicted[flow.tier().index()] += 1;
            self.pressure.on_evict(&flow, pkt.ts, index);
            self.end_flow(flow, EndReason::Evicted, sink);
        }
        if slot.created {
            match self.table.get(slot.index).is_some_and(|f| f.resumed > 0) {
                true => self.count_ended(),
                false => self.stats.flows_created += 1,
            }
            self.mark_input(slot.index);
            return slot.index;
        }
        let reused = self.table.get(slot.index).is_some_and(|f| is_reuse(f, pkt));
        if !reused {
            return slot.index;
        }
        if let Some(old) = self.table.remove(slot.index) {
            self.end_flow(old, EndReason::Reused, sink);
        }
        self.stats.flows_created += 1;
        let index = self
            .table
            .find_or_insert(key, || Flow::new(*key, side, pkt), &mut |_| {})
            .index;
        self.mark_input(index);
        index
    }

    fn mark_input(&mut self, slot: u32) {
        if let Some(flow) = self.table.get_mut(slot) {
            flow.input = self.input;
        }
    }

    /// Moves packet time forward to `now` and ends the flows that went idle.
    /// A live source with no traffic calls this with its clock to keep
    /// expiry going.
    pub fn advance(&mut self, now: Timestamp, sink: &mut dyn EventSink) {
        if now <= self.now {
            return;
        }
        self.now = now;
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.add_nanos(SWEEP_INTERVAL);
        let emergency = self.pressure.active();
        for class in TimeoutClass::ALL {
            let idle = self.cfg.flow.idle_seconds[class.index()];
            let cheap = match emergency {
                true => idle.min(self.cfg.flow.emergency_idle_seconds),
                false => idle,
            };
            let limits = [cheap, idle, idle].map(|secs| secs * NANOS_PER_SEC);
            while let Some(flow) = self.table.pop_idle(class, now, &limits) {
                self.end_flow(flow, EndReason::Idle, sink);
            }
        }
        self.ended.expire(now);
        self.count_ended();
        let (tracked, capacity) = (self.table.len(), self.table.capacity());
        let report = self.pressure.check(now, tracked, capacity);
        self.report_pressure(report, sink);
    }

    /// Alerts on a pressure episode's report.
    fn report_pressure(
        &mut self,
        report: Option<crate::flow::pressure::Report>,
        sink: &mut dyn EventSink,
    ) {
        let (Some(report), Some(judge)) = (report, &mut self.judge) else {
            return;
        };
        judge.on_pressure(&report, &mut self.alerts);
        self.stats.alerts_suppressed = judge.suppressed;
        write_alerts(&mut self.alerts, &mut self.stats, sink);
    }

    /// Has [`Engine::finish`] save the flows worth keeping across a
    /// restart ([`Engine::save`]) before it ends them.
    pub fn saving_at_finish(mut self) -> Self {
        self.saved = Some(Vec::new());
        self
    }

    /// What [`Engine::finish`] saved, and the latest packet time seen.
    pub fn take_saved(&mut self) -> (Vec<SavedFlow>, Timestamp) {
        (self.saved.take().unwrap_or_default(), self.now)
    }

    /// Ends every open flow (end of input, or the sensor stops).
    pub fn finish(&mut self, sink: &mut dyn EventSink) {
        if self.saved.is_some() {
            self.saved = Some(self.save());
        }
        let (tracked, capacity) = (self.table.len(), self.table.capacity());
        let report = self.pressure.report(self.now, tracked, capacity);
        self.report_pressure(report, sink);
        for (_, slot) in self.open_by_start() {
            if let Some(flow) = self.table.remove(slot) {
                self.end_flow(flow, EndReason::Shutdown, sink);
            }
        }
    }

    /// The open flows' table slots by start, then flow id: the order they
    /// end in at the end of input, so engines sharing one output can be
    /// merged as they go. Slots, not keys: 24 bytes a flow, allocated
    /// once, at the moment the table is at its largest.
    fn open_by_start(&self) -> Vec<((u64, u64), u32)> {
        let mut open = Vec::with_capacity(self.table.len());
        open.extend(
            self.table
                .iter_slots()
                .map(|(slot, f)| ((f.start().as_nanos(), f.id()), slot)),
        );
        open.sort_unstable_by_key(|(order, _)| *order);
        open
    }

    fn end_flow(&mut self, mut flow: Flow, reason: EndReason, sink: &mut dyn EventSink) {
        sink.flow_ending((flow.start().as_nanos(), flow.id()));
        let last = flow.last();
        let ctx = context(&flow);
        if let Some(app) = flow.app.as_mut() {
            app.finish(&self.protocols, &ctx, last, &mut self.emit);
            if reason != EndReason::Active {
                self.stats.tunnels += u64::from(!app.tunnel().is_empty());
                self.stats.tunnels_unfollowed += u64::from(app.tunnel_bounded());
            }
        }
        if let Some(judge) = &mut self.judge {
            judge.on_end(&mut flow, &mut self.alerts);
            self.stats.alerts_suppressed = judge.suppressed;
        }
        describe_flow(&mut self.alerts, &flow, None);
        write_alerts(&mut self.alerts, &mut self.stats, sink);
        write_app_events(
            &mut self.emit,
            &mut self.stats,
            self.cfg.community_seed,
            &flow,
            sink,
        );
        self.stats.flows_ended[reason as usize] += 1;
        let names = self.flow_names(&flow);
        let record = FlowRecord::of(&flow, reason, self.cfg.community_seed, names);
        sink.event(Event::Flow(Box::new(record)));
        if may_continue(&flow, reason) {
            self.ended.remember(flow, self.now);
            self.count_ended();
        }
    }

    /// The flows worth keeping across a restart (the sensor's state file):
    /// identified SSH over TCP, neither closing nor carried through a
    /// proxy; the open ones and those remembered after they ended.
    pub fn save(&self) -> Vec<SavedFlow> {
        let ended = self.ended.iter().map(|(f, _)| f);
        self.table.iter().chain(ended).filter_map(saved).collect()
    }

    /// Takes saved flows into the memory of ended flows, oldest first, so
    /// that a mid-stream packet continues each as after an idle timeout
    /// (same id, facts, alert state and age). How many were taken.
    pub fn restore(&mut self, mut flows: Vec<SavedFlow>) -> usize {
        flows.sort_by_key(|s| s.flow.dirs[0].last.max(s.flow.dirs[1].last));
        let mut taken = 0;
        for s in flows {
            if let Some(flow) = restored(s) {
                let last = flow.last();
                self.ended.remember(flow, last);
                taken += 1;
            }
        }
        self.stats.flows_restored += taken as u64;
        self.count_ended();
        taken
    }

    fn count_ended(&mut self) {
        let counts = self.ended.counts();
        self.stats.flows_resumed = counts.resumed;
        self.stats.ended_dropped = counts.dropped;
        self.stats.ended_expired = counts.expired;
    }

    /// What became of the flows remembered after they ended.
    pub fn ended_counts(&self) -> crate::flow::ended::EndedCounts {
        self.ended.counts()
    }

    fn flow_names(&self, flow: &Flow) -> Vec<Arc<str>> {
        self.names
            .as_ref()
            .map(|c| flow_names(c, flow))
            .unwrap_or_default()
    }
}

/// Gives the alerts a judgement of `flow` produced what EVE writes of the
/// flow on an alert: the triggering packet's direction (`None` at the
/// flow's end), the counters so far and the app-layer object.
fn describe_flow(alerts: &mut [Alert], flow: &Flow, dir: Option<crate::analyzer::Dir>) {
    for alert in alerts.iter_mut() {
        alert.flow = Some(crate::policy::AlertFlow {
            input: flow.input,
            dir,
            pkts: [flow.dirs[0].pkts, flow.dirs[1].pkts],
            bytes: [flow.dirs[0].bytes, flow.dirs[1].bytes],
            start: flow.start(),
            app: flow.app.as_ref().and_then(|a| a.alert_object()),
        });
    }
}

/// Writes the alerts a judgement produced.
fn write_alerts(alerts: &mut Vec<Alert>, stats: &mut Stats, sink: &mut dyn EventSink) {
    for alert in alerts.drain(..) {
        stats.count_alert(alert.detection, alert.severity);
        sink.event(Event::Alert(Box::new(alert)));
    }
}

/// Writes the analyzer events a packet or a flow end produced.
fn write_app_events(
    emit: &mut Emit,
    stats: &mut Stats,
    seed: u16,
    flow: &Flow,
    sink: &mut dyn EventSink,
) {
    if emit.is_empty() {
        return;
    }
    let meta = FlowMeta::of(flow, seed);
    for event in emit.drain(..) {
        stats.app_events += 1;
        sink.event(Event::App(Box::new(AppRecord {
            meta: meta.clone(),
            event,
        })));
    }
}

/// The flow's eviction tier after this packet. Tiers only rise (a flow
/// never becomes cheap again, nor loses its analyzer or its alerts), so a
/// protected flow costs one comparison, and the analysis state is read
/// only when the analysis ran or the flow has just stopped being cheap.
fn eviction_tier(flow: &Flow, analyzed: bool) -> EvictionTier {
    let was = flow.tier();
    match was {
        EvictionTier::Protected => return was,
        EvictionTier::Cheap if flow.is_cheap() => return was,
        _ => {}
    }
    let look = analyzed || was == EvictionTier::Cheap;
    let identified = look && flow.app.as_ref().is_some_and(|a| a.facts().is_some());
    if identified || flow.alerts.any() {
        EvictionTier::Protected
    } else {
        EvictionTier::Plain
    }
}

/// Whether the flow is a tunnel that deserves the long idle class
/// ([`TimeoutClass::TcpTunnel`]): an identified SSH session, which may sit
/// silent for hours (`ssh -N -R` with no keepalive) while TCP holds it.
fn is_tunnel(flow: &Flow) -> bool {
    flow.is_tcp()
        && flow
            .app
            .as_ref()
            .and_then(|a| a.facts())
            .is_some_and(|f| f.ssh.is_some())
}

/// A flow kept across a restart: the flow and what its analysis knew.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SavedFlow {
    pub flow: FlowState,
    pub app: SavedApp,
}

fn saved(flow: &Flow) -> Option<SavedFlow> {
    let app = flow.app.as_ref()?;
    if !is_tunnel(flow) || flow.tcp.sent_fin_or_rst() || !app.tunnel().is_empty() {
        return None;
    }
    Some(SavedFlow {
        flow: flow.state(),
        app: SavedApp::of(app.facts()?, app.alert_object())?,
    })
}

/// The flow a [`SavedFlow`] describes, its analysis done (it reads no more
/// bytes) and kept in the tunnel class; `None` for one this build does not
/// restore.
fn restored(s: SavedFlow) -> Option<Flow> {
    let analyzer = Restored::new(s.app)?;
    let mut flow = Flow::restore(s.flow, None);
    flow.app = Some(Box::new(AppSlot::restored(Box::new(analyzer))));
    flow.marks.set(Marks::APP_DONE, true);
    flow.marks.set(Marks::TUNNEL, true);
    Some(flow)
}

/// Whether an ended flow is remembered for a continuation: an identified
/// TCP flow that ended while its connection may still be open (idle
/// timeout or eviction, no FIN or RST seen).
fn may_continue(flow: &Flow, reason: EndReason) -> bool {
    let open = flow.is_tcp() && !flow.tcp.sent_fin_or_rst();
    let identified = flow.app.as_ref().is_some_and(|a| a.facts().is_some());
    matches!(reason, EndReason::Idle | EndReason::Evicted) && open && identified
}

/// The remembered flow that a mid-stream TCP packet (no SYN, its sequence
/// number close to where the connection stopped) continues, taken back from
/// `ended`: its identity, analysis, alert state and start time go on, under
/// the same flow id. A packet that does not continue it leaves it there.
fn resume(ended: &mut EndedFlows, key: &FlowKey, side: Side, pkt: &Packet<'_>) -> Option<Flow> {
    let tcp = pkt.tcp()?;
    if tcp.flags.syn() {
        return None;
    }
    let mut flow = ended.take_if(key, pkt.ts, |f| f.tcp.continues(f.dir_of(side), tcp))?;
    flow.resumed = flow.resumed.saturating_add(1);
    Some(flow)
}

/// A SYN that opens a new connection on the 5-tuple of a finished one.
fn is_reuse(flow: &Flow, pkt: &Packet<'_>) -> bool {
    let Some(tcp) = pkt.tcp() else {
        return false;
    };
    tcp.flags.syn() && !tcp.flags.ack() && flow.tcp.closed()
}

/// What the flow's analyzers know of it.
fn context(flow: &Flow) -> FlowContext {
    FlowContext {
        client: flow.client(),
        server: flow.server(),
        proto: flow.key.proto,
    }
}

/// Hands the packet to the flow's protocol analysis, creating it when the
/// flow first carries payload. False when the analysis did not run (so
/// its facts cannot have changed).
fn analyze(
    flow: &mut Flow,
    protocols: &Protocols,
    pkt: &Packet<'_>,
    dir: Dir,
    index: u64,
    cfg: &FlowConfig,
    emit: &mut Emit,
) -> bool {
    if protocols.is_empty() || flow.marks.has(Marks::APP_DONE) {
        return false;
    }
    if flow.app.is_none() {
        if pkt.payload_len == 0 || flow.marks.has(Marks::APP_UNKNOWN) {
            return false;
        }
        let mut slot = Box::new(AppSlot::new());
        if flow.is_tcp() && flow.basis == OriginBasis::PortGuess {
            slot.set_midstream();
        }
        flow.app = Some(slot);
    }
    let ctx = context(flow);
    let Some(app) = flow.app.as_mut() else {
        return false;
    };
    let input = PacketInput {
        flow: &ctx,
        view: PacketView {
            index,
            ts: pkt.ts,
            dir,
            tcp: pkt.tcp().copied(),
            payload: pkt.payload,
            payload_len: pkt.payload_len,
        },
        data_start: flow.tcp.data_start(dir),
        budget: cfg.stream_budget_bytes,
    };
    app.on_packet(protocols, &input, emit);
    flow.marks.set(Marks::APP_DONE, app.is_finished());
    if app.is_unknown() {
        // Nobody claimed the flow: free the analysis state, keep the mark.
        flow.app = None;
        flow.marks.set(Marks::APP_UNKNOWN, true);
    }
    true
}

/// Counts of skipped frames by reason, for summaries.
pub fn skip_counts(stats: &Stats) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    Skip::ALL
        .iter()
        .map(|s| (s.name(), stats.skipped[s.index()]))
}
