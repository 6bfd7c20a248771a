use super::cover::Entry;
use super::render::{render, Context};
use super::*;
use crate::policy::testutil::{ep, sources, test_rules, TEST_RULES};
use crate::policy::{load_sources, Detection};

/// One flow; `names` are the server's names, `findings` the detections.
struct Flow {
    client: &'static str,
    server: &'static str,
    proto: u8,
    app: Option<&'static str>,
    names: Vec<Arc<str>>,
    start_secs: u64,
    hassh: [Option<&'static str>; 2],
    findings: Vec<Detection>,
}

fn flow(client: &'static str, server: &'static str) -> Flow {
    Flow {
        client,
        server,
        proto: proto::TCP,
        app: Some("tls"),
        names: Vec::new(),
        start_secs: 1_750_000_000,
        hassh: [None, None],
        findings: Vec::new(),
    }
}

impl Flow {
    fn named(mut self, n: &str) -> Self {
        self.names.push(Arc::from(n));
        self
    }
    fn app(mut self, app: Option<&'static str>) -> Self {
        self.app = app;
        self
    }
    fn udp(mut self) -> Self {
        self.proto = proto::UDP;
        self
    }
    fn at(mut self, secs: u64) -> Self {
        self.start_secs = secs;
        self
    }
    fn found(mut self, d: Detection) -> Self {
        self.findings.push(d);
        self
    }
    fn hassh(mut self, client: Option<&'static str>, server: Option<&'static str>) -> Self {
        self.app = Some("ssh");
        self.hassh = [client, server];
        self
    }
    fn observation(&self) -> Observation<'_> {
        Observation {
            community_id: "1:test",
            client: ep(self.client),
            server: ep(self.server),
            proto: self.proto,
            app_proto: self.app,
            start: Timestamp::from_secs(self.start_secs),
            end: Timestamp::from_secs(self.start_secs + 5),
            bytes: 1000,
            names: &self.names,
            hassh: self.hassh,
            findings: AlertState::of(&self.findings),
        }
    }
}

fn learn(flows: &[Flow], cfg: LearnConfig) -> Learner {
    let rules = test_rules();
    let mut l = Learner::new(cfg);
    for f in flows {
        l.observe(&f.observation(), &rules);
    }
    l
}

fn entries(flows: &[Flow]) -> Vec<Entry> {
    learn(flows, LearnConfig::default()).proposal().entries
}

fn text(l: &Learner) -> String {
    render(
        l,
        &test_rules(),
        &Context {
            sources: vec!["test.pcap".into()],
        },
    )
}

/// The test rules with the learned file added.
fn with_learned(learned: &str) -> RuleSet {
    let loaded = load_sources(
        sources(&[
            ("rules/test.toml", TEST_RULES),
            ("rules/zz-learned.toml", learned),
        ]),
        None,
    );
    match loaded.into_result() {
        Ok((r, _)) => r,
        Err(d) => panic!("learned rules do not load:\n{}\n{learned}", d.render()),
    }
}

#[test]
fn names_of_one_domain_become_one_entry_by_name() {
    let e = entries(&[
        flow("10.10.0.5:40000", "198.51.100.1:443").named("files.pythonhosted.org"),
        flow("10.10.0.6:40000", "198.51.100.2:443").named("pythonhosted.org"),
    ]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].hosts, ["files.pythonhosted.org", "pythonhosted.org"]);
    assert_eq!(e[0].zone.as_deref(), Some("gpu"));
    assert_eq!(e[0].ports, [443]);
    assert_eq!((e[0].transport, e[0].protocol), ("tcp", Some("tls")));
    assert_eq!(e[0].evidence.flows, 2);
    assert_eq!(e[0].evidence.sources.count(), "2");
}

#[test]
fn a_wildcard_needs_three_names_below_a_registrable_domain() {
    let two = entries(&[
        flow("10.10.0.5:1", "198.51.100.1:443").named("a.cdn.example.com"),
        flow("10.10.0.5:2", "198.51.100.2:443").named("b.cdn.example.com"),
    ]);
    assert_eq!(two[0].hosts, ["a.cdn.example.com", "b.cdn.example.com"]);
    let three = entries(&[
        flow("10.10.0.5:1", "198.51.100.1:443").named("a.cdn.example.com"),
        flow("10.10.0.5:2", "198.51.100.2:443").named("b.cdn.example.com"),
        flow("10.10.0.5:3", "198.51.100.3:443").named("c.cdn.example.com"),
        flow("10.10.0.5:4", "198.51.100.4:443").named("www.example.com"),
    ]);
    // The deepest parent with three names; www stays exact.
    assert_eq!(three[0].hosts, ["*.cdn.example.com", "www.example.com"]);
    let wildcard = &three[0].details[0];
    assert_eq!(wildcard.names.len(), 3);
}

