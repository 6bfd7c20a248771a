//! Throughput of the packet path on a generated capture of 1,000,000
//! packets and 100,000 flows (the `bench` scenario's realistic mix):
//! decoding alone, decoding plus flow tracking, and the whole replay with
//! every analyzer, the policy and EVE output (to a sink), on one thread
//! and as `egresswatch replay` runs it (reader, engine and writer threads).
//!
//! `cargo bench --bench throughput`; figures are recorded in
//! docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use egresswatch::analyzer::dispatch::Protocols;
use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::eve::EveWriter;
use egresswatch::gen::{self, BenchConfig, TsPrecision};
use egresswatch::source::file::ReplaySource;
use egresswatch::source::{Frame, LinkType};
use egresswatch::time::Timestamp;
use std::hint::black_box;
use std::sync::Arc;

/// The allocator the binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PACKETS: u64 = 1_000_000;
const FLOWS: u64 = 100_000;

/// The capture as classic pcap bytes (microsecond timestamps).
fn capture() -> Vec<u8> {
    let mut cfg = BenchConfig::new(PACKETS, 1);
    cfg.flows = FLOWS;
    let mut w =
        gen::PcapWriter::new(Vec::with_capacity(700 << 20), TsPrecision::Micro).expect("header");
    gen::bench::run(&cfg, &mut w).expect("generate");
    w.into_inner()
}

/// Frames of a classic little-endian pcap, borrowed from its bytes.
fn frames(pcap: &[u8]) -> Vec<Frame<'_>> {
    let mut out = Vec::with_capacity(PACKETS as usize);
    let mut at = 24;
    while let Some(h) = pcap.get(at..at + 16) {
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let caplen = word(8) as usize;
        let ts = Timestamp::from_parts(u64::from(word(0)), u64::from(word(4)), 1_000_000);
        let data = &pcap[at + 16..at + 16 + caplen];
        out.push(Frame {
            ts,
            link: LinkType::Ethernet,
            data,
            orig_len: word(12),
            input: 0,
        });
        at += 16 + caplen;
    }
    out
}

fn full_engine() -> Engine {
    Engine::with_builtin_rules(EngineConfig::default()).expect("built-in rules load")
}

fn bare_engine() -> Engine {
    let none: Arc<Protocols> = Arc::from(Vec::new());
    Engine::new(EngineConfig::default(), none, ahash::RandomState::new())
}

fn throughput(c: &mut Criterion) {
    // Leaked so the replay source (which owns its readers) can borrow it.
    let pcap: &'static [u8] = Box::leak(capture().into_boxed_slice());
    let frames = frames(pcap);
    assert_eq!(frames.len() as u64, PACKETS);
    let mut g = c.benchmark_group("packets");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PACKETS));

    g.bench_function("decode", |b| {
        b.iter(|| {
            for f in &frames {
                let _ = black_box(egresswatch::decode::decode(f));
            }
        })
    });

    g.bench_function("decode+flows", |b| {
        b.iter_batched(
            bare_engine,
            |mut engine| {
                let mut sink = Vec::new();
                for (i, f) in frames.iter().enumerate() {
                    engine.process(f, i as u64 + 1, &mut sink);
                }
                engine.finish(&mut sink);
                black_box(sink.len())
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("replay_full", |b| {
        b.iter_batched(
            full_engine,
            |e| replay(pcap, e, false),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("replay_threaded", |b| {
        b.iter_batched(
            full_engine,
            |e| replay(pcap, e, true),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The whole replay of `pcap` from its bytes, EVE to a sink: on one thread,
/// or threaded as `egresswatch replay --threads 1` runs it.
fn replay(pcap: &'static [u8], mut engine: Engine, threaded: bool) -> u64 {
    let reader: Box<dyn std::io::Read + Send> = Box::new(pcap);
    let mut source = ReplaySource::from_readers([("bench".to_string(), reader)]);
    let mut eve = EveWriter::new(std::io::sink());
    let result = if threaded {
        egresswatch::driver::sharded::run_alone(&mut source, &mut engine, &mut eve)
    } else {
        egresswatch::driver::run(&mut source, &mut engine, &mut eve)
    };
    result.expect("replay");
    black_box(eve.written())
}

criterion_group!(benches, throughput);
criterion_main!(benches);
