//! The bounded smoke run: a target over its seeds, then over a fixed
//! number of deterministic mutations of them ([`crate::mutate`]). A panic
//! is caught, its message kept and its input returned, so one run reports
//! every target.

use crate::mutate::{mutate, Rng};
use crate::Target;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// What to run per target.
#[derive(Copy, Clone, Debug)]
pub struct Plan {
    /// Mutated inputs per target, spread over its seeds.
    pub mutations: usize,
    /// Seed of the mutation generator.
    pub seed: u64,
    /// Failures kept per target before it is stopped.
    pub max_failures: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            mutations: 2_000,
            seed: 0x6567_7265_7373,
            max_failures: 3,
        }
    }
}

/// One input that made a target panic.
#[derive(Clone, Debug)]
pub struct Failure {
    /// `seed N` or `mutation N of seed M`.
    pub what: String,
    pub message: String,
    pub input: Vec<u8>,
}

/// What one target's run did.
#[derive(Debug)]
pub struct Outcome {
    pub seeds: usize,
    pub runs: usize,
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps panic messages (with their location) for the report instead of
/// printing them. Call once before [`run`].
pub fn capture_panics() {
    panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|m| *m.borrow_mut() = info.to_string());
    }));
}

/// Runs `target` once; the panic message if it panicked.
pub fn run_one(target: Target, input: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| target(input)))
        .map_err(|_| LAST_PANIC.with(|m| m.borrow().clone()))
}

/// Runs `target` over `seeds` and `plan.mutations` mutations of them.
pub fn run(target: Target, seeds: &[Vec<u8>], plan: &Plan) -> Outcome {
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut record = |what: String, input: &[u8], failures: &mut Vec<Failure>| {
        runs += 1;
        if let Err(message) = run_one(target, input) {
            failures.push(Failure {
                what,
                message,
                input: input.to_vec(),
            });
        }
    };
    for (i, seed) in seeds.iter().enumerate() {
        record(format!("seed {i}"), seed, &mut failures);
    }
    // An empty input is always worth one run.
    record("the empty input".into(), &[], &mut failures);
    let mut rng = Rng::new(plan.seed);
    if !seeds.is_empty() {
        for n in 0..plan.mutations {
            if failures.len() >= plan.max_failures {
                break;
            }
            let i = n % seeds.len();
            let other = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, &seeds[i], other);
            record(format!("mutation {n} of seed {i}"), &input, &mut failures);
        }
    }
    Outcome {
        seeds: seeds.len(),
        runs,
        failures,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_long_input(data: &[u8]) {
        assert!(data.len() < 8, "long input");
    }

    #[test]
    fn a_panicking_target_is_reported_with_its_input() {
        capture_panics();
        let seeds = vec![vec![1, 2, 3], vec![0; 8]];
        let plan = Plan {
            mutations: 10,
            ..Plan::default()
        };
        let out = run(panics_on_long_input, &seeds, &plan);
        let _ = panic::take_hook();
        assert!(!out.failures.is_empty());
        let first = &out.failures[0];
        assert_eq!(first.what, "seed 1");
        assert_eq!(first.input, vec![0; 8]);
        assert!(first.message.contains("long input"), "{}", first.message);
        assert!(out.failures.len() <= plan.max_failures);
    }

    #[test]
    fn mutations_are_the_same_on_every_run() {
        let one: Vec<Vec<u8>> = {
            let mut rng = Rng::new(7);
            (0..50)
                .map(|_| mutate(&mut rng, b"seed bytes", b"other"))
                .collect()
        };
        let mut rng = Rng::new(7);
        let two: Vec<Vec<u8>> = (0..50)
            .map(|_| mutate(&mut rng, b"seed bytes", b"other"))
            .collect();
        assert_eq!(one, two);
        assert!(one.iter().any(|m| m != b"seed bytes"));
    }
}
