//! The HTTP side: routes, reading a request off the wire, admission, and graceful shutdown.
//! What a request does is the pipeline's (`crate::pipeline`); this module only decides whether
//! it may run, hands it over, and writes the `Reply` back.

mod admission;
mod body;
mod connections;
mod shutdown;
mod write_timeout;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::cancel::CancelOnDrop;
use crate::config::Config;
use crate::direktiv::{
    HEADER_ACTION_ID, HEADER_ERROR_CODE, HEADER_ERROR_MESSAGE, HEADER_ITERATOR, HEADER_TEMP_DIR,
};
use crate::error::{CancelReason, Failure};
use crate::metrics::METRICS;
use crate::pipeline::{self, Context};
use crate::plan::Dialect;
use crate::response::{render_rejection, Reply};
use crate::trace::{TraceContext, HEADER_BAGGAGE, HEADER_TRACEPARENT, HEADER_TRACESTATE};
use crate::workspace::TempDirChoice;
use admission::Admissions;
use body::Bodies;
use connections::Connections;
use shutdown::Drain;

/// State shared by every request.
pub struct App {
    config: Arc<Config>,
    ctx: Context,
    admissions: Arc<Admissions>,
    bodies: Bodies,
    drain: Drain,
}

impl App {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(App {
            ctx: Context::new(&config),
            admissions: Arc::new(Admissions::new(config.max_inflight as usize)),
            bodies: Bodies::new(&config),
            drain: Drain::default(),
            config: Arc::new(config),
        })
    }

    /// SIGTERM: stop taking work, give running requests `CMD_GRACE`, then cancel them and wait
    /// for them to answer.
    async fn drain(&self) {
        let (grace, kill_grace) = (self.config.grace, self.config.kill_grace);
        self.drain.run(&self.admissions, grace, kill_grace).await;
    }

    /// Reads one request's body, admits the request and has the pipeline answer it.
    async fn handle(self: Arc<Self>, headers: HeaderMap, body: Body) -> Answer {
        let key = &self.ctx.result_key;
        let Some(action_id) = header(&headers, HEADER_ACTION_ID).filter(|id| !id.is_empty()) else {
            let failure = Failure::input(
                "missing Direktiv-ActionID header (use 'development' when calling by hand)",
            );
            return Answer::unread(render_rejection(&failure, Dialect::Native, key));
        };
        // The whole body first: a request that is still arriving holds no slot and no action
        // id, however slowly its client sends.
        let (bytes, admitted) = {
            let arrived = match self.bodies.read(body, &self.drain).await {
                Ok(arrived) => arrived,
                Err(failure) => {
                    return Answer::unread(render_rejection(&failure, Dialect::Native, key));
                }
            };
            let admitted = self
                .admissions
                .admit(&action_id, || self.drain.is_draining());
            // Its share of the body budget ends here (dropped with `arrived`): from now on
            // the in-flight limit bounds what the request holds.
            (arrived.bytes, admitted)
        };
        let admission = match admitted {
            Ok(admission) => admission,
            Err(failure) => return Answer::read(render_rejection(&failure, Dialect::Native, key)),
        };
        Answer::read(self.run(headers, action_id, bytes, admission).await)
    }

    /// Runs an admitted request through the pipeline.
    async fn run(
        self: Arc<Self>,
        headers: HeaderMap,
        action_id: String,
        bytes: Bytes,
        admission: admission::Admission,
    ) -> Reply {
        let key = &self.ctx.result_key;
        let tempdir = match header(&headers, HEADER_TEMP_DIR).filter(|d| !d.is_empty()) {
            Some(dir) => TempDirChoice::Given(PathBuf::from(dir)),
            None => TempDirChoice::Private,
        };

        // The request runs in its own task so that a client disconnect, which drops this
        // future, cannot interrupt clean-up: the guard cancels the request, and it still stops
        // its processes, removes its files and frees its slot.
        let cancel = admission.cancel().clone();
        let guard = CancelOnDrop::new(cancel.clone());
        let app = Arc::clone(&self);
        // Direktiv-Iterator (the branch of a foreach/parallel state) is log context only.
        let iterator = header(&headers, HEADER_ITERATOR).unwrap_or_default();
        // The trace id joins the runner's own log lines to the workflow's trace.
        let all = |name| -> Vec<&[u8]> {
            headers
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect()
        };
        let trace = TraceContext::from_headers(
            &all(HEADER_TRACEPARENT),
            &all(HEADER_TRACESTATE),
            &all(HEADER_BAGGAGE),
        );
        let span = tracing::info_span!(
            "request",
            action_id = %action_id,
            iterator = %iterator,
            trace_id = tracing::field::Empty,
        );
        if let Some(trace_id) = trace.trace_id() {
            span.record("trace_id", trace_id);
        }
        let task = tokio::spawn(
            async move {
                let request = pipeline::Request {
                    action_id: &action_id,
                    tempdir,
                    body: &bytes,
                    cancel,
                    trace,
                };
                let reply = pipeline::answer(&app.ctx, request).await;
                drop(admission);
                reply
            }
            .instrument(span),
        );
        let reply = match task.await {
            Ok(reply) => reply,
            Err(error) => render_rejection(
                &Failure::internal(format!("the request failed unexpectedly: {error}")),
                Dialect::Native,
                key,
            ),
        };
        guard.disarm();
        reply
    }
}

