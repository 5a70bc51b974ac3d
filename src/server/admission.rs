//! Admission: which requests may run now. The in-flight limit (`CMD_MAX_INFLIGHT`), one request
//! per action id (`development` exempt), none while draining; and the registry that lets
//! `DELETE /` and shutdown reach the requests that run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::cancel::Cancel;
use crate::direktiv::is_development;
use crate::error::{CancelReason, Failure};
use crate::metrics::METRICS;
use crate::sync::lock;

/// The refusal of a request that arrives (or is still arriving) while the runner drains.
pub(crate) fn shutting_down() -> Failure {
    Failure::Busy("the runner is shutting down; retry on another instance".into())
}

/// The requests running now, and the rules for admitting more.
pub(crate) struct Admissions {
    registry: Mutex<Registry>,
    /// `CMD_MAX_INFLIGHT`.
    limit: usize,
    /// Woken whenever a request ends (shutdown waits on it).
    changed: Notify,
}

/// The requests running now, by action id.
#[derive(Default)]
struct Registry {
    running: HashMap<String, Vec<Cancel>>,
    count: usize,
}

/// A running request's place in the registry; leaving it (drop) frees the slot.
pub(crate) struct Admission {
    admissions: Arc<Admissions>,
    action_id: String,
    cancel: Cancel,
}

impl Admission {
    /// The request's cancellation handle, as `DELETE /` and shutdown reach it.
    pub(crate) fn cancel(&self) -> &Cancel {
        &self.cancel
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        {
            let mut registry = lock(&self.admissions.registry);
            if let Some(cancels) = registry.running.get_mut(&self.action_id) {
                cancels.retain(|c| !c.same_as(&self.cancel));
                if cancels.is_empty() {
                    registry.running.remove(&self.action_id);
                }
            }
            registry.count = registry.count.saturating_sub(1);
        }
        METRICS.inflight_requests.dec();
        self.admissions.changed.notify_waiters();
    }
}

impl Admissions {
    pub(crate) fn new(limit: usize) -> Self {
        Admissions {
            registry: Mutex::new(Registry::default()),
            limit,
            changed: Notify::new(),
        }
    }

    /// Admits a request, in the order the README gives: draining, duplicate id, in-flight
    /// limit. `draining` is read under the registry lock.
    pub(crate) fn admit(
        self: &Arc<Self>,
        action_id: &str,
        draining: impl Fn() -> bool,
    ) -> Result<Admission, Failure> {
        let mut registry = lock(&self.registry);
        if draining() {
            return Err(shutting_down());
        }
        if !is_development(action_id) && registry.running.contains_key(action_id) {
            return Err(Failure::Conflict(format!(
                "action id '{action_id}' is already running"
            )));
        }
        if registry.count >= self.limit {
            return Err(Failure::Busy(format!(
                "{} requests are already running (CMD_MAX_INFLIGHT)",
                self.limit
            )));
        }
        let cancel = Cancel::new();
        registry
            .running
            .entry(action_id.to_owned())
            .or_default()
            .push(cancel.clone());
        registry.count += 1;
        METRICS.inflight_requests.inc();
        Ok(Admission {
            admissions: Arc::clone(self),
            action_id: action_id.to_owned(),
            cancel,
        })
    }

    /// How many requests run now.
    pub(crate) fn inflight(&self) -> usize {
        lock(&self.registry).count
    }

    /// Cancels every running request with this action id; returns how many.
    pub(crate) fn cancel(&self, action_id: &str, reason: CancelReason) -> usize {
        let registry = lock(&self.registry);
        let cancels = registry
            .running
            .get(action_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        cancels.iter().for_each(|c| c.cancel(reason));
        cancels.len()
    }

    /// Cancels every running request.
    pub(crate) fn cancel_all(&self, reason: CancelReason) {
        lock(&self.registry)
            .running
            .values()
            .flatten()
            .for_each(|c| c.cancel(reason));
    }

    /// Resolves at the next end of a request; create it before checking `inflight` so that an
    /// end in between is not missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}
