//! Which build this is: the package version, the git revision it was built
//! from (`unknown` for a build outside a checkout) and the compiler, as
//! `build.rs` found them. `--version` and `egresswatch_build_info` say them.

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision, 12 hex digits, or `unknown`.
pub const REVISION: &str = env!("EGRESSWATCH_REVISION");

/// The rustc version that built this, e.g. `1.88.0`.
pub const RUSTC: &str = env!("EGRESSWATCH_RUSTC");

/// What `egresswatch --version` prints after the program name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("EGRESSWATCH_REVISION"),
    ", rustc ",
    env!("EGRESSWATCH_RUSTC"),
    ")"
);
