//! The `cmd.*` error taxonomy. One enum knows each failure's Direktiv error code and HTTP
//! status; nothing else in the runner invents codes.

use axum::http::StatusCode;

/// Why a request (or one of its commands) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The request is invalid: JSON, fields, files, headers. Nothing was run.
    #[error("{0}")]
    Input(String),
    /// A command exited with a non-zero status.
    #[error("exited with status {code}")]
    Exit { code: i32 },
    /// A command was killed by a signal that did not come from the runner (e.g. the OOM killer).
    #[error("was killed by signal {name}")]
    Signal { name: String },
    /// A command ran past its timeout and was stopped.
    #[error("timed out after {}", humantime::format_duration(*.after))]
    Timeout { after: std::time::Duration },
    /// `DELETE /`, a client disconnect or shutdown ended the command.
    #[error("was cancelled: {reason}")]
    Cancelled { reason: CancelReason },
    /// The executable does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The executable is not executable, or not allowed by `CMD_ALLOW`.
    #[error("{0}")]
    Denied(String),
    /// The runner cannot take the request now.
    #[error("{message}")]
    Busy { conflict: bool, message: String },
    /// Anything else: I/O on the temp dir, a failed spawn, ...
    #[error("{0}")]
    Internal(String),
}

/// What ended a cancelled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// `DELETE /` with the request's action id.
    Delete,
    /// The HTTP client went away before the response.
    Disconnect,
    /// The runner is shutting down and the grace period ran out.
    Shutdown,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelReason::Delete => "cancel request (DELETE /) received",
            CancelReason::Disconnect => "the client disconnected",
            CancelReason::Shutdown => "the runner is shutting down",
        })
    }
}

impl Failure {
    /// The value of the `Direktiv-ErrorCode` header.
    pub fn code(&self) -> String {
        match self {
            Failure::Input(_) => "cmd.input".into(),
            Failure::Exit { code } => format!("cmd.exit.{code}"),
            Failure::Signal { name } => format!("cmd.signal.{name}"),
            Failure::Timeout { .. } => "cmd.timeout".into(),
            Failure::Cancelled { .. } => "cmd.cancelled".into(),
            Failure::NotFound(_) => "cmd.notfound".into(),
            Failure::Denied(_) => "cmd.denied".into(),
            Failure::Busy { .. } => "cmd.busy".into(),
            Failure::Internal(_) => "cmd.internal".into(),
        }
    }

    /// The HTTP status the failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::Input(_) => StatusCode::BAD_REQUEST,
            Failure::Busy { conflict: true, .. } => StatusCode::CONFLICT,
            Failure::Busy {
                conflict: false, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for an input error.
    pub fn input(message: impl Into<String>) -> Self {
        Failure::Input(message.into())
    }

    /// Shorthand for an internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Failure::Internal(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(Failure::Exit { code: 2 }.code(), "cmd.exit.2");
        assert_eq!(
            Failure::Signal {
                name: "SIGKILL".into()
            }
            .code(),
            "cmd.signal.SIGKILL"
        );
        assert_eq!(Failure::input("x").status(), StatusCode::BAD_REQUEST);
        let busy = |conflict| Failure::Busy {
            conflict,
            message: String::new(),
        };
        assert_eq!(busy(true).status(), StatusCode::CONFLICT);
        assert_eq!(busy(false).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            Failure::Exit { code: 1 }.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
