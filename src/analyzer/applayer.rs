//! The app-layer protocols of this crate in the order the flow tracker
//! should offer them a flow's first bytes. Byte signatures decide, never
//! ports; the order only matters for payloads two probes would both
//! claim, so the strictest probes come first and Stratum, which keeps
//! asking for more on any text, comes last. (SSH is registered by its own
//! module.)

use super::dns::{DnsProtocol, DnsVersion};
use super::http::HttpProtocol;
use super::names::NameCache;
use super::stratum::{PoolList, StratumProtocol};
use super::tls::TlsProtocol;
use super::Protocol;
use ipnet::IpNet;
use std::sync::Arc;

/// Options of the app-layer protocols.
#[derive(Clone, Debug, Default)]
pub struct AppLayerConfig {
    /// Learn DNS names only from answers sent by these resolvers (`None`:
    /// from any resolver).
    pub trusted_resolvers: Option<Vec<IpNet>>,
    /// Mining pool domains: a TLS SNI on the list sets mining facts.
    pub mining_pools: Option<Arc<PoolList>>,
    /// The EVE layout of `dns` records.
    pub dns_version: DnsVersion,
}

/// TLS, HTTP, DNS and Stratum, sharing one name cache.
pub fn protocols(names: Arc<NameCache>, config: &AppLayerConfig) -> Vec<Box<dyn Protocol>> {
    let mut dns = DnsProtocol::new(names).with_version(config.dns_version);
    if let Some(nets) = &config.trusted_resolvers {
        dns = dns.with_trusted_resolvers(nets.clone());
    }
    vec![
        Box::new(TlsProtocol::new(config.mining_pools.clone())),
        Box::new(HttpProtocol),
        Box::new(dns),
        Box::new(StratumProtocol),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::testkit::{ctx, hex};
    use crate::analyzer::{Dir, Probe};
    use crate::flow::key::proto;

    /// The first protocol that matches each payload, as the tracker picks.
    fn claim(data: &[u8], p: u8) -> Option<&'static str> {
        let all = protocols(Arc::new(NameCache::default()), &AppLayerConfig::default());
        let c = ctx(p, "10.10.0.10:40000", "198.51.100.9:443");
        all.iter()
            .find(|x| x.probe(&c, Dir::ToServer, data) == Probe::Match)
            .map(|x| x.name())
    }

    #[test]
    fn each_payload_is_claimed_by_its_protocol_only() {
        let dns = hex("98d50120000100000000000003777777076578616d706c6503636f6d0000010001");
        let mut dns_tcp = (dns.len() as u16).to_be_bytes().to_vec();
        dns_tcp.extend_from_slice(&dns);
        let tls = hex("16030100c8010000c40303");
        let cases: [(&[u8], u8, Option<&str>); 7] = [
            (&tls, proto::TCP, Some("tls")),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                proto::TCP,
                Some("http"),
            ),
            (&dns, proto::UDP, Some("dns")),
            (&dns_tcp, proto::TCP, Some("dns")),
            (
                b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n",
                proto::TCP,
                Some("stratum"),
            ),
            (b"SSH-2.0-OpenSSH_9.2p1\r\n", proto::TCP, None),
            (&[0u8; 64], proto::UDP, None),
        ];
        for (data, p, want) in cases {
            assert_eq!(claim(data, p), want, "{:?}", String::from_utf8_lossy(data));
        }
    }
}
