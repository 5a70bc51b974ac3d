//! Accepting and serving connections: HTTP/1.1 through hyper's connection builder, for what
//! `axum::serve` cannot do.
//!
//! - A request's headers must arrive within `CMD_READ_TIMEOUT` (hyper's header read timeout).
//!   The same timer runs while a keep-alive connection waits for its next request, so an idle
//!   connection is closed after as long. The body's deadline is `body::read`'s; a response the
//!   client leaves unread for as long ends the connection too (`write_timeout`).
//! - Open connections are capped below the open-file limit, which is raised to the hard limit
//!   at start: at the cap the runner stops accepting and new connections wait in the kernel's
//!   backlog, instead of taking the descriptors a running request needs for its commands.
//! - While the runner drains, connections are served as before, so a client reusing a pooled
//!   connection gets its `cmd.busy` answer rather than a closed socket. Once the drain is
//!   over, every connection stops keeping alive: idle ones close at once, busy ones after
//!   their response. Whatever is still open then carries no request that runs (a client
//!   stalled in its headers, say): it gets [`CLOSE_GRACE`] and is dropped, so no client can
//!   hold the process past its shutdown bound.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::write_timeout::WriteTimeout;

/// After the drain: how long responses still being written get before every connection left
/// is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Descriptors kept out of the connections' reach: the runner's own (listener, log client,
/// runtime) and, per request that may run, its commands' pipes, pidfds and files.
const RESERVED_BASE: usize = 64;
const RESERVED_PER_REQUEST: usize = 32;

/// The most connections open at once. The sidecar needs about one per concurrent request plus
/// its keep-alive pool; each connection costs buffers and a task, so there is no point in
/// thousands more even where the open-file limit allows them.
const MAX_CONNECTIONS: usize = 4096;
/// The fewest, however low the open-file limit.
const MIN_CONNECTIONS: usize = 16;

/// A pause after an accept error caused by exhausted resources: the listener stays readable,
/// so retrying at once would spin until a descriptor comes back.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Accept errors are logged at most this often: under a flood each would be one line.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The open connections and the rules they live by.
pub(crate) struct Connections {
    /// `CMD_READ_TIMEOUT`, for headers, idle keep-alive connections and unread responses.
    read_timeout: Duration,
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
    max: u32,
    /// Cancelled once the drain is over: connections stop keeping alive.
    stopping: CancellationToken,
    /// Cancelled once the drain is over and `CLOSE_GRACE` passed: connections are dropped.
    closing: CancellationToken,
}

impl Connections {
    /// Connections for a runner whose open-file limit is `open_files` and that runs up to
    /// `max_inflight` requests at once.
    pub(crate) fn new(read_timeout: Duration, open_files: u64, max_inflight: usize) -> Self {
        let max = connection_cap(open_files, max_inflight);
        tracing::debug!(max, open_files, "connection limit");
        Connections {
            read_timeout,
            slots: Arc::new(Semaphore::new(max)),
            // At most MAX_CONNECTIONS, so it fits.
            max: u32::try_from(max).unwrap_or(u32::MAX),
            stopping: CancellationToken::new(),
            closing: CancellationToken::new(),
        }
    }

    /// Serves `router` on every connection from `listener` until `drained` resolves (shutdown
    /// began and no request runs any more); then closes what is left.
    pub(crate) async fn serve(
        &self,
        listener: TcpListener,
        router: Router,
        drained: impl Future<Output = ()>,
    ) {
        tokio::pin!(drained);
        let mut errors = AcceptErrors::default();
        loop {
            tokio::select! {
                () = &mut drained => break,
                (tcp, slot) = self.accept(&listener, &mut errors) => {
                    self.spawn(tcp, slot, router.clone());
                }
            }
        }
        // No new connection from here on; nothing runs. Responses still on their way out
        // get CLOSE_GRACE, then the rest is dropped.
        drop(listener);
        self.stopping.cancel();
        let all_closed = self.slots.acquire_many(self.max);
        if tokio::time::timeout(CLOSE_GRACE, all_closed).await.is_err() {
            tracing::info!(
                open = self.max as usize - self.slots.available_permits(),
                "closing connections that carry no request"
            );
        }
        self.closing.cancel();
    }

    /// The next connection, once one may be open.
    async fn accept(
        &self,
        listener: &TcpListener,
        errors: &mut AcceptErrors,
    ) -> (TcpStream, OwnedSemaphorePermit) {
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            // The semaphore is never closed; without a slot, accept nothing.
            return std::future::pending().await;
        };
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => return (tcp, slot),
                Err(error) => errors.handle(error).await,
            }
        }
    }

    /// Serves one connection in its own task, holding `slot` until it closes.
    fn spawn(&self, tcp: TcpStream, slot: OwnedSemaphorePermit, router: Router) {
        // Replies are written in one go; no reason to wait for more data (Nagle).
        let _ = tcp.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.read_timeout)
            .keep_alive(true);
        let (stopping, closing) = (self.stopping.clone(), self.closing.clone());
        let read_timeout = self.read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(router);
            let io = TokioIo::new(WriteTimeout::new(tcp, read_timeout));
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            // Errors here are the client's (a reset, a header timeout): nothing to report.
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stopping.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                _ = connection.as_mut() => {}
                () = closing.cancelled() => {}
            }
        });
    }
}

/// How many connections may be open: what the open-file limit leaves after the runner's and
/// its requests' own needs, within [`MIN_CONNECTIONS`]..=[`MAX_CONNECTIONS`].
fn connection_cap(open_files: u64, max_inflight: usize) -> usize {
    let reserved = RESERVED_PER_REQUEST
        .saturating_mul(max_inflight)
        .saturating_add(RESERVED_BASE);
    usize::try_from(open_files)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// Failed accepts: most are about one connection (reset before it was taken) and harmless;
/// exhausted resources (descriptors, memory) need a pause and a word in the log.
#[derive(Default)]
struct AcceptErrors {
    last_warning: Option<Instant>,
}

impl AcceptErrors {
    async fn handle(&mut self, error: std::io::Error) {
        let exhausted = matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !exhausted {
            tracing::debug!(%error, "a connection failed before it was accepted");
            return;
        }
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= ACCEPT_WARNING_EVERY)
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(%error, "cannot accept connections for now; retrying");
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

/// Raises the soft open-file limit to the hard one, so idle connections cannot starve the
/// runner at the default soft limit of 1024; returns the soft limit in force afterwards.
pub(crate) fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft >= hard {
        return soft;
    }
    // An unlimited hard limit is still bounded by the kernel's fs.nr_open (2^20 by default).
    for target in [hard, hard.min(1 << 20)] {
        let raised = Rlimit {
            current: (target != u64::MAX).then_some(target),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            tracing::debug!(from = soft, to = target, "raised the open-file limit");
            return target;
        }
    }
    tracing::warn!(soft, hard, "cannot raise the open-file limit");
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_descriptors_for_requests() {
        // 1024 - 64 - 10 * 32
        assert_eq!(connection_cap(1024, 10), 640);
        assert_eq!(connection_cap(4096, 10), 3712);
        assert_eq!(connection_cap(1 << 20, 10), MAX_CONNECTIONS);
        assert_eq!(connection_cap(u64::MAX, usize::MAX), MIN_CONNECTIONS);
        assert_eq!(connection_cap(100, 10), MIN_CONNECTIONS);
    }
}
