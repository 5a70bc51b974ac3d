//! Docker fixtures for `tests/container.rs`: the images, a two-container "pod", and the
//! examples' workflows.
//!
//! A Direktiv function pod is the function container plus the sidecar, sharing one network
//! namespace: the sidecar calls the runner on localhost:8080 and the runner posts logs to
//! 127.0.0.1:8889. [`Pod`] rebuilds that with the fake sidecar from `docker/test-sidecar/` in
//! one container and the runner image in a second one started with
//! `--network container:<sidecar>`.
//!
//! - `images.rs` builds every image once per test process with `docker/build-images.sh` (what
//!   `make images` runs) under tags of their own, plus the images only the tests use.
//! - `pod.rs` starts pods (with services such as an S3 emulator beside them) and talks to them.
//! - `workflow.rs` reads `examples/*/workflow.yaml` and evaluates what Direktiv would put into
//!   an action's input.
//!
//! Containers and networks carry names unique to the test process and are removed by a guard's
//! `Drop`, which also runs when a test panics; containers print their `docker logs` first when
//! the test is failing. Images keep their tags between runs, so that the next run reuses their
//! layers.

pub mod images;
mod pod;
pub mod workflow;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::Reply;

pub use images::{images, Images};
pub use pod::Pod;

/// A generous bound for container start-up and short requests on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The label every container and network made here carries, so that leftovers of a killed run
/// can be found with `docker ps -a --filter label=direktiv-cmd.test`.
pub const LABEL: &str = "direktiv-cmd.test=1";

/// Runs `docker` with `args`; the trimmed stdout, or stderr as the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Like [`docker`], panicking with docker's message on failure.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    match docker(args) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// A name no other test or test run uses.
pub fn unique(kind: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("dcmd-test-{}-{n}-{kind}", std::process::id())
}

/// A container, removed with its anonymous volumes on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name <unique> <flags> <image> <args>`.
    #[track_caller]
    pub fn run(kind: &str, flags: &[&str], image: &str, args: &[&str]) -> Container {
        let container = Container { name: unique(kind) };
        let mut cmd = vec!["run", "-d", "--name", &container.name, "--label", LABEL];
        cmd.extend_from_slice(flags);
        cmd.push(image);
        cmd.extend_from_slice(args);
        docker_ok(&cmd);
        container
    }

    /// Whether the container still runs.
    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}").as_deref() == Ok("true")
    }

    /// The exit code of a stopped container.
    pub fn exit_code(&self) -> i64 {
        let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name]);
        code.parse().unwrap_or(-1)
    }

    /// `docker inspect --format <format>` of the container.
    pub fn inspect(&self, format: &str) -> Result<String, String> {
        docker(&["inspect", "--format", format, &self.name])
    }

    /// The container's address on `network`.
    #[track_caller]
    pub fn ip_on(&self, network: &str) -> String {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        let ip = docker_ok(&["inspect", "--format", &format, &self.name]);
        assert!(!ip.is_empty(), "{} has no address on {network}", self.name);
        ip
    }

    /// `docker exec <container> <args>`: stdout, or the error.
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = vec!["exec", self.name.as_str()];
        cmd.extend_from_slice(args);
        docker(&cmd)
    }

    /// Its output so far (stdout and stderr).
    pub fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.name])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("docker logs: {e}"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- docker logs {} ---\n{}", self.name, self.logs());
        }
        let _ = docker(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// A user-defined bridge network, removed on drop (after the containers on it).
pub struct Network {
    pub name: String,
}

impl Network {
    #[track_caller]
    pub fn create() -> Network {
        let network = Network {
            name: unique("net"),
        };
        docker_ok(&["network", "create", "--label", LABEL, &network.name]);
        network
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// The `result` of every command in a native reply under `key` (`commands` unless
/// `CMD_RESULT_KEY` renames it).
pub fn results_under(reply: &Reply, key: &str) -> Vec<Value> {
    reply
        .results_under(key)
        .iter()
        .map(|c| c.get("result").cloned().unwrap_or(Value::Null))
        .collect()
}

/// The `result` of every command in a native reply.
pub fn results(reply: &Reply) -> Vec<Value> {
    results_under(reply, "commands")
}
