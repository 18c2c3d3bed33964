#!/usr/bin/env bash
# Builds the fastlane image (deploy/Dockerfile) from a fastlane binary, with
# no registry: the image is `FROM scratch`, and this script gathers its
# root file system from this machine (the binary, the libraries `ldd` says
# it links, the CA certificates, a passwd file with the `fastlane` user).
#
#   deploy/image.sh [BINARY] [TAG]     # defaults: target/release/fastlane fastlane:latest
#
# The engine is the `docker` CLI's (DOCKER_HOST, e.g.
# unix:///run/fastlane/docker.sock). Prints the image's tag.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/fastlane}
tag=${2:-fastlane:latest}
[ -x "$binary" ] || { echo "deploy/image.sh: $binary is not an executable" >&2; exit 1; }

context=$(mktemp -d "${TMPDIR:-/tmp}/fastlane-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
root=$context/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$context/data"
# The data directory, the user's alone (the Dockerfile gives it to them).
chmod 700 "$context/data"
install -m 755 "$binary" "$root/usr/local/bin/fastlane"
# Every library the binary links, where the loader will look for it.
ldd "$binary" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/sbin/nologin\nfastlane:x:10000:10000:fastlane:/var/lib/fastlane:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nfastlane:x:10000:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
cp deploy/Dockerfile "$context/Dockerfile"
docker build -q -t "$tag" "$context" >&2
echo "$tag"
