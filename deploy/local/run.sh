#!/usr/bin/env bash
# Runs the whole chat backend on this machine, in the foreground:
# PostgreSQL, Redis, svc-message, svc-match, svc-presence and N gateways.
# Ctrl-C (or SIGTERM) stops everything it started. See --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_BIN=${CHAT_PG_BIN:-/usr/lib/postgresql/15/bin}

usage() {
    cat <<EOF
Usage: deploy/local/run.sh [--fresh] [--no-deps] [--no-build] [--help]

Installs missing Debian packages (deploy/deps.sh), builds (CMake Release), then
runs in the foreground: PostgreSQL, Redis, svc-message, svc-match,
svc-presence (each CHAT_REPLICAS times) and the gateways, all on 127.0.0.1.
Prints the URL(s) once every gateway's /readyz answers 200. Ctrl-C or SIGTERM
stops everything. A process that dies after that is started again, after
1 s, then 2, 4 ... up to 30 s for one that keeps dying (reset once it has
run for 30 s), as compose's restart policy or Kubernetes would; each death
and restart is logged. One that dies before the cluster is ready stops it
all (a configuration error does not get better by retrying).

Flags:
  --fresh      wipe the state dir first (database, Redis data, session secret)
  --no-deps    do not run deploy/deps.sh
  --no-build   do not run cmake (use the binaries already in the build dir)
  --help       this text

Environment (defaults in brackets):
  CHAT_STATE_DIR          state kept across runs [deploy/local/.state]
  CHAT_BUILD_DIR          build directory [build/ at the repo root]
  CHAT_PG_PORT            PostgreSQL port [5433]
  CHAT_REDIS_PORT         Redis port [6380]
  CHAT_GATEWAYS           number of gateways [1]
  CHAT_REPLICAS           processes of each of svc-message, svc-match and
                          svc-presence [1], 1..9; replica r listens on the
                          ports of CHAT_*_LISTEN / CHAT_*_PUB_LISTEN plus
                          10*(r-1) (svc-message.2: 7211 and 7212), and every
                          client is given every replica
  CHAT_GATEWAY_PORT       first gateway's port; the next ones follow [8080]
  CHAT_READY_TIMEOUT_S    how long to wait for readiness [60]
  CHAT_GATEWAY_BIND       address the gateways listen on [127.0.0.1]
  CHAT_TLS                1: the internal plane (every request, event and
                          admin socket) runs over mutual TLS, tls+tcp://
                          addresses, with a throwaway CA and a certificate
                          per program kind made in <state>/tls (kept; --fresh
                          makes new ones) [0]
Passed to the services as they are (see each program's --help):
  CHAT_SESSION_SECRET     [generated once, kept in the state dir]
  CHAT_ADMIN_TOKEN        the admin secret chatctl needs [generated once,
                          kept in <state>/admin_token]
  CHAT_MAX_TEXT, CHAT_RATE_PER_MIN, CHAT_RECONNECT_GRACE_MS,
  CHAT_TYPING_TIMEOUT_MS, CHAT_LOG_LEVEL, and any other CHAT_* variable.
Service addresses default to those of docs/ARCHITECTURE.md
(tcp://127.0.0.1:7201/7202, 7301/7302, 7401/7402; tls+tcp:// with
CHAT_TLS=1); set CHAT_*_LISTEN and
CHAT_*_PUB_LISTEN to move the first replica (and the others with it).
Admin addresses: CHAT_{MESSAGE,MATCH,PRESENCE}_ADMIN_LISTEN (7203, 7303,
7403) and CHAT_GATEWAY_ADMIN_LISTEN (7103); health and metrics:
CHAT_{MESSAGE,MATCH,PRESENCE}_HTTP_LISTEN (127.0.0.1:7204, 7304, 7404); the
gateways serve theirs on their own port. Replica r and gateway g add
10*(r-1) or 10*(g-1) to the port. <state>/chatctl.env lists them all with
the admin secret's file: build/bin/chatctl finds it by itself.

Logs: each service's and Redis's output goes to this terminal, each line
prefixed with [name]; PostgreSQL's log is <state>/pg/server.log.
EOF
}

FRESH=0 DEPS=1 BUILD=1
for arg in "$@"; do
    case "$arg" in
        --fresh) FRESH=1 ;;
        --no-deps) DEPS=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

