#!/usr/bin/env python3
"""Validate egresswatch's EVE records against Suricata's JSON schema.

Usage: eve_schema.py SCHEMA.json EGRESSWATCH CORPUS_DIR [replay options...]

SCHEMA.json is `etc/schema.json` of OISF/suricata (GPL-2.0, not shipped here).
Every capture under CORPUS_DIR is replayed; each record, with its `egresswatch`
object set aside, is validated, except event types the schema lacks (counted
apart). Needs python3-jsonschema. Exits 1 if any record is invalid or an alert
lacks alert.metadata.mitre_technique_id.
"""
import collections
import glob
import json
import subprocess
import sys

from jsonschema import Draft7Validator


def main():
    schema_path, binary, corpus, *extra = sys.argv[1:]
    schema = json.load(open(schema_path))
    known = set(schema["properties"])
    validator = Draft7Validator(schema)
    files = sorted(f for f in glob.glob(f"{corpus}/**/*", recursive=True)
                   if f.endswith((".pcap", ".pcapng")))
    ok, bad, skipped, errors = (collections.Counter() for _ in range(4))
    alerts = with_mitre = 0
    for f in files:
        out = subprocess.run([binary, "replay", "-q", "--eve", "-", f, *extra],
                             capture_output=True, check=False).stdout
        for line in out.splitlines():
            r = json.loads(line)
            r.pop("egresswatch", None)
            kind = r["event_type"]
            if kind == "alert":
                alerts += 1
                with_mitre += bool(r["alert"].get("metadata", {}).get("mitre_technique_id"))
            if kind not in known:
                skipped[kind] += 1
                continue
            problems = list(validator.iter_errors(r))
            (bad if problems else ok)[kind] += 1
            for e in problems[:3]:
                errors[(kind, "/".join(map(str, e.absolute_path)), e.message[:120])] += 1
    print(f"captures {len(files)}")
    print(f"valid {sum(ok.values())} {dict(ok)}")
    print(f"invalid {sum(bad.values())} {dict(bad)}")
    print(f"not in the schema (left out) {dict(skipped)}")
    print(f"alerts {alerts}, with mitre_technique_id {with_mitre}")
    for (kind, path, msg), n in errors.most_common(30):
        print(f"  {n} {kind} {path}: {msg}")
    sys.exit(1 if bad or with_mitre != alerts else 0)


if __name__ == "__main__":
    main()
