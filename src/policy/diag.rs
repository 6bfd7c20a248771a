//! Rule-file diagnostics, rendered the way rustc renders compile errors:
//! a headline, `--> file:line:col`, the offending source line and a caret
//! under the offending text. The loader collects every problem before it
//! gives up, so one `check-rules` run shows them all.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::sync::Arc;

/// How bad a problem is. Errors stop a rule set from loading; warnings do
/// not.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// What kind of problem, as a stable short code (shown as `error[code]`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The file could not be read.
    Io,
    /// A `*.toml` entry that is not a regular file (a directory, FIFO,
    /// device or socket, after following symlinks).
    NotAFile,
    /// A rule file over [`MAX_RULE_FILE_BYTES`](super::load::MAX_RULE_FILE_BYTES).
    TooLarge,
    /// A rule file that is not UTF-8.
    Encoding,
    /// The directory holds no `*.toml` file.
    NoFiles,
    /// TOML syntax error.
    Syntax,
    UnknownKey,
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type but outside what is accepted.
    BadValue,
    BadCidr,
    BadPort,
    BadHost,
    BadDate,
    DuplicateZone,
    OverlappingZones,
    UnknownZone,
    UnknownDetection,
    /// The same setting given in two places.
    Duplicate,
    /// An allow entry whose expiry date has passed.
    Expired,
    /// Host bits set in a CIDR, a zone outside the internal ranges, and
    /// similar things that are legal but probably not meant.
    Suspicious,
    /// An allow entry every flow of which another entry permits too
    /// ([`super::lint`]).
    Shadowed,
    /// An allow entry (or a part of it) wider than what a capture shows it
    /// is used for (`check-rules --capture`).
    WiderThanEvidence,
    /// An allow entry (or a part of it) that permitted no flow of a
    /// capture (`check-rules --capture`).
    Unused,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Io => "io",
            Kind::NotAFile => "not-a-file",
            Kind::TooLarge => "too-large",
            Kind::Encoding => "encoding",
            Kind::NoFiles => "no-files",
            Kind::Syntax => "syntax",
            Kind::UnknownKey => "unknown-key",
            Kind::MissingKey => "missing-key",
            Kind::WrongType => "wrong-type",
            Kind::BadValue => "bad-value",
            Kind::BadCidr => "bad-cidr",
            Kind::BadPort => "bad-port",
            Kind::BadHost => "bad-host",
            Kind::BadDate => "bad-date",
            Kind::DuplicateZone => "duplicate-zone",
            Kind::OverlappingZones => "overlapping-zones",
            Kind::UnknownZone => "unknown-zone",
            Kind::UnknownDetection => "unknown-detection",
            Kind::Duplicate => "duplicate",
            Kind::Expired => "expired",
            Kind::Suspicious => "suspicious",
            Kind::Shadowed => "shadowed",
            Kind::WiderThanEvidence => "wider-than-evidence",
            Kind::Unused => "unused",
        }
    }
}

/// One rule file's name (as given to the loader) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: Arc<str>,
    pub text: String,
}

/// A place in a rule file: the file's index among the loaded sources and a
/// byte range in its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub file: usize,
    pub span: Range<usize>,
}

/// One problem found while loading rules.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub level: Level,
    pub kind: Kind,
    pub message: String,
    /// Where; `None` for problems with no place in a file (unreadable
    /// directory, no files).
    pub site: Option<Site>,
    /// Text printed after the carets.
    pub label: Option<String>,
    /// `= note:` lines.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(kind: Kind, message: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Error,
            kind,
            message: message.into(),
            site: None,
            label: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(kind: Kind, message: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Warning,
            ..Diagnostic::error(kind, message)
        }
    }

    pub fn at(mut self, file: usize, span: Range<usize>) -> Self {
        self.site = Some(Site { file, span });
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LineCol {
    pub line: usize,
    pub col: usize,
}

/// Where each line of a text starts, built once per file: finding the
/// line of an offset is then a binary search instead of a scan from the
/// start of the file (which made loading quadratic in a file's entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineIndex {
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// Line and column of byte `offset` in `text`, the text this index was
    /// built from (clamped to the text).
    pub fn line_col(&self, text: &str, offset: usize) -> LineCol {
        let offset = floor_char_boundary(text, offset);
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        LineCol { line, col }
    }

    /// The text of 1-based line `line`, without its line ending.
    pub fn line<'t>(&self, text: &'t str, line: usize) -> &'t str {
        let Some(start) = line.checked_sub(1).and_then(|i| self.starts.get(i)) else {
            return "";
        };
        let end = self.starts.get(line).map_or(text.len(), |e| e - 1);
        let s = text.get(*start..end).unwrap_or("");
        s.strip_suffix('\r').unwrap_or(s)
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut at = offset.min(text.len());
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// All problems of one load, with the sources needed to render them.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    pub sources: Vec<SourceFile>,
    /// The line index of each source, by position.
    lines: Vec<LineIndex>,
}

