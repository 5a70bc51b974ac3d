//! Where a command's output goes as it is read: the captures for the response, the workflow
//! commands it prints (`::add-mask::` declarations, applied at once), and the log framers,
//! which mask each line as they queue it.
//!
//! Chunks are captured and searched for declarations as they are read, and framed in the
//! order `ReadOrder` releases them, so a declaration is in force before any line written
//! after it leaves, on either stream.

use std::borrow::Cow;

use super::order::{ReadOrder, Stream};
use super::Capture;
use crate::logs::{LineFramer, LogStream};
use crate::mask::Masker;
use crate::workflow_commands::{Found, Kind, Watcher, WorkflowCommand};

/// What the log and the runner's own log say when a request starts withholding its output.
pub(crate) const WITHHELD_NOTICE: &str =
    "masking capacity reached: a command declared more secrets with ::add-mask:: than one \
     request may have masked (2 MiB of patterns in all their forms), or one line too long to \
     read (128 KiB); the rest of this request's output is withheld from the logs and the \
     response";

/// The captures of one command's output.
#[derive(Debug, Default)]
pub(crate) struct Captures {
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    /// Both streams in the order read (the direktiv-cmd `Output`), when asked for.
    pub(crate) combined: Capture,
    /// The last `::error` line the command printed, on either stream (the last read: lines
    /// written to both streams at nearly the same moment are taken in the order read).
    pub(crate) reported: Option<Reported>,
}

/// What an `::error` line chose: a code (checked) and a message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reported {
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
}

/// The sinks of one command's output.
pub(super) struct CommandOutput<'a> {
    captures: Captures,
    /// `None` for a `silent` command, whose output is not logged.
    framers: Option<[LineFramer; 2]>,
    watchers: [Watcher; 2],
    order: ReadOrder,
    secrets: &'a Masker,
    logs: &'a LogStream,
}

impl<'a> CommandOutput<'a> {
    pub(super) fn new(
        captures: Captures,
        logs: &'a LogStream,
        silent: bool,
        secrets: &'a Masker,
    ) -> Self {
        CommandOutput {
            captures,
            framers: (!silent).then(|| [logs.framer(), logs.framer()]),
            watchers: Default::default(),
            order: ReadOrder::default(),
            secrets,
            logs,
        }
    }

    /// Takes a chunk just read from `stream`, while `other_waiting` bytes waited in the other
    /// pipe. Waits while the logs are full (the command waits with it, on its pipe).
    pub(super) async fn chunk(&mut self, stream: Stream, bytes: &[u8], other_waiting: u64) {
        let capture = match stream {
            Stream::Stdout => &mut self.captures.stdout,
            Stream::Stderr => &mut self.captures.stderr,
        };
        capture.push(bytes);
        self.captures.combined.push(bytes);
        let mut found = Vec::new();
        self.watchers[stream.index()].scan(bytes, &mut found);
        self.apply(found).await;
        let released = self.order.arrive(stream, bytes, other_waiting);
        self.frame(released).await;
    }

    /// `stream` reached its end.
    pub(super) async fn end(&mut self, stream: Stream) {
        let watcher = std::mem::take(&mut self.watchers[stream.index()]);
        let mut found = Vec::new();
        watcher.finish(&mut found);
        self.apply(found).await;
        let released = self.order.end(stream);
        self.frame(released).await;
    }

    /// Reading is over: everything still held is logged, and the last lines without a newline.
    pub(super) async fn finish(mut self) -> Captures {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let watcher = std::mem::take(&mut self.watchers[stream.index()]);
            let mut found = Vec::new();
            watcher.finish(&mut found);
            self.apply(found).await;
        }
        let released = self.order.flush();
        self.frame(released).await;
        if let Some(framers) = self.framers.take() {
            for framer in framers {
                framer.close().await;
            }
        }
        self.captures
    }

    /// Declares what the command declared (saying so once when that is more than can be
    /// masked), and keeps the last `::error` line.
    async fn apply(&mut self, found: Vec<Found>) {
        let mut values = Vec::new();
        let mut unreadable = false;
        for item in found {
            match item {
                Found::Command(WorkflowCommand::Error { code, message }) => {
                    self.captures.reported = Some(self.reported(code, message));
                }
                Found::Command(command) => values.extend(command.declared_values()),
                Found::TooLong(Kind::AddMask) => unreadable = true,
                Found::TooLong(Kind::Error) => self.logs.line(
                    "an ::error line longer than 128 KiB is ignored: it chooses no error code or \
                     message",
                ),
            }
        }
        let newly_withheld = match unreadable {
            true => self.secrets.withhold().await,
            false => false,
        };
        let overflowed = !values.is_empty() && self.secrets.declare(values).await.is_err();
        if newly_withheld || overflowed {
            tracing::warn!("{WITHHELD_NOTICE}");
            self.logs.notice(WITHHELD_NOTICE);
        }
    }

    /// An `::error` line's choice: a code that breaks the rules is ignored, and the log says
    /// why (the log stream masks the line).
    fn reported(&self, code: Option<String>, message: String) -> Reported {
        let code = code.filter(|code| match crate::error::check_chosen_code(code) {
            Ok(()) => true,
            Err(why) => {
                self.logs
                    .line(&format!("::error code '{code}' {why}; it is ignored"));
                false
            }
        });
        Reported {
            code,
            message: (!message.is_empty()).then_some(message),
        }
    }

    async fn frame(&mut self, released: Vec<(Stream, Cow<'_, [u8]>)>) {
        let Some(framers) = self.framers.as_mut() else {
            return;
        };
        for (stream, bytes) in released {
            framers[stream.index()].write(&bytes).await;
        }
    }
}
