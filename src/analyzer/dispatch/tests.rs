use super::*;
use crate::analyzer::testkit::{ctx, hex};
use crate::analyzer::{names::NameCache, registry};
use crate::decode::{TcpFlags, TcpInfo};
use crate::flow::key::proto;
use std::sync::Arc;

/// A protocol claiming streams that start with `REC`; its analyzer writes
/// every packet it is handed (`dir:seq:len`) and the bytes of each
/// direction into its facts, so tests can see what an inner analyzer saw.
struct Recorder;

struct RecAnalyzer {
    facts: AppFacts,
    bytes: [Vec<u8>; 2],
}

impl Protocol for Recorder {
    fn name(&self) -> &'static str {
        "rec"
    }
    fn probe(&self, _: &FlowContext, _: Dir, data: &[u8]) -> Probe {
        let n = data.len().min(3);
        if data[..n] != b"REC"[..n] {
            Probe::NoMatch
        } else if n < 3 {
            Probe::NeedMore
        } else {
            Probe::Match
        }
    }
    fn start(&self, _: &FlowContext) -> Box<dyn Analyzer> {
        Box::new(RecAnalyzer {
            facts: AppFacts::new("rec"),
            bytes: Default::default(),
        })
    }
}

impl Analyzer for RecAnalyzer {
    fn on_packet(&mut self, pkt: &PacketView<'_>, _: &mut Emit) {
        let seq = pkt.tcp.map_or(0, |t| t.seq);
        let line = format!("{}:{seq}:{} ", pkt.dir.index(), pkt.payload_len);
        self.facts
            .server_name
            .get_or_insert_with(String::new)
            .push_str(&line);
    }
    fn on_stream(&mut self, dir: Dir, chunk: Chunk<'_>, _: &PacketView<'_>, _: &mut Emit) {
        if let Chunk::Data(d) = chunk {
            self.bytes[dir.index()].extend_from_slice(d);
            self.facts.lookups.clear();
        }
    }
    fn wants_stream(&self, _: Dir) -> bool {
        true
    }
    fn facts(&self) -> &AppFacts {
        &self.facts
    }
}

/// Plays a TCP flow (handshake seen, ISNs 1000 and 5000) through a slot.
struct Player {
    slot: AppSlot,
    flow: FlowContext,
    protocols: Vec<Box<dyn Protocol>>,
    seq: [u32; 2],
    index: u64,
    out: Emit,
    /// The handshake was seen (stream starts known).
    handshake: bool,
}

impl Player {
    fn new(protocols: Vec<Box<dyn Protocol>>) -> Player {
        Player {
            slot: AppSlot::new(),
            flow: ctx(proto::TCP, "10.81.1.10:40000", "10.81.2.10:3128"),
            protocols,
            seq: [1001, 5001],
            index: 0,
            out: Vec::new(),
            handshake: true,
        }
    }

    /// A flow picked up mid-stream, as the engine marks it.
    fn midstream(protocols: Vec<Box<dyn Protocol>>) -> Player {
        let mut p = Player::new(protocols);
        p.slot.set_midstream();
        p.handshake = false;
        p
    }

    fn send(&mut self, dir: Dir, payload: &[u8]) -> &mut Self {
        self.index += 1;
        let d = dir.index();
        let input = PacketInput {
            flow: &self.flow,
            view: PacketView {
                index: self.index,
                ts: Timestamp::from_secs(1_000 + self.index),
                dir,
                tcp: Some(TcpInfo {
                    flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
                    seq: self.seq[d],
                    ack: self.seq[1 - d],
                    window: 512,
                }),
                payload,
                payload_len: payload.len() as u32,
            },
            data_start: self.handshake.then_some([1001, 5001][d]),
            budget: 1 << 20,
        };
        self.seq[d] = self.seq[d].wrapping_add(payload.len() as u32);
        self.slot.on_packet(&self.protocols, &input, &mut self.out);
        self
    }

    fn finish(&mut self) {
        self.slot.finish(
            &self.protocols,
            &self.flow,
            Timestamp::from_secs(2_000),
            &mut self.out,
        );
    }
}

fn with_recorder() -> Vec<Box<dyn Protocol>> {
    vec![Box::new(Recorder)]
}

#[test]
fn inner_analyzer_sees_packets_cut_at_the_end_of_the_reply() {
    let mut p = Player::new(with_recorder());
    let req = b"CONNECT inner.example:22 HTTP/1.1\r\n\r\n";
    let reply = b"HTTP/1.1 200 OK\r\n\r\n";
    let mut coalesced = reply.to_vec();
    coalesced.extend_from_slice(b"REC-server");
    p.send(Dir::ToServer, req)
        .send(Dir::ToClient, &coalesced)
        .send(Dir::ToServer, b"REC-client")
        .send(Dir::ToClient, b"more");
    let facts = p.slot.facts().expect("inner claimed");
    assert_eq!(facts.app_proto, Some("rec"));
    // The reply packet is handed in as its 10 inner bytes, at the sequence
    // number after the reply; the request packet not at all.
    let inner_server_seq = 5001 + reply.len();
    let inner_client_seq = 1001 + req.len();
    let want = format!(
        "1:{inner_server_seq}:10 0:{inner_client_seq}:10 1:{}:4 ",
        inner_server_seq + 10
    );
    assert_eq!(facts.server_name.as_deref(), Some(want.as_str()));
    let hops = p.slot.tunnel();
    assert_eq!(hops.len(), 1);
    let hop = hops[0].1.unwrap();
    assert_eq!(
        (hops[0].0, &*hop.host, hop.port),
        (Via::HttpConnect, "inner.example", 22)
    );
    assert!(p.out.iter().any(|e| e.event_type == "http"));
}

