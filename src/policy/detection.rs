//! The detections: stable ids, EVE signature ids, MITRE ATT&CK techniques,
//! default severities, and the severity scale (Suricata's: 1 high, 2
//! medium, 3 low).

use std::fmt;
use std::str::FromStr;

/// Every detection the classifier can raise. The discriminant is the bit
/// in [`crate::policy::AlertState`] and the offset of the signature id, so
/// variants are only ever appended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detection {
    SshToExternal = 0,
    SshNonstandardPort = 1,
    SshReverseForward = 2,
    SshReverseSession = 3,
    SshReverseInteractive = 4,
    SshReverseRole = 5,
    SshLongLived = 6,
    CryptoMining = 7,
    EgressNotAllowed = 8,
    /// The sensor's own flow table is full and evicting: raised by the
    /// engine once per pressure episode, not by the classifier.
    FlowTablePressure = 9,
    /// A host sweeps or scans the cluster's internal addresses: raised by
    /// the per-host stage ([`crate::hosts`]), not by the classifier.
    InternalDiscovery = 10,
    /// A client's queries under one registered domain look like data
    /// carried in names (iodine, dns2tcp, dnscat2): raised by the per-host
    /// stage ([`crate::hosts::dns_tunnel`]), not by the classifier.
    DnsTunnel = 11,
    /// ICMP echo traffic carries data rather than a ping's pattern
    /// (ptunnel-ng, icmpsh, hans): raised on the flow by the classifier.
    IcmpTunnel = 12,
}

/// Signature ids are `SID_BASE + 1 + discriminant`, inside the range
/// Suricata leaves for local rules (1000000-1999999).
pub const SID_BASE: u32 = 1_750_000;

/// EVE `gid` and `rev` of every alert.
pub const GID: u32 = 1;
pub const REV: u32 = 1;

