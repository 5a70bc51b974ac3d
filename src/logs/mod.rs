//! Shipping command output to the sidecar's log endpoint (`POST <backend>/log?aid=<id>`).
//!
//! The pieces the rest of the runner uses:
//! - `LogShipper`: one per process, cheap to clone; owns the keep-alive HTTP client.
//! - `LogShipper::open(action_id, masker)` -> `LogStream`: one per request.
//! - `LogStream::line(text)`: one already-complete message (e.g. `running command '...'`).
//! - `LogStream::framer()` -> `LineFramer`: one per pipe (stdout, stderr); `write(bytes).await`
//!   takes raw pipe reads, `close().await` flushes a last line without newline.
//! - `LogStream::finish().await`: every queued line delivered (or given up) before it returns.
//!
//! Inside: `framer` cuts pipe bytes into masked lines, `queue` holds them (bounded, joined into
//! as few POST bodies as possible), and one `sender` task per request drains the queue in order
//! to the sidecar, or to stdout in development mode or once the sidecar stopped answering.

mod console;
mod framer;
mod queue;
mod sender;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::direktiv::is_development;
use crate::mask::Masker;

pub use console::{Console, Stderr, Stdout};
pub use framer::LineFramer;

use queue::{Batch, Queue};
use sender::{Destination, Sender};

/// The sidecar is on the same host; it answers in milliseconds or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for one POST (a 4 MiB message relayed by the sidecar included).
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The process-wide log client.
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<ShipperInner>,
}

/// What every request's log stream shares.
struct ShipperInner {
    /// `<backend>/log`, parsed once; `None` if the backend is not a URL (output then goes to
    /// stdout). Each request adds its `aid`.
    log_url: Option<reqwest::Url>,
    /// Development mode for every request (`DIREKTIV_DEV_MODE`).
    dev_mode: bool,
    /// `None` only if the client could not be built; output then goes to stdout.
    client: Option<reqwest::Client>,
    /// Where development-mode and fallback lines go.
    console: Arc<dyn Console>,
}

impl LogShipper {
    /// A shipper posting to `backend` (the sidecar's base URL), or writing to stdout for every
    /// request when `dev_mode` is set.
    pub fn new(backend: &str, dev_mode: bool) -> Self {
        let client = build_client()
            .inspect_err(|error| {
                tracing::error!(%error, "cannot build the log client; output goes to stdout")
            })
            .ok();
        let log_url = format!("{}/log", backend.trim_end_matches('/'));
        let log_url = reqwest::Url::parse(&log_url)
            .inspect_err(|error| {
                tracing::error!(%backend, %error, "invalid sidecar URL; output goes to stdout")
            })
            .ok();
        LogShipper {
            inner: Arc::new(ShipperInner {
                log_url,
                dev_mode,
                client,
                console: Arc::new(Stdout),
            }),
        }
    }

    /// The same shipper writing development-mode and fallback lines to `console` instead of
    /// stdout.
    pub fn with_console(self, console: Arc<dyn Console>) -> Self {
        LogShipper {
            inner: Arc::new(ShipperInner {
                log_url: self.inner.log_url.clone(),
                dev_mode: self.inner.dev_mode,
                client: self.inner.client.clone(),
                console,
            }),
        }
    }

    /// Opens the log stream of one request and starts its sender task (so it must be called
    /// inside the tokio runtime).
    pub fn open(&self, action_id: &str, masker: Arc<Masker>) -> LogStream {
        let queue = Arc::new(Queue::default());
        let (handled, handled_rx) = watch::channel(0);
        let sender = Sender {
            queue: queue.clone(),
            destination: self.destination(action_id),
            console: self.inner.console.clone(),
            prefix: format!("[{action_id}] ").into_bytes(),
            handled,
        };
        tokio::spawn(sender.run());
        LogStream {
            handle: Arc::new(Handle {
                queue,
                masker,
                handled: handled_rx,
            }),
        }
    }

    /// Where one request's lines go.
    fn destination(&self, action_id: &str) -> Destination {
        if self.inner.dev_mode || is_development(action_id) {
            return Destination::Console;
        }
        match (&self.inner.client, &self.inner.log_url) {
            (Some(client), Some(url)) => {
                let mut url = url.clone();
                url.query_pairs_mut().append_pair("aid", action_id);
                Destination::Http {
                    client: client.clone(),
                    url,
                }
            }
            _ => Destination::Unreachable,
        }
    }
}

/// The one HTTP client of the log shipper.
fn build_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        // Direktiv sets HTTP_PROXY in user containers; the sidecar is local and must not be
        // reached through it.
        .no_proxy()
        // `localhost` without /etc/hosts or NSS (scratch and distroless images). Port 0 here:
        // reqwest keeps the port written in the URL.
        .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(POST_TIMEOUT)
        .tcp_nodelay(true)
        .build()
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
    /// Lines the sender has handled.
    handled: watch::Receiver<u64>,
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

    /// A framer for one output pipe.
    pub fn framer(&self) -> LineFramer {
        LineFramer::new(self.clone())
    }

    /// Waits until every line queued so far is delivered or given up.
    pub async fn finish(self) {
        let target = self.handle.queue.appended();
        let mut handled = self.handle.handled.clone();
        // An error means the sender is gone, so nothing is left to wait for.
        let _ = handled.wait_for(|count| *count >= target).await;
    }

    fn masker(&self) -> &Masker {
        &self.handle.masker
    }

    fn queue(&self) -> &Queue {
        &self.handle.queue
    }
}
