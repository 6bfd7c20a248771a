//! Judging one flow against the policy: which side is inside, which zone
//! the flow comes from, which allow entry (if any) covers it, and which
//! detections hold. This is a pure function of the rule set and what the
//! engine knows about the flow; deduplication and suppression happen in
//! [`super::alert`].
//!
//! Facts arrive over a flow's life (the protocol, a TLS SNI, the SSH
//! client's HASSH), so an allow entry can be *undecided*: it would permit
//! the flow if a fact still to come matches. While any entry is undecided
//! and none permits, the detections an allow entry could suppress are held
//! back ([`Verdict::pending`]); when the flow ends, missing facts count as
//! not matching.

use super::detection::{Detection, Permission, Permissions};
use super::schema::{AllowEntry, EgressMode, ProtoMatch, RuleSet};
use crate::analyzer::facts::{Evidence, Lookup, MiningFacts, SshFacts};
use crate::flow::key::{has_ports, Endpoint};
use crate::time::{Timestamp, NANOS_PER_SEC};
use std::fmt::Write as _;
use std::net::IpAddr;

/// How far the engine's knowledge of a flow has come.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No analyzer has claimed the flow yet and probing goes on: the
    /// protocol and the names the client asks for (SNI, Host) may still
    /// arrive.
    Probing,
    /// An analyzer claimed the flow (or every probe declined it): the
    /// protocol is settled; later facts such as the SSH HASSH may still
    /// arrive.
    Identified,
    /// The flow is over; judge with what is known.
    Ended,
}

/// What the engine tells the classifier about one flow.
#[derive(Copy, Clone, Debug)]
pub struct FlowSubject<'a> {
    pub flow_id: u64,
    pub community_id: Option<&'a str>,
    /// The originator (TCP SYN sender).
    pub client: Endpoint,
    pub server: Endpoint,
    /// IP protocol number.
    pub proto: u8,
    /// `app_proto` as identified by bytes (`AppFacts::app_proto`).
    pub app_proto: Option<&'a str>,
    pub stage: Stage,
    /// Names of the server: TLS SNI / HTTP Host (`AppFacts::server_name`)
    /// and the names the client resolved to the server's address via DNS.
    pub names: &'a [&'a str],
    pub ssh: Option<&'a SshFacts>,
    pub mining: Option<&'a MiningFacts>,
    /// DNS: the names the client's latest query asked for.
    pub lookups: &'a [Lookup],
    /// ICMP echo: the payloads carry data.
    pub icmp_tunnel: Option<&'a Evidence>,
    /// Time of the flow's first packet.
    pub first_ts: Timestamp,
    /// Packet time of the judgement (the latest packet, or a tick).
    pub now: Timestamp,
    /// The flow is a tunnel through a proxy (HTTP CONNECT, SOCKS): then
    /// `server` is the requested target (its address, or the proxy's when
    /// the client named a host) and `names` the target's names.
    pub tunnel: Option<Tunnelled<'a>>,
}

/// The proxy a tunnelled flow goes through, and the target it asked for.
#[derive(Copy, Clone, Debug)]
pub struct Tunnelled<'a> {
    /// The carriers, outermost first, e.g. `socks5+http-connect`.
    pub via: &'a str,
    /// `app_proto` of the outermost carrier (`http` for CONNECT).
    pub carrier_app: &'static str,
    /// The flow's own server: the (outermost) proxy.
    pub proxy: Endpoint,
    /// Names the proxy's address is known by.
    pub proxy_names: &'a [&'a str],
    /// The requested host as the client wrote it.
    pub target_host: &'a str,
    /// The requested host when it is an address.
    pub target_addr: Option<IpAddr>,
}

impl<'a> FlowSubject<'a> {
    /// A flow with no application facts yet.
    pub fn new(flow_id: u64, client: Endpoint, server: Endpoint, proto: u8, ts: Timestamp) -> Self {
        FlowSubject {
            flow_id,
            community_id: None,
            client,
            server,
            proto,
            app_proto: None,
            stage: Stage::Probing,
            names: &[],
            ssh: None,
            mining: None,
            lookups: &[],
            icmp_tunnel: None,
            first_ts: ts,
            now: ts,
            tunnel: None,
        }
    }

    /// The protocol, counting SSH facts as SSH: SSH inferred inside
    /// another protocol (TLS) is judged as SSH, so an entry for that
    /// protocol does not permit it.
    fn app(&self) -> Option<&'a str> {
        if self.ssh_inferred().is_some() {
            return Some("ssh");
        }
        self.app_proto.or(self.ssh.map(|_| "ssh"))
    }

    fn is_ssh(&self) -> bool {
        self.app() == Some("ssh")
    }

    /// How SSH was inferred, when it was not read from its bytes.
    fn ssh_inferred(&self) -> Option<&'a Evidence> {
        self.ssh.and_then(|f| f.inferred.as_ref())
    }
}

/// How SSH that was inferred, not read, was found, as a note after a
/// finding: `how` is the evidence's `inferred` value.
fn inferred_note(how: &str) -> &'static str {
    match how {
        crate::analyzer::ssh::midstream::INFERRED => {
            ", SSH inferred from the segment sizes of a flow picked up mid-stream"
        }
        _ => ", SSH inferred inside TLS",
    }
}

