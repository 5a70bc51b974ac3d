//! One command's life: locate its executable (`launch`: once, where it runs), start it in its
//! own process group, pump its output to the logs and the response, and end it on exit, timeout
//! or cancellation — never leaving a process behind, not even one that left the group (the
//! request's `RequestTracker`). The kernel's side of all that — starting, reaping, groups,
//! cgroups, stopping — is `crate::process`.
//!
//! Timeouts and cancellation meet here: `run` waits for the first of the command's exit, its
//! deadline (`timeout`, else `CMD_TIMEOUT`) and the request's `Cancel`, then stops the group
//! and the request's other processes with `CMD_KILL_GRACE` between SIGTERM and SIGKILL.
//!
//! Accounting too: the command runs under its `limits` (set before exec; `memory` in a memory
//! cgroup of its own where the runner makes them: `memory`), is told its deadline
//! (`DIREKTIV_DEADLINE`), is reaped with its usage, and an ending by itself is judged with the
//! OOM-kill counts read around it (`verdict`).

mod capture;
mod deadline;
mod ground;
mod launch;
mod memory;
mod order;
mod output;
pub(crate) mod path_search;
mod pumps;
mod start;
mod verdict;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::process::{ExitKind, Usage};
pub(crate) use capture::{masked_tail, Capture};
pub(crate) use ground::{Ground, Preparation, Setup, LOST as GROUND_LOST};
pub(crate) use launch::{unresolved_allow_entries, Launch};
pub(crate) use memory::{memory_by, memory_enforcement};

use crate::cancel::Cancel;
use crate::config::{AllowList, Config};
use crate::error::{CancelReason, Failure};
use crate::limits::{Limits, MemoryBy};
use crate::logs::LogStream;
use crate::mask::Masker;
use crate::metrics::METRICS;
use crate::plan::CommandSpec;
use crate::process::{self, MemoryCgroup, ProcessGroup, RequestTracker, StopPolicy, Stopped};
use crate::workspace::{Left, ResultFile};
use deadline::Deadline;
use memory::{memory_limit_passed, OwnMemoryCgroup};
use output::{Captures, CommandOutput, Reported};
use pumps::{feed_stdin, finish_pumps, pump, with_pumps, LINGER};
use rustix::process::Pid;

/// How a request's processes are tracked, for the start-up line (`crate::startup`).
pub(crate) fn tracking() -> String {
    let groups = "a process group per command, strays found by an environment mark";
    match process::cgroup_home() {
        Some(dir) => format!("{groups} and a cgroup per request in {}", dir.display()),
        None => format!("{groups} (no writable cgroup for requests)"),
    }
}

/// The execution settings taken from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct ExecSettings {
    pub(crate) shell: Option<PathBuf>,
    pub(crate) allow: AllowList,
    pub(crate) kill_grace: Duration,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) max_output: usize,
    /// `CMD_MAX_RESULT`: the largest `DIREKTIV_RESULT` file read back.
    pub(crate) max_result: usize,
    /// `CMD_LIMIT_*`: under every request's own `limits`.
    pub(crate) limits: Limits,
    /// How `memory` limits are enforced.
    pub(crate) memory_by: MemoryBy,
}

impl ExecSettings {
    pub(crate) fn from_config(config: &Config) -> Self {
        ExecSettings {
            shell: config.shell_path(),
            allow: config.allow.clone(),
            kill_grace: config.kill_grace,
            default_timeout: config.default_timeout(),
            max_output: config.max_output,
            max_result: config.max_result,
            limits: config.default_limits(),
            memory_by: memory_by(config),
        }
    }

