# direktiv-cmd: build, test, benchmark and package.
#
#   make run      start the runner locally on :8080 (development mode: logs to stdout)
#   make test     installs (or names) what the tests need, then format check, clippy, the
#                 static build and every test, reporting every failure (the command CI runs)
#   make static   statically linked release binary in target/static/direktiv-cmd
#   make images   the container images and the examples' images, from that binary; builds
#                 offline too (docker/README.md)
#   make dev-pod  a local pod: the runner and a sidecar that prints what Direktiv would see;
#                 IMAGE=<your image> runs that image beside it (docker/README.md)
#   make bench    benchmark table (also written as JSON to bench-results/); STRICT=1 fails on a
#                 missed target
#   make pair     two runner builds side by side (A=<build> [B=<build>]): which is faster
#   make soak     long mixed-load test: cancels, timeouts, disconnects, leak checks
#   make layout   remakes layout/functions.txt, the functions that run, which the linker places
#                 together (needs root; docs/performance.md, "Code layout")

CARGO ?= cargo
HOST_TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/static/direktiv-cmd

.PHONY: run test test-prerequisites lint unit static images image container-test dev-pod bench bench-harness pair soak layout clean

# The quick profile (Cargo.toml): optimised, but without the release build's fat LTO.
run:
	DIREKTIV_DEV_MODE=1 $(CARGO) run --profile quick --

# Every test runs against the real binary; the static one is needed by the chroot and
# container tests. What the machine lacks is installed (or named) first, before the long build.
# A failing test does not stop the others: every failure is reported at the end.
test: test-prerequisites
	$(MAKE) --no-print-directory lint static
	status=0; \
	$(CARGO) test --all-targets --no-fail-fast || status=1; \
	$(CARGO) test --manifest-path bench/Cargo.toml --target-dir target/packages --no-fail-fast || status=1; \
	exit $$status

# tests/prerequisites.sh: packages (apt-get as root on Debian, else named), rustfmt and clippy,
# a Docker daemon that is installed but not running.
test-prerequisites:
	tests/prerequisites.sh

# The benchmark harness and the container tests' sidecar are packages of their own.
PACKAGES := bench/Cargo.toml docker/test-sidecar/Cargo.toml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	for manifest in $(PACKAGES); do \
	  $(CARGO) fmt --manifest-path $$manifest -- --check && \
	  $(CARGO) clippy --manifest-path $$manifest --target-dir target/packages --all-targets -- -D warnings || exit 1; \
	done

# glibc with crt-static: the binary needs no libc, no /etc/hosts, nothing but itself.
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(HOST_TARGET)
	mkdir -p target/static
	cp target/$(HOST_TARGET)/release/direktiv-cmd $(STATIC_BIN).new
	mv -f $(STATIC_BIN).new $(STATIC_BIN)

# direktiv-cmd:scratch, direktiv-cmd:debian and direktiv-cmd-example-{aws-cli,bash,python}
# from that binary, with or without a registry: missing public base images are pulled or, when
# that fails, made from Debian's archive (docker/base-image.sh, needs mmdebstrap). Override the
# bases with DEBIAN_IMAGE=... PYTHON_IMAGE=... What the build needs is checked first, before
# the static build (docker/prerequisites.sh says what to install).
images:
	docker/prerequisites.sh images
	$(MAKE) static
	docker/build-images.sh $(STATIC_BIN)

image: images

# The runner beside the test sidecar in print mode (docker/dev-pod.sh): as local processes, or
# IMAGE=<image> in containers sharing the sidecar's network and /mnt/shared, as in a pod.
SIDECAR_MANIFEST := docker/test-sidecar/Cargo.toml
SIDECAR_STATIC := target/packages/$(HOST_TARGET)/release/direktiv-cmd-test-sidecar
IMAGE ?=
dev-pod:
ifeq ($(IMAGE),)
	$(CARGO) build --profile quick
	$(CARGO) build --manifest-path $(SIDECAR_MANIFEST) --target-dir target/packages
	DEV_POD_RUNNER_BIN=target/quick/direktiv-cmd docker/dev-pod.sh
else
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --manifest-path $(SIDECAR_MANIFEST) --target $(HOST_TARGET) --target-dir target/packages
	rm -rf target/dev-pod-sidecar && mkdir -p target/dev-pod-sidecar/shared
	cp $(SIDECAR_STATIC) target/dev-pod-sidecar/
	docker build --quiet --tag direktiv-cmd-dev/sidecar --file docker/test-sidecar/Dockerfile target/dev-pod-sidecar
	docker/dev-pod.sh $(IMAGE)
endif

# The images run as a Direktiv pod on the local Docker engine, with the release binary.
container-test:
	docker/prerequisites.sh container-test
	$(MAKE) static
	DIREKTIV_CMD_STATIC_BIN=$(STATIC_BIN) $(CARGO) test --test container

# The harness is its own package (bench/), built and linked like the runner (build.rs: packed
# relocations) so its floor servers compare fairly. It prints PASS/FAIL per target and exits 0; with STRICT=1 it exits 1 when a target is
# missed (the table and bench-results/latest.json are written either way).
STRICT ?=
BENCH_BIN := target/bench/$(HOST_TARGET)/release/direktiv-cmd-bench

bench: static bench-harness
	$(BENCH_BIN) --runner $(STATIC_BIN) --out bench-results/latest.json $(if $(filter 1 yes true,$(STRICT)),--strict)

bench-harness:
	RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" $(CARGO) build --release --manifest-path bench/Cargo.toml --target $(HOST_TARGET) --target-dir target/bench

# Two runner builds side by side, taking turns (bench/src/pair.rs): did a change make it faster?
#   make pair A=/tmp/direktiv-cmd.before [B=target/static/direktiv-cmd] [ARGS="--concurrency 16"]
B ?= $(STATIC_BIN)
pair: bench-harness
	@test -n "$(A)" || { echo "make pair A=<the other build> [B=...] [ARGS=...]"; exit 2; }
	$(BENCH_BIN) pair $(A) $(B) $(ARGS)

soak:
	$(CARGO) test --release --test soak -- --ignored --nocapture

# A probe build with every function on a page of its own (and no layout), started by the
# harness so that the pages it maps are the functions that ran; then the static binary again,
# laid out by the new list (bench/src/layout.rs).
LAYOUT_PROBE := target/layout-probe-build
layout:
	RUSTFLAGS="-C target-feature=+crt-static" DIREKTIV_CMD_LAYOUT=off $(CARGO) rustc --release --target $(HOST_TARGET) --bin direktiv-cmd -- -C llvm-args=-align-all-functions=12 -C strip=none
	cp target/$(HOST_TARGET)/release/direktiv-cmd $(LAYOUT_PROBE)
	RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" $(CARGO) build --release --manifest-path bench/Cargo.toml --target $(HOST_TARGET) --target-dir target/bench
	target/bench/$(HOST_TARGET)/release/direktiv-cmd-bench layout $(LAYOUT_PROBE) layout/functions.txt
	rm -f $(LAYOUT_PROBE)
	$(MAKE) --no-print-directory static

# Request parsing and input files under libFuzzer, FUZZ_TIME seconds each (fuzz/README.md).
# Needs a nightly toolchain and cargo-fuzz; not part of test or lint.
FUZZ_TIME ?= 60
.PHONY: fuzz
fuzz:
	cargo +nightly fuzz run parse_request -- -max_total_time=$(FUZZ_TIME) -dict=fuzz/parse_request.dict
	cargo +nightly fuzz run input_files -- -max_total_time=$(FUZZ_TIME)

clean:
	$(CARGO) clean
