//! Loading a rules directory: every `*.toml` file in it (sorted by name,
//! not recursive) is parsed, the files are merged, cross-file problems are
//! checked (duplicate or overlapping zones, unknown zones, settings given
//! twice), and an immutable [`RuleSet`] is built only if no error was
//! found. This is the policy module's only I/O.

use super::cidr::CidrMap;
use super::detection::{Detection, DetectionSettings};
use super::diag::{line_col, Diagnostic, Diagnostics, Kind, SourceFile};
use super::names::NameIndex;
use super::parse::{parse_file, RawAllow, RawFile, RawSetting, RawZone, Setting};
use super::schema::{AllowEntry, EgressMode, RuleSet, Zone};
use crate::time::Timestamp;
use ipnet::IpNet;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The result of a load: the rule set if there was no error, and every
/// diagnostic (errors and warnings) either way.
#[derive(Debug)]
pub struct Loaded {
    pub rules: Option<RuleSet>,
    pub diagnostics: Diagnostics,
}

impl Loaded {
    /// The rule set and its warnings, or every diagnostic when it failed.
    pub fn into_result(self) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        match self.rules {
            Some(rules) if !self.diagnostics.has_errors() => Ok((rules, self.diagnostics)),
            _ => Err(self.diagnostics),
        }
    }
}

/// Reads and loads every `*.toml` file of `dir`. `now` decides which allow
/// entries are reported as expired (`None`: no such warnings); expiry
/// itself is always judged against packet time when classifying.
pub fn load_dir(dir: &Path, now: Option<Timestamp>) -> Loaded {
    let mut early = Vec::new();
    let mut sources = Vec::new();
    match std::fs::read_dir(dir) {
        Err(err) => early.push(Diagnostic::error(
            Kind::Io,
            format!("cannot read rules directory `{}`: {err}", dir.display()),
        )),
        Ok(entries) => {
            let mut paths: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                .collect();
            paths.sort();
            for path in paths {
                match std::fs::read_to_string(&path) {
                    Ok(text) => sources.push(SourceFile {
                        name: path.display().to_string().into(),
                        text,
                    }),
                    Err(err) => early.push(Diagnostic::error(
                        Kind::Io,
                        format!("cannot read `{}`: {err}", path.display()),
                    )),
                }
            }
            if sources.is_empty() && early.is_empty() {
                early.push(
                    Diagnostic::error(
                        Kind::NoFiles,
                        format!("no rule files in `{}`", dir.display()),
                    )
                    .note("rule files are the `*.toml` files directly in the directory"),
                );
            }
        }
    }
    let mut loaded = load_sources(sources, now);
    if !early.is_empty() {
        early.append(&mut loaded.diagnostics.items);
        loaded.diagnostics.items = early;
        loaded.rules = None;
    }
    loaded
}

/// Loads rule files already in memory (name and text each), in the given
/// order. Pure: no I/O.
pub fn load_sources(sources: Vec<SourceFile>, now: Option<Timestamp>) -> Loaded {
    let mut diags = Vec::new();
    let raws: Vec<RawFile> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| parse_file(i, &src.text, now, &mut diags))
        .collect();
    let rules = Merger::new(&sources, &mut diags).build(raws);
    let mut diagnostics = Diagnostics {
        items: diags,
        sources,
    };
    diagnostics.sort();
    let rules = if diagnostics.has_errors() { None } else { rules };
    Loaded { rules, diagnostics }
}

/// Builds a new rule set from `dir` for a running sensor: on any error the
/// current set stays in force (the caller keeps its `Arc`), and the
/// diagnostics say why.
pub fn reload(
    current: &Arc<RuleSet>,
    dir: &Path,
    now: Option<Timestamp>,
) -> (Arc<RuleSet>, Diagnostics, bool) {
    match load_dir(dir, now).into_result() {
        Ok((rules, diags)) => (Arc::new(rules), diags, true),
        Err(diags) => (Arc::clone(current), diags, false),
    }
}

