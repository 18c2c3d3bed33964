#!/usr/bin/env bash
# Installs (Debian packages) and starts what fastlane and its tests need on
# one machine: a Podman service speaking the Docker API, the busybox test
# image, and a Redis server. Idempotent: run it as often as you like.
#
#   scripts/services.sh            # install + start everything
#   scripts/services.sh engine     # only the container engine and the image
#
# Environment it honours (defaults in brackets):
#   FASTLANE_RUN_DIR      [/run/fastlane]        sockets, pid files, logs
#   FASTLANE_PODMAN_TCP   [127.0.0.1:23750]      a second Docker API listener
#   FASTLANE_REDIS_PORT   [6390]
set -euo pipefail

RUN_DIR=${FASTLANE_RUN_DIR:-/run/fastlane}
PODMAN_SOCK="$RUN_DIR/podman.sock"
PODMAN_TCP=${FASTLANE_PODMAN_TCP:-127.0.0.1:23750}
REDIS_PORT=${FASTLANE_REDIS_PORT:-6390}
what=${1:-all}

log() { printf '[services] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    if [ "$what" = all ]; then
        command -v redis-server >/dev/null || missing+=(redis-server)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            "${missing[@]}" uidmap slirp4netns >/dev/null
    fi
}

configure_podman() {
    # runc, because crun fails on this kernel's hybrid cgroups; equal soft and
    # hard ulimits, because Podman's compat API swaps unequal ones.
    local conf=/etc/containers/containers.conf
    if ! grep -q 'fastlane' "$conf" 2>/dev/null; then
        log "writing $conf"
        as_root mkdir -p /etc/containers
        as_root tee "$conf" >/dev/null <<'CONF'
# written by fastlane scripts/services.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
    fi
}

api_up() { curl -sf --max-time 2 "$@" >/dev/null 2>&1; }

start_podman() {
    mkdir -p "$RUN_DIR"
    if ! api_up --unix-socket "$PODMAN_SOCK" http://d/_ping; then
        log "starting podman on unix://$PODMAN_SOCK"
        rm -f "$PODMAN_SOCK"
        setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" \
            >"$RUN_DIR/podman-unix.log" 2>&1 < /dev/null &
    fi
    if ! api_up "http://$PODMAN_TCP/_ping"; then
        log "starting podman on tcp:$PODMAN_TCP"
        setsid nohup podman system service --time=0 "tcp:$PODMAN_TCP" \
            >"$RUN_DIR/podman-tcp.log" 2>&1 < /dev/null &
    fi
    for _ in $(seq 1 100); do
        if api_up --unix-socket "$PODMAN_SOCK" http://d/_ping && api_up "http://$PODMAN_TCP/_ping"; then
            return 0
        fi
        sleep 0.1
    done
    log "podman did not come up; see $RUN_DIR/podman-*.log"
    return 1
}

build_image() {
    if podman image exists localhost/busybox:latest; then return 0; fi
    log "building localhost/busybox:latest from Debian's busybox-static"
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/rootfs/bin" "$dir/rootfs/tmp" "$dir/rootfs/etc"
    cp /bin/busybox "$dir/rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
    done
    ln -s bin "$dir/rootfs/sbin"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/rootfs/etc/passwd"
    tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
    podman import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
        "$dir/rootfs.tar" localhost/busybox:latest >/dev/null
    rm -rf "$dir"
}

start_redis() {
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
    log "starting redis on 127.0.0.1:$REDIS_PORT"
    mkdir -p "$RUN_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
        --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis.log" --save '' >/dev/null
}

install_packages
configure_podman
start_podman
build_image
if [ "$what" = all ]; then start_redis; fi

cat <<INFO
FASTLANE_TEST_DOCKER_UNIX=unix://$PODMAN_SOCK
FASTLANE_TEST_DOCKER_TCP=$PODMAN_TCP
FASTLANE_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
INFO
