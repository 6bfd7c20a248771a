//! Grouping learned destinations into allow entries, the way a person
//! would write them.
//!
//! 1. Destinations are grouped by zone, transport, protocol, port and
//!    *group*: the registrable domain of a name (`psl`, the public suffix
//!    list: `files.pythonhosted.org` → `pythonhosted.org`), or the address
//!    family of a destination without a name.
//! 2. Names: `*.parent` replaces the names below `parent` when at least
//!    [`WILDCARD_MIN`] distinct names below it were seen, `parent` is the
//!    registrable domain or below it (never `*.com`, never `*.co.uk`, never
//!    a private suffix such as `s3.amazonaws.com` whose names belong to
//!    different owners), and no refused flow went to a name below it.
//!    Deeper parents are tried first.
//! 3. Addresses: aggregated into prefixes no wider than /24 (IPv4) or /120
//!    (IPv6), where a prefix is taken only if both its halves were seen,
//!    the addresses seen are at least a quarter of it ([`FILL`]) and it
//!    holds no refused flow's address; otherwise it is split in two.
//! 4. Groups that came out the same on several ports become one entry
//!    with those ports.

use super::{Evidence, Learner, Pins, Target, Trimmed};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Distinct names below a parent that justify `*.parent`.
pub const WILDCARD_MIN: usize = 3;
/// A prefix may hold at most this many times the addresses seen in it.
pub const FILL: u128 = 4;
/// The widest prefixes proposed.
pub const WIDEST_V4: u8 = 24;
pub const WIDEST_V6: u8 = 120;
/// More distinct unidentified high ports than this to addresses of one
/// zone and transport are widened into one span ([`widen_scattered`]).
pub const SCATTERED_MIN: usize = 8;
/// Ports from here up count as high.
pub const SCATTERED_FLOOR: u16 = 1024;

/// The proposed entries and what was left out.
#[derive(Clone, Debug, Default)]
pub struct Proposal {
    pub entries: Vec<Entry>,
    pub trimmed: Trimmed,
}

/// One proposed `[[allow]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub zone: Option<Arc<str>>,
    /// The registrable domain, or `ipv4` / `ipv6`.
    pub group: String,
    pub transport: &'static str,
    pub protocol: Option<&'static str>,
    /// Sorted.
    pub ports: Vec<u16>,
    /// Instead of `ports`: scattered high ports widened to this span
    /// (first, last, distinct ports seen).
    pub span: Option<(u16, u16, usize)>,
    pub hosts: Vec<String>,
    pub cidrs: Vec<IpNet>,
    /// Client and server HASSH to pin (SSH entries where every flow showed
    /// one of a few).
    pub hassh: [Option<Vec<Box<str>>>; 2],
    pub evidence: Evidence,
    /// Per host pattern or CIDR.
    pub details: Vec<Detail>,
}

/// The evidence of one host pattern or CIDR of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub pattern: String,
    pub evidence: Evidence,
    /// For a wildcard: the names seen below it.
    pub names: Vec<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Domain(Arc<str>),
    Family(u8),
}

impl Group {
    fn name(&self) -> String {
        match self {
            Group::Domain(d) => d.to_string(),
            Group::Family(f) => format!("ipv{f}"),
        }
    }
}

type CellKey = (
    Option<Arc<str>>,
    &'static str,
    Option<&'static str>,
    Group,
    Ports,
);

/// The ports of a cell: one, or a widened span of scattered high ports
/// (first, last, how many distinct ports were seen).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ports {
    One(u16),
    Span(u16, u16, usize),
}