/// Where a flow goes relative to the cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Inside to outside: the flows egress policy is about.
    Egress,
    Internal,
    /// Outside to inside.
    Ingress,
    /// Neither end inside.
    External,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Internal => "internal",
            Direction::Ingress => "ingress",
            Direction::External => "external",
        }
    }
}

/// What an allow entry says about a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    Permits,
    /// Would permit if a fact still to come matches; says which.
    Undecided(String),
    /// Matches but its expiry date has passed (in packet time).
    Expired,
    /// Does not cover the flow; says why.
    NotMatching(String),
}

impl EntryStatus {
    pub fn name(&self) -> &'static str {
        match self {
            EntryStatus::Permits => "permits",
            EntryStatus::Undecided(_) => "undecided",
            EntryStatus::Expired => "expired",
            EntryStatus::NotMatching(_) => "not-matching",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            EntryStatus::Undecided(s) | EntryStatus::NotMatching(s) => Some(s),
            EntryStatus::Permits | EntryStatus::Expired => None,
        }
    }

    /// Lower is more telling when picking the entry to report.
    pub(super) fn rank(&self) -> u8 {
        match self {
            EntryStatus::Permits => 0,
            EntryStatus::Undecided(_) => 1,
            EntryStatus::Expired => 2,
            EntryStatus::NotMatching(_) => 3,
        }
    }
}

/// The allow entry reported for a flow: the first that permits it, else
/// the closest miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Considered {
    /// Index into [`RuleSet::allows`].
    pub entry: usize,
    pub status: EntryStatus,
}

/// One detection that holds for a flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub detection: Detection,
    /// `ssh-long-lived`: how many thresholds the session has passed
    /// (1-based); 0 for other detections.
    pub level: u8,
    pub evidence: Evidence,
}

/// The judgement of one flow.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub direction: Direction,
    /// Index into [`RuleSet::zones`] of the inside end's zone.
    pub zone: Option<usize>,
    /// The egress mode that applied (egress flows only).
    pub egress_mode: Option<EgressMode>,
    pub considered: Option<Considered>,
    /// Some allow entry permits the flow.
    pub permitted: bool,
    /// Explicit permissions granted by the entries that permit it.
    pub permissions: Permissions,
    /// Allow-suppressible detections are held back until more facts come.
    pub pending: bool,
    pub findings: Vec<Finding>,
    /// When to judge again even without new facts (the next long-lived
    /// threshold).
    pub next_check: Option<Timestamp>,
}

/// The outcome of the allow entries for one flow.
struct AllowOutcome {
    considered: Option<Considered>,
    permitted: bool,
    permissions: Permissions,
    pending: bool,
}

impl RuleSet {
    pub fn direction(&self, client: IpAddr, server: IpAddr) -> Direction {
        match (self.is_internal(client), self.is_internal(server)) {
            (true, false) => Direction::Egress,
            (true, true) => Direction::Internal,
            (false, true) => Direction::Ingress,
            (false, false) => Direction::External,
        }
    }

    /// The direction of the flow, judged toward a tunnel's target: a target
    /// named by host name (no address known) is outside.
    fn subject_direction(&self, s: &FlowSubject<'_>) -> Direction {
        match s.tunnel {
            Some(t) if t.target_addr.is_none() && self.is_internal(s.client.addr) => {
                Direction::Egress
            }
            _ => self.direction(s.client.addr, s.server.addr),
        }
    }

    /// Judges a flow: every detection that holds now.
    pub fn judge(&self, s: &FlowSubject<'_>) -> Verdict {
        self.judge_skipping(s, |_, _| false)
    }

    /// Like [`judge`](Self::judge), but leaves out findings for which
    /// `skip(detection, level)` is true, without building their evidence.
    pub(crate) fn judge_skipping(
        &self,
        s: &FlowSubject<'_>,
        skip: impl Fn(Detection, u8) -> bool,
    ) -> Verdict {
        let direction = self.subject_direction(s);
        let zone = match direction {
            Direction::Ingress => self.zone_index(s.server.addr),
            _ => self.zone_index(s.client.addr),
        };
        let client_zone = self.zone_index(s.client.addr);
        let allow = self.evaluate_allows(s, client_zone);
        let egress_mode = (direction == Direction::Egress).then(|| {
            zone.and_then(|z| self.zones.get(z))
                .map_or(self.default_egress, |z| z.egress)
        });
        let mut v = Verdict {
            direction,
            zone,
            egress_mode,
            considered: allow.considered,
            permitted: allow.permitted,
            permissions: allow.permissions,
            pending: allow.pending,
            findings: Vec::new(),
            next_check: None,
        };
        let mut ctx = FindingCtx {
            rules: self,
            s,
            v: &mut v,
            skip: &skip,
            out: Vec::new(),
        };
        ctx.collect();
        v.findings = std::mem::take(&mut ctx.out);
        v
    }

