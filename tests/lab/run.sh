#!/usr/bin/env bash
# Runs the namespace traffic lab: one pcap per scenario plus manifest.json,
# manifest.csv and README.md in OUTDIR. Needs root. Unattended (no stdin).
#   tests/lab/run.sh OUTDIR [SCENARIO-PREFIX...]
#   tests/lab/run.sh --list
# LAB_TIMEOUT (seconds, default 900) bounds the whole run; the harness
# removes every namespace, veth, process and test user it made on any exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$(command -v python3)"
for tool in ip tcpdump ethtool ssh scp /usr/sbin/sshd dbclient dropbear dropbearkey curl git; do
  if [ "${1:-}" != "--list" ] && ! command -v "$tool" >/dev/null 2>&1; then
    echo "lab: missing $tool (see .ci/netns for the packages)" >&2
    exit 2
  fi
done
exec timeout --signal=TERM --kill-after=30 "${LAB_TIMEOUT:-900}" \
  "$py" "$here/lab.py" "$@" </dev/null