/// Address destinations of one zone, transport and family on more than
/// [`SCATTERED_MIN`] distinct unidentified high ports (peer-to-peer, RTC,
/// games) become one cell whose ports span the lowest to the highest port
/// seen: one entry instead of one per port. The addresses stay as seen.
fn widen_scattered(cells: &mut BTreeMap<CellKey, BTreeMap<&Target, Evidence>>) {
    type GroupKey = (Option<Arc<str>>, &'static str, Group);
    let mut groups: BTreeMap<GroupKey, Vec<CellKey>> = BTreeMap::new();
    for key in cells.keys() {
        let (zone, transport, protocol, group, port) = key;
        let scattered = matches!(group, Group::Family(_))
            && protocol.is_none()
            && matches!(port, Ports::One(p) if *p >= SCATTERED_FLOOR);
        if scattered {
            groups
                .entry((zone.clone(), transport, group.clone()))
                .or_default()
                .push(key.clone());
        }
    }
    for ((zone, transport, group), keys) in groups {
        if keys.len() <= SCATTERED_MIN {
            continue;
        }
        let ports: Vec<u16> = keys
            .iter()
            .filter_map(|k| match k.4 {
                Ports::One(p) => Some(p),
                Ports::Span(..) => None,
            })
            .collect();
        let lo = ports.iter().copied().min().unwrap_or(SCATTERED_FLOOR);
        let hi = ports.iter().copied().max().unwrap_or(u16::MAX);
        let mut merged: BTreeMap<&Target, Evidence> = BTreeMap::new();
        for k in &keys {
            for (t, e) in cells.remove(k).unwrap_or_default() {
                merged.entry(t).and_modify(|m| m.merge(&e)).or_insert(e);
            }
        }
        let key = (
            zone,
            transport,
            None,
            group,
            Ports::Span(lo, hi, ports.len()),
        );
        cells.insert(key, merged);
    }
}

/// What a cell (one port) comes out as; cells equal in this merge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    zone: Option<Arc<str>>,
    group: Group,
    transport: &'static str,
    protocol: Option<&'static str>,
    patterns: Vec<String>,
    hassh: [Option<Vec<Box<str>>>; 2],
    span: Option<(u16, u16, usize)>,
}

/// The registrable domain of `name`, or the name itself when it has none
/// (a bare label, an unlisted single-label suffix).
pub fn registrable(name: &str) -> &str {
    psl::domain_str(name).unwrap_or(name)
}

/// Builds the entries from a learner's destinations.
pub fn propose(learner: &Learner) -> Proposal {
    let (eligible, trimmed) = learner.eligible();
    let tainted_names: Vec<&str> = learner.tainted_names().collect();
    let mut tainted_addrs: Vec<IpAddr> = learner.tainted_addrs().collect();
    tainted_addrs.sort();
    let mut cells: BTreeMap<CellKey, BTreeMap<&Target, Evidence>> = BTreeMap::new();
    for (k, e) in eligible {
        let group = match &k.target {
            Target::Name(n) => Group::Domain(Arc::from(registrable(n))),
            Target::Addr(IpAddr::V4(_)) => Group::Family(4),
            Target::Addr(IpAddr::V6(_)) => Group::Family(6),
        };
        let key = (
            k.zone.clone(),
            k.transport,
            k.protocol,
            group,
            Ports::One(k.port),
        );
        cells.entry(key).or_default().insert(&k.target, e.clone());
    }
    widen_scattered(&mut cells);
    let mut shapes: BTreeMap<Shape, (Vec<u16>, BTreeMap<String, Detail>)> = BTreeMap::new();
    for ((zone, transport, protocol, group, port), targets) in cells {
        let targets: Vec<(&Target, &Evidence)> = targets.iter().map(|(t, e)| (*t, e)).collect();
        let patterns = match group {
            Group::Domain(_) => names(&targets, &tainted_names),
            Group::Family(_) => cidrs(&targets, &tainted_addrs)
                .into_iter()
                .map(|(net, evidence)| Detail {
                    pattern: net.to_string(),
                    evidence,
                    names: Vec::new(),
                })
                .collect(),
        };
        let mut pins = [Pins::default(), Pins::default()];
        for (_, e) in &targets {
            pins[0].merge(&e.hassh[0]);
            pins[1].merge(&e.hassh[1]);
        }
        let ssh = protocol == Some("ssh");
        let pin = |p: &Pins| ssh.then(|| p.pinned().map(<[_]>::to_vec)).flatten();
        let (one, span) = match port {
            Ports::One(p) => (Some(p), None),
            Ports::Span(lo, hi, n) => (None, Some((lo, hi, n))),
        };
        let shape = Shape {
            zone,
            group,
            transport,
            protocol,
            patterns: patterns.iter().map(|d| d.pattern.clone()).collect(),
            hassh: [pin(&pins[0]), pin(&pins[1])],
            span,
        };
        let (ports, details) = shapes.entry(shape).or_default();
        ports.extend(one);
        for d in patterns {
            match details.get_mut(&d.pattern) {
                Some(have) => {
                    have.evidence.merge(&d.evidence);
                    have.names.extend(d.names);
                    have.names.sort();
                    have.names.dedup();
                }
                None => {
                    details.insert(d.pattern.clone(), d);
                }
            }
        }
    }
    let mut entries: Vec<Entry> = shapes
        .into_iter()
        .map(|(shape, (ports, details))| entry(shape, ports, details))
        .collect();
    // Zones by name (hosts in no zone last), names before addresses.
    entries.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    Proposal { entries, trimmed }
}

