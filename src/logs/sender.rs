//! The task that drains one request's queue, in order, to the sidecar or to stdout.
//!
//! Exactly one sender runs per request, so messages leave in the order they were queued. While
//! it waits on the endpoint, new lines pile up in the queue and leave together in the next POST.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::watch;

use crate::metrics::METRICS;

use super::console::Console;
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
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
    },
    /// No usable endpoint (the URL could not be built): stdout with the action id prefix.
    Unreachable,
}

/// The per-request delivery task.
pub(crate) struct Sender {
    pub(crate) queue: Arc<Queue>,
    pub(crate) destination: Destination,
    pub(crate) console: Arc<dyn Console>,
    /// `[<action id>] `, put before lines that fall back to stdout.
    pub(crate) prefix: Vec<u8>,
    /// Lines handled (delivered or given up) so far; `finish` waits on it.
    pub(crate) handled: watch::Sender<u64>,
}

impl Sender {
    /// Delivers every message until the queue is closed and empty.
    pub(crate) async fn run(self) {
        let Sender {
            queue,
            destination,
            console,
            prefix,
            handled,
        } = self;
        let mut endpoint_down = matches!(destination, Destination::Unreachable);
        while let Some(message) = queue.next().await {
            let lines = message.lines;
            match &destination {
                Destination::Console => write_raw(&console, message.body).await,
                Destination::Http { client, url } if !endpoint_down => {
                    if let Err(failed) = post_message(client, url, message).await {
                        endpoint_down = true;
                        write_prefixed(&console, &prefix, &failed, lines).await;
                    }
                }
                _ => write_prefixed(&console, &prefix, &message.body, lines).await,
            }
            handled.send_modify(|count| *count += lines);
        }
    }
}

/// POSTs one message with retries; gives the body back when the endpoint did not take it.
async fn post_message(
    client: &reqwest::Client,
    url: &reqwest::Url,
    message: Message,
) -> Result<(), Bytes> {
    let lines = message.lines;
    let body = Bytes::from(message.body);
    match post_with_retries(client, url, &body).await {
        Ok(()) => {
            METRICS.log_lines.inc_by(lines);
            METRICS.log_bytes.inc_by(body.len() as u64);
            if lines > 1 {
                METRICS.log_posts_coalesced.inc();
            }
            Ok(())
        }
        Err(error) => {
            tracing::warn!(
                url = %url,
                %error,
                "the log endpoint did not take this request's output; \
                 its remaining lines go to stdout"
            );
            Err(body)
        }
    }
}

/// Tries a POST until it succeeds or the backoff schedule is used up.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: &Bytes,
) -> Result<(), String> {
    let started = Instant::now();
    let mut pauses = BACKOFF.iter();
    loop {
        METRICS.log_posts.inc();
        let error = match post(client, url, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        METRICS.log_post_failures.inc();
        match pauses.next() {
            // Saturating: a sum of two short durations, but no addition here may panic.
            Some(pause) if started.elapsed().saturating_add(*pause) < RETRY_WINDOW => {
                tokio::time::sleep(*pause).await;
            }
            _ => return Err(error),
        }
    }
}

/// One POST; any answer but 2xx is a failure.
async fn post(client: &reqwest::Client, url: &reqwest::Url, body: Bytes) -> Result<(), String> {
    let response = client
        .post(url.clone())
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|error| error_chain(&error))?;
    let status = response.status();
    // Reading the (short) answer to its end lets the connection go back to the pool.
    let _ = response.bytes().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
