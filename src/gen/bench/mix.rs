//! The flow mix: which kinds of flows start, between which hosts, with
//! which tags, and their ground-truth entries.

use super::dgram::{Dgram, Dns, Frag, Icmp, Quic};
use super::hosts::name_id;
use super::hosts::Hosts;
use super::scripts::{bulk_flow, http_flow, keepalive_flow, ssh_flow, tls_flow, SshPattern};
use super::tcp::TcpScript;
use super::{Flow, Gen, Script, Step};
use crate::flow::key::{icmp_ports, proto, Endpoint, FlowKey};
use crate::gen::frame::{self, Path, Vlan};
use crate::gen::proto::dns;
use crate::gen::rng::Rng;
use crate::gen::scenario::GATEWAY_MAC;
use crate::gen::truth::FlowTruth;
use std::net::IpAddr;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Tls,
    Dns,
    Keepalive,
    Quic,
    UdpMisc,
    Http,
    Bulk,
    Icmp,
    Arp,
    Frag,
    SshOut22,
    SshOut443,
    SshOut2222,
    SshReverse,
    SshIn22,
    SshInternal22,
    SshScp,
}

/// The reference generator's flow mix (weights of new flows).
pub(super) const KINDS: [(Kind, f64); 17] = [
    (Kind::Tls, 0.270),
    (Kind::Dns, 0.200),
    (Kind::Keepalive, 0.300),
    (Kind::Quic, 0.060),
    (Kind::UdpMisc, 0.050),
    (Kind::Http, 0.035),
    (Kind::Bulk, 0.025),
    (Kind::Icmp, 0.020),
    (Kind::Arp, 0.010),
    (Kind::Frag, 0.002),
    (Kind::SshOut22, 0.0040),
    (Kind::SshOut443, 0.0015),
    (Kind::SshOut2222, 0.0008),
    (Kind::SshReverse, 0.0015),
    (Kind::SshIn22, 0.0020),
    (Kind::SshInternal22, 0.0020),
    (Kind::SshScp, 0.0008),
];

/// Who a new flow connects and how.
pub(super) struct Shape {
    label: &'static str,
    proto: u8,
    client: (IpAddr, Option<usize>),
    server: IpAddr,
    sport: u16,
    cport: Option<u16>,
    vlan: Vlan,
    script: Script,
    handshake: bool,
}

/// What shaping a flow draws on.
struct Pick<'a> {
    hosts: &'a mut Hosts,
    rng: &'a mut Rng,
    v6: bool,
    midstream: bool,
}

fn tcp(script: TcpScript) -> Script {
    Script::Tcp(Box::new(script))
}

