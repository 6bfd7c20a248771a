use super::*;
use crate::analyzer::testkit::hex;

/// Plays the handshake: each (dir, bytes) fed whole; returns the bytes of
/// each direction the handshake did not take (inner data).
fn run(hs: &mut Handshake, parts: &[(Dir, &[u8])]) -> [Vec<u8>; 2] {
    let mut rest: [Vec<u8>; 2] = Default::default();
    for &(dir, data) in parts {
        let d = dir.index();
        rest[d].extend_from_slice(data);
        loop {
            let n = if hs.wants(dir) {
                hs.feed(dir, &rest[d])
            } else {
                0
            };
            rest[d].drain(..n);
            // The other direction may be wanted now.
            let o = dir.reverse();
            let m = if hs.wants(o) {
                hs.feed(o, &rest[o.index()])
            } else {
                0
            };
            rest[o.index()].drain(..m);
            if n == 0 && m == 0 {
                break;
            }
        }
    }
    rest
}

#[test]
fn connect_after_a_407_is_established_with_its_target() {
    let req1 = b"CONNECT ssh.example.net:22 HTTP/1.1\r\nHost: ssh.example.net:22\r\n\r\n";
    assert_eq!(probe(Dir::ToServer, &req1[..5]), Probe::NeedMore);
    assert_eq!(probe(Dir::ToServer, req1), Probe::Match);
    assert_eq!(probe(Dir::ToClient, req1), Probe::NoMatch);
    let mut hs = Handshake::for_bytes(req1);
    let deny = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\ndenied";
    let req2 = b"CONNECT ssh.example.net:22 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n";
    let ok = b"HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n";
    let rest = run(
        &mut hs,
        &[
            (Dir::ToServer, req1),
            (Dir::ToClient, &deny[..deny.len() - 1]),
            (Dir::ToServer, req2),
            (Dir::ToClient, ok),
        ],
    );
    assert_eq!(hs.progress(), Progress::Established);
    let hop = hs.hop().unwrap();
    assert_eq!(
        (hop.via, &*hop.host, hop.port),
        (Via::HttpConnect, "ssh.example.net", 22)
    );
    assert_eq!(hop.name(), Some("ssh.example.net"));
    assert_eq!(rest[1], b"SSH-2.0-OpenSSH_9.2\r\n");
    assert!(rest[0].is_empty());
    let records = hs.take_records();
    let statuses: Vec<_> = records.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [Some(407), Some(200)]);
}

#[test]
fn connect_refused_fails_after_the_attempts() {
    let req = b"CONNECT 10.0.0.1:22 HTTP/1.0\r\n\r\n";
    let no = b"HTTP/1.0 403 Forbidden\r\n\r\n";
    let mut hs = Handshake::for_bytes(req);
    let parts: Vec<(Dir, &[u8])> = (0..connect::MAX_ATTEMPTS)
        .flat_map(|_| [(Dir::ToServer, &req[..]), (Dir::ToClient, &no[..])])
        .collect();
    run(&mut hs, &parts);
    assert_eq!(hs.progress(), Progress::Failed);
    assert!(hs.hop().is_none());
}

#[test]
fn client_bytes_sent_before_the_reply_wait_for_it() {
    let mut hs = Handshake::for_bytes(b"CONNECT ");
    let mut both = b"CONNECT h:443 HTTP/1.1\r\n\r\n".to_vec();
    both.extend_from_slice(b"\x16\x03\x01");
    let n = hs.feed(Dir::ToServer, &both);
    assert_eq!(&both[n..], b"\x16\x03\x01");
    assert!(!hs.wants(Dir::ToServer));
    assert!(hs.wants(Dir::ToClient));
}

#[test]
fn socks4_and_4a() {
    let v4 = hex("04 01 0016 c6336417 7573657200");
    assert_eq!(probe(Dir::ToServer, &v4), Probe::Match);
    let mut hs = Handshake::for_bytes(&v4);
    run(
        &mut hs,
        &[
            (Dir::ToServer, &v4),
            (Dir::ToClient, &hex("00 5a 0000 00000000")),
        ],
    );
    assert_eq!(hs.progress(), Progress::Established);
    let hop = hs.hop().unwrap();
    assert_eq!(
        (hop.via, &*hop.host, hop.port),
        (Via::Socks4, "198.51.100.23", 22)
    );

    let mut v4a = hex("04 01 01bb 00000001 00");
    v4a.extend_from_slice(b"pool.example.org\0");
    assert_eq!(probe(Dir::ToServer, &v4a[..12]), Probe::NeedMore);
    assert_eq!(probe(Dir::ToServer, &v4a), Probe::Match);
    let mut hs = Handshake::for_bytes(&v4a);
    run(
        &mut hs,
        &[
            (Dir::ToServer, &v4a),
            (Dir::ToClient, &hex("00 5b 0000 00000000")),
        ],
    );
    assert_eq!(hs.progress(), Progress::Failed);
    assert_eq!(&*hs.hop().unwrap().host, "pool.example.org");
}

