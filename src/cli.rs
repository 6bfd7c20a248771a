//! Command-line interface (the binary's edge).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "egresswatch",
    version = egresswatch::version::LONG,
    about = "Network egress flow analyzer: flows, SSH reverse tunnels, mining, cluster allowlists"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `egresswatch=debug`.
    #[arg(long, default_value = "warn", global = true)]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replay capture files (pcap or pcapng; `-` is standard input) as one timeline.
    Replay(ReplayArgs),
    /// Capture live on interfaces: the long-running sensor, a Prometheus scrape target.
    Capture(CaptureArgs),
    /// Replay the built-in demo capture: a GPU node's traffic and one outbound SSH session.
    Demo(DemoArgs),
    /// Validate a rules directory: every problem with file, line and column (exit 78 on error).
    CheckRules(CheckRulesArgs),
    /// What would happen to a flow from A to B:port with protocol P under the rules.
    Explain(ExplainArgs),
    /// Propose allow entries (TOML) that cover the egress seen in captures.
    Learn(LearnArgs),
    /// Write a generated capture (`demo`, or `bench` and `flood` with --packets) for tests and benchmarks.
    Generate(GenerateArgs),
    /// Write the manual pages (egresswatch.1 and one per command) into a directory.
    Man(ManArgs),
    /// Print the shell completion script for SHELL on standard output.
    Completions(CompletionsArgs),
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files, read in order; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Exit with code 3 when an alert at or above this severity fires
    /// (`high`/1, `medium`/2, `low`/3).
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<String>,
    /// Do not print alert lines and the summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// At the end, write the metrics (as `capture` serves them) here in the
    /// Prometheus text format, for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Engines, each on its own thread with its share of the flows
    /// (default: the cores less two, for the reader and the writer; at
    /// least one). The output is the same for any number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    #[command(flatten)]
    pub compare: CompareArgs,
}

/// Trying rules before they ship (docs/RULES.md).
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Judge every flow under these rules (OLD) too, alongside `--rules`
    /// (NEW), and print which alerts appear and disappear and which NEW
    /// entries are dead; exit 0 if no alert changes, 3 if one does (with
    /// --fail-on: only if an alert at or above it appears).
    #[arg(long, value_name = "DIR")]
    pub compare_rules: Option<PathBuf>,
    /// How the comparison is printed on standard output.
    #[arg(long, value_enum, default_value_t = CompareFormat::Text, requires = "compare_rules")]
    pub compare_format: CompareFormat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Read these options from a TOML file first (keys are the long flag
    /// names, e.g. `flow-capacity = 100000`); flags given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to capture on; repeat for several (one capture thread each).
    #[arg(long = "interface", short = 'i', required = true, value_name = "IFACE")]
    pub interfaces: Vec<String>,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// How frames are captured: `af-packet` (each worker reads its own
    /// ring of every interface, in a fanout group that keeps every flow
    /// between two hosts on one worker) or `pcap` (libpcap, the fallback;
    /// a capture thread per interface feeds the workers' queues).
    #[arg(long, default_value = "af-packet", value_name = "af-packet|pcap",
          value_parser = egresswatch::sensor::CaptureMethod::parse)]
    pub capture_method: egresswatch::sensor::CaptureMethod,
    /// Bytes kept of each frame.
    #[arg(long, default_value_t = 65_535, value_name = "BYTES")]
    pub snaplen: u32,
    /// Do not put the interface into promiscuous mode.
    #[arg(long)]
    pub no_promiscuous: bool,
    /// Kernel capture ring per interface, in MiB (with af-packet, shared
    /// among the workers' rings).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub buffer_mib: u32,
    /// Deliver each frame at once instead of in blocks (lower latency, more CPU).
    #[arg(long)]
    pub immediate_mode: bool,
    /// Analysis threads (default: with pcap, the cores left after one per
    /// interface; with af-packet, every core; at least 1).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Frames each worker's queue holds; beyond, the capture waits (pcap
    /// only: af-packet has no queues).
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub queue_packets: usize,
    /// Address of /metrics, /-/healthy and /-/ready (`none` to serve nothing).
    #[arg(
        long = "web.listen-address",
        default_value = "0.0.0.0:8463",
        value_name = "ADDR"
    )]
    pub web_listen_address: String,
    /// HTTP connections served at once (lowered to keep 128 descriptors
    /// free); at the limit a new one closes the connection idle longest.
    #[arg(long = "web.max-connections", default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub web_max_connections: u32,
    /// Time a client has to send a request head, from connecting or from
    /// its previous response (so also how long an idle connection is kept).
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub web_read_header_timeout: Duration,
    /// Time a response may wait for the client to read any of it.
    #[arg(long = "web.write-timeout", default_value = "10s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub web_write_timeout: Duration,
    /// TLS, basic auth and headers for the web endpoint, in the Prometheus
    /// exporter-toolkit format (YAML); re-read on SIGHUP.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// After opening the captures, switch to this user (needs root).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Learn allow entries from the egress seen (as `egresswatch learn`) and
    /// rewrite this file atomically every few minutes and at shutdown.
    #[arg(long, value_name = "FILE")]
    pub learn: Option<PathBuf>,
    #[command(flatten)]
    pub learn_filters: LearnFilters,
}

