//! SSH picked up mid-stream, with no remembered flow to continue: the
//! start of a session (banners, key exchange, login) is cut off the
//! capture, so no probe recognises it and only the segment sizes are left.
//! The cipher-aware size model still makes it probable SSH, marked
//! inferred `midstream-size-model`: the demo's reverse tunnel (generated,
//! `gen::demo`) keeps its reverse verdicts, the lab's interactive OpenSSH
//! session (real, `tests/data/`) is `ssh-to-external`.

use egresswatch::engine::{Engine, EngineConfig};
use egresswatch::event::{Event, FlowRecord};
use egresswatch::flow::FlowConfig;
use egresswatch::gen::demo::{demo, DEMO_SEED, TUNNEL_CLIENT_PORT};
use egresswatch::policy::{Alert, Detection};
use egresswatch::source::{Frame, LinkType};
use egresswatch::time::Timestamp;

const INFERRED: &str = "midstream-size-model";

/// A captured frame.
struct Pkt {
    ts: Timestamp,
    data: Vec<u8>,
}

fn replay(pkts: &[Pkt]) -> Vec<Event> {
    let cfg = EngineConfig {
        flow: FlowConfig::default(),
        community_seed: 0,
    };
    let mut engine = Engine::with_builtin_rules(cfg).expect("built-in rules load");
    let mut events = Vec::new();
    for (i, p) in pkts.iter().enumerate() {
        let frame = Frame {
            ts: p.ts,
            link: LinkType::Ethernet,
            data: &p.data,
            orig_len: p.data.len() as u32,
            input: 0,
        };
        engine.process(&frame, i as u64 + 1, &mut events);
    }
    engine.finish(&mut events);
    events
}

/// Offset of the IPv4 header of an Ethernet frame (one VLAN tag at most).
fn ipv4_at(f: &[u8]) -> Option<usize> {
    let at = match f.get(12..14)? {
        [0x81, 0x00] => 18,
        _ => 14,
    };
    (f.get(at - 2..at)? == [0x08, 0x00]).then_some(at)
}

/// The TCP ports of a frame, if it is TCP over IPv4.
fn tcp_ports(f: &[u8]) -> Option<(u16, u16)> {
    let ip = ipv4_at(f)?;
    if *f.get(ip + 9)? != 6 {
        return None;
    }
    let t = ip + usize::from(f.get(ip)? & 0x0f) * 4;
    let p = |o: usize| Some(u16::from_be_bytes([*f.get(t + o)?, *f.get(t + o + 1)?]));
    Some((p(0)?, p(2)?))
}

fn on_port(f: &[u8], port: u16) -> bool {
    tcp_ports(f).is_some_and(|(a, b)| a == port || b == port)
}

/// Drops the first `n` packets of the TCP connection that uses `port`.
fn cut_start(pkts: Vec<Pkt>, port: u16, n: usize) -> Vec<Pkt> {
    let mut seen = 0;
    pkts.into_iter()
        .filter(|p| {
            if !on_port(&p.data, port) {
                return true;
            }
            seen += 1;
            seen > n
        })
        .collect()
}

/// Classic little-endian pcap, Ethernet.
fn read_pcap(bytes: &[u8]) -> Vec<Pkt> {
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "classic pcap, microseconds"
    );
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let (secs, usecs, incl) = (u32_at(at), u32_at(at + 4), u32_at(at + 8) as usize);
        let data = bytes[at + 16..at + 16 + incl].to_vec();
        let ts = Timestamp::from_nanos(u64::from(secs) * 1_000_000_000 + u64::from(usecs) * 1000);
        out.push(Pkt { ts, data });
        at += 16 + incl;
    }
    out
}

/// Replaces an IPv4 address (source or destination) and fixes the header
/// checksum.
fn move_host(pkts: &mut [Pkt], from: [u8; 4], to: [u8; 4]) {
    for p in pkts {
        let Some(ip) = ipv4_at(&p.data) else { continue };
        for o in [ip + 12, ip + 16] {
            if p.data[o..o + 4] == from {
                p.data[o..o + 4].copy_from_slice(&to);
            }
        }
        let hl = usize::from(p.data[ip] & 0x0f) * 4;
        p.data[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
        let mut sum: u32 = p.data[ip..ip + hl]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p.data[ip + 10..ip + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

fn alerts(events: &[Event]) -> Vec<&Alert> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(&**a),
            _ => None,
        })
        .collect()
}

fn final_flow(events: &[Event], port: u16) -> &FlowRecord {
    events
        .iter()
        .find_map(|e| match e {
            Event::Flow(f)
                if !f.interim && (f.meta.src.port == port || f.meta.dest.port == port) =>
            {
                Some(&**f)
            }
            _ => None,
        })
        .expect("a flow record")
}

fn on_flow<'a>(alerts: &[&'a Alert], port: u16) -> Vec<&'a Alert> {
    alerts
        .iter()
        .filter(|a| a.src.port == port || a.dst.port == port)
        .copied()
        .collect()
}

