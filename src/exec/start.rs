//! A command's start: off the async workers (`blocking::run`), because looking up files can
//! block (a hung mount in PATH) and so can the exec, which the start waits for. One trip does
//! all of it: the request's ground when this is its first start (`ground`), the working
//! directory, the deadline, the `DIREKTIV_RESULT` file, locating the executable and the spawn.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::config::AllowList;
use crate::direktiv::{ENV_DEADLINE, ENV_RESULT};
use crate::error::Failure;
use crate::limits::{Limits, MemoryBy};
use crate::plan::{CommandSpec, FieldPath};
use crate::process::{
    self, ChildEnv, Image, MemoryCgroup, RequestTracker, Ruleset, SpawnRequest, Spawned,
    MARK_VARIABLE,
};
use crate::workspace::{ResultFile, Workspace};

use super::deadline::Deadline;
use super::ground::{self, Ground};
use super::launch::{self, Launch};
use super::memory::{memory_cgroup, OwnMemoryCgroup};
use super::path_search::SearchPlace;
use super::{sleep_until, Execution};

/// A started command.
pub(super) struct Started {
    pub(super) spawned: Spawned,
    /// Its memory cgroup, when its `memory` limit is one.
    pub(super) memory: Option<MemoryCgroup>,
    pub(super) result_file: ResultFile,
    /// When it is stopped: fixed just before the spawn (after the request's ground was made,
    /// which is not the command's time), so the instant it is told is the one it is stopped
    /// at.
    pub(super) deadline: Option<Deadline>,
}

/// Starts the command with `limits`, stopped `timeout` after its start. A command with a
/// `memory` limit gets its memory cgroup here, where the runner makes them; where making one
/// fails, the limit is `RLIMIT_DATA` instead, with a warning.
///
/// A start waits for the child's exec, which a child created in a frozen cgroup never reaches
/// (something froze the request's cgroup): once the deadline passes or the request is
/// cancelled, the cgroup is thawed, so the child gets to its exec and is stopped like any.
pub(super) async fn start(
    spec: &CommandSpec,
    launch: &Launch,
    timeout: Option<Duration>,
    limits: Limits,
    x: &Execution<'_>,
) -> Result<Started, Failure> {
    let begin = x.setup.start();
    let work = StartWork {
        workdir: spec.workdir.clone(),
        env: spec.env.clone(),
        timeout,
        spawn: Spawn {
            launch: launch.clone(),
            allow: x.settings.allow.clone(),
            how: (spec.stdin.is_some(), limits, x.settings.memory_by),
            user: x.user,
            tracker: x.tracker.clone(),
        },
    };
    // When to thaw a start that does not come back: no later than the deadline the trip fixes.
    let due_at = timeout.and_then(Deadline::after);
    let started = async {
        let (made, started) = crate::blocking::run(move || work.run(begin))
            .await
            .unwrap_or_else(|error| {
                let lost = format!("the command could not be started: {error}");
                (None, Err(Failure::internal(lost)))
            });
        if let Some((workspace, ground, at)) = made {
            x.setup.made(workspace, ground, at);
        }
        started
    };
    tokio::pin!(started);
    let due = async {
        tokio::select! {
            () = sleep_until(due_at) => {}
            _ = x.cancel.cancelled() => {}
        }
    };
    tokio::select! {
        started = &mut started => started,
        () = due => loop {
            x.tracker.thaw();
            if let Ok(started) = tokio::time::timeout(THAW_INTERVAL, &mut started).await {
                break started;
            }
        },
    }
}

/// How often a start still waiting after its deadline (or cancellation) thaws the request's
/// cgroup again, should something freeze it again.
const THAW_INTERVAL: Duration = Duration::from_millis(50);

/// What one start takes off the async workers.
struct StartWork {
    workdir: Option<FieldPath>,
    /// The command's own `env`.
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    spawn: Spawn,
}

/// The ground made by this start (the request's first) and when, and the start.
type Outcome = (
    Option<(Workspace, Ground, Instant)>,
    Result<Started, Failure>,
);