#[derive(Args, Debug)]
pub struct LearnArgs {
    /// Capture files, read in order as one timeline; `-` reads standard input.
    #[arg(required = true, value_name = "CAPTURE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Write the entries here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub filters: LearnFilters,
}

/// What `learn` and `capture --learn` keep.
#[derive(Args, Debug)]
pub struct LearnFilters {
    /// Propose a destination only if at least this many flows went to it.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_flows: u64,
    /// ... from at least this many source hosts.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_hosts: usize,
    /// Only flows that started at or after this packet time (RFC 3339, e.g. 2025-06-15T15:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only flows that started before this packet time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Destinations tracked at most; flows to more are counted and left out.
    #[arg(long, default_value_t = egresswatch::learn::MAX_DESTINATIONS, value_name = "N")]
    pub max_destinations: usize,
}

/// `500ms`, `10s`, `2m` or plain seconds (`10`, `0.5`); more than zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("unknown unit `{unit}` (ms, s or m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 10s or 500ms"))?;
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}`: give a positive duration"))
}

#[derive(Args, Debug)]
pub struct CheckRulesArgs {
    /// The rules directory.
    pub dir: PathBuf,
    /// Also replay this capture and warn about entries it shows unused or
    /// wider than their evidence (repeat for several files, one timeline).
    #[arg(long = "capture", value_name = "FILE")]
    pub captures: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Rules directory (default: the rules built into the binary).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Source address (inside the cluster for egress).
    #[arg(long)]
    pub from: std::net::IpAddr,
    /// Destination as ADDRESS:PORT (`[v6]:port` for IPv6).
    #[arg(long)]
    pub to: std::net::SocketAddr,
    /// Protocol as identified by bytes: ssh, tls, http, dns, stratum, or tcp/udp/any.
    #[arg(long, default_value = "any")]
    pub protocol: String,
    /// A name the flow is known by (SNI, HTTP Host, DNS). Repeatable.
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Client HASSH (SSH).
    #[arg(long)]
    pub hassh: Option<String>,
    /// Server HASSH (SSH).
    #[arg(long)]
    pub hassh_server: Option<String>,
    /// Name the source's workload from this inventory file (CSV or JSON).
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Do not print the human-readable report (it goes to stderr when
    /// `--eve -` writes the records to standard output).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options shared by every command that analyzes packets.
#[derive(Args, Debug)]
pub struct AnalysisArgs {
    /// Write EVE JSON lines here (`-` for standard output).
    #[arg(long, value_name = "PATH")]
    pub eve: Option<PathBuf>,
    /// Rules directory (default: the rules shipped in `rules/`, built into the binary).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Only packets matching this libpcap filter expression.
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Community ID seed.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub community_id_seed: u16,
    /// Flows tracked at once; the longest-idle flow is evicted when full.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub flow_capacity: usize,
    /// Idle timeout of a flow class, e.g. `tcp-established=600`; classes:
    /// tcp-new, tcp-established, tcp-closed, udp, icmp, other, tcp-tunnel
    /// (identified SSH, default 28800). Repeatable.
    #[arg(long = "idle-timeout", value_name = "CLASS=SECONDS")]
    pub idle_timeouts: Vec<String>,
    /// A flow open this long gets an interim record, then one every period (0: never).
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub active_timeout_seconds: u64,
    /// EVE `host` of every record: the sensor's name in a fleet (default:
    /// this machine's host name).
    #[arg(long, value_name = "NAME")]
    pub sensor_name: Option<String>,
    /// EVE `dns` layout: Suricata's version 3 (its default) or 2 (`type:
    /// query|answer`, as Elastic's and Filebeat's pipelines read).
    #[arg(long, default_value = "3", value_name = "2|3", value_parser = parse_dns_version)]
    pub eve_dns_version: egresswatch::analyzer::dns::DnsVersion,
    /// Who the hosts are: a CSV or JSON file mapping addresses and CIDRs to
    /// a workload (node, namespace, pod, job, owner), named on alerts and
    /// incidents. The sensor rereads it on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// An alert joins its host's incident when it comes at most this long
    /// (packet time) after the incident's last alert.
    #[arg(long, default_value_t = 14_400, value_name = "SECONDS")]
    pub incident_window_seconds: u64,
    /// Incidents open at once; when full, the longest-quiet one is closed.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_incidents: usize,
    /// Keep state across a restart in this file: read at start (a missing
    /// or damaged file is logged and ignored), written at the end (the
    /// sensor: at SIGTERM). It holds the identified SSH tunnels still open
    /// and the DNS name cache, so a tunnel that outlives the restart keeps
    /// its identity, age and alert state.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
}

fn parse_dns_version(text: &str) -> Result<egresswatch::analyzer::dns::DnsVersion, String> {
    egresswatch::analyzer::dns::DnsVersion::parse(text)
        .ok_or_else(|| format!("`{text}`: the EVE DNS version is 2 or 3"))
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Scenario name: `demo`, `bench` or `flood` (a SYN flood from spoofed sources).
    pub scenario: String,
    /// Output capture file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Packets to generate (bench, default 2,000,000; flood, default 100,000).
    #[arg(long)]
    pub packets: Option<u64>,
    /// Flows to start (bench; default packets / 20).
    #[arg(long)]
    pub flows: Option<u64>,
    /// PRNG seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write pcapng instead of pcap.
    #[arg(long)]
    pub pcapng: bool,
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["0s", "-1s", "10h", "s", "", "ten", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