    /// What to execute for each command: refuses, before anything runs, a command this
    /// runner will not start. `request_env` is the request-level env (its PATH counts). The
    /// PATH search and `CMD_ALLOW` are applied again, for good, when each command starts.
    pub(crate) async fn resolve(
        &self,
        commands: &[CommandSpec],
        request_env: &[(String, String)],
    ) -> Result<Vec<Launch>, (usize, Failure)> {
        // Without CMD_ALLOW nothing is looked up here (only shell mode is applied): no file
        // system work, so no trip to the blocking pool and back.
        if !self.allow.is_restricted() {
            return commands
                .iter()
                .enumerate()
                .map(|(index, spec)| {
                    launch::resolve(spec, self.shell.as_deref(), &self.allow, None)
                        .map_err(|failure| (index, failure))
                })
                .collect();
        }
        let (settings, commands) = (self.clone(), commands.to_vec());
        let request_env = request_env.to_vec();
        // Looking files up can block (a hung mount in PATH): off the async worker threads.
        let resolved = crate::blocking::run(move || {
            commands
                .iter()
                .enumerate()
                .map(|(index, spec)| {
                    let path = path_variable(request_env.iter().chain(spec.env.iter()));
                    launch::resolve(
                        spec,
                        settings.shell.as_deref(),
                        &settings.allow,
                        path.as_deref(),
                    )
                    .map_err(|failure| (index, failure))
                })
                .collect()
        })
        .await;
        resolved.unwrap_or_else(|error| {
            Err((
                0,
                Failure::internal(format!("commands could not be resolved: {error}")),
            ))
        })
    }
}

/// The PATH a command gets: the last one its env layers set, else the runner's own.
fn path_variable<'a>(layers: impl Iterator<Item = &'a (String, String)>) -> Option<OsString> {
    layers
        .filter(|(name, _)| name == "PATH")
        .last()
        .map(|(_, value)| OsString::from(value))
        .or_else(|| std::env::var_os("PATH"))
}

/// What a command runs with, shared by all commands of a request.
pub(crate) struct Execution<'a> {
    /// What the commands start on (temp dir, environment, Landlock ruleset): made by the
    /// first start.
    pub(crate) setup: &'a Setup,
    /// Every process of the request, also those that leave their process group.
    pub(crate) tracker: &'a RequestTracker,
    pub(crate) logs: &'a LogStream,
    /// The request's secrets; commands may add to them (`::add-mask::`).
    pub(crate) secrets: &'a Masker,
    pub(crate) cancel: &'a Cancel,
    pub(crate) settings: &'a ExecSettings,
    /// Keep stdout and stderr interleaved as well (the direktiv-cmd `Output`).
    pub(crate) combine: bool,
    /// The uid (and gid) each command runs as (`CMD_ISOLATION=uid`).
    pub(crate) user: Option<u32>,
}

/// One command, ready to start.
pub(crate) struct Command<'a> {
    pub(crate) spec: &'a CommandSpec,
    /// Its executable, resolved once before the request ran anything.
    pub(crate) launch: &'a Launch,
    /// Lines for the request's log once it is started (or could not be), before any of its
    /// output: `running command '…'`. None when the request's ground could not be made.
    pub(crate) at_start: Vec<String>,
}

/// What happened to one command.
#[derive(Debug)]
pub(crate) struct CommandRun {
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    pub(crate) combined: Capture,
    /// How the main process ended, when it was started and ended by itself.
    pub(crate) exit: Option<ExitKind>,
    /// What it used, when it was started and reaped.
    pub(crate) usage: Option<Usage>,
    pub(crate) failure: Option<Failure>,
    pub(crate) duration: Duration,
    /// What the command left in its `DIREKTIV_RESULT` file, when it left anything.
    pub(crate) result_file: Option<Vec<u8>>,
}

/// How the wait for a command ended.
enum Ending {
    Exited(ExitKind),
    TimedOut(Duration),
    Cancelled(CancelReason),
}

/// Runs one command to its end.
pub(crate) async fn run(command: Command<'_>, x: &Execution<'_>) -> CommandRun {
    let started = Instant::now();
    let mut run = CommandRun {
        stdout: Capture::new(x.settings.max_output),
        stderr: Capture::with_tail(x.settings.max_output),
        combined: Capture::new(if x.combine { x.settings.max_output } else { 0 }),
        exit: None,
        usage: None,
        failure: None,
        duration: Duration::ZERO,
        result_file: None,
    };
    if let Err(failure) = execute(&command, x, &mut run).await {
        run.failure = Some(failure);
    }
    // The request's first command does not count the making of its ground.
    let began = x.setup.made_at().map_or(started, |made| made.max(started));
    run.duration = began.elapsed();
    // A request refused as a whole (its ground could not be made) ran no command.
    if x.setup.is_made() {
        METRICS.command_duration.observe(run.duration.as_secs_f64());
    }
    if let Some(usage) = &run.usage {
        METRICS.observe_usage(usage.max_rss_kib, usage.user_ms, usage.sys_ms);
    }
    run
}

