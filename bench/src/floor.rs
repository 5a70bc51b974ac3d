//! The floor servers: the least an HTTP server built from the runner's crates (tokio, axum,
//! hyper, hyper-util) must do to run a command per request. Whatever the runner spends beyond a
//! floor is the price of its features.
//!
//! - The *spawn floor* spawns one process per `POST /` with tokio::process and answers with
//!   that process's stdout, nothing else.
//! - The *protocol floor* does the same and, before answering, the one log POST the contract
//!   cannot do without: the `running command '<cmd>'` line and the command's output lines,
//!   newline-joined, to the sidecar's `/log?aid=<Direktiv-ActionID>`, over a pooled keep-alive
//!   hyper-util client built as the runner builds its own, and awaited, because every line must be
//!   at the sidecar before the response. It answers with the contract's JSON body (`commands`:
//!   the command, `success`, `exit_code`, `result`, `stdout`, `stderr`, `truncated`,
//!   `duration_ms`, with serde_json), and a failure with the contract's status, error headers
//!   and body. Targets are judged against this floor.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::client::Error;

/// The runner's log client timeouts (src/logs/endpoint.rs), so both clients behave alike.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which floor to serve.
pub enum Floor {
    Spawn,
    /// Posts each request's lines to this sidecar base URL (`http://127.0.0.1:<port>`).
    Protocol {
        sidecar: String,
    },
}

impl Floor {
    /// The floor named by the command line: `floor-server` or `protocol-floor SIDECAR_URL`.
    pub fn from_args(mode: &str, args: &[String]) -> Result<Self, Error> {
        match (mode, args) {
            ("floor-server", []) => Ok(Floor::Spawn),
            ("protocol-floor", [sidecar]) => Ok(Floor::Protocol {
                sidecar: sidecar.clone(),
            }),
            _ => {
                Err(format!("usage: floor-server | protocol-floor SIDECAR_URL (got {mode})").into())
            }
        }
    }
}

/// The protocol floor's log client and the sidecar's `/log?aid=` URI prefix, both made once at
/// start as the runner makes them.
struct LogPost {
    client: Client<HttpConnector, Full<Bytes>>,
    uri_prefix: String,
}

/// Serves until killed. Announces its address on stderr the way the runner does, so the
/// harness starts and times every server the same way.
pub fn serve(floor: Floor) -> Result<(), Error> {
    let log = match floor {
        Floor::Spawn => None,
        Floor::Protocol { sidecar } => Some(Arc::new(LogPost::new(&sidecar)?)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        eprintln!("floor server listening on {}", listener.local_addr()?);
        axum::serve(listener, router(log)).await?;
        Ok(())
    })
}

/// `POST /` runs a command; `GET /healthz` answers 200. With `log`, the protocol floor.
fn router(log: Option<Arc<LogPost>>) -> Router {
    Router::new()
        .route("/", post(run))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .with_state(log)
}

/// The body is the command line, split on whitespace (no JSON, no shell). The spawn floor
/// answers with the command's stdout (stderr when it failed), the protocol floor as the
/// contract says.
async fn run(State(log): State<Option<Arc<LogPost>>>, headers: HeaderMap, body: Bytes) -> Response {
    let line = String::from_utf8_lossy(&body);
    let mut argv = line.split_whitespace();
    let Some(program) = argv.next() else {
        return (StatusCode::BAD_REQUEST, "empty command").into_response();
    };
    let started = Instant::now();
    let output = tokio::process::Command::new(program)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let Some(log) = log else {
        return if output.status.success() {
            output.stdout.into_response()
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, output.stderr).into_response()
        };
    };
    let Some(aid) = headers
        .get("direktiv-actionid")
        .and_then(|v| v.to_str().ok())
    else {
        return (StatusCode::BAD_REQUEST, "no Direktiv-ActionID").into_response();
    };
    let message = log_message(&line, &output.stdout, &output.stderr);
    if let Err(e) = log.post(aid, message).await {
        return (StatusCode::BAD_GATEWAY, e).into_response();
    }
    contract_response(&line, &output, started.elapsed())
}

/// The contract's answer for one command (SPEC §6): 200 with `{"commands": [result]}`, or for
/// a non-zero exit 500 with `Direktiv-ErrorCode` `cmd.exit.N`, `Direktiv-ErrorMessage` and
/// `{"errorCode", "errorMessage", "commands"}`. `result` is stdout parsed as JSON when it is
/// JSON, else stdout trimmed.
fn contract_response(command: &str, output: &Output, took: Duration) -> Response {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let trimmed = stdout.trim();
    let result = serde_json::from_str::<serde_json::Value>(trimmed)
        .unwrap_or_else(|_| serde_json::Value::from(trimmed));
    let exit_code = output.status.code().unwrap_or(-1);
    let commands = serde_json::json!([{
        "command": command,
        "success": output.status.success(),
        "exit_code": exit_code,
        "result": result,
        "stdout": stdout,
        "stderr": String::from_utf8_lossy(&output.stderr),
        "truncated": false,
        "duration_ms": took.as_millis() as u64,
    }]);
    let json = [(CONTENT_TYPE, "application/json")];
    if output.status.success() {
        let body = serde_json::json!({ "commands": commands });
        return (json, body.to_string()).into_response();
    }
    let code = format!("cmd.exit.{exit_code}");
    let message = format!("command '{command}' exited with status {exit_code}");
    let body =
        serde_json::json!({"errorCode": code, "errorMessage": message, "commands": commands});
    let headers = [
        ("direktiv-errorcode", code),
        ("direktiv-errormessage", message),
    ];
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        json,
        headers,
        body.to_string(),
    )
        .into_response()
}