#[test]
fn never_a_wildcard_over_a_public_suffix() {
    // s3.amazonaws.com and co.uk are public suffixes: names below them
    // belong to different owners.
    let e = entries(&[
        flow("10.10.0.5:1", "198.51.100.1:443").named("a.s3.amazonaws.com"),
        flow("10.10.0.5:2", "198.51.100.2:443").named("b.s3.amazonaws.com"),
        flow("10.10.0.5:3", "198.51.100.3:443").named("c.s3.amazonaws.com"),
        flow("10.10.0.5:4", "198.51.100.4:443").named("x.co.uk"),
        flow("10.10.0.5:5", "198.51.100.5:443").named("y.co.uk"),
        flow("10.10.0.5:6", "198.51.100.6:443").named("z.co.uk"),
    ]);
    let hosts: Vec<&str> = e
        .iter()
        .flat_map(|e| e.hosts.iter().map(|h| &**h))
        .collect();
    assert!(hosts.iter().all(|h| !h.starts_with('*')), "{hosts:?}");
    assert_eq!(hosts.len(), 6);
}

#[test]
fn refused_flows_are_listed_and_taint_their_destination() {
    let flows = [
        // Mining to a pool; an earlier benign flow to the same address.
        flow("10.10.0.5:1", "203.0.113.77:3333")
            .app(Some("stratum"))
            .named("pool.example.org")
            .found(Detection::CryptoMining)
            .found(Detection::EgressNotAllowed),
        flow("10.10.0.6:1", "203.0.113.77:3333").app(None),
        // A reverse tunnel; benign names below the same domain.
        flow("10.10.0.5:2", "198.51.100.23:443")
            .hassh(Some("aa"), Some("bb"))
            .named("relay.example.net")
            .found(Detection::SshReverseForward),
        flow("10.10.0.5:3", "198.51.100.30:443").named("a.example.net"),
        flow("10.10.0.5:4", "198.51.100.31:443").named("b.example.net"),
        flow("10.10.0.5:5", "198.51.100.32:443").named("c.example.net"),
        // Only detections an allow entry silences: learned.
        flow("10.10.0.5:6", "192.0.2.9:22")
            .hassh(Some("aa"), Some("bb"))
            .found(Detection::SshToExternal)
            .found(Detection::EgressNotAllowed),
    ];
    let l = learn(&flows, LearnConfig::default());
    assert_eq!(l.counts.refused, 2);
    let out = text(&l);
    assert!(out.contains("WARNING: 2 flow(s) REFUSED"), "{out}");
    assert!(out.contains("crypto-mining"), "{out}");
    assert!(out.contains("ssh-reverse-forward"), "{out}");
    // No wildcard over relay.example.net, nothing to the pool's address.
    assert!(!out.contains("*.example.net"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("cidrs") && l.contains("203.0.113.77")),
        "{out}"
    );
    let learned = with_learned(&out);
    for f in &flows[..3] {
        let o = f.observation();
        assert!(covering_entry(&o, &learned).is_none(), "{out}");
    }
    assert!(
        covering_entry(&flows[6].observation(), &learned).is_some(),
        "{out}"
    );
    // Every detection not allowed still fires.
    let v = learned.judge(&FlowSubject {
        app_proto: Some("stratum"),
        stage: Stage::Ended,
        ..FlowSubject::new(
            1,
            ep("10.10.0.5:1"),
            ep("203.0.113.77:3333"),
            proto::TCP,
            Timestamp::from_secs(1_750_000_000),
        )
    });
    assert!(!v.permitted);
}

