//! Command-line interface (the binary's edge).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "egresswatch",
    version,
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
    /// Write a generated capture (`demo`, or `bench` and `flood` with --packets) for tests and benchmarks.
    Generate(GenerateArgs),
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
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Interface to capture on; repeat for several (one capture thread each).
    #[arg(long = "interface", short = 'i', required = true, value_name = "IFACE")]
    pub interfaces: Vec<String>,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Bytes kept of each frame.
    #[arg(long, default_value_t = 65_535, value_name = "BYTES")]
    pub snaplen: u32,
    /// Do not put the interface into promiscuous mode.
    #[arg(long)]
    pub no_promiscuous: bool,
    /// Kernel capture ring per interface, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub buffer_mib: u32,
    /// Deliver each frame at once instead of in blocks (lower latency, more CPU).
    #[arg(long)]
    pub immediate_mode: bool,
    /// Analysis threads (default: the cores left after one per interface, at least 1).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Frames each worker's queue holds; beyond, frames are dropped and counted.
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
    /// After opening the captures, switch to this user (needs root).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
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
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
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
