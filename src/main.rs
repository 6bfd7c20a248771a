//! The egresswatch binary: argument parsing, file and terminal I/O, exit
//! codes. Everything else is in the library.

mod cli;
mod report;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{
    AnalysisArgs, CaptureArgs, CheckRulesArgs, Cli, Command, DemoArgs, ExplainArgs, GenerateArgs,
    LogFormat, ReplayArgs,
};
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::eve::{EveWriter, Target};
use egresswatch::event::{Event, EventSink};
use egresswatch::flow::{FlowConfig, TimeoutClass};
use egresswatch::judge::SharedRules;
use egresswatch::policy::{self, RuleSet, Severity};
use egresswatch::source::bpf::{BpfFilter, Filtered};
use egresswatch::source::file::ReplaySource;
use egresswatch::source::{SelectSource, SourceError};
use egresswatch::time::Timestamp;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Flow tracking allocates per flow (analysis state, records); mimalloc
/// is markedly faster than glibc's allocator for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (documented in the README).
mod exit {
    pub const RUNTIME: u8 = 1;
    pub const ALERTS: u8 = 3;
    pub const CONFIG: u8 = 78;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    }
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    let source = ReplaySource::open(&args.files)?;
    let mut out = Output::open(args.analysis.eve.as_deref(), false)?;
    out.alert_lines = !args.quiet;
    if args.metrics_file.is_some() {
        out.tally = Some(egresswatch::metrics::Tally::default());
    }
    let outcome = analyze(source, &args.analysis, &mut out)?;
    let worst = out.worst;
    if let (Some(path), Some(tally)) = (&args.metrics_file, &out.tally) {
        tally
            .finish(&outcome.stats, outcome.filtered, wall_clock())
            .write_textfile(path)
            .with_context(|| format!("{}: cannot write metrics", path.display()))?;
    }
    out.finish()?;
    if !args.quiet {
        report::summary(
            &mut io::stderr().lock(),
            &outcome.stats,
            outcome.filtered,
            outcome.elapsed,
        )?;
    }
    outcome.result?;
    match (fail_on, worst) {
        (Some(threshold), Some(worst)) if worst.meets(threshold) => {
            Ok(ExitCode::from(exit::ALERTS))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The live sensor (`egresswatch::sensor`); returns at SIGINT/SIGTERM.
fn capture(args: CaptureArgs) -> Result<ExitCode> {
    let engine = engine_config(&args.analysis)?;
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
        workers: args
            .workers
            .unwrap_or_else(|| egresswatch::sensor::default_workers(args.interfaces.len())),
        interfaces: args.interfaces,
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
        user: args.user,
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
    let report = policy::check_rules(&args.dir, Some(wall_clock()));
    print!("{}", report.text);
    Ok(ExitCode::from(report.exit_code))
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

fn demo(args: DemoArgs) -> Result<ExitCode> {
    let reader: Box<dyn io::Read + Send> = Box::new(io::Cursor::new(DEMO_PCAP));
    let source = ReplaySource::from_readers([("demo.pcap".to_string(), reader)]);
    let mut out = Output::open(args.analysis.eve.as_deref(), true)?;
    let outcome = analyze(source, &args.analysis, &mut out)?;
    let events = out.finish()?;
    report::demo(&mut io::stdout().lock(), &events, &outcome.stats)?;
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
}

fn analyze<S: SelectSource + Send>(
    source: S,
    args: &AnalysisArgs,
    out: &mut Output,
) -> Result<Outcome> {
    let config = engine_config(args)?;
    let rules: SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(load_rules(
        args.rules.as_deref(),
    )?));
    let names = Arc::new(egresswatch::analyzer::names::NameCache::default());
    let protocols = egresswatch::analyzer::registry(
        names.clone(),
        &egresswatch::analyzer::applayer::AppLayerConfig::default(),
    );
    if let Some(tally) = out.tally.as_mut() {
        tally.classify_with(rules.clone(), names.clone());
    }
    let hosts = egresswatch::hosts::HostStage::new(rules.clone());
    let mut engine = Engine::analyzing(config, Arc::from(protocols), rules, names);
    let mut sink = egresswatch::hosts::HostSink::new(out, hosts);
    let started = Instant::now();
    let (result, filtered) = match &args.bpf {
        None => {
            let mut source = source;
            (
                egresswatch::driver::run_threaded(&mut source, &mut engine, &mut sink),
                0,
            )
        }
        Some(expr) => {
            let filter = BpfFilter::new(expr).map_err(|e| ConfigError(e.to_string()))?;
            let mut source = Filtered::new(source, filter);
            let result = egresswatch::driver::run_threaded(&mut source, &mut engine, &mut sink);
            (result, source.rejected())
        }
    };
    let mut stats = engine.stats().clone();
    stats.merge(&sink.stage.stats);
    Ok(Outcome {
        stats,
        filtered,
        elapsed: started.elapsed(),
        result,
    })
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
}

impl Output {
    fn open(eve: Option<&Path>, keep: bool) -> Result<Self> {
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
            eve: eve.map(EveWriter::new),
            keep: keep.then(Vec::new),
            alert_lines: false,
            worst: None,
            tally: None,
        })
    }

    fn finish(self) -> Result<Vec<Event>> {
        if let Some(w) = self.eve {
            w.finish().context("writing EVE output")?;
        }
        Ok(self.keep.unwrap_or_default())
    }
}

impl EventSink for Output {
    fn event(&mut self, event: Event) {
        if let Some(tally) = &self.tally {
            tally.observe(&event);
        }
        if let Event::Alert(alert) = &event {
            if self.worst.is_none_or(|w| alert.severity.meets(w)) {
                self.worst = Some(alert.severity);
            }
            if self.alert_lines {
                eprintln!("{}", alert.line());
            }
        }
        if let Some(w) = &mut self.eve {
            w.write(&event);
        }
        if let Some(keep) = &mut self.keep {
            keep.push(event);
        }
    }
}