impl Pick<'_> {
    /// TLS, keep-alive, HTTP and internal bulk transfers.
    fn web(&mut self, kind: Kind, s: &mut Shape) {
        let (rng, v6, mid) = (&mut *self.rng, self.v6, self.midstream);
        match kind {
            Kind::Tls => {
                s.label = if mid { "tls_midstream" } else { "tls" };
                s.server = self.hosts.ext(rng, v6);
                s.script = tcp(tls_flow(rng, v6, mid));
            }
            Kind::Keepalive => {
                s.label = if mid {
                    "keepalive_midstream"
                } else {
                    "keepalive"
                };
                s.sport = *rng.pick(&[443, 443, 443, 5223, 8883, 5228]);
                s.server = self.hosts.ext(rng, v6);
                s.script = tcp(keepalive_flow(rng, v6, mid));
            }
            Kind::Http => {
                s.label = "http";
                s.sport = 80;
                s.server = self.hosts.ext(rng, v6);
                s.script = tcp(http_flow(rng, v6));
            }
            _ => {
                s.label = "bulk_internal";
                s.sport = *rng.pick(&[445, 3306, 5432, 8080, 9092, 2049, 6379]);
                s.server = self.hosts.server(rng, v6);
                s.script = tcp(bulk_flow(rng, v6));
            }
        }
    }

    /// A lookup at an internal resolver (IPv4, mostly) or a public one:
    /// A and AAAA together half of the time.
    fn dns(&mut self, s: &mut Shape) {
        let (rng, v6) = (&mut *self.rng, self.v6);
        s.label = "dns";
        s.proto = proto::UDP;
        s.handshake = false;
        s.sport = 53;
        s.server = if !v6 && rng.chance(0.85) {
            *rng.pick(&self.hosts.dns4)
        } else if v6 {
            self.hosts.ext(rng, true)
        } else {
            *rng.pick(&self.hosts.pubdns4)
        };
        let (qtypes, count) = if rng.chance(0.5) {
            ([dns::TYPE_A, dns::TYPE_AAAA], 2)
        } else {
            let t = *rng.pick(&[1u16, 1, 1, 28, 65]);
            ([t, t], 1)
        };
        s.script = Script::Dgram(Dgram::Dns(Dns {
            name: name_id(rng),
            qtypes,
            count,
            q: 0,
            phase: 0,
            txid: 0,
            rtt: rng.uniform(0.0005, 0.04),
        }));
    }

    /// NTP, syslog, RTP voice and generic request/response UDP.
    fn udp_misc(&mut self, s: &mut Shape) {
        let (rng, v6) = (&mut *self.rng, self.v6);
        s.proto = proto::UDP;
        s.handshake = false;
        let r = rng.unit();
        if r < 0.45 {
            s.label = "ntp";
            s.sport = 123;
            s.server = self.hosts.ext(rng, v6);
            let rtt = rng.uniform(0.005, 0.05);
            s.script = Script::Dgram(Dgram::Ntp { sent: 0, rtt });
        } else if r < 0.70 {
            s.label = "syslog";
            s.sport = 514;
            s.server = self.hosts.server(rng, v6);
            let n = rng.range(1, 30) as u32;
            s.script = Script::Dgram(Dgram::Syslog { i: 0, n });
        } else if r < 0.704 {
            s.label = "rtp";
            s.sport = (rng.range(5000, 10_000) * 2) as u16;
            s.cport = Some((rng.range(5000, 10_000) * 2) as u16);
            s.server = self.hosts.ext(rng, v6);
            let n = rng.range(200, 3000) as u32;
            s.script = Script::Dgram(Dgram::Voice { i: 0, n });
        } else {
            s.label = "udp_generic";
            s.sport = rng.range(1024, 65_535) as u16;
            s.server = self.hosts.ext(rng, v6);
            let n = rng.pareto(1.3, 2.0, 500.0) as u32;
            s.script = Script::Dgram(Dgram::Generic { i: 0, n });
        }
    }

    /// QUIC-like UDP, ICMP echo, fragmented UDP and ARP.
    fn datagram(&mut self, kind: Kind, s: &mut Shape) {
        let (rng, v6) = (&mut *self.rng, self.v6);
        s.proto = proto::UDP;
        s.handshake = false;
        match kind {
            Kind::Quic => {
                s.label = "quic";
                s.server = self.hosts.ext(rng, v6);
                s.script = Script::Dgram(Dgram::Quic(Quic {
                    stage: 0,
                    packets: rng.pareto(1.2, 4.0, 20_000.0) as u32,
                    rtt: rng.uniform(0.004, 0.1),
                    gap: *rng.pick(&[0.00003, 0.0002, 0.001]),
                }));
            }
            Kind::Icmp => {
                s.label = "icmp_echo";
                s.proto = if v6 { proto::ICMPV6 } else { proto::ICMP };
                s.server = self.hosts.ext(rng, v6);
                s.script = Script::Dgram(Dgram::Icmp(Icmp {
                    s: 0,
                    n: rng.range(1, 10) as u16,
                    reply: false,
                    rtt: rng.uniform(0.001, 0.08),
                }));
            }
            Kind::Frag => {
                s.label = "udp_fragmented";
                s.sport = *rng.pick(&[2049, 7001]);
                s.server = self.hosts.server(rng, false);
                let big = rng.range(1600, 4000) as u32;
                s.script = Script::Dgram(Dgram::Frag(Frag {
                    stage: 0,
                    left: 0,
                    big,
                }));
            }
            _ => {
                s.label = "arp";
                s.proto = 0;
                s.vlan = Vlan::Untagged;
                s.server = self.hosts.internal(rng, false).0;
                let answered = rng.chance(0.8);
                s.script = Script::Dgram(Dgram::Arp { sent: 0, answered });
            }
        }
    }

    /// SSH out to 22, 443 and 2222, reverse tunnels, scp, and the
    /// negatives: inbound and internal SSH.
    fn ssh(&mut self, kind: Kind, s: &mut Shape) {
        let (rng, v6) = (&mut *self.rng, self.v6);
        let (label, pattern, port) = match kind {
            Kind::SshOut22 => ("ssh_out_22", SshPattern::Interactive, 22),
            Kind::SshOut443 => ("ssh_out_443", SshPattern::Interactive, 443),
            Kind::SshOut2222 => ("ssh_out_2222", SshPattern::Interactive, 2222),
            Kind::SshReverse => (
                "ssh_reverse_tunnel",
                SshPattern::Reverse,
                *rng.pick(&[22, 443]),
            ),
            Kind::SshIn22 => ("ssh_in_22", SshPattern::Interactive, 22),
            Kind::SshInternal22 => ("ssh_internal_22", SshPattern::Interactive, 22),
            _ => ("ssh_scp_out_22", SshPattern::Scp, 22),
        };
        s.label = label;
        s.sport = port;
        s.server = match kind {
            Kind::SshIn22 | Kind::SshInternal22 => self.hosts.server(rng, v6),
            _ => self.hosts.ext(rng, v6),
        };
        if kind == Kind::SshIn22 {
            s.client = (self.hosts.ext(rng, v6), None);
        }
        s.script = tcp(ssh_flow(rng, v6, pattern));
    }
}

