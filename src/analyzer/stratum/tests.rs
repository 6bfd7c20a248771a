use super::*;
use crate::analyzer::testkit::{ctx, packet, play, split_at};
use crate::flow::key::proto;
use proptest::prelude::*;

/// cpuminer 2.5.1 against the lab pool (g_stratum_cpuminer_3333.pcap),
/// one TCP payload per entry.
const CPUMINER: [(Dir, &str); 7] = [
    (Dir::ToServer, "{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer/2.5.1\"]}\n"),
    (Dir::ToClient, "{\"id\":1,\"result\":[[[\"mining.set_difficulty\",\"09d1f12859eb9dbb\"],[\"mining.notify\",\"09d1f12859eb9dbb\"]],\"63302a38\",4],\"error\":null}\n"),
    (Dir::ToServer, "{\"id\": 2, \"method\": \"mining.authorize\", \"params\": [\"bc1qlabwallet0000000000000000000000000.rig01\", \"x\"]}\n"),
    (Dir::ToClient, "{\"id\":2,\"result\":true,\"error\":null}\n"),
    (Dir::ToClient, "{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[0.01]}\n"),
    (Dir::ToClient, "{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"e437\",\"408aa8a438e476d6200c2a0bc8fdc5786f6ed5a1efeb2338c08471718df3fd93\",\"01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff1603f34a0d2f6c61622d706f6f6c2f\",\"ffffffff01205fa012000000001976a914f711f145f95d0a0c0bfe18d5d56794a31adf0cb488ac00000000\",[\"8bd015d73cd870ad4770a7e013402f940e304460058faf7cf08fe9ff5219191e\",\"0bdb0a4b67a2a71bec1e53f0fcf82b01a3ac4fefdcf0c4692f6020465a0e937a\"],\"20000000\",\"1703a30c\",\"6b024c83\",true]}\n"),
    (Dir::ToServer, "{\"method\": \"mining.submit\", \"params\": [\"bc1qlabwallet0000000000000000000000000.rig01\", \"e437\", \"00000000\", \"6b024c83\", \"56af0602\"], \"id\":4}\n"),
];

const WALLET: &str = "bc1qlabwallet0000000000000000000000000.rig01";

/// XMRig 6 login and the pool's reply with a job, then a job push.
const XMRIG: [(Dir, &str); 3] = [
    (Dir::ToServer, "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD\",\"pass\":\"rig7\",\"agent\":\"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0\",\"rigid\":\"\",\"algo\":[\"rx/0\",\"cn/r\"]}}\n"),
    (Dir::ToClient, "{\"id\":1,\"jsonrpc\":\"2.0\",\"error\":null,\"result\":{\"id\":\"7f3e\",\"job\":{\"blob\":\"0e0ed4a1f3c305b64e6d\",\"job_id\":\"1201\",\"target\":\"b88d0600\",\"algo\":\"rx/0\"},\"extensions\":[\"algo\",\"keepalive\"],\"status\":\"OK\"}}\n"),
    (Dir::ToClient, "{\"jsonrpc\":\"2.0\",\"method\":\"job\",\"params\":{\"blob\":\"0e0ed4a1f3c305b64e6e\",\"job_id\":\"1202\",\"target\":\"b88d0600\"}}\n"),
];

/// A benign JSON-RPC service whose API has a `login` method (with the
/// same parameter names XMRig uses) and later calls.
const BENIGN_LOGIN: [(Dir, &str); 6] = [
    (Dir::ToServer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"login\",\"params\":{\"login\":\"alice\",\"pass\":\"s3cret\",\"agent\":\"notebook-sync/2.3\"}}\n"),
    (Dir::ToClient, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"session\":\"a9f0c2\",\"status\":\"OK\",\"expires\":3600}}\n"),
    (Dir::ToServer, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"listFiles\",\"params\":{\"dir\":\"/\"}}\n"),
    (Dir::ToClient, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":[\"a.txt\",\"b.txt\"]}\n"),
    (Dir::ToServer, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"submit\",\"params\":{\"file\":\"a.txt\"}}\n"),
    (Dir::ToClient, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":true}\n"),
];

fn flow() -> FlowContext {
    ctx(proto::TCP, "10.10.0.10:46272", "198.51.100.33:3333")
}

