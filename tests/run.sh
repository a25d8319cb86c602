#!/usr/bin/env bash
# The whole test run (what CI runs): dependencies, a normal build and an
# ASan+UBSan build, and ctest (unit + integration) in both. Exits non-zero if
# anything failed. Usage: tests/run.sh   (env: CHAT_TEST_JOBS, default 2)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${CHAT_TEST_JOBS:-2}
say() { printf '\n[tests/run.sh] %s\n' "$*" >&2; }

# ---- dependencies ------------------------------------------------------------
BROWSER=0
[[ -f "$ROOT/tests/browser/run.sh" ]] && BROWSER=1
if [[ $BROWSER -eq 1 ]]; then
    # By command, not by package: a machine may have node/npm from elsewhere (and
    # Debian's npm package would then conflict with it).
    extra=()
    command -v chromium >/dev/null || extra+=(chromium)
    command -v node >/dev/null || extra+=(nodejs)
    command -v npm >/dev/null || extra+=(npm)
    "$ROOT/deploy/deps.sh" "${extra[@]}" || { say "dependency install failed"; exit 1; }
    if [[ -f "$ROOT/tests/browser/package-lock.json" ]]; then
        (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error) ||
            { say "npm ci in tests/browser failed"; exit 1; }
    fi
else
    "$ROOT/deploy/deps.sh" || { say "dependency install failed"; exit 1; }
fi

# ---- builds and tests ----------------------------------------------------------
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export CTEST_OUTPUT_ON_FAILURE=1

declare -A RESULT
run_one() {  # name build-dir cmake-args...
    local name=$1 dir=$2; shift 2
    say "$name build in $dir"
    if ! cmake -S "$ROOT" -B "$dir" "$@" || ! cmake --build "$dir" -j"$JOBS"; then
        RESULT[$name]="build FAILED"
        return 1
    fi
    say "$name tests"
    if (cd "$dir" && ctest --output-on-failure -j"$JOBS" --timeout 600); then
        RESULT[$name]="passed"
    else
        RESULT[$name]="tests FAILED"
        return 1
    fi
}

status=0
run_one normal "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_SANITIZE=OFF || status=1
run_one asan "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DCHAT_SANITIZE=ON || status=1

say "summary: normal build: ${RESULT[normal]:-not run}; ASan+UBSan build: ${RESULT[asan]:-not run}"
exit $status
