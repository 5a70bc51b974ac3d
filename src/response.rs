//! Outcomes → what Direktiv reads: status, `Direktiv-Error*` headers and body, in the dialect
//! the request came in. A pure renderer: the HTTP side turns a `Reply` into a response.
//!
//! It is also where the response is masked, in one step for everything it shows (`Shown`):
//! outputs are masked before anything is derived from them (a cut never shows a piece of a
//! secret), and what is derived — `result` after JSON decoding and ANSI stripping, the
//! direktiv-cmd `Output` — is masked again, value by value, since decoding can rebuild a
//! secret (`p\u0026ss` is `p&ss`). Error messages and headers are always masked;
//! `CMD_MASK_RESPONSE=false` leaves the rest as the commands wrote it.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::direktiv::DIREKTIV_CMD_ERROR;
use crate::error::Failure;
use crate::exec::Capture;
use crate::mask::{Masker, Registry, Snapshot};
use crate::outcome::{
    embeddable_json, result_value, CommandReport, JobOutcome, OutputFile, MAX_MESSAGE,
};
use crate::plan::Dialect;
use crate::text::one_line;

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

/// How a response shows what it holds: messages and headers always masked, outputs and what
/// is derived from them masked unless `CMD_MASK_RESPONSE=false`.
struct Shown<'a> {
    secrets: &'a Snapshot,
    /// `Some` when outputs are masked too.
    outputs: Option<&'a Snapshot>,
}

impl Shown<'_> {
    /// A header value or message text.
    fn message(&self, text: &str) -> String {
        self.secrets.mask(text).into_owned()
    }

    /// The command line.
    fn command<'b>(&self, text: &'b str) -> Cow<'b, str> {
        match self.outputs {
            Some(secrets) => secrets.mask(text),
            None => Cow::Borrowed(text),
        }
    }

    /// A captured stream as text.
    fn capture<'b>(&self, capture: &'b Capture) -> Cow<'b, str> {
        match capture.shown(self.outputs) {
            Cow::Borrowed(bytes) => crate::text::lossy(bytes),
            Cow::Owned(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Cow::Owned(text),
                Err(error) => Cow::Owned(crate::text::lossy(error.as_bytes()).into_owned()),
            },
        }
    }

    /// `result`: from the `output` file, else from stdout as shown (`stdout`); masked again
    /// where it is not simply that text trimmed.
    fn result(&self, output_file: Option<&OutputFile>, stdout: &str) -> Value {
        let value = match (output_file, self.outputs) {
            (Some(file), Some(secrets)) if file.cut => {
                result_value(&secrets.mask_prefix(&file.bytes, file.bytes.len()).0)
            }
            (Some(file), Some(secrets)) => result_value(&secrets.mask_bytes(&file.bytes)),
            (Some(file), None) => result_value(&file.bytes),
            (None, _) => result_value(stdout.as_bytes()),
        };
        match (&value, self.outputs) {
            // A part of text already masked holds no secret of its own.
            (Value::String(text), _) if output_file.is_none() && text == stdout.trim() => value,
            (_, Some(secrets)) => mask_value(value, secrets),
            (_, None) => value,
        }
    }

    /// A value derived from `text` (already masked): masked again unless it is that text.
    fn derived(&self, value: Value, text: &str) -> Value {
        match (&value, self.outputs) {
            (Value::String(derived), _) if derived == text => value,
            (_, Some(secrets)) => mask_value(value, secrets),
            (_, None) => value,
        }
    }
}

/// `value` with every string, object key and number masked (a number that held a secret
/// becomes the string `***`).
fn mask_value(value: Value, secrets: &Snapshot) -> Value {
    match value {
        Value::String(text) => match secrets.mask(&text) {
            Cow::Borrowed(_) => Value::String(text),
            Cow::Owned(masked) => Value::String(masked),
        },
        Value::Number(number) => {
            let text = number.to_string();
            match secrets.mask(&text) {
                Cow::Borrowed(_) => Value::Number(number),
                Cow::Owned(masked) => Value::String(masked),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| mask_value(item, secrets))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| (secrets.mask(&key).into_owned(), mask_value(item, secrets)))
                .collect(),
        ),
        other => other,
    }
}

/// Renders a finished request. `mask_response`: `CMD_MASK_RESPONSE`.
pub(crate) fn render(outcome: &JobOutcome, result_key: &str, mask_response: bool) -> Reply {
    let secrets = outcome.secrets.snapshot();
    let shown = Shown {
        secrets: &secrets,
        outputs: mask_response.then_some(&*secrets),
    };
    match outcome.dialect {
        Dialect::Native => render_native(outcome, &shown, result_key),
        Dialect::DirektivCmd => render_direktiv_cmd(outcome, &shown),
    }
}

/// Renders a request refused before it was read (bad headers, busy) in the given dialect,
/// masked with every request's secrets.
pub(crate) fn render_rejection(failure: &Failure, dialect: Dialect, result_key: &str) -> Reply {
    let secrets = std::sync::Arc::new(Masker::everyone(Registry::global()));
    let outcome = JobOutcome::rejected(dialect, failure.clone(), None, secrets);
    render(&outcome, result_key, true)
}

