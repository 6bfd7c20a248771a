//! The seed corpus is worth fuzzing from: every target has seeds, each
//! protocol's seeds are flows that protocol claims, and every seed passes
//! its target.

use egresswatch_fuzz::seeds::{corpus, for_target};
use egresswatch_fuzz::targets::app;
use egresswatch_fuzz::TARGETS;

#[test]
fn every_target_has_seeds_that_pass() {
    let corpus = corpus();
    for &(name, target) in TARGETS {
        let seeds = for_target(&corpus, name);
        assert!(seeds.len() >= 2, "{name}: {} seeds", seeds.len());
        for seed in &seeds {
            target(seed);
        }
    }
}

#[test]
fn protocol_seeds_are_claimed_by_their_protocol() {
    let corpus = corpus();
    for name in ["ssh", "tls", "dns", "http", "stratum"] {
        for seed in corpus.iter().filter(|s| s.target == name) {
            assert!(
                app::claims(name, &seed.data),
                "{name}/{} not claimed",
                seed.name
            );
        }
    }
}
