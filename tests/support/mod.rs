//! The test harness: a fake Direktiv sidecar and a handle on the real `direktiv-cmd` binary.
//!
//! Integration tests speak the real protocol to the real binary. A test module does:
//!
//! ```ignore
//! use crate::support::{FakeSidecar, Runner};
//! use serde_json::json;
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn echo() {
//!     let sidecar = FakeSidecar::start();
//!     let runner = Runner::start(&sidecar);
//!     let reply = sidecar.call(&runner, "a1", json!({"command": "echo hi"})).await;
//!     reply.assert_success();
//!     assert_eq!(reply.command(0)["result"], "hi");
//!     assert_eq!(sidecar.lines("a1"), ["running command 'echo hi'", "hi"]);
//! }
//! ```
//!
//! - [`FakeSidecar`] (sidecar.rs) serves `/log` and `/var` like Direktiv's sidecar and runs an
//!   action the way it does: per-action dir with `out/` folders, `files:` from variables, the
//!   action id registered only while the call is in flight (late `/log` posts are rejected with
//!   500 and recorded), `out/<scope>/<name>` files collected into variables afterwards. Slow,
//!   failing and down sidecars are switches on it.
//! - [`Runner`] (runner.rs) starts the binary with `PORT=0`, finds its address in the
//!   `listening on` log line, waits for `/readyz`, collects stdout/stderr lines and ends the
//!   process on drop. [`RunnerBuilder::run_to_exit`] runs it to completion instead.
//! - [`Reply`] (reply.rs) is any HTTP answer, with helpers for the error headers and the
//!   native result body.
//! - [`capability::skip_without!`] is the only way a test may skip (capability.rs).
//! - `procs` (processes through /proc), `connections` (sockets through /proc/net/tcp),
//!   [`Metrics`] (`/metrics`, where a missing metric fails), `request` (body pieces).
//!
//! The integration crate (tests/integration) compiles all of it and so catches unused
//! helpers; the container and soak crates use a part.

pub mod capability;
pub mod cgroups;
pub mod connections;
pub mod metrics;
pub mod procs;
pub mod reply;
pub mod request;
pub mod runner;
pub mod sidecar;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

pub(crate) use capability::skip_without;
pub use capability::Capability;
pub use metrics::Metrics;
pub use reply::{Body, Reply};
pub use request::{marked, sh};
pub use runner::{binary, strip_ansi, Finished, Runner};
pub use sidecar::{
    ActionFile, CallOptions, FakeSidecar, TempDirHeader, VarPost, LOG_CAP, MISSING_AID,
};

/// A generous bound for anything that should be quick, sized for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a fake sidecar and a runner pointed at it, with extra environment variables.
pub fn start_pair(env: &[(&str, &str)]) -> (FakeSidecar, Runner) {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(&sidecar, env);
    (sidecar, runner)
}

/// [`start_pair`], shared so that background calls can use them.
pub fn start_shared(env: &[(&str, &str)]) -> (Arc<FakeSidecar>, Arc<Runner>) {
    let (sidecar, runner) = start_pair(env);
    (Arc::new(sidecar), Arc::new(runner))
}

/// Runs one action through the sidecar in the background.
pub fn call_in_background(
    sidecar: &Arc<FakeSidecar>,
    runner: &Arc<Runner>,
    aid: &str,
    body: Value,
) -> JoinHandle<Reply> {
    let (sidecar, runner, aid) = (sidecar.clone(), runner.clone(), aid.to_string());
    tokio::spawn(async move { sidecar.call(&runner, &aid, body).await })
}

/// Awaits `future`, failing the test when it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

/// Awaits a call made with [`call_in_background`], failing the test when it takes longer than
/// `limit` or panicked.
pub async fn reply_within(call: JoinHandle<Reply>, limit: Duration) -> Reply {
    match within(limit, "a call in the background", call).await {
        Ok(reply) => reply,
        Err(panic) => panic!("the call panicked: {panic}"),
    }
}

/// The output of the `env` command as a map.
pub fn env_map(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
