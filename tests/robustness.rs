//! Nothing panics on any input: the whole pipeline (decode, flows, every
//! analyzer, the policy, EVE output) over damaged copies of a capture that
//! exercises every analyzer.

use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::eve::EveWriter;
use egresswatch::source::{Frame, LinkType};
use egresswatch::time::Timestamp;
use proptest::prelude::*;
use std::sync::OnceLock;

/// The demo capture's frames (DNS, TLS, SSH with a reverse tunnel,
/// Stratum, NFS, ICMP): every analyzer sees traffic.
fn frames() -> &'static [(Timestamp, Vec<u8>)] {
    static FRAMES: OnceLock<Vec<(Timestamp, Vec<u8>)>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let cap = egresswatch::gen::demo::demo(egresswatch::gen::demo::DEMO_SEED);
        cap.packets.into_iter().map(|p| (p.ts, p.data)).collect()
    })
}

fn engine() -> Engine {
    let cfg = EngineConfig {
        flow: egresswatch::flow::FlowConfig {
            capacity: 4,
            ..Default::default()
        },
        community_seed: 0,
    };
    Engine::with_builtin_rules(cfg).expect("built-in rules load")
}

/// One damage: flip a byte, cut the frame, or shuffle it forward in time.
#[derive(Clone, Debug)]
enum Damage {
    Flip { frame: usize, at: usize, byte: u8 },
    Cut { frame: usize, keep: usize },
    Swap { a: usize, b: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(frame, at, byte)| Damage::Flip {
            frame,
            at,
            byte
        }),
        (any::<usize>(), 0usize..200).prop_map(|(frame, keep)| Damage::Cut { frame, keep }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::Swap { a, b }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn damaged_captures_never_panic(damages in proptest::collection::vec(damage(), 1..40)) {
        let mut frames: Vec<(Timestamp, Vec<u8>)> = frames().to_vec();
        let n = frames.len();
        for d in damages {
            match d {
                Damage::Flip { frame, at, byte } => {
                    let f = &mut frames[frame % n].1;
                    if !f.is_empty() {
                        let i = at % f.len();
                        f[i] = byte;
                    }
                }
                Damage::Cut { frame, keep } => frames[frame % n].1.truncate(keep),
                Damage::Swap { a, b } => frames.swap(a % n, b % n),
            }
        }
        let mut engine = engine();
        let mut eve = EveWriter::new(std::io::sink());
        for (i, (ts, data)) in frames.iter().enumerate() {
            let frame = Frame { ts: *ts, link: LinkType::Ethernet, data, orig_len: data.len() as u32, input: 0 };
            engine.process(&frame, i as u64 + 1, &mut eve);
        }
        engine.finish(&mut eve);
        prop_assert!(eve.finish().is_ok());
    }
}
