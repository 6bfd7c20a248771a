//! Mid-stream SSH on synthetic segment sequences: every size below is a
//! message of the size model under one suite, one message per segment,
//! as interactive and tunnel traffic is written.

use super::*;
use crate::analyzer::ssh::sizes::CHANNEL_DATA_HEADER;
use crate::decode::TcpInfo;

const C: Dir = Dir::ToServer;
const S: Dir = Dir::ToClient;

fn suite(i: usize) -> Suite {
    let (c, m) = INNER_SUITES[i];
    Suite::from_names(c, Some(m)).unwrap()
}

/// Segments of one flow, fed as packets.
struct Sim {
    m: Midstream,
    s: Suite,
    idx: u64,
    now: u64,
    seq: [u32; 2],
}

impl Sim {
    fn new(s: Suite) -> Sim {
        Sim {
            m: Midstream::new(),
            s,
            idx: 0,
            now: 5_000_000_000,
            seq: [1000, 900_000],
        }
    }

    fn packet(&mut self, d: Dir, len: u32, ms: u64, flags: u8) {
        self.idx += 1;
        self.now += ms * 1_000_000;
        let seq = self.seq[d.index()];
        self.seq[d.index()] = seq.wrapping_add(len);
        let view = PacketView {
            index: self.idx,
            ts: Timestamp::from_nanos(self.now),
            dir: d,
            tcp: Some(TcpInfo {
                flags: TcpFlags(flags),
                seq,
                ack: 0,
                window: 500,
            }),
            payload: &[],
            payload_len: len,
        };
        self.m.on_packet(&view);
    }

    /// One segment of `wire` bytes.
    fn raw(&mut self, d: Dir, wire: u32, ms: u64) {
        self.packet(d, wire, ms, TcpFlags::ACK | TcpFlags::PSH);
    }

    /// Channel data with `n` bytes.
    fn data(&mut self, d: Dir, n: u32, ms: u64) {
        let w = self.s.wire(CHANNEL_DATA_HEADER + n);
        self.raw(d, w, ms);
    }

    fn ack(&mut self, d: Dir) {
        self.packet(d, 0, 0, TcpFlags::ACK);
    }

    /// `n` keystrokes typed by `typist` (channel data of `key` bytes),
    /// echoed by the other side, acknowledged.
    fn typing(&mut self, typist: Dir, key: u32, n: u32) {
        for _ in 0..n {
            self.data(typist, key, 180);
            self.data(typist.reverse(), key, 2);
            self.ack(typist);
        }
    }

    fn finish(&mut self) -> Option<&SshFacts> {
        self.m.finish(Timestamp::from_nanos(self.now));
        self.m.facts().and_then(|f| f.ssh.as_deref())
    }
}

fn inferred(f: &SshFacts) -> &Evidence {
    let ev = f.inferred.as_ref().expect("marked inferred");
    assert_eq!(ev.inferred, Some(INFERRED));
    ev
}

#[test]
fn typing_is_probable_ssh_for_each_suite() {
    for (i, name) in INNER_SUITES.iter().enumerate() {
        let mut sim = Sim::new(suite(i));
        // The middle of a shell session: some output, then typing.
        sim.data(S, 300, 0);
        sim.data(S, 40, 1);
        sim.typing(C, 1, 20);
        let f = sim.finish().unwrap_or_else(|| panic!("{name:?}"));
        assert!(f.forward_interactive.is_some(), "{name:?}");
        assert!(f.reverse_interactive.is_none());
        let ev = inferred(f);
        assert!(ev.summary.contains("mid-stream"), "{}", ev.summary);
        assert_eq!(sim.m.facts().unwrap().app_proto, Some("ssh"));
    }
}

#[test]
fn typing_through_a_reverse_tunnel_is_reverse_interactive() {
    let outer = suite(0);
    let inner = suite(1);
    let mut sim = Sim::new(outer);
    // Keystrokes of an inner session, typed from the server side.
    sim.typing(S, inner.keystroke(), 24);
    let f = sim.finish().expect("probable SSH");
    assert!(f.reverse_interactive.is_some());
    inferred(f);
}

