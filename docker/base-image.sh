#!/bin/sh
# Makes sure a base image the Dockerfiles build FROM is available and prints the name to use.
#
#   docker/base-image.sh debian    $DEBIAN_IMAGE, default debian:bookworm-slim
#   docker/base-image.sh python    $PYTHON_IMAGE, default python:3.12-slim
#   docker/base-image.sh check debian|python
#                                  only whether it can be had (present, pulled, or a stand-in
#                                  present or makeable here): exit 1, saying what is missing
#
# In order: the image is present; it can be pulled; it is the default and a stand-in is made
# from Debian's archive, which needs no registry, only http to deb.debian.org:
#   direktiv-cmd-offline/debian:bookworm     mmdebstrap --variant=minbase (merged /usr; no docs,
#                                            man pages or locales), piped into `docker import`
#   direktiv-cmd-offline/python:3-bookworm   that plus Debian's python3 and venv (Python 3.11)
# A stand-in gets a name of its own, not the public name it replaces: it is not that image. It
# is kept for the next build; `docker rmi` it to make it again (with Debian's latest updates).
#
# Messages go to stderr; stdout is the image name only.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

DEFAULT_DEBIAN=debian:bookworm-slim
DEFAULT_PYTHON=python:3.12-slim
STANDIN_DEBIAN=direktiv-cmd-offline/debian:bookworm
STANDIN_PYTHON=direktiv-cmd-offline/python:3-bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

say() {
    echo "base-image: $*" >&2
}

present() {
    docker image inspect "$1" >/dev/null 2>&1
}

# Present or pulled.
available() {
    present "$1" && return 0
    say "$1 is not present; pulling it"
    if pulled=$(docker pull --quiet "$1" 2>&1); then
        return 0
    fi
    say "cannot pull $1: $(echo "$pulled" | tail -n 1)"
    return 1
}

# Whether the tools that make a stand-in are here.
can_make_debian() {
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        say "mmdebstrap is missing, needed to make $STANDIN_DEBIAN (apt-get install mmdebstrap)"
        return 1
    fi
}
can_make_python() {
    "$0" check debian
}

make_debian_standin() {
    can_make_debian || exit 1
    say "making $STANDIN_DEBIAN from $DEBIAN_MIRROR (mmdebstrap, docker import)"
    work=$(mktemp -d "${TMPDIR:-/tmp}/direktiv-cmd-debian.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    trap 'exit 130' INT TERM
    # A file rather than a pipe into `docker import`: a failed run must not leave a cut image.
    # Path excludes as in Debian's slim images; they stay in /etc/dpkg/dpkg.cfg.d/ so later
    # `apt-get install`s skip those files too. The merged-usr hook keeps usrmerge (and the perl
    # it pulls in) out.
    if ! mmdebstrap --quiet --variant=minbase \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --aptopt='Acquire::Languages "none"' \
        bookworm "$work/rootfs.tar" \
        "deb $DEBIAN_MIRROR bookworm main" \
        "deb $DEBIAN_MIRROR bookworm-updates main" \
        "deb $DEBIAN_SECURITY_MIRROR bookworm-security main" \
        >"$work/mmdebstrap.log" 2>&1; then
        cat "$work/mmdebstrap.log" >&2
        say "mmdebstrap failed"
        exit 1
    fi
    docker import --change 'CMD ["bash"]' \
        --message "Debian bookworm minbase from $DEBIAN_MIRROR (docker/base-image.sh)" \
        "$work/rootfs.tar" "$STANDIN_DEBIAN" >/dev/null
}

make_python_standin() {
    debian=$("$0" debian)
    say "making $STANDIN_PYTHON from $debian and Debian's python3"
    docker build --quiet --tag "$STANDIN_PYTHON" --build-arg DEBIAN_IMAGE="$debian" \
        --file "$here/offline/python.Dockerfile" "$here/offline" >/dev/null
}

# resolve WANTED DEFAULT STANDIN MAKER: prints the image to use.
resolve() {
    wanted=$1 default=$2 standin=$3 maker=$4
    if available "$wanted"; then
        echo "$wanted"
        return
    fi
    if [ "$wanted" != "$default" ]; then
        say "$wanted is neither present nor pullable, and only $default has a stand-in"
        exit 1
    fi
    if present "$standin"; then
        say "using the stand-in $standin made earlier"
    else
        "$maker"
    fi
    echo "$standin"
}

# check WANTED DEFAULT STANDIN CAN-MAKE: whether resolve would succeed, without making anything.
check() {
    wanted=$1 default=$2 standin=$3 can_make=$4
    if available "$wanted"; then
        return
    fi
    if [ "$wanted" != "$default" ]; then
        say "$wanted is neither present nor pullable, and only $default has a stand-in"
        exit 1
    fi
    if present "$standin"; then
        return
    fi
    "$can_make" || exit 1
}

debian_args() {
    echo "${DEBIAN_IMAGE:-$DEFAULT_DEBIAN} $DEFAULT_DEBIAN $STANDIN_DEBIAN"
}
python_args() {
    echo "${PYTHON_IMAGE:-$DEFAULT_PYTHON} $DEFAULT_PYTHON $STANDIN_PYTHON"
}

# shellcheck disable=SC2046 # image names have no spaces
case "${1:-} ${2:-}" in
"debian ") resolve $(debian_args) make_debian_standin ;;
"python ") resolve $(python_args) make_python_standin ;;
"check debian") check $(debian_args) can_make_debian ;;
"check python") check $(python_args) can_make_python ;;
*)
    echo "usage: $0 [check] debian|python" >&2
    exit 2
    ;;
esac
