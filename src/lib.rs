//! direktiv-cmd: the generic command runner of Direktiv function containers.
//!
//! One request's path, each stage in its own module; `pipeline` calls them in order, and no
//! stage imports `pipeline`, `server` or a module that imports it back:
//!
//! ```text
//! server (HTTP, admission, drain)      main: `direktiv-cmd run <file>`
//!              \                        /
//!               pipeline::answer(ctx, request) -> Reply
//!                 request   body → Plan (wire formats; `plan` holds the types)
//!                 exec      refuse what can never run (CMD_ALLOW, shell) before anything runs
//!                 workspace temp dir, input files, out/, workdir and output file
//!                 exec      one command: locate, start in a process group, pumps, timeout,
//!                           cancel, stop the group and the request's other processes
//!                   process   the kernel's half: start, reap, groups, request cgroups,
//!                             the stop policy (every `unsafe` block is here)
//!                 logs      output lines, masked, to the sidecar (or stdout)
//!                 outcome   reports, failure, result values, error messages
//!                 response  Reply { status, error headers, body } in the request's dialect
//! ```
//!
//! Beside the path: `blocking` (where a request's short file-system work runs, off the async
//! workers), `direktiv` (Direktiv's wire constants), `error` (the `cmd.*` taxonomy),
//! `cancel` (a request's cancellation, passed down as a value), `mask` (secret redaction),
//! `config`, `init` (PID 1, forked through `process`), `isolation` (how concurrent requests are
//! kept apart: a Landlock ruleset per request, entered by each command in `process`), `limits`
//! (resource limits: read by `request` and `config`, set in the child by `process`), `size`
//! (the one grammar of every size the runner reads), `metrics`, `stdio` (the runner's own
//! stdout and stderr, which never block), `sync` (the lock-poison policy), `text`, `trace` (W3C
//! trace context for commands), `workflow_commands` (`::add-mask::` and other lines a command
//! prints to the runner), `var` (`direktiv-cmd var get|set`, run by commands).
//!
//! Modules and items are crate-private unless the binary, the integration tests, the fuzz
//! targets or the benchmarks use them.

#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod blocking;
pub(crate) mod cancel;
pub mod config;
pub(crate) mod direktiv;
pub(crate) mod duration;
pub mod error;
pub(crate) mod exec;
pub mod init;
pub mod isolation;
pub mod limits;
pub(crate) mod logs;
pub(crate) mod mask;
pub(crate) mod metrics;
pub(crate) mod outcome;
pub mod pipeline;
pub mod plan;
pub mod process;
pub mod request;
pub mod response;
pub mod retry;
pub mod server;
pub mod size;
pub mod startup;
pub mod stdio;
pub(crate) mod sync;
pub(crate) mod text;
pub(crate) mod trace;
pub mod var;
pub(crate) mod workflow_commands;
pub mod workspace;
