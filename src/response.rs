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
    // Outputs dominate the size: each appears as `stdout` and again as `result`, escaped. A
    // newline, the one byte text is full of that escaping doubles, is counted (a SIMD pass):
    // a body that outgrows its buffer is copied whole, over a megabyte for `seq 1 100000`.
    let outputs: usize = outcome
        .reports
        .iter()
        .flat_map(|r| [r.run.stdout.bytes(), r.run.stderr.bytes()])
        .map(|output| output.len() + memchr::memchr_iter(b'\n', output).count())
        .sum();
    let mut bytes = Vec::with_capacity(2 * outputs + 512);
    let body = match write_native(&body, &mut bytes) {
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

/// Writes the native body as JSON. Assembled here around serde_json's own escaping so that an
/// output which appears twice — as `stdout`, and as `result` when that is stdout trimmed, the
/// usual case for text — is escaped once: escaping dominated the cost of large outputs.
fn write_native(body: &NativeBody<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.push(b'{');
    if let (Some(code), Some(message)) = (body.error_code, body.error_message) {
        field(out, "errorCode", code)?;
        out.push(b',');
        field(out, "errorMessage", message)?;
        out.push(b',');
    }
    key(out, body.result_key)?;
    out.push(b'[');
    for (index, entry) in body.commands.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_entry(entry, out)?;
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// One command's object, its fields in the order the README shows them.
fn write_entry(entry: &NativeEntry<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.push(b'{');
    field(out, "command", entry.command)?;
    out.push(b',');
    field(out, "success", &entry.success)?;
    out.push(b',');
    field(out, "exit_code", &entry.exit_code)?;
    out.push(b',');
    write_result_and_stdout(entry.result, &entry.stdout, out)?;
    out.push(b',');
    field(out, "stderr", &entry.stderr)?;
    out.push(b',');
    field(out, "truncated", &entry.truncated)?;
    out.push(b',');
    field(out, "duration_ms", &entry.duration_ms)?;
    out.push(b',');
    field(out, "usage", &entry.usage)?;
    if let Some(error) = &entry.error {
        out.push(b',');
        field(out, "error", error)?;
    }
    out.push(b'}');
    Ok(())
}

/// `"result":…,"stdout":…`. When `result` is the string `stdout.trim()`, it is escaped once,
/// straight into the body, and stdout's JSON is built around a copy of it: escaping works
/// character by character, so the escaped form of a part of a text is that part of the text's
/// escaped form. No temporary buffer grows (and is copied) to the output's escaped size.
fn write_result_and_stdout(
    result: &Value,
    stdout: &str,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    key(out, "result")?;
    let trimmed = stdout.trim();
    let Value::String(text) = result else {
        serde_json::to_writer(&mut *out, result)?;
        return field_after_comma(out, "stdout", stdout);
    };
    if text.as_str() != trimmed {
        serde_json::to_writer(&mut *out, text)?;
        return field_after_comma(out, "stdout", stdout);
    }
    let start = stdout.len() - stdout.trim_start().len();
    let end = start + trimmed.len();
    let escaped_from = out.len() + 1;
    serde_json::to_writer(&mut *out, trimmed)?;
    let escaped = escaped_from..out.len() - 1;
    out.push(b',');
    key(out, "stdout")?;
    // The whitespace cut off either side, escaped, around the copy (a few bytes each).
    let before = serde_json::to_vec(&stdout[..start])?;
    let after = serde_json::to_vec(&stdout[end..])?;
    out.extend_from_slice(&before[..before.len() - 1]);
    out.extend_from_within(escaped);
    out.extend_from_slice(&after[1..]);
    Ok(())
}

/// `,"name":"text"`
fn field_after_comma(out: &mut Vec<u8>, name: &str, text: &str) -> serde_json::Result<()> {
    out.push(b',');
    field(out, name, text)
}

/// `"name":`
fn key(out: &mut Vec<u8>, name: &str) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, name)?;
    out.push(b':');
    Ok(())
}

/// `"name":value`
fn field<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    name: &str,
    value: &T,
) -> serde_json::Result<()> {
    key(out, name)?;
    serde_json::to_writer(&mut *out, value)
}

/// One command of the native response.
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
    /// Left out when the command did not fail.
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

    /// `write_result_and_stdout` against serde_json writing both fields itself.
    fn check_result_and_stdout(result: &Value, stdout: &str) {
        let mut out = b"{".to_vec();
        write_result_and_stdout(result, stdout, &mut out).unwrap();
        out.push(b'}');
        let expected = serde_json::to_vec(&json!({"result": result, "stdout": stdout})).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn a_result_that_is_stdout_trimmed_is_written_from_stdout_s_escaped_form() {
        for stdout in [
            "",
            "plain",
            "1\n2\n3\n",
            " \t\n \"quoted\" \\ back\u{1}slash \r\n\t ",
            "\u{2003}em space around\u{2003}\n",
            "é\n\"\n",
            "\n\n\n",
        ] {
            let text = crate::text::lossy(stdout.as_bytes());
            let trimmed = Value::String(text.trim().to_owned());
            check_result_and_stdout(&trimmed, stdout);
            // Any other result is written as it is.
            check_result_and_stdout(&json!({"a": [1, "x\ny"]}), stdout);
            check_result_and_stdout(&Value::String(format!("{stdout}!")), stdout);
        }
    }

    #[test]
    fn output_embeds_json() {
        assert_eq!(output_value(b"444\n"), json!(444));
        assert_eq!(output_value(b"hello1\n"), json!("hello1\n"));
        assert_eq!(output_value(b"1.10\n").to_string(), "1.10");
        assert_eq!(output_value(b"1e400"), json!("1e400"));
    }
}
