#!/bin/sh
# A local pod for trying a function as Direktiv would run it: the test sidecar, printing every
# log line, variable and answer as Direktiv sees them, and the runner beside it.
#
#   docker/dev-pod.sh           the runner of this tree and the sidecar as local processes
#                               (`make dev-pod` builds both first)
#   docker/dev-pod.sh IMAGE     IMAGE (your function's image; its entrypoint is the runner) in
#                               a container beside the sidecar's, sharing its network and
#                               /mnt/shared, as in a Direktiv pod (`make dev-pod IMAGE=...`)
#
# Then call the function with an action's input, as Direktiv does:
#   curl -s localhost:8890/ -d '{"commands": [{"command": "echo hello"}]}'
# The answer is the function's (status, Direktiv-ErrorCode/-ErrorMessage, body). Variables are
# files $DEV_POD_DIR/vars/<scope>/<name>: /var serves them, and files a command leaves in
# out/<scope>/ are stored there. Ctrl-C stops the pod.
#
# Environment: DEV_POD_DIR (default ./dev-pod); for local processes DEV_POD_RUNNER_BIN and
# DEV_POD_SIDECAR_BIN (the binaries), DEV_POD_RUNNER_PORT, DEV_POD_LOG_PORT and
# DEV_POD_FRONT_PORT (default 8080, 8889, 8890); for an image DEV_POD_SIDECAR_IMAGE (default
# direktiv-cmd-dev/sidecar, built by `make dev-pod`). Other CMD_* and DIREKTIV_* variables of
# this shell reach the runner.
set -eu

dir=${DEV_POD_DIR:-dev-pod}
mkdir -p "$dir/vars" "$dir/shared"
dir=$(cd "$dir" && pwd)
image=${1:-}

say() {
    echo "dev-pod: $*" >&2
}

if [ -z "$image" ]; then
    runner=${DEV_POD_RUNNER_BIN:-target/quick/direktiv-cmd}
    sidecar=${DEV_POD_SIDECAR_BIN:-target/packages/debug/direktiv-cmd-test-sidecar}
    runner_port=${DEV_POD_RUNNER_PORT:-8080}
    log_port=${DEV_POD_LOG_PORT:-8889}
    front_port=${DEV_POD_FRONT_PORT:-8890}
    for binary in "$runner" "$sidecar"; do
        if [ ! -x "$binary" ]; then
            say "$binary is missing; run 'make dev-pod'"
            exit 1
        fi
    done
    "$sidecar" --print --vars "$dir/vars" --shared "$dir/shared" --log-port "$log_port" \
        --front-port "$front_port" --runner "http://127.0.0.1:$runner_port" &
    sidecar_pid=$!
    PORT=$runner_port DIREKTIV_HTTP_BACKEND="http://127.0.0.1:$log_port" "$runner" &
    runner_pid=$!
    # Both end with the pod: on Ctrl-C, on SIGTERM, or when one of them ends.
    stop() {
        trap - INT TERM EXIT
        kill "$runner_pid" "$sidecar_pid" 2>/dev/null || true
        wait "$runner_pid" "$sidecar_pid" 2>/dev/null || true
    }
    trap 'stop; exit 130' INT
    trap 'stop; exit 143' TERM
    trap stop EXIT
    say "call the function: curl -s localhost:$front_port/ -d '{\"commands\": [{\"command\": \"echo hello\"}]}'"
    while kill -0 "$runner_pid" 2>/dev/null && kill -0 "$sidecar_pid" 2>/dev/null; do
        sleep 1
    done
    exit 1
fi

sidecar_image=${DEV_POD_SIDECAR_IMAGE:-direktiv-cmd-dev/sidecar}
name=direktiv-cmd-dev-pod-$$
# The sidecar writes variables as uid 65532, like Direktiv's.
chmod 0777 "$dir/vars"
stop() {
    trap - INT TERM EXIT
    docker rm -f "$name-runner" "$name-sidecar" >/dev/null 2>&1 || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT
docker run -d --name "$name-sidecar" -p 8890:8890 -v "$dir/vars:/vars" "$sidecar_image" \
    --print --vars /vars >/dev/null
docker run -d --name "$name-runner" --network "container:$name-sidecar" \
    --volumes-from "$name-sidecar" "$image" >/dev/null
say "$image runs beside the sidecar; call it: curl -s localhost:8890/ -d '{\"commands\": [{\"command\": \"echo hello\"}]}'"
# The runner's own lines under a prefix, the sidecar's as they are. In the background: the
# shell runs its traps (Ctrl-C) only between commands, never during a foreground one.
docker logs -f "$name-runner" 2>&1 | while IFS= read -r line; do echo "runner: $line"; done &
docker logs -f "$name-sidecar" &
while [ "$(docker inspect --format '{{.State.Running}}' "$name-runner" 2>/dev/null)" = true ]; do
    sleep 1
done
say "the runner stopped:"
docker logs --tail 5 "$name-runner" 2>&1 | sed 's/^/runner: /' >&2
exit 1
