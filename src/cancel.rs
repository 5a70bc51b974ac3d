//! Cancellation of one request, passed down as a value: whoever ends a request (`DELETE /`,
//! the client going away, shutdown) calls `cancel` with a reason, and the running command sees
//! both the event and why.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::error::CancelReason;

/// A request's cancellation handle; clones observe the same cancellation.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    token: CancellationToken,
    reason: Arc<OnceLock<CancelReason>>,
}

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Cancels the request. The first reason given is the one reported.
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Resolves once the request is cancelled, with the reason.
    pub async fn cancelled(&self) -> CancelReason {
        self.token.cancelled().await;
        self.reason().unwrap_or(CancelReason::Shutdown)
    }

    /// True when both handles belong to the same request.
    pub fn same_as(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.reason, &other.reason)
    }

    pub fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }
}

/// Cancels the request when dropped unless disarmed: the HTTP handler holds one, so a client
/// that disconnects (hyper drops the handler's future) ends the request's processes.
pub struct CancelOnDrop {
    cancel: Option<Cancel>,
}

impl CancelOnDrop {
    pub fn new(cancel: Cancel) -> Self {
        CancelOnDrop {
            cancel: Some(cancel),
        }
    }

    /// The request finished normally: dropping no longer cancels.
    pub fn disarm(mut self) {
        self.cancel = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel.cancel(CancelReason::Disconnect);
        }
    }
}