fn render_native(outcome: &JobOutcome, shown: &Shown<'_>, result_key: &str) -> Reply {
    let error = outcome.failure.as_ref().map(|failed| {
        (
            shown.message(&failed.failure.code()),
            failed.message.render(shown.secrets),
        )
    });
    let entries: Vec<NativeEntry<'_>> = outcome
        .reports
        .iter()
        .map(|report| native_entry(report, shown))
        .collect();
    let body = NativeBody {
        error_code: error.as_ref().map(|(code, _)| code.as_str()),
        error_message: error.as_ref().map(|(_, message)| message.as_str()),
        result_key,
        commands: entries,
    };
    // Outputs dominate the size: each appears as `stdout` and again as `result`, escaped. A
    // newline, the one byte text is full of that escaping doubles, is counted (a SIMD pass):
    // a body that outgrows its buffer is copied whole, over a megabyte for `seq 1 100000`.
    let outputs: usize = body
        .commands
        .iter()
        .flat_map(|entry| [entry.stdout.as_bytes(), entry.stderr.as_bytes()])
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
    field(out, "command", &entry.command)?;
    out.push(b',');
    field(out, "success", &entry.success)?;
    out.push(b',');
    field(out, "exit_code", &entry.exit_code)?;
    out.push(b',');
    write_result_and_stdout(&entry.result, &entry.stdout, out)?;
    out.push(b',');
    field(out, "stderr", &entry.stderr)?;
    out.push(b',');
    field(out, "truncated", &entry.truncated)?;
    out.push(b',');
    field(out, "duration_ms", &entry.duration_ms)?;
    out.push(b',');
    field(out, "usage", &entry.usage)?;
    if let Some(attempts) = entry.attempts {
        out.push(b',');
        field(out, "attempts", &attempts)?;
    }
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

/// One command of the native response, as shown.
struct NativeEntry<'a> {
    command: Cow<'a, str>,
    success: bool,
    exit_code: Option<i32>,
    result: Value,
    stdout: Cow<'a, str>,
    stderr: Cow<'a, str>,
    truncated: bool,
    duration_ms: u64,
    /// What the command used; null when it never started.
    usage: Option<crate::exec::Usage>,
    /// Runs of a command with `retry`; left out without one.
    attempts: Option<u32>,
    /// Left out when the command did not fail.
    error: Option<NativeError>,
}

#[derive(serde::Serialize)]
struct NativeError {
    code: String,
    message: String,
}

fn native_entry<'a>(report: &'a CommandReport, shown: &Shown<'_>) -> NativeEntry<'a> {
    let run = &report.run;
    let stdout = shown.capture(&run.stdout);
    NativeEntry {
        command: shown.command(&report.display),
        success: run.failure.is_none(),
        exit_code: match run.exit {
            Some(crate::exec::ExitKind::Code(code)) => Some(code),
            _ => None,
        },
        result: shown.result(report.output_file.as_ref(), &stdout),
        stderr: shown.capture(&run.stderr),
        stdout,
        truncated: run.stdout.truncated() || run.stderr.truncated(),
        duration_ms: run.duration.as_millis() as u64,
        usage: run.usage,
        attempts: report.attempts,
        error: run
            .failure
            .as_ref()
            .zip(report.message.as_ref())
            .map(|(failure, message)| NativeError {
                code: shown.message(&failure.code()),
                message: message.render(shown.secrets),
            }),
    }
}

/// Direktiv's `direktiv-cmd` answers: `[{"Error": "", "Output": ...}]`, plain-text errors.
fn render_direktiv_cmd(outcome: &JobOutcome, shown: &Shown<'_>) -> Reply {
    match &outcome.failure {
        None => {
            let entries: Vec<Value> = outcome
                .reports
                .iter()
                .map(|report| {
                    let output = match (&report.output_file, report.from_result_file) {
                        (Some(file), true) => shown.result(Some(file), ""),
                        _ => {
                            let combined = shown.capture(&report.run.combined);
                            shown.derived(output_value(combined.as_bytes()), &combined)
                        }
                    };
                    let error = report
                        .message
                        .as_ref()
                        .map(|message| message.render(shown.secrets));
                    json!({"Error": error.unwrap_or_default(), "Output": output})
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
                        | Failure::Reported { code: None, .. }
                        | Failure::Signal { .. }
                        | Failure::Oom
                        | Failure::MemoryLimit { .. }
                        | Failure::CpuLimit { .. }
                        | Failure::FileSizeLimit { .. }
                        | Failure::NotFound(_)
                        | Failure::Denied(_)
                );
            let message = failed.message.render(shown.secrets);
            let (code, message, status) = match (stopped, failed.command) {
                (true, Some(index)) => (
                    DIREKTIV_CMD_ERROR.to_owned(),
                    one_line(
                        &format!("stopped because command {index} failed: {message}"),
                        MAX_MESSAGE,
                    ),
                    500,
                ),
                _ => (
                    shown.message(&failed.failure.code()),
                    message,
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
