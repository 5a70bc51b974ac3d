#!/bin/sh
# What `make test` needs on this machine, checked before the long build starts: the Rust
# toolchain's rustfmt and clippy, a C linker with the static C library (`make static`), and the
# programs the tests run. On Debian as root, what is missing is installed with apt-get; anywhere
# else the script names it and fails.
#
# With a Docker engine, the container tests also need what docker/prerequisites.sh checks (a
# static busybox, mmdebstrap where the Debian base cannot be pulled, pip for the example
# images' wheels), installed by it the same way. An installed engine whose daemon is not
# running is started. Without an engine the
# container tests say SKIPPED, or fail under CI=true unless CMD_SKIP_DOCKER=1 (README, "Tests").
set -eu

say() { echo "prerequisites: $*"; }

if ! command -v cargo >/dev/null 2>&1; then
    say "cargo is missing: install a Rust toolchain from https://rustup.rs"
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 ||
        say "rustup could not add rustfmt and clippy; the lint step may fail"
fi

# Missing packages, installed without their recommends.
missing=""
need() { # need PACKAGE, after a check that failed
    case " $missing " in *" $1 "*) ;; *) missing="$missing $1" ;; esac
}

# Building: a linker, and the C library's static archive for the static binary.
command -v cc >/dev/null 2>&1 || need gcc
[ -e "$(cc -print-file-name=libc.a 2>/dev/null || echo /nonexistent)" ] ||
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need libc6-dev
# What the tests run besides coreutils.
command -v jq >/dev/null 2>&1 || need jq
command -v python3 >/dev/null 2>&1 || need python3
command -v perl >/dev/null 2>&1 || need perl
# Runtimes that reserve far more address space than they use: the `memory` limit tests.
command -v node >/dev/null 2>&1 || need nodejs
command -v java >/dev/null 2>&1 || need default-jre-headless
command -v ps >/dev/null 2>&1 || need procps
for tool in unshare setpriv setsid; do
    command -v "$tool" >/dev/null 2>&1 || need util-linux
done

# The container tests, where a Docker engine is installed.
if ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 &&
    [ "$(id -u)" -eq 0 ]; then
    say "starting dockerd (log: /tmp/dockerd.log)"
    (dockerd >/tmp/dockerd.log 2>&1 &)
    for _ in $(seq 1 30); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
fi
if ! docker info >/dev/null 2>&1; then
    say "no Docker engine answers \`docker info\`: the container tests will say SKIPPED" \
        "(under CI=true they fail unless CMD_SKIP_DOCKER=1)"
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing:$missing"
        say "on Debian: sudo apt-get install --no-install-recommends$missing"
        say "then run make test again"
        exit 1
    fi
    say "installing$missing"
    apt-get update -qq
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# What the images and the container tests need is docker/prerequisites.sh's to know.
if docker info >/dev/null 2>&1; then
    "$(dirname "$0")/../docker/prerequisites.sh" container-test --install
fi
