//! Reading a request's body before the request is admitted: whole, at most `CMD_MAX_BODY`,
//! within `CMD_READ_TIMEOUT` of its headers, and given up when shutdown begins.
//!
//! Only the bytes returned here are admitted (an in-flight slot, the action id), so a client
//! that stalls or trickles its body holds nothing but its own connection, and that only for
//! the read timeout. What bodies still arriving may hold in memory is bounded too: beyond the
//! first [`FREE_BYTES`] of each, their bytes draw from one budget of `CMD_MAX_INFLIGHT` ×
//! `CMD_MAX_BODY` (what admitted requests may hold); a body that finds it empty waits, within
//! its read timeout, instead of the runner reading without end from many slow clients.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::admission::shutting_down;
use super::shutdown::Drain;
use crate::config::Config;
use crate::error::Failure;

/// The bytes of each body that need no budget: every usual request fits, so many slow or
/// stalled clients cannot delay an ordinary request by exhausting the budget, and each holds
/// at most this much unaccounted.
const FREE_BYTES: usize = 16 << 10;

/// The rules every body is read by.
pub(crate) struct Bodies {
    /// `CMD_MAX_BODY`.
    max_bytes: usize,
    /// `CMD_READ_TIMEOUT`: for the whole body, not per read, so trickling does not extend it.
    read_timeout: Duration,
    /// One permit per byte of bodies still arriving, beyond their first `FREE_BYTES`.
    budget: Semaphore,
}

/// A body that arrived, still holding its share of the budget until the request is admitted
/// or refused (after that, the in-flight limit bounds what requests hold).
pub(crate) struct Arrived<'a> {
    pub(crate) bytes: Bytes,
    /// Held for its drop, which gives the bytes back to the budget.
    _budget: SemaphorePermit<'a>,
}

/// Why a body did not arrive whole, in time.
enum Missing {
    TooLarge,
    Unreadable,
}

impl Bodies {
    pub(crate) fn new(config: &Config) -> Self {
        let budget = (config.max_inflight as usize)
            .saturating_mul(config.max_body)
            .clamp(1, Semaphore::MAX_PERMITS);
        Bodies {
            max_bytes: config.max_body,
            read_timeout: config.read_timeout,
            budget: Semaphore::new(budget),
        }
    }

    /// The whole body, or why there is none: too large or unreadable (`cmd.input`), too slow
    /// (`cmd.input`, 408), or shutdown began while it arrived (`cmd.busy`).
    pub(crate) async fn read(&self, body: Body, drain: &Drain) -> Result<Arrived<'_>, Failure> {
        let whole = tokio::time::timeout(self.read_timeout, self.collect(body));
        tokio::select! {
            read = whole => match read {
                Ok(Ok(arrived)) => Ok(arrived),
                Ok(Err(Missing::TooLarge)) => Err(Failure::input(format!(
                    "the request body is larger than CMD_MAX_BODY ({} bytes)",
                    self.max_bytes
                ))),
                Ok(Err(Missing::Unreadable)) => Err(Failure::input(
                    "the request body could not be read: the client broke it off",
                )),
                Err(_) => Err(Failure::ReadTimeout(format!(
                    "the request body did not arrive within CMD_READ_TIMEOUT ({})",
                    humantime::format_duration(self.read_timeout)
                ))),
            },
            // A request still arriving when shutdown begins is a new request: refused like
            // one, at once rather than when its client finishes sending.
            () = drain.started() => Err(shutting_down()),
        }
    }

    /// Reads every data frame, drawing from the budget past the free allowance.
    async fn collect(&self, mut body: Body) -> Result<Arrived<'_>, Missing> {
        let mut bytes = Vec::new();
        // A permit for nothing yet, which each frame's share is merged into.
        let mut held = self
            .budget
            .try_acquire_many(0)
            .map_err(|_| Missing::Unreadable)?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Missing::Unreadable)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry nothing the runner reads
            };
            let total = bytes.len().saturating_add(data.len());
            if total > self.max_bytes {
                return Err(Missing::TooLarge);
            }
            let owed = total.saturating_sub(FREE_BYTES.max(bytes.len()));
            if owed > 0 {
                // A frame is at most CMD_MAX_BODY, which the budget always covers.
                let owed = u32::try_from(owed).unwrap_or(u32::MAX);
                let share = self
                    .budget
                    .acquire_many(owed)
                    .await
                    .map_err(|_| Missing::Unreadable)?;
                held.merge(share);
            }
            bytes.extend_from_slice(&data);
        }
        Ok(Arrived {
            bytes: Bytes::from(bytes),
            _budget: held,
        })
    }
}
