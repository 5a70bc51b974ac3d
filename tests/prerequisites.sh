#!/bin/sh
# What `make test` needs on this machine, checked before the long build starts: the Rust
# toolchain's rustfmt and clippy, a C linker with the static C library (`make static`), and the
# programs the tests run. On Debian as root, what is missing is installed with apt-get; anywhere
# else the script names it and fails.
#
# With a Docker engine, the container tests also need a static busybox, mmdebstrap (the Debian
# base is made from Debian's archive when it cannot be pulled) and pip (wheels for the example
# images). An installed engine whose daemon is not running is started. Without an engine the
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

# Missing packages, installed without their recommends (pip's would be a compiler tool chain
# the tests do not use), and those that need theirs (mmdebstrap: gpg to check the archive).
missing="" missing_full=""
need() { # need PACKAGE, after a check that failed
    case " $missing " in *" $1 "*) ;; *) missing="$missing $1" ;; esac
}
need_full() {
    case " $missing_full " in *" $1 "*) ;; *) missing_full="$missing_full $1" ;; esac
}

# Building: a linker, and the C library's static archive for the static binary.
command -v cc >/dev/null 2>&1 || need gcc
[ -e "$(cc -print-file-name=libc.a 2>/dev/null || echo /nonexistent)" ] ||
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need libc6-dev
# What the tests run besides coreutils.
command -v jq >/dev/null 2>&1 || need jq
command -v python3 >/dev/null 2>&1 || need python3
command -v perl >/dev/null 2>&1 || need perl
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
if docker info >/dev/null 2>&1; then
    # FROM scratch needs a static busybox (ldd fails on a static binary).
    { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need busybox-static
    command -v mmdebstrap >/dev/null 2>&1 || need_full mmdebstrap
    python3 -m pip --version >/dev/null 2>&1 || need python3-pip
else
    say "no Docker engine answers \`docker info\`: the container tests will say SKIPPED" \
        "(under CI=true they fail unless CMD_SKIP_DOCKER=1)"
fi

if [ -z "$missing$missing_full" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing:$missing$missing_full"
    [ -z "$missing" ] ||
        say "on Debian: sudo apt-get install --no-install-recommends$missing"
    [ -z "$missing_full" ] || say "on Debian: sudo apt-get install$missing_full"
    say "then run make test again"
    exit 1
fi
say "installing$missing$missing_full"
apt-get update -qq
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ -n "$missing_full" ]; then
    apt-get install -y -qq $missing_full >/dev/null
fi
