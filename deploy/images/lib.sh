# Sourced by deploy/images/smoke.sh and kube-play.sh: free loopback ports, and
# PostgreSQL and Redis as host processes in a scratch dir. The caller sets
# WORK (the scratch dir) and defines say/die; stop_host_deps undoes
# start_postgres and start_redis (by pid and data dir, nothing else).

PG_BIN=${CHAT_PG_BIN:-/usr/lib/postgresql/15/bin}
PY=/usr/bin/python3
REDIS_PID="" PG_STARTED=0

as_postgres() { runuser -u postgres -- "$@"; }

# N free TCP ports on 127.0.0.1, below the kernel's ephemeral range (an
# outgoing connection cannot take one between this check and the listen),
# random, so two runs at once rarely even try the same.
free_ports() {  # n
    "$PY" - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
lo, hi = (20000, low) if low > 22000 else (low // 2, low)
got = []
for _ in range(5000):
    if len(got) == n:
        break
    p = random.randrange(lo, hi)
    if p in got:
        continue
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    got.append(p)
if len(got) < n:
    sys.exit("no free ports")
print(" ".join(map(str, got)))
EOF
}

# PostgreSQL on 127.0.0.1:PORT, data in $WORK/pg, database chat owned by the
# role chat (no password: trust on loopback); user postgres works too.
start_postgres() {  # port
    mkdir -m 700 "$WORK/pg"
    chown postgres:postgres "$WORK/pg"
    as_postgres "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$WORK/initdb.log" 2>&1 || die "initdb failed (see $WORK/initdb.log)"
    PG_STARTED=1
    as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $1 -k $WORK/pg -c fsync=off" start >/dev/null ||
        { PG_STARTED=0; die "PostgreSQL did not start (see $WORK/pg/server.log)"; }
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres \
        -c "CREATE ROLE chat LOGIN" -c "CREATE DATABASE chat OWNER chat" >/dev/null ||
        die "could not create the database chat"
}

start_redis() {  # port
    mkdir "$WORK/redis"
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
        --daemonize no >"$WORK/redis.log" 2>&1 </dev/null &
    REDIS_PID=$!
    local i
    for ((i = 0; ; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]] && break
        kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited (see $WORK/redis.log)"
        ((i < 100)) || die "Redis does not answer on 127.0.0.1:$1"
        sleep 0.1
    done
}

stop_host_deps() {
    local i
    if [[ -n $REDIS_PID ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    REDIS_PID=""
    if [[ $PG_STARTED -eq 1 ]]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            say "pg_ctl stop failed; see $WORK/pg/server.log"
    fi
    PG_STARTED=0
}

# Containers' readiness: chat-healthcheck URL run in the container, polled
# until a deadline; a container that stopped fails at once.
pexec() { timeout -k 5 30 podman exec "$@"; }
running() { [[ $(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }
wait_healthy() {  # container name url timeout_s
    local deadline=$((SECONDS + $4))
    until pexec "$1" chat-healthcheck "$3" 2>/dev/null; do
        running "$1" || die "$2 stopped: $(podman inspect --format '{{.State.Status}} (exit {{.State.ExitCode}})' "$1")"
        ((SECONDS < deadline)) || die "$2: $3 not 200 after $4 s: $(pexec "$1" chat-healthcheck "$3" 2>&1)"
        sleep 0.5
    done
}