STATE=${CHAT_STATE_DIR:-$ROOT/deploy/local/.state}
BUILD_DIR=${CHAT_BUILD_DIR:-$ROOT/build}
PG_PORT=${CHAT_PG_PORT:-5433}
REDIS_PORT=${CHAT_REDIS_PORT:-6380}
GATEWAYS=${CHAT_GATEWAYS:-1}
REPLICAS=${CHAT_REPLICAS:-1}
GW_PORT=${CHAT_GATEWAY_PORT:-8080}
READY_TIMEOUT_S=${CHAT_READY_TIMEOUT_S:-60}

say() { printf '[run.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ "$GATEWAYS" =~ ^[1-9][0-9]?$ ]] || die "CHAT_GATEWAYS must be 1..99"
[[ "$REPLICAS" =~ ^[1-9]$ ]] || die "CHAT_REPLICAS must be 1..9"
for v in PG_PORT REDIS_PORT GW_PORT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a port number"
done

as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---- 1. dependencies and build -------------------------------------------
if [[ $DEPS -eq 1 ]]; then
    "$ROOT/deploy/deps.sh"
fi
if [[ $BUILD -eq 1 ]]; then
    say "building into $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null || {
        say "build failed; rerunning verbosely"; cmake --build "$BUILD_DIR" -j1; exit 1; }
fi
BIN=$BUILD_DIR/bin
for prog in svc-message svc-match svc-presence svc-gateway; do
    [[ -x "$BIN/$prog" ]] || die "$BIN/$prog not found (build first or drop --no-build)"
done

