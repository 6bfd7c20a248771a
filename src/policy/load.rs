//! Loading a rules directory: every `*.toml` file in it (sorted by name,
//! not recursive) is parsed, the files are merged, cross-file problems are
//! checked (duplicate or overlapping zones, unknown zones, settings given
//! twice), and an immutable [`RuleSet`] is built only if no error was
//! found. This is the policy module's only I/O.

use super::cidr::CidrMap;
use super::detection::{Detection, DetectionSettings};
use super::diag::{Diagnostic, Diagnostics, Kind, LineCol, LineIndex, SourceFile};
use super::names::NameIndex;
use super::parse::{parse_file, RawAllow, RawFile, RawSetting, RawZone, Setting};
use super::schema::{AllowEntry, EgressMode, EntrySite, RuleSet, Zone};
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

/// Rule files larger than this are refused. A policy of 100,000 allow
/// entries in one file is about 12 MiB.
pub const MAX_RULE_FILE_BYTES: u64 = 32 << 20;

/// Reads and loads every `*.toml` file of `dir`. `now` decides which allow
/// entries are reported as expired (`None`: no such warnings); expiry
/// itself is always judged against packet time when classifying.
///
/// Fails closed: a `*.toml` entry that is not a readable regular file
/// (after following symlinks), is larger than [`MAX_RULE_FILE_BYTES`] or
/// is not UTF-8 is an error, so a dangling symlink cannot silently drop
/// a zone.
pub fn load_dir(dir: &Path, now: Option<Timestamp>) -> Loaded {
    let files = read_rule_files(dir);
    load(files.sources, files.problems, now)
}

/// The rule files of a directory as read, and what went wrong reading
/// them.
#[derive(Default)]
struct RuleFiles {
    sources: Vec<SourceFile>,
    problems: Vec<Diagnostic>,
}

fn read_rule_files(dir: &Path) -> RuleFiles {
    let mut files = RuleFiles::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            files.problems.push(Diagnostic::error(
                Kind::Io,
                format!("cannot read rules directory `{}`: {err}", dir.display()),
            ));
            return files;
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) if e.path().extension().is_some_and(|x| x == "toml") => paths.push(e.path()),
            Ok(_) => {}
            Err(err) => files.problems.push(Diagnostic::error(
                Kind::Io,
                format!("cannot list rules directory `{}`: {err}", dir.display()),
            )),
        }
    }
    paths.sort();
    for path in paths {
        files.read(&path);
    }
    if files.sources.is_empty() && files.problems.is_empty() {
        files.problems.push(
            Diagnostic::error(
                Kind::NoFiles,
                format!("no rule files in `{}`", dir.display()),
            )
            .note("rule files are the `*.toml` files directly in the directory"),
        );
    }
    files
}

impl RuleFiles {
    fn read(&mut self, path: &Path) {
        let name: Arc<str> = path.display().to_string().into();
        let bytes = match read_rule_file(path) {
            Ok(bytes) => bytes,
            Err(problem) => return self.problems.push(problem),
        };
        match String::from_utf8(bytes) {
            Ok(text) => self.sources.push(SourceFile { name, text }),
            Err(err) => {
                let at = err.utf8_error().valid_up_to();
                let bytes = err.as_bytes();
                let mut d = Diagnostic::error(Kind::Encoding, format!("`{name}` is not UTF-8"))
                    .at(self.sources.len(), at..at + 1)
                    .label(format!(
                        "byte 0x{:02x} is not valid UTF-8 here",
                        bytes.get(at).copied().unwrap_or(0)
                    ));
                if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
                    d = d.note("the file starts with a UTF-16 byte-order mark");
                }
                self.problems
                    .push(d.note("rule files are UTF-8 text: save the file as UTF-8"));
                let text = String::from_utf8_lossy(bytes).into_owned();
                self.sources.push(SourceFile { name, text });
            }
        }
    }
}

/// One TOML file other than a rule file (the sensor's `--config`, read
/// with the same checks: a regular file within the size limit, UTF-8).
pub fn read_source(path: &Path) -> Result<SourceFile, Diagnostics> {
    let mut files = RuleFiles::default();
    files.read(path);
    for d in &mut files.problems {
        // Said of rule files; the checks are the same.
        d.message = d
            .message
            .replace("not a rule file", "not a regular file")
            .replace("a rule file", "a file");
        d.notes.retain(|n| !n.contains("rule"));
    }
    match (files.sources.pop(), files.problems.is_empty()) {
        (Some(source), true) => Ok(source),
        (source, _) => Err(Diagnostics::new(
            files.problems,
            source.into_iter().collect(),
        )),
    }
}

