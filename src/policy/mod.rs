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
pub mod load;
pub mod names;
mod parse;
pub mod schema;
pub mod suppress;

pub use alert::{Alert, AlertState, AllowRef, Classified};
pub use classify::{Considered, Direction, EntryStatus, Finding, FlowSubject, Stage, Verdict};
pub use detection::{Detection, DetectionSettings, Permission, Permissions, Severity};
pub use diag::{Diagnostic, Diagnostics, Level, SourceFile};
pub use explain::{check_rules, explain, summary, CheckReport, ExplainQuery, EX_CONFIG};
pub use load::{load_dir, load_sources, reload, Loaded};
pub use schema::{AllowEntry, AppProto, EgressMode, PortRange, ProtoMatch, RuleSet, Transport, Zone};
pub use suppress::{SuppressKey, SuppressionWindow};

/// Helpers for the policy tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

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
