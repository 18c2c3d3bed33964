#!/usr/bin/env bash
# Submits a job to fastlane, waits for it to finish, and prints its stdout and
# exit code: the README's quick start, with nothing but curl and sed.
#
#   examples/quickstart.sh [BASE_URL] [IMAGE]
#   (defaults: http://localhost:10000 busybox)
set -euo pipefail
base=${1:-http://localhost:10000}
image=${2:-busybox}

field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

created=$(curl -sf -XPOST -d "{\"image\": \"$image\", \"command\": \"echo it works\"}" \
    "$base/tasks/quickstart")
execution_url=$(printf '%s' "$created" | field executionUrl)
echo "submitted: $execution_url" >&2

for _ in $(seq 1 300); do
    status=$(curl -sf "$execution_url" | field status)
    case "$status" in
        enqueued|pulling|running) sleep 0.2 ;;
        *) break ;;
    esac
done
echo "status: $status" >&2

curl -sf -D /tmp/fastlane-quickstart-headers "${execution_url}stdout"
exit_code=$(sed -n 's/^fastlane-exit-code: *\([^[:space:]]*\).*/\1/Ip' /tmp/fastlane-quickstart-headers)
echo "exit code: $exit_code" >&2