/// The bytes of one rule file: a regular file (after following symlinks)
/// of at most [`MAX_RULE_FILE_BYTES`].
fn read_rule_file(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let cannot = |err: std::io::Error| {
        Diagnostic::error(Kind::Io, format!("cannot read `{}`: {err}", path.display()))
    };
    check_file_kind(path, &std::fs::metadata(path).map_err(cannot)?)?;
    // Opened without blocking in case a FIFO has taken the file's place
    // since, and checked again on the open file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    check_file_kind(path, &meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_RULE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(bytes)
}

/// A regular file within the size limit, or the error saying why not.
fn check_file_kind(path: &Path, meta: &std::fs::Metadata) -> Result<(), Diagnostic> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    let what = if t.is_file() {
        return if meta.len() > MAX_RULE_FILE_BYTES {
            Err(too_large(path))
        } else {
            Ok(())
        };
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(Diagnostic::error(
        Kind::NotAFile,
        format!("`{}` is {what}, not a rule file", path.display()),
    )
    .note("every `*.toml` entry in the rules directory must be a readable regular file or a symlink to one"))
}

fn too_large(path: &Path) -> Diagnostic {
    Diagnostic::error(
        Kind::TooLarge,
        format!(
            "`{}` is larger than the limit of {} MiB for a rule file",
            path.display(),
            MAX_RULE_FILE_BYTES >> 20
        ),
    )
    .note("split the rules over several files")
}

/// Loads rule files already in memory (name and text each), in the given
/// order. Pure: no I/O.
pub fn load_sources(sources: Vec<SourceFile>, now: Option<Timestamp>) -> Loaded {
    load(sources, Vec::new(), now)
}

/// Loads `sources`. `problems` are what went wrong reading them: a file a
/// problem points at is not parsed, and with any problem the set is known
/// to be incomplete, so nothing is reported missing from it.
fn load(sources: Vec<SourceFile>, problems: Vec<Diagnostic>, now: Option<Timestamp>) -> Loaded {
    let lines: Vec<LineIndex> = sources.iter().map(|s| LineIndex::new(&s.text)).collect();
    let unread: Vec<usize> = problems
        .iter()
        .filter_map(|d| d.site.as_ref().map(|s| s.file))
        .collect();
    let read_all = problems.is_empty();
    let mut diags = problems;
    let raws: Vec<RawFile> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| {
            if unread.contains(&i) {
                RawFile::default()
            } else {
                parse_file(i, &src.text, now, &mut diags)
            }
        })
        .collect();
    // A file that failed to parse may hold the missing parts: only report
    // what is missing overall when every file was read.
    let complete = read_all && !diags.iter().any(|d| d.kind == Kind::Syntax);
    let rules = Merger::new(&sources, &lines, &mut diags, complete).build(raws);
    let mut diagnostics = Diagnostics::indexed(diags, sources, lines);
    diagnostics.sort();
    let rules = if diagnostics.has_errors() {
        None
    } else {
        rules
    };
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
    lines: &'a [LineIndex],
    diags: &'a mut Vec<Diagnostic>,
    complete: bool,
}

/// Where something was defined: file index and span.
type Place = (usize, Range<usize>);

impl<'a> Merger<'a> {
    fn new(
        sources: &'a [SourceFile],
        lines: &'a [LineIndex],
        diags: &'a mut Vec<Diagnostic>,
        complete: bool,
    ) -> Self {
        Merger {
            sources,
            lines,
            diags,
            complete,
        }
    }

    fn file_name(&self, file: usize) -> Arc<str> {
        self.sources
            .get(file)
            .map_or_else(|| Arc::from("?"), |s| s.name.clone())
    }

    /// `file:line:col` of a place, for notes.
    fn locate(&self, place: &Place) -> String {
        let Some(src) = self.sources.get(place.0) else {
            return "?".into();
        };
        let lc = self.line_col(place);
        format!("{}:{}:{}", src.name, lc.line, lc.col)
    }

    fn line_of(&self, place: &Place) -> u32 {
        u32::try_from(self.line_col(place).line).unwrap_or(u32::MAX)
    }

