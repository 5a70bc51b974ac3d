#!/bin/sh
# Builds the S3 emulator image the container tests run beside a pod (moto's server).
#
#   docker/test-s3/build.sh TAG
#
# FROM the Python base of the examples (docker/base-image.sh), with wheels downloaded on the
# host for that image's Python (docker/pip-wheels.sh).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tag=${1:?usage: $0 TAG}

python=$("$here/../base-image.sh" python)
context=$(mktemp -d "${TMPDIR:-/tmp}/direktiv-cmd-test-s3.XXXXXX")
trap 'rm -rf "$context"' EXIT
trap 'exit 130' INT TERM
cp "$here/Dockerfile" "$here/requirements.txt" "$context/"
"$here/../pip-wheels.sh" "$python" "$context/wheels" -r "$here/requirements.txt"
docker build --quiet --tag "$tag" --build-arg PYTHON_IMAGE="$python" "$context" >/dev/null
