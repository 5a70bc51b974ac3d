#!/bin/sh
# Checks what building the images needs on this machine, before any long build, and says what
# to install. Exit 0 when everything is there; else 1 after naming each missing piece and the
# one `apt-get install` line (Debian/Ubuntu package names) that provides them.
#
#   docker/prerequisites.sh images           what `make images` needs
#   docker/prerequisites.sh container-test   that, and what the container tests add
#   ... --install                            as root with apt-get: install the missing
#                                            packages instead of naming them (`make test`)
#
# Checked: cargo (for `make static`); the docker CLI and an engine that answers; the base
# images: present, pullable, or made from Debian's archive, which needs mmdebstrap
# (docker/base-image.sh); pip on the host (docker/pip-wheels.sh downloads the AWS CLI's wheels
# here); for the container tests, a static busybox.
#
# Pulling a missing base image is part of the check (it is the first step of the build
# anyway); nothing is built.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-}
install=${2:-}
case "$mode:$install" in
images: | container-test: | images:--install | container-test:--install) ;;
*)
    echo "usage: $0 images|container-test [--install]" >&2
    exit 2
    ;;
esac

missing=0
# Missing pieces that no package provides (an engine that does not answer, no cargo).
unprovided=0
packages=""
# mmdebstrap needs its recommends (gpg checks the archive's signatures).
packages_full=""

say() {
    echo "prerequisites: $*" >&2
}

# lack PACKAGE MESSAGE: one missing piece, and the package that provides it ("" for none).
lack() {
    missing=$((missing + 1))
    say "$2"
    case "$1" in
    "") unprovided=$((unprovided + 1)) ;;
    mmdebstrap) packages_full="$packages_full $1" ;;
    *) packages="$packages $1" ;;
    esac
}

if ! command -v cargo >/dev/null 2>&1; then
    lack "" "cargo is missing: install a Rust toolchain (https://rustup.rs) to build the binary"
fi

if ! command -v docker >/dev/null 2>&1; then
    lack docker.io "docker is missing: the images are built with a Docker engine"
elif ! answer=$(docker version --format '{{.Server.Version}}' 2>&1); then
    lack "" "the Docker engine does not answer ($(echo "$answer" | tail -n 1)); start it \
(systemctl start docker, or dockerd &) or, for permission denied, run as a member of the \
docker group"
else
    # Each message names what is missing (mmdebstrap, with its package).
    for base in debian python; do
        if ! why=$("$here/base-image.sh" check "$base" 2>&1); then
            if echo "$why" | grep -q "mmdebstrap is missing"; then
                lack mmdebstrap "the $base base image cannot be pulled, and making it from \
Debian's archive needs mmdebstrap"
            else
                lack "" "the $base base image cannot be had: $(echo "$why" | tail -n 1)"
            fi
        fi
    done
fi

if ! ${PIP:-python3 -m pip} --version >/dev/null 2>&1; then
    lack python3-pip "pip is missing (${PIP:-python3 -m pip}): the AWS CLI example's wheels \
are downloaded on this machine"
fi

if [ "$mode" = container-test ]; then
    # ldd fails on a static binary; a dynamic busybox would not run FROM scratch.
    if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
        lack busybox-static "a static /bin/busybox is missing: the container tests make \
images with a busybox userland"
    fi
fi

if [ "$missing" -eq 0 ]; then
    exit 0
fi
# Each package once, in the order found.
once() {
    once=$(echo "$1" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
    echo "${once% }"
}
packages=$(once "$packages")
packages_full=$(once "$packages_full")
if [ "$install" = --install ] && [ "$unprovided" -eq 0 ] && [ "$(id -u)" -eq 0 ] &&
    command -v apt-get >/dev/null 2>&1; then
    say "installing $packages $packages_full"
    apt-get update -qq
    export DEBIAN_FRONTEND=noninteractive
    if [ -n "$packages" ]; then
        # shellcheck disable=SC2086 # one word per package
        apt-get install -y -qq --no-install-recommends $packages >/dev/null
    fi
    if [ -n "$packages_full" ]; then
        # shellcheck disable=SC2086
        apt-get install -y -qq $packages_full >/dev/null
    fi
    exit 0
fi
# One line to copy: mmdebstrap with its recommends, the rest without.
line=""
if [ -n "$packages_full" ]; then
    line="apt-get install -y $packages_full"
fi
if [ -n "$packages" ]; then
    line="${line:+$line && }apt-get install -y --no-install-recommends $packages"
fi
if [ -n "$line" ]; then
    say "install first: $line"
fi
exit 1
