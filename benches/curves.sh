#!/usr/bin/env bash
# How the cost grows (docs/PERFORMANCE.md): packets/s, CPU and peak RSS of
# `egresswatch replay` against concurrent flows, packets per flow and --threads.
#
#   cargo build --release && benches/curves.sh            # from the repository root
#
# Environment: BIN (default target/release/egresswatch, or $CARGO_TARGET_DIR/release/
# egresswatch), RUNS (3), DIR for the generated captures (/tmp/ewcurves), BENCH (the
# 2 M-packet capture of ../shared/bench/gen_pcap.py, default /tmp/ewin_bench.pcap; made
# if missing, ~70 s, 1.2 GB), GEN_BENCH (../shared/bench/gen_pcap.py). The other captures
# are made once in $DIR (about 5 min, 3.3 GB). Runs of all
# configurations alternate (run 1 of each, then run 2 of each, ...), so a noisy stretch of
# the machine spreads over the series. Writes every run to $DIR/runs.tsv and prints
# min / median per configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/egresswatch}
RUNS=${RUNS:-3}
DIR=${DIR:-/tmp/ewcurves}
BENCH=${BENCH:-/tmp/ewin_bench.pcap}
GEN_BENCH=${GEN_BENCH:-../shared/bench/gen_pcap.py}
TOTAL=2000000   # packets in each flow-length capture, as in the benchmark capture
mkdir -p "$DIR"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 1; }
[ -s "$BENCH" ] || python3 "$GEN_BENCH" --packets 2000000 --out "$BENCH"

# label | capture | packets in it | extra replay arguments
CONFIGS=()
for n in 10000 100000 1000000; do
  f=$DIR/conc$n.pcap
  [ -s "$f" ] || python3 benches/gen_concurrent.py --flows $n --out "$f"
  CONFIGS+=("flows=$n|$f|$((3 * n))|")
done
f=$DIR/conc100000p.pcap
[ -s "$f" ] || python3 benches/gen_concurrent.py --flows 100000 --payload --out "$f"
CONFIGS+=("flows=100000+payload|$f|400000|")
for p in 2 10 100 1000; do
  f=$DIR/ppf$p.pcap
  [ -s "$f" ] || python3 benches/gen_concurrent.py --packets-per-flow $p --packets $TOTAL --out "$f"
  CONFIGS+=("ppf=$p|$f|$TOTAL|")
done
CONFIGS+=("bench,threads=1|$BENCH|2000000|--threads 1")
CONFIGS+=("bench,threads=2|$BENCH|2000000|--threads 2")

# page cache: read every capture once before timing
for c in "${CONFIGS[@]}"; do IFS='|' read -r _ f _ _ <<<"$c"; cat "$f" >/dev/null; done

OUT=$DIR/runs.tsv
{
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'label\tpackets\trun\tmaxrss_kib\twall_s\tuser_s\tsys_s\n'
} >"$OUT"
for r in $(seq 1 "$RUNS"); do
  for c in "${CONFIGS[@]}"; do
    IFS='|' read -r label f pk extra <<<"$c"
    # shellcheck disable=SC2086
    /usr/bin/time -o "$DIR/time.txt" -f "%M %e %U %S" "$BIN" replay -q "$f" --eve /dev/null $extra
    read -r m e u s <"$DIR/time.txt"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$pk" "$r" "$m" "$e" "$u" "$s" | tee -a "$OUT"
  done
done
echo "# end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"

python3 benches/summarize.py "$OUT"