#[test]
fn every_learned_flow_is_covered_by_the_output() {
    let flows = [
        flow("10.10.0.5:1", "198.51.100.1:443").named("a.cdn.example.com"),
        flow("10.10.0.5:2", "198.51.100.2:443").named("b.cdn.example.com"),
        flow("10.10.0.5:3", "198.51.100.3:443").named("c.cdn.example.com"),
        flow("10.10.0.5:4", "198.51.100.4:80")
            .named("www.example.com")
            .app(Some("http")),
        flow("10.10.0.5:5", "192.0.2.10:123").udp().app(None),
        flow("10.10.0.5:6", "192.0.2.11:123").udp().app(None),
        flow("10.10.0.5:7", "192.0.2.77:8080").app(None),
        flow("[fd00:10::5]:8", "[2001:db8::1]:443"),
        flow("10.10.0.5:9", "192.0.2.50:22").hassh(
            Some("0123456789abcdef0123456789abcdef"),
            Some("fedcba9876543210fedcba9876543210"),
        ),
        flow("10.11.0.5:9", "192.0.2.51:2222")
            .hassh(None, Some("fedcba9876543210fedcba9876543210")),
    ];
    let l = learn(&flows, LearnConfig::default());
    assert_eq!(l.counts.learned, flows.len() as u64);
    let out = text(&l);
    let learned = with_learned(&out);
    for f in &flows {
        assert!(
            covering_entry(&f.observation(), &learned).is_some(),
            "{}\n{out}",
            f.server
        );
    }
    // The pinned SSH entry does not cover another client fingerprint.
    let other = flow("10.10.0.5:10", "192.0.2.50:22").hassh(
        Some("ffffffffffffffffffffffffffffffff"),
        Some("fedcba9876543210fedcba9876543210"),
    );
    assert!(
        covering_entry(&other.observation(), &learned).is_none(),
        "{out}"
    );
    assert!(
        out.contains("hassh = [\"0123456789abcdef0123456789abcdef\"]"),
        "{out}"
    );
    // A flow without a client HASSH: that side is not pinned.
    assert!(
        out.contains("hassh_server = [\"fedcba9876543210fedcba9876543210\"]"),
        "{out}"
    );
}

#[test]
fn addresses_aggregate_only_where_seen_densely() {
    // Two neighbours: a /31. One far away: its own /32.
    let e = entries(&[
        flow("10.10.0.5:1", "192.0.2.10:443").app(None),
        flow("10.10.0.5:2", "192.0.2.11:443").app(None),
        flow("10.10.0.5:3", "192.0.2.200:443").app(None),
    ]);
    let cidrs: Vec<String> = e[0].cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(cidrs, ["192.0.2.10/31", "192.0.2.200/32"]);
    // 64 addresses spread over a /24 fill a quarter of it.
    let many: Vec<Flow> = (0..64u64)
        .map(|i| {
            let server: &'static str = Box::leak(format!("192.0.2.{}:443", i * 4).into_boxed_str());
            flow("10.10.0.5:1", server).app(None)
        })
        .collect();
    let e = entries(&many);
    assert_eq!(e[0].cidrs.len(), 1);
    assert_eq!(e[0].cidrs[0].to_string(), "192.0.2.0/24");
    // ... unless a refused flow went to one address in it.
    let mut tainted = many;
    tainted.push(flow("10.10.0.5:1", "192.0.2.255:3333").found(Detection::CryptoMining));
    let e = entries(&tainted);
    assert!(e[0].cidrs.len() > 1);
    assert!(e[0]
        .cidrs
        .iter()
        .all(|c| !c.contains(&"192.0.2.255".parse::<IpAddr>().unwrap())));
}

#[test]
fn flows_an_entry_already_allows_are_not_proposed() {
    let l = learn(
        &[flow("10.10.0.5:1", "198.51.100.1:443").named("pypi.org")],
        LearnConfig::default(),
    );
    assert_eq!(l.proposal().entries.len(), 0);
    assert_eq!(l.counts.covered.values().sum::<u64>(), 1);
    assert!(text(&l).contains("already allowed by pypi"));
}

#[test]
fn not_egress_and_zoneless_monitor_flows_are_not_learned() {
    let l = learn(
        &[
            flow("10.10.0.5:1", "10.20.0.10:22"),
            flow("198.51.100.1:1", "10.10.0.5:443"),
            flow("10.99.0.5:1", "198.51.100.1:443"),
        ],
        LearnConfig::default(),
    );
    assert_eq!(
        (l.counts.not_egress, l.counts.no_zone, l.counts.learned),
        (2, 1, 0)
    );
}