#[test]
fn keepalives_of_an_idle_tunnel() {
    let mut sim = Sim::new(suite(0));
    for _ in 0..10 {
        sim.raw(C, sim.s.wire(27), 15_000); // keepalive@openssh.com
        sim.raw(S, sim.s.wire(1), 20); // REQUEST_FAILURE
        sim.ack(C);
    }
    let f = sim.finish().expect("probable SSH");
    assert!(f.keepalive_only.is_some());
    assert!(inferred(f).summary.contains("keepalive"));
}

#[test]
fn bulk_flow_is_given_up_after_the_sniff() {
    let mut sim = Sim::new(suite(0));
    for k in 0..40u32 {
        sim.raw(S, 1448, 1);
        sim.raw(S, 1448, 0);
        sim.raw(S, 517 + k * 3, 0);
        sim.ack(C);
    }
    assert!(sim.m.gave_up());
    assert!(sim.finish().is_none());
}

#[test]
fn sizes_of_no_suite_are_not_ssh() {
    // TLS 1.3 application records of small messages: 5 + n + 1 + 16.
    let mut sim = Sim::new(suite(0));
    for n in 0..30u32 {
        sim.raw(C, 5 + 20 + n % 7 + 17, 150);
        sim.raw(S, 5 + 33 + n % 5 + 17, 2);
    }
    assert!(sim.m.gave_up());
    assert!(sim.finish().is_none());
}

#[test]
fn one_sided_traffic_is_not_ssh() {
    let mut sim = Sim::new(suite(0));
    for _ in 0..30 {
        sim.data(S, 1, 100);
    }
    assert!(sim.m.gave_up());
}

#[test]
fn no_verdict_in_time_gives_up() {
    let mut sim = Sim::new(suite(1));
    // Request/response traffic of one suite's sizes, never typing.
    for k in 0..(RUN_UNITS / 2 + 10) {
        sim.data(C, 200 + k % 50, 300);
        sim.data(S, 900 + k % 70, 5);
    }
    assert!(sim.m.gave_up());
    assert!(sim.finish().is_none());
}

#[test]
fn retransmissions_are_not_units() {
    let mut sim = Sim::new(suite(0));
    sim.data(S, 300, 0);
    // The same segment again (sequence number not advanced).
    sim.seq[S.index()] -= sim.s.wire(CHANNEL_DATA_HEADER + 300);
    sim.data(S, 300, 1);
    assert_eq!(sim.m.data_units, 1);
}

#[test]
fn suite_choice_prefers_the_explaining_suite() {
    let gcm = suite(1);
    let sizes: Vec<u32> = (0..16).map(|k| gcm.wire(10 + k * 7)).collect();
    let (i, _, fits) = choose_suite(sizes.iter().copied()).expect("a suite");
    assert_eq!(fits, 16);
    // GCM sizes are also chacha sizes; the larger block is chosen.
    assert_eq!(suite(i).block, 16);
    assert!(choose_suite([37u32; 16].iter().copied()).is_none());
}

#[test]
fn port_forwarding_opens_make_it_ssh() {
    let mut sim = Sim::new(suite(0));
    for k in 0..6u32 {
        sim.data(C, 400 + k, 2000); // traffic of an open channel
        sim.data(S, 1000 + k, 3);
        // CHANNEL_OPEN "direct-tcpip" to 127.0.0.1, then its confirmation.
        sim.raw(C, sim.s.wire(63), 900);
        sim.raw(S, sim.s.wire(17), 1);
        sim.ack(C);
    }
    let f = sim.finish().expect("probable SSH");
    assert!(inferred(f).summary.contains("port forwarding"));
    assert!(f.forward_interactive.is_none() && f.reverse_session.is_none());
}

#[test]
fn request_reply_of_suite_sizes_without_confirmations_is_not_ssh() {
    let mut sim = Sim::new(suite(0));
    for k in 0..200u32 {
        sim.raw(C, sim.s.wire(63 + k % 5), 900);
        sim.raw(S, sim.s.wire(40 + k % 9), 1);
    }
    assert!(sim.finish().is_none());
}

#[test]
fn the_evidence_value_survives_the_state_file() {
    assert!(crate::analyzer::facts::INFERRED.contains(&INFERRED));
    let ev = Evidence::new("x", &[1], Timestamp::from_secs(1), Timestamp::from_secs(2))
        .inferred(INFERRED);
    let back: Evidence = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
    assert_eq!(back.inferred, Some(INFERRED));
}
