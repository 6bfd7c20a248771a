//! Analyzer tests on byte streams: identification lines, real KEXINITs,
//! record walking across TCP segment boundaries, segment sizes with
//! retransmissions, gaps, role reversal, and the EVE record.

use super::kex::tests::{hex, ASYNCSSH, DROPBEAR, OPENSSH_CLIENT, OPENSSH_SERVER};
use super::*;
use crate::decode::TcpInfo;
use proptest::prelude::*;

const C: Dir = Dir::ToServer;
const S: Dir = Dir::ToClient;

/// Drives an analyzer the way the flow engine does: `on_packet`, then the
/// packet's bytes as an in-order chunk while the stream is wanted.
struct Flow {
    a: SshAnalyzer,
    seq: [u32; 2],
    idx: u64,
    now: u64,
    out: Emit,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            a: SshAnalyzer::new(),
            seq: [1000, 50_000],
            idx: 0,
            now: 1_700_000_000_000_000_000,
            out: Vec::new(),
        }
    }

    /// One TCP segment carrying `bytes`.
    fn segment(&mut self, dir: Dir, bytes: &[u8], ms: u64) -> u64 {
        self.segment_at(dir, bytes, ms, self.seq[dir.index()])
    }

    fn segment_at(&mut self, dir: Dir, bytes: &[u8], ms: u64, seq: u32) -> u64 {
        self.idx += 1;
        self.now += ms * 1_000_000;
        let pkt = PacketView {
            index: self.idx,
            ts: Timestamp::from_nanos(self.now),
            dir,
            tcp: Some(TcpInfo {
                flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
                seq,
                ack: 0,
                window: 0,
            }),
            payload: bytes,
            payload_len: bytes.len() as u32,
        };
        self.a.on_packet(&pkt, &mut self.out);
        let end = seq.wrapping_add(bytes.len() as u32);
        let new = (end.wrapping_sub(self.seq[dir.index()]) as i32) > 0;
        if new && self.a.wants_stream(dir) {
            self.a
                .on_stream(dir, Chunk::Data(bytes), &pkt, &mut self.out);
        }
        if new {
            self.seq[dir.index()] = end;
        }
        self.idx
    }

    /// `bytes` cut at the given offsets, one segment per piece.
    fn send(&mut self, dir: Dir, bytes: &[u8], cuts: &[usize]) {
        let mut start = 0;
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            self.segment(dir, &bytes[start..cut], 1);
            start = cut;
        }
    }

    fn gap(&mut self, dir: Dir, n: u32) {
        let pkt = PacketView {
            index: self.idx,
            ts: Timestamp::from_nanos(self.now),
            dir,
            tcp: None,
            payload: &[],
            payload_len: 0,
        };
        self.a.on_stream(dir, Chunk::Gap(n), &pkt, &mut self.out);
    }

    fn ssh(&self) -> &SshFacts {
        self.a.facts().ssh.as_ref().unwrap()
    }

    fn finish(&mut self) -> serde_json::Value {
        self.a
            .finish(Timestamp::from_nanos(self.now), &mut self.out);
        assert_eq!(self.out.len(), 1, "one ssh event per session");
        let e = &self.out[0];
        assert_eq!(e.event_type, "ssh");
        serde_json::json!({"ssh": e.body.to_value(), "egresswatch": e.extra.as_ref().map(crate::json::Rendered::to_value)})
    }
}

/// A clear-text binary packet (block 8, padding >= 4).
fn packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let len = (payload.len() + pad + 1) as u32;
    let mut p = len.to_be_bytes().to_vec();
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend(std::iter::repeat_n(0u8, pad));
    p
}

/// A KEXINIT with the same lists in both directions.
fn kexinit(kex: &str, cipher: &str, mac: &str, comp: &str) -> Vec<u8> {
    let mut p = vec![20u8];
    p.extend_from_slice(&[7; 16]);
    for list in [
        kex,
        "ssh-ed25519",
        cipher,
        cipher,
        mac,
        mac,
        comp,
        comp,
        "",
        "",
    ] {
        p.extend_from_slice(&(list.len() as u32).to_be_bytes());
        p.extend_from_slice(list.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 0, 0, 0]);
    packet(&p)
}

