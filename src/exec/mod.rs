//! One command's life: spawn it in its own process group, pump its output to the logs and the
//! response, and end it on exit, timeout or cancellation — never leaving a process behind.

mod capture;
pub mod deadline;
mod group;
mod launch;
pub mod limits;
pub mod oom;
mod spawn;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

pub use capture::Capture;
pub use group::{signal_name, ExitKind};
pub use launch::{resolve, Launch};

use crate::cancel::Cancel;
use crate::config::{AllowList, Config};
use crate::error::Failure;
use crate::logs::LogStream;
use crate::metrics::METRICS;
use crate::plan::CommandSpec;
use group::ProcessGroup;
use spawn::SpawnRequest;

/// First and largest read size of an output pipe (64 KiB is a Linux pipe's default capacity).
const READ_START: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// How long output is still read after a command's main process exited while something else
/// (a background child) holds its stdout/stderr open.
const LINGER: Duration = Duration::from_secs(1);

/// The execution settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub shell: Option<PathBuf>,
    pub allow: AllowList,
    pub kill_grace: Duration,
    pub default_timeout: Option<Duration>,
    pub max_output: usize,
}

impl ExecSettings {
    pub fn from_config(config: &Config) -> Self {
        ExecSettings {
            shell: config.shell_path(),
            allow: config.allow.clone(),
            kill_grace: config.kill_grace,
            default_timeout: config.default_timeout(),
            max_output: config.max_output,
        }
    }

    /// Refuses, before anything runs, a command this runner will not start.
    pub fn check(&self, spec: &CommandSpec) -> Result<(), Failure> {
        resolve(spec, self.shell.as_deref(), &self.allow).map(|_| ())
    }
}

/// What a command runs with, shared by all commands of a request.
pub struct Execution<'a> {
    pub tempdir: &'a Path,
    /// HOME, DIREKTIV_* and the request-level env, applied over the runner's own environment.
    pub env: &'a [(String, String)],
    pub logs: &'a LogStream,
    pub cancel: &'a Cancel,
    pub settings: &'a ExecSettings,
    /// Keep stdout and stderr interleaved as well (the direktiv-cmd `Output`).
    pub combine: bool,
}

/// What happened to one command.
#[derive(Debug)]
pub struct CommandRun {
    pub stdout: Capture,
    pub stderr: Capture,
    pub combined: Capture,
    /// How the main process ended, when it was started and ended by itself.
    pub exit: Option<ExitKind>,
    pub failure: Option<Failure>,
    pub duration: Duration,
}

/// How the wait for a command ended.
enum Ending {
    Exited(ExitKind),
    TimedOut(Duration),
    Cancelled(crate::error::CancelReason),
}

/// Runs one command to its end.
pub async fn run(spec: &CommandSpec, x: &Execution<'_>) -> CommandRun {
    let started = Instant::now();
    let mut run = CommandRun {
        stdout: Capture::new(x.settings.max_output),
        stderr: Capture::with_tail(x.settings.max_output),
        combined: Capture::new(if x.combine { x.settings.max_output } else { 0 }),
        exit: None,
        failure: None,
        duration: Duration::ZERO,
    };
    if let Err(failure) = execute(spec, x, &mut run).await {
        run.failure = Some(failure);
    }
    run.duration = started.elapsed();
    METRICS.command_duration.observe(run.duration.as_secs_f64());
    run
}