async fn execute(
    command: &Command<'_>,
    x: &Execution<'_>,
    run: &mut CommandRun,
) -> Result<(), Failure> {
    let spec = command.spec;
    let timeout = spec.timeout.or(x.settings.default_timeout);
    let limits = spec.limits.over(x.settings.limits);
    let oom_before = process::oom_kills();
    let started = start::start(spec, command.launch, timeout, limits, x).await;
    // Before any output of the command; not for a request refused as a whole.
    if x.setup.is_made() {
        for line in &command.at_start {
            x.logs.line(line);
        }
    }
    let start::Started {
        spawned,
        memory,
        result_file,
        deadline,
    } = started?;
    let memory = OwnMemoryCgroup(memory);
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
    let captures = Captures {
        stdout: std::mem::take(&mut run.stdout),
        stderr: std::mem::take(&mut run.stderr),
        combined: std::mem::take(&mut run.combined),
        reported: None,
    };
    let output = CommandOutput::new(captures, x.logs, spec.silent, x.secrets);
    // The pipes are read inside this task, beside the wait: no task to spawn and wake.
    let pumps = pump(spawned.stdout, spawned.stderr, output, &stop_pumps);
    tokio::pin!(pumps);
    let stop_at = sleep_until(deadline);
    tokio::pin!(stop_at);
    let memory_watch = memory_limit_passed(memory.0.as_ref());
    tokio::pin!(memory_watch);
    let mut memory_passed = false;
    let mut drained = None;
    let ending = loop {
        tokio::select! {
            kind = group.wait_leader() => break Ending::Exited(kind),
            () = &mut stop_at => break Ending::TimedOut(timeout.unwrap_or_default()),
            reason = x.cancel.cancelled() => break Ending::Cancelled(reason),
            captures = &mut pumps, if drained.is_none() => drained = Some(captures),
            () = &mut memory_watch, if !memory_passed => {
                // cgroup v1: the kernel killed one process; the rest of the command goes too.
                memory_passed = true;
                if let Some(memory) = &memory.0 {
                    memory.kill();
                }
            }
        }
    };

    // Read at once: the OOM killer counts its kill before its victim is gone.
    // (Only for an ending that could be an OOM kill: one read less for every other command.)
    let oom_killed = matches!(ending, Ending::Exited(kind) if verdict::may_be_oom_kill(kind))
        && process::oom_kills_rose(oom_before, process::oom_kills());
    let policy = StopPolicy::with_grace(x.settings.kill_grace);
    match ending {
        Ending::Exited(_) => {
            // Output still in the pipes is read; a background child holding them open gets
            // LINGER, then the rest of the group is stopped and the pumps are told to finish.
            if drained.is_none() {
                drained = tokio::time::timeout(LINGER, pumps.as_mut()).await.ok();
            }
            // The group first (at once when it is empty, as it usually is), then whatever left
            // it: a child still leaving the group while the group is looked at (`setsid -f`
            // returns before its child has moved) is either stopped with the group or found
            // outside it afterwards.
            let stop = async {
                let left_out = outside_a_stopped_group(group.stop(policy).await, spawned.pid);
                x.tracker.stop(left_out, policy).await
            };
            with_pumps(stop, &mut pumps, &mut drained).await;
        }
        Ending::TimedOut(_) | Ending::Cancelled(_) => {
            // A command frozen (`cgroup.freeze`) takes SIGTERM only once thawed. Both at once,
            // so one grace period covers them; then once more for a child that left the group
            // while both looked.
            x.tracker.thaw();
            let stop = async {
                let (group_stopped, _) = tokio::join!(
                    group.stop(policy),
                    x.tracker.stop(Some(spawned.pid), policy)
                );
                let left_out = outside_a_stopped_group(group_stopped, spawned.pid);
                x.tracker.stop(left_out, policy).await
            };
            with_pumps(stop, &mut pumps, &mut drained).await;
        }
    }
    let captures = match drained {
        Some(captures) => captures,
        None => finish_pumps(&mut pumps, &stop_pumps).await,
    };
    (run.stdout, run.stderr, run.combined) = (captures.stdout, captures.stderr, captures.combined);
    let reported = captures.reported;
    run.usage = group.usage();
    // Read once its processes are stopped: a kill inside the limit is counted by then.
    let memory_limit_passed = memory
        .0
        .as_ref()
        .filter(|memory| memory.oom_killed())
        .map(MemoryCgroup::bytes);
    // Every process of the command is gone: what the file holds now is final.
    let result = read_result(result_file, x).await;

    let verdict = match ending {
        Ending::Exited(exit) => {
            run.exit = Some(exit);
            verdict::verdict(&verdict::Ending {
                exit,
                limits,
                usage: run.usage,
                oom_killed,
                memory_limit_passed,
            })
        }
        Ending::TimedOut(after) => Err(Failure::Timeout { after }),
        Ending::Cancelled(reason) => Err(Failure::Cancelled { reason }),
    };
    let verdict = verdict.map_err(|failure| chosen(failure, reported, &spec.errors));
    // A failed command's result is still shown; its own failure comes before the file's.
    let result = result.map(|left| run.result_file = left);
    verdict.and(result)
}

