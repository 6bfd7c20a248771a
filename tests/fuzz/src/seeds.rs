//! The seed corpus, built rather than stored: captures from the project's
//! own generator (the demo and a slice of the benchmark mix, see
//! `egresswatch::gen`), the frames, TCP segments and conversations taken
//! from them, the shipped and test rule files, the SSH test vectors of
//! `src/analyzer/ssh/testdata`, and the small captures of `tests/data`.
//! Every seed is deterministic: the same on every machine.

use crate::targets::{app, decode, rules, stream};
use egresswatch::analyzer::{Chunk, Dir};
use egresswatch::decode::{decode as decode_frame, Packet, Transport};
use egresswatch::flow::key::{proto, FlowKey};
use egresswatch::flow::stream::{Segment, Stream};
use egresswatch::gen::{self, GenPacket, TsPrecision};
use egresswatch::source::file::CaptureReader;
use egresswatch::source::{Frame, LinkType, PacketSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One seed of one target.
#[derive(Clone, Debug)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

/// Frames of the generated captures used as seeds.
const CAPTURE_FRAMES: usize = 48;
/// Seeds per target taken from generated traffic, at most.
const PER_TARGET: usize = 12;
/// Payloads and bytes of one conversation seed, at most.
const CONVERSATION_PAYLOADS: usize = 24;
const CONVERSATION_BYTES: usize = 16 << 10;

/// The repository this package lives in.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every seed of every target.
pub fn corpus() -> Vec<Seed> {
    let demo = gen::demo::demo(gen::demo::DEMO_SEED).packets;
    let mut bench = Vec::new();
    let cfg = gen::BenchConfig::new(4_000, gen::bench::DEFAULT_SEED);
    gen::bench::run(&cfg, &mut bench).expect("generating into memory");
    let files = data_captures();

    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: String, data: Vec<u8>| {
        seeds.push(Seed { target, name, data });
    };
    for (name, packets) in [("demo", &demo), ("bench", &bench)] {
        for (format, bytes) in generated_captures(&packets[..CAPTURE_FRAMES.min(packets.len())]) {
            add("capture", format!("{name}-{format}"), bytes.clone());
            add("engine", format!("{name}-{format}"), bytes);
        }
    }
    for (name, bytes) in &files {
        add("capture", name.clone(), bytes.clone());
        add("engine", name.clone(), bytes.clone());
    }

    let mut frames: Vec<(LinkType, Vec<u8>)> = demo
        .iter()
        .chain(&bench)
        .map(|p| (LinkType::Ethernet, p.data.clone()))
        .collect();
    frames.extend(files.iter().flat_map(|(_, bytes)| frames_of(bytes)));
    for (i, data) in frame_seeds(&frames).into_iter().enumerate() {
        add("decode", format!("frame-{i:02}"), data);
    }

    let flows = flows(&frames);
    for (i, data) in stream_seeds(&flows).into_iter().enumerate() {
        add("stream", format!("segments-{i:02}"), data);
    }
    for (target, name, data) in conversation_seeds(&flows) {
        add(target, name, data);
    }
    for (name, data) in ssh_vectors() {
        add("ssh", name, data);
    }
    for (target, name, data) in payload_seeds() {
        add(target, name.into(), data);
    }
    for (name, data) in rule_seeds() {
        add("rules", name, data);
    }
    seeds
}

/// The seeds of one target.
pub fn for_target(corpus: &[Seed], target: &str) -> Vec<Vec<u8>> {
    corpus
        .iter()
        .filter(|s| s.target == target)
        .map(|s| s.data.clone())
        .collect()
}

fn generated_captures(packets: &[GenPacket]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, prec) in [("us", TsPrecision::Micro), ("ns", TsPrecision::Nano)] {
        let pcap = gen::write_pcap(Vec::new(), packets, prec).expect("in memory");
        let ng = gen::write_pcapng(Vec::new(), packets, prec).expect("in memory");
        out.push((if name == "us" { "pcap-us" } else { "pcap-ns" }, pcap));
        out.push((
            if name == "us" {
                "pcapng-us"
            } else {
                "pcapng-ns"
            },
            ng,
        ));
    }
    out
}

