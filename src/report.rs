//! Text for people: the end-of-run summary on stderr and the demo report.

use egresswatch::event::Event;
use egresswatch::flow::EndReason;
use egresswatch::hosts::incident::IncidentRecord;
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

/// Incidents kept for the story at most; more are counted.
const STORY_INCIDENTS: usize = 10_000;
/// Incidents told in full; the rest are counted.
const STORY_TOLD: usize = 20;

/// The latest record of each incident of a run, in the order they opened.
#[derive(Default)]
pub struct Incidents {
    latest: Vec<IncidentRecord>,
    index: std::collections::HashMap<std::sync::Arc<str>, usize>,
    /// Alerts per incident, all of them (a record counts those up to its
    /// incident's last growth).
    alerts: std::collections::HashMap<std::sync::Arc<str>, u64>,
    untold: u64,
}

impl Incidents {
    /// Counts an alert of the incident `id`.
    pub fn count_alert(&mut self, id: &std::sync::Arc<str>) {
        if let Some(n) = self.alerts.get_mut(id) {
            *n += 1;
        } else if self.alerts.len() < STORY_INCIDENTS {
            self.alerts.insert(id.clone(), 1);
        }
    }

    pub fn keep(&mut self, record: &IncidentRecord) {
        let id = &record.incident.id;
        match self.index.get(id) {
            Some(&i) => self.latest[i] = record.clone(),
            None if self.latest.len() >= STORY_INCIDENTS => self.untold += 1,
            None => {
                self.index.insert(id.clone(), self.latest.len());
                self.latest.push(record.clone());
            }
        }
    }
}

/// The incidents as a short story: the highest scores first, each with
/// its steps in kill-chain order.
pub fn incidents(w: &mut dyn Write, incidents: &Incidents) -> io::Result<()> {
    let total = incidents.latest.len() as u64 + incidents.untold;
    if total == 0 {
        return Ok(());
    }
    writeln!(w, "Incidents ({total}):")?;
    let mut order: Vec<&IncidentRecord> = incidents.latest.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.incident.score()));
    for r in order.iter().take(STORY_TOLD) {
        let mut r = (*r).clone();
        if let Some(n) = incidents.alerts.get(&r.incident.id) {
            r.incident.alerts = r.incident.alerts.max(*n);
        }
        for line in r.story() {
            writeln!(w, "  {line}")?;
        }
    }
    let rest = total.saturating_sub(STORY_TOLD as u64);
    if rest > 0 {
        writeln!(w, "  ... and {rest} more (EVE event_type \"incident\")")?;
    }
    writeln!(w)
}

/// The demo's report: the incident, what fired, every flow in a line,
/// then what the analyzers learned, in words.
pub fn demo(
    w: &mut dyn Write,
    events: &[Event],
    story: &Incidents,
    stats: &Stats,
) -> io::Result<()> {
    writeln!(
        w,
        "egresswatch demo: a GPU training node's traffic, {} packets in {} flows, judged by the built-in rules\n",
        stats.packets, stats.flows_created
    )?;
    incidents(w, story)?;
    alerts(w, events)?;
    flows(w, events)?;
    app_records(w, events)?;
    writeln!(
        w,
        "\nThe full records: egresswatch demo --eve - (Suricata EVE JSON lines)"
    )
}

fn alerts(w: &mut dyn Write, events: &[Event]) -> io::Result<()> {
    let alerts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .collect();
    writeln!(w, "Alerts ({}):", alerts.len())?;
    for a in alerts {
        writeln!(
            w,
            "  {:<6} {:<24} {}:{} -> {}:{}",
            a.severity.name(),
            a.detection.id(),
            a.src.addr,
            a.src.port,
            a.dst.addr,
            a.dst.port
        )?;
        writeln!(w, "         {}", a.evidence.summary)?;
    }
    Ok(())
}

fn flows(w: &mut dyn Write, events: &[Event]) -> io::Result<()> {
    writeln!(w, "\nFlows:")?;
    writeln!(
        w,
        "  {:<46} {:<6} {:<8} {:>7} {:>9} {:>8}",
        "originator -> responder", "proto", "app", "packets", "bytes", "seconds"
    )?;
    let mut attempts = 0u64;
    for e in events {
        let Event::Flow(f) = e else { continue };
        let m = &f.meta;
        // Connection attempts that carried nothing (a sweep's probes) get
        // one line together.
        if f.tcp.is_some() && f.dirs[0].payload_bytes + f.dirs[1].payload_bytes == 0 {
            attempts += 1;
            continue;
        }
        let pair = format!("{} -> {}", m.src, m.dest);
        let app = m.app_proto.unwrap_or("-");
        let pkts = f.dirs[0].pkts + f.dirs[1].pkts;
        let bytes = f.dirs[0].bytes + f.dirs[1].bytes;
        let secs = egresswatch::time::Timestamp::secs_f64(f.end.since(f.start));
        let mark = if f.alerted { "!" } else { " " };
        writeln!(
            w,
            "{mark} {pair:<46} {:<6} {app:<8} {pkts:>7} {bytes:>9} {secs:>8.1}",
            egresswatch::eve::proto_name(m.proto)
        )?;
    }
    if attempts > 0 {
        writeln!(
            w,
            "  and {attempts} TCP connection attempt(s) that carried no data (refused, unanswered or reset at once)"
        )?;
    }
    Ok(())
}

/// One line per application record: the few fields a person looks at.
fn app_records(w: &mut dyn Write, events: &[Event]) -> io::Result<()> {
    writeln!(w, "\nWhat the analyzers saw:")?;
    for e in events {
        let Event::App(a) = e else { continue };
        let b = &a.event.body.to_value();
        let what = match a.event.event_type {
            "ssh" => format!(
                "client {} / server {}, hassh {}",
                b["client"]["software_version"].as_str().unwrap_or("?"),
                b["server"]["software_version"].as_str().unwrap_or("?"),
                b["client"]["hassh"]["hash"].as_str().unwrap_or("?")
            ),
            "dns" => {
                let q = b["queries"][0]["rrname"].as_str().unwrap_or("?");
                match b["answers"][0]["rdata"].as_str() {
                    Some(ans) => format!("{q} is {ans}"),
                    None => continue,
                }
            }
            "tls" => format!("SNI {}", b["sni"].as_str().unwrap_or("-")),
            "http" => format!(
                "{} {}",
                b["hostname"].as_str().unwrap_or("-"),
                b["url"].as_str().unwrap_or("")
            ),
            "stratum" => format!(
                "{} login {} agent {}",
                b["protocol"].as_str().unwrap_or("?"),
                b["login"].as_str().unwrap_or("-"),
                b["agent"].as_str().unwrap_or("-")
            ),
            other => other.to_string(),
        };
        let pair = format!("{} -> {}", a.meta.src, a.meta.dest);
        writeln!(w, "  {:<8} {pair:<46} {what}", a.event.event_type)?;
    }
    Ok(())
}
