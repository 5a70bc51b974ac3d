//! The `cmd.*` error taxonomy. One enum knows each failure's Direktiv error code and the HTTP
//! status it is answered with (a plain number: this module knows nothing of the HTTP stack);
//! nothing else in the runner invents codes.

use std::io;
use std::sync::Arc;

/// Why a request (or one of its commands) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The request is invalid: JSON, fields, files, headers. Nothing was run.
    #[error("{0}")]
    Input(String),
    /// The request did not arrive within `CMD_READ_TIMEOUT`: an input error like any other,
    /// answered 408 (Request Timeout) so an HTTP client knows it may send it again.
    #[error("{0}")]
    ReadTimeout(String),
    /// A command exited with a non-zero status.
    #[error("exited with status {code}")]
    Exit { code: i32 },
    /// A command exited with a non-zero status after choosing its failure: a code (an
    /// `::error code=CODE::` line, or its `errors` map) and/or a message (an `::error` line).
    /// Without a code it stays `cmd.exit.N`.
    #[error("{}", reported_message(*.status, .message.as_deref()))]
    Reported {
        code: Option<String>,
        status: i32,
        message: Option<String>,
    },
    /// A command was killed by a signal that did not come from the runner (e.g. the OOM killer).
    #[error("was killed by signal {name}")]
    Signal { name: String },
    /// The kernel's OOM killer killed a process of the command (the container's memory limit,
    /// or the machine out of memory): the memory cgroup counted an OOM kill while it ran.
    #[error("was killed by the kernel's OOM killer (out of memory)")]
    Oom,
    /// A command passed its `memory` limit where that is a memory cgroup of its own: the
    /// kernel's OOM killer killed it inside that cgroup (not the container's limit).
    #[error("exceeded its memory limit of {} and was killed", crate::size::format(*.bytes))]
    MemoryLimit { bytes: u64 },
    /// A command used up its `cpu` limit (SIGXCPU, or the SIGKILL of the hard limit, also as a
    /// shell's exit status 152).
    #[error("exceeded its cpu limit of {seconds}s")]
    CpuLimit { seconds: u64 },
    /// A command tried to write a file larger than its `file_size` limit (SIGXFSZ, also as a
    /// shell's exit status 153).
    #[error("exceeded its file_size limit of {}", crate::size::format(*.bytes))]
    FileSizeLimit { bytes: u64 },
    /// A command ran past its timeout and was stopped.
    #[error("timed out after {}", humantime::format_duration(*.after))]
    Timeout { after: std::time::Duration },
    /// `DELETE /`, a client disconnect or shutdown ended the command.
    #[error("was cancelled: {reason}")]
    Cancelled { reason: CancelReason },
    /// A command left a `DIREKTIV_RESULT` file larger than `CMD_MAX_RESULT`.
    #[error(
        "left a DIREKTIV_RESULT file larger than CMD_MAX_RESULT ({limit} bytes); write less \
         there (a reference to the data, for example) or raise CMD_MAX_RESULT"
    )]
    ResultTooLarge { limit: usize },
    /// The executable does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The executable is not executable, or not allowed by `CMD_ALLOW`.
    #[error("{0}")]
    Denied(String),
    /// The runner cannot take the request now (in-flight limit, shutting down): retry later
    /// or elsewhere.
    #[error("{0}")]
    Busy(String),
    /// A request with the same action id is already running.
    #[error("{0}")]
    Conflict(String),
    /// Anything else: I/O on the temp dir, a failed spawn, ... `message` already ends with the
    /// I/O error's text when there is one; `source` keeps the error itself for error chains.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Arc<io::Error>>,
    },
}

/// Failures compare by what they report (code and message); an I/O source is not compared.
impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code() && self.to_string() == other.to_string()
    }
}

impl Eq for Failure {}

fn reported_message(status: i32, message: Option<&str>) -> String {
    match message {
        Some(message) => message.to_owned(),
        None => format!("exited with status {status}"),
    }
}

/// Longest error code a command may choose.
pub const MAX_CHOSEN_CODE: usize = 128;

