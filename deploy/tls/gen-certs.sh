#!/usr/bin/env bash
# Makes the internal plane's TLS material: a private CA and one certificate per
# program kind, each usable as server and as client (mutual TLS on every nng
# socket; see docs/DEPLOY.md "The internal plane").
#
#   deploy/tls/gen-certs.sh DIR            make what is missing in DIR
#   deploy/tls/gen-certs.sh --force DIR    make everything anew (a new CA too)
#   deploy/tls/gen-certs.sh --days N DIR   leaf lifetime (default 365 days)
#
# DIR gets ca.crt and ca.key, and KIND.crt / KIND.key for KIND in gateway,
# message, match, presence and chatctl. Every certificate names
# DNS:chat-internal (what every dialer checks, CHAT_TLS_SERVER_NAME's
# default), DNS:svc-KIND, DNS:localhost and IP:127.0.0.1. Existing files are
# kept, so a rerun is harmless; a leaf whose CA changed is remade. Keys are
# ECDSA P-256, mode 0600. Needs the openssl command.
set -euo pipefail

FORCE=0 DAYS=365
while [[ $# -gt 1 ]]; do
    case $1 in
    --force) FORCE=1; shift ;;
    --days) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "gen-certs: --days needs a number" >&2; exit 2; }
        DAYS=$2; shift 2 ;;
    *) break ;;
    esac
done
[[ $# -eq 1 && $1 != -* ]] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DIR=$1
KINDS=(gateway message match presence chatctl)
mkdir -p "$DIR"
umask 077

if [[ $FORCE -eq 1 ]]; then
    rm -f "$DIR/ca.crt" "$DIR/ca.key"
    for k in "${KINDS[@]}"; do rm -f "$DIR/$k.crt" "$DIR/$k.key"; done
fi

if [[ ! -s "$DIR/ca.crt" || ! -s "$DIR/ca.key" ]]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -days 3650 -subj "/CN=chat internal CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
    for k in "${KINDS[@]}"; do rm -f "$DIR/$k.crt"; done # signed by the old CA
fi

for k in "${KINDS[@]}"; do
    if [[ -s "$DIR/$k.crt" && -s "$DIR/$k.key" ]] &&
        openssl verify -CAfile "$DIR/ca.crt" "$DIR/$k.crt" >/dev/null 2>&1; then
        continue
    fi
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=DNS:chat-internal,DNS:svc-$k,DNS:localhost,IP:127.0.0.1" >"$ext"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$DIR/$k.key" -out "$DIR/$k.csr" -subj "/CN=chat $k" 2>/dev/null
    openssl x509 -req -in "$DIR/$k.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
        -out "$DIR/$k.crt" -days "$DAYS" -extfile "$ext" 2>/dev/null
    rm -f "$DIR/$k.csr" "$ext"
done
rm -f "$DIR/ca.srl"
chmod 600 "$DIR"/*.key
chmod 644 "$DIR"/*.crt
