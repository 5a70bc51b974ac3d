//! A stand-in for Direktiv's sidecar: for the container tests, and as the sidecar of a local
//! pod (`make dev-pod`) where a function author sees what Direktiv would see.
//!
//! Two listeners, like the two sides of the real sidecar:
//! - `127.0.0.1:8889` (loopback only, as Direktiv's): `POST /log?aid=<id>` records the body
//!   (and with `--print` prints it as it arrives); `/var?aid=&scope=&key=` reads and writes
//!   variables kept as files, answering as Direktiv v0.10's sidecar does (`vars.rs`). Because
//!   it is bound to loopback, a recorded line proves the runner reached it through the shared
//!   pod network namespace.
//! - `0.0.0.0:8890` (the side Direktiv calls the function through): `POST /` takes an action's
//!   input and calls the runner as Direktiv does (`action.rs`); for the tests,
//!   `GET /logs?aid=<id>` returns the recorded bodies as a JSON array of strings, in order, and
//!   `POST /prepare?aid=<id>` creates `<shared>/<id>` (0750) and its `out/*` folders (0777) as
//!   the sidecar does before it calls the function, and answers with the path.
//!
//! In the image it runs as uid 65532 like Direktiv's sidecar since v0.8.8, so the directories it
//! makes have the ownership the runner meets in a real pod.

mod action;
mod options;
mod vars;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::routing::{any, get, post};
use axum::Router;
use serde::Deserialize;

use options::Options;

/// What both listeners share.
pub(crate) struct Pod {
    options: Options,
    /// Log bodies by action id, in arrival order.
    logs: Mutex<HashMap<String, Vec<String>>>,
    /// Action ids of calls made through `POST /` that are still running: the only ones whose
    /// variables `/var` serves, as in Direktiv.
    in_flight: Mutex<HashSet<String>>,
}

impl Pod {
    fn logs(&self) -> MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.logs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn in_flight(&self) -> MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Prints a line of the pod's own (in `--print` mode), whole, as one write.
    pub(crate) fn say(&self, text: &str) {
        if self.options.print {
            print_now(text);
        }
    }
}

/// Prints `text` and a newline at once: lines of concurrent requests never interleave.
pub(crate) fn print_now(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

#[derive(Deserialize)]
struct Aid {
    aid: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("direktiv-cmd-test-sidecar: {message}\n{}", options::USAGE);
            std::process::exit(2);
        }
    };
    let pod = Arc::new(Pod {
        options,
        logs: Mutex::default(),
        in_flight: Mutex::default(),
    });
    let local_routes = Router::new()
        .route("/log", post(record))
        .route("/var", any(vars::handle))
        .with_state(pod.clone());
    let network_routes = Router::new()
        .route("/", post(action::call))
        .route("/logs", get(recorded))
        .route("/prepare", post(prepare))
        .with_state(pod.clone());

    let local =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], pod.options.log_port)))
            .await?;
    let network =
        tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], pod.options.front_port)))
            .await?;
    print_now(&format!(
        "test sidecar listening on {} (log, var) and {} (calls to the function); runner {}",
        local.local_addr()?,
        network.local_addr()?,
        pod.options.runner
    ));

    let local_server = axum::serve(local, local_routes);
    let network_server = axum::serve(network, network_routes);
    tokio::select! {
        result = local_server => result,
        result = network_server => result,
        _ = terminated() => Ok(()),
    }
}

/// Resolves on SIGTERM or SIGINT, so that `docker stop` ends the sidecar at once (it is PID 1).
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `POST /log`: one instance-log entry per post, as in Direktiv.
async fn record(State(pod): State<Arc<Pod>>, Query(q): Query<Aid>, body: Bytes) -> StatusCode {
    let message = String::from_utf8_lossy(&body).into_owned();
    if pod.options.print && !message.is_empty() {
        // A post that holds several lines (the runner coalesces lines a slow sidecar could
        // not take one by one) is still one entry: its lines are printed under one prefix.
        let note = match pod.in_flight().contains(&q.aid) {
            true => "",
            false => "  (no call in flight has this action id: Direktiv would not log it)",
        };
        let prefix = format!("[{}] ", q.aid);
        let indent = " ".repeat(prefix.len());
        print_now(&format!(
            "{prefix}{}{note}",
            message.replace('\n', &format!("\n{indent}"))
        ));
    }
    pod.logs().entry(q.aid).or_default().push(message);
    StatusCode::OK
}

/// `GET /logs`: what `/log` recorded for an action id.
async fn recorded(
    State(pod): State<Arc<Pod>>,
    Query(q): Query<Aid>,
) -> Result<([(header::HeaderName, &'static str); 1], String), StatusCode> {
    let lines = pod.logs().get(&q.aid).cloned().unwrap_or_default();
    let body = serde_json::to_string(&lines).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `POST /prepare`: the action's folder, as the sidecar makes it before a call.
async fn prepare(
    State(pod): State<Arc<Pod>>,
    Query(q): Query<Aid>,
) -> Result<String, (StatusCode, String)> {
    if q.aid.is_empty() || q.aid.contains('/') || q.aid.starts_with('.') {
        return Err((StatusCode::BAD_REQUEST, "bad action id".to_string()));
    }
    let dir = pod.options.shared.join(&q.aid);
    make_action_dir(&dir).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(dir.display().to_string())
}

/// `<shared>/<aid>` (0750) with `out/namespace`, `out/workflow` and `out/instance` (0777).
pub(crate) fn make_action_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new().mode(0o750).create(dir)?;
    // The mode given to mkdir is reduced by the umask; Direktiv's result is 0750 either way.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    for scope in vars::SCOPES {
        let out = dir.join("out").join(scope);
        std::fs::create_dir_all(&out)?;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(dir.to_path_buf())
}
