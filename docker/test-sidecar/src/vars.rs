//! `/var?aid=<id>&scope=<scope>&key=<name>`, answered as Direktiv v0.10's sidecar answers it
//! (direktiv-protocol.md §2.2), with each variable kept as the file `<vars>/<scope>/<name>`:
//! - an action id with no call in flight: 404 `actionId <id> not found`;
//! - a scope other than `namespace`, `workflow`, `instance` (empty too): 200 with
//!   `unknown scope: <scope>` — status 200, as v0.10 passes on the status of its lookup;
//! - GET: 200 with the variable's bytes; a missing variable is also 200, with
//!   `resource with key <name> not found in scope <scope>`;
//! - POST: the body becomes the variable, its `Content-Type` the variable's mime type (printed,
//!   not kept); a name Direktiv refuses is 400;
//! - any other method: 405.
//!
//! Error texts end with a newline, as Go's `http.Error` writes them.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::Pod;

/// The scopes the sidecar serves, and for which it makes `out/<scope>` folders.
pub(crate) const SCOPES: [&str; 3] = ["namespace", "workflow", "instance"];

#[derive(Deserialize)]
pub(crate) struct VarQuery {
    #[serde(default)]
    aid: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    key: String,
}

pub(crate) async fn handle(
    State(pod): State<Arc<Pod>>,
    method: Method,
    Query(q): Query<VarQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !pod.in_flight().contains(&q.aid) {
        return text(
            StatusCode::NOT_FOUND,
            format!("actionId {} not found", q.aid),
        );
    }
    if method != Method::GET && method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".into());
    }
    if !SCOPES.contains(&q.scope.as_str()) {
        return text(StatusCode::OK, format!("unknown scope: {}", q.scope));
    }
    let not_found = || {
        text(
            StatusCode::OK,
            format!("resource with key {} not found in scope {}", q.key, q.scope),
        )
    };
    if method == Method::GET {
        let data = file(&pod, &q.scope, &q.key).and_then(|path| std::fs::read(path).ok());
        pod.say(&format!(
            "=== var get {}/{}: {}",
            q.scope,
            q.key,
            data.as_ref()
                .map_or("not found".to_owned(), |d| format!("{} bytes", d.len()))
        ));
        return match data {
            Some(data) => data.into_response(),
            None => not_found(),
        };
    }
    if !is_variable_name(&q.key) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("invalid variable name {:?}", q.key),
        );
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match store(&pod, &q.scope, &q.key, &body) {
        Ok(kept) => {
            pod.say(&format!(
                "=== var set {}/{}: {} bytes, mime type {mime:?}{kept}",
                q.scope,
                q.key,
                body.len()
            ));
            StatusCode::OK.into_response()
        }
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

/// Keeps a variable; the text says where (or that it is not kept, without `--vars`).
pub(crate) fn store(pod: &Pod, scope: &str, key: &str, data: &[u8]) -> std::io::Result<String> {
    let Some(path) = file(pod, scope, key) else {
        return Ok(" (not kept: no --vars folder)".to_owned());
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, data)?;
    Ok(format!(", in {}", path.display()))
}

/// The file of a variable; none for a name Direktiv would refuse (so no name reaches outside
/// the folder) or without a folder.
fn file(pod: &Pod, scope: &str, key: &str) -> Option<PathBuf> {
    let vars = pod.options.vars.as_ref()?;
    (SCOPES.contains(&scope) && is_variable_name(key)).then(|| vars.join(scope).join(key))
}

/// Direktiv's rule for variable names: `^(([a-zA-Z][a-zA-Z0-9_\-\.]*[a-zA-Z0-9])|([a-zA-Z]))$`.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphabetic()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A plain-text answer as `http.Error` writes it.
fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_follow_direktivs_rule() {
        for good in ["a", "ab", "a.b-c_d9", "Z1"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "1a", "a-", "a.", "../x", "a/b", "a b", "é"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
