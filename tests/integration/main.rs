//! The integration tests: the real binary, spoken to over HTTP through a fake Direktiv sidecar
//! (`tests/support`), with real processes, signals, files and sockets. One crate, so the
//! harness is compiled and linked once and every test runs in one process, side by side.
//!
//! A new test file `tests/integration/<name>.rs` joins the crate with a `mod <name>;` line
//! below (a folder `<name>/mod.rs` for a group of files); `harness::every_test_file_is_compiled`
//! fails for a file under `tests/` that no crate compiles. Tests that must not share a process
//! with these get a crate of their own in Cargo.toml (`[[test]]`, `autotests = false`):
//! `container` (Docker images) and `soak` (long load, run by `make soak`).
//!
//! A test that needs something of the machine (Docker, pid namespaces, root, cgroups) starts
//! with `skip_without!(Capability::...)`: see `support/capability.rs`.

#[path = "../support/mod.rs"]
mod support;

mod accounting;
mod build_prerequisites;
mod config_cli;
mod core_api;
mod dev_pod;
mod direktiv_compat;
mod examples;
mod first_hour;
mod hardening;
mod hardening_server;
mod harness;
mod isolation;
mod isolation_requests;
mod lifecycle;
mod limits;
mod log_streaming;
mod masking;
mod memory_cgroups;
mod pid1;
mod process_layer;
mod readme;
mod request_props;
mod results;
mod static_binary;
mod talking_back;
