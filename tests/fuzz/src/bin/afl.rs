//! The AFL++ harness: `afl TARGET`, built with
//! `cargo afl build --release --features afl --bin afl` and run as
//! `cargo afl fuzz -i corpus/TARGET -o out/TARGET target/release/afl TARGET`
//! (docs/FUZZING.md). Outside AFL it runs the target once on standard
//! input, which is how a crash file is replayed.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = egresswatch_fuzz::target(&name) else {
        let names: Vec<&str> = egresswatch_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: afl TARGET\ntargets: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
