//! The floor server: the least an HTTP server built from the runner's crates (tokio, axum,
//! hyper) must do to run a command per request. It spawns one process per `POST /` with
//! tokio::process and answers with that process's stdout, nothing else. Whatever the runner
//! spends beyond this is the price of its features.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::client::Error;

/// Serves until killed. Announces its address on stderr the way the runner does, so the
/// harness starts and times both servers the same way.
pub fn serve() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        eprintln!("floor server listening on {}", listener.local_addr()?);
        let app = Router::new()
            .route("/", post(run))
            .route("/healthz", get(|| async { StatusCode::OK }));
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The body is the command line, split on whitespace (no JSON, no shell).
async fn run(body: Bytes) -> Response {
    let line = String::from_utf8_lossy(&body);
    let mut argv = line.split_whitespace();
    let Some(program) = argv.next() else {
        return (StatusCode::BAD_REQUEST, "empty command").into_response();
    };
    let output = tokio::process::Command::new(program)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => output.stdout.into_response(),
        Ok(output) => (StatusCode::INTERNAL_SERVER_ERROR, output.stderr).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