impl Diagnostics {
    pub fn new(items: Vec<Diagnostic>, sources: Vec<SourceFile>) -> Self {
        let lines = sources.iter().map(|s| LineIndex::new(&s.text)).collect();
        Diagnostics::indexed(items, sources, lines)
    }

    /// With the sources' line indexes already built (`lines[i]` of
    /// `sources[i]`).
    pub(crate) fn indexed(
        items: Vec<Diagnostic>,
        sources: Vec<SourceFile>,
        lines: Vec<LineIndex>,
    ) -> Self {
        Diagnostics {
            items,
            sources,
            lines,
        }
    }

    /// A source with its line index (built here if it is missing).
    fn source(&self, file: usize) -> Option<(&SourceFile, Cow<'_, LineIndex>)> {
        let src = self.sources.get(file)?;
        let lines = match self.lines.get(file) {
            Some(l) => Cow::Borrowed(l),
            None => Cow::Owned(LineIndex::new(&src.text)),
        };
        Some((src, lines))
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    pub fn error_count(&self) -> usize {
        self.count(Level::Error)
    }

    pub fn warning_count(&self) -> usize {
        self.count(Level::Warning)
    }

    fn count(&self, level: Level) -> usize {
        self.items.iter().filter(|d| d.level == level).count()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Orders problems by file and position, as a reader goes through them.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| {
            d.site
                .as_ref()
                .map_or((0, 0, 0), |s| (1, s.file, s.span.start))
        });
    }

    /// `file:line:col` of a diagnostic, if it has a place.
    pub fn location(&self, diag: &Diagnostic) -> Option<(Arc<str>, LineCol)> {
        let site = diag.site.as_ref()?;
        let (src, lines) = self.source(site.file)?;
        Some((src.name.clone(), lines.line_col(&src.text, site.span.start)))
    }

    /// Every diagnostic in rustc style, followed by a one-line tally.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for diag in &self.items {
            self.render_one(diag, &mut out);
            out.push('\n');
        }
        let (e, w) = (self.error_count(), self.warning_count());
        if e + w > 0 {
            let _ = writeln!(out, "{}, {}", plural(e, "error"), plural(w, "warning"));
        }
        out
    }

    /// One diagnostic in rustc style.
    pub fn render_one(&self, diag: &Diagnostic, out: &mut String) {
        let _ = writeln!(
            out,
            "{}[{}]: {}",
            diag.level.name(),
            diag.kind.code(),
            diag.message
        );
        let snippet = diag
            .site
            .as_ref()
            .and_then(|site| Some((site, self.source(site.file)?)));
        let Some((site, (src, lines))) = snippet else {
            for note in &diag.notes {
                let _ = writeln!(out, "  = note: {note}");
            }
            return;
        };
        let pos = lines.line_col(&src.text, site.span.start);
        let line_text = lines.line(&src.text, pos.line);
        let gutter = pos.line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {}:{}:{}", src.name, pos.line, pos.col);
        let _ = writeln!(out, "{pad} |");
        let excerpt = Excerpt::new(line_text, pos.col);
        let _ = writeln!(out, "{} | {}", pos.line, excerpt.text);
        let carets = excerpt.carets(span_width(site, &src.text));
        match &diag.label {
            Some(label) => {
                let _ = writeln!(out, "{pad} | {carets} {label}");
            }
            None => {
                let _ = writeln!(out, "{pad} | {carets}");
            }
        }
        for note in &diag.notes {
            let _ = writeln!(out, "{pad} = note: {note}");
        }
    }
}

/// Characters of a source line a diagnostic shows at most; a longer line
/// is cut around the column, with `…` where text was left out.
pub const EXCERPT_CHARS: usize = 200;

/// The part of a source line a diagnostic shows, and where its column
/// falls in it.
struct Excerpt {
    text: String,
    /// 1-based column in `text`.
    col: usize,
}

impl Excerpt {
    fn new(line: &str, col: usize) -> Self {
        if line.chars().take(EXCERPT_CHARS + 1).count() <= EXCERPT_CHARS {
            return Excerpt {
                text: line.to_string(),
                col,
            };
        }
        let skip = col.saturating_sub(1 + EXCERPT_CHARS / 2);
        let mut chars = line.chars().skip(skip);
        let mut text = String::new();
        if skip > 0 {
            text.push('…');
        }
        text.extend(chars.by_ref().take(EXCERPT_CHARS));
        if chars.next().is_some() {
            text.push('…');
        }
        Excerpt {
            col: col - skip + usize::from(skip > 0),
            text,
        }
    }

    /// Spaces (tabs kept, so the caret lines up) up to the column, then
    /// `width` carets, at least one and no further than the excerpt.
    fn carets(&self, width: usize) -> String {
        let mut out: String = self
            .text
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let room = self.text.chars().count().saturating_sub(self.col - 1);
        out.extend(std::iter::repeat_n('^', width.min(room).max(1)));
        out
    }
}

