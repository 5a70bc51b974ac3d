//! What a request's commands start on — its temp dir, the environment the runner gives them
//! and its Landlock ruleset — made in the first command's start.
//!
//! Making it is file-system work (the temp dir made or opened, the input files written, the
//! ruleset's folders opened), and so is every start: both run off the async workers. Made in a
//! trip of its own, the request crossed threads twice more before its first command ran, and
//! each crossing wakes a thread of the short-work pool and then the waiting async worker (0.1–
//! 0.25 ms each on a small virtual machine). The request's preparation therefore runs in its
//! first start's trip, just before that start; later commands find it made. A preparation that
//! fails is the start's failure, and the request is refused with it (`Setup::is_made` tells
//! the pipeline which it was).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::Failure;
use crate::process::Ruleset;
use crate::workspace::{TempDir, Workspace};

/// Why a start found no ground to start on.
pub(crate) const LOST: &str = "the request's temp dir was not prepared";

/// What every command of a request starts on. Cheap to clone: each start takes it along off
/// the async workers.
#[derive(Clone)]
pub(crate) struct Ground {
    /// The request's temp dir, open: working directories and fallback result files go there.
    pub(crate) temp_dir: TempDir,
    /// HOME, DIREKTIV_*, the trace context and the request's env, applied over the runner's
    /// own environment.
    pub(crate) env: Arc<[(String, String)]>,
    /// The request's Landlock ruleset, entered by each command before exec.
    pub(crate) domain: Option<Arc<Ruleset>>,
}

/// Makes a request's workspace and the ground its commands start on. Blocking.
pub(crate) type Preparation = Box<dyn FnOnce() -> Result<(Workspace, Ground), Failure> + Send>;

/// A request's ground: to be made by its first start, made, or lost (its preparation failed,
/// or the trip that ran it never came back).
pub(crate) struct Setup(Mutex<State>);

enum State {
    Pending(Preparation),
    /// Taken by a start that has not come back yet, or that failed to make it.
    Taken,
    /// Made, and when: the time before is not the first command's.
    Made(Workspace, Ground, Instant),
}

/// What a start begins with.
pub(super) enum Start {
    /// The ground, made by an earlier start.
    On(Ground),
    /// The preparation, to run first in the start's trip; what it made goes to
    /// [`Setup::made`].
    Preparing(Preparation),
    /// An earlier start took the preparation and did not make the ground.
    Lost,
}

impl Setup {
    pub(crate) fn new(preparation: Preparation) -> Setup {
        Setup(Mutex::new(State::Pending(preparation)))
    }

    /// What the next start begins with; the preparation is handed out once.
    pub(super) fn start(&self) -> Start {
        let mut state = crate::sync::lock(&self.0);
        match &*state {
            State::Made(_, ground, _) => Start::On(ground.clone()),
            State::Taken => Start::Lost,
            State::Pending(_) => match std::mem::replace(&mut *state, State::Taken) {
                State::Pending(preparation) => Start::Preparing(preparation),
                State::Taken | State::Made(..) => Start::Lost,
            },
        }
    }

    /// Makes the ground in a trip of its own, for a request without commands: its files are
    /// written all the same (a file in `out/` is a result of its own), and a temp dir that
    /// cannot be used is refused as for any request.
    pub(crate) async fn make(&self) -> Result<(), Failure> {
        let prepare = match self.start() {
            Start::On(_) => return Ok(()),
            Start::Lost => return Err(Failure::internal(LOST)),
            Start::Preparing(prepare) => prepare,
        };
        let (workspace, ground) = crate::blocking::run(prepare)
            .await
            .map_err(|error| Failure::internal(format!("{LOST}: {error}")))??;
        self.made(workspace, ground, Instant::now());
        Ok(())
    }

    /// Keeps what the start that ran the preparation made, `at` the end of the preparation.
    pub(super) fn made(&self, workspace: Workspace, ground: Ground, at: Instant) {
        *crate::sync::lock(&self.0) = State::Made(workspace, ground, at);
    }

    /// When the ground was made.
    pub(super) fn made_at(&self) -> Option<Instant> {
        match &*crate::sync::lock(&self.0) {
            State::Made(_, _, at) => Some(*at),
            State::Pending(_) | State::Taken => None,
        }
    }

    /// Whether the ground is made: after the first start, false when its preparation failed.
    pub(crate) fn is_made(&self) -> bool {
        self.made_at().is_some()
    }

    /// The request's temp dir, once made.
    pub(crate) fn temp_dir(&self) -> Option<TempDir> {
        match &*crate::sync::lock(&self.0) {
            State::Made(_, ground, _) => Some(ground.temp_dir.clone()),
            State::Pending(_) | State::Taken => None,
        }
    }

    /// The workspace, once made: the pipeline's to close.
    pub(crate) fn into_workspace(self) -> Option<Workspace> {
        match self
            .0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            State::Made(workspace, ..) => Some(workspace),
            State::Pending(_) | State::Taken => None,
        }
    }
}