impl Detection {
    pub const ALL: [Detection; 13] = [
        Detection::SshToExternal,
        Detection::SshNonstandardPort,
        Detection::SshReverseForward,
        Detection::SshReverseSession,
        Detection::SshReverseInteractive,
        Detection::SshReverseRole,
        Detection::SshLongLived,
        Detection::CryptoMining,
        Detection::EgressNotAllowed,
        Detection::FlowTablePressure,
        Detection::InternalDiscovery,
        Detection::DnsTunnel,
        Detection::IcmpTunnel,
    ];

    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable id used in rule files, EVE and metrics labels.
    pub fn id(self) -> &'static str {
        match self {
            Detection::SshToExternal => "ssh-to-external",
            Detection::SshNonstandardPort => "ssh-nonstandard-port",
            Detection::SshReverseForward => "ssh-reverse-forward",
            Detection::SshReverseSession => "ssh-reverse-session",
            Detection::SshReverseInteractive => "ssh-reverse-interactive",
            Detection::SshReverseRole => "ssh-reverse-role",
            Detection::SshLongLived => "ssh-long-lived",
            Detection::CryptoMining => "crypto-mining",
            Detection::EgressNotAllowed => "egress-not-allowed",
            Detection::FlowTablePressure => "flow-table-pressure",
            Detection::InternalDiscovery => "internal-discovery",
            Detection::DnsTunnel => "dns-tunnel",
            Detection::IcmpTunnel => "icmp-tunnel",
        }
    }

    pub fn from_id(id: &str) -> Option<Detection> {
        Self::ALL.into_iter().find(|d| d.id() == id)
    }

    pub fn ids() -> [&'static str; Self::COUNT] {
        Self::ALL.map(Detection::id)
    }

    pub fn sid(self) -> u32 {
        SID_BASE + 1 + self as u32
    }

    /// EVE `alert.signature`.
    pub fn signature(self) -> &'static str {
        match self {
            Detection::SshToExternal => "EGRESSWATCH SSH to an external host not allowed by policy",
            Detection::SshNonstandardPort => "EGRESSWATCH SSH on a non-standard port",
            Detection::SshReverseForward => {
                "EGRESSWATCH SSH remote port forwarding requested (ssh -R)"
            }
            Detection::SshReverseSession => {
                "EGRESSWATCH SSH session opened back through a reverse tunnel"
            }
            Detection::SshReverseInteractive => {
                "EGRESSWATCH Interactive typing from outside through a reverse SSH tunnel"
            }
            Detection::SshReverseRole => {
                "EGRESSWATCH Internal host acts as SSH server on an outbound connection"
            }
            Detection::SshLongLived => "EGRESSWATCH Long-lived SSH session to an external host",
            Detection::CryptoMining => "EGRESSWATCH Cryptocurrency mining pool traffic",
            Detection::EgressNotAllowed => "EGRESSWATCH Egress not allowed by zone policy",
            Detection::FlowTablePressure => {
                "EGRESSWATCH Flow table full, flows evicted (possible evasion flood)"
            }
            Detection::InternalDiscovery => {
                "EGRESSWATCH Internal discovery: host sweep or port scan of internal addresses"
            }
            Detection::DnsTunnel => {
                "EGRESSWATCH DNS tunnel: data encoded in the queries of one domain"
            }
            Detection::IcmpTunnel => "EGRESSWATCH ICMP tunnel: echo payloads carry data",
        }
    }

    /// EVE `alert.category`, using Suricata's classification texts.
    pub fn category(self) -> &'static str {
        match self {
            Detection::SshToExternal | Detection::EgressNotAllowed => {
                "Potential Corporate Privacy Violation"
            }
            Detection::SshNonstandardPort => "Detection of a Non-Standard Protocol or Event",
            Detection::SshReverseForward
            | Detection::SshReverseSession
            | Detection::SshReverseInteractive
            | Detection::SshReverseRole => "A Network Trojan was detected",
            Detection::SshLongLived => "Potentially Bad Traffic",
            Detection::CryptoMining => "Crypto Currency Mining Activity Detected",
            Detection::FlowTablePressure => "Attempted Denial of Service",
            Detection::InternalDiscovery => "Detection of a Network Scan",
            Detection::DnsTunnel | Detection::IcmpTunnel => "Potentially Bad Traffic",
        }
    }

    /// MITRE ATT&CK technique ids.
    pub fn mitre(self) -> &'static [&'static str] {
        match self {
            Detection::SshToExternal => &["T1021.004", "T1572"],
            Detection::SshNonstandardPort => &["T1571"],
            Detection::SshReverseForward => &["T1572"],
            Detection::SshReverseSession => &["T1572", "T1090"],
            Detection::SshReverseInteractive => &["T1572", "T1021.004"],
            Detection::SshReverseRole => &["T1572", "T1090"],
            Detection::SshLongLived => &["T1572", "T1021.004"],
            Detection::CryptoMining => &["T1496"],
            Detection::EgressNotAllowed => &["T1071"],
            // What the sensor sees is its own view being flushed: Impair
            // Defenses. Denial of service of a victim (T1498/T1499) is
            // what a flood may also be, but nothing here shows it.
            Detection::FlowTablePressure => &["T1562"],
            // Network Service Discovery; a host sweep is Remote System
            // Discovery (T1018), which the alert names instead.
            Detection::InternalDiscovery => &["T1046"],
            // Application Layer Protocol: DNS; Protocol Tunneling.
            Detection::DnsTunnel => &["T1071.004", "T1572"],
            // Non-Application Layer Protocol; Protocol Tunneling.
            Detection::IcmpTunnel => &["T1095", "T1572"],
        }
    }

    /// The techniques of [`Detection::mitre`] with their names and
    /// tactics, from [`TECHNIQUES`].
    pub fn techniques(self) -> impl Iterator<Item = &'static Technique> {
        techniques(self.mitre())
    }

    /// The tactics of the detection's techniques, each once, in order.
    pub fn tactics(self) -> impl Iterator<Item = &'static Tactic> {
        tactics(self.mitre())
    }

    /// ET's `confidence` metadata: how directly the packets show what the
    /// alert says (`High`: read from the protocol or the addresses;
    /// `Medium`: inferred from sizes and timing).
    pub fn confidence(self) -> &'static str {
        match self {
            Detection::SshReverseSession
            | Detection::SshReverseInteractive
            | Detection::DnsTunnel
            | Detection::IcmpTunnel => "Medium",
            _ => "High",
        }
    }

    /// ET's `attack_target` metadata: what the activity puts at risk.
    pub fn attack_target(self) -> &'static str {
        match self {
            Detection::SshReverseRole => "Server",
            Detection::FlowTablePressure => "Networking_Equipment",
            _ => "Client_Endpoint",
        }
    }

    pub fn default_severity(self) -> Severity {
        match self {
            Detection::SshReverseForward
            | Detection::SshReverseSession
            | Detection::SshReverseInteractive
            | Detection::SshReverseRole
            | Detection::CryptoMining => Severity::HIGH,
            Detection::SshToExternal
            | Detection::SshLongLived
            | Detection::EgressNotAllowed
            | Detection::FlowTablePressure
            | Detection::InternalDiscovery
            | Detection::DnsTunnel
            | Detection::IcmpTunnel => Severity::MEDIUM,
            Detection::SshNonstandardPort => Severity::LOW,
        }
    }

    /// Whether an allow entry needs an explicit permission to suppress
    /// this detection (the reverse-tunnel family, long sessions, mining);
    /// the others are suppressed by any allow entry that covers the flow.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Detection::SshReverseForward => Some(Permission::RemoteForward),
            Detection::SshReverseSession | Detection::SshReverseInteractive => {
                Some(Permission::ReverseSession)
            }
            Detection::SshReverseRole => Some(Permission::ReverseRole),
            Detection::SshLongLived => Some(Permission::LongLived),
            Detection::CryptoMining => Some(Permission::Mining),
            Detection::InternalDiscovery => Some(Permission::Discovery),
            Detection::DnsTunnel => Some(Permission::DnsTunnel),
            Detection::IcmpTunnel => Some(Permission::IcmpTunnel),
            Detection::SshToExternal
            | Detection::SshNonstandardPort
            | Detection::EgressNotAllowed
            | Detection::FlowTablePressure => None,
        }
    }
}

