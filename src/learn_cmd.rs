//! `egresswatch learn`: replays captures with the rules and prints the
//! allow entries that would cover their egress (`egresswatch::learn`).

use super::{analyze, load_inventory, load_rules, replay_stamp, ConfigError, Output};
use crate::cli::{LearnArgs, LearnFilters};
use anyhow::{Context, Result};
use egresswatch::learn::{self, render, LearnConfig, Learner};
use egresswatch::source::file::ReplaySource;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

/// The learning options of `learn` and `capture --learn`.
pub fn config(f: &LearnFilters) -> Result<LearnConfig> {
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| learn::parse_time(t).map_err(|e| ConfigError(format!("{flag}: {e}"))))
            .transpose()
    };
    let cfg = LearnConfig {
        min_flows: f.min_flows,
        min_hosts: f.min_hosts,
        since: time("--since", &f.since)?,
        until: time("--until", &f.until)?,
        max_destinations: f.max_destinations,
    };
    if let (Some(a), Some(b)) = (cfg.since, cfg.until) {
        if a >= b {
            return Err(ConfigError("--since must be before --until".into()).into());
        }
    }
    Ok(cfg)
}

pub fn learn(args: LearnArgs) -> Result<ExitCode> {
    let cfg = config(&args.filters)?;
    let rules = Arc::new(load_rules(args.analysis.rules.as_deref())?);
    let source = ReplaySource::open(&args.files)?;
    let stamp = replay_stamp(&args.files, &args.analysis);
    let mut out = Output::open(args.analysis.eve.as_deref(), false, stamp)?;
    out.learner = Some((Learner::new(cfg), rules.clone()));
    let inventory = load_inventory(args.analysis.inventory.as_deref())?;
    let outcome = analyze(source, &args.analysis, inventory, &mut out, None, None)?;
    let learner = out.learner.take().map(|(l, _)| l);
    out.finish()?;
    outcome.result?;
    let Some(learner) = learner else {
        return Ok(ExitCode::SUCCESS);
    };
    let ctx = render::Context {
        sources: args.files.iter().map(|p| p.display().to_string()).collect(),
    };
    let text = render::render(&learner, &rules, &ctx);
    match &args.out {
        Some(path) => egresswatch::sensor::learn::write_atomically(path, text.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?,
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    let c = &learner.counts;
    eprintln!(
        "egresswatch learn: {} flows, {} learned, {} refused, {} already allowed",
        c.flows,
        c.learned,
        c.refused,
        c.covered.values().sum::<u64>()
    );
    Ok(ExitCode::SUCCESS)
}
