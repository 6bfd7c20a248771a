use super::wire::tests::Builder;
use super::*;
use crate::analyzer::names::NameCacheConfig;
use crate::analyzer::testkit::{ctx, hex, packet, play};
use crate::json::Rendered;
use proptest::prelude::*;
use serde_json::json;

// Lab capture h_benign_dns_https_http.pcap: 10.10.0.10 asks 198.51.100.53.
const QUERY_WWW: &str = "98d50120000100000000000103777777076578616d706c6503636f6d000001000100002904d000000000000c000a000813350289d8935116";
const ANSWER_WWW: &str = "98d58580000100010000000103777777076578616d706c6503636f6d0000010001c00c00010001000000000004cb00715000002904d0000000000000";
const REFUSED_AAAA: &str = "057e8185000100000000000103777777076578616d706c6503636f6d00001c000100002904d0000000000006000f0002000e";
const ANSWER_MX: &str = "fef085800001000100000001076578616d706c6503636f6d00000f0001c00c000f0001000000000014000a046d61696c076578616d706c6503636f6d0000002904d0000000000000";

const CLIENT: &str = "10.10.0.10:43869";
const RESOLVER: &str = "198.51.100.53:53";

fn cache() -> Arc<NameCache> {
    Arc::new(NameCache::new(NameCacheConfig {
        min_ttl_secs: 60,
        ..NameCacheConfig::default()
    }))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn names(cache: &NameCache, client: &str, addr: &str) -> Vec<String> {
    let now = Timestamp::from_secs(1_010);
    cache
        .lookup(ip(client), ip(addr), now)
        .iter()
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn udp_query_and_answer_from_lab_capture() {
    let cache = cache();
    let p = DnsProtocol::new(Arc::clone(&cache));
    let c = ctx(proto::UDP, CLIENT, RESOLVER);
    let (q, a) = (hex(QUERY_WWW), hex(ANSWER_WWW));
    let played = play(&p, &c, &[(Dir::ToServer, &q), (Dir::ToClient, &a)]);
    assert_eq!(played.matched_at, Some(1));
    let ev = &played.events;
    assert_eq!(ev.len(), 2);
    assert!(ev
        .iter()
        .all(|e| e.event_type == "dns" && e.extra.is_none()));
    assert_eq!(
        ev[0].body.to_value(),
        json!({"version": 3, "type": "request", "id": 0x98d5, "flags": "120", "rd": true,
               "opcode": 0, "queries": [{"rrname": "www.example.com", "rrtype": "A"}]})
    );
    assert_eq!(
        ev[1].body.to_value(),
        json!({"version": 3, "type": "response", "id": 0x98d5, "flags": "8580", "qr": true,
               "aa": true, "rd": true, "ra": true, "opcode": 0, "rcode": "NOERROR",
               "queries": [{"rrname": "www.example.com", "rrtype": "A"}],
               "answers": [{"rrname": "www.example.com", "rrtype": "A", "ttl": 0,
                            "rdata": "203.0.113.80"}],
               "grouped": {"A": ["203.0.113.80"]}})
    );
    assert_eq!(
        names(&cache, "10.10.0.10", "203.0.113.80"),
        ["www.example.com"]
    );
    assert!(names(&cache, "198.51.100.53", "203.0.113.80").is_empty());
}

/// Suricata's version 2: a `query` record per question, an `answer`
/// record per response with `answers` and `grouped`.
#[test]
fn version_2_layout_as_suricata_writes_it() {
    let p = DnsProtocol::new(cache()).with_version(DnsVersion::V2);
    let c = ctx(proto::UDP, CLIENT, RESOLVER);
    let (q, a) = (hex(QUERY_WWW), hex(ANSWER_WWW));
    let played = play(&p, &c, &[(Dir::ToServer, &q), (Dir::ToClient, &a)]);
    let ev: Vec<_> = played.events.iter().map(|e| e.body.to_value()).collect();
    assert_eq!(
        ev,
        [
            json!({"version": 2, "type": "query", "id": 0x98d5, "rrname": "www.example.com",
                   "rrtype": "A", "tx_id": 0, "opcode": 0}),
            json!({"version": 2, "type": "answer", "id": 0x98d5, "flags": "8580", "qr": true,
                   "aa": true, "rd": true, "ra": true, "opcode": 0,
                   "rrname": "www.example.com", "rrtype": "A", "rcode": "NOERROR",
                   "answers": [{"rrname": "www.example.com", "rrtype": "A", "ttl": 0,
                                "rdata": "203.0.113.80"}],
                   "grouped": {"A": ["203.0.113.80"]}}),
        ]
    );
    let chained = chained_response(0);
    let played = play(&p, &c, &[(Dir::ToClient, &chained)]);
    assert_eq!(
        played.events[0].body.to_value()["grouped"],
        json!({"CNAME": ["lb.corp.example", "edge.cdn.example"],
               "A": ["192.0.2.7", "192.0.2.66"], "AAAA": ["2001:db8::7"]})
    );
}

/// An mDNS-style response without a question: no `queries` key (v3) and
/// no `rrname` (v2), never an empty list.
#[test]
fn a_response_without_a_question_has_no_queries_key() {
    let mut b = Builder::header(0, 0x8400, [0, 1, 0, 0]);
    b.name("printer.local")
        .rr_tail(rtype::A, 120, &[10, 0, 0, 9]);
    let c = ctx(proto::UDP, "10.10.0.9:5353", "224.0.0.251:5353");
    for version in [DnsVersion::V3, DnsVersion::V2] {
        let p = DnsProtocol::new(cache()).with_version(version);
        let played = play(&p, &c, &[(Dir::ToServer, &b.buf)]);
        assert_eq!(played.events.len(), 1, "{version:?}");
        let body = played.events[0].body.to_value();
        assert!(body.get("queries").is_none(), "{body}");
        assert!(body.get("rrname").is_none(), "{body}");
        assert_eq!(body["answers"][0]["rrname"], "printer.local");
    }
    assert_eq!(DnsVersion::parse("2"), Some(DnsVersion::V2));
    assert_eq!(DnsVersion::parse("3"), Some(DnsVersion::V3));
    assert_eq!(DnsVersion::parse("1"), None);
    assert_eq!(
        DnsVersion::default(),
        DnsVersion::V3,
        "Suricata 8's default"
    );
}

#[test]
fn refused_and_mx_answers_teach_no_addresses() {
    let cache = cache();
    let p = DnsProtocol::new(Arc::clone(&cache));
    let c = ctx(proto::UDP, CLIENT, RESOLVER);
    let (r, mx) = (hex(REFUSED_AAAA), hex(ANSWER_MX));
    let played = play(&p, &c, &[(Dir::ToClient, &r), (Dir::ToClient, &mx)]);
    assert_eq!(played.events[0].body.to_value()["rcode"], "REFUSED");
    assert_eq!(
        played.events[1].body.to_value()["answers"][0]["rdata"],
        "mail.example.com"
    );
    assert!(cache.is_empty());
}

/// A response to `question` with a CNAME chain and addresses, plus one
/// out-of-chain A record that must not be learned.
fn chained_response(rcode: u16) -> Vec<u8> {
    let mut b = Builder::header(9, 0x8180 | rcode, [1, 5, 0, 0]);
    b.question("Git.Corp.Example", rtype::A);
    let cname = |b: &mut Builder, owner: &str, target: &str, ttl: u32| {
        let mut t = Builder::default();
        t.name(target);
        b.name(owner).rr_tail(rtype::CNAME, ttl, &t.buf);
    };
    cname(&mut b, "git.corp.example", "lb.corp.example", 600);
    cname(&mut b, "lb.corp.example", "edge.cdn.example", 120);
    b.name("edge.cdn.example")
        .rr_tail(rtype::A, 300, &[192, 0, 2, 7]);
    b.name("EDGE.cdn.example")
        .rr_tail(rtype::AAAA, 300, &ip6("2001:db8::7"));
    b.name("evil.example")
        .rr_tail(rtype::A, 300, &[192, 0, 2, 66]);
    b.buf
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn cname_chain_maps_every_name_to_final_addresses() {
    let buf = chained_response(0);
    let msg = Message::parse(&buf).unwrap();
    let got: Vec<(String, &str, u32)> = resolutions(&msg)
        .into_iter()
        .map(|r| (r.addr.to_string(), r.name, r.ttl))
        .collect();
    let want = [
        ("192.0.2.7", "Git.Corp.Example", 120),
        ("192.0.2.7", "lb.corp.example", 120),
        ("192.0.2.7", "edge.cdn.example", 120),
        ("2001:db8::7", "Git.Corp.Example", 120),
        ("2001:db8::7", "lb.corp.example", 120),
        ("2001:db8::7", "edge.cdn.example", 120),
    ];
    let want: Vec<(String, &str, u32)> = want
        .iter()
        .map(|&(a, n, t)| (a.to_string(), n, t))
        .collect();
    assert_eq!(got, want);

    let nx = chained_response(3);
    assert!(resolutions(&Message::parse(&nx).unwrap()).is_empty());
}

#[test]
fn cname_cycle_terminates() {
    let mut b = Builder::header(9, 0x8180, [1, 3, 0, 0]);
    b.question("a.example", rtype::A);
    for (owner, target) in [("a.example", "b.example"), ("b.example", "a.example")] {
        let mut t = Builder::default();
        t.name(target);
        b.name(owner).rr_tail(rtype::CNAME, 60, &t.buf);
    }
    b.name("b.example").rr_tail(rtype::A, 60, &[192, 0, 2, 1]);
    let msg = Message::parse(&b.buf).unwrap();
    let got: Vec<&str> = resolutions(&msg).iter().map(|r| r.name).collect();
    assert_eq!(got, ["a.example", "b.example"]);
}

#[test]
fn analyzer_learns_chain_for_the_receiving_client() {
    let cache = cache();
    let p = DnsProtocol::new(Arc::clone(&cache));
    let c = ctx(proto::UDP, "10.10.0.20:5000", RESOLVER);
    let buf = chained_response(0);
    play(&p, &c, &[(Dir::ToClient, &buf)]);
    let got = names(&cache, "10.10.0.20", "192.0.2.7");
    assert_eq!(
        got,
        ["git.corp.example", "lb.corp.example", "edge.cdn.example"]
    );
    assert!(names(&cache, "10.10.0.20", "192.0.2.66").is_empty());
}

#[test]
fn untrusted_resolver_is_not_learned() {
    let cache = cache();
    let trusted = vec!["10.96.0.0/12".parse().unwrap()];
    let p = DnsProtocol::new(Arc::clone(&cache)).with_trusted_resolvers(trusted);
    let buf = chained_response(0);
    let outside = ctx(proto::UDP, "10.10.0.20:5000", RESOLVER);
    play(&p, &outside, &[(Dir::ToClient, &buf)]);
    assert!(cache.is_empty());
    let inside = ctx(proto::UDP, "10.10.0.20:5000", "10.96.0.10:53");
    play(&p, &inside, &[(Dir::ToClient, &buf)]);
    assert_eq!(names(&cache, "10.10.0.20", "192.0.2.7").len(), 3);
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

#[test]
fn tcp_messages_split_and_coalesced() {
    let cache = cache();
    let p = DnsProtocol::new(Arc::clone(&cache));
    let c = ctx(proto::TCP, "10.10.0.10:40000", "198.51.100.53:5353");
    let q = framed(&hex(QUERY_WWW));
    let mut answers = framed(&hex(ANSWER_WWW));
    answers.extend_from_slice(&framed(&chained_response(0)));
    // Client: length prefix alone, then the message in two pieces.
    // Server: both answers in one chunk cut inside the second one.
    let cut = answers.len() - 20;
    let segs: [(Dir, &[u8]); 5] = [
        (Dir::ToServer, &q[..2]),
        (Dir::ToServer, &q[2..20]),
        (Dir::ToServer, &q[20..]),
        (Dir::ToClient, &answers[..cut]),
        (Dir::ToClient, &answers[cut..]),
    ];
    let played = play(&p, &c, &segs);
    assert_eq!(played.matched_at, Some(3));
    let types: Vec<serde_json::Value> = played
        .events
        .iter()
        .map(|e| e.body.to_value()["type"].clone())
        .collect();
    assert_eq!(types, ["request", "response", "response"]);
    assert_eq!(
        names(&cache, "10.10.0.10", "203.0.113.80"),
        ["www.example.com"]
    );
    assert_eq!(names(&cache, "10.10.0.10", "192.0.2.7").len(), 3);
}

#[test]
fn tcp_gap_lets_the_direction_go() {
    let c = ctx(proto::TCP, "10.10.0.10:40000", "198.51.100.53:53");
    let mut a = DnsAnalyzer::new(&c, cache(), None);
    let mut out = Vec::new();
    let q = framed(&hex(QUERY_WWW));
    let pkt = packet(1, Dir::ToServer, &q);
    a.on_stream(Dir::ToServer, Chunk::Data(&q[..10]), &pkt, &mut out);
    a.on_stream(Dir::ToServer, Chunk::Gap(100), &pkt, &mut out);
    assert!(!a.wants_stream(Dir::ToServer));
    assert!(a.wants_stream(Dir::ToClient));
    assert_eq!(a.counters().gaps, 1);
    assert!(out.is_empty());
}

#[test]
fn malformed_messages_are_counted_and_logged_with_what_was_read() {
    let c = ctx(proto::UDP, CLIENT, RESOLVER);
    let mut a = DnsAnalyzer::new(&c, cache(), None);
    let mut out = Vec::new();
    let mut looped = Builder::header(1, 0x8180, [1, 1, 0, 0]);
    looped
        .question("x.example", 1)
        .pointer(40)
        .rr_tail(1, 5, &[1, 2, 3, 4]);
    let answer = hex(ANSWER_WWW);
    let inputs: [&[u8]; 4] = [&looped.buf, &answer[..30], &[1, 2, 3], &[]];
    for (i, bytes) in inputs.iter().enumerate() {
        a.on_packet(&packet(i as u64 + 1, Dir::ToClient, bytes), &mut out);
    }
    let n = a.counters();
    assert_eq!(n.messages, 3);
    assert_eq!(n.errors[DnsError::BadPointer.index()], 1);
    assert_eq!(n.errors[DnsError::Truncated.index()], 2);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].body.to_value()["queries"][0]["rrname"], "x.example");
    assert_eq!(
        out[0].extra.as_ref().map(Rendered::to_value),
        Some(json!({"parse_error": "bad_pointer"}))
    );
}

#[test]
fn probes_reject_other_protocols() {
    let tls = hex("16030100c8010000c403032204f4877dbaa7f3398c7e4bea3dc3f36766505a723a8a8ba8");
    let cases: [(&str, &[u8]); 5] = [
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "json",
            b"{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": []}\n",
        ),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
        ("tls", &tls),
        ("zeros", &[0u8; 40]),
    ];
    for (what, data) in cases {
        assert_eq!(probe_datagram(data), Probe::NoMatch, "udp {what}");
        assert_eq!(probe_tcp(data), Probe::NoMatch, "tcp {what}");
    }
    assert_eq!(probe_datagram(&hex(QUERY_WWW)), Probe::Match);
    assert_eq!(probe_tcp(&framed(&hex(QUERY_WWW))), Probe::Match);
    assert_eq!(probe_tcp(&[0]), Probe::NeedMore);
}

proptest! {
    #[test]
    fn analyzer_never_panics_on_arbitrary_input(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        tcp in any::<bool>(),
    ) {
        let c = ctx(if tcp { proto::TCP } else { proto::UDP }, CLIENT, RESOLVER);
        let mut a = DnsAnalyzer::new(&c, cache(), None);
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let dir = if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
            let pkt = packet(i as u64, dir, chunk);
            a.on_packet(&pkt, &mut out);
            if tcp {
                a.on_stream(dir, Chunk::Data(chunk), &pkt, &mut out);
            }
            let _ = probe_tcp(chunk);
            let _ = probe_datagram(chunk);
        }
    }
}
