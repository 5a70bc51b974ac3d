//! direktiv-cmd: the generic command runner of Direktiv function containers.
//!
//! The data path of one request: `server` (HTTP) → `request` (wire JSON → `Plan`) → `job`
//! (temp dir, `files`, commands one by one through `exec`) → `logs` (output lines to the
//! sidecar) → `response` (results or a `cmd.*` error).

pub mod cancel;
pub mod config;
pub mod error;
pub mod exec;
pub mod files;
pub mod init;
pub mod job;
pub mod logs;
pub mod mask;
pub mod metrics;
pub mod plan;
pub mod request;
pub mod response;
pub mod server;
pub mod stdio;
pub mod text;
