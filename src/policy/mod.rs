//! Egress policy: cluster allowlists as TOML rule files, a classifier that
//! judges every flow against them, and the alerts it raises.
//!
//! Like the rest of the core this module does no I/O (except
//! [`load_dir`], which reads a rules directory), reads no clock (time is
//! the packet's [`Timestamp`](crate::time::Timestamp); allow-entry expiry
//! is judged against it), holds no globals and never panics on any input.
//!
//! The engine's side:
//! - [`load_dir`] / [`reload`] build an immutable [`RuleSet`] (keep it in an
//!   `ArcSwap`; a failed reload leaves the old one in force);
//! - per flow, fill a [`FlowSubject`] and call [`RuleSet::classify`] with
//!   the flow's [`AlertState`] and the worker's [`SuppressionWindow`];
//! - write each [`Alert`] with [`Alert::to_eve`] and [`Alert::line`];
//! - `check-rules` and `explain` are [`check_rules`] and [`explain()`].

pub mod alert;
pub mod cidr;
pub mod classify;
pub mod detection;
pub mod diag;
pub mod explain;
pub mod lint;
pub mod load;
pub mod names;
mod parse;
pub mod schema;
pub mod suppress;
pub mod usage;

pub use alert::{Alert, AlertFlow, AlertState, AllowRef, Classified, HostFinding, SensorFinding};
pub use classify::{
    Considered, Direction, EntryStatus, Finding, FlowSubject, Stage, Tunnelled, Verdict,
};
pub use detection::{Detection, DetectionSettings, Permission, Permissions, Severity};
pub use diag::{Diagnostic, Diagnostics, Level, SourceFile};
pub use explain::{
    check_loaded, check_rules, explain, summary, CheckReport, ExplainQuery, EX_CONFIG,
};
pub use load::{load_dir, load_dir_or_shipped, load_sources, reload, shipped, Loaded};
pub(crate) use parse::days_from_civil;
pub use schema::{
    AllowEntry, AppProto, EgressMode, EntrySite, PortRange, ProtoMatch, RuleSet, Transport, Zone,
};
pub use suppress::{SuppressKey, SuppressionWindow};
pub use usage::{EntryOutcome, EntryUsage, FlowBrief, Usage};

/// A rule set is shared across worker threads (behind an `ArcSwap`) and
/// alerts cross channels.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<RuleSet>();
    shareable::<Alert>();
    shareable::<SuppressionWindow>();
};

/// Helpers for the policy tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// The policy most classifier tests use.
    pub const TEST_RULES: &str = r#"
[cluster]
internal = ["10.0.0.0/8", "fd00::/8"]
default_egress = "monitor"

[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16", "fd00:10::/32"]
egress = "default-deny"

[[zone]]
name = "lab"
cidrs = ["10.11.0.0/16"]
egress = "monitor"

[[allow]]
name = "internal-git"
cidrs = ["10.20.0.10/32"]
ports = [22]
protocol = "ssh"
reason = "internal git"

[[allow]]
name = "github"
zones = ["gpu"]
hosts = ["github.com", "ssh.github.com"]
ports = [22, 443]
protocol = "ssh"
reason = "git over ssh"

[[allow]]
name = "vendor-tunnel"
cidrs = ["203.0.113.7/32"]
ports = [22]
protocol = "ssh"
allow_remote_forward = true
reason = "vendor support tunnel"

[[allow]]
name = "pypi"
zones = ["gpu"]
hosts = ["pypi.org"]
ports = [443]
protocol = "tls"
reason = "packages"

[[allow]]
name = "old-mirror"
cidrs = ["198.51.100.80/32"]
reason = "retired mirror"
expires = 2024-01-31

[[allow]]
name = "pinned"
zones = ["gpu"]
cidrs = ["198.51.100.22/32"]
protocol = "ssh"
hassh = ["0123456789abcdef0123456789abcdef"]
reason = "pinned client"

[detections.ssh-long-lived]
long_lived_hours = [1, 4, 8, 12]
suppress_seconds = 60

[mining_pools]
hosts = ["*.nanopool.org"]
"#;

    pub fn test_rules() -> RuleSet {
        rules(&[("rules/test.toml", TEST_RULES)])
    }

    pub fn ep(s: &str) -> crate::flow::key::Endpoint {
        let sa: std::net::SocketAddr = s.parse().unwrap();
        crate::flow::key::Endpoint {
            addr: sa.ip(),
            port: sa.port(),
        }
    }

    /// Loads rule files given as (name, text); panics with the rendered
    /// diagnostics on error.
    pub fn rules(files: &[(&str, &str)]) -> RuleSet {
        let loaded = load_sources(sources(files), None);
        match loaded.into_result() {
            Ok((rules, _)) => rules,
            Err(diags) => panic!("rules failed to load:\n{}", diags.render()),
        }
    }

    pub fn sources(files: &[(&str, &str)]) -> Vec<SourceFile> {
        files
            .iter()
            .map(|(name, text)| SourceFile {
                name: (*name).into(),
                text: (*text).into(),
            })
            .collect()
    }

    /// The rendered diagnostics of loading `files` at `now_secs`.
    pub fn diagnostics(files: &[(&str, &str)], now_secs: Option<u64>) -> String {
        let now = now_secs.map(crate::time::Timestamp::from_secs);
        load_sources(sources(files), now).diagnostics.render()
    }
}
