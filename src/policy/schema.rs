//! The loaded policy: an immutable [`RuleSet`] and the pieces it is made
//! of. A rule set is built once by the loader and never changed, so a
//! running sensor can keep using its current set while a reload is checked,
//! and swap in the new one whole.

use super::cidr::CidrMap;
use super::detection::{Detection, DetectionSettings, Permissions};
use super::names::{NameIndex, NamePattern};
use crate::flow::key::proto;
use crate::time::Timestamp;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

/// What a zone does with egress flows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EgressMode {
    /// Every egress flow to an external destination that no allow entry
    /// covers is a finding (`egress-not-allowed`).
    DefaultDeny,
    /// Only the named detections fire.
    Monitor,
}

impl EgressMode {
    pub fn name(self) -> &'static str {
        match self {
            EgressMode::DefaultDeny => "default-deny",
            EgressMode::Monitor => "monitor",
        }
    }

    pub fn parse(s: &str) -> Option<EgressMode> {
        match s {
            "default-deny" => Some(EgressMode::DefaultDeny),
            "monitor" => Some(EgressMode::Monitor),
            _ => None,
        }
    }
}

/// An application protocol as identified by bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AppProto {
    Ssh,
    Tls,
    Http,
    Dns,
    Stratum,
}

impl AppProto {
    pub const ALL: [AppProto; 5] = [
        AppProto::Ssh,
        AppProto::Tls,
        AppProto::Http,
        AppProto::Dns,
        AppProto::Stratum,
    ];

    /// The `app_proto` name analyzers use.
    pub fn name(self) -> &'static str {
        match self {
            AppProto::Ssh => "ssh",
            AppProto::Tls => "tls",
            AppProto::Http => "http",
            AppProto::Dns => "dns",
            AppProto::Stratum => "stratum",
        }
    }

    pub fn parse(s: &str) -> Option<AppProto> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// An allow entry's `protocol`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProtoMatch {
    Any,
    Only(AppProto),
}

impl ProtoMatch {
    pub fn parse(s: &str) -> Option<ProtoMatch> {
        if s == "any" {
            Some(ProtoMatch::Any)
        } else {
            AppProto::parse(s).map(ProtoMatch::Only)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProtoMatch::Any => "any",
            ProtoMatch::Only(p) => p.name(),
        }
    }
}

/// An allow entry's `transport`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Any,
    Tcp,
    Udp,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "any" => Some(Transport::Any),
            "tcp" => Some(Transport::Tcp),
            "udp" => Some(Transport::Udp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Any => "any",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    pub fn matches(self, ip_proto: u8) -> bool {
        match self {
            Transport::Any => true,
            Transport::Tcp => ip_proto == proto::TCP,
            Transport::Udp => ip_proto == proto::UDP,
        }
    }
}

/// An inclusive port range (a single port has `first == last`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A named group of internal CIDRs with an egress mode.
#[derive(Clone, Debug)]
pub struct Zone {
    pub name: Arc<str>,
    pub cidrs: Vec<IpNet>,
    pub egress: EgressMode,
    pub description: Option<String>,
    /// Hosts of this zone may sweep and scan inside the cluster
    /// (`internal-discovery` is not raised for them).
    pub allow_discovery: bool,
}

/// When an allow entry stops allowing: the first instant it no longer
/// applies (the day after an `expires` date, 00:00 UTC), compared with
/// packet time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    pub at: Timestamp,
    /// The date as written.
    pub text: String,
}

