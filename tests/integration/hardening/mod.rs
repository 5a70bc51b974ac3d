//! What a hostile request must not be able to do to the runner (docs/guarantees.md), against
//! the real binary with real processes, file systems and sockets:
//!
//! - stall it through the file system: FIFOs, devices and sockets where a file or folder is
//!   expected, a temp dir header naming something else, huge trees (`fifos`);
//! - get around `CMD_ALLOW` by naming a planted file (`allowlist`);
//! - leave processes behind by leaving the process group (`escapees`);
//! - create anything outside its temp dir through a symlink (`outside`);
//! - turn a name the file system refuses into an internal error (`names`);
//! - leave its private temp dir behind by making parts of it unwritable (`cleanup`).

mod allowlist;
mod cleanup;
mod escapees;
mod fifos;
mod names;
mod outside;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{procs, FakeSidecar, Reply, Runner};

/// How long a request that must not block may take on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(20);

/// POSTs `body` with `dir` as `Direktiv-TempDir`: a dir the test owns, reused across requests
/// as a sidecar's per-action dir could be.
async fn post_in(
    sidecar: &FakeSidecar,
    runner: &Runner,
    aid: &str,
    dir: &Path,
    body: &Value,
) -> Reply {
    sidecar.register(aid);
    let reply = runner
        .post(
            body,
            &[
                ("Direktiv-ActionID", aid),
                ("Direktiv-TempDir", &dir.display().to_string()),
                ("Content-Type", "application/json"),
            ],
        )
        .await;
    sidecar.deregister(aid);
    reply
}

/// POSTs `body` without `Direktiv-TempDir`: the runner makes and removes a private temp dir.
async fn post_private(sidecar: &FakeSidecar, runner: &Runner, aid: &str, body: &Value) -> Reply {
    sidecar.register(aid);
    let reply = runner
        .post(
            body,
            &[
                ("Direktiv-ActionID", aid),
                ("Content-Type", "application/json"),
            ],
        )
        .await;
    sidecar.deregister(aid);
    reply
}

/// Asserts `cmd.input` (400) whose message contains every one of `needles`.
#[track_caller]
fn assert_input_error(reply: &Reply, needles: &[&str], case: &str) {
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    for needle in needles {
        assert!(
            message.contains(needle),
            "{case}: the message must contain {needle:?}: {message}"
        );
    }
}

/// Kills, when dropped, whatever still carries `marker`: a failed test must not leave its
/// escapees running for the rest of the suite.
struct KillLeftovers(String);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for proc in procs::with_marker(&self.0) {
            let _ = procs::send_signal(proc.pid, procs::Signal::KILL);
        }
    }
}

/// A folder outside every temp dir, watched to prove that nothing was created in it.
struct Outside(tempfile::TempDir);

impl Outside {
    fn new() -> Self {
        Outside(
            tempfile::Builder::new()
                .prefix("hardening-outside-")
                .tempdir()
                .expect("create the outside folder"),
        )
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Every name in the folder, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    use rustix::fs::{FileType, Mode};
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .expect("make a FIFO");
}
