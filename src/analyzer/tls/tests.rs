use super::*;
use crate::analyzer::testkit::{ctx, hex, packet, play, split_at};
use crate::flow::key::proto;
use crate::json::Rendered;
use proptest::prelude::*;
use serde_json::{json, Value};

/// curl 7.88.1 (OpenSSL 3) ClientHello from the lab capture
/// h_benign_dns_https_http.pcap: one record, SNI www.example.com, ALPN
/// h2 + http/1.1, TLS 1.3 down to 1.0 offered, a padding extension.
const CLIENT_HELLO: &str = "
    1603010200010001fc03032204f4877dbaa7f3398c7e4bea3dc3f36766505a723a8a8ba889415e4359bf63207208a65f
    08ba887c55b1921c56496e488bd62a212a0c5ae0aab2890d109b6cde003e130213031301c02cc030009fcca9cca8ccaa
    c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175
    00000014001200000f7777772e6578616d706c652e636f6d000b000403000102000a00160014001d0017001e00190018
    010001010102010301040010000e000c02683208687474702f312e31001600000017000000310000000d002a00280403
    05030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303
    020301002d00020101003300260024001d00209df44338a74301f5778e24860100122d896b8e59552d52366aad6ed408
    f5c26e001500ae0000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    00000000000000000000000000000000000000000000000000000000000000000000000000
";

/// The ServerHello record (TLS 1.3 selected) and the ChangeCipherSpec that
/// follows it, from the same flow.
const SERVER_HELLO: &str = "160303007a020000760303cccff570a5b3bbfa79fda4bcd473aedec3a6534b07c7d8c3ea9b21464518cc9f207208a65f08ba887c55b1921c56496e488bd62a212a0c5ae0aab2890d109b6cde130200002e002b0002030400330024001d00200a6cde245af57319a9407dba78461f3fdb3221a6a50c19d614b233120446544e140303000101";

/// JA3 of CLIENT_HELLO and JA3S of SERVER_HELLO as Wireshark 4.0 computes them.
const JA3: &str = "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,0-11-10-16-22-23-49-13-43-45-51-21,29-23-30-25-24-256-257-258-259-260,0-1-2";
const JA3_HASH: &str = "0149f47eabf9a20d0893e2a44e5a6323";
const JA3S: &str = "771,4866,43-51";
const JA3S_HASH: &str = "15af977ce25de452b96affa2addb1036";
/// JA4 of CLIENT_HELLO as FoxIO's reference (python/ja4.py, tshark 4.0)
/// computes it on the lab capture.
const JA4: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";

fn flow() -> FlowContext {
    ctx(proto::TCP, "10.10.0.10:51000", "203.0.113.80:443")
}

/// Runs client segments then server segments through the engine-like
/// driver and ends the flow.
fn run(client: &[&[u8]], server: &[&[u8]]) -> (Box<dyn Analyzer>, Emit, Option<u64>) {
    let mut segs: Vec<(Dir, &[u8])> = client.iter().map(|s| (Dir::ToServer, *s)).collect();
    segs.extend(server.iter().map(|s| (Dir::ToClient, *s)));
    let played = play(&TlsProtocol::default(), &flow(), &segs);
    let mut a = played.analyzer.expect("tls claimed the flow");
    let mut events = played.events;
    a.finish(Timestamp::from_secs(2_000), &mut events);
    (a, events, played.matched_at)
}

fn expected_body() -> Value {
    json!({
        "sni": "www.example.com",
        "version": "TLS 1.3",
        "ja3": {"hash": JA3_HASH, "string": JA3},
        "client_alpns": ["h2", "http/1.1"],
        "ja3s": {"hash": JA3S_HASH, "string": JA3S},
        "ja4": JA4,
    })
}

