//! Bidirectional flow tracking.

pub mod key;
