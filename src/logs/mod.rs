//! Shipping command output to the sidecar's log endpoint (`POST <backend>/log?aid=<id>`).
//!
//! The pieces the rest of the runner uses:
//! - `LogShipper`: one per process, cheap to clone; owns the keep-alive HTTP client.
//! - `LogShipper::open_with_delivery(action_id, masker)` -> (`LogStream`, `Delivery`): one per
//!   request.
//! - `LogStream::line(text)`: one already-complete message (e.g. `running command '...'`).
//! - `LogStream::framer()` -> `LineFramer`: one per pipe (stdout, stderr); `write(bytes).await`
//!   takes raw pipe reads, `close().await` flushes a last line without newline.
//! - `Delivery::start()` -> `Delivered`: the delivery runs on the log delivery thread
//!   (`thread`), away from the request's work, from the first message queued on (so that one
//!   wake-up of that thread brings both); `Delivered::finished().await` returns once every
//!   clone of the stream is dropped and every queued line is delivered (or given up).
//!
//! Inside: `framer` cuts pipe bytes into masked lines, `queue` holds them (bounded, joined into
//! as few POST bodies as possible), and the `sender` of each request drains the queue in order
//! to the sidecar, or to stdout in development mode or once the sidecar stopped answering.
//!
//! The stream is a sink that masks: every line given to it, by the framer or as a message of
//! the runner's, is masked with the request's secrets as they are when it is queued.

mod console;
mod endpoint;
mod framer;
mod queue;
mod sender;
#[cfg(test)]
mod tests;
mod thread;

use std::sync::Arc;

use crate::direktiv::is_development;
use crate::mask::Masker;

pub use console::{Console, Stderr, Stdout};
pub use framer::LineFramer;
pub use thread::Delivered;

use endpoint::Endpoint;
use queue::{Batch, Queue};
use sender::{Destination, Sender};

/// The process-wide log client.
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<ShipperInner>,
}

/// What every request's log stream shares.
struct ShipperInner {
    /// `<backend>/log` and its client; `None` if the backend is not a URL (output then goes
    /// to stdout). Each request adds its `aid`.
    endpoint: Option<Arc<Endpoint>>,
    /// Development mode for every request (`DIREKTIV_DEV_MODE`).
    dev_mode: bool,
    /// Where development-mode and fallback lines go.
    console: Arc<dyn Console>,
}

impl LogShipper {
    /// A shipper posting to `backend` (the sidecar's base URL), or writing to stdout for every
    /// request when `dev_mode` is set.
    pub fn new(backend: &str, dev_mode: bool) -> Self {
        let endpoint = Endpoint::new(backend)
            .inspect_err(|error| {
                tracing::error!(%backend, %error, "invalid sidecar URL; output goes to stdout")
            })
            .ok()
            .map(Arc::new);
        LogShipper {
            inner: Arc::new(ShipperInner {
                endpoint,
                dev_mode,
                console: Arc::new(Stdout),
            }),
        }
    }

    /// The same shipper writing development-mode and fallback lines to `console` instead of
    /// stdout.
    pub fn with_console(self, console: Arc<dyn Console>) -> Self {
        LogShipper {
            inner: Arc::new(ShipperInner {
                endpoint: self.inner.endpoint.clone(),
                dev_mode: self.inner.dev_mode,
                console,
            }),
        }
    }

    /// Opens the log stream of one request and returns it with its delivery, to be started
    /// (`Delivery::start`); it ends once every clone of the stream is dropped and every queued
    /// line is delivered or given up.
    pub fn open_with_delivery(
        &self,
        action_id: &str,
        masker: Arc<Masker>,
    ) -> (LogStream, Delivery) {
        let queue = Arc::new(Queue::default());
        let sender = Sender {
            queue: queue.clone(),
            destination: self.destination(action_id),
            console: self.inner.console.clone(),
            prefix: format!("[{action_id}] ").into_bytes(),
        };
        let stream = LogStream {
            handle: Arc::new(Handle { queue, masker }),
        };
        (stream, Delivery(sender))
    }

    /// Where one request's lines go.
    fn destination(&self, action_id: &str) -> Destination {
        if self.inner.dev_mode || is_development(action_id) {
            return Destination::Console;
        }
        let Some(endpoint) = &self.inner.endpoint else {
            return Destination::Unreachable;
        };
        match endpoint.uri_for(action_id) {
            Ok(uri) => Destination::Http {
                endpoint: endpoint.clone(),
                uri,
            },
            Err(error) => {
                tracing::error!(%error, "this request's output goes to stdout");
                Destination::Unreachable
            }
        }
    }
}

/// The sending side of one request's log stream: a future to drive to its end.
pub struct Delivery(Sender);

impl Delivery {
    /// Delivers every line, in order, until the stream is closed and its queue is empty.
    pub async fn run(self) {
        self.0.run().await;
    }

    /// Runs the delivery on the log delivery thread, from the first message queued on: one
    /// wake-up of that thread brings the delivery and its first message.
    pub fn start(self) -> Delivered {
        let queue = Arc::clone(&self.0.queue);
        let started = Arc::new(std::sync::Mutex::new(None));
        let slot = Arc::clone(&started);
        // The request's span, not that of whatever queues the first message.
        let span = tracing::Span::current();
        queue.start_with(Box::new(move || {
            let _request = span.enter();
            *crate::sync::lock(&slot) = Some(thread::spawn(self.run()));
        }));
        Delivered::Deferred { queue, started }
    }
}

/// The log stream of one request. Clones share the same ordered queue.
#[derive(Clone)]
pub struct LogStream {
    handle: Arc<Handle>,
}

/// One request's queue and what its writers need; dropping the last one lets the sender finish.
struct Handle {
    queue: Arc<Queue>,
    masker: Arc<Masker>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The sender still delivers what is queued, then stops.
        self.queue.close();
    }
}

impl LogStream {
    /// Queues one complete message (masked). It does not wait for room in the queue: the
    /// runner's own messages are few and short.
    pub fn line(&self, text: &str) {
        let masked = self.handle.masker.mask(text);
        let mut batch = Batch::with_size_hint(masked.len());
        framer::push_pieces(&masked, &mut batch);
        self.handle.queue.push_now(batch);
    }

    /// Queues a fixed message of the runner's, which holds no request data: shown as it is,
    /// also while the request withholds its output.
    pub fn notice(&self, text: &'static str) {
        let mut batch = Batch::with_size_hint(text.len());
        framer::push_pieces(text, &mut batch);
        self.handle.queue.push_now(batch);
    }

    /// A framer for one output pipe.
    pub fn framer(&self) -> LineFramer {
        LineFramer::new(self.clone())
    }

    fn masker(&self) -> &Masker {
        &self.handle.masker
    }

    fn queue(&self) -> &Queue {
        &self.handle.queue
    }
}