#[test]
fn real_handshake_in_one_segment_each() {
    let (c, s) = (hex(CLIENT_HELLO), hex(SERVER_HELLO));
    let (a, events, matched) = run(&[&c], &[&s]);
    assert_eq!(matched, Some(1));
    assert_eq!(a.facts().server_name.as_deref(), Some("www.example.com"));
    assert_eq!(a.facts().app_proto, Some("tls"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "tls");
    assert_eq!(events[0].body.to_value(), expected_body());
    assert_eq!(
        events[0].extra.as_ref().map(Rendered::to_value),
        Some(json!({"client_legacy_version": "TLS 1.2",
                    "client_supported_versions": ["TLS 1.3", "TLS 1.2", "TLS 1.1", "TLSv1"]}))
    );
    // The handshake is read; the record shape keeps walking both ways.
    assert!(a.wants_stream(Dir::ToServer) && a.wants_stream(Dir::ToClient));
    assert!(!a.done());
}

#[test]
fn client_hello_split_across_three_segments() {
    let c = hex(CLIENT_HELLO);
    let s = hex(SERVER_HELLO);
    // Cuts inside the record header, inside the cipher list, inside SNI.
    for cuts in [[3usize, 200], [1, 2], [5, 9], [120, 516]] {
        let parts = split_at(&c, &cuts);
        let (a, events, _) = run(&parts, &[&s]);
        assert_eq!(
            a.facts().server_name.as_deref(),
            Some("www.example.com"),
            "{cuts:?}"
        );
        assert_eq!(events.len(), 1, "{cuts:?}");
        assert_eq!(events[0].body.to_value(), expected_body(), "{cuts:?}");
    }
}

/// Re-frames a single-record hello as two records cut at `at` bytes of
/// the handshake message.
fn two_records(single: &[u8], at: usize) -> Vec<u8> {
    let body = &single[5..];
    let mut out = Vec::new();
    for part in [&body[..at], &body[at..]] {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[test]
fn client_hello_split_across_two_records_and_segments() {
    let c = hex(CLIENT_HELLO);
    // Cut inside the handshake header, and inside the extensions.
    for at in [2usize, 300] {
        let records = two_records(&c, at);
        for cuts in [vec![], vec![at + 7], vec![3, at + 4, at + 9]] {
            let parts = split_at(&records, &cuts);
            let (a, events, _) = run(&parts, &[]);
            assert_eq!(a.facts().server_name.as_deref(), Some("www.example.com"));
            let body = events[0].body.to_value();
            assert_eq!(body["ja3"]["hash"], JA3_HASH, "at {at} cuts {cuts:?}");
            assert_eq!(body["version"], "TLS 1.3");
        }
    }
}

#[test]
fn client_only_flow_logs_at_the_end() {
    let c = hex(CLIENT_HELLO);
    let played = play(&TlsProtocol::default(), &flow(), &[(Dir::ToServer, &c)]);
    let mut a = played.analyzer.unwrap();
    assert!(played.events.is_empty(), "waits for the server hello");
    let mut out = Vec::new();
    a.finish(Timestamp::from_secs(5_000), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].ts,
        Timestamp::from_secs(1_001),
        "stamped with the hello"
    );
    assert!(out[0].body.to_value().get("ja3s").is_none());
    a.finish(Timestamp::from_secs(5_001), &mut out);
    assert_eq!(out.len(), 1, "logged once");
}

#[test]
fn gap_or_garbage_ends_the_direction() {
    let c = hex(CLIENT_HELLO);
    let mut a = TlsAnalyzer::new();
    let mut out = Vec::new();
    let pkt = packet(1, Dir::ToServer, &c);
    a.on_stream(Dir::ToServer, Chunk::Data(&c[..100]), &pkt, &mut out);
    a.on_stream(Dir::ToServer, Chunk::Gap(50), &pkt, &mut out);
    assert_eq!(a.error(Dir::ToServer), Some(TlsError::Gap));
    assert!(!a.wants_stream(Dir::ToServer));
    a.on_stream(
        Dir::ToClient,
        Chunk::Data(b"HTTP/1.1 400 Bad\r\n"),
        &pkt,
        &mut out,
    );
    assert_eq!(a.error(Dir::ToClient), Some(TlsError::NotTls));
    assert!(a.facts().server_name.is_none());
    assert!(out.is_empty());
}

#[test]
fn server_hello_in_client_direction_is_unexpected() {
    let s = hex(SERVER_HELLO);
    let mut a = TlsAnalyzer::new();
    let mut out = Vec::new();
    a.on_stream(
        Dir::ToServer,
        Chunk::Data(&s),
        &packet(1, Dir::ToServer, &s),
        &mut out,
    );
    assert_eq!(a.error(Dir::ToServer), Some(TlsError::UnexpectedMessage));
}

/// A ClientHello built field by field, with GREASE values where Chrome
/// puts them.
fn grease_hello() -> Vec<u8> {
    fn v16(out: &mut Vec<u8>, body: &[u8]) {
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    fn ext(out: &mut Vec<u8>, t: u16, body: &[u8]) {
        out.extend_from_slice(&t.to_be_bytes());
        v16(out, body);
    }
    let mut exts = Vec::new();
    ext(&mut exts, 0x3a3a, &[]);
    let mut sni = vec![0];
    v16(&mut sni, b"Pool.Example.NET.");
    let mut list = Vec::new();
    v16(&mut list, &sni);
    ext(&mut exts, 0, &list);
    ext(&mut exts, 10, &[0, 6, 0x4a, 0x4a, 0, 29, 0, 23]);
    ext(&mut exts, 11, &[1, 0]);
    ext(&mut exts, 16, &[0, 3, 2, b'h', b'2']);
    ext(&mut exts, 43, &[4, 0x6a, 0x6a, 3, 4]);
    ext(&mut exts, 0xfafa, &[0]);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    v16(&mut body, &[0x0a, 0x0a, 0x13, 0x01, 0xc0, 0x2b]);
    body.extend_from_slice(&[1, 0]);
    v16(&mut body, &exts);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    v16(&mut rec, &hs);
    rec
}

#[test]
fn grease_is_left_out_of_ja3() {
    let rec = grease_hello();
    let hello = ClientHello::parse(&rec[9..]).unwrap();
    assert_eq!(hello.ja3_string(), "771,4865-49195,0-10-11-16-43,29-23,0");
    assert_eq!(hello.max_version(), 0x0304);
    assert_eq!(hello.sni(), Some("Pool.Example.NET."));
    let (a, events, _) = run(&[&rec], &[]);
    assert_eq!(a.facts().server_name.as_deref(), Some("pool.example.net"));
    assert_eq!(events[0].body.to_value()["sni"], "Pool.Example.NET.");
    assert_eq!(events[0].body.to_value()["client_alpns"], json!(["h2"]));
}

#[test]
fn sni_on_the_pool_list_is_mining() {
    let pools =
        std::sync::Arc::new(crate::analyzer::stratum::PoolList::parse("example.net\n").unwrap());
    let rec = grease_hello(); // SNI Pool.Example.NET.
    let played = play(
        &TlsProtocol::new(Some(pools)),
        &flow(),
        &[(Dir::ToServer, &rec)],
    );
    let a = played.analyzer.unwrap();
    let m = a.facts().mining.as_ref().expect("pool SNI");
    assert_eq!(m.protocol, "pool-name");
    assert_eq!(m.evidence.packets, [1]);
    let (a, _, _) = run(&[&hex(CLIENT_HELLO)], &[]);
    assert!(a.facts().mining.is_none(), "no list, no verdict");
}

#[test]
fn grease_values() {
    let all: Vec<u16> = (0..=0xffffu16).filter(|&v| is_grease(v)).collect();
    assert_eq!(all.len(), 16);
    assert_eq!(all[0], 0x0a0a);
    assert_eq!(all[15], 0xfafa);
}

#[test]
fn probe_decides_on_six_bytes() {
    let c = hex(CLIENT_HELLO);
    let s = hex(SERVER_HELLO);
    let cases: [(Dir, &[u8], Probe); 9] = [
        (Dir::ToServer, &c, Probe::Match),
        (Dir::ToServer, &c[..3], Probe::NeedMore),
        (Dir::ToServer, &c[..5], Probe::NeedMore),
        (Dir::ToClient, &s, Probe::Match),
        (Dir::ToClient, &c, Probe::NoMatch),
        (Dir::ToServer, &s, Probe::NoMatch),
        (Dir::ToServer, b"GET / HTTP/1.1\r\n", Probe::NoMatch),
        (Dir::ToServer, &[0x16, 0x03, 0x09], Probe::NoMatch),
        (
            Dir::ToServer,
            &[0x16, 0x03, 0x01, 0x00, 0x00, 0x01],
            Probe::NoMatch,
        ),
    ];
    for (dir, data, want) in cases {
        assert_eq!(
            probe(dir, data),
            want,
            "{dir:?} {:02x?}",
            &data[..data.len().min(6)]
        );
    }
}

#[test]
fn version_names_follow_suricata() {
    let names: Vec<String> = [0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x7f1c, 0xfefd]
        .into_iter()
        .map(|v| version_name(v).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "SSLv3",
            "TLSv1",
            "TLS 1.1",
            "TLS 1.2",
            "TLS 1.3",
            "TLS 1.3 draft-28",
            "0xfefd"
        ]
    );
}

/// A self-signed P-256 certificate made with OpenSSL 3.0 for this test:
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
/// -subj "/C=DE/O=Egresswatch Test/CN=test.example.net" -addext
/// "subjectAltName=DNS:test.example.net,DNS:*.example.net,IP:192.0.2.7"
/// -days 3650 -set_serial 0x0123456789abcdef -outform der`.
const CERT: &str = "
    30820203308201a9a00302010202080123456789abcdef300a06082a8648ce3d0403023043310b300906035504061302
    444531193017060355040a0c10456772657373776174636820546573743119301706035504030c10746573742e657861
    6d706c652e6e6574301e170d3236313230323138323433375a170d3336313132393138323433375a3043310b30090603
    5504061302444531193017060355040a0c10456772657373776174636820546573743119301706035504030c10746573
    742e6578616d706c652e6e65743059301306072a8648ce3d020106082a8648ce3d03010703420004b971a878f1fe8f0e
    1f780367426c4d8bed061df70b0df2aadeb8a49527eed9f7c444cf65dcc6c23aaabfaa790042a64ab613d6093d762bc5
    41e8bb67d4a4b80ea38186308183301d0603551d0e04160414c693349b0f631cb761347ce5d4e8d5d081a82b43301f06
    03551d23041830168014c693349b0f631cb761347ce5d4e8d5d081a82b43300f0603551d130101ff040530030101ff30
    300603551d11042930278210746573742e6578616d706c652e6e6574820d2a2e6578616d706c652e6e65748704c00002
    07300a06082a8648ce3d040302034800304502210091483a65d8ddac82fb1c152cb4842f9fe25b84a1b59f359dc310a6
    a88c15360302206284c2470869e66ce657fed26f381e83dfd7c935e76709c8e01f30798ff0b932
";

/// `openssl x509 -noout -serial -dates -fingerprint -sha1` of CERT, in
/// Suricata's spelling.
fn expected_cert() -> Value {
    json!({
        "subject": "C=DE, O=Egresswatch Test, CN=test.example.net",
        "issuerdn": "C=DE, O=Egresswatch Test, CN=test.example.net",
        "subjectaltname": ["test.example.net", "*.example.net", "192.0.2.7"],
        "serial": "01:23:45:67:89:AB:CD:EF",
        "fingerprint": "54:54:a0:24:20:46:ca:80:3b:83:40:08:b5:4b:48:8a:3b:e8:65:a9",
        "notbefore": "2026-12-02T18:24:37",
        "notafter": "2036-11-29T18:24:37",
    })
}

fn handshake_msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// A TLS 1.2 ServerHello (ECDHE-RSA-AES128-GCM-SHA256, renegotiation_info).
fn server_hello_12() -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[9; 32]);
    b.push(0);
    b.extend_from_slice(&[0xc0, 0x2f, 0]);
    b.extend_from_slice(&[0, 5, 0xff, 0x01, 0, 1, 0]);
    handshake_msg(2, &b)
}

