#!/usr/bin/env python3
"""Replays captures with two egresswatch builds and prints where their
alerts (count per detection) or flow app_proto counts differ, and the
flows carried through proxies (egresswatch.tunnel).

Usage: compare_builds.py OLD_BINARY NEW_BINARY CAPTURE...
"""
import json, subprocess, sys, collections, os
def run(bin, pcap):
    out = subprocess.run([bin, "replay", "-q", "--eve", "-", pcap], capture_output=True, text=True, timeout=900)
    alerts = collections.Counter(); tun = 0; apps = collections.Counter()
    for l in out.stdout.splitlines():
        try: r = json.loads(l)
        except Exception: continue
        if r.get("event_type") == "alert": alerts[r["egresswatch"]["detection"]] += 1
        if r.get("event_type") == "flow":
            apps[r.get("app_proto")] += 1
            if "tunnel" in r.get("egresswatch", {}): tun += 1
    return alerts, tun, apps
if len(sys.argv) < 4:
    sys.exit(__doc__)
old, new, files = sys.argv[1], sys.argv[2], sys.argv[3:]
diff = 0
tot = collections.Counter(); tott = 0
for f in files:
    a0, _, p0 = run(old, f)
    a1, t1, p1 = run(new, f)
    tot.update(a1); tott += t1
    if a0 != a1 or p0 != p1 or t1:
        diff += 1
        print(f, "alerts", dict(a0), "->", dict(a1), "apps", dict(p0 - p1), "->", dict(p1 - p0), "tunnels", t1)
print(f"{len(files)} captures, {diff} differ, tunnel flows {tott}, alerts now {sum(tot.values())}")
