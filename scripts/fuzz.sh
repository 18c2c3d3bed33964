#!/usr/bin/env bash
# The cargo-fuzz target for request parsing (fuzz/fuzz_targets/job_request.rs).
#   scripts/fuzz.sh build          builds it (installs a nightly toolchain and
#                                  cargo-fuzz when missing)
#   scripts/fuzz.sh run [SECONDS]  fuzzes for SECONDS (default 60), starting
#                                  from the committed seeds and dictionary;
#                                  a crash fails with the input saved under
#                                  fuzz/artifacts/job_request/
# Exits 77 when no nightly toolchain can be had: the test command reports
# the fuzzing as skipped, never as passed.
#
# Built with debug assertions (overflow checks included) and no sanitizer:
# fastlane forbids unsafe code, so what the fuzzer looks for is panics,
# arithmetic overflow, hangs and unbounded memory (libFuzzer's -timeout and
# -rss_limit_mb); the debug build also compiles in half the time.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-build}

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal >&2 || {
        echo "fuzz: SKIPPED: no nightly toolchain (cargo-fuzz needs one)" >&2
        exit 77
    }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2 >&2
fi

flags=(--dev --sanitizer none)
case "$what" in
build)
    cargo +nightly fuzz build "${flags[@]}" job_request
    ;;
run)
    seconds=${2:-60}
    corpus=target/fuzz-corpus/job_request
    mkdir -p "$corpus"
    cargo +nightly fuzz run "${flags[@]}" job_request "$corpus" fuzz/corpus/job_request -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -dict=fuzz/job_request.dict -print_final_stats=1
    ;;
*)
    echo "usage: scripts/fuzz.sh build|run [SECONDS]" >&2
    exit 2
    ;;
esac
