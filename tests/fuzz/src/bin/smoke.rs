//! The bounded smoke run CI does: every target (or those named) over its
//! seeds and a fixed number of deterministic mutations, one line per
//! target and a closing `N passed, M failed`. Failing inputs are written
//! to `--failures DIR` (default `target/smoke-failures`) for replay with
//! `smoke --run TARGET FILE...`.
//!
//! Usage: `smoke [--mutations N] [--seed S] [--failures DIR] [TARGET...]`
//!        `smoke --run TARGET FILE...`

use egresswatch_fuzz::smoke::{self, Plan};
use egresswatch_fuzz::{seeds, TARGETS};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--run") => replay(&args[1..]),
        _ => match parse(&args) {
            Ok((plan, dir, names)) => run(&plan, &dir, &names),
            Err(e) => {
                eprintln!("smoke: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn parse(args: &[String]) -> Result<(Plan, PathBuf, Vec<String>), String> {
    let mut plan = Plan::default();
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/smoke-failures");
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--mutations" => plan.mutations = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seed" => plan.seed = value()?.parse().map_err(|e| format!("{e}"))?,
            "--failures" => dir = PathBuf::from(value()?),
            name if egresswatch_fuzz::target(name).is_some() => names.push(name.to_string()),
            other => return Err(format!("unknown target or option {other:?}")),
        }
    }
    Ok((plan, dir, names))
}

fn run(plan: &Plan, dir: &Path, names: &[String]) -> ExitCode {
    smoke::capture_panics();
    let corpus = seeds::corpus();
    let (mut passed, mut failed) = (0, 0);
    println!(
        "smoke: {} mutations per target, seed {}",
        plan.mutations, plan.seed
    );
    for &(name, target) in TARGETS {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let out = smoke::run(target, &seeds::for_target(&corpus, name), plan);
        let verdict = if out.failures.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "smoke: {name:<8} {:>3} seeds {:>6} runs {:>7.1} s  {verdict}",
            out.seeds,
            out.runs,
            out.elapsed.as_secs_f64()
        );
        for (i, f) in out.failures.iter().enumerate() {
            let path = dir.join(format!("{name}-{i}"));
            let saved = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &f.input));
            let at = match saved {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("not saved: {e}"),
            };
            println!("smoke:   {} ({at}): {}", f.what, f.message);
        }
        if out.failures.is_empty() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one target on the given files, panics and all.
fn replay(args: &[String]) -> ExitCode {
    let Some(target) = args.first().and_then(|n| egresswatch_fuzz::target(n)) else {
        eprintln!("usage: smoke --run TARGET FILE...");
        return ExitCode::from(2);
    };
    for file in &args[1..] {
        match std::fs::read(file) {
            Ok(data) => {
                target(&data);
                println!("{file}: ok");
            }
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
