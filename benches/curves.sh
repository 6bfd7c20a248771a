#!/usr/bin/env bash
# How the cost grows (docs/PERFORMANCE.md): packets/s, CPU and peak RSS of
# `egresswatch replay` against concurrent flows, packets per flow and --threads.
#
#   cargo build --release && benches/curves.sh            # from the repository root
#
# Environment: RUNS (3), DIR for the generated captures (/tmp/ewcurves), and those of
# benches/series.sh. The captures besides the benchmark's are made once in $DIR (about
# 5 min, 3.3 GB). Runs of all configurations alternate (run 1 of each, then run 2 of
# each, ...), so a noisy stretch of the machine spreads over the series. Writes every run
# to $DIR/runs.tsv and prints min / median per configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_RUNS=3
DIR=${DIR:-/tmp/ewcurves}
# shellcheck source=benches/series.sh
. benches/series.sh
TOTAL=2000000   # packets in each flow-length capture, as in the benchmark capture
REPLAY="$BIN replay -q --eve /dev/null"

# label | packets in the capture | command
CONFIGS=()
for n in 10000 100000 1000000; do
  f=$DIR/conc$n.pcap
  [ -s "$f" ] || python3 benches/gen_concurrent.py --flows $n --out "$f"
  CONFIGS+=("flows=$n|$((3 * n))|$REPLAY $f")
done
f=$DIR/conc100000p.pcap
[ -s "$f" ] || python3 benches/gen_concurrent.py --flows 100000 --payload --out "$f"
CONFIGS+=("flows=100000+payload|400000|$REPLAY $f")
for p in 2 10 100 1000; do
  f=$DIR/ppf$p.pcap
  [ -s "$f" ] || python3 benches/gen_concurrent.py --packets-per-flow $p --packets $TOTAL --out "$f"
  CONFIGS+=("ppf=$p|$TOTAL|$REPLAY $f")
done
CONFIGS+=("bench,threads=1|2000000|$REPLAY $BENCH --threads 1")
CONFIGS+=("bench,threads=2|2000000|$REPLAY $BENCH --threads 2")

# page cache: read every capture once before timing
cat "$DIR"/conc*.pcap "$DIR"/ppf*.pcap "$BENCH" >/dev/null
run_series "${CONFIGS[@]}"
