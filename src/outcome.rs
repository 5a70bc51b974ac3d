//! What a request came to, before it is rendered: each command's report, why the request
//! failed, if it did, and the secrets everything is masked with. Also the texts built from a
//! command's output: its `result` value and its one-line failure message.
//!
//! Everything here is as the commands produced it; nothing is masked yet. Masking is the
//! renderer's (`response`) and the log stream's: a `FailureMessage` can only be turned into
//! text through `render`, which masks it, and the outcome carries the request's `Masker`.

use serde_json::Value;

use std::sync::Arc;

use crate::error::{CancelReason, Failure};
use crate::exec::{masked_tail, CommandRun};
use crate::mask::{Masker, Snapshot};
use crate::plan::Dialect;
use crate::text::{cut_end, escape_controls};

/// Longest `Direktiv-ErrorMessage`.
pub(crate) const MAX_MESSAGE: usize = 4096;
/// Longest part of a message spent on the command line before the stderr tail.
const MAX_MESSAGE_HEAD: usize = 1024;

/// One command's outcome as the response reports it.
#[derive(Debug)]
pub(crate) struct CommandReport {
    /// The command line as the user wrote it.
    pub(crate) display: String,
    pub(crate) run: CommandRun,
    /// The content of the command's `output` file, when it names one that could be read.
    pub(crate) output_file: Option<OutputFile>,
    /// `output_file` is what the command left in its `DIREKTIV_RESULT` file (also the
    /// direktiv-cmd shape's `Output` then).
    pub(crate) from_result_file: bool,
    /// Why the command failed, when it did.
    pub(crate) message: Option<FailureMessage>,
    /// How many times it ran, for a command with `retry` (the report is the last run's).
    pub(crate) attempts: Option<u32>,
}

impl CommandReport {
    /// The report of a command that ran (or could not start): `output_file` is what its
    /// `output` file gave, when it names one; a file that could not be read fails the command.
    pub(crate) fn new(
        display: &str,
        mut run: CommandRun,
        output_file: Option<Result<OutputFile, Failure>>,
    ) -> Self {
        let from_result_file = output_file.is_none() && run.result_file.is_some();
        let output_file = match output_file {
            Some(Ok(file)) => Some(file),
            Some(Err(failure)) => {
                run.failure.get_or_insert(failure);
                None
            }
            // What the command left in DIREKTIV_RESULT, read whole (up to CMD_MAX_RESULT).
            None => run
                .result_file
                .take()
                .map(|bytes| OutputFile { bytes, cut: false }),
        };
        let message = run
            .failure
            .as_ref()
            .map(|failure| FailureMessage::new(Some(display), failure, Some(run.stderr.tail())));
        CommandReport {
            display: display.to_owned(),
            run,
            output_file,
            from_result_file,
            message,
            attempts: None,
        }
    }
}

/// The first bytes of an `output` file.
#[derive(Debug)]
pub(crate) struct OutputFile {
    pub(crate) bytes: Vec<u8>,
    /// The file may go on after `bytes` (it was read up to the limit).
    pub(crate) cut: bool,
}

/// Why a request failed as a whole.
#[derive(Debug)]
pub(crate) struct JobFailure {
    pub(crate) failure: Failure,
    /// The command that failed (0-based), when a command did.
    pub(crate) command: Option<usize>,
    pub(crate) message: FailureMessage,
}

/// Everything a response is built from.
#[derive(Debug)]
pub(crate) struct JobOutcome {
    pub(crate) dialect: Dialect,
    pub(crate) reports: Vec<CommandReport>,
    pub(crate) failure: Option<JobFailure>,
    /// The request's secrets, for the renderer. They stay registered (masked in every other
    /// request's output too) until the outcome is dropped, after the response is rendered.
    pub(crate) secrets: Arc<Masker>,
}

impl JobOutcome {
    /// A request whose commands are about to run.
    pub(crate) fn running(dialect: Dialect, secrets: Arc<Masker>) -> Self {
        JobOutcome {
            dialect,
            reports: Vec::new(),
            failure: None,
            secrets,
        }
    }

    /// The request was cancelled between two commands.
    pub(crate) fn cancel(&mut self, reason: CancelReason) {
        let failure = Failure::Cancelled { reason };
        self.failure = Some(JobFailure {
            message: FailureMessage::new(None, &failure, None),
            failure,
            command: None,
        });
    }

    /// Adds command `index`'s report; true when its failure ends the request (it may not
    /// continue, or it was cancelled or refused).
    pub(crate) fn record(
        &mut self,
        index: usize,
        may_continue: bool,
        report: CommandReport,
    ) -> bool {
        let fatal = report.run.failure.as_ref().filter(|failure| match failure {
            Failure::Cancelled { .. } | Failure::Input(_) => true,
            _ => !may_continue,
        });
        if let (Some(failure), Some(message)) = (fatal, &report.message) {
            self.failure = Some(JobFailure {
                failure: failure.clone(),
                command: Some(index),
                message: message.clone(),
            });
        }
        self.reports.push(report);
        self.failure.is_some()
    }

    /// A request refused before anything ran; `command` names the command that was refused.
    pub(crate) fn rejected(
        dialect: Dialect,
        failure: Failure,
        command: Option<&str>,
        secrets: Arc<Masker>,
    ) -> Self {
        JobOutcome {
            dialect,
            reports: Vec::new(),
            failure: Some(JobFailure {
                message: FailureMessage::new(command, &failure, None),
                failure,
                command: None,
            }),
            secrets,
        }
    }
}