impl StartWork {
    /// The start, in its trip, beginning as `begin` says.
    fn run(self, begin: ground::Start) -> Outcome {
        let (made, ground) = match begin {
            ground::Start::On(ground) => (None, ground),
            ground::Start::Preparing(prepare) => match prepare() {
                Ok((workspace, ground)) => (Some((workspace, Instant::now())), ground),
                Err(failure) => return (None, Err(failure)),
            },
            ground::Start::Lost => return (None, Err(Failure::internal(ground::LOST))),
        };
        let started = self.start_on(&ground);
        (made.map(|(workspace, at)| (workspace, ground, at)), started)
    }

    /// The start on a made ground: the working directory, the deadline, the `DIREKTIV_RESULT`
    /// file (made here, beside the start, so it costs no trip of its own), then the command.
    fn start_on(&self, ground: &Ground) -> Result<Started, Failure> {
        let spawn = &self.spawn;
        let cwd = ground.temp_dir.workdir(self.workdir.as_ref())?;
        let deadline = self.timeout.and_then(Deadline::after);
        let shown_deadline = deadline.and_then(|deadline| deadline.rfc3339());
        let domain = ground.domain.as_deref();
        let fallback = ground.temp_dir.results_fallback();
        let result_file = ResultFile::create_for(&fallback, spawn.user, domain.is_some())?;
        let result_path = result_file.path().to_string_lossy().into_owned();
        // The runner's facts come last: a request's own env cannot replace the deadline, the
        // mark of its processes or the result file.
        let vars: Vec<(&str, &str)> = ground
            .env
            .iter()
            .chain(&self.env)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(shown_deadline.as_deref().map(|at| (ENV_DEADLINE, at)))
            .chain([
                (MARK_VARIABLE, spawn.tracker.mark()),
                (ENV_RESULT, result_path.as_str()),
            ])
            .collect();
        match spawn.run(&vars, cwd.as_fd(), domain) {
            Ok((spawned, memory)) => Ok(Started {
                spawned,
                memory,
                result_file,
                deadline,
            }),
            Err(failure) => {
                result_file.remove();
                Err(failure)
            }
        }
    }
}

/// How the command is spawned.
struct Spawn {
    launch: Launch,
    allow: AllowList,
    /// Stdin piped, the limits and how `memory` is enforced.
    how: (bool, Limits, MemoryBy),
    user: Option<u32>,
    tracker: RequestTracker,
}

impl Spawn {
    /// Locates the executable and starts it with `vars` over the runner's environment, in a
    /// memory cgroup of its own when it has a `memory` limit and the runner makes them.
    fn run(
        &self,
        vars: &[(&str, &str)],
        cwd: BorrowedFd<'_>,
        domain: Option<&Ruleset>,
    ) -> Result<(Spawned, Option<MemoryCgroup>), Failure> {
        let (launch, tracker, user) = (&self.launch, &self.tracker, self.user);
        let (stdin, limits, memory_by) = self.how;
        let failed = |error: std::io::Error| launch::spawn_failure(&error, launch, Some(cwd));
        let env = ChildEnv::new(vars).map_err(failed)?;
        let place = SearchPlace {
            cwd: Some(cwd),
            path: env.path(),
        };
        let path = launch::locate(launch, place, &self.allow)?;
        let started_after = RequestTracker::start_time_now();
        let image =
            Image::new(OsStr::new(&path), &launch.name, &launch.args, env, cwd).map_err(failed)?;
        let cgroup = tracker.cgroup();
        let starting = tracker.starting();
        let memory = OwnMemoryCgroup(memory_cgroup(memory_by, limits, cgroup));
        let memory_by = match memory.0 {
            Some(_) => MemoryBy::Cgroup,
            None => MemoryBy::Rlimit,
        };
        let spawned = process::spawn(SpawnRequest {
            image,
            stdin,
            limits: limits.rlimits(memory_by),
            cgroup,
            memory: memory.0.as_ref(),
            domain,
            user,
            starting: starting.as_ref(),
        })
        .map_err(failed)?;
        tracker.started(spawned.pid, spawned.in_cgroup, started_after);
        // Noted as a leader now: its number is passed over that way from here on.
        drop(starting);
        let mut memory = memory;
        Ok((spawned, memory.0.take()))
    }
}
