//! Prometheus metrics: one registry with every family the sensor exports,
//! fed per batch from the workers' [`Stats`] (deltas of plain counters,
//! never an atomic per packet), and the text exposition for `/metrics`
//! and for `replay --metrics-file` (node_exporter's textfile collector).
//!
//! Naming follows the Prometheus conventions: one prefix `egresswatch_`,
//! base units, `_total` on counters, and never an address, port, host name
//! or flow in a label: per-flow detail belongs in the EVE output. Every
//! known label value is created at zero on start so series never appear
//! out of nowhere. `docs/METRICS.md` lists every family.

use crate::analyzer::names::NameCache;
use crate::decode::Skip;
use crate::event::{Event, FlowMeta};
use crate::flow::{EndReason, EvictionTier};
use crate::judge::SharedRules;
use crate::policy::{Detection, FlowSubject, RuleSet, Severity, Stage};
use crate::stats::Stats;
use crate::time::Timestamp;
use prometheus::{
    Counter, CounterVec, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The metric name prefix.
pub const PREFIX: &str = "egresswatch";

/// Drop reasons of `egresswatch_capture_dropped_packets_total`.
pub const DROP_REASONS: [&str; 3] = ["kernel", "interface", "queue"];

/// EVE record types counted by `egresswatch_eve_records_total`; anything
/// else counts as `other`.
pub const EVE_TYPES: [&str; 10] = [
    "flow",
    "flow_interim",
    "alert",
    "ssh",
    "dns",
    "tls",
    "http",
    "stratum",
    "incident",
    "other",
];

/// Where an SSH session went, relative to the cluster's policy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SshDestination {
    /// The server is inside the cluster.
    Internal,
    /// Outside, and an allow entry permits it.
    Allowlisted,
    /// Outside, and nothing permits it.
    External,
}

impl SshDestination {
    pub const ALL: [SshDestination; 3] = [
        SshDestination::Internal,
        SshDestination::Allowlisted,
        SshDestination::External,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SshDestination::Internal => "internal",
            SshDestination::Allowlisted => "allowlisted",
            SshDestination::External => "external",
        }
    }
}

/// Counters of one capture interface.
#[derive(Clone)]
pub struct CaptureCounters {
    pub received_packets: IntCounter,
    pub received_bytes: IntCounter,
    pub dropped_kernel: IntCounter,
    pub dropped_interface: IntCounter,
    pub dropped_queue: IntCounter,
    /// Seconds spent waiting for room in a full worker queue.
    pub queue_wait_seconds: Counter,
    pub up: IntGauge,
    /// Times the capture was reopened after the interface failed.
    pub restarts: IntCounter,
}

/// The rule-reload health metrics.
#[derive(Clone)]
struct RuleMetrics {
    loaded: IntGauge,
    reloads: IntCounter,
    failures: IntCounter,
    last_successful: IntGauge,
    last_success_ts: Gauge,
    allow_entries: IntGauge,
    zones: IntGauge,
}

/// Engine counters with their label handles resolved once.
#[derive(Clone)]
struct EngineCounters {
    processed_packets: IntCounter,
    processed_bytes: IntCounter,
    decoded_packets: IntCounter,
    skipped: Vec<IntCounter>,
    first_fragments: IntCounter,
    flows_created: IntCounter,
    flows_resumed: IntCounter,
    flows_restored: IntCounter,
    ended_dropped: IntCounter,
    ended_expired: IntCounter,
    /// By [`EndReason`] index; `Active` (interim records) is not an end.
    flows_ended: Vec<Option<IntCounter>>,
    /// By [`EvictionTier`].
    flows_evicted: Vec<IntCounter>,
    interim_records: IntCounter,
    app_records: IntCounter,
    /// `[detection][severity - 1]`.
    alerts: Vec<[IntCounter; 3]>,
    alerts_suppressed: IntCounter,
    discovery_sources_dropped: IntCounter,
    tunnels: IntCounter,
    tunnels_unfollowed: IntCounter,
    dns_tunnel_domains_dropped: IntCounter,
    incidents_opened: IntCounter,
    incidents_evicted: IntCounter,
}

