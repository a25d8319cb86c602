# Shared by the deploy.k8s_* checks (sourced). Renders deploy/k8s offline.
K8S_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$K8S_TESTS/../../.." && pwd)
K8S_SRC=$ROOT/deploy/k8s

say() { printf '%s: %s\n' "$CHECK" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$CHECK" "$*" >&2; exit 1; }

# The kustomizations: base and every overlay (each dir with a kustomization).
k8s_targets() {
    echo base
    local d
    for d in "$K8S_SRC"/overlays/*/; do
        [[ -f $d/kustomization.yaml ]] && echo "overlays/$(basename "$d")"
    done
    return 0
}

# render OUT: kubectl kustomize of base and of every overlay into
# OUT/<name>.yaml (base.yaml, dev.yaml, prod.yaml ...), from a copy of
# deploy/k8s whose overlays/dev/tls is made anew by deploy/tls/gen-certs.sh
# (the real one is git-ignored and may be missing). Never talks to a cluster:
# KUBECONFIG=/dev/null, and kustomize needs no API server.
render() {
    local out=$1 work t name
    command -v kubectl >/dev/null ||
        fail "kubectl not found in PATH (install kubectl >= 1.27; it is not a Debian package)"
    command -v openssl >/dev/null || fail "openssl not found (apt-get install openssl)"
    work=$(mktemp -d)
    cp -r "$K8S_SRC" "$work/k8s"
    rm -rf "$work/k8s/overlays/dev/tls"
    "$ROOT/deploy/tls/gen-certs.sh" "$work/k8s/overlays/dev/tls" >/dev/null ||
        { rm -rf "$work"; fail "deploy/tls/gen-certs.sh failed"; }
    local n=0
    for t in $(k8s_targets); do
        name=$(basename "$t")
        if ! KUBECONFIG=/dev/null timeout 60 kubectl kustomize "$work/k8s/$t" \
            >"$out/$name.yaml" 2>"$out/$name.err"; then
            sed "s|$work/k8s|deploy/k8s|g" "$out/$name.err" >&2
            rm -rf "$work"
            fail "kubectl kustomize deploy/k8s/$t failed"
        fi
        n=$((n + 1))
    done
    rm -rf "$work"
    [[ -s $out/dev.yaml && -s $out/prod.yaml ]] || fail "deploy/k8s needs at least overlays/dev and overlays/prod"
}

# The npm packages of package-lock.json (tests/run.sh runs npm ci; this does
# it too when they are missing, one at a time).
need_node_modules() {
    command -v node >/dev/null || fail "node not found (apt-get install nodejs npm)"
    local want have
    want=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/@kubernetes/client-node"].version)' \
        "$K8S_TESTS/package-lock.json")
    have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("none") }' \
        "$K8S_TESTS/node_modules/@kubernetes/client-node/package.json")
    if [[ $want != "$have" || ! -d $K8S_TESTS/node_modules/js-yaml ]]; then
        say "npm ci in tests/deploy/k8s (@kubernetes/client-node $have, lockfile $want)"
        (cd "$K8S_TESTS" && flock "$K8S_TESTS/package-lock.json" \
            timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
            fail "npm ci in tests/deploy/k8s failed"
    fi
}
