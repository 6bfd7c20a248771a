//! Reads one rule file's TOML into raw, still unmerged parts, keeping the
//! byte span of everything so later checks can point at it. The file is
//! walked by hand over toml's spanned document tree rather than through
//! serde, because serde stops at the first problem and this walker must
//! report every one: unknown keys (the `deny_unknown_fields` rule, with
//! suggestions), wrong types, bad CIDRs, ports, host names and dates.

use super::detection::{Detection, Permission, Permissions, Severity, MAX_LONG_LIVED_THRESHOLDS};
use super::diag::{suggest, Diagnostic, Kind};
use super::names::NamePattern;
use super::schema::{EgressMode, Expiry, PortRange, ProtoMatch, Transport};
use crate::time::{Timestamp, NANOS_PER_SEC};
use ipnet::IpNet;
use std::net::IpAddr;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

type Val<'i> = Spanned<DeValue<'i>>;
type Span = Range<usize>;

/// `[cluster]`.
#[derive(Debug, Default)]
pub(crate) struct RawCluster {
    pub name: Option<(String, Span)>,
    pub internal: Vec<(IpNet, Span)>,
    pub default_egress: Option<(EgressMode, Span)>,
}

/// One `[[zone]]`.
#[derive(Debug)]
pub(crate) struct RawZone {
    pub name: Option<(String, Span)>,
    pub cidrs: Vec<(IpNet, Span)>,
    pub egress: EgressMode,
    pub description: Option<String>,
    pub allow_discovery: bool,
}

/// One `[[allow]]`.
#[derive(Debug)]
pub(crate) struct RawAllow {
    pub header: Span,
    pub name: Option<String>,
    pub zones: Vec<(String, Span)>,
    pub cidrs: Vec<(IpNet, Span)>,
    pub hosts: Vec<NamePattern>,
    pub host_spans: Vec<Span>,
    pub ports: Vec<PortRange>,
    /// The `ports` value and the `protocol` value, where given.
    pub ports_span: Option<Span>,
    pub protocol_span: Option<Span>,
    pub transport: Transport,
    pub protocol: ProtoMatch,
    pub hassh: Vec<Box<str>>,
    pub hassh_server: Vec<Box<str>>,
    pub permissions: Permissions,
    pub reason: Option<String>,
    pub expires: Option<Expiry>,
}

/// One setting under `[detections.<id>]`.
#[derive(Debug, Clone)]
pub(crate) enum Setting {
    Enabled(bool),
    Severity(Severity),
    SuppressSeconds(u64),
    LongLivedSeconds(Vec<u64>),
}

#[derive(Debug)]
pub(crate) struct RawSetting {
    pub detection: Detection,
    pub key: &'static str,
    pub span: Span,
    pub value: Setting,
}

/// Everything one file contributes.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub cluster: Option<RawCluster>,
    pub zones: Vec<RawZone>,
    pub allows: Vec<RawAllow>,
    pub settings: Vec<RawSetting>,
    pub mining_pools: Vec<NamePattern>,
}

const TOP_KEYS: &[&str] = &["cluster", "zone", "allow", "detections", "mining_pools"];
const CLUSTER_KEYS: &[&str] = &["name", "internal", "default_egress"];
const ZONE_KEYS: &[&str] = &["name", "cidrs", "egress", "description", "allow_discovery"];
const ALLOW_KEYS: &[&str] = &[
    "name",
    "reason",
    "zones",
    "cidrs",
    "hosts",
    "ports",
    "transport",
    "protocol",
    "hassh",
    "hassh_server",
    "expires",
    "allow_remote_forward",
    "allow_reverse_session",
    "allow_reverse_role",
    "allow_long_lived",
    "allow_mining",
    "allow_discovery",
    "allow_dns_tunnel",
    "allow_icmp_tunnel",
];
const DETECTION_KEYS: &[&str] = &["enabled", "severity", "suppress_seconds"];
const LONG_LIVED_KEYS: &[&str] = &[
    "enabled",
    "severity",
    "suppress_seconds",
    "long_lived_hours",
];
const MINING_KEYS: &[&str] = &["hosts"];