/// Merges the files' raw parts and runs the checks that need all of them.
struct Merger<'a> {
    sources: &'a [SourceFile],
    diags: &'a mut Vec<Diagnostic>,
}

/// Where something was defined: file index and span.
type Place = (usize, Range<usize>);

impl<'a> Merger<'a> {
    fn new(sources: &'a [SourceFile], diags: &'a mut Vec<Diagnostic>) -> Self {
        Merger { sources, diags }
    }

    fn file_name(&self, file: usize) -> Arc<str> {
        self.sources
            .get(file)
            .map_or_else(|| Arc::from("?"), |s| s.name.clone())
    }

    /// `file:line:col` of a place, for notes.
    fn locate(&self, (file, span): &Place) -> String {
        let Some(src) = self.sources.get(*file) else {
            return "?".into();
        };
        let lc = line_col(&src.text, span.start);
        format!("{}:{}:{}", src.name, lc.line, lc.col)
    }

    fn line_of(&self, (file, span): &Place) -> u32 {
        self.sources.get(*file).map_or(0, |src| {
            u32::try_from(line_col(&src.text, span.start).line).unwrap_or(u32::MAX)
        })
    }

    fn build(mut self, raws: Vec<RawFile>) -> Option<RuleSet> {
        let mut files = Vec::new();
        let mut cluster = ClusterParts::default();
        let mut zones_raw = Vec::new();
        let mut allows_raw = Vec::new();
        let mut settings_raw = Vec::new();
        let mut pools = Vec::new();
        for (file, raw) in raws.into_iter().enumerate() {
            files.push(self.file_name(file));
            if let Some(c) = raw.cluster {
                self.merge_cluster(&mut cluster, file, c);
            }
            zones_raw.extend(raw.zones.into_iter().map(|z| (file, z)));
            allows_raw.extend(raw.allows.into_iter().map(|a| (file, a)));
            settings_raw.extend(raw.settings.into_iter().map(|s| (file, s)));
            pools.extend(raw.mining_pools);
        }
        let internal = self.internal_map(&cluster);
        let (zones, zone_map) = self.zones(zones_raw, &internal);
        let allows = self.allows(allows_raw, &zones);
        let settings = self.settings(settings_raw);
        let mut mining_pools = NameIndex::default();
        let mut seen = std::collections::HashSet::new();
        for p in &pools {
            if seen.insert(p.clone()) {
                mining_pools.insert(p, ());
            }
        }
        let (allow_cidrs, allow_names, host_entries) = index_allows(&allows);
        Some(RuleSet {
            cluster_name: cluster.name.map(|(n, _)| n),
            default_egress: cluster.default_egress.map_or(EgressMode::Monitor, |(m, _)| m),
            internal,
            zones,
            zone_map,
            allows,
            allow_cidrs,
            allow_names,
            host_entries,
            settings,
            mining_pool_count: seen.len(),
            mining_pools,
            files,
        })
    }

    fn merge_cluster(&mut self, into: &mut ClusterParts, file: usize, c: super::parse::RawCluster) {
        if let Some((name, span)) = c.name {
            self.merge_once(&mut into.name, (name, (file, span)), "`cluster.name`");
        }
        if let Some((mode, span)) = c.default_egress {
            self.merge_once(
                &mut into.default_egress,
                (mode, (file, span)),
                "`cluster.default_egress`",
            );
        }
        into.internal
            .extend(c.internal.into_iter().map(|(n, s)| (n, (file, s))));
    }

    /// Keeps the first value of a setting that may be given once, and
    /// reports any second one.
    fn merge_once<T>(&mut self, slot: &mut Option<(T, Place)>, value: (T, Place), what: &str) {
        match slot {
            None => *slot = Some(value),
            Some((_, first)) => {
                let note = format!("first set at {}", self.locate(first));
                let (_, (file, span)) = value;
                self.diags.push(
                    Diagnostic::error(Kind::Duplicate, format!("{what} is set twice"))
                        .at(file, span)
                        .note(note),
                );
            }
        }
    }

