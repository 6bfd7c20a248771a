//! Writes the seed corpus for AFL: `seeds DIR` creates `DIR/TARGET/NAME`
//! for every seed of every target (docs/FUZZING.md).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seeds DIR");
        return ExitCode::from(2);
    };
    let corpus = egresswatch_fuzz::seeds::corpus();
    for seed in &corpus {
        let target_dir = dir.join(seed.target);
        let written = std::fs::create_dir_all(&target_dir)
            .and_then(|()| std::fs::write(target_dir.join(&seed.name), &seed.data));
        if let Err(e) = written {
            eprintln!("seeds: {}: {e}", target_dir.display());
            return ExitCode::FAILURE;
        }
    }
    for (name, _) in egresswatch_fuzz::TARGETS {
        let n = corpus.iter().filter(|s| s.target == *name).count();
        println!("{}/{name}: {n} seeds", dir.display());
    }
    ExitCode::SUCCESS
}