    fn line_col(&self, (file, span): &Place) -> LineCol {
        match (self.sources.get(*file), self.lines.get(*file)) {
            (Some(src), Some(lines)) => lines.line_col(&src.text, span.start),
            _ => LineCol { line: 0, col: 0 },
        }
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
            default_egress: cluster
                .default_egress
                .map_or(EgressMode::Monitor, |(m, _)| m),
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
        if map.is_empty() && self.complete {
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
                    Diagnostic::error(
                        Kind::DuplicateZone,
                        format!("zone `{name}` is defined twice"),
                    )
                    .at(file, name_span)
                    .note(note),
                );
                continue;
            }
            by_name.insert(name.clone(), (file, name_span));
            let idx = zones.len();
            let mut cidrs = Vec::new();
            for (net, span) in z.cidrs {
                if !self.zone_cidr_fits(
                    &name,
                    net,
                    (file, span.clone()),
                    idx,
                    &map,
                    &places,
                    &zones,
                    internal,
                ) {
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
                allow_discovery: z.allow_discovery,
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
                d = d.note(format!(
                    "`{other_name}` has {other_net} at {}",
                    self.locate(p)
                ));
            }
            self.diags
                .push(d.note("an address must belong to at most one zone"));
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
            let (cidrs, cidr_spans) = a.cidrs.into_iter().unzip();
            let site = EntrySite {
                file,
                header: a.header.clone(),
                cidrs: cidr_spans,
                hosts: a.host_spans,
                ports: a.ports_span,
                protocol: a.protocol_span,
            };
            out.push(AllowEntry {
                name: a.name.map(Arc::from),
                file: self.file_name(file),
                line: self.line_of(&(file, a.header.clone())),
                zones: zone_ids,
                cidrs,
                hosts: a.hosts,
                ports: a.ports,
                transport: a.transport,
                protocol: a.protocol,
                hassh: a.hassh,
                hassh_server: a.hassh_server,
                permissions: a.permissions,
                reason: reason.into(),
                expires: a.expires,
                site,
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

#[cfg(test)]
mod tests {
    use super::super::testutil::{diagnostics, rules, sources};
    use super::*;

    const CLUSTER: &str = r#"
[cluster]
internal = ["10.0.0.0/8", "fd00::/8"]

[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16"]
egress = "default-deny"
"#;

    #[test]
    fn files_merge_into_one_rule_set() {
        let allow = r#"
[cluster]
internal = ["192.168.0.0/16"]

[[allow]]
name = "git"
zones = ["gpu"]
cidrs = ["10.20.0.10/32"]
ports = [22, "2200-2299"]
protocol = "ssh"
reason = "internal git"
expires = 2030-01-01

[detections.ssh-long-lived]
long_lived_hours = [0.5, 2]
severity = "high"

[mining_pools]
hosts = ["*.nanopool.org"]
"#;
        let r = rules(&[("a.toml", CLUSTER), ("b.toml", allow)]);
        let internal: Vec<String> = r.internal_ranges().iter().map(|n| n.to_string()).collect();
        assert_eq!(internal, ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]);
        assert_eq!(r.zones().len(), 1);
        assert_eq!(
            r.zone_of("10.10.3.4".parse().unwrap()).map(|z| &*z.name),
            Some("gpu")
        );
        let a = &r.allows()[0];
        assert_eq!(
            (a.label(), &*a.file, a.line),
            ("git".to_string(), "b.toml", 5)
        );
        assert_eq!(a.zones, vec![0]);
        assert_eq!(a.ports.len(), 2);
        assert!(a.ports[1].contains(2250));
        // 2030-01-01 lasts through that day, UTC.
        let exp = a.expires.as_ref().unwrap();
        assert_eq!(exp.at, Timestamp::from_secs(1_893_542_400));
        let ll = r.settings(Detection::SshLongLived);
        assert_eq!(ll.long_lived_seconds, vec![1800, 7200]);
        assert_eq!(ll.severity, crate::policy::Severity::HIGH);
        assert_eq!(r.settings(Detection::SshToExternal).suppress_seconds, 3600);
        assert!(r.mining_pool("xmr-eu1.nanopool.org").is_some());
        assert_eq!(r.files().len(), 2);
    }

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let text = r#"[cluster]
internal = ["10.0.0.0/8"]
intenral = ["10.1.0.0/16"]

[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16"]
egres = "default-deny"
colour = "blue"
"#;
        assert_eq!(
            diagnostics(&[("rules/c.toml", text)], None),
            r#"error[unknown-key]: unknown key `intenral` in `[cluster]`
 --> rules/c.toml:3:1
  |
3 | intenral = ["10.1.0.0/16"]
  | ^^^^^^^^ did you mean `internal`?

error[unknown-key]: unknown key `egres` in `[[zone]]`
 --> rules/c.toml:8:1
  |
8 | egres = "default-deny"
  | ^^^^^ did you mean `egress`?

error[unknown-key]: unknown key `colour` in `[[zone]]`
 --> rules/c.toml:9:1
  |
9 | colour = "blue"
  | ^^^^^^
  = note: expected one of: name, cidrs, egress, description, allow_discovery

3 errors, 0 warnings
"#
        );
    }
    /// 2025-06-15, wall time of a `check-rules` run.
    const NOW_2025: u64 = 1_750_000_000;

    #[test]
    fn zone_and_cidr_problems_are_all_reported() {
        let files = [(
            "rules/zones.toml",
            r#"[cluster]
internal = ["10.0.0.0/8", "10.0.0.256/8", "fd00::/129", "10.1.2.3/16"]

[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16"]
egress = "default-deny"

[[zone]]
name = "gpu"
cidrs = ["10.11.0.0/16"]

[[zone]]
name = "ci"
cidrs = ["10.10.5.0/24", "192.168.1.0/24"]
egress = "deny"
"#,
        )];
        assert_eq!(
            diagnostics(&files, Some(NOW_2025)),
            r#"error[bad-cidr]: invalid CIDR `10.0.0.256/8`
 --> rules/zones.toml:2:27
  |
2 | internal = ["10.0.0.0/8", "10.0.0.256/8", "fd00::/129", "10.1.2.3/16"]
  |                           ^^^^^^^^^^^^^^ `10.0.0.256` is not an IP address

error[bad-cidr]: invalid CIDR `fd00::/129`
 --> rules/zones.toml:2:43
  |
2 | internal = ["10.0.0.0/8", "10.0.0.256/8", "fd00::/129", "10.1.2.3/16"]
  |                                           ^^^^^^^^^^^^ prefix length 129 is more than 128

warning[suspicious]: `10.1.2.3/16` has host bits set
 --> rules/zones.toml:2:57
  |
2 | internal = ["10.0.0.0/8", "10.0.0.256/8", "fd00::/129", "10.1.2.3/16"]
  |                                                         ^^^^^^^^^^^^^ read as `10.1.0.0/16`

error[duplicate-zone]: zone `gpu` is defined twice
  --> rules/zones.toml:10:8
   |
10 | name = "gpu"
   |        ^^^^^
   = note: first defined at rules/zones.toml:5:8

error[overlapping-zones]: zone `ci` overlaps zone `gpu`
  --> rules/zones.toml:15:10
   |
15 | cidrs = ["10.10.5.0/24", "192.168.1.0/24"]
   |          ^^^^^^^^^^^^^^ 10.10.5.0/24 overlaps 10.10.0.0/16
   = note: `gpu` has 10.10.0.0/16 at rules/zones.toml:6:10
   = note: an address must belong to at most one zone

warning[suspicious]: zone `ci` has 192.168.1.0/24, which is outside the internal ranges
  --> rules/zones.toml:15:26
   |
15 | cidrs = ["10.10.5.0/24", "192.168.1.0/24"]
   |                          ^^^^^^^^^^^^^^^^ hosts here count as external, so this zone's egress rules never apply

error[bad-value]: unknown egress mode `deny`
  --> rules/zones.toml:16:10
   |
16 | egress = "deny"
   |          ^^^^^^ expected `default-deny` or `monitor`

5 errors, 2 warnings
"#
        );
    }

    #[test]
    fn allow_entry_problems_are_all_reported() {
        let files = [
            (
                "rules/allow.toml",
                r#"[[allow]]
name = "git"
zones = ["gpu", "gpu-trainig"]
cidrs = ["10.20.0.10/32", "10.20.0.0/33"]
ports = [22, 0, 70000, "9000-8000", "http"]
protocol = "sftp"
transport = "sctp"
hosts = ["*.ok.example", "bad..name", "*bad.example"]
hassh = ["xyz"]
reason = "git"
expires = 2024-01-31

[[allow]]
cidrs = ["1.2.3.4"]
allow_remote_forward = "yes"
expires = "2024-13-01"

[[allow]]
name = "nowhere"
reason = "forgot the destination"

[zone]
name = "oops"
"#,
            ),
            (
                "rules/c.toml",
                r#"[cluster]
internal = ["10.0.0.0/8"]
[[zone]]
name = "gpu"
cidrs = ["10.10.0.0/16"]
"#,
            ),
        ];
        assert_eq!(
            diagnostics(&files, Some(NOW_2025)),
            r#"error[unknown-zone]: allow entry refers to unknown zone `gpu-trainig`
 --> rules/allow.toml:3:17
  |
3 | zones = ["gpu", "gpu-trainig"]
  |                 ^^^^^^^^^^^^^
  = note: zones: gpu

error[bad-cidr]: invalid CIDR `10.20.0.0/33`
 --> rules/allow.toml:4:27
  |
4 | cidrs = ["10.20.0.10/32", "10.20.0.0/33"]
  |                           ^^^^^^^^^^^^^^ prefix length 33 is more than 32

error[bad-port]: invalid port
 --> rules/allow.toml:5:14
  |
5 | ports = [22, 0, 70000, "9000-8000", "http"]
  |              ^ port 0 is not a valid port

error[bad-port]: invalid port
 --> rules/allow.toml:5:17
  |
5 | ports = [22, 0, 70000, "9000-8000", "http"]
  |                 ^^^^^ port 70000 is not between 1 and 65535

error[bad-port]: invalid port
 --> rules/allow.toml:5:24
  |
5 | ports = [22, 0, 70000, "9000-8000", "http"]
  |                        ^^^^^^^^^^^ range `9000-8000` runs backwards

error[bad-port]: invalid port
 --> rules/allow.toml:5:37
  |
5 | ports = [22, 0, 70000, "9000-8000", "http"]
  |                                     ^^^^^^ `http` is not a port number

error[bad-value]: unknown protocol `sftp`
 --> rules/allow.toml:6:12
  |
6 | protocol = "sftp"
  |            ^^^^^^ expected one of ssh, tls, http, dns, stratum, any

error[bad-value]: unknown transport `sctp`
 --> rules/allow.toml:7:13
  |
7 | transport = "sctp"
  |             ^^^^^^ expected `tcp`, `udp` or `any`

error[bad-host]: invalid host name `bad..name`
 --> rules/allow.toml:8:26
  |
8 | hosts = ["*.ok.example", "bad..name", "*bad.example"]
  |                          ^^^^^^^^^^^ empty label (two dots in a row, or a leading dot)

error[bad-host]: invalid host name `*bad.example`
 --> rules/allow.toml:8:39
  |
8 | hosts = ["*.ok.example", "bad..name", "*bad.example"]
  |                                       ^^^^^^^^^^^^^^ `*` is only allowed as a leading `*.` (e.g. `*.example.com`)

error[bad-value]: invalid fingerprint `xyz`
 --> rules/allow.toml:9:10
  |
9 | hassh = ["xyz"]
  |          ^^^^^ expected 32 hex digits (an MD5 HASSH)

warning[expired]: allow entry expired on 2024-01-31
  --> rules/allow.toml:11:11
   |
11 | expires = 2024-01-31
   |           ^^^^^^^^^^ this entry no longer allows anything

error[missing-key]: allow entry has no `reason`
  --> rules/allow.toml:13:1
   |
13 | [[allow]]
   | ^^^^^^^^^ every allow entry says why it exists

error[wrong-type]: `allow_remote_forward` must be true or false, found string
  --> rules/allow.toml:15:24
   |
15 | allow_remote_forward = "yes"
   |                        ^^^^^

error[bad-date]: invalid date `2024-13-01`
  --> rules/allow.toml:16:11
   |
16 | expires = "2024-13-01"
   |           ^^^^^^^^^^^^ expected a date like 2026-01-31

error[missing-key]: allow entry names no destination
  --> rules/allow.toml:18:1
   |
18 | [[allow]]
   | ^^^^^^^^^ add `cidrs` and/or `hosts`

error[wrong-type]: `zone` must be an array of tables, found table
  --> rules/allow.toml:22:1
   |
22 | [zone]
   | ^^^^^^ write each one as `[[zone]]`

16 errors, 1 warning
"#
        );
    }

    #[test]
    fn detection_settings_and_duplicates_are_reported() {
        let files = [
            (
                "rules/d1.toml",
                r#"[cluster]
internal = ["10.0.0.0/8"]
default_egress = "monitor"

[detections.ssh-long-lived]
long_lived_hours = [4, 1, -2]
suppress_seconds = -5
severity = 2

[detections.ssh-revers-forward]
severity = 5

[detections.crypto-mining]
severity = 4
long_lived_hours = [1]
"#,
            ),
            (
                "rules/d2.toml",
                r#"[cluster]
default_egress = "default-deny"

[detections.ssh-long-lived]
severity = 1
"#,
            ),
        ];
        assert_eq!(
            diagnostics(&files, Some(NOW_2025)),
            r#"error[bad-value]: thresholds must increase
 --> rules/d1.toml:6:24
  |
6 | long_lived_hours = [4, 1, -2]
  |                        ^ each threshold must be larger than the one before

error[bad-value]: invalid threshold
 --> rules/d1.toml:6:27
  |
6 | long_lived_hours = [4, 1, -2]
  |                           ^^ must be more than 0 hours

error[bad-value]: invalid `suppress_seconds`
 --> rules/d1.toml:7:20
  |
7 | suppress_seconds = -5
  |                    ^^ must be 0 or more

error[unknown-detection]: unknown detection `ssh-revers-forward`
  --> rules/d1.toml:10:13
   |
10 | [detections.ssh-revers-forward]
   |             ^^^^^^^^^^^^^^^^^^ did you mean `ssh-reverse-forward`?

error[bad-value]: invalid severity
  --> rules/d1.toml:14:12
   |
14 | severity = 4
   |            ^ expected 1 (high), 2 (medium) or 3 (low)

error[unknown-key]: unknown key `long_lived_hours` in `[detections.crypto-mining]`
  --> rules/d1.toml:15:1
   |
15 | long_lived_hours = [1]
   | ^^^^^^^^^^^^^^^^
   = note: expected one of: enabled, severity, suppress_seconds

error[duplicate]: `cluster.default_egress` is set twice
 --> rules/d2.toml:2:18
  |
2 | default_egress = "default-deny"
  |                  ^^^^^^^^^^^^^^
  = note: first set at rules/d1.toml:3:18

error[duplicate]: `detections.ssh-long-lived.severity` is set twice
 --> rules/d2.toml:5:1
  |
5 | severity = 1
  | ^^^^^^^^
  = note: first set at rules/d1.toml:8:1

8 errors, 0 warnings
"#
        );
    }

    #[test]
    fn syntax_errors_point_at_the_spot_and_other_files_still_report() {
        let files = [
            ("rules/a.toml", "[cluster]\ninternal = [\"10.0.0.0/8\"\n"),
            (
                "rules/b.toml",
                "[[zone]]\nname = \"x\"\ncidrs = [\"10.1.0.0/16\"]\nbogus = 1\n",
            ),
        ];
        assert_eq!(
            diagnostics(&files, None),
            r#"error[syntax]: TOML syntax error: unclosed array, expected `]`
 --> rules/a.toml:2:25
  |
2 | internal = ["10.0.0.0/8"
  |                         ^

error[unknown-key]: unknown key `bogus` in `[[zone]]`
 --> rules/b.toml:4:1
  |
4 | bogus = 1
  | ^^^^^
  = note: expected one of: name, cidrs, egress, description, allow_discovery

2 errors, 0 warnings
"#
        );
    }

    #[test]
    fn expiry_warnings_need_a_time_and_do_not_block_loading() {
        let text = r#"
[cluster]
internal = ["10.0.0.0/8"]

[[allow]]
cidrs = ["198.51.100.0/24"]
reason = "temporary"
expires = 2025-01-31T12:00:00Z
"#;
        let files = [("a.toml", text)];
        let late = Timestamp::from_secs(NOW_2025);
        let loaded = load_sources(sources(&files), Some(late));
        assert_eq!(loaded.diagnostics.warning_count(), 1);
        let (r, warnings) = loaded.into_result().unwrap();
        assert!(warnings.render().contains("warning[expired]"));
        assert_eq!(
            r.allows()[0].expires.as_ref().unwrap().at,
            Timestamp::from_secs(1_738_324_800)
        );
        let quiet = load_sources(sources(&files), None);
        assert!(quiet.diagnostics.is_empty());
    }

    #[test]
    fn a_broken_reload_keeps_the_current_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, CLUSTER).unwrap();
        let current = Arc::new(load_dir(dir.path(), None).into_result().unwrap().0);
        std::fs::write(&path, "[cluster]\ninternal = [\"10.0.0.0/99\"]\n").unwrap();
        let (kept, diags, replaced) = reload(&current, dir.path(), None);
        assert!(!replaced);
        assert!(Arc::ptr_eq(&kept, &current));
        assert!(diags.render().contains("error[bad-cidr]"));
        std::fs::write(&path, CLUSTER.replace("10.10.0.0/16", "10.11.0.0/16")).unwrap();
        let (fresh, _, replaced) = reload(&current, dir.path(), None);
        assert!(replaced);
        assert!(fresh.zone_of("10.11.0.1".parse().unwrap()).is_some());
        assert!(current.zone_of("10.11.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn empty_or_missing_directories_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "not rules").unwrap();
        let empty = load_dir(dir.path(), None);
        assert!(empty.rules.is_none());
        assert_eq!(empty.diagnostics.items[0].kind, Kind::NoFiles);
        let missing = load_dir(&dir.path().join("nope"), None);
        assert!(missing.rules.is_none());
        assert_eq!(missing.diagnostics.items[0].kind, Kind::Io);
    }

    /// A rules directory with a valid cluster file and `setup` applied.
    fn dir_with(setup: impl FnOnce(&Path)) -> (tempfile::TempDir, Loaded) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00-cluster.toml"), CLUSTER).unwrap();
        setup(dir.path());
        let loaded = load_dir(dir.path(), None);
        (dir, loaded)
    }

    #[test]
    fn every_toml_entry_that_is_not_a_readable_file_is_an_error() {
        use std::os::unix::fs::symlink;
        type Case = (&'static str, fn(&Path), Kind, &'static str);
        let cases: [Case; 6] = [
            (
                "dangling symlink",
                |d| symlink(d.join("gone.toml"), d.join("zones.toml")).unwrap(),
                Kind::Io,
                "zones.toml`: No such file or directory",
            ),
            (
                "symlink loop",
                |d| {
                    symlink(d.join("b.toml"), d.join("a.toml")).unwrap();
                    symlink(d.join("a.toml"), d.join("b.toml")).unwrap();
                },
                Kind::Io,
                "Too many levels of symbolic links",
            ),
            (
                "FIFO",
                |d| nix::unistd::mkfifo(&d.join("f.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap(),
                Kind::NotAFile,
                "f.toml` is a FIFO",
            ),
            (
                "device",
                |d| symlink("/dev/zero", d.join("zero.toml")).unwrap(),
                Kind::NotAFile,
                "zero.toml` is a device",
            ),
            (
                "directory",
                |d| std::fs::create_dir(d.join("sub.toml")).unwrap(),
                Kind::NotAFile,
                "sub.toml` is a directory",
            ),
            (
                "symlink to the parent",
                |d| symlink("..", d.join("up.toml")).unwrap(),
                Kind::NotAFile,
                "up.toml` is a directory",
            ),
        ];
        for (what, setup, kind, text) in cases {
            let (_dir, loaded) = dir_with(setup);
            assert!(loaded.rules.is_none(), "{what}: loaded");
            let problem = loaded.diagnostics.items.iter().find(|d| d.kind == kind);
            let message = problem.map(|d| d.message.as_str()).unwrap_or_default();
            assert!(message.contains(text), "{what}: {}", loaded.diagnostics);
            let rendered = loaded.diagnostics.render();
            assert!(
                !rendered.contains("no internal address ranges"),
                "{what}: knock-on error\n{rendered}"
            );
        }
    }

    #[test]
    fn oversized_files_are_refused_with_the_limit() {
        let (_dir, loaded) = dir_with(|d| {
            let f = std::fs::File::create(d.join("big.toml")).unwrap();
            f.set_len(MAX_RULE_FILE_BYTES + 1).unwrap();
        });
        assert!(loaded.rules.is_none());
        assert_eq!(loaded.diagnostics.items.len(), 1, "{}", loaded.diagnostics);
        let d = &loaded.diagnostics.items[0];
        assert_eq!(d.kind, Kind::TooLarge);
        assert!(d.message.contains("limit of 32 MiB"), "{}", d.message);
    }

    #[test]
    fn non_utf8_files_point_at_the_first_bad_byte() {
        let (_dir, loaded) = dir_with(|d| {
            let mut text = b"[[allow]]\ncidrs = [\"192.0.2.0/24\"]\nreason = \"caf".to_vec();
            text.extend_from_slice(&[0xe9, b'"', b'\n']);
            std::fs::write(d.join("latin1.toml"), text).unwrap();
            std::fs::write(d.join("utf16.toml"), [0xff, 0xfe, b'[', 0]).unwrap();
        });
        assert!(loaded.rules.is_none());
        let out = loaded.diagnostics.render();
        let dir = loaded.diagnostics.sources[0]
            .name
            .replace("/00-cluster.toml", "");
        let expected = format!(
            "error[encoding]: `{dir}/latin1.toml` is not UTF-8
 --> {dir}/latin1.toml:3:14
  |
3 | reason = \"caf\u{fffd}\"
  |              ^ byte 0xe9 is not valid UTF-8 here
  = note: rule files are UTF-8 text: save the file as UTF-8

error[encoding]: `{dir}/utf16.toml` is not UTF-8
 --> {dir}/utf16.toml:1:1
  |
1 | \u{fffd}\u{fffd}[\0
  | ^ byte 0xff is not valid UTF-8 here
  = note: the file starts with a UTF-16 byte-order mark
  = note: rule files are UTF-8 text: save the file as UTF-8

2 errors, 0 warnings
"
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn a_directory_error_has_no_knock_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_dir(&dir.path().join("missing"), None);
        assert_eq!(loaded.diagnostics.items.len(), 1, "{}", loaded.diagnostics);
        assert_eq!(loaded.diagnostics.items[0].kind, Kind::Io);
    }

    #[test]
    fn shipped_rules_and_lab_rules_load_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["rules", "tests/rules/lab"] {
            let loaded = load_dir(&root.join(dir), Some(Timestamp::from_secs(NOW_2025)));
            assert!(
                loaded.diagnostics.is_empty(),
                "{dir}:\n{}",
                loaded.diagnostics.render()
            );
            assert!(loaded.rules.is_some());
        }
        let shipped = load_dir(&root.join("rules"), None).rules.unwrap();
        let gpu = shipped.zone_of("10.10.1.2".parse().unwrap()).unwrap();
        assert_eq!(
            (&*gpu.name, gpu.egress),
            ("gpu-training", EgressMode::DefaultDeny)
        );
        assert!(shipped.is_internal("fd12::1".parse().unwrap()));
        assert!(shipped.mining_pool("pool.supportxmr.com").is_some());
        assert!(shipped.mining_pool_count() >= 30);
    }

    proptest::proptest! {
        /// Loading and rendering never panic, whatever the text: random
        /// edits of a valid file and arbitrary strings.
        #[test]
        fn loading_never_panics(
            cut in 0usize..2000,
            len in 0usize..40,
            insert in ".{0,12}",
            junk in ".{0,200}",
        ) {
            let base = crate::policy::testutil::TEST_RULES;
            let mut text: String = base.chars().take(cut).collect();
            text.push_str(&insert);
            text.extend(base.chars().skip(cut + len));
            for t in [text, junk] {
                let loaded = load_sources(sources(&[("a.toml", &t)]), Some(Timestamp::from_secs(1)));
                let _ = loaded.diagnostics.render();
            }
        }
    }
}

/// Loads `dir`, or the built-in rules when there is none (`--rules`
/// omitted).
pub fn load_dir_or_shipped(dir: Option<&Path>, now: Option<Timestamp>) -> Loaded {
    match dir {
        Some(dir) => load_dir(dir, now),
        None => load_sources(shipped(), now),
    }
}

/// The rules shipped in `rules/`, built into the binary: the default when
/// no `--rules` directory is given.
pub fn shipped() -> Vec<SourceFile> {
    const FILES: [(&str, &str); 4] = [
        ("rules/allow.toml", include_str!("../../rules/allow.toml")),
        (
            "rules/cluster.toml",
            include_str!("../../rules/cluster.toml"),
        ),
        (
            "rules/detections.toml",
            include_str!("../../rules/detections.toml"),
        ),
        (
            "rules/mining-pools.toml",
            include_str!("../../rules/mining-pools.toml"),
        ),
    ];
    FILES
        .iter()
        .map(|(name, text)| SourceFile {
            name: Arc::from(*name),
            text: (*text).to_string(),
        })
        .collect()
}

#[cfg(test)]
mod shipped_tests {
    /// The built-in copy loads cleanly (the files in `rules/` are tested
    /// by the loader's own tests too).
    #[test]
    fn shipped_rules_load() {
        let loaded = super::load_sources(super::shipped(), None);
        assert!(loaded.rules.is_some(), "{}", loaded.diagnostics);
    }
}