#[allow(clippy::type_complexity)]
fn sort_key(
    e: &Entry,
) -> (
    bool,
    &Option<Arc<str>>,
    bool,
    &str,
    &str,
    Option<&str>,
    &[u16],
) {
    (
        e.zone.is_none(),
        &e.zone,
        !e.cidrs.is_empty(),
        &e.group,
        e.transport,
        e.protocol,
        &e.ports,
    )
}

fn entry(shape: Shape, mut ports: Vec<u16>, details: BTreeMap<String, Detail>) -> Entry {
    ports.sort_unstable();
    ports.dedup();
    let mut evidence: Option<Evidence> = None;
    for e in details.values().map(|d| &d.evidence) {
        match &mut evidence {
            Some(all) => all.merge(e),
            None => evidence = Some(e.clone()),
        }
    }
    let is_addr = matches!(shape.group, Group::Family(_));
    let (hosts, cidrs) = if is_addr {
        let nets = shape
            .patterns
            .iter()
            .filter_map(|p| p.parse::<IpNet>().ok())
            .collect();
        (Vec::new(), nets)
    } else {
        (shape.patterns.clone(), Vec::new())
    };
    Entry {
        group: shape.group.name(),
        zone: shape.zone,
        transport: shape.transport,
        protocol: shape.protocol,
        ports,
        span: shape.span,
        hosts,
        cidrs,
        hassh: shape.hassh,
        // Every cell has at least one target, so one detail.
        evidence: evidence.unwrap_or_default(),
        details: details.into_values().collect(),
    }
}

/// The host patterns for the names of one cell (all under one registrable
/// domain), each with its evidence; sorted.
fn names(targets: &[(&Target, &Evidence)], tainted: &[&str]) -> Vec<Detail> {
    let names: Vec<(&str, &Evidence)> = targets
        .iter()
        .filter_map(|(t, e)| match t {
            Target::Name(n) => Some((&**n, *e)),
            Target::Addr(_) => None,
        })
        .collect();
    // Parent → indexes of the names strictly below it.
    let mut under: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (name, _)) in names.iter().enumerate() {
        let floor = registrable(name).len();
        for p in parents(name).filter(|p| p.len() >= floor && *p != *name) {
            under.entry(p).or_default().push(i);
        }
    }
    let mut parents_deepest: Vec<&str> = under.keys().copied().collect();
    parents_deepest.sort_by_key(|p| (std::cmp::Reverse(p.split('.').count()), *p));
    let mut covered = vec![false; names.len()];
    let mut wildcards: Vec<&str> = Vec::new();
    for p in parents_deepest {
        let below = &under[p];
        let fresh = below.iter().filter(|i| !covered[**i]).count();
        if fresh < WILDCARD_MIN || tainted.iter().any(|t| is_below(t, p)) {
            continue;
        }
        for i in below {
            covered[*i] = true;
        }
        wildcards.retain(|w| !is_below(w, p));
        wildcards.push(p);
    }
    let mut out: BTreeMap<String, Detail> = BTreeMap::new();
    for (i, (name, e)) in names.iter().enumerate() {
        let wildcard = covered[i]
            .then(|| wildcards.iter().find(|w| is_below(name, w)))
            .flatten();
        let pattern = wildcard.map_or_else(|| name.to_string(), |w| format!("*.{w}"));
        let d = out.entry(pattern.clone()).or_insert_with(|| Detail {
            pattern,
            evidence: Evidence::default(),
            names: Vec::new(),
        });
        if d.evidence.flows == 0 {
            d.evidence = (*e).clone();
        } else {
            d.evidence.merge(e);
        }
        if wildcard.is_some() {
            d.names.push(Arc::from(*name));
        }
    }
    out.into_values().collect()
}