/// The small real captures in `tests/data/captures` (see its README).
fn data_captures() -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("tests/data/captures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(&p).ok()?))
        })
        .collect();
    out.sort();
    out
}

fn frames_of(capture: &[u8]) -> Vec<(LinkType, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(mut reader) = CaptureReader::with_buffer("seed", capture, Vec::new()) {
        while let Ok(Some(f)) = reader.next_frame() {
            out.push((f.link, f.data.to_vec()));
        }
    }
    out
}

fn frame(link: LinkType, data: &[u8]) -> Frame<'_> {
    Frame {
        ts: egresswatch::time::Timestamp::from_secs(1_700_000_000),
        link,
        data,
        orig_len: data.len() as u32,
        input: 0,
    }
}

/// One frame of each shape (link, ether type, IP protocol, TCP flags,
/// payload or not, or the reason it is skipped), as `decode` inputs; IP
/// frames also bare, as LINKTYPE_RAW.
fn frame_seeds(frames: &[(LinkType, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let encode = |link, data: &[u8]| [&[decode::link_byte(link), 0][..], data].concat();
    for (link, data) in frames {
        let shape = match decode_frame(&frame(*link, data)) {
            Ok(p) => format!(
                "{link:?} {:?} {} {:?} {}",
                data.get(12..14),
                p.proto,
                p.tcp().map(|t| t.flags.0),
                p.payload.is_empty()
            ),
            Err(skip) => format!("{link:?} {}", skip.name()),
        };
        if seen.contains(&shape) {
            continue;
        }
        seen.push(shape);
        out.push(encode(*link, data));
        let ether_ip = matches!(data.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd]));
        if *link == LinkType::Ethernet && ether_ip {
            out.push(encode(LinkType::RawIp, &data[14..]));
        }
    }
    out
}

/// A flow of the seed captures: its packets in capture order, with their
/// direction from the first packet's sender.
struct FlowSeed<'a> {
    proto: u8,
    packets: Vec<(Dir, Packet<'a>)>,
}

fn flows(frames: &[(LinkType, Vec<u8>)]) -> Vec<FlowSeed<'_>> {
    let mut index: HashMap<FlowKey, usize> = HashMap::new();
    let mut flows: Vec<FlowSeed<'_>> = Vec::new();
    for (link, data) in frames {
        let Ok(pkt) = decode_frame(&frame(*link, data)) else {
            continue;
        };
        if !matches!(pkt.transport, Transport::Tcp(_) | Transport::Udp) {
            continue;
        }
        let key = pkt.flow_key().0;
        let i = *index.entry(key).or_insert_with(|| {
            flows.push(FlowSeed {
                proto: pkt.proto,
                packets: Vec::new(),
            });
            flows.len() - 1
        });
        let flow = &mut flows[i];
        let dir = match flow.packets.first() {
            Some((_, first)) if first.src != pkt.src => Dir::ToClient,
            _ => Dir::ToServer,
        };
        flow.packets.push((dir, pkt));
    }
    flows
}

