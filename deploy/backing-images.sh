#!/usr/bin/env bash
# Builds the Redis and PostgreSQL images deploy/compose.local.yaml runs, for
# machines that cannot pull `redis:7` and `postgres:16` from a registry.
# Like deploy/image.sh they are `FROM scratch`, their root file systems
# gathered from this machine: Debian's redis-server and PostgreSQL 15 with
# the libraries `ldd` says they link, busybox for the PostgreSQL image's
# entry point, and users of their own.
#
#   deploy/backing-images.sh [SUFFIX]     # default: local
#
# builds fastlane-redis:SUFFIX and fastlane-postgres:SUFFIX on the engine
# of the `docker` CLI (DOCKER_HOST) and prints their tags. The PostgreSQL
# image takes the official image's POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB on its first start.
set -euo pipefail
cd "$(dirname "$0")/.."
suffix=${1:-local}
pg=/usr/lib/postgresql/15
for needed in /usr/bin/redis-server /usr/bin/redis-cli "$pg/bin/postgres" /bin/busybox; do
    [ -x "$needed" ] || {
        echo "deploy/backing-images.sh: $needed is missing (apt-get install redis-server postgresql-15 busybox-static)" >&2
        exit 1
    }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/fastlane-backing.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Copies each file into root, with every library ldd lists for it.
gather() {
    local root=$1
    shift
    for file in "$@"; do
        mkdir -p "$root$(dirname "$file")"
        cp -L "$file" "$root$file"
        # A static binary has none (and ldd says so with an error).
        { ldd "$file" 2>/dev/null || true; } | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
}

# A user (uid and gid 999) and its data directory.
user() {
    local root=$1 name=$2 home=$3
    mkdir -p "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/:/sbin/nologin\n%s:x:999:999:%s:%s:/sbin/nologin\n' "$name" "$name" "$home" >"$root/etc/passwd"
    printf 'root:x:0:\n%s:x:999:\n' "$name" >"$root/etc/group"
}

# Redis: the server and its CLI (the health check's). Like the official
# image, a `redis-server` command runs with protected mode off: the
# container's network is what guards it (compose publishes no Redis port).
redis=$work/redis
gather "$redis/rootfs" /bin/busybox /usr/bin/redis-server /usr/bin/redis-cli
ln -s busybox "$redis/rootfs/bin/sh"
user "$redis/rootfs" redis /data
mkdir -p "$redis/data" "$redis/rootfs/usr/local/bin"
cat >"$redis/rootfs/usr/local/bin/redis-entrypoint" <<'ENTRYPOINT'
#!/bin/sh
if [ "${1:-}" = redis-server ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
ENTRYPOINT
chmod 755 "$redis/rootfs/usr/local/bin/redis-entrypoint"
cat >"$redis/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=999:999 data/ /data/
USER 999:999
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
DOCKERFILE

# PostgreSQL: its binaries, extensions and shared data, the time zones,
# and an entry point that makes the cluster, user and database on the
# first start.
postgres=$work/postgres
root=$postgres/rootfs
# The server, what makes and checks a cluster, and the extensions but the
# LLVM JIT (a 100 MB library; without it queries run uncompiled).
gather "$root" /bin/busybox "$pg"/bin/{postgres,initdb,pg_ctl,pg_isready,psql} \
    $(ls "$pg"/lib/*.so | grep -v -e /llvmjit -e /sepgsql)
mkdir -p "$root/usr/share"
cp -a /usr/share/postgresql /usr/share/zoneinfo "$root/usr/share/"
ln -s busybox "$root/bin/sh"
user "$root" postgres /var/lib/postgresql
mkdir -p "$postgres/data" "$postgres/run"
mkdir -p "$root/usr/local/bin"
cat >"$root/usr/local/bin/postgres-entrypoint" <<'ENTRYPOINT'
#!/bin/sh
set -eu
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    password=/tmp/password.$$
    trap 'rm -f "$password"' EXIT
    (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" >"$password")
    initdb -D "$PGDATA" -U "$user" --pwfile="$password" -A scram-sha-256 \
        --encoding=UTF8 --locale=C >/dev/null
    rm -f "$password"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\" OWNER \"$user\";" |
            postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
ENTRYPOINT
chmod 755 "$root/usr/local/bin/postgres-entrypoint"
cat >"$postgres/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=999:999 data/ /var/lib/postgresql/data/
COPY --chown=999:999 run/ /var/run/postgresql/
USER 999:999
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/bin \
    PGDATA=/var/lib/postgresql/data TZ=UTC
VOLUME /var/lib/postgresql/data
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
DOCKERFILE
chmod 700 "$postgres/data"

docker build -q -t "fastlane-redis:$suffix" "$redis" >&2
docker build -q -t "fastlane-postgres:$suffix" "$postgres" >&2
echo "fastlane-redis:$suffix"
echo "fastlane-postgres:$suffix"
