//! Fuzz targets for egresswatch, each a plain `fn(&[u8])` that drives one
//! of the product's public entry points and asserts what must hold for
//! every input (a panic is a finding). The same bodies run under AFL++
//! (`src/bin/afl.rs`, built with cargo-afl) and in the bounded smoke run
//! that CI does (`src/bin/smoke.rs`: every target over the seed corpus
//! plus a fixed number of deterministic mutations). See docs/FUZZING.md.

pub mod input;
pub mod mutate;
pub mod seeds;
pub mod smoke;
pub mod targets;

/// A fuzz target: any bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, in the order the smoke run reports them.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode", targets::decode::run),
    ("stream", targets::stream::run),
    ("ssh", targets::app::ssh),
    ("tls", targets::app::tls),
    ("dns", targets::app::dns),
    ("http", targets::app::http),
    ("stratum", targets::app::stratum),
    ("capture", targets::capture::run),
    ("rules", targets::rules::run),
    ("engine", targets::engine::run),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}