/// Each direction of TCP flows as `stream` inputs: flows whose segments
/// arrive out of order or twice first, then the first few others.
fn stream_seeds(flows: &[FlowSeed<'_>]) -> Vec<Vec<u8>> {
    let mut irregular = Vec::new();
    let mut regular = Vec::new();
    for flow in flows.iter().filter(|f| f.proto == proto::TCP) {
        for dir in [Dir::ToServer, Dir::ToClient] {
            let segs: Vec<(bool, u32, &[u8])> = flow
                .packets
                .iter()
                .filter(|(d, _)| *d == dir)
                .filter_map(|(_, p)| p.tcp().map(|t| (t.flags.syn(), t.seq, p.payload)))
                .collect();
            if segs.iter().all(|s| s.2.is_empty()) {
                continue;
            }
            let in_order = segs.windows(2).all(|w| {
                let next = w[0].1.wrapping_add(w[0].2.len() as u32 + u32::from(w[0].0));
                w[1].1 == next
            });
            let seed = stream::encode(false, &segs);
            if in_order {
                regular.push(seed);
            } else {
                irregular.push(seed);
            }
        }
    }
    irregular.truncate(PER_TARGET);
    regular.truncate(PER_TARGET / 2);
    irregular.extend(regular);
    irregular
}

/// Each flow's payloads in stream order, as a conversation seed of every
/// protocol target that claims it.
fn conversation_seeds(flows: &[FlowSeed<'_>]) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut seen = Vec::new();
    for flow in flows {
        let Some(data) = conversation(flow) else {
            continue;
        };
        if seen.contains(&data) {
            continue;
        }
        for target in ["ssh", "tls", "dns", "http", "stratum"] {
            let n = counts.entry(target).or_default();
            if *n < PER_TARGET && app::claims(target, &data) {
                out.push((target, format!("flow-{n:02}"), data.clone()));
                *n += 1;
            }
        }
        seen.push(data);
    }
    out
}

fn conversation(flow: &FlowSeed<'_>) -> Option<Vec<u8>> {
    let udp = flow.proto == proto::UDP;
    let handshake = flow
        .packets
        .first()
        .and_then(|(_, p)| p.tcp())
        .is_some_and(|t| t.flags.syn());
    let mut streams: [Stream; 2] = Default::default();
    let mut payloads: Vec<(Dir, Vec<u8>)> = Vec::new();
    for (dir, p) in &flow.packets {
        match p.tcp() {
            None => payloads.push((*dir, p.payload.to_vec())),
            Some(t) => {
                let seg = Segment {
                    seq: t.seq,
                    syn: t.flags.syn(),
                    data: p.payload,
                    wire_len: p.payload_len,
                };
                streams[dir.index()].push(seg, &mut |c| {
                    if let Chunk::Data(d) = c {
                        payloads.push((*dir, d.to_vec()));
                    }
                });
            }
        }
    }
    payloads.retain(|(_, d)| !d.is_empty());
    payloads.truncate(CONVERSATION_PAYLOADS);
    let mut total = 0;
    payloads.retain(|(_, d)| {
        total += d.len();
        total <= CONVERSATION_BYTES
    });
    if payloads.is_empty() {
        return None;
    }
    let flags = if udp {
        app::UDP
    } else if handshake {
        app::HANDSHAKE
    } else {
        0
    };
    let parts: Vec<(Dir, &[u8])> = payloads.iter().map(|(d, p)| (*d, &p[..])).collect();
    Some(app::encode(flags, &parts))
}

/// Real KEXINITs of OpenSSH, Dropbear and AsyncSSH (see the README beside
/// them), each after its identification line.
fn ssh_vectors() -> Vec<(String, Vec<u8>)> {
    let hex = |s: &str| -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        s.chunks(2)
            .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect()
    };
    let vectors = |name: &str| {
        let path = repo_root().join("src/analyzer/ssh/testdata").join(name);
        hex(&std::fs::read_to_string(path).unwrap_or_default())
    };
    let with_banner = |banner: &[u8], kex: Vec<u8>| [banner, &kex].concat();
    let client = with_banner(
        b"SSH-2.0-OpenSSH_7.4\r\n",
        vectors("openssh_client_gex_kexinit.hex"),
    );
    let server = with_banner(
        b"SSH-2.0-OpenSSH_7.3\r\n",
        vectors("openssh_server_kexinit.hex"),
    );
    let dropbear = vectors("dropbear_2018_76_banner_kexinit.hex");
    let asyncssh = with_banner(
        b"SSH-2.0-AsyncSSH_2.8.1\r\n",
        vectors("asyncssh_2_8_1_kexinit.hex"),
    );
    let conv = |parts: &[(Dir, &[u8])]| app::encode(app::HANDSHAKE, parts);
    vec![
        (
            "openssh-gex".into(),
            conv(&[(Dir::ToServer, &client), (Dir::ToClient, &server)]),
        ),
        (
            "dropbear-asyncssh".into(),
            conv(&[(Dir::ToClient, &dropbear), (Dir::ToServer, &asyncssh)]),
        ),
    ]
}

/// Conversations of the variants generated traffic lacks: the Stratum
/// dialects (v1, XMRig `login`, ethproxy), mining over HTTP (getwork),
/// HTTP with a body, DNS over TCP, built with `egresswatch::gen::proto`
/// where it has a builder.
fn payload_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use egresswatch::gen::proto::{dns, http, stratum};
    let tcp = |parts: &[(Dir, &str)]| {
        let parts: Vec<(Dir, &[u8])> = parts.iter().map(|(d, p)| (*d, p.as_bytes())).collect();
        app::encode(app::HANDSHAKE, &parts)
    };
    let (c, s) = (Dir::ToServer, Dir::ToClient);
    let wallet = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";
    let v1 = [
        (c, stratum::subscribe(1, "cpuminer/2.5.1")),
        (
            s,
            stratum::subscribe_result(1, "ae6812eb4cd7735a302a8a9dd95cf71f", "08000002"),
        ),
        (c, stratum::authorize(2, "worker.1", "x")),
        (s, stratum::ok(2)),
        (s, stratum::set_difficulty("0.5")),
        (
            s,
            stratum::notify(
                "bf",
                "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
                "01000000",
                "ffffffff",
                &[],
                0x504e86b9,
                false,
            ),
        ),
        (
            c,
            stratum::submit(4, "worker.1", "bf", 1, 0x504e86b9, 0xb2957c02),
        ),
    ];
    let v1: Vec<(Dir, &str)> = v1.iter().map(|(d, p)| (*d, p.as_str())).collect();
    let login = format!(
        "{{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{{\"login\":\"{wallet}\",\"pass\":\"x\",\"agent\":\"XMRig/6.21.0\",\"algo\":[\"rx/0\"]}}}}\n"
    );
    let job = "{\"id\":1,\"jsonrpc\":\"2.0\",\"error\":null,\"result\":{\"id\":\"a1\",\"job\":{\"blob\":\"0707f7a4\",\"job_id\":\"j1\",\"target\":\"b88d0600\",\"algo\":\"rx/0\"},\"status\":\"OK\"}}\n";
    let eth = "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"eth_submitLogin\",\"worker\":\"rig3\",\"params\":[\"0x9c99d212f7e5daa18ab50810e0fd255d1f04303b\"]}\n";
    let eth_ok = "{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":true}\n";
    let getwork_body = r#"{"method": "getwork", "params": [], "id": 0}"#;
    let getwork = format!(
        "POST / HTTP/1.1\r\nHost: pool.example:8332\r\nAuthorization: Basic d29ya2VyOng=\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{getwork_body}",
        getwork_body.len()
    );
    let mut get = Vec::new();
    http::request(&mut get, "files.example.org", "/pub/a.tar.gz?x=1");
    let mut head = Vec::new();
    http::response_header(&mut head, 5);
    head.extend_from_slice(b"hello");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut query = Vec::new();
    dns::query(&mut query, 0x1234, "pool.minexmr.example", 28);
    let mut answer = Vec::new();
    let addrs = [
        "2001:db8::7".parse().expect("an address"),
        [203, 0, 113, 7].into(),
    ];
    dns::response(&mut answer, 0x1234, "pool.minexmr.example", 28, &addrs, 300);
    let framed = |m: &[u8]| [&(m.len() as u16).to_be_bytes()[..], m].concat();
    vec![
        ("stratum", "v1", tcp(&v1)),
        ("stratum", "xmrig-login", tcp(&[(c, &login), (s, job)])),
        ("stratum", "ethproxy", tcp(&[(c, eth), (s, eth_ok)])),
        ("http", "getwork", tcp(&[(c, &getwork)])),
        ("http", "get", tcp(&[(c, &text(&get)), (s, &text(&head))])),
        (
            "dns",
            "tcp",
            app::encode(
                app::HANDSHAKE,
                &[(c, &framed(&query)), (s, &framed(&answer))],
            ),
        ),
    ]
}

/// The shipped rules each alone and all together, and the lab's rules.
fn rule_seeds() -> Vec<(String, Vec<u8>)> {
    let root = repo_root();
    let mut files: Vec<(String, String)> = ["rules", "tests/rules/lab"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::read_to_string(&p).ok()?))
        })
        .collect();
    files.sort();
    let all: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
    let mut out: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(name, text)| (name.clone(), rules::encode(&[text])))
        .collect();
    let builtin: Vec<String> = egresswatch::policy::shipped()
        .into_iter()
        .map(|s| s.text)
        .collect();
    let builtin: Vec<&str> = builtin.iter().map(String::as_str).collect();
    out.push(("shipped".into(), rules::encode(&builtin)));
    out.push(("all".into(), rules::encode(&all)));
    out
}
