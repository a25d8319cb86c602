#!/usr/bin/env bash
# Fails (listing the files) when a C source of the project does not follow
# .clang-format. Registered with ctest as lint.format. Usage:
#   tests/check_format.sh [CLANG_FORMAT]     (default: clang-format)
# To fix: clang-format -i FILE...
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CF=${1:-clang-format}
cd "$ROOT" || exit 2
# Our sources only: not the builds, not node_modules, not generated code.
mapfile -t files < <(find lib proto svc-* chatctl fuzz bench tests -name node_modules -prune -o \
                          \( -name '*.c' -o -name '*.h' \) -print | grep -v '\.pb-c\.' | sort)
[[ ${#files[@]} -gt 0 ]] || { echo "check_format: no sources found under $ROOT" >&2; exit 2; }
bad=()
for f in "${files[@]}"; do
    "$CF" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
    echo "check_format: ${#bad[@]} of ${#files[@]} files do not follow .clang-format:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    echo "fix with: clang-format -i ${bad[*]}" >&2
    exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
