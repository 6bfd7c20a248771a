//! Packets for the flow module's tests.

use crate::decode::{Fragment, Packet, TcpFlags, TcpInfo, Transport};
use crate::flow::key::Endpoint;
use crate::time::Timestamp;
use std::net::IpAddr;

/// A payload-less TCP segment from `src:port` to `dst:80` at `secs`.
pub fn tcp_packet(src: IpAddr, port: u16, dst: IpAddr, secs: u64, flags: u8) -> Packet<'static> {
    Packet {
        ts: Timestamp::from_secs(secs),
        src: Endpoint { addr: src, port },
        dst: Endpoint {
            addr: dst,
            port: 80,
        },
        proto: 6,
        transport: Transport::Tcp(TcpInfo {
            flags: TcpFlags(flags),
            seq: 1,
            ack: 0,
            window: 0,
        }),
        frame_len: 60,
        ip_len: 40,
        payload_len: 0,
        payload: &[],
        fragment: Fragment::None,
        one_way: false,
        icmp_inner: None,
    }
}

/// A flow opened by a SYN from 10.0.0.1:`port` to 10.0.0.2:80.
pub fn flow_on_port(port: u16) -> crate::flow::Flow {
    let (src, dst) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let pkt = tcp_packet(src, port, dst, 1, TcpFlags::SYN);
    let (key, side) = pkt.flow_key();
    crate::flow::Flow::new(key, side, &pkt)
}
