#!/usr/bin/env bash
# Installs (Debian packages) and starts what fastlane and its tests need on
# one machine: a Podman service speaking the Docker API, Docker Engine
# (Debian's docker.io) on a socket and a data root of its own, the busybox
# test image in both, a Redis server, a PostgreSQL cluster of its own (the Postgres store's
# tests), and Chromium with chromedriver for the browser tests
# (tests/src/browser.rs). Idempotent: run it as often as you like.
#
#   scripts/services.sh            # install + start everything
#   scripts/services.sh engine     # only the container engine and the image
#
# Environment it honours (defaults in brackets):
#   FASTLANE_RUN_DIR      [/run/fastlane]        sockets, pid files, logs
#   FASTLANE_PODMAN_TCP   [127.0.0.1:23750]      a second Docker API listener
#   FASTLANE_DOCKERD_TCP  [127.0.0.1:23760]      Docker Engine's loopback listener
#   FASTLANE_DOCKERD_ROOT [/var/lib/fastlane-docker] Docker Engine's data root
#   FASTLANE_REDIS_PORT   [6390]
#   FASTLANE_POSTGRES_PORT [5433]  the `fastlane` cluster's port (when created)
#   FASTLANE_REGISTRY     [127.0.0.1:5050]       the private registry's address
#   FASTLANE_REGISTRY_DIR [/var/lib/fastlane-registry] its certificates and data
set -euo pipefail

RUN_DIR=${FASTLANE_RUN_DIR:-/run/fastlane}
PODMAN_SOCK="$RUN_DIR/podman.sock"
PODMAN_TCP=${FASTLANE_PODMAN_TCP:-127.0.0.1:23750}
DOCKERD_SOCK="$RUN_DIR/docker.sock"
DOCKERD_TCP=${FASTLANE_DOCKERD_TCP:-127.0.0.1:23760}
DOCKERD_ROOT=${FASTLANE_DOCKERD_ROOT:-/var/lib/fastlane-docker}
REGISTRY=${FASTLANE_REGISTRY:-127.0.0.1:5050}
REGISTRY_DIR=${FASTLANE_REGISTRY_DIR:-/var/lib/fastlane-registry}
# Where the tests put a slow (bandwidth-limited) proxy in front of the
# registry, one port per engine; the engines trust the registry's CA there
# too.
SLOW_REGISTRY_PORTS="5051 5052"
REDIS_PORT=${FASTLANE_REDIS_PORT:-6390}
POSTGRES_PORT=${FASTLANE_POSTGRES_PORT:-5433}
what=${1:-all}

# Stdout carries only the variables printed at the end; whatever the tools
# below print (apt, pg_ctlcluster, podman) goes to stderr. The daemons started
# below get fd 3 closed (`3>&-`): a daemon holding the caller's stdout open
# would keep `$(scripts/services.sh)` waiting for ever.
exec 3>&1 1>&2

