//! Egress policy: cluster allowlists as TOML rule files, a classifier that
//! judges every flow against them, and the alerts it raises.
//!
//! Like the rest of the core this module does no I/O (except
//! [`load_dir`], which reads a rules directory), reads no clock (time is
//! the packet's [`Timestamp`](crate::time::Timestamp)), and never panics on
//! any input.

pub mod cidr;
pub mod detection;
pub mod diag;
pub mod load;
pub mod names;
mod parse;
pub mod schema;

pub use detection::{Detection, DetectionSettings, Permission, Permissions, Severity};
pub use diag::{Diagnostic, Diagnostics, Level, SourceFile};
pub use load::{load_dir, load_sources, reload, Loaded};
pub use schema::{AllowEntry, AppProto, EgressMode, PortRange, ProtoMatch, RuleSet, Transport, Zone};
