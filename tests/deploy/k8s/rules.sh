#!/usr/bin/env bash
# deploy.k8s_rules: the project's rules (rules.mjs) hold for the base and
# every overlay, and each deliberate defect of rules.mjs's MUTATIONS is
# caught by the rule it breaks (so every rule can fail).
set -euo pipefail
CHECK=deploy.k8s_rules
source "$(dirname "$0")/lib.sh"
need_node_modules
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render "$out"
rm -f "$out"/*.err
node "$K8S_TESTS/rules.mjs" --self-test "$out" || fail "rules broken (FAIL lines above)"
say "ok"
