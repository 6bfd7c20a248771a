use super::*;
use crate::engine::{Engine, EngineConfig};
use crate::source::{Frame, LinkType};
use etherparse::PacketBuilder;
use serde_json::Value;

/// A complete TCP session built frame by frame: handshake, one request,
/// one reply, FIN teardown.
fn session() -> Vec<(u64, Vec<u8>)> {
    let c = ([10, 0, 0, 5], 40000u16);
    let s = ([198, 51, 100, 10], 22u16);
    let mut frames = Vec::new();
    let mut push = |t: u64, from_client: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]| {
        let (src, dst) = if from_client { (c, s) } else { (s, c) };
        let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 64000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(ack),
                'F' => b.fin(),
                'P' => b.psh(),
                _ => b,
            };
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        frames.push((t, out));
    };
    push(0, true, 100, 0, "S", b"");
    push(10, false, 500, 101, "SA", b"");
    push(20, true, 101, 501, "A", b"");
    push(30, true, 101, 501, "PA", b"SSH-2.0-test\r\n");
    push(40, false, 501, 115, "PA", b"SSH-2.0-srv\r\n");
    push(50, true, 115, 514, "FA", b"");
    push(60, false, 514, 116, "FA", b"");
    push(70, true, 116, 515, "A", b"");
    frames
}

fn run(frames: &[(u64, Vec<u8>)]) -> Vec<Value> {
    let protocols: std::sync::Arc<crate::analyzer::dispatch::Protocols> =
        std::sync::Arc::from(Vec::new());
    let mut engine = Engine::new(
        EngineConfig::default(),
        protocols,
        ahash::RandomState::new(),
    );
    let mut w = EveWriter::new(Vec::new());
    for (i, (ms, data)) in frames.iter().enumerate() {
        let ts = Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000);
        let frame = Frame {
            ts,
            link: LinkType::Ethernet,
            data,
            orig_len: data.len() as u32,
            input: 0,
        };
        engine.process(&frame, i as u64 + 1, &mut w);
    }
    engine.finish(&mut w);
    let out = w.finish().unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn flow_record_has_eve_fields() {
    let records = run(&session());
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["event_type"], "flow");
    assert_eq!(r["src_ip"], "10.0.0.5");
    assert_eq!(r["src_port"], 40000);
    assert_eq!(r["dest_ip"], "198.51.100.10");
    assert_eq!(r["dest_port"], 22);
    assert_eq!(r["proto"], "TCP");
    assert_eq!(r["app_proto"], "failed", "payload nobody claimed");
    assert!(r["community_id"].as_str().unwrap().starts_with("1:"));
    assert!(r["flow_id"].as_u64().unwrap() > 0);
    let f = &r["flow"];
    assert_eq!(
        (f["pkts_toserver"].as_u64(), f["pkts_toclient"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(f["bytes_toserver"], 54 * 4 + 68);
    assert_eq!(f["state"], "closed");
    assert_eq!(f["reason"], "shutdown");
    assert_eq!(f["start"], "2023-11-14T22:13:20.000000+0000");
    assert_eq!(f["end"], "2023-11-14T22:13:20.070000+0000");
    assert_eq!(r["tcp"]["tcp_flags"], "1b");
    assert_eq!(r["tcp"]["syn"], true);
    let x = &r["egresswatch"];
    assert_eq!(x["conn_state"], "SF");
    assert_eq!(x["history"], "ShADdFf");
    assert_eq!(x["originator"], "syn");
    assert_eq!(x["toserver"]["payload_bytes"], 14);
    assert_eq!(x["toclient"]["payload_bytes"], 13);
}

#[test]
fn midstream_flow_marks_the_originator_guess() {
    // Drop the handshake: the responder's data packet comes first.
    let frames: Vec<_> = session().into_iter().skip(4).collect();
    let records = run(&frames);
    let r = &records[0];
    assert_eq!(r["src_port"], 40000, "the ephemeral port is the client");
    assert_eq!(r["egresswatch"]["originator"], "port_guess");
    assert_eq!(r["egresswatch"]["conn_state"], "OTH");
}

#[test]
fn proto_names_follow_suricata() {
    assert_eq!(proto_name(6), "TCP");
    assert_eq!(proto_name(58), "IPv6-ICMP");
    assert_eq!(proto_name(47), "47");
}

#[test]
fn replay_on_a_full_disk_keeps_whole_records_and_counts_the_rest() {
    use spool::fault::{event, ids, Disk};
    // About 1,500 records: the first 256 KiB block meets the full disk.
    let mut disk = Disk::file(100_000);
    let mut w = EveWriter::new(&mut disk);
    for n in 0..1500 {
        w.write(&event(n));
    }
    let err = w.finish().map(drop).unwrap_err();
    let written = ids(&disk.records());
    assert_eq!(written, (0..written.len() as u64).collect::<Vec<_>>());
    assert_eq!(err.records, 1500);
    assert_eq!(err.lost, 1500 - written.len() as u64, "{err}");
    assert_eq!(err.source.raw_os_error(), Some(28));
    // The later records were dropped, not written after the failure.
    assert_eq!(disk.failed_writes, 1);
}

/// A flow remembers the input its first packet came from; the stamp names
/// it (`in_iface`) and the sensor (`host`) on every record.
#[test]
fn records_name_their_interface_and_sensor() {
    let protocols: std::sync::Arc<crate::analyzer::dispatch::Protocols> =
        std::sync::Arc::from(Vec::new());
    let mut engine = Engine::new(
        EngineConfig::default(),
        protocols,
        ahash::RandomState::new(),
    );
    let stamp = Stamp {
        host: Some("gpu-rack-7".into()),
        inputs: Inputs::Interfaces(vec!["span0".into(), "span1".into()]),
    };
    let mut w = EveWriter::new(Vec::new()).with_stamp(stamp);
    for (i, (ms, data)) in session().iter().enumerate() {
        // The handshake arrives on span1, the rest on span0: the flow
        // keeps the interface it began on.
        engine.set_input(if i == 0 { 1 } else { 0 });
        let frame = Frame {
            ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000),
            link: LinkType::Ethernet,
            data,
            orig_len: data.len() as u32,
            input: 0,
        };
        engine.process(&frame, i as u64 + 1, &mut w);
    }
    engine.finish(&mut w);
    let out = String::from_utf8(w.finish().unwrap()).unwrap();
    let r: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(r["in_iface"], "span1");
    assert_eq!(r["host"], "gpu-rack-7");
    assert!(r.get("pcap_filename").is_none());

    let replayed = Stamp {
        host: None,
        inputs: Inputs::File("day1.pcap".into()),
    };
    let mut buf = Vec::new();
    let event = crate::eve::spool::fault::event(1);
    append_stamped(&mut buf, &event, &replayed);
    let r: Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(r["pcap_filename"], "day1.pcap");
    assert!(r.get("host").is_none() && r.get("in_iface").is_none());
}
