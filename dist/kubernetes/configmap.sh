#!/usr/bin/env bash
# Regenerates rules-configmap.yaml from rules/*.toml (tests/packaging.rs
# checks that the two agree).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=dist/kubernetes/rules-configmap.yaml
{
  cat <<'HEAD'
# The rules egresswatch ships (rules/*.toml), as the ConfigMap the DaemonSet
# mounts at /etc/egresswatch/rules. Edit them for the cluster; a change is
# picked up at the next rollout (`kubectl -n egresswatch rollout restart
# daemonset/egresswatch`). tests/packaging.rs checks that these equal
# rules/*.toml and pass `egresswatch check-rules`; dist/kubernetes/configmap.sh
# regenerates this file from them.
apiVersion: v1
kind: ConfigMap
metadata:
  name: egresswatch-rules
  namespace: egresswatch
data:
HEAD
  for f in rules/*.toml; do
    echo "  $(basename "$f"): |"
    sed -e 's/^\(.\)/    \1/' "$f"
  done
} >"$out"
