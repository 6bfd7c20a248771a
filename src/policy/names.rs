//! Host name patterns: an exact name (`git.example.com`) or a suffix
//! (`*.example.com`, which matches any name *below* example.com but not
//! example.com itself, as TLS wildcards and DNS-based egress policies do).
//! Lookups hash the name and each of its parent domains, so their cost
//! depends on the name, not on the number of patterns.

use std::collections::HashMap;
use std::fmt;

/// A validated, lower-cased host name pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamePattern {
    Exact(Box<str>),
    /// The part after `*.`.
    Suffix(Box<str>),
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

impl NamePattern {
    /// Parses `name` or `*.suffix`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        let lower = normalize(text);
        let (suffix, body) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_ref()),
        };
        validate_name(body)?;
        Ok(if suffix {
            NamePattern::Suffix(body.into())
        } else {
            NamePattern::Exact(body.into())
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        let name = normalize(name);
        match self {
            NamePattern::Exact(n) => name.as_ref() == n.as_ref(),
            NamePattern::Suffix(s) => parents(&name).any(|p| p == s.as_ref()),
        }
    }
}

/// Lower case, no trailing dot (DNS answers carry one).
fn normalize(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty host name".into());
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    if name.contains('*') {
        return Err("`*` is only allowed as a leading `*.` (e.g. `*.example.com`)".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters".into());
        }
        let ok = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "label `{label}` has characters other than letters, digits, `-` and `_`"
            ));
        }
    }
    Ok(())
}

/// The strict parent domains of `name`: `a.b.c` gives `b.c`, `c`.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.')
        .filter_map(move |(i, _)| name.get(i + 1..))
}

/// Patterns with a value each; a lookup returns the values of every
/// matching pattern.
#[derive(Clone, Debug)]
pub struct NameIndex<T> {
    exact: HashMap<Box<str>, Vec<T>>,
    suffix: HashMap<Box<str>, Vec<T>>,
}

impl<T> Default for NameIndex<T> {
    fn default() -> Self {
        NameIndex {
            exact: HashMap::new(),
            suffix: HashMap::new(),
        }
    }
}

impl<T: Clone> NameIndex<T> {
    pub fn insert(&mut self, pattern: &NamePattern, value: T) {
        let (map, key) = match pattern {
            NamePattern::Exact(n) => (&mut self.exact, n),
            NamePattern::Suffix(s) => (&mut self.suffix, s),
        };
        map.entry(key.clone()).or_default().push(value);
    }

    pub fn len(&self) -> usize {
        self.exact
            .values()
            .chain(self.suffix.values())
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `found` with the pattern and value of every match of `name`.
    pub fn for_each_match(&self, name: &str, mut found: impl FnMut(NamePattern, &T)) {
        let name = normalize(name);
        if let Some(vals) = self.exact.get(name.as_ref()) {
            for v in vals {
                found(NamePattern::Exact(name.as_ref().into()), v);
            }
        }
        if self.suffix.is_empty() {
            return;
        }
        for parent in parents(&name) {
            if let Some(vals) = self.suffix.get(parent) {
                for v in vals {
                    found(NamePattern::Suffix(parent.into()), v);
                }
            }
        }
    }

    /// The first matching pattern (exact before suffix, longer suffix
    /// first) and its value.
    pub fn first_match(&self, name: &str) -> Option<(NamePattern, T)> {
        let mut first = None;
        self.for_each_match(name, |p, v| {
            if first.is_none() {
                first = Some((p, v.clone()));
            }
        });
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("git.example.com", "git.example.com", true),
            ("git.example.com", "GIT.Example.com.", true),
            ("git.example.com", "x.git.example.com", false),
            ("*.nanopool.org", "xmr-eu1.nanopool.org", true),
            ("*.nanopool.org", "a.b.nanopool.org", true),
            ("*.nanopool.org", "nanopool.org", false),
            ("*.nanopool.org", "evilnanopool.org", false),
        ];
        for (pat, name, want) in cases {
            let p = NamePattern::parse(pat).unwrap();
            assert_eq!(p.matches(name), *want, "{pat} vs {name}");
        }
    }

    #[test]
    fn bad_patterns_are_rejected_with_a_reason() {
        for bad in [
            "",
            "*.",
            "a..b",
            "*foo.com",
            "a.*.com",
            "sp ace.com",
            ".lead.com",
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(NamePattern::parse(&long).is_err());
    }

    #[test]
    fn index_finds_exact_and_suffix_matches() {
        let mut idx = NameIndex::default();
        idx.insert(&NamePattern::parse("*.example.com").unwrap(), 1);
        idx.insert(&NamePattern::parse("a.example.com").unwrap(), 2);
        idx.insert(&NamePattern::parse("*.a.example.com").unwrap(), 3);
        let mut got = Vec::new();
        idx.for_each_match("x.a.example.com", |_, v| got.push(*v));
        assert_eq!(got, vec![3, 1]);
        got.clear();
        idx.for_each_match("A.example.com", |_, v| got.push(*v));
        assert_eq!(got, vec![2, 1]);
        assert_eq!(
            idx.first_match("q.example.com"),
            Some((NamePattern::Suffix("example.com".into()), 1))
        );
        assert_eq!(idx.first_match("example.com"), None);
        assert_eq!(idx.len(), 3);
    }
}
