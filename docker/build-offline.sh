#!/bin/sh
# Build the binary-only image from a host-built static binary, with no registry at hand.
#
#   docker/build-offline.sh [BINARY] [TAG]     defaults: target/static/direktiv-cmd direktiv-cmd:dev
#
# Stages a context of a few kilobytes (the whole repository would send target/ to the daemon)
# and builds the `prebuilt` target of docker/Dockerfile, which starts FROM scratch.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-target/static/direktiv-cmd}
tag=${2:-direktiv-cmd:dev}

if [ ! -x "$binary" ]; then
    echo "build-offline: $binary is missing; run 'make static' first" >&2
    exit 1
fi
if ! file_out=$(LC_ALL=C "$binary" --version 2>&1); then
    echo "build-offline: $binary does not run: $file_out" >&2
    exit 1
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/direktiv-cmd-image.XXXXXX")
trap 'rm -rf "$context"' EXIT INT TERM

mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc" "$context/rootfs/tmp"
chmod 1777 "$context/rootfs/tmp"
cp "$here/rootfs/etc/passwd" "$here/rootfs/etc/group" "$context/rootfs/etc/"
chmod 0644 "$context/rootfs/etc/passwd" "$context/rootfs/etc/group"
cp "$binary" "$context/rootfs/usr/local/bin/direktiv-cmd"
chmod 0755 "$context/rootfs/usr/local/bin/direktiv-cmd"

docker build \
    --file "$here/Dockerfile" \
    --target prebuilt \
    --tag "$tag" \
    --build-arg VERSION="${VERSION:-dev}" \
    --build-arg REVISION="${REVISION:-$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
    --build-arg CREATED="${CREATED:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}" \
    "$context"
