//! Pieces of request bodies that many tests write the same way.

use serde_json::{json, Value};

/// The environment variable that carries a request's marker (see [`marked`]).
pub const MARK_VAR: &str = "TEST_MARK";

/// A command run through the runner's shell (`shell: true`).
pub fn sh(script: &str) -> Value {
    json!({"command": script, "shell": true})
}

/// A native request whose processes all carry `marker` in their environment (request-level
/// `env`, inherited by everything a command starts, even `sleep` behind a shell), so that
/// `procs::with_marker` finds them.
pub fn marked(marker: &str, commands: Value) -> Value {
    json!({"env": {MARK_VAR: marker}, "commands": commands})
}
