#!/bin/sh
# Builds the images `make images` promises from a host-built static binary:
#   direktiv-cmd:scratch           the binary only, to `COPY --from`
#   direktiv-cmd:debian            Debian slim plus the binary, to `FROM`
#   direktiv-cmd-example-aws-cli   examples/aws-cli
#   direktiv-cmd-example-bash      examples/bash
#   direktiv-cmd-example-python    examples/python
#
#   docker/build-images.sh [BINARY]         default: target/static/direktiv-cmd (`make static`)
#
# Works with the legacy builder and without a registry: docker/base-image.sh finds or makes
# the base images, pip downloads the AWS CLI's wheels on the host. What that needs is checked
# first (docker/prerequisites.sh). Layers are cached between runs, and the images a run
# replaces are removed once nothing uses them.
#
# Environment: DEBIAN_IMAGE, PYTHON_IMAGE (base images, see docker/base-image.sh);
# IMAGE_PREFIX (put before every tag: the container tests build under their own);
# VERSION, REVISION, CREATED (OCI labels; default: the binary's version, and the last commit
# that changed the binary's sources or the Dockerfile, with its time).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
binary=${1:-$repo/target/static/direktiv-cmd}
prefix=${IMAGE_PREFIX:-}

say() {
    echo "build-images: $*" >&2
}

"$here/prerequisites.sh" images

if [ ! -x "$binary" ]; then
    say "$binary is missing; run 'make static' first"
    exit 1
fi
if ! version=$("$binary" --version 2>&1); then
    say "$binary does not run here: $version"
    exit 1
fi
version=${VERSION:-${version#direktiv-cmd }}
# The last commit that changed what goes into the images, and its time: a commit that changes
# only tests or docs builds the same images, all from cache.
sources="src Cargo.toml Cargo.lock docker/Dockerfile docker/rootfs"
# Without git, or outside a clone (a source archive), they are `unknown`: the assignment takes
# the status of the substitution, and `set -e` would end the script there without a word.
# shellcheck disable=SC2086 # a list of paths
revision=${REVISION:-$(git -C "$repo" log -1 --format=%h -- $sources 2>/dev/null || true)}
# shellcheck disable=SC2086
created=${CREATED:-$(git -C "$repo" log -1 --format=%cI -- $sources 2>/dev/null || true)}
revision=${revision:-unknown} created=${created:-unknown}

debian=$("$here/base-image.sh" debian)
python=$("$here/base-image.sh" python)

work=$(mktemp -d "${TMPDIR:-/tmp}/direktiv-cmd-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Image ids the tags pointed at before this run, the last built first.
replaced=""

# build TAG DOCKER-BUILD-ARGUMENTS...
build() {
    tag=$1
    shift
    if old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null); then
        replaced="$old $replaced"
    fi
    say "building $tag"
    docker build --tag "$tag" "$@"
}

# The staged context of the runner images: rootfs/ as the binary-only image lays it out.
rootfs=$work/runner/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$here/rootfs/etc/passwd" "$here/rootfs/etc/group" "$rootfs/etc/"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
cp "$binary" "$rootfs/usr/local/bin/direktiv-cmd"
chmod 0755 "$rootfs/usr/local/bin/direktiv-cmd"

for target in scratch debian; do
    build "${prefix}direktiv-cmd:$target" \
        --file "$here/Dockerfile" --target "$target-prebuilt" \
        --build-arg DEBIAN_IMAGE="$debian" \
        --build-arg VERSION="$version" \
        --build-arg REVISION="$revision" \
        --build-arg CREATED="$created" \
        "$work/runner"
done

build "${prefix}direktiv-cmd-example-bash" \
    --build-arg BASE_IMAGE="${prefix}direktiv-cmd:debian" \
    "$repo/examples/bash"

# The AWS CLI's wheels, for the Python its image gets (built first: a cached stage).
cp -R "$repo/examples/aws-cli" "$work/aws-cli"
python_stage=$(docker build --quiet --target python \
    --build-arg BASE_IMAGE="${prefix}direktiv-cmd:debian" "$work/aws-cli")
awscli_version=$(sed -n 's/^ARG AWSCLI_VERSION=//p' "$work/aws-cli/Dockerfile")
say "downloading awscli $awscli_version and its dependencies"
"$here/pip-wheels.sh" "$python_stage" "$work/aws-cli/wheels" "awscli==$awscli_version"
build "${prefix}direktiv-cmd-example-aws-cli" \
    --build-arg BASE_IMAGE="${prefix}direktiv-cmd:debian" \
    --build-arg PIP_OPTIONS="--no-index --find-links=/wheels" \
    "$work/aws-cli"

build "${prefix}direktiv-cmd-example-python" \
    --build-arg RUNNER_IMAGE="${prefix}direktiv-cmd:scratch" \
    --build-arg PYTHON_IMAGE="$python" \
    "$repo/examples/python"

# Remove what the new images replaced, derived images first so their parents go with them;
# an id still tagged (unchanged) or still used by a container stays.
for id in $replaced; do
    if [ "$(docker image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
        docker rmi "$id" >/dev/null 2>&1 || true
    fi
done

say "built:"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
    grep -E "^${prefix}direktiv-cmd(-example-[a-z-]+)?:" | sed 's/^/  /' >&2 || true
