//! `POST /` on the network side: an action's input in, the function's answer out, with what
//! Direktiv's sidecar (v0.10) does around the call: a folder `<shared>/<action id>` with its
//! `out/` folders, the action id registered (so `/log` and `/var` serve it) while the call
//! runs, the request `POST <runner>/` with `Direktiv-ActionID`, `Direktiv-TempDir` and
//! `Direktiv-Iterator`, then each file in `out/<scope>/` stored as a variable, the folder
//! removed and the id forgotten. With `--print` each step is printed as it happens.
//!
//! A caller may pick the action id with a `Direktiv-ActionID` header (say, to try a second
//! call with the same id); otherwise each call gets a new random one, as each Direktiv action
//! attempt does.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::vars::{self, SCOPES};
use crate::Pod;

/// Response headers Direktiv reads besides the body.
const ERROR_CODE: &str = "direktiv-errorcode";
const ERROR_MESSAGE: &str = "direktiv-errormessage";

/// At most this much of a body is printed.
const PRINTED_BODY: usize = 4096;

/// The function's answer, as Direktiv receives it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

pub(crate) async fn call(
    State(pod): State<Arc<Pod>>,
    headers: HeaderMap,
    input: Bytes,
) -> Response {
    let aid = headers
        .get("direktiv-actionid")
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && !id.contains('/') && !id.starts_with('.'))
        .map_or_else(new_action_id, str::to_owned);
    let dir = pod.options.shared.join(&aid);
    if let Err(error) = crate::make_action_dir(&dir) {
        let message = format!("failed to prepare function request: {error}");
        pod.say(&format!("=== {aid}: {message}"));
        return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
    }
    pod.in_flight().insert(aid.clone());
    pod.say(&format!(
        "=== call {aid}: {} bytes to {}/ (Direktiv-TempDir {})",
        input.len(),
        pod.options.runner,
        dir.display()
    ));
    let answer = send(&pod, &aid, &dir, input).await;
    let response = match answer {
        Ok(answer) => {
            pod.say(&describe(&aid, &answer));
            collect_out_variables(&pod, &dir);
            reply(answer)
        }
        Err(error) => {
            let message = format!("the function could not be called: {error}");
            pod.say(&format!("=== {aid}: {message}"));
            (StatusCode::BAD_GATEWAY, message).into_response()
        }
    };
    pod.in_flight().remove(&aid);
    let _ = std::fs::remove_dir_all(&dir);
    response
}

/// `POST <runner>/` with the headers Direktiv v0.10 sends.
async fn send(pod: &Pod, aid: &str, dir: &Path, input: Bytes) -> Result<Answer, String> {
    let request = hyper::Request::post(format!("{}/", pod.options.runner))
        .header("Direktiv-ActionID", aid)
        .header("Direktiv-TempDir", dir.display().to_string())
        .header("Direktiv-Iterator", "0")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(input))
        .map_err(|e| e.to_string())?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// What Direktiv makes of the answer (direktiv-protocol.md §1.6), for the printout.
fn describe(aid: &str, answer: &Answer) -> String {
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let verdict = match (
        header(ERROR_CODE).filter(|c| !c.is_empty()),
        header(ERROR_MESSAGE),
    ) {
        (Some(code), message) => {
            format!("a catchable error {code}: {}", message.unwrap_or_default())
        }
        (None, Some(message)) if !message.is_empty() => {
            format!("an error message without a code: the instance crashes ({message})")
        }
        _ if !answer.status.is_success() => {
            "a catchable error \"container failed\" (a status that is not 2xx)".to_owned()
        }
        _ => "success: the body is the action's return".to_owned(),
    };
    let shown = &answer.body[..answer.body.len().min(PRINTED_BODY)];
    let cut = if shown.len() < answer.body.len() {
        format!(" ... ({} bytes in all)", answer.body.len())
    } else {
        String::new()
    };
    format!(
        "=== answer {aid}: {}; {verdict}\n{}{cut}",
        answer.status,
        String::from_utf8_lossy(shown)
    )
}

/// Each regular file `out/<scope>/<name>` becomes variable `<name>` of `<scope>`, as the
/// sidecar stores them after the call.
fn collect_out_variables(pod: &Pod, dir: &Path) {
    for scope in SCOPES {
        let Ok(entries) = std::fs::read_dir(dir.join("out").join(scope)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let what = if !vars::is_variable_name(&name) {
                "is not a variable name: Direktiv fails the action".to_owned()
            } else if kind.is_dir() {
                "is a folder: Direktiv stores it as a tar.gz variable (not kept here)".to_owned()
            } else if !kind.is_file() {
                "is neither a file nor a folder: Direktiv ignores it".to_owned()
            } else {
                match std::fs::read(entry.path()) {
                    Ok(data) => match vars::store(pod, scope, &name, &data) {
                        Ok(kept) => format!("set, {} bytes{kept}", data.len()),
                        Err(error) => format!("could not be kept: {error}"),
                    },
                    Err(error) => format!("could not be read: {error}"),
                }
            };
            pod.say(&format!("=== out/{scope}/{name} {what}"));
        }
    }
}

/// The caller gets the function's answer: status, Direktiv's headers, content type, body.
fn reply(answer: Answer) -> Response {
    let mut response = (answer.status, answer.body).into_response();
    for name in [ERROR_CODE, ERROR_MESSAGE, header::CONTENT_TYPE.as_str()] {
        if let Some(value) = answer.headers.get(name) {
            let name = HeaderName::from_static(name);
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// A new random action id (32 hex digits), as each Direktiv action attempt gets one.
fn new_action_id() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
