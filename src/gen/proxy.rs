//! `ssh-via-proxy`: the demo's reverse SSH tunnel carried through proxies
//! a training node (10.10.0.10) may reach, and HTTPS through the same
//! proxy as the benign contrast.
//!
//! - the reverse tunnel (`ssh -N -R`, the login back in, typing) through an
//!   HTTP proxy: `CONNECT 198.51.100.23:22` to 203.0.113.80:3128, 200;
//! - the same tunnel through a SOCKS5 proxy (203.0.113.81:1080) to the
//!   name `vps-relay.example.net:443`; the proxy's reply and the relay's
//!   SSH banner arrive in one segment;
//! - a forward SSH login through SOCKS5 and then CONNECT (two layers);
//! - HTTPS through the HTTP proxy to `pypi.org:443` (allowed by name) and
//!   to `static.example.com:443` (allowed only as traffic to the proxy).

use super::demo::{enc, reverse_tunnel_session, ssh_kex, ssh_pubkey_auth};
use super::proto::ssh::{self, msg};
use super::proto::tls;
use super::rng::Rng;
use super::scenario::{Capture, HostId, Scenario, Tcp};
use crate::time::Timestamp;
use std::time::Duration;

const START: u64 = 1_717_243_200;
pub const NODE: &str = "10.10.0.10";
pub const HTTP_PROXY: &str = "203.0.113.80";
pub const HTTP_PROXY_PORT: u16 = 3128;
pub const SOCKS_PROXY: &str = "203.0.113.81";
pub const SOCKS_PROXY_PORT: u16 = 1080;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The scenario (deterministic for a seed).
pub fn ssh_via_proxy(seed: u64) -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(START), seed);
    let mut rng = Rng::new(seed).fork(0x7e);
    let node = s.host(NODE);
    let http = s.routed(HTTP_PROXY, 52);
    let socks = s.routed(SOCKS_PROXY, 52);
    reverse_via_connect(&mut s, node, http, &mut rng);
    reverse_via_socks(&mut s, node, socks, &mut rng);
    forward_via_socks_and_connect(&mut s, node, socks, &mut rng);
    https_via_connect(&mut s, node, http, &mut rng, 45_001, "pypi.org", 1_000);
    https_via_connect(
        &mut s,
        node,
        http,
        &mut rng,
        45_002,
        "static.example.com",
        9_000,
    );
    s.finish()
}

fn connect(t: &mut Tcp<'_>, target: &str) {
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: nc\r\n\r\n");
    t.send(req.as_bytes());
    t.recv(b"HTTP/1.1 200 Connection established\r\n\r\n");
}

/// A SOCKS5 greeting, "no authentication", and a CONNECT to a name; the
/// success reply is returned, not sent.
fn socks5(t: &mut Tcp<'_>, host: &str, port: u16) -> Vec<u8> {
    t.send(&[5, 1, 0]);
    t.recv(&[5, 0]);
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    t.send(&req);
    vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0]
}

fn banner() -> Vec<u8> {
    let mut b = Vec::new();
    ssh::banner(&mut b, ssh::OPENSSH_9_2_DEBIAN);
    b
}

fn reverse_via_connect(s: &mut Scenario, node: HostId, proxy: HostId, rng: &mut Rng) {
    let mut t = s.tcp(node, 41_880, proxy, HTTP_PROXY_PORT);
    t.label("ssh_reverse_via_connect")
        .at(ms(30_050))
        .rtt(ms(80))
        .handshake();
    connect(&mut t, "198.51.100.23:22");
    t.send(&banner()).recv(&banner());
    ssh_kex(&mut t, rng);
    reverse_tunnel_session(&mut t, rng);
}

fn reverse_via_socks(s: &mut Scenario, node: HostId, proxy: HostId, rng: &mut Rng) {
    let mut t = s.tcp(node, 41_881, proxy, SOCKS_PROXY_PORT);
    t.label("ssh_reverse_via_socks5")
        .at(ms(30_020))
        .rtt(ms(80))
        .handshake();
    let mut reply = socks5(&mut t, "vps-relay.example.net", 443);
    reply.extend_from_slice(&banner());
    t.recv(&reply).send(&banner());
    ssh_kex(&mut t, rng);
    reverse_tunnel_session(&mut t, rng);
}

fn forward_via_socks_and_connect(s: &mut Scenario, node: HostId, proxy: HostId, rng: &mut Rng) {
    let mut t = s.tcp(node, 41_882, proxy, SOCKS_PROXY_PORT);
    t.label("ssh_forward_via_socks5_connect")
        .at(ms(5_000))
        .rtt(ms(60))
        .handshake();
    let reply = socks5(&mut t, "proxy.corp.example", 3128);
    t.recv(&reply);
    connect(&mut t, "bastion.example.net:22");
    t.send(&banner()).recv(&banner());
    ssh_kex(&mut t, rng);
    ssh_pubkey_auth(&mut t, rng, "ops");
    t.send(&enc(rng, &[msg::channel_open_session()]));
    t.recv(&enc(rng, &[msg::CHANNEL_OPEN_CONFIRMATION]));
    t.close_fin();
}

fn https_via_connect(
    s: &mut Scenario,
    node: HostId,
    proxy: HostId,
    rng: &mut Rng,
    port: u16,
    name: &str,
    at: u64,
) {
    let mut t = s.tcp(node, port, proxy, HTTP_PROXY_PORT);
    t.label("https_via_connect")
        .at(ms(at))
        .rtt(ms(20))
        .handshake();
    connect(&mut t, &format!("{name}:443"));
    let mut b = Vec::new();
    tls::client_hello(&mut b, rng, name, &["h2", "http/1.1"]);
    t.send(&b);
    b.clear();
    tls::server_flight(&mut b, rng, 2_900);
    t.recv(&b);
    for size in [90, 64, 220] {
        b.clear();
        tls::app_data(&mut b, rng, size);
        t.send(&b);
    }
    b.clear();
    tls::app_data(&mut b, rng, 48_000);
    t.recv(&b);
    t.close_fin();
}
