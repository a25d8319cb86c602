#!/usr/bin/env bash
# The benchmark: builds (Release), starts a whole local cluster on its own
# ports with CHAT_RATE_PER_MIN=0, measures PostgreSQL's own ceiling with the
# project's schema (pgbench), runs a fixed set of chat-bench points, samples
# every process's CPU around each point, and writes the results into
# BENCHMARKS.md (between the results markers; the rest of the file is kept).
# Bounded (< 15 min); stops everything it started, by pid. See --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${CHAT_PG_BIN:-/usr/lib/postgresql/15/bin}
PY=/usr/bin/python3

usage() {
    cat <<EOF
Usage: bench/run.sh [--quick] [--no-build] [--cluster-only] [--keep] [--out FILE] [--help]

Builds chat-bench and the services (CMake Release), starts PostgreSQL, Redis,
svc-message, svc-match, svc-presence and 4 gateways on 127.0.0.1 (ports
below), with CHAT_RATE_PER_MIN=0, then runs:
  1. the PostgreSQL ceiling: pgbench INSERTs into the project's messages
     table (schema created by svc-message itself), one row per transaction
     and 100 rows per transaction, synchronous_commit=on, the cluster's settings;
  2. chat-bench points: chat at 5,000 msg/s and above (also with two
     svc-message replicas, and with one of them killed), match, idle on one
     gateway (19,000) and on four (64,000, four chat-bench processes), storm
     (10,000 reconnects);
and writes the tables into BENCHMARKS.md, with the CPU used by every process.

Flags:
  --quick         small, short points (checks the script; figures not meaningful)
  --no-build      use the binaries already in the build dir
  --cluster-only  start the cluster, print its URLs, wait for Ctrl-C
  --keep          keep the state dir (logs, JSON of every point) after the run
  --out FILE      where to write the results [BENCHMARKS.md at the repo root]
  --help          this text

Environment:
  CHAT_BENCH_BUILD_DIR   build directory [build-bench/ at the repo root]
  CHAT_BENCH_STATE       state dir [a new /tmp/chat-bench.XXXXXX]
  CHAT_BENCH_COMMIT      commit to name in the report when the tree is not a git
                         checkout (e.g. built from \`git archive\`) [git rev-parse HEAD]
Ports (loopback): PostgreSQL 19432, Redis 19379, svc-message 19201/19202,
svc-match 19301/19302, svc-presence 19401/19402, gateways 19080-19083; admin
and health 19203/19204, 19303/19304, 19403/19404 (svc-message.2 19221-19224),
gateways' admin 19103, 19113, 19123, 19133.
EOF
}

QUICK=0 BUILD=1 CLUSTER_ONLY=0 KEEP=0
OUT=$ROOT/BENCHMARKS.md
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --cluster-only) CLUSTER_ONLY=1 ;;
        --keep) KEEP=1 ;;
        --out) [[ $# -ge 2 ]] || { echo "run.sh: --out needs a file" >&2; exit 2; }; OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

BUILD_DIR=${CHAT_BENCH_BUILD_DIR:-$ROOT/build-bench}
PG_PORT=19432 REDIS_PORT=19379 GW_PORT=19080 GATEWAYS=4
MSG_REP=tcp://127.0.0.1:19201 MSG_PUB=tcp://127.0.0.1:19202
MSG2_REP=tcp://127.0.0.1:19221 MSG2_PUB=tcp://127.0.0.1:19222
MATCH_REP=tcp://127.0.0.1:19301 MATCH_PUB=tcp://127.0.0.1:19302
PRES_REP=tcp://127.0.0.1:19401 PRES_PUB=tcp://127.0.0.1:19402
HZ=$(getconf CLK_TCK)
POINT_N=0
BUDGET_S=840   # the whole run stays under 15 minutes: later points are skipped
T_START=$SECONDS

say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# ---- build -------------------------------------------------------------------
if [[ $BUILD -eq 1 ]]; then
    # On a fresh machine: the build and run dependencies (pgbench comes with
    # PostgreSQL's client package, a dependency of postgresql).
    "$ROOT/deploy/deps.sh" || die "installing the Debian packages failed"
    say "building (Release) into $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCHAT_SANITIZE=OFF >/dev/null
    cmake --build "$BUILD_DIR" -j"$(nproc)" \
        --target svc-message svc-match svc-presence svc-gateway chat-bench >/dev/null ||
        die "build failed (run cmake --build $BUILD_DIR to see why)"
fi
BIN=$BUILD_DIR/bin
for prog in svc-message svc-match svc-presence svc-gateway chat-bench; do
    [[ -x "$BIN/$prog" ]] || die "$BIN/$prog not found (build first or drop --no-build)"
done

# ---- state -------------------------------------------------------------------
STATE=${CHAT_BENCH_STATE:-$(mktemp -d /tmp/chat-bench.XXXXXX)}
mkdir -p "$STATE/points" "$STATE/logs" "$STATE/pg" "$STATE/redis"
chmod 755 "$STATE"
[[ $(id -u) -eq 0 ]] && chown postgres:postgres "$STATE/pg"
chmod 700 "$STATE/pg"
PG_DATA=$STATE/pg/data
POINTS=$STATE/points
COMMANDS=$STATE/commands.txt
: >"$COMMANDS"

# ---- processes: names and pids of what we started ------------------------------
declare -A PID=()
ORDER=()          # start order, stopped in reverse
PG_STARTED=0

spawn() {  # name cmd... : background, own session, log in $STATE/logs/name.log
    local name=$1; shift
    setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
    PID[$name]=$!
    ORDER+=("$name")
}

stop_pid() {  # name: SIGTERM, up to 15 s, then SIGKILL
    local name=$1 pid=${PID[$1]:-} i
    [[ -n "$pid" ]] || return 0
    unset "PID[$name]"
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM for 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    trap '' INT TERM
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
        [[ "${ORDER[$i]}" == redis ]] || stop_pid "${ORDER[$i]}"
    done
    if [[ $PG_STARTED -eq 1 ]]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            say "pg_ctl stop failed; see $STATE/pg/server.log"
    fi
    stop_pid redis
    if [[ $KEEP -eq 1 || $rc -ne 0 ]]; then
        say "state, logs and JSON kept in $STATE"
    else
        rm -rf "$STATE"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

alive() {  # name: is it still running?
    local pid=${PID[$1]:-}
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

check_all_alive() {
    local n
    for n in "${!PID[@]}"; do
        alive "$n" || die "$n (pid ${PID[$n]}) exited unexpectedly; see $STATE/logs/$n.log"
    done
}

listening() {  # port: some local TCP socket listens on it (read from /proc)
    awk -v p="$(printf '%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 3) == p { f = 1 }
        END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_listening() {  # name addr...
    local name=$1 addr i; shift
    for addr in "$@"; do
        for ((i = 0; ; i++)); do
            listening "${addr##*:}" && break
            alive "$name" || die "$name exited while starting; see $STATE/logs/$name.log"
            ((i < 300)) || die "$name is not listening on $addr after 30 s"
            sleep 0.1
        done
    done
}

http_status() {  # port path
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
        read -r _ code _ <&3 && echo "${code%%[!0-9]*}"; cat <&3 >/dev/null' "$1" "$2" 2>/dev/null || true
}

# ---- PostgreSQL (settings as deploy/local/run.sh: the server's defaults) --------
PG_OPTS="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $STATE/pg"
start_postgres() {
    say "PostgreSQL on 127.0.0.1:$PG_PORT"
    as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    PG_STARTED=1
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$STATE/pg/server.log" -w -t 60 -o "$PG_OPTS" start \
        >/dev/null || die "PostgreSQL did not start; see $STATE/pg/server.log"
    PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE chat" -c "CREATE DATABASE ceiling" >/dev/null
}

pg_postmaster() { head -1 "$PG_DATA/postmaster.pid"; }

# ---- the services ----------------------------------------------------------------
common_env() {
    export CHAT_SESSION_SECRET=bench-secret-$$
    export CHAT_RATE_PER_MIN=0 CHAT_LOG_LEVEL=warn
    # Capacity, not admission: the clients ramp faster than the default
    # CHAT_CONN_RATE_PER_S, senders may exceed CHAT_FRAME_RATE_PER_S and the
    # match mode searches faster than CHAT_OPS_RATE_PER_MIN.
    export CHAT_CONN_RATE_PER_S=0 CHAT_FRAME_RATE_PER_S=0 CHAT_OPS_RATE_PER_MIN=0
    export CHAT_PG_DSN="host=127.0.0.1 port=$PG_PORT dbname=chat user=postgres"
    export CHAT_REDIS_HOST=127.0.0.1 CHAT_REDIS_PORT=$REDIS_PORT
    export CHAT_MESSAGE_LISTEN=$MSG_REP CHAT_MESSAGE_PUB_LISTEN=$MSG_PUB
    export CHAT_MATCH_LISTEN=$MATCH_REP CHAT_MATCH_PUB_LISTEN=$MATCH_PUB
    export CHAT_PRESENCE_LISTEN=$PRES_REP CHAT_PRESENCE_PUB_LISTEN=$PRES_PUB
    export CHAT_MESSAGE_ADDRS=$MSG_REP CHAT_MATCH_ADDRS=$MATCH_REP CHAT_PRESENCE_ADDRS=$PRES_REP
    export CHAT_EVENTS_ADDRS=$MSG_PUB,$MATCH_PUB,$PRES_PUB
    export CHAT_GATEWAY_BIND=127.0.0.1
    # Admin and health addresses in the bench's own port range (the defaults
    # are the local runner's); replica 2 and gateways g add 10 per step.
    export CHAT_ADMIN_TOKEN=bench-admin-$$
    export CHAT_MESSAGE_ADMIN_LISTEN=tcp://127.0.0.1:19203 CHAT_MESSAGE_HTTP_LISTEN=127.0.0.1:19204
    export CHAT_MATCH_ADMIN_LISTEN=tcp://127.0.0.1:19303 CHAT_MATCH_HTTP_LISTEN=127.0.0.1:19304
    export CHAT_PRESENCE_ADMIN_LISTEN=tcp://127.0.0.1:19403 CHAT_PRESENCE_HTTP_LISTEN=127.0.0.1:19404
}

# The ceiling database gets the schema from svc-message itself (it migrates
# at start), so pgbench writes into exactly the project's messages table.
migrate_ceiling() {
    spawn migrate env CHAT_PG_DSN="host=127.0.0.1 port=$PG_PORT dbname=ceiling user=postgres" \
        CHAT_MESSAGE_LISTEN=tcp://127.0.0.1:19211 CHAT_MESSAGE_PUB_LISTEN=tcp://127.0.0.1:19212 \
        CHAT_MESSAGE_ADMIN_LISTEN=tcp://127.0.0.1:19213 CHAT_MESSAGE_HTTP_LISTEN= \
        "$BIN/svc-message"
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $("${PSQL[@]}" -d ceiling -tAc "SELECT to_regclass('messages') IS NOT NULL" 2>/dev/null) == t ]] && break
        alive migrate || die "svc-message could not migrate the ceiling database; see $STATE/logs/migrate.log"
        sleep 0.1
    done
    ((i < 300)) || die "the ceiling database has no messages table after 30 s"
    stop_pid migrate
    "${PSQL[@]}" -d ceiling -c "CREATE SEQUENCE ceiling_seq CACHE 1000" >/dev/null
}

start_redis() {
    # As deploy/local/run.sh: append-only file (fsync every second).
    spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" \
        --appendonly yes --save '' --daemonize no
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    die "Redis did not answer on $REDIS_PORT"
}

start_services() {
    spawn svc-message "$BIN/svc-message"
    wait_listening svc-message "$MSG_REP" "$MSG_PUB"
    spawn svc-match "$BIN/svc-match"
    wait_listening svc-match "$MATCH_REP" "$MATCH_PUB"
    spawn svc-presence "$BIN/svc-presence"
    wait_listening svc-presence "$PRES_REP" "$PRES_PUB"
}

RUNNING_GW=0
GW_ENV=()  # extra environment of the gateways started next (e.g. two svc-message replicas)
start_gateways() {  # N: starts gateways 1..N, waits for /readyz
    local n=$1 g port deadline
    for ((g = 1; g <= n; g++)); do
        spawn "gateway$g" env "${GW_ENV[@]}" CHAT_GATEWAY_PORT=$((GW_PORT + g - 1)) \
            CHAT_GATEWAY_ID="bench$g" CHAT_GATEWAY_ADMIN_LISTEN=tcp://127.0.0.1:$((19103 + 10 * (g - 1))) \
            "$BIN/svc-gateway"
    done
    RUNNING_GW=$n
    deadline=$((SECONDS + 60))
    for ((g = 1; g <= n; g++)); do
        port=$((GW_PORT + g - 1))
        until [[ $(http_status "$port" /readyz) == 200 ]]; do
            alive "gateway$g" || die "gateway$g exited while starting; see $STATE/logs/gateway$g.log"
            ((SECONDS < deadline)) || die "gateway$g: /readyz not 200 after 60 s"
            sleep 0.2
        done
    done
}

# Fresh gateways for each point, exactly as many as it uses: every gateway
# receives and decodes every event, so idle extra gateways would take CPU
# from the point, and memory is measured on gateways that held nothing yet.
use_gateways() {  # N
    local g
    for ((g = RUNNING_GW; g >= 1; g--)); do stop_pid "gateway$g"; done
    start_gateways "$1"
}

# A second svc-message replica, for the replica points (the gateways that
# know it are started with GW_ENV naming both).
start_msg2() {
    spawn svc-message.2 env CHAT_MESSAGE_LISTEN=$MSG2_REP CHAT_MESSAGE_PUB_LISTEN=$MSG2_PUB \
        CHAT_MESSAGE_ADMIN_LISTEN=tcp://127.0.0.1:19223 CHAT_MESSAGE_HTTP_LISTEN=127.0.0.1:19224 \
        "$BIN/svc-message"
    wait_listening svc-message.2 "$MSG2_REP" "$MSG2_PUB"
}

gw_metrics() {  # port: the gateway's /metrics text
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 || exit 1
        printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3; cat <&3' "$1" 2>/dev/null || true
}

# The running gateways' order-and-gap counters, summed: "name value" lines.
order_snapshot() {
    local g
    for ((g = 1; g <= RUNNING_GW; g++)); do gw_metrics $((GW_PORT + g - 1)); done |
        awk '/^chat_gateway_(order_[a-z_]+|event_batches_lost_total) / {
                 if ($1 ~ /_max$/) { if ($2 > v[$1]) v[$1] = $2 } else v[$1] += $2 }
             END { for (k in v) print k, v[k] }'
}

# Hook of the kill point (runs while chat-bench does): SIGKILL svc-message.2
# after KILL_AT_S, start it again KILL_DOWN_S later, and time until every
# gateway is connected to it again.
kill_hook() {
    sleep "$KILL_AT_S"
    local pid=${PID[svc-message.2]} t_kill t_start t_back g ok i
    t_kill=$EPOCHREALTIME
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[svc-message.2]"
    say "kill point: svc-message.2 (pid $pid) killed"
    sleep "$KILL_DOWN_S"
    t_start=$EPOCHREALTIME
    start_msg2
    for ((ok = 0, i = 0; ok == 0 && i < 1500; i++)); do  # at most ~30 s
        ok=1
        for ((g = 1; g <= RUNNING_GW; g++)); do
            gw_metrics $((GW_PORT + g - 1)) | grep -q '^chat_gateway_backend_peers{service="message"} 2' || ok=0
        done
        ((ok)) || sleep 0.02
    done
    ((ok)) || say "kill point: the gateways did not reconnect to svc-message.2 within 30 s"
    t_back=$EPOCHREALTIME
    "$PY" - "$POINTS/$1.kill.json" "$t_kill" "$t_start" "$t_back" <<'PYEOF'
import json, sys
k, s, b = (float(x) for x in sys.argv[2:5])
json.dump({"victim": "svc-message.2", "down_s": round(s - k, 3),
           "restart_to_whole_ms": round(1000 * (b - s), 1)}, open(sys.argv[1], "w"))
PYEOF
}

# ---- CPU per process -------------------------------------------------------------
# ticks PID [with_children]: utime+stime (+ reaped children's) from /proc/PID/stat.
ticks() {
    local f
    f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    # after "comm) ": $1 state ... $12 utime $13 stime $14 cutime $15 cstime
    awk -v kids="${2:-0}" '{ t = $12 + $13; if (kids) t += $14 + $15; print t }' <<<"$f"
}

# All of PostgreSQL: the postmaster with its reaped children, plus live backends.
pg_ticks() {
    local pm sum=0 p
    pm=$(pg_postmaster) || { echo 0; return; }
    sum=$(ticks "$pm" 1)
    for p in $(pgrep -P "$pm" 2>/dev/null); do
        sum=$((sum + $(ticks "$p")))
    done
    echo "$sum"
}

cpu_snapshot() {  # -> "name ticks" lines
    local n
    for n in "${!PID[@]}"; do
        [[ $n == migrate ]] && continue
        echo "$n $(ticks "${PID[$n]}")"
    done
    echo "postgresql $(pg_ticks)"
    # Every CPU's busy time (user nice system irq softirq steal): what the
    # machine did in all, so work of processes outside the cluster shows.
    awk '$1 == "cpu" { print "machine", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# cpu_json BEFORE AFTER WALL_S -> {"name": {"cpu_s": x, "pct": y}, ...}
cpu_json() {
    "$PY" - "$1" "$2" "$3" "$HZ" <<'EOF'
import json, sys
before = dict(l.split() for l in open(sys.argv[1]) if l.strip())
after = dict(l.split() for l in open(sys.argv[2]) if l.strip())
wall, hz = float(sys.argv[3]), float(sys.argv[4])
out = {}
for name, t in after.items():
    d = (int(t) - int(before.get(name, 0))) / hz
    out[name] = {"cpu_s": round(d, 2), "pct": round(100 * d / wall, 1) if wall > 0 else 0}
print(json.dumps(out))
EOF
}

# Waits (at most 60 s) until the cluster is nearly idle: the previous
# point's closing connections can keep svc-presence and the gateways busy
# for a while, and that work must not be charged to the next point.
settle() {
    local i a b busy
    # The previous point's dirty pages (the ceiling writes ~1.6 million rows)
    # are flushed now, not by a checkpoint in the middle of the next point.
    "${PSQL[@]}" -d postgres -c CHECKPOINT >/dev/null 2>&1 || true
    for ((i = 0; i < 60; i++)); do
        a=$(cpu_snapshot | awk '$1 != "machine" { s += $2 } END { print s }')
        sleep 1
        b=$(cpu_snapshot | awk '$1 != "machine" { s += $2 } END { print s }')
        busy=$(( (b - a) * 100 / HZ ))   # % of one core over that second
        ((busy < 10)) && return 0
    done
    say "the cluster is still busy (${busy}% of a core) after 60 s; going on"
}

# ---- one chat-bench point -----------------------------------------------------------
# point NAME TITLE chat-bench-args... : runs it with --json, saves JSON, CPU, command.
point() {
    local name=$1 title=$2; shift 2
    check_all_alive
    settle
    local left=$((BUDGET_S - (SECONDS - T_START)))
    if ((left < 30)); then
        say "point $name skipped: the run's time budget is spent"
        printf '%s\t%s\n' "$name" "SKIPPED (time budget): chat-bench ${*} --json" >>"$COMMANDS"
        return 0
    fi
    ((left > 300)) && left=300
    say "point $name: $title"
    local cmd=("$BIN/chat-bench" "$@" --json)
    printf '%s\t%s\n' "$name" "chat-bench ${*} --json" >>"$COMMANDS"
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu_snapshot >"$POINTS/$name.cpu0"
    order_snapshot >"$POINTS/$name.order0"
    local t0=$EPOCHREALTIME rc=0 bpid
    timeout "$left" "${cmd[@]}" >"$POINTS/$name.json" 2>"$POINTS/$name.log" &
    bpid=$!
    [[ -n "${POINT_HOOK:-}" ]] && "$POINT_HOOK" "$name"
    wait "$bpid" || rc=$?
    local t1=$EPOCHREALTIME
    cpu_snapshot >"$POINTS/$name.cpu1"
    order_snapshot >"$POINTS/$name.order1"
    "$PY" - "$POINTS/$name.order0" "$POINTS/$name.order1" "$POINTS/$name.order.json" <<'EOF'
import json, sys
def read(p):
    return {l.split()[0]: float(l.split()[1]) for l in open(p) if len(l.split()) == 2}
a, b = read(sys.argv[1]), read(sys.argv[2])
d = {k[len("chat_gateway_"):]: (b[k] if k.endswith("_max") else b[k] - a.get(k, 0)) for k in b}
json.dump(d, open(sys.argv[3], "w"))
EOF
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    cpu_json "$POINTS/$name.cpu0" "$POINTS/$name.cpu1" "$wall" >"$POINTS/$name.cpu.json"
    POINT_N=$((POINT_N + 1))
    "$PY" - "$POINTS/$name.meta.json" "$name" "$title" "$wall" "$rc" "$POINT_N" "$load" <<'EOF'
import json, sys
json.dump({"name": sys.argv[2], "title": sys.argv[3], "wall_s": float(sys.argv[4]),
           "rc": int(sys.argv[5]), "order": int(sys.argv[6]), "load1": float(sys.argv[7])},
          open(sys.argv[1], "w"))
EOF
    if [[ $rc -ne 0 ]]; then
        say "point $name: chat-bench exited $rc: $(tail -3 "$POINTS/$name.log" | tr '\n' ' ')"
    fi
}

# ---- the ceiling ----------------------------------------------------------------------
BODY="t=1732550000000000000;n=123456"
ROW="INSERT INTO messages (conversation_id, seq, sender, client_msg_id, body, ts) SELECT md5('c' || :client_id)::uuid, s, md5('u' || :client_id)::uuid, s::text, '$BODY', 1732550000000 FROM nextval('ceiling_seq') AS s;"

ceiling() {  # name rows_per_tx clients seconds
    local name=$1 rows=$2 clients=$3 secs=$4 script=$STATE/$1.sql i
    if [[ $rows -eq 1 ]]; then
        echo "$ROW" >"$script"
    else
        # One transaction of N single-row INSERTs in pipeline mode: the shape
        # of svc-message's group commit.
        { echo '\startpipeline'; echo 'BEGIN;'
          for ((i = 0; i < rows; i++)); do echo "$ROW"; done
          echo 'COMMIT;'; echo '\endpipeline'; } >"$script"
    fi
    local cmd=(pgbench -n -M prepared -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$clients" -j 2
               -T "$secs" -f "$script" ceiling)
    say "ceiling $name: $rows row(s) per transaction, $clients clients, ${secs}s"
    printf '%s\t%s\n' "$name" "${cmd[*]}  # script: $( [[ $rows -eq 1 ]] && echo "$ROW" || echo "BEGIN; $rows x the same INSERT; COMMIT in one pipeline")" >>"$COMMANDS"
    cpu_snapshot >"$POINTS/$name.cpu0"
    local t0=$EPOCHREALTIME
    "${cmd[@]}" >"$POINTS/$name.pgbench" 2>&1 || die "pgbench failed: $(tail -3 "$POINTS/$name.pgbench")"
    local t1=$EPOCHREALTIME
    cpu_snapshot >"$POINTS/$name.cpu1"
    local wall tps
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    cpu_json "$POINTS/$name.cpu0" "$POINTS/$name.cpu1" "$wall" >"$POINTS/$name.cpu.json"
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$POINTS/$name.pgbench")
    [[ -n "$tps" ]] || die "no tps in pgbench output: $POINTS/$name.pgbench"
    "$PY" - "$POINTS/$name.ceiling.json" "$name" "$rows" "$clients" "$secs" "$tps" "$wall" <<'EOF'
import json, sys
_, out, name, rows, clients, secs, tps, wall = sys.argv
json.dump({"name": name, "rows_per_tx": int(rows), "clients": int(clients), "seconds": float(secs),
           "tps": float(tps), "rows_per_s": round(float(tps) * int(rows), 1), "wall_s": float(wall)},
          open(out, "w"))
EOF
    say "ceiling $name: $tps transactions/s"
}

# ---- machine facts ----------------------------------------------------------------------
machine_facts() {
    "$PY" - "$POINTS/machine.json" <<EOF
import json, os, platform, subprocess, sys
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
mem = {l.split(':')[0]: l.split(':')[1].strip() for l in open('/proc/meminfo')}
model = ""
for l in open('/proc/cpuinfo'):
    if l.startswith('model name'):
        model = l.split(':', 1)[1].strip(); break
facts = {
  "nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem.get("MemTotal", ""),
  "kernel": platform.release(), "os": sh(". /etc/os-release && echo \$PRETTY_NAME"),
  "open_files": sh("ulimit -n"),
  "git_commit": os.environ.get("CHAT_BENCH_COMMIT") or sh("git -C '$ROOT' rev-parse --short HEAD 2>/dev/null") or "unknown",
  "git_dirty": "0" if os.environ.get("CHAT_BENCH_COMMIT") else sh("git -C '$ROOT' status --porcelain --untracked-files=no 2>/dev/null | wc -l"),
  "postgresql": sh("'$PG_BIN/postgres' --version"),
  "redis": sh("redis-server --version"),
  "libwebsockets": sh("dpkg-query -W -f='\${Version}' libwebsockets-dev 2>/dev/null"),
  "nng": sh("dpkg-query -W -f='\${Version}' libnng-dev 2>/dev/null"),
  "protobuf_c": sh("pkg-config --modversion libprotobuf-c"),
  "hiredis": sh("pkg-config --modversion hiredis"),
  "cc": sh("cc --version | head -1"),
  "pg_settings": sh("psql -X -h 127.0.0.1 -p $PG_PORT -U postgres -d chat -tAc \"SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','wal_sync_method','shared_buffers','max_connections','full_page_writes','commit_delay')\""),
  "date": sh("date -u +%Y-%m-%dT%H:%MZ"),
  "env_overrides": " ".join(sorted(k + "=" + v for k, v in os.environ.items() if k.startswith("CHAT_")
      and k not in ("CHAT_SESSION_SECRET", "CHAT_RATE_PER_MIN", "CHAT_LOG_LEVEL", "CHAT_PG_DSN", "CHAT_REDIS_HOST",
                    "CHAT_REDIS_PORT", "CHAT_GATEWAY_BIND") and not k.endswith(("_LISTEN", "_ADDRS"))
      and not k.startswith("CHAT_BENCH_") and k != "CHAT_PG_BIN")) or "none",
  "load_before": " ".join(open("/proc/loadavg").read().split()[0:3]),
}
json.dump(facts, open(sys.argv[1], "w"), indent=1)
EOF
}

# ==== run =====================================================================================
common_env
start_postgres
start_redis
start_services
start_gateways 1
check_all_alive
GW1=ws://127.0.0.1:$GW_PORT/ws
ALL_GW=$GW1
for ((g = 2; g <= GATEWAYS; g++)); do ALL_GW+=",ws://127.0.0.1:$((GW_PORT + g - 1))/ws"; done
gw_pids() {  # comma-separated pids of gateways 1..N
    local g out=""
    for ((g = 1; g <= $1; g++)); do out+="${out:+,}${PID[gateway$g]}"; done
    echo "$out"
}

if [[ $CLUSTER_ONLY -eq 1 ]]; then
    use_gateways $GATEWAYS
    say "cluster ready: $ALL_GW (pids: gateways $(gw_pids $GATEWAYS)); logs in $STATE/logs; Ctrl-C stops"
    KEEP=1
    while true; do check_all_alive; sleep 1; done
fi

machine_facts
migrate_ceiling

if [[ $QUICK -eq 1 ]]; then
    CEIL_S=3 CHAT_S=3 MATCH_S=3 IDLE_HOLD=2
    IDLE1=2000 IDLE4=4000 STORM=1000 RATES=(10 20) PAIRS=100 MATCH_USERS=200
    KILL_AT_S=1 KILL_DOWN_S=1
else
    CEIL_S=10 CHAT_S=15 MATCH_S=15 IDLE_HOLD=10
    IDLE1=19000 IDLE4=64000 STORM=10000 RATES=(10 20 40 80) PAIRS=250 MATCH_USERS=1000
    KILL_AT_S=5 KILL_DOWN_S=3
fi

# 1. the ceiling: what PostgreSQL alone stores durably, same machine, same settings
ceiling ceiling_single 1 8 "$CEIL_S"
ceiling ceiling_multi 100 2 "$CEIL_S"

# 2. chat: both users of each pair send; 10 msg/s each = 5,000 msg/s offered, then more
use_gateways 1
for r in "${RATES[@]}"; do
    point "chat_r$r" "chat, $PAIRS pairs x 2 senders x $r msg/s, one gateway" \
        chat --url "$GW1" --pairs "$PAIRS" --rate "$r" --duration "$CHAT_S" --drain 30 --ramp 2000 -q
done
point chat_dm "chat over DMs (open_dm), $PAIRS pairs x 2 senders x ${RATES[0]} msg/s, one gateway" \
    chat --url "$GW1" --conv dm --pairs "$PAIRS" --rate "${RATES[0]}" --duration "$CHAT_S" --drain 30 \
    --ramp 2000 -q
use_gateways 2
point chat_2gw "chat, $PAIRS pairs x 2 senders x ${RATES[0]} msg/s, each pair across two gateways" \
    chat --url "$GW1,ws://127.0.0.1:$((GW_PORT + 1))/ws" --pairs "$PAIRS" --rate "${RATES[0]}" \
    --duration "$CHAT_S" --drain 30 --ramp 2000 -q

# 2b. two svc-message replicas behind one gateway (next to chat_r${RATES[1]}), then
# the same at 5,000 msg/s while one replica is killed and started again
start_msg2
GW_ENV=(CHAT_MESSAGE_ADDRS=$MSG_REP,$MSG2_REP CHAT_EVENTS_ADDRS=$MSG_PUB,$MSG2_PUB,$MATCH_PUB,$PRES_PUB)
use_gateways 1
point "chat_r${RATES[1]}_2msg" "chat, $PAIRS pairs x 2 senders x ${RATES[1]} msg/s, one gateway, two svc-message replicas" \
    chat --url "$GW1" --pairs "$PAIRS" --rate "${RATES[1]}" --duration "$CHAT_S" --drain 30 --ramp 2000 -q
POINT_HOOK=kill_hook point chat_kill "chat, $PAIRS pairs x 2 senders x ${RATES[0]} msg/s, two svc-message replicas, one killed (-9) after ${KILL_AT_S} s and started ${KILL_DOWN_S} s later" \
    chat --url "$GW1" --pairs "$PAIRS" --rate "${RATES[0]}" --duration "$CHAT_S" --drain 30 --ramp 2000 -q
stop_pid svc-message.2
GW_ENV=()

# 3. match
use_gateways 1
point match "match, $MATCH_USERS users searching and ending chats, one gateway" \
    match --url "$GW1" --conns "$MATCH_USERS" --duration "$MATCH_S" --ramp 2000 -q

# 4. idle: memory per connection on fresh gateways
use_gateways 1
point idle_1gw "idle, $IDLE1 connections on one gateway (2 chat-bench processes)" \
    idle --url "$GW1" --conns "$IDLE1" --procs 2 --ramp 2000 --duration "$IDLE_HOLD" \
    --connect-timeout 30 --setup-timeout 150 --gateway-pid "$(gw_pids 1)" -q
use_gateways 4
point idle_4gw "idle, $IDLE4 connections over 4 gateways, 4 chat-bench processes, 4 source addresses" \
    idle --url "$ALL_GW" --conns "$IDLE4" --procs 4 --bind 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
    --ramp 2000 --connect-timeout 30 --setup-timeout 240 --duration "$IDLE_HOLD" \
    --gateway-pid "$(gw_pids 4)" -q

# 5. storm: drop them all at once, resume with backoff and jitter
use_gateways 1
point storm "storm, $STORM connections on one gateway dropped at once" \
    storm --url "$GW1" --conns "$STORM" --ramp 2000 --duration 30 --jitter-ms 1000 \
    --backoff-ms 100 --backoff-max-ms 5000 -q

check_all_alive
"$PY" - "$POINTS/machine.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["load_after"] = " ".join(open("/proc/loadavg").read().split()[0:3])
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
TOTAL_S=$((SECONDS - T_START))
say "all points done in ${TOTAL_S}s; writing $OUT"
"$PY" "$ROOT/bench/report.py" --points "$POINTS" --commands "$COMMANDS" --out "$OUT" \
    --total-s "$TOTAL_S" $( [[ $QUICK -eq 1 ]] && echo --quick )
say "done"
