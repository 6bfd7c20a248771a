//! Stops the build at once, with one line saying what to install, when
//! libpcap's development files are missing: otherwise the first sign is a
//! linker error after every dependency has been compiled.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=LIBPCAP_LIBDIR");
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
