#!/usr/bin/env python3
"""Min / median per configuration of a runs.tsv written by benches/curves.sh or
benches/peers.sh (label, packets, run, maxrss_kib, wall_s, user_s, sys_s)."""
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or line.startswith("label"):
        continue
    label, pk, _, m, e, u, s = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((int(pk), int(m) / 1024, float(e), float(u) + float(s)))
print("\nconfiguration            peak RSS MiB min/med   wall s min/med   CPU s min/med   "
      "M packets/s (wall) max/med   M packets per CPU s max/med")
med = statistics.median
for label, rs in rows.items():
    pk = rs[0][0]
    rss = [r[1] for r in rs]
    wall = [r[2] for r in rs]
    cpu = [r[3] for r in rs]
    print(f"{label:24} {min(rss):7.0f} / {med(rss):4.0f}        {min(wall):6.2f} / {med(wall):5.2f}"
          f"   {min(cpu):6.2f} / {med(cpu):5.2f}   {pk / min(wall) / 1e6:6.2f} / {pk / med(wall) / 1e6:5.2f}"
          f"              {pk / min(cpu) / 1e6:6.2f} / {pk / med(cpu) / 1e6:5.2f}")