fn newkeys() -> Vec<u8> {
    packet(&[21])
}

/// An encrypted record of `wire` bytes whose length field is in clear.
fn record(wire: u32, tag: u32) -> Vec<u8> {
    let len = wire - 4 - tag;
    let mut r = len.to_be_bytes().to_vec();
    r.resize(wire as usize, 0x5a);
    r
}

/// Banners, KEXINITs (client first), a key exchange message from the
/// client, NEWKEYS both ways.
fn handshake(f: &mut Flow, cipher: &str, mac: &str) {
    f.segment(C, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n", 0);
    f.segment(S, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n", 1);
    let kex = "curve25519-sha256,ext-info-c";
    f.segment(C, &kexinit(kex, cipher, mac, "none"), 1);
    f.segment(S, &kexinit("curve25519-sha256", cipher, mac, "none"), 1);
    f.segment(C, &packet(&[30; 37]), 1);
    let mut reply = packet(&[31; 180]);
    reply.extend_from_slice(&newkeys());
    f.segment(S, &reply, 10);
    f.segment(C, &newkeys(), 1);
}

#[test]
fn real_kexinits_give_tshark_hassh_and_negotiation() {
    let mut f = Flow::new();
    f.segment(C, b"SSH-2.0-OpenSSH_7.4\r\n", 0);
    f.segment(S, b"SSH-2.0-OpenSSH_7.3p1 Ubuntu-1ubuntu0.1\r\n", 1);
    // The client KEXINIT over three segments, the server's in one.
    let ck = hex(OPENSSH_CLIENT);
    f.send(C, &ck, &[3, 600]);
    f.segment(S, &hex(OPENSSH_SERVER), 1);
    // Roles (and so HASSH) are settled by the first key exchange message.
    assert_eq!(f.ssh().hassh, None);
    f.segment(C, &packet(&[34, 0, 0, 8, 0, 0, 0, 16, 0, 0, 0, 32, 0]), 1);
    assert_eq!(
        f.ssh().hassh.as_deref(),
        Some("953757c11fbb1d6ba5d5b3d40269a16b")
    );
    assert_eq!(
        f.ssh().hassh_server.as_deref(),
        Some("8cc1fefeb6ee94a1d6c81bc3ee13c62c")
    );
    assert!(f.ssh().role_reversed.is_none());
    assert_eq!(
        f.ssh().client_banner.as_deref(),
        Some("SSH-2.0-OpenSSH_7.4")
    );
    assert!(f.a.facts().revision > 1);
    let e = f.finish();
    assert_eq!(e["ssh"]["client"]["proto_version"], "2.0");
    assert_eq!(e["ssh"]["client"]["software_version"], "OpenSSH_7.4");
    assert_eq!(
        e["ssh"]["server"]["software_version"],
        "OpenSSH_7.3p1 Ubuntu-1ubuntu0.1"
    );
    assert_eq!(
        e["ssh"]["client"]["hassh"]["hash"],
        "953757c11fbb1d6ba5d5b3d40269a16b"
    );
    assert_eq!(
        e["ssh"]["server"]["hassh"]["hash"],
        "8cc1fefeb6ee94a1d6c81bc3ee13c62c"
    );
    let x = &e["egresswatch"];
    assert_eq!(x["kex"], "diffie-hellman-group-exchange-sha256");
    assert_eq!(
        x["client_to_server"]["cipher"],
        "chacha20-poly1305@openssh.com"
    );
    assert_eq!(x["client_to_server"]["mac"], serde_json::Value::Null);
    assert_eq!(x["role_reversed"], false);
}

/// Zeek's reverse-ssh capture: the originator (Dropbear, banner and KEXINIT
/// in one segment) answers with the key exchange reply: it is the server.
#[test]
fn role_reversal_from_real_kexinits() {
    let mut f = Flow::new();
    f.segment(S, b"SSH-2.0-AsyncSSH_2.8.1\r\n", 0);
    f.segment(C, &hex(DROPBEAR), 1);
    f.segment(S, &hex(ASYNCSSH), 1);
    let idx = f.segment(S, &packet(&[30; 37]), 1);
    let rr = f.ssh().role_reversed.as_ref().expect("role reversal");
    assert!(rr.packets.contains(&idx));
    assert!(rr.summary.contains("ext-info-c"), "{}", rr.summary);
    f.segment(C, &packet(&[31; 300]), 1);
    assert_eq!(
        f.ssh().client_banner.as_deref(),
        Some("SSH-2.0-AsyncSSH_2.8.1")
    );
    assert_eq!(
        f.ssh().server_banner.as_deref(),
        Some("SSH-2.0-dropbear_2018.76")
    );
    // AsyncSSH offers the same lists both ways: tshark's value.
    assert_eq!(
        f.ssh().hassh.as_deref(),
        Some("18f369389d126cfeecade20e1ea5ff9b")
    );
    assert_eq!(
        f.ssh().hassh_server.as_deref(),
        Some("413e646031ea5204c5ec2fe2d5b7946e")
    );
    let e = f.finish();
    assert_eq!(e["egresswatch"]["ssh_client"], "responder");
    assert_eq!(e["egresswatch"]["client_to_server"]["cipher"], "aes256-ctr");
    assert_eq!(
        e["egresswatch"]["client_to_server"]["tcp_direction"],
        "toclient"
    );
}

#[test]
fn gcm_records_are_walked_across_segments() {
    let mut f = Flow::new();
    handshake(&mut f, "aes128-gcm@openssh.com", "hmac-sha2-256");
    assert!(
        f.a.wants_stream(C) && f.a.wants_stream(S),
        "walking needs the stream"
    );
    // SERVICE_REQUEST + "none" request in one segment: two records.
    let mut two = record(52, 16);
    two.extend_from_slice(&record(68, 16));
    f.segment(C, &two, 5);
    // One 1444-byte record over three segments, plus a keystroke.
    let mut big = record(1444, 16);
    big.extend_from_slice(&record(36, 16));
    f.send(S, &big, &[2, 700]);
    let e = f.finish();
    let x = &e["egresswatch"];
    assert_eq!(x["encrypted_units"], 4);
    assert_eq!(x["client_to_server"]["size_model"]["record_walk"], true);
    let tl = &x["timeline"][0];
    assert_eq!(tl["toclient"]["bytes"], 1444 + 36);
    assert_eq!(tl["toserver"]["units"], 2);
    assert_eq!(x["sizes_unreliable"], serde_json::Value::Null);
}

#[test]
fn chacha_uses_segments_and_skips_retransmissions() {
    let mut f = Flow::new();
    handshake(&mut f, "chacha20-poly1305@openssh.com", "none");
    assert!(
        !f.a.wants_stream(C) && !f.a.wants_stream(S),
        "segments come from packets"
    );
    f.segment(C, &[0x11; 44], 5);
    let seq = f.seq[0];
    f.segment(C, &[0x22; 36], 5);
    f.segment_at(C, &[0x22; 36], 5, seq); // retransmission
    f.segment(S, &[0x33; 36], 1);
    let e = f.finish();
    assert_eq!(e["egresswatch"]["encrypted_units"], 3);
}

#[test]
fn gap_in_walked_stream_marks_sizes_unreliable() {
    let mut f = Flow::new();
    handshake(&mut f, "aes256-gcm@openssh.com", "none");
    f.segment(C, &record(52, 16), 5);
    f.gap(S, 1000);
    assert!(f.ssh().sizes_unreliable.as_deref().unwrap().contains("gap"));
    assert!(!f.a.wants_stream(S), "falls back to segment sizes");
    f.finish();
}

#[test]
fn coalesced_segment_marks_sizes_unreliable() {
    let mut f = Flow::new();
    handshake(&mut f, "chacha20-poly1305@openssh.com", "none");
    f.segment(S, &[0u8; 2896], 5);
    assert!(f.ssh().sizes_unreliable.as_deref().unwrap().contains("MSS"));
    f.finish();
}

#[test]
fn compression_is_flagged() {
    let mut f = Flow::new();
    f.segment(C, b"SSH-2.0-x\r\n", 0);
    f.segment(S, b"SSH-2.0-y\r\n", 0);
    f.segment(
        C,
        &kexinit("curve25519-sha256", "aes128-ctr", "hmac-sha1", "zlib"),
        1,
    );
    f.segment(
        S,
        &kexinit("curve25519-sha256", "aes128-ctr", "hmac-sha1", "zlib"),
        1,
    );
    f.segment(C, &packet(&[30; 37]), 1);
    f.segment(S, &newkeys(), 1);
    assert!(f
        .ssh()
        .sizes_unreliable
        .as_deref()
        .unwrap()
        .contains("zlib"));
    f.finish();
}

#[test]
fn pre_banner_lines_and_old_protocols() {
    let mut f = Flow::new();
    f.segment(S, b"Welcome to the machine\r\nauthorised users only\r\n", 0);
    f.segment(S, b"SSH-2.0-OpenSSH_8.0\r\n", 1);
    f.segment(C, b"SSH-1.5-OpenSSH_3.4\r\n", 1);
    assert_eq!(
        f.ssh().server_banner.as_deref(),
        Some("SSH-2.0-OpenSSH_8.0")
    );
    assert!(f.ssh().sizes_unreliable.as_deref().unwrap().contains("1.5"));
    assert!(!f.a.wants_stream(C));
    let e = f.finish();
    assert_eq!(e["egresswatch"]["pre_banner_lines"]["toclient"], 2);
    assert_eq!(e["ssh"]["client"]["proto_version"], "1.5");
}

#[test]
fn non_ssh_garbage_after_banner_stops_parsing() {
    let mut f = Flow::new();
    f.segment(C, b"SSH-2.0-x\r\n\xff\xff\xff\xff\x00garbage", 0);
    assert!(!f.a.wants_stream(C));
    assert!(f.ssh().sizes_unreliable.is_some());
    f.finish();
}

#[test]
fn protocol_probe_and_name() {
    let p = SshProtocol;
    let ctx = FlowContext {
        client: crate::flow::key::Endpoint {
            addr: std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
            port: 40000,
        },
        server: crate::flow::key::Endpoint {
            addr: std::net::Ipv4Addr::new(10, 0, 0, 2).into(),
            port: 443,
        },
        proto: 6,
    };
    assert_eq!(p.name(), "ssh");
    assert_eq!(p.probe(&ctx, C, b"SSH-2.0-x\r\n"), Probe::Match);
    assert_eq!(p.probe(&ctx, C, b"\x16\x03\x01"), Probe::NoMatch);
    let a = p.start(&ctx);
    assert_eq!(a.facts().app_proto, Some("ssh"));
}

fn chunk_strategy() -> impl Strategy<Value = Vec<(bool, Vec<u8>, u8)>> {
    prop::collection::vec(
        (
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..300),
            any::<u8>(),
        ),
        0..40,
    )
}

proptest! {
    /// Arbitrary bytes, gaps and sequence numbers never panic, and the
    /// session always ends in exactly one EVE record.
    #[test]
    fn arbitrary_chunks_never_panic(chunks in chunk_strategy(), prefix in any::<bool>()) {
        let mut f = Flow::new();
        if prefix {
            handshake(&mut f, "aes128-gcm@openssh.com", "none");
        }
        for (to_server, bytes, kind) in chunks {
            let dir = if to_server { C } else { S };
            match kind % 8 {
                0 => f.gap(dir, u32::from(kind)),
                1 => {
                    let seq = f.seq[dir.index()].wrapping_sub(u32::from(kind));
                    f.segment_at(dir, &bytes, 1, seq);
                }
                _ => {
                    f.segment(dir, &bytes, u64::from(kind));
                }
            }
        }
        f.finish();
    }

    /// Any stream after a valid handshake start, cut anywhere, never panics.
    #[test]
    fn arbitrary_clear_text_after_banner(body in prop::collection::vec(any::<u8>(), 0..2000), cut in 0usize..2000) {
        let mut f = Flow::new();
        let mut bytes = b"SSH-2.0-fuzz\r\n".to_vec();
        bytes.extend_from_slice(&body);
        let cut = cut.min(bytes.len());
        f.send(C, &bytes, &[cut]);
        f.finish();
    }
}