/// A command as a message or the `running command` line names it: in the first of `'`, `"` and `` ` `` that it does not
/// contain, so a shell command's own quotes never nest inside the message's
/// (`command "sh -c 'exit 3'" exited with status 3`). A command holding all three is shown in
/// single quotes as it is.
pub(crate) fn quoted_command(command: &str) -> String {
    let quote = ['\'', '"', '`']
        .into_iter()
        .find(|quote| !command.contains(*quote))
        .unwrap_or('\'');
    format!("{quote}{command}{quote}")
}

/// A failure's one-line message: `command '<cmd>' <what happened>: <stderr tail>`. Kept as
/// its parts, as produced; `render` masks it, escapes control characters and bounds it.
#[derive(Debug, Clone)]
pub(crate) struct FailureMessage {
    head: String,
    /// Whether the head names a command (then room is kept for the tail).
    has_command: bool,
    /// The last bytes of stderr, and whether stderr began before them.
    tail: Option<(Vec<u8>, bool)>,
}

impl FailureMessage {
    /// The message of `failure` of `command` (or of the request), ending with `stderr_tail`.
    pub(crate) fn new(
        command: Option<&str>,
        failure: &Failure,
        stderr_tail: Option<(&[u8], bool)>,
    ) -> Self {
        // The command's own words (`::error::MESSAGE`) are the message, as it wrote them.
        if let Failure::Reported {
            message: Some(message),
            ..
        } = failure
        {
            return FailureMessage {
                head: message.clone(),
                has_command: false,
                tail: None,
            };
        }
        let head = match command {
            Some(command) => format!("command {} {failure}", quoted_command(command)),
            None => failure.to_string(),
        };
        FailureMessage {
            head,
            has_command: command.is_some(),
            tail: stderr_tail.map(|(bytes, cut)| (bytes.to_vec(), cut)),
        }
    }

    /// The message as shown: masked with `secrets`, control characters escaped, at most
    /// `MAX_MESSAGE` bytes. Each part is masked before it is escaped and after (an escape
    /// could spell a secret), and cut only once masked.
    pub(crate) fn render(&self, secrets: &Snapshot) -> String {
        // With a command, room is kept for the stderr tail; without one the text is the message.
        let head_limit = match self.has_command {
            true => MAX_MESSAGE_HEAD,
            false => MAX_MESSAGE,
        };
        let head = shown_line(&self.head, secrets, head_limit);
        let Some((tail, cut)) = &self.tail else {
            return head;
        };
        let masked = masked_tail(tail, *cut, secrets);
        let text = crate::text::lossy(&masked);
        let tail = text.trim();
        if tail.is_empty() {
            return head;
        }
        let tail = mask_escaped(tail, secrets);
        let budget = MAX_MESSAGE.saturating_sub(head.len() + 2);
        format!("{head}: {}", keep_end(&tail, budget))
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

/// A text built from request data (a message, a warning) as one line of at most `max` bytes:
/// masked before its control characters are escaped and after (an escape could spell a
/// secret), and cut only once masked.
pub(crate) fn shown_line(text: &str, secrets: &Snapshot, max: usize) -> String {
    cut_end(&mask_escaped(text, secrets), max)
}

fn mask_escaped(text: &str, secrets: &Snapshot) -> String {
    let escaped = escape_controls(&secrets.mask(text));
    secrets.mask(&escaped).into_owned()
}

/// Keeps the last `max` bytes of `text`.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_command_is_quoted_with_a_quote_it_does_not_contain() {
        let message =
            |command| FailureMessage::new(Some(command), &Failure::Exit { code: 3 }, None);
        let shown = |command| message(command).render(&Snapshot::default());
        assert_eq!(shown("false"), "command 'false' exited with status 3");
        assert_eq!(
            shown("sh -c 'echo oops >&2; exit 3'"),
            "command \"sh -c 'echo oops >&2; exit 3'\" exited with status 3"
        );
        assert_eq!(
            shown(r#"sh -c 'echo "a"; exit 3'"#),
            r#"command `sh -c 'echo "a"; exit 3'` exited with status 3"#
        );
    }

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
    fn message_is_one_line_bounded_and_masked() {
        let secrets = Masker::new(["topsecret"]).snapshot();
        let failure = Failure::Exit { code: 2 };
        let mut stderr = crate::exec::Capture::with_tail(0);
        stderr.push(format!("{}\r\nline with topsecret\n", "x".repeat(10_000)).as_bytes());
        let message = FailureMessage::new(Some("cmd topsecret"), &failure, Some(stderr.tail()));
        let message = message.render(&secrets);
        assert!(message.len() <= MAX_MESSAGE, "{}", message.len());
        assert!(message.starts_with("command 'cmd ***' exited with status 2: "));
        assert!(message.ends_with("\\r\\nline with ***"));
        assert!(!message.contains(['\n', '\r']));
    }

    #[test]
    fn a_secret_is_masked_before_the_message_is_cut() {
        let secret = format!("{}-the-end-of-a-long-secret", "s".repeat(1000));
        let secrets = Masker::new([secret.as_str()]).snapshot();
        let failure = Failure::input(format!("commands[0].timeout: '{secret}' is not a duration"));
        let message = FailureMessage::new(None, &failure, None).render(&secrets);
        assert_eq!(message, "commands[0].timeout: '***' is not a duration");
        // Cut at 1 KiB only after masking: no piece of it before the cut.
        let message = FailureMessage::new(Some(&secret), &failure, None).render(&secrets);
        assert!(!message.contains("ssss"), "{message}");
    }
}