#[test]
fn thresholds_and_time_window_trim() {
    let flows = [
        flow("10.10.0.5:1", "198.51.100.1:443").named("one.example.com"),
        flow("10.10.0.5:2", "198.51.100.2:443")
            .named("two.example.com")
            .at(1_750_000_100),
        flow("10.10.0.6:2", "198.51.100.2:443")
            .named("two.example.com")
            .at(1_750_000_200),
    ];
    let cfg = LearnConfig {
        min_flows: 2,
        ..LearnConfig::default()
    };
    assert_eq!(entries_with(&flows, cfg)[0].hosts, ["two.example.com"]);
    let cfg = LearnConfig {
        min_hosts: 3,
        ..LearnConfig::default()
    };
    assert!(entries_with(&flows, cfg).is_empty());
    let cfg = LearnConfig {
        since: Some(Timestamp::from_secs(1_750_000_050)),
        until: Some(Timestamp::from_secs(1_750_000_150)),
        ..LearnConfig::default()
    };
    let l = learn(&flows, cfg);
    assert_eq!(l.counts.outside_window, 2);
    assert_eq!(l.proposal().entries[0].evidence.flows, 1);
}

fn entries_with(flows: &[Flow], cfg: LearnConfig) -> Vec<Entry> {
    learn(flows, cfg).proposal().entries
}

#[test]
fn the_destination_table_is_bounded() {
    let flows: Vec<Flow> = (1..=5u64)
        .map(|i| {
            let server: &'static str = Box::leak(format!("198.51.100.{i}:443").into_boxed_str());
            flow("10.10.0.5:1", server).app(None)
        })
        .collect();
    let l = learn(
        &flows,
        LearnConfig {
            max_destinations: 2,
            ..LearnConfig::default()
        },
    );
    assert_eq!((l.destinations(), l.counts.dropped), (2, 3));
    assert!(text(&l).contains("3 flow(s) were left out"));
}

#[test]
fn output_does_not_depend_on_the_order_flows_end_in() {
    let mut flows: Vec<Flow> = (0..40u64)
        .map(|i| {
            let server: &'static str =
                Box::leak(format!("198.51.100.{}:443", i % 7).into_boxed_str());
            let client: &'static str =
                Box::leak(format!("10.10.0.{}:{}", i % 20, 1000 + i).into_boxed_str());
            let f = flow(client, server).at(1_750_000_000 + (i * 37) % 11);
            if i % 3 == 0 {
                f.named(["a.example.com", "b.example.com", "c.example.com"][(i % 9 / 3) as usize])
            } else {
                f
            }
        })
        .collect();
    let a = text(&learn(&flows, LearnConfig::default()));
    flows.reverse();
    let b = text(&learn(&flows, LearnConfig::default()));
    assert_eq!(a, b);
}

#[test]
fn times_parse_as_rfc_3339() {
    assert_eq!(
        parse_time("1970-01-02T00:00:00Z"),
        Ok(Timestamp::from_secs(86_400))
    );
    assert_eq!(
        parse_time("1970-01-02T01:00:00+01:00"),
        Ok(Timestamp::from_secs(86_400))
    );
    assert_eq!(
        parse_time("1970-01-03"),
        Ok(Timestamp::from_secs(2 * 86_400))
    );
    assert_eq!(
        parse_time("2025-06-15T15:00:00.5Z"),
        Ok(Timestamp::from_nanos(
            1_749_999_600 * NANOS_PER_SEC + 500_000_000
        ))
    );
    for bad in [
        "yesterday",
        "2025-06-15T15:00:00",
        "15:00:00Z",
        "1960-01-01",
    ] {
        assert!(parse_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn refusing_keeps_only_the_detections_an_entry_may_silence() {
    let learnable = AlertState::of(&[Detection::EgressNotAllowed, Detection::SshNonstandardPort]);
    assert!(refusing(&learnable).is_empty());
    for d in Detection::ALL {
        if !LEARNABLE.contains(&d) {
            assert_eq!(refusing(&AlertState::of(&[d])), [d.id()]);
        }
    }
}

#[test]
fn names_that_are_addresses_or_invalid_fall_back_to_the_address() {
    let e = entries(&[
        flow("10.10.0.5:1", "192.0.2.10:80")
            .app(Some("http"))
            .named("192.0.2.10"),
        flow("10.10.0.5:2", "192.0.2.11:80")
            .app(Some("http"))
            .named("bad name!"),
    ]);
    assert!(e[0].hosts.is_empty());
    assert_eq!(e[0].cidrs.len(), 1);
}
