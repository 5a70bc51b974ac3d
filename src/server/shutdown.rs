//! Graceful shutdown (SIGTERM): stop admitting, give running requests `CMD_GRACE`, then cancel
//! them and wait for their answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::admission::Admissions;
use crate::error::CancelReason;

/// How long cancelled requests get, beyond `CMD_KILL_GRACE` (SIGTERM to SIGKILL of their
/// commands), to stop their processes, flush their logs and send their answers before the
/// server stops waiting for them.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// The draining state of the runner.
#[derive(Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
}

impl Drain {
    /// True once shutdown began: new requests are refused, `/readyz` answers 503.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Drains: no new requests, `grace` for the running ones, then cancellation.
    pub(crate) async fn run(&self, admissions: &Admissions, grace: Duration, kill_grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let running = admissions.inflight();
        tracing::info!(running, grace = ?grace, "draining");
        if !wait_idle(admissions, grace).await {
            tracing::warn!(
                running = admissions.inflight(),
                "grace period over; cancelling requests"
            );
            admissions.cancel_all(CancelReason::Shutdown);
            wait_idle(admissions, kill_grace + ANSWER_MARGIN).await;
        }
    }
}

/// Waits until no request runs, or until `limit` passes; true when none runs.
async fn wait_idle(admissions: &Admissions, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let changed = admissions.changed();
        if admissions.inflight() == 0 {
            return true;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return admissions.inflight() == 0;
        }
    }
}