async fn execute(
    spec: &CommandSpec,
    x: &Execution<'_>,
    run: &mut CommandRun,
) -> Result<(), Failure> {
    let launch = resolve(spec, x.settings.shell.as_deref(), &x.settings.allow)?;
    let cwd = working_dir(x.tempdir, spec.workdir.as_deref())?;

    let env: Vec<(&str, &str)> = x
        .env
        .iter()
        .chain(spec.env.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let spawned = spawn::spawn(&SpawnRequest {
        program: &launch.program,
        args: &launch.args,
        cwd: &cwd,
        env,
        stdin: spec.stdin.is_some(),
    })
    .map_err(|error| launch::spawn_failure(&error, &launch))?;
    let mut group = ProcessGroup::new(spawned.pid);
    METRICS.running_processes.inc();
    let _running = scopeguard(|| {
        METRICS.running_processes.dec();
    });

    if let (Some(data), Some(stdin)) = (spec.stdin.clone(), spawned.stdin) {
        if let Ok(sender) = pipe::Sender::from_owned_fd(stdin) {
            tokio::spawn(feed_stdin(sender, data));
        }
    }
    let stop_pumps = CancellationToken::new();
    let combined = Mutex::new(std::mem::take(&mut run.combined));
    let logs = (!spec.silent).then_some(x.logs);
    // Both pumps run inside this task, beside the wait: no task per pipe to spawn and wake.
    let (stdout, stderr) = (
        std::mem::take(&mut run.stdout),
        std::mem::take(&mut run.stderr),
    );
    let pumps = async {
        tokio::join!(
            pump(spawned.stdout, stdout, logs, &combined, &stop_pumps),
            pump(spawned.stderr, stderr, logs, &combined, &stop_pumps),
        )
    };
    tokio::pin!(pumps);
    let timeout = spec.timeout.or(x.settings.default_timeout);
    let deadline = sleep_for(timeout);
    tokio::pin!(deadline);
    let mut drained = None;
    let ending = loop {
        tokio::select! {
            kind = group.wait_leader() => break Ending::Exited(kind),
            () = &mut deadline => break Ending::TimedOut(timeout.unwrap_or_default()),
            reason = x.cancel.cancelled() => break Ending::Cancelled(reason),
            captures = &mut pumps, if drained.is_none() => drained = Some(captures),
        }
    };

    let grace = x.settings.kill_grace;
    match ending {
        Ending::Exited(_) => {
            // Output still in the pipes is read; a background child holding them open gets
            // LINGER, then the rest of the group is stopped and the pumps are told to finish.
            if drained.is_none() {
                drained = tokio::time::timeout(LINGER, pumps.as_mut()).await.ok();
            }
            with_pumps(group.clean_up_after_exit(grace), &mut pumps, &mut drained).await;
        }
        Ending::TimedOut(_) | Ending::Cancelled(_) => {
            with_pumps(group.terminate(grace), &mut pumps, &mut drained).await;
        }
    }
    let captures = match drained {
        Some(captures) => captures,
        None => finish_pumps(&mut pumps, &stop_pumps).await,
    };
    (run.stdout, run.stderr) = captures;
    if x.combine {
        if let Ok(mut combined) = combined.lock() {
            run.combined = std::mem::take(&mut *combined);
        }
    }

    match ending {
        Ending::Exited(kind) => {
            run.exit = Some(kind);
            match kind {
                ExitKind::Code(0) => Ok(()),
                ExitKind::Code(code) => Err(Failure::Exit { code }),
                ExitKind::Signal(signal) => Err(Failure::Signal {
                    name: signal_name(signal),
                }),
            }
        }
        Ending::TimedOut(after) => Err(Failure::Timeout { after }),
        Ending::Cancelled(reason) => Err(Failure::Cancelled { reason }),
    }
}

/// Runs `work` (stopping a process group) while the pumps keep reading: a command stopped in
/// the middle of its output must not block on a full pipe instead of exiting.
async fn with_pumps<W, P, T>(work: W, pumps: &mut std::pin::Pin<&mut P>, drained: &mut Option<T>)
where
    W: std::future::Future<Output = ()>,
    P: std::future::Future<Output = T>,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            () = &mut work => return,
            captures = pumps.as_mut(), if drained.is_none() => *drained = Some(captures),
        }
    }
}

/// Gives the pumps LINGER to drain what is left, then stops them.
async fn finish_pumps<F, T>(pumps: &mut std::pin::Pin<&mut F>, stop: &CancellationToken) -> T
where
    F: std::future::Future<Output = T>,
{
    if let Ok(done) = tokio::time::timeout(LINGER, pumps.as_mut()).await {
        return done;
    }
    stop.cancel();
    pumps.as_mut().await
}

/// The command's working directory: the temp dir, or `workdir` inside it (created when
/// missing). A workdir that resolves outside the temp dir — through a symlink a previous
/// command made — is refused.
fn working_dir(tempdir: &Path, workdir: Option<&Path>) -> Result<PathBuf, Failure> {
    let Some(workdir) = workdir else {
        return Ok(tempdir.to_path_buf());
    };
    let dir = tempdir.join(workdir);
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::input(format!(
            "workdir '{}' cannot be created: {e}",
            workdir.display()
        ))
    })?;
    let resolved = crate::files::resolve_inside(tempdir, workdir)
        .map_err(|e| Failure::input(format!("workdir '{}': {e}", workdir.display())))?;
    let Some(resolved) = resolved else {
        return Err(Failure::input(format!(
            "workdir '{}' leads outside the request's temp dir",
            workdir.display()
        )));
    };
    Ok(resolved)
}

async fn sleep_for(timeout: Option<Duration>) {
    match timeout {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

async fn feed_stdin(mut sender: pipe::Sender, data: Vec<u8>) {
    // A command that exits without reading its stdin closes the pipe: that is not an error.
    let _ = sender.write_all(&data).await;
}

/// Reads one output pipe until EOF (or until told to stop), feeding the logs and the captures.
async fn pump(
    fd: std::os::fd::OwnedFd,
    mut capture: Capture,
    logs: Option<&LogStream>,
    combined: &Mutex<Capture>,
    stop: &CancellationToken,
) -> Capture {
    let mut framer = logs.map(LogStream::framer);
    {
        let Ok(mut receiver) = pipe::Receiver::from_owned_fd(fd) else {
            return capture;
        };
        // Most commands print a few lines: start small and grow to a pipe's full 64 KiB only
        // when reads fill the buffer (uninitialised capacity: nothing is zeroed).
        let mut buf = bytes::BytesMut::with_capacity(READ_START);
        loop {
            buf.clear();
            let read = tokio::select! {
                read = receiver.read_buf(&mut buf) => read,
                () = stop.cancelled() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) if n == buf.capacity() && n < READ_MAX => buf.reserve(n * 4),
                Ok(_) => {}
            }
            let chunk = &buf[..];
            capture.push(chunk);
            if let Ok(mut combined) = combined.lock() {
                combined.push(chunk);
            }
            if let Some(framer) = framer.as_mut() {
                framer.write(chunk).await;
            }
        }
        if let Some(framer) = framer {
            framer.close().await;
        }
        capture
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
