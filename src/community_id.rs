//! Community ID v1 (corelight/community-id-spec): a hash of the flow tuple
//! that Zeek, Suricata and Elastic compute identically, so our records join
//! theirs.

use crate::flow::key::FlowKey;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// `1:` + base64(SHA-1(seed, saddr, daddr, proto, 0, sport, dport)).
///
/// The key's canonical order is Community ID's order, so no swap happens
/// here; ports are left out for protocols without them.
pub fn community_id(key: &FlowKey, seed: u16) -> String {
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    update_addr(&mut h, key.lo.addr);
    update_addr(&mut h, key.hi.addr);
    h.update([key.proto, 0]);
    if key.has_ports() {
        h.update(key.lo.port.to_be_bytes());
        h.update(key.hi.port.to_be_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut out);
    out
}

fn update_addr(h: &mut Sha1, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::{icmp_ports, Endpoint};

    fn key(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FlowKey {
        let s = Endpoint {
            addr: src.parse().unwrap(),
            port: sport,
        };
        let d = Endpoint {
            addr: dst.parse().unwrap(),
            port: dport,
        };
        FlowKey::new(s, d, proto, false).0
    }

    // Baseline values published with the Community ID specification.
    #[test]
    fn spec_baseline_tcp_udp() {
        let tcp = key("1.2.3.4", 1122, "5.6.7.8", 3344, 6);
        assert_eq!(community_id(&tcp, 0), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        let rev = key("5.6.7.8", 3344, "1.2.3.4", 1122, 6);
        assert_eq!(community_id(&rev, 0), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        let udp = key("1.2.3.4", 1122, "5.6.7.8", 3344, 17);
        assert_eq!(community_id(&udp, 0), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=");
        assert_eq!(community_id(&tcp, 1), "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=");
    }

    /// The spec's baseline vectors (baseline/baseline_deflt.json), ports
    /// already mapped to ICMP port equivalents, port-less when `None`.
    #[test]
    fn spec_baseline_vectors() {
        type Case<'a> = (u8, &'a str, &'a str, Option<(u16, u16)>, &'a str);
        let cases: &[Case] = &[
            (
                58,
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                Some((135, 136)),
                "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            ),
            (
                58,
                "fe80::260:97ff:fe07:69ea",
                "fe80::200:86ff:fe05:80da",
                Some((136, 135)),
                "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            ),
            (
                58,
                "fe80::260:97ff:fe07:69ea",
                "fe80::200:86ff:fe05:80da",
                Some((135, 136)),
                "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            ),
            (
                58,
                "3ffe:501:1800:2345::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                Some((3, 0)),
                "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            ),
            (
                58,
                "3ffe:507:0:1:200:86ff:fe05:80da",
                "3ffe:501:0:1001::2",
                Some((128, 129)),
                "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            ),
            (
                58,
                "3ffe:501:0:1001::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                Some((129, 128)),
                "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            ),
            (
                1,
                "192.168.0.89",
                "192.168.0.1",
                Some((8, 0)),
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                1,
                "192.168.0.1",
                "192.168.0.89",
                Some((0, 8)),
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                1,
                "10.0.0.1",
                "10.0.0.2",
                Some((11, 0)),
                "1:YHxtAirCG//0OzkcVAukqKQN9xM=",
            ),
            (
                6,
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                "2607:f8b0:400c:c03::1a",
                Some((63943, 25)),
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                132,
                "192.168.170.8",
                "192.168.170.56",
                Some((7, 7)),
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                6,
                "66.35.250.204",
                "128.232.110.120",
                Some((80, 34855)),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                17,
                "8.8.8.8",
                "192.168.1.52",
                Some((53, 54585)),
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                46,
                "10.1.12.2",
                "10.1.12.1",
                None,
                "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            ),
        ];
        for &(proto, src, dst, ports, want) in cases {
            let (sport, dport) = ports.unwrap_or((0, 0));
            // One-way ICMP types are the ones whose "dport" is a code.
            let one_way = matches!(proto, 1 | 58) && icmp_ports(proto == 58, sport as u8, 0).2;
            let s = Endpoint {
                addr: src.parse().unwrap(),
                port: sport,
            };
            let d = Endpoint {
                addr: dst.parse().unwrap(),
                port: dport,
            };
            let (k, _) = FlowKey::new(s, d, proto, one_way);
            assert_eq!(community_id(&k, 0), want, "{proto} {src} {dst}");
        }
    }
}
