#!/usr/bin/env bash
# Issue 15's side-by-side check (docs/PERFORMANCE.md): `egresswatch replay` on the
# 2 M-packet benchmark capture with its default engines and with 1, 2 and 3, beside
# argus (bidirectional flow records) and tcpdump -w /dev/null (libpcap's read loop, the
# floor), in one series; then the EVE of every engine count against one engine's.
#
#   cargo build --release && benches/peers.sh             # from the repository root
#
# Needs argus and tcpdump (Debian: argus-server, tcpdump). Environment: RUNS (5), DIR
# (/tmp/ewpeers), and those of benches/series.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_RUNS=5
DIR=${DIR:-/tmp/ewpeers}
# shellcheck source=benches/series.sh
. benches/series.sh
for tool in argus tcpdump; do
  command -v "$tool" >/dev/null || { echo "no $tool: apt-get install argus-server tcpdump" >&2; exit 1; }
done
N=2000000
REPLAY="$BIN replay -q $BENCH --eve /dev/null"
cat "$BENCH" >/dev/null
run_series \
  "egresswatch default|$N|$REPLAY" \
  "egresswatch threads=1|$N|$REPLAY --threads 1" \
  "egresswatch threads=2|$N|$REPLAY --threads 2" \
  "egresswatch threads=3|$N|$REPLAY --threads 3" \
  "argus|$N|argus -r $BENCH -w /dev/null" \
  "tcpdump -w /dev/null|$N|tcpdump -q -r $BENCH -w /dev/null"

echo
echo "EVE md5 by engines (must all be the same):"
for t in 1 2 3; do
  printf 'threads=%s  ' "$t"
  "$BIN" replay -q "$BENCH" --eve - --threads "$t" | md5sum
done