/// Parses one file. `now` (packet or wall time chosen by the caller) makes
/// expired allow entries warnings; `None` skips that check.
pub(crate) fn parse_file(
    file: usize,
    text: &str,
    now: Option<Timestamp>,
    diags: &mut Vec<Diagnostic>,
) -> RawFile {
    let mut p = Parser { file, now, diags };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            p.push(
                Diagnostic::error(
                    Kind::Syntax,
                    format!("TOML syntax error: {}", err.message()),
                )
                .at(file, span),
            );
            return RawFile::default();
        }
    };
    p.document(doc.get_ref())
}

struct Parser<'d> {
    file: usize,
    now: Option<Timestamp>,
    diags: &'d mut Vec<Diagnostic>,
}

impl Parser<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn error(&mut self, kind: Kind, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(kind, message).at(self.file, span));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn warning(&mut self, kind: Kind, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::warning(kind, message).at(self.file, span));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn document(&mut self, doc: &DeTable<'_>) -> RawFile {
        self.check_keys(doc, "at the top level", TOP_KEYS);
        let mut raw = RawFile::default();
        if let Some(v) = doc.get("cluster") {
            if let Some(t) = self.table(v, "`cluster`") {
                raw.cluster = Some(self.cluster(t));
            }
        }
        for (t, span) in self.tables_of(doc.get("zone"), "zone") {
            raw.zones.push(self.zone(t, span));
        }
        for (t, span) in self.tables_of(doc.get("allow"), "allow") {
            raw.allows.push(self.allow(t, span));
        }
        if let Some(v) = doc.get("detections") {
            if let Some(t) = self.table(v, "`detections`") {
                raw.settings = self.detections(t);
            }
        }
        if let Some(v) = doc.get("mining_pools") {
            if let Some(t) = self.table(v, "`mining_pools`") {
                self.check_keys(t, "in `[mining_pools]`", MINING_KEYS);
                if let Some(v) = t.get("hosts") {
                    raw.mining_pools = self.hosts(v).into_iter().map(|(p, _)| p).collect();
                }
            }
        }
        raw
    }

    /// Reports every key of `table` not in `known`.
    fn check_keys(&mut self, table: &DeTable<'_>, place: &str, known: &[&str]) {
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if known.contains(&name) {
                continue;
            }
            let d = self.error(
                Kind::UnknownKey,
                key.span(),
                format!("unknown key `{name}` {place}"),
            );
            match suggest(name, known) {
                Some(s) => d.label = Some(format!("did you mean `{s}`?")),
                None => d
                    .notes
                    .push(format!("expected one of: {}", known.join(", "))),
            }
        }
    }

    fn wrong_type(&mut self, v: &Val<'_>, what: &str, expected: &str) {
        self.error(
            Kind::WrongType,
            v.span(),
            format!(
                "{what} must be {expected}, found {}",
                v.get_ref().type_str()
            ),
        );
    }

    fn table<'t, 'i>(&mut self, v: &'t Val<'i>, what: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, what, "a table");
                None
            }
        }
    }

    /// The tables of a `[[name]]` array.
    fn tables_of<'t, 'i>(
        &mut self,
        v: Option<&'t Val<'i>>,
        name: &str,
    ) -> Vec<(&'t DeTable<'i>, Span)> {
        let Some(v) = v else { return Vec::new() };
        let DeValue::Array(items) = v.get_ref() else {
            let d = self.error(
                Kind::WrongType,
                v.span(),
                format!(
                    "`{name}` must be an array of tables, found {}",
                    v.get_ref().type_str()
                ),
            );
            d.label = Some(format!("write each one as `[[{name}]]`"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            if let DeValue::Table(t) = item.get_ref() {
                out.push((t, item.span()));
            } else {
                self.wrong_type(item, &format!("each `{name}`"), "a table");
            }
        }
        out
    }

    fn string<'v>(&mut self, v: &'v Val<'_>, what: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(v, what, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Val<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, what, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, v: &Val<'_>, what: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => {
                let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
                if n.is_none() {
                    self.error(Kind::BadValue, v.span(), format!("{what} is out of range"));
                }
                n
            }
            _ => {
                self.wrong_type(v, what, "an integer");
                None
            }
        }
    }

    fn array<'t, 'i>(&mut self, v: &'t Val<'i>, what: &str) -> &'t [Val<'i>] {
        match v.get_ref() {
            DeValue::Array(a) => a,
            _ => {
                self.wrong_type(v, what, "an array");
                &[]
            }
        }
    }

    /// An array of strings, each with its span.
    fn strings<'v>(&mut self, v: &'v Val<'_>, what: &str) -> Vec<(&'v str, Span)> {
        let mut out = Vec::new();
        for item in self.array(v, what) {
            if let Some(s) = self.string(item, &format!("each entry of {what}")) {
                out.push((s, item.span()));
            }
        }
        out
    }

    fn cidrs(&mut self, v: &Val<'_>, what: &str) -> Vec<(IpNet, Span)> {
        let mut out = Vec::new();
        for (text, span) in self.strings(v, what) {
            match parse_cidr(text) {
                Ok(net) => {
                    if net.trunc() != net {
                        let d = self.warning(
                            Kind::Suspicious,
                            span.clone(),
                            format!("`{text}` has host bits set"),
                        );
                        d.label = Some(format!("read as `{}`", net.trunc()));
                    }
                    out.push((net.trunc(), span));
                }
                Err(why) => {
                    let d = self.error(Kind::BadCidr, span, format!("invalid CIDR `{text}`"));
                    d.label = Some(why);
                }
            }
        }
        out
    }

    /// Host patterns, each with its span.
    fn hosts(&mut self, v: &Val<'_>) -> Vec<(NamePattern, Span)> {
        let mut out = Vec::new();
        for (text, span) in self.strings(v, "`hosts`") {
            match NamePattern::parse(text) {
                Ok(p) => out.push((p, span)),
                Err(why) => {
                    let d = self.error(Kind::BadHost, span, format!("invalid host name `{text}`"));
                    d.label = Some(why);
                }
            }
        }
        out
    }

    fn cluster(&mut self, t: &DeTable<'_>) -> RawCluster {
        self.check_keys(t, "in `[cluster]`", CLUSTER_KEYS);
        let mut c = RawCluster::default();
        if let Some(v) = t.get("name") {
            c.name = self.string(v, "`name`").map(|s| (s.to_string(), v.span()));
        }
        if let Some(v) = t.get("internal") {
            c.internal = self.cidrs(v, "`internal`");
        }
        if let Some(v) = t.get("default_egress") {
            c.default_egress = self
                .egress_mode(v, "`default_egress`")
                .map(|m| (m, v.span()));
        }
        c
    }

    fn egress_mode(&mut self, v: &Val<'_>, what: &str) -> Option<EgressMode> {
        let s = self.string(v, what)?;
        let mode = EgressMode::parse(s);
        if mode.is_none() {
            let d = self.error(
                Kind::BadValue,
                v.span(),
                format!("unknown egress mode `{s}`"),
            );
            d.label = Some("expected `default-deny` or `monitor`".into());
        }
        mode
    }

    fn zone(&mut self, t: &DeTable<'_>, header: Span) -> RawZone {
        self.check_keys(t, "in `[[zone]]`", ZONE_KEYS);
        let name = match t.get("name") {
            Some(v) => self.string(v, "`name`").map(|s| (s.to_string(), v.span())),
            None => {
                self.error(Kind::MissingKey, header.clone(), "zone has no `name`");
                None
            }
        };
        let cidrs = match t.get("cidrs") {
            Some(v) => self.cidrs(v, "`cidrs`"),
            None => {
                self.error(Kind::MissingKey, header.clone(), "zone has no `cidrs`");
                Vec::new()
            }
        };
        let egress = match t.get("egress") {
            Some(v) => self
                .egress_mode(v, "`egress`")
                .unwrap_or(EgressMode::Monitor),
            None => EgressMode::Monitor,
        };
        let description = t
            .get("description")
            .and_then(|v| self.string(v, "`description`"))
            .map(str::to_string);
        let allow_discovery = t
            .get("allow_discovery")
            .and_then(|v| self.boolean(v, "`allow_discovery`"))
            .unwrap_or(false);
        RawZone {
            name,
            cidrs,
            egress,
            description,
            allow_discovery,
        }
    }

    fn allow(&mut self, t: &DeTable<'_>, header: Span) -> RawAllow {
        self.check_keys(t, "in `[[allow]]`", ALLOW_KEYS);
        let mut a = RawAllow {
            header: header.clone(),
            name: None,
            zones: Vec::new(),
            cidrs: Vec::new(),
            hosts: Vec::new(),
            host_spans: Vec::new(),
            ports: Vec::new(),
            ports_span: None,
            protocol_span: None,
            transport: Transport::Any,
            protocol: ProtoMatch::Any,
            hassh: Vec::new(),
            hassh_server: Vec::new(),
            permissions: Permissions::default(),
            reason: None,
            expires: None,
        };
        if let Some(v) = t.get("name") {
            a.name = self.string(v, "`name`").map(str::to_string);
        }
        match t.get("reason") {
            Some(v) => a.reason = self.string(v, "`reason`").map(str::to_string),
            None => {
                let d = self.error(
                    Kind::MissingKey,
                    header.clone(),
                    "allow entry has no `reason`",
                );
                d.label = Some("every allow entry says why it exists".into());
            }
        }
        if let Some(v) = t.get("zones") {
            a.zones = self
                .strings(v, "`zones`")
                .into_iter()
                .map(|(s, span)| (s.to_string(), span))
                .collect();
        }
        if let Some(v) = t.get("cidrs") {
            a.cidrs = self.cidrs(v, "`cidrs`");
        }
        if let Some(v) = t.get("hosts") {
            (a.hosts, a.host_spans) = self.hosts(v).into_iter().unzip();
        }
        if t.get("cidrs").is_none() && t.get("hosts").is_none() {
            let d = self.error(
                Kind::MissingKey,
                header.clone(),
                "allow entry names no destination",
            );
            d.label = Some("add `cidrs` and/or `hosts`".into());
        }
        if let Some(v) = t.get("ports") {
            a.ports = self.ports(v);
            a.ports_span = Some(v.span());
        }
        if let Some(v) = t.get("transport") {
            a.transport = self.transport(v).unwrap_or(Transport::Any);
        }
        if let Some(v) = t.get("protocol") {
            a.protocol = self.protocol(v).unwrap_or(ProtoMatch::Any);
            a.protocol_span = Some(v.span());
        }
        if let Some(v) = t.get("hassh") {
            a.hassh = self.fingerprints(v, "`hassh`");
        }
        if let Some(v) = t.get("hassh_server") {
            a.hassh_server = self.fingerprints(v, "`hassh_server`");
        }
        for perm in Permission::ALL {
            if let Some(v) = t.get(perm.key()) {
                if self.boolean(v, &format!("`{}`", perm.key())) == Some(true) {
                    a.permissions = a.permissions.with(perm);
                }
            }
        }
        if let Some(v) = t.get("expires") {
            a.expires = self.expires(v);
        }
        a
    }

    fn ports(&mut self, v: &Val<'_>) -> Vec<PortRange> {
        let mut out = Vec::new();
        for item in self.array(v, "`ports`") {
            let parsed = match item.get_ref() {
                DeValue::Integer(_) => self
                    .integer(item, "a port")
                    .map(|n| port_number(n).map(|p| PortRange { first: p, last: p })),
                DeValue::String(s) => Some(parse_port_range(s)),
                _ => {
                    self.wrong_type(
                        item,
                        "each entry of `ports`",
                        "a port number or a \"first-last\" range",
                    );
                    None
                }
            };
            match parsed {
                Some(Ok(r)) => out.push(r),
                Some(Err(why)) => {
                    let d = self.error(Kind::BadPort, item.span(), "invalid port");
                    d.label = Some(why);
                }
                None => {}
            }
        }
        out
    }

    fn transport(&mut self, v: &Val<'_>) -> Option<Transport> {
        let s = self.string(v, "`transport`")?;
        let t = Transport::parse(s);
        if t.is_none() {
            let d = self.error(Kind::BadValue, v.span(), format!("unknown transport `{s}`"));
            d.label = Some("expected `tcp`, `udp` or `any`".into());
        }
        t
    }

    fn protocol(&mut self, v: &Val<'_>) -> Option<ProtoMatch> {
        let s = self.string(v, "`protocol`")?;
        let p = ProtoMatch::parse(s);
        if p.is_none() {
            let d = self.error(Kind::BadValue, v.span(), format!("unknown protocol `{s}`"));
            d.label = Some("expected one of ssh, tls, http, dns, stratum, any".into());
        }
        p
    }

    fn fingerprints(&mut self, v: &Val<'_>, what: &str) -> Vec<Box<str>> {
        let mut out = Vec::new();
        for (text, span) in self.strings(v, what) {
            let ok = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
            if ok {
                out.push(text.to_ascii_lowercase().into());
            } else {
                let d = self.error(
                    Kind::BadValue,
                    span,
                    format!("invalid fingerprint `{text}`"),
                );
                d.label = Some("expected 32 hex digits (an MD5 HASSH)".into());
            }
        }
        out
    }

    fn expires(&mut self, v: &Val<'_>) -> Option<Expiry> {
        let parsed = match v.get_ref() {
            DeValue::Datetime(dt) => expiry_instant(dt),
            DeValue::String(s) => match s.parse::<toml::value::Datetime>() {
                Ok(dt) => expiry_instant(&dt),
                Err(_) => Err("expected a date like 2026-01-31".to_string()),
            },
            _ => {
                self.wrong_type(v, "`expires`", "a date like 2026-01-31");
                return None;
            }
        };
        let text = match v.get_ref() {
            DeValue::Datetime(dt) => dt.to_string(),
            DeValue::String(s) => s.to_string(),
            _ => String::new(),
        };
        match parsed {
            Ok(at) => {
                if self.now.is_some_and(|now| now >= at) {
                    let d = self.warning(
                        Kind::Expired,
                        v.span(),
                        format!("allow entry expired on {text}"),
                    );
                    d.label = Some("this entry no longer allows anything".into());
                }
                Some(Expiry { at, text })
            }
            Err(why) => {
                let d = self.error(Kind::BadDate, v.span(), format!("invalid date `{text}`"));
                d.label = Some(why);
                None
            }
        }
    }

    fn detections(&mut self, t: &DeTable<'_>) -> Vec<RawSetting> {
        let mut out = Vec::new();
        let ids = Detection::ids();
        for (key, v) in t.iter() {
            let id = key.get_ref().as_ref();
            let Some(detection) = Detection::from_id(id) else {
                let d = self.error(
                    Kind::UnknownDetection,
                    key.span(),
                    format!("unknown detection `{id}`"),
                );
                match suggest(id, &ids) {
                    Some(s) => d.label = Some(format!("did you mean `{s}`?")),
                    None => d.notes.push(format!("detections: {}", ids.join(", "))),
                }
                continue;
            };
            let Some(body) = self.table(v, &format!("`detections.{id}`")) else {
                continue;
            };
            self.detection(detection, body, &mut out);
        }
        out
    }

    fn detection(&mut self, detection: Detection, t: &DeTable<'_>, out: &mut Vec<RawSetting>) {
        let known = if detection == Detection::SshLongLived {
            LONG_LIVED_KEYS
        } else {
            DETECTION_KEYS
        };
        self.check_keys(t, &format!("in `[detections.{}]`", detection.id()), known);
        for (key, v) in t.iter() {
            let name = key.get_ref().as_ref();
            let Some(&key_name) = known.iter().find(|k| **k == name) else {
                continue;
            };
            let value = match key_name {
                "enabled" => self.boolean(v, "`enabled`").map(Setting::Enabled),
                "severity" => self.severity(v).map(Setting::Severity),
                "suppress_seconds" => self.suppress(v).map(Setting::SuppressSeconds),
                _ => self.long_lived(v).map(Setting::LongLivedSeconds),
            };
            if let Some(value) = value {
                out.push(RawSetting {
                    detection,
                    key: key_name,
                    span: key.span(),
                    value,
                });
            }
        }
    }

    fn severity(&mut self, v: &Val<'_>) -> Option<Severity> {
        let parsed = match v.get_ref() {
            DeValue::Integer(_) => self
                .integer(v, "`severity`")
                .and_then(|n| u8::try_from(n).ok())
                .and_then(Severity::new),
            DeValue::String(s) => s.parse().ok(),
            _ => {
                self.wrong_type(v, "`severity`", "1, 2, 3 or high, medium, low");
                return None;
            }
        };
        if parsed.is_none() {
            let d = self.error(Kind::BadValue, v.span(), "invalid severity");
            d.label = Some("expected 1 (high), 2 (medium) or 3 (low)".into());
        }
        parsed
    }

    fn suppress(&mut self, v: &Val<'_>) -> Option<u64> {
        let n = self.integer(v, "`suppress_seconds`")?;
        let secs = u64::try_from(n).ok();
        if secs.is_none() {
            let d = self.error(Kind::BadValue, v.span(), "invalid `suppress_seconds`");
            d.label = Some("must be 0 or more".into());
        }
        secs
    }

    fn long_lived(&mut self, v: &Val<'_>) -> Option<Vec<u64>> {
        let items = self.array(v, "`long_lived_hours`");
        let mut secs = Vec::new();
        let mut ok = true;
        for item in items {
            let hours = match item.get_ref() {
                DeValue::Integer(_) => self.integer(item, "an hour count").map(|n| n as f64),
                DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
                _ => {
                    self.wrong_type(item, "each threshold", "a number of hours");
                    None
                }
            };
            match hours.and_then(hours_to_secs) {
                Some(s) if secs.last().is_none_or(|prev| s > *prev) => secs.push(s),
                Some(_) => {
                    ok = false;
                    let d = self.error(Kind::BadValue, item.span(), "thresholds must increase");
                    d.label = Some("each threshold must be larger than the one before".into());
                }
                None => {
                    ok = false;
                    if hours.is_some() {
                        let d = self.error(Kind::BadValue, item.span(), "invalid threshold");
                        d.label = Some("must be more than 0 hours".into());
                    }
                }
            }
        }
        if secs.len() > MAX_LONG_LIVED_THRESHOLDS {
            let d = self.error(Kind::BadValue, v.span(), "too many thresholds");
            d.label = Some(format!("at most {MAX_LONG_LIVED_THRESHOLDS}"));
            return None;
        }
        ok.then_some(secs)
    }
}