/// The techniques of `ids` with their names and tactics, from [`TECHNIQUES`].
pub fn techniques(ids: &'static [&'static str]) -> impl Iterator<Item = &'static Technique> {
    ids.iter()
        .filter_map(|id| TECHNIQUES.iter().find(|t| t.id == *id))
}

/// The tactics of the techniques `ids`, each once, in order.
pub fn tactics(ids: &'static [&'static str]) -> impl Iterator<Item = &'static Tactic> {
    let mut seen = [false; TACTICS.len()];
    techniques(ids).filter_map(move |t| {
        let i = TACTICS.iter().position(|x| x.id == t.tactic)?;
        (!std::mem::replace(&mut seen[i], true)).then_some(&TACTICS[i])
    })
}

/// A MITRE ATT&CK (Enterprise) technique a detection maps to.
#[derive(Debug, PartialEq, Eq)]
pub struct Technique {
    pub id: &'static str,
    /// As ET rules write names in metadata: words joined by `_`.
    pub name: &'static str,
    /// The tactic id (`TA…`) the technique serves here.
    pub tactic: &'static str,
}

/// A MITRE ATT&CK (Enterprise) tactic.
#[derive(Debug, PartialEq, Eq)]
pub struct Tactic {
    pub id: &'static str,
    pub name: &'static str,
}

/// Every technique a detection names, with the tactic it serves in
/// egress traffic (T1021.004 is Lateral Movement; the tunnelling and
/// proxy techniques are Command and Control).
pub const TECHNIQUES: [Technique; 11] = [
    Technique {
        id: "T1018",
        name: "Remote_System_Discovery",
        tactic: "TA0007",
    },
    Technique {
        id: "T1021.004",
        name: "Remote_Services_SSH",
        tactic: "TA0008",
    },
    Technique {
        id: "T1046",
        name: "Network_Service_Discovery",
        tactic: "TA0007",
    },
    Technique {
        id: "T1071",
        name: "Application_Layer_Protocol",
        tactic: "TA0011",
    },
    Technique {
        id: "T1071.004",
        name: "Application_Layer_Protocol_DNS",
        tactic: "TA0011",
    },
    Technique {
        id: "T1090",
        name: "Proxy",
        tactic: "TA0011",
    },
    Technique {
        id: "T1095",
        name: "Non-Application_Layer_Protocol",
        tactic: "TA0011",
    },
    Technique {
        id: "T1496",
        name: "Resource_Hijacking",
        tactic: "TA0040",
    },
    Technique {
        id: "T1562",
        name: "Impair_Defenses",
        tactic: "TA0005",
    },
    Technique {
        id: "T1571",
        name: "Non_Standard_Port",
        tactic: "TA0011",
    },
    Technique {
        id: "T1572",
        name: "Protocol_Tunneling",
        tactic: "TA0011",
    },
];