/// A reply, and whether the request's body was read to its end.
struct Answer {
    reply: Reply,
    /// False when the reply was decided before the whole body arrived: the connection cannot
    /// carry another request (the rest of the body would be read as one), so it is closed.
    body_read: bool,
}

impl Answer {
    fn read(reply: Reply) -> Self {
        Answer {
            reply,
            body_read: true,
        }
    }

    fn unread(reply: Reply) -> Self {
        Answer {
            reply,
            body_read: false,
        }
    }
}

/// A header as text (names are matched case-insensitively by the HTTP stack).
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some((code, message)) = self.error {
            // Both values are single-line printable text (see `text::one_line`); from_str
            // cannot fail on them, but a header is never worth a panic.
            if let (Ok(code), Ok(message)) = (
                HeaderValue::from_str(&code),
                HeaderValue::from_str(&message),
            ) {
                headers.insert(HEADER_ERROR_CODE, code);
                headers.insert(HEADER_ERROR_MESSAGE, message);
            }
        }
        response
    }
}

/// The router with every route of the runner.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", post(run_request).delete(cancel_request))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn run_request(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let Answer { reply, body_read } = app.handle(headers, body).await;
    METRICS.count_request(reply.error.as_ref().map(|(code, _)| code.as_str()));
    let mut response = reply.into_response();
    if !body_read {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    response
}

async fn cancel_request(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(action_id) = header(&headers, HEADER_ACTION_ID) {
        let cancelled = app.admissions.cancel(&action_id, CancelReason::Delete);
        tracing::info!(action_id = %action_id, cancelled, "cancel request");
    }
    StatusCode::OK.into_response()
}

async fn readiness(State(app): State<Arc<App>>) -> Response {
    if app.drain.is_draining() {
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

/// Serves until SIGTERM/SIGINT, then drains and returns once every response is sent: at the
/// latest `CMD_GRACE` + `CMD_KILL_GRACE` and a few seconds after the signal, whatever clients
/// do with their connections.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    signals: ShutdownSignals,
) -> std::io::Result<()> {
    let open_files = connections::raise_open_file_limit();
    let connections = Connections::new(
        app.config.read_timeout,
        open_files,
        app.config.max_inflight as usize,
    );
    let drain_app = Arc::clone(&app);
    let drained = async move {
        signals.received().await;
        drain_app.drain().await;
        tracing::info!("drained; exiting");
    };
    connections.serve(listener, router(app), drained).await;
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment this is made. Made before the runner says it
/// listens: a signal sent as soon as the runner is up must start a drain, not take the
/// default action (which ends the process with no exit status of its own).
pub struct ShutdownSignals {
    /// `None` when the handlers could not be installed: the runner can then still be stopped
    /// by SIGKILL, and never exits by itself.
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignals {
    /// Installs the handlers (inside the runtime).
    pub fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot catch SIGTERM/SIGINT; stop the runner with SIGKILL");
                None
            }
        };
        ShutdownSignals { streams }
    }

    /// Resolves when SIGTERM or SIGINT arrives.
    async fn received(self) {
        let Some((mut term, mut int)) = self.streams else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
