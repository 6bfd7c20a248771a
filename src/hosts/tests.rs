use super::*;
use crate::engine::{Engine, EngineConfig};

/// Replays a generated capture through an engine with the shipped rules
/// and the host stage, as `replay` does; the alerts by detection id.
pub(crate) fn alerts_of(capture: &crate::gen::Capture) -> Vec<Alert> {
    let rules = crate::policy::load_sources(crate::policy::shipped(), None)
        .rules
        .expect("shipped rules");
    alerts_with(capture, rules)
}

fn alerts_with(capture: &crate::gen::Capture, rules: RuleSet) -> Vec<Alert> {
    let mut engine = Engine::with_builtin_rules(EngineConfig::default()).expect("shipped rules");
    let rules = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(rules));
    let mut events: Vec<Event> = Vec::new();
    let mut sink = HostSink::new(&mut events, HostStage::new(rules));
    for (i, p) in capture.packets.iter().enumerate() {
        let frame = p.frame();
        engine.process(&frame, i as u64 + 1, &mut sink);
    }
    engine.finish(&mut sink);
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn of(alerts: &[Alert], d: Detection) -> Vec<&Alert> {
    alerts.iter().filter(|a| a.detection == d).collect()
}

#[test]
fn a_scan_and_a_sweep_raise_internal_discovery() {
    let alerts = alerts_of(&crate::gen::chain::scan());
    let found = of(&alerts, Detection::InternalDiscovery);
    let kinds: Vec<String> = found
        .iter()
        .map(|a| a.discovery.as_ref().unwrap().to_value()["kind"].to_string())
        .collect();
    // The port scan starts an episode and escalates; the sweep follows
    // within the same window, so it is the same episode (no new alert
    // unless it grows it).
    assert!(found.len() >= 2, "{kinds:?}");
    assert_eq!(kinds[0], "\"port-scan\"");
    assert_eq!(found[0].severity, crate::policy::Severity::MEDIUM);
    assert_eq!(found[1].severity, crate::policy::Severity::HIGH);
    assert_eq!(found[0].src.addr.to_string(), "10.10.0.66");
    assert!(
        found[0].evidence.summary.contains("refused"),
        "{}",
        found[0].evidence.summary
    );
    assert_eq!(found[0].mitre, ["T1046"]);
}

#[test]
fn scraping_raises_nothing() {
    let alerts = alerts_of(&crate::gen::chain::scraping());
    assert!(
        of(&alerts, Detection::InternalDiscovery).is_empty(),
        "{alerts:?}"
    );
}

#[test]
fn an_unanswered_and_a_refused_miner_raise_crypto_mining() {
    let alerts = alerts_of(&crate::gen::chain::unanswered_miner());
    let found = of(&alerts, Detection::CryptoMining);
    let summaries: Vec<&str> = found.iter().map(|a| a.evidence.summary.as_str()).collect();
    assert_eq!(found.len(), 2, "{summaries:?}");
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("stratum attempt (unanswered)")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("xmrig-login attempt (refused)")),
        "{summaries:?}"
    );
}

#[test]
fn a_pool_lookup_raises_crypto_mining() {
    let alerts = alerts_of(&crate::gen::chain::pool_lookup());
    let found = of(&alerts, Detection::CryptoMining);
    assert_eq!(found.len(), 1, "{alerts:?}");
    assert!(found[0]
        .evidence
        .summary
        .contains("DNS lookup of `xmr-eu1.nanopool.org`"));
    assert_eq!(found[0].evidence.packets, [1]);
}

#[test]
fn allow_discovery_in_a_zone_or_an_entry_silences_the_scan() {
    let zone = r#"
[cluster]
internal = ["10.0.0.0/8"]
[[zone]]
name = "scanners"
cidrs = ["10.10.0.64/28"]
allow_discovery = true
"#;
    let rules = crate::policy::testutil::rules(&[("rules/z.toml", zone)]);
    let alerts = alerts_with(&crate::gen::chain::scan(), rules);
    assert!(
        of(&alerts, Detection::InternalDiscovery).is_empty(),
        "{alerts:?}"
    );
    // An entry for the scanned host's ports only: the sweep still alerts.
    let entry = r#"
[cluster]
internal = ["10.0.0.0/8"]
[[allow]]
name = "scan-one-host"
cidrs = ["10.10.0.9/32"]
allow_discovery = true
reason = "test"
"#;
    let rules = crate::policy::testutil::rules(&[("rules/a.toml", entry)]);
    let alerts = alerts_with(&crate::gen::chain::scan(), rules);
    let found = of(&alerts, Detection::InternalDiscovery);
    assert_eq!(found.len(), 1, "{alerts:?}");
    let kind = found[0].discovery.as_ref().unwrap().to_value()["kind"].clone();
    assert_eq!(kind, "icmp-sweep");
    assert_eq!(found[0].mitre, ["T1018"]);
}
