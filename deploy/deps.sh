#!/usr/bin/env bash
# Installs the Debian packages needed to build, run and test the chat backend.
# Idempotent: asks apt only when something is missing, and says nothing then.
# Extra package names may be passed as arguments (tests/run.sh adds the
# browser-test packages this way).
set -euo pipefail

PKGS=(build-essential cmake pkg-config libprotobuf-c-dev protobuf-c-compiler
      libnng-dev libwebsockets-dev libwebsockets-evlib-ev libev-dev libpq-dev libhiredis-dev libcjson-dev
      libcmocka-dev libssl-dev uuid-dev uthash-dev postgresql redis-server
      python3 python3-websockets clang-format "$@")

missing=()
for p in "${PKGS[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)
echo "deps: installing ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
