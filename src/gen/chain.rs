//! Kill-chain scenarios for the per-host detections: a training node that
//! sweeps and scans its neighbours, a miner whose pool never answers, a
//! lookup of a mining pool's name, and the benign contrast (a Prometheus
//! server scraping hundreds of exporters every 15 s).

use super::proto::{dns, stratum};
use super::scenario::{Capture, Scenario};
use crate::time::Timestamp;
use std::time::Duration;

const START: u64 = 1_750_000_000;

/// `nmap -sS` of one host's first 1000 ports (a few open), then `-sn` of a
/// /24 (echo requests, nobody home but three hosts), from 10.10.0.66.
pub fn scan() -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(START), 11);
    let scanner = s.host("10.10.0.66");
    let target = s.host("10.10.0.9");
    let open = [22u16, 80, 443];
    let ms = Duration::from_millis;
    for port in 1..=1000u16 {
        let mut c = s.tcp(scanner, 40_000, target, port);
        c.at(ms(u64::from(port)));
        if open.contains(&port) {
            c.handshake().close_rst(crate::analyzer::Dir::ToServer);
        } else {
            c.syn().close_rst(crate::analyzer::Dir::ToClient);
        }
    }
    for h in 1..=254u8 {
        let host = s.host(&format!("10.10.7.{h}"));
        let mut p = s.ping(scanner, host);
        p.at(Duration::from_secs(5) + ms(u64::from(h) * 4));
        if h % 100 == 1 {
            p.echo(1);
        } else {
            p.unanswered(1);
        }
    }
    s.finish()
}

/// cgminer's lone `mining.subscribe` to a pool that never answers (the
/// firewall drops it after the handshake), and XMRig's login refused.
pub fn unanswered_miner() -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(START), 12);
    let node = s.host("10.10.0.21");
    let pool = s.remote("198.51.100.77");
    let xmr_pool = s.remote("198.51.100.78");
    s.tcp(node, 41_000, pool, 3333)
        .handshake()
        .send(stratum::subscribe(1, "cgminer/4.10.0").as_bytes())
        .close_rst(crate::analyzer::Dir::ToServer);
    let login = "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD\",\"pass\":\"x\",\"agent\":\"XMRig/6.21.0\",\"algo\":[\"rx/0\"]}}\n";
    let refusal =
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"error\":{\"code\":-1,\"message\":\"Unauthenticated\"}}\n";
    s.tcp(node, 41_001, xmr_pool, 4444)
        .at(Duration::from_secs(2))
        .handshake()
        .send(login.as_bytes())
        .recv(refusal.as_bytes())
        .close_fin();
    s.finish()
}

/// A node resolves a mining pool's name through the cluster resolver and
/// never connects (the firewall would have stopped it).
pub fn pool_lookup() -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(START), 13);
    let node = s.host("10.10.0.22");
    let resolver = s.host("10.20.0.53");
    let name = "xmr-eu1.nanopool.org";
    let mut q = Vec::new();
    dns::query(&mut q, 0x4242, name, 1);
    s.udp(node, 53_000, resolver, 53).send(&q);
    s.finish()
}

/// Prometheus at 10.50.0.5 scraping 300 exporters (node and GPU
/// exporters on 9100 and 9400) every 15 s for two minutes, every scrape a
/// short HTTP exchange; a few exporters are down and refuse.
pub fn scraping() -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(START), 14);
    let prometheus = s.host("10.50.0.5");
    let targets: Vec<_> = (0..300u32)
        .map(|i| s.host(&format!("10.10.{}.{}", 1 + i / 200, 1 + i % 200)))
        .collect();
    let request = b"GET /metrics HTTP/1.1\r\nHost: exporter\r\nAccept: text/plain\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\nnode_load1 0.25\r\n\r\n";
    let mut cport = 20_000u16;
    for round in 0..8u64 {
        for (i, &t) in targets.iter().enumerate() {
            let port = if i % 2 == 0 { 9100 } else { 9400 };
            let at = Duration::from_secs(round * 15) + Duration::from_millis(i as u64 * 20);
            cport = cport.wrapping_add(1).max(20_000);
            let mut c = s.tcp(prometheus, cport, t, port);
            c.at(at);
            if i % 50 == 7 {
                c.syn().close_rst(crate::analyzer::Dir::ToClient);
            } else {
                c.handshake().send(request).recv(response).close_fin();
            }
        }
    }
    s.finish()
}
