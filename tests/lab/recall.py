#!/usr/bin/env python3
"""Per-flow precision and recall of one detection on labelled captures.

    python3 tests/lab/recall.py [--bin target/debug/egresswatch] \
        --detection crypto-mining --label stratum_mining \
        CAPTURE LABELS.csv [CAPTURE LABELS.csv ...]

Replays each capture with the shipped rules, suppression turned off for the
detection (so every flow that holds it alerts), and matches the alerts'
5-tuples (either order) with the label CSV's flows (the corpus's columns:
proto, initiator, responder, label, ...). Prints one line per capture and
the total: positives, found, recall, alerts on other flows.
"""
import argparse, csv, json, os, shutil, subprocess, sys, tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def endpoint(text):
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "0"
    return host, int(port or 0)


def rules_without_suppression(detection, into):
    shutil.copytree(os.path.join(REPO, "rules"), into)
    path = os.path.join(into, "detections.toml")
    lines, section = [], None
    for line in open(path):
        if line.startswith("["):
            section = line.strip()
        if section == f"[detections.{detection}]" and line.startswith("suppress_seconds"):
            line = "suppress_seconds = 0\n"
        lines.append(line)
    open(path, "w").writelines(lines)


def alerted_tuples(binary, rules, capture, detection):
    with tempfile.NamedTemporaryFile(suffix=".eve") as eve:
        subprocess.run([binary, "replay", "-q", "--rules", rules, "--eve", eve.name, capture],
                       check=False, stdout=subprocess.DEVNULL)
        out = set()
        for line in open(eve.name):
            rec = json.loads(line)
            if rec.get("event_type") != "alert":
                continue
            if rec["egresswatch"]["detection"] != detection:
                continue
            a = (rec["src_ip"], rec.get("src_port", 0))
            b = (rec["dest_ip"], rec.get("dest_port", 0))
            proto = rec["proto"].lower()
            out.add((proto, a, b))
            out.add((proto, b, a))
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target/debug/egresswatch"))
    ap.add_argument("--detection", required=True)
    ap.add_argument("--label", required=True, help="label (or `also` entry) that is positive")
    ap.add_argument("pairs", nargs="+")
    args = ap.parse_args()
    if len(args.pairs) % 2:
        sys.exit("give CAPTURE LABELS pairs")
    tmp = tempfile.mkdtemp()
    rules = os.path.join(tmp, "rules")
    rules_without_suppression(args.detection, rules)
    tot_pos = tot_found = tot_other = 0
    for capture, labels in zip(args.pairs[::2], args.pairs[1::2]):
        alerted = alerted_tuples(args.bin, rules, capture, args.detection)
        pos = found = other = 0
        by_label = {}
        for row in csv.DictReader(open(labels)):
            key = (row["proto"], endpoint(row["initiator"]), endpoint(row["responder"]))
            positive = row["label"] == args.label or args.label in row["also"].split(";")
            hit = key in alerted
            pos += positive
            found += positive and hit
            other += hit and not positive
            if hit and not positive:
                by_label[row["label"]] = by_label.get(row["label"], 0) + 1
        tot_pos, tot_found, tot_other = tot_pos + pos, tot_found + found, tot_other + other
        print(f"{os.path.basename(capture)}: positives {pos} found {found} "
              f"recall {found / pos if pos else 1:.3f} alerts-on-other-flows {other} {by_label or ''}")
    print(f"total: positives {tot_pos} found {tot_found} "
          f"recall {tot_found / tot_pos if tot_pos else 1:.3f} alerts-on-other-flows {tot_other}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
