#!/usr/bin/env bash
# The whole test run (what CI runs): dependencies, then for each build (normal,
# ASan+UBSan, ThreadSanitizer) the build, the unit tests and the integration
# tests; the normal build's integration tests once more against 2 gateways x
# 2 replicas of every service ("scaled") and once more over the mutually
# authenticated internal plane ("tls", CHAT_TEST_TLS=1); and deploy/'s checks
# ("deploy": images, compose, Kubernetes); the libFuzzer targets for a bounded
# time each ("fuzz", fuzz/run.sh); the unit tests under valgrind memcheck
# ("valgrind"). Exits non-zero if anything failed.
#
#   tests/run.sh                      every build, every test once
#   tests/run.sh --repeat 10 --stress the integration suite 10 times per build
#                                     while a busy loop keeps one core busy
#   tests/run.sh --builds normal,tsan only those builds
#
# Env: CHAT_TEST_JOBS (ctest -j, default 2), CHAT_FUZZ_SECONDS (per fuzz
# target, default 60).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${CHAT_TEST_JOBS:-2}
REPEAT=1 STRESS=0 BUILDS=normal,scaled,tls,deploy,fuzz,asan,tsan,valgrind
STEPS='normal|scaled|tls|deploy|fuzz|asan|tsan|valgrind'
say() { printf '\n[tests/run.sh] %s\n' "$*" >&2; }
usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'TXT'
Options:
  --repeat N      run the integration suite N times in each build (default 1);
                  a tally of the runs is printed at the end
  --stress        keep one core busy (a busy-loop process, stopped by pid at
                  the end) while the integration suites run
  --builds LIST   comma-separated subset of normal,scaled,tls,deploy,fuzz,
                  asan,tsan,valgrind (default: all; scaled: the
                  normal build's integration suite again against 2 gateways x
                  2 replicas of every service; tls: again with every internal
                  socket over mutual TLS; deploy: the checks of deploy/,
                  ctest -L deploy, once; fuzz: fuzz/run.sh, once; valgrind:
                  the unit tests of a normal build run by valgrind memcheck)
  -h, --help      this text
TXT
}
while [[ $# -gt 0 ]]; do
    case $1 in
    --repeat)
        [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: --repeat needs a positive number" >&2; exit 2; }
        REPEAT=$2; shift 2 ;;
    --stress) STRESS=1; shift ;;
    --builds)
        [[ ${2:-} =~ ^($STEPS)(,($STEPS))*$ ]] ||
            { echo "tests/run.sh: --builds takes a list of ${STEPS//|/, }" >&2; exit 2; }
        BUILDS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "tests/run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# ---- dependencies ------------------------------------------------------------
BROWSER=0
[[ -f "$ROOT/tests/browser/run.sh" ]] && BROWSER=1
# The metrics tests run a real Prometheus and promtool (Debian: prometheus).
extra=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || extra+=(prometheus)
# deploy/'s checks list theirs in tests/deploy/*.deps (one package per line).
if [[ ,$BUILDS, == *,deploy,* ]]; then
    for f in "$ROOT"/tests/deploy/*.deps; do
        [[ -f $f ]] || continue
        while read -r p _; do
            [[ -z $p || $p == \#* ]] && continue
            # A tool already on the PATH (node and npm often come from elsewhere,
            # and Debian's packages would then conflict) is not asked for.
            cmd=$p; [[ $p == nodejs ]] && cmd=node
            command -v "$cmd" >/dev/null || extra+=("$p")
        done <"$f"
    done
fi
if [[ $BROWSER -eq 1 ]]; then
    # By command, not by package: a machine may have node/npm from elsewhere (and
    # Debian's npm package would then conflict with it).
    command -v chromium >/dev/null || extra+=(chromium)
    command -v node >/dev/null || extra+=(nodejs)
    command -v npm >/dev/null || extra+=(npm)
    "$ROOT/deploy/deps.sh" "${extra[@]}" || { say "dependency install failed"; exit 1; }
    if [[ -f "$ROOT/tests/browser/package-lock.json" ]]; then
        (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error) ||
            { say "npm ci in tests/browser failed"; exit 1; }
    fi
else
    "$ROOT/deploy/deps.sh" "${extra[@]}" || { say "dependency install failed"; exit 1; }
fi
if [[ ,$BUILDS, == *,deploy,* ]]; then
    for lock in "$ROOT"/tests/deploy/*/package-lock.json; do
        [[ -f $lock ]] || continue
        (cd "$(dirname "$lock")" && npm ci --no-audit --no-fund --loglevel=error) ||
            { say "npm ci in $(dirname "$lock") failed"; exit 1; }
    done