    /// Whether a flow from `s.client` may be part of a sweep or scan
    /// without `internal-discovery`: the client's zone sets
    /// `allow_discovery`, or an allow entry that covers the flow does.
    pub fn discovery_permitted(&self, s: &FlowSubject<'_>) -> bool {
        let zone = self.zone_index(s.client.addr);
        if zone
            .and_then(|z| self.zones.get(z))
            .is_some_and(|z| z.allow_discovery)
        {
            return true;
        }
        let allow = self.evaluate_allows(s, zone);
        allow.permitted && allow.permissions.has(Permission::Discovery)
    }

    /// Whether an allow entry that covers the flow grants `permission`
    /// (how the host stage asks about `allow_dns_tunnel`).
    pub fn allow_grants(&self, s: &FlowSubject<'_>, permission: Permission) -> bool {
        let allow = self.evaluate_allows(s, self.zone_index(s.client.addr));
        allow.permitted && allow.permissions.has(permission)
    }

    fn evaluate_allows(&self, s: &FlowSubject<'_>, zone: Option<usize>) -> AllowOutcome {
        let mut best: Option<Considered> = None;
        let mut permitted = false;
        let mut permissions = Permissions::default();
        let mut undecided = false;
        let mut all: Vec<(usize, Option<bool>)> = self
            .candidates(s)
            .into_iter()
            .map(|(i, m)| (i, Some(m)))
            .collect();
        // An entry may cover both the target and the proxy (one host, or
        // a wide CIDR): it is judged both ways, the better status counts.
        if let Some(t) = s.tunnel {
            all.extend(self.carrier_candidates(&t).into_iter().map(|i| (i, None)));
        }
        for (idx, dest_matched) in all {
            let Some(entry) = self.allows.get(idx) else {
                continue;
            };
            let status = match (dest_matched, s.tunnel) {
                (None, Some(t)) => self.carrier_status(entry, s, &t, zone),
                (m, _) => self.entry_status(entry, s, zone, m.unwrap_or(false)),
            };
            match status {
                EntryStatus::Permits => {
                    permitted = true;
                    permissions = Permissions(permissions.0 | entry.permissions.0);
                }
                EntryStatus::Undecided(_) => undecided = true,
                _ => {}
            }
            if best
                .as_ref()
                .is_none_or(|b| status.rank() < b.status.rank())
            {
                best = Some(Considered { entry: idx, status });
            }
        }
        AllowOutcome {
            considered: best,
            permitted,
            permissions,
            pending: undecided && !permitted,
        }
    }

    /// Allow entries that may cover the flow, in file order, each with
    /// whether its destination (CIDR or host name) is known to match.
    pub(super) fn candidates(&self, s: &FlowSubject<'_>) -> Vec<(usize, bool)> {
        let mut out: Vec<(usize, bool)> = Vec::new();
        // A tunnel to a host name has no address to match CIDRs with (the
        // server address is the proxy's).
        if s.tunnel.is_none_or(|t| t.target_addr.is_some()) {
            for (_, ids) in self.allow_cidrs.covering(s.server.addr) {
                out.extend(ids.iter().map(|i| (*i, true)));
            }
        }
        for name in s.names {
            self.allow_names
                .for_each_match(name, |_, i| out.push((*i, true)));
        }
        if s.stage == Stage::Probing {
            out.extend(self.host_entries.iter().map(|i| (*i, false)));
        }
        // Matched before unmatched for the same entry, then keep the first.
        out.sort_by_key(|(i, matched)| (*i, !*matched));
        out.dedup_by_key(|(i, _)| *i);
        out
    }