fn has(alerts: &[&Alert], d: Detection) -> bool {
    alerts.iter().any(|a| a.detection == d)
}

fn demo_packets() -> Vec<Pkt> {
    demo(DEMO_SEED)
        .packets
        .into_iter()
        .map(|p| Pkt {
            ts: p.ts,
            data: p.data,
        })
        .collect()
}

/// Packets of the demo tunnel up to and including its `tcpip-forward`
/// request and reply: the handshake, the login and the `-R` setup.
const DEMO_SETUP_PACKETS: usize = 30;

#[test]
fn reverse_tunnel_cut_mid_stream_keeps_its_reverse_verdicts() {
    let port = TUNNEL_CLIENT_PORT;
    let whole = replay(&demo_packets());
    assert_eq!(final_flow(&whole, port).meta.app_proto, Some("ssh"));
    let events = replay(&cut_start(demo_packets(), port, DEMO_SETUP_PACKETS));
    let flow = final_flow(&events, port);
    assert_eq!(
        flow.meta.app_proto,
        Some("ssh"),
        "probable SSH by its sizes"
    );
    let all = alerts(&events);
    let mine = on_flow(&all, port);
    let ext = mine
        .iter()
        .find(|a| a.detection == Detection::SshToExternal)
        .expect("ssh-to-external");
    assert_eq!(ext.evidence.inferred, Some(INFERRED));
    assert!(
        ext.evidence.summary.contains("inferred, not read"),
        "{}",
        ext.evidence.summary
    );
    assert!(
        has(&mine, Detection::SshReverseSession) || has(&mine, Detection::SshReverseInteractive),
        "{:#?}",
        mine.iter().map(|a| a.detection).collect::<Vec<_>>()
    );
    for a in &mine {
        if matches!(
            a.detection,
            Detection::SshReverseSession | Detection::SshReverseInteractive
        ) {
            assert_eq!(a.evidence.inferred, Some(INFERRED), "{:?}", a.detection);
        }
    }
    // The demo's other mid-stream flow (NFS, already open when the capture
    // starts) stays unknown.
    let inferred: Vec<_> = all
        .iter()
        .filter(|a| a.evidence.inferred == Some(INFERRED))
        .collect();
    assert!(inferred
        .iter()
        .all(|a| a.src.port == port || a.dst.port == port));
}

/// The lab's interactive OpenSSH 9.2 session (chacha20-poly1305) from the
/// client port 47354; its first 40 packets are the handshake and login.
const LAB_PORT: u16 = 47354;
const LAB_SETUP_PACKETS: usize = 40;

fn lab_packets() -> Vec<Pkt> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/f_benign_internal_git_ssh.pcap"
    ))
    .expect("capture");
    let mut pkts = read_pcap(&bytes);
    // internal-git becomes an external server.
    move_host(&mut pkts, [10, 20, 0, 10], [198, 51, 100, 10]);
    pkts
}

#[test]
fn interactive_session_cut_mid_stream_is_ssh_to_external() {
    let whole = replay(&lab_packets());
    let ext = on_flow(&alerts(&whole), LAB_PORT);
    let read = ext
        .iter()
        .find(|a| a.detection == Detection::SshToExternal)
        .expect("identified by bytes");
    assert_eq!(read.evidence.inferred, None);

    let events = replay(&cut_start(lab_packets(), LAB_PORT, LAB_SETUP_PACKETS));
    assert_eq!(final_flow(&events, LAB_PORT).meta.app_proto, Some("ssh"));
    let all = alerts(&events);
    let mine = on_flow(&all, LAB_PORT);
    let ext = mine
        .iter()
        .find(|a| a.detection == Detection::SshToExternal)
        .expect("ssh-to-external, inferred");
    assert_eq!(ext.evidence.inferred, Some(INFERRED));
    assert!(
        ext.evidence.summary.contains("typed from the client side"),
        "{}",
        ext.evidence.summary
    );
    assert!(!has(&mine, Detection::SshReverseSession));
    assert!(!has(&mine, Detection::SshReverseInteractive));
}

/// A mid-stream flow that is no SSH: the lab's interactive session with
/// only its first 40 packets kept plus nothing else is too short; the
/// git clone and rsync flows (handshakes seen) are SSH read from bytes.
#[test]
fn flows_with_a_handshake_are_not_inferred() {
    let events = replay(&lab_packets());
    assert!(alerts(&events)
        .iter()
        .all(|a| a.evidence.inferred != Some(INFERRED)));
}
