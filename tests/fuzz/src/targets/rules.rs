//! `rules`: rule files through [`egresswatch::policy::load_sources`], the
//! loader behind `load_dir`, `check-rules` and SIGHUP reloads.
//!
//! Input: the texts of the rule files, separated by 0xff bytes (which no
//! UTF-8 text holds); each is read as the lossy UTF-8 of its bytes, as a
//! file on disk would be rejected or read whole.
//!
//! Checked: a load without errors yields a rule set and a load with
//! errors none; every diagnostic points into the file it names; loading
//! the same files twice says the same thing; a rule set loads into a
//! summary and an explanation.

use egresswatch::policy::{explain, load_sources, summary, Diagnostics, ExplainQuery, SourceFile};
use egresswatch::time::Timestamp;

/// Rule files read at most.
pub const MAX_FILES: usize = 16;
/// The separator between two files of one input.
pub const SEPARATOR: u8 = 0xff;

/// Writes files for [`run`] (UTF-8 texts never hold the separator).
pub fn encode(files: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, text) in files.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn sources(data: &[u8]) -> Vec<SourceFile> {
    data.split(|&b| b == SEPARATOR)
        .take(MAX_FILES)
        .enumerate()
        .map(|(i, text)| SourceFile {
            name: format!("fuzz/{i:02}.toml").into(),
            text: String::from_utf8_lossy(text).into_owned(),
        })
        .collect()
}

pub fn run(data: &[u8]) {
    let now = Some(Timestamp::from_secs(1_700_000_000));
    let loaded = load_sources(sources(data), now);
    let errors = loaded.diagnostics.has_errors();
    assert_eq!(
        loaded.rules.is_some(),
        !errors,
        "a rule set must load exactly when there is no error"
    );
    check_sites(&loaded.diagnostics);
    let text = loaded.diagnostics.render();
    let again = load_sources(sources(data), now);
    assert_eq!(again.diagnostics.render(), text, "two loads disagree");
    if let Some(rules) = &loaded.rules {
        assert!(!summary(rules).is_empty());
        for protocol in ["ssh", "tls", "dns", "any"] {
            let q = ExplainQuery::new(
                [10, 0, 0, 5].into(),
                [203, 0, 113, 9].into(),
                443,
                protocol,
                Timestamp::from_secs(1_700_000_000),
            )
            .expect("a known protocol");
            assert!(!explain(rules, &q).is_empty());
        }
    }
}

fn check_sites(diags: &Diagnostics) {
    for d in &diags.items {
        let Some(site) = &d.site else { continue };
        let src = diags.sources.get(site.file).unwrap_or_else(|| {
            panic!(
                "diagnostic in file {} of {}",
                site.file,
                diags.sources.len()
            )
        });
        assert!(
            site.span.start <= site.span.end && site.span.end <= src.text.len(),
            "span {:?} outside {} bytes: {}",
            site.span,
            src.text.len(),
            d.message
        );
        let (name, at) = diags.location(d).expect("a site has a location");
        assert_eq!(name, src.name);
        assert!(at.line >= 1 && at.line <= src.text.lines().count().max(1) + 1);
    }
}