    /// Entries that cover a tunnelled flow's proxy (its address or names).
    fn carrier_candidates(&self, t: &Tunnelled<'_>) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for (_, ids) in self.allow_cidrs.covering(t.proxy.addr) {
            out.extend(ids.iter().copied());
        }
        for name in t.proxy_names {
            self.allow_names.for_each_match(name, |_, i| out.push(*i));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub(super) fn entry_status(
        &self,
        e: &AllowEntry,
        s: &FlowSubject<'_>,
        zone: Option<usize>,
        dest_matched: bool,
    ) -> EntryStatus {
        if let Some(status) = self.scope_status(e, s, zone, s.server.port) {
            return status;
        }
        if !dest_matched {
            return EntryStatus::Undecided("no host name seen yet".into());
        }
        if let Some(status) = protocol_status(e.protocol, s) {
            return status;
        }
        detail_status(e, s)
    }

    /// An entry that covers the proxy of a tunnelled flow permits what
    /// goes through it, except SSH: SSH through a proxy needs an entry
    /// with `protocol = "ssh"` (for the proxy) or one for the target.
    /// `protocol` may name the inner protocol or the carrier's (`http`
    /// for CONNECT).
    fn carrier_status(
        &self,
        e: &AllowEntry,
        s: &FlowSubject<'_>,
        t: &Tunnelled<'_>,
        zone: Option<usize>,
    ) -> EntryStatus {
        if let Some(status) = self.scope_status(e, s, zone, t.proxy.port) {
            return status;
        }
        let named = match e.protocol {
            ProtoMatch::Any => None,
            ProtoMatch::Only(p) => Some(p.name()),
        };
        let app = s.app();
        if s.is_ssh() && named != Some("ssh") {
            return EntryStatus::NotMatching(format!(
                "covers the proxy {}, not SSH through it (needs protocol = \"ssh\" or an entry for the target)",
                ep(t.proxy)
            ));
        }
        match (named, app) {
            (None, _) => {}
            (Some(n), Some(a)) if n == a || n == t.carrier_app => {}
            (Some(_), None) if s.stage == Stage::Probing => {
                return EntryStatus::Undecided("protocol not identified yet".into())
            }
            (Some(n), a) => {
                return EntryStatus::NotMatching(format!(
                    "protocol through the proxy is {}, entry allows {n}",
                    a.unwrap_or("unknown")
                ))
            }
        }
        detail_status(e, s)
    }

    /// Zone, transport and port: `None` if they match.
    fn scope_status(
        &self,
        e: &AllowEntry,
        s: &FlowSubject<'_>,
        zone: Option<usize>,
        port: u16,
    ) -> Option<EntryStatus> {
        use EntryStatus::NotMatching;
        if !e.zones.is_empty() && !zone.is_some_and(|z| e.zones.contains(&z)) {
            return Some(NotMatching(format!(
                "applies only to zone {}",
                self.zone_list(&e.zones)
            )));
        }
        if !e.transport.matches(s.proto) {
            return Some(NotMatching(format!(
                "transport is not {}",
                e.transport.name()
            )));
        }
        if !e.ports.is_empty() && (!has_ports(s.proto) || !e.ports.iter().any(|r| r.contains(port)))
        {
            return Some(NotMatching(format!(
                "port {port} is not in {}",
                port_list(e)
            )));
        }
        None
    }

    fn zone_list(&self, ids: &[usize]) -> String {
        let names: Vec<&str> = ids
            .iter()
            .filter_map(|i| self.zones.get(*i))
            .map(|z| z.name.as_ref())
            .collect();
        names.join(", ")
    }
}

fn port_list(e: &AllowEntry) -> String {
    let parts: Vec<String> = e.ports.iter().map(ToString::to_string).collect();
    parts.join(", ")
}

/// HASSH fingerprints and expiry, after the destination and protocol
/// matched.
fn detail_status(e: &AllowEntry, s: &FlowSubject<'_>) -> EntryStatus {
    let client_hassh = s.ssh.and_then(|f| f.hassh.as_deref());
    if let Some(status) = fingerprint_status(&e.hassh, client_hassh, "client HASSH", s.stage) {
        return status;
    }
    let server_hassh = s.ssh.and_then(|f| f.hassh_server.as_deref());
    if let Some(status) = fingerprint_status(&e.hassh_server, server_hassh, "server HASSH", s.stage)
    {
        return status;
    }
    if e.is_expired(s.now) {
        return EntryStatus::Expired;
    }
    EntryStatus::Permits
}

/// `None` if the protocol matches; otherwise why not (or that it is not
/// known yet).
fn protocol_status(want: ProtoMatch, s: &FlowSubject<'_>) -> Option<EntryStatus> {
    let ProtoMatch::Only(want) = want else {
        return None;
    };
    match s.app() {
        Some(p) if p == want.name() => None,
        Some(p) => Some(EntryStatus::NotMatching(format!(
            "protocol is {p}, entry allows {}",
            want.name()
        ))),
        None if s.stage == Stage::Probing => {
            Some(EntryStatus::Undecided("protocol not identified yet".into()))
        }
        None => Some(EntryStatus::NotMatching(format!(
            "protocol not identified, entry allows {}",
            want.name()
        ))),
    }
}

fn fingerprint_status(
    allowed: &[Box<str>],
    seen: Option<&str>,
    what: &str,
    stage: Stage,
) -> Option<EntryStatus> {
    if allowed.is_empty() {
        return None;
    }
    match seen {
        Some(h) if allowed.iter().any(|a| a.eq_ignore_ascii_case(h)) => None,
        Some(h) => Some(EntryStatus::NotMatching(format!(
            "{what} {h} is not allowed"
        ))),
        None if stage == Stage::Ended => {
            Some(EntryStatus::NotMatching(format!("{what} was not seen")))
        }
        None => Some(EntryStatus::Undecided(format!("waiting for the {what}"))),
    }
}

/// Collects the findings of one flow.
struct FindingCtx<'r, 's, 'v, F> {
    rules: &'r RuleSet,
    s: &'s FlowSubject<'s>,
    v: &'v mut Verdict,
    skip: &'v F,
    out: Vec<Finding>,
}

