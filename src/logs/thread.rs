//! The log delivery thread: every request's `Sender` runs here, on a single-threaded runtime of
//! its own, with the connections to the sidecar.
//!
//! The sidecar must get its answers in time (a POST that waits too long counts as failed, and a
//! request whose posts fail falls back to stdout). On the request's own worker, delivery would
//! wait whenever that worker is busy with the request's work: masking a large output, building
//! an automaton. Here it waits for nothing but the sidecar; the request's work slows only its
//! own command, through the bounded queue (backpressure), and never loses a line.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::{Builder, Handle};
use tracing::Instrument;

use super::queue::Queue;

/// The delivery thread's runtime, started with the first request.
fn runtime() -> Option<&'static Handle> {
    static HANDLE: OnceLock<Option<Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let runtime = Builder::new_current_thread()
                .enable_all()
                .thread_name("log-delivery")
                .build()
                .inspect_err(|error| {
                    tracing::error!(%error, "no log delivery thread; lines leave from requests")
                })
                .ok()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("log-delivery".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .inspect_err(|error| {
                    tracing::error!(%error, "no log delivery thread; lines leave from requests")
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Runs `delivery` on the delivery thread (in the caller's span) and returns a future that ends
/// with it. Where that thread could not be started, the future runs the delivery itself.
pub(super) fn spawn(delivery: impl Future<Output = ()> + Send + 'static) -> Delivered {
    let delivery = delivery.instrument(tracing::Span::current());
    match runtime() {
        Some(handle) => Delivered::Spawned(handle.spawn(delivery)),
        None => Delivered::Inline(Box::pin(delivery)),
    }
}

/// A delivery under way; awaiting it waits until every line is delivered or given up.
pub enum Delivered {
    Spawned(tokio::task::JoinHandle<()>),
    Inline(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Started by its queue's first message (`Queue::start_with`), into the slot.
    Deferred {
        queue: Arc<Queue>,
        started: Arc<Mutex<Option<Delivered>>>,
    },
}

impl Delivered {
    /// Waits for the delivery to end.
    pub async fn finished(self) {
        match self {
            Delivered::Deferred { queue, started } => {
                // A stream still open may queue more: its sender must run, and be waited for.
                queue.start_now();
                let delivery = crate::sync::lock(&started).take();
                // Every line out already (the usual end of a short command, whose lines left
                // while it ran): waiting for the sender to notice the close would only add
                // two hand-overs between threads to the response. It ends on its own.
                if queue.is_drained() {
                    return;
                }
                if let Some(delivery) = delivery {
                    Box::pin(delivery.finished()).await;
                }
            }
            Delivered::Spawned(task) => {
                if let Err(error) = task.await {
                    tracing::error!(%error, "the log delivery of a request failed");
                }
            }
            Delivered::Inline(delivery) => delivery.await,
        }
    }
}
