//! What a request came to, before it is rendered: each command's report, and why the request
//! failed, if it did. Also the two texts built from a command's output: its `result` value and
//! its one-line failure message.

use serde_json::Value;

use crate::error::Failure;
use crate::exec::CommandRun;
use crate::mask::{Masker, Snapshot};
use crate::plan::Dialect;

/// Longest `Direktiv-ErrorMessage`.
pub(crate) const MAX_MESSAGE: usize = 4096;
/// Longest part of a message spent on the command line before the stderr tail.
const MAX_MESSAGE_HEAD: usize = 1024;

/// One command's outcome as the response reports it.
#[derive(Debug)]
pub(crate) struct CommandReport {
    /// The command line, masked.
    pub(crate) display: String,
    pub(crate) run: CommandRun,
    /// `result`: stdout (or the `output` file) as JSON when it is JSON, else trimmed text.
    pub(crate) result: Value,
    /// The one-line failure message, when the command failed.
    pub(crate) message: Option<String>,
}

/// Why a request failed as a whole.
#[derive(Debug)]
pub(crate) struct JobFailure {
    pub(crate) failure: Failure,
    /// The command that failed (0-based), when a command did.
    pub(crate) command: Option<usize>,
    /// One line, masked, at most 4 KiB.
    pub(crate) message: String,
}

/// Everything a response is built from.
#[derive(Debug)]
pub(crate) struct JobOutcome {
    pub(crate) dialect: Dialect,
    pub(crate) reports: Vec<CommandReport>,
    pub(crate) failure: Option<JobFailure>,
}

impl JobOutcome {
    /// A request refused before anything ran; `command` names the command that was refused.
    pub(crate) fn rejected(
        dialect: Dialect,
        failure: Failure,
        command: Option<&str>,
        masker: &Masker,
    ) -> Self {
        let message = failure_message(command, &failure, b"", &masker.snapshot());
        JobOutcome {
            dialect,
            reports: Vec::new(),
            failure: Some(JobFailure {
                failure,
                command: None,
                message,
            }),
        }
    }
}

/// `result`: stdout as JSON when it is JSON; otherwise stdout without ANSI escapes, each line
/// as a terminal shows it (progress bars redrawn with `\r` leave their last state), without
/// surrounding whitespace, as JSON if that now parses, else as a string.
pub(crate) fn result_value(stdout: &[u8]) -> Value {
    if let Some(value) = embeddable_json(stdout) {
        return value;
    }
    let text = crate::text::lossy(stdout);
    // Before the escapes go: stripping them drops carriage returns too.
    let shown = crate::text::lines_as_displayed(&text);
    // Stripping walks the output a character at a time; most output has no escape at all.
    let stripped = if shown.contains('\x1b') {
        std::borrow::Cow::Owned(strip_ansi_escapes::strip_str(&*shown))
    } else {
        shown
    };
    let trimmed = stripped.trim();
    embeddable_json(trimmed.as_bytes()).unwrap_or_else(|| Value::String(trimmed.to_owned()))
}

/// Output that is JSON Direktiv can take back, numbers kept as printed (`1.10` stays `1.10`,
/// big integers keep every digit: serde_json's `arbitrary_precision`; only an exponent is
/// rewritten, `1E3` as `1e+3`). A number beyond the range of a float64 (`1e400`) would make
/// Direktiv's Go decoder refuse the whole response, so such output is not embedded.
pub(crate) fn embeddable_json(bytes: &[u8]) -> Option<Value> {
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

/// The one-line message of a failure: `command '<cmd>' <what happened>: <stderr tail>`, masked,
/// control characters escaped, at most `MAX_MESSAGE` bytes. `stderr_tail` comes masked
/// (`Capture::masked_tail`: masking it here could not see a secret cut at its start).
pub(crate) fn failure_message(
    command: Option<&str>,
    failure: &Failure,
    stderr_tail: &[u8],
    secrets: &Snapshot,
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
    let head = one_line(&secrets.mask(&head), head_limit);
    let tail_text = crate::text::lossy(stderr_tail);
    let tail = tail_text.trim();
    if tail.is_empty() {
        return head;
    }
    let tail = escape_controls(tail);
    let budget = MAX_MESSAGE.saturating_sub(head.len() + 2);
    format!("{head}: {}", keep_end(&tail, budget))
}

/// Escapes control characters and cuts the text to `max` bytes (on a char boundary).
pub(crate) fn one_line(text: &str, max: usize) -> String {
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
    use serde_json::json;

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
    fn result_shows_progress_lines_as_a_terminal_does() {
        assert_eq!(
            result_value(b"Completed 1 of 2\rCompleted 2 of 2\rupload: ./x to s3://b/x\n"),
            json!("upload: ./x to s3://b/x")
        );
        assert_eq!(result_value(b"10%\r100%\r\n42\r\n"), json!("100%\n42"));
        assert_eq!(result_value(b"0%\r\x1b[1m42\x1b[0m\n"), json!(42));
        assert_eq!(
            result_value(b"\"a\\rb\"\n"),
            json!("a\rb"),
            "JSON stays as it is"
        );
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
            "{\"price\":1.10,\"ids\":[123456789012345678901234]}"
        );
        // serde_json writes every exponent with its sign; the digits stay.
        assert_eq!(result_value(b"1E3").to_string(), "1e+3");
    }

    #[test]
    fn numbers_beyond_float64_stay_text() {
        assert_eq!(result_value(b"1e400\n"), json!("1e400"));
        assert_eq!(result_value(b"[1, 2e999]"), json!("[1, 2e999]"));
        assert_eq!(embeddable_json(b"1e400"), None);
    }

    #[test]
    fn message_is_one_line_and_bounded() {
        let secrets = Masker::new(["topsecret"]).snapshot();
        let failure = Failure::Exit { code: 2 };
        let mut stderr = crate::exec::Capture::with_tail(0);
        stderr.push(format!("{}\r\nline with topsecret\n", "x".repeat(10_000)).as_bytes());
        let tail = stderr.masked_tail(&secrets);
        let message = failure_message(Some("cmd topsecret"), &failure, &tail, &secrets);
        assert!(message.len() <= MAX_MESSAGE, "{}", message.len());
        assert!(message.starts_with("command 'cmd ***' exited with status 2: "));
        assert!(message.ends_with("\\r\\nline with ***"));
        assert!(!message.contains(['\n', '\r']));
    }
}
