//! egresswatch: a network egress flow analyzer.
//!
//! Packets come from a [`source`] (capture files or a live interface), are
//! decoded by [`decode`], tracked as bidirectional flows by [`flow`], handed
//! to protocol [`analyzer`]s, judged by the egress policy, and written as
//! Suricata-EVE-compatible JSON lines by [`eve`]. Everything from `decode` on
//! is a pure core: no I/O, no clock (time is the packet's timestamp), no
//! globals, no panics on any input. See `docs/ARCHITECTURE.md`.

pub mod analyzer;
pub mod community_id;
pub mod decode;
pub mod driver;
pub mod engine;
pub mod eve;
pub mod event;
pub mod flow;
pub mod gen;
pub mod hosts;
pub mod inventory;
pub mod json;
pub mod judge;
pub mod learn;
pub mod metrics;
pub mod policy;
pub mod sensor;
pub mod source;
pub mod state;
pub mod stats;
pub mod time;
pub mod trial;
pub mod version;
pub mod web;
