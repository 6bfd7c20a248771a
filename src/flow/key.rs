//! The canonical flow key. Endpoints are ordered as Community ID v1 orders
//! them, so the table key, the symmetric shard hash and the `community_id`
//! all agree on which packets form one flow.

use std::net::IpAddr;

/// IANA protocol numbers the core cares about.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// One side of a flow: an address and a port (or, for ICMP, the port
/// equivalent of Community ID).
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    /// `addr:port`, IPv6 in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::net::SocketAddr::new(self.addr, self.port).fmt(f)
    }
}

/// A flow's identity with its endpoints in canonical order (`lo <= hi`,
/// except for one-way ICMP messages, which Community ID never swaps).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FlowKey {
    pub lo: Endpoint,
    pub hi: Endpoint,
    pub proto: u8,
}

/// Which canonical endpoint sent a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Side {
    Lo,
    Hi,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and which side sent it.
    /// `one_way` is set for ICMP message types without a counterpart.
    pub fn new(src: Endpoint, dst: Endpoint, proto: u8, one_way: bool) -> (FlowKey, Side) {
        if one_way || src <= dst {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    proto,
                },
                Side::Lo,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    proto,
                },
                Side::Hi,
            )
        }
    }

    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Lo => self.lo,
            Side::Hi => self.hi,
        }
    }

    pub fn has_ports(&self) -> bool {
        has_ports(self.proto)
    }
}

/// The protocol's name as EVE writes it in `proto`.
pub fn proto_name(p: u8) -> std::borrow::Cow<'static, str> {
    match p {
        proto::TCP => "TCP".into(),
        proto::UDP => "UDP".into(),
        proto::ICMP => "ICMP".into(),
        proto::ICMPV6 => "IPv6-ICMP".into(),
        proto::SCTP => "SCTP".into(),
        other => other.to_string().into(),
    }
}

/// Whether Community ID (and the flow table) use ports for this protocol.
pub fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        proto::TCP | proto::UDP | proto::SCTP | proto::ICMP | proto::ICMPV6
    )
}

/// Community ID's port equivalents for ICMP: `(type, code-or-counterpart,
/// one_way)`. A request/response type maps to its counterpart so both
/// directions share one key; other types keep their code and are one-way.
pub fn icmp_ports(is_v6: bool, icmp_type: u8, code: u8) -> (u16, u16, bool) {
    match icmp_counterpart(is_v6, icmp_type) {
        Some(other) => (icmp_type.into(), other.into(), false),
        None => (icmp_type.into(), code.into(), true),
    }
}

fn icmp_counterpart(is_v6: bool, icmp_type: u8) -> Option<u8> {
    let pairs: &[(u8, u8)] = if is_v6 {
        &[
            (128, 129),
            (130, 131),
            (133, 134),
            (135, 136),
            (139, 140),
            (144, 145),
        ]
    } else {
        &[(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)]
    };
    pairs.iter().find_map(|&(a, b)| match icmp_type {
        t if t == a => Some(b),
        t if t == b => Some(a),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: &str, port: u16) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, s1) = FlowKey::new(ep("10.0.0.2", 40000), ep("10.0.0.1", 22), 6, false);
        let (k2, s2) = FlowKey::new(ep("10.0.0.1", 22), ep("10.0.0.2", 40000), 6, false);
        assert_eq!(k1, k2);
        assert_eq!(s1, s2.other());
        assert_eq!(k1.lo, ep("10.0.0.1", 22));
    }

    #[test]
    fn ports_break_address_ties() {
        let (k, side) = FlowKey::new(ep("10.0.0.1", 5000), ep("10.0.0.1", 80), 6, false);
        assert_eq!(k.lo.port, 80);
        assert_eq!(side, Side::Hi);
    }

    #[test]
    fn one_way_icmp_is_never_swapped() {
        let (k, side) = FlowKey::new(ep("10.0.0.9", 3), ep("10.0.0.1", 1), 1, true);
        assert_eq!(k.lo, ep("10.0.0.9", 3));
        assert_eq!(side, Side::Lo);
    }

    #[test]
    fn icmp_echo_maps_to_counterpart() {
        assert_eq!(icmp_ports(false, 8, 0), (8, 0, false));
        assert_eq!(icmp_ports(false, 0, 0), (0, 8, false));
        assert_eq!(icmp_ports(true, 129, 0), (129, 128, false));
        assert_eq!(icmp_ports(false, 3, 1), (3, 1, true));
    }
}