    fn internal_map(&mut self, cluster: &ClusterParts) -> CidrMap<()> {
        let mut map = CidrMap::new();
        for (net, _) in &cluster.internal {
            map.insert(*net, ());
        }
        if map.is_empty() {
            self.diags.push(
                Diagnostic::error(Kind::MissingKey, "no internal address ranges")
                    .note("add `[cluster] internal = [\"10.0.0.0/8\", ...]` to a rule file; everything outside them is external"),
            );
        }
        map
    }

    fn zones(
        &mut self,
        raw: Vec<(usize, RawZone)>,
        internal: &CidrMap<()>,
    ) -> (Vec<Zone>, CidrMap<usize>) {
        let mut zones: Vec<Zone> = Vec::new();
        let mut by_name: HashMap<String, Place> = HashMap::new();
        let mut map: CidrMap<usize> = CidrMap::new();
        let mut places: HashMap<IpNet, Place> = HashMap::new();
        for (file, z) in raw {
            let Some((name, name_span)) = z.name.clone() else {
                continue;
            };
            if let Some(first) = by_name.get(&name) {
                let note = format!("first defined at {}", self.locate(first));
                self.diags.push(
                    Diagnostic::error(Kind::DuplicateZone, format!("zone `{name}` is defined twice"))
                        .at(file, name_span)
                        .note(note),
                );
                continue;
            }
            by_name.insert(name.clone(), (file, name_span));
            let idx = zones.len();
            let mut cidrs = Vec::new();
            for (net, span) in z.cidrs {
                if !self.zone_cidr_fits(&name, net, (file, span.clone()), idx, &map, &places, &zones, internal) {
                    continue;
                }
                map.insert(net, idx);
                places.insert(net, (file, span));
                cidrs.push(net);
            }
            zones.push(Zone {
                name: name.into(),
                cidrs,
                egress: z.egress,
                description: z.description,
            });
        }
        (zones, map)
    }

    /// Checks one zone CIDR against the zones so far and the internal
    /// ranges; false if it must be left out (it overlaps another zone).
    #[allow(clippy::too_many_arguments)]
    fn zone_cidr_fits(
        &mut self,
        name: &str,
        net: IpNet,
        place: Place,
        idx: usize,
        map: &CidrMap<usize>,
        places: &HashMap<IpNet, Place>,
        zones: &[Zone],
        internal: &CidrMap<()>,
    ) -> bool {
        let clash = map
            .overlapping(net)
            .into_iter()
            .find(|(_, other)| **other != idx);
        if let Some((other_net, other)) = clash {
            let other_name = zones.get(*other).map_or("?", |z| &z.name);
            let mut d = Diagnostic::error(
                Kind::OverlappingZones,
                format!("zone `{name}` overlaps zone `{other_name}`"),
            )
            .at(place.0, place.1.clone())
            .label(format!("{net} overlaps {other_net}"));
            if let Some(p) = places.get(&other_net) {
                d = d.note(format!("`{other_name}` has {other_net} at {}", self.locate(p)));
            }
            self.diags.push(
                d.note("an address must belong to at most one zone"),
            );
            return false;
        }
        let inside = internal
            .covering(net.network())
            .into_iter()
            .any(|(n, _)| n.contains(&net));
        if !inside && !internal.is_empty() {
            self.diags.push(
                Diagnostic::warning(
                    Kind::Suspicious,
                    format!("zone `{name}` has {net}, which is outside the internal ranges"),
                )
                .at(place.0, place.1)
                .label("hosts here count as external, so this zone's egress rules never apply"),
            );
        }
        true
    }