/// A Certificate message of `certs` (leaf first).
fn certificate_msg(certs: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for c in certs {
        list.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
        list.extend_from_slice(c);
    }
    let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
    body.extend_from_slice(&list);
    handshake_msg(CERTIFICATE, &body)
}

/// Handshake bytes framed as records of at most `size` bytes.
fn records(kind: u8, bytes: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in bytes.chunks(size) {
        out.extend_from_slice(&[kind, 3, 3]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// ServerHello, Certificate (`certs`), ServerHelloDone in records of
/// `size` bytes, then a ChangeCipherSpec.
fn server_flight_12(certs: &[&[u8]], size: usize) -> Vec<u8> {
    let mut hs = server_hello_12();
    hs.extend_from_slice(&certificate_msg(certs));
    hs.extend_from_slice(&handshake_msg(14, &[]));
    let mut out = records(CONTENT_HANDSHAKE, &hs, size);
    out.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    out
}

/// Client then server bytes straight into a TLS analyzer, then the end.
fn run_tls(client: &[&[u8]], server: &[&[u8]]) -> (TlsAnalyzer, Emit) {
    let mut a = TlsAnalyzer::new();
    let mut out = Vec::new();
    let segs = client
        .iter()
        .map(|s| (Dir::ToServer, *s))
        .chain(server.iter().map(|s| (Dir::ToClient, *s)));
    for (i, (dir, data)) in segs.enumerate() {
        a.on_stream(
            dir,
            Chunk::Data(data),
            &packet(i as u64 + 1, dir, data),
            &mut out,
        );
    }
    a.finish(Timestamp::from_secs(2_000), &mut out);
    (a, out)
}

fn cert_fields(body: &Value) -> Value {
    let keys = expected_cert();
    let want = keys.as_object().unwrap();
    Value::Object(
        body.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| want.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

#[test]
fn tls12_leaf_certificate_across_records_and_segments() {
    let leaf = hex(CERT);
    let chain_ca = vec![0x30; 3000]; // not decoded: only the leaf is read
    let c = hex(CLIENT_HELLO);
    for size in [16_384usize, 300, 7] {
        let flight = server_flight_12(&[&leaf, &chain_ca], size);
        for cuts in [
            vec![],
            vec![1, 90, 500],
            (1..flight.len()).step_by(97).collect(),
        ] {
            let parts = split_at(&flight, &cuts);
            let (a, events) = run_tls(&[&c], &parts);
            assert_eq!(events.len(), 1, "size {size} cuts {cuts:?}");
            let body = events[0].body.to_value();
            assert_eq!(
                cert_fields(&body),
                expected_cert(),
                "size {size} cuts {cuts:?}"
            );
            assert_eq!(body["version"], "TLS 1.2");
            assert_eq!(body["ja4"], JA4);
            assert_eq!(a.error(Dir::ToClient), None);
            assert!(!a.reads_handshake(Dir::ToClient), "done after the leaf");
        }
    }
}

#[test]
fn record_is_written_once_the_leaf_is_read() {
    let (c, leaf) = (hex(CLIENT_HELLO), hex(CERT));
    let flight = server_flight_12(&[&leaf], 16_384);
    let played = play(
        &TlsProtocol::default(),
        &flow(),
        &[(Dir::ToServer, &c), (Dir::ToClient, &flight)],
    );
    assert_eq!(played.events.len(), 1, "before the flow ends");
    let a = played.analyzer.unwrap();
    // Still walking records after the handshake (the shape analyses).
    assert!(!a.done() && a.wants_stream(Dir::ToClient));
}

#[test]
fn certificate_keys_follow_suricata_order() {
    let (c, leaf) = (hex(CLIENT_HELLO), hex(CERT));
    let (_, events, _) = run(&[&c], &[&server_flight_12(&[&leaf], 16_384)]);
    let text = events[0].body.as_str();
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap_or(usize::MAX);
    let order = [
        "subject",
        "issuerdn",
        "subjectaltname",
        "serial",
        "fingerprint",
        "sni",
        "version",
        "notbefore",
        "notafter",
        "ja3",
        "ja3s",
        "ja4",
        "client_alpns",
    ];
    for w in order.windows(2) {
        assert!(at(w[0]) < at(w[1]), "{} before {}: {text}", w[0], w[1]);
    }
}

#[test]
fn no_certificate_after_a_resumed_hello() {
    let mut flight = records(CONTENT_HANDSHAKE, &server_hello_12(), 16_384);
    flight.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    let (a, events) = run_tls(&[&hex(CLIENT_HELLO)], &[&flight]);
    assert!(!a.reads_handshake(Dir::ToClient));
    assert_eq!(a.error(Dir::ToClient), None);
    let body = events[0].body.to_value();
    assert!(body.get("subject").is_none());
    assert_eq!(body["ja3s"]["string"], "771,49199,65281");
    let extra = events[0].extra.as_ref().unwrap().to_value();
    assert!(extra.get("certificate_error").is_none());
}

#[test]
fn leaf_larger_than_the_buffer_is_marked() {
    let big = vec![0x30; MAX_SERVER_HANDSHAKE_LEN];
    let flight = server_flight_12(&[&big], 16_384);
    let (a, events) = run_tls(&[&hex(CLIENT_HELLO)], &[&flight]);
    assert_eq!(a.error(Dir::ToClient), Some(TlsError::TooLarge));
    assert!(!a.reads_handshake(Dir::ToClient), "given up, buffers freed");
    let body = events[0].body.to_value();
    assert!(body.get("subject").is_none());
    assert_eq!(body["version"], "TLS 1.2", "the hello is kept");
    let extra = events[0].extra.as_ref().unwrap().to_value();
    assert_eq!(extra["certificate_error"], "too_large");
}

#[test]
fn leaf_that_does_not_decode_is_marked() {
    let mut leaf = hex(CERT);
    leaf[1] ^= 0x40; // outer SEQUENCE length
    let (a, events) = run_tls(&[&hex(CLIENT_HELLO)], &[&server_flight_12(&[&leaf], 400)]);
    assert_eq!(a.error(Dir::ToClient), Some(TlsError::Malformed));
    let extra = events[0].extra.as_ref().unwrap().to_value();
    assert_eq!(extra["certificate_error"], "malformed");
}

proptest! {
    #[test]
    fn arbitrary_streams_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..6),
    ) {
        let mut a = TlsAnalyzer::new();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let dir = if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
            let _ = probe(dir, chunk);
            let _ = ClientHello::parse(chunk);
            let _ = ServerHello::parse(chunk);
            a.on_stream(dir, Chunk::Data(chunk), &packet(i as u64, dir, chunk), &mut out);
        }
        a.finish(Timestamp::from_secs(1), &mut out);
    }

    #[test]
    fn mutated_server_flight_never_panics(
        i in 0usize..2000, v in any::<u8>(), cut in 0usize..2000, size in 5usize..600,
    ) {
        let leaf = hex(CERT);
        let mut s = server_flight_12(&[&leaf], size);
        let i = i % s.len();
        s[i] = v;
        s.truncate(s.len() - cut % s.len());
        let mut a = TlsAnalyzer::new();
        let mut out = Vec::new();
        a.on_stream(Dir::ToClient, Chunk::Data(&s), &packet(1, Dir::ToClient, &s), &mut out);
        a.finish(Timestamp::from_secs(1), &mut out);
    }

    #[test]
    fn mutated_hello_never_panics(i in 0usize..600, v in any::<u8>(), cut in 0usize..600) {
        let mut c = hex(CLIENT_HELLO);
        let i = i % c.len();
        c[i] = v;
        c.truncate(c.len() - cut % c.len());
        let mut a = TlsAnalyzer::new();
        let mut out = Vec::new();
        a.on_stream(Dir::ToServer, Chunk::Data(&c), &packet(1, Dir::ToServer, &c), &mut out);
        a.finish(Timestamp::from_secs(1), &mut out);
    }
}

/// Every analysed TLS flow keeps its analyzer to the end (tens of
/// thousands at once): the parts a flow stops needing (the handshake
/// readers, the record-shape analyses, the mining analysis once settled)
/// are boxed and freed, and what stays is small.
#[test]
fn analyzer_layout_stays_small() {
    use std::mem::size_of;
    assert!(
        size_of::<TlsAnalyzer>() <= 312,
        "{}",
        size_of::<TlsAnalyzer>()
    );
    // Its five lists of numbers in one allocation, no spare room.
    assert!(
        size_of::<ClientHello>() <= 104,
        "{}",
        size_of::<ClientHello>()
    );
    assert!(size_of::<Shape>() <= 160, "{}", size_of::<Shape>());
    assert_eq!(size_of::<Option<Box<Shape>>>(), 8);
    assert_eq!(size_of::<Option<Box<[HandshakeReader; 2]>>>(), 8);
}

#[test]
fn handshake_state_is_freed_once_read() {
    let (client, server) = (hex(CLIENT_HELLO), hex(SERVER_HELLO));
    let mut a = TlsAnalyzer::new();
    let mut out = Vec::new();
    assert!(a.readers.is_some());
    let to_server = packet(1, Dir::ToServer, &client);
    a.on_stream(Dir::ToServer, Chunk::Data(&client), &to_server, &mut out);
    assert!(a.readers.is_some(), "the server's hello is still to come");
    let to_client = packet(2, Dir::ToClient, &server);
    a.on_stream(Dir::ToClient, Chunk::Data(&server), &to_client, &mut out);
    assert!(a.finished_reading());
    assert!(
        a.readers.is_none(),
        "both hellos read: the readers are freed"
    );
    assert!(a.shape.is_some(), "the record shapes are still watched");
    assert_eq!(out.len(), 1, "the record is written");
    // A record no TLS peer sends: the shape walk stops with nothing left
    // to conclude (no application record yet), and is freed.
    let junk = packet(3, Dir::ToServer, b"SSH-2.0-x\r\n");
    a.on_stream(
        Dir::ToServer,
        Chunk::Data(b"SSH-2.0-x\r\n"),
        &junk,
        &mut out,
    );
    assert!(a.shape.is_none());
    assert!(a.done());
}

proptest! {
    /// The packed hello gives back every list as parsed, whatever their
    /// lengths (empty ones included).
    #[test]
    fn packing_keeps_every_list(
        lists in proptest::collection::vec(proptest::collection::vec(any::<u16>(), 0..40), 5),
        formats in proptest::collection::vec(any::<u8>(), 0..4),
        alpn in proptest::collection::vec("[a-z0-9/.]{1,8}", 0..3),
    ) {
        let fields = ClientHelloFields {
            legacy_version: 0x0303,
            ciphers: lists[0].clone(),
            extensions: lists[1].clone(),
            supported_versions: lists[2].clone(),
            groups: lists[3].clone(),
            sig_algs: lists[4].clone(),
            point_formats: formats.clone(),
            sni: Some("example.com".into()),
            alpn_first: alpn.first().map(|a| a.as_bytes().to_vec()),
            alpn: alpn.clone(),
        };
        let packed = ClientHello::from(fields);
        prop_assert_eq!(packed.ciphers(), &lists[0][..]);
        prop_assert_eq!(packed.extensions(), &lists[1][..]);
        prop_assert_eq!(packed.supported_versions(), &lists[2][..]);
        prop_assert_eq!(packed.groups(), &lists[3][..]);
        prop_assert_eq!(packed.sig_algs(), &lists[4][..]);
        prop_assert_eq!(packed.point_formats(), &formats[..]);
        prop_assert_eq!(packed.sni(), Some("example.com"));
        prop_assert_eq!(packed.alpn().collect::<Vec<_>>(), alpn.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(packed.alpn_first(), alpn.first().map(|a| a.as_bytes()));
    }
}
