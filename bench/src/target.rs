//! The servers a run measures, and how to start and talk to each.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::process::Command;

use crate::client::Error;
use crate::process::Server;

/// The runner's in-flight limit in the runs: the default of 10 would turn c=16 into `cmd.busy`.
const MAX_INFLIGHT: &str = "64";

/// A server under measurement.
#[derive(Clone)]
pub enum Target {
    /// This harness binary re-executed as the spawn floor (spawn, answer with stdout).
    SpawnFloor { harness: PathBuf },
    /// This harness binary re-executed as the protocol floor (spawn, one awaited log POST to
    /// `sidecar`, answer with stdout).
    ProtocolFloor { harness: PathBuf, sidecar: String },
    /// The runner binary, logging to the fake sidecar at `sidecar`.
    Runner { binary: PathBuf, sidecar: String },
}

/// Where a server puts a command's output lines, for the delivery checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinesAt {
    /// At the sidecar, all of them before the response (the contract).
    Sidecar,
    /// In the response body only (the spawn floor).
    Response,
}

impl Target {
    fn command(&self) -> Command {
        match self {
            Target::Runner { binary, sidecar } => {
                let mut command = Command::new(binary);
                command
                    .env("PORT", "0")
                    .env("DIREKTIV_HTTP_BACKEND", sidecar)
                    .env("CMD_MAX_INFLIGHT", MAX_INFLIGHT)
                    .env_remove("DIREKTIV_DEV_MODE")
                    .env_remove("RUST_LOG")
                    .env_remove("CMD_LOG_FORMAT");
                command
            }
            Target::SpawnFloor { harness } => {
                let mut command = Command::new(harness);
                command.arg("floor-server");
                command
            }
            Target::ProtocolFloor { harness, sidecar } => {
                let mut command = Command::new(harness);
                command.arg("protocol-floor").arg(sidecar);
                command
            }
        }
    }

    /// The request body that runs `line` (split into words, no shell): the runner's native
    /// JSON, or the floors' plain text.
    pub fn body(&self, line: &str) -> Bytes {
        match self {
            Target::Runner { .. } => runner_command(line),
            Target::SpawnFloor { .. } | Target::ProtocolFloor { .. } => {
                Bytes::from(line.to_owned())
            }
        }
    }

    /// The short name in action ids and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Target::SpawnFloor { .. } => "spawn-floor",
            Target::ProtocolFloor { .. } => "protocol-floor",
            Target::Runner { .. } => "runner",
        }
    }

    pub fn lines_at(&self) -> LinesAt {
        match self {
            Target::SpawnFloor { .. } => LinesAt::Response,
            Target::ProtocolFloor { .. } | Target::Runner { .. } => LinesAt::Sidecar,
        }
    }

    pub async fn start(&self) -> Result<Server, Error> {
        Server::start(self.command()).await
    }
}

/// The runner's request for one command `line` (split into words, no shell).
pub fn runner_command(line: &str) -> Bytes {
    Bytes::from(serde_json::json!({"commands": [{"command": line}]}).to_string())
}

/// The runner's request for one `script` run by the shell.
pub fn runner_shell(script: &str) -> Bytes {
    Bytes::from(serde_json::json!({"commands": [{"command": script, "shell": true}]}).to_string())
}

/// One side of a comparison: a running server and the request it gets.
pub struct Arm<'a> {
    pub name: &'a str,
    pub server: &'a Server,
    pub body: Bytes,
    pub lines_at: LinesAt,
}

impl<'a> Arm<'a> {
    /// `target`'s server running `line`.
    pub fn of(target: &'a Target, server: &'a Server, line: &str) -> Self {
        Arm {
            name: target.name(),
            server,
            body: target.body(line),
            lines_at: target.lines_at(),
        }
    }
}
