# Sourced by benches/curves.sh and benches/peers.sh (run from the repository root):
# their shared settings, and the timed series both run.
#
# Environment: BIN (default target/release/egresswatch, or $CARGO_TARGET_DIR/release/
# egresswatch), RUNS (default $DEFAULT_RUNS), BENCH (the 2 M-packet capture of
# ../shared/bench/gen_pcap.py, default /tmp/ewin_bench.pcap; made if missing, ~70 s,
# 1.2 GB), GEN_BENCH (../shared/bench/gen_pcap.py).
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/egresswatch}
RUNS=${RUNS:-$DEFAULT_RUNS}
BENCH=${BENCH:-/tmp/ewin_bench.pcap}
GEN_BENCH=${GEN_BENCH:-../shared/bench/gen_pcap.py}
mkdir -p "$DIR"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 1; }
[ -s "$BENCH" ] || python3 "$GEN_BENCH" --packets 2000000 --out "$BENCH"

# run_series CONFIG...: each CONFIG is "label|packets|command"; RUNS rounds, every
# configuration once a round (a noisy stretch of the machine spreads over all of them),
# each run timed by /usr/bin/time into $DIR/runs.tsv, then min / median per label.
run_series() {
  local out=$DIR/runs.tsv r c label pk cmd m e u s
  {
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'label\tpackets\trun\tmaxrss_kib\twall_s\tuser_s\tsys_s\n'
  } >"$out"
  for r in $(seq 1 "$RUNS"); do
    for c in "$@"; do
      IFS='|' read -r label pk cmd <<<"$c"
      # shellcheck disable=SC2086
      /usr/bin/time -o "$DIR/time.txt" -f "%M %e %U %S" $cmd
      read -r m e u s <"$DIR/time.txt"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$pk" "$r" "$m" "$e" "$u" "$s" | tee -a "$out"
    done
  done
  echo "# end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
  python3 benches/summarize.py "$out"
}