/// Characters of a site's span on its first line.
fn span_width(site: &Site, text: &str) -> usize {
    let start = floor_char_boundary(text, site.span.start);
    let end = floor_char_boundary(text, site.span.end.max(start));
    let spanned = text.get(start..end).unwrap_or("");
    let on_line = spanned.split('\n').next().unwrap_or("");
    on_line.chars().take(EXCERPT_CHARS + 1).count()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The closest of `candidates` to `word`, if close enough to suggest
/// (`did you mean ...?`).
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, span: Range<usize>, diag: Diagnostic) -> String {
        let diags = Diagnostics::new(
            vec![diag.at(0, span)],
            vec![SourceFile {
                name: "rules/a.toml".into(),
                text: text.into(),
            }],
        );
        diags.render()
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let lines = LineIndex::new(text);
        let at = |offset| lines.line_col(text, offset);
        assert_eq!(at(0), LineCol { line: 1, col: 1 });
        assert_eq!(at(5), LineCol { line: 1, col: 6 });
        assert_eq!(at(6), LineCol { line: 2, col: 1 });
        // byte 12 is the quote after "bé = " (é is two bytes)
        assert_eq!(at(12), LineCol { line: 2, col: 6 });
        // inside é: the character's start
        assert_eq!(at(8), LineCol { line: 2, col: 2 });
        assert_eq!(at(999), LineCol { line: 3, col: 1 });
    }

    #[test]
    fn lines_are_found_without_their_endings() {
        let text = "one\r\ntwo\n\nfour";
        let lines = LineIndex::new(text);
        let got: Vec<&str> = (0..=5).map(|n| lines.line(text, n)).collect();
        assert_eq!(got, ["", "one", "two", "", "four", ""]);
        assert_eq!(
            lines.line_col(text, text.len()),
            LineCol { line: 4, col: 5 }
        );
        let empty = LineIndex::new("");
        assert_eq!(empty.line_col("", 0), LineCol { line: 1, col: 1 });
        assert_eq!(empty.line("", 1), "");
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let mut text = "x".repeat(1000);
        text.push_str("BAD");
        text.push_str(&"y".repeat(1_000_000));
        text.push('\n');
        let out = one(&text, 1000..1003, Diagnostic::error(Kind::BadValue, "bad"));
        let shown = format!("…{}BAD{}…", "x".repeat(100), "y".repeat(97));
        let carets = format!("{}^^^", " ".repeat(101));
        assert!(
            out.contains(&format!("1 | {shown}\n  | {carets}\n")),
            "{out}"
        );
        assert!(out.len() < 1000, "{} bytes", out.len());
        // Near the start only the end is cut; a span running past the
        // excerpt is underlined to its edge.
        let out = one(&text, 2..999_999, Diagnostic::error(Kind::BadValue, "bad"));
        let shown = format!("{}…", "x".repeat(200));
        let carets = format!("  {}", "^".repeat(199));
        assert!(
            out.contains(&format!("1 | {shown}\n  | {carets}\n")),
            "{out}"
        );
    }

    #[test]
    fn renders_rustc_style_with_caret_under_the_span() {
        let text = "[cluster]\ninternal = [\"10.0.0.0/33\"]\n";
        let out = one(
            text,
            22..35,
            Diagnostic::error(Kind::BadCidr, "invalid CIDR `10.0.0.0/33`")
                .label("prefix length must be 0..=32")
                .note("write an address with a prefix length, e.g. 10.0.0.0/8"),
        );
        assert_eq!(
            out,
            "error[bad-cidr]: invalid CIDR `10.0.0.0/33`
 --> rules/a.toml:2:13
  |
2 | internal = [\"10.0.0.0/33\"]
  |             ^^^^^^^^^^^^^ prefix length must be 0..=32
  = note: write an address with a prefix length, e.g. 10.0.0.0/8

1 error, 0 warnings
"
        );
    }

    #[test]
    fn tabs_are_kept_and_empty_spans_get_one_caret() {
        let text = "\tx = 1\n";
        let out = one(text, 1..1, Diagnostic::warning(Kind::Syntax, "here"));
        assert!(out.contains("1 | \tx = 1\n  | \t^\n"), "{out}");
    }

    #[test]
    fn multi_line_spans_underline_the_first_line() {
        let text = "a = [\n 1,\n]\n";
        let out = one(text, 4..12, Diagnostic::error(Kind::BadValue, "bad"));
        assert!(out.contains("1 | a = [\n  |     ^\n"), "{out}");
    }

    #[test]
    fn unplaced_diagnostics_render_without_snippet() {
        let diags = Diagnostics::new(
            vec![Diagnostic::error(Kind::NoFiles, "no rule files in `x`").note("add *.toml")],
            vec![],
        );
        assert_eq!(
            diags.render(),
            "error[no-files]: no rule files in `x`\n  = note: add *.toml\n\n1 error, 0 warnings\n"
        );
    }

    #[test]
    fn suggestions_pick_close_names_only() {
        let keys = ["egress", "cidrs", "name"];
        assert_eq!(suggest("egres", &keys), Some("egress"));
        assert_eq!(suggest("cidr", &keys), Some("cidrs"));
        assert_eq!(suggest("banana", &keys), None);
    }
}
