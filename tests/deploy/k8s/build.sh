#!/usr/bin/env bash
# deploy.k8s_build: kubectl kustomize of deploy/k8s/base and of every overlay
# succeeds (offline), and each renders objects.
set -euo pipefail
CHECK=deploy.k8s_build
source "$(dirname "$0")/lib.sh"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render "$out"
for f in "$out"/*.yaml; do
    n=$(grep -c '^kind: ' "$f" || true)
    [[ $n -gt 0 ]] || fail "$(basename "$f" .yaml) renders no object"
    say "$(basename "$f" .yaml): $n objects ($(grep '^kind: ' "$f" | sort | uniq -c |
        awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $3}'))"
done
say "ok: $(k8s_targets | tr '\n' ' ')"
