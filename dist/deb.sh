#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the binary, the man pages
# and shell completions generated from it (target/assets), then cargo-deb
# with the [package.metadata.deb] of Cargo.toml.
#   dist/deb.sh            release build (what to ship; several minutes)
#   dist/deb.sh --dev      the unoptimized test build (for the package test)
# Needs cargo-deb (`cargo install cargo-deb --locked`) and dpkg-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release dir=release
if [ "${1:-}" = --dev ]; then profile=dev dir=debug; fi
command -v cargo-deb >/dev/null || { echo "deb: cargo install cargo-deb --locked" >&2; exit 1; }

cargo build --locked --profile "$profile" --bin egresswatch
bin=target/$dir/egresswatch
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man --out-dir "$assets/man"
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/completions/egresswatch.bash"
"$bin" completions zsh >"$assets/completions/_egresswatch"
"$bin" completions fish >"$assets/completions/egresswatch.fish"
cargo deb --no-build --profile "$profile" --fast
