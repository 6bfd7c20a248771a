use super::*;
use std::net::Ipv4Addr;

const T0: u64 = 1_750_000_000;

fn msg(ms: u64, qname: &str, qtype: u16, response: bool, size: u32) -> Message<'_> {
    Message {
        ts: Timestamp::from_nanos(T0 * NANOS_PER_SEC + ms * 1_000_000),
        flow_id: 7,
        client: IpAddr::V4(Ipv4Addr::new(10, 10, 0, 5)),
        resolver: Endpoint {
            addr: IpAddr::V4(Ipv4Addr::new(10, 10, 0, 53)),
            port: 53,
        },
        response,
        qname,
        qtype,
        size,
    }
}

/// A deterministic base32-looking label of `len` characters.
fn label(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz012345";
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = mix(x);
            char::from(ALPHABET[(x % 32) as usize])
        })
        .collect()
}

#[test]
fn name_shapes() {
    let s = name_shape("vaaaakardli.pirate.sea").expect("counted");
    assert_eq!(s.domain, "pirate.sea");
    assert_eq!(s.length, 11);
    let long = format!("{}.{}.t.example.com", label(1, 50), label(2, 40));
    let s = name_shape(&long).expect("counted");
    assert_eq!(s.domain, "example.com");
    assert!(s.encoded(), "{s:?}");
    assert!(s.entropy > 4.0, "{s:?}");
    let odd = name_shape("zi1aaa0123\\xbc\\xbd\\xbe\\xbf\\xc0.pirate.sea").expect("counted");
    assert_eq!((odd.length, odd.odd), (15, 5));
    assert!(odd.encoded());
    // cloudfront.net is a public suffix: each distribution is a domain.
    assert_eq!(name_shape("d3c33hcgiwev3.cloudfront.net"), None);
    for plain in [
        "www.google.com",
        "r3---sn-4g5e6nsz.googlevideo.com",
        "ec2-54-12-34-56.compute-1.amazonaws.com",
        "4.3.2.1.zen.spamhaus.org",
    ] {
        // None where the cloud's name is a public suffix of its own.
        let s = name_shape(plain);
        assert!(s.as_ref().is_none_or(|s| !s.encoded()), "{plain}: {s:?}");
    }
    for skipped in [
        "printer._ipp._tcp.local",
        "1.2.3.4.in-addr.arpa",
        "b.f.0.0.ip6.arpa",
        "wpad",
        "example.com",
        "_ldap._tcp.example.com",
    ] {
        assert_eq!(name_shape(skipped), None, "{skipped}");
    }
    let srv = name_shape("_ldap._tcp.dc._msdcs.corp.example.com").expect("dc counted");
    assert_eq!(srv.length, 6); // "dc" and "corp"
}

#[test]
fn an_iodine_like_tunnel_is_found_once() {
    let mut d = DnsTunnels::new(DnsTunnelConfig::default());
    let names: Vec<String> = (0..400u64)
        .map(|i| format!("{}.{}.pirate.sea", label(i, 60), label(i + 1000, 40)))
        .collect();
    let mut found = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ms = i as u64 * 100;
        found.extend(d.observe(&msg(ms, name, 10, false, 140)));
        found.extend(d.observe(&msg(ms + 5, name, 10, true, 1100)));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!((f.level, f.domain.as_str()), (1, "pirate.sea"));
    assert!((46..=52).contains(&f.counts.unique), "{:?}", f.counts);
    assert_eq!(f.shapes, ["names", "types", "volume", "answers"]);
    assert!(f
        .summary()
        .starts_with("dns-tunnel from 10.10.0.5 via 10.10.0.53: "));
    assert!(f.sample.ends_with(".pirate.sea") || f.sample.len() == SAMPLE_LEN);
}

#[test]
fn a_short_name_tunnel_with_data_types_is_found() {
    // iodine's polls: short unique names, NULL queries, large answers.
    let mut d = DnsTunnels::new(DnsTunnelConfig::default());
    let names: Vec<String> = (0..120u64)
        .map(|i| format!("{}.t.example.org", label(i, 6)))
        .collect();
    let found: Vec<_> = names
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            let ms = i as u64 * 1000;
            [
                d.observe(&msg(ms, n, 10, false, 40)),
                d.observe(&msg(ms + 1, n, 10, true, 900)),
            ]
        })
        .flatten()
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].shapes, ["types", "answers"]);
}

#[test]
fn ordinary_lookups_are_not_tracked() {
    let mut d = DnsTunnels::new(DnsTunnelConfig::default());
    for i in 0..2000u64 {
        let name = format!("host{}.site{}.com", i % 37, i % 401);
        assert!(d.observe(&msg(i * 50, &name, 1, false, 40)).is_none());
        assert!(d.observe(&msg(i * 50 + 3, &name, 1, true, 120)).is_none());
    }
    assert_eq!(d.clients(), 0);
}

#[test]
fn cdn_hashed_names_and_blocklists_are_silent() {
    let mut d = DnsTunnels::new(DnsTunnelConfig::default());
    let mut found = Vec::new();
    for i in 0..600u64 {
        // A CDN's hashed labels, long cloud names and a mail server's
        // blocklist lookups (A, and TXT for the listed ones).
        let cdn = format!("d{}.cloudfront.net", label(i, 13));
        let elb = format!("k8s-{}-{}.elb.us-east-1.amazonaws.com", label(i, 8), i);
        let ip = [i % 251, i / 7 % 251, 17, 198];
        let bl = format!("{}.{}.{}.{}.zen.spamhaus.org", ip[0], ip[1], ip[2], ip[3]);
        let t = i * 400;
        for (name, qtype) in [(&cdn, 1), (&elb, 1), (&bl, 1)] {
            found.extend(d.observe(&msg(t, name, qtype, false, 60)));
            found.extend(d.observe(&msg(t + 1, name, qtype, true, 200)));
        }
        if i % 5 == 0 {
            found.extend(d.observe(&msg(t + 2, &bl, 16, false, 60)));
            found.extend(d.observe(&msg(t + 3, &bl, 16, true, 180)));
        }
    }
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_quiet_window_ends_the_episode() {
    let mut d = DnsTunnels::new(DnsTunnelConfig::default());
    let count = |d: &mut DnsTunnels, start: u64| {
        (0..100u64)
            .filter_map(|i| {
                let name = format!("{}.pirate.sea", label(start + i, 50));
                d.observe(&msg(start + i * 100, &name, 16, false, 100))
            })
            .count()
    };
    assert_eq!(count(&mut d, 0), 1);
    assert_eq!(count(&mut d, 1_000_000), 1); // 1000 s later
}

#[test]
fn clients_and_domains_are_bounded_and_drops_counted() {
    let cfg = DnsTunnelConfig {
        max_clients: 8,
        domains_per_client: 4,
        ..DnsTunnelConfig::default()
    };
    let mut d = DnsTunnels::new(cfg);
    for c in 0..40u8 {
        for dom in 0..6u64 {
            let name = format!("{}.example{dom}.net", label(dom, 30));
            let mut m = msg(u64::from(c) * 10 + dom, &name, 16, false, 80);
            m.client = IpAddr::from([10, 11, 0, c]);
            d.observe(&m);
        }
    }
    assert!(d.clients() <= 8, "{}", d.clients());
    let per_client = d.clients.values().map(|c| c.domains.len()).max();
    assert_eq!(per_client, Some(4));
    // 2 domains replaced per client, and the clients let go.
    assert!(d.dropped() >= 40 * 2 + 30, "{}", d.dropped());
}