/// The tactics of [`TECHNIQUES`].
pub const TACTICS: [Tactic; 5] = [
    Tactic {
        id: "TA0005",
        name: "Defense_Evasion",
    },
    Tactic {
        id: "TA0007",
        name: "Discovery",
    },
    Tactic {
        id: "TA0008",
        name: "Lateral_Movement",
    },
    Tactic {
        id: "TA0011",
        name: "Command_And_Control",
    },
    Tactic {
        id: "TA0040",
        name: "Impact",
    },
];

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Explicit permissions an allow entry can grant.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    RemoteForward = 0,
    ReverseSession = 1,
    ReverseRole = 2,
    LongLived = 3,
    Mining = 4,
    Discovery = 5,
    DnsTunnel = 6,
    IcmpTunnel = 7,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::RemoteForward,
        Permission::ReverseSession,
        Permission::ReverseRole,
        Permission::LongLived,
        Permission::Mining,
        Permission::Discovery,
        Permission::DnsTunnel,
        Permission::IcmpTunnel,
    ];

    /// The allow-entry key that grants it.
    pub fn key(self) -> &'static str {
        match self {
            Permission::RemoteForward => "allow_remote_forward",
            Permission::ReverseSession => "allow_reverse_session",
            Permission::ReverseRole => "allow_reverse_role",
            Permission::LongLived => "allow_long_lived",
            Permission::Mining => "allow_mining",
            Permission::Discovery => "allow_discovery",
            Permission::DnsTunnel => "allow_dns_tunnel",
            Permission::IcmpTunnel => "allow_icmp_tunnel",
        }
    }

    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Permission`]s.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions(pub u8);

impl Permissions {
    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    pub fn keys(self) -> impl Iterator<Item = &'static str> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.has(*p))
            .map(Permission::key)
    }
}

/// Suricata's severity: 1 (high) to 3 (low).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Severity(u8);

impl Severity {
    pub const HIGH: Severity = Severity(1);
    pub const MEDIUM: Severity = Severity(2);
    pub const LOW: Severity = Severity(3);

    pub fn new(level: u8) -> Option<Severity> {
        (1..=3).contains(&level).then_some(Severity(level))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// ET's `signature_severity` metadata for this level.
    pub fn et_name(self) -> &'static str {
        match self.0 {
            1 => "Major",
            2 => "Minor",
            _ => "Informational",
        }
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "high",
            2 => "medium",
            _ => "low",
        }
    }

    /// Whether an alert of this severity meets a `--fail-on` threshold
    /// (high is 1, so "at or above" means numerically at or below).
    pub fn meets(self, threshold: Severity) -> bool {
        self.0 <= threshold.0
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--fail-on` value that is neither a name nor 1-3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid severity `{0}`: expected high, medium, low, 1, 2 or 3")]
pub struct ParseSeverityError(pub String);

impl FromStr for Severity {
    type Err = ParseSeverityError;

    /// Accepts `high|medium|low` (any case) and `1|2|3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" | "1" => Ok(Severity::HIGH),
            "medium" | "2" => Ok(Severity::MEDIUM),
            "low" | "3" => Ok(Severity::LOW),
            _ => Err(ParseSeverityError(s.to_string())),
        }
    }
}

/// Per-detection settings from `[detections.<id>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionSettings {
    pub enabled: bool,
    pub severity: Severity,
    /// No second alert for the same (source, destination, detection)
    /// within this many seconds of packet time; 0 turns it off.
    pub suppress_seconds: u64,
    /// `ssh-long-lived` only: strictly increasing thresholds in seconds
    /// (configured in hours).
    pub long_lived_seconds: Vec<u64>,
}

/// At most this many long-lived thresholds (the per-flow state keeps the
/// level in a byte).
pub const MAX_LONG_LIVED_THRESHOLDS: usize = 16;

pub const DEFAULT_SUPPRESS_SECONDS: u64 = 3600;

pub const DEFAULT_LONG_LIVED_HOURS: [u64; 4] = [1, 4, 8, 12];