impl<F: Fn(Detection, u8) -> bool> FindingCtx<'_, '_, '_, F> {
    /// Whether `d` is enabled, not suppressed by a permission, and not
    /// skipped by the caller.
    fn wanted(&self, d: Detection, level: u8) -> bool {
        let permitted = d.permission().is_some_and(|p| self.v.permissions.has(p));
        self.rules.settings(d).enabled && !permitted && !(self.skip)(d, level)
    }

    fn add(&mut self, d: Detection, level: u8, evidence: impl FnOnce() -> Evidence) {
        if self.wanted(d, level) {
            self.out.push(Finding {
                detection: d,
                level,
                evidence: evidence(),
            });
        }
    }

    /// A finding whose evidence is a statement about the flow as a whole
    /// (its first packet to now); `text` is only built if wanted.
    fn add_span(&mut self, d: Detection, level: u8, text: impl FnOnce() -> String) {
        if self.wanted(d, level) {
            let evidence = Evidence::new(text(), &[], self.s.first_ts, self.s.now);
            self.out.push(Finding {
                detection: d,
                level,
                evidence,
            });
        }
    }

    fn collect(&mut self) {
        let s = self.s;
        let egress = self.v.direction == Direction::Egress;
        let allow_clear = !self.v.permitted && !self.v.pending;
        if s.is_ssh() {
            if egress && allow_clear {
                self.ssh_to_external();
            }
            if s.server.port != 22 && allow_clear {
                let how = s.ssh_inferred().and_then(|e| e.inferred);
                self.add(Detection::SshNonstandardPort, 0, || {
                    let text = format!(
                        "SSH server on port {} ({}){}",
                        s.server.port,
                        dest(s),
                        how.map_or("", inferred_note)
                    );
                    let mut ev = Evidence::new(text, &[], s.first_ts, s.now);
                    ev.inferred = how;
                    ev
                });
            }
            if let Some(ssh) = s.ssh {
                self.reverse_findings(ssh);
            }
            if egress {
                self.long_lived();
            }
        }
        self.mining();
        if let Some(ev) = s.icmp_tunnel {
            self.add(Detection::IcmpTunnel, 0, || ev.clone());
        }
        if egress && allow_clear && self.v.egress_mode == Some(EgressMode::DefaultDeny) {
            let zone = self
                .v
                .zone
                .and_then(|z| self.rules.zones.get(z))
                .map_or("-", |z| z.name.as_ref());
            let zone = zone.to_string();
            self.add_span(Detection::EgressNotAllowed, 0, || {
                format!(
                    "{} flow from {} (zone {zone}) to external {}: no allow entry covers it",
                    proto_name(s.proto),
                    ep(s.client),
                    dest(s)
                )
            });
        }
    }

    fn ssh_to_external(&mut self) {
        let s = self.s;
        let d = Detection::SshToExternal;
        match s.ssh_inferred() {
            Some(how) => self.add(d, 0, || {
                let text = format!(
                    "SSH (inferred, not read) from {} to external {}: {}",
                    ep(s.client),
                    dest(s),
                    how.summary
                );
                Evidence {
                    summary: text,
                    first_ts: s.first_ts,
                    last_ts: s.now,
                    ..how.clone()
                }
            }),
            None => self.add_span(d, 0, || {
                format!(
                    "SSH (identified by bytes) from {} to external {}{}",
                    ep(s.client),
                    dest(s),
                    banner_note(s.ssh)
                )
            }),
        }
    }

    fn reverse_findings(&mut self, ssh: &SshFacts) {
        let facts = [
            (Detection::SshReverseRole, &ssh.role_reversed),
            (Detection::SshReverseForward, &ssh.remote_forward),
            (Detection::SshReverseSession, &ssh.reverse_session),
            (Detection::SshReverseInteractive, &ssh.reverse_interactive),
        ];
        let inferred = ssh.inferred.as_ref().and_then(|e| e.inferred);
        for (d, fact) in facts {
            if let Some(ev) = fact {
                self.add(d, 0, || match inferred {
                    Some(how) => Evidence {
                        summary: format!(
                            "{}; {}",
                            inferred_note(how).trim_start_matches(", "),
                            ev.summary
                        ),
                        inferred: Some(how),
                        ..ev.clone()
                    },
                    None => ev.clone(),
                });
            }
        }
    }

    fn long_lived(&mut self) {
        let d = Detection::SshLongLived;
        if !self.rules.settings(d).enabled || self.v.permissions.has(Permission::LongLived) {
            return;
        }
        let thresholds = &self.rules.settings(d).long_lived_seconds;
        let open_nanos = self.s.now.since(self.s.first_ts);
        let crossed = thresholds
            .iter()
            .take_while(|t| t.saturating_mul(NANOS_PER_SEC) <= open_nanos)
            .count();
        if self.s.stage != Stage::Ended {
            self.v.next_check = thresholds
                .get(crossed)
                .map(|t| self.s.first_ts.add_nanos(t.saturating_mul(NANOS_PER_SEC)));
        }
        let (Some(level), Some(passed)) = (
            u8::try_from(crossed).ok().filter(|l| *l > 0),
            crossed.checked_sub(1).and_then(|i| thresholds.get(i)),
        ) else {
            return;
        };
        let s = self.s;
        let passed = *passed;
        self.add_span(d, level, || {
            format!(
                "SSH session {} -> {} open for {:.1} h, past the {} h threshold",
                ep(s.client),
                dest(s),
                Timestamp::secs_f64(open_nanos) / 3600.0,
                fmt_hours(passed)
            )
        });
    }

    fn mining(&mut self) {
        let s = self.s;
        if let Some(m) = s.mining {
            let mut text = format!("{}: {}", m.protocol, m.evidence.summary);
            if let Some(w) = &m.wallet {
                let _ = write!(text, "; wallet {w}");
            }
            if let Some(a) = &m.agent {
                let _ = write!(text, "; agent {a}");
            }
            let ev = Evidence {
                summary: text,
                ..m.evidence.clone()
            };
            self.add(Detection::CryptoMining, 0, || ev);
            return;
        }
        let hit = s
            .names
            .iter()
            .find_map(|n| self.rules.mining_pool(n).map(|p| (*n, p)));
        if let Some((name, pattern)) = hit {
            self.add_span(Detection::CryptoMining, 0, || {
                format!("server name `{name}` matches mining pool `{pattern}`")
            });
            return;
        }
        let lookup = s
            .lookups
            .iter()
            .find_map(|l| self.rules.mining_pool(&l.name).map(|p| (l, p)));
        if let Some((l, pattern)) = lookup {
            self.add(Detection::CryptoMining, 0, || {
                let text = format!(
                    "DNS lookup of `{}`, on the mining pool list (`{pattern}`)",
                    l.name
                );
                Evidence::new(text, &[l.packet], l.ts, l.ts)
            });
        }
    }
}

