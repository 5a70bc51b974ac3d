//! The HTTP side: routes, admission (busy / duplicate / draining), the registry that lets
//! `DELETE /` find a running request, and graceful shutdown.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::cancel::{Cancel, CancelOnDrop};
use crate::config::Config;
use crate::error::{CancelReason, Failure};
use crate::exec::ExecSettings;
use crate::job::{self, JobContext, TempDirChoice};
use crate::logs::LogShipper;
use crate::metrics::METRICS;
use crate::plan::Dialect;
use crate::request;
use crate::response::{self, Reply};

/// The action id Direktiv's SDKs and local tests use; exempt from the duplicate rule.
pub const DEVELOPMENT_ID: &str = "development";

/// State shared by every request.
pub struct App {
    config: Arc<Config>,
    jobs: JobContext,
    registry: Mutex<Registry>,
    /// Woken whenever a request ends (shutdown waits on it).
    changed: Notify,
    draining: AtomicBool,
}

/// The requests running now, by action id.
#[derive(Default)]
struct Registry {
    running: HashMap<String, Vec<Cancel>>,
    count: usize,
}

/// A running request's place in the registry; leaving it (drop) frees the slot.
struct Admission {
    app: Arc<App>,
    action_id: String,
    cancel: Cancel,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut registry) = self.app.registry.lock() {
            if let Some(cancels) = registry.running.get_mut(&self.action_id) {
                cancels.retain(|c| !c.same_as(&self.cancel));
                if cancels.is_empty() {
                    registry.running.remove(&self.action_id);
                }
            }
            registry.count = registry.count.saturating_sub(1);
        }
        METRICS.inflight_requests.dec();
        self.app.changed.notify_waiters();
    }
}

impl App {
    pub fn new(config: Config) -> Arc<Self> {
        let jobs = JobContext {
            settings: ExecSettings::from_config(&config),
            shipper: LogShipper::new(&config.backend, config.dev_mode),
            secrets: config.secret_names.clone(),
        };
        Arc::new(App {
            config: Arc::new(config),
            jobs,
            registry: Mutex::new(Registry::default()),
            changed: Notify::new(),
            draining: AtomicBool::new(false),
        })
    }

    /// Admits a request, in the order the spec gives: draining, duplicate id, in-flight limit.
    fn admit(self: &Arc<Self>, action_id: &str) -> Result<Admission, Failure> {
        let mut registry = self
            .registry
            .lock()
            .map_err(|_| Failure::internal("request registry is unusable"))?;
        if self.draining.load(Ordering::SeqCst) {
            return Err(Failure::Busy {
                conflict: false,
                message: "the runner is shutting down; retry on another instance".into(),
            });
        }
        if action_id != DEVELOPMENT_ID && registry.running.contains_key(action_id) {
            return Err(Failure::Busy {
                conflict: true,
                message: format!("action id '{action_id}' is already running"),
            });
        }
        let limit = self.config.max_inflight as usize;
        if registry.count >= limit {
            return Err(Failure::Busy {
                conflict: false,
                message: format!("{limit} requests are already running (CMD_MAX_INFLIGHT)"),
            });
        }
        let cancel = Cancel::new();
        registry
            .running
            .entry(action_id.to_owned())
            .or_default()
            .push(cancel.clone());
        registry.count += 1;
        METRICS.inflight_requests.inc();
        Ok(Admission {
            app: Arc::clone(self),
            action_id: action_id.to_owned(),
            cancel,
        })
    }

    fn inflight(&self) -> usize {
        self.registry.lock().map(|r| r.count).unwrap_or(0)
    }

