//! Reading a request's body before the request is admitted: whole, at most `CMD_MAX_BODY`,
//! within `CMD_READ_TIMEOUT` of its headers, and given up when shutdown begins.
//!
//! Only the bytes returned here are admitted (an in-flight slot, the action id), so a client
//! that stalls or trickles its body holds nothing but its own connection, and that only for
//! the read timeout.

use std::time::Duration;

use axum::body::{Body, Bytes};

use super::admission::shutting_down;
use super::shutdown::Drain;
use crate::error::Failure;

/// The bounds on one body.
pub(crate) struct BodyLimits {
    /// `CMD_MAX_BODY`.
    pub(crate) max_bytes: usize,
    /// `CMD_READ_TIMEOUT`: for the whole body, not per read, so trickling does not extend it.
    pub(crate) read_timeout: Duration,
}

/// The whole body, or why there is none: too large or unreadable (`cmd.input`), too slow
/// (`cmd.input`, 408), or shutdown began while it arrived (`cmd.busy`).
pub(crate) async fn read(body: Body, limits: &BodyLimits, drain: &Drain) -> Result<Bytes, Failure> {
    let whole = tokio::time::timeout(
        limits.read_timeout,
        axum::body::to_bytes(body, limits.max_bytes),
    );
    tokio::select! {
        read = whole => match read {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(Failure::input(format!(
                "the request body could not be read or is larger than CMD_MAX_BODY ({} bytes)",
                limits.max_bytes
            ))),
            Err(_) => Err(Failure::ReadTimeout(format!(
                "the request body did not arrive within CMD_READ_TIMEOUT ({})",
                humantime::format_duration(limits.read_timeout)
            ))),
        },
        // A request still arriving when shutdown begins is a new request: refused like one,
        // at once rather than when its client finishes sending.
        () = drain.started() => Err(shutting_down()),
    }
}
