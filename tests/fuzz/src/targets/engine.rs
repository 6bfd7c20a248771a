//! `engine`: a capture file through the whole pipeline as `replay` runs
//! it: the reader, [`Engine::analyzing`] with every analyzer and the
//! built-in rules, and the EVE writer.
//!
//! Input: the file's bytes.
//!
//! Checked: every frame read is counted, decoded or skipped; every EVE
//! line is a JSON object with an `event_type`.

use egresswatch::analyzer::names::NameCache;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::eve::EveWriter;
use egresswatch::flow::FlowConfig;
use egresswatch::policy::{load_sources, shipped, RuleSet};
use egresswatch::source::file::CaptureReader;
use egresswatch::source::PacketSource;
use std::sync::{Arc, OnceLock};

/// Frames processed at most per input.
pub const MAX_FRAMES: u64 = 4096;

fn rules() -> Arc<RuleSet> {
    static RULES: OnceLock<Arc<RuleSet>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let rules = load_sources(shipped(), None).rules;
            Arc::new(rules.expect("the built-in rules load"))
        })
        .clone()
}

fn engine() -> Engine {
    let cfg = EngineConfig {
        // A small table, so eviction runs too.
        flow: FlowConfig {
            capacity: 64,
            ..FlowConfig::default()
        },
        community_seed: 0,
    };
    let names = Arc::new(NameCache::default());
    let protocols = egresswatch::analyzer::registry(names.clone(), &Default::default());
    let rules = Arc::new(arc_swap::ArcSwap::new(rules()));
    Engine::analyzing(cfg, Arc::from(protocols), rules, names)
}

pub fn run(data: &[u8]) {
    let Ok(mut reader) = CaptureReader::with_buffer("fuzz", data, vec![0; 4096]) else {
        return;
    };
    let mut engine = engine();
    let mut eve = EveWriter::new(Vec::new());
    let mut frames = 0;
    while let Ok(Some(frame)) = reader.next_frame() {
        frames += 1;
        engine.process(&frame, frames, &mut eve);
        if frames == MAX_FRAMES {
            break;
        }
    }
    engine.finish(&mut eve);
    let stats = engine.stats();
    assert_eq!(stats.packets, frames, "frames not counted");
    assert_eq!(
        stats.decoded + stats.skipped_total(),
        frames,
        "frames neither decoded nor skipped"
    );

    let out = eve.finish().expect("writing to memory");
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!("invalid EVE line ({e}): {}", String::from_utf8_lossy(line))
        });
        assert!(
            v.get("event_type").is_some_and(|t| t.is_string()),
            "no event_type"
        );
    }
}
