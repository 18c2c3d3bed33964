#!/usr/bin/env bash
# Starts fastlane on one machine: makes sure a container engine serves the
# Docker API (scripts/services.sh engine), then runs `fastlane standalone`
# on port 10000 with its data in ./fastlane-data. Extra arguments go to
# `fastlane standalone` (e.g. -p 8080, -c fastlane.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh engine >/dev/null
exec cargo run --release --locked -p fastlane-server -- standalone "$@"