/// One `[[allow]]` entry.
#[derive(Clone, Debug)]
pub struct AllowEntry {
    pub name: Option<Arc<str>>,
    /// The rule file it came from, and the line of its `[[allow]]` header.
    pub file: Arc<str>,
    pub line: u32,
    /// Indices into [`RuleSet::zones`]; empty means cluster-wide.
    pub zones: Vec<usize>,
    pub cidrs: Vec<IpNet>,
    pub hosts: Vec<NamePattern>,
    /// Empty means any port.
    pub ports: Vec<PortRange>,
    pub transport: Transport,
    pub protocol: ProtoMatch,
    /// Lower-case hex HASSH values of allowed SSH clients; empty = any.
    pub hassh: Vec<Box<str>>,
    pub hassh_server: Vec<Box<str>>,
    pub permissions: Permissions,
    pub reason: Arc<str>,
    pub expires: Option<Expiry>,
    /// Where the entry's parts are written, for diagnostics about it.
    pub site: EntrySite,
}

/// Where an allow entry is written: the rule file's index among the
/// loaded sources (as in [`Diagnostics`](super::diag::Diagnostics)) and
/// byte spans in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntrySite {
    pub file: usize,
    /// The `[[allow]]` header.
    pub header: Range<usize>,
    /// One per [`AllowEntry::cidrs`] and [`AllowEntry::hosts`], in order.
    pub cidrs: Vec<Range<usize>>,
    pub hosts: Vec<Range<usize>>,
    /// The `ports` and `protocol` values, where given.
    pub ports: Option<Range<usize>>,
    pub protocol: Option<Range<usize>>,
}

impl AllowEntry {
    /// How the entry is named in reports: its `name`, else `file:line`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => format!("{}:{}", self.file, self.line),
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires.as_ref().is_some_and(|e| now >= e.at)
    }
}

/// The whole policy, immutable once built. Lookups go through prefix
/// tries (addresses) and hashed name indexes (host names).
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub(crate) cluster_name: Option<String>,
    pub(crate) default_egress: EgressMode,
    pub(crate) internal: CidrMap<()>,
    pub(crate) zones: Vec<Zone>,
    pub(crate) zone_map: CidrMap<usize>,
    pub(crate) allows: Vec<AllowEntry>,
    pub(crate) allow_cidrs: CidrMap<Vec<usize>>,
    pub(crate) allow_names: NameIndex<usize>,
    /// Entries with host names, in order (consulted while a flow's names
    /// may still arrive).
    pub(crate) host_entries: Vec<usize>,
    pub(crate) settings: [DetectionSettings; Detection::COUNT],
    pub(crate) mining_pools: NameIndex<()>,
    pub(crate) mining_pool_count: usize,
    pub(crate) files: Vec<Arc<str>>,
}

impl RuleSet {
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster_name.as_deref()
    }

    /// The egress mode of internal hosts outside every zone.
    pub fn default_egress(&self) -> EgressMode {
        self.default_egress
    }

    pub fn internal_ranges(&self) -> Vec<IpNet> {
        self.internal.iter().map(|(n, _)| n).collect()
    }

    pub fn is_internal(&self, addr: IpAddr) -> bool {
        self.internal.contains(addr)
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone holding `addr` (zones never overlap).
    pub fn zone_of(&self, addr: IpAddr) -> Option<&Zone> {
        let (_, idx) = self.zone_map.longest(addr)?;
        self.zones.get(*idx)
    }

    pub(crate) fn zone_index(&self, addr: IpAddr) -> Option<usize> {
        self.zone_map.longest(addr).map(|(_, idx)| *idx)
    }

    pub fn allows(&self) -> &[AllowEntry] {
        &self.allows
    }

    pub fn settings(&self, d: Detection) -> &DetectionSettings {
        // Indexed by discriminant; the array has one slot per detection.
        &self.settings[d.index()]
    }

    /// The mining-pool pattern `name` matches, if any.
    pub fn mining_pool(&self, name: &str) -> Option<NamePattern> {
        self.mining_pools.first_match(name).map(|(p, ())| p)
    }

    pub fn mining_pool_count(&self) -> usize {
        self.mining_pool_count
    }

    /// The rule files the set was built from, in load order.
    pub fn files(&self) -> &[Arc<str>] {
        &self.files
    }
}