#[test]
fn socks5_with_password_and_a_name_replied_with_inner_bytes() {
    let greeting = hex("05 02 00 02");
    assert_eq!(probe(Dir::ToServer, &greeting), Probe::Match);
    let mut hs = Handshake::for_bytes(&greeting);
    let mut request = hex("05 01 00 03 0f");
    request.extend_from_slice(b"vps.example.net");
    request.extend_from_slice(&[0x01, 0xbb]);
    let mut reply = hex("05 00 00 01 0a000001 9c40");
    reply.extend_from_slice(b"SSH-2.0-x\r\n");
    let rest = run(
        &mut hs,
        &[
            (Dir::ToServer, &greeting),
            (Dir::ToClient, &hex("05 02")),
            (Dir::ToServer, &hex("01 01 75 01 70")),
            (Dir::ToClient, &hex("01 00")),
            (Dir::ToServer, &request),
            (Dir::ToClient, &reply),
        ],
    );
    assert_eq!(hs.progress(), Progress::Established);
    let hop = hs.hop().unwrap();
    assert_eq!(
        (&*hop.host, hop.port, hop.addr),
        ("vps.example.net", 443, None)
    );
    assert_eq!(rest[1], b"SSH-2.0-x\r\n");
}

#[test]
fn socks5_greeting_and_request_in_one_segment() {
    let mut both = hex("05 01 00");
    both.extend_from_slice(&hex("05 01 00 04 20010db8000000000000000000000001 0016"));
    assert_eq!(probe(Dir::ToServer, &both), Probe::Match);
    let mut hs = Handshake::for_bytes(&both);
    let reply = hex("05 00 00 01 00000000 0000");
    run(
        &mut hs,
        &[
            (Dir::ToServer, &both),
            (Dir::ToClient, &hex("05 00")),
            (Dir::ToClient, &reply),
        ],
    );
    assert_eq!(hs.progress(), Progress::Established);
    assert_eq!(&*hs.hop().unwrap().host, "2001:db8::1");
}

#[test]
fn socks5_gssapi_or_no_method_fails() {
    let greeting = hex("05 01 01");
    let mut hs = Handshake::for_bytes(&greeting);
    run(
        &mut hs,
        &[(Dir::ToServer, &greeting), (Dir::ToClient, &hex("05 ff"))],
    );
    assert_eq!(hs.progress(), Progress::Failed);
}

#[test]
fn proxy_header_v1_and_v2() {
    let v1 = b"PROXY TCP4 10.81.1.10 10.81.1.10 40000 2222\r\nSSH-2.0-x\r\n";
    assert_eq!(probe(Dir::ToServer, v1), Probe::Match);
    let mut hs = Handshake::for_bytes(v1);
    let rest = run(&mut hs, &[(Dir::ToServer, v1)]);
    assert_eq!(hs.progress(), Progress::Established);
    assert_eq!(rest[0], b"SSH-2.0-x\r\n");
    let hop = hs.hop().unwrap();
    assert_eq!((hop.via, hop.port), (Via::ProxyV1, 2222));
    assert!(!hop.via.redirects());

    let mut v2 = proxy_header::V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&hex("21 11 000c 0a51010a 0a51020a 9c40 08ae"));
    assert_eq!(probe(Dir::ToServer, &v2[..13]), Probe::Match);
    let mut hs = Handshake::for_bytes(&v2);
    run(
        &mut hs,
        &[(Dir::ToServer, &v2[..7]), (Dir::ToServer, &v2[7..])],
    );
    assert_eq!(hs.progress(), Progress::Established);
    let hop = hs.hop().unwrap();
    assert_eq!((&*hop.host, hop.port), ("10.81.2.10", 2222));
    assert_eq!(hop.source, Some(("10.81.1.10".parse().unwrap(), 40000)));
}

#[test]
fn other_protocols_are_not_claimed() {
    let mut dns_tcp = vec![0x05, 0x10];
    dns_tcp.extend_from_slice(&[0u8; 0x510]);
    let cases: [&[u8]; 8] = [
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECTION: x\r\n",
        &hex("16030100c8010000c40303"),
        &dns_tcp,
        b"{\"id\":1,\"method\":\"mining.subscribe\"}\n",
        &[0x05, 0x01, 0x00, 0x99],
        &[0x04, 0x01, 0x00, 0x16, 1, 2, 3, 4, 0xff, 0],
    ];
    for data in cases {
        assert_eq!(probe(Dir::ToServer, data), Probe::NoMatch, "{data:?}");
    }
}

proptest::proptest! {
    #[test]
    fn handshakes_never_panic(first: Vec<u8>, parts: Vec<(bool, Vec<u8>)>) {
        let mut hs = Handshake::for_bytes(&first);
        let _ = probe(Dir::ToServer, &first);
        hs.feed(Dir::ToServer, &first);
        for (to_server, data) in &parts {
            let dir = if *to_server { Dir::ToServer } else { Dir::ToClient };
            let n = hs.feed(dir, data);
            proptest::prop_assert!(n <= data.len());
        }
        let _ = hs.hop();
    }
}
