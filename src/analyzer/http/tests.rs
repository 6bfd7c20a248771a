use super::*;
use crate::analyzer::testkit::{ctx, packet, play, split_at};
use crate::flow::key::proto;
use proptest::prelude::*;

/// curl 7.88.1 against the lab web server (h_benign_dns_https_http.pcap).
const CURL_GET: &str = "GET /index.html HTTP/1.1\r\nHost: 203.0.113.81:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const PY_RESPONSE: &str = "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\nDate: Sun, 22 Nov 2026 02:03:16 GMT\r\nContent-type: text/html\r\nContent-Length: 12\r\nLast-Modified: Sun, 22 Nov 2026 01:50:20 GMT\r\n\r\n<html></html>";

fn flow() -> FlowContext {
    ctx(proto::TCP, "10.10.0.10:50000", "203.0.113.81:8080")
}

fn run(segments: &[(Dir, &[u8])]) -> (Box<dyn Analyzer>, Emit) {
    let played = play(&HttpProtocol, &flow(), segments);
    let mut a = played.analyzer.expect("http claimed the flow");
    let mut events = played.events;
    a.finish(Timestamp::from_secs(9_999), &mut events);
    (a, events)
}

#[test]
fn curl_get_and_response() {
    let (a, events) = run(&[
        (Dir::ToServer, CURL_GET.as_bytes()),
        (Dir::ToClient, PY_RESPONSE.as_bytes()),
    ]);
    assert_eq!(a.facts().app_proto, Some("http"));
    assert_eq!(a.facts().server_name, None, "an address is not a name");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "http");
    assert_eq!(
        events[0].body.to_value(),
        json!({"hostname": "203.0.113.81", "http_port": 8080, "url": "/index.html",
               "http_user_agent": "curl/7.88.1", "http_method": "GET", "protocol": "HTTP/1.1",
               "status": 200, "http_content_type": "text/html", "length": 12})
    );
    assert_eq!(
        events[0].ts,
        Timestamp::from_secs(1_001),
        "stamped with the request"
    );
}

#[test]
fn request_split_across_segments() {
    let req = "GET /x HTTP/1.1\r\nUser-Agent: Wget/1.21\r\nHost: Mirror.Example.ORG\r\n\r\n";
    let b = req.as_bytes();
    // Inside the method, inside a header name, inside the terminator.
    for cuts in [
        vec![2],
        vec![2, 20, 45],
        vec![b.len() - 3, b.len() - 1],
        vec![b.len() - 2],
    ] {
        let mut segs: Vec<(Dir, &[u8])> = split_at(b, &cuts)
            .into_iter()
            .map(|p| (Dir::ToServer, p))
            .collect();
        segs.push((Dir::ToClient, b"HTTP/1.1 304 Not Modified\r\n\r\n"));
        let (a, events) = run(&segs);
        assert_eq!(
            a.facts().server_name.as_deref(),
            Some("mirror.example.org"),
            "{cuts:?}"
        );
        assert_eq!(events.len(), 1, "{cuts:?}");
        assert_eq!(events[0].body.to_value()["http_user_agent"], "Wget/1.21");
        assert_eq!(events[0].body.to_value()["status"], 304);
    }
}

#[test]
fn keep_alive_transactions_with_bodies_and_bare_lf() {
    let client = "POST /a HTTP/1.1\nHost: api.example\nContent-Length: 5\n\nhello\r\nGET /b HTTP/1.1\nHost: api.example\n\n";
    let server = "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nok\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let (a, events) = run(&[
        (Dir::ToServer, client.as_bytes()),
        (Dir::ToClient, server.as_bytes()),
    ]);
    let urls: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.body.to_value()["url"].clone(),
                e.body.to_value()["status"].clone(),
            )
        })
        .collect();
    assert_eq!(urls, [(json!("/a"), json!(201)), (json!("/b"), json!(200))]);
    assert!(a.wants_stream(Dir::ToServer));
}

#[test]
fn connect_and_absolute_targets_name_the_destination() {
    let (a, events) = run(&[
        (
            Dir::ToServer,
            b"CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n",
        ),
        (
            Dir::ToClient,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        ),
        (Dir::ToServer, &[0x16, 0x03, 0x01, 0x00, 0x05]),
    ]);
    assert_eq!(a.facts().server_name.as_deref(), Some("github.com"));
    assert_eq!(events[0].body.to_value()["http_port"], 443);
    assert!(
        !a.wants_stream(Dir::ToServer) && !a.wants_stream(Dir::ToClient),
        "tunnel: stop"
    );

    let (a, _) = run(&[(
        Dir::ToServer,
        b"GET http://user@Proxy.Example:3128/p HTTP/1.1\r\nHost: other\r\n\r\n",
    )]);
    assert_eq!(a.facts().server_name.as_deref(), Some("proxy.example"));
}

