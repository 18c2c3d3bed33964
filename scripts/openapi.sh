#!/usr/bin/env bash
# Regenerates openapi/fastlane.json from the server's own definition.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p fastlane-server -- openapi > openapi/fastlane.json
echo "wrote openapi/fastlane.json"
