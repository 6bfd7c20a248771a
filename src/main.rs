//! The egresswatch binary: argument parsing, file and terminal I/O, exit
//! codes. Everything else is in the library.

mod cli;
mod config;
mod learn_cmd;
mod report;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{
    AnalysisArgs, CaptureArgs, CheckRulesArgs, Cli, Command, CompareFormat, DemoArgs, ExplainArgs,
    GenerateArgs, LogFormat, ReplayArgs,
};
use egresswatch::analyzer::names::NameCache;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::eve::{EveWriter, Inputs, Stamp, Target};
use egresswatch::event::{Event, EventSink};
use egresswatch::flow::{FlowConfig, TimeoutClass};
use egresswatch::judge::SharedRules;
use egresswatch::policy::{self, RuleSet, Severity};
use egresswatch::sensor::state_file;
use egresswatch::source::bpf::{BpfFilter, Filtered};
use egresswatch::source::file::ReplaySource;
use egresswatch::source::{SelectSource, SourceError};
use egresswatch::state::State;
use egresswatch::stats::Stats;
use egresswatch::time::Timestamp;
use egresswatch::trial::Trial;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Flow tracking allocates per flow (analysis state, records); mimalloc
/// is markedly faster than glibc's allocator for that pattern. The
/// `system-alloc` feature keeps the system allocator, so heap profilers
/// that wrap `malloc` (heaptrack, massif) see every allocation.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (documented in the README).
mod exit {
    pub const RUNTIME: u8 = 1;
    pub const ALERTS: u8 = 3;
    pub const CONFIG: u8 = 78;
}