fi

# ---- builds and tests ----------------------------------------------------------
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Known leaks inside nng, narrowly: see the file.
export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0
# TSan checks our code only, not libc calls made inside uninstrumented
# libraries (nng's atomics are invisible to it): see tests/tsan.supp.
export TSAN_OPTIONS=suppressions=$ROOT/tests/tsan.supp:ignore_noninstrumented_modules=1:second_deadlock_stack=1
export CTEST_OUTPUT_ON_FAILURE=1

# ---- the busy core of --stress ---------------------------------------------------
BUSY_PID=""
stop_busy() {
    if [[ -n "$BUSY_PID" ]]; then
        kill "$BUSY_PID" 2>/dev/null && wait "$BUSY_PID" 2>/dev/null
        BUSY_PID=""
    fi
}
start_busy() {
    [[ $STRESS -eq 1 && -z "$BUSY_PID" ]] || return 0
    ( trap 'exit 0' TERM; while :; do :; done ) &
    BUSY_PID=$!
    say "--stress: busy loop running as pid $BUSY_PID"
}

# ---- scratch PostgreSQL + Redis for the unit tests that need real backends --
# (they read CHAT_TEST_PG_DSN / CHAT_TEST_REDIS_PORT and skip without them).
# Fresh for each build, on free ports, stopped by pid at the end. The
# integration tests start their own clusters and do not use these.
PG_BIN=${CHAT_PG_BIN:-/usr/lib/postgresql/15/bin}
BE_DIR="" BE_PG_DATA="" BE_REDIS_PID=""
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { /usr/bin/python3 -c "import sys; sys.path.insert(0, \"$ROOT/tests/integration\"); import cluster; print(cluster.free_port())"; }

stop_backends() {
    if [[ -n "$BE_PG_DATA" ]]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$BE_PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [[ -n "$BE_REDIS_PID" ]]; then
        kill "$BE_REDIS_PID" 2>/dev/null && wait "$BE_REDIS_PID" 2>/dev/null
    fi
    [[ -n "$BE_DIR" ]] && rm -rf "$BE_DIR"
    BE_DIR="" BE_PG_DATA="" BE_REDIS_PID=""
    unset CHAT_TEST_PG_DSN CHAT_TEST_REDIS_PORT
}
trap 'stop_backends; stop_busy' EXIT

start_backends() {
    BE_DIR=$(mktemp -d /tmp/chat-unit-backends.XXXXXX) && chmod 755 "$BE_DIR" || return 1
    mkdir -p "$BE_DIR/pg" && chmod 700 "$BE_DIR/pg"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$BE_DIR/pg"
    local pg_port redis_port i
    pg_port=$(free_port) && redis_port=$(free_port) || return 1
    BE_PG_DATA=$BE_DIR/pg/data
    as_postgres "$PG_BIN/initdb" -D "$BE_PG_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >/dev/null || return 1
    as_postgres "$PG_BIN/pg_ctl" -D "$BE_PG_DATA" -l "$BE_DIR/pg/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $BE_DIR/pg -c fsync=off" start >/dev/null || return 1
    psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE chat_unit" || return 1
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$BE_DIR" \
        >"$BE_DIR/redis.log" 2>&1 &
    BE_REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    export CHAT_TEST_PG_DSN="host=127.0.0.1 port=$pg_port dbname=chat_unit user=postgres"
    export CHAT_TEST_REDIS_PORT=$redis_port
}

