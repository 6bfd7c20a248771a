//! The live sensor: capture threads (one per interface) spread frames by a
//! symmetric flow hash over worker threads (each owns an [`Engine`] and its
//! flow table, without locks), whose events go to one writer thread; a
//! small tokio runtime on the main thread serves HTTP and handles signals.
//!
//! ```text
//! iface ─ capture ─┬─ bounded queue ─ worker (Engine) ─┐
//!                  └─ bounded queue ─ worker (Engine) ─┴─ bounded ─ writer ─ EVE
//!                    (full: the capture waits, the ring holds)
//! ```
//!
//! Start-up order matters: the capture handles, the HTTP socket and the EVE
//! file are opened first, then every privilege is dropped (capabilities are
//! per thread, so before any thread starts), then the threads start.
//!
//! SIGHUP reloads the rules (built off the packet path, swapped atomically
//! for every worker; on error the old rules stay), re-reads the web config
//! file (TLS certificates, users; for the next connection; on error the
//! old one stays) and reopens the EVE file. The `--config` file is not
//! re-read: its settings size threads and tables at start.
//! SIGINT/SIGTERM stop capture, drain what the kernel holds, end every open
//! flow on every worker, flush the output and return (an error, if the
//! output failed and records were not written).
//!
//! An interface that cannot be opened at start stops the sensor (exit 69);
//! one that fails later is reopened by its capture thread with back-off
//! while the others go on, and `/-/ready` names it until it is back. That
//! holds for the only interface too: an appliance keeps trying.

mod afworker;
mod capture;
pub mod learn;
mod output;
pub mod privilege;
pub mod state_file;
mod worker;

pub use crate::source::batch::BATCH_FRAMES;
pub use output::{EveTarget, Lost};

use crate::analyzer::applayer::AppLayerConfig;
use crate::analyzer::names::NameCache;
use crate::engine::{Engine, EngineConfig};
use crate::judge::SharedRules;
use crate::metrics::{Metrics, SshClassifier};
use crate::policy::{self, RuleSet};
use crate::source::live::{capture_clock, LiveCapture, LiveOptions};
use crate::source::SourceError;
use crate::web::{self, Readiness};
use capture::CaptureThread;
use crossbeam_channel::Sender;
use prometheus::IntGauge;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The default `--web.listen-address`: a fixed port outside the
/// 9100-9999 range the exporter port registry has filled.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8463";

/// How frames get from the interfaces to the workers.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum CaptureMethod {
    /// libpcap, the fallback: a capture thread per interface decodes each
    /// frame and hands it to its flow's worker through a queue.
    Pcap,
    /// Linux AF_PACKET: every worker reads its own ring of each interface,
    /// the kernel's fanout program sharding the frames; no capture thread,
    /// no queue.
    #[default]
    AfPacket,
}

impl CaptureMethod {
    /// `pcap` or `af-packet`.
    pub fn parse(text: &str) -> Result<CaptureMethod, String> {
        match text {
            "pcap" => Ok(CaptureMethod::Pcap),
            "af-packet" => Ok(CaptureMethod::AfPacket),
            other => Err(format!("{other:?}: expected pcap or af-packet")),
        }
    }
}

/// Everything `egresswatch capture` is told.
#[derive(Clone, Debug)]
pub struct SensorConfig {
    pub interfaces: Vec<String>,
    pub capture_method: CaptureMethod,
    pub live: LiveOptions,
    /// Worker threads (see [`default_workers`]).
    pub workers: usize,
    /// Frames each worker's queue holds; beyond, the capture waits.
    pub queue_packets: usize,
    /// Per worker: `flow.capacity` is divided among the workers.
    pub engine: EngineConfig,
    /// `None`: the rules built into the binary.
    pub rules_dir: Option<PathBuf>,
    /// `None`: no EVE output; `-`: standard output.
    pub eve: Option<PathBuf>,
    /// `None`: no HTTP endpoint.
    pub listen: Option<String>,
    /// What HTTP clients can hold; `max_connections` is lowered to leave
    /// [`FD_RESERVE`] descriptors free.
    pub web: web::Limits,
    /// `--web.config.file`: TLS, basic auth, headers (exporter-toolkit
    /// format); `None`: plain HTTP for anyone.
    pub web_config: Option<PathBuf>,
    /// Switch to this user after opening the captures (needs root).
    pub user: Option<String>,
    /// `--learn FILE`: learn allow entries from the flows that end.
    pub learn: Option<(PathBuf, crate::learn::LearnConfig)>,
    /// App-layer options (the EVE DNS layout, ...).
    pub app_layer: AppLayerConfig,
    /// EVE `host` of every record (the binary defaults it to the host name).
    pub sensor_name: Option<String>,
    /// `--inventory FILE`: who the hosts are; reread on SIGHUP.
    pub inventory: Option<PathBuf>,
    /// How alerts are grouped into incidents.
    pub incidents: crate::hosts::incident::IncidentConfig,
    /// Where the state kept across a restart is read at start and written
    /// at stop ([`state_file`]).
    pub state_file: Option<PathBuf>,
}

