//! Stops the build at once, with one line saying what to install, when
//! libpcap's development files are missing: otherwise the first sign is a
//! linker error after every dependency has been compiled. Also records which
//! build this is (`EGRESSWATCH_REVISION`, `EGRESSWATCH_RUSTC`) for
//! `--version` and `egresswatch_build_info`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=LIBPCAP_LIBDIR");
    build_identity();
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if !library_dirs().iter().any(|d| has_libpcap(d)) {
        println!(
            "cargo::error=egresswatch links libpcap, whose development files are not installed: \
             `sudo apt-get install libpcap-dev` (Debian, Ubuntu), `sudo dnf install libpcap-devel` \
             (Fedora, RHEL) or `sudo apk add libpcap-dev` (Alpine); set LIBPCAP_LIBDIR if it is elsewhere"
        );
    }
}

fn has_libpcap(dir: &Path) -> bool {
    ["libpcap.so", "libpcap.a"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Where the linker will look: `LIBPCAP_LIBDIR` (which the `pcap` crate
/// honours), pkg-config, the C compiler's search path and the usual
/// multiarch directories.
fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LIBPCAP_LIBDIR")
        .into_iter()
        .map(PathBuf::from)
        .collect();
    if let Some(out) = output("pkg-config", &["--variable=libdir", "libpcap"]) {
        dirs.push(PathBuf::from(out.trim()));
    }
    if let Some(out) = output("cc", &["-print-search-dirs"]) {
        let libraries = out.lines().find_map(|l| l.strip_prefix("libraries: ="));
        dirs.extend(
            libraries
                .into_iter()
                .flat_map(|l| l.split(':'))
                .map(PathBuf::from),
        );
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    for base in ["/usr/lib", "/lib", "/usr/local/lib"] {
        dirs.push(Path::new(base).join(format!("{arch}-linux-gnu")));
        dirs.push(PathBuf::from(base));
    }
    dirs.push(PathBuf::from("/usr/lib64"));
    dirs
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The git revision (`EGRESSWATCH_REVISION` from the environment first, for
/// builds from a tarball that know theirs; then `git` when this directory is
/// the top of a checkout; else `unknown`) and the compiler's version.
fn build_identity() {
    println!("cargo::rerun-if-env-changed=EGRESSWATCH_REVISION");
    let revision = match std::env::var("EGRESSWATCH_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => git_revision().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo::rustc-env=EGRESSWATCH_REVISION={revision}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(String::from))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=EGRESSWATCH_RUSTC={version}");
}

/// `git rev-parse --short=12 HEAD`, only when the manifest directory is the
/// checkout's top (an unpacked tarball inside another repository is not);
/// asks cargo to rerun when HEAD or the branch it points to moves.
fn git_revision() -> Option<String> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from)?;
    let git = |args: &[&str]| {
        let mut all = vec!["-C", manifest.to_str()?];
        all.extend_from_slice(args);
        output("git", &all).map(|s| s.trim().to_string())
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != manifest.canonicalize().ok()? {
        return None;
    }
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    for name in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", name]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(revision)
}

/// Reruns the build script when `path` (relative to the manifest directory
/// or absolute) changes; a path that does not exist is not watched, since
/// cargo would then rerun the script on every build.
fn watch(path: Option<String>) {
    let Some(path) = path else { return };
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let full = manifest.map_or_else(|| PathBuf::from(&path), |m| m.join(&path));
    if full.is_file() {
        println!("cargo::rerun-if-changed={}", full.display());
    }
}
