//! What the packages ship, checked without root: `--version` names the
//! build, the man pages and completions are generated from the command
//! line, the Kubernetes ConfigMap holds exactly the shipped rules and they
//! pass `check-rules`, and every file the .deb metadata names exists.
//! (`tests/netns_deb.rs` installs the package itself, as root.)

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_egresswatch");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn egresswatch(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run egresswatch");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn version_names_the_revision_and_compiler() {
    let out = egresswatch(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("egresswatch {} (revision ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want), "{text}");
    let revision = text["egresswatch ".len()..]
        .split("revision ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("a revision");
    assert!(
        revision == "unknown"
            || (revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{revision}"
    );
    assert!(text.contains(", rustc 1."), "{text}");
    // In a git checkout (not a tarball), the revision is HEAD's.
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output();
    if let Some(head) = head.ok().filter(|h| h.status.success()) {
        if std::env::var_os("EGRESSWATCH_REVISION").is_none() {
            assert_eq!(revision, String::from_utf8_lossy(&head.stdout).trim());
        }
    }
}

#[test]
fn man_pages_cover_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("man1");
    egresswatch(&["man", "--out-dir", out_dir.to_str().expect("utf-8")]);
    for (page, must) in [
        ("egresswatch.1", ".TH egresswatch 1"),
        ("egresswatch-capture.1", "web.listen\\-address"),
        ("egresswatch-replay.1", "metrics\\-file"),
        ("egresswatch-check-rules.1", ".SH NAME"),
    ] {
        let text =
            std::fs::read_to_string(out_dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(must), "{page} lacks {must}");
    }
}

#[test]
fn completions_know_the_commands_and_options() {
    for shell in ["bash", "zsh", "fish"] {
        let out = egresswatch(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        for word in ["capture", "check-rules", "interface", "web.listen-address"] {
            assert!(text.contains(word), "{shell}: no {word}");
        }
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

/// The `|` blocks under `data:` of the ConfigMap, as (key, text).
fn configmap_files(yaml: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut in_data = false;
    for line in yaml.lines() {
        if line == "data:" {
            in_data = true;
            continue;
        }
        if !in_data {
            continue;
        }
        if let Some(key) = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(": |"))
            .filter(|k| !k.starts_with(' '))
        {
            files.push((key.to_string(), String::new()));
        } else if let Some((_, text)) = files.last_mut() {
            let body = line.strip_prefix("    ").unwrap_or_else(|| {
                assert!(line.is_empty(), "not in a block: {line:?}");
                ""
            });
            text.push_str(body);
            text.push('\n');
        }
    }
    files
}

#[test]
fn the_configmap_holds_the_shipped_rules() {
    let yaml = std::fs::read_to_string(manifest_dir().join("dist/kubernetes/rules-configmap.yaml"))
        .expect("the ConfigMap");
    let files = configmap_files(&yaml);
    let mut shipped: Vec<String> = std::fs::read_dir(manifest_dir().join("rules"))
        .expect("rules/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    shipped.sort();
    let keys: Vec<&String> = files.iter().map(|f| &f.0).collect();
    assert_eq!(keys, shipped.iter().collect::<Vec<_>>());
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in &files {
        let want = std::fs::read_to_string(manifest_dir().join("rules").join(name)).expect("rule");
        assert_eq!(
            text, &want,
            "{name} differs from rules/{name}: run dist/kubernetes/configmap.sh"
        );
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    egresswatch(&["check-rules", dir.path().to_str().expect("utf-8")]);
}

#[test]
fn the_package_metadata_names_existing_files() {
    let toml = std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("Cargo.toml");
    let deb = &toml[toml.find("[package.metadata.deb]").expect("deb metadata")..];
    let deb = &deb[..deb.find("\n[profile").unwrap_or(deb.len())];
    let mut checked = 0;
    for line in deb.lines().map(str::trim) {
        let Some(source) = line.strip_prefix("[\"").and_then(|l| l.split('"').next()) else {
            continue;
        };
        // Generated by dist/deb.sh at package time.
        if source.starts_with("target/") {
            continue;
        }
        let matches = if let Some(dir) = source.strip_suffix("/*.toml") {
            std::fs::read_dir(manifest_dir().join(dir))
                .map(|d| d.count())
                .unwrap_or(0)
        } else {
            usize::from(manifest_dir().join(source).is_file())
        };
        assert!(matches > 0, "{source} is missing");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} assets checked");
    for file in [
        "dist/egresswatch.service",
        "dist/debian/postinst",
        "dist/debian/postrm",
        "LICENSE",
    ] {
        assert!(manifest_dir().join(file).is_file(), "{file}");
    }
}

/// `dist/preflight-rustc`, cargo's rustc wrapper here: passes rustc through,
/// and when libpcap's development files are missing stops cargo's first
/// call (`rustc -vV`, before any crate is compiled) with what to install.
#[test]
fn the_rustc_wrapper_says_what_to_install_before_compiling() {
    let wrapper = manifest_dir().join("dist/preflight-rustc");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let run = |missing: bool| {
        let mut cmd = Command::new(&wrapper);
        cmd.args([rustc.as_str(), "-vV"])
            .env_remove("LIBPCAP_LIBDIR");
        if missing {
            cmd.env("EGRESSWATCH_PREFLIGHT_SYSROOT", "/nonexistent")
                .env("PKG_CONFIG_LIBDIR", "/nonexistent")
                .env("PKG_CONFIG_PATH", "");
        }
        cmd.output().expect("run dist/preflight-rustc")
    };
    let present = run(false);
    assert!(present.status.success(), "{present:?}");
    assert!(String::from_utf8_lossy(&present.stdout).starts_with("rustc "));
    let missing = run(true);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let text = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("apt-get install libpcap-dev"), "{text}");
    let config = std::fs::read_to_string(manifest_dir().join(".cargo/config.toml")).unwrap();
    assert!(
        config.contains("rustc-wrapper = \"dist/preflight-rustc\""),
        "{config}"
    );
}
