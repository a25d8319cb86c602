#!/usr/bin/env bash
# Builds the chat image (deploy/images/Dockerfile) with podman, without any
# registry: the Debian 12 base is made here with debootstrap. See --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/deploy/images
BASE_IMAGE=localhost/debian:bookworm-chat-base
VERSION=0.9.0
STATE=${CHAT_IMAGES_STATE:-/var/tmp/chat-images}

usage() {
    cat <<EOF
Usage: deploy/images/build.sh [--rebuild-base] [--no-deps] [--help]

Makes the image chat:$VERSION (also tagged chat:latest; podman calls them
localhost/chat:...) from deploy/images/Dockerfile, the repository root as the
build context:
  1. installs podman, runc, catatonit, containernetworking-plugins and
     debootstrap with apt-get when one is missing (--no-deps: don't);
  2. makes the base image $BASE_IMAGE with
     debootstrap --variant=minbase bookworm from this machine's Debian mirror,
     stripped of apt lists, docs, man pages and locales; kept, and only made
     again with --rebuild-base;
  3. podman build --network host with BASE_IMAGE set to that base;
  4. removes the chat images this build replaced (podman image prune, for
     the images labelled as the chat image or its build stage only). The
     build stage stays tagged localhost/chat-build:cache (the build cache).
Prints how long each step took and the image's size.

podman's settings: deploy/images/podman-env.sh (runc, cgroupfs, vfs storage)
unless the machine has its own containers.conf / storage.conf.

Environment:
  CHAT_IMAGES_STATE   scratch dir for the base's root filesystem and a lock
                      [/var/tmp/chat-images]
  CHAT_DEBIAN_MIRROR  Debian mirror for the base [the one apt uses here,
                      else http://deb.debian.org/debian]
  CHAT_DEBIAN_SECURITY_MIRROR  [likewise, else
                      http://deb.debian.org/debian-security]
EOF
}

REBUILD_BASE=0 DEPS=1
for arg in "$@"; do
    case $arg in
    --rebuild-base) REBUILD_BASE=1 ;;
    --no-deps) DEPS=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '[images/build] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
T0=$SECONDS PHASE_T=$SECONDS
phase_done() { say "$1 took $((SECONDS - PHASE_T)) s"; PHASE_T=$SECONDS; }

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap and podman's vfs storage need it)"

# ---- 1. tools -------------------------------------------------------------------
if [[ $DEPS -eq 1 ]]; then
    need=()
    for p in podman runc catatonit containernetworking-plugins debootstrap; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] ||
            need+=("$p")
    done
    if [[ ${#need[@]} -gt 0 ]]; then
        say "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    phase_done "tools"
fi
command -v podman >/dev/null || die "podman is not installed (drop --no-deps)"
# shellcheck source=deploy/images/podman-env.sh
. "$HERE/podman-env.sh"
say "podman $(podman version --format '{{.Client.Version}}'), storage $(podman info --format '{{.Store.GraphDriverName}}') in $(podman info --format '{{.Store.GraphRoot}}')"

mkdir -p "$STATE"
exec 9>"$STATE/build.lock"
flock -w 1800 9 || die "another build.sh holds $STATE/build.lock"

# ---- 2. base image ----------------------------------------------------------------
# The mirror apt uses on this machine for SUITE: the first URI of a deb822
# stanza (sources.list.d/*.sources) or a one-line "deb" entry naming it.
apt_mirror() {  # suite -> URI, or nothing
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        if [[ $f == *.sources ]]; then
            awk -v s="$1" '
                function flush() { if (uris != "" && (" " suites " ") ~ (" " s " ") && debs) { print uris; exit } uris = ""; suites = ""; debs = 0 }
                /^[ \t]*$/ { flush(); next }
                /^[ \t]*#/ { next }
                tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") debs = 1 }
                tolower($1) == "uris:" { uris = $2 }
                tolower($1) == "suites:" { suites = ""; for (i = 2; i <= NF; i++) suites = suites " " $i }
                END { flush() }' "$f"
        else
            awk -v s="$1" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit } }' "$f"
        fi
    done | head -n 1
}

make_base() {
    local mirror security rootfs
    mirror=${CHAT_DEBIAN_MIRROR:-$(apt_mirror bookworm)}
    mirror=${mirror:-http://deb.debian.org/debian}
    security=${CHAT_DEBIAN_SECURITY_MIRROR:-$(apt_mirror bookworm-security)}
    security=${security:-http://deb.debian.org/debian-security}
    [[ $mirror =~ ^https?:// ]] || die "Debian mirror '$mirror' is not an http(s) URL"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (drop --no-deps)"
    rootfs=$STATE/rootfs
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    say "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 || {
        tail -n 20 "$STATE/debootstrap.log" >&2
        die "debootstrap failed (log: $STATE/debootstrap.log)"
    }
    # apt sources as this machine has them (updates and security too).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # As debian:bookworm-slim: no docs, man pages or locales from later
    # installs either, no apt caches, no recommends.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-chat-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/01-chat-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Binary::apt::APT::Keep-Downloaded-Packages "false";
Acquire::Languages "none";
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
        "$rootfs"/root/.bash_history
    # podman mounts its own; empty placeholders, not this machine's.
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    : >"$rootfs/etc/machine-id" 2>/dev/null || true
    podman image rm -f "$BASE_IMAGE" >/dev/null 2>&1 || true
    tar --numeric-owner --xattrs -C "$rootfs" -c . |
        podman import --change 'CMD ["/bin/bash"]' \
            --message "debootstrap --variant=minbase bookworm $mirror" - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "base $BASE_IMAGE: $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec) bytes"
}

if [[ $REBUILD_BASE -eq 0 ]] && podman image exists "$BASE_IMAGE"; then
    say "base $BASE_IMAGE exists (--rebuild-base makes it anew)"
else
    make_base
fi
phase_done "base"

# ---- 3. the image -------------------------------------------------------------------
REV=""
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    REV=$(git -C "$ROOT" rev-parse --short=10 HEAD)
fi
say "podman build chat:$VERSION (revision ${REV:-unknown})"
cd "$ROOT"
BUILD_ARGS=(--network host --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg CHAT_GIT_REV="$REV"
    -f deploy/images/Dockerfile)
# The build stage first, tagged, so that its layers (the compilers' and
# -dev packages' layer above all) stay in the cache and the prune below
# cannot take them; the whole build then finds that stage cached.
podman build "${BUILD_ARGS[@]}" --target build -t localhost/chat-build:cache . ||
    die "podman build (build stage) failed"
podman build "${BUILD_ARGS[@]}" -t "chat:$VERSION" -t chat:latest . ||
    die "podman build failed"
phase_done "build"

# ---- 4. clean up ------------------------------------------------------------------------
# Earlier chat images that lost their tags to this one, and the build stages
# of earlier sources (no tag, no child). The base, localhost/chat-build:cache
# and everything under the current images stay.
podman image prune -f --filter label=org.opencontainers.image.title=chat >/dev/null || true
podman image prune -f --filter label=chat.stage=build >/dev/null || true
phase_done "prune"

size=$(podman image inspect --format '{{.Size}}' "localhost/chat:$VERSION")
say "localhost/chat:$VERSION and localhost/chat:latest: $(podman image inspect --format '{{.Id}}' "localhost/chat:$VERSION" | cut -c1-12), $(numfmt --to=iec "$size") ($size bytes)"
say "disk: $(df -h --output=avail "$(podman info --format '{{.Store.GraphRoot}}')" | tail -n 1 | tr -d ' ') free under the storage"
say "total $((SECONDS - T0)) s"
