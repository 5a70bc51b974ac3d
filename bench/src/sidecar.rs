//! A fake Direktiv sidecar log endpoint (`POST /log?aid=<id>`), running inside the harness.
//! It answers after a configurable delay (0 = at once, 50 ms for the slow-sidecar runs) and
//! keeps every message it got per action id, so a run can check which lines arrived, in
//! which order, before the runner answered.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use axum::Router;

use crate::client::Error;

/// The sidecar's shared state.
#[derive(Default)]
struct Shared {
    delay_ms: AtomicU64,
    /// Message bodies per action id, in arrival order.
    messages: Mutex<HashMap<String, Vec<Bytes>>>,
}

/// Handle to the running sidecar.
#[derive(Clone)]
pub struct Sidecar {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Sidecar {
    /// Binds a loopback port and serves on the current runtime.
    pub async fn start() -> Result<Self, Error> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/log", post(log))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, shared })
    }

    /// The value for the runner's `DIREKTIV_HTTP_BACKEND`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every later post is answered only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The lines received so far for `aid` (coalesced posts are split at newlines).
    pub fn lines(&self, aid: &str) -> Vec<String> {
        let messages = self
            .shared
            .messages
            .lock()
            .map(|m| m.get(aid).cloned())
            .ok()
            .flatten();
        messages
            .unwrap_or_default()
            .iter()
            .flat_map(|m| {
                String::from_utf8_lossy(m)
                    .split('\n')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// How many posts arrived for `aid`.
    pub fn posts(&self, aid: &str) -> usize {
        let messages = self.shared.messages.lock();
        messages
            .map(|m| m.get(aid).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    /// Forgets everything received (between load runs, to bound memory).
    pub fn clear(&self) {
        if let Ok(mut messages) = self.shared.messages.lock() {
            messages.clear();
        }
    }
}

/// Serves the fast sidecar until killed, announcing its address on stderr, so the runner can be
/// profiled (perf, strace, callgrind) outside a full run.
pub fn serve() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sidecar = Sidecar::start().await?;
        eprintln!("sidecar listening on {}", sidecar.addr);
        std::future::pending::<()>().await;
        Ok(())
    })
}

async fn log(State(shared): State<Arc<Shared>>, uri: Uri, body: Bytes) -> StatusCode {
    let Some(aid) = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("aid=")))
    else {
        return StatusCode::BAD_REQUEST;
    };
    if let Ok(mut messages) = shared.messages.lock() {
        messages.entry(aid.to_owned()).or_default().push(body);
    }
    let delay = shared.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::OK
}
