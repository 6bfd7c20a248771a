//! What analyzers learn about a flow, in the form the classifier judges.
//! This is the contract between protocol analysis and egress policy.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Facts about one flow's application layer.
#[derive(Clone, Debug, Default)]
pub struct AppFacts {
    /// `app_proto` as identified by bytes (`None` while unknown).
    pub app_proto: Option<&'static str>,
    /// Bumped whenever a fact changes, so the classifier re-judges the flow
    /// only when there is something new.
    pub revision: u32,
    /// A name the client itself asked for: TLS SNI or HTTP Host.
    pub server_name: Option<String>,
    /// Boxed: only SSH flows have them, and every analyzer holds facts.
    pub ssh: Option<Box<SshFacts>>,
    /// Boxed: only mining flows have them.
    pub mining: Option<Box<MiningFacts>>,
    /// DNS: the names the client's latest query asked for (at most
    /// [`MAX_LOOKUPS`]); each query replaces them and bumps the revision,
    /// so the policy sees every name once.
    pub lookups: Vec<Lookup>,
    /// ICMP echo: the payloads carry data (boxed: only tunnels have it).
    pub icmp_tunnel: Option<Box<Evidence>>,
}

/// Question names of one DNS query kept in [`AppFacts::lookups`].
pub const MAX_LOOKUPS: usize = 4;

/// A name a client looked up over DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub name: String,
    /// The query's packet (1-based input position) and time.
    pub packet: u64,
    pub ts: Timestamp,
}

impl AppFacts {
    pub fn new(app_proto: &'static str) -> Self {
        AppFacts {
            app_proto: Some(app_proto),
            revision: 1,
            ..AppFacts::default()
        }
    }

    /// Marks the facts as changed.
    pub fn touch(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }
}

/// What an inference rests on: a short statement and the packets (their
/// 1-based input positions) and times it was drawn from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    pub summary: String,
    /// Packet indices, at most [`Evidence::MAX_PACKETS`].
    pub packets: Vec<u64>,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    /// How the protocol the evidence speaks of was known when it was not
    /// read from its bytes: `tls-record-shape` (SSH or mining inferred
    /// from the sizes and timing of TLS records), `midstream-size-model`
    /// (SSH inferred from the segment sizes of a TCP flow picked up
    /// mid-stream). Written as the EVE
    /// `evidence.inferred` field; absent for protocols identified by bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inferred: Option<&'static str>,
}

/// The ways a protocol is inferred rather than read ([`Evidence::inferred`]).
pub const INFERRED: &[&str] = &["tls-record-shape", "midstream-size-model"];

/// [`Evidence`] as read back (the sensor's state file).
#[derive(Deserialize)]
struct ReadEvidence {
    summary: String,
    packets: Vec<u64>,
    first_ts: Timestamp,
    last_ts: Timestamp,
    inferred: Option<String>,
}

impl<'de> Deserialize<'de> for Evidence {
    /// `inferred` becomes one of [`INFERRED`], or `inferred` for a way this
    /// build does not know.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ReadEvidence::deserialize(d)?;
        let how = |h: String| {
            INFERRED
                .iter()
                .find(|k| **k == h)
                .copied()
                .unwrap_or("inferred")
        };
        Ok(Evidence {
            inferred: r.inferred.map(how),
            ..Evidence::new(r.summary, &r.packets, r.first_ts, r.last_ts)
        })
    }
}

impl Evidence {
    pub const MAX_PACKETS: usize = 16;

    pub fn new(
        summary: impl Into<String>,
        packets: &[u64],
        first_ts: Timestamp,
        last_ts: Timestamp,
    ) -> Self {
        let packets = packets.iter().copied().take(Self::MAX_PACKETS).collect();
        Evidence {
            summary: summary.into(),
            packets,
            first_ts,
            last_ts,
            inferred: None,
        }
    }

    /// Marks the evidence as resting on an inference of the protocol.
    pub fn inferred(mut self, how: &'static str) -> Self {
        self.inferred = Some(how);
        self
    }
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    #[default]
    Unknown,
    Success,
    Failure,
}

/// SSH facts (issue: SSH analysis). Banners and fingerprints identify the
/// software; the `Option<Evidence>` fields are inferences, `Some` once made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SshFacts {
    /// Full identification lines, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2`.
    pub client_banner: Option<String>,
    pub server_banner: Option<String>,
    pub hassh: Option<String>,
    pub hassh_server: Option<String>,
    /// The TCP originator acts as the SSH server (reverse-SSH implant).
    pub role_reversed: Option<Evidence>,
    pub auth: AuthOutcome,
    pub auth_evidence: Option<Evidence>,
    /// `tcpip-forward` (`ssh -R`) requested after login.
    pub remote_forward: Option<Evidence>,
    /// An inner SSH session whose server is on the originator's side.
    pub reverse_session: Option<Evidence>,
    pub reverse_login: AuthOutcome,
    /// Keystrokes arriving from the responder, echoed by the originator.
    pub reverse_interactive: Option<Evidence>,
    /// Client-first inner handshake (ProxyJump): not a reverse tunnel.
    pub nested_forward: Option<Evidence>,
    pub forward_interactive: Option<Evidence>,
    /// Bulk transfer; the summary names the direction.
    pub file_transfer: Option<Evidence>,
    /// Only keepalives after login.
    pub keepalive_only: Option<Evidence>,
    /// Why packet sizes cannot be trusted (gaps, coalescing, compression).
    pub sizes_unreliable: Option<String>,
    /// The SSH session was not read but inferred inside another protocol
    /// (TLS: from its record sizes and timing), and on what that rests.
    pub inferred: Option<Evidence>,
}

/// Mining protocol facts (issue: app-layer identification).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MiningFacts {
    /// `stratum`, `xmrig-login`, `ethproxy`, `pool-name`.
    pub protocol: &'static str,
    pub wallet: Option<String>,
    pub agent: Option<String>,
    pub evidence: Evidence,
}
