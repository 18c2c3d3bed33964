#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with a Rust toolchain:
# installs and starts what the tests need (scripts/services.sh: Podman as a
# Docker API host, the busybox test image, Redis, a PostgreSQL cluster,
# Chromium and chromedriver, Docker Engine, a registry), builds the
# workspace once, runs every test (unit and black-box, in parallel), fuzzes
# request parsing for a minute, then checks formatting. Clippy lints the
# workspace during the build; a build without the optional plugins is
# checked beside the tests. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
fi

# The services' addresses go through a file, not a pipe: nothing the services
# leave running can hold this script up.
mkdir -p target
scripts/services.sh >target/services.env
eval "$(grep -E '^FASTLANE_[A-Z_]+=' target/services.env | sed 's/^/export /')"

# Python tools the tests call, from PyPI, in a virtual environment under
# target/: OpenAPI validation, Schemathesis, an SMTP server (aiosmtpd), the
# Prometheus text parser (prometheus-client) and a client generator
# (openapi-python-client).
venv=target/test-venv
if ! "$venv/bin/python" -c 'import schemathesis, openapi_spec_validator, aiosmtpd, prometheus_client, openapi_python_client' 2>/dev/null; then
    echo "== python tools" >&2
    python3 -m venv "$venv" 2>/dev/null || {
        apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'schemathesis==4.32.5' 'openapi-spec-validator==0.9.0' 'aiosmtpd==1.4.6' 'prometheus-client==0.21.1' \
        'openapi-python-client==0.29.1'
fi
export PATH="$PWD/$venv/bin:$PATH"

# From npm: Redocly CLI, to lint the OpenAPI document with its recommended
# rules (tests/tests/stories/openapi_tools.rs), and axe-core, which checks
# the admin UI's pages for accessibility (tests/tests/stories/admin_ui.rs).
npm_tools=target/npm-tools
if [ ! -x "$npm_tools/node_modules/.bin/redocly" ] || [ ! -f "$npm_tools/node_modules/axe-core/axe.min.js" ]; then
    echo "== npm tools" >&2
    command -v npm >/dev/null || apt-get install -y -qq npm >/dev/null
    npm install --silent --no-audit --no-fund --prefix "$npm_tools" '@redocly/cli@2.77.0' 'axe-core@4.14.1' >/dev/null
fi
export PATH="$PWD/$npm_tools/node_modules/.bin:$PATH"
export FASTLANE_TEST_AXE="$PWD/$npm_tools/node_modules/axe-core/axe.min.js"

# The Python client, generated from the committed OpenAPI document.
rm -rf target/python-client
openapi-python-client generate --path openapi/fastlane.json \
    --output-path target/python-client/fastlane_client --meta none >/dev/null
export FASTLANE_PYTHON_CLIENT="$PWD/target/python-client"

# Containers earlier runs left behind slow the engine's listings down.
podman ps -aq --filter label=fastlane.execution | xargs -r podman rm -f >/dev/null 2>&1 || true

# Clippy lints the workspace while it builds: clippy-driver is rustc with
# the lint passes added, so running it as cargo's workspace wrapper (what
# `cargo clippy` itself does, with `cargo check`) lints every member and
# target and still produces the binaries, where a separate `cargo clippy`
# would check every dependency a second time (four to five minutes here).
# Dependencies still compile with plain rustc. `-D warnings` makes any rustc
# or clippy warning fail the build. Unset for the nightly fuzz build below.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)" || {
    rustup component add clippy >&2
    RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
}
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

echo "== build and clippy" >&2
# --timings leaves target/cargo-timings/cargo-timing.html: where the build's
# minutes went, for the next look at this script's time.
cargo build --workspace --all-targets --locked --timings

# The fuzz target builds on a nightly toolchain at the lowest priority while
# the tests run (it waits for the containers most of the time), then fuzzes
# for a bounded time after them.
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS nice -n 19 scripts/fuzz.sh build >target/fuzz-build.log 2>&1 &
fuzz_build=$!

export FASTLANE_BIN="$PWD/target/debug/fastlane"
export FASTLANE_TEST_DOCKER_HOSTS="[{\"match\": \"\", \"hosts\": [\"$FASTLANE_TEST_DOCKER_UNIX\"], \"maxRunning\": 10}]"

# The built-in plugins are optional features; the server must build (and
# pass clippy) without them. That check compiles the server again (about two
# minutes here), so it runs at the lowest priority while the tests wait on
# containers. Nextest is handed the list of test binaries the build above
# made, so that it never calls cargo, whose lock on target/ the check holds.
nextest_reuse=()
if cargo nextest --version >/dev/null 2>&1; then
    mkdir -p target/nextest
    cargo nextest list --workspace --locked --list-type binaries-only --message-format json \
        >target/nextest/binaries.json
    cargo metadata --format-version 1 --locked >target/nextest/cargo-metadata.json
    # (The list covers the workspace; nextest takes no --workspace with it.)
    nextest_reuse=(--binaries-metadata target/nextest/binaries.json
        --cargo-metadata target/nextest/cargo-metadata.json)
fi
nice -n 19 cargo check -p fastlane-server --no-default-features --locked >target/check.log 2>&1 &
no_default_features=$!
wait_for_check() {
    if [ -n "$no_default_features" ]; then
        wait "$no_default_features" || { cat target/check.log >&2; exit 1; }
        no_default_features=
        tail -1 target/check.log >&2
    fi
}

echo "== tests" >&2
if [ ${#nextest_reuse[@]} -gt 0 ]; then
    cargo nextest run "${nextest_reuse[@]}" --no-fail-fast --test-threads 4
else
    wait_for_check
    cargo test --workspace --no-fail-fast -- --test-threads 4
fi

echo "== fuzz" >&2
fuzz_status=0
wait "$fuzz_build" || fuzz_status=$?
if [ "$fuzz_status" = 77 ]; then
    tail -1 target/fuzz-build.log >&2
elif [ "$fuzz_status" != 0 ]; then
    tail -30 target/fuzz-build.log >&2
    exit "$fuzz_status"
else
    env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS scripts/fuzz.sh run "${FASTLANE_FUZZ_SECONDS:-60}" 2>&1 | tail -15 >&2
fi

echo "== fmt" >&2
cargo fmt --all -- --check

echo "== without the built-in plugins" >&2
wait_for_check