impl LogPost {
    /// The client and URL for the sidecar at `sidecar` (its base URL).
    fn new(sidecar: &str) -> Result<Self, Error> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        let uri_prefix = format!("{}/log?aid=", sidecar.trim_end_matches('/'));
        uri_prefix.parse::<Uri>()?;
        Ok(Self { client, uri_prefix })
    }

    /// One POST of `message` for `aid`; any answer but 2xx is a failure.
    async fn post(&self, aid: &str, message: Vec<u8>) -> Result<(), String> {
        let aid: String = form_urlencoded::byte_serialize(aid.as_bytes()).collect();
        let uri: Uri = format!("{}{aid}", self.uri_prefix)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(message)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // Reading the answer to its end lets the connection go back to the pool.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the sidecar answered {status}"))
            }
        };
        tokio::time::timeout(POST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()))
    }
}

/// The request's whole log in one message: `running command '<cmd>'`, then every line of
/// stdout and of stderr, newline-joined (the last newline of each stream dropped).
fn log_message(command: &str, stdout: &[u8], stderr: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(command.len() + stdout.len() + stderr.len() + 20);
    message.extend_from_slice(format!("running command '{command}'").as_bytes());
    for stream in [stdout, stderr] {
        if !stream.is_empty() {
            message.push(b'\n');
            message.extend_from_slice(stream.strip_suffix(b"\n").unwrap_or(stream));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::sidecar::Sidecar;

    async fn start(log: Option<Arc<LogPost>>) -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(log)).await });
        Client::connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn the_protocol_floor_answers_only_once_its_lines_are_at_the_sidecar() {
        let sidecar = Sidecar::start().await.unwrap();
        let log = LogPost::new(&sidecar.url()).unwrap();
        let mut floor = start(Some(Arc::new(log))).await;
        let reply = floor.post("aid-1", None, "seq 1 3".into()).await.unwrap();
        assert_eq!(reply.status.as_u16(), 200);
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let command = &body["commands"][0];
        assert_eq!(command["command"], "seq 1 3");
        assert_eq!(command["success"], true);
        assert_eq!(command["exit_code"], 0);
        assert_eq!(command["stdout"], "1\n2\n3\n");
        assert_eq!(command["result"], "1\n2\n3");
        assert_eq!(
            sidecar.lines("aid-1"),
            ["running command 'seq 1 3'", "1", "2", "3"]
        );
        assert_eq!(sidecar.posts("aid-1"), 1);
    }

    #[test]
    fn the_protocol_floor_answers_as_the_contract_says() {
        use std::os::unix::process::ExitStatusExt;
        let output = |code: i32, stdout: &str, stderr: &str| Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let body = |response: Response| {
            let (parts, body) = response.into_parts();
            let bytes = futures_body(body);
            (
                parts,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        };
        let took = Duration::from_millis(3);
        let (ok, json) = body(contract_response(
            "x",
            &output(0, " {\"a\": 1.5}\n", "w\"\n"),
            took,
        ));
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.headers[CONTENT_TYPE], "application/json");
        assert_eq!(
            json,
            serde_json::json!({"commands": [{"command": "x", "success": true, "exit_code": 0,
                "result": {"a": 1.5}, "stdout": " {\"a\": 1.5}\n", "stderr": "w\"\n",
                "truncated": false, "duration_ms": 3}]})
        );
        let (failed, json) = body(contract_response("false", &output(1, "", ""), took));
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.headers["direktiv-errorcode"], "cmd.exit.1");
        assert!(failed.headers.contains_key("direktiv-errormessage"));
        assert_eq!(json["errorCode"], "cmd.exit.1");
        assert_eq!(json["commands"][0]["result"], "");
        assert_eq!(json["commands"][0]["success"], false);
    }

    /// The whole body of a response built in memory.
    fn futures_body(body: axum::body::Body) -> Bytes {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async { body.collect().await.unwrap().to_bytes() })
    }

    #[tokio::test]
    async fn the_protocol_floor_fails_when_the_sidecar_refuses() {
        // A sidecar that is not there: nothing listens on the port of a dropped listener.
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", gone.local_addr().unwrap());
        drop(gone);
        let mut floor = start(Some(Arc::new(LogPost::new(&url).unwrap()))).await;
        let reply = floor.post("aid-2", None, "true".into()).await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn the_spawn_floor_answers_with_stdout_and_logs_nothing() {
        let mut floor = start(None).await;
        let reply = floor.post("aid-3", None, "seq 1 2".into()).await.unwrap();
        assert_eq!(&reply.body[..], b"1\n2\n");
        let failed = floor.post("aid-4", None, "false".into()).await.unwrap();
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_log_message_is_the_command_line_then_every_output_line() {
        assert_eq!(log_message("true", b"", b""), b"running command 'true'");
        assert_eq!(
            log_message("seq 1 3", b"1\n2\n3\n", b""),
            b"running command 'seq 1 3'\n1\n2\n3"
        );
        assert_eq!(
            log_message("x", b"out", b"err\n"),
            b"running command 'x'\nout\nerr"
        );
    }
}
