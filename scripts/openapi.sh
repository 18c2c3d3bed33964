#!/usr/bin/env bash
# Regenerates openapi/fastlane.json (and the Rust client's copy) from the
# server's own definition.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p fastlane-server -- openapi > openapi/fastlane.json
# The Rust client's copy: its build reads nothing outside its crate.
cp openapi/fastlane.json fastlane-client/openapi.json
echo "wrote openapi/fastlane.json and fastlane-client/openapi.json"