declare -A RESULT TALLY
PASSED=0 FAILED=0
# Adds up ctest's "N% tests passed, F tests failed out of T" line of a log;
# returns 1 when the log has none (ctest did not even report).
count_results() {
    local line f t
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -1)
    if [[ -z $line ]]; then
        FAILED=$((FAILED + 1)) # count the run as failed
        return 1
    fi
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    t=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    PASSED=$((PASSED + t - f))
    FAILED=$((FAILED + f))
}
# The integration suite REPEAT times; every run's log is kept.
run_integration() {  # name build-dir
    local name=$1 dir=$2 i ok=1 good=0 failed_tests=""
    start_busy
    for ((i = 1; i <= REPEAT; i++)); do
        local log="$dir/ctest-integration.log"
        [[ $REPEAT -gt 1 ]] && log="$dir/ctest-integration.$i.log"
        say "$name integration tests$([[ $REPEAT -gt 1 ]] && echo " (run $i of $REPEAT)")"
        (cd "$dir" && ctest --output-on-failure -E '^(unit|lint|deploy)\.' -j"$JOBS" --timeout 600) 2>&1 | tee "$log"
        if [[ ${PIPESTATUS[0]} -eq 0 ]]; then
            good=$((good + 1))
        else
            ok=0
            failed_tests+=" $(grep -E '^[[:space:]]+[0-9]+ - ' "$log" | awk '{print $3}' | tr '\n' ' ')"
        fi
        count_results "$log"
    done
    stop_busy
    TALLY[$name]="$good of $REPEAT integration runs passed${failed_tests:+; failed:$failed_tests}"
    [[ $ok -eq 1 ]]
}
run_one() {  # name build-dir cmake-args...
    local name=$1 dir=$2 ok=1; shift 2
    say "$name build in $dir"
    if ! cmake -S "$ROOT" -B "$dir" "$@" || ! cmake --build "$dir" -j"$JOBS"; then
        RESULT[$name]="build FAILED"
        return 1
    fi
    start_backends || { say "could not start PostgreSQL/Redis for the unit tests"; stop_backends; }
    # Unit tests one at a time (several FLUSHDB the shared scratch Redis), then
    # everything else in parallel (each integration module has its own cluster).
    say "$name unit tests"
    (cd "$dir" && ctest --output-on-failure -R '^(unit|lint)\.' -j1 --timeout 600) 2>&1 | tee "$dir/ctest-unit.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || ok=0
    count_results "$dir/ctest-unit.log" || ok=0
    stop_backends
    run_integration "$name" "$dir" || ok=0
    if [[ $ok -eq 1 ]]; then
        RESULT[$name]="passed"
    else
        RESULT[$name]="tests FAILED"
        return 1
    fi
}

# The normal build again (a no-op when it is built): 0, or 1 with the step's
# RESULT set to "build FAILED".
normal_build() {  # step build-dir
    cmake -S "$ROOT" -B "$2" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_SANITIZE=OFF \
        -DCHAT_TSAN=OFF >/dev/null && cmake --build "$2" -j"$JOBS" >/dev/null && return 0
    RESULT[$1]="build FAILED"
    return 1
}

# The normal build's integration suite once more with VAR=VALUE... exported
# (cluster.py reads them), e.g. "scaled": every module's cluster raised to 2
# gateways and 2 replicas of every service (order, discovery and liveness
# must hold whatever the counts); "tls": every cluster's internal plane
# (and deploy/local/run.sh in it.local_runner) over mutual TLS with a CA of
# its own.
run_again() {  # step build-dir what VAR=VALUE...
    local step=$1 dir=$2 ok=1 kv; shift 2
    say "$step: the integration suite $1"; shift
    normal_build "$step" "$dir" || return 1
    for kv in "$@"; do export "${kv?}"; done
    run_integration "$step" "$dir" || ok=0
    for kv in "$@"; do unset "${kv%%=*}"; done
    RESULT[$step]=$([[ $ok -eq 1 ]] && echo passed || echo "tests FAILED")
    [[ $ok -eq 1 ]]
}

# deploy/'s checks (tests/deploy/: images, compose, Kubernetes), once.
run_deploy() {  # build-dir
    local dir=$1 log=$1/ctest-deploy.log
    say "deploy: the checks of deploy/ (ctest -L deploy)"
    normal_build deploy "$dir" || return 1
    (cd "$dir" && ctest --output-on-failure -L '^deploy$' -j1 --timeout 3600) 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    count_results "$log" || rc=1
    RESULT[deploy]=$([[ $rc -eq 0 ]] && echo passed || echo "tests FAILED")
    TALLY[deploy]="run once (not repeated): ${RESULT[deploy]}"
    [[ $rc -eq 0 ]]
}

