#!/usr/bin/env bash
# deploy.compose_config: Debian's docker-compose 1.29 accepts
# deploy/compose/docker-compose.yml with the secrets of .env.example.
#
# Runs `docker-compose config -q` the way an operator starts (cp .env.example
# .env): in a copy of deploy/compose/ whose .env is .env.example, because both
# compose 1.29 and v2 refuse a missing env_file (the repository has no .env;
# it is git-ignored). No engine is needed or contacted: DOCKER_HOST and
# DOCKER_CONTEXT are unset, and `config` only reads files.
#   tests/deploy/compose/config.sh [COMPOSE_DIR]   (default: deploy/compose)
# Forms both 1.29 and v2 accept (checked here): the compose-spec file without
# a version key, profiles, depends_on conditions service_healthy and
# service_completed_successfully, deploy.replicas, ${VAR:?message}, x- anchors.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
SRC=${1:-$ROOT/deploy/compose}
command -v docker-compose >/dev/null ||
    { echo "config.sh: docker-compose not found (apt-get install docker-compose)" >&2; exit 1; }
docker-compose version --short 2>/dev/null | grep -q '^1\.29\.' ||
    echo "config.sh: note: docker-compose $(docker-compose version --short 2>/dev/null) is not 1.29" >&2

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/deploy"
cp -a "$SRC" "$TMP/deploy/compose"
rm -f "$TMP/deploy/compose/.env"
cp "$SRC/.env.example" "$TMP/deploy/compose/.env"

run() { env -u DOCKER_HOST -u DOCKER_CONTEXT -u COMPOSE_FILE -u COMPOSE_PROJECT_NAME docker-compose "$@"; }
cd "$TMP"
F=(-f deploy/compose/docker-compose.yml --env-file deploy/compose/.env)
if ! out=$(run "${F[@]}" config -q 2>&1); then
    echo "FAIL: docker-compose config -q rejects deploy/compose/docker-compose.yml:" >&2
    echo "$out" >&2
    exit 1
fi
[[ -z $out ]] || { echo "docker-compose config -q said:" >&2; echo "$out" >&2; }
# The services of the tools profile are there too; and a profile-less run
# (what `up` starts) still knows every service "up" needs.
services=$(run "${F[@]}" config --services 2>&1) || { echo "FAIL: config --services: $services" >&2; exit 1; }
for s in postgres redis certs svc-message svc-match svc-presence svc-gateway lb; do
    grep -qx "$s" <<<"$services" || { echo "FAIL: service $s missing from config --services" >&2; exit 1; }
done
volumes=$(run "${F[@]}" config --volumes 2>&1) || { echo "FAIL: config --volumes: $volumes" >&2; exit 1; }
for v in pg-data redis-data certs certs-ca; do
    grep -qx "$v" <<<"$volumes" || { echo "FAIL: volume $v missing from config --volumes" >&2; exit 1; }
done
# Without a secret the file must refuse to render (${POSTGRES_PASSWORD:?...}).
grep -v '^POSTGRES_PASSWORD=' "$SRC/.env.example" >deploy/compose/.env
if out=$(run "${F[@]}" config -q 2>&1); then
    echo "FAIL: config passes with POSTGRES_PASSWORD missing from .env" >&2
    exit 1
fi
grep -q POSTGRES_PASSWORD <<<"$out" ||
    { echo "FAIL: without POSTGRES_PASSWORD the error does not name it: $out" >&2; exit 1; }
echo "ok: docker-compose $(docker-compose version --short) accepts deploy/compose/docker-compose.yml" \
    "($(wc -l <<<"$services") services: $(tr '\n' ' ' <<<"$services"))"
