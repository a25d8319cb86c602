#!/usr/bin/env bash
# deploy.k8s_schema: every object of base and of every overlay is valid
# against the Kubernetes 1.32 API models (schema.mjs), and the checker
# rejects each broken input in fixtures/schema/ with the error its first
# line names, and with that error only.
set -euo pipefail
CHECK=deploy.k8s_schema
source "$(dirname "$0")/lib.sh"
need_node_modules
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render "$out"
node "$K8S_TESTS/schema.mjs" "$out"/*.yaml || fail "rendered manifests are not valid (above)"

# The checker must be able to fail: one known defect per fixture.
n=0
for f in "$K8S_TESTS"/fixtures/schema/*.yaml; do
    expect=$(sed -n '1s/^# deploy.k8s_schema must reject this: //p' "$f")
    [[ -n $expect ]] || fail "$f: first line must say what it must be rejected for"
    rc=0
    node "$K8S_TESTS/schema.mjs" "$f" >/dev/null 2>"$out/err" || rc=$?
    [[ $rc -eq 1 ]] || fail "$(basename "$f"): expected exit 1 (rejected), got $rc: $(cat "$out/err")"
    grep -qF -- "$expect" "$out/err" ||
        fail "$(basename "$f"): rejected, but not for '$expect': $(cat "$out/err")"
    [[ $(wc -l <"$out/err") -eq 1 ]] || fail "$(basename "$f"): more than the one error: $(cat "$out/err")"
    n=$((n + 1))
done
[[ $n -gt 0 ]] || fail "no fixtures in fixtures/schema"
say "ok: every rendered object valid; $n broken fixtures rejected for the right reason"