/// Plays the messages as one segment each and ends the flow.
fn run(segments: &[(Dir, &[u8])]) -> (Box<dyn Analyzer>, Emit) {
    let played = play(&StratumProtocol, &flow(), segments);
    let mut a = played.analyzer.expect("stratum probe claimed the flow");
    let mut events = played.events;
    a.finish(Timestamp::from_secs(9_999), &mut events);
    (a, events)
}

fn segs<'a>(msgs: &[(Dir, &'a str)]) -> Vec<(Dir, &'a [u8])> {
    msgs.iter().map(|&(d, s)| (d, s.as_bytes())).collect()
}

fn mining(a: &dyn Analyzer) -> &MiningFacts {
    a.facts().mining.as_ref().expect("mining verdict")
}

#[test]
fn cpuminer_session_from_lab_capture() {
    let (a, events) = run(&segs(&CPUMINER));
    let m = mining(a.as_ref());
    assert_eq!(a.facts().app_proto, Some("stratum"));
    assert_eq!(m.protocol, "stratum");
    assert_eq!(m.wallet.as_deref(), Some(WALLET));
    assert_eq!(m.agent.as_deref(), Some("cpuminer/2.5.1"));
    assert_eq!(m.evidence.packets[..2], [1, 2], "subscribe and its reply");
    assert!(
        m.evidence.summary.contains("mining.subscribe"),
        "{}",
        m.evidence.summary
    );
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.event_type, "stratum");
    assert_eq!(e.body.to_value()["protocol"], "stratum");
    assert_eq!(e.body.to_value()["confirmed_by"], "reply");
    assert_eq!(e.body.to_value()["login"], WALLET);
    assert_eq!(e.body.to_value()["agent"], "cpuminer/2.5.1");
    assert_eq!(
        e.ts,
        Timestamp::from_secs(1_003),
        "logged when the login arrived"
    );
    assert!(e.extra.as_ref().unwrap().to_value()["evidence"]["packets"].is_array());
}

#[test]
fn cpuminer_stream_cut_anywhere_gives_the_same_verdict() {
    let client: String = CPUMINER
        .iter()
        .filter(|m| m.0 == Dir::ToServer)
        .map(|m| m.1)
        .collect();
    let server: String = CPUMINER
        .iter()
        .filter(|m| m.0 == Dir::ToClient)
        .map(|m| m.1)
        .collect();
    for cuts in [[1usize, 2], [10, 75], [69, 70], [100, 200]] {
        let c = split_at(client.as_bytes(), &cuts);
        let s = split_at(server.as_bytes(), &[cuts[0] + 3, cuts[1] + 5]);
        // Interleave: client piece, server piece, ...
        let mut all = Vec::new();
        for i in 0..3 {
            all.push((Dir::ToServer, c[i]));
            all.push((Dir::ToClient, s[i]));
        }
        let (a, _) = run(&all);
        let m = mining(a.as_ref());
        assert_eq!(m.wallet.as_deref(), Some(WALLET), "{cuts:?}");
        assert_eq!(m.agent.as_deref(), Some("cpuminer/2.5.1"), "{cuts:?}");
    }
}

#[test]
fn xmrig_login_with_job_reply() {
    let (a, events) = run(&segs(&XMRIG));
    let m = mining(a.as_ref());
    assert_eq!(m.protocol, "xmrig-login");
    assert!(m.wallet.as_deref().unwrap().starts_with("48edfHu7V9Z84"));
    assert_eq!(
        m.agent.as_deref(),
        Some("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0")
    );
    assert_eq!(events[0].body.to_value()["confirmed_by"], "reply");
    assert_eq!(
        events[0].body.to_value()["methods"],
        json!(["login"]),
        "logged at the reply"
    );
}

#[test]
fn xmrig_login_without_job_needs_more() {
    // A login answered without a job is not enough on its own...
    let login = XMRIG[0];
    let bare = (
        Dir::ToClient,
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"status\":\"OK\"}}\n",
    );
    let (a, events) = run(&segs(&[login, bare]));
    // XMRig's login (it names its algorithms) is still an attempt.
    assert!(mining(a.as_ref())
        .evidence
        .summary
        .contains("attempt (refused)"));
    assert_eq!(events.len(), 1);
    // A login without a miner's markers is not.
    let plain = (
        Dir::ToServer,
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"48edf\",\"pass\":\"x\"}}\n",
    );
    let (a, events) = run(&segs(&[plain, bare]));
    assert!(a.facts().mining.is_none());
    assert!(a.facts().app_proto.is_none());
    assert!(events.is_empty());
    // ...but a job pushed afterwards is.
    let (a, _) = run(&segs(&[login, bare, XMRIG[2]]));
    assert_eq!(mining(a.as_ref()).protocol, "xmrig-login");
}