fn main() -> ExitCode {
    let argv = match config::merged_args::<Cli>(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            eprintln!("egresswatch: the --config file has errors; nothing was started");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let cli = Cli::parse_from(argv);
    init_logging(cli.log_format, &cli.log_level);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("egresswatch: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Replay(args) => replay(args),
        Command::Capture(args) => capture(args),
        Command::Demo(args) => demo(args),
        Command::Generate(args) => generate(args),
        Command::CheckRules(args) => check_rules(args),
        Command::Explain(args) => explain(args),
        Command::Man(args) => man(args),
        Command::Completions(args) => completions(args),
        Command::Learn(args) => learn_cmd::learn(args),
    }
}

/// The manual pages, generated from the command-line definitions.
fn man(args: cli::ManArgs) -> Result<ExitCode> {
    use clap::CommandFactory;
    let dir = &args.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("{}: cannot write the manual pages", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// A shell's completion script, generated from the command-line definitions.
fn completions(args: cli::CompletionsArgs) -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut out = io::stdout().lock();
    clap_complete::generate(args.shell, &mut Cli::command(), "egresswatch", &mut out);
    Ok(ExitCode::SUCCESS)
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<SourceError>() {
        return e.exit_code();
    }
    if err.downcast_ref::<ConfigError>().is_some() {
        return exit::CONFIG;
    }
    exit::RUNTIME
}

/// A command-line setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConfigError(String);

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a log file or the journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let fail_on = args
        .fail_on
        .as_deref()
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| ConfigError(format!("--fail-on {s}: {e}")))
        })
        .transpose()?;
    let trial = match &args.compare.compare_rules {
        Some(dir) => Some(Trial::comparing(
            Arc::new(load_rules(Some(dir))?),
            args.analysis.community_id_seed,
        )),
        None => None,
    };
    let source = ReplaySource::open(&args.files)?;
    let stamp = replay_stamp(&args.files, &args.analysis);
    let mut out = Output::open(args.analysis.eve.as_deref(), false, stamp)?;
    out.alert_lines = !args.quiet && trial.is_none();
    if args.metrics_file.is_some() {
        out.tally = Some(egresswatch::metrics::Tally::default());
    }
    let inventory = load_inventory(args.analysis.inventory.as_deref())?;
    let threads = args.threads.map(usize::from);
    let mut outcome = analyze(source, &args.analysis, inventory, &mut out, trial, threads)?;
    let worst = out.worst;
    if let (Some(path), Some(tally)) = (&args.metrics_file, &out.tally) {
        let metrics = tally.finish(&outcome.stats, outcome.filtered, wall_clock());
        metrics.set_incidents_open(&outcome.open_incidents);
        metrics
            .write_textfile(path)
            .with_context(|| format!("{}: cannot write metrics", path.display()))?;
    }
    let (_, incidents) = out.finish()?;
    if !args.quiet {
        report::incidents(&mut io::stderr().lock(), &incidents)?;
        report::summary(
            &mut io::stderr().lock(),
            &outcome.stats,
            outcome.filtered,
            outcome.elapsed,
        )?;
    }
    if let (Some(trial), Some(old)) = (outcome.trial.take(), &args.compare.compare_rules) {
        // Reported even when the capture ended in an error, as the alerts are.
        let code = compare_report(trial, &outcome.rules, &args, old, fail_on)?;
        outcome.result?;
        return Ok(code);
    }
    outcome.result?;
    match (fail_on, worst) {
        (Some(threshold), Some(worst)) if worst.meets(threshold) => {
            Ok(ExitCode::from(exit::ALERTS))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints the `--compare-rules` report; the exit code says whether an
/// alert changed (docs/RULES.md, "Trying rules before they ship").
fn compare_report(
    trial: Trial,
    new_rules: &RuleSet,
    args: &ReplayArgs,
    old: &Path,
    fail_on: Option<Severity>,
) -> Result<ExitCode> {
    use egresswatch::trial::report;
    let new_name = args.analysis.rules.as_deref().map_or_else(
        || "(built-in rules)".to_string(),
        |p| p.display().to_string(),
    );
    let old_name = old.display().to_string();
    let names = report::Names {
        new: &new_name,
        old: &old_name,
    };
    let trial = trial.report();
    let mut stdout = io::stdout().lock();
    match args.compare.compare_format {
        CompareFormat::Text => write!(stdout, "{}", report::text(&trial, new_rules, names))?,
        CompareFormat::Json => writeln!(stdout, "{}", report::json(&trial, new_rules, names))?,
    }
    stdout.flush()?;
    let Some(c) = &trial.comparison else {
        return Ok(ExitCode::SUCCESS);
    };
    let failed = match fail_on {
        Some(threshold) => c.appears_at(threshold),
        None => c.changed(),
    };
    Ok(if failed {
        ExitCode::from(exit::ALERTS)
    } else {
        ExitCode::SUCCESS
    })
}

/// The live sensor (`egresswatch::sensor`); returns at SIGINT/SIGTERM.
fn capture(args: CaptureArgs) -> Result<ExitCode> {
    let engine = engine_config(&args.analysis)?;
    let app_layer = app_layer(&args.analysis);
    let a = args.analysis;
    let live = egresswatch::source::live::LiveOptions {
        snaplen: args.snaplen,
        promiscuous: !args.no_promiscuous,
        buffer_bytes: args.buffer_mib.saturating_mul(1 << 20),
        immediate: args.immediate_mode,
        filter: a.bpf,
        ..Default::default()
    };
    let listen = Some(args.web_listen_address).filter(|s| s != "none");
    let cfg = egresswatch::sensor::SensorConfig {
        workers: args.workers.unwrap_or_else(|| {
            egresswatch::sensor::default_workers(args.capture_method, args.interfaces.len())
        }),
        interfaces: args.interfaces,
        capture_method: args.capture_method,
        live,
        queue_packets: args.queue_packets,
        engine,
        rules_dir: a.rules,
        eve: a.eve,
        listen,
        web: egresswatch::web::Limits {
            max_connections: args.web_max_connections as usize,
            read_header_timeout: args.web_read_header_timeout,
            write_timeout: args.web_write_timeout,
        },
        web_config: args.web_config_file,
        user: args.user,
        learn: match args.learn {
            Some(path) => Some((path, learn_cmd::config(&args.learn_filters)?)),
            None => None,
        },
        app_layer,
        sensor_name: Some(sensor_name(a.sensor_name)),
        inventory: a.inventory,
        incidents: incident_config(a.incident_window_seconds, a.max_incidents),
        state_file: a.state_file,
    };
    match egresswatch::sensor::run(cfg) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("egresswatch: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

fn check_rules(args: CheckRulesArgs) -> Result<ExitCode> {
    let loaded = policy::load_dir(&args.dir, Some(wall_clock()));
    let usable = loaded
        .rules
        .as_ref()
        .filter(|_| !loaded.diagnostics.has_errors());
    let usage = match (usable, args.captures.is_empty()) {
        (Some(rules), false) => Some(capture_usage(rules, &args.captures)?),
        _ => None,
    };
    let names: Vec<String> = args
        .captures
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let names = names.join(", ");
    let evidence = usage.as_ref().map(|u| (u, names.as_str()));
    let report = policy::check_loaded(loaded, evidence);
    print!("{}", report.text);
    Ok(ExitCode::from(report.exit_code))
}

/// Drops every event (`check-rules --capture` wants only the usage).
struct Discard;

impl EventSink for Discard {
    fn event(&mut self, _: Event) {}
}

/// Replays `files` under `rules` and returns which entries each flow
/// used (`check-rules --capture`).
fn capture_usage(rules: &RuleSet, files: &[std::path::PathBuf]) -> Result<policy::Usage> {
    let mut source = ReplaySource::open(files)?;
    let config = EngineConfig::default();
    let seed = config.community_seed;
    let rules: SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(rules.clone()));
    let names = Arc::new(egresswatch::analyzer::names::NameCache::default());
    let protocols = egresswatch::analyzer::registry(
        names.clone(),
        &egresswatch::analyzer::applayer::AppLayerConfig::default(),
    );
    let mut engine = Engine::analyzing(config, Arc::from(protocols), rules, names)
        .with_trial(Trial::usage_only(seed));
    let mut sink = Discard;
    egresswatch::driver::sharded::run_alone(&mut source, &mut engine, &mut sink)?;
    let trial = engine.take_trial().map(Trial::report);
    Ok(trial.map(|t| t.usage).unwrap_or_default())
}

fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let rules = load_rules(args.rules.as_deref())?;
    let mut q = policy::ExplainQuery::new(
        args.from,
        args.to.ip(),
        args.to.port(),
        &args.protocol,
        wall_clock(),
    )
    .map_err(ConfigError)?;
    q.names = args.names;
    q.hassh = args.hassh;
    q.hassh_server = args.hassh_server;
    let inventory = load_inventory(args.inventory.as_deref())?;
    if let Some(w) = inventory.lookup(args.from) {
        println!("source {}: {}", args.from, w.describe());
    } else if args.inventory.is_some() {
        println!("source {}: not in the inventory", args.from);
    }
    print!("{}", policy::explain(&rules, &q));
    Ok(ExitCode::SUCCESS)
}

/// "Now" for rule expiry warnings and `explain`: the wall clock, read at
/// the binary's edge (the live source's clock).
fn wall_clock() -> Timestamp {
    egresswatch::source::live::capture_clock()
}

/// Loads a rules directory, or the built-in rules; every problem is
/// reported (exit 78).
fn load_rules(dir: Option<&Path>) -> Result<RuleSet> {
    match policy::load_dir_or_shipped(dir, Some(wall_clock())).into_result() {
        Ok((rules, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{warnings}");
            }
            Ok(rules)
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            Err(ConfigError("the rules have errors; nothing was analyzed".into()).into())
        }
    }
}

/// The demo capture, made by `egresswatch generate demo` and built into
/// the binary (a test keeps it equal to what the generator makes).
const DEMO_PCAP: &[u8] = include_bytes!("gen/demo.pcap");

/// Who the demo's hosts are, unless `--inventory` says otherwise.
const DEMO_INVENTORY: &str = include_str!("gen/demo_inventory.csv");

/// The fleet fields of a replay's records: `pcap_filename` names the file
/// replayed, or of several the one a record's flow began in.
fn replay_stamp(files: &[PathBuf], analysis: &AnalysisArgs) -> Stamp {
    let name = |f: &PathBuf| match f == Path::new("-") {
        true => String::new(),
        false => f.display().to_string(),
    };
    let inputs = match files {
        [one] if one != Path::new("-") => Inputs::File(name(one)),
        [_] => Inputs::Unnamed,
        several => Inputs::Files(several.iter().map(name).collect()),
    };
    Stamp {
        host: Some(sensor_name(analysis.sensor_name.clone())),
        inputs,
    }
}

fn demo(args: DemoArgs) -> Result<ExitCode> {
    let reader: Box<dyn io::Read + Send> = Box::new(io::Cursor::new(DEMO_PCAP));
    let source = ReplaySource::from_readers([("demo.pcap".to_string(), reader)]);
    let stamp = Stamp {
        host: Some(sensor_name(args.analysis.sensor_name.clone())),
        inputs: Inputs::File("demo.pcap".into()),
    };
    let mut out = Output::open(args.analysis.eve.as_deref(), !args.quiet, stamp)?;
    let inventory = match &args.analysis.inventory {
        Some(path) => load_inventory(Some(path))?,
        None => egresswatch::inventory::Inventory::parse("demo_inventory.csv", DEMO_INVENTORY)?,
    };
    let outcome = analyze(source, &args.analysis, inventory, &mut out, None, None)?;
    let (events, incidents) = out.finish()?;
    // Standard output carries only EVE when it is the EVE output, so
    // `demo --eve - | jq` works.
    let eve_on_stdout = args.analysis.eve.as_deref() == Some(Path::new("-"));
    match (args.quiet, eve_on_stdout) {
        (true, _) => {}
        (false, true) => report::demo(
            &mut io::stderr().lock(),
            &events,
            &incidents,
            &outcome.stats,
        )?,
        (false, false) => report::demo(
            &mut io::stdout().lock(),
            &events,
            &incidents,
            &outcome.stats,
        )?,
    }
    outcome.result?;
    Ok(ExitCode::SUCCESS)
}

fn generate(args: GenerateArgs) -> Result<ExitCode> {
    use egresswatch::gen::{CaptureFormat, GenOptions, TsPrecision};
    let opts = GenOptions {
        seed: args.seed,
        packets: args.packets,
        flows: args.flows,
        format: if args.pcapng {
            CaptureFormat::Pcapng(TsPrecision::Micro)
        } else {
            CaptureFormat::Pcap(TsPrecision::Micro)
        },
    };
    let file = File::create(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let w = BufWriter::with_capacity(1 << 20, file);
    let summary = egresswatch::gen::generate(&args.scenario, &opts, w).map_err(|e| match e {
        egresswatch::gen::GenError::UnknownScenario(_) => {
            anyhow::Error::new(ConfigError(e.to_string()))
        }
        other => anyhow::Error::new(other),
    })?;
    eprintln!(
        "egresswatch: wrote {} packets ({} bytes, {} flows) to {}",
        summary.packets,
        summary.bytes,
        summary.flows,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What one analysis run produced.
struct Outcome {
    stats: egresswatch::stats::Stats,
    /// Frames the BPF filter rejected.
    filtered: u64,
    elapsed: std::time::Duration,
    /// How the source ended: an error still lets everything before it be
    /// reported.
    result: Result<(), SourceError>,
    /// What `--compare-rules` recorded.
    trial: Option<Trial>,
    /// The rules the flows were judged by.
    rules: Arc<RuleSet>,
    /// Incidents open at the end, by zone and severity.
    open_incidents: Vec<(Option<Arc<str>>, Severity, u64)>,
}

/// Engines of a replay by default: one per core beside the two the reader
/// and the writer keep busy (on 2 cores a second engine only waited for
/// its turns: docs/PERFORMANCE.md).
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_sub(2)
        .max(1)
}

/// Replays `source` on `threads` engines (by default [`default_threads`];
/// one when rules are compared: the trial rides on a single engine).
fn analyze<S: SelectSource + Send>(
    source: S,
    args: &AnalysisArgs,
    inventory: egresswatch::inventory::Inventory,
    out: &mut Output,
    trial: Option<Trial>,
    threads: Option<usize>,
) -> Result<Outcome> {
    let config = engine_config(args)?;
    let rules: SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(load_rules(
        args.rules.as_deref(),
    )?));
    let names = Arc::new(egresswatch::analyzer::names::NameCache::default());
    if let Some(tally) = out.tally.as_mut() {
        tally.classify_with(rules.clone(), names.clone());
    }
    let judged_by = rules.load_full();
    let hosts = egresswatch::hosts::HostStage::new(rules.clone())
        .with_incidents(incident_config(
            args.incident_window_seconds,
            args.max_incidents,
        ))
        .with_inventory(egresswatch::inventory::shared(inventory));
    let n = match trial {
        Some(_) => 1,
        None => threads.unwrap_or_else(default_threads).max(1),
    };
    let mut trial = trial;
    let (mut engines, turns) = egresswatch::driver::sharded::engines(n, &names, |view| {
        let protocols = egresswatch::analyzer::registry(view.clone(), &app_layer(args));
        let mut engine =
            Engine::analyzing(config.clone(), Arc::from(protocols), rules.clone(), view);
        if let Some(trial) = trial.take() {
            engine = engine.with_trial(trial);
        }
        if args.state_file.is_some() {
            engine = engine.saving_at_finish();
        }
        engine
    });
    if let Some(path) = &args.state_file {
        restore_state(path, &names, &mut engines);
    }
    let mut sink = egresswatch::hosts::HostSink::new(out, hosts);
    let started = Instant::now();
    let run = |source: &mut (dyn egresswatch::source::PacketSource + Send),
               engines: &mut [Engine],
               sink: &mut egresswatch::hosts::HostSink<'_>| {
        egresswatch::driver::sharded::run_sharded(source, engines, &turns, sink)
    };
    let (result, filtered) = match &args.bpf {
        None => {
            let mut source = source;
            (run(&mut source, &mut engines, &mut sink), 0)
        }
        Some(expr) => {
            let filter = BpfFilter::new(expr).map_err(|e| ConfigError(e.to_string()))?;
            let mut source = Filtered::new(source, filter);
            let result = run(&mut source, &mut engines, &mut sink);
            (result, source.rejected())
        }
    };
    if let Some(path) = &args.state_file {
        save_state(path, &names, &mut engines);
    }
    let mut stats = Stats::default();
    for engine in &engines {
        stats.merge(engine.stats());
    }
    stats.merge(&sink.stage.stats);
    Ok(Outcome {
        stats,
        filtered,
        elapsed: started.elapsed(),
        result,
        trial: engines.first_mut().and_then(Engine::take_trial),
        rules: judged_by,
        open_incidents: sink.stage.incidents().open_by_zone_and_severity(),
    })
}

/// The state file's names into the cache and its flows each onto the
/// engine that will see their packets; every engine saves at its end.
fn restore_state(path: &Path, names: &NameCache, engines: &mut [Engine]) {
    let Some(state) = state_file::load(path) else {
        return;
    };
    names.restore(&state.names, state.saved_at);
    let sharder = egresswatch::driver::sharded::sharder(engines.len());
    let mut parts: Vec<Vec<_>> = engines.iter().map(|_| Vec::new()).collect();
    for flow in state.flows {
        parts[sharder.worker_of_key(&flow.flow.key)].push(flow);
    }
    for (engine, flows) in engines.iter_mut().zip(parts) {
        engine.restore(flows);
    }
}

/// What the engines saved at their end, with the names, to the state
/// file; flows in key order so the file is the same for any number of
/// engines.
fn save_state(path: &Path, names: &NameCache, engines: &mut [Engine]) {
    let mut flows = Vec::new();
    let mut saved_at = Timestamp::default();
    for engine in engines.iter_mut() {
        let (mut saved, at) = engine.take_saved();
        flows.append(&mut saved);
        saved_at = saved_at.max(at);
    }
    flows.sort_by_key(|f| (f.flow.key.lo, f.flow.key.hi, f.flow.key.proto));
    let names = names.saved();
    state_file::save_logged(
        path,
        &State {
            saved_at,
            flows,
            names,
        },
    );
}

/// `--inventory FILE`, or none; a broken file is a configuration error
/// (exit 78) naming the file and the line.
fn load_inventory(path: Option<&Path>) -> Result<egresswatch::inventory::Inventory> {
    match path {
        None => Ok(Default::default()),
        Some(p) => egresswatch::inventory::Inventory::load(p)
            .map_err(|e| ConfigError(format!("--inventory: {e}")).into()),
    }
}

fn incident_config(
    window_seconds: u64,
    max_open: usize,
) -> egresswatch::hosts::incident::IncidentConfig {
    egresswatch::hosts::incident::IncidentConfig {
        window_seconds,
        max_open,
    }
}

/// EVE `host`: `--sensor-name`, else this machine's host name (read here,
/// at the binary's edge).
fn sensor_name(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

fn app_layer(args: &AnalysisArgs) -> egresswatch::analyzer::applayer::AppLayerConfig {
    egresswatch::analyzer::applayer::AppLayerConfig {
        dns_version: args.eve_dns_version,
        ..Default::default()
    }
}

fn engine_config(args: &AnalysisArgs) -> Result<EngineConfig> {
    let mut flow = FlowConfig {
        capacity: args.flow_capacity,
        active_seconds: args.active_timeout_seconds,
        ..FlowConfig::default()
    };
    for setting in &args.idle_timeouts {
        let (class, secs) = parse_timeout(setting).map_err(ConfigError)?;
        flow.idle_seconds[class.index()] = secs;
    }
    Ok(EngineConfig {
        flow,
        community_seed: args.community_id_seed,
    })
}

fn parse_timeout(setting: &str) -> Result<(TimeoutClass, u64), String> {
    let (name, secs) = setting
        .split_once('=')
        .ok_or_else(|| format!("--idle-timeout {setting}: expected CLASS=SECONDS"))?;
    let class = TimeoutClass::ALL
        .into_iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| {
            let names: Vec<_> = TimeoutClass::ALL.iter().map(|c| c.name()).collect();
            format!(
                "--idle-timeout {setting}: unknown class {name:?}; classes: {}",
                names.join(", ")
            )
        })?;
    let secs = secs
        .parse()
        .map_err(|_| format!("--idle-timeout {setting}: {secs:?} is not a number of seconds"))?;
    Ok((class, secs))
}

/// Where events go: an EVE file or stdout, and/or a list kept for the
/// human-readable report.
struct Output {
    eve: Option<EveWriter<Box<dyn Target + Send>>>,
    keep: Option<Vec<Event>>,
    /// Print each alert as a line on stderr.
    alert_lines: bool,
    /// The most severe alert seen (1 is the highest).
    worst: Option<Severity>,
    /// Counts records for `--metrics-file`.
    tally: Option<egresswatch::metrics::Tally>,
    /// `learn`: every flow record, with the rules it was judged by.
    learner: Option<(egresswatch::learn::Learner, Arc<RuleSet>)>,
    /// The latest record of each incident, for the story.
    incidents: report::Incidents,
}

impl Output {
    fn open(eve: Option<&Path>, keep: bool, stamp: Stamp) -> Result<Self> {
        let eve = match eve {
            None => None,
            Some(p) if p == Path::new("-") => {
                Some(Box::new(io::stdout()) as Box<dyn Target + Send>)
            }
            Some(p) => {
                let file = File::create(p)
                    .with_context(|| format!("{}: cannot create EVE output", p.display()))?;
                // EveWriter writes in large blocks itself.
                Some(Box::new(file) as Box<dyn Target + Send>)
            }
        };
        Ok(Output {
            eve: eve.map(|out| EveWriter::new(out).with_stamp(stamp)),
            keep: keep.then(Vec::new),
            alert_lines: false,
            worst: None,
            tally: None,
            learner: None,
            incidents: report::Incidents::default(),
        })
    }

    fn finish(self) -> Result<(Vec<Event>, report::Incidents)> {
        if let Some(w) = self.eve {
            w.finish().context("writing EVE output")?;
        }
        Ok((self.keep.unwrap_or_default(), self.incidents))
    }
}

impl EventSink for Output {
    fn event(&mut self, event: Event) {
        if let Some(tally) = &self.tally {
            tally.observe(&event);
        }
        if let (Some((learner, rules)), Event::Flow(record)) = (&mut self.learner, &event) {
            learner.observe_record(record, rules);
        }
        if let Event::Alert(alert) = &event {
            if let Some(id) = &alert.incident_id {
                self.incidents.count_alert(id);
            }
            if self.worst.is_none_or(|w| alert.severity.meets(w)) {
                self.worst = Some(alert.severity);
            }
            if self.alert_lines {
                eprintln!("{}", alert.line());
            }
        }
        if let Event::Incident(i) = &event {
            self.incidents.keep(i);
        }
        if let Some(w) = &mut self.eve {
            w.write(&event);
        }
        if let Some(keep) = &mut self.keep {
            keep.push(event);
        }
    }
}