/// `name` is strictly below `parent`.
fn is_below(name: &str, parent: &str) -> bool {
    name.len() > parent.len()
        && name.ends_with(parent)
        && name.as_bytes()[name.len() - parent.len() - 1] == b'.'
}

/// `a.b.c` → `b.c`, `c`.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.')
        .filter_map(move |(i, _)| name.get(i + 1..))
}

/// The prefixes for the addresses of one cell (one family), each with its
/// evidence; in address order.
fn cidrs(targets: &[(&Target, &Evidence)], tainted: &[IpAddr]) -> Vec<(IpNet, Evidence)> {
    let mut values: Vec<(u128, &Evidence)> = Vec::new();
    let mut bits = 32;
    for (t, e) in targets {
        match t {
            Target::Addr(IpAddr::V4(a)) => values.push((u128::from(u32::from(*a)), *e)),
            Target::Addr(IpAddr::V6(a)) => {
                bits = 128;
                values.push((u128::from(*a), *e));
            }
            Target::Name(_) => {}
        }
    }
    values.sort_by_key(|(v, _)| *v);
    let tainted: Vec<u128> = tainted
        .iter()
        .filter_map(|a| match (a, bits) {
            (IpAddr::V4(a), 32) => Some(u128::from(u32::from(*a))),
            (IpAddr::V6(a), 128) => Some(u128::from(*a)),
            _ => None,
        })
        .collect();
    let widest = if bits == 32 { WIDEST_V4 } else { WIDEST_V6 };
    let shift = u32::from(bits - widest);
    let mut out = Vec::new();
    let mut rest = &values[..];
    while let Some((first, _)) = rest.first() {
        let block = first >> shift;
        let n = rest.partition_point(|(v, _)| v >> shift == block);
        let (here, later) = rest.split_at(n);
        let space = Space {
            bits,
            tainted: &tainted,
        };
        space.split(block << shift, widest, here, &mut out);
        rest = later;
    }
    out
}

struct Space<'a> {
    bits: u8,
    /// Sorted.
    tainted: &'a [u128],
}

impl Space<'_> {
    /// Covers `items` (sorted, non-empty, inside `base/len`).
    fn split(
        &self,
        base: u128,
        len: u8,
        items: &[(u128, &Evidence)],
        out: &mut Vec<(IpNet, Evidence)>,
    ) {
        if items.len() == 1 || len >= self.bits {
            for (v, e) in items {
                out.push((self.net(*v, self.bits), (*e).clone()));
            }
            return;
        }
        let size: u128 = 1 << (self.bits - len);
        let half = size >> 1;
        let mid = items.partition_point(|(v, _)| *v < base + half);
        let seen = items.len() as u128;
        let accept = mid > 0
            && mid < items.len()
            && seen * FILL >= size
            && !self.tainted_in(base, base + size);
        if accept {
            let mut evidence = items[0].1.clone();
            for (_, e) in &items[1..] {
                evidence.merge(e);
            }
            out.push((self.net(base, len), evidence));
            return;
        }
        if mid > 0 {
            self.split(base, len + 1, &items[..mid], out);
        }
        if mid < items.len() {
            self.split(base + half, len + 1, &items[mid..], out);
        }
    }

    fn tainted_in(&self, lo: u128, hi: u128) -> bool {
        let i = self.tainted.partition_point(|t| *t < lo);
        self.tainted.get(i).is_some_and(|t| *t < hi)
    }

    fn net(&self, v: u128, len: u8) -> IpNet {
        let addr = if self.bits == 32 {
            IpAddr::V4(Ipv4Addr::from(v as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(v))
        };
        // `len` never exceeds the family's bits.
        IpNet::new(addr, len).unwrap_or_else(|_| IpNet::from(addr))
    }
}
