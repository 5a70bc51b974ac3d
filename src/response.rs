//! Outcomes → what Direktiv reads: status, `Direktiv-Error*` headers and body, in the dialect
//! the request came in.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

use serde_json::{json, Value};

use crate::error::Failure;
use crate::job::{CommandReport, JobOutcome};
use crate::mask::Masker;
use crate::plan::Dialect;

/// Longest `Direktiv-ErrorMessage`.
pub const MAX_MESSAGE: usize = 4096;
/// Longest part of a message spent on the command line before the stderr tail.
const MAX_MESSAGE_HEAD: usize = 1024;

/// Error code of a failing `stop` command in the direktiv-cmd shape (what Direktiv's runner sends).
pub const DIREKTIV_CMD_ERROR: &str = "io.direktiv.error.execution";

/// A rendered response, independent of the HTTP stack (also printed by `direktiv-cmd run`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// `Direktiv-ErrorCode` and `Direktiv-ErrorMessage`, set together or not at all.
    pub error: Option<(String, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some((code, message)) = self.error {
            // Both values are single-line printable text (see `one_line`); from_str cannot
            // fail on them, but a header is never worth a panic.
            if let (Ok(code), Ok(message)) = (
                HeaderValue::from_str(&code),
                HeaderValue::from_str(&message),
            ) {
                headers.insert("Direktiv-ErrorCode", code);
                headers.insert("Direktiv-ErrorMessage", message);
            }
        }
        response
    }
}

/// Renders a finished request.
pub fn render(outcome: &JobOutcome, result_key: &str) -> Reply {
    match outcome.dialect {
        Dialect::Native => render_native(outcome, result_key),
        Dialect::DirektivCmd => render_direktiv_cmd(outcome),
    }
}

/// Renders a request refused before it ran (bad input, busy) in the given dialect.
pub fn render_rejection(failure: &Failure, dialect: Dialect, result_key: &str) -> Reply {
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
            .map_or(StatusCode::OK, |failed| failed.failure.status()),
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
                status: StatusCode::OK,
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
                    StatusCode::INTERNAL_SERVER_ERROR,
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

/// Output that is JSON Direktiv can take back, numbers kept as printed (`1.10` stays `1.10`,
/// big integers keep every digit: serde_json's `arbitrary_precision`; only an exponent is
/// rewritten, `1E3` as `1e+3`). A number beyond
/// the range of a float64 (`1e400`) would make Direktiv's Go decoder refuse the whole response,
/// so such output is not embedded.
fn embeddable_json(bytes: &[u8]) -> Option<Value> {
    fn numbers_in_range(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.as_f64().is_some(),
            Value::Array(items) => items.iter().all(numbers_in_range),
            Value::Object(map) => map.values().all(numbers_in_range),
            _ => true,
        }
    }
    serde_json::from_slice(bytes).ok().filter(numbers_in_range)
}

/// `result`: stdout as JSON when it is JSON; otherwise stdout without ANSI escapes and
/// surrounding whitespace, as JSON if that now parses, else as a string.
pub fn result_value(stdout: &[u8]) -> Value {
    if let Some(value) = embeddable_json(stdout) {
        return value;
    }
    // Stripping walks the output a character at a time; most output has no escape at all.
    let stripped = if memchr::memchr(0x1b, stdout).is_some() {
        std::borrow::Cow::Owned(strip_ansi_escapes::strip(stdout))
    } else {
        std::borrow::Cow::Borrowed(stdout)
    };
    let text = crate::text::lossy(&stripped);
    let trimmed = text.trim();
    embeddable_json(trimmed.as_bytes()).unwrap_or_else(|| Value::String(trimmed.to_owned()))
}

/// The one-line message of a failure: `command '<cmd>' <what happened>: <stderr tail>`, masked,
/// control characters escaped, at most `MAX_MESSAGE` bytes.
pub fn failure_message(
    command: Option<&str>,
    failure: &Failure,
    stderr_tail: &[u8],
    masker: &Masker,
) -> String {
    let head = match command {
        Some(command) => format!("command '{command}' {failure}"),
        None => failure.to_string(),
    };
    // With a command, room is kept for the stderr tail; without one the text is the message.
    let head_limit = if command.is_some() {
        MAX_MESSAGE_HEAD
    } else {
        MAX_MESSAGE
    };
    let head = one_line(&masker.mask(&head), head_limit);
    let tail_text = String::from_utf8_lossy(stderr_tail);
    let tail = masker.mask(tail_text.trim());
    if tail.is_empty() {
        return head;
    }
    let tail = escape_controls(&tail);
    let budget = MAX_MESSAGE.saturating_sub(head.len() + 2);
    format!("{head}: {}", keep_end(&tail, budget))
}

/// Escapes control characters and cuts the text to `max` bytes (on a char boundary).
fn one_line(text: &str, max: usize) -> String {
    let escaped = escape_controls(text);
    if escaped.len() <= max {
        return escaped;
    }
    let mut end = max.saturating_sub(3);
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &escaped[..end])
}

/// Keeps the last `max` bytes of `text`, marking the cut.
fn keep_end(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `\n` → `\\n` and so on: header values cannot carry control characters, and Direktiv shows
/// the message on one line.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_embeds_json_and_trims_text() {
        assert_eq!(result_value(b"{\"a\":1}\n"), json!({"a": 1}));
        assert_eq!(result_value(b"Python 3.10.5\n"), json!("Python 3.10.5"));
        assert_eq!(result_value(b"\x1b[32m  42 \x1b[0m\n"), json!(42));
        assert_eq!(result_value(b"\x1b[1mbold\x1b[0m"), json!("bold"));
        assert_eq!(result_value(b""), json!(""));
    }

    #[test]
    fn result_keeps_numbers_as_printed() {
        for printed in [
            "1.10",
            "123456789012345678901234",
            "-0.0",
            "0.1000",
            "2.50e-3",
        ] {
            assert_eq!(result_value(printed.as_bytes()).to_string(), printed);
            assert_eq!(
                result_value(format!(" {printed}\n").as_bytes()).to_string(),
                printed
            );
        }
        assert_eq!(
            result_value(b"{\"price\": 1.10, \"ids\": [123456789012345678901234]}").to_string(),
            "{\"ids\":[123456789012345678901234],\"price\":1.10}"
        );
        assert_eq!(output_value(b"1.10\n").to_string(), "1.10");
        // serde_json writes every exponent with its sign; the digits stay.
        assert_eq!(result_value(b"1E3").to_string(), "1e+3");
    }

    #[test]
    fn numbers_beyond_float64_stay_text() {
        assert_eq!(result_value(b"1e400\n"), json!("1e400"));
        assert_eq!(result_value(b"[1, 2e999]"), json!("[1, 2e999]"));
        assert_eq!(output_value(b"1e400"), json!("1e400"));
    }

    #[test]
    fn message_is_one_line_and_bounded() {
        let masker = Masker::new(["topsecret"]);
        let failure = Failure::Exit { code: 2 };
        let stderr = format!("{}\r\nline with topsecret\n", "x".repeat(10_000));
        let message = failure_message(Some("cmd topsecret"), &failure, stderr.as_bytes(), &masker);
        assert!(message.len() <= MAX_MESSAGE, "{}", message.len());
        assert!(message.starts_with("command 'cmd ***' exited with status 2: "));
        assert!(message.ends_with("\\r\\nline with ***"));
        assert!(!message.contains(['\n', '\r']));
    }

    #[test]
    fn output_embeds_json() {
        assert_eq!(output_value(b"444\n"), json!(444));
        assert_eq!(output_value(b"hello1\n"), json!("hello1\n"));
    }
}