# ---- 2. state dir ------------------------------------------------------------
PG_DIR=$STATE/pg
PG_DATA=$PG_DIR/data
pg_running() { [[ -f "$PG_DATA/PG_VERSION" ]] && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

if [[ $FRESH -eq 1 && -d "$STATE" ]]; then
    pg_running && die "a PostgreSQL from $PG_DATA is still running; stop it before --fresh"
    say "--fresh: removing $STATE"
    rm -rf "$STATE"
fi
mkdir -p "$STATE/redis" "$PG_DIR"
chmod 755 "$STATE"
if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$PG_DIR"; fi
chmod 700 "$PG_DIR"
as_postgres test -w "$PG_DIR" ||
    die "the postgres user cannot write $PG_DIR (is a parent directory of CHAT_STATE_DIR closed to it?)"

if [[ -z "${CHAT_SESSION_SECRET:-}" ]]; then
    if [[ ! -s "$STATE/session_secret" ]]; then
        (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$STATE/session_secret")
    fi
    CHAT_SESSION_SECRET=$(cat "$STATE/session_secret")
fi
export CHAT_SESSION_SECRET
# The admin secret: from the environment, else generated once and kept. The
# services and chatctl read it from the file, so it never shows in ps.
ADMIN_TOKEN_FILE=$STATE/admin_token
if [[ -n "${CHAT_ADMIN_TOKEN:-}" ]]; then
    (umask 077; printf '%s\n' "$CHAT_ADMIN_TOKEN" >"$ADMIN_TOKEN_FILE")
elif [[ ! -s "$ADMIN_TOKEN_FILE" ]]; then
    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$ADMIN_TOKEN_FILE")
fi
unset CHAT_ADMIN_TOKEN
export CHAT_ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE

# ---- 3. processes ------------------------------------------------------------
# Parallel arrays, one entry per process we run, in start order: its name, its
# command (printf %q words), its pid (0 while it waits for a restart), when it
# last started, how many times in a row it died soon after, and when it is due
# to start again.
NAMES=() CMDS=() PIDS=() UP_AT=() FAILS=() DUE=() RESTARTS=()
PG_STARTED=0
STOPPING=0
RESTART_MAX_S=30   # backoff ceiling, and how long a run must last to reset it
CRASH_LOOP_AFTER=3 # deaths in a row, each soon after its start, that make a crash loop

# Starts process i in the background with its output prefixed by [name]. Each
# process gets its own session (setsid execs in place, so $! is its pid): a
# Ctrl-C reaches only this script, which then stops everything in order. The
# prefixer ignores SIGINT/SIGTERM so that a service's last log lines are not lost.
# CHAT_RESTARTS tells the process how often it was restarted (chatctl status).
start_index() {
    local i=$1 name=${NAMES[$1]} argv
    eval "argv=(${CMDS[$i]})"
    setsid env CHAT_RESTARTS="${RESTARTS[$i]}" "${argv[@]}" < /dev/null \
        > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
    PIDS[$i]=$! UP_AT[$i]=$SECONDS DUE[$i]=0
}

spawn() {  # name command...
    local name=$1; shift
    NAMES+=("$name") CMDS+=("$(printf '%q ' "$@")") PIDS+=(0) UP_AT+=(0) FAILS+=(0) DUE+=(0)
    RESTARTS+=(0)
    start_index $((${#NAMES[@]} - 1))
}

stop_pid() {  # name pid: SIGTERM, wait up to 15 s, then SIGKILL
    local name=$1 pid=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    trap '' INT TERM
    say "stopping"
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        [[ "${NAMES[$i]}" == redis || ${PIDS[$i]} -eq 0 ]] && continue
        stop_pid "${NAMES[$i]}" "${PIDS[$i]}"
    done
    if [[ $PG_STARTED -eq 1 ]]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 ||
            say "pg_ctl stop failed; see $PG_DIR/server.log"
    fi
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        [[ "${NAMES[$i]}" == redis && ${PIDS[$i]} -ne 0 ]] && stop_pid redis "${PIDS[$i]}"
    done
    say "stopped"
}
check_alive() {  # before the cluster is ready: fails naming the first process that has exited
    local i
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            say "${NAMES[$i]} (pid ${PIDS[$i]}) exited unexpectedly"
            return 1
        fi
    done
}

listening() {  # port: is some local TCP socket listening on it? (reads /proc, connects to nothing)
    awk -v p="$(printf '%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 3) == p { f = 1 }
        END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_listening() {  # name address...: waits (bounded) until each tcp://host:port listens
    local name=$1 addr port i; shift
    for addr in "$@"; do
        port=${addr##*:}
        for ((i = 0; ; i++)); do
            listening "$port" && break
            check_alive || exit 1
            ((i < 300)) || die "$name is not listening on $addr after 30 s"
            sleep 0.1
        done
    done
}

http_status() {  # port path -> HTTP status code, or nothing
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
        read -r _ code _ <&3 && echo "${code%%[!0-9]*}"; cat <&3 >/dev/null' "$1" "$2" 2>/dev/null || true
}

trap 'STOPPING=1' INT TERM
trap 'cleanup' EXIT

# PostgreSQL: initdb on the first run, then kept.
if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    say "initdb $PG_DATA"
    as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
if pg_running; then
    say "a PostgreSQL left over from an earlier run is up on $PG_DATA; stopping it"
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
fi
say "PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_DIR/server.log)"
PG_STARTED=1
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR" start >/dev/null ||
    { PG_STARTED=0; die "PostgreSQL did not start; see $PG_DIR/server.log"; }
PSQL=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres)
if [[ -z $("${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'chat'") ]]; then
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE chat" >/dev/null
fi

# Redis: append-only file in the state dir, so data is kept like a volume.
spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" \
    --appendonly yes --save '' --daemonize no
for ((i = 0; ; i++)); do
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
    check_alive || exit 1
    ((i < 100)) || die "Redis did not answer on port $REDIS_PORT"
    sleep 0.1
done

# The internal plane: plain TCP, or mutual TLS with certificates of our own CA.
SCHEME=tcp://
case ${CHAT_TLS:-0} in
1)
    SCHEME=tls+tcp://
    "$ROOT/deploy/tls/gen-certs.sh" "$STATE/tls" || die "could not make the TLS certificates"
    export CHAT_TLS_CA=$STATE/tls/ca.crt
    say "internal plane: mutual TLS (certificates in $STATE/tls)" ;;
0) ;;
*) die "CHAT_TLS=$CHAT_TLS: 1 or 0" ;;
esac
TLS_ARGS=()
tls_args() {  # kind: TLS_ARGS = its CHAT_TLS_CERT and CHAT_TLS_KEY (none without TLS)
    TLS_ARGS=()
    [[ $SCHEME == tls+tcp:// ]] || return 0
    TLS_ARGS=("CHAT_TLS_CERT=$STATE/tls/$1.crt" "CHAT_TLS_KEY=$STATE/tls/$1.key")
}

export CHAT_PG_DSN="host=127.0.0.1 port=$PG_PORT dbname=chat user=postgres"
export CHAT_REDIS_HOST=127.0.0.1 CHAT_REDIS_PORT=$REDIS_PORT
export CHAT_GATEWAY_BIND=${CHAT_GATEWAY_BIND:-127.0.0.1}
export CHAT_MESSAGE_LISTEN=${CHAT_MESSAGE_LISTEN:-${SCHEME}127.0.0.1:7201}
export CHAT_MESSAGE_PUB_LISTEN=${CHAT_MESSAGE_PUB_LISTEN:-${SCHEME}127.0.0.1:7202}
export CHAT_MATCH_LISTEN=${CHAT_MATCH_LISTEN:-${SCHEME}127.0.0.1:7301}
export CHAT_MATCH_PUB_LISTEN=${CHAT_MATCH_PUB_LISTEN:-${SCHEME}127.0.0.1:7302}
export CHAT_PRESENCE_LISTEN=${CHAT_PRESENCE_LISTEN:-${SCHEME}127.0.0.1:7401}
export CHAT_PRESENCE_PUB_LISTEN=${CHAT_PRESENCE_PUB_LISTEN:-${SCHEME}127.0.0.1:7402}
export CHAT_MESSAGE_ADMIN_LISTEN=${CHAT_MESSAGE_ADMIN_LISTEN:-${SCHEME}127.0.0.1:7203}
export CHAT_MATCH_ADMIN_LISTEN=${CHAT_MATCH_ADMIN_LISTEN:-${SCHEME}127.0.0.1:7303}
export CHAT_PRESENCE_ADMIN_LISTEN=${CHAT_PRESENCE_ADMIN_LISTEN:-${SCHEME}127.0.0.1:7403}
export CHAT_GATEWAY_ADMIN_LISTEN=${CHAT_GATEWAY_ADMIN_LISTEN:-${SCHEME}127.0.0.1:7103}
export CHAT_MESSAGE_HTTP_LISTEN=${CHAT_MESSAGE_HTTP_LISTEN-127.0.0.1:7204}
export CHAT_MATCH_HTTP_LISTEN=${CHAT_MATCH_HTTP_LISTEN-127.0.0.1:7304}
export CHAT_PRESENCE_HTTP_LISTEN=${CHAT_PRESENCE_HTTP_LISTEN-127.0.0.1:7404}

replica_addr() {  # tcp://host:port r -> the same address with port + 10*(r-1)
    if [[ $2 -eq 1 ]]; then echo "$1"; else echo "${1%:*}:$((${1##*:} + 10 * ($2 - 1)))"; fi
}
if [[ $REPLICAS -gt 1 ]]; then
    for v in CHAT_MESSAGE_LISTEN CHAT_MESSAGE_PUB_LISTEN CHAT_MATCH_LISTEN CHAT_MATCH_PUB_LISTEN \
        CHAT_PRESENCE_LISTEN CHAT_PRESENCE_PUB_LISTEN CHAT_MESSAGE_ADMIN_LISTEN \
        CHAT_MATCH_ADMIN_LISTEN CHAT_PRESENCE_ADMIN_LISTEN; do
        [[ ${!v} =~ ^(tls\+)?tcp://.+:[0-9]+$ ]] ||
            die "$v=${!v}: CHAT_REPLICAS needs tcp://host:port addresses to place the replicas"
    done
fi
replica_name() { if [[ $2 -eq 1 ]]; then echo "$1"; else echo "$1.$2"; fi; }
replica_list() {  # base r...: the addresses of replicas 1..REPLICAS, comma-separated
    local r out=""
    for ((r = 1; r <= REPLICAS; r++)); do out+="${out:+,}$(replica_addr "$1" "$r")"; done
    echo "$out"
}
# Every client is given every replica (unless the caller set its own lists).
DEFAULT_EVENTS=$(replica_list "$CHAT_MESSAGE_PUB_LISTEN"),$(replica_list "$CHAT_MATCH_PUB_LISTEN")
DEFAULT_EVENTS+=,$(replica_list "$CHAT_PRESENCE_PUB_LISTEN")
export CHAT_MESSAGE_ADDRS=${CHAT_MESSAGE_ADDRS:-$(replica_list "$CHAT_MESSAGE_LISTEN")}
export CHAT_MATCH_ADDRS=${CHAT_MATCH_ADDRS:-$(replica_list "$CHAT_MATCH_LISTEN")}
export CHAT_PRESENCE_ADDRS=${CHAT_PRESENCE_ADDRS:-$(replica_list "$CHAT_PRESENCE_LISTEN")}
export CHAT_EVENTS_ADDRS=${CHAT_EVENTS_ADDRS:-$DEFAULT_EVENTS}

spawn_service() {  # svc VAR_PREFIX: its replicas, each listening before the next one starts
    local svc=$1 rpc_var=CHAT_$2_LISTEN pub_var=CHAT_$2_PUB_LISTEN adm_var=CHAT_$2_ADMIN_LISTEN
    local http_var=CHAT_$2_HTTP_LISTEN r rpc pub adm http name
    for ((r = 1; r <= REPLICAS; r++)); do
        rpc=$(replica_addr "${!rpc_var}" "$r") pub=$(replica_addr "${!pub_var}" "$r")
        adm=$(replica_addr "${!adm_var}" "$r") name=$(replica_name "$svc" "$r")
        http=${!http_var}
        [[ -z $http ]] || http=$(replica_addr "$http" "$r")
        tls_args "${svc#svc-}"
        spawn "$name" env "$rpc_var=$rpc" "$pub_var=$pub" "$adm_var=$adm" "$http_var=$http" \
            "CHAT_$2_ID=$name" "${TLS_ARGS[@]}" "$BIN/$svc"
        wait_listening "$name" "$rpc" "$pub"
    done
}
# In dependency order (svc-match calls svc-message, svc-presence calls svc-match).
spawn_service svc-message MESSAGE
spawn_service svc-match MATCH
spawn_service svc-presence PRESENCE
GW_ADMIN_LIST=""
for ((g = 1; g <= GATEWAYS; g++)); do
    adm=$(replica_addr "$CHAT_GATEWAY_ADMIN_LISTEN" "$g")
    GW_ADMIN_LIST+="${GW_ADMIN_LIST:+,}$adm"
    tls_args gateway
    spawn "gateway$g" env CHAT_GATEWAY_PORT=$((GW_PORT + g - 1)) CHAT_GATEWAY_ID="gw$g" \
        CHAT_GATEWAY_ADMIN_LISTEN="$adm" "${TLS_ARGS[@]}" "$BIN/svc-gateway"
done

# What chatctl needs to reach this cluster (it finds this file by itself).
cat >"$STATE/chatctl.env" <<ENVEOF
# Written by deploy/local/run.sh: where chatctl finds this cluster.
CHAT_GATEWAY_ADMIN_ADDRS=$GW_ADMIN_LIST
CHAT_MESSAGE_ADMIN_ADDRS=$(replica_list "$CHAT_MESSAGE_ADMIN_LISTEN")
CHAT_MATCH_ADMIN_ADDRS=$(replica_list "$CHAT_MATCH_ADMIN_LISTEN")
CHAT_PRESENCE_ADMIN_ADDRS=$(replica_list "$CHAT_PRESENCE_ADMIN_LISTEN")
CHAT_ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE
ENVEOF
if [[ $SCHEME == tls+tcp:// ]]; then
    printf '%s\n' "CHAT_TLS_CA=$CHAT_TLS_CA" "CHAT_TLS_CERT=$STATE/tls/chatctl.crt" \
        "CHAT_TLS_KEY=$STATE/tls/chatctl.key" >>"$STATE/chatctl.env"
fi

# ---- 4. readiness, then wait ---------------------------------------------------
deadline=$((SECONDS + READY_TIMEOUT_S))
for ((g = 1; g <= GATEWAYS; g++)); do
    port=$((GW_PORT + g - 1))
    until [[ $(http_status "$port" /readyz) == 200 ]]; do
        [[ $STOPPING -eq 0 ]] || exit 0
        check_alive || exit 1
        ((SECONDS < deadline)) || die "gateway$g: /readyz not 200 after ${READY_TIMEOUT_S}s"
        sleep 0.2
    done
done

say "ready:"
for ((g = 1; g <= GATEWAYS; g++)); do
    port=$((GW_PORT + g - 1))
    say "  gateway$g  http://127.0.0.1:$port/   (WebSocket ws://127.0.0.1:$port/ws)"
done
for ((i = 0; i < ${#NAMES[@]}; i++)); do say "  ${NAMES[$i]} pid ${PIDS[$i]}"; done
say "Operate it with $BIN/chatctl (e.g. chatctl status; settings in $STATE/chatctl.env)."
say "Ctrl-C stops everything."

# ---- 5. supervise ------------------------------------------------------------
# Waits for a process to exit (or a one-second tick), schedules its restart with
# backoff, and starts whatever is due.
on_exit() {  # pid status
    local i delay
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        [[ ${PIDS[$i]} -eq $1 ]] || continue
        ((SECONDS - UP_AT[i] < RESTART_MAX_S)) || FAILS[$i]=0
        delay=$((1 << FAILS[i]))
        ((delay <= RESTART_MAX_S)) || delay=$RESTART_MAX_S
        ((FAILS[i] < 5)) && FAILS[$i]=$((FAILS[i] + 1))
        say "${NAMES[$i]} (pid $1) exited with status $2; restarting in ${delay}s"
        # Dying again and again soon after each start is not a hiccup: say so
        # loudly, every time, so that the backoff does not hide it.
        ((FAILS[i] >= CRASH_LOOP_AFTER)) &&
            say "CRASH LOOP: ${NAMES[$i]} died ${FAILS[$i]} times in a row within" \
                "${RESTART_MAX_S}s of starting (last status $2); its [${NAMES[$i]}] lines" \
                "above say why"
        PIDS[$i]=0 DUE[$i]=$((SECONDS + delay))
    done
}
start_due() {
    local i
    for ((i = 0; i < ${#NAMES[@]}; i++)); do
        if [[ ${PIDS[$i]} -eq 0 ]] && ((SECONDS >= DUE[i])); then
            RESTARTS[$i]=$((RESTARTS[i] + 1))
            start_index "$i"
            say "${NAMES[$i]} restarted (pid ${PIDS[$i]})"
        fi
    done
}
while [[ $STOPPING -eq 0 ]]; do
    running=()
    for pid in "${PIDS[@]}"; do [[ $pid -eq 0 ]] || running+=("$pid"); done
    sleep 1 & tick=$!
    exited="" status=0
    wait -n -p exited "${running[@]}" "$tick" 2>/dev/null || status=$?
    kill "$tick" 2>/dev/null || true
    wait "$tick" 2>/dev/null || true
    [[ $STOPPING -eq 0 ]] || break
    [[ -n $exited && $exited -ne $tick ]] && on_exit "$exited" "$status"
    start_due
done
exit 0