#[test]
fn layers_nest_socks_then_connect() {
    let mut p = Player::new(with_recorder());
    let mut request = hex("05 01 00 01 0a510214 0c38");
    p.send(Dir::ToServer, &hex("05 01 00"))
        .send(Dir::ToClient, &hex("05 00"))
        .send(Dir::ToServer, &request);
    request.clear();
    p.send(Dir::ToClient, &hex("05 00 00 01 00000000 0000"))
        .send(Dir::ToServer, b"CONNECT 203.0.113.5:443 HTTP/1.1\r\n\r\n")
        .send(
            Dir::ToClient,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        )
        .send(Dir::ToServer, b"REC-hello");
    let facts = p.slot.facts().expect("inner claimed");
    assert_eq!(facts.app_proto, Some("rec"));
    let hops: Vec<_> = p
        .slot
        .tunnel()
        .into_iter()
        .map(|(v, h)| (v, h.map(|h| h.host.to_string())))
        .collect();
    assert_eq!(
        hops,
        [
            (Via::Socks5, Some("10.81.2.20".to_string())),
            (Via::HttpConnect, Some("203.0.113.5".to_string())),
        ]
    );
}

#[test]
fn depth_is_bounded() {
    let mut p = Player::new(with_recorder());
    for _ in 0..=MAX_DEPTH {
        p.send(Dir::ToServer, b"PROXY UNKNOWN\r\n");
    }
    p.send(Dir::ToServer, b"REC");
    assert_eq!(p.slot.tunnel().len(), usize::from(MAX_DEPTH));
    assert!(p.slot.tunnel_bounded());
    // The fifth header was offered to the protocols, which declined it.
    assert!(p.slot.facts().is_some_and(|f| f.app_proto == Some("proxy")));
}

#[test]
fn ssh_through_connect_is_ssh() {
    let names = Arc::new(NameCache::default());
    let mut p = Player::new(registry(names, &Default::default()));
    p.send(
        Dir::ToServer,
        b"CONNECT 198.51.100.23:22 HTTP/1.1\r\nHost: 198.51.100.23:22\r\n\r\n",
    );
    let mut reply =
        b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n".to_vec();
    reply.extend_from_slice(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
    p.send(Dir::ToClient, &reply)
        .send(Dir::ToServer, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
    p.finish();
    let facts = p.slot.facts().expect("ssh");
    assert_eq!(facts.app_proto, Some("ssh"));
    let ssh = facts.ssh.as_deref().unwrap();
    assert!(ssh
        .server_banner
        .as_deref()
        .unwrap()
        .starts_with("SSH-2.0-OpenSSH_9.2p1"));
    assert!(ssh.client_banner.is_some());
    assert!(p.out.iter().any(|e| e.event_type == "ssh"));
}

#[test]
fn failed_connect_is_http_to_the_proxy() {
    let names = Arc::new(NameCache::default());
    let mut p = Player::new(registry(names, &Default::default()));
    p.send(
        Dir::ToServer,
        b"CONNECT blocked.example:443 HTTP/1.1\r\n\r\n",
    )
    .send(
        Dir::ToClient,
        b"HTTP/1.1 403 Filtered\r\nConnection: close\r\n\r\n",
    );
    p.finish();
    let facts = p.slot.facts().expect("carrier");
    assert_eq!(facts.app_proto, Some("http"));
    assert!(p.slot.tunnel().is_empty());
    assert_eq!(p.out.iter().filter(|e| e.event_type == "http").count(), 1);
}

#[test]
fn plain_protocols_are_unchanged() {
    let names = Arc::new(NameCache::default());
    let mut p = Player::new(registry(names, &Default::default()));
    p.send(Dir::ToServer, b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(p.slot.facts().and_then(|f| f.app_proto), Some("http"));
    assert!(p.slot.tunnel().is_empty());
}

/// Keystrokes and echoes of chacha20-poly1305 (36-byte packets, random
/// bytes to any probe), after some output.
fn play_typing(p: &mut Player) {
    let (out, key) = (vec![0xa5u8; 324], vec![0x5au8; 36]);
    p.send(Dir::ToClient, &out);
    for _ in 0..24 {
        p.send(Dir::ToServer, &key).send(Dir::ToClient, &key);
    }
}

#[test]
fn unclaimed_midstream_flow_is_checked_for_ssh_by_its_sizes() {
    let all = || registry(Arc::new(NameCache::default()), &Default::default());
    let mut p = Player::midstream(all());
    play_typing(&mut p);
    p.finish();
    let facts = p.slot.facts().expect("probable SSH");
    assert_eq!(facts.app_proto, Some("ssh"));
    let ssh = facts.ssh.as_deref().expect("SSH facts");
    let how = ssh.inferred.as_ref().expect("marked inferred");
    assert_eq!(
        how.inferred,
        Some(crate::analyzer::ssh::midstream::INFERRED)
    );
    assert!(ssh.forward_interactive.is_some());
    // The same packets with the handshake seen: nobody claims them.
    let mut p = Player::new(all());
    play_typing(&mut p);
    assert!(p.slot.is_unknown());
    // Mid-stream without the SSH protocol registered: unknown too.
    let mut p = Player::midstream(with_recorder());
    play_typing(&mut p);
    assert!(p.slot.is_unknown());
}

/// A slot rides on every flow that carries payload: the flow's endpoints
/// stay on the flow ([`PacketInput::flow`]), not in the slot.
#[test]
fn slot_layout_stays_small() {
    assert!(
        std::mem::size_of::<AppSlot>() <= 104,
        "{}",
        std::mem::size_of::<AppSlot>()
    );
}