#[test]
fn host_forms() {
    let cases = [
        ("example.com", (Some("example.com"), None)),
        ("Example.com.:8080", (Some("example.com"), Some(8080))),
        ("[2001:db8::1]:443", (Some("2001:db8::1"), Some(443))),
        ("[2001:db8::1]", (Some("2001:db8::1"), None)),
        ("2001:db8::1", (Some("2001:db8::1"), None)),
        (":80", (None, Some(80))),
    ];
    for (input, (host, port)) in cases {
        assert_eq!(
            split_host_port(input),
            (host.map(String::from), port),
            "{input}"
        );
    }
}

/// An alert raised while a request waits for its response shows it.
#[test]
fn an_open_request_is_the_alert_object() {
    let played = play(
        &HttpProtocol,
        &flow(),
        &[(Dir::ToServer, CURL_GET.as_bytes())],
    );
    let a = played.analyzer.expect("http claimed the flow");
    let (key, body) = a.alert_object().expect("the open request");
    assert_eq!(key, "http");
    assert_eq!(body.to_value()["url"], "/index.html");
    let (answered, _) = run(&[
        (Dir::ToServer, CURL_GET.as_bytes()),
        (Dir::ToClient, PY_RESPONSE.as_bytes()),
    ]);
    assert!(answered.alert_object().is_none(), "logged already");
}

#[test]
fn unanswered_request_is_logged_at_the_end() {
    let (_, events) = run(&[(Dir::ToServer, CURL_GET.as_bytes())]);
    assert_eq!(events.len(), 1);
    assert!(events[0].body.to_value().get("status").is_none());
}

