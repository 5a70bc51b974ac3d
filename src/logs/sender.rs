//! The task that drains one request's queue, in order, to the sidecar or to stdout.
//!
//! Exactly one sender runs per request, so messages leave in the order they were queued. While
//! it waits on the endpoint, new lines pile up in the queue and leave together in the next POST.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;

use crate::metrics::METRICS;

use super::console::Console;
use super::endpoint::{Endpoint, PostError};
use super::queue::{Message, Queue};

/// Pauses between tries of one failed POST: about a second in all, then the endpoint counts as
/// down for this request.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(600),
];

/// No retry starts later than this after the first try of a message, so a hanging endpoint
/// (each try ending in the client's timeout) does not hold the response for long either.
const RETRY_WINDOW: Duration = Duration::from_secs(2);

/// Where a request's lines go.
pub(crate) enum Destination {
    /// Development mode: stdout, as they are.
    Console,
    /// The sidecar's log endpoint (`<backend>/log?aid=<action id>`).
    Http { endpoint: Arc<Endpoint>, uri: Uri },
    /// No usable endpoint (the URL could not be built): stdout with the action id prefix.
    Unreachable,
}

/// The delivery of one request's lines.
pub(crate) struct Sender {
    pub(crate) queue: Arc<Queue>,
    pub(crate) destination: Destination,
    pub(crate) console: Arc<dyn Console>,
    /// `[<action id>] `, put before lines that fall back to stdout.
    pub(crate) prefix: Vec<u8>,
}

impl Sender {
    /// Delivers every message until the queue is closed and empty.
    pub(crate) async fn run(self) {
        let Sender {
            queue,
            destination,
            console,
            prefix,
        } = self;
        let mut endpoint_down = matches!(destination, Destination::Unreachable);
        while let Some(message) = queue.next().await {
            let lines = message.lines;
            match &destination {
                Destination::Console => write_raw(&console, message.body).await,
                Destination::Http { endpoint, uri } if !endpoint_down => {
                    if let Err(failed) = post_message(endpoint, uri, message).await {
                        endpoint_down = true;
                        write_prefixed(&console, &prefix, &failed, lines).await;
                    }
                }
                _ => write_prefixed(&console, &prefix, &message.body, lines).await,
            }
        }
    }
}

/// POSTs one message with retries; gives the body back when the endpoint did not take it.
async fn post_message(endpoint: &Endpoint, uri: &Uri, message: Message) -> Result<(), Bytes> {
    let lines = message.lines;
    let body = Bytes::from(message.body);
    match post_with_retries(endpoint, uri, &body).await {
        Ok(()) => {
            METRICS.log_lines.inc_by(lines);
            METRICS.log_bytes.inc_by(body.len() as u64);
            if lines > 1 {
                METRICS.log_posts_coalesced.inc();
            }
            Ok(())
        }
        Err(PostError::NoAnswer(error)) => {
            // Said of the sidecar once, not of every request.
            endpoint.note_silent(&error);
            Err(body)
        }
        Err(PostError::Refused(error)) => {
            tracing::warn!(
                url = %uri,
                %error,
                "the log endpoint did not take this request's output; \
                 its remaining lines go to stdout"
            );
            Err(body)
        }
    }
}

/// Tries a POST until it succeeds or the backoff schedule is used up. While the sidecar is
/// known to be silent a message gets one try: a request does not wait a second for a sidecar
/// that earlier requests found absent, and the first answer ends that state.
async fn post_with_retries(endpoint: &Endpoint, uri: &Uri, body: &Bytes) -> Result<(), PostError> {
    let started = Instant::now();
    let mut pauses = BACKOFF.iter();
    let mut retry = endpoint.answering();
    loop {
        METRICS.log_posts.inc();
        let error = match endpoint.post(uri, body.clone()).await {
            Ok(()) => {
                endpoint.note_answer();
                return Ok(());
            }
            Err(error) => error,
        };
        METRICS.log_post_failures.inc();
        if let PostError::Refused(_) = error {
            // An answer, if not the one wanted: the sidecar is there.
            endpoint.note_answer();
            retry = true;
        }
        if !retry {
            return Err(error);
        }
        match pauses.next() {
            // Saturating: a sum of two short durations, but no addition here may panic.
            Some(pause) if started.elapsed().saturating_add(*pause) < RETRY_WINDOW => {
                tokio::time::sleep(*pause).await;
            }
            _ => return Err(error),
        }
    }
}

/// Development mode: the lines as they are.
async fn write_raw(console: &Arc<dyn Console>, mut body: Vec<u8>) {
    body.push(b'\n');
    write_console(console, body).await;
}

/// Fallback: every line with the action id in front, so the pod log tells requests apart.
async fn write_prefixed(console: &Arc<dyn Console>, prefix: &[u8], body: &[u8], lines: u64) {
    let mut out = Vec::with_capacity(body.len() + (prefix.len() + 1) * lines as usize);
    for line in body.split(|&byte| byte == b'\n') {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    METRICS.log_lines_to_stdout.inc_by(lines);
    write_console(console, out).await;
}

/// Writes off the async workers: the console may wait (about a second at most) for a slow
/// reader of stdout.
async fn write_console(console: &Arc<dyn Console>, bytes: Vec<u8>) {
    let console = console.clone();
    // A panicking console loses these lines only; the request carries on.
    let _ = tokio::task::spawn_blocking(move || console.write_lines(bytes)).await;
}