    fn allows(&mut self, raw: Vec<(usize, RawAllow)>, zones: &[Zone]) -> Vec<AllowEntry> {
        let names: HashMap<&str, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.name.as_ref(), i))
            .collect();
        let zone_names: Vec<&str> = zones.iter().map(|z| z.name.as_ref()).collect();
        let mut out = Vec::new();
        for (file, a) in raw {
            let mut zone_ids = Vec::new();
            for (zone, span) in &a.zones {
                match names.get(zone.as_str()) {
                    Some(i) => zone_ids.push(*i),
                    None => {
                        let mut d = Diagnostic::error(
                            Kind::UnknownZone,
                            format!("allow entry refers to unknown zone `{zone}`"),
                        )
                        .at(file, span.clone());
                        d = match super::diag::suggest(zone, &zone_names) {
                            Some(s) => d.label(format!("did you mean `{s}`?")),
                            None if zone_names.is_empty() => d.note("no zones are defined"),
                            None => d.note(format!("zones: {}", zone_names.join(", "))),
                        };
                        self.diags.push(d);
                    }
                }
            }
            let Some(reason) = a.reason else { continue };
            out.push(AllowEntry {
                name: a.name.map(Arc::from),
                file: self.file_name(file),
                line: self.line_of(&(file, a.header.clone())),
                zones: zone_ids,
                cidrs: a.cidrs.into_iter().map(|(n, _)| n).collect(),
                hosts: a.hosts,
                ports: a.ports,
                transport: a.transport,
                protocol: a.protocol,
                hassh: a.hassh,
                hassh_server: a.hassh_server,
                permissions: a.permissions,
                reason: reason.into(),
                expires: a.expires,
            });
        }
        out
    }

    fn settings(&mut self, raw: Vec<(usize, RawSetting)>) -> [DetectionSettings; Detection::COUNT] {
        let mut out = Detection::ALL.map(DetectionSettings::default_for);
        let mut seen: HashMap<(Detection, &'static str), Place> = HashMap::new();
        for (file, s) in raw {
            let place = (file, s.span.clone());
            if let Some(first) = seen.get(&(s.detection, s.key)) {
                let note = format!("first set at {}", self.locate(first));
                self.diags.push(
                    Diagnostic::error(
                        Kind::Duplicate,
                        format!("`detections.{}.{}` is set twice", s.detection.id(), s.key),
                    )
                    .at(file, s.span)
                    .note(note),
                );
                continue;
            }
            seen.insert((s.detection, s.key), place);
            let target = &mut out[s.detection.index()];
            match s.value {
                Setting::Enabled(b) => target.enabled = b,
                Setting::Severity(v) => target.severity = v,
                Setting::SuppressSeconds(v) => target.suppress_seconds = v,
                Setting::LongLivedSeconds(v) => target.long_lived_seconds = v,
            }
        }
        out
    }
}

#[derive(Default)]
struct ClusterParts {
    name: Option<(String, Place)>,
    default_egress: Option<(EgressMode, Place)>,
    internal: Vec<(IpNet, Place)>,
}

/// The lookup structures over allow entries: destination CIDRs in a trie,
/// host patterns in a name index, and the list of entries with hosts.
fn index_allows(allows: &[AllowEntry]) -> (CidrMap<Vec<usize>>, NameIndex<usize>, Vec<usize>) {
    let mut cidrs: CidrMap<Vec<usize>> = CidrMap::new();
    let mut names = NameIndex::default();
    let mut host_entries = Vec::new();
    for (i, a) in allows.iter().enumerate() {
        for net in &a.cidrs {
            match cidrs.get_mut(net) {
                Some(list) => {
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
                None => {
                    cidrs.insert(*net, vec![i]);
                }
            }
        }
        for h in &a.hosts {
            names.insert(h, i);
        }
        if !a.hosts.is_empty() {
            host_entries.push(i);
        }
    }
    (cidrs, names, host_entries)
}