#[test]
fn oversized_head_is_parsed_as_far_as_it_got() {
    let mut req = b"GET / HTTP/1.1\r\nHost: big.example\r\n".to_vec();
    while req.len() < MAX_HEAD_LEN + 100 {
        req.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (a, _) = run(&[(Dir::ToServer, &req)]);
    assert_eq!(a.facts().server_name.as_deref(), Some("big.example"));
    assert!(!a.wants_stream(Dir::ToServer));
}

#[test]
fn getwork_over_http_is_mining() {
    let body = r#"{"method": "getwork", "params": [], "id": 0}"#;
    let req = format!(
        "POST / HTTP/1.1\r\nAuthorization: Basic d29ya2VyOng=\r\nHost: pool.example:8332\r\nUser-Agent: cgminer 4.9.2\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let reply = r#"{"result":{"data":"00000001c5","target":"ffffffffffff"},"error":null,"id":0}"#;
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
        reply.len()
    );
    let (r1, r2) = req.as_bytes().split_at(req.len() - 10);
    let (a, events) = run(&[
        (Dir::ToServer, r1),
        (Dir::ToServer, r2),
        (Dir::ToClient, resp.as_bytes()),
    ]);
    let m = a.facts().mining.as_ref().expect("getwork pair");
    assert_eq!(m.protocol, "getwork");
    assert_eq!(a.facts().app_proto, Some("http"));
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(kinds, ["http", "stratum"]);
}

#[test]
fn getwork_headers_count_as_mining_signals() {
    // cgminer 3.7.2 asking a Stratum-only pool for a block template: the
    // pool answers with an error and an X-Stratum redirect.
    let body =
        r#"{"id": 0, "method": "getblocktemplate", "params": [{"capabilities": ["coinbasetxn"]}]}"#;
    let req = format!(
        "POST / HTTP/1.1\r\nAuthorization: Basic Qml0Y29pbjp4\r\nHost: 104.236.136.96:3333\r\nContent-type: application/json\r\nX-Mining-Extensions: longpoll midstate rollntime submitold\r\nContent-Length: {}\r\nUser-Agent: cgminer 3.7.2\r\n\r\n{body}",
        body.len()
    );
    let (a, events) = run(&[(Dir::ToServer, req.as_bytes())]);
    let m = a.facts().mining.as_ref().expect("header + method");
    assert_eq!(
        (m.protocol, m.wallet.as_deref(), m.agent.as_deref()),
        ("getwork", Some("Bitcoin"), Some("cgminer 3.7.2"))
    );
    assert_eq!(
        events.iter().filter(|e| e.event_type == "stratum").count(),
        1
    );

    // The pool's redirect header alone pairs with a bare POST.
    let plain =
        "POST / HTTP/1.1\r\nHost: p\r\nX-Mining-Extensions: midstate\r\nContent-Length: 0\r\n\r\n";
    let reply = "HTTP/1.0 200 OK\r\nX-Stratum: stratum+tcp://pool.example:3333\r\nContent-Length: 0\r\n\r\n";
    let (a, _) = run(&[
        (Dir::ToServer, plain.as_bytes()),
        (Dir::ToClient, reply.as_bytes()),
    ]);
    assert_eq!(
        a.facts().mining.as_ref().map(|m| m.protocol),
        Some("getwork")
    );
    // Neither header alone is a verdict.
    let (a, _) = run(&[(Dir::ToServer, plain.as_bytes())]);
    assert!(a.facts().mining.is_none());
}

#[test]
fn ordinary_json_api_is_not_mining() {
    let body = r#"{"jsonrpc":"2.0","method":"login","params":{"login":"bob","pass":"x"},"id":1}"#;
    let req = format!(
        "POST /rpc HTTP/1.1\r\nHost: app.example\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let reply = r#"{"jsonrpc":"2.0","result":{"token":"abc"},"id":1}"#;
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
        reply.len()
    );
    let (a, _) = run(&[
        (Dir::ToServer, req.as_bytes()),
        (Dir::ToClient, resp.as_bytes()),
    ]);
    assert!(a.facts().mining.is_none());
}

#[test]
fn probe_answers() {
    let cases: [(Dir, &[u8], Probe); 9] = [
        (Dir::ToServer, b"GET / HTTP/1.1\r\n", Probe::Match),
        (Dir::ToServer, b"GE", Probe::NeedMore),
        (Dir::ToServer, b"POST", Probe::NeedMore),
        (Dir::ToServer, b"POST ", Probe::NeedMore),
        (Dir::ToServer, b"OPTIONS * HTTP/1.1\r\n", Probe::Match),
        (Dir::ToServer, b"GET  /", Probe::NoMatch),
        (Dir::ToServer, b"SSH-2.0-OpenSSH_9.2\r\n", Probe::NoMatch),
        (Dir::ToClient, b"HTTP/1.1 200 OK\r\n", Probe::Match),
        (Dir::ToServer, b"{\"id\":1}", Probe::NoMatch),
    ];
    for (dir, data, want) in cases {
        assert_eq!(
            probe(dir, data),
            want,
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn gap_stops_the_direction() {
    let mut a = HttpAnalyzer::new();
    let mut out = Vec::new();
    let pkt = packet(1, Dir::ToServer, b"");
    a.on_stream(Dir::ToServer, Chunk::Data(b"GET / HTT"), &pkt, &mut out);
    a.on_stream(Dir::ToServer, Chunk::Gap(5), &pkt, &mut out);
    assert!(!a.wants_stream(Dir::ToServer));
    a.finish(Timestamp::from_secs(1), &mut out);
    assert!(out.is_empty());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        prefix in any::<bool>(),
    ) {
        let mut a = HttpAnalyzer::new();
        let mut out = Vec::new();
        if prefix {
            let pkt = packet(0, Dir::ToServer, b"");
            a.on_stream(Dir::ToServer, Chunk::Data(b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\n"), &pkt, &mut out);
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let dir = if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
            let _ = probe(dir, chunk);
            let _ = RequestHead::parse(chunk);
            let _ = ResponseHead::parse(chunk);
            a.on_stream(dir, Chunk::Data(chunk), &packet(i as u64, dir, chunk), &mut out);
        }
        a.finish(Timestamp::from_secs(1), &mut out);
    }

    /// Oracle: cutting a request stream anywhere yields the same records.
    #[test]
    fn chunking_does_not_change_records(mut cuts in proptest::collection::vec(0usize..200, 0..6)) {
        let client = format!("{CURL_GET}POST /p HTTP/1.1\r\nHost: h.example\r\nContent-Length: 3\r\n\r\nabc{CURL_GET}");
        let bytes = client.as_bytes();
        cuts.iter_mut().for_each(|c| *c %= bytes.len());
        cuts.sort_unstable();
        let mut whole = HttpAnalyzer::new();
        let mut want = Vec::new();
        let pkt = packet(1, Dir::ToServer, b"");
        whole.on_stream(Dir::ToServer, Chunk::Data(bytes), &pkt, &mut want);
        whole.finish(Timestamp::from_secs(1), &mut want);
        let mut pieces = HttpAnalyzer::new();
        let mut got = Vec::new();
        for part in split_at(bytes, &cuts) {
            pieces.on_stream(Dir::ToServer, Chunk::Data(part), &pkt, &mut got);
        }
        pieces.finish(Timestamp::from_secs(1), &mut got);
        prop_assert_eq!(want.len(), 3);
        let bodies = |v: &Emit| v.iter().map(|e| e.body.clone()).collect::<Vec<_>>();
        prop_assert_eq!(bodies(&got), bodies(&want));
    }
}
