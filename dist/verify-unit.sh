#!/usr/bin/env bash
# Checks dist/egresswatch.service with `systemd-analyze verify` in a
# throwaway root that holds the host's systemd units, the egresswatch binary
# at /usr/bin (as the package installs it) and /bin/kill. Any warning fails,
# not only errors. Usage: dist/verify-unit.sh [BINARY] (default
# target/debug/egresswatch). Needs the `systemd` package; no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/egresswatch}
command -v systemd-analyze >/dev/null || { echo "verify-unit: install the systemd package" >&2; exit 1; }
[ -x "$binary" ] || { echo "verify-unit: $binary not built" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd" "$root/usr/bin" "$root/bin" "$root/etc/systemd/system"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$binary" "$root/usr/bin/egresswatch"
printf '#!/bin/sh\n' >"$root/bin/kill"
chmod +x "$root/bin/kill"
cp dist/egresswatch.service "$root/etc/systemd/system/"

out=$(systemd-analyze verify --man=no --root="$root" "$root/etc/systemd/system/egresswatch.service" 2>&1) || {
  echo "$out" >&2
  echo "verify-unit: systemd-analyze verify failed" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "verify-unit: systemd-analyze verify warned" >&2
  exit 1
fi
echo "verify-unit: dist/egresswatch.service verifies"
