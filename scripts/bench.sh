#!/usr/bin/env bash
# The queue-speed benchmark (scripts/bench.py): builds the release binary,
# installs wrk when missing, and prints BENCHMARKS.md's table. With an engine
# (scripts/services.sh engine), add the drain rows:
#   scripts/bench.sh --engine unix:///run/fastlane/podman.sock
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --locked -p fastlane-server >&2
exec python3 scripts/bench.py --binary target/release/fastlane "$@"