#[test]
fn benign_json_rpc_login_is_not_mining() {
    let (a, events) = run(&segs(&BENIGN_LOGIN));
    assert!(a.facts().mining.is_none());
    assert!(a.facts().app_proto.is_none());
    assert!(events.is_empty());
}

#[test]
fn ethproxy_with_and_without_spaces() {
    let spaced = [
        (Dir::ToServer, "{\"worker\": \"eth1.0\", \"jsonrpc\": \"2.0\", \"params\": [\"0x9c99d212f7e5daa18ab50810e0fd255d1f04303b\", \"x\"], \"id\": 2, \"method\": \"eth_submitLogin\"}\n"),
        (Dir::ToClient, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":true}\n"),
    ];
    let compact = [
        (Dir::ToServer, "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"eth_submitLogin\",\"worker\":\"rig3\",\"params\":[\"0x9c99d212f7e5daa18ab50810e0fd255d1f04303b\"]}\n"),
        (Dir::ToServer, "{\"id\":5,\"jsonrpc\":\"2.0\",\"method\":\"eth_getWork\",\"params\":[]}\n"),
    ];
    let (a, events) = run(&segs(&spaced));
    let m = mining(a.as_ref());
    assert_eq!(m.protocol, "ethproxy");
    assert_eq!(
        m.wallet.as_deref(),
        Some("0x9c99d212f7e5daa18ab50810e0fd255d1f04303b (worker eth1.0)")
    );
    assert_eq!(events[0].body.to_value()["confirmed_by"], "reply");
    let (a, events) = run(&segs(&compact));
    assert_eq!(mining(a.as_ref()).protocol, "ethproxy");
    assert_eq!(events[0].body.to_value()["confirmed_by"], "client_methods");
}

