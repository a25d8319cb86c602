#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 14, ASan+UBSan) in build-fuzz/ and runs
# each for SECONDS (default 60) through ctest -L fuzz, then prints per target
# the executions, the seconds and the corpus size. Exits non-zero when a
# fuzzer found a crash, a sanitizer report, a leak or a timeout (the input is
# then in build-fuzz/fuzz/logs/artifacts-TARGET/; README.md says what next).
#   fuzz/run.sh [SECONDS]
# Environment: CHAT_FUZZ_BUILD (default ROOT/build-fuzz), CHAT_FUZZ_JOBS (2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-60}
BUILD=${CHAT_FUZZ_BUILD:-$ROOT/build-fuzz}
JOBS=${CHAT_FUZZ_JOBS:-2}
[[ "$SECONDS_EACH" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }

# The project's own packages, then the fuzzing toolchain (asked for only
# when missing, like deploy/deps.sh).
"$ROOT/deploy/deps.sh"
missing=()
for p in clang-14 libclang-rt-14-dev; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    SUDO=()
    [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
    echo "fuzz: installing ${missing[*]}" >&2
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

CC=clang-14 cmake -S "$ROOT" -B "$BUILD" -DCHAT_FUZZ=ON -DCHAT_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_FUZZ_SECONDS="$SECONDS_EACH" >/dev/null
# Only the fuzzers (and what they link), not the services.
cmake --build "$BUILD" --target fuzzers -j "$JOBS"

log="$BUILD/fuzz/ctest.log"
rc=0
(cd "$BUILD" && ctest -L fuzz -V) 2>&1 | tee "$log" || rc=$? # pipefail: ctest's status

# The lines run_fuzzer.cmake prints: "fuzz.X: Done N runs in S second(s),
# corpus C files (K seeds), log ...".
echo
printf '%-8s %14s %8s %8s\n' target executions seconds corpus
sed -nE 's/^([0-9]+: )?fuzz\.([a-z_]+): Done ([0-9?]+) runs in ([0-9?]+) second\(s\), corpus ([0-9]+) files.*/\2 \3 \4 \5/p' "$log" |
    while read -r t runs secs corpus; do
        printf '%-8s %14s %8s %8s\n' "$t" "$runs" "$secs" "$corpus"
    done
exit "$rc"
