//! The shape analyses fed with TLS 1.3 record streams built here: the
//! walker, the overheads, the mining shape and SSH inside TLS together.

use super::*;
use crate::analyzer::tls::ServerHello;
use crate::analyzer::AuthOutcome;
use crate::time::NANOS_PER_SEC;

/// A TLS 1.3 session as (direction, plaintext bytes, time in ms) records.
struct Session {
    shape: Shape,
    idx: u64,
    mining: Option<MiningFacts>,
    ssh_changes: u32,
}

const MS: u64 = 1_000_000;

impl Session {
    fn new() -> Session {
        let mut shape = Shape::new();
        shape.set_server(&ServerHello {
            legacy_version: 0x0303,
            cipher: 0x1301,
            selected_version: Some(0x0304),
            ..ServerHello::default()
        });
        let mut s = Session {
            shape,
            idx: 0,
            mining: None,
            ssh_changes: 0,
        };
        // The server's encrypted handshake, the client's Finished.
        s.send(Dir::ToClient, 2500, 10);
        s.send(Dir::ToServer, 36, 20);
        s
    }

    /// One record of `plain` plaintext bytes at `ms`, cut in two segments.
    fn send(&mut self, dir: Dir, plain: u32, ms: u64) {
        let len = u16::try_from(plain + 17).unwrap();
        let mut rec = vec![23, 3, 3];
        rec.extend_from_slice(&len.to_be_bytes());
        rec.resize(5 + usize::from(len), 0x5a);
        let ts = Timestamp::from_nanos(1_700_000_000 * NANOS_PER_SEC + ms * MS);
        for piece in rec.chunks(3) {
            self.idx += 1;
            let out = self.shape.push(dir, piece, self.idx, ts);
            self.take(out);
        }
    }

    fn take(&mut self, out: Outcome) {
        if out.mining.is_some() {
            assert!(self.mining.is_none(), "mining reported twice");
            self.mining = out.mining;
        }
        self.ssh_changes += u32::from(out.ssh_changed);
    }

    fn end(&mut self, ms: u64) {
        let ts = Timestamp::from_nanos(1_700_000_000 * NANOS_PER_SEC + ms * MS);
        let out = self.shape.finish(ts);
        self.take(out);
    }
}

/// XMRig's rhythm: login and job, then jobs pushed 30-60 s apart and
/// submissions answered by a short status.
fn miner(s: &mut Session, answer_pushes: bool) {
    s.send(Dir::ToServer, 420, 30);
    s.send(Dir::ToClient, 520, 80);
    let mut t = 1_000;
    for i in 0..8u64 {
        t += 30_000 + (i * 7_919) % 30_000;
        s.send(Dir::ToClient, 380 + (i as u32 % 3) * 8, t);
        if answer_pushes {
            s.send(Dir::ToServer, 60, t + 200);
        }
        if i % 2 == 1 {
            s.send(Dir::ToServer, 230, t + 9_000);
            s.send(Dir::ToClient, 64, t + 9_060);
        }
    }
}

#[test]
fn xmrig_rhythm_is_mining() {
    let mut s = Session::new();
    miner(&mut s, false);
    let m = s.mining.expect("mining inferred");
    assert_eq!(m.protocol, "tls-shape");
    assert_eq!(m.evidence.inferred, Some("tls-record-shape"));
    assert!(
        m.evidence.summary.contains("unsolicited"),
        "{}",
        m.evidence.summary
    );
    assert!(m.evidence.packets.len() >= 4);
}

#[test]
fn answered_pushes_are_a_long_poll_or_a_push_service() {
    let mut s = Session::new();
    miner(&mut s, true);
    s.end(600_000);
    assert!(s.mining.is_none());
}

