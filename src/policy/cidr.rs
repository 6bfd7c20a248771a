//! Address lookups in prefix tries, one for IPv4 and one for IPv6, so the
//! cost of a lookup depends on the address width, not on the number of
//! rules. IPv4-mapped IPv6 addresses are looked up as IPv4.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::net::IpAddr;

/// A map from CIDR prefixes to values.
#[derive(Clone)]
pub struct CidrMap<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
}

impl<T> Default for CidrMap<T> {
    fn default() -> Self {
        CidrMap {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for CidrMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A prefix stands for a whole network: host bits are dropped.
pub fn canonical(net: IpNet) -> IpNet {
    net.trunc()
}

fn host_v4(addr: std::net::Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(addr)
}

fn host_v6(addr: std::net::Ipv6Addr) -> Ipv6Net {
    Ipv6Net::from(addr)
}

impl<T> CidrMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or replaces the value of `net` (host bits dropped).
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match canonical(net) {
            IpNet::V4(n) => self.v4.insert(n, value),
            IpNet::V6(n) => self.v6.insert(n, value),
        }
    }

    pub fn get_mut(&mut self, net: &IpNet) -> Option<&mut T> {
        match canonical(*net) {
            IpNet::V4(n) => self.v4.get_mut(&n),
            IpNet::V6(n) => self.v6.get_mut(&n),
        }
    }

    /// The most specific prefix holding `addr`.
    pub fn longest(&self, addr: IpAddr) -> Option<(IpNet, &T)> {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.get_lpm(&host_v4(a)).map(|(n, v)| (n.into(), v)),
            IpAddr::V6(a) => self.v6.get_lpm(&host_v6(a)).map(|(n, v)| (n.into(), v)),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.longest(addr).is_some()
    }

    /// Every prefix holding `addr`, least specific first.
    pub fn covering(&self, addr: IpAddr) -> Vec<(IpNet, &T)> {
        match addr.to_canonical() {
            IpAddr::V4(a) => self
                .v4
                .cover(&host_v4(a))
                .map(|(n, v)| (n.into(), v))
                .collect(),
            IpAddr::V6(a) => self
                .v6
                .cover(&host_v6(a))
                .map(|(n, v)| (n.into(), v))
                .collect(),
        }
    }

    /// Stored prefixes that overlap `net`: those containing it and those
    /// inside it.
    pub fn overlapping(&self, net: IpNet) -> Vec<(IpNet, &T)> {
        let mut out = Vec::new();
        match canonical(net) {
            IpNet::V4(n) => {
                out.extend(self.v4.cover(&n).map(|(p, v)| (IpNet::from(p), v)));
                out.extend(
                    self.v4
                        .children(&n)
                        .filter(|(p, _)| *p != n)
                        .map(|(p, v)| (IpNet::from(p), v)),
                );
            }
            IpNet::V6(n) => {
                out.extend(self.v6.cover(&n).map(|(p, v)| (IpNet::from(p), v)));
                out.extend(
                    self.v6
                        .children(&n)
                        .filter(|(p, _)| *p != n)
                        .map(|(p, v)| (IpNet::from(p), v)),
                );
            }
        }
        out
    }

    /// All entries, IPv4 first, each family in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &T)> {
        self.v4
            .iter()
            .map(|(n, v)| (IpNet::from(n), v))
            .chain(self.v6.iter().map(|(n, v)| (IpNet::from(n), v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_match_wins_in_both_families() {
        let mut m = CidrMap::new();
        m.insert(net("10.0.0.0/8"), "a");
        m.insert(net("10.20.0.0/16"), "b");
        m.insert(net("fd00::/8"), "c");
        assert_eq!(
            m.longest(ip("10.20.0.10")),
            Some((net("10.20.0.0/16"), &"b"))
        );
        assert_eq!(m.longest(ip("10.1.0.1")), Some((net("10.0.0.0/8"), &"a")));
        assert_eq!(m.longest(ip("11.0.0.1")), None);
        assert_eq!(m.longest(ip("fd12::1")), Some((net("fd00::/8"), &"c")));
        assert_eq!(m.longest(ip("fe80::1")), None);
        assert_eq!(m.covering(ip("10.20.1.1")).len(), 2);
    }

    #[test]
    fn mapped_ipv6_is_looked_up_as_ipv4() {
        let mut m = CidrMap::new();
        m.insert(net("192.168.0.0/16"), ());
        assert!(m.contains(ip("::ffff:192.168.3.4")));
    }

    #[test]
    fn host_bits_are_dropped() {
        let mut m = CidrMap::new();
        m.insert(net("10.1.2.3/8"), 1);
        assert_eq!(m.iter().next(), Some((net("10.0.0.0/8"), &1)));
    }

    #[test]
    fn overlapping_finds_parents_and_children() {
        let mut m = CidrMap::new();
        m.insert(net("10.0.0.0/8"), 1);
        m.insert(net("10.1.1.0/24"), 2);
        m.insert(net("192.168.0.0/16"), 3);
        let mut found: Vec<i32> = m
            .overlapping(net("10.1.0.0/16"))
            .into_iter()
            .map(|(_, v)| *v)
            .collect();
        found.sort();
        assert_eq!(found, vec![1, 2]);
        assert!(m.overlapping(net("172.16.0.0/12")).is_empty());
    }

    fn arb_v4_net() -> impl Strategy<Value = IpNet> {
        // Few distinct high bits so prefixes nest and overlap often.
        (0u32..16, 0u8..=32).prop_map(|(hi, len)| {
            let addr = std::net::Ipv4Addr::from(hi << 28 | hi << 20);
            IpNet::V4(Ipv4Net::new(addr, len).unwrap()).trunc()
        })
    }

    fn arb_v6_net() -> impl Strategy<Value = IpNet> {
        (0u128..16, 0u8..=128).prop_map(|(hi, len)| {
            let addr = std::net::Ipv6Addr::from(hi << 124 | hi << 100);
            IpNet::V6(Ipv6Net::new(addr, len).unwrap()).trunc()
        })
    }

    fn arb_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u32..16, any::<u32>())
                .prop_map(|(hi, lo)| IpAddr::from(std::net::Ipv4Addr::from(hi << 28 | (lo >> 4)))),
            (0u128..16, any::<u128>())
                .prop_map(|(hi, lo)| IpAddr::from(std::net::Ipv6Addr::from(hi << 124 | (lo >> 4)))),
        ]
    }

    proptest! {
        /// The trie agrees with a linear scan over the same prefixes.
        #[test]
        fn trie_matches_linear_scan(
            nets in proptest::collection::vec(prop_oneof![arb_v4_net(), arb_v6_net()], 0..40),
            addrs in proptest::collection::vec(arb_addr(), 1..40),
        ) {
            let mut map = CidrMap::new();
            let mut oracle: Vec<(IpNet, usize)> = Vec::new();
            for (i, n) in nets.iter().enumerate() {
                map.insert(*n, i);
                oracle.retain(|(m, _)| m != n);
                oracle.push((*n, i));
            }
            for addr in addrs {
                let mut expect: Vec<(IpNet, usize)> =
                    oracle.iter().filter(|(n, _)| n.contains(&addr)).copied().collect();
                expect.sort_by_key(|(n, _)| n.prefix_len());
                let got: Vec<(IpNet, usize)> =
                    map.covering(addr).into_iter().map(|(n, v)| (n, *v)).collect();
                prop_assert_eq!(&got, &expect);
                prop_assert_eq!(map.longest(addr).map(|(n, v)| (n, *v)), expect.last().copied());
                prop_assert_eq!(map.contains(addr), !expect.is_empty());
            }
        }

        /// `overlapping` agrees with a linear scan.
        #[test]
        fn overlap_matches_linear_scan(
            nets in proptest::collection::vec(prop_oneof![arb_v4_net(), arb_v6_net()], 0..30),
            probe in prop_oneof![arb_v4_net(), arb_v6_net()],
        ) {
            let mut map = CidrMap::new();
            for n in &nets {
                map.insert(*n, ());
            }
            let mut uniq = nets.clone();
            uniq.sort();
            uniq.dedup();
            let mut expect: Vec<IpNet> = uniq
                .into_iter()
                .filter(|n| n.contains(&probe) || probe.contains(n))
                .collect();
            expect.sort();
            let mut got: Vec<IpNet> = map.overlapping(probe).into_iter().map(|(n, _)| n).collect();
            got.sort();
            prop_assert_eq!(got, expect);
        }
    }
}