/// Hours as written in the rules (`4`, `0.5`).
pub(crate) fn fmt_hours(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        (secs / 3600).to_string()
    } else {
        let h = secs as f64 / 3600.0;
        let mut s = format!("{h:.3}");
        while s.ends_with('0') {
            s.pop();
        }
        s
    }
}

fn banner_note(ssh: Option<&SshFacts>) -> String {
    match ssh.and_then(|f| f.server_banner.as_deref()) {
        Some(b) => format!(", server `{b}`"),
        None => String::new(),
    }
}

/// `addr:port`, with brackets for IPv6; just the address when the port is
/// 0 (protocols without ports, and `explain`'s unknown client port).
/// The flow's destination as evidence names it: the server, or for a
/// tunnel the requested target and the proxy it went through.
pub(crate) fn dest(s: &FlowSubject<'_>) -> String {
    match s.tunnel {
        Some(t) => {
            let host = match t.target_addr {
                Some(std::net::IpAddr::V6(a)) => format!("[{a}]"),
                _ => t.target_host.to_string(),
            };
            format!(
                "{host}:{} through {} proxy {}",
                s.server.port,
                t.via,
                ep(t.proxy)
            )
        }
        None => ep(s.server),
    }
}

pub(crate) fn ep(e: Endpoint) -> String {
    if e.port == 0 {
        return e.addr.to_string();
    }
    e.to_string()
}

pub use crate::flow::key::proto_name;

#[cfg(test)]
mod tests {
    use super::super::testutil::{ep, test_rules};
    use super::*;
    use crate::flow::key::proto;

    /// 2025-06-15 and 2023-06-15 in packet time.
    const T2025: u64 = 1_750_000_000;
    const T2023: u64 = 1_686_800_000;

    fn ev() -> Option<Evidence> {
        Some(Evidence::new(
            "seen",
            &[7, 9],
            Timestamp::from_secs(T2025),
            Timestamp::from_secs(T2025),
        ))
    }