#[test]
fn keepalive_and_mqtt_channels_are_not_mining() {
    // The bench's keep-alive flows: small records either way, a period.
    let mut s = Session::new();
    s.send(Dir::ToServer, 63, 30);
    for i in 0..40u64 {
        let dir = if i % 3 == 0 {
            Dir::ToServer
        } else {
            Dir::ToClient
        };
        s.send(dir, 14 + (i as u32 * 37) % 110, 1_000 + i * 20_000);
    }
    s.end(900_000);
    assert!(s.mining.is_none());
    // MQTT: CONNECT/CONNACK, PINGREQ/PINGRESP, publishes of any size.
    let mut s = Session::new();
    s.send(Dir::ToServer, 60, 30);
    s.send(Dir::ToClient, 4, 80);
    for i in 0..30u64 {
        s.send(Dir::ToServer, 2, 1_000 + i * 30_000);
        s.send(Dir::ToClient, 2, 1_050 + i * 30_000);
        s.send(
            Dir::ToClient,
            200 + (i as u32 * 331) % 1500,
            15_000 + i * 30_000,
        );
    }
    s.end(900_000);
    assert!(s.mining.is_none());
}

#[test]
fn a_download_is_not_mining() {
    let mut s = Session::new();
    s.send(Dir::ToServer, 300, 30);
    s.send(Dir::ToClient, 900, 80);
    for i in 0..20 {
        s.send(Dir::ToClient, 16_384, 100 + i);
    }
    assert!(s.shape.mining_settled());
}

/// An OpenSSH session inside TLS (chacha20-poly1305 inside): banners,
/// KEXINITs, sntrup761x25519 exchange, NEWKEYS, service request, login.
fn ssh_handshake(s: &mut Session) {
    s.send(Dir::ToServer, 33, 30); // SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n
    s.send(Dir::ToClient, 33, 40);
    s.send(Dir::ToServer, 1_528, 41); // KEXINIT
    s.send(Dir::ToClient, 1_080, 42);
    s.send(Dir::ToServer, 1_208, 45); // KEX_ECDH_INIT (sntrup761x25519)
    s.send(Dir::ToClient, 1_124, 60); // reply
    s.send(Dir::ToClient, 16, 60); // NEWKEYS
    s.send(Dir::ToServer, 16, 62); // NEWKEYS
    s.send(Dir::ToServer, 44, 62); // SERVICE_REQUEST
    s.send(Dir::ToClient, 44, 63); // SERVICE_ACCEPT
    s.send(Dir::ToServer, 84, 64); // USERAUTH_REQUEST none
    s.send(Dir::ToClient, 52, 65); // USERAUTH_FAILURE
    s.send(Dir::ToServer, 412, 70); // publickey with signature
    s.send(Dir::ToClient, 28, 75); // USERAUTH_SUCCESS
}

#[test]
fn ssh_inside_tls_login_and_typing() {
    let mut s = Session::new();
    ssh_handshake(&mut s);
    let f = s.shape.ssh_facts().expect("SSH inferred after the login");
    assert_eq!(f.auth, AuthOutcome::Success);
    let how = f.inferred.as_ref().unwrap();
    assert_eq!(how.inferred, Some("tls-record-shape"));
    assert!(how.summary.contains("chacha20-poly1305"), "{}", how.summary);
    assert!(f.role_reversed.is_none());
    // Session open and shell: then a person types, the server echoes.
    s.send(Dir::ToServer, 52, 100);
    s.send(Dir::ToClient, 44, 101);
    let mut t = 2_000;
    for i in 0..40u64 {
        t += 150 + (i * 37) % 200;
        s.send(Dir::ToServer, 36, t);
        s.send(Dir::ToClient, 36, t + 2);
    }
    let f = s.shape.ssh_facts().unwrap();
    assert!(f.forward_interactive.is_some(), "{f:?}");
    assert!(f.reverse_interactive.is_none());
    assert!(s.ssh_changes >= 2);
}

#[test]
fn tls_that_is_not_ssh_stays_unknown() {
    // HTTP/2-like: preface and settings, then requests and responses.
    let mut s = Session::new();
    s.send(Dir::ToServer, 74, 30);
    s.send(Dir::ToClient, 27, 40);
    s.send(Dir::ToServer, 420, 41);
    s.send(Dir::ToClient, 3_200, 90);
    for i in 0..20u64 {
        s.send(Dir::ToServer, 16, 100 + i * 50);
        s.send(Dir::ToServer, 44, 101 + i * 50);
        s.send(Dir::ToClient, 28, 120 + i * 50);
    }
    s.end(10_000);
    assert!(s.shape.ssh_facts().is_none());
}