# The libFuzzer targets (fuzz/run.sh: clang, its own build dir), once.
run_fuzz() {
    local log=$ROOT/build-fuzz/fuzz/ctest.log
    say "fuzz: every libFuzzer target for ${CHAT_FUZZ_SECONDS:-60} s (fuzz/run.sh)"
    "$ROOT/fuzz/run.sh" "${CHAT_FUZZ_SECONDS:-60}"
    local rc=$?
    count_results "$log" || rc=1
    RESULT[fuzz]=$([[ $rc -eq 0 ]] && echo passed || echo "tests FAILED")
    TALLY[fuzz]="run once (not repeated): ${RESULT[fuzz]}"
    [[ $rc -eq 0 ]]
}

# The unit tests of a normal build under valgrind memcheck: ctest runs every
# test executable through CMAKE_CROSSCOMPILING_EMULATOR (the Python
# integration tests are not executables of the build, so they are not).
run_valgrind() {  # build-dir
    local dir=$1 ok=1 log=$1/ctest-unit.log
    say "valgrind build in $dir"
    command -v valgrind >/dev/null || "$ROOT/deploy/deps.sh" valgrind || return 1
    if ! cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_SANITIZE=OFF \
        -DCHAT_TSAN=OFF "-DCMAKE_CROSSCOMPILING_EMULATOR=valgrind;--error-exitcode=99;--leak-check=full;--errors-for-leak-kinds=definite;--suppressions=$ROOT/tests/valgrind.supp;--quiet" >/dev/null ||
        ! cmake --build "$dir" -j"$JOBS" >/dev/null; then
        RESULT[valgrind]="build FAILED"
        return 1
    fi
    start_backends || { say "could not start PostgreSQL/Redis for the unit tests"; stop_backends; }
    say "valgrind unit tests"
    (cd "$dir" && ctest --output-on-failure -R '^unit\.' -j1 --timeout 1800) 2>&1 | tee "$log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || ok=0
    count_results "$log" || ok=0
    stop_backends
    RESULT[valgrind]=$([[ $ok -eq 1 ]] && echo passed || echo "tests FAILED")
    TALLY[valgrind]="run once (not repeated): ${RESULT[valgrind]}"
    [[ $ok -eq 1 ]]
}

status=0
summary=""
for b in ${BUILDS//,/ }; do
    case $b in
    normal) run_one normal "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_SANITIZE=OFF -DCHAT_TSAN=OFF || status=1 ;;
    scaled) run_again scaled "$ROOT/build" "against 2 gateways x 2 replicas" \
        CHAT_TEST_GATEWAYS=2 CHAT_TEST_REPLICAS=2 || status=1 ;;
    tls) run_again tls "$ROOT/build" "with every internal socket over mutual TLS" \
        CHAT_TEST_TLS=1 || status=1 ;;
    deploy) run_deploy "$ROOT/build" || status=1 ;;
    fuzz) run_fuzz || status=1 ;;
    valgrind) run_valgrind "$ROOT/build-valgrind" || status=1 ;;
    asan) run_one asan "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DCHAT_SANITIZE=ON -DCHAT_TSAN=OFF || status=1 ;;
    tsan) run_one tsan "$ROOT/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_SANITIZE=OFF -DCHAT_TSAN=ON || status=1 ;;
    esac
    summary+="$b: ${RESULT[$b]:-not run}; "
done

say "summary: ${summary%; }"
if [[ $REPEAT -gt 1 || $STRESS -eq 1 ]]; then
    for b in ${BUILDS//,/ }; do
        say "tally $b: ${TALLY[$b]:-not run}$([[ $STRESS -eq 1 ]] && echo ' (one core kept busy)')"
    done
fi
[[ $status -eq 0 || $FAILED -gt 0 ]] || FAILED=1 # a failed build counts too
echo "tests/run.sh: $PASSED passed, $FAILED failed"
exit $status
