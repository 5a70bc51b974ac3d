#!/bin/sh
# Downloads, on the host, the wheels a pip install inside an image needs, for the Python of
# that image: builds here cannot reach PyPI from inside a container (only the host trusts the
# network's HTTPS), so the image installs them with `pip install --no-index --find-links`.
#
#   docker/pip-wheels.sh IMAGE DEST REQUIREMENT...     (a REQUIREMENT may be `-r FILE`)
#
# IMAGE must have python3 (its entrypoint is bypassed). Host pip: $PIP, default `python3 -m pip`.
# A download is kept in target/wheels/ (or $WHEEL_CACHE) under a key made of the requirements
# and the image's Python, so the next build with the same ones needs no network.
set -eu

if [ $# -lt 3 ]; then
    echo "usage: $0 IMAGE DEST REQUIREMENT..." >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
image=$1 dest=$2
shift 2

# "3.11 cp311 x86_64" for the image's interpreter.
target=$(docker run --rm --entrypoint python3 "$image" -c \
    'import platform, sys; v = sys.version_info; print("%d.%d cp%d%d %s" % (v[0], v[1], v[0], v[1], platform.machine()))')

# The key: the target and the requirements, with the content of requirement files.
key=$(
    echo "$target $*"
    for arg in "$@"; do
        if [ -f "$arg" ]; then cat "$arg"; fi
    done
)
key=$(echo "$key" | cksum | cut -d ' ' -f 1)
cache=${WHEEL_CACHE:-$here/../target/wheels}/$key

if [ ! -f "$cache/.complete" ]; then
    set -- $target "$@"
    version=$1 abi=$2 arch=$3
    shift 3
    rm -rf "$cache"
    mkdir -p "$cache"
    # shellcheck disable=SC2086 # PIP is a command line
    ${PIP:-python3 -m pip} download --quiet --disable-pip-version-check --dest "$cache" \
        --only-binary=:all: --implementation cp --python-version "$version" --abi "$abi" \
        --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" \
        --platform "manylinux2014_$arch" --platform "manylinux1_$arch" \
        "$@"
    touch "$cache/.complete"
fi
mkdir -p "$dest"
cp "$cache"/*.whl "$dest/"