impl DetectionSettings {
    pub fn default_for(d: Detection) -> Self {
        DetectionSettings {
            enabled: true,
            severity: d.default_severity(),
            suppress_seconds: DEFAULT_SUPPRESS_SECONDS,
            long_lived_seconds: if d == Detection::SshLongLived {
                DEFAULT_LONG_LIVED_HOURS.iter().map(|h| h * 3600).collect()
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_sids_are_stable() {
        let table: [(&str, u32, &[&str]); 13] = [
            ("ssh-to-external", 1_750_001, &["T1021.004", "T1572"]),
            ("ssh-nonstandard-port", 1_750_002, &["T1571"]),
            ("ssh-reverse-forward", 1_750_003, &["T1572"]),
            ("ssh-reverse-session", 1_750_004, &["T1572", "T1090"]),
            (
                "ssh-reverse-interactive",
                1_750_005,
                &["T1572", "T1021.004"],
            ),
            ("ssh-reverse-role", 1_750_006, &["T1572", "T1090"]),
            ("ssh-long-lived", 1_750_007, &["T1572", "T1021.004"]),
            ("crypto-mining", 1_750_008, &["T1496"]),
            ("egress-not-allowed", 1_750_009, &["T1071"]),
            ("flow-table-pressure", 1_750_010, &["T1562"]),
            ("internal-discovery", 1_750_011, &["T1046"]),
            ("dns-tunnel", 1_750_012, &["T1071.004", "T1572"]),
            ("icmp-tunnel", 1_750_013, &["T1095", "T1572"]),
        ];
        for (d, (id, sid, mitre)) in Detection::ALL.into_iter().zip(table) {
            assert_eq!(d.id(), id);
            assert_eq!(d.sid(), sid);
            assert_eq!(d.mitre(), mitre);
            assert_eq!(Detection::from_id(id), Some(d));
            assert!(d.signature().starts_with("EGRESSWATCH "));
        }
        assert_eq!(Detection::from_id("ssh"), None);
    }

    #[test]
    fn every_technique_has_a_name_and_a_tactic() {
        for d in Detection::ALL {
            let ids: Vec<_> = d.techniques().map(|t| t.id).collect();
            assert_eq!(ids, d.mitre(), "{d}");
            assert!(d.tactics().next().is_some(), "{d}");
        }
        for t in &TECHNIQUES {
            assert!(TACTICS.iter().any(|x| x.id == t.tactic), "{}", t.id);
        }
        let tactics: Vec<_> = Detection::SshReverseInteractive
            .tactics()
            .map(|t| (t.id, t.name))
            .collect();
        assert_eq!(
            tactics,
            [
                ("TA0011", "Command_And_Control"),
                ("TA0008", "Lateral_Movement")
            ]
        );
        let once: Vec<_> = Detection::SshReverseSession
            .tactics()
            .map(|t| t.id)
            .collect();
        assert_eq!(once, ["TA0011"]);
    }

    #[test]
    fn fail_on_parses_names_and_numbers() {
        let table = [
            ("high", 1),
            ("HIGH", 1),
            ("1", 1),
            ("medium", 2),
            ("2", 2),
            (" low ", 3),
            ("3", 3),
        ];
        for (text, level) in table {
            assert_eq!(
                text.parse::<Severity>().map(Severity::get),
                Ok(level),
                "{text}"
            );
        }
        for bad in ["", "0", "4", "critical", "hi"] {
            assert!(bad.parse::<Severity>().is_err(), "{bad}");
        }
    }

    #[test]
    fn meets_compares_on_suricata_scale() {
        assert!(Severity::HIGH.meets(Severity::MEDIUM));
        assert!(Severity::MEDIUM.meets(Severity::MEDIUM));
        assert!(!Severity::LOW.meets(Severity::MEDIUM));
        assert!(Severity::LOW.meets(Severity::LOW));
        assert!(!Severity::MEDIUM.meets(Severity::HIGH));
    }

    #[test]
    fn only_basic_detections_are_suppressed_by_plain_allow_entries() {
        let plain: Vec<_> = Detection::ALL
            .into_iter()
            .filter(|d| d.permission().is_none())
            .collect();
        assert_eq!(
            plain,
            [
                Detection::SshToExternal,
                Detection::SshNonstandardPort,
                Detection::EgressNotAllowed,
                Detection::FlowTablePressure
            ]
        );
    }
}