    /// Cancels every running request with this action id; returns how many.
    fn cancel(&self, action_id: &str, reason: CancelReason) -> usize {
        let Ok(registry) = self.registry.lock() else {
            return 0;
        };
        let cancels = registry
            .running
            .get(action_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        cancels.iter().for_each(|c| c.cancel(reason));
        cancels.len()
    }

    fn cancel_all(&self, reason: CancelReason) {
        if let Ok(registry) = self.registry.lock() {
            registry
                .running
                .values()
                .flatten()
                .for_each(|c| c.cancel(reason));
        }
    }

    /// Waits until no request runs, or until `limit` passes; true when none runs.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.inflight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inflight() == 0;
            }
        }
    }

    /// SIGTERM: stop taking work, give running requests `CMD_GRACE`, then cancel them and wait
    /// for them to answer.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let running = self.inflight();
        tracing::info!(running, grace = ?self.config.grace, "draining");
        if !self.wait_idle(self.config.grace).await {
            tracing::warn!(
                running = self.inflight(),
                "grace period over; cancelling requests"
            );
            self.cancel_all(CancelReason::Shutdown);
            let limit = self.config.kill_grace + Duration::from_secs(5);
            self.wait_idle(limit).await;
        }
    }

    /// Runs one request through to its rendered reply.
    async fn handle(self: Arc<Self>, headers: HeaderMap, body: Body) -> Reply {
        let key = self.config.result_key.clone();
        let Some(action_id) = header(&headers, "direktiv-actionid").filter(|id| !id.is_empty())
        else {
            let failure = Failure::input(
                "missing Direktiv-ActionID header (use 'development' when calling by hand)",
            );
            return response::render_rejection(&failure, Dialect::Native, &key);
        };
        let admission = match self.admit(&action_id) {
            Ok(admission) => admission,
            Err(failure) => return response::render_rejection(&failure, Dialect::Native, &key),
        };
        let bytes = match axum::body::to_bytes(body, self.config.max_body).await {
            Ok(bytes) => bytes,
            Err(_) => {
                let failure = Failure::input(format!(
                    "the request body could not be read or is larger than CMD_MAX_BODY ({} bytes)",
                    self.config.max_body
                ));
                return response::render_rejection(&failure, Dialect::Native, &key);
            }
        };
        let plan = match request::parse(&bytes) {
            Ok(plan) => plan,
            Err(failure) => {
                return response::render_rejection(&failure, guess_dialect(&bytes), &key);
            }
        };
        let tempdir = match header(&headers, "direktiv-tempdir").filter(|d| !d.is_empty()) {
            Some(dir) => TempDirChoice::Given(PathBuf::from(dir)),
            None => TempDirChoice::Private,
        };

        // The job runs in its own task so that a client disconnect, which drops this future,
        // cannot interrupt clean-up: the guard cancels the job, and the job still stops its
        // processes, removes its files and frees its slot.
        let cancel = admission.cancel.clone();
        let guard = CancelOnDrop::new(cancel.clone());
        let app = Arc::clone(&self);
        // Direktiv-Iterator (the branch of a foreach/parallel state) is log context only.
        let iterator = header(&headers, "direktiv-iterator").unwrap_or_default();
        let span = tracing::info_span!("request", action_id = %action_id, iterator = %iterator);
        let task = tokio::spawn(
            async move {
                let outcome = job::run(&app.jobs, &action_id, tempdir, plan, cancel).await;
                drop(admission);
                outcome
            }
            .instrument(span),
        );
        let reply = match task.await {
            Ok(outcome) => response::render(&outcome, &key),
            Err(error) => response::render_rejection(
                &Failure::internal(format!("the request failed unexpectedly: {error}")),
                Dialect::Native,
                &key,
            ),
        };
        guard.disarm();
        reply
    }
}

/// A header as text (names are matched case-insensitively by the HTTP stack).
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// For a body that failed to parse: answer in the direktiv-cmd dialect when it looks like one.
fn guess_dialect(body: &[u8]) -> Dialect {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) if map.get("data").is_some_and(|d| d.is_object()) => {
            Dialect::DirektivCmd
        }
        _ => Dialect::Native,
    }
}

/// The router with every route of the runner.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", post(run_request).delete(cancel_request))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn run_request(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let reply = app.handle(headers, body).await;
    METRICS.count_request(reply.error.as_ref().map(|(code, _)| code.as_str()));
    reply.into_response()
}

async fn cancel_request(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(action_id) = header(&headers, "direktiv-actionid") {
        let cancelled = app.cancel(&action_id, CancelReason::Delete);
        tracing::info!(action_id = %action_id, cancelled, "cancel request");
    }
    StatusCode::OK.into_response()
}

async fn readiness(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        METRICS.render(),
    )
        .into_response()
}

/// Binds `port` on all addresses: IPv6 dual-stack where the host has IPv6, else IPv4.
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await,
    }
}

/// Serves until SIGTERM/SIGINT, then drains and returns once every response is sent.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let drain_app = Arc::clone(&app);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            drain_app.drain().await;
            tracing::info!("drained; exiting");
        })
        .await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the runner can still be stopped by SIGKILL; never exit here.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Runs one request without HTTP (`direktiv-cmd run`): development mode, logs to stderr.
pub async fn run_local(mut config: Config, body: &[u8]) -> Reply {
    config.dev_mode = true;
    let key = config.result_key.clone();
    let jobs = JobContext {
        settings: ExecSettings::from_config(&config),
        shipper: LogShipper::new(&config.backend, true).with_console(Arc::new(crate::logs::Stderr)),
        secrets: config.secret_names.clone(),
    };
    match request::parse(body) {
        Ok(plan) => {
            let outcome = job::run(
                &jobs,
                DEVELOPMENT_ID,
                TempDirChoice::Private,
                plan,
                Cancel::new(),
            )
            .await;
            response::render(&outcome, &key)
        }
        Err(failure) => response::render_rejection(&failure, guess_dialect(body), &key),
    }
}