/// Checks an error code a command chose (`::error code=CODE::`, an `errors` map): words of
/// `[A-Za-z][A-Za-z0-9_-]*` joined by dots, at most 128 bytes, not Direktiv's own
/// `io.direktiv.*` (its engine's codes, which a catch could not tell apart). `Err` says why.
pub fn check_chosen_code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("is empty".into());
    }
    if code.len() > MAX_CHOSEN_CODE {
        return Err(format!("is longer than {MAX_CHOSEN_CODE} bytes"));
    }
    let word_ok = |word: &str| {
        let mut chars = word.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !code.split('.').all(word_ok) {
        return Err(
            "is not words of letters, digits, '_' and '-' (each starting with a letter) joined \
             by dots, like aws.client"
                .into(),
        );
    }
    if code.to_ascii_lowercase().starts_with("io.direktiv.") {
        return Err("is one of Direktiv's own codes (io.direktiv.*)".into());
    }
    Ok(())
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
            Failure::Input(_) | Failure::ReadTimeout(_) => "cmd.input".into(),
            Failure::Exit { code } => format!("cmd.exit.{code}"),
            Failure::Reported { code, status, .. } => match code {
                Some(code) => code.clone(),
                None => format!("cmd.exit.{status}"),
            },
            Failure::Signal { name } => format!("cmd.signal.{name}"),
            Failure::Oom => "cmd.oom".into(),
            Failure::MemoryLimit { .. } => "cmd.limit.memory".into(),
            Failure::CpuLimit { .. } => "cmd.limit.cpu".into(),
            Failure::FileSizeLimit { .. } => "cmd.limit.file_size".into(),
            Failure::Timeout { .. } => "cmd.timeout".into(),
            Failure::Cancelled { .. } => "cmd.cancelled".into(),
            Failure::ResultTooLarge { .. } => "cmd.result.too_large".into(),
            Failure::NotFound(_) => "cmd.notfound".into(),
            Failure::Denied(_) => "cmd.denied".into(),
            Failure::Busy(_) | Failure::Conflict(_) => "cmd.busy".into(),
            Failure::Internal { .. } => "cmd.internal".into(),
        }
    }

    /// The HTTP status the failure is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Failure::Input(_) => 400,
            Failure::ReadTimeout(_) => 408,
            Failure::Conflict(_) => 409,
            Failure::Busy(_) => 503,
            _ => 500,
        }
    }

    /// Shorthand for an input error.
    pub fn input(message: impl Into<String>) -> Self {
        Failure::Input(message.into())
    }

    /// Shorthand for an internal error without an underlying I/O error.
    pub fn internal(message: impl Into<String>) -> Self {
        Failure::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// An internal error caused by `error`: the message reads `<context>: <error>`.
    pub fn io(context: impl std::fmt::Display, error: io::Error) -> Self {
        Failure::Internal {
            message: format!("{context}: {error}"),
            source: Some(Arc::new(error)),
        }
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
        assert_eq!(Failure::input("x").status(), 400);
        assert_eq!(Failure::ReadTimeout(String::new()).code(), "cmd.input");
        assert_eq!(Failure::ReadTimeout(String::new()).status(), 408);
        assert_eq!(Failure::Conflict(String::new()).status(), 409);
        assert_eq!(Failure::Busy(String::new()).status(), 503);
        assert_eq!(Failure::Conflict(String::new()).code(), "cmd.busy");
        assert_eq!(Failure::Exit { code: 1 }.status(), 500);
        assert_eq!(Failure::Oom.code(), "cmd.oom");
        assert_eq!(Failure::CpuLimit { seconds: 1 }.code(), "cmd.limit.cpu");
        assert_eq!(
            Failure::FileSizeLimit { bytes: 1 }.code(),
            "cmd.limit.file_size"
        );
        assert_eq!(Failure::Oom.status(), 500);
        assert_eq!(
            Failure::MemoryLimit { bytes: 1 << 28 }.code(),
            "cmd.limit.memory"
        );
        assert_eq!(
            Failure::MemoryLimit { bytes: 1 << 28 }.to_string(),
            "exceeded its memory limit of 256Mi and was killed"
        );
        assert_eq!(
            Failure::CpuLimit { seconds: 1 }.to_string(),
            "exceeded its cpu limit of 1s"
        );
        assert_eq!(
            Failure::FileSizeLimit { bytes: 1 << 20 }.to_string(),
            "exceeded its file_size limit of 1Mi"
        );
    }

    #[test]
    fn chosen_codes_follow_the_grammar() {
        for good in ["aws.client", "a", "A-1.b_2", "my-tool.not-found"] {
            assert_eq!(check_chosen_code(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a.1",
            "io.direktiv.x",
            "x/y",
        ] {
            assert!(check_chosen_code(bad).is_err(), "{bad}");
        }
        assert!(check_chosen_code(&"a".repeat(128)).is_ok());
        assert!(check_chosen_code(&"a".repeat(129)).is_err());
        let reported = Failure::Reported {
            code: None,
            status: 3,
            message: Some("m".into()),
        };
        assert_eq!(reported.code(), "cmd.exit.3");
    }

    #[test]
    fn io_failures_keep_their_source() {
        use std::error::Error;
        let failure = Failure::io("cannot create a temp dir", io::ErrorKind::NotFound.into());
        assert_eq!(failure.code(), "cmd.internal");
        assert!(failure
            .to_string()
            .starts_with("cannot create a temp dir: "));
        assert!(failure.source().is_some());
    }
}