/// With pcap, the cores left after one capture thread per interface; with
/// af-packet (the workers capture), every core. At least one.
pub fn default_workers(method: CaptureMethod, interfaces: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let capture_threads = match method {
        CaptureMethod::Pcap => interfaces,
        CaptureMethod::AfPacket => 0,
    };
    cores.saturating_sub(capture_threads).max(1)
}

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Config(String),
    #[error("the rules have errors; the sensor did not start:\n{0}")]
    Rules(String),
    #[error("dropping privileges: {0}")]
    Privileges(String),
    #[error(
        "{} EVE records could not be written at shutdown ({} lost in all); see the errors above",
        .0.at_shutdown, .0.total
    )]
    Unwritten(Lost),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl SensorError {
    /// sysexits-style codes, as the rest of the binary uses.
    pub fn exit_code(&self) -> u8 {
        match self {
            SensorError::Source(e) => e.exit_code(),
            SensorError::Config(_) | SensorError::Rules(_) => 78,
            SensorError::Privileges(_) => 77,
            SensorError::Io { .. } | SensorError::Unwritten(_) => 74,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SensorError {
    let what = what.into();
    move |source| SensorError::Io { what, source }
}

/// What `/-/ready` and `egresswatch_ready` report.
struct Health {
    /// Each interface with its `egresswatch_capture_up` gauge, which its
    /// capture thread keeps: the metric and `/-/ready` cannot disagree.
    captures: Vec<(String, IntGauge)>,
    rules_loaded: AtomicBool,
    stopping: AtomicBool,
}

impl Readiness for Health {
    fn ready(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        if !self.rules_loaded.load(Ordering::Relaxed) {
            return Err("no rules loaded".into());
        }
        let down: Vec<&str> = self
            .captures
            .iter()
            .filter(|(_, up)| up.get() != 1)
            .map(|(name, _)| name.as_str())
            .collect();
        if !down.is_empty() {
            return Err(format!(
                "capture down on {} (of {} interfaces)",
                down.join(", "),
                self.captures.len()
            ));
        }
        Ok(())
    }
}

/// Loads the rules directory, or the rules built into the binary.
pub fn load_rules(dir: Option<&std::path::Path>) -> Result<RuleSet, SensorError> {
    match policy::load_dir_or_shipped(dir, Some(capture_clock())).into_result() {
        Ok((rules, warnings)) => {
            if !warnings.is_empty() {
                tracing::warn!("rules loaded with warnings:\n{}", warnings.render());
            }
            Ok(rules)
        }
        Err(diags) => Err(SensorError::Rules(diags.render())),
    }
}

/// Reads `--inventory`; an error stops the sensor before it starts.
pub fn load_inventory(
    path: Option<&std::path::Path>,
) -> Result<crate::inventory::Inventory, SensorError> {
    match path {
        None => Ok(Default::default()),
        Some(p) => crate::inventory::Inventory::load(p)
            .map_err(|e| SensorError::Config(format!("{e}; the sensor did not start"))),
    }
}

/// Runs the sensor until SIGINT or SIGTERM (`Ok`); an interface lost on
/// the way is reopened, not fatal.
pub fn run(cfg: SensorConfig) -> Result<(), SensorError> {
    if cfg.interfaces.is_empty() {
        return Err(SensorError::Config("give at least one --interface".into()));
    }
    if let Some(expr) = &cfg.live.filter {
        // Our own compiler first: a bad expression is a usage error (64).
        crate::source::bpf::BpfFilter::new(expr).map_err(SourceError::from)?;
    }
    let workers = cfg.workers.max(1);
    let web_limits = web::Limits {
        max_connections: connection_budget(cfg.web.max_connections, raise_fd_limit()),
        ..cfg.web
    };
    let rules = load_rules(cfg.rules_dir.as_deref())?;
    let inventory = load_inventory(cfg.inventory.as_deref())?;
    let web_config = load_web_config(cfg.web_config.as_deref())?;
    // Random per run, so an outsider cannot aim flows at one worker.
    let shard_seed = ahash::RandomState::new().hash_one(0u8) as u32;
    let captures = Captures::open(&cfg, workers, shard_seed)?;
    let listener = match &cfg.listen {
        Some(addr) => {
            Some(crate::web::bind(addr).map_err(io_err(format!("--web.listen-address {addr}")))?)
        }
        None => None,
    };
    let target = EveTarget::open(cfg.eve.as_deref()).map_err(io_err(format!(
        "{}: cannot open EVE output",
        cfg.eve
            .as_deref()
            .unwrap_or(std::path::Path::new("-"))
            .display()
    )))?;
    if let Some(name) = &cfg.user {
        let user = privilege::lookup(name).map_err(SensorError::Privileges)?;
        target
            .give_to(user.uid, user.gid)
            .map_err(io_err("handing the EVE output to --user"))?;
    }
    let dropped =
        privilege::drop_privileges(cfg.user.as_deref()).map_err(SensorError::Privileges)?;
    tracing::info!(
        user = dropped.user.as_deref().unwrap_or("(unchanged)"),
        bounding_set_cleared = dropped.bounding_cleared,
        net_raw_kept_for_reopening = dropped.kept_net_raw,
        "privileges dropped"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the runtime"))?;
    let sensor = Running::start(
        &cfg, workers, shard_seed, rules, inventory, captures, target,
    )?;
    let result = runtime.block_on(sensor.control(listener, web_limits, web_config, &cfg));
    let lost = sensor.stop();
    // A capture failure says more (and has its own code) than the loss.
    result?;
    if lost.at_shutdown > 0 {
        return Err(SensorError::Unwritten(lost));
    }
    Ok(())
}

/// The state file's flows, each on the worker that will see its packets
/// (the capture threads shard with the same hasher); its names go into the
/// cache. Empty without `--state-file` or when there is nothing to take.
fn restored_flows(
    cfg: &SensorConfig,
    names: &NameCache,
    workers: usize,
    seed: u32,
) -> Vec<Vec<crate::engine::SavedFlow>> {
    let mut parts = vec![Vec::new(); workers];
    let Some(state) = cfg.state_file.as_deref().and_then(state_file::load) else {
        return parts;
    };
    names.restore(&state.names, state.saved_at);
    let sharder = crate::flow::shard::Sharder::new(workers, seed);
    for flow in state.flows {
        let w = sharder.worker_of_key(&flow.flow.key);
        parts[w].push(flow);
    }
    parts
}

/// The captures, opened before privileges are dropped.
enum Captures {
    Pcap(Vec<LiveCapture>),
    AfPacket(Vec<afworker::Interface>),
}

impl Captures {
    fn open(cfg: &SensorConfig, workers: usize, seed: u32) -> Result<Captures, SourceError> {
        Ok(match cfg.capture_method {
            CaptureMethod::Pcap => Captures::Pcap(
                cfg.interfaces
                    .iter()
                    .map(|iface| LiveCapture::open(iface, &cfg.live))
                    .collect::<Result<_, _>>()?,
            ),
            CaptureMethod::AfPacket => {
                Captures::AfPacket(afworker::open(&cfg.interfaces, &cfg.live, workers, seed)?)
            }
        })
    }
}

/// The threads of a started sensor and what they share.
struct Running {
    metrics: Metrics,
    rules: SharedRules,
    inventory: crate::inventory::SharedInventory,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    captures: Vec<(String, JoinHandle<()>)>,
    workers: Vec<JoinHandle<worker::Saved>>,
    writer: Option<JoinHandle<Lost>>,
    /// `--state-file`, and the name cache it keeps.
    state_file: Option<PathBuf>,
    names: Arc<NameCache>,
}

impl Running {
    /// Starts the threads that capture first (capture threads, or with
    /// af-packet the workers), while this thread still holds a permitted
    /// CAP_NET_RAW for them to inherit, gives it up, then starts the rest
    /// without it.
    fn start(
        cfg: &SensorConfig,
        workers: usize,
        shard_seed: u32,
        rules: RuleSet,
        inventory: crate::inventory::Inventory,
        captures: Captures,
        target: EveTarget,
    ) -> Result<Running, SensorError> {
        let metrics = Metrics::new().with_process_collector();
        metrics.rules_loaded(&rules, now_secs());
        let rules: SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
        let inventory = crate::inventory::shared(inventory);
        let names = Arc::new(NameCache::default());
        let counters: Vec<_> = cfg.interfaces.iter().map(|i| metrics.capture(i)).collect();
        let health = Arc::new(Health {
            captures: cfg
                .interfaces
                .iter()
                .zip(&counters)
                .map(|(i, n)| (i.clone(), n.up.clone()))
                .collect(),
            rules_loaded: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        let engines = Self::engines(cfg, workers, shard_seed, &metrics, &rules, &names);
        let (event_tx, event_rx) = crossbeam_channel::bounded(16_384);
        let (capture_handles, queued, mut worker_handles) = match captures {
            Captures::Pcap(captures) => {
                let (threads, workers) = Self::start_queued(
                    cfg, shard_seed, captures, counters, engines, &event_tx, &metrics, &stop,
                );
                (threads, workers, Vec::new())
            }
            Captures::AfPacket(interfaces) => {
                metrics.workers(workers, 0);
                let handles = afworker::spawn(afworker::Start {
                    interfaces,
                    counters,
                    engines,
                    events: event_tx.clone(),
                    metrics: metrics.clone(),
                    stop: stop.clone(),
                    block_timeout: Duration::from_millis(u64::from(cfg.live.read_timeout_ms)),
                });
                (Vec::new(), Vec::new(), handles)
            }
        };
        drop(event_tx);
        if let Err(e) = privilege::release_net_raw() {
            stop.store(true, Ordering::Relaxed);
            return Err(SensorError::Privileges(e));
        }
        // Queue workers never open a capture: they start without CAP_NET_RAW.
        for (w, worker) in queued.into_iter().enumerate() {
            worker_handles.push(spawn(&format!("ew-worker-{w}"), move || worker.run()));
        }

        let learn = match &cfg.learn {
            Some((path, c)) => {
                let file =
                    learn::LearnFile::new(path.clone(), c.clone(), rules.clone(), &cfg.interfaces);
                // A first (empty) file now: a directory the sensor cannot
                // write to is an error at start, not five minutes later.
                if let Err(e) = file.write_now() {
                    stop.store(true, Ordering::Relaxed);
                    return Err(io_err(format!("--learn {}", path.display()))(e));
                }
                Some(file)
            }
            None => None,
        };
        let writer = output::Writer {
            learn,
            rx: event_rx,
            target,
            metrics: metrics.clone(),
            ssh: SshClassifier::new(rules.clone(), names.clone()),
            reopen: reopen.clone(),
            stamp: crate::eve::Stamp {
                host: cfg.sensor_name.clone(),
                inputs: crate::eve::Inputs::Interfaces(cfg.interfaces.clone()),
            },
            hosts: crate::hosts::HostStage::new(rules.clone())
                .with_incidents(cfg.incidents)
                .with_inventory(inventory.clone()),
        };
        let writer = spawn("ew-writer", move || writer.run());
        tracing::info!(
            interfaces = ?cfg.interfaces,
            capture_method = ?cfg.capture_method,
            workers,
            flow_capacity_per_worker = (cfg.engine.flow.capacity / workers).max(1),
            "sensor started"
        );
        Ok(Running {
            metrics,
            rules,
            inventory,
            health,
            stop,
            reopen,
            captures: capture_handles,
            workers: worker_handles,
            writer: Some(writer),
            state_file: cfg.state_file.clone(),
            names,
        })
    }

    /// One engine per worker, each holding its share of the flow capacity
    /// and of the state file's flows.
    fn engines(
        cfg: &SensorConfig,
        workers: usize,
        shard_seed: u32,
        metrics: &Metrics,
        rules: &SharedRules,
        names: &Arc<NameCache>,
    ) -> Vec<Engine> {
        let mut restored = restored_flows(cfg, names, workers, shard_seed);
        let mut engine_cfg = cfg.engine.clone();
        engine_cfg.flow.capacity = (cfg.engine.flow.capacity / workers).max(1);
        metrics.set_flow_table_capacity(engine_cfg.flow.capacity * workers);
        let protocols: Arc<[_]> =
            Arc::from(crate::analyzer::registry(names.clone(), &cfg.app_layer));
        (0..workers)
            .map(|w| {
                let mut engine = Engine::analyzing(
                    engine_cfg.clone(),
                    protocols.clone(),
                    rules.clone(),
                    names.clone(),
                );
                if cfg.state_file.is_some() {
                    engine = engine.saving_at_finish();
                    engine.restore(std::mem::take(&mut restored[w]));
                }
                engine
            })
            .collect()
    }

    /// `--capture-method pcap`: starts a capture thread per interface,
    /// sharding into the queues of the workers it returns (not started).
    #[allow(clippy::too_many_arguments)]
    fn start_queued(
        cfg: &SensorConfig,
        shard_seed: u32,
        captures: Vec<LiveCapture>,
        counters: Vec<crate::metrics::CaptureCounters>,
        engines: Vec<Engine>,
        event_tx: &Sender<crate::event::Event>,
        metrics: &Metrics,
        stop: &Arc<AtomicBool>,
    ) -> (Vec<(String, JoinHandle<()>)>, Vec<worker::Worker>) {
        let workers = engines.len();
        let queue_batches = capture::queue_batches(cfg.queue_packets);
        let depth = metrics.workers(workers, queue_batches * BATCH_FRAMES);
        // One return channel per capture thread, each sized for its pool.
        let pool = capture::pool_size(workers, queue_batches);
        let returns: Vec<_> = captures
            .iter()
            .map(|_| crossbeam_channel::bounded(pool))
            .collect();
        let return_to: Vec<Sender<_>> = returns.iter().map(|(tx, _)| tx.clone()).collect();
        let (to_workers, from_captures): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| crossbeam_channel::bounded(queue_batches))
            .unzip();
        let sharder = crate::flow::shard::Sharder::new(workers, shard_seed);
        let mut capture_handles = Vec::new();
        for (id, ((capture, ret), counters)) in
            captures.into_iter().zip(returns).zip(counters).enumerate()
        {
            let iface = capture.interface().to_string();
            let t = CaptureThread::new(
                id,
                capture,
                cfg.live.clone(),
                sharder.clone(),
                to_workers.clone(),
                depth.clone(),
                queue_batches,
                counters,
                stop.clone(),
                ret,
            );
            capture_handles.push((iface, spawn(&format!("ew-cap-{id}"), move || t.run())));
        }
        drop(to_workers);
        let queued = engines
            .into_iter()
            .zip(from_captures)
            .zip(depth)
            .map(|((engine, rx), queue_depth)| worker::Worker {
                engine,
                rx,
                returns: return_to.clone(),
                events: worker::ChannelSink(event_tx.clone()),
                metrics: metrics.clone(),
                queue_depth,
            })
            .collect();
        (capture_handles, queued)
    }

    /// Serves HTTP and handles signals until asked to stop.
    async fn control(
        &self,
        listener: Option<std::net::TcpListener>,
        limits: web::Limits,
        web_config: web::SharedWebConfig,
        cfg: &SensorConfig,
    ) -> Result<(), SensorError> {
        use tokio::signal::unix::{signal, SignalKind};
        let sig = |k: SignalKind| signal(k).map_err(io_err("installing signal handlers"));
        let (mut hup, mut term, mut int) = (
            sig(SignalKind::hangup())?,
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
        );
        let (web_stop, web_stopped) = tokio::sync::oneshot::channel::<()>();
        let web_task = listener.map(|l| {
            let app = web::router(self.metrics.clone(), self.health.clone());
            let addr = l.local_addr().ok();
            tracing::info!(address = ?addr, max_connections = limits.max_connections, "serving /metrics");
            let registry = self.metrics.registry().clone();
            let web_config = web_config.clone();
            tokio::spawn(async move {
                let stopped = async {
                    let _ = web_stopped.await;
                };
                web::serve(l, app, limits, web_config, &registry, stopped).await
            })
        });
        let mut check = tokio::time::interval(Duration::from_millis(200));
        let result = loop {
            self.metrics.set_ready(self.health.ready().is_ok());
            tokio::select! {
                _ = hup.recv() => {
                    self.reload(cfg.rules_dir.as_deref()).await;
                    self.reload_inventory(cfg.inventory.as_deref()).await;
                    reload_web_config(&web_config, cfg.web_config.as_deref()).await;
                }
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break Ok(()) }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); break Ok(()) }
                // Keeps egresswatch_ready current with the captures.
                _ = check.tick() => {}
            }
        };
        self.health.stopping.store(true, Ordering::Relaxed);
        self.metrics.set_ready(false);
        let _ = web_stop.send(());
        if let Some(task) = web_task {
            match tokio::time::timeout(Duration::from_secs(2), task).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server"),
                Err(_) => tracing::warn!("HTTP server did not stop in time"),
                _ => {}
            }
        }
        result
    }

    /// SIGHUP: new rules built off the packet path and swapped in for
    /// every worker at once; on error the old rules stay. Also reopens the
    /// EVE file.
    async fn reload(&self, dir: Option<&std::path::Path>) {
        self.reopen.store(true, Ordering::Relaxed);
        let Some(dir) = dir.map(std::path::Path::to_path_buf) else {
            tracing::info!("SIGHUP: rules are built in (no --rules); nothing to reload");
            return;
        };
        let current = self.rules.load_full();
        let shown = dir.display().to_string();
        let outcome = tokio::task::spawn_blocking(move || {
            policy::reload(&current, &dir, Some(capture_clock()))
        })
        .await;
        let Ok((rules, diags, ok)) = outcome else {
            tracing::error!(dir = %shown, "rules reload panicked; the previous rules stay in force");
            self.metrics
                .rules_reloaded(false, &self.rules.load(), now_secs());
            return;
        };
        if ok {
            self.rules.store(rules.clone());
            if diags.is_empty() {
                tracing::info!(dir = %shown, "rules reloaded");
            } else {
                tracing::warn!(dir = %shown, "rules reloaded with warnings:\n{}", diags.render());
            }
        } else {
            tracing::error!(
                dir = %shown,
                "rules reload failed; the previous rules stay in force:\n{}",
                diags.render()
            );
        }
        self.metrics.rules_reloaded(ok, &rules, now_secs());
    }

    /// SIGHUP: the inventory file read again off the packet path and
    /// swapped in whole; a file with errors is reported (file:line) and
    /// the previous inventory stays.
    async fn reload_inventory(&self, path: Option<&std::path::Path>) {
        let Some(path) = path.map(std::path::Path::to_path_buf) else {
            return;
        };
        let shown = path.display().to_string();
        let shared = self.inventory.clone();
        let outcome =
            tokio::task::spawn_blocking(move || crate::inventory::reload(&shared, &path)).await;
        match outcome {
            Ok(Ok(entries)) => tracing::info!(file = %shown, entries, "inventory reloaded"),
            Ok(Err(e)) => tracing::error!(
                "inventory reload failed; the previous inventory stays in force: {e}"
            ),
            Err(_) => tracing::error!(
                file = %shown,
                "inventory reload panicked; the previous inventory stays in force"
            ),
        }
    }

    /// Stops capture, lets every worker end its flows, flushes the output;
    /// returns the records that could not be written.
    fn stop(mut self) -> Lost {
        self.stop.store(true, Ordering::Relaxed);
        for (iface, h) in self.captures.drain(..) {
            match h.join() {
                Ok(()) => tracing::info!(interface = %iface, "capture stopped"),
                Err(_) => tracing::error!(interface = %iface, "capture thread panicked"),
            }
        }
        let mut state = crate::state::State::default();
        for h in self.workers.drain(..) {
            match h.join() {
                Ok((flows, now)) => {
                    state.flows.extend(flows);
                    state.saved_at = state.saved_at.max(now);
                }
                Err(_) => tracing::error!("worker thread panicked"),
            }
        }
        if let Some(path) = &self.state_file {
            state.names = self.names.saved();
            state_file::save_logged(path, &state);
        }
        let lost = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(lost)) => lost,
            Some(Err(_)) => {
                tracing::error!("writer thread panicked");
                Lost::default()
            }
            None => Lost::default(),
        };
        if lost.at_shutdown > 0 {
            tracing::error!(
                lost_at_shutdown = lost.at_shutdown,
                lost_in_all = lost.total,
                "sensor stopped; the EVE output failed and {} records were not written at shutdown",
                lost.at_shutdown
            );
        } else if lost.total > 0 {
            tracing::warn!(
                lost_in_all = lost.total,
                "sensor stopped; every open flow was flushed, but {} EVE records were lost earlier while the output failed",
                lost.total
            );
        } else {
            tracing::info!("sensor stopped; every flow was flushed");
        }
        lost
    }
}

