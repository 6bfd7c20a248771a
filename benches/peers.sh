#!/usr/bin/env bash
# Issue 15's side-by-side check (docs/PERFORMANCE.md): `egresswatch replay` on the
# 2 M-packet benchmark capture with its default engines and with 1, 2 and 3, beside
# argus (bidirectional flow records) and tcpdump -w /dev/null (libpcap's read loop, the
# floor), in one series; then the EVE of every engine count against one engine's.
#
#   cargo build --release && benches/peers.sh             # from the repository root
#
# Needs argus and tcpdump (Debian: argus-server, tcpdump). Environment: BIN, RUNS (5),
# DIR (/tmp/ewpeers), BENCH and GEN_BENCH as in benches/curves.sh. Runs alternate, so a
# noisy stretch of the machine spreads over every configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/egresswatch}
RUNS=${RUNS:-5}
DIR=${DIR:-/tmp/ewpeers}
BENCH=${BENCH:-/tmp/ewin_bench.pcap}
GEN_BENCH=${GEN_BENCH:-../shared/bench/gen_pcap.py}
mkdir -p "$DIR"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 1; }
for tool in argus tcpdump; do
  command -v "$tool" >/dev/null || { echo "no $tool: apt-get install argus-server tcpdump" >&2; exit 1; }
done
[ -s "$BENCH" ] || python3 "$GEN_BENCH" --packets 2000000 --out "$BENCH"
PACKETS=2000000

# label | command
CONFIGS=(
  "egresswatch default|$BIN replay -q $BENCH --eve /dev/null"
  "egresswatch threads=1|$BIN replay -q $BENCH --eve /dev/null --threads 1"
  "egresswatch threads=2|$BIN replay -q $BENCH --eve /dev/null --threads 2"
  "egresswatch threads=3|$BIN replay -q $BENCH --eve /dev/null --threads 3"
  "argus|argus -r $BENCH -w /dev/null"
  "tcpdump -w /dev/null|tcpdump -q -r $BENCH -w /dev/null"
)
cat "$BENCH" >/dev/null

OUT=$DIR/runs.tsv
{
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'label\tpackets\trun\tmaxrss_kib\twall_s\tuser_s\tsys_s\n'
} >"$OUT"
for r in $(seq 1 "$RUNS"); do
  for c in "${CONFIGS[@]}"; do
    IFS='|' read -r label cmd <<<"$c"
    # shellcheck disable=SC2086
    /usr/bin/time -o "$DIR/time.txt" -f "%M %e %U %S" $cmd 2>/dev/null
    read -r m e u s <"$DIR/time.txt"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$PACKETS" "$r" "$m" "$e" "$u" "$s" | tee -a "$OUT"
  done
done
echo "# end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
python3 benches/summarize.py "$OUT"

echo
echo "EVE md5 by engines (must all be the same):"
for t in 1 2 3; do
  printf 'threads=%s  ' "$t"
  "$BIN" replay -q "$BENCH" --eve - --threads "$t" | md5sum
done
