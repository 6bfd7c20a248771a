#!/usr/bin/env python3
"""Validate egresswatch's EVE records against Suricata's JSON schema.

Usage: eve_schema.py SCHEMA.json EGRESSWATCH CORPUS_DIR [replay options...]

SCHEMA.json is `etc/schema.json` of OISF/suricata (GPL-2.0, not shipped here).
Every capture under CORPUS_DIR is replayed; each record, with its `egresswatch`
object set aside, is validated, except event types the schema lacks (counted
apart). egresswatch's own `incident` records are checked against their own
shape (INCIDENT_KEYS, docs/EVE.md), and every alert about an internal host
must carry egresswatch.incident_id. Needs python3-jsonschema. Exits 1 if any
record is invalid or an alert lacks alert.metadata.mitre_technique_id.
"""
import collections
import glob
import json
import subprocess
import sys

from jsonschema import Draft7Validator

# The keys of an `incident` record's object; the first line must be there.
INCIDENT_REQUIRED = {"id", "host", "first_seen", "last_seen", "tactics", "techniques",
                     "signature_ids", "alerts", "flows", "score", "stage"}
INCIDENT_KEYS = INCIDENT_REQUIRED | {"zone", "workload", "tactic_names", "detections",
                                     "severity", "change"}


def incident_problems(r):
    """What is wrong with an `incident` record (empty: nothing)."""
    body = r.get("incident", {})
    keys = set(body)
    problems = [f"missing {k}" for k in sorted(INCIDENT_REQUIRED - keys)]
    problems += [f"unknown {k}" for k in sorted(keys - INCIDENT_KEYS)]
    if not str(body.get("id", "")).startswith("ewi-"):
        problems.append("id does not start with ewi-")
    return problems


def main():
    schema_path, binary, corpus, *extra = sys.argv[1:]
    schema = json.load(open(schema_path))
    known = set(schema["properties"])
    validator = Draft7Validator(schema)
    files = sorted(f for f in glob.glob(f"{corpus}/**/*", recursive=True)
                   if f.endswith((".pcap", ".pcapng")))
    ok, bad, skipped, errors = (collections.Counter() for _ in range(4))
    alerts = with_mitre = with_incident = with_incident_expected = 0
    for f in files:
        out = subprocess.run([binary, "replay", "-q", "--eve", "-", f, *extra],
                             capture_output=True, check=False).stdout
        for line in out.splitlines():
            r = json.loads(line)
            own = r.pop("egresswatch", None) or {}
            kind = r["event_type"]
            if kind == "alert":
                alerts += 1
                with_mitre += bool(r["alert"].get("metadata", {}).get("mitre_technique_id"))
                if own.get("direction") != "external" and own.get("detection") != "flow-table-pressure":
                    with_incident_expected += 1
                    with_incident += bool(own.get("incident_id"))
            if kind == "incident":
                problems = incident_problems(r)
                (bad if problems else ok)[kind] += 1
                for p in problems[:3]:
                    errors[(kind, "incident", p)] += 1
                continue
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
    print(f"alerts about an internal host {with_incident_expected}, with incident_id {with_incident}")
    for (kind, path, msg), n in errors.most_common(30):
        print(f"  {n} {kind} {path}: {msg}")
    sys.exit(1 if bad or with_mitre != alerts or with_incident != with_incident_expected else 0)


if __name__ == "__main__":
    main()