    #[derive(Default)]
    struct Case {
        name: &'static str,
        client: &'static str,
        server: &'static str,
        udp: bool,
        app: Option<&'static str>,
        probing: bool,
        ended: bool,
        names: &'static [&'static str],
        /// role, forward, session, interactive
        reverse: [bool; 4],
        hassh: Option<&'static str>,
        mining: bool,
        at: u64,
        expect: &'static [&'static str],
    }

    fn run(c: &Case) -> Verdict {
        let rules = test_rules();
        let ssh = SshFacts {
            hassh: c.hassh.map(str::to_string),
            role_reversed: if c.reverse[0] { ev() } else { None },
            remote_forward: if c.reverse[1] { ev() } else { None },
            reverse_session: if c.reverse[2] { ev() } else { None },
            reverse_interactive: if c.reverse[3] { ev() } else { None },
            ..SshFacts::default()
        };
        let mining = MiningFacts {
            protocol: "stratum",
            wallet: Some("4Abc".into()),
            agent: Some("cpuminer/2.5.1".into()),
            evidence: Evidence::new(
                "mining.subscribe / mining.notify",
                &[4, 6],
                Timestamp::from_secs(c.at),
                Timestamp::from_secs(c.at),
            ),
        };
        let at = Timestamp::from_secs(if c.at == 0 { T2025 } else { c.at });
        let proto = if c.udp { proto::UDP } else { proto::TCP };
        let mut s = FlowSubject::new(1, ep(c.client), ep(c.server), proto, at);
        s.app_proto = c.app;
        s.stage = match (c.probing, c.ended) {
            (true, _) => Stage::Probing,
            (_, true) => Stage::Ended,
            _ => Stage::Identified,
        };
        s.names = c.names;
        s.ssh = (c.app == Some("ssh")).then_some(&ssh);
        s.mining = c.mining.then_some(&mining);
        rules.judge(&s)
    }

    const GPU: &str = "10.10.0.10:40000";
    const LAB: &str = "10.11.0.10:40000";
    const SSH: Option<&str> = Some("ssh");
    const PIN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn every_detection_fires_exactly_where_the_policy_says() {
        let cases = [
            Case {
                name: "allowlisted git over SSH: no alert",
                client: GPU,
                server: "10.20.0.10:22",
                app: SSH,
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "internal SSH is not egress",
                client: GPU,
                server: "10.30.0.5:22",
                app: SSH,
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "internal SSH on 2222",
                client: GPU,
                server: "10.30.0.5:2222",
                app: SSH,
                expect: &["ssh-nonstandard-port"],
                ..Case::default()
            },
            Case {
                name: "SSH out of a default-deny zone",
                client: GPU,
                server: "198.51.100.10:22",
                app: SSH,
                expect: &["ssh-to-external", "egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "SSH out of a monitor zone",
                client: LAB,
                server: "198.51.100.10:22",
                app: SSH,
                expect: &["ssh-to-external"],
                ..Case::default()
            },
            Case {
                name: "SSH out on 443",
                client: LAB,
                server: "198.51.100.10:443",
                app: SSH,
                expect: &["ssh-to-external", "ssh-nonstandard-port"],
                ..Case::default()
            },
            Case {
                name: "allowlisted by DNS name on 443",
                client: GPU,
                server: "140.82.112.36:443",
                app: SSH,
                names: &["ssh.github.com"],
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "name entry scoped to another zone",
                client: LAB,
                server: "140.82.112.36:443",
                app: SSH,
                names: &["ssh.github.com"],
                expect: &["ssh-to-external", "ssh-nonstandard-port"],
                ..Case::default()
            },
            Case {
                name: "reverse tunnel to an allowlisted host still alerts",
                client: GPU,
                server: "10.20.0.10:22",
                app: SSH,
                reverse: [false, true, false, false],
                expect: &["ssh-reverse-forward"],
                ..Case::default()
            },
            Case {
                name: "explicit allow_remote_forward",
                client: GPU,
                server: "203.0.113.7:22",
                app: SSH,
                reverse: [false, true, false, false],
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "forward permission does not cover a session back",
                client: GPU,
                server: "203.0.113.7:22",
                app: SSH,
                reverse: [false, true, true, true],
                expect: &["ssh-reverse-session", "ssh-reverse-interactive"],
                ..Case::default()
            },
            Case {
                name: "implant: inside host is the SSH server",
                client: LAB,
                server: "198.51.100.10:443",
                app: SSH,
                reverse: [true, false, false, false],
                expect: &[
                    "ssh-to-external",
                    "ssh-nonstandard-port",
                    "ssh-reverse-role",
                ],
                ..Case::default()
            },
            Case {
                name: "expired allow entry no longer allows",
                client: GPU,
                server: "198.51.100.80:80",
                app: Some("http"),
                expect: &["egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "allow entry before its expiry",
                client: GPU,
                server: "198.51.100.80:80",
                app: Some("http"),
                at: T2023,
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "TLS by SNI to an allowed name",
                client: GPU,
                server: "151.101.0.223:443",
                app: Some("tls"),
                names: &["pypi.org"],
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "TLS to another name",
                client: GPU,
                server: "151.101.0.223:443",
                app: Some("tls"),
                names: &["example.com"],
                expect: &["egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "probing on 443 waits for the SNI",
                client: GPU,
                server: "151.101.0.223:443",
                probing: true,
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "probing on a port no entry allows",
                client: GPU,
                server: "151.101.0.223:6667",
                probing: true,
                expect: &["egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "ended without a name",
                client: GPU,
                server: "151.101.0.223:443",
                ended: true,
                expect: &["egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "Stratum from a monitor zone",
                client: LAB,
                server: "198.51.100.33:3333",
                app: Some("stratum"),
                mining: true,
                expect: &["crypto-mining"],
                ..Case::default()
            },
            Case {
                name: "TLS to a pool name",
                client: LAB,
                server: "198.51.100.34:443",
                app: Some("tls"),
                names: &["xmr-eu1.nanopool.org"],
                expect: &["crypto-mining"],
                ..Case::default()
            },
            Case {
                name: "pool from a default-deny zone",
                client: GPU,
                server: "198.51.100.34:443",
                app: Some("tls"),
                names: &["xmr-eu1.nanopool.org"],
                expect: &["crypto-mining", "egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "pinned HASSH matches",
                client: GPU,
                server: "198.51.100.22:22",
                app: SSH,
                hassh: Some(PIN),
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "pinned HASSH differs",
                client: GPU,
                server: "198.51.100.22:22",
                app: SSH,
                hassh: Some("ffffffffffffffffffffffffffffffff"),
                expect: &["ssh-to-external", "egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "HASSH not seen yet",
                client: GPU,
                server: "198.51.100.22:22",
                app: SSH,
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "HASSH never seen",
                client: GPU,
                server: "198.51.100.22:22",
                app: SSH,
                ended: true,
                expect: &["ssh-to-external", "egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "inbound SSH is not egress",
                client: "203.0.113.50:50000",
                server: "10.10.0.10:22",
                app: SSH,
                expect: &[],
                ..Case::default()
            },
            Case {
                name: "inbound SSH on 2222",
                client: "203.0.113.50:50000",
                server: "10.10.0.10:2222",
                app: SSH,
                expect: &["ssh-nonstandard-port"],
                ..Case::default()
            },
            Case {
                name: "DNS to a public resolver",
                client: GPU,
                server: "8.8.8.8:53",
                udp: true,
                app: Some("dns"),
                expect: &["egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "IPv6 SSH out",
                client: "[fd00:10::5]:40000",
                server: "[2001:db8::1]:22",
                app: SSH,
                expect: &["ssh-to-external", "egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "IPv4-mapped client",
                client: "[::ffff:10.10.0.10]:40000",
                server: "198.51.100.10:22",
                app: SSH,
                expect: &["ssh-to-external", "egress-not-allowed"],
                ..Case::default()
            },
            Case {
                name: "host outside zones uses default egress",
                client: "10.99.0.1:40000",
                server: "198.51.100.10:80",
                app: Some("http"),
                expect: &[],
                ..Case::default()
            },
        ];
        for c in &cases {
            let v = run(c);
            let got: Vec<&str> = v.findings.iter().map(|f| f.detection.id()).collect();
            assert_eq!(got, c.expect, "case: {}", c.name);
        }
    }

    #[test]
    fn verdict_names_zone_direction_and_considered_entry() {
        let rules = test_rules();
        let c = Case {
            client: GPU,
            server: "10.20.0.10:2222",
            app: SSH,
            ..Case::default()
        };
        let v = run(&c);
        assert_eq!(v.direction, Direction::Internal);
        assert_eq!(v.zone.map(|z| &*rules.zones()[z].name), Some("gpu"));
        let considered = v.considered.unwrap();
        assert_eq!(rules.allows()[considered.entry].label(), "internal-git");
        assert_eq!(
            considered.status,
            EntryStatus::NotMatching("port 2222 is not in 22".into())
        );

        let expired = run(&Case {
            client: GPU,
            server: "198.51.100.80:80",
            app: Some("http"),
            ..Case::default()
        });
        assert_eq!(expired.considered.unwrap().status, EntryStatus::Expired);
        assert!(!expired.permitted);

        let pending = run(&Case {
            client: GPU,
            server: "198.51.100.22:22",
            app: SSH,
            ..Case::default()
        });
        assert!(pending.pending);
        assert_eq!(
            pending.considered.unwrap().status,
            EntryStatus::Undecided("waiting for the client HASSH".into())
        );

        let bastion = run(&Case {
            client: GPU,
            server: "203.0.113.7:22",
            app: SSH,
            ..Case::default()
        });
        assert!(bastion.permitted);
        assert!(bastion.permissions.has(Permission::RemoteForward));
        assert_eq!(bastion.egress_mode, Some(EgressMode::DefaultDeny));
    }

    #[test]
    fn evidence_comes_from_the_facts() {
        let v = run(&Case {
            client: GPU,
            server: "10.20.0.10:22",
            app: SSH,
            reverse: [false, true, false, false],
            ..Case::default()
        });
        assert_eq!(v.findings[0].evidence.packets, vec![7, 9]);
        let m = run(&Case {
            client: LAB,
            server: "198.51.100.33:3333",
            app: Some("stratum"),
            mining: true,
            ..Case::default()
        });
        assert_eq!(
            m.findings[0].evidence.summary,
            "stratum: mining.subscribe / mining.notify; wallet 4Abc; agent cpuminer/2.5.1"
        );
        let ext = run(&Case {
            client: LAB,
            server: "198.51.100.10:22",
            app: SSH,
            ..Case::default()
        });
        assert_eq!(
            ext.findings[0].evidence.summary,
            "SSH (identified by bytes) from 10.11.0.10:40000 to external 198.51.100.10:22"
        );
    }

    proptest::proptest! {
        /// Judging never panics and findings are unique per detection.
        #[test]
        fn judging_never_panics(
            c in proptest::array::uniform4(0u8..=255),
            d in proptest::array::uniform4(0u8..=255),
            ports in (0u16..=65535, 0u16..=65535),
            p in 0u8..=255,
            stage in 0u8..3,
            app in proptest::option::of(proptest::sample::select(vec!["ssh", "tls", "http", "dns", "stratum", "weird"])),
            name in "[a-z.*]{0,20}",
            first in 0u64..=u64::MAX,
            now in 0u64..=u64::MAX,
        ) {
            let rules = test_rules();
            let names = [name.as_str(), "x.nanopool.org"];
            let ssh = SshFacts { remote_forward: ev(), ..SshFacts::default() };
            let mut s = FlowSubject::new(
                1,
                Endpoint { addr: IpAddr::from(c), port: ports.0 },
                Endpoint { addr: IpAddr::from(d), port: ports.1 },
                p,
                Timestamp::from_nanos(first),
            );
            s.now = Timestamp::from_nanos(now);
            s.app_proto = app;
            s.stage = [Stage::Probing, Stage::Identified, Stage::Ended][usize::from(stage)];
            s.names = &names;
            s.ssh = (app == Some("ssh")).then_some(&ssh);
            let v = rules.judge(&s);
            let mut ids: Vec<_> = v.findings.iter().map(|f| f.detection).collect();
            ids.dedup();
            proptest::prop_assert_eq!(ids.len(), v.findings.len());
        }
    }
}
