//! Text for people: the end-of-run summary on stderr and the demo report.

use egresswatch::event::Event;
use egresswatch::flow::EndReason;
use egresswatch::stats::Stats;
use std::io::{self, Write};
use std::time::Duration;

/// The summary printed after a replay.
pub fn summary(
    w: &mut dyn Write,
    stats: &Stats,
    filtered: u64,
    elapsed: Duration,
) -> io::Result<()> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    writeln!(
        w,
        "egresswatch: {} packets, {} bytes in {:.3} s ({:.2} M packets/s)",
        stats.packets,
        stats.bytes,
        secs,
        stats.packets as f64 / secs / 1e6
    )?;
    if filtered > 0 {
        writeln!(w, "  filtered out by --bpf {filtered}")?;
    }
    write!(
        w,
        "  decoded {}, skipped {}",
        stats.decoded,
        stats.skipped_total()
    )?;
    let skipped: Vec<String> = egresswatch::engine::skip_counts(stats)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !skipped.is_empty() {
        write!(w, " ({})", skipped.join(", "))?;
    }
    writeln!(w)?;
    let ended: Vec<String> = EndReason::ALL
        .iter()
        .filter(|r| stats.ended(**r) > 0)
        .map(|r| format!("{} {}", r.name(), stats.ended(*r)))
        .collect();
    writeln!(
        w,
        "  flows {} (records: {}), application records {}",
        stats.flows_created,
        ended.join(", "),
        stats.app_events
    )
}

/// The demo's report: every flow in a line, then what the analyzers said.
pub fn demo(w: &mut dyn Write, events: &[Event], stats: &Stats) -> io::Result<()> {
    writeln!(
        w,
        "egresswatch demo: {} packets, {} flows\n",
        stats.packets, stats.flows_created
    )?;
    writeln!(
        w,
        "{:<44} {:<6} {:<8} {:>7} {:>10} {:>8}",
        "flow (originator -> responder)", "proto", "app", "packets", "bytes", "seconds"
    )?;
    for e in events {
        if let Event::Flow(f) = e {
            let m = &f.meta;
            let pair = format!(
                "{}:{} -> {}:{}",
                m.src.addr, m.src.port, m.dest.addr, m.dest.port
            );
            let app = m
                .app_proto
                .unwrap_or(if f.app_unknown { "unknown" } else { "-" });
            let pkts = f.dirs[0].pkts + f.dirs[1].pkts;
            let bytes = f.dirs[0].bytes + f.dirs[1].bytes;
            let secs = egresswatch::time::Timestamp::secs_f64(f.end.since(f.start));
            writeln!(
                w,
                "{pair:<44} {:<6} {app:<8} {pkts:>7} {bytes:>10} {secs:>8.1}",
                egresswatch::eve::proto_name(m.proto)
            )?;
        }
    }
    let apps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::App(a) => Some(a),
            _ => None,
        })
        .collect();
    if !apps.is_empty() {
        writeln!(w, "\nApplication records:")?;
        for a in apps {
            writeln!(
                w,
                "  {} {}:{} -> {}:{}  {}",
                a.event.event_type,
                a.meta.src.addr,
                a.meta.src.port,
                a.meta.dest.addr,
                a.meta.dest.port,
                a.event.body
            )?;
        }
    }
    Ok(())
}