log() { printf '[services] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v dockerd >/dev/null || missing+=(docker.io)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    if [ "$what" = all ]; then
        command -v redis-server >/dev/null || missing+=(redis-server)
        command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
        [ -x /usr/bin/chromium ] || missing+=(chromium)
        [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
        # A TLS front for the engine, and certificates for it (TLS host tests).
        command -v stunnel >/dev/null || missing+=(stunnel4)
        command -v openssl >/dev/null || missing+=(openssl)
        # A private registry (htpasswd over TLS) for the pull tests.
        command -v docker-registry >/dev/null || missing+=(docker-registry)
        # Starts deploy/compose.yaml in the deploy story.
        command -v docker-compose >/dev/null || missing+=(docker-compose)
        # Renders deploy/kubernetes (`kubectl kustomize`) in the deploy story;
        # bookworm's kubectl is v1.20, its kustomize v2.0.3.
        command -v kubectl >/dev/null || missing+=(kubernetes-client)
        command -v htpasswd >/dev/null || missing+=(apache2-utils)
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
    # hard ulimits, because Podman's compat API swaps unequal ones; an events
    # log that does not rotate during a test run (a rotation cuts the event
    # streams the tests count container creations on).
    local conf=/etc/containers/containers.conf wanted
    wanted=$(cat <<'CONF'
# written by fastlane scripts/services.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
events_logfile_max_size = "200m"
CONF
)
    if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
        log "writing $conf"
        as_root mkdir -p /etc/containers
        printf '%s\n' "$wanted" | as_root tee "$conf" >/dev/null
        # Services started with the old settings go, to start again below.
        pkill -f "podman system service --time=0 unix://$PODMAN_SOCK" || true
        pkill -f "podman system service --time=0 tcp:$PODMAN_TCP" || true
        sleep 0.5
    fi
}

api_up() { curl -sf --max-time 2 "$@" >/dev/null 2>&1; }

start_podman() {
    mkdir -p "$RUN_DIR"
    if ! api_up --unix-socket "$PODMAN_SOCK" http://d/_ping; then
        log "starting podman on unix://$PODMAN_SOCK"
        rm -f "$PODMAN_SOCK"
        # From /: conmon fails ("Failed to get working directory") once the
        # directory the service was started in is gone, e.g. a CI checkout.
        (cd / && setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" \
            >"$RUN_DIR/podman-unix.log" 2>&1 </dev/null 3>&- &)
    fi
    if ! api_up "http://$PODMAN_TCP/_ping"; then
        log "starting podman on tcp:$PODMAN_TCP"
        (cd / && setsid nohup podman system service --time=0 "tcp:$PODMAN_TCP" \
            >"$RUN_DIR/podman-tcp.log" 2>&1 </dev/null 3>&- &)
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

# Docker Engine beside Podman, on its own socket, loopback TCP listener,
# data root and exec root (it starts its own containerd). Nothing of a
# system Docker is touched.
start_dockerd() {
    mkdir -p "$RUN_DIR"
    if ! api_up --unix-socket "$DOCKERD_SOCK" http://d/_ping; then
        log "starting Docker Engine on unix://$DOCKERD_SOCK and tcp://$DOCKERD_TCP"
        as_root mkdir -p "$DOCKERD_ROOT"
        rm -f "$DOCKERD_SOCK"
        (cd / && as_root setsid nohup dockerd \
            --host "unix://$DOCKERD_SOCK" --host "tcp://$DOCKERD_TCP" \
            --data-root "$DOCKERD_ROOT" --exec-root "$RUN_DIR/docker-exec" \
            --pidfile "$RUN_DIR/docker.pid" \
            >"$RUN_DIR/dockerd.log" 2>&1 </dev/null 3>&- &)
    fi
    for _ in $(seq 1 150); do
        if api_up --unix-socket "$DOCKERD_SOCK" http://d/_ping; then
            return 0
        fi
        sleep 0.2
    done
    log "Docker Engine did not come up; see $RUN_DIR/dockerd.log"
    return 1
}

# The test image, moved from Podman (no registry here) and named as both
# engines resolve `busybox`.
load_image_into_dockerd() {
    local docker=(docker -H "unix://$DOCKERD_SOCK")
    if "${docker[@]}" image inspect busybox:latest >/dev/null 2>&1; then return 0; fi
    log "loading localhost/busybox:latest into Docker Engine"
    podman save localhost/busybox:latest | "${docker[@]}" load >/dev/null
    "${docker[@]}" tag localhost/busybox:latest busybox:latest
}

start_redis() {
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
    log "starting redis on 127.0.0.1:$REDIS_PORT"
    mkdir -p "$RUN_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
        --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis.log" --save '' >/dev/null 3>&-
}

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

# A cluster named `fastlane` on $POSTGRES_PORT, of the newest PostgreSQL
# installed, with a role and a database `fastlane` (password `fastlane`).
start_postgres() {
    local version
    version=$(ls -1 /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
    if [ -z "$version" ]; then
        log "no PostgreSQL found under /usr/lib/postgresql"
        return 1
    fi
    if [ ! -d "/etc/postgresql/$version/fastlane" ]; then
        log "creating PostgreSQL $version cluster fastlane on port $POSTGRES_PORT"
        as_root pg_createcluster "$version" fastlane -p "$POSTGRES_PORT" >/dev/null
    fi
    # The port the cluster was made with wins over a changed setting.
    POSTGRES_PORT=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "fastlane" { print $3 }')
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "fastlane" { print $4 }' | grep -q online; then
        log "starting PostgreSQL $version cluster fastlane"
        as_root pg_ctlcluster "$version" fastlane start 3>&-
    fi
    local psql=(psql -p "$POSTGRES_PORT" -X -q -v ON_ERROR_STOP=1)
    as_postgres "${psql[@]}" -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fastlane') THEN
            CREATE ROLE fastlane LOGIN PASSWORD 'fastlane';
        END IF; END \$\$" >/dev/null
    if [ -z "$(as_postgres "${psql[@]}" -tA -c "SELECT 1 FROM pg_database WHERE datname = 'fastlane'")" ]; then
        as_postgres "${psql[@]}" -c 'CREATE DATABASE fastlane OWNER fastlane' >/dev/null
    fi
    postgres_tls "$version"
}

# TLS for the tests of `sslmode` (tests/tests/stories/networked.rs): a CA and a
# server certificate for `localhost` made here with openssl, kept with the
# cluster's configuration; SSL on; and a role `fastlane_tls` (password
# `fastlane`, a member of `fastlane`) that may log in over TLS only.
postgres_tls() {
    local version=$1 dir="/etc/postgresql/$1/fastlane/tls"
    if [ ! -f "$dir/server.key" ]; then
        log "making the test PostgreSQL's TLS certificates in $dir"
        as_root mkdir -p "$dir"
        as_root openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=fastlane-test-postgres-ca \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
        as_root openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
            -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost\n' | as_root tee "$dir/server.ext" >/dev/null
        as_root openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 3650 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
        as_root chown -R postgres:postgres "$dir"
        as_root chmod 600 "$dir/server.key" "$dir/ca.key"
        as_root chmod 644 "$dir/ca.pem"
    fi
    local hba="/etc/postgresql/$version/fastlane/pg_hba.conf"
    if ! grep -q fastlane_tls "$hba"; then
        as_root sed -i '1i hostnossl all fastlane_tls all reject' "$hba"
    fi
    local psql=(psql -p "$POSTGRES_PORT" -X -q -v ON_ERROR_STOP=1)
    as_postgres "${psql[@]}" -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fastlane_tls') THEN
            CREATE ROLE fastlane_tls LOGIN PASSWORD 'fastlane' IN ROLE fastlane;
        END IF; END \$\$" >/dev/null
    as_postgres "${psql[@]}" -c "ALTER SYSTEM SET ssl = on" \
        -c "ALTER SYSTEM SET ssl_cert_file = '$dir/server.crt'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$dir/server.key'" \
        -c "SELECT pg_reload_conf()" >/dev/null
    POSTGRES_CA="$dir/ca.pem"
}

# A private registry, as users run them: the distribution registry
# (Debian's docker-registry) with htpasswd logins (user `fastlane`,
# password `fastlane`) over TLS, its certificate from a CA made here that
# both engines trust for that address only (`certs.d`). The test image is
# pushed to it as `private/busybox:1`, and a bigger one as `private/bulky:1`.
start_registry() {
    local dir=$REGISTRY_DIR
    if [ ! -f "$dir/certs/server.crt" ]; then
        log "making the test registry's certificates and login in $dir"
        as_root mkdir -p "$dir/certs" "$dir/data"
        as_root openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=fastlane-test-registry-ca \
            -keyout "$dir/certs/ca.key" -out "$dir/certs/ca.crt" 2>/dev/null
        as_root openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
            -keyout "$dir/certs/server.key" -out "$dir/certs/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' | as_root tee "$dir/certs/server.ext" >/dev/null
        as_root openssl x509 -req -in "$dir/certs/server.csr" -CA "$dir/certs/ca.crt" \
            -CAkey "$dir/certs/ca.key" -CAcreateserial -days 3650 -extfile "$dir/certs/server.ext" \
            -out "$dir/certs/server.crt" 2>/dev/null
        as_root htpasswd -Bbc "$dir/htpasswd" fastlane fastlane 2>/dev/null
    fi
    as_root tee "$dir/config.yml" >/dev/null <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $REGISTRY
  tls:
    certificate: $dir/certs/server.crt
    key: $dir/certs/server.key
auth:
  htpasswd:
    realm: fastlane-test
    path: $dir/htpasswd
YAML
    local address
    for engine_dir in /etc/docker/certs.d /etc/containers/certs.d; do
        for address in "$REGISTRY" $(printf '127.0.0.1:%s ' $SLOW_REGISTRY_PORTS); do
            as_root mkdir -p "$engine_dir/$address"
            as_root cp "$dir/certs/ca.crt" "$engine_dir/$address/ca.crt"
        done
    done
    if ! curl -s --max-time 2 --cacert "$dir/certs/ca.crt" "https://$REGISTRY/v2/" >/dev/null 2>&1; then
        log "starting the private registry on $REGISTRY"
        ( cd / && as_root setsid docker-registry serve "$dir/config.yml" \
            >"$RUN_DIR/registry.log" 2>&1 </dev/null 3>&- & )
        for _ in $(seq 1 50); do
            curl -s --max-time 2 --cacert "$dir/certs/ca.crt" "https://$REGISTRY/v2/" >/dev/null 2>&1 && break
            sleep 0.2
        done
    fi
    local image="$REGISTRY/private/busybox:1"
    if ! curl -sf --max-time 5 --cacert "$dir/certs/ca.crt" -u fastlane:fastlane \
        "https://$REGISTRY/v2/private/busybox/manifests/1" \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' >/dev/null; then
        log "pushing $image"
        as_root podman tag busybox:latest "$image" >&2
        as_root podman push --creds fastlane:fastlane "$image" >&2
        as_root podman rmi "$image" >/dev/null 2>&1 || true
    fi
    # An image with a layer of 8 MB of random bytes (it does not compress),
    # whose pull through the slow proxy takes seconds.
    image="$REGISTRY/private/bulky:1"
    if ! curl -sf --max-time 5 --cacert "$dir/certs/ca.crt" -u fastlane:fastlane \
        "https://$REGISTRY/v2/private/bulky/manifests/1" \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' >/dev/null; then
        log "pushing $image"
        local context
        context=$(mktemp -d)
        head -c 8000000 /dev/urandom >"$context/blob"
        printf 'FROM busybox:latest\nCOPY blob /blob\n' >"$context/Containerfile"
        as_root podman build -q -t "$image" "$context" >&2
        as_root podman push --creds fastlane:fastlane "$image" >&2
        as_root podman rmi "$image" >/dev/null 2>&1 || true
        rm -rf "$context"
    fi
    REGISTRY_UP=$REGISTRY
}

install_packages
configure_podman
start_podman
build_image
start_dockerd
load_image_into_dockerd
if [ "$what" = all ]; then
    start_redis
    start_postgres
    start_registry
fi

cat >&3 <<INFO
FASTLANE_TEST_DOCKER_UNIX=unix://$PODMAN_SOCK
FASTLANE_TEST_DOCKER_TCP=$PODMAN_TCP
FASTLANE_TEST_DOCKERD_UNIX=unix://$DOCKERD_SOCK
FASTLANE_TEST_DOCKERD_TCP=$DOCKERD_TCP
FASTLANE_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
FASTLANE_TEST_POSTGRES_URL=postgres://fastlane:fastlane@127.0.0.1:$POSTGRES_PORT/fastlane
FASTLANE_TEST_POSTGRES_CA=${POSTGRES_CA:-}
FASTLANE_TEST_REGISTRY=${REGISTRY_UP:-}
INFO
