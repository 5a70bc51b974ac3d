//! Fake Direktiv sidecar for the container tests.
//!
//! Two listeners, like the two sides of the real sidecar:
//! - `127.0.0.1:8889` (loopback only, as Direktiv's): `POST /log?aid=<id>` records the body.
//!   Because it is bound to loopback, a recorded line proves the runner reached it through the
//!   shared pod network namespace.
//! - `0.0.0.0:8890` (control, for the test on the host):
//!   `GET /logs?aid=<id>` returns the recorded bodies as a JSON array of strings, in order;
//!   `POST /prepare?aid=<id>` creates `/mnt/shared/<id>` (0750) and its `out/*` folders
//!   (0777) as the sidecar does before it calls the function, and answers with the path.
//!
//! It runs as uid 65532 like Direktiv's sidecar since v0.8.8, so the directories it makes
//! have the ownership the runner meets in a real pod.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

/// Log bodies by action id, in arrival order.
type Logs = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Root of the shared volume, as mounted in a Direktiv pod.
const SHARED: &str = "/mnt/shared";

#[derive(Deserialize)]
struct Aid {
    aid: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let logs = Logs::default();
    let log_routes = Router::new()
        .route("/log", post(record))
        .with_state(logs.clone());
    let control_routes = Router::new()
        .route("/logs", get(recorded))
        .route("/prepare", post(prepare))
        .with_state(logs);

    let log_listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 8889))).await?;
    let control_listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 8890))).await?;
    println!("test sidecar listening on 127.0.0.1:8889 and 0.0.0.0:8890");

    let log_server = axum::serve(log_listener, log_routes);
    let control_server = axum::serve(control_listener, control_routes);
    tokio::select! {
        result = log_server => result,
        result = control_server => result,
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

async fn record(State(logs): State<Logs>, Query(q): Query<Aid>, body: String) -> StatusCode {
    match logs.lock() {
        Ok(mut logs) => {
            logs.entry(q.aid).or_default().push(body);
            StatusCode::OK
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn recorded(
    State(logs): State<Logs>,
    Query(q): Query<Aid>,
) -> Result<([(header::HeaderName, &'static str); 1], String), StatusCode> {
    let logs = logs.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let lines = logs.get(&q.aid).cloned().unwrap_or_default();
    let body = serde_json::to_string(&lines).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

async fn prepare(Query(q): Query<Aid>) -> Result<String, (StatusCode, String)> {
    let fail = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    if q.aid.is_empty() || q.aid.contains('/') || q.aid.starts_with('.') {
        return Err((StatusCode::BAD_REQUEST, "bad action id".to_string()));
    }
    let dir = PathBuf::from(SHARED).join(&q.aid);
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(&dir)
        .map_err(fail)?;
    // The mode given to mkdir is reduced by the umask; Direktiv's result is 0750 either way.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).map_err(fail)?;
    for scope in ["namespace", "workflow", "instance"] {
        let out = dir.join("out").join(scope);
        std::fs::create_dir_all(&out).map_err(fail)?;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).map_err(fail)?;
    }
    Ok(dir.display().to_string())
}
