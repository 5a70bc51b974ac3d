//! Outcomes → what Direktiv reads: status, `Direktiv-Error*` headers and body, in the dialect
//! the request came in. A pure renderer: the HTTP side turns a `Reply` into a response.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::direktiv::DIREKTIV_CMD_ERROR;
use crate::error::Failure;
use crate::mask::Masker;
use crate::outcome::{embeddable_json, one_line, CommandReport, JobOutcome, MAX_MESSAGE};
use crate::plan::Dialect;

/// A rendered response, independent of the HTTP stack (also printed by `direktiv-cmd run`).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// `Direktiv-ErrorCode` and `Direktiv-ErrorMessage`, set together or not at all.
    pub error: Option<(String, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Renders a finished request.
pub(crate) fn render(outcome: &JobOutcome, result_key: &str) -> Reply {
    match outcome.dialect {
        Dialect::Native => render_native(outcome, result_key),
        Dialect::DirektivCmd => render_direktiv_cmd(outcome),
    }
}

/// Renders a request refused before it ran (bad input, busy) in the given dialect.
pub(crate) fn render_rejection(failure: &Failure, dialect: Dialect, result_key: &str) -> Reply {
    // Refused before it was parsed: there are no secrets to mask yet.
    let outcome = JobOutcome::rejected(dialect, failure.clone(), None, &Masker::default());
    render(&outcome, result_key)
}

fn render_native(outcome: &JobOutcome, result_key: &str) -> Reply {
    let error = outcome
        .failure
        .as_ref()
        .map(|failed| (failed.failure.code(), failed.message.clone()));
    let body = NativeBody {
        error_code: error.as_ref().map(|(code, _)| code.as_str()),
        error_message: error.as_ref().map(|(_, message)| message.as_str()),
        result_key,
        commands: outcome.reports.iter().map(native_entry).collect(),
    };
    // Outputs dominate the size: each appears as `stdout` and again as `result`.
    let outputs: usize = outcome
        .reports
        .iter()
        .map(|r| r.run.stdout.bytes().len() + r.run.stderr.bytes().len())
        .sum();
    let mut bytes = Vec::with_capacity(2 * outputs + 512);
    let body = match serde_json::to_writer(&mut bytes, &body) {
        Ok(()) => bytes,
        Err(_) => b"{}".to_vec(),
    };
    Reply {
        status: outcome
            .failure
            .as_ref()
            .map_or(200, |failed| failed.failure.status()),
        error,
        content_type: "application/json",
        body,
    }
}

/// The native response body; serialised straight from the outcome, without copies.
struct NativeBody<'a> {
    error_code: Option<&'a str>,
    error_message: Option<&'a str>,
    /// `CMD_RESULT_KEY`: the name of the commands list.
    result_key: &'a str,
    commands: Vec<NativeEntry<'a>>,
}

impl serde::Serialize for NativeBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let (Some(code), Some(message)) = (self.error_code, self.error_message) {
            map.serialize_entry("errorCode", code)?;
            map.serialize_entry("errorMessage", message)?;
        }
        map.serialize_entry(self.result_key, &self.commands)?;
        map.end()
    }
}

/// One command of the native response.
#[derive(serde::Serialize)]
struct NativeEntry<'a> {
    command: &'a str,
    success: bool,
    exit_code: Option<i32>,
    result: &'a Value,
    stdout: Cow<'a, str>,
    stderr: Cow<'a, str>,
    truncated: bool,
    duration_ms: u64,
    /// What the command used; null when it never started.
    usage: Option<crate::exec::Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<NativeError<'a>>,
}

#[derive(serde::Serialize)]
struct NativeError<'a> {
    code: String,
    message: &'a str,
}

fn native_entry(report: &CommandReport) -> NativeEntry<'_> {
    let run = &report.run;
    NativeEntry {
        command: &report.display,
        success: run.failure.is_none(),
        exit_code: match run.exit {
            Some(crate::exec::ExitKind::Code(code)) => Some(code),
            _ => None,
        },
        result: &report.result,
        stdout: crate::text::lossy(run.stdout.bytes()),
        stderr: crate::text::lossy(run.stderr.bytes()),
        truncated: run.stdout.truncated() || run.stderr.truncated(),
        duration_ms: run.duration.as_millis() as u64,
        usage: run.usage,
        error: run
            .failure
            .as_ref()
            .zip(report.message.as_deref())
            .map(|(failure, message)| NativeError {
                code: failure.code(),
                message,
            }),
    }
}

/// Direktiv's `direktiv-cmd` answers: `[{"Error": "", "Output": ...}]`, plain-text errors.
fn render_direktiv_cmd(outcome: &JobOutcome) -> Reply {
    match &outcome.failure {
        None => {
            let entries: Vec<Value> = outcome
                .reports
                .iter()
                .map(|report| {
                    json!({
                        "Error": report.message.clone().unwrap_or_default(),
                        "Output": output_value(report.run.combined.bytes()),
                    })
                })
                .collect();
            Reply {
                status: 200,
                error: None,
                content_type: "application/json",
                body: serde_json::to_vec(&entries).unwrap_or_default(),
            }
        }
        Some(failed) => {
            // A `stop` command that ran and failed is that runner's execution error; everything
            // else (input, cancel, timeout, internal) keeps its cmd.* code.
            let stopped = failed.command.is_some()
                && matches!(
                    failed.failure,
                    Failure::Exit { .. }
                        | Failure::Signal { .. }
                        | Failure::Oom
                        | Failure::CpuLimit { .. }
                        | Failure::FileSizeLimit { .. }
                        | Failure::NotFound(_)
                        | Failure::Denied(_)
                );
            let (code, message, status) = match (stopped, failed.command) {
                (true, Some(index)) => (
                    DIREKTIV_CMD_ERROR.to_owned(),
                    one_line(
                        &format!("stopped because command {index} failed: {}", failed.message),
                        MAX_MESSAGE,
                    ),
                    500,
                ),
                _ => (
                    failed.failure.code(),
                    failed.message.clone(),
                    failed.failure.status(),
                ),
            };
            Reply {
                status,
                body: message.clone().into_bytes(),
                error: Some((code, message)),
                content_type: "text/plain; charset=utf-8",
            }
        }
    }
}

/// The direktiv-cmd `Output`: the text, embedded as JSON when it parses as JSON.
fn output_value(bytes: &[u8]) -> Value {
    embeddable_json(bytes).unwrap_or_else(|| Value::String(crate::text::lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_embeds_json() {
        assert_eq!(output_value(b"444\n"), json!(444));
        assert_eq!(output_value(b"hello1\n"), json!("hello1\n"));
        assert_eq!(output_value(b"1.10\n").to_string(), "1.10");
        assert_eq!(output_value(b"1e400"), json!("1e400"));
    }
}
