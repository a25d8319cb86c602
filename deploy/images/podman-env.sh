# Sourced (not run) by build.sh, smoke.sh and any other script that runs the
# chat images with podman:   . deploy/images/podman-env.sh
# On a machine without a podman configuration of its own (no
# /etc/containers/{containers,storage}.conf, nothing under
# ~/.config/containers, no CONTAINERS_CONF / CONTAINERS_STORAGE_CONF set), it
# points podman at deploy/images/podman/: runc, cgroupfs, file event log,
# nofile 4096, vfs storage in /var/lib/containers/storage. Every script that
# uses the same images must source it too: podman refuses a storage whose
# driver differs from the one it was made with.
_chat_podman_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/podman
if [[ -z ${CONTAINERS_CONF:-} && ! -e /etc/containers/containers.conf &&
      ! -e ${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf ]]; then
    export CONTAINERS_CONF=$_chat_podman_dir/containers.conf
fi
if [[ -z ${CONTAINERS_STORAGE_CONF:-} && ! -e /etc/containers/storage.conf &&
      ! -e ${XDG_CONFIG_HOME:-$HOME/.config}/containers/storage.conf ]]; then
    export CONTAINERS_STORAGE_CONF=$_chat_podman_dir/storage.conf
fi
unset _chat_podman_dir