/// Hours as whole seconds, if positive and finite.
fn hours_to_secs(hours: f64) -> Option<u64> {
    if hours.is_finite() && hours > 0.0 && hours < 1e9 {
        Some((hours * 3600.0).round() as u64).filter(|s| *s > 0)
    } else {
        None
    }
}

/// A CIDR (`10.0.0.0/8`, `fd00::/8`) or a bare address (a host prefix),
/// with a message that says what is wrong.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .map_err(|_| format!("prefix length `{l}` is not a number from 0 to {max}"))?,
    };
    IpNet::new(addr, len).map_err(|_| format!("prefix length {len} is more than {max}"))
}

fn port_number(n: i64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(0) => Err("port 0 is not a valid port".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {n} is not between 1 and 65535")),
    }
}

/// `"443"` or `"8000-8100"`.
pub(crate) fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let one = |s: &str| -> Result<u16, String> {
        let n: i64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a port number"))?;
        port_number(n)
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let p = one(text)?;
            (p, p)
        }
    };
    if first > last {
        return Err(format!("range `{text}` runs backwards"));
    }
    Ok(PortRange { first, last })
}

/// When an `expires` value stops allowing: a bare date lasts through that
/// day (UTC); a date-time is the exact instant (UTC if no offset).
fn expiry_instant(dt: &toml::value::Datetime) -> Result<Timestamp, String> {
    let date = dt
        .date
        .ok_or_else(|| "expected a date like 2026-01-31".to_string())?;
    if !(1..=12).contains(&date.month) || date.day == 0 || date.day > 31 {
        return Err("not a calendar date".into());
    }
    let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
    let secs = match dt.time {
        None => (days + 1) * 86_400,
        Some(t) => {
            let offset_minutes = match dt.offset {
                Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
                _ => 0,
            };
            days * 86_400
                + i64::from(t.hour) * 3600
                + i64::from(t.minute) * 60
                + i64::from(t.second)
                - offset_minutes * 60
        }
    };
    let secs = u64::try_from(secs).map_err(|_| "date before 1970".to_string())?;
    Ok(Timestamp::from_nanos(secs.saturating_mul(NANOS_PER_SEC)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
