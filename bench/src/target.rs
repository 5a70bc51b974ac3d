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
    /// The runner binary, logging to the fake sidecar at `sidecar`, with `env` set besides
    /// the run's own settings.
    Runner {
        binary: PathBuf,
        sidecar: String,
        env: Vec<(String, String)>,
    },
}

/// Where a server puts a command's output lines, for the delivery checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinesAt {
    /// At the sidecar, all of them before the response (the contract).
    Sidecar,
    /// In the response body only (the spawn floor).
    Response,
}

/// How a server is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As a process of the harness, on the host: the runner makes a cgroup per request.
    Host,
    /// In a mount and pid namespace of its own with the cgroup mounts read-only, as in an
    /// unprivileged pod (pod.rs); `harness` is this binary, the namespace's init, and
    /// `host_mount_ns` the mount namespace the init must not be in.
    Pod {
        harness: PathBuf,
        host_mount_ns: String,
    },
}

impl Target {
    /// The same runner with `name=value` in its environment too; other servers as they are.
    pub fn with_env(&self, name: &str, value: &str) -> Target {
        let mut target = self.clone();
        if let Target::Runner { env, .. } = &mut target {
            env.push((name.to_owned(), value.to_owned()));
        }
        target
    }

    /// The command that starts the server in `mode`.
    fn command(&self, mode: &Mode) -> Command {
        let server = self.server_command();
        let Mode::Pod {
            harness,
            host_mount_ns,
        } = mode
        else {
            return server;
        };
        let std = server.as_std();
        let (unshare, args) = crate::pod::wrapper(harness, host_mount_ns);
        let mut command = Command::new(unshare);
        command
            .args(args)
            .arg(std.get_program())
            .args(std.get_args());
        for (name, value) in std.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }

    /// The command that starts the server itself.
    fn server_command(&self) -> Command {
        match self {
            Target::Runner {
                binary,
                sidecar,
                env,
            } => {
                let mut command = Command::new(binary);
                command
                    .env("PORT", "0")
                    .env("DIREKTIV_HTTP_BACKEND", sidecar)
                    .env("CMD_MAX_INFLIGHT", MAX_INFLIGHT)
                    .env_remove("DIREKTIV_DEV_MODE")
                    .env_remove("RUST_LOG")
                    .env_remove("CMD_LOG_FORMAT")
                    .envs(env.iter().map(|(name, value)| (name, value)));
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

    pub async fn start(&self, mode: &Mode) -> Result<Server, Error> {
        Server::start(self.command(mode), *mode != Mode::Host).await
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

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn in_pod_mode_unshare_starts_the_same_server_with_the_same_environment() {
        let runner = Target::Runner {
            binary: PathBuf::from("/r/direktiv-cmd"),
            sidecar: "http://127.0.0.1:1".to_owned(),
            env: Vec::new(),
        }
        .with_env("CMD_ISOLATION", "off");
        let host = runner.command(&Mode::Host);
        let pod = runner.command(&Mode::Pod {
            harness: PathBuf::from("/h/bench"),
            host_mount_ns: "mnt:[1]".to_owned(),
        });
        let (host, pod) = (host.as_std(), pod.as_std());
        assert_eq!(host.get_program(), "/r/direktiv-cmd");
        assert_eq!(pod.get_program(), "unshare");
        let args: Vec<_> = pod.get_args().collect();
        let tail = ["/h/bench", "pod-init", "mnt:[1]", "/r/direktiv-cmd"];
        assert_eq!(args[args.len() - 4..], tail);
        fn envs(c: &std::process::Command) -> Vec<(&OsStr, Option<&OsStr>)> {
            c.get_envs().collect()
        }
        assert_eq!(envs(pod), envs(host));
        let inflight = (OsStr::new("CMD_MAX_INFLIGHT"), Some(OsStr::new("64")));
        assert!(envs(pod).contains(&inflight));
        // What `with_env` adds reaches the runner, in either mode.
        let isolation = (OsStr::new("CMD_ISOLATION"), Some(OsStr::new("off")));
        assert!(envs(host).contains(&isolation));
    }
}
