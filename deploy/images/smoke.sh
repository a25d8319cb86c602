#!/usr/bin/env bash
# Smoke test of the built chat image (deploy/images/build.sh first). See --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/deploy/images
# shellcheck source=deploy/images/lib.sh
. "$HERE/lib.sh"

usage() {
    cat <<EOF
Usage: deploy/images/smoke.sh [--plain] [--writable] [--image IMAGE] [--keep] [--help]

With the image built (deploy/images/build.sh), runs the whole backend from it
on this machine and checks it:
  - the image: its user is 10001 (chat), no compiler (gcc, cc, ...) and no
    compiler package, every program's shared libraries found (ldd), every
    program's --help works, the web client in CHAT_WEB_DIR; its size printed;
  - PostgreSQL and Redis as host processes on free loopback ports;
  - certificates made by \`podman run IMAGE chat-gen-certs /certs\` into a host
    dir mounted into every container (read-only);
  - svc-message, svc-match, svc-presence and svc-gateway, each in its own
    container (--network host, free ports, 127.0.0.1 only, --read-only with a
    tmpfs /tmp and nothing else writable, all capabilities dropped,
    no-new-privileges), the internal plane on tls+tcp:// (mutual TLS);
  - /healthz and /readyz of each answer 200 through chat-healthcheck run in
    its container (and chat-healthcheck fails on a 404 and on a closed port);
    each runs as uid 10001 and wrote nothing to its filesystem (podman diff);
  - from this machine: the web client over HTTP, and two WebSocket users
    matched in a random chat exchanging messages checked by their exact text
    (deploy/images/smoke_client.py);
  - \`chatctl status --json\` in a container of its own (chatctl's certificate)
    lists gateway, message, match and presence, each reachable and ready, with
    the version the image was built as.
Then it stops and removes everything it started (containers by id, the host
processes by pid). Exit status 0 when every check passed.

Flags:
  --plain         the internal plane on plain tcp:// (no certificates)
  --writable      no --read-only (the filesystem check still runs)
  --image IMAGE   [localhost/chat:0.9.0]
  --keep          keep the scratch dir (logs, certificates, database)
  --help          this text
Environment: CHAT_SMOKE_READY_TIMEOUT_S [90], CHAT_PG_BIN [$PG_BIN].
EOF
}

TLS=1 READ_ONLY=1 IMAGE=localhost/chat:0.9.0 KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --plain) TLS=0 ;;
    --writable) READ_ONLY=0 ;;
    --image) [[ $# -ge 2 ]] || { echo "smoke.sh: --image needs a value" >&2; exit 2; }
        IMAGE=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "smoke.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
READY_TIMEOUT_S=${CHAT_SMOKE_READY_TIMEOUT_S:-90}

T0=$SECONDS
say() { printf '[images/smoke] %s\n' "$*" >&2; }
FAILED=0
die() { say "FAILED: $*"; FAILED=1; exit 1; }
ok() { say "ok: $*"; }

[[ $(id -u) -eq 0 ]] || die "run as root (podman's storage and PostgreSQL's user need it)"
command -v podman >/dev/null || die "podman is not installed (deploy/images/build.sh installs it)"
# shellcheck source=deploy/images/podman-env.sh
. "$HERE/podman-env.sh"
podman image exists "$IMAGE" || die "no image $IMAGE: run deploy/images/build.sh first"

# ---- scratch dir, cleanup ---------------------------------------------------------
WORK=$(mktemp -d /var/tmp/chat-smoke.XXXXXX)
chmod 755 "$WORK"
RUN_ID=smoke$$
CIDS=() CNAMES=()

cleanup() {
    local rc=$? i
    trap '' INT TERM
    [[ $rc -eq 0 ]] || FAILED=1
    for ((i = ${#CIDS[@]} - 1; i >= 0; i--)); do
        if [[ $FAILED -eq 1 ]]; then
            say "--- last lines of ${CNAMES[$i]} (${CIDS[$i]:0:12}):"
            podman logs --tail 25 "${CIDS[$i]}" 2>&1 | sed 's/^/    /' >&2 || true
        fi
        podman logs "${CIDS[$i]}" >"$WORK/${CNAMES[$i]}.log" 2>&1 || true
        podman rm -f -t 10 "${CIDS[$i]}" >/dev/null 2>&1 || say "could not remove ${CIDS[$i]}"
    done
    stop_host_deps
    if [[ $KEEP -eq 1 || $FAILED -eq 1 ]]; then
        say "scratch dir kept: $WORK (container logs, PostgreSQL log, certificates)"
    else
        rm -rf "$WORK"
    fi
    if [[ $FAILED -eq 0 ]]; then
        say "PASSED in $((SECONDS - T0)) s"
    else
        say "FAILED after $((SECONDS - T0)) s"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PG_PORT REDIS_PORT GW_PORT GW_ADMIN \
    MSG_REP MSG_PUB MSG_ADMIN MSG_HTTP MATCH_REP MATCH_PUB MATCH_ADMIN MATCH_HTTP \
    PRES_REP PRES_PUB PRES_ADMIN PRES_HTTP <<<"$(free_ports 16)"
[[ -n ${PRES_HTTP:-} ]] || die "could not find free ports"

# ---- 1. the image itself -------------------------------------------------------------
# One-shot containers: bounded (a program that does not exit is killed with
# its container: podman passes the signal on, and --rm removes it).
podman_run() { timeout -k 10 120 podman run --rm --network none "$@"; }
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "image $IMAGE: $(numfmt --to=iec "$size") ($size bytes), id $(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12)"
REV=$(podman image inspect --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$IMAGE")
[[ $REV == "<no value>" ]] && REV=""
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[[ $user == 10001 || $user == 10001:10001 ]] || die "the image's user is '$user', not 10001"
got=$(podman_run "$IMAGE" id)
[[ $got == "uid=10001(chat) gid=10001(chat) groups=10001(chat)" ]] || die "id in the image: $got"
ok "image user: $got"
# No compiler: neither the commands nor the packages.
found=$(podman_run "$IMAGE" bash -c 'for c in gcc cc c89 c99 g++ c++ cpp clang tcc as ld make; do
    command -v "$c"; done; dpkg-query -W -f "\${Package} \${db:Status-Abbrev}\n" |
    grep -E "^(gcc(-[0-9]+)?|g\+\+(-[0-9]+)?|cpp(-[0-9]+)?|binutils.*|libc6-dev|libgcc-[0-9]+-dev|clang.*|tcc|make|build-essential) ii" || true' || true)
[[ -z $found ]] || die "the runtime image has a compiler: $(echo $found)"
ok "no compiler (gcc, cc, cpp, clang, as, ld, make) and no compiler package"
missing=$(podman_run "$IMAGE" bash -c 'for p in svc-gateway svc-message svc-match svc-presence chatctl chat-bench; do
    [[ -x /usr/local/bin/$p ]] || echo "$p: missing"; ldd "/usr/local/bin/$p" | grep -i "not found" | sed "s|^|$p: |"
    "$p" --help >/dev/null 2>&1 || echo "$p --help failed"; done
    for p in chat-gen-certs chat-healthcheck openssl; do command -v "$p" >/dev/null || echo "$p: missing"; done
    [[ $CHAT_WEB_DIR == /usr/share/chat/web && -s $CHAT_WEB_DIR/index.html ]] || echo "CHAT_WEB_DIR=$CHAT_WEB_DIR: no index.html"' 2>&1 || true)
[[ -z $missing ]] || die "in the image: $missing"
ok "every program in /usr/local/bin with its libraries, --help works; web client in /usr/share/chat/web"

# ---- 2. PostgreSQL and Redis on this machine ------------------------------------------
start_postgres "$PG_PORT"
start_redis "$REDIS_PORT"
ok "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"

# ---- 3. secrets and certificates ----------------------------------------------------------
# Owned by the image's user, readable by it only, mounted read-only.
SECRETS=$WORK/secrets CERTS=$WORK/certs
install -d -m 700 -o 10001 -g 10001 "$SECRETS" "$CERTS"
(umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRETS/admin_token")
chown 10001:10001 "$SECRETS/admin_token"
chmod 400 "$SECRETS/admin_token"
SESSION_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
RO=()
[[ $READ_ONLY -eq 1 ]] && RO=(--read-only --read-only-tmpfs=false)
SCHEME=tcp://
if [[ $TLS -eq 1 ]]; then
    SCHEME=tls+tcp://
    podman_run "${RO[@]}" --tmpfs /tmp:rw,size=16m,mode=1777 \
        -v "$CERTS:/certs" "$IMAGE" chat-gen-certs /certs ||
        die "chat-gen-certs in the image failed"
    for k in gateway message match presence chatctl; do
        [[ -s $CERTS/$k.crt && -s $CERTS/$k.key ]] || die "chat-gen-certs made no $k.crt/$k.key"
        [[ $(stat -c '%u %a' "$CERTS/$k.key") == "10001 600" ]] ||
            die "$k.key is $(stat -c '%u %a' "$CERTS/$k.key"), not 10001 600"
    done
    openssl verify -CAfile "$CERTS/ca.crt" "$CERTS/gateway.crt" >/dev/null || die "gateway.crt does not verify"
    ok "certificates made in the image by chat-gen-certs (keys 0600, owner 10001)"
fi

# ---- 4. the services, one container each --------------------------------------------------
COMMON=(--network host --tmpfs /tmp:rw,size=16m,mode=1777 "${RO[@]}"
    --cap-drop ALL --security-opt no-new-privileges
    -v "$SECRETS:/etc/chat/secrets:ro" -e CHAT_ADMIN_TOKEN_FILE=/etc/chat/secrets/admin_token
    --label "chat.smoke=$RUN_ID")
tls_env() {  # kind -> the -e flags of its certificate (none with --plain)
    [[ $TLS -eq 1 ]] || return 0
    printf '%s\n' -v "$CERTS:/etc/chat/tls:ro" -e CHAT_TLS_CA=/etc/chat/tls/ca.crt \
        -e "CHAT_TLS_CERT=/etc/chat/tls/$1.crt" -e "CHAT_TLS_KEY=/etc/chat/tls/$1.key"
}
start() {  # name kind program env...
    local name=$1 kind=$2 prog=$3 cid
    shift 3
    local env=() tls=()
    for e in "$@"; do env+=(-e "$e"); done
    mapfile -t tls < <(tls_env "$kind")
    cid=$(podman run -d --name "chat-$RUN_ID-$name" "${COMMON[@]}" "${tls[@]}" "${env[@]}" \
        "$IMAGE" "$prog") || die "podman run $name failed"
    CIDS+=("$cid") CNAMES+=("$name")
    say "started $name: container ${cid:0:12}"
}
L=127.0.0.1
MSG_ADDRS=$SCHEME$L:$MSG_REP MATCH_ADDRS=$SCHEME$L:$MATCH_REP PRES_ADDRS=$SCHEME$L:$PRES_REP
REDIS=(CHAT_REDIS_HOST=$L "CHAT_REDIS_PORT=$REDIS_PORT")
start message message svc-message CHAT_MESSAGE_ID=smoke-message \
    "CHAT_MESSAGE_LISTEN=$MSG_ADDRS" "CHAT_MESSAGE_PUB_LISTEN=$SCHEME$L:$MSG_PUB" \
    "CHAT_MESSAGE_ADMIN_LISTEN=$SCHEME$L:$MSG_ADMIN" "CHAT_MESSAGE_HTTP_LISTEN=$L:$MSG_HTTP" \
    "CHAT_PG_DSN=host=$L port=$PG_PORT dbname=chat user=chat" "${REDIS[@]}"
start match match svc-match CHAT_MATCH_ID=smoke-match \
    "CHAT_MATCH_LISTEN=$MATCH_ADDRS" "CHAT_MATCH_PUB_LISTEN=$SCHEME$L:$MATCH_PUB" \
    "CHAT_MATCH_ADMIN_LISTEN=$SCHEME$L:$MATCH_ADMIN" "CHAT_MATCH_HTTP_LISTEN=$L:$MATCH_HTTP" \
    "CHAT_MESSAGE_ADDRS=$MSG_ADDRS" "${REDIS[@]}"
start presence presence svc-presence CHAT_PRESENCE_ID=smoke-presence \
    "CHAT_PRESENCE_LISTEN=$PRES_ADDRS" "CHAT_PRESENCE_PUB_LISTEN=$SCHEME$L:$PRES_PUB" \
    "CHAT_PRESENCE_ADMIN_LISTEN=$SCHEME$L:$PRES_ADMIN" "CHAT_PRESENCE_HTTP_LISTEN=$L:$PRES_HTTP" \
    "CHAT_MESSAGE_ADDRS=$MSG_ADDRS" "CHAT_MATCH_ADDRS=$MATCH_ADDRS" "${REDIS[@]}"
start gateway gateway svc-gateway CHAT_GATEWAY_ID=smoke-gw \
    "CHAT_GATEWAY_PORT=$GW_PORT" "CHAT_GATEWAY_BIND=$L" "CHAT_GATEWAY_ADMIN_LISTEN=$SCHEME$L:$GW_ADMIN" \
    "CHAT_SESSION_SECRET=$SESSION_SECRET" "CHAT_MESSAGE_ADDRS=$MSG_ADDRS" \
    "CHAT_MATCH_ADDRS=$MATCH_ADDRS" "CHAT_PRESENCE_ADDRS=$PRES_ADDRS" \
    "CHAT_EVENTS_ADDRS=$SCHEME$L:$MSG_PUB,$SCHEME$L:$MATCH_PUB,$SCHEME$L:$PRES_PUB"
HTTP_PORTS=("$MSG_HTTP" "$MATCH_HTTP" "$PRES_HTTP" "$GW_PORT")

# Readiness: each container's own chat-healthcheck (lib.sh's wait_healthy).
t_start=$SECONDS
for i in "${!CIDS[@]}"; do
    wait_healthy "${CIDS[$i]}" "${CNAMES[$i]}" "http://127.0.0.1:${HTTP_PORTS[$i]}/readyz" \
        $((READY_TIMEOUT_S - (SECONDS - t_start)))
done
ok "every service ready ($((SECONDS - t_start)) s after the start)"
for i in "${!CIDS[@]}"; do
    for path in /healthz /readyz; do
        pexec "${CIDS[$i]}" chat-healthcheck "http://127.0.0.1:${HTTP_PORTS[$i]}$path" ||
            die "${CNAMES[$i]}: $path not 200"
    done
    got=$(pexec "${CIDS[$i]}" id -u)
    [[ $got == 10001 ]] || die "${CNAMES[$i]} runs as uid $got, not 10001"
    ro=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "${CIDS[$i]}")
    [[ $READ_ONLY -eq 0 || $ro == true ]] || die "${CNAMES[$i]} does not have a read-only root"
done
ok "/healthz and /readyz 200 through chat-healthcheck in all four; all run as uid 10001$([[ $READ_ONLY -eq 1 ]] && echo ', read-only root, /tmp tmpfs')"
# The healthcheck can fail: a 404, and a port that speaks no HTTP (TLS admin).
if pexec "${CIDS[3]}" chat-healthcheck "http://127.0.0.1:$GW_PORT/no-such-page" 2>/dev/null; then
    die "chat-healthcheck answered 0 for a 404"
fi
if pexec "${CIDS[3]}" chat-healthcheck "http://127.0.0.1:$GW_ADMIN/healthz" 2>/dev/null; then
    die "chat-healthcheck answered 0 for a port that speaks no HTTP"
fi
ok "chat-healthcheck fails on a 404 and on a port without HTTP"

# ---- 5. from this machine: the web client and a real chat ---------------------------------
"$PY" - "http://127.0.0.1:$GW_PORT/" <<'EOF' || die "the gateway does not serve the web client"
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    body = r.read()
    assert r.status == 200 and b"<html" in body.lower(), (r.status, body[:200])
EOF
ok "web client served at http://127.0.0.1:$GW_PORT/ (from CHAT_WEB_DIR)"
"$PY" "$HERE/smoke_client.py" "ws://127.0.0.1:$GW_PORT/ws" || die "the WebSocket chat through the gateway"
ok "two WebSocket users matched and exchanged messages through the containers"

# ---- 6. chatctl status in a container -------------------------------------------------------
mapfile -t tls < <(tls_env chatctl)
status_json=$(timeout -k 10 120 podman run --rm --network host "${RO[@]}" --tmpfs /tmp:rw,size=16m,mode=1777 \
    --cap-drop ALL --security-opt no-new-privileges "${tls[@]}" \
    -v "$SECRETS:/etc/chat/secrets:ro" -e CHAT_ADMIN_TOKEN_FILE=/etc/chat/secrets/admin_token \
    -e "CHAT_GATEWAY_ADMIN_ADDRS=$SCHEME$L:$GW_ADMIN" -e "CHAT_MESSAGE_ADMIN_ADDRS=$SCHEME$L:$MSG_ADMIN" \
    -e "CHAT_MATCH_ADMIN_ADDRS=$SCHEME$L:$MATCH_ADMIN" -e "CHAT_PRESENCE_ADMIN_ADDRS=$SCHEME$L:$PRES_ADMIN" \
    "$IMAGE" chatctl status --json) || die "chatctl status failed: $status_json"
want_version=0.9.0${REV:++$REV}
"$PY" - "$want_version" "$status_json" <<'EOF' || die "chatctl status: $status_json"
import json, sys
want_version, doc = sys.argv[1], json.loads(sys.argv[2])
procs = doc["processes"]
assert "errors" not in doc, doc["errors"]
kinds = sorted(p["kind"] for p in procs)
assert kinds == ["gateway", "match", "message", "presence"], kinds
for p in procs:
    assert p["reachable"] is True and p["ready"] is True, p
    assert p["version"] == want_version, (p["kind"], p["version"], want_version)
print("\n".join(f"    {p['kind']:<9} {p['id']:<15} {p['address']:<28} {p['version']} ready"
                for p in sorted(procs, key=lambda p: p["kind"])), file=sys.stderr)
EOF
ok "chatctl status (in a container): gateway, message, match and presence up and ready, version $want_version"

# ---- 7. nothing written to the containers' filesystems ---------------------------------------
for i in "${!CIDS[@]}"; do
    running "${CIDS[$i]}" || die "${CNAMES[$i]} stopped during the test"
    # Not changes of the program's: the mount points podman makes (/etc/chat/*
    # for the volumes, /tmp; "C /etc" for /etc/hosts and /etc/resolv.conf).
    changes=$(podman diff "${CIDS[$i]}" | grep -v -E '^([AC] /(tmp|etc/chat)(/.*)?|C /etc)$' || true)
    [[ -z $changes ]] || die "${CNAMES[$i]} changed its filesystem: $(echo $changes)"
done
ok "no container changed its filesystem (podman diff)"
say "internal plane: $([[ $TLS -eq 1 ]] && echo 'mutual TLS (tls+tcp://)' || echo 'plain tcp://'); image $IMAGE $(numfmt --to=iec "$size")"
