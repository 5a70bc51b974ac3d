//! Graceful shutdown (SIGTERM): stop admitting, give running requests `CMD_GRACE`, then cancel
//! them and wait for their answers. Bodies still arriving learn that shutdown began through
//! [`Drain::started`] and are refused; the connection side (`connections`) closes whatever is
//! left once the drain is over.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::admission::Admissions;
use crate::error::CancelReason;

/// How long cancelled requests get, beyond `CMD_KILL_GRACE` (SIGTERM to SIGKILL of their
/// commands), to stop their processes, flush their logs and send their answers before the
/// server stops waiting for them.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// The draining state of the runner.
#[derive(Default)]
pub(crate) struct Drain {
    started: CancellationToken,
}

impl Drain {
    /// True once shutdown began: new requests are refused, `/readyz` answers 503.
    pub(crate) fn is_draining(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Resolves once shutdown began.
    pub(crate) async fn started(&self) {
        self.started.cancelled().await;
    }

    /// Drains: no new requests, `grace` for the running ones, then cancellation. Returns when
    /// no request runs any more, or at the latest `grace + kill_grace + ANSWER_MARGIN` after
    /// it began.
    pub(crate) async fn run(&self, admissions: &Admissions, grace: Duration, kill_grace: Duration) {
        self.started.cancel();
        let running = admissions.inflight();
        tracing::info!(running, grace = ?grace, "draining");
        if !wait_idle(admissions, grace).await {
            tracing::warn!(
                running = admissions.inflight(),
                "grace period over; cancelling requests"
            );
            admissions.cancel_all(CancelReason::Shutdown);
            // Saturating: both are at most a year (`duration::MAX`), but an addition
            // that cannot overflow needs no such argument.
            wait_idle(admissions, kill_grace.saturating_add(ANSWER_MARGIN)).await;
        }
    }
}

/// Waits until no request runs, or until `limit` passes; true when none runs.
async fn wait_idle(admissions: &Admissions, limit: Duration) -> bool {
    // Checked: `Instant + Duration` panics on overflow. No deadline at all is the honest
    // reading of a limit beyond the clock's range (settings stop at a year, far below it).
    let deadline = tokio::time::Instant::now().checked_add(limit);
    loop {
        let changed = admissions.changed();
        if admissions.inflight() == 0 {
            return true;
        }
        let ended = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, changed).await.is_ok(),
            None => {
                changed.await;
                true
            }
        };
        if !ended {
            return admissions.inflight() == 0;
        }
    }
}
