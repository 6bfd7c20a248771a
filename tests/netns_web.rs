//! Idle connections against the metrics server
//! (`tests/lab/sensor_lab.py web`): the sensor runs with 1,024 file
//! descriptors (`prlimit --nofile=1024:1024`), `--web.max-connections 4096`
//! (more than the descriptors allow) and a 5 s header-read timeout; 1,100
//! idle TCP connections are opened to its web port and held. `/metrics`
//! and `/-/healthy` must still answer, a SIGHUP must reload the rules (and
//! reopen the EVE file), the connection limit must have been lowered to
//! keep descriptors free, and every idle connection must be closed: the
//! oldest to make room at the limit, the rest by the header-read timeout.
//!
//! Root only, about 15 s:
//!
//! ```sh
//! sudo EGRESSWATCH_NETNS=1 cargo test --test netns_web -- --test-threads=1
//! ```
//!
//! Without `EGRESSWATCH_NETNS=1` (or not as root) the test passes after
//! saying it skipped.

#[path = "lab/harness.rs"]
mod harness;

use harness::{metric, num};

/// `WEB_CONNECTIONS`, `WEB_FD_LIMIT` and `WEB_HEADER_TIMEOUT` of
/// sensor_lab.py; the sensor keeps `FD_RESERVE` (128) descriptors free.
const CONNECTIONS: usize = 1100;
const FD_LIMIT: f64 = 1024.0;
const HEADER_TIMEOUT: f64 = 5.0;
const RESERVE: f64 = 128.0;

#[test]
fn idle_connections_neither_starve_the_endpoints_nor_the_reload() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    let Some(run) = harness::sensor_lab_for("netns_web", "web", &["--rules", rules]) else {
        return;
    };
    let r = &run.result;
    let held = &r["held"];
    eprintln!(
        "netns_web: checked {} s after the connections opened (in {} s); ends {}",
        held["checked_within_s"],
        r["clients"]["connect_s"],
        r["end"]
            .as_object()
            .map(|m| m
                .iter()
                .filter(|(k, _)| k.starts_with("egresswatch_http_"))
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    let start = &r["start"];
    assert_eq!(
        metric(start, "process_max_fds"),
        FD_LIMIT,
        "the limit in force"
    );
    // The limit is lowered so that RESERVE descriptors stay free.
    let max = FD_LIMIT - RESERVE;
    assert_eq!(metric(start, "egresswatch_http_connections_max"), max);

    // With the idle connections held: the endpoints answer (a new
    // connection at the limit closes the one idle longest) ...
    let during = &held["metrics"];
    assert_eq!(held["metrics_status"], 200, "/metrics: {held}");
    assert_eq!(held["healthy"][0], 200, "/-/healthy: {held}");
    assert_eq!(held["healthy"][1], "egresswatch is Healthy.\n");
    assert_eq!(
        metric(during, "egresswatch_http_connections_open"),
        max,
        "the idle connections were held when asked"
    );
    assert!(
        metric(during, "process_open_fds") < FD_LIMIT - 64.0,
        "{during}"
    );
    // ... and the rules reload.
    let reloaded = &held["after_reload"];
    assert_eq!(reloaded["metrics_status"], 200, "{held}");
    assert_eq!(
        metric(&reloaded["metrics"], "egresswatch_rules_reloads_total"),
        1.0
    );
    assert_eq!(
        metric(
            &reloaded["metrics"],
            "egresswatch_rules_reload_failures_total"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &reloaded["metrics"],
            "egresswatch_rules_last_reload_successful"
        ),
        1.0
    );
    assert!(
        num(&held["checked_within_s"], "check time") < HEADER_TIMEOUT - 1.0,
        "checked too late to mean anything: {held}"
    );
    assert_eq!(r["log_reloaded"], 1, "{}", r["log_tail"]);
    assert_eq!(r["log_emfile"], 0, "{}", r["log_tail"]);
    assert_eq!(r["log_no_internal"], 0, "{}", r["log_tail"]);
    // SIGHUP also reopens the EVE file (logrotate): it still can.
    assert_eq!(r["log_eve_reopened"], 1, "{}", r["log_tail"]);

    // Every idle connection was closed: the oldest at the limit, the
    // newest by the header-read timeout (not before it, nor long after).
    let ages: Vec<Option<f64>> = r["clients"]["ages"]
        .as_array()
        .unwrap_or_else(|| panic!("no client report: {}", r["clients"]))
        .iter()
        .map(|a| a.as_f64())
        .collect();
    assert_eq!(ages.len(), CONNECTIONS);
    let open = ages.iter().filter(|a| a.is_none()).count();
    assert_eq!(open, 0, "idle connections never closed");
    let newest = &ages[CONNECTIONS - 800..];
    for age in newest.iter().flatten() {
        assert!(
            (HEADER_TIMEOUT - 0.05..HEADER_TIMEOUT + 3.0).contains(age),
            "an idle connection closed after {age} s"
        );
    }
    // At the last open at most `max` were open, so the rest had closed:
    // evicted, or timed out already if opening took longer than the
    // header timeout (a loaded machine).
    let opened: Vec<f64> = r["clients"]["opened"]
        .as_array()
        .map(|o| o.iter().filter_map(|t| t.as_f64()).collect())
        .unwrap_or_default();
    assert_eq!(opened.len(), CONNECTIONS, "{}", r["clients"]);
    let last_open = opened[CONNECTIONS - 1];
    let timed_out_while_opening = ages
        .iter()
        .zip(&opened)
        .filter(|(age, at)| age.is_some_and(|a| a >= HEADER_TIMEOUT - 0.05 && *at + a < last_open))
        .count() as f64;
    let end = &r["end"];
    let evicted = metric(end, "egresswatch_http_connections_evicted_total");
    let timed_out = metric(end, "egresswatch_http_connections_timed_out_total");
    assert!(
        evicted >= CONNECTIONS as f64 - max - timed_out_while_opening,
        "evicted {evicted}, {timed_out_while_opening} timed out while opening"
    );
    assert!(timed_out >= 800.0, "timed out {timed_out}");
    assert_eq!(
        evicted + timed_out,
        CONNECTIONS as f64,
        "each idle connection closed once"
    );
    // Only the scrape itself is left.
    assert_eq!(metric(end, "egresswatch_http_connections_open"), 1.0);
    assert_eq!(r["exit_code"], 0, "exit after SIGTERM: {r}");
}