#[test]
fn ethproxy_work_push_confirms_a_login() {
    let msgs = [
        (
            Dir::ToServer,
            "{\"id\":2,\"method\":\"eth_submitLogin\",\"params\":[\"0xabc\"]}\n",
        ),
        (
            Dir::ToClient,
            "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":[\"0x4155\",\"0x71a5\",\"0x0000\"]}\n",
        ),
    ];
    let (a, _) = run(&segs(&msgs));
    assert_eq!(mining(a.as_ref()).protocol, "ethproxy");
}

#[test]
fn miner_after_other_messages_and_noise_in_one_segment() {
    // A text banner, an unrelated JSON call, then Stratum; several
    // messages per segment, leading whitespace, CRLF line ends.
    let client = "HELLO proxy v1\r\n  {\"id\":0,\"method\":\"client.get_version\",\"params\":[]}\r\n\t{\"id\": 1, \"method\": \"mining.configure\", \"params\": [[\"version-rolling\"], {}]}\r\n{\"id\": 2, \"method\": \"mining.subscribe\", \"params\": [\"bmminer/2.0.0\"]}\r\n";
    let server = "{\"id\":1,\"result\":{\"version-rolling\":true},\"error\":null}\n{\"id\":2,\"result\":[[],\"08000002\",4],\"error\":null}\n";
    let (a, events) = run(&[
        (Dir::ToServer, client.as_bytes()),
        (Dir::ToClient, server.as_bytes()),
    ]);
    let m = mining(a.as_ref());
    assert_eq!(m.agent.as_deref(), Some("bmminer/2.0.0"));
    assert_eq!(events.len(), 1, "logged at the end without a login");
}

#[test]
fn stratum_found_after_text_chunks_in_later_segment() {
    let segments: [(Dir, &[u8]); 3] = [
        (Dir::ToServer, b"PING\n"),
        (Dir::ToClient, b"PONG\n"),
        (Dir::ToServer, CPUMINER[0].1.as_bytes()),
    ];
    let played = play(&StratumProtocol, &flow(), &segments);
    assert_eq!(played.matched_at, Some(3));
}

#[test]
fn refused_subscribe_is_an_attempt() {
    // cgminer probing a host that is not a Stratum pool.
    let msgs = [
        (
            Dir::ToServer,
            "{\"id\": 37, \"method\": \"mining.subscribe\", \"params\": [\"cgminer/3.7.2\"]}\n",
        ),
        (
            Dir::ToClient,
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n400 Bad Request",
        ),
    ];
    let (a, events) = run(&segs(&msgs));
    let m = mining(a.as_ref());
    assert_eq!(m.protocol, "stratum");
    assert!(
        m.evidence
            .summary
            .starts_with("stratum attempt (refused): mining.subscribe"),
        "{}",
        m.evidence.summary
    );
    assert_eq!(a.facts().app_proto, Some("stratum"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body.to_value()["confirmed_by"], Value::Null);
    assert_eq!(events[0].body.to_value()["protocol"], "stratum");
    assert_eq!(events[0].body.to_value()["agent"], "cgminer/3.7.2");
    // A lone CryptoNote login is too generic even for that.
    let (a, events) = run(&segs(&BENIGN_LOGIN[..1]));
    assert!(events.is_empty());
    assert!(a.facts().mining.is_none());
}

#[test]
fn lone_requests_of_a_miner_are_unanswered_attempts() {
    let subscribe =
        "{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cgminer/3.7.2\"]}\n";
    let authorize =
        "{\"id\": 2, \"method\": \"mining.authorize\", \"params\": [\"wallet.rig\", \"x\"]}\n";
    let eth =
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"eth_submitLogin\",\"params\":[\"0xabc\"]}\n";
    let cases: [(&str, &str); 4] = [
        (subscribe, "stratum"),
        (authorize, "stratum"),
        (XMRIG[0].1, "xmrig-login"),
        (eth, "ethproxy"),
    ];
    for (msg, protocol) in cases {
        let (a, events) = run(&segs(&[(Dir::ToServer, msg)]));
        let m = mining(a.as_ref());
        assert_eq!(m.protocol, protocol, "{msg}");
        assert!(
            m.evidence.summary.contains("attempt (unanswered)"),
            "{}",
            m.evidence.summary
        );
        assert_eq!(events.len(), 1, "{msg}");
        assert_eq!(events[0].body.to_value()["confirmed_by"], Value::Null);
    }
}

#[test]
fn refused_xmrig_login_is_an_attempt() {
    let refusal =
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"error\":{\"code\":-1,\"message\":\"Invalid address\"}}\n";
    let (a, _) = run(&segs(&[XMRIG[0], (Dir::ToClient, refusal)]));
    let m = mining(a.as_ref());
    assert!(
        m.evidence
            .summary
            .starts_with("xmrig-login attempt (refused): login"),
        "{}",
        m.evidence.summary
    );
    assert!(m.wallet.is_some());
}

#[test]
fn probe_answers() {
    let cases: [(&[u8], Probe); 7] = [
        (CPUMINER[0].1.as_bytes(), Probe::Match),
        (XMRIG[0].1.as_bytes(), Probe::Match),
        (
            b"  \n{\"id\":1,\"method\":\"eth_submitLogin\"",
            Probe::Match,
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n",
            Probe::NeedMore,
        ),
        (b"GET / HTTP/1.1\r\n", Probe::NeedMore),
        (
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
            Probe::NoMatch,
        ),
        (b"", Probe::NoMatch),
    ];
    for (data, want) in cases {
        assert_eq!(probe(data), want, "{:?}", String::from_utf8_lossy(data));
    }
}

#[test]
fn oversized_and_broken_lines_are_skipped() {
    let mut s = JsonStream::default();
    let mut out = Vec::new();
    let huge = format!("{{\"pad\":\"{}\"}}\n", "a".repeat(MAX_MESSAGE_LEN + 10));
    s.push(huge.as_bytes(), &mut out);
    s.push(b"{\"broken\": }\n{\"id\":1}\n", &mut out);
    assert_eq!(out, [json!({"id": 1})]);
    assert_eq!(s.oversized, 1);
    assert_eq!(s.skipped_lines, 1);
}

#[test]
fn gap_resumes_at_next_line() {
    let mut a = StratumAnalyzer::new();
    let mut out = Vec::new();
    let sub = CPUMINER[0].1.as_bytes();
    let pkt = packet(1, Dir::ToServer, sub);
    a.on_stream(Dir::ToServer, Chunk::Data(&sub[..30]), &pkt, &mut out);
    a.on_stream(Dir::ToServer, Chunk::Gap(10), &pkt, &mut out);
    a.on_stream(Dir::ToServer, Chunk::Data(&sub[40..]), &pkt, &mut out);
    a.on_stream(
        Dir::ToServer,
        Chunk::Data(CPUMINER[2].1.as_bytes()),
        &pkt,
        &mut out,
    );
    a.on_stream(
        Dir::ToServer,
        Chunk::Data(CPUMINER[6].1.as_bytes()),
        &pkt,
        &mut out,
    );
    let m = a.facts().mining.as_ref().expect("authorize + submit");
    assert_eq!(m.wallet.as_deref(), Some(WALLET));
    assert_eq!(m.agent, None, "the subscribe was cut by the gap");
}

#[test]
fn reading_stops_after_the_budget() {
    let mut a = StratumAnalyzer::new();
    let mut out = Vec::new();
    let line =
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n".repeat(MAX_MESSAGES as usize);
    a.on_stream(
        Dir::ToServer,
        Chunk::Data(&line),
        &packet(1, Dir::ToServer, &line),
        &mut out,
    );
    assert!(!a.wants_stream(Dir::ToServer));
    assert!(a.wants_stream(Dir::ToClient));
}

#[test]
fn batch_requests_are_read() {
    let mut d = MiningDetector::new();
    let ts = Timestamp::from_secs(1);
    let batch = json!([
        {"id": 1, "method": "mining.subscribe", "params": ["sgminer/5.5"]},
        {"id": 2, "method": "mining.authorize", "params": ["w.1", "x"]}
    ]);
    assert!(d.on_message(Dir::ToServer, &batch, 1, ts));
    assert_eq!(d.confirmed(), Some(Confirmation::ClientMethods));
    assert_eq!(d.login(), Some("w.1"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
    ) {
        let mut a = StratumAnalyzer::new();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let dir = if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
            let _ = probe(chunk);
            a.on_stream(dir, Chunk::Data(chunk), &packet(i as u64, dir, chunk), &mut out);
        }
        a.finish(Timestamp::from_secs(1), &mut out);
    }

    /// Oracle: however a message sequence is cut into chunks, the same
    /// values come out.
    #[test]
    fn chunking_does_not_change_values(mut cuts in proptest::collection::vec(0usize..600, 0..12)) {
        let text: String = CPUMINER.iter().map(|m| m.1).collect::<Vec<_>>().join("  \r\n");
        let bytes = text.as_bytes();
        cuts.iter_mut().for_each(|c| *c %= bytes.len());
        cuts.sort_unstable();
        let mut whole = Vec::new();
        JsonStream::default().push(bytes, &mut whole);
        let mut pieces = Vec::new();
        let mut s = JsonStream::default();
        for part in split_at(bytes, &cuts) {
            s.push(part, &mut pieces);
        }
        prop_assert_eq!(whole.len(), CPUMINER.len());
        prop_assert_eq!(pieces, whole);
    }
}

#[test]
fn pool_list_matches_names_and_subdomains() {
    let list = PoolList::parse(
        "# pools\nsupportxmr.com\n*.nanopool.org  # all regions\n.2miners.com\n\nMoneroOcean.Stream.\n",
    )
    .unwrap();
    assert_eq!(list.len(), 4);
    let cases = [
        ("pool.supportxmr.com", Some("supportxmr.com")),
        ("SupportXMR.com.", Some("supportxmr.com")),
        ("xmr-eu1.nanopool.org", Some("nanopool.org")),
        ("nanopool.org", Some("nanopool.org")),
        ("gulf.moneroocean.stream", Some("moneroocean.stream")),
        ("notsupportxmr.com", None),
        ("nanopool.org.evil.example", None),
        ("", None),
    ];
    for (name, want) in cases {
        assert_eq!(list.matches(name), want, "{name}");
    }
    let f = list
        .facts_for(
            "xmr-eu1.nanopool.org",
            "TLS SNI",
            &[4],
            Timestamp::from_secs(1),
            Timestamp::from_secs(1),
        )
        .unwrap();
    assert_eq!(f.protocol, "pool-name");
    assert_eq!(
        f.evidence.summary,
        "TLS SNI xmr-eu1.nanopool.org is on the mining pool list (nanopool.org)"
    );
}

#[test]
fn pool_list_rejects_bad_lines() {
    let err = PoolList::parse("ok.example\nnot a domain\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert_eq!(PoolList::parse("*.\n").unwrap_err().line, 1);
}