/// Which process group a look for the request's processes leaves out once the command's group
/// was stopped (`leader`'s): none when the group is gone, so that the look is whole — a process
/// of the request that joined the group late, or made a new group with the leader's number once
/// it was reaped, is found too — else the group, whose members are stopped with it.
fn outside_a_stopped_group(stopped: Stopped, leader: Pid) -> Option<Pid> {
    match stopped {
        Stopped::Gone | Stopped::Killed => None,
        Stopped::Stuck | Stopped::Unknown => Some(leader),
    }
}

/// A failure by exit status as the command chose it: the code of its last `::error` line,
/// else its `errors` map's for that status (else `cmd.exit.N`), with the line's message.
/// Any other failure (a signal, a timeout) is the runner's finding and stays.
fn chosen(failure: Failure, reported: Option<Reported>, errors: &[(i32, String)]) -> Failure {
    let Failure::Exit { code: status } = failure else {
        return failure;
    };
    let Reported { code, message } = reported.unwrap_or_default();
    let code = code.or_else(|| {
        errors
            .iter()
            .find(|(mapped, _)| *mapped == status)
            .map(|(_, code)| code.clone())
    });
    match (code, message) {
        (None, None) => Failure::Exit { code: status },
        (code, message) => Failure::Reported {
            code,
            status,
            message,
        },
    }
}

/// What the command left in its `DIREKTIV_RESULT` file, read (and the file removed) off the
/// async workers (`blocking::run`): the command chose what is there. Something that is not a
/// regular file is not read, and the request's log says so.
async fn read_result(file: ResultFile, x: &Execution<'_>) -> Result<Option<Vec<u8>>, Failure> {
    // Most commands leave it empty: then a look and a removal, with no trip to the pool.
    if file.may_look_inline() && file.remove_if_empty() {
        return Ok(None);
    }
    let max = x.settings.max_result;
    let left = crate::blocking::run(move || file.take(max))
        .await
        .unwrap_or_else(|error| {
            Err(Failure::internal(format!(
                "the DIREKTIV_RESULT file could not be read: {error}"
            )))
        })?;
    match left {
        Left::Nothing => Ok(None),
        Left::Bytes(bytes) => Ok(Some(bytes)),
        Left::Ignored(kind) => {
            x.logs.line(&format!(
                "DIREKTIV_RESULT was replaced by {kind}; only a regular file is read back, so \
                 the result is taken from stdout"
            ));
            Ok(None)
        }
    }
}

/// Sleeps until the deadline; forever without one (no timeout, or one too far away to
/// represent).
async fn sleep_until(deadline: Option<Deadline>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.instant().into()).await,
        None => std::future::pending().await,
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