/// Descriptors kept free of HTTP connections for everything else the
/// sensor opens: the captures, the EVE file and its reopening, the rules
/// directory and files on reload, `/proc` for the process metrics, the
/// runtime's own (about 20 with one interface).
pub const FD_RESERVE: u64 = 128;

/// Raises the soft limit on open descriptors to the hard one; returns the
/// soft limit in force.
/// The `--web.config.file`, read before privileges are dropped (the key
/// may be readable by root only); an error stops the sensor (exit 78).
fn load_web_config(path: Option<&std::path::Path>) -> Result<web::SharedWebConfig, SensorError> {
    let config = match path {
        Some(path) => web::config::load(path).map_err(|d| {
            SensorError::Config(format!(
                "{d}the web config file `{}` has errors; the sensor did not start",
                path.display()
            ))
        })?,
        None => web::WebConfig::default(),
    };
    Ok(Arc::new(arc_swap::ArcSwap::from_pointee(config)))
}

/// SIGHUP: the web config file again (new certificates, users), for the
/// connections from now on; on error the current one stays.
async fn reload_web_config(current: &web::SharedWebConfig, path: Option<&std::path::Path>) {
    let Some(path) = path.map(std::path::Path::to_path_buf) else {
        return;
    };
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || web::config::load(&path)).await {
        Ok(Ok(config)) => {
            current.store(Arc::new(config));
            tracing::info!(file = %shown, "web config reloaded");
        }
        Ok(Err(diags)) => tracing::error!(
            file = %shown,
            "web config reload failed; the previous one stays in force:\n{}",
            diags.render()
        ),
        Err(_) => {
            tracing::error!(file = %shown, "web config reload panicked; the previous one stays")
        }
    }
}

fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return u64::MAX;
    };
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            return soft;
        }
    }
    tracing::debug!(limit = hard, "open-file limit");
    hard
}

/// `wanted` HTTP connections, lowered so that [`FD_RESERVE`] descriptors
/// stay free under `fd_limit`.
fn connection_budget(wanted: usize, fd_limit: u64) -> usize {
    let room = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::warn!(
            wanted,
            allowed = room.max(1),
            fd_limit,
            reserve = FD_RESERVE,
            "--web.max-connections lowered to keep descriptors for rules and output"
        );
    }
    wanted.min(room).max(1)
}

fn spawn<F: FnOnce() -> T + Send + 'static, T: Send + 'static>(name: &str, f: F) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .unwrap_or_else(|e| panic!("cannot start thread {name}: {e}"))
}

fn now_secs() -> f64 {
    capture_clock().as_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_names_every_interface_that_is_down() {
        let metrics = Metrics::new();
        let (a, b) = (metrics.capture("eth1"), metrics.capture("eth2"));
        let health = Health {
            captures: vec![("eth1".into(), a.up.clone()), ("eth2".into(), b.up.clone())],
            rules_loaded: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
        };
        assert_eq!(
            health.ready(),
            Err("capture down on eth1, eth2 (of 2 interfaces)".into())
        );
        a.up.set(1);
        b.up.set(1);
        assert_eq!(health.ready(), Ok(()));
        b.up.set(0);
        assert_eq!(
            health.ready(),
            Err("capture down on eth2 (of 2 interfaces)".into())
        );
        health.stopping.store(true, Ordering::Relaxed);
        assert_eq!(health.ready(), Err("shutting down".into()));
    }
}
