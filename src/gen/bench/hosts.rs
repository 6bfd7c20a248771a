//! Address pools and host names, as in the reference generator: internal
//! clients and servers, resolvers, external servers with Zipf-like
//! popularity, IPv6 counterparts.

use crate::gen::frame;
use crate::gen::rng::{self, Rng};
use std::net::{IpAddr, Ipv4Addr};

// ------------------------------------------------------------------ hosts

pub(super) const RESERVED4: [(u32, u32); 13] = [
    (0x0000_0000, 8),
    (0x0A00_0000, 8),
    (0x6440_0000, 10),
    (0x7F00_0000, 8),
    (0xA9FE_0000, 16),
    (0xAC10_0000, 12),
    (0xC000_0000, 24),
    (0xC000_0200, 24),
    (0xC0A8_0000, 16),
    (0xC612_0000, 15),
    (0xC633_6400, 24),
    (0xCB00_7100, 24),
    (0xE000_0000, 3),
];

pub(super) fn reserved(a: u32) -> bool {
    RESERVED4
        .iter()
        .any(|&(net, len)| (a ^ net) >> (32 - len) == 0)
}

/// The address pools of the reference generator, with Zipf-like
/// popularity of external servers (a few CDNs get most flows).
pub(super) struct Hosts {
    int4: Vec<IpAddr>,
    srv4: Vec<IpAddr>,
    pub(super) dns4: [IpAddr; 2],
    pub(super) pubdns4: [IpAddr; 3],
    ext4: Vec<IpAddr>,
    int6: Vec<IpAddr>,
    srv6: Vec<IpAddr>,
    ext6: Vec<IpAddr>,
    cum4: Vec<f64>,
    cum6: Vec<f64>,
    /// Next ephemeral port per internal client (v4 then v6).
    next_port: Vec<u16>,
}

pub(super) fn zipf_cumulative(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut sum = 0.0;
    for i in 0..n {
        sum += rng::exp(-0.9 * rng::ln((i + 1) as f64));
        out.push(sum);
    }
    out
}

impl Hosts {
    pub(super) fn new(rng: &mut Rng) -> Hosts {
        let mut int4 = Vec::with_capacity(6000);
        for _ in 0..6000 {
            let a = if rng.chance(0.8) {
                Ipv4Addr::new(
                    10,
                    rng.range(1, 40) as u8,
                    rng.below(256) as u8,
                    rng.range(1, 255) as u8,
                )
            } else {
                Ipv4Addr::new(192, 168, rng.below(16) as u8, rng.range(1, 255) as u8)
            };
            int4.push(IpAddr::V4(a));
        }
        let srv4 = (0..60)
            .map(|_| {
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    rng.below(4) as u8,
                    rng.range(1, 255) as u8,
                ))
            })
            .collect();
        let mut ext4 = Vec::with_capacity(25_000);
        while ext4.len() < 25_000 {
            let a = rng.next_u32();
            if !reserved(a) {
                ext4.push(IpAddr::V4(Ipv4Addr::from(a)));
            }
        }
        let v6 = |prefix: [u8; 8], rng: &mut Rng| {
            let mut o = [0u8; 16];
            o[..8].copy_from_slice(&prefix);
            o[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
            frame::v6(o)
        };
        let int6 = (0..1500)
            .map(|_| v6([0xfd, 0, 0, 0x10, 0, 0, 0, 0], rng))
            .collect();
        let srv6 = (0..20)
            .map(|_| v6([0xfd, 0, 0, 0x10, 0, 0, 0, 0xff], rng))
            .collect();
        const PREFIXES: [u16; 10] = [
            0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2600, 0x2606, 0x2607, 0x2406, 0x2400, 0x2c0f,
        ];
        let ext6 = (0..4000)
            .map(|_| {
                let mut o = [0u8; 16];
                o[..2].copy_from_slice(&rng.pick(&PREFIXES).to_be_bytes());
                o[2..10].copy_from_slice(&rng.next_u64().to_be_bytes());
                o[10..16].copy_from_slice(&rng.next_u64().to_be_bytes()[..6]);
                frame::v6(o)
            })
            .collect();
        let next_port = (0..7500)
            .map(|_| rng.range(32_768, 61_000) as u16)
            .collect();
        Hosts {
            int4,
            srv4,
            dns4: [IpAddr::from([10, 0, 0, 53]), IpAddr::from([10, 0, 0, 54])],
            pubdns4: [
                IpAddr::from([1, 1, 1, 1]),
                IpAddr::from([8, 8, 8, 8]),
                IpAddr::from([9, 9, 9, 9]),
            ],
            ext4,
            int6,
            srv6,
            ext6,
            cum4: zipf_cumulative(25_000),
            cum6: zipf_cumulative(4000),
            next_port,
        }
    }

    pub(super) fn ext(&self, rng: &mut Rng, v6: bool) -> IpAddr {
        let (pool, cum) = if v6 {
            (&self.ext6, &self.cum6)
        } else {
            (&self.ext4, &self.cum4)
        };
        let total = cum.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        let i = cum.partition_point(|&c| c <= x).min(pool.len() - 1);
        pool[i]
    }

    /// An internal client and its index (for its port counter).
    pub(super) fn internal(&self, rng: &mut Rng, v6: bool) -> (IpAddr, usize) {
        if v6 {
            let i = rng.below(self.int6.len() as u64) as usize;
            (self.int6[i], self.int4.len() + i)
        } else {
            let i = rng.below(self.int4.len() as u64) as usize;
            (self.int4[i], i)
        }
    }

    pub(super) fn server(&self, rng: &mut Rng, v6: bool) -> IpAddr {
        if v6 {
            *rng.pick(&self.srv6)
        } else {
            *rng.pick(&self.srv4)
        }
    }

    /// The client's next ephemeral port (Linux counts up within
    /// 32768..61000).
    pub(super) fn port(&mut self, client: usize) -> u16 {
        let p = &mut self.next_port[client];
        let port = *p;
        *p = if *p >= 60_999 { 32_768 } else { *p + 1 };
        port
    }
}

pub(super) const WORDS: [&str; 20] = [
    "api",
    "cdn",
    "static",
    "img",
    "mail",
    "login",
    "update",
    "telemetry",
    "assets",
    "media",
    "edge",
    "push",
    "sync",
    "files",
    "auth",
    "ws",
    "graph",
    "metrics",
    "portal",
    "shop",
];
pub(super) const DOMAINS: [&str; 15] = [
    "example-cloud.com",
    "contoso-cdn.net",
    "acme-corp.io",
    "northwind.org",
    "fabrikam.net",
    "globex.com",
    "initech.dev",
    "umbrella-svc.com",
    "hooli.xyz",
    "piedpiper.app",
    "stark-ind.com",
    "wayne-ent.net",
    "tyrell.io",
    "cyberdyne.ai",
    "aperture-labs.org",
];

/// A host name from a packed id: word, number 0..40, domain.
pub(super) fn hostname(id: u32) -> String {
    let w = WORDS[(id % 20) as usize];
    let n = (id / 20) % 40;
    let d = DOMAINS[((id / 800) % 15) as usize];
    format!("{w}{n}.{d}")
}

pub(super) fn name_id(rng: &mut Rng) -> u32 {
    rng.below(20 * 40 * 15) as u32
}
