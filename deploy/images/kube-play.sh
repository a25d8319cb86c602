#!/usr/bin/env bash
# The Kubernetes dev overlay (deploy/k8s/overlays/dev) run by podman kube play
# on this machine, from the built image. See --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/deploy/images
# shellcheck source=deploy/images/lib.sh
. "$HERE/lib.sh"
SKIP=77   # ctest's SKIP_RETURN_CODE for deploy.images_kube_play

usage() {
    cat <<EOF
Usage: deploy/images/kube-play.sh [--keep] [--help]

Renders deploy/k8s/overlays/dev (KUBECONFIG=/dev/null kubectl kustomize, with
certificates made by deploy/tls/gen-certs.sh in a copy of deploy/k8s), turns
it into what podman kube play can run on one machine
(deploy/images/kube_play_yaml.py says what and why: host network and free
127.0.0.1 ports, the programs' hosts file for the Service names, hostPath
directories for the Secrets, this machine's PostgreSQL and Redis instead of
the StatefulSets), plays it, and checks: every pod's container ready through
chat-healthcheck, the container settings the manifests ask for (uid 10001,
read-only root, capabilities dropped), two WebSocket users chatting through
the gateway pod, \`chatctl status\` in the gateway pod listing all four kinds
ready. Then podman kube down, and PostgreSQL and Redis stopped.

Exit 0 passed, 1 failed, $SKIP skipped (no deploy/k8s/overlays/dev, no kubectl,
no python3-yaml, or no image: run deploy/images/build.sh).
  --keep   keep the scratch dir (rendered and played YAML, logs)
Environment: CHAT_SMOKE_READY_TIMEOUT_S [90], CHAT_PG_BIN.
EOF
}
KEEP=0
for arg in "$@"; do
    case $arg in
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "kube-play.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done
READY_TIMEOUT_S=${CHAT_SMOKE_READY_TIMEOUT_S:-90}
IMAGE=localhost/chat:0.9.0

T0=$SECONDS
say() { printf '[images/kube-play] %s\n' "$*" >&2; }
FAILED=0
die() { say "FAILED: $*"; FAILED=1; exit 1; }
skip() { say "SKIPPED: $*"; exit "$SKIP"; }
ok() { say "ok: $*"; }

[[ $(id -u) -eq 0 ]] || die "run as root"
[[ -f $ROOT/deploy/k8s/overlays/dev/kustomization.yaml ]] || skip "no deploy/k8s/overlays/dev"
command -v kubectl >/dev/null || skip "kubectl not found (not a Debian package)"
"$PY" -c 'import yaml' 2>/dev/null || skip "python3-yaml is not installed"
command -v podman >/dev/null || skip "podman is not installed (deploy/images/build.sh installs it)"
# shellcheck source=deploy/images/podman-env.sh
. "$HERE/podman-env.sh"
podman image exists "$IMAGE" || skip "no image $IMAGE: run deploy/images/build.sh first"

# The pods' names come from the manifests: one run at a time.
mkdir -p "${CHAT_IMAGES_STATE:-/var/tmp/chat-images}"
exec 8>"${CHAT_IMAGES_STATE:-/var/tmp/chat-images}/kube-play.lock"
flock -w 600 8 || die "another kube-play.sh holds the lock"

WORK=$(mktemp -d /var/tmp/chat-kube-play.XXXXXX)
chmod 755 "$WORK"
PLAYED=0 CONTAINERS=()
cleanup() {
    local rc=$? c
    trap '' INT TERM
    [[ $rc -eq 0 || $rc -eq $SKIP ]] || FAILED=1
    if [[ $PLAYED -eq 1 ]]; then
        for c in "${CONTAINERS[@]}"; do
            [[ $FAILED -eq 0 ]] || { say "--- last lines of $c:"; podman logs --tail 20 "$c" 2>&1 | sed 's/^/    /' >&2 || true; }
            podman logs "$c" >"$WORK/$c.log" 2>&1 || true
        done
        # Only what this YAML made. podman 4.3 logs errors here about
        # healthcheck timers (no systemd) and the shared tmp volume; harmless.
        podman kube down "$WORK/play.yaml" >"$WORK/kube-down.log" 2>&1 || say "podman kube down failed: see $WORK/kube-down.log"
    fi
    stop_host_deps
    if [[ $KEEP -eq 1 || $FAILED -eq 1 ]]; then
        say "scratch dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    [[ $rc -eq $SKIP ]] && return
    if [[ $FAILED -eq 0 ]]; then say "PASSED in $((SECONDS - T0)) s"; else say "FAILED after $((SECONDS - T0)) s"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. render the dev overlay, offline ---------------------------------------------------
cp -r "$ROOT/deploy/k8s" "$WORK/k8s"
rm -rf "$WORK/k8s/overlays/dev/tls"
"$ROOT/deploy/tls/gen-certs.sh" "$WORK/k8s/overlays/dev/tls" || die "gen-certs.sh failed"
KUBECONFIG=/dev/null timeout 60 kubectl kustomize "$WORK/k8s/overlays/dev" >"$WORK/dev.yaml" ||
    die "kubectl kustomize deploy/k8s/overlays/dev failed"
ok "rendered deploy/k8s/overlays/dev: $(grep '^kind: ' "$WORK/dev.yaml" | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $3}')"

# ---- 2. PostgreSQL, Redis, the YAML podman plays --------------------------------------------
MANIFEST_PORTS=(7103 7201 7202 7203 7204 7301 7302 7303 7304 7401 7402 7403 7404 8080)
read -r -a FREE <<<"$(free_ports $((${#MANIFEST_PORTS[@]} + 2)))"
[[ ${#FREE[@]} -eq $((${#MANIFEST_PORTS[@]} + 2)) ]] || die "could not find free ports"
PG_PORT=${FREE[0]} REDIS_PORT=${FREE[1]}
declare -A PORT
map="{"
for i in "${!MANIFEST_PORTS[@]}"; do
    PORT[${MANIFEST_PORTS[$i]}]=${FREE[$((i + 2))]}
    map+="\"${MANIFEST_PORTS[$i]}\": ${FREE[$((i + 2))]},"
done
map="${map%,}}"
start_postgres "$PG_PORT"
start_redis "$REDIS_PORT"
ok "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
"$PY" "$HERE/kube_play_yaml.py" "$WORK/dev.yaml" "$WORK" "$map" "$PG_PORT" "$REDIS_PORT" >&2 ||
    die "kube_play_yaml.py failed"

# ---- 3. play ----------------------------------------------------------------------------------
KINDS=(message match presence gateway)
CONTAINERS=() HTTP=()
for k in "${KINDS[@]}"; do
    CONTAINERS+=("svc-$k-pod-0-svc-$k")
    case $k in
    gateway) HTTP+=("${PORT[8080]}") ;;
    message) HTTP+=("${PORT[7204]}") ;;
    match) HTTP+=("${PORT[7304]}") ;;
    presence) HTTP+=("${PORT[7404]}") ;;
    esac
done
for c in "${CONTAINERS[@]}"; do
    ! podman container exists "$c" || die "a container $c exists already (an earlier run's? podman rm -f it)"
done
PLAYED=1
timeout 300 podman kube play "$WORK/play.yaml" >"$WORK/kube-play.log" 2>&1 ||
    { cat "$WORK/kube-play.log" >&2; die "podman kube play failed"; }
ok "podman kube play: $(podman pod ps --format '{{.Name}}' | grep -c -- '-pod-0$') pods"
t_start=$SECONDS
for i in "${!CONTAINERS[@]}"; do
    wait_healthy "${CONTAINERS[$i]}" "svc-${KINDS[$i]}" "http://127.0.0.1:${HTTP[$i]}/readyz" \
        $((READY_TIMEOUT_S - (SECONDS - t_start)))
    pexec "${CONTAINERS[$i]}" chat-healthcheck "http://127.0.0.1:${HTTP[$i]}/healthz" ||
        die "svc-${KINDS[$i]}: /healthz not 200"
done
ok "every pod's container ready ($((SECONDS - t_start)) s after kube play), /healthz 200"

# ---- 4. what podman made of the manifests' settings --------------------------------------------
for c in "${CONTAINERS[@]}"; do
    got=$(pexec "$c" id -u)
    [[ $got == 10001 ]] || die "$c runs as uid $got"
    [[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c") == true ]] ||
        die "$c: readOnlyRootFilesystem not applied"
    caps=$(podman inspect --format '{{.EffectiveCaps}}' "$c")
    [[ $caps == "[]" ]] || die "$c keeps capabilities $caps (the manifests drop ALL)"
done
ok "uid 10001, read-only root, no capabilities in every pod (as the manifests say)"
say "podman 4.3 made the probes healthchecks: $(podman inspect --format '{{json .Config.Healthcheck.Test}}' "${CONTAINERS[3]}") (no curl in the image, and no systemd timer here runs them)"

# ---- 5. a chat through the gateway pod, chatctl in it -------------------------------------------
"$PY" "$HERE/smoke_client.py" "ws://127.0.0.1:${PORT[8080]}/ws" || die "the WebSocket chat through the gateway pod"
ok "two WebSocket users matched and exchanged messages through the pods"
# As deploy/k8s/README.md's kubectl exec: the gateway pod has chatctl, the
# admin addresses (ConfigMap), the token and a certificate of the cluster's CA.
status_json=$(pexec "${CONTAINERS[3]}" chatctl status --json 2>"$WORK/chatctl.err") ||
    { cat "$WORK/chatctl.err" >&2; die "chatctl status in the gateway pod failed: $status_json"; }
"$PY" - "$status_json" <<'EOF' || die "chatctl status: $status_json"
import json, sys
doc = json.loads(sys.argv[1])
assert "errors" not in doc, doc["errors"]
procs = doc["processes"]
assert sorted(p["kind"] for p in procs) == ["gateway", "match", "message", "presence"], procs
for p in procs:
    assert p["reachable"] is True and p["ready"] is True, p
print("\n".join(f"    {p['kind']:<9} {p['id']:<20} {p['address']:<40} ready" for p in procs), file=sys.stderr)
EOF
ok "chatctl status in the gateway pod: gateway, message, match and presence ready"