/// Every metric family the sensor exports, in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    capture_received_packets: IntCounterVec,
    capture_received_bytes: IntCounterVec,
    capture_dropped: IntCounterVec,
    capture_queue_wait: CounterVec,
    capture_up: IntGaugeVec,
    capture_restarts: IntCounterVec,
    engine: EngineCounters,
    flows_active: IntGauge,
    discovery_sources: IntGauge,
    incidents_open: IntGaugeVec,
    flow_table_capacity: IntGauge,
    ssh_sessions: [IntCounter; 3],
    eve_records: Vec<IntCounter>,
    eve_write_errors: IntCounter,
    eve_records_lost: IntCounter,
    eve_records_pending: IntGauge,
    rules: RuleMetrics,
    workers: IntGauge,
    worker_queue: IntGaugeVec,
    worker_queue_capacity: IntGauge,
    ready: IntGauge,
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

fn counter(reg: &Registry, n: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name(n), help)).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(reg: &Registry, n: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name(n), help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// Adds `b - a`, element by element, to labelled counters.
fn inc_each(counters: &[IntCounter], a: &[u64], b: &[u64]) {
    for (c, (x, y)) in counters.iter().zip(a.iter().zip(b)) {
        c.inc_by(y.saturating_sub(*x));
    }
}

fn gauge(reg: &Registry, n: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(Opts::new(name(n), help)).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(reg: &Registry, n: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name(n), help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family, at zero. The metric definitions are constants, so the
    /// `expect`s above cannot fail at run time (a test registers them all).
    pub fn new() -> Metrics {
        let reg = Registry::new();
        let r = &reg;
        let build = gauge_vec(
            r,
            "build_info",
            "Always 1; the labels say which build is running.",
            &["version", "revision", "rustc"],
        );
        use crate::version;
        build
            .with_label_values(&[version::VERSION, version::REVISION, version::RUSTC])
            .set(1);
        let engine = EngineCounters::register(r);
        let ssh = counter_vec(
            r,
            "ssh_sessions_total",
            "SSH sessions by where the server is (counted when the session's ssh record is written, at flow end).",
            &["destination"],
        );
        let eve = counter_vec(
            r,
            "eve_records_total",
            "EVE records handed to the writer, by event_type.",
            &["event_type"],
        );
        Metrics {
            capture_received_packets: counter_vec(
                r,
                "capture_received_packets_total",
                "Frames read from the capture (before the worker queues).",
                &["interface"],
            ),
            capture_received_bytes: counter_vec(
                r,
                "capture_received_bytes_total",
                "Wire bytes of the frames read from the capture.",
                &["interface"],
            ),
            capture_dropped: counter_vec(
                r,
                "capture_dropped_packets_total",
                "Frames lost before analysis: kernel (ring full), interface (NIC/driver), queue (a full worker queue at shutdown).",
                &["interface", "reason"],
            ),
            capture_queue_wait: {
                let c = CounterVec::new(
                    Opts::new(
                        name("capture_queue_wait_seconds_total"),
                        "Time the capture waited for room in a full worker queue (the kernel ring held the frames meanwhile).",
                    ),
                    &["interface"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            capture_up: gauge_vec(
                r,
                "capture_up",
                "1 while the capture on the interface is open and reading; 0 while it is lost and being reopened.",
                &["interface"],
            ),
            capture_restarts: counter_vec(
                r,
                "capture_restarts_total",
                "Times the capture on the interface was reopened after it failed (the interface went away).",
                &["interface"],
            ),
            engine,
            flows_active: gauge(r, "flows_active", "Flows in the flow tables now."),
            discovery_sources: gauge(
                r,
                "discovery_sources",
                "Source hosts the internal-discovery detector tracks now.",
            ),
            incidents_open: gauge_vec(
                r,
                "incidents_open",
                "Incidents open now (one per internal host with alerts within the incident window), by zone (none: outside every zone) and severity.",
                &["zone", "severity"],
            ),
            flow_table_capacity: gauge(
                r,
                "flow_table_capacity",
                "Flows the tables hold at most (all workers); the longest-idle flow is evicted beyond.",
            ),
            ssh_sessions: SshDestination::ALL.map(|d| ssh.with_label_values(&[d.name()])),
            eve_records: EVE_TYPES
                .iter()
                .map(|t| eve.with_label_values(&[t]))
                .collect(),
            eve_write_errors: counter(
                r,
                "eve_write_errors_total",
                "Attempts to write to the EVE output that failed (each retry counts); records lost are in eve_records_lost_total.",
            ),
            eve_records_lost: counter(
                r,
                "eve_records_lost_total",
                "EVE records never written: dropped while the output failed (beyond what may wait) or still unwritten at shutdown.",
            ),
            eve_records_pending: gauge(
                r,
                "eve_records_pending",
                "EVE records waiting for a failing output to work again.",
            ),
            rules: RuleMetrics::register(r),
            workers: gauge(r, "workers", "Worker threads analyzing packets."),
            worker_queue: gauge_vec(
                r,
                "worker_queue_packets",
                "Frames waiting in a worker's queue.",
                &["worker"],
            ),
            worker_queue_capacity: gauge(
                r,
                "worker_queue_capacity_packets",
                "Frames a worker's queue holds at most; beyond, the capture waits and the kernel ring holds the frames.",
            ),
            ready: gauge(
                r,
                "ready",
                "1 when rules are loaded and every capture is open (as /-/ready).",
            ),
            registry: reg,
        }
    }

    /// Adds the process collector (`process_*`: CPU, memory, open files).
    /// Not for the textfile output: node_exporter has its own `process_*`.
    pub fn with_process_collector(self) -> Metrics {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = self.registry.register(Box::new(pc)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        self
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The counters of one capture interface, created at zero.
    pub fn capture(&self, interface: &str) -> CaptureCounters {
        let drop = |reason: &str| self.capture_dropped.with_label_values(&[interface, reason]);
        CaptureCounters {
            received_packets: self
                .capture_received_packets
                .with_label_values(&[interface]),
            received_bytes: self.capture_received_bytes.with_label_values(&[interface]),
            dropped_kernel: drop(DROP_REASONS[0]),
            dropped_interface: drop(DROP_REASONS[1]),
            dropped_queue: drop(DROP_REASONS[2]),
            queue_wait_seconds: self.capture_queue_wait.with_label_values(&[interface]),
            up: self.capture_up.with_label_values(&[interface]),
            restarts: self.capture_restarts.with_label_values(&[interface]),
        }
    }

    /// Adds what an engine counted between two snapshots of its stats.
    pub fn add_engine(&self, before: &Stats, after: &Stats) {
        self.engine.add(before, after);
    }

    /// Moves the active-flows gauge by one worker's change.
    /// Sources the internal-discovery detector tracks.
    pub fn set_discovery_sources(&self, sources: usize) {
        self.discovery_sources
            .set(i64::try_from(sources).unwrap_or(i64::MAX));
    }

    /// Sets the open incidents by zone and severity (labels not listed
    /// drop to nothing).
    pub fn set_incidents_open(&self, open: &[(Option<std::sync::Arc<str>>, Severity, u64)]) {
        self.incidents_open.reset();
        for (zone, severity, n) in open {
            self.incidents_open
                .with_label_values(&[zone.as_deref().unwrap_or("none"), severity.name()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    pub fn add_flows_active(&self, delta: i64) {
        self.flows_active.add(delta);
    }

    pub fn set_flow_table_capacity(&self, flows: usize) {
        self.flow_table_capacity
            .set(i64::try_from(flows).unwrap_or(i64::MAX));
    }

    /// Sets the worker count and each worker's queue capacity, and returns
    /// the queue-depth gauge of every worker.
    pub fn workers(&self, workers: usize, queue_capacity: usize) -> Vec<IntGauge> {
        self.workers.set(i64::try_from(workers).unwrap_or(i64::MAX));
        self.worker_queue_capacity
            .set(i64::try_from(queue_capacity).unwrap_or(i64::MAX));
        (0..workers)
            .map(|w| self.worker_queue.with_label_values(&[&w.to_string()]))
            .collect()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts one EVE record, and an SSH session by destination when it is
    /// an `ssh` record and a classifier is given.
    pub fn observe_event(&self, event: &Event, ssh: Option<&SshClassifier>) {
        let kind = match event {
            Event::Flow(f) if f.interim => crate::eve::INTERIM,
            Event::Flow(_) => "flow",
            Event::Alert(_) => "alert",
            Event::App(a) => a.event.event_type,
            Event::Incident(_) => "incident",
        };
        let index = EVE_TYPES
            .iter()
            .position(|t| *t == kind)
            .unwrap_or(EVE_TYPES.len() - 1);
        if let Some(c) = self.eve_records.get(index) {
            c.inc();
        }
        if let (Event::App(a), Some(classifier)) = (event, ssh) {
            if a.event.event_type == "ssh" {
                let d = classifier.classify(&a.meta, a.event.ts);
                self.ssh_sessions[d as usize].inc();
            }
        }
    }

    pub fn eve_write_error(&self) {
        self.eve_write_errors.inc();
    }

    pub fn eve_records_lost(&self, records: u64) {
        self.eve_records_lost.inc_by(records);
    }

    pub fn set_eve_records_pending(&self, records: u64) {
        self.eve_records_pending
            .set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    /// The rules in force at start.
    pub fn rules_loaded(&self, rules: &RuleSet, now_secs: f64) {
        self.rules.loaded.set(1);
        self.rules.last_successful.set(1);
        self.rules.last_success_ts.set(now_secs);
        self.rules.describe(rules);
    }

    /// A reload attempt; `rules` is the set in force afterwards.
    pub fn rules_reloaded(&self, ok: bool, rules: &RuleSet, now_secs: f64) {
        self.rules.reloads.inc();
        if ok {
            self.rules.last_successful.set(1);
            self.rules.last_success_ts.set(now_secs);
        } else {
            self.rules.failures.inc();
            self.rules.last_successful.set(0);
        }
        self.rules.describe(rules);
    }

    /// The text exposition format (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    /// Writes the exposition to `path` atomically (a temporary file in the
    /// same directory, then a rename), as node_exporter's textfile
    /// collector requires. The file is world-readable (0644), as the
    /// collector usually runs as another user.
    pub fn write_textfile(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.write_all(self.encode().as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The metrics of a finished replay: its stats as the engine counted
    /// them, the frames read (`filtered` of them rejected by `--bpf`)
    /// under `interface="replay"`, and the rules it ran with.
    pub fn record_replay(
        &self,
        stats: &Stats,
        filtered: u64,
        rules: Option<&RuleSet>,
        now_secs: f64,
    ) {
        let c = self.capture("replay");
        c.received_packets.inc_by(stats.packets + filtered);
        c.received_bytes.inc_by(stats.bytes);
        self.add_engine(&Stats::default(), stats);
        self.set_flow_table_capacity(0);
        self.workers(1, 0);
        if let Some(rules) = rules {
            self.rules_loaded(rules, now_secs);
        }
    }
}

impl EngineCounters {
    fn register(r: &Registry) -> EngineCounters {
        let skipped = counter_vec(
            r,
            "decode_skipped_packets_total",
            "Frames not analyzed, by reason (truncated, unsupported_link, non_ip, bad_header, bad_length, fragment).",
            &["reason"],
        );
        let ended = counter_vec(
            r,
            "flows_ended_total",
            "Flows ended, by reason: idle (timeout), evicted (table full), reused (new connection on the 5-tuple), shutdown.",
            &["reason"],
        );
        let evicted = counter_vec(
            r,
            "flows_evicted_total",
            "Flows ended early because the flow table was full (also in flows_ended_total), by kind: cheap (one-way, half-open or payload-less), plain, protected (identified or alerted).",
            &["kind"],
        );
        let alerts = counter_vec(
            r,
            "alerts_total",
            "Alerts raised, by detection and severity (high, medium, low).",
            &["detection", "severity"],
        );
        let sev = [Severity::HIGH, Severity::MEDIUM, Severity::LOW];
        EngineCounters {
            processed_packets: counter(
                r,
                "processed_packets_total",
                "Frames analyzed by the workers.",
            ),
            processed_bytes: counter(
                r,
                "processed_bytes_total",
                "Wire bytes of the frames analyzed.",
            ),
            decoded_packets: counter(
                r,
                "decoded_packets_total",
                "Frames decoded into flow packets.",
            ),
            skipped: Skip::ALL
                .iter()
                .map(|s| skipped.with_label_values(&[s.name()]))
                .collect(),
            first_fragments: counter(
                r,
                "first_fragments_total",
                "First IP fragments (counted toward their flow; later fragments are skipped).",
            ),
            flows_created: counter(r, "flows_created_total", "Flows created."),
            flows_resumed: counter(
                r,
                "flows_resumed_total",
                "Mid-stream TCP flows that continued an identified flow ended by idle timeout or eviction.",
            ),
            flows_restored: counter(
                r,
                "flows_restored_total",
                "Identified flows read back from the state file at start (--state-file).",
            ),
            ended_dropped: counter(
                r,
                "ended_flows_dropped_total",
                "Remembered ended flows dropped because the memory was full.",
            ),
            ended_expired: counter(
                r,
                "ended_flows_expired_total",
                "Remembered ended flows forgotten after the keep time, never continued.",
            ),
            flows_ended: EndReason::ALL
                .iter()
                .map(|e| (*e != EndReason::Active).then(|| ended.with_label_values(&[e.name()])))
                .collect(),
            flows_evicted: EvictionTier::ALL
                .iter()
                .map(|t| evicted.with_label_values(&[t.name()]))
                .collect(),
            interim_records: counter(
                r,
                "flow_interim_records_total",
                "Interim flow records of long-lived flows (active timeout).",
            ),
            app_records: counter(
                r,
                "app_records_total",
                "Application-layer records (ssh, dns, tls, http, stratum).",
            ),
            alerts: Detection::ALL
                .iter()
                .map(|d| sev.map(|s| alerts.with_label_values(&[d.id(), s.name()])))
                .collect(),
            alerts_suppressed: counter(
                r,
                "alerts_suppressed_total",
                "Findings not alerted because the same alert fired within the suppression window.",
            ),
            discovery_sources_dropped: counter(
                r,
                "discovery_sources_dropped_total",
                "Source hosts the internal-discovery detector let go before their window ended, to stay within its bound.",
            ),
            tunnels: counter(
                r,
                "tunnel_flows_total",
                "Flows that ended carried through a proxy (HTTP CONNECT, SOCKS, PROXY header), the protocol inside analyzed.",
            ),
            tunnels_unfollowed: counter(
                r,
                "tunnel_unfollowed_total",
                "Flows whose proxy handshake was not followed because of a bound (4 nested layers, 8 KiB sent before the proxy answered).",
            ),
            dns_tunnel_domains_dropped: counter(
                r,
                "dns_tunnel_domains_dropped_total",
                "(Client, domain) tallies the dns-tunnel detector let go before their window ended, to stay within its bounds.",
            ),
            incidents_opened: counter(
                r,
                "incidents_opened_total",
                "Incidents opened (a host's first alert, or its first after the incident window).",
            ),
            incidents_evicted: counter(
                r,
                "incidents_evicted_total",
                "Incidents closed before their window ended because the bound of open incidents was reached.",
            ),
        }
    }

    fn add(&self, a: &Stats, b: &Stats) {
        let d = |x: u64, y: u64| y.saturating_sub(x);
        self.processed_packets.inc_by(d(a.packets, b.packets));
        self.processed_bytes.inc_by(d(a.bytes, b.bytes));
        self.decoded_packets.inc_by(d(a.decoded, b.decoded));
        inc_each(&self.skipped, &a.skipped, &b.skipped);
        self.first_fragments
            .inc_by(d(a.first_fragments, b.first_fragments));
        self.flows_created
            .inc_by(d(a.flows_created, b.flows_created));
        self.flows_resumed
            .inc_by(d(a.flows_resumed, b.flows_resumed));
        self.flows_restored
            .inc_by(d(a.flows_restored, b.flows_restored));
        self.ended_dropped
            .inc_by(d(a.ended_dropped, b.ended_dropped));
        self.ended_expired
            .inc_by(d(a.ended_expired, b.ended_expired));
        for (i, c) in self.flows_ended.iter().enumerate() {
            if let Some(c) = c {
                c.inc_by(d(
                    a.flows_ended.get(i).copied().unwrap_or(0),
                    b.flows_ended.get(i).copied().unwrap_or(0),
                ));
            }
        }
        inc_each(&self.flows_evicted, &a.flows_evicted, &b.flows_evicted);
        self.interim_records
            .inc_by(d(a.ended(EndReason::Active), b.ended(EndReason::Active)));
        self.app_records.inc_by(d(a.app_events, b.app_events));
        for (det, counters) in self.alerts.iter().enumerate() {
            for (s, c) in counters.iter().enumerate() {
                let get = |st: &Stats| {
                    st.alerts
                        .get(det)
                        .and_then(|row| row.get(s))
                        .copied()
                        .unwrap_or(0)
                };
                c.inc_by(d(get(a), get(b)));
            }
        }
        self.alerts_suppressed
            .inc_by(d(a.alerts_suppressed, b.alerts_suppressed));
        self.discovery_sources_dropped
            .inc_by(d(a.discovery_sources_dropped, b.discovery_sources_dropped));
        self.tunnels.inc_by(d(a.tunnels, b.tunnels));
        self.tunnels_unfollowed
            .inc_by(d(a.tunnels_unfollowed, b.tunnels_unfollowed));
        self.dns_tunnel_domains_dropped.inc_by(d(
            a.dns_tunnel_domains_dropped,
            b.dns_tunnel_domains_dropped,
        ));
        self.incidents_opened
            .inc_by(d(a.incidents_opened, b.incidents_opened));
        self.incidents_evicted
            .inc_by(d(a.incidents_evicted, b.incidents_evicted));
    }
}

impl RuleMetrics {
    fn register(r: &Registry) -> RuleMetrics {
        let ts = Gauge::with_opts(Opts::new(
            name("rules_last_reload_success_timestamp_seconds"),
            "When the rules in force were loaded (Unix time).",
        ))
        .expect("valid metric");
        r.register(Box::new(ts.clone())).expect("unique metric");
        RuleMetrics {
            loaded: gauge(r, "rules_loaded", "1 when a rule set is in force."),
            reloads: counter(r, "rules_reloads_total", "Rule reloads attempted (SIGHUP)."),
            failures: counter(
                r,
                "rules_reload_failures_total",
                "Rule reloads that failed; the previous rules stayed in force.",
            ),
            last_successful: gauge(
                r,
                "rules_last_reload_successful",
                "1 if the last load or reload of the rules succeeded, else 0.",
            ),
            last_success_ts: ts,
            allow_entries: gauge(
                r,
                "rules_allow_entries",
                "Allow entries in the rules in force.",
            ),
            zones: gauge(r, "rules_zones", "Zones in the rules in force."),
        }
    }

    fn describe(&self, rules: &RuleSet) {
        self.allow_entries
            .set(i64::try_from(rules.allows().len()).unwrap_or(i64::MAX));
        self.zones
            .set(i64::try_from(rules.zones().len()).unwrap_or(i64::MAX));
    }
}

/// Tells where an SSH session went: inside the cluster, to an allowlisted
/// outside destination, or elsewhere outside. Judged with the rules in
/// force and the names the client resolved (the DNS name cache); allow
/// entries that need facts the record does not carry (a HASSH pin) do not
/// match here.
pub struct SshClassifier {
    rules: SharedRules,
    names: Arc<NameCache>,
}

impl SshClassifier {
    pub fn new(rules: SharedRules, names: Arc<NameCache>) -> SshClassifier {
        SshClassifier { rules, names }
    }

    pub fn classify(&self, meta: &FlowMeta, ts: Timestamp) -> SshDestination {
        let rules = self.rules.load();
        if rules.is_internal(meta.dest.addr) {
            return SshDestination::Internal;
        }
        let cached = self.names.lookup(meta.src.addr, meta.dest.addr, ts);
        let names: Vec<&str> = cached.iter().map(|n| &**n).collect();
        let subject = FlowSubject {
            app_proto: Some("ssh"),
            stage: Stage::Ended,
            names: &names,
            now: ts,
            ..FlowSubject::new(meta.flow_id, meta.src, meta.dest, meta.proto, ts)
        };
        if rules.judge(&subject).permitted {
            SshDestination::Allowlisted
        } else {
            SshDestination::External
        }
    }
}

/// The metrics of one replay for `--metrics-file`: records counted as
/// they are written, engine counters added at the end.
#[derive(Default)]
pub struct Tally {
    metrics: Metrics,
    classifier: Option<SshClassifier>,
}

impl Tally {
    /// Counts SSH sessions by destination with these rules and names.
    pub fn classify_with(&mut self, rules: SharedRules, names: Arc<NameCache>) {
        self.classifier = Some(SshClassifier::new(rules, names));
    }

    pub fn observe(&self, event: &Event) {
        self.metrics.observe_event(event, self.classifier.as_ref());
    }

    /// Adds the replay's final stats; `now` stamps the rules' load time.
    pub fn finish(&self, stats: &Stats, filtered: u64, now: Timestamp) -> &Metrics {
        let rules = self.classifier.as_ref().map(|c| c.rules.load_full());
        let secs = now.as_nanos() as f64 / 1e9;
        self.metrics
            .record_replay(stats, filtered, rules.as_deref(), secs);
        &self.metrics
    }
}

#[cfg(test)]
mod tests;