impl Gen<'_> {
    pub(super) fn vlan(&mut self) -> Vlan {
        let r = self.rng.unit();
        if r < 0.09 {
            Vlan::Dot1q(*self.rng.pick(&[100, 200, 300, 310]))
        } else if r < 0.10 {
            Vlan::QinQ {
                outer: *self.rng.pick(&[10, 20]),
                inner: *self.rng.pick(&[100, 200]),
            }
        } else {
            Vlan::Untagged
        }
    }

    /// Picks the endpoints and the script of a new flow.
    pub(super) fn shape(&mut self, kind: Kind, midstream: bool) -> Shape {
        let v6 = self.rng.chance(0.12) && !matches!(kind, Kind::Arp | Kind::Frag);
        let vlan = self.vlan();
        let (client, index) = self.hosts.internal(&mut self.rng, v6);
        let mut shape = Shape {
            label: "",
            proto: proto::TCP,
            client: (client, Some(index)),
            server: client,
            sport: 443,
            cport: None,
            vlan,
            script: Script::Dgram(Dgram::Arp {
                sent: 0,
                answered: false,
            }),
            handshake: !midstream,
        };
        let mut p = Pick {
            hosts: &mut self.hosts,
            rng: &mut self.rng,
            v6,
            midstream,
        };
        match kind {
            Kind::Tls | Kind::Keepalive | Kind::Http | Kind::Bulk => p.web(kind, &mut shape),
            Kind::Dns => p.dns(&mut shape),
            Kind::UdpMisc => p.udp_misc(&mut shape),
            Kind::Quic | Kind::Icmp | Kind::Frag | Kind::Arp => p.datagram(kind, &mut shape),
            _ => p.ssh(kind, &mut shape),
        }
        shape
    }

    pub(super) fn is_internal(a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) => v4.is_private(),
            IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
        }
    }

    /// Endpoints, paths, a unique 5-tuple, and the truth entry.
    pub(super) fn make_flow(&mut self, shape: Shape) -> Flow {
        let rng = &mut self.rng;
        let (caddr, cindex) = shape.client;
        let mut server = shape.server;
        let icmp = matches!(shape.proto, proto::ICMP | proto::ICMPV6);
        let mut cport = match (shape.cport, cindex) {
            (Some(p), _) => p,
            (None, Some(i)) => self.hosts.port(i),
            (None, None) => rng.range(32_768, 61_000) as u16,
        };
        let (kc, ks) = if icmp {
            let (a, b, _) = icmp_ports(
                shape.proto == proto::ICMPV6,
                if shape.proto == proto::ICMP { 8 } else { 128 },
                0,
            );
            (a, b)
        } else {
            (cport, shape.sport)
        };
        let mut key_c = kc;
        // One flow per 5-tuple: bump the client port, or for ICMP pick
        // another target.
        if shape.proto != 0 {
            for _ in 0..64 {
                let key = FlowKey::new(
                    Endpoint {
                        addr: caddr,
                        port: key_c,
                    },
                    Endpoint {
                        addr: server,
                        port: ks,
                    },
                    shape.proto,
                    false,
                )
                .0;
                if self.used.insert(key) {
                    break;
                }
                if icmp {
                    server = self.hosts.ext(rng, caddr.is_ipv6());
                } else {
                    cport = match cindex {
                        Some(i) => self.hosts.port(i),
                        None => rng.range(32_768, 61_000) as u16,
                    };
                    key_c = cport;
                }
            }
        }
        // The capture sits on the internal hosts' uplink: an internal client
        // shows its own MAC and talks to the gateway; an outside client
        // (inbound SSH) comes from the gateway to the server's MAC; ARP
        // stays on the segment.
        let (cmac, smac) = if shape.proto == 0 {
            (frame::mac_for(caddr), frame::mac_for(server))
        } else if Self::is_internal(caddr) {
            (frame::mac_for(caddr), GATEWAY_MAC)
        } else {
            (GATEWAY_MAC, frame::mac_for(server))
        };
        let ttl_server = *rng.pick(&[47u8, 52, 54, 57, 58, 116, 118, 241]);
        let fwd = Path {
            src_mac: cmac,
            dst_mac: smac,
            vlan: shape.vlan,
            src: caddr,
            dst: server,
            ttl: 64,
            flow_label: rng.next_u32() & 0xF_FFFF,
        };
        let truth = match (&mut self.truth, shape.proto) {
            (Some(t), p) if p != 0 => {
                let mut f = FlowTruth::new(
                    shape.label,
                    p,
                    Endpoint {
                        addr: caddr,
                        port: key_c,
                    },
                    Endpoint {
                        addr: server,
                        port: ks,
                    },
                    shape.vlan,
                );
                f.handshake = shape.handshake && p == proto::TCP;
                t.flows.push(f);
                Some(t.flows.len() - 1)
            }
            _ => None,
        };
        Flow {
            truth,
            path: fwd,
            server_ttl: ttl_server,
            ports: [cport, shape.sport],
            ident: [rng.next_u16(), rng.next_u16()],
            script: shape.script,
            pending: Step::Arp { reply: false },
            frag: Vec::new(),
            frag_off: 0,
            frag_ident: 0,
        }
    }
}
